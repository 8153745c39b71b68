/* GPU helpers that need no CUDA headers in the caller: presence, memory, pattern and checksum
 * kernels used to verify data integrity end to end. All return CUIPC_ERR_NO_GPU when no driver
 * or device is present (tests map that to exit code 77). */
#ifndef CUIPC_GPU_H
#define CUIPC_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuipc/base.h"
#include "cuipc/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 when no driver or no device; never fails). */
int cuipc_gpu_count(void);

typedef struct cuipc_gpu_info {
    char name[128];
    char pci_bus_id[32];
    int driver_version; /* e.g. 13000 */
    int runtime_version;
    uint64_t total_bytes;
    uint64_t free_bytes;
    char uuid[48]; /* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi -L names it: one
                      physical GPU, where host names and bus IDs repeat across virtual machines */
} cuipc_gpu_info;

CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_info_get(int device, cuipc_gpu_info *out);

/* Device memory this process holds through cuipc on `device` (cuipc_gpu_malloc and the pools'
 * cudaMalloc arenas, plus the reserve of the copy-out buffer pool). The driver's per-process
 * figure (NVML) is not there under MPS, where all clients' memory belongs to the MPS server,
 * and cudaMemGetInfo is device-wide: this is the process's own count. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_allocated_bytes(int device, uint64_t *out);

/* True when this process's work on `device` runs as a client of the CUDA Multi-Process
 * Service (decided when CUDA starts in the process). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_mps_client(int device, bool *out);

/* The process's copy-out buffer pool on `device` (cuipc_unwrap_options.copy_cache_bytes): bytes
 * held from the driver (reserved: the buffers in use and the cache of freed ones) and bytes in
 * buffers not yet freed (used). Zero where no pool was made; never makes one. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_copy_pool_usage(int device, uint64_t *reserved_bytes, uint64_t *used_bytes);

/* Bytes of freed host copy-out buffers kept for reuse (at most CUIPC_HOST_COPY_CACHE_BYTES):
 * resident, and a cache, not a leak. */
uint64_t cuipc_host_copy_cache_bytes(void);

/* Device memory helpers for tests, harness and benchmarks. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_malloc(int device, size_t n, void **out);
CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_free(void *p);
CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_stream_create(int device, cuipc_stream *stream_out);
CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_stream_destroy(cuipc_stream stream);
CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_stream_sync(cuipc_stream stream);
CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_memcpy(void *dst, const void *src, size_t n,
                              cuipc_stream stream); /* any direction, async */

#ifdef __cplusplus
}
#endif
#endif
