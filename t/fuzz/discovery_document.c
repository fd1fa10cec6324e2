
/*
 * Fuzz target: what discovery sources send, parsed as the upstream module
 * parses it.  The first byte picks the parser: a discovery document (a
 * file, or a Redis hash's JSON as "discovery file=" reads it) through
 * ngx_http_ud_parse_document(), or a Consul health API answer through
 * ngx_http_ud_consul_parse().  Beyond not crashing: an accepted set holds
 * at most 64 peers, each an address with a port and a weight from 1 to
 * 1000; a refused one says why.
 */


#include "fuzz_common.h"

#include <ngx_http.h>

#include "../../modules/upstream/ngx_http_upstream_discovery_source.c"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char              *text;
    ngx_int_t            rc;
    ngx_str_t            err;
    ngx_uint_t           i;
    ngx_pool_t          *pool;
    ngx_array_t          set;
    ngx_http_ud_addr_t  *a;
    static int           ready;

    if (!ready) {
        ngx_fuzz_init();
        ready = 1;
    }

    if (size == 0) {
        return 0;
    }

    pool = ngx_create_pool(4096, &ngx_fuzz_log);
    if (pool == NULL) {
        return 0;
    }

    if (ngx_array_init(&set, pool, 8, sizeof(ngx_http_ud_addr_t))
        != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return 0;
    }

    /* as read from a file or a socket: exactly the bytes, no terminator */
    text = ngx_pnalloc(pool, size - 1);
    if (text == NULL && size > 1) {
        ngx_destroy_pool(pool);
        return 0;
    }

    ngx_memcpy(text, data + 1, size - 1);
    ngx_str_null(&err);

    if (data[0] & 1) {
        rc = ngx_http_ud_consul_parse(text, size - 1, &set, pool, &err);

    } else {
        rc = ngx_http_ud_parse_document(text, size - 1, &set, pool, &err);
    }

    ngx_fuzz_assert(rc == NGX_OK || rc == NGX_ERROR, "a known result");

    if (rc == NGX_OK) {
        ngx_fuzz_assert(set.nelts <= NGX_HTTP_UD_MAX_PEERS, "64 peers");

        a = set.elts;

        for (i = 0; i < set.nelts; i++) {
            ngx_fuzz_assert(a[i].socklen > 0
                            && a[i].socklen <= sizeof(ngx_sockaddr_t),
                            "an address");
            ngx_fuzz_assert(a[i].sockaddr.sockaddr.sa_family == AF_INET
                            || a[i].sockaddr.sockaddr.sa_family == AF_INET6,
                            "an IP address");
            ngx_fuzz_assert(ngx_inet_get_port(&a[i].sockaddr.sockaddr) != 0,
                            "a port");
            ngx_fuzz_assert(a[i].weight >= 1 && a[i].weight <= 1000,
                            "a weight from 1 to 1000");
            ngx_fuzz_assert(a[i].name.len > 0, "a name");
        }

    } else {
        /* (memory never runs out here) */
        ngx_fuzz_assert(err.len > 0, "a refused set says why");
    }

    ngx_destroy_pool(pool);

    return 0;
}
