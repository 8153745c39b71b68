/* Nested values (the reference's mm_inputs): dict / list / scalar / string / bytes / tensor /
 * proxy trees. wrap replaces tensors by proxies; unwrap turns proxies back into tensors. */
#ifndef CUIPC_VALUE_H
#define CUIPC_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuipc/proxy.h"
#include "cuipc/status.h"
#include "cuipc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cuipc_value_kind {
    CUIPC_VALUE_NULL = 0,
    CUIPC_VALUE_BOOL,
    CUIPC_VALUE_INT,
    CUIPC_VALUE_FLOAT,
    CUIPC_VALUE_STRING,
    CUIPC_VALUE_BYTES,
    CUIPC_VALUE_LIST,
    CUIPC_VALUE_DICT,
    CUIPC_VALUE_TENSOR,
    CUIPC_VALUE_PROXY,
} cuipc_value_kind;

/* Who frees a tensor value's memory when the value is freed. */
typedef enum cuipc_tensor_owner {
    CUIPC_OWNER_NONE = 0, /* caller's memory: never freed by cuipc */
    CUIPC_OWNER_HOST,     /* malloc'd by cuipc (copy-out to host) */
    CUIPC_OWNER_DEVICE,   /* device memory cuipc frees. A copy-out buffer is stream-ordered on
                           * the unwrap stream: allocated there and freed there when the value is
                           * freed, so work on other streams must be ordered before the free.
                           * Memory given with this owner through the API is cudaFree'd. */
    CUIPC_OWNER_BORROW, /* points into a pool or IPC mapping; valid until the message is released */
} cuipc_tensor_owner;

typedef struct cuipc_value cuipc_value;

/* Limits enforced by the builders and the decoder. */
#define CUIPC_VALUE_MAX_DEPTH 64
#define CUIPC_VALUE_MAX_STRING (1u << 20)

/* Builders return NULL only when out of memory (the error message says so). */
cuipc_value *cuipc_value_null(void);
cuipc_value *cuipc_value_bool(bool b);
cuipc_value *cuipc_value_int(int64_t i);
cuipc_value *cuipc_value_float(double f);
cuipc_value *cuipc_value_string(const char *s);          /* copied */
cuipc_value *cuipc_value_bytes(const void *p, size_t n); /* copied */
cuipc_value *cuipc_value_list(void);
cuipc_value *cuipc_value_dict(void);
cuipc_value *cuipc_value_tensor(const cuipc_tensor *t, cuipc_tensor_owner owner);
cuipc_value *cuipc_value_proxy(const cuipc_proxy *p);

/* Containers take ownership of item, also on failure (it is freed then). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_list_append(cuipc_value *list, cuipc_value *item);
CUIPC_WARN_UNUSED
cuipc_status cuipc_dict_set(cuipc_value *dict, const char *key, cuipc_value *item); /* replaces */

cuipc_value_kind cuipc_value_kind_of(const cuipc_value *v);
const char *cuipc_value_kind_name(cuipc_value_kind k);
bool cuipc_value_as_bool(const cuipc_value *v);
int64_t cuipc_value_as_int(const cuipc_value *v);
double cuipc_value_as_float(const cuipc_value *v);
const char *cuipc_value_as_string(const cuipc_value *v);
const void *cuipc_value_as_bytes(const cuipc_value *v, size_t *n);
size_t cuipc_value_len(const cuipc_value *v); /* list or dict entries */
cuipc_value *cuipc_list_get(const cuipc_value *list, size_t i);
const char *cuipc_dict_key_at(const cuipc_value *dict, size_t i);
cuipc_value *cuipc_dict_value_at(const cuipc_value *dict, size_t i);
cuipc_value *cuipc_dict_get(const cuipc_value *dict, const char *key);
const cuipc_tensor *cuipc_value_as_tensor(const cuipc_value *v);
cuipc_tensor_owner cuipc_value_tensor_owner(const cuipc_value *v);
const cuipc_proxy *cuipc_value_as_proxy(const cuipc_value *v);

/* Replace the node's payload in place (used by wrap/unwrap to swap tensor <-> proxy). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_value_set_tensor(cuipc_value *v, const cuipc_tensor *t,
                                    cuipc_tensor_owner owner);
CUIPC_WARN_UNUSED
cuipc_status cuipc_value_set_proxy(cuipc_value *v, const cuipc_proxy *p);

/* Deep copy; tensors are copied as descriptors with owner NONE (data is not duplicated). */
cuipc_value *cuipc_value_clone(const cuipc_value *v);

/* Free the tree, and the memory of tensors it owns (HOST/DEVICE). Safe on NULL. Freeing a
 * tree twice, or a node that belongs to a tree (dict or list entry), is undefined: not detected. */
void cuipc_value_free(cuipc_value *v);

/* Depth-first visit of every tensor and proxy node; stop early on a non-OK return. */
typedef cuipc_status (*cuipc_value_visit_fn)(cuipc_value *node, void *ctx);
CUIPC_WARN_UNUSED
cuipc_status cuipc_value_visit(cuipc_value *root, cuipc_value_visit_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
