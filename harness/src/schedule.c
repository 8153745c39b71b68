/* What an open loop kept of its schedule. */
#include "schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"
#include "util.h"

bool cuipc_schedule_init(cuipc_schedule *sc, size_t cap) {
    *sc = (cuipc_schedule){.cap_lag = cap < 2 ? 2 : cap, .stride = 1};
    sc->lag_ns = malloc(sc->cap_lag * sizeof *sc->lag_ns);
    if (sc->lag_ns != NULL)
        cuipc_h_touch(sc->lag_ns, sc->cap_lag * sizeof *sc->lag_ns);
    return sc->lag_ns != NULL;
}

void cuipc_schedule_add(cuipc_schedule *sc, uint64_t due_ns, uint64_t now_ns) {
    uint64_t lag = now_ns > due_ns ? now_ns - due_ns : 0;
    if (sc->reached == 0)
        sc->first_due_ns = due_ns;
    sc->last_lag_ns = lag;
    sc->max_lag_ns = lag > sc->max_lag_ns ? lag : sc->max_lag_ns;
    if (sc->lag_ns != NULL && sc->reached % sc->stride == 0) {
        if (sc->n_lag == sc->cap_lag) { /* keep every other one, sample half as often */
            for (size_t k = 0; k < sc->cap_lag / 2; k++)
                sc->lag_ns[k] = sc->lag_ns[2 * k];
            sc->n_lag = sc->cap_lag / 2;
            sc->stride *= 2;
        }
        if (sc->reached % sc->stride == 0)
            sc->lag_ns[sc->n_lag++] = lag;
    }
    sc->reached++;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The lag at the end of the run: the median of the last tenth of the samples (in send order),
 * so that one late message, a hiccup of the host, does not stand for the whole end. */
static uint64_t end_lag_ns(const cuipc_schedule *sc) {
    size_t k = sc->n_lag / 10 ? sc->n_lag / 10 : 1;
    if (sc->lag_ns == NULL || sc->n_lag == 0)
        return sc->last_lag_ns;
    uint64_t tail[6554]; /* a tenth of the largest buffer the producer uses, and then some */
    k = k < sizeof tail / sizeof *tail ? k : sizeof tail / sizeof *tail;
    memcpy(tail, sc->lag_ns + sc->n_lag - k, k * sizeof *tail);
    qsort(tail, k, sizeof *tail, cmp_u64);
    return tail[k / 2];
}

json_t *cuipc_schedule_json_free(cuipc_schedule *sc, double offered_hz, uint64_t scheduled,
                                 double span_s, bool count_bound, bool overload) {
    uint64_t end_lag = end_lag_ns(sc);
    cuipc_latency_summary l;
    cuipc_latency_summarize(sc->lag_ns, sc->lag_ns ? sc->n_lag : 0, &l);
    free(sc->lag_ns);
    sc->lag_ns = NULL;
    /* A loop bound by a count runs until its last messages went out, however late. */
    double kept_s = span_s + (count_bound ? (double)end_lag / 1e9 : 0.0);
    double sustained = kept_s > 0 ? (double)sc->reached / kept_s : 0.0;
    /* Too few messages to have a rate (one, or none timed): nothing to judge. */
    bool judged = sc->reached >= 2 && scheduled >= 2 && span_s > 0;
    bool behind = judged && sustained < CUIPC_SCHEDULE_MIN_FRACTION * offered_hz;
    return json_pack("{s:f, s:I, s:I, s:f, s:f, s:{s:f, s:f, s:f, s:f}, s:b, s:b, s:b}",
                     "offered_hz", offered_hz, "scheduled", (json_int_t)scheduled, "reached",
                     (json_int_t)sc->reached, "span_s", span_s, "sustained_hz", sustained, "lag_ms",
                     "p50", l.p50_us / 1e3, "p99", l.p99_us / 1e3, "max",
                     (double)sc->max_lag_ns / 1e6, "end", (double)end_lag / 1e6, "judged", judged,
                     "fell_behind", behind, "overload", overload);
}

bool cuipc_schedule_fell_behind(const json_t *schedule, char *why, size_t cap) {
    if (!json_is_true(json_object_get(schedule, "fell_behind")))
        return false;
    const json_t *lag = json_object_get(schedule, "lag_ms");
    snprintf(why, cap,
             "offered %.0f Hz, sustained %.0f Hz (%lld of %lld scheduled messages sent, lag p99 "
             "%.1f ms, at the end %.1f ms)",
             json_number_value(json_object_get(schedule, "offered_hz")),
             json_number_value(json_object_get(schedule, "sustained_hz")),
             (long long)json_integer_value(json_object_get(schedule, "reached")),
             (long long)json_integer_value(json_object_get(schedule, "scheduled")),
             json_number_value(json_object_get(lag, "p99")),
             json_number_value(json_object_get(lag, "end")));
    return true;
}
