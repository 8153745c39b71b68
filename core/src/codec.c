/* Binary encoding of value trees.
 *
 * Header (16 bytes): "CUIP", u16 version, u16 flags (0), u32 body length, u32 CRC-32C of the
 * body. Body: one tagged value, tag-length-value, every integer little-endian and fixed width:
 *   NULL | BOOL u8(0/1) | INT i64 | FLOAT f64 bits | STRING u32 len, bytes (no NUL) |
 *   BYTES u32 len, bytes | LIST u32 count, values | DICT u32 count, (u32 len, key bytes, value)* |
 *   PROXY u8 kind, layout (u8 dtype, u8 ndim, i32 src_device, i64 shape[ndim], i64 strides[ndim],
 *         u64 nbytes), then POOL: u64 pool_id, u8 memory, i32 pool_device, u32 slot,
 *         u32 generation, u64 offset; or IPC: 64-byte handle, u64 export_id, u64 alloc_size,
 *         u64 offset, i32 device, u64 producer_id.
 * The encoding is canonical (one byte string per tree) and the decoder accepts only canonical
 * input, so decode(encode(t)) == t and encode(decode(m)) == m for every accepted m. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "error_internal.h"

enum {
    CUIPC_TAG_NULL = 1, /* 0 is left unused so zeroed memory never decodes */
    CUIPC_TAG_BOOL,
    CUIPC_TAG_INT,
    CUIPC_TAG_FLOAT,
    CUIPC_TAG_STRING,
    CUIPC_TAG_BYTES,
    CUIPC_TAG_LIST,
    CUIPC_TAG_DICT,
    CUIPC_TAG_PROXY,
};

static const uint8_t wire_magic[4] = {'C', 'U', 'I', 'P'};

/* Smallest encodings, used to bound counts by the bytes that remain. */
#define CUIPC_MIN_VALUE_BYTES 1      /* a bare tag */
#define CUIPC_MIN_DICT_ENTRY_BYTES 5 /* u32 key length + a tag */
#define CUIPC_LAYOUT_FIXED_BYTES 14  /* dtype, ndim, src_device, nbytes */
#define CUIPC_POOL_FIELDS_BYTES 29
#define CUIPC_IPC_FIELDS_BYTES (CUIPC_IPC_HANDLE_BYTES + 36)

/* ---- CRC-32C (Castagnoli), slicing by 8 ------------------------------------------------ */

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init_tables(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc32c(const uint8_t *p, size_t n) {
    pthread_once(&crc_once, crc_init_tables);
    uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
            crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return c ^ 0xFFFFFFFFu;
}

/* ---- little-endian helpers ------------------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- proxy checks shared by encoder and decoder ---------------------------------------- */

/* The problems below fill `why` with the field name and values, and return it (NULL: fine). */

/* Layout checks: kind, dtype, ndim, signs, and nbytes against the span the layout implies. */
static const char *proxy_layout_problem(const cuipc_proxy *p, char *why, size_t why_size) {
    const cuipc_tensor_layout *l = &p->layout;
    if (p->kind != CUIPC_PROXY_POOL && p->kind != CUIPC_PROXY_IPC) {
        snprintf(why, why_size, "proxy kind %d is neither POOL (1) nor IPC (2)", (int)p->kind);
        return why;
    }
    if ((int)l->dtype <= CUIPC_DTYPE_INVALID || (int)l->dtype >= CUIPC_DTYPE_COUNT_) {
        snprintf(why, why_size, "proxy dtype %d out of range 1..%d", (int)l->dtype,
                 CUIPC_DTYPE_COUNT_ - 1);
        return why;
    }
    if (l->ndim < 0 || l->ndim > CUIPC_MAX_DIMS) {
        snprintf(why, why_size, "proxy ndim %d > %d", (int)l->ndim, CUIPC_MAX_DIMS);
        return why;
    }
    if (l->src_device < CUIPC_DEVICE_HOST) {
        snprintf(why, why_size, "proxy src_device %d < -1", (int)l->src_device);
        return why;
    }
    cuipc_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = l->dtype;
    t.ndim = l->ndim;
    t.device = l->src_device;
    memcpy(t.shape, l->shape, sizeof t.shape);
    memcpy(t.strides, l->strides, sizeof t.strides);
    if (cuipc_tensor_validate(&t) != CUIPC_OK) {
        snprintf(why, why_size, "proxy layout: %s", cuipc_last_error());
        return why;
    }
    uint64_t span = cuipc_tensor_span_bytes(&t);
    if (p->nbytes != span) {
        snprintf(why, why_size, "proxy nbytes %llu != layout span %llu",
                 (unsigned long long)p->nbytes, (unsigned long long)span);
        return why;
    }
    return NULL;
}

/* Transport checks: memory kind and device of a pool, offset and size of an IPC allocation. */
static const char *proxy_transport_problem(const cuipc_proxy *p, char *why, size_t why_size) {
    if (p->kind == CUIPC_PROXY_POOL) {
        if (p->u.pool.memory != CUIPC_MEMORY_HOST && p->u.pool.memory != CUIPC_MEMORY_CUDA) {
            snprintf(why, why_size, "proxy memory kind %d is neither HOST (1) nor CUDA (2)",
                     (int)p->u.pool.memory);
            return why;
        }
        if (p->u.pool.memory == CUIPC_MEMORY_HOST && p->u.pool.pool_device != CUIPC_DEVICE_HOST) {
            snprintf(why, why_size, "proxy host pool with pool_device %d (want -1)",
                     (int)p->u.pool.pool_device);
            return why;
        }
        if (p->u.pool.memory == CUIPC_MEMORY_CUDA && p->u.pool.pool_device < 0) {
            snprintf(why, why_size, "proxy CUDA pool with pool_device %d",
                     (int)p->u.pool.pool_device);
            return why;
        }
        if (p->u.pool.offset > UINT64_MAX - p->nbytes) {
            snprintf(why, why_size, "proxy pool offset %llu + nbytes %llu overflows",
                     (unsigned long long)p->u.pool.offset, (unsigned long long)p->nbytes);
            return why;
        }
        return NULL;
    }
    if (p->u.ipc.device < 0) {
        snprintf(why, why_size, "proxy ipc device %d is not an ordinal", (int)p->u.ipc.device);
        return why;
    }
    if (p->u.ipc.offset > p->u.ipc.alloc_size ||
        p->nbytes > p->u.ipc.alloc_size - p->u.ipc.offset) {
        snprintf(why, why_size, "proxy ipc offset %llu + nbytes %llu > alloc_size %llu",
                 (unsigned long long)p->u.ipc.offset, (unsigned long long)p->nbytes,
                 (unsigned long long)p->u.ipc.alloc_size);
        return why;
    }
    return NULL;
}

static size_t proxy_wire_size(const cuipc_proxy *p) {
    size_t n = 2 + CUIPC_LAYOUT_FIXED_BYTES + 16 * (size_t)p->layout.ndim; /* tag, kind */
    return n + (p->kind == CUIPC_PROXY_POOL ? CUIPC_POOL_FIELDS_BYTES : CUIPC_IPC_FIELDS_BYTES);
}

/* ---- encoder --------------------------------------------------------------------------- */

/* What the encoder refuses at a leaf. */
static cuipc_status tensor_refused(void) {
    return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                      "tree holds a tensor node: wrap tensors into proxies first");
}

static cuipc_status check_encodable(const cuipc_proxy *p) {
    char why[160];
    if (proxy_layout_problem(p, why, sizeof why) || proxy_transport_problem(p, why, sizeof why))
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "cannot encode: %s", why);
    return CUIPC_OK;
}

/* The encoder checks as it writes, in one walk of the tree: into the caller's buffer, or into
 * one of its own that doubles when full. */
typedef struct cuipc_writer {
    uint8_t *buf;
    size_t pos, cap; /* pos counts the header too */
    bool own;        /* buf is the writer's: grown on demand */
    bool short_cap;  /* the caller's buffer is too small (cuipc_encode says how much is needed) */
    cuipc_codec_proxy_fn on_proxy;
    void *ctx;
} cuipc_writer;

/* Room for n more bytes, within the message limit. */
static cuipc_status reserve(cuipc_writer *w, size_t n) {
    /* The limit first: a caller's buffer with room past it would otherwise take bytes every
     * decoder refuses as corrupt. */
    if (n > CUIPC_WIRE_MAX_MESSAGE - w->pos)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "encoding needs more than the %u-byte message limit",
                          CUIPC_WIRE_MAX_MESSAGE);
    if (n <= w->cap - w->pos)
        return CUIPC_OK;
    if (!w->own) {
        w->short_cap = true;
        return CUIPC_ERR_INVALID_ARG;
    }
    size_t cap = 2 * w->cap > w->pos + n ? 2 * w->cap : w->pos + n;
    uint8_t *grown = realloc(w->buf, cap);
    if (!grown)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "message buffer of %zu bytes", cap);
    w->buf = grown;
    w->cap = cap;
    return CUIPC_OK;
}

/* The writes below go through a local cursor (a store through a byte pointer could change
 * w->buf or w->pos for all the compiler knows, so they would be reloaded at every byte), after a
 * reserve() of their bytes. */
static uint8_t *put(uint8_t *o, uint64_t v, int bytes) {
    put_le(o, v, bytes);
    return o + bytes;
}

static uint8_t *put_raw(uint8_t *o, const void *src, size_t n) {
    if (n)
        memcpy(o, src, n);
    return o + n;
}

static uint8_t *put_proxy(uint8_t *o, const cuipc_proxy *p) {
    const cuipc_tensor_layout *l = &p->layout;
    o = put(o, CUIPC_TAG_PROXY, 1);
    o = put(o, (uint64_t)p->kind, 1);
    o = put(o, (uint64_t)l->dtype, 1);
    o = put(o, (uint64_t)l->ndim, 1);
    o = put(o, (uint32_t)l->src_device, 4);
    for (int32_t i = 0; i < l->ndim; i++)
        o = put(o, (uint64_t)l->shape[i], 8);
    for (int32_t i = 0; i < l->ndim; i++)
        o = put(o, (uint64_t)l->strides[i], 8);
    o = put(o, p->nbytes, 8);
    if (p->kind == CUIPC_PROXY_POOL) {
        o = put(o, p->u.pool.pool_id, 8);
        o = put(o, (uint64_t)p->u.pool.memory, 1);
        o = put(o, (uint32_t)p->u.pool.pool_device, 4);
        o = put(o, p->u.pool.slot, 4);
        o = put(o, p->u.pool.generation, 4);
        return put(o, p->u.pool.offset, 8);
    }
    o = put_raw(o, p->u.ipc.handle, CUIPC_IPC_HANDLE_BYTES);
    o = put(o, p->u.ipc.export_id, 8);
    o = put(o, p->u.ipc.alloc_size, 8);
    o = put(o, p->u.ipc.offset, 8);
    o = put(o, (uint32_t)p->u.ipc.device, 4);
    return put(o, p->u.ipc.producer_id, 8);
}

/* A tag and a u32 length or count. */
static uint8_t *put_head(uint8_t *o, int tag, size_t n) {
    return put(put(o, (uint64_t)tag, 1), n, 4);
}

/* The cursor at the end of what is written, and back. */
static uint8_t *cursor(const cuipc_writer *w) {
    return w->buf + w->pos;
}

static void advance(cuipc_writer *w, const uint8_t *o) {
    w->pos = (size_t)(o - w->buf);
}

/* Write v, refusing everything the decoder would refuse. level counts from 1. */
static cuipc_status write_value(cuipc_writer *w, const cuipc_value *v, int level) {
    if (level > CUIPC_VALUE_MAX_DEPTH)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "tree deeper than %d levels",
                          CUIPC_VALUE_MAX_DEPTH);
    cuipc_value_kind kind = cuipc_value_kind_of(v);
    switch (kind) {
    case CUIPC_VALUE_NULL:
        CUIPC_TRY(reserve(w, 1));
        advance(w, put(cursor(w), CUIPC_TAG_NULL, 1));
        return CUIPC_OK;
    case CUIPC_VALUE_BOOL:
        CUIPC_TRY(reserve(w, 2));
        advance(w, put(put(cursor(w), CUIPC_TAG_BOOL, 1), cuipc_value_as_bool(v) ? 1 : 0, 1));
        return CUIPC_OK;
    case CUIPC_VALUE_INT:
        CUIPC_TRY(reserve(w, 9));
        advance(w, put(put(cursor(w), CUIPC_TAG_INT, 1), (uint64_t)cuipc_value_as_int(v), 8));
        return CUIPC_OK;
    case CUIPC_VALUE_FLOAT: {
        double f = cuipc_value_as_float(v);
        uint64_t bits;
        memcpy(&bits, &f, sizeof bits);
        CUIPC_TRY(reserve(w, 9));
        advance(w, put(put(cursor(w), CUIPC_TAG_FLOAT, 1), bits, 8));
        return CUIPC_OK;
    }
    case CUIPC_VALUE_STRING: {
        const char *s = cuipc_value_as_string(v);
        size_t n = strlen(s);
        CUIPC_TRY(reserve(w, 5 + n));
        advance(w, put_raw(put_head(cursor(w), CUIPC_TAG_STRING, n), s, n));
        return CUIPC_OK;
    }
    case CUIPC_VALUE_BYTES: {
        size_t n;
        const void *p = cuipc_value_as_bytes(v, &n);
        if (n > UINT32_MAX)
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "bytes value of %zu bytes is too large", n);
        CUIPC_TRY(reserve(w, 5 + n));
        advance(w, put_raw(put_head(cursor(w), CUIPC_TAG_BYTES, n), p, n));
        return CUIPC_OK;
    }
    case CUIPC_VALUE_LIST: {
        size_t count = cuipc_value_len(v);
        CUIPC_TRY(reserve(w, 5));
        advance(w, put_head(cursor(w), CUIPC_TAG_LIST, count));
        for (size_t i = 0; i < count; i++)
            CUIPC_TRY(write_value(w, cuipc_list_get(v, i), level + 1));
        return CUIPC_OK;
    }
    case CUIPC_VALUE_DICT: {
        size_t count = cuipc_value_len(v);
        CUIPC_TRY(reserve(w, 5));
        advance(w, put_head(cursor(w), CUIPC_TAG_DICT, count));
        for (size_t i = 0; i < count; i++) {
            const char *key = cuipc_dict_key_at(v, i);
            size_t n = strlen(key);
            CUIPC_TRY(reserve(w, 4 + n));
            advance(w, put_raw(put(cursor(w), n, 4), key, n));
            CUIPC_TRY(write_value(w, cuipc_dict_value_at(v, i), level + 1));
        }
        return CUIPC_OK;
    }
    case CUIPC_VALUE_TENSOR:
        return tensor_refused();
    case CUIPC_VALUE_PROXY: {
        const cuipc_proxy *p = cuipc_value_as_proxy(v);
        CUIPC_TRY(check_encodable(p));
        CUIPC_TRY(reserve(w, proxy_wire_size(p))); /* the tag included */
        advance(w, put_proxy(cursor(w), p));
        return w->on_proxy ? w->on_proxy(p, w->ctx) : CUIPC_OK;
    }
    }
    return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "value kind %d cannot be encoded", (int)kind);
}

/* Write the tree after the header, then the header; *len: the message's bytes. */
static cuipc_status write_message(cuipc_writer *w, const cuipc_value *v, size_t *len) {
    if (!v)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "value is NULL");
    w->pos = CUIPC_WIRE_HEADER_BYTES;
    CUIPC_TRY(write_value(w, v, 1));
    size_t body = w->pos - CUIPC_WIRE_HEADER_BYTES;
    memcpy(w->buf, wire_magic, sizeof wire_magic);
    put_le(w->buf + 4, CUIPC_WIRE_VERSION, 2);
    put_le(w->buf + 6, 0, 2);
    put_le(w->buf + 8, body, 4);
    put_le(w->buf + 12, crc32c(w->buf + CUIPC_WIRE_HEADER_BYTES, body), 4);
    *len = w->pos;
    return CUIPC_OK;
}

cuipc_status cuipc_encode(const cuipc_value *v, void *buf, size_t cap, size_t *len) {
    if (!buf || !len)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s is NULL", buf ? "len" : "buf");
    cuipc_writer w = {.buf = buf, .cap = cap};
    cuipc_status s = cap < CUIPC_WIRE_HEADER_BYTES ? CUIPC_ERR_INVALID_ARG : CUIPC_OK;
    w.short_cap = s != CUIPC_OK;
    if (s == CUIPC_OK)
        s = write_message(&w, v, len);
    if (!w.short_cap)
        return s;
    /* Out of room: what the whole tree needs, unless the rest of it cannot be encoded. */
    size_t total;
    CUIPC_TRY(cuipc_encoded_size(v, &total));
    return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "buffer of %zu bytes, encoding needs %zu", cap, total);
}

cuipc_status cuipc_encode_alloc(const cuipc_value *v, cuipc_codec_proxy_fn on_proxy, void *ctx,
                                void **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    cuipc_writer w = {.cap = 4096, .own = true, .on_proxy = on_proxy, .ctx = ctx};
    w.buf = malloc(w.cap);
    if (!w.buf)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "message buffer of %zu bytes", w.cap);
    cuipc_status s = write_message(&w, v, len);
    if (s != CUIPC_OK) {
        free(w.buf);
        return s;
    }
    *buf = w.buf;
    return CUIPC_OK;
}

/* The size is what the encoding takes: it is written (into a buffer of the encoder's own), so
 * it refuses exactly what cuipc_encode refuses, with the same messages. */
cuipc_status cuipc_encoded_size(const cuipc_value *v, size_t *out) {
    if (!v || !out)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s is NULL", v ? "out" : "value");
    void *buf;
    CUIPC_TRY(cuipc_encode_alloc(v, NULL, NULL, &buf, out));
    free(buf);
    return CUIPC_OK;
}

/* ---- decoder --------------------------------------------------------------------------- */

typedef struct cuipc_reader {
    const uint8_t *buf;
    size_t pos, end; /* pos <= end always; every read checks remaining() first */
    cuipc_codec_proxy_fn on_proxy;
    void *ctx;
} cuipc_reader;

/* Set "cuipc_decode: offset N: what" and return code. */
static cuipc_status decode_fail(cuipc_status code, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static cuipc_status decode_fail(cuipc_status code, size_t offset, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cuipc_error_set(code, "cuipc_decode", "offset %zu: %s", offset, what);
}

#define CORRUPT(offset, ...) decode_fail(CUIPC_ERR_CORRUPT, (offset), __VA_ARGS__)

static size_t remaining(const cuipc_reader *r) {
    return r->end - r->pos;
}

/* Read a little-endian integer of `bytes` bytes named `field`, or fail naming the offset. */
static cuipc_status read_int(cuipc_reader *r, int bytes, const char *field, uint64_t *out) {
    *out = 0; /* defined even on failure: keeps callers simple for the compiler too */
    if (remaining(r) < (size_t)bytes)
        return CORRUPT(r->pos, "%s needs %d bytes, %zu left", field, bytes, remaining(r));
    *out = get_le(r->buf + r->pos, bytes);
    r->pos += (size_t)bytes;
    return CUIPC_OK;
}

static cuipc_status read_i64(cuipc_reader *r, const char *field, int64_t *out) {
    uint64_t u;
    CUIPC_TRY(read_int(r, 8, field, &u));
    memcpy(out, &u, sizeof *out); /* two's complement reinterpretation */
    return CUIPC_OK;
}

static cuipc_status read_i32(cuipc_reader *r, const char *field, int32_t *out) {
    uint64_t u;
    CUIPC_TRY(read_int(r, 4, field, &u));
    uint32_t u32 = (uint32_t)u;
    memcpy(out, &u32, sizeof *out);
    return CUIPC_OK;
}

/* A u32 length followed by that many bytes, all inside the message; NUL bytes refused for text. */
static cuipc_status read_span(cuipc_reader *r, const char *field, bool text, uint32_t limit,
                              const uint8_t **data, size_t *n) {
    size_t at = r->pos;
    *data = NULL;
    *n = 0;
    uint64_t len;
    CUIPC_TRY(read_int(r, 4, field, &len));
    if (len > limit)
        return CORRUPT(at, "%s length %llu > limit %u", field, (unsigned long long)len, limit);
    if (len > remaining(r))
        return CORRUPT(at, "%s length %llu > %zu bytes left", field, (unsigned long long)len,
                       remaining(r));
    const uint8_t *p = r->buf + r->pos;
    if (text) {
        const uint8_t *nul = memchr(p, 0, (size_t)len);
        if (nul)
            return CORRUPT(r->pos + (size_t)(nul - p), "%s contains a NUL byte", field);
    }
    r->pos += (size_t)len;
    *data = p;
    *n = (size_t)len;
    return CUIPC_OK;
}

/* A u32 element count that the remaining bytes could actually hold. */
static cuipc_status read_count(cuipc_reader *r, const char *field, size_t min_item_bytes,
                               size_t *count) {
    size_t at = r->pos;
    *count = 0;
    uint64_t n;
    CUIPC_TRY(read_int(r, 4, field, &n));
    if (n > remaining(r) / min_item_bytes)
        return CORRUPT(at, "%s %llu cannot fit in the %zu bytes left", field, (unsigned long long)n,
                       remaining(r));
    *count = (size_t)n;
    return CUIPC_OK;
}

static cuipc_status read_proxy(cuipc_reader *r, cuipc_proxy *p) {
    size_t start = r->pos;
    uint64_t u;
    memset(p, 0, sizeof *p);
    CUIPC_TRY(read_int(r, 1, "proxy kind", &u));
    if (u != CUIPC_PROXY_POOL && u != CUIPC_PROXY_IPC)
        return CORRUPT(start, "proxy kind %llu is neither POOL (1) nor IPC (2)",
                       (unsigned long long)u);
    p->kind = (cuipc_proxy_kind)u;
    size_t at = r->pos;
    CUIPC_TRY(read_int(r, 1, "proxy dtype", &u));
    if (u <= CUIPC_DTYPE_INVALID || u >= CUIPC_DTYPE_COUNT_)
        return CORRUPT(at, "proxy dtype %llu out of range 1..%d", (unsigned long long)u,
                       CUIPC_DTYPE_COUNT_ - 1);
    p->layout.dtype = (cuipc_dtype)u;
    at = r->pos;
    CUIPC_TRY(read_int(r, 1, "proxy ndim", &u));
    if (u > CUIPC_MAX_DIMS)
        return CORRUPT(at, "proxy ndim %llu > %d", (unsigned long long)u, CUIPC_MAX_DIMS);
    p->layout.ndim = (int32_t)u;
    at = r->pos;
    CUIPC_TRY(read_i32(r, "proxy src_device", &p->layout.src_device));
    if (p->layout.src_device < CUIPC_DEVICE_HOST)
        return CORRUPT(at, "proxy src_device %d < -1", (int)p->layout.src_device);
    for (int pass = 0; pass < 2; pass++) {
        int64_t *dims = pass == 0 ? p->layout.shape : p->layout.strides;
        const char *name = pass == 0 ? "shape" : "strides";
        for (int32_t i = 0; i < p->layout.ndim; i++) {
            at = r->pos;
            CUIPC_TRY(read_i64(r, pass == 0 ? "proxy shape" : "proxy strides", &dims[i]));
            if (dims[i] < 0)
                return CORRUPT(at, "proxy %s[%d] = %lld is negative", name, (int)i,
                               (long long)dims[i]);
        }
    }
    size_t nbytes_at = r->pos;
    CUIPC_TRY(read_int(r, 8, "proxy nbytes", &p->nbytes));
    size_t fields_at = r->pos;
    if (p->kind == CUIPC_PROXY_POOL) {
        CUIPC_TRY(read_int(r, 8, "proxy pool_id", &p->u.pool.pool_id));
        at = r->pos;
        CUIPC_TRY(read_int(r, 1, "proxy memory kind", &u));
        if (u != CUIPC_MEMORY_HOST && u != CUIPC_MEMORY_CUDA)
            return CORRUPT(at, "proxy memory kind %llu is neither HOST (1) nor CUDA (2)",
                           (unsigned long long)u);
        p->u.pool.memory = (cuipc_memory_kind)u;
        CUIPC_TRY(read_i32(r, "proxy pool_device", &p->u.pool.pool_device));
        CUIPC_TRY(read_int(r, 4, "proxy slot", &u));
        p->u.pool.slot = (uint32_t)u;
        CUIPC_TRY(read_int(r, 4, "proxy generation", &u));
        p->u.pool.generation = (uint32_t)u;
        CUIPC_TRY(read_int(r, 8, "proxy pool offset", &p->u.pool.offset));
    } else {
        if (remaining(r) < CUIPC_IPC_HANDLE_BYTES)
            return CORRUPT(r->pos, "proxy ipc handle needs %d bytes, %zu left",
                           CUIPC_IPC_HANDLE_BYTES, remaining(r));
        memcpy(p->u.ipc.handle, r->buf + r->pos, CUIPC_IPC_HANDLE_BYTES);
        r->pos += CUIPC_IPC_HANDLE_BYTES;
        CUIPC_TRY(read_int(r, 8, "proxy export_id", &p->u.ipc.export_id));
        CUIPC_TRY(read_int(r, 8, "proxy alloc_size", &p->u.ipc.alloc_size));
        CUIPC_TRY(read_int(r, 8, "proxy ipc offset", &p->u.ipc.offset));
        CUIPC_TRY(read_i32(r, "proxy ipc device", &p->u.ipc.device));
        CUIPC_TRY(read_int(r, 8, "proxy producer_id", &p->u.ipc.producer_id));
    }
    /* Cross-field checks: nbytes against the layout's span, then the transport fields. */
    char why[160];
    if (proxy_layout_problem(p, why, sizeof why))
        return CORRUPT(nbytes_at, "%s", why);
    if (proxy_transport_problem(p, why, sizeof why))
        return CORRUPT(fields_at, "%s", why);
    return CUIPC_OK;
}

static cuipc_status read_value(cuipc_reader *r, int level, cuipc_value **out);

/* Build a leaf or fill a container; *out is set (and owned by the caller) only on success. */
static cuipc_status read_list(cuipc_reader *r, int level, cuipc_value **out) {
    size_t count;
    CUIPC_TRY(read_count(r, "list count", CUIPC_MIN_VALUE_BYTES, &count));
    cuipc_value *list = cuipc_value_list();
    if (!list)
        return CUIPC_ERR_NO_MEMORY;
    for (size_t i = 0; i < count; i++) {
        cuipc_value *item;
        cuipc_status s = read_value(r, level + 1, &item);
        if (s == CUIPC_OK)
            s = cuipc_list_append(list, item);
        if (s != CUIPC_OK) {
            cuipc_value_free(list);
            return s;
        }
    }
    *out = list;
    return CUIPC_OK;
}

static cuipc_status read_dict(cuipc_reader *r, int level, cuipc_value **out) {
    size_t count;
    CUIPC_TRY(read_count(r, "dict count", CUIPC_MIN_DICT_ENTRY_BYTES, &count));
    cuipc_value *dict = cuipc_value_dict();
    if (!dict)
        return CUIPC_ERR_NO_MEMORY;
    char small_key[256];
    char *key_buf = small_key;
    size_t key_cap = sizeof small_key;
    cuipc_status s = CUIPC_OK;
    for (size_t i = 0; i < count && s == CUIPC_OK; i++) {
        size_t key_at = r->pos;
        const uint8_t *key;
        size_t n;
        s = read_span(r, "dict key", true, CUIPC_VALUE_MAX_STRING, &key, &n);
        if (s != CUIPC_OK)
            break;
        if (n + 1 > key_cap) {
            char *bigger = malloc(n + 1);
            if (!bigger) {
                s = CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "out of memory for a %zu-byte dict key", n);
                break;
            }
            if (key_buf != small_key)
                free(key_buf);
            key_buf = bigger;
            key_cap = n + 1;
        }
        memcpy(key_buf, key, n);
        key_buf[n] = '\0';
        cuipc_value *item;
        s = read_value(r, level + 1, &item);
        if (s == CUIPC_OK)
            s = cuipc_dict_set(dict, key_buf, item);
        /* dict_set replaced instead of adding: the encoder never writes a key twice. */
        if (s == CUIPC_OK && cuipc_value_len(dict) != i + 1)
            s = CORRUPT(key_at, "dict key \"%.40s\" repeated", key_buf);
    }
    if (key_buf != small_key)
        free(key_buf);
    if (s != CUIPC_OK) {
        cuipc_value_free(dict);
        return s;
    }
    *out = dict;
    return CUIPC_OK;
}

static cuipc_status read_value(cuipc_reader *r, int level, cuipc_value **out) {
    size_t at = r->pos;
    if (level > CUIPC_VALUE_MAX_DEPTH)
        return CORRUPT(at, "nesting deeper than %d levels", CUIPC_VALUE_MAX_DEPTH);
    uint64_t tag, u;
    CUIPC_TRY(read_int(r, 1, "value tag", &tag));
    cuipc_value *v = NULL;
    switch (tag) {
    case CUIPC_TAG_NULL:
        v = cuipc_value_null();
        break;
    case CUIPC_TAG_BOOL:
        CUIPC_TRY(read_int(r, 1, "bool", &u));
        if (u > 1)
            return CORRUPT(at + 1, "bool byte %llu is neither 0 nor 1", (unsigned long long)u);
        v = cuipc_value_bool(u == 1);
        break;
    case CUIPC_TAG_INT:
        CUIPC_TRY(read_int(r, 8, "int64", &u));
        v = cuipc_value_int((int64_t)u);
        break;
    case CUIPC_TAG_FLOAT: {
        CUIPC_TRY(read_int(r, 8, "float64", &u));
        double f;
        memcpy(&f, &u, sizeof f);
        v = cuipc_value_float(f);
        break;
    }
    case CUIPC_TAG_STRING:
    case CUIPC_TAG_BYTES: {
        const uint8_t *p;
        size_t n;
        bool text = tag == CUIPC_TAG_STRING;
        CUIPC_TRY(read_span(r, text ? "string" : "bytes", text,
                            text ? CUIPC_VALUE_MAX_STRING : UINT32_MAX, &p, &n));
        if (text) {
            char *copy = malloc(n + 1); /* the builder wants a NUL-terminated string */
            if (!copy)
                return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "out of memory for a %zu-byte string", n);
            memcpy(copy, p, n);
            copy[n] = '\0';
            v = cuipc_value_string(copy);
            free(copy);
        } else {
            v = cuipc_value_bytes(p, n);
        }
        break;
    }
    case CUIPC_TAG_LIST:
        return read_list(r, level, out);
    case CUIPC_TAG_DICT:
        return read_dict(r, level, out);
    case CUIPC_TAG_PROXY: {
        cuipc_proxy p;
        CUIPC_TRY(read_proxy(r, &p));
        if (r->on_proxy)
            CUIPC_TRY(r->on_proxy(&p, r->ctx));
        v = cuipc_value_proxy(&p);
        break;
    }
    default:
        return CORRUPT(at, "unknown value tag %llu", (unsigned long long)tag);
    }
    if (!v)
        return CUIPC_ERR_NO_MEMORY; /* the builder set the message */
    *out = v;
    return CUIPC_OK;
}

static cuipc_status check_header(const uint8_t *b, size_t len) {
    if (len < CUIPC_WIRE_HEADER_BYTES)
        return CORRUPT(0, "message of %zu bytes is shorter than the %d-byte header", len,
                       CUIPC_WIRE_HEADER_BYTES);
    if (len > CUIPC_WIRE_MAX_MESSAGE)
        return CORRUPT(0, "message of %zu bytes exceeds the %u-byte limit", len,
                       CUIPC_WIRE_MAX_MESSAGE);
    if (memcmp(b, wire_magic, sizeof wire_magic) != 0)
        return CORRUPT(0, "bad magic %02x %02x %02x %02x (want \"CUIP\")", b[0], b[1], b[2], b[3]);
    uint64_t version = get_le(b + 4, 2);
    if (version != CUIPC_WIRE_VERSION)
        return decode_fail(CUIPC_ERR_VERSION, 4, "wire version %llu, this build speaks %d",
                           (unsigned long long)version, CUIPC_WIRE_VERSION);
    uint64_t flags = get_le(b + 6, 2);
    if (flags != 0)
        return CORRUPT(6, "flags 0x%llx set, none are defined", (unsigned long long)flags);
    uint64_t body = get_le(b + 8, 4);
    if (body != len - CUIPC_WIRE_HEADER_BYTES)
        return CORRUPT(8, "body length %llu, but %zu bytes follow the header",
                       (unsigned long long)body, len - CUIPC_WIRE_HEADER_BYTES);
    uint32_t want = (uint32_t)get_le(b + 12, 4);
    uint32_t got = crc32c(b + CUIPC_WIRE_HEADER_BYTES, (size_t)body);
    if (want != got)
        return CORRUPT(12, "body CRC-32C 0x%08x, header says 0x%08x", got, want);
    return CUIPC_OK;
}

cuipc_status cuipc_decode(const void *buf, size_t len, cuipc_value **out) {
    return cuipc_decode_with(buf, len, NULL, NULL, out);
}

cuipc_status cuipc_decode_with(const void *buf, size_t len, cuipc_codec_proxy_fn on_proxy,
                               void *ctx, cuipc_value **out) {
    if (!out)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!buf)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "buf is NULL");
    CUIPC_TRY(check_header(buf, len));
    cuipc_reader r = {buf, CUIPC_WIRE_HEADER_BYTES, len, on_proxy, ctx};
    cuipc_value *root;
    CUIPC_TRY(read_value(&r, 1, &root));
    if (r.pos != r.end) {
        cuipc_value_free(root);
        return CORRUPT(r.pos, "%zu trailing bytes after the value", r.end - r.pos);
    }
    *out = root;
    return CUIPC_OK;
}
