/* The Lua state and its tasks: the scheduler, and nothing of the gateway
 * above it (runtime/runtime.c puts the state to use). Each task is a
 * coroutine anchored in the registry; the thread's extra space points back
 * at its task so bindings can find who is calling. Resuming goes through
 * task_run, which handles yields, returns, errors and the cpuTimeout stop in
 * one place; a wake goes through the ready queue, which the loop runs.
 * Finished tasks keep their coroutine in a pool for the next spawn. */
#include "vm/vm.h"
#include "base/gw.h"
#include "vm/libs.h"
#include "base/log.h"
#include "base/regex.h"

#include <lauxlib.h>
#include <stddef.h>
#include <lualib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HOOK_EVERY 10000 /* instructions between checks of the fallback hook */
#define STOP_EVERY 1000   /* instructions between stops once a slice ran over */
#define POOL_MAX 64       /* finished tasks kept, with their coroutine, for reuse */

struct gw_task {
    struct gw_vm *vm;
    lua_State *co;
    int ref;                /* anchors 'co' */
    gw_task_done_fn done;
    void *ud;
    struct gw_wait waits;   /* list head of what it waits on */
    int running;            /* inside lua_resume right now */
    int aborted;            /* abort requested while running */
    int waiting;            /* suspended in loop.wait() */
    int cpu_exceeded;
    struct gw_task *unowned_prev, *unowned_next; /* 'done' is NULL: in vm->unowned */
    struct gw_task *pool_next; /* in vm->pool */
    struct gw_wait wake;       /* attached while in the ready queue (gw_task_wake) */
    int wake_nargs;
    struct gw_task *ready_prev, *ready_next;
};

/* The cpuTimeout guard. A count hook on every coroutine would make Lua 5.4
 * run all code in its slow "trap" mode, a call per instruction: a fifth of
 * a request's cost. Instead a watchdog thread looks at the running slice
 * every few milliseconds; once it has run over, it signals the main thread,
 * whose handler sets the hook on the coroutine running then (lua_sethook
 * may be called from a signal handler: lua.c does it for Ctrl-C), and
 * cpu_hook stops it. 'running' is kept by every entry into Lua (slice_enter)
 * and by coroutine.resume, wrap and close, which the state gets from here.
 * Without the thread (it could not be started) the hook is set for good. */
struct watch {
    pthread_t thread, main;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, stop;
    pid_t pid;                     /* of the process the thread runs in */
    struct timespec period;
    _Atomic double start;          /* slice start (ms) while Lua runs, else -1 */
    lua_State *volatile running;   /* the coroutine running Lua code now */
};

/* The luaMemoryLimit guard: once a cap is set, every allocation of the
 * state goes through mem_alloc, which counts the bytes held and, while a
 * task runs Lua code ('cap' is then 'limit'), refuses growth past it. Lua
 * then collects garbage and tries again, and if that is not enough raises
 * a memory error in the task, where a protected call is always active (the
 * resume). Outside task
 * runs the cap is lifted: the runtime's own work (spawning a task, pushing
 * a request, rendering the 500 of a task that failed, closing a
 * connection) is bounded by what the transports accept, and runs partly
 * outside any protected call, where a memory error would abort. */
struct memory {
    lua_Alloc alloc;  /* the caller's allocator (mem_alloc_with), or NULL (mem_alloc) */
    void *ud;
    size_t used;      /* bytes the state holds now */
    size_t limit;     /* general.luaMemoryLimit; 0: none */
    size_t cap;       /* what growth may not pass now: 'limit' in a task run, else SIZE_MAX */
    int refused;      /* an allocation was refused during this task run */
    int counting;     /* mem_alloc is the state's allocator (from the first cap set) */
};

struct gw_vm {
    lua_State *L;
    uv_loop_t *loop;
    long cpu_timeout;       /* ms, 0: no limit */
    struct gw_task *current;
    double slice_start;
    struct watch watch;
    struct gw_task *unowned;        /* tasks nobody waits for (timer callbacks) */
    struct gw_task *pool;           /* finished tasks whose coroutine can run again */
    int npool;
    struct gw_task *ready_head, *ready_tail; /* woken, to be resumed by the loop */
    int nready;
    uv_idle_t *ready_idle;          /* runs the ready queue; only while it is not empty */
    struct memory mem;
};

/* The hook has only a lua_State; there is one state per process. */
static struct gw_vm *hook_owner;

static struct gw_task **task_slot(lua_State *L) {
    return (struct gw_task **)lua_getextraspace(L);
}

struct gw_task *gw_task_of(lua_State *L) { return *task_slot(L); }
lua_State *gw_vm_state(struct gw_vm *vm) { return vm->L; }
uv_loop_t *gw_vm_loop(struct gw_vm *vm) { return vm->loop; }
lua_State *gw_task_thread(struct gw_task *t) { return t->co; }
struct gw_task *gw_task_current(struct gw_vm *vm) { return vm->current; }
void gw_task_set_waiting(struct gw_task *t, int waiting) { t->waiting = waiting; }
int gw_task_is_waiting(struct gw_task *t) { return t->waiting; }
/* --- the memory limit ----------------------------------------------------- */

/* Would a block of 'nsize' bytes more pass the cap? (Lua keeps sizes below
 * half of SIZE_MAX, and so is 'used': no wrap-around.) */
static int over_cap(struct memory *m, size_t nsize) {
    if (m->used + nsize > m->cap) {
        m->refused = 1;
        return 1;
    }
    return 0;
}

/* The allocator of a state made with the standard one: realloc and free,
 * as lauxlib's l_alloc, plus the count. Every allocation of a request
 * comes here, so it is kept to a few instructions. */
static void *mem_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    struct memory *m = ud;
    void *p;
    if (!ptr) { /* a new object (osize is its type): most calls */
        if (nsize == 0 || over_cap(m, nsize)) return NULL;
        if ((p = malloc(nsize)) != NULL) m->used += nsize;
        return p;
    }
    if (nsize == 0) {
        m->used -= osize;
        free(ptr);
        return NULL;
    }
    if (nsize > osize && over_cap(m, nsize - osize)) return NULL;
    if ((p = realloc(ptr, nsize)) != NULL) m->used += nsize - osize; /* modular: a shrink subtracts */
    return p;
}

/* The same, handing on to the caller's allocator (the OOM tests' one). */
static void *mem_alloc_with(void *ud, void *ptr, size_t osize, size_t nsize) {
    struct memory *m = ud;
    size_t old = ptr ? osize : 0;
    if (nsize > old && over_cap(m, nsize - old)) return NULL;
    void *p = m->alloc(m->ud, ptr, osize, nsize);
    if (nsize == 0) m->used -= old;
    else if (p) m->used += nsize - old;
    return p;
}

/* Lift the cap for the runtime's own work (see struct memory); returns what
 * to give back to cap_restore. */
static size_t cap_lift(struct gw_vm *vm) {
    size_t was = vm->mem.cap;
    vm->mem.cap = SIZE_MAX;
    return was;
}

static void cap_restore(struct gw_vm *vm, size_t was) { vm->mem.cap = was; }

/* Bytes the state holds, as Lua counts them (the same sizes mem_alloc sees). */
static size_t gc_count(lua_State *L) {
    return (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB);
}

/* struct gw_uncapped's call (vm/libs.h). */
static int pcall_uncapped(lua_State *L, int nargs, int nres) {
    void *ud;
    lua_Alloc f = lua_getallocf(L, &ud);
    if (f != mem_alloc && f != mem_alloc_with) return lua_pcall(L, nargs, nres, 0);
    struct memory *m = ud;
    size_t was = m->cap;
    m->cap = SIZE_MAX;
    int rc = lua_pcall(L, nargs, nres, 0);
    m->cap = was;
    if (rc == LUA_OK && m->used > was) {
        lua_pop(L, nres);
        m->refused = 1;
        lua_pushliteral(L, "not enough memory"); /* Lua's own, interned for good: no allocation */
        return LUA_ERRMEM;
    }
    return rc;
}

static const struct gw_uncapped uncapped = {pcall_uncapped};

/* The allocator goes in with the first cap, so that a state without one
 * (luaMemoryLimit = 0) allocates as it did, without the count. */
void gw_vm_limit_memory(struct gw_vm *vm, size_t bytes) {
    vm->mem.limit = bytes;
    if (bytes == 0 || vm->mem.counting) return;
    vm->mem.used = gc_count(vm->L);
    lua_setallocf(vm->L, vm->mem.alloc ? mem_alloc_with : mem_alloc, &vm->mem);
    vm->mem.counting = 1;
}

size_t gw_vm_memory(struct gw_vm *vm) { return vm->mem.counting ? vm->mem.used : gc_count(vm->L); }

/* --- the cpuTimeout guard ------------------------------------------------ */

/* Set in a child forked while the state exists: see watch_after_fork. */
static volatile sig_atomic_t watch_forked;
static void watch_after_fork(struct gw_vm *vm);

/* What slice_enter replaced, for slice_leave to put back: slices nest when
 * C enters Lua while Lua runs (a pcall or a spawn from inside a task). */
struct slice {
    double start;
    lua_State *running;
};

static void slice_enter(struct gw_vm *vm, lua_State *L, struct slice *prev) {
    if (watch_forked) watch_after_fork(vm);
    prev->start = vm->slice_start;
    prev->running = vm->watch.running;
    vm->slice_start = gw_now_ms();
    vm->watch.running = L;
    atomic_store_explicit(&vm->watch.start, vm->slice_start, memory_order_relaxed);
}

static void slice_leave(struct gw_vm *vm, const struct slice *prev) {
    vm->slice_start = prev->start;
    vm->watch.running = prev->running;
    atomic_store_explicit(&vm->watch.start, prev->running ? prev->start : -1.0,
                          memory_order_relaxed);
}

void gw_vm_reset_slice(struct gw_vm *vm) {
    vm->slice_start = gw_now_ms();
    atomic_store_explicit(&vm->watch.start, vm->slice_start, memory_order_relaxed);
}

static int over_time(struct gw_vm *vm) {
    return vm->cpu_timeout > 0 && gw_now_ms() - vm->slice_start > (double)vm->cpu_timeout;
}

/* Stop code that runs too long without yielding: inside a task, yield out
 * of it (a pcall in the action cannot catch that); elsewhere, raise. The
 * hook stays on while the slice is over, so even code that catches the
 * error is stopped again at once. Set for a slice that has ended (the
 * signal came late, or the error ended the slice), it takes itself off. */
static void cpu_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    struct gw_vm *vm = hook_owner;
    if (!vm) return;
    if (!over_time(vm)) {
        if (vm->watch.started) lua_sethook(L, NULL, 0, 0);
        return;
    }
    struct gw_task *t = gw_task_of(L);
    if (t && t == vm->current && lua_isyieldable(L)) {
        t->cpu_exceeded = 1;
        lua_yield(L, 0);
        return;
    }
    if (t) t->cpu_exceeded = 1;
    luaL_error(L, "code ran for more than general.cpuTimeout (%d ms) without yielding",
               (int)vm->cpu_timeout);
}

/* Hook 'L' to be stopped, unless it is already: setting it again would
 * restart its count, and a task that spends its time in coroutines of its
 * own might never reach it. */
static void stop_soon(lua_State *L) {
    if (lua_gethook(L) != cpu_hook) lua_sethook(L, cpu_hook, LUA_MASKCOUNT, STOP_EVERY);
}

/* On the main thread, from the watchdog: when the slice ran over, hook the
 * coroutine running now and the task it runs in, so that a coroutine of the
 * action's own that is stopped (it raises) cannot hand control back to a
 * task that carries on. */
static void watch_signal(int sig) {
    (void)sig;
    struct gw_vm *vm = hook_owner;
    if (!vm || !vm->watch.running || !over_time(vm)) return;
    stop_soon(vm->watch.running);
    if (vm->current) stop_soon(vm->current->co);
}

/* Back in 'L' from a coroutine: if the slice ran over meanwhile, 'L' is
 * stopped too (the coroutine was, and raised into it). */
static void watch_back(struct gw_vm *vm, lua_State *L, lua_State *prev) {
    vm->watch.running = prev;
    if (vm->watch.started && over_time(vm)) stop_soon(L);
}

static void *watch_main(void *arg) {
    struct gw_vm *vm = arg;
    struct watch *w = &vm->watch;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += w->period.tv_sec;
        until.tv_nsec += w->period.tv_nsec;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &until);
        double start = atomic_load_explicit(&w->start, memory_order_relaxed);
        if (!w->stop && start >= 0 && gw_now_ms() - start > (double)vm->cpu_timeout)
            pthread_kill(w->main, SIGRTMIN);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void watch_atfork_child(void) { watch_forked = 1; }

/* Start the watchdog: it looks every tenth of cpuTimeout, 5 to 100 ms.
 * Returns GW_OK, or GW_ERR when it cannot run. */
static int watch_start(struct gw_vm *vm) {
    static int atfork_set;
    if (!atfork_set && pthread_atfork(NULL, NULL, watch_atfork_child) == 0) atfork_set = 1;
    struct watch *w = &vm->watch;
    long every = vm->cpu_timeout / 10;
    if (every < 5) every = 5;
    if (every > 100) every = 100;
    w->period.tv_sec = every / 1000;
    w->period.tv_nsec = (every % 1000) * 1000000L;
    w->main = pthread_self();
    w->pid = getpid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = watch_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    pthread_condattr_t ca;
    if (sigaction(SIGRTMIN, &sa, NULL) != 0 || pthread_condattr_init(&ca) != 0) return GW_ERR;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int ok = pthread_mutex_init(&w->mu, NULL) == 0;
    if (ok && pthread_cond_init(&w->cv, &ca) != 0) {
        pthread_mutex_destroy(&w->mu);
        ok = 0;
    }
    pthread_condattr_destroy(&ca);
    if (!ok) return GW_ERR;
    /* The thread takes none of the process's signals. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, watch_main, vm);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        return GW_ERR;
    }
    w->started = 1;
    return GW_OK;
}

/* A child forked while the state exists has no watchdog thread (threads do
 * not survive fork), and a copy of its lock in whatever state it was in:
 * its first slice starts a new one, or falls back to the hook for good. */
static void watch_after_fork(struct gw_vm *vm) {
    watch_forked = 0;
    if (!vm->watch.started || vm->watch.pid == getpid()) return; /* made after the fork */
    vm->watch.started = 0;
    vm->watch.stop = 0;
    if (watch_start(vm) != GW_OK) lua_sethook(vm->L, cpu_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

static void watch_stop(struct gw_vm *vm) {
    struct watch *w = &vm->watch;
    if (!w->started) return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->started = 0;
}

int gw_vm_pcall(struct gw_vm *vm, int nargs, int nres) {
    struct slice prev;
    size_t cap = cap_lift(vm);
    slice_enter(vm, vm->L, &prev);
    int rc = lua_pcall(vm->L, nargs, nres, 0);
    slice_leave(vm, &prev);
    cap_restore(vm, cap);
    return rc;
}

/* coroutine.resume, wrap and close as Lua 5.4.4's lcorolib.c has them,
 * keeping watch.running while the coroutine runs. */
static lua_State *getco(lua_State *L) {
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "thread");
    return co;
}

static int auxresume(lua_State *L, lua_State *co, int narg) {
    int status, nres;
    if (!lua_checkstack(co, narg)) {
        lua_pushliteral(L, "too many arguments to resume");
        return -1;
    }
    lua_xmove(L, co, narg);
    struct gw_vm *vm = hook_owner;
    lua_State *prev = vm ? vm->watch.running : NULL;
    if (vm) vm->watch.running = co;
    status = lua_resume(co, L, narg, &nres);
    if (vm) watch_back(vm, L, prev);
    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushliteral(L, "too many results to resume");
            return -1;
        }
        lua_xmove(co, L, nres);
        return nres;
    }
    lua_xmove(co, L, 1);
    return -1;
}

static int co_resume(lua_State *L) {
    lua_State *co = getco(L);
    int r = auxresume(L, co, lua_gettop(L) - 1);
    if (r < 0) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -(r + 1));
    return r + 1;
}

static int co_auxwrap(lua_State *L) {
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    int r = auxresume(L, co, lua_gettop(L));
    if (r < 0) {
        int stat = lua_status(co);
        if (stat != LUA_OK && stat != LUA_YIELD) {
            stat = lua_resetthread(co); /* close its tbc variables */
            lua_xmove(co, L, 1);
        }
        if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
            luaL_where(L, 1);
            lua_insert(L, -2);
            lua_concat(L, 2);
        }
        return lua_error(L);
    }
    return r;
}

static int co_wrap(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, co_auxwrap, 1);
    return 1;
}

static int co_close(lua_State *L) {
    static const char *const names[] = {"running", "dead", "suspended", "normal"};
    lua_State *co = getco(L);
    int status = 1; /* dead */
    if (L == co) {
        status = 0;
    } else if (lua_status(co) == LUA_YIELD) {
        status = 2;
    } else if (lua_status(co) == LUA_OK) {
        lua_Debug ar;
        if (lua_getstack(co, 0, &ar)) status = 3;
        else if (lua_gettop(co) != 0) status = 2;
    }
    if (status == 0 || status == 3) return luaL_error(L, "cannot close a %s coroutine", names[status]);
    struct gw_vm *vm = hook_owner;
    lua_State *prev = vm ? vm->watch.running : NULL;
    if (vm) vm->watch.running = co; /* its __close handlers run on it */
    int rc = lua_resetthread(co);
    if (vm) watch_back(vm, L, prev);
    if (rc == LUA_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_xmove(co, L, 1);
    return 2;
}

/* [-0, +0, m] Put the functions above in the coroutine library. */
static void watch_coroutines(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"resume", co_resume}, {"wrap", co_wrap}, {"close", co_close}, {NULL, NULL}};
    lua_getglobal(L, "coroutine");
    luaL_setfuncs(L, fns, 0);
    lua_pop(L, 1);
}

void gw_task_attach(struct gw_task *t, struct gw_wait *w) {
    w->owner = t;
    w->next = t->waits.next;
    w->prev = &t->waits;
    t->waits.next->prev = w;
    t->waits.next = w;
}

void gw_task_detach(struct gw_wait *w) {
    if (!w->owner) return;
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->owner = NULL;
    w->prev = w->next = NULL;
}

/* --- the ready queue: wakes resumed from the loop ----------------------- */

static void ready_unlink(struct gw_task *t) {
    struct gw_vm *vm = t->vm;
    if (t->ready_prev) t->ready_prev->ready_next = t->ready_next;
    else vm->ready_head = t->ready_next;
    if (t->ready_next) t->ready_next->ready_prev = t->ready_prev;
    else vm->ready_tail = t->ready_prev;
    t->ready_prev = t->ready_next = NULL;
    vm->nready--;
}

/* The task was aborted before its turn (the wait is detached already). */
static void wake_cancel(struct gw_wait *w) {
    ready_unlink((struct gw_task *)((char *)w - offsetof(struct gw_task, wake)));
}

static void ready_idle_closed(uv_handle_t *h) { free(h); }

static int task_run(struct gw_task *t, int nargs);
static int task_finish(struct gw_task *t, int rc, int nres);

/* One turn of the loop: resume the tasks ready now; those they wake wait
 * for the next turn. The handle goes once the queue is empty, so an idle
 * vm holds nothing open on the loop. */
static void ready_run(uv_idle_t *h) {
    struct gw_vm *vm = h->data;
    for (int n = vm->nready; n > 0 && vm->ready_head; n--) {
        struct gw_task *t = vm->ready_head;
        ready_unlink(t);
        gw_task_detach(&t->wake);
        task_run(t, t->wake_nargs);
    }
    if (!vm->ready_head) {
        vm->ready_idle = NULL;
        uv_close((uv_handle_t *)h, ready_idle_closed);
    }
}

void gw_task_wake(struct gw_task *t, int nargs) {
    struct gw_vm *vm = t->vm;
    t->waiting = 0;
    t->wake_nargs = nargs;
    t->wake.cancel = wake_cancel;
    gw_task_attach(t, &t->wake);
    t->ready_next = NULL;
    t->ready_prev = vm->ready_tail;
    if (vm->ready_tail) vm->ready_tail->ready_next = t;
    else vm->ready_head = t;
    vm->ready_tail = t;
    vm->nready++;
    if (!vm->ready_idle) {
        uv_idle_t *h = malloc(sizeof *h);
        if (!h) gw_panic("out of memory");
        uv_idle_init(vm->loop, h);
        h->data = vm;
        uv_idle_start(h, ready_run);
        vm->ready_idle = h;
    }
}

const char *gw_task_cannot_wait(lua_State *L) {
    if (!gw_task_of(L))
        return "can only be called from an action, middleware or timer callback (not while "
               "loading, nor from a coroutine of your own)";
    if (!lua_isyieldable(L))
        return "cannot wait here (a C function such as table.sort or string.gsub is calling this code)";
    return NULL;
}

/* Release a task that has ended. A coroutine that returned normally is at
 * rest (its status LUA_OK, no call in progress, nothing left open), so it
 * goes to the pool with its task and serves the next spawn: no new thread,
 * stack and CallInfo list per request. One that raised, was stopped or was
 * aborted is dropped and collected. */
static void task_free(struct gw_task *t, int reusable) {
    struct gw_vm *vm = t->vm;
    if (!t->done) {
        if (t->unowned_prev) t->unowned_prev->unowned_next = t->unowned_next;
        else vm->unowned = t->unowned_next;
        if (t->unowned_next) t->unowned_next->unowned_prev = t->unowned_prev;
    }
    if (t->wake.owner) ready_unlink(t);
    /* Whatever it still owns (timer.after callbacks) outlives it. */
    while (t->waits.next != &t->waits) gw_task_detach(t->waits.next);
    *task_slot(t->co) = NULL;
    if (reusable && vm->npool < POOL_MAX && lua_status(t->co) == LUA_OK) {
        lua_settop(t->co, 0);
        t->pool_next = vm->pool;
        vm->pool = t;
        vm->npool++;
        return;
    }
    luaL_unref(vm->L, LUA_REGISTRYINDEX, t->ref);
    free(t);
}

/* A task for gw_task_spawn: a pooled one, or a new one with a new coroutine. */
static struct gw_task *task_new(struct gw_vm *vm) {
    struct gw_task *t = vm->pool;
    if (t) {
        vm->pool = t->pool_next;
        vm->npool--;
        lua_State *co = t->co;
        int ref = t->ref;
        memset(t, 0, sizeof *t);
        t->co = co;
        t->ref = ref;
        /* The action may have set a hook of its own on its coroutine, or the
         * cpuTimeout guard one: the next task starts with the main thread's,
         * as a new coroutine would. */
        lua_State *L = vm->L;
        if (lua_gethook(co) != lua_gethook(L) || lua_gethookmask(co) != lua_gethookmask(L) ||
            lua_gethookcount(co) != lua_gethookcount(L))
            lua_sethook(co, lua_gethook(L), lua_gethookmask(L), lua_gethookcount(L));
        return t;
    }
    t = calloc(1, sizeof *t);
    if (!t) gw_panic("out of memory");
    t->co = lua_newthread(vm->L);
    t->ref = luaL_ref(vm->L, LUA_REGISTRYINDEX);
    return t;
}

static void task_cancel_waits(struct gw_task *t) {
    while (t->waits.next != &t->waits) {
        struct gw_wait *w = t->waits.next;
        gw_task_detach(w);
        w->cancel(w);
    }
}

void gw_task_abort(struct gw_task *t) {
    if (t->running) {
        t->aborted = 1; /* task_run finishes the job when the resume returns */
        return;
    }
    task_cancel_waits(t);
    lua_resetthread(t->co); /* close pending to-be-closed variables */
    task_free(t, 0);
}

/* Resume 't' with 'nargs' values on its stack. Returns 1 if the task
 * ended (and was freed), 0 if it is suspended. */
static int task_run(struct gw_task *t, int nargs) {
    struct gw_vm *vm = t->vm;
    struct gw_task *prev = vm->current;
    struct slice prev_slice;
    int nres = 0;

    vm->current = t;
    slice_enter(vm, t->co, &prev_slice);
    t->running = 1;
    t->waiting = 0;
    int refused = vm->mem.refused;
    size_t cap = vm->mem.cap;
    vm->mem.refused = 0;
    vm->mem.cap = vm->mem.limit > 0 ? vm->mem.limit : SIZE_MAX;
    int rc = lua_resume(t->co, prev ? prev->co : vm->L, nargs, &nres);
    vm->mem.cap = cap;
    if (vm->mem.refused) {
        gw_log(GW_LOG_ERROR, "Lua code ran out of memory: the state holds %zu bytes and "
               "general.luaMemoryLimit is %zu", vm->mem.used, vm->mem.limit);
    }
    int collect = vm->mem.refused;
    vm->mem.refused = refused;
    t->running = 0;
    vm->current = prev;
    slice_leave(vm, &prev_slice);
    if (!prev) gw_regex_collect(); /* no binding can be holding a pattern now */
    if (collect) {
        /* What the task built is garbage once it ends (or it was caught and
         * is on the way out): give it back now, not a cycle later. */
        int ended = task_finish(t, rc, nres);
        lua_gc(vm->L, LUA_GCCOLLECT);
        return ended;
    }
    return task_finish(t, rc, nres);
}

/* The rest of task_run, once the resume returned 'rc' with 'nres' results. */
static int task_finish(struct gw_task *t, int rc, int nres) {
    struct gw_vm *vm = t->vm;

    if (t->aborted) {
        lua_settop(t->co, 0);
        t->aborted = 0;
        gw_task_abort(t);
        return 1;
    }
    if (rc == LUA_YIELD && !t->cpu_exceeded) {
        lua_pop(t->co, nres); /* whoever suspended it resumes it */
        return 0;
    }
    enum gw_task_status status = GW_TASK_OK;
    if (t->cpu_exceeded) {
        status = GW_TASK_CPU;
        lua_settop(t->co, 0);
        gw_log(GW_LOG_ERROR, "stopped Lua code that ran for more than general.cpuTimeout (%ld ms)",
               vm->cpu_timeout);
        task_cancel_waits(t);
    } else if (rc != LUA_OK) {
        status = GW_TASK_ERROR;
        const char *msg = lua_tostring(t->co, -1);
        luaL_traceback(t->co, t->co, msg ? msg : "(error object is not a string)", 0);
        lua_remove(t->co, -2);
        nres = 1;
        task_cancel_waits(t);
    }
    if (t->done) t->done(t->ud, status, t->co, status == GW_TASK_CPU ? 0 : nres);
    task_free(t, status == GW_TASK_OK);
    return 1;
}

struct gw_task *gw_task_spawn(struct gw_vm *vm, int nargs, gw_task_done_fn done, void *ud) {
    lua_State *L = vm->L;
    /* From inside a task (a timer set at once), the new coroutine is made
     * outside any protected call on the main thread: no cap for it. */
    size_t cap = cap_lift(vm);
    struct gw_task *t = task_new(vm);
    cap_restore(vm, cap);
    t->vm = vm;
    t->done = done;
    t->ud = ud;
    t->waits.next = t->waits.prev = &t->waits;
    if (!done) {
        t->unowned_next = vm->unowned;
        if (vm->unowned) vm->unowned->unowned_prev = t;
        vm->unowned = t;
    }
    *task_slot(t->co) = t;
    lua_xmove(L, t->co, nargs + 1);
    return task_run(t, nargs) ? NULL : t;
}

void gw_task_resume(struct gw_task *t, int nargs) {
    /* From inside a running task (a module answering at once), the loop
     * resumes it instead: a resume never nests. */
    if (t->vm->current) gw_task_wake(t, nargs);
    else task_run(t, nargs);
}

int gw_task_abort_unowned(struct gw_vm *vm) {
    int n = 0;
    for (struct gw_task *t = vm->unowned, *next; t; t = next) {
        next = t->unowned_next;
        if (!t->running) {
            gw_task_abort(t);
            n++;
        }
    }
    return n;
}

int gw_vm_unowned_count(struct gw_vm *vm) {
    int n = 0;
    for (struct gw_task *t = vm->unowned; t; t = t->unowned_next) n++;
    return n;
}

int gw_task_is_unowned(const struct gw_task *t) { return t->done == NULL; }

/* --- the state ----------------------------------------------------------- */

static int msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int gw_vm_pcall_msg(struct gw_vm *vm, int nargs, int nres, char *err, size_t errlen) {
    lua_State *L = vm->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    struct slice prev;
    size_t cap = cap_lift(vm);
    slice_enter(vm, L, &prev);
    int rc = lua_pcall(L, nargs, nres, base);
    slice_leave(vm, &prev);
    cap_restore(vm, cap);
    lua_remove(L, base);
    if (rc != LUA_OK) {
        /* Only the first line: the file, line and reason. The traceback
         * goes to the log at debug level. */
        const char *msg = lua_tostring(L, -1);
        const char *nl = msg ? strchr(msg, '\n') : NULL;
        gw_log(GW_LOG_DEBUG, "%s", msg ? msg : "?");
        gw_fmt(err, errlen, "%.*s", nl ? (int)(nl - msg) : (int)strlen(msg ? msg : "?"), msg ? msg : "?");
        lua_pop(L, 1);
        return GW_ERR;
    }
    return GW_OK;
}

#define VM_KEY "gateway.vm" /* registry field: the vm, for gw_vm_of */

/* Under lua_pcall, so running out of memory fails gw_vm_new instead of
 * aborting. */
static int vm_open(lua_State *L) {
    struct gw_vm *vm = lua_touserdata(L, 1);
    luaL_openlibs(L);
    lua_pushlightuserdata(L, vm);
    lua_setfield(L, LUA_REGISTRYINDEX, VM_KEY);
    lua_pushlightuserdata(L, (void *)&uncapped);
    lua_setfield(L, LUA_REGISTRYINDEX, GW_UNCAPPED_KEY);
    return 0;
}

struct gw_vm *gw_vm_new(lua_Alloc alloc, void *ud, uv_loop_t *loop) {
    struct gw_vm *vm = calloc(1, sizeof *vm);
    if (!vm) return NULL;
    vm->loop = loop;
    atomic_init(&vm->watch.start, -1.0);
    /* luaL_newstate for its panic and warning functions; gw_vm_limit_memory
     * puts mem_alloc in front of its allocator, or of 'alloc'. */
    vm->L = alloc ? lua_newstate(alloc, ud) : luaL_newstate();
    if (!vm->L) {
        free(vm);
        return NULL;
    }
    vm->mem.alloc = alloc;
    vm->mem.ud = ud;
    vm->mem.cap = SIZE_MAX;
    *task_slot(vm->L) = NULL;
    hook_owner = vm;
    lua_pushcfunction(vm->L, vm_open);
    lua_pushlightuserdata(vm->L, vm);
    if (lua_pcall(vm->L, 1, 0, 0) != LUA_OK) {
        gw_vm_free(vm);
        return NULL;
    }
    return vm;
}

struct gw_vm *gw_vm_of(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, VM_KEY);
    struct gw_vm *vm = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return vm;
}

void gw_vm_limit_cpu(struct gw_vm *vm, long ms) {
    vm->cpu_timeout = ms;
    watch_coroutines(vm->L);
    /* Without its thread, the hook goes on the main thread for good;
     * threads copy it, so every task is covered. */
    if (ms > 0 && watch_start(vm) != GW_OK) lua_sethook(vm->L, cpu_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

void gw_vm_free(struct gw_vm *vm) {
    if (!vm) return;
    watch_stop(vm);
    if (hook_owner == vm) hook_owner = NULL;
    while (vm->pool) {
        struct gw_task *t = vm->pool;
        vm->pool = t->pool_next;
        free(t); /* its coroutine goes with the state */
    }
    if (vm->ready_idle) uv_close((uv_handle_t *)vm->ready_idle, ready_idle_closed);
    if (vm->L) lua_close(vm->L);
    gw_regex_cache_clear();
    free(vm);
}
