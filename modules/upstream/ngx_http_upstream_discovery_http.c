
/*
 * nginx-resilience: one exchange over a non-blocking nginx connection,
 * for the probes and the Consul source: connect, send a request (or only
 * connect: TCP checks), over TLS when asked (HTTPS checks: SNI, and the
 * certificate verified when a trusted CA was given), read the answer until
 * the peer closes (HTTP/1.0) or the buffer limit, all within one timer.
 * The caller's callback gets the result exactly once, with the connection
 * closed and the timer gone; the exchange lives in the caller's pool,
 * which the callback may destroy.
 *
 * A worker that exits does not wait for an exchange: the timer is
 * cancelable and the connection idle, so nginx closes it (c->close) and
 * the callback gets NGX_ABORT.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upstream_discovery.h"


struct ngx_http_ud_http_s {
    ngx_peer_connection_t      pc;
    ngx_buf_t                 *out;          /* NULL: connect only */
    ngx_buf_t                 *in;
    size_t                     max;
    ngx_event_t                timer;
    ngx_pool_t                *pool;
    ngx_http_ud_tls_t         *tls;
    ngx_http_ud_http_done_pt   done;
    void                      *data;
    unsigned                   sent:1;
};


static void ngx_http_ud_http_write(ngx_event_t *ev);
static void ngx_http_ud_http_read(ngx_event_t *ev);
static void ngx_http_ud_http_timeout(ngx_event_t *ev);
#if (NGX_HTTP_SSL)
static void ngx_http_ud_http_handshaked(ngx_connection_t *c);
#endif
static void ngx_http_ud_http_finish(ngx_http_ud_http_t *h, ngx_int_t rc,
    const char *err);


/*
 * NGX_OK: "done" will be called (maybe before this returns); NGX_ERROR:
 * it will not, nothing was started
 */

ngx_int_t
ngx_http_ud_http_start(ngx_pool_t *pool, ngx_addr_t *peer,
    ngx_http_ud_tls_t *tls, ngx_buf_t *out, size_t size, size_t max,
    ngx_msec_t timeout, ngx_log_t *log, ngx_http_ud_http_done_pt done,
    void *data)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_ud_http_t  *h;

    h = ngx_pcalloc(pool, sizeof(ngx_http_ud_http_t));
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->pool = pool;
    h->tls = tls;
    h->out = out;
    h->max = max;
    h->done = done;
    h->data = data;

    if (out) {
        h->in = ngx_create_temp_buf(pool, size);
        if (h->in == NULL) {
            return NGX_ERROR;
        }
    }

    h->pc.sockaddr = peer->sockaddr;
    h->pc.socklen = peer->socklen;
    h->pc.name = &peer->name;
    h->pc.get = ngx_event_get_peer;
    h->pc.log = log;
    h->pc.log_error = NGX_ERROR_INFO;

    rc = ngx_event_connect_peer(&h->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (h->pc.connection) {
            ngx_close_connection(h->pc.connection);
        }

        return NGX_ERROR;
    }

    h->timer.handler = ngx_http_ud_http_timeout;
    h->timer.data = h;
    h->timer.log = log;
    h->timer.cancelable = 1;

    ngx_add_timer(&h->timer, timeout);

    c = h->pc.connection;
    c->data = h;
    c->pool = pool;
    c->idle = 1;
    c->read->handler = ngx_http_ud_http_read;
    c->write->handler = ngx_http_ud_http_write;

    if (rc == NGX_OK) {
        ngx_http_ud_http_write(c->write);
    }

    return NGX_OK;
}


static void
ngx_http_ud_http_write(ngx_event_t *ev)
{
    int                  err;
    ssize_t              n;
    socklen_t            len;
    ngx_connection_t    *c;
    ngx_http_ud_http_t  *h;

    c = ev->data;
    h = c->data;

    if (c->close) {
        ngx_http_ud_http_finish(h, NGX_ABORT, "the worker is exiting");
        return;
    }

    if (h->sent) {
        return;
    }

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1
        || err)
    {
        ngx_http_ud_http_finish(h, NGX_ERROR, "connection refused or failed");
        return;
    }

#if (NGX_HTTP_SSL)

    if (h->tls && c->ssl == NULL) {
        if (ngx_ssl_create_connection(h->tls->ssl, c,
                                      NGX_SSL_BUFFER|NGX_SSL_CLIENT)
            != NGX_OK)
        {
            ngx_http_ud_http_finish(h, NGX_ERROR, "TLS setup failed");
            return;
        }

        if (h->tls->name.len
            && SSL_set_tlsext_host_name(c->ssl->connection,
                                        (char *) h->tls->name.data)
               == 0)
        {
            ngx_http_ud_http_finish(h, NGX_ERROR, "TLS setup failed");
            return;
        }

        if (ngx_ssl_handshake(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_http_ud_http_handshaked;
            return;
        }

        ngx_http_ud_http_handshaked(c);
        return;
    }

#endif

    if (h->out == NULL) {
        ngx_http_ud_http_finish(h, NGX_DONE, "connected");
        return;
    }

    while (h->out->pos < h->out->last) {
        n = c->send(c, h->out->pos, h->out->last - h->out->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_ud_http_finish(h, NGX_ERROR, "event error");
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_ud_http_finish(h, NGX_ERROR, "send() failed");
            return;
        }

        h->out->pos += n;
    }

    h->sent = 1;

    ngx_http_ud_http_read(c->read);
}


#if (NGX_HTTP_SSL)

static void
ngx_http_ud_http_handshaked(ngx_connection_t *c)
{
    ngx_http_ud_http_t  *h;

    h = c->data;

    if (c->close) {
        ngx_http_ud_http_finish(h, NGX_ABORT, "the worker is exiting");
        return;
    }

    if (!c->ssl->handshaked) {
        ngx_http_ud_http_finish(h, NGX_ERROR, "TLS handshake failed");
        return;
    }

    if (h->tls->verify) {
        if (SSL_get_verify_result(c->ssl->connection) != X509_V_OK) {
            ngx_http_ud_http_finish(h, NGX_ERROR,
                                    "the certificate did not verify");
            return;
        }

        if (ngx_ssl_check_host(c, &h->tls->name) != NGX_OK) {
            ngx_http_ud_http_finish(h, NGX_ERROR,
                                    "the certificate is not for the name");
            return;
        }
    }

    c->read->handler = ngx_http_ud_http_read;
    c->write->handler = ngx_http_ud_http_write;

    if (h->out == NULL) {
        ngx_http_ud_http_finish(h, NGX_DONE, "connected");
        return;
    }

    ngx_http_ud_http_write(c->write);
}

#endif


static void
ngx_http_ud_http_read(ngx_event_t *ev)
{
    size_t               size;
    ssize_t              n;
    ngx_buf_t           *b;
    ngx_connection_t    *c;
    ngx_http_ud_http_t  *h;

    c = ev->data;
    h = c->data;

    if (c->close) {
        ngx_http_ud_http_finish(h, NGX_ABORT, "the worker is exiting");
        return;
    }

    if (!h->sent) {
        return;
    }

    for ( ;; ) {
        if (h->in->last == h->in->end) {
            size = 2 * (h->in->end - h->in->start);

            if (size > h->max) {
                /* as much as the caller wants to judge by */
                break;
            }

            b = ngx_create_temp_buf(h->pool, size);
            if (b == NULL) {
                ngx_http_ud_http_finish(h, NGX_ERROR, "no memory");
                return;
            }

            b->last = ngx_cpymem(b->last, h->in->pos,
                                 h->in->last - h->in->pos);
            h->in = b;
        }

        n = c->recv(c, h->in->last, h->in->end - h->in->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_http_ud_http_finish(h, NGX_ERROR, "event error");
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_ud_http_finish(h, NGX_ERROR, "recv() failed");
            return;
        }

        if (n == 0) {
            break;
        }

        h->in->last += n;
    }

    ngx_http_ud_http_finish(h, NGX_OK, NULL);
}


static void
ngx_http_ud_http_timeout(ngx_event_t *ev)
{
    ngx_http_ud_http_finish(ev->data, NGX_ERROR, "timed out");
}


static void
ngx_http_ud_http_finish(ngx_http_ud_http_t *h, ngx_int_t rc,
    const char *err)
{
    if (h->timer.timer_set) {
        ngx_del_timer(&h->timer);
    }

    if (h->pc.connection) {

#if (NGX_HTTP_SSL)
        if (h->pc.connection->ssl) {
            h->pc.connection->ssl->no_wait_shutdown = 1;
            h->pc.connection->ssl->no_send_shutdown = 1;
            (void) ngx_ssl_shutdown(h->pc.connection);
        }
#endif

        ngx_close_connection(h->pc.connection);
        h->pc.connection = NULL;
    }

    h->done(h->data, h->pool, rc, h->in, err);
}
