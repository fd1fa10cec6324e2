
/*
 * nginx-resilience: what crosses files inside the core module.
 */


#ifndef _NGX_HTTP_RESILIENCE_REDIS_H_INCLUDED_
#define _NGX_HTTP_RESILIENCE_REDIS_H_INCLUDED_


#include "ngx_http_resilience.h"


#define NGX_HTTP_RESILIENCE_MAX_WORKERS  128


typedef struct {
    ngx_str_t                  name;         /* "[::1]:6379", for logs */
    ngx_str_t                  host;         /* null-terminated, hiredis */
    ngx_int_t                  port;         /* 0 for unix: */
    struct sockaddr           *sockaddr;
    socklen_t                  socklen;
} ngx_http_resilience_redis_addr_t;


typedef struct {
    ngx_str_t                  address;      /* as written, for logs */
    ngx_str_t                  host;         /* the first address's */
    ngx_int_t                  port;         /* 0 for unix: */
    ngx_http_resilience_redis_addr_t  *addrs;  /* all, tried in turn */
    ngx_uint_t                 naddrs;
    ngx_str_t                  username;     /* ACL user, Redis 6+ */
    ngx_str_t                  password;
    ngx_uint_t                 db;
    ngx_str_t                  prefix;
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 command_timeout;
    ngx_str_t                  tls_trusted_certificate;
    ngx_str_t                  tls_server_name;
    ngx_str_t                  tls_certificate;
    ngx_str_t                  tls_certificate_key;
#if (NGX_SSL)
    ngx_ssl_t                 *ssl;
#endif
    unsigned                   tls:1;
    unsigned                   tls_noverify:1;
} ngx_http_resilience_redis_conf_t;


struct ngx_http_resilience_redis_script_s {
    ngx_str_t                  body;
    u_char                     sha1[40];
};


typedef struct {
    ngx_str_t                  name;
    ngx_http_resilience_collect_pt  collect;
    void                      *data;
} ngx_http_resilience_collector_t;


typedef struct {
    ngx_http_resilience_redis_stats_t  workers[NGX_HTTP_RESILIENCE_MAX_WORKERS];
} ngx_http_resilience_shctx_t;


typedef struct {
    ngx_str_t                          name;
    ngx_http_resilience_admin_get_pt   get;
    ngx_http_resilience_admin_put_pt   put;
    void                              *data;
} ngx_http_resilience_admin_t;


typedef struct {
    ngx_http_resilience_redis_conf_t  *redis;
    ngx_array_t                        collectors;
    ngx_array_t                        admin;
    ngx_shm_zone_t                    *shm_zone;
    ngx_http_resilience_shctx_t       *sh;
} ngx_http_resilience_main_conf_t;


ngx_int_t ngx_http_resilience_redis_init_worker(ngx_cycle_t *cycle,
    ngx_http_resilience_redis_conf_t *conf,
    ngx_http_resilience_redis_stats_t *stats);
void ngx_http_resilience_redis_exit_worker(ngx_cycle_t *cycle);
char *ngx_http_resilience_redis_parse_address(ngx_conf_t *cf,
    ngx_http_resilience_redis_conf_t *rc, ngx_str_t *value);
ngx_int_t ngx_http_resilience_redis_parse_option(ngx_conf_t *cf,
    ngx_http_resilience_redis_conf_t *rc, ngx_str_t *name,
    ngx_str_t *value);
char *ngx_http_resilience_redis_init_conf(ngx_conf_t *cf,
    ngx_http_resilience_redis_conf_t *rc);

ngx_int_t ngx_http_resilience_metrics_handler(ngx_http_request_t *r,
    ngx_uint_t format);
ngx_int_t ngx_http_resilience_admin_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_resilience_metrics_redis(ngx_http_resilience_metrics_t *m,
    void *data);


#endif /* _NGX_HTTP_RESILIENCE_REDIS_H_INCLUDED_ */
