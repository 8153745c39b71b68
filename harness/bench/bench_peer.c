/* The peer-to-peer copy limit between GPU 0 and GPU 1: one 64 MiB cudaMemcpyPeerAsync with peer
 * access enabled both ways, timed with CUDA events on the destination GPU (where a consumer's
 * copy-out runs), in each direction. A copy-out from the producer's pool to a consumer on
 * another GPU is judged against it. Skipped, saying why, on a host with one GPU. */
#include <stdio.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "bench_families.h"
#include "cuda_api.h"
#include "cuipc/gpu.h"
#include "cuipc/pattern.h"
#include "gbench_shim.h"

#define PEER_BYTES (64ll << 20)

typedef struct peer_copy {
    int src, dst;
    void *d_src, *d_dst;
    void *stream; /* on dst */
    cudaEvent_t start, stop;
} peer_copy;

static bool peer_ok(cudaError_t e, const char *call, char *why, size_t cap) {
    if (e != cudaSuccess)
        snprintf(why, cap, "%s: %s", call, cudaGetErrorString(e));
    return e == cudaSuccess;
}

static bool cuipc_ok(cuipc_status st, char *why, size_t cap) {
    if (st != CUIPC_OK)
        snprintf(why, cap, "%s", cuipc_last_error());
    return st == CUIPC_OK;
}

static bool peer_setup(peer_copy *p, size_t n, char *why, size_t cap) {
    return cuipc_ok(cuipc_cuda_enable_peer(p->src, p->dst), why, cap) &&
           cuipc_ok(cuipc_cuda_enable_peer(p->dst, p->src), why, cap) &&
           cuipc_ok(cuipc_gpu_malloc(p->src, n, &p->d_src), why, cap) &&
           cuipc_ok(cuipc_gpu_malloc(p->dst, n, &p->d_dst), why, cap) &&
           cuipc_ok(cuipc_cuda_set_device(p->src), why, cap) && /* the fill runs on src */
           cuipc_ok(cuipc_gpu_fill_pattern(p->d_src, n, 3, NULL), why, cap) &&
           peer_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize", why, cap) &&
           /* the stream and its events on dst: events are recorded on their own device */
           cuipc_ok(cuipc_gpu_stream_create(p->dst, &p->stream), why, cap) &&
           peer_ok(cudaEventCreate(&p->start), "cudaEventCreate", why, cap) &&
           peer_ok(cudaEventCreate(&p->stop), "cudaEventCreate", why, cap);
}

static void peer_teardown(peer_copy *p) {
    if (p->start)
        cudaEventDestroy(p->start);
    if (p->stop)
        cudaEventDestroy(p->stop);
    /* Tear-down after the run: nothing left to report to. */
    if (p->stream)
        cuipc_status_ignore(cuipc_gpu_stream_destroy(p->stream));
    cuipc_status_ignore(cuipc_gpu_free(p->d_src));
    cuipc_status_ignore(cuipc_gpu_free(p->d_dst));
}

/* Seconds of one peer copy between events on the destination's stream. */
static bool time_peer(peer_copy *p, size_t n, double *seconds, char *why, size_t cap) {
    cudaStream_t st = (cudaStream_t)p->stream;
    float ms = 0;
    bool ok =
        peer_ok(cudaEventRecord(p->start, st), "cudaEventRecord", why, cap) &&
        peer_ok(cudaMemcpyPeerAsync(p->d_dst, p->dst, p->d_src, p->src, n, st),
                "cudaMemcpyPeerAsync", why, cap) &&
        peer_ok(cudaEventRecord(p->stop, st), "cudaEventRecord", why, cap) &&
        peer_ok(cudaEventSynchronize(p->stop), "cudaEventSynchronize", why, cap) &&
        peer_ok(cudaEventElapsedTime(&ms, p->start, p->stop), "cudaEventElapsedTime", why, cap);
    *seconds = ms * 1e-3;
    return ok;
}

static void bench_peer_copy(cuipc_bench_state *s, void *ctx) {
    (void)ctx;
    peer_copy p = {.src = (int)cuipc_bench_range(s, 0), .dst = (int)cuipc_bench_range(s, 1)};
    int gpus = cuipc_gpu_count();
    char why[256] = "";
    if (gpus < 2) {
        snprintf(why, sizeof why, "needs GPUs %d and %d, this host has %d", p.src, p.dst, gpus);
        cuipc_bench_skip_with_error(s, why);
        return;
    }
    size_t n = (size_t)PEER_BYTES;
    double t = 0;
    bool ok = peer_setup(&p, n, why, sizeof why) && time_peer(&p, n, &t, why, sizeof why);
    while (ok && cuipc_bench_keep_running(s)) {
        ok = time_peer(&p, n, &t, why, sizeof why);
        cuipc_bench_set_iteration_time(s, t);
    }
    peer_teardown(&p);
    if (!ok) {
        cuipc_bench_skip_with_error(s, why);
        return;
    }
    cuipc_bench_set_bytes_processed(s, cuipc_bench_iterations_done(s) * PEER_BYTES);
}

void cuipc_bench_register_peer(void) {
    cuipc_bench *b = cuipc_bench_register("gpu/limit_p2p_memcpy_64mib", bench_peer_copy, NULL);
    cuipc_bench_args2(b, 0, 1);
    cuipc_bench_args2(b, 1, 0);
    cuipc_bench_arg_names2(b, "src", "dst");
    cuipc_bench_use_manual_time(b);
    cuipc_bench_time_unit(b, CUIPC_BENCH_US);
}
