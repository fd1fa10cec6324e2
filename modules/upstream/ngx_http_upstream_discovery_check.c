
/*
 * nginx-resilience: active health checks.
 *
 * Exactly one probe per peer per interval across all workers: a worker
 * takes a peer's lease in shared memory (its pid, with the start time, so
 * that a dying worker's lease lapses) and probes it with a non-blocking
 * nginx connection and an nginx timer.  HTTP probes send a proper Host
 * and read the answer (status line, headers, up to 16k of body) to match
 * it; TCP probes pass when the connection is established.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upstream_discovery.h"


#define NGX_HTTP_UD_PROBE_BUF  16384


typedef struct {
    ngx_http_ud_srv_conf_t    *udcf;
    ngx_http_ud_peer_t        *peer;
    ngx_atomic_t               generation;
    ngx_peer_connection_t      pc;
    ngx_sockaddr_t             sockaddr;
    ngx_str_t                  name;
    ngx_buf_t                 *out;
    ngx_buf_t                 *in;
    ngx_event_t                timer;
    ngx_msec_t                 started;
    ngx_pool_t                *pool;
    unsigned                   sent:1;
} ngx_http_ud_probe_t;


static void ngx_http_ud_probe_start(ngx_http_ud_srv_conf_t *udcf,
    ngx_http_ud_peer_t *p);
static void ngx_http_ud_probe_write(ngx_event_t *ev);
static void ngx_http_ud_probe_read(ngx_event_t *ev);
static void ngx_http_ud_probe_timeout(ngx_event_t *ev);
static ngx_int_t ngx_http_ud_probe_connected(ngx_connection_t *c);
static void ngx_http_ud_probe_done(ngx_http_ud_probe_t *pr, ngx_uint_t ok,
    const char *why);
static ngx_uint_t ngx_http_ud_probe_match(ngx_http_ud_probe_t *pr,
    const char **why);


void
ngx_http_ud_check_peers(ngx_http_ud_srv_conf_t *udcf)
{
    ngx_uint_t            i;
    ngx_msec_t            now, stale;
    ngx_atomic_uint_t     owner;
    ngx_http_ud_peer_t   *p;
    ngx_http_ud_table_t  *t;

    t = udcf->table;
    now = ngx_current_msec;
    stale = 2 * udcf->timeout + 1000;

    for (i = 0; i < t->npeers; i++) {
        p = &t->peers[i];

        if (p->state == NGX_HTTP_UD_FREE
            || p->state == NGX_HTTP_UD_DRAINING
            || (ngx_msec_int_t) (now - p->probe_next) < 0)
        {
            continue;
        }

        owner = p->probe_owner;

        if (owner != 0
            && (ngx_msec_int_t) (now - p->probe_started)
               < (ngx_msec_int_t) stale)
        {
            continue;
        }

        if (!ngx_atomic_cmp_set(&p->probe_owner, owner, ngx_pid)) {
            continue;
        }

        /* another worker may have probed it meanwhile */

        if ((ngx_msec_int_t) (ngx_current_msec - p->probe_next) < 0) {
            p->probe_owner = 0;
            continue;
        }

        p->probe_started = now;
        p->probe_next = now + udcf->interval
                        + (udcf->jitter ? ngx_random() % udcf->jitter : 0);

        ngx_http_ud_probe_start(udcf, p);
    }
}


static void
ngx_http_ud_probe_start(ngx_http_ud_srv_conf_t *udcf, ngx_http_ud_peer_t *p)
{
    ngx_int_t             rc;
    ngx_pool_t           *pool;
    ngx_connection_t     *c;
    ngx_http_ud_probe_t  *pr;

    pool = ngx_create_pool(1024, udcf->log);
    if (pool == NULL) {
        p->probe_owner = 0;
        return;
    }

    pr = ngx_pcalloc(pool, sizeof(ngx_http_ud_probe_t));
    if (pr == NULL) {
        ngx_destroy_pool(pool);
        p->probe_owner = 0;
        return;
    }

    pr->pool = pool;
    pr->udcf = udcf;
    pr->peer = p;
    pr->generation = p->generation;
    pr->started = ngx_current_msec;

    ngx_memcpy(&pr->sockaddr, &p->sockaddr, p->socklen);

    if (udcf->port) {
        ngx_inet_set_port(&pr->sockaddr.sockaddr, udcf->port);
    }

    pr->name.data = ngx_pnalloc(pool, NGX_SOCKADDR_STRLEN);
    if (pr->name.data == NULL) {
        ngx_http_ud_probe_done(pr, 0, "no memory");
        return;
    }

    pr->name.len = ngx_sock_ntop(&pr->sockaddr.sockaddr, p->socklen,
                                 pr->name.data, NGX_SOCKADDR_STRLEN, 1);

    if (udcf->check_type == NGX_HTTP_UD_CHECK_HTTP) {
        pr->out = ngx_create_temp_buf(pool, udcf->uri.len + udcf->name.len
                                            + 128);
        pr->in = ngx_create_temp_buf(pool, NGX_HTTP_UD_PROBE_BUF);

        if (pr->out == NULL || pr->in == NULL) {
            ngx_http_ud_probe_done(pr, 0, "no memory");
            return;
        }

        pr->out->last = ngx_sprintf(pr->out->last,
                                    "GET %V HTTP/1.0" CRLF
                                    "Host: %V" CRLF
                                    "User-Agent: nginx-resilience/"
                                    NGX_HTTP_RESILIENCE_VERSION
                                    " health check" CRLF
                                    "Connection: close" CRLF CRLF,
                                    &udcf->uri, &udcf->name);
    }

    /*
     * a worker that exits does not wait for its probes: the timer is
     * cancelable and the connection idle, so nginx closes it (c->close)
     */

    pr->timer.handler = ngx_http_ud_probe_timeout;
    pr->timer.data = pr;
    pr->timer.log = udcf->log;
    pr->timer.cancelable = 1;

    ngx_add_timer(&pr->timer, udcf->timeout);

    pr->pc.sockaddr = &pr->sockaddr.sockaddr;
    pr->pc.socklen = p->socklen;
    pr->pc.name = &pr->name;
    pr->pc.get = ngx_event_get_peer;
    pr->pc.log = udcf->log;
    pr->pc.log_error = NGX_ERROR_INFO;

    (void) ngx_atomic_fetch_add(&p->probes, 1);

    rc = ngx_event_connect_peer(&pr->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_http_ud_probe_done(pr, 0, "connect() failed");
        return;
    }

    c = pr->pc.connection;
    c->data = pr;
    c->pool = pool;
    c->idle = 1;
    c->read->handler = ngx_http_ud_probe_read;
    c->write->handler = ngx_http_ud_probe_write;

    if (rc == NGX_OK) {
        ngx_http_ud_probe_write(c->write);
    }
}


static ngx_int_t
ngx_http_ud_probe_connected(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    return err ? NGX_ERROR : NGX_OK;
}


static void
ngx_http_ud_probe_write(ngx_event_t *ev)
{
    ssize_t               n;
    ngx_connection_t     *c;
    ngx_http_ud_probe_t  *pr;

    c = ev->data;
    pr = c->data;

    if (c->close) {
        ngx_http_ud_probe_done(pr, 2, "the worker is exiting");
        return;
    }

    if (pr->sent) {
        return;
    }

    if (ngx_http_ud_probe_connected(c) != NGX_OK) {
        ngx_http_ud_probe_done(pr, 0, "connection refused or failed");
        return;
    }

    if (pr->udcf->check_type == NGX_HTTP_UD_CHECK_TCP) {
        ngx_http_ud_probe_done(pr, 1, "connected");
        return;
    }

    while (pr->out->pos < pr->out->last) {
        n = c->send(c, pr->out->pos, pr->out->last - pr->out->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_ud_probe_done(pr, 0, "event error");
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_ud_probe_done(pr, 0, "send() failed");
            return;
        }

        pr->out->pos += n;
    }

    pr->sent = 1;

    ngx_http_ud_probe_read(c->read);
}


static void
ngx_http_ud_probe_read(ngx_event_t *ev)
{
    ssize_t               n;
    ngx_uint_t            ok;
    const char           *why;
    ngx_connection_t     *c;
    ngx_http_ud_probe_t  *pr;

    c = ev->data;
    pr = c->data;

    if (c->close) {
        ngx_http_ud_probe_done(pr, 2, "the worker is exiting");
        return;
    }

    if (!pr->sent) {
        return;
    }

    for ( ;; ) {
        if (pr->in->last == pr->in->end) {
            /* enough to judge by */
            break;
        }

        n = c->recv(c, pr->in->last, pr->in->end - pr->in->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_http_ud_probe_done(pr, 0, "event error");
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_ud_probe_done(pr, 0, "recv() failed");
            return;
        }

        if (n == 0) {
            break;
        }

        pr->in->last += n;
    }

    why = "matched";
    ok = ngx_http_ud_probe_match(pr, &why);

    ngx_http_ud_probe_done(pr, ok, why);
}


static void
ngx_http_ud_probe_timeout(ngx_event_t *ev)
{
    ngx_http_ud_probe_done(ev->data, 0, "timed out");
}


/* the status line, then the match's header and body rules */

static ngx_uint_t
ngx_http_ud_probe_match(ngx_http_ud_probe_t *pr, const char **why)
{
    u_char                      *p, *last, *eol, *body, *colon, *v;
    size_t                       len;
    ngx_int_t                    rc;
    ngx_str_t                    s;
    ngx_uint_t                   status, i, found;
    ngx_http_ud_match_t         *m;
    ngx_http_ud_header_match_t  *h;

    p = pr->in->pos;
    last = pr->in->last;

    if (last - p < 12 || ngx_strncmp(p, "HTTP/1.", 7) != 0
        || p[8] != ' ' || p[9] < '1' || p[9] > '5'
        || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
    {
        *why = "not an HTTP answer";
        return 0;
    }

    status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');

    m = pr->udcf->match;

    if (m && m->has_status) {
        if (!ngx_http_resilience_status_test(&m->status, status)) {
            *why = "status not matched";
            return 0;
        }

    } else if (status < 200 || status > 399) {
        *why = "status not 2xx or 3xx";
        return 0;
    }

    if (m == NULL) {
        return 1;
    }

    body = ngx_strlcasestrn(p, last, (u_char *) CRLF CRLF, 4 - 1);
    body = body ? body + 4 : last;

    h = m->headers.elts;

    for (i = 0; i < m->headers.nelts; i++) {
        found = 0;

        for (p = pr->in->pos; p < body; p = eol + 2) {
            eol = ngx_strlcasestrn(p, body, (u_char *) CRLF, 2 - 1);
            if (eol == NULL) {
                break;
            }

            colon = ngx_strlchr(p, eol, ':');

            if (colon == NULL || (size_t) (colon - p) != h[i].name.len
                || ngx_strncasecmp(p, h[i].name.data, h[i].name.len) != 0)
            {
                continue;
            }

            for (v = colon + 1; v < eol && *v == ' '; v++) { /* void */ }

            len = eol - v;

            if (h[i].regex) {
                s.data = v;
                s.len = len;
                rc = ngx_regex_exec(h[i].regex, &s, NULL, 0);
                found = (rc >= 0);

            } else if (h[i].value.len) {
                found = (len == h[i].value.len
                         && ngx_strncmp(v, h[i].value.data, len) == 0);

            } else {
                found = 1;
            }

            if (found) {
                break;
            }
        }

        if (!found) {
            *why = "header not matched";
            return 0;
        }
    }

    if (m->body) {
        s.data = body;
        s.len = last - body;

        if (ngx_regex_exec(m->body, &s, NULL, 0) < 0) {
            *why = "body not matched";
            return 0;
        }
    }

    return 1;
}


static void
ngx_http_ud_probe_done(ngx_http_ud_probe_t *pr, ngx_uint_t ok,
    const char *why)
{
    u_char                   buf[128];
    ngx_http_ud_peer_t      *p;
    ngx_http_ud_srv_conf_t  *udcf;

    udcf = pr->udcf;
    p = pr->peer;

    if (pr->timer.timer_set) {
        ngx_del_timer(&pr->timer);
    }

    if (pr->pc.connection) {
        ngx_close_connection(pr->pc.connection);
        pr->pc.connection = NULL;
    }

    if (ok == 2) {
        /* not a result: the lease lapses for another worker */
        if (p->generation == pr->generation) {
            p->probe_owner = 0;
            p->probe_next = ngx_current_msec;
        }

        ngx_destroy_pool(pr->pool);
        return;
    }

    if (p->generation == pr->generation) {
        p->latency = ngx_current_msec - pr->started;
        p->checked = 1;
        p->last_ok = (u_char) ok;

        if (ok) {
            (void) ngx_atomic_fetch_add(&p->passes, 1);
            p->fails = 0;

            if (p->state != NGX_HTTP_UD_UP && p->passes >= udcf->passes) {
                ngx_sprintf(buf, "%ui probe(s) passed%Z", p->passes);
                ngx_http_ud_set_state(udcf, p, NGX_HTTP_UD_UP, (char *) buf,
                                      udcf->log);
            }

        } else {
            (void) ngx_atomic_fetch_add(&p->fails, 1);
            p->passes = 0;

            ngx_log_error(NGX_LOG_INFO, udcf->log, 0,
                          "upstream \"%V\": probe of %*s failed: %s",
                          &udcf->name, (size_t) p->name_len, p->name, why);

            if (p->state == NGX_HTTP_UD_UP && p->fails >= udcf->fails) {
                ngx_sprintf(buf, "%ui probe(s) failed, the last: %s%Z",
                            p->fails, why);
                ngx_http_ud_set_state(udcf, p, NGX_HTTP_UD_DOWN,
                                      (char *) buf, udcf->log);
            }
        }

        p->probe_owner = 0;
    }

    ngx_destroy_pool(pr->pool);
}
