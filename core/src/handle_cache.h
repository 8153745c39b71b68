/* Receiver-side cache of opened CUDA IPC allocations: each exported allocation is opened once
 * per process and device (cudaIpcOpenMemHandle costs ~200 us) and the mapping reused for every
 * later slice of it. Thread-safe. */
#ifndef CUIPC_HANDLE_CACHE_H
#define CUIPC_HANDLE_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "cuipc/proxy.h"
#include "cuipc/status.h"

/* Mapped address of the allocation behind handle on device; *hit says whether it was cached. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_handle_cache_open(const uint8_t handle[CUIPC_IPC_HANDLE_BYTES], int device,
                                     void **ptr, bool *hit);

/* Unmap one allocation (its exporter is gone or the pool is detached). */
void cuipc_handle_cache_close(const uint8_t handle[CUIPC_IPC_HANDLE_BYTES], int device);

/* Number of mappings held (leak checks and tests). */
uint32_t cuipc_handle_cache_size(void);

/* Unmap everything (consumer detach, tests). */
void cuipc_handle_cache_clear(void);

#endif
