
/*
 * nginx-resilience: fleet-wide rate limits through Redis.
 *
 * sync=redis: requests are decided locally, at once; every sync_interval
 * one worker per instance sends the zone's recently used keys with what
 * this instance charged them since the last sync, in one script that adds
 * the charges to the fleet's state and returns it, which becomes the
 * local state (plus what was charged here meanwhile).  The same script
 * keeps a census of the instances that sync, so that while Redis is away
 * each instance can enforce its share of the rate (on_redis_error=local).
 *
 * sync=strict: one script per request checks and charges every strict
 * limit of the request atomically (all or nothing), the request suspended
 * without blocking the worker; the core client's command_timeout bounds
 * the wait, after which on_redis_error decides.
 *
 * Both use Redis TIME.  GCRA state in Redis is the key's theoretical
 * arrival time in microseconds; sliding windows are INCRBY counters per
 * window, windows aligned on the epoch.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_ratelimit.h"


/* a Redis key: "<prefix>rl:<zone>:<key>" (zone names: 64 bytes at most) */
#define NGX_HTTP_RATELIMIT_KEY_BUF                                            \
    NGX_HTTP_RESILIENCE_REDIS_KEY_LEN("rl", 64, NGX_HTTP_RATELIMIT_KEY_MAX)

/* a batch's id is remembered in Redis this long; retried no longer */
#define NGX_HTTP_RATELIMIT_BATCH_TTL    600000
#define NGX_HTTP_RATELIMIT_BATCH_RETRY  540000


#define NGX_HTTP_RATELIMIT_STR2(x)      #x
#define NGX_HTTP_RATELIMIT_STR(x)       NGX_HTTP_RATELIMIT_STR2(x)


typedef struct ngx_http_ratelimit_batch_s  ngx_http_ratelimit_batch_t;

struct ngx_http_ratelimit_batch_s {
    ngx_http_ratelimit_zone_t  *zone;
    ngx_http_ratelimit_batch_t *next;        /* pending: the next one */
    ngx_msec_t                  sent;        /* when it left for Redis */
    ngx_msec_t                  born;        /* its first try */
    ngx_msec_t                  span;        /* the time its charges took */
    uint64_t                    id;
    ngx_uint_t                  n;
    ngx_http_ratelimit_entry_t  entries[1];
};


typedef struct {
    ngx_http_ratelimit_ctx_t   *ctx;         /* NULL: the request is gone */
} ngx_http_ratelimit_waiter_t;


static void ngx_http_ratelimit_sync_tick(ngx_event_t *ev);
static void ngx_http_ratelimit_sync_zone(ngx_http_ratelimit_zone_t *z,
    ngx_msec_t span, ngx_log_t *log);
static void ngx_http_ratelimit_sync_send(ngx_http_ratelimit_batch_t *b,
    ngx_log_t *log);
static void ngx_http_ratelimit_sync_release(ngx_http_ratelimit_zone_t *z);
static void ngx_http_ratelimit_synced(ngx_int_t rc, redisReply *reply,
    void *data);
static void ngx_http_ratelimit_strict_done(ngx_int_t rc, redisReply *reply,
    void *data);
static size_t ngx_http_ratelimit_redis_key(u_char *buf,
    ngx_http_ratelimit_zone_t *z, u_char *key, size_t len);
static int64_t ngx_http_ratelimit_period_us(ngx_http_ratelimit_zone_t *z);
static int64_t ngx_http_ratelimit_interval_ns(ngx_http_ratelimit_zone_t *z);
static ngx_int_t ngx_http_ratelimit_int(redisReply *r, int64_t *v);


/*
 * KEYS: the census, the batch's id, then the keys; ARGV: this instance,
 * the algorithm, the emission interval (GCRA, ns) or the window (us),
 * the time since the last sync (us), then one charge per key
 * (milli-requests).  The charges were made over that time, not now:
 * GCRA's arrival time may start that far back, or a steady rate would
 * look like a burst at every sync.  A batch whose id Redis has already
 * seen (its answer timed out, it is sent again) charges nothing: each is
 * applied exactly once.  Returns the census count, two figures per key
 * (GCRA: tat - now in ns; sliding: the current and previous counts), and
 * Redis's time in us.  GCRA's arrival time is kept as "us:ns" (a double
 * holds today's time in us to a quarter of a microsecond only), so that
 * an interval keeps its nanoseconds: 600k r/s is 1666 ns, not 1 us.
 */

static ngx_str_t  ngx_http_ratelimit_sync_lua = ngx_string(
    "local function rd(k)\n"
    "  local v = redis.call('GET', k)\n"
    "  if not v then return 0, 0 end\n"
    "  local a, b = string.match(v, '^(%d+):(%d+)$')\n"
    "  if a then return tonumber(a), tonumber(b) end\n"
    "  return tonumber(v) or 0, 0\n"
    "end\n"
    "local function add(us, ns, d)\n"
    "  local t = ns + d\n"
    "  local w = math.floor(t / 1000)\n"
    "  return us + w, t - w * 1000\n"
    "end\n"
    "local function wr(k, us, ns, now)\n"
    "  redis.call('SET', k, string.format('%.0f:%.0f', us, ns), 'PX',\n"
    "             math.floor((us - now) / 1000) + 1000)\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local ms = math.floor(now / 1000)\n"
    "redis.call('ZADD', KEYS[1], ms, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - 10000)\n"
    "redis.call('PEXPIRE', KEYS[1], 60000)\n"
    "local fresh = redis.call('SET', KEYS[2], '1', 'NX', 'PX', "
    NGX_HTTP_RATELIMIT_STR(NGX_HTTP_RATELIMIT_BATCH_TTL) ")\n"
    "local out = {redis.call('ZCARD', KEYS[1])}\n"
    "local alg, p = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local floor = now - tonumber(ARGV[4])\n"
    "local w = math.floor(now / p)\n"
    "for i = 3, #KEYS do\n"
    "  local d = tonumber(ARGV[i + 2])\n"
    "  if not fresh then d = 0 end\n"
    "  if alg == 0 then\n"
    "    local us, ns = rd(KEYS[i])\n"
    "    if us < floor then us, ns = floor, 0 end\n"
    "    if d > 0 then\n"
    "      us, ns = add(us, ns, math.floor(d * p / 1000))\n"
    "      wr(KEYS[i], us, ns, now)\n"
    "    end\n"
    "    out[#out + 1] = (us - now) * 1000 + ns\n"
    "    out[#out + 1] = 0\n"
    "  else\n"
    "    local ck = KEYS[i] .. ':' .. w\n"
    "    local cur\n"
    "    if d > 0 then\n"
    "      cur = redis.call('INCRBY', ck, d)\n"
    "      redis.call('PEXPIRE', ck, math.floor(2 * p / 1000) + 1000)\n"
    "    else\n"
    "      cur = tonumber(redis.call('GET', ck) or '0')\n"
    "    end\n"
    "    out[#out + 1] = cur\n"
    "    out[#out + 1] = tonumber(redis.call('GET', KEYS[i] .. ':' .. (w - 1))"
    " or '0')\n"
    "  end\n"
    "end\n"
    "out[#out + 1] = now\n"
    "return out\n");


/*
 * KEYS: the keys; ARGV: four per key: the algorithm, the emission
 * interval (ns) or the window (us), the tolerance (GCRA: burst in ns;
 * sliding: the limit in milli-requests), the cost (milli-requests).  Every key
 * passes, and all are charged, or none is.  Returns: 1 if charged, then
 * three figures per key (passes, GCRA: tat - now in ns after the charge;
 * sliding: the current and the previous counts), then Redis's time.
 */

static ngx_str_t  ngx_http_ratelimit_strict_lua = ngx_string(
    "local function rd(k)\n"
    "  local v = redis.call('GET', k)\n"
    "  if not v then return 0, 0 end\n"
    "  local a, b = string.match(v, '^(%d+):(%d+)$')\n"
    "  if a then return tonumber(a), tonumber(b) end\n"
    "  return tonumber(v) or 0, 0\n"
    "end\n"
    "local function add(us, ns, d)\n"
    "  local t = ns + d\n"
    "  local w = math.floor(t / 1000)\n"
    "  return us + w, t - w * 1000\n"
    "end\n"
    "local function wr(k, us, ns, now)\n"
    "  redis.call('SET', k, string.format('%.0f:%.0f', us, ns), 'PX',\n"
    "             math.floor((us - now) / 1000) + 1000)\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local ok, st = 1, {}\n"
    "for i = 1, #KEYS do\n"
    "  local a = (i - 1) * 4\n"
    "  local alg, p = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
    "  local lim, cost = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])\n"
    "  local c = cost\n"
    "  if c < 1000 then c = 1000 end\n"
    "  local s = {alg = alg, p = p, cost = cost, pass = 1}\n"
    "  if alg == 0 then\n"
    "    local us, ns = rd(KEYS[i])\n"
    "    if us < now then us, ns = now, 0 end\n"
    "    s.v, s.ns = us, ns\n"
    "    if (us - now) * 1000 + ns + math.floor(c * p / 1000) - p > lim"
    " then\n"
    "      s.pass = 0\n"
    "    end\n"
    "  else\n"
    "    s.w = math.floor(now / p)\n"
    "    s.v = tonumber(redis.call('GET', KEYS[i] .. ':' .. s.w) or '0')\n"
    "    s.prev = tonumber(redis.call('GET', KEYS[i] .. ':' .. (s.w - 1))"
    " or '0')\n"
    "    local est = s.prev * (p - (now - s.w * p)) / p + s.v\n"
    "    if est + c > lim then s.pass = 0 end\n"
    "  end\n"
    "  if s.pass == 0 then ok = 0 end\n"
    "  st[i] = s\n"
    "end\n"
    "local out = {ok}\n"
    "for i = 1, #KEYS do\n"
    "  local s = st[i]\n"
    "  out[#out + 1] = s.pass\n"
    "  if s.alg == 0 then\n"
    "    if ok == 1 and s.cost > 0 then\n"
    "      s.v, s.ns = add(s.v, s.ns, math.floor(s.cost * s.p / 1000))\n"
    "      wr(KEYS[i], s.v, s.ns, now)\n"
    "    end\n"
    "    out[#out + 1] = (s.v - now) * 1000 + s.ns\n"
    "    out[#out + 1] = 0\n"
    "  else\n"
    "    if ok == 1 and s.cost > 0 then\n"
    "      s.v = redis.call('INCRBY', KEYS[i] .. ':' .. s.w, s.cost)\n"
    "      redis.call('PEXPIRE', KEYS[i] .. ':' .. s.w,\n"
    "                 math.floor(2 * s.p / 1000) + 1000)\n"
    "    end\n"
    "    out[#out + 1] = s.v\n"
    "    out[#out + 1] = s.prev\n"
    "  end\n"
    "end\n"
    "out[#out + 1] = now\n"
    "return out\n");


static ngx_http_resilience_redis_script_t  *ngx_http_ratelimit_sync_script;
static ngx_http_resilience_redis_script_t  *ngx_http_ratelimit_strict_script;
static ngx_event_t                          ngx_http_ratelimit_tick_event;
static ngx_msec_t                           ngx_http_ratelimit_tick;


ngx_int_t
ngx_http_ratelimit_sync_init_conf(ngx_conf_t *cf)
{
    ngx_http_ratelimit_sync_script = ngx_http_resilience_redis_script(cf,
                                                &ngx_http_ratelimit_sync_lua);
    ngx_http_ratelimit_strict_script = ngx_http_resilience_redis_script(cf,
                                              &ngx_http_ratelimit_strict_lua);

    if (ngx_http_ratelimit_sync_script == NULL
        || ngx_http_ratelimit_strict_script == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_ratelimit_sync_init_worker(ngx_cycle_t *cycle,
    ngx_http_ratelimit_main_conf_t *rmcf)
{
    ngx_uint_t                   i;
    ngx_http_ratelimit_zone_t  **zones;

    zones = rmcf->zones.elts;
    ngx_http_ratelimit_tick = 0;

    for (i = 0; i < rmcf->zones.nelts; i++) {
        if (zones[i]->sync == NGX_HTTP_RATELIMIT_SYNC_LOCAL) {
            continue;
        }

        if (ngx_http_ratelimit_tick == 0
            || zones[i]->sync_interval < ngx_http_ratelimit_tick)
        {
            ngx_http_ratelimit_tick = zones[i]->sync_interval;
        }
    }

    if (ngx_http_ratelimit_tick == 0) {
        return NGX_OK;
    }

    ngx_http_ratelimit_tick_event.handler = ngx_http_ratelimit_sync_tick;
    ngx_http_ratelimit_tick_event.data = rmcf;
    ngx_http_ratelimit_tick_event.log = cycle->log;
    ngx_http_ratelimit_tick_event.cancelable = 1;

    ngx_add_timer(&ngx_http_ratelimit_tick_event, ngx_http_ratelimit_tick);

    return NGX_OK;
}


void
ngx_http_ratelimit_sync_exit_worker(void)
{
    ngx_uint_t                        i;
    ngx_http_ratelimit_batch_t       *b, *next;
    ngx_http_ratelimit_zone_t       **zones;
    ngx_http_ratelimit_main_conf_t   *rmcf;

    if (ngx_http_ratelimit_tick_event.timer_set) {
        ngx_del_timer(&ngx_http_ratelimit_tick_event);
    }

    rmcf = ngx_http_ratelimit_tick_event.data;

    if (rmcf == NULL) {
        return;
    }

    /* batches that got no answer: nobody is left to send them again */

    zones = rmcf->zones.elts;

    for (i = 0; i < rmcf->zones.nelts; i++) {
        for (b = zones[i]->pending; b; b = next) {
            next = b->next;
            ngx_free(b);
        }

        zones[i]->pending = NULL;
    }
}


/* Redis is away for this zone: on_redis_error decides */

ngx_uint_t
ngx_http_ratelimit_degraded(ngx_http_ratelimit_zone_t *z)
{
    return z->sh->degraded
           || ngx_http_resilience_redis_state()
              != NGX_HTTP_RESILIENCE_REDIS_CONNECTED;
}


/*
 * A fleet limit while Redis is away, as its on_redis_error says: NGX_OK
 * (enforce locally, the caller scales the cost), NGX_DECLINED (admit)
 * or NGX_BUSY (reject).
 */

ngx_int_t
ngx_http_ratelimit_fallback(ngx_http_ratelimit_try_t *t)
{
    ngx_http_ratelimit_zone_t  *z;

    z = t->zone;

    (void) ngx_atomic_fetch_add(&z->sh->fallbacks, 1);

    switch (z->on_error) {

    case NGX_HTTP_RATELIMIT_ERR_OPEN:
        return NGX_DECLINED;

    case NGX_HTTP_RATELIMIT_ERR_CLOSED:
        t->wait = 1000;
        t->remaining = 0;
        t->reset = 1000;
        return NGX_BUSY;

    default:
        return NGX_OK;
    }
}


static void
ngx_http_ratelimit_sync_tick(ngx_event_t *ev)
{
    ngx_http_ratelimit_main_conf_t *rmcf = ev->data;

    ngx_uint_t                   i;
    ngx_msec_t                   now, stale, span;
    ngx_atomic_uint_t            owner;
    ngx_http_ratelimit_zone_t  **zones, *z;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_add_timer(ev, ngx_http_ratelimit_tick);

    if (ngx_http_resilience_redis_state()
        != NGX_HTTP_RESILIENCE_REDIS_CONNECTED)
    {
        return;
    }

    zones = rmcf->zones.elts;
    now = ngx_current_msec;

    for (i = 0; i < rmcf->zones.nelts; i++) {
        z = zones[i];

        if (z->sync == NGX_HTTP_RATELIMIT_SYNC_LOCAL
            || (ngx_msec_int_t) (now - z->sh->sync_at)
               < (ngx_msec_int_t) z->sync_interval)
        {
            continue;
        }

        if (z->inflight) {
            continue;
        }

        /* one worker per instance syncs a zone; a dead one's turn lapses */

        owner = z->sh->sync_lock;

        if (owner == (ngx_atomic_uint_t) ngx_pid && z->pending) {
            /* this worker's batches that got no answer: the same again */
            z->sh->sync_at = now;
            ngx_http_ratelimit_sync_zone(z, 0, ev->log);
            continue;
        }

        if (owner != 0) {
            stale = 10 * z->sync_interval + 1000;

            if ((ngx_msec_int_t) (now - z->sh->sync_at)
                < (ngx_msec_int_t) stale)
            {
                continue;
            }
        }

        if (!ngx_atomic_cmp_set(&z->sh->sync_lock, owner, ngx_pid)) {
            continue;
        }

        span = now - z->sh->sync_at;
        z->sh->sync_at = now;

        ngx_http_ratelimit_sync_zone(z, ngx_min(span, 10 * z->sync_interval),
                                     ev->log);
    }
}


/*
 * Every key with charges not yet synced, within a budget per tick that
 * leaves the rest to the next tick (ngx_http_ratelimit_collect_dirty()),
 * in scripts of up to NGX_HTTP_RATELIMIT_SYNC_BATCH keys sent one after
 * the other on the connection (pipelined).  Batches that got no answer
 * go first, unchanged: their ids make Redis apply each once.
 */

static void
ngx_http_ratelimit_sync_zone(ngx_http_ratelimit_zone_t *z, ngx_msec_t span,
    ngx_log_t *log)
{
    ngx_uint_t                   n, i, k, max;
    ngx_http_ratelimit_batch_t  *b, *next;
    ngx_http_ratelimit_entry_t  *entries;

    if (z->pending) {
        b = z->pending;
        z->pending = NULL;

        for ( /* void */ ; b; b = next) {
            next = b->next;
            b->next = NULL;
            ngx_http_ratelimit_sync_send(b, log);
        }

        return;
    }

    /* no more than the zone's keys (read unlocked: a bound, not a count) */

    max = ngx_min(NGX_HTTP_RATELIMIT_SYNC_BATCH
                  * NGX_HTTP_RATELIMIT_SYNC_BATCHES,
                  z->sh->keys + NGX_HTTP_RATELIMIT_ORPHANS + 1);

    entries = ngx_alloc(max * sizeof(ngx_http_ratelimit_entry_t), log);
    if (entries == NULL) {
        ngx_http_ratelimit_sync_release(z);
        return;
    }

    n = ngx_http_ratelimit_collect_dirty(z, entries, max);

    /* nothing to sync: the census once a second is enough */

    if (n == 0 && !z->sh->degraded
        && (ngx_msec_int_t) (ngx_current_msec - z->sh->census_at) < 1000)
    {
        ngx_free(entries);
        ngx_http_ratelimit_sync_release(z);
        return;
    }

    z->sh->census_at = ngx_current_msec;

    i = 0;

    do {
        k = ngx_min(n - i, NGX_HTTP_RATELIMIT_SYNC_BATCH);

        b = ngx_alloc(sizeof(ngx_http_ratelimit_batch_t)
                      + k * sizeof(ngx_http_ratelimit_entry_t), log);

        if (b == NULL) {
            /* the charges go back to their keys for the next sync */
            for ( /* void */ ; i < n; i++) {
                ngx_http_ratelimit_merge(z, entries[i].hash, entries[i].flags,
                                         entries[i].key, entries[i].len,
                                         0, 0, 0, entries[i].delta, 0);
            }

            break;
        }

        b->zone = z;
        b->next = NULL;
        b->born = ngx_current_msec;
        b->span = span;
        b->id = ngx_atomic_fetch_add(&z->sh->batches, 1);
        b->n = k;

        ngx_memcpy(b->entries, &entries[i],
                   k * sizeof(ngx_http_ratelimit_entry_t));

        i += k;

        ngx_http_ratelimit_sync_send(b, log);

    } while (i < n);

    ngx_free(entries);

    if (z->inflight == 0) {
        ngx_http_ratelimit_sync_release(z);
    }
}


/* the zone's turn to sync ends, unless batches wait to be sent again */

static void
ngx_http_ratelimit_sync_release(ngx_http_ratelimit_zone_t *z)
{
    if (z->inflight == 0 && z->pending == NULL) {
        z->sh->sync_lock = 0;
    }
}


static void
ngx_http_ratelimit_sync_send(ngx_http_ratelimit_batch_t *b, ngx_log_t *log)
{
    u_char                      *p, *keys;
    size_t                      *lens, size;
    ngx_uint_t                   n, i, argc;
    const char                 **argv;
    ngx_http_ratelimit_zone_t   *z;
    ngx_http_ratelimit_entry_t  *e;
    u_char                       id[NGX_INT64_LEN], alg[4], per[NGX_INT64_LEN];
    u_char                       sp[NGX_INT64_LEN];
    u_char                       bid[sizeof("\0batch:") + 2 * NGX_INT64_LEN];
    u_char                       deltas[NGX_HTTP_RATELIMIT_SYNC_BATCH]
                                       [NGX_INT64_LEN + 1];

    z = b->zone;
    n = b->n;

    z->inflight++;

    argc = 6 + 2 * n;

    size = argc * (sizeof(char *) + sizeof(size_t))
           + (n + 2) * NGX_HTTP_RATELIMIT_KEY_BUF;

    argv = ngx_alloc(size, log);
    if (argv == NULL) {
        goto failed;
    }

    lens = (size_t *) (argv + argc);
    keys = (u_char *) (lens + argc);

    /* the census, the batch's id, then the keys */

    p = keys;
    argv[0] = (char *) p;
    lens[0] = ngx_http_ratelimit_redis_key(p, z, (u_char *) "\0census", 7);
    p += lens[0];

    argv[1] = (char *) p;
    lens[1] = ngx_http_ratelimit_redis_key(p, z, bid,
                  ngx_sprintf(bid, "%c" "batch:%uxL:%uxL", '\0', z->sh->id,
                              b->id)
                  - bid);
    p += lens[1];

    for (i = 0; i < n; i++) {
        e = &b->entries[i];
        argv[2 + i] = (char *) p;
        lens[2 + i] = ngx_http_ratelimit_redis_key(p, z, e->key, e->len);
        p += lens[2 + i];
    }

    argv[2 + n] = (char *) id;
    lens[2 + n] = ngx_sprintf(id, "%uL", z->sh->id) - id;

    argv[3 + n] = (char *) alg;
    lens[3 + n] = ngx_sprintf(alg, "%ui", z->algorithm) - alg;

    argv[4 + n] = (char *) per;
    lens[4 + n] = ngx_sprintf(per, "%L",
                              z->algorithm == NGX_HTTP_RATELIMIT_GCRA
                              ? ngx_http_ratelimit_interval_ns(z)
                              : ngx_http_ratelimit_period_us(z))
                  - per;

    argv[5 + n] = (char *) sp;
    lens[5 + n] = ngx_sprintf(sp, "%M", b->span * 1000) - sp;

    for (i = 0; i < n; i++) {
        argv[6 + n + i] = (char *) deltas[i];
        lens[6 + n + i] = ngx_sprintf(deltas[i], "%L", b->entries[i].delta)
                          - deltas[i];
    }

    b->sent = ngx_current_msec;

    if (ngx_http_resilience_redis_evalsha(ngx_http_ratelimit_sync_script,
                                          2 + n, argc, argv, lens,
                                          ngx_http_ratelimit_synced, b)
        != NGX_OK)
    {
        ngx_free(argv);
        goto failed;
    }

    ngx_free(argv);

    return;

failed:

    ngx_http_ratelimit_synced(NGX_HTTP_RESILIENCE_REDIS_FAILED, NULL, b);
}


static void
ngx_http_ratelimit_synced(ngx_int_t rc, redisReply *reply, void *data)
{
    ngx_http_ratelimit_batch_t *b = data;

    int64_t                      census, a, c, now_us, half_us;
    uint64_t                     start;
    ngx_uint_t                   i, ok;
    ngx_http_ratelimit_zone_t   *z;
    ngx_http_ratelimit_batch_t **pb;
    ngx_http_ratelimit_entry_t  *e;

    z = b->zone;
    z->inflight--;

    ok = (rc == NGX_HTTP_RESILIENCE_REDIS_REPLY
          && reply->type == REDIS_REPLY_ARRAY
          && reply->elements == 2 + 2 * b->n
          && ngx_http_ratelimit_int(reply->element[0], &census) == NGX_OK
          && ngx_http_ratelimit_int(reply->element[1 + 2 * b->n], &now_us)
             == NGX_OK);

    if (!ok) {
        if (!z->sh->degraded) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "ratelimit: zone \"%V\" could not sync with "
                          "Redis (%s), deciding as on_redis_error says",
                          &z->name,
                          rc == NGX_HTTP_RESILIENCE_REDIS_TIMEDOUT
                          ? "timed out"
                          : (rc == NGX_HTTP_RESILIENCE_REDIS_REPLY
                             && reply->type == REDIS_REPLY_ERROR)
                            ? reply->str : "no connection");
        }

        z->sh->degraded = 1;
        (void) ngx_atomic_fetch_add(&z->sh->redis_errors, 1);

        if (ngx_exiting || ngx_terminate || ngx_quit
            || (ngx_msec_int_t) (ngx_current_msec - b->born)
               > NGX_HTTP_RATELIMIT_BATCH_RETRY)
        {
            /*
             * never sent again: Redis may have applied it, and its id is
             * not remembered for ever (a worker that exits has no one to
             * send it)
             */
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "ratelimit: zone \"%V\" drops a sync of %ui "
                          "key(s) that got no answer", &z->name, b->n);
            ngx_free(b);
            ngx_http_ratelimit_sync_release(z);
            return;
        }

        /*
         * Redis may have run the script though no answer came: the batch
         * goes again as it is, with its id, never as new charges
         */

        for (pb = (ngx_http_ratelimit_batch_t **) &z->pending;
             *pb;
             pb = &(*pb)->next)
        {
            /* void */
        }

        *pb = b;

        return;
    }

    if (z->sh->degraded) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "ratelimit: zone \"%V\" syncs with Redis again, "
                      "%L instance(s)", &z->name, census);
        z->sh->degraded = 0;
    }

    z->sh->instances = (census > 0) ? (ngx_atomic_uint_t)
                                      ngx_min(census, 65536) : 1;

    if (b->n) {
        (void) ngx_atomic_fetch_add(&z->sh->syncs, 1);
    }

    start = 0;

    /*
     * The script gave how far each key's arrival time was ahead when it
     * ran, somewhere between the batch's leaving and its answer: taken as
     * the middle, so that the round trip (long on a busy machine) does not
     * count as requests (at 1000 r/s, 10 ms are 10 requests, twice a
     * burst of 5)
     */

    half_us = (int64_t) (ngx_current_msec - b->sent) * 1000 / 2;

    if (z->algorithm != NGX_HTTP_RATELIMIT_GCRA) {
        start = (uint64_t) (now_us / 1000);
        start -= start % z->rate.period;
    }

    for (i = 0; i < b->n; i++) {
        e = &b->entries[i];

        if (ngx_http_ratelimit_int(reply->element[1 + 2 * i], &a) != NGX_OK
            || ngx_http_ratelimit_int(reply->element[2 + 2 * i], &c)
               != NGX_OK)
        {
            continue;
        }

        if (z->algorithm == NGX_HTTP_RATELIMIT_GCRA) {
            /* tat - now, from ns to milli-requests (bounded: wire input) */
            a = ngx_max(ngx_min(a, NGX_HTTP_RATELIMIT_WIRE_MAX),
                        -NGX_HTTP_RATELIMIT_WIRE_MAX);
            a = ngx_http_ratelimit_muldiv(a - half_us * 1000, 1000,
                                          ngx_http_ratelimit_interval_ns(z));

            /* what the rate gave back while the batch was away */
            c = ngx_http_ratelimit_muldiv(2 * half_us * 1000, 1000,
                                          ngx_http_ratelimit_interval_ns(z));

        } else {
            a = ngx_max(ngx_min(a, NGX_HTTP_RATELIMIT_WIRE_MAX), 0);
            c = ngx_max(ngx_min(c, NGX_HTTP_RATELIMIT_WIRE_MAX), 0);
        }

        ngx_http_ratelimit_merge(z, e->hash, e->flags, e->key, e->len,
                                 a, c, start, 0, 1);
    }

    ngx_free(b);

    ngx_http_ratelimit_sync_release(z);
}


/* sync=strict: one script for every strict limit of the request */

ngx_int_t
ngx_http_ratelimit_strict(ngx_http_request_t *r,
    ngx_http_ratelimit_ctx_t *ctx)
{
    u_char                       *p, *buf;
    size_t                       *lens;
    int64_t                       lim, per;
    ngx_uint_t                    i, n, argc;
    const char                  **argv;
    ngx_http_ratelimit_try_t     *t;
    ngx_http_ratelimit_zone_t    *z;
    ngx_http_ratelimit_waiter_t  *w;

    if (ngx_http_resilience_redis_state()
        != NGX_HTTP_RESILIENCE_REDIS_CONNECTED)
    {
        return NGX_DECLINED;
    }

    n = 0;

    for (i = 0; i < ctx->ntries; i++) {
        if (ctx->tries[i].strict) {
            n++;
        }
    }

    argc = 5 * n;

    argv = ngx_palloc(r->pool, argc * (sizeof(char *) + sizeof(size_t))
                               + n * (NGX_HTTP_RATELIMIT_KEY_BUF
                                      + 4 * (NGX_INT64_LEN + 1)));
    if (argv == NULL) {
        return NGX_DECLINED;
    }

    lens = (size_t *) (argv + argc);
    buf = (u_char *) (lens + argc);
    p = buf;

    n = 0;

    for (i = 0; i < ctx->ntries; i++) {
        t = &ctx->tries[i];

        if (!t->strict) {
            continue;
        }

        argv[n] = (char *) p;
        lens[n] = ngx_http_ratelimit_redis_key(p, t->zone, t->key.data,
                                               t->key.len);
        p += lens[n];
        n++;
    }

    argc = n;

    for (i = 0; i < ctx->ntries; i++) {
        t = &ctx->tries[i];

        if (!t->strict) {
            continue;
        }

        z = t->zone;

        if (z->algorithm == NGX_HTTP_RATELIMIT_GCRA) {
            per = ngx_http_ratelimit_interval_ns(z);
            lim = ngx_http_ratelimit_muldiv(t->limit->burst, per, 1000);

        } else {
            per = ngx_http_ratelimit_period_us(z);
            lim = (int64_t) z->rate.milli + t->limit->burst;
        }

        argv[argc] = (char *) p;
        p = ngx_sprintf(p, "%ui", z->algorithm);
        lens[argc] = p - (u_char *) argv[argc];
        argc++;

        argv[argc] = (char *) p;
        p = ngx_sprintf(p, "%L", per);
        lens[argc] = p - (u_char *) argv[argc];
        argc++;

        argv[argc] = (char *) p;
        p = ngx_sprintf(p, "%L", lim);
        lens[argc] = p - (u_char *) argv[argc];
        argc++;

        argv[argc] = (char *) p;
        p = ngx_sprintf(p, "%L", t->cost);
        lens[argc] = p - (u_char *) argv[argc];
        argc++;
    }

    w = ngx_alloc(sizeof(ngx_http_ratelimit_waiter_t), r->connection->log);
    if (w == NULL) {
        return NGX_DECLINED;
    }

    w->ctx = ctx;

    if (ngx_http_resilience_redis_evalsha(ngx_http_ratelimit_strict_script,
                                          n, argc, argv, lens,
                                          ngx_http_ratelimit_strict_done, w)
        != NGX_OK)
    {
        ngx_free(w);
        return NGX_DECLINED;
    }

    ctx->waiter = w;

    return NGX_AGAIN;
}


void
ngx_http_ratelimit_strict_cancel(ngx_http_ratelimit_ctx_t *ctx)
{
    ngx_http_ratelimit_waiter_t  *w;

    w = ctx->waiter;

    if (w) {
        /* the reply handler frees it */
        w->ctx = NULL;
        ctx->waiter = NULL;
    }
}


static void
ngx_http_ratelimit_strict_done(ngx_int_t rc, redisReply *reply, void *data)
{
    ngx_http_ratelimit_waiter_t *w = data;

    int64_t                     ok, pass, a, c, now_us, base, cand, per;
    uint64_t                    start;
    ngx_uint_t                  i, k, n;
    ngx_http_request_t         *r;
    ngx_http_ratelimit_ctx_t   *ctx;
    ngx_http_ratelimit_try_t   *t;
    ngx_http_ratelimit_zone_t  *z;

    ctx = w->ctx;
    ngx_free(w);

    if (ctx == NULL) {
        return;
    }

    ctx->waiter = NULL;
    r = ctx->resume;

    n = 0;

    for (i = 0; i < ctx->ntries; i++) {
        if (ctx->tries[i].strict) {
            n++;
        }
    }

    if (rc != NGX_HTTP_RESILIENCE_REDIS_REPLY
        || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2 + 3 * n
        || ngx_http_ratelimit_int(reply->element[0], &ok) != NGX_OK
        || ngx_http_ratelimit_int(reply->element[1 + 3 * n], &now_us)
           != NGX_OK)
    {
        for (i = 0; i < ctx->ntries; i++) {
            t = &ctx->tries[i];

            if (t->strict) {
                z = t->zone;

                if (!z->sh->degraded) {
                    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                                  "ratelimit: zone \"%V\" got no answer "
                                  "from Redis (%s), deciding as "
                                  "on_redis_error says", &z->name,
                                  rc == NGX_HTTP_RESILIENCE_REDIS_TIMEDOUT
                                  ? "timed out" : "error");
                }

                z->sh->degraded = 1;
                (void) ngx_atomic_fetch_add(&z->sh->redis_errors, 1);
            }
        }

        ctx->strict_failed = 1;
        ngx_http_ratelimit_resume(r, ctx);
        return;
    }

    for (i = 0, k = 0; i < ctx->ntries; i++) {
        t = &ctx->tries[i];

        if (!t->strict) {
            continue;
        }

        z = t->zone;

        if (ngx_http_ratelimit_int(reply->element[1 + 3 * k], &pass) != NGX_OK
            || ngx_http_ratelimit_int(reply->element[2 + 3 * k], &a)
               != NGX_OK
            || ngx_http_ratelimit_int(reply->element[3 + 3 * k], &c)
               != NGX_OK)
        {
            pass = 1;
            a = 0;
            c = 0;
        }

        k++;

        (void) ngx_atomic_fetch_add(&z->sh->syncs, 1);

        if (z->algorithm == NGX_HTTP_RATELIMIT_GCRA) {
            per = ngx_http_ratelimit_interval_ns(z);

            /* tat - now in milli-requests, after the charge when ok */
            a = ngx_max(ngx_min(a, NGX_HTTP_RATELIMIT_WIRE_MAX),
                        -NGX_HTTP_RATELIMIT_WIRE_MAX);
            base = ngx_http_ratelimit_muldiv(a, 1000, per);

            ngx_http_ratelimit_mirror(t, base, 0, 0);

            if (pass && ok) {
                t->excess = ngx_max(base - 1000, 0);
                t->remaining = ngx_max(t->limit->burst - t->excess, 0)
                               / 1000;
                t->reset = ngx_http_ratelimit_to_ms(z, base);
                continue;
            }

            cand = base + ngx_max(t->cost, 1000) - 1000;

            t->excess = cand;
            t->remaining = 0;
            t->reset = ngx_http_ratelimit_to_ms(z, base);

            if (!pass) {
                t->busy = 1;
                t->wait = ngx_http_ratelimit_to_ms(z,
                                                   cand - t->limit->burst);
            }

            continue;
        }

        start = (uint64_t) (now_us / 1000);
        start -= start % z->rate.period;

        a = ngx_max(ngx_min(a, NGX_HTTP_RATELIMIT_WIRE_MAX), 0);
        c = ngx_max(ngx_min(c, NGX_HTTP_RATELIMIT_WIRE_MAX), 0);

        ngx_http_ratelimit_mirror(t, a, c, start);

        ngx_http_ratelimit_sliding(t, a, c, (uint64_t) (now_us / 1000),
                                   pass);
    }

    ngx_http_ratelimit_resume(r, ctx);
}


/* "<prefix>rl:<zone>:<key>", the key binary-safe */

static size_t
ngx_http_ratelimit_redis_key(u_char *buf, ngx_http_ratelimit_zone_t *z,
    u_char *key, size_t len)
{
    return ngx_http_resilience_redis_key(buf, "rl", &z->name, key, len);
}


/* GCRA's emission interval: the time one request takes, in ns */

static int64_t
ngx_http_ratelimit_interval_ns(ngx_http_ratelimit_zone_t *z)
{
    int64_t  ns;

    /* at most 86400000 * 10^9 / 1 */
    ns = (int64_t) z->rate.period * 1000000000 / (int64_t) z->rate.milli;

    return ns > 0 ? ns : 1;
}


static int64_t
ngx_http_ratelimit_period_us(ngx_http_ratelimit_zone_t *z)
{
    return (int64_t) z->rate.period * 1000;
}


static ngx_int_t
ngx_http_ratelimit_int(redisReply *r, int64_t *v)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        *v = r->integer;
        return NGX_OK;
    }

    if (r->type == REDIS_REPLY_NIL) {
        *v = 0;
        return NGX_OK;
    }

    return NGX_ERROR;
}
