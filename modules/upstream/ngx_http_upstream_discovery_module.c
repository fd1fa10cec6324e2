
/*
 * nginx-resilience: ngx_http_upstream_discovery_module, health-checked
 * upstreams with runtime peer discovery, on an unpatched nginx.
 *
 * "health_check" and "discovery" inside upstream {} install this module's
 * balancer (peer.init_upstream / init / get / free, as the keepalive
 * module wraps them): the peers live in a table in shared memory, seeded
 * by the "server" lines, changed by discovery sources and by probes, and
 * kept across reloads.  Selection is smooth weighted round robin over the
 * peers that are up, backups when no primary is, and every peer when too
 * few are up (panic mode).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upstream_discovery.h"


typedef struct {
    ngx_http_ud_srv_conf_t    *udcf;
    ngx_http_request_t        *request;
    ngx_uint_t                 up;           /* peers up, at init_peer */
    ngx_uint_t                 all;          /* peers not drained */
    ngx_uint_t                 backups_up;   /* of "up", the backups */
    uint64_t                   tried;
    ngx_int_t                  current;      /* slot, or -1 */
    ngx_atomic_t               generation;
    unsigned                   panic:1;      /* routed in panic mode */
    unsigned                   none:1;       /* no live peer at all */
} ngx_http_ud_request_t;


static ngx_int_t ngx_http_ud_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_ud_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_ud_get_peer(ngx_peer_connection_t *pc,
    void *data);
static ngx_uint_t ngx_http_ud_cut(ngx_peer_connection_t *pc,
    ngx_http_ud_request_t *rp);
static void ngx_http_ud_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_ud_set_session(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_ud_save_session(ngx_peer_connection_t *pc, void *data);
static void ngx_http_ud_free_sessions(void *data);
#endif
static ngx_uint_t ngx_http_ud_usable(ngx_http_ud_peer_t *p,
    ngx_msec_t now);
static void ngx_http_ud_count(ngx_http_ud_table_t *t, ngx_msec_t now,
    ngx_http_ud_request_t *rp);
static ngx_uint_t ngx_http_ud_candidate(ngx_http_ud_request_t *rp,
    ngx_http_ud_peer_t *p, ngx_uint_t i, ngx_uint_t panic, ngx_uint_t pass,
    ngx_msec_t now);
static void ngx_http_ud_tick(ngx_event_t *ev);
static ngx_int_t ngx_http_ud_collect(ngx_http_resilience_metrics_t *m,
    void *data);
static ngx_int_t ngx_http_ud_admin_get(ngx_http_request_t *r, ngx_str_t *id,
    cJSON *out, ngx_str_t *err, void *data);
static ngx_int_t ngx_http_ud_admin_put(ngx_http_request_t *r, ngx_str_t *id,
    cJSON *body, cJSON *out, ngx_str_t *err, void *data);
static cJSON *ngx_http_ud_json(ngx_http_ud_srv_conf_t *udcf);
static void *ngx_http_ud_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_ud_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_ud_create_srv_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_ud_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_ud_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_ud_health_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_ud_init_process(ngx_cycle_t *cycle);
static ngx_http_ud_srv_conf_t *ngx_http_ud_enable(ngx_conf_t *cf,
    char **err);
static char *ngx_http_ud_health_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_ud_tls(ngx_conf_t *cf,
    ngx_http_ud_srv_conf_t *udcf, ngx_str_t *sni, ngx_str_t *ca);
#endif
static char *ngx_http_ud_discovery(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ud_panic(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ud_balance(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ud_slow_start(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_ud_consul_url(ngx_conf_t *cf,
    ngx_http_ud_srv_conf_t *udcf, ngx_str_t *val);
static char *ngx_http_ud_match_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ud_match_line(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf);
static ngx_regex_t *ngx_http_ud_regex(ngx_conf_t *cf, ngx_str_t *pattern);


static ngx_conf_enum_t  ngx_http_ud_check_types[] = {
    { ngx_string("http"), NGX_HTTP_UD_CHECK_HTTP },
    { ngx_string("tcp"), NGX_HTTP_UD_CHECK_TCP },
#if (NGX_HTTP_SSL)
    { ngx_string("https"), NGX_HTTP_UD_CHECK_HTTPS },
#endif
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_ud_balances[] = {
    { ngx_string("round_robin"), 0 },
    { ngx_string("least_conn"), 1 },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_ud_commands[] = {

    { ngx_string("health_check"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_ud_health_check,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("discovery"),
      NGX_HTTP_UPS_CONF|NGX_CONF_1MORE,
      ngx_http_ud_discovery,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("health_check_panic"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE1,
      ngx_http_ud_panic,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("health_check_balance"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE1,
      ngx_http_ud_balance,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("health_check_slow_start"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE1,
      ngx_http_ud_slow_start,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("health_check_match"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_ud_match_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ud_module_ctx = {
    ngx_http_ud_add_variables,             /* preconfiguration */
    ngx_http_ud_init,                      /* postconfiguration */

    ngx_http_ud_create_main_conf,          /* create main configuration */
    ngx_http_ud_init_main_conf,            /* init main configuration */

    ngx_http_ud_create_srv_conf,           /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_upstream_discovery_module = {
    NGX_MODULE_V1,
    &ngx_http_ud_module_ctx,               /* module context */
    ngx_http_ud_commands,                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_ud_init_process,              /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_ud_zone_name =
    ngx_string("nginx_resilience_upstream");

ngx_str_t  ngx_http_ud_source_names[] = {
    ngx_string("static"),
    ngx_string("file"),
    ngx_string("redis"),
    ngx_string("consul"),
    ngx_string("dns")
};


/* the balancer */

/*
 * Round robin initialises first, as nginx's hash module lets it: its
 * peers are what "zone" copies into shared memory (and NULL there crashed
 * nginx -t), so an upstream with "zone" keeps working; the choice of the
 * peer is this module's.
 */

static ngx_int_t
ngx_http_ud_init_upstream(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                    i, n;
    ngx_http_ud_srv_conf_t       *udcf;
    ngx_http_upstream_server_t   *server;

    udcf = ngx_http_conf_upstream_srv_conf(us,
                                          ngx_http_upstream_discovery_module);

    server = us->servers ? us->servers->elts : NULL;
    n = 0;

    for (i = 0; server && i < us->servers->nelts; i++) {
        n += server[i].naddrs;
    }

    if (udcf->source && n == 0) {

        /* discovery alone: no "server" line needed, nor round robin */

        if (us->shm_zone) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "upstream \"%V\": \"zone\" with \"discovery\" "
                          "needs at least one \"server\" line in %s:%ui",
                          &us->host, us->file_name, us->line);
            return NGX_ERROR;
        }

    } else if (ngx_http_upstream_init_round_robin(cf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    udcf->installed = 1;

    us->peer.init = ngx_http_ud_init_peer;

    return NGX_OK;
}


static void
ngx_http_ud_request_cleanup(void *data)
{
    /* nothing to free: the cleanup only keeps the data findable */
}


static ngx_int_t
ngx_http_ud_init_peer(ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_ud_request_t   *rp;
    ngx_http_ud_srv_conf_t  *udcf;

    udcf = ngx_http_conf_upstream_srv_conf(us,
                                          ngx_http_upstream_discovery_module);

    /*
     * the request's data, in a pool cleanup that does nothing: so that
     * $upstream_health finds it again after an internal redirect
     * (error_page 502 = @fallback), which clears module contexts
     */

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_ud_request_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_ud_request_cleanup;
    rp = cln->data;

    rp->udcf = udcf;
    rp->request = r;
    rp->tried = 0;
    rp->current = -1;
    rp->panic = 0;
    rp->none = 0;

    ngx_http_set_ctx(r, rp, ngx_http_upstream_discovery_module);

    /* as many tries as live peers, at least one */

    ngx_http_ud_count(udcf->table, ngx_current_msec, rp);

    r->upstream->peer.data = rp;
    r->upstream->peer.get = ngx_http_ud_get_peer;
    r->upstream->peer.free = ngx_http_ud_free_peer;
    r->upstream->peer.tries = rp->up ? rp->up : 1;

#if (NGX_HTTP_SSL)
    r->upstream->peer.set_session = ngx_http_ud_set_session;
    r->upstream->peer.save_session = ngx_http_ud_save_session;
#endif

    return NGX_OK;
}


/*
 * Up by its probes (or without probes), not set by hand, and not out by
 * its failures on live traffic: max_fails of them within fail_timeout,
 * nginx's window (max_fails=0: never out by traffic).
 */

static ngx_uint_t
ngx_http_ud_usable(ngx_http_ud_peer_t *p, ngx_msec_t now)
{
    return p->state == NGX_HTTP_UD_UP
           && p->admin == NGX_HTTP_UD_ADMIN_NONE
           && (p->max_fails == 0
               || p->live_fails < p->max_fails
               || (ngx_msec_int_t) (now - p->live_checked)
                  > (ngx_msec_int_t) p->fail_timeout);
}


/*
 * The peers that are up (and how many of them are backups), and those
 * that are not drained nor set by hand.
 */

static void
ngx_http_ud_count(ngx_http_ud_table_t *t, ngx_msec_t now,
    ngx_http_ud_request_t *rp)
{
    ngx_uint_t           i;
    ngx_http_ud_peer_t  *p;

    rp->up = 0;
    rp->all = 0;
    rp->backups_up = 0;

    for (i = 0; i < t->npeers; i++) {
        p = &t->peers[i];

        if (p->state == NGX_HTTP_UD_FREE || p->state == NGX_HTTP_UD_DRAINING
            || p->admin != NGX_HTTP_UD_ADMIN_NONE)
        {
            continue;
        }

        rp->all++;

        if (ngx_http_ud_usable(p, now)) {
            rp->up++;
            rp->backups_up += p->backup;
        }
    }
}


/* may the request try this peer now (primaries or backups, by "pass") */

static ngx_uint_t
ngx_http_ud_candidate(ngx_http_ud_request_t *rp, ngx_http_ud_peer_t *p,
    ngx_uint_t i, ngx_uint_t panic, ngx_uint_t pass, ngx_msec_t now)
{
    if ((rp->tried & ((uint64_t) 1 << i)) || p->backup != pass) {
        return 0;
    }

    if (p->max_conns && p->conns >= p->max_conns) {
        /* as round robin: a peer at max_conns is skipped, even in panic */
        return 0;
    }

    if (panic) {
        /* every peer but the drained and those set by hand */
        return p->state != NGX_HTTP_UD_FREE
               && p->state != NGX_HTTP_UD_DRAINING
               && p->admin == NGX_HTTP_UD_ADMIN_NONE;
    }

    return ngx_http_ud_usable(p, now);
}


/*
 * The weight a peer is chosen by.  With health_check_slow_start, weights
 * count in hundredths, and a peer back up (or newly discovered) grows from
 * one hundredth to its full weight over the slow start.
 */

static ngx_uint_t
ngx_http_ud_weight(ngx_http_ud_srv_conf_t *udcf, ngx_http_ud_peer_t *p,
    ngx_msec_t now)
{
    ngx_msec_int_t  elapsed;

    if (udcf->slow_start == 0) {
        return p->weight;
    }

    if (p->up_since) {
        elapsed = (ngx_msec_int_t) (now - p->up_since);

        if (elapsed < 0) {
            /* still out (passive checks): only panic chooses it */
            return 1;
        }

        if ((ngx_msec_t) elapsed < udcf->slow_start) {
            return ngx_max(1, p->weight * 100 * (ngx_msec_t) elapsed
                              / udcf->slow_start);
        }
    }

    return p->weight * 100;
}


static ngx_int_t
ngx_http_ud_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_ud_request_t  *rp = data;

    ngx_int_t                total, best_w;
    ngx_str_t               *name;
    ngx_uint_t               i, pass, up, all, panic, w, least_w;
    ngx_msec_t               now;
    ngx_http_ud_peer_t      *p, *best, *least;
    ngx_http_ud_table_t     *t;
    ngx_http_ud_srv_conf_t  *udcf;

    udcf = rp->udcf;
    t = udcf->table;
    now = ngx_current_msec;

    pc->cached = 0;
    pc->connection = NULL;

    /*
     * panic: too few peers up, so every peer is tried rather than none;
     * the first try uses the counts init_peer made, a retry counts again
     */

    if (rp->tried) {
        ngx_http_ud_count(t, now, rp);
    }

    up = rp->up;
    all = rp->all;

    /*
     * panic is decided per tier: while a backup is up, the live primaries
     * and then the backups are tried, as without panic; only when no
     * backup is up do the peers that are down get requests
     */

    panic = udcf->panic >= 0
            && all > 0
            && rp->backups_up == 0
            && (up == 0
                || up * 10000 < (ngx_uint_t) udcf->panic * all);

    best = NULL;

    /* primaries first, then backups; in panic, every peer but drained */

    for (pass = 0; pass < 2 && best == NULL; pass++) {
        total = 0;
        best_w = 0;
        least = NULL;
        least_w = 0;

        /*
         * least_conn: the fewest requests in flight for the weight, all
         * workers together; round robin among the peers that tie
         */

        for (i = 0; udcf->least_conn && i < t->npeers && i < 64; i++) {
            p = &t->peers[i];

            if (!ngx_http_ud_candidate(rp, p, i, panic, pass, now)) {
                continue;
            }

            w = ngx_http_ud_weight(udcf, p, now);

            if (least == NULL || p->conns * least_w < least->conns * w) {
                least = p;
                least_w = w;
            }
        }

        for (i = 0; i < t->npeers && i < 64; i++) {
            p = &t->peers[i];

            if (!ngx_http_ud_candidate(rp, p, i, panic, pass, now)) {
                continue;
            }

            w = ngx_http_ud_weight(udcf, p, now);

            if (least && p->conns * least_w != least->conns * w) {
                continue;
            }

            udcf->current[i] += (ngx_int_t) w;
            total += (ngx_int_t) w;

            if (best == NULL || udcf->current[i] > best_w) {
                best = p;
                best_w = udcf->current[i];
            }
        }

        if (best) {
            udcf->current[best - t->peers] -= total;
        }
    }

    rp->panic = panic;

    if (best == NULL) {
        rp->none = 1;

        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "upstream \"%V\": no live peer", &udcf->name);
        pc->name = &udcf->name;
        return NGX_BUSY;
    }

    if (panic && up == 0) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "upstream discovery: \"%V\" in panic", &udcf->name);
    }

    i = best - t->peers;

    if ((ngx_msec_int_t) (now - best->live_checked)
        > (ngx_msec_int_t) best->fail_timeout)
    {
        /* a new window: a success from now on forgets older failures */
        best->live_checked = now;
    }

    rp->tried |= (uint64_t) 1 << i;
    rp->current = (ngx_int_t) i;
    rp->generation = best->generation;
    /*
     * each try its own copy of the name: $upstream_addr keeps a pointer
     * per try, and the slot in shared memory may be given to another peer
     */

    name = ngx_palloc(rp->request->pool, sizeof(ngx_str_t) + best->name_len);
    if (name == NULL) {
        return NGX_ERROR;
    }

    name->len = best->name_len;
    name->data = (u_char *) name + sizeof(ngx_str_t);
    ngx_memcpy(name->data, best->name, name->len);

    pc->sockaddr = &best->sockaddr.sockaddr;
    pc->socklen = best->socklen;
    pc->name = name;

    (void) ngx_atomic_fetch_add(&best->conns, 1);
    (void) ngx_atomic_fetch_add(&best->requests, 1);

    if (udcf->owner) {
        udcf->owner->conns[i]++;
    }

    return NGX_OK;
}


/*
 * A failed try on a kept-alive connection that nothing came back on, and
 * not by a timeout: the peer had closed it (nginx's own test for giving
 * such a request another try is the same error).  pc->cached stays set
 * for the whole try, so a timeout or a bad answer on a cached connection
 * is a failure as on a new one.
 */

static ngx_uint_t
ngx_http_ud_stale(ngx_peer_connection_t *pc, ngx_http_ud_request_t *rp)
{
    ngx_connection_t     *c;
    ngx_http_upstream_t  *u;

    c = pc->connection;
    u = rp->request->upstream;

    return pc->cached
           && c != NULL
           && !c->read->timedout
           && !c->write->timedout
           && u != NULL
           && u->state != NULL
           && u->state->bytes_received == 0;
}


/*
 * A try the request's deadline cut (the deadline module fires the try's
 * own timer when the budget is spent): the peer was not too slow for its
 * timeouts, the request ran out of time.
 */

static ngx_uint_t
ngx_http_ud_cut(ngx_peer_connection_t *pc, ngx_http_ud_request_t *rp)
{
    ngx_connection_t  *c;

    c = pc->connection;

    return c != NULL
           && (c->read->timedout || c->write->timedout)
           && ngx_http_resilience_deadline_spent(rp->request);
}


/*
 * Passive checks, as nginx's round robin keeps them: failures on live
 * traffic within fail_timeout count (a success forgets them only once a
 * new window has begun), max_fails of them take the peer out for the
 * rest of the window.  They are apart from the probes' own counts: a
 * success on traffic never makes up for a failing probe.
 */

static void
ngx_http_ud_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_ud_request_t  *rp = data;

    ngx_msec_t               now;
    ngx_atomic_uint_t        n;
    ngx_http_ud_peer_t      *p;
    ngx_http_ud_srv_conf_t  *udcf;

    if (rp->current < 0) {
        return;
    }

    udcf = rp->udcf;
    p = &udcf->table->peers[rp->current];
    rp->current = -1;

    if (pc->tries) {
        pc->tries--;
    }

    /* this worker's own count, whatever became of the slot */

    if (udcf->owner && udcf->owner->conns[p - udcf->table->peers]) {
        udcf->owner->conns[p - udcf->table->peers]--;
    }

    if (p->generation != rp->generation) {
        /* the slot was freed and reused: not this peer any more */
        return;
    }

    ngx_http_ud_conns_sub(p, 1);

    if (!(state & NGX_PEER_FAILED)) {
        if (p->live_fails
            && (ngx_msec_int_t) (p->live_checked - p->live_failed) > 0)
        {
            p->live_fails = 0;
        }

        return;
    }

    if (ngx_http_ud_stale(pc, rp)) {
        /*
         * a kept-alive connection the peer had closed (a peer reloading,
         * its keepalive_timeout): nginx gives the request another try;
         * the peer failed nothing and may be chosen again, on a new
         * connection, instead of costing its only try a 502
         */
        rp->tried &= ~((uint64_t) 1 << (p - udcf->table->peers));
        return;
    }

    if (ngx_http_ud_cut(pc, rp)) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "upstream discovery: try on %V cut by the deadline, "
                       "not counted", pc->name);
        return;
    }

    if (p->max_fails == 0) {
        return;
    }

    now = ngx_current_msec;

    n = ngx_atomic_fetch_add(&p->live_fails, 1) + 1;
    p->live_failed = now;
    p->live_checked = now;

    if (n < p->max_fails) {
        return;
    }

    /* health_check_slow_start ramps it up again after the window */
    p->up_since = (now + p->fail_timeout) ? now + p->fail_timeout : 1;

    ngx_log_error(NGX_LOG_WARN, pc->log, 0,
                  "upstream \"%V\": peer %*s failed %ui times on live "
                  "traffic, out for %M ms", &udcf->name,
                  (size_t) p->name_len, p->name, (ngx_uint_t) n,
                  p->fail_timeout);
}


#if (NGX_HTTP_SSL)

/*
 * SSL session reuse per peer, as round robin does it without a zone: each
 * worker keeps the last session of each slot, and a slot given to another
 * peer (its generation changed) starts without one.
 */

static ngx_int_t
ngx_http_ud_set_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_ud_request_t  *rp = data;

    ngx_http_ud_session_t  *s;

    if (rp->current < 0 || rp->udcf->sessions == NULL) {
        return NGX_OK;
    }

    s = &rp->udcf->sessions[rp->current];

    if (s->session == NULL || s->generation != rp->generation) {
        return NGX_OK;
    }

    return ngx_ssl_set_session(pc->connection, s->session);
}


static void
ngx_http_ud_save_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_ud_request_t  *rp = data;

    ngx_ssl_session_t      *session;
    ngx_http_ud_session_t  *s;

    if (rp->current < 0 || rp->udcf->sessions == NULL) {
        return;
    }

    session = ngx_ssl_get_session(pc->connection);
    if (session == NULL) {
        return;
    }

    s = &rp->udcf->sessions[rp->current];

    if (s->session) {
        ngx_ssl_free_session(s->session);
    }

    s->session = session;
    s->generation = rp->generation;
}


static void
ngx_http_ud_free_sessions(void *data)
{
    ngx_http_ud_session_t *s = data;

    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_UD_MAX_PEERS; i++) {
        if (s[i].session) {
            ngx_ssl_free_session(s[i].session);
            s[i].session = NULL;
        }
    }
}

#endif


/* background work, in every worker: probes, sources, reaping */

static void
ngx_http_ud_tick(ngx_event_t *ev)
{
    ngx_http_ud_srv_conf_t *udcf = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (udcf->check) {
        ngx_http_ud_check_peers(udcf);
    }

    if (udcf->source) {
        ngx_http_ud_source_tick(udcf);
    }

    ngx_http_ud_reap(udcf, ev->log);

    ngx_add_timer(ev, 100);
}


static ngx_int_t
ngx_http_ud_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                i;
#if (NGX_HTTP_SSL)
    ngx_pool_cleanup_t       *cln;
#endif
    ngx_http_ud_main_conf_t  *mcf;
    ngx_http_ud_srv_conf_t  **ups, *udcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                          ngx_http_upstream_discovery_module);

    if (mcf == NULL) {
        return NGX_OK;
    }

    ups = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        udcf = ups[i];

        udcf->current = ngx_pcalloc(cycle->pool,
                                    NGX_HTTP_UD_MAX_PEERS * sizeof(ngx_int_t));
        if (udcf->current == NULL) {
            return NGX_ERROR;
        }

#if (NGX_HTTP_SSL)
        cln = ngx_pool_cleanup_add(cycle->pool, NGX_HTTP_UD_MAX_PEERS
                                               * sizeof(ngx_http_ud_session_t));
        if (cln == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(cln->data,
                    NGX_HTTP_UD_MAX_PEERS * sizeof(ngx_http_ud_session_t));
        cln->handler = ngx_http_ud_free_sessions;
        udcf->sessions = cln->data;
#endif

        udcf->log = cycle->log;

        ngx_http_ud_owner_init(udcf, cycle->log);

        if (udcf->source == NGX_HTTP_UD_REDIS
            && ngx_http_ud_redis_init_worker(udcf) != NGX_OK)
        {
            return NGX_ERROR;
        }

        udcf->tick.handler = ngx_http_ud_tick;
        udcf->tick.data = udcf;
        udcf->tick.log = cycle->log;
        udcf->tick.cancelable = 1;

        ngx_add_timer(&udcf->tick, 10 + ngx_random() % 90);
    }

    return NGX_OK;
}


/* status: gauges per peer through the core registry */

static ngx_int_t
ngx_http_ud_collect(ngx_http_resilience_metrics_t *m, void *data)
{
    ngx_http_ud_main_conf_t *mcf = data;

    double                    v;
    ngx_uint_t                i, j, f;
    ngx_keyval_t              labels[4];
    ngx_http_ud_peer_t       *p;
    ngx_http_ud_table_t      *t;
    ngx_http_ud_srv_conf_t  **ups;

    static const char  *families[][3] = {
        { "upstream_peer_state", "g",
          "1 for the peer's state (up, down, checking, draining)." },
        { "upstream_peer_fails", "g",
          "Consecutive failures (probes and live traffic)." },
        { "upstream_peer_passes", "g",
          "Consecutive passed probes." },
        { "upstream_peer_last_check_ok", "g",
          "1 when the last probe passed, 0 when it failed, -1 none yet." },
        { "upstream_peer_check_latency_ms", "g",
          "How long the last probe took." },
        { "upstream_peer_inflight", "g",
          "Requests to the peer in flight." },
        { "upstream_peer_requests_total", "c",
          "Requests sent to the peer." },
        { "upstream_peer_probes_total", "c",
          "Probes sent to the peer, by every worker." }
    };

    ups = mcf->upstreams.elts;

    for (f = 0; f < sizeof(families) / sizeof(families[0]); f++) {

        if (ngx_http_resilience_metrics_family(m, families[f][0],
                                               families[f][1][0] == 'c'
                                               ? NGX_HTTP_RESILIENCE_COUNTER
                                               : NGX_HTTP_RESILIENCE_GAUGE,
                                               families[f][2])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (i = 0; i < mcf->upstreams.nelts; i++) {
            t = ups[i]->table;

            if (t == NULL) {
                continue;
            }

            for (j = 0; j < t->npeers; j++) {
                p = &t->peers[j];

                if (p->state == NGX_HTTP_UD_FREE) {
                    continue;
                }

                ngx_str_set(&labels[0].key, "upstream");
                labels[0].value = ups[i]->name;
                ngx_str_set(&labels[1].key, "peer");
                labels[1].value.data = p->name;
                labels[1].value.len = p->name_len;
                ngx_str_set(&labels[2].key, "source");
                labels[2].value = ngx_http_ud_source_names[p->source];

                switch (f) {
                case 0:
                    ngx_str_set(&labels[3].key, "state");
                    labels[3].value.data = (u_char *)
                          (p->admin == NGX_HTTP_UD_ADMIN_DRAIN ? "draining"
                           : p->admin == NGX_HTTP_UD_ADMIN_DOWN ? "down"
                           : ngx_http_ud_state_name(p->state));
                    labels[3].value.len = ngx_strlen(labels[3].value.data);

                    if (ngx_http_resilience_metrics_sample(m, labels, 4, 1)
                        != NGX_OK)
                    {
                        return NGX_ERROR;
                    }

                    continue;

                case 1:
                    v = (double) p->fails;
                    break;
                case 2:
                    v = (double) p->passes;
                    break;
                case 3:
                    v = p->checked ? (double) p->last_ok : -1;
                    break;
                case 4:
                    v = (double) p->latency;
                    break;
                case 5:
                    v = (double) p->conns;
                    break;
                case 6:
                    v = (double) p->requests;
                    break;
                default:
                    v = (double) p->probes;
                    break;
                }

                if (ngx_http_resilience_metrics_sample(m, labels, 3, v)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }
        }
    }

    return NGX_OK;
}


/* resilience_admin: GET the peers, PUT {"peer": ..., "state": ...} */

static cJSON *
ngx_http_ud_json(ngx_http_ud_srv_conf_t *udcf)
{
    u_char               buf[NGX_SOCKADDR_STRLEN + 1];
    cJSON               *up, *peers, *o;
    ngx_uint_t           j;
    ngx_http_ud_peer_t  *p;
    ngx_http_ud_table_t *t;

    t = udcf->table;

    up = cJSON_CreateObject();
    if (up == NULL) {
        return NULL;
    }

    peers = cJSON_AddArrayToObject(up, "peers");
    if (peers == NULL) {
        cJSON_Delete(up);
        return NULL;
    }

    for (j = 0; j < t->npeers; j++) {
        p = &t->peers[j];

        if (p->state == NGX_HTTP_UD_FREE) {
            continue;
        }

        o = cJSON_CreateObject();
        if (o == NULL) {
            cJSON_Delete(up);
            return NULL;
        }

        cJSON_AddItemToArray(peers, o);

        ngx_memcpy(buf, p->name, p->name_len);
        buf[p->name_len] = '\0';

        cJSON_AddStringToObject(o, "peer", (char *) buf);
        cJSON_AddStringToObject(o, "state", ngx_http_ud_state_name(p->state));
        cJSON_AddStringToObject(o, "admin",
                                p->admin == NGX_HTTP_UD_ADMIN_DRAIN ? "drain"
                                : p->admin == NGX_HTTP_UD_ADMIN_DOWN ? "down"
                                : "none");
        cJSON_AddStringToObject(o, "source",
                    (char *) ngx_http_ud_source_names[p->source].data);
        cJSON_AddNumberToObject(o, "weight", (double) p->weight);
        cJSON_AddBoolToObject(o, "backup", p->backup);
        cJSON_AddNumberToObject(o, "inflight", (double) p->conns);
        cJSON_AddNumberToObject(o, "fails", (double) p->fails);
        cJSON_AddNumberToObject(o, "passes", (double) p->passes);
        cJSON_AddNumberToObject(o, "live_fails", (double) p->live_fails);
        cJSON_AddStringToObject(o, "last_check",
                                !p->checked ? "none"
                                : p->last_ok ? "passed" : "failed");
        cJSON_AddNumberToObject(o, "latency_ms", (double) p->latency);
        cJSON_AddNumberToObject(o, "requests", (double) p->requests);
    }

    return up;
}


static ngx_int_t
ngx_http_ud_admin_get(ngx_http_request_t *r, ngx_str_t *id, cJSON *out,
    ngx_str_t *err, void *data)
{
    ngx_http_ud_main_conf_t *mcf = data;

    char                     name[NGX_HTTP_UD_NAME_LEN + 1];
    cJSON                   *up;
    ngx_uint_t               i, found;
    ngx_http_ud_srv_conf_t **ups;

    ups = mcf->upstreams.elts;
    found = 0;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (id->len
            && (id->len != ups[i]->name.len
                || ngx_strncmp(id->data, ups[i]->name.data, id->len) != 0))
        {
            continue;
        }

        up = ngx_http_ud_json(ups[i]);
        if (up == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_cpystrn((u_char *) name, ups[i]->name.data,
                    ngx_min(ups[i]->name.len, NGX_HTTP_UD_NAME_LEN) + 1);
        cJSON_AddItemToObject(out, name, up);
        found = 1;
    }

    if (id->len && !found) {
        ngx_str_set(err, "no such upstream");
        return NGX_HTTP_NOT_FOUND;
    }

    return NGX_HTTP_OK;
}


static ngx_int_t
ngx_http_ud_admin_put(ngx_http_request_t *r, ngx_str_t *id, cJSON *body,
    cJSON *out, ngx_str_t *err, void *data)
{
    ngx_http_ud_main_conf_t *mcf = data;

    cJSON                   *peer, *state;
    size_t                   len;
    ngx_uint_t               i, j, admin;
    ngx_http_ud_peer_t      *p;
    ngx_http_ud_srv_conf_t **ups, *udcf;

    ups = mcf->upstreams.elts;
    udcf = NULL;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (id->len == ups[i]->name.len
            && ngx_strncmp(id->data, ups[i]->name.data, id->len) == 0)
        {
            udcf = ups[i];
            break;
        }
    }

    if (udcf == NULL) {
        ngx_str_set(err, "no such upstream");
        return NGX_HTTP_NOT_FOUND;
    }

    peer = cJSON_GetObjectItemCaseSensitive(body, "peer");
    state = cJSON_GetObjectItemCaseSensitive(body, "state");

    if (!cJSON_IsString(peer) || !cJSON_IsString(state)) {
        ngx_str_set(err, "expected {\"peer\": \"host:port\", "
                         "\"state\": \"drain\" | \"down\" | \"up\"}");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_strcmp(state->valuestring, "drain") == 0) {
        admin = NGX_HTTP_UD_ADMIN_DRAIN;

    } else if (ngx_strcmp(state->valuestring, "down") == 0) {
        admin = NGX_HTTP_UD_ADMIN_DOWN;

    } else if (ngx_strcmp(state->valuestring, "up") == 0) {
        admin = NGX_HTTP_UD_ADMIN_NONE;

    } else {
        ngx_str_set(err, "\"state\" must be \"drain\", \"down\" or \"up\"");
        return NGX_HTTP_BAD_REQUEST;
    }

    len = ngx_strlen(peer->valuestring);

    for (j = 0; j < udcf->table->npeers; j++) {
        p = &udcf->table->peers[j];

        if (p->state == NGX_HTTP_UD_FREE || p->name_len != len
            || ngx_strncmp(p->name, peer->valuestring, len) != 0)
        {
            continue;
        }

        if (p->admin != NGX_HTTP_UD_ADMIN_NONE
            && admin == NGX_HTTP_UD_ADMIN_NONE)
        {
            /* given back: health_check_slow_start ramps it up again */
            p->up_since = ngx_current_msec ? ngx_current_msec : 1;
        }

        p->admin = (u_char) admin;
        udcf->table->version++;

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "upstream \"%V\": peer %s set to \"%s\" through "
                      "resilience_admin", &udcf->name, peer->valuestring,
                      state->valuestring);

        return ngx_http_ud_admin_get(r, id, out, err, data);
    }

    ngx_str_set(err, "no such peer in this upstream");
    return NGX_HTTP_NOT_FOUND;
}


/* configuration */

static void *
ngx_http_ud_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ud_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ud_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&mcf->upstreams, cf->pool, 4,
                       sizeof(ngx_http_ud_srv_conf_t *))
        != NGX_OK
        || ngx_array_init(&mcf->matches, cf->pool, 2,
                          sizeof(ngx_http_ud_match_t))
           != NGX_OK)
    {
        return NULL;
    }

    return mcf;
}


/* matches are looked up once every upstream has been read */

static char *
ngx_http_ud_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_ud_main_conf_t *mcf = conf;

    ngx_uint_t                i, j;
    ngx_http_ud_match_t      *m;
    ngx_http_ud_srv_conf_t  **ups;

    ups = mcf->upstreams.elts;
    m = mcf->matches.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (ups[i]->source == NGX_HTTP_UD_DNS) {
            /* the http level's resolver */
            ups[i]->clcf = ngx_http_conf_get_module_loc_conf(cf,
                                                       ngx_http_core_module);
        }

        if (ups[i]->match_name.len == 0) {
            continue;
        }

        for (j = 0; j < mcf->matches.nelts; j++) {
            if (m[j].name.len == ups[i]->match_name.len
                && ngx_strncmp(m[j].name.data, ups[i]->match_name.data,
                               m[j].name.len)
                   == 0)
            {
                ups[i]->match = &m[j];
                break;
            }
        }

        if (ups[i]->match == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "upstream \"%V\": \"health_check\" uses "
                               "unknown health_check_match \"%V\"",
                               &ups[i]->name, &ups[i]->match_name);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_ud_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_ud_srv_conf_t  *udcf;

    udcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ud_srv_conf_t));
    if (udcf == NULL) {
        return NULL;
    }

    udcf->panic = 0;

    return udcf;
}


static ngx_http_variable_t  ngx_http_ud_vars[] = {

    { ngx_string("upstream_health"), NULL, ngx_http_ud_health_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_ud_add_variables(ngx_conf_t *cf)
{
    return ngx_http_resilience_add_variables(cf, ngx_http_ud_vars);
}


/*
 * $upstream_health: how the upstream stood when the request's last try
 * chose its peer: "healthy" (every peer not drained nor set by hand was
 * up), "degraded" (some were not), "panic" (too few were up: routed to
 * all of them), "unavailable" (no live peer: 502); empty when the request
 * went through no upstream with health_check or discovery.
 */

static ngx_int_t
ngx_http_ud_health_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t               s;
    ngx_http_ud_request_t  *rp;

    rp = ngx_http_resilience_ctx(r, &ngx_http_upstream_discovery_module,
                                 ngx_http_ud_request_cleanup);

    if (rp == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (rp->none) {
        ngx_str_set(&s, "unavailable");

    } else if (rp->panic) {
        ngx_str_set(&s, "panic");

    } else if (rp->up >= rp->all) {
        ngx_str_set(&s, "healthy");

    } else {
        ngx_str_set(&s, "degraded");
    }

    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = s.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ud_init(ngx_conf_t *cf)
{
    ngx_uint_t                i;
    ngx_http_ud_srv_conf_t  **ups;
    ngx_http_ud_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf,
                                          ngx_http_upstream_discovery_module);

    if (mcf->upstreams.nelts == 0) {
        return NGX_OK;
    }

    ups = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (!ups[i]->installed) {
            /* a method written after ours took the upstream over */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "upstream \"%V\": a balancing method "
                               "(\"hash\", \"ip_hash\", \"least_conn\", "
                               "\"random\") after \"%V\" replaces it; "
                               "remove it, or use \"health_check_balance "
                               "least_conn\" for least_conn",
                               &ups[i]->name, &ups[i]->directive);
            return NGX_ERROR;
        }

        if (ups[i]->source == NGX_HTTP_UD_REDIS
            && !ngx_http_resilience_redis_configured(cf))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "upstream \"%V\": \"discovery redis=\" "
                               "needs \"resilience_redis\"", &ups[i]->name);
            return NGX_ERROR;
        }

        if (ups[i]->source == NGX_HTTP_UD_DNS
            && (ups[i]->clcf->resolver == NULL
                || ups[i]->clcf->resolver == NGX_CONF_UNSET_PTR
                || ups[i]->clcf->resolver->connections.nelts == 0))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "upstream \"%V\": \"discovery dns=\" needs "
                               "a \"resolver\" at http level",
                               &ups[i]->name);
            return NGX_ERROR;
        }
    }

    /*
     * room for NGX_HTTP_UD_MAX_UPSTREAMS tables of 64 peers (24k each),
     * and a record of 512 bytes per worker and table: 32 workers with
     * every table in use (only the pages used take memory)
     */

    mcf->shm_zone = ngx_shared_memory_add(cf, &ngx_http_ud_zone_name,
                                          12 * 1024 * 1024,
                                          &ngx_http_upstream_discovery_module);
    if (mcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    mcf->shm_zone->init = ngx_http_ud_init_zone;
    mcf->shm_zone->data = mcf;
    mcf->shm_zone->noreuse = 0;

    if (ngx_http_resilience_metrics_add_collector(cf, ngx_http_ud_collect,
                                                  mcf)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_resilience_admin_register(cf, "upstreams",
                                              ngx_http_ud_admin_get,
                                              ngx_http_ud_admin_put, mcf);
}


/* the first health_check or discovery of an upstream installs the balancer */

static ngx_http_ud_srv_conf_t *
ngx_http_ud_enable(ngx_conf_t *cf, char **err)
{
    ngx_http_ud_srv_conf_t         *udcf, **up;
    ngx_http_ud_main_conf_t        *mcf;
    ngx_http_upstream_srv_conf_t   *uscf;

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);
    udcf = ngx_http_conf_get_module_srv_conf(cf,
                                          ngx_http_upstream_discovery_module);

    if (udcf->uscf) {
        return udcf;
    }

    if (uscf->peer.init_upstream
        && uscf->peer.init_upstream != ngx_http_upstream_init_round_robin)
    {
        *err = "cannot follow a balancing method (\"hash\", \"ip_hash\", "
               "\"least_conn\", \"random\") nor \"keepalive\" in the "
               "same upstream: put \"keepalive\" after it, and use "
               "\"health_check_balance least_conn\" for least_conn";
        return NULL;
    }

    if (uscf->host.len > NGX_HTTP_UD_NAME_LEN) {
        *err = "needs an upstream name of at most 64 characters";
        return NULL;
    }

    uscf->peer.init_upstream = ngx_http_ud_init_upstream;
    uscf->flags |= NGX_HTTP_UPSTREAM_CREATE
                   |NGX_HTTP_UPSTREAM_WEIGHT
                   |NGX_HTTP_UPSTREAM_MAX_FAILS
                   |NGX_HTTP_UPSTREAM_FAIL_TIMEOUT
                   |NGX_HTTP_UPSTREAM_DOWN
                   |NGX_HTTP_UPSTREAM_BACKUP;

    udcf->uscf = uscf;
    udcf->name = uscf->host;
    udcf->directive = ((ngx_str_t *) cf->args->elts)[0];
    udcf->panic = 0;

    mcf = ngx_http_conf_get_module_main_conf(cf,
                                          ngx_http_upstream_discovery_module);

    up = ngx_array_push(&mcf->upstreams);
    if (up == NULL) {
        *err = NGX_CONF_ERROR;
        return NULL;
    }

    *up = udcf;

    return udcf;
}


/*
 * health_check [type=http|tcp] [uri=/] [port=N] [interval=2s]
 *     [jitter=0] [timeout=1s] [fails=3] [passes=2] [match=name]
 */

static char *
ngx_http_ud_health_check(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                    *err;
    ngx_str_t               *value, name, val, sni, ca;
    ngx_uint_t               i, n;
    ngx_http_ud_srv_conf_t  *udcf;

    err = NULL;
    udcf = ngx_http_ud_enable(cf, &err);
    if (udcf == NULL) {
        return err;
    }

    if (udcf->check) {
        return "is duplicate";
    }

    ngx_str_null(&sni);
    ngx_str_null(&ca);

    udcf->check = 1;
    udcf->check_type = NGX_HTTP_UD_CHECK_HTTP;
    ngx_str_set(&udcf->uri, "/");
    udcf->interval = 2000;
    udcf->jitter = 0;
    udcf->timeout = 1000;
    udcf->fails = 3;
    udcf->passes = 2;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_http_resilience_split_option(&value[i], &name, &val)
            != NGX_OK)
        {
            goto invalid;
        }

        if (name.len == 4 && ngx_strncmp(name.data, "type", 4) == 0) {
            if (ngx_http_resilience_parse_enum(cf, "type", &val,
                                               ngx_http_ud_check_types,
                                               &udcf->check_type)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 3 && ngx_strncmp(name.data, "uri", 3) == 0) {
            if (val.len == 0 || val.data[0] != '/') {
                goto invalid;
            }

            udcf->uri = val;
            continue;
        }

        if (name.len == 4 && ngx_strncmp(name.data, "port", 4) == 0) {
            if (ngx_http_resilience_parse_uint(cf, &val, 1, 65535, &n)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            udcf->port = (in_port_t) n;
            continue;
        }

        if (name.len == 8 && ngx_strncmp(name.data, "interval", 8) == 0) {
            if (ngx_http_resilience_parse_msec(cf, &val, &udcf->interval)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            if (udcf->interval < 100) {
                goto invalid;
            }

            continue;
        }

        if (name.len == 6 && ngx_strncmp(name.data, "jitter", 6) == 0) {
            if (ngx_http_resilience_parse_msec(cf, &val, &udcf->jitter)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 7 && ngx_strncmp(name.data, "timeout", 7) == 0) {
            if (ngx_http_resilience_parse_msec(cf, &val, &udcf->timeout)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            if (udcf->timeout == 0) {
                goto invalid;
            }

            continue;
        }

        if ((name.len == 5 && ngx_strncmp(name.data, "fails", 5) == 0)
            || (name.len == 6 && ngx_strncmp(name.data, "passes", 6) == 0))
        {
            if (ngx_http_resilience_parse_uint(cf, &val, 1, 100, &n)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            if (name.data[0] == 'f') {
                udcf->fails = n;

            } else {
                udcf->passes = n;
            }

            continue;
        }

        if (name.len == 5 && ngx_strncmp(name.data, "match", 5) == 0) {
            if (val.len == 0) {
                goto invalid;
            }

            udcf->match_name = val;
            continue;
        }

        if (name.len == 3 && ngx_strncmp(name.data, "sni", 3) == 0) {
            if (val.len == 0) {
                goto invalid;
            }

            sni = val;
            continue;
        }

        if (name.len == 23
            && ngx_strncmp(name.data, "ssl_trusted_certificate", 23) == 0)
        {
            if (val.len == 0) {
                goto invalid;
            }

            ca = val;
            continue;
        }

        goto invalid;
    }

    if (udcf->jitter >= udcf->interval) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"health_check\" jitter must be shorter than "
                           "the interval");
        return NGX_CONF_ERROR;
    }

    if (udcf->check_type != NGX_HTTP_UD_CHECK_HTTPS) {
        if (sni.len || ca.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"health_check\" \"sni=\" and "
                               "\"ssl_trusted_certificate=\" go with "
                               "\"type=https\"");
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

#if (NGX_HTTP_SSL)
    if (ngx_http_ud_tls(cf, udcf, &sni, &ca) != NGX_OK) {
        return NGX_CONF_ERROR;
    }
#endif

    udcf->check_type = NGX_HTTP_UD_CHECK_HTTP;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"health_check\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * discovery file=<path> | consul=<url> | redis=<key> | dns=<name:port>
 *     [service=<name>] [interval=5s] [dump=<path>] [grace=30s]
 */

static char *
ngx_http_ud_discovery(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                        *err;
    u_char                      *p;
    ngx_int_t                    n;
    ngx_str_t                   *value, name, val;
    ngx_uint_t                   i;
    ngx_http_ud_srv_conf_t      *udcf;
    ngx_http_upstream_server_t  *server;

    err = NULL;
    udcf = ngx_http_ud_enable(cf, &err);
    if (udcf == NULL) {
        return err;
    }

    if (udcf->source) {
        return "is duplicate";
    }

    udcf->source_interval = 5000;
    udcf->grace = 30000;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_http_resilience_split_option(&value[i], &name, &val)
            != NGX_OK)
        {
            goto invalid;
        }

        if (name.len == 4 && ngx_strncmp(name.data, "file", 4) == 0) {
            if (val.len == 0 || udcf->source) {
                goto invalid;
            }

            udcf->source = NGX_HTTP_UD_FILE;
            udcf->file = val;

            if (ngx_conf_full_name(cf->cycle, &udcf->file, 1) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 5 && ngx_strncmp(name.data, "redis", 5) == 0) {
            if (val.len == 0 || udcf->source) {
                goto invalid;
            }

            udcf->source = NGX_HTTP_UD_REDIS;
            udcf->key = val;
            continue;
        }

        if (name.len == 6 && ngx_strncmp(name.data, "consul", 6) == 0) {
            if (udcf->source
                || ngx_http_ud_consul_url(cf, udcf, &val) != NGX_OK)
            {
                goto invalid;
            }

            udcf->source = NGX_HTTP_UD_CONSUL;
            continue;
        }

        if (name.len == 3 && ngx_strncmp(name.data, "dns", 3) == 0) {
            if (val.len == 0 || udcf->source) {
                goto invalid;
            }

            udcf->source = NGX_HTTP_UD_DNS;
            udcf->dns_name = val;
            continue;
        }

        if (name.len == 7 && ngx_strncmp(name.data, "service", 7) == 0) {
            if (val.len == 0) {
                goto invalid;
            }

            udcf->dns_service = val;
            continue;
        }

        if (name.len == 8 && ngx_strncmp(name.data, "interval", 8) == 0) {
            if (ngx_http_resilience_parse_msec(cf, &val,
                                               &udcf->source_interval)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            if (udcf->source_interval < 100) {
                goto invalid;
            }

            continue;
        }

        if (name.len == 5 && ngx_strncmp(name.data, "grace", 5) == 0) {
            if (ngx_http_resilience_parse_msec(cf, &val, &udcf->grace)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (name.len == 4 && ngx_strncmp(name.data, "dump", 4) == 0) {
            if (val.len == 0) {
                goto invalid;
            }

            udcf->dump = val;

            if (ngx_conf_full_name(cf->cycle, &udcf->dump, 1) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        goto invalid;
    }

    if (udcf->source == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"discovery\" needs a source: \"file=\", "
                           "\"consul=\", \"redis=\" or \"dns=\"");
        return NGX_CONF_ERROR;
    }

    if (udcf->dns_service.len && udcf->source != NGX_HTTP_UD_DNS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"discovery\" \"service=\" goes with \"dns=\"");
        return NGX_CONF_ERROR;
    }

    if (udcf->source == NGX_HTTP_UD_DNS && udcf->dns_service.len == 0) {
        /* dns=name:port: A/AAAA records, the port given */
        p = ngx_strlchr(udcf->dns_name.data,
                        udcf->dns_name.data + udcf->dns_name.len, ':');
        n = p ? ngx_atoi(p + 1, udcf->dns_name.data + udcf->dns_name.len
                                - p - 1)
              : NGX_ERROR;

        if (n < 1 || n > 65535) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"discovery\" \"dns=%V\" needs a port, "
                               "as in \"dns=api.internal:8080\", or "
                               "\"service=\" for SRV records",
                               &udcf->dns_name);
            return NGX_CONF_ERROR;
        }

        udcf->dns_port = (in_port_t) n;
        udcf->dns_name.len = p - udcf->dns_name.data;
    }

    /*
     * a "server" entry without addresses: nginx refuses an upstream {}
     * with no "server" line, and discovery alone needs none (round
     * robin, and the seeds, count only addresses)
     */

    if (udcf->uscf->servers) {
        server = ngx_array_push(udcf->uscf->servers);
        if (server == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(server, sizeof(ngx_http_upstream_server_t));
        server->name = value[0];
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"discovery\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/* consul=http://127.0.0.1:8500/v1/health/service/api */

static ngx_int_t
ngx_http_ud_consul_url(ngx_conf_t *cf, ngx_http_ud_srv_conf_t *udcf,
    ngx_str_t *val)
{
    ngx_url_t  u;

    if (val->len <= 7 || ngx_strncmp(val->data, "http://", 7) != 0) {
        return NGX_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = val->data + 7;
    u.url.len = val->len - 7;
    u.default_port = 80;
    u.uri_part = 1;

    /* resolved now, at configuration time, never in a worker */

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0
        || u.uri.len < 2)
    {
        return NGX_ERROR;
    }

    udcf->consul_addr = u.addrs[0];
    udcf->consul_host = u.host;
    udcf->consul_uri = u.uri;

    return NGX_OK;
}


#if (NGX_HTTP_SSL)

/*
 * type=https: a TLS context for the probes; SNI is "sni=" or the
 * upstream's name; with "ssl_trusted_certificate=", the peer's
 * certificate must verify against it and be for that name.
 */

static ngx_int_t
ngx_http_ud_tls(ngx_conf_t *cf, ngx_http_ud_srv_conf_t *udcf,
    ngx_str_t *sni, ngx_str_t *ca)
{
    ngx_str_t            *name;
    ngx_pool_cleanup_t   *cln;
    ngx_http_ud_tls_t    *tls;

    tls = ngx_pcalloc(cf->pool, sizeof(ngx_http_ud_tls_t));
    if (tls == NULL) {
        return NGX_ERROR;
    }

    tls->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (tls->ssl == NULL) {
        return NGX_ERROR;
    }

    tls->ssl->log = cf->log;

    if (ngx_ssl_create(tls->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(tls->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = tls->ssl;

    name = sni->len ? sni : &udcf->name;

    tls->name.data = ngx_pnalloc(cf->pool, name->len + 1);
    if (tls->name.data == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(tls->name.data, name->data, name->len + 1);
    tls->name.len = name->len;

    if (ca->len) {
        if (ngx_ssl_trusted_certificate(cf, tls->ssl, ca, 1) != NGX_OK) {
            return NGX_ERROR;
        }

        tls->verify = 1;
    }

    udcf->tls = tls;

    return NGX_OK;
}

#endif


/* health_check_balance round_robin | least_conn */

static char *
ngx_http_ud_balance(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                    *err;
    ngx_str_t               *value;
    ngx_http_ud_srv_conf_t  *udcf;

    err = NULL;
    udcf = ngx_http_ud_enable(cf, &err);
    if (udcf == NULL) {
        return err;
    }

    value = cf->args->elts;

    if (ngx_http_resilience_parse_enum(cf, "value", &value[1],
                                       ngx_http_ud_balances,
                                       &udcf->least_conn)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* health_check_slow_start <time> | off */

static char *
ngx_http_ud_slow_start(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                    *err;
    ngx_str_t               *value;
    ngx_msec_t               t;
    ngx_http_ud_srv_conf_t  *udcf;

    err = NULL;
    udcf = ngx_http_ud_enable(cf, &err);
    if (udcf == NULL) {
        return err;
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        udcf->slow_start = 0;
        return NGX_CONF_OK;
    }

    if (ngx_http_resilience_parse_msec(cf, &value[1], &t) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (t == 0 || t > 3600000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"health_check_slow_start\" directive: \"%V\" "
                           "must be more than 0 and at most 1h (or \"off\")",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    udcf->slow_start = t;

    return NGX_CONF_OK;
}


/* health_check_panic on | off | N% */

static char *
ngx_http_ud_panic(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                    *err;
    ngx_str_t               *value;
    ngx_uint_t               bp;
    ngx_http_ud_srv_conf_t  *udcf;

    err = NULL;
    udcf = ngx_http_ud_enable(cf, &err);
    if (udcf == NULL) {
        return err;
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        udcf->panic = -1;
        return NGX_CONF_OK;
    }

    if (value[1].len == 2 && ngx_strncmp(value[1].data, "on", 2) == 0) {
        udcf->panic = 0;
        return NGX_CONF_OK;
    }

    if (ngx_http_resilience_parse_percent(cf, &value[1], &bp) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    udcf->panic = (ngx_int_t) bp;

    return NGX_CONF_OK;
}


/*
 * health_check_match <name> {
 *     status 200-399;
 *     header X-Ready;  header Content-Type ~ json;  header X-Role = primary;
 *     body ~ "ok";
 * }
 */

static char *
ngx_http_ud_match_block(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ud_main_conf_t *mcf = conf;

    char                 *rv;
    ngx_str_t            *value;
    ngx_uint_t            i;
    ngx_conf_t            save;
    ngx_http_ud_match_t  *m;

    value = cf->args->elts;

    m = mcf->matches.elts;

    for (i = 0; i < mcf->matches.nelts; i++) {
        if (m[i].name.len == value[1].len
            && ngx_strncmp(m[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate health_check_match \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    m = ngx_array_push(&mcf->matches);
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(m, sizeof(ngx_http_ud_match_t));
    m->name = value[1];

    if (ngx_array_init(&m->headers, cf->pool, 2,
                       sizeof(ngx_http_ud_header_match_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    save = *cf;
    cf->handler = ngx_http_ud_match_line;
    cf->handler_conf = (void *) m;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    return rv;
}


static char *
ngx_http_ud_match_line(ngx_conf_t *cf, ngx_command_t *dummy, void *conf)
{
    ngx_http_ud_match_t *m = conf;

    ngx_str_t                   *value;
    ngx_uint_t                   i;
    ngx_http_ud_header_match_t  *h;

    value = cf->args->elts;

    if (value[0].len == 6 && ngx_strncmp(value[0].data, "status", 6) == 0) {
        if (cf->args->nelts < 2) {
            goto invalid;
        }

        for (i = 1; i < cf->args->nelts; i++) {
            if (ngx_http_resilience_parse_status(cf, &value[i], &m->status)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }
        }

        m->has_status = 1;
        return NGX_CONF_OK;
    }

    if (value[0].len == 6 && ngx_strncmp(value[0].data, "header", 6) == 0) {
        if (cf->args->nelts != 2 && cf->args->nelts != 4) {
            goto invalid;
        }

        h = ngx_array_push(&m->headers);
        if (h == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(h, sizeof(ngx_http_ud_header_match_t));

        h->name = value[1];
        ngx_strlow(h->name.data, h->name.data, h->name.len);

        if (cf->args->nelts == 2) {
            return NGX_CONF_OK;
        }

        if (value[2].len == 1 && value[2].data[0] == '=') {
            h->value = value[3];
            return NGX_CONF_OK;
        }

        if (value[2].len == 1 && value[2].data[0] == '~') {
            h->regex = ngx_http_ud_regex(cf, &value[3]);
            return h->regex ? NGX_CONF_OK : NGX_CONF_ERROR;
        }

        goto invalid;
    }

    if (value[0].len == 4 && ngx_strncmp(value[0].data, "body", 4) == 0) {
        if (cf->args->nelts != 3 || value[1].len != 1
            || value[1].data[0] != '~')
        {
            goto invalid;
        }

        m->body = ngx_http_ud_regex(cf, &value[2]);
        return m->body ? NGX_CONF_OK : NGX_CONF_ERROR;
    }

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid line \"%V\" in health_check_match \"%V\", "
                       "expected \"status 200-399;\", \"header Name;\", "
                       "\"header Name = value;\", \"header Name ~ regex;\" "
                       "or \"body ~ regex;\"", &value[0], &m->name);
    return NGX_CONF_ERROR;
}


static ngx_regex_t *
ngx_http_ud_regex(ngx_conf_t *cf, ngx_str_t *pattern)
{
    u_char               errstr[NGX_MAX_CONF_ERRSTR];
    ngx_regex_compile_t  rc;

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern = *pattern;
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "health_check_match: invalid regex \"%V\": %V",
                           pattern, &rc.err);
        return NULL;
    }

    return rc.regex;
}
