/* Ring: one-way throughput and round-trip latency between this process and a peer process
 * fork()ed at start-up (before anything touches CUDA, whose context does not survive fork).
 * The peer serves requests on one ring and answers on another:
 *   'S' sink (consume), 'F' flush (answer one byte: everything sent before was consumed),
 *   'E' echo (send the message back). Closing the request ring ends it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_families.h"
#include "error_internal.h"
#include "gbench_shim.h"
#include "ring.h"
#include "shm.h"

#define RING_BYTES (1u << 20)
#define WAIT_NS (5ll * 1000000000ll) /* bounded: a stuck peer fails the benchmark, never hangs */
#define BATCH 128                    /* one-way messages per iteration, then one flush */

static cuipc_ring *g_request, *g_reply;
static pid_t g_peer = -1, g_parent = -1;

static bool parent_alive(void *ctx) {
    return getppid() == g_parent;
}

static bool peer_alive(void *ctx) {
    return g_peer > 0 && waitpid(g_peer, NULL, WNOHANG) == 0;
}

static void peer_main(void) {
    /* Die with the benchmark process even if it is killed. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    cuipc_ring *in = NULL, *out = NULL;
    if (cuipc_ring_attach(dup(cuipc_ring_fd(g_request)), &in) != CUIPC_OK ||
        cuipc_ring_attach(dup(cuipc_ring_fd(g_reply)), &out) != CUIPC_OK)
        _exit(1);
    cuipc_ring_set_peer_check(in, parent_alive, NULL);
    cuipc_ring_set_peer_check(out, parent_alive, NULL);
    for (;;) {
        void *msg = NULL;
        size_t len = 0;
        cuipc_status s = cuipc_ring_recv(in, &msg, &len, -1);
        if (s == CUIPC_ERR_CLOSED)
            _exit(0);
        if (s != CUIPC_OK)
            _exit(1);
        char op = ((const char *)msg)[0];
        if (op == 'E')
            s = cuipc_ring_send(out, msg, len, WAIT_NS);
        else if (op == 'F')
            s = cuipc_ring_send(out, "F", 1, WAIT_NS);
        free(msg);
        if (s != CUIPC_OK)
            _exit(1);
    }
}

cuipc_status cuipc_bench_ring_peer_start(void) {
    cuipc_status s = cuipc_ring_create(RING_BYTES, &g_request);
    if (s == CUIPC_OK)
        s = cuipc_ring_create(RING_BYTES, &g_reply);
    if (s != CUIPC_OK)
        return s;
    g_parent = getpid();
    fflush(NULL); /* buffered output must not be written twice */
    g_peer = fork();
    if (g_peer < 0)
        return CUIPC_FAIL_ERRNO("fork of the ring peer process");
    if (g_peer == 0)
        peer_main();
    cuipc_ring_set_peer_check(g_request, peer_alive, NULL);
    cuipc_ring_set_peer_check(g_reply, peer_alive, NULL);
    return CUIPC_OK;
}

void cuipc_bench_ring_peer_stop(void) {
    if (g_peer > 0) {
        cuipc_ring_close(g_request);
        cuipc_bench_reap_peer(g_peer); /* it exits once it sees the close */
        g_peer = -1;
    }
    cuipc_ring_destroy(g_request);
    cuipc_ring_destroy(g_reply);
    g_request = g_reply = NULL;
}

static bool peer_ready(cuipc_bench_state *s) {
    if (g_peer > 0 && peer_alive(NULL))
        return true;
    cuipc_bench_skip_with_error(s, "ring peer process is not running");
    return false;
}

/* Wait for the peer's one-byte flush answer. */
static cuipc_status recv_reply(size_t expect_len) {
    void *msg = NULL;
    size_t len = 0;
    cuipc_status s = cuipc_ring_recv(g_reply, &msg, &len, WAIT_NS);
    free(msg);
    if (s == CUIPC_OK && len != expect_len)
        return CUIPC_ERR_CORRUPT;
    return s;
}

/* A request of size bytes whose first byte tells the peer what to do ('S' sink, 'E' echo);
 * NULL (the run skipped with the reason) when the peer is gone or memory is short. */
static char *request(cuipc_bench_state *s, size_t size, char kind) {
    if (!peer_ready(s))
        return NULL;
    char *msg = calloc(1, size);
    if (!msg) {
        cuipc_bench_skip_with_error(s, "out of memory");
        return NULL;
    }
    msg[0] = kind;
    return msg;
}

static void bench_oneway(cuipc_bench_state *s, void *ctx) {
    size_t size = (size_t)cuipc_bench_range(s, 0);
    char *msg = request(s, size, 'S');
    if (!msg)
        return;
    cuipc_status st = CUIPC_OK;
    while (st == CUIPC_OK && cuipc_bench_keep_running(s)) {
        for (int i = 0; st == CUIPC_OK && i < BATCH; i++)
            st = cuipc_ring_send(g_request, msg, size, WAIT_NS);
        /* The batch counts only once the peer has consumed all of it. */
        if (st == CUIPC_OK)
            st = cuipc_ring_send(g_request, "F", 1, WAIT_NS);
        if (st == CUIPC_OK)
            st = recv_reply(1);
    }
    free(msg);
    if (st != CUIPC_OK) {
        cuipc_bench_skip_with_error(s, cuipc_last_error());
        return;
    }
    int64_t msgs = cuipc_bench_iterations_done(s) * BATCH;
    cuipc_bench_set_items_processed(s, msgs);
    cuipc_bench_set_bytes_processed(s, msgs * (int64_t)size);
}

static void bench_roundtrip(cuipc_bench_state *s, void *ctx) {
    size_t size = (size_t)cuipc_bench_range(s, 0);
    char *msg = request(s, size, 'E');
    if (!msg)
        return;
    cuipc_status st = CUIPC_OK;
    double total_ns = 0;
    while (st == CUIPC_OK && cuipc_bench_keep_running(s)) {
        uint64_t t0 = cuipc_now_ns();
        st = cuipc_ring_send(g_request, msg, size, WAIT_NS);
        if (st == CUIPC_OK)
            st = recv_reply(size);
        uint64_t rtt = cuipc_now_ns() - t0;
        total_ns += (double)rtt;
        cuipc_bench_set_iteration_time(s, (double)rtt * 1e-9);
    }
    free(msg);
    if (st != CUIPC_OK) {
        cuipc_bench_skip_with_error(s, cuipc_last_error());
        return;
    }
    cuipc_bench_counter(s, "rtt_ns", total_ns, CUIPC_COUNTER_PER_ITERATION);
    cuipc_bench_set_items_processed(s, cuipc_bench_iterations_done(s));
    cuipc_bench_set_bytes_processed(s, 2 * cuipc_bench_iterations_done(s) * (int64_t)size);
}

void cuipc_bench_register_ring(void) {
    static const int64_t sizes[] = {64, 4096};
    cuipc_bench *b = cuipc_bench_register("ring/oneway", bench_oneway, NULL);
    cuipc_bench_arg_name(b, "bytes");
    cuipc_bench_arg_list(b, sizes, 2);
    cuipc_bench_use_real_time(b);
    b = cuipc_bench_register("ring/roundtrip", bench_roundtrip, NULL);
    cuipc_bench_arg_name(b, "bytes");
    cuipc_bench_arg_list(b, sizes, 2);
    cuipc_bench_use_manual_time(b);
}
