/* Estimate of the samples a synthetic planner workload draws while it is parsed. */
#include "fuzz_workload_cost.h"

#include <jansson.h>

#define FUZZ_MAX_SAMPLES 1e5
#define PARSER_MAX_REQUESTS 20e6 /* MAX_REQUESTS in plan_workload.c */

static double number_or(const json_t *obj, const char *key, double fallback) {
    const json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : fallback;
}

bool cuipc_fuzz_workload_too_costly(const char *text) {
    json_t *root = json_loads(text, 0, NULL);
    if (root == NULL)
        return false;
    bool costly = false;
    if (json_is_object(root) && json_object_get(root, "trace") == NULL) {
        /* Invalid fields are refused before any sampling, so they cost nothing either way. */
        double messages = number_or(root, "duration_s", 0) *
                          number_or(json_object_get(root, "arrivals"), "rate_per_s", 0);
        double per_msg = number_or(root, "tensors_per_message", 1);
        double samples = messages * (per_msg + number_or(root, "consumers", 1));
        costly = samples > FUZZ_MAX_SAMPLES && messages * per_msg <= PARSER_MAX_REQUESTS;
    }
    json_decref(root);
    return costly;
}
