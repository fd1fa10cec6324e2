
/*
 * nginx-resilience: the per-worker Redis client.
 *
 * A hiredis async context driven by nginx's event loop: the socket is
 * wrapped in an ngx_connection_t whose read and write events are level
 * triggered, so hiredis's addRead / addWrite map onto ngx_add_event.
 * Commands queued during one event loop iteration leave in one write
 * (pipelining).  Connect and command timeouts are nginx timers, as
 * hiredis 0.14 has none of its own.  A second connection carries
 * SUBSCRIBE, opened on the first subscription.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/sds.h>

#include "ngx_http_resilience_redis.h"


#define NGX_HTTP_RESILIENCE_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_RESILIENCE_REDIS_BACKOFF_MAX  10000

/*
 * What a worker may hold for Redis at once: each command costs its bytes
 * on the wire (twice for EVALSHA, kept for a retry), its request and its
 * hiredis callbacks, from the call that sends it until hiredis lets it go
 * (its reply, or the connection's end), a timeout notwithstanding.
 */
#define NGX_HTTP_RESILIENCE_REDIS_MAX_QUEUED   (1024 * 1024)
#define NGX_HTTP_RESILIENCE_REDIS_CALLBACK     64

/* timeouts in a row, no reply between, that drop the connection */
#define NGX_HTTP_RESILIENCE_REDIS_TIMEOUTS     3


typedef struct ngx_http_resilience_redis_client_s
    ngx_http_resilience_redis_client_t;


typedef struct {
    redisAsyncContext                 *ac;
    ngx_connection_t                  *c;
    ngx_http_resilience_redis_client_t  *client;
    ngx_event_t                        connect_timer;
    ngx_event_t                        retry_timer;
    ngx_msec_t                         backoff;
    ngx_uint_t                         state;
    ngx_uint_t                         handshake;
    ngx_uint_t                         addr;     /* the one tried now */
    uint64_t                           appended; /* bytes given hiredis */
    ngx_atomic_t                      *state_stat;
    ngx_uint_t                         attempts; /* failed, this outage */
    u_char                            *reason_end;
    u_char                             reason[256];
    unsigned                           subscriber:1;
    unsigned                           was_connected:1;
    unsigned                           failing:1;
    unsigned                           refused:1;
    unsigned                           denied:1;  /* credentials */
    unsigned                           denied_logged:1;
} ngx_http_resilience_redis_conn_t;


typedef struct {
    ngx_str_t                          channel;
    ngx_http_resilience_redis_message_pt  handler;
    void                              *data;
} ngx_http_resilience_redis_sub_t;


struct ngx_http_resilience_redis_client_s {
    ngx_http_resilience_redis_conf_t  *conf;
    ngx_http_resilience_redis_stats_t *stats;
    ngx_log_t                         *log;
    ngx_http_resilience_redis_conn_t   main;
    ngx_http_resilience_redis_conn_t   sub;
    ngx_array_t                        subs;
    ngx_queue_t                        failed;
    ngx_event_t                        failed_event;
    ngx_uint_t                         pending;
    size_t                             queued;   /* cost, all commands */
    ngx_uint_t                         timeouts; /* in a row */
    unsigned                           exiting:1;
};


typedef struct {
    ngx_http_resilience_redis_handler_pt  handler;
    void                              *data;
    ngx_event_t                        timer;
    ngx_queue_t                        queue;
    ngx_http_resilience_redis_client_t  *client;
    char                              *cmd;      /* EVALSHA, for a retry */
    size_t                             len;
    ngx_http_resilience_redis_script_t  *script;
    ngx_uint_t                         refs;     /* hiredis callbacks */
    size_t                             cost;
    uint64_t                           end;      /* conn->appended */
    ngx_int_t                          rc;       /* in client->failed */
    unsigned                           done:1;
    unsigned                           retried:1;
} ngx_http_resilience_redis_req_t;


static void ngx_http_resilience_redis_connect(
    ngx_http_resilience_redis_conn_t *conn);
static void ngx_http_resilience_redis_next(
    ngx_http_resilience_redis_conn_t *conn, const char *reason);
static void ngx_http_resilience_redis_down(
    ngx_http_resilience_redis_conn_t *conn, ngx_uint_t level);
static void ngx_http_resilience_redis_retry(
    ngx_http_resilience_redis_conn_t *conn);
static void ngx_http_resilience_redis_close(
    ngx_http_resilience_redis_conn_t *conn);
static void ngx_http_resilience_redis_set_state(
    ngx_http_resilience_redis_conn_t *conn, ngx_uint_t state);
static void ngx_http_resilience_redis_read_handler(ngx_event_t *ev);
static void ngx_http_resilience_redis_write_handler(ngx_event_t *ev);
static void ngx_http_resilience_redis_add_read(void *privdata);
static void ngx_http_resilience_redis_del_read(void *privdata);
static void ngx_http_resilience_redis_add_write(void *privdata);
static void ngx_http_resilience_redis_del_write(void *privdata);
static void ngx_http_resilience_redis_cleanup(void *privdata);
static void ngx_http_resilience_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_resilience_redis_on_disconnect(
    const redisAsyncContext *ac, int status);
static void ngx_http_resilience_redis_handshake(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_http_resilience_redis_ready(
    ngx_http_resilience_redis_conn_t *conn);
static void ngx_http_resilience_redis_connect_timeout(ngx_event_t *ev);
static void ngx_http_resilience_redis_retry_handler(ngx_event_t *ev);
static ngx_http_resilience_redis_req_t *ngx_http_resilience_redis_req(
    ngx_http_resilience_redis_handler_pt handler, void *data);
static size_t ngx_http_resilience_redis_cost(ngx_uint_t argc,
    const size_t *argvlen);
static ngx_int_t ngx_http_resilience_redis_accept(
    ngx_http_resilience_redis_req_t *req, size_t cost);
static void ngx_http_resilience_redis_sent(
    ngx_http_resilience_redis_req_t *req, size_t before);
static void ngx_http_resilience_redis_drop(
    ngx_http_resilience_redis_conn_t *conn);
static void ngx_http_resilience_redis_fail(
    ngx_http_resilience_redis_req_t *req);
static void ngx_http_resilience_redis_failed_handler(ngx_event_t *ev);
static void ngx_http_resilience_redis_finish(
    ngx_http_resilience_redis_req_t *req, ngx_int_t rc, redisReply *reply);
static void ngx_http_resilience_redis_release(
    ngx_http_resilience_redis_req_t *req);
static void ngx_http_resilience_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_resilience_redis_timeout(ngx_event_t *ev);
static void ngx_http_resilience_redis_send_subscribe(
    ngx_http_resilience_redis_conn_t *conn,
    ngx_http_resilience_redis_sub_t *sub);
static void ngx_http_resilience_redis_message(redisAsyncContext *ac,
    void *r, void *privdata);


static ngx_http_resilience_redis_client_t  *ngx_http_resilience_redis_client;
static ngx_http_resilience_redis_stats_t    ngx_http_resilience_redis_nostats;

static const char  *ngx_http_resilience_redis_states[] = {
    "off", "disconnected", "connecting", "connected"
};


ngx_int_t
ngx_http_resilience_redis_init_worker(ngx_cycle_t *cycle,
    ngx_http_resilience_redis_conf_t *conf,
    ngx_http_resilience_redis_stats_t *stats)
{
    ngx_http_resilience_redis_client_t  *client;

    client = ngx_pcalloc(cycle->pool,
                         sizeof(ngx_http_resilience_redis_client_t));
    if (client == NULL) {
        return NGX_ERROR;
    }

    if (ngx_array_init(&client->subs, cycle->pool, 4,
                       sizeof(ngx_http_resilience_redis_sub_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    client->conf = conf;
    client->stats = stats ? stats : &ngx_http_resilience_redis_nostats;
    client->log = cycle->log;

    ngx_queue_init(&client->failed);
    client->failed_event.handler = ngx_http_resilience_redis_failed_handler;
    client->failed_event.data = client;
    client->failed_event.log = cycle->log;

    client->main.client = client;
    client->main.state_stat = &client->stats->state;
    client->sub.client = client;
    client->sub.subscriber = 1;
    client->sub.state_stat = &client->stats->sub_state;

    client->stats->pid = ngx_pid;
    client->stats->pending = 0;
    client->stats->state = NGX_HTTP_RESILIENCE_REDIS_OFF;
    client->stats->sub_state = NGX_HTTP_RESILIENCE_REDIS_OFF;

    ngx_http_resilience_redis_client = client;

    if (conf == NULL) {
        return NGX_OK;
    }

    ngx_http_resilience_redis_connect(&client->main);

    return NGX_OK;
}


void
ngx_http_resilience_redis_exit_worker(ngx_cycle_t *cycle)
{
    ngx_http_resilience_redis_client_t  *client;

    client = ngx_http_resilience_redis_client;

    if (client == NULL) {
        return;
    }

    client->exiting = 1;

    ngx_http_resilience_redis_close(&client->main);
    ngx_http_resilience_redis_close(&client->sub);

    if (client->failed_event.posted) {
        ngx_delete_posted_event(&client->failed_event);
    }

    ngx_http_resilience_redis_failed_handler(&client->failed_event);

    ngx_http_resilience_redis_client = NULL;
}


/*
 * "<address>[,<address>...]": host names are resolved here, once, into
 * all their addresses (hiredis would resolve them with a blocking
 * getaddrinfo() on every reconnect); every address is tried in turn on
 * each (re)connect, as nginx's upstreams do.
 */

char *
ngx_http_resilience_redis_parse_address(ngx_conf_t *cf,
    ngx_http_resilience_redis_conf_t *rc, ngx_str_t *value)
{
    u_char                            *p, *last, *end;
    size_t                             len;
    ngx_url_t                          u;
    ngx_str_t                          part;
    ngx_uint_t                         i;
    ngx_array_t                        addrs;
    ngx_http_resilience_redis_addr_t  *a;

    rc->address = *value;

    if (ngx_array_init(&addrs, cf->pool, 4,
                       sizeof(ngx_http_resilience_redis_addr_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    p = value->data;
    last = value->data + value->len;

    while (p <= last) {
        end = ngx_strlchr(p, last, ',');
        if (end == NULL) {
            end = last;
        }

        part.data = p;
        part.len = end - p;
        p = end + 1;

        if (part.len > 5 && ngx_strncmp(part.data, "unix:", 5) == 0) {
            a = ngx_array_push(&addrs);
            if (a == NULL) {
                return NGX_CONF_ERROR;
            }

            a->name = part;
            a->host.len = part.len - 5;
            a->host.data = ngx_pnalloc(cf->pool, a->host.len + 1);
            if (a->host.data == NULL) {
                return NGX_CONF_ERROR;
            }

            *ngx_cpymem(a->host.data, part.data + 5, a->host.len) = '\0';
            a->port = 0;

            continue;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url = part;
        u.default_port = 6379;

        if (part.len == 0
            || ngx_parse_url(cf->pool, &u) != NGX_OK
            || u.naddrs == 0
            || u.uri.len)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"resilience_redis\" directive: invalid "
                               "address \"%V\"%s%s", value,
                               u.err ? ": " : "", u.err ? u.err : "");
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < u.naddrs; i++) {
            a = ngx_array_push(&addrs);
            if (a == NULL) {
                return NGX_CONF_ERROR;
            }

            a->name.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN);
            a->host.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
            if (a->name.data == NULL || a->host.data == NULL) {
                return NGX_CONF_ERROR;
            }

            a->name.len = ngx_sock_ntop(u.addrs[i].sockaddr,
                                        u.addrs[i].socklen, a->name.data,
                                        NGX_SOCKADDR_STRLEN, 1);

            len = ngx_sock_ntop(u.addrs[i].sockaddr, u.addrs[i].socklen,
                                a->host.data, NGX_SOCKADDR_STRLEN, 0);

            /* hiredis wants an IPv6 address without brackets */

            if (len > 2 && a->host.data[0] == '[') {
                ngx_memmove(a->host.data, a->host.data + 1, len - 2);
                len -= 2;
            }

            a->host.data[len] = '\0';
            a->host.len = len;
            a->port = ngx_inet_get_port(u.addrs[i].sockaddr);
        }
    }

    rc->addrs = addrs.elts;
    rc->naddrs = addrs.nelts;
    rc->host = rc->addrs[0].host;
    rc->port = rc->addrs[0].port;

    return NGX_CONF_OK;
}


/* connections */


static void
ngx_http_resilience_redis_connect(ngx_http_resilience_redis_conn_t *conn)
{
    ngx_connection_t                    *c;
    redisAsyncContext                   *ac;
    ngx_http_resilience_redis_addr_t    *addr;
    ngx_http_resilience_redis_conf_t    *conf;
    ngx_http_resilience_redis_client_t  *client;

    client = conn->client;
    conf = client->conf;

    if (client->exiting || conn->ac != NULL) {
        return;
    }

    ngx_http_resilience_redis_set_state(conn,
                                     NGX_HTTP_RESILIENCE_REDIS_CONNECTING);

    addr = &conf->addrs[conn->addr];

    if (addr->port == 0) {
        ac = redisAsyncConnectUnix((const char *) addr->host.data);

    } else {
        ac = redisAsyncConnect((const char *) addr->host.data,
                               (int) addr->port);
    }

    if (ac == NULL) {
        ngx_http_resilience_redis_next(conn, "cannot create a context");
        return;
    }

    if (ac->err) {
        ngx_http_resilience_redis_next(conn, ac->errstr);
        redisAsyncFree(ac);
        return;
    }

    c = ngx_get_connection(ac->c.fd, client->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_resilience_redis_next(conn, "no free connection");
        return;
    }

    c->data = conn;
    c->idle = 1;
    c->read->handler = ngx_http_resilience_redis_read_handler;
    c->write->handler = ngx_http_resilience_redis_write_handler;
    c->read->log = client->log;
    c->write->log = client->log;

    conn->c = c;
    conn->ac = ac;
    conn->handshake = 0;
    conn->appended = 0;

    /* the adapter works on this socket's connection, not on conn->c */

    ac->data = conn;
    ac->ev.data = c;
    ac->ev.addRead = ngx_http_resilience_redis_add_read;
    ac->ev.delRead = ngx_http_resilience_redis_del_read;
    ac->ev.addWrite = ngx_http_resilience_redis_add_write;
    ac->ev.delWrite = ngx_http_resilience_redis_del_write;
    ac->ev.cleanup = ngx_http_resilience_redis_cleanup;

    redisAsyncSetConnectCallback(ac, ngx_http_resilience_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac,
                                    ngx_http_resilience_redis_on_disconnect);

    conn->connect_timer.handler = ngx_http_resilience_redis_connect_timeout;
    conn->connect_timer.data = conn;
    conn->connect_timer.log = client->log;
    conn->connect_timer.cancelable = 1;

    ngx_add_timer(&conn->connect_timer, conf->connect_timeout);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, client->log, 0,
                   "resilience_redis: connecting to %V%s",
                   &addr->name, conn->subscriber ? " (subscriber)" : "");
}


/*
 * A connection attempt failed before the connection was ready: the next
 * address, at once, or, when every address failed, a retry with backoff
 * from the first one.  The context that failed is freed by the caller.
 * "reason" is NULL when conn->reason says it already (a refusal).
 */

static void
ngx_http_resilience_redis_next(ngx_http_resilience_redis_conn_t *conn,
    const char *reason)
{
    ngx_uint_t                           level;
    ngx_http_resilience_redis_conf_t    *conf;
    ngx_http_resilience_redis_client_t  *client;

    client = conn->client;
    conf = client->conf;

    level = NGX_LOG_WARN;

    if (reason == NULL) {
        /* the server answered, and said no: AUTH, SELECT, max clients */
        level = conn->denied ? NGX_LOG_ERR : NGX_LOG_WARN;

    } else {
        conn->reason_end = ngx_snprintf(conn->reason, sizeof(conn->reason),
                                        "connect to %V failed: %s",
                                        &conf->addrs[conn->addr].name,
                                        reason);
    }

    conn->ac = NULL;
    conn->refused = 0;
    conn->denied = 0;
    conn->attempts++;

    if (conn->connect_timer.timer_set) {
        ngx_del_timer(&conn->connect_timer);
    }

    if (conn->addr + 1 < conf->naddrs && !client->exiting) {
        ngx_log_error(NGX_LOG_INFO, client->log, 0,
                      "resilience_redis: %*s, trying the next address",
                      (size_t) (conn->reason_end - conn->reason),
                      conn->reason);

        conn->addr++;
        ngx_http_resilience_redis_connect(conn);
        return;
    }

    ngx_http_resilience_redis_down(conn, level);
}


/*
 * Redis is out of reach (conn->reason says why): one line when an outage
 * begins, at "level", and only info lines for the attempts that follow,
 * but for the first refusal of the credentials, an error, once in each
 * outage; then a retry with backoff.
 */

static void
ngx_http_resilience_redis_down(ngx_http_resilience_redis_conn_t *conn,
    ngx_uint_t level)
{
    ngx_http_resilience_redis_client_t  *client;

    client = conn->client;

    if (client->exiting
        || (conn->failing
            && (level != NGX_LOG_ERR || conn->denied_logged)))
    {
        ngx_log_error(NGX_LOG_INFO, client->log, 0,
                      "resilience_redis: %*s",
                      (size_t) (conn->reason_end - conn->reason),
                      conn->reason);

    } else {
        conn->failing = 1;
        conn->denied_logged = (level == NGX_LOG_ERR);

        ngx_log_error(level, client->log, 0,
                      "resilience_redis: %V%s unavailable: %*s, retrying "
                      "with backoff up to %M ms",
                      &client->conf->address,
                      conn->subscriber ? " (subscriber)" : "",
                      (size_t) (conn->reason_end - conn->reason),
                      conn->reason,
                      (ngx_msec_t) NGX_HTTP_RESILIENCE_REDIS_BACKOFF_MAX);
    }

    ngx_http_resilience_redis_retry(conn);
}


static void
ngx_http_resilience_redis_retry(ngx_http_resilience_redis_conn_t *conn)
{
    ngx_msec_t                           delay;
    ngx_http_resilience_redis_client_t  *client;

    client = conn->client;

    conn->ac = NULL;
    conn->addr = 0;

    if (conn->connect_timer.timer_set) {
        ngx_del_timer(&conn->connect_timer);
    }

    ngx_http_resilience_redis_set_state(conn,
                                  NGX_HTTP_RESILIENCE_REDIS_DISCONNECTED);

    if (client->exiting || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (conn->retry_timer.timer_set) {
        return;
    }

    if (conn->backoff == 0) {
        conn->backoff = NGX_HTTP_RESILIENCE_REDIS_BACKOFF_MIN;

    } else {
        conn->backoff *= 2;

        if (conn->backoff > NGX_HTTP_RESILIENCE_REDIS_BACKOFF_MAX) {
            conn->backoff = NGX_HTTP_RESILIENCE_REDIS_BACKOFF_MAX;
        }
    }

    /* up to 25% of jitter, so that workers do not reconnect in step */
    delay = conn->backoff - (conn->backoff / 4)
            + (ngx_msec_t) ngx_random() % (conn->backoff / 4 + 1);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, client->log, 0,
                   "resilience_redis: reconnect in %M ms", delay);

    conn->retry_timer.handler = ngx_http_resilience_redis_retry_handler;
    conn->retry_timer.data = conn;
    conn->retry_timer.log = client->log;
    conn->retry_timer.cancelable = 1;

    ngx_add_timer(&conn->retry_timer, delay);
}


static void
ngx_http_resilience_redis_retry_handler(ngx_event_t *ev)
{
    ngx_http_resilience_redis_conn_t  *conn;

    conn = ev->data;

    (void) ngx_atomic_fetch_add(&conn->client->stats->reconnects, 1);

    ngx_http_resilience_redis_connect(conn);
}


static void
ngx_http_resilience_redis_close(ngx_http_resilience_redis_conn_t *conn)
{
    redisAsyncContext  *ac;

    if (conn->retry_timer.timer_set) {
        ngx_del_timer(&conn->retry_timer);
    }

    if (conn->connect_timer.timer_set) {
        ngx_del_timer(&conn->connect_timer);
    }

    ac = conn->ac;

    if (ac != NULL) {
        /* pending callbacks fire with a NULL reply, then cleanup runs */
        conn->ac = NULL;
        redisAsyncFree(ac);
    }

    if (conn->state != NGX_HTTP_RESILIENCE_REDIS_OFF) {
        ngx_http_resilience_redis_set_state(conn,
                                      NGX_HTTP_RESILIENCE_REDIS_DISCONNECTED);
    }
}


static void
ngx_http_resilience_redis_set_state(ngx_http_resilience_redis_conn_t *conn,
    ngx_uint_t state)
{
    conn->state = state;

    /* after a reload, an exiting worker must not mark a new one's slot */

    if (conn->client->stats->pid == (ngx_atomic_t) ngx_pid) {
        *conn->state_stat = state;
    }
}


/* the event library adapter */


static void
ngx_http_resilience_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t                  *c;
    ngx_http_resilience_redis_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (c->close) {
        /* the worker is shutting down: stop, and let it exit */
        conn->client->exiting = 1;
        ngx_http_resilience_redis_close(conn);
        return;
    }

    if (conn->ac != NULL) {
        redisAsyncHandleRead(conn->ac);
    }
}


static void
ngx_http_resilience_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t                  *c;
    ngx_http_resilience_redis_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (conn->ac != NULL) {
        redisAsyncHandleWrite(conn->ac);
    }
}


static void
ngx_http_resilience_redis_add_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (!c->read->active) {
        (void) ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_resilience_redis_del_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_resilience_redis_add_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (!c->write->active) {
        (void) ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_resilience_redis_del_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_http_resilience_redis_cleanup(void *privdata)
{
    ngx_connection_t                  *c = privdata;
    ngx_http_resilience_redis_conn_t  *conn;

    conn = c->data;

    /* a new connection to the next address may already be conn->c */

    if (conn->c == c) {
        conn->c = NULL;
    }

    /* hiredis closes the socket itself, right after this */

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


/* connection life */


static void
ngx_http_resilience_redis_on_connect(const redisAsyncContext *cac,
    int status)
{
    int                                  argc;
    size_t                               argvlen[3], before;
    u_char                              *p, db[NGX_INT_T_LEN];
    const char                          *argv[3];
    redisAsyncContext                   *ac;
    ngx_http_resilience_redis_conf_t    *conf;
    ngx_http_resilience_redis_conn_t    *conn;
    ngx_http_resilience_redis_client_t  *client;

    ac = (redisAsyncContext *) cac;
    conn = ac->data;
    client = conn->client;
    conf = client->conf;

    if (status != REDIS_OK) {
        /* hiredis frees the context when this callback returns */
        ngx_http_resilience_redis_next(conn, ac->errstr);
        return;
    }

    /*
     * AUTH and SELECT as configured, then PING: the connection is ready,
     * and the backoff starts again from its least, only once Redis has
     * answered all of them (a server that accepts and closes, or answers
     * "-ERR max number of clients reached", never gets that far)
     */

    before = sdslen(ac->c.obuf);

    argv[0] = "AUTH";
    argvlen[0] = 4;
    argc = 1;

    if (conf->username.len) {
        argv[argc] = (const char *) conf->username.data;
        argvlen[argc++] = conf->username.len;
    }

    if (conf->password.len) {
        argv[argc] = (const char *) conf->password.data;
        argvlen[argc++] = conf->password.len;

        if (redisAsyncCommandArgv(ac, ngx_http_resilience_redis_handshake,
                                  conn, argc, argv, argvlen)
            == REDIS_OK)
        {
            conn->handshake++;
        }
    }

    if (conf->db) {
        p = ngx_sprintf(db, "%ui", conf->db);

        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (const char *) db;
        argvlen[1] = p - db;
        argc = 2;

        if (redisAsyncCommandArgv(ac, ngx_http_resilience_redis_handshake,
                                  conn, argc, argv, argvlen)
            == REDIS_OK)
        {
            conn->handshake++;
        }
    }

    if (redisAsyncCommand(ac, ngx_http_resilience_redis_handshake, conn,
                          "PING")
        == REDIS_OK)
    {
        conn->handshake++;
    }

    conn->appended += sdslen(ac->c.obuf) - before;

    if (conn->handshake == 0) {
        ngx_http_resilience_redis_ready(conn);
    }
}


static void
ngx_http_resilience_redis_handshake(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                        *reply = r;
    ngx_http_resilience_redis_conn_t  *conn = privdata;

    if (reply == NULL || conn->ac != ac || conn->refused) {
        /* the connection is going away; on_disconnect takes over */
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        conn->reason_end = ngx_snprintf(conn->reason, sizeof(conn->reason),
                                   "%V refused the handshake: %*s",
                                   &conn->client->conf->addrs[conn->addr].name,
                                   (size_t) reply->len, reply->str);
        conn->refused = 1;

        /* WRONGPASS, NOPERM, NOAUTH, "ERR invalid password", ... */

        conn->denied = (ngx_strlcasestrn((u_char *) reply->str,
                                         (u_char *) reply->str + reply->len,
                                         (u_char *) "pass", 4 - 1)
                        != NULL
                        || (reply->len >= 6
                            && (ngx_strncmp(reply->str, "NOPERM", 6) == 0
                                || ngx_strncmp(reply->str, "NOAUTH", 6)
                                   == 0)));
        redisAsyncDisconnect(ac);
        return;
    }

    if (--conn->handshake == 0) {
        ngx_http_resilience_redis_ready(conn);
    }
}


static void
ngx_http_resilience_redis_ready(ngx_http_resilience_redis_conn_t *conn)
{
    ngx_uint_t                           i;
    ngx_http_resilience_redis_sub_t    **subs;
    ngx_http_resilience_redis_client_t  *client;

    client = conn->client;

    if (conn->connect_timer.timer_set) {
        ngx_del_timer(&conn->connect_timer);
    }

    conn->backoff = 0;
    conn->was_connected = 1;

    ngx_http_resilience_redis_set_state(conn,
                                     NGX_HTTP_RESILIENCE_REDIS_CONNECTED);

    (void) ngx_atomic_fetch_add(&client->stats->connects, 1);

    if (conn->failing) {
        ngx_log_error(NGX_LOG_WARN, client->log, 0,
                      "resilience_redis: %V%s available again after %ui "
                      "failed attempts, connected to %V",
                      &client->conf->address,
                      conn->subscriber ? " (subscriber)" : "",
                      conn->attempts,
                      &client->conf->addrs[conn->addr].name);

    } else {
        ngx_log_error(NGX_LOG_INFO, client->log, 0,
                      "resilience_redis: connected to %V%s",
                      &client->conf->addrs[conn->addr].name,
                      conn->subscriber ? " (subscriber)" : "");
    }

    conn->failing = 0;
    conn->denied_logged = 0;
    conn->attempts = 0;

    if (!conn->subscriber) {
        return;
    }

    subs = client->subs.elts;

    for (i = 0; i < client->subs.nelts; i++) {
        ngx_http_resilience_redis_send_subscribe(conn, subs[i]);
    }
}


static void
ngx_http_resilience_redis_on_disconnect(const redisAsyncContext *cac,
    int status)
{
    const char                        *err;
    redisAsyncContext                 *ac;
    ngx_http_resilience_redis_conn_t  *conn;

    ac = (redisAsyncContext *) cac;
    conn = ac->data;

    if (conn->ac != ac) {
        /* we closed it ourselves */
        return;
    }

    err = (status == REDIS_OK || ac->errstr[0] == '\0') ? "closed"
                                                        : ac->errstr;

    if (conn->refused) {
        /* the server said no: conn->reason has its answer */
        ngx_http_resilience_redis_next(conn, NULL);
        return;
    }

    if (conn->state != NGX_HTTP_RESILIENCE_REDIS_CONNECTED) {
        /* before the handshake was done: an attempt that failed */
        ngx_http_resilience_redis_next(conn, err);
        return;
    }

    conn->reason_end = ngx_snprintf(conn->reason, sizeof(conn->reason),
                                    "connection to %V lost: %s",
                                    &conn->client->conf->addrs[conn->addr].name,
                                    err);

    conn->ac = NULL;

    ngx_http_resilience_redis_down(conn, NGX_LOG_WARN);
}


static void
ngx_http_resilience_redis_connect_timeout(ngx_event_t *ev)
{
    redisAsyncContext                 *ac;
    ngx_http_resilience_redis_conn_t  *conn;

    conn = ev->data;
    ac = conn->ac;

    conn->ac = NULL;

    if (ac != NULL) {
        redisAsyncFree(ac);
    }

    ngx_http_resilience_redis_next(conn, "timed out");
}


/* commands */


ngx_int_t
ngx_http_resilience_redis_command(ngx_uint_t argc, const char **argv,
    const size_t *argvlen, ngx_http_resilience_redis_handler_pt handler,
    void *data)
{
    size_t                               before;
    ngx_http_resilience_redis_req_t     *req;
    ngx_http_resilience_redis_client_t  *client;

    client = ngx_http_resilience_redis_client;

    req = ngx_http_resilience_redis_req(handler, data);
    if (req == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_resilience_redis_accept(req,
                                ngx_http_resilience_redis_cost(argc, argvlen))
        != NGX_OK)
    {
        return NGX_OK;
    }

    before = sdslen(client->main.ac->c.obuf);

    if (redisAsyncCommandArgv(client->main.ac,
                              ngx_http_resilience_redis_reply, req,
                              (int) argc, argv, argvlen)
        != REDIS_OK)
    {
        ngx_http_resilience_redis_fail(req);
        return NGX_OK;
    }

    ngx_http_resilience_redis_sent(req, before);
    (void) ngx_atomic_fetch_add(&client->stats->commands, 1);

    return NGX_OK;
}


ngx_int_t
ngx_http_resilience_redis_batch(ngx_http_resilience_redis_cmd_t *cmds,
    ngx_uint_t n, ngx_http_resilience_redis_handler_pt handler, void *data)
{
    size_t                               cost, before;
    ngx_uint_t                           i;
    redisAsyncContext                   *ac;
    ngx_http_resilience_redis_req_t     *req;
    ngx_http_resilience_redis_client_t  *client;

    client = ngx_http_resilience_redis_client;

    req = ngx_http_resilience_redis_req(handler, data);
    if (req == NULL) {
        return NGX_ERROR;
    }

    /* MULTI and EXEC: a callback and a few bytes each */
    cost = 2 * ngx_http_resilience_redis_cost(0, NULL);

    for (i = 0; i < n; i++) {
        cost += ngx_http_resilience_redis_cost(cmds[i].argc,
                                               cmds[i].argvlen);
    }

    if (ngx_http_resilience_redis_accept(req, cost) != NGX_OK) {
        return NGX_OK;
    }

    ac = client->main.ac;
    before = sdslen(ac->c.obuf);

    /* the QUEUED replies need no callback: EXEC carries them all */

    if (redisAsyncCommand(ac, NULL, NULL, "MULTI") != REDIS_OK) {
        ngx_http_resilience_redis_fail(req);
        return NGX_OK;
    }

    /* from here on, what a failure left in the buffer is counted too */

    for (i = 0; i < n; i++) {
        if (redisAsyncCommandArgv(ac, NULL, NULL, (int) cmds[i].argc,
                                  cmds[i].argv, cmds[i].argvlen)
            != REDIS_OK)
        {
            (void) redisAsyncCommand(ac, NULL, NULL, "DISCARD");
            client->main.appended += sdslen(ac->c.obuf) - before;
            ngx_http_resilience_redis_fail(req);
            return NGX_OK;
        }
    }

    if (redisAsyncCommand(ac, ngx_http_resilience_redis_reply, req, "EXEC")
        != REDIS_OK)
    {
        client->main.appended += sdslen(ac->c.obuf) - before;
        ngx_http_resilience_redis_fail(req);
        return NGX_OK;
    }

    ngx_http_resilience_redis_sent(req, before);
    (void) ngx_atomic_fetch_add(&client->stats->commands, n + 2);

    return NGX_OK;
}


ngx_http_resilience_redis_script_t *
ngx_http_resilience_redis_script(ngx_conf_t *cf, ngx_str_t *body)
{
    u_char                               hash[20];
    ngx_sha1_t                           sha1;
    ngx_http_resilience_redis_script_t  *script;

    script = ngx_pcalloc(cf->pool, sizeof(ngx_http_resilience_redis_script_t));
    if (script == NULL) {
        return NULL;
    }

    script->body.data = ngx_pstrdup(cf->pool, body);
    if (script->body.data == NULL) {
        return NULL;
    }

    script->body.len = body->len;

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, body->data, body->len);
    ngx_sha1_final(hash, &sha1);

    ngx_hex_dump(script->sha1, hash, 20);

    return script;
}


ngx_int_t
ngx_http_resilience_redis_evalsha(ngx_http_resilience_redis_script_t *script,
    ngx_uint_t nkeys, ngx_uint_t argc, const char **argv,
    const size_t *argvlen, ngx_http_resilience_redis_handler_pt handler,
    void *data)
{
    int                                  len;
    char                                *cmd;
    u_char                              *p, n[NGX_INT_T_LEN];
    size_t                              *lens, before;
    ngx_uint_t                           i;
    const char                         **args;
    ngx_http_resilience_redis_req_t     *req;
    ngx_http_resilience_redis_client_t  *client;

    client = ngx_http_resilience_redis_client;

    req = ngx_http_resilience_redis_req(handler, data);
    if (req == NULL) {
        return NGX_ERROR;
    }

    /* the command's copy, kept for a retry, costs as much again */

    if (ngx_http_resilience_redis_accept(req,
                          2 * ngx_http_resilience_redis_cost(argc, argvlen)
                          + 2 * (NGX_INT_T_LEN + 40 + 7 + 48))
        != NGX_OK)
    {
        return NGX_OK;
    }

    args = ngx_alloc((argc + 3) * (sizeof(char *) + sizeof(size_t)),
                     client->log);
    if (args == NULL) {
        ngx_http_resilience_redis_fail(req);
        return NGX_OK;
    }

    lens = (size_t *) &args[argc + 3];

    p = ngx_sprintf(n, "%ui", nkeys);

    args[0] = "EVALSHA";
    lens[0] = 7;
    args[1] = (const char *) script->sha1;
    lens[1] = 40;
    args[2] = (const char *) n;
    lens[2] = p - n;

    for (i = 0; i < argc; i++) {
        args[i + 3] = argv[i];
        lens[i + 3] = argvlen[i];
    }

    len = redisFormatCommandArgv(&cmd, (int) argc + 3, args, lens);

    ngx_free(args);

    if (len < 0) {
        ngx_http_resilience_redis_fail(req);
        return NGX_OK;
    }

    req->cmd = cmd;
    req->len = len;
    req->script = script;

    before = sdslen(client->main.ac->c.obuf);

    if (redisAsyncFormattedCommand(client->main.ac,
                                   ngx_http_resilience_redis_reply, req,
                                   cmd, len)
        != REDIS_OK)
    {
        ngx_http_resilience_redis_fail(req);
        return NGX_OK;
    }

    ngx_http_resilience_redis_sent(req, before);
    (void) ngx_atomic_fetch_add(&client->stats->commands, 1);

    return NGX_OK;
}


static ngx_http_resilience_redis_req_t *
ngx_http_resilience_redis_req(ngx_http_resilience_redis_handler_pt handler,
    void *data)
{
    ngx_http_resilience_redis_req_t     *req;
    ngx_http_resilience_redis_client_t  *client;

    client = ngx_http_resilience_redis_client;

    if (client == NULL) {
        /* outside a worker (or before init_process): nothing to fire */
        return NULL;
    }

    req = ngx_calloc(sizeof(ngx_http_resilience_redis_req_t), client->log);
    if (req == NULL) {
        return NULL;
    }

    req->handler = handler;
    req->data = data;
    req->client = client;

    return req;
}


/* a command's cost against NGX_HTTP_RESILIENCE_REDIS_MAX_QUEUED */

static size_t
ngx_http_resilience_redis_cost(ngx_uint_t argc, const size_t *argvlen)
{
    size_t      cost;
    ngx_uint_t  i;

    /* "*<argc>\r\n", then "$<len>\r\n<arg>\r\n" each, and a callback */

    cost = NGX_INT_T_LEN + 3 + NGX_HTTP_RESILIENCE_REDIS_CALLBACK;

    for (i = 0; i < argc; i++) {
        cost += argvlen[i] + NGX_INT_T_LEN + 5;
    }

    return cost;
}


/*
 * Takes the request into the pending set and arms its timer, or, when
 * no command can be sent now, queues it to fail from a posted event:
 * FAILED without a connection, BUSY when the worker holds too much for
 * Redis already (one command is always let through).
 */

static ngx_int_t
ngx_http_resilience_redis_accept(ngx_http_resilience_redis_req_t *req,
    size_t cost)
{
    ngx_http_resilience_redis_client_t  *client;

    client = req->client;

    cost += sizeof(ngx_http_resilience_redis_req_t);

    if (client->main.state != NGX_HTTP_RESILIENCE_REDIS_CONNECTED
        || client->main.ac == NULL
        || client->exiting)
    {
        req->rc = NGX_HTTP_RESILIENCE_REDIS_FAILED;
        goto failed;
    }

    if (client->queued
        && client->queued + cost > NGX_HTTP_RESILIENCE_REDIS_MAX_QUEUED)
    {
        (void) ngx_atomic_fetch_add(&client->stats->busy, 1);
        req->rc = NGX_HTTP_RESILIENCE_REDIS_BUSY;
        goto failed;
    }

    client->pending++;
    client->stats->pending = client->pending;

    req->cost = cost;
    client->queued += cost;

    req->timer.handler = ngx_http_resilience_redis_timeout;
    req->timer.data = req;
    req->timer.log = client->log;
    req->timer.cancelable = 1;

    ngx_add_timer(&req->timer, client->conf->command_timeout);

    return NGX_OK;

failed:

    ngx_queue_insert_tail(&client->failed, &req->queue);

    if (!client->failed_event.posted) {
        ngx_post_event(&client->failed_event, &ngx_posted_events);
    }

    return NGX_DECLINED;
}


/* handed to hiredis: where its command ends in what hiredis was given */

static void
ngx_http_resilience_redis_sent(ngx_http_resilience_redis_req_t *req,
    size_t before)
{
    ngx_http_resilience_redis_conn_t  *conn;

    conn = &req->client->main;

    conn->appended += sdslen(conn->ac->c.obuf) - before;

    req->end = conn->appended;
    req->refs++;
}


static void
ngx_http_resilience_redis_fail(ngx_http_resilience_redis_req_t *req)
{
    ngx_http_resilience_redis_client_t  *client;

    client = req->client;

    /* accepted, but hiredis refused it: undo and fail asynchronously */

    if (req->timer.timer_set) {
        ngx_del_timer(&req->timer);
    }

    client->pending--;
    client->stats->pending = client->pending;

    client->queued -= req->cost;
    req->cost = 0;

    req->rc = NGX_HTTP_RESILIENCE_REDIS_FAILED;

    ngx_queue_insert_tail(&client->failed, &req->queue);

    if (!client->failed_event.posted) {
        ngx_post_event(&client->failed_event, &ngx_posted_events);
    }
}


static void
ngx_http_resilience_redis_failed_handler(ngx_event_t *ev)
{
    ngx_queue_t                         *q;
    ngx_http_resilience_redis_req_t     *req;
    ngx_http_resilience_redis_client_t  *client;

    client = ev->data;

    while (!ngx_queue_empty(&client->failed)) {
        q = ngx_queue_head(&client->failed);
        ngx_queue_remove(q);

        req = ngx_queue_data(q, ngx_http_resilience_redis_req_t, queue);

        (void) ngx_atomic_fetch_add(&client->stats->errors, 1);

        req->done = 1;
        req->handler(req->rc, NULL, req->data);

        ngx_http_resilience_redis_release(req);
    }
}


static void
ngx_http_resilience_redis_finish(ngx_http_resilience_redis_req_t *req,
    ngx_int_t rc, redisReply *reply)
{
    ngx_http_resilience_redis_client_t  *client;

    if (req->done) {
        return;
    }

    client = req->client;

    req->done = 1;

    if (req->timer.timer_set) {
        ngx_del_timer(&req->timer);
    }

    client->pending--;
    client->stats->pending = client->pending;

    req->handler(rc, reply, req->data);
}


static void
ngx_http_resilience_redis_release(ngx_http_resilience_redis_req_t *req)
{
    if (req->refs || !req->done) {
        return;
    }

    /* hiredis let it go: what it cost is free again */
    req->client->queued -= req->cost;

    if (req->cmd) {
        redisFreeCommand(req->cmd);
    }

    ngx_free(req);
}


static void
ngx_http_resilience_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    size_t                               before;
    ngx_int_t                            rc;
    redisReply                          *reply = r;
    ngx_http_resilience_redis_req_t     *req = privdata;
    ngx_http_resilience_redis_conn_t    *conn;
    ngx_http_resilience_redis_client_t  *client;

    client = req->client;
    conn = ac->data;

    req->refs--;

    if (reply == NULL) {
        if (!req->done) {
            (void) ngx_atomic_fetch_add(&client->stats->errors, 1);
        }

        /* written out whole, Redis may have run it: outcome unknown */

        rc = (req->end + sdslen(ac->c.obuf) <= conn->appended)
             ? NGX_HTTP_RESILIENCE_REDIS_LOST
             : NGX_HTTP_RESILIENCE_REDIS_FAILED;

        ngx_http_resilience_redis_finish(req, rc, NULL);
        ngx_http_resilience_redis_release(req);
        return;
    }

    client->timeouts = 0;

    (void) ngx_atomic_fetch_add(&client->stats->replies, 1);

    if (reply->type == REDIS_REPLY_ERROR
        && req->script != NULL
        && !req->retried
        && !req->done
        && reply->len >= 8
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        /* the script cache was flushed: load it, then run it again */

        req->retried = 1;

        ngx_log_error(NGX_LOG_INFO, client->log, 0,
                      "resilience_redis: loading script %*s",
                      (size_t) 40, req->script->sha1);

        before = sdslen(ac->c.obuf);

        if (redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %b",
                              req->script->body.data,
                              req->script->body.len)
            == REDIS_OK
            && redisAsyncFormattedCommand(ac,
                                          ngx_http_resilience_redis_reply,
                                          req, req->cmd, req->len)
            == REDIS_OK)
        {
            ngx_http_resilience_redis_sent(req, before);
            (void) ngx_atomic_fetch_add(&client->stats->commands, 2);
            return;
        }

        conn->appended += sdslen(ac->c.obuf) - before;
    }

    if (reply->type == REDIS_REPLY_ERROR && !req->done) {
        (void) ngx_atomic_fetch_add(&client->stats->errors, 1);
    }

    ngx_http_resilience_redis_finish(req, NGX_HTTP_RESILIENCE_REDIS_REPLY,
                                     reply);
    ngx_http_resilience_redis_release(req);
}


static void
ngx_http_resilience_redis_timeout(ngx_event_t *ev)
{
    ngx_http_resilience_redis_req_t     *req;
    ngx_http_resilience_redis_client_t  *client;

    req = ev->data;
    client = req->client;

    (void) ngx_atomic_fetch_add(&client->stats->timeouts, 1);

    /* one line for a stall, not one per command caught in it */

    client->timeouts++;

    ngx_log_error((client->timeouts > 1 ? NGX_LOG_INFO : NGX_LOG_WARN),
                  client->log, 0,
                  "resilience_redis: command to %V timed out after %M ms",
                  &client->conf->address, client->conf->command_timeout);

    /* the reply, if it ever comes, only releases the request */
    ngx_http_resilience_redis_finish(req, NGX_HTTP_RESILIENCE_REDIS_TIMEDOUT,
                                     NULL);

    if (client->timeouts < NGX_HTTP_RESILIENCE_REDIS_TIMEOUTS
        || client->main.ac == NULL)
    {
        return;
    }

    client->main.reason_end = ngx_snprintf(client->main.reason,
                                  sizeof(client->main.reason),
                                  "%ui commands to %V timed out in a row",
                                  client->timeouts,
                                  &client->conf->addrs[client->main.addr].name);

    client->timeouts = 0;

    ngx_http_resilience_redis_drop(&client->main);
}


/*
 * Closes a connection that stopped answering: hiredis lets go of every
 * command it holds (LOST, or FAILED when still unwritten), then a retry
 * with backoff.
 */

static void
ngx_http_resilience_redis_drop(ngx_http_resilience_redis_conn_t *conn)
{
    redisAsyncContext  *ac;

    ac = conn->ac;
    conn->ac = NULL;

    redisAsyncFree(ac);

    ngx_http_resilience_redis_down(conn, NGX_LOG_WARN);
}


/* pub/sub */


ngx_int_t
ngx_http_resilience_redis_subscribe(ngx_str_t *channel,
    ngx_http_resilience_redis_message_pt handler, void *data)
{
    ngx_http_resilience_redis_sub_t    **subp, *sub;
    ngx_http_resilience_redis_client_t  *client;

    client = ngx_http_resilience_redis_client;

    if (client == NULL || client->conf == NULL) {
        return NGX_DECLINED;
    }

    /* hiredis keeps the pointer: allocate each one apart */

    sub = ngx_palloc(client->subs.pool,
                     sizeof(ngx_http_resilience_redis_sub_t));
    if (sub == NULL) {
        return NGX_ERROR;
    }

    sub->channel.data = ngx_pstrdup(client->subs.pool, channel);
    if (sub->channel.data == NULL) {
        return NGX_ERROR;
    }

    subp = ngx_array_push(&client->subs);
    if (subp == NULL) {
        return NGX_ERROR;
    }

    *subp = sub;

    sub->channel.len = channel->len;
    sub->handler = handler;
    sub->data = data;

    if (client->sub.state == NGX_HTTP_RESILIENCE_REDIS_CONNECTED) {
        ngx_http_resilience_redis_send_subscribe(&client->sub, sub);

    } else if (client->sub.state == NGX_HTTP_RESILIENCE_REDIS_OFF) {
        ngx_http_resilience_redis_connect(&client->sub);
    }

    return NGX_OK;
}


static void
ngx_http_resilience_redis_send_subscribe(
    ngx_http_resilience_redis_conn_t *conn,
    ngx_http_resilience_redis_sub_t *sub)
{
    size_t       argvlen[2];
    const char  *argv[2];

    argv[0] = "SUBSCRIBE";
    argvlen[0] = 9;
    argv[1] = (const char *) sub->channel.data;
    argvlen[1] = sub->channel.len;

    if (redisAsyncCommandArgv(conn->ac, ngx_http_resilience_redis_message,
                              sub, 2, argv, argvlen)
        == REDIS_OK)
    {
        (void) ngx_atomic_fetch_add(&conn->client->stats->commands, 1);
    }
}


static void
ngx_http_resilience_redis_message(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_str_t                            channel, message;
    redisReply                          *reply = r;
    ngx_http_resilience_redis_sub_t     *sub = privdata;
    ngx_http_resilience_redis_client_t  *client;

    client = ngx_http_resilience_redis_client;

    if (reply == NULL || client == NULL) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    (void) ngx_atomic_fetch_add(&client->stats->replies, 1);

    if (reply->element[0]->len != 7
        || ngx_strncmp(reply->element[0]->str, "message", 7) != 0
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    (void) ngx_atomic_fetch_add(&client->stats->messages, 1);

    channel.data = (u_char *) reply->element[1]->str;
    channel.len = reply->element[1]->len;
    message.data = (u_char *) reply->element[2]->str;
    message.len = reply->element[2]->len;

    sub->handler(&channel, &message, sub->data);
}


/* state */


ngx_http_resilience_redis_state_e
ngx_http_resilience_redis_state(void)
{
    if (ngx_http_resilience_redis_client == NULL
        || ngx_http_resilience_redis_client->conf == NULL)
    {
        return NGX_HTTP_RESILIENCE_REDIS_OFF;
    }

    return ngx_http_resilience_redis_client->main.state;
}


/*
 * The modules' Redis keys: "<prefix><space>:<name>:<key>", binary-safe,
 * into buf, which the caller sizes with NGX_HTTP_RESILIENCE_REDIS_KEY_LEN
 * for its longest name and key; the length written
 */

size_t
ngx_http_resilience_redis_key(u_char *buf, const char *space,
    ngx_str_t *name, u_char *key, size_t len)
{
    u_char     *p;
    ngx_str_t  *prefix;

    prefix = ngx_http_resilience_redis_prefix();

    p = ngx_cpymem(buf, prefix->data, prefix->len);
    p = ngx_cpymem(p, space, ngx_strlen(space));
    *p++ = ':';
    p = ngx_cpymem(p, name->data, name->len);
    *p++ = ':';
    p = ngx_cpymem(p, key, len);

    return p - buf;
}


ngx_str_t *
ngx_http_resilience_redis_prefix(void)
{
    static ngx_str_t  empty = ngx_null_string;

    if (ngx_http_resilience_redis_client == NULL
        || ngx_http_resilience_redis_client->conf == NULL)
    {
        return &empty;
    }

    return &ngx_http_resilience_redis_client->conf->prefix;
}


ngx_http_resilience_redis_stats_t *
ngx_http_resilience_redis_stats(void)
{
    if (ngx_http_resilience_redis_client == NULL) {
        return &ngx_http_resilience_redis_nostats;
    }

    return ngx_http_resilience_redis_client->stats;
}


const char *
ngx_http_resilience_redis_state_name(ngx_uint_t state)
{
    if (state > NGX_HTTP_RESILIENCE_REDIS_CONNECTED) {
        return "unknown";
    }

    return ngx_http_resilience_redis_states[state];
}
