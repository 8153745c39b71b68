/* Shared role helpers. */
#include "role_common.h"
#include "results_keys.h"
#include "stats.h"
#include "util.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

bool cuipc_role_bind(const cuipc_scenario *s, bool producer, uint32_t consumer, int device,
                     json_t *report) {
    cuipc_binding_result b;
    const char *cpus = producer ? s->binding.producer_cpus : s->binding.consumer_cpus[consumer];
    cuipc_bind_self(s->binding.policy, cpus, s->needs_gpu ? device : -1,
                    producer ? 0 : consumer + 1, &b);
    json_object_set_new(report, CUIPC_RK_BINDING,
                        json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:s}", "how", b.how, "requested",
                                  b.requested, "cpuset", b.cpuset, "nodeset", b.nodeset,
                                  "cpu_bound", b.cpu_bound, "mem_bound", b.mem_bound, "warnings",
                                  b.warnings));
    /* CPUs the scenario names are what it measures: running elsewhere would measure something
     * else. Memory binding stays a warning (one NUMA node, or refused in containers). */
    if (s->binding.policy != CUIPC_BIND_EXPLICIT || b.cpu_bound)
        return true;
    char why[700];
    snprintf(why, sizeof why, "explicit CPU binding to '%s' not applied: %s", cpus,
             b.warnings[0] ? b.warnings : "refused");
    json_object_set_new(report, CUIPC_RK_ERROR, json_string(why));
    return false;
}

static bool gpu_sample(void *ctx, double *used, bool *have_used, double *process,
                       bool *have_process, double *allocated, bool *have_allocated) {
    cuipc_gpu_probe_ctx *g = ctx;
    cuipc_gpu_info info;
    if (cuipc_gpu_info_get(g->device, &info) == CUIPC_OK) {
        *used = (double)(info.total_bytes - info.free_bytes);
        *have_used = true;
        if (g->pci_bus_id[0] == '\0')
            snprintf(g->pci_bus_id, sizeof g->pci_bus_id, "%s", info.pci_bus_id);
    }
    *have_process = cuipc_nvml_process_bytes(g->pci_bus_id, g->pid, process);
    uint64_t mine = 0;
    *have_allocated = cuipc_gpu_allocated_bytes(g->device, &mine) == CUIPC_OK;
    *allocated = (double)mine;
    return *have_used || *have_process || *have_allocated;
}

static bool cache_sample(void *ctx, double *host_copy_cache, double *pool_reserved,
                         double *pool_used) {
    const cuipc_gpu_probe_ctx *g = ctx;
    uint64_t reserved = 0, used = 0;
    *host_copy_cache = (double)cuipc_host_copy_cache_bytes();
    if (g == NULL || g->device < 0 ||
        cuipc_gpu_copy_pool_usage(g->device, &reserved, &used) != CUIPC_OK)
        return false;
    *pool_reserved = (double)reserved;
    *pool_used = (double)used;
    return true;
}

bool cuipc_role_sampler_start(const cuipc_scenario *s, int device, cuipc_gpu_probe_ctx *gctx,
                              cuipc_leak_sampler *ls) {
    memset(ls, 0, sizeof *ls);
    memset(gctx, 0, sizeof *gctx);
    gctx->device = device;
    gctx->pid = (int)getpid();
    gctx->mps_known = device >= 0 && cuipc_gpu_mps_client(device, &gctx->mps_client) == CUIPC_OK;
    if (!s->leak.enabled)
        return true;
    bool on[CUIPC_LEAK_METRICS] = {false};
    on[CUIPC_LEAK_RSS] = on[CUIPC_LEAK_FDS] = on[CUIPC_LEAK_SHM] = true;
    on[CUIPC_LEAK_GPU_USED] = on[CUIPC_LEAK_GPU_PROCESS] = on[CUIPC_LEAK_GPU_ALLOCATED] =
        device >= 0;
    on[CUIPC_LEAK_COPY_POOL_USED] = on[CUIPC_LEAK_COPY_POOL_RESERVED] = device >= 0;
    on[CUIPC_LEAK_GPU_PROCESS_LESS_CACHE] = on[CUIPC_LEAK_GPU_ALLOCATED_LESS_CACHE] = device >= 0;
    on[CUIPC_LEAK_HOST_COPY_CACHE] = true;
    if (!cuipc_leak_sampler_init(ls, 4096, s->leak.interval_ms, on, device >= 0 ? gpu_sample : NULL,
                                 gctx))
        return false;
    cuipc_leak_sampler_set_caches(ls, cache_sample);
    return true;
}

cuipc_status cuipc_role_warm_checksum(int device, cuipc_stream stream) {
    void *buf = NULL;
    uint64_t sum = 0;
    cuipc_status st = cuipc_gpu_malloc(device, 4096, &buf);
    if (st != CUIPC_OK)
        return st;
    st = cuipc_gpu_fill_pattern(buf, 4096, 1, stream);
    if (st == CUIPC_OK)
        st = cuipc_gpu_checksum(buf, 4096, stream, &sum);
    cuipc_status_ignore(cuipc_gpu_free(buf)); /* the probe's own result is what counts */
    return st;
}

json_t *cuipc_role_mps_json(const cuipc_gpu_probe_ctx *gctx) {
    return gctx->device >= 0 ? json_boolean(gctx->mps_known && gctx->mps_client) : json_null();
}

/* Which GPU series decides a role's verdict. The device-wide used memory moves with every
 * process on the GPU (the other roles' pools and copy-out buffers, the driver's own): a
 * process's growth is judged on its own bytes. Those are the driver's per-process figure
 * (NVML) where it has one; under MPS the clients' memory is the MPS server's, so the process's
 * own count of what it holds through cuipc is judged and the others are only shown. The
 * copy-out pools keep freed memory as a cache (bounded by their release threshold): an own
 * figure is judged less that cache where the pools could be read, the pools themselves by
 * their used bytes, and their reserve and the host copy cache are only shown. */
static bool gpu_series_judged(cuipc_leak_metric m, const cuipc_leak_verdict *v, bool mps) {
    switch (m) {
    case CUIPC_LEAK_COPY_POOL_RESERVED:
    case CUIPC_LEAK_HOST_COPY_CACHE:
        return false;
    case CUIPC_LEAK_GPU_USED:
        return !mps && !v[CUIPC_LEAK_GPU_PROCESS].have;
    case CUIPC_LEAK_GPU_PROCESS:
        return !mps && !v[CUIPC_LEAK_GPU_PROCESS_LESS_CACHE].have;
    case CUIPC_LEAK_GPU_PROCESS_LESS_CACHE:
        return !mps;
    case CUIPC_LEAK_GPU_ALLOCATED:
        return mps && !v[CUIPC_LEAK_GPU_ALLOCATED_LESS_CACHE].have;
    case CUIPC_LEAK_GPU_ALLOCATED_LESS_CACHE:
        return mps;
    default:
        return true;
    }
}

json_t *cuipc_role_leak_json(const cuipc_scenario *s, const cuipc_leak_sampler *ls) {
    json_t *arr = json_array();
    if (!s->leak.enabled || ls->t == NULL)
        return arr;
    const double tol[CUIPC_LEAK_METRICS] = {
        [CUIPC_LEAK_RSS] = (double)s->leak.tolerance_rss_bytes,
        [CUIPC_LEAK_FDS] = (double)s->leak.tolerance_fds,
        [CUIPC_LEAK_SHM] = (double)s->leak.tolerance_shm_bytes,
        [CUIPC_LEAK_GPU_USED] = (double)s->leak.tolerance_gpu_bytes,
        [CUIPC_LEAK_GPU_PROCESS] = (double)s->leak.tolerance_gpu_bytes,
        [CUIPC_LEAK_GPU_ALLOCATED] = (double)s->leak.tolerance_gpu_bytes,
        [CUIPC_LEAK_COPY_POOL_USED] = (double)s->leak.tolerance_gpu_bytes,
        [CUIPC_LEAK_COPY_POOL_RESERVED] = (double)s->leak.tolerance_gpu_bytes,
        [CUIPC_LEAK_GPU_PROCESS_LESS_CACHE] = (double)s->leak.tolerance_gpu_bytes,
        [CUIPC_LEAK_HOST_COPY_CACHE] = (double)s->leak.tolerance_rss_bytes,
        [CUIPC_LEAK_GPU_ALLOCATED_LESS_CACHE] = (double)s->leak.tolerance_gpu_bytes,
    };
    cuipc_leak_verdict v[CUIPC_LEAK_METRICS];
    for (int m = 0; m < CUIPC_LEAK_METRICS; m++)
        cuipc_leak_verdict_get(ls, (cuipc_leak_metric)m, s->leak.warmup_fraction, tol[m], &v[m]);
    const cuipc_gpu_probe_ctx *g = ls->gpu_ctx;
    bool mps = g != NULL && g->mps_client;
    for (int m = 0; m < CUIPC_LEAK_METRICS; m++) {
        if (!ls->enabled[m])
            continue;
        bool judged = gpu_series_judged((cuipc_leak_metric)m, v, mps);
        json_array_append_new(
            arr, json_pack("{s:s, s:b, s:i, s:f, s:f, s:f, s:f, s:f, s:b, s:b}", CUIPC_RK_METRIC,
                           cuipc_leak_metric_name((cuipc_leak_metric)m), CUIPC_RK_MEASURED,
                           v[m].have, "samples", (json_int_t)v[m].samples, "slope_per_s",
                           v[m].slope_per_s, "growth", v[m].growth, "first", v[m].first,
                           CUIPC_RK_LAST, v[m].last, CUIPC_RK_TOLERANCE, v[m].tolerance, "judged",
                           judged, CUIPC_RK_LEAK, judged && v[m].leak));
    }
    return arr;
}

json_t *cuipc_pool_stats_json(const cuipc_pool_stats *p) {
    json_t *o = json_object();
#define U(f) json_object_set_new(o, #f, json_integer((json_int_t)p->f))
    U(size);
    U(used_bytes);
    U(high_water_bytes);
    U(largest_free);
    U(free_blocks);
    U(in_flight);
    U(held);
    U(in_flight_high_water);
    U(allocs);
    U(recycled);
    U(cancelled);
    U(full_events);
    U(full_failures);
    U(on_demand_reclaims);
    U(dead_consumer_reclaims);
    U(stale_releases);
    U(duplicate_releases);
    U(wait_ns_total);
    U(recycle_lag_ns_max);
    U(recycle_lag_ns_total);
#undef U
    json_object_set_new(o, "fragmentation", json_real(p->fragmentation));
    json_object_set_new(
        o, "recycle_lag_us_mean",
        json_real(p->recycled ? (double)p->recycle_lag_ns_total / (double)p->recycled / 1000.0
                              : 0.0));
    return o;
}

json_t *cuipc_status_json(cuipc_status st) {
    char buf[1200];
    snprintf(buf, sizeof buf, "%s: %s", cuipc_status_name(st), cuipc_last_error());
    return json_string(buf);
}

bool cuipc_role_write(const char *run_dir, const char *role, uint32_t index, json_t *obj) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s-%u.json", run_dir, role, index);
    if (json_dump_file(obj, path, JSON_COMPACT | JSON_REAL_PRECISION(10)) != 0) {
        fprintf(stderr, "cuipc-harness: %s %u cannot write %s\n", role, index, path);
        return false;
    }
    return true;
}

bool cuipc_stage_init(cuipc_stage_samples *st, size_t cap) {
    st->n = 0;
    st->cap = cap;
    st->ns = malloc(cap * sizeof *st->ns);
    if (st->ns != NULL)
        cuipc_h_touch(st->ns, cap * sizeof *st->ns); /* RSS stays flat while timing */
    return st->ns != NULL;
}

void cuipc_stage_add(cuipc_stage_samples *st, uint64_t ns) {
    if (st->n < st->cap)
        st->ns[st->n++] = ns;
}

json_t *cuipc_stage_json_free(cuipc_stage_samples *st) {
    cuipc_latency_summary l;
    cuipc_latency_summarize(st->ns, st->n, &l);
    free(st->ns);
    st->ns = NULL;
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f}", "count", (json_int_t)l.count, "mean",
                     l.mean_us, "p50", l.p50_us, "p90", l.p90_us, "p99", l.p99_us, "max", l.max_us);
}

void cuipc_count_status(json_t *obj, const char *key, cuipc_status st) {
    json_t *counts = json_object_get(obj, key);
    if (counts == NULL) {
        counts = json_object();
        json_object_set_new(obj, key, counts);
    }
    const char *name = cuipc_status_name(st);
    json_t *v = json_object_get(counts, name);
    json_object_set_new(counts, name, json_integer(v ? json_integer_value(v) + 1 : 1));
}

void cuipc_thread_sched_now(cuipc_thread_sched *t) {
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0) {
        t->voluntary = t->involuntary = t->minor_faults = -1;
        return;
    }
    t->voluntary = ru.ru_nvcsw;
    t->involuntary = ru.ru_nivcsw;
    t->minor_faults = ru.ru_minflt;
}

json_t *cuipc_thread_sched_json(const cuipc_thread_sched *since) {
    cuipc_thread_sched now;
    cuipc_thread_sched_now(&now);
    if (now.voluntary < 0 || since->voluntary < 0)
        return json_null();
    return json_pack("{s:I, s:I, s:I, s:i}", CUIPC_RK_VOLUNTARY_SWITCHES,
                     (json_int_t)(now.voluntary - since->voluntary), CUIPC_RK_INVOLUNTARY_SWITCHES,
                     (json_int_t)(now.involuntary - since->involuntary), CUIPC_RK_MINOR_FAULTS,
                     (json_int_t)(now.minor_faults - since->minor_faults), CUIPC_RK_CPU,
                     sched_getcpu());
}
