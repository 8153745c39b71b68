/* Value-tree operations for the library's own use. */
#ifndef CUIPC_VALUE_INTERNAL_H
#define CUIPC_VALUE_INTERNAL_H

#include "cuipc/value.h"

/* Replace v with a tensor whose device memory came from cuipc_cuda_malloc_async on `stream`:
 * freeing the value frees it stream-ordered on that stream, after the work queued there. */
cuipc_status cuipc_value_set_stream_ordered_tensor(cuipc_value *v, const cuipc_tensor *t,
                                                   cuipc_stream stream);

/* Replace v with a host tensor whose memory is a large copy-out buffer from
 * cuipc_host_copy_alloc (a mapping of mapped_bytes): freeing the value gives it back there. */
cuipc_status cuipc_value_set_mapped_host_tensor(cuipc_value *v, const cuipc_tensor *t,
                                                size_t mapped_bytes);

#endif
