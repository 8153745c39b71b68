/* Process-wide cache of opened IPC handles, keyed by (handle bytes, device), with a count of
 * the references its holders took. */
#include "handle_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"
#include "error_internal.h"

typedef struct entry {
    uint8_t handle[CUIPC_IPC_HANDLE_BYTES];
    int device;
    uint32_t refs;
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

cuipc_status cuipc_handle_cache_acquire(const uint8_t handle[CUIPC_IPC_HANDLE_BYTES], int device,
                                        void **ptr, bool *opened) {
    pthread_mutex_lock(&cache_lock);
    *opened = false;
    entry *e = find(handle, device);
    if (e) {
        e->refs++;
        *ptr = e->ptr;
        pthread_mutex_unlock(&cache_lock);
        return CUIPC_OK;
    }
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
        e->refs = 1;
        e->ptr = mapped;
        *ptr = mapped;
        *opened = true;
    }
    pthread_mutex_unlock(&cache_lock);
    return s;
}

void cuipc_handle_cache_release(const uint8_t handle[CUIPC_IPC_HANDLE_BYTES], int device) {
    pthread_mutex_lock(&cache_lock);
    entry *e = find(handle, device);
    if (e && --e->refs == 0) {
        /* Tear-down: the entry goes either way; a failed close is in the error message. */
        cuipc_status_ignore(cuipc_cuda_ipc_close(e->ptr));
        *e = entries[--n_entries];
        if (n_entries == 0) { /* the last consumer gone: nothing left held for the process */
            free(entries);
            entries = NULL;
            cap_entries = 0;
        }
    }
    pthread_mutex_unlock(&cache_lock);
}

uint32_t cuipc_handle_cache_size(void) {
    pthread_mutex_lock(&cache_lock);
    uint32_t n = n_entries;
    pthread_mutex_unlock(&cache_lock);
    return n;
}
