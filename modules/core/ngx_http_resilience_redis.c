
/*
 * nginx-resilience: the per-worker Redis client.
 *
 * nginx does the I/O: each connection is an ngx_connection_t of its own,
 * non-blocking, plaintext or through nginx's SSL layer (TLS), driven by
 * the event loop; hiredis is only the protocol codec (its command
 * formatter and reply reader), as Debian's hiredis 0.14 has no TLS.
 * Commands queued during one event loop iteration leave in one write
 * (pipelining); replies are matched to their callbacks in order.
 * Connect and command timeouts are nginx timers.  A second connection
 * carries SUBSCRIBE, opened on the first subscription.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include <hiredis/hiredis.h>

#include "ngx_http_resilience_redis.h"


#define NGX_HTTP_RESILIENCE_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_RESILIENCE_REDIS_BACKOFF_MAX  10000

/*
 * What a worker may hold for Redis at once: each command costs its bytes
 * on the wire (twice for EVALSHA, kept for a retry), its request and its
 * place among the callbacks waiting for a reply, from the call that sends
 * it until its reply or the connection's end, a timeout notwithstanding.
 */
#define NGX_HTTP_RESILIENCE_REDIS_MAX_QUEUED   (1024 * 1024)
#define NGX_HTTP_RESILIENCE_REDIS_CALLBACK     64

/* timeouts in a row, no reply between, that drop the connection */
#define NGX_HTTP_RESILIENCE_REDIS_TIMEOUTS     3

/*
 * After an outage, how long a connection must stay up (and answer what
 * it was sent) to count as healthy: only then does the outage end
 */
#define NGX_HTTP_RESILIENCE_REDIS_STABLE       2000

/* an output buffer larger than this is given back once written out */
#define NGX_HTTP_RESILIENCE_REDIS_OBUF_KEEP    16384


typedef struct ngx_http_resilience_redis_client_s
    ngx_http_resilience_redis_client_t;
typedef struct ngx_http_resilience_redis_conn_s
    ngx_http_resilience_redis_conn_t;

/* a reply, or NULL when the connection went before it */
typedef void (*ngx_http_resilience_redis_cb_pt)(
    ngx_http_resilience_redis_conn_t *conn, redisReply *reply, void *data);


typedef struct {
    ngx_queue_t                        queue;
    ngx_http_resilience_redis_cb_pt    handler;  /* NULL: none */
    void                              *data;
} ngx_http_resilience_redis_cb_t;


struct ngx_http_resilience_redis_conn_s {
    ngx_connection_t                  *c;        /* NULL: none */
    ngx_http_resilience_redis_client_t  *client;
    redisReader                       *reader;
    u_char                            *obuf;     /* unwritten: pos..last */
    size_t                             opos;
    size_t                             olast;
    size_t                             osize;
    ngx_queue_t                        callbacks;  /* in the replies' order */
    ngx_event_t                        connect_timer;
    ngx_event_t                        retry_timer;
    ngx_event_t                        stable_timer;
    ngx_msec_t                         backoff;
    ngx_uint_t                         state;
    ngx_uint_t                         handshake;
    ngx_uint_t                         addr;     /* the one tried now */
    ngx_uint_t                         closes;   /* a close in a callback */
    uint64_t                           appended; /* bytes queued */
    uint64_t                           written;  /* bytes written */
    ngx_atomic_t                      *state_stat;
    ngx_uint_t                         attempts; /* failed, this outage */
    u_char                            *reason_end;
    u_char                             reason[256];
    ngx_log_t                          log;      /* the connection's */
    u_char                             error[256];  /* its last, or "" */
    unsigned                           subscriber:1;
    unsigned                           was_connected:1;
    unsigned                           failing:1;  /* an outage */
    unsigned                           logged:1;   /* its line, at warn */
    unsigned                           stable:1;   /* up long enough */
    unsigned                           refused:1;
    unsigned                           denied:1;  /* credentials */
    unsigned                           denied_logged:1;
    unsigned                           tcp_connecting:1;
    unsigned                           up:1;     /* TCP (and TLS) up */
};


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
    ngx_uint_t                         refs;     /* callbacks waiting */
    size_t                             cost;
    uint64_t                           end;      /* conn->appended */
    ngx_int_t                          rc;       /* in client->failed */
    unsigned                           done:1;
    unsigned                           retried:1;
} ngx_http_resilience_redis_req_t;


static ngx_int_t ngx_http_resilience_redis_unix(ngx_conf_t *cf,
    ngx_http_resilience_redis_addr_t *a);
static void ngx_http_resilience_redis_connect(
    ngx_http_resilience_redis_conn_t *conn);
static ngx_int_t ngx_http_resilience_redis_open(
    ngx_http_resilience_redis_conn_t *conn,
    ngx_http_resilience_redis_addr_t *addr, u_char *err, size_t size);
static void ngx_http_resilience_redis_connected(
    ngx_http_resilience_redis_conn_t *conn);
#if (NGX_SSL)
static void ngx_http_resilience_redis_ssl_handshake(ngx_connection_t *c);
static ngx_int_t ngx_http_resilience_redis_check_name(ngx_connection_t *c,
    ngx_str_t *name);
#endif
static void ngx_http_resilience_redis_next(
    ngx_http_resilience_redis_conn_t *conn, const char *reason);
static void ngx_http_resilience_redis_down(
    ngx_http_resilience_redis_conn_t *conn, ngx_uint_t level);
static void ngx_http_resilience_redis_retry(
    ngx_http_resilience_redis_conn_t *conn);
static void ngx_http_resilience_redis_close(
    ngx_http_resilience_redis_conn_t *conn);
static void ngx_http_resilience_redis_stop(
    ngx_http_resilience_redis_conn_t *conn);
static void ngx_http_resilience_redis_lost(
    ngx_http_resilience_redis_conn_t *conn, const char *reason);
static void ngx_http_resilience_redis_set_state(
    ngx_http_resilience_redis_conn_t *conn, ngx_uint_t state);
static void ngx_http_resilience_redis_log_writer(ngx_log_t *log,
    ngx_uint_t level, u_char *buf, size_t len);
static void ngx_http_resilience_redis_read_handler(ngx_event_t *ev);
static void ngx_http_resilience_redis_write_handler(ngx_event_t *ev);
static void ngx_http_resilience_redis_flush(
    ngx_http_resilience_redis_conn_t *conn);
static ngx_int_t ngx_http_resilience_redis_send(
    ngx_http_resilience_redis_conn_t *conn,
    ngx_http_resilience_redis_cb_pt handler, void *data, const char *cmd,
    size_t len);
static ngx_int_t ngx_http_resilience_redis_send_argv(
    ngx_http_resilience_redis_conn_t *conn,
    ngx_http_resilience_redis_cb_pt handler, void *data, ngx_uint_t argc,
    const char **argv, const size_t *argvlen);
static void ngx_http_resilience_redis_dispatch(
    ngx_http_resilience_redis_conn_t *conn, redisReply *reply);
static void ngx_http_resilience_redis_handshake(
    ngx_http_resilience_redis_conn_t *conn, redisReply *reply, void *data);
static void ngx_http_resilience_redis_ready(
    ngx_http_resilience_redis_conn_t *conn);
static void ngx_http_resilience_redis_stable_handler(ngx_event_t *ev);
static void ngx_http_resilience_redis_healthy(
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
    ngx_http_resilience_redis_req_t *req);
static void ngx_http_resilience_redis_drop(
    ngx_http_resilience_redis_conn_t *conn);
static void ngx_http_resilience_redis_fail(
    ngx_http_resilience_redis_req_t *req);
static void ngx_http_resilience_redis_failed_handler(ngx_event_t *ev);
static void ngx_http_resilience_redis_finish(
    ngx_http_resilience_redis_req_t *req, ngx_int_t rc, redisReply *reply);
static void ngx_http_resilience_redis_release(
    ngx_http_resilience_redis_req_t *req);
static void ngx_http_resilience_redis_reply(
    ngx_http_resilience_redis_conn_t *conn, redisReply *reply, void *data);
static void ngx_http_resilience_redis_timeout(ngx_event_t *ev);
static void ngx_http_resilience_redis_send_subscribe(
    ngx_http_resilience_redis_conn_t *conn,
    ngx_http_resilience_redis_sub_t *sub);
static void ngx_http_resilience_redis_message(
    ngx_http_resilience_redis_conn_t *conn, redisReply *reply);


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

    ngx_queue_init(&client->main.callbacks);
    ngx_queue_init(&client->sub.callbacks);

    /*
     * nginx's own messages about a connection (SSL errors at "crit" on
     * every attempt, among them) become the reason in the client's one
     * line per outage
     */

    client->main.log = *cycle->log;
    client->main.log.writer = ngx_http_resilience_redis_log_writer;
    client->main.log.wdata = &client->main;
    client->main.log.next = NULL;

    client->sub.log = client->main.log;
    client->sub.log.wdata = &client->sub;

    client->stats->pid = ngx_pid;
    client->stats->pending = 0;
    client->stats->state = NGX_HTTP_RESILIENCE_REDIS_OFF;
    client->stats->sub_state = NGX_HTTP_RESILIENCE_REDIS_OFF;

    ngx_http_resilience_redis_client = client;

    if (conf == NULL) {
        return NGX_OK;
    }

    /*
     * the cached time may be old by now (a slow start, valgrind): the
     * connect timer counts from the real one
     */

    ngx_time_update();

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

    ngx_http_resilience_redis_stop(&client->main);
    ngx_http_resilience_redis_stop(&client->sub);

    if (client->failed_event.posted) {
        ngx_delete_posted_event(&client->failed_event);
    }

    ngx_http_resilience_redis_failed_handler(&client->failed_event);

    ngx_http_resilience_redis_client = NULL;
}


/* a unix: address's sockaddr */

static ngx_int_t
ngx_http_resilience_redis_unix(ngx_conf_t *cf,
    ngx_http_resilience_redis_addr_t *a)
{
#if (NGX_HAVE_UNIX_DOMAIN)
    struct sockaddr_un  *saun;

    if (a->host.len == 0 || a->host.len >= sizeof(saun->sun_path)) {
        return NGX_ERROR;
    }

    saun = ngx_pcalloc(cf->pool, sizeof(struct sockaddr_un));
    if (saun == NULL) {
        return NGX_ERROR;
    }

    saun->sun_family = AF_UNIX;
    ngx_memcpy(saun->sun_path, a->host.data, a->host.len);

    a->sockaddr = (struct sockaddr *) saun;
    a->socklen = sizeof(struct sockaddr_un);

    return NGX_OK;
#else
    return NGX_ERROR;
#endif
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

            if (ngx_http_resilience_redis_unix(cf, a) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"resilience_redis\" directive: invalid "
                                   "address \"%V\"", value);
                return NGX_CONF_ERROR;
            }

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
            a->sockaddr = u.addrs[i].sockaddr;
            a->socklen = u.addrs[i].socklen;
        }
    }

    rc->addrs = addrs.elts;
    rc->naddrs = addrs.nelts;
    rc->host = rc->addrs[0].host;
    rc->port = rc->addrs[0].port;

    return NGX_CONF_OK;
}


/*
 * resilience_redis's TLS parameters: NGX_OK, NGX_DECLINED when the name
 * is none of them, NGX_ERROR (logged)
 */

ngx_int_t
ngx_http_resilience_redis_parse_option(ngx_conf_t *cf,
    ngx_http_resilience_redis_conf_t *rc, ngx_str_t *name, ngx_str_t *value)
{
    ngx_uint_t  i, on;

    static struct {
        ngx_str_t   name;
        size_t      offset;
    } files[] = {
        { ngx_string("tls_trusted_certificate"),
          offsetof(ngx_http_resilience_redis_conf_t,
                   tls_trusted_certificate) },
        { ngx_string("tls_server_name"),
          offsetof(ngx_http_resilience_redis_conf_t, tls_server_name) },
        { ngx_string("tls_certificate"),
          offsetof(ngx_http_resilience_redis_conf_t, tls_certificate) },
        { ngx_string("tls_certificate_key"),
          offsetof(ngx_http_resilience_redis_conf_t, tls_certificate_key) },
    };

    if ((name->len == 3 && ngx_strncmp(name->data, "tls", 3) == 0)
        || (name->len == 10 && ngx_strncmp(name->data, "tls_verify", 10) == 0))
    {
        if (value->len == 2 && ngx_strncmp(value->data, "on", 2) == 0) {
            on = 1;

        } else if (value->len == 3
                   && ngx_strncmp(value->data, "off", 3) == 0)
        {
            on = 0;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"resilience_redis\" directive: invalid "
                               "value \"%V=%V\", expected \"on\" or \"off\"",
                               name, value);
            return NGX_ERROR;
        }

        if (name->len == 3) {
            rc->tls = on;

        } else {
            rc->tls_noverify = !on;
        }

        return NGX_OK;
    }

    if (value->len == 0) {
        return NGX_DECLINED;
    }

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (name->len == files[i].name.len
            && ngx_strncmp(name->data, files[i].name.data, name->len) == 0)
        {
            *(ngx_str_t *) ((u_char *) rc + files[i].offset) = *value;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* the TLS context, once every parameter is read */

char *
ngx_http_resilience_redis_init_conf(ngx_conf_t *cf,
    ngx_http_resilience_redis_conf_t *rc)
{
#if (NGX_SSL)
    u_char              *p;
    ngx_pool_cleanup_t  *cln;
#endif

    if (!rc->tls) {
        if (rc->tls_trusted_certificate.len || rc->tls_server_name.len
            || rc->tls_certificate.len || rc->tls_certificate_key.len)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"resilience_redis\" directive: tls_... "
                               "parameters need \"tls=on\"");
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

#if (NGX_SSL)

    if (!rc->tls_noverify && rc->tls_trusted_certificate.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"resilience_redis\" directive: \"tls_verify=on\" "
                           "(the default) needs \"tls_trusted_certificate=\"");
        return NGX_CONF_ERROR;
    }

    if ((rc->tls_certificate.len == 0) != (rc->tls_certificate_key.len == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"resilience_redis\" directive: "
                           "\"tls_certificate=\" and \"tls_certificate_key=\" "
                           "go together");
        return NGX_CONF_ERROR;
    }

    if (rc->tls_server_name.len == 0) {

        /* the host as written: "name", "name:port", "[v6]:port" */

        if (ngx_strlchr(rc->address.data, rc->address.data + rc->address.len,
                        ',')
            != NULL
            || rc->addrs[0].port == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"resilience_redis\" directive: \"tls=on\" "
                               "with several addresses, or a unix socket, "
                               "needs \"tls_server_name=\"");
            return NGX_CONF_ERROR;
        }

        rc->tls_server_name = rc->address;

        if (rc->address.data[0] == '[') {
            p = ngx_strlchr(rc->address.data,
                            rc->address.data + rc->address.len, ']');
            rc->tls_server_name.data++;
            rc->tls_server_name.len = p ? p - rc->tls_server_name.data : 0;

        } else {
            p = ngx_strlchr(rc->address.data,
                            rc->address.data + rc->address.len, ':');
            if (p) {
                rc->tls_server_name.len = p - rc->address.data;
            }
        }
    }

    /* null-terminated, for SNI and X509_check_ip_asc() */

    p = ngx_pnalloc(cf->pool, rc->tls_server_name.len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    *ngx_cpymem(p, rc->tls_server_name.data, rc->tls_server_name.len) = '\0';
    rc->tls_server_name.data = p;

    rc->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (rc->ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    rc->ssl->log = cf->log;

    if (ngx_ssl_create(rc->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(rc->ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = rc->ssl;

    if (rc->tls_certificate.len
        && ngx_ssl_certificate(cf, rc->ssl, &rc->tls_certificate,
                               &rc->tls_certificate_key, NULL)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (rc->tls_trusted_certificate.len
        && ngx_ssl_trusted_certificate(cf, rc->ssl,
                                       &rc->tls_trusted_certificate, 4)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"resilience_redis\" directive: \"tls=on\" needs "
                       "nginx built with OpenSSL");
    return NGX_CONF_ERROR;

#endif
}


/* connections */


static void
ngx_http_resilience_redis_connect(ngx_http_resilience_redis_conn_t *conn)
{
    u_char                               err[NGX_MAX_ERROR_STR];
    ngx_int_t                            rc;
    ngx_http_resilience_redis_addr_t    *addr;
    ngx_http_resilience_redis_conf_t    *conf;
    ngx_http_resilience_redis_client_t  *client;

    client = conn->client;
    conf = client->conf;

    if (client->exiting || conn->c != NULL) {
        return;
    }

    ngx_http_resilience_redis_set_state(conn,
                                     NGX_HTTP_RESILIENCE_REDIS_CONNECTING);

    addr = &conf->addrs[conn->addr];

    conn->handshake = 0;
    conn->appended = 0;
    conn->written = 0;
    conn->opos = 0;
    conn->olast = 0;
    conn->refused = 0;
    conn->denied = 0;

    conn->reader = redisReaderCreate();
    if (conn->reader == NULL) {
        ngx_http_resilience_redis_next(conn, "cannot create a reply reader");
        return;
    }

    conn->connect_timer.handler = ngx_http_resilience_redis_connect_timeout;
    conn->connect_timer.data = conn;
    conn->connect_timer.log = client->log;
    conn->connect_timer.cancelable = 1;

    ngx_add_timer(&conn->connect_timer, conf->connect_timeout);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, client->log, 0,
                   "resilience_redis: connecting to %V%s",
                   &addr->name, conn->subscriber ? " (subscriber)" : "");

    rc = ngx_http_resilience_redis_open(conn, addr, err, sizeof(err));

    if (rc == NGX_ERROR) {
        ngx_http_resilience_redis_next(conn, (const char *) err);
        return;
    }

    if (rc == NGX_OK) {
        ngx_http_resilience_redis_connected(conn);
    }
}


/*
 * A non-blocking socket connecting to addr, in an ngx_connection_t of
 * its own (nginx's ngx_event_connect_peer() would log every refusal at
 * "error" and more): NGX_OK, NGX_AGAIN, or NGX_ERROR with the reason
 * in err
 */

static ngx_int_t
ngx_http_resilience_redis_open(ngx_http_resilience_redis_conn_t *conn,
    ngx_http_resilience_redis_addr_t *addr, u_char *err, size_t size)
{
    int                                  rc;
    u_char                              *p;
    ngx_err_t                            e;
    ngx_socket_t                         s;
    ngx_connection_t                    *c;
    ngx_http_resilience_redis_client_t  *client;

    client = conn->client;

    s = ngx_socket(addr->sockaddr->sa_family, SOCK_STREAM, 0);

    if (s == (ngx_socket_t) -1) {
        e = ngx_socket_errno;
        goto error;
    }

    c = ngx_get_connection(s, client->log);

    if (c == NULL) {
        if (ngx_close_socket(s) == -1) {
            ngx_log_error(NGX_LOG_ALERT, client->log, ngx_socket_errno,
                          ngx_close_socket_n " failed");
        }

        (void) ngx_cpystrn(err, (u_char *) "no free connection", size);
        return NGX_ERROR;
    }

    c->type = SOCK_STREAM;

    if (ngx_nonblocking(s) == -1) {
        e = ngx_socket_errno;
        ngx_close_connection(c);
        goto error;
    }

    c->recv = ngx_recv;
    c->send = ngx_send;
    c->recv_chain = ngx_recv_chain;
    c->send_chain = ngx_send_chain;
    conn->error[0] = '\0';

    c->log = &conn->log;
    c->log_error = NGX_ERROR_INFO;
    c->data = conn;
    c->idle = 1;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    c->read->log = &conn->log;
    c->write->log = &conn->log;
    c->read->handler = ngx_http_resilience_redis_read_handler;
    c->write->handler = ngx_http_resilience_redis_write_handler;

    if (ngx_add_conn && ngx_add_conn(c) == NGX_ERROR) {
        ngx_close_connection(c);
        (void) ngx_cpystrn(err, (u_char *) "cannot add the connection", size);
        return NGX_ERROR;
    }

    rc = connect(s, addr->sockaddr, addr->socklen);

    if (rc == -1) {
        e = ngx_socket_errno;

        if (e != NGX_EINPROGRESS) {
            ngx_close_connection(c);
            goto error;
        }

        conn->c = c;
        conn->tcp_connecting = 1;

        if (!ngx_add_conn
            && (ngx_handle_read_event(c->read, 0) != NGX_OK
                || ngx_handle_write_event(c->write, 0) != NGX_OK))
        {
            (void) ngx_cpystrn(err, (u_char *) "cannot add events", size);
            return NGX_ERROR;
        }

        return NGX_AGAIN;
    }

    conn->c = c;
    c->write->ready = 1;

    if (!ngx_add_conn && ngx_handle_read_event(c->read, 0) != NGX_OK) {
        (void) ngx_cpystrn(err, (u_char *) "cannot add events", size);
        return NGX_ERROR;
    }

    return NGX_OK;

error:

    p = ngx_strerror(e, err, size - 1);
    *p = '\0';

    return NGX_ERROR;
}


/* TCP is up: TLS first when configured, then AUTH, SELECT and PING */

static void
ngx_http_resilience_redis_connected(ngx_http_resilience_redis_conn_t *conn)
{
    int                                  argc;
    size_t                               argvlen[3];
    u_char                              *p, db[NGX_INT_T_LEN];
    const char                          *argv[3];
    ngx_connection_t                    *c;
    ngx_http_resilience_redis_conf_t    *conf;
#if (NGX_SSL)
    ngx_int_t                            rc;
#endif

    c = conn->c;
    conf = conn->client->conf;

    conn->tcp_connecting = 0;

#if (NGX_SSL)

    if (conf->tls && c->ssl == NULL) {
        c->pool = ngx_create_pool(1024, conn->client->log);
        if (c->pool == NULL) {
            ngx_http_resilience_redis_next(conn, "out of memory");
            return;
        }

        if (ngx_ssl_create_connection(conf->ssl, c,
                                      NGX_SSL_BUFFER|NGX_SSL_CLIENT)
            != NGX_OK)
        {
            ngx_http_resilience_redis_next(conn,
                                           "cannot create a TLS connection");
            return;
        }

        /* SNI with a host name, never an address (RFC 6066) */

        if (ngx_inet_addr(conf->tls_server_name.data,
                          conf->tls_server_name.len) == INADDR_NONE
#if (NGX_HAVE_INET6)
            && ngx_strlchr(conf->tls_server_name.data,
                           conf->tls_server_name.data
                           + conf->tls_server_name.len, ':') == NULL
#endif
            && SSL_set_tlsext_host_name(c->ssl->connection,
                                        (char *) conf->tls_server_name.data)
               == 0)
        {
            ngx_http_resilience_redis_next(conn, "cannot set SNI");
            return;
        }

        conn->error[0] = '\0';

        rc = ngx_ssl_handshake(c);

        if (rc == NGX_AGAIN) {
            c->ssl->handler = ngx_http_resilience_redis_ssl_handshake;
            return;
        }

        ngx_http_resilience_redis_ssl_handshake(c);
        return;
    }

#endif

    conn->up = 1;

    /*
     * AUTH and SELECT as configured, then PING: the connection is ready,
     * and the backoff starts again from its least, only once Redis has
     * answered all of them (a server that accepts and closes, or answers
     * "-ERR max number of clients reached", never gets that far)
     */

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

        if (ngx_http_resilience_redis_send_argv(conn,
                                        ngx_http_resilience_redis_handshake,
                                        NULL, argc, argv, argvlen)
            == NGX_OK)
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

        if (ngx_http_resilience_redis_send_argv(conn,
                                        ngx_http_resilience_redis_handshake,
                                        NULL, 2, argv, argvlen)
            == NGX_OK)
        {
            conn->handshake++;
        }
    }

    argv[0] = "PING";
    argvlen[0] = 4;

    if (ngx_http_resilience_redis_send_argv(conn,
                                        ngx_http_resilience_redis_handshake,
                                        NULL, 1, argv, argvlen)
        != NGX_OK)
    {
        ngx_http_resilience_redis_next(conn, "out of memory");
        return;
    }

    conn->handshake++;
}


#if (NGX_SSL)

static void
ngx_http_resilience_redis_ssl_handshake(ngx_connection_t *c)
{
    long                                 rc;
    u_char                               err[NGX_MAX_ERROR_STR], *p;
    ngx_http_resilience_redis_conf_t    *conf;
    ngx_http_resilience_redis_conn_t    *conn;

    conn = c->data;
    conf = conn->client->conf;

    if (!c->ssl->handshaked) {
        ngx_http_resilience_redis_next(conn, conn->error[0]
                                             ? (const char *) conn->error
                                             : "TLS handshake failed");
        return;
    }

    if (!conf->tls_noverify) {
        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            p = ngx_snprintf(err, sizeof(err) - 1,
                             "TLS certificate verify error: (%l:%s)",
                             rc, X509_verify_cert_error_string(rc));
            *p = '\0';
            ngx_http_resilience_redis_next(conn, (const char *) err);
            return;
        }

        if (ngx_http_resilience_redis_check_name(c, &conf->tls_server_name)
            != NGX_OK)
        {
            p = ngx_snprintf(err, sizeof(err) - 1,
                             "TLS certificate does not match \"%V\"",
                             &conf->tls_server_name);
            *p = '\0';
            ngx_http_resilience_redis_next(conn, (const char *) err);
            return;
        }
    }

    c->read->handler = ngx_http_resilience_redis_read_handler;
    c->write->handler = ngx_http_resilience_redis_write_handler;

    ngx_http_resilience_redis_connected(conn);
}


/* nginx's check for a host name, and OpenSSL's for an IP address */

static ngx_int_t
ngx_http_resilience_redis_check_name(ngx_connection_t *c, ngx_str_t *name)
{
    int    rc;
    X509  *cert;

    if (ngx_inet_addr(name->data, name->len) == INADDR_NONE
        && ngx_strlchr(name->data, name->data + name->len, ':') == NULL)
    {
        return ngx_ssl_check_host(c, name);
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);
    if (cert == NULL) {
        return NGX_ERROR;
    }

    /* name is null-terminated (ngx_http_resilience_redis_init_conf) */
    rc = X509_check_ip_asc(cert, (const char *) name->data, 0);

    X509_free(cert);

    return (rc == 1) ? NGX_OK : NGX_ERROR;
}

#endif


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

    ngx_http_resilience_redis_close(conn);

    conn->refused = 0;
    conn->denied = 0;
    conn->attempts++;

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
 * outage; then a retry with backoff.  A connection lost while still on
 * trial after an outage is one more failed attempt of that outage.  The
 * subscriber's outage is logged at info while it may be the command
 * connection's (which is logged): at its beginning (the two connections
 * notice a Redis gone in either order), and while that one is failing.
 */

static void
ngx_http_resilience_redis_down(ngx_http_resilience_redis_conn_t *conn,
    ngx_uint_t level)
{
    ngx_uint_t                           begins;
    ngx_http_resilience_redis_client_t  *client;

    client = conn->client;

    if (conn->failing && conn->state == NGX_HTTP_RESILIENCE_REDIS_CONNECTED) {
        conn->attempts++;
    }

    ngx_http_resilience_redis_close(conn);

    begins = !conn->failing;
    conn->failing = 1;

    if (client->exiting
        || (!begins
            && (level == NGX_LOG_ERR ? conn->denied_logged : conn->logged))
        || (!begins && conn->subscriber && client->main.failing))
    {
        ngx_log_error(NGX_LOG_INFO, client->log, 0,
                      "resilience_redis: %*s",
                      (size_t) (conn->reason_end - conn->reason),
                      conn->reason);

    } else {
        if (conn->subscriber && begins) {
            level = NGX_LOG_INFO;

        } else {
            conn->logged = 1;
            conn->denied_logged = (level == NGX_LOG_ERR);
        }

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


/* the connection's end: every callback waiting gets no reply, in order */

static void
ngx_http_resilience_redis_close(ngx_http_resilience_redis_conn_t *conn)
{
    void                               *data;
    ngx_pool_t                         *pool;
    ngx_queue_t                        *q;
    ngx_connection_t                   *c;
    ngx_http_resilience_redis_cb_t     *cb;
    ngx_http_resilience_redis_cb_pt     handler;

    if (conn->connect_timer.timer_set) {
        ngx_del_timer(&conn->connect_timer);
    }

    if (conn->stable_timer.timer_set) {
        ngx_del_timer(&conn->stable_timer);
    }

    c = conn->c;

    conn->c = NULL;
    conn->up = 0;
    conn->tcp_connecting = 0;
    conn->closes++;

    if (c != NULL) {
#if (NGX_SSL)
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }
#endif

        pool = c->pool;

        ngx_close_connection(c);

        if (pool) {
            ngx_destroy_pool(pool);
        }
    }

    if (conn->reader != NULL) {
        redisReaderFree(conn->reader);
        conn->reader = NULL;
    }

    while (!ngx_queue_empty(&conn->callbacks)) {
        q = ngx_queue_head(&conn->callbacks);
        ngx_queue_remove(q);

        cb = ngx_queue_data(q, ngx_http_resilience_redis_cb_t, queue);
        handler = cb->handler;
        data = cb->data;

        ngx_free(cb);

        if (handler) {
            handler(conn, NULL, data);
        }
    }

    conn->opos = 0;
    conn->olast = 0;

    if (conn->osize > NGX_HTTP_RESILIENCE_REDIS_OBUF_KEEP) {
        ngx_free(conn->obuf);
        conn->obuf = NULL;
        conn->osize = 0;
    }
}


/* on exit: no connection, no timers */

static void
ngx_http_resilience_redis_stop(ngx_http_resilience_redis_conn_t *conn)
{
    if (conn->retry_timer.timer_set) {
        ngx_del_timer(&conn->retry_timer);
    }

    ngx_http_resilience_redis_close(conn);

    if (conn->obuf) {
        ngx_free(conn->obuf);
        conn->obuf = NULL;
        conn->osize = 0;
    }

    if (conn->state != NGX_HTTP_RESILIENCE_REDIS_OFF) {
        ngx_http_resilience_redis_set_state(conn,
                                      NGX_HTTP_RESILIENCE_REDIS_DISCONNECTED);
    }
}


/*
 * The connection failed: before it was ready, an attempt that failed
 * (reason NULL: the server refused the handshake, conn->reason says
 * how); after, an outage.
 */

static void
ngx_http_resilience_redis_lost(ngx_http_resilience_redis_conn_t *conn,
    const char *reason)
{
    if (conn->refused) {
        ngx_http_resilience_redis_next(conn, NULL);
        return;
    }

    if (conn->state != NGX_HTTP_RESILIENCE_REDIS_CONNECTED) {
        ngx_http_resilience_redis_next(conn, reason);
        return;
    }

    conn->reason_end = ngx_snprintf(conn->reason, sizeof(conn->reason),
                                    "connection to %V lost: %s",
                                    &conn->client->conf->addrs[conn->addr].name,
                                    reason);

    ngx_http_resilience_redis_down(conn, NGX_LOG_WARN);
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


/*
 * The connection's log: what nginx says of it is kept (without its time
 * and pid) for the client's own line; alerts and worse still go out
 */

static void
ngx_http_resilience_redis_log_writer(ngx_log_t *log, ngx_uint_t level,
    u_char *buf, size_t len)
{
    u_char                            *p, *last;
    ngx_http_resilience_redis_conn_t  *conn;

    conn = log->wdata;

    if (level <= NGX_LOG_ALERT) {
        ngx_log_error(level, conn->client->log, 0, "%*s", len, buf);
    }

    if (level > NGX_LOG_INFO) {
        return;
    }

    /* "2026/12/02 18:38:17 [crit] 10904#10904: <message>" */

    last = buf + len;

    p = ngx_strlchr(buf, last, ']');
    p = p ? ngx_strlchr(p, last, ':') : NULL;

    if (p == NULL || p + 2 > last) {
        p = buf;

    } else {
        p += 2;
    }

    while (last > p && (last[-1] == '\n' || last[-1] == '\r')) {
        last--;
    }

    len = ngx_min((size_t) (last - p), sizeof(conn->error) - 1);
    *ngx_cpymem(conn->error, p, len) = '\0';
}


/* the event handlers */


static void
ngx_http_resilience_redis_read_handler(ngx_event_t *ev)
{
    u_char                             buf[16384];
    ssize_t                            n;
    ngx_uint_t                         closes;
    redisReply                        *reply;
    ngx_connection_t                  *c;
    ngx_http_resilience_redis_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (c->close) {
        /* the worker is shutting down: stop, and let it exit */
        conn->client->exiting = 1;
        ngx_http_resilience_redis_stop(conn);
        return;
    }

    if (conn->tcp_connecting) {
        /* a failed connect may be reported to the read side first */
        ngx_http_resilience_redis_write_handler(c->write);
        return;
    }

    if (!conn->up) {
        return;
    }

    closes = conn->closes;

    do {
        conn->error[0] = '\0';

        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_http_resilience_redis_lost(conn, "closed by the server");
            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_resilience_redis_lost(conn, conn->error[0]
                                           ? (const char *) conn->error
                                           : "read failed");
            return;
        }

        if (redisReaderFeed(conn->reader, (const char *) buf, n)
            != REDIS_OK)
        {
            ngx_http_resilience_redis_lost(conn, "out of memory");
            return;
        }

        for ( ;; ) {
            if (redisReaderGetReply(conn->reader, (void **) &reply)
                != REDIS_OK)
            {
                ngx_http_resilience_redis_lost(conn, "protocol error");
                return;
            }

            if (reply == NULL) {
                break;
            }

            ngx_http_resilience_redis_dispatch(conn, reply);

            freeReplyObject(reply);

            if (conn->closes != closes) {
                /* a callback closed it */
                return;
            }
        }

    } while (c->read->ready);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_resilience_redis_lost(conn, "cannot add events");
    }
}


static void
ngx_http_resilience_redis_write_handler(ngx_event_t *ev)
{
    int                                err;
    u_char                             buf[NGX_MAX_ERROR_STR], *p;
    socklen_t                          len;
    ngx_connection_t                  *c;
    ngx_http_resilience_redis_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (conn->tcp_connecting) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            p = ngx_strerror(err, buf, sizeof(buf) - 1);
            *p = '\0';
            ngx_http_resilience_redis_next(conn, (const char *) buf);
            return;
        }

        if (!ev->ready) {
            return;
        }

        ngx_http_resilience_redis_connected(conn);
        return;
    }

    if (conn->up) {
        ngx_http_resilience_redis_flush(conn);
    }
}


static void
ngx_http_resilience_redis_flush(ngx_http_resilience_redis_conn_t *conn)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = conn->c;

    while (conn->opos < conn->olast) {
        conn->error[0] = '\0';

        n = c->send(c, conn->obuf + conn->opos, conn->olast - conn->opos);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            ngx_http_resilience_redis_lost(conn, conn->error[0]
                                           ? (const char *) conn->error
                                           : "write failed");
            return;
        }

        conn->opos += n;
        conn->written += n;
    }

    if (conn->opos == conn->olast) {
        conn->opos = 0;
        conn->olast = 0;

        if (conn->osize > NGX_HTTP_RESILIENCE_REDIS_OBUF_KEEP) {
            ngx_free(conn->obuf);
            conn->obuf = NULL;
            conn->osize = 0;
        }
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        ngx_http_resilience_redis_lost(conn, "cannot add events");
    }
}


/*
 * A formatted command into the output buffer, its callback after those
 * waiting; the buffer leaves with the event loop's posted events, so
 * that the commands of one iteration go out in one write
 */

static ngx_int_t
ngx_http_resilience_redis_send(ngx_http_resilience_redis_conn_t *conn,
    ngx_http_resilience_redis_cb_pt handler, void *data, const char *cmd,
    size_t len)
{
    u_char                          *buf;
    size_t                           size;
    ngx_http_resilience_redis_cb_t  *cb;

    if (conn->c == NULL) {
        return NGX_ERROR;
    }

    cb = ngx_alloc(sizeof(ngx_http_resilience_redis_cb_t),
                   conn->client->log);
    if (cb == NULL) {
        return NGX_ERROR;
    }

    if (conn->olast + len > conn->osize) {
        size = ngx_max(2 * conn->osize, conn->olast - conn->opos + len);
        size = ngx_max(size, 4096);

        buf = ngx_alloc(size, conn->client->log);
        if (buf == NULL) {
            ngx_free(cb);
            return NGX_ERROR;
        }

        if (conn->obuf) {
            ngx_memcpy(buf, conn->obuf + conn->opos,
                       conn->olast - conn->opos);
            ngx_free(conn->obuf);
        }

        conn->olast -= conn->opos;
        conn->opos = 0;
        conn->obuf = buf;
        conn->osize = size;
    }

    ngx_memcpy(conn->obuf + conn->olast, cmd, len);
    conn->olast += len;
    conn->appended += len;

    cb->handler = handler;
    cb->data = data;
    ngx_queue_insert_tail(&conn->callbacks, &cb->queue);

    if (conn->up && !conn->c->write->posted) {
        ngx_post_event(conn->c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_resilience_redis_send_argv(ngx_http_resilience_redis_conn_t *conn,
    ngx_http_resilience_redis_cb_pt handler, void *data, ngx_uint_t argc,
    const char **argv, const size_t *argvlen)
{
    int         len;
    char       *cmd;
    ngx_int_t   rc;

    len = redisFormatCommandArgv(&cmd, (int) argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    rc = ngx_http_resilience_redis_send(conn, handler, data, cmd, len);

    redisFreeCommand(cmd);

    return rc;
}


/* a reply to the callback first in line; a pub/sub message to its sub */

static void
ngx_http_resilience_redis_dispatch(ngx_http_resilience_redis_conn_t *conn,
    redisReply *reply)
{
    void                            *data;
    ngx_uint_t                       closes;
    ngx_queue_t                     *q;
    ngx_http_resilience_redis_cb_t  *cb;
    ngx_http_resilience_redis_cb_pt  handler;

    if (conn->subscriber
        && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 3
        && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[0]->len == 7
        && ngx_strncmp(reply->element[0]->str, "message", 7) == 0)
    {
        ngx_http_resilience_redis_message(conn, reply);
        return;
    }

    if (ngx_queue_empty(&conn->callbacks)) {
        ngx_http_resilience_redis_lost(conn, "a reply to no command");
        return;
    }

    q = ngx_queue_head(&conn->callbacks);
    ngx_queue_remove(q);

    cb = ngx_queue_data(q, ngx_http_resilience_redis_cb_t, queue);
    handler = cb->handler;
    data = cb->data;

    ngx_free(cb);

    if (conn->subscriber && conn->state == NGX_HTTP_RESILIENCE_REDIS_CONNECTED)
    {
        /* a SUBSCRIBE's confirmation */
        (void) ngx_atomic_fetch_add(&conn->client->stats->replies, 1);
    }

    closes = conn->closes;

    if (handler) {
        handler(conn, reply, data);
    }

    /* on trial, up long enough: a reply, no timeouts in a row since */

    if (conn->stable
        && conn->failing
        && conn->closes == closes
        && conn->state == NGX_HTTP_RESILIENCE_REDIS_CONNECTED
        && (conn->subscriber || conn->client->timeouts == 0))
    {
        ngx_http_resilience_redis_healthy(conn);
    }
}


static void
ngx_http_resilience_redis_handshake(ngx_http_resilience_redis_conn_t *conn,
    redisReply *reply, void *data)
{
    if (reply == NULL || conn->refused) {
        /* the connection is going away */
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

        ngx_http_resilience_redis_lost(conn, NULL);
        return;
    }

    if (--conn->handshake == 0) {
        ngx_http_resilience_redis_ready(conn);
    }
}


/*
 * The handshake is done.  The first connection is healthy at once; after
 * an outage, a connection is on trial: the outage ends (its line, the
 * backoff back to its least) only once it has stayed up for
 * NGX_HTTP_RESILIENCE_REDIS_STABLE ms and answered what it was sent.  A
 * Redis that answers the handshake's PING but no write (CLIENT PAUSE
 * WRITE, as FAILOVER does) would otherwise be reconnected to in a loop.
 */

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

    conn->was_connected = 1;
    conn->stable = 0;

    ngx_http_resilience_redis_set_state(conn,
                                     NGX_HTTP_RESILIENCE_REDIS_CONNECTED);

    (void) ngx_atomic_fetch_add(&client->stats->connects, 1);

    if (!conn->subscriber) {
        /* the timeouts in a row were the previous connection's */
        client->timeouts = 0;
    }

    if (conn->failing) {
        ngx_log_error(NGX_LOG_INFO, client->log, 0,
                      "resilience_redis: connected to %V%s after %ui "
                      "failed attempts, on trial for %M ms",
                      &client->conf->addrs[conn->addr].name,
                      conn->subscriber ? " (subscriber)" : "",
                      conn->attempts,
                      (ngx_msec_t) NGX_HTTP_RESILIENCE_REDIS_STABLE);

        conn->stable_timer.handler = ngx_http_resilience_redis_stable_handler;
        conn->stable_timer.data = conn;
        conn->stable_timer.log = client->log;
        conn->stable_timer.cancelable = 1;

        ngx_add_timer(&conn->stable_timer, NGX_HTTP_RESILIENCE_REDIS_STABLE);

    } else {
        ngx_log_error(NGX_LOG_INFO, client->log, 0,
                      "resilience_redis: connected to %V%s",
                      &client->conf->addrs[conn->addr].name,
                      conn->subscriber ? " (subscriber)" : "");

        ngx_http_resilience_redis_healthy(conn);
    }

    if (!conn->subscriber) {
        return;
    }

    subs = client->subs.elts;

    for (i = 0; i < client->subs.nelts; i++) {
        ngx_http_resilience_redis_send_subscribe(conn, subs[i]);
    }
}


/*
 * On trial, up long enough: healthy now when it owes no reply, else at
 * its next reply (ngx_http_resilience_redis_dispatch())
 */

static void
ngx_http_resilience_redis_stable_handler(ngx_event_t *ev)
{
    ngx_http_resilience_redis_conn_t  *conn;

    conn = ev->data;

    conn->stable = 1;

    if (conn->state == NGX_HTTP_RESILIENCE_REDIS_CONNECTED
        && ngx_queue_empty(&conn->callbacks)
        && (conn->subscriber || conn->client->timeouts == 0))
    {
        ngx_http_resilience_redis_healthy(conn);
    }
}


/* the outage, if any, is over: its line, the backoff from its least */

static void
ngx_http_resilience_redis_healthy(ngx_http_resilience_redis_conn_t *conn)
{
    ngx_http_resilience_redis_client_t  *client;

    client = conn->client;

    if (conn->stable_timer.timer_set) {
        ngx_del_timer(&conn->stable_timer);
    }

    if (conn->failing) {
        ngx_log_error((conn->logged ? NGX_LOG_WARN : NGX_LOG_INFO),
                      client->log, 0,
                      "resilience_redis: %V%s available again after %ui "
                      "failed attempts, connected to %V",
                      &client->conf->address,
                      conn->subscriber ? " (subscriber)" : "",
                      conn->attempts,
                      &client->conf->addrs[conn->addr].name);
    }

    conn->backoff = 0;
    conn->failing = 0;
    conn->logged = 0;
    conn->denied_logged = 0;
    conn->attempts = 0;
}


static void
ngx_http_resilience_redis_connect_timeout(ngx_event_t *ev)
{
    ngx_http_resilience_redis_next(ev->data, "timed out");
}


/* commands */


ngx_int_t
ngx_http_resilience_redis_command(ngx_uint_t argc, const char **argv,
    const size_t *argvlen, ngx_http_resilience_redis_handler_pt handler,
    void *data)
{
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

    if (ngx_http_resilience_redis_send_argv(&client->main,
                                            ngx_http_resilience_redis_reply,
                                            req, argc, argv, argvlen)
        != NGX_OK)
    {
        ngx_http_resilience_redis_fail(req);
        return NGX_OK;
    }

    ngx_http_resilience_redis_sent(req);
    (void) ngx_atomic_fetch_add(&client->stats->commands, 1);

    return NGX_OK;
}


ngx_int_t
ngx_http_resilience_redis_batch(ngx_http_resilience_redis_cmd_t *cmds,
    ngx_uint_t n, ngx_http_resilience_redis_handler_pt handler, void *data)
{
    size_t                               cost, len[1];
    ngx_uint_t                           i;
    const char                          *arg[1];
    ngx_http_resilience_redis_req_t     *req;
    ngx_http_resilience_redis_conn_t    *conn;
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

    conn = &client->main;

    /* the QUEUED replies need no callback: EXEC carries them all */

    arg[0] = "MULTI";
    len[0] = 5;

    if (ngx_http_resilience_redis_send_argv(conn, NULL, NULL, 1, arg, len)
        != NGX_OK)
    {
        ngx_http_resilience_redis_fail(req);
        return NGX_OK;
    }

    for (i = 0; i < n; i++) {
        if (ngx_http_resilience_redis_send_argv(conn, NULL, NULL,
                                                cmds[i].argc, cmds[i].argv,
                                                cmds[i].argvlen)
            != NGX_OK)
        {
            arg[0] = "DISCARD";
            len[0] = 7;
            (void) ngx_http_resilience_redis_send_argv(conn, NULL, NULL, 1,
                                                       arg, len);
            ngx_http_resilience_redis_fail(req);
            return NGX_OK;
        }
    }

    arg[0] = "EXEC";
    len[0] = 4;

    if (ngx_http_resilience_redis_send_argv(conn,
                                            ngx_http_resilience_redis_reply,
                                            req, 1, arg, len)
        != NGX_OK)
    {
        arg[0] = "DISCARD";
        len[0] = 7;
        (void) ngx_http_resilience_redis_send_argv(conn, NULL, NULL, 1,
                                                   arg, len);
        ngx_http_resilience_redis_fail(req);
        return NGX_OK;
    }

    ngx_http_resilience_redis_sent(req);
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
    size_t                              *lens;
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

    if (ngx_http_resilience_redis_send(&client->main,
                                       ngx_http_resilience_redis_reply, req,
                                       cmd, len)
        != NGX_OK)
    {
        ngx_http_resilience_redis_fail(req);
        return NGX_OK;
    }

    ngx_http_resilience_redis_sent(req);
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
        || client->main.c == NULL
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


/* sent: where its command ends in what the connection was given */

static void
ngx_http_resilience_redis_sent(ngx_http_resilience_redis_req_t *req)
{
    req->end = req->client->main.appended;
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
ngx_http_resilience_redis_reply(ngx_http_resilience_redis_conn_t *conn,
    redisReply *reply, void *data)
{
    size_t                               len[3];
    ngx_int_t                            rc;
    const char                          *arg[3];
    ngx_http_resilience_redis_req_t     *req = data;
    ngx_http_resilience_redis_client_t  *client;

    client = req->client;

    req->refs--;

    if (reply == NULL) {
        if (!req->done) {
            (void) ngx_atomic_fetch_add(&client->stats->errors, 1);
        }

        /* written out whole, Redis may have run it: outcome unknown */

        rc = (req->end <= conn->written)
             ? NGX_HTTP_RESILIENCE_REDIS_LOST
             : NGX_HTTP_RESILIENCE_REDIS_FAILED;

        ngx_http_resilience_redis_finish(req, rc, NULL);
        ngx_http_resilience_redis_release(req);
        return;
    }

    if (client->timeouts) {
        /* a stall that ended without a drop: its one line */

        ngx_log_error((conn->failing ? NGX_LOG_INFO : NGX_LOG_WARN),
                      client->log, 0,
                      "resilience_redis: %ui command%s to %V timed out "
                      "after %M ms, then it answered again",
                      client->timeouts, client->timeouts == 1 ? "" : "s",
                      &client->conf->address,
                      client->conf->command_timeout);

        client->timeouts = 0;
    }

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

        arg[0] = "SCRIPT";
        len[0] = 6;
        arg[1] = "LOAD";
        len[1] = 4;
        arg[2] = (const char *) req->script->body.data;
        len[2] = req->script->body.len;

        if (ngx_http_resilience_redis_send_argv(conn, NULL, NULL, 3, arg, len)
            == NGX_OK
            && ngx_http_resilience_redis_send(conn,
                                              ngx_http_resilience_redis_reply,
                                              req, req->cmd, req->len)
            == NGX_OK)
        {
            ngx_http_resilience_redis_sent(req);
            (void) ngx_atomic_fetch_add(&client->stats->commands, 2);
            return;
        }
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

    /*
     * one line for a stall, not one per command caught in it: the drop's
     * (the outage's), or, when Redis answers first, the reply's
     */

    client->timeouts++;

    ngx_log_error(NGX_LOG_INFO, client->log, 0,
                  "resilience_redis: command to %V timed out after %M ms",
                  &client->conf->address, client->conf->command_timeout);

    /* the reply, if it ever comes, only releases the request */
    ngx_http_resilience_redis_finish(req, NGX_HTTP_RESILIENCE_REDIS_TIMEDOUT,
                                     NULL);

    if (client->timeouts < NGX_HTTP_RESILIENCE_REDIS_TIMEOUTS
        || client->main.c == NULL)
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
 * Closes a connection that stopped answering: every command it holds
 * fails (LOST, or FAILED when still unwritten), then a retry with
 * backoff.
 */

static void
ngx_http_resilience_redis_drop(ngx_http_resilience_redis_conn_t *conn)
{
    ngx_http_resilience_redis_down(conn, NGX_LOG_WARN);
}


/* pub/sub */


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

    /* the confirmation takes the callback; messages go to the sub */

    if (ngx_http_resilience_redis_send_argv(conn, NULL, NULL, 2, argv,
                                            argvlen)
        == NGX_OK)
    {
        (void) ngx_atomic_fetch_add(&conn->client->stats->commands, 1);
    }
}


static void
ngx_http_resilience_redis_message(ngx_http_resilience_redis_conn_t *conn,
    redisReply *reply)
{
    ngx_str_t                            channel, message;
    ngx_uint_t                           i;
    ngx_http_resilience_redis_sub_t    **subs;
    ngx_http_resilience_redis_client_t  *client;

    client = conn->client;

    (void) ngx_atomic_fetch_add(&client->stats->replies, 1);

    if (reply->element[1]->type != REDIS_REPLY_STRING
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    (void) ngx_atomic_fetch_add(&client->stats->messages, 1);

    channel.data = (u_char *) reply->element[1]->str;
    channel.len = reply->element[1]->len;
    message.data = (u_char *) reply->element[2]->str;
    message.len = reply->element[2]->len;

    subs = client->subs.elts;

    for (i = 0; i < client->subs.nelts; i++) {
        if (subs[i]->channel.len == channel.len
            && ngx_strncmp(subs[i]->channel.data, channel.data, channel.len)
               == 0)
        {
            subs[i]->handler(&channel, &message, subs[i]->data);
        }
    }
}


/* state */


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
