/* End-to-end transport across real processes, default mode with host tensors (runs in CI):
 * nested trees, copy and borrow, N consumers, recycling under a small pool, buffers the producer
 * fills in place (zero-copy produce), full-pool policies,
 * dead consumers and producers, forged and stale proxies. The producer runs in the parent; the
 * consumers are forked before it exists and attach through its socket. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cuipc/cuipc.h"
#include "cuipc/pattern.h"
#include "test_util.h"

#define SEC 1000000000ll

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static char sock_path[128];

static void make_sock_path(void) {
    cuipc_test_socket_path(sock_path, sizeof sock_path);
}

/* Tensor i of message seq: shape and dtype vary; one is strided, one empty. */
static void tensor_shape(uint64_t seq, int i, cuipc_tensor *t, void *data) {
    int64_t shape[3] = {(int64_t)(1 + (seq * 7 + (uint64_t)i) % 13), (int64_t)(1 + seq % 5), 16};
    if (i == 2)
        shape[0] = 0;        /* empty */
    static char placeholder; /* a layout whose data comes later: init wants one now */
    CHECK_OK(cuipc_tensor_init(t, &placeholder, CUIPC_DEVICE_HOST,
                               i == 1 ? CUIPC_DTYPE_F16 : CUIPC_DTYPE_F32, 3, shape));
    t->data = data;
    if (i == 1) {
        /* Non-contiguous: every other row (stride 2x along dim 0). */
        t->strides[0] *= 2;
    }
}

static cuipc_value *make_message(uint64_t seq, void *bufs[3]) {
    cuipc_value *root = cuipc_value_dict();
    CHECK_OK(cuipc_dict_set(root, "seq", cuipc_value_int((int64_t)seq)));
    CHECK_OK(cuipc_dict_set(root, "prompt", cuipc_value_string("describe the image")));
    cuipc_value *list = cuipc_value_list();
    for (int i = 0; i < 3; i++) {
        cuipc_tensor t;
        tensor_shape(seq, i, &t, NULL);
        size_t n = 1;
        for (int d = 0; d < t.ndim; d++)
            n += (size_t)(t.shape[d] ? t.shape[d] - 1 : 0) * (size_t)t.strides[d];
        n *= cuipc_dtype_size(t.dtype);
        bufs[i] = malloc(n + 1);
        cuipc_host_fill_pattern(bufs[i], n, seq * 3 + (uint64_t)i);
        t.data = bufs[i];
        CHECK_OK(cuipc_list_append(list, cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    }
    CHECK_OK(cuipc_dict_set(root, "features", list));
    return root;
}

/* Check a received tree against what make_message built. */
static int verify_message(const cuipc_value *v, uint64_t *seq_out) {
    const cuipc_value *seqv = cuipc_dict_get(v, "seq");
    if (!seqv)
        return 0;
    uint64_t seq = (uint64_t)cuipc_value_as_int(seqv);
    *seq_out = seq;
    if (strcmp(cuipc_value_as_string(cuipc_dict_get(v, "prompt")), "describe the image") != 0)
        return 0;
    const cuipc_value *list = cuipc_dict_get(v, "features");
    if (!list || cuipc_value_len(list) != 3)
        return 0;
    for (int i = 0; i < 3; i++) {
        const cuipc_tensor *t = cuipc_value_as_tensor(cuipc_list_get(list, (size_t)i));
        if (!t)
            return 0;
        cuipc_tensor want;
        tensor_shape(seq, i, &want, NULL);
        if (t->dtype != want.dtype || t->ndim != want.ndim || t->device != CUIPC_DEVICE_HOST)
            return 0;
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] != want.shape[d] || t->strides[d] != want.strides[d])
                return 0;
        uint64_t n = cuipc_tensor_span_bytes(t);
        if (n == 0)
            continue;
        void *ref = malloc(n);
        cuipc_host_fill_pattern(ref, n, seq * 3 + (uint64_t)i);
        int same = cuipc_host_checksum(ref, n) == cuipc_host_checksum(t->data, n);
        free(ref);
        if (!same)
            return 0;
    }
    return 1;
}

typedef struct consumer_args {
    int kind;       /* cuipc_unwrap_kind */
    int expect;     /* messages to expect, -1: until closed */
    int hold_last;  /* keep the last borrowed message unreleased, then sleep (to be killed) */
    uint64_t first; /* the sequence number the first message must carry, 0: any */
} consumer_args;

static int consumer_main(void *arg) {
    consumer_args *a = arg;
    cuipc_consumer *c = NULL;
    if (cuipc_consumer_attach(sock_path, 10 * SEC, &c) != CUIPC_OK) {
        fprintf(stderr, "consumer attach: %s\n", cuipc_last_error());
        return 10;
    }
    int got = 0, bad = 0;
    uint64_t last_seq = 0;
    cuipc_unwrap_options o;
    cuipc_unwrap_options_init(&o);
    o.kind = (cuipc_unwrap_kind)7;
    if (cuipc_consumer_prepare(c, &o) != CUIPC_ERR_INVALID_ARG ||
        strstr(cuipc_last_error(), "unwrap kind 7") == NULL) {
        fprintf(stderr, "prepare with unwrap kind 7: %s\n", cuipc_last_error());
        bad++;
    }
    o.kind = (cuipc_unwrap_kind)a->kind;
    if (o.host_wait_ns != CUIPC_HOST_WAIT_AUTO) {
        fprintf(stderr, "default host_wait_ns %lld, not auto\n", (long long)o.host_wait_ns);
        bad++;
    }
    o.host_wait_ns = -2;
    if (cuipc_consumer_prepare(c, &o) != CUIPC_ERR_INVALID_ARG ||
        strstr(cuipc_last_error(), "host_wait_ns -2") == NULL) {
        fprintf(stderr, "prepare with host_wait_ns -2: %s\n", cuipc_last_error());
        bad++;
    }
    o.host_wait_ns = CUIPC_HOST_WAIT_AUTO;
    /* Host pool, host targets: nothing to set up, and no GPU needed to say so. */
    if (cuipc_consumer_prepare(c, &o) != CUIPC_OK) {
        fprintf(stderr, "prepare: %s\n", cuipc_last_error());
        bad++;
    }
    for (;;) {
        cuipc_message *m = NULL;
        cuipc_status s = cuipc_consumer_recv(c, 20 * SEC, &m);
        if (s == CUIPC_ERR_CLOSED)
            break;
        if (s != CUIPC_OK) {
            fprintf(stderr, "consumer %u recv: %s\n", cuipc_consumer_index(c), cuipc_last_error());
            return 11;
        }
        cuipc_value *v = NULL;
        if (cuipc_message_unwrap(m, &o, &v) != CUIPC_OK) {
            fprintf(stderr, "unwrap: %s\n", cuipc_last_error());
            return 12;
        }
        uint64_t seq = 0;
        if (!verify_message(v, &seq) || (got > 0 && seq != last_seq + 1))
            bad++;
        if (got == 0 && a->first && seq != a->first) {
            fprintf(stderr, "consumer %u: first message %llu, not %llu\n", cuipc_consumer_index(c),
                    (unsigned long long)seq, (unsigned long long)a->first);
            bad++;
        }
        if (cuipc_message_stream_ordered(m)) { /* host memory, host targets: ready at once */
            fprintf(stderr, "host message %llu reported as stream-ordered\n",
                    (unsigned long long)seq);
            bad++;
        }
        last_seq = seq;
        got++;
        cuipc_value_free(v);
        if (a->hold_last && got == a->expect) {
            pause(); /* killed here, holding a borrowed chunk */
        }
        if (cuipc_message_release(m, NULL) != CUIPC_OK)
            bad++;
        cuipc_message_free(m);
        if (a->expect >= 0 && got == a->expect)
            break;
    }
    cuipc_consumer_detach(c);
    if (a->expect >= 0 && got != a->expect)
        return 13;
    return bad ? 14 : 0;
}

/* A producer for up to `consumers`, none attached yet. */
static cuipc_producer *make_producer(uint32_t consumers, uint64_t pool_bytes,
                                     cuipc_full_policy policy) {
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.mode = CUIPC_MODE_DEFAULT;
    cfg.host_pool_bytes = pool_bytes;
    cfg.max_consumers = consumers;
    cfg.full_policy = policy;
    cfg.full_timeout_ns = 10 * SEC;
    cfg.socket_path = sock_path;
    cfg.ring_bytes = 1 << 16;
    cuipc_producer *p = NULL;
    REQUIRE(cuipc_producer_create(&cfg, &p) == CUIPC_OK);
    return p;
}

static cuipc_producer *start_producer(uint32_t consumers, uint64_t pool_bytes,
                                      cuipc_full_policy policy) {
    cuipc_producer *p = make_producer(consumers, pool_bytes, policy);
    REQUIRE(cuipc_producer_accept(p, consumers, 10 * SEC) == CUIPC_OK);
    return p;
}

static cuipc_status send_seq(cuipc_producer *p, uint64_t seq) {
    void *bufs[3];
    cuipc_value *v = make_message(seq, bufs);
    cuipc_status s = cuipc_producer_send(p, v, NULL, 10 * SEC);
    cuipc_value_free(v);
    for (int i = 0; i < 3; i++)
        free(bufs[i]);
    return s;
}

/* n consumers until closed, copying and borrowing in turn, and their producer with a 64 KiB
 * pool (small enough that chunks must be recycled) and the wait policy. */
static cuipc_producer *start_with_consumers(int n, consumer_args *args, pid_t *pids) {
    for (int i = 0; i < n; i++) {
        args[i] = (consumer_args){.kind = i % 2, .expect = -1};
        pids[i] = cuipc_test_fork(consumer_main, &args[i]);
    }
    return start_producer((uint32_t)n, 64 << 10, CUIPC_FULL_WAIT);
}

/* Four consumers (copy and borrow), a pool small enough that chunks must be recycled. */
static void test_broadcast_and_recycle(void) {
    make_sock_path();
    enum { N = 4, MSGS = 300 };
    consumer_args args[N];
    pid_t pids[N];
    cuipc_producer *p = start_with_consumers(N, args, pids);
    for (uint64_t s = 1; s <= MSGS; s++)
        CHECK_OK(send_seq(p, s));
    cuipc_producer_close(p);
    for (int i = 0; i < N; i++)
        CHECK(cuipc_test_wait(pids[i], 30000) == 0);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    CHECK(st.messages_sent == MSGS);
    CHECK(st.host_pool.in_flight == 0);
    CHECK(st.host_pool.used_bytes == 0);
    /* Two non-empty tensors a message, every one recycled: nothing leaked or double-freed. */
    CHECK(st.host_pool.allocs == 2 * MSGS);
    CHECK(st.host_pool.recycled == 2 * MSGS);
    CHECK(st.host_pool.high_water_bytes <= 64 << 10);
    cuipc_producer_destroy(p);
}

/* A consumer child's first steps: attach, then receive the first message. 0, or the child's
 * exit code: 10 attach failed, 11 nothing received. */
static int attach_and_receive(cuipc_consumer **c, cuipc_message **m) {
    if (cuipc_consumer_attach(sock_path, 10 * SEC, c) != CUIPC_OK)
        return 10;
    if (cuipc_consumer_recv(*c, 10 * SEC, m) != CUIPC_OK)
        return 11;
    return 0;
}

/* FAIL policy: a consumer that holds its borrow makes the pool full; the error says so. */
static int holder_main(void *arg) {
    (void)arg;
    cuipc_consumer *c = NULL;
    cuipc_message *m = NULL;
    int rc = attach_and_receive(&c, &m);
    if (rc)
        return rc;
    /* Hold the first chunk until the next message arrives: the producer meanwhile finds the
     * pool full. */
    cuipc_message *m2 = NULL;
    cuipc_status s = cuipc_consumer_recv(c, 10 * SEC, &m2);
    if (s != CUIPC_OK)
        return 12;
    if (cuipc_message_release(m, NULL) != CUIPC_OK)
        return 13;
    cuipc_message_free(m);
    cuipc_message_free(m2);
    cuipc_message *m3 = NULL;
    s = cuipc_consumer_recv(c, 10 * SEC, &m3);
    cuipc_message_free(m3);
    cuipc_consumer_detach(c);
    return s == CUIPC_ERR_CLOSED ? 0 : 14;
}

static cuipc_status send_bytes(cuipc_producer *p, size_t n) {
    void *buf = malloc(n);
    memset(buf, 7, n);
    cuipc_tensor t;
    int64_t shape[1] = {(int64_t)n};
    CHECK_OK(cuipc_tensor_init(&t, buf, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1, shape));
    cuipc_value *v = cuipc_value_tensor(&t, CUIPC_OWNER_NONE);
    cuipc_status s = cuipc_producer_send(p, v, NULL, SEC);
    cuipc_value_free(v);
    free(buf);
    return s;
}

static void test_pool_full_fail(void) {
    make_sock_path();
    pid_t pid = cuipc_test_fork(holder_main, NULL);
    cuipc_producer *p = start_producer(1, 64 << 10, CUIPC_FULL_FAIL);
    CHECK_OK(send_bytes(p, 48 << 10));
    cuipc_status s = send_bytes(p, 48 << 10);
    CHECK(s == CUIPC_ERR_POOL_FULL);
    CHECK(strstr(cuipc_last_error(), "49152") != NULL); /* names the size asked */
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    CHECK(st.host_pool.full_failures == 1);
    CHECK(st.host_pool.in_flight == 1); /* the failed send left nothing behind */
    /* A buffer with a negative timeout follows the policy: fail at once. */
    void *b = NULL;
    CHECK_STATUS(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, 48 << 10, -1, &b),
                 CUIPC_ERR_POOL_FULL);
    CHECK_OK(send_bytes(p, 8 << 10)); /* small ones still fit; consumer releases the first */
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(pid, 20000) == 0);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    CHECK_STATUS(send_bytes(p, 48 << 10), CUIPC_ERR_CLOSED);
    cuipc_producer_destroy(p);
}

/* A send that runs out of time on one consumer's full ring reaches no consumer, so sending it
 * again delivers it once to each. Consumer 1 reads nothing until the go byte on its pipe; each
 * consumer checks its messages are 1, 2, 3, ... without a gap or a repeat and exits with their
 * count. */
static int stall_pipe[2];

static int sequence_reader_main(void *arg) {
    bool stalled = arg != NULL;
    cuipc_consumer *c = NULL;
    if (cuipc_consumer_attach(sock_path, 10 * SEC, &c) != CUIPC_OK)
        return 200;
    char go;
    if (stalled && read(stall_pipe[0], &go, 1) != 1)
        return 201;
    int64_t expect = 1;
    for (;;) {
        cuipc_message *m = NULL;
        cuipc_status s = cuipc_consumer_recv(c, 20 * SEC, &m);
        if (s == CUIPC_ERR_CLOSED)
            break;
        if (s != CUIPC_OK)
            return 202;
        int64_t seq = cuipc_value_as_int(cuipc_dict_get(cuipc_message_value(m), "seq"));
        cuipc_message_free(m);
        if (seq != expect++)
            return 203; /* a message twice, or one lost */
    }
    cuipc_consumer_detach(c);
    return (int)(expect - 1);
}

static cuipc_value *padded(int64_t seq) {
    static char pad[4001];
    memset(pad, 'x', sizeof pad - 1);
    cuipc_value *v = cuipc_value_dict();
    CHECK_OK(cuipc_dict_set(v, "seq", cuipc_value_int(seq)));
    CHECK_OK(cuipc_dict_set(v, "pad", cuipc_value_string(pad)));
    return v;
}

static cuipc_status send_padded(cuipc_producer *p, int64_t seq, int64_t timeout_ns) {
    cuipc_value *v = padded(seq);
    cuipc_status s = cuipc_producer_send(p, v, NULL, timeout_ns);
    cuipc_value_free(v);
    return s;
}

/* Padded messages (no tensor) until one finds no room on a ring within 50 ms: the number the
 * next message should carry. */
static int64_t fill_ring(cuipc_producer *p) {
    int64_t seq = 1;
    while (send_padded(p, seq, SEC / 20) == CUIPC_OK && seq < 100)
        seq++;
    CHECK(seq < 100);
    return seq;
}

static void test_send_is_all_or_nothing(void) {
    make_sock_path();
    REQUIRE(pipe(stall_pipe) == 0);
    pid_t reader = cuipc_test_fork(sequence_reader_main, NULL);
    pid_t stalled = cuipc_test_fork(sequence_reader_main, (void *)1);
    close(stall_pipe[0]);
    cuipc_producer *p = start_producer(2, 64 << 10, CUIPC_FULL_WAIT); /* rings of 64 KiB */
    int64_t seq = 1;
    cuipc_status s;
    while ((s = send_padded(p, seq, SEC / 20)) == CUIPC_OK && seq < 100)
        seq++;
    CHECK_STATUS(s, CUIPC_ERR_TIMEOUT); /* the stalled ring filled up after ~15 messages */
    CHECK(strstr(cuipc_last_error(), ": no room on its ring for ") != NULL); /* either index */
    CHECK(strstr(cuipc_last_error(), "sent to no consumer") != NULL);
    CHECK(seq > 5 && seq < 20);
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    uint64_t in_flight = st.host_pool.in_flight; /* cuipc_producer_send gave its chunk back */
    /* Wrapped apart: out of room, the wrapped tree stays whole (its chunk still taken), and is
     * sent again as it is once the stalled consumer reads. */
    static uint8_t small[16];
    cuipc_tensor t;
    CHECK_OK(cuipc_tensor_init(&t, small, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1,
                               (const int64_t[]){sizeof small}));
    cuipc_value *v = padded(seq), *w = NULL; /* as large as the one that found no room */
    CHECK_OK(cuipc_dict_set(v, "t", cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    CHECK_OK(cuipc_producer_wrap(p, v, NULL, &w));
    CHECK_STATUS(cuipc_producer_send_wrapped(p, w, SEC / 20), CUIPC_ERR_TIMEOUT);
    CHECK(strstr(cuipc_last_error(), "the wrapped tree is whole") != NULL);
    cuipc_producer_stats_get(p, &st);
    CHECK(st.host_pool.in_flight == in_flight + 1);
    REQUIRE(write(stall_pipe[1], "g", 1) == 1);
    CHECK_OK(cuipc_producer_send_wrapped(p, w, 10 * SEC)); /* the same message again, once */
    cuipc_value_free(w);
    cuipc_value_free(v);
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(reader, 30000) == (int)seq);
    CHECK(cuipc_test_wait(stalled, 30000) == (int)seq);
    close(stall_pipe[1]);
    cuipc_producer_stats_get(p, &st);
    CHECK(st.messages_sent == (uint64_t)seq);
    cuipc_producer_destroy(p);
}

/* After delay_us: frees the buffer (arg->buf) or writes the go byte on stall_pipe. */
typedef struct later {
    cuipc_producer *p;
    void *buf;
    useconds_t delay_us;
} later;

static void *later_main(void *arg) {
    later *l = arg;
    usleep(l->delay_us);
    if (l->buf)
        CHECK_OK(cuipc_producer_buffer_free(l->p, l->buf));
    else
        CHECK(write(stall_pipe[1], "g", 1) == 1);
    return NULL;
}

/* cuipc_producer_send's timeout bounds the wait for ring room only: a wrap that first waited
 * longer than it for pool room (a buffer held until 2.5 s) still leaves the ring wait all of it
 * (room at 3 s, a timeout of 2 s). */
static void test_ring_timeout_is_the_rings_alone(void) {
    make_sock_path();
    REQUIRE(pipe(stall_pipe) == 0);
    pid_t stalled = cuipc_test_fork(sequence_reader_main, (void *)1);
    close(stall_pipe[0]);
    cuipc_producer *p = start_producer(1, 64 << 10, CUIPC_FULL_WAIT); /* full_timeout 10 s */
    int64_t seq = fill_ring(p); /* the ring is full; the pool is empty (padding is no tensor) */
    void *held = NULL;
    CHECK_OK(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, 48 << 10, 0, &held));
    static uint8_t bytes[32 << 10]; /* more than the 16 KiB the buffer leaves */
    cuipc_tensor t;
    CHECK_OK(cuipc_tensor_init(&t, bytes, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1,
                               (const int64_t[]){sizeof bytes}));
    cuipc_value *v = padded(seq);
    CHECK_OK(cuipc_dict_set(v, "t", cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    later free_buf = {.p = p, .buf = held, .delay_us = 2500 * 1000};
    later go = {.p = p, .delay_us = 3000 * 1000};
    pthread_t a, b;
    REQUIRE(pthread_create(&a, NULL, later_main, &free_buf) == 0);
    REQUIRE(pthread_create(&b, NULL, later_main, &go) == 0);
    uint64_t t0 = now_ns();
    CHECK_OK(cuipc_producer_send(p, v, NULL, 2 * SEC));
    CHECK(now_ns() - t0 >= 2500ull * 1000 * 1000); /* it did wait for the pool first */
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    cuipc_value_free(v);
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(stalled, 30000) == (int)seq);
    close(stall_pipe[1]);
    cuipc_producer_destroy(p);
}

/* A wait for pool room made in slices (cuipc_wait_slice) counts one full event and one failure
 * for the whole wait, not one a slice; a bad slice is refused. */
static void test_wait_in_slices(void) {
    make_sock_path();
    pid_t pid = cuipc_test_fork(holder_main, NULL);
    cuipc_producer *p = start_producer(1, 64 << 10, CUIPC_FULL_WAIT);
    CHECK_OK(send_bytes(p, 48 << 10)); /* held by the consumer: 16 KiB left */
    static uint8_t big[48 << 10];
    cuipc_tensor t;
    CHECK_OK(cuipc_tensor_init(&t, big, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1,
                               (const int64_t[]){sizeof big}));
    cuipc_value *v = cuipc_value_tensor(&t, CUIPC_OWNER_NONE), *w = NULL;
    const cuipc_wait_slice slices[3] = {
        {SEC / 50, false, false}, {SEC / 50, true, false}, {SEC / 50, true, true}};
    for (int i = 0; i < 3; i++) {
        CHECK_STATUS(cuipc_producer_wrap_within(p, v, NULL, &slices[i], &w), CUIPC_ERR_TIMEOUT);
        cuipc_producer_stats st;
        cuipc_producer_stats_get(p, &st);
        CHECK(st.host_pool.full_events == 1);
        CHECK(st.host_pool.full_failures == (i == 2 ? 1u : 0u)); /* only the last gives up */
        CHECK(st.host_pool.in_flight == 1 && w == NULL);         /* a slice takes nothing */
    }
    /* A buffer in the tree is taken last: the slice that runs out of time leaves it held. */
    void *held = NULL;
    CHECK_OK(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, 4096, 0, &held));
    uint64_t id = cuipc_producer_buffer_id(p, held);
    cuipc_tensor bt;
    CHECK_OK(cuipc_tensor_init(&bt, held, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1,
                               (const int64_t[]){4096}));
    cuipc_value *both = cuipc_value_list();
    CHECK_OK(cuipc_list_append(both, cuipc_value_tensor(&bt, CUIPC_OWNER_NONE)));
    CHECK_OK(cuipc_list_append(both, cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    CHECK_STATUS(cuipc_producer_wrap_within(p, both, NULL, &slices[1], &w), CUIPC_ERR_TIMEOUT);
    CHECK(id != 0 && cuipc_producer_buffer_id(p, held) == id);
    cuipc_value_free(both);
    CHECK_OK(cuipc_producer_buffer_free(p, held));
    void *b = NULL;
    CHECK_STATUS(cuipc_producer_buffer_alloc_within(p, CUIPC_MEMORY_HOST, 48 << 10, &slices[1], &b),
                 CUIPC_ERR_TIMEOUT);
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    CHECK(st.host_pool.full_events == 1 && st.host_pool.full_failures == 1 && b == NULL);
    const cuipc_wait_slice negative = {-1, false, true};
    CHECK_STATUS(cuipc_producer_wrap_within(p, v, NULL, &negative, &w), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_producer_wrap_within(p, v, NULL, NULL, &w), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_producer_buffer_alloc_within(p, CUIPC_MEMORY_HOST, 8, NULL, &b),
                 CUIPC_ERR_INVALID_ARG);
    cuipc_value_free(v);
    CHECK_OK(send_bytes(p, 8 << 10)); /* the holder lets the first go when this one comes */
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(pid, 20000) == 0);
    cuipc_producer_destroy(p);
}

/* A message that can never fit is refused at once though it carries a buffer of its own (held
 * until the rest has room): that buffer is no room a wait could get back. Another buffer held
 * is, so then the wrap waits. */
static void test_own_buffer_does_not_make_a_wait(void) {
    make_sock_path();
    consumer_args args[1];
    pid_t pids[1];
    cuipc_producer *p = start_with_consumers(1, args, pids); /* 64 KiB host pool, "wait" */
    void *own = NULL;
    CHECK_OK(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, 8 << 10, 0, &own));
    static uint8_t big[60 << 10];
    cuipc_tensor tb, tt;
    CHECK_OK(cuipc_tensor_init(&tb, own, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1,
                               (const int64_t[]){8 << 10}));
    CHECK_OK(cuipc_tensor_init(&tt, big, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1,
                               (const int64_t[]){sizeof big}));
    cuipc_value *msg = cuipc_value_list(), *w = NULL;
    CHECK_OK(cuipc_list_append(msg, cuipc_value_tensor(&tb, CUIPC_OWNER_NONE)));
    CHECK_OK(cuipc_list_append(msg, cuipc_value_tensor(&tt, CUIPC_OWNER_NONE)));
    uint64_t t0 = now_ns();
    CHECK_STATUS(cuipc_producer_wrap(p, msg, NULL, &w), CUIPC_ERR_POOL_FULL);
    CHECK(now_ns() - t0 < 5 * SEC); /* at once, not after its 10 s full_timeout */
    CHECK(strstr(cuipc_last_error(), "nothing to wait for") != NULL);
    CHECK(cuipc_producer_buffer_id(p, own) != 0); /* still held */
    cuipc_value_free(msg);
    msg = cuipc_value_tensor(&tt, CUIPC_OWNER_NONE); /* the same tensor alone: the buffer is */
    const cuipc_wait_slice slice = {SEC / 20, false, true}; /* another's, a wait could free it */
    CHECK_STATUS(cuipc_producer_wrap_within(p, msg, NULL, &slice, &w), CUIPC_ERR_TIMEOUT);
    cuipc_value_free(msg);
    CHECK_OK(cuipc_producer_buffer_free(p, own));
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(pids[0], 20000) == 0);
    cuipc_producer_destroy(p);
}

/* A consumer killed while holding a borrowed chunk: the producer reclaims it, the others go on. */
static void test_consumer_killed(void) {
    make_sock_path();
    consumer_args victim = {.kind = CUIPC_UNWRAP_BORROW, .expect = 5, .hold_last = 1};
    consumer_args other = {.kind = CUIPC_UNWRAP_COPY, .expect = -1};
    pid_t vp = cuipc_test_fork(consumer_main, &victim);
    pid_t op = cuipc_test_fork(consumer_main, &other);
    cuipc_producer *p = start_producer(2, 256 << 10, CUIPC_FULL_WAIT);
    for (uint64_t s = 1; s <= 5; s++)
        CHECK_OK(send_seq(p, s));
    usleep(200 * 1000); /* the victim now holds message 5 */
    kill(vp, SIGKILL);
    CHECK(cuipc_test_wait(vp, 5000) == -SIGKILL);
    /* Sends go on to the survivor; the victim's chunks come back. */
    uint64_t t0 = now_ns();
    while (cuipc_producer_consumer_count(p) != 1 && now_ns() - t0 < 2ull * SEC)
        usleep(1000);
    CHECK(cuipc_producer_consumer_count(p) == 1);
    for (uint64_t s = 6; s <= 50; s++)
        CHECK_OK(send_seq(p, s));
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(op, 20000) == 0);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    /* The survivor detached at the end: counted apart from the victim, which died. */
    t0 = now_ns();
    while (cuipc_producer_consumer_count(p) != 0 && now_ns() - t0 < 2ull * SEC)
        usleep(1000);
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    CHECK(st.consumers_attached == 2);
    CHECK(st.consumers_dead == 1);
    CHECK(st.consumers_detached == 1);
    CHECK(st.host_pool.dead_consumer_reclaims >= 1);
    CHECK(st.host_pool.in_flight == 0);
    cuipc_producer_destroy(p);
}

/* Attached, then nothing until killed. */
static int idle_main(void *arg) {
    (void)arg;
    cuipc_consumer *c = NULL;
    if (cuipc_consumer_attach(sock_path, 10 * SEC, &c) != CUIPC_OK)
        return 10;
    pause();
    return 0;
}

static void wait_for_consumers(cuipc_producer *p, uint32_t n) {
    uint64_t t0 = now_ns();
    while (cuipc_producer_consumer_count(p) != n && now_ns() - t0 < 10ull * SEC)
        usleep(1000);
    CHECK(cuipc_producer_consumer_count(p) == n);
}

/* Message 1, wrapped and kept (not sent yet), and what it was made from. */
typedef struct kept_message {
    void *bufs[3];
    cuipc_value *v, *wrapped;
} kept_message;

static void keep_wrapped(cuipc_producer *p, kept_message *k) {
    k->v = make_message(1, k->bufs);
    k->wrapped = NULL;
    CHECK_OK(cuipc_producer_wrap(p, k->v, NULL, &k->wrapped));
}

static void free_kept(kept_message *k) {
    cuipc_value_free(k->wrapped);
    cuipc_value_free(k->v);
    for (int i = 0; i < 3; i++)
        free(k->bufs[i]);
}

/* The consumer in process victim is killed; once `left` consumers remain, a newcomer attaches
 * in its place (the producer then has `places` attached). The newcomer's pid. */
static pid_t replace_consumer(cuipc_producer *p, pid_t victim, uint32_t left, uint32_t places,
                              consumer_args *newcomer) {
    kill(victim, SIGKILL);
    CHECK(cuipc_test_wait(victim, 5000) == -SIGKILL);
    wait_for_consumers(p, left);
    pid_t np = cuipc_test_fork(consumer_main, newcomer);
    CHECK_OK(cuipc_producer_accept(p, places, 10 * SEC));
    return np;
}

/* After the close: every chunk came back, and `sent` messages went out. */
static void check_all_recycled(cuipc_producer *p, uint64_t sent) {
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    CHECK(st.messages_sent == sent);
    CHECK(st.host_pool.in_flight == 0);
    CHECK(st.host_pool.recycled == st.host_pool.allocs);
}

/* A wrapped tree kept while a consumer dies and another attaches in its place (a send retried
 * after timeouts does this): the newcomer is not among the chunks' readers, their recycling
 * does not wait for its ack, so it must not get that message, only the ones after. */
static void test_kept_message_skips_a_newcomer(void) {
    make_sock_path();
    consumer_args stays = {.kind = CUIPC_UNWRAP_BORROW, .expect = 2, .first = 1};
    consumer_args newcomer = {.kind = CUIPC_UNWRAP_BORROW, .expect = 1, .first = 2};
    pid_t sp = cuipc_test_fork(consumer_main, &stays);
    pid_t vp = cuipc_test_fork(idle_main, NULL);
    cuipc_producer *p = start_producer(2, 256 << 10, CUIPC_FULL_WAIT);
    kept_message k;
    keep_wrapped(p, &k);
    pid_t np = replace_consumer(p, vp, 1, 2, &newcomer);
    CHECK_OK(cuipc_producer_send_wrapped(p, k.wrapped, 10 * SEC));
    CHECK_OK(send_seq(p, 2));
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(sp, 20000) == 0);
    CHECK(cuipc_test_wait(np, 20000) == 0);
    check_all_recycled(p, 2);
    free_kept(&k);
    cuipc_producer_destroy(p);
}

/* Every consumer a kept tree was wrapped for dies (a producer whose only worker restarts): its
 * chunks are recycled with them, so sending it is refused as stale, nothing reaches the
 * newcomer, the tree is given back whole, and the newcomer gets the next message. */
static void test_kept_message_of_departed_consumers_is_stale(void) {
    make_sock_path();
    consumer_args newcomer = {.kind = CUIPC_UNWRAP_BORROW, .expect = 1, .first = 2};
    pid_t vp = cuipc_test_fork(idle_main, NULL);
    cuipc_producer *p = start_producer(1, 256 << 10, CUIPC_FULL_WAIT);
    kept_message k;
    keep_wrapped(p, &k);
    pid_t np = replace_consumer(p, vp, 0, 1, &newcomer);
    CHECK_STATUS(cuipc_producer_send_wrapped(p, k.wrapped, 10 * SEC), CUIPC_ERR_STALE);
    CHECK(strstr(cuipc_last_error(), "no longer in flight") != NULL);
    CHECK_OK(cuipc_producer_cancel_wrapped(p, k.wrapped));
    CHECK_OK(send_seq(p, 2));
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(np, 20000) == 0);
    check_all_recycled(p, 1);
    free_kept(&k);
    cuipc_producer_destroy(p);
}

/* A wrapped tree sent, released by its consumer and recycled, then sent again: refused as
 * stale at the producer (its slot may be another message's), not put on the ring. */
static void test_sending_a_released_message_again_is_stale(void) {
    make_sock_path();
    consumer_args one = {.kind = CUIPC_UNWRAP_COPY, .expect = -1, .first = 1};
    pid_t cp = cuipc_test_fork(consumer_main, &one);
    cuipc_producer *p = start_producer(1, 256 << 10, CUIPC_FULL_WAIT);
    kept_message k;
    keep_wrapped(p, &k);
    CHECK_OK(cuipc_producer_send_wrapped(p, k.wrapped, 10 * SEC));
    CHECK_OK(cuipc_producer_drain(p, 10 * SEC));
    CHECK_STATUS(cuipc_producer_send_wrapped(p, k.wrapped, 10 * SEC), CUIPC_ERR_STALE);
    CHECK_OK(cuipc_producer_cancel_wrapped(p, k.wrapped)); /* nothing of it is left to give back */
    CHECK_OK(send_seq(p, 2));                              /* the consumer checks it follows 1 */
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(cp, 20000) == 0);
    check_all_recycled(p, 2);
    free_kept(&k);
    cuipc_producer_destroy(p);
}

/* A wrapped tree sent, then sent again before its consumer released it (a consumer attached
 * that reads nothing yet): refused at the producer, since a wrapped tree is sent once, so
 * nothing more goes on the ring; nor can it be given back, or sent again through
 * cuipc_producer_send (whose wrap copies its proxies), while its consumer may read it. What
 * debug_send_stale lets through for consumers to refuse is the harness's. Once the consumer is
 * gone its chunks come back. */
static void test_sending_a_message_twice_is_refused(void) {
    make_sock_path();
    pid_t idle = cuipc_test_fork(idle_main, NULL);
    cuipc_producer *p = start_producer(1, 256 << 10, CUIPC_FULL_WAIT);
    kept_message k;
    keep_wrapped(p, &k);
    CHECK_OK(cuipc_producer_send_wrapped(p, k.wrapped, 10 * SEC));
    cuipc_producer_stats once;
    cuipc_producer_stats_get(p, &once);
    CHECK(once.messages_sent == 1 && once.host_pool.in_flight == 2);
    CHECK_STATUS(cuipc_producer_send_wrapped(p, k.wrapped, 10 * SEC), CUIPC_ERR_DUPLICATE);
    CHECK(strstr(cuipc_last_error(), "sent already") != NULL);
    CHECK_STATUS(cuipc_producer_cancel_wrapped(p, k.wrapped), CUIPC_ERR_DUPLICATE);
    CHECK(strstr(cuipc_last_error(), "was delivered") != NULL);
    CHECK_STATUS(cuipc_producer_send(p, k.wrapped, NULL, 10 * SEC), CUIPC_ERR_DUPLICATE);
    cuipc_producer_stats after;
    cuipc_producer_stats_get(p, &after);
    CHECK(after.messages_sent == 1);
    CHECK(after.host_pool.in_flight == 2 && after.host_pool.cancelled == 0);
    /* The delivered proxy beside new tensors: refused, and the new tensors' chunks given back. */
    void *bufs[3];
    cuipc_value *mixed = make_message(2, bufs);
    CHECK_OK(cuipc_dict_set(mixed, "delivered", cuipc_value_clone(k.wrapped)));
    CHECK_STATUS(cuipc_producer_send(p, mixed, NULL, 10 * SEC), CUIPC_ERR_DUPLICATE);
    cuipc_producer_stats_get(p, &after);
    CHECK(after.messages_sent == 1 && after.host_pool.in_flight == 2);
    CHECK(after.host_pool.cancelled == after.host_pool.allocs - 2);
    cuipc_value_free(mixed);
    for (int i = 0; i < 3; i++)
        free(bufs[i]);
    kill(idle, SIGKILL);
    CHECK(cuipc_test_wait(idle, 5000) == -SIGKILL);
    wait_for_consumers(p, 0);
    cuipc_producer_close(p);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_stats end;
    cuipc_producer_stats_get(p, &end);
    CHECK(end.messages_sent == 1 && end.host_pool.in_flight == 0);
    CHECK(end.host_pool.recycled == 2 && end.host_pool.cancelled == end.host_pool.allocs - 2);
    free_kept(&k);
    cuipc_producer_destroy(p);
}

typedef struct late_send {
    cuipc_producer *p;
    cuipc_status s;
    char error[512];
} late_send;

static void *late_send_main(void *arg) {
    late_send *l = arg;
    void *bufs[3];
    cuipc_value *v = make_message(7, bufs);
    static char pad[4001]; /* as large as the messages that filled the ring */
    memset(pad, 'x', sizeof pad - 1);
    CHECK_OK(cuipc_dict_set(v, "pad", cuipc_value_string(pad)));
    l->s = cuipc_producer_send(l->p, v, NULL, 20 * SEC);
    snprintf(l->error, sizeof l->error, "%s", l->s == CUIPC_OK ? "" : cuipc_last_error());
    cuipc_value_free(v);
    for (int i = 0; i < 3; i++)
        free(bufs[i]);
    return NULL;
}

/* A send waits for room on its only consumer's full ring; that consumer is killed and another
 * attaches (a worker restarted): the send is wrapped again for the newcomer, which gets it. */
static void test_send_goes_to_the_consumer_that_replaced_its_own(void) {
    make_sock_path();
    pid_t stuck = cuipc_test_fork(idle_main, NULL); /* attached, reads nothing */
    cuipc_producer *p = make_producer(2, 256 << 10, CUIPC_FULL_WAIT);
    REQUIRE(cuipc_producer_accept(p, 1, 10 * SEC) == CUIPC_OK);
    int64_t seq = fill_ring(p); /* its ring is full */
    late_send l = {.p = p};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, late_send_main, &l) == 0);
    usleep(200 * 1000); /* the send is waiting for room */
    consumer_args newcomer = {.kind = CUIPC_UNWRAP_COPY, .expect = 1, .first = 7};
    pid_t np = cuipc_test_fork(consumer_main, &newcomer);
    CHECK_OK(cuipc_producer_accept(p, 2, 10 * SEC));
    kill(stuck, SIGKILL);
    CHECK(cuipc_test_wait(stuck, 5000) == -SIGKILL);
    pthread_join(t, NULL);
    CHECK(l.s == CUIPC_OK);
    if (l.s != CUIPC_OK)
        fprintf(stderr, "late send: %s\n", l.error);
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(np, 20000) == 0);
    check_all_recycled(p, (uint64_t)seq); /* the padded ones that went, and the late one */
    cuipc_producer_destroy(p);
}

typedef struct kept_send {
    cuipc_producer *p;
    const cuipc_value *wrapped;
    cuipc_status s;
} kept_send;

static void *kept_send_main(void *arg) {
    kept_send *k = arg;
    k->s = cuipc_producer_send_wrapped(k->p, k->wrapped, SEC);
    return NULL;
}

/* A wrapped tree whose send waits for ring room (its only consumer reads nothing) cannot be
 * given back meanwhile by another thread: the send might still deliver it. Once the send has
 * timed out, reaching nobody, it can. */
static void test_a_tree_being_sent_is_not_given_back(void) {
    make_sock_path();
    pid_t stuck = cuipc_test_fork(idle_main, NULL);
    cuipc_producer *p = make_producer(1, 256 << 10, CUIPC_FULL_WAIT);
    REQUIRE(cuipc_producer_accept(p, 1, 10 * SEC) == CUIPC_OK);
    fill_ring(p);
    cuipc_status s = CUIPC_OK;
    for (int n = 0; s == CUIPC_OK && n < 100; n++) { /* and no room left for a small one */
        void *bufs[3];
        cuipc_value *v = make_message(2, bufs);
        s = cuipc_producer_send(p, v, NULL, SEC / 20);
        cuipc_value_free(v);
        for (int i = 0; i < 3; i++)
            free(bufs[i]);
    }
    CHECK_STATUS(s, CUIPC_ERR_TIMEOUT);
    kept_message k;
    keep_wrapped(p, &k);
    kept_send ks = {.p = p, .wrapped = k.wrapped};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, kept_send_main, &ks) == 0);
    usleep(200 * 1000); /* the send is waiting for room */
    CHECK_STATUS(cuipc_producer_cancel_wrapped(p, k.wrapped), CUIPC_ERR_DUPLICATE);
    pthread_join(t, NULL);
    CHECK(ks.s == CUIPC_ERR_TIMEOUT);
    cuipc_producer_stats before;
    cuipc_producer_stats_get(p, &before);
    CHECK_OK(cuipc_producer_cancel_wrapped(p, k.wrapped));
    cuipc_producer_stats after;
    cuipc_producer_stats_get(p, &after);
    CHECK(after.host_pool.cancelled == before.host_pool.cancelled + 2);
    kill(stuck, SIGKILL);
    CHECK(cuipc_test_wait(stuck, 5000) == -SIGKILL);
    wait_for_consumers(p, 0);
    cuipc_producer_close(p);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_stats_get(p, &after);
    CHECK(after.host_pool.in_flight == 0);
    CHECK(after.host_pool.recycled + after.host_pool.cancelled == after.host_pool.allocs);
    free_kept(&k);
    cuipc_producer_destroy(p);
}

/* The producer dies: a consumer blocked in recv gets PEER_DEAD promptly, not a hang. */
static int attached_pipe[2];

static int orphan_main(void *arg) {
    (void)arg;
    cuipc_consumer *c = NULL;
    if (cuipc_consumer_attach(sock_path, 10 * SEC, &c) != CUIPC_OK)
        return 10;
    if (write(attached_pipe[1], "a", 1) != 1)
        return 11;
    cuipc_message *m = NULL;
    cuipc_status s = cuipc_consumer_recv(c, 20 * SEC, &m);
    cuipc_consumer_detach(c);
    return s == CUIPC_ERR_PEER_DEAD ? 0 : 20 + (int)s;
}

static int doomed_producer_main(void *arg) {
    (void)arg;
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.host_pool_bytes = 1 << 20;
    cfg.socket_path = sock_path;
    cuipc_producer *p = NULL;
    if (cuipc_producer_create(&cfg, &p) != CUIPC_OK ||
        cuipc_producer_accept(p, 1, 10 * SEC) != CUIPC_OK)
        return 10;
    pause();
    return 0;
}

static void test_producer_killed(void) {
    make_sock_path();
    REQUIRE(pipe(attached_pipe) == 0);
    pid_t pp = cuipc_test_fork(doomed_producer_main, NULL);
    pid_t cp = cuipc_test_fork(orphan_main, NULL);
    char b;
    CHECK(read(attached_pipe[0], &b, 1) == 1); /* the consumer is attached and about to block */
    usleep(50 * 1000);
    kill(pp, SIGKILL);
    CHECK(cuipc_test_wait(pp, 5000) == -SIGKILL);
    CHECK(cuipc_test_wait(cp, 5000) == 0);
    close(attached_pipe[0]);
    close(attached_pipe[1]);
    unlink(sock_path);
}

/* Forged and stale proxies through cuipc_consumer_adopt. */
static int forger_main(void *arg) {
    (void)arg;
    cuipc_consumer *c = NULL;
    cuipc_message *m = NULL;
    int rc = attach_and_receive(&c, &m);
    if (rc)
        return rc;
    int bad = 0;
    const cuipc_value *orig = cuipc_message_value(m);
    static uint8_t buf[4096];
    size_t len;
    /* Variants of the valid proxy, each must be rejected with the right code. */
    struct {
        int field;
        cuipc_status want;
    } cases[] = {{0, CUIPC_ERR_UNKNOWN_POOL},
                 {1, CUIPC_ERR_CORRUPT},
                 {2, CUIPC_ERR_STALE},
                 {3, CUIPC_ERR_CORRUPT},
                 {4, CUIPC_ERR_CORRUPT}};
    for (unsigned k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cuipc_value *v = cuipc_value_clone(orig);
        cuipc_proxy x = *cuipc_value_as_proxy(v);
        switch (cases[k].field) {
        case 0:
            x.u.pool.pool_id ^= 0x5a5a;
            break;
        case 1:
            x.u.pool.slot = 1u << 30;
            break;
        case 2:
            x.u.pool.generation += 7;
            break;
        case 3:
            x.u.pool.offset += 256;
            break;
        case 4:
            x.u.pool.offset = 1ull << 40;
            break; /* beyond the pool */
        }
        CHECK_OK(cuipc_value_set_proxy(v, &x));
        if (cuipc_encode(v, buf, sizeof buf, &len) != CUIPC_OK) {
            fprintf(stderr, "encode case %d: %s\n", cases[k].field, cuipc_last_error());
            bad++;
        }
        cuipc_message *f = NULL;
        cuipc_status s = cuipc_consumer_adopt(c, buf, len, &f);
        if (s != cases[k].want) {
            fprintf(stderr, "forged case %d: got %s (%s)\n", cases[k].field, cuipc_status_name(s),
                    cuipc_last_error());
            bad++;
        }
        cuipc_value_free(v);
    }
    /* Garbage bytes. */
    memset(buf, 0xAB, 64);
    cuipc_message *f = NULL;
    cuipc_status gs = cuipc_consumer_adopt(c, buf, 64, &f);
    if (gs != CUIPC_ERR_CORRUPT) {
        fprintf(stderr, "garbage: got %s (%s)\n", cuipc_status_name(gs), cuipc_last_error());
        bad++;
    }
    /* The genuine message, adopted again while m still holds its chunk: DUPLICATE (two live
     * messages over one chunk would read it after the first release let it be reused). */
    if (cuipc_encode(orig, buf, sizeof buf, &len) != CUIPC_OK)
        bad++;
    cuipc_status hs = cuipc_consumer_adopt(c, buf, len, &f);
    if (hs != CUIPC_ERR_DUPLICATE || !strstr(cuipc_last_error(), "adopted twice")) {
        fprintf(stderr, "adopted while held: got %s (%s)\n", cuipc_status_name(hs),
                cuipc_last_error());
        bad++;
    }
    /* The genuine message, re-sent after release: DUPLICATE. */
    CHECK_OK(cuipc_message_release(m, NULL));
    cuipc_status ds = cuipc_consumer_adopt(c, buf, len, &f);
    if (ds != CUIPC_ERR_DUPLICATE) {
        fprintf(stderr, "replay: got %s (%s)\n", cuipc_status_name(ds), cuipc_last_error());
        bad++;
    }
    cuipc_consumer_stats cs;
    cuipc_consumer_stats_get(c, &cs);
    if (cs.rejected != 8) {
        fprintf(stderr, "rejected %llu, expected 8\n", (unsigned long long)cs.rejected);
        bad++;
    }
    cuipc_message_free(m);
    cuipc_consumer_detach(c);
    return bad ? 30 + bad : 0;
}

static void test_forged_proxies(void) {
    make_sock_path();
    pid_t pid = cuipc_test_fork(forger_main, NULL);
    cuipc_producer *p = start_producer(1, 1 << 20, CUIPC_FULL_FAIL);
    CHECK_OK(send_bytes(p, 4096));
    int rc = cuipc_test_wait(pid, 20000);
    if (rc != 0)
        fprintf(stderr, "forger exited %d\n", rc);
    CHECK(rc == 0);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_destroy(p);
}

/* Several threads receiving on one consumer take turns at its ring: every message reaches
 * exactly one of them, intact, and nothing is refused. */
enum { SHARED_MSGS = 400, SHARED_THREADS = 3 };

typedef struct shared_consumer {
    cuipc_consumer *c;
    _Atomic int seen[SHARED_MSGS + 1];
    _Atomic int bad;
    _Atomic int started;
} shared_consumer;

static void *shared_receiver(void *arg) {
    shared_consumer *sc = arg;
    cuipc_unwrap_options o;
    cuipc_unwrap_options_init(&o);
    /* The first thread waits with no limit, as any negative timeout says (-2 too). */
    int64_t timeout = atomic_fetch_add(&sc->started, 1) == 0 ? -2 : 10 * SEC;
    for (int k = 0;; k++) {
        cuipc_message *m = NULL;
        cuipc_status s = cuipc_consumer_recv(sc->c, timeout, &m);
        if (s == CUIPC_ERR_CLOSED)
            return NULL;
        if (s != CUIPC_OK) {
            fprintf(stderr, "shared recv: %s\n", cuipc_last_error());
            atomic_fetch_add(&sc->bad, 1);
            return NULL;
        }
        o.kind = k % 2 ? CUIPC_UNWRAP_BORROW : CUIPC_UNWRAP_COPY;
        cuipc_value *v = NULL;
        uint64_t seq = 0;
        if (cuipc_message_unwrap(m, &o, &v) != CUIPC_OK || !verify_message(v, &seq) || seq < 1 ||
            seq > SHARED_MSGS || cuipc_message_release(m, NULL) != CUIPC_OK) {
            fprintf(stderr, "shared message %llu: %s\n", (unsigned long long)seq,
                    cuipc_last_error());
            atomic_fetch_add(&sc->bad, 1);
        } else {
            atomic_fetch_add(&sc->seen[seq], 1);
        }
        cuipc_value_free(v);
        cuipc_message_free(m);
    }
}

static int shared_consumer_main(void *arg) {
    (void)arg;
    static shared_consumer sc;
    if (cuipc_consumer_attach(sock_path, 10 * SEC, &sc.c) != CUIPC_OK)
        return 10;
    pthread_t t[SHARED_THREADS];
    for (int i = 0; i < SHARED_THREADS; i++)
        if (pthread_create(&t[i], NULL, shared_receiver, &sc) != 0)
            return 11;
    for (int i = 0; i < SHARED_THREADS; i++)
        pthread_join(t[i], NULL);
    int twice = 0, missing = 0;
    for (int s = 1; s <= SHARED_MSGS; s++) {
        int n = atomic_load(&sc.seen[s]);
        twice += n > 1;
        missing += n == 0;
    }
    cuipc_consumer_stats cs;
    cuipc_consumer_stats_get(sc.c, &cs);
    cuipc_consumer_detach(sc.c);
    if (twice || missing || atomic_load(&sc.bad) || cs.rejected) {
        fprintf(stderr, "shared consumer: %d twice, %d missing, %d bad, %llu rejected\n", twice,
                missing, atomic_load(&sc.bad), (unsigned long long)cs.rejected);
        return 20;
    }
    return 0;
}

static void test_threads_share_a_consumer(void) {
    make_sock_path();
    pid_t pid = cuipc_test_fork(shared_consumer_main, NULL);
    cuipc_producer *p = start_producer(1, 256 << 10, CUIPC_FULL_WAIT);
    for (uint64_t s = 1; s <= SHARED_MSGS; s++)
        CHECK_OK(send_seq(p, s));
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(pid, 60000) == 0);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_destroy(p);
}

/* cuipc_consumer_interrupt stops receiver threads blocked with no time limit on a producer that
 * is alive and sends nothing: each returns CLOSED, a later recv too, with a message waiting in
 * the ring; and a detach wakes a receiver still blocked, which then returns CLOSED. */
enum { INTERRUPT_FIRST = 20, INTERRUPT_THREADS = 2 };

typedef struct interrupted_receivers {
    cuipc_consumer *c;
    _Atomic int received, closed, bad, started;
    _Atomic pid_t tid[INTERRUPT_THREADS];
} interrupted_receivers;

/* Whether thread tid of this process is blocked in the futex syscall: inside recv, past its
 * spin (asleep on the ring, or on the turn another receiver holds). */
static bool asleep_in_futex(pid_t tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    long nr = -1;
    bool read = f && fscanf(f, "%ld", &nr) == 1;
    if (f)
        fclose(f);
    return read && nr == SYS_futex;
}

/* Whether thread tid stays in the futex syscall over 40 ms of looks: asleep in a wait, not
 * passing through a lock another thread holds for a moment. */
static bool asleep_in_futex_steadily(pid_t tid) {
    for (int i = 0; i < 20; i++, usleep(2000))
        if (!asleep_in_futex(tid))
            return false;
    return true;
}

/* Until the n receivers of ir are all asleep in recv (false after 10 s). */
static bool receivers_asleep(interrupted_receivers *ir, int n) {
    for (uint64_t end = now_ns() + 10 * SEC; now_ns() < end; usleep(1000)) {
        int asleep = 0;
        for (int i = 0; i < n && i < atomic_load(&ir->started); i++)
            asleep += asleep_in_futex(atomic_load(&ir->tid[i]));
        if (asleep == n)
            return true;
    }
    return false;
}

static void *interrupted_receiver(void *arg) {
    interrupted_receivers *ir = arg;
    int me = atomic_fetch_add(&ir->started, 1);
    atomic_store(&ir->tid[me], (pid_t)syscall(SYS_gettid));
    for (;;) {
        cuipc_message *m = NULL;
        cuipc_status s = cuipc_consumer_recv(ir->c, -1, &m);
        if (s == CUIPC_ERR_CLOSED && strstr(cuipc_last_error(), "interrupted") && !m) {
            atomic_fetch_add(&ir->closed, 1);
            return NULL; /* c is not touched again: a detach may be freeing it */
        }
        if (s != CUIPC_OK) {
            fprintf(stderr, "interrupted receiver: %s: %s\n", cuipc_status_name(s),
                    cuipc_last_error());
            atomic_fetch_add(&ir->bad, 1);
            return NULL;
        }
        cuipc_unwrap_options o;
        cuipc_unwrap_options_init(&o);
        cuipc_value *v = NULL;
        uint64_t seq = 0;
        if (cuipc_message_unwrap(m, &o, &v) != CUIPC_OK || !verify_message(v, &seq))
            atomic_fetch_add(&ir->bad, 1);
        cuipc_value_free(v);
        cuipc_message_free(m);
        atomic_fetch_add(&ir->received, 1);
    }
}

typedef struct interrupt_pipes {
    int to_producer[2], to_consumer[2];
} interrupt_pipes;

/* One byte from fd within 20 s: the other side stuck must fail the test, not hang it. */
static bool read_byte(int fd) {
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    char b;
    return poll(&pf, 1, 20000) == 1 && read(fd, &b, 1) == 1;
}

static int interrupted_consumer_main(void *arg) {
    interrupt_pipes *ip = arg;
    close(ip->to_producer[0]);
    close(ip->to_consumer[1]);
    static interrupted_receivers ir;
    if (cuipc_consumer_attach(sock_path, 10 * SEC, &ir.c) != CUIPC_OK)
        return 10;
    pthread_t t[INTERRUPT_THREADS];
    for (int i = 0; i < INTERRUPT_THREADS; i++)
        if (pthread_create(&t[i], NULL, interrupted_receiver, &ir) != 0)
            return 11;
    while (atomic_load(&ir.received) < INTERRUPT_FIRST && !atomic_load(&ir.bad))
        usleep(1000);
    if (!receivers_asleep(&ir, INTERRUPT_THREADS))
        return 18;
    cuipc_consumer_interrupt(ir.c);
    for (int i = 0; i < INTERRUPT_THREADS; i++)
        pthread_join(t[i], NULL);
    if (atomic_load(&ir.bad) || atomic_load(&ir.closed) != INTERRUPT_THREADS)
        return 12;
    /* A message sent after the interrupt waits in the ring; recv gives CLOSED, not it. */
    char b = 'i';
    if (write(ip->to_producer[1], &b, 1) != 1 || !read_byte(ip->to_consumer[0]))
        return 13;
    for (int64_t timeout = -1; timeout <= 0; timeout++) { /* no limit, and a poll */
        cuipc_message *m = NULL;
        cuipc_status s = cuipc_consumer_recv(ir.c, timeout, &m);
        if (s != CUIPC_ERR_CLOSED || m) {
            fprintf(stderr, "recv after the interrupt: %s\n", cuipc_status_name(s));
            return 14;
        }
    }
    cuipc_consumer_detach(ir.c);

    /* A detach with a receiver still blocked: it is woken before anything is unmapped. */
    static interrupted_receivers late;
    if (cuipc_consumer_attach(sock_path, 10 * SEC, &late.c) != CUIPC_OK) {
        fprintf(stderr, "second attach: %s\n", cuipc_last_error());
        return 15;
    }
    pthread_t lt;
    if (pthread_create(&lt, NULL, interrupted_receiver, &late) != 0)
        return 16;
    if (!receivers_asleep(&late, 1)) /* inside recv: a detach before would free it under it */
        return 19;
    cuipc_consumer_detach(late.c);
    pthread_join(lt, NULL);
    return atomic_load(&late.closed) == 1 && !atomic_load(&late.bad) ? 0 : 17;
}

static void test_interrupt_stops_receivers(void) {
    make_sock_path();
    static interrupt_pipes ip;
    REQUIRE(pipe(ip.to_producer) == 0 && pipe(ip.to_consumer) == 0);
    pid_t pid = cuipc_test_fork(interrupted_consumer_main, &ip);
    close(ip.to_producer[1]);
    close(ip.to_consumer[0]);
    cuipc_producer *p = start_producer(1, 256 << 10, CUIPC_FULL_WAIT);
    for (uint64_t s = 1; s <= INTERRUPT_FIRST; s++)
        CHECK_OK(send_seq(p, s));
    if (read_byte(ip.to_producer[0])) {
        CHECK_OK(send_seq(p, INTERRUPT_FIRST + 1)); /* into the ring of an interrupted consumer */
        CHECK(write(ip.to_consumer[1], "s", 1) == 1);
        /* The second consumer takes the place the first one left (accept answers at once
         * while the first still counts: asked until the second has come). */
        cuipc_producer_stats st = {0};
        for (uint64_t end = now_ns() + 20 * SEC; st.consumers_attached < 2 && now_ns() < end;) {
            cuipc_status_ignore(cuipc_producer_accept(p, 1, SEC / 10));
            usleep(1000);
            cuipc_producer_stats_get(p, &st);
        }
        CHECK(st.consumers_attached == 2);
    } else {
        CHECK(!"the consumer's receivers stopped on the interrupt");
    }
    int rc = cuipc_test_wait(pid, 30000);
    if (rc != 0)
        fprintf(stderr, "interrupted consumer exited %d\n", rc);
    CHECK(rc == 0);
    /* The unreceived message's chunks came back with the detach. */
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_destroy(p);
    close(ip.to_producer[0]);
    close(ip.to_consumer[1]);
}

/* cuipc_producer_close on one thread while another's send waits, with no limit, for room on the
 * ring of a consumer that is alive but reads nothing: the close does not wait for that consumer;
 * the send returns CLOSED, having reached no one, and its pool chunk goes back while that
 * consumer stays attached. (The close waited for the send's lock until the consumer read,
 * forever where it never did.) */
typedef struct blocked_sender {
    cuipc_producer *p;
    cuipc_status (*send)(cuipc_producer *p, int64_t timeout_ns);
    _Atomic pid_t tid;
    _Atomic int sent, closed; /* each thread's own: they may end in either order */
    cuipc_status status;
    char error[256];
} blocked_sender;

/* A message of about 1 KiB: a pad and a 64-byte host tensor (a chunk of the host pool). */
static cuipc_status send_pad(cuipc_producer *p, int64_t timeout_ns) {
    static char pad[901];
    static float data[16];
    memset(pad, 'x', sizeof pad - 1);
    cuipc_tensor t;
    int64_t shape[1] = {16};
    CHECK_OK(cuipc_tensor_init(&t, data, CUIPC_DEVICE_HOST, CUIPC_DTYPE_F32, 1, shape));
    cuipc_value *v = cuipc_value_dict();
    CHECK_OK(cuipc_dict_set(v, "pad", cuipc_value_string(pad)));
    CHECK_OK(cuipc_dict_set(v, "x", cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    cuipc_status s = cuipc_producer_send(p, v, NULL, timeout_ns);
    cuipc_value_free(v);
    return s;
}

static void *blocked_send_main(void *arg) {
    blocked_sender *b = arg;
    atomic_store(&b->tid, (pid_t)syscall(SYS_gettid));
    b->status = b->send(b->p, -1);
    snprintf(b->error, sizeof b->error, "%s", cuipc_last_error());
    atomic_store(&b->sent, 1);
    return NULL;
}

static void *close_main(void *arg) {
    blocked_sender *b = arg;
    cuipc_producer_close(b->p);
    atomic_store(&b->closed, 1);
    return NULL;
}

typedef struct idle_pipes {
    int to_consumer[2], to_producer[2];
} idle_pipes;

static int idle_consumer_main(void *arg) {
    idle_pipes *ip = arg;
    cuipc_consumer *c = NULL;
    if (cuipc_consumer_attach(sock_path, 10 * SEC, &c) != CUIPC_OK)
        return 10;
    /* Reads nothing until told to go (or 30 s); then all that came, up to CLOSED, and stays
     * attached until told again. */
    if (!read_byte(ip->to_consumer[0]))
        return 11;
    cuipc_message *m = NULL;
    cuipc_status s;
    while ((s = cuipc_consumer_recv(c, 10 * SEC, &m)) == CUIPC_OK)
        cuipc_message_free(m);
    if (s != CUIPC_ERR_CLOSED || write(ip->to_producer[1], "r", 1) != 1 ||
        !read_byte(ip->to_consumer[0]))
        return 12;
    cuipc_consumer_detach(c);
    return 0;
}

/* A forked consumer of idle_consumer_main, with its pipes. */
static pid_t start_idle_consumer(idle_pipes *ip) {
    make_sock_path();
    REQUIRE(pipe(ip->to_consumer) == 0 && pipe(ip->to_producer) == 0);
    return cuipc_test_fork(idle_consumer_main, ip);
}

/* Told to detach once it has read all, it must exit cleanly. */
static void end_idle_consumer(idle_pipes *ip, pid_t pid) {
    CHECK(write(ip->to_consumer[1], "d", 1) == 1);
    CHECK(cuipc_test_wait(pid, 30000) == 0);
    for (int i = 0; i < 2; i++) {
        close(ip->to_consumer[i]);
        close(ip->to_producer[i]);
    }
}

/* b's send on a thread of its own, until it stays asleep in its wait (false after 10 s). */
static bool start_blocked_sender(blocked_sender *b, pthread_t *t) {
    REQUIRE(pthread_create(t, NULL, blocked_send_main, b) == 0);
    for (uint64_t end = now_ns() + 10 * SEC; now_ns() < end; usleep(1000))
        if (atomic_load(&b->tid) && asleep_in_futex_steadily(atomic_load(&b->tid)))
            return true;
    return false;
}

static bool wait_until(_Atomic int *flag, int value, uint64_t limit_ns) {
    for (uint64_t end = now_ns() + limit_ns; now_ns() < end; usleep(1000))
        if (atomic_load(flag) >= value)
            return true;
    return false;
}

static void test_close_does_not_wait_for_a_blocked_send(void) {
    static idle_pipes ip;
    pid_t pid = start_idle_consumer(&ip);
    cuipc_producer *p = start_producer(1, 256 << 10, CUIPC_FULL_FAIL);
    int sent = 0;
    while (sent < 200 && send_pad(p, 20 * 1000 * 1000) == CUIPC_OK)
        sent++;
    CHECK(sent > 10 && sent < 200); /* the 64 KiB ring full */
    static blocked_sender b;
    b.p = p;
    b.send = send_pad;
    pthread_t sender, closer;
    CHECK(start_blocked_sender(&b, &sender)); /* in the send's wait for room */
    REQUIRE(pthread_create(&closer, NULL, close_main, &b) == 0);
    bool closed = wait_until(&b.closed, 1, 10 * SEC);
    CHECK(closed);
    /* The consumer reads what came (unblocking a close that still waits), then stays. */
    CHECK(write(ip.to_consumer[1], "g", 1) == 1);
    pthread_join(closer, NULL);
    pthread_join(sender, NULL);
    CHECK(b.status == CUIPC_ERR_CLOSED);
    CHECK(strstr(b.error, "waited for room") != NULL);
    CHECK(read_byte(ip.to_producer[0]));
    /* Every chunk back, the stopped send's too, with its consumer still attached. */
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    end_idle_consumer(&ip, pid);
    cuipc_producer_destroy(p);
}

/* A message with one host tensor of `kib` KiB (a chunk of that size in the host pool). */
static cuipc_status send_kib(cuipc_producer *p, int kib, int64_t timeout_ns) {
    static uint8_t data[32 << 10];
    cuipc_tensor t;
    int64_t shape[1] = {(int64_t)kib << 10};
    CHECK_OK(cuipc_tensor_init(&t, data, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1, shape));
    cuipc_value *v = cuipc_value_dict();
    CHECK_OK(cuipc_dict_set(v, "x", cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    cuipc_status s = cuipc_producer_send(p, v, NULL, timeout_ns);
    cuipc_value_free(v);
    return s;
}

/* An interrupt while messages flow, at a different point of the receiver's loop each round. The
 * receiver may be waiting in the ring, decoding a message it took, or freeing one: whichever,
 * its recv gives a whole message or CLOSED with none, and every message taken from the ring is
 * given back, the one taken just as the interrupt came too (recv frees it). The producer checks
 * that last part with the consumer still attached: its pool then holds exactly the chunks of
 * the messages still in the ring, sent minus taken. */
enum { FLOW_ROUNDS = 16, FLOW_TENSORS = 32 };

/* A message of FLOW_TENSORS small host tensors, a pool chunk each: its decode is long enough
 * for the interrupt to come during it in some rounds. */
static cuipc_status send_flow(cuipc_producer *p, int64_t timeout_ns) {
    static uint8_t data[64];
    cuipc_value *v = cuipc_value_list();
    for (int i = 0; i < FLOW_TENSORS; i++) {
        cuipc_tensor t;
        CHECK_OK(cuipc_tensor_init(&t, data, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1,
                                   (const int64_t[]){sizeof data}));
        CHECK_OK(cuipc_list_append(v, cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    }
    cuipc_status s = cuipc_producer_send(p, v, NULL, timeout_ns);
    cuipc_value_free(v);
    return s;
}

typedef struct flow_receiver {
    cuipc_consumer *c;
    _Atomic int received, closed, bad;
} flow_receiver;

static void *flow_receive(void *arg) {
    flow_receiver *f = arg;
    for (;;) {
        cuipc_message *m = NULL;
        cuipc_status s = cuipc_consumer_recv(f->c, 10 * SEC, &m);
        if (s == CUIPC_OK && m) {
            cuipc_message_free(m);
            atomic_fetch_add(&f->received, 1);
            continue;
        }
        if (s == CUIPC_ERR_CLOSED && !m) {
            atomic_store(&f->closed, 1);
        } else {
            fprintf(stderr, "flow receiver: %s, message %p: %s\n", cuipc_status_name(s), (void *)m,
                    cuipc_last_error());
            atomic_store(&f->bad, 1);
        }
        return NULL;
    }
}

static int flow_consumer_main(void *arg) {
    interrupt_pipes *ip = arg;
    close(ip->to_producer[0]);
    close(ip->to_consumer[1]);
    int taken_as_interrupted = 0;
    for (int round = 0; round < FLOW_ROUNDS; round++) {
        static flow_receiver f;
        f = (flow_receiver){0};
        if (cuipc_consumer_attach(sock_path, 10 * SEC, &f.c) != CUIPC_OK)
            return 10;
        pthread_t t;
        if (pthread_create(&t, NULL, flow_receive, &f) != 0)
            return 11;
        for (uint64_t end = now_ns() + 10 * SEC;
             atomic_load(&f.received) < 20 + 7 * round && !atomic_load(&f.bad) && now_ns() < end;)
            usleep(100);
        usleep((useconds_t)(round * 37 % 113)); /* a different point of the loop each round */
        cuipc_consumer_interrupt(f.c);
        pthread_join(t, NULL);
        if (atomic_load(&f.bad) || !atomic_load(&f.closed) || atomic_load(&f.received) < 20)
            return 12;
        cuipc_message *m = NULL;
        if (cuipc_consumer_recv(f.c, 0, &m) != CUIPC_ERR_CLOSED || m)
            return 13;
        cuipc_consumer_stats st;
        cuipc_consumer_stats_get(f.c, &st);
        taken_as_interrupted += st.messages > (uint64_t)atomic_load(&f.received);
        if (write(ip->to_producer[1], &st.messages, sizeof st.messages) != sizeof st.messages ||
            !read_byte(ip->to_consumer[0])) /* the producer has counted its chunks */
            return 14;
        cuipc_consumer_detach(f.c);
    }
    printf("interrupt while messages flow: %d of %d rounds took a message as it came\n",
           taken_as_interrupted, FLOW_ROUNDS);
    fflush(stdout); /* the child leaves with _exit */
    return 0;
}

static void test_interrupt_while_messages_flow(void) {
    make_sock_path();
    static interrupt_pipes ip;
    REQUIRE(pipe(ip.to_producer) == 0 && pipe(ip.to_consumer) == 0);
    pid_t pid = cuipc_test_fork(flow_consumer_main, &ip);
    close(ip.to_producer[1]);
    close(ip.to_consumer[0]);
    cuipc_producer *p = make_producer(1, 1 << 20, CUIPC_FULL_FAIL);
    for (int round = 0; round < FLOW_ROUNDS; round++) {
        cuipc_status accepted = cuipc_producer_accept(p, 1, 10 * SEC);
        CHECK_OK(accepted);
        if (accepted != CUIPC_OK)
            break;
        /* Sends until the consumer says how many it took; a full ring or pool (the consumer
         * stops reading at the interrupt) just waits for that. */
        uint64_t sent = 0, taken = 0;
        struct pollfd pf = {.fd = ip.to_producer[0], .events = POLLIN};
        bool said = false;
        for (uint64_t end = now_ns() + 20 * SEC; !said && now_ns() < end;) {
            cuipc_status s = send_flow(p, 1000000);
            sent += s == CUIPC_OK;
            if (s != CUIPC_OK && s != CUIPC_ERR_TIMEOUT && s != CUIPC_ERR_POOL_FULL) {
                fprintf(stderr, "round %d: send: %s\n", round, cuipc_last_error());
                break;
            }
            said = poll(&pf, 1, 0) == 1;
        }
        said = said && read(ip.to_producer[0], &taken, sizeof taken) == sizeof taken;
        CHECK(said);
        if (!said)
            break;
        /* Every chunk of a message taken is back; those still in the ring are not. */
        uint64_t in_ring = (sent - taken) * FLOW_TENSORS;
        cuipc_producer_stats st = {0};
        for (uint64_t end = now_ns() + 5 * SEC; now_ns() < end; usleep(1000)) {
            cuipc_producer_stats_get(p, &st);
            if (st.host_pool.in_flight == in_ring)
                break;
        }
        if (st.host_pool.in_flight != in_ring)
            fprintf(stderr, "round %d: %llu sent, %llu taken, %u chunks in flight\n", round,
                    (unsigned long long)sent, (unsigned long long)taken, st.host_pool.in_flight);
        CHECK(taken <= sent && st.host_pool.in_flight == in_ring);
        CHECK(write(ip.to_consumer[1], "d", 1) == 1);
        wait_for_consumers(p, 0);
    }
    CHECK(cuipc_test_wait(pid, 30000) == 0);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_destroy(p);
    close(ip.to_producer[0]);
    close(ip.to_consumer[1]);
}

/* 8 KiB that fit, then 32 KiB that wait: the first chunk must go back when the wait ends. */
static cuipc_status send_8_then_32kib(cuipc_producer *p, int64_t timeout_ns) {
    static uint8_t data[40 << 10];
    cuipc_value *v = cuipc_value_dict();
    int64_t kib[2] = {8, 32};
    for (int i = 0; i < 2; i++) {
        cuipc_tensor t;
        int64_t shape[1] = {kib[i] << 10};
        CHECK_OK(cuipc_tensor_init(&t, data, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1, shape));
        CHECK_OK(cuipc_dict_set(v, i ? "b" : "a", cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    }
    cuipc_status s = cuipc_producer_send(p, v, NULL, timeout_ns);
    cuipc_value_free(v);
    return s;
}

/* The same for a send waiting for room in the pool (full_policy wait, a minute): the close ends
 * the wait with CLOSED, nothing taken, instead of leaving it to wait for releases that the
 * consumer, alive but reading nothing, never makes. */
static void test_close_stops_a_wait_for_pool_room(void) {
    static idle_pipes ip;
    pid_t pid = start_idle_consumer(&ip);
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.mode = CUIPC_MODE_DEFAULT;
    cfg.host_pool_bytes = 64 << 10;
    cfg.max_consumers = 1;
    cfg.full_policy = CUIPC_FULL_WAIT;
    cfg.full_timeout_ns = 60 * SEC;
    cfg.socket_path = sock_path;
    cuipc_producer *p = NULL;
    REQUIRE(cuipc_producer_create(&cfg, &p) == CUIPC_OK);
    REQUIRE(cuipc_producer_accept(p, 1, 10 * SEC) == CUIPC_OK);
    for (int i = 0; i < 3; i++) /* 48 of the 64 KiB in flight: 32 more do not fit */
        CHECK_OK(send_kib(p, 16, 10 * SEC));
    static blocked_sender b;
    b.p = p;
    b.send = send_8_then_32kib;
    pthread_t sender;
    bool asleep = start_blocked_sender(&b, &sender);
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    CHECK(asleep && st.host_pool.full_events == 1); /* in the pool's wait for room */
    cuipc_producer_close(p);
    CHECK(wait_until(&b.sent, 1, 10 * SEC));      /* not after its minute */
    CHECK(write(ip.to_consumer[1], "g", 1) == 1); /* the consumer reads what came */
    pthread_join(sender, NULL);
    CHECK(b.status == CUIPC_ERR_CLOSED);
    CHECK(strstr(b.error, "interrupted") != NULL);
    CHECK(read_byte(ip.to_producer[0]));
    /* The stopped send took nothing: its 8 KiB went back; the close is no failure of the pool. */
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_stats_get(p, &st);
    CHECK(st.host_pool.full_failures == 0);
    end_idle_consumer(&ip, pid);
    cuipc_producer_destroy(p);
}

/* A consumer that attaches after its producer was closed hears CLOSED (within its recv's 10 s
 * limit), not nothing until the producer is destroyed. It stays attached until told to go: one
 * that left at once could be gone again before accept counted it. */
static void test_consumer_attached_after_close_hears_closed(void) {
    static idle_pipes ip;
    pid_t pid = start_idle_consumer(&ip);
    cuipc_producer *p = make_producer(1, 256 << 10, CUIPC_FULL_FAIL);
    cuipc_producer_close(p);
    CHECK_OK(cuipc_producer_accept(p, 1, 10 * SEC));
    CHECK(write(ip.to_consumer[1], "g", 1) == 1);
    CHECK(read_byte(ip.to_producer[0])); /* its recv said CLOSED */
    end_idle_consumer(&ip, pid);
    cuipc_producer_destroy(p);
}

/* Attaches and detaches at once. */
static int passing_main(void *arg) {
    (void)arg;
    cuipc_consumer *c = NULL;
    if (cuipc_consumer_attach(sock_path, 10 * SEC, &c) != CUIPC_OK)
        return 10;
    cuipc_consumer_detach(c);
    return 0;
}

/* An accept that times out names the consumers that came and left during its wait: "0 of 2
 * attached" alone would hide that one did attach. Accepts of 1 s each, until one has seen the
 * consumer come (fork and attach may take a while on a busy host); that one says so. */
static void test_accept_timeout_names_consumers_that_came_and_left(void) {
    make_sock_path();
    cuipc_producer *p = make_producer(2, 256 << 10, CUIPC_FULL_FAIL);
    pid_t pid = cuipc_test_fork(passing_main, NULL);
    cuipc_producer_stats st = {0};
    bool named = false;
    for (uint64_t end = now_ns() + 20 * SEC; st.consumers_attached == 0 && now_ns() < end;) {
        CHECK(cuipc_producer_accept(p, 2, SEC) == CUIPC_ERR_TIMEOUT);
        named = strstr(cuipc_last_error(), "1 came during the wait") != NULL;
        cuipc_producer_stats_get(p, &st);
    }
    CHECK(st.consumers_attached == 1 && named);
    CHECK(cuipc_test_wait(pid, 30000) == 0);
    cuipc_producer_destroy(p);
}

/* Message seq of make_message, with its two non-empty tensors written straight into producer
 * buffers (zero-copy produce): tensor 0 at the start of its buffer, the strided tensor 1 at an
 * offset inside a larger one. NULL if a buffer cannot be had (the status is then in *st). */
static cuipc_value *make_buffered_message(cuipc_producer *p, uint64_t seq, cuipc_status *st) {
    cuipc_value *root = cuipc_value_dict();
    CHECK_OK(cuipc_dict_set(root, "seq", cuipc_value_int((int64_t)seq)));
    CHECK_OK(cuipc_dict_set(root, "prompt", cuipc_value_string("describe the image")));
    cuipc_value *list = cuipc_value_list();
    *st = CUIPC_OK;
    for (int i = 0; i < 3 && *st == CUIPC_OK; i++) {
        cuipc_tensor t;
        tensor_shape(seq, i, &t, NULL);
        uint64_t n = cuipc_tensor_span_bytes(&t);
        if (n > 0) {
            uint64_t lead = i == 1 ? 64 : 0;
            void *buf = NULL;
            *st = cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, lead + n + 32, 10 * SEC, &buf);
            if (*st != CUIPC_OK)
                break;
            t.data = (char *)buf + lead;
            cuipc_host_fill_pattern(t.data, n, seq * 3 + (uint64_t)i);
        }
        CHECK_OK(cuipc_list_append(list, cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    }
    CHECK_OK(cuipc_dict_set(root, "features", list));
    if (*st != CUIPC_OK) {
        cuipc_value_free(root);
        return NULL;
    }
    return root;
}

/* One host tensor of n bytes at data. */
static cuipc_value *host_tensor(void *data, uint64_t n) {
    cuipc_tensor t;
    int64_t shape[1] = {(int64_t)n};
    CHECK_OK(cuipc_tensor_init(&t, data, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1, shape));
    return cuipc_value_tensor(&t, CUIPC_OWNER_NONE);
}

/* Zero-copy produce through host buffers: two consumers (copy, borrow) get every message intact
 * from a pool small enough to recycle; misuse is refused by name and loses nothing. */
static void test_buffers(void) {
    make_sock_path();
    enum { N = 2, MSGS = 200 };
    consumer_args args[N];
    pid_t pids[N];
    cuipc_producer *p = start_with_consumers(N, args, pids);
    void *buf = NULL;
    CHECK_STATUS(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, 0, 0, &buf),
                 CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_CUDA, 4096, 0, &buf),
                 CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "no GPU pool") != NULL);
    CHECK(buf == NULL);
    int local = 0;
    CHECK_STATUS(cuipc_producer_buffer_free(p, &local), CUIPC_ERR_INVALID_ARG);

    for (uint64_t seq = 1; seq <= MSGS; seq++) {
        cuipc_status st;
        cuipc_value *v = make_buffered_message(p, seq, &st);
        CHECK_OK(st);
        if (v)
            CHECK_OK(cuipc_producer_send(p, v, NULL, 10 * SEC));
        if (seq % 50 != 0) {
            cuipc_value_free(v);
            continue;
        }
        /* The same tree again: its buffers were taken by the send above. */
        CHECK_STATUS(cuipc_producer_send(p, v, NULL, 10 * SEC), CUIPC_ERR_STALE);
        CHECK(strstr(cuipc_last_error(), "sent or freed already") != NULL);
        cuipc_value_free(v);
    }

    /* Nothing in flight from here on: the pool's room is exactly what the buffers take. */
    CHECK_OK(cuipc_producer_drain(p, 10 * SEC));
    /* A tensor past its buffer's end is refused and the buffer stays held. */
    REQUIRE(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, 1000, 0, &buf) == CUIPC_OK);
    cuipc_value *v = host_tensor((char *)buf + 8, 1000);
    CHECK_STATUS(cuipc_producer_send(p, v, NULL, SEC), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "runs past its buffer of 1000 bytes") != NULL);
    cuipc_value_free(v);
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    CHECK(st.host_pool.held == 1);
    /* Held buffers are not in flight: drain does not wait for them. */
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    /* Two tensors of one message in one buffer (or the same tensor twice): refused by name
     * before anything is taken, the buffer still the application's. */
    cuipc_value *two = cuipc_value_list();
    CHECK_OK(cuipc_list_append(two, host_tensor(buf, 100)));
    CHECK_OK(cuipc_list_append(two, host_tensor((char *)buf + 200, 100)));
    CHECK_STATUS(cuipc_producer_send(p, two, NULL, SEC), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "lie in one pool buffer") != NULL);
    cuipc_value_free(two);
    cuipc_producer_stats_get(p, &st);
    CHECK(st.host_pool.held == 1);
    CHECK_OK(cuipc_producer_buffer_free(p, buf)); /* still held: the send took nothing */

    /* Held buffers fill the pool like chunks in flight; freeing them makes room. */
    void *held[2] = {NULL, NULL};
    REQUIRE(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, 40 << 10, 0, &held[0]) == CUIPC_OK);
    CHECK_STATUS(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, 40 << 10, 0, &held[1]),
                 CUIPC_ERR_POOL_FULL);
    CHECK(held[1] == NULL);
    CHECK_OK(cuipc_producer_buffer_free(p, held[0]));
    CHECK_STATUS(cuipc_producer_buffer_free(p, held[0]), CUIPC_ERR_INVALID_ARG);
    REQUIRE(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, 40 << 10, 0, &held[1]) == CUIPC_OK);
    CHECK_OK(cuipc_producer_buffer_free(p, held[1]));

    cuipc_producer_close(p);
    CHECK_STATUS(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, 64, 0, &buf), CUIPC_ERR_CLOSED);
    for (int i = 0; i < N; i++)
        CHECK(cuipc_test_wait(pids[i], 30000) == 0);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_stats_get(p, &st);
    CHECK(st.messages_sent == MSGS);
    CHECK(st.host_pool.in_flight == 0);
    CHECK(st.host_pool.held == 0);
    CHECK(st.host_pool.used_bytes == 0);
    /* Every buffer came back: recycled after its consumers, or cancelled. */
    CHECK(st.host_pool.allocs == st.host_pool.recycled + st.host_pool.cancelled);
    CHECK(st.host_pool.recycled == 2 * MSGS);
    cuipc_producer_destroy(p);
}

/* Bad configuration is refused with a message naming the value. */
static void test_bad_config(void) {
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.max_consumers = 0;
    cuipc_producer *p = NULL;
    CHECK_STATUS(cuipc_producer_create(&cfg, &p), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "max_consumers 0") != NULL);
    cuipc_producer_config_init(&cfg);
    cfg.mode = CUIPC_MODE_CUDA_IPC_POOL;
    CHECK_STATUS(cuipc_producer_create(&cfg, &p), CUIPC_ERR_INVALID_ARG);
    cuipc_consumer *c = NULL;
    CHECK_STATUS(cuipc_consumer_attach("/nonexistent/cuipc.sock", 50 * 1000 * 1000, &c),
                 CUIPC_ERR_TIMEOUT);
}

static void *accept_one_thread(void *p) {
    cuipc_status_ignore(cuipc_producer_accept(p, 1, 10 * SEC));
    return NULL;
}

/* NULL where an object or an out-pointer is asked for: INVALID_ARG naming it, never a crash;
 * the calls that end an object (close, destroy, detach, free) take NULL as nothing to do. */
static void test_null_arguments(void) {
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cuipc_producer *p = NULL;
    cuipc_consumer *c = NULL;
    cuipc_message *m = NULL;
    cuipc_value *v = NULL;
    CHECK_STATUS(cuipc_producer_create(NULL, &p), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_producer_create(&cfg, NULL), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "may be NULL") != NULL);
    CHECK_STATUS(cuipc_consumer_attach("/nonexistent/s", 0, NULL), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_producer_accept(NULL, 1, 0), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_consumer_recv(NULL, 0, &m), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_consumer_adopt(NULL, "x", 1, &m), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_message_unwrap(NULL, NULL, &v), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_message_release(NULL, NULL), CUIPC_ERR_INVALID_ARG);
    REQUIRE(cuipc_producer_create(&cfg, &p) == CUIPC_OK);
    cuipc_value *tree = cuipc_value_int(1);
    CHECK_STATUS(cuipc_producer_wrap(p, tree, NULL, NULL), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_producer_wrap_within(p, tree, NULL, NULL, &v), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "wait slice is NULL") != NULL);
    cuipc_value_free(tree);
    cuipc_producer_stats_get(p, NULL);
    cuipc_producer_close(NULL);
    cuipc_producer_destroy(p);
    cuipc_consumer_detach(c);
    CHECK(m == NULL && v == NULL);
}

/* The pool on its own: a chunk a consumer released was delivered, so it is not cancelled (that
 * would ack it for its other readers and hand it on under them); one never released is. */
static void test_pool_cancel_after_a_release(void) {
    cuipc_pool_config cfg;
    cuipc_pool_config_init(&cfg);
    cfg.size = 1 << 20;
    cfg.max_consumers = 2;
    cfg.recycler_thread = false;
    cuipc_pool *pool = NULL;
    REQUIRE(cuipc_pool_create(&cfg, &pool) == CUIPC_OK);
    cuipc_chunk c, fresh;
    REQUIRE(cuipc_pool_alloc(pool, 4096, 0x3, 0, &c) == CUIPC_OK);
    cuipc_pool_mark_ready(pool, &c);
    CHECK_OK(cuipc_pool_release(pool, c.slot, c.generation, 0));
    CHECK_STATUS(cuipc_pool_cancel(pool, &c), CUIPC_ERR_DUPLICATE);
    CHECK(strstr(cuipc_last_error(), "released by consumer 0") != NULL);
    CHECK_OK(cuipc_pool_release(pool, c.slot, c.generation, 1)); /* its own, not refused */
    CHECK(cuipc_pool_reclaim(pool) == 1);
    REQUIRE(cuipc_pool_alloc(pool, 4096, 0x3, 0, &fresh) == CUIPC_OK);
    cuipc_pool_mark_ready(pool, &fresh);
    CHECK_OK(cuipc_pool_cancel(pool, &fresh)); /* nobody had it */
    cuipc_pool_stats st;
    cuipc_pool_stats_get(pool, &st);
    CHECK(st.duplicate_releases == 0 && st.cancelled == 1 && st.in_flight == 0);
    cuipc_pool_destroy(pool);
}

/* A producer at a socket path: created, then killed before it could remove its socket. */
static int killed_at_path_main(void *arg) {
    (void)arg;
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.socket_path = sock_path;
    cuipc_producer *p = NULL;
    if (cuipc_producer_create(&cfg, &p) != CUIPC_OK)
        return 10;
    raise(SIGKILL);
    return 11;
}

/* An explicit socket path: a live producer's is refused by name; one a killed producer left
 * behind is taken over (a restarted service at a fixed path); a file not a socket is left
 * alone. */
static void test_socket_path_in_use(void) {
    make_sock_path();
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.socket_path = sock_path;
    cuipc_producer *live = NULL, *second = NULL;
    REQUIRE(cuipc_producer_create(&cfg, &live) == CUIPC_OK);
    CHECK_STATUS(cuipc_producer_create(&cfg, &second), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "another producer listens there") != NULL);
    /* Looked at without a connection: the live producer saw no refused peer. */
    CHECK_STATUS(cuipc_producer_accept(live, 1, 0), CUIPC_ERR_TIMEOUT);
    cuipc_producer_stats ls;
    cuipc_producer_stats_get(live, &ls);
    CHECK(ls.peers_refused == 0);
    cuipc_producer_destroy(live);

    make_sock_path();
    CHECK(cuipc_test_wait(cuipc_test_fork(killed_at_path_main, NULL), 10000) == -SIGKILL);
    struct stat st;
    CHECK(lstat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode)); /* left behind */
    REQUIRE(cuipc_producer_create(&cfg, &second) == CUIPC_OK);
    cuipc_consumer *c = NULL;
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, accept_one_thread, second) == 0);
    CHECK_OK(cuipc_consumer_attach(sock_path, 10 * SEC, &c)); /* the new producer answers */
    pthread_join(t, NULL);
    cuipc_consumer_detach(c);
    /* A successor bound at the path (its file removed by hand here): the producer it
     * replaced, destroyed later, leaves the successor's socket; the successor removes it. */
    REQUIRE(unlink(sock_path) == 0);
    cuipc_producer *third = NULL;
    REQUIRE(cuipc_producer_create(&cfg, &third) == CUIPC_OK);
    cuipc_producer_destroy(second);
    CHECK(lstat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode));
    cuipc_producer_destroy(third);
    CHECK(lstat(sock_path, &st) != 0);

    make_sock_path();
    FILE *f = fopen(sock_path, "w");
    REQUIRE(f);
    fclose(f);
    CHECK_STATUS(cuipc_producer_create(&cfg, &second), CUIPC_ERR_INVALID_ARG);
    CHECK(lstat(sock_path, &st) == 0 && S_ISREG(st.st_mode)); /* not ours to remove */
    unlink(sock_path);
}

/* Messages of more chunks than the sender's lists hold without allocating (16). */
#define MANY 40

static void many_bytes(int i, uint8_t *out, size_t n) {
    memset(out, (uint8_t)(i * 13 + 1), n);
}

static cuipc_value *many_tensors(uint8_t bufs[MANY][MANY * 24]) {
    cuipc_value *list = cuipc_value_list();
    REQUIRE(list);
    for (int i = 0; i < MANY; i++) {
        size_t n = (size_t)(i + 1) * 24;
        many_bytes(i, bufs[i], n);
        cuipc_tensor t;
        REQUIRE(cuipc_tensor_init(&t, bufs[i], CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1,
                                  (const int64_t[]){(int64_t)n}) == CUIPC_OK);
        REQUIRE(cuipc_list_append(list, cuipc_value_tensor(&t, CUIPC_OWNER_NONE)) == CUIPC_OK);
    }
    return list;
}

/* Receives one message of MANY tensors, checks every one, then waits for the close. */
static int many_main(void *arg) {
    (void)arg;
    cuipc_consumer *c = NULL;
    cuipc_message *m = NULL;
    int rc = attach_and_receive(&c, &m);
    if (rc)
        return rc;
    cuipc_value *v = NULL;
    if (cuipc_message_unwrap(m, NULL, &v) != CUIPC_OK)
        return 12;
    int bad = cuipc_value_len(v) != MANY;
    uint8_t want[MANY * 24];
    for (int i = 0; !bad && i < MANY; i++) {
        const cuipc_tensor *t = cuipc_value_as_tensor(cuipc_list_get(v, (size_t)i));
        size_t n = (size_t)(i + 1) * 24;
        many_bytes(i, want, n);
        bad = !t || cuipc_tensor_span_bytes(t) != n || memcmp(t->data, want, n) != 0;
    }
    cuipc_value_free(v);
    cuipc_message_free(m);
    cuipc_message *end = NULL;
    cuipc_status s = cuipc_consumer_recv(c, 10 * SEC, &end);
    cuipc_message_free(end);
    cuipc_consumer_detach(c);
    return bad ? 13 : s == CUIPC_ERR_CLOSED ? 0 : 14;
}

/* A wrap of many chunks given back whole (cancel, and a wrap that fails at its last tensor),
 * and a send of many chunks: every tensor arrives, every chunk is recycled. */
static void test_many_chunks(void) {
    make_sock_path();
    pid_t pid = cuipc_test_fork(many_main, NULL);
    cuipc_producer *p = start_producer(1, 256 << 10, CUIPC_FULL_FAIL);
    static uint8_t bufs[MANY][MANY * 24];
    cuipc_value *tree = many_tensors(bufs);
    cuipc_value *w = NULL;
    CHECK_OK(cuipc_producer_wrap(p, tree, NULL, &w));
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    CHECK(st.host_pool.in_flight == MANY);
    CHECK_OK(cuipc_producer_cancel_wrapped(p, w));
    cuipc_value_free(w);
    cuipc_producer_stats_get(p, &st);
    CHECK(st.host_pool.in_flight == 0 && st.host_pool.cancelled == MANY);

    /* One more tensor, in the pool but in no buffer held: the 40 before it are given back. */
    void *freed = NULL;
    REQUIRE(cuipc_producer_buffer_alloc(p, CUIPC_MEMORY_HOST, 64, 0, &freed) == CUIPC_OK);
    REQUIRE(cuipc_producer_buffer_free(p, freed) == CUIPC_OK);
    cuipc_tensor stale;
    REQUIRE(cuipc_tensor_init(&stale, freed, CUIPC_DEVICE_HOST, CUIPC_DTYPE_U8, 1,
                              (const int64_t[]){64}) == CUIPC_OK);
    CHECK_OK(cuipc_list_append(tree, cuipc_value_tensor(&stale, CUIPC_OWNER_NONE)));
    CHECK_STATUS(cuipc_producer_wrap(p, tree, NULL, &w), CUIPC_ERR_STALE);
    CHECK(w == NULL && strstr(cuipc_last_error(), "sent or freed already") != NULL);
    cuipc_producer_stats_get(p, &st);
    CHECK(st.host_pool.in_flight == 0 && st.host_pool.cancelled == 2 * MANY + 1);
    cuipc_value_free(tree);

    tree = many_tensors(bufs);
    CHECK_OK(cuipc_producer_send(p, tree, NULL, SEC));
    cuipc_value_free(tree);
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(pid, 20000) == 0);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_stats_get(p, &st);
    CHECK(st.messages_sent == 1 && st.host_pool.recycled == MANY && st.host_pool.in_flight == 0);
    cuipc_producer_destroy(p);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    test_bad_config();
    test_socket_path_in_use();
    test_pool_cancel_after_a_release();
    test_null_arguments();
    /* First: its producer runs in a child, which must not inherit CUDA state from this process
     * (on a GPU host the producers below initialise CUDA here to pin their host pools). */
    test_producer_killed();
    test_broadcast_and_recycle();
    test_buffers();
    test_pool_full_fail();
    test_consumer_killed();
    test_kept_message_skips_a_newcomer();
    test_kept_message_of_departed_consumers_is_stale();
    test_sending_a_released_message_again_is_stale();
    test_sending_a_message_twice_is_refused();
    test_a_tree_being_sent_is_not_given_back();
    test_forged_proxies();
    test_threads_share_a_consumer();
    test_interrupt_stops_receivers();
    test_interrupt_while_messages_flow();
    test_close_does_not_wait_for_a_blocked_send();
    test_consumer_attached_after_close_hears_closed();
    test_accept_timeout_names_consumers_that_came_and_left();
    test_close_stops_a_wait_for_pool_room();
    test_many_chunks();
    test_send_is_all_or_nothing();
    test_send_goes_to_the_consumer_that_replaced_its_own();
    test_ring_timeout_is_the_rings_alone();
    test_wait_in_slices();
    test_own_buffer_does_not_make_a_wait();
    return cuipc_test_finish("test_transport");
}
