/* Proxies: what travels in place of a tensor. A pool proxy names a slice of a recycled pool
 * (host or GPU memory) and the sync slot that tracks it; an IPC proxy names a tensor's own CUDA
 * allocation (simple cuda_ipc mode). Both carry the tensor's layout. */
#ifndef CUIPC_PROXY_H
#define CUIPC_PROXY_H

#include <stdint.h>

#include "cuipc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUIPC_IPC_HANDLE_BYTES 64

typedef enum cuipc_proxy_kind {
    CUIPC_PROXY_POOL = 1, /* slice of a cuipc pool (default or cuda_ipc_pool mode) */
    CUIPC_PROXY_IPC = 2,  /* a tensor's own cudaMalloc allocation (cuda_ipc mode) */
} cuipc_proxy_kind;

typedef enum cuipc_memory_kind {
    CUIPC_MEMORY_HOST = 1, /* shared host memory (memfd), pinned when a GPU is present */
    CUIPC_MEMORY_CUDA = 2, /* one cudaMalloc workspace exported once */
    /* A pool for planning: offsets only, no backing memory. Never on the wire: the codec and
     * the consumer accept HOST and CUDA alone. */
    CUIPC_MEMORY_VIRTUAL = 3,
} cuipc_memory_kind;

/* Layout of the tensor; data pointers are never sent. */
typedef struct cuipc_tensor_layout {
    cuipc_dtype dtype;
    int32_t ndim;
    int32_t src_device; /* where the producer's tensor lived (CUIPC_DEVICE_HOST or ordinal) */
    int64_t shape[CUIPC_MAX_DIMS];
    int64_t strides[CUIPC_MAX_DIMS];
} cuipc_tensor_layout;

typedef struct cuipc_proxy {
    cuipc_proxy_kind kind;
    cuipc_tensor_layout layout;
    uint64_t nbytes; /* span bytes of the layout; checked against it on decode */
    union {
        struct {
            uint64_t pool_id; /* random id of the pool, checked by the receiver */
            cuipc_memory_kind memory;
            int32_t pool_device; /* device of a CUDA pool, CUIPC_DEVICE_HOST otherwise */
            uint32_t slot;       /* sync-table slot */
            uint32_t generation; /* slot generation at publish time */
            uint64_t offset;     /* byte offset of the slice in the pool */
        } pool;
        struct {
            uint8_t handle[CUIPC_IPC_HANDLE_BYTES]; /* cudaIpcMemHandle_t of the allocation */
            uint64_t export_id;   /* producer-unique id of the exported allocation */
            uint64_t alloc_size;  /* size of the whole allocation */
            uint64_t offset;      /* byte offset of the tensor inside it */
            int32_t device;       /* producer's device ordinal */
            uint64_t producer_id; /* random id of the producer that exported it */
        } ipc;
    } u;
} cuipc_proxy;

#ifdef __cplusplus
}
#endif
#endif
