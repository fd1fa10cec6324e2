
/*
 * nginx-resilience: the peer tables, in the module's shared memory zone.
 *
 * One table per upstream, found by name, so that peers and their health
 * survive a reload.  The zone mutex is held to change a table (a source's
 * new set, a state change, reaping); the balancer reads without it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upstream_discovery.h"


#define NGX_HTTP_UD_MAX_UPSTREAMS  256


typedef struct {
    ngx_uint_t                 n;
    ngx_http_ud_table_t       *tables[NGX_HTTP_UD_MAX_UPSTREAMS];
} ngx_http_ud_root_t;


static ngx_int_t ngx_http_ud_seed(ngx_http_ud_srv_conf_t *udcf,
    ngx_slab_pool_t *shpool, ngx_log_t *log);
static ngx_http_ud_peer_t *ngx_http_ud_seed_find(ngx_http_ud_table_t *t,
    ngx_sockaddr_t *sa, socklen_t socklen, ngx_uint_t *seen);
static ngx_http_ud_peer_t *ngx_http_ud_alloc(ngx_http_ud_table_t *t);
static void ngx_http_ud_owner_sweep(ngx_http_ud_srv_conf_t *udcf,
    ngx_msec_t now, ngx_log_t *log);
static ngx_uint_t ngx_http_ud_owner_dead(ngx_http_ud_owner_t *o);
static ngx_uint_t ngx_http_ud_pid_dead(ngx_pid_t pid);
static void ngx_http_ud_free_orphans(ngx_slab_pool_t *shpool,
    ngx_http_ud_root_t *root, ngx_http_ud_main_conf_t *mcf, ngx_log_t *log);
static ngx_uint_t ngx_http_ud_free_drained(ngx_http_ud_srv_conf_t *udcf,
    ngx_log_t *log);


static ngx_str_t  ngx_http_ud_state_names[] = {
    ngx_string("free"),
    ngx_string("up"),
    ngx_string("down"),
    ngx_string("checking"),
    ngx_string("draining")
};


const char *
ngx_http_ud_state_name(ngx_uint_t state)
{
    if (state > NGX_HTTP_UD_DRAINING) {
        return "unknown";
    }

    return (const char *) ngx_http_ud_state_names[state].data;
}


ngx_int_t
ngx_http_ud_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_ud_main_conf_t  *mcf = shm_zone->data;

    ngx_uint_t                i, j;
    ngx_slab_pool_t          *shpool;
    ngx_http_ud_root_t       *root;
    ngx_http_ud_table_t      *t;
    ngx_http_ud_srv_conf_t  **ups, *udcf;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    mcf->shpool = shpool;

    if (data == NULL && !shm_zone->shm.exists) {
        root = ngx_slab_calloc(shpool, sizeof(ngx_http_ud_root_t));
        if (root == NULL) {
            return NGX_ERROR;
        }

        shpool->data = root;
        shpool->log_nomem = 1;
    }

    root = shpool->data;

    ngx_http_ud_free_orphans(shpool, root, mcf, shm_zone->shm.log);

    /* every upstream finds its table (a reload) or gets one */

    ups = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        udcf = ups[i];
        t = NULL;

        for (j = 0; j < root->n; j++) {
            if (root->tables[j]->name_len == udcf->name.len
                && ngx_strncmp(root->tables[j]->name, udcf->name.data,
                               udcf->name.len)
                   == 0)
            {
                t = root->tables[j];
                break;
            }
        }

        if (t == NULL) {
            if (root->n == NGX_HTTP_UD_MAX_UPSTREAMS) {
                ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                              "upstream discovery: more than %d upstreams",
                              NGX_HTTP_UD_MAX_UPSTREAMS);
                return NGX_ERROR;
            }

            t = ngx_slab_calloc(shpool, sizeof(ngx_http_ud_table_t));
            if (t == NULL) {
                return NGX_ERROR;
            }

            t->name_len = ngx_min(udcf->name.len, NGX_HTTP_UD_NAME_LEN);
            ngx_memcpy(t->name, udcf->name.data, t->name_len);

            root->tables[root->n++] = t;
        }

        udcf->table = t;

        if (ngx_http_ud_seed(udcf, shpool, shm_zone->shm.log) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * At a reload, the tables of upstreams gone from the configuration whose
 * workers have all exited are given back: their last user was a worker
 * of an older configuration (one still shutting down keeps its tables
 * until a later reload).
 */

static void
ngx_http_ud_free_orphans(ngx_slab_pool_t *shpool, ngx_http_ud_root_t *root,
    ngx_http_ud_main_conf_t *mcf, ngx_log_t *log)
{
    ngx_uint_t                i, j, used;
    ngx_http_ud_table_t      *t;
    ngx_http_ud_owner_t      *o, *next;
    ngx_http_ud_srv_conf_t  **ups;

    ups = mcf->upstreams.elts;

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < root->n; /* void */ ) {
        t = root->tables[i];
        used = 0;

        for (j = 0; j < mcf->upstreams.nelts; j++) {
            if (t->name_len == ups[j]->name.len
                && ngx_strncmp(t->name, ups[j]->name.data, t->name_len) == 0)
            {
                used = 1;
                break;
            }
        }

        for (o = t->owners; o && !used; o = o->next) {
            if (o->pid != 0 && !ngx_http_ud_owner_dead(o)) {
                used = 1;
            }
        }

        if (used) {
            i++;
            continue;
        }

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "upstream discovery: the table of \"%*s\", gone "
                      "from the configuration, freed",
                      t->name_len, t->name);

        for (o = t->owners; o; o = next) {
            next = o->next;
            ngx_slab_free_locked(shpool, o);
        }

        ngx_slab_free_locked(shpool, t);

        root->tables[i] = root->tables[--root->n];
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * The upstream's "server" lines are the seeds: new ones start up (no 502
 * storm after a start or a reload), those gone from the configuration
 * drain, the others keep their health and take the new parameters.
 */

static ngx_int_t
ngx_http_ud_seed(ngx_http_ud_srv_conf_t *udcf, ngx_slab_pool_t *shpool,
    ngx_log_t *log)
{
    ngx_uint_t                   i, j, k, seen[NGX_HTTP_UD_MAX_PEERS];
    ngx_http_ud_peer_t          *p;
    ngx_http_ud_table_t         *t;
    ngx_http_upstream_server_t  *server;

    t = udcf->table;

    ngx_memzero(seen, sizeof(seen));

    ngx_shmtx_lock(&shpool->mutex);

    server = udcf->uscf->servers ? udcf->uscf->servers->elts : NULL;

    for (i = 0; server && i < udcf->uscf->servers->nelts; i++) {
        for (j = 0; j < server[i].naddrs; j++) {

            /* a duplicate server line is a peer of its own, as nginx's */

            p = ngx_http_ud_seed_find(t, (ngx_sockaddr_t *)
                                         server[i].addrs[j].sockaddr,
                                      server[i].addrs[j].socklen, seen);

            if (p == NULL) {
                p = ngx_http_ud_alloc(t);

                if (p == NULL) {
                    ngx_shmtx_unlock(&shpool->mutex);
                    ngx_log_error(NGX_LOG_EMERG, log, 0,
                                  "upstream \"%V\" has more than %d peers",
                                  &udcf->name, NGX_HTTP_UD_MAX_PEERS);
                    return NGX_ERROR;
                }

                ngx_memcpy(&p->sockaddr, server[i].addrs[j].sockaddr,
                           server[i].addrs[j].socklen);
                p->socklen = server[i].addrs[j].socklen;
                p->name_len = (u_short) ngx_min(server[i].addrs[j].name.len,
                                                NGX_SOCKADDR_STRLEN);
                ngx_memcpy(p->name, server[i].addrs[j].name.data,
                           p->name_len);
                p->state = NGX_HTTP_UD_UP;
            }

            k = p - t->peers;
            seen[k] = 1;

            p->source = NGX_HTTP_UD_STATIC;
            p->weight = server[i].weight ? server[i].weight : 1;
            p->max_fails = server[i].max_fails;
            p->fail_timeout = (ngx_msec_t) server[i].fail_timeout * 1000;
            p->max_conns = server[i].max_conns;
            p->backup = server[i].backup;
            p->vanished = 0;

            if (server[i].down) {
                p->admin = NGX_HTTP_UD_ADMIN_DOWN;

            } else if (p->admin == NGX_HTTP_UD_ADMIN_DOWN
                       && p->state == NGX_HTTP_UD_DRAINING)
            {
                p->admin = NGX_HTTP_UD_ADMIN_NONE;
            }

            if (p->state == NGX_HTTP_UD_DRAINING) {
                /* a seed back in the configuration: ramps up again */
                p->state = NGX_HTTP_UD_UP;
                p->up_since = ngx_current_msec ? ngx_current_msec : 1;
            }
        }
    }

    /*
     * static peers no longer configured, and discovered peers of a source
     * no longer configured ("discovery" removed, or another kind of
     * source); a source of the same kind drains its own at its next set
     */

    for (k = 0; k < t->npeers; k++) {
        p = &t->peers[k];

        if (p->state != NGX_HTTP_UD_FREE && p->source != NGX_HTTP_UD_STATIC
            && p->source != udcf->source && p->state != NGX_HTTP_UD_DRAINING)
        {
            p->state = NGX_HTTP_UD_DRAINING;
            p->vanished = 0;
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "upstream \"%V\": peer %*s of a source no longer "
                          "configured (%V), draining", &udcf->name,
                          (size_t) p->name_len, p->name,
                          &ngx_http_ud_source_names[p->source]);
            continue;
        }

        if (p->state != NGX_HTTP_UD_FREE && p->source == NGX_HTTP_UD_STATIC
            && !seen[k] && p->state != NGX_HTTP_UD_DRAINING)
        {
            p->state = NGX_HTTP_UD_DRAINING;
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "upstream \"%V\": peer %*s left the configuration, "
                          "draining", &udcf->name, (size_t) p->name_len,
                          p->name);
        }
    }

    t->version++;

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


/* a peer with this address not yet given to a server line, or NULL */

static ngx_http_ud_peer_t *
ngx_http_ud_seed_find(ngx_http_ud_table_t *t, ngx_sockaddr_t *sa,
    socklen_t socklen, ngx_uint_t *seen)
{
    ngx_uint_t           i;
    ngx_http_ud_peer_t  *p;

    for (i = 0; i < t->npeers; i++) {
        p = &t->peers[i];

        if (p->state != NGX_HTTP_UD_FREE
            && !seen[i]
            && p->source == NGX_HTTP_UD_STATIC
            && ngx_cmp_sockaddr(&p->sockaddr.sockaddr, p->socklen,
                                &sa->sockaddr, socklen, 1)
               == NGX_OK)
        {
            return p;
        }
    }

    return NULL;
}


ngx_http_ud_peer_t *
ngx_http_ud_find(ngx_http_ud_table_t *t, ngx_sockaddr_t *sa,
    socklen_t socklen)
{
    ngx_uint_t           i;
    ngx_http_ud_peer_t  *p;

    for (i = 0; i < t->npeers; i++) {
        p = &t->peers[i];

        if (p->state != NGX_HTTP_UD_FREE
            && ngx_cmp_sockaddr(&p->sockaddr.sockaddr, p->socklen,
                                &sa->sockaddr, socklen, 1)
               == NGX_OK)
        {
            return p;
        }
    }

    return NULL;
}


static ngx_http_ud_peer_t *
ngx_http_ud_alloc(ngx_http_ud_table_t *t)
{
    ngx_uint_t           i;
    ngx_atomic_t         gen;
    ngx_http_ud_peer_t  *p;

    for (i = 0; i < NGX_HTTP_UD_MAX_PEERS; i++) {
        p = &t->peers[i];

        if (p->state != NGX_HTTP_UD_FREE) {
            continue;
        }

        gen = p->generation;
        ngx_memzero(p, sizeof(ngx_http_ud_peer_t));
        p->generation = gen + 1;
        p->weight = 1;

        if (i >= t->npeers) {
            t->npeers = i + 1;
        }

        return p;
    }

    return NULL;
}


/*
 * A source's new set, applied whole: new peers start "checking" (up when
 * the upstream has no health_check), peers gone from the set drain, but
 * one that still passes its checks stays for the grace period first.
 * Peers leave before new ones come (drained ones with no request in
 * flight free their slot at once), so that a set as large as the table
 * can replace another; NGX_AGAIN when some peers found no room yet (the
 * set is then applied again at the next fetch).
 */

ngx_int_t
ngx_http_ud_apply(ngx_http_ud_srv_conf_t *udcf, ngx_array_t *set,
    ngx_uint_t source, ngx_log_t *log)
{
    u_char                     seen[NGX_HTTP_UD_MAX_PEERS];
    u_char                     found[NGX_HTTP_UD_MAX_PEERS];
    ngx_uint_t                 i, k, added, removed, missing, draining;
    ngx_msec_t                 now;
    ngx_slab_pool_t           *shpool;
    ngx_http_ud_addr_t        *a;
    ngx_http_ud_peer_t        *p;
    ngx_http_ud_table_t       *t;
    ngx_http_ud_main_conf_t   *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                          ngx_http_upstream_discovery_module);
    shpool = mcf->shpool;
    t = udcf->table;
    now = ngx_current_msec;
    added = 0;
    removed = 0;
    missing = 0;

    ngx_memzero(seen, sizeof(seen));
    ngx_memzero(found, sizeof(found));

    ngx_shmtx_lock(&shpool->mutex);

    a = set->elts;

    /* the peers the table has already */

    for (i = 0; i < set->nelts && i < NGX_HTTP_UD_MAX_PEERS; i++) {
        p = ngx_http_ud_find(t, &a[i].sockaddr, a[i].socklen);

        if (p == NULL) {
            continue;
        }

        found[i] = 1;
        seen[p - t->peers] = 1;

        if (p->source == NGX_HTTP_UD_STATIC) {
            /* a seed keeps its configured parameters */
            continue;
        }

        if (p->state == NGX_HTTP_UD_DRAINING) {
            p->state = udcf->check ? NGX_HTTP_UD_CHECKING : NGX_HTTP_UD_UP;
            p->passes = 0;
            p->up_since = (p->state == NGX_HTTP_UD_UP && now) ? now : 0;
        }

        p->source = (u_char) source;
        p->weight = a[i].weight ? a[i].weight : 1;
        p->backup = (u_char) a[i].backup;
        p->vanished = 0;
    }

    /* those gone from the set drain */

    for (k = 0; k < t->npeers; k++) {
        p = &t->peers[k];

        if (p->state == NGX_HTTP_UD_FREE || p->source != source || seen[k]
            || p->state == NGX_HTTP_UD_DRAINING)
        {
            continue;
        }

        if (udcf->check && udcf->grace && p->state == NGX_HTTP_UD_UP) {
            if (p->vanished == 0) {
                p->vanished = now;
            }

            if ((ngx_msec_int_t) (now - p->vanished)
                < (ngx_msec_int_t) udcf->grace)
            {
                /* ngx_http_ud_reap() drains it when the grace ends */
                continue;
            }
        }

        p->state = NGX_HTTP_UD_DRAINING;
        removed++;

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "upstream \"%V\": peer %*s left discovery, draining",
                      &udcf->name, (size_t) p->name_len, p->name);
    }

    (void) ngx_http_ud_free_drained(udcf, log);

    /* then the new ones */

    for (i = 0; i < set->nelts; i++) {
        if ((i < NGX_HTTP_UD_MAX_PEERS && found[i])
            || ngx_http_ud_find(t, &a[i].sockaddr, a[i].socklen) != NULL)
        {
            /* had already, or listed twice */
            continue;
        }

        p = ngx_http_ud_alloc(t);

        if (p == NULL) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "upstream \"%V\": no room for peer \"%V\", "
                          "at most %d peers", &udcf->name, &a[i].name,
                          NGX_HTTP_UD_MAX_PEERS);
            missing++;
            continue;
        }

        ngx_memcpy(&p->sockaddr, &a[i].sockaddr, a[i].socklen);
        p->socklen = a[i].socklen;
        p->name_len = (u_short) ngx_sock_ntop(&p->sockaddr.sockaddr,
                                              p->socklen, p->name,
                                              NGX_SOCKADDR_STRLEN, 1);
        p->source = (u_char) source;
        p->state = udcf->check ? NGX_HTTP_UD_CHECKING : NGX_HTTP_UD_UP;
        p->up_since = (p->state == NGX_HTTP_UD_UP && now) ? now : 0;
        p->max_fails = udcf->check ? udcf->fails : 1;
        p->fail_timeout = 10000;
        p->probe_next = now;
        p->weight = a[i].weight ? a[i].weight : 1;
        p->backup = (u_char) a[i].backup;
        added++;

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "upstream \"%V\": peer %*s discovered, %s",
                      &udcf->name, (size_t) p->name_len, p->name,
                      ngx_http_ud_state_name(p->state));
    }

    /* room to come only as draining peers leave */

    draining = 0;

    for (k = 0; missing && k < t->npeers; k++) {
        draining += (t->peers[k].state == NGX_HTTP_UD_DRAINING);
    }

    t->version++;

    ngx_shmtx_unlock(&shpool->mutex);

    if (added || removed) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "upstream \"%V\": %ui peer(s) added, %ui draining",
                      &udcf->name, added, removed);
    }

    if (missing && draining) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "upstream \"%V\": %ui peer(s) of the set found no "
                      "room while %ui drain: the set is applied again at "
                      "the next fetch", &udcf->name, missing, draining);
        return NGX_AGAIN;
    }

    return NGX_OK;
}


/* a state change, logged at warn the way the breaker logs its own */

void
ngx_http_ud_set_state(ngx_http_ud_srv_conf_t *udcf, ngx_http_ud_peer_t *p,
    ngx_uint_t state, const char *why, ngx_log_t *log)
{
    ngx_uint_t                old;
    ngx_http_ud_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                          ngx_http_upstream_discovery_module);

    ngx_shmtx_lock(&mcf->shpool->mutex);

    old = p->state;

    if (old == state || old == NGX_HTTP_UD_FREE
        || old == NGX_HTTP_UD_DRAINING)
    {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return;
    }

    p->state = (u_char) state;
    udcf->table->version++;

    if (state == NGX_HTTP_UD_UP) {
        /* back: health_check_slow_start ramps its weight up from here */
        p->up_since = ngx_current_msec ? ngx_current_msec : 1;
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "upstream \"%V\": peer %*s is %s (was %s): %s",
                  &udcf->name, (size_t) p->name_len, p->name,
                  ngx_http_ud_state_name(state), ngx_http_ud_state_name(old),
                  why);
}


/*
 * Every tick: peers gone from discovery whose grace ended start draining,
 * and drained peers whose last request has finished give their slot back.
 */

void
ngx_http_ud_reap(ngx_http_ud_srv_conf_t *udcf, ngx_log_t *log)
{
    ngx_uint_t                i;
    ngx_msec_t                now;
    ngx_http_ud_peer_t       *p;
    ngx_http_ud_table_t      *t;
    ngx_http_ud_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                          ngx_http_upstream_discovery_module);
    t = udcf->table;
    now = ngx_current_msec;

    /* read without the lock: most ticks have nothing to do */

    if ((ngx_msec_int_t) (now - t->owners_swept) < 1000) {

        for (i = 0; i < t->npeers; i++) {
            p = &t->peers[i];

            if (p->up_since || p->vanished
                || p->state == NGX_HTTP_UD_DRAINING)
            {
                break;
            }
        }

        if (i == t->npeers) {
            return;
        }
    }

    ngx_shmtx_lock(&mcf->shpool->mutex);

    ngx_http_ud_owner_sweep(udcf, now, log);

    for (i = 0; i < t->npeers; i++) {
        p = &t->peers[i];

        if (p->up_since
            && (udcf->slow_start == 0
                || (ngx_msec_int_t) (now - p->up_since)
                   >= (ngx_msec_int_t) udcf->slow_start))
        {
            /* the slow start is over */
            p->up_since = 0;
        }

        /* gone from discovery: its grace ends, or it stops passing */

        if (p->vanished
            && (p->state == NGX_HTTP_UD_UP || p->state == NGX_HTTP_UD_DOWN
                || p->state == NGX_HTTP_UD_CHECKING)
            && (p->state != NGX_HTTP_UD_UP
                || (ngx_msec_int_t) (now - p->vanished)
                   >= (ngx_msec_int_t) udcf->grace))
        {
            p->state = NGX_HTTP_UD_DRAINING;
            t->version++;

            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "upstream \"%V\": peer %*s left discovery, "
                          "draining", &udcf->name, (size_t) p->name_len,
                          p->name);
        }

    }

    (void) ngx_http_ud_free_drained(udcf, log);

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}


/*
 * With the zone locked: drained peers with no request in flight and no
 * probe under way give their slot back.  A probe lease held by a worker
 * that has died (killed mid-probe), or older than any probe can last, is
 * taken over: the probe that held it will never end.
 */

static ngx_uint_t
ngx_http_ud_free_drained(ngx_http_ud_srv_conf_t *udcf, ngx_log_t *log)
{
    ngx_uint_t            i, n;
    ngx_msec_t            now, stale;
    ngx_atomic_uint_t     owner;
    ngx_http_ud_peer_t   *p;
    ngx_http_ud_table_t  *t;

    t = udcf->table;
    now = ngx_current_msec;
    stale = 2 * udcf->timeout + 1000;
    n = 0;

    for (i = 0; i < t->npeers; i++) {
        p = &t->peers[i];

        if (p->state != NGX_HTTP_UD_DRAINING || p->conns != 0) {
            continue;
        }

        owner = p->probe_owner;

        if (owner != 0) {
            if ((ngx_msec_int_t) (now - p->probe_started)
                < (ngx_msec_int_t) stale
                && !ngx_http_ud_pid_dead((ngx_pid_t) owner))
            {
                continue;
            }

            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "upstream \"%V\": the probe of draining peer %*s "
                          "by worker process %P never ended, taken over",
                          &udcf->name, (size_t) p->name_len, p->name,
                          (ngx_pid_t) owner);

            p->probe_owner = 0;
        }

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "upstream \"%V\": peer %*s drained, removed",
                      &udcf->name, (size_t) p->name_len, p->name);

        p->state = NGX_HTTP_UD_FREE;
        p->generation++;
        t->version++;
        n++;
    }

    while (t->npeers && t->peers[t->npeers - 1].state == NGX_HTTP_UD_FREE) {
        t->npeers--;
    }

    return n;
}


/*
 * Takes n off a peer's requests in flight, never below zero: a count
 * released for a dead worker may meet a slot that a race gave a new peer.
 */

void
ngx_http_ud_conns_sub(ngx_http_ud_peer_t *p, ngx_atomic_uint_t n)
{
    ngx_atomic_uint_t  old;

    for ( ;; ) {
        old = p->conns;

        if (ngx_atomic_cmp_set(&p->conns, old, old > n ? old - n : 0)) {
            return;
        }
    }
}


/* a dead worker's record, with the zone locked: its counts taken off */

static void
ngx_http_ud_owner_release(ngx_http_ud_srv_conf_t *udcf,
    ngx_http_ud_owner_t *o, ngx_log_t *log)
{
    ngx_uint_t            i, n;
    ngx_http_ud_peer_t   *p;
    ngx_http_ud_table_t  *t;

    t = udcf->table;
    n = 0;

    for (i = 0; i < NGX_HTTP_UD_MAX_PEERS; i++) {
        if (o->conns[i] == 0) {
            continue;
        }

        p = &t->peers[i];
        n += o->conns[i];

        ngx_http_ud_conns_sub(p, o->conns[i]);

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "upstream \"%V\": %uD request(s) in flight "
                      "on peer %*s released, their worker process "
                      "%P has exited", &udcf->name, o->conns[i],
                      (size_t) p->name_len, p->name, o->pid);
    }

    ngx_memzero(o->conns, sizeof(o->conns));
    o->pid = 0;

    if (n) {
        t->version++;
    }
}


static ngx_uint_t
ngx_http_ud_owner_dead(ngx_http_ud_owner_t *o)
{
    return ngx_http_ud_pid_dead(o->pid);
}


static ngx_uint_t
ngx_http_ud_pid_dead(ngx_pid_t pid)
{
    /* EPERM: alive, as another user's; only ESRCH says it is gone */
    return kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH;
}


/*
 * At a worker's start: the requests in flight counted by workers that
 * have died are taken off their peers, and this worker gets its own
 * record.  A process slot is given again only once the master has reaped
 * its previous process, so a record of this slot belongs to a dead one
 * (the worker respawned after a crash takes its predecessor's slot), and
 * so does one with this worker's own pid (a pid used again); a record of
 * another slot is released when its process no longer exists (a worker
 * killed while it shut down after a reload), here or by the periodic
 * sweep (ngx_http_ud_owner_sweep()).
 */

void
ngx_http_ud_owner_init(ngx_http_ud_srv_conf_t *udcf, ngx_log_t *log)
{
    ngx_http_ud_table_t      *t;
    ngx_http_ud_owner_t      *o, *mine;
    ngx_http_ud_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                          ngx_http_upstream_discovery_module);
    t = udcf->table;
    mine = NULL;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    for (o = t->owners; o; o = o->next) {

        if (o->pid != 0
            && (o->slot == ngx_process_slot || o->pid == ngx_pid
                || ngx_http_ud_owner_dead(o)))
        {
            ngx_http_ud_owner_release(udcf, o, log);
        }

        if (o->pid == 0 && (mine == NULL || o->slot == ngx_process_slot)) {
            mine = o;
        }
    }

    if (mine == NULL) {
        mine = ngx_slab_calloc_locked(mcf->shpool,
                                      sizeof(ngx_http_ud_owner_t));

        if (mine == NULL) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "upstream \"%V\": no memory to count this "
                          "worker's requests in flight apart; should it "
                          "die with some, they stay counted", &udcf->name);
        } else {
            mine->next = t->owners;
            t->owners = mine;
        }
    }

    if (mine) {
        mine->slot = ngx_process_slot;
        mine->pid = ngx_pid;
    }

    udcf->owner = mine;

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}


/* once a second, by one worker: records of workers gone since */

static void
ngx_http_ud_owner_sweep(ngx_http_ud_srv_conf_t *udcf, ngx_msec_t now,
    ngx_log_t *log)
{
    ngx_http_ud_table_t  *t;
    ngx_http_ud_owner_t  *o;

    t = udcf->table;

    if ((ngx_msec_int_t) (now - t->owners_swept) < 1000) {
        return;
    }

    t->owners_swept = now;

    for (o = t->owners; o; o = o->next) {
        if (o->pid != 0 && o->pid != ngx_pid && ngx_http_ud_owner_dead(o)) {
            ngx_http_ud_owner_release(udcf, o, log);
        }
    }
}
