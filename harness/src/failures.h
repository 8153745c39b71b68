/* The failure reasons of a run, root cause first. Each reason is added with its rank and the
 * time it happened; the results list them sorted by rank, then time, then insertion order. */
#ifndef CUIPC_HARNESS_FAILURES_H
#define CUIPC_HARNESS_FAILURES_H

#include <jansson.h>

#include "supervisor.h"

typedef enum cuipc_failure_rank {
    /* A process that ended unexpectedly before the supervisor stopped anything, and what it
     * reported: the first to end comes first. */
    CUIPC_FAILURE_CAUSE = 0,
    /* The supervisor's own reason to stop the run (its timeout, processes not ready). */
    CUIPC_FAILURE_SUPERVISOR,
    /* What the measurements of the run show (lost messages, leaks, thresholds, ...). */
    CUIPC_FAILURE_VERDICT,
    /* Processes that ended once the supervisor was stopping them: consequences. */
    CUIPC_FAILURE_CONSEQUENCE,
} cuipc_failure_rank;

typedef struct cuipc_failures {
    json_t *entries; /* [rank, seconds, insertion index, text] */
} cuipc_failures;

void cuipc_failures_init(cuipc_failures *f);
__attribute__((format(printf, 4, 5))) void
cuipc_failures_add(cuipc_failures *f, cuipc_failure_rank rank, double at_s, const char *fmt, ...);
size_t cuipc_failures_count(const cuipc_failures *f);
/* The reasons as a JSON array of strings, ordered; f is emptied. */
json_t *cuipc_failures_take(cuipc_failures *f);

/* A child's failures: the error its report names (NULL: none) and an unexpected end, ranked
 * as a cause when they came before the supervisor began stopping the run
 * (out->stopped_at_s), else as consequences. */
void cuipc_failures_add_child(cuipc_failures *f, const cuipc_child_spec *spec,
                              const cuipc_child_result *r, const cuipc_supervise_outcome *out,
                              const char *report_error);

/* The supervisor's own reason to stop the run (a timeout, processes not ready); none when a
 * child's end made it stop, which that child's failure names already. */
void cuipc_failures_add_supervisor(cuipc_failures *f, const cuipc_supervise_outcome *out);

#endif
