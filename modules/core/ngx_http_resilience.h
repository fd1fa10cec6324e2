
/*
 * nginx-resilience: the core module's API for the feature modules.
 *
 * Feature modules reach core only through this header.  nginx loads
 * dynamic modules with RTLD_GLOBAL, so the symbols below resolve once
 * ngx_http_resilience_module.so is loaded (it must be loaded first).
 */


#ifndef _NGX_HTTP_RESILIENCE_H_INCLUDED_
#define _NGX_HTTP_RESILIENCE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_RESILIENCE_VERSION  "0.1.0"


/* shared parsers: each logs "<directive>" and the bad value on error */

typedef struct {
    uint64_t                   milli;    /* requests per period, x1000 */
    ngx_msec_t                 period;   /* 1000, 60000, 3600000, ... */
} ngx_http_resilience_rate_t;

#define NGX_HTTP_RESILIENCE_STATUS_MAX  600

typedef struct {
    uint64_t                   bits[(NGX_HTTP_RESILIENCE_STATUS_MAX + 63)
                                    / 64];
} ngx_http_resilience_status_set_t;

#define ngx_http_resilience_status_test(set, s)                               \
    ((s) < NGX_HTTP_RESILIENCE_STATUS_MAX                                     \
     && ((set)->bits[(s) / 64] & ((uint64_t) 1 << ((s) % 64))))


ngx_int_t ngx_http_resilience_parse_msec(ngx_conf_t *cf, ngx_str_t *value,
    ngx_msec_t *msec);
ngx_int_t ngx_http_resilience_parse_size(ngx_conf_t *cf, ngx_str_t *value,
    size_t *size);
ngx_int_t ngx_http_resilience_parse_percent(ngx_conf_t *cf,
    ngx_str_t *value, ngx_uint_t *basis_points);
ngx_int_t ngx_http_resilience_parse_rate(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_resilience_rate_t *rate);
ngx_int_t ngx_http_resilience_parse_status(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_resilience_status_set_t *set);
ngx_int_t ngx_http_resilience_parse_uint(ngx_conf_t *cf, ngx_str_t *value,
    ngx_uint_t min, ngx_uint_t max, ngx_uint_t *n);
ngx_int_t ngx_http_resilience_split_option(ngx_str_t *arg, ngx_str_t *name,
    ngx_str_t *value);
ngx_int_t ngx_http_resilience_parse_enum(ngx_conf_t *cf, const char *what,
    ngx_str_t *value, ngx_conf_enum_t *e, ngx_uint_t *out);

/* a module's variables, from a table ended by ngx_http_null_variable */
ngx_int_t ngx_http_resilience_add_variables(ngx_conf_t *cf,
    ngx_http_variable_t *vars);


/* metrics registry */

typedef enum {
    NGX_HTTP_RESILIENCE_COUNTER = 0,
    NGX_HTTP_RESILIENCE_GAUGE,
    NGX_HTTP_RESILIENCE_HISTOGRAM
} ngx_http_resilience_metric_type_e;

typedef struct ngx_http_resilience_metrics_s  ngx_http_resilience_metrics_t;

typedef ngx_int_t (*ngx_http_resilience_collect_pt)(
    ngx_http_resilience_metrics_t *m, void *data);

/*
 * A collector runs on every status request, in the worker serving it:
 * it declares families and adds samples, usually read from shared memory.
 * Names get the "nginx_resilience_" prefix; labels are name/value pairs.
 *
 * A histogram family takes ngx_http_resilience_metrics_histogram() samples
 * instead: n increasing upper bounds and n + 1 counts, one per bucket (not
 * cumulative; counts[n] is above the last bound).  The count is their sum,
 * so "_count" and the "+Inf" bucket agree even while workers add to the
 * buckets being read.
 */

ngx_int_t ngx_http_resilience_metrics_add_collector(ngx_conf_t *cf,
    ngx_http_resilience_collect_pt collect, void *data);
ngx_int_t ngx_http_resilience_metrics_family(ngx_http_resilience_metrics_t *m,
    const char *name, ngx_http_resilience_metric_type_e type,
    const char *help);
ngx_int_t ngx_http_resilience_metrics_sample(ngx_http_resilience_metrics_t *m,
    ngx_keyval_t *labels, ngx_uint_t nlabels, double value);
ngx_int_t ngx_http_resilience_metrics_histogram(
    ngx_http_resilience_metrics_t *m, ngx_keyval_t *labels,
    ngx_uint_t nlabels, ngx_uint_t n, const double *bounds,
    const uint64_t *counts, double sum);
ngx_pool_t *ngx_http_resilience_metrics_pool(ngx_http_resilience_metrics_t *m);

/*
 * Bytes from the wire (a breaker's key) as valid UTF-8 text for a label
 * or a JSON string: bytes that are not part of a valid UTF-8 sequence,
 * control characters and the backslash become "\xNN", so no two keys
 * look alike.  "dst" holds NGX_HTTP_RESILIENCE_ESCAPED_LEN(len) bytes;
 * returns the end of what was written.
 */

#define NGX_HTTP_RESILIENCE_ESCAPED_LEN(len)  (4 * (len))

u_char *ngx_http_resilience_escape_utf8(u_char *dst, u_char *src,
    size_t len);


/*
 * the resilience_admin JSON API: a module registers a resource ("breakers")
 * with a GET handler (id empty: the whole resource) and, optionally, a PUT
 * handler for one item; each fills "out" and returns an HTTP status, with
 * a message in "err" (for the client) when it is not 200
 */

#include <cjson/cJSON.h>

typedef ngx_int_t (*ngx_http_resilience_admin_get_pt)(ngx_http_request_t *r,
    ngx_str_t *id, cJSON *out, ngx_str_t *err, void *data);
typedef ngx_int_t (*ngx_http_resilience_admin_put_pt)(ngx_http_request_t *r,
    ngx_str_t *id, cJSON *body, cJSON *out, ngx_str_t *err, void *data);

ngx_int_t ngx_http_resilience_admin_register(ngx_conf_t *cf,
    const char *name, ngx_http_resilience_admin_get_pt get,
    ngx_http_resilience_admin_put_pt put, void *data);


/*
 * Where features meet on a request: the deadline module records the
 * request's deadline, the breaker asks whether a timeout was the
 * deadline's doing (its own outcome, "deadline", not an upstream failure).
 */

void ngx_http_resilience_set_deadline(ngx_http_request_t *r, uint64_t at);

/* a request's module context, found again after an internal redirect */
void *ngx_http_resilience_ctx(ngx_http_request_t *r, ngx_module_t *module,
    ngx_pool_cleanup_pt handler);
ngx_uint_t ngx_http_resilience_deadline_spent(ngx_http_request_t *r);


/* Redis client: one connection per worker, driven by the event loop */

#include <hiredis/hiredis.h>

typedef enum {
    NGX_HTTP_RESILIENCE_REDIS_OFF = 0,      /* no resilience_redis */
    NGX_HTTP_RESILIENCE_REDIS_DISCONNECTED,
    NGX_HTTP_RESILIENCE_REDIS_CONNECTING,   /* TCP, AUTH, SELECT */
    NGX_HTTP_RESILIENCE_REDIS_CONNECTED
} ngx_http_resilience_redis_state_e;

/*
 * The "rc" of a reply handler.  Anything but REPLY is a failure; where it
 * matters, a caller tells the commands that never reached Redis (FAILED,
 * BUSY) from those Redis may have run (TIMEDOUT, LOST: outcome unknown).
 */
#define NGX_HTTP_RESILIENCE_REDIS_REPLY        0  /* reply (maybe -ERR) */
#define NGX_HTTP_RESILIENCE_REDIS_FAILED       1  /* not sent */
#define NGX_HTTP_RESILIENCE_REDIS_TIMEDOUT     2  /* command_timeout */
#define NGX_HTTP_RESILIENCE_REDIS_BUSY         3  /* queue full: not sent */
#define NGX_HTTP_RESILIENCE_REDIS_LOST         4  /* sent, connection lost */

#define ngx_http_resilience_redis_unknown(rc)                                 \
    ((rc) == NGX_HTTP_RESILIENCE_REDIS_TIMEDOUT                               \
     || (rc) == NGX_HTTP_RESILIENCE_REDIS_LOST)

/*
 * Called exactly once per accepted command: with the reply, or with
 * FAILED (not connected, or not written when the connection went away),
 * BUSY (the worker's queue for Redis is full), TIMEDOUT or LOST.
 * It is never called from inside the call that sent the command.
 * The reply belongs to the client and is freed after the handler returns.
 */
typedef void (*ngx_http_resilience_redis_handler_pt)(ngx_int_t rc,
    redisReply *reply, void *data);

typedef void (*ngx_http_resilience_redis_message_pt)(ngx_str_t *channel,
    ngx_str_t *message, void *data);

typedef struct {
    ngx_uint_t                 argc;
    const char               **argv;
    const size_t              *argvlen;
} ngx_http_resilience_redis_cmd_t;

typedef struct ngx_http_resilience_redis_script_s
    ngx_http_resilience_redis_script_t;

typedef struct {
    ngx_atomic_t               pid;
    ngx_atomic_t               state;
    ngx_atomic_t               sub_state;
    ngx_atomic_t               commands;     /* sent */
    ngx_atomic_t               replies;      /* received */
    ngx_atomic_t               errors;       /* -ERR replies and failures */
    ngx_atomic_t               timeouts;     /* command timeouts */
    ngx_atomic_t               connects;     /* connections established */
    ngx_atomic_t               reconnects;   /* attempts after a failure */
    ngx_atomic_t               pending;      /* in flight now */
    ngx_atomic_t               messages;     /* pub/sub messages received */
    ngx_atomic_t               busy;         /* refused: queue full */
} ngx_http_resilience_redis_stats_t;


/* binary-safe; returns NGX_OK (handler will fire) or NGX_ERROR (it won't) */
ngx_int_t ngx_http_resilience_redis_command(ngx_uint_t argc,
    const char **argv, const size_t *argvlen,
    ngx_http_resilience_redis_handler_pt handler, void *data);

/* MULTI ... EXEC: one reply, an array with one element per command */
ngx_int_t ngx_http_resilience_redis_batch(ngx_http_resilience_redis_cmd_t *cmds,
    ngx_uint_t n, ngx_http_resilience_redis_handler_pt handler, void *data);

/* scripts are declared at configuration time, run with EVALSHA */
ngx_http_resilience_redis_script_t *ngx_http_resilience_redis_script(
    ngx_conf_t *cf, ngx_str_t *body);
ngx_int_t ngx_http_resilience_redis_evalsha(
    ngx_http_resilience_redis_script_t *script, ngx_uint_t nkeys,
    ngx_uint_t argc, const char **argv, const size_t *argvlen,
    ngx_http_resilience_redis_handler_pt handler, void *data);

/* in a worker: subscriptions survive reconnects */
ngx_int_t ngx_http_resilience_redis_subscribe(ngx_str_t *channel,
    ngx_http_resilience_redis_message_pt handler, void *data);

ngx_http_resilience_redis_state_e ngx_http_resilience_redis_state(void);
ngx_uint_t ngx_http_resilience_redis_configured(ngx_conf_t *cf);
ngx_str_t *ngx_http_resilience_redis_prefix(void);

/* "<prefix><space>:<name>:<key>"; the prefix is 64 bytes at most */
#define NGX_HTTP_RESILIENCE_REDIS_KEY_LEN(space, name_max, key_max)           \
    (64 + sizeof(space) - 1 + 2 + (name_max) + (key_max))

size_t ngx_http_resilience_redis_key(u_char *buf, const char *space,
    ngx_str_t *name, u_char *key, size_t len);
ngx_http_resilience_redis_stats_t *ngx_http_resilience_redis_stats(void);
const char *ngx_http_resilience_redis_state_name(ngx_uint_t state);


extern ngx_module_t  ngx_http_resilience_module;


#endif /* _NGX_HTTP_RESILIENCE_H_INCLUDED_ */
