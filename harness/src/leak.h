/* Leak sampler: periodic samples of what a leak would grow (host RSS, open fds, mapped shm,
 * GPU memory), and a verdict from the least-squares slope after the warm-up. */
#ifndef CUIPC_HARNESS_LEAK_H
#define CUIPC_HARNESS_LEAK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum cuipc_leak_metric {
    CUIPC_LEAK_RSS = 0,     /* resident bytes of this process */
    CUIPC_LEAK_FDS,         /* open file descriptors of this process */
    CUIPC_LEAK_SHM,         /* shared memory this process maps (memfd, /dev/shm, SysV) */
    CUIPC_LEAK_GPU_USED,    /* device memory in use (device-wide, cudaMemGetInfo) */
    CUIPC_LEAK_GPU_PROCESS, /* device memory of this process (NVML) */
    /* device memory this process holds through cuipc (its own count: NVML has none per
     * client under MPS) */
    CUIPC_LEAK_GPU_ALLOCATED,
    /* The process's copy-out buffer pools (stream-ordered, one per device): bytes in buffers not
     * yet freed (what a leak of copies grows), and bytes held from the driver (those plus the
     * cache of freed ones, bounded by the pools' release threshold: shown, not judged). */
    CUIPC_LEAK_COPY_POOL_USED,
    CUIPC_LEAK_COPY_POOL_RESERVED,
    /* This process's device memory less the copy-out pools' cache (reserved - used). */
    CUIPC_LEAK_GPU_PROCESS_LESS_CACHE,
    /* Freed host copy-out buffers kept for reuse (bounded; taken out of rss_bytes, shown). */
    CUIPC_LEAK_HOST_COPY_CACHE,
    /* This process's own count under MPS (gpu_allocated_bytes) less the copy-out pools' cache. */
    CUIPC_LEAK_GPU_ALLOCATED_LESS_CACHE,
    CUIPC_LEAK_METRICS
} cuipc_leak_metric;

const char *cuipc_leak_metric_name(cuipc_leak_metric m);

/* Fills whichever of used/process/allocated it can; returns false if none. */
typedef bool (*cuipc_gpu_sample_fn)(void *ctx, double *used, bool *have_used, double *process,
                                    bool *have_process, double *allocated, bool *have_allocated);

/* The process's own allocator caches: host copy-out cache bytes, and the copy-out pools'
 * reserved and used bytes (false if they cannot be read). */
typedef bool (*cuipc_cache_sample_fn)(void *gpu_ctx, double *host_copy_cache, double *pool_reserved,
                                      double *pool_used);

typedef struct cuipc_leak_sampler {
    uint32_t cap, n;
    double *t;                     /* seconds since start */
    double *v[CUIPC_LEAK_METRICS]; /* samples; NaN where a metric was unavailable */
    bool enabled[CUIPC_LEAK_METRICS];
    uint64_t interval_ns, next_ns, t0_ns;
    cuipc_gpu_sample_fn gpu;
    void *gpu_ctx;
    cuipc_cache_sample_fn caches; /* NULL: no caches to tell apart */
} cuipc_leak_sampler;

/* All buffers are allocated and touched here so sampling itself never grows RSS. */
bool cuipc_leak_sampler_init(cuipc_leak_sampler *s, uint32_t cap, uint32_t interval_ms,
                             const bool enabled[CUIPC_LEAK_METRICS], cuipc_gpu_sample_fn gpu,
                             void *gpu_ctx);
void cuipc_leak_sampler_free(cuipc_leak_sampler *s);
/* Tell caches from leaks: rss_bytes leaves out the host copy-out cache, and the copy-out pool
 * series (and the process's device memory less their cache) are sampled where enabled. */
void cuipc_leak_sampler_set_caches(cuipc_leak_sampler *s, cuipc_cache_sample_fn fn);

/* Take a sample if the interval has passed (cheap otherwise). */
void cuipc_leak_maybe_sample(cuipc_leak_sampler *s);
void cuipc_leak_sample_now(cuipc_leak_sampler *s);

typedef struct cuipc_leak_verdict {
    bool have;        /* enough samples of this metric */
    uint32_t samples; /* after warm-up */
    double slope_per_s;
    double growth; /* slope * measured span */
    double first, last, tolerance;
    bool leak;
} cuipc_leak_verdict;

/* Verdict for metric m over samples after warmup_fraction of the sampled time. */
void cuipc_leak_verdict_get(const cuipc_leak_sampler *s, cuipc_leak_metric m,
                            double warmup_fraction, double tolerance, cuipc_leak_verdict *out);

/* Point readings used by the sampler (exposed for tests). */
double cuipc_read_rss_bytes(void);
double cuipc_read_fd_count(void);
double cuipc_read_shm_mapped_bytes(void);

/* NVML through dlopen: per-process device memory of pid on the GPU with this PCI bus id.
 * False when NVML or the process entry is not there. */
bool cuipc_nvml_process_bytes(const char *pci_bus_id, int pid, double *bytes);

#endif
