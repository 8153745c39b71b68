/* Mann-Whitney U test (Wilcoxon rank-sum), one-sided: do the values of `y` tend to be larger
 * than those of `x`? compare uses it to tell a real change across repetitions from noise. */
#ifndef CUIPC_HARNESS_MANN_WHITNEY_H
#define CUIPC_HARNESS_MANN_WHITNEY_H

#include <stdbool.h>
#include <stddef.h>

/* Up to this many arrangements of the pooled sample the p-value is exact (every split of the
 * ranks enumerated, ties included as midranks); above it, the normal approximation with tie
 * and continuity corrections. C(20,10) = 184756: 10 repetitions a side stay exact. */
#define CUIPC_MWU_EXACT_MAX 200000.0
#define CUIPC_MWU_MAX_N 64 /* values per side */

typedef struct cuipc_mwu {
    double u;     /* U of y: pairs (x, y) with y > x, ties counting 1/2 */
    double p;     /* one-sided p-value: P(U >= u) when x and y come from one distribution */
    double p_min; /* the smallest p-value samples of these sizes can give: 1 / C(n+m, n) */
    bool exact;   /* p by enumeration (else the normal approximation) */
} cuipc_mwu;

/* 1 <= nx, ny <= CUIPC_MWU_MAX_N; false otherwise. */
bool cuipc_mwu_greater(const double *x, size_t nx, const double *y, size_t ny, cuipc_mwu *out);

/* Median of n values (n >= 1); v is left unchanged. */
double cuipc_median(const double *v, size_t n);

#endif
