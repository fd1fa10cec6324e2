
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

/*
 * probes in flight per worker at most: a start or a reload with many
 * upstreams would otherwise open one connection per peer at once; the
 * peers left wait for the next tick (their lease is not taken)
 */
#define NGX_HTTP_UD_PROBES_MAX  32


typedef struct {
    ngx_http_ud_srv_conf_t    *udcf;
    ngx_http_ud_peer_t        *peer;
    ngx_atomic_t               generation;
    ngx_sockaddr_t             sockaddr;
    ngx_addr_t                 addr;
    ngx_buf_t                 *in;
    ngx_msec_t                 started;
    ngx_pool_t                *pool;
} ngx_http_ud_probe_t;


static void ngx_http_ud_probe_start(ngx_http_ud_srv_conf_t *udcf,
    ngx_http_ud_peer_t *p);
static void ngx_http_ud_probe_answer(void *data, ngx_pool_t *pool,
    ngx_int_t rc, ngx_buf_t *in, const char *err);
static void ngx_http_ud_probe_done(ngx_http_ud_probe_t *pr, ngx_uint_t ok,
    const char *why);
static ngx_uint_t ngx_http_ud_probe_match(ngx_http_ud_probe_t *pr,
    const char **why);


static ngx_uint_t  ngx_http_ud_probes;   /* this worker's, in flight */


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

    for (i = 0; i < t->npeers && ngx_http_ud_probes < NGX_HTTP_UD_PROBES_MAX;
         i++)
    {
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
    ngx_buf_t            *out;
    ngx_pool_t           *pool;
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

    ngx_http_ud_probes++;

    pr->pool = pool;
    pr->udcf = udcf;
    pr->peer = p;
    pr->generation = p->generation;
    pr->started = ngx_current_msec;

    ngx_memcpy(&pr->sockaddr, &p->sockaddr, p->socklen);

    if (udcf->port) {
        ngx_inet_set_port(&pr->sockaddr.sockaddr, udcf->port);
    }

    pr->addr.sockaddr = &pr->sockaddr.sockaddr;
    pr->addr.socklen = p->socklen;
    pr->addr.name.data = ngx_pnalloc(pool, NGX_SOCKADDR_STRLEN);

    if (pr->addr.name.data == NULL) {
        ngx_http_ud_probe_done(pr, 0, "no memory");
        return;
    }

    pr->addr.name.len = ngx_sock_ntop(&pr->sockaddr.sockaddr, p->socklen,
                                      pr->addr.name.data,
                                      NGX_SOCKADDR_STRLEN, 1);

    out = NULL;

    if (udcf->check_type == NGX_HTTP_UD_CHECK_HTTP) {
        out = ngx_create_temp_buf(pool, udcf->uri.len + udcf->name.len
                                        + 128);
        if (out == NULL) {
            ngx_http_ud_probe_done(pr, 0, "no memory");
            return;
        }

        out->last = ngx_sprintf(out->last,
                                "GET %V HTTP/1.0" CRLF
                                "Host: %V" CRLF
                                "User-Agent: nginx-resilience/"
                                NGX_HTTP_RESILIENCE_VERSION
                                " health check" CRLF
                                "Connection: close" CRLF CRLF,
                                &udcf->uri, &udcf->name);
    }

    (void) ngx_atomic_fetch_add(&p->probes, 1);

    if (ngx_http_ud_http_start(pool, &pr->addr, udcf->tls, out,
                               NGX_HTTP_UD_PROBE_BUF,
                               NGX_HTTP_UD_PROBE_BUF, udcf->timeout,
                               udcf->log, ngx_http_ud_probe_answer, pr)
        != NGX_OK)
    {
        ngx_http_ud_probe_done(pr, 0, "connect() failed");
    }
}


static void
ngx_http_ud_probe_answer(void *data, ngx_pool_t *pool, ngx_int_t rc,
    ngx_buf_t *in, const char *err)
{
    ngx_http_ud_probe_t *pr = data;

    ngx_uint_t   ok;
    const char  *why;

    switch (rc) {

    case NGX_ABORT:
        ngx_http_ud_probe_done(pr, 2, err);
        return;

    case NGX_DONE:
        /* a TCP check: connected */
        ngx_http_ud_probe_done(pr, 1, err);
        return;

    case NGX_OK:
        pr->in = in;
        why = "matched";
        ok = ngx_http_ud_probe_match(pr, &why);
        ngx_http_ud_probe_done(pr, ok, why);
        return;

    default:
        ngx_http_ud_probe_done(pr, 0, err);
        return;
    }
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

    ngx_http_ud_probes--;

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
