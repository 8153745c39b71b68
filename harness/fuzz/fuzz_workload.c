/* libFuzzer target for the planner's workload parser (cuipc_plan_workload_parse).
 *
 * Input: workload JSON text, optionally followed by a NUL byte and the contents of the CSV trace
 * "fuzz_trace.csv" that a trace workload may name. The workload "lives" at
 * <sandbox>/scenarios/workloads/fuzz.json; nothing outside the sandbox can be opened.
 *
 * Oracle beyond "no crash, no sanitizer report, no leak":
 *  - a rejected workload returns an error status with a non-empty cuipc_last_error() and holds
 *    no allocation;
 *  - an accepted one has 1..CUIPC_MAX_CONSUMERS consumers, requests sorted by arrival, every
 *    request at least one byte, and its arrays allocated.
 *
 * Synthetic workloads expand to up to 20 million requests by design; to keep executions fast,
 * those asking for many samples are skipped before parsing (fuzz_workload_cost.h). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuipc/status.h"
#include "fuzz_sandbox.h"
#include "fuzz_workload_cost.h"
#include "plan.h"

#define WORKLOAD_DIR_REL "scenarios/workloads"
#define TRACE_REL WORKLOAD_DIR_REL "/fuzz_trace.csv"
#define PARSER_MAX_REQUESTS 20e6 /* MAX_REQUESTS in plan_workload.c */

static char workload_path[4096], workload_dir[4096];

static const cuipc_fuzz_fixture fixtures[] = {
    {TRACE_REL, ""},
    /* What scenarios/workloads/vision_trace.json (a seed) names, so that seed parses. */
    {WORKLOAD_DIR_REL "/vision_trace.csv",
     "# arrival_us,bytes,hold_us;hold_us\narrival_us,bytes,hold_us\n"
     "60000.0,18874368,22314.8;33148.5\n66078.7,1679616,15156.8;19247.8\n"},
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    verbose = cuipc_fuzz_verbose();
    cuipc_fuzz_sandbox_init(fixtures, sizeof fixtures / sizeof fixtures[0]);
    snprintf(workload_dir, sizeof workload_dir, "%s/%s", cuipc_fuzz_sandbox_dir(),
             WORKLOAD_DIR_REL);
    snprintf(workload_path, sizeof workload_path, "%s/fuzz.json", workload_dir);
    return 0;
}

#define REQUIRE_RULE(cond, detail) cuipc_fuzz_require("fuzz_workload", (cond), #cond, (detail))

static void check_workload(const cuipc_plan_workload *w) {
    const char *n = w->source;
    REQUIRE_RULE(strcmp(w->source, workload_path) == 0, n);
    REQUIRE_RULE(w->consumers >= 1 && w->consumers <= CUIPC_MAX_CONSUMERS, n);
    REQUIRE_RULE(w->req != NULL && w->hold_ns != NULL, n);
    REQUIRE_RULE(w->n <= (uint64_t)PARSER_MAX_REQUESTS, n);
    REQUIRE_RULE(w->messages <= w->n || w->n == 0, n);
    REQUIRE_RULE(isfinite(w->copy_bytes_per_s) && w->copy_bytes_per_s >= 0, n);
    for (uint64_t i = 0; i < w->n; i++) {
        REQUIRE_RULE(w->req[i].bytes >= 1, n);
        if (i > 0)
            REQUIRE_RULE(w->req[i].arrival_ns >= w->req[i - 1].arrival_ns, n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Split at the first NUL: workload text, then the CSV trace's contents. */
    const uint8_t *nul = memchr(data, '\0', size);
    size_t text_len = nul ? (size_t)(nul - data) : size;
    char *text = malloc(text_len + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, text_len);
    text[text_len] = '\0';
    if (cuipc_fuzz_workload_too_costly(text)) {
        free(text);
        return -1; /* keep it out of the corpus */
    }
    if (nul)
        cuipc_fuzz_sandbox_write(TRACE_REL, nul + 1, size - text_len - 1);
    else
        cuipc_fuzz_sandbox_write(TRACE_REL, "", 0);

    cuipc_plan_workload *w = malloc(sizeof *w);
    if (w == NULL)
        abort();
    cuipc_clear_error();
    cuipc_fuzz_sandbox_enter();
    cuipc_status s = cuipc_plan_workload_parse(text, workload_path, workload_dir, w);
    cuipc_fuzz_sandbox_leave();
    if (verbose)
        fprintf(stderr, "fuzz_workload: %s %s\n",
                s == CUIPC_OK ? "accepted" : "rejected:", s == CUIPC_OK ? "" : cuipc_last_error());
    if (s == CUIPC_OK) {
        check_workload(w);
    } else {
        const char *msg = cuipc_last_error();
        REQUIRE_RULE(s == CUIPC_ERR_INVALID_ARG || s == CUIPC_ERR_SYSTEM, msg);
        REQUIRE_RULE(msg[0] != '\0' && strstr(msg, ": ") != NULL, msg);
        REQUIRE_RULE(w->req == NULL && w->hold_ns == NULL, "a rejected workload keeps memory");
    }
    cuipc_plan_workload_free(w);
    cuipc_plan_workload_free(w); /* idempotent */
    free(w);
    free(text);
    return 0;
}
