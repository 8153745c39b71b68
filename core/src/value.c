/* Value trees: ordered dicts, lists, scalars, strings, bytes, tensors and proxies.
 *
 * Every node knows its parent so that containers can refuse cycles and nodes that already live in
 * another container (either would mean a double free). Each node caches the height of its
 * subtree as an upper bound (appends raise it, replacements never lower it); when the bound says
 * "too deep" the exact height is recomputed, so the depth limit never rejects a valid tree.
 * Dicts keep insertion order in an entry array and add a hash index once they pass
 * CUIPC_DICT_INDEX_MIN entries, so building a dict of n keys costs O(n). */
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"
#include "cuipc/value.h"
#include "error_internal.h"
#include "host_copy.h"
#include "value_internal.h"

#define CUIPC_DICT_INDEX_MIN 16 /* below this a linear scan beats hashing */

typedef struct cuipc_dict_entry {
    char *key;
    size_t key_len;
    uint64_t hash;
    cuipc_value *value;
} cuipc_dict_entry;

struct cuipc_value {
    cuipc_value_kind kind;
    uint32_t height; /* >= levels of this subtree (1 for a leaf) */
    cuipc_value *parent;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            char *data; /* strings are NUL terminated */
            size_t len;
        } str;
        struct {
            cuipc_value **items;
            size_t len, cap;
        } list;
        struct {
            cuipc_dict_entry *entries;
            size_t len, cap;
            uint32_t *index;  /* open addressing: entry position + 1, 0 = empty */
            size_t index_cap; /* power of two, or 0 while the dict is small */
        } dict;
        struct {
            cuipc_tensor *desc; /* out of line: keeps every node small */
            cuipc_tensor_owner owner;
            bool stream_ordered; /* device memory from cuipc_cuda_malloc_async on `stream` */
            cuipc_stream stream;
            size_t mapped_bytes; /* host memory: an anonymous mapping of this size (0: malloc) */
        } tensor;
        cuipc_proxy *proxy;
    } u;
};

static const char *const kind_names[] = {
    [CUIPC_VALUE_NULL] = "null",   [CUIPC_VALUE_BOOL] = "bool",     [CUIPC_VALUE_INT] = "int",
    [CUIPC_VALUE_FLOAT] = "float", [CUIPC_VALUE_STRING] = "string", [CUIPC_VALUE_BYTES] = "bytes",
    [CUIPC_VALUE_LIST] = "list",   [CUIPC_VALUE_DICT] = "dict",     [CUIPC_VALUE_TENSOR] = "tensor",
    [CUIPC_VALUE_PROXY] = "proxy",
};

const char *cuipc_value_kind_name(cuipc_value_kind k) {
    if ((unsigned)k >= sizeof kind_names / sizeof kind_names[0])
        return "unknown";
    return kind_names[k];
}

/* ---- construction ---------------------------------------------------------------------- */

static cuipc_value *new_node(cuipc_value_kind kind) {
    cuipc_value *v = calloc(1, sizeof *v);
    if (!v) {
        CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "out of memory for a %s value",
                   cuipc_value_kind_name(kind));
        return NULL;
    }
    v->kind = kind;
    v->height = 1;
    return v;
}

cuipc_value *cuipc_value_null(void) {
    return new_node(CUIPC_VALUE_NULL);
}

cuipc_value *cuipc_value_bool(bool b) {
    cuipc_value *v = new_node(CUIPC_VALUE_BOOL);
    if (v)
        v->u.b = b;
    return v;
}

cuipc_value *cuipc_value_int(int64_t i) {
    cuipc_value *v = new_node(CUIPC_VALUE_INT);
    if (v)
        v->u.i = i;
    return v;
}

cuipc_value *cuipc_value_float(double f) {
    cuipc_value *v = new_node(CUIPC_VALUE_FLOAT);
    if (v)
        v->u.f = f;
    return v;
}

/* Copy n bytes plus a terminating NUL (harmless for bytes, required for strings). */
static cuipc_value *new_blob(cuipc_value_kind kind, const void *p, size_t n) {
    cuipc_value *v = new_node(kind);
    if (!v)
        return NULL;
    v->u.str.data = malloc(n + 1);
    if (!v->u.str.data) {
        free(v);
        CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "out of memory for a %zu-byte %s", n,
                   cuipc_value_kind_name(kind));
        return NULL;
    }
    if (n)
        memcpy(v->u.str.data, p, n);
    v->u.str.data[n] = '\0';
    v->u.str.len = n;
    return v;
}

cuipc_value *cuipc_value_string(const char *s) {
    if (!s) {
        CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "string is NULL");
        return NULL;
    }
    size_t n = strnlen(s, (size_t)CUIPC_VALUE_MAX_STRING + 1);
    if (n > CUIPC_VALUE_MAX_STRING) {
        CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "string longer than the %u-byte limit",
                   CUIPC_VALUE_MAX_STRING);
        return NULL;
    }
    return new_blob(CUIPC_VALUE_STRING, s, n);
}

cuipc_value *cuipc_value_bytes(const void *p, size_t n) {
    if (!p && n) {
        CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "bytes pointer is NULL for %zu bytes", n);
        return NULL;
    }
    if (n == SIZE_MAX) {
        CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "bytes length %zu is too large", n);
        return NULL;
    }
    return new_blob(CUIPC_VALUE_BYTES, p, n);
}

cuipc_value *cuipc_value_list(void) {
    return new_node(CUIPC_VALUE_LIST);
}

cuipc_value *cuipc_value_dict(void) {
    return new_node(CUIPC_VALUE_DICT);
}

static bool owner_valid(cuipc_tensor_owner owner) {
    return owner == CUIPC_OWNER_NONE || owner == CUIPC_OWNER_HOST || owner == CUIPC_OWNER_DEVICE ||
           owner == CUIPC_OWNER_BORROW;
}

/* Checked copy of a tensor descriptor into fresh memory. */
static cuipc_status copy_tensor(const cuipc_tensor *t, cuipc_tensor_owner owner,
                                cuipc_tensor **out) {
    if (!t)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "tensor is NULL");
    if (!owner_valid(owner))
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "tensor owner %d is not a cuipc_tensor_owner",
                          (int)owner);
    CUIPC_TRY(cuipc_tensor_validate(t));
    cuipc_tensor *desc = malloc(sizeof *desc);
    if (!desc)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "out of memory for a tensor descriptor");
    *desc = *t;
    *out = desc;
    return CUIPC_OK;
}

static cuipc_status copy_proxy(const cuipc_proxy *p, cuipc_proxy **out) {
    if (!p)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "proxy is NULL");
    cuipc_proxy *copy = malloc(sizeof *copy);
    if (!copy)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "out of memory for a proxy");
    *copy = *p;
    *out = copy;
    return CUIPC_OK;
}

cuipc_value *cuipc_value_tensor(const cuipc_tensor *t, cuipc_tensor_owner owner) {
    cuipc_tensor *desc = NULL;
    if (copy_tensor(t, owner, &desc) != CUIPC_OK)
        return NULL;
    cuipc_value *v = new_node(CUIPC_VALUE_TENSOR);
    if (!v) {
        free(desc);
        return NULL;
    }
    v->u.tensor.desc = desc;
    v->u.tensor.owner = owner;
    return v;
}

cuipc_value *cuipc_value_proxy(const cuipc_proxy *p) {
    cuipc_proxy *copy = NULL;
    if (copy_proxy(p, &copy) != CUIPC_OK)
        return NULL;
    cuipc_value *v = new_node(CUIPC_VALUE_PROXY);
    if (!v) {
        free(copy);
        return NULL;
    }
    v->u.proxy = copy;
    return v;
}

/* ---- freeing --------------------------------------------------------------------------- */

/* Freeing cannot be undone or retried: a failure of the CUDA free is left in the thread's error
 * message, and the value is gone all the same. */
static void free_tensor_memory(const cuipc_value *v) {
    cuipc_tensor *t = v->u.tensor.desc;
    if (v->u.tensor.owner == CUIPC_OWNER_HOST && v->u.tensor.mapped_bytes)
        cuipc_host_copy_free(t->data, v->u.tensor.mapped_bytes);
    else if (v->u.tensor.owner == CUIPC_OWNER_HOST)
        free(t->data);
    else if (v->u.tensor.owner == CUIPC_OWNER_DEVICE && t->data && v->u.tensor.stream_ordered)
        cuipc_status_ignore(cuipc_cuda_free_async(t->data, v->u.tensor.stream));
    else if (v->u.tensor.owner == CUIPC_OWNER_DEVICE && t->data)
        cuipc_status_ignore(cuipc_cuda_free(t->data));
}

/* Release what the node's payload owns, leaving the node itself allocated. */
static void release_payload(cuipc_value *v) {
    switch (v->kind) {
    case CUIPC_VALUE_STRING:
    case CUIPC_VALUE_BYTES:
        free(v->u.str.data);
        break;
    case CUIPC_VALUE_LIST:
        for (size_t i = 0; i < v->u.list.len; i++)
            cuipc_value_free(v->u.list.items[i]);
        free(v->u.list.items);
        break;
    case CUIPC_VALUE_DICT:
        for (size_t i = 0; i < v->u.dict.len; i++) {
            free(v->u.dict.entries[i].key);
            cuipc_value_free(v->u.dict.entries[i].value);
        }
        free(v->u.dict.entries);
        free(v->u.dict.index);
        break;
    case CUIPC_VALUE_TENSOR:
        free_tensor_memory(v);
        free(v->u.tensor.desc);
        break;
    case CUIPC_VALUE_PROXY:
        free(v->u.proxy);
        break;
    default:
        break;
    }
    memset(&v->u, 0, sizeof v->u);
}

/* Recursion depth is bounded by CUIPC_VALUE_MAX_DEPTH, which every builder enforces. */
void cuipc_value_free(cuipc_value *v) {
    if (!v)
        return;
    release_payload(v);
    free(v);
}

/* ---- containment rules ----------------------------------------------------------------- */

static bool is_container(const cuipc_value *v) {
    return v->kind == CUIPC_VALUE_LIST || v->kind == CUIPC_VALUE_DICT;
}

/* Exact height of v's subtree; refreshes the cached upper bounds on the way. */
static uint32_t exact_height(cuipc_value *v) {
    uint32_t below = 0;
    if (v->kind == CUIPC_VALUE_LIST) {
        for (size_t i = 0; i < v->u.list.len; i++) {
            uint32_t h = exact_height(v->u.list.items[i]);
            below = h > below ? h : below;
        }
    } else if (v->kind == CUIPC_VALUE_DICT) {
        for (size_t i = 0; i < v->u.dict.len; i++) {
            uint32_t h = exact_height(v->u.dict.entries[i].value);
            below = h > below ? h : below;
        }
    }
    v->height = below + 1;
    return v->height;
}

/* Decide whether item may become a child of container (api names the caller in messages). On
 * refusal, item_still_owned tells the caller that item belongs to a tree already and must not be
 * freed. */
static cuipc_status check_adoption(cuipc_value *container, cuipc_value *item, const char *api,
                                   bool *item_still_owned) {
    *item_still_owned = false;
    uint32_t level = 0; /* nodes from the root down to container, inclusive */
    for (const cuipc_value *p = container; p; p = p->parent) {
        if (p == item) {
            *item_still_owned = true;
            return cuipc_error_set(
                CUIPC_ERR_INVALID_ARG, api,
                "adding a %s to itself or to one of its descendants makes a cycle",
                cuipc_value_kind_name(item->kind));
        }
        level++;
    }
    if (item->parent) {
        *item_still_owned = true;
        return cuipc_error_set(
            CUIPC_ERR_INVALID_ARG, api,
            "the %s item already belongs to a %s; a node can live in one container",
            cuipc_value_kind_name(item->kind), cuipc_value_kind_name(item->parent->kind));
    }
    if (level + item->height > CUIPC_VALUE_MAX_DEPTH &&
        level + exact_height(item) > CUIPC_VALUE_MAX_DEPTH)
        return cuipc_error_set(CUIPC_ERR_INVALID_ARG, api,
                               "tree would be %u levels deep (container at level %u, item %u "
                               "levels); limit %d",
                               level + item->height, level, item->height, CUIPC_VALUE_MAX_DEPTH);
    return CUIPC_OK;
}

/* Record that item now hangs below container: raise the cached heights up the chain. */
static void adopt(cuipc_value *container, cuipc_value *item) {
    item->parent = container;
    uint32_t need = item->height + 1;
    for (cuipc_value *p = container; p && p->height < need; p = p->parent, need++)
        p->height = need;
}

static bool grow_array(void **items, size_t *cap, size_t elem_size, size_t needed) {
    if (needed <= *cap)
        return true;
    size_t new_cap = *cap ? *cap : 4;
    while (new_cap < needed) {
        if (new_cap > SIZE_MAX / 2 / elem_size)
            return false;
        new_cap *= 2;
    }
    void *p = realloc(*items, new_cap * elem_size);
    if (!p)
        return false;
    *items = p;
    *cap = new_cap;
    return true;
}

cuipc_status cuipc_list_append(cuipc_value *list, cuipc_value *item) {
    if (!item)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "item is NULL");
    bool still_owned = false;
    cuipc_status s = CUIPC_OK;
    if (!list)
        s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "list is NULL");
    else if (list->kind != CUIPC_VALUE_LIST)
        s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "append to a %s, not a list",
                       cuipc_value_kind_name(list->kind));
    else if ((s = check_adoption(list, item, __func__, &still_owned)) == CUIPC_OK &&
             !grow_array((void **)&list->u.list.items, &list->u.list.cap, sizeof(cuipc_value *),
                         list->u.list.len + 1))
        s = CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "out of memory growing a list of %zu items",
                       list->u.list.len);
    if (s != CUIPC_OK) {
        if (!still_owned)
            cuipc_value_free(item);
        return s;
    }
    list->u.list.items[list->u.list.len++] = item;
    adopt(list, item);
    return CUIPC_OK;
}

/* ---- dict index ------------------------------------------------------------------------ */

static uint64_t hash_key(const char *key, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a: short keys, good enough spread */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static void index_insert(uint32_t *index, size_t cap, uint64_t hash, size_t pos) {
    size_t mask = cap - 1;
    size_t slot = (size_t)hash & mask;
    while (index[slot])
        slot = (slot + 1) & mask;
    index[slot] = (uint32_t)(pos + 1);
}

/* Keep the index at most half full; build it once the dict stops being small. */
static bool index_reserve(cuipc_value *d, size_t entries) {
    if (entries < CUIPC_DICT_INDEX_MIN || entries * 2 <= d->u.dict.index_cap)
        return true;
    size_t cap = d->u.dict.index_cap ? d->u.dict.index_cap : 64;
    while (cap < entries * 2)
        cap *= 2;
    uint32_t *index = calloc(cap, sizeof *index);
    if (!index)
        return false;
    for (size_t i = 0; i < d->u.dict.len; i++)
        index_insert(index, cap, d->u.dict.entries[i].hash, i);
    free(d->u.dict.index);
    d->u.dict.index = index;
    d->u.dict.index_cap = cap;
    return true;
}

static bool entry_matches(const cuipc_dict_entry *e, const char *key, size_t len, uint64_t hash) {
    return e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0;
}

/* Position of key in the dict, or SIZE_MAX. */
static size_t dict_find(const cuipc_value *d, const char *key, size_t len, uint64_t hash) {
    const cuipc_dict_entry *entries = d->u.dict.entries;
    if (!d->u.dict.index) {
        for (size_t i = 0; i < d->u.dict.len; i++)
            if (entry_matches(&entries[i], key, len, hash))
                return i;
        return SIZE_MAX;
    }
    size_t mask = d->u.dict.index_cap - 1;
    for (size_t slot = (size_t)hash & mask; d->u.dict.index[slot]; slot = (slot + 1) & mask) {
        size_t pos = d->u.dict.index[slot] - 1;
        if (entry_matches(&entries[pos], key, len, hash))
            return pos;
    }
    return SIZE_MAX;
}

static cuipc_status check_key(const char *key, size_t *len) {
    if (!key)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "dict key is NULL");
    *len = strnlen(key, (size_t)CUIPC_VALUE_MAX_STRING + 1);
    if (*len > CUIPC_VALUE_MAX_STRING)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "dict key longer than the %u-byte limit",
                          CUIPC_VALUE_MAX_STRING);
    return CUIPC_OK;
}

/* Append a new entry (the key is known to be absent). */
static cuipc_status dict_add(cuipc_value *d, const char *key, size_t len, uint64_t hash,
                             cuipc_value *item) {
    if (d->u.dict.len >= UINT32_MAX - 1)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "dict already holds %zu entries", d->u.dict.len);
    char *copy = malloc(len + 1);
    if (!copy ||
        !grow_array((void **)&d->u.dict.entries, &d->u.dict.cap, sizeof(cuipc_dict_entry),
                    d->u.dict.len + 1) ||
        !index_reserve(d, d->u.dict.len + 1)) {
        free(copy);
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY,
                          "out of memory adding key \"%.40s\" to a dict of %zu", key,
                          d->u.dict.len);
    }
    memcpy(copy, key, len + 1);
    size_t pos = d->u.dict.len++;
    d->u.dict.entries[pos] = (cuipc_dict_entry){copy, len, hash, item};
    if (d->u.dict.index)
        index_insert(d->u.dict.index, d->u.dict.index_cap, hash, pos);
    return CUIPC_OK;
}

cuipc_status cuipc_dict_set(cuipc_value *dict, const char *key, cuipc_value *item) {
    if (!item)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "item is NULL");
    bool still_owned = false;
    size_t len = 0;
    cuipc_status s = CUIPC_OK;
    if (!dict)
        s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "dict is NULL");
    else if (dict->kind != CUIPC_VALUE_DICT)
        s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "set key on a %s, not a dict",
                       cuipc_value_kind_name(dict->kind));
    else if ((s = check_key(key, &len)) == CUIPC_OK)
        s = check_adoption(dict, item, __func__, &still_owned);
    if (s == CUIPC_OK) {
        uint64_t hash = hash_key(key, len);
        size_t pos = dict_find(dict, key, len, hash);
        if (pos != SIZE_MAX) {
            cuipc_value *old = dict->u.dict.entries[pos].value;
            old->parent = NULL;
            cuipc_value_free(old);
            dict->u.dict.entries[pos].value = item;
        } else {
            s = dict_add(dict, key, len, hash, item);
        }
    }
    if (s != CUIPC_OK) {
        if (!still_owned)
            cuipc_value_free(item);
        return s;
    }
    adopt(dict, item);
    return CUIPC_OK;
}

/* ---- accessors ------------------------------------------------------------------------- */

/* True when v is of the wanted kind; otherwise records why the accessor returns a neutral value. */
static bool expect_kind(const cuipc_value *v, cuipc_value_kind want, const char *accessor) {
    if (!v) {
        cuipc_error_set(CUIPC_ERR_INVALID_ARG, accessor, "value is NULL");
        return false;
    }
    if (v->kind != want) {
        cuipc_error_set(CUIPC_ERR_INVALID_ARG, accessor, "value is a %s, not a %s",
                        cuipc_value_kind_name(v->kind), cuipc_value_kind_name(want));
        return false;
    }
    return true;
}

cuipc_value_kind cuipc_value_kind_of(const cuipc_value *v) {
    if (!v) {
        CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "value is NULL");
        return CUIPC_VALUE_NULL;
    }
    return v->kind;
}

bool cuipc_value_as_bool(const cuipc_value *v) {
    return expect_kind(v, CUIPC_VALUE_BOOL, __func__) ? v->u.b : false;
}

int64_t cuipc_value_as_int(const cuipc_value *v) {
    return expect_kind(v, CUIPC_VALUE_INT, __func__) ? v->u.i : 0;
}

double cuipc_value_as_float(const cuipc_value *v) {
    return expect_kind(v, CUIPC_VALUE_FLOAT, __func__) ? v->u.f : 0.0;
}

const char *cuipc_value_as_string(const cuipc_value *v) {
    return expect_kind(v, CUIPC_VALUE_STRING, __func__) ? v->u.str.data : NULL;
}

const void *cuipc_value_as_bytes(const cuipc_value *v, size_t *n) {
    bool ok = expect_kind(v, CUIPC_VALUE_BYTES, __func__);
    if (n)
        *n = ok ? v->u.str.len : 0;
    return ok ? v->u.str.data : NULL;
}

size_t cuipc_value_len(const cuipc_value *v) {
    if (v && v->kind == CUIPC_VALUE_LIST)
        return v->u.list.len;
    if (v && v->kind == CUIPC_VALUE_DICT)
        return v->u.dict.len;
    CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "value is %s, not a list or dict",
               v ? cuipc_value_kind_name(v->kind) : "NULL");
    return 0;
}

cuipc_value *cuipc_list_get(const cuipc_value *list, size_t i) {
    if (!expect_kind(list, CUIPC_VALUE_LIST, __func__))
        return NULL;
    if (i >= list->u.list.len) {
        CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "index %zu out of range for a list of %zu", i,
                   list->u.list.len);
        return NULL;
    }
    return list->u.list.items[i];
}

static const cuipc_dict_entry *dict_entry_at(const cuipc_value *dict, size_t i,
                                             const char *accessor) {
    if (!expect_kind(dict, CUIPC_VALUE_DICT, accessor))
        return NULL;
    if (i >= dict->u.dict.len) {
        cuipc_error_set(CUIPC_ERR_INVALID_ARG, accessor, "index %zu out of range for a dict of %zu",
                        i, dict->u.dict.len);
        return NULL;
    }
    return &dict->u.dict.entries[i];
}

const char *cuipc_dict_key_at(const cuipc_value *dict, size_t i) {
    const cuipc_dict_entry *e = dict_entry_at(dict, i, __func__);
    return e ? e->key : NULL;
}

cuipc_value *cuipc_dict_value_at(const cuipc_value *dict, size_t i) {
    const cuipc_dict_entry *e = dict_entry_at(dict, i, __func__);
    return e ? e->value : NULL;
}

cuipc_value *cuipc_dict_get(const cuipc_value *dict, const char *key) {
    if (!expect_kind(dict, CUIPC_VALUE_DICT, __func__))
        return NULL;
    if (!key) {
        CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "key is NULL");
        return NULL;
    }
    size_t len = strlen(key);
    size_t pos = dict_find(dict, key, len, hash_key(key, len));
    if (pos == SIZE_MAX) {
        CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "no key \"%.60s\" in a dict of %zu", key,
                   dict->u.dict.len);
        return NULL;
    }
    return dict->u.dict.entries[pos].value;
}

const cuipc_tensor *cuipc_value_as_tensor(const cuipc_value *v) {
    return expect_kind(v, CUIPC_VALUE_TENSOR, __func__) ? v->u.tensor.desc : NULL;
}

cuipc_tensor_owner cuipc_value_tensor_owner(const cuipc_value *v) {
    return expect_kind(v, CUIPC_VALUE_TENSOR, __func__) ? v->u.tensor.owner : CUIPC_OWNER_NONE;
}

const cuipc_proxy *cuipc_value_as_proxy(const cuipc_value *v) {
    return expect_kind(v, CUIPC_VALUE_PROXY, __func__) ? v->u.proxy : NULL;
}

/* ---- in-place replacement -------------------------------------------------------------- */

/* Only leaves can change payload: turning a container into a leaf would orphan its children. */
static cuipc_status check_replaceable(const cuipc_value *v) {
    if (!v)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "value is NULL");
    if (is_container(v))
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "cannot replace the payload of a %s",
                          cuipc_value_kind_name(v->kind));
    return CUIPC_OK;
}

cuipc_status cuipc_value_set_tensor(cuipc_value *v, const cuipc_tensor *t,
                                    cuipc_tensor_owner owner) {
    CUIPC_TRY(check_replaceable(v));
    cuipc_tensor *desc = NULL;
    CUIPC_TRY(copy_tensor(t, owner, &desc));
    release_payload(v);
    v->kind = CUIPC_VALUE_TENSOR;
    v->u.tensor.desc = desc;
    v->u.tensor.owner = owner;
    v->u.tensor.stream_ordered = false;
    v->u.tensor.stream = NULL;
    v->u.tensor.mapped_bytes = 0;
    return CUIPC_OK;
}

cuipc_status cuipc_value_set_mapped_host_tensor(cuipc_value *v, const cuipc_tensor *t,
                                                size_t mapped_bytes) {
    CUIPC_TRY(cuipc_value_set_tensor(v, t, CUIPC_OWNER_HOST));
    v->u.tensor.mapped_bytes = mapped_bytes;
    return CUIPC_OK;
}

cuipc_status cuipc_value_set_stream_ordered_tensor(cuipc_value *v, const cuipc_tensor *t,
                                                   cuipc_stream stream) {
    CUIPC_TRY(cuipc_value_set_tensor(v, t, CUIPC_OWNER_DEVICE));
    v->u.tensor.stream_ordered = true;
    v->u.tensor.stream = stream;
    return CUIPC_OK;
}

cuipc_status cuipc_value_set_proxy(cuipc_value *v, const cuipc_proxy *p) {
    CUIPC_TRY(check_replaceable(v));
    cuipc_proxy *copy = NULL;
    CUIPC_TRY(copy_proxy(p, &copy));
    release_payload(v);
    v->kind = CUIPC_VALUE_PROXY;
    v->u.proxy = copy;
    return CUIPC_OK;
}

/* ---- clone and visit ------------------------------------------------------------------- */

/* A copy of a node that holds no other node (a tensor stays borrowed). */
static cuipc_status clone_leaf(const cuipc_value *v, cuipc_value **out) {
    *out = NULL;
    switch (v->kind) {
    case CUIPC_VALUE_NULL:
        *out = cuipc_value_null();
        break;
    case CUIPC_VALUE_BOOL:
        *out = cuipc_value_bool(v->u.b);
        break;
    case CUIPC_VALUE_INT:
        *out = cuipc_value_int(v->u.i);
        break;
    case CUIPC_VALUE_FLOAT:
        *out = cuipc_value_float(v->u.f);
        break;
    case CUIPC_VALUE_STRING:
    case CUIPC_VALUE_BYTES:
        *out = new_blob(v->kind, v->u.str.data, v->u.str.len);
        break;
    case CUIPC_VALUE_TENSOR:
        *out = cuipc_value_tensor(v->u.tensor.desc, CUIPC_OWNER_NONE);
        break;
    case CUIPC_VALUE_PROXY:
        *out = cuipc_value_proxy(v->u.proxy);
        break;
    default:
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "value kind %d is corrupt", (int)v->kind);
    }
    return *out ? CUIPC_OK : CUIPC_ERR_NO_MEMORY; /* the builder set the message */
}

/* The copy of v, each tensor and proxy leaf given to fn (when not NULL) as it is made. A dict's
 * keys are known distinct and checked: each is added with the hash it had, without a lookup. */
static cuipc_status clone_tree(const cuipc_value *v, cuipc_value_visit_fn fn, void *ctx,
                               cuipc_value **out) {
    *out = NULL;
    bool list = v->kind == CUIPC_VALUE_LIST;
    if (!list && v->kind != CUIPC_VALUE_DICT) {
        cuipc_value *leaf = NULL;
        CUIPC_TRY(clone_leaf(v, &leaf));
        bool visited = fn && (leaf->kind == CUIPC_VALUE_TENSOR || leaf->kind == CUIPC_VALUE_PROXY);
        cuipc_status s = visited ? fn(leaf, ctx) : CUIPC_OK;
        if (s != CUIPC_OK) {
            cuipc_value_free(leaf);
            return s;
        }
        *out = leaf;
        return CUIPC_OK;
    }
    cuipc_value *copy = list ? cuipc_value_list() : cuipc_value_dict();
    if (!copy)
        return CUIPC_ERR_NO_MEMORY;
    size_t n = list ? v->u.list.len : v->u.dict.len;
    for (size_t i = 0; i < n; i++) {
        const cuipc_dict_entry *e = list ? NULL : &v->u.dict.entries[i];
        cuipc_value *item = NULL;
        cuipc_status s = clone_tree(list ? v->u.list.items[i] : e->value, fn, ctx, &item);
        if (s == CUIPC_OK && list) {
            s = cuipc_list_append(copy, item); /* frees item on failure */
        } else if (s == CUIPC_OK) {
            s = dict_add(copy, e->key, e->key_len, e->hash, item);
            if (s == CUIPC_OK)
                adopt(copy, item);
            else
                cuipc_value_free(item);
        }
        if (s != CUIPC_OK) {
            cuipc_value_free(copy);
            return s;
        }
    }
    *out = copy;
    return CUIPC_OK;
}

cuipc_value *cuipc_value_clone(const cuipc_value *v) {
    if (!v) {
        CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "value is NULL");
        return NULL;
    }
    cuipc_value *copy;
    return clone_tree(v, NULL, NULL, &copy) == CUIPC_OK ? copy : NULL;
}

cuipc_status cuipc_value_visit(cuipc_value *root, cuipc_value_visit_fn fn, void *ctx) {
    if (!root || !fn)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s is NULL", root ? "visitor" : "root");
    switch (root->kind) {
    case CUIPC_VALUE_TENSOR:
    case CUIPC_VALUE_PROXY:
        return fn(root, ctx);
    case CUIPC_VALUE_LIST:
        for (size_t i = 0; i < root->u.list.len; i++)
            CUIPC_TRY(cuipc_value_visit(root->u.list.items[i], fn, ctx));
        return CUIPC_OK;
    case CUIPC_VALUE_DICT:
        for (size_t i = 0; i < root->u.dict.len; i++)
            CUIPC_TRY(cuipc_value_visit(root->u.dict.entries[i].value, fn, ctx));
        return CUIPC_OK;
    default:
        return CUIPC_OK;
    }
}

cuipc_status cuipc_value_clone_visit(const cuipc_value *v, cuipc_value_visit_fn fn, void *ctx,
                                     cuipc_value **out) {
    *out = NULL;
    if (!v || !fn)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s is NULL", v ? "visitor" : "value");
    return clone_tree(v, fn, ctx, out);
}
