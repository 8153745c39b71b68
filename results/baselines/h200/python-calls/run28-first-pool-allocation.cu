// The CUDA probe of run 28 (its output: run28-first-pool-allocation.log, with the first copy
// lines of the GPU test's consumer appended): a pool made as cuipc's copy-out pool is, its first
// allocations one by one, then each CUDA call of the C producer's per-message path run 1000
// times with the page faults of this thread counted around it.
//     nvcc -O2 -arch=sm_90 -o probe run28-first-pool-allocation.cu -lcuda && ./probe
// Which CUDA call of the C producer's per-message path takes minor page faults: each step run
// 1000 times with a stream sync after each, this thread's minor faults counted around it.
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/time.h>

static long faults() {
    struct rusage r;
    getrusage(RUSAGE_THREAD, &r);
    return r.ru_minflt;
}
__global__ void k(unsigned long long *p) { atomicAdd(p, 1ull); }
#define N 1000
#define STEP(name, ...)                                                                      \
    do {                                                                                      \
        long f0 = faults();                                                                   \
        struct timeval t0, t1;                                                                \
        gettimeofday(&t0, 0);                                                                 \
        for (int i = 0; i < N; i++) {                                                         \
            __VA_ARGS__;                                                                      \
            cudaStreamSynchronize(s);                                                         \
        }                                                                                     \
        gettimeofday(&t1, 0);                                                                 \
        printf("%-34s faults/iter %6.2f  us/iter %7.1f  err %s\n", name,                     \
               (double)(faults() - f0) / N,                                                   \
               ((t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_usec - t0.tv_usec)) / N,               \
               cudaGetErrorString(cudaGetLastError()));                                       \
    } while (0)

static void hostfn(void *) {}

int main() {
    cudaSetDevice(0);
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    unsigned long long *d, *pinned, stack = 0;
    cudaMalloc(&d, 1 << 20);
    cudaMallocHost(&pinned, 64);
    unsigned *word;
    cudaHostAlloc(&word, 64, cudaHostAllocMapped);
    CUdeviceptr dword;
    cuMemHostGetDevicePointer(&dword, word, 0);
    void *d2;
    cudaMalloc(&d2, 1 << 20);
    // A pool made as cuipc's copy-out pool is: its first allocations, one by one.
    for (int pool_no = 0; pool_no < 2; pool_no++) {
        cudaMemPoolProps props = {};
        props.allocType = cudaMemAllocationTypePinned;
        props.location.type = cudaMemLocationTypeDevice;
        props.location.id = 0;
        cudaMemPool_t pool;
        cudaMemPoolCreate(&pool, &props);
        unsigned long long keep = 64ull << 20;
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
        for (int i = 0; i < 4; i++) {
            long f0 = faults();
            struct timeval t0, t1;
            gettimeofday(&t0, 0);
            void *p;
            cudaMallocFromPoolAsync(&p, i < 2 ? 1 : 4096, pool, s);
            cudaFreeAsync(p, s);
            cudaStreamSynchronize(s);
            gettimeofday(&t1, 0);
            printf("new pool %d, allocation %d (%d B): faults %ld, us %.1f, err %s\n", pool_no, i,
                   i < 2 ? 1 : 4096, faults() - f0,
                   (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_usec - t0.tv_usec),
                   cudaGetErrorString(cudaGetLastError()));
        }
    }
    for (int r = 0; r < 2; r++) {
        printf("round %d\n", r);
        STEP("sync alone", (void)0);
        STEP("kernel", k<<<1, 1, 0, s>>>(d));
        STEP("memset 8", cudaMemsetAsync(d, 0, 8, s));
        STEP("memcpy D2H 8 pageable (stack)", cudaMemcpyAsync(&stack, d, 8, cudaMemcpyDeviceToHost, s));
        STEP("memcpy D2H 8 pinned", cudaMemcpyAsync(pinned, d, 8, cudaMemcpyDeviceToHost, s));
        STEP("memcpy D2D 4 KiB", cudaMemcpyAsync(d2, d, 4096, cudaMemcpyDeviceToDevice, s));
        STEP("mallocAsync+freeAsync 8", {
            void *p;
            cudaMallocAsync(&p, 8, s);
            cudaFreeAsync(p, s);
        });
        STEP("cuStreamWriteValue32 host word", cuStreamWriteValue32((CUstream)s, dword, i, 0));
        STEP("cudaLaunchHostFunc", cudaLaunchHostFunc(s, hostfn, NULL));
        STEP("cudaPointerGetAttributes", {
            cudaPointerAttributes a;
            cudaPointerGetAttributes(&a, d2);
        });
        STEP("cuMemGetAddressRange", {
            CUdeviceptr b;
            size_t n;
            cuMemGetAddressRange(&b, &n, (CUdeviceptr)d2);
        });
        STEP("checksum-like (memset,kernel,D2H stack,mallocAsync)", {
            void *p;
            cudaMallocAsync(&p, 8, s);
            cudaMemsetAsync(p, 0, 8, s);
            k<<<1, 1, 0, s>>>((unsigned long long *)p);
            cudaMemcpyAsync(&stack, p, 8, cudaMemcpyDeviceToHost, s);
            cudaFreeAsync(p, s);
        });
    }
    return 0;
}
