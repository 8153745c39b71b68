/* Value trees: building, inspecting, replacing, cloning and freeing nested trees; ownership
 * rules (cycles, shared nodes, depth limit); wrong-kind accessors; large dicts stay linear; the
 * copy that visits its leaves as it makes them. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "cuda_api.h"
#include "cuipc/error.h"
#include "cuipc/value.h"
#include "test_util.h"
#include "value_internal.h"

static cuipc_tensor host_tensor(void *data, int64_t rows, int64_t cols) {
    cuipc_tensor t;
    int64_t shape[2] = {rows, cols};
    static char placeholder; /* some tests want a layout without data: init wants one */
    REQUIRE(cuipc_tensor_init(&t, &placeholder, CUIPC_DEVICE_HOST, CUIPC_DTYPE_F32, 2, shape) ==
            CUIPC_OK);
    t.data = data;
    return t;
}

static cuipc_proxy pool_proxy(uint32_t slot) {
    cuipc_proxy p;
    memset(&p, 0, sizeof p);
    p.kind = CUIPC_PROXY_POOL;
    p.layout.dtype = CUIPC_DTYPE_U8;
    p.layout.ndim = 1;
    p.layout.src_device = 0;
    p.layout.shape[0] = 16;
    p.layout.strides[0] = 1;
    p.nbytes = 16;
    p.u.pool.pool_id = 0xABCDEFull;
    p.u.pool.memory = CUIPC_MEMORY_HOST;
    p.u.pool.pool_device = CUIPC_DEVICE_HOST;
    p.u.pool.slot = slot;
    p.u.pool.generation = 3;
    return p;
}

static void test_scalars(void) {
    cuipc_value *v = cuipc_value_null();
    REQUIRE(v);
    CHECK(cuipc_value_kind_of(v) == CUIPC_VALUE_NULL);
    cuipc_value_free(v);

    v = cuipc_value_bool(true);
    CHECK(cuipc_value_kind_of(v) == CUIPC_VALUE_BOOL && cuipc_value_as_bool(v));
    cuipc_value_free(v);

    v = cuipc_value_int(INT64_MIN);
    CHECK(cuipc_value_as_int(v) == INT64_MIN);
    cuipc_value_free(v);

    v = cuipc_value_float(-2.5e300);
    CHECK(cuipc_value_as_float(v) == -2.5e300);
    cuipc_value_free(v);

    char src[] = "hello";
    v = cuipc_value_string(src);
    src[0] = 'J'; /* the value holds its own copy */
    CHECK(strcmp(cuipc_value_as_string(v), "hello") == 0);
    cuipc_value_free(v);

    v = cuipc_value_string("");
    CHECK(v && strcmp(cuipc_value_as_string(v), "") == 0);
    cuipc_value_free(v);

    const unsigned char raw[4] = {0, 1, 0, 255};
    v = cuipc_value_bytes(raw, sizeof raw);
    size_t n = 0;
    const unsigned char *got = cuipc_value_as_bytes(v, &n);
    CHECK(n == 4 && got && memcmp(got, raw, 4) == 0 && got != raw);
    cuipc_value_free(v);

    v = cuipc_value_bytes(NULL, 0);
    CHECK(v && cuipc_value_as_bytes(v, &n) != NULL && n == 0);
    cuipc_value_free(v);

    /* Impossible inputs: NULL with a message, nothing leaked. */
    CHECK(cuipc_value_bytes(NULL, 3) == NULL);
    CHECK(cuipc_value_string(NULL) == NULL);
    CHECK(cuipc_value_tensor(NULL, CUIPC_OWNER_NONE) == NULL);
    CHECK(cuipc_value_proxy(NULL) == NULL);
    cuipc_tensor bad = host_tensor(NULL, 2, 2);
    bad.strides[0] = -1;
    CHECK(cuipc_value_tensor(&bad, CUIPC_OWNER_NONE) == NULL);
    CHECK(strstr(cuipc_last_error(), "strides[0]") != NULL);
    cuipc_tensor ok = host_tensor(NULL, 2, 2);
    CHECK(cuipc_value_tensor(&ok, (cuipc_tensor_owner)9) == NULL);

    /* Strings are capped at CUIPC_VALUE_MAX_STRING bytes. */
    char *big = malloc((size_t)CUIPC_VALUE_MAX_STRING + 2);
    REQUIRE(big);
    memset(big, 'x', (size_t)CUIPC_VALUE_MAX_STRING + 1);
    big[CUIPC_VALUE_MAX_STRING + 1] = '\0';
    CHECK(cuipc_value_string(big) == NULL);
    CHECK(strstr(cuipc_last_error(), "limit") != NULL);
    big[CUIPC_VALUE_MAX_STRING] = '\0';
    v = cuipc_value_string(big);
    CHECK(v && strlen(cuipc_value_as_string(v)) == CUIPC_VALUE_MAX_STRING);
    cuipc_value_free(v);
    free(big);

    CHECK(strcmp(cuipc_value_kind_name(CUIPC_VALUE_DICT), "dict") == 0);
    CHECK(strcmp(cuipc_value_kind_name(CUIPC_VALUE_PROXY), "proxy") == 0);
    CHECK(strcmp(cuipc_value_kind_name((cuipc_value_kind)42), "unknown") == 0);
}

/* {"name": "img", "pixel_values": tensor, "sizes": [1, 2.5, [true, null]], "meta": {"p": proxy}} */
static cuipc_value *build_sample(float *data) {
    cuipc_value *root = cuipc_value_dict();
    REQUIRE(root);
    CHECK_OK(cuipc_dict_set(root, "name", cuipc_value_string("img")));
    cuipc_tensor t = host_tensor(data, 2, 3);
    CHECK_OK(cuipc_dict_set(root, "pixel_values", cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    cuipc_value *sizes = cuipc_value_list();
    CHECK_OK(cuipc_list_append(sizes, cuipc_value_int(1)));
    CHECK_OK(cuipc_list_append(sizes, cuipc_value_float(2.5)));
    cuipc_value *inner = cuipc_value_list();
    CHECK_OK(cuipc_list_append(inner, cuipc_value_bool(true)));
    CHECK_OK(cuipc_list_append(inner, cuipc_value_null()));
    CHECK_OK(cuipc_list_append(sizes, inner));
    CHECK_OK(cuipc_dict_set(root, "sizes", sizes));
    cuipc_value *meta = cuipc_value_dict();
    cuipc_proxy p = pool_proxy(7);
    CHECK_OK(cuipc_dict_set(meta, "p", cuipc_value_proxy(&p)));
    CHECK_OK(cuipc_dict_set(root, "meta", meta));
    return root;
}

static void check_sample(const cuipc_value *root, const float *data) {
    REQUIRE(cuipc_value_kind_of(root) == CUIPC_VALUE_DICT);
    CHECK(cuipc_value_len(root) == 4);
    const char *order[4] = {"name", "pixel_values", "sizes", "meta"};
    for (size_t i = 0; i < 4; i++)
        CHECK(strcmp(cuipc_dict_key_at(root, i), order[i]) == 0);
    CHECK(strcmp(cuipc_value_as_string(cuipc_dict_get(root, "name")), "img") == 0);
    const cuipc_tensor *t = cuipc_value_as_tensor(cuipc_dict_get(root, "pixel_values"));
    REQUIRE(t);
    CHECK(t->data == data && t->shape[0] == 2 && t->shape[1] == 3 && t->strides[0] == 3);
    CHECK(cuipc_value_tensor_owner(cuipc_dict_get(root, "pixel_values")) == CUIPC_OWNER_NONE);
    const cuipc_value *sizes = cuipc_dict_get(root, "sizes");
    CHECK(cuipc_value_len(sizes) == 3);
    CHECK(cuipc_value_as_int(cuipc_list_get(sizes, 0)) == 1);
    CHECK(cuipc_value_as_float(cuipc_list_get(sizes, 1)) == 2.5);
    const cuipc_value *inner = cuipc_list_get(sizes, 2);
    CHECK(cuipc_value_len(inner) == 2);
    CHECK(cuipc_value_as_bool(cuipc_list_get(inner, 0)));
    CHECK(cuipc_value_kind_of(cuipc_list_get(inner, 1)) == CUIPC_VALUE_NULL);
    const cuipc_proxy *p = cuipc_value_as_proxy(cuipc_dict_get(cuipc_dict_get(root, "meta"), "p"));
    REQUIRE(p);
    CHECK(p->kind == CUIPC_PROXY_POOL && p->u.pool.slot == 7 && p->nbytes == 16);
    CHECK(cuipc_dict_value_at(root, 2) == sizes);
}

static void test_nested_build_and_clone(void) {
    float data[6] = {0};
    cuipc_value *root = build_sample(data);
    check_sample(root, data);

    cuipc_value *copy = cuipc_value_clone(root);
    REQUIRE(copy);
    check_sample(copy, data);
    CHECK(cuipc_dict_get(copy, "sizes") != cuipc_dict_get(root, "sizes")); /* deep copy */

    /* Replacing a key keeps its position; the clone is unaffected. */
    CHECK_OK(cuipc_dict_set(root, "name", cuipc_value_int(5)));
    CHECK(cuipc_value_len(root) == 4);
    CHECK(strcmp(cuipc_dict_key_at(root, 0), "name") == 0);
    CHECK(cuipc_value_as_int(cuipc_dict_value_at(root, 0)) == 5);
    CHECK(strcmp(cuipc_value_as_string(cuipc_dict_get(copy, "name")), "img") == 0);
    cuipc_value_free(root);
    check_sample(copy, data); /* still valid after the original is gone */
    cuipc_value_free(copy);
    cuipc_value_free(NULL);
}

static void test_wrong_kind_accessors(void) {
    cuipc_value *s = cuipc_value_string("text");
    cuipc_value *list = cuipc_value_list();
    cuipc_value *dict = cuipc_value_dict();
    REQUIRE(s && list && dict);

    cuipc_clear_error();
    CHECK(cuipc_value_as_int(s) == 0);
    CHECK(strstr(cuipc_last_error(), "string, not a int") != NULL);
    cuipc_clear_error();
    CHECK(cuipc_value_as_bool(s) == false && cuipc_last_error()[0]);
    CHECK(cuipc_value_as_float(list) == 0.0);
    CHECK(cuipc_value_as_string(dict) == NULL);
    size_t n = 99;
    CHECK(cuipc_value_as_bytes(s, &n) == NULL && n == 0);
    CHECK(cuipc_value_as_bytes(s, NULL) == NULL);
    CHECK(cuipc_value_as_tensor(s) == NULL);
    CHECK(cuipc_value_as_proxy(list) == NULL);
    CHECK(cuipc_value_tensor_owner(dict) == CUIPC_OWNER_NONE);
    cuipc_clear_error();
    CHECK(cuipc_value_len(s) == 0 && cuipc_last_error()[0]);
    CHECK(cuipc_list_get(dict, 0) == NULL);
    CHECK(cuipc_list_get(list, 0) == NULL); /* out of range */
    CHECK(strstr(cuipc_last_error(), "out of range") != NULL);
    CHECK(cuipc_dict_get(list, "a") == NULL);
    CHECK(cuipc_dict_get(dict, "a") == NULL);
    CHECK(cuipc_dict_get(dict, NULL) == NULL);
    CHECK(cuipc_dict_key_at(dict, 0) == NULL);
    CHECK(cuipc_dict_value_at(list, 0) == NULL);

    /* NULL everywhere: neutral values, never a crash. */
    CHECK(cuipc_value_kind_of(NULL) == CUIPC_VALUE_NULL);
    CHECK(cuipc_value_as_int(NULL) == 0 && cuipc_value_as_string(NULL) == NULL);
    CHECK(cuipc_value_len(NULL) == 0 && cuipc_list_get(NULL, 0) == NULL);
    CHECK(cuipc_dict_get(NULL, "k") == NULL && cuipc_value_clone(NULL) == NULL);

    /* Containers reject wrong kinds and free the item they were given. */
    CHECK_STATUS(cuipc_list_append(dict, cuipc_value_int(1)), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_dict_set(list, "k", cuipc_value_int(1)), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_list_append(NULL, cuipc_value_int(1)), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_dict_set(dict, NULL, cuipc_value_int(1)), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_list_append(list, NULL), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_dict_set(dict, "k", NULL), CUIPC_ERR_INVALID_ARG);
    CHECK(cuipc_value_len(list) == 0 && cuipc_value_len(dict) == 0);

    /* Empty key is a valid key. */
    CHECK_OK(cuipc_dict_set(dict, "", cuipc_value_int(4)));
    CHECK(cuipc_value_as_int(cuipc_dict_get(dict, "")) == 4);

    cuipc_value_free(s);
    cuipc_value_free(list);
    cuipc_value_free(dict);
}

static void test_ownership_rules(void) {
    cuipc_value *root = cuipc_value_dict();
    cuipc_value *child = cuipc_value_list();
    REQUIRE(root && child);
    CHECK_OK(cuipc_dict_set(root, "child", child));

    /* Self, ancestor, or a node already in a container: refused and NOT freed. */
    CHECK_STATUS(cuipc_list_append(child, child), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "cycle") != NULL);
    CHECK_STATUS(cuipc_list_append(child, root), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "cycle") != NULL);
    cuipc_value *other = cuipc_value_dict();
    CHECK_STATUS(cuipc_dict_set(other, "again", child), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "already belongs") != NULL);
    CHECK_STATUS(cuipc_dict_set(root, "child", child), CUIPC_ERR_INVALID_ARG);
    /* All still usable: */
    CHECK_OK(cuipc_list_append(child, cuipc_value_int(3)));
    CHECK(cuipc_value_len(child) == 1 && cuipc_dict_get(root, "child") == child);
    CHECK(cuipc_value_len(other) == 0);
    cuipc_value_free(other);
    cuipc_value_free(root);
}

/* A chain of `levels` nested lists (levels >= 1), the innermost holding an int. */
static cuipc_value *chain(int levels, cuipc_value **innermost) {
    cuipc_value *top = cuipc_value_list();
    cuipc_value *cur = top;
    for (int i = 1; i < levels; i++) {
        cuipc_value *next = cuipc_value_list();
        REQUIRE(cuipc_list_append(cur, next) == CUIPC_OK);
        cur = next;
    }
    if (innermost)
        *innermost = cur;
    return top;
}

static void test_depth_limit(void) {
    /* Top-down: 64 levels of nodes are allowed, a 65th is refused. */
    cuipc_value *inner;
    cuipc_value *top = chain(CUIPC_VALUE_MAX_DEPTH - 1, &inner);
    CHECK_OK(cuipc_list_append(inner, cuipc_value_int(1))); /* level 64 */
    cuipc_value *leaf_list = cuipc_value_list();
    CHECK_OK(cuipc_list_append(inner, leaf_list)); /* an empty list is one level too */
    CHECK_STATUS(cuipc_list_append(leaf_list, cuipc_value_null()), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "limit 64") != NULL);

    /* Bottom-up: a full 64-level tree cannot go inside anything. */
    cuipc_value *outer = cuipc_value_dict();
    CHECK_STATUS(cuipc_dict_set(outer, "deep", top), CUIPC_ERR_INVALID_ARG); /* frees top */
    CHECK(cuipc_value_len(outer) == 0);

    /* The cached height is only an upper bound: after the deep subtree is replaced by a leaf,
     * the dict is 2 levels high and fits under a 62-level chain (62 + 2 = 64). */
    cuipc_value *holder = cuipc_value_dict();
    CHECK_OK(cuipc_dict_set(holder, "deep", chain(CUIPC_VALUE_MAX_DEPTH - 1, NULL)));
    CHECK_OK(cuipc_dict_set(holder, "deep", cuipc_value_int(0)));
    cuipc_value *host_inner;
    cuipc_value *host = chain(CUIPC_VALUE_MAX_DEPTH - 2, &host_inner);
    CHECK_OK(cuipc_list_append(host_inner, holder));
    /* ...but not under one more level. */
    cuipc_value *holder2 = cuipc_value_dict();
    CHECK_OK(cuipc_dict_set(holder2, "x", cuipc_value_int(0)));
    cuipc_value *host2_inner;
    cuipc_value *host2 = chain(CUIPC_VALUE_MAX_DEPTH - 1, &host2_inner);
    CHECK_STATUS(cuipc_list_append(host2_inner, holder2), CUIPC_ERR_INVALID_ARG);

    cuipc_value_free(host);
    cuipc_value_free(host2);
    cuipc_value_free(outer);
}

static cuipc_status count_nodes(cuipc_value *node, void *ctx) {
    int *counts = ctx;
    counts[cuipc_value_kind_of(node) == CUIPC_VALUE_TENSOR ? 0 : 1]++;
    return CUIPC_OK;
}

static cuipc_status stop_at_proxy(cuipc_value *node, void *ctx) {
    (*(int *)ctx)++;
    return cuipc_value_kind_of(node) == CUIPC_VALUE_PROXY ? CUIPC_ERR_STALE : CUIPC_OK;
}

/* What wrap/unwrap do: swap a tensor node for a proxy and back, in place. */
static cuipc_status swap_to_proxy(cuipc_value *node, void *ctx) {
    if (cuipc_value_kind_of(node) != CUIPC_VALUE_TENSOR)
        return CUIPC_OK;
    cuipc_proxy p = pool_proxy(++*(uint32_t *)ctx);
    return cuipc_value_set_proxy(node, &p);
}

static void test_visit_and_replace(void) {
    float data[6] = {0};
    cuipc_value *root = build_sample(data);
    cuipc_tensor t = host_tensor(data, 1, 6);
    CHECK_OK(cuipc_list_append(cuipc_dict_get(root, "sizes"),
                               cuipc_value_tensor(&t, CUIPC_OWNER_BORROW)));
    int counts[2] = {0, 0};
    CHECK_OK(cuipc_value_visit(root, count_nodes, counts));
    CHECK(counts[0] == 2 && counts[1] == 1);

    int seen = 0;
    CHECK_STATUS(cuipc_value_visit(root, stop_at_proxy, &seen), CUIPC_ERR_STALE);
    CHECK(seen == 3); /* tensor, tensor (inside sizes), then the proxy under meta */
    CHECK_STATUS(cuipc_value_visit(root, NULL, NULL), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_value_visit(NULL, count_nodes, counts), CUIPC_ERR_INVALID_ARG);

    uint32_t slot = 100;
    CHECK_OK(cuipc_value_visit(root, swap_to_proxy, &slot));
    counts[0] = counts[1] = 0;
    CHECK_OK(cuipc_value_visit(root, count_nodes, counts));
    CHECK(counts[0] == 0 && counts[1] == 3);
    const cuipc_proxy *p = cuipc_value_as_proxy(cuipc_dict_get(root, "pixel_values"));
    CHECK(p && p->u.pool.slot == 101);

    /* And back: a proxy node becomes a host tensor the tree owns (freed with it). */
    cuipc_value *node = cuipc_dict_get(root, "pixel_values");
    float *owned = malloc(6 * sizeof *owned);
    REQUIRE(owned);
    cuipc_tensor back = host_tensor(owned, 2, 3);
    CHECK_OK(cuipc_value_set_tensor(node, &back, CUIPC_OWNER_HOST));
    CHECK(cuipc_value_as_tensor(node)->data == owned);
    CHECK(cuipc_value_tensor_owner(node) == CUIPC_OWNER_HOST);
    CHECK(cuipc_dict_get(root, "pixel_values") == node); /* same node, new payload */

    /* Containers cannot change payload; bad input leaves the node untouched. */
    CHECK_STATUS(cuipc_value_set_tensor(cuipc_dict_get(root, "sizes"), &back, CUIPC_OWNER_NONE),
                 CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_value_set_proxy(root, p), CUIPC_ERR_INVALID_ARG);
    cuipc_tensor bad = back;
    bad.ndim = 12;
    CHECK_STATUS(cuipc_value_set_tensor(node, &bad, CUIPC_OWNER_NONE), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_value_set_proxy(node, NULL), CUIPC_ERR_INVALID_ARG);
    CHECK(cuipc_value_as_tensor(node)->data == owned);

    /* A clone never owns tensor memory. */
    cuipc_value *copy = cuipc_value_clone(node);
    CHECK(cuipc_value_tensor_owner(copy) == CUIPC_OWNER_NONE);
    CHECK(cuipc_value_as_tensor(copy)->data == owned);
    cuipc_value_free(copy);

    cuipc_value_free(root); /* frees `owned` (ASan builds catch a leak or a double free) */
}

/* The thread's CPU time since start: what the work cost, not how long the host made it wait. */
static double cpu_seconds_since(const struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) * 1e-9;
}

/* A dict of n keys built, every tenth key replaced (order and count unchanged), and every key
 * looked up by name and by position. The CPU seconds that took; *wrong counts what came out wrong.
 */
static double dict_workout(int n, int *wrong) {
    struct timespec start;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
    cuipc_value *dict = cuipc_value_dict();
    char key[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "key_%d", i);
        REQUIRE(cuipc_dict_set(dict, key, cuipc_value_int(i)) == CUIPC_OK);
    }
    for (int i = 0; i < n; i += 10) {
        snprintf(key, sizeof key, "key_%d", i);
        REQUIRE(cuipc_dict_set(dict, key, cuipc_value_int(-i)) == CUIPC_OK);
    }
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "key_%d", i);
        int64_t want = i % 10 == 0 ? -i : i;
        *wrong += cuipc_value_as_int(cuipc_dict_get(dict, key)) != want;
        *wrong += strcmp(cuipc_dict_key_at(dict, (size_t)i), key) != 0;
    }
    double elapsed = cpu_seconds_since(&start);
    snprintf(key, sizeof key, "key_%d", n);
    *wrong += cuipc_value_len(dict) != (size_t)n || cuipc_dict_get(dict, key) != NULL;
    cuipc_value *copy = cuipc_value_clone(dict);
    snprintf(key, sizeof key, "key_%d", n - 1);
    *wrong += cuipc_value_as_int(cuipc_dict_get(copy, key)) != n - 1;
    cuipc_value_free(copy);
    cuipc_value_free(dict);
    return elapsed;
}

/* A message decodes into dicts of any size: a quadratic dict would let a large (or forged) one
 * stall its consumer. Judged by scaling, not by a speed, so that neither the machine, a
 * sanitizer nor the load beside the test decides it: ten times the keys must cost well under the
 * hundredfold a quadratic dict would, in CPU time (a descheduled thread is not charged for the
 * wait), the fastest of three runs of each size compared. */
static void test_large_dict_is_linear(void) {
    enum { small = 10000, large = 100000 };
    double t_small = 1e9, t_large = 1e9;
    int wrong = 0;
    for (int r = 0; r < 3; r++) {
        double a = dict_workout(small, &wrong), b = dict_workout(large, &wrong);
        t_small = a < t_small ? a : t_small;
        t_large = b < t_large ? b : t_large;
    }
    CHECK(wrong == 0);
    printf("dict: %d keys in %.4f s, %d keys in %.4f s (x%.1f)\n", small, t_small, large, t_large,
           t_large / t_small);
    CHECK(t_large < 40 * t_small);
}

/* The device memory this process holds through the CUDA layer: exact, and blind to what other
 * processes (tests running beside this one) allocate, which the device's free memory is not. */
static uint64_t held_bytes(void) {
    uint64_t held = 0;
    REQUIRE(cuipc_cuda_allocated_bytes(0, &held) == CUIPC_OK);
    return held;
}

/* DEVICE-owned tensors go back to CUDA with the tree (also when the payload is replaced);
 * BORROW ones are left alone. Needs a GPU; the rest of this test does not. */
static void test_device_ownership(void) {
    if (!cuipc_cuda_present()) {
        printf("device ownership part skipped: no GPU\n");
        return;
    }
    const size_t bytes = (size_t)256 << 20; /* a multiple of every allocation granularity */
    int64_t shape[1] = {(int64_t)(bytes / 4)};
    uint64_t before = held_bytes();

    void *owned = NULL, *borrowed = NULL;
    REQUIRE(cuipc_cuda_malloc(0, bytes, &owned) == CUIPC_OK);
    REQUIRE(cuipc_cuda_malloc(0, bytes, &borrowed) == CUIPC_OK);
    CHECK(held_bytes() == before + 2 * bytes);
    cuipc_tensor t;
    cuipc_value *root = cuipc_value_dict();
    REQUIRE(cuipc_tensor_init(&t, owned, 0, CUIPC_DTYPE_F32, 1, shape) == CUIPC_OK);
    CHECK_OK(cuipc_dict_set(root, "owned", cuipc_value_tensor(&t, CUIPC_OWNER_DEVICE)));
    REQUIRE(cuipc_tensor_init(&t, borrowed, 0, CUIPC_DTYPE_F32, 1, shape) == CUIPC_OK);
    CHECK_OK(cuipc_dict_set(root, "borrowed", cuipc_value_tensor(&t, CUIPC_OWNER_BORROW)));
    cuipc_value_free(root);
    CHECK(held_bytes() == before + bytes); /* the owned block came back, the borrowed one not */
    CHECK_OK(cuipc_cuda_free(borrowed));   /* still ours to free: no double free */
    CHECK(held_bytes() == before);

    /* Replacing a DEVICE-owned payload releases it too (unwrap then wrap again). */
    REQUIRE(cuipc_cuda_malloc(0, bytes, &owned) == CUIPC_OK);
    REQUIRE(cuipc_tensor_init(&t, owned, 0, CUIPC_DTYPE_F32, 1, shape) == CUIPC_OK);
    cuipc_value *node = cuipc_value_tensor(&t, CUIPC_OWNER_DEVICE);
    cuipc_proxy p = pool_proxy(1);
    CHECK_OK(cuipc_value_set_proxy(node, &p));
    CHECK(held_bytes() == before);
    cuipc_value_free(node);
}

/* Rewrites a tensor into a host tensor the copy owns (malloc'd), failing at the n-th leaf. */
typedef struct own_copies {
    int seen, fail_at;
} own_copies;

static cuipc_status take_owned_copy(cuipc_value *node, void *ctx) {
    own_copies *o = ctx;
    if (++o->seen == o->fail_at)
        return CUIPC_FAIL(CUIPC_ERR_STALE, "leaf %d refused", o->seen);
    if (cuipc_value_kind_of(node) != CUIPC_VALUE_TENSOR)
        return CUIPC_OK;
    cuipc_tensor t = *cuipc_value_as_tensor(node);
    t.data = calloc(1, cuipc_tensor_span_bytes(&t) + 1);
    REQUIRE(t.data);
    return cuipc_value_set_tensor(node, &t, CUIPC_OWNER_HOST);
}

/* clone_visit: the copy of clone, each leaf visited in visit's order as it is made; a failure
 * frees the partial copy with the memory the visitor gave its leaves (ASan: no leak). */
static void test_clone_visit(void) {
    float data[6] = {0};
    cuipc_value *root = build_sample(data);
    for (int i = 0; i < 20; i++) { /* past the dict's index threshold */
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        CHECK_OK(cuipc_dict_set(root, key, cuipc_value_int(i)));
    }
    int counts[2] = {0, 0}, seen = 0;
    cuipc_value *copy = NULL;
    CHECK_OK(cuipc_value_clone_visit(root, count_nodes, counts, &copy));
    CHECK(counts[0] == 1 && counts[1] == 1);
    CHECK(copy && cuipc_value_len(copy) == cuipc_value_len(root));
    CHECK(cuipc_value_as_int(cuipc_dict_get(copy, "k17")) == 17);
    for (size_t i = 0; i < cuipc_value_len(root); i++)
        CHECK(strcmp(cuipc_dict_key_at(copy, i), cuipc_dict_key_at(root, i)) == 0);
    cuipc_value_free(copy);
    CHECK_STATUS(cuipc_value_clone_visit(root, stop_at_proxy, &seen, &copy), CUIPC_ERR_STALE);
    CHECK(copy == NULL && seen == 2);

    own_copies o = {0, 0};
    CHECK_OK(cuipc_value_clone_visit(root, take_owned_copy, &o, &copy));
    const cuipc_value *t = cuipc_dict_get(copy, "pixel_values");
    CHECK(o.seen == 2 && cuipc_value_tensor_owner(t) == CUIPC_OWNER_HOST);
    CHECK(cuipc_value_as_tensor(t)->data != data);
    CHECK(cuipc_value_tensor_owner(cuipc_dict_get(root, "pixel_values")) == CUIPC_OWNER_NONE);
    cuipc_value_free(copy);
    o = (own_copies){0, 2}; /* the tensor is copied, the proxy refused: the copy is freed */
    CHECK_STATUS(cuipc_value_clone_visit(root, take_owned_copy, &o, &copy), CUIPC_ERR_STALE);
    CHECK(copy == NULL && strstr(cuipc_last_error(), "leaf 2 refused") != NULL);
    CHECK_STATUS(cuipc_value_clone_visit(NULL, count_nodes, counts, &copy), CUIPC_ERR_INVALID_ARG);
    cuipc_value_free(root);
}

int main(void) {
    test_scalars();
    test_nested_build_and_clone();
    test_wrong_kind_accessors();
    test_ownership_rules();
    test_depth_limit();
    test_visit_and_replace();
    test_large_dict_is_linear();
    test_device_ownership();
    test_clone_visit();
    return cuipc_test_finish("test_value");
}
