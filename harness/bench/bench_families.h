/* The benchmark families of cuipc-bench: each file registers its own benchmarks. */
#ifndef CUIPC_BENCH_FAMILIES_H
#define CUIPC_BENCH_FAMILIES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cuipc/status.h"

void cuipc_bench_register_allocator(void);
void cuipc_bench_register_sync(void);
void cuipc_bench_register_codec(void);
void cuipc_bench_register_ring(void);
void cuipc_bench_register_gpu(void);
/* gpu/limit_p2p_memcpy_64mib: the peer copy limit between GPU 0 and GPU 1 (bench_peer.c). */
void cuipc_bench_register_peer(void);
void cuipc_bench_register_signal(void);
/* The msgpath family: wrap, send and receive of host tensors in one process (bench_msgpath.c). */
void cuipc_bench_register_msgpath(void);
void cuipc_bench_signal_teardown(void);
/* Reap a peer process that was told to stop: wait up to 2 s for it to exit, then kill it. */
void cuipc_bench_reap_peer(pid_t pid);

/* The GPU peer process of gpu_signal: forked, like the ring peer, before CUDA is touched. */
void cuipc_bench_gpu_peer_start(void);
void cuipc_bench_gpu_peer_stop(void);

/* The ring peer is fork()ed before anything touches CUDA (a CUDA context does not survive
 * fork); stop ends it and reaps it. */
cuipc_status cuipc_bench_ring_peer_start(void);
void cuipc_bench_ring_peer_stop(void);

/* Measures the copy limits at every GPU size (after the ring peer fork); false without a GPU. */
bool cuipc_bench_gpu_setup(void);
void cuipc_bench_gpu_teardown(void);

/* A small deterministic generator (xorshift64*) so runs are repeatable. */
static inline uint64_t cuipc_bench_rand(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

#endif
