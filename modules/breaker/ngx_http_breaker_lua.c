
/*
 * nginx-resilience: the breakers' C ABI for lua-compat.
 *
 * lua-compat/lib/resty/resilience/breaker.lua calls these through
 * LuaJIT's FFI (nginx loads modules with RTLD_GLOBAL).  A breaker is the
 * one a "breaker" directive declares, found by name, or one created in a
 * declared breaker_zone; either way allow() and report() run the
 * directive's own admission and state machine (ngx_http_breaker_enter(),
 * _record(), _release()) on the same node in shared memory, so that Lua
 * and directive traffic trip, reject and recover together, with the same
 * counters, metrics and fleet sharing.  A call evaluates with the
 * breaker_* tuning in effect where it runs (the request's location), as a
 * location evaluates a breaker it shares with others.
 *
 * The permit of an admitted call lives in Lua memory.  Until report()
 * it is in flight; if it is never reported, the request's pool cleanup or
 * the permit's garbage collection (whichever comes first) gives the
 * in-flight count and any probe lease back, as the directive's cleanup
 * does for an aborted request.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_breaker.h"


#define NGX_HTTP_BREAKER_LUA_CREATED_MAX  256


typedef struct {
    uint32_t                   state;
    uint32_t                   generation;
    uint32_t                   probe;
    uint32_t                   dry_run;
    ngx_http_breaker_ctx_t     ctx;
    ngx_pool_cleanup_t        *cln;          /* the request's, while alive */
    ngx_http_breaker_t        *breaker;
} ngx_http_breaker_lua_permit_int_t;


/* the permit Lua allocates must hold ours */
typedef char ngx_http_breaker_lua_permit_fits[
    sizeof(ngx_http_breaker_lua_permit_int_t)
    <= sizeof(ngx_http_breaker_lua_permit_t) ? 1 : -1];


static ngx_http_breaker_main_conf_t *ngx_http_breaker_lua_main_conf(void);
static ngx_http_breaker_t *ngx_http_breaker_lua_create(
    ngx_http_breaker_main_conf_t *bmcf, ngx_str_t *name, ngx_str_t *zone,
    const char **err);
static ngx_http_breaker_node_t *ngx_http_breaker_lua_node(
    ngx_http_breaker_t *b, ngx_str_t *key, ngx_log_t *log);
static void ngx_http_breaker_lua_cleanup(void *data);


/* breakers created from Lua, per worker, for the worker's lifetime */
static ngx_array_t  *ngx_http_breaker_lua_created;


static const char  *ngx_http_breaker_lua_modes[] = {
    "default", "enforce", "dry_run", "force_open", "force_closed", "off"
};


static ngx_http_breaker_main_conf_t *
ngx_http_breaker_lua_main_conf(void)
{
    ngx_cycle_t  *cycle;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NULL;
    }

    cycle = (ngx_cycle_t *) ngx_cycle;

    if (cycle->conf_ctx == NULL
        || cycle->conf_ctx[ngx_http_module.index] == NULL)
    {
        return NULL;
    }

    return ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_breaker_module);
}


/*
 * The breaker "name": declared by a "breaker" directive, or, with "zone",
 * created in that breaker_zone (keyless and keyed calls alike).  NULL,
 * with the reason in "err", otherwise.
 */

void *
ngx_http_breaker_lua_breaker(const u_char *name, size_t len,
    const u_char *zone, size_t zone_len, ngx_http_breaker_lua_desc_t *desc,
    const char **err)
{
    ngx_str_t                      n, zn;
    ngx_uint_t                     i;
    ngx_http_breaker_t            *b, **bp;
    ngx_http_breaker_zone_t       *z;
    ngx_http_breaker_main_conf_t  *bmcf;

    bmcf = ngx_http_breaker_lua_main_conf();

    if (bmcf == NULL) {
        *err = "not in a worker process";
        return NULL;
    }

    n.data = (u_char *) name;
    n.len = len;
    zn.data = (u_char *) zone;
    zn.len = zone ? zone_len : 0;

    b = NULL;
    bp = bmcf->breakers.elts;

    for (i = 0; i < bmcf->breakers.nelts; i++) {
        if (bp[i]->name.len == len
            && ngx_strncmp(bp[i]->name.data, name, len) == 0)
        {
            b = bp[i];
            break;
        }
    }

    if (b == NULL && ngx_http_breaker_lua_created) {
        bp = ngx_http_breaker_lua_created->elts;

        for (i = 0; i < ngx_http_breaker_lua_created->nelts; i++) {
            if (bp[i]->name.len == len
                && ngx_strncmp(bp[i]->name.data, name, len) == 0)
            {
                b = bp[i];
                break;
            }
        }
    }

    if (b == NULL) {
        if (zn.len == 0) {
            *err = "no such breaker in nginx.conf (give a zone to create it)";
            return NULL;
        }

        b = ngx_http_breaker_lua_create(bmcf, &n, &zn, err);

        if (b == NULL) {
            return NULL;
        }

    } else if (zn.len
               && (b->zone->shm.name.len != zn.len
                   || ngx_strncmp(b->zone->shm.name.data, zn.data, zn.len)
                      != 0))
    {
        *err = "the breaker is in another zone";
        return NULL;
    }

    z = b->zone->data;

    if (z == NULL || z->sh == NULL) {
        *err = "the breaker_zone is not ready";
        return NULL;
    }

    desc->keyed = b->created ? 2 : (b->key != NULL);
    desc->shared = (b->shared != 0);
    desc->created = (b->created != 0);
    desc->buckets = (uint32_t) b->buckets;

    return b;
}


static ngx_http_breaker_t *
ngx_http_breaker_lua_create(ngx_http_breaker_main_conf_t *bmcf,
    ngx_str_t *name, ngx_str_t *zone, const char **err)
{
    u_char                    *p;
    ngx_uint_t                 i;
    ngx_shm_zone_t           **zones, *shm_zone;
    ngx_http_breaker_t        *b, **bp;
    ngx_http_breaker_zone_t   *z;

    if (name->len == 0 || name->len > 64) {
        goto bad_name;
    }

    for (p = name->data; p < name->data + name->len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9')
              || *p == '_' || *p == '-' || *p == '.'))
        {
            goto bad_name;
        }
    }

    shm_zone = NULL;
    zones = bmcf->zones.elts;

    for (i = 0; i < bmcf->zones.nelts; i++) {
        z = zones[i]->data;

        if (z->name.len == zone->len
            && ngx_strncmp(z->name.data, zone->data, zone->len) == 0)
        {
            shm_zone = zones[i];
            break;
        }
    }

    if (shm_zone == NULL) {
        *err = "no such breaker_zone";
        return NULL;
    }

    if (ngx_http_breaker_lua_created == NULL) {
        ngx_http_breaker_lua_created = ngx_array_create(ngx_cycle->pool, 4,
                                                  sizeof(ngx_http_breaker_t *));
        if (ngx_http_breaker_lua_created == NULL) {
            *err = "no memory";
            return NULL;
        }
    }

    if (ngx_http_breaker_lua_created->nelts
        == NGX_HTTP_BREAKER_LUA_CREATED_MAX)
    {
        *err = "too many breakers created from Lua (256 per worker)";
        return NULL;
    }

    b = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_http_breaker_t) + name->len);
    bp = ngx_array_push(ngx_http_breaker_lua_created);

    if (b == NULL || bp == NULL) {
        *err = "no memory";
        return NULL;
    }

    b->name.data = (u_char *) (b + 1);
    b->name.len = name->len;
    ngx_memcpy(b->name.data, name->data, name->len);

    b->zone = shm_zone;
    b->buckets = 10;
    b->created = 1;

    *bp = b;

    return b;

bad_name:

    *err = "invalid breaker name, expected up to 64 letters, digits, "
           "\"_\", \"-\" or \".\"";
    return NULL;
}


/*
 * Admits a call or turns it away, as the directive admits a request, with
 * the tuning of the request's location.  ADMITTED fills the permit, which
 * must then be reported or released; UNTRACKED (an empty key, a full
 * zone, breaker_mode off here) lets the call go with nothing to report;
 * OPEN and FULL turn it away.  NGX_ERROR: bad arguments.
 */

int
ngx_http_breaker_lua_allow(ngx_http_request_t *r, void *breaker,
    const u_char *key, size_t len, ngx_http_breaker_lua_permit_t *permit)
{
    ngx_str_t                           k;
    ngx_uint_t                          rc;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_breaker_t                 *b;
    ngx_http_breaker_loc_conf_t        *blcf;
    ngx_http_breaker_lua_permit_int_t  *p;

    b = breaker;
    p = (ngx_http_breaker_lua_permit_int_t *) permit;

    if (r == NULL || b == NULL || p == NULL
        || (key == NULL && len != 0)
        || (b->key != NULL && key == NULL)
        || (b->key == NULL && !b->created && len != 0))
    {
        return NGX_ERROR;
    }

    ngx_memzero(p, sizeof(ngx_http_breaker_lua_permit_int_t));

    blcf = ngx_http_get_module_loc_conf(r, ngx_http_breaker_module);

    if (blcf->mode == NGX_HTTP_BREAKER_OFF
        || (b->key != NULL && len == 0))
    {
        /* off here, or an empty key: exempt, as for the directive */
        return NGX_HTTP_BREAKER_LUA_UNTRACKED;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    k.data = (u_char *) key;
    k.len = len;

    rc = ngx_http_breaker_enter(r, b, blcf, len ? &k : NULL, b->shared,
                                &p->ctx);

    if (p->ctx.node == NULL) {
        /* the zone is full: never reject traffic for it */
        return NGX_HTTP_BREAKER_LUA_UNTRACKED;
    }

    p->state = (uint32_t) p->ctx.state;
    p->generation = p->ctx.generation;
    p->probe = (p->ctx.lease != -1);
    p->dry_run = p->ctx.rejected;
    p->breaker = b;

    if (rc != NGX_HTTP_BREAKER_ADMITTED) {
        return (rc == NGX_HTTP_BREAKER_REJECT_FULL)
               ? NGX_HTTP_BREAKER_LUA_FULL : NGX_HTTP_BREAKER_LUA_OPEN;
    }

    cln->handler = ngx_http_breaker_lua_cleanup;
    cln->data = p;
    p->cln = cln;

    return NGX_HTTP_BREAKER_LUA_ADMITTED;
}


/*
 * The outcome of an admitted call: 1 success, 2 failure, 0 neutral (it
 * says nothing about the upstream); "latency" in ms, or negative when
 * unknown, makes it slow past breaker_slow_call.  Returns the breaker's
 * state afterwards, or NGX_ERROR for a permit that is not in flight
 * (reported or released already).
 */

int
ngx_http_breaker_lua_report(ngx_http_request_t *r,
    ngx_http_breaker_lua_permit_t *permit, int outcome, int64_t latency)
{
    ngx_uint_t                          slow, state;
    ngx_msec_t                          tripped;
    ngx_http_breaker_ctx_t             *ctx;
    ngx_http_breaker_lua_permit_int_t  *p;

    p = (ngx_http_breaker_lua_permit_int_t *) permit;

    if (r == NULL || p == NULL || !p->ctx.counted
        || outcome < NGX_HTTP_BREAKER_NEUTRAL
        || outcome > NGX_HTTP_BREAKER_FAILURE)
    {
        return NGX_ERROR;
    }

    ctx = &p->ctx;

    if (outcome != NGX_HTTP_BREAKER_NEUTRAL && !ctx->recorded) {
        slow = ctx->conf->slow_time && latency >= 0
               && (ngx_msec_t) latency > ctx->conf->slow_time;

        tripped = ngx_http_breaker_record(r, ctx, (ngx_uint_t) outcome,
                                          slow);

        if (tripped && p->breaker->shared) {
            ngx_http_breaker_sync_publish(r, ctx, tripped);
        }

        if (ctx->closed_it && p->breaker->shared) {
            ngx_http_breaker_sync_publish_close(r, ctx);
        }

        if (ctx->probe_ok && p->breaker->shared) {
            ngx_http_breaker_sync_probe_ok(r, ctx);
        }
    }

    state = ngx_http_breaker_current_state(ctx->node, ngx_current_msec);

    ngx_http_breaker_lua_release(permit);

    return (int) state;
}


/* a permit let go without an outcome; also the permit's finalizer */

void
ngx_http_breaker_lua_release(ngx_http_breaker_lua_permit_t *permit)
{
    ngx_http_breaker_lua_permit_int_t  *p;

    p = (ngx_http_breaker_lua_permit_int_t *) permit;

    if (p == NULL) {
        return;
    }

    if (p->cln) {
        /* the request is still there: its cleanup has nothing left to do */
        p->cln->handler = NULL;
        p->cln = NULL;
    }

    if (p->ctx.node) {
        ngx_http_breaker_release(&p->ctx);
    }
}


static void
ngx_http_breaker_lua_cleanup(void *data)
{
    ngx_http_breaker_lua_permit_int_t  *p = data;

    p->cln = NULL;

    ngx_http_breaker_release(&p->ctx);
}


/* keyless: the cached node; keyed: looked up and pinned */

static ngx_http_breaker_node_t *
ngx_http_breaker_lua_node(ngx_http_breaker_t *b, ngx_str_t *key,
    ngx_log_t *log)
{
    ngx_str_t                 none;
    ngx_http_breaker_zone_t  *z;

    z = b->zone->data;

    if (key->len) {
        return ngx_http_breaker_lookup(z, &b->name, key, b->buckets, log);
    }

    if (b->node == NULL) {
        ngx_str_null(&none);
        b->node = ngx_http_breaker_lookup(z, &b->name, &none, b->buckets,
                                          log);
    }

    return b->node;
}


/* the breaker's state for "key" (created closed if the zone lacks it) */

int
ngx_http_breaker_lua_state(void *breaker, const u_char *key, size_t len,
    ngx_http_breaker_lua_info_t *info)
{
    ngx_str_t                 k;
    ngx_msec_int_t            left;
    ngx_http_breaker_t       *b;
    ngx_http_breaker_node_t  *bn;

    b = breaker;

    if (b == NULL || info == NULL || (key == NULL && len != 0)
        || (b->key != NULL && len == 0)
        || (b->key == NULL && !b->created && len != 0))
    {
        return NGX_ERROR;
    }

    k.data = (u_char *) key;
    k.len = len;

    bn = ngx_http_breaker_lua_node(b, &k, ngx_cycle->log);

    if (bn == NULL) {
        return NGX_ERROR;
    }

    ngx_spinlock(&bn->lock, ngx_pid, 1024);

    info->state = (uint32_t) ngx_http_breaker_current_state(bn,
                                                         ngx_current_msec);
    info->mode = bn->override.mode;
    info->generation = bn->generation;
    info->trips = bn->trips;
    info->inflight = bn->inflight;
    info->consecutive = bn->consecutive;

    left = (bn->state == NGX_HTTP_BREAKER_OPEN)
           ? (ngx_msec_int_t) (bn->open_until - ngx_current_msec) : 0;

    info->open_ms = (left > 0) ? (uint64_t) left : 0;
    info->successes = bn->successes;
    info->failures = bn->failures;
    info->slow = bn->slow;
    info->rejected = bn->rejected;
    info->dry_run_rejected = bn->dry_run_rejected;
    info->transitions = bn->transitions;

    ngx_unlock(&bn->lock);

    if (len) {
        (void) ngx_atomic_fetch_add(&bn->pins, -1);
    }

    return (int) info->state;
}


/*
 * Forces the breaker, every key of it, into a mode (1 enforce, 2 dry_run,
 * 3 force_open, 4 force_closed, 5 off) or gives the mode back to
 * nginx.conf (0), as resilience_admin's PUT {"mode": ...} does, and for
 * the fleet too when the breaker is shared.  Returns the keys reached, or
 * NGX_ERROR (a bad mode, or no room left for another override).
 */

int
ngx_http_breaker_lua_force(ngx_http_request_t *r, void *breaker, int mode)
{
    ngx_uint_t                    clear, n;
    ngx_http_breaker_t           *b;
    ngx_http_breaker_zone_t      *z;
    ngx_http_breaker_override_t   o, applied;

    b = breaker;

    if (r == NULL || b == NULL || mode < 0 || mode > NGX_HTTP_BREAKER_OFF) {
        return NGX_ERROR;
    }

    ngx_memzero(&o, sizeof(ngx_http_breaker_override_t));

    o.mode = (u_char) mode;
    clear = (mode == 0) ? NGX_HTTP_BREAKER_CLEAR_MODE : 0;

    z = b->zone->data;

    if (ngx_http_breaker_override(z, &b->name, &o, clear, &n, &applied)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (b->shared) {
        ngx_http_breaker_sync_publish_override(r, z, &b->name, &o, clear);
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "breaker \"%V\" mode set to %s from Lua (%ui key(s))",
                  &b->name, ngx_http_breaker_lua_modes[mode], n);

    return (int) n;
}
