/* Which working set sees the host's slow state: pointer chases over 32 KiB .. 64 MiB, timed
 * alternately in 20 ms slices on one CPU; per slice the median of each. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static uint64_t now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}
static volatile uint64_t sink;
#define K 6
static const size_t sizes[K] = {32 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20};
static uint32_t *tab[K];
static uint32_t pos[K];
static uint64_t chase(int k, int steps) {
    uint32_t j = pos[k];
    for (int i = 0; i < steps; i++)
        j = tab[k][j];
    pos[k] = j;
    sink += j;
    return j;
}
static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
int main(int argc, char **argv) {
    int cpu = atoi(argv[1]);
    double secs = atof(argv[2]);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
    uint64_t r = 88172645463325252ull;
    for (int k = 0; k < K; k++) {
        size_t n = sizes[k] / 4;
        tab[k] = malloc(sizes[k]);
        for (size_t i = 0; i < n; i++)
            tab[k][i] = (uint32_t)i;
        /* one random cycle over the lines (one entry per 64 B line) */
        size_t m = n / 16;
        uint32_t *perm = malloc(m * 4);
        for (size_t i = 0; i < m; i++)
            perm[i] = (uint32_t)i;
        for (size_t i = m - 1; i > 0; i--) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            size_t j = r % (i + 1);
            uint32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (size_t i = 0; i < m; i++)
            tab[k][perm[i] * 16] = perm[(i + 1) % m] * 16;
        free(perm);
    }
    uint64_t end = now() + (uint64_t)(secs * 1e9);
    static uint64_t v[K][2048];
    while (now() < end) {
        uint64_t s0 = now();
        int n = 0;
        while (now() - s0 < 20000000ull && n < 2048) {
            for (int k = 0; k < K; k++) {
                uint64_t t = now();
                chase(k, 400);
                v[k][n] = now() - t;
            }
            n++;
        }
        printf("%d %.3f", cpu, (s0 % 100000000000ull) / 1e9);
        for (int k = 0; k < K; k++) {
            qsort(v[k], n, 8, cmp);
            printf(" %llu", (unsigned long long)v[k][n / 2]);
        }
        printf("\n");
    }
    return 0;
}
