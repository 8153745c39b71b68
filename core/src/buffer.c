/* Zero-copy produce: buffers inside the producer's pools that the application fills itself and
 * then sends. The send publishes the buffer (a new generation, the ready word after the work
 * already queued on the send's stream) instead of copying a tensor into a fresh chunk, so a
 * small message costs one stream write instead of a copy and a write, and a large one no
 * device bandwidth at all on the producer's side. */
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"
#include "error_internal.h"
#include "transport_internal.h"

static cuipc_pool *pool_of(cuipc_producer *p, cuipc_memory_kind memory) {
    return memory == CUIPC_MEMORY_CUDA ? p->gpu_pool : p->host_pool;
}

cuipc_status cuipc_producer_buffer_alloc(cuipc_producer *p, cuipc_memory_kind memory,
                                         uint64_t nbytes, int64_t timeout_ns, void **data) {
    /* As the producer's pool-full policy says (a buffer has no fallback). */
    if (timeout_ns < 0 && p)
        timeout_ns = p->cfg.full_policy == CUIPC_FULL_FAIL ? 0 : p->cfg.full_timeout_ns;
    cuipc_wait_slice whole = {.wait_ns = timeout_ns > 0 ? timeout_ns : 0, .last = true};
    return cuipc_producer_buffer_alloc_within(p, memory, nbytes, &whole, data);
}

cuipc_status cuipc_producer_buffer_alloc_within(cuipc_producer *p, cuipc_memory_kind memory,
                                                uint64_t nbytes, const cuipc_wait_slice *slice,
                                                void **data) {
    if (data)
        *data = NULL;
    if (!p || !data)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "producer %p, data %p", (void *)p, (void *)data);
    if (!slice)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "the wait slice is NULL");
    if (slice->wait_ns < 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "a wait slice of %lld ns",
                          (long long)slice->wait_ns);
    cuipc_pool_wait wait = {
        .timeout_ns = slice->wait_ns, .continued = slice->continued, .last = slice->last};
    if (memory != CUIPC_MEMORY_CUDA && memory != CUIPC_MEMORY_HOST)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "memory kind %d is not host or cuda", memory);
    if (nbytes == 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "a buffer of 0 bytes (empty tensors need none)");
    cuipc_pool *pool = pool_of(p, memory);
    if (!pool)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "no %s pool to hold a buffer (%s)",
                          memory == CUIPC_MEMORY_CUDA ? "GPU" : "host",
                          memory == CUIPC_MEMORY_CUDA ? "mode cuda_ipc_pool has one"
                                                      : "host_pool_bytes is 0");
    cuipc_chunk c;
    CUIPC_TRY(cuipc_pool_alloc_held(pool, nbytes, wait, &c));
    pthread_mutex_lock(&p->lock);
    cuipc_status s = p->closed ? CUIPC_FAIL(CUIPC_ERR_CLOSED, "producer was closed") : CUIPC_OK;
    if (s == CUIPC_OK && p->n_buffers == p->cap_buffers) {
        uint32_t cap = p->cap_buffers ? 2 * p->cap_buffers : 16;
        cuipc_held_buffer *more = realloc(p->buffers, cap * sizeof *more);
        if (more) {
            p->buffers = more;
            p->cap_buffers = cap;
        } else {
            s = CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "buffer list of %u entries", cap);
        }
    }
    if (s == CUIPC_OK)
        p->buffers[p->n_buffers++] = (cuipc_held_buffer){pool, c, ++p->last_buffer_id};
    pthread_mutex_unlock(&p->lock);
    if (s != CUIPC_OK) {
        /* Undo of the allocation just made: the failure above is the one reported. */
        cuipc_status_ignore(cuipc_pool_cancel(pool, &c));
        return s;
    }
    *data = c.ptr;
    return CUIPC_OK;
}

/* Whether data lies in the n bytes from base. */
static bool lies_within(const void *base, uint64_t n, const void *data) {
    return (const char *)data >= (const char *)base &&
           (uint64_t)((const char *)data - (const char *)base) < n;
}

/* Index of the held buffer whose bytes include data, or -1. Caller holds the lock. */
static int64_t find_locked(const cuipc_producer *p, const void *data) {
    for (uint32_t i = 0; i < p->n_buffers; i++)
        if (lies_within(p->buffers[i].chunk.ptr, p->buffers[i].chunk.size, data))
            return i;
    return -1;
}

/* Index of the held buffer that starts at data (what buffer_alloc handed out), or -1. Caller
 * holds the lock. */
static int64_t buffer_at_locked(const cuipc_producer *p, const void *data) {
    int64_t i = find_locked(p, data);
    return i >= 0 && p->buffers[i].chunk.ptr == data ? i : -1;
}

cuipc_status cuipc_producer_buffer_free(cuipc_producer *p, void *data) {
    if (!p || !data)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "producer %p, data %p", (void *)p, data);
    pthread_mutex_lock(&p->lock);
    int64_t i = buffer_at_locked(p, data);
    cuipc_held_buffer b;
    if (i >= 0) {
        b = p->buffers[i];
        p->buffers[i] = p->buffers[--p->n_buffers];
    }
    pthread_mutex_unlock(&p->lock);
    if (i < 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "%p is not a buffer this producer holds (sent or freed already?)", data);
    return cuipc_pool_cancel(b.pool, &b.chunk);
}

uint64_t cuipc_producer_buffer_id(cuipc_producer *p, const void *data) {
    if (!p || !data)
        return 0;
    pthread_mutex_lock(&p->lock);
    int64_t i = buffer_at_locked(p, data);
    uint64_t id = i >= 0 ? p->buffers[i].id : 0;
    pthread_mutex_unlock(&p->lock);
    return id;
}

uint64_t cuipc_producer_buffer_containing(cuipc_producer *p, const void *data) {
    pthread_mutex_lock(&p->lock);
    int64_t i = find_locked(p, data);
    uint64_t id = i >= 0 ? p->buffers[i].id : 0;
    pthread_mutex_unlock(&p->lock);
    return id;
}

static bool in_arena(cuipc_pool *pool, const void *data) {
    return pool && cuipc_pool_base(pool) &&
           lies_within(cuipc_pool_base(pool), cuipc_pool_get_config(pool)->size, data);
}

cuipc_pool *cuipc_producer_pool_holding(cuipc_producer *p, const void *data) {
    return !data                          ? NULL
           : in_arena(p->host_pool, data) ? p->host_pool
           : in_arena(p->gpu_pool, data)  ? p->gpu_pool
                                          : NULL;
}

cuipc_status cuipc_producer_take_buffer(cuipc_producer *p, const cuipc_tensor *t, uint64_t nbytes,
                                        cuipc_held_buffer *out, bool *found) {
    *found = false;
    cuipc_memory_kind memory =
        t->device == CUIPC_DEVICE_HOST ? CUIPC_MEMORY_HOST : CUIPC_MEMORY_CUDA;
    cuipc_pool *pool = pool_of(p, memory);
    if (!in_arena(pool, t->data)) {
        /* Outside this pool: a tensor of its own, or a buffer given with the wrong device. */
        cuipc_pool *other =
            pool_of(p, memory == CUIPC_MEMORY_HOST ? CUIPC_MEMORY_CUDA : CUIPC_MEMORY_HOST);
        if (in_arena(other, t->data))
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                              "tensor data %p lies in the %s pool but the tensor says device %d",
                              t->data, memory == CUIPC_MEMORY_HOST ? "GPU" : "host", t->device);
        return CUIPC_OK;
    }
    pthread_mutex_lock(&p->lock);
    int64_t i = find_locked(p, t->data);
    cuipc_status s = CUIPC_OK;
    if (i < 0) {
        s = CUIPC_FAIL(CUIPC_ERR_STALE,
                       "tensor data %p lies in the %s pool but in no buffer this producer "
                       "holds (sent or freed already?)",
                       t->data, memory == CUIPC_MEMORY_HOST ? "host" : "GPU");
    } else {
        const cuipc_chunk *c = &p->buffers[i].chunk;
        uint64_t at = (uint64_t)((const char *)t->data - (const char *)c->ptr);
        if (nbytes > c->size - at)
            s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                           "tensor of %llu bytes at offset %llu runs past its buffer of %llu bytes",
                           (unsigned long long)nbytes, (unsigned long long)at,
                           (unsigned long long)c->size);
        else if (memory == CUIPC_MEMORY_CUDA && t->device != cuipc_pool_get_config(pool)->device)
            s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                           "tensor says device %d but its buffer is on device %d", t->device,
                           cuipc_pool_get_config(pool)->device);
    }
    if (s == CUIPC_OK) {
        /* Taken: the buffer now belongs to this send, whatever becomes of it. */
        *out = p->buffers[i];
        p->buffers[i] = p->buffers[--p->n_buffers];
        *found = true;
    }
    pthread_mutex_unlock(&p->lock);
    return s;
}
