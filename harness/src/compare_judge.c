/* compare's judgement of one scenario: a metric regresses only when the change of its median is
 * beyond its tolerance AND the one-sided Mann-Whitney U test across the repetitions of the two
 * runs finds it significant; and the environment and scenario-content checks that decide
 * whether two runs may be judged against each other at all. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mann_whitney.h"
#include "repetitions.h"
#include "results.h"
#include "results_keys.h"

void cuipc_compare_opts_init(cuipc_compare_opts *o) {
    o->p50_pct = 10.0;
    o->p99_pct = 20.0;
    o->min_pct = 10.0;
    o->throughput_pct = 10.0;
    o->latency_floor_us = 1.0;
    o->alpha = 0.01;
}

const char *cuipc_verdict_name(cuipc_verdict v) {
    static const char *const names[] = {"ok", "skipped", "undecided", "regression"};
    return names[v];
}

static double tolerance_of(const cuipc_rep_metric *m, const cuipc_compare_opts *o) {
    if (!m->higher_is_worse)
        return o->throughput_pct;
    if (strcmp(m->key, CUIPC_RK_METRIC_MIN) == 0)
        return o->min_pct;
    return strcmp(m->key, CUIPC_RK_METRIC_P99) == 0 ? o->p99_pct : o->p50_pct;
}

/* The U test of "y is worse than x": larger latency, smaller throughput. */
static void worse_than(const cuipc_rep_metric *m, const double *x, size_t nx, const double *y,
                       size_t ny, cuipc_mwu *u) {
    if (m->higher_is_worse)
        cuipc_mwu_greater(x, nx, y, ny, u);
    else
        cuipc_mwu_greater(y, ny, x, nx, u);
}

static bool open_loop(const json_t *r) {
    const char *loop =
        json_string_value(json_object_get(json_object_get(r, CUIPC_RK_SCENARIO), CUIPC_RK_LOOP));
    return loop != NULL && strcmp(loop, "open") == 0;
}

/* Whether a metric says something about the code under test. An open loop's throughput is its
 * schedule's rate (a loop that could not keep it fails the run: "open loop fell behind"), so
 * judging it would only spend a share of alpha on a figure the code does not set. */
static bool judged(const cuipc_rep_metric *m, const json_t *base, const json_t *cur) {
    return m->higher_is_worse || !(open_loop(base) && open_loop(cur));
}

/* Metrics both runs measured and judged: the family over which alpha is shared (Bonferroni). */
static size_t metrics_compared(const json_t *base, const json_t *cur) {
    size_t k = 0;
    for (size_t i = 0; i < cuipc_rep_n_metrics; i++) {
        double v[CUIPC_MAX_REPETITIONS];
        k += judged(&cuipc_rep_metrics[i], base, cur) &&
             cuipc_results_samples(base, &cuipc_rep_metrics[i], v, CUIPC_MAX_REPETITIONS) > 0 &&
             cuipc_results_samples(cur, &cuipc_rep_metrics[i], v, CUIPC_MAX_REPETITIONS) > 0;
    }
    return k;
}

/* One metric: the medians, the change, the U test, and its verdict. NULL when a side has no
 * sample of it (a run that measured nothing). */
static json_t *judge_metric(const cuipc_rep_metric *m, const json_t *base, const json_t *cur,
                            const cuipc_compare_opts *o, double level, cuipc_verdict *verdict,
                            char *line, size_t cap) {
    double b[CUIPC_MAX_REPETITIONS], c[CUIPC_MAX_REPETITIONS];
    size_t nb = cuipc_results_samples(base, m, b, CUIPC_MAX_REPETITIONS);
    size_t nc = cuipc_results_samples(cur, m, c, CUIPC_MAX_REPETITIONS);
    if (nb == 0 || nc == 0)
        return NULL;
    double mb = cuipc_median(b, nb), mc = cuipc_median(c, nc);
    double change = mb != 0 ? (mc - mb) / fabs(mb) * 100.0 : 0.0;
    double worse = m->higher_is_worse ? change : -change;
    double tol = tolerance_of(m, o);
    bool beyond = worse > tol && (!m->higher_is_worse || mc - mb > o->latency_floor_us);
    cuipc_mwu u;
    worse_than(m, b, nb, c, nc, &u);
    bool testable = u.p_min <= level;
    bool significant = u.p <= level;
    /* Could these repetitions have caught a change of exactly the tolerance? The base moved
     * by it, tested against itself: on a host whose noise hides such a change, "ok" would
     * vouch for what was not measured. */
    double moved[CUIPC_MAX_REPETITIONS];
    for (size_t i = 0; i < nb; i++)
        moved[i] = m->higher_is_worse ? b[i] * (1 + tol / 100) + o->latency_floor_us
                                      : b[i] * (1 - tol / 100);
    cuipc_mwu su;
    worse_than(m, b, nb, moved, nb, &su);
    bool sensitive = su.p <= level;
    /* too few: no p-value these sample sizes can give reaches the level */
    const char *mv = beyond && significant ? "regression"
                     : !testable           ? "too_few"
                     : !sensitive          ? "too_noisy"
                     : beyond              ? "noise"
                                           : "ok";
    if (strcmp(mv, "regression") == 0)
        *verdict = CUIPC_VERDICT_REGRESSION;
    else if ((strcmp(mv, "too_few") == 0 || strcmp(mv, "too_noisy") == 0) && !m->supporting &&
             *verdict < CUIPC_VERDICT_UNDECIDED)
        *verdict = CUIPC_VERDICT_UNDECIDED;
    snprintf(line, cap, "%s %+.1f%%%s (p=%.3g)%s", m->brief, change,
             beyond ? (m->higher_is_worse ? " up" : " down") : "", u.p,
             strcmp(mv, "regression") == 0  ? " REGRESSION"
             : strcmp(mv, "too_few") == 0   ? (m->supporting ? " too few" : " TOO FEW REPETITIONS")
             : strcmp(mv, "too_noisy") == 0 ? (m->supporting ? " too noisy" : " TOO NOISY")
                                            : "");
    json_t *bv = json_array(), *cv = json_array();
    for (size_t i = 0; i < nb; i++)
        json_array_append_new(bv, json_real(b[i]));
    for (size_t i = 0; i < nc; i++)
        json_array_append_new(cv, json_real(c[i]));
    return json_pack("{s:s, s:s, s:s, s:{s:i, s:f, s:o}, s:{s:i, s:f, s:o}, s:f, s:f, s:b, s:f, "
                     "s:f, s:s, s:f, s:b, s:b, s:b, s:f, s:s, s:b}",
                     "metric", m->key, "label", m->label, "worse_when",
                     m->higher_is_worse ? "higher" : "lower", "base", "n", (int)nb, "median", mb,
                     "values", bv, "new", "n", (int)nc, "median", mc, "values", cv, "change_pct",
                     change, "tolerance_pct", tol, "beyond_tolerance", beyond, "p_value", u.p,
                     "p_min", u.p_min, "p_method", u.exact ? "exact" : "normal approximation",
                     "level", level, "significant", significant, "testable", testable, "sensitive",
                     sensitive, "p_at_tolerance", su.p, "verdict", mv, "supporting", m->supporting);
}

static int repetitions_of(const json_t *r) {
    const json_t *rep = json_object_get(r, CUIPC_RK_REPETITIONS);
    return rep ? (int)json_integer_value(json_object_get(rep, CUIPC_RK_COUNT)) : 1;
}

cuipc_verdict cuipc_compare_one(const json_t *base, const json_t *cur, const cuipc_compare_opts *o,
                                FILE *report, json_t *detail) {
    const char *name = cuipc_results_name(cur);
    const char *bs = cuipc_results_status(base);
    const char *cs = cuipc_results_status(cur);
    int rb = repetitions_of(base), rc = repetitions_of(cur);
    json_t *metrics = json_array();
    cuipc_verdict v = CUIPC_VERDICT_OK;
    char text[1024] = "";
    size_t len = 0;
    if (strcmp(bs, CUIPC_RESULT_SKIPPED) == 0 || strcmp(cs, CUIPC_RESULT_SKIPPED) == 0) {
        v = CUIPC_VERDICT_SKIPPED;
        snprintf(text, sizeof text, " (base %s, new %s)", bs, cs);
    } else {
        if (strcmp(bs, CUIPC_RESULT_PASSED) == 0 && strcmp(cs, CUIPC_RESULT_PASSED) != 0) {
            const char *reason = cuipc_results_reason(cur);
            v = CUIPC_VERDICT_REGRESSION;
            len += (size_t)snprintf(text + len, sizeof text - len, " status passed -> %s (%s);", cs,
                                    reason ? reason : "");
        }
        size_t k = metrics_compared(base, cur), required = 0;
        double level = o->alpha / (double)(k ? k : 1);
        for (size_t i = 0; i < cuipc_rep_n_metrics && len < sizeof text; i++) {
            if (!judged(&cuipc_rep_metrics[i], base, cur))
                continue;
            char line[160];
            json_t *mj =
                judge_metric(&cuipc_rep_metrics[i], base, cur, o, level, &v, line, sizeof line);
            if (mj == NULL)
                continue;
            required += !cuipc_rep_metrics[i].supporting;
            json_array_append_new(metrics, mj);
            len += (size_t)snprintf(text + len, sizeof text - len, " %s,", line);
        }
        if (len > 0 && len < sizeof text && text[len - 1] == ',')
            text[--len] = '\0';
        /* ok vouches for what was measured: without a latency or throughput figure on both
         * sides (a run that timed no message), supporting evidence alone cannot say it. */
        if (v == CUIPC_VERDICT_OK && required == 0) {
            v = CUIPC_VERDICT_UNDECIDED;
            if (len < sizeof text)
                snprintf(text + len, sizeof text - len,
                         " no latency or throughput figure on both sides");
        }
    }
    if (report != NULL)
        fprintf(report, "%s: %s%s; %d vs %d repetition(s)\n", name,
                v == CUIPC_VERDICT_OK          ? "ok"
                : v == CUIPC_VERDICT_SKIPPED   ? "skipped"
                : v == CUIPC_VERDICT_UNDECIDED ? "UNDECIDED"
                                               : "REGRESSION",
                text, rb, rc);
    if (detail != NULL)
        json_object_set_new(detail, "metrics", json_incref(metrics));
    if (detail != NULL) {
        json_object_set_new(detail, "verdict", json_string(cuipc_verdict_name(v)));
        json_object_set_new(detail, "base_status", json_string(bs));
        json_object_set_new(detail, "new_status", json_string(cs));
        json_object_set_new(detail, "base_repetitions", json_integer(rb));
        json_object_set_new(detail, "new_repetitions", json_integer(rc));
    }
    json_decref(metrics);
    return v;
}

/* ---- may these two runs be judged against each other? ---------------------------------- */

static const json_t *gpu_of(const json_t *r) {
    return json_object_get(cuipc_results_environment(r), CUIPC_RK_GPU);
}

/* The devices' `key` (their models, their UUIDs) in device order, "?" for a device without it,
 * "none" without a GPU; false when a device lacks it (older results record no UUID). */
static bool gpu_list(const json_t *r, const char *key, char *out, size_t cap) {
    const json_t *devs = json_object_get(gpu_of(r), CUIPC_RK_DEVICES);
    size_t len = 0, i;
    const json_t *d;
    bool all = true;
    out[0] = '\0';
    json_array_foreach(devs, i, d) {
        const char *n = json_string_value(json_object_get(d, key));
        all = all && n != NULL;
        if (len < cap)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? ", " : "", n ? n : "?");
    }
    if (len == 0)
        snprintf(out, cap, "none");
    return all;
}

/* One difference, as "what: base X, new Y", once. */
static void differ(json_t *out, const char *what, const char *b, const char *c) {
    char buf[700];
    snprintf(buf, sizeof buf, "%s: base %s, new %s", what, b, c);
    size_t i;
    json_t *v;
    json_array_foreach(out, i, v) if (strcmp(json_string_value(v), buf) == 0) return;
    json_array_append_new(out, json_string(buf));
}

static void text_of(const json_t *v, char *out, size_t cap) {
    if (json_is_string(v))
        snprintf(out, cap, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, cap, "%lld", (long long)json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(out, cap, "%s", json_is_true(v) ? "true" : "false");
    else
        snprintf(out, cap, "%s", v == NULL ? "(not recorded)" : "?");
}

void cuipc_compare_mismatches(const json_t *base, const json_t *cur, json_t *environment,
                              json_t *content) {
    char b[512], c[512];
    text_of(json_object_get(cuipc_results_environment(base), CUIPC_RK_HOSTNAME), b, sizeof b);
    text_of(json_object_get(cuipc_results_environment(cur), CUIPC_RK_HOSTNAME), c, sizeof c);
    if (strcmp(b, c) != 0)
        differ(environment, "host", b, c);
    gpu_list(base, CUIPC_RK_NAME, b, sizeof b);
    gpu_list(cur, CUIPC_RK_NAME, c, sizeof c);
    if (strcmp(b, c) != 0)
        differ(environment, "GPU model", b, c);
    /* Another physical GPU is another machine, whatever its host is called: virtual machines
     * repeat host names and bus IDs, and the same model differs from one to the next. */
    if (gpu_list(base, CUIPC_RK_UUID, b, sizeof b) && gpu_list(cur, CUIPC_RK_UUID, c, sizeof c) &&
        strcmp(b, c) != 0)
        differ(environment, "GPU (device UUID)", b, c);
    text_of(json_object_get(gpu_of(base), CUIPC_RK_DRIVER_VERSION), b, sizeof b);
    text_of(json_object_get(gpu_of(cur), CUIPC_RK_DRIVER_VERSION), c, sizeof c);
    if (strcmp(b, c) != 0)
        differ(environment, "GPU driver", b, c);
    char why[256]; /* absent in older results: ran without MPS */
    if (cuipc_compare_mps_differs(base, cur, why, sizeof why)) {
        bool bm = json_is_true(json_object_get(cuipc_results_mps(base), CUIPC_RK_ENABLED));
        differ(environment, "MPS (environment.mps.enabled)", bm ? "under MPS" : "without MPS",
               bm ? "without MPS" : "under MPS");
    }
    const char *bh = json_string_value(json_object_get(base, CUIPC_RK_SCENARIO_SHA256));
    const char *ch = json_string_value(json_object_get(cur, CUIPC_RK_SCENARIO_SHA256));
    if (bh && ch && strcmp(bh, ch) != 0) {
        char bs[16], cs[16];
        snprintf(bs, sizeof bs, "%.12s", bh);
        snprintf(cs, sizeof cs, "%.12s", ch);
        differ(content, "scenario content (scenario_sha256)", bs, cs);
    }
}
