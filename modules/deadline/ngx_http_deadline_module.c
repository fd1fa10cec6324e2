
/*
 * nginx-resilience: ngx_http_deadline_module, one time budget per request.
 *
 * The budget comes from trusted request headers (grpc-timeout and the
 * like; the strictest wins) or from "deadline", is anchored at the
 * request's arrival, capped and reduced, and then enforced in the
 * locations answered by an upstream module (proxy_pass, grpc_pass,
 * fastcgi_pass, uwsgi_pass, scgi_pass, memcached_pass), whose content
 * handler is wrapped: the request fails fast when too little is left,
 * before its body is read and again once it is, just before the upstream
 * request is built; the time left is propagated in a header, computed
 * then; one timer per request fires at the deadline and ends whatever is
 * under way (reading the body, connecting, sending, waiting for the
 * answer), and when the upstream has more than one peer to try, the
 * request's own copy of the upstream configuration gets
 * next_upstream_timeout clamped, so that no try starts past the deadline.
 * Other content handlers (Lua, static files, resilience_status) run
 * untouched: they see the deadline through the variables and the Lua API.
 *
 * Its counters (requests by source, failed fast, cut, the budget left
 * when the upstream answered) live in a small zone of its own, shared by
 * the workers and kept across reloads, and are shown by resilience_status.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_resilience.h"


#define NGX_HTTP_DEADLINE_GRPC      1
#define NGX_HTTP_DEADLINE_MS        2
#define NGX_HTTP_DEADLINE_S         3
#define NGX_HTTP_DEADLINE_EPOCH_MS  4

/* larger budgets are nonsense; an epoch_ms further ahead is clock skew */
#define NGX_HTTP_DEADLINE_LIMIT     (86400 * 1000)

/*
 * Requests are counted by the source of their budget: one counter per
 * header name, in a fixed table.  Slot 0 is the "deadline" directive's
 * budget, slot 1 takes the names that find no room (the table fills up
 * only when reloads bring new names: slots live as long as the zone).
 */
#define NGX_HTTP_DEADLINE_SLOTS     32
#define NGX_HTTP_DEADLINE_DEFAULT   0
#define NGX_HTTP_DEADLINE_OTHER     1
#define NGX_HTTP_DEADLINE_NAME_LEN  64

/* the histogram of the budget left when the upstream answered */
#define NGX_HTTP_DEADLINE_BUCKETS   11

/* deadline_from lines a location may have */
#define NGX_HTTP_DEADLINE_SOURCES   16

/*
 * deadline_min auto: the answer times (to the response header) of the
 * last requests of each such location, in the zone; a location's median
 * over those younger than its window is the least a request must have
 * left to be let through.
 */
#define NGX_HTTP_DEADLINE_AUTO      16
#define NGX_HTTP_DEADLINE_SAMPLES   32
#define NGX_HTTP_DEADLINE_AUTO_MIN  3        /* samples for a median */

/* the content handlers of the upstream modules learnt at configuration */
#define NGX_HTTP_DEADLINE_HANDLERS  8


typedef struct {
    ngx_str_t                  header;       /* lowercase */
    ngx_uint_t                 hash;         /* as r->headers_in's */
    ngx_uint_t                 format;
    ngx_http_complex_value_t  *trusted;
    ngx_uint_t                 name;         /* in the main conf's names */
} ngx_http_deadline_source_t;


typedef struct {
    ngx_atomic_t               requests;
    size_t                     len;
    u_char                     name[NGX_HTTP_DEADLINE_NAME_LEN];
} ngx_http_deadline_slot_t;


/*
 * A location's recent answer times: each sample is the upstream's answer
 * time in ms (low 32 bits) and when it was taken, ngx_current_msec's low
 * 32 bits (high 32 bits), written at once; 0: none yet.
 */

typedef struct {
    ngx_atomic_t               next;
    ngx_atomic_t               samples[NGX_HTTP_DEADLINE_SAMPLES];
} ngx_http_deadline_auto_t;


/*
 * The zone.  Workers only add to counters; names are written by the
 * master in init_zone, before the slot count that makes them visible.
 */

typedef struct {
    ngx_atomic_t               failed_fast;
    ngx_atomic_t               cut;
    ngx_atomic_t               left[NGX_HTTP_DEADLINE_BUCKETS + 1];
    ngx_atomic_t               left_sum;     /* ms */
    ngx_atomic_t               nslots;
    ngx_http_deadline_slot_t   slots[NGX_HTTP_DEADLINE_SLOTS];
    ngx_http_deadline_auto_t   autos[NGX_HTTP_DEADLINE_AUTO];
} ngx_http_deadline_shctx_t;


typedef struct {
    /* "default", "other", then each header name of deadline_from */
    ngx_str_t                  names[NGX_HTTP_DEADLINE_SLOTS];
    ngx_uint_t                 slots[NGX_HTTP_DEADLINE_SLOTS];   /* zone's */
    ngx_uint_t                 nnames;
    ngx_uint_t                 used;
    ngx_shm_zone_t            *shm_zone;
    ngx_http_deadline_shctx_t *sh;
    ngx_http_handler_pt        handlers[NGX_HTTP_DEADLINE_HANDLERS];
    ngx_uint_t                 nhandlers;
    ngx_module_t              *memcached;
    ngx_uint_t                 nautos;
    unsigned                   learnt:1;
} ngx_http_deadline_main_conf_t;


typedef struct {
    ngx_msec_t                 deadline;     /* 0: off */
    ngx_array_t               *sources;
    ngx_msec_t                 max;          /* 0: none */
    ngx_msec_t                 offset;
    ngx_msec_t                 min;
    ngx_msec_t                 min_window;   /* deadline_min auto, 0: not */
    ngx_uint_t                 min_slot;     /* its samples in the zone */
    ngx_uint_t                 status;
    ngx_str_t                  propagate;
    ngx_uint_t                 propagate_hash;
    ngx_uint_t                 propagate_format;
    uint64_t                   lengths;      /* of the headers looked for */
    ngx_uint_t                 same;         /* sources named as propagate */
    ngx_http_handler_pt        content;      /* the wrapped handler */
    void                     **loc_conf;     /* the location's, merged */
} ngx_http_deadline_loc_conf_t;


typedef struct {
    uint64_t                   at;           /* Unix ms, 0: no deadline */
    ngx_event_t                timer;        /* fires at the deadline */
    ngx_http_request_t        *request;      /* the one with the upstream */
    ngx_table_elt_t           *header;       /* the propagated header */
    u_char                    *scanned;      /* its name when looked for */
    ngx_atomic_uint_t          number;       /* slot: the connection's */
    ngx_uint_t                 requests;     /* slot: its request */
    u_char                     value[NGX_INT64_LEN + 2];
    ngx_uint_t                 autos;        /* min_slot + 1, 0: none */
    unsigned                   slot:1;       /* the connection's, reused */
    unsigned                   repeated:1;   /* the header came twice */
    unsigned                   waiting:1;    /* for the body, no upstream */
    unsigned                   early:1;      /* armed, not at content yet */
    unsigned                   cut:1;        /* the deadline cut a try */
} ngx_http_deadline_ctx_t;


static ngx_http_deadline_ctx_t *ngx_http_deadline_ctx(ngx_http_request_t *r);
static ngx_int_t ngx_http_deadline_scan(ngx_http_request_t *r,
    ngx_http_deadline_ctx_t *ctx, ngx_http_deadline_loc_conf_t *dlcf,
    uint64_t start, uint64_t *best, ngx_uint_t *name);
static ngx_int_t ngx_http_deadline_parse(ngx_str_t *v, ngx_uint_t format,
    uint64_t now, uint64_t start, uint64_t *at);
static uint64_t ngx_http_deadline_now(void);
static ngx_int_t ngx_http_deadline_left(ngx_http_request_t *r,
    ngx_msec_int_t *left);
int64_t ngx_http_deadline_lua_remaining(ngx_http_request_t *r);
static ngx_int_t ngx_http_deadline_rewrite_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_deadline_content(ngx_http_request_t *r);
static void ngx_http_deadline_upstream_init(ngx_http_request_t *r);
static ngx_inline ngx_int_t ngx_http_deadline_admit(ngx_http_request_t *r,
    ngx_http_deadline_ctx_t *ctx, ngx_http_deadline_loc_conf_t *dlcf,
    ngx_msec_t *left);
static ngx_msec_t ngx_http_deadline_median(ngx_http_request_t *r,
    ngx_http_deadline_loc_conf_t *dlcf);
static void ngx_http_deadline_retries(ngx_http_request_t *r,
    ngx_http_deadline_ctx_t *ctx, ngx_http_upstream_t *u);
static ngx_int_t ngx_http_deadline_fail(ngx_http_request_t *r,
    ngx_http_deadline_loc_conf_t *dlcf);
static ngx_uint_t ngx_http_deadline_is_grpc(ngx_http_request_t *r);
static ngx_int_t ngx_http_deadline_grpc_answer(ngx_http_request_t *r,
    char *message);
static ngx_int_t ngx_http_deadline_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_deadline_propagate(ngx_http_request_t *r,
    ngx_http_deadline_ctx_t *ctx, ngx_http_deadline_loc_conf_t *dlcf,
    ngx_msec_t left);
static void ngx_http_deadline_find_header(ngx_http_request_t *r,
    ngx_http_deadline_ctx_t *ctx, ngx_http_deadline_loc_conf_t *dlcf);
static u_char *ngx_http_deadline_uint(u_char *end, uint64_t n);
static u_char *ngx_http_deadline_grpc(u_char *end, uint64_t left);
static void ngx_http_deadline_expire(ngx_event_t *ev);
static void ngx_http_deadline_early(ngx_http_request_t *r,
    ngx_http_deadline_ctx_t *ctx, ngx_http_deadline_main_conf_t *dmcf);
static void ngx_http_deadline_cleanup(void *data);
static ngx_int_t ngx_http_deadline_log_handler(ngx_http_request_t *r);
static void ngx_http_deadline_answered(ngx_http_deadline_ctx_t *ctx);
static ngx_int_t ngx_http_deadline_collect(ngx_http_resilience_metrics_t *m,
    void *data);
static ngx_int_t ngx_http_deadline_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_deadline_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_deadline_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_deadline_init_process(ngx_cycle_t *cycle);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

/* this worker's contexts, one per connection: see ngx_http_deadline_ctx() */
static ngx_http_deadline_ctx_t         **ngx_http_deadline_slots;

static ngx_int_t ngx_http_deadline_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_deadline_intern(ngx_http_deadline_main_conf_t *dmcf,
    ngx_log_t *log);
static void *ngx_http_deadline_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_deadline_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_deadline_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_deadline(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_deadline_from(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_deadline_msec(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_deadline_min(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_deadline_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_deadline_propagate_set(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_deadline_format(ngx_str_t *v, ngx_uint_t s_ok);
static ngx_int_t ngx_http_deadline_name(ngx_conf_t *cf,
    ngx_http_deadline_main_conf_t *dmcf, ngx_http_deadline_source_t *src);
static ngx_int_t ngx_http_deadline_learn(ngx_conf_t *cf,
    ngx_http_deadline_main_conf_t *dmcf);
static ngx_uint_t ngx_http_deadline_upstream(
    ngx_http_deadline_main_conf_t *dmcf, ngx_http_core_loc_conf_t *clcf,
    ngx_http_deadline_loc_conf_t *prev, ngx_http_deadline_loc_conf_t *conf);


#define NGX_HTTP_DEADLINE_CONF                                                \
    NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF

static ngx_command_t  ngx_http_deadline_commands[] = {

    { ngx_string("deadline"),
      NGX_HTTP_DEADLINE_CONF|NGX_CONF_TAKE1,
      ngx_http_deadline,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("deadline_from"),
      NGX_HTTP_DEADLINE_CONF|NGX_CONF_TAKE23,
      ngx_http_deadline_from,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("deadline_max"),
      NGX_HTTP_DEADLINE_CONF|NGX_CONF_TAKE1,
      ngx_http_deadline_msec,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_deadline_loc_conf_t, max),
      NULL },

    { ngx_string("deadline_offset"),
      NGX_HTTP_DEADLINE_CONF|NGX_CONF_TAKE1,
      ngx_http_deadline_msec,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_deadline_loc_conf_t, offset),
      NULL },

    { ngx_string("deadline_min"),
      NGX_HTTP_DEADLINE_CONF|NGX_CONF_TAKE12,
      ngx_http_deadline_min,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("deadline_status"),
      NGX_HTTP_DEADLINE_CONF|NGX_CONF_TAKE1,
      ngx_http_deadline_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("deadline_propagate"),
      NGX_HTTP_DEADLINE_CONF|NGX_CONF_TAKE2,
      ngx_http_deadline_propagate_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_deadline_module_ctx = {
    ngx_http_deadline_add_variables,       /* preconfiguration */
    ngx_http_deadline_postconfiguration,   /* postconfiguration */

    ngx_http_deadline_create_main_conf,    /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_deadline_create_loc_conf,     /* create location configuration */
    ngx_http_deadline_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_deadline_module = {
    NGX_MODULE_V1,
    &ngx_http_deadline_module_ctx,         /* module context */
    ngx_http_deadline_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_deadline_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_deadline_vars[] = {

    { ngx_string("deadline_remaining_ms"), NULL, ngx_http_deadline_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("deadline_grpc_timeout"), NULL, ngx_http_deadline_variable,
      1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("deadline_expired"), NULL, ngx_http_deadline_variable,
      2, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_deadline_formats[] = {
    ngx_null_string,
    ngx_string("grpc"),
    ngx_string("ms"),
    ngx_string("s"),
    ngx_string("epoch_ms")
};


static u_char  ngx_http_deadline_digits[] =
    "00010203040506070809101112131415161718192021222324252627282930313233"
    "34353637383940414243444546474849505152535455565758596061626364656667"
    "6869707172737475767778798081828384858687888990919293949596979899";


/* upper bounds of the budget-left buckets, ms */

static ngx_msec_t  ngx_http_deadline_bounds[NGX_HTTP_DEADLINE_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};


/*
 * The upstream modules whose pass directive takes variables: their
 * content handlers are learnt by giving the directive "$host" in a
 * scratch location (no upstream is added that way).  memcached_pass
 * takes no variables: its locations are told by the upstream it sets.
 */

static ngx_str_t  ngx_http_deadline_passes[][2] = {
    { ngx_string("ngx_http_proxy_module"), ngx_string("proxy_pass") },
    { ngx_string("ngx_http_grpc_module"), ngx_string("grpc_pass") },
    { ngx_string("ngx_http_fastcgi_module"), ngx_string("fastcgi_pass") },
    { ngx_string("ngx_http_uwsgi_module"), ngx_string("uwsgi_pass") },
    { ngx_string("ngx_http_scgi_module"), ngx_string("scgi_pass") }
};


static ngx_str_t  ngx_http_deadline_zone_name =
    ngx_string("nginx_resilience_deadline");


/* the budget */


static uint64_t
ngx_http_deadline_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/*
 * One header value to an absolute Unix time in ms, anchored at the
 * request's arrival (start).  NGX_DECLINED: malformed, the caller logs.
 */

static ngx_int_t
ngx_http_deadline_parse(ngx_str_t *v, ngx_uint_t format, uint64_t now,
    uint64_t start, uint64_t *at)
{
    u_char     *p, *last, unit;
    uint64_t    n, ms;
    ngx_int_t   fp;
    ngx_uint_t  digits;

    p = v->data;
    last = v->data + v->len;

    if (format == NGX_HTTP_DEADLINE_S) {
        /* a non-negative number, up to three decimals */
        fp = ngx_atofp(p, v->len, 3);

        if (fp == NGX_ERROR || fp > NGX_HTTP_DEADLINE_LIMIT) {
            return NGX_DECLINED;
        }

        *at = start + (uint64_t) fp;
        return NGX_OK;
    }

    n = 0;
    digits = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        n = n * 10 + (*p++ - '0');

        if (++digits > 18) {
            return NGX_DECLINED;
        }
    }

    if (digits == 0) {
        return NGX_DECLINED;
    }

    switch (format) {

    case NGX_HTTP_DEADLINE_GRPC:

        /* 1 to 8 digits and one unit, as gRPC's TimeoutValue/TimeoutUnit */

        if (digits > 8 || last - p != 1) {
            return NGX_DECLINED;
        }

        unit = *p;

        switch (unit) {
        case 'H':
            ms = n * 3600000;
            break;
        case 'M':
            ms = n * 60000;
            break;
        case 'S':
            ms = n * 1000;
            break;
        case 'm':
            ms = n;
            break;
        case 'u':
            ms = n / 1000;
            break;
        case 'n':
            ms = n / 1000000;
            break;
        default:
            return NGX_DECLINED;
        }

        if (ms > NGX_HTTP_DEADLINE_LIMIT) {
            ms = NGX_HTTP_DEADLINE_LIMIT;
        }

        *at = start + ms;
        return NGX_OK;

    case NGX_HTTP_DEADLINE_MS:

        if (p != last || n > NGX_HTTP_DEADLINE_LIMIT) {
            return NGX_DECLINED;
        }

        *at = start + n;
        return NGX_OK;

    default: /* NGX_HTTP_DEADLINE_EPOCH_MS */

        if (p != last || n > now + NGX_HTTP_DEADLINE_LIMIT) {
            /* garbage, or a clock too far ahead to trust */
            return NGX_DECLINED;
        }

        *at = n;
        return NGX_OK;
    }
}


/*
 * The request's budget, computed once, in one pass over the request
 * headers for every deadline_from source (and the propagated header).
 * A request that has a deadline keeps it through internal redirects
 * (error_page, named locations), which clear module contexts: as the
 * realip module does, the context is found again through the pool
 * cleanup that holds it.
 */

static ngx_http_deadline_ctx_t *
ngx_http_deadline_ctx(ngx_http_request_t *r)
{
    uint64_t                        start, best, k;
    ngx_uint_t                      name;
    ngx_connection_t               *c;
    ngx_pool_cleanup_t             *cln;
    ngx_http_deadline_ctx_t        *ctx, **slot;
    ngx_http_deadline_loc_conf_t   *dlcf;
    ngx_http_deadline_main_conf_t  *dmcf;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_deadline_module);

    if (ctx != NULL) {
        return ctx;
    }

    c = r->connection;
    slot = NULL;

    if (ngx_http_deadline_slots
        && c >= ngx_cycle->connections
        && c < ngx_cycle->connections + ngx_cycle->connection_n)
    {
        slot = &ngx_http_deadline_slots[c - ngx_cycle->connections];
        ctx = *slot;

        if (ctx && ctx->number == c->number && ctx->requests == c->requests)
        {
            /* this request's, after an internal redirect */
            ngx_http_set_ctx(r, ctx, ngx_http_deadline_module);
            return ctx;
        }

    } else if (r->internal || r->filter_finalize) {
        ctx = ngx_http_resilience_ctx(r, &ngx_http_deadline_module,
                                      ngx_http_deadline_cleanup);
        if (ctx) {
            return ctx;
        }
    }

    if (slot) {
        /*
         * A connection of this worker's connection array: its context,
         * reused by its requests one after the other, allocates nothing
         * per request (an allocation here pushed the request pool into a
         * new block); the log phase takes its timer away.
         */

        ctx = *slot;

        if (ctx == NULL) {
            ctx = ngx_pcalloc(ngx_cycle->pool,
                              sizeof(ngx_http_deadline_ctx_t));
            if (ctx == NULL) {
                return NULL;
            }

            *slot = ctx;

        } else {
            if (ctx->timer.timer_set) {
                ngx_del_timer(&ctx->timer);
            }

            /* the event keeps its state between requests: no timer set */

            ctx->at = 0;
            ctx->autos = 0;
            ctx->request = NULL;
            ctx->header = NULL;
            ctx->scanned = NULL;
            ctx->repeated = 0;
            ctx->waiting = 0;
            ctx->early = 0;
            ctx->cut = 0;
        }

        ctx->slot = 1;
        ctx->number = c->number;
        ctx->requests = c->requests;

    } else {
        /* the timer's and the histogram's; it finds the context again */

        cln = ngx_pool_cleanup_add(r->pool,
                                   sizeof(ngx_http_deadline_ctx_t));
        if (cln == NULL) {
            return NULL;
        }

        ctx = cln->data;
        ngx_memzero(ctx, sizeof(ngx_http_deadline_ctx_t));

        cln->handler = ngx_http_deadline_cleanup;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_deadline_module);

    dlcf = ngx_http_get_module_loc_conf(r, ngx_http_deadline_module);

    start = (uint64_t) r->start_sec * 1000 + r->start_msec;
    best = 0;
    name = NGX_HTTP_DEADLINE_DEFAULT;

    if (dlcf->sources || dlcf->propagate.len) {
        if (ngx_http_deadline_scan(r, ctx, dlcf, start, &best, &name)
            != NGX_OK)
        {
            return NULL;
        }
    }

    if (best == 0 && dlcf->deadline) {
        best = start + dlcf->deadline;
    }

    if (best == 0) {
        return ctx;
    }

    if (dlcf->max && best > start + dlcf->max) {
        best = start + dlcf->max;
    }

    k = dlcf->offset;
    best = (best > start + k) ? best - k : start;

    ctx->at = best ? best : 1;

    dmcf = ngx_http_get_module_main_conf(r, ngx_http_deadline_module);

    if (dmcf->sh) {
        (void) ngx_atomic_fetch_add(
                            &dmcf->sh->slots[dmcf->slots[name]].requests, 1);
    }

    return ctx;
}


/*
 * The pass over the request headers: each deadline_from source's value
 * (the strictest wins) and the propagated header, to be replaced later.
 */

static ngx_int_t
ngx_http_deadline_scan(ngx_http_request_t *r, ngx_http_deadline_ctx_t *ctx,
    ngx_http_deadline_loc_conf_t *dlcf, uint64_t start, uint64_t *best,
    ngx_uint_t *name)
{
    uint64_t                     now, budget, lengths;
    uint64_t                     at[NGX_HTTP_DEADLINE_SOURCES];
    ngx_str_t                    trusted;
    ngx_uint_t                   i, j, n, prop, bit, found, ignored;
    ngx_list_part_t             *part;
    ngx_table_elt_t             *h;
    ngx_http_deadline_source_t  *src;

    n = dlcf->sources ? dlcf->sources->nelts : 0;
    src = n ? dlcf->sources->elts : NULL;

    now = 0;
    lengths = dlcf->lengths;

    /* a bit per source: a value found, the source ignored */
    found = 0;
    ignored = 0;

    ctx->scanned = dlcf->propagate.data;

    for (part = &r->headers_in.headers.part; part; part = part->next) {

        h = part->elts;

        for (j = 0; j < part->nelts; j++) {

            /* most headers are not looked for: their length says so */

            if (h[j].hash == 0
                || ((lengths >> (h[j].key.len & 63)) & 1) == 0)
            {
                continue;
            }

            prop = 0;

            if (h[j].hash == dlcf->propagate_hash
                && h[j].key.len == dlcf->propagate.len
                && ngx_strncmp(h[j].lowcase_key, dlcf->propagate.data,
                               dlcf->propagate.len)
                   == 0)
            {
                prop = 1;

                if (ctx->header == NULL) {
                    ctx->header = &h[j];

                } else {
                    ctx->repeated = 1;
                }
            }

            for (i = 0; i < n; i++) {

                bit = (ngx_uint_t) 1 << i;

                if (h[j].hash != src[i].hash || (ignored & bit)) {
                    continue;
                }

                if (dlcf->same & ((ngx_uint_t) 1 << i)) {
                    /* the propagated header's name: compared already */

                    if (!prop) {
                        continue;
                    }

                } else if (h[j].key.len != src[i].header.len
                           || ngx_strncmp(h[j].lowcase_key, src[i].header.data,
                                          src[i].header.len)
                              != 0)
                {
                    continue;
                }

                if (!(found & bit) && src[i].trusted) {
                    if (ngx_http_complex_value(r, src[i].trusted, &trusted)
                        != NGX_OK)
                    {
                        return NGX_ERROR;
                    }

                    if (trusted.len == 0
                        || (trusted.len == 1 && trusted.data[0] == '0'))
                    {
                        ignored |= bit;
                        continue;
                    }
                }

                if (now == 0) {
                    now = ngx_http_deadline_now();
                }

                if (ngx_http_deadline_parse(&h[j].value, src[i].format, now,
                                            start, &budget)
                    != NGX_OK)
                {
                    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                                  "deadline: ignored \"%V: %V\", not a valid "
                                  "%V value", &h[j].key, &h[j].value,
                                  &ngx_http_deadline_formats[src[i].format]);
                    ignored |= bit;
                    continue;
                }

                /* every occurrence: repeated values must agree */

                if ((found & bit) && budget != at[i]) {
                    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                                  "deadline: ignored \"%V\", repeated with "
                                  "values that disagree", &h[j].key);
                    ignored |= bit;
                    continue;
                }

                found |= bit;
                at[i] = budget;
            }
        }
    }

    found &= ~ignored;

    for (i = 0; i < n; i++) {
        if ((found & ((ngx_uint_t) 1 << i))
            && (*best == 0 || at[i] < *best))
        {
            *best = at[i];
            *name = src[i].name;
        }
    }

    return NGX_OK;
}



/* NGX_DECLINED: no deadline for this request */

static ngx_int_t
ngx_http_deadline_left(ngx_http_request_t *r, ngx_msec_int_t *left)
{
    uint64_t                  now;
    ngx_http_deadline_ctx_t  *ctx;

    ctx = ngx_http_deadline_ctx(r);

    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (ctx->at == 0) {
        return NGX_DECLINED;
    }

    now = ngx_http_deadline_now();

    *left = (ctx->at > now) ? (ngx_msec_int_t) (ctx->at - now) : 0;

    return NGX_OK;
}


/*
 * The C ABI for lua-compat (lua-compat/lib/resty/resilience/deadline.lua,
 * through LuaJIT's FFI, with the request from lua-resty-core's
 * get_request()): the milliseconds left in the request's budget, 0 when
 * it is spent, -1 when the request has no deadline, -2 on an error.
 */

int64_t
ngx_http_deadline_lua_remaining(ngx_http_request_t *r)
{
    ngx_int_t       rc;
    ngx_msec_int_t  left;

    if (r == NULL) {
        return -2;
    }

    rc = ngx_http_deadline_left(r, &left);

    if (rc == NGX_ERROR) {
        return -2;
    }

    if (rc == NGX_DECLINED) {
        return -1;
    }

    return (int64_t) left;
}


/*
 * The rewrite phase of an upstream location: the timer is set for the
 * deadline already, so that a request held before its content phase (a
 * rate limit's delay) is answered at the deadline, not after the wait.
 */

static ngx_int_t
ngx_http_deadline_rewrite_handler(ngx_http_request_t *r)
{
    uint64_t                       now;
    ngx_http_deadline_ctx_t       *ctx;
    ngx_http_deadline_loc_conf_t  *dlcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    dlcf = ngx_http_get_module_loc_conf(r, ngx_http_deadline_module);

    if (dlcf->content == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_deadline_ctx(r);

    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->at == 0 || ctx->timer.timer_set) {
        return NGX_DECLINED;
    }

    now = ngx_http_deadline_now();

    if (ctx->at <= now) {
        /* the content phase answers it */
        return NGX_DECLINED;
    }

    ctx->request = r;
    ctx->early = 1;

    ctx->timer.handler = ngx_http_deadline_expire;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;

    ngx_add_timer(&ctx->timer, (ngx_msec_t) (ctx->at - now));

    return NGX_DECLINED;
}


/*
 * The wrapped content handler of an upstream location: the request fails
 * fast when too little is left, else the timer is set for the deadline,
 * and the upstream module runs.  When it has a body to read first, the
 * upstream starts through ngx_http_deadline_upstream_init instead of
 * ngx_http_upstream_init, to be checked again then.
 */

static ngx_int_t
ngx_http_deadline_content(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_msec_t                     left;
    ngx_http_upstream_t           *u;
    ngx_http_request_body_t       *rb;
    ngx_http_deadline_ctx_t       *ctx;
    ngx_http_deadline_loc_conf_t  *dlcf;

    dlcf = ngx_http_get_module_loc_conf(r, ngx_http_deadline_module);

    ctx = ngx_http_deadline_ctx(r);

    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->early = 0;

    if (ctx->at == 0) {
        return dlcf->content(r);
    }

    rc = ngx_http_deadline_admit(r, ctx, dlcf, &left);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_deadline_fail(r, dlcf);
    }

    ctx->request = r;

    /* the log phase (or the pool cleanup) takes the timer away */

    if (!ctx->timer.timer_set) {
        ctx->timer.handler = ngx_http_deadline_expire;
        ctx->timer.data = ctx;
        ctx->timer.log = r->connection->log;

        ngx_add_timer(&ctx->timer, left);
    }

    rc = dlcf->content(r);

    u = r->upstream;

    if (u == NULL) {
        return rc;
    }

    if (u->cleanup == NULL) {
        /* ngx_http_upstream_init_request() has not run: reading the body */

        rb = r->request_body;

        if (rb != NULL && rb->post_handler == ngx_http_upstream_init
            && !r->header_sent)
        {
            rb->post_handler = ngx_http_deadline_upstream_init;
            ctx->waiting = 1;
        }

        return rc;
    }

    ngx_http_deadline_retries(r, ctx, u);

    return rc;
}


/*
 * The body is read: the upstream request is about to be built.  Too
 * little left: the answer, and the upstream is never contacted; else the
 * propagated value is set from the time left now.
 */

static void
ngx_http_deadline_upstream_init(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_msec_t                     left;
    ngx_http_upstream_t           *u;
    ngx_http_deadline_ctx_t       *ctx;
    ngx_http_deadline_loc_conf_t  *dlcf;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_deadline_module);

    if (ctx == NULL) {
        ngx_http_upstream_init(r);
        return;
    }

    ctx->waiting = 0;

    dlcf = ngx_http_get_module_loc_conf(r, ngx_http_deadline_module);

    rc = ngx_http_deadline_admit(r, ctx, dlcf, &left);

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r, ngx_http_deadline_fail(r, dlcf));
        return;
    }

    /* the request must outlive ngx_http_upstream_init() for a look */

    r->main->count++;

    ngx_http_upstream_init(r);

    u = r->upstream;

    if (u != NULL && u->cleanup != NULL) {
        ngx_http_deadline_retries(r, ctx, u);
    }

    ngx_http_finalize_request(r, NGX_DONE);
}


/*
 * The time left, just before the upstream request is built: NGX_DECLINED
 * (counted, logged) when it is spent or less than deadline_min, else the
 * propagated header is set to it.
 */

static ngx_inline ngx_int_t
ngx_http_deadline_admit(ngx_http_request_t *r, ngx_http_deadline_ctx_t *ctx,
    ngx_http_deadline_loc_conf_t *dlcf, ngx_msec_t *left)
{
    uint64_t                        now;
    ngx_msec_t                      min;
    ngx_http_deadline_main_conf_t  *dmcf;

    now = ngx_http_deadline_now();

    *left = (ctx->at > now) ? (ngx_msec_t) (ctx->at - now) : 0;

    min = dlcf->min;

    if (dlcf->min_window) {
        ctx->autos = dlcf->min_slot + 1;
        min = ngx_http_deadline_median(r, dlcf);
    }

    if (*left == 0 || *left < min) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "deadline: %M ms left, less than %M%s: failing fast",
                      *left, min,
                      dlcf->min_window ? " (the upstream's recent median "
                                         "answer time)" : "");

        dmcf = ngx_http_get_module_main_conf(r, ngx_http_deadline_module);

        if (dmcf->sh) {
            (void) ngx_atomic_fetch_add(&dmcf->sh->failed_fast, 1);
        }

        return NGX_DECLINED;
    }

    if (dlcf->propagate.len) {
        return ngx_http_deadline_propagate(r, ctx, dlcf, *left);
    }

    return NGX_OK;
}


/*
 * deadline_min auto: the location's median answer time over its samples
 * younger than the window; 0 (let through) with too few of them, so that
 * a location whose upstream is back to speed is tried again once its
 * slow samples are older than the window.
 */

static ngx_msec_t
ngx_http_deadline_median(ngx_http_request_t *r,
    ngx_http_deadline_loc_conf_t *dlcf)
{
    uint32_t                        now, v, ms[NGX_HTTP_DEADLINE_SAMPLES];
    uint64_t                        sample;
    ngx_uint_t                      i, j, n;
    ngx_http_deadline_auto_t       *a;
    ngx_http_deadline_main_conf_t  *dmcf;

    dmcf = ngx_http_get_module_main_conf(r, ngx_http_deadline_module);

    if (dmcf->sh == NULL) {
        return dlcf->min;
    }

    a = &dmcf->sh->autos[dlcf->min_slot];
    now = (uint32_t) ngx_current_msec;
    n = 0;

    for (i = 0; i < NGX_HTTP_DEADLINE_SAMPLES; i++) {
        sample = a->samples[i];

        if (sample == 0
            || (uint32_t) (now - (uint32_t) (sample >> 32))
               > dlcf->min_window)
        {
            continue;
        }

        /* insertion sort: 32 values at most */

        v = (uint32_t) sample;

        for (j = n; j > 0 && ms[j - 1] > v; j--) {
            ms[j] = ms[j - 1];
        }

        ms[j] = v;
        n++;
    }

    if (n < NGX_HTTP_DEADLINE_AUTO_MIN) {
        return dlcf->min;
    }

    return ngx_max(ms[n / 2], dlcf->min);
}


/*
 * An upstream with more than one peer to try: the request's own copy of
 * the upstream configuration gets next_upstream_timeout ending at the
 * deadline (nginx checks it before every further try), unless its own
 * ends earlier.  One peer: no copy.
 */

static void
ngx_http_deadline_retries(ngx_http_request_t *r, ngx_http_deadline_ctx_t *ctx,
    ngx_http_upstream_t *u)
{
    uint64_t                   now;
    ngx_msec_t                 t;
    ngx_http_upstream_conf_t  *conf;

    if (u->peer.tries <= 1 || u->peer.connection == NULL) {
        return;
    }

    now = ngx_http_deadline_now();

    if (ctx->at <= now) {
        return;
    }

    t = (ngx_msec_t) (ctx->at - now) + (ngx_current_msec - u->peer.start_time);

    if (u->conf->next_upstream_timeout
        && u->conf->next_upstream_timeout <= t)
    {
        return;
    }

    conf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));
    if (conf == NULL) {
        return;
    }

    ngx_memcpy(conf, u->conf, sizeof(ngx_http_upstream_conf_t));

    conf->next_upstream_timeout = t;

    u->conf = conf;
}


/*
 * At the deadline.  The upstream not started yet (the body still being
 * read, or the request held by proxy_cache_lock): the answer now, and the
 * upstream is never contacted.  Started but no peer connection (its name
 * being resolved): the upstream is finalized through its own cleanup,
 * then the answer.  A try under way: no further try, and its pending
 * nginx timer (or the read timer, when it has none) is made to fire now,
 * so nginx's own timeout path runs (a 504).
 */

static void
ngx_http_deadline_expire(ngx_event_t *ev)
{
    ngx_connection_t               *c, *pc;
    ngx_http_request_t             *r;
    ngx_http_upstream_t            *u;
    ngx_http_deadline_ctx_t        *ctx;
    ngx_http_deadline_loc_conf_t   *dlcf;
    ngx_http_deadline_main_conf_t  *dmcf;

    ctx = ev->data;
    r = ctx->request;

    if (r == NULL || r->done) {
        return;
    }

    c = r->connection;
    dmcf = ngx_http_get_module_main_conf(r, ngx_http_deadline_module);

    u = r->upstream;

    if (u == NULL) {
        ngx_http_deadline_early(r, ctx, dmcf);
        return;
    }

    if (ctx->waiting && u->cleanup == NULL) {
        ctx->waiting = 0;

        if (r->header_sent) {
            /* answered already (a cache, an error) */
            return;
        }

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "deadline: spent while the request body was read, "
                      "the upstream not contacted");

        if (dmcf->sh) {
            (void) ngx_atomic_fetch_add(&dmcf->sh->failed_fast, 1);
        }

        /* the rest of the body is not read: the connection goes */

        r->keepalive = 0;
        r->lingering_close = 1;

        dlcf = ngx_http_get_module_loc_conf(r, ngx_http_deadline_module);

        ngx_http_finalize_request(r, ngx_http_deadline_fail(r, dlcf));
        ngx_http_run_posted_requests(c);
        return;
    }

    ctx->waiting = 0;

    pc = u->peer.connection;

    if (pc == NULL) {
        if (u->cleanup == NULL || *u->cleanup == NULL || r->header_sent) {
            return;
        }

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "deadline: spent before the upstream was contacted");

        if (dmcf->sh) {
            (void) ngx_atomic_fetch_add(&dmcf->sh->failed_fast, 1);
        }

        /* the upstream's cleanup finalizes the request once (NGX_DONE) */

        r->main->count++;
        (*u->cleanup)(r);

        dlcf = ngx_http_get_module_loc_conf(r, ngx_http_deadline_module);

        ngx_http_finalize_request(r, ngx_http_deadline_fail(r, dlcf));
        ngx_http_run_posted_requests(c);
        return;
    }

    /* this try is the last: the timeout that follows ends the request */

    u->peer.tries = 1;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "deadline: spent, cutting the upstream");

    /* for the breaker: the timeout that follows is the deadline's doing */
    ngx_http_resilience_set_deadline(r, ctx->at);

    if (dmcf->sh) {
        (void) ngx_atomic_fetch_add(&dmcf->sh->cut, 1);
    }

    ctx->cut = 1;

    if (!pc->read->timer_set && !pc->write->timer_set) {
        ngx_add_timer(pc->read, 1);
        return;
    }

    if (pc->read->timer_set) {
        ngx_add_timer(pc->read, 1);
    }

    if (pc->write->timer_set) {
        ngx_add_timer(pc->write, 1);
    }
}


/*
 * The deadline before the content phase of an upstream location: a
 * request held alone (a rate limit's delay: no subrequest, nothing else
 * holding it) is answered now, its delay given up; one that went on to a
 * location without an upstream is left alone.
 */

static void
ngx_http_deadline_early(ngx_http_request_t *r, ngx_http_deadline_ctx_t *ctx,
    ngx_http_deadline_main_conf_t *dmcf)
{
    ngx_connection_t              *c;
    ngx_http_deadline_loc_conf_t  *dlcf;

    if (!ctx->early) {
        return;
    }

    ctx->early = 0;

    dlcf = ngx_http_get_module_loc_conf(r, ngx_http_deadline_module);

    if (dlcf->content == NULL || r->header_sent || r->main->count != 1
        || r->postponed)
    {
        return;
    }

    c = r->connection;

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "deadline: spent before the content phase, "
                  "the upstream not contacted");

    if (dmcf->sh) {
        (void) ngx_atomic_fetch_add(&dmcf->sh->failed_fast, 1);
    }

    /* the delay's timer would hold the answer back */

    if (c->write->delayed) {
        c->write->delayed = 0;

        if (c->write->timer_set) {
            ngx_del_timer(c->write);
        }
    }

    ngx_http_finalize_request(r, ngx_http_deadline_fail(r, dlcf));
    ngx_http_run_posted_requests(c);
}


/*
 * The request is done (its log phase, or its pool goes): the timer too,
 * and the histogram.
 */

static ngx_int_t
ngx_http_deadline_log_handler(ngx_http_request_t *r)
{
    ngx_connection_t         *c;
    ngx_http_deadline_ctx_t  *ctx;

    if (r != r->main) {
        return NGX_OK;
    }

    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_deadline_module);

    if (ctx == NULL) {
        /* an internal redirect cleared it: the slot tells */

        if (ngx_http_deadline_slots == NULL
            || c < ngx_cycle->connections
            || c >= ngx_cycle->connections + ngx_cycle->connection_n)
        {
            return NGX_OK;
        }

        ctx = ngx_http_deadline_slots[c - ngx_cycle->connections];

        if (ctx == NULL) {
            return NGX_OK;
        }
    }

    if (!ctx->slot || ctx->number != c->number
        || ctx->requests != c->requests)
    {
        return NGX_OK;
    }

    /* the slot is free for the connection's next request */
    ctx->number = 0;

    ngx_http_deadline_cleanup(ctx);

    return NGX_OK;
}


static void
ngx_http_deadline_cleanup(void *data)
{
    ngx_http_deadline_ctx_t  *ctx = data;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (ctx->request != NULL) {
        ngx_http_deadline_answered(ctx);
    }
}


/*
 * The budget left when the upstream's response header arrived, into the
 * histogram.  nginx records that moment for the last try as
 * u->start_time + u->state->header_time (ngx_current_msec, monotonic; a
 * try without a header keeps header_time at -1), so it is read here, once
 * the request is over, instead of hooking the upstream's header handlers:
 * the elapsed time since then is taken off the wall clock, both being
 * nginx's cached times, updated together.  Runs from the log phase (or
 * the pool cleanup), before the pool's memory (where the upstream lives)
 * is freed; it also feeds deadline_min auto.  A try the deadline cut
 * has no header: for deadline_min auto it is a sample of one more than
 * it lasted (the answer would have taken longer), so that an upstream
 * slower than every budget is shed too; the histogram does not see it.
 */

static void
ngx_http_deadline_answered(ngx_http_deadline_ctx_t *ctx)
{
    uint64_t                        now, at;
    ngx_uint_t                      i, k, n;
    ngx_http_deadline_auto_t       *a;
    ngx_msec_t                      since, left, took;
    ngx_http_upstream_t            *u;
    ngx_http_deadline_shctx_t      *sh;
    ngx_http_deadline_main_conf_t  *dmcf;

    u = ctx->request->upstream;

    if (u == NULL || u->state == NULL) {
        return;
    }

    if (u->state->header_time == (ngx_msec_t) -1
        && (!ctx->cut || !ctx->autos
            || u->state->response_time == (ngx_msec_t) -1))
    {
        return;
    }

    dmcf = ngx_http_get_module_main_conf(ctx->request,
                                         ngx_http_deadline_module);
    sh = dmcf->sh;

    if (sh == NULL) {
        return;
    }

    if (u->state->header_time == (ngx_msec_t) -1) {
        took = u->state->response_time + 1;
        goto sample;
    }

    took = u->state->header_time;

    now = ngx_http_deadline_now();
    since = ngx_current_msec - (u->start_time + u->state->header_time);

    at = (now > since) ? now - since : 0;
    left = (ctx->at > at) ? (ngx_msec_t) (ctx->at - at) : 0;

    /* the first bucket that takes it: a binary search */

    i = 0;
    n = NGX_HTTP_DEADLINE_BUCKETS;

    while (i < n) {
        k = (i + n) / 2;

        if (left <= ngx_http_deadline_bounds[k]) {
            n = k;

        } else {
            i = k + 1;
        }
    }

    (void) ngx_atomic_fetch_add(&sh->left[i], 1);
    (void) ngx_atomic_fetch_add(&sh->left_sum, left);

sample:

    if (ctx->autos) {
        a = &sh->autos[ctx->autos - 1];
        i = ngx_atomic_fetch_add(&a->next, 1) % NGX_HTTP_DEADLINE_SAMPLES;

        a->samples[i] = ((uint64_t) (uint32_t) ngx_current_msec << 32)
                        | (uint32_t) took;
    }
}


/* 504 by default; for gRPC, the gRPC way: 200 and grpc-status 4 */

static ngx_int_t
ngx_http_deadline_fail(ngx_http_request_t *r,
    ngx_http_deadline_loc_conf_t *dlcf)
{
    ngx_int_t  rc;

    if (!ngx_http_deadline_is_grpc(r)) {
        return dlcf->status;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_deadline_grpc_answer(r,
                                 "deadline exceeded before the upstream")
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_send_header(r);
}


static ngx_uint_t
ngx_http_deadline_is_grpc(ngx_http_request_t *r)
{
    return r->headers_in.content_type != NULL
           && r->headers_in.content_type->value.len >= 16
           && ngx_strncasecmp(r->headers_in.content_type->value.data,
                              (u_char *) "application/grpc", 16)
              == 0;
}


/*
 * A gRPC "trailers-only" answer: HTTP 200, grpc-status 4
 * (DEADLINE_EXCEEDED) and a message in the headers, no body.
 */

static ngx_int_t
ngx_http_deadline_grpc_answer(ngx_http_request_t *r, char *message)
{
    ngx_table_elt_t  *h;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.status_line.len = 0;
    r->headers_out.content_length_n = 0;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/grpc");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "grpc-status");
    ngx_str_set(&h->value, "4");

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "grpc-message");
    h->value.data = (u_char *) message;
    h->value.len = ngx_strlen(message);

    r->header_only = 1;

    return NGX_OK;
}


/*
 * The deadline cut the upstream before its response began: nginx answers
 * 504 (its special response); a gRPC client gets the gRPC way instead,
 * as when failing fast.  A try cut after the response began cannot be
 * changed: the stream is reset, as nginx does for any upstream timeout.
 */

static ngx_int_t
ngx_http_deadline_header_filter(ngx_http_request_t *r)
{
    ngx_http_deadline_ctx_t  *ctx;

    if (r->headers_out.status != NGX_HTTP_GATEWAY_TIME_OUT || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_deadline_module);

    /*
     * nginx's own 504 for the try the deadline cut: no header came from
     * the upstream (a 504 a fallback's upstream sent is left alone)
     */

    if (ctx == NULL || !ctx->cut || !ngx_http_deadline_is_grpc(r)
        || r->upstream == NULL || r->upstream->state == NULL
        || r->upstream->state->header_time != (ngx_msec_t) -1)
    {
        return ngx_http_next_header_filter(r);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "deadline: the upstream was cut, answering gRPC status 4");

    if (ngx_http_deadline_grpc_answer(r,
                              "deadline exceeded while waiting for the "
                              "upstream")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/*
 * A decimal number, without ngx_sprintf() (on every request), written
 * backwards so that it ends at "end": its first byte is returned.
 */

static u_char *
ngx_http_deadline_uint(u_char *end, uint64_t n)
{
    uint64_t  q;

    /* two digits a step, from a table */

    while (n >= 100) {
        q = n / 100;
        end -= 2;
        ngx_memcpy(end, &ngx_http_deadline_digits[(n - q * 100) * 2], 2);
        n = q;
    }

    if (n >= 10) {
        end -= 2;
        ngx_memcpy(end, &ngx_http_deadline_digits[n * 2], 2);
        return end;
    }

    *--end = (u_char) ('0' + n);

    return end;
}


/* the time left, in gRPC's TimeoutValue (8 digits at most) and unit */

static u_char *
ngx_http_deadline_grpc(u_char *end, uint64_t left)
{
    if (left <= 99999999) {
        *--end = 'm';
        return ngx_http_deadline_uint(end, left);
    }

    *--end = 'S';

    return ngx_http_deadline_uint(end, left / 1000);
}


/*
 * Sets the header (replacing any the client sent) the upstream gets; the
 * header was looked for when the budget was computed, in the same pass.
 */

static ngx_int_t
ngx_http_deadline_propagate(ngx_http_request_t *r,
    ngx_http_deadline_ctx_t *ctx, ngx_http_deadline_loc_conf_t *dlcf,
    ngx_msec_t left)
{
    u_char           *p, *end;
    ngx_table_elt_t  *h;

    if (ctx->scanned != dlcf->propagate.data || ctx->repeated) {
        ngx_http_deadline_find_header(r, ctx, dlcf);
    }

    end = ctx->value + sizeof(ctx->value);

    switch (dlcf->propagate_format) {
    case NGX_HTTP_DEADLINE_GRPC:
        p = ngx_http_deadline_grpc(end, left);
        break;
    case NGX_HTTP_DEADLINE_EPOCH_MS:
        p = ngx_http_deadline_uint(end, ctx->at);
        break;
    default:
        p = ngx_http_deadline_uint(end, left);
        break;
    }

    h = ctx->header;

    if (h == NULL) {
        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        h->key = dlcf->propagate;
        h->lowcase_key = dlcf->propagate.data;

        ctx->header = h;
    }

    h->value.data = p;
    h->value.len = end - p;

    return NGX_OK;
}


/*
 * The propagated header, looked for again: another location's name, or
 * the client sent it more than once (one value only: the others are not
 * sent).
 */

static void
ngx_http_deadline_find_header(ngx_http_request_t *r,
    ngx_http_deadline_ctx_t *ctx, ngx_http_deadline_loc_conf_t *dlcf)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ctx->header = NULL;
    ctx->repeated = 0;
    ctx->scanned = dlcf->propagate.data;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0
            || h[i].key.len != dlcf->propagate.len
            || ngx_strncasecmp(h[i].key.data, dlcf->propagate.data,
                               dlcf->propagate.len)
               != 0)
        {
            continue;
        }

        if (ctx->header == NULL) {
            ctx->header = &h[i];

        } else {
            h[i].hash = 0;
        }
    }
}


static ngx_int_t
ngx_http_deadline_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char          *p, *end;
    ngx_int_t        rc;
    ngx_msec_int_t   left;

    rc = ngx_http_deadline_left(r, &left);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    end = p + NGX_INT64_LEN + 2;

    switch (data) {
    case 0:
        v->data = ngx_http_deadline_uint(end, left);
        break;
    case 1:
        v->data = ngx_http_deadline_grpc(end, left);
        break;
    default:
        v->data = end - 1;
        *v->data = (left == 0) ? '1' : '0';
        break;
    }

    v->len = end - v->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* metrics */


static ngx_int_t
ngx_http_deadline_collect(ngx_http_resilience_metrics_t *m, void *data)
{
    ngx_http_deadline_main_conf_t *dmcf = data;

    double                      bounds[NGX_HTTP_DEADLINE_BUCKETS];
    uint64_t                    counts[NGX_HTTP_DEADLINE_BUCKETS + 1];
    ngx_uint_t                  i, n, slot;
    ngx_keyval_t                label;
    ngx_http_deadline_slot_t   *sl;
    ngx_http_deadline_shctx_t  *sh;

    sh = dmcf->sh;

    if (sh == NULL) {
        return NGX_OK;
    }

    if (ngx_http_resilience_metrics_family(m, "deadline_requests_total",
            NGX_HTTP_RESILIENCE_COUNTER,
            "Requests given a deadline, by the source of the budget: "
            "the header, or \"default\" (the deadline directive).")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&label.key, "source");

    /* "default", the header names, "other" last */

    n = sh->nslots;
    ngx_memory_barrier();

    for (i = 0; i < n; i++) {
        slot = (i == 0) ? NGX_HTTP_DEADLINE_DEFAULT
               : (i == n - 1) ? NGX_HTTP_DEADLINE_OTHER
               : i + 1;

        sl = &sh->slots[slot];

        label.value.data = sl->name;
        label.value.len = sl->len;

        if (ngx_http_resilience_metrics_sample(m, &label, 1,
                                               (double) sl->requests)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_resilience_metrics_family(m, "deadline_failed_fast_total",
            NGX_HTTP_RESILIENCE_COUNTER,
            "Requests answered without contacting the upstream, "
            "too little of their budget left.")
        != NGX_OK
        || ngx_http_resilience_metrics_sample(m, NULL, 0,
                                              (double) sh->failed_fast)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_resilience_metrics_family(m, "deadline_cut_total",
            NGX_HTTP_RESILIENCE_COUNTER,
            "Upstream tries cut because the deadline passed while "
            "they were under way.")
        != NGX_OK
        || ngx_http_resilience_metrics_sample(m, NULL, 0, (double) sh->cut)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_HTTP_DEADLINE_BUCKETS; i++) {
        bounds[i] = (double) ngx_http_deadline_bounds[i];
        counts[i] = sh->left[i];
    }

    counts[i] = sh->left[i];

    if (ngx_http_resilience_metrics_family(m, "deadline_budget_left_ms",
            NGX_HTTP_RESILIENCE_HISTOGRAM,
            "Budget left (ms) when the upstream's response header "
            "arrived.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_resilience_metrics_histogram(m, NULL, 0,
                                                 NGX_HTTP_DEADLINE_BUCKETS,
                                                 bounds, counts,
                                                 (double) sh->left_sum);
}


/* configuration */


static ngx_int_t
ngx_http_deadline_add_variables(ngx_conf_t *cf)
{
    return ngx_http_resilience_add_variables(cf, ngx_http_deadline_vars);
}


static void *
ngx_http_deadline_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_deadline_main_conf_t  *dmcf;

    dmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_deadline_main_conf_t));
    if (dmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     dmcf->used = 0;
     *     dmcf->shm_zone = NULL;
     *     dmcf->sh = NULL;
     */

    ngx_str_set(&dmcf->names[NGX_HTTP_DEADLINE_DEFAULT], "default");
    ngx_str_set(&dmcf->names[NGX_HTTP_DEADLINE_OTHER], "other");
    dmcf->nnames = 2;

    return dmcf;
}


/* the zone and the collector, once a budget can be set anywhere */

static ngx_int_t
ngx_http_deadline_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt            *h;
    ngx_http_core_main_conf_t      *cmcf;
    ngx_http_deadline_main_conf_t  *dmcf;

    dmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_deadline_module);

    if (!dmcf->used) {
        return NGX_OK;
    }

    /* a fixed name and size: the zone of the last cycle is reused */

    dmcf->shm_zone = ngx_shared_memory_add(cf, &ngx_http_deadline_zone_name,
                                           8 * ngx_pagesize,
                                           &ngx_http_deadline_module);
    if (dmcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    dmcf->shm_zone->init = ngx_http_deadline_init_zone;
    dmcf->shm_zone->data = dmcf;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_deadline_header_filter;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_deadline_log_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_deadline_rewrite_handler;

    return ngx_http_resilience_metrics_add_collector(cf,
                                                 ngx_http_deadline_collect,
                                                 dmcf);
}


/* the contexts of this worker's connections, once a budget can be set */

static ngx_int_t
ngx_http_deadline_init_process(ngx_cycle_t *cycle)
{
    ngx_http_deadline_main_conf_t  *dmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    dmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_deadline_module);

    if (dmcf == NULL || !dmcf->used) {
        return NGX_OK;
    }

    ngx_http_deadline_slots = ngx_pcalloc(cycle->pool,
                                  cycle->connection_n
                                  * sizeof(ngx_http_deadline_ctx_t *));
    if (ngx_http_deadline_slots == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_deadline_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_deadline_main_conf_t  *odmcf = data;

    ngx_slab_pool_t                *shpool;
    ngx_http_deadline_shctx_t      *sh;
    ngx_http_deadline_main_conf_t  *dmcf;

    dmcf = shm_zone->data;

    if (odmcf) {
        /* reload: the counters carry on, new names get slots */
        dmcf->sh = odmcf->sh;
        ngx_http_deadline_intern(dmcf, shm_zone->shm.log);
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        dmcf->sh = shpool->data;
        ngx_http_deadline_intern(dmcf, shm_zone->shm.log);
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_deadline_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;

    sh->slots[NGX_HTTP_DEADLINE_DEFAULT].len = sizeof("default") - 1;
    ngx_memcpy(sh->slots[NGX_HTTP_DEADLINE_DEFAULT].name, "default",
               sizeof("default") - 1);

    sh->slots[NGX_HTTP_DEADLINE_OTHER].len = sizeof("other") - 1;
    ngx_memcpy(sh->slots[NGX_HTTP_DEADLINE_OTHER].name, "other",
               sizeof("other") - 1);

    sh->nslots = 2;

    dmcf->sh = sh;
    ngx_http_deadline_intern(dmcf, shm_zone->shm.log);

    return NGX_OK;
}


/*
 * Each header name of the configuration to its slot in the zone: the
 * slot it had in an earlier cycle, else a new one, else "other".  Runs in
 * the master; a new slot's name is written before the count that lets
 * the workers' collectors read it.
 */

static void
ngx_http_deadline_intern(ngx_http_deadline_main_conf_t *dmcf, ngx_log_t *log)
{
    ngx_uint_t                  i, j, n;
    ngx_http_deadline_slot_t   *sl;
    ngx_http_deadline_shctx_t  *sh;

    sh = dmcf->sh;

    dmcf->slots[NGX_HTTP_DEADLINE_DEFAULT] = NGX_HTTP_DEADLINE_DEFAULT;
    dmcf->slots[NGX_HTTP_DEADLINE_OTHER] = NGX_HTTP_DEADLINE_OTHER;

    for (i = 2; i < dmcf->nnames; i++) {

        n = sh->nslots;

        for (j = 2; j < n; j++) {
            sl = &sh->slots[j];

            if (sl->len == dmcf->names[i].len
                && ngx_memcmp(sl->name, dmcf->names[i].data, sl->len) == 0)
            {
                break;
            }
        }

        if (j < n) {
            dmcf->slots[i] = j;
            continue;
        }

        if (n == NGX_HTTP_DEADLINE_SLOTS) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "deadline: no metrics slot left for \"%V\" "
                          "(the zone keeps the names of earlier "
                          "configurations until a restart), counted as "
                          "source=\"other\"", &dmcf->names[i]);

            dmcf->slots[i] = NGX_HTTP_DEADLINE_OTHER;
            continue;
        }

        sl = &sh->slots[n];
        sl->requests = 0;
        sl->len = dmcf->names[i].len;
        ngx_memcpy(sl->name, dmcf->names[i].data, sl->len);

        ngx_memory_barrier();

        sh->nslots = n + 1;
        dmcf->slots[i] = n;
    }
}


static void *
ngx_http_deadline_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_deadline_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_deadline_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->sources = NULL;
     *     conf->propagate = { 0, NULL };
     *     conf->propagate_hash = 0;
     *     conf->content = NULL;
     *     conf->loc_conf = NULL;
     *     conf->min_slot = 0;
     */

    conf->deadline = NGX_CONF_UNSET_MSEC;
    conf->max = NGX_CONF_UNSET_MSEC;
    conf->offset = NGX_CONF_UNSET_MSEC;
    conf->min = NGX_CONF_UNSET_MSEC;
    conf->min_window = NGX_CONF_UNSET_MSEC;
    conf->status = NGX_CONF_UNSET_UINT;
    conf->propagate_format = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_deadline_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_deadline_loc_conf_t *prev = parent;
    ngx_http_deadline_loc_conf_t *conf = child;

    ngx_uint_t                      i;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_deadline_source_t     *src;
    ngx_http_deadline_main_conf_t  *dmcf;

    /* for the nested locations' merge: which upstream is whose */
    conf->loc_conf = ((ngx_http_conf_ctx_t *) cf->ctx)->loc_conf;

    ngx_conf_merge_msec_value(conf->deadline, prev->deadline, 0);
    ngx_conf_merge_msec_value(conf->max, prev->max, 0);
    ngx_conf_merge_msec_value(conf->offset, prev->offset, 0);
    ngx_conf_merge_msec_value(conf->min, prev->min, 0);
    ngx_conf_merge_msec_value(conf->min_window, prev->min_window, 0);
    ngx_conf_merge_uint_value(conf->status, prev->status,
                              NGX_HTTP_GATEWAY_TIME_OUT);

    if (conf->sources == NULL) {
        conf->sources = prev->sources;
    }

    if (conf->propagate_format == NGX_CONF_UNSET_UINT) {
        conf->propagate = prev->propagate;
        conf->propagate_hash = prev->propagate_hash;
        conf->propagate_format = prev->propagate_format;
    }

    if (conf->deadline == 0 && conf->sources == NULL) {
        return NGX_CONF_OK;
    }

    conf->lengths = 0;

    if (conf->propagate.len) {
        conf->lengths |= (uint64_t) 1 << (conf->propagate.len & 63);
    }

    src = conf->sources ? conf->sources->elts : NULL;

    conf->same = 0;

    for (i = 0; src && i < conf->sources->nelts; i++) {
        conf->lengths |= (uint64_t) 1 << (src[i].header.len & 63);

        if (src[i].header.len == conf->propagate.len
            && ngx_strncmp(src[i].header.data, conf->propagate.data,
                           conf->propagate.len)
               == 0)
        {
            conf->same |= (ngx_uint_t) 1 << i;
        }
    }

    /*
     * Wrap the location's content handler (set while the location was
     * parsed), once, when an upstream module set it.
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == NULL || clcf->handler == ngx_http_deadline_content) {
        return NGX_CONF_OK;
    }

    dmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_deadline_module);

    if (!dmcf->learnt && ngx_http_deadline_learn(cf, dmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (!ngx_http_deadline_upstream(dmcf, clcf, prev, conf)) {
        return NGX_CONF_OK;
    }

    conf->content = clcf->handler;
    clcf->handler = ngx_http_deadline_content;

    if (conf->min_window) {
        /* the location's own samples */

        if (dmcf->nautos == NGX_HTTP_DEADLINE_AUTO) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"deadline_min auto\" applies to more than "
                               "%d locations with an upstream (the limit "
                               "of its samples' zone): location \"%V\" "
                               "is one more; set in a server or http "
                               "block, it applies to each of that block's "
                               "upstream locations: set it only in those "
                               "that need it", NGX_HTTP_DEADLINE_AUTO,
                               &clcf->name);
            return NGX_CONF_ERROR;
        }

        conf->min_slot = dmcf->nautos++;
    }

    return NGX_CONF_OK;
}


/*
 * The content handlers of proxy_pass, grpc_pass, fastcgi_pass,
 * uwsgi_pass and scgi_pass (those of the modules this nginx has): each
 * directive is given "$host" in a scratch location, which sets the
 * handler and compiles the variable, and adds no upstream.
 */

static ngx_int_t
ngx_http_deadline_learn(ngx_conf_t *cf, ngx_http_deadline_main_conf_t *dmcf)
{
    char                      *rv;
    void                      *mconf, *saved_ctx;
    ngx_str_t                 *arg;
    ngx_uint_t                 i, k;
    ngx_array_t               *saved_args, args;
    ngx_module_t              *m;
    ngx_command_t             *cmd;
    ngx_http_module_t         *mctx;
    ngx_http_conf_ctx_t       *ctx, scratch;
    ngx_http_core_loc_conf_t  *clcf;

    dmcf->learnt = 1;

    ctx = cf->ctx;

    for (i = 0; cf->cycle->modules[i]; i++) {
        m = cf->cycle->modules[i];

        if (m->type != NGX_HTTP_MODULE) {
            continue;
        }

        if (ngx_strcmp(m->name, "ngx_http_memcached_module") == 0) {
            dmcf->memcached = m;
            continue;
        }

        for (k = 0; k < sizeof(ngx_http_deadline_passes)
                        / sizeof(ngx_http_deadline_passes[0]); k++)
        {
            if (ngx_strcmp(m->name, ngx_http_deadline_passes[k][0].data)
                == 0)
            {
                break;
            }
        }

        if (k == sizeof(ngx_http_deadline_passes)
                 / sizeof(ngx_http_deadline_passes[0]))
        {
            continue;
        }

        for (cmd = m->commands; cmd && cmd->name.len; cmd++) {
            if (cmd->name.len == ngx_http_deadline_passes[k][1].len
                && ngx_strcmp(cmd->name.data,
                              ngx_http_deadline_passes[k][1].data)
                   == 0)
            {
                break;
            }
        }

        mctx = m->ctx;

        if (cmd == NULL || cmd->name.len == 0
            || mctx->create_loc_conf == NULL
            || dmcf->nhandlers == NGX_HTTP_DEADLINE_HANDLERS)
        {
            continue;
        }

        scratch.main_conf = ctx->main_conf;
        scratch.srv_conf = ctx->srv_conf;
        scratch.loc_conf = ngx_pcalloc(cf->pool,
                                       sizeof(void *) * ngx_http_max_module);
        if (scratch.loc_conf == NULL) {
            return NGX_ERROR;
        }

        clcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_core_loc_conf_t));
        if (clcf == NULL) {
            return NGX_ERROR;
        }

        scratch.loc_conf[ngx_http_core_module.ctx_index] = clcf;

        if (ngx_array_init(&args, cf->pool, 2, sizeof(ngx_str_t)) != NGX_OK) {
            return NGX_ERROR;
        }

        arg = ngx_array_push_n(&args, 2);
        if (arg == NULL) {
            return NGX_ERROR;
        }

        arg[0] = ngx_http_deadline_passes[k][1];
        ngx_str_set(&arg[1], "$host");

        saved_ctx = cf->ctx;
        saved_args = cf->args;

        cf->ctx = &scratch;
        cf->args = &args;

        mconf = mctx->create_loc_conf(cf);

        if (mconf == NULL) {
            rv = NGX_CONF_ERROR;

        } else {
            scratch.loc_conf[m->ctx_index] = mconf;
            rv = cmd->set(cf, cmd, mconf);
        }

        cf->ctx = saved_ctx;
        cf->args = saved_args;

        if (rv != NGX_CONF_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "deadline: \"%V\" in a scratch location "
                               "failed", &ngx_http_deadline_passes[k][1]);
            return NGX_ERROR;
        }

        if (clcf->handler) {
            dmcf->handlers[dmcf->nhandlers++] = clcf->handler;
        }
    }

    return NGX_OK;
}


/*
 * Is the location answered by an upstream module?  One of the handlers
 * learnt, or a memcached_pass of this location (its upstream set here,
 * not inherited from the enclosing location).
 */

static ngx_uint_t
ngx_http_deadline_upstream(ngx_http_deadline_main_conf_t *dmcf,
    ngx_http_core_loc_conf_t *clcf, ngx_http_deadline_loc_conf_t *prev,
    ngx_http_deadline_loc_conf_t *conf)
{
    ngx_uint_t                 i;
    ngx_http_upstream_conf_t  *uc, *puc;

    for (i = 0; i < dmcf->nhandlers; i++) {
        if (clcf->handler == dmcf->handlers[i]) {
            return 1;
        }
    }

    if (dmcf->memcached == NULL) {
        return 0;
    }

    /* the memcached module's location configuration begins with it */

    uc = conf->loc_conf[dmcf->memcached->ctx_index];
    puc = prev->loc_conf ? prev->loc_conf[dmcf->memcached->ctx_index]
                         : NULL;

    if (uc->upstream == NULL || (puc && puc->upstream == uc->upstream)) {
        return 0;
    }

    if (dmcf->nhandlers < NGX_HTTP_DEADLINE_HANDLERS) {
        dmcf->handlers[dmcf->nhandlers++] = clcf->handler;
    }

    return 1;
}


/* deadline <time> | off */

static char *
ngx_http_deadline(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_deadline_loc_conf_t *dlcf = conf;

    ngx_str_t                      *value;
    ngx_http_deadline_main_conf_t  *dmcf;

    if (dlcf->deadline != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        dlcf->deadline = 0;
        return NGX_CONF_OK;
    }

    if (ngx_http_resilience_parse_msec(cf, &value[1], &dlcf->deadline)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (dlcf->deadline == 0 || dlcf->deadline > NGX_HTTP_DEADLINE_LIMIT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: \"%V\" must be more than 0 "
                           "and at most 1d (or \"off\")",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    dmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_deadline_module);
    dmcf->used = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_deadline_format(ngx_str_t *v, ngx_uint_t s_ok)
{
    ngx_uint_t  i;

    for (i = 1; i <= NGX_HTTP_DEADLINE_EPOCH_MS; i++) {
        if (i == NGX_HTTP_DEADLINE_S && !s_ok) {
            /* deadline_propagate has no "s" */
            continue;
        }

        if (ngx_http_deadline_formats[i].len == v->len
            && ngx_strncmp(ngx_http_deadline_formats[i].data, v->data,
                           v->len)
               == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


/* deadline_from <header> grpc|ms|s|epoch_ms [trusted=<complex value>] */

static char *
ngx_http_deadline_from(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_deadline_loc_conf_t *dlcf = conf;

    ngx_int_t                           format;
    ngx_str_t                          *value, name, v;
    ngx_http_deadline_source_t         *src;
    ngx_http_deadline_main_conf_t      *dmcf;
    ngx_http_compile_complex_value_t    ccv;

    value = cf->args->elts;

    format = ngx_http_deadline_format(&value[2], 1);

    if (format == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: invalid format \"%V\", "
                           "expected grpc, ms, s or epoch_ms",
                           &cmd->name, &value[2]);
        return NGX_CONF_ERROR;
    }

    if (dlcf->sources == NULL) {
        dlcf->sources = ngx_array_create(cf->pool, 2,
                                         sizeof(ngx_http_deadline_source_t));
        if (dlcf->sources == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (dlcf->sources->nelts == NGX_HTTP_DEADLINE_SOURCES) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: more than %d sources in one "
                           "location", &cmd->name, NGX_HTTP_DEADLINE_SOURCES);
        return NGX_CONF_ERROR;
    }

    src = ngx_array_push(dlcf->sources);
    if (src == NULL) {
        return NGX_CONF_ERROR;
    }

    src->header.len = value[1].len;
    src->header.data = ngx_pnalloc(cf->pool, value[1].len);
    if (src->header.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_strlow(src->header.data, value[1].data, value[1].len);
    src->hash = ngx_hash_key(src->header.data, src->header.len);
    src->format = format;
    src->trusted = NULL;

    dmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_deadline_module);
    dmcf->used = 1;

    if (ngx_http_deadline_name(cf, dmcf, src) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 4) {
        if (ngx_http_resilience_split_option(&value[3], &name, &v) != NGX_OK
            || name.len != 7
            || ngx_strncmp(name.data, "trusted", 7) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: invalid parameter \"%V\"",
                               &cmd->name, &value[3]);
            return NGX_CONF_ERROR;
        }

        src->trusted = ngx_palloc(cf->pool,
                                  sizeof(ngx_http_complex_value_t));
        if (src->trusted == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &v;
        ccv.complex_value = src->trusted;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * The source's label in the metrics: its header name, interned in the
 * main configuration's table; a long name, or one past the table, counts
 * as "other".
 */

static ngx_int_t
ngx_http_deadline_name(ngx_conf_t *cf, ngx_http_deadline_main_conf_t *dmcf,
    ngx_http_deadline_source_t *src)
{
    ngx_uint_t  i;

    for (i = 0; i < dmcf->nnames; i++) {
        if (dmcf->names[i].len == src->header.len
            && ngx_strncmp(dmcf->names[i].data, src->header.data,
                           src->header.len)
               == 0)
        {
            break;
        }
    }

    if (i == NGX_HTTP_DEADLINE_DEFAULT || i == NGX_HTTP_DEADLINE_OTHER) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"deadline_from\" directive: the header name "
                           "\"%V\" is reserved (a metrics label)",
                           &src->header);
        return NGX_ERROR;
    }

    if (i < dmcf->nnames) {
        src->name = i;
        return NGX_OK;
    }

    if (src->header.len > NGX_HTTP_DEADLINE_NAME_LEN
        || dmcf->nnames == NGX_HTTP_DEADLINE_SLOTS)
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"deadline_from\" directive: \"%V\" is "
                           "counted as source=\"other\" in the metrics "
                           "(%s)", &src->header,
                           src->header.len > NGX_HTTP_DEADLINE_NAME_LEN
                           ? "a name longer than 64 bytes"
                           : "more than 30 header names");

        src->name = NGX_HTTP_DEADLINE_OTHER;
        return NGX_OK;
    }

    dmcf->names[dmcf->nnames] = src->header;
    src->name = dmcf->nnames++;

    return NGX_OK;
}


/* deadline_max, deadline_offset */

static char *
ngx_http_deadline_msec(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_msec_t  *mp;
    ngx_str_t   *value;

    mp = (ngx_msec_t *) ((char *) conf + cmd->offset);

    if (*mp != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_resilience_parse_msec(cf, &value[1], mp) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (*mp > NGX_HTTP_DEADLINE_LIMIT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: \"%V\" is more than 1d",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* deadline_min <time> | auto [window=<time>] */

static char *
ngx_http_deadline_min(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_deadline_loc_conf_t *dlcf = conf;

    ngx_str_t  *value, name, v;

    if (dlcf->min != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len != 4 || ngx_strncmp(value[1].data, "auto", 4) != 0) {

        if (cf->args->nelts == 3) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: \"%V\" is for \"auto\"",
                               &cmd->name, &value[2]);
            return NGX_CONF_ERROR;
        }

        dlcf->min_window = 0;

        if (ngx_http_resilience_parse_msec(cf, &value[1], &dlcf->min)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (dlcf->min > NGX_HTTP_DEADLINE_LIMIT) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: \"%V\" is more than 1d",
                               &cmd->name, &value[1]);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    dlcf->min = 0;
    dlcf->min_window = 10000;

    if (cf->args->nelts == 3) {
        if (ngx_http_resilience_split_option(&value[2], &name, &v) != NGX_OK
            || name.len != 6
            || ngx_strncmp(name.data, "window", 6) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: invalid parameter \"%V\"",
                               &cmd->name, &value[2]);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_resilience_parse_msec(cf, &v, &dlcf->min_window)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (dlcf->min_window == 0 || dlcf->min_window > 3600000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: \"%V\" must be more "
                               "than 0 and at most 1h", &cmd->name,
                               &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_deadline_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_deadline_loc_conf_t *dlcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (dlcf->status != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);

    if (n < 400 || n > 599) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: invalid status \"%V\", "
                           "expected 400 to 599", &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    dlcf->status = n;

    return NGX_CONF_OK;
}


/* deadline_propagate <header> grpc|ms|epoch_ms */

static char *
ngx_http_deadline_propagate_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_deadline_loc_conf_t *dlcf = conf;

    ngx_int_t   format;
    ngx_str_t  *value;

    if (dlcf->propagate_format != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    format = ngx_http_deadline_format(&value[2], 0);

    if (format == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: invalid format \"%V\", "
                           "expected grpc, ms or epoch_ms",
                           &cmd->name, &value[2]);
        return NGX_CONF_ERROR;
    }

    dlcf->propagate.len = value[1].len;
    dlcf->propagate.data = ngx_pnalloc(cf->pool, value[1].len);
    if (dlcf->propagate.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_strlow(dlcf->propagate.data, value[1].data, value[1].len);
    dlcf->propagate_hash = ngx_hash_key(dlcf->propagate.data,
                                        dlcf->propagate.len);
    dlcf->propagate_format = format;

    return NGX_CONF_OK;
}
