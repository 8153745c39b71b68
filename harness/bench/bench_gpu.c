/* GPU copies, timed with CUDA events, at 4 KiB .. 256 MiB. First the limits (plain
 * device-to-device, pinned host->device and device->host), then the cuipc paths measured
 * against them: the pool copy-in (pool alloc + copy into the chunk + stream write of the ready
 * word, as wrap.c to_gpu_pool does) and the host-pool staging copy (D2H into a registered host
 * pool chunk). The limits are measured once per size at start-up and kept in a table so each
 * cuipc path reports its share of the limit measured in the same run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "bench_families.h"
#include "cuda_api.h"
#include "error_internal.h"
#include "cuipc/gpu.h"
#include "cuipc/pattern.h"
#include "cuipc/pool.h"
#include "gbench_shim.h"
#include "pool_internal.h"

#define N_SIZES 6
#define LIMIT_REPS 9
static const int64_t g_sizes[N_SIZES] = {4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20, 256 << 20};

typedef enum copy_kind { COPY_D2D, COPY_H2D, COPY_D2H, COPY_POOL_IN, COPY_HOST_STAGING } copy_kind;

static struct gpu_bench {
    bool ok;
    char error[256];
    cudaStream_t stream;
    cudaEvent_t start, stop;
    void *d_src, *d_dst, *h_pinned;
    double limit_bps[3][N_SIZES]; /* COPY_D2D, COPY_H2D, COPY_D2H */
    cuipc_pool *gpu_pool[N_SIZES], *host_pool[N_SIZES];
} g;

static int size_index(int64_t n) {
    for (int i = 0; i < N_SIZES; i++)
        if (g_sizes[i] == n)
            return i;
    return -1;
}

static bool fail(const char *what, cudaError_t err) {
    snprintf(g.error, sizeof g.error, "%s: %s", what,
             err != cudaSuccess ? cudaGetErrorString(err) : cuipc_last_error());
    return false;
}

static void copy_endpoints(copy_kind k, void **dst, const void **src) {
    *dst = k == COPY_H2D ? g.d_dst : k == COPY_D2H ? g.h_pinned : g.d_dst;
    *src = k == COPY_H2D ? g.h_pinned : g.d_src;
}

/* Seconds of one copy between events (the copy is the only work on the stream). */
static cudaError_t time_copy(void *dst, const void *src, size_t n, double *seconds) {
    float ms = 0;
    cudaError_t e = cudaEventRecord(g.start, g.stream);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, g.stream);
    if (e == cudaSuccess)
        e = cudaEventRecord(g.stop, g.stream);
    if (e == cudaSuccess)
        e = cudaEventSynchronize(g.stop);
    if (e == cudaSuccess)
        e = cudaEventElapsedTime(&ms, g.start, g.stop);
    *seconds = ms * 1e-3;
    return e;
}

static cuipc_status cuda_failed(cudaError_t e, const char *call) {
    return CUIPC_FAIL(CUIPC_ERR_CUDA, "%s failed: %s", call, cudaGetErrorString(e));
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of LIMIT_REPS timed copies after one warm-up: the limit for this kind and size. */
static bool measure_limit(copy_kind k, int i) {
    void *dst;
    const void *src;
    copy_endpoints(k, &dst, &src);
    double t[LIMIT_REPS], warm;
    cudaError_t e = time_copy(dst, src, (size_t)g_sizes[i], &warm);
    for (int r = 0; e == cudaSuccess && r < LIMIT_REPS; r++)
        e = time_copy(dst, src, (size_t)g_sizes[i], &t[r]);
    if (e != cudaSuccess)
        return fail("limit copy", e);
    qsort(t, LIMIT_REPS, sizeof t[0], compare_double);
    g.limit_bps[k][i] = (double)g_sizes[i] / t[LIMIT_REPS / 2];
    return true;
}

static bool setup(void) {
    if (cuipc_gpu_count() == 0) {
        snprintf(g.error, sizeof g.error, "no GPU");
        return false;
    }
    size_t max = (size_t)g_sizes[N_SIZES - 1];
    void *dev_alias = NULL;
    void *stream = NULL;
    if (cuipc_gpu_stream_create(0, &stream) != CUIPC_OK)
        return fail("stream", cudaSuccess);
    g.stream = stream;
    cudaError_t e = cudaEventCreate(&g.start);
    if (e == cudaSuccess)
        e = cudaEventCreate(&g.stop);
    if (e != cudaSuccess)
        return fail("cudaEventCreate", e);
    if (cuipc_gpu_malloc(0, max, &g.d_src) != CUIPC_OK ||
        cuipc_gpu_malloc(0, max, &g.d_dst) != CUIPC_OK)
        return fail("device buffers", cudaSuccess);
    g.h_pinned = aligned_alloc(4096, max);
    if (!g.h_pinned) {
        snprintf(g.error, sizeof g.error, "out of host memory for %zu pinned bytes", max);
        return false;
    }
    memset(g.h_pinned, 1, max);
    if (cuipc_cuda_host_register(g.h_pinned, max, &dev_alias) != CUIPC_OK) {
        free(g.h_pinned);
        g.h_pinned = NULL;
        return fail("pinned host buffer", cudaSuccess);
    }
    if (cuipc_gpu_fill_pattern(g.d_src, max, 1, g.stream) != CUIPC_OK ||
        cuipc_gpu_stream_sync(g.stream) != CUIPC_OK)
        return fail("fill source", cudaSuccess);
    for (int i = 0; i < N_SIZES; i++)
        for (int k = COPY_D2D; k <= COPY_D2H; k++)
            if (!measure_limit((copy_kind)k, i))
                return false;
    return true;
}

bool cuipc_bench_gpu_setup(void) {
    g.ok = setup();
    if (!g.ok && strcmp(g.error, "no GPU") != 0)
        fprintf(stderr, "cuipc-bench: GPU set-up failed: %s\n", g.error);
    for (int i = 0; g.ok && i < N_SIZES; i++) {
        char key[64], val[128];
        snprintf(key, sizeof key, "limit_GBps/%lld", (long long)g_sizes[i]);
        snprintf(val, sizeof val, "d2d=%.2f h2d=%.2f d2h=%.2f", g.limit_bps[COPY_D2D][i] * 1e-9,
                 g.limit_bps[COPY_H2D][i] * 1e-9, g.limit_bps[COPY_D2H][i] * 1e-9);
        cuipc_bench_add_context(key, val);
    }
    return g.ok;
}

void cuipc_bench_gpu_teardown(void) {
    for (int i = 0; i < N_SIZES; i++) {
        cuipc_pool_destroy(g.gpu_pool[i]);
        cuipc_pool_destroy(g.host_pool[i]);
        g.gpu_pool[i] = g.host_pool[i] = NULL;
    }
    if (g.h_pinned) { /* tear-down: the memory is freed whether the unregister works or not */
        cuipc_status_ignore(cuipc_cuda_host_unregister(g.h_pinned));
        free(g.h_pinned);
    }
    /* Tear-down after the run: nothing left to report to. */
    cuipc_status_ignore(cuipc_gpu_free(g.d_src));
    cuipc_status_ignore(cuipc_gpu_free(g.d_dst));
    if (g.start)
        cudaEventDestroy(g.start);
    if (g.stop)
        cudaEventDestroy(g.stop);
    if (g.stream)
        cuipc_status_ignore(cuipc_gpu_stream_destroy(g.stream));
    memset(&g, 0, sizeof g);
}

/* One pool per size and memory kind, made on first use and kept for the run (creating a
 * 256 MiB pool per benchmark repetition would dominate start-up). */
static cuipc_pool *pool_for(int memory, int i) {
    cuipc_pool **slot = memory == CUIPC_MEMORY_CUDA ? &g.gpu_pool[i] : &g.host_pool[i];
    if (*slot)
        return *slot;
    cuipc_pool_config cfg;
    cuipc_pool_config_init(&cfg);
    cfg.memory = memory;
    cfg.size = (uint64_t)g_sizes[i] + (1u << 20);
    cfg.device = 0;
    cfg.max_consumers = 1;
    cfg.recycler_thread = false; /* the benchmark releases and reclaims each chunk itself */
    if (cuipc_pool_create(&cfg, slot) != CUIPC_OK)
        *slot = NULL;
    return *slot;
}

/* One pass of a cuipc path between events; the chunk is released and reclaimed afterwards,
 * outside the timed region, as a consumer and the recycler would. */
static cuipc_status time_pool_copy(copy_kind k, cuipc_pool *pool, size_t n, double *seconds) {
    cuipc_chunk c;
    float ms = 0;
    cudaError_t e = cudaEventRecord(g.start, g.stream);
    if (e != cudaSuccess)
        return cuda_failed(e, "cudaEventRecord(start)");
    cuipc_status s = cuipc_pool_alloc(pool, n, 1, 0, &c);
    if (s != CUIPC_OK)
        return s;
    if (k == COPY_POOL_IN)
        s = cuipc_pool_copy_in(pool, g.stream, &c, g.d_src, n);
    else
        s = cuipc_cuda_memcpy_async(c.ptr, g.d_src, n, g.stream);
    if (s == CUIPC_OK && (e = cudaEventRecord(g.stop, g.stream)) != cudaSuccess)
        s = cuda_failed(e, "cudaEventRecord(stop)");
    if (s == CUIPC_OK && (e = cudaEventSynchronize(g.stop)) != cudaSuccess)
        s = cuda_failed(e, "cudaEventSynchronize");
    if (s == CUIPC_OK && (e = cudaEventElapsedTime(&ms, g.start, g.stop)) != cudaSuccess)
        s = cuda_failed(e, "cudaEventElapsedTime");
    if (s != CUIPC_OK) {
        /* Undo: the failure above is reported (and a stream that fails this too runs nothing). */
        cuipc_status_ignore(cuipc_cuda_stream_sync(g.stream));
        cuipc_status_ignore(cuipc_pool_cancel(pool, &c));
        return s;
    }
    if (k == COPY_HOST_STAGING)
        cuipc_pool_mark_ready(pool, &c);
    *seconds = ms * 1e-3;
    s = cuipc_pool_release(pool, c.slot, c.generation, 0);
    if (s == CUIPC_OK && cuipc_pool_reclaim(pool) != 1)
        s = CUIPC_FAIL(CUIPC_ERR_CORRUPT, "released chunk (slot %u) was not reclaimed", c.slot);
    return s;
}

static void bench_copy(cuipc_bench_state *s, void *ctx) {
    copy_kind k = *(const copy_kind *)ctx;
    int64_t n = cuipc_bench_range(s, 0);
    int i = size_index(n);
    if (!g.ok || i < 0) {
        cuipc_bench_skip_with_error(s, g.ok ? "size not in the limit table" : g.error);
        return;
    }
    cuipc_pool *pool = NULL;
    if (k == COPY_POOL_IN || k == COPY_HOST_STAGING) {
        pool = pool_for(k == COPY_POOL_IN ? CUIPC_MEMORY_CUDA : CUIPC_MEMORY_HOST, i);
        if (!pool) {
            cuipc_bench_skip_with_error(s, cuipc_last_error());
            return;
        }
    }
    void *dst;
    const void *src;
    copy_endpoints(k, &dst, &src);
    double total = 0, t = 0;
    bool ok = true;
    while (ok && cuipc_bench_keep_running(s)) {
        if (pool) {
            ok = time_pool_copy(k, pool, (size_t)n, &t) == CUIPC_OK;
        } else {
            cudaError_t e = time_copy(dst, src, (size_t)n, &t);
            ok = e == cudaSuccess || cuda_failed(e, "timed cudaMemcpyAsync") == CUIPC_OK;
        }
        total += t;
        cuipc_bench_set_iteration_time(s, t);
    }
    if (!ok) {
        cuipc_bench_skip_with_error(s, cuipc_last_error());
        return;
    }
    int64_t iters = cuipc_bench_iterations_done(s);
    cuipc_bench_set_bytes_processed(s, iters * n);
    if (pool && total > 0) {
        double bps = (double)iters * (double)n / total;
        bool host = k == COPY_HOST_STAGING;
        cuipc_bench_counter(s, host ? "pct_of_pinned_d2h" : "pct_of_d2d",
                            100.0 * bps / g.limit_bps[host ? COPY_D2H : COPY_D2D][i],
                            CUIPC_COUNTER_PLAIN);
    }
}

void cuipc_bench_register_gpu(void) {
    static const copy_kind kinds[] = {COPY_D2D, COPY_H2D, COPY_D2H, COPY_POOL_IN,
                                      COPY_HOST_STAGING};
    static const char *names[] = {"gpu/limit_d2d_memcpy", "gpu/limit_h2d_pinned",
                                  "gpu/limit_d2h_pinned", "gpu/pool_copy_in",
                                  "gpu/host_pool_staging"};
    for (int k = 0; k < 5; k++) {
        cuipc_bench *b = cuipc_bench_register(names[k], bench_copy, (void *)&kinds[k]);
        cuipc_bench_arg_name(b, "bytes");
        cuipc_bench_arg_list(b, g_sizes, N_SIZES);
        cuipc_bench_use_manual_time(b);
        cuipc_bench_time_unit(b, CUIPC_BENCH_US);
    }
}
