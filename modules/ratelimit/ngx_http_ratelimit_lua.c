
/*
 * nginx-resilience: the rate limits' C ABI for lua-compat.
 *
 * lua-compat/lib/resty/resilience/limit.lua calls these through LuaJIT's
 * FFI (nginx loads modules with RTLD_GLOBAL, so the symbols resolve from
 * Lua): a zone declared with ratelimit_zone, found by name, and a key
 * checked and charged with the very code the "ratelimit" directive runs
 * (ngx_http_ratelimit_check(), the same shared memory, the same deltas for
 * the fleet's syncs, the same metrics).  Nothing here blocks and nothing
 * here raises: bad arguments are NGX_ERROR, and the Lua side turns them
 * into Lua errors.
 *
 * Return codes: NGX_OK (0), NGX_BUSY (-3, rejected), NGX_DECLINED (-5,
 * uncommit of a key the zone does not hold), NGX_ERROR (-1).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_ratelimit.h"


static ngx_int_t ngx_http_ratelimit_lua_try(ngx_http_ratelimit_try_t *t,
    ngx_http_ratelimit_limit_t *limit, void *zone, const u_char *key,
    size_t len, int64_t burst, int64_t cost,
    ngx_http_ratelimit_lua_result_t *out);


/*
 * The zone "name", or NULL: not declared, or not usable yet (outside a
 * worker, or before the zone's shared memory exists, as in init_by_lua).
 */

void *
ngx_http_ratelimit_lua_zone(const u_char *name, size_t len,
    ngx_http_ratelimit_lua_zone_t *info)
{
    ngx_uint_t                        i;
    ngx_cycle_t                      *cycle;
    ngx_http_ratelimit_zone_t       **zones, *z;
    ngx_http_ratelimit_main_conf_t   *rmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NULL;
    }

    cycle = (ngx_cycle_t *) ngx_cycle;

    if (name == NULL || cycle->conf_ctx == NULL
        || cycle->conf_ctx[ngx_http_module.index] == NULL)
    {
        return NULL;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_ratelimit_module);
    if (rmcf == NULL) {
        return NULL;
    }

    zones = rmcf->zones.elts;

    for (i = 0; i < rmcf->zones.nelts; i++) {
        z = zones[i];

        if (z->name.len != len || ngx_strncmp(z->name.data, name, len) != 0)
        {
            continue;
        }

        if (z->sh == NULL) {
            return NULL;
        }

        if (info) {
            info->milli = z->rate.milli;
            info->period = z->rate.period;
            info->algorithm = (uint32_t) z->algorithm;
            info->sync = (uint32_t) z->sync;
        }

        return z;
    }

    return NULL;
}


/*
 * One request of "cost" for "key": burst as in "ratelimit ... burst=",
 * delay as "delay=" (a negative delay is "nodelay"), with "commit" it is
 * charged when it passes.  NGX_OK: passes, out->delay is the wait (GCRA
 * only, as limit_req computes it); NGX_BUSY: rejected, out->retry is when
 * it would pass.  An empty key is exempt, as the directive's: it passes
 * and is charged nothing.  A fleet zone while Redis is away does what its
 * on_redis_error says; a sync=strict zone is decided from its local state
 * (the fleet's, as of its last answer) and its charges reach Redis at the
 * next sync tick, since Lua cannot be suspended here.
 */

int
ngx_http_ratelimit_lua_incoming(void *zone, const u_char *key, size_t len,
    int64_t burst, int64_t delay, int64_t cost, int commit,
    ngx_http_ratelimit_lua_result_t *out)
{
    ngx_int_t                    rc;
    ngx_uint_t                   factor;
    ngx_http_ratelimit_try_t     t;
    ngx_http_ratelimit_zone_t   *z;
    ngx_http_ratelimit_limit_t   limit;

    rc = ngx_http_ratelimit_lua_try(&t, &limit, zone, key, len, burst, cost,
                                    out);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    z = t.zone;

    limit.delay = (delay < 0) ? NGX_MAX_INT_T_VALUE
                              : ngx_min(delay, 10000000) * 1000;

    factor = 1;

    if (z->sync != NGX_HTTP_RATELIMIT_SYNC_LOCAL
        && ngx_http_ratelimit_degraded(z))
    {
        rc = ngx_http_ratelimit_fallback(&t);

        if (rc == NGX_DECLINED) {
            return NGX_OK;
        }

        if (rc == NGX_BUSY) {
            (void) ngx_atomic_fetch_add(&z->sh->rejected, 1);
            out->retry = t.wait;
            return NGX_BUSY;
        }

        factor = (ngx_uint_t) z->sh->instances;
    }

    rc = ngx_http_ratelimit_check(&t, commit ? 1 : 0, factor);

    if (rc == NGX_DECLINED) {
        /* no memory for the key: not limited, as for the directive */
        return NGX_OK;
    }

    out->excess = t.excess;
    out->remaining = t.remaining;

    if (rc == NGX_BUSY) {
        (void) ngx_atomic_fetch_add(&z->sh->rejected, 1);
        out->retry = t.wait;
        return NGX_BUSY;
    }

    /* checked without a charge: the key was pinned, let it go */
    ngx_http_ratelimit_unpin(&t);

    /* a local share: its first request of each interval is free */
    t.excess -= (int64_t) (t.factor - 1) * 1000;

    if (z->algorithm == NGX_HTTP_RATELIMIT_GCRA && t.excess > limit.delay) {
        out->delay = ngx_http_ratelimit_to_ms(z, t.excess - limit.delay);
    }

    if (commit) {
        (void) ngx_atomic_fetch_add(out->delay ? &z->sh->delayed
                                               : &z->sh->passed, 1);
    }

    return NGX_OK;
}


/*
 * Gives back what a committed request of "cost" charged "key" (an
 * request that did not go ahead after all).  NGX_DECLINED: the zone
 * holds no such key (never charged, or forgotten).
 */

int
ngx_http_ratelimit_lua_uncommit(void *zone, const u_char *key, size_t len,
    int64_t burst, int64_t cost, ngx_http_ratelimit_lua_result_t *out)
{
    ngx_int_t                    rc;
    ngx_http_ratelimit_try_t     t;
    ngx_http_ratelimit_limit_t   limit;

    rc = ngx_http_ratelimit_lua_try(&t, &limit, zone, key, len, burst, cost,
                                    out);

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_ratelimit_uncommit(&t);

    out->remaining = t.remaining;

    return rc;
}


/*
 * resty.limit.conn: delta 1 (incoming, committed), 0 (incoming, not
 * committed), -1 (leaving, uncommit); "limit" is max + burst; the count
 * in flight for the key in *conns.  NGX_OK, NGX_BUSY (rejected),
 * NGX_DECLINED (leaving a key with nothing in flight, or no memory for
 * the key: not limited), NGX_ERROR.
 */

int
ngx_http_ratelimit_lua_conn(void *zone, const u_char *key, size_t len,
    int delta, int64_t limit, int64_t *conns)
{
    ngx_int_t                        rc;
    ngx_http_ratelimit_try_t         t;
    ngx_http_ratelimit_limit_t       lim;
    ngx_http_ratelimit_lua_result_t  out;

    if (conns == NULL || delta < -1 || delta > 1
        || (delta >= 0 && (limit < 1 || limit > 100000000)))
    {
        return NGX_ERROR;
    }

    *conns = 0;

    rc = ngx_http_ratelimit_lua_try(&t, &lim, zone, key, len, 0, 1, &out);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_ratelimit_conn(&t, delta, limit, conns);
}


/*
 * Forgets every key of the zone (lua-compat's reset(), what a suite
 * written for lua-resty-limit-traffic does with flush_all()), charges
 * not yet synced included; returns the count of keys forgotten, or
 * NGX_ERROR.
 */

int64_t
ngx_http_ratelimit_lua_reset(void *zone)
{
    ngx_http_ratelimit_zone_t  *z;

    z = zone;

    if (z == NULL || z->sh == NULL) {
        return NGX_ERROR;
    }

    return (int64_t) ngx_http_ratelimit_reset(z);
}


/* the checks both calls share; NGX_DECLINED: an empty key */

static ngx_int_t
ngx_http_ratelimit_lua_try(ngx_http_ratelimit_try_t *t,
    ngx_http_ratelimit_limit_t *limit, void *zone, const u_char *key,
    size_t len, int64_t burst, int64_t cost,
    ngx_http_ratelimit_lua_result_t *out)
{
    ngx_http_ratelimit_zone_t  *z;

    z = zone;

    if (out == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(out, sizeof(ngx_http_ratelimit_lua_result_t));

    if (z == NULL || z->sh == NULL || key == NULL
        || burst < 0 || burst > 10000000
        || cost < 0 || cost > NGX_HTTP_RATELIMIT_COST_MAX)
    {
        return NGX_ERROR;
    }

    if (len == 0) {
        return NGX_DECLINED;
    }

    ngx_memzero(t, sizeof(ngx_http_ratelimit_try_t));
    ngx_memzero(limit, sizeof(ngx_http_ratelimit_limit_t));

    limit->shm_zone = z->shm_zone;
    limit->burst = burst * 1000;

    t->limit = limit;
    t->zone = z;
    t->cost = cost * 1000;

    ngx_http_ratelimit_set_key(t, (u_char *) key, len);

    return NGX_OK;
}
