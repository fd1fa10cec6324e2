
/*
 * nginx-resilience: the metrics registry and the status handler.
 *
 * Modules register collectors at configuration time.  A status request
 * runs every collector, which declares families and adds samples (read
 * from shared memory, so any worker answers for all), then renders them
 * as Prometheus text exposition or as JSON.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <cjson/cJSON.h>

#include "ngx_http_resilience_redis.h"


#define NGX_HTTP_RESILIENCE_PROMETHEUS  1
#define NGX_HTTP_RESILIENCE_JSON        2


/* bounds are copied; the counts are made cumulative, n + 1 of them */

typedef struct {
    ngx_uint_t                         n;
    double                            *bounds;
    uint64_t                          *cumulative;
    double                             sum;
} ngx_http_resilience_histogram_t;


typedef struct {
    ngx_keyval_t                      *labels;
    ngx_uint_t                         nlabels;
    double                             value;    /* a histogram's count */
    ngx_http_resilience_histogram_t   *histogram;
} ngx_http_resilience_sample_t;


typedef struct {
    ngx_str_t                          name;
    ngx_str_t                          help;
    ngx_http_resilience_metric_type_e  type;
    ngx_array_t                        samples;
} ngx_http_resilience_family_t;


struct ngx_http_resilience_metrics_s {
    ngx_pool_t                        *pool;
    ngx_array_t                        families;
    ngx_http_resilience_family_t      *current;
};


typedef struct {
    ngx_pool_t                        *pool;
    ngx_chain_t                       *out;
    ngx_chain_t                      **last;
    ngx_buf_t                         *b;
} ngx_http_resilience_writer_t;


static ngx_http_resilience_sample_t *ngx_http_resilience_metrics_push(
    ngx_http_resilience_metrics_t *m, ngx_keyval_t *labels,
    ngx_uint_t nlabels);
static u_char *ngx_http_resilience_bound(u_char *buf, double bound);
static size_t ngx_http_resilience_utf8_len(u_char *p, u_char *last);
static ngx_int_t ngx_http_resilience_write(ngx_http_resilience_writer_t *w,
    u_char *data, size_t len);
static ngx_int_t ngx_http_resilience_write_escaped(
    ngx_http_resilience_writer_t *w, ngx_str_t *s, ngx_uint_t quote);
static ngx_int_t ngx_http_resilience_write_value(
    ngx_http_resilience_writer_t *w, double value);
static ngx_int_t ngx_http_resilience_prometheus(
    ngx_http_resilience_metrics_t *m, ngx_http_resilience_writer_t *w);
static ngx_int_t ngx_http_resilience_prometheus_sample(
    ngx_http_resilience_writer_t *w, ngx_str_t *name, ngx_str_t *suffix,
    ngx_http_resilience_sample_t *s, ngx_str_t *le, double value);
static ngx_int_t ngx_http_resilience_prometheus_histogram(
    ngx_http_resilience_writer_t *w, ngx_str_t *name,
    ngx_http_resilience_sample_t *s);
static ngx_int_t ngx_http_resilience_json_histogram(cJSON *smp,
    ngx_http_resilience_sample_t *s);
static ngx_int_t ngx_http_resilience_json(ngx_http_request_t *r,
    ngx_http_resilience_metrics_t *m, ngx_http_resilience_writer_t *w);
static cJSON *ngx_http_resilience_json_redis(ngx_http_request_t *r);
static char *ngx_http_resilience_cstr(ngx_pool_t *pool, ngx_str_t *s);


static ngx_str_t  ngx_http_resilience_prefix =
    ngx_string("nginx_resilience_");


/* by ngx_http_resilience_metric_type_e */

static ngx_str_t  ngx_http_resilience_types[] = {
    ngx_string("counter"),
    ngx_string("gauge"),
    ngx_string("histogram")
};


/* a bucket bound: at most this many digits before the point, and 6 after */
#define NGX_HTTP_RESILIENCE_BOUND_MAX  1e15
#define NGX_HTTP_RESILIENCE_BOUND_LEN  (1 + 16 + 1 + 6)


ngx_int_t
ngx_http_resilience_metrics_add_collector(ngx_conf_t *cf,
    ngx_http_resilience_collect_pt collect, void *data)
{
    ngx_http_resilience_collector_t  *col;
    ngx_http_resilience_main_conf_t  *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_resilience_module);

    col = ngx_array_push(&rmcf->collectors);
    if (col == NULL) {
        return NGX_ERROR;
    }

    ngx_str_null(&col->name);
    col->collect = collect;
    col->data = data;

    return NGX_OK;
}


ngx_int_t
ngx_http_resilience_metrics_family(ngx_http_resilience_metrics_t *m,
    const char *name, ngx_http_resilience_metric_type_e type,
    const char *help)
{
    size_t                         len;
    ngx_uint_t                     i;
    ngx_http_resilience_family_t  *f;

    len = ngx_strlen(name);

    /* a family declared twice (two collectors) gets one header */

    f = m->families.elts;

    for (i = 0; i < m->families.nelts; i++) {
        if (f[i].name.len == ngx_http_resilience_prefix.len + len
            && ngx_strncmp(f[i].name.data + ngx_http_resilience_prefix.len,
                           name, len)
               == 0)
        {
            m->current = &f[i];
            return NGX_OK;
        }
    }

    f = ngx_array_push(&m->families);
    if (f == NULL) {
        return NGX_ERROR;
    }

    f->name.len = ngx_http_resilience_prefix.len + len;
    f->name.data = ngx_pnalloc(m->pool, f->name.len);
    if (f->name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(f->name.data, ngx_http_resilience_prefix.data,
                          ngx_http_resilience_prefix.len),
               name, len);

    f->help.data = (u_char *) help;
    f->help.len = ngx_strlen(help);
    f->type = type;

    if (ngx_array_init(&f->samples, m->pool, 4,
                       sizeof(ngx_http_resilience_sample_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    m->current = f;

    return NGX_OK;
}


ngx_int_t
ngx_http_resilience_metrics_sample(ngx_http_resilience_metrics_t *m,
    ngx_keyval_t *labels, ngx_uint_t nlabels, double value)
{
    ngx_http_resilience_sample_t  *s;

    if (m->current == NULL
        || m->current->type == NGX_HTTP_RESILIENCE_HISTOGRAM)
    {
        return NGX_ERROR;
    }

    s = ngx_http_resilience_metrics_push(m, labels, nlabels);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->value = value;

    return NGX_OK;
}


ngx_int_t
ngx_http_resilience_metrics_histogram(ngx_http_resilience_metrics_t *m,
    ngx_keyval_t *labels, ngx_uint_t nlabels, ngx_uint_t n,
    const double *bounds, const uint64_t *counts, double sum)
{
    uint64_t                          total;
    ngx_uint_t                        i;
    ngx_http_resilience_sample_t     *s;
    ngx_http_resilience_histogram_t  *h;

    if (m->current == NULL
        || m->current->type != NGX_HTTP_RESILIENCE_HISTOGRAM)
    {
        return NGX_ERROR;
    }

    /* finite, printable and increasing (a NaN fails every comparison) */

    for (i = 0; i < n; i++) {
        if (!(bounds[i] > -NGX_HTTP_RESILIENCE_BOUND_MAX
              && bounds[i] < NGX_HTTP_RESILIENCE_BOUND_MAX)
            || (i > 0 && !(bounds[i] > bounds[i - 1])))
        {
            return NGX_ERROR;
        }
    }

    h = ngx_palloc(m->pool, sizeof(ngx_http_resilience_histogram_t));
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->bounds = ngx_palloc(m->pool, n * sizeof(double));
    h->cumulative = ngx_palloc(m->pool, (n + 1) * sizeof(uint64_t));

    if (h->bounds == NULL || h->cumulative == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(h->bounds, bounds, n * sizeof(double));

    total = 0;

    for (i = 0; i <= n; i++) {
        total += counts[i];
        h->cumulative[i] = total;
    }

    h->n = n;
    h->sum = sum;

    s = ngx_http_resilience_metrics_push(m, labels, nlabels);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->value = (double) total;
    s->histogram = h;

    return NGX_OK;
}


static ngx_http_resilience_sample_t *
ngx_http_resilience_metrics_push(ngx_http_resilience_metrics_t *m,
    ngx_keyval_t *labels, ngx_uint_t nlabels)
{
    ngx_uint_t                     i;
    ngx_keyval_t                  *kv;
    ngx_http_resilience_sample_t  *s;

    s = ngx_array_push(&m->current->samples);
    if (s == NULL) {
        return NULL;
    }

    s->value = 0;
    s->nlabels = nlabels;
    s->labels = NULL;
    s->histogram = NULL;

    if (nlabels == 0) {
        return s;
    }

    /* labels may point into shared memory that changes: copy them */

    kv = ngx_palloc(m->pool, nlabels * sizeof(ngx_keyval_t));
    if (kv == NULL) {
        return NULL;
    }

    for (i = 0; i < nlabels; i++) {
        kv[i].key.len = labels[i].key.len;
        kv[i].key.data = ngx_pstrdup(m->pool, &labels[i].key);
        kv[i].value.data = ngx_pnalloc(m->pool,
                      NGX_HTTP_RESILIENCE_ESCAPED_LEN(labels[i].value.len)
                      + 1);

        if (kv[i].key.data == NULL || kv[i].value.data == NULL) {
            return NULL;
        }

        /* keys come from the wire: always valid UTF-8 in the output */

        kv[i].value.len = ngx_http_resilience_escape_utf8(kv[i].value.data,
                                                     labels[i].value.data,
                                                     labels[i].value.len)
                          - kv[i].value.data;
    }

    s->labels = kv;

    return s;
}


ngx_pool_t *
ngx_http_resilience_metrics_pool(ngx_http_resilience_metrics_t *m)
{
    return m->pool;
}


u_char *
ngx_http_resilience_escape_utf8(u_char *dst, u_char *src, size_t len)
{
    u_char   *p, *last;
    size_t    n;

    static u_char  hex[] = "0123456789abcdef";

    p = src;
    last = src + len;

    while (p < last) {

        if (*p >= 0x20 && *p < 0x7f && *p != '\\') {
            *dst++ = *p++;
            continue;
        }

        n = (*p < 0x80) ? 0 : ngx_http_resilience_utf8_len(p, last);

        if (n) {
            dst = ngx_cpymem(dst, p, n);
            p += n;
            continue;
        }

        *dst++ = '\\';
        *dst++ = 'x';
        *dst++ = hex[*p >> 4];
        *dst++ = hex[*p & 0xf];
        p++;
    }

    return dst;
}


/*
 * The length of the valid UTF-8 sequence at p, 0 if there is none:
 * no overlong forms, no surrogates, nothing above U+10FFFF.
 */

static size_t
ngx_http_resilience_utf8_len(u_char *p, u_char *last)
{
    size_t    n, i;
    uint32_t  u, min;

    if (*p >= 0xc2 && *p <= 0xdf) {
        n = 2;
        u = *p & 0x1f;
        min = 0x80;

    } else if (*p >= 0xe0 && *p <= 0xef) {
        n = 3;
        u = *p & 0x0f;
        min = 0x800;

    } else if (*p >= 0xf0 && *p <= 0xf4) {
        n = 4;
        u = *p & 0x07;
        min = 0x10000;

    } else {
        return 0;
    }

    if ((size_t) (last - p) < n) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        u = (u << 6) | (p[i] & 0x3f);
    }

    if (u < min || u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff)) {
        return 0;
    }

    return n;
}


/* the core's own collector: each worker's Redis client */

ngx_int_t
ngx_http_resilience_metrics_redis(ngx_http_resilience_metrics_t *m,
    void *data)
{
    ngx_http_resilience_main_conf_t *rmcf = data;

    u_char                              worker[NGX_INT_T_LEN];
    u_char                              pid[NGX_INT_T_LEN];
    ngx_uint_t                          i, k, n;
    ngx_keyval_t                        labels[3];
    ngx_core_conf_t                    *ccf;
    ngx_http_resilience_redis_stats_t  *st;

    static struct {
        const char                         *name;
        ngx_http_resilience_metric_type_e   type;
        const char                         *help;
        size_t                              offset;
    } counters[] = {
        { "redis_commands_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Commands sent to Redis by the worker.",
          offsetof(ngx_http_resilience_redis_stats_t, commands) },
        { "redis_replies_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Replies received from Redis by the worker.",
          offsetof(ngx_http_resilience_redis_stats_t, replies) },
        { "redis_errors_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Error replies and commands failed for want of a connection.",
          offsetof(ngx_http_resilience_redis_stats_t, errors) },
        { "redis_timeouts_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Commands that got no reply within command_timeout.",
          offsetof(ngx_http_resilience_redis_stats_t, timeouts) },
        { "redis_connects_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Connections to Redis established (AUTH and SELECT done).",
          offsetof(ngx_http_resilience_redis_stats_t, connects) },
        { "redis_reconnects_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Connection attempts made after a failure or a disconnect.",
          offsetof(ngx_http_resilience_redis_stats_t, reconnects) },
        { "redis_messages_total", NGX_HTTP_RESILIENCE_COUNTER,
          "Pub/sub messages received.",
          offsetof(ngx_http_resilience_redis_stats_t, messages) },
        { "redis_pending", NGX_HTTP_RESILIENCE_GAUGE,
          "Commands waiting for a reply now.",
          offsetof(ngx_http_resilience_redis_stats_t, pending) },
    };

    if (rmcf->sh == NULL) {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);

    n = (ccf->master && ngx_process != NGX_PROCESS_SINGLE)
        ? (ngx_uint_t) ccf->worker_processes : 1;

    if (n > NGX_HTTP_RESILIENCE_MAX_WORKERS) {
        n = NGX_HTTP_RESILIENCE_MAX_WORKERS;
    }

    ngx_str_set(&labels[0].key, "worker");
    ngx_str_set(&labels[1].key, "pid");
    ngx_str_set(&labels[2].key, "connection");

    if (ngx_http_resilience_metrics_family(m, "redis_connected",
            NGX_HTTP_RESILIENCE_GAUGE,
            "1 when the worker's Redis connection is up, else 0.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        st = &rmcf->sh->workers[i];

        labels[0].value.data = worker;
        labels[0].value.len = ngx_sprintf(worker, "%ui", i) - worker;
        labels[1].value.data = pid;
        labels[1].value.len = ngx_sprintf(pid, "%uA", st->pid) - pid;

        ngx_str_set(&labels[2].value, "command");

        if (ngx_http_resilience_metrics_sample(m, labels, 3,
                    st->state == NGX_HTTP_RESILIENCE_REDIS_CONNECTED)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (st->sub_state == NGX_HTTP_RESILIENCE_REDIS_OFF) {
            continue;
        }

        ngx_str_set(&labels[2].value, "subscriber");

        if (ngx_http_resilience_metrics_sample(m, labels, 3,
                    st->sub_state == NGX_HTTP_RESILIENCE_REDIS_CONNECTED)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    for (k = 0; k < sizeof(counters) / sizeof(counters[0]); k++) {

        if (ngx_http_resilience_metrics_family(m, counters[k].name,
                                               counters[k].type,
                                               counters[k].help)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (i = 0; i < n; i++) {
            st = &rmcf->sh->workers[i];

            labels[0].value.data = worker;
            labels[0].value.len = ngx_sprintf(worker, "%ui", i) - worker;
            labels[1].value.data = pid;
            labels[1].value.len = ngx_sprintf(pid, "%uA", st->pid) - pid;

            if (ngx_http_resilience_metrics_sample(m, labels, 2,
                    (double) *(ngx_atomic_t *) ((u_char *) st
                                                + counters[k].offset))
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_resilience_metrics_handler(ngx_http_request_t *r, ngx_uint_t format)
{
    ngx_int_t                         rc;
    ngx_uint_t                        i;
    ngx_chain_t                      *cl;
    ngx_http_resilience_metrics_t     m;
    ngx_http_resilience_writer_t      w;
    ngx_http_resilience_collector_t  *col;
    ngx_http_resilience_main_conf_t  *rmcf;

    /* before any answer: a body left unread would be the next request */

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rmcf = ngx_http_get_module_main_conf(r, ngx_http_resilience_module);

    m.pool = r->pool;
    m.current = NULL;

    if (ngx_array_init(&m.families, r->pool, 16,
                       sizeof(ngx_http_resilience_family_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    col = rmcf->collectors.elts;

    for (i = 0; i < rmcf->collectors.nelts; i++) {
        m.current = NULL;

        if (col[i].collect(&m, col[i].data) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "resilience_status: a metrics collector failed");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    w.pool = r->pool;
    w.out = NULL;
    w.last = &w.out;
    w.b = NULL;

    if (format == NGX_HTTP_RESILIENCE_PROMETHEUS) {
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4; charset=utf-8");
        rc = ngx_http_resilience_prometheus(&m, &w);

    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
        rc = ngx_http_resilience_json(r, &m, &w);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = 0;

    for (cl = w.out; cl; cl = cl->next) {
        r->headers_out.content_length_n += cl->buf->last - cl->buf->pos;
    }

    if (w.b != NULL) {
        w.b->last_buf = (r == r->main) ? 1 : 0;
        w.b->last_in_chain = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only || w.out == NULL) {
        return rc;
    }

    return ngx_http_output_filter(r, w.out);
}


/* output */


static ngx_int_t
ngx_http_resilience_write(ngx_http_resilience_writer_t *w, u_char *data,
    size_t len)
{
    size_t        n;
    ngx_chain_t  *cl;

    while (len) {
        if (w->b == NULL || w->b->last == w->b->end) {
            w->b = ngx_create_temp_buf(w->pool, ngx_max(len, 4096));
            if (w->b == NULL) {
                return NGX_ERROR;
            }

            cl = ngx_alloc_chain_link(w->pool);
            if (cl == NULL) {
                return NGX_ERROR;
            }

            cl->buf = w->b;
            cl->next = NULL;
            *w->last = cl;
            w->last = &cl->next;
        }

        n = ngx_min(len, (size_t) (w->b->end - w->b->last));
        w->b->last = ngx_cpymem(w->b->last, data, n);
        data += n;
        len -= n;
    }

    return NGX_OK;
}


/*
 * Prometheus escaping: in label values, backslash, double quote and
 * line feed; in HELP text, backslash and line feed.
 */

static ngx_int_t
ngx_http_resilience_write_escaped(ngx_http_resilience_writer_t *w,
    ngx_str_t *s, ngx_uint_t quote)
{
    u_char  *p, *last, *start;

    start = s->data;
    last = s->data + s->len;

    for (p = start; p < last; p++) {

        if (*p != '\\' && *p != '\n' && !(quote && *p == '"')) {
            continue;
        }

        if (ngx_http_resilience_write(w, start, p - start) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_http_resilience_write(w, (u_char *)
                                      (*p == '\\' ? "\\\\"
                                       : *p == '"' ? "\\\"" : "\\n"), 2)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        start = p + 1;
    }

    return ngx_http_resilience_write(w, start, last - start);
}


static ngx_int_t
ngx_http_resilience_write_value(ngx_http_resilience_writer_t *w,
    double value)
{
    u_char  *p, buf[64];

    if (value != value) {
        p = ngx_cpymem(buf, "NaN", 3);

    } else if (value >= 9007199254740992.0 || value <= -9007199254740992.0
               || value != (double) (int64_t) value)
    {
        p = ngx_snprintf(buf, sizeof(buf), "%.6f", value);

    } else {
        p = ngx_sprintf(buf, "%L", (int64_t) value);
    }

    return ngx_http_resilience_write(w, buf, p - buf);
}


/*
 * A bucket's upper bound as Prometheus clients print it: "25", "0.005",
 * never "25.000000"; the bound is finite and under 1e15 in magnitude.
 */

static u_char *
ngx_http_resilience_bound(u_char *buf, double bound)
{
    u_char  *p;

    if (bound == (double) (int64_t) bound) {
        return ngx_sprintf(buf, "%L", (int64_t) bound);
    }

    p = ngx_sprintf(buf, "%.6f", bound);

    while (p[-1] == '0') {
        p--;
    }

    if (p[-1] == '.') {
        p--;
    }

    return p;
}


#define ngx_http_resilience_lit(w, text)                                       \
    if (ngx_http_resilience_write(w, (u_char *) text, sizeof(text) - 1)        \
        != NGX_OK)                                                             \
    {                                                                          \
        return NGX_ERROR;                                                      \
    }

#define ngx_http_resilience_str(w, s)                                          \
    if (ngx_http_resilience_write(w, (s)->data, (s)->len) != NGX_OK) {         \
        return NGX_ERROR;                                                      \
    }


static ngx_int_t
ngx_http_resilience_prometheus(ngx_http_resilience_metrics_t *m,
    ngx_http_resilience_writer_t *w)
{
    ngx_uint_t                     i, j;
    ngx_http_resilience_family_t  *f;
    ngx_http_resilience_sample_t  *s;

    f = m->families.elts;

    for (i = 0; i < m->families.nelts; i++) {

        ngx_http_resilience_lit(w, "# HELP ");
        ngx_http_resilience_str(w, &f[i].name);
        ngx_http_resilience_lit(w, " ");

        if (ngx_http_resilience_write_escaped(w, &f[i].help, 0) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_http_resilience_lit(w, "\n# TYPE ");
        ngx_http_resilience_str(w, &f[i].name);
        ngx_http_resilience_lit(w, " ");
        ngx_http_resilience_str(w, &ngx_http_resilience_types[f[i].type]);
        ngx_http_resilience_lit(w, "\n");

        s = f[i].samples.elts;

        for (j = 0; j < f[i].samples.nelts; j++) {

            if (s[j].histogram) {
                if (ngx_http_resilience_prometheus_histogram(w, &f[i].name,
                                                             &s[j])
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                continue;
            }

            if (ngx_http_resilience_prometheus_sample(w, &f[i].name, NULL,
                                                      &s[j], NULL,
                                                      s[j].value)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* one line: name[suffix]{labels[,le="..."]} value */

static ngx_int_t
ngx_http_resilience_prometheus_sample(ngx_http_resilience_writer_t *w,
    ngx_str_t *name, ngx_str_t *suffix, ngx_http_resilience_sample_t *s,
    ngx_str_t *le, double value)
{
    ngx_uint_t  k;

    ngx_http_resilience_str(w, name);

    if (suffix) {
        ngx_http_resilience_str(w, suffix);
    }

    for (k = 0; k < s->nlabels; k++) {
        if (k == 0) {
            ngx_http_resilience_lit(w, "{");

        } else {
            ngx_http_resilience_lit(w, ",");
        }

        ngx_http_resilience_str(w, &s->labels[k].key);
        ngx_http_resilience_lit(w, "=\"");

        if (ngx_http_resilience_write_escaped(w, &s->labels[k].value, 1)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_http_resilience_lit(w, "\"");
    }

    if (le) {
        if (s->nlabels) {
            ngx_http_resilience_lit(w, ",le=\"");

        } else {
            ngx_http_resilience_lit(w, "{le=\"");
        }

        ngx_http_resilience_str(w, le);
        ngx_http_resilience_lit(w, "\"");
    }

    if (s->nlabels || le) {
        ngx_http_resilience_lit(w, "}");
    }

    ngx_http_resilience_lit(w, " ");

    if (ngx_http_resilience_write_value(w, value) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_resilience_lit(w, "\n");

    return NGX_OK;
}


/* cumulative _bucket lines up to le="+Inf", then _sum and _count */

static ngx_int_t
ngx_http_resilience_prometheus_histogram(ngx_http_resilience_writer_t *w,
    ngx_str_t *name, ngx_http_resilience_sample_t *s)
{
    u_char                            buf[NGX_HTTP_RESILIENCE_BOUND_LEN];
    ngx_str_t                         le;
    ngx_uint_t                        i;
    ngx_http_resilience_histogram_t  *h;

    static ngx_str_t  bucket = ngx_string("_bucket");
    static ngx_str_t  sum = ngx_string("_sum");
    static ngx_str_t  count = ngx_string("_count");
    static ngx_str_t  inf = ngx_string("+Inf");

    h = s->histogram;

    for (i = 0; i <= h->n; i++) {

        if (i < h->n) {
            le.data = buf;
            le.len = ngx_http_resilience_bound(buf, h->bounds[i]) - buf;

        } else {
            le = inf;
        }

        if (ngx_http_resilience_prometheus_sample(w, name, &bucket, s, &le,
                                              (double) h->cumulative[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_resilience_prometheus_sample(w, name, &sum, s, NULL, h->sum)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_resilience_prometheus_sample(w, name, &count, s, NULL,
                                                 s->value);
}


#undef ngx_http_resilience_lit
#undef ngx_http_resilience_str


static char *
ngx_http_resilience_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    *ngx_cpymem(p, s->data, s->len) = '\0';

    return (char *) p;
}


static cJSON *
ngx_http_resilience_json_redis(ngx_http_request_t *r)
{
    char                               *address;
    cJSON                              *redis, *workers, *wk;
    ngx_uint_t                          i, n;
    ngx_core_conf_t                    *ccf;
    ngx_http_resilience_main_conf_t    *rmcf;
    ngx_http_resilience_redis_stats_t  *st;

    rmcf = ngx_http_get_module_main_conf(r, ngx_http_resilience_module);

    redis = cJSON_CreateObject();
    if (redis == NULL) {
        return NULL;
    }

    if (rmcf->redis == NULL) {
        cJSON_AddFalseToObject(redis, "configured");
        return redis;
    }

    address = ngx_http_resilience_cstr(r->pool, &rmcf->redis->address);
    if (address == NULL) {
        cJSON_Delete(redis);
        return NULL;
    }

    cJSON_AddTrueToObject(redis, "configured");
    cJSON_AddStringToObject(redis, "address", address);

    workers = cJSON_AddArrayToObject(redis, "workers");

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);

    n = (ccf->master && ngx_process != NGX_PROCESS_SINGLE)
        ? (ngx_uint_t) ccf->worker_processes : 1;

    if (n > NGX_HTTP_RESILIENCE_MAX_WORKERS) {
        n = NGX_HTTP_RESILIENCE_MAX_WORKERS;
    }

    for (i = 0; workers && rmcf->sh && i < n; i++) {
        st = &rmcf->sh->workers[i];

        wk = cJSON_CreateObject();
        if (wk == NULL) {
            break;
        }

        cJSON_AddItemToArray(workers, wk);

        cJSON_AddNumberToObject(wk, "worker", (double) i);
        cJSON_AddNumberToObject(wk, "pid", (double) st->pid);
        cJSON_AddStringToObject(wk, "state",
                              ngx_http_resilience_redis_state_name(st->state));
        cJSON_AddStringToObject(wk, "subscriber",
                          ngx_http_resilience_redis_state_name(st->sub_state));
        cJSON_AddNumberToObject(wk, "commands", (double) st->commands);
        cJSON_AddNumberToObject(wk, "replies", (double) st->replies);
        cJSON_AddNumberToObject(wk, "errors", (double) st->errors);
        cJSON_AddNumberToObject(wk, "timeouts", (double) st->timeouts);
        cJSON_AddNumberToObject(wk, "connects", (double) st->connects);
        cJSON_AddNumberToObject(wk, "reconnects", (double) st->reconnects);
        cJSON_AddNumberToObject(wk, "messages", (double) st->messages);
        cJSON_AddNumberToObject(wk, "pending", (double) st->pending);
    }

    return redis;
}


static ngx_int_t
ngx_http_resilience_json(ngx_http_request_t *r,
    ngx_http_resilience_metrics_t *m, ngx_http_resilience_writer_t *w)
{
    char                          *text, *name, *type;
    cJSON                         *root, *metrics, *fam, *samples, *smp;
    cJSON                         *labels, *redis;
    ngx_int_t                      rc;
    ngx_uint_t                     i, j, k;
    ngx_http_resilience_family_t  *f;
    ngx_http_resilience_sample_t  *s;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    cJSON_AddStringToObject(root, "version", NGX_HTTP_RESILIENCE_VERSION);

    redis = ngx_http_resilience_json_redis(r);
    if (redis == NULL) {
        goto done;
    }

    cJSON_AddItemToObject(root, "redis", redis);

    metrics = cJSON_AddObjectToObject(root, "metrics");
    if (metrics == NULL) {
        goto done;
    }

    f = m->families.elts;

    for (i = 0; i < m->families.nelts; i++) {
        name = ngx_http_resilience_cstr(r->pool, &f[i].name);
        if (name == NULL) {
            goto done;
        }

        fam = cJSON_AddObjectToObject(metrics, name);
        if (fam == NULL) {
            goto done;
        }

        /* the type names are literals, null-terminated */

        type = (char *) ngx_http_resilience_types[f[i].type].data;
        cJSON_AddStringToObject(fam, "type", type);

        text = ngx_http_resilience_cstr(r->pool, &f[i].help);
        if (text == NULL) {
            goto done;
        }

        cJSON_AddStringToObject(fam, "help", text);

        samples = cJSON_AddArrayToObject(fam, "samples");
        if (samples == NULL) {
            goto done;
        }

        s = f[i].samples.elts;

        for (j = 0; j < f[i].samples.nelts; j++) {
            smp = cJSON_CreateObject();
            if (smp == NULL) {
                goto done;
            }

            cJSON_AddItemToArray(samples, smp);

            labels = cJSON_AddObjectToObject(smp, "labels");
            if (labels == NULL) {
                goto done;
            }

            for (k = 0; k < s[j].nlabels; k++) {
                /* values were copied null-terminated */
                s[j].labels[k].value.data[s[j].labels[k].value.len] = '\0';

                name = ngx_http_resilience_cstr(r->pool,
                                                &s[j].labels[k].key);
                if (name == NULL) {
                    goto done;
                }

                cJSON_AddStringToObject(labels, name,
                                     (char *) s[j].labels[k].value.data);
            }

            if (s[j].histogram == NULL) {
                cJSON_AddNumberToObject(smp, "value", s[j].value);
                continue;
            }

            if (ngx_http_resilience_json_histogram(smp, &s[j]) != NGX_OK) {
                goto done;
            }
        }
    }

    text = cJSON_PrintUnformatted(root);
    if (text == NULL) {
        goto done;
    }

    rc = ngx_http_resilience_write(w, (u_char *) text, ngx_strlen(text));

    if (rc == NGX_OK) {
        rc = ngx_http_resilience_write(w, (u_char *) "\n", 1);
    }

    cJSON_free(text);

done:

    cJSON_Delete(root);

    return rc;
}


/*
 * A histogram sample: "buckets" maps each upper bound, as Prometheus
 * writes it in "le", to its cumulative count, "+Inf" last; then "sum" and
 * "count".
 */

static ngx_int_t
ngx_http_resilience_json_histogram(cJSON *smp,
    ngx_http_resilience_sample_t *s)
{
    u_char                            buf[NGX_HTTP_RESILIENCE_BOUND_LEN + 1];
    cJSON                            *buckets;
    ngx_uint_t                        i;
    ngx_http_resilience_histogram_t  *h;

    h = s->histogram;

    buckets = cJSON_AddObjectToObject(smp, "buckets");
    if (buckets == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i <= h->n; i++) {

        if (i < h->n) {
            *ngx_http_resilience_bound(buf, h->bounds[i]) = '\0';

        } else {
            ngx_cpystrn(buf, (u_char *) "+Inf", sizeof("+Inf"));
        }

        if (cJSON_AddNumberToObject(buckets, (char *) buf,
                                    (double) h->cumulative[i])
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    if (cJSON_AddNumberToObject(smp, "sum", h->sum) == NULL
        || cJSON_AddNumberToObject(smp, "count", s->value) == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}
