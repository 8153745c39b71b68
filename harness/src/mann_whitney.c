/* Mann-Whitney U: exact by enumerating the splits of the pooled ranks when there are few enough
 * (small repetition counts, where the normal approximation is poor and ties are common), the
 * normal approximation with tie and continuity corrections otherwise. */
#include "mann_whitney.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cuipc_median(const double *v, size_t n) {
    double s[CUIPC_MWU_MAX_N];
    if (n == 0 || n > CUIPC_MWU_MAX_N)
        return NAN;
    memcpy(s, v, n * sizeof *v);
    qsort(s, n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double choose(size_t n, size_t k) {
    double c = 1;
    for (size_t i = 1; i <= k; i++)
        c = c * (double)(n - k + i) / (double)i;
    return c;
}

/* Count the k-subsets of r[from..n) whose sum, added to `sum`, reaches `target` (all integers:
 * ranks doubled so midranks stay whole). */
static double count_at_least(const long *r, size_t n, size_t from, size_t k, long sum,
                             long target) {
    if (k == 0)
        return sum >= target ? 1 : 0;
    double c = 0;
    for (size_t i = from; i + k <= n; i++)
        c += count_at_least(r, n, i + 1, k - 1, sum + r[i], target);
    return c;
}

bool cuipc_mwu_greater(const double *x, size_t nx, const double *y, size_t ny, cuipc_mwu *out) {
    if (nx == 0 || ny == 0 || nx > CUIPC_MWU_MAX_N || ny > CUIPC_MWU_MAX_N)
        return false;
    size_t n = nx + ny;
    struct item {
        double v;
        bool is_y;
    } items[2 * CUIPC_MWU_MAX_N];
    for (size_t i = 0; i < nx; i++)
        items[i] = (struct item){x[i], false};
    for (size_t i = 0; i < ny; i++)
        items[nx + i] = (struct item){y[i], true};
    /* insertion sort by value: n <= 128 */
    for (size_t i = 1; i < n; i++) {
        struct item t = items[i];
        size_t j = i;
        for (; j > 0 && items[j - 1].v > t.v; j--)
            items[j] = items[j - 1];
        items[j] = t;
    }
    long rank2[2 * CUIPC_MWU_MAX_N]; /* doubled midranks */
    long ry2 = 0;
    double tie_term = 0; /* sum of t^3 - t over tie groups */
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && items[j + 1].v == items[i].v)
            j++;
        long mid2 = (long)(i + 1 + j + 1); /* 2 * (first rank + last rank) / 2 */
        double t = (double)(j - i + 1);
        tie_term += t * t * t - t;
        for (size_t k = i; k <= j; k++) {
            rank2[k] = mid2;
            if (items[k].is_y)
                ry2 += mid2;
        }
        i = j + 1;
    }
    out->u = (double)ry2 / 2.0 - (double)ny * (double)(ny + 1) / 2.0;
    double splits = choose(n, ny);
    out->p_min = 1.0 / splits;
    out->exact = splits <= CUIPC_MWU_EXACT_MAX;
    if (out->exact) {
        out->p = count_at_least(rank2, n, 0, ny, 0, ry2) / splits;
        return true;
    }
    double mean = (double)nx * (double)ny / 2.0;
    double var = (double)nx * (double)ny / 12.0 *
                 ((double)(n + 1) - tie_term / ((double)n * (double)(n - 1)));
    if (var <= 0) {
        out->p = 1.0; /* every value equal: no evidence of a change */
        return true;
    }
    double z = (out->u - mean - 0.5) / sqrt(var);
    out->p = 0.5 * erfc(z / sqrt(2.0));
    return true;
}
