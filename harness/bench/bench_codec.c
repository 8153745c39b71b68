/* Codec: encode and decode of a realistic request message: a dict of a few scalars, a model
 * name, a prompt string and a list of 1..16 GPU pool proxies (bf16 [1024, 4096] slices). */
#include <stdlib.h>
#include <string.h>

#include "bench_families.h"
#include "cuipc/codec.h"
#include "cuipc/value.h"
#include "gbench_shim.h"

static cuipc_value *make_proxy(uint32_t i) {
    cuipc_proxy p;
    memset(&p, 0, sizeof p);
    p.kind = CUIPC_PROXY_POOL;
    p.layout.dtype = CUIPC_DTYPE_BF16;
    p.layout.ndim = 2;
    p.layout.src_device = 0;
    p.layout.shape[0] = 1024;
    p.layout.shape[1] = 4096;
    p.layout.strides[0] = 4096;
    p.layout.strides[1] = 1;
    p.nbytes = 1024ull * 4096 * 2;
    p.u.pool.pool_id = 0x1234abcd5678ef01ull;
    p.u.pool.memory = CUIPC_MEMORY_CUDA;
    p.u.pool.pool_device = 0;
    p.u.pool.slot = i;
    p.u.pool.generation = 7 + i;
    p.u.pool.offset = (uint64_t)i * p.nbytes;
    return cuipc_value_proxy(&p);
}

static cuipc_value *make_message(uint32_t n_proxies) {
    cuipc_value *d = cuipc_value_dict();
    cuipc_value *list = cuipc_value_list();
    if (!d || !list) {
        cuipc_value_free(d);
        cuipc_value_free(list);
        return NULL;
    }
    char prompt[241];
    for (size_t i = 0; i < sizeof prompt - 1; i++)
        prompt[i] = (char)('a' + i % 26);
    prompt[sizeof prompt - 1] = '\0';
    cuipc_status s = cuipc_dict_set(d, "request_id", cuipc_value_int(918273645));
    if (s == CUIPC_OK)
        s = cuipc_dict_set(d, "temperature", cuipc_value_float(0.7));
    if (s == CUIPC_OK)
        s = cuipc_dict_set(d, "stream", cuipc_value_bool(true));
    if (s == CUIPC_OK)
        s = cuipc_dict_set(d, "max_tokens", cuipc_value_int(2048));
    if (s == CUIPC_OK)
        s = cuipc_dict_set(d, "model", cuipc_value_string("llava-v1.6-34b"));
    if (s == CUIPC_OK)
        s = cuipc_dict_set(d, "prompt", cuipc_value_string(prompt));
    for (uint32_t i = 0; s == CUIPC_OK && i < n_proxies; i++)
        s = cuipc_list_append(list, make_proxy(i));
    if (s == CUIPC_OK)
        s = cuipc_dict_set(d, "pixel_values", list);
    else
        cuipc_value_free(list);
    if (s != CUIPC_OK) {
        cuipc_value_free(d);
        return NULL;
    }
    return d;
}

/* The message and its encoding, checked to round-trip before anything is timed. */
typedef struct encoded_message {
    cuipc_value *msg;
    void *buf;
    size_t len;
} encoded_message;

static bool prepare(cuipc_bench_state *s, encoded_message *m) {
    memset(m, 0, sizeof *m);
    uint32_t n = (uint32_t)cuipc_bench_range(s, 0);
    size_t size = 0;
    cuipc_value *back = NULL;
    m->msg = make_message(n);
    if (m->msg && cuipc_encoded_size(m->msg, &size) == CUIPC_OK && (m->buf = malloc(size)) &&
        cuipc_encode(m->msg, m->buf, size, &m->len) == CUIPC_OK &&
        cuipc_decode(m->buf, m->len, &back) == CUIPC_OK) {
        const cuipc_value *list = cuipc_dict_get(back, "pixel_values");
        bool same = m->len == size && list && cuipc_value_len(list) == n;
        cuipc_value_free(back);
        if (same)
            return true;
        cuipc_bench_skip_with_error(s, "decoded message differs from the encoded one");
    } else {
        cuipc_bench_skip_with_error(s, cuipc_last_error());
    }
    cuipc_value_free(m->msg);
    free(m->buf);
    return false;
}

static void finish(cuipc_bench_state *s, encoded_message *m, uint64_t failures) {
    if (failures)
        cuipc_bench_skip_with_error(s, cuipc_last_error());
    cuipc_bench_set_items_processed(s, cuipc_bench_iterations_done(s));
    cuipc_bench_set_bytes_processed(s, cuipc_bench_iterations_done(s) * (int64_t)m->len);
    cuipc_bench_counter(s, "msg_bytes", (double)m->len, CUIPC_COUNTER_PLAIN);
    cuipc_value_free(m->msg);
    free(m->buf);
}

static void bench_encode(cuipc_bench_state *s, void *ctx) {
    encoded_message m;
    if (!prepare(s, &m))
        return;
    uint64_t failures = 0;
    size_t len = 0, size = 0;
    while (cuipc_bench_keep_running(s)) {
        /* As a sender does: size the message, then encode it. */
        failures += cuipc_encoded_size(m.msg, &size) != CUIPC_OK;
        failures += cuipc_encode(m.msg, m.buf, size, &len) != CUIPC_OK;
    }
    finish(s, &m, failures);
}

static void bench_decode(cuipc_bench_state *s, void *ctx) {
    encoded_message m;
    if (!prepare(s, &m))
        return;
    uint64_t failures = 0;
    while (cuipc_bench_keep_running(s)) {
        cuipc_value *v = NULL;
        failures += cuipc_decode(m.buf, m.len, &v) != CUIPC_OK;
        cuipc_value_free(v);
    }
    finish(s, &m, failures);
}

void cuipc_bench_register_codec(void) {
    static const int64_t proxies[] = {1, 4, 16};
    cuipc_bench *b = cuipc_bench_register("codec/encode", bench_encode, NULL);
    cuipc_bench_arg_name(b, "proxies");
    cuipc_bench_arg_list(b, proxies, 3);
    b = cuipc_bench_register("codec/decode", bench_decode, NULL);
    cuipc_bench_arg_name(b, "proxies");
    cuipc_bench_arg_list(b, proxies, 3);
}
