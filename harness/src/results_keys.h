/* The keys of a results file (results/schema.json), named once: run writes them; the summary,
 * compare, repetitions and pooling read them. Results files written before carry the same keys,
 * so none is ever renamed here: a renamed key would leave every baseline unreadable. */
#ifndef CUIPC_HARNESS_RESULTS_KEYS_H
#define CUIPC_HARNESS_RESULTS_KEYS_H

#include <jansson.h>
#include <stdbool.h>
#include <string.h>

/* Top level. */
#define CUIPC_RK_SCHEMA_VERSION "schema_version"
#define CUIPC_RK_SCENARIO "scenario" /* {name, loop, ...}: what ran */
#define CUIPC_RK_SCENARIO_SHA256 "scenario_sha256"
#define CUIPC_RK_STARTED_AT "started_at"
#define CUIPC_RK_ENVIRONMENT "environment" /* {hostname, gpu, mps, ...} */
#define CUIPC_RK_STATUS "status"           /* CUIPC_RESULT_PASSED, _FAILED, _SKIPPED */
#define CUIPC_RK_REASON "reason"           /* the first failure, or why it was skipped */
#define CUIPC_RK_FAILURES "failures"       /* every failure, root cause first */
#define CUIPC_RK_LATENCY "latency_us"      /* the consumers' samples together */
#define CUIPC_RK_THROUGHPUT "throughput"   /* {aggregate, per_consumer} */
#define CUIPC_RK_REPETITIONS "repetitions" /* a repeated run: {count, runs, median, ...} */
#define CUIPC_RK_SUPERVISOR "supervisor"   /* {wall_s, ...} */
#define CUIPC_RK_LEAKS "leaks"             /* {verdict, expected, ...} */

/* In scenario. */
#define CUIPC_RK_NAME "name"
#define CUIPC_RK_LOOP "loop" /* "open" or "closed" */

/* In environment: the host, its GPUs ({devices: [{name}], driver_version, count}) and MPS
 * ({enabled}; absent in files from before MPS: ran without it). */
#define CUIPC_RK_HOSTNAME "hostname"
#define CUIPC_RK_GPU "gpu"
#define CUIPC_RK_DEVICES "devices"
#define CUIPC_RK_UUID "uuid" /* a device's, as nvidia-smi -L names it */
#define CUIPC_RK_DRIVER_VERSION "driver_version"
#define CUIPC_RK_MPS "mps"
#define CUIPC_RK_ENABLED "enabled"

/* In latency_us (and each consumer's). */
#define CUIPC_RK_COUNT "count" /* messages timed; 0: the figures measured nothing */
#define CUIPC_RK_MIN "min"
#define CUIPC_RK_P50 "p50"
#define CUIPC_RK_P99 "p99"

/* In throughput. */
#define CUIPC_RK_AGGREGATE "aggregate" /* {gbps, msgs_per_s, ...} */
#define CUIPC_RK_GBPS "gbps"
#define CUIPC_RK_MSGS_PER_S "msgs_per_s"

/* In repetitions (count as in latency_us); each run is one repetition's figures, keyed by the
 * metric names below. */
#define CUIPC_RK_RUNS "runs"
#define CUIPC_RK_REPRESENTATIVE "representative"
#define CUIPC_RK_REPETITION "repetition"
#define CUIPC_RK_LATENCY_COUNT "latency_count"

/* In leaks: what the check found (CUIPC_LEAK_*, "not_checked", "not_measured") and what the
 * scenario expected; metrics, one verdict per role and metric, as each role reports them. */
#define CUIPC_RK_VERDICT "verdict"
#define CUIPC_RK_EXPECTED "expected"
#define CUIPC_RK_METRIC "metric"
#define CUIPC_RK_MEASURED "measured" /* enough samples to judge it */
#define CUIPC_RK_LEAK "leak"         /* true: it grew beyond tolerance */
#define CUIPC_RK_LAST "last"
#define CUIPC_RK_TOLERANCE "tolerance"
#define CUIPC_LEAK_CLEAN "clean"
#define CUIPC_LEAK_LEAK "leak"

/* roles: each process's end and its own report ({role, ...}). */
#define CUIPC_RK_ROLES "roles"
#define CUIPC_RK_REPORT "report"
#define CUIPC_RK_ROLE "role"
/* roles[].report.main_thread: the role's main thread over its messages */
#define CUIPC_RK_MAIN_THREAD "main_thread"
#define CUIPC_RK_VOLUNTARY_SWITCHES "voluntary_switches"
#define CUIPC_RK_INVOLUNTARY_SWITCHES "involuntary_switches"
#define CUIPC_RK_MINOR_FAULTS "minor_faults"
#define CUIPC_RK_CPU "cpu"
#define CUIPC_RK_INDEX "index" /* of the role ("producer": 0; consumers from 0) */

/* Role reports (roles[].report, as each process wrote it): what merge reads of them. Pool stats
 * (stats.gpu_pool, stats.host_pool) are keyed by cuipc_pool_stats' field names. */
#define CUIPC_RK_ERROR "error" /* what stopped the role (also environment.gpu.error) */
#define CUIPC_RK_BINDING "binding"
#define CUIPC_RK_MPS_CLIENT "mps_client"
#define CUIPC_RK_MESSAGES "messages" /* also in throughput */
#define CUIPC_RK_BYTES "bytes"
#define CUIPC_RK_SECONDS "seconds"
#define CUIPC_RK_STEADY "steady" /* {messages, bytes, seconds} after the warm-up */
#define CUIPC_RK_MISMATCHES "mismatches"
#define CUIPC_RK_REJECTED "rejected"
#define CUIPC_RK_WORST "worst_us" /* the slowest messages: [{seq, us}] */
#define CUIPC_RK_PRODUCER_DEAD_DETECTED "producer_dead_detected"
#define CUIPC_RK_ATTACHES "attaches"
#define CUIPC_RK_MESSAGES_SENT "messages_sent"
#define CUIPC_RK_SEND_FAILED "send_failed"
#define CUIPC_RK_DRAIN_STATUS "drain_status"
#define CUIPC_RK_STATS "stats" /* the transport's own */
#define CUIPC_RK_GPU_POOL "gpu_pool"
#define CUIPC_RK_HOST_POOL "host_pool"
#define CUIPC_RK_IN_FLIGHT "in_flight"
#define CUIPC_RK_HELD "held"
#define CUIPC_RK_DEAD_CONSUMER_RECLAIMS "dead_consumer_reclaims"
#define CUIPC_RK_CONSUMERS_ATTACHED "consumers_attached"
#define CUIPC_RK_CONSUMERS_DETACHED "consumers_detached"
#define CUIPC_RK_CONSUMERS_DIED "consumers_died"
#define CUIPC_RK_IPC_RETAINED_BYTES "ipc_retained_bytes"
#define CUIPC_RK_FAULT_SEND_STATUS "fault_send_status" /* the fault's message went out: how */
#define CUIPC_RK_FAULT_RESENT "fault_resent"           /* ... and was sent */
#define CUIPC_RK_OCCUPANCY "occupancy"
#define CUIPC_RK_SCHEDULE "schedule"
#define CUIPC_RK_SEND_US "send_us"     /* the producer's send calls */
#define CUIPC_RK_STAGES_US "stages_us" /* a consumer's: {deliver, unwrap, ready} */
#define CUIPC_RK_STAGE_UNWRAP "unwrap" /* in stages_us: the unwrap call */

/* In supervisor. */
#define CUIPC_RK_WALL_S "wall_s"

/* The headline metrics, by the names thresholds and repetitions give them. */
#define CUIPC_RK_METRIC_P50 "latency_p50_us"
#define CUIPC_RK_METRIC_P99 "latency_p99_us"
#define CUIPC_RK_METRIC_MIN "latency_min_us"
#define CUIPC_RK_METRIC_MAX "latency_max_us"
#define CUIPC_RK_METRIC_GBPS "throughput_gbps"
#define CUIPC_RK_METRIC_MSGS_PER_S "throughput_msgs_per_s"
#define CUIPC_RK_METRIC_SEND_P50 "send_p50_us"     /* the producer's send, p50 */
#define CUIPC_RK_METRIC_UNWRAP_P50 "unwrap_p50_us" /* the consumers' unwrap, p50 */
/* A consumer's back-to-back CPU-gauge walk (run.cpu_gauge): its L2-resident reference. */
#define CUIPC_RK_RESIDENT_WALK_NS "cpu_gauge_resident_ns"

/* The values of status. */
#define CUIPC_RESULT_PASSED "passed"
#define CUIPC_RESULT_FAILED "failed"
#define CUIPC_RESULT_SKIPPED "skipped"

/* scenario.name; NULL when absent. */
static inline const char *cuipc_results_name(const json_t *res) {
    return json_string_value(
        json_object_get(json_object_get(res, CUIPC_RK_SCENARIO), CUIPC_RK_NAME));
}

/* status; NULL when absent. */
static inline const char *cuipc_results_status(const json_t *res) {
    return json_string_value(json_object_get(res, CUIPC_RK_STATUS));
}

/* The result's status is this one (CUIPC_RESULT_*). */
static inline bool cuipc_results_status_is(const json_t *res, const char *status) {
    const char *st = cuipc_results_status(res);
    return st != NULL && strcmp(st, status) == 0;
}

/* reason; NULL when absent. */
static inline const char *cuipc_results_reason(const json_t *res) {
    return json_string_value(json_object_get(res, CUIPC_RK_REASON));
}

/* status, and reason where there is one (NULL: none set). */
static inline void cuipc_results_set_status(json_t *res, const char *status, const char *reason) {
    json_object_set_new(res, CUIPC_RK_STATUS, json_string(status));
    if (reason != NULL)
        json_object_set_new(res, CUIPC_RK_REASON, json_string(reason));
}

static inline const json_t *cuipc_results_latency(const json_t *res) {
    return json_object_get(res, CUIPC_RK_LATENCY);
}

/* The throughput of all consumers together. */
static inline const json_t *cuipc_results_aggregate(const json_t *res) {
    return json_object_get(json_object_get(res, CUIPC_RK_THROUGHPUT), CUIPC_RK_AGGREGATE);
}

/* Messages were timed: a skipped or crashed run's latency figures measured nothing. */
static inline bool cuipc_results_latency_measured(const json_t *res) {
    const json_t *count = json_object_get(cuipc_results_latency(res), CUIPC_RK_COUNT);
    return json_is_integer(count) && json_integer_value(count) > 0;
}

static inline const json_t *cuipc_results_environment(const json_t *res) {
    return json_object_get(res, CUIPC_RK_ENVIRONMENT);
}

/* environment.mps; NULL when absent. */
static inline json_t *cuipc_results_mps(const json_t *res) {
    return json_object_get(cuipc_results_environment(res), CUIPC_RK_MPS);
}

#endif
