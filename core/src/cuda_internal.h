/* Shared by the three files of cuipc_cudart only (cuda_api.c, gpu.c, gpu_kernels.cu): the one
 * definition of the test pattern and checksum (compiled for host and device from this same
 * code, so both sides cannot drift apart), the kernel launchers, and the CUDA error helpers.
 *
 * Pattern: byte j of a buffer filled with seed s is byte (j % 8) (little-endian) of word
 *   W(s, j / 8), where W(s, k) is the k-th output (k from 0) of the splitmix64 generator seeded
 *   with s, i.e. splitmix64_finalize(s + (k + 1) * 0x9E3779B97F4A7C15).
 *   A buffer filled at any address therefore holds the same bytes, and a shorter fill is a
 *   prefix of a longer one.
 * Checksum of n bytes: read them as little-endian 8-byte words w_0 .. w_{m-1}, m = ceil(n / 8),
 *   the last word zero-padded, then
 *     checksum = fmix64(n) + sum_i fmix64(w_i ^ ((i + 1) * 0x9E3779B97F4A7C15))   (mod 2^64)
 *   with fmix64 the MurmurHash3 64-bit finaliser (a bijection). A sum parallelises on a GPU
 *   (block reduction + one atomicAdd per block); mixing the word index in makes it
 *   order-sensitive; since fmix64 is a bijection, changing any one word (any byte) always
 *   changes the sum; fmix64(n) separates lengths that differ only by zero padding; the empty
 *   buffer sums to 0. */
#ifndef CUIPC_CUDA_INTERNAL_H
#define CUIPC_CUDA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "cuipc/base.h"
#include "cuipc/status.h"

#ifdef __CUDACC__
#define CUIPC_HD __host__ __device__
#else
#define CUIPC_HD
#endif

#define CUIPC_GOLDEN_GAMMA 0x9E3779B97F4A7C15ull

#ifdef __cplusplus
extern "C" {
#endif

static inline CUIPC_HD uint64_t cuipc_splitmix64_finalize(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline CUIPC_HD uint64_t cuipc_fmix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    k *= 0xC4CEB9FE1A85EC53ull;
    return k ^ (k >> 33);
}

/* Pattern word k (bytes 8k .. 8k+7 of the pattern) for this seed. */
static inline CUIPC_HD uint64_t cuipc_pattern_word(uint64_t seed, uint64_t k) {
    return cuipc_splitmix64_finalize(seed + (k + 1) * CUIPC_GOLDEN_GAMMA);
}

static inline CUIPC_HD uint8_t cuipc_pattern_byte(uint64_t seed, uint64_t j) {
    return (uint8_t)(cuipc_pattern_word(seed, j >> 3) >> (8 * (j & 7)));
}

/* Pattern bytes j .. j+7 as a little-endian word (j need not be a multiple of 8). */
static inline CUIPC_HD uint64_t cuipc_pattern_bytes8(uint64_t seed, uint64_t j) {
    uint64_t lo = cuipc_pattern_word(seed, j >> 3);
    unsigned shift = 8 * (unsigned)(j & 7);
    if (shift == 0)
        return lo;
    return (lo >> shift) | (cuipc_pattern_word(seed, (j >> 3) + 1) << (64 - shift));
}

/* Contribution of word i (value w) to the checksum. */
static inline CUIPC_HD uint64_t cuipc_checksum_term(uint64_t w, uint64_t i) {
    return cuipc_fmix64(w ^ ((i + 1) * CUIPC_GOLDEN_GAMMA));
}

/* The part of the checksum that depends on the length only. */
static inline CUIPC_HD uint64_t cuipc_checksum_length_term(uint64_t n) {
    return cuipc_fmix64(n);
}

/* Kernel launchers (gpu_kernels.cu). They launch on stream (NULL: the legacy default stream of
 * the current device); p must be accessible from that device. n may be 0 (nothing launched). */
cudaError_t cuipc_kernel_fill_pattern(void *p, size_t n, uint64_t seed, cudaStream_t stream);
/* Adds the word terms of the checksum of p[0..n) into *dev_sum (device memory, not zeroed here). */
cudaError_t cuipc_kernel_checksum_add(const void *p, size_t n, unsigned long long *dev_sum,
                                      cudaStream_t stream);

/* Record "call(args) failed: cudaErrorX: text" as the message of function where, clear the
 * runtime's last-error state, and return CUIPC_ERR_NO_GPU for driver/device absence, else
 * CUIPC_ERR_CUDA. args_fmt describes the arguments (device, sizes, pointers). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_fail(const char *where, cudaError_t err, const char *call,
                             const char *args_fmt, ...) __attribute__((format(printf, 4, 5)));

/* Number of usable devices (cached; 0 without driver or device). */
int cuipc_cuda_device_count(void);

/* Record why no GPU is usable as the message of function where; returns CUIPC_ERR_NO_GPU. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_cuda_no_gpu(const char *where);

#define CUIPC_CUDA_FAIL(err, call, ...) cuipc_cuda_fail(__func__, (err), (call), __VA_ARGS__)
#define CUIPC_REQUIRE_GPU()                                                                        \
    do {                                                                                           \
        if (!cuipc_cuda_present())                                                                 \
            return cuipc_cuda_no_gpu(__func__);                                                    \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
