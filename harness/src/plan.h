/* Capacity planning: replay a workload (trace or synthetic distributions) through the real pool
 * (virtual memory, no recycler thread) on a simulated clock, and find the smallest pool size that
 * meets a target. `cuipc-harness plan` is cuipc_plan_main. */
#ifndef CUIPC_HARNESS_PLAN_H
#define CUIPC_HARNESS_PLAN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cuipc/pool.h"
#include "cuipc/status.h"

/* Entry point of `cuipc-harness plan ...` (argv[0] is "plan"). Exit 0: recommendation made;
 * 1: the target cannot be met within --max (or the slot limit); 2: bad input. */
int cuipc_plan_main(int argc, char **argv);

/* ---- workload ---------------------------------------------------------------------------- */

/* One tensor: it needs a chunk of `bytes` at arrival, and consumer c releases it hold_ns[c]
 * after it was sent (plus the copy time). Requests are sorted by arrival. */
typedef struct cuipc_plan_request {
    uint64_t arrival_ns;
    uint64_t bytes;
} cuipc_plan_request;

typedef struct cuipc_plan_workload {
    char source[512];        /* the workload file, for messages and plan.json */
    uint32_t consumers;      /* 1..CUIPC_MAX_CONSUMERS */
    uint64_t n;              /* requests */
    cuipc_plan_request *req; /* n, sorted by arrival */
    uint64_t *hold_ns;       /* n * consumers: hold of request i by consumer c at [i*consumers+c] */
    double copy_bytes_per_s; /* 0: copies take no time */
    uint64_t fill_ns;  /* zero-copy produce: a buffer is written this long before it is sent */
    uint64_t messages; /* synthetic: messages generated; trace: rows */
    bool synthetic;    /* sampled from distributions (a trace is one fixed sample) */
    uint64_t seed;     /* synthetic: the seed it was sampled with */
} cuipc_plan_workload;

/* Load a workload JSON file ({"trace": ...} or a synthetic spec). Errors (CUIPC_ERR_INVALID_ARG)
 * name the file and line:column for syntax, the key path for content, file:line for trace rows. */
cuipc_status cuipc_plan_workload_load(const char *path, cuipc_plan_workload *out);
/* Same, from JSON text; base_dir resolves a relative trace path, name labels messages. */
cuipc_status cuipc_plan_workload_parse(const char *text, const char *name, const char *base_dir,
                                       cuipc_plan_workload *out);
/* The same with the synthetic workload's seed replaced by *seed (NULL: the file's); a trace
 * ignores it. Each seed is an independent sample of the workload's randomness. */
cuipc_status cuipc_plan_workload_load_seeded(const char *path, const uint64_t *seed,
                                             cuipc_plan_workload *out);
cuipc_status cuipc_plan_workload_parse_seeded(const char *text, const char *name,
                                              const char *base_dir, const uint64_t *seed,
                                              cuipc_plan_workload *out);
void cuipc_plan_workload_free(cuipc_plan_workload *w);

/* ---- replay ------------------------------------------------------------------------------ */

typedef enum cuipc_plan_policy {
    CUIPC_PLAN_FAIL = 0, /* a request that finds no room falls back (dropped from the pool) */
    CUIPC_PLAN_WAIT = 1, /* it waits FIFO for releases; later arrivals queue behind it */
} cuipc_plan_policy;

typedef struct cuipc_plan_options {
    cuipc_plan_policy policy;
    uint64_t alignment; /* pool alignment, power of two (default 256) */
    uint32_t slots;     /* sync slots: chunks in flight at most (default: the pool's) */
    cuipc_fit fit;
} cuipc_plan_options;

void cuipc_plan_options_init(cuipc_plan_options *o);

typedef struct cuipc_plan_result {
    uint64_t size;
    uint64_t served;       /* requests that got a chunk */
    uint64_t full_events;  /* requests that found no room on arrival (fail: fell back) */
    uint64_t never_fit;    /* requests larger than the pool itself (always fall back) */
    uint64_t slot_limited; /* misses while every sync slot was in flight */
    double p50_wait_us, p99_wait_us, max_wait_us, mean_wait_us; /* over served requests */
    uint64_t peak_used;
    uint32_t peak_in_flight;
    double peak_fragmentation; /* max over the run of 1 - largest_free / free */
    double replay_ms;          /* wall time of this replay */
    uint64_t pool_full_events; /* the pool's own counter (every failed attempt) */
} cuipc_plan_result;

/* Replay w through a virtual pool of `size` bytes. occupancy, if not NULL, receives one CSV row
 * "time_s,used_bytes,in_flight,fragmentation" per allocation or recycle. */
cuipc_status cuipc_plan_replay(const cuipc_plan_workload *w, const cuipc_plan_options *o,
                               uint64_t size, FILE *occupancy, cuipc_plan_result *out);

#endif
