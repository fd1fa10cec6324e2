
/*
 * nginx-resilience: ngx_http_breaker_module, what crosses its files.
 */


#ifndef _NGX_HTTP_BREAKER_H_INCLUDED_
#define _NGX_HTTP_BREAKER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_resilience.h"


#define NGX_HTTP_BREAKER_CLOSED        0
#define NGX_HTTP_BREAKER_OPEN          1
#define NGX_HTTP_BREAKER_HALF_OPEN     2

#define NGX_HTTP_BREAKER_ENFORCE       1
#define NGX_HTTP_BREAKER_DRY_RUN       2
#define NGX_HTTP_BREAKER_FORCE_OPEN    3
#define NGX_HTTP_BREAKER_FORCE_CLOSED  4
#define NGX_HTTP_BREAKER_OFF           5

#define NGX_HTTP_BREAKER_MAX_BUCKETS   60
#define NGX_HTTP_BREAKER_MAX_PROBES    8
#define NGX_HTTP_BREAKER_MAX_KEY       128
#define NGX_HTTP_BREAKER_MAX_BANDS     8
#define NGX_HTTP_BREAKER_MAX_OVERRIDES 32

/* keyed breakers a zone holds that only notices from Redis made */
#define NGX_HTTP_BREAKER_MAX_NOTICED   1024

/* what resilience_admin overrides, node by node */
#define NGX_HTTP_BREAKER_O_RATE        0x01
#define NGX_HTTP_BREAKER_O_CONSECUTIVE 0x02
#define NGX_HTTP_BREAKER_O_MIN         0x04
#define NGX_HTTP_BREAKER_O_OPEN        0x08

/* the longest open time resilience_admin sets (the override's 32 bits) */
#define NGX_HTTP_BREAKER_OPEN_MAX      86400000

/* with those bits, what "clear" gives back to nginx.conf */
#define NGX_HTTP_BREAKER_CLEAR_MODE    0x100

/* what a request's outcome was, for the breaker */
#define NGX_HTTP_BREAKER_NEUTRAL       0
#define NGX_HTTP_BREAKER_SUCCESS       1
#define NGX_HTTP_BREAKER_FAILURE       2

/* why a request was turned away */
#define NGX_HTTP_BREAKER_ADMITTED      0
#define NGX_HTTP_BREAKER_REJECT_OPEN   1
#define NGX_HTTP_BREAKER_REJECT_FULL   2   /* the bulkhead */


typedef struct {
    uint32_t                   epoch;       /* now / bucket length */
    uint32_t                   total;
    uint32_t                   failures;
    uint32_t                   slow;
} ngx_http_breaker_bucket_t;


typedef struct {
    u_char                     mode;         /* 0: as configured */
    u_char                     flags;        /* NGX_HTTP_BREAKER_O_* */
    uint32_t                   rate;
    uint32_t                   consecutive;
    uint32_t                   min_requests;
    uint32_t                   open_time;
} ngx_http_breaker_override_t;


/*
 * 288 bytes with the rbtree node header, before the name, the key and the
 * window buckets.  Times kept in 32 bits are compared by difference.
 */

typedef struct {
    u_char                     color;
    u_char                     state;
    u_char                     nbuckets;
    u_char                     pinned;       /* keyless: never evicted */
    u_char                     shared;       /* breaker_shared on */
    u_char                     token_pending;
    u_char                     token_local;  /* Redis too slow: decide here */
    u_char                     restore_asked;
    u_char                     noticed;      /* made by a notice, unused */
    u_char                     dirty;        /* in the zone's dirty queue */
    u_short                    name_len;
    u_short                    key_len;

    ngx_http_breaker_override_t  override;

    ngx_queue_t                queue;
    ngx_queue_t                dirty_link;   /* outcomes not pushed */
    ngx_atomic_t               lock;
    ngx_atomic_t               pins;         /* lookups not yet admitted */

    ngx_msec_t                 last;         /* last use, for the LRU */
    ngx_msec_t                 open_until;

    uint32_t                   changed;      /* last transition, 32 bits */
    uint32_t                   generation;
    uint32_t                   trips;        /* in a row, for backoff */
    uint32_t                   consecutive;  /* failures in a row */
    uint32_t                   inflight;
    uint32_t                   probes_ok;
    uint32_t                   window;       /* ms, for the fleet window */

    /* breaker_shared: outcomes not yet pushed, the fleet's window, tokens */
    uint32_t                   d_total;
    uint32_t                   d_failures;
    uint32_t                   d_slow;
    uint32_t                   f_total;
    uint32_t                   f_failures;
    uint32_t                   f_slow;
    uint32_t                   f_at;         /* 32 bits, 0: never */
    uint32_t                   o_at;         /* last outcome, 32 bits */
    uint32_t                   tokens;
    uint32_t                   token_asked;  /* 32 bits */

    uint32_t                   leases[NGX_HTTP_BREAKER_MAX_PROBES];

    uint64_t                   successes;
    uint64_t                   failures;
    uint64_t                   slow;
    uint64_t                   rejected;
    uint64_t                   dry_run_rejected;
    uint64_t                   transitions;

    /* name, then key, then the window buckets (aligned) */
    u_char                     data[1];
} ngx_http_breaker_node_t;


typedef struct {
    u_char                     name[64];
    size_t                     len;
    ngx_http_breaker_override_t  override;
} ngx_http_breaker_named_override_t;


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                queue;
    ngx_queue_t                dirty;        /* breaker_shared: to push */
    ngx_uint_t                 queued;       /* in it */
    ngx_atomic_t               evictions;
    ngx_atomic_t               full;         /* no room even after evicting */
    ngx_atomic_t               sync_published;
    ngx_atomic_t               sync_received;
    ngx_atomic_t               sync_errors;
    ngx_atomic_t               sync_malformed;
    ngx_atomic_t               sync_dropped; /* unknown keys, over the cap */
    ngx_uint_t                 noticed;      /* under the zone mutex */
    ngx_uint_t                 nodes;        /* under the zone mutex */

    /* for keyed breakers created after a PUT, under the zone mutex */
    ngx_uint_t                 noverrides;
    ngx_http_breaker_named_override_t
                               overrides[NGX_HTTP_BREAKER_MAX_OVERRIDES];
} ngx_http_breaker_shctx_t;


typedef struct {
    ngx_http_breaker_shctx_t  *sh;
    ngx_slab_pool_t           *shpool;
    ngx_str_t                  name;
    ngx_uint_t                 full_logged;  /* per worker */
    ngx_uint_t                 metrics_keys; /* keys with series of their own */
} ngx_http_breaker_zone_t;


/* what a scrape copies of a breaker, under the zone mutex */

typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  key;
    ngx_uint_t                 state;
    ngx_msec_int_t             open_left;
    ngx_uint_t                 inflight;
    uint64_t                   counts[5];    /* by outcome */
    uint64_t                   transitions;
    uint64_t                   busy;         /* requests seen */
    ngx_uint_t                 report;       /* series of its own */
} ngx_http_breaker_snap_t;


typedef struct {
    ngx_str_t                  name;
    ngx_shm_zone_t            *zone;
    ngx_http_complex_value_t  *key;
    ngx_http_breaker_node_t   *node;         /* keyless, cached per worker */
    ngx_uint_t                 uses;         /* locations referring to it */
    ngx_uint_t                 buckets;      /* for nodes made by a notice */
    ngx_msec_t                 open_max;     /* notices clamped to it */
    ngx_uint_t                 shared;       /* breaker_shared on somewhere */
    ngx_uint_t                 created;      /* by lua-compat, in a zone */
} ngx_http_breaker_t;


typedef struct {
    ngx_array_t                breakers;     /* ngx_http_breaker_t * */
    ngx_array_t                zones;        /* ngx_shm_zone_t * */
    ngx_uint_t                 shared;       /* some breaker is shared */
} ngx_http_breaker_main_conf_t;


typedef struct {
    ngx_uint_t                 low;          /* requests per second */
    ngx_uint_t                 high;         /* 0: no upper bound */
    ngx_uint_t                 rate;         /* basis points */
} ngx_http_breaker_band_t;


typedef struct {
    ngx_http_breaker_t        *breaker;      /* NULL: no breaker here */

    ngx_msec_t                 window;
    ngx_uint_t                 buckets;
    ngx_uint_t                 min_requests;
    ngx_uint_t                 failure_rate;      /* basis points, 0 off */
    ngx_array_t               *bands;             /* qps policy */
    ngx_uint_t                 consecutive;       /* 0 off */
    ngx_msec_t                 slow_time;         /* 0 off */
    ngx_uint_t                 slow_rate;         /* basis points */
    ngx_msec_t                 open_time;
    ngx_msec_t                 open_max;
    ngx_uint_t                 open_jitter;       /* basis points */
    ngx_uint_t                 probes;
    ngx_msec_t                 probe_timeout;
    ngx_uint_t                 max_concurrent;    /* 0 off */
    ngx_uint_t                 mode;
    ngx_flag_t                 shared;

    ngx_http_resilience_status_set_t  *failure_status;
    ngx_uint_t                 failure_error;     /* error, invalid_header */
    ngx_uint_t                 failure_timeout;
    ngx_uint_t                 failure_deadline;

    ngx_uint_t                 fallback_status;
    ngx_str_t                  fallback_location;
} ngx_http_breaker_loc_conf_t;


typedef struct {
    ngx_http_breaker_node_t   *node;
    ngx_http_breaker_loc_conf_t  *conf;
    ngx_http_breaker_zone_t   *zone;
    uint32_t                   generation;
    ngx_int_t                  lease;        /* probe slot, -1 none */
    uint32_t                   lease_until;
    uint32_t                   tries_from;   /* r->upstream_states index */
    ngx_uint_t                 state;        /* at admission */
    ngx_uint_t                 mode;         /* in effect at admission */
    uint32_t                   tries_to;     /* at the first redirect */
    unsigned                   admitted:1;
    unsigned                   redirected:1; /* tries_to is set */
    unsigned                   counted:1;    /* in flight */
    unsigned                   recorded:1;
    unsigned                   rejected:1;
    unsigned                   ask_token:1;  /* for the fleet's budget */
    unsigned                   closed_it:1;  /* its outcome closed it */
    unsigned                   probe_ok:1;   /* for the fleet's count */
} ngx_http_breaker_ctx_t;


/*
 * The C ABI for lua-compat (ngx_http_breaker_lua.c), called through
 * LuaJIT's FFI: plain C types only, so that lua-compat/lib/resty/
 * resilience/breaker.lua declares them as they are here.
 */

#define NGX_HTTP_BREAKER_LUA_ADMITTED   0
#define NGX_HTTP_BREAKER_LUA_UNTRACKED  1   /* exempt key, full zone, off */
#define NGX_HTTP_BREAKER_LUA_OPEN       2
#define NGX_HTTP_BREAKER_LUA_FULL       3   /* the bulkhead */


typedef struct {
    uint32_t                   keyed;        /* 0 no, 1 yes, 2 either */
    uint32_t                   shared;       /* breaker_shared on */
    uint32_t                   created;      /* by Lua, in a zone */
    uint32_t                   buckets;
} ngx_http_breaker_lua_desc_t;


/* what Lua holds from allow() to report(): opaque past the first fields */

typedef struct {
    uint32_t                   state;        /* at admission */
    uint32_t                   generation;
    uint32_t                   probe;        /* holds a half-open lease */
    uint32_t                   dry_run;      /* would have been rejected */
    uint64_t                   opaque[14];
} ngx_http_breaker_lua_permit_t;


typedef struct {
    uint32_t                   state;
    uint32_t                   mode;         /* forced mode, 0: none */
    uint32_t                   generation;
    uint32_t                   trips;
    uint32_t                   inflight;
    uint32_t                   consecutive;  /* failures in a row */
    uint64_t                   open_ms;      /* left, when open */
    uint64_t                   successes;
    uint64_t                   failures;
    uint64_t                   slow;
    uint64_t                   rejected;
    uint64_t                   dry_run_rejected;
    uint64_t                   transitions;
} ngx_http_breaker_lua_info_t;


void *ngx_http_breaker_lua_breaker(const u_char *name, size_t len,
    const u_char *zone, size_t zone_len, ngx_http_breaker_lua_desc_t *desc,
    const char **err);
int ngx_http_breaker_lua_allow(ngx_http_request_t *r, void *breaker,
    const u_char *key, size_t len, ngx_http_breaker_lua_permit_t *permit);
int ngx_http_breaker_lua_report(ngx_http_request_t *r,
    ngx_http_breaker_lua_permit_t *permit, int outcome, int64_t latency);
void ngx_http_breaker_lua_release(ngx_http_breaker_lua_permit_t *permit);
int ngx_http_breaker_lua_state(void *breaker, const u_char *key,
    size_t len, ngx_http_breaker_lua_info_t *info);
int ngx_http_breaker_lua_force(ngx_http_request_t *r, void *breaker,
    int mode);


ngx_int_t ngx_http_breaker_init_zone(ngx_shm_zone_t *shm_zone, void *data);
ngx_http_breaker_node_t *ngx_http_breaker_lookup(ngx_http_breaker_zone_t *z,
    ngx_str_t *name, ngx_str_t *key, ngx_uint_t nbuckets, ngx_log_t *log);
ngx_http_breaker_node_t *ngx_http_breaker_lookup_notice(
    ngx_http_breaker_zone_t *z, ngx_str_t *name, ngx_str_t *key,
    ngx_uint_t nbuckets, ngx_uint_t create, ngx_log_t *log);
ngx_http_breaker_bucket_t *ngx_http_breaker_buckets(
    ngx_http_breaker_node_t *node);
ngx_int_t ngx_http_breaker_admin_init(ngx_conf_t *cf, ngx_array_t *breakers);
ngx_int_t ngx_http_breaker_override(ngx_http_breaker_zone_t *z,
    ngx_str_t *name, ngx_http_breaker_override_t *o, ngx_uint_t clear,
    ngx_uint_t *n, ngx_http_breaker_override_t *applied);

ngx_int_t ngx_http_breaker_sync_conf(ngx_conf_t *cf);
void ngx_http_breaker_sync_publish(ngx_http_request_t *r,
    ngx_http_breaker_ctx_t *ctx, ngx_msec_t duration);
ngx_int_t ngx_http_breaker_sync_init_worker(ngx_cycle_t *cycle,
    ngx_array_t *breakers, ngx_array_t *zones);
void ngx_http_breaker_sync_exit_worker(void);
void ngx_http_breaker_sync_ask_token(ngx_http_request_t *r,
    ngx_http_breaker_ctx_t *ctx);
void ngx_http_breaker_sync_restore_key(ngx_http_request_t *r,
    ngx_http_breaker_t *b, ngx_http_breaker_node_t *bn);
void ngx_http_breaker_sync_publish_close(ngx_http_request_t *r,
    ngx_http_breaker_ctx_t *ctx);
void ngx_http_breaker_sync_probe_ok(ngx_http_request_t *r,
    ngx_http_breaker_ctx_t *ctx);
void ngx_http_breaker_sync_publish_override(ngx_http_request_t *r,
    ngx_http_breaker_zone_t *z, ngx_str_t *name,
    ngx_http_breaker_override_t *o, ngx_uint_t clear);

ngx_uint_t ngx_http_breaker_enter(ngx_http_request_t *r,
    ngx_http_breaker_t *bp, ngx_http_breaker_loc_conf_t *blcf,
    ngx_str_t *key, ngx_uint_t shared, ngx_http_breaker_ctx_t *ctx);
ngx_uint_t ngx_http_breaker_admit(ngx_http_request_t *r,
    ngx_http_breaker_loc_conf_t *blcf, ngx_http_breaker_ctx_t *ctx);
ngx_msec_t ngx_http_breaker_record(ngx_http_request_t *r,
    ngx_http_breaker_ctx_t *ctx, ngx_uint_t outcome, ngx_uint_t slow);
void ngx_http_breaker_release(ngx_http_breaker_ctx_t *ctx);
ngx_uint_t ngx_http_breaker_current_state(ngx_http_breaker_node_t *node,
    ngx_msec_t now);
const char *ngx_http_breaker_state_name(ngx_uint_t state);
void ngx_http_breaker_transition(ngx_http_breaker_node_t *bn,
    ngx_uint_t state, ngx_msec_t now);

extern ngx_module_t  ngx_http_breaker_module;


#endif /* _NGX_HTTP_BREAKER_H_INCLUDED_ */
