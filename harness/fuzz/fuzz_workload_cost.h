/* How much work a planner workload text asks the parser for, so fuzzers can skip the valid but
 * expensive ones (a synthetic workload legitimately expands to up to 20 million requests). */
#ifndef CUIPC_HARNESS_FUZZ_WORKLOAD_COST_H
#define CUIPC_HARNESS_FUZZ_WORKLOAD_COST_H

#include <stdbool.h>

/* True for a synthetic workload that would draw more than 1e5 samples (sizes plus holds) yet
 * stay within the parser's own request limit, whose refusal is cheap and worth exercising.
 * Anything that is not such a workload (bad JSON, a trace workload) is not costly. */
bool cuipc_fuzz_workload_too_costly(const char *text);

#endif
