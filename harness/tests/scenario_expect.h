/* Parse-and-expect helpers shared by the scenario parser tests. The including test sets
 * cuipc_expect_file: the name errors are reported against (relative paths resolve from it). */
#ifndef CUIPC_HARNESS_SCENARIO_EXPECT_H
#define CUIPC_HARNESS_SCENARIO_EXPECT_H

#include <stdio.h>
#include <string.h>

#include "scenario.h"
#include "test_util.h"

static char err[CUIPC_SCN_ERR_MAX];
static const char *cuipc_expect_file = "t.json";

static bool parse(const char *text, cuipc_scenario *s) {
    err[0] = '\0';
    return cuipc_scenario_parse(text, cuipc_expect_file, s, err, sizeof err);
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
    if (strstr(err, n1) == NULL || (n2 && strstr(err, n2) == NULL)) {
        fprintf(stderr, "error '%s' lacks '%s' / '%s'\n", err, n1, n2 ? n2 : "");
        cuipc_test_failures++;
    }
}

#endif
