
/*
 * nginx-resilience: the breakers in the resilience_admin API.
 *
 *   GET  .../breakers                every breaker (and key)
 *   GET  .../breakers/<name>         one breaker, all its keys
 *   PUT  .../breakers/<name>         {"mode": "force_open",
 *                                     "failure_rate": "60%",
 *                                     "consecutive_failures": 3,
 *                                     "min_requests": 10,
 *                                     "open": "10s"}
 *
 * A PUT overrides the configuration of every key of the breaker, in
 * shared memory, so every worker applies it at once, without a reload;
 * "default" as a value gives the setting back to nginx.conf.  Overrides
 * last until the zone is lost (a restart, or a resize on reload).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_breaker.h"


static ngx_int_t ngx_http_breaker_admin_get(ngx_http_request_t *r,
    ngx_str_t *id, cJSON *out, ngx_str_t *err, void *data);
static ngx_int_t ngx_http_breaker_admin_put(ngx_http_request_t *r,
    ngx_str_t *id, cJSON *body, cJSON *out, ngx_str_t *err, void *data);
static ngx_int_t ngx_http_breaker_admin_parse(ngx_http_request_t *r,
    cJSON *body, ngx_http_breaker_override_t *o, ngx_uint_t *clear,
    ngx_str_t *err);
static ngx_int_t ngx_http_breaker_admin_list(ngx_http_request_t *r,
    ngx_http_breaker_zone_t *z, ngx_str_t *name, cJSON *list);
static ngx_http_breaker_t *ngx_http_breaker_admin_find(ngx_array_t *breakers,
    ngx_str_t *name);
static void ngx_http_breaker_admin_apply(ngx_http_breaker_override_t *to,
    ngx_http_breaker_override_t *o, ngx_uint_t clear);
static ngx_int_t ngx_http_breaker_admin_err(ngx_http_request_t *r,
    ngx_str_t *err, ngx_uint_t status, const char *fmt, const char *arg);


static const char  *ngx_http_breaker_mode_names[] = {
    "default", "enforce", "dry_run", "force_open", "force_closed", "off"
};



ngx_int_t
ngx_http_breaker_admin_init(ngx_conf_t *cf, ngx_array_t *breakers)
{
    return ngx_http_resilience_admin_register(cf, "breakers",
                                              ngx_http_breaker_admin_get,
                                              ngx_http_breaker_admin_put,
                                              breakers);
}


static ngx_http_breaker_t *
ngx_http_breaker_admin_find(ngx_array_t *breakers, ngx_str_t *name)
{
    ngx_uint_t           i;
    ngx_http_breaker_t **bp;

    bp = breakers->elts;

    for (i = 0; i < breakers->nelts; i++) {
        if (bp[i]->name.len == name->len
            && ngx_strncmp(bp[i]->name.data, name->data, name->len) == 0)
        {
            return bp[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_breaker_admin_err(ngx_http_request_t *r, ngx_str_t *err,
    ngx_uint_t status, const char *fmt, const char *arg)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, 256);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    err->data = p;
    err->len = ngx_snprintf(p, 256, fmt, arg) - p;

    return status;
}


static ngx_int_t
ngx_http_breaker_admin_get(ngx_http_request_t *r, ngx_str_t *id, cJSON *out,
    ngx_str_t *err, void *data)
{
    ngx_array_t *breakers = data;

    u_char                    *p;
    cJSON                     *list;
    ngx_uint_t                 i, j;
    ngx_http_breaker_t        *b, **bp;
    ngx_http_breaker_zone_t   *z;

    list = cJSON_AddArrayToObject(out, "breakers");
    if (list == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (id->len) {
        b = ngx_http_breaker_admin_find(breakers, id);

        if (b == NULL) {
            p = ngx_pnalloc(r->pool, id->len + 1);
            if (p == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            *ngx_cpymem(p, id->data, id->len) = '\0';

            return ngx_http_breaker_admin_err(r, err, NGX_HTTP_NOT_FOUND,
                                              "no breaker \"%s\"",
                                              (char *) p);
        }

        z = b->zone->data;

        if (ngx_http_breaker_admin_list(r, z, id, list) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_HTTP_OK;
    }

    /* every zone once */

    bp = breakers->elts;

    for (i = 0; i < breakers->nelts; i++) {

        for (j = 0; j < i; j++) {
            if (bp[j]->zone == bp[i]->zone) {
                break;
            }
        }

        if (j < i) {
            continue;
        }

        if (ngx_http_breaker_admin_list(r, bp[i]->zone->data, NULL, list)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return NGX_HTTP_OK;
}


static ngx_int_t
ngx_http_breaker_admin_list(ngx_http_request_t *r,
    ngx_http_breaker_zone_t *z, ngx_str_t *name, cJSON *list)
{
    u_char                   *p, *copies;
    cJSON                    *item, *req;
    size_t                    one;
    ngx_uint_t                state, i, n, max;
    ngx_msec_int_t            left;
    ngx_rbtree_node_t        *node, *root, *sentinel;
    ngx_http_breaker_node_t  *bn;

    /*
     * the zone mutex is held only to copy the breakers (allocated before
     * locking; read unlocked, the count may grow: later ones are left
     * out); the JSON is made from the copies
     */

    one = ngx_align(offsetof(ngx_http_breaker_node_t, data) + 64
                    + NGX_HTTP_BREAKER_MAX_KEY, 8);
    max = z->sh->nodes + 16;

    copies = ngx_palloc(r->pool, max * one);
    if (copies == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    ngx_shmtx_lock(&z->shpool->mutex);

    root = z->sh->rbtree.root;
    sentinel = z->sh->rbtree.sentinel;

    for (node = (root == sentinel) ? NULL : ngx_rbtree_min(root, sentinel);
         node && n < max;
         node = ngx_rbtree_next(&z->sh->rbtree, node))
    {
        bn = (ngx_http_breaker_node_t *) &node->color;

        if (name && (bn->name_len != name->len
                     || ngx_memcmp(bn->data, name->data, name->len) != 0))
        {
            continue;
        }

        ngx_memcpy(copies + n * one, bn,
                   offsetof(ngx_http_breaker_node_t, data)
                   + ngx_min((size_t) bn->name_len, 64)
                   + ngx_min((size_t) bn->key_len, NGX_HTTP_BREAKER_MAX_KEY));
        n++;
    }

    ngx_shmtx_unlock(&z->shpool->mutex);

    for (i = 0; i < n; i++) {
        bn = (ngx_http_breaker_node_t *) (copies + i * one);

        item = cJSON_CreateObject();
        p = ngx_pnalloc(r->pool, bn->name_len + 2
                        + NGX_HTTP_RESILIENCE_ESCAPED_LEN(bn->key_len));

        if (item == NULL || p == NULL) {
            cJSON_Delete(item);
            return NGX_ERROR;
        }

        cJSON_AddItemToArray(list, item);

        *ngx_cpymem(p, bn->data, bn->name_len) = '\0';
        cJSON_AddStringToObject(item, "name", (char *) p);

        p += bn->name_len + 1;
        *ngx_http_resilience_escape_utf8(p, bn->data + bn->name_len,
                                         bn->key_len) = '\0';
        cJSON_AddStringToObject(item, "key", (char *) p);

        state = ngx_http_breaker_current_state(bn, ngx_current_msec);

        cJSON_AddStringToObject(item, "state",
                                ngx_http_breaker_state_name(state));
        cJSON_AddStringToObject(item, "mode",
                     ngx_http_breaker_mode_names[bn->override.mode]);

        left = (bn->state == NGX_HTTP_BREAKER_OPEN)
               ? (ngx_msec_int_t) (bn->open_until - ngx_current_msec) : 0;

        cJSON_AddNumberToObject(item, "open_ms_left", left > 0 ? left : 0);
        cJSON_AddNumberToObject(item, "generation", bn->generation);
        cJSON_AddNumberToObject(item, "trips", bn->trips);
        cJSON_AddNumberToObject(item, "inflight", bn->inflight);

        if (bn->override.flags & NGX_HTTP_BREAKER_O_RATE) {
            cJSON_AddNumberToObject(item, "failure_rate_bp",
                                    bn->override.rate);
        }

        if (bn->override.flags & NGX_HTTP_BREAKER_O_CONSECUTIVE) {
            cJSON_AddNumberToObject(item, "consecutive_failures",
                                    bn->override.consecutive);
        }

        if (bn->override.flags & NGX_HTTP_BREAKER_O_MIN) {
            cJSON_AddNumberToObject(item, "min_requests",
                                    bn->override.min_requests);
        }

        if (bn->override.flags & NGX_HTTP_BREAKER_O_OPEN) {
            cJSON_AddNumberToObject(item, "open_ms", bn->override.open_time);
        }

        req = cJSON_AddObjectToObject(item, "requests");
        if (req != NULL) {
            cJSON_AddNumberToObject(req, "success", (double) bn->successes);
            cJSON_AddNumberToObject(req, "failure", (double) bn->failures);
            cJSON_AddNumberToObject(req, "slow", (double) bn->slow);
            cJSON_AddNumberToObject(req, "rejected", (double) bn->rejected);
            cJSON_AddNumberToObject(req, "dry_run_rejected",
                                    (double) bn->dry_run_rejected);
        }
    }

    return NGX_OK;
}


/* validates the whole body before anything changes */

static ngx_int_t
ngx_http_breaker_admin_parse(ngx_http_request_t *r, cJSON *body,
    ngx_http_breaker_override_t *o, ngx_uint_t *clear, ngx_str_t *err)
{
    u_char      *p;
    cJSON       *item;
    ngx_int_t    n;
    ngx_str_t    v;
    ngx_uint_t   i, flag;

    ngx_memzero(o, sizeof(ngx_http_breaker_override_t));
    *clear = 0;

    if (body->child == NULL) {
        return ngx_http_breaker_admin_err(r, err, NGX_HTTP_BAD_REQUEST,
                                          "nothing to change%s", "");
    }

    for (item = body->child; item; item = item->next) {

        if (ngx_strcmp(item->string, "mode") == 0) {
            if (!cJSON_IsString(item)) {
                goto bad_type;
            }

            for (i = 0; i < 6; i++) {
                if (ngx_strcmp(item->valuestring,
                               ngx_http_breaker_mode_names[i])
                    == 0)
                {
                    break;
                }
            }

            if (i == 6) {
                return ngx_http_breaker_admin_err(r, err,
                           NGX_HTTP_BAD_REQUEST,
                           "invalid mode \"%s\", expected enforce, dry_run, "
                           "force_open, force_closed, off or default",
                           item->valuestring);
            }

            /* a key given twice: the last one wins, as in JSON */

            if (i == 0) {
                *clear |= NGX_HTTP_BREAKER_CLEAR_MODE;
                o->mode = 0;

            } else {
                *clear &= ~NGX_HTTP_BREAKER_CLEAR_MODE;
                o->mode = (u_char) i;
            }

            continue;
        }

        if (ngx_strcmp(item->string, "failure_rate") == 0) {
            flag = NGX_HTTP_BREAKER_O_RATE;

        } else if (ngx_strcmp(item->string, "consecutive_failures") == 0) {
            flag = NGX_HTTP_BREAKER_O_CONSECUTIVE;

        } else if (ngx_strcmp(item->string, "min_requests") == 0) {
            flag = NGX_HTTP_BREAKER_O_MIN;

        } else if (ngx_strcmp(item->string, "open") == 0) {
            flag = NGX_HTTP_BREAKER_O_OPEN;

        } else {
            return ngx_http_breaker_admin_err(r, err, NGX_HTTP_BAD_REQUEST,
                           "unknown field \"%s\", expected mode, "
                           "failure_rate, consecutive_failures, "
                           "min_requests or open", item->string);
        }

        if (cJSON_IsString(item)
            && ngx_strcmp(item->valuestring, "default") == 0)
        {
            *clear |= flag;
            o->flags &= ~flag;
            continue;
        }

        if (flag == NGX_HTTP_BREAKER_O_RATE
            || flag == NGX_HTTP_BREAKER_O_OPEN)
        {
            if (!cJSON_IsString(item)) {
                goto bad_type;
            }

            v.data = (u_char *) item->valuestring;
            v.len = ngx_strlen(item->valuestring);

            if (flag == NGX_HTTP_BREAKER_O_RATE) {
                p = v.data + v.len;

                if (v.len < 2 || p[-1] != '%') {
                    goto bad_value;
                }

                n = ngx_atofp(v.data, v.len - 1, 2);

                if (n <= 0 || n > 10000) {
                    goto bad_value;
                }

                o->rate = (uint32_t) n;

            } else {
                n = ngx_parse_time(&v, 0);

                if (n == NGX_ERROR || n <= 0) {
                    goto bad_value;
                }

                /* the override holds 32 bits: "50d" wrapped to 25 s */
                if (n > NGX_HTTP_BREAKER_OPEN_MAX) {
                    return ngx_http_breaker_admin_err(r, err,
                                 NGX_HTTP_BAD_REQUEST,
                                 "\"open\" is at most 1d, not \"%s\"",
                                 item->valuestring);
                }

                o->open_time = (uint32_t) n;
            }

        } else {
            if (!cJSON_IsNumber(item)
                || item->valuedouble < 1 || item->valuedouble > 100000000
                || item->valuedouble != (double) item->valueint)
            {
                goto bad_type;
            }

            if (flag == NGX_HTTP_BREAKER_O_CONSECUTIVE) {
                o->consecutive = (uint32_t) item->valueint;

            } else {
                o->min_requests = (uint32_t) item->valueint;
            }
        }

        o->flags |= flag;
        *clear &= ~flag;
    }

    return NGX_HTTP_OK;

bad_type:

    return ngx_http_breaker_admin_err(r, err, NGX_HTTP_BAD_REQUEST,
                 "field \"%s\" has the wrong type (mode, failure_rate and "
                 "open take strings such as \"60%%\" and \"10s\"; the counts "
                 "take positive integers)", item->string);

bad_value:

    return ngx_http_breaker_admin_err(r, err, NGX_HTTP_BAD_REQUEST,
                                      "invalid value for \"%s\"",
                                      item->string);
}


static void
ngx_http_breaker_admin_apply(ngx_http_breaker_override_t *to,
    ngx_http_breaker_override_t *o, ngx_uint_t clear)
{
    if (clear & NGX_HTTP_BREAKER_CLEAR_MODE) {
        to->mode = 0;
    }

    if (o->mode) {
        to->mode = o->mode;
    }

    to->flags &= ~(clear & 0xff);

    if (o->flags & NGX_HTTP_BREAKER_O_RATE) {
        to->rate = o->rate;
    }

    if (o->flags & NGX_HTTP_BREAKER_O_CONSECUTIVE) {
        to->consecutive = o->consecutive;
    }

    if (o->flags & NGX_HTTP_BREAKER_O_MIN) {
        to->min_requests = o->min_requests;
    }

    if (o->flags & NGX_HTTP_BREAKER_O_OPEN) {
        to->open_time = o->open_time;
    }

    to->flags |= o->flags;
}


/*
 * Applies a change to the breaker "name" in zone z: to its entry for keys
 * created from now on, and to every key that exists.  "applied" is what
 * the entry holds afterwards, "n" how many keys it reached.  NGX_DECLINED
 * when the zone has no room for another breaker's entry.
 */

ngx_int_t
ngx_http_breaker_override(ngx_http_breaker_zone_t *z, ngx_str_t *name,
    ngx_http_breaker_override_t *o, ngx_uint_t clear, ngx_uint_t *n,
    ngx_http_breaker_override_t *applied)
{
    ngx_uint_t                          i;
    ngx_rbtree_node_t                  *node, *root, *sentinel;
    ngx_http_breaker_node_t            *bn;
    ngx_http_breaker_named_override_t  *no;

    ngx_shmtx_lock(&z->shpool->mutex);

    no = NULL;

    for (i = 0; i < z->sh->noverrides; i++) {
        if (z->sh->overrides[i].len == name->len
            && ngx_memcmp(z->sh->overrides[i].name, name->data, name->len)
               == 0)
        {
            no = &z->sh->overrides[i];
            break;
        }
    }

    if (no == NULL) {
        if (z->sh->noverrides == NGX_HTTP_BREAKER_MAX_OVERRIDES) {
            ngx_shmtx_unlock(&z->shpool->mutex);
            return NGX_DECLINED;
        }

        no = &z->sh->overrides[z->sh->noverrides++];
        ngx_memzero(no, sizeof(ngx_http_breaker_named_override_t));
        ngx_memcpy(no->name, name->data, name->len);
        no->len = name->len;
    }

    ngx_http_breaker_admin_apply(&no->override, o, clear);

    *applied = no->override;

    root = z->sh->rbtree.root;
    sentinel = z->sh->rbtree.sentinel;
    *n = 0;

    for (node = (root == sentinel) ? NULL : ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&z->sh->rbtree, node))
    {
        bn = (ngx_http_breaker_node_t *) &node->color;

        if (bn->name_len != name->len
            || ngx_memcmp(bn->data, name->data, name->len) != 0)
        {
            continue;
        }

        ngx_spinlock(&bn->lock, ngx_pid, 1024);
        ngx_http_breaker_admin_apply(&bn->override, applied, clear);
        ngx_unlock(&bn->lock);

        (*n)++;
    }

    ngx_shmtx_unlock(&z->shpool->mutex);

    return NGX_OK;
}


static ngx_int_t
ngx_http_breaker_admin_put(ngx_http_request_t *r, ngx_str_t *id,
    cJSON *body, cJSON *out, ngx_str_t *err, void *data)
{
    ngx_array_t *breakers = data;

    u_char                             *name;
    ngx_int_t                           rc;
    ngx_uint_t                          clear, n;
    cJSON                              *list, *ov;
    ngx_http_breaker_t                 *b;
    ngx_http_breaker_zone_t            *z;
    ngx_http_breaker_override_t         o, applied;

    name = ngx_pnalloc(r->pool, id->len + 1);
    if (name == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_cpymem(name, id->data, id->len) = '\0';

    b = ngx_http_breaker_admin_find(breakers, id);

    if (b == NULL) {
        return ngx_http_breaker_admin_err(r, err, NGX_HTTP_NOT_FOUND,
                                          "no breaker \"%s\"", (char *) name);
    }

    rc = ngx_http_breaker_admin_parse(r, body, &o, &clear, err);
    if (rc != NGX_HTTP_OK) {
        return rc;
    }

    z = b->zone->data;

    if (ngx_http_breaker_override(z, id, &o, clear, &n, &applied)
        != NGX_OK)
    {
        return ngx_http_breaker_admin_err(r, err,
                       NGX_HTTP_INSUFFICIENT_STORAGE,
                       "too many breakers with overrides in the zone of "
                       "\"%s\"", (char *) name);
    }

    if (b->shared) {
        /* the fleet applies the same change */
        ngx_http_breaker_sync_publish_override(r, z, id, &o, clear);
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "breaker \"%s\" changed through resilience_admin "
                  "(%ui key(s))", name, n);

    /* what now applies, and the keys it applies to */

    cJSON_AddStringToObject(out, "breaker", (char *) name);

    ov = cJSON_AddObjectToObject(out, "override");
    if (ov == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    o = applied;

    cJSON_AddStringToObject(ov, "mode", ngx_http_breaker_mode_names[o.mode]);

    if (o.flags & NGX_HTTP_BREAKER_O_RATE) {
        cJSON_AddNumberToObject(ov, "failure_rate_bp", o.rate);
    }

    if (o.flags & NGX_HTTP_BREAKER_O_CONSECUTIVE) {
        cJSON_AddNumberToObject(ov, "consecutive_failures", o.consecutive);
    }

    if (o.flags & NGX_HTTP_BREAKER_O_MIN) {
        cJSON_AddNumberToObject(ov, "min_requests", o.min_requests);
    }

    if (o.flags & NGX_HTTP_BREAKER_O_OPEN) {
        cJSON_AddNumberToObject(ov, "open_ms", o.open_time);
    }

    list = cJSON_AddArrayToObject(out, "breakers");
    if (list == NULL
        || ngx_http_breaker_admin_list(r, z, id, list) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_HTTP_OK;
}
