/* Process-wide cache of opened IPC handles, keyed by (handle bytes, device). */
#include "handle_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"
#include "error_internal.h"

typedef struct entry {
    uint8_t handle[CUIPC_IPC_HANDLE_BYTES];
    int device;
    void *ptr;
} entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static entry *entries;
static uint32_t n_entries, cap_entries;

/* Linear scan: a process maps a handful of pools and, in cuda_ipc mode, each live export once;
 * most-recent entries sit at the end where the scan starts. */
static entry *find(const uint8_t *handle, int device) {
    for (uint32_t i = n_entries; i-- > 0;)
        if (entries[i].device == device &&
            !memcmp(entries[i].handle, handle, CUIPC_IPC_HANDLE_BYTES))
            return &entries[i];
    return NULL;
}

cuipc_status cuipc_handle_cache_open(const uint8_t handle[CUIPC_IPC_HANDLE_BYTES], int device,
                                     void **ptr, bool *hit) {
    pthread_mutex_lock(&cache_lock);
    entry *e = find(handle, device);
    if (e) {
        *ptr = e->ptr;
        *hit = true;
        pthread_mutex_unlock(&cache_lock);
        return CUIPC_OK;
    }
    *hit = false;
    if (n_entries == cap_entries) {
        uint32_t cap = cap_entries ? cap_entries * 2 : 16;
        entry *grown = realloc(entries, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&cache_lock);
            return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "handle cache of %u entries", cap);
        }
        entries = grown;
        cap_entries = cap;
    }
    void *mapped = NULL;
    cuipc_status s = cuipc_cuda_ipc_open(handle, device, &mapped);
    if (s == CUIPC_OK) {
        e = &entries[n_entries++];
        memcpy(e->handle, handle, CUIPC_IPC_HANDLE_BYTES);
        e->device = device;
        e->ptr = mapped;
        *ptr = mapped;
    }
    pthread_mutex_unlock(&cache_lock);
    return s;
}

void cuipc_handle_cache_close(const uint8_t handle[CUIPC_IPC_HANDLE_BYTES], int device) {
    pthread_mutex_lock(&cache_lock);
    entry *e = find(handle, device);
    if (e) {
        /* Tear-down: the entry goes either way; a failed close is in the error message. */
        cuipc_status_ignore(cuipc_cuda_ipc_close(e->ptr));
        *e = entries[--n_entries];
    }
    pthread_mutex_unlock(&cache_lock);
}

uint32_t cuipc_handle_cache_size(void) {
    pthread_mutex_lock(&cache_lock);
    uint32_t n = n_entries;
    pthread_mutex_unlock(&cache_lock);
    return n;
}

void cuipc_handle_cache_clear(void) {
    pthread_mutex_lock(&cache_lock);
    for (uint32_t i = 0; i < n_entries; i++) /* tear-down, as in close */
        cuipc_status_ignore(cuipc_cuda_ipc_close(entries[i].ptr));
    free(entries);
    entries = NULL;
    n_entries = cap_entries = 0;
    pthread_mutex_unlock(&cache_lock);
}
