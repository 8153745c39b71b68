/* Results files: writing one per scenario, the stdout summary table, and comparing a new run
 * against a baseline (per-metric tolerances) for CI. */
#ifndef CUIPC_HARNESS_RESULTS_H
#define CUIPC_HARNESS_RESULTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cuipc/status.h"

#define CUIPC_RESULTS_SCHEMA_VERSION 1

/* Write res to dir/<scenario.name>.json (dir created with parents), via a temporary file and
 * rename so a reader never sees half a file. */
bool cuipc_results_write(const json_t *res, const char *dir, char *err, size_t errcap);

/* The shape compare relies on: schema_version, scenario.name, status. Otherwise
 * CUIPC_ERR_INVALID_ARG with cuipc_last_error() "where: not a results file: what is wrong". */
cuipc_status cuipc_results_check(const json_t *res, const char *where);

/* One row per result: scenario, status, p50/p99 latency, GB/s, msgs/s, leak, reason; then the
 * totals line. */
void cuipc_results_print_summary(FILE *f, json_t *const *results, size_t n);

/* Verdict counts of a run; a result without a known status counts as failed. */
typedef struct cuipc_results_totals {
    size_t passed, failed, skipped;
} cuipc_results_totals;

void cuipc_results_tally(json_t *const *results, size_t n, cuipc_results_totals *t);

/* "totals: P passed, F failed, S skipped" */
void cuipc_results_print_totals(FILE *f, const cuipc_results_totals *t);

/* "[i+1/n] name status 1.3 s[: reason]", flushed: the line a log shows as each scenario ends. */
void cuipc_results_print_done(FILE *f, size_t i, size_t n, const json_t *res, double seconds);

typedef struct cuipc_compare_opts {
    double p50_pct; /* latency p50 may rise by this much */
    double p99_pct;
    double min_pct;          /* the fastest message's latency may rise by this much */
    double throughput_pct;   /* GB/s and msgs/s may fall by this much */
    double latency_floor_us; /* changes smaller than this are noise, whatever the percentage */
    double alpha;            /* a change is significant when the U test's p <= alpha */
} cuipc_compare_opts;

void cuipc_compare_opts_init(cuipc_compare_opts *o);

/* A scenario's verdict, in rising order of severity. */
typedef enum cuipc_verdict {
    CUIPC_VERDICT_OK = 0,
    CUIPC_VERDICT_SKIPPED,    /* one side did not run it */
    CUIPC_VERDICT_UNDECIDED,  /* beyond tolerance, but too few repetitions to test it */
    CUIPC_VERDICT_REGRESSION, /* beyond tolerance and significant, or passed -> failed */
} cuipc_verdict;

const char *cuipc_verdict_name(cuipc_verdict v);

/* Judge one scenario: each metric (latency p50/p99 up, throughput down) regresses when its
 * median moved beyond tolerance AND the one-sided Mann-Whitney U test over the repetitions of
 * the two runs gives p <= alpha. Prints one verdict line to report (if not NULL); fills detail
 * (if not NULL) with the verdict and every metric's figures. */
cuipc_verdict cuipc_compare_one(const json_t *base, const json_t *cur, const cuipc_compare_opts *o,
                                FILE *report, json_t *detail);

/* Differences that forbid judging: host, GPU models, driver, MPS (appended to environment)
 * and scenario content (appended to content), each as one string, deduplicated. */
void cuipc_compare_mismatches(const json_t *base, const json_t *cur, json_t *environment,
                              json_t *content);

/* True (and why says so) when one of the two ran under MPS and the other did not: such a pair
 * is refused, never compared as if one were a regression of the other. */
bool cuipc_compare_mps_differs(const json_t *base, const json_t *cur, char *why, size_t cap);

/* `cuipc-harness compare [flags] BASE NEW` (files or directories of results):
 * 0 no regression, 1 regression, 2 bad input or refused (mismatch), 3 undecided. */
int cuipc_compare_main(int argc, char **argv);

/* mkdir -p */
bool cuipc_mkdirs(const char *path, char *err, size_t errcap);

#endif
