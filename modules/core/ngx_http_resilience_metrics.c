
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


typedef struct {
    ngx_keyval_t                      *labels;
    ngx_uint_t                         nlabels;
    double                             value;
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


static ngx_int_t ngx_http_resilience_write(ngx_http_resilience_writer_t *w,
    u_char *data, size_t len);
static ngx_int_t ngx_http_resilience_write_escaped(
    ngx_http_resilience_writer_t *w, ngx_str_t *s, ngx_uint_t quote);
static ngx_int_t ngx_http_resilience_write_value(
    ngx_http_resilience_writer_t *w, double value);
static ngx_int_t ngx_http_resilience_prometheus(
    ngx_http_resilience_metrics_t *m, ngx_http_resilience_writer_t *w);
static ngx_int_t ngx_http_resilience_json(ngx_http_request_t *r,
    ngx_http_resilience_metrics_t *m, ngx_http_resilience_writer_t *w);
static cJSON *ngx_http_resilience_json_redis(ngx_http_request_t *r);
static char *ngx_http_resilience_cstr(ngx_pool_t *pool, ngx_str_t *s);


static ngx_str_t  ngx_http_resilience_prefix =
    ngx_string("nginx_resilience_");


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
    ngx_uint_t                     i;
    ngx_keyval_t                  *kv;
    ngx_http_resilience_sample_t  *s;

    if (m->current == NULL) {
        return NGX_ERROR;
    }

    s = ngx_array_push(&m->current->samples);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->value = value;
    s->nlabels = nlabels;
    s->labels = NULL;

    if (nlabels == 0) {
        return NGX_OK;
    }

    /* labels may point into shared memory that changes: copy them */

    kv = ngx_palloc(m->pool, nlabels * sizeof(ngx_keyval_t));
    if (kv == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < nlabels; i++) {
        kv[i].key.len = labels[i].key.len;
        kv[i].key.data = ngx_pstrdup(m->pool, &labels[i].key);
        kv[i].value.len = labels[i].value.len;
        kv[i].value.data = ngx_pnalloc(m->pool, labels[i].value.len + 1);

        if (kv[i].key.data == NULL || kv[i].value.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(kv[i].value.data, labels[i].value.data,
                   labels[i].value.len);
    }

    s->labels = kv;

    return NGX_OK;
}


ngx_pool_t *
ngx_http_resilience_metrics_pool(ngx_http_resilience_metrics_t *m)
{
    return m->pool;
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

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
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


static ngx_int_t
ngx_http_resilience_prometheus(ngx_http_resilience_metrics_t *m,
    ngx_http_resilience_writer_t *w)
{
    ngx_uint_t                     i, j, k;
    ngx_http_resilience_family_t  *f;
    ngx_http_resilience_sample_t  *s;

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

        if (f[i].type == NGX_HTTP_RESILIENCE_COUNTER) {
            ngx_http_resilience_lit(w, " counter\n");

        } else {
            ngx_http_resilience_lit(w, " gauge\n");
        }

        s = f[i].samples.elts;

        for (j = 0; j < f[i].samples.nelts; j++) {
            ngx_http_resilience_str(w, &f[i].name);

            for (k = 0; k < s[j].nlabels; k++) {
                if (k == 0) {
                    ngx_http_resilience_lit(w, "{");

                } else {
                    ngx_http_resilience_lit(w, ",");
                }

                ngx_http_resilience_str(w, &s[j].labels[k].key);
                ngx_http_resilience_lit(w, "=\"");

                if (ngx_http_resilience_write_escaped(w,
                                                      &s[j].labels[k].value,
                                                      1)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                ngx_http_resilience_lit(w, "\"");
            }

            if (s[j].nlabels) {
                ngx_http_resilience_lit(w, "}");
            }

            ngx_http_resilience_lit(w, " ");

            if (ngx_http_resilience_write_value(w, s[j].value) != NGX_OK) {
                return NGX_ERROR;
            }

            ngx_http_resilience_lit(w, "\n");
        }
    }

#undef ngx_http_resilience_lit
#undef ngx_http_resilience_str

    return NGX_OK;
}


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
    char                          *text, *name;
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

        cJSON_AddStringToObject(fam, "type",
                                f[i].type == NGX_HTTP_RESILIENCE_COUNTER
                                ? "counter" : "gauge");

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

            cJSON_AddNumberToObject(smp, "value", s[j].value);
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
