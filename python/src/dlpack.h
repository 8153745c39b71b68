/* The DLPack ABI (dlpack.h v1.0, Apache-2.0 data layout), declared here so the extension needs no
 * third-party header: the legacy DLManagedTensor and the versioned DLManagedTensorVersioned; and
 * the C exchange table of DLPack 1.2 (a framework's __dlpack_c_exchange_api__, torch 2.10 on).
 * What cuipc exports stays version 1.0: it sets nothing 1.1 or later added. */
#ifndef CUIPC_PY_DLPACK_H
#define CUIPC_PY_DLPACK_H

#include <stdint.h>

enum { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13 };
enum { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4, kDLBool = 6 };

#define DLPACK_MAJOR_VERSION 1
#define DLPACK_MINOR_VERSION 0
#define DLPACK_FLAG_BITMASK_READ_ONLY (1ull << 0)

typedef struct {
    int32_t device_type;
    int32_t device_id;
} DLDevice;

typedef struct {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
} DLDataType;

typedef struct {
    void *data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;
    int64_t *strides;
    uint64_t byte_offset;
} DLTensor;

typedef struct DLManagedTensor {
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

typedef struct {
    uint32_t major;
    uint32_t minor;
} DLPackVersion;

typedef struct DLManagedTensorVersioned {
    DLPackVersion version;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensorVersioned *self);
    uint64_t flags;
    DLTensor dl_tensor;
} DLManagedTensorVersioned;

/* ---- The C exchange table (DLPack 1.2). A framework puts a capsule named
 * "dlpack_exchange_api" on its tensor type as __dlpack_c_exchange_api__; the capsule points at
 * this table, which lives as long as the process. None of its functions synchronises streams:
 * the caller orders its work after current_work_stream itself. Each returns 0, or -1 with a
 * Python exception set (the GIL held). */
typedef struct DLPackExchangeAPIHeader {
    DLPackVersion version; /* the table's layout: usable where major is the one known here */
    struct DLPackExchangeAPIHeader *prev_api; /* an older table, or NULL */
} DLPackExchangeAPIHeader;

typedef struct {
    DLPackExchangeAPIHeader header;
    /* A new tensor of the framework's, shaped like prototype (not used here). */
    int (*managed_tensor_allocator)(DLTensor *prototype, DLManagedTensorVersioned **out,
                                    void *error_ctx,
                                    void (*set_error)(void *error_ctx, const char *kind,
                                                      const char *message));
    /* An owning DLPack tensor of a framework tensor object (not used here). */
    int (*managed_tensor_from_py_object_no_sync)(void *py_object, DLManagedTensorVersioned **out);
    /* A framework tensor object over tensor, which it takes over (its deleter is the
     * framework's to call). */
    int (*managed_tensor_to_py_object_no_sync)(DLManagedTensorVersioned *tensor,
                                               void **out_py_object);
    /* The layout of a framework tensor object, without ownership: shape and strides point into
     * the object, valid while it lives unchanged. May be NULL. */
    int (*dltensor_from_py_object_no_sync)(void *py_object, DLTensor *out);
    /* The framework's current stream on a device (NULL: the legacy default stream). */
    int (*current_work_stream)(int32_t device_type, int32_t device_id, void **out_stream);
} DLPackExchangeAPI;

#endif
