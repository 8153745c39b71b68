/* Host copy-out buffers. Small ones come from malloc. Large ones are anonymous mappings of their
 * own, reused through a cache of at most CUIPC_HOST_COPY_CACHE_BYTES and unmapped beyond it: from
 * the heap, a stream of mixed large sizes leaves the process's resident memory at the high water
 * of the heap's fragmentation (malloc keeps freed blocks), and a fresh mapping per message pays a
 * page fault per page (40 % of a host copy-out stream of 4 KiB-24 MiB tensors). */
#ifndef CUIPC_HOST_COPY_H
#define CUIPC_HOST_COPY_H

#include <stddef.h>
#include <stdint.h>

/* n bytes; *mapped: the mapping's size (0: from malloc), to give back to cuipc_host_copy_free. */
void *cuipc_host_copy_alloc(uint64_t n, size_t *mapped);
void cuipc_host_copy_free(void *p, size_t mapped);

#endif
