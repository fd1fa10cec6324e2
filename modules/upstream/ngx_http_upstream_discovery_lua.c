
/*
 * nginx-resilience: the health-checked upstreams for OpenResty's Lua
 * (lua-compat's resty.resilience.healthcheck), a C ABI read through
 * LuaJIT's FFI.  Plain C types; names point into shared memory, to be
 * copied at once (ffi.string).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upstream_discovery.h"


typedef struct {
    const u_char              *name;
    size_t                     name_len;
    int                        npeers;       /* slots, some may be free */
    int                        check;        /* health_check present */
} ngx_http_ud_lua_upstream_t;


typedef struct {
    const u_char              *name;
    size_t                     name_len;
    int                        state;        /* 1 up .. 4 draining */
    int                        admin;        /* 0, 1 drain, 2 down */
    int                        backup;
    int                        source;       /* 0 static .. 4 dns */
    int                        weight;
    int                        fails;
    int                        passes;
    int                        checked;
    int                        last_ok;
    int64_t                    latency_ms;
    int64_t                    inflight;
    int64_t                    requests;
    int64_t                    probes;
} ngx_http_ud_lua_peer_t;


/* any upstream of the configuration, and its configured addresses */

typedef struct {
    const u_char              *name;
    size_t                     name_len;
    int                        ours;         /* index for the above, or -1 */
} ngx_http_ud_lua_any_t;


typedef struct {
    const u_char              *name;
    size_t                     name_len;
    int                        backup;
    int                        down;
} ngx_http_ud_lua_server_t;


int ngx_http_ud_lua_upstreams(void);
int ngx_http_ud_lua_upstream(int i, ngx_http_ud_lua_upstream_t *out);
int ngx_http_ud_lua_peer(int i, int j, ngx_http_ud_lua_peer_t *out);
int ngx_http_ud_lua_all_upstreams(void);
int ngx_http_ud_lua_any_upstream(int i, ngx_http_ud_lua_any_t *out);
int ngx_http_ud_lua_server(int i, int j, ngx_http_ud_lua_server_t *out);


static ngx_http_ud_srv_conf_t *ngx_http_ud_lua_get(int i);
static ngx_http_upstream_srv_conf_t *ngx_http_ud_lua_any(int i);


static ngx_http_ud_srv_conf_t *
ngx_http_ud_lua_get(int i)
{
    ngx_http_ud_main_conf_t   *mcf;
    ngx_http_ud_srv_conf_t   **ups;

    if (ngx_cycle == NULL || ngx_cycle->conf_ctx == NULL) {
        return NULL;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                          ngx_http_upstream_discovery_module);

    if (mcf == NULL || i < 0 || (ngx_uint_t) i >= mcf->upstreams.nelts) {
        return NULL;
    }

    ups = mcf->upstreams.elts;

    return ups[i]->table ? ups[i] : NULL;
}


/* how many upstreams have health_check or discovery */

int
ngx_http_ud_lua_upstreams(void)
{
    ngx_http_ud_main_conf_t  *mcf;

    if (ngx_cycle == NULL || ngx_cycle->conf_ctx == NULL) {
        return 0;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                          ngx_http_upstream_discovery_module);

    return mcf ? (int) mcf->upstreams.nelts : 0;
}


int
ngx_http_ud_lua_upstream(int i, ngx_http_ud_lua_upstream_t *out)
{
    ngx_http_ud_srv_conf_t  *udcf;

    udcf = ngx_http_ud_lua_get(i);

    if (udcf == NULL || out == NULL) {
        return NGX_ERROR;
    }

    out->name = udcf->name.data;
    out->name_len = udcf->name.len;
    out->npeers = (int) udcf->table->npeers;
    out->check = (int) udcf->check;

    return NGX_OK;
}


/* NGX_OK, NGX_DECLINED (a free slot), NGX_ERROR (no such peer) */

int
ngx_http_ud_lua_peer(int i, int j, ngx_http_ud_lua_peer_t *out)
{
    ngx_http_ud_peer_t      *p;
    ngx_http_ud_srv_conf_t  *udcf;

    udcf = ngx_http_ud_lua_get(i);

    if (udcf == NULL || out == NULL || j < 0
        || (ngx_uint_t) j >= udcf->table->npeers)
    {
        return NGX_ERROR;
    }

    p = &udcf->table->peers[j];

    if (p->state == NGX_HTTP_UD_FREE) {
        return NGX_DECLINED;
    }

    out->name = p->name;
    out->name_len = p->name_len;
    out->state = p->state;
    out->admin = p->admin;
    out->backup = p->backup;
    out->source = p->source;
    out->weight = (int) p->weight;
    out->fails = (int) p->fails;
    out->passes = (int) p->passes;
    out->checked = p->checked;
    out->last_ok = p->last_ok;
    out->latency_ms = (int64_t) p->latency;
    out->inflight = (int64_t) p->conns;
    out->requests = (int64_t) p->requests;
    out->probes = (int64_t) p->probes;

    return NGX_OK;
}


static ngx_http_upstream_srv_conf_t *
ngx_http_ud_lua_any(int i)
{
    ngx_http_upstream_main_conf_t   *umcf;
    ngx_http_upstream_srv_conf_t   **uscf;

    if (ngx_cycle == NULL || ngx_cycle->conf_ctx == NULL) {
        return NULL;
    }

    umcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_upstream_module);

    if (umcf == NULL || i < 0 || (ngx_uint_t) i >= umcf->upstreams.nelts) {
        return NULL;
    }

    uscf = umcf->upstreams.elts;

    return uscf[i];
}


/*
 * every upstream of the configuration (upstream {} blocks and those
 * proxy_pass makes), in its order, as lua-upstream-nginx-module's
 * get_upstreams() lists them
 */

int
ngx_http_ud_lua_all_upstreams(void)
{
    ngx_http_upstream_main_conf_t  *umcf;

    if (ngx_cycle == NULL || ngx_cycle->conf_ctx == NULL) {
        return 0;
    }

    umcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_upstream_module);

    return umcf ? (int) umcf->upstreams.nelts : 0;
}


int
ngx_http_ud_lua_any_upstream(int i, ngx_http_ud_lua_any_t *out)
{
    int                             k;
    ngx_http_ud_srv_conf_t         *udcf;
    ngx_http_upstream_srv_conf_t   *uscf;

    uscf = ngx_http_ud_lua_any(i);

    if (uscf == NULL || out == NULL) {
        return NGX_ERROR;
    }

    out->name = uscf->host.data;
    out->name_len = uscf->host.len;
    out->ours = -1;

    for (k = 0; k < ngx_http_ud_lua_upstreams(); k++) {
        udcf = ngx_http_ud_lua_get(k);

        if (udcf && udcf->uscf == uscf) {
            out->ours = k;
            break;
        }
    }

    return NGX_OK;
}


/* the j-th configured address of upstream i; NGX_ERROR past the last */

int
ngx_http_ud_lua_server(int i, int j, ngx_http_ud_lua_server_t *out)
{
    ngx_uint_t                      n, k;
    ngx_http_upstream_server_t     *server;
    ngx_http_upstream_srv_conf_t   *uscf;

    uscf = ngx_http_ud_lua_any(i);

    if (uscf == NULL || out == NULL || j < 0 || uscf->servers == NULL) {
        return NGX_ERROR;
    }

    server = uscf->servers->elts;

    for (k = 0; k < uscf->servers->nelts; k++) {
        n = server[k].naddrs;

        if ((ngx_uint_t) j < n) {
            out->name = server[k].addrs[j].name.data;
            out->name_len = server[k].addrs[j].name.len;
            out->backup = server[k].backup;
            out->down = (int) server[k].down;
            return NGX_OK;
        }

        j -= (int) n;
    }

    return NGX_ERROR;
}
