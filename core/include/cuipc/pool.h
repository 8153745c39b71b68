/* The recycled pool: a fixed arena (host shared memory, one CUDA allocation, or virtual for
 * planning) carved into chunks, one sync slot per chunk in flight, and a recycler that returns a
 * chunk once every consumer it was sent to has released it (or died). */
#ifndef CUIPC_POOL_H
#define CUIPC_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "cuipc/proxy.h"
#include "cuipc/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUIPC_MAX_CONSUMERS 64

typedef enum cuipc_fit {
    CUIPC_FIT_BEST = 0,  /* smallest free block that fits (segregated lists) */
    CUIPC_FIT_FIRST = 1, /* first block of the first size class that fits */
} cuipc_fit;

typedef struct cuipc_pool_config {
    cuipc_memory_kind memory; /* HOST, CUDA, or VIRTUAL (planning) */
    uint64_t size;            /* arena bytes */
    int32_t device;           /* CUDA ordinal for CUIPC_MEMORY_CUDA */
    uint32_t max_consumers;   /* consumers a chunk can be sent to (tp_size), 1..64 */
    uint32_t slots;           /* chunks in flight at most (default 4096) */
    uint64_t alignment;       /* power of two, default 256 */
    cuipc_fit fit;
    bool recycler_thread; /* run the background recycler (default true; planner: false) */
    bool pin_host;        /* cudaHostRegister a host arena when a GPU is present (default true) */
} cuipc_pool_config;

void cuipc_pool_config_init(cuipc_pool_config *cfg);

typedef struct cuipc_pool cuipc_pool;

typedef struct cuipc_chunk {
    uint64_t offset;
    uint64_t size; /* bytes asked for */
    uint32_t slot;
    uint32_t generation;
    void *ptr; /* producer address: host mapping or device pointer; NULL if virtual */
} cuipc_chunk;

typedef struct cuipc_pool_stats {
    uint64_t size;
    uint64_t used_bytes; /* allocated now (aligned sizes) */
    uint64_t high_water_bytes;
    uint64_t largest_free;
    uint64_t free_blocks;
    double fragmentation; /* 1 - largest_free / free bytes; 0 when nothing is free */
    uint32_t in_flight;   /* chunks sent (or being sent) and not yet recycled */
    uint32_t held;        /* buffers an application holds to fill, not yet sent */
    uint32_t in_flight_high_water;
    uint64_t allocs;
    uint64_t recycled;               /* chunks returned after every consumer released */
    uint64_t cancelled;              /* chunks returned without being sent */
    uint64_t full_events;            /* allocation attempts that found no room (before waiting) */
    uint64_t full_failures;          /* allocations that gave up (POOL_FULL or TIMEOUT; not
                                      * those a producer's close ended) */
    uint64_t on_demand_reclaims;     /* recycling passes run by an allocation that missed */
    uint64_t dead_consumer_reclaims; /* chunk releases taken over for consumers that died */
    uint64_t stale_releases;         /* releases rejected: wrong generation */
    uint64_t duplicate_releases;     /* releases rejected: already released */
    uint64_t wait_ns_total;          /* time allocations spent waiting for room */
    uint64_t recycle_lag_ns_max;     /* last release -> chunk free again, worst case */
    uint64_t recycle_lag_ns_total;
} cuipc_pool_stats;

CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_create(const cuipc_pool_config *cfg, cuipc_pool **out);
/* Tear-down waits up to this long for the GPU to run the writes queued into a pool (see
 * cuipc_pool_destroy_within). */
#define CUIPC_TEARDOWN_WAIT_NS (10ll * 1000 * 1000 * 1000)

/* Destroy the pool. A CUDA pool first waits, up to timeout_ns (< 0: no limit), for the GPU to
 * write the ready words queued on streams (cuipc_pool_copy_in and buffers published on a
 * stream): the copies queued before them still write the pool, and the words the sync table.
 * The driver's own release of memory (cudaHostUnregister, cudaFree) blocks until the GPU has
 * run its work in flight, all of it, and forever where a stream never gets there (a kernel
 * waiting on a process that died). CUIPC_ERR_TIMEOUT: some were not written in time; the
 * pool's memory and sync table are then left allocated (a leak, never a hang) and the message
 * says how many. The pool is destroyed either way. cuipc_pool_destroy waits up to
 * CUIPC_TEARDOWN_WAIT_NS. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_destroy_within(cuipc_pool *pool, int64_t timeout_ns);
void cuipc_pool_destroy(cuipc_pool *pool);

/* Allocate size bytes for a chunk to be sent to the consumers in consumer_mask.
 * On a miss, chunks already released are reclaimed at once; then, with timeout_ns > 0, the call
 * waits for releases up to timeout_ns (CUIPC_ERR_TIMEOUT), else returns CUIPC_ERR_POOL_FULL.
 * size 0 is invalid (empty tensors need no chunk). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_alloc(cuipc_pool *pool, uint64_t size, uint64_t consumer_mask,
                              int64_t timeout_ns, cuipc_chunk *out);

/* The chunk's data is in place (host memory: stores are visible). GPU pools mark readiness on
 * a stream instead (see transport). */
void cuipc_pool_mark_ready(cuipc_pool *pool, const cuipc_chunk *chunk);

/* Give back a chunk that was never sent. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_cancel(cuipc_pool *pool, const cuipc_chunk *chunk);

/* Consumer c is done with (slot, generation). STALE / DUPLICATE are rejected and counted. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_release(cuipc_pool *pool, uint32_t slot, uint32_t generation,
                                uint32_t consumer);

/* Consumer c is gone: every chunk waiting on it stops waiting. */
void cuipc_pool_consumer_dead(cuipc_pool *pool, uint32_t consumer);

/* Return every fully released chunk now; returns how many. */
uint32_t cuipc_pool_reclaim(cuipc_pool *pool);

void cuipc_pool_stats_get(cuipc_pool *pool, cuipc_pool_stats *out);

/* Describe a chunk as a pool proxy (identity, slot, generation, offset). */
void cuipc_pool_fill_proxy(const cuipc_pool *pool, const cuipc_chunk *chunk, cuipc_proxy *p);

uint64_t cuipc_pool_id(const cuipc_pool *pool);
const cuipc_pool_config *cuipc_pool_get_config(const cuipc_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
