
/*
 * Fuzz target: ngx_http_deadline_parse(), a deadline header's value in
 * each format.  The first byte picks the format (grpc, ms, s, epoch_ms),
 * the rest is the value.  Beyond not crashing: a value accepted in a
 * relative format never gives more than the module's limit from the
 * request's arrival, and an epoch_ms value never more than that limit
 * past now.
 */


#include "fuzz_common.h"

#include "../../modules/deadline/ngx_http_deadline_module.c"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t     now, start, at;
    ngx_int_t    rc;
    ngx_str_t    v;
    ngx_uint_t   format;
    static int   ready;

    static ngx_uint_t  formats[] = {
        NGX_HTTP_DEADLINE_GRPC, NGX_HTTP_DEADLINE_MS, NGX_HTTP_DEADLINE_S,
        NGX_HTTP_DEADLINE_EPOCH_MS
    };

    if (!ready) {
        ngx_fuzz_init();
        ready = 1;
    }

    if (size == 0) {
        return 0;
    }

    format = formats[data[0] % 4];

    /* the value as nginx holds a header's: not NUL-terminated */
    v.len = size - 1;
    v.data = malloc(v.len + 1);
    if (v.data == NULL) {
        return 0;
    }

    ngx_memcpy(v.data, data + 1, v.len);

    now = 1790000000000ULL;
    start = now - 250;
    at = 0;

    rc = ngx_http_deadline_parse(&v, format, now, start, &at);

    ngx_fuzz_assert(rc == NGX_OK || rc == NGX_DECLINED, "a known result");

    if (rc == NGX_OK) {
        if (format == NGX_HTTP_DEADLINE_EPOCH_MS) {
            ngx_fuzz_assert(at <= now + NGX_HTTP_DEADLINE_LIMIT,
                            "epoch_ms within the skew guard");

        } else {
            ngx_fuzz_assert(at >= start
                            && at - start <= NGX_HTTP_DEADLINE_LIMIT,
                            "a relative budget within the limit");
        }

        ngx_fuzz_assert(v.len > 0, "an empty value refused");
    }

    free(v.data);

    return 0;
}
