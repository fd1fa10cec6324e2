
/*
 * Fuzz target: the body of a resilience_admin PUT to a breaker, as JSON,
 * through ngx_http_breaker_admin_parse().  Beyond not crashing: what it
 * accepts is within the bounds the breaker state holds (a mode it knows,
 * a failure rate from 0.01% to 100%, an open time from 1 ms to 1 d, counts
 * from 1 to 100000000), and what it refuses is a 400 with a reason.
 */


#include "fuzz_common.h"

#include <ngx_http.h>

#include "../../modules/breaker/ngx_http_breaker_admin.c"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* the last "open" of the body, parsed as nginx parses times */

static ngx_int_t
ngx_fuzz_open_time(cJSON *body)
{
    cJSON      *item;
    ngx_str_t   v;
    ngx_int_t   n;

    n = NGX_ERROR;

    for (item = body->child; item; item = item->next) {
        if (ngx_strcmp(item->string, "open") == 0 && cJSON_IsString(item)) {
            v.data = (u_char *) item->valuestring;
            v.len = ngx_strlen(item->valuestring);
            n = ngx_parse_time(&v, 0);
        }
    }

    return n;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON                        *body;
    ngx_int_t                     rc;
    ngx_str_t                     err;
    ngx_uint_t                    clear;
    ngx_http_request_t            r;
    ngx_http_breaker_override_t   o;
    static int                    ready;

    if (!ready) {
        ngx_fuzz_init();
        ready = 1;
    }

    /* as the admin handler does: a JSON object, or a 400 before this */
    body = cJSON_ParseWithLength((const char *) data, size);

    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return 0;
    }

    ngx_memzero(&r, sizeof(ngx_http_request_t));
    r.pool = ngx_create_pool(4096, &ngx_fuzz_log);
    if (r.pool == NULL) {
        cJSON_Delete(body);
        return 0;
    }

    ngx_str_null(&err);

    rc = ngx_http_breaker_admin_parse(&r, body, &o, &clear, &err);

    ngx_fuzz_assert(rc == NGX_HTTP_OK || rc == NGX_HTTP_BAD_REQUEST,
                    "200 or 400");

    if (rc == NGX_HTTP_OK) {
        ngx_fuzz_assert(o.mode <= NGX_HTTP_BREAKER_OFF, "a known mode");
        ngx_fuzz_assert(!(o.flags & NGX_HTTP_BREAKER_O_RATE)
                        || (o.rate >= 1 && o.rate <= 10000),
                        "a failure rate within 0.01% and 100%");
        ngx_fuzz_assert(!(o.flags & NGX_HTTP_BREAKER_O_OPEN)
                        || (o.open_time >= 1
                            && o.open_time <= NGX_HTTP_BREAKER_OPEN_MAX),
                        "an open time within 1 ms and 1 d");
        if (o.flags & NGX_HTTP_BREAKER_O_OPEN) {
            /* the time written, not a value cut to 32 bits ("50d") */
            ngx_fuzz_assert(o.open_time == ngx_fuzz_open_time(body),
                            "the open time is the one written");
        }

        ngx_fuzz_assert(!(o.flags & NGX_HTTP_BREAKER_O_CONSECUTIVE)
                        || (o.consecutive >= 1
                            && o.consecutive <= 100000000),
                        "a count of failures within bounds");
        ngx_fuzz_assert(!(o.flags & NGX_HTTP_BREAKER_O_MIN)
                        || (o.min_requests >= 1
                            && o.min_requests <= 100000000),
                        "a count of requests within bounds");
        ngx_fuzz_assert(o.flags || clear || o.mode,
                        "an accepted body changes something");

    } else {
        ngx_fuzz_assert(err.len > 0, "a 400 says why");
    }

    ngx_destroy_pool(r.pool);
    cJSON_Delete(body);

    return 0;
}
