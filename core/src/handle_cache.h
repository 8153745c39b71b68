/* Receiver-side cache of opened CUDA IPC allocations: each exported allocation is opened once
 * per process and device (cudaIpcOpenMemHandle costs ~200 us) and the mapping shared by every
 * consumer of the process that reads it. Each holder (a consumer) takes a reference; the
 * mapping is closed when the last one gives its reference back, so a consumer that detaches
 * never unmaps what another consumer of the same process still reads. Thread-safe. */
#ifndef CUIPC_HANDLE_CACHE_H
#define CUIPC_HANDLE_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "cuipc/proxy.h"
#include "cuipc/status.h"

/* Mapped address of the allocation behind handle on device, with one more reference to it;
 * *opened says whether this call mapped it (a driver call) or found it mapped already. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_handle_cache_acquire(const uint8_t handle[CUIPC_IPC_HANDLE_BYTES], int device,
                                        void **ptr, bool *opened);

/* One reference given back; the last one unmaps the allocation. */
void cuipc_handle_cache_release(const uint8_t handle[CUIPC_IPC_HANDLE_BYTES], int device);

/* Number of mappings held (leak checks and tests). */
uint32_t cuipc_handle_cache_size(void);

#endif
