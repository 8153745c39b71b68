/* Wrap of one tensor into a proxy (wrap.c), for the message walk of send.c. */
#ifndef CUIPC_WRAP_H
#define CUIPC_WRAP_H

#include "pool_internal.h"
#include "transport_internal.h"

typedef struct cuipc_wrap_ctx {
    cuipc_producer *p;
    cuipc_stream stream; /* the caller's: copies and "ready" are ordered on it */
    uint64_t mask;       /* the consumers every chunk waits for */
    uint64_t bytes;      /* tensor bytes wrapped so far */
    uint64_t fallbacks;  /* tensors staged through the host pool because the GPU pool was full */
    cuipc_pool *pool;    /* the last tensor's chunk is in this pool; NULL: it took none */
    uint32_t own_host, own_gpu;   /* chunks the message took so far from each pool */
    uint32_t held_host, held_gpu; /* its tensors in buffers of each pool, taken last */
    cuipc_pool_wait full_wait; /* how an allocation may wait for room (the policy's, or a slice) */
} cuipc_wrap_ctx;

/* Tensor t as a proxy in *x: a pool chunk (copied in, or a held buffer published as it is), an
 * exported allocation (cuda_ipc), or a layout alone (empty). On failure nothing stays allocated
 * for t (and *x means nothing). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_wrap_tensor(cuipc_wrap_ctx *w, const cuipc_tensor *t, cuipc_proxy *x);

#endif
