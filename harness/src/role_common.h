/* Pieces every role process uses: pinning, the leak sampler wired to the GPU, JSON output. */
#ifndef CUIPC_HARNESS_ROLE_COMMON_H
#define CUIPC_HARNESS_ROLE_COMMON_H

#include <jansson.h>

#include "binding.h"
#include "cuipc/cuipc.h"
#include "cuipc/pattern.h"
#include "leak.h"
#include "roles.h"

typedef struct cuipc_gpu_probe_ctx {
    int device;
    int pid;
    char pci_bus_id[32];
    bool mps_client; /* this process's GPU work runs through MPS (cudaDevAttrMpsEnabled) */
    bool mps_known;  /* the driver answered that */
} cuipc_gpu_probe_ctx;

/* Pin (before any CUDA use) and set report.binding to what was obtained. false (and
 * report.error set) when an explicit CPU binding could not be applied: the role must stop. */
bool cuipc_role_bind(const cuipc_scenario *s, bool producer, uint32_t consumer, int device,
                     json_t *report);

/* Start the sampler for this role (GPU metrics when device >= 0). Fills gctx, MPS client or
 * not included, whether or not the leak check is on. */
bool cuipc_role_sampler_start(const cuipc_scenario *s, int device, cuipc_gpu_probe_ctx *gctx,
                              cuipc_leak_sampler *ls);

/* One GPU fill and checksum of a scratch buffer on stream, before the go: the first such call
 * loads their kernels (~15 ms on an H100) and makes the copy-out pool's first allocation (the
 * checksum's accumulator: the driver's first stream-ordered allocation in a process,
 * milliseconds and thousands of page faults). Otherwise the first validated messages pay them,
 * and an open-loop producer queues ms of backlog into the timed ones. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_role_warm_checksum(int device, cuipc_stream stream);

/* "mps_client" of a role's report: for a GPU role true when it runs as an MPS client (false
 * also when the driver did not say), null for a host-only role. */
json_t *cuipc_role_mps_json(const cuipc_gpu_probe_ctx *gctx);

/* The calling thread's context switches and page faults so far: a main thread taken off its CPU
 * while it spins (involuntary switches) is a run measured on a shared CPU, whatever its figures
 * say; one that faults while it sends pays the kernel in its figures. */
typedef struct cuipc_thread_sched {
    long voluntary, involuntary, minor_faults;
} cuipc_thread_sched;
void cuipc_thread_sched_now(cuipc_thread_sched *t);
/* {voluntary_switches, involuntary_switches, minor_faults} since `since`, and the CPU the thread
 * is on now. */
json_t *cuipc_thread_sched_json(const cuipc_thread_sched *since);

/* Verdicts of the role's metrics (rss, fds, gpu) as a JSON array. */
json_t *cuipc_role_leak_json(const cuipc_scenario *s, const cuipc_leak_sampler *ls);

json_t *cuipc_pool_stats_json(const cuipc_pool_stats *p);

/* "STATUS: message" of the last cuipc failure. */
json_t *cuipc_status_json(cuipc_status st);

/* Write obj to run_dir/<role>-<index>.json; returns false (and says so on stderr) on error. */
bool cuipc_role_write(const char *run_dir, const char *role, uint32_t index, json_t *obj);

/* Durations of one stage of a message's path (first `cap` samples): where latency goes. */
typedef struct cuipc_stage_samples {
    uint64_t *ns;
    size_t n, cap;
} cuipc_stage_samples;

bool cuipc_stage_init(cuipc_stage_samples *st, size_t cap);
void cuipc_stage_add(cuipc_stage_samples *st, uint64_t ns);
/* {count, mean, p50, p90, p99, max} in microseconds (sorts the samples), and frees them. */
json_t *cuipc_stage_json_free(cuipc_stage_samples *st);

/* Count of status names -> n in obj[key]. */
void cuipc_count_status(json_t *obj, const char *key, cuipc_status st);

#endif
