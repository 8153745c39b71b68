/* Wrap of one tensor into a proxy (wrap.c), for the message walk of send.c. */
#ifndef CUIPC_WRAP_H
#define CUIPC_WRAP_H

#include "transport_internal.h"

typedef struct cuipc_wrap_ctx {
    cuipc_producer *p;
    cuipc_stream stream; /* the caller's: copies and "ready" are ordered on it */
    uint64_t mask;       /* the consumers every chunk waits for */
    uint64_t bytes;      /* tensor bytes wrapped so far */
    uint64_t fallbacks;  /* tensors staged through the host pool because the GPU pool was full */
    cuipc_pool *pool;    /* the last tensor's chunk is in this pool; NULL: it took none */
    uint32_t own_host, own_gpu; /* chunks the message took so far from each pool */
    int64_t full_wait_ns;       /* how long an allocation may wait for room (policy, capped) */
} cuipc_wrap_ctx;

/* Tensor t as a proxy in *x: a pool chunk (copied in, or a held buffer published as it is), an
 * exported allocation (cuda_ipc), or a layout alone (empty). On failure nothing stays allocated
 * for t (and *x means nothing). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_wrap_tensor(cuipc_wrap_ctx *w, const cuipc_tensor *t, cuipc_proxy *x);

#endif
