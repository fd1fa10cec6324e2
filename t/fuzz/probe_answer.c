
/*
 * Fuzz target: a health check's answer, as a peer (or whatever listens on
 * its port) sends it, through ngx_http_ud_probe_match(): the status line,
 * then a health_check_match's header and body rules, here
 *
 *     health_check_match ok {
 *         status 200-299;
 *         header X-Ready;
 *         header Content-Type ~ "json";
 *         header X-Role = primary;
 *         body ~ "\"status\": *\"ok\"";
 *     }
 *
 * or none (the first byte's low bit).  Beyond not crashing: an answer
 * that passes starts with a status line in the accepted range, and one
 * that fails says why.
 */


#include "fuzz_common.h"

#include <ngx_http.h>

#include "../../modules/upstream/ngx_http_upstream_discovery_check.c"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ngx_http_ud_match_t     ngx_fuzz_match;
static ngx_http_ud_srv_conf_t  ngx_fuzz_udcf;


static ngx_regex_t *
ngx_fuzz_regex(ngx_pool_t *pool, char *pattern)
{
    u_char               errstr[NGX_MAX_CONF_ERRSTR];
    ngx_regex_compile_t  rc;

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern.data = (u_char *) pattern;
    rc.pattern.len = ngx_strlen(pattern);
    rc.pool = pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        fprintf(stderr, "fuzz: regex \"%s\": %.*s\n", pattern,
                (int) rc.err.len, rc.err.data);
        abort();
    }

    return rc.regex;
}


static void
ngx_fuzz_setup(void)
{
    ngx_uint_t                   s;
    ngx_pool_t                  *pool;
    ngx_http_ud_header_match_t  *h;

    pool = ngx_create_pool(16384, &ngx_fuzz_log);
    if (pool == NULL) {
        abort();
    }

    ngx_fuzz_match.has_status = 1;

    for (s = 200; s <= 299; s++) {
        ngx_fuzz_match.status.bits[s / 64] |= (uint64_t) 1 << (s % 64);
    }

    if (ngx_array_init(&ngx_fuzz_match.headers, pool, 3,
                       sizeof(ngx_http_ud_header_match_t))
        != NGX_OK)
    {
        abort();
    }

    h = ngx_array_push_n(&ngx_fuzz_match.headers, 3);
    if (h == NULL) {
        abort();
    }

    ngx_memzero(h, 3 * sizeof(ngx_http_ud_header_match_t));

    ngx_str_set(&h[0].name, "x-ready");
    ngx_str_set(&h[1].name, "content-type");
    h[1].regex = ngx_fuzz_regex(pool, "json");
    ngx_str_set(&h[2].name, "x-role");
    ngx_str_set(&h[2].value, "primary");

    ngx_fuzz_match.body = ngx_fuzz_regex(pool, "\"status\": *\"ok\"");
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_buf_t             b;
    ngx_uint_t            ok, status;
    const char           *why;
    ngx_http_ud_probe_t   pr;
    static int            ready;

    if (!ready) {
        ngx_fuzz_init();
        ngx_fuzz_setup();
        ready = 1;
    }

    if (size == 0) {
        return 0;
    }

    ngx_fuzz_udcf.match = (data[0] & 1) ? &ngx_fuzz_match : NULL;

    /* the answer as read: exactly the bytes, in a buffer of their own */
    ngx_memzero(&b, sizeof(ngx_buf_t));
    b.start = malloc(size - 1 + 1);
    if (b.start == NULL) {
        return 0;
    }

    ngx_memcpy(b.start, data + 1, size - 1);
    b.pos = b.start;
    b.last = b.start + size - 1;
    b.end = b.last;

    ngx_memzero(&pr, sizeof(ngx_http_ud_probe_t));
    pr.udcf = &ngx_fuzz_udcf;
    pr.in = &b;
    why = NULL;

    ok = ngx_http_ud_probe_match(&pr, &why);

    if (ok) {
        ngx_fuzz_assert(size - 1 >= 12
                        && ngx_strncmp(b.pos, "HTTP/1.", 7) == 0,
                        "a passed answer has a status line");

        status = (b.pos[9] - '0') * 100 + (b.pos[10] - '0') * 10
                 + (b.pos[11] - '0');

        ngx_fuzz_assert(status >= 200
                        && status <= (ngx_fuzz_udcf.match ? 299 : 399),
                        "a passed answer's status is accepted");

    } else {
        ngx_fuzz_assert(why != NULL && why[0] != '\0',
                        "a failed answer says why");
    }

    free(b.start);

    return 0;
}
