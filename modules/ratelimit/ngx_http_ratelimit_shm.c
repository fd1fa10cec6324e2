
/*
 * nginx-resilience: rate limit state in shared memory.
 *
 * One rbtree of keys per ratelimit_zone, keyed by the key's crc32, with
 * an LRU queue, the way limit_req keeps its zone: the zone mutex is held
 * for one lookup and update.  A full zone evicts its least recently used
 * keys and never turns a request away because of it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_md5.h>

#include "ngx_http_ratelimit.h"


/* the LRU queue: links are offsets from the zone's start */

#define ngx_http_ratelimit_link(z, off)                                       \
    ((ngx_http_ratelimit_link_t *) ((u_char *) (z)->shpool + (off)))

#define ngx_http_ratelimit_offset(z, l)                                       \
    ((uint32_t) ((u_char *) (l) - (u_char *) (z)->shpool))

#define ngx_http_ratelimit_lru_node(l)                                        \
    ((ngx_http_ratelimit_node_t *)                                            \
         ((u_char *) (l) - offsetof(ngx_http_ratelimit_node_t, queue)))

#define ngx_http_ratelimit_lru_sentinel(z)  (&(z)->sh->queue)
#define ngx_http_ratelimit_lru_head(z)                                        \
    ngx_http_ratelimit_link(z, (z)->sh->queue.next)
#define ngx_http_ratelimit_lru_last(z)                                        \
    ngx_http_ratelimit_link(z, (z)->sh->queue.prev)


static void ngx_http_ratelimit_lru_remove(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_link_t *l);
static void ngx_http_ratelimit_lru_push(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_link_t *l);
static void ngx_http_ratelimit_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_ratelimit_cmp(ngx_http_ratelimit_node_t *a,
    u_char flags, u_char *key, size_t len);
static ngx_http_ratelimit_node_t *ngx_http_ratelimit_create(
    ngx_http_ratelimit_zone_t *z, ngx_http_ratelimit_try_t *t);
static void ngx_http_ratelimit_expire(ngx_http_ratelimit_zone_t *z,
    ngx_uint_t force);
static void ngx_http_ratelimit_free(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_node_t *rn);
static int64_t ngx_http_ratelimit_base(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_node_t *rn, ngx_msec_t now);
static void ngx_http_ratelimit_roll(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_node_t *rn, uint64_t wall);
static int64_t ngx_http_ratelimit_estimate(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_node_t *rn, uint64_t wall);
static ngx_msec_t ngx_http_ratelimit_sliding_wait(
    ngx_http_ratelimit_zone_t *z, ngx_http_ratelimit_node_t *rn,
    uint64_t wall, int64_t limit, int64_t cost);
static ngx_uint_t ngx_http_ratelimit_live(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_node_t *rn, ngx_msec_t now, uint64_t wall);
static void ngx_http_ratelimit_take(ngx_http_ratelimit_node_t *rn,
    ngx_http_ratelimit_entry_t *e);
static ngx_rbtree_node_t *ngx_http_ratelimit_after(
    ngx_http_ratelimit_zone_t *z, ngx_http_ratelimit_entry_t *c);


ngx_int_t
ngx_http_ratelimit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_ratelimit_zone_t  *oz = data;

    size_t                      len;
    ngx_http_ratelimit_zone_t  *z;

    z = shm_zone->data;

    if (oz) {
        /* reload: every key keeps its state, if it still means the same */

        if (z->key.value.len != oz->key.value.len
            || ngx_strncmp(z->key.value.data, oz->key.value.data,
                           z->key.value.len)
               != 0)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "ratelimit_zone \"%V\" uses the \"%V\" key "
                          "while previously it used the \"%V\" key",
                          &shm_zone->shm.name, &z->key.value,
                          &oz->key.value);
            return NGX_ERROR;
        }

        if (z->algorithm != oz->algorithm
            || (z->algorithm == NGX_HTTP_RATELIMIT_SLIDING
                && z->rate.period != oz->rate.period))
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "ratelimit_zone \"%V\" changes its algorithm "
                          "or window; give it another name (or a restart)",
                          &shm_zone->shm.name);
            return NGX_ERROR;
        }

        z->sh = oz->sh;
        z->shpool = oz->shpool;
        return NGX_OK;
    }

    z->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        z->sh = z->shpool->data;
        return NGX_OK;
    }

    z->sh = ngx_slab_calloc(z->shpool, sizeof(ngx_http_ratelimit_shctx_t));
    if (z->sh == NULL) {
        return NGX_ERROR;
    }

    z->shpool->data = z->sh;

    ngx_rbtree_init(&z->sh->rbtree, &z->sh->sentinel,
                    ngx_http_ratelimit_rbtree_insert);

    z->sh->queue.prev = ngx_http_ratelimit_offset(z, &z->sh->queue);
    z->sh->queue.next = z->sh->queue.prev;

    z->sh->instances = 1;
    z->sh->id = ((uint64_t) ngx_random() << 31) ^ ngx_random()
                ^ ((uint64_t) ngx_pid << 48) ^ (uint64_t) ngx_time();

    len = sizeof(" in ratelimit_zone \"\"") + shm_zone->shm.name.len;

    z->shpool->log_ctx = ngx_slab_alloc(z->shpool, len);
    if (z->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(z->shpool->log_ctx, " in ratelimit_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone evicts: its "no memory" lines would only be noise */
    z->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_ratelimit_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_http_ratelimit_node_t   *rn, *rnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            rn = (ngx_http_ratelimit_node_t *) &node->color;
            rnt = (ngx_http_ratelimit_node_t *) &temp->color;

            p = (ngx_http_ratelimit_cmp(rnt, rn->flags, rn->data, rn->len)
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


/* orders a key against a node's: flags, length, bytes */

static ngx_int_t
ngx_http_ratelimit_cmp(ngx_http_ratelimit_node_t *a, u_char flags,
    u_char *key, size_t len)
{
    if (flags != a->flags) {
        return (ngx_int_t) flags - (ngx_int_t) a->flags;
    }

    if (len != a->len) {
        return (ngx_int_t) len - (ngx_int_t) a->len;
    }

    return ngx_memcmp(key, a->data, len);
}


ngx_http_ratelimit_node_t *
ngx_http_ratelimit_lookup(ngx_http_ratelimit_zone_t *z, uint32_t hash,
    u_char flags, u_char *key, size_t len)
{
    ngx_int_t                   rc;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_ratelimit_node_t  *rn;

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

        rn = (ngx_http_ratelimit_node_t *) &node->color;

        rc = ngx_http_ratelimit_cmp(rn, flags, key, len);

        if (rc == 0) {
            return rn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* a key as stored: longer ones become their MD5, kept in the try */

void
ngx_http_ratelimit_set_key(ngx_http_ratelimit_try_t *t, u_char *key,
    size_t len)
{
    ngx_md5_t  md5;

    if (len > NGX_HTTP_RATELIMIT_KEY_MAX) {
        ngx_md5_init(&md5);
        ngx_md5_update(&md5, key, len);
        ngx_md5_final(t->hashed, &md5);

        t->flags = NGX_HTTP_RATELIMIT_HASHED;
        t->key.data = t->hashed;
        t->key.len = 16;

    } else {
        t->flags = 0;
        t->key.data = key;
        t->key.len = len;
    }

    t->hash = ngx_crc32_short(t->key.data, t->key.len);
}


/*
 * a * b / c, c > 0, without overflow: 128-bit where the compiler has it
 * (every 64-bit target nginx builds on), saturated at +-2^62 either way
 */

int64_t
ngx_http_ratelimit_muldiv(int64_t a, int64_t b, int64_t c)
{
#if (defined __SIZEOF_INT128__)

    __int128  r;

    r = (__int128) a * b / c;

#else

    long double  r;

    r = (long double) a * b / c;

#endif

    if (r > NGX_HTTP_RATELIMIT_HUGE) {
        return NGX_HTTP_RATELIMIT_HUGE;
    }

    if (r < -NGX_HTTP_RATELIMIT_HUGE) {
        return -NGX_HTTP_RATELIMIT_HUGE;
    }

    return (int64_t) r;
}


uint64_t
ngx_http_ratelimit_wall(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/*
 * Checks one limit for a request, with the zone locked once.  With
 * "account" the request is charged when it passes (the only or the last
 * limit of a request, as limit_req does); without, the key is pinned
 * until ngx_http_ratelimit_account() or ngx_http_ratelimit_unpin().
 * "factor" is the number of instances sharing a fleet limit enforced
 * locally while Redis is away: each enforces a share of the rate, its
 * emission interval "factor" times the zone's (a request moves the
 * arrival time "factor" times as far) with the same tolerance in time,
 * so that a share passes its share of the rate at any burst, burst 0
 * included (GCRA: passes when (tat - now) <= burst, whatever the
 * factor).  Returns NGX_OK (passes), NGX_BUSY (rejected) or
 * NGX_DECLINED (no memory for the key: not limited).
 */

ngx_int_t
ngx_http_ratelimit_check(ngx_http_ratelimit_try_t *t, ngx_uint_t account,
    ngx_uint_t factor)
{
    int64_t                     base, cand, cost, limit, slack;
    uint64_t                    wall;
    ngx_msec_t                  now;
    ngx_http_ratelimit_zone_t  *z;
    ngx_http_ratelimit_node_t  *rn;

    z = t->zone;
    now = ngx_current_msec;
    wall = 0;

    cost = t->cost * (int64_t) factor;
    t->factor = factor;

    /* the share's tolerance: the burst, plus what its interval adds */
    slack = (int64_t) (factor - 1) * 1000;

    ngx_shmtx_lock(&z->shpool->mutex);

    rn = ngx_http_ratelimit_lookup(z, t->hash, t->flags, t->key.data,
                                   t->key.len);

    if (rn == NULL) {
        rn = ngx_http_ratelimit_create(z, t);

        if (rn == NULL) {
            ngx_shmtx_unlock(&z->shpool->mutex);
            t->node = NULL;
            return NGX_DECLINED;
        }

    } else {
        ngx_http_ratelimit_lru_remove(z, &rn->queue);
        ngx_http_ratelimit_lru_push(z, &rn->queue);
    }


    if (z->algorithm == NGX_HTTP_RATELIMIT_GCRA) {

        /* how far the theoretical arrival time is ahead of now */
        base = ngx_http_ratelimit_base(z, rn, now);

        /* a cost of 0 asks whether one request would pass */
        cand = base + ngx_max(cost, 1000 * (int64_t) factor) - 1000;

        if (cand > t->limit->burst + slack) {
            t->excess = cand;
            t->wait = ngx_http_ratelimit_to_ms(z,
                                             cand - t->limit->burst - slack);
            t->reset = ngx_http_ratelimit_to_ms(z, base);
            t->remaining = 0;
            ngx_shmtx_unlock(&z->shpool->mutex);
            t->node = NULL;
            return NGX_BUSY;
        }

        if (account && cost > 0) {
            if (now != rn->last) {
                rn->last = now;
            }

            rn->excess = cand;

            if (z->sync != NGX_HTTP_RATELIMIT_SYNC_LOCAL) {
                rn->delta += t->cost;
            }
        }

        t->excess = cand;
        t->wait = 0;
        t->remaining = (t->limit->burst + slack - cand) / 1000
                       / (int64_t) factor;
        t->reset = ngx_http_ratelimit_to_ms(z, cand + 1000);

    } else {
        wall = ngx_http_ratelimit_wall();

        ngx_http_ratelimit_roll(z, rn, wall);

        limit = (int64_t) z->rate.milli + t->limit->burst;
        base = ngx_http_ratelimit_estimate(z, rn, wall);
        cand = base + ngx_max(cost, 1000);

        t->reset = z->rate.period - (ngx_msec_t) (wall - rn->last);

        if (cand > limit) {
            t->excess = cand;
            t->wait = ngx_http_ratelimit_sliding_wait(z, rn, wall, limit,
                                                      ngx_max(cost, 1000));
            t->remaining = 0;
            ngx_shmtx_unlock(&z->shpool->mutex);
            t->node = NULL;
            return NGX_BUSY;
        }

        if (account && cost > 0) {
            rn->excess += cost;

            if (z->sync != NGX_HTTP_RATELIMIT_SYNC_LOCAL) {
                rn->delta += t->cost;
            }
        }

        t->excess = cand;
        t->wait = 0;
        t->remaining = (limit - cand) / 1000;
    }

    if (!account) {
        if (rn->pins == 0xffff) {
            /* 65535 requests hold it: this one is not limited by it */
            ngx_shmtx_unlock(&z->shpool->mutex);
            t->node = NULL;
            (void) ngx_atomic_fetch_add(&z->sh->unlimited, 1);
            return NGX_DECLINED;
        }

        rn->pins++;
        t->node = rn;

    } else {
        t->node = NULL;
    }

    ngx_shmtx_unlock(&z->shpool->mutex);

    return NGX_OK;
}


/* charges a pinned key once every limit of the request has passed */

void
ngx_http_ratelimit_account(ngx_http_ratelimit_try_t *t, ngx_uint_t factor)
{
    int64_t                     base, cost;
    uint64_t                    wall;
    ngx_msec_t                  now;
    ngx_http_ratelimit_zone_t  *z;
    ngx_http_ratelimit_node_t  *rn;

    rn = t->node;

    if (rn == NULL) {
        return;
    }

    z = t->zone;
    now = ngx_current_msec;
    cost = t->cost * (int64_t) factor;

    ngx_shmtx_lock(&z->shpool->mutex);

    if (cost > 0) {
        if (z->algorithm == NGX_HTTP_RATELIMIT_GCRA) {
            base = ngx_http_ratelimit_base(z, rn, now);

            rn->excess = base + cost - 1000;
            rn->last = now;

            t->excess = rn->excess;
            t->remaining = ngx_max(t->limit->burst
                                   + (int64_t) (factor - 1) * 1000
                                   - rn->excess, 0)
                           / 1000 / (int64_t) factor;
            t->reset = ngx_http_ratelimit_to_ms(z, rn->excess + 1000);

        } else {
            wall = ngx_http_ratelimit_wall();
            ngx_http_ratelimit_roll(z, rn, wall);
            rn->excess += cost;
        }

        if (z->sync != NGX_HTTP_RATELIMIT_SYNC_LOCAL) {
            rn->delta += t->cost;
        }
    }

    rn->pins--;

    ngx_shmtx_unlock(&z->shpool->mutex);

    t->node = NULL;
}


void
ngx_http_ratelimit_unpin(ngx_http_ratelimit_try_t *t)
{
    ngx_http_ratelimit_zone_t  *z;

    if (t->node == NULL) {
        return;
    }

    z = t->zone;

    ngx_shmtx_lock(&z->shpool->mutex);
    t->node->pins--;
    ngx_shmtx_unlock(&z->shpool->mutex);

    t->node = NULL;
}


/*
 * Gives a charge back (lua-compat's uncommit): GCRA moves the key's
 * arrival time back by the cost, never before now; the sliding window
 * takes it off the current window.  What a sync already sent to Redis
 * stays charged there.  Returns NGX_DECLINED for a key the zone does not
 * hold, else NGX_OK with t->remaining as it now stands.
 */

/*
 * resty.limit.conn's count of requests in flight per key, kept in the
 * zone's node for the key: delta 1 takes a place when the count stays
 * within "limit" (NGX_BUSY when it would not), 0 only tells the count a
 * request would make, -1 gives a place back (NGX_DECLINED: no such key).
 * A key with places taken is never evicted.
 */

ngx_int_t
ngx_http_ratelimit_conn(ngx_http_ratelimit_try_t *t, ngx_int_t delta,
    int64_t limit, int64_t *conns)
{
    ngx_http_ratelimit_zone_t  *z;
    ngx_http_ratelimit_node_t  *rn;

    z = t->zone;

    ngx_shmtx_lock(&z->shpool->mutex);

    rn = ngx_http_ratelimit_lookup(z, t->hash, t->flags, t->key.data,
                                   t->key.len);

    if (delta < 0) {
        if (rn == NULL || rn->conns == 0) {
            ngx_shmtx_unlock(&z->shpool->mutex);
            *conns = 0;
            return NGX_DECLINED;
        }

        rn->conns--;
        *conns = rn->conns;

        ngx_shmtx_unlock(&z->shpool->mutex);
        return NGX_OK;
    }

    *conns = (rn ? (int64_t) rn->conns : 0) + 1;

    if (*conns > limit || *conns > 0xffff) {
        ngx_shmtx_unlock(&z->shpool->mutex);
        return NGX_BUSY;
    }

    if (delta == 0) {
        ngx_shmtx_unlock(&z->shpool->mutex);
        return NGX_OK;
    }

    if (rn == NULL) {
        rn = ngx_http_ratelimit_create(z, t);

        if (rn == NULL) {
            /* no memory for the key: not limited, as the directives */
            ngx_shmtx_unlock(&z->shpool->mutex);
            return NGX_DECLINED;
        }

    } else {
        ngx_http_ratelimit_lru_remove(z, &rn->queue);
        ngx_http_ratelimit_lru_push(z, &rn->queue);
    }

    rn->conns++;

    ngx_shmtx_unlock(&z->shpool->mutex);

    return NGX_OK;
}


ngx_int_t
ngx_http_ratelimit_uncommit(ngx_http_ratelimit_try_t *t)
{
    int64_t                     limit;
    uint64_t                    wall;
    ngx_http_ratelimit_zone_t  *z;
    ngx_http_ratelimit_node_t  *rn;

    z = t->zone;

    ngx_shmtx_lock(&z->shpool->mutex);

    rn = ngx_http_ratelimit_lookup(z, t->hash, t->flags, t->key.data,
                                   t->key.len);

    if (rn == NULL) {
        ngx_shmtx_unlock(&z->shpool->mutex);
        return NGX_DECLINED;
    }

    if (z->algorithm == NGX_HTTP_RATELIMIT_GCRA) {
        rn->excess = ngx_max(rn->excess - t->cost, -1000);

        limit = t->limit->burst + 1000;
        t->remaining = (limit - ngx_http_ratelimit_base(z, rn,
                                                        ngx_current_msec))
                       / 1000;

    } else {
        wall = ngx_http_ratelimit_wall();

        ngx_http_ratelimit_roll(z, rn, wall);
        rn->excess = ngx_max(rn->excess - t->cost, 0);

        limit = (int64_t) z->rate.milli + t->limit->burst;
        t->remaining = (limit - ngx_http_ratelimit_estimate(z, rn, wall))
                       / 1000;
    }

    if (z->sync != NGX_HTTP_RATELIMIT_SYNC_LOCAL) {
        rn->delta = ngx_max(rn->delta - t->cost, 0);
    }

    ngx_shmtx_unlock(&z->shpool->mutex);

    if (t->remaining < 0) {
        t->remaining = 0;
    }

    return NGX_OK;
}


/*
 * GCRA: (tat - now) in milli-requests, never negative; limit_req's
 * "excess - rate * ms / 1000 + 1000" with the same clamps, so that the
 * same requests get the same answers.
 */

static int64_t
ngx_http_ratelimit_base(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_node_t *rn, ngx_msec_t now)
{
    int64_t         base;
    ngx_msec_int_t  ms;

    ms = (ngx_msec_int_t) (now - rn->last);

    if (ms < -60000) {
        ms = 1;

    } else if (ms < 0) {
        ms = 0;
    }

    if (ms > 1000000000) {
        return 0;
    }

    /* 128-bit: 4294967295r/d idle for a day is 3.7e20 */
    base = rn->excess + 1000
           - ngx_http_ratelimit_muldiv((int64_t) z->rate.milli, ms,
                                       (int64_t) z->rate.period);

    return base < 0 ? 0 : base;
}


/* sliding window: moves to the window "wall" falls in */

static void
ngx_http_ratelimit_roll(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_node_t *rn, uint64_t wall)
{
    uint64_t  start;

    start = wall - wall % z->rate.period;

    if (rn->last == start) {
        return;
    }

    if (rn->last + z->rate.period == start) {
        rn->prev = rn->excess;

    } else {
        rn->prev = 0;
    }

    rn->excess = 0;
    rn->last = start;
}


/* the previous window weighted by its share still inside the window */

static int64_t
ngx_http_ratelimit_estimate(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_node_t *rn, uint64_t wall)
{
    int64_t  elapsed, period;

    period = (int64_t) z->rate.period;
    elapsed = (int64_t) (wall - rn->last);

    return ngx_http_ratelimit_muldiv(rn->prev, period - elapsed, period)
           + rn->excess;
}


/* how long until a request of "cost" fits in the sliding window */

static ngx_msec_t
ngx_http_ratelimit_sliding_wait(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_node_t *rn, uint64_t wall, int64_t limit,
    int64_t cost)
{
    int64_t  elapsed, period, room, t;

    period = (int64_t) z->rate.period;
    elapsed = (int64_t) (wall - rn->last);

    if (cost > limit) {
        return (ngx_msec_t) period;
    }

    room = limit - cost - rn->excess;

    if (room >= 0 && rn->prev > 0) {
        /* prev * (period - elapsed - t) / period <= room */
        t = period - elapsed
            - ngx_http_ratelimit_muldiv(room, period, rn->prev);
        return (ngx_msec_t) ngx_max(t, 1);
    }

    /* the next window, where this one weighs in as the previous */
    room = limit - cost;

    t = period - elapsed;

    if (rn->excess > room) {
        t += period - ngx_http_ratelimit_muldiv(room, period, rn->excess);
    }

    return (ngx_msec_t) ngx_max(t, 1);
}


/*
 * sync=strict: Redis's view of a key becomes the local one, so that the
 * local fallback starts from it; GCRA gets (tat - now) in milli-requests
 * in "cur", the sliding window its counts and the window's start
 */

void
ngx_http_ratelimit_mirror(ngx_http_ratelimit_try_t *t, int64_t cur,
    int64_t prev, uint64_t start)
{
    ngx_http_ratelimit_zone_t  *z;
    ngx_http_ratelimit_node_t  *rn;

    z = t->zone;

    ngx_shmtx_lock(&z->shpool->mutex);

    rn = ngx_http_ratelimit_lookup(z, t->hash, t->flags, t->key.data,
                                   t->key.len);

    if (rn == NULL) {
        rn = ngx_http_ratelimit_create(z, t);

        if (rn == NULL) {
            ngx_shmtx_unlock(&z->shpool->mutex);
            return;
        }

    } else {
        ngx_http_ratelimit_lru_remove(z, &rn->queue);
        ngx_http_ratelimit_lru_push(z, &rn->queue);
    }

    if (z->algorithm == NGX_HTTP_RATELIMIT_GCRA) {
        rn->excess = cur - 1000;
        rn->last = ngx_current_msec;

    } else {
        rn->excess = cur;
        rn->prev = prev;
        rn->last = start;
    }

    ngx_shmtx_unlock(&z->shpool->mutex);
}


/*
 * sync=redis, with the zone's figures from Redis ("fleet"): GCRA's
 * (tat - now) in milli-requests in "a" and in "c" what the rate gave
 * back while the sync was away, the sliding window's current and
 * previous counts in "a" and "c" for the window starting at "start";
 * what was charged here since the sync was sent is added on top (for
 * GCRA as charges made over that time, as the script dates a sync's
 * charges: added all at once, the requests of a slow round trip came out
 * as a burst).  Without "fleet", a failed sync gives its charges back for
 * the next one.
 */

void
ngx_http_ratelimit_merge(ngx_http_ratelimit_zone_t *z, uint32_t hash,
    u_char flags, u_char *key, size_t len, int64_t a, int64_t c,
    uint64_t start, int64_t restore, ngx_uint_t fleet)
{
    ngx_http_ratelimit_node_t  *rn;

    ngx_shmtx_lock(&z->shpool->mutex);

    rn = ngx_http_ratelimit_lookup(z, hash, flags, key, len);

    if (rn == NULL) {
        ngx_shmtx_unlock(&z->shpool->mutex);
        return;
    }

    if (!fleet) {
        rn->delta += restore;
        ngx_shmtx_unlock(&z->shpool->mutex);
        return;
    }

    if (z->algorithm == NGX_HTTP_RATELIMIT_GCRA) {
        /*
         * the fleet's view, and what was charged here since; never less
         * than this instance's own view, which the fleet's includes (its
         * charges since may have come at the very end of the round trip)
         */
        rn->excess = ngx_max(ngx_max(ngx_max(a, -c) + rn->delta, 0),
                             ngx_http_ratelimit_base(z, rn,
                                                     ngx_current_msec))
                     - 1000;
        rn->last = ngx_current_msec;

    } else {
        ngx_http_ratelimit_roll(z, rn, ngx_http_ratelimit_wall());

        if (rn->last == start) {
            rn->excess = ngx_max(rn->excess, a + rn->delta);
            rn->prev = ngx_max(rn->prev, c);
        }
    }

    ngx_shmtx_unlock(&z->shpool->mutex);
}


/* sync=strict: a sliding window's answer from Redis, into the try */

void
ngx_http_ratelimit_sliding(ngx_http_ratelimit_try_t *t, int64_t cur,
    int64_t prev, uint64_t wall, ngx_uint_t pass)
{
    int64_t                     limit, est;
    ngx_http_ratelimit_zone_t  *z;
    ngx_http_ratelimit_node_t   tmp;

    z = t->zone;

    ngx_memzero(&tmp, sizeof(ngx_http_ratelimit_node_t));

    tmp.excess = cur;
    tmp.prev = prev;
    tmp.last = wall - wall % z->rate.period;

    limit = (int64_t) z->rate.milli + t->limit->burst;
    est = ngx_http_ratelimit_estimate(z, &tmp, wall);

    t->excess = est;
    t->remaining = ngx_max(limit - est, 0) / 1000;
    t->reset = z->rate.period - (ngx_msec_t) (wall - tmp.last);

    if (!pass) {
        t->busy = 1;
        t->remaining = 0;
        t->wait = ngx_http_ratelimit_sliding_wait(z, &tmp, wall, limit,
                                                  ngx_max(t->cost, 1000));
    }
}


/* a new key, with the zone locked; evicts when the zone is full */

static ngx_http_ratelimit_node_t *
ngx_http_ratelimit_create(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_try_t *t)
{
    size_t                      size;
    ngx_uint_t                  i;
    ngx_rbtree_node_t          *node;
    ngx_http_ratelimit_node_t  *rn;

    ngx_http_ratelimit_expire(z, 0);

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_ratelimit_node_t, data)
           + t->key.len;

    node = ngx_slab_alloc_locked(z->shpool, size);

    for (i = 0; node == NULL && i < 16; i++) {
        ngx_http_ratelimit_expire(z, 1);
        node = ngx_slab_alloc_locked(z->shpool, size);
    }

    if (node == NULL) {
        (void) ngx_atomic_fetch_add(&z->sh->unlimited, 1);
        return NULL;
    }

    node->key = t->hash;

    rn = (ngx_http_ratelimit_node_t *) &node->color;

    rn->flags = t->flags;
    rn->len = (u_char) t->key.len;
    rn->pins = 0;
    rn->last = (z->algorithm == NGX_HTTP_RATELIMIT_GCRA)
               ? ngx_current_msec : 0;
    rn->excess = -1000;              /* idle: the tat is now */
    rn->prev = 0;
    rn->delta = 0;
    rn->conns = 0;

    if (z->algorithm != NGX_HTTP_RATELIMIT_GCRA) {
        rn->excess = 0;
    }

    ngx_memcpy(rn->data, t->key.data, t->key.len);

    ngx_rbtree_insert(&z->sh->rbtree, node);
    ngx_http_ratelimit_lru_push(z, &rn->queue);

    (void) ngx_atomic_fetch_add(&z->sh->keys, 1);

    return rn;
}


/*
 * Without "force", frees up to two of the least recently used keys that
 * have nothing left to remember (limit_req's housekeeping); with it, the
 * least recently used key that no request holds, whatever its state.
 */

static void
ngx_http_ratelimit_expire(ngx_http_ratelimit_zone_t *z, ngx_uint_t force)
{
    uint64_t                    wall;
    ngx_uint_t                  n, seen;
    ngx_msec_t                  now;
    ngx_http_ratelimit_link_t  *q, *prev;
    ngx_http_ratelimit_node_t  *rn, *dirty;

    now = ngx_current_msec;
    wall = 0;
    dirty = NULL;

    if (z->algorithm != NGX_HTTP_RATELIMIT_GCRA) {
        wall = ngx_http_ratelimit_wall();
    }

    q = ngx_http_ratelimit_lru_last(z);

    for (n = 0, seen = 0;
         q != ngx_http_ratelimit_lru_sentinel(z) && n < 2 && seen < 32;
         q = prev, seen++)
    {
        prev = ngx_http_ratelimit_link(z, q->prev);
        rn = ngx_http_ratelimit_lru_node(q);

        if (rn->pins || rn->conns) {
            continue;
        }

        if (force) {
            if (rn->delta != 0) {
                /* a key with charges not yet synced goes last */
                if (dirty == NULL) {
                    dirty = rn;
                }

                continue;
            }

            ngx_http_ratelimit_free(z, rn);
            (void) ngx_atomic_fetch_add(&z->sh->evicted, 1);
            return;
        }

        if (rn->delta != 0) {
            /* not in Redis yet */
            return;
        }

        if (z->algorithm == NGX_HTTP_RATELIMIT_GCRA) {
            if (ngx_http_ratelimit_base(z, rn, now) > 0) {
                return;
            }

        } else if (rn->last + 2 * z->rate.period > wall) {
            return;
        }

        ngx_http_ratelimit_free(z, rn);
        n++;
    }

    if (dirty == NULL) {
        return;
    }

    /* its charges wait for the next sync, then it goes */

    if (z->sh->orphans == NULL) {
        z->sh->orphans = ngx_slab_alloc_locked(z->shpool,
                                   NGX_HTTP_RATELIMIT_ORPHANS
                                   * sizeof(ngx_http_ratelimit_entry_t));
    }

    if (z->sh->orphans && z->sh->norphans < NGX_HTTP_RATELIMIT_ORPHANS) {
        ngx_http_ratelimit_take(dirty,
                                &z->sh->orphans[z->sh->norphans++]);
    }

    ngx_http_ratelimit_free(z, dirty);
    (void) ngx_atomic_fetch_add(&z->sh->evicted, 1);
}


static void
ngx_http_ratelimit_free(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_node_t *rn)
{
    ngx_rbtree_node_t  *node;

    ngx_http_ratelimit_lru_remove(z, &rn->queue);

    node = (ngx_rbtree_node_t *)
               ((u_char *) rn - offsetof(ngx_rbtree_node_t, color));

    ngx_rbtree_delete(&z->sh->rbtree, node);
    ngx_slab_free_locked(z->shpool, node);

    (void) ngx_atomic_fetch_add(&z->sh->keys, -1);
}


/* a key has something left to remember (limit_req's test for freeing) */

static ngx_uint_t
ngx_http_ratelimit_live(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_node_t *rn, ngx_msec_t now, uint64_t wall)
{
    if (z->algorithm == NGX_HTTP_RATELIMIT_GCRA) {
        return ngx_http_ratelimit_base(z, rn, now) > 0;
    }

    return rn->last + 2 * z->rate.period > wall;
}


/* a key's charges leave it for a sync */

static void
ngx_http_ratelimit_take(ngx_http_ratelimit_node_t *rn,
    ngx_http_ratelimit_entry_t *e)
{
    e->hash = ((ngx_rbtree_node_t *)
                 ((u_char *) rn - offsetof(ngx_rbtree_node_t, color)))->key;
    e->flags = rn->flags;
    e->len = (u_char) rn->len;
    ngx_memcpy(e->key, rn->data, rn->len);
    e->delta = rn->delta;

    rn->delta = 0;
}


/* the first node after the cursor's key, in the rbtree's order */

static ngx_rbtree_node_t *
ngx_http_ratelimit_after(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_entry_t *c)
{
    ngx_int_t           rc;
    ngx_rbtree_node_t  *node, *sentinel, *best;

    node = z->sh->rbtree.root;
    sentinel = z->sh->rbtree.sentinel;
    best = NULL;

    while (node != sentinel) {

        if (c->hash != node->key) {
            rc = (c->hash < node->key) ? -1 : 1;

        } else {
            rc = ngx_http_ratelimit_cmp(
                     (ngx_http_ratelimit_node_t *) &node->color,
                     c->flags, c->key, c->len);
        }

        if (rc < 0) {
            best = node;
            node = node->left;

        } else {
            node = node->right;
        }
    }

    return best;
}


/*
 * sync=redis: what the next sync sends, at most "max" keys: the charges
 * of evicted keys, the busiest keys (charged or not, so that they learn
 * the fleet's state), then every key with charges not yet synced, in the
 * rbtree's order from where the previous sync stopped: a sync that runs
 * out of budget leaves the rest to the next one, none is dropped.
 */

ngx_uint_t
ngx_http_ratelimit_collect_dirty(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_entry_t *e, ngx_uint_t max)
{
    uint64_t                    wall;
    ngx_uint_t                  n, i, visits;
    ngx_msec_t                  now;
    ngx_rbtree_node_t          *node, *last, *root, *sentinel;
    ngx_http_ratelimit_link_t  *q;
    ngx_http_ratelimit_node_t  *rn;

    now = ngx_current_msec;
    wall = ngx_http_ratelimit_wall();
    n = 0;

    ngx_shmtx_lock(&z->shpool->mutex);

    for (i = 0; i < z->sh->norphans && n < max; i++) {
        e[n++] = z->sh->orphans[i];
    }

    if (i < z->sh->norphans) {
        ngx_memmove(z->sh->orphans, &z->sh->orphans[i],
                    (z->sh->norphans - i)
                    * sizeof(ngx_http_ratelimit_entry_t));
    }

    z->sh->norphans -= i;

    for (q = ngx_http_ratelimit_lru_head(z), i = 0;
         q != ngx_http_ratelimit_lru_sentinel(z)
         && i < NGX_HTTP_RATELIMIT_SYNC_HOT && n < max;
         q = ngx_http_ratelimit_link(z, q->next), i++)
    {
        rn = ngx_http_ratelimit_lru_node(q);

        if (z->sync == NGX_HTTP_RATELIMIT_SYNC_STRICT && rn->delta == 0) {
            /* Redis has it: only what a fallback charged here goes */
            continue;
        }

        if (rn->delta != 0 || ngx_http_ratelimit_live(z, rn, now, wall)) {
            ngx_http_ratelimit_take(rn, &e[n++]);
        }
    }

    root = z->sh->rbtree.root;
    sentinel = z->sh->rbtree.sentinel;

    if (root == sentinel) {
        z->sh->cursor_set = 0;
        ngx_shmtx_unlock(&z->shpool->mutex);
        return n;
    }

    node = z->sh->cursor_set ? ngx_http_ratelimit_after(z, &z->sh->cursor)
                             : ngx_rbtree_min(root, sentinel);
    last = NULL;

    for (visits = 0;
         node && visits < NGX_HTTP_RATELIMIT_SYNC_VISITS && n < max;
         visits++)
    {
        rn = (ngx_http_ratelimit_node_t *) &node->color;

        if (rn->delta != 0) {
            ngx_http_ratelimit_take(rn, &e[n++]);
        }

        last = node;
        node = ngx_rbtree_next(&z->sh->rbtree, node);
    }

    if (node == NULL) {
        /* the end: the next sync starts over */
        z->sh->cursor_set = 0;

    } else if (last) {
        rn = (ngx_http_ratelimit_node_t *) &last->color;

        z->sh->cursor.hash = last->key;
        z->sh->cursor.flags = rn->flags;
        z->sh->cursor.len = (u_char) rn->len;
        ngx_memcpy(z->sh->cursor.key, rn->data, rn->len);
        z->sh->cursor_set = 1;
    }

    ngx_shmtx_unlock(&z->shpool->mutex);

    return n;
}


static void
ngx_http_ratelimit_lru_remove(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_link_t *l)
{
    ngx_http_ratelimit_link(z, l->prev)->next = l->next;
    ngx_http_ratelimit_link(z, l->next)->prev = l->prev;
}


/* to the head: the most recently used */

static void
ngx_http_ratelimit_lru_push(ngx_http_ratelimit_zone_t *z,
    ngx_http_ratelimit_link_t *l)
{
    uint32_t                    off;
    ngx_http_ratelimit_link_t  *h;

    h = &z->sh->queue;
    off = ngx_http_ratelimit_offset(z, l);

    l->next = h->next;
    l->prev = ngx_http_ratelimit_offset(z, h);
    ngx_http_ratelimit_link(z, h->next)->prev = off;
    h->next = off;
}


/*
 * Every key goes, but those a request holds now, which start over; the
 * charges not yet synced go with them.
 */

ngx_uint_t
ngx_http_ratelimit_reset(ngx_http_ratelimit_zone_t *z)
{
    ngx_uint_t                  n;
    ngx_http_ratelimit_link_t  *q, *prev;
    ngx_http_ratelimit_node_t  *rn;

    n = 0;

    ngx_shmtx_lock(&z->shpool->mutex);

    for (q = ngx_http_ratelimit_lru_last(z);
         q != ngx_http_ratelimit_lru_sentinel(z);
         q = prev)
    {
        prev = ngx_http_ratelimit_link(z, q->prev);
        rn = ngx_http_ratelimit_lru_node(q);

        n++;

        if (rn->pins == 0) {
            ngx_http_ratelimit_free(z, rn);
            continue;
        }

        rn->excess = (z->algorithm == NGX_HTTP_RATELIMIT_GCRA) ? -1000 : 0;
        rn->prev = 0;
        rn->delta = 0;
        rn->conns = 0;
    }

    z->sh->norphans = 0;
    z->sh->cursor_set = 0;

    ngx_shmtx_unlock(&z->shpool->mutex);

    return n;
}
