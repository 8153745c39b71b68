/* Value-tree operations for the library's own use. */
#ifndef CUIPC_VALUE_INTERNAL_H
#define CUIPC_VALUE_INTERNAL_H

#include "cuipc/value.h"

/* Replace v with a tensor whose device memory came from cuipc_cuda_malloc_async on `stream`:
 * freeing the value frees it stream-ordered on that stream, after the work queued there. */
cuipc_status cuipc_value_set_stream_ordered_tensor(cuipc_value *v, const cuipc_tensor *t,
                                                   void *stream);

#endif
