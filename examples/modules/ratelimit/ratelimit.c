/* Example module: a token-bucket rate limiter as C middleware.
 *   middleware "ratelimit" -> every request takes one token from its client's
 *                             bucket, a Redis hash refilled and spent by one
 *                             atomic EVAL; an empty bucket fails the request
 *                             with 429 "rate limit exceeded" and Retry-After
 * Config: capacity, refillPerSecond, prefix, keyBy, global, priority and
 * failClosed (what to do while Redis cannot answer). The limit is shared by
 * every process that uses the same Redis. Build: make modules
 * (build/modules/ratelimit.so). See docs/c-api.md. */
#include <gateway.h>

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

GATEWAY_MODULE_DECLARE();

static struct gateway_module *module;

/* The config, read once in init; numbers are kept as the script's arguments. */
static struct {
    lua_Integer capacity;
    char capacity_arg[24];
    char rate[32];      /* tokens per second */
    const char *prefix; /* owned by the gateway */
    const char *param;  /* keyBy "param:<name>": points at <name>; NULL for "ip" */
    int fail_closed;
} conf;

/* A failure was logged and Redis has not answered since: one warning per outage. */
static int redis_down;

/* KEYS[1] the bucket, a hash { tokens, ts }; ARGV[1] capacity, ARGV[2] tokens
 * per second. Refills by the time elapsed since ts (Redis's own clock, so every
 * gateway agrees), takes one token if there is one, and expires the hash when
 * it would be full again: a missing bucket is a full one. Returns { allowed
 * (1 or 0), tokens left (rounded down), ms until the next token when denied }. */
static const char bucket_script[] =
    "local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens = tonumber(b[1]) or capacity\n"
    "local elapsed = math.max(0, now - (tonumber(b[2]) or now))\n"
    "tokens = math.min(capacity, tokens + elapsed * rate / 1000)\n"
    "local allowed, wait = 0, 0\n"
    "if tokens >= 1 then\n"
    "  tokens, allowed = tokens - 1, 1\n"
    "else\n"
    "  wait = math.ceil((1 - tokens) * 1000 / rate)\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) * 1000 / rate))\n"
    "return { allowed, math.floor(tokens), wait }\n";

/* [-0, +2] Fail the request: nil and { status = status, message = msg }, which
 * the processor answers with that status. */
static int fail_request(lua_State *L, int status, const char *msg) {
    lua_pushnil(L);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    return 2;
}

/* [-0, +0] data.headers[name] = value (a string), creating data.headers
 * when it is absent. data is at index 1. */
static void set_header(lua_State *L, const char *name, lua_Integer value) {
    if (lua_getfield(L, 1, "headers") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, 1, "headers");
    }
    lua_pushfstring(L, "%I", value);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* [-0, +(0|1)] Push data[outer][inner] when it is a string or a number;
 * returns whether it did. */
static int push_data_field(lua_State *L, const char *outer, const char *inner) {
    if (lua_getfield(L, 1, outer) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    int type = lua_getfield(L, -1, inner);
    if (type != LUA_TSTRING && type != LUA_TNUMBER) {
        lua_pop(L, 2);
        return 0;
    }
    lua_remove(L, -2);
    return 1;
}

/* [-0, +1] Push the bucket's key: the prefix, then "param:<name>:<value>"
 * (keyBy = "param:<name>" and the request has it; params are not scrubbed
 * before middleware) or "ip:<remote address>". */
static void push_bucket_key(lua_State *L) {
    lua_pushstring(L, conf.prefix);
    if (conf.param && push_data_field(L, "params", conf.param)) {
        lua_pushfstring(L, "param:%s:", conf.param);
        lua_insert(L, -2);
    } else {
        lua_pushliteral(L, "ip:");
        if (!push_data_field(L, "connection", "remoteIP")) lua_pushliteral(L, "unknown");
    }
    lua_concat(L, 3);
}

/* Redis could not decide ('why'): log once per outage, then let the request
 * through (the default: a limiter should not take the API down with it) or,
 * with failClosed, fail it with 503. Returns the preProcessor's results. */
static int check_failed(lua_State *L, const char *why) {
    if (!redis_down) {
        redis_down = 1;
        gateway_log(module, GATEWAY_LOG_WARNING, "cannot check the rate limit (%s): %s until "
                    "Redis answers", why, conf.fail_closed ? "failing requests with 503" :
                    "letting requests through");
    }
    if (conf.fail_closed) return fail_request(L, 503, "redis unavailable");
    return 0;
}

/* Redis answered: the outage, if there was one, is over. */
static void check_answered(void) {
    if (!redis_down) return;
    redis_down = 0;
    gateway_log(module, GATEWAY_LOG_NOTICE, "Redis answers again: limiting requests");
}

/* One pending check: the EVAL in flight and the suspended request. */
struct check {
    struct gateway_async *async;
    struct gateway_redis_cmd *cmd;
};

/* [-0, +(0|3)] Push the script's { allowed, remaining, retryAfterMs } as three
 * integers; returns NULL, or (pushing nothing) why the reply is not that. */
static const char *push_bucket(lua_State *co, const struct redisReply *reply) {
    if (reply->type == REDIS_REPLY_ERROR) return reply->str;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return "unexpected reply to EVAL";
    for (size_t i = 0; i < 3; i++)
        if (reply->element[i]->type != REDIS_REPLY_INTEGER) return "unexpected reply to EVAL";
    for (size_t i = 0; i < 3; i++) lua_pushinteger(co, (lua_Integer)reply->element[i]->integer);
    return NULL;
}

/* The reply: resume with the three integers, or with nil and why there are
 * none (the continuation decides: a callback cannot fail the request). */
static void check_done(void *ud, const struct redisReply *reply, const char *err) {
    struct check *c = ud;
    struct gateway_async *a = c->async;
    free(c);
    lua_State *co = gateway_async_thread(a);
    const char *why = err ? err : push_bucket(co, reply);
    if (!why) {
        gateway_async_resume(a, 3);
        return;
    }
    lua_pushnil(co);
    lua_pushstring(co, why);
    gateway_async_resume(a, 2);
}

/* The request was aborted (client gone, actionTimeout, shutdown): drop the
 * reply when it comes; the request is never resumed. */
static void check_cancel(void *ud) {
    struct check *c = ud;
    gateway_redis_cancel(c->cmd);
    free(c);
    gateway_log(module, GATEWAY_LOG_DEBUG, "rate limit check cancelled");
}

/* Runs when the request resumes: data at 1, then what check_done pushed. */
static int check_k(lua_State *L, int status, lua_KContext ctx) {
    (void)status;
    (void)ctx;
    if (lua_isnil(L, 2)) return check_failed(L, lua_tostring(L, 3));
    check_answered();
    lua_Integer allowed = lua_tointeger(L, 2);
    lua_Integer remaining = lua_tointeger(L, 3);
    lua_Integer retry_ms = lua_tointeger(L, 4);
    lua_settop(L, 1);
    set_header(L, "X-RateLimit-Limit", conf.capacity);
    set_header(L, "X-RateLimit-Remaining", remaining);
    if (allowed) return 0;
    lua_Integer retry_s = (retry_ms + 999) / 1000;
    set_header(L, "Retry-After", retry_s < 1 ? 1 : retry_s);
    return fail_request(L, 429, "rate limit exceeded");
}

/* The "ratelimit" preProcessor: data is at index 1. Sends the EVAL and
 * suspends the request until the reply. */
static int ratelimit_pre(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *why = gateway_async_unavailable(L);
    if (why) return luaL_error(L, "the ratelimit middleware %s", why);
    lua_settop(L, 1);
    push_bucket_key(L);
    size_t keylen;
    const char *key = lua_tolstring(L, 2, &keylen);
    const char *argv[6] = {"EVAL", bucket_script, "1", key, conf.capacity_arg, conf.rate};
    size_t argvlen[6] = {4, sizeof bucket_script - 1, 1, keylen, strlen(conf.capacity_arg),
                         strlen(conf.rate)};
    struct check *c = malloc(sizeof *c);
    if (!c) return luaL_error(L, "out of memory");
    if (gateway_redis_command(module, 6, argv, argvlen, check_done, c, &c->cmd) != 0) {
        free(c);
        return check_failed(L, "redis unavailable");
    }
    /* Sent: the reply cannot come before we yield (it comes from the loop). */
    c->async = gateway_async_begin(L, check_cancel, c);
    if (!c->async) {
        gateway_redis_cancel(c->cmd);
        free(c);
        return luaL_error(L, "out of memory");
    }
    lua_settop(L, 1); /* data stays for the continuation */
    return lua_yieldk(L, 0, 0, check_k);
}

/* Read the config into 'conf'; returns 0, or -1 (logged) when a value is bad. */
static int read_config(struct gateway_module *m) {
    long long capacity = gateway_config_int(m, "capacity", 10);
    if (capacity < 1) {
        gateway_log(m, GATEWAY_LOG_ERROR, "capacity must be a positive integer");
        return -1;
    }
    double rate = gateway_config_number(m, "refillPerSecond", 5);
    if (!(rate > 0 && rate <= 1e9)) {
        gateway_log(m, GATEWAY_LOG_ERROR, "refillPerSecond must be a positive number");
        return -1;
    }
    conf.capacity = (lua_Integer)capacity;
    snprintf(conf.capacity_arg, sizeof conf.capacity_arg, "%lld", capacity);
    snprintf(conf.rate, sizeof conf.rate, "%.15g", rate);
    conf.prefix = gateway_config_string(m, "prefix", "ratelimit:");
    const char *key_by = gateway_config_string(m, "keyBy", "ip");
    if (strncmp(key_by, "param:", 6) == 0 && key_by[6] != '\0') {
        conf.param = key_by + 6;
    } else if (strcmp(key_by, "ip") != 0) {
        gateway_log(m, GATEWAY_LOG_ERROR, "keyBy must be \"ip\" or \"param:<name>\", not \"%s\"",
                    key_by);
        return -1;
    }
    conf.fail_closed = gateway_config_bool(m, "failClosed", 0);
    return 0;
}

int gateway_module_init(struct gateway_module *m) {
    module = m;
    if (read_config(m) != 0) return -1;
    int global = gateway_config_bool(m, "global", 1);
    int priority = (int)gateway_config_int(m, "priority", 10);
    if (gateway_register_middleware(m, "ratelimit", priority, global, ratelimit_pre, NULL) != 0)
        return -1;
    gateway_log(m, GATEWAY_LOG_INFO, "loaded: %s requests, refilled at %s/s, per %s%s",
                conf.capacity_arg, conf.rate, conf.param ? "param " : "ip",
                conf.param ? conf.param : "");
    return 0;
}

void gateway_module_free(struct gateway_module *m) {
    gateway_log(m, GATEWAY_LOG_DEBUG, "unloading");
    memset(&conf, 0, sizeof conf);
    redis_down = 0;
    module = NULL;
}
