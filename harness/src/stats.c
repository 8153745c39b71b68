/* Percentiles and least-squares slope. */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least q of the samples at or below it. */
static double rank_us(const uint64_t *sorted, size_t n, double q) {
    size_t k = (size_t)(q * (double)n + 0.999999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return (double)sorted[k - 1] / 1000.0;
}

void cuipc_latency_summarize(uint64_t *ns, size_t n, cuipc_latency_summary *out) {
    memset(out, 0, sizeof *out);
    if (n == 0)
        return;
    qsort(ns, n, sizeof *ns, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)ns[i];
    out->count = n;
    out->mean_us = sum / (double)n / 1000.0;
    out->min_us = (double)ns[0] / 1000.0;
    out->p50_us = rank_us(ns, n, 0.50);
    out->p90_us = rank_us(ns, n, 0.90);
    out->p99_us = rank_us(ns, n, 0.99);
    out->p999_us = rank_us(ns, n, 0.999);
    out->max_us = (double)ns[n - 1] / 1000.0;
}

double cuipc_slope(const double *x, const double *y, size_t n) {
    if (n < 2)
        return 0.0;
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxx = 0, sxy = 0;
    for (size_t i = 0; i < n; i++) {
        sxx += (x[i] - mx) * (x[i] - mx);
        sxy += (x[i] - mx) * (y[i] - my);
    }
    return sxx > 0 ? sxy / sxx : 0.0;
}
