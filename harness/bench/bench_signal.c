/* The floor under a small message's end-to-end latency on this machine, measured with no
 * transport at all:
 *   gpu_signal/wait_word:<where>/idle_us  a stream waits (cuStreamWaitValue32) on a word that
 *       another stream then writes; time from the host enqueueing the write to the host seeing
 *       the waiting stream's completion flag. <where> is the word's memory: device memory or
 *       mapped host memory (where a GPU re-polls slowly once a wait has started).
 *   gpu_signal/copy_4k_after_idle/idle_us  a 4 KiB device copy and a stream sync, after the GPU
 *       had nothing to do for idle_us: what any GPU work costs at a low message rate.
 *   gpu_signal/copy_4k_after_peer_context  the same copy right after another process ran GPU
 *       work (a 4-byte memset) in its own context: the GPU switches contexts between processes
 *       (no MPS), which a producer and a consumer sharing one GPU pay at every hand-off.
 *   gpu_signal/publish:<api>/bytes/idle_us  a producer's copy into a pool slice and its ready
 *       word (a copy, cuStreamWriteValue32), after idle_us without GPU work, from the host
 *       starting the enqueue to the host seeing the word. <api> is the copy's call:
 *       default (cudaMemcpyAsync, kind inferred from the pointers), d2d (cudaMemcpyAsync,
 *       cudaMemcpyDeviceToDevice), or write_only (no copy: the word alone, the floor under the
 *       other two). Counter enqueue_us is the host time of the enqueue calls alone, which a
 *       message's latency pays in full.
 * Times are wall clock from the host (manual time), one sample per iteration. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "bench_families.h"
#include "cuda_api.h"
#include "cuipc/gpu.h"
#include "error_internal.h"
#include "gbench_shim.h"

#define SPIN_LIMIT_NS 1000000000ull /* a flag not seen within 1 s is an error, not a hang */

typedef enum word_memory { WORD_DEVICE = 0, WORD_HOST = 1 } word_memory;

static struct signal_bench {
    bool tried, ok;
    bool stuck; /* a wait never released: its stream cannot be synchronised or destroyed */
    char error[256];
    cudaStream_t writer, waiter;
    uint32_t *device_word;
    uint32_t *host_words; /* [0] the host-memory word, [1] the completion flag */
    void *host_words_dev;
    void *copy_src, *copy_dst;
    void *pub_src, *pub_dst; /* PUBLISH_MAX_BYTES each */
} g;

#define PUBLISH_MAX_BYTES (1 << 20)

/* The peer process: forked before this process touches CUDA, it makes its own context on its
 * first command and runs one tiny GPU operation per command. */
typedef struct peer_shared {
    _Atomic uint32_t cmd, done, stop;
    _Atomic int32_t error; /* cudaError_t of the peer's last operation */
} peer_shared;

static peer_shared *g_peer_shm;
static pid_t g_peer_pid = -1;

static void peer_main(pid_t parent) {
    peer_shared *sh = g_peer_shm;
    void *buf = NULL;
    cudaStream_t stream = NULL;
    uint32_t seen = 0;
    while (!atomic_load(&sh->stop) && getppid() == parent) {
        uint32_t cmd = atomic_load(&sh->cmd);
        if (cmd == seen) {
            struct timespec ts = {0, 2000};
            nanosleep(&ts, NULL);
            continue;
        }
        cudaError_t e = cudaSuccess;
        if (buf == NULL && (e = cudaSetDevice(0)) == cudaSuccess &&
            (e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) == cudaSuccess)
            e = cudaMalloc(&buf, 256);
        if (e == cudaSuccess &&
            (e = cudaMemsetAsync(buf, (int)(cmd & 0xff), 4, stream)) == cudaSuccess)
            e = cudaStreamSynchronize(stream);
        atomic_store(&sh->error, (int32_t)e);
        seen = cmd;
        atomic_store(&sh->done, cmd);
    }
    _exit(0);
}

void cuipc_bench_gpu_peer_start(void) {
    g_peer_shm =
        mmap(NULL, sizeof *g_peer_shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_peer_shm == MAP_FAILED) {
        g_peer_shm = NULL;
        return;
    }
    memset(g_peer_shm, 0, sizeof *g_peer_shm);
    pid_t parent = getpid();
    fflush(NULL);
    g_peer_pid = fork();
    if (g_peer_pid == 0)
        peer_main(parent);
}

void cuipc_bench_gpu_peer_stop(void) {
    if (g_peer_pid > 0) {
        atomic_store(&g_peer_shm->stop, 1);
        cuipc_bench_reap_peer(g_peer_pid);
        g_peer_pid = -1;
    }
    if (g_peer_shm != NULL)
        munmap(g_peer_shm, sizeof *g_peer_shm);
    g_peer_shm = NULL;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The GPU idles for `us`; the calling thread sleeps through it (its core may enter a deep
 * C-state) unless it spins, as a latency-bound producer that polls for work does. */
static void idle_for_us_spinning(int64_t us, bool spin) {
    if (us <= 0)
        return;
    if (spin) {
        uint64_t end = now_ns() + (uint64_t)us * 1000u;
        while (now_ns() < end) {
        }
        return;
    }
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void idle_for_us(int64_t us) {
    idle_for_us_spinning(us, false);
}

static bool failed(const char *what, cudaError_t e) {
    snprintf(g.error, sizeof g.error, "%s: %s", what, cudaGetErrorString(e));
    return false;
}

static bool setup(void) {
    if (g.tried)
        return g.ok;
    g.tried = true;
    if (cuipc_gpu_count() == 0) {
        snprintf(g.error, sizeof g.error, "no GPU");
        return false;
    }
    cudaError_t e;
    if ((e = cudaSetDevice(0)) != cudaSuccess)
        return failed("cudaSetDevice(0)", e);
    if ((e = cudaStreamCreateWithFlags(&g.writer, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&g.waiter, cudaStreamNonBlocking)) != cudaSuccess)
        return failed("cudaStreamCreateWithFlags", e);
    if ((e = cudaMalloc((void **)&g.device_word, 256)) != cudaSuccess ||
        (e = cudaMemset(g.device_word, 0, 256)) != cudaSuccess)
        return failed("cudaMalloc/cudaMemset(device word)", e);
    if ((e = cudaMalloc(&g.copy_src, 4096)) != cudaSuccess ||
        (e = cudaMalloc(&g.copy_dst, 4096)) != cudaSuccess)
        return failed("cudaMalloc(copy buffers)", e);
    if ((e = cudaMalloc(&g.pub_src, PUBLISH_MAX_BYTES)) != cudaSuccess ||
        (e = cudaMalloc(&g.pub_dst, PUBLISH_MAX_BYTES)) != cudaSuccess ||
        (e = cudaMemset(g.pub_src, 0x5a, PUBLISH_MAX_BYTES)) != cudaSuccess)
        return failed("cudaMalloc/cudaMemset(publish buffers)", e);
    if ((e = cudaHostAlloc((void **)&g.host_words, 4096,
                           cudaHostAllocMapped | cudaHostAllocPortable)) != cudaSuccess)
        return failed("cudaHostAlloc(mapped words)", e);
    memset(g.host_words, 0, 4096);
    if ((e = cudaHostGetDevicePointer(&g.host_words_dev, g.host_words, 0)) != cudaSuccess)
        return failed("cudaHostGetDevicePointer", e);
    if ((e = cudaDeviceSynchronize()) != cudaSuccess)
        return failed("cudaDeviceSynchronize", e);
    g.ok = true;
    return true;
}

/* Spin until the host-visible word reads `value`; false after SPIN_LIMIT_NS from `start`. */
static bool wait_host_word(volatile uint32_t *word, uint32_t value, uint64_t start,
                           const char *what) {
    while (*word != value)
        if (now_ns() - start > SPIN_LIMIT_NS) {
            snprintf(g.error, sizeof g.error, "%s not seen within 1 s", what);
            return false;
        }
    return true;
}

static void bench_wait_word(cuipc_bench_state *s, void *ctx) {
    word_memory where = *(const word_memory *)ctx;
    int64_t idle_us = cuipc_bench_range(s, 0);
    if (!setup()) {
        cuipc_bench_skip_with_error(s, g.error);
        return;
    }
    void *word = where == WORD_DEVICE ? (void *)g.device_word : g.host_words_dev;
    void *flag = (char *)g.host_words_dev + sizeof(uint32_t);
    static uint32_t value;
    bool ok = true;
    while (ok && cuipc_bench_keep_running(s)) {
        value = value + 1 ? value + 1 : 1;
        /* The wait is queued first and starts polling before the word is written, as a
         * consumer's wait does when it receives the message before the producer's copy ends. */
        ok = cuipc_cuda_stream_wait_u32(g.waiter, word, value) == CUIPC_OK &&
             cuipc_cuda_stream_write_u32(g.waiter, flag, value) == CUIPC_OK;
        idle_for_us(idle_us);
        uint64_t t0 = now_ns();
        ok = ok && cuipc_cuda_stream_write_u32(g.writer, word, value) == CUIPC_OK &&
             wait_host_word(&g.host_words[1], value, t0, "completion flag");
        uint64_t t1 = now_ns();
        cuipc_bench_set_iteration_time(s, (double)(t1 - t0) / 1e9);
    }
    if (!ok) {
        g.stuck = true;
        cuipc_bench_skip_with_error(s, g.error[0] ? g.error : cuipc_last_error());
    }
}

/* One 4 KiB device copy and a stream sync, timed from the host as this iteration's time. */
static bool timed_copy_4k(cuipc_bench_state *s) {
    uint64_t t0 = now_ns();
    cudaError_t e =
        cudaMemcpyAsync(g.copy_dst, g.copy_src, 4096, cudaMemcpyDeviceToDevice, g.writer);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(g.writer);
    cuipc_bench_set_iteration_time(s, (double)(now_ns() - t0) / 1e9);
    return e == cudaSuccess || failed("4 KiB copy", e);
}

static void bench_copy_after_idle(cuipc_bench_state *s, void *ctx) {
    (void)ctx;
    int64_t idle_us = cuipc_bench_range(s, 0);
    if (!setup()) {
        cuipc_bench_skip_with_error(s, g.error);
        return;
    }
    bool ok = true;
    while (ok && cuipc_bench_keep_running(s)) {
        idle_for_us(idle_us);
        ok = timed_copy_4k(s);
    }
    if (!ok)
        cuipc_bench_skip_with_error(s, g.error);
}

/* Have the peer run its GPU operation and wait for it (bounded). */
static bool peer_run(void) {
    if (g_peer_pid <= 0 || g_peer_shm == NULL) {
        snprintf(g.error, sizeof g.error, "GPU peer process is not running");
        return false;
    }
    uint32_t cmd = atomic_load(&g_peer_shm->cmd) + 1;
    atomic_store(&g_peer_shm->cmd, cmd);
    uint64_t start = now_ns();
    while (atomic_load(&g_peer_shm->done) != cmd) {
        if (now_ns() - start > 5 * SPIN_LIMIT_NS) {
            snprintf(g.error, sizeof g.error, "GPU peer did not answer within 5 s");
            return false;
        }
        struct timespec ts = {0, 1000};
        nanosleep(&ts, NULL);
    }
    cudaError_t e = (cudaError_t)atomic_load(&g_peer_shm->error);
    return e == cudaSuccess || failed("GPU peer operation", e);
}

static void bench_copy_after_peer(cuipc_bench_state *s, void *ctx) {
    (void)ctx;
    if (!setup()) {
        cuipc_bench_skip_with_error(s, g.error);
        return;
    }
    bool ok = true;
    while (ok && cuipc_bench_keep_running(s)) {
        ok = peer_run();
        ok = timed_copy_4k(s) && ok;
    }
    if (!ok)
        cuipc_bench_skip_with_error(s, g.error);
}

typedef enum publish_api {
    PUBLISH_RUNTIME_DEFAULT,
    PUBLISH_RUNTIME_D2D,
    PUBLISH_WRITE_ONLY,
} publish_api;

static bool publish_copy(publish_api api, size_t n) {
    if (api == PUBLISH_WRITE_ONLY)
        return true;
    enum cudaMemcpyKind kind =
        api == PUBLISH_RUNTIME_D2D ? cudaMemcpyDeviceToDevice : cudaMemcpyDefault;
    cudaError_t e = cudaMemcpyAsync(g.pub_dst, g.pub_src, n, kind, g.writer);
    return e == cudaSuccess || failed("cudaMemcpyAsync", e);
}

typedef struct publish_case {
    publish_api api;
    bool spin_idle; /* the host spins through the idle time instead of sleeping */
} publish_case;

static void bench_publish(cuipc_bench_state *s, void *ctx) {
    const publish_case *pc = ctx;
    publish_api api = pc->api;
    size_t n = (size_t)cuipc_bench_range(s, 0);
    int64_t idle_us = cuipc_bench_range(s, 1);
    if (!setup()) {
        cuipc_bench_skip_with_error(s, g.error);
        return;
    }
    if (n == 0 || n > PUBLISH_MAX_BYTES) {
        cuipc_bench_skip_with_error(s, "bytes out of range");
        return;
    }
    volatile uint32_t *word = &g.host_words[2];
    void *word_dev = (char *)g.host_words_dev + 2 * sizeof(uint32_t);
    static uint32_t value;
    double enqueue_s = 0;
    bool ok = true;
    while (ok && cuipc_bench_keep_running(s)) {
        value = value + 1 ? value + 1 : 1;
        idle_for_us_spinning(idle_us, pc->spin_idle);
        uint64_t t0 = now_ns();
        ok = publish_copy(api, n) &&
             cuipc_cuda_stream_write_u32(g.writer, word_dev, value) == CUIPC_OK;
        uint64_t t1 = now_ns();
        ok = ok && wait_host_word(word, value, t0, "ready word");
        cuipc_bench_set_iteration_time(s, (double)(now_ns() - t0) / 1e9);
        enqueue_s += (double)(t1 - t0) / 1e9;
    }
    if (!ok) {
        cuipc_bench_skip_with_error(s, g.error[0] ? g.error : cuipc_last_error());
        return;
    }
    cuipc_bench_counter(s, "enqueue_us", enqueue_s * 1e6, CUIPC_COUNTER_PER_ITERATION);
}

void cuipc_bench_signal_teardown(void) {
    if (!g.ok || g.stuck)
        return; /* process exit reclaims it all */
    cudaStreamSynchronize(g.waiter);
    cudaStreamSynchronize(g.writer);
    cudaStreamDestroy(g.waiter);
    cudaStreamDestroy(g.writer);
    cudaFree(g.device_word);
    cudaFree(g.copy_src);
    cudaFree(g.copy_dst);
    cudaFree(g.pub_src);
    cudaFree(g.pub_dst);
    cudaFreeHost(g.host_words);
    g.ok = false;
}

void cuipc_bench_register_signal(void) {
    static const word_memory where[] = {WORD_DEVICE, WORD_HOST};
    static const char *names[] = {"gpu_signal/wait_word:device", "gpu_signal/wait_word:host"};
    static const int64_t idle[] = {0, 50, 2000};
    for (int k = 0; k < 2; k++) {
        cuipc_bench *b = cuipc_bench_register(names[k], bench_wait_word, (void *)&where[k]);
        cuipc_bench_arg_name(b, "idle_us");
        cuipc_bench_arg_list(b, idle, 3);
        cuipc_bench_use_manual_time(b);
        cuipc_bench_time_unit(b, CUIPC_BENCH_US);
        cuipc_bench_iterations(b, 400);
    }
    static const int64_t gaps[] = {0, 100, 2000, 10000};
    cuipc_bench *b =
        cuipc_bench_register("gpu_signal/copy_4k_after_idle", bench_copy_after_idle, NULL);
    cuipc_bench_arg_name(b, "idle_us");
    cuipc_bench_arg_list(b, gaps, 4);
    cuipc_bench_use_manual_time(b);
    cuipc_bench_time_unit(b, CUIPC_BENCH_US);
    cuipc_bench_iterations(b, 200);
    /* idle_us: the GPU idles that long before each publish. The spin_idle variant tells the
     * cost of the GPU's idle from the cost of the host thread's sleep. */
    static const publish_case cases[] = {{PUBLISH_RUNTIME_DEFAULT, false},
                                         {PUBLISH_RUNTIME_D2D, false},
                                         {PUBLISH_WRITE_ONLY, false},
                                         {PUBLISH_RUNTIME_DEFAULT, true}};
    static const char *case_names[] = {"gpu_signal/publish:default", "gpu_signal/publish:d2d",
                                       "gpu_signal/publish:write_only",
                                       "gpu_signal/publish:default,spin_idle"};
    for (int k = 0; k < 4; k++) {
        b = cuipc_bench_register(case_names[k], bench_publish, (void *)&cases[k]);
        static const int64_t bytes[] = {4096, 1048576}, idles[] = {0, 2000},
                             spin_idles[] = {200, 2000};
        bool one_size = cases[k].api == PUBLISH_WRITE_ONLY || cases[k].spin_idle;
        for (int i = 0; i < (one_size ? 1 : 2); i++)
            for (int j = 0; j < 2; j++)
                cuipc_bench_args2(b, bytes[i], cases[k].spin_idle ? spin_idles[j] : idles[j]);
        cuipc_bench_arg_names2(b, "bytes", "idle_us");
        cuipc_bench_use_manual_time(b);
        cuipc_bench_time_unit(b, CUIPC_BENCH_US);
        cuipc_bench_iterations(b, 400);
    }
    b = cuipc_bench_register("gpu_signal/copy_4k_after_peer_context", bench_copy_after_peer, NULL);
    cuipc_bench_use_manual_time(b);
    cuipc_bench_time_unit(b, CUIPC_BENCH_US);
    cuipc_bench_iterations(b, 200);
}
