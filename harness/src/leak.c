/* Leak sampler: readings from /proc, decimation when the buffer fills, slope. */
#include "leak.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuipc/shm_usage.h"
#include "stats.h"
#include "util.h"

const char *cuipc_leak_metric_name(cuipc_leak_metric m) {
    static const char *names[] = {"rss_bytes",
                                  "fds",
                                  "shm_mapped_bytes",
                                  "gpu_used_bytes",
                                  "gpu_process_bytes",
                                  "gpu_allocated_bytes",
                                  "copy_pool_used_bytes",
                                  "copy_pool_reserved_bytes",
                                  "gpu_process_bytes_less_copy_cache",
                                  "host_copy_cache_bytes",
                                  "gpu_allocated_bytes_less_copy_cache"};
    return (unsigned)m < CUIPC_LEAK_METRICS ? names[m] : "invalid";
}

/* Private resident memory (resident minus shared in statm, i.e. RssAnon): what a leak grows.
 * Pages of the shared pools and rings are left out: they are fixed-size mappings whose pages
 * fault in as the allocator first uses them, which is growth but not a leak (their objects are
 * judged by the fds and shm_mapped_bytes metrics). */
double cuipc_read_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return NAN;
    unsigned long size, resident, shared;
    int got = fscanf(f, "%lu %lu %lu", &size, &resident, &shared);
    fclose(f);
    return got == 3 && resident >= shared
               ? (double)(resident - shared) * (double)sysconf(_SC_PAGESIZE)
               : NAN;
}

double cuipc_read_fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return NAN;
    double n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory stream itself */
}

/* Shared memory this process maps: core's reading (cuipc/shm_usage.h). */
double cuipc_read_shm_mapped_bytes(void) {
    uint64_t bytes;
    return cuipc_shm_mapped_bytes(&bytes) == CUIPC_OK ? (double)bytes : NAN;
}

bool cuipc_leak_sampler_init(cuipc_leak_sampler *s, uint32_t cap, uint32_t interval_ms,
                             const bool enabled[CUIPC_LEAK_METRICS], cuipc_gpu_sample_fn gpu,
                             void *gpu_ctx) {
    memset(s, 0, sizeof *s);
    s->cap = cap < 16 ? 16 : cap;
    s->t = calloc(s->cap, sizeof(double));
    bool ok = s->t != NULL;
    for (int m = 0; m < CUIPC_LEAK_METRICS; m++) {
        s->enabled[m] = enabled[m];
        s->v[m] = calloc(s->cap, sizeof(double));
        ok = ok && s->v[m] != NULL;
    }
    if (!ok) {
        cuipc_leak_sampler_free(s);
        return false;
    }
    /* calloc may hand back untouched zero pages: touch them now, not during the run. */
    memset(s->t, 1, s->cap * sizeof(double));
    for (int m = 0; m < CUIPC_LEAK_METRICS; m++)
        memset(s->v[m], 1, s->cap * sizeof(double));
    s->interval_ns = (uint64_t)interval_ms * 1000000ull;
    s->gpu = gpu;
    s->gpu_ctx = gpu_ctx;
    s->t0_ns = cuipc_h_now_ns();
    s->next_ns = s->t0_ns;
    return true;
}

void cuipc_leak_sampler_set_caches(cuipc_leak_sampler *s, cuipc_cache_sample_fn fn) {
    s->caches = fn;
}

void cuipc_leak_sampler_free(cuipc_leak_sampler *s) {
    free(s->t);
    for (int m = 0; m < CUIPC_LEAK_METRICS; m++)
        free(s->v[m]);
    memset(s, 0, sizeof *s);
}

/* Keep every other sample and sample half as often: bounded memory for any run length. */
static void decimate(cuipc_leak_sampler *s) {
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->n; i += 2, k++) {
        s->t[k] = s->t[i];
        for (int m = 0; m < CUIPC_LEAK_METRICS; m++)
            s->v[m][k] = s->v[m][i];
    }
    s->n = k;
    s->interval_ns *= 2;
}

void cuipc_leak_sample_now(cuipc_leak_sampler *s) {
    if (s->t == NULL)
        return;
    if (s->n == s->cap)
        decimate(s);
    uint64_t now = cuipc_h_now_ns();
    uint32_t i = s->n++;
    s->t[i] = (double)(now - s->t0_ns) / 1e9;
    double host_cache = 0, reserved = NAN, pool_used = NAN;
    if (s->caches != NULL && !s->caches(s->gpu_ctx, &host_cache, &reserved, &pool_used))
        reserved = pool_used = NAN;
    s->v[CUIPC_LEAK_RSS][i] =
        s->enabled[CUIPC_LEAK_RSS] ? cuipc_read_rss_bytes() - host_cache : NAN;
    s->v[CUIPC_LEAK_HOST_COPY_CACHE][i] = s->enabled[CUIPC_LEAK_HOST_COPY_CACHE] ? host_cache : NAN;
    s->v[CUIPC_LEAK_COPY_POOL_USED][i] = s->enabled[CUIPC_LEAK_COPY_POOL_USED] ? pool_used : NAN;
    s->v[CUIPC_LEAK_COPY_POOL_RESERVED][i] =
        s->enabled[CUIPC_LEAK_COPY_POOL_RESERVED] ? reserved : NAN;
    s->v[CUIPC_LEAK_FDS][i] = s->enabled[CUIPC_LEAK_FDS] ? cuipc_read_fd_count() : NAN;
    s->v[CUIPC_LEAK_SHM][i] = s->enabled[CUIPC_LEAK_SHM] ? cuipc_read_shm_mapped_bytes() : NAN;
    double used = NAN, process = NAN, allocated = NAN;
    bool have_used = false, have_process = false, have_allocated = false;
    if (s->gpu != NULL && (s->enabled[CUIPC_LEAK_GPU_USED] || s->enabled[CUIPC_LEAK_GPU_PROCESS] ||
                           s->enabled[CUIPC_LEAK_GPU_ALLOCATED]))
        s->gpu(s->gpu_ctx, &used, &have_used, &process, &have_process, &allocated, &have_allocated);
    s->v[CUIPC_LEAK_GPU_USED][i] = s->enabled[CUIPC_LEAK_GPU_USED] && have_used ? used : NAN;
    s->v[CUIPC_LEAK_GPU_PROCESS][i] =
        s->enabled[CUIPC_LEAK_GPU_PROCESS] && have_process ? process : NAN;
    s->v[CUIPC_LEAK_GPU_ALLOCATED][i] =
        s->enabled[CUIPC_LEAK_GPU_ALLOCATED] && have_allocated ? allocated : NAN;
    /* The cache is freed memory the pools keep; what is in use stays in. */
    double cache = reserved - pool_used; /* NaN when the pools could not be read */
    s->v[CUIPC_LEAK_GPU_PROCESS_LESS_CACHE][i] =
        s->enabled[CUIPC_LEAK_GPU_PROCESS_LESS_CACHE] && have_process ? process - cache : NAN;
    s->v[CUIPC_LEAK_GPU_ALLOCATED_LESS_CACHE][i] =
        s->enabled[CUIPC_LEAK_GPU_ALLOCATED_LESS_CACHE] && have_allocated ? allocated - cache : NAN;
    s->next_ns = now + s->interval_ns;
}

void cuipc_leak_maybe_sample(cuipc_leak_sampler *s) {
    if (s->t != NULL && cuipc_h_now_ns() >= s->next_ns)
        cuipc_leak_sample_now(s);
}

void cuipc_leak_verdict_get(const cuipc_leak_sampler *s, cuipc_leak_metric m,
                            double warmup_fraction, double tolerance, cuipc_leak_verdict *out) {
    memset(out, 0, sizeof *out);
    out->tolerance = tolerance;
    if (s->n < 2 || !s->enabled[m])
        return;
    double t_start = s->t[0], t_end = s->t[s->n - 1];
    double t_warm = t_start + warmup_fraction * (t_end - t_start);
    double *x = malloc(s->n * sizeof(double)), *y = malloc(s->n * sizeof(double));
    if (x == NULL || y == NULL) {
        free(x);
        free(y);
        return;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->t[i] >= t_warm && !isnan(s->v[m][i])) {
            x[k] = s->t[i];
            y[k] = s->v[m][i];
            k++;
        }
    }
    /* Three points at least: two always define a line, noise or not. */
    if (k >= 3) {
        out->have = true;
        out->samples = k;
        out->slope_per_s = cuipc_slope(x, y, k);
        out->growth = out->slope_per_s * (x[k - 1] - x[0]);
        out->first = y[0];
        out->last = y[k - 1];
        out->leak = out->growth > tolerance;
    }
    free(x);
    free(y);
}
