
/*
 * nginx-resilience: ngx_http_resilience_module, the core.
 *
 * Directives: resilience_redis (http), resilience_status (location).
 * Holds the per-worker Redis client, the shared parsers and the metrics
 * registry the feature modules build on.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_resilience_redis.h"


#define NGX_HTTP_RESILIENCE_STATUS_OFF  0


typedef struct {
    ngx_uint_t                 status;
} ngx_http_resilience_loc_conf_t;


typedef struct {
    uint64_t                   deadline;     /* Unix ms, 0: none */
} ngx_http_resilience_ctx_t;


static void *ngx_http_resilience_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_resilience_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_resilience_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_resilience_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_resilience_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static char *ngx_http_resilience_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_resilience_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_resilience_admin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_resilience_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_resilience_init_process(ngx_cycle_t *cycle);
static void ngx_http_resilience_exit_process(ngx_cycle_t *cycle);


static ngx_conf_enum_t  ngx_http_resilience_status_formats[] = {
    { ngx_string("prometheus"), 1 },
    { ngx_string("json"), 2 },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_resilience_commands[] = {

    { ngx_string("resilience_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_resilience_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("resilience_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_resilience_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("resilience_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_resilience_admin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_resilience_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_resilience_postconfiguration, /* postconfiguration */

    ngx_http_resilience_create_main_conf,  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_resilience_create_loc_conf,   /* create location configuration */
    ngx_http_resilience_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_resilience_module = {
    NGX_MODULE_V1,
    &ngx_http_resilience_module_ctx,       /* module context */
    ngx_http_resilience_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_resilience_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_resilience_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_resilience_zone_name =
    ngx_string("nginx_resilience_core");


static void *
ngx_http_resilience_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_resilience_collector_t  *col;
    ngx_http_resilience_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_resilience_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rmcf->redis = NULL;
     *     rmcf->shm_zone = NULL;
     *     rmcf->sh = NULL;
     */

    if (ngx_array_init(&rmcf->collectors, cf->pool, 8,
                       sizeof(ngx_http_resilience_collector_t))
        != NGX_OK
        || ngx_array_init(&rmcf->admin, cf->pool, 4,
                          sizeof(ngx_http_resilience_admin_t))
           != NGX_OK)
    {
        return NULL;
    }

    /* the core's own metrics come first */

    col = ngx_array_push(&rmcf->collectors);
    if (col == NULL) {
        return NULL;
    }

    ngx_str_set(&col->name, "redis");
    col->collect = ngx_http_resilience_metrics_redis;
    col->data = rmcf;

    return rmcf;
}


static void *
ngx_http_resilience_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_resilience_loc_conf_t  *rlcf;

    rlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_resilience_loc_conf_t));
    if (rlcf == NULL) {
        return NULL;
    }

    rlcf->status = NGX_CONF_UNSET_UINT;

    return rlcf;
}


static char *
ngx_http_resilience_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_resilience_loc_conf_t *prev = parent;
    ngx_http_resilience_loc_conf_t *conf = child;

    /* a handler is per location: resilience_status is not inherited */

    ngx_conf_init_uint_value(conf->status, NGX_HTTP_RESILIENCE_STATUS_OFF);

    (void) prev;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_resilience_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_resilience_main_conf_t  *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_resilience_module);

    rmcf->shm_zone = ngx_shared_memory_add(cf, &ngx_http_resilience_zone_name,
                                           32 * ngx_pagesize,
                                           &ngx_http_resilience_module);
    if (rmcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    rmcf->shm_zone->init = ngx_http_resilience_init_zone;
    rmcf->shm_zone->data = rmcf;

    return NGX_OK;
}


static ngx_int_t
ngx_http_resilience_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_resilience_main_conf_t  *orm = data;

    ngx_slab_pool_t                  *shpool;
    ngx_http_resilience_main_conf_t  *rmcf;

    rmcf = shm_zone->data;

    if (orm) {
        /* reload: the counters of every worker carry on */
        rmcf->sh = orm->sh;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        rmcf->sh = shpool->data;
        return NGX_OK;
    }

    rmcf->sh = ngx_slab_calloc(shpool, sizeof(ngx_http_resilience_shctx_t));
    if (rmcf->sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = rmcf->sh;

    return NGX_OK;
}


/*
 * resilience_redis <address>[,<address>...] [username=] [password=] [db=]
 *                  [prefix=] [connect_timeout=] [command_timeout=]
 *                  [tls=on|off] [tls_verify=on|off]
 *                  [tls_trusted_certificate=] [tls_server_name=]
 *                  [tls_certificate= tls_certificate_key=];
 */

static char *
ngx_http_resilience_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_resilience_main_conf_t *rmcf = conf;

    char                              *rv;
    ngx_str_t                         *value, name, v;
    ngx_uint_t                         i;
    ngx_http_resilience_redis_conf_t  *rc;

    if (rmcf->redis != NULL) {
        return "is duplicate";
    }

    rc = ngx_pcalloc(cf->pool, sizeof(ngx_http_resilience_redis_conf_t));
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    rv = ngx_http_resilience_redis_parse_address(cf, rc, &value[1]);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    ngx_str_set(&rc->prefix, "nr:");
    rc->db = 0;
    rc->connect_timeout = 200;
    rc->command_timeout = 50;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_resilience_split_option(&value[i], &name, &v)
            != NGX_OK)
        {
            goto invalid;
        }

        if (name.len == 8 && ngx_strncmp(name.data, "password", 8) == 0) {
            if (v.len == 0) {
                goto invalid;
            }

            rc->password = v;
            continue;
        }

        if (name.len == 8 && ngx_strncmp(name.data, "username", 8) == 0) {
            if (v.len == 0) {
                goto invalid;
            }

            rc->username = v;
            continue;
        }

        if (name.len == 2 && ngx_strncmp(name.data, "db", 2) == 0) {
            if (ngx_http_resilience_parse_uint(cf, &v, 0, 1000000, &rc->db)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 6 && ngx_strncmp(name.data, "prefix", 6) == 0) {
            if (v.len > 64) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\" directive: prefix \"%V\" is "
                                   "longer than 64 bytes", &cmd->name, &v);
                return NGX_CONF_ERROR;
            }

            rc->prefix = v;
            continue;
        }

        if (name.len == 15
            && ngx_strncmp(name.data, "connect_timeout", 15) == 0)
        {
            if (ngx_http_resilience_parse_msec(cf, &v, &rc->connect_timeout)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            if (rc->connect_timeout == 0) {
                goto zero;
            }

            continue;
        }

        if (name.len == 15
            && ngx_strncmp(name.data, "command_timeout", 15) == 0)
        {
            if (ngx_http_resilience_parse_msec(cf, &v, &rc->command_timeout)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            if (rc->command_timeout == 0) {
                goto zero;
            }

            continue;
        }

        switch (ngx_http_resilience_redis_parse_option(cf, rc, &name, &v)) {
        case NGX_OK:
            continue;
        case NGX_ERROR:
            return NGX_CONF_ERROR;
        default:
            goto invalid;
        }
    }

    if (rc->username.len && rc->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: \"username=%V\" needs "
                           "\"password=\"", &cmd->name, &rc->username);
        return NGX_CONF_ERROR;
    }

    rv = ngx_http_resilience_redis_init_conf(cf, rc);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rmcf->redis = rc;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" directive: invalid parameter \"%V\"",
                       &cmd->name, &value[i]);
    return NGX_CONF_ERROR;

zero:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" directive: \"%V\" must be more than 0",
                       &cmd->name, &value[i]);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_resilience_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_resilience_loc_conf_t *rlcf = conf;

    ngx_str_t                 *value;
    ngx_uint_t                 i;
    ngx_http_core_loc_conf_t  *clcf;

    if (rlcf->status != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rlcf->status = 1;

    if (cf->args->nelts == 2) {
        for (i = 0; ngx_http_resilience_status_formats[i].name.len; i++) {
            if (ngx_http_resilience_status_formats[i].name.len
                    == value[1].len
                && ngx_strncmp(ngx_http_resilience_status_formats[i].name.data,
                               value[1].data, value[1].len)
                   == 0)
            {
                rlcf->status = ngx_http_resilience_status_formats[i].value;
                break;
            }
        }

        if (ngx_http_resilience_status_formats[i].name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive: invalid format \"%V\", "
                               "expected \"prometheus\" or \"json\"",
                               &cmd->name, &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_resilience_status_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_resilience_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_resilience_admin_handler) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_resilience_admin_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_resilience_status_handler(ngx_http_request_t *r)
{
    ngx_http_resilience_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_resilience_module);

    return ngx_http_resilience_metrics_handler(r, rlcf->status);
}


static ngx_int_t
ngx_http_resilience_init_process(ngx_cycle_t *cycle)
{
    ngx_http_resilience_main_conf_t    *rmcf;
    ngx_http_resilience_redis_stats_t  *stats;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        /* no Redis connection from cache managers and loaders */
        return NGX_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_resilience_module);
    if (rmcf == NULL) {
        return NGX_OK;
    }

    stats = NULL;

    if (rmcf->sh != NULL && ngx_worker < NGX_HTTP_RESILIENCE_MAX_WORKERS) {
        stats = &rmcf->sh->workers[ngx_worker];

    } else if (rmcf->redis != NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "resilience_redis: worker %ui has no metrics slot, "
                      "its Redis counters are not shown",
                      ngx_worker);
    }

    return ngx_http_resilience_redis_init_worker(cycle, rmcf->redis, stats);
}


static void
ngx_http_resilience_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_resilience_redis_exit_worker(cycle);
}


/* for a feature module, at configuration time: is there a Redis? */

ngx_uint_t
ngx_http_resilience_redis_configured(ngx_conf_t *cf)
{
    ngx_http_resilience_main_conf_t  *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_resilience_module);

    return rmcf->redis != NULL;
}


/* every module's preconfiguration: its variables, as nginx's modules add */

ngx_int_t
ngx_http_resilience_add_variables(ngx_conf_t *cf, ngx_http_variable_t *vars)
{
    ngx_http_variable_t  *var, *v;

    for (v = vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/*
 * A module's request context after an internal redirect (error_page, a
 * named location), which clears r->ctx: found again through the request
 * pool's cleanup that the module registered with it as its data, as
 * nginx's realip module does, and set again.
 */

void *
ngx_http_resilience_ctx(ngx_http_request_t *r, ngx_module_t *module,
    ngx_pool_cleanup_pt handler)
{
    void                *ctx;
    ngx_pool_cleanup_t  *cln;

    ctx = r->ctx[module->ctx_index];

    if (ctx != NULL) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == handler) {
            r->ctx[module->ctx_index] = cln->data;
            return cln->data;
        }
    }

    return NULL;
}


/* the request's deadline, in Unix milliseconds, set by the deadline module */

void
ngx_http_resilience_set_deadline(ngx_http_request_t *r, uint64_t at)
{
    ngx_http_resilience_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_resilience_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->main->pool, sizeof(ngx_http_resilience_ctx_t));
        if (ctx == NULL) {
            return;
        }

        ngx_http_set_ctx(r->main, ctx, ngx_http_resilience_module);
    }

    ctx->deadline = at;
}


ngx_uint_t
ngx_http_resilience_deadline_spent(ngx_http_request_t *r)
{
    ngx_time_t                 *tp;
    ngx_http_resilience_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_resilience_module);

    if (ctx == NULL || ctx->deadline == 0) {
        return 0;
    }

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec >= ctx->deadline;
}
