/* Which fixed loop sees the host's two CPU speeds: on one CPU, for S seconds, slices of 20 ms;
 * in each slice three candidate loops (ALU chain, table walk, branchy) run alternately, each
 * timed; per slice the median of each is printed. */
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
static uint32_t table[8192];
static uint64_t alu(void) {
    uint64_t x = sink | 1;
    for (int i = 0; i < 1500; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    sink = x;
    return x;
}
static uint64_t walk(void) {
    uint32_t j = (uint32_t)sink & 8191;
    uint64_t s = 0;
    for (int i = 0; i < 3000; i++) {
        j = table[j];
        s += j;
    }
    sink = s;
    return s;
}
static uint64_t branchy(void) {
    uint64_t x = sink | 1, s = 0;
    for (int i = 0; i < 3000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x & 1)
            s += x >> 3;
        else if (x & 2)
            s ^= x;
        else
            s -= i;
    }
    sink = s;
    return s;
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
    for (int i = 0; i < 8192; i++)
        table[i] = (uint32_t)((i * 2654435761u) >> 3) & 8191;
    uint64_t (*f[3])(void) = {alu, walk, branchy};
    uint64_t end = now() + (uint64_t)(secs * 1e9);
    static uint64_t v[3][4096];
    while (now() < end) {
        uint64_t s0 = now();
        int n = 0;
        while (now() - s0 < 20000000ull && n < 4096) {
            for (int k = 0; k < 3; k++) {
                uint64_t t = now();
                f[k]();
                v[k][n] = now() - t;
            }
            n++;
        }
        printf("%d %.3f", cpu, (s0 % 100000000000ull) / 1e9);
        for (int k = 0; k < 3; k++) {
            qsort(v[k], n, 8, cmp);
            printf(" %llu", (unsigned long long)v[k][n / 2]);
        }
        printf("\n");
    }
    return 0;
}
