
/*
 * nginx-resilience: ngx_http_ratelimit_module, what crosses its files.
 */


#ifndef _NGX_HTTP_RATELIMIT_H_INCLUDED_
#define _NGX_HTTP_RATELIMIT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_resilience.h"


#define NGX_HTTP_RATELIMIT_GCRA          0
#define NGX_HTTP_RATELIMIT_SLIDING       1

#define NGX_HTTP_RATELIMIT_SYNC_LOCAL    0
#define NGX_HTTP_RATELIMIT_SYNC_REDIS    1
#define NGX_HTTP_RATELIMIT_SYNC_STRICT   2

#define NGX_HTTP_RATELIMIT_ERR_LOCAL     0
#define NGX_HTTP_RATELIMIT_ERR_OPEN      1
#define NGX_HTTP_RATELIMIT_ERR_CLOSED    2

/* $ratelimit_status */
#define NGX_HTTP_RATELIMIT_PASSED        1
#define NGX_HTTP_RATELIMIT_DELAYED       2
#define NGX_HTTP_RATELIMIT_REJECTED      3
#define NGX_HTTP_RATELIMIT_DELAYED_DRY_RUN   4
#define NGX_HTTP_RATELIMIT_REJECTED_DRY_RUN  5

/* keys longer than this are stored as their MD5 */
#define NGX_HTTP_RATELIMIT_KEY_MAX       64
#define NGX_HTTP_RATELIMIT_HASHED        0x01

/* a request's cost is capped, so that cost x 1000 x instances fits */
#define NGX_HTTP_RATELIMIT_COST_MAX      1000000

/* what ngx_http_ratelimit_muldiv() saturates at: 2^62, room to add */
#define NGX_HTTP_RATELIMIT_HUGE          ((int64_t) 1 << 62)

/* figures from Redis are bounded by this (ns, or milli-requests) */
#define NGX_HTTP_RATELIMIT_WIRE_MAX      ((int64_t) 1000000000000000000)

/* milli-requests to ms at a zone's rate */
#define ngx_http_ratelimit_to_ms(z, m)                                        \
    ((ngx_msec_t) ngx_http_ratelimit_muldiv(m, (int64_t) (z)->rate.period,   \
                                            (int64_t) (z)->rate.milli))

/* at most this many limits take part in one request */
#define NGX_HTTP_RATELIMIT_MAX_LIMITS    16

/* sync=redis: keys per script, scripts per tick, nodes looked at */
#define NGX_HTTP_RATELIMIT_SYNC_BATCH    512
#define NGX_HTTP_RATELIMIT_SYNC_BATCHES  16
#define NGX_HTTP_RATELIMIT_SYNC_VISITS   65536
/* sync=redis: the busiest keys learn the fleet's state at every tick */
#define NGX_HTTP_RATELIMIT_SYNC_HOT      64
/* sync=redis: charges of evicted keys waiting for the next sync */
#define NGX_HTTP_RATELIMIT_ORPHANS       256

/* the fleet's census: an instance not seen for this long is gone */
#define NGX_HTTP_RATELIMIT_CENSUS        10000


/*
 * One key: 48 bytes from the rbtree node's color to the key, 80 from the
 * node's start, all of them in one slab allocation with the key: a key
 * up to 48 bytes takes a 128-byte slot, as limit_req's.  The LRU queue
 * links are 32-bit offsets in the zone (zones are below 4 GiB).
 *
 * GCRA keeps limit_req's representation: "excess" is how far the key's
 * theoretical arrival time is ahead of "last", in milli-requests, minus
 * the request itself; the sliding window keeps the current and the
 * previous window's counts (milli-requests) and the current window's
 * start (wall clock ms).
 */

typedef struct {
    uint32_t                   prev;         /* offsets in the zone */
    uint32_t                   next;
} ngx_http_ratelimit_link_t;


typedef struct {
    u_char                     color;
    u_char                     flags;
    u_char                     len;
    u_char                     spare;
    u_short                    pins;         /* requests holding the node */
    u_short                    conns;        /* resty.limit.conn's count */
    ngx_http_ratelimit_link_t  queue;        /* LRU */
    ngx_msec_t                 last;         /* gcra: monotonic ms */
    int64_t                    excess;       /* gcra; sliding: current */
    int64_t                    prev;         /* sliding: previous window */
    int64_t                    delta;        /* charged, not yet synced */
    u_char                     data[1];
} ngx_http_ratelimit_node_t;


/* a key and its charges not yet synced, as a sync sends them */

typedef struct {
    uint32_t                   hash;
    u_char                     flags;
    u_char                     len;
    u_char                     key[NGX_HTTP_RATELIMIT_KEY_MAX];
    int64_t                    delta;
} ngx_http_ratelimit_entry_t;


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_http_ratelimit_link_t  queue;        /* the LRU's sentinel */

    ngx_atomic_t               passed;
    ngx_atomic_t               delayed;
    ngx_atomic_t               rejected;
    ngx_atomic_t               dry_run;
    ngx_atomic_t               evicted;
    ngx_atomic_t               keys;
    ngx_atomic_t               redis_errors;
    ngx_atomic_t               fallbacks;
    ngx_atomic_t               syncs;
    ngx_atomic_t               unlimited;    /* no memory for the key */

    ngx_atomic_t               sync_lock;    /* pid syncing now, or 0 */
    ngx_msec_t                 sync_at;      /* when it started */
    ngx_msec_t                 census_at;    /* the last census sent */
    ngx_atomic_t               instances;    /* fleet size, last seen */
    ngx_atomic_t               degraded;     /* Redis failing */
    uint64_t                   id;           /* this instance */
    ngx_atomic_t               batches;      /* sync batches numbered */

    /* sync=redis: where the walk over the keys with charges stopped */
    ngx_uint_t                 cursor_set;
    ngx_http_ratelimit_entry_t cursor;

    /* sync=redis: charges of evicted keys, for the next sync */
    ngx_uint_t                 norphans;
    ngx_http_ratelimit_entry_t *orphans;
} ngx_http_ratelimit_shctx_t;


typedef struct {
    ngx_str_t                  name;
    ngx_shm_zone_t            *shm_zone;
    ngx_http_ratelimit_shctx_t *sh;
    ngx_slab_pool_t           *shpool;
    ngx_http_complex_value_t   key;
    ngx_http_resilience_rate_t rate;
    ngx_uint_t                 algorithm;
    ngx_uint_t                 sync;
    ngx_msec_t                 sync_interval;
    ngx_uint_t                 on_error;
    int64_t                    quota;        /* header "q" */
    ngx_uint_t                 window;       /* header "w", seconds */
    /* this worker's: syncs in flight, and failed ones to send again */
    ngx_uint_t                 inflight;
    void                      *pending;
} ngx_http_ratelimit_zone_t;


typedef struct {
    ngx_shm_zone_t            *shm_zone;
    int64_t                    burst;        /* milli-requests */
    int64_t                    delay;        /* milli-requests */
    ngx_http_complex_value_t  *cost;
} ngx_http_ratelimit_limit_t;


/* what one limit decided for one request */

typedef struct {
    ngx_array_t               *limits;       /* ngx_http_ratelimit_limit_t */
    ngx_uint_t                 status;
    ngx_flag_t                 dry_run;
    ngx_uint_t                 headers;
    ngx_uint_t                 log_level;
    ngx_uint_t                 delay_log_level;
} ngx_http_ratelimit_loc_conf_t;


typedef struct {
    ngx_http_ratelimit_limit_t *limit;
    ngx_http_ratelimit_zone_t  *zone;
    ngx_http_ratelimit_node_t  *node;        /* pinned, or NULL */
    ngx_str_t                   key;         /* as stored */
    uint32_t                    hash;
    u_char                      flags;
    u_char                      hashed[16];
    int64_t                     cost;        /* milli-requests */
    int64_t                     excess;      /* after this request */
    ngx_msec_t                  wait;        /* until it would pass */
    ngx_msec_t                  reset;       /* until fully reset */
    int64_t                     remaining;   /* requests */
    ngx_uint_t                  factor;      /* instances sharing it */
    unsigned                    strict:1;
    unsigned                    skip:1;      /* exempt, or Redis "open" */
    unsigned                    accounted:1;
    unsigned                    busy:1;      /* strict: Redis said no */
} ngx_http_ratelimit_try_t;


typedef struct {
    ngx_uint_t                 status;       /* $ratelimit_status */
    ngx_http_ratelimit_loc_conf_t *conf;
    ngx_http_ratelimit_zone_t *zone;         /* the headers' limit */
    ngx_http_ratelimit_limit_t *limit;
    int64_t                    remaining;
    ngx_msec_t                 reset;
    ngx_msec_t                 retry;        /* rejected: Retry-After */
    ngx_http_request_t        *request;      /* the main request */
    ngx_http_request_t        *resume;       /* the one to bring back */
    ngx_atomic_uint_t          number;       /* c->number */
    ngx_uint_t                 requests;     /* c->requests */
    void                      *waiter;       /* sync=strict, in flight */
    ngx_uint_t                 ntries;
    unsigned                   done:1;
    unsigned                   resumed:1;
    unsigned                   strict_rc:1;
    unsigned                   strict_failed:1;
    unsigned                   headers_sent:1;
    unsigned                   slot:1;       /* the connection's */
    /*
     * on the handler's stack while it decides; copied to the request's
     * pool only for a wait on Redis (sync=strict), so that a plain request
     * allocates no more than this context
     */
    ngx_http_ratelimit_try_t  *tries;
} ngx_http_ratelimit_ctx_t;


typedef struct {
    ngx_array_t                zones;        /* ngx_http_ratelimit_zone_t * */
    ngx_array_t                used;         /* ngx_shm_zone_t * */
    ngx_uint_t                 redis;        /* a zone syncs with Redis */
} ngx_http_ratelimit_main_conf_t;


/*
 * The C ABI for lua-compat (ngx_http_ratelimit_lua.c), called through
 * LuaJIT's FFI: plain C types only, so that lua-compat/lib/resty/
 * resilience/limit.lua can declare them as they are here.
 */

typedef struct {
    uint64_t                   milli;        /* requests per period, x1000 */
    uint64_t                   period;       /* ms */
    uint32_t                   algorithm;    /* 0 gcra, 1 sliding window */
    uint32_t                   sync;         /* 0 local, 1 redis, 2 strict */
} ngx_http_ratelimit_lua_zone_t;


typedef struct {
    int64_t                    excess;       /* milli-requests, after it */
    int64_t                    remaining;    /* requests left */
    uint64_t                   delay;        /* passed: ms to wait */
    uint64_t                   retry;        /* rejected: ms until it fits */
} ngx_http_ratelimit_lua_result_t;


void *ngx_http_ratelimit_lua_zone(const u_char *name, size_t len,
    ngx_http_ratelimit_lua_zone_t *info);
int ngx_http_ratelimit_lua_incoming(void *zone, const u_char *key,
    size_t len, int64_t burst, int64_t delay, int64_t cost, int commit,
    ngx_http_ratelimit_lua_result_t *out);
int ngx_http_ratelimit_lua_uncommit(void *zone, const u_char *key,
    size_t len, int64_t burst, int64_t cost,
    ngx_http_ratelimit_lua_result_t *out);
int ngx_http_ratelimit_lua_conn(void *zone, const u_char *key, size_t len,
    int delta, int64_t limit, int64_t *conns);
int64_t ngx_http_ratelimit_lua_reset(void *zone);


/* the shm side: ngx_http_ratelimit_shm.c */

ngx_int_t ngx_http_ratelimit_init_zone(ngx_shm_zone_t *shm_zone, void *data);
ngx_int_t ngx_http_ratelimit_conn(ngx_http_ratelimit_try_t *t,
    ngx_int_t delta, int64_t limit, int64_t *conns);
void ngx_http_ratelimit_set_key(ngx_http_ratelimit_try_t *t, u_char *key,
    size_t len);
ngx_int_t ngx_http_ratelimit_uncommit(ngx_http_ratelimit_try_t *t);
ngx_int_t ngx_http_ratelimit_check(ngx_http_ratelimit_try_t *t,
    ngx_uint_t account, ngx_uint_t factor);
void ngx_http_ratelimit_account(ngx_http_ratelimit_try_t *t,
    ngx_uint_t factor);
void ngx_http_ratelimit_unpin(ngx_http_ratelimit_try_t *t);
ngx_http_ratelimit_node_t *ngx_http_ratelimit_lookup(
    ngx_http_ratelimit_zone_t *z, uint32_t hash, u_char flags,
    u_char *key, size_t len);
void ngx_http_ratelimit_mirror(ngx_http_ratelimit_try_t *t, int64_t cur,
    int64_t prev, uint64_t start);
void ngx_http_ratelimit_merge(ngx_http_ratelimit_zone_t *z, uint32_t hash,
    u_char flags, u_char *key, size_t len, int64_t a, int64_t c,
    uint64_t start, int64_t restore, ngx_uint_t fleet);
void ngx_http_ratelimit_sliding(ngx_http_ratelimit_try_t *t, int64_t cur,
    int64_t prev, uint64_t wall, ngx_uint_t pass);
uint64_t ngx_http_ratelimit_wall(void);
int64_t ngx_http_ratelimit_muldiv(int64_t a, int64_t b, int64_t c);
ngx_uint_t ngx_http_ratelimit_reset(ngx_http_ratelimit_zone_t *z);
ngx_uint_t ngx_http_ratelimit_collect_dirty(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_entry_t *e, ngx_uint_t max);

/* the fleet: ngx_http_ratelimit_sync.c */

ngx_int_t ngx_http_ratelimit_sync_init_conf(ngx_conf_t *cf);
ngx_int_t ngx_http_ratelimit_sync_init_worker(ngx_cycle_t *cycle,
    ngx_http_ratelimit_main_conf_t *rmcf);
void ngx_http_ratelimit_sync_exit_worker(void);
ngx_int_t ngx_http_ratelimit_strict(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx);
void ngx_http_ratelimit_strict_cancel(ngx_http_ratelimit_ctx_t *ctx);
ngx_uint_t ngx_http_ratelimit_degraded(ngx_http_ratelimit_zone_t *z);
ngx_int_t ngx_http_ratelimit_fallback(ngx_http_ratelimit_try_t *t);
void ngx_http_ratelimit_resume(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx);


extern ngx_module_t  ngx_http_ratelimit_module;


#endif /* _NGX_HTTP_RATELIMIT_H_INCLUDED_ */
