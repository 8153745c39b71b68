/* A scenario: one runnable case, parsed strictly from JSON (see scenarios/README.md).
 * Parsing never touches CUDA: modes and dtypes are checked by name here. */
#ifndef CUIPC_HARNESS_SCENARIO_H
#define CUIPC_HARNESS_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuipc/pool.h"
#include "cuipc/status.h"
#include "cuipc/transport.h"
#include "plan.h"

#define CUIPC_SCN_NAME_MAX 64
#define CUIPC_SCN_MAX_PER_MESSAGE 64 /* tensors.per_message at most: the producer role's arrays */
#define CUIPC_SCN_MAX_DTYPES 16
#define CUIPC_SCN_CPUSET_MAX 128
/* consumers.copy_to "consumer": each consumer copies onto its own GPU (consumers.devices[i]), the
 * tensor-parallel worker's case. */
#define CUIPC_H_COPY_TO_CONSUMER (-3)
#define CUIPC_MAX_REPETITIONS 64 /* run.repetitions and run --repetitions at most */

typedef enum cuipc_size_kind {
    CUIPC_SIZES_LIST = 0,  /* cycle through explicit byte sizes */
    CUIPC_SIZES_RANGE,     /* min, min+step, ... max, then again */
    CUIPC_SIZES_UNIFORM,   /* uniform random in [min, max] */
    CUIPC_SIZES_LOGNORMAL, /* exp(N(ln median, sigma)) clamped to [min, max] */
    CUIPC_SIZES_TRACE,     /* one size per line of a text file, cycled */
} cuipc_size_kind;

typedef enum cuipc_fault_kind {
    CUIPC_FAULT_NONE = 0,
    CUIPC_FAULT_KILL_CONSUMER,     /* consumer dies by SIGKILL mid-read, holding a chunk */
    CUIPC_FAULT_KILL_PRODUCER,     /* producer dies by SIGKILL; consumers must notice */
    CUIPC_FAULT_CRASH_CONSUMER,    /* consumer dies by SIGSEGV, unexpected: the run must fail */
    CUIPC_FAULT_STALE_RELEASE,     /* consumer re-unwraps a message released long ago */
    CUIPC_FAULT_DUPLICATE_RELEASE, /* consumer releases twice and re-unwraps at once */
    CUIPC_FAULT_UNKNOWN_POOL,      /* consumer unwraps a message after the producer is gone */
    CUIPC_FAULT_COUNT_
} cuipc_fault_kind;

typedef enum cuipc_binding_policy {
    CUIPC_BIND_AUTO = 0, /* near the GPU, else a NUMA node / core by index */
    CUIPC_BIND_NONE,     /* leave the process where the OS put it */
    CUIPC_BIND_EXPLICIT, /* CPU lists given in the scenario */
} cuipc_binding_policy;

#define CUIPC_LOCATION_HOST 0
#define CUIPC_LOCATION_DEVICE 1
/* Where the producer's tensors live: its own memory, copied in by the transport, or buffers of
 * the transport's pool that it writes in place (zero-copy produce). */
#define CUIPC_SOURCE_OWN 0
#define CUIPC_SOURCE_POOL_BUFFER 1

typedef struct cuipc_scenario {
    char name[CUIPC_SCN_NAME_MAX];
    char description[512];
    char path[1024];
    cuipc_mode mode;
    bool needs_gpu; /* derived: mode or tensor location needs CUDA */

    struct {
        uint64_t gpu_bytes;
        uint64_t host_bytes;
        uint32_t slots;
        uint64_t alignment;
        cuipc_fit fit;
        cuipc_full_policy full_policy;
        int64_t full_timeout_ns;
        uint64_t ring_bytes;
    } pool;

    struct {
        cuipc_size_kind kind;
        uint64_t *sizes; /* list or trace (owned) */
        size_t n_sizes;
        uint64_t min, max, step, median;
        double sigma;
        char trace_file[1024];
        int dtypes[CUIPC_SCN_MAX_DTYPES]; /* cuipc_dtype values */
        size_t n_dtypes;
        uint32_t per_message;
        int location;           /* CUIPC_LOCATION_HOST / DEVICE */
        bool fresh_per_message; /* allocate a new tensor per message (cuda_ipc: always) */
        int source;             /* CUIPC_SOURCE_OWN / POOL_BUFFER */
        uint64_t seed;
        uint64_t max_bytes; /* derived: the largest tensor the generator can produce */
    } tensors;

    struct {
        uint32_t count;
        int32_t devices[CUIPC_MAX_CONSUMERS]; /* per consumer */
        cuipc_unwrap_kind unwrap;
        int32_t copy_to; /* CUIPC_DEVICE_HOST, CUIPC_DEVICE_SAME, CUIPC_H_COPY_TO_CONSUMER or an
                          * ordinal */
        uint64_t hold_ns;
        int64_t spin_ns;        /* recv busy-wait before sleeping; -1: the library's default */
        int64_t host_wait_ns;   /* unwrap's host spin on the ready word; -1: library default */
        uint32_t sync_every;    /* host-synchronise (and sample latency) every Nth message */
        bool release_on_stream; /* borrowed chunks acked on the consumer's stream, not the host */
        uint64_t copy_cache_bytes; /* unwrap option: the copy-out pool's release threshold */
        /* Churn: the last churn.count consumers detach after every churn.every messages and
         * attach again (a new consumer in the producer's eyes); the others stay throughout. */
        struct {
            uint32_t count; /* 0: no churn */
            uint64_t every;
        } churn;
    } consumers;

    int32_t producer_device;

    struct {
        bool mps; /* run the roles as clients of the CUDA Multi-Process Service */
    } gpu;

    struct {
        uint64_t iterations; /* 0 when duration_s is used */
        double duration_s;
        uint64_t warmup_iterations;
        bool open_loop;
        bool producer_spin; /* open loop: wait for each send time busily, not asleep */
        bool overload;      /* open loop: falling behind the schedule is what is tested */
        bool cpu_gauge;     /* open loop: each timed message tagged with both sides' CPU state */
        double rate_hz;
        double timeout_s;
        double attach_timeout_s;
        uint32_t repetitions; /* runs of the scenario, each in fresh processes (default 1) */
    } run;

    struct {
        bool enabled;
        uint32_t every; /* fill and check every Nth message (seq % every == 0) */
    } validation;

    struct {
        bool enabled;
        uint32_t interval_ms;
        double warmup_fraction;
        uint64_t tolerance_gpu_bytes;
        uint64_t tolerance_rss_bytes;
        uint64_t tolerance_shm_bytes;
        uint64_t tolerance_fds;
        bool expect_leak; /* positive control: the run passes only if a leak is flagged */
        uint64_t inject_rss_bytes_per_message;
        uint64_t inject_fds_per_message;
        uint64_t inject_held_buffers_per_message;
        bool inject_keep_copies;         /* consumers never free their copy-out buffers */
        bool inject_keep_departed_rings; /* the producer keeps every departed consumer's ring */
    } leak;

    struct {
        cuipc_binding_policy policy;
        char producer_cpus[CUIPC_SCN_CPUSET_MAX];
        char consumer_cpus[CUIPC_MAX_CONSUMERS][CUIPC_SCN_CPUSET_MAX];
    } binding;

    /* "workload": replay a planner workload. Request i is message i (one u8 tensor), sent at
     * t0 + arrival_ns; consumer c releases it hold_ns[i * consumers + c] after receiving it. */
    struct {
        char file[1024]; /* resolved path; empty when the scenario replays no workload */
        cuipc_plan_workload w;
    } workload;

    struct { /* negative: not set */
        double p50_us;
        double p99_us;
        double max_us;
        double min_gbps;
        double min_msgs_per_s;
        int64_t max_mismatches;
        int64_t max_send_failures;
    } thresholds;

    struct {
        cuipc_fault_kind kind;
        uint32_t consumer;
        uint64_t at_message;
        uint32_t stale_after; /* stale_release: messages to wait before re-unwrapping */
    } fault;
} cuipc_scenario;

/* Parse and check a scenario file. On failure returns CUIPC_ERR_INVALID_ARG (CUIPC_ERR_SYSTEM when
 * the file cannot be read) and cuipc_last_error() says "FILE:LINE:COL: $.key.path: what is wrong"
 * (line/column where the value is known); *out then holds nothing to free. */
cuipc_status cuipc_scenario_load(const char *path, cuipc_scenario *out);

/* Same from a string (file is used in messages and to resolve a trace file). */
cuipc_status cuipc_scenario_parse(const char *text, const char *file, cuipc_scenario *out);

void cuipc_scenario_free(cuipc_scenario *s);

/* The fault table's name of k (fault.c), "invalid" out of range. */
const char *cuipc_fault_kind_name(cuipc_fault_kind k);

static inline bool cuipc_scenario_replays(const cuipc_scenario *s) {
    return s->workload.file[0] != '\0';
}

/* Consumer i detaches and attaches again during the run (consumers.churn). */
static inline bool cuipc_scenario_churns(const cuipc_scenario *s, uint32_t i) {
    return s->consumers.churn.count > 0 && i >= s->consumers.count - s->consumers.churn.count;
}

/* Messages to send, or 0 for a duration run. */
static inline bool cuipc_scenario_is_duration(const cuipc_scenario *s) {
    return s->run.iterations == 0;
}

/* Byte size of tensor j of message i (deterministic; multiple of the dtype size, >= 1 element).
 * *dtype receives the cuipc_dtype. */
uint64_t cuipc_scenario_tensor_bytes(const cuipc_scenario *s, uint64_t msg, uint32_t j, int *dtype);

#endif
