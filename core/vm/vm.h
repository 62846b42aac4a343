/* The process's one Lua state, and tasks: coroutines the event loop
 * resumes. A task suspends on waits (timers, Redis commands) that it owns, so
 * aborting a task cancels everything it was waiting for. Every resume comes
 * from the loop (a callback of a timer, a socket, a reply, or the ready
 * queue that gw_task_wake fills), never from inside another task's run. */
#ifndef GW_VM_H
#define GW_VM_H

#include <lua.h>
#include <stddef.h>
#include <uv.h>

struct gw_vm;
struct gw_task;

/* Something a task waits on. 'cancel' stops it and releases it; it is
 * called when the owning task is aborted. Completion must detach it first. */
struct gw_wait {
    struct gw_wait *prev, *next;
    struct gw_task *owner;
    void (*cancel)(struct gw_wait *w);
};

enum gw_task_status {
    GW_TASK_OK,    /* returned: its results are on the task's thread */
    GW_TASK_ERROR, /* raised: the message (with traceback) is on the thread */
    GW_TASK_CPU    /* stopped by the cpuTimeout hook */
};

/* Called once when a task ends by itself (not when aborted). The thread
 * and its stack are valid only during the call; the task is freed after. */
typedef void (*gw_task_done_fn)(void *ud, enum gw_task_status status, lua_State *co, int nres);

/* A new Lua state with the standard libraries, its memory from 'alloc'
 * and 'ud' (as lua_newstate takes them; NULL: the standard allocator, so
 * tests can make allocations fail on demand). Tasks resume on 'loop'.
 * NULL when there is not enough memory. */
struct gw_vm *gw_vm_new(lua_Alloc alloc, void *ud, uv_loop_t *loop);

/* Close the state (every task goes with it) and free the vm. */
void gw_vm_free(struct gw_vm *vm);

lua_State *gw_vm_state(struct gw_vm *vm);
uv_loop_t *gw_vm_loop(struct gw_vm *vm);

/* The vm whose state (or one of its threads) 'L' is. */
struct gw_vm *gw_vm_of(lua_State *L);

/* [-0, +0, m] Stop Lua code that runs more than 'ms' milliseconds without
 * yielding (general.cpuTimeout; 0: never): a watchdog thread, and
 * coroutine.resume, wrap and close that keep track of what runs. Once,
 * while setting the state up. */
void gw_vm_limit_cpu(struct gw_vm *vm, long ms);

/* Cap the memory the state holds at 'bytes' (general.luaMemoryLimit; 0:
 * no cap). The cap applies while a task runs Lua code: an allocation that
 * would pass it is refused (after a garbage collection), which raises a
 * memory error in the task, and a line naming the limit goes to the log.
 * Setting up, spawning tasks and the runtime's calls from C
 * (gw_vm_pcall, gw_vm_pcall_msg) are not capped, so that the runtime can
 * always answer for a task that failed. The first cap set puts a counting
 * allocator in front of the state's (the one given to gw_vm_new); without
 * a cap nothing is counted. Call it while no Lua code runs but the caller. */
void gw_vm_limit_memory(struct gw_vm *vm, size_t bytes);

/* Bytes the state holds now (what the cap compares). */
size_t gw_vm_memory(struct gw_vm *vm);

/* lua_pcall on the main state with a CPU slice of its own: for calls
 * from C into Lua (they start with a fresh cpuTimeout, however long the
 * loop was idle before). The error, if any, is left on the stack. */
int gw_vm_pcall(struct gw_vm *vm, int nargs, int nres);

/* gw_vm_pcall with a traceback: on error the traceback goes to the log at
 * debug level, its first line (file, line, reason) to 'err', and nothing
 * stays on the stack. Returns GW_OK or GW_ERR. */
int gw_vm_pcall_msg(struct gw_vm *vm, int nargs, int nres, char *err, size_t errlen);

/* Restart the cpuTimeout clock (between files while loading). */
void gw_vm_reset_slice(struct gw_vm *vm);

/* [-(nargs+1), +0] Pop a function and its 'nargs' arguments from the main
 * stack and run them in a new coroutine, right away. Returns the task, or
 * NULL when it already ended during this first run ('done' was called).
 * With 'done' NULL nobody waits for the task: gw_task_abort_unowned stops
 * it if it is still suspended at shutdown. */
struct gw_task *gw_task_spawn(struct gw_vm *vm, int nargs, gw_task_done_fn done, void *ud);

/* The suspended task's thread, for pushing resume arguments. */
lua_State *gw_task_thread(struct gw_task *t);

/* Resume a suspended task with 'nargs' values pushed on its thread: now
 * when called from a loop callback (a timer, a reply), on the loop's next
 * turn (as gw_task_wake) when called from inside a running task. */
void gw_task_resume(struct gw_task *t, int nargs);

/* Resume it on the loop's next turn instead, with the 'nargs' values
 * pushed on its thread: how one task wakes another (loop.wake), so a
 * resume never nests inside a running task. Aborting the task before
 * then cancels the wake. */
void gw_task_wake(struct gw_task *t, int nargs);

/* Stop a task for good: cancel its waits, drop its coroutine, free it.
 * 'done' is not called. Safe from inside the task's own callbacks. */
void gw_task_abort(struct gw_task *t);

/* Abort every task spawned without a 'done' (timer callbacks) that is
 * still suspended: at shutdown, so their waits (module timers too) are
 * cancelled instead of keeping the loop alive. */
/* Returns how many it aborted. */
int gw_task_abort_unowned(struct gw_vm *vm);

/* How many tasks spawned without a 'done' (timer callbacks) have started
 * and not ended: work graceful shutdown waits for. */
int gw_vm_unowned_count(struct gw_vm *vm);

/* Was 't' spawned without a 'done' (a timer callback)? */
int gw_task_is_unowned(const struct gw_task *t);

/* The task whose coroutine is 'L', or NULL (main thread, user coroutine). */
struct gw_task *gw_task_of(lua_State *L);

/* The task now running, if any. */
struct gw_task *gw_task_current(struct gw_vm *vm);

void gw_task_attach(struct gw_task *t, struct gw_wait *w);
void gw_task_detach(struct gw_wait *w);

/* Suspend-until-woken, used by gateway.loop's wait()/wake(). */
void gw_task_set_waiting(struct gw_task *t, int waiting);
int gw_task_is_waiting(struct gw_task *t);

/* Why the code running on 'L' cannot suspend (a message that starts
 * "can only be called from an action..." or "cannot wait here..."), or
 * NULL when it can: every binding that waits asks this. */
const char *gw_task_cannot_wait(lua_State *L);

#endif
