// Pattern fill and checksum kernels. The math lives in cuda_internal.h, shared with the host
// versions in gpu.c, so a device result can be compared with a host one bit for bit.
// Both kernels take any length and any alignment of p: 16-byte vector accesses where memory
// allows, byte accesses for the unaligned head and tail, never a byte outside p[0..n).
#include <cuda_runtime.h>

#include "cuda_internal.h"

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Blocks per SM for grid-stride loops: enough resident warps to hide memory latency.
constexpr int kBlocksPerSm = 8;

__global__ void fill_kernel(uint8_t *p, size_t n, uint64_t seed, size_t head, size_t chunks) {
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    // Body: 16-byte aligned chunks after the head, each two pattern words re-phased to the
    // chunk's byte index (the pattern follows the byte index, not the address).
    for (size_t c = tid; c < chunks; c += stride) {
        size_t j = head + 16 * c;
        ulonglong2 v;
        v.x = cuipc_pattern_bytes8(seed, j);
        v.y = cuipc_pattern_bytes8(seed, j + 8);
        *reinterpret_cast<ulonglong2 *>(p + j) = v;
    }
    // Edges: the head bytes before the first aligned chunk and the tail bytes after the last.
    size_t tail_start = head + 16 * chunks;
    size_t edge = head + (n - tail_start);
    for (size_t e = tid; e < edge; e += stride) {
        size_t j = e < head ? e : tail_start + (e - head);
        p[j] = cuipc_pattern_byte(seed, j);
    }
}

// Logical word i (bytes 8i .. 8i+7 of p, zero past n) for p with address misalignment s = p % 8.
__device__ uint64_t load_word(const uint8_t *__restrict__ p, size_t n, size_t i, unsigned s) {
    size_t off = 8 * i;
    if (off + 8 <= n) {
        if (s == 0)
            return *reinterpret_cast<const uint64_t *>(p + off);
        // Two aligned loads around the word, used only when both lie inside p[0..n).
        if (off >= 8 && off - s + 16 <= n) {
            const uint64_t *m = reinterpret_cast<const uint64_t *>(p + off - s);
            return (m[0] >> (8 * s)) | (m[1] << (64 - 8 * s));
        }
    }
    uint64_t w = 0;
    for (unsigned b = 0; b < 8 && off + b < n; b++)
        w |= (uint64_t)p[off + b] << (8 * b);
    return w;
}

__global__ void checksum_kernel(const uint8_t *__restrict__ p, size_t n, bool aligned16,
                                unsigned long long *sum) {
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t words = (n + 7) / 8;
    unsigned s = (unsigned)((uintptr_t)p & 7);
    uint64_t acc = 0;
    size_t first_single = 0;
    if (aligned16) {
        size_t pairs = n / 16;
        const ulonglong2 *v = reinterpret_cast<const ulonglong2 *>(p);
        for (size_t q = tid; q < pairs; q += stride) {
            ulonglong2 w = v[q];
            acc += cuipc_checksum_term(w.x, 2 * q) + cuipc_checksum_term(w.y, 2 * q + 1);
        }
        first_single = 2 * pairs;
    }
    for (size_t i = first_single + tid; i < words; i += stride)
        acc += cuipc_checksum_term(load_word(p, n, i, s), i);

    // Block reduction: warp shuffles, then the first warp sums the warp totals; one atomicAdd
    // per block (addition mod 2^64 is order-independent, so the result is deterministic).
    for (int o = 16; o > 0; o >>= 1)
        acc += __shfl_down_sync(0xffffffffu, acc, o);
    __shared__ uint64_t warp_sums[kWarps];
    unsigned lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    if (lane == 0)
        warp_sums[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < kWarps ? warp_sums[lane] : 0;
        for (int o = 16; o > 0; o >>= 1)
            acc += __shfl_down_sync(0xffffffffu, acc, o);
        if (lane == 0)
            atomicAdd(sum, (unsigned long long)acc);
    }
}

// Enough blocks to cover the work, at most kBlocksPerSm per SM of the current device.
cudaError_t grid_for(size_t work, unsigned *blocks) {
    int dev = 0, sms = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (err != cudaSuccess)
        return err;
    size_t want = (work + kThreads - 1) / kThreads;
    size_t cap = (size_t)(sms > 0 ? sms : 1) * kBlocksPerSm;
    *blocks = (unsigned)(want < cap ? (want > 0 ? want : 1) : cap);
    return cudaSuccess;
}

} // namespace

extern "C" cudaError_t cuipc_kernel_fill_pattern(void *p, size_t n, uint64_t seed,
                                                 cudaStream_t stream) {
    if (n == 0)
        return cudaSuccess;
    uint8_t *b = static_cast<uint8_t *>(p);
    size_t head = (16 - ((uintptr_t)b & 15)) & 15;
    if (head > n)
        head = n;
    size_t chunks = (n - head) / 16;
    unsigned blocks = 0;
    cudaError_t err = grid_for(chunks > 0 ? chunks : 32, &blocks);
    if (err != cudaSuccess)
        return err;
    fill_kernel<<<blocks, kThreads, 0, stream>>>(b, n, seed, head, chunks);
    return cudaGetLastError();
}

extern "C" cudaError_t cuipc_kernel_checksum_add(const void *p, size_t n,
                                                 unsigned long long *dev_sum, cudaStream_t stream) {
    if (n == 0)
        return cudaSuccess;
    const uint8_t *b = static_cast<const uint8_t *>(p);
    bool aligned16 = ((uintptr_t)b & 15) == 0;
    unsigned blocks = 0;
    cudaError_t err = grid_for(aligned16 ? (n + 15) / 16 : (n + 7) / 8, &blocks);
    if (err != cudaSuccess)
        return err;
    checksum_kernel<<<blocks, kThreads, 0, stream>>>(b, n, aligned16, dev_sum);
    return cudaGetLastError();
}
