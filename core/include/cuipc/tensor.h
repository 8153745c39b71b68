/* Tensor descriptors: a typed, strided view of memory on the host or on one CUDA device. */
#ifndef CUIPC_TENSOR_H
#define CUIPC_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuipc/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUIPC_MAX_DIMS 8
#define CUIPC_DEVICE_HOST (-1)

typedef enum cuipc_dtype {
    CUIPC_DTYPE_INVALID = 0,
    CUIPC_DTYPE_BOOL,
    CUIPC_DTYPE_U8,
    CUIPC_DTYPE_I8,
    CUIPC_DTYPE_I16,
    CUIPC_DTYPE_U16,
    CUIPC_DTYPE_I32,
    CUIPC_DTYPE_U32,
    CUIPC_DTYPE_I64,
    CUIPC_DTYPE_U64,
    CUIPC_DTYPE_F16,
    CUIPC_DTYPE_BF16,
    CUIPC_DTYPE_F32,
    CUIPC_DTYPE_F64,
    CUIPC_DTYPE_COUNT_
} cuipc_dtype;

/* data points at element [0,...,0]; strides are in elements and must be >= 0. */
typedef struct cuipc_tensor {
    void *data;
    int32_t device; /* CUIPC_DEVICE_HOST or a CUDA ordinal */
    cuipc_dtype dtype;
    int32_t ndim;
    int64_t shape[CUIPC_MAX_DIMS];
    int64_t strides[CUIPC_MAX_DIMS];
} cuipc_tensor;

size_t cuipc_dtype_size(cuipc_dtype d);      /* 0 for an invalid dtype */
const char *cuipc_dtype_name(cuipc_dtype d); /* "f32", "bf16", ... ; "invalid" */
cuipc_dtype cuipc_dtype_from_name(const char *name);

/* Fill a contiguous row-major descriptor. data may be NULL only when the tensor spans no
 * bytes (an empty dim); otherwise it is refused here, and at send. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_tensor_init(cuipc_tensor *t, void *data, int32_t device, cuipc_dtype dtype,
                               int32_t ndim, const int64_t *shape);

/* Check dtype, ndim, shape >= 0, strides >= 0 and that the span fits in 63 bits. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_tensor_validate(const cuipc_tensor *t);

/* Number of elements (product of shape). */
uint64_t cuipc_tensor_numel(const cuipc_tensor *t);

/* Bytes from data to one past the last addressable element: what must be copied so that the
 * view (with its strides) stays valid. 0 for an empty tensor. */
uint64_t cuipc_tensor_span_bytes(const cuipc_tensor *t);

bool cuipc_tensor_is_contiguous(const cuipc_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
