
/*
 * nginx-resilience: discovery sources.
 *
 * Every source is fetched by one worker at a time (a lease in the table)
 * and its set applied when it changed:
 *
 *   file=    a JSON document, read every interval;
 *   consul=  the Consul health API with blocking queries (index, wait),
 *            over a non-blocking nginx connection;
 *   redis=   a Redis hash of "ip:port" -> weight through the core client,
 *            fetched again at once on a message on the channel of the
 *            same name;
 *   dns=     A/AAAA or SRV records through nginx's resolver, again at the
 *            records' TTL.
 *
 * A malformed answer is rejected whole and the previous set stays.
 * After every change the set is dumped (a temporary file renamed into
 * place); a start with the source unreachable reads the dump instead.
 *
 * The document: {"peers": [{"address": "10.0.0.1:8080", "weight": 2,
 * "backup": false}, "10.0.0.2:8080"]}, or the array alone.  Addresses
 * are IP literals with a port: nothing here may resolve names, which
 * would block the worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upstream_discovery.h"


#define NGX_HTTP_UD_DOC_MAX  (1024 * 1024)


static void ngx_http_ud_file_fetch(ngx_http_ud_srv_conf_t *udcf);
static void ngx_http_ud_set_crc(ngx_array_t *set, uint32_t *crc);
static void ngx_http_ud_result(ngx_http_ud_srv_conf_t *udcf,
    ngx_array_t *set, uint32_t crc, ngx_str_t *err);
static void ngx_http_ud_redis_fetch(ngx_http_ud_srv_conf_t *udcf);
static void ngx_http_ud_redis_reply(ngx_int_t rc, redisReply *reply,
    void *data);
static void ngx_http_ud_redis_message(ngx_str_t *channel,
    ngx_str_t *message, void *data);
static void ngx_http_ud_consul_fetch(ngx_http_ud_srv_conf_t *udcf);
static void ngx_http_ud_consul_done(void *data, ngx_pool_t *xpool,
    ngx_int_t rc, ngx_buf_t *in, const char *err);
static ngx_int_t ngx_http_ud_consul_parse(u_char *data, size_t len,
    ngx_array_t *set, ngx_pool_t *pool, ngx_str_t *err);
static void ngx_http_ud_dns_fetch(ngx_http_ud_srv_conf_t *udcf);
static void ngx_http_ud_dns_resolved(ngx_resolver_ctx_t *ctx);
static ngx_int_t ngx_http_ud_has_nul(u_char *data, size_t len);
static ngx_int_t ngx_http_ud_read(ngx_str_t *path, ngx_pool_t *pool,
    ngx_str_t *out, ngx_log_t *log);
static void ngx_http_ud_addr_name(ngx_http_ud_addr_t *a, ngx_pool_t *pool);
static ngx_int_t ngx_http_ud_parse_peer(cJSON *item, ngx_http_ud_addr_t *a,
    ngx_pool_t *pool, ngx_str_t *err);


/* in every worker, every 100 ms: the worker that takes the lease fetches */

void
ngx_http_ud_source_tick(ngx_http_ud_srv_conf_t *udcf)
{
    ngx_msec_t            now, stale;
    ngx_atomic_uint_t     owner;
    ngx_http_ud_table_t  *t;

    t = udcf->table;
    now = ngx_current_msec;

    if ((ngx_msec_int_t) (now - t->source_next) < 0) {
        return;
    }

    owner = t->source_lock;

    /* a blocking Consul query holds the lease for its wait */
    stale = udcf->source_interval + 15000;

    if (owner != 0
        && (ngx_msec_int_t) (now - t->source_started) < (ngx_msec_int_t) stale)
    {
        return;
    }

    if (!ngx_atomic_cmp_set(&t->source_lock, owner, ngx_pid)) {
        return;
    }

    t->source_started = now;
    t->source_next = now + udcf->source_interval;

    switch (udcf->source) {

    case NGX_HTTP_UD_FILE:
        ngx_http_ud_file_fetch(udcf);
        break;

    case NGX_HTTP_UD_REDIS:
        ngx_http_ud_redis_fetch(udcf);
        break;

    case NGX_HTTP_UD_CONSUL:
        ngx_http_ud_consul_fetch(udcf);
        break;

    default: /* NGX_HTTP_UD_DNS */
        ngx_http_ud_dns_fetch(udcf);
        break;
    }
}


/*
 * Every fetch ends here, with the lease still held: a set (applied when
 * it differs from the last one), or NULL and why.  A source that never
 * answered falls back to the dump, once.
 */

static void
ngx_http_ud_result(ngx_http_ud_srv_conf_t *udcf, ngx_array_t *set,
    uint32_t crc, ngx_str_t *err)
{
    ngx_int_t             rc;
    ngx_http_ud_table_t  *t;

    t = udcf->table;

    if (set == NULL) {
        ngx_log_error(NGX_LOG_ERR, udcf->log, 0,
                      "upstream \"%V\": discovery from %V failed: %V; "
                      "the previous set stays", &udcf->name,
                      &ngx_http_ud_source_names[udcf->source], err);

        if (!t->source_ok && udcf->dump.len) {
            if (ngx_http_ud_load_dump(udcf, udcf->log) == NGX_OK) {
                t->source_ok = 2;
            }
        }

        /* a failed fetch is tried again within a second */
        t->source_next = ngx_current_msec
                         + ngx_min(udcf->source_interval, 1000);
        t->source_lock = 0;
        return;
    }

    if (crc != t->source_crc || t->source_ok != 1) {
        rc = ngx_http_ud_apply(udcf, set, udcf->source, udcf->log);

        if (rc == NGX_OK) {
            t->source_crc = crc;
            t->source_ok = 1;

            if (udcf->dump.len) {
                ngx_http_ud_dump(udcf, udcf->log);
            }

        } else {
            /* not all of it yet: applied again, within a second */
            t->source_ok = t->source_ok ? 3 : 0;
            t->source_next = ngx_current_msec
                             + ngx_min(udcf->source_interval, 1000);
        }
    }

    t->source_lock = 0;
}


static void
ngx_http_ud_set_crc(ngx_array_t *set, uint32_t *crc)
{
    ngx_uint_t           i;
    ngx_http_ud_addr_t  *a;

    ngx_crc32_init(*crc);

    a = set->elts;

    for (i = 0; i < set->nelts; i++) {
        ngx_crc32_update(crc, (u_char *) &a[i].sockaddr, a[i].socklen);
        ngx_crc32_update(crc, (u_char *) &a[i].weight, sizeof(ngx_uint_t));
        ngx_crc32_update(crc, (u_char *) &a[i].backup, sizeof(ngx_uint_t));
    }

    ngx_crc32_final(*crc);
}


/* file= */

static void
ngx_http_ud_file_fetch(ngx_http_ud_srv_conf_t *udcf)
{
    uint32_t      crc;
    ngx_str_t     doc, err;
    ngx_pool_t   *pool;
    ngx_array_t   set;

    pool = ngx_create_pool(4096, udcf->log);
    if (pool == NULL) {
        udcf->table->source_lock = 0;
        return;
    }

    if (ngx_http_ud_read(&udcf->file, pool, &doc, udcf->log) != NGX_OK) {
        ngx_str_set(&err, "the file cannot be read");
        ngx_http_ud_result(udcf, NULL, 0, &err);
        goto done;
    }

    if (ngx_array_init(&set, pool, 8, sizeof(ngx_http_ud_addr_t)) != NGX_OK)
    {
        udcf->table->source_lock = 0;
        goto done;
    }

    if (ngx_http_ud_parse_document(doc.data, doc.len, &set, pool, &err)
        != NGX_OK)
    {
        ngx_http_ud_result(udcf, NULL, 0, &err);
        goto done;
    }

    ngx_http_ud_set_crc(&set, &crc);

    ngx_http_ud_result(udcf, &set, crc, &err);

done:

    ngx_destroy_pool(pool);
}


/* redis=: HGETALL through the core client; a message means "fetch now" */

ngx_int_t
ngx_http_ud_redis_init_worker(ngx_http_ud_srv_conf_t *udcf)
{
    return ngx_http_resilience_redis_subscribe(&udcf->key,
                                               ngx_http_ud_redis_message,
                                               udcf);
}


static void
ngx_http_ud_redis_message(ngx_str_t *channel, ngx_str_t *message,
    void *data)
{
    ngx_http_ud_srv_conf_t *udcf = data;

    ngx_log_error(NGX_LOG_INFO, udcf->log, 0,
                  "upstream \"%V\": discovery notice on \"%V\"",
                  &udcf->name, channel);

    udcf->table->source_next = ngx_current_msec;
}


static void
ngx_http_ud_redis_fetch(ngx_http_ud_srv_conf_t *udcf)
{
    size_t       lens[2];
    const char  *argv[2];

    argv[0] = "HGETALL";
    lens[0] = 7;
    argv[1] = (const char *) udcf->key.data;
    lens[1] = udcf->key.len;

    if (ngx_http_resilience_redis_command(2, argv, lens,
                                          ngx_http_ud_redis_reply, udcf)
        != NGX_OK)
    {
        ngx_str_t  err = ngx_string("Redis is not connected");

        ngx_http_ud_result(udcf, NULL, 0, &err);
    }
}


static void
ngx_http_ud_redis_reply(ngx_int_t rc, redisReply *reply, void *data)
{
    ngx_http_ud_srv_conf_t *udcf = data;

    size_t               i;
    uint32_t             crc;
    ngx_int_t            w;
    ngx_str_t            err;
    ngx_addr_t           na;
    ngx_pool_t          *pool;
    ngx_array_t          set;
    redisReply          *f, *v;
    ngx_http_ud_addr_t  *a;

    if (rc != NGX_HTTP_RESILIENCE_REDIS_REPLY
        || reply->type != REDIS_REPLY_ARRAY)
    {
        if (rc == NGX_HTTP_RESILIENCE_REDIS_REPLY
            && reply->type == REDIS_REPLY_ERROR)
        {
            err.data = (u_char *) reply->str;
            err.len = reply->len;

        } else {
            ngx_str_set(&err, "no answer from Redis");
        }

        ngx_http_ud_result(udcf, NULL, 0, &err);
        return;
    }

    pool = ngx_create_pool(4096, udcf->log);
    if (pool == NULL
        || ngx_array_init(&set, pool, 8, sizeof(ngx_http_ud_addr_t))
           != NGX_OK)
    {
        if (pool) {
            ngx_destroy_pool(pool);
        }

        udcf->table->source_lock = 0;
        return;
    }

    for (i = 0; i + 1 < reply->elements; i += 2) {
        f = reply->element[i];
        v = reply->element[i + 1];

        if (set.nelts == NGX_HTTP_UD_MAX_PEERS) {
            ngx_str_set(&err, "more than 64 peers");
            goto invalid;
        }

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING
            || ngx_parse_addr_port(pool, &na, (u_char *) f->str, f->len)
               != NGX_OK
            || ngx_inet_get_port(na.sockaddr) == 0)
        {
            ngx_str_set(&err, "a field is not an IP address with a port");
            goto invalid;
        }

        w = ngx_atoi((u_char *) v->str, v->len);

        if (w < 1 || w > 1000) {
            ngx_str_set(&err, "a weight is not a number from 1 to 1000");
            goto invalid;
        }

        a = ngx_array_push(&set);
        if (a == NULL) {
            ngx_str_set(&err, "no memory");
            goto invalid;
        }

        ngx_memzero(a, sizeof(ngx_http_ud_addr_t));
        ngx_memcpy(&a->sockaddr, na.sockaddr, na.socklen);
        a->socklen = na.socklen;
        a->weight = (ngx_uint_t) w;
        ngx_http_ud_addr_name(a, pool);
    }

    ngx_http_ud_set_crc(&set, &crc);

    ngx_http_ud_result(udcf, &set, crc, &err);

    ngx_destroy_pool(pool);
    return;

invalid:

    ngx_http_ud_result(udcf, NULL, 0, &err);
    ngx_destroy_pool(pool);
}


/*
 * consul=: GET <path>?passing&index=N&wait=Ws on a non-blocking nginx
 * connection; Consul answers at once when the index moved, else after
 * the wait, and the next query starts right away
 */

static void
ngx_http_ud_consul_fetch(ngx_http_ud_srv_conf_t *udcf)
{
    ngx_buf_t   *out;
    ngx_str_t    err;
    ngx_pool_t  *pool;

    pool = ngx_create_pool(4096, udcf->log);
    if (pool == NULL) {
        udcf->table->source_lock = 0;
        return;
    }

    out = ngx_create_temp_buf(pool, udcf->consul_uri.len
                                    + udcf->consul_host.len + 256);
    if (out == NULL) {
        ngx_destroy_pool(pool);
        udcf->table->source_lock = 0;
        return;
    }

    out->last = ngx_sprintf(out->last,
                     "GET %V%cpassing&index=%uL&wait=%Ms HTTP/1.0" CRLF
                     "Host: %V" CRLF
                     "User-Agent: nginx-resilience/"
                     NGX_HTTP_RESILIENCE_VERSION CRLF
                     "Connection: close" CRLF CRLF,
                     &udcf->consul_uri,
                     ngx_strlchr(udcf->consul_uri.data,
                                 udcf->consul_uri.data + udcf->consul_uri.len,
                                 '?')
                     ? '&' : '?',
                     (uint64_t) udcf->table->consul_index,
                     ngx_max(udcf->source_interval / 1000, 1),
                     &udcf->consul_host);

    /* the blocking query's wait, and then some */

    if (ngx_http_ud_http_start(pool, &udcf->consul_addr, NULL, out, 65536,
                               NGX_HTTP_UD_DOC_MAX,
                               udcf->source_interval + 5000, udcf->log,
                               ngx_http_ud_consul_done, udcf)
        != NGX_OK)
    {
        ngx_destroy_pool(pool);
        ngx_str_set(&err, "cannot connect to Consul");
        ngx_http_ud_result(udcf, NULL, 0, &err);
    }
}


static void
ngx_http_ud_consul_done(void *data, ngx_pool_t *xpool, ngx_int_t rc,
    ngx_buf_t *in, const char *reason)
{
    ngx_http_ud_srv_conf_t *udcf = data;

    u_char               *p, *last, *body, *h;
    uint32_t              crc;
    uint64_t              index;
    ngx_str_t             err;
    ngx_pool_t           *pool;
    ngx_array_t           set;
    ngx_http_ud_table_t  *t;

    t = udcf->table;
    pool = NULL;

    if (rc == NGX_ABORT || ngx_exiting || ngx_quit || ngx_terminate) {
        /* no result: the next worker asks again */
        t->source_next = ngx_current_msec;
        t->source_lock = 0;
        goto done;
    }

    if (rc != NGX_OK) {
        err.data = (u_char *) reason;
        err.len = ngx_strlen(reason);
        goto failed;
    }

    p = in->pos;
    last = in->last;

    if (last - p < 12 || ngx_strncmp(p, "HTTP/1.", 7) != 0
        || ngx_strncmp(p + 8, " 200", 4) != 0)
    {
        ngx_str_set(&err, "Consul did not answer 200");
        goto failed;
    }

    body = ngx_strlcasestrn(p, last, (u_char *) CRLF CRLF, 4 - 1);

    if (body == NULL) {
        ngx_str_set(&err, "an incomplete answer from Consul");
        goto failed;
    }

    /* the index for the next blocking query; back to 0 if it went back */

    h = ngx_strlcasestrn(p, body, (u_char *) CRLF "X-Consul-Index:",
                         sizeof(CRLF "X-Consul-Index:") - 2);
    index = 0;

    if (h) {
        for (h += sizeof(CRLF "X-Consul-Index:") - 1; *h == ' '; h++) {
            /* void */
        }

        while (h < body && *h >= '0' && *h <= '9') {
            index = index * 10 + (*h++ - '0');
        }
    }

    /*
     * the next blocking query goes at once; but an answer that came fast
     * with the same index did not block (an agent, a proxy, a test): then
     * after the interval, not in a loop
     */

    if (index == t->consul_index
        && (ngx_msec_int_t) (ngx_current_msec - t->source_started) < 1000)
    {
        t->source_next = ngx_current_msec + udcf->source_interval;

    } else {
        t->source_next = ngx_current_msec;
    }

    t->consul_index = (index >= t->consul_index) ? index : 0;

    body += 4;

    pool = ngx_create_pool(4096, udcf->log);

    if (pool == NULL
        || ngx_array_init(&set, pool, 8, sizeof(ngx_http_ud_addr_t))
           != NGX_OK)
    {
        ngx_str_set(&err, "no memory");
        goto failed;
    }

    if (ngx_http_ud_consul_parse(body, last - body, &set, pool, &err)
        != NGX_OK)
    {
        goto failed;
    }

    ngx_http_ud_set_crc(&set, &crc);

    ngx_http_ud_result(udcf, &set, crc, &err);

    goto done;

failed:

    ngx_http_ud_result(udcf, NULL, 0, &err);

done:

    if (pool) {
        ngx_destroy_pool(pool);
    }

    /* the exchange's pool, with the answer */
    ngx_destroy_pool(xpool);
}


/*
 * [{"Node": {"Address": "10.0.0.1"}, "Service": {"Address": "",
 *   "Port": 8080, "Weights": {"Passing": 2, "Warning": 1}}}, ...]
 */

static ngx_int_t
ngx_http_ud_consul_parse(u_char *data, size_t len, ngx_array_t *set,
    ngx_pool_t *pool, ngx_str_t *err)
{
    u_char              *text;
    cJSON               *root, *e, *node, *svc, *addr, *port, *w;
    size_t               n;
    ngx_int_t            rc;
    ngx_addr_t           na;
    ngx_http_ud_addr_t  *a;

    if (ngx_http_ud_has_nul(data, len)) {
        ngx_str_set(err, "a NUL (\\u0000) in the document");
        return NGX_ERROR;
    }

    root = cJSON_ParseWithLength((char *) data, len);

    if (!cJSON_IsArray(root)) {
        ngx_str_set(err, "not a JSON array of Consul service entries");
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    rc = NGX_OK;

    cJSON_ArrayForEach(e, root) {
        node = cJSON_GetObjectItemCaseSensitive(e, "Node");
        svc = cJSON_GetObjectItemCaseSensitive(e, "Service");

        addr = cJSON_GetObjectItemCaseSensitive(svc, "Address");

        if (!cJSON_IsString(addr) || addr->valuestring[0] == '\0') {
            addr = cJSON_GetObjectItemCaseSensitive(node, "Address");
        }

        port = cJSON_GetObjectItemCaseSensitive(svc, "Port");
        w = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(svc, "Weights"), "Passing");

        if (!cJSON_IsString(addr) || !cJSON_IsNumber(port)
            || port->valuedouble < 1 || port->valuedouble > 65535)
        {
            ngx_str_set(err, "an entry without an address and a port");
            rc = NGX_ERROR;
            break;
        }

        if (set->nelts == NGX_HTTP_UD_MAX_PEERS) {
            ngx_str_set(err, "more than 64 peers");
            rc = NGX_ERROR;
            break;
        }

        n = ngx_strlen(addr->valuestring);
        text = ngx_pnalloc(pool, n + 16);

        if (text == NULL) {
            rc = NGX_ERROR;
            break;
        }

        n = ngx_sprintf(text, ngx_strlchr((u_char *) addr->valuestring,
                                          (u_char *) addr->valuestring + n,
                                          ':')
                              ? "[%s]:%d" : "%s:%d",
                        addr->valuestring, (int) port->valuedouble)
            - text;

        if (ngx_parse_addr_port(pool, &na, text, n) != NGX_OK) {
            ngx_str_set(err, "an address that is not an IP address");
            rc = NGX_ERROR;
            break;
        }

        a = ngx_array_push(set);
        if (a == NULL) {
            rc = NGX_ERROR;
            break;
        }

        ngx_memzero(a, sizeof(ngx_http_ud_addr_t));
        ngx_memcpy(&a->sockaddr, na.sockaddr, na.socklen);
        a->socklen = na.socklen;
        ngx_http_ud_addr_name(a, pool);
        a->weight = (cJSON_IsNumber(w) && w->valuedouble >= 1
                     && w->valuedouble <= 1000)
                    ? (ngx_uint_t) w->valuedouble : 1;
    }

    cJSON_Delete(root);

    return rc;
}


/* dns=: nginx's resolver; the answer's TTL says when to ask again */

static void
ngx_http_ud_dns_fetch(ngx_http_ud_srv_conf_t *udcf)
{
    ngx_str_t                  err;
    ngx_resolver_ctx_t        *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = udcf->clcf;

    ctx = ngx_resolve_start(clcf->resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_str_set(&err, "no resolver");
        ngx_http_ud_result(udcf, NULL, 0, &err);
        return;
    }

    ctx->name = udcf->dns_name;
    ctx->service = udcf->dns_service;
    ctx->handler = ngx_http_ud_dns_resolved;
    ctx->data = udcf;
    ctx->timeout = clcf->resolver_timeout;

    /* a worker that exits does not wait for the answer */
    ctx->cancelable = 1;

    if (ngx_resolve_name(ctx) != NGX_OK) {
        ngx_str_set(&err, "the resolver failed");
        ngx_http_ud_result(udcf, NULL, 0, &err);
    }
}


static void
ngx_http_ud_dns_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_http_ud_srv_conf_t *udcf = ctx->data;

    u_char              *p;
    time_t               ttl;
    uint32_t             crc;
    u_short              prio;
    ngx_str_t            err;
    ngx_uint_t           i;
    ngx_pool_t          *pool;
    ngx_array_t          set;
    ngx_http_ud_addr_t  *a;

    pool = NULL;

    if (ctx->state) {
        p = (u_char *) ngx_resolver_strerror(ctx->state);
        err.data = p;
        err.len = ngx_strlen(p);

        ngx_resolve_name_done(ctx);
        ngx_http_ud_result(udcf, NULL, 0, &err);
        return;
    }

    pool = ngx_create_pool(4096, udcf->log);

    if (pool == NULL
        || ngx_array_init(&set, pool, 8, sizeof(ngx_http_ud_addr_t))
           != NGX_OK)
    {
        ngx_resolve_name_done(ctx);
        udcf->table->source_lock = 0;

        if (pool) {
            ngx_destroy_pool(pool);
        }

        return;
    }

    /* SRV: the lowest priority is the primaries, the others backups */

    prio = 0xffff;

    for (i = 0; udcf->dns_service.len && i < ctx->naddrs; i++) {
        prio = ngx_min(prio, ctx->addrs[i].priority);
    }

    for (i = 0; i < ctx->naddrs && i < NGX_HTTP_UD_MAX_PEERS; i++) {
        a = ngx_array_push(&set);
        if (a == NULL) {
            break;
        }

        ngx_memzero(a, sizeof(ngx_http_ud_addr_t));
        ngx_memcpy(&a->sockaddr, ctx->addrs[i].sockaddr,
                   ctx->addrs[i].socklen);
        a->socklen = ctx->addrs[i].socklen;

        if (udcf->dns_service.len == 0) {
            ngx_inet_set_port(&a->sockaddr.sockaddr, udcf->dns_port);
        }

        a->weight = ctx->addrs[i].weight ? ctx->addrs[i].weight : 1;
        a->weight = ngx_min(a->weight, 1000);
        a->backup = udcf->dns_service.len && ctx->addrs[i].priority > prio;

        ngx_http_ud_addr_name(a, pool);
    }

    /* again at the TTL, within [1 s, interval] */

    ttl = ctx->valid - ngx_time();
    ttl = ngx_max(ttl, 1);

    if ((ngx_msec_t) ttl * 1000 < udcf->source_interval) {
        udcf->table->source_next = ngx_current_msec + ttl * 1000;
    }

    ngx_resolve_name_done(ctx);

    ngx_http_ud_set_crc(&set, &crc);

    ngx_http_ud_result(udcf, &set, crc, &err);

    ngx_destroy_pool(pool);
}


/* the whole file, at most 1m */

static ngx_int_t
ngx_http_ud_read(ngx_str_t *path, ngx_pool_t *pool, ngx_str_t *out,
    ngx_log_t *log)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                      "discovery: cannot open \"%V\"", path);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    if (ngx_file_size(&fi) > NGX_HTTP_UD_DOC_MAX) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "discovery: \"%V\" is larger than 1m, ignored", path);
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    out->len = (size_t) ngx_file_size(&fi);
    out->data = ngx_pnalloc(pool, out->len + 1);

    if (out->data == NULL) {
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    n = ngx_read_fd(fd, out->data, out->len);

    ngx_close_file(fd);

    if (n == -1 || (size_t) n != out->len) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "discovery: cannot read \"%V\"", path);
        return NGX_ERROR;
    }

    out->data[out->len] = '\0';

    return NGX_OK;
}


ngx_int_t
ngx_http_ud_parse_document(u_char *data, size_t len, ngx_array_t *set,
    ngx_pool_t *pool, ngx_str_t *err)
{
    cJSON               *root, *peers, *item;
    ngx_int_t            rc;
    ngx_http_ud_addr_t  *a;

    if (ngx_http_ud_has_nul(data, len)) {
        ngx_str_set(err, "a NUL (\\u0000) in the document");
        return NGX_ERROR;
    }

    root = cJSON_ParseWithLength((char *) data, len);

    if (root == NULL) {
        ngx_str_set(err, "not valid JSON");
        return NGX_ERROR;
    }

    peers = cJSON_IsArray(root) ? root
                                : cJSON_GetObjectItemCaseSensitive(root,
                                                                   "peers");

    if (!cJSON_IsArray(peers)) {
        ngx_str_set(err, "expected {\"peers\": [...]} or an array");
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    rc = NGX_OK;

    cJSON_ArrayForEach(item, peers) {
        if (set->nelts == NGX_HTTP_UD_MAX_PEERS) {
            ngx_str_set(err, "more than 64 peers");
            rc = NGX_ERROR;
            break;
        }

        a = ngx_array_push(set);
        if (a == NULL) {
            rc = NGX_ERROR;
            ngx_str_set(err, "no memory");
            break;
        }

        if (ngx_http_ud_parse_peer(item, a, pool, err) != NGX_OK) {
            rc = NGX_ERROR;
            break;
        }
    }

    cJSON_Delete(root);

    return rc;
}


/*
 * A NUL in a document, raw or escaped: cJSON's strings end at it, so
 * "127.0.0.1:80\u0000x" would read as "127.0.0.1:80"; the document is
 * rejected whole instead.
 */

static ngx_int_t
ngx_http_ud_has_nul(u_char *data, size_t len)
{
    u_char  *p, *last;

    if (ngx_strlchr(data, data + len, '\0') != NULL) {
        return 1;
    }

    last = data + len;

    for (p = data; p + 6 <= last; p++) {
        if (p[0] == '\\' && p[1] == 'u'
            && ngx_strncmp(p + 2, "0000", 4) == 0)
        {
            return 1;
        }

        if (p[0] == '\\') {
            /* an escaped backslash is not the start of an escape */
            p++;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_ud_parse_peer(cJSON *item, ngx_http_ud_addr_t *a, ngx_pool_t *pool,
    ngx_str_t *err)
{
    cJSON       *addr, *weight, *backup;
    size_t       len;
    ngx_addr_t   na;

    ngx_memzero(a, sizeof(ngx_http_ud_addr_t));
    a->weight = 1;

    if (cJSON_IsString(item)) {
        addr = item;

    } else if (cJSON_IsObject(item)) {
        addr = cJSON_GetObjectItemCaseSensitive(item, "address");
        weight = cJSON_GetObjectItemCaseSensitive(item, "weight");
        backup = cJSON_GetObjectItemCaseSensitive(item, "backup");

        if (weight) {
            if (!cJSON_IsNumber(weight) || weight->valuedouble < 1
                || weight->valuedouble > 1000)
            {
                ngx_str_set(err, "a \"weight\" is not a number from 1 "
                                 "to 1000");
                return NGX_ERROR;
            }

            a->weight = (ngx_uint_t) weight->valuedouble;
        }

        if (backup) {
            if (!cJSON_IsBool(backup)) {
                ngx_str_set(err, "a \"backup\" is not true or false");
                return NGX_ERROR;
            }

            a->backup = cJSON_IsTrue(backup);
        }

    } else {
        ngx_str_set(err, "a peer is neither \"ip:port\" nor an object");
        return NGX_ERROR;
    }

    if (!cJSON_IsString(addr) || addr->valuestring == NULL) {
        ngx_str_set(err, "a peer has no \"address\"");
        return NGX_ERROR;
    }

    len = ngx_strlen(addr->valuestring);

    if (len == 0 || len > NGX_SOCKADDR_STRLEN
        || ngx_parse_addr_port(pool, &na, (u_char *) addr->valuestring, len)
           != NGX_OK
        || ngx_inet_get_port(na.sockaddr) == 0)
    {
        err->len = 0;
        err->data = ngx_pnalloc(pool, len + 64);

        if (err->data) {
            err->len = ngx_sprintf(err->data,
                                   "\"%*s\" is not an IP address with a port",
                                   ngx_min(len, 64), addr->valuestring)
                       - err->data;
        }

        return NGX_ERROR;
    }

    ngx_memcpy(&a->sockaddr, na.sockaddr, na.socklen);
    a->socklen = na.socklen;
    ngx_http_ud_addr_name(a, pool);

    return NGX_OK;
}


/*
 * A peer's name for the logs, "10.0.0.12:8080" or "[2001:db8::7]:8080",
 * from its address: ngx_parse_addr_port() leaves the name unset (it held
 * stack garbage until the fuzzer's invariant caught it, and a warning
 * printed it when a table had no room).
 */

static void
ngx_http_ud_addr_name(ngx_http_ud_addr_t *a, ngx_pool_t *pool)
{
    a->name.data = ngx_pnalloc(pool, NGX_SOCKADDR_STRLEN);

    if (a->name.data == NULL) {
        a->name.len = 0;
        return;
    }

    a->name.len = ngx_sock_ntop(&a->sockaddr.sockaddr, a->socklen,
                                a->name.data, NGX_SOCKADDR_STRLEN, 1);
}


/* the discovered set, written atomically: a temporary file, renamed */

void
ngx_http_ud_dump(ngx_http_ud_srv_conf_t *udcf, ngx_log_t *log)
{
    u_char               *tmp, name[NGX_SOCKADDR_STRLEN + 1];
    char                 *text;
    cJSON                *root, *peers, *o;
    ssize_t               n;
    ngx_fd_t              fd;
    ngx_uint_t            i;
    ngx_http_ud_peer_t   *p;
    ngx_http_ud_table_t  *t;

    t = udcf->table;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return;
    }

    peers = cJSON_AddArrayToObject(root, "peers");

    for (i = 0; peers && i < t->npeers; i++) {
        p = &t->peers[i];

        if (p->state == NGX_HTTP_UD_FREE || p->state == NGX_HTTP_UD_DRAINING
            || p->source != udcf->source)
        {
            continue;
        }

        o = cJSON_CreateObject();
        if (o == NULL) {
            break;
        }

        cJSON_AddItemToArray(peers, o);

        ngx_memcpy(name, p->name, p->name_len);
        name[p->name_len] = '\0';

        cJSON_AddStringToObject(o, "address", (char *) name);
        cJSON_AddNumberToObject(o, "weight", (double) p->weight);
        cJSON_AddBoolToObject(o, "backup", p->backup);
    }

    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);

    if (text == NULL) {
        return;
    }

    tmp = ngx_alloc(udcf->dump.len + 16, log);
    if (tmp == NULL) {
        cJSON_free(text);
        return;
    }

    ngx_sprintf(tmp, "%V.%P%Z", &udcf->dump, ngx_pid);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "discovery: cannot write \"%s\"", tmp);
        goto done;
    }

    n = ngx_write_fd(fd, text, ngx_strlen(text));

    ngx_close_file(fd);

    if (n != (ssize_t) ngx_strlen(text)
        || ngx_rename_file(tmp, udcf->dump.data) == NGX_FILE_ERROR)
    {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "discovery: cannot write the dump \"%V\"",
                      &udcf->dump);
        (void) ngx_delete_file(tmp);
    }

done:

    ngx_free(tmp);
    cJSON_free(text);
}


ngx_int_t
ngx_http_ud_load_dump(ngx_http_ud_srv_conf_t *udcf, ngx_log_t *log)
{
    ngx_int_t    rc;
    ngx_str_t    doc, err;
    ngx_pool_t  *pool;
    ngx_array_t  set;

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (ngx_http_ud_read(&udcf->dump, pool, &doc, log) != NGX_OK
        || ngx_array_init(&set, pool, 8, sizeof(ngx_http_ud_addr_t))
           != NGX_OK)
    {
        goto done;
    }

    if (ngx_http_ud_parse_document(doc.data, doc.len, &set, pool, &err)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "upstream \"%V\": the dump \"%V\" is unusable: %V",
                      &udcf->name, &udcf->dump, &err);
        goto done;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "upstream \"%V\": the source is unreachable, using the "
                  "dump \"%V\" (%ui peers)", &udcf->name, &udcf->dump,
                  set.nelts);

    rc = ngx_http_ud_apply(udcf, &set, udcf->source, log);

done:

    ngx_destroy_pool(pool);

    return rc;
}
