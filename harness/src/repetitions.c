/* Repetitions: figures per run, median and spread, and the samples compare tests. */
#include "repetitions.h"

#include <math.h>
#include <string.h>

#include "mann_whitney.h"
#include "results_keys.h"

const cuipc_rep_metric cuipc_rep_metrics[] = {
    {CUIPC_RK_METRIC_P50,
     "latency p50 (us)",
     "p50_us",
     NULL,
     {CUIPC_RK_LATENCY, CUIPC_RK_P50, NULL},
     true,
     false},
    {CUIPC_RK_METRIC_P99,
     "latency p99 (us)",
     "p99_us",
     NULL,
     {CUIPC_RK_LATENCY, CUIPC_RK_P99, NULL},
     true,
     false},
    /* The fastest message: what load adds to a run rarely reaches it, so a slower path (a cost
     * every message pays) shows here across repetitions that vary too much in p50 to show it. */
    {CUIPC_RK_METRIC_MIN,
     "latency min (us)",
     "min_us",
     NULL,
     {CUIPC_RK_LATENCY, CUIPC_RK_MIN, NULL},
     true,
     false},
    /* The library's own calls, timed where they are made: a message's latency adds the wait
     * for the other process, which a loaded host stretches; a call's p50 is rarely
     * preempted, so a slower send or unwrap shows here through that noise. Supporting: on a
     * GPU their own jitter can exceed the tolerance where the latency's does not. */
    {CUIPC_RK_METRIC_SEND_P50,
     "producer send p50 (us)",
     "send_p50_us",
     "producer",
     {CUIPC_RK_SEND_US, CUIPC_RK_P50, NULL},
     true,
     true},
    {CUIPC_RK_METRIC_UNWRAP_P50,
     "consumer unwrap p50 (us)",
     "unwrap_p50_us",
     "consumer",
     {CUIPC_RK_STAGES_US, CUIPC_RK_STAGE_UNWRAP, CUIPC_RK_P50},
     true,
     true},
    {CUIPC_RK_METRIC_GBPS,
     "throughput (GB/s)",
     "gbps",
     NULL,
     {CUIPC_RK_THROUGHPUT, CUIPC_RK_AGGREGATE, CUIPC_RK_GBPS},
     false,
     false},
    {CUIPC_RK_METRIC_MSGS_PER_S,
     "throughput (msgs/s)",
     "msgs_per_s",
     NULL,
     {CUIPC_RK_THROUGHPUT, CUIPC_RK_AGGREGATE, CUIPC_RK_MSGS_PER_S},
     false,
     false},
};
const size_t cuipc_rep_n_metrics = sizeof cuipc_rep_metrics / sizeof cuipc_rep_metrics[0];

static const json_t *at_path(const json_t *r, const char *const path[3]) {
    for (int i = 0; i < 3 && path[i] && r; i++)
        r = json_object_get(r, path[i]);
    return r;
}

/* A latency figure counts only when messages were timed (a skipped or crashed run has none). */
static bool measured(const json_t *res, const cuipc_rep_metric *m) {
    return strcmp(m->path[0], CUIPC_RK_LATENCY) != 0 || cuipc_results_latency_measured(res);
}

/* A role's call timing: the median over the reports of that role that timed any call. */
static bool role_figure(const json_t *res, const cuipc_rep_metric *m, double *out) {
    double v[1 + CUIPC_MAX_CONSUMERS]; /* the producer and every consumer at most */
    size_t n = 0, i;
    /* the timed call's stage object is the path less its last step; it counts the calls */
    const char *stage_path[3] = {m->path[0], m->path[2] ? m->path[1] : NULL, NULL};
    const json_t *role;
    json_array_foreach(json_object_get(res, CUIPC_RK_ROLES), i, role) {
        const json_t *report = json_object_get(role, CUIPC_RK_REPORT);
        const char *name = json_string_value(json_object_get(report, CUIPC_RK_ROLE));
        if (name == NULL || strcmp(name, m->role) != 0 || n == sizeof v / sizeof v[0])
            continue;
        const json_t *x = at_path(report, m->path);
        if (json_is_number(x) &&
            json_integer_value(json_object_get(at_path(report, stage_path), CUIPC_RK_COUNT)) > 0)
            v[n++] = json_number_value(x);
    }
    if (n == 0)
        return false;
    *out = cuipc_median(v, n);
    return true;
}

bool cuipc_rep_figure(const json_t *res, const cuipc_rep_metric *m, double *out) {
    if (m->role != NULL)
        return role_figure(res, m, out);
    const json_t *v = at_path(res, m->path);
    if (!json_is_number(v) || !measured(res, m))
        return false;
    *out = json_number_value(v);
    return true;
}

json_t *cuipc_repetition_figures(const json_t *res, int repetition) {
    json_t *f = json_pack("{s:i, s:O}", CUIPC_RK_REPETITION, repetition, CUIPC_RK_STATUS,
                          json_object_get(res, CUIPC_RK_STATUS));
    static const char *const copied[] = {CUIPC_RK_STARTED_AT, CUIPC_RK_REASON};
    for (size_t i = 0; i < 2; i++)
        if (json_object_get(res, copied[i]))
            json_object_set(f, copied[i], json_object_get(res, copied[i]));
    for (size_t i = 0; i < cuipc_rep_n_metrics; i++) {
        double v;
        if (cuipc_rep_figure(res, &cuipc_rep_metrics[i], &v))
            json_object_set_new(f, cuipc_rep_metrics[i].key, json_real(v));
    }
    const json_t *count = json_object_get(cuipc_results_latency(res), CUIPC_RK_COUNT);
    if (json_is_integer(count))
        json_object_set(f, CUIPC_RK_LATENCY_COUNT, (json_t *)count);
    const json_t *wall =
        json_object_get(json_object_get(res, CUIPC_RK_SUPERVISOR), CUIPC_RK_WALL_S);
    if (json_is_number(wall))
        json_object_set(f, CUIPC_RK_WALL_S, (json_t *)wall);
    return f;
}

json_t *cuipc_repetitions_summary(json_t *runs, int representative) {
    json_t *median = json_object(), *spread = json_object();
    for (size_t m = 0; m < cuipc_rep_n_metrics; m++) {
        const char *key = cuipc_rep_metrics[m].key;
        double v[CUIPC_MAX_REPETITIONS];
        size_t n = 0;
        size_t i;
        json_t *run;
        json_array_foreach(runs, i, run) {
            json_t *x = json_object_get(run, key);
            if (json_is_number(x) && n < CUIPC_MAX_REPETITIONS)
                v[n++] = json_number_value(x);
        }
        if (n == 0)
            continue;
        double lo = v[0], hi = v[0];
        for (i = 1; i < n; i++) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
        double med = cuipc_median(v, n);
        json_object_set_new(median, key, json_real(med));
        json_object_set_new(spread, key,
                            json_pack("{s:f, s:f, s:f, s:i}", "min", lo, "max", hi, "range_pct",
                                      med != 0 ? (hi - lo) / fabs(med) * 100.0 : 0.0, "n", (int)n));
    }
    return json_pack("{s:I, s:o, s:o, s:o, s:i}", CUIPC_RK_COUNT, (json_int_t)json_array_size(runs),
                     CUIPC_RK_RUNS, runs, "median", median, "spread", spread,
                     CUIPC_RK_REPRESENTATIVE, representative);
}

size_t cuipc_repetitions_representative(json_t *const *results, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (cuipc_results_status_is(results[i], CUIPC_RESULT_FAILED))
            return i;
    size_t idx[CUIPC_MAX_REPETITIONS];
    double p50[CUIPC_MAX_REPETITIONS];
    size_t k = 0;
    for (size_t i = 0; i < n && k < CUIPC_MAX_REPETITIONS; i++) {
        if (cuipc_rep_figure(results[i], &cuipc_rep_metrics[0], &p50[k]))
            idx[k++] = i;
    }
    if (k == 0)
        return 0;
    /* the (k-1)/2-th smallest: sort the indices by p50 (k <= 64) */
    for (size_t a = 1; a < k; a++)
        for (size_t b = a; b > 0 && p50[b - 1] > p50[b]; b--) {
            double t = p50[b];
            p50[b] = p50[b - 1];
            p50[b - 1] = t;
            size_t u = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = u;
        }
    return idx[(k - 1) / 2];
}

json_t *cuipc_repetitions_pool(json_t *const *items, size_t n) {
    if (n == 1)
        return json_incref(items[0]);
    size_t lead = 0;
    for (size_t i = 0; i < n && lead == 0; i++)
        if (cuipc_results_status_is(items[i], CUIPC_RESULT_FAILED))
            lead = i;
    json_t *runs = json_array();
    int rep_of_lead = 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *reps = json_object_get(items[i], CUIPC_RK_REPETITIONS);
        const json_t *mine = json_object_get(reps, CUIPC_RK_RUNS);
        if (i == lead)
            rep_of_lead =
                (int)json_array_size(runs) +
                (json_is_array(mine)
                     ? (int)json_integer_value(json_object_get(reps, CUIPC_RK_REPRESENTATIVE))
                     : 1);
        if (!json_is_array(mine)) {
            json_array_append_new(runs, cuipc_repetition_figures(items[i], 0));
        } else {
            size_t k;
            const json_t *r;
            json_array_foreach(mine, k, r) json_array_append_new(runs, json_deep_copy(r));
        }
    }
    size_t k;
    json_t *r;
    json_array_foreach(runs, k, r)
        json_object_set_new(r, CUIPC_RK_REPETITION, json_integer((int)k + 1));
    json_t *pooled = json_deep_copy(items[lead]);
    json_object_set_new(pooled, CUIPC_RK_REPETITIONS, cuipc_repetitions_summary(runs, rep_of_lead));
    return pooled;
}

size_t cuipc_results_samples(const json_t *res, const cuipc_rep_metric *m, double *out,
                             size_t cap) {
    const json_t *runs = json_object_get(json_object_get(res, CUIPC_RK_REPETITIONS), CUIPC_RK_RUNS);
    size_t n = 0;
    if (json_is_array(runs)) {
        size_t i;
        const json_t *run;
        json_array_foreach(runs, i, run) {
            const json_t *v = json_object_get(run, m->key);
            if (json_is_number(v) && n < cap)
                out[n++] = json_number_value(v);
        }
        return n;
    }
    if (cap > 0 && cuipc_rep_figure(res, m, &out[n]))
        n++;
    return n;
}
