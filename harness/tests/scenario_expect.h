/* Parse-and-expect helpers shared by the scenario parser tests. The including test sets
 * cuipc_expect_file: the name errors are reported against (relative paths resolve from it). */
#ifndef CUIPC_HARNESS_SCENARIO_EXPECT_H
#define CUIPC_HARNESS_SCENARIO_EXPECT_H

#include <stdio.h>
#include <string.h>

#include "scenario.h"
#include "test_util.h"

static char err[1024];          /* the last failure's cuipc_last_error() */
static cuipc_status err_status; /* and its status */
static const char *cuipc_expect_file = "t.json";

/* st is CUIPC_OK, or a failure whose message is kept in err. */
static bool keep_error(cuipc_status st) {
    err_status = st;
    snprintf(err, sizeof err, "%s", st == CUIPC_OK ? "" : cuipc_last_error());
    return st == CUIPC_OK;
}

static bool parse(const char *text, cuipc_scenario *s) {
    return keep_error(cuipc_scenario_parse(text, cuipc_expect_file, s));
}

static inline bool load(const char *path, cuipc_scenario *s) {
    return keep_error(cuipc_scenario_load(path, s));
}

/* Expect failure with every needle in the message. */
static void expect_error(const char *text, const char *n1, const char *n2) {
    cuipc_scenario s;
    bool ok = parse(text, &s);
    CHECK(!ok);
    if (ok) {
        cuipc_scenario_free(&s);
        return;
    }
    CHECK(err_status == CUIPC_ERR_INVALID_ARG);
    if (strstr(err, n1) == NULL || (n2 && strstr(err, n2) == NULL)) {
        fprintf(stderr, "error '%s' lacks '%s' / '%s'\n", err, n1, n2 ? n2 : "");
        cuipc_test_failures++;
    }
}

#endif
