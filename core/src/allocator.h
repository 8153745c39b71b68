/* Pure chunk allocator over an arena of offsets [0, size): no I/O, no shared memory.
 * Two-level segregated free lists with a bitmap (sub-linear lookup), split on allocate,
 * immediate coalescing of free neighbours on free. Used by the producer only. */
#ifndef CUIPC_ALLOCATOR_H
#define CUIPC_ALLOCATOR_H

#include <stdint.h>

#include "cuipc/pool.h"
#include "cuipc/status.h"

typedef struct cuipc_allocator cuipc_allocator;

typedef struct cuipc_allocator_stats {
    uint64_t arena;
    uint64_t used; /* bytes in allocated blocks (aligned sizes) */
    uint64_t free;
    uint64_t largest_free;
    uint64_t free_blocks;
    uint64_t used_blocks;
} cuipc_allocator_stats;

/* alignment: power of two >= 8; every offset and block size is a multiple of it. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_allocator_create(uint64_t arena, uint64_t alignment, cuipc_fit fit,
                                    cuipc_allocator **out);
void cuipc_allocator_destroy(cuipc_allocator *a);

/* CUIPC_ERR_POOL_FULL (message: size asked, largest free) when no block fits;
 * CUIPC_ERR_INVALID_ARG for size 0 or size > arena. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_allocator_alloc(cuipc_allocator *a, uint64_t size, uint64_t *offset);

/* CUIPC_ERR_INVALID_ARG if offset is not the start of an allocated block (double free, forged). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_allocator_free(cuipc_allocator *a, uint64_t offset);

/* Aligned size of the allocated block at offset, 0 if none. */
uint64_t cuipc_allocator_block_size(const cuipc_allocator *a, uint64_t offset);

void cuipc_allocator_stats_get(const cuipc_allocator *a, cuipc_allocator_stats *out);

/* Walk every structure and check the invariants (blocks tile the arena, no two free
 * neighbours, free lists match, stats match). CUIPC_ERR_CORRUPT naming the first violation. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_allocator_check(const cuipc_allocator *a);

#endif
