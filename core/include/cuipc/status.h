/* Error codes and the thread-local error message every cuipc function leaves behind. */
#ifndef CUIPC_STATUS_H
#define CUIPC_STATUS_H

#include "cuipc/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cuipc_status {
    CUIPC_OK = 0,
    CUIPC_ERR_INVALID_ARG,  /* the caller passed something impossible */
    CUIPC_ERR_NO_MEMORY,    /* host allocation failed */
    CUIPC_ERR_POOL_FULL,    /* no chunk (or no sync slot) free for this size */
    CUIPC_ERR_TIMEOUT,      /* a bounded wait ran out */
    CUIPC_ERR_STALE,        /* generation mismatch: the chunk was already recycled */
    CUIPC_ERR_DUPLICATE,    /* released, adopted or sent a second time */
    CUIPC_ERR_CORRUPT,      /* malformed or forged encoded data */
    CUIPC_ERR_UNKNOWN_POOL, /* a proxy names a pool this process does not know */
    CUIPC_ERR_CUDA,         /* a CUDA call failed */
    CUIPC_ERR_NO_GPU,       /* the operation needs a GPU and none is usable */
    CUIPC_ERR_SYSTEM,       /* an OS call failed (errno in the message) */
    CUIPC_ERR_PEER_DEAD,    /* the process on the other side exited */
    CUIPC_ERR_CLOSED,       /* the channel or pool was shut down */
    CUIPC_ERR_UNSUPPORTED,  /* valid request this build or device cannot do */
    CUIPC_ERR_VERSION,      /* wire or shared-memory layout version mismatch */
    CUIPC_ERR_PERMISSION,   /* the peer's credentials are not among those allowed */
    CUIPC_STATUS_COUNT_
} cuipc_status;

/* Stable short name, e.g. "POOL_FULL". */
const char *cuipc_status_name(cuipc_status s);

/* Message of the last failure on this thread: "function: what went wrong". Empty if none. */
const char *cuipc_last_error(void);

/* Forget the last message (tests use this between cases). */
void cuipc_clear_error(void);

/* Drop a status on purpose (a clean-up whose failure changes nothing, after a first failure that
 * is the one reported); say why beside the call. */
static inline void cuipc_status_ignore(cuipc_status s) {
    (void)s;
}

#ifdef __cplusplus
}
#endif
#endif
