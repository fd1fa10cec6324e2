
/*
 * nginx-resilience: breakers shared across nginx instances (breaker_shared).
 *
 * A trip is published through Redis: one script stores the open-until
 * time, from Redis TIME, in a key that expires with it, and publishes a
 * notice on the prefix's "breaker" channel.  Every worker of every
 * instance subscribes to that channel and opens its own copy for the time
 * left, so the fleet rejects within one pub/sub hop.  A worker starting
 * up reads the keys of its keyless shared breakers, so an instance that
 * restarts while a breaker is open comes back open.  Nothing here runs
 * on a request's behalf but the publish, which never waits.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_breaker.h"


#define NGX_HTTP_BREAKER_RESTORE_TRIES  100       /* x 100 ms */


typedef struct {
    ngx_http_breaker_t        *breaker;
    ngx_log_t                 *log;
    ngx_str_t                  key;          /* keyed: a copy, freed after */
} ngx_http_breaker_restore_t;


static void ngx_http_breaker_sync_key(u_char *buf, ngx_str_t *name,
    ngx_str_t *key, ngx_str_t *out);
static void ngx_http_breaker_sync_published(ngx_int_t rc, redisReply *reply,
    void *data);
static void ngx_http_breaker_sync_counted(ngx_int_t rc, redisReply *reply,
    void *data);
static void ngx_http_breaker_sync_message(ngx_str_t *channel,
    ngx_str_t *message, void *data);
static void ngx_http_breaker_sync_open(ngx_http_breaker_t *b, ngx_str_t *key,
    ngx_msec_t left, ngx_log_t *log, const char *how);
static void ngx_http_breaker_sync_restore_handler(ngx_event_t *ev);
static void ngx_http_breaker_sync_restored(ngx_int_t rc, redisReply *reply,
    void *data);
static void ngx_http_breaker_sync_key_restored(ngx_int_t rc,
    redisReply *reply, void *data);


/*
 * KEYS: the state key, the channel; ARGV: open ms, the notice, bucket ms,
 * buckets.  The window's buckets go with the trip: the fleet starts the
 * next closed period afresh.
 */

static ngx_str_t  ngx_http_breaker_trip_lua = ngx_string(
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ms = tonumber(ARGV[1])\n"
    "local blen, n = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local e = math.floor(now / blen)\n"
    "for i = 0, n do redis.call('DEL', KEYS[1] .. ':w:' .. (e - i)) end\n"
    "redis.call('DEL', KEYS[1] .. ':probes', KEYS[1] .. ':ok')\n"
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if cur >= now + ms then return cur - now end\n"
    "redis.call('SET', KEYS[1], now + ms, 'PX', ms)\n"
    "redis.call('PUBLISH', KEYS[2], ARGV[2])\n"
    "return ms\n");


/*
 * KEYS: the state key; ARGV: bucket ms, buckets, and the deltas (total,
 * failures, slow).  Adds the deltas to the current bucket, returns the
 * sums over the window, from Redis TIME.
 */

static ngx_str_t  ngx_http_breaker_window_lua = ngx_string(
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local blen, n = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local e = math.floor(now / blen)\n"
    "local k = KEYS[1] .. ':w:' .. e\n"
    "if tonumber(ARGV[3]) > 0 then\n"
    "  redis.call('HINCRBY', k, 't', ARGV[3])\n"
    "  redis.call('HINCRBY', k, 'f', ARGV[4])\n"
    "  redis.call('HINCRBY', k, 's', ARGV[5])\n"
    "  redis.call('PEXPIRE', k, blen * (n + 1))\n"
    "end\n"
    "local st, sf, ss = 0, 0, 0\n"
    "for i = 0, n - 1 do\n"
    "  local v = redis.call('HMGET', KEYS[1] .. ':w:' .. (e - i),"
    " 't', 'f', 's')\n"
    "  st = st + (tonumber(v[1]) or 0)\n"
    "  sf = sf + (tonumber(v[2]) or 0)\n"
    "  ss = ss + (tonumber(v[3]) or 0)\n"
    "end\n"
    "return {st, sf, ss}\n");

#define NGX_HTTP_BREAKER_SYNC_INTERVAL  100       /* ms */
#define NGX_HTTP_BREAKER_SYNC_BATCH     64        /* nodes a tick */
#define NGX_HTTP_BREAKER_SYNC_STALE     200       /* ms: refresh after */
#define NGX_HTTP_BREAKER_SYNC_LINGER    1000      /* ms after the last */


typedef struct {
    ngx_http_breaker_node_t   *node;
    ngx_http_breaker_zone_t   *zone;
    uint32_t                   generation;   /* when asked */
} ngx_http_breaker_push_t;


/*
 * KEYS: the state key; ARGV: the probes, the budget's life in ms.  One
 * token out of the fleet's budget: 1, or 0 when it is spent.
 */

static ngx_str_t  ngx_http_breaker_token_lua = ngx_string(
    "local k = KEYS[1] .. ':probes'\n"
    "local v = redis.call('GET', k)\n"
    "if not v then\n"
    "  redis.call('SET', k, tonumber(ARGV[1]) - 1, 'PX', ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "if tonumber(v) > 0 then redis.call('DECR', k) return 1 end\n"
    "return 0\n");


/* KEYS: the state key, the channel; ARGV: the notice */

static ngx_str_t  ngx_http_breaker_close_lua = ngx_string(
    "redis.call('DEL', KEYS[1], KEYS[1] .. ':probes', KEYS[1] .. ':ok')\n"
    "redis.call('PUBLISH', KEYS[2], ARGV[1])\n"
    "return 1\n");


/*
 * KEYS: the state key, the channel; ARGV: the probes, the budget's life
 * in ms, the close notice.  A successful probe, wherever it ran: the
 * fleet closes when it has seen as many as the budget.
 */

static ngx_str_t  ngx_http_breaker_probe_ok_lua = ngx_string(
    "local k = KEYS[1] .. ':ok'\n"
    "local n = redis.call('INCR', k)\n"
    "if n == 1 then redis.call('PEXPIRE', k, ARGV[2]) end\n"
    "if n >= tonumber(ARGV[1]) then\n"
    "  redis.call('DEL', KEYS[1], KEYS[1] .. ':probes', k)\n"
    "  redis.call('PUBLISH', KEYS[2], ARGV[3])\n"
    "end\n"
    "return n\n");


static void ngx_http_breaker_sync_tick(ngx_event_t *ev);
static void ngx_http_breaker_sync_push(ngx_http_breaker_zone_t *z,
    ngx_http_breaker_node_t *bn, uint32_t dt, uint32_t df, uint32_t ds);
static void ngx_http_breaker_sync_pushed(ngx_int_t rc, redisReply *reply,
    void *data);
static void ngx_http_breaker_sync_token(ngx_int_t rc, redisReply *reply,
    void *data);
static void ngx_http_breaker_sync_close(ngx_http_breaker_t *b,
    ngx_str_t *key, ngx_log_t *log);
static ngx_int_t ngx_http_breaker_sync_override(ngx_http_breaker_t *b,
    u_char *p, u_char *last);
static ngx_int_t ngx_http_breaker_sync_notice(ngx_pool_t *pool,
    ngx_http_breaker_node_t *bn, ngx_msec_t ms, u_char *kbuf,
    ngx_str_t *rkey, ngx_str_t *channel, ngx_str_t *msg);


static ngx_http_resilience_redis_script_t  *ngx_http_breaker_trip_script;
static ngx_http_resilience_redis_script_t  *ngx_http_breaker_window_script;
static ngx_http_resilience_redis_script_t  *ngx_http_breaker_token_script;
static ngx_http_resilience_redis_script_t  *ngx_http_breaker_close_script;
static ngx_http_resilience_redis_script_t  *ngx_http_breaker_probe_ok_script;
static ngx_event_t                          ngx_http_breaker_restore_event;
static ngx_uint_t                           ngx_http_breaker_restore_tries;
static ngx_event_t                          ngx_http_breaker_tick_event;


ngx_int_t
ngx_http_breaker_sync_conf(ngx_conf_t *cf)
{
    ngx_http_breaker_trip_script = ngx_http_resilience_redis_script(cf,
                                                &ngx_http_breaker_trip_lua);
    ngx_http_breaker_window_script = ngx_http_resilience_redis_script(cf,
                                                &ngx_http_breaker_window_lua);
    ngx_http_breaker_token_script = ngx_http_resilience_redis_script(cf,
                                                &ngx_http_breaker_token_lua);
    ngx_http_breaker_close_script = ngx_http_resilience_redis_script(cf,
                                                &ngx_http_breaker_close_lua);
    ngx_http_breaker_probe_ok_script = ngx_http_resilience_redis_script(cf,
                                            &ngx_http_breaker_probe_ok_lua);

    if (ngx_http_breaker_trip_script == NULL
        || ngx_http_breaker_window_script == NULL
        || ngx_http_breaker_token_script == NULL
        || ngx_http_breaker_close_script == NULL
        || ngx_http_breaker_probe_ok_script == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * "<prefix>breaker:<name>:<key>" into buf: the name (64) and the key
 * (NGX_HTTP_BREAKER_MAX_KEY) are bounded, so a buffer on the stack does;
 * hiredis copies the command before we return.
 */

#define NGX_HTTP_BREAKER_SYNC_KEY_LEN                                         \
    NGX_HTTP_RESILIENCE_REDIS_KEY_LEN("breaker", 64, NGX_HTTP_BREAKER_MAX_KEY)

static void
ngx_http_breaker_sync_key(u_char *buf, ngx_str_t *name, ngx_str_t *key,
    ngx_str_t *out)
{
    out->data = buf;
    out->len = ngx_http_resilience_redis_key(buf, "breaker", name,
                                             key->data, key->len);
}


/*
 * Called after a local trip.  The notice is "<name>\n<open ms>\n<key>":
 * names cannot hold a line feed, keys come last and may hold anything.
 */

/*
 * The key, the channel and the notice "<name>\n<open ms>\n<key>" (0 ms:
 * closed): names cannot hold a line feed, keys come last and may hold
 * anything.
 */

static ngx_int_t
ngx_http_breaker_sync_notice(ngx_pool_t *pool, ngx_http_breaker_node_t *bn,
    ngx_msec_t ms, u_char *kbuf, ngx_str_t *rkey, ngx_str_t *channel,
    ngx_str_t *msg)
{
    u_char     *p;
    ngx_str_t   name, key, *prefix;

    name.data = bn->data;
    name.len = bn->name_len;
    key.data = bn->data + bn->name_len;
    key.len = bn->key_len;

    prefix = ngx_http_resilience_redis_prefix();

    channel->len = prefix->len + 7;
    channel->data = ngx_pnalloc(pool, channel->len);
    msg->data = ngx_pnalloc(pool, name.len + NGX_INT_T_LEN + 2 + key.len);

    if (channel->data == NULL || msg->data == NULL) {
        return NGX_ERROR;
    }

    ngx_http_breaker_sync_key(kbuf, &name, &key, rkey);

    ngx_memcpy(ngx_cpymem(channel->data, prefix->data, prefix->len),
               "breaker", 7);

    p = ngx_cpymem(msg->data, name.data, name.len);
    p = ngx_sprintf(p, "\n%M\n", ms);
    p = ngx_cpymem(p, key.data, key.len);
    msg->len = p - msg->data;

    return NGX_OK;
}


/* called after a local trip */

void
ngx_http_breaker_sync_publish(ngx_http_request_t *r,
    ngx_http_breaker_ctx_t *ctx, ngx_msec_t duration)
{
    size_t                    lens[6];
    ngx_str_t                 rkey, channel, msg;
    const char               *args[6];
    u_char                    kbuf[NGX_HTTP_BREAKER_SYNC_KEY_LEN];
    u_char                    ms[NGX_INT_T_LEN], blen[NGX_INT_T_LEN];
    u_char                    n[NGX_INT_T_LEN];
    ngx_http_breaker_node_t  *bn;

    if (ngx_http_resilience_redis_state()
        != NGX_HTTP_RESILIENCE_REDIS_CONNECTED)
    {
        (void) ngx_atomic_fetch_add(&ctx->zone->sh->sync_errors, 1);
        return;
    }

    bn = ctx->node;

    if (ngx_http_breaker_sync_notice(r->pool, bn, duration, kbuf, &rkey,
                                     &channel, &msg)
        != NGX_OK)
    {
        return;
    }

    args[0] = (const char *) rkey.data;
    lens[0] = rkey.len;
    args[1] = (const char *) channel.data;
    lens[1] = channel.len;
    args[2] = (const char *) ms;
    lens[2] = ngx_sprintf(ms, "%M", duration) - ms;
    args[3] = (const char *) msg.data;
    lens[3] = msg.len;
    args[4] = (const char *) blen;
    lens[4] = ngx_sprintf(blen, "%M",
                          ngx_max(ctx->conf->window / bn->nbuckets, 1))
              - blen;
    args[5] = (const char *) n;
    lens[5] = ngx_sprintf(n, "%ui", (ngx_uint_t) bn->nbuckets) - n;

    if (ngx_http_resilience_redis_evalsha(ngx_http_breaker_trip_script, 2, 6,
                                          args, lens,
                                          ngx_http_breaker_sync_published,
                                          ctx->zone)
        != NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&ctx->zone->sh->sync_errors, 1);
    }
}


/* called after the probes closed the breaker here: the fleet closes too */

void
ngx_http_breaker_sync_publish_close(ngx_http_request_t *r,
    ngx_http_breaker_ctx_t *ctx)
{
    size_t       lens[3];
    u_char       kbuf[NGX_HTTP_BREAKER_SYNC_KEY_LEN];
    ngx_str_t    rkey, channel, msg;
    const char  *args[3];

    if (ngx_http_resilience_redis_state()
        != NGX_HTTP_RESILIENCE_REDIS_CONNECTED
        || ngx_http_breaker_sync_notice(r->pool, ctx->node, 0, kbuf, &rkey,
                                        &channel, &msg)
           != NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&ctx->zone->sh->sync_errors, 1);
        return;
    }

    args[0] = (const char *) rkey.data;
    lens[0] = rkey.len;
    args[1] = (const char *) channel.data;
    lens[1] = channel.len;
    args[2] = (const char *) msg.data;
    lens[2] = msg.len;

    if (ngx_http_resilience_redis_evalsha(ngx_http_breaker_close_script, 2, 3,
                                          args, lens,
                                          ngx_http_breaker_sync_published,
                                          ctx->zone)
        != NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&ctx->zone->sh->sync_errors, 1);
    }
}


/* a probe succeeded here, short of closing it alone: the fleet counts */

void
ngx_http_breaker_sync_probe_ok(ngx_http_request_t *r,
    ngx_http_breaker_ctx_t *ctx)
{
    size_t       lens[5];
    u_char       kbuf[NGX_HTTP_BREAKER_SYNC_KEY_LEN];
    u_char       n[NGX_INT_T_LEN], ttl[NGX_INT_T_LEN];
    ngx_str_t    rkey, channel, msg;
    const char  *args[5];

    if (ngx_http_resilience_redis_state()
        != NGX_HTTP_RESILIENCE_REDIS_CONNECTED
        || ngx_http_breaker_sync_notice(r->pool, ctx->node, 0, kbuf, &rkey,
                                        &channel, &msg)
           != NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&ctx->zone->sh->sync_errors, 1);
        return;
    }

    args[0] = (const char *) rkey.data;
    lens[0] = rkey.len;
    args[1] = (const char *) channel.data;
    lens[1] = channel.len;
    args[2] = (const char *) n;
    lens[2] = ngx_sprintf(n, "%ui", ctx->conf->probes) - n;
    args[3] = (const char *) ttl;
    lens[3] = ngx_sprintf(ttl, "%M", 2 * ctx->conf->probe_timeout) - ttl;
    args[4] = (const char *) msg.data;
    lens[4] = msg.len;

    if (ngx_http_resilience_redis_evalsha(ngx_http_breaker_probe_ok_script,
                                          2, 5, args, lens,
                                          ngx_http_breaker_sync_counted,
                                          ctx->zone)
        != NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&ctx->zone->sh->sync_errors, 1);
    }
}


/*
 * A resilience_admin change of a shared breaker, for the fleet:
 * "<name>\nA\n<mode> <flags> <rate> <consecutive> <min> <open> <clear>".
 */

void
ngx_http_breaker_sync_publish_override(ngx_http_request_t *r,
    ngx_http_breaker_zone_t *z, ngx_str_t *name,
    ngx_http_breaker_override_t *o, ngx_uint_t clear)
{
    u_char       *p, *msg;
    size_t        lens[3];
    ngx_str_t    *prefix;
    const char   *args[3];
    u_char        channel[128];

    prefix = ngx_http_resilience_redis_prefix();

    msg = ngx_pnalloc(r->pool, name->len + 3 + 7 * NGX_INT_T_LEN);

    if (msg == NULL
        || prefix->len + 7 > sizeof(channel)
        || ngx_http_resilience_redis_state()
           != NGX_HTTP_RESILIENCE_REDIS_CONNECTED)
    {
        (void) ngx_atomic_fetch_add(&z->sh->sync_errors, 1);
        return;
    }

    p = ngx_cpymem(msg, name->data, name->len);
    p = ngx_sprintf(p, "\nA\n%ui %ui %uD %uD %uD %uD %ui",
                    (ngx_uint_t) o->mode, (ngx_uint_t) o->flags, o->rate,
                    o->consecutive, o->min_requests, o->open_time, clear);

    args[0] = "PUBLISH";
    lens[0] = 7;
    args[1] = (const char *) channel;
    lens[1] = ngx_cpymem(ngx_cpymem(channel, prefix->data, prefix->len),
                         "breaker", 7)
              - channel;
    args[2] = (const char *) msg;
    lens[2] = p - msg;

    if (ngx_http_resilience_redis_command(3, args, lens,
                                          ngx_http_breaker_sync_published, z)
        != NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&z->sh->sync_errors, 1);
    }
}


/* half-open, shared, no token: one from the fleet's budget */

void
ngx_http_breaker_sync_ask_token(ngx_http_request_t *r,
    ngx_http_breaker_ctx_t *ctx)
{
    size_t                    lens[3];
    ngx_str_t                 name, key, rkey;
    const char               *args[3];
    u_char                    kbuf[NGX_HTTP_BREAKER_SYNC_KEY_LEN];
    u_char                    n[NGX_INT_T_LEN], ttl[NGX_INT_T_LEN];
    ngx_http_breaker_push_t  *push;
    ngx_http_breaker_node_t  *bn;

    bn = ctx->node;

    name.data = bn->data;
    name.len = bn->name_len;
    key.data = bn->data + bn->name_len;
    key.len = bn->key_len;

    push = ngx_alloc(sizeof(ngx_http_breaker_push_t), r->connection->log);
    if (push == NULL) {
        bn->token_pending = 0;
        return;
    }

    ngx_http_breaker_sync_key(kbuf, &name, &key, &rkey);

    push->node = bn;
    push->zone = ctx->zone;
    push->generation = ctx->generation;

    args[0] = (const char *) rkey.data;
    lens[0] = rkey.len;
    args[1] = (const char *) n;
    lens[1] = ngx_sprintf(n, "%ui", ctx->conf->probes) - n;
    args[2] = (const char *) ttl;
    lens[2] = ngx_sprintf(ttl, "%M", 2 * ctx->conf->probe_timeout) - ttl;

    (void) ngx_atomic_fetch_add(&bn->pins, 1);

    if (ngx_http_resilience_redis_evalsha(ngx_http_breaker_token_script, 1, 3,
                                          args, lens,
                                          ngx_http_breaker_sync_token, push)
        != NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&bn->pins, -1);
        ngx_free(push);
        bn->token_pending = 0;
    }
}


static void
ngx_http_breaker_sync_token(ngx_int_t rc, redisReply *reply, void *data)
{
    ngx_http_breaker_push_t *push = data;

    ngx_http_breaker_node_t  *bn;

    bn = push->node;

    ngx_spinlock(&bn->lock, ngx_pid, 1024);

    if (bn->generation == push->generation) {

        if (rc != NGX_HTTP_RESILIENCE_REDIS_REPLY) {
            /*
             * no answer within command_timeout, or no Redis: the rest of
             * this half-open period is decided here, and not asked again
             */
            bn->token_local = 1;

        } else if (reply->type == REDIS_REPLY_INTEGER
                   && reply->integer == 1
                   && bn->state == NGX_HTTP_BREAKER_HALF_OPEN
                   && !bn->token_local)
        {
            bn->tokens++;
        }

        bn->token_pending = 0;
    }

    ngx_unlock(&bn->lock);

    if (rc != NGX_HTTP_RESILIENCE_REDIS_REPLY) {
        (void) ngx_atomic_fetch_add(&push->zone->sh->sync_errors, 1);
    }

    (void) ngx_atomic_fetch_add(&bn->pins, -1);

    ngx_free(push);
}


static void
ngx_http_breaker_sync_published(ngx_int_t rc, redisReply *reply, void *data)
{
    ngx_http_breaker_zone_t *z = data;

    if (rc != NGX_HTTP_RESILIENCE_REDIS_REPLY
        || reply->type == REDIS_REPLY_ERROR)
    {
        /* the loss of Redis is logged once by the core; here, counted */
        (void) ngx_atomic_fetch_add(&z->sh->sync_errors, 1);

        if (rc == NGX_HTTP_RESILIENCE_REDIS_REPLY) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "breaker_shared: Redis refused the trip: %*s",
                          (size_t) reply->len, reply->str);
        }

        return;
    }

    (void) ngx_atomic_fetch_add(&z->sh->sync_published, 1);
}


/* a probe's success, counted by the fleet: only a failure is counted here */

static void
ngx_http_breaker_sync_counted(ngx_int_t rc, redisReply *reply, void *data)
{
    ngx_http_breaker_zone_t *z = data;

    if (rc != NGX_HTTP_RESILIENCE_REDIS_REPLY
        || reply->type == REDIS_REPLY_ERROR)
    {
        (void) ngx_atomic_fetch_add(&z->sh->sync_errors, 1);
    }
}


static ngx_http_breaker_t *
ngx_http_breaker_sync_find(ngx_array_t *breakers, u_char *name, size_t len)
{
    ngx_uint_t           i;
    ngx_http_breaker_t **bp;

    bp = breakers->elts;

    for (i = 0; i < breakers->nelts; i++) {
        if (bp[i]->shared
            && bp[i]->name.len == len
            && ngx_strncmp(bp[i]->name.data, name, len) == 0)
        {
            return bp[i];
        }
    }

    return NULL;
}


static void
ngx_http_breaker_sync_message(ngx_str_t *channel, ngx_str_t *message,
    void *data)
{
    ngx_array_t *breakers = data;

    u_char                   *p, *nl, *last;
    ngx_int_t                 ms;
    ngx_str_t                 key;
    ngx_http_breaker_t       *b, **bp;
    ngx_http_breaker_zone_t  *z;

    p = message->data;
    last = message->data + message->len;

    /* counted in the zone of the breaker it names, else the first one */
    bp = breakers->elts;
    b = bp[0];

    nl = ngx_strlchr(p, last, '\n');
    if (nl == NULL) {
        goto invalid;
    }

    b = ngx_http_breaker_sync_find(breakers, p, nl - p);

    if (b == NULL) {
        /* a breaker this instance does not share: not ours */
        return;
    }

    p = nl + 1;
    nl = ngx_strlchr(p, last, '\n');
    if (nl == NULL) {
        goto invalid;
    }

    if (nl - p == 1 && *p == 'A') {
        if (ngx_http_breaker_sync_override(b, nl + 1, last) != NGX_OK) {
            goto invalid;
        }

        return;
    }

    ms = ngx_atoi(p, nl - p);
    if (ms == NGX_ERROR) {
        goto invalid;
    }

    key.data = nl + 1;
    key.len = last - key.data;

    if ((b->key == NULL) != (key.len == 0)) {
        goto invalid;
    }

    (void) ngx_atomic_fetch_add(&((ngx_http_breaker_zone_t *)
                                  b->zone->data)->sh->sync_received, 1);

    if (ms == 0) {
        ngx_http_breaker_sync_close(b, &key, ngx_cycle->log);
        return;
    }

    ngx_http_breaker_sync_open(b, &key, (ngx_msec_t) ms, ngx_cycle->log,
                               "by another instance, through Redis");
    return;

invalid:

    z = b->zone->data;
    (void) ngx_atomic_fetch_add(&z->sh->sync_malformed, 1);

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "breaker_shared: ignored a malformed notice on \"%V\"",
                  channel);
}


/* opens the local copy for the time left, unless it is open longer */

static void
ngx_http_breaker_sync_open(ngx_http_breaker_t *b, ngx_str_t *key,
    ngx_msec_t left, ngx_log_t *log, const char *how)
{
    ngx_msec_t                now;
    ngx_http_breaker_zone_t  *z;
    ngx_http_breaker_node_t  *bn;

    z = b->zone->data;
    now = ngx_current_msec;

    /* never longer than this instance would open it itself */

    if (left > (b->open_max ? b->open_max : NGX_HTTP_BREAKER_OPEN_MAX)) {
        left = b->open_max ? b->open_max : NGX_HTTP_BREAKER_OPEN_MAX;
    }

    bn = ngx_http_breaker_lookup_notice(z, &b->name, key, b->buckets, 1,
                                        log);
    if (bn == NULL) {
        return;
    }

    ngx_spinlock(&bn->lock, ngx_pid, 1024);

    if (bn->state != NGX_HTTP_BREAKER_OPEN
        || (ngx_msec_int_t) (bn->open_until - (now + left)) < 0)
    {
        if (bn->state != NGX_HTTP_BREAKER_OPEN) {
            ngx_http_breaker_transition(bn, NGX_HTTP_BREAKER_OPEN, now);

            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "breaker \"%V\"%s%V%s opened for %M ms %s",
                          &b->name, key->len ? " key \"" : "", key,
                          key->len ? "\"" : "", left, how);
        }

        bn->open_until = now + left;
    }

    ngx_unlock(&bn->lock);

    if (key->len) {
        (void) ngx_atomic_fetch_add(&bn->pins, -1);
    }
}


/* another instance's resilience_admin change: the same here */

static ngx_int_t
ngx_http_breaker_sync_override(ngx_http_breaker_t *b, u_char *p,
    u_char *last)
{
    u_char                       *sp;
    ngx_int_t                     v[7];
    ngx_uint_t                    i, n;
    ngx_http_breaker_override_t   o, applied;

    for (i = 0; i < 7; i++) {
        sp = ngx_strlchr(p, last, ' ');

        if (sp == NULL) {
            sp = last;
        }

        v[i] = ngx_atoi(p, sp - p);

        if (v[i] == NGX_ERROR) {
            return NGX_ERROR;
        }

        p = (sp < last) ? sp + 1 : last;
    }

    /* the bounds resilience_admin holds its own changes to */

    if (v[0] > NGX_HTTP_BREAKER_OFF || v[1] > 0xff || v[2] > 10000
        || v[3] > 100000000 || v[4] > 100000000
        || v[5] > NGX_HTTP_BREAKER_OPEN_MAX
        || ((v[1] & NGX_HTTP_BREAKER_O_RATE) && v[2] < 1)
        || ((v[1] & NGX_HTTP_BREAKER_O_CONSECUTIVE) && v[3] < 1)
        || ((v[1] & NGX_HTTP_BREAKER_O_MIN) && v[4] < 1)
        || ((v[1] & NGX_HTTP_BREAKER_O_OPEN) && v[5] < 1))
    {
        return NGX_ERROR;
    }

    o.mode = (u_char) v[0];
    o.flags = (u_char) v[1];
    o.rate = (uint32_t) v[2];
    o.consecutive = (uint32_t) v[3];
    o.min_requests = (uint32_t) v[4];
    o.open_time = (uint32_t) v[5];

    if (ngx_http_breaker_override(b->zone->data, &b->name, &o,
                                  (ngx_uint_t) v[6], &n, &applied)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "breaker \"%V\" changed through resilience_admin and "
                  "Redis (%ui key(s) here)", &b->name, n);

    return NGX_OK;
}


/* another instance's probes succeeded: close ours, if it is not closed */

static void
ngx_http_breaker_sync_close(ngx_http_breaker_t *b, ngx_str_t *key,
    ngx_log_t *log)
{
    ngx_msec_t                now;
    ngx_http_breaker_zone_t  *z;
    ngx_http_breaker_node_t  *bn;

    z = b->zone->data;
    now = ngx_current_msec;

    /* a key unknown here is closed here already */

    bn = ngx_http_breaker_lookup_notice(z, &b->name, key, b->buckets, 0,
                                        log);
    if (bn == NULL) {
        return;
    }

    ngx_spinlock(&bn->lock, ngx_pid, 1024);

    if (bn->state != NGX_HTTP_BREAKER_CLOSED) {
        ngx_http_breaker_transition(bn, NGX_HTTP_BREAKER_CLOSED, now);

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "breaker \"%V\"%s%V%s closed by another instance, "
                      "through Redis", &b->name, key->len ? " key \"" : "",
                      key, key->len ? "\"" : "");
    }

    ngx_unlock(&bn->lock);

    if (key->len) {
        (void) ngx_atomic_fetch_add(&bn->pins, -1);
    }
}


/* in a worker: subscribe, and read back what is open */

ngx_int_t
ngx_http_breaker_sync_init_worker(ngx_cycle_t *cycle, ngx_array_t *breakers,
    ngx_array_t *zones)
{
    u_char     *p;
    ngx_str_t   channel, *prefix;

    prefix = ngx_http_resilience_redis_prefix();

    channel.len = prefix->len + 7;
    channel.data = ngx_pnalloc(cycle->pool, channel.len);
    if (channel.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(channel.data, prefix->data, prefix->len);
    ngx_memcpy(p, "breaker", 7);

    if (ngx_http_resilience_redis_subscribe(&channel,
                                            ngx_http_breaker_sync_message,
                                            breakers)
        == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    ngx_http_breaker_restore_tries = 0;

    ngx_http_breaker_restore_event.handler =
                                        ngx_http_breaker_sync_restore_handler;
    ngx_http_breaker_restore_event.data = breakers;
    ngx_http_breaker_restore_event.log = cycle->log;
    ngx_http_breaker_restore_event.cancelable = 1;

    ngx_add_timer(&ngx_http_breaker_restore_event, 10);

    ngx_http_breaker_tick_event.handler = ngx_http_breaker_sync_tick;
    ngx_http_breaker_tick_event.data = zones;
    ngx_http_breaker_tick_event.log = cycle->log;
    ngx_http_breaker_tick_event.cancelable = 1;

    ngx_add_timer(&ngx_http_breaker_tick_event,
                  NGX_HTTP_BREAKER_SYNC_INTERVAL);

    return NGX_OK;
}


void
ngx_http_breaker_sync_exit_worker(void)
{
    if (ngx_http_breaker_restore_event.timer_set) {
        ngx_del_timer(&ngx_http_breaker_restore_event);
    }

    if (ngx_http_breaker_tick_event.timer_set) {
        ngx_del_timer(&ngx_http_breaker_tick_event);
    }
}


/*
 * Every 100 ms, in every worker: the outcomes of the shared breakers that
 * saw traffic since their last push go to Redis, one script each, and the
 * fleet's window comes back.  The first outcome after a push queues the
 * breaker in its zone's dirty queue (ngx_http_breaker_record()); the tick
 * takes the queue from its head, first queued first pushed, up to
 * NGX_HTTP_BREAKER_SYNC_BATCH a zone, so every breaker with outcomes is
 * pushed within (queued / batch) ticks.  A breaker stays queued for
 * NGX_HTTP_BREAKER_SYNC_LINGER after its last outcome, its fleet's window
 * refreshed when older than NGX_HTTP_BREAKER_SYNC_STALE; after that, idle,
 * it costs nothing.
 */

static void
ngx_http_breaker_sync_tick(ngx_event_t *ev)
{
    ngx_array_t *zones = ev->data;

    uint32_t                  dt, df, ds;
    ngx_uint_t                i, n, k, linger, refresh;
    ngx_msec_t                now;
    ngx_queue_t              *q;
    ngx_shm_zone_t          **zp;
    ngx_http_breaker_zone_t  *z;
    ngx_http_breaker_node_t  *bn;

    if (ngx_exiting) {
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_BREAKER_SYNC_INTERVAL);

    if (ngx_http_resilience_redis_state()
        != NGX_HTTP_RESILIENCE_REDIS_CONNECTED)
    {
        return;
    }

    zp = zones->elts;

    now = ngx_current_msec;

    for (i = 0; i < zones->nelts; i++) {
        z = zp[i]->data;
        n = 0;

        ngx_shmtx_lock(&z->shpool->mutex);

        /* each queued breaker is looked at once a tick at most */

        for (k = z->sh->queued;
             k && n < NGX_HTTP_BREAKER_SYNC_BATCH
             && !ngx_queue_empty(&z->sh->dirty);
             k--)
        {
            q = ngx_queue_head(&z->sh->dirty);
            ngx_queue_remove(q);

            bn = ngx_queue_data(q, ngx_http_breaker_node_t, dirty_link);

            ngx_spinlock(&bn->lock, ngx_pid, 1024);

            dt = bn->d_total;
            df = bn->d_failures;
            ds = bn->d_slow;

            bn->d_total = 0;
            bn->d_failures = 0;
            bn->d_slow = 0;

            /*
             * for a second after its last outcome a breaker stays queued,
             * so that the fleet's window it will decide on next stays
             * fresh (refreshed when older than 200 ms); then it is idle
             */

            linger = (bn->state == NGX_HTTP_BREAKER_CLOSED
                      && (uint32_t) now - bn->o_at
                         < NGX_HTTP_BREAKER_SYNC_LINGER);

            bn->dirty = linger;

            refresh = (dt == 0 && linger
                       && (uint32_t) now - bn->f_at
                          >= NGX_HTTP_BREAKER_SYNC_STALE);

            ngx_unlock(&bn->lock);

            if (linger) {
                ngx_queue_insert_tail(&z->sh->dirty, q);

            } else {
                z->sh->queued--;
            }

            if ((dt == 0 && !refresh) || bn->window == 0) {
                continue;
            }

            /* pinned until the reply: not evicted under our feet */
            (void) ngx_atomic_fetch_add(&bn->pins, 1);

            ngx_http_breaker_sync_push(z, bn, dt, df, ds);
            n++;
        }

        ngx_shmtx_unlock(&z->shpool->mutex);
    }
}


static void
ngx_http_breaker_sync_push(ngx_http_breaker_zone_t *z,
    ngx_http_breaker_node_t *bn, uint32_t dt, uint32_t df, uint32_t ds)
{
    size_t                    lens[6];
    ngx_str_t                 name, key, rkey;
    const char               *args[6];
    u_char                    kbuf[NGX_HTTP_BREAKER_SYNC_KEY_LEN];
    u_char                    num[5][NGX_INT_T_LEN];
    ngx_http_breaker_push_t  *push;

    name.data = bn->data;
    name.len = bn->name_len;
    key.data = bn->data + bn->name_len;
    key.len = bn->key_len;

    push = ngx_alloc(sizeof(ngx_http_breaker_push_t), ngx_cycle->log);
    if (push == NULL) {
        (void) ngx_atomic_fetch_add(&bn->pins, -1);
        return;
    }

    push->node = bn;
    push->zone = z;

    ngx_http_breaker_sync_key(kbuf, &name, &key, &rkey);

    args[0] = (const char *) rkey.data;
    lens[0] = rkey.len;
    args[1] = (const char *) num[0];
    lens[1] = ngx_sprintf(num[0], "%uD",
                          ngx_max(bn->window / bn->nbuckets, 1)) - num[0];
    args[2] = (const char *) num[1];
    lens[2] = ngx_sprintf(num[1], "%ui", (ngx_uint_t) bn->nbuckets) - num[1];
    args[3] = (const char *) num[2];
    lens[3] = ngx_sprintf(num[2], "%uD", dt) - num[2];
    args[4] = (const char *) num[3];
    lens[4] = ngx_sprintf(num[3], "%uD", df) - num[3];
    args[5] = (const char *) num[4];
    lens[5] = ngx_sprintf(num[4], "%uD", ds) - num[4];

    if (ngx_http_resilience_redis_evalsha(ngx_http_breaker_window_script, 1,
                                          6, args, lens,
                                          ngx_http_breaker_sync_pushed, push)
        != NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&bn->pins, -1);
        ngx_free(push);
    }
}


static void
ngx_http_breaker_sync_pushed(ngx_int_t rc, redisReply *reply, void *data)
{
    ngx_http_breaker_push_t *push = data;

    ngx_http_breaker_node_t  *bn;

    bn = push->node;

    if (rc == NGX_HTTP_RESILIENCE_REDIS_REPLY
        && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 3
        && reply->element[0]->type == REDIS_REPLY_INTEGER
        && reply->element[1]->type == REDIS_REPLY_INTEGER
        && reply->element[2]->type == REDIS_REPLY_INTEGER)
    {
        ngx_spinlock(&bn->lock, ngx_pid, 1024);

        if (bn->state == NGX_HTTP_BREAKER_CLOSED) {
            bn->f_total = (uint32_t) reply->element[0]->integer;
            bn->f_failures = (uint32_t) reply->element[1]->integer;
            bn->f_slow = (uint32_t) reply->element[2]->integer;
            /* 0 is "never": a time that truncates to it moves by 1 */
            bn->f_at = (uint32_t) ngx_current_msec | 1;
        }

        ngx_unlock(&bn->lock);

    } else {
        /* the deltas are lost to the fleet, not to this instance */
        (void) ngx_atomic_fetch_add(&push->zone->sh->sync_errors, 1);
    }

    (void) ngx_atomic_fetch_add(&bn->pins, -1);

    ngx_free(push);
}


static void
ngx_http_breaker_sync_restore_handler(ngx_event_t *ev)
{
    ngx_array_t *breakers = ev->data;

    size_t                       len;
    u_char                       kbuf[NGX_HTTP_BREAKER_SYNC_KEY_LEN];
    ngx_str_t                    rkey, empty;
    ngx_uint_t                   i;
    const char                  *arg[2];
    size_t                       lens[2];
    ngx_http_breaker_t         **bp;
    ngx_http_breaker_restore_t  *rs;

    if (ngx_http_resilience_redis_state()
        != NGX_HTTP_RESILIENCE_REDIS_CONNECTED)
    {
        if (++ngx_http_breaker_restore_tries < NGX_HTTP_BREAKER_RESTORE_TRIES
            && !ngx_exiting)
        {
            ngx_add_timer(ev, 100);
        }

        return;
    }

    ngx_str_null(&empty);
    bp = breakers->elts;

    for (i = 0; i < breakers->nelts; i++) {
        if (!bp[i]->shared || bp[i]->key) {
            /* keyed breakers: their keys are learnt from the notices */
            continue;
        }

        rs = ngx_palloc(ngx_cycle->pool, sizeof(ngx_http_breaker_restore_t));
        if (rs == NULL) {
            return;
        }

        ngx_http_breaker_sync_key(kbuf, &bp[i]->name, &empty, &rkey);

        rs->breaker = bp[i];
        rs->log = ev->log;
        ngx_str_null(&rs->key);

        len = 4;
        arg[0] = "PTTL";
        lens[0] = len;
        arg[1] = (const char *) rkey.data;
        lens[1] = rkey.len;

        (void) ngx_http_resilience_redis_command(2, arg, lens,
                                          ngx_http_breaker_sync_restored, rs);
    }
}


static void
ngx_http_breaker_sync_restored(ngx_int_t rc, redisReply *reply, void *data)
{
    ngx_http_breaker_restore_t *rs = data;

    ngx_str_t  empty;

    if (rc != NGX_HTTP_RESILIENCE_REDIS_REPLY
        || reply->type != REDIS_REPLY_INTEGER
        || reply->integer <= 0)
    {
        return;
    }

    ngx_str_null(&empty);

    ngx_http_breaker_sync_open(rs->breaker, rs->key.len ? &rs->key : &empty,
                               (ngx_msec_t) reply->integer, rs->log,
                               "as the fleet left it, read from Redis");
}


/*
 * The first request for a key of a shared breaker in this instance asks
 * Redis whether the fleet holds that key open; the answer opens the key
 * for the requests that follow.
 */

void
ngx_http_breaker_sync_restore_key(ngx_http_request_t *r,
    ngx_http_breaker_t *b, ngx_http_breaker_node_t *bn)
{
    size_t                       lens[2];
    u_char                       kbuf[NGX_HTTP_BREAKER_SYNC_KEY_LEN];
    ngx_str_t                    name, key, rkey;
    const char                  *args[2];
    ngx_http_breaker_restore_t  *rs;

    name.data = bn->data;
    name.len = bn->name_len;
    key.data = bn->data + bn->name_len;
    key.len = bn->key_len;

    ngx_http_breaker_sync_key(kbuf, &name, &key, &rkey);

    rs = ngx_alloc(sizeof(ngx_http_breaker_restore_t) + key.len,
                   r->connection->log);
    if (rs == NULL) {
        return;
    }

    rs->breaker = b;
    rs->log = ngx_cycle->log;
    rs->key.data = (u_char *) (rs + 1);
    rs->key.len = key.len;
    ngx_memcpy(rs->key.data, key.data, key.len);

    args[0] = "PTTL";
    lens[0] = 4;
    args[1] = (const char *) rkey.data;
    lens[1] = rkey.len;

    if (ngx_http_resilience_redis_command(2, args, lens,
                                          ngx_http_breaker_sync_key_restored,
                                          rs)
        != NGX_OK)
    {
        ngx_free(rs);
    }
}


static void
ngx_http_breaker_sync_key_restored(ngx_int_t rc, redisReply *reply,
    void *data)
{
    ngx_http_breaker_sync_restored(rc, reply, data);
    ngx_free(data);
}
