/* The planner's replay: a simulated clock drives the real pool (virtual memory, no recycler
 * thread). Arrivals come in trace order; consumer releases sit in a binary heap keyed by time.
 * Releases at a time are applied before arrivals at the same time, and a chunk is reclaimed as
 * soon as its last consumer released it: the production recycler is woken by that release. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuipc/error.h"
#include "plan.h"

typedef struct release_event {
    uint64_t time_ns;
    uint32_t slot;
    uint32_t generation;
    uint32_t consumer;
} release_event;

typedef struct release_heap {
    release_event *e;
    size_t n, cap;
} release_heap;

static bool heap_push(release_heap *h, release_event ev) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        release_event *e = realloc(h->e, cap * sizeof *e);
        if (!e)
            return false;
        h->e = e;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->e[parent].time_ns <= ev.time_ns)
            break;
        h->e[i] = h->e[parent];
        i = parent;
    }
    h->e[i] = ev;
    return true;
}

static release_event heap_pop(release_heap *h) {
    release_event top = h->e[0];
    release_event last = h->e[--h->n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->n)
            break;
        if (child + 1 < h->n && h->e[child + 1].time_ns < h->e[child].time_ns)
            child++;
        if (last.time_ns <= h->e[child].time_ns)
            break;
        h->e[i] = h->e[child];
        i = child;
    }
    if (h->n)
        h->e[i] = last;
    return top;
}

void cuipc_plan_options_init(cuipc_plan_options *o) {
    cuipc_pool_config c;
    cuipc_pool_config_init(&c);
    o->policy = CUIPC_PLAN_FAIL;
    o->alignment = c.alignment;
    o->slots = c.slots;
    o->fit = c.fit;
}

typedef struct sim {
    const cuipc_plan_workload *w;
    cuipc_pool *pool;
    release_heap heap;
    uint32_t *acks_left; /* per slot: consumers that still hold the chunk */
    uint64_t *wait_ns;   /* per served request */
    uint64_t served;
    FILE *occupancy;
    cuipc_plan_result *r;
} sim;

static void sample(sim *s, uint64_t now_ns) {
    cuipc_pool_stats st;
    cuipc_pool_stats_get(s->pool, &st);
    if (st.fragmentation > s->r->peak_fragmentation)
        s->r->peak_fragmentation = st.fragmentation;
    if (s->occupancy)
        fprintf(s->occupancy, "%.6f,%llu,%u,%.4f\n", (double)now_ns / 1e9,
                (unsigned long long)st.used_bytes, st.in_flight, st.fragmentation);
}

/* Try to give request i a chunk at now_ns; on success schedule its releases. */
static cuipc_status try_serve(sim *s, uint64_t i, uint64_t now_ns, bool *served) {
    const cuipc_plan_workload *w = s->w;
    uint64_t mask = w->consumers >= 64 ? ~0ull : (1ull << w->consumers) - 1;
    cuipc_chunk c;
    *served = false;
    cuipc_status st = cuipc_pool_alloc(s->pool, w->req[i].bytes, mask, 0, &c);
    if (st == CUIPC_ERR_POOL_FULL) {
        cuipc_pool_stats ps;
        cuipc_pool_stats_get(s->pool, &ps);
        if (ps.in_flight >= cuipc_pool_get_config(s->pool)->slots)
            s->r->slot_limited++;
        return CUIPC_OK;
    }
    if (st != CUIPC_OK)
        return st;
    uint64_t copy_ns = 0;
    if (w->copy_bytes_per_s > 0)
        copy_ns = (uint64_t)llround((double)w->req[i].bytes / w->copy_bytes_per_s * 1e9);
    s->acks_left[c.slot] = w->consumers;
    for (uint32_t k = 0; k < w->consumers; k++) {
        /* A pool buffer is written (fill) before it is sent; a copy in runs after the send. */
        release_event ev = {now_ns + w->fill_ns + copy_ns + w->hold_ns[i * w->consumers + k],
                            c.slot, c.generation, k};
        if (!heap_push(&s->heap, ev))
            return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "release heap of %zu events", s->heap.n);
    }
    s->wait_ns[s->served++] = now_ns - w->req[i].arrival_ns;
    *served = true;
    sample(s, now_ns);
    return CUIPC_OK;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(const uint64_t *sorted, uint64_t n, double q) {
    if (!n)
        return 0;
    uint64_t idx = (uint64_t)(q * (double)(n - 1) + 0.5); /* nearest rank */
    return (double)sorted[idx] / 1e3;
}

static void summarize_waits(sim *s) {
    cuipc_plan_result *r = s->r;
    uint64_t n = s->served, total = 0;
    bool any = false;
    for (uint64_t i = 0; i < n; i++) {
        total += s->wait_ns[i];
        any |= s->wait_ns[i] != 0;
    }
    if (!any)
        return; /* all zero: skip the sort, which dominates short replays */
    qsort(s->wait_ns, n, sizeof *s->wait_ns, cmp_u64);
    r->p50_wait_us = percentile_us(s->wait_ns, n, 0.50);
    r->p99_wait_us = percentile_us(s->wait_ns, n, 0.99);
    r->max_wait_us = (double)s->wait_ns[n - 1] / 1e3;
    r->mean_wait_us = (double)total / (double)n / 1e3;
}

static cuipc_status run(sim *s, const cuipc_plan_options *o) {
    const cuipc_plan_workload *w = s->w;
    uint64_t next = 0;  /* next arrival */
    uint64_t queue = 0; /* wait policy: requests [queue, next) are waiting, FIFO */
    uint64_t aligned_size = s->r->size;
    while (next < w->n || s->heap.n) {
        bool release_first =
            s->heap.n && (next >= w->n || s->heap.e[0].time_ns <= w->req[next].arrival_ns);
        if (release_first) {
            uint64_t now = s->heap.e[0].time_ns;
            bool recycled = false;
            while (s->heap.n && s->heap.e[0].time_ns == now) {
                release_event ev = heap_pop(&s->heap);
                CUIPC_TRY(cuipc_pool_release(s->pool, ev.slot, ev.generation, ev.consumer));
                recycled |= --s->acks_left[ev.slot] == 0;
            }
            if (!recycled)
                continue;
            cuipc_pool_reclaim(s->pool);
            sample(s, now);
            /* Room was made: serve waiting requests in order until one still does not fit. */
            while (queue < next) {
                if (w->req[queue].bytes > aligned_size) {
                    queue++; /* counted as never fitting when it arrived */
                    continue;
                }
                bool served;
                CUIPC_TRY(try_serve(s, queue, now, &served));
                if (!served)
                    break;
                queue++;
            }
            continue;
        }
        uint64_t i = next++;
        uint64_t now = w->req[i].arrival_ns;
        if (w->req[i].bytes > aligned_size) {
            /* Can never fit: it falls back under either policy and must not block the queue. */
            s->r->never_fit++;
            s->r->full_events++;
            if (queue == i)
                queue++;
            continue;
        }
        if (o->policy == CUIPC_PLAN_WAIT && queue < i) {
            s->r->full_events++; /* it queues behind a request that is already waiting */
            continue;
        }
        bool served;
        CUIPC_TRY(try_serve(s, i, now, &served));
        if (served) {
            queue = next;
            continue;
        }
        s->r->full_events++;
        if (o->policy == CUIPC_PLAN_FAIL)
            queue = next;
    }
    return CUIPC_OK;
}

cuipc_status cuipc_plan_replay(const cuipc_plan_workload *w, const cuipc_plan_options *o,
                               uint64_t size, FILE *occupancy, cuipc_plan_result *out) {
    memset(out, 0, sizeof *out);
    out->size = size;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cuipc_pool_config cfg;
    cuipc_pool_config_init(&cfg);
    cfg.memory = CUIPC_MEMORY_VIRTUAL;
    cfg.size = size;
    cfg.max_consumers = w->consumers;
    cfg.slots = o->slots;
    cfg.alignment = o->alignment;
    cfg.fit = o->fit;
    cfg.recycler_thread = false;
    cfg.pin_host = false;
    sim s = {.w = w, .occupancy = occupancy, .r = out};
    CUIPC_TRY(cuipc_pool_create(&cfg, &s.pool));
    cuipc_status st = CUIPC_OK;
    s.acks_left = calloc(cfg.slots, sizeof *s.acks_left);
    s.wait_ns = malloc((w->n ? w->n : 1) * sizeof *s.wait_ns);
    if (!s.acks_left || !s.wait_ns) {
        st = CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "replay state for %llu requests",
                        (unsigned long long)w->n);
        goto done;
    }
    if (occupancy) {
        fprintf(occupancy, "time_s,used_bytes,in_flight,fragmentation\n");
        sample(&s, 0);
    }
    st = run(&s, o);
    if (st != CUIPC_OK)
        goto done;
    out->served = s.served;
    summarize_waits(&s);
    cuipc_pool_stats ps;
    cuipc_pool_stats_get(s.pool, &ps);
    out->peak_used = ps.high_water_bytes;
    out->peak_in_flight = ps.in_flight_high_water;
    out->pool_full_events = ps.full_events;
    if (ps.in_flight != 0)
        st = CUIPC_FAIL(CUIPC_ERR_CORRUPT, "replay ended with %u chunks still in flight",
                        ps.in_flight);
done:
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->replay_ms =
        (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    free(s.heap.e);
    free(s.acks_left);
    free(s.wait_ns);
    cuipc_pool_destroy(s.pool);
    return st;
}
