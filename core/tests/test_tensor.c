/* Tensor descriptors: dtype table, contiguous init, spans of strided/broadcast/empty views and
 * validation of impossible or overflowing layouts. */
#include <string.h>

#include "cuipc/tensor.h"
#include "test_util.h"

static cuipc_tensor make(cuipc_dtype dtype, int32_t ndim, const int64_t *shape,
                         const int64_t *strides) {
    cuipc_tensor t;
    memset(&t, 0, sizeof t);
    t.device = CUIPC_DEVICE_HOST;
    t.dtype = dtype;
    t.ndim = ndim;
    for (int32_t i = 0; i < ndim; i++) {
        t.shape[i] = shape[i];
        t.strides[i] = strides[i];
    }
    return t;
}

static void test_dtypes(void) {
    static const struct {
        cuipc_dtype d;
        const char *name;
        size_t size;
    } expected[] = {
        {CUIPC_DTYPE_BOOL, "bool", 1}, {CUIPC_DTYPE_U8, "u8", 1},     {CUIPC_DTYPE_I8, "i8", 1},
        {CUIPC_DTYPE_I16, "i16", 2},   {CUIPC_DTYPE_U16, "u16", 2},   {CUIPC_DTYPE_I32, "i32", 4},
        {CUIPC_DTYPE_U32, "u32", 4},   {CUIPC_DTYPE_I64, "i64", 8},   {CUIPC_DTYPE_U64, "u64", 8},
        {CUIPC_DTYPE_F16, "f16", 2},   {CUIPC_DTYPE_BF16, "bf16", 2}, {CUIPC_DTYPE_F32, "f32", 4},
        {CUIPC_DTYPE_F64, "f64", 8},
    };
    size_t n = sizeof expected / sizeof expected[0];
    CHECK(n == CUIPC_DTYPE_COUNT_ - 1);
    for (size_t i = 0; i < n; i++) {
        CHECK(cuipc_dtype_size(expected[i].d) == expected[i].size);
        CHECK(strcmp(cuipc_dtype_name(expected[i].d), expected[i].name) == 0);
        CHECK(cuipc_dtype_from_name(expected[i].name) == expected[i].d);
    }
    CHECK(cuipc_dtype_size(CUIPC_DTYPE_INVALID) == 0);
    CHECK(cuipc_dtype_size(CUIPC_DTYPE_COUNT_) == 0);
    CHECK(cuipc_dtype_size((cuipc_dtype)-3) == 0);
    CHECK(strcmp(cuipc_dtype_name(CUIPC_DTYPE_COUNT_), "invalid") == 0);
    CHECK(strcmp(cuipc_dtype_name((cuipc_dtype)99), "invalid") == 0);
    CHECK(cuipc_dtype_from_name("float32") == CUIPC_DTYPE_INVALID);
    CHECK(cuipc_dtype_from_name("F32") == CUIPC_DTYPE_INVALID);
    CHECK(cuipc_dtype_from_name("") == CUIPC_DTYPE_INVALID);
    CHECK(cuipc_dtype_from_name("invalid") == CUIPC_DTYPE_INVALID);
    CHECK(cuipc_dtype_from_name(NULL) == CUIPC_DTYPE_INVALID);
}

static void test_init_contiguous(void) {
    int64_t shape[3] = {2, 3, 4};
    char buf[1];
    cuipc_tensor t;
    CHECK_OK(cuipc_tensor_init(&t, buf, CUIPC_DEVICE_HOST, CUIPC_DTYPE_F32, 3, shape));
    CHECK(t.data == buf && t.device == CUIPC_DEVICE_HOST && t.ndim == 3);
    CHECK(t.strides[0] == 12 && t.strides[1] == 4 && t.strides[2] == 1);
    CHECK(t.shape[3] == 0 && t.strides[3] == 0); /* unused dims are zeroed */
    CHECK(cuipc_tensor_numel(&t) == 24);
    CHECK(cuipc_tensor_span_bytes(&t) == 96);
    CHECK(cuipc_tensor_is_contiguous(&t));
    CHECK_OK(cuipc_tensor_validate(&t));

    /* Scalar: one element, no dims. */
    CHECK_OK(cuipc_tensor_init(&t, buf, 0, CUIPC_DTYPE_F64, 0, NULL));
    CHECK(t.device == 0 && cuipc_tensor_numel(&t) == 1 && cuipc_tensor_span_bytes(&t) == 8);
    CHECK(cuipc_tensor_is_contiguous(&t));

    /* Empty dims keep meaningful strides (as if size 1) and span nothing. */
    int64_t empty[3] = {4, 0, 5};
    CHECK_OK(cuipc_tensor_init(&t, NULL, CUIPC_DEVICE_HOST, CUIPC_DTYPE_BF16, 3, empty));
    CHECK(t.strides[0] == 5 && t.strides[1] == 5 && t.strides[2] == 1);
    CHECK(cuipc_tensor_numel(&t) == 0 && cuipc_tensor_span_bytes(&t) == 0);
    CHECK(cuipc_tensor_is_contiguous(&t));

    /* Rejections leave the output untouched. */
    cuipc_tensor before = t;
    int64_t negative[2] = {3, -1};
    CHECK_STATUS(cuipc_tensor_init(&t, buf, -1, CUIPC_DTYPE_U8, 2, negative),
                 CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "shape[1]") != NULL);
    CHECK(memcmp(&t, &before, sizeof t) == 0);
    CHECK_STATUS(cuipc_tensor_init(&t, buf, -1, CUIPC_DTYPE_U8, 9, shape), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_tensor_init(&t, buf, -1, CUIPC_DTYPE_U8, -1, shape), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_tensor_init(&t, buf, -1, CUIPC_DTYPE_U8, 2, NULL), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_tensor_init(&t, buf, -2, CUIPC_DTYPE_U8, 1, shape), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_tensor_init(&t, buf, -1, CUIPC_DTYPE_INVALID, 1, shape),
                 CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_tensor_init(NULL, buf, -1, CUIPC_DTYPE_U8, 1, shape), CUIPC_ERR_INVALID_ARG);
    /* 2^40 * 2^40 elements: the strides themselves overflow. */
    int64_t huge[3] = {(int64_t)1 << 40, (int64_t)1 << 40, 2};
    CHECK_STATUS(cuipc_tensor_init(&t, buf, -1, CUIPC_DTYPE_U8, 3, huge), CUIPC_ERR_INVALID_ARG);
    /* 2^61 f32 elements fit in int64 strides but need 2^63 bytes. */
    int64_t big[2] = {(int64_t)1 << 31, (int64_t)1 << 30};
    CHECK_STATUS(cuipc_tensor_init(&t, buf, -1, CUIPC_DTYPE_F32, 2, big), CUIPC_ERR_INVALID_ARG);
    CHECK(memcmp(&t, &before, sizeof t) == 0);
}

static void test_strided_spans(void) {
    /* Transpose of a 3x4 f32 matrix: shape [4,3], strides [1,4]; last element at 3*1 + 2*4. */
    cuipc_tensor t = make(CUIPC_DTYPE_F32, 2, (int64_t[]){4, 3}, (int64_t[]){1, 4});
    CHECK_OK(cuipc_tensor_validate(&t));
    CHECK(cuipc_tensor_span_bytes(&t) == (3 + 8 + 1) * 4);
    CHECK(cuipc_tensor_numel(&t) == 12);
    CHECK(!cuipc_tensor_is_contiguous(&t));

    /* Every other element of an i16 row: [3] stride [2] spans 5 elements. */
    t = make(CUIPC_DTYPE_I16, 1, (int64_t[]){3}, (int64_t[]){2});
    CHECK(cuipc_tensor_span_bytes(&t) == 10);
    CHECK(!cuipc_tensor_is_contiguous(&t));

    /* Column slice of a 4x10 u8 matrix: [4,2] strides [10,1]. */
    t = make(CUIPC_DTYPE_U8, 2, (int64_t[]){4, 2}, (int64_t[]){10, 1});
    CHECK(cuipc_tensor_span_bytes(&t) == 3 * 10 + 1 + 1);
    CHECK(!cuipc_tensor_is_contiguous(&t));

    /* Broadcast: stride 0 repeats a row; numel counts repeats, span does not. */
    t = make(CUIPC_DTYPE_F64, 2, (int64_t[]){5, 3}, (int64_t[]){0, 1});
    CHECK_OK(cuipc_tensor_validate(&t));
    CHECK(cuipc_tensor_numel(&t) == 15);
    CHECK(cuipc_tensor_span_bytes(&t) == 24);
    CHECK(!cuipc_tensor_is_contiguous(&t));
    t = make(CUIPC_DTYPE_I32, 3, (int64_t[]){7, 1, 9}, (int64_t[]){0, 0, 0});
    CHECK(cuipc_tensor_span_bytes(&t) == 4);

    /* Size-1 dims may carry any stride and stay contiguous. */
    t = make(CUIPC_DTYPE_U16, 3, (int64_t[]){2, 1, 3}, (int64_t[]){3, 777, 1});
    CHECK(cuipc_tensor_is_contiguous(&t));
    CHECK(cuipc_tensor_span_bytes(&t) == 12);

    /* Empty dim anywhere: nothing addressable, whatever the strides. */
    t = make(CUIPC_DTYPE_F32, 3, (int64_t[]){3, 4, 0}, (int64_t[]){1000, 7, 3});
    CHECK(cuipc_tensor_span_bytes(&t) == 0);
    CHECK(cuipc_tensor_numel(&t) == 0);
    CHECK_OK(cuipc_tensor_validate(&t));

    /* Eight dims of 2, contiguous: 256 elements. */
    int64_t shape8[8], strides8[8];
    for (int i = 7, s = 1; i >= 0; i--, s *= 2) {
        shape8[i] = 2;
        strides8[i] = s;
    }
    t = make(CUIPC_DTYPE_BOOL, 8, shape8, strides8);
    CHECK(cuipc_tensor_span_bytes(&t) == 256);
    CHECK(cuipc_tensor_is_contiguous(&t));
}

static void test_validate_rejects(void) {
    cuipc_tensor good = make(CUIPC_DTYPE_F32, 2, (int64_t[]){4, 3}, (int64_t[]){3, 1});
    CHECK_OK(cuipc_tensor_validate(&good));
    CHECK_STATUS(cuipc_tensor_validate(NULL), CUIPC_ERR_INVALID_ARG);

    cuipc_tensor t = good;
    t.dtype = CUIPC_DTYPE_INVALID;
    CHECK_STATUS(cuipc_tensor_validate(&t), CUIPC_ERR_INVALID_ARG);
    t.dtype = CUIPC_DTYPE_COUNT_;
    CHECK_STATUS(cuipc_tensor_validate(&t), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "dtype 14") != NULL);
    CHECK(cuipc_tensor_span_bytes(&t) == 0);

    t = good;
    t.ndim = 9;
    CHECK_STATUS(cuipc_tensor_validate(&t), CUIPC_ERR_INVALID_ARG);
    CHECK(cuipc_tensor_numel(&t) == 0 && cuipc_tensor_span_bytes(&t) == 0);
    CHECK(!cuipc_tensor_is_contiguous(&t));
    t.ndim = -1;
    CHECK_STATUS(cuipc_tensor_validate(&t), CUIPC_ERR_INVALID_ARG);

    t = good;
    t.shape[1] = -3;
    CHECK_STATUS(cuipc_tensor_validate(&t), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "shape[1] = -3") != NULL);
    t = good;
    t.strides[0] = -1;
    CHECK_STATUS(cuipc_tensor_validate(&t), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "strides[0] = -1") != NULL);
    CHECK(cuipc_tensor_span_bytes(&t) == 0);

    /* Span overflows 63 bits: (2^61 - 1) * 8 + 8 = 2^64 bytes. */
    t = make(CUIPC_DTYPE_F64, 1, (int64_t[]){(int64_t)1 << 61}, (int64_t[]){1});
    CHECK_STATUS(cuipc_tensor_validate(&t), CUIPC_ERR_INVALID_ARG);
    CHECK(cuipc_tensor_span_bytes(&t) == UINT64_MAX); /* saturates, never wraps */
    /* Just under the limit: 2^60 f64 elements = 2^63 bytes is one too many... */
    t = make(CUIPC_DTYPE_F64, 1, (int64_t[]){(int64_t)1 << 60}, (int64_t[]){1});
    CHECK_STATUS(cuipc_tensor_validate(&t), CUIPC_ERR_INVALID_ARG);
    /* ...and 2^60 - 1 of them fits. */
    t = make(CUIPC_DTYPE_F64, 1, (int64_t[]){((int64_t)1 << 60) - 1}, (int64_t[]){1});
    CHECK_OK(cuipc_tensor_validate(&t));
    CHECK(cuipc_tensor_span_bytes(&t) == (((uint64_t)1 << 60) - 1) * 8);
    /* Step product overflows 64 bits before any addition. */
    t = make(CUIPC_DTYPE_U8, 2, (int64_t[]){INT64_MAX, 2}, (int64_t[]){INT64_MAX, 1});
    CHECK_STATUS(cuipc_tensor_validate(&t), CUIPC_ERR_INVALID_ARG);
    CHECK(cuipc_tensor_span_bytes(&t) == UINT64_MAX);
    /* Sum of steps overflows though each step fits. */
    t = make(CUIPC_DTYPE_U8, 3, (int64_t[]){3, 3, 3},
             (int64_t[]){(int64_t)1 << 62, (int64_t)1 << 62, (int64_t)1 << 62});
    CHECK_STATUS(cuipc_tensor_validate(&t), CUIPC_ERR_INVALID_ARG);
    /* Broadcast with a huge repeat: tiny span, element count beyond 63 bits. */
    t = make(CUIPC_DTYPE_U8, 2, (int64_t[]){(int64_t)1 << 40, (int64_t)1 << 40}, (int64_t[]){0, 0});
    CHECK(cuipc_tensor_span_bytes(&t) == 1);
    CHECK(cuipc_tensor_numel(&t) == UINT64_MAX);
    CHECK_STATUS(cuipc_tensor_validate(&t), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "element count") != NULL);
}

int main(void) {
    test_dtypes();
    test_init_contiguous();
    test_strided_spans();
    test_validate_rejects();
    return cuipc_test_finish("test_tensor");
}
