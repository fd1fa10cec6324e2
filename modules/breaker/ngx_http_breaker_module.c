
/*
 * nginx-resilience: ngx_http_breaker_module, per-location circuit breakers.
 *
 * A request is admitted (or turned away) in the preaccess phase and its
 * outcome is recorded in the log phase from the last upstream try; the
 * in-flight count and any probe lease are given back by a pool cleanup,
 * so every path, client abort included, releases them.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_breaker.h"


static ngx_http_breaker_ctx_t *ngx_http_breaker_get_ctx(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_breaker_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_breaker_reject(ngx_http_request_t *r,
    ngx_http_breaker_loc_conf_t *blcf, ngx_http_breaker_ctx_t *ctx,
    ngx_uint_t rc);
static ngx_int_t ngx_http_breaker_log_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_breaker_outcome(ngx_http_request_t *r,
    ngx_http_breaker_ctx_t *ctx, ngx_uint_t *slow);
static void ngx_http_breaker_cleanup(void *data);
static ngx_int_t ngx_http_breaker_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_http_breaker_snap_t *ngx_http_breaker_snapshot(ngx_pool_t *pool,
    ngx_http_breaker_zone_t *z, ngx_http_breaker_main_conf_t *bmcf,
    ngx_uint_t *agg, ngx_uint_t *n);
static int ngx_libc_cdecl ngx_http_breaker_busier(const void *one,
    const void *two);
static ngx_int_t ngx_http_breaker_collect(ngx_http_resilience_metrics_t *m,
    void *data);
static ngx_int_t ngx_http_breaker_add_variables(ngx_conf_t *cf);
static void *ngx_http_breaker_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_breaker_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_breaker_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_breaker_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_breaker_init_process(ngx_cycle_t *cycle);
static void ngx_http_breaker_exit_process(ngx_cycle_t *cycle);
static char *ngx_http_breaker_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_breaker(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_breaker_window_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_breaker_rate_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_breaker_number_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_breaker_slow_call(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_breaker_open_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_breaker_half_open(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_breaker_failure(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_breaker_fallback(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_breaker_mode(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_breaker_qps_policy(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_conf_enum_t  ngx_http_breaker_modes[] = {
    { ngx_string("enforce"), NGX_HTTP_BREAKER_ENFORCE },
    { ngx_string("dry_run"), NGX_HTTP_BREAKER_DRY_RUN },
    { ngx_string("force_open"), NGX_HTTP_BREAKER_FORCE_OPEN },
    { ngx_string("force_closed"), NGX_HTTP_BREAKER_FORCE_CLOSED },
    { ngx_string("off"), NGX_HTTP_BREAKER_OFF },
    { ngx_null_string, 0 }
};


#define NGX_HTTP_BREAKER_CONF                                                 \
    NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF

static ngx_command_t  ngx_http_breaker_commands[] = {

    { ngx_string("breaker_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_http_breaker_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("breaker"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_TAKE123,
      ngx_http_breaker,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("breaker_window"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_TAKE12,
      ngx_http_breaker_window_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("breaker_min_requests"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_TAKE1,
      ngx_http_breaker_number_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_breaker_loc_conf_t, min_requests),
      NULL },

    { ngx_string("breaker_failure_rate"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_TAKE1,
      ngx_http_breaker_rate_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_breaker_loc_conf_t, failure_rate),
      NULL },

    { ngx_string("breaker_qps_policy"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_1MORE,
      ngx_http_breaker_qps_policy,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("breaker_consecutive_failures"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_TAKE1,
      ngx_http_breaker_number_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_breaker_loc_conf_t, consecutive),
      NULL },

    { ngx_string("breaker_slow_call"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_TAKE12,
      ngx_http_breaker_slow_call,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("breaker_open"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_TAKE123,
      ngx_http_breaker_open_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("breaker_half_open"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_TAKE12,
      ngx_http_breaker_half_open,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("breaker_max_concurrent"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_TAKE1,
      ngx_http_breaker_number_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_breaker_loc_conf_t, max_concurrent),
      NULL },

    { ngx_string("breaker_failure"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_1MORE,
      ngx_http_breaker_failure,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("breaker_fallback"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_TAKE1,
      ngx_http_breaker_fallback,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("breaker_shared"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_breaker_loc_conf_t, shared),
      NULL },

    { ngx_string("breaker_mode"),
      NGX_HTTP_BREAKER_CONF|NGX_CONF_TAKE1,
      ngx_http_breaker_mode,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_breaker_module_ctx = {
    ngx_http_breaker_add_variables,        /* preconfiguration */
    ngx_http_breaker_init,                 /* postconfiguration */

    ngx_http_breaker_create_main_conf,     /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_breaker_create_loc_conf,      /* create location configuration */
    ngx_http_breaker_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_breaker_module = {
    NGX_MODULE_V1,
    &ngx_http_breaker_module_ctx,          /* module context */
    ngx_http_breaker_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_breaker_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_breaker_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_breaker_vars[] = {

    { ngx_string("breaker_state"), NULL, ngx_http_breaker_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("breaker_name"), NULL, ngx_http_breaker_variable,
      1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_breaker_t  ngx_http_breaker_off;


/* the request path */


/*
 * An internal redirect (a named location fallback, error_page) clears
 * the modules' contexts; the pool cleanup still holds ours, so the
 * request keeps its breaker, and is admitted once only.
 */

static ngx_http_breaker_ctx_t *
ngx_http_breaker_get_ctx(ngx_http_request_t *r)
{
    if (!r->internal) {
        return ngx_http_get_module_ctx(r, ngx_http_breaker_module);
    }

    return ngx_http_resilience_ctx(r, &ngx_http_breaker_module,
                                   ngx_http_breaker_cleanup);
}


static ngx_int_t
ngx_http_breaker_handler(ngx_http_request_t *r)
{
    ngx_str_t                     key;
    ngx_uint_t                    rc;
    ngx_pool_cleanup_t           *cln;
    ngx_http_breaker_t           *bp;
    ngx_http_breaker_ctx_t       *ctx;
    ngx_http_breaker_loc_conf_t  *blcf;

    if (r->main != r) {
        return NGX_DECLINED;
    }

    if (r->internal
        && ngx_http_get_module_ctx(r, ngx_http_breaker_module) == NULL)
    {
        /*
         * The first phase handler after an internal redirect (error_page,
         * a named location): the upstream tries made so far are those of
         * the location that admitted the request, whatever follows.
         */

        ctx = ngx_http_breaker_get_ctx(r);

        if (ctx != NULL) {
            if (ctx->admitted && !ctx->redirected) {
                ctx->redirected = 1;
                ctx->tries_to = r->upstream_states
                                ? r->upstream_states->nelts : 0;
            }

            return NGX_DECLINED;
        }
    }

    blcf = ngx_http_get_module_loc_conf(r, ngx_http_breaker_module);
    bp = blcf->breaker;

    if (bp == NULL || bp == &ngx_http_breaker_off
        || blcf->mode == NGX_HTTP_BREAKER_OFF)
    {
        return NGX_DECLINED;
    }

    if (ngx_http_get_module_ctx(r, ngx_http_breaker_module) != NULL) {
        return NGX_DECLINED;
    }

    if (bp->key) {
        if (ngx_http_complex_value(r, bp->key, &key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (key.len == 0) {
            /* an empty key exempts the request */
            return NGX_DECLINED;
        }
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_breaker_ctx_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ctx == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->tries_from = r->upstream_states ? r->upstream_states->nelts : 0;

    rc = ngx_http_breaker_enter(r, bp, blcf, bp->key ? &key : NULL,
                                blcf->shared, ctx);

    if (ctx->node == NULL) {
        /* the zone is full: never reject traffic for it */
        return NGX_DECLINED;
    }

    cln->handler = ngx_http_breaker_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_breaker_module);

    if (rc == NGX_HTTP_BREAKER_ADMITTED) {
        if (ctx->rejected) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "breaker \"%V\" would reject the request "
                          "(dry run): %s", &bp->name,
                          ngx_http_breaker_state_name(ctx->state));
        }

        return NGX_DECLINED;
    }

    return ngx_http_breaker_reject(r, blcf, ctx, rc);
}


/*
 * Admission, for the directive and for lua-compat alike: the node of the
 * breaker for "key" (NULL: keyless), the fleet's bookkeeping when
 * "shared", then the state machine.  ctx->node is left NULL when the
 * request passes untracked because the zone is full.
 */

ngx_uint_t
ngx_http_breaker_enter(ngx_http_request_t *r, ngx_http_breaker_t *bp,
    ngx_http_breaker_loc_conf_t *blcf, ngx_str_t *key, ngx_uint_t shared,
    ngx_http_breaker_ctx_t *ctx)
{
    ngx_str_t                 none;
    ngx_uint_t                rc;
    ngx_http_breaker_zone_t  *z;
    ngx_http_breaker_node_t  *node;

    z = bp->zone->data;

    if (key) {
        node = ngx_http_breaker_lookup(z, &bp->name, key, blcf->buckets,
                                       r->connection->log);

    } else {
        node = bp->node;

        if (node == NULL) {
            /* keyless breakers are never evicted: the pin is moot */
            ngx_str_null(&none);
            node = ngx_http_breaker_lookup(z, &bp->name, &none,
                                           blcf->buckets, r->connection->log);
            bp->node = node;
        }
    }

    ctx->node = node;

    if (node == NULL) {
        return NGX_HTTP_BREAKER_ADMITTED;
    }

    ctx->conf = blcf;
    ctx->zone = z;
    ctx->lease = -1;

    if (shared && !node->shared) {
        /* set once; read by the fleet window timer */
        node->window = (uint32_t) blcf->window;
        node->shared = 1;
    }

    if (shared && key && !node->restore_asked
        && ngx_http_resilience_redis_state()
           == NGX_HTTP_RESILIENCE_REDIS_CONNECTED)
    {
        /* a key new here may be open in the fleet: ask, without waiting */
        node->restore_asked = 1;
        ngx_http_breaker_sync_restore_key(r, bp, node);
    }

    rc = ngx_http_breaker_admit(r, blcf, ctx);

    if (ctx->ask_token) {
        /* before unpinning: the reply finds the node with its own pin */
        ngx_http_breaker_sync_ask_token(r, ctx);
    }

    if (key) {
        /* admitted, it is in flight; turned away, it is done with */
        (void) ngx_atomic_fetch_add(&node->pins, -1);
    }

    return rc;
}


static ngx_int_t
ngx_http_breaker_reject(ngx_http_request_t *r,
    ngx_http_breaker_loc_conf_t *blcf, ngx_http_breaker_ctx_t *ctx,
    ngx_uint_t rc)
{
    u_char           *p;
    ngx_msec_t        left;
    ngx_table_elt_t  *h;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "breaker \"%V\" rejected the request: %s",
                   &blcf->breaker->name,
                   rc == NGX_HTTP_BREAKER_REJECT_FULL
                   ? "max_concurrent reached"
                   : ngx_http_breaker_state_name(ctx->state));

    if (blcf->fallback_location.len) {
        (void) ngx_http_named_location(r, &blcf->fallback_location);
        ngx_http_finalize_request(r, NGX_DONE);
        return NGX_DONE;
    }

    if (rc == NGX_HTTP_BREAKER_REJECT_OPEN
        && ctx->state == NGX_HTTP_BREAKER_OPEN
        && ctx->mode != NGX_HTTP_BREAKER_FORCE_OPEN)
    {
        left = ctx->node->open_until - ngx_current_msec;

        if ((ngx_msec_int_t) left < 0) {
            left = 0;
        }

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value.data = p;
        h->value.len = ngx_sprintf(p, "%M", (left + 999) / 1000 + (left == 0))
                       - p;
    }

    return blcf->fallback_status;
}


static ngx_int_t
ngx_http_breaker_log_handler(ngx_http_request_t *r)
{
    ngx_msec_t               tripped;
    ngx_uint_t               outcome, slow;
    ngx_http_breaker_ctx_t  *ctx;

    ctx = ngx_http_breaker_get_ctx(r);

    if (ctx == NULL || !ctx->admitted || ctx->recorded) {
        return NGX_OK;
    }

    outcome = ngx_http_breaker_outcome(r, ctx, &slow);

    if (outcome != NGX_HTTP_BREAKER_NEUTRAL) {
        tripped = ngx_http_breaker_record(r, ctx, outcome, slow);

        if (tripped && ctx->conf->shared) {
            ngx_http_breaker_sync_publish(r, ctx, tripped);
        }

        if (ctx->closed_it && ctx->conf->shared) {
            ngx_http_breaker_sync_publish_close(r, ctx);
        }

        if (ctx->probe_ok && ctx->conf->shared) {
            ngx_http_breaker_sync_probe_ok(r, ctx);
        }
    }

    ngx_http_breaker_release(ctx);

    return NGX_OK;
}


/*
 * The last upstream try made in the location that admitted the request
 * decides, whatever error_page or a named location did after it.  A
 * request that never reached an upstream there (rejected by another
 * module, served from elsewhere) or that the client gave up on (499)
 * says nothing about the upstream.
 */

static ngx_uint_t
ngx_http_breaker_outcome(ngx_http_request_t *r, ngx_http_breaker_ctx_t *ctx,
    ngx_uint_t *slow)
{
    ngx_uint_t                    failure, last;
    ngx_http_upstream_state_t    *st;
    ngx_http_breaker_loc_conf_t  *blcf;

    *slow = 0;
    blcf = ctx->conf;

    if (r->err_status == NGX_HTTP_CLIENT_CLOSED_REQUEST
        || r->headers_out.status == NGX_HTTP_CLIENT_CLOSED_REQUEST
        || r->upstream_states == NULL)
    {
        return NGX_HTTP_BREAKER_NEUTRAL;
    }

    last = ctx->redirected ? ctx->tries_to : r->upstream_states->nelts;

    if (last <= ctx->tries_from || last > r->upstream_states->nelts) {
        return NGX_HTTP_BREAKER_NEUTRAL;
    }

    st = r->upstream_states->elts;
    st = &st[last - 1];

    if (st->status == 0 || st->status == NGX_HTTP_CLIENT_CLOSED_REQUEST) {
        return NGX_HTTP_BREAKER_NEUTRAL;
    }

    if (st->header_time == (ngx_msec_t) -1
        && st->status == NGX_HTTP_GATEWAY_TIME_OUT
        && ngx_http_resilience_deadline_spent(r))
    {
        /* the request's deadline cut it: not the upstream's failure */
        if (!blcf->failure_deadline) {
            return NGX_HTTP_BREAKER_NEUTRAL;
        }

        failure = 1;

    } else if (st->header_time == (ngx_msec_t) -1) {
        /* no response: nginx's own 502 (error) or 504 (timeout) */
        failure = (st->status == NGX_HTTP_GATEWAY_TIME_OUT)
                  ? blcf->failure_timeout : blcf->failure_error;

    } else {
        failure = ngx_http_resilience_status_test(blcf->failure_status,
                                                  st->status);
    }

    if (blcf->slow_time
        && st->response_time != (ngx_msec_t) -1
        && st->response_time > blcf->slow_time)
    {
        *slow = 1;
    }

    return failure ? NGX_HTTP_BREAKER_FAILURE : NGX_HTTP_BREAKER_SUCCESS;
}


static void
ngx_http_breaker_cleanup(void *data)
{
    ngx_http_breaker_ctx_t  *ctx = data;

    ngx_http_breaker_release(ctx);
}


static ngx_int_t
ngx_http_breaker_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char                   *name;
    ngx_http_breaker_ctx_t       *ctx;
    ngx_http_breaker_loc_conf_t  *blcf;

    ctx = ngx_http_breaker_get_ctx(r->main);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == 1) {
        blcf = ctx->conf;
        v->data = blcf->breaker->name.data;
        v->len = blcf->breaker->name.len;

    } else {
        /*
         * as the request found it: the node may be gone once the request
         * is released (access_log runs after the breaker's log handler)
         */
        name = ngx_http_breaker_state_name(ctx->state);
        v->data = (u_char *) name;
        v->len = ngx_strlen(name);
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* metrics */


/*
 * A scrape holds a zone's mutex for one pass over its breakers: it counts
 * the keys of each keyed breaker by state (the aggregates), copies every
 * keyless breaker, and keeps a copy of the "metrics_keys=" busiest keys
 * in a min-heap; it renders from the copies after unlocking.  Nothing is
 * allocated under the mutex.
 */

static ngx_http_breaker_snap_t *
ngx_http_breaker_snapshot(ngx_pool_t *pool, ngx_http_breaker_zone_t *z,
    ngx_http_breaker_main_conf_t *bmcf, ngx_uint_t *agg, ngx_uint_t *n)
{
    u_char                    *arena;
    uint64_t                   busy;
    ngx_uint_t                 i, b, nb, nkeyless, nheap, max, slot;
    ngx_uint_t                 child, *heap, tmp;
    ngx_msec_t                 now;
    ngx_rbtree_node_t         *node, *root, *sentinel;
    ngx_http_breaker_t       **bp;
    ngx_http_breaker_snap_t   *snap, *sp;
    ngx_http_breaker_node_t   *bn;

    *n = 0;

    bp = bmcf->breakers.elts;
    nb = bmcf->breakers.nelts;
    nkeyless = 0;

    for (b = 0; b < nb; b++) {
        if (bp[b]->key == NULL && bp[b]->zone->data == z) {
            nkeyless++;
        }
    }

    /* slots: the keyless breakers first, then the heap of keys */

    max = nkeyless + z->metrics_keys;

    snap = ngx_pcalloc(pool, (max + 1) * sizeof(ngx_http_breaker_snap_t));
    arena = ngx_pnalloc(pool, (max + 1) * (64 + NGX_HTTP_BREAKER_MAX_KEY));
    heap = ngx_palloc(pool, (z->metrics_keys + 1) * sizeof(ngx_uint_t));

    if (snap == NULL || arena == NULL || heap == NULL) {
        return NULL;
    }

    for (i = 0; i <= max; i++) {
        snap[i].name.data = arena + i * (64 + NGX_HTTP_BREAKER_MAX_KEY);
    }

    i = 0;
    nheap = 0;
    now = ngx_current_msec;

    ngx_shmtx_lock(&z->shpool->mutex);

    root = z->sh->rbtree.root;
    sentinel = z->sh->rbtree.sentinel;

    for (node = (root == sentinel) ? NULL : ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&z->sh->rbtree, node))
    {
        bn = (ngx_http_breaker_node_t *) &node->color;

        busy = bn->successes + bn->failures + bn->rejected
               + bn->dry_run_rejected;

        if (bn->key_len == 0) {
            if (i == nkeyless) {
                /* made since the count (lua-compat): next scrape */
                continue;
            }

            slot = i++;

        } else {
            for (b = 0; b < nb; b++) {
                if (bp[b]->key && bp[b]->zone->data == z
                    && bp[b]->name.len == bn->name_len
                    && ngx_memcmp(bp[b]->name.data, bn->data,
                                  bn->name_len) == 0)
                {
                    agg[b * 4 + ngx_http_breaker_current_state(bn, now)]++;
                    agg[b * 4 + 3]++;
                    break;
                }
            }

            if (z->metrics_keys == 0) {
                continue;
            }

            if (nheap < z->metrics_keys) {
                slot = nkeyless + nheap;
                heap[nheap++] = slot;

                /* sift up: the least busy at the root */

                for (child = nheap - 1; child > 0; child = (child - 1) / 2) {
                    if (snap[heap[(child - 1) / 2]].busy <= busy) {
                        break;
                    }

                    tmp = heap[child];
                    heap[child] = heap[(child - 1) / 2];
                    heap[(child - 1) / 2] = tmp;
                }

                /* the slot is filled below, its "busy" first */
                snap[slot].busy = busy;

            } else if (busy > snap[heap[0]].busy) {
                slot = heap[0];
                snap[slot].busy = busy;

                /* sift down */

                for (b = 0; 2 * b + 1 < nheap; b = child) {
                    child = 2 * b + 1;

                    if (child + 1 < nheap
                        && snap[heap[child + 1]].busy < snap[heap[child]].busy)
                    {
                        child++;
                    }

                    if (snap[heap[b]].busy <= snap[heap[child]].busy) {
                        break;
                    }

                    tmp = heap[b];
                    heap[b] = heap[child];
                    heap[child] = tmp;
                }

            } else {
                continue;
            }
        }

        sp = &snap[slot];

        sp->name.len = bn->name_len;
        sp->key.data = sp->name.data + bn->name_len;
        sp->key.len = bn->key_len;
        ngx_memcpy(sp->name.data, bn->data, bn->name_len + bn->key_len);

        sp->busy = busy;
        sp->state = ngx_http_breaker_current_state(bn, now);
        sp->open_left = (bn->state == NGX_HTTP_BREAKER_OPEN)
                        ? (ngx_msec_int_t) (bn->open_until - now) : 0;
        sp->inflight = bn->inflight;
        sp->counts[0] = bn->successes;
        sp->counts[1] = bn->failures;
        sp->counts[2] = bn->slow;
        sp->counts[3] = bn->rejected;
        sp->counts[4] = bn->dry_run_rejected;
        sp->transitions = bn->transitions;
        sp->report = 1;
    }

    ngx_shmtx_unlock(&z->shpool->mutex);

    /* keyless slots not filled (a breaker not used yet) stay unreported */

    for (slot = nkeyless; slot < nkeyless + nheap; slot++) {
        for (b = 0; b < nb; b++) {
            if (bp[b]->key && bp[b]->zone->data == z
                && bp[b]->name.len == snap[slot].name.len
                && ngx_memcmp(bp[b]->name.data, snap[slot].name.data,
                              snap[slot].name.len) == 0)
            {
                agg[b * 4 + 3]--;
                break;
            }
        }
    }

    *n = nkeyless + nheap;

    return snap;
}


/* the busiest first, for a stable output */

static int ngx_libc_cdecl
ngx_http_breaker_busier(const void *one, const void *two)
{
    const ngx_http_breaker_snap_t  *x = one, *y = two;

    return (x->busy < y->busy) ? 1 : (x->busy > y->busy) ? -1 : 0;
}


static ngx_int_t
ngx_http_breaker_collect(ngx_http_resilience_metrics_t *m, void *data)
{
    ngx_http_breaker_main_conf_t *bmcf = data;

    double                    v;
    ngx_uint_t                i, j, k, f, o, nz, *nsnap, *agg;
    ngx_pool_t               *pool;
    ngx_keyval_t              labels[3];
    ngx_shm_zone_t          **zones;
    ngx_http_breaker_t      **bp;
    ngx_http_breaker_zone_t  *z;
    ngx_http_breaker_snap_t **snaps, *sp;

    static const char  *families[][3] = {
        { "breaker_state", "g",
          "Breaker state: 0 closed, 1 open, 2 half-open." },
        { "breaker_requests_total", "c",
          "Requests seen by the breaker, by outcome." },
        { "breaker_transitions_total", "c",
          "State transitions of the breaker." },
        { "breaker_inflight", "g",
          "Requests admitted by the breaker and not finished." },
        { "breaker_open_until_seconds", "g",
          "Unix time the open breaker turns half-open, 0 when not open." },
    };

    static const char  *outcomes[] = {
        "success", "failure", "slow", "rejected", "dry_run_rejected"
    };

    static const char  *states[] = { "closed", "open", "half_open" };

    static struct {
        const char  *name;
        const char  *help;
        size_t       offset;
    } zone_counters[] = {
        { "breaker_zone_evictions_total",
          "Idle keyed breakers evicted to make room in the zone.",
          offsetof(ngx_http_breaker_shctx_t, evictions) },
        { "breaker_zone_full_total",
          "Requests let through untracked because the zone was full.",
          offsetof(ngx_http_breaker_shctx_t, full) },
        { "breaker_sync_published_total",
          "Trips published to the fleet through Redis (breaker_shared).",
          offsetof(ngx_http_breaker_shctx_t, sync_published) },
        { "breaker_sync_received_total",
          "Trip notices received from the fleet through Redis.",
          offsetof(ngx_http_breaker_shctx_t, sync_received) },
        { "breaker_sync_errors_total",
          "Trips not published: Redis down, slow or refusing.",
          offsetof(ngx_http_breaker_shctx_t, sync_errors) },
        { "breaker_sync_malformed_total",
          "Notices from Redis dropped as malformed.",
          offsetof(ngx_http_breaker_shctx_t, sync_malformed) },
        { "breaker_sync_dropped_total",
          "Notices for keys unknown here dropped: too many such keys.",
          offsetof(ngx_http_breaker_shctx_t, sync_dropped) },
    };

    pool = ngx_http_resilience_metrics_pool(m);
    zones = bmcf->zones.elts;
    nz = bmcf->zones.nelts;

    snaps = ngx_pcalloc(pool, nz * sizeof(ngx_http_breaker_snap_t *));
    nsnap = ngx_pcalloc(pool, nz * sizeof(ngx_uint_t));
    agg = ngx_pcalloc(pool, (bmcf->breakers.nelts + 1) * 4
                            * sizeof(ngx_uint_t));

    if (snaps == NULL || nsnap == NULL || agg == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < nz; i++) {
        z = zones[i]->data;

        if (z->sh == NULL) {
            continue;
        }

        snaps[i] = ngx_http_breaker_snapshot(pool, z, bmcf, agg, &nsnap[i]);
        if (snaps[i] == NULL) {
            return NGX_ERROR;
        }

        ngx_qsort(snaps[i], nsnap[i], sizeof(ngx_http_breaker_snap_t),
                  ngx_http_breaker_busier);
    }

    ngx_str_set(&labels[0].key, "breaker");
    ngx_str_set(&labels[1].key, "key");
    ngx_str_set(&labels[2].key, "outcome");

    for (f = 0; f < sizeof(families) / sizeof(families[0]); f++) {

        if (ngx_http_resilience_metrics_family(m, families[f][0],
                                               families[f][1][0] == 'c'
                                               ? NGX_HTTP_RESILIENCE_COUNTER
                                               : NGX_HTTP_RESILIENCE_GAUGE,
                                               families[f][2])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (i = 0; i < nz; i++) {
            for (j = 0; j < nsnap[i]; j++) {
                sp = &snaps[i][j];

                if (!sp->report) {
                    continue;
                }

                labels[0].value = sp->name;
                labels[1].value = sp->key;

                if (f == 1) {
                    for (o = 0; o < 5; o++) {
                        labels[2].value.data = (u_char *) outcomes[o];
                        labels[2].value.len = ngx_strlen(outcomes[o]);

                        if (ngx_http_resilience_metrics_sample(m, labels, 3,
                                                    (double) sp->counts[o])
                            != NGX_OK)
                        {
                            return NGX_ERROR;
                        }
                    }

                    continue;
                }

                switch (f) {
                case 0:
                    v = sp->state;
                    break;
                case 2:
                    v = (double) sp->transitions;
                    break;
                case 3:
                    v = sp->inflight;
                    break;
                default:
                    v = (sp->open_left > 0)
                        ? (double) ngx_time() + (double) sp->open_left / 1000
                        : 0;
                }

                if (ngx_http_resilience_metrics_sample(m, labels, 2, v)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }
        }
    }

    /* each keyed breaker's aggregates: its keys by state, and omitted */

    if (ngx_http_resilience_metrics_family(m, "breaker_keys",
            NGX_HTTP_RESILIENCE_GAUGE,
            "Keys of the keyed breaker in the zone, by state.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    bp = bmcf->breakers.elts;

    ngx_str_set(&labels[1].key, "state");

    for (k = 0; k < 4; k++) {

        if (k == 3
            && ngx_http_resilience_metrics_family(m,
                   "breaker_keys_unreported",
                   NGX_HTTP_RESILIENCE_GAUGE,
                   "Keys of the keyed breaker without series of their own "
                   "(breaker_zone metrics_keys=).")
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (i = 0; i < bmcf->breakers.nelts; i++) {

            if (bp[i]->key == NULL || bp[i]->zone->data == NULL) {
                continue;
            }

            v = (double) agg[i * 4 + k];

            labels[0].value = bp[i]->name;
            labels[1].value.data = (u_char *) states[k % 3];
            labels[1].value.len = ngx_strlen(states[k % 3]);

            if (ngx_http_resilience_metrics_sample(m, labels, k == 3 ? 1 : 2,
                                                   v)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    ngx_str_set(&labels[0].key, "zone");

    for (f = 0; f < sizeof(zone_counters) / sizeof(zone_counters[0]); f++) {

        if (ngx_http_resilience_metrics_family(m, zone_counters[f].name,
                                               NGX_HTTP_RESILIENCE_COUNTER,
                                               zone_counters[f].help)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (i = 0; i < bmcf->zones.nelts; i++) {
            z = zones[i]->data;

            if (z->sh == NULL) {
                continue;
            }

            labels[0].value = z->name;

            v = (double) *(ngx_atomic_t *) ((u_char *) z->sh
                                            + zone_counters[f].offset);

            if (ngx_http_resilience_metrics_sample(m, labels, 1, v)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* configuration */


static ngx_int_t
ngx_http_breaker_add_variables(ngx_conf_t *cf)
{
    return ngx_http_resilience_add_variables(cf, ngx_http_breaker_vars);
}


static void *
ngx_http_breaker_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_breaker_main_conf_t  *bmcf;

    bmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_breaker_main_conf_t));
    if (bmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&bmcf->breakers, cf->pool, 4,
                       sizeof(ngx_http_breaker_t *))
        != NGX_OK
        || ngx_array_init(&bmcf->zones, cf->pool, 2,
                          sizeof(ngx_shm_zone_t *))
           != NGX_OK)
    {
        return NULL;
    }

    return bmcf;
}


static void *
ngx_http_breaker_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_breaker_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_breaker_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->breaker = NULL;
     *     conf->bands = NULL;
     *     conf->failure_status = NULL;
     *     conf->fallback_location = { 0, NULL };
     */

    conf->window = NGX_CONF_UNSET_MSEC;
    conf->buckets = NGX_CONF_UNSET_UINT;
    conf->min_requests = NGX_CONF_UNSET_UINT;
    conf->failure_rate = NGX_CONF_UNSET_UINT;
    conf->consecutive = NGX_CONF_UNSET_UINT;
    conf->slow_time = NGX_CONF_UNSET_MSEC;
    conf->slow_rate = NGX_CONF_UNSET_UINT;
    conf->open_time = NGX_CONF_UNSET_MSEC;
    conf->open_max = NGX_CONF_UNSET_MSEC;
    conf->open_jitter = NGX_CONF_UNSET_UINT;
    conf->probes = NGX_CONF_UNSET_UINT;
    conf->probe_timeout = NGX_CONF_UNSET_MSEC;
    conf->max_concurrent = NGX_CONF_UNSET_UINT;
    conf->mode = NGX_CONF_UNSET_UINT;
    conf->shared = NGX_CONF_UNSET;
    conf->failure_error = NGX_CONF_UNSET_UINT;
    conf->failure_timeout = NGX_CONF_UNSET_UINT;
    conf->failure_deadline = NGX_CONF_UNSET_UINT;
    conf->fallback_status = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_breaker_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_breaker_loc_conf_t *prev = parent;
    ngx_http_breaker_loc_conf_t *conf = child;

    ngx_http_resilience_status_set_t  *set;

    if (conf->breaker == NULL) {
        conf->breaker = prev->breaker;
    }

    if (conf->window == NGX_CONF_UNSET_MSEC) {
        conf->window = prev->window;
        conf->buckets = prev->buckets;
    }

    ngx_conf_merge_msec_value(conf->window, prev->window, 10000);
    ngx_conf_merge_uint_value(conf->buckets, prev->buckets, 10);
    ngx_conf_merge_uint_value(conf->min_requests, prev->min_requests, 20);
    ngx_conf_merge_uint_value(conf->failure_rate, prev->failure_rate, 5000);

    if (conf->bands == NULL) {
        conf->bands = prev->bands;
    }
    ngx_conf_merge_uint_value(conf->consecutive, prev->consecutive, 5);

    if (conf->slow_time == NGX_CONF_UNSET_MSEC) {
        conf->slow_time = prev->slow_time;
        conf->slow_rate = prev->slow_rate;
    }

    ngx_conf_merge_msec_value(conf->slow_time, prev->slow_time, 0);
    ngx_conf_merge_uint_value(conf->slow_rate, prev->slow_rate, 10000);

    if (conf->open_time == NGX_CONF_UNSET_MSEC) {
        conf->open_time = prev->open_time;
        conf->open_max = prev->open_max;
        conf->open_jitter = prev->open_jitter;
    }

    ngx_conf_merge_msec_value(conf->open_time, prev->open_time, 30000);
    ngx_conf_merge_msec_value(conf->open_max, prev->open_max,
                              ngx_max(conf->open_time, 300000));
    ngx_conf_merge_uint_value(conf->open_jitter, prev->open_jitter, 1000);

    if (conf->probes == NGX_CONF_UNSET_UINT) {
        conf->probes = prev->probes;
        conf->probe_timeout = prev->probe_timeout;
    }

    ngx_conf_merge_uint_value(conf->probes, prev->probes, 3);
    ngx_conf_merge_msec_value(conf->probe_timeout, prev->probe_timeout,
                              5000);
    ngx_conf_merge_uint_value(conf->max_concurrent, prev->max_concurrent, 0);
    ngx_conf_merge_uint_value(conf->mode, prev->mode,
                              NGX_HTTP_BREAKER_ENFORCE);

    if (conf->failure_status == NULL) {
        conf->failure_status = prev->failure_status;
        conf->failure_error = prev->failure_error;
        conf->failure_timeout = prev->failure_timeout;
        conf->failure_deadline = prev->failure_deadline;
    }

    if (conf->failure_status == NULL) {
        /* the default: error timeout 502 503 504 */
        set = ngx_pcalloc(cf->pool, sizeof(ngx_http_resilience_status_set_t));
        if (set == NULL) {
            return NGX_CONF_ERROR;
        }

        set->bits[502 / 64] |= (uint64_t) 1 << (502 % 64);
        set->bits[503 / 64] |= (uint64_t) 1 << (503 % 64);
        set->bits[504 / 64] |= (uint64_t) 1 << (504 % 64);

        conf->failure_status = set;
        conf->failure_error = 1;
        conf->failure_timeout = 1;
        conf->failure_deadline = 0;
    }

    if (conf->fallback_status == NGX_CONF_UNSET_UINT) {
        conf->fallback_status = prev->fallback_status;
        conf->fallback_location = prev->fallback_location;
    }

    ngx_conf_merge_uint_value(conf->fallback_status, prev->fallback_status,
                              NGX_HTTP_SERVICE_UNAVAILABLE);

    ngx_conf_merge_value(conf->shared, prev->shared, 0);

    if (conf->breaker && conf->breaker != &ngx_http_breaker_off) {
        if (conf->breaker->buckets == 0) {
            conf->breaker->buckets = conf->buckets;
        }

        if (conf->shared) {
            conf->breaker->shared = 1;
        }

        if (conf->open_max > conf->breaker->open_max) {
            conf->breaker->open_max = conf->open_max;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_breaker_init(ngx_conf_t *cf)
{
    ngx_uint_t                     i;
    ngx_http_handler_pt           *h;
    ngx_http_breaker_t           **bp;
    ngx_http_core_main_conf_t     *cmcf;
    ngx_http_breaker_main_conf_t  *bmcf;

    bmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_breaker_module);

    bp = bmcf->breakers.elts;

    for (i = 0; i < bmcf->breakers.nelts; i++) {
        if (bp[i]->zone->data == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "breaker \"%V\" uses zone \"%V\", which no "
                          "\"breaker_zone\" declares",
                          &bp[i]->name, &bp[i]->zone->shm.name);
            return NGX_ERROR;
        }

        if (bp[i]->buckets == 0) {
            bp[i]->buckets = 10;
        }

        if (bp[i]->shared) {
            bmcf->shared = 1;
        }
    }

    if (bmcf->shared) {
        if (!ngx_http_resilience_redis_configured(cf)) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"breaker_shared on\" needs \"resilience_redis\" "
                          "at http level");
            return NGX_ERROR;
        }

        if (ngx_http_breaker_sync_conf(cf) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (bmcf->zones.nelts == 0) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_breaker_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_breaker_log_handler;

    if (ngx_http_breaker_admin_init(cf, &bmcf->breakers) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_resilience_metrics_add_collector(cf,
                                                     ngx_http_breaker_collect,
                                                     bmcf);
}


static ngx_int_t
ngx_http_breaker_init_process(ngx_cycle_t *cycle)
{
    ngx_http_breaker_main_conf_t  *bmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    bmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_breaker_module);

    if (bmcf == NULL || !bmcf->shared) {
        return NGX_OK;
    }

    return ngx_http_breaker_sync_init_worker(cycle, &bmcf->breakers,
                                             &bmcf->zones);
}


static void
ngx_http_breaker_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_breaker_sync_exit_worker();
}


/* breaker_zone <name> <size> */

static char *
ngx_http_breaker_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_breaker_main_conf_t *bmcf = conf;

    size_t                    size;
    ngx_str_t                *value, opt, v;
    ngx_shm_zone_t           *shm_zone, **zp;
    ngx_http_breaker_zone_t  *z;

    value = cf->args->elts;

    if (ngx_http_resilience_parse_size(cf, &value[2], &size) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (size < 8 * ngx_pagesize) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: zone \"%V\" is too small, "
                           "at least %uz bytes", &cmd->name, &value[1],
                           8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    z = ngx_pcalloc(cf->pool, sizeof(ngx_http_breaker_zone_t));
    if (z == NULL) {
        return NGX_CONF_ERROR;
    }

    z->name = value[1];
    z->metrics_keys = 100;

    if (cf->args->nelts == 4) {
        if (ngx_http_resilience_split_option(&value[3], &opt, &v) != NGX_OK
            || opt.len != 12
            || ngx_strncmp(opt.data, "metrics_keys", 12) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: invalid parameter "
                               "\"%V\", expected metrics_keys=N",
                               &cmd->name, &value[3]);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_resilience_parse_uint(cf, &v, 0, 1000000,
                                           &z->metrics_keys)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                     &ngx_http_breaker_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: zone \"%V\" is already "
                           "declared", &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_breaker_init_zone;
    shm_zone->data = z;

    zp = ngx_array_push(&bmcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = shm_zone;

    return NGX_CONF_OK;
}


/* breaker <name> zone=<zone> [key=<complex value>] | breaker off */

static char *
ngx_http_breaker(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_breaker_loc_conf_t *blcf = conf;

    u_char                            *p;
    ngx_str_t                         *value, name, v, zone;
    ngx_uint_t                         i;
    ngx_http_breaker_t                *b, **bp;
    ngx_shm_zone_t                    *shm_zone;
    ngx_http_complex_value_t          *key;
    ngx_http_breaker_main_conf_t      *bmcf;
    ngx_http_compile_complex_value_t   ccv;

    if (blcf->breaker != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        blcf->breaker = &ngx_http_breaker_off;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || value[1].len > 64) {
        goto bad_name;
    }

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9')
              || *p == '_' || *p == '-' || *p == '.'))
        {
            goto bad_name;
        }
    }

    ngx_str_null(&zone);
    key = NULL;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_resilience_split_option(&value[i], &name, &v) != NGX_OK
            || v.len == 0)
        {
            goto invalid;
        }

        if (name.len == 4 && ngx_strncmp(name.data, "zone", 4) == 0) {
            zone = v;
            continue;
        }

        if (name.len == 3 && ngx_strncmp(name.data, "key", 3) == 0) {
            key = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
            if (key == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

            ccv.cf = cf;
            ccv.value = &v;
            ccv.complex_value = key;

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        goto invalid;
    }

    if (zone.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: breaker \"%V\" needs "
                           "zone=<name>", &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &zone, 0, &ngx_http_breaker_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    /* one name, one breaker: the same zone and key everywhere */

    bmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_breaker_module);
    bp = bmcf->breakers.elts;

    for (i = 0; i < bmcf->breakers.nelts; i++) {
        if (bp[i]->name.len != value[1].len
            || ngx_strncmp(bp[i]->name.data, value[1].data, value[1].len)
               != 0)
        {
            continue;
        }

        if (bp[i]->zone != shm_zone || (bp[i]->key == NULL) != (key == NULL)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: breaker \"%V\" is already "
                               "declared with another zone or key",
                               &cmd->name, &value[1]);
            return NGX_CONF_ERROR;
        }

        if (key == NULL) {
            /* shared by the locations: one node, one cached pointer */
            blcf->breaker = bp[i];
            bp[i]->uses++;
            return NGX_CONF_OK;
        }
    }

    b = ngx_pcalloc(cf->pool, sizeof(ngx_http_breaker_t));
    if (b == NULL) {
        return NGX_CONF_ERROR;
    }

    b->name = value[1];
    b->zone = shm_zone;
    b->key = key;
    b->uses = 1;

    bp = ngx_array_push(&bmcf->breakers);
    if (bp == NULL) {
        return NGX_CONF_ERROR;
    }

    *bp = b;
    blcf->breaker = b;

    return NGX_CONF_OK;

bad_name:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" directive: invalid breaker name \"%V\", "
                       "expected up to 64 letters, digits, \"_\", \"-\" "
                       "or \".\"", &cmd->name, &value[1]);
    return NGX_CONF_ERROR;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" directive: invalid parameter \"%V\"",
                       &cmd->name, &value[i]);
    return NGX_CONF_ERROR;
}


/* breaker_window <time> [buckets=N] */

static char *
ngx_http_breaker_window_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_breaker_loc_conf_t *blcf = conf;

    ngx_str_t  *value, name, v;

    if (blcf->window != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_resilience_parse_msec(cf, &value[1], &blcf->window)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    blcf->buckets = 10;

    if (cf->args->nelts == 3) {
        if (ngx_http_resilience_split_option(&value[2], &name, &v) != NGX_OK
            || name.len != 7 || ngx_strncmp(name.data, "buckets", 7) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: invalid parameter \"%V\"",
                               &cmd->name, &value[2]);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_resilience_parse_uint(cf, &v, 1,
                                           NGX_HTTP_BREAKER_MAX_BUCKETS,
                                           &blcf->buckets)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (blcf->window < blcf->buckets) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: window \"%V\" is shorter "
                           "than one millisecond per bucket",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* breaker_failure_rate 50% | off */

static char *
ngx_http_breaker_rate_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_uint_t  *np;
    ngx_str_t   *value;

    np = (ngx_uint_t *) ((char *) conf + cmd->offset);

    if (*np != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        *np = 0;
        return NGX_CONF_OK;
    }

    if (ngx_http_resilience_parse_percent(cf, &value[1], np) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (*np == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: \"%V\" would trip on every "
                           "request, use \"off\" to disable the policy",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a count: breaker_min_requests, _consecutive_failures, _max_concurrent */

static char *
ngx_http_breaker_number_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_uint_t  *np;
    ngx_str_t   *value;

    np = (ngx_uint_t *) ((char *) conf + cmd->offset);

    if (*np != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0
        && cmd->offset != offsetof(ngx_http_breaker_loc_conf_t,
                                   min_requests))
    {
        *np = 0;
        return NGX_CONF_OK;
    }

    if (ngx_http_resilience_parse_uint(cf, &value[1], 1, 100000000, np)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* breaker_slow_call <time> <percent> | off */

static char *
ngx_http_breaker_slow_call(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_breaker_loc_conf_t *blcf = conf;

    ngx_str_t  *value;

    if (blcf->slow_time != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2) {
        if (ngx_strcmp(value[1].data, "off") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: expected a duration and "
                               "a percentage, or \"off\", not \"%V\"",
                               &cmd->name, &value[1]);
            return NGX_CONF_ERROR;
        }

        blcf->slow_time = 0;
        blcf->slow_rate = 10000;
        return NGX_CONF_OK;
    }

    if (ngx_http_resilience_parse_msec(cf, &value[1], &blcf->slow_time)
        != NGX_OK
        || ngx_http_resilience_parse_percent(cf, &value[2], &blcf->slow_rate)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (blcf->slow_time == 0 || blcf->slow_rate == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: \"%V %V\" would trip on every "
                           "request", &cmd->name, &value[1], &value[2]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* breaker_open <time> [max=<time>] [jitter=<percent>] */

static char *
ngx_http_breaker_open_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_breaker_loc_conf_t *blcf = conf;

    ngx_str_t   *value, name, v;
    ngx_uint_t   i;

    if (blcf->open_time != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_resilience_parse_msec(cf, &value[1], &blcf->open_time)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (blcf->open_time == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: the open time must be more "
                           "than 0", &cmd->name);
        return NGX_CONF_ERROR;
    }

    blcf->open_max = ngx_max(blcf->open_time, 300000);
    blcf->open_jitter = 1000;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_resilience_split_option(&value[i], &name, &v)
            != NGX_OK)
        {
            goto invalid;
        }

        if (name.len == 3 && ngx_strncmp(name.data, "max", 3) == 0) {
            if (ngx_http_resilience_parse_msec(cf, &v, &blcf->open_max)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            if (blcf->open_max < blcf->open_time) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\" directive: \"%V\" is less than "
                                   "the open time \"%V\"",
                                   &cmd->name, &value[i], &value[1]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 6 && ngx_strncmp(name.data, "jitter", 6) == 0) {
            if (ngx_http_resilience_parse_percent(cf, &v, &blcf->open_jitter)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" directive: invalid parameter \"%V\"",
                       &cmd->name, &value[i]);
    return NGX_CONF_ERROR;
}


/* breaker_half_open <probes> [timeout=<time>] */

static char *
ngx_http_breaker_half_open(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_breaker_loc_conf_t *blcf = conf;

    ngx_str_t  *value, name, v;

    if (blcf->probes != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_resilience_parse_uint(cf, &value[1], 1,
                                       NGX_HTTP_BREAKER_MAX_PROBES,
                                       &blcf->probes)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    blcf->probe_timeout = 5000;

    if (cf->args->nelts == 3) {
        if (ngx_http_resilience_split_option(&value[2], &name, &v) != NGX_OK
            || name.len != 7 || ngx_strncmp(name.data, "timeout", 7) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: invalid parameter \"%V\"",
                               &cmd->name, &value[2]);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_resilience_parse_msec(cf, &v, &blcf->probe_timeout)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (blcf->probe_timeout == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: \"%V\" must be more "
                               "than 0", &cmd->name, &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* breaker_failure error timeout invalid_header 500-599 429 ... */

static char *
ngx_http_breaker_failure(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_breaker_loc_conf_t *blcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (blcf->failure_status != NULL) {
        return "is duplicate";
    }

    blcf->failure_status = ngx_pcalloc(cf->pool,
                                   sizeof(ngx_http_resilience_status_set_t));
    if (blcf->failure_status == NULL) {
        return NGX_CONF_ERROR;
    }

    blcf->failure_error = 0;
    blcf->failure_timeout = 0;
    blcf->failure_deadline = 0;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "error") == 0
            || ngx_strcmp(value[i].data, "invalid_header") == 0)
        {
            blcf->failure_error = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "timeout") == 0) {
            blcf->failure_timeout = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "deadline") == 0) {
            blcf->failure_deadline = 1;
            continue;
        }

        if (ngx_http_resilience_parse_status(cf, &value[i],
                                             blcf->failure_status)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* breaker_fallback <status> | @named_location */

static char *
ngx_http_breaker_fallback(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_breaker_loc_conf_t *blcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (blcf->fallback_status != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].data[0] == '@') {
        if (value[1].len < 2) {
            goto invalid;
        }

        blcf->fallback_location = value[1];
        blcf->fallback_status = NGX_HTTP_SERVICE_UNAVAILABLE;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n < 400 || n > 599) {
        goto invalid;
    }

    blcf->fallback_status = (ngx_uint_t) n;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" directive: invalid fallback \"%V\", expected "
                       "a status from 400 to 599 or a @named location",
                       &cmd->name, &value[1]);
    return NGX_CONF_ERROR;
}


/* breaker_mode enforce | dry_run | force_open | force_closed | off */

static char *
ngx_http_breaker_mode(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_breaker_loc_conf_t *blcf = conf;

    ngx_str_t        *value;
    ngx_conf_enum_t  *e;

    if (blcf->mode != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (e = ngx_http_breaker_modes; e->name.len; e++) {
        if (e->name.len == value[1].len
            && ngx_strncmp(e->name.data, value[1].data, value[1].len) == 0)
        {
            blcf->mode = e->value;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" directive: invalid mode \"%V\", expected "
                       "enforce, dry_run, force_open, force_closed or off",
                       &cmd->name, &value[1]);
    return NGX_CONF_ERROR;
}


/*
 * breaker_qps_policy 0-100:60% 100-1000:50% 1000-:40% | off;
 * a failure rate per band of traffic (requests per second over the
 * window); outside every band, breaker_failure_rate applies
 */

static char *
ngx_http_breaker_qps_policy(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_breaker_loc_conf_t *blcf = conf;

    u_char                   *colon, *dash;
    ngx_int_t                 low, high;
    ngx_str_t                *value, pct;
    ngx_uint_t                i;
    ngx_http_breaker_band_t  *band;

    if (blcf->bands != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    blcf->bands = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                   sizeof(ngx_http_breaker_band_t));
    if (blcf->bands == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    if (cf->args->nelts - 1 > NGX_HTTP_BREAKER_MAX_BANDS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: at most %d bands",
                           &cmd->name, NGX_HTTP_BREAKER_MAX_BANDS);
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        colon = ngx_strlchr(value[i].data, value[i].data + value[i].len, ':');
        dash = ngx_strlchr(value[i].data, value[i].data + value[i].len, '-');

        if (colon == NULL || dash == NULL || dash > colon) {
            goto invalid;
        }

        low = ngx_atoi(value[i].data, dash - value[i].data);
        high = (colon == dash + 1) ? 0 : ngx_atoi(dash + 1, colon - dash - 1);

        if (low == NGX_ERROR || high == NGX_ERROR
            || (high != 0 && high <= low))
        {
            goto invalid;
        }

        pct.data = colon + 1;
        pct.len = value[i].data + value[i].len - pct.data;

        band = ngx_array_push(blcf->bands);
        if (band == NULL) {
            return NGX_CONF_ERROR;
        }

        band->low = low;
        band->high = high;

        if (ngx_http_resilience_parse_percent(cf, &pct, &band->rate)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" directive: invalid band \"%V\", expected "
                       "<low>-<high>:<percent> such as 0-100:60%% or "
                       "1000-:40%%", &cmd->name, &value[i]);
    return NGX_CONF_ERROR;
}
