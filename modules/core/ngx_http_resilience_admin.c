
/*
 * nginx-resilience: the resilience_admin JSON control API.
 *
 *   GET <location>/                     every resource
 *   GET <location>/<resource>[/<id>]    one resource, or one item of it
 *   PUT <location>/<resource>/<id>      change an item (JSON object body)
 *
 * Feature modules register resources ("breakers") at configuration time;
 * the core routes requests, reads and parses the body, and answers JSON,
 * errors included ({"error": "..."} with 400, 404, 405 or 413).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_resilience_redis.h"


#define NGX_HTTP_RESILIENCE_ADMIN_MAX_BODY  65536


static void ngx_http_resilience_admin_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_resilience_admin_route(ngx_http_request_t *r,
    ngx_http_resilience_admin_t **res, ngx_str_t *id);
static ngx_int_t ngx_http_resilience_admin_send(ngx_http_request_t *r,
    ngx_uint_t status, cJSON *json);
static ngx_int_t ngx_http_resilience_admin_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *fmt, ngx_str_t *arg);


ngx_int_t
ngx_http_resilience_admin_register(ngx_conf_t *cf, const char *name,
    ngx_http_resilience_admin_get_pt get,
    ngx_http_resilience_admin_put_pt put, void *data)
{
    ngx_http_resilience_admin_t      *res;
    ngx_http_resilience_main_conf_t  *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_resilience_module);

    res = ngx_array_push(&rmcf->admin);
    if (res == NULL) {
        return NGX_ERROR;
    }

    res->name.data = (u_char *) name;
    res->name.len = ngx_strlen(name);
    res->get = get;
    res->put = put;
    res->data = data;

    return NGX_OK;
}


/* the path below the location: "", "breakers", "breakers/orders" */

static ngx_int_t
ngx_http_resilience_admin_route(ngx_http_request_t *r,
    ngx_http_resilience_admin_t **res, ngx_str_t *id)
{
    u_char                           *p, *last, *slash;
    ngx_str_t                         name;
    ngx_uint_t                        i;
    ngx_http_core_loc_conf_t         *clcf;
    ngx_http_resilience_admin_t      *a;
    ngx_http_resilience_main_conf_t  *rmcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    rmcf = ngx_http_get_module_main_conf(r, ngx_http_resilience_module);

    p = r->uri.data;
    last = r->uri.data + r->uri.len;

    if ((size_t) (last - p) >= clcf->name.len
        && ngx_strncmp(p, clcf->name.data, clcf->name.len) == 0)
    {
        p += clcf->name.len;
    }

    while (p < last && *p == '/') {
        p++;
    }

    while (last > p && last[-1] == '/') {
        last--;
    }

    *res = NULL;
    ngx_str_null(id);

    if (p == last) {
        return NGX_OK;
    }

    slash = ngx_strlchr(p, last, '/');

    name.data = p;
    name.len = (slash ? slash : last) - p;

    if (slash) {
        id->data = slash + 1;
        id->len = last - id->data;

        if (ngx_strlchr(id->data, last, '/') != NULL || id->len == 0) {
            return NGX_DECLINED;
        }
    }

    a = rmcf->admin.elts;

    for (i = 0; i < rmcf->admin.nelts; i++) {
        if (a[i].name.len == name.len
            && ngx_strncmp(a[i].name.data, name.data, name.len) == 0)
        {
            *res = &a[i];
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_http_resilience_admin_handler(ngx_http_request_t *r)
{
    cJSON                            *out;
    ngx_int_t                         rc;
    ngx_str_t                         id, err;
    ngx_uint_t                        i;
    ngx_http_resilience_admin_t      *res, *a;
    ngx_http_resilience_main_conf_t  *rmcf;

    /*
     * Every answer but a PUT's reads or discards the body first: a body
     * left unread on a kept-alive connection would be parsed as the
     * next request.
     */

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_PUT))) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_resilience_admin_error(r, NGX_HTTP_NOT_ALLOWED,
                                        "method not allowed, use GET or PUT",
                                        NULL);
    }

    if (ngx_http_resilience_admin_route(r, &res, &id) != NGX_OK) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_resilience_admin_error(r, NGX_HTTP_NOT_FOUND,
                                               "no such resource \"%V\"",
                                               &r->uri);
    }

    if (r->method == NGX_HTTP_PUT) {
        if (res == NULL || id.len == 0 || res->put == NULL) {
            rc = ngx_http_discard_request_body(r);
            if (rc != NGX_OK) {
                return rc;
            }

            return ngx_http_resilience_admin_error(r, NGX_HTTP_NOT_ALLOWED,
                             "PUT takes a single item, such as "
                             "breakers/<name>", NULL);
        }

        if (r->headers_in.content_length_n
            > NGX_HTTP_RESILIENCE_ADMIN_MAX_BODY)
        {
            rc = ngx_http_discard_request_body(r);
            if (rc != NGX_OK) {
                return rc;
            }

            return ngx_http_resilience_admin_error(r,
                                   NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                   "the body is too large", NULL);
        }

        r->request_body_in_single_buf = 1;
        r->request_body_in_persistent_file = 0;

        rc = ngx_http_read_client_request_body(r,
                                           ngx_http_resilience_admin_body);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    out = cJSON_CreateObject();
    if (out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(&err);

    if (res != NULL) {
        rc = res->get(r, &id, out, &err, res->data);

    } else {
        rmcf = ngx_http_get_module_main_conf(r, ngx_http_resilience_module);
        a = rmcf->admin.elts;
        rc = NGX_HTTP_OK;

        cJSON_AddStringToObject(out, "version", NGX_HTTP_RESILIENCE_VERSION);

        for (i = 0; i < rmcf->admin.nelts && rc == NGX_HTTP_OK; i++) {
            ngx_str_null(&id);
            rc = a[i].get(r, &id, out, &err, a[i].data);
        }
    }

    if (rc != NGX_HTTP_OK) {
        cJSON_Delete(out);

        if (rc == NGX_HTTP_INTERNAL_SERVER_ERROR) {
            return rc;
        }

        return ngx_http_resilience_admin_error(r, rc, "%V", &err);
    }

    return ngx_http_resilience_admin_send(r, NGX_HTTP_OK, out);
}


static void
ngx_http_resilience_admin_body(ngx_http_request_t *r)
{
    cJSON                        *body, *out;
    off_t                         size;
    size_t                        len;
    u_char                       *p;
    ssize_t                       n;
    ngx_int_t                     rc;
    ngx_str_t                     id, err;
    ngx_buf_t                    *b;
    ngx_chain_t                  *cl;
    ngx_http_resilience_admin_t  *res;

    if (ngx_http_resilience_admin_route(r, &res, &id) != NGX_OK
        || res == NULL)
    {
        ngx_http_finalize_request(r, NGX_HTTP_NOT_FOUND);
        return;
    }

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        ngx_http_finalize_request(r,
            ngx_http_resilience_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                    "a JSON object body is required", NULL));
        return;
    }

    /* a body over client_body_buffer_size was written to a file */

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len > NGX_HTTP_RESILIENCE_ADMIN_MAX_BODY) {
        ngx_http_finalize_request(r,
            ngx_http_resilience_admin_error(r,
                                   NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                   "the body is too large", NULL));
        return;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    b->pos = p;
    b->last = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {

        if (ngx_buf_in_memory(cl->buf)) {
            b->last = ngx_cpymem(b->last, cl->buf->pos,
                                 cl->buf->last - cl->buf->pos);
            continue;
        }

        size = cl->buf->file_last - cl->buf->file_pos;

        n = ngx_read_file(cl->buf->file, b->last, (size_t) size,
                          cl->buf->file_pos);

        if (n != (ssize_t) size) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "resilience_admin: could not read the body "
                          "from \"%V\"", &cl->buf->file->name);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        b->last += size;
    }

    len = b->last - p;

    *b->last = '\0';

    body = cJSON_ParseWithLength((const char *) p, len);

    if (body == NULL || !cJSON_IsObject(body)) {
        cJSON_Delete(body);
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "resilience_admin: rejected a body that is not a "
                      "JSON object");
        ngx_http_finalize_request(r,
            ngx_http_resilience_admin_error(r, NGX_HTTP_BAD_REQUEST,
                                   "the body is not a JSON object", NULL));
        return;
    }

    out = cJSON_CreateObject();
    if (out == NULL) {
        cJSON_Delete(body);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_str_null(&err);

    rc = res->put(r, &id, body, out, &err, res->data);

    cJSON_Delete(body);

    if (rc != NGX_HTTP_OK) {
        cJSON_Delete(out);

        if (rc == NGX_HTTP_INTERNAL_SERVER_ERROR) {
            ngx_http_finalize_request(r, rc);
            return;
        }

        ngx_http_finalize_request(r,
                    ngx_http_resilience_admin_error(r, rc, "%V", &err));
        return;
    }

    ngx_http_finalize_request(r,
                        ngx_http_resilience_admin_send(r, NGX_HTTP_OK, out));
}


static ngx_int_t
ngx_http_resilience_admin_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *fmt, ngx_str_t *arg)
{
    u_char  *p, *msg;
    cJSON   *json;

    msg = ngx_pnalloc(r->pool, 512);
    if (msg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (arg) {
        p = ngx_snprintf(msg, 511, fmt, arg);

    } else {
        p = ngx_snprintf(msg, 511, "%s", fmt);
    }

    *p = '\0';

    json = cJSON_CreateObject();
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cJSON_AddStringToObject(json, "error", (char *) msg);

    return ngx_http_resilience_admin_send(r, status, json);
}


/* sends and frees the JSON */

static ngx_int_t
ngx_http_resilience_admin_send(ngx_http_request_t *r, ngx_uint_t status,
    cJSON *json)
{
    char         *text;
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        cJSON_free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, text, len);
    *b->last++ = '\n';
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    cJSON_free(text);

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
