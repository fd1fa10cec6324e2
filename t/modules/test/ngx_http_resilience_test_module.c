
/*
 * nginx-resilience: a module for the test suites only.
 *
 * It exposes the core module's C API to Test::Nginx blocks:
 *
 *   resilience_test_redis;             GET ?cmd=SET k v | ?batch=A|B
 *                                       | ?script=<name>&keys=N&args=a b
 *                                      [&wait=1: until connected, 3 s]
 *                                      [&repeat=N: cmd N times, answers
 *                                       the count of each outcome]
 *   resilience_test_rss;               ?mark: this worker's VmRSS now;
 *                                      ?max=<kB>: its growth since
 *   resilience_test_script <name> <body>;          (http)
 *   resilience_test_subscribe <channel>;           (http)
 *   resilience_test_messages;          what this worker received
 *   resilience_test_parse <kind> <value>;          answers the parsed value
 *   resilience_test_metric <name> <label value>;   (http) a gauge of 42
 *   resilience_test_histogram <name> <label value> [unordered];   (http)
 *                                      a histogram (bounds out of order:
 *                                      the collector fails)
 *   resilience_test_leak;              leaks memory, for the harness test
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_resilience.h"


#define NGX_HTTP_RESILIENCE_TEST_MESSAGES  16


typedef struct {
    ngx_str_t                  name;
    ngx_http_resilience_redis_script_t  *script;
} ngx_http_resilience_test_script_t;


typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  label;
    ngx_uint_t                 unordered;
} ngx_http_resilience_test_metric_t;


typedef struct {
    ngx_event_t                ev;
    ngx_http_request_t        *r;
    ngx_uint_t                 tries;
} ngx_http_resilience_test_wait_t;


typedef struct {
    ngx_http_request_t        *r;
    ngx_uint_t                 left;
    ngx_uint_t                 n[5];     /* by rc */
    ngx_msec_t                 start;
    ngx_msec_t                 busy_ms;  /* the slowest BUSY */
} ngx_http_resilience_test_count_t;


typedef struct {
    ngx_array_t                scripts;
    ngx_array_t                channels;
} ngx_http_resilience_test_main_conf_t;


typedef struct {
    ngx_str_t                  kind;
    ngx_str_t                  value;
    ngx_str_t                  result;
} ngx_http_resilience_test_loc_conf_t;


static void *ngx_http_resilience_test_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_resilience_test_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_resilience_test_redis(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_resilience_test_script(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_resilience_test_subscribe(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_resilience_test_messages(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_resilience_test_parse(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_resilience_test_metric(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_resilience_test_leak(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_resilience_test_rss(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_resilience_test_repeat(ngx_http_request_t *r,
    ngx_uint_t n, ngx_uint_t argc, const char **argv, size_t *argvlen);
static void ngx_http_resilience_test_counted(ngx_int_t rc,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_resilience_test_rss_handler(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_resilience_test_redis_handler(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_resilience_test_send(ngx_http_request_t *r);
static ngx_uint_t ngx_http_resilience_test_waiting(ngx_http_request_t *r);
static void ngx_http_resilience_test_wait_handler(ngx_event_t *ev);
static void ngx_http_resilience_test_wait_cleanup(void *data);
static void ngx_http_resilience_test_reply(ngx_int_t rc, redisReply *reply,
    void *data);
static u_char *ngx_http_resilience_test_render(u_char *p, u_char *last,
    redisReply *reply);
static ngx_int_t ngx_http_resilience_test_split(ngx_http_request_t *r,
    ngx_str_t *text, u_char sep, ngx_array_t *words);
static ngx_int_t ngx_http_resilience_test_text(ngx_http_request_t *r,
    ngx_str_t *text);
static ngx_int_t ngx_http_resilience_test_messages_handler(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_resilience_test_parse_handler(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_resilience_test_collect(
    ngx_http_resilience_metrics_t *m, void *data);
static ngx_int_t ngx_http_resilience_test_collect_histogram(
    ngx_http_resilience_metrics_t *m, void *data);
static ngx_int_t ngx_http_resilience_test_leak_handler(
    ngx_http_request_t *r);
static void ngx_http_resilience_test_message(ngx_str_t *channel,
    ngx_str_t *message, void *data);
static ngx_int_t ngx_http_resilience_test_init_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_resilience_test_commands[] = {

    { ngx_string("resilience_test_redis"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_resilience_test_redis,
      0, 0, NULL },

    { ngx_string("resilience_test_script"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_resilience_test_script,
      NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL },

    { ngx_string("resilience_test_subscribe"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_resilience_test_subscribe,
      NGX_HTTP_MAIN_CONF_OFFSET, 0, NULL },

    { ngx_string("resilience_test_messages"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_resilience_test_messages,
      0, 0, NULL },

    { ngx_string("resilience_test_parse"),
      NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_resilience_test_parse,
      NGX_HTTP_LOC_CONF_OFFSET, 0, NULL },

    { ngx_string("resilience_test_metric"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_resilience_test_metric,
      0, 0, NULL },

    { ngx_string("resilience_test_histogram"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_http_resilience_test_metric,
      0, 0, NULL },

    { ngx_string("resilience_test_rss"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_resilience_test_rss,
      0, 0, NULL },

    { ngx_string("resilience_test_leak"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_resilience_test_leak,
      0, 0, NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_resilience_test_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */
    ngx_http_resilience_test_create_main_conf,
    NULL,                                  /* init main configuration */
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    ngx_http_resilience_test_create_loc_conf,
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_resilience_test_module = {
    NGX_MODULE_V1,
    &ngx_http_resilience_test_module_ctx,  /* module context */
    ngx_http_resilience_test_commands,     /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_resilience_test_init_process, /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t
    ngx_http_resilience_test_msgs[NGX_HTTP_RESILIENCE_TEST_MESSAGES];
static ngx_uint_t  ngx_http_resilience_test_nmsgs;
static ngx_int_t   ngx_http_resilience_test_rss_mark;


static void *
ngx_http_resilience_test_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_resilience_test_main_conf_t  *tmcf;

    tmcf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_resilience_test_main_conf_t));
    if (tmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&tmcf->scripts, cf->pool, 4,
                       sizeof(ngx_http_resilience_test_script_t))
        != NGX_OK
        || ngx_array_init(&tmcf->channels, cf->pool, 4, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NULL;
    }

    return tmcf;
}


static void *
ngx_http_resilience_test_create_loc_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_resilience_test_loc_conf_t));
}


static char *
ngx_http_resilience_test_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_resilience_test_redis_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_resilience_test_script(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_resilience_test_main_conf_t *tmcf = conf;

    ngx_str_t                          *value;
    ngx_http_resilience_test_script_t  *s;

    value = cf->args->elts;

    s = ngx_array_push(&tmcf->scripts);
    if (s == NULL) {
        return NGX_CONF_ERROR;
    }

    s->name = value[1];
    s->script = ngx_http_resilience_redis_script(cf, &value[2]);

    return s->script ? NGX_CONF_OK : NGX_CONF_ERROR;
}


static char *
ngx_http_resilience_test_subscribe(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_resilience_test_main_conf_t *tmcf = conf;

    ngx_str_t  *value, *ch;

    value = cf->args->elts;

    ch = ngx_array_push(&tmcf->channels);
    if (ch == NULL) {
        return NGX_CONF_ERROR;
    }

    *ch = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_resilience_test_messages(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_resilience_test_messages_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_resilience_test_parse(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_resilience_test_loc_conf_t *tlcf = conf;

    u_char                            *p;
    size_t                             size;
    ngx_str_t                         *value, *kind;
    ngx_uint_t                         n, i, s;
    ngx_msec_t                         msec;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_resilience_rate_t         rate;
    ngx_http_resilience_status_set_t   set;

    value = cf->args->elts;
    kind = &value[1];

    p = ngx_pnalloc(cf->pool, 4096);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    tlcf->result.data = p;

    if (ngx_strcmp(kind->data, "duration") == 0) {
        if (ngx_http_resilience_parse_msec(cf, &value[2], &msec) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        p = ngx_sprintf(p, "%Mms", msec);

    } else if (ngx_strcmp(kind->data, "size") == 0) {
        if (ngx_http_resilience_parse_size(cf, &value[2], &size) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        p = ngx_sprintf(p, "%uz bytes", size);

    } else if (ngx_strcmp(kind->data, "percent") == 0) {
        if (ngx_http_resilience_parse_percent(cf, &value[2], &n) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        p = ngx_sprintf(p, "%ui basis points", n);

    } else if (ngx_strcmp(kind->data, "rate") == 0) {
        if (ngx_http_resilience_parse_rate(cf, &value[2], &rate) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        p = ngx_sprintf(p, "%uL/1000 per %Mms", rate.milli, rate.period);

    } else if (ngx_strcmp(kind->data, "status") == 0) {
        ngx_memzero(&set, sizeof(set));

        for (i = 2; i < cf->args->nelts; i++) {
            if (ngx_http_resilience_parse_status(cf, &value[i], &set)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
        }

        n = 0;

        for (s = 0; s < NGX_HTTP_RESILIENCE_STATUS_MAX; s++) {
            if (ngx_http_resilience_status_test(&set, s)) {
                if (n++ < 3) {
                    p = ngx_sprintf(p, "%ui ", s);
                }
            }
        }

        p = ngx_sprintf(p, "(%ui codes)", n);

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "unknown kind \"%V\"", kind);
        return NGX_CONF_ERROR;
    }

    *p++ = '\n';
    tlcf->result.len = p - tlcf->result.data;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_resilience_test_parse_handler;

    return NGX_CONF_OK;
}


/* resilience_test_metric and resilience_test_histogram */

static char *
ngx_http_resilience_test_metric(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t                          *value;
    ngx_http_resilience_collect_pt      collect;
    ngx_http_resilience_test_metric_t  *m;

    value = cf->args->elts;

    m = ngx_palloc(cf->pool, sizeof(ngx_http_resilience_test_metric_t));
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }

    m->name.len = value[1].len;
    m->name.data = (u_char *) ngx_pnalloc(cf->pool, value[1].len + 1);
    if (m->name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(m->name.data, value[1].data, value[1].len + 1);
    m->label = value[2];
    m->unordered = 0;

    collect = ngx_http_resilience_test_collect;

    if (ngx_strcmp(cmd->name.data, "resilience_test_histogram") == 0) {
        collect = ngx_http_resilience_test_collect_histogram;

        if (cf->args->nelts == 4) {
            if (ngx_strcmp(value[3].data, "unordered") != 0) {
                return "takes \"unordered\" as its third argument";
            }

            m->unordered = 1;
        }
    }

    if (ngx_http_resilience_metrics_add_collector(cf, collect, m) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_resilience_test_leak(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_resilience_test_leak_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_resilience_test_split(ngx_http_request_t *r, ngx_str_t *text,
    u_char sep, ngx_array_t *words)
{
    u_char     *p, *last, *start, *dst;
    ngx_str_t  *w;

    /* decode first: "+" and %20 are both spaces */

    dst = ngx_pnalloc(r->pool, text->len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    p = text->data;
    start = dst;
    ngx_unescape_uri(&dst, &p, text->len, 0);

    last = dst;

    for (p = start; p < last; p++) {
        if (*p == '+') {
            *p = ' ';
        }
    }

    p = start;

    while (p < last) {
        while (p < last && *p == sep) {
            p++;
        }

        if (p == last) {
            break;
        }

        start = p;

        while (p < last && *p != sep) {
            p++;
        }

        w = ngx_array_push(words);
        if (w == NULL) {
            return NGX_ERROR;
        }

        w->data = start;
        w->len = p - start;
    }

    return NGX_OK;
}


/*
 * A connection still being set up (slow under valgrind) is waited for,
 * with a timer, up to 3 s, so that tests do not depend on start-up speed.
 */

static ngx_int_t
ngx_http_resilience_test_redis_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_pool_cleanup_t               *cln;
    ngx_http_resilience_test_wait_t  *w;

    if (!ngx_http_resilience_test_waiting(r)) {
        rc = ngx_http_resilience_test_send(r);

        if (rc == NGX_DONE) {
            r->main->count++;
        }

        return rc;
    }

    w = ngx_pcalloc(r->pool, sizeof(ngx_http_resilience_test_wait_t));
    if (w == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_resilience_test_wait_cleanup;
    cln->data = w;

    w->r = r;
    w->ev.handler = ngx_http_resilience_test_wait_handler;
    w->ev.data = w;
    w->ev.log = r->connection->log;

    ngx_add_timer(&w->ev, 10);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_resilience_test_wait_handler(ngx_event_t *ev)
{
    ngx_int_t                         rc;
    ngx_http_resilience_test_wait_t  *w;

    w = ev->data;

    if (ngx_http_resilience_test_waiting(w->r) && ++w->tries < 300) {
        ngx_add_timer(ev, 10);
        return;
    }

    rc = ngx_http_resilience_test_send(w->r);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(w->r, rc);
    }
}


static ngx_uint_t
ngx_http_resilience_test_waiting(ngx_http_request_t *r)
{
    ngx_str_t                          arg;
    ngx_http_resilience_redis_state_e  state;

    state = ngx_http_resilience_redis_state();

    if (state == NGX_HTTP_RESILIENCE_REDIS_CONNECTING) {
        return 1;
    }

    return state == NGX_HTTP_RESILIENCE_REDIS_DISCONNECTED
           && ngx_http_arg(r, (u_char *) "wait", 4, &arg) == NGX_OK;
}


static void
ngx_http_resilience_test_wait_cleanup(void *data)
{
    ngx_http_resilience_test_wait_t  *w = data;

    if (w->ev.timer_set) {
        ngx_del_timer(&w->ev);
    }
}


static ngx_int_t
ngx_http_resilience_test_send(ngx_http_request_t *r)
{
    ngx_int_t                              rc;
    ngx_str_t                              arg, *w, *cw, keys;
    ngx_uint_t                             i, j, nkeys;
    ngx_array_t                            words, cmdw;
    const char                           **argv;
    size_t                                *argvlen;
    ngx_http_resilience_redis_cmd_t       *cmds;
    ngx_http_resilience_test_script_t     *s;
    ngx_http_resilience_test_main_conf_t  *tmcf;

    if (ngx_array_init(&words, r->pool, 8, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_arg(r, (u_char *) "cmd", 3, &arg) == NGX_OK) {

        if (ngx_http_resilience_test_split(r, &arg, ' ', &words) != NGX_OK
            || words.nelts == 0)
        {
            return NGX_HTTP_BAD_REQUEST;
        }

        w = words.elts;
        argv = ngx_palloc(r->pool, words.nelts * sizeof(char *));
        argvlen = ngx_palloc(r->pool, words.nelts * sizeof(size_t));
        if (argv == NULL || argvlen == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        for (i = 0; i < words.nelts; i++) {
            argv[i] = (const char *) w[i].data;
            argvlen[i] = w[i].len;
        }

        if (ngx_http_arg(r, (u_char *) "repeat", 6, &arg) == NGX_OK) {
            nkeys = ngx_atoi(arg.data, arg.len);
            if (nkeys == (ngx_uint_t) NGX_ERROR || nkeys == 0) {
                return NGX_HTTP_BAD_REQUEST;
            }

            return ngx_http_resilience_test_repeat(r, nkeys, words.nelts,
                                                   argv, argvlen);
        }

        rc = ngx_http_resilience_redis_command(words.nelts, argv, argvlen,
                                               ngx_http_resilience_test_reply,
                                               r);

    } else if (ngx_http_arg(r, (u_char *) "batch", 5, &arg) == NGX_OK) {

        if (ngx_http_resilience_test_split(r, &arg, '|', &words) != NGX_OK
            || words.nelts == 0)
        {
            return NGX_HTTP_BAD_REQUEST;
        }

        w = words.elts;
        cmds = ngx_palloc(r->pool,
                          words.nelts
                          * sizeof(ngx_http_resilience_redis_cmd_t));
        if (cmds == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        for (i = 0; i < words.nelts; i++) {
            if (ngx_array_init(&cmdw, r->pool, 4, sizeof(ngx_str_t))
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            /* the words are decoded already: split them on spaces only */

            cw = NULL;
            for (j = 0; j < w[i].len; j++) {
                if (w[i].data[j] == ' ') {
                    cw = NULL;
                    continue;
                }

                if (cw == NULL) {
                    cw = ngx_array_push(&cmdw);
                    if (cw == NULL) {
                        return NGX_HTTP_INTERNAL_SERVER_ERROR;
                    }

                    cw->data = &w[i].data[j];
                    cw->len = 0;
                }

                cw->len++;
            }

            cw = cmdw.elts;
            argv = ngx_palloc(r->pool, cmdw.nelts * sizeof(char *));
            argvlen = ngx_palloc(r->pool, cmdw.nelts * sizeof(size_t));
            if (argv == NULL || argvlen == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            for (j = 0; j < cmdw.nelts; j++) {
                argv[j] = (const char *) cw[j].data;
                argvlen[j] = cw[j].len;
            }

            cmds[i].argc = cmdw.nelts;
            cmds[i].argv = argv;
            cmds[i].argvlen = argvlen;
        }

        rc = ngx_http_resilience_redis_batch(cmds, words.nelts,
                                             ngx_http_resilience_test_reply,
                                             r);

    } else if (ngx_http_arg(r, (u_char *) "script", 6, &arg) == NGX_OK) {

        tmcf = ngx_http_get_module_main_conf(r,
                                             ngx_http_resilience_test_module);
        s = tmcf->scripts.elts;

        for (i = 0; i < tmcf->scripts.nelts; i++) {
            if (s[i].name.len == arg.len
                && ngx_strncmp(s[i].name.data, arg.data, arg.len) == 0)
            {
                break;
            }
        }

        if (i == tmcf->scripts.nelts) {
            return NGX_HTTP_NOT_FOUND;
        }

        nkeys = 0;

        if (ngx_http_arg(r, (u_char *) "keys", 4, &keys) == NGX_OK) {
            nkeys = ngx_atoi(keys.data, keys.len);
        }

        if (ngx_http_arg(r, (u_char *) "args", 4, &arg) == NGX_OK
            && ngx_http_resilience_test_split(r, &arg, ' ', &words)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        w = words.elts;
        argv = ngx_palloc(r->pool, (words.nelts + 1) * sizeof(char *));
        argvlen = ngx_palloc(r->pool, (words.nelts + 1) * sizeof(size_t));
        if (argv == NULL || argvlen == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        for (j = 0; j < words.nelts; j++) {
            argv[j] = (const char *) w[j].data;
            argvlen[j] = w[j].len;
        }

        rc = ngx_http_resilience_redis_evalsha(s[i].script, nkeys,
                                               words.nelts, argv, argvlen,
                                               ngx_http_resilience_test_reply,
                                               r);

    } else {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_http_resilience_test_reply(ngx_int_t rc, redisReply *reply, void *data)
{
    ngx_http_request_t *r = data;

    u_char     *p, *last;
    ngx_str_t   text;

    p = ngx_pnalloc(r->pool, 8192);
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    text.data = p;
    last = p + 8190;

    switch (rc) {
    case NGX_HTTP_RESILIENCE_REDIS_REPLY:
        p = ngx_http_resilience_test_render(p, last, reply);
        break;
    case NGX_HTTP_RESILIENCE_REDIS_TIMEDOUT:
        p = ngx_cpymem(p, "timed out", 9);
        break;
    case NGX_HTTP_RESILIENCE_REDIS_LOST:
        p = ngx_cpymem(p, "lost", 4);
        break;
    case NGX_HTTP_RESILIENCE_REDIS_BUSY:
        p = ngx_cpymem(p, "busy", 4);
        break;
    default:
        p = ngx_cpymem(p, "failed", 6);
        break;
    }

    *p++ = '\n';
    text.len = p - text.data;

    ngx_http_finalize_request(r, ngx_http_resilience_test_text(r, &text));
}


static u_char *
ngx_http_resilience_test_render(u_char *p, u_char *last, redisReply *reply)
{
    size_t  i;

    switch (reply->type) {
    case REDIS_REPLY_STRING:
        return ngx_slprintf(p, last, "\"%*s\"", (size_t) reply->len,
                            reply->str);
    case REDIS_REPLY_STATUS:
        return ngx_slprintf(p, last, "%*s", (size_t) reply->len, reply->str);
    case REDIS_REPLY_ERROR:
        return ngx_slprintf(p, last, "error: %*s", (size_t) reply->len,
                            reply->str);
    case REDIS_REPLY_INTEGER:
        return ngx_slprintf(p, last, "(integer) %L", (int64_t) reply->integer);
    case REDIS_REPLY_NIL:
        return ngx_slprintf(p, last, "(nil)");
    case REDIS_REPLY_ARRAY:
        p = ngx_slprintf(p, last, "[");
        for (i = 0; i < reply->elements; i++) {
            if (i) {
                p = ngx_slprintf(p, last, ", ");
            }
            p = ngx_http_resilience_test_render(p, last, reply->element[i]);
        }
        return ngx_slprintf(p, last, "]");
    default:
        return ngx_slprintf(p, last, "(type %d)", reply->type);
    }
}


static ngx_int_t
ngx_http_resilience_test_text(ngx_http_request_t *r, ngx_str_t *text)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = text->len;
    ngx_str_set(&r->headers_out.content_type, "text/plain");

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = text->data;
    b->last = text->data + text->len;
    b->memory = 1;
    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_resilience_test_messages_handler(ngx_http_request_t *r)
{
    u_char      *p;
    ngx_str_t    text;
    ngx_uint_t   i;

    p = ngx_pnalloc(r->pool, 64 + NGX_HTTP_RESILIENCE_TEST_MESSAGES * 256);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.data = p;

    for (i = 0; i < ngx_http_resilience_test_nmsgs; i++) {
        p = ngx_sprintf(p, "%V\n", &ngx_http_resilience_test_msgs[i]);
    }

    p = ngx_sprintf(p, "%ui messages\n", ngx_http_resilience_test_nmsgs);
    text.len = p - text.data;

    return ngx_http_resilience_test_text(r, &text);
}


static ngx_int_t
ngx_http_resilience_test_parse_handler(ngx_http_request_t *r)
{
    ngx_http_resilience_test_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_resilience_test_module);

    return ngx_http_resilience_test_text(r, &tlcf->result);
}


static ngx_int_t
ngx_http_resilience_test_collect(ngx_http_resilience_metrics_t *m,
    void *data)
{
    ngx_http_resilience_test_metric_t *tm = data;

    ngx_keyval_t  label;

    if (ngx_http_resilience_metrics_family(m, (char *) tm->name.data,
                                           NGX_HTTP_RESILIENCE_GAUGE,
                                           "A test gauge.\\ with \"help\"\n"
                                           "on two lines.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&label.key, "label");
    label.value = tm->label;

    return ngx_http_resilience_metrics_sample(m, &label, 1, 42);
}


/*
 * Buckets of 1, 0, 2, 0 and 3 (above 2.5), a sum of 12.5.  The registry
 * must refuse a plain sample in a histogram family: if it took one, the
 * collector fails and the status request with it.
 */

static ngx_int_t
ngx_http_resilience_test_collect_histogram(ngx_http_resilience_metrics_t *m,
    void *data)
{
    ngx_http_resilience_test_metric_t *tm = data;

    ngx_keyval_t  label;

    static double    bounds[] = { 0.005, 0.5, 1, 2.5 };
    static double    unordered[] = { 0.005, 1, 0.5, 2.5 };
    static uint64_t  counts[] = { 1, 0, 2, 0, 3 };

    if (ngx_http_resilience_metrics_family(m, (char *) tm->name.data,
                                           NGX_HTTP_RESILIENCE_HISTOGRAM,
                                           "A test histogram.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_resilience_metrics_sample(m, NULL, 0, 1) != NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_str_set(&label.key, "label");
    label.value = tm->label;

    return ngx_http_resilience_metrics_histogram(m, &label, 1, 4,
                                      tm->unordered ? unordered : bounds,
                                      counts, 12.5);
}


/* one command n times: the count of each outcome, once all are in */

static ngx_int_t
ngx_http_resilience_test_repeat(ngx_http_request_t *r, ngx_uint_t n,
    ngx_uint_t argc, const char **argv, size_t *argvlen)
{
    ngx_uint_t                         i;
    ngx_http_resilience_test_count_t  *cnt;

    cnt = ngx_pcalloc(r->pool, sizeof(ngx_http_resilience_test_count_t));
    if (cnt == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cnt->r = r;
    cnt->left = n;
    cnt->start = ngx_current_msec;

    /* the last callback finalizes: none fires from inside the call */

    for (i = 0; i < n; i++) {
        if (ngx_http_resilience_redis_command(argc, argv, argvlen,
                                             ngx_http_resilience_test_counted,
                                             cnt)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return NGX_DONE;
}


static void
ngx_http_resilience_test_counted(ngx_int_t rc, redisReply *reply,
    void *data)
{
    ngx_http_resilience_test_count_t *cnt = data;

    u_char     *p;
    ngx_str_t   text;
    ngx_msec_t  ms;

    if (rc >= 0 && rc < 5) {
        cnt->n[rc]++;
    }

    ms = ngx_current_msec - cnt->start;

    if (rc == NGX_HTTP_RESILIENCE_REDIS_BUSY && ms > cnt->busy_ms) {
        cnt->busy_ms = ms;
    }

    if (--cnt->left) {
        return;
    }

    p = ngx_pnalloc(cnt->r->pool, 256);
    if (p == NULL) {
        ngx_http_finalize_request(cnt->r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    text.data = p;
    text.len = ngx_sprintf(p, "reply=%ui failed=%ui timedout=%ui busy=%ui "
                           "lost=%ui busy_ms=%M\n",
                           cnt->n[NGX_HTTP_RESILIENCE_REDIS_REPLY],
                           cnt->n[NGX_HTTP_RESILIENCE_REDIS_FAILED],
                           cnt->n[NGX_HTTP_RESILIENCE_REDIS_TIMEDOUT],
                           cnt->n[NGX_HTTP_RESILIENCE_REDIS_BUSY],
                           cnt->n[NGX_HTTP_RESILIENCE_REDIS_LOST],
                           cnt->busy_ms)
               - p;

    ngx_http_finalize_request(cnt->r,
                              ngx_http_resilience_test_text(cnt->r, &text));
}


static char *
ngx_http_resilience_test_rss(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_resilience_test_rss_handler;

    return NGX_CONF_OK;
}


/* this worker's resident set (VmRSS, kB), against a mark taken before */

static ngx_int_t
ngx_http_resilience_test_rss_handler(ngx_http_request_t *r)
{
    u_char     *p, *last, buf[4096];
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_str_t   arg, text;
    ngx_int_t   rss, max;

    fd = ngx_open_file("/proc/self/status", NGX_FILE_RDONLY, NGX_FILE_OPEN,
                       0);
    if (fd == NGX_INVALID_FILE) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = ngx_read_fd(fd, buf, sizeof(buf) - 1);
    ngx_close_file(fd);

    if (n <= 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    buf[n] = '\0';

    p = (u_char *) ngx_strstr(buf, "VmRSS:");
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (p += 6; *p == ' ' || *p == '\t'; p++) { /* void */ }

    for (last = p; *last >= '0' && *last <= '9'; last++) { /* void */ }

    rss = ngx_atoi(p, last - p);
    if (rss == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, 128);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.data = p;

    if (ngx_http_arg(r, (u_char *) "max", 3, &arg) == NGX_OK) {
        max = ngx_atoi(arg.data, arg.len);

        text.len = ngx_sprintf(p, "grew by %i kB, %s %i kB\n",
                               rss - ngx_http_resilience_test_rss_mark,
                               (rss - ngx_http_resilience_test_rss_mark
                                <= max) ? "within" : "over", max)
                   - p;

    } else {
        ngx_http_resilience_test_rss_mark = rss;
        text.len = ngx_sprintf(p, "rss %i kB\n", rss) - p;
    }

    return ngx_http_resilience_test_text(r, &text);
}


/* the bug is the point here: keep the compiler from refusing it */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

static ngx_int_t
ngx_http_resilience_test_leak_handler(ngx_http_request_t *r)
{
    int        *p;
    ngx_str_t   text = ngx_string("leaked\n");

    p = malloc(64 * sizeof(int));

    /* a branch on uninitialised memory, then the block is lost */
    if (p != NULL && p[3] == 7) {
        ngx_str_set(&text, "seven\n");
    }

    p = NULL;

    return ngx_http_resilience_test_text(r, &text);
}


static void
ngx_http_resilience_test_message(ngx_str_t *channel, ngx_str_t *message,
    void *data)
{
    u_char      *p;
    ngx_str_t   *slot;

    if (ngx_http_resilience_test_nmsgs == NGX_HTTP_RESILIENCE_TEST_MESSAGES) {
        return;
    }

    slot = &ngx_http_resilience_test_msgs[ngx_http_resilience_test_nmsgs];

    p = ngx_pnalloc(ngx_cycle->pool, 250);
    if (p == NULL) {
        return;
    }

    slot->data = p;
    slot->len = ngx_snprintf(p, 250, "%V: %V", channel, message) - p;

    ngx_http_resilience_test_nmsgs++;
}


static ngx_int_t
ngx_http_resilience_test_init_process(ngx_cycle_t *cycle)
{
    ngx_str_t                             *ch;
    ngx_uint_t                             i;
    ngx_http_resilience_test_main_conf_t  *tmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    tmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_resilience_test_module);
    if (tmcf == NULL) {
        return NGX_OK;
    }

    ch = tmcf->channels.elts;

    for (i = 0; i < tmcf->channels.nelts; i++) {
        if (ngx_http_resilience_redis_subscribe(&ch[i],
                                          ngx_http_resilience_test_message,
                                          NULL)
            == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
