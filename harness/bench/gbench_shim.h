/* A small C API over Google Benchmark so the cuipc micro-benchmarks can be written in C.
 * Only calls present in both Google Benchmark 1.7.1 and 1.8.3 are used underneath. */
#ifndef CUIPC_GBENCH_SHIM_H
#define CUIPC_GBENCH_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cuipc_bench_state cuipc_bench_state; /* benchmark::State */
typedef struct cuipc_bench cuipc_bench;             /* benchmark::internal::Benchmark */

typedef void (*cuipc_bench_fn)(cuipc_bench_state *s, void *ctx);

typedef enum cuipc_bench_unit {
    CUIPC_BENCH_NS = 0,
    CUIPC_BENCH_US,
    CUIPC_BENCH_MS,
} cuipc_bench_unit;

/* How a counter value is reported. */
typedef enum cuipc_bench_counter_kind {
    CUIPC_COUNTER_PLAIN = 0,    /* as given */
    CUIPC_COUNTER_RATE,         /* divided by the measured time (per second) */
    CUIPC_COUNTER_PER_ITERATION /* divided by the iteration count (an average) */
} cuipc_bench_counter_kind;

/* Registration (before cuipc_bench_run). name is copied; ctx is passed back unchanged. */
cuipc_bench *cuipc_bench_register(const char *name, cuipc_bench_fn fn, void *ctx);
void cuipc_bench_arg(cuipc_bench *b, int64_t arg);
/* One run per entry of args (n entries) for argument 0: a short way to list sizes. */
void cuipc_bench_arg_list(cuipc_bench *b, const int64_t *args, size_t n);
void cuipc_bench_arg_name(cuipc_bench *b, const char *name);
/* Two-argument benchmarks: one run per call to args2, arguments named by arg_names2. */
void cuipc_bench_args2(cuipc_bench *b, int64_t arg0, int64_t arg1);
void cuipc_bench_arg_names2(cuipc_bench *b, const char *name0, const char *name1);
void cuipc_bench_use_manual_time(cuipc_bench *b);
/* Time by the wall clock (for work done by other processes) rather than this thread's CPU. */
void cuipc_bench_use_real_time(cuipc_bench *b);
void cuipc_bench_min_time(cuipc_bench *b, double seconds);
void cuipc_bench_iterations(cuipc_bench *b, int64_t n);
void cuipc_bench_repetitions(cuipc_bench *b, int n);
void cuipc_bench_time_unit(cuipc_bench *b, cuipc_bench_unit unit);

/* Inside a benchmark function: `while (cuipc_bench_keep_running(s)) { ... }`. */
bool cuipc_bench_keep_running(cuipc_bench_state *s);
int64_t cuipc_bench_range(const cuipc_bench_state *s, size_t i);
int64_t cuipc_bench_iterations_done(const cuipc_bench_state *s);
void cuipc_bench_set_iteration_time(cuipc_bench_state *s, double seconds);
void cuipc_bench_pause(cuipc_bench_state *s);
void cuipc_bench_resume(cuipc_bench_state *s);
void cuipc_bench_set_bytes_processed(cuipc_bench_state *s, int64_t bytes);
void cuipc_bench_set_items_processed(cuipc_bench_state *s, int64_t items);
void cuipc_bench_counter(cuipc_bench_state *s, const char *name, double value,
                         cuipc_bench_counter_kind kind);
void cuipc_bench_set_label(cuipc_bench_state *s, const char *label);
/* Marks the run as failed with msg; the caller must return without entering (or leave) the
 * keep_running loop. */
void cuipc_bench_skip_with_error(cuipc_bench_state *s, const char *msg);

/* Key/value shown in the context block of the console and JSON output. */
void cuipc_bench_add_context(const char *key, const char *value);

/* Initialize (parses --benchmark_* flags), report unknown arguments (returns 2), run every
 * registered benchmark matching the filter, shut down. Returns 0 on success. */
int cuipc_bench_run(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
