/* compare: results measured under MPS and without it are different deployments (a GPU context
 * switch per hand-off, or none), not a change of the code: they are not compared. */
#include <stdio.h>
#include <string.h>

#include "results.h"
#include "results_keys.h"

/* Whether a results file ran under MPS: environment.mps.enabled; files from before MPS
 * existed in the results say nothing, and ran without it. */
static bool ran_under_mps(const json_t *res) {
    return json_is_true(json_object_get(cuipc_results_mps(res), CUIPC_RK_ENABLED));
}

bool cuipc_compare_mps_differs(const json_t *base, const json_t *cur, char *why, size_t cap) {
    bool b = ran_under_mps(base), c = ran_under_mps(cur);
    if (b == c)
        return false;
    snprintf(why, cap,
             "not compared: the base ran %s MPS and the new run %s it (environment.mps.enabled); "
             "compare runs made the same way",
             b ? "under" : "without", c ? "under" : "without");
    return true;
}
