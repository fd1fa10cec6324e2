
/*
 * nginx-resilience: discovery sources.
 *
 * file=: a JSON document read every interval, one worker at a time (a
 * lease in the table), applied when its content changed.  A malformed document is rejected whole and the
 * previous set stays.  After every change the set is dumped (a temporary
 * file renamed into place); a start with the source unreachable reads the
 * dump instead.
 *
 * The document: {"peers": [{"address": "10.0.0.1:8080", "weight": 2,
 * "backup": false}, "10.0.0.2:8080"]}, or the array alone.  Addresses
 * are IP literals with a port: nothing here may resolve names, which
 * would block the worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upstream_discovery.h"


#define NGX_HTTP_UD_DOC_MAX  (1024 * 1024)


static ngx_int_t ngx_http_ud_read(ngx_str_t *path, ngx_pool_t *pool,
    ngx_str_t *out, time_t *mtime, ngx_log_t *log);
static ngx_int_t ngx_http_ud_parse_peer(cJSON *item, ngx_http_ud_addr_t *a,
    ngx_pool_t *pool, ngx_str_t *err);


void
ngx_http_ud_source_tick(ngx_http_ud_srv_conf_t *udcf)
{
    time_t                mtime;
    uint32_t              crc;
    ngx_int_t             rc;
    ngx_str_t             doc, err;
    ngx_msec_t            now;
    ngx_pool_t           *pool;
    ngx_array_t           set;
    ngx_atomic_uint_t     owner;
    ngx_http_ud_table_t  *t;

    t = udcf->table;
    now = ngx_current_msec;

    if (t->source_ok && (ngx_msec_int_t) (now - t->source_next) < 0) {
        return;
    }

    owner = t->source_lock;

    if (owner != 0
        && (ngx_msec_int_t) (now - t->source_started) < 10000)
    {
        return;
    }

    if (!ngx_atomic_cmp_set(&t->source_lock, owner, ngx_pid)) {
        return;
    }

    t->source_started = now;
    t->source_next = now + udcf->source_interval;

    pool = ngx_create_pool(4096, udcf->log);
    if (pool == NULL) {
        goto done;
    }

    rc = ngx_http_ud_read(&udcf->file, pool, &doc, &mtime, udcf->log);

    if (rc != NGX_OK) {
        if (!t->source_ok && udcf->dump.len) {
            if (ngx_http_ud_load_dump(udcf, udcf->log) == NGX_OK) {
                t->source_ok = 2;
            }
        }

        goto done;
    }

    /* by content, not mtime: two writes within a second are two sets */

    crc = ngx_crc32_long(doc.data, doc.len);

    if (crc == t->source_crc && t->source_ok == 1) {
        goto done;
    }

    t->source_crc = crc;

    if (ngx_array_init(&set, pool, 8, sizeof(ngx_http_ud_addr_t)) != NGX_OK)
    {
        goto done;
    }

    if (ngx_http_ud_parse_document(doc.data, doc.len, &set, pool, &err)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, udcf->log, 0,
                      "upstream \"%V\": discovery file \"%V\" rejected: %V; "
                      "the previous set stays", &udcf->name, &udcf->file,
                      &err);

        if (!t->source_ok && udcf->dump.len) {
            if (ngx_http_ud_load_dump(udcf, udcf->log) == NGX_OK) {
                t->source_ok = 2;
            }
        }

        goto done;
    }

    if (ngx_http_ud_apply(udcf, &set, NGX_HTTP_UD_FILE, udcf->log) == NGX_OK)
    {
        t->source_ok = 1;

        if (udcf->dump.len) {
            ngx_http_ud_dump(udcf, udcf->log);
        }
    }

done:

    if (pool) {
        ngx_destroy_pool(pool);
    }

    t->source_lock = 0;
}


/* the whole file, at most 1m */

static ngx_int_t
ngx_http_ud_read(ngx_str_t *path, ngx_pool_t *pool, ngx_str_t *out,
    time_t *mtime, ngx_log_t *log)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_WARN, log, ngx_errno,
                      "discovery: cannot open \"%V\"", path);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    *mtime = ngx_file_mtime(&fi);

    if (ngx_file_size(&fi) > NGX_HTTP_UD_DOC_MAX) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "discovery: \"%V\" is larger than 1m, ignored", path);
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    out->len = (size_t) ngx_file_size(&fi);
    out->data = ngx_pnalloc(pool, out->len + 1);

    if (out->data == NULL) {
        ngx_close_file(fd);
        return NGX_ERROR;
    }

    n = ngx_read_fd(fd, out->data, out->len);

    ngx_close_file(fd);

    if (n == -1 || (size_t) n != out->len) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "discovery: cannot read \"%V\"", path);
        return NGX_ERROR;
    }

    out->data[out->len] = '\0';

    return NGX_OK;
}


ngx_int_t
ngx_http_ud_parse_document(u_char *data, size_t len, ngx_array_t *set,
    ngx_pool_t *pool, ngx_str_t *err)
{
    cJSON               *root, *peers, *item;
    ngx_int_t            rc;
    ngx_http_ud_addr_t  *a;

    root = cJSON_ParseWithLength((char *) data, len);

    if (root == NULL) {
        ngx_str_set(err, "not valid JSON");
        return NGX_ERROR;
    }

    peers = cJSON_IsArray(root) ? root
                                : cJSON_GetObjectItemCaseSensitive(root,
                                                                   "peers");

    if (!cJSON_IsArray(peers)) {
        ngx_str_set(err, "expected {\"peers\": [...]} or an array");
        cJSON_Delete(root);
        return NGX_ERROR;
    }

    rc = NGX_OK;

    cJSON_ArrayForEach(item, peers) {
        if (set->nelts == NGX_HTTP_UD_MAX_PEERS) {
            ngx_str_set(err, "more than 64 peers");
            rc = NGX_ERROR;
            break;
        }

        a = ngx_array_push(set);
        if (a == NULL) {
            rc = NGX_ERROR;
            ngx_str_set(err, "no memory");
            break;
        }

        if (ngx_http_ud_parse_peer(item, a, pool, err) != NGX_OK) {
            rc = NGX_ERROR;
            break;
        }
    }

    cJSON_Delete(root);

    return rc;
}


static ngx_int_t
ngx_http_ud_parse_peer(cJSON *item, ngx_http_ud_addr_t *a, ngx_pool_t *pool,
    ngx_str_t *err)
{
    cJSON       *addr, *weight, *backup;
    size_t       len;
    ngx_addr_t   na;

    ngx_memzero(a, sizeof(ngx_http_ud_addr_t));
    a->weight = 1;

    if (cJSON_IsString(item)) {
        addr = item;

    } else if (cJSON_IsObject(item)) {
        addr = cJSON_GetObjectItemCaseSensitive(item, "address");
        weight = cJSON_GetObjectItemCaseSensitive(item, "weight");
        backup = cJSON_GetObjectItemCaseSensitive(item, "backup");

        if (weight) {
            if (!cJSON_IsNumber(weight) || weight->valuedouble < 1
                || weight->valuedouble > 1000)
            {
                ngx_str_set(err, "a \"weight\" is not a number from 1 "
                                 "to 1000");
                return NGX_ERROR;
            }

            a->weight = (ngx_uint_t) weight->valuedouble;
        }

        if (backup) {
            if (!cJSON_IsBool(backup)) {
                ngx_str_set(err, "a \"backup\" is not true or false");
                return NGX_ERROR;
            }

            a->backup = cJSON_IsTrue(backup);
        }

    } else {
        ngx_str_set(err, "a peer is neither \"ip:port\" nor an object");
        return NGX_ERROR;
    }

    if (!cJSON_IsString(addr) || addr->valuestring == NULL) {
        ngx_str_set(err, "a peer has no \"address\"");
        return NGX_ERROR;
    }

    len = ngx_strlen(addr->valuestring);

    if (len == 0 || len > NGX_SOCKADDR_STRLEN
        || ngx_parse_addr_port(pool, &na, (u_char *) addr->valuestring, len)
           != NGX_OK
        || ngx_inet_get_port(na.sockaddr) == 0)
    {
        err->len = 0;
        err->data = ngx_pnalloc(pool, len + 64);

        if (err->data) {
            err->len = ngx_sprintf(err->data,
                                   "\"%*s\" is not an IP address with a port",
                                   ngx_min(len, 64), addr->valuestring)
                       - err->data;
        }

        return NGX_ERROR;
    }

    ngx_memcpy(&a->sockaddr, na.sockaddr, na.socklen);
    a->socklen = na.socklen;
    a->name = na.name;

    return NGX_OK;
}


/* the discovered set, written atomically: a temporary file, renamed */

void
ngx_http_ud_dump(ngx_http_ud_srv_conf_t *udcf, ngx_log_t *log)
{
    u_char               *tmp, name[NGX_SOCKADDR_STRLEN + 1];
    char                 *text;
    cJSON                *root, *peers, *o;
    ssize_t               n;
    ngx_fd_t              fd;
    ngx_uint_t            i;
    ngx_http_ud_peer_t   *p;
    ngx_http_ud_table_t  *t;

    t = udcf->table;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return;
    }

    peers = cJSON_AddArrayToObject(root, "peers");

    for (i = 0; peers && i < t->npeers; i++) {
        p = &t->peers[i];

        if (p->state == NGX_HTTP_UD_FREE || p->state == NGX_HTTP_UD_DRAINING
            || p->source != NGX_HTTP_UD_FILE)
        {
            continue;
        }

        o = cJSON_CreateObject();
        if (o == NULL) {
            break;
        }

        cJSON_AddItemToArray(peers, o);

        ngx_memcpy(name, p->name, p->name_len);
        name[p->name_len] = '\0';

        cJSON_AddStringToObject(o, "address", (char *) name);
        cJSON_AddNumberToObject(o, "weight", (double) p->weight);
        cJSON_AddBoolToObject(o, "backup", p->backup);
    }

    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);

    if (text == NULL) {
        return;
    }

    tmp = ngx_alloc(udcf->dump.len + 16, log);
    if (tmp == NULL) {
        cJSON_free(text);
        return;
    }

    ngx_sprintf(tmp, "%V.%P%Z", &udcf->dump, ngx_pid);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "discovery: cannot write \"%s\"", tmp);
        goto done;
    }

    n = ngx_write_fd(fd, text, ngx_strlen(text));

    ngx_close_file(fd);

    if (n != (ssize_t) ngx_strlen(text)
        || ngx_rename_file(tmp, udcf->dump.data) == NGX_FILE_ERROR)
    {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "discovery: cannot write the dump \"%V\"",
                      &udcf->dump);
        (void) ngx_delete_file(tmp);
    }

done:

    ngx_free(tmp);
    cJSON_free(text);
}


ngx_int_t
ngx_http_ud_load_dump(ngx_http_ud_srv_conf_t *udcf, ngx_log_t *log)
{
    time_t       mtime;
    ngx_int_t    rc;
    ngx_str_t    doc, err;
    ngx_pool_t  *pool;
    ngx_array_t  set;

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (ngx_http_ud_read(&udcf->dump, pool, &doc, &mtime, log) != NGX_OK
        || ngx_array_init(&set, pool, 8, sizeof(ngx_http_ud_addr_t))
           != NGX_OK)
    {
        goto done;
    }

    if (ngx_http_ud_parse_document(doc.data, doc.len, &set, pool, &err)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "upstream \"%V\": the dump \"%V\" is unusable: %V",
                      &udcf->name, &udcf->dump, &err);
        goto done;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "upstream \"%V\": the source is unreachable, using the "
                  "dump \"%V\" (%ui peers)", &udcf->name, &udcf->dump,
                  set.nelts);

    rc = ngx_http_ud_apply(udcf, &set, NGX_HTTP_UD_FILE, log);

done:

    ngx_destroy_pool(pool);

    return rc;
}
