// The C shim over Google Benchmark: each C benchmark is wrapped in a lambda that forwards the
// benchmark::State as an opaque pointer.
#include "gbench_shim.h"

#include <benchmark/benchmark.h>

namespace {

benchmark::State *state_of(cuipc_bench_state *s) {
    return reinterpret_cast<benchmark::State *>(s);
}

const benchmark::State *state_of(const cuipc_bench_state *s) {
    return reinterpret_cast<const benchmark::State *>(s);
}

benchmark::internal::Benchmark *bench_of(cuipc_bench *b) {
    return reinterpret_cast<benchmark::internal::Benchmark *>(b);
}

} // namespace

extern "C" {

cuipc_bench *cuipc_bench_register(const char *name, cuipc_bench_fn fn, void *ctx) {
    auto *b = benchmark::RegisterBenchmark(name, [fn, ctx](benchmark::State &st) {
        fn(reinterpret_cast<cuipc_bench_state *>(&st), ctx);
    });
    return reinterpret_cast<cuipc_bench *>(b);
}

void cuipc_bench_arg(cuipc_bench *b, int64_t arg) {
    bench_of(b)->Arg(arg);
}

void cuipc_bench_arg_list(cuipc_bench *b, const int64_t *args, size_t n) {
    for (size_t i = 0; i < n; i++)
        bench_of(b)->Arg(args[i]);
}

void cuipc_bench_arg_name(cuipc_bench *b, const char *name) {
    bench_of(b)->ArgName(name);
}

void cuipc_bench_args2(cuipc_bench *b, int64_t arg0, int64_t arg1) {
    bench_of(b)->Args({arg0, arg1});
}

void cuipc_bench_arg_names2(cuipc_bench *b, const char *name0, const char *name1) {
    bench_of(b)->ArgNames({name0, name1});
}

void cuipc_bench_use_manual_time(cuipc_bench *b) {
    bench_of(b)->UseManualTime();
}

void cuipc_bench_use_real_time(cuipc_bench *b) {
    bench_of(b)->UseRealTime();
}

void cuipc_bench_min_time(cuipc_bench *b, double seconds) {
    bench_of(b)->MinTime(seconds);
}

void cuipc_bench_iterations(cuipc_bench *b, int64_t n) {
    bench_of(b)->Iterations(static_cast<benchmark::IterationCount>(n));
}

void cuipc_bench_repetitions(cuipc_bench *b, int n) {
    bench_of(b)->Repetitions(n);
}

void cuipc_bench_time_unit(cuipc_bench *b, cuipc_bench_unit unit) {
    benchmark::TimeUnit u = unit == CUIPC_BENCH_MS   ? benchmark::kMillisecond
                            : unit == CUIPC_BENCH_US ? benchmark::kMicrosecond
                                                     : benchmark::kNanosecond;
    bench_of(b)->Unit(u);
}

bool cuipc_bench_keep_running(cuipc_bench_state *s) {
    return state_of(s)->KeepRunning();
}

int64_t cuipc_bench_range(const cuipc_bench_state *s, size_t i) {
    return state_of(s)->range(i);
}

int64_t cuipc_bench_iterations_done(const cuipc_bench_state *s) {
    return static_cast<int64_t>(state_of(s)->iterations());
}

void cuipc_bench_set_iteration_time(cuipc_bench_state *s, double seconds) {
    state_of(s)->SetIterationTime(seconds);
}

void cuipc_bench_pause(cuipc_bench_state *s) {
    state_of(s)->PauseTiming();
}

void cuipc_bench_resume(cuipc_bench_state *s) {
    state_of(s)->ResumeTiming();
}

void cuipc_bench_set_bytes_processed(cuipc_bench_state *s, int64_t bytes) {
    state_of(s)->SetBytesProcessed(bytes);
}

void cuipc_bench_set_items_processed(cuipc_bench_state *s, int64_t items) {
    state_of(s)->SetItemsProcessed(items);
}

void cuipc_bench_counter(cuipc_bench_state *s, const char *name, double value,
                         cuipc_bench_counter_kind kind) {
    benchmark::Counter::Flags flags = kind == CUIPC_COUNTER_RATE ? benchmark::Counter::kIsRate
                                      : kind == CUIPC_COUNTER_PER_ITERATION
                                          ? benchmark::Counter::kAvgIterations
                                          : benchmark::Counter::kDefaults;
    state_of(s)->counters[name] = benchmark::Counter(value, flags);
}

void cuipc_bench_set_label(cuipc_bench_state *s, const char *label) {
    state_of(s)->SetLabel(label);
}

void cuipc_bench_skip_with_error(cuipc_bench_state *s, const char *msg) {
    state_of(s)->SkipWithError(msg);
}

void cuipc_bench_add_context(const char *key, const char *value) {
    benchmark::AddCustomContext(key, value);
}

int cuipc_bench_run(int argc, char **argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 2;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

} // extern "C"
