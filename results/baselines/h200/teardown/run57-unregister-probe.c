/* Does cudaHostUnregister wait for a stream write queued into the range? A stream held by a
 * gate queues a write into a registered page; the page is unregistered; the gate opens; the
 * stream's sync then says whether the write faulted. */
#include <cuda.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static volatile unsigned *gate;
static void *opener(void *a) { (void)a; usleep(300000); __atomic_store_n(gate, 1, __ATOMIC_RELEASE); return NULL; }
static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
int main(int argc, char **argv) {
    int free_table = argc > 1; /* also munmap the page after unregistering */
    cudaSetDevice(0);
    cudaFree(0);
    gate = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned *table = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    void *gate_dev, *table_dev;
    cudaHostRegister((void *)gate, 4096, cudaHostRegisterMapped);
    cudaHostRegister(table, 4096, cudaHostRegisterMapped);
    cudaHostGetDevicePointer(&gate_dev, (void *)gate, 0);
    cudaHostGetDevicePointer(&table_dev, table, 0);
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    CUresult r1 = cuStreamWaitValue32((CUstream)s, (CUdeviceptr)gate_dev, 1, CU_STREAM_WAIT_VALUE_GEQ);
    CUresult r2 = cuStreamWriteValue32((CUstream)s, (CUdeviceptr)table_dev, 7, 0);
    pthread_t t;
    pthread_create(&t, NULL, opener, NULL);
    double t0 = now_ms();
    cudaError_t u = cudaHostUnregister(table);
    double took = now_ms() - t0;
    if (free_table) munmap(table, 4096);
    pthread_join(t, NULL);
    cudaError_t e = cudaStreamSynchronize(s);
    cudaError_t d = cudaDeviceSynchronize();
    printf("munmap=%d wait=%d write=%d unregister=%s after %.1f ms; stream sync=%s; device sync=%s; word=%u\n",
           free_table, r1, r2, cudaGetErrorName(u), took, cudaGetErrorName(e), cudaGetErrorName(d),
           free_table ? 0 : *table);
    return 0;
}
