/* Latency percentiles and the least-squares slope used by the leak verdict. */
#ifndef CUIPC_HARNESS_STATS_H
#define CUIPC_HARNESS_STATS_H

#include <stddef.h>
#include <stdint.h>

typedef struct cuipc_latency_summary {
    uint64_t count;
    double mean_us, p50_us, p90_us, p99_us, p999_us, max_us, min_us;
} cuipc_latency_summary;

/* Sorts ns in place; nearest-rank percentiles. count 0 gives all zeros. */
void cuipc_latency_summarize(uint64_t *ns, size_t n, cuipc_latency_summary *out);

/* Slope of y over x (units of y per unit of x) by least squares; 0 when fewer than 2 points or
 * x does not vary. */
double cuipc_slope(const double *x, const double *y, size_t n);

#endif
