/* Allocator: one free + one alloc of a random size (256 B .. 4 MiB, log-uniform so small
 * chunks dominate as they do in practice) per iteration, in an arena pre-fragmented by filling
 * it and freeing every other block. Both fit policies. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "allocator.h"
#include "bench_families.h"
#include "gbench_shim.h"

#define ARENA_BYTES (1ull << 30)
#define MIN_SIZE 256.0
#define MAX_SIZE (4.0 * 1024 * 1024)
#define SIZE_TABLE 65536 /* precomputed sizes keep the RNG and log math out of the loop */
#define NO_BLOCK UINT64_MAX

static uint64_t random_size(uint64_t *rng) {
    double u = (double)(cuipc_bench_rand(rng) >> 11) / (double)(1ull << 53);
    return (uint64_t)(MIN_SIZE * pow(MAX_SIZE / MIN_SIZE, u));
}

static void bench_alloc_free(cuipc_bench_state *s, void *ctx) {
    cuipc_fit fit = (cuipc_fit)cuipc_bench_range(s, 0);
    cuipc_allocator *a = NULL;
    uint64_t *sizes = malloc(SIZE_TABLE * sizeof *sizes);
    uint64_t *live = NULL;
    if (!sizes || cuipc_allocator_create(ARENA_BYTES, 256, fit, &a) != CUIPC_OK) {
        cuipc_bench_skip_with_error(s, cuipc_last_error());
        free(sizes);
        return;
    }
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < SIZE_TABLE; i++)
        sizes[i] = random_size(&rng);

    /* Fill the arena, then free every other block: holes of every size, half the arena free. */
    size_t cap = 1024, n = 0;
    live = malloc(cap * sizeof *live);
    uint64_t off;
    for (size_t k = 0; live; k++) {
        if (cuipc_allocator_alloc(a, sizes[k % SIZE_TABLE], &off) != CUIPC_OK)
            break;
        if (n == cap) {
            uint64_t *grown = realloc(live, 2 * cap * sizeof *live);
            if (!grown)
                break;
            live = grown;
            cap *= 2;
        }
        live[n++] = off;
    }
    if (!live || n < 2) {
        cuipc_bench_skip_with_error(s, "could not pre-fill the arena");
        goto out;
    }
    for (size_t i = 0; i < n; i += 2) {
        if (cuipc_allocator_free(a, live[i]) != CUIPC_OK) {
            cuipc_bench_skip_with_error(s, cuipc_last_error());
            goto out;
        }
        live[i] = NO_BLOCK;
    }
    cuipc_allocator_stats st;
    cuipc_allocator_stats_get(a, &st);
    double frag_start = st.free ? 1.0 - (double)st.largest_free / (double)st.free : 0.0;

    uint64_t full = 0, k = 0;
    while (cuipc_bench_keep_running(s)) {
        size_t victim = (size_t)(cuipc_bench_rand(&rng) % n);
        if (live[victim] != NO_BLOCK && cuipc_allocator_free(a, live[victim]) != CUIPC_OK) {
            cuipc_bench_skip_with_error(s, cuipc_last_error()); /* a live block refused */
            goto out;
        }
        if (cuipc_allocator_alloc(a, sizes[k++ % SIZE_TABLE], &live[victim]) != CUIPC_OK) {
            live[victim] = NO_BLOCK;
            full++; /* no hole large enough: counted, the slot stays empty */
        }
    }
    if (cuipc_allocator_check(a) != CUIPC_OK) {
        cuipc_bench_skip_with_error(s, cuipc_last_error());
        goto out;
    }
    cuipc_allocator_stats_get(a, &st);
    cuipc_bench_set_items_processed(s, cuipc_bench_iterations_done(s));
    cuipc_bench_counter(s, "live_blocks", (double)st.used_blocks, CUIPC_COUNTER_PLAIN);
    cuipc_bench_counter(s, "frag_start", frag_start, CUIPC_COUNTER_PLAIN);
    cuipc_bench_counter(s, "frag_end",
                        st.free ? 1.0 - (double)st.largest_free / (double)st.free : 0.0,
                        CUIPC_COUNTER_PLAIN);
    cuipc_bench_counter(s, "full_pct", 100.0 * (double)full, CUIPC_COUNTER_PER_ITERATION);
    cuipc_bench_set_label(s, fit == CUIPC_FIT_BEST ? "best fit" : "first fit");
out:
    free(live);
    free(sizes);
    cuipc_allocator_destroy(a);
}

void cuipc_bench_register_allocator(void) {
    cuipc_bench *b =
        cuipc_bench_register("allocator/alloc_free_fragmented", bench_alloc_free, NULL);
    cuipc_bench_arg_name(b, "fit");
    cuipc_bench_arg(b, CUIPC_FIT_BEST);
    cuipc_bench_arg(b, CUIPC_FIT_FIRST);
}
