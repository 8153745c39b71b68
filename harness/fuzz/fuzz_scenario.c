/* libFuzzer target for the harness scenario parser (cuipc_scenario_parse).
 *
 * Input: scenario JSON text, optionally followed by a NUL byte and the contents of the file
 * "fuzz_file.txt" that the scenario may name as its size trace (tensors.sizes.trace) or its
 * planner workload ("workload"), so mutations reach those readers too. The scenario "lives" at
 * <sandbox>/scenarios/smoke/fuzz.json; file names resolve against that, and nothing outside the
 * sandbox can be opened (fuzz_sandbox.h). Workloads that would expand into very many requests
 * are skipped (fuzz_workload_cost.h).
 *
 * Oracle beyond "no crash, no sanitizer report, no leak":
 *  - a rejected scenario returns CUIPC_ERR_INVALID_ARG with a non-empty cuipc_last_error() that
 *    starts with the file name, and a second parse fails again with the same status and message;
 *  - an accepted scenario satisfies every documented range and cross-field rule, and the size
 *    generator yields whole elements no larger than tensors.max_bytes.
 * A broken rule prints the rule and aborts. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_sandbox.h"
#include "fuzz_workload_cost.h"
#include "scenario.h"

#define SCENARIO_REL "scenarios/smoke/fuzz.json"
#define FILE_REL "scenarios/smoke/fuzz_file.txt"
#define ERR_BYTES 1024 /* libcuipc's message size */
#define GENERATED_MESSAGES 16

static char scenario_path[4096];

static const cuipc_fuzz_fixture fixtures[] = {
    {FILE_REL, ""},
    /* What scenarios/smoke/trace_sizes.json (a seed) names, so that seed parses. */
    {"scenarios/traces/vision_features.txt", "# sizes\n4718592\n9437184 # big\n\n524288\n"},
    {"scenarios/traces/bad_row.txt", "4096\nfour\n"},
    /* Small planner workloads a scenario can replay ("workload": "../workloads/..."). */
    {"scenarios/workloads/small.json",
     "{\"name\": \"small\", \"consumers\": 2, \"duration_s\": 1, \"seed\": 3,"
     " \"arrivals\": {\"kind\": \"poisson\", \"rate_per_s\": 50},"
     " \"bytes\": {\"kind\": \"lognormal\", \"median\": \"1MiB\", \"sigma\": 0.5,"
     " \"max\": \"8MiB\"}, \"hold_us\": {\"kind\": \"exponential\", \"mean\": 2000}}"},
    {"scenarios/workloads/trace.json", "{\"name\": \"tr\", \"trace\": \"trace.csv\"}"},
    {"scenarios/workloads/trace.csv", "arrival_us,bytes,hold_us\n0,4096,10;20\n7,65536,5;5\n"},
    {"scenarios/workloads/empty.json",
     "{\"name\": \"e\", \"consumers\": 1, \"duration_s\": 1e-6, \"arrivals\": {\"kind\":"
     " \"poisson\", \"rate_per_s\": 1e-6}, \"bytes\": {\"kind\": \"constant\", \"value\": 1},"
     " \"hold_us\": {\"kind\": \"constant\", \"value\": 0}}"},
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    verbose = cuipc_fuzz_verbose();
    cuipc_fuzz_sandbox_init(fixtures, sizeof fixtures / sizeof fixtures[0]);
    snprintf(scenario_path, sizeof scenario_path, "%s/%s", cuipc_fuzz_sandbox_dir(), SCENARIO_REL);
    return 0;
}

#define REQUIRE_RULE(cond, detail) cuipc_fuzz_require("fuzz_scenario", (cond), #cond, (detail))

static void check_error(const char *err) {
    size_t flen = strlen(scenario_path);
    REQUIRE_RULE(err[0] != '\0', "empty error");
    /* Every message starts with the file and says more. */
    REQUIRE_RULE(strncmp(err, scenario_path, flen) == 0, err);
    REQUIRE_RULE(strlen(err) > flen + 2, err);
}

static bool power_of_two(uint64_t v) {
    return v != 0 && (v & (v - 1)) == 0;
}

static void check_name(const char *name) {
    size_t len = strnlen(name, CUIPC_SCN_NAME_MAX);
    REQUIRE_RULE(len > 0 && len < CUIPC_SCN_NAME_MAX, name);
    for (const char *p = name; *p; p++)
        REQUIRE_RULE(*p == '_' || *p == '-' || *p == '.' || (*p >= '0' && *p <= '9') ||
                         (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'),
                     name);
}

/* A replayed workload replaces the size generator, the consumer count and the message count. */
static void check_workload(const cuipc_scenario *s) {
    const char *n = s->name;
    const cuipc_plan_workload *w = &s->workload.w;
    REQUIRE_RULE(w->n >= 1 && w->req != NULL && w->hold_ns != NULL, n);
    REQUIRE_RULE(w->consumers == s->consumers.count, n);
    REQUIRE_RULE(s->run.iterations == w->n && s->tensors.per_message == 1, n);
    REQUIRE_RULE(s->tensors.sizes == NULL, n);
    for (uint64_t i = 0; i < w->n; i++) {
        REQUIRE_RULE(w->req[i].bytes >= 1 && w->req[i].bytes <= s->tensors.max_bytes, n);
        if (i > 0)
            REQUIRE_RULE(w->req[i].arrival_ns >= w->req[i - 1].arrival_ns, n);
    }
}

static void check_sizes(const cuipc_scenario *s) {
    const char *n = s->name;
    REQUIRE_RULE(s->tensors.kind <= CUIPC_SIZES_TRACE, n);
    if (cuipc_scenario_replays(s))
        check_workload(s);
    else if (s->tensors.kind == CUIPC_SIZES_LIST || s->tensors.kind == CUIPC_SIZES_TRACE) {
        REQUIRE_RULE(s->tensors.sizes != NULL && s->tensors.n_sizes > 0, n);
        for (size_t i = 0; i < s->tensors.n_sizes; i++)
            REQUIRE_RULE(s->tensors.sizes[i] >= 1 && s->tensors.sizes[i] <= s->tensors.max_bytes,
                         n);
        if (s->tensors.kind == CUIPC_SIZES_TRACE)
            REQUIRE_RULE(s->tensors.trace_file[0] == '/', s->tensors.trace_file);
    } else {
        REQUIRE_RULE(s->tensors.sizes == NULL, n);
        REQUIRE_RULE(s->tensors.min >= 1 && s->tensors.min <= s->tensors.max, n);
        REQUIRE_RULE(s->tensors.max <= s->tensors.max_bytes, n);
        if (s->tensors.kind == CUIPC_SIZES_RANGE)
            REQUIRE_RULE(s->tensors.step >= 1, n);
        if (s->tensors.kind == CUIPC_SIZES_LOGNORMAL)
            REQUIRE_RULE(s->tensors.median >= 1 && s->tensors.sigma >= 0 && s->tensors.sigma <= 10,
                         n);
    }
    REQUIRE_RULE(s->tensors.n_dtypes >= 1 && s->tensors.n_dtypes <= CUIPC_SCN_MAX_DTYPES, n);
    for (size_t i = 0; i < s->tensors.n_dtypes; i++)
        REQUIRE_RULE(cuipc_dtype_size(s->tensors.dtypes[i]) > 0, n);
    REQUIRE_RULE(s->tensors.per_message >= 1 && s->tensors.per_message <= 64, n);
    REQUIRE_RULE(s->tensors.max_bytes > 0, n);
    REQUIRE_RULE(s->tensors.location == CUIPC_LOCATION_HOST ||
                     s->tensors.location == CUIPC_LOCATION_DEVICE,
                 n);
    /* The generator: deterministic, whole elements, never above the derived maximum. */
    for (uint64_t m = 0; m < GENERATED_MESSAGES; m++) {
        for (uint32_t j = 0; j < s->tensors.per_message; j++) {
            int dt = 0, dt2 = 0;
            uint64_t b = cuipc_scenario_tensor_bytes(s, m, j, &dt);
            REQUIRE_RULE(b == cuipc_scenario_tensor_bytes(s, m, j, &dt2) && dt == dt2, n);
            REQUIRE_RULE(cuipc_dtype_size(dt) > 0, n);
            REQUIRE_RULE(b >= 1 && b % cuipc_dtype_size(dt) == 0, n);
            REQUIRE_RULE(b <= s->tensors.max_bytes, n);
        }
    }
}

static uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) / a * a;
}

static void check_pool(const cuipc_scenario *s) {
    const char *n = s->name;
    REQUIRE_RULE(power_of_two(s->pool.alignment), n);
    REQUIRE_RULE(s->pool.slots >= 1 && s->pool.slots <= (1u << 20), n);
    REQUIRE_RULE(s->pool.ring_bytes >= 4096, n);
    REQUIRE_RULE(s->pool.full_timeout_ns >= 0, n);
    uint64_t one = align_up(s->tensors.max_bytes, s->pool.alignment);
    /* The arena the mode uses must hold one whole message of the largest tensors. */
    if (s->mode == CUIPC_MODE_DEFAULT || s->pool.full_policy == CUIPC_FULL_FALLBACK)
        REQUIRE_RULE(s->pool.host_bytes / s->tensors.per_message >= one, n);
    if (s->mode == CUIPC_MODE_CUDA_IPC_POOL)
        REQUIRE_RULE(s->pool.gpu_bytes / s->tensors.per_message >= one, n);
    if (s->pool.full_policy == CUIPC_FULL_FALLBACK)
        REQUIRE_RULE(s->mode == CUIPC_MODE_CUDA_IPC_POOL, n);
}

static void check_consumers_and_run(const cuipc_scenario *s) {
    const char *n = s->name;
    REQUIRE_RULE(s->consumers.count >= 1 && s->consumers.count <= CUIPC_MAX_CONSUMERS, n);
    for (uint32_t i = 0; i < s->consumers.count; i++)
        REQUIRE_RULE(s->consumers.devices[i] >= 0 && s->consumers.devices[i] <= 1023, n);
    REQUIRE_RULE(s->producer_device >= 0 && s->producer_device <= 1023, n);
    REQUIRE_RULE(s->consumers.copy_to == CUIPC_DEVICE_HOST ||
                     s->consumers.copy_to == CUIPC_DEVICE_SAME ||
                     s->consumers.copy_to == CUIPC_H_COPY_TO_CONSUMER ||
                     (s->consumers.copy_to >= 0 && s->consumers.copy_to < 1024),
                 n);
    if (s->consumers.unwrap != CUIPC_UNWRAP_COPY)
        REQUIRE_RULE(s->consumers.copy_to == CUIPC_DEVICE_SAME, n);
    /* Exactly one of iterations and duration. */
    REQUIRE_RULE((s->run.iterations == 0) == (s->run.duration_s > 0), n);
    if (s->run.iterations != 0)
        REQUIRE_RULE(s->run.warmup_iterations < s->run.iterations, n);
    REQUIRE_RULE(isfinite(s->run.timeout_s) && s->run.timeout_s > 0, n);
    REQUIRE_RULE(s->run.attach_timeout_s >= 0.1 && s->run.attach_timeout_s <= 600, n);
    REQUIRE_RULE(s->run.open_loop == (s->run.rate_hz > 0), n);
    REQUIRE_RULE(s->leak.interval_ms >= 1 && s->leak.interval_ms <= 10000, n);
    REQUIRE_RULE(s->leak.warmup_fraction >= 0 && s->leak.warmup_fraction <= 0.9, n);
    REQUIRE_RULE(!(s->leak.expect_leak && s->fault.kind == CUIPC_FAULT_KILL_PRODUCER), n);
    REQUIRE_RULE((unsigned)s->fault.kind < CUIPC_FAULT_COUNT_, n);
    if (s->fault.kind != CUIPC_FAULT_NONE) {
        REQUIRE_RULE(s->fault.consumer < s->consumers.count, n);
        REQUIRE_RULE(s->run.iterations == 0 || s->fault.at_message < s->run.iterations, n);
        REQUIRE_RULE(s->fault.stale_after >= 1, n);
    }
    if (s->binding.policy == CUIPC_BIND_EXPLICIT)
        REQUIRE_RULE(s->binding.producer_cpus[0] != '\0', n);
    else
        REQUIRE_RULE(s->binding.producer_cpus[0] == '\0', n);
}

static void check_scenario(const cuipc_scenario *s) {
    check_name(s->name);
    REQUIRE_RULE(strcmp(s->path, scenario_path) == 0, s->path);
    if (!cuipc_scenario_replays(s))
        REQUIRE_RULE(s->workload.w.req == NULL, s->name);
    REQUIRE_RULE((unsigned)s->mode <= CUIPC_MODE_CUDA_IPC_POOL, s->name);
    if (s->mode != CUIPC_MODE_DEFAULT)
        REQUIRE_RULE(s->tensors.location == CUIPC_LOCATION_DEVICE, s->name);
    REQUIRE_RULE(s->needs_gpu == (s->mode != CUIPC_MODE_DEFAULT ||
                                  s->tensors.location == CUIPC_LOCATION_DEVICE ||
                                  s->consumers.copy_to >= 0 ||
                                  s->consumers.copy_to == CUIPC_H_COPY_TO_CONSUMER),
                 s->name);
    check_sizes(s);
    check_pool(s);
    check_consumers_and_run(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Split at the first NUL: scenario text, then the trace file's contents. */
    const uint8_t *nul = memchr(data, '\0', size);
    size_t text_len = nul ? (size_t)(nul - data) : size;
    size_t file_len = nul ? size - text_len - 1 : 0;
    char *text = malloc(text_len + 1), *file = malloc(file_len + 1);
    if (text == NULL || file == NULL)
        abort();
    memcpy(text, data, text_len);
    text[text_len] = '\0';
    memcpy(file, data + size - file_len, file_len);
    file[file_len] = '\0';
    if (cuipc_fuzz_workload_too_costly(file)) {
        free(text);
        free(file);
        return -1; /* keep it out of the corpus */
    }
    cuipc_fuzz_sandbox_write(FILE_REL, file, file_len);

    char *err = malloc(ERR_BYTES);
    if (err == NULL)
        abort();
    cuipc_scenario *s = malloc(sizeof *s);
    if (s == NULL)
        abort();

    cuipc_fuzz_sandbox_enter();
    cuipc_status st = cuipc_scenario_parse(text, scenario_path, s);
    cuipc_fuzz_sandbox_leave();
    bool ok = st == CUIPC_OK;
    snprintf(err, ERR_BYTES, "%s", ok ? "" : cuipc_last_error());
    if (verbose)
        fprintf(stderr, "fuzz_scenario: %s %s\n",
                ok ? "accepted" : "rejected:", ok ? s->name : err);
    if (ok) {
        check_scenario(s);
    } else {
        REQUIRE_RULE(st == CUIPC_ERR_INVALID_ARG, err);
        check_error(err);
        REQUIRE_RULE(s->tensors.sizes == NULL && s->workload.w.req == NULL &&
                         s->workload.w.hold_ns == NULL,
                     "a rejected scenario keeps no allocation");
        /* Same input: fails again, with the same status and message. */
        cuipc_fuzz_sandbox_enter();
        cuipc_status again = cuipc_scenario_parse(text, scenario_path, s);
        cuipc_fuzz_sandbox_leave();
        REQUIRE_RULE(again == st, err);
        REQUIRE_RULE(strcmp(cuipc_last_error(), err) == 0, err);
    }
    cuipc_scenario_free(s);
    cuipc_scenario_free(s); /* idempotent: callers free on every path */
    free(s);
    free(err);
    free(text);
    free(file);
    return 0;
}
