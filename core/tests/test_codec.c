/* Codec: exact wire layout, round trips of seeded random trees, and a decoder that rejects every
 * truncation, bit flip, forged count, depth bomb, bad field and version with a CORRUPT/VERSION
 * error naming the offset, never crashing or allocating what the message cannot back; the library's
 * own one-walk encoder and the proxy hooks of both directions agree with the public calls. */
#include <math.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec_internal.h"
#include "cuipc/error.h"
#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define CUIPC_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUIPC_TEST_ASAN 1
#endif
#endif

/* Wire tags, restated here so the test pins the format down independently of codec.c. */
enum {
    TAG_NULL = 1,
    TAG_BOOL,
    TAG_INT,
    TAG_FLOAT,
    TAG_STRING,
    TAG_BYTES,
    TAG_LIST,
    TAG_DICT,
    TAG_PROXY
};
#define HDR CUIPC_WIRE_HEADER_BYTES

/* ---- independent CRC-32C and message assembly ------------------------------------------ */

static uint32_t ref_crc32c(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Rewrite body length and CRC so that a deliberately damaged body reaches the parser. */
static void fix_header(uint8_t *msg, size_t len) {
    put32(msg + 8, (uint32_t)(len - HDR));
    put32(msg + 12, ref_crc32c(msg + HDR, len - HDR));
}

/* Wrap a hand-written body into a valid message (caller frees). */
static uint8_t *make_message(const uint8_t *body, size_t n, size_t *len) {
    uint8_t *msg = malloc(HDR + n + 1);
    REQUIRE(msg);
    memcpy(msg, "CUIP", 4);
    msg[4] = CUIPC_WIRE_VERSION;
    msg[5] = 0;
    msg[6] = msg[7] = 0;
    if (n)
        memcpy(msg + HDR, body, n);
    *len = HDR + n;
    fix_header(msg, *len);
    return msg;
}

static uint8_t *encode_alloc(const cuipc_value *v, size_t *len) {
    size_t size = 0;
    REQUIRE(cuipc_encoded_size(v, &size) == CUIPC_OK);
    uint8_t *buf = malloc(size);
    REQUIRE(buf);
    REQUIRE(cuipc_encode(v, buf, size, len) == CUIPC_OK);
    REQUIRE(*len == size);
    return buf;
}

/* Decode and expect a failure of `want` whose message names an offset and contains `needle`. */
static void expect_reject(const uint8_t *msg, size_t len, cuipc_status want, const char *needle,
                          int line) {
    cuipc_value *out = (cuipc_value *)&out; /* must come back NULL */
    cuipc_status s = cuipc_decode(msg, len, &out);
    if (s != want || out != NULL || !strstr(cuipc_last_error(), "offset ") ||
        (needle && !strstr(cuipc_last_error(), needle))) {
        fprintf(stderr, "line %d: decode gave %s (want %s), error \"%s\", want \"%s\"\n", line,
                cuipc_status_name(s), cuipc_status_name(want), cuipc_last_error(),
                needle ? needle : "");
        cuipc_test_failures++;
    }
    if (s == CUIPC_OK)
        cuipc_value_free(out);
}
#define EXPECT_CORRUPT(msg, len, needle)                                                           \
    expect_reject(msg, len, CUIPC_ERR_CORRUPT, needle, __LINE__)

/* ---- structural equality ---------------------------------------------------------------- */

static bool proxies_equal(const cuipc_proxy *a, const cuipc_proxy *b) {
    const cuipc_tensor_layout *la = &a->layout, *lb = &b->layout;
    if (a->kind != b->kind || la->dtype != lb->dtype || la->ndim != lb->ndim ||
        la->src_device != lb->src_device || a->nbytes != b->nbytes)
        return false;
    for (int32_t i = 0; i < la->ndim; i++)
        if (la->shape[i] != lb->shape[i] || la->strides[i] != lb->strides[i])
            return false;
    if (a->kind == CUIPC_PROXY_POOL)
        return a->u.pool.pool_id == b->u.pool.pool_id && a->u.pool.memory == b->u.pool.memory &&
               a->u.pool.pool_device == b->u.pool.pool_device && a->u.pool.slot == b->u.pool.slot &&
               a->u.pool.generation == b->u.pool.generation && a->u.pool.offset == b->u.pool.offset;
    return memcmp(a->u.ipc.handle, b->u.ipc.handle, CUIPC_IPC_HANDLE_BYTES) == 0 &&
           a->u.ipc.export_id == b->u.ipc.export_id && a->u.ipc.alloc_size == b->u.ipc.alloc_size &&
           a->u.ipc.offset == b->u.ipc.offset && a->u.ipc.device == b->u.ipc.device &&
           a->u.ipc.producer_id == b->u.ipc.producer_id;
}

static bool values_equal(const cuipc_value *a, const cuipc_value *b) {
    cuipc_value_kind kind = cuipc_value_kind_of(a);
    if (kind != cuipc_value_kind_of(b))
        return false;
    switch (kind) {
    case CUIPC_VALUE_NULL:
        return true;
    case CUIPC_VALUE_BOOL:
        return cuipc_value_as_bool(a) == cuipc_value_as_bool(b);
    case CUIPC_VALUE_INT:
        return cuipc_value_as_int(a) == cuipc_value_as_int(b);
    case CUIPC_VALUE_FLOAT: {
        double fa = cuipc_value_as_float(a), fb = cuipc_value_as_float(b);
        return memcmp(&fa, &fb, sizeof fa) == 0; /* bitwise: NaN payloads and -0 survive */
    }
    case CUIPC_VALUE_STRING:
        return strcmp(cuipc_value_as_string(a), cuipc_value_as_string(b)) == 0;
    case CUIPC_VALUE_BYTES: {
        size_t na, nb;
        const void *pa = cuipc_value_as_bytes(a, &na), *pb = cuipc_value_as_bytes(b, &nb);
        return na == nb && memcmp(pa, pb, na) == 0;
    }
    case CUIPC_VALUE_LIST:
        if (cuipc_value_len(a) != cuipc_value_len(b))
            return false;
        for (size_t i = 0; i < cuipc_value_len(a); i++)
            if (!values_equal(cuipc_list_get(a, i), cuipc_list_get(b, i)))
                return false;
        return true;
    case CUIPC_VALUE_DICT:
        if (cuipc_value_len(a) != cuipc_value_len(b))
            return false;
        for (size_t i = 0; i < cuipc_value_len(a); i++)
            if (strcmp(cuipc_dict_key_at(a, i), cuipc_dict_key_at(b, i)) != 0 ||
                !values_equal(cuipc_dict_value_at(a, i), cuipc_dict_value_at(b, i)))
                return false;
        return true;
    case CUIPC_VALUE_PROXY:
        return proxies_equal(cuipc_value_as_proxy(a), cuipc_value_as_proxy(b));
    case CUIPC_VALUE_TENSOR:
        return false; /* never encoded */
    }
    return false;
}

/* ---- seeded random trees ---------------------------------------------------------------- */

static uint64_t rnd(uint64_t *s, uint64_t bound) {
    return cuipc_test_rand(s) % bound;
}

static cuipc_proxy random_proxy(uint64_t *s, cuipc_proxy_kind kind) {
    cuipc_proxy p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    p.layout.dtype = (cuipc_dtype)(1 + rnd(s, CUIPC_DTYPE_COUNT_ - 1));
    p.layout.ndim = (int32_t)rnd(s, CUIPC_MAX_DIMS + 1);
    p.layout.src_device = (int32_t)rnd(s, 4) - 1;
    cuipc_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = p.layout.dtype;
    t.ndim = p.layout.ndim;
    for (int32_t i = 0; i < p.layout.ndim; i++) {
        t.shape[i] = p.layout.shape[i] = (int64_t)(rnd(s, 8) == 0 ? 0 : 1 + rnd(s, 4));
        t.strides[i] = p.layout.strides[i] = (int64_t)rnd(s, 7); /* 0 = broadcast */
    }
    p.nbytes = cuipc_tensor_span_bytes(&t);
    if (kind == CUIPC_PROXY_POOL) {
        p.u.pool.pool_id = cuipc_test_rand(s);
        p.u.pool.memory = rnd(s, 2) ? CUIPC_MEMORY_HOST : CUIPC_MEMORY_CUDA;
        p.u.pool.pool_device =
            p.u.pool.memory == CUIPC_MEMORY_HOST ? CUIPC_DEVICE_HOST : (int32_t)rnd(s, 8);
        p.u.pool.slot = (uint32_t)cuipc_test_rand(s);
        p.u.pool.generation = (uint32_t)cuipc_test_rand(s);
        p.u.pool.offset = rnd(s, (uint64_t)1 << 40);
    } else {
        for (int i = 0; i < CUIPC_IPC_HANDLE_BYTES; i++)
            p.u.ipc.handle[i] = (uint8_t)cuipc_test_rand(s);
        p.u.ipc.export_id = cuipc_test_rand(s);
        p.u.ipc.offset = rnd(s, (uint64_t)1 << 30);
        p.u.ipc.alloc_size = p.u.ipc.offset + p.nbytes + rnd(s, 4096);
        p.u.ipc.device = (int32_t)rnd(s, 8);
        p.u.ipc.producer_id = cuipc_test_rand(s);
    }
    return p;
}

static void random_text(uint64_t *s, char *out, size_t max) {
    size_t n = rnd(s, max);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(1 + rnd(s, 255)); /* any byte but NUL */
    out[n] = '\0';
}

static cuipc_value *random_value(uint64_t *s, int level, int *budget) {
    --*budget;
    int kinds = level >= 6 || *budget <= 0 ? 8 : 10; /* containers only while budget lasts */
    char text[24];
    uint8_t raw[24];
    uint64_t bits;
    double f;
    cuipc_proxy p;
    switch (rnd(s, (uint64_t)kinds)) {
    case 0:
        return cuipc_value_null();
    case 1:
        return cuipc_value_bool(rnd(s, 2));
    case 2:
        return cuipc_value_int((int64_t)cuipc_test_rand(s));
    case 3:
        bits = cuipc_test_rand(s); /* any bit pattern: NaNs, infinities, denormals */
        memcpy(&f, &bits, sizeof f);
        return cuipc_value_float(f);
    case 4:
        random_text(s, text, sizeof text);
        return cuipc_value_string(text);
    case 5: {
        size_t n = rnd(s, sizeof raw);
        for (size_t i = 0; i < n; i++)
            raw[i] = (uint8_t)rnd(s, 4) == 0 ? 0 : (uint8_t)cuipc_test_rand(s);
        return cuipc_value_bytes(raw, n);
    }
    case 6:
        p = random_proxy(s, CUIPC_PROXY_POOL);
        return cuipc_value_proxy(&p);
    case 7:
        p = random_proxy(s, CUIPC_PROXY_IPC);
        return cuipc_value_proxy(&p);
    case 8: {
        cuipc_value *list = cuipc_value_list();
        for (uint64_t i = 0, n = rnd(s, 6); i < n; i++)
            REQUIRE(cuipc_list_append(list, random_value(s, level + 1, budget)) == CUIPC_OK);
        return list;
    }
    default: {
        cuipc_value *dict = cuipc_value_dict();
        for (uint64_t i = 0, n = rnd(s, 6); i < n; i++) {
            char key[64];
            random_text(s, text, 12);
            snprintf(key, sizeof key, "%llu%s", (unsigned long long)i, text); /* unique */
            REQUIRE(cuipc_dict_set(dict, key, random_value(s, level + 1, budget)) == CUIPC_OK);
        }
        return dict;
    }
    }
}

/* A tree that surely holds both proxy kinds and nests containers. */
static cuipc_value *random_tree(uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    int budget = 40;
    cuipc_value *root = cuipc_value_dict();
    cuipc_proxy pool = random_proxy(&s, CUIPC_PROXY_POOL), ipc = random_proxy(&s, CUIPC_PROXY_IPC);
    cuipc_value *proxies = cuipc_value_list();
    REQUIRE(cuipc_list_append(proxies, cuipc_value_proxy(&pool)) == CUIPC_OK);
    REQUIRE(cuipc_list_append(proxies, cuipc_value_proxy(&ipc)) == CUIPC_OK);
    REQUIRE(cuipc_dict_set(root, "proxies", proxies) == CUIPC_OK);
    REQUIRE(cuipc_dict_set(root, "random", random_value(&s, 2, &budget)) == CUIPC_OK);
    return root;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_exact_layout(void) {
    CHECK(ref_crc32c((const uint8_t *)"123456789", 9) == 0xE3069283u); /* the standard check */

    /* {"ab": -2} : dict, count 1, key len 2, "ab", int tag, -2 little-endian. */
    cuipc_value *v = cuipc_value_dict();
    REQUIRE(cuipc_dict_set(v, "ab", cuipc_value_int(-2)) == CUIPC_OK);
    size_t len;
    uint8_t *got = encode_alloc(v, &len);
    const uint8_t body[] = {TAG_DICT, 1,       0,    0,    0,    2,    0,    0,    0,    'a',
                            'b',      TAG_INT, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    size_t want_len;
    uint8_t *want = make_message(body, sizeof body, &want_len);
    CHECK(len == want_len && memcmp(got, want, len) == 0);
    CHECK(memcmp(got, "CUIP\x01\x00\x00\x00", 8) == 0);
    CHECK(got[8] == sizeof body && got[9] == 0 && got[10] == 0 && got[11] == 0);
    free(got);
    free(want);
    cuipc_value_free(v);

    /* A hand-made message with the reference CRC decodes: both CRCs are CRC-32C. */
    const uint8_t mixed[] = {TAG_LIST, 4, 0, 0,   0,         TAG_NULL, TAG_BOOL, 1, TAG_STRING, 1,
                             0,        0, 0, 'z', TAG_BYTES, 0,        0,        0, 0};
    uint8_t *msg = make_message(mixed, sizeof mixed, &len);
    cuipc_value *out = NULL;
    CHECK_OK(cuipc_decode(msg, len, &out));
    CHECK(cuipc_value_len(out) == 4);
    CHECK(cuipc_value_as_bool(cuipc_list_get(out, 1)));
    CHECK(strcmp(cuipc_value_as_string(cuipc_list_get(out, 2)), "z") == 0);
    size_t n = 9;
    CHECK(cuipc_value_as_bytes(cuipc_list_get(out, 3), &n) != NULL && n == 0);
    cuipc_value_free(out);
    free(msg);
}

static void test_round_trips(void) {
    size_t total = 0;
    for (uint64_t seed = 1; seed <= 400; seed++) {
        cuipc_value *tree = random_tree(seed);
        size_t len;
        uint8_t *msg = encode_alloc(tree, &len);
        total += len;
        cuipc_value *back = NULL;
        CHECK_OK(cuipc_decode(msg, len, &back));
        if (!values_equal(tree, back)) {
            fprintf(stderr, "seed %llu: round trip differs\n", (unsigned long long)seed);
            cuipc_test_failures++;
        }
        /* Canonical: re-encoding the decoded tree gives the same bytes. */
        size_t len2;
        uint8_t *msg2 = encode_alloc(back, &len2);
        CHECK(len2 == len && memcmp(msg, msg2, len) == 0);
        /* A buffer one byte short is refused, an exact one is enough. */
        CHECK_STATUS(cuipc_encode(tree, msg2, len - 1, &len2), CUIPC_ERR_INVALID_ARG);
        free(msg2);
        free(msg);
        cuipc_value_free(back);
        cuipc_value_free(tree);
    }
    printf("400 random trees round-tripped (%zu bytes encoded)\n", total);

    /* Deepest legal tree: a list, then dicts down to level 64. */
    cuipc_value *top = cuipc_value_list(), *cur = cuipc_value_dict();
    REQUIRE(cuipc_list_append(top, cur) == CUIPC_OK);
    for (int level = 3; level <= CUIPC_VALUE_MAX_DEPTH; level++) {
        cuipc_value *next = cuipc_value_dict();
        REQUIRE(cuipc_dict_set(cur, "d", next) == CUIPC_OK);
        cur = next;
    }
    size_t len;
    uint8_t *msg = encode_alloc(top, &len);
    cuipc_value *back = NULL;
    CHECK_OK(cuipc_decode(msg, len, &back));
    CHECK(values_equal(top, back));
    cuipc_value_free(back);
    cuipc_value_free(top);
    free(msg);
}

/* Every strict prefix is refused, with the header as sent and with it rewritten to match. */
static void test_truncations(void) {
    for (uint64_t seed = 1; seed <= 6; seed++) {
        cuipc_value *tree = random_tree(seed * 31);
        size_t len;
        uint8_t *msg = encode_alloc(tree, &len);
        uint8_t *copy = malloc(len);
        REQUIRE(copy);
        for (size_t cut = 0; cut < len; cut++) {
            memcpy(copy, msg, cut);
            EXPECT_CORRUPT(copy, cut, NULL);
            if (cut >= HDR) {
                fix_header(copy, cut); /* now only the parser can notice */
                EXPECT_CORRUPT(copy, cut, NULL);
            }
        }
        free(copy);
        free(msg);
        cuipc_value_free(tree);
    }
}

/* Every single-bit flip: refused, or (with the CRC rewritten) decoded to a valid tree whose
 * encoding is exactly the flipped message. */
static void test_bit_flips(void) {
    size_t decoded = 0, refused = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        cuipc_value *tree = random_tree(seed * 77);
        size_t len;
        uint8_t *msg = encode_alloc(tree, &len);
        for (size_t bit = 0; bit < len * 8; bit++) {
            msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            cuipc_value *out = NULL;
            cuipc_status s = cuipc_decode(msg, len, &out);
            CHECK(s == CUIPC_ERR_CORRUPT || s == CUIPC_ERR_VERSION); /* CRC/header catch all */
            cuipc_value_free(out);
            if (bit / 8 >= HDR) {
                uint8_t saved[8];
                memcpy(saved, msg + 8, 8);
                fix_header(msg, len);
                s = cuipc_decode(msg, len, &out);
                if (s == CUIPC_OK) {
                    decoded++;
                    size_t len2;
                    uint8_t *again = encode_alloc(out, &len2);
                    CHECK(len2 == len && memcmp(again, msg, len) == 0);
                    free(again);
                    cuipc_value_free(out);
                } else {
                    refused++;
                    CHECK(s == CUIPC_ERR_CORRUPT && out == NULL);
                }
                memcpy(msg + 8, saved, 8);
            }
            msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        cuipc_value *back = NULL;
        CHECK_OK(cuipc_decode(msg, len, &back)); /* restored intact */
        cuipc_value_free(back);
        free(msg);
        cuipc_value_free(tree);
    }
    printf("bit flips with CRC rewritten: %zu decoded to valid trees, %zu refused\n", decoded,
           refused);
    CHECK(refused > 0);
}

static void forged_count_cases(void) {
    static const uint8_t forged[][10] = {
        {TAG_LIST, 0xFF, 0xFF, 0xFF, 0xFF, TAG_NULL},
        {TAG_DICT, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, TAG_NULL},
        {TAG_STRING, 0xFF, 0xFF, 0xFF, 0xFF, 'a'},
        {TAG_BYTES, 0xFF, 0xFF, 0xFF, 0xFF, 'a'},
        {TAG_DICT, 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, TAG_NULL},
        {TAG_BYTES, 0xFF, 0xFF, 0xFF, 0x7F, 'a'},
    };
    static const char *const needles[] = {"list count 4294967295",      "dict count 4294967295",
                                          "string length 4294967295",   "bytes length 4294967295",
                                          "dict key length 4294967295", "bytes length 2147483647"};
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        size_t len;
        uint8_t *msg = make_message(forged[i], sizeof forged[i], &len);
        EXPECT_CORRUPT(msg, len, needles[i]);
        free(msg);
    }
    /* Nested lists each claiming every remaining byte: refused once the bytes run out. */
    enum { levels = 60 };
    uint8_t body[levels * 5 + 1];
    for (int i = 0; i < levels; i++) {
        body[i * 5] = TAG_LIST;
        put32(body + i * 5 + 1, (uint32_t)(sizeof body - (size_t)i * 5 - 5));
    }
    body[levels * 5] = TAG_NULL;
    size_t len;
    uint8_t *msg = make_message(body, sizeof body, &len);
    EXPECT_CORRUPT(msg, len, "needs 1 bytes, 0 left");
    free(msg);
    /* A count that exactly fits is fine: 1000 nulls. */
    uint8_t nulls[5 + 1000];
    nulls[0] = TAG_LIST;
    put32(nulls + 1, 1000);
    memset(nulls + 5, TAG_NULL, 1000);
    msg = make_message(nulls, sizeof nulls, &len);
    cuipc_value *out = NULL;
    CHECK_OK(cuipc_decode(msg, len, &out));
    CHECK(cuipc_value_len(out) == 1000);
    cuipc_value_free(out);
    put32(msg + HDR + 1, 1001);
    fix_header(msg, len);
    EXPECT_CORRUPT(msg, len, "list count 1001 cannot fit");
    free(msg);
}

static int forged_counts_child(void *arg) {
    (void)arg;
#ifndef CUIPC_TEST_ASAN
    /* Cap the address space a little above what the process uses now: a 4 GiB allocation driven
     * by a forged count fails instead of passing silently. ASan reserves terabytes: no cap. */
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    if (pages > 0) {
        struct rlimit lim = {.rlim_cur =
                                 (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (256u << 20),
                             .rlim_max = RLIM_INFINITY};
        lim.rlim_max = lim.rlim_cur;
        if (setrlimit(RLIMIT_AS, &lim) != 0)
            perror("setrlimit");
    }
#endif
    forged_count_cases();
    return cuipc_test_failures ? 1 : 0;
}

static void test_forged_counts(void) {
    pid_t pid = cuipc_test_fork(forged_counts_child, NULL);
    REQUIRE(pid > 0);
    CHECK(cuipc_test_wait(pid, 20000) == 0);
}

static uint8_t *nested_lists(size_t levels, size_t *len) {
    size_t n = levels * 5 + 1;
    uint8_t *body = malloc(n);
    REQUIRE(body);
    for (size_t i = 0; i < levels; i++) {
        body[i * 5] = TAG_LIST;
        put32(body + i * 5 + 1, 1);
    }
    body[n - 1] = TAG_NULL;
    uint8_t *msg = make_message(body, n, len);
    free(body);
    return msg;
}

static void test_depth_bombs(void) {
    size_t len;
    uint8_t *msg = nested_lists(CUIPC_VALUE_MAX_DEPTH - 1, &len); /* 63 lists + null = 64 */
    cuipc_value *out = NULL;
    CHECK_OK(cuipc_decode(msg, len, &out));
    cuipc_value_free(out);
    free(msg);

    msg = nested_lists(CUIPC_VALUE_MAX_DEPTH, &len); /* 65 levels */
    char needle[64];
    snprintf(needle, sizeof needle, "offset %d: nesting deeper than 64", HDR + 64 * 5);
    EXPECT_CORRUPT(msg, len, needle);
    free(msg);

    msg = nested_lists(1000000, &len); /* a 5 MB bomb: refused at level 65, no stack blow-up */
    EXPECT_CORRUPT(msg, len, "nesting deeper than 64");
    free(msg);
}

static void test_header_checks(void) {
    cuipc_value *v = random_tree(5);
    size_t len;
    uint8_t *msg = encode_alloc(v, &len);
    uint8_t *bad = malloc(len + 1);
    REQUIRE(bad);

    memcpy(bad, msg, len);
    bad[4] = 2; /* a future version */
    expect_reject(bad, len, CUIPC_ERR_VERSION, "offset 4: wire version 2", __LINE__);
    bad[4] = 0;
    expect_reject(bad, len, CUIPC_ERR_VERSION, "wire version 0", __LINE__);
    bad[4] = 1;
    bad[5] = 1; /* version 257 */
    expect_reject(bad, len, CUIPC_ERR_VERSION, "wire version 257", __LINE__);

    memcpy(bad, msg, len);
    bad[0] = 'X';
    EXPECT_CORRUPT(bad, len, "offset 0: bad magic");
    memcpy(bad, msg, len);
    bad[6] = 1;
    EXPECT_CORRUPT(bad, len, "offset 6: flags 0x1");
    memcpy(bad, msg, len);
    bad[12] ^= 1;
    EXPECT_CORRUPT(bad, len, "offset 12: body CRC-32C");
    memcpy(bad, msg, len);
    bad[len] = TAG_NULL; /* one byte more than the header announces */
    EXPECT_CORRUPT(bad, len + 1, "offset 8: body length");
    fix_header(bad, len + 1); /* announced too: then it is a trailing value */
    char needle[48];
    snprintf(needle, sizeof needle, "offset %zu: 1 trailing bytes", len);
    EXPECT_CORRUPT(bad, len + 1, needle);
    EXPECT_CORRUPT(msg, 3, "shorter than the 16-byte header");

    /* Over the size cap: refused from the header alone (pages never touched). */
    size_t huge_len = (size_t)CUIPC_WIRE_MAX_MESSAGE + 1;
    uint8_t *huge = calloc(1, huge_len);
    REQUIRE(huge);
    memcpy(huge, msg, HDR);
    EXPECT_CORRUPT(huge, huge_len, "exceeds");
    free(huge);

    cuipc_value *out = (cuipc_value *)&out;
    CHECK_STATUS(cuipc_decode(NULL, 16, &out), CUIPC_ERR_INVALID_ARG);
    CHECK(out == NULL);
    CHECK_STATUS(cuipc_decode(msg, len, NULL), CUIPC_ERR_INVALID_ARG);
    free(bad);
    free(msg);
    cuipc_value_free(v);
}

/* Encode a value, let `damage` edit the body, fix the header and expect a rejection. */
static void corrupt_field(const cuipc_value *v, size_t at, const uint8_t *bytes, size_t n,
                          const char *needle, int line) {
    size_t len;
    uint8_t *msg = encode_alloc(v, &len);
    REQUIRE(at + n <= len);
    memcpy(msg + at, bytes, n);
    fix_header(msg, len);
    expect_reject(msg, len, CUIPC_ERR_CORRUPT, needle, line);
    free(msg);
}
#define CORRUPT_AT(v, at, needle, ...)                                                             \
    do {                                                                                           \
        const uint8_t bytes_[] = {__VA_ARGS__};                                                    \
        corrupt_field(v, at, bytes_, sizeof bytes_, needle, __LINE__);                             \
    } while (0)

static void test_field_checks(void) {
    /* Root pool proxy, ndim 2. Offsets: 16 tag, 17 kind, 18 dtype, 19 ndim, 20 src_device,
     * 24 shape, 40 strides, 56 nbytes, 64 pool_id, 72 memory, 73 pool_device, 77 slot,
     * 81 generation, 85 offset; 93 bytes in all. */
    cuipc_proxy p;
    memset(&p, 0, sizeof p);
    p.kind = CUIPC_PROXY_POOL;
    p.layout.dtype = CUIPC_DTYPE_F32;
    p.layout.ndim = 2;
    p.layout.src_device = 0;
    p.layout.shape[0] = 3;
    p.layout.shape[1] = 4;
    p.layout.strides[0] = 4;
    p.layout.strides[1] = 1;
    p.nbytes = 48;
    p.u.pool.memory = CUIPC_MEMORY_CUDA;
    p.u.pool.pool_device = 1;
    cuipc_value *v = cuipc_value_proxy(&p);
    size_t len;
    uint8_t *msg = encode_alloc(v, &len);
    CHECK(len == 93);
    free(msg);

    CORRUPT_AT(v, 19, "offset 19: proxy ndim 12 > 8", 12);
    CORRUPT_AT(v, 17, "offset 17: proxy kind 3", 3);
    CORRUPT_AT(v, 18, "offset 18: proxy dtype 0 out of range", 0);
    CORRUPT_AT(v, 18, "offset 18: proxy dtype 14 out of range", 14);
    CORRUPT_AT(v, 20, "offset 20: proxy src_device -2 < -1", 0xFE, 0xFF, 0xFF, 0xFF);
    CORRUPT_AT(v, 32, "offset 32: proxy shape[1] = -1 is negative", 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
               0xFF, 0xFF, 0xFF);
    CORRUPT_AT(v, 40, "offset 40: proxy strides[0] = -9223372036854775808", 0, 0, 0, 0, 0, 0, 0,
               0x80);
    CORRUPT_AT(v, 56, "offset 56: proxy nbytes 49 != layout span 48", 49);
    CORRUPT_AT(v, 56, "offset 56: proxy nbytes 0 != layout span 48", 0);
    CORRUPT_AT(v, 24, "offset 56: proxy layout", 0, 0, 0, 0, 0, 0, 0, 0x40); /* span overflow */
    CORRUPT_AT(v, 72, "offset 72: proxy memory kind 3", 3);
    CORRUPT_AT(v, 72, "offset 64: proxy host pool with pool_device 1", CUIPC_MEMORY_HOST);
    CORRUPT_AT(v, 73, "offset 64: proxy CUDA pool with pool_device -1", 0xFF, 0xFF, 0xFF, 0xFF);
    CORRUPT_AT(v, 85, "proxy pool offset 18446744073709551615 + nbytes 48 overflows", 0xFF, 0xFF,
               0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF);
    CORRUPT_AT(v, 16, "offset 16: unknown value tag 0", 0);
    CORRUPT_AT(v, 16, "offset 16: unknown value tag 10", 10);
    CORRUPT_AT(v, 16, "offset 17: 76 trailing bytes", TAG_NULL);
    cuipc_value_free(v);

    /* IPC proxy: tag 16, kind 17, layout 18..(ndim 1: 18 dtype, 19 ndim, 20 dev, 24 shape,
     * 32 stride, 40 nbytes), 48 handle, 112 export_id, 120 alloc_size, 128 offset, 136 device. */
    memset(&p, 0, sizeof p);
    p.kind = CUIPC_PROXY_IPC;
    p.layout.dtype = CUIPC_DTYPE_U8;
    p.layout.ndim = 1;
    p.layout.shape[0] = 100;
    p.layout.strides[0] = 1;
    p.nbytes = 100;
    p.u.ipc.alloc_size = 1000;
    p.u.ipc.offset = 900;
    v = cuipc_value_proxy(&p);
    CORRUPT_AT(v, 128, "offset 48: proxy ipc offset 901 + nbytes 100 > alloc_size 1000", 0x85,
               0x03);
    CORRUPT_AT(v, 128, "proxy ipc offset 1001 + nbytes 100 > alloc_size 1000", 0xE9, 0x03);
    CORRUPT_AT(v, 136, "offset 48: proxy ipc device -1", 0xFF, 0xFF, 0xFF, 0xFF);
    cuipc_value_free(v);

    /* Scalars and text. */
    const uint8_t bool2[] = {TAG_BOOL, 2};
    const uint8_t nul_string[] = {TAG_STRING, 3, 0, 0, 0, 'a', 0, 'b'};
    const uint8_t nul_key[] = {TAG_DICT, 1, 0, 0, 0, 2, 0, 0, 0, 'k', 0, TAG_NULL};
    const uint8_t dup_keys[] = {TAG_DICT, 2, 0,   0,       0, 1, 0, 0, 0, 'a', TAG_NULL, 1, 0,
                                0,        0, 'a', TAG_INT, 1, 0, 0, 0, 0, 0,   0,        0};
    const uint8_t short_int[] = {TAG_INT, 1, 2, 3};
    const struct {
        const uint8_t *body;
        size_t n;
        const char *needle;
    } cases[] = {
        {bool2, sizeof bool2, "offset 17: bool byte 2"},
        {nul_string, sizeof nul_string, "offset 22: string contains a NUL byte"},
        {nul_key, sizeof nul_key, "offset 26: dict key contains a NUL byte"},
        {dup_keys, sizeof dup_keys, "offset 27: dict key \"a\" repeated"},
        {short_int, sizeof short_int, "offset 17: int64 needs 8 bytes, 3 left"},
        {NULL, 0, "offset 16: value tag needs 1 bytes, 0 left"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *m = make_message(cases[i].body, cases[i].n, &len);
        EXPECT_CORRUPT(m, len, cases[i].needle);
        free(m);
    }

    /* Strings over CUIPC_VALUE_MAX_STRING are refused even when the bytes are there. */
    size_t n = (size_t)CUIPC_VALUE_MAX_STRING + 1;
    uint8_t *body = malloc(5 + n);
    REQUIRE(body);
    body[0] = TAG_STRING;
    put32(body + 1, (uint32_t)n);
    memset(body + 5, 'x', n);
    uint8_t *m = make_message(body, 5 + n, &len);
    EXPECT_CORRUPT(m, len, "offset 17: string length 1048577 > limit 1048576");
    free(m);
    free(body);
}

static void test_encoder_refusals(void) {
    float data[4] = {0};
    cuipc_tensor t;
    int64_t shape[1] = {4};
    REQUIRE(cuipc_tensor_init(&t, data, CUIPC_DEVICE_HOST, CUIPC_DTYPE_F32, 1, shape) == CUIPC_OK);
    cuipc_value *root = cuipc_value_dict();
    REQUIRE(cuipc_dict_set(root, "t", cuipc_value_tensor(&t, CUIPC_OWNER_NONE)) == CUIPC_OK);
    size_t size = 0, len = 0;
    uint8_t buf[256];
    CHECK_STATUS(cuipc_encoded_size(root, &size), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "wrap tensors into proxies first") != NULL);
    CHECK_STATUS(cuipc_encode(root, buf, sizeof buf, &len), CUIPC_ERR_INVALID_ARG);
    cuipc_value_free(root);

    /* An inconsistent proxy is refused before it leaves. */
    cuipc_proxy p;
    memset(&p, 0, sizeof p);
    p.kind = CUIPC_PROXY_POOL;
    p.layout.dtype = CUIPC_DTYPE_U8;
    p.layout.ndim = 1;
    p.layout.shape[0] = 10;
    p.layout.strides[0] = 1;
    p.nbytes = 11;
    p.u.pool.memory = CUIPC_MEMORY_HOST;
    p.u.pool.pool_device = CUIPC_DEVICE_HOST;
    cuipc_value *v = cuipc_value_proxy(&p);
    CHECK_STATUS(cuipc_encode(v, buf, sizeof buf, &len), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "nbytes 11 != layout span 10") != NULL);
    cuipc_value_free(v);

    /* Messages are capped: 64 MiB of bytes do not fit with the header. */
    uint8_t *big = calloc(1, CUIPC_WIRE_MAX_MESSAGE);
    REQUIRE(big);
    v = cuipc_value_bytes(big, CUIPC_WIRE_MAX_MESSAGE);
    free(big);
    REQUIRE(v);
    CHECK_STATUS(cuipc_encoded_size(v, &size), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "limit") != NULL);
    /* Nor into a caller's buffer with room past the limit: every decoder would refuse it. */
    size_t roomy = (size_t)CUIPC_WIRE_MAX_MESSAGE + 4096;
    uint8_t *out = malloc(roomy);
    REQUIRE(out);
    CHECK_STATUS(cuipc_encode(v, out, roomy, &len), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "message limit") != NULL);
    free(out);
    cuipc_value_free(v);

    v = cuipc_value_null();
    CHECK_STATUS(cuipc_encode(v, buf, 16, &len), CUIPC_ERR_INVALID_ARG); /* needs 17 */
    CHECK(strstr(cuipc_last_error(), "needs 17") != NULL);
    CHECK_STATUS(cuipc_encode(v, NULL, 64, &len), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_encode(v, buf, sizeof buf, NULL), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_encoded_size(NULL, &size), CUIPC_ERR_INVALID_ARG);
    CHECK_OK(cuipc_encode(v, buf, 17, &len));
    CHECK(len == 17 && buf[HDR] == TAG_NULL);
    cuipc_value_free(v);
}

/* The proxies a hook saw, in order (at most 64), and a failure to give at the n-th. */
typedef struct seen_proxies {
    cuipc_proxy p[64];
    int n;
    int fail_at; /* 1-based; 0: never */
} seen_proxies;

static cuipc_status see_proxy(const cuipc_proxy *p, void *ctx) {
    seen_proxies *s = ctx;
    if (++s->n == s->fail_at)
        return CUIPC_FAIL(CUIPC_ERR_STALE, "hook refuses proxy %d", s->n);
    if (s->n <= 64)
        s->p[s->n - 1] = *p;
    return CUIPC_OK;
}

static cuipc_status count_proxy(cuipc_value *node, void *ctx) {
    *(int *)ctx += cuipc_value_kind_of(node) == CUIPC_VALUE_PROXY;
    return CUIPC_OK;
}

static bool same_proxy(const cuipc_proxy *a, const cuipc_proxy *b) {
    return a->kind == b->kind && a->nbytes == b->nbytes &&
           !memcmp(&a->layout, &b->layout, sizeof a->layout) &&
           (a->kind == CUIPC_PROXY_POOL
                ? a->u.pool.slot == b->u.pool.slot &&
                      a->u.pool.generation == b->u.pool.generation &&
                      a->u.pool.offset == b->u.pool.offset && a->u.pool.pool_id == b->u.pool.pool_id
                : a->u.ipc.export_id == b->u.ipc.export_id && a->u.ipc.offset == b->u.ipc.offset);
}

/* cuipc_encode_alloc writes what cuipc_encode writes, growing its buffer as needed; the hooks of
 * encode and decode see every proxy once, in tree order, and a hook's failure is the call's. */
static void test_own_buffer_and_hooks(void) {
    for (uint64_t seed = 1; seed <= 200; seed++) {
        cuipc_value *tree = random_tree(seed);
        size_t len, len2;
        uint8_t *want = encode_alloc(tree, &len);
        void *got = NULL;
        seen_proxies enc = {.n = 0}, dec = {.n = 0};
        CHECK_OK(cuipc_encode_alloc(tree, see_proxy, &enc, &got, &len2));
        CHECK(got && len2 == len && memcmp(want, got, len) == 0);
        int proxies = 0;
        CHECK_OK(cuipc_value_visit(tree, count_proxy, &proxies));
        CHECK(enc.n == proxies && proxies >= 2 && proxies <= 64);
        cuipc_value *back = NULL;
        CHECK_OK(cuipc_decode_with(want, len, see_proxy, &dec, &back));
        CHECK(back && values_equal(tree, back) && dec.n == enc.n);
        for (int i = 0; i < enc.n && i < dec.n; i++)
            CHECK(same_proxy(&enc.p[i], &dec.p[i]));
        cuipc_value_free(back);
        /* A hook that refuses the second proxy fails the call with its status and message. */
        seen_proxies refuse = {.fail_at = 2};
        CHECK_STATUS(cuipc_decode_with(want, len, see_proxy, &refuse, &back), CUIPC_ERR_STALE);
        CHECK(back == NULL && strstr(cuipc_last_error(), "hook refuses proxy 2") != NULL);
        refuse.n = 0;
        free(got);
        CHECK_STATUS(cuipc_encode_alloc(tree, see_proxy, &refuse, &got, &len2), CUIPC_ERR_STALE);
        CHECK(got == NULL && len2 == 0);
        free(want);
        cuipc_value_free(tree);
    }

    /* Past the first 4 KiB the buffer grows; past the message limit the encode is refused. */
    size_t n = 300u << 10, len, len2;
    uint8_t *blob = calloc(1, CUIPC_WIRE_MAX_MESSAGE);
    REQUIRE(blob);
    for (size_t i = 0; i < n; i++)
        blob[i] = (uint8_t)(i * 7);
    cuipc_value *list = cuipc_value_list();
    REQUIRE(cuipc_list_append(list, cuipc_value_string("head")) == CUIPC_OK);
    REQUIRE(cuipc_list_append(list, cuipc_value_bytes(blob, n)) == CUIPC_OK);
    uint8_t *want = encode_alloc(list, &len);
    void *got = NULL;
    CHECK_OK(cuipc_encode_alloc(list, NULL, NULL, &got, &len2));
    CHECK(got && len2 == len && memcmp(want, got, len) == 0);
    free(got);
    free(want);
    /* One-pass cuipc_encode short of room still names what the tree needs... */
    uint8_t small[64];
    CHECK_STATUS(cuipc_encode(list, small, sizeof small, &len2), CUIPC_ERR_INVALID_ARG);
    char needs[64];
    snprintf(needs, sizeof needs, "encoding needs %zu", len);
    CHECK(strstr(cuipc_last_error(), needs) != NULL);
    /* ...or what cannot be encoded, when the rest of the tree holds a tensor. */
    float data[4] = {0};
    cuipc_tensor t;
    REQUIRE(cuipc_tensor_init(&t, data, CUIPC_DEVICE_HOST, CUIPC_DTYPE_F32, 1,
                              (const int64_t[]){4}) == CUIPC_OK);
    REQUIRE(cuipc_list_append(list, cuipc_value_tensor(&t, CUIPC_OWNER_NONE)) == CUIPC_OK);
    CHECK_STATUS(cuipc_encode(list, small, sizeof small, &len2), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "wrap tensors into proxies first") != NULL);
    CHECK_STATUS(cuipc_encode_alloc(list, NULL, NULL, &got, &len2), CUIPC_ERR_INVALID_ARG);
    CHECK(got == NULL && strstr(cuipc_last_error(), "wrap tensors into proxies first") != NULL);
    cuipc_value_free(list);
    cuipc_value *big = cuipc_value_bytes(blob, CUIPC_WIRE_MAX_MESSAGE);
    free(blob);
    REQUIRE(big);
    CHECK_STATUS(cuipc_encode_alloc(big, NULL, NULL, &got, &len2), CUIPC_ERR_INVALID_ARG);
    CHECK(got == NULL && strstr(cuipc_last_error(), "message limit") != NULL);
    cuipc_value_free(big);
}

int main(void) {
    test_exact_layout();
    test_round_trips();
    test_truncations();
    test_bit_flips();
    test_forged_counts();
    test_depth_bombs();
    test_header_checks();
    test_field_checks();
    test_encoder_refusals();
    test_own_buffer_and_hooks();
    return cuipc_test_finish("test_codec");
}
