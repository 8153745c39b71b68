/* The CUDA layer on a real GPU: device pattern fill and checksum against the host definitions
 * (any size, any alignment, no stray writes), stream memory operations on registered host
 * memory (write observed by the host, wait blocks later work until the host writes the exact
 * value), host functions, pointer queries, error messages, and CUDA IPC between two fork()ed
 * children. The parent initialises CUDA only after the fork-based tests: a child fork()ed from
 * a process that has initialised CUDA cannot use CUDA. Exits 77 without a GPU. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cuda_api.h"
#include "cuipc/gpu.h"
#include "cuipc/pattern.h"
#include "cuipc/transport.h"
#include "test_util.h"

#define MIB ((size_t)1 << 20)
#define PAGE 4096
#define CHILD_TIMEOUT_MS 60000
#define GUARD 0xA5

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Poll a 32-bit word the GPU writes until it holds want; false after timeout_ms. */
static bool wait_word(const uint32_t *word, uint32_t want, int timeout_ms) {
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (__atomic_load_n(word, __ATOMIC_ACQUIRE) != want) {
        if (now_ms() > end)
            return false;
        sleep_ms(1);
    }
    return true;
}

static void *page_alloc(size_t n) {
    void *p = NULL;
    REQUIRE(posix_memalign(&p, PAGE, n) == 0);
    memset(p, 0, n);
    return p;
}

/* Index of the first byte where a and b differ, or n. */
static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    size_t i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* ---------------- IPC across fork: child A exports, child B imports ---------------- */

typedef struct ipc_msg {
    uint8_t handle[CUIPC_IPC_HANDLE_BYTES];
    uint64_t size;
} ipc_msg;

typedef struct ipc_result {
    uint64_t whole;  /* checksum of the whole imported allocation */
    uint64_t middle; /* checksum of bytes [3, size - 2): unaligned start, odd length */
} ipc_result;

typedef struct ipc_ctx {
    int handle_pipe[2];  /* A -> B: ipc_msg */
    int result_pipe[2];  /* B -> parent: ipc_result */
    int release_pipe[2]; /* parent -> A: closed when A may free its allocation */
    uint64_t size;
    uint64_t seed;
} ipc_ctx;

/* Read exactly n bytes within timeout_ms; false on EOF, error or timeout. */
static bool read_full(int fd, void *buf, size_t n, int timeout_ms) {
    uint8_t *b = buf;
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (n > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int left = (int)(end > now_ms() ? end - now_ms() : 0);
        if (poll(&pfd, 1, left) <= 0)
            return false;
        ssize_t r = read(fd, b, n);
        if (r <= 0)
            return false;
        b += r;
        n -= (size_t)r;
    }
    return true;
}

static int child_export(void *arg) {
    ipc_ctx *c = arg;
    close(c->handle_pipe[0]);
    close(c->result_pipe[0]);
    close(c->result_pipe[1]);
    close(c->release_pipe[1]);
    void *d = NULL;
    ipc_msg msg = {.size = c->size};
    if (cuipc_gpu_malloc(0, c->size, &d) != CUIPC_OK ||
        cuipc_gpu_fill_pattern(d, c->size, c->seed, NULL) != CUIPC_OK ||
        cuipc_gpu_stream_sync(NULL) != CUIPC_OK || cuipc_cuda_ipc_get(d, msg.handle) != CUIPC_OK) {
        fprintf(stderr, "[child A] allocating, filling or exporting failed: %s\n",
                cuipc_last_error());
        return 2;
    }
    if (write(c->handle_pipe[1], &msg, sizeof msg) != (ssize_t)sizeof msg) {
        fprintf(stderr, "[child A] could not send the handle\n");
        return 3;
    }
    /* Keep the allocation alive until the parent has B's result (EOF = release). */
    char dummy;
    if (read_full(c->release_pipe[0], &dummy, 1, CHILD_TIMEOUT_MS))
        fprintf(stderr, "[child A] unexpected byte on the release pipe\n");
    CHECK_OK(cuipc_gpu_free(d));
    return cuipc_test_failures;
}

static int child_import(void *arg) {
    ipc_ctx *c = arg;
    close(c->handle_pipe[1]);
    close(c->result_pipe[0]);
    close(c->release_pipe[0]);
    close(c->release_pipe[1]);
    ipc_msg msg;
    if (!read_full(c->handle_pipe[0], &msg, sizeof msg, CHILD_TIMEOUT_MS)) {
        fprintf(stderr, "[child B] no handle from child A (it failed or timed out)\n");
        return 2;
    }
    void *p = NULL;
    if (cuipc_cuda_ipc_open(msg.handle, 0, &p) != CUIPC_OK) {
        fprintf(stderr, "[child B] cuipc_cuda_ipc_open failed: %s\n", cuipc_last_error());
        return 3;
    }
    ipc_result res = {0, 0};
    CHECK_OK(cuipc_gpu_checksum(p, msg.size, NULL, &res.whole));
    CHECK_OK(cuipc_gpu_checksum((uint8_t *)p + 3, msg.size - 5, NULL, &res.middle));
    /* The imported mapping is device memory of device 0 and a whole allocation. */
    int dev = -2;
    CHECK_OK(cuipc_cuda_pointer_device(p, &dev));
    CHECK(dev == 0);
    void *base = NULL;
    size_t size = 0;
    CHECK_OK(cuipc_cuda_alloc_range((uint8_t *)p + 100, &base, &size));
    CHECK(base == p && size >= msg.size);
    CHECK_OK(cuipc_cuda_ipc_close(p));
    if (write(c->result_pipe[1], &res, sizeof res) != (ssize_t)sizeof res) {
        fprintf(stderr, "[child B] could not send the result\n");
        return 4;
    }
    return cuipc_test_failures;
}

static void test_ipc_across_fork(void) {
    ipc_ctx c = {.size = MIB + 3, .seed = 0x1badcafe};
    REQUIRE(pipe(c.handle_pipe) == 0 && pipe(c.result_pipe) == 0 && pipe(c.release_pipe) == 0);
    pid_t a = cuipc_test_fork(child_export, &c);
    pid_t b = cuipc_test_fork(child_import, &c);
    REQUIRE(a > 0 && b > 0);
    close(c.handle_pipe[0]);
    close(c.handle_pipe[1]);
    close(c.result_pipe[1]);
    close(c.release_pipe[0]);

    uint8_t *ref = malloc(c.size);
    REQUIRE(ref != NULL);
    cuipc_host_fill_pattern(ref, c.size, c.seed);
    ipc_result res;
    bool got = read_full(c.result_pipe[0], &res, sizeof res, CHILD_TIMEOUT_MS);
    close(c.release_pipe[1]); /* A may free now */
    close(c.result_pipe[0]);
    if (!got) {
        fprintf(stderr, "IPC: no checksum from child B (see the children's messages above)\n");
        cuipc_test_failures++;
    } else {
        uint64_t whole = cuipc_host_checksum(ref, c.size);
        uint64_t middle = cuipc_host_checksum(ref + 3, c.size - 5);
        if (res.whole != whole || res.middle != middle) {
            fprintf(stderr,
                    "IPC: checksums seen through the imported handle differ from the host's: "
                    "whole 0x%llx vs 0x%llx, middle 0x%llx vs 0x%llx\n",
                    (unsigned long long)res.whole, (unsigned long long)whole,
                    (unsigned long long)res.middle, (unsigned long long)middle);
            cuipc_test_failures++;
        }
    }
    int ra = cuipc_test_wait(a, CHILD_TIMEOUT_MS), rb = cuipc_test_wait(b, CHILD_TIMEOUT_MS);
    if (ra != 0 || rb != 0) {
        fprintf(stderr,
                "IPC: child A (export) exited %d, child B (import) exited %d "
                "(negative: killed by that signal; -1000: timed out)\n",
                ra, rb);
        cuipc_test_failures++;
    }
    free(ref);
}

/* ---------------- in-process tests (parent, after the fork tests) ---------------- */

static void test_info(void) {
    for (int dev = 0; dev < cuipc_gpu_count(); dev++) {
        cuipc_gpu_info info;
        CHECK_OK(cuipc_gpu_info_get(dev, &info));
        printf("device %d: %s, PCI %s, driver %d, runtime %d, %llu of %llu bytes free\n", dev,
               info.name, info.pci_bus_id, info.driver_version, info.runtime_version,
               (unsigned long long)info.free_bytes, (unsigned long long)info.total_bytes);
        CHECK(info.name[0] != '\0');
        CHECK(strchr(info.pci_bus_id, ':') != NULL);
        CHECK(strncmp(info.uuid, "GPU-", 4) == 0 && strlen(info.uuid) == 40);
        CHECK(info.driver_version > 0 && info.runtime_version > 0);
        CHECK(info.total_bytes > 0 && info.free_bytes <= info.total_bytes);
    }
    CHECK_OK(cuipc_cuda_set_device(0));
}

/* Fill at every offset/size on the device, compare checksum with the host's and the bytes with
 * the host pattern, and check that the guard bytes around the range stayed untouched. */
static void test_fill_and_checksum(void *stream) {
    static const size_t sizes[] = {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 4095, 4096, 65537, MIB + 3};
    static const size_t offsets[] = {0, 1, 3, 7, 8, 13};
    const size_t max_n = MIB + 3, cap = max_n + 64;
    const uint64_t seed = 0x5eed;
    uint8_t *ref = malloc(max_n), *guard = malloc(cap), *back = malloc(cap);
    REQUIRE(ref && guard && back);
    cuipc_host_fill_pattern(ref, max_n, seed);
    memset(guard, GUARD, cap);
    uint8_t *d = NULL;
    REQUIRE(cuipc_gpu_malloc(0, cap, (void **)&d) == CUIPC_OK);

    for (size_t oi = 0; oi < sizeof offsets / sizeof offsets[0]; oi++) {
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t off = offsets[oi], n = sizes[si], span = off + n + 32;
            CHECK_OK(cuipc_gpu_memcpy(d, guard, span, stream));
            CHECK_OK(cuipc_gpu_fill_pattern(d + off, n, seed, stream));
            uint64_t dev_sum = 0;
            CHECK_OK(cuipc_gpu_checksum(d + off, n, stream, &dev_sum));
            uint64_t host_sum = cuipc_host_checksum(ref, n);
            if (dev_sum != host_sum) {
                fprintf(stderr, "offset %zu, %zu bytes: device checksum 0x%llx, host 0x%llx\n", off,
                        n, (unsigned long long)dev_sum, (unsigned long long)host_sum);
                cuipc_test_failures++;
            }
            CHECK_OK(cuipc_gpu_memcpy(back, d, span, stream));
            CHECK_OK(cuipc_gpu_stream_sync(stream));
            size_t diff = first_diff(back + off, ref, n);
            if (diff != n) {
                fprintf(stderr,
                        "offset %zu, %zu bytes: device byte %zu is 0x%02x, pattern 0x%02x\n", off,
                        n, diff, back[off + diff], ref[diff]);
                cuipc_test_failures++;
            }
            size_t before = first_diff(back, guard, off);
            size_t after = first_diff(back + off + n, guard, 32);
            if (before != off || after != 32) {
                fprintf(stderr, "offset %zu, %zu bytes: fill wrote outside its range (%s)\n", off,
                        n, before != off ? "before" : "after");
                cuipc_test_failures++;
            }
        }
    }

    /* Checksum alone over sub-ranges whose start is out of phase with the pattern words:
     * exercises the kernel's unaligned word assembly on arbitrary data. */
    CHECK_OK(cuipc_gpu_fill_pattern(d, max_n, seed, stream));
    static const size_t starts[] = {0, 1, 2, 5, 8, 11, 16, 17, 4099};
    static const size_t lens[] = {1, 2, 8, 9, 16, 17, 24, 25, 40, 4096 + 5, 65536 + 7, MIB - 4200};
    for (size_t a = 0; a < sizeof starts / sizeof starts[0]; a++) {
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            size_t s0 = starts[a], m = lens[l];
            uint64_t dev_sum = 0;
            CHECK_OK(cuipc_gpu_checksum(d + s0, m, stream, &dev_sum));
            if (dev_sum != cuipc_host_checksum(ref + s0, m)) {
                fprintf(stderr, "checksum of bytes [%zu, %zu): device 0x%llx, host 0x%llx\n", s0,
                        s0 + m, (unsigned long long)dev_sum,
                        (unsigned long long)cuipc_host_checksum(ref + s0, m));
                cuipc_test_failures++;
            }
        }
    }
    CHECK_OK(cuipc_gpu_free(d));
    free(ref);
    free(guard);
    free(back);
}

/* The kernels also work on registered host memory through its device address. */
static void test_fill_registered_host(void *stream) {
    const size_t n = 16 * PAGE, off = 5, len = n - 11;
    uint8_t *h = page_alloc(n), *ref = malloc(len);
    REQUIRE(ref != NULL);
    void *dh = NULL;
    REQUIRE(cuipc_cuda_host_register(h, n, &dh) == CUIPC_OK);
    CHECK_OK(cuipc_gpu_fill_pattern((uint8_t *)dh + off, len, 77, stream));
    uint64_t sum = 0;
    CHECK_OK(cuipc_gpu_checksum((uint8_t *)dh + off, len, stream, &sum));
    cuipc_host_fill_pattern(ref, len, 77);
    CHECK(first_diff(h + off, ref, len) == len);
    CHECK(h[off - 1] == 0 && h[off + len] == 0);
    CHECK(sum == cuipc_host_checksum(ref, len));
    CHECK_OK(cuipc_cuda_host_unregister(h));
    free(h);
    free(ref);
}

static void test_pointer_queries(void) {
    const size_t n = MIB;
    uint8_t *d = NULL;
    REQUIRE(cuipc_gpu_malloc(0, n, (void **)&d) == CUIPC_OK);
    int dev = -2;
    CHECK_OK(cuipc_cuda_pointer_device(d + 17, &dev));
    CHECK(dev == 0);

    int on_stack = 0;
    dev = -2;
    CHECK_OK(cuipc_cuda_pointer_device(&on_stack, &dev));
    CHECK(dev == CUIPC_DEVICE_HOST);
    uint8_t *h = page_alloc(PAGE);
    dev = -2;
    CHECK_OK(cuipc_cuda_pointer_device(h, &dev));
    CHECK(dev == CUIPC_DEVICE_HOST);
    void *dh = NULL;
    REQUIRE(cuipc_cuda_host_register(h, PAGE, &dh) == CUIPC_OK);
    dev = -2;
    CHECK_OK(cuipc_cuda_pointer_device(h, &dev));
    CHECK(dev == CUIPC_DEVICE_HOST);
    CHECK_OK(cuipc_cuda_host_unregister(h));
    free(h);

    void *base = NULL;
    size_t size = 0;
    CHECK_OK(cuipc_cuda_alloc_range(d + 12345, &base, &size));
    CHECK(base == d);
    CHECK(size >= n);
    cuipc_clear_error();
    CHECK(cuipc_cuda_alloc_range(&on_stack, &base, &size) != CUIPC_OK);
    CHECK(strstr(cuipc_last_error(), "cuMemGetAddressRange") != NULL);
    CHECK_OK(cuipc_gpu_free(d));
}

/* The process's own GPU memory count follows its allocations and frees (the leak checks judge
 * it under MPS, where the driver has no per-process figure), and the copy-out pool's reserve. */
static void test_allocated_bytes(void *stream) {
    uint64_t before = 0, during = 0, after = 0, base = 0, pooled = 0, trimmed = 0;
    CHECK_OK(cuipc_gpu_allocated_bytes(0, &before));
    void *d = NULL;
    REQUIRE(cuipc_gpu_malloc(0, 3 * MIB + 1, &d) == CUIPC_OK);
    CHECK_OK(cuipc_gpu_allocated_bytes(0, &during));
    CHECK(during >= before + 3 * MIB + 1);
    CHECK(during - before <= 4 * MIB); /* the allocation's own size (granule-rounded at most) */
    CHECK_OK(cuipc_gpu_free(d));
    CHECK_OK(cuipc_gpu_allocated_bytes(0, &after));
    CHECK(after == before);
    /* The copy-out pool's reserve counts: memory kept for reuse is still this process's. */
    CHECK_OK(cuipc_cuda_copy_pools_trim());
    CHECK_OK(cuipc_gpu_allocated_bytes(0, &base));
    void *c = NULL;
    CHECK_OK(cuipc_cuda_malloc_async(0, 8 * MIB, stream, &c));
    CHECK_OK(cuipc_cuda_free_async(c, stream));
    CHECK_OK(cuipc_gpu_stream_sync(stream));
    CHECK_OK(cuipc_gpu_allocated_bytes(0, &pooled));
    CHECK(pooled >= base + 8 * MIB);
    CHECK_OK(cuipc_cuda_copy_pools_trim());
    CHECK_OK(cuipc_gpu_allocated_bytes(0, &trimmed));
    CHECK(trimmed <= base);
    bool mps = true;
    CHECK_OK(cuipc_gpu_mps_client(0, &mps));
    printf("allocated bytes: %llu -> %llu -> %llu, copy-out reserve %llu -> %llu -> %llu; MPS "
           "client: %s\n",
           (unsigned long long)before, (unsigned long long)during, (unsigned long long)after,
           (unsigned long long)base, (unsigned long long)pooled, (unsigned long long)trimmed,
           mps ? "yes" : "no");
    CHECK(cuipc_gpu_allocated_bytes(-1, &after) == CUIPC_ERR_INVALID_ARG);
}

/* A stream write to a registered host word becomes visible to the host, after the copy issued
 * before it (default flags keep the memory barrier). */
static void test_stream_write(void *stream) {
    uint32_t *words = page_alloc(PAGE);
    uint8_t *dst = page_alloc(PAGE);
    void *dwords = NULL, *ddst = NULL;
    REQUIRE(cuipc_cuda_host_register(words, PAGE, &dwords) == CUIPC_OK);
    REQUIRE(cuipc_cuda_host_register(dst, PAGE, &ddst) == CUIPC_OK);
    uint8_t *src = NULL, ref[PAGE];
    REQUIRE(cuipc_gpu_malloc(0, PAGE, (void **)&src) == CUIPC_OK);
    cuipc_host_fill_pattern(ref, PAGE, 3);
    CHECK_OK(cuipc_gpu_fill_pattern(src, PAGE, 3, stream));
    CHECK_OK(cuipc_gpu_memcpy(dst, src, PAGE, stream));
    CHECK_OK(cuipc_cuda_stream_write_u32(stream, (uint32_t *)dwords + 1, 0xC0FFEEu));
    if (!wait_word(words + 1, 0xC0FFEEu, 5000)) {
        fprintf(stderr, "stream write: host never saw 0xC0FFEE (word is 0x%x)\n", words[1]);
        cuipc_test_failures++;
    } else {
        CHECK(first_diff(dst, ref, PAGE) == PAGE); /* the copy before it is complete */
    }
    CHECK_OK(cuipc_gpu_stream_sync(stream));
    CHECK(words[0] == 0 && words[2] == 0); /* exactly one 32-bit word written */

    cuipc_clear_error();
    CHECK_STATUS(cuipc_cuda_stream_write_u32(stream, (uint8_t *)dwords + 2, 1),
                 CUIPC_ERR_INVALID_ARG);
    CHECK_OK(cuipc_cuda_host_unregister(words));
    CHECK_OK(cuipc_cuda_host_unregister(dst));
    CHECK_OK(cuipc_gpu_free(src));
    free(words);
    free(dst);
}

/* A stream wait holds back a later copy until the host stores exactly the awaited value. */
static void test_stream_wait(void *stream) {
    uint32_t *words = page_alloc(PAGE); /* [0] = gate (host writes), [1] = done (GPU writes) */
    uint8_t *dst = page_alloc(PAGE);    /* pinned: a pageable copy target could block the host */
    void *dwords = NULL, *ddst = NULL;
    REQUIRE(cuipc_cuda_host_register(words, PAGE, &dwords) == CUIPC_OK);
    REQUIRE(cuipc_cuda_host_register(dst, PAGE, &ddst) == CUIPC_OK);
    uint8_t *src = NULL, ref[PAGE], zeros[PAGE] = {0};
    REQUIRE(cuipc_gpu_malloc(0, PAGE, (void **)&src) == CUIPC_OK);
    cuipc_host_fill_pattern(ref, PAGE, 4);
    CHECK_OK(cuipc_gpu_fill_pattern(src, PAGE, 4, stream));
    CHECK_OK(cuipc_gpu_stream_sync(stream));

    CHECK_OK(cuipc_cuda_stream_wait_u32(stream, dwords, 1));
    CHECK_OK(cuipc_gpu_memcpy(dst, src, PAGE, stream));
    CHECK_OK(cuipc_cuda_stream_write_u32(stream, (uint32_t *)dwords + 1, 1));

    sleep_ms(100);
    CHECK(__atomic_load_n(&words[1], __ATOMIC_ACQUIRE) == 0);
    CHECK(memcmp(dst, zeros, PAGE) == 0); /* copy held back by the wait */
    /* EQ semantics: a larger value must not release it either. */
    __atomic_store_n(&words[0], 2u, __ATOMIC_RELEASE);
    sleep_ms(100);
    if (__atomic_load_n(&words[1], __ATOMIC_ACQUIRE) != 0) {
        fprintf(stderr, "stream wait (EQ 1) was released by the value 2\n");
        cuipc_test_failures++;
    }
    __atomic_store_n(&words[0], 1u, __ATOMIC_RELEASE);
    if (!wait_word(&words[1], 1, 5000)) {
        fprintf(stderr, "stream wait: work after the wait did not run within 5 s of the host "
                        "writing the awaited value\n");
        cuipc_test_failures++;
    } else {
        CHECK(first_diff(dst, ref, PAGE) == PAGE);
    }
    CHECK_OK(cuipc_gpu_stream_sync(stream));
    CHECK_OK(cuipc_cuda_host_unregister(words));
    CHECK_OK(cuipc_cuda_host_unregister(dst));
    CHECK_OK(cuipc_gpu_free(src));
    free(words);
    free(dst);
}

typedef struct host_func_probe {
    const uint8_t *dst;
    const uint8_t *ref;
    int calls;
    bool saw_copy;
} host_func_probe;

static void host_func(void *arg) {
    host_func_probe *p = arg;
    p->calls++;
    p->saw_copy = first_diff(p->dst, p->ref, PAGE) == PAGE;
}

/* A host function runs once, after the work queued before it. */
static void test_host_func(void *stream) {
    uint8_t *dst = page_alloc(PAGE), ref[PAGE];
    void *ddst = NULL;
    REQUIRE(cuipc_cuda_host_register(dst, PAGE, &ddst) == CUIPC_OK);
    uint8_t *src = NULL;
    REQUIRE(cuipc_gpu_malloc(0, PAGE, (void **)&src) == CUIPC_OK);
    cuipc_host_fill_pattern(ref, PAGE, 5);
    host_func_probe probe = {.dst = dst, .ref = ref};
    CHECK_OK(cuipc_gpu_fill_pattern(src, PAGE, 5, stream));
    CHECK_OK(cuipc_gpu_memcpy(dst, src, PAGE, stream));
    CHECK_OK(cuipc_cuda_launch_host_func(stream, host_func, &probe));
    CHECK_OK(cuipc_gpu_stream_sync(stream));
    CHECK(probe.calls == 1);
    CHECK(probe.saw_copy);
    CHECK_OK(cuipc_cuda_host_unregister(dst));
    CHECK_OK(cuipc_gpu_free(src));
    free(dst);
}

/* Failures name the call, the CUDA error and the arguments, and leave CUDA usable. */
static void test_errors(void) {
    void *p = NULL;
    const size_t huge = (size_t)1 << 50;
    cuipc_clear_error();
    CHECK_STATUS(cuipc_gpu_malloc(0, huge, &p), CUIPC_ERR_CUDA);
    const char *msg = cuipc_last_error();
    CHECK(strstr(msg, "cudaMalloc") != NULL);
    CHECK(strstr(msg, "cudaErrorMemoryAllocation") != NULL);
    CHECK(strstr(msg, "1125899906842624") != NULL);
    printf("expected failure reads: %s\n", msg);
    CHECK_OK(cuipc_gpu_malloc(0, 4096, &p)); /* the failure did not stick */
    CHECK_OK(cuipc_gpu_free(p));
    CHECK_STATUS(cuipc_cuda_set_device(cuipc_gpu_count()), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_gpu_malloc(0, 0, &p), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_gpu_stream_destroy(NULL), CUIPC_ERR_INVALID_ARG);
    CHECK_OK(cuipc_cuda_enable_peer(0, 0));
    if (cuipc_gpu_count() > 1) {
        cuipc_status s = cuipc_cuda_enable_peer(0, 1);
        CHECK(s == CUIPC_OK || s == CUIPC_ERR_UNSUPPORTED);
        if (s == CUIPC_OK)
            CHECK_OK(cuipc_cuda_enable_peer(0, 1)); /* already enabled is fine */
    }
}

/* Whether a GPU is usable, asked in a child so that this process stays CUDA-free for the
 * fork-based tests. */
static int probe_gpu(void *arg) {
    (void)arg;
    return cuipc_gpu_count() > 0 ? 0 : CUIPC_TEST_SKIP;
}

/* Copy-out buffers of mixed sizes, freed stream-ordered and synchronised like a consumer's: the
 * pool's reserve stays within its release threshold past each synchronisation (used: nothing),
 * while unbounded it keeps what the size mix fragmented; a buffer kept alive shows in used. */
static uint64_t mixed_copies(void *stream, uint64_t keep, uint64_t *max_used) {
    CHECK_OK(cuipc_cuda_copy_pool_set_cache(0, keep));
    uint64_t rng = 0x9e3779b97f4a7c15ull, max_reserved = 0;
    *max_used = 0;
    for (int i = 0; i < 300; i++) {
        void *b[3] = {NULL};
        for (int k = 0; k < 3; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t n = (size_t)1 << (12 + rng % 15); /* 4 KiB .. 64 MiB */
            n += (rng >> 20) % n;                    /* and between the powers of two */
            CHECK_OK(cuipc_cuda_malloc_async(0, n, stream, &b[k]));
        }
        for (int k = 0; k < 3; k++)
            CHECK_OK(cuipc_cuda_free_async(b[k], stream));
        CHECK_OK(cuipc_cuda_stream_sync(stream));
        uint64_t reserved = 0, used = 0;
        CHECK_OK(cuipc_gpu_copy_pool_usage(0, &reserved, &used));
        max_reserved = reserved > max_reserved ? reserved : max_reserved;
        *max_used = used > *max_used ? used : *max_used;
    }
    return max_reserved;
}

static void test_copy_pool_cache(void *stream) {
    uint64_t used = 0, keep = 64 * MIB;
    uint64_t bounded = mixed_copies(stream, keep, &used);
    printf("copy-out pool, release threshold 64 MiB: reserved at most %.1f MiB after a sync\n",
           (double)bounded / MIB);
    CHECK(used == 0);
    CHECK(bounded <= keep + 32 * MIB); /* the pool's granularity */
    uint64_t unbounded = mixed_copies(stream, UINT64_MAX, &used);
    printf("copy-out pool, unbounded: reserved at most %.1f MiB\n", (double)unbounded / MIB);
    CHECK(used == 0);
    CHECK(unbounded > keep);
    /* A buffer not freed is used memory, cache or not. */
    void *kept = NULL;
    CHECK_OK(cuipc_cuda_copy_pool_set_cache(0, 0));
    CHECK_OK(cuipc_cuda_malloc_async(0, 8 * MIB, stream, &kept));
    CHECK_OK(cuipc_cuda_stream_sync(stream));
    uint64_t reserved = 0;
    CHECK_OK(cuipc_gpu_copy_pool_usage(0, &reserved, &used));
    CHECK(used >= 8 * MIB && reserved >= used);
    CHECK_OK(cuipc_cuda_free_async(kept, stream));
    CHECK_OK(cuipc_cuda_stream_sync(stream));
    CHECK_OK(cuipc_gpu_copy_pool_usage(0, &reserved, &used));
    CHECK(used == 0 && reserved <= 32 * MIB);
    CHECK_OK(cuipc_cuda_copy_pool_set_cache(0, CUIPC_COPY_CACHE_DEFAULT_BYTES));
}

int main(void) {
    int probe = cuipc_test_wait(cuipc_test_fork(probe_gpu, NULL), CHILD_TIMEOUT_MS);
    if (probe == CUIPC_TEST_SKIP) {
        printf("no usable CUDA device: skipping\n");
        return CUIPC_TEST_SKIP;
    }
    REQUIRE(probe == 0);
    test_ipc_across_fork();

    /* From here on this process uses CUDA itself: no more CUDA-using children. */
    test_info();
    void *stream = NULL;
    REQUIRE(cuipc_gpu_stream_create(0, &stream) == CUIPC_OK);
    test_fill_and_checksum(stream);
    test_fill_and_checksum(NULL); /* legacy default stream too */
    test_fill_registered_host(stream);
    test_pointer_queries();
    test_allocated_bytes(stream);
    test_stream_write(stream);
    test_stream_wait(stream);
    test_host_func(stream);
    test_errors();
    test_copy_pool_cache(stream);
    CHECK_OK(cuipc_gpu_stream_destroy(stream));
    return cuipc_test_finish("test_gpu_basics");
}
