
/*
 * nginx-resilience: the breaker's state machine.
 *
 * closed -> open when a policy trips (failure rate over the window,
 * failures in a row, slow-call rate); open -> half-open when the open
 * time is over; half-open admits N probes, each holding a lease that
 * expires, and closes after N successes or reopens on a failure, with
 * the open time doubling on each trip in a row.  Every transition bumps
 * the generation: outcomes of requests admitted before it are ignored.
 * All of it runs under the node's spinlock.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_breaker.h"


#define ngx_http_breaker_lock(bn)    ngx_spinlock(&(bn)->lock, ngx_pid, 1024)
#define ngx_http_breaker_unlock(bn)  ngx_unlock(&(bn)->lock)

/* a value as configured, unless resilience_admin overrode it */
#define ngx_http_breaker_o(bn, flag, field, conf)                            \
    (((bn)->override.flags & NGX_HTTP_BREAKER_O_##flag)                     \
     ? (ngx_uint_t) (bn)->override.field : (ngx_uint_t) (conf))


static ngx_msec_t ngx_http_breaker_open(ngx_http_request_t *r,
    ngx_http_breaker_loc_conf_t *blcf, ngx_http_breaker_node_t *bn,
    ngx_msec_t now, u_char *reason, size_t len);
static void ngx_http_breaker_close(ngx_http_request_t *r,
    ngx_http_breaker_node_t *bn, ngx_msec_t now);
static void ngx_http_breaker_window(ngx_http_breaker_loc_conf_t *blcf,
    ngx_http_breaker_node_t *bn, ngx_msec_t now, ngx_uint_t outcome,
    ngx_uint_t slow, uint32_t *total, uint32_t *failures, uint32_t *nslow);
static ngx_uint_t ngx_http_breaker_rate(ngx_http_breaker_loc_conf_t *blcf,
    uint32_t total);
static ngx_int_t ngx_http_breaker_take_lease(
    ngx_http_breaker_loc_conf_t *blcf, ngx_http_breaker_node_t *bn,
    ngx_msec_t now, uint32_t *until);


static const char  *ngx_http_breaker_state_names[] = {
    "closed", "open", "half_open"
};


ngx_uint_t
ngx_http_breaker_current_state(ngx_http_breaker_node_t *bn, ngx_msec_t now)
{
    if (bn->state == NGX_HTTP_BREAKER_OPEN
        && (ngx_msec_int_t) (now - bn->open_until) >= 0)
    {
        /* the next request will find it half-open */
        return NGX_HTTP_BREAKER_HALF_OPEN;
    }

    return bn->state;
}


/*
 * Every transition, local or from the fleet, under the node's lock: a new
 * generation, and nothing of the previous state carried over (probes,
 * leases, tokens, outcomes not pushed; the window too, on opening and
 * closing).
 */

void
ngx_http_breaker_transition(ngx_http_breaker_node_t *bn, ngx_uint_t state,
    ngx_msec_t now)
{
    bn->state = (u_char) state;
    bn->generation++;
    bn->changed = (uint32_t) now;
    bn->transitions++;
    bn->probes_ok = 0;

    ngx_memzero(bn->leases, sizeof(bn->leases));

    bn->d_total = 0;
    bn->d_failures = 0;
    bn->d_slow = 0;
    bn->f_at = 0;

    bn->tokens = 0;
    bn->token_pending = 0;
    bn->token_local = 0;

    if (state != NGX_HTTP_BREAKER_HALF_OPEN) {
        bn->consecutive = 0;
        ngx_memzero(ngx_http_breaker_buckets(bn),
                    bn->nbuckets * sizeof(ngx_http_breaker_bucket_t));
    }
}


/*
 * The failure rate that applies: the band of breaker_qps_policy that the
 * window's traffic falls in, else breaker_failure_rate.
 */

static ngx_uint_t
ngx_http_breaker_rate(ngx_http_breaker_loc_conf_t *blcf, uint32_t total)
{
    uint64_t                  qps;
    ngx_uint_t                i;
    ngx_http_breaker_band_t  *band;

    if (blcf->bands == NULL) {
        return blcf->failure_rate;
    }

    qps = (uint64_t) total * 1000 / blcf->window;
    band = blcf->bands->elts;

    for (i = 0; i < blcf->bands->nelts; i++) {
        if (qps >= band[i].low && (band[i].high == 0 || qps < band[i].high)) {
            return band[i].rate;
        }
    }

    return blcf->failure_rate;
}


/* a lease is the 32 low bits of its deadline; 0 is a free slot */

static ngx_int_t
ngx_http_breaker_take_lease(ngx_http_breaker_loc_conf_t *blcf,
    ngx_http_breaker_node_t *bn, ngx_msec_t now, uint32_t *until)
{
    uint32_t    now32;
    ngx_uint_t  i, n, active, free;

    n = ngx_min(blcf->probes, NGX_HTTP_BREAKER_MAX_PROBES);
    now32 = (uint32_t) now;
    active = 0;
    free = n;

    for (i = 0; i < n; i++) {
        if (bn->leases[i] != 0 && (int32_t) (bn->leases[i] - now32) > 0) {
            active++;
            continue;
        }

        /* free, or expired: a hung or aborted probe gives its slot back */
        bn->leases[i] = 0;

        if (free == n) {
            free = i;
        }
    }

    if (free == n || active + bn->probes_ok >= n) {
        return -1;
    }

    *until = (uint32_t) (now + blcf->probe_timeout);

    if (*until == 0) {
        *until = 1;
    }

    bn->leases[free] = *until;

    return (ngx_int_t) free;
}


ngx_uint_t
ngx_http_breaker_admit(ngx_http_request_t *r,
    ngx_http_breaker_loc_conf_t *blcf, ngx_http_breaker_ctx_t *ctx)
{
    ngx_msec_t                now;
    ngx_uint_t                rc, mode;
    ngx_http_breaker_node_t  *bn;

    bn = ctx->node;
    now = ngx_current_msec;

    ctx->lease = -1;

    ngx_http_breaker_lock(bn);

    mode = bn->override.mode ? bn->override.mode : blcf->mode;

    if (bn->state == NGX_HTTP_BREAKER_OPEN
        && (ngx_msec_int_t) (now - bn->open_until) >= 0)
    {
        ngx_http_breaker_transition(bn, NGX_HTTP_BREAKER_HALF_OPEN, now);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "breaker \"%*s\"%s%*s%s half-open: admitting %ui "
                      "probe(s)",
                      (size_t) bn->name_len, bn->data,
                      bn->key_len ? " key \"" : "",
                      (size_t) bn->key_len, bn->data + bn->name_len,
                      bn->key_len ? "\"" : "", blcf->probes);
    }

    rc = NGX_HTTP_BREAKER_ADMITTED;

    switch (mode) {

    case NGX_HTTP_BREAKER_FORCE_OPEN:
        rc = NGX_HTTP_BREAKER_REJECT_OPEN;
        break;

    case NGX_HTTP_BREAKER_FORCE_CLOSED:
    case NGX_HTTP_BREAKER_OFF:
        break;

    default:
        if (bn->state == NGX_HTTP_BREAKER_OPEN) {
            rc = NGX_HTTP_BREAKER_REJECT_OPEN;

        } else if (bn->state == NGX_HTTP_BREAKER_HALF_OPEN) {

            if (bn->shared
                && !bn->token_local
                && ngx_http_resilience_redis_state()
                   == NGX_HTTP_RESILIENCE_REDIS_CONNECTED
                && bn->tokens == 0)
            {
                /*
                 * the probe budget is the fleet's: ask Redis for a token
                 * (at most every 100 ms), and turn this request away;
                 * a token request that Redis did not answer in time
                 * makes this half-open period local (token_local)
                 */

                if (!bn->token_pending
                    && (uint32_t) now - bn->token_asked >= 100)
                {
                    bn->token_pending = 1;
                    bn->token_asked = (uint32_t) now;
                    ctx->ask_token = 1;
                }

                rc = NGX_HTTP_BREAKER_REJECT_OPEN;
                break;
            }

            ctx->lease = ngx_http_breaker_take_lease(blcf, bn, now,
                                                     &ctx->lease_until);
            if (ctx->lease == -1) {
                rc = NGX_HTTP_BREAKER_REJECT_OPEN;

            } else if (bn->tokens) {
                bn->tokens--;
            }
        }
    }

    if (rc == NGX_HTTP_BREAKER_ADMITTED
        && blcf->max_concurrent
        && bn->inflight >= blcf->max_concurrent)
    {
        rc = NGX_HTTP_BREAKER_REJECT_FULL;

        if (ctx->lease != -1) {
            bn->leases[ctx->lease] = 0;
            ctx->lease = -1;
        }
    }

    if (rc != NGX_HTTP_BREAKER_ADMITTED && mode == NGX_HTTP_BREAKER_DRY_RUN) {
        bn->dry_run_rejected++;
        ctx->rejected = 1;
        rc = NGX_HTTP_BREAKER_ADMITTED;

    } else if (rc != NGX_HTTP_BREAKER_ADMITTED) {
        bn->rejected++;
    }

    if (rc == NGX_HTTP_BREAKER_ADMITTED) {
        bn->inflight++;
        ctx->counted = 1;
        ctx->admitted = 1;
    }

    ctx->generation = bn->generation;
    ctx->state = bn->state;
    ctx->mode = mode;

    ngx_http_breaker_unlock(bn);

    return rc;
}


void
ngx_http_breaker_release(ngx_http_breaker_ctx_t *ctx)
{
    ngx_http_breaker_node_t  *bn;

    bn = ctx->node;

    if (!ctx->counted) {
        return;
    }

    ctx->counted = 0;

    ngx_http_breaker_lock(bn);

    if (bn->inflight) {
        bn->inflight--;
    }

    if (ctx->lease != -1 && bn->leases[ctx->lease] == ctx->lease_until) {
        bn->leases[ctx->lease] = 0;
    }

    ngx_http_breaker_unlock(bn);
}


static void
ngx_http_breaker_window(ngx_http_breaker_loc_conf_t *blcf,
    ngx_http_breaker_node_t *bn, ngx_msec_t now, ngx_uint_t outcome,
    ngx_uint_t slow, uint32_t *total, uint32_t *failures, uint32_t *nslow)
{
    uint32_t                    epoch;
    ngx_msec_t                  len;
    ngx_uint_t                  i, n;
    ngx_http_breaker_bucket_t  *b, *buckets;

    n = bn->nbuckets;
    buckets = ngx_http_breaker_buckets(bn);

    len = blcf->window / n;
    if (len == 0) {
        len = 1;
    }

    epoch = (uint32_t) (now / len);
    b = &buckets[epoch % n];

    if (b->epoch != epoch) {
        ngx_memzero(b, sizeof(ngx_http_breaker_bucket_t));
        b->epoch = epoch;
    }

    b->total++;

    if (outcome == NGX_HTTP_BREAKER_FAILURE) {
        b->failures++;
    }

    if (slow) {
        b->slow++;
    }

    *total = 0;
    *failures = 0;
    *nslow = 0;

    for (i = 0; i < n; i++) {
        if (epoch - buckets[i].epoch < n) {
            *total += buckets[i].total;
            *failures += buckets[i].failures;
            *nslow += buckets[i].slow;
        }
    }
}


/* returns the open time when this outcome tripped the breaker, else 0 */

ngx_msec_t
ngx_http_breaker_record(ngx_http_request_t *r, ngx_http_breaker_ctx_t *ctx,
    ngx_uint_t outcome, ngx_uint_t slow)
{
    u_char                        reason[128], *p;
    uint32_t                      total, failures, nslow;
    ngx_uint_t                    rate, mode, consecutive, min, queue;
    ngx_msec_t                    now, tripped;
    ngx_http_breaker_node_t      *bn;
    ngx_http_breaker_loc_conf_t  *blcf;

    bn = ctx->node;
    blcf = ctx->conf;
    now = ngx_current_msec;
    p = NULL;
    tripped = 0;
    queue = 0;

    ngx_http_breaker_lock(bn);

    mode = bn->override.mode ? bn->override.mode : blcf->mode;
    consecutive = ngx_http_breaker_o(bn, CONSECUTIVE, consecutive,
                                     blcf->consecutive);
    min = ngx_http_breaker_o(bn, MIN, min_requests, blcf->min_requests);

    if (mode == NGX_HTTP_BREAKER_OFF) {
        goto done;
    }

    if (outcome == NGX_HTTP_BREAKER_SUCCESS) {
        bn->successes++;

    } else {
        bn->failures++;
    }

    if (slow) {
        bn->slow++;
    }

    if (ctx->generation != bn->generation) {
        /* admitted under an older state: its outcome is history */
        goto done;
    }

    if (bn->state == NGX_HTTP_BREAKER_HALF_OPEN) {

        if (ctx->lease == -1 || bn->leases[ctx->lease] != ctx->lease_until) {
            /* not a probe, or a probe whose lease expired */
            goto done;
        }

        bn->leases[ctx->lease] = 0;

        if (outcome == NGX_HTTP_BREAKER_FAILURE || slow) {
            p = ngx_snprintf(reason, sizeof(reason), "a probe %s",
                             slow ? "was slow" : "failed");

            if (mode != NGX_HTTP_BREAKER_FORCE_CLOSED) {
                tripped = ngx_http_breaker_open(r, blcf, bn, now, reason,
                                                p - reason);
            }

            goto done;
        }

        if (++bn->probes_ok >= blcf->probes) {
            ngx_http_breaker_close(r, bn, now);
            ctx->closed_it = 1;

        } else if (bn->shared && !bn->token_local) {
            /* a probe of the fleet's budget: the fleet counts it */
            ctx->probe_ok = 1;
        }

        goto done;
    }

    if (bn->state != NGX_HTTP_BREAKER_CLOSED) {
        goto done;
    }

    if (outcome == NGX_HTTP_BREAKER_FAILURE) {
        bn->consecutive++;

    } else {
        bn->consecutive = 0;
    }

    ngx_http_breaker_window(blcf, bn, now, outcome, slow, &total, &failures,
                            &nslow);

    if (bn->shared) {
        bn->d_total++;
        bn->d_failures += (outcome == NGX_HTTP_BREAKER_FAILURE);
        bn->d_slow += (slow != 0);
        bn->o_at = (uint32_t) now;

        if (!bn->dirty) {
            /* queued for the sync tick below, once per push */
            bn->dirty = 1;
            queue = 1;
        }

        /*
         * the fleet's window, when fresh and wider than ours: its sums
         * (with what we pushed) plus what we have not pushed yet
         */

        if (bn->f_at && (uint32_t) now - bn->f_at <= blcf->window
            && bn->f_total + bn->d_total > total)
        {
            total = bn->f_total + bn->d_total;
            failures = bn->f_failures + bn->d_failures;
            nslow = bn->f_slow + bn->d_slow;
        }
    }

    if (mode == NGX_HTTP_BREAKER_FORCE_CLOSED) {
        goto done;
    }

    if (consecutive && bn->consecutive >= consecutive) {
        p = ngx_snprintf(reason, sizeof(reason),
                         "%uD failures in a row >= %ui",
                         bn->consecutive, consecutive);

    } else if (total >= min && total > 0) {

        rate = ngx_http_breaker_o(bn, RATE, rate,
                                  ngx_http_breaker_rate(blcf, total));

        if (rate
            && (uint64_t) failures * 10000 >= (uint64_t) rate * total)
        {
            p = ngx_snprintf(reason, sizeof(reason),
                             "failure rate %uD%% (%uD/%uD) >= %ui.%02ui%% "
                             "in %Mms",
                             (uint32_t) ((uint64_t) failures * 100 / total),
                             failures, total, rate / 100, rate % 100,
                             blcf->window);

        } else if (blcf->slow_time
                   && (uint64_t) nslow * 10000
                      >= (uint64_t) blcf->slow_rate * total)
        {
            p = ngx_snprintf(reason, sizeof(reason),
                             "slow-call rate %uD%% (%uD/%uD over %Mms) >= "
                             "%ui.%02ui%% in %Mms",
                             (uint32_t) ((uint64_t) nslow * 100 / total),
                             nslow, total, blcf->slow_time,
                             blcf->slow_rate / 100, blcf->slow_rate % 100,
                             blcf->window);
        }
    }

    if (p != NULL) {
        tripped = ngx_http_breaker_open(r, blcf, bn, now, reason, p - reason);
    }

done:

    ctx->recorded = 1;

    ngx_http_breaker_unlock(bn);

    if (queue) {
        /*
         * the request is still in flight: the node cannot be evicted
         * between the flag above and the queue here
         */
        ngx_shmtx_lock(&ctx->zone->shpool->mutex);
        ngx_queue_insert_tail(&ctx->zone->sh->dirty, &bn->dirty_link);
        ctx->zone->sh->queued++;
        ngx_shmtx_unlock(&ctx->zone->shpool->mutex);
    }

    return tripped;
}


static ngx_msec_t
ngx_http_breaker_open(ngx_http_request_t *r,
    ngx_http_breaker_loc_conf_t *blcf, ngx_http_breaker_node_t *bn,
    ngx_msec_t now, u_char *reason, size_t len)
{
    ngx_msec_t  duration, delta;

    /* a breaker healthy for longer than the cap starts its backoff anew */

    if (bn->state == NGX_HTTP_BREAKER_CLOSED
        && (uint32_t) now - bn->changed > blcf->open_max)
    {
        bn->trips = 0;
    }

    bn->trips++;

    duration = ngx_http_breaker_o(bn, OPEN, open_time, blcf->open_time);

    if (bn->trips > 1) {
        duration <<= ngx_min(bn->trips - 1, 20);
    }

    if (duration > blcf->open_max) {
        duration = blcf->open_max;
    }

    if (blcf->open_jitter) {
        delta = duration * blcf->open_jitter / 10000;
        duration = duration - delta
                   + (ngx_msec_t) ngx_random() % (2 * delta + 1);
    }

    ngx_http_breaker_transition(bn, NGX_HTTP_BREAKER_OPEN, now);

    bn->open_until = now + duration;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "breaker \"%*s\"%s%*s%s opened for %M ms (trip %uD): %*s",
                  (size_t) bn->name_len, bn->data,
                  bn->key_len ? " key \"" : "",
                  (size_t) bn->key_len, bn->data + bn->name_len,
                  bn->key_len ? "\"" : "",
                  duration, bn->trips, len, reason);

    return duration;
}


static void
ngx_http_breaker_close(ngx_http_request_t *r, ngx_http_breaker_node_t *bn,
    ngx_msec_t now)
{
    ngx_http_breaker_transition(bn, NGX_HTTP_BREAKER_CLOSED, now);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "breaker \"%*s\"%s%*s%s closed: the probes succeeded",
                  (size_t) bn->name_len, bn->data,
                  bn->key_len ? " key \"" : "",
                  (size_t) bn->key_len, bn->data + bn->name_len,
                  bn->key_len ? "\"" : "");
}


const char *
ngx_http_breaker_state_name(ngx_uint_t state)
{
    if (state > NGX_HTTP_BREAKER_HALF_OPEN) {
        return "unknown";
    }

    return ngx_http_breaker_state_names[state];
}
