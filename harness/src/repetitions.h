/* Repeated runs of one scenario: each repetition's headline figures, their median and spread
 * (results "repetitions"), and the samples compare tests, from a repeated or a single run. */
#ifndef CUIPC_HARNESS_REPETITIONS_H
#define CUIPC_HARNESS_REPETITIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "scenario.h" /* CUIPC_MAX_REPETITIONS */

/* The figures compared across runs, by their key in a repetition's figures. */
typedef struct cuipc_rep_metric {
    const char *key;     /* in repetitions.runs[i], .median, .spread */
    const char *label;   /* for people */
    const char *brief;   /* in compare's verdict line */
    const char *role;    /* NULL: path is in the results' top level; else in the report of each
                            role of this name (roles[].report), their median the figure */
    const char *path[3]; /* where the figure is */
    bool higher_is_worse;
    /* Supporting evidence: it can show a regression, but "ok" does not need it to be able to
     * (the call timings: a GPU's own jitter can leave them too noisy where latency is not). */
    bool supporting;
} cuipc_rep_metric;

extern const cuipc_rep_metric cuipc_rep_metrics[];
extern const size_t cuipc_rep_n_metrics;

/* Metric m's figure in a results file (one repetition's); false when it measured none. */
bool cuipc_rep_figure(const json_t *res, const cuipc_rep_metric *m, double *out);

/* One repetition's headline figures (status, latency, throughput, wall time) from its results. */
json_t *cuipc_repetition_figures(const json_t *res, int repetition);

/* {"count", "runs", "median", "spread": {key: {min, max, range_pct}}, "representative"}; takes
 * runs (an array of cuipc_repetition_figures). */
json_t *cuipc_repetitions_summary(json_t *runs, int representative);

/* Index of the repetition whose results stand for all: the first failed one, else the one of
 * median latency p50 (the lower of the two middle ones), else the first. */
size_t cuipc_repetitions_representative(json_t *const *results, size_t n);

/* Several results of one scenario (separate invocations, e.g. runs of two builds interleaved
 * in time) pooled as one repeated run: the first failed one (else the first) with
 * "repetitions" holding every run's repetitions. A new reference; n >= 1. */
json_t *cuipc_repetitions_pool(json_t *const *items, size_t n);

/* The samples of metric m in a results file: every repetition's value (those that measured
 * it), or the single top-level value of an unrepeated run. Returns how many (<= cap). */
size_t cuipc_results_samples(const json_t *res, const cuipc_rep_metric *m, double *out, size_t cap);

#endif
