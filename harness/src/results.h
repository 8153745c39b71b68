/* Results files: writing one per scenario, the stdout summary table, and comparing a new run
 * against a baseline (per-metric tolerances) for CI. */
#ifndef CUIPC_HARNESS_RESULTS_H
#define CUIPC_HARNESS_RESULTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CUIPC_RESULTS_SCHEMA_VERSION 1

/* Write res to dir/<scenario.name>.json (dir created with parents), via a temporary file and
 * rename so a reader never sees half a file. */
bool cuipc_results_write(const json_t *res, const char *dir, char *err, size_t errcap);

/* The shape compare relies on: schema_version, scenario.name, status. */
bool cuipc_results_check(const json_t *res, char *err, size_t errcap);

void cuipc_results_print_summary(FILE *f, json_t *const *results, size_t n);

typedef struct cuipc_compare_opts {
    double p50_pct; /* latency p50 may rise by this much */
    double p99_pct;
    double throughput_pct;   /* GB/s and msgs/s may fall by this much */
    double latency_floor_us; /* changes smaller than this are noise, whatever the percentage */
} cuipc_compare_opts;

void cuipc_compare_opts_init(cuipc_compare_opts *o);

/* Compare two results objects of one scenario; prints one line per metric checked.
 * Returns the number of regressions. */
int cuipc_compare_one(const json_t *base, const json_t *cur, const cuipc_compare_opts *o,
                      FILE *report);

/* True (and why says so) when one of the two ran under MPS and the other did not: such a pair
 * is refused, never compared as if one were a regression of the other. */
bool cuipc_compare_mps_differs(const json_t *base, const json_t *cur, char *why, size_t cap);

/* `cuipc-harness compare [flags] BASE NEW` (files or directories of results):
 * 0 no regression, 1 regression, 2 bad input. */
int cuipc_compare_main(int argc, char **argv);

/* mkdir -p */
bool cuipc_mkdirs(const char *path, char *err, size_t errcap);

#endif
