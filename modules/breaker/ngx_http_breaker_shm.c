
/*
 * nginx-resilience: breaker state in shared memory.
 *
 * One rbtree of breakers per breaker_zone, keyed by the crc32 of the
 * breaker's name and key, with an LRU queue: the zone mutex guards the
 * tree and the queue only (lookups that create or evict); each node has
 * a spinlock of its own for its state and window.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_md5.h>

#include "ngx_http_breaker.h"


/* LRU entries an eviction looks at, at most */
#define NGX_HTTP_BREAKER_EXPIRE_SCAN  256


static void ngx_http_breaker_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_breaker_cmp(ngx_http_breaker_node_t *bn,
    u_char *name, size_t name_len, u_char *key, size_t key_len);
static void ngx_http_breaker_expire(ngx_http_breaker_zone_t *z,
    ngx_uint_t n);
static ngx_http_breaker_node_t *ngx_http_breaker_find(
    ngx_http_breaker_zone_t *z, ngx_str_t *name, ngx_str_t *key,
    ngx_uint_t nbuckets, ngx_uint_t notice, ngx_log_t *log);


ngx_int_t
ngx_http_breaker_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_breaker_zone_t  *oz = data;

    size_t                    len;
    ngx_http_breaker_zone_t  *z;

    z = shm_zone->data;

    if (oz) {
        /* reload: every breaker keeps its state */
        z->sh = oz->sh;
        z->shpool = oz->shpool;
        return NGX_OK;
    }

    z->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        z->sh = z->shpool->data;
        return NGX_OK;
    }

    z->sh = ngx_slab_calloc(z->shpool, sizeof(ngx_http_breaker_shctx_t));
    if (z->sh == NULL) {
        return NGX_ERROR;
    }

    z->shpool->data = z->sh;

    ngx_rbtree_init(&z->sh->rbtree, &z->sh->sentinel,
                    ngx_http_breaker_rbtree_insert);
    ngx_queue_init(&z->sh->queue);
    ngx_queue_init(&z->sh->dirty);

    len = sizeof(" in breaker_zone \"\"") + shm_zone->shm.name.len;

    z->shpool->log_ctx = ngx_slab_alloc(z->shpool, len);
    if (z->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(z->shpool->log_ctx, " in breaker_zone \"%V\"%Z",
                &shm_zone->shm.name);

    z->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_breaker_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t        **p;
    ngx_http_breaker_node_t   *bn, *bnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            bn = (ngx_http_breaker_node_t *) &node->color;
            bnt = (ngx_http_breaker_node_t *) &temp->color;

            p = (ngx_http_breaker_cmp(bnt, bn->data, bn->name_len,
                                      bn->data + bn->name_len, bn->key_len)
                 < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* orders (name, key) against a node's: name first, then key */

static ngx_int_t
ngx_http_breaker_cmp(ngx_http_breaker_node_t *bn, u_char *name,
    size_t name_len, u_char *key, size_t key_len)
{
    ngx_int_t  rc;

    rc = ngx_memn2cmp(name, bn->data, name_len, bn->name_len);

    if (rc != 0) {
        return rc;
    }

    return ngx_memn2cmp(key, bn->data + bn->name_len, key_len, bn->key_len);
}


ngx_http_breaker_bucket_t *
ngx_http_breaker_buckets(ngx_http_breaker_node_t *bn)
{
    return (ngx_http_breaker_bucket_t *)
               ngx_align_ptr(bn->data + bn->name_len + bn->key_len, 8);
}


/*
 * Finds the breaker, or creates it, pinned: it cannot be evicted until
 * the caller unpins it, once the request is admitted (and so counted in
 * flight) or turned away.  Keys longer than
 * NGX_HTTP_BREAKER_MAX_KEY are replaced by their MD5, so a hostile key
 * cannot take more room than that.  Returns NULL when the zone is full
 * even after evicting idle keys: the caller then lets the request pass.
 */

ngx_http_breaker_node_t *
ngx_http_breaker_lookup(ngx_http_breaker_zone_t *z, ngx_str_t *name,
    ngx_str_t *key, ngx_uint_t nbuckets, ngx_log_t *log)
{
    return ngx_http_breaker_find(z, name, key, nbuckets, 0, log);
}


/*
 * For a notice from Redis: a key no request here has used is made only
 * when "create" and while fewer than NGX_HTTP_BREAKER_MAX_NOTICED such
 * keys are in the zone, and stays evictable, even open, until a request
 * uses it.
 */

ngx_http_breaker_node_t *
ngx_http_breaker_lookup_notice(ngx_http_breaker_zone_t *z, ngx_str_t *name,
    ngx_str_t *key, ngx_uint_t nbuckets, ngx_uint_t create, ngx_log_t *log)
{
    return ngx_http_breaker_find(z, name, key, nbuckets, create ? 1 : 2,
                                 log);
}


/* notice: 0 a request's lookup, 1 a notice's, 2 a notice's, find only */

static ngx_http_breaker_node_t *
ngx_http_breaker_find(ngx_http_breaker_zone_t *z, ngx_str_t *name,
    ngx_str_t *key, ngx_uint_t nbuckets, ngx_uint_t notice, ngx_log_t *log)
{
    size_t                    size;
    u_char                    md5[16], hex[32];
    uint32_t                  hash;
    ngx_md5_t                 ctx;
    ngx_int_t                 rc;
    ngx_str_t                 k;
    ngx_uint_t                i;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_http_breaker_node_t  *bn;

    k = *key;

    if (k.len == 0) {
        /* a keyless breaker is one node, whoever makes it */
        notice = 0;
    }

    if (k.len > NGX_HTTP_BREAKER_MAX_KEY) {
        ngx_md5_init(&ctx);
        ngx_md5_update(&ctx, k.data, k.len);
        ngx_md5_final(md5, &ctx);
        ngx_hex_dump(hex, md5, 16);
        k.data = hex;
        k.len = 32;
    }

    ngx_crc32_init(hash);
    ngx_crc32_update(&hash, name->data, name->len);
    ngx_crc32_update(&hash, (u_char *) "\0", 1);
    ngx_crc32_update(&hash, k.data, k.len);
    ngx_crc32_final(hash);

    ngx_shmtx_lock(&z->shpool->mutex);

    node = z->sh->rbtree.root;
    sentinel = z->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        bn = (ngx_http_breaker_node_t *) &node->color;

        rc = ngx_http_breaker_cmp(bn, name->data, name->len, k.data, k.len);

        if (rc == 0) {
            if (notice == 0) {
                bn->last = ngx_current_msec;

                if (bn->noticed) {
                    /* a request uses it: kept like any other key */
                    bn->noticed = 0;
                    z->sh->noticed--;
                }
            }

            (void) ngx_atomic_fetch_add(&bn->pins, 1);

            if (!bn->pinned) {
                ngx_queue_remove(&bn->queue);
                ngx_queue_insert_head(&z->sh->queue, &bn->queue);
            }

            ngx_shmtx_unlock(&z->shpool->mutex);
            return bn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    if (notice == 2
        || (notice && z->sh->noticed >= NGX_HTTP_BREAKER_MAX_NOTICED))
    {
        if (notice == 1) {
            (void) ngx_atomic_fetch_add(&z->sh->sync_dropped, 1);
        }

        ngx_shmtx_unlock(&z->shpool->mutex);
        return NULL;
    }

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_breaker_node_t, data)
           + name->len + k.len + 8
           + nbuckets * sizeof(ngx_http_breaker_bucket_t);

    node = ngx_slab_alloc_locked(z->shpool, size);

    if (node == NULL) {
        ngx_http_breaker_expire(z, 4);
        node = ngx_slab_alloc_locked(z->shpool, size);
    }

    if (node == NULL) {
        (void) ngx_atomic_fetch_add(&z->sh->full, 1);
        ngx_shmtx_unlock(&z->shpool->mutex);

        if (!z->full_logged) {
            z->full_logged = 1;
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "breaker_zone \"%V\" is full: breaker \"%V\" "
                          "key \"%V\" not tracked, requests pass "
                          "(logged once per worker)", &z->name, name, &k);
        }

        return NULL;
    }

    ngx_memzero(node, size);

    bn = (ngx_http_breaker_node_t *) &node->color;

    node->key = hash;
    bn->name_len = (u_short) name->len;
    bn->key_len = (u_short) k.len;
    bn->nbuckets = (u_char) nbuckets;
    bn->pinned = (key->len == 0);
    bn->state = NGX_HTTP_BREAKER_CLOSED;
    bn->last = ngx_current_msec;
    bn->changed = (uint32_t) ngx_current_msec;
    bn->generation = 1;
    bn->pins = 1;

    if (notice) {
        bn->noticed = 1;
        z->sh->noticed++;
    }

    ngx_memcpy(bn->data, name->data, name->len);
    ngx_memcpy(bn->data + name->len, k.data, k.len);

    for (i = 0; i < z->sh->noverrides; i++) {
        if (z->sh->overrides[i].len == name->len
            && ngx_memcmp(z->sh->overrides[i].name, name->data, name->len)
               == 0)
        {
            bn->override = z->sh->overrides[i].override;
            break;
        }
    }

    ngx_rbtree_insert(&z->sh->rbtree, node);
    z->sh->nodes++;

    if (bn->pinned) {
        ngx_queue_init(&bn->queue);

    } else {
        ngx_queue_insert_head(&z->sh->queue, &bn->queue);
    }

    ngx_shmtx_unlock(&z->shpool->mutex);

    return bn;
}


/*
 * Evicts up to n idle keyed breakers, least recently used first.  A key
 * with requests in flight or being admitted, or not closed, is kept:
 * evicting it would forget that its upstream is failing; unless only a
 * notice made it, and no request here has used it.
 */

static void
ngx_http_breaker_expire(ngx_http_breaker_zone_t *z, ngx_uint_t n)
{
    ngx_uint_t                scan;
    ngx_queue_t              *q, *prev;
    ngx_rbtree_node_t        *node;
    ngx_http_breaker_node_t  *bn;

    if (ngx_queue_empty(&z->sh->queue)) {
        return;
    }

    q = ngx_queue_last(&z->sh->queue);

    /*
     * a bounded walk: in a zone full of open or busy keys, the zone mutex
     * is not held for a walk over all of them on every new key
     */

    scan = NGX_HTTP_BREAKER_EXPIRE_SCAN;

    while (n && scan-- && q != ngx_queue_sentinel(&z->sh->queue)) {
        prev = ngx_queue_prev(q);
        bn = ngx_queue_data(q, ngx_http_breaker_node_t, queue);

        if (bn->pins == 0
            && bn->inflight == 0
            && (bn->state == NGX_HTTP_BREAKER_CLOSED || bn->noticed))
        {
            if (bn->noticed) {
                z->sh->noticed--;
            }

            if (bn->dirty) {
                /* its outcomes, not pushed yet, go with it */
                ngx_queue_remove(&bn->dirty_link);
                z->sh->queued--;
            }

            ngx_queue_remove(q);

            node = (ngx_rbtree_node_t *)
                       ((u_char *) bn - offsetof(ngx_rbtree_node_t, color));

            ngx_rbtree_delete(&z->sh->rbtree, node);
            ngx_slab_free_locked(z->shpool, node);
            z->sh->nodes--;

            (void) ngx_atomic_fetch_add(&z->sh->evictions, 1);
            n--;
        }

        q = prev;
    }
}
