
/*
 * nginx-resilience: ngx_http_ratelimit_module, request rate limits.
 *
 * GCRA (limit_req's algorithm and semantics for burst, nodelay and
 * delay=) or a sliding window, per key, in shared memory; several limits
 * per request with nginx's all-or-nothing accounting; a cost per request;
 * standard headers; fleet-wide limits through Redis (ngx_http_ratelimit_
 * sync.c).  Requests are checked in the preaccess phase, as limit_req's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_ratelimit.h"


#define NGX_HTTP_RATELIMIT_HEADERS_OFF     0
#define NGX_HTTP_RATELIMIT_HEADERS_DRAFT   1
#define NGX_HTTP_RATELIMIT_HEADERS_LEGACY  2


static ngx_int_t ngx_http_ratelimit_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_ratelimit_prepare(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx, ngx_http_ratelimit_loc_conf_t *rlcf);
static ngx_int_t ngx_http_ratelimit_decide(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx);
static ngx_http_ratelimit_ctx_t *ngx_http_ratelimit_new_ctx(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_ratelimit_keep_tries(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx);
static ngx_http_ratelimit_try_t *ngx_http_ratelimit_strict_fallback(
    ngx_http_request_t *r, ngx_http_ratelimit_ctx_t *ctx);
static ngx_int_t ngx_http_ratelimit_outcome(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx, ngx_http_ratelimit_try_t *busy);
static void ngx_http_ratelimit_delay(ngx_http_request_t *r);
static ngx_http_ratelimit_ctx_t *ngx_http_ratelimit_get_ctx(
    ngx_http_request_t *r);
static void ngx_http_ratelimit_cleanup(void *data);
static ngx_int_t ngx_http_ratelimit_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_ratelimit_add_header(ngx_http_request_t *r,
    ngx_str_t *name, u_char *value, size_t len);
static ngx_int_t ngx_http_ratelimit_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_ratelimit_collect(ngx_http_resilience_metrics_t *m,
    void *data);
static ngx_int_t ngx_http_ratelimit_add_variables(ngx_conf_t *cf);
static void *ngx_http_ratelimit_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_ratelimit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_ratelimit_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_ratelimit_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_ratelimit_init_process(ngx_cycle_t *cycle);
static void ngx_http_ratelimit_exit_process(ngx_cycle_t *cycle);
static char *ngx_http_ratelimit_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ratelimit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ratelimit_status_set(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ratelimit_enum_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_conf_enum_t  ngx_http_ratelimit_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_ratelimit_algorithms[] = {
    { ngx_string("gcra"), NGX_HTTP_RATELIMIT_GCRA },
    { ngx_string("sliding_window"), NGX_HTTP_RATELIMIT_SLIDING },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_ratelimit_syncs[] = {
    { ngx_string("local"), NGX_HTTP_RATELIMIT_SYNC_LOCAL },
    { ngx_string("redis"), NGX_HTTP_RATELIMIT_SYNC_REDIS },
    { ngx_string("strict"), NGX_HTTP_RATELIMIT_SYNC_STRICT },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_ratelimit_on_errors[] = {
    { ngx_string("local"), NGX_HTTP_RATELIMIT_ERR_LOCAL },
    { ngx_string("open"), NGX_HTTP_RATELIMIT_ERR_OPEN },
    { ngx_string("closed"), NGX_HTTP_RATELIMIT_ERR_CLOSED },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_ratelimit_header_modes[] = {
    { ngx_string("off"), NGX_HTTP_RATELIMIT_HEADERS_OFF },
    { ngx_string("draft"), NGX_HTTP_RATELIMIT_HEADERS_DRAFT },
    { ngx_string("legacy"), NGX_HTTP_RATELIMIT_HEADERS_LEGACY },
    { ngx_null_string, 0 }
};


#define NGX_HTTP_RATELIMIT_CONF                                               \
    NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF

static ngx_command_t  ngx_http_ratelimit_commands[] = {

    { ngx_string("ratelimit_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_ratelimit_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ratelimit"),
      NGX_HTTP_RATELIMIT_CONF|NGX_CONF_1MORE,
      ngx_http_ratelimit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ratelimit_status"),
      NGX_HTTP_RATELIMIT_CONF|NGX_CONF_TAKE1,
      ngx_http_ratelimit_status_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratelimit_loc_conf_t, status),
      NULL },

    { ngx_string("ratelimit_dry_run"),
      NGX_HTTP_RATELIMIT_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratelimit_loc_conf_t, dry_run),
      NULL },

    { ngx_string("ratelimit_headers"),
      NGX_HTTP_RATELIMIT_CONF|NGX_CONF_TAKE1,
      ngx_http_ratelimit_enum_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratelimit_loc_conf_t, headers),
      &ngx_http_ratelimit_header_modes },

    { ngx_string("ratelimit_log_level"),
      NGX_HTTP_RATELIMIT_CONF|NGX_CONF_TAKE1,
      ngx_http_ratelimit_enum_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ratelimit_loc_conf_t, log_level),
      &ngx_http_ratelimit_log_levels },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ratelimit_module_ctx = {
    ngx_http_ratelimit_add_variables,      /* preconfiguration */
    ngx_http_ratelimit_init,               /* postconfiguration */

    ngx_http_ratelimit_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_ratelimit_create_loc_conf,    /* create location configuration */
    ngx_http_ratelimit_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_ratelimit_module = {
    NGX_MODULE_V1,
    &ngx_http_ratelimit_module_ctx,        /* module context */
    ngx_http_ratelimit_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_ratelimit_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_ratelimit_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_ratelimit_vars[] = {

    { ngx_string("ratelimit_status"), NULL, ngx_http_ratelimit_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ratelimit_remaining"), NULL, ngx_http_ratelimit_variable,
      1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_ratelimit_status_names[] = {
    ngx_null_string,
    ngx_string("PASSED"),
    ngx_string("DELAYED"),
    ngx_string("REJECTED"),
    ngx_string("DELAYED_DRY_RUN"),
    ngx_string("REJECTED_DRY_RUN")
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

/* this worker's contexts, one per connection: see new_ctx() */
static ngx_http_ratelimit_ctx_t        **ngx_http_ratelimit_slots;


static ngx_int_t
ngx_http_ratelimit_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_http_ratelimit_ctx_t       *ctx;
    ngx_http_ratelimit_loc_conf_t  *rlcf;
    ngx_http_ratelimit_try_t        tries[NGX_HTTP_RATELIMIT_MAX_LIMITS];

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_ratelimit_module);

    ctx = ngx_http_ratelimit_get_ctx(r->main);

    if (ctx) {
        if (ctx->waiter) {
            /* sync=strict: Redis has not answered yet */
            return NGX_AGAIN;
        }

        if (ctx->resumed) {
            ctx->resumed = 0;
            return ngx_http_ratelimit_decide(r, ctx);
        }

        /* once per request, as limit_req: redirects are not charged twice */
        return NGX_DECLINED;
    }

    if (rlcf->limits == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_ratelimit_new_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(tries, rlcf->limits->nelts * sizeof(ngx_http_ratelimit_try_t));

    ctx->tries = tries;

    rc = ngx_http_ratelimit_prepare(r, ctx, rlcf);

    if (rc == NGX_OK) {
        rc = ngx_http_ratelimit_decide(r, ctx);
    }

    if (ctx->tries == tries) {
        /* decided: the stack's tries go with this call */
        ctx->tries = NULL;
        ctx->ntries = 0;
    }

    return rc;
}


/*
 * A request's context.  For a connection of this worker's connection
 * array, it is that connection's, reused by its requests one after the
 * other: a plain request allocates nothing (an allocation here pushed the
 * request pool into a second block, a malloc and a free per request).
 * HTTP/2 streams (and anything else) allocate it from the request pool.
 */

static ngx_http_ratelimit_ctx_t *
ngx_http_ratelimit_new_ctx(ngx_http_request_t *r)
{
    ngx_uint_t                 i;
    ngx_connection_t          *c;
    ngx_pool_cleanup_t        *cln;
    ngx_http_ratelimit_ctx_t  *ctx, **slot;

    c = r->main->connection;
    slot = NULL;

    if (ngx_http_ratelimit_slots
        && c >= ngx_cycle->connections
        && c < ngx_cycle->connections + ngx_cycle->connection_n)
    {
        i = c - ngx_cycle->connections;
        slot = &ngx_http_ratelimit_slots[i];
    }

    if (slot && *slot) {
        ctx = *slot;

        if (ctx->waiter) {
            /* still promised to a request that waits on Redis */
            slot = NULL;
            ctx = NULL;
        }

    } else {
        ctx = NULL;
    }

    if (ctx == NULL && slot) {
        ctx = ngx_palloc(ngx_cycle->pool, sizeof(ngx_http_ratelimit_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        *slot = ctx;
    }

    if (ctx == NULL) {
        /* found again after a redirect through its cleanup */
        cln = ngx_pool_cleanup_add(r->main->pool,
                                   sizeof(ngx_http_ratelimit_ctx_t));
        if (cln == NULL) {
            return NULL;
        }

        cln->handler = ngx_http_ratelimit_cleanup;
        ctx = cln->data;
    }

    ngx_memzero(ctx, sizeof(ngx_http_ratelimit_ctx_t));

    ctx->request = r->main;
    ctx->number = c->number;
    ctx->requests = c->requests;
    ctx->slot = (slot != NULL);

    ngx_http_set_ctx(r->main, ctx, ngx_http_ratelimit_module);

    return ctx;
}


/* evaluates every limit's key and cost */

static ngx_int_t
ngx_http_ratelimit_prepare(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx, ngx_http_ratelimit_loc_conf_t *rlcf)
{
    size_t                       j;
    ngx_int_t                    n;
    ngx_str_t                    key, cost;
    ngx_uint_t                   i;
    ngx_http_ratelimit_try_t    *t;
    ngx_http_ratelimit_zone_t   *z;
    ngx_http_ratelimit_limit_t  *limits;

    limits = rlcf->limits->elts;

    ctx->ntries = rlcf->limits->nelts;
    ctx->conf = rlcf;

    for (i = 0; i < ctx->ntries; i++) {
        t = &ctx->tries[i];
        z = limits[i].shm_zone->data;

        t->limit = &limits[i];
        t->zone = z;
        t->factor = 1;

        if (ngx_http_complex_value(r, &z->key, &key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (key.len == 0) {
            /* an empty key exempts the request from this limit */
            t->skip = 1;
            continue;
        }

        ngx_http_ratelimit_set_key(t, key.data, key.len);

        t->cost = 1000;

        if (limits[i].cost == NULL) {
            continue;
        }

        if (ngx_http_complex_value(r, limits[i].cost, &cost) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* digits only, of any length: a long number is capped below */

        for (j = 0; j < cost.len; j++) {
            if (cost.data[j] < '0' || cost.data[j] > '9') {
                break;
            }
        }

        if (cost.len == 0 || j < cost.len) {
            n = NGX_ERROR;

        } else if (cost.len > 9) {
            n = NGX_HTTP_RATELIMIT_COST_MAX + 1;

            for (j = 0; j < cost.len - 9 && cost.data[j] == '0'; j++) {
                /* leading zeros */
            }

            if (j == cost.len - 9) {
                n = ngx_atoi(cost.data + j, 9);
            }

        } else {
            n = ngx_atoi(cost.data, cost.len);
        }

        if (n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "ratelimit: cost \"%V\" is not a number, "
                          "zone \"%V\" charges 1", &cost, &z->name);
            continue;
        }

        if (n > NGX_HTTP_RATELIMIT_COST_MAX) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "ratelimit: cost \"%V\" capped at %d in "
                          "zone \"%V\"", &cost, NGX_HTTP_RATELIMIT_COST_MAX,
                          &z->name);
            n = NGX_HTTP_RATELIMIT_COST_MAX;
        }

        t->cost = (int64_t) n * 1000;
    }

    return NGX_OK;
}


/*
 * Every limit checks the request; the last one charges it at once when it
 * passes and the others are charged after it (limit_req's accounting), so
 * a request turned away by one limit is charged to none.  Limits with
 * sync=strict ask Redis in one script for all of them, the request
 * suspended meanwhile; ngx_http_ratelimit_resume() brings it back here.
 */

static ngx_int_t
ngx_http_ratelimit_decide(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_uint_t                  i, last, strict, factor;
    ngx_http_ratelimit_try_t   *t, *busy;
    ngx_http_ratelimit_zone_t  *z;

    busy = NULL;

    if (!ctx->strict_rc) {

        /* the first pass: local limits, and which go to Redis */

        strict = 0;
        last = ctx->ntries;

        for (i = 0; i < ctx->ntries; i++) {
            t = &ctx->tries[i];

            if (t->skip) {
                continue;
            }

            z = t->zone;

            if (z->sync == NGX_HTTP_RATELIMIT_SYNC_STRICT
                && !ngx_http_ratelimit_degraded(z))
            {
                t->strict = 1;
                strict++;
                continue;
            }

            last = i;
        }

        for (i = 0; i < ctx->ntries; i++) {
            t = &ctx->tries[i];

            if (t->skip || t->strict) {
                continue;
            }

            z = t->zone;

            if (z->sync != NGX_HTTP_RATELIMIT_SYNC_LOCAL
                && ngx_http_ratelimit_degraded(z))
            {
                rc = ngx_http_ratelimit_fallback(t);

                if (rc == NGX_DECLINED) {
                    t->skip = 1;
                    continue;
                }

                if (rc == NGX_BUSY) {
                    busy = t;
                    break;
                }

                factor = (ngx_uint_t) z->sh->instances;

            } else {
                factor = 1;
            }

            rc = ngx_http_ratelimit_check(t, i == last && strict == 0,
                                          factor);

            if (rc == NGX_DECLINED) {
                t->skip = 1;
                continue;
            }

            if (rc == NGX_BUSY) {
                busy = t;
                break;
            }

            if (i == last && strict == 0) {
                t->accounted = 1;
            }
        }

        if (busy == NULL && strict) {
            if (ngx_http_ratelimit_keep_tries(r, ctx) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            /* the request to bring back: a subrequest, maybe */
            ctx->resume = r;

            rc = ngx_http_ratelimit_strict(r, ctx);

            if (rc == NGX_AGAIN) {
                r->read_event_handler = ngx_http_test_reading;
                r->write_event_handler = ngx_http_request_empty_handler;
                return NGX_AGAIN;
            }

            busy = ngx_http_ratelimit_strict_fallback(r, ctx);
        }

    } else if (ctx->strict_failed) {
        busy = ngx_http_ratelimit_strict_fallback(r, ctx);

    } else {
        /* back from Redis: a strict limit may have turned the request away */

        for (i = 0; i < ctx->ntries; i++) {
            t = &ctx->tries[i];

            if (t->strict && t->busy) {
                busy = t;
                break;
            }
        }
    }

    ctx->strict_rc = 0;
    ctx->strict_failed = 0;

    if (busy) {
        for (i = 0; i < ctx->ntries; i++) {
            ngx_http_ratelimit_unpin(&ctx->tries[i]);
        }
    }

    return ngx_http_ratelimit_outcome(r, ctx, busy);
}


/* Redis is not there for sync=strict: each limit as on_redis_error says */

static ngx_http_ratelimit_try_t *
ngx_http_ratelimit_strict_fallback(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_http_ratelimit_try_t  *t;

    for (i = 0; i < ctx->ntries; i++) {
        t = &ctx->tries[i];

        if (!t->strict) {
            continue;
        }

        t->strict = 0;

        rc = ngx_http_ratelimit_fallback(t);

        if (rc == NGX_OK) {
            rc = ngx_http_ratelimit_check(t, 0,
                                          (ngx_uint_t) t->zone->sh->instances);
        }

        if (rc == NGX_DECLINED) {
            t->skip = 1;
            continue;
        }

        if (rc == NGX_BUSY) {
            return t;
        }
    }

    return NULL;
}


/*
 * The tries outlive the handler's call while Redis answers, and the
 * request gets a cleanup that forgets the wait if it goes away first.
 */

static ngx_int_t
ngx_http_ratelimit_keep_tries(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx)
{
    ngx_uint_t                 i;
    ngx_pool_cleanup_t        *cln;
    ngx_http_ratelimit_try_t  *t;

    cln = NULL;

    if (ctx->slot) {
        cln = ngx_pool_cleanup_add(r->main->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }
    }

    t = ngx_palloc(r->pool, ctx->ntries * sizeof(ngx_http_ratelimit_try_t));
    if (t == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(t, ctx->tries, ctx->ntries * sizeof(ngx_http_ratelimit_try_t));

    for (i = 0; i < ctx->ntries; i++) {
        if (t[i].flags & NGX_HTTP_RATELIMIT_HASHED) {
            t[i].key.data = t[i].hashed;
        }
    }

    ctx->tries = t;

    if (cln) {
        cln->handler = ngx_http_ratelimit_cleanup;
        cln->data = ctx;
    }

    return NGX_OK;
}


/* what the request gets, once every limit has spoken */

static ngx_int_t
ngx_http_ratelimit_outcome(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx, ngx_http_ratelimit_try_t *busy)
{
    int64_t                         excess;
    ngx_uint_t                      i, applied;
    ngx_msec_t                      delay, d;
    ngx_http_ratelimit_try_t       *t, *slow, *head;
    ngx_http_ratelimit_zone_t      *z;
    ngx_http_ratelimit_loc_conf_t  *rlcf;

    rlcf = ctx->conf;
    ctx->done = 1;
    applied = 0;

    if (busy) {
        z = busy->zone;

        ctx->zone = z;
        ctx->limit = busy->limit;
        ctx->remaining = 0;
        ctx->reset = busy->reset;
        ctx->retry = busy->wait;

        /* limit_req's line: the key's excess, this request included */
        excess = ngx_max(busy->excess, 0);

        ngx_log_error(rlcf->log_level, r->connection->log, 0,
                      "limiting requests%s, excess: %L.%03L by zone \"%V\"",
                      rlcf->dry_run ? ", dry run" : "",
                      excess / 1000, excess % 1000, &z->name);

        if (rlcf->dry_run) {
            ctx->status = NGX_HTTP_RATELIMIT_REJECTED_DRY_RUN;
            (void) ngx_atomic_fetch_add(&z->sh->dry_run, 1);
            return NGX_DECLINED;
        }

        ctx->status = NGX_HTTP_RATELIMIT_REJECTED;
        (void) ngx_atomic_fetch_add(&z->sh->rejected, 1);

        return rlcf->status;
    }

    /* every limit passed: charge the pinned ones, find the longest delay */

    delay = 0;
    slow = NULL;
    head = NULL;

    for (i = 0; i < ctx->ntries; i++) {
        t = &ctx->tries[i];

        if (t->skip) {
            continue;
        }

        applied++;

        if (!t->strict && !t->accounted) {
            /* with the factor it was checked with */
            ngx_http_ratelimit_account(t, t->factor);
        }

        if (head == NULL || t->remaining < head->remaining) {
            head = t;
        }

        z = t->zone;

        /* a local share: its first request of each interval is free */
        excess = t->excess - (int64_t) (t->factor - 1) * 1000;

        if (z->algorithm != NGX_HTTP_RATELIMIT_GCRA
            || excess <= t->limit->delay)
        {
            continue;
        }

        d = ngx_http_ratelimit_to_ms(z, excess - t->limit->delay);

        if (d > delay) {
            delay = d;
            slow = t;
        }
    }

    if (applied == 0) {
        /* every key was empty: no limit applied, as limit_req */
        return NGX_DECLINED;
    }

    if (head) {
        ctx->zone = head->zone;
        ctx->limit = head->limit;
        ctx->remaining = head->remaining;
        ctx->reset = head->reset;
    }

    if (delay == 0) {
        ctx->status = NGX_HTTP_RATELIMIT_PASSED;

        for (i = 0; i < ctx->ntries; i++) {
            if (!ctx->tries[i].skip) {
                (void) ngx_atomic_fetch_add(
                                  &ctx->tries[i].zone->sh->passed, 1);
            }
        }

        return NGX_DECLINED;
    }

    z = slow->zone;
    excess = slow->excess;

    /* limit_req's line, then the module's own words */

    ngx_log_error(rlcf->delay_log_level, r->connection->log, 0,
                  "delaying request%s, excess: %L.%03L, by zone \"%V\", "
                  "ratelimit: %M ms",
                  rlcf->dry_run ? ", dry run" : "",
                  excess / 1000, excess % 1000, &z->name, delay);

    if (rlcf->dry_run) {
        ctx->status = NGX_HTTP_RATELIMIT_DELAYED_DRY_RUN;
        (void) ngx_atomic_fetch_add(&z->sh->passed, 1);
        return NGX_DECLINED;
    }

    ctx->status = NGX_HTTP_RATELIMIT_DELAYED;
    (void) ngx_atomic_fetch_add(&z->sh->delayed, 1);

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_ratelimit_delay;

    r->connection->write->delayed = 1;
    ngx_add_timer(r->connection->write, delay);

    return NGX_AGAIN;
}


static void
ngx_http_ratelimit_delay(ngx_http_request_t *r)
{
    ngx_event_t  *wev;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ratelimit delay");

    wev = r->connection->write;

    if (wev->delayed) {

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
}


/*
 * sync=strict, from the Redis reply handler: the request runs its phases
 * again and ngx_http_ratelimit_handler() picks the answer up
 */

void
ngx_http_ratelimit_resume(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx)
{
    ngx_connection_t  *c;

    c = r->connection;

    ctx->resumed = 1;
    ctx->strict_rc = 1;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/* the ctx survives internal redirects (error_page) through its cleanup */

static ngx_http_ratelimit_ctx_t *
ngx_http_ratelimit_get_ctx(ngx_http_request_t *r)
{
    ngx_connection_t          *c;
    ngx_http_ratelimit_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ratelimit_module);

    if (ctx || !r->internal) {
        return ctx;
    }

    c = r->connection;

    if (ngx_http_ratelimit_slots
        && c >= ngx_cycle->connections
        && c < ngx_cycle->connections + ngx_cycle->connection_n)
    {
        ctx = ngx_http_ratelimit_slots[c - ngx_cycle->connections];

        /* the connection's number and request count tell requests apart */

        if (ctx && ctx->number == c->number && ctx->requests == c->requests)
        {
            ngx_http_set_ctx(r, ctx, ngx_http_ratelimit_module);
            return ctx;
        }
    }

    return ngx_http_resilience_ctx(r, &ngx_http_ratelimit_module,
                                   ngx_http_ratelimit_cleanup);
}


static void
ngx_http_ratelimit_cleanup(void *data)
{
    ngx_http_ratelimit_ctx_t *ctx = data;

    ngx_uint_t  i;

    /* a request that goes away while it waits for Redis */

    ngx_http_ratelimit_strict_cancel(ctx);

    for (i = 0; ctx->tries && i < ctx->ntries; i++) {
        ngx_http_ratelimit_unpin(&ctx->tries[i]);
    }

    ctx->tries = NULL;
    ctx->ntries = 0;
}


static ngx_int_t
ngx_http_ratelimit_header_filter(ngx_http_request_t *r)
{
    u_char                      *p;
    int64_t                      q;
    ngx_str_t                    name;
    ngx_uint_t                   w, mode;
    ngx_msec_t                   reset;
    ngx_http_ratelimit_ctx_t    *ctx;
    ngx_http_ratelimit_zone_t   *z;
    u_char                       buf[NGX_INT64_LEN * 2 + 64];

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_ratelimit_get_ctx(r);

    if (ctx == NULL || ctx->zone == NULL || ctx->headers_sent) {
        return ngx_http_next_header_filter(r);
    }

    ctx->headers_sent = 1;

    if (ctx->status == NGX_HTTP_RATELIMIT_REJECTED) {
        /* the exact wait GCRA gives, in whole seconds */
        p = ngx_sprintf(buf, "%M", (ctx->retry + 999) / 1000);

        ngx_str_set(&name, "Retry-After");

        if (ngx_http_ratelimit_add_header(r, &name, buf, p - buf) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    mode = ctx->conf->headers;

    if (mode == NGX_HTTP_RATELIMIT_HEADERS_OFF) {
        return ngx_http_next_header_filter(r);
    }

    z = ctx->zone;

    q = z->quota;
    w = z->window;

    if (z->algorithm == NGX_HTTP_RATELIMIT_SLIDING) {
        q = ((int64_t) z->rate.milli + ctx->limit->burst) / 1000;
        w = z->rate.period / 1000;
    }

    reset = (ctx->reset + 999) / 1000;

    if (mode == NGX_HTTP_RATELIMIT_HEADERS_DRAFT) {
        p = ngx_sprintf(buf, "\"%V\";q=%L;w=%ui", &z->name, q, w);

        ngx_str_set(&name, "RateLimit-Policy");

        if (ngx_http_ratelimit_add_header(r, &name, buf, p - buf) != NGX_OK) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(buf, "\"%V\";r=%L;t=%M", &z->name, ctx->remaining,
                        reset);

        ngx_str_set(&name, "RateLimit");

        if (ngx_http_ratelimit_add_header(r, &name, buf, p - buf) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_next_header_filter(r);
    }

    p = ngx_sprintf(buf, "%L", q);
    ngx_str_set(&name, "X-RateLimit-Limit");

    if (ngx_http_ratelimit_add_header(r, &name, buf, p - buf) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(buf, "%L", ctx->remaining);
    ngx_str_set(&name, "X-RateLimit-Remaining");

    if (ngx_http_ratelimit_add_header(r, &name, buf, p - buf) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(buf, "%M", reset);
    ngx_str_set(&name, "X-RateLimit-Reset");

    if (ngx_http_ratelimit_add_header(r, &name, buf, p - buf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_ratelimit_add_header(ngx_http_request_t *r, ngx_str_t *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->value.data = ngx_pnalloc(r->pool, len);
    if (h->value.data == NULL) {
        h->hash = 0;
        return NGX_ERROR;
    }

    ngx_memcpy(h->value.data, value, len);
    h->value.len = len;
    h->key = *name;
    h->hash = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ratelimit_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                    *p;
    ngx_http_ratelimit_ctx_t  *ctx;

    ctx = ngx_http_ratelimit_get_ctx(r->main);

    if (ctx == NULL || ctx->status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    if (data == 0) {
        v->len = ngx_http_ratelimit_status_names[ctx->status].len;
        v->data = ngx_http_ratelimit_status_names[ctx->status].data;
        return NGX_OK;
    }

    if (ctx->zone == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%L", ctx->remaining) - p;
    v->data = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ratelimit_collect(ngx_http_resilience_metrics_t *m, void *data)
{
    ngx_http_ratelimit_main_conf_t *rmcf = data;

    ngx_uint_t                   i, f, o;
    ngx_keyval_t                 labels[2];
    ngx_http_ratelimit_zone_t  **zones, *z;

    /* requests_total: one sample per outcome, from these counters */

    static const struct {
        const char  *outcome;
        size_t       offset;
    } outcomes[] = {
        { "passed", offsetof(ngx_http_ratelimit_shctx_t, passed) },
        { "delayed", offsetof(ngx_http_ratelimit_shctx_t, delayed) },
        { "rejected", offsetof(ngx_http_ratelimit_shctx_t, rejected) },
        { "dry_run_rejected", offsetof(ngx_http_ratelimit_shctx_t, dry_run) }
    };

    /* the other families: one counter each; offset 0 is requests_total */

    static const struct {
        const char                          *name;
        ngx_http_resilience_metric_type_e    type;
        const char                          *help;
        size_t                               offset;
    } families[] = {
        { "ratelimit_requests_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Requests checked by a ratelimit zone, by outcome.", 0 },
        { "ratelimit_evicted_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Keys evicted from a full zone while still remembering a rate.",
          offsetof(ngx_http_ratelimit_shctx_t, evicted) },
        { "ratelimit_keys", NGX_HTTP_RESILIENCE_GAUGE,
          "Keys in a zone now.",
          offsetof(ngx_http_ratelimit_shctx_t, keys) },
        { "ratelimit_unlimited_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Requests let through because no key fitted in the zone.",
          offsetof(ngx_http_ratelimit_shctx_t, unlimited) },
        { "ratelimit_redis_errors_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Failed or timed out Redis syncs and strict checks.",
          offsetof(ngx_http_ratelimit_shctx_t, redis_errors) },
        { "ratelimit_fallbacks_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Decisions taken by on_redis_error while Redis was away.",
          offsetof(ngx_http_ratelimit_shctx_t, fallbacks) },
        { "ratelimit_syncs_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Successful syncs with Redis (sync=redis) and strict checks.",
          offsetof(ngx_http_ratelimit_shctx_t, syncs) }
    };

#define ngx_http_ratelimit_counter(z, offset)                                 \
    ((double) *(ngx_atomic_t *) ((u_char *) (z)->sh + (offset)))

    zones = rmcf->zones.elts;

    for (f = 0; f < sizeof(families) / sizeof(families[0]); f++) {

        if (ngx_http_resilience_metrics_family(m, families[f].name,
                                               families[f].type,
                                               families[f].help)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (i = 0; i < rmcf->zones.nelts; i++) {
            z = zones[i];

            if (z->sh == NULL) {
                continue;
            }

            ngx_str_set(&labels[0].key, "zone");
            labels[0].value = z->name;
            ngx_str_set(&labels[1].key, "outcome");

            for (o = 0; f == 0 && o < sizeof(outcomes) / sizeof(outcomes[0]);
                 o++)
            {
                labels[1].value.data = (u_char *) outcomes[o].outcome;
                labels[1].value.len = ngx_strlen(outcomes[o].outcome);

                if (ngx_http_resilience_metrics_sample(m, labels, 2,
                        ngx_http_ratelimit_counter(z, outcomes[o].offset))
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            if (f != 0
                && ngx_http_resilience_metrics_sample(m, labels, 1,
                       ngx_http_ratelimit_counter(z, families[f].offset))
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

#undef ngx_http_ratelimit_counter

    return NGX_OK;
}


static ngx_int_t
ngx_http_ratelimit_add_variables(ngx_conf_t *cf)
{
    return ngx_http_resilience_add_variables(cf, ngx_http_ratelimit_vars);
}


static void *
ngx_http_ratelimit_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ratelimit_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ratelimit_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rmcf->zones, cf->pool, 4,
                       sizeof(ngx_http_ratelimit_zone_t *))
        != NGX_OK
        || ngx_array_init(&rmcf->used, cf->pool, 4,
                          sizeof(ngx_shm_zone_t *))
           != NGX_OK)
    {
        return NULL;
    }

    return rmcf;
}


static void *
ngx_http_ratelimit_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ratelimit_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ratelimit_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->limits = NULL;
     */

    conf->limits = NGX_CONF_UNSET_PTR;
    conf->status = NGX_CONF_UNSET_UINT;
    conf->dry_run = NGX_CONF_UNSET;
    conf->headers = NGX_CONF_UNSET_UINT;
    conf->log_level = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_ratelimit_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_ratelimit_loc_conf_t *prev = parent;
    ngx_http_ratelimit_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->limits, prev->limits, NULL);
    ngx_conf_merge_uint_value(conf->status, prev->status,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_value(conf->dry_run, prev->dry_run, 0);
    ngx_conf_merge_uint_value(conf->headers, prev->headers,
                              NGX_HTTP_RATELIMIT_HEADERS_OFF);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level, NGX_LOG_ERR);

    /* delays are logged one level lower, as limit_req does */
    conf->delay_log_level = (conf->log_level == NGX_LOG_INFO)
                            ? NGX_LOG_INFO : conf->log_level + 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_ratelimit_init(ngx_conf_t *cf)
{
    ngx_uint_t                        i;
    ngx_http_handler_pt              *h;
    ngx_shm_zone_t                  **used;
    ngx_http_ratelimit_zone_t       **zones;
    ngx_http_core_main_conf_t        *cmcf;
    ngx_http_ratelimit_main_conf_t   *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ratelimit_module);

    /* a zone may be declared after the locations that use it */

    used = rmcf->used.elts;

    for (i = 0; i < rmcf->used.nelts; i++) {
        if (used[i]->data == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ratelimit\" uses unknown ratelimit_zone "
                               "\"%V\"", &used[i]->shm.name);
            return NGX_ERROR;
        }
    }

    if (rmcf->redis && !ngx_http_resilience_redis_configured(cf)) {
        zones = rmcf->zones.elts;

        for (i = 0; i < rmcf->zones.nelts; i++) {
            if (zones[i]->sync != NGX_HTTP_RATELIMIT_SYNC_LOCAL) {
                break;
            }
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ratelimit_zone\" \"%V\": \"sync=%s\" needs "
                           "\"resilience_redis\"", &zones[i]->name,
                           zones[i]->sync == NGX_HTTP_RATELIMIT_SYNC_REDIS
                           ? "redis" : "strict");
        return NGX_ERROR;
    }

    if (rmcf->zones.nelts == 0) {
        return NGX_OK;
    }

    if (rmcf->redis && ngx_http_ratelimit_sync_init_conf(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_ratelimit_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_ratelimit_header_filter;

    return ngx_http_resilience_metrics_add_collector(cf,
                                                     ngx_http_ratelimit_collect,
                                                     rmcf);
}


static ngx_int_t
ngx_http_ratelimit_init_process(ngx_cycle_t *cycle)
{
    ngx_http_ratelimit_main_conf_t  *rmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_ratelimit_module);

    if (rmcf == NULL || rmcf->zones.nelts == 0) {
        return NGX_OK;
    }

    ngx_http_ratelimit_slots = ngx_pcalloc(cycle->pool,
                                 cycle->connection_n
                                 * sizeof(ngx_http_ratelimit_ctx_t *));
    if (ngx_http_ratelimit_slots == NULL) {
        return NGX_ERROR;
    }

    if (!rmcf->redis) {
        return NGX_OK;
    }

    return ngx_http_ratelimit_sync_init_worker(cycle, rmcf);
}


static void
ngx_http_ratelimit_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_ratelimit_sync_exit_worker();
}


/*
 * ratelimit_zone <name> key=<complex value> size=<size> rate=<rate>
 *     [algorithm=gcra|sliding_window] [sync=local|redis|strict]
 *     [sync_interval=<time>] [on_redis_error=local|open|closed]
 */

static char *
ngx_http_ratelimit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ratelimit_main_conf_t *rmcf = conf;

    size_t                              size;
    uint64_t                            k;
    ngx_str_t                          *value, name, val;
    ngx_uint_t                          i;
    ngx_shm_zone_t                     *shm_zone;
    ngx_http_ratelimit_zone_t          *z, **zp;
    ngx_http_compile_complex_value_t    ccv;

    value = cf->args->elts;

    z = ngx_pcalloc(cf->pool, sizeof(ngx_http_ratelimit_zone_t));
    if (z == NULL) {
        return NGX_CONF_ERROR;
    }

    z->name = value[1];
    z->sync_interval = 100;
    size = 0;

    if (value[1].len == 0 || ngx_strchr(value[1].data, '=') != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ratelimit_zone\" directive: invalid zone name "
                           "\"%V\", the name comes first, as in "
                           "\"ratelimit_zone one key=$binary_remote_addr "
                           "size=10m rate=10r/s\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[1].len > 64) {
        /* it is part of the zone's Redis keys */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ratelimit_zone\" directive: zone name \"%V\" "
                           "is longer than 64 bytes", &value[1]);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_resilience_split_option(&value[i], &name, &val)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "\"ratelimit_zone\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (name.len == 3 && ngx_strncmp(name.data, "key", 3) == 0) {
            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

            ccv.cf = cf;
            ccv.value = &val;
            ccv.complex_value = &z->key;

            if (val.len == 0
                || ngx_http_compile_complex_value(&ccv) != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid key \"%V\" in "
                                   "\"ratelimit_zone\"", &val);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 4 && ngx_strncmp(name.data, "size", 4) == 0) {
            if (ngx_http_resilience_parse_size(cf, &val, &size) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            if ((uint64_t) size > 0xffffffff) {
                /* the keys' LRU links are 32-bit offsets in the zone */
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"ratelimit_zone\" \"%V\" size \"%V\" "
                                   "is too large, at most 4095m", &z->name,
                                   &val);
                return NGX_CONF_ERROR;
            }

            if (size < 8 * ngx_pagesize) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"ratelimit_zone\" \"%V\" size \"%V\" "
                                   "is too small, at least %uzk",
                                   &z->name, &val, 8 * ngx_pagesize / 1024);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 4 && ngx_strncmp(name.data, "rate", 4) == 0) {
            if (ngx_http_resilience_parse_rate(cf, &val, &z->rate)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 9 && ngx_strncmp(name.data, "algorithm", 9) == 0) {
            if (ngx_http_resilience_parse_enum(cf, "algorithm", &val,
                                               ngx_http_ratelimit_algorithms,
                                               &z->algorithm)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 4 && ngx_strncmp(name.data, "sync", 4) == 0) {
            if (ngx_http_resilience_parse_enum(cf, "sync", &val,
                                               ngx_http_ratelimit_syncs,
                                               &z->sync)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 13
            && ngx_strncmp(name.data, "sync_interval", 13) == 0)
        {
            if (ngx_http_resilience_parse_msec(cf, &val, &z->sync_interval)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            if (z->sync_interval < 10 || z->sync_interval > 60000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "sync_interval \"%V\" in "
                                   "\"ratelimit_zone\" must be between "
                                   "10ms and 60s", &val);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 14
            && ngx_strncmp(name.data, "on_redis_error", 14) == 0)
        {
            if (ngx_http_resilience_parse_enum(cf, "on_redis_error", &val,
                                               ngx_http_ratelimit_on_errors,
                                               &z->on_error)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"ratelimit_zone\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (z->key.value.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ratelimit_zone\" \"%V\" must have \"key=\"",
                           &z->name);
        return NGX_CONF_ERROR;
    }

    if (size == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ratelimit_zone\" \"%V\" must have \"size=\"",
                           &z->name);
        return NGX_CONF_ERROR;
    }

    if (z->rate.milli == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ratelimit_zone\" \"%V\" must have \"rate=\"",
                           &z->name);
        return NGX_CONF_ERROR;
    }

    /* the headers' policy: the rate as written, in whole requests */

    for (k = 1; k < 1000 && (z->rate.milli * k) % 1000; k++) {
        /* void */
    }

    z->quota = (int64_t) (z->rate.milli * k / 1000);
    z->window = (ngx_uint_t) (z->rate.period / 1000 * k);

    if (z->algorithm == NGX_HTTP_RATELIMIT_SLIDING && k > 1) {
        /* a window counts whole requests: 0.5r/s is 1 per 2 s */
        z->rate.milli *= k;
        z->rate.period *= k;
    }

    shm_zone = ngx_shared_memory_add(cf, &z->name, size,
                                     &ngx_http_ratelimit_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate ratelimit_zone \"%V\"", &z->name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_ratelimit_init_zone;
    shm_zone->data = z;
    z->shm_zone = shm_zone;

    zp = ngx_array_push(&rmcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = z;

    if (z->sync != NGX_HTTP_RATELIMIT_SYNC_LOCAL) {
        rmcf->redis = 1;
    }

    return NGX_CONF_OK;
}


/* ratelimit <zone> [burst=N] [nodelay | delay=N] [cost=<complex value>] */

static char *
ngx_http_ratelimit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ratelimit_loc_conf_t *rlcf = conf;

    ngx_str_t                          *value, name, val;
    ngx_uint_t                          i, n, nodelay, delay_set;
    ngx_shm_zone_t                     *shm_zone;
    ngx_shm_zone_t                    **zp;
    ngx_http_ratelimit_limit_t         *limit, *limits;
    ngx_http_ratelimit_main_conf_t     *rmcf;
    ngx_http_compile_complex_value_t    ccv;

    value = cf->args->elts;

    shm_zone = ngx_shared_memory_add(cf, &value[1], 0,
                                     &ngx_http_ratelimit_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (rlcf->limits == NGX_CONF_UNSET_PTR) {
        rlcf->limits = ngx_array_create(cf->pool, 1,
                                        sizeof(ngx_http_ratelimit_limit_t));
        if (rlcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    limits = rlcf->limits->elts;

    for (i = 0; i < rlcf->limits->nelts; i++) {
        if (limits[i].shm_zone == shm_zone) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate \"ratelimit\" for zone \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (rlcf->limits->nelts == NGX_HTTP_RATELIMIT_MAX_LIMITS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many \"ratelimit\" directives, at most %d",
                           NGX_HTTP_RATELIMIT_MAX_LIMITS);
        return NGX_CONF_ERROR;
    }

    limit = ngx_array_push(rlcf->limits);
    if (limit == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(limit, sizeof(ngx_http_ratelimit_limit_t));

    limit->shm_zone = shm_zone;

    nodelay = 0;
    delay_set = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (value[i].len == 7
            && ngx_strncmp(value[i].data, "nodelay", 7) == 0)
        {
            nodelay = 1;
            continue;
        }

        if (ngx_http_resilience_split_option(&value[i], &name, &val)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"ratelimit\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        if ((name.len == 5 && ngx_strncmp(name.data, "burst", 5) == 0)
            || (name.len == 5 && ngx_strncmp(name.data, "delay", 5) == 0))
        {
            if (ngx_http_resilience_parse_uint(cf, &val, 0, 10000000, &n)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            if (name.data[0] == 'b') {
                limit->burst = (int64_t) n * 1000;

            } else {
                limit->delay = (int64_t) n * 1000;
                delay_set = 1;
            }

            continue;
        }

        if (name.len == 4 && ngx_strncmp(name.data, "cost", 4) == 0) {
            limit->cost = ngx_palloc(cf->pool,
                                     sizeof(ngx_http_complex_value_t));
            if (limit->cost == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

            ccv.cf = cf;
            ccv.value = &val;
            ccv.complex_value = limit->cost;

            if (val.len == 0
                || ngx_http_compile_complex_value(&ccv) != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid cost \"%V\" in \"ratelimit\"",
                                   &val);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"ratelimit\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (nodelay && delay_set) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ratelimit\" zone \"%V\": \"nodelay\" and "
                           "\"delay=\" exclude each other", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (nodelay) {
        limit->delay = NGX_MAX_INT_T_VALUE;
    }

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ratelimit_module);

    zp = ngx_array_push(&rmcf->used);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = shm_zone;

    return NGX_CONF_OK;
}


/* ratelimit_status 429: 400 to 599, the error naming the value */

static char *
ngx_http_ratelimit_status_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t   *value;
    ngx_uint_t  *np;

    np = (ngx_uint_t *) (p + cmd->offset);

    if (*np != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_resilience_parse_uint(cf, &value[1], 400, 599, np)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* ngx_conf_set_enum_slot, with the directive and the choices named */

static char *
ngx_http_ratelimit_enum_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t   *value;
    ngx_uint_t  *np;

    np = (ngx_uint_t *) (p + cmd->offset);

    if (*np != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_resilience_parse_enum(cf, "value", &value[1], cmd->post, np)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
