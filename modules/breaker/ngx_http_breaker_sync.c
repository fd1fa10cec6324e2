
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
} ngx_http_breaker_restore_t;


static ngx_int_t ngx_http_breaker_sync_key(ngx_pool_t *pool,
    ngx_str_t *name, ngx_str_t *key, ngx_str_t *out);
static void ngx_http_breaker_sync_published(ngx_int_t rc, redisReply *reply,
    void *data);
static void ngx_http_breaker_sync_message(ngx_str_t *channel,
    ngx_str_t *message, void *data);
static void ngx_http_breaker_sync_open(ngx_http_breaker_t *b, ngx_str_t *key,
    ngx_msec_t left, ngx_log_t *log, const char *how);
static void ngx_http_breaker_sync_restore_handler(ngx_event_t *ev);
static void ngx_http_breaker_sync_restored(ngx_int_t rc, redisReply *reply,
    void *data);


static ngx_str_t  ngx_http_breaker_trip_lua = ngx_string(
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ms = tonumber(ARGV[1])\n"
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if cur >= now + ms then return cur - now end\n"
    "redis.call('SET', KEYS[1], now + ms, 'PX', ms)\n"
    "redis.call('PUBLISH', KEYS[2], ARGV[2])\n"
    "return ms\n");

static ngx_http_resilience_redis_script_t  *ngx_http_breaker_trip_script;
static ngx_event_t                          ngx_http_breaker_restore_event;
static ngx_uint_t                           ngx_http_breaker_restore_tries;


ngx_int_t
ngx_http_breaker_sync_conf(ngx_conf_t *cf)
{
    ngx_http_breaker_trip_script = ngx_http_resilience_redis_script(cf,
                                                &ngx_http_breaker_trip_lua);

    return ngx_http_breaker_trip_script ? NGX_OK : NGX_ERROR;
}


/* "<prefix>breaker:<name>:<key>" */

static ngx_int_t
ngx_http_breaker_sync_key(ngx_pool_t *pool, ngx_str_t *name, ngx_str_t *key,
    ngx_str_t *out)
{
    u_char     *p;
    ngx_str_t  *prefix;

    prefix = ngx_http_resilience_redis_prefix();

    out->len = prefix->len + sizeof("breaker::") - 1 + name->len + key->len;

    p = ngx_pnalloc(pool, out->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_cpymem(p, prefix->data, prefix->len);
    p = ngx_cpymem(p, "breaker:", 8);
    p = ngx_cpymem(p, name->data, name->len);
    *p++ = ':';
    ngx_memcpy(p, key->data, key->len);

    return NGX_OK;
}


/*
 * Called after a local trip.  The notice is "<name>\n<open ms>\n<key>":
 * names cannot hold a line feed, keys come last and may hold anything.
 */

void
ngx_http_breaker_sync_publish(ngx_http_request_t *r,
    ngx_http_breaker_ctx_t *ctx, ngx_msec_t duration)
{
    u_char                   *p;
    size_t                    lens[4];
    ngx_str_t                 name, key, rkey, channel, msg, *prefix;
    const char               *args[4];
    u_char                    ms[NGX_INT_T_LEN];
    ngx_http_breaker_node_t  *bn;

    if (ngx_http_resilience_redis_state()
        != NGX_HTTP_RESILIENCE_REDIS_CONNECTED)
    {
        (void) ngx_atomic_fetch_add(&ctx->zone->sh->sync_errors, 1);
        return;
    }

    bn = ctx->node;

    name.data = bn->data;
    name.len = bn->name_len;
    key.data = bn->data + bn->name_len;
    key.len = bn->key_len;

    prefix = ngx_http_resilience_redis_prefix();

    channel.len = prefix->len + 7;
    channel.data = ngx_pnalloc(r->pool, channel.len);
    msg.len = name.len + NGX_INT_T_LEN + 2 + key.len;
    msg.data = ngx_pnalloc(r->pool, msg.len);

    if (channel.data == NULL || msg.data == NULL
        || ngx_http_breaker_sync_key(r->pool, &name, &key, &rkey) != NGX_OK)
    {
        return;
    }

    ngx_memcpy(ngx_cpymem(channel.data, prefix->data, prefix->len),
               "breaker", 7);

    p = ngx_cpymem(msg.data, name.data, name.len);
    p = ngx_sprintf(p, "\n%M\n", duration);
    p = ngx_cpymem(p, key.data, key.len);
    msg.len = p - msg.data;

    args[0] = (const char *) rkey.data;
    lens[0] = rkey.len;
    args[1] = (const char *) channel.data;
    lens[1] = channel.len;
    args[2] = (const char *) ms;
    lens[2] = ngx_sprintf(ms, "%M", duration) - ms;
    args[3] = (const char *) msg.data;
    lens[3] = msg.len;

    if (ngx_http_resilience_redis_evalsha(ngx_http_breaker_trip_script, 2, 4,
                                          args, lens,
                                          ngx_http_breaker_sync_published,
                                          ctx->zone)
        != NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&ctx->zone->sh->sync_errors, 1);
    }
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

    u_char              *p, *nl, *last;
    ngx_int_t            ms;
    ngx_str_t            key;
    ngx_http_breaker_t  *b;

    p = message->data;
    last = message->data + message->len;

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

    ms = ngx_atoi(p, nl - p);
    if (ms == NGX_ERROR || ms == 0) {
        goto invalid;
    }

    key.data = nl + 1;
    key.len = last - key.data;

    if ((b->key == NULL) != (key.len == 0)) {
        goto invalid;
    }

    (void) ngx_atomic_fetch_add(&((ngx_http_breaker_zone_t *)
                                  b->zone->data)->sh->sync_received, 1);

    ngx_http_breaker_sync_open(b, &key, (ngx_msec_t) ms, ngx_cycle->log,
                               "by another instance, through Redis");
    return;

invalid:

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

    bn = ngx_http_breaker_lookup(z, &b->name, key, b->buckets, log);
    if (bn == NULL) {
        return;
    }

    ngx_spinlock(&bn->lock, ngx_pid, 1024);

    if (bn->state != NGX_HTTP_BREAKER_OPEN
        || (ngx_msec_int_t) (bn->open_until - (now + left)) < 0)
    {
        if (bn->state != NGX_HTTP_BREAKER_OPEN) {
            bn->generation++;
            bn->transitions++;
            bn->changed = now;
            bn->probes_ok = 0;
            bn->consecutive = 0;
            ngx_memzero(bn->leases, sizeof(bn->leases));
            bn->state = NGX_HTTP_BREAKER_OPEN;

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


/* in a worker: subscribe, and read back what is open */

ngx_int_t
ngx_http_breaker_sync_init_worker(ngx_cycle_t *cycle, ngx_array_t *breakers)
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

    return NGX_OK;
}


void
ngx_http_breaker_sync_exit_worker(void)
{
    if (ngx_http_breaker_restore_event.timer_set) {
        ngx_del_timer(&ngx_http_breaker_restore_event);
    }
}


static void
ngx_http_breaker_sync_restore_handler(ngx_event_t *ev)
{
    ngx_array_t *breakers = ev->data;

    size_t                       len;
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
        if (rs == NULL
            || ngx_http_breaker_sync_key(ngx_cycle->pool, &bp[i]->name,
                                         &empty, &rkey)
               != NGX_OK)
        {
            return;
        }

        rs->breaker = bp[i];
        rs->log = ev->log;

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

    ngx_http_breaker_sync_open(rs->breaker, &empty,
                               (ngx_msec_t) reply->integer, rs->log,
                               "as the fleet left it, read from Redis");
}
