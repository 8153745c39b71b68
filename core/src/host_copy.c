/* Host copy-out buffers: malloc for small ones, cached anonymous mappings for large ones. */
#include "host_copy.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "cuipc/gpu.h"
#include "cuipc/transport.h"

#define CACHE_SLOTS 16
#define GRAIN ((size_t)64 << 10) /* mappings come in whole grains, so near sizes share them */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    void *p;
    size_t len;
} cache[CACHE_SLOTS]; /* oldest first */
static size_t n_cached, cached_bytes;

void *cuipc_host_copy_alloc(uint64_t n, size_t *mapped) {
    *mapped = 0;
    if (n < CUIPC_HOST_COPY_MAP_BYTES)
        return malloc(n);
    size_t len = (n + GRAIN - 1) / GRAIN * GRAIN;
    pthread_mutex_lock(&cache_lock);
    size_t best = CACHE_SLOTS;
    for (size_t i = 0; i < n_cached; i++) /* the smallest that fits without wasting half */
        if (cache[i].len >= len && cache[i].len / 2 <= len &&
            (best == CACHE_SLOTS || cache[i].len < cache[best].len))
            best = i;
    if (best != CACHE_SLOTS) {
        void *p = cache[best].p;
        *mapped = cache[best].len;
        cached_bytes -= cache[best].len;
        for (size_t i = best; i + 1 < n_cached; i++)
            cache[i] = cache[i + 1];
        n_cached--;
        pthread_mutex_unlock(&cache_lock);
        return p;
    }
    pthread_mutex_unlock(&cache_lock);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    *mapped = len;
    return p;
}

void cuipc_host_copy_free(void *p, size_t mapped) {
    if (mapped == 0) {
        free(p);
        return;
    }
    if (mapped > CUIPC_HOST_COPY_CACHE_BYTES) {
        munmap(p, mapped);
        return;
    }
    /* Make room by unmapping the oldest: the cache follows the sizes now in use. */
    struct {
        void *p;
        size_t len;
    } out[CACHE_SLOTS];
    size_t n_out = 0;
    pthread_mutex_lock(&cache_lock);
    while (n_cached > 0 &&
           (n_cached == CACHE_SLOTS || cached_bytes + mapped > CUIPC_HOST_COPY_CACHE_BYTES)) {
        out[n_out].p = cache[0].p;
        out[n_out++].len = cache[0].len;
        cached_bytes -= cache[0].len;
        for (size_t i = 0; i + 1 < n_cached; i++)
            cache[i] = cache[i + 1];
        n_cached--;
    }
    cache[n_cached].p = p;
    cache[n_cached++].len = mapped;
    cached_bytes += mapped;
    pthread_mutex_unlock(&cache_lock);
    for (size_t i = 0; i < n_out; i++)
        munmap(out[i].p, out[i].len);
}

uint64_t cuipc_host_copy_cache_bytes(void) {
    pthread_mutex_lock(&cache_lock);
    uint64_t n = cached_bytes;
    pthread_mutex_unlock(&cache_lock);
    return n;
}
