/* The content hash of a scenario, stored in its results as scenario_sha256 so compare can tell
 * two runs of different scenario contents (a changed hold_us, rate, size) apart. */
#ifndef CUIPC_HARNESS_SCENARIO_HASH_H
#define CUIPC_HARNESS_SCENARIO_HASH_H

#include <stdbool.h>

#include "scenario.h"

/* SHA-256 of the scenario file's canonical JSON (keys sorted, compact), without what does not
 * change a run's measurement ("description", "comment", "run.repetitions"), and with the canonical
 * JSON of the workload file it replays, if any, under "workload_content". false if a file cannot be
 * read again (hex is then empty). */
bool cuipc_scenario_sha256(const cuipc_scenario *s, char hex[65]);

#endif
