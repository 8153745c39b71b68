/* Tensor descriptors: dtype table, contiguous initialisation, validation and byte spans. All
 * arithmetic is overflow-checked because descriptors also arrive from other processes. */
#include <string.h>

#include "cuipc/tensor.h"
#include "error_internal.h"

#define CUIPC_SPAN_LIMIT ((uint64_t)INT64_MAX) /* spans must fit in 63 bits */

static const struct {
    const char *name;
    size_t size;
} dtype_table[CUIPC_DTYPE_COUNT_] = {
    [CUIPC_DTYPE_INVALID] = {"invalid", 0}, [CUIPC_DTYPE_BOOL] = {"bool", 1},
    [CUIPC_DTYPE_U8] = {"u8", 1},           [CUIPC_DTYPE_I8] = {"i8", 1},
    [CUIPC_DTYPE_I16] = {"i16", 2},         [CUIPC_DTYPE_U16] = {"u16", 2},
    [CUIPC_DTYPE_I32] = {"i32", 4},         [CUIPC_DTYPE_U32] = {"u32", 4},
    [CUIPC_DTYPE_I64] = {"i64", 8},         [CUIPC_DTYPE_U64] = {"u64", 8},
    [CUIPC_DTYPE_F16] = {"f16", 2},         [CUIPC_DTYPE_BF16] = {"bf16", 2},
    [CUIPC_DTYPE_F32] = {"f32", 4},         [CUIPC_DTYPE_F64] = {"f64", 8},
};

static bool dtype_valid(cuipc_dtype d) {
    return (int)d > (int)CUIPC_DTYPE_INVALID && (int)d < (int)CUIPC_DTYPE_COUNT_;
}

size_t cuipc_dtype_size(cuipc_dtype d) {
    return dtype_valid(d) ? dtype_table[d].size : 0;
}

const char *cuipc_dtype_name(cuipc_dtype d) {
    return dtype_valid(d) ? dtype_table[d].name : "invalid";
}

cuipc_dtype cuipc_dtype_from_name(const char *name) {
    if (!name)
        return CUIPC_DTYPE_INVALID;
    for (int d = CUIPC_DTYPE_INVALID + 1; d < CUIPC_DTYPE_COUNT_; d++)
        if (strcmp(name, dtype_table[d].name) == 0)
            return (cuipc_dtype)d;
    return CUIPC_DTYPE_INVALID;
}

/* Largest element offset (in elements) reachable from data, or false on overflow. Only called
 * with every shape > 0 and strides >= 0. */
static bool last_element_offset(const cuipc_tensor *t, uint64_t *out) {
    uint64_t offset = 0;
    for (int32_t i = 0; i < t->ndim; i++) {
        uint64_t step;
        if (__builtin_mul_overflow((uint64_t)(t->shape[i] - 1), (uint64_t)t->strides[i], &step) ||
            __builtin_add_overflow(offset, step, &offset))
            return false;
    }
    *out = offset;
    return true;
}

static bool has_empty_dim(const cuipc_tensor *t) {
    for (int32_t i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0)
            return true;
    return false;
}

/* Span in bytes, false when it does not fit in 63 bits. Assumes dtype/ndim/signs were checked. */
static bool checked_span(const cuipc_tensor *t, uint64_t *out) {
    if (has_empty_dim(t)) {
        *out = 0;
        return true;
    }
    uint64_t last, elements, bytes;
    if (!last_element_offset(t, &last) || __builtin_add_overflow(last, 1, &elements) ||
        __builtin_mul_overflow(elements, (uint64_t)cuipc_dtype_size(t->dtype), &bytes) ||
        bytes > CUIPC_SPAN_LIMIT)
        return false;
    *out = bytes;
    return true;
}

static bool checked_numel(const cuipc_tensor *t, uint64_t *out) {
    uint64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++)
        if (__builtin_mul_overflow(n, (uint64_t)t->shape[i], &n))
            return false;
    *out = n;
    return true;
}

cuipc_status cuipc_tensor_validate(const cuipc_tensor *t) {
    if (!t)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "tensor is NULL");
    if (!dtype_valid(t->dtype))
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "dtype %d out of range 1..%d", (int)t->dtype,
                          CUIPC_DTYPE_COUNT_ - 1);
    if (t->ndim < 0 || t->ndim > CUIPC_MAX_DIMS)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "ndim %d out of range 0..%d", (int)t->ndim,
                          CUIPC_MAX_DIMS);
    for (int32_t i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0)
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "shape[%d] = %lld is negative", (int)i,
                              (long long)t->shape[i]);
        if (t->strides[i] < 0)
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "strides[%d] = %lld is negative", (int)i,
                              (long long)t->strides[i]);
    }
    uint64_t span, numel;
    if (!checked_span(t, &span))
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "byte span of a %d-dim %s tensor overflows 63 bits", (int)t->ndim,
                          cuipc_dtype_name(t->dtype));
    /* Broadcast (stride 0) views can have a small span but a huge element count. */
    if (!checked_numel(t, &numel) || numel > CUIPC_SPAN_LIMIT)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "element count of a %d-dim tensor overflows 63 bits", (int)t->ndim);
    return CUIPC_OK;
}

cuipc_status cuipc_tensor_init(cuipc_tensor *t, void *data, int32_t device, cuipc_dtype dtype,
                               int32_t ndim, const int64_t *shape) {
    if (!t)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "tensor is NULL");
    if (ndim < 0 || ndim > CUIPC_MAX_DIMS)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "ndim %d out of range 0..%d", (int)ndim,
                          CUIPC_MAX_DIMS);
    if (ndim > 0 && !shape)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "shape is NULL for ndim %d", (int)ndim);
    if (device < CUIPC_DEVICE_HOST)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "device %d is neither host (-1) nor an ordinal",
                          (int)device);
    cuipc_tensor tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.data = data;
    tmp.device = device;
    tmp.dtype = dtype;
    tmp.ndim = ndim;
    /* Row-major strides; empty dims count as 1 so strides stay meaningful (as torch does). */
    int64_t stride = 1;
    for (int32_t i = ndim - 1; i >= 0; i--) {
        if (shape[i] < 0)
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "shape[%d] = %lld is negative", (int)i,
                              (long long)shape[i]);
        tmp.shape[i] = shape[i];
        tmp.strides[i] = stride;
        if (__builtin_mul_overflow(stride, shape[i] > 1 ? shape[i] : 1, &stride))
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "contiguous strides overflow at dim %d",
                              (int)i);
    }
    CUIPC_TRY(cuipc_tensor_validate(&tmp));
    if (!data && cuipc_tensor_span_bytes(&tmp) > 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "data is NULL for a tensor of %llu bytes",
                          (unsigned long long)cuipc_tensor_span_bytes(&tmp));
    *t = tmp;
    return CUIPC_OK;
}

uint64_t cuipc_tensor_numel(const cuipc_tensor *t) {
    if (!t || t->ndim < 0 || t->ndim > CUIPC_MAX_DIMS)
        return 0;
    uint64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++) {
        if (t->shape[i] <= 0)
            return 0;
        if (__builtin_mul_overflow(n, (uint64_t)t->shape[i], &n))
            return UINT64_MAX; /* saturate: validate() rejects such tensors */
    }
    return n;
}

uint64_t cuipc_tensor_span_bytes(const cuipc_tensor *t) {
    if (!t || !dtype_valid(t->dtype) || t->ndim < 0 || t->ndim > CUIPC_MAX_DIMS)
        return 0;
    for (int32_t i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0 || t->strides[i] < 0)
            return 0;
    uint64_t span;
    /* Saturate rather than wrap so a caller that skipped validate() never under-allocates. */
    return checked_span(t, &span) ? span : UINT64_MAX;
}

bool cuipc_tensor_is_contiguous(const cuipc_tensor *t) {
    if (!t || t->ndim < 0 || t->ndim > CUIPC_MAX_DIMS)
        return false;
    if (has_empty_dim(t))
        return true;
    int64_t expected = 1;
    for (int32_t i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] < 0)
            return false;
        /* A dim of size 1 is never stepped over, so its stride does not matter. */
        if (t->shape[i] != 1 && t->strides[i] != expected)
            return false;
        if (__builtin_mul_overflow(expected, t->shape[i], &expected))
            return false;
    }
    return true;
}
