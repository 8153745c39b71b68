/* The CPU-state gauge: a dependent walk over a random cycle of cache lines (see cpu_gauge.h). */
#include "cpu_gauge.h"

#include <stdlib.h>
#include <time.h>

#define GAUGE_BYTES (64u << 10)
#define WORDS_PER_LINE 16u /* one uint32_t entry used per 64-byte line */
#define GAUGE_LINES (GAUGE_BYTES / 4u / WORDS_PER_LINE)

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool cuipc_cpu_gauge_init(cuipc_cpu_gauge *g) {
    g->at = 0;
    g->next = calloc(GAUGE_BYTES / 4u, sizeof *g->next);
    uint32_t *order = malloc(GAUGE_LINES * sizeof *order);
    if (g->next == NULL || order == NULL) {
        free(order);
        cuipc_cpu_gauge_free(g);
        return false;
    }
    /* A random order of the lines (Fisher-Yates, fixed seed): the prefetcher cannot run ahead
     * of a walk whose next address is the value just loaded. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (uint32_t i = 0; i < GAUGE_LINES; i++)
        order[i] = i;
    for (uint32_t i = GAUGE_LINES - 1; i > 0; i--) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t j = (uint32_t)(x % (i + 1u)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (uint32_t i = 0; i < GAUGE_LINES; i++)
        g->next[order[i] * WORDS_PER_LINE] = order[(i + 1u) % GAUGE_LINES] * WORDS_PER_LINE;
    g->at = order[0] * WORDS_PER_LINE;
    free(order);
    g->resident_ns = UINT64_MAX;
    for (int k = 0; k < 16; k++) { /* back to back: the set stays in the L2 between walks */
        uint64_t ns = cuipc_cpu_gauge_ns(g);
        g->resident_ns = ns < g->resident_ns ? ns : g->resident_ns;
    }
    return true;
}

uint64_t cuipc_cpu_gauge_ns(cuipc_cpu_gauge *g) {
    /* volatile: each load's address is the last load's value, never hoisted or elided. */
    const volatile uint32_t *next = g->next;
    uint32_t at = g->at;
    uint64_t t0 = now_ns();
    for (uint32_t i = 0; i < GAUGE_LINES; i++)
        at = next[at];
    uint64_t t1 = now_ns();
    g->at = at; /* a whole cycle: back where it started */
    return t1 - t0;
}

void cuipc_cpu_gauge_free(cuipc_cpu_gauge *g) {
    free(g->next);
    g->next = NULL;
}
