/* Checked wrappers over the statically linked CUDA runtime, plus the three driver functions the
 * runtime lacks, looked up once at run time (never -lcuda: such a binary cannot even start
 * where no driver is installed). Without a driver or device every call returns NO_GPU. */
#include "cuda_api.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cuda.h> /* types and constants only: nothing from libcuda is linked */

#include "cuda_internal.h"
#include "cuipc/transport.h"
#include "error_internal.h"

/* ---- presence, cached once per process ---- */

static pthread_once_t presence_once = PTHREAD_ONCE_INIT;
static int device_count;
static cudaError_t device_count_error = cudaSuccess;
/* Set in a child fork()ed after this process initialised CUDA: the child cannot use CUDA, and
 * the resulting errors are cryptic, so messages say why. */
static volatile int forked_after_cuda_init;

static void mark_forked_child(void) {
    forked_after_cuda_init = 1;
}

static void presence_init(void) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        device_count_error = err;
        n = 0;
        (void)cudaGetLastError(); /* do not let the failed query leak into later calls */
    }
    device_count = n;
    pthread_atfork(NULL, NULL, mark_forked_child);
}

bool cuipc_cuda_present(void) {
    pthread_once(&presence_once, presence_init);
    return device_count > 0;
}

int cuipc_cuda_device_count(void) {
    pthread_once(&presence_once, presence_init);
    return device_count;
}

cuipc_status cuipc_cuda_no_gpu(const char *where) {
    if (device_count_error != cudaSuccess)
        return cuipc_error_set(
            CUIPC_ERR_NO_GPU, where, "no usable CUDA device (cudaGetDeviceCount: %s: %s)",
            cudaGetErrorName(device_count_error), cudaGetErrorString(device_count_error));
    return cuipc_error_set(CUIPC_ERR_NO_GPU, where,
                           "no usable CUDA device (cudaGetDeviceCount found 0 devices)");
}

cuipc_status cuipc_cuda_fail(const char *where, cudaError_t err, const char *call,
                             const char *args_fmt, ...) {
    char args[200];
    va_list ap;
    va_start(ap, args_fmt);
    vsnprintf(args, sizeof args, args_fmt, ap);
    va_end(ap);
    (void)cudaGetLastError(); /* clear the non-sticky error so the next call starts clean */
    cuipc_status code = (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver)
                            ? CUIPC_ERR_NO_GPU
                            : CUIPC_ERR_CUDA;
    return cuipc_error_set(code, where, "%s(%s) failed: %s: %s%s", call, args,
                           cudaGetErrorName(err), cudaGetErrorString(err),
                           forked_after_cuda_init
                               ? " (this process was fork()ed after its parent initialised "
                                 "CUDA; initialise CUDA only after fork)"
                               : "");
}

/* ---- driver entry points, fetched once ---- */

typedef CUresult (*cuipc_pfn_get_error_name)(CUresult error, const char **str);
typedef CUresult (*cuipc_pfn_mem_get_address_range)(CUdeviceptr *base, size_t *size,
                                                    CUdeviceptr ptr);
typedef CUresult (*cuipc_pfn_stream_value32)(CUstream stream, CUdeviceptr addr, cuuint32_t value,
                                             unsigned int flags);

static struct {
    pthread_once_t once;
    cuipc_pfn_get_error_name get_error_name;
    cuipc_pfn_mem_get_address_range mem_get_address_range;
    cuipc_pfn_stream_value32 stream_write_value32;
    cuipc_pfn_stream_value32 stream_wait_value32;
    char failure[256]; /* why a lookup failed, reported by every later call that needs it */
} driver = {.once = PTHREAD_ONCE_INIT};

/* ABI version asked for: 12.0 gives the _v2 stream memory operations and
 * cuMemGetAddressRange_v2 (64-bit sizes), the versions cuda.h of CUDA 12+ maps the names to. */
#define CUIPC_DRIVER_ABI_VERSION 12000

static void lookup(const char *symbol, void **fn) {
    enum cudaDriverEntryPointQueryResult query = cudaDriverEntryPointSymbolNotFound;
    cudaError_t err = cudaGetDriverEntryPointByVersion(symbol, fn, CUIPC_DRIVER_ABI_VERSION,
                                                       cudaEnableDefault, &query);
    if (err == cudaSuccess && query == cudaDriverEntryPointSuccess && *fn)
        return;
    *fn = NULL;
    (void)cudaGetLastError();
    if (driver.failure[0] == '\0')
        snprintf(driver.failure, sizeof driver.failure,
                 "cudaGetDriverEntryPointByVersion(\"%s\", version %d) failed: %s: %s "
                 "(query result %d: 1 = symbol not found, 2 = driver too old)",
                 symbol, CUIPC_DRIVER_ABI_VERSION, cudaGetErrorName(err), cudaGetErrorString(err),
                 (int)query);
}

static void driver_init(void) {
    lookup("cuGetErrorName", (void **)&driver.get_error_name);
    lookup("cuMemGetAddressRange", (void **)&driver.mem_get_address_range);
    lookup("cuStreamWriteValue32", (void **)&driver.stream_write_value32);
    lookup("cuStreamWaitValue32", (void **)&driver.stream_wait_value32);
}

static void driver_load(void) {
    pthread_once(&driver.once, driver_init);
}

static cuipc_status driver_missing(const char *where, const char *symbol) {
    return cuipc_error_set(CUIPC_ERR_UNSUPPORTED, where, "driver function %s unavailable: %s",
                           symbol, driver.failure);
}

static cuipc_status driver_fail(const char *where, CUresult res, const char *call,
                                const char *args_fmt, ...) {
    char args[200];
    va_list ap;
    va_start(ap, args_fmt);
    vsnprintf(args, sizeof args, args_fmt, ap);
    va_end(ap);
    const char *name = NULL;
    if (driver.get_error_name == NULL || driver.get_error_name(res, &name) != CUDA_SUCCESS ||
        name == NULL)
        name = "unknown CUresult";
    return cuipc_error_set(
        CUIPC_ERR_CUDA, where, "%s(%s) failed: %s (%d)%s", call, args, name, (int)res,
        forked_after_cuda_init ? " (this process was fork()ed after its parent initialised "
                                 "CUDA; initialise CUDA only after fork)"
                               : "");
}

/* ---- runtime wrappers ---- */

/* Functions taking a device make it current and leave it current: restoring the previous one
 * would create a context on it (cudaSetDevice initialises it since CUDA 12), which costs
 * hundreds of MiB on a GPU this process may never use. */
cuipc_status cuipc_cuda_set_device(int device) {
    CUIPC_REQUIRE_GPU();
    if (device < 0 || device >= device_count)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "device %d out of range (%d device(s))", device,
                          device_count);
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaSetDevice", "device %d", device);
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_pointer_device(const void *p, int *device) {
    CUIPC_REQUIRE_GPU();
    if (p == NULL || device == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "p=%p device=%p: both required", p,
                          (void *)device);
    struct cudaPointerAttributes attr;
    cudaError_t err = cudaPointerGetAttributes(&attr, p);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaPointerGetAttributes", "ptr %p", p);
    switch (attr.type) {
    case cudaMemoryTypeUnregistered: /* plain malloc/mmap memory: CUDA knows nothing of it */
    case cudaMemoryTypeHost:         /* pinned or registered host memory */
        *device = CUIPC_DEVICE_HOST;
        return CUIPC_OK;
    case cudaMemoryTypeDevice:
    case cudaMemoryTypeManaged: /* managed: the device it was allocated for */
        *device = attr.device;
        return CUIPC_OK;
    }
    return CUIPC_FAIL(CUIPC_ERR_CUDA, "cudaPointerGetAttributes(ptr %p) gave memory type %d", p,
                      (int)attr.type);
}

cuipc_status cuipc_cuda_alloc_range(const void *p, void **base, size_t *size) {
    CUIPC_REQUIRE_GPU();
    if (p == NULL || base == NULL || size == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "p=%p base=%p size=%p: all required", p,
                          (void *)base, (void *)size);
    driver_load();
    if (driver.mem_get_address_range == NULL)
        return driver_missing(__func__, "cuMemGetAddressRange");
    CUdeviceptr b = 0;
    size_t n = 0;
    CUresult res = driver.mem_get_address_range(&b, &n, (CUdeviceptr)(uintptr_t)p);
    if (res != CUDA_SUCCESS)
        return driver_fail(__func__, res, "cuMemGetAddressRange", "ptr %p", p);
    *base = (void *)(uintptr_t)b;
    *size = n;
    return CUIPC_OK;
}

_Static_assert(sizeof(cudaIpcMemHandle_t) == CUIPC_IPC_HANDLE_BYTES,
               "CUIPC_IPC_HANDLE_BYTES must match cudaIpcMemHandle_t");

cuipc_status cuipc_cuda_ipc_get(void *base, uint8_t handle[CUIPC_IPC_HANDLE_BYTES]) {
    CUIPC_REQUIRE_GPU();
    if (base == NULL || handle == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "base=%p handle=%p: both required", base,
                          (void *)handle);
    cudaIpcMemHandle_t h;
    cudaError_t err = cudaIpcGetMemHandle(&h, base);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaIpcGetMemHandle", "ptr %p", base);
    memcpy(handle, &h, sizeof h);
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_ipc_open(const uint8_t handle[CUIPC_IPC_HANDLE_BYTES], int device,
                                 void **ptr) {
    CUIPC_REQUIRE_GPU();
    if (handle == NULL || ptr == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "handle=%p ptr=%p: both required",
                          (const void *)handle, (void *)ptr);
    CUIPC_TRY(cuipc_cuda_set_device(device));
    cudaIpcMemHandle_t h;
    memcpy(&h, handle, sizeof h);
    void *p = NULL;
    /* Lazy peer access: the allocation may live on another GPU than the one opening it. */
    cudaError_t err = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaIpcOpenMemHandle",
                               "device %d, handle %02x%02x%02x%02x..., lazy peer access", device,
                               handle[0], handle[1], handle[2], handle[3]);
    *ptr = p;
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_ipc_close(void *ptr) {
    CUIPC_REQUIRE_GPU();
    if (ptr == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "ptr is NULL");
    cudaError_t err = cudaIpcCloseMemHandle(ptr);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaIpcCloseMemHandle", "ptr %p", ptr);
    return CUIPC_OK;
}

/* Bytes this process holds from cudaMalloc, per device: the process's own GPU memory where the
 * driver cannot report it per process (under MPS every client's memory is the MPS server's).
 * Both sides count the allocation's size as the driver records it (cuMemGetAddressRange), so a
 * free takes back exactly what its allocation added. */
#define CUIPC_MAX_ACCOUNTED_DEVICES 64
static _Atomic int64_t malloc_bytes[CUIPC_MAX_ACCOUNTED_DEVICES];

static void account(int device, const void *p, size_t fallback, int sign) {
    void *base = NULL;
    size_t size = fallback;
    if (cuipc_cuda_alloc_range(p, &base, &size) != CUIPC_OK)
        size = fallback;
    if (device >= 0 && device < CUIPC_MAX_ACCOUNTED_DEVICES)
        atomic_fetch_add(&malloc_bytes[device], sign * (int64_t)size);
}

cuipc_status cuipc_cuda_malloc(int device, size_t n, void **out) {
    CUIPC_REQUIRE_GPU();
    if (n == 0 || out == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "n=%zu out=%p: need n > 0 and out", n,
                          (void *)out);
    CUIPC_TRY(cuipc_cuda_set_device(device));
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, n);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaMalloc", "device %d, %zu bytes", device, n);
    account(device, p, n, 1);
    *out = p;
    return CUIPC_OK;
}

/* free(NULL) is a no-op, with or without a GPU, so cleanup paths need no special case. */
cuipc_status cuipc_cuda_free(void *p) {
    if (p == NULL)
        return CUIPC_OK;
    CUIPC_REQUIRE_GPU();
    int device = -1;
    bool accounted = cuipc_cuda_pointer_device(p, &device) == CUIPC_OK && device >= 0;
    if (accounted)
        account(device, p, 0, -1);
    cudaError_t err = cudaFree(p);
    if (err != cudaSuccess) {
        if (accounted) /* still allocated */
            account(device, p, 0, 1);
        return CUIPC_CUDA_FAIL(err, "cudaFree", "ptr %p", p);
    }
    return CUIPC_OK;
}

/* One stream-ordered pool per device for copy-out buffers. It keeps freed memory for reuse, so
 * a steady stream of copies costs no cudaMalloc/cudaFree: cudaFree synchronises the whole
 * device and would stall every copy behind it. What it keeps is a cache bounded by its release
 * threshold: at each synchronisation (a stream or event sync) memory it holds beyond that
 * goes back to the driver. Mixed sizes fragment the pool, so unbounded it grows toward the
 * high water of every size mix it has seen. */
#define CUIPC_MAX_POOL_DEVICES 64
static pthread_mutex_t copy_pools_lock = PTHREAD_MUTEX_INITIALIZER;
static cudaMemPool_t copy_pools[CUIPC_MAX_POOL_DEVICES];
static uint64_t copy_pool_keep[CUIPC_MAX_POOL_DEVICES];    /* release threshold in force */
static atomic_bool copy_pool_warm[CUIPC_MAX_POOL_DEVICES]; /* first allocation made */

static cuipc_status set_keep_locked(int device, uint64_t keep) {
    if (copy_pool_keep[device] == keep)
        return CUIPC_OK;
    cudaError_t err =
        cudaMemPoolSetAttribute(copy_pools[device], cudaMemPoolAttrReleaseThreshold, &keep);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaMemPoolSetAttribute", "release threshold %llu, device %d",
                               (unsigned long long)keep, device);
    copy_pool_keep[device] = keep;
    return CUIPC_OK;
}

static cuipc_status copy_pool_get(int device, cudaMemPool_t *out) {
    if (device < 0 || device >= device_count || device >= CUIPC_MAX_POOL_DEVICES)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "device %d out of range (%d device(s))", device,
                          device_count);
    pthread_mutex_lock(&copy_pools_lock);
    cuipc_status s = CUIPC_OK;
    if (copy_pools[device] == NULL) {
        struct cudaMemPoolProps props;
        memset(&props, 0, sizeof props);
        props.allocType = cudaMemAllocationTypePinned;
        props.location.type = cudaMemLocationTypeDevice;
        props.location.id = device;
        cudaMemPool_t pool = NULL;
        cudaError_t err = cudaMemPoolCreate(&pool, &props);
        if (err != cudaSuccess) {
            s = CUIPC_CUDA_FAIL(err, "cudaMemPoolCreate", "device %d", device);
        } else {
            copy_pools[device] = pool;
            copy_pool_keep[device] = 0; /* a new pool's threshold */
            s = set_keep_locked(device, CUIPC_COPY_CACHE_DEFAULT_BYTES);
            if (s != CUIPC_OK) {
                (void)cudaMemPoolDestroy(pool);
                copy_pools[device] = NULL;
            }
        }
    }
    *out = copy_pools[device];
    pthread_mutex_unlock(&copy_pools_lock);
    return s;
}

cuipc_status cuipc_cuda_malloc_async(int device, size_t n, cuipc_stream stream, void **out) {
    CUIPC_REQUIRE_GPU();
    if (n == 0 || out == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "n=%zu out=%p: need n > 0 and out", n,
                          (void *)out);
    cudaMemPool_t pool = NULL;
    CUIPC_TRY(copy_pool_get(device, &pool));
    void *p = NULL;
    cudaError_t err = cudaMallocFromPoolAsync(&p, n, pool, (cudaStream_t)stream);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaMallocFromPoolAsync", "device %d, %zu bytes, stream %p",
                               device, n, stream);
    atomic_store_explicit(&copy_pool_warm[device], true, memory_order_relaxed);
    *out = p;
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_copy_pool_warm(int device, cuipc_stream stream) {
    CUIPC_REQUIRE_GPU();
    if (device < 0 || device >= CUIPC_MAX_POOL_DEVICES)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "device %d out of range", device);
    if (atomic_load_explicit(&copy_pool_warm[device], memory_order_relaxed))
        return CUIPC_OK; /* a later prepare, or one after copies: nothing to wait for */
    void *p = NULL; /* its success marks the pool warm: a failed sync below is still reported */
    CUIPC_TRY(cuipc_cuda_malloc_async(device, 1, stream, &p));
    cuipc_status s = cuipc_cuda_free_async(p, stream);
    cuipc_status synced = cuipc_cuda_stream_sync(stream); /* the allocation is made by now */
    return s != CUIPC_OK ? s : synced;
}

cuipc_status cuipc_cuda_stream_device(cuipc_stream stream, int *device) {
    CUIPC_REQUIRE_GPU();
    cudaError_t err =
        stream ? cudaStreamGetDevice((cudaStream_t)stream, device) : cudaGetDevice(device);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, stream ? "cudaStreamGetDevice" : "cudaGetDevice", "stream %p",
                               stream);
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_copy_pool_set_cache(int device, uint64_t keep_bytes) {
    CUIPC_REQUIRE_GPU();
    cudaMemPool_t pool = NULL;
    CUIPC_TRY(copy_pool_get(device, &pool));
    pthread_mutex_lock(&copy_pools_lock);
    cuipc_status s = set_keep_locked(device, keep_bytes);
    pthread_mutex_unlock(&copy_pools_lock);
    return s;
}

/* Touches CUDA only when the pool exists, so host-only processes stay CUDA-free. */
cuipc_status cuipc_cuda_copy_pool_usage(int device, uint64_t *reserved, uint64_t *used) {
    *reserved = *used = 0;
    if (device < 0 || device >= CUIPC_MAX_POOL_DEVICES)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "device %d out of range", device);
    cuipc_status s = CUIPC_OK;
    pthread_mutex_lock(&copy_pools_lock);
    if (copy_pools[device] != NULL) {
        cudaError_t err = cudaMemPoolGetAttribute(copy_pools[device],
                                                  cudaMemPoolAttrReservedMemCurrent, reserved);
        if (err == cudaSuccess)
            err = cudaMemPoolGetAttribute(copy_pools[device], cudaMemPoolAttrUsedMemCurrent, used);
        if (err != cudaSuccess)
            s = CUIPC_CUDA_FAIL(err, "cudaMemPoolGetAttribute", "copy-out pool, device %d", device);
    }
    pthread_mutex_unlock(&copy_pools_lock);
    return s;
}

cuipc_status cuipc_cuda_free_async(void *p, cuipc_stream stream) {
    if (p == NULL)
        return CUIPC_OK;
    CUIPC_REQUIRE_GPU();
    cudaError_t err = cudaFreeAsync(p, (cudaStream_t)stream);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaFreeAsync", "ptr %p, stream %p", p, stream);
    return CUIPC_OK;
}

/* Touches CUDA only when a pool exists, so host-only processes stay CUDA-free. */
cuipc_status cuipc_cuda_copy_pools_trim(void) {
    cuipc_status first = CUIPC_OK;
    pthread_mutex_lock(&copy_pools_lock);
    for (int d = 0; d < CUIPC_MAX_POOL_DEVICES; d++) {
        if (copy_pools[d] == NULL)
            continue;
        cudaError_t err = cudaMemPoolTrimTo(copy_pools[d], 0);
        if (err != cudaSuccess && first == CUIPC_OK)
            first = CUIPC_CUDA_FAIL(err, "cudaMemPoolTrimTo", "device %d", d);
    }
    pthread_mutex_unlock(&copy_pools_lock);
    return first;
}

cuipc_status cuipc_cuda_allocated_bytes(int device, uint64_t *out) {
    CUIPC_REQUIRE_GPU();
    if (out == NULL || device < 0 || device >= device_count ||
        device >= CUIPC_MAX_ACCOUNTED_DEVICES)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "device %d (%d device(s)), out %p", device,
                          device_count, (void *)out);
    int64_t held = atomic_load(&malloc_bytes[device]);
    uint64_t reserved = 0;
    pthread_mutex_lock(&copy_pools_lock);
    cudaMemPool_t pool = device < CUIPC_MAX_POOL_DEVICES ? copy_pools[device] : NULL;
    cudaError_t err =
        pool ? cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved)
             : cudaSuccess;
    pthread_mutex_unlock(&copy_pools_lock);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaMemPoolGetAttribute", "reserved memory, device %d",
                               device);
    *out = (uint64_t)(held > 0 ? held : 0) + reserved;
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_mps_enabled(int device, bool *out) {
    CUIPC_REQUIRE_GPU();
    if (out == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "out is NULL");
    int on = 0;
    cudaError_t err = cudaDeviceGetAttribute(&on, cudaDevAttrMpsEnabled, device);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaDeviceGetAttribute", "MpsEnabled, device %d", device);
    *out = on != 0;
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_host_register(void *p, size_t n, void **dev_ptr) {
    CUIPC_REQUIRE_GPU();
    if (p == NULL || n == 0 || dev_ptr == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "p=%p n=%zu dev_ptr=%p: all required", p, n,
                          (void *)dev_ptr);
    /* Portable: pinned for every context, not only the current one; Mapped: the device can
     * address it, which stream memory operations and kernels on host memory need. */
    cudaError_t err = cudaHostRegister(p, n, cudaHostRegisterPortable | cudaHostRegisterMapped);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaHostRegister", "ptr %p, %zu bytes, portable|mapped", p, n);
    void *d = NULL;
    err = cudaHostGetDevicePointer(&d, p, 0);
    if (err != cudaSuccess) {
        cuipc_status s = CUIPC_CUDA_FAIL(err, "cudaHostGetDevicePointer", "ptr %p", p);
        (void)cudaHostUnregister(p); /* undo: the caller sees one failure, no half state */
        (void)cudaGetLastError();
        return s;
    }
    *dev_ptr = d;
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_host_unregister(void *p) {
    CUIPC_REQUIRE_GPU();
    if (p == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "p is NULL");
    cudaError_t err = cudaHostUnregister(p);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaHostUnregister", "ptr %p", p);
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_memcpy_async(void *dst, const void *src, size_t n, cuipc_stream stream) {
    CUIPC_REQUIRE_GPU();
    if (n == 0)
        return CUIPC_OK;
    if (dst == NULL || src == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "dst=%p src=%p n=%zu: both pointers required", dst,
                          src, n);
    /* Default: unified addressing tells the direction, so one call serves H2D, D2H, D2D, P2P. */
    cudaError_t err = cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, (cudaStream_t)stream);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaMemcpyAsync", "dst %p, src %p, %zu bytes, stream %p", dst,
                               src, n, stream);
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_stream_sync(cuipc_stream stream) {
    CUIPC_REQUIRE_GPU();
    cudaError_t err = cudaStreamSynchronize((cudaStream_t)stream);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaStreamSynchronize", "stream %p", stream);
    return CUIPC_OK;
}

/* Stream memory operations need 4-byte aligned device addresses. */
static cuipc_status check_word_address(const char *where, void *dev_addr) {
    if (dev_addr == NULL || ((uintptr_t)dev_addr & 3u) != 0)
        return cuipc_error_set(CUIPC_ERR_INVALID_ARG, where,
                               "address %p must be non-NULL and 4-byte aligned", dev_addr);
    return CUIPC_OK;
}

/* One stream memory operation on a 32-bit word, checked: the write and the wait differ only in
 * the driver function, its flags and their names in messages. */
static cuipc_status stream_value32(const char *where, cuipc_pfn_stream_value32 fn,
                                   const char *symbol, cuipc_stream stream, void *dev_addr,
                                   uint32_t value, unsigned flags, const char *flags_name) {
    CUIPC_TRY(check_word_address(where, dev_addr));
    if (fn == NULL)
        return driver_missing(where, symbol);
    CUresult res = fn((CUstream)stream, (CUdeviceptr)(uintptr_t)dev_addr, value, flags);
    if (res != CUDA_SUCCESS)
        return driver_fail(where, res, symbol, "stream %p, address %p, value %u, %s", stream,
                           dev_addr, value, flags_name);
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_stream_write_u32(cuipc_stream stream, void *dev_addr, uint32_t value) {
    CUIPC_REQUIRE_GPU();
    driver_load();
    /* Default flags keep the memory barrier: all prior work on the stream (e.g. the copy the
     * word announces) is visible before the word is, so a reader seeing the value may read the
     * data. NO_MEMORY_BARRIER would let the flag overtake the data. */
    return stream_value32(__func__, driver.stream_write_value32, "cuStreamWriteValue32_v2", stream,
                          dev_addr, value, CU_STREAM_WRITE_VALUE_DEFAULT, "with memory barrier");
}

cuipc_status cuipc_cuda_stream_wait_u32(cuipc_stream stream, void *dev_addr, uint32_t value) {
    CUIPC_REQUIRE_GPU();
    driver_load();
    /* EQ, not GEQ: the words we wait on carry exact values (slot generations, states) that
     * may wrap or move both ways, so "at least" would release on the wrong value. */
    return stream_value32(__func__, driver.stream_wait_value32, "cuStreamWaitValue32_v2", stream,
                          dev_addr, value, CU_STREAM_WAIT_VALUE_EQ, "EQ");
}

cuipc_status cuipc_cuda_launch_host_func(cuipc_stream stream, void (*fn)(void *), void *arg) {
    CUIPC_REQUIRE_GPU();
    if (fn == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "fn is NULL");
    cudaError_t err = cudaLaunchHostFunc((cudaStream_t)stream, fn, arg);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaLaunchHostFunc", "stream %p, arg %p", stream, arg);
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_enable_peer(int device, int peer) {
    CUIPC_REQUIRE_GPU();
    if (peer < 0 || peer >= device_count)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "peer %d out of range (%d device(s))", peer,
                          device_count);
    CUIPC_TRY(cuipc_cuda_set_device(device));
    if (device == peer)
        return CUIPC_OK;
    int can = 0;
    cudaError_t err = cudaDeviceCanAccessPeer(&can, device, peer);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaDeviceCanAccessPeer", "device %d, peer %d", device, peer);
    if (!can)
        return CUIPC_FAIL(CUIPC_ERR_UNSUPPORTED, "device %d cannot access peer %d", device, peer);
    err = cudaDeviceEnablePeerAccess(peer, 0);
    if (err == cudaErrorPeerAccessAlreadyEnabled) {
        (void)cudaGetLastError();
        return CUIPC_OK;
    }
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaDeviceEnablePeerAccess", "device %d, peer %d", device,
                               peer);
    return CUIPC_OK;
}

cuipc_status cuipc_cuda_mem_info(int device, uint64_t *free_bytes, uint64_t *total_bytes) {
    CUIPC_REQUIRE_GPU();
    if (free_bytes == NULL || total_bytes == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "free_bytes=%p total_bytes=%p: both required",
                          (void *)free_bytes, (void *)total_bytes);
    CUIPC_TRY(cuipc_cuda_set_device(device));
    size_t f = 0, t = 0;
    cudaError_t err = cudaMemGetInfo(&f, &t);
    if (err != cudaSuccess)
        return CUIPC_CUDA_FAIL(err, "cudaMemGetInfo", "device %d", device);
    *free_bytes = f;
    *total_bytes = t;
    return CUIPC_OK;
}
