/* The message path on the CPU: a producer and a consumer of this process (default mode, host
 * pool) joined by their ring, and a request of a few scalars and 1..16 small host tensors (256
 * bytes each, so the copies cost little beside the walks of the tree).
 *   msgpath/wrap_cancel: wrap, then give the chunks back (the producer's walks alone)
 *   msgpath/send_recv:   send, receive, unwrap by copy, free (both sides, one message a time) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_families.h"
#include "cuipc/transport.h"
#include "gbench_shim.h"

#define TENSOR_FLOATS 64
#define MAX_TENSORS 16
#define SEC 1000000000ll

typedef struct msgpath {
    cuipc_producer *p;
    cuipc_consumer *c;
    cuipc_value *tree;
    float data[MAX_TENSORS][TENSOR_FLOATS];
} msgpath;

static void *attach_main(void *arg) {
    msgpath *m = arg;
    if (cuipc_consumer_attach(cuipc_producer_socket_path(m->p), 10 * SEC, &m->c) != CUIPC_OK)
        m->c = NULL;
    return NULL;
}

static cuipc_status add_tensor(cuipc_value *list, float *data) {
    cuipc_tensor t;
    cuipc_status s = cuipc_tensor_init(&t, data, CUIPC_DEVICE_HOST, CUIPC_DTYPE_F32, 1,
                                       (const int64_t[]){TENSOR_FLOATS});
    if (s != CUIPC_OK)
        return s;
    return cuipc_list_append(list, cuipc_value_tensor(&t, CUIPC_OWNER_NONE));
}

static cuipc_value *make_request(msgpath *m, uint32_t n) {
    cuipc_value *d = cuipc_value_dict();
    cuipc_value *list = cuipc_value_list();
    cuipc_status s = d && list ? CUIPC_OK : CUIPC_ERR_NO_MEMORY;
    if (s == CUIPC_OK)
        s = cuipc_dict_set(d, "request_id", cuipc_value_int(918273645));
    if (s == CUIPC_OK)
        s = cuipc_dict_set(d, "temperature", cuipc_value_float(0.7));
    if (s == CUIPC_OK)
        s = cuipc_dict_set(d, "model", cuipc_value_string("llava-v1.6-34b"));
    for (uint32_t i = 0; s == CUIPC_OK && i < n; i++)
        s = add_tensor(list, m->data[i]);
    if (s == CUIPC_OK) {
        s = cuipc_dict_set(d, "pixel_values", list);
        list = NULL;
    }
    cuipc_value_free(list);
    if (s != CUIPC_OK) {
        cuipc_value_free(d);
        return NULL;
    }
    return d;
}

static void teardown(msgpath *m) {
    cuipc_value_free(m->tree);
    cuipc_consumer_detach(m->c);
    cuipc_producer_destroy(m->p);
    free(m);
}

/* A producer with one consumer attached, and the request to send; NULL (the run skipped with
 * the reason) on failure. */
static msgpath *setup(cuipc_bench_state *s) {
    msgpath *m = calloc(1, sizeof *m);
    if (!m) {
        cuipc_bench_skip_with_error(s, "out of memory");
        return NULL;
    }
    for (int i = 0; i < MAX_TENSORS; i++)
        for (int k = 0; k < TENSOR_FLOATS; k++)
            m->data[i][k] = (float)(i * TENSOR_FLOATS + k);
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.host_pool_bytes = 4ull << 20;
    cfg.slots = 256;
    cuipc_status st = cuipc_producer_create(&cfg, &m->p);
    pthread_t t;
    bool started = false;
    if (st == CUIPC_OK) {
        started = pthread_create(&t, NULL, attach_main, m) == 0;
        st = started ? cuipc_producer_accept(m->p, 1, 10 * SEC) : CUIPC_ERR_SYSTEM;
    }
    if (started)
        pthread_join(t, NULL);
    if (st == CUIPC_OK && !m->c)
        st = CUIPC_ERR_PEER_DEAD;
    if (st == CUIPC_OK) {
        m->tree = make_request(m, (uint32_t)cuipc_bench_range(s, 0));
        if (!m->tree)
            st = CUIPC_ERR_NO_MEMORY;
    }
    if (st != CUIPC_OK) {
        char why[600];
        snprintf(why, sizeof why, "set-up: %s (%s)", cuipc_status_name(st), cuipc_last_error());
        cuipc_bench_skip_with_error(s, why);
        teardown(m);
        return NULL;
    }
    return m;
}

static void finish(cuipc_bench_state *s, msgpath *m, uint64_t failures) {
    if (failures)
        cuipc_bench_skip_with_error(s, cuipc_last_error());
    cuipc_bench_set_items_processed(s, cuipc_bench_iterations_done(s));
    teardown(m);
}

static void bench_wrap_cancel(cuipc_bench_state *s, void *ctx) {
    (void)ctx;
    msgpath *m = setup(s);
    if (!m)
        return;
    uint64_t failures = 0;
    while (cuipc_bench_keep_running(s)) {
        cuipc_value *w = NULL;
        failures += cuipc_producer_wrap(m->p, m->tree, NULL, &w) != CUIPC_OK;
        failures += w && cuipc_producer_cancel_wrapped(m->p, w) != CUIPC_OK;
        cuipc_value_free(w);
    }
    finish(s, m, failures);
}

/* One message there and back; its last tensor's copy is compared with the data sent. */
static void bench_send_recv(cuipc_bench_state *s, void *ctx) {
    (void)ctx;
    msgpath *m = setup(s);
    if (!m)
        return;
    uint64_t failures = 0;
    while (cuipc_bench_keep_running(s)) {
        cuipc_message *msg = NULL;
        cuipc_value *out = NULL;
        failures += cuipc_producer_send(m->p, m->tree, NULL, SEC) != CUIPC_OK;
        failures += cuipc_consumer_recv(m->c, SEC, &msg) != CUIPC_OK;
        failures += msg && cuipc_message_unwrap(msg, NULL, &out) != CUIPC_OK;
        const cuipc_value *list = out ? cuipc_dict_get(out, "pixel_values") : NULL;
        const cuipc_tensor *last =
            list && cuipc_value_len(list)
                ? cuipc_value_as_tensor(cuipc_list_get(list, cuipc_value_len(list) - 1))
                : NULL;
        size_t n = list ? cuipc_value_len(list) : 0;
        failures += !last || memcmp(last->data, m->data[n - 1], sizeof m->data[0]) != 0;
        cuipc_value_free(out);
        cuipc_message_free(msg);
    }
    finish(s, m, failures);
}

void cuipc_bench_register_msgpath(void) {
    static const int64_t tensors[] = {1, 16};
    cuipc_bench *b = cuipc_bench_register("msgpath/wrap_cancel", bench_wrap_cancel, NULL);
    cuipc_bench_arg_name(b, "tensors");
    cuipc_bench_arg_list(b, tensors, 2);
    b = cuipc_bench_register("msgpath/send_recv", bench_send_recv, NULL);
    cuipc_bench_arg_name(b, "tensors");
    cuipc_bench_arg_list(b, tensors, 2);
}
