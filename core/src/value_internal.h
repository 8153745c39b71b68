/* Value-tree operations for the library's own use. */
#ifndef CUIPC_VALUE_INTERNAL_H
#define CUIPC_VALUE_INTERNAL_H

#include "cuipc/value.h"

/* Replace v with a tensor whose device memory came from cuipc_cuda_malloc_async on `stream`:
 * freeing the value frees it stream-ordered on that stream, after the work queued there. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_value_set_stream_ordered_tensor(cuipc_value *v, const cuipc_tensor *t,
                                                   cuipc_stream stream);

/* Replace v with a host tensor whose memory is a large copy-out buffer from
 * cuipc_host_copy_alloc (a mapping of mapped_bytes): freeing the value gives it back there. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_value_set_mapped_host_tensor(cuipc_value *v, const cuipc_tensor *t,
                                                size_t mapped_bytes);

/* A copy of v made in one walk with cuipc_value_visit's: each tensor and proxy node of the copy
 * is given to fn as soon as it is made (fn may replace its payload), in tree order. On failure
 * (fn's, or no memory) the partial copy is freed, the nodes fn had rewritten with it. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_value_clone_visit(const cuipc_value *v, cuipc_value_visit_fn fn, void *ctx,
                                     cuipc_value **out);

#endif
