/* Sync table: one full chunk life cycle per iteration as the producer and N consumers see it:
 * begin (new generation), ready, release by each consumer, done() observed. */
#include <stdio.h>

#include "bench_families.h"
#include "gbench_shim.h"
#include "sync_table.h"

#define SLOTS 256 /* cycling through slots touches different cache lines, as real traffic does */

static void bench_cycle(cuipc_bench_state *s, void *ctx) {
    uint32_t consumers = (uint32_t)cuipc_bench_range(s, 0);
    uint64_t mask = consumers >= 64 ? ~0ull : (1ull << consumers) - 1;
    cuipc_sync_table *t = NULL;
    if (cuipc_sync_table_create(SLOTS, consumers, 1, 1ull << 30, &t) != CUIPC_OK) {
        cuipc_bench_skip_with_error(s, cuipc_last_error());
        return;
    }
    uint32_t slot = 0;
    uint64_t not_done = 0, rejected = 0;
    while (cuipc_bench_keep_running(s)) {
        uint32_t gen = cuipc_sync_begin(t, slot, (uint64_t)slot << 20, 4096, mask);
        cuipc_sync_set_ready(t, slot, gen);
        for (uint32_t c = 0; c < consumers; c++)
            rejected += cuipc_sync_release(t, slot, gen, c) != CUIPC_OK;
        not_done += !cuipc_sync_done(t, slot, mask);
        slot = (slot + 1) % SLOTS;
    }
    cuipc_sync_table_destroy(t);
    if (not_done || rejected) {
        char msg[128];
        snprintf(msg, sizeof msg, "%llu cycles not done, %llu releases rejected",
                 (unsigned long long)not_done, (unsigned long long)rejected);
        cuipc_bench_skip_with_error(s, msg);
        return;
    }
    cuipc_bench_set_items_processed(s, cuipc_bench_iterations_done(s));
}

void cuipc_bench_register_sync(void) {
    cuipc_bench *b = cuipc_bench_register("sync/begin_release_done", bench_cycle, NULL);
    cuipc_bench_arg_name(b, "consumers");
    static const int64_t consumers[] = {1, 4, 8};
    cuipc_bench_arg_list(b, consumers, 3);
}
