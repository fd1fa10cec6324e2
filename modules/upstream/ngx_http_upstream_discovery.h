
/*
 * nginx-resilience: ngx_http_upstream_discovery_module, what crosses its
 * files.  Its symbols take the prefix ngx_http_ud_ ("upstream
 * discovery"), as nginx's round robin takes ngx_http_upstream_rr_: the
 * module's full name would push its lines past 80 columns.
 */


#ifndef _NGX_HTTP_UPSTREAM_DISCOVERY_H_INCLUDED_
#define _NGX_HTTP_UPSTREAM_DISCOVERY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_resilience.h"


#define NGX_HTTP_UD_MAX_PEERS      64
#define NGX_HTTP_UD_NAME_LEN       64

/* peer states */
#define NGX_HTTP_UD_FREE           0
#define NGX_HTTP_UD_UP             1
#define NGX_HTTP_UD_DOWN           2
#define NGX_HTTP_UD_CHECKING       3
#define NGX_HTTP_UD_DRAINING       4

/* where a peer comes from */
#define NGX_HTTP_UD_STATIC         0
#define NGX_HTTP_UD_FILE           1
#define NGX_HTTP_UD_REDIS          2
#define NGX_HTTP_UD_CONSUL         3
#define NGX_HTTP_UD_DNS            4

/* set by hand through resilience_admin */
#define NGX_HTTP_UD_ADMIN_NONE     0
#define NGX_HTTP_UD_ADMIN_DRAIN    1
#define NGX_HTTP_UD_ADMIN_DOWN     2

#define NGX_HTTP_UD_CHECK_HTTP     0
#define NGX_HTTP_UD_CHECK_TCP      1
#define NGX_HTTP_UD_CHECK_HTTPS    2    /* read as HTTP with tls set */


/* TLS for probes: the context, the name sent and checked */

typedef struct {
#if (NGX_HTTP_SSL)
    ngx_ssl_t                 *ssl;
#endif
    ngx_str_t                  name;         /* SNI; NUL-terminated */
    ngx_uint_t                 verify;       /* a trusted CA was given */
} ngx_http_ud_tls_t;


typedef struct {
    ngx_http_resilience_status_set_t  status;
    ngx_uint_t                 has_status;
    ngx_array_t                headers;      /* ngx_http_ud_header_match_t */
    ngx_regex_t               *body;
    ngx_str_t                  name;
} ngx_http_ud_match_t;


typedef struct {
    ngx_str_t                  name;         /* lowercase */
    ngx_str_t                  value;        /* "=": exact */
    ngx_regex_t               *regex;        /* "~" */
} ngx_http_ud_header_match_t;


/* one peer, in shared memory */

typedef struct {
    u_char                     state;
    u_char                     source;
    u_char                     admin;
    u_char                     backup;
    u_char                     last_ok;      /* last probe: 1 passed */
    u_char                     checked;      /* probed at least once */
    u_short                    name_len;
    ngx_uint_t                 weight;
    ngx_uint_t                 max_fails;
    ngx_msec_t                 fail_timeout;
    ngx_uint_t                 max_conns;    /* 0: no limit */
    socklen_t                  socklen;
    ngx_sockaddr_t             sockaddr;
    u_char                     name[NGX_SOCKADDR_STRLEN];
    ngx_atomic_t               conns;        /* requests in flight */
    ngx_atomic_t               fails;        /* probes, consecutive */
    ngx_atomic_t               passes;       /* probes, consecutive */
    ngx_atomic_t               live_fails;   /* traffic, in fail_timeout */
    ngx_msec_t                 live_failed;  /* last live failure */
    ngx_msec_t                 live_checked; /* window start, as nginx's */
    ngx_atomic_t               probe_owner;  /* pid probing now */
    ngx_msec_t                 probe_next;
    ngx_msec_t                 probe_started;
    ngx_msec_t                 latency;      /* last probe */
    ngx_msec_t                 vanished;     /* left discovery at, or 0 */
    ngx_msec_t                 up_since;     /* slow start from, or 0 */
    ngx_atomic_t               requests;
    ngx_atomic_t               probes;
    ngx_atomic_t               generation;   /* bumped on slot reuse */
} ngx_http_ud_peer_t;


/*
 * One worker's requests in flight on each peer of a table, kept by that
 * worker alone, so that a worker that dies with requests in flight (a
 * crash, SIGKILL) does not leave them counted on the peers for ever: its
 * successor in the same process slot, or any worker that starts after
 * it, takes them off (ngx_http_ud_owner_init()).
 */

typedef struct ngx_http_ud_owner_s  ngx_http_ud_owner_t;

struct ngx_http_ud_owner_s {
    ngx_http_ud_owner_t       *next;
    ngx_int_t                  slot;         /* ngx_process_slot */
    ngx_pid_t                  pid;          /* 0: free */
    uint32_t                   conns[NGX_HTTP_UD_MAX_PEERS];
};


#if (NGX_HTTP_SSL)

/* a worker's SSL session for a peer's slot, as round robin keeps one */

typedef struct {
    ngx_ssl_session_t         *session;
    ngx_atomic_uint_t          generation;   /* the slot's, when saved */
} ngx_http_ud_session_t;

#endif


typedef struct {
    u_char                     name[NGX_HTTP_UD_NAME_LEN];
    size_t                     name_len;
    ngx_uint_t                 npeers;       /* slots in use, high mark */
    ngx_atomic_t               source_lock;  /* pid fetching, or 0 */
    ngx_msec_t                 source_next;
    ngx_msec_t                 source_started;
    uint32_t                   source_crc;
    uint64_t                   consul_index;
    ngx_uint_t                 source_ok;    /* fetched at least once */
    ngx_atomic_t               version;      /* bumped on every change */
    ngx_http_ud_owner_t       *owners;
    ngx_msec_t                 owners_swept; /* dead workers looked for */
    ngx_http_ud_peer_t         peers[NGX_HTTP_UD_MAX_PEERS];
} ngx_http_ud_table_t;


typedef struct {
    ngx_http_upstream_srv_conf_t  *uscf;
    ngx_str_t                  name;
    ngx_str_t                  directive;    /* the first of ours in it */

    /* health_check */
    ngx_uint_t                 check;        /* health_check present */
    ngx_uint_t                 installed;    /* init_upstream was called */
    ngx_uint_t                 check_type;
    ngx_str_t                  uri;
    in_port_t                  port;
    ngx_msec_t                 interval;
    ngx_msec_t                 jitter;
    ngx_msec_t                 timeout;
    ngx_uint_t                 fails;
    ngx_uint_t                 passes;
    ngx_str_t                  match_name;
    ngx_http_ud_match_t       *match;
    ngx_http_ud_tls_t         *tls;          /* type=https, or NULL */
    ngx_int_t                  panic;        /* basis points, -1 off */
    ngx_uint_t                 least_conn;
    ngx_msec_t                 slow_start;   /* 0: off */

    /* discovery */
    ngx_uint_t                 source;       /* 0: none */
    ngx_str_t                  file;
    ngx_str_t                  key;          /* redis= */
    ngx_addr_t                 consul_addr;  /* consul= */
    ngx_str_t                  consul_host;
    ngx_str_t                  consul_uri;
    ngx_str_t                  dns_name;     /* dns= */
    ngx_str_t                  dns_service;
    in_port_t                  dns_port;
    ngx_http_core_loc_conf_t  *clcf;         /* the resolver */
    ngx_msec_t                 source_interval;
    ngx_str_t                  dump;
    ngx_msec_t                 grace;

    ngx_http_ud_table_t       *table;        /* in the zone */
    ngx_http_ud_owner_t       *owner;        /* this worker's, or NULL */
    ngx_int_t                 *current;      /* this worker's SWRR weights */
#if (NGX_HTTP_SSL)
    ngx_http_ud_session_t     *sessions;     /* this worker's, by slot */
#endif
    ngx_event_t                tick;
    ngx_log_t                 *log;
} ngx_http_ud_srv_conf_t;


typedef struct {
    ngx_array_t                upstreams;    /* ngx_http_ud_srv_conf_t * */
    ngx_array_t                matches;      /* ngx_http_ud_match_t */
    ngx_shm_zone_t            *shm_zone;
    ngx_slab_pool_t           *shpool;
} ngx_http_ud_main_conf_t;


extern ngx_module_t  ngx_http_upstream_discovery_module;


/* the table: ngx_http_upstream_discovery_shm.c */

ngx_int_t ngx_http_ud_init_zone(ngx_shm_zone_t *shm_zone, void *data);
ngx_http_ud_peer_t *ngx_http_ud_find(ngx_http_ud_table_t *t,
    ngx_sockaddr_t *sa, socklen_t socklen);
ngx_int_t ngx_http_ud_apply(ngx_http_ud_srv_conf_t *udcf,
    ngx_array_t *set, ngx_uint_t source, ngx_log_t *log);
void ngx_http_ud_set_state(ngx_http_ud_srv_conf_t *udcf,
    ngx_http_ud_peer_t *p, ngx_uint_t state, const char *why,
    ngx_log_t *log);
void ngx_http_ud_reap(ngx_http_ud_srv_conf_t *udcf, ngx_log_t *log);
void ngx_http_ud_owner_init(ngx_http_ud_srv_conf_t *udcf, ngx_log_t *log);
void ngx_http_ud_conns_sub(ngx_http_ud_peer_t *p, ngx_atomic_uint_t n);
const char *ngx_http_ud_state_name(ngx_uint_t state);

/* the set a source gives: ngx_http_ud_addr_t */

typedef struct {
    ngx_sockaddr_t             sockaddr;
    socklen_t                  socklen;
    ngx_uint_t                 weight;
    ngx_uint_t                 backup;
    ngx_str_t                  name;
} ngx_http_ud_addr_t;

/* one exchange over an nginx connection: ngx_http_upstream_discovery_http.c */

typedef struct ngx_http_ud_http_s  ngx_http_ud_http_t;

/* rc: NGX_OK (answer in "in"), NGX_DONE (connected, no request sent),
   NGX_ERROR (err says why), NGX_ABORT (the worker is exiting) */
typedef void (*ngx_http_ud_http_done_pt)(void *data, ngx_pool_t *pool,
    ngx_int_t rc, ngx_buf_t *in, const char *err);

ngx_int_t ngx_http_ud_http_start(ngx_pool_t *pool, ngx_addr_t *peer,
    ngx_http_ud_tls_t *tls, ngx_buf_t *out, size_t size, size_t max,
    ngx_msec_t timeout, ngx_log_t *log, ngx_http_ud_http_done_pt done,
    void *data);

/* probes: ngx_http_upstream_discovery_check.c */

void ngx_http_ud_check_peers(ngx_http_ud_srv_conf_t *udcf);

/* sources: ngx_http_upstream_discovery_source.c */

extern ngx_str_t  ngx_http_ud_source_names[];

void ngx_http_ud_source_tick(ngx_http_ud_srv_conf_t *udcf);
ngx_int_t ngx_http_ud_redis_init_worker(ngx_http_ud_srv_conf_t *udcf);
ngx_int_t ngx_http_ud_parse_document(u_char *data, size_t len,
    ngx_array_t *set, ngx_pool_t *pool, ngx_str_t *err);
void ngx_http_ud_dump(ngx_http_ud_srv_conf_t *udcf, ngx_log_t *log);
ngx_int_t ngx_http_ud_load_dump(ngx_http_ud_srv_conf_t *udcf,
    ngx_log_t *log);


#endif /* _NGX_HTTP_UPSTREAM_DISCOVERY_H_INCLUDED_ */
