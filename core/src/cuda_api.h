/* Thin checked layer over the CUDA runtime (linked statically) and the few driver functions we
 * need, looked up at run time with cudaGetDriverEntryPointByVersion so that binaries start on
 * machines without a driver. Every function sets the error message on failure and returns
 * CUIPC_ERR_NO_GPU when no usable device exists. Only C: no CUDA headers leak out of here. */
#ifndef CUIPC_CUDA_API_H
#define CUIPC_CUDA_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuipc/proxy.h"
#include "cuipc/base.h"
#include "cuipc/status.h"

/* Device count > 0 (cached after the first call; never fails). */
bool cuipc_cuda_present(void);

CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_set_device(int device);

/* Where a pointer lives: CUIPC_DEVICE_HOST for host memory (pageable or pinned), else the
 * device ordinal of a device allocation. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_pointer_device(const void *p, int *device);

/* Base and size of the cudaMalloc allocation holding p (driver cuMemGetAddressRange). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_alloc_range(const void *p, void **base, size_t *size);

CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_ipc_get(void *base, uint8_t handle[CUIPC_IPC_HANDLE_BYTES]);
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_ipc_open(const uint8_t handle[CUIPC_IPC_HANDLE_BYTES], int device,
                                 void **ptr);
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_ipc_close(void *ptr);

CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_malloc(int device, size_t n, void **out);
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_free(void *p);

/* Stream-ordered copy-out buffers from a per-device pool that keeps freed memory for reuse.
 * The free is ordered after all work queued on `stream` before it. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_malloc_async(int device, size_t n, cuipc_stream stream, void **out);
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_free_async(void *p, cuipc_stream stream);
/* The device a stream's work runs on (NULL: the current device's default stream). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_stream_device(cuipc_stream stream, int *device);
/* Create the device's pool if need be (so the first copy-out does not pay for it); the pool
 * keeps at most keep_bytes of freed memory past a synchronisation (its
 * release threshold; created with CUIPC_COPY_CACHE_DEFAULT_BYTES). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_copy_pool_set_cache(int device, uint64_t keep_bytes);
/* Make the device's copy-out pool's first allocation now, on stream (a stream of that device),
 * and wait for it: the driver's first stream-ordered allocation in a process costs it
 * milliseconds and thousands of page faults of its own set-up. A no-op once the device's pool
 * has made an allocation (here or for a copy). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_copy_pool_warm(int device, cuipc_stream stream);
/* Bytes the device's copy-out pool holds from the driver (reserved) and hands out (used);
 * zero where it has none. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_copy_pool_usage(int device, uint64_t *reserved, uint64_t *used);
/* Give the pools' unused memory back to the driver (memory still in use is untouched). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_copy_pools_trim(void);

/* Pin host memory (portable, mapped) and return its device address. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_host_register(void *p, size_t n, void **dev_ptr);
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_host_unregister(void *p);

CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_memcpy_async(void *dst, const void *src, size_t n, cuipc_stream stream);
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_stream_sync(cuipc_stream stream);

/* Stream memory operations on 32-bit words (device memory or registered host memory given by
 * its device address): write value after prior work; make later work wait until *addr == value. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_stream_write_u32(cuipc_stream stream, void *dev_addr, uint32_t value);
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_stream_wait_u32(cuipc_stream stream, void *dev_addr, uint32_t value);

/* Run fn(arg) on a CUDA thread once prior work on the stream is done. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_launch_host_func(cuipc_stream stream, void (*fn)(void *), void *arg);

/* Peer access between two devices (enabled once; already-enabled is fine). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_enable_peer(int device, int peer);

/* Device memory this process holds through this layer on `device`: live cudaMalloc bytes plus
 * what the copy-out pool has reserved (see cuipc_gpu_allocated_bytes). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_allocated_bytes(int device, uint64_t *out);
/* Whether this process's contexts on `device` are shared through MPS (cudaDevAttrMpsEnabled). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_mps_enabled(int device, bool *out);

CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_mem_info(int device, uint64_t *free_bytes, uint64_t *total_bytes);

#endif
