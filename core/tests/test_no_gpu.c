/* Without a driver or device (the CPU CI machine) every CUDA-backed call must fail cleanly with
 * NO_GPU and a message naming the function and the reason, never crash; the device count is
 * 0 from every thread. On a GPU machine there is nothing to check here: it passes saying so. */
#include <pthread.h>
#include <string.h>

#include "cuda_api.h"
#include "cuipc/gpu.h"
#include "cuipc/pattern.h"
#include "test_util.h"

/* The call returns NO_GPU and its message names the function and says why. */
#define CHECK_NO_GPU(func, ...)                                                                    \
    do {                                                                                           \
        cuipc_clear_error();                                                                       \
        CHECK_STATUS(func(__VA_ARGS__), CUIPC_ERR_NO_GPU);                                         \
        if (strstr(cuipc_last_error(), #func) == NULL ||                                           \
            strstr(cuipc_last_error(), "no usable CUDA device") == NULL) {                         \
            fprintf(stderr, "%s:%d: %s: message lacks the function or the reason: \"%s\"\n",       \
                    __FILE__, __LINE__, #func, cuipc_last_error());                                \
            cuipc_test_failures++;                                                                 \
        }                                                                                          \
    } while (0)

static void host_func(void *arg) {
    (void)arg;
}

static void *count_from_thread(void *arg) {
    *(int *)arg = cuipc_gpu_count();
    return NULL;
}

int main(void) {
    /* Query from several threads at once first: the cached count must be set exactly once. */
    enum { THREADS = 4 };
    pthread_t th[THREADS];
    int counts[THREADS];
    for (int i = 0; i < THREADS; i++) {
        counts[i] = -1;
        REQUIRE(pthread_create(&th[i], NULL, count_from_thread, &counts[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK(counts[i] == cuipc_gpu_count());
    }
    CHECK((cuipc_gpu_count() > 0) == cuipc_cuda_present());

    if (cuipc_cuda_present()) {
        printf("test_no_gpu: %d GPU(s) present, the no-GPU paths cannot be exercised here\n",
               cuipc_gpu_count());
        return cuipc_test_finish("test_no_gpu");
    }
    CHECK(cuipc_gpu_count() == 0);

    uint8_t host[64];
    uint8_t handle[CUIPC_IPC_HANDLE_BYTES] = {0};
    void *ptr = NULL, *stream = NULL;
    size_t size = 0;
    int device = 0;
    uint64_t a = 0, b = 0;
    cuipc_gpu_info info;

    CHECK_NO_GPU(cuipc_cuda_set_device, 0);
    CHECK_NO_GPU(cuipc_cuda_pointer_device, host, &device);
    CHECK_NO_GPU(cuipc_cuda_alloc_range, host, &ptr, &size);
    CHECK_NO_GPU(cuipc_cuda_ipc_get, host, handle);
    CHECK_NO_GPU(cuipc_cuda_ipc_open, handle, 0, &ptr);
    CHECK_NO_GPU(cuipc_cuda_ipc_close, host);
    CHECK_NO_GPU(cuipc_cuda_malloc, 0, 4096, &ptr);
    CHECK_NO_GPU(cuipc_cuda_free, host);
    CHECK_NO_GPU(cuipc_cuda_host_register, host, sizeof host, &ptr);
    CHECK_NO_GPU(cuipc_cuda_host_unregister, host);
    CHECK_NO_GPU(cuipc_cuda_memcpy_async, host, host + 32, 16, NULL);
    CHECK_NO_GPU(cuipc_cuda_stream_sync, NULL);
    CHECK_NO_GPU(cuipc_cuda_stream_write_u32, NULL, host, 1);
    CHECK_NO_GPU(cuipc_cuda_stream_wait_u32, NULL, host, 1);
    CHECK_NO_GPU(cuipc_cuda_launch_host_func, NULL, host_func, NULL);
    CHECK_NO_GPU(cuipc_cuda_enable_peer, 0, 0);
    CHECK_NO_GPU(cuipc_cuda_mem_info, 0, &a, &b);
    CHECK_NO_GPU(cuipc_cuda_allocated_bytes, 0, &a);
    bool mps = false;
    CHECK_NO_GPU(cuipc_cuda_mps_enabled, 0, &mps);

    CHECK_NO_GPU(cuipc_gpu_info_get, 0, &info);
    CHECK_NO_GPU(cuipc_gpu_malloc, 0, 4096, &ptr);
    CHECK_NO_GPU(cuipc_gpu_free, host);
    CHECK_NO_GPU(cuipc_gpu_stream_create, 0, &stream);
    CHECK_NO_GPU(cuipc_gpu_stream_destroy, host);
    CHECK_NO_GPU(cuipc_gpu_stream_sync, NULL);
    CHECK_NO_GPU(cuipc_gpu_memcpy, host, host + 32, 16, NULL);
    CHECK_NO_GPU(cuipc_gpu_fill_pattern, host, sizeof host, 1, NULL);
    CHECK_NO_GPU(cuipc_gpu_checksum, host, sizeof host, NULL, &a);
    CHECK_NO_GPU(cuipc_gpu_allocated_bytes, 0, &a);
    CHECK_NO_GPU(cuipc_gpu_mps_client, 0, &mps);

    printf("example message: %s\n", cuipc_last_error());

    /* Freeing nothing is fine everywhere, so cleanup paths need no GPU check. */
    CHECK_OK(cuipc_cuda_free(NULL));
    CHECK_OK(cuipc_gpu_free(NULL));
    return cuipc_test_finish("test_no_gpu");
}
