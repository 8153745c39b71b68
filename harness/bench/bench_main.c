/* cuipc-bench: the micro-benchmarks of cuipc on Google Benchmark (flags: --benchmark_filter,
 * --benchmark_min_time, --benchmark_out=FILE --benchmark_out_format=json, ...). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_families.h"
#include "cuipc_version.h"
#include "cuipc/gpu.h"
#include "gbench_shim.h"

void cuipc_bench_reap_peer(pid_t pid) {
    for (int i = 0; i < 200 && waitpid(pid, NULL, WNOHANG) == 0; i++)
        usleep(10000);
    if (kill(pid, 0) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

static void add_gpu_context(void) {
    cuipc_gpu_info info;
    if (cuipc_gpu_count() == 0 || cuipc_gpu_info_get(0, &info) != CUIPC_OK) {
        cuipc_bench_add_context("gpu", "none");
        cuipc_bench_add_context("cuda_driver", "none");
        cuipc_bench_add_context("cuda_runtime", "none");
        return;
    }
    char v[64];
    cuipc_bench_add_context("gpu", info.name);
    snprintf(v, sizeof v, "%d", info.driver_version);
    cuipc_bench_add_context("cuda_driver", v);
    snprintf(v, sizeof v, "%d", info.runtime_version);
    cuipc_bench_add_context("cuda_runtime", v);
}

int main(int argc, char **argv) {
    /* --help is Google Benchmark's; it knows no version of ours. */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--version") == 0) {
            printf("cuipc-bench %s\n", CUIPC_VERSION);
            return 0;
        }
    /* First of all: fork the ring peer, while no CUDA context exists in this process. */
    if (cuipc_bench_ring_peer_start() != CUIPC_OK)
        fprintf(stderr, "cuipc-bench: ring peer not started (%s): ring benchmarks will fail\n",
                cuipc_last_error());
    cuipc_bench_gpu_peer_start();
    cuipc_bench_register_allocator();
    cuipc_bench_register_sync();
    cuipc_bench_register_codec();
    cuipc_bench_register_ring();
    cuipc_bench_register_gpu();
    cuipc_bench_register_peer();
    cuipc_bench_register_signal();
    cuipc_bench_register_msgpath();
    add_gpu_context();
    cuipc_bench_gpu_setup();
    int rc = cuipc_bench_run(argc, argv);
    cuipc_bench_signal_teardown();
    cuipc_bench_gpu_teardown();
    cuipc_bench_ring_peer_stop();
    cuipc_bench_gpu_peer_stop();
    return rc;
}
