/* The recycled pool: arena memory (host memfd, one CUDA allocation, or none for planning), the
 * allocator that carves it, the shared sync table that tracks each chunk in flight, and the
 * recycler thread that frees a chunk as soon as every consumer it was sent to has released it.
 * Releases wake the recycler through the sync table's futex; an allocation that misses reclaims
 * on the spot before it waits or fails, so a full pool is never a matter of recycler timing. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "allocator.h"
#include "cuda_api.h"
#include "error_internal.h"
#include "pool_internal.h"
#include "shm.h"

/* Host releases wake the recycler through the futex. GPU-side acks are stream writes that wake
 * nobody (a host callback would stall the consumer's stream), so chunks of a CUDA pool are also
 * polled: by a blocked allocation, busily for its first GPU_SPIN_NS (a streaming producer waits
 * about one copy time for the oldest chunk, tens of microseconds, and a sleep would overshoot
 * that by the kernel's 50 us timer slack), then every GPU_POLL_NS; and every GPU_RECYCLE_NS by
 * the recycler. */
#define RECYCLER_PERIOD_NS (20 * 1000 * 1000)
#define GPU_SPIN_NS (1000 * 1000)
#define GPU_POLL_NS (100 * 1000)
#define GPU_RECYCLE_NS (1000 * 1000)

typedef struct slot_state {
    uint64_t offset;
    uint64_t size;
    uint32_t busy_pos; /* index in busy[] while busy */
    bool busy;
    bool held; /* an application's buffer not yet sent: never reclaimed */
    /* Given back while the GPU still has its copy queued: no longer the tree's (a send or give
     * back of it is stale), freed and counted cancelled once the GPU wrote its ready word; in
     * flight for the stats until then. */
    bool given_back;
    /* Consumers of this generation's mask that departed (acked on their behalf) since it began:
     * a consumer attached in one's place later is another reader, whose ack the chunk's
     * recycling does not wait for, so a send made after must not reach it. */
    uint64_t departed;
    /* This generation reached a consumer: the wrapped tree it belongs to was sent, and a second
     * send would give its readers the same chunk twice (a consumer that released it meanwhile
     * would read memory the recycler may have handed on). */
    bool sent;
    /* The newest generation whose ready word a stream write was queued for (marked once
     * queued, without the lock): until the word is written, the GPU may still write the chunk
     * and the table, which tear-down must not free under it. */
    _Atomic uint32_t ready_queued;
} slot_state;

struct cuipc_pool {
    cuipc_pool_config cfg;
    uint64_t id;

    void *base;
    int mem_fd;
    void *host_dev_base; /* registered host arena: its device address */
    uint8_t ipc_handle[CUIPC_IPC_HANDLE_BYTES];

    cuipc_sync_table *sync;
    void *sync_dev_base;

    pthread_mutex_t lock; /* allocator, slot lists, stats */
    cuipc_allocator *alloc;
    slot_state *slots;
    uint32_t *free_slots;
    uint32_t n_free_slots;
    uint32_t *busy; /* slots allocated (held or in flight), dense */
    uint32_t n_busy;
    uint32_t n_held; /* of which held: allocated for an application to fill, not yet sent */
    cuipc_pool_stats stats;

    pthread_t recycler;
    bool recycler_running;
    _Atomic bool stopping;
    _Atomic bool kick_pending; /* a CUDA pool's first chunk in flight: wake the recycler */
    _Atomic bool interrupted;  /* waits for room end (cuipc_pool_interrupt) */
};

void cuipc_pool_config_init(cuipc_pool_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->memory = CUIPC_MEMORY_HOST;
    cfg->size = 64ull << 20;
    cfg->device = 0;
    cfg->max_consumers = 1;
    cfg->slots = 4096;
    cfg->alignment = 256;
    cfg->fit = CUIPC_FIT_BEST;
    cfg->recycler_thread = true;
    cfg->pin_host = true;
}

static cuipc_status validate_config(const cuipc_pool_config *c) {
    if (c->memory != CUIPC_MEMORY_HOST && c->memory != CUIPC_MEMORY_CUDA &&
        c->memory != CUIPC_MEMORY_VIRTUAL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "memory kind %d is not host, cuda or virtual",
                          (int)c->memory);
    if (c->size == 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "pool size is 0");
    if (c->max_consumers < 1 || c->max_consumers > CUIPC_MAX_CONSUMERS)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "max_consumers %u not in 1..%d", c->max_consumers,
                          CUIPC_MAX_CONSUMERS);
    if (c->slots < 1 || c->slots > (1u << 24))
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "slots %u not in 1..%u", c->slots, 1u << 24);
    if (c->alignment < 8 || (c->alignment & (c->alignment - 1)))
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "alignment %llu is not a power of two >= 8",
                          (unsigned long long)c->alignment);
    if (c->size < c->alignment)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "pool size %llu is smaller than alignment %llu",
                          (unsigned long long)c->size, (unsigned long long)c->alignment);
    return CUIPC_OK;
}

static cuipc_status map_memory(cuipc_pool *p) {
    p->mem_fd = -1;
    if (p->cfg.memory == CUIPC_MEMORY_VIRTUAL)
        return CUIPC_OK;
    if (p->cfg.memory == CUIPC_MEMORY_CUDA) {
        CUIPC_TRY(cuipc_cuda_malloc(p->cfg.device, p->cfg.size, &p->base));
        /* Exported once for the pool's lifetime: receivers open it once and reuse the mapping. */
        cuipc_status s = cuipc_cuda_ipc_get(p->base, p->ipc_handle);
        if (s != CUIPC_OK) {
            cuipc_status_ignore(cuipc_cuda_free(p->base)); /* undo: the failure above is reported */
            p->base = NULL;
        }
        return s;
    }
    p->mem_fd = cuipc_memfd_create("cuipc-pool", p->cfg.size);
    if (p->mem_fd < 0)
        return CUIPC_ERR_SYSTEM;
    p->base = cuipc_shm_map(p->mem_fd, p->cfg.size);
    if (!p->base)
        return CUIPC_ERR_SYSTEM;
    /* Pinned once per pool (never per message) so device<->host copies run at full speed. */
    if (p->cfg.pin_host && cuipc_cuda_present())
        CUIPC_TRY(cuipc_cuda_host_register(p->base, p->cfg.size, &p->host_dev_base));
    return CUIPC_OK;
}

/* Tear-down: nothing is left to retry a failed CUDA free or unregister on (the thread's error
 * message keeps it). */
static void unmap_memory(cuipc_pool *p) {
    if (p->cfg.memory == CUIPC_MEMORY_CUDA) {
        if (p->base)
            cuipc_status_ignore(cuipc_cuda_free(p->base));
    } else if (p->cfg.memory == CUIPC_MEMORY_HOST) {
        if (p->host_dev_base)
            cuipc_status_ignore(cuipc_cuda_host_unregister(p->base));
        if (p->base)
            cuipc_shm_unmap(p->base, p->cfg.size);
        if (p->mem_fd >= 0)
            close(p->mem_fd);
    }
    p->base = NULL;
}

/* Give the block and slot of busy[i] back. Caller holds the lock. */
static void free_busy_locked(cuipc_pool *p, uint32_t i) {
    uint32_t slot = p->busy[i];
    slot_state *st = &p->slots[slot];
    /* The slot's own block, from this allocator: a refusal would be the pool's bug, which the
     * allocator's consistency check in the tests catches. */
    cuipc_status_ignore(cuipc_allocator_free(p->alloc, st->offset));
    st->busy = false;
    st->given_back = false;
    if (st->held) {
        st->held = false;
        p->n_held--;
    }
    uint32_t last = p->busy[--p->n_busy];
    p->busy[i] = last;
    p->slots[last].busy_pos = i;
    p->free_slots[p->n_free_slots++] = slot;
}

/* Chunks sent (or being sent) and not yet recycled: the allocated ones but the held buffers.
 * Caller holds the lock. */
static uint32_t in_flight_locked(const cuipc_pool *p) {
    return p->n_busy - p->n_held;
}

/* A chunk of a CUDA pool is free to reuse only once the GPU has written its ready word: acks
 * given on a consumer's behalf (it died, or never got the message) can come before the writes
 * queued into the chunk (a copy in, an application's kernels) have run. */
static bool gpu_writes_done(cuipc_pool *p, uint32_t slot) {
    if (p->cfg.memory != CUIPC_MEMORY_CUDA)
        return true;
    return cuipc_sync_ready_current(p->sync, slot);
}

/* Return every busy slot whose consumers are all done. Caller holds the lock. */
static uint32_t reclaim_locked(cuipc_pool *p) {
    uint32_t n = 0;
    uint64_t now = 0;
    for (uint32_t i = 0; i < p->n_busy;) {
        uint32_t slot = p->busy[i];
        if (p->slots[slot].held || !cuipc_sync_done(p->sync, slot, ~0ull) ||
            !gpu_writes_done(p, slot)) {
            i++;
            continue;
        }
        bool given_back = p->slots[slot].given_back;
        free_busy_locked(p, i);
        n++;
        if (given_back) { /* a give-back, not a recycle: in flight until now, as the stats say */
            p->stats.cancelled++;
            continue;
        }
        if (!now)
            now = cuipc_now_ns();
        /* Lag: the latest release (the one that completed this chunk, or a later one) to now. */
        uint64_t released = atomic_load_explicit(&cuipc_sync_table_header(p->sync)->last_release_ns,
                                                 memory_order_relaxed);
        if (released && released <= now) {
            uint64_t lag = now - released;
            p->stats.recycle_lag_ns_total += lag;
            if (lag > p->stats.recycle_lag_ns_max)
                p->stats.recycle_lag_ns_max = lag;
        }
        p->stats.recycled++;
    }
    return n;
}

static void *recycler_main(void *arg) {
    cuipc_pool *p = arg;
    while (!atomic_load(&p->stopping)) {
        uint32_t seq = cuipc_sync_wake_seq(p->sync);
        pthread_mutex_lock(&p->lock);
        uint32_t busy = in_flight_locked(p);
        if (busy)
            reclaim_locked(p);
        pthread_mutex_unlock(&p->lock);
        /* Sleep until a release; a long sleep when nothing is in flight. */
        int64_t period = p->cfg.memory == CUIPC_MEMORY_CUDA ? GPU_RECYCLE_NS : RECYCLER_PERIOD_NS;
        /* A sleep: woken or timed out, the loop looks at the slots again. */
        cuipc_status_ignore(cuipc_sync_wait(p->sync, seq, busy ? period : 10 * RECYCLER_PERIOD_NS));
    }
    return NULL;
}

cuipc_status cuipc_pool_create(const cuipc_pool_config *cfg, cuipc_pool **out) {
    *out = NULL;
    CUIPC_TRY(validate_config(cfg));
    if (cfg->memory == CUIPC_MEMORY_CUDA && !cuipc_cuda_present())
        return CUIPC_FAIL(CUIPC_ERR_NO_GPU, "a CUDA pool needs a GPU and none is usable");
    cuipc_pool *p = calloc(1, sizeof *p);
    if (!p)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "pool struct");
    p->cfg = *cfg;
    p->id = cuipc_random_u64() | 1; /* never 0: 0 means "no pool" on the wire */
    p->mem_fd = -1;
    pthread_mutex_init(&p->lock, NULL);
    p->stats.size = cfg->size;
    cuipc_status s = CUIPC_OK;
    p->slots = calloc(cfg->slots, sizeof *p->slots);
    p->free_slots = malloc(cfg->slots * sizeof *p->free_slots);
    p->busy = malloc(cfg->slots * sizeof *p->busy);
    if (!p->slots || !p->free_slots || !p->busy) {
        s = CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "slot arrays for %u slots", cfg->slots);
        goto fail;
    }
    /* Hand out low slot numbers first: keeps the table's hot part small. */
    for (uint32_t i = 0; i < cfg->slots; i++)
        p->free_slots[i] = cfg->slots - 1 - i;
    p->n_free_slots = cfg->slots;
    s = cuipc_allocator_create(cfg->size, cfg->alignment, cfg->fit, &p->alloc);
    if (s != CUIPC_OK)
        goto fail;
    s = cuipc_sync_table_create(cfg->slots, cfg->max_consumers, p->id, cfg->size, &p->sync);
    if (s != CUIPC_OK)
        goto fail;
    s = map_memory(p);
    if (s != CUIPC_OK)
        goto fail;
    /* The GPU writes ready words (after copies) into the table: register it for device access. */
    if (cfg->memory == CUIPC_MEMORY_CUDA) {
        s = cuipc_cuda_host_register(cuipc_sync_table_base(p->sync),
                                     cuipc_sync_table_bytes(p->sync), &p->sync_dev_base);
        if (s != CUIPC_OK)
            goto fail;
    }
    if (cfg->recycler_thread) {
        if (pthread_create(&p->recycler, NULL, recycler_main, p) != 0) {
            s = CUIPC_FAIL(CUIPC_ERR_SYSTEM, "cannot start the recycler thread");
            goto fail;
        }
        p->recycler_running = true;
    }
    *out = p;
    return CUIPC_OK;
fail:
    cuipc_pool_destroy(p);
    return s;
}

uint32_t cuipc_pool_gpu_writes_queued(cuipc_pool *p) {
    uint32_t n = 0;
    if (p->cfg.memory != CUIPC_MEMORY_CUDA || !p->sync)
        return 0;
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 0; i < p->n_busy; i++) {
        uint32_t slot = p->busy[i];
        uint32_t gen = cuipc_sync_generation(p->sync, slot);
        if (!p->slots[slot].held &&
            atomic_load_explicit(&p->slots[slot].ready_queued, memory_order_relaxed) == gen &&
            !gpu_writes_done(p, slot))
            n++;
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

static void stop_recycler(cuipc_pool *p) {
    if (p->recycler_running) {
        atomic_store(&p->stopping, true);
        cuipc_sync_wake(p->sync);
        pthread_join(p->recycler, NULL);
        p->recycler_running = false;
    }
}

/* The pool's own state; with release, its memory and sync table too, through the driver. */
static void free_pool(cuipc_pool *p, bool release) {
    if (release) {
        if (p->sync_dev_base) /* tear-down: as unmap_memory */
            cuipc_status_ignore(cuipc_cuda_host_unregister(cuipc_sync_table_base(p->sync)));
        unmap_memory(p);
        cuipc_sync_table_destroy(p->sync);
    }
    cuipc_allocator_destroy(p->alloc);
    free(p->slots);
    free(p->free_slots);
    free(p->busy);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void cuipc_pool_abandon(cuipc_pool *p) {
    if (!p)
        return;
    stop_recycler(p);
    free_pool(p, false);
}

cuipc_status cuipc_pool_destroy_within(cuipc_pool *p, int64_t timeout_ns) {
    if (!p)
        return CUIPC_OK;
    stop_recycler(p);
    /* The driver's release of memory (cudaHostUnregister, cudaFree) waits for the GPU's work in
     * flight, all of it (runs 57 and 59), with no limit: wait for this pool's words here, with
     * one; where they do not come, the GPU is not getting there, and the memory and the table
     * are left allocated rather than block in the driver. */
    uint64_t deadline = cuipc_now_ns() + (uint64_t)(timeout_ns < 0 ? 0 : timeout_ns);
    uint32_t queued;
    while ((queued = cuipc_pool_gpu_writes_queued(p)) &&
           (timeout_ns < 0 || cuipc_now_ns() < deadline))
        usleep(GPU_POLL_NS / 1000);
    cuipc_status s = CUIPC_OK;
    if (queued) {
        s = CUIPC_FAIL(CUIPC_ERR_TIMEOUT,
                       "%u chunks of the GPU pool on device %d still had their copies queued "
                       "on the GPU after %lld ms: the pool's %llu bytes and its sync table are "
                       "left allocated, for those copies to land in",
                       queued, p->cfg.device, (long long)(timeout_ns / 1000000),
                       (unsigned long long)p->cfg.size);
    }
    free_pool(p, !queued);
    return s;
}

void cuipc_pool_destroy(cuipc_pool *p) {
    /* The pool is gone either way; a TIMEOUT left its memory allocated, and says so in
     * cuipc_last_error(). */
    cuipc_status_ignore(cuipc_pool_destroy_within(p, CUIPC_TEARDOWN_WAIT_NS));
}

static void update_usage_locked(cuipc_pool *p) {
    cuipc_allocator_stats a;
    cuipc_allocator_stats_get(p->alloc, &a);
    if (a.used > p->stats.high_water_bytes)
        p->stats.high_water_bytes = a.used;
    if (in_flight_locked(p) > p->stats.in_flight_high_water)
        p->stats.in_flight_high_water = in_flight_locked(p);
}

/* The first chunk in flight of a CUDA pool owes the recycler a wake: it sleeps long while
 * nothing is in flight and no GPU ack will wake it. cuipc_pool_kick_recycler pays it (a futex
 * wake costs ~3 us: not under the lock, and a producer does it after delivery). */
static void owe_kick_locked(cuipc_pool *p) {
    if (in_flight_locked(p) == 1 && p->cfg.memory == CUIPC_MEMORY_CUDA && p->recycler_running)
        atomic_store_explicit(&p->kick_pending, true, memory_order_relaxed);
}

/* What a slot knows of its generation, cleared as a new one begins (an allocation, a buffer
 * published). The ready mark too: one generations old would compare wrongly in serial order,
 * and a late mark of the old generation stays older than the new one, so uncounted. Caller
 * holds the lock. */
static void reset_generation_state(slot_state *st) {
    st->departed = 0;
    st->sent = false;
    atomic_store_explicit(&st->ready_queued, 0, memory_order_relaxed);
}

/* One attempt: a slot and a block, or POOL_FULL. A held chunk's slot waits for no consumer
 * (mask 0) until it is published. Caller holds the lock. */
static cuipc_status try_alloc_locked(cuipc_pool *p, uint64_t size, uint64_t mask, bool held,
                                     cuipc_chunk *out) {
    if (p->n_free_slots == 0)
        return CUIPC_FAIL(CUIPC_ERR_POOL_FULL, "all %u sync slots are in flight", p->cfg.slots);
    uint64_t offset;
    CUIPC_TRY(cuipc_allocator_alloc(p->alloc, size, &offset));
    uint32_t slot = p->free_slots[--p->n_free_slots];
    slot_state *st = &p->slots[slot];
    st->offset = offset;
    st->size = size;
    st->busy = true;
    st->busy_pos = p->n_busy;
    p->busy[p->n_busy++] = slot;
    st->held = held;
    reset_generation_state(st);
    if (held)
        p->n_held++;
    else
        owe_kick_locked(p);
    out->offset = offset;
    out->size = size;
    out->slot = slot;
    out->generation = cuipc_sync_begin(p->sync, slot, offset, size, held ? 0 : mask);
    out->ptr = p->base ? (char *)p->base + offset : NULL;
    p->stats.allocs++;
    update_usage_locked(p);
    return CUIPC_OK;
}

void cuipc_pool_interrupt(cuipc_pool *p) {
    if (!p)
        return; /* a producer without this pool */
    atomic_store_explicit(&p->interrupted, true, memory_order_seq_cst);
    cuipc_sync_wake(p->sync);
}

void cuipc_pool_kick_recycler(cuipc_pool *p) {
    if (atomic_load_explicit(&p->kick_pending, memory_order_relaxed) &&
        atomic_exchange_explicit(&p->kick_pending, false, memory_order_relaxed))
        cuipc_sync_wake(p->sync);
}

cuipc_status cuipc_pool_alloc(cuipc_pool *p, uint64_t size, uint64_t consumer_mask,
                              int64_t timeout_ns, cuipc_chunk *out) {
    return cuipc_pool_alloc_own(p, size, consumer_mask, CUIPC_POOL_WAIT(timeout_ns),
                                CUIPC_POOL_OWN_UNKNOWN, out);
}

static cuipc_status alloc_chunk(cuipc_pool *p, uint64_t size, uint64_t consumer_mask, bool held,
                                cuipc_pool_wait wait, cuipc_pool_own own, cuipc_chunk *out);

cuipc_status cuipc_pool_alloc_own(cuipc_pool *p, uint64_t size, uint64_t consumer_mask,
                                  cuipc_pool_wait wait, cuipc_pool_own own, cuipc_chunk *out) {
    cuipc_status s = cuipc_pool_alloc_unkicked(p, size, consumer_mask, wait, own, out);
    cuipc_pool_kick_recycler(p);
    return s;
}

static cuipc_status check_mask(const cuipc_pool *p, uint64_t consumer_mask) {
    uint64_t valid = p->cfg.max_consumers >= 64 ? ~0ull : (1ull << p->cfg.max_consumers) - 1;
    if (consumer_mask == 0 || (consumer_mask & ~valid))
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "consumer mask 0x%llx is empty or beyond %u consumers",
                          (unsigned long long)consumer_mask, p->cfg.max_consumers);
    return CUIPC_OK;
}

/* Waiting cannot make room: nothing is in flight but the caller's own chunks (a message
 * bigger than the pool, in bytes or slots), and no buffer is held but the caller's own, which
 * it takes only once this room is found. */
static bool only_own_in_flight(const cuipc_pool *p, cuipc_pool_own own) {
    return own.in_flight != UINT32_MAX && in_flight_locked(p) <= own.in_flight &&
           p->n_held <= own.held;
}

static cuipc_status alloc_chunk(cuipc_pool *p, uint64_t size, uint64_t consumer_mask, bool held,
                                cuipc_pool_wait wait, cuipc_pool_own own, cuipc_chunk *out) {
    int64_t timeout_ns = wait.timeout_ns;
    if (size == 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "size 0: empty tensors need no chunk");
    if (size > p->cfg.size)
        return CUIPC_FAIL(CUIPC_ERR_POOL_FULL, "%llu bytes can never fit a pool of %llu bytes",
                          (unsigned long long)size, (unsigned long long)p->cfg.size);
    if (!held)
        CUIPC_TRY(check_mask(p, consumer_mask));
    uint64_t start = 0;
    pthread_mutex_lock(&p->lock);
    cuipc_status s = try_alloc_locked(p, size, consumer_mask, held, out);
    if (s == CUIPC_ERR_POOL_FULL) {
        if (!wait.continued)
            p->stats.full_events++;
        p->stats.on_demand_reclaims++;
        if (reclaim_locked(p))
            s = try_alloc_locked(p, size, consumer_mask, held, out);
    }
    while (s == CUIPC_ERR_POOL_FULL && timeout_ns > 0) {
        if (!start)
            start = cuipc_now_ns();
        uint64_t waited = cuipc_now_ns() - start;
        if (waited >= (uint64_t)timeout_ns) {
            s = CUIPC_FAIL(CUIPC_ERR_TIMEOUT,
                           "no room for %llu bytes after waiting %lld ms (%u chunks in flight, "
                           "%u buffers held)",
                           (unsigned long long)size, (long long)(timeout_ns / 1000000),
                           in_flight_locked(p), p->n_held);
            break;
        }
        uint32_t seq = cuipc_sync_wake_seq(p->sync);
        /* After reading seq: an interrupt sets the flag before it moves seq, so one that comes
         * later ends the sleep below at once. */
        if (atomic_load_explicit(&p->interrupted, memory_order_seq_cst)) {
            s = CUIPC_FAIL(CUIPC_ERR_CLOSED,
                           "no room for %llu bytes, and the wait for it was interrupted (the "
                           "producer is closing)",
                           (unsigned long long)size);
            break;
        }
        /* Re-check after reading seq so a release between the check and the sleep is not lost. */
        if (reclaim_locked(p)) {
            s = try_alloc_locked(p, size, consumer_mask, held, out);
            continue;
        }
        if (only_own_in_flight(p, own)) {
            s = CUIPC_FAIL(CUIPC_ERR_POOL_FULL,
                           "no room for %llu bytes, and nothing to wait for: the message's own %u "
                           "chunks are all that is in flight (it needs more than the pool's "
                           "%llu bytes or %u slots)",
                           (unsigned long long)size, own.in_flight, (unsigned long long)p->cfg.size,
                           p->cfg.slots);
            break;
        }
        pthread_mutex_unlock(&p->lock);
        int64_t left = timeout_ns - (int64_t)waited;
        bool gpu = p->cfg.memory == CUIPC_MEMORY_CUDA;
        if (gpu && waited < GPU_SPIN_NS) {
            for (int i = 0; i < 64; i++)
                cuipc_cpu_relax();
        } else {
            int64_t slice = gpu ? GPU_POLL_NS : RECYCLER_PERIOD_NS;
            /* A sleep: woken or timed out, the slots are reclaimed and looked at again. */
            cuipc_status_ignore(cuipc_sync_wait(p->sync, seq, left < slice ? left : slice));
        }
        pthread_mutex_lock(&p->lock);
        reclaim_locked(p);
        s = try_alloc_locked(p, size, consumer_mask, held, out);
    }
    if (start)
        p->stats.wait_ns_total += cuipc_now_ns() - start;
    /* A wait made in slices counts one failure: a timeout on its last slice; a refusal on its
     * first, or whenever it ends the wait (the refusals of a GPU pool under "fallback", tried
     * with no wait every slice, are not its last). */
    if (s != CUIPC_OK && s != CUIPC_ERR_CLOSED &&
        (s == CUIPC_ERR_TIMEOUT ? wait.last : !wait.continued || wait.last || wait.timeout_ns > 0))
        p->stats.full_failures++;
    pthread_mutex_unlock(&p->lock);
    return s;
}

cuipc_status cuipc_pool_alloc_unkicked(cuipc_pool *p, uint64_t size, uint64_t consumer_mask,
                                       cuipc_pool_wait wait, cuipc_pool_own own, cuipc_chunk *out) {
    return alloc_chunk(p, size, consumer_mask, false, wait, own, out);
}

cuipc_status cuipc_pool_alloc_held(cuipc_pool *p, uint64_t size, cuipc_pool_wait wait,
                                   cuipc_chunk *out) {
    return alloc_chunk(p, size, 0, true, wait, CUIPC_POOL_OWN_UNKNOWN, out);
}

void cuipc_pool_mark_ready(cuipc_pool *p, const cuipc_chunk *c) {
    cuipc_sync_set_ready(p->sync, c->slot, c->generation);
}

static slot_state *busy_slot(cuipc_pool *p, uint32_t slot, uint32_t generation) {
    if (slot >= p->cfg.slots || !p->slots[slot].busy || p->slots[slot].given_back)
        return NULL;
    if (cuipc_sync_generation(p->sync, slot) != generation)
        return NULL;
    return &p->slots[slot];
}

bool cuipc_pool_readers(cuipc_pool *p, const cuipc_chunk *c, uint64_t *readers, bool *sent) {
    pthread_mutex_lock(&p->lock);
    slot_state *st = busy_slot(p, c->slot, c->generation);
    uint64_t mask = c->slot < p->cfg.slots ? cuipc_sync_consumer_mask(p->sync, c->slot) : 0;
    *readers = st ? mask & ~st->departed : mask;
    *sent = st && st->sent;
    pthread_mutex_unlock(&p->lock);
    return st != NULL;
}

void cuipc_pool_set_sent(cuipc_pool *p, const cuipc_chunk *c, bool sent) {
    pthread_mutex_lock(&p->lock);
    slot_state *st = busy_slot(p, c->slot, c->generation);
    if (st)
        st->sent = sent;
    pthread_mutex_unlock(&p->lock);
}

/* Acked for every consumer, so that the table agrees the slot is done, and freed now, or (a CUDA
 * pool's chunk whose ready word the GPU has not written, when after_gpu) by the recycler once
 * the GPU has written it: the copy queued before that word cannot land in memory given to
 * another message. */
static cuipc_status give_back(cuipc_pool *p, const cuipc_chunk *c, bool after_gpu) {
    pthread_mutex_lock(&p->lock);
    slot_state *st = busy_slot(p, c->slot, c->generation);
    if (!st) {
        pthread_mutex_unlock(&p->lock);
        return CUIPC_FAIL(CUIPC_ERR_STALE, "slot %u generation %u is not in flight", c->slot,
                          c->generation);
    }
    if (st->sent) { /* its consumers may read it: only their releases give it back */
        pthread_mutex_unlock(&p->lock);
        return CUIPC_FAIL(CUIPC_ERR_DUPLICATE,
                          "slot %u generation %u was delivered, or is being sent: its consumers "
                          "give it back",
                          c->slot, c->generation);
    }
    /* A reader that released it has had it: it was delivered, even where no send of the
     * transport's marked it (the pool used on its own). Acked for all here, the chunk would be
     * reused under its other readers, and their releases refused as duplicates. */
    uint64_t readers = cuipc_sync_consumer_mask(p->sync, c->slot) & ~st->departed;
    for (uint32_t i = 0; i < CUIPC_MAX_CONSUMERS; i++)
        if ((readers >> i & 1) && cuipc_sync_ack_landed(p->sync, c->slot, c->generation, i)) {
            pthread_mutex_unlock(&p->lock);
            return CUIPC_FAIL(CUIPC_ERR_DUPLICATE,
                              "slot %u generation %u was released by consumer %u: it was "
                              "delivered, and its consumers give it back",
                              c->slot, c->generation, i);
        }
    cuipc_sync_ack_all(p->sync, c->slot, c->generation);
    if (!after_gpu || st->held || gpu_writes_done(p, c->slot)) {
        free_busy_locked(p, st->busy_pos);
        p->stats.cancelled++;
    } else {
        st->given_back = true; /* reclaim_locked frees and counts it once the word is written */
    }
    pthread_mutex_unlock(&p->lock);
    cuipc_sync_wake(p->sync); /* room for an allocation waiting (a freed buffer, mostly) */
    return CUIPC_OK;
}

cuipc_status cuipc_pool_cancel(cuipc_pool *p, const cuipc_chunk *c) {
    return give_back(p, c, false);
}

cuipc_status cuipc_pool_give_back(cuipc_pool *p, const cuipc_chunk *c) {
    return give_back(p, c, true);
}

cuipc_status cuipc_pool_publish_held(cuipc_pool *p, cuipc_chunk *c, uint64_t offset, uint64_t size,
                                     uint64_t consumer_mask) {
    CUIPC_TRY(check_mask(p, consumer_mask));
    pthread_mutex_lock(&p->lock);
    slot_state *st = busy_slot(p, c->slot, c->generation);
    cuipc_status s = CUIPC_OK;
    if (!st || !st->held)
        s = CUIPC_FAIL(CUIPC_ERR_STALE, "slot %u generation %u is not a held buffer", c->slot,
                       c->generation);
    else if (size == 0 || offset < c->offset || size > c->size ||
             offset - c->offset > c->size - size)
        s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                       "[%llu, +%llu) is not inside the buffer [%llu, +%llu)",
                       (unsigned long long)offset, (unsigned long long)size,
                       (unsigned long long)c->offset, (unsigned long long)c->size);
    if (s == CUIPC_OK) {
        st->held = false;
        reset_generation_state(st);
        p->n_held--;
        owe_kick_locked(p);
        /* A new generation: the extent consumers check is the tensor's, the mask the
         * consumers it goes to. */
        c->generation = cuipc_sync_begin(p->sync, c->slot, offset, size, consumer_mask);
        c->offset = offset;
        c->size = size;
        c->ptr = p->base ? (char *)p->base + offset : NULL;
        update_usage_locked(p);
    }
    pthread_mutex_unlock(&p->lock);
    return s;
}

cuipc_status cuipc_pool_release(cuipc_pool *p, uint32_t slot, uint32_t generation,
                                uint32_t consumer) {
    if (consumer >= p->cfg.max_consumers)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "consumer %u >= max_consumers %u", consumer,
                          p->cfg.max_consumers);
    if (slot >= p->cfg.slots)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "slot %u >= %u slots", slot, p->cfg.slots);
    /* Stale and duplicate releases are counted in the shared header (stats read them there). */
    return cuipc_sync_release(p->sync, slot, generation, consumer);
}

void cuipc_pool_release_on_behalf(cuipc_pool *p, uint32_t slot, uint32_t generation,
                                  uint32_t consumer) {
    if (slot >= p->cfg.slots || consumer >= p->cfg.max_consumers)
        return;
    cuipc_sync_ack_on_behalf(p->sync, slot, generation, consumer);
    cuipc_sync_wake(p->sync);
}

void cuipc_pool_consumer_dead(cuipc_pool *p, uint32_t consumer) {
    if (consumer >= p->cfg.max_consumers)
        return;
    pthread_mutex_lock(&p->lock);
    /* Ack on behalf of the dead consumer for everything sent to it, then recycle. */
    for (uint32_t i = 0; i < p->n_busy; i++) {
        uint32_t slot = p->busy[i];
        if (cuipc_sync_consumer_mask(p->sync, slot) & (1ull << consumer))
            p->slots[slot].departed |= 1ull << consumer;
        if (cuipc_sync_ack_current_on_behalf(p->sync, slot, consumer))
            p->stats.dead_consumer_reclaims++;
    }
    reclaim_locked(p);
    pthread_mutex_unlock(&p->lock);
    cuipc_sync_wake(p->sync);
}

uint32_t cuipc_pool_reclaim(cuipc_pool *p) {
    pthread_mutex_lock(&p->lock);
    uint32_t n = reclaim_locked(p);
    pthread_mutex_unlock(&p->lock);
    return n;
}

void cuipc_pool_stats_get(cuipc_pool *p, cuipc_pool_stats *out) {
    pthread_mutex_lock(&p->lock);
    cuipc_allocator_stats a;
    cuipc_allocator_stats_get(p->alloc, &a);
    *out = p->stats;
    out->size = p->cfg.size;
    out->used_bytes = a.used;
    out->largest_free = a.largest_free;
    out->free_blocks = a.free_blocks;
    out->fragmentation = a.free ? 1.0 - (double)a.largest_free / (double)a.free : 0.0;
    out->in_flight = in_flight_locked(p);
    out->held = p->n_held;
    cuipc_sync_header *h = cuipc_sync_table_header(p->sync);
    /* Rejections are counted where every process sees them: the shared header. */
    out->stale_releases = atomic_load(&h->stale_releases);
    out->duplicate_releases = atomic_load(&h->duplicate_releases);
    pthread_mutex_unlock(&p->lock);
}

void cuipc_pool_fill_proxy(const cuipc_pool *p, const cuipc_chunk *c, cuipc_proxy *x) {
    x->kind = CUIPC_PROXY_POOL;
    x->u.pool.pool_id = p->id;
    x->u.pool.memory = p->cfg.memory == CUIPC_MEMORY_CUDA ? CUIPC_MEMORY_CUDA : CUIPC_MEMORY_HOST;
    x->u.pool.pool_device = p->cfg.memory == CUIPC_MEMORY_CUDA ? p->cfg.device : CUIPC_DEVICE_HOST;
    x->u.pool.slot = c->slot;
    x->u.pool.generation = c->generation;
    x->u.pool.offset = c->offset;
}

uint64_t cuipc_pool_id(const cuipc_pool *p) {
    return p->id;
}

const cuipc_pool_config *cuipc_pool_get_config(const cuipc_pool *p) {
    return &p->cfg;
}

void *cuipc_pool_base(const cuipc_pool *p) {
    return p->base;
}

int cuipc_pool_memory_fd(const cuipc_pool *p) {
    return p->mem_fd;
}

const uint8_t *cuipc_pool_ipc_handle(const cuipc_pool *p) {
    return p->ipc_handle;
}

cuipc_sync_table *cuipc_pool_sync(const cuipc_pool *p) {
    return p->sync;
}

cuipc_status cuipc_pool_copy_in(cuipc_pool *p, cuipc_stream stream, const cuipc_chunk *c,
                                const void *src, uint64_t n) {
    if (p->cfg.memory != CUIPC_MEMORY_CUDA || c->slot >= p->cfg.slots || n > c->size)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "%llu bytes into slot %u (%llu bytes) of a %s pool with %u slots",
                          (unsigned long long)n, c->slot, (unsigned long long)c->size,
                          p->cfg.memory == CUIPC_MEMORY_CUDA ? "CUDA" : "non-CUDA", p->cfg.slots);
    CUIPC_TRY(cuipc_cuda_memcpy_async(c->ptr, src, n, stream));
    return cuipc_pool_ready_on_stream(p, stream, c);
}

cuipc_status cuipc_pool_ready_on_stream(cuipc_pool *p, cuipc_stream stream, const cuipc_chunk *c) {
    if (p->cfg.memory != CUIPC_MEMORY_CUDA || c->slot >= p->cfg.slots)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "ready word of slot %u of a %s pool with %u slots",
                          c->slot, p->cfg.memory == CUIPC_MEMORY_CUDA ? "CUDA" : "non-CUDA",
                          p->cfg.slots);
    CUIPC_TRY(cuipc_cuda_stream_write_u32(
        stream, cuipc_sync_ready_device_addr(p->sync_dev_base, p->sync, c->slot), c->generation));
    cuipc_sync_mark_newer(&p->slots[c->slot].ready_queued, c->generation);
    return CUIPC_OK;
}
