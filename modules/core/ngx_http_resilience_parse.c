
/*
 * nginx-resilience: parsers shared by every module's directives.
 *
 * Each parser takes the value to check and, on error, logs a message
 * naming the directive being parsed (cf->args[0]) and the bad value,
 * so that "nginx -t" says exactly what to fix.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_resilience.h"


static void ngx_http_resilience_parse_error(ngx_conf_t *cf, const char *what,
    ngx_str_t *value, const char *hint);
static ngx_int_t ngx_http_resilience_parse_fixed(u_char *p, u_char *last,
    ngx_uint_t scale, uint64_t max, uint64_t *out);


static void
ngx_http_resilience_parse_error(ngx_conf_t *cf, const char *what,
    ngx_str_t *value, const char *hint)
{
    ngx_str_t  *args;

    args = cf->args->elts;

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" directive: invalid %s \"%V\"%s%s",
                       &args[0], what, value, hint[0] ? ", " : "", hint);
}


/*
 * A non-negative decimal with at most "scale" digits after the point
 * (scale being 10, 100 or 1000), returned multiplied by scale.
 */

static ngx_int_t
ngx_http_resilience_parse_fixed(u_char *p, u_char *last, ngx_uint_t scale,
    uint64_t max, uint64_t *out)
{
    uint64_t    n, frac, div;
    ngx_uint_t  digits;

    if (p == last) {
        return NGX_ERROR;
    }

    n = 0;
    digits = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        n = n * 10 + (*p++ - '0');
        digits++;

        if (n > max) {
            return NGX_ERROR;
        }
    }

    frac = 0;
    div = scale;

    if (p < last && *p == '.') {
        p++;

        if (p == last) {
            return NGX_ERROR;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            if (div > 1) {
                div /= 10;
                frac += (*p - '0') * div;

            } else if (*p != '0') {
                /* more precision than we keep */
                return NGX_ERROR;
            }

            p++;
            digits++;
        }
    }

    if (p != last || digits == 0) {
        return NGX_ERROR;
    }

    n = n * scale + frac;

    if (n > max * scale) {
        return NGX_ERROR;
    }

    *out = n;

    return NGX_OK;
}


ngx_int_t
ngx_http_resilience_parse_msec(ngx_conf_t *cf, ngx_str_t *value,
    ngx_msec_t *msec)
{
    ngx_int_t  n;

    n = ngx_parse_time(value, 0);

    if (n == NGX_ERROR) {
        ngx_http_resilience_parse_error(cf, "duration", value,
                          "expected a time such as 500ms, 3s, 1m or 1h");
        return NGX_ERROR;
    }

    *msec = (ngx_msec_t) n;

    return NGX_OK;
}


ngx_int_t
ngx_http_resilience_parse_size(ngx_conf_t *cf, ngx_str_t *value,
    size_t *size)
{
    ssize_t  n;

    n = ngx_parse_size(value);

    if (n == NGX_ERROR) {
        ngx_http_resilience_parse_error(cf, "size", value,
                                  "expected a size such as 64k or 10m");
        return NGX_ERROR;
    }

    *size = (size_t) n;

    return NGX_OK;
}


/* "50%", "12.5%", "0.01%": returned in basis points, 0 .. 10000 */

ngx_int_t
ngx_http_resilience_parse_percent(ngx_conf_t *cf, ngx_str_t *value,
    ngx_uint_t *basis_points)
{
    uint64_t  n;

    if (value->len < 2
        || value->data[value->len - 1] != '%'
        || ngx_http_resilience_parse_fixed(value->data,
                                           value->data + value->len - 1,
                                           100, 100, &n)
           != NGX_OK)
    {
        ngx_http_resilience_parse_error(cf, "percentage", value,
                      "expected 0% to 100%, with at most two decimals");
        return NGX_ERROR;
    }

    *basis_points = (ngx_uint_t) n;

    return NGX_OK;
}


/* "100r/s", "1.5r/m", "20r/h", "1000r/d" */

ngx_int_t
ngx_http_resilience_parse_rate(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_resilience_rate_t *rate)
{
    u_char      *last;
    uint64_t     n;
    ngx_msec_t   period;

    if (value->len < 4) {
        goto invalid;
    }

    last = value->data + value->len - 3;

    if (last[0] != 'r' || last[1] != '/') {
        goto invalid;
    }

    switch (last[2]) {
    case 's':
        period = 1000;
        break;
    case 'm':
        period = 60 * 1000;
        break;
    case 'h':
        period = 60 * 60 * 1000;
        break;
    case 'd':
        period = 24 * 60 * 60 * 1000;
        break;
    default:
        goto invalid;
    }

    if (ngx_http_resilience_parse_fixed(value->data, last, 1000,
                                        (uint64_t) 1 << 32, &n)
        != NGX_OK
        || n == 0)
    {
        goto invalid;
    }

    rate->milli = n;
    rate->period = period;

    return NGX_OK;

invalid:

    ngx_http_resilience_parse_error(cf, "rate", value,
                   "expected a positive number of requests per s, m, h or d "
                   "such as 100r/s or 0.5r/m");
    return NGX_ERROR;
}


/* one status "503" or a range "500-599", added to the set */

ngx_int_t
ngx_http_resilience_parse_status(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_resilience_status_set_t *set)
{
    u_char     *dash;
    ngx_int_t   lo, hi, s;

    dash = ngx_strlchr(value->data, value->data + value->len, '-');

    if (dash == NULL) {
        lo = ngx_atoi(value->data, value->len);
        hi = lo;

    } else {
        lo = ngx_atoi(value->data, dash - value->data);
        hi = ngx_atoi(dash + 1, value->data + value->len - dash - 1);
    }

    if (lo < 100 || hi > 599 || lo > hi
        || (dash == NULL && value->len != 3))
    {
        ngx_http_resilience_parse_error(cf, "status", value,
                    "expected a code from 100 to 599 or a range such as "
                    "500-599");
        return NGX_ERROR;
    }

    for (s = lo; s <= hi; s++) {
        set->bits[s / 64] |= (uint64_t) 1 << (s % 64);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_resilience_parse_uint(ngx_conf_t *cf, ngx_str_t *value,
    ngx_uint_t min, ngx_uint_t max, ngx_uint_t *n)
{
    ngx_int_t  v;
    ngx_str_t  *args;

    v = ngx_atoi(value->data, value->len);

    if (v == NGX_ERROR || (ngx_uint_t) v < min || (ngx_uint_t) v > max) {
        args = cf->args->elts;
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive: invalid number \"%V\", "
                           "expected %ui to %ui", &args[0], value, min, max);
        return NGX_ERROR;
    }

    *n = (ngx_uint_t) v;

    return NGX_OK;
}


/* "name=value": splits at the first '=', NGX_DECLINED when there is none */

ngx_int_t
ngx_http_resilience_split_option(ngx_str_t *arg, ngx_str_t *name,
    ngx_str_t *value)
{
    u_char  *eq;

    eq = ngx_strlchr(arg->data, arg->data + arg->len, '=');

    if (eq == NULL) {
        return NGX_DECLINED;
    }

    name->data = arg->data;
    name->len = eq - arg->data;
    value->data = eq + 1;
    value->len = arg->data + arg->len - value->data;

    return NGX_OK;
}


/*
 * one of a directive's words ("gcra", "least_conn"...), its value in
 * "out"; the error lists the words it takes
 */

ngx_int_t
ngx_http_resilience_parse_enum(ngx_conf_t *cf, const char *what,
    ngx_str_t *value, ngx_conf_enum_t *e, ngx_uint_t *out)
{
    u_char      *p, *last;
    ngx_uint_t   i, n;
    u_char       hint[256];

    for (n = 0; e[n].name.len; n++) {
        if (e[n].name.len == value->len
            && ngx_strncmp(e[n].name.data, value->data, value->len) == 0)
        {
            *out = e[n].value;
            return NGX_OK;
        }
    }

    p = ngx_cpymem(hint, "expected ", 9);
    last = hint + sizeof(hint) - 1;

    for (i = 0; i < n; i++) {
        p = ngx_slprintf(p, last, "%s\"%V\"",
                         i == 0 ? "" : (i == n - 1 ? " or " : ", "),
                         &e[i].name);
    }

    *p = '\0';

    ngx_http_resilience_parse_error(cf, what, value, (char *) hint);

    return NGX_ERROR;
}
