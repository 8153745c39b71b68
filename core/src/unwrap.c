/* The consumer's unwrap: proxies back into tensors, copied out (the chunk is released once the
 * copy is done, on the GPU when the copy runs there) or borrowed in place (released explicitly),
 * and the release of what a message still holds. The received tree is walked once per unwrap:
 * its copy is made as its proxies are turned into tensors. */
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"
#include "consumer_internal.h"
#include "error_internal.h"
#include "handle_cache.h"
#include "host_copy.h"
#include "shm.h"
#include "value_internal.h"

/* Release a chunk from the host (the acquire side of the producer's recycling). The slot was
 * checked on receipt and this message alone holds it (released guards a second release): a
 * refusal can only mean the producer already acked for this consumer (it counted it gone), and
 * then there is nothing left to give back. */
static void release_cpu(cuipc_consumer *c, held_chunk *h) {
    if (h->released)
        return;
    h->released = true;
    cuipc_status_ignore(cuipc_sync_release(h->view->sync, h->slot, h->generation, c->index));
}

void cuipc_unwrap_options_init(cuipc_unwrap_options *o) {
    o->kind = CUIPC_UNWRAP_COPY;
    o->device = CUIPC_DEVICE_SAME;
    o->stream = NULL;
    o->host_wait_ns = CUIPC_HOST_WAIT_AUTO;
    o->copy_cache_bytes = CUIPC_COPY_CACHE_DEFAULT_BYTES;
}

typedef struct unwrap_ctx {
    cuipc_message *m;
    const cuipc_unwrap_options *opt;
    size_t mapped; /* the tensor being unwrapped: size of its host copy's own mapping, or 0 */
} unwrap_ctx;

static held_chunk *find_held(cuipc_message *m, const cuipc_proxy *x) {
    for (uint32_t i = 0; i < m->n_held; i++)
        if (m->held[i].slot == x->u.pool.slot && m->held[i].generation == x->u.pool.generation &&
            m->held[i].view->pool_id == x->u.pool.pool_id)
            return &m->held[i];
    return NULL;
}

static opened_handle *find_opened(cuipc_consumer *c, const uint8_t *handle, int device) {
    for (uint32_t i = c->n_opened; i-- > 0;)
        if (c->opened[i].device == device &&
            !memcmp(c->opened[i].handle, handle, CUIPC_IPC_HANDLE_BYTES))
            return &c->opened[i];
    return NULL;
}

/* Map an exported allocation on device: this consumer's own reference to the process's mapping
 * (opened once per process), taken at its first use and given back at its detach. */
static cuipc_status open_handle(cuipc_consumer *c, const uint8_t *handle, int device, void **ptr) {
    pthread_mutex_lock(&c->lock);
    opened_handle *h = find_opened(c, handle, device);
    if (h) {
        *ptr = h->ptr;
        c->stats.handle_hits++;
        pthread_mutex_unlock(&c->lock);
        return CUIPC_OK;
    }
    pthread_mutex_unlock(&c->lock);
    /* Outside the consumer's lock: a driver open takes ~200 us. */
    bool opened = false;
    CUIPC_TRY(cuipc_handle_cache_acquire(handle, device, ptr, &opened));
    pthread_mutex_lock(&c->lock);
    cuipc_status s = CUIPC_OK;
    bool extra = find_opened(c, handle, device) != NULL; /* another thread took it meanwhile */
    if (!extra && c->n_opened == c->cap_opened) {
        uint32_t cap = c->cap_opened ? c->cap_opened * 2 : 8;
        opened_handle *grown = realloc(c->opened, cap * sizeof *grown);
        if (grown) {
            c->opened = grown;
            c->cap_opened = cap;
        } else {
            s = CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "list of %u opened IPC handles", cap);
        }
    }
    if (s == CUIPC_OK && !extra) {
        h = &c->opened[c->n_opened++];
        memcpy(h->handle, handle, CUIPC_IPC_HANDLE_BYTES);
        h->device = device;
        h->ptr = *ptr;
    }
    if (s == CUIPC_OK) {
        if (opened)
            c->stats.handle_opens++;
        else
            c->stats.handle_hits++;
    }
    pthread_mutex_unlock(&c->lock);
    if (extra || s != CUIPC_OK) /* this consumer holds one reference, or none it could record */
        cuipc_handle_cache_release(handle, device);
    return s;
}

/* Register the sync table with CUDA once, so streams can wait on ready words and write acks. */
static cuipc_status sync_device_base(cuipc_consumer *c, pool_view *v, void **out) {
    pthread_mutex_lock(&c->lock);
    cuipc_status s = CUIPC_OK;
    if (!v->sync_dev_base)
        s = cuipc_cuda_host_register(cuipc_sync_table_base(v->sync),
                                     cuipc_sync_table_bytes(v->sync), &v->sync_dev_base);
    *out = v->sync_dev_base;
    pthread_mutex_unlock(&c->lock);
    return s;
}

/* Pin the host arena once when its data is copied up to a device (pageable copies are ~6x slower).
 */
static void pin_host_view(cuipc_consumer *c, pool_view *v) {
    pthread_mutex_lock(&c->lock);
    if (!v->host_dev_base &&
        cuipc_cuda_host_register(v->base, v->size, &v->host_dev_base) != CUIPC_OK)
        v->host_dev_base = NULL; /* still correct, only slower */
    pthread_mutex_unlock(&c->lock);
}

static cuipc_status copy_out(const void *src, uint64_t n, int src_is_host, int target,
                             cuipc_stream stream, void **dst, cuipc_tensor_owner *owner,
                             size_t *mapped) {
    *mapped = 0;
    if (target == CUIPC_DEVICE_HOST) {
        void *d = cuipc_host_copy_alloc(n, mapped);
        if (!d)
            return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "copy-out buffer of %llu bytes",
                              (unsigned long long)n);
        cuipc_status s = CUIPC_OK;
        if (src_is_host) {
            memcpy(d, src, n);
        } else {
            s = cuipc_cuda_memcpy_async(d, src, n, stream);
            if (s == CUIPC_OK)
                s = cuipc_cuda_stream_sync(stream);
        }
        if (s != CUIPC_OK) {
            cuipc_host_copy_free(d, *mapped);
            *mapped = 0;
            return s;
        }
        *dst = d;
        *owner = CUIPC_OWNER_HOST;
        return CUIPC_OK;
    }
    /* The copy is queued on the caller's stream: a stream of another GPU cannot do it (CUDA
     * answers a bare "invalid argument" for that). */
    int stream_dev = -1;
    CUIPC_TRY(cuipc_cuda_stream_device(stream, &stream_dev));
    if (stream_dev != target)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "copy-out to device %d with an unwrap stream of device %d: give a stream "
                          "of the target device (unwrap options' stream and device)",
                          target, stream_dev);
    void *d = NULL;
    CUIPC_TRY(cuipc_cuda_malloc_async(target, n, stream, &d));
    cuipc_status s = cuipc_cuda_memcpy_async(d, src, n, stream);
    if (s == CUIPC_OK && src_is_host)
        s = cuipc_cuda_stream_sync(stream); /* the host chunk is released right after */
    if (s != CUIPC_OK) {
        cuipc_status_ignore(cuipc_cuda_free_async(d, stream)); /* undo: the failure is reported */
        return s;
    }
    *dst = d;
    *owner = CUIPC_OWNER_DEVICE;
    return CUIPC_OK;
}

/* Copy target for data whose home is `home`, and the device its mapping is opened on (the
 * target itself, for peer access, or home when the copy goes to host memory). */
static void resolve_devices(const cuipc_unwrap_options *o, int home, int *target, int *map_dev) {
    *target = o->device == CUIPC_DEVICE_SAME ? home : o->device;
    *map_dev = *target == CUIPC_DEVICE_HOST ? home : *target;
}

/* Borrow src in place (as seen from map_dev), or copy it out to target. */
static cuipc_status borrow_or_copy(unwrap_ctx *u, void *src, uint64_t n, int src_is_host,
                                   int map_dev, int target, cuipc_tensor *t,
                                   cuipc_tensor_owner *owner) {
    const cuipc_unwrap_options *o = u->opt;
    if (o->kind == CUIPC_UNWRAP_BORROW) {
        t->data = src;
        t->device = map_dev;
        *owner = CUIPC_OWNER_BORROW;
        return CUIPC_OK;
    }
    if (target != CUIPC_DEVICE_HOST) /* the pool's cache bound, as these options set it */
        CUIPC_TRY(cuipc_cuda_copy_pool_set_cache(target, o->copy_cache_bytes));
    CUIPC_TRY(copy_out(src, n, src_is_host, target, o->stream, &t->data, owner, &u->mapped));
    t->device = target;
    /* copy_out waits itself for a host target, and for a host source (its chunk is released
     * next): the copy is then done, and the data ready for any stream, as the unwrap returns. */
    if (target != CUIPC_DEVICE_HOST && !src_is_host)
        u->m->stream_ordered = true;
    return CUIPC_OK;
}

/* Spin until the producer's stream has written the slot's host ready word (after its copy), at
 * most wait_ns. The word is written by the GPU: an acquire load that sees it sees a finished
 * copy, so later work of any context reads the data. */
static bool host_saw_ready(const pool_view *v, uint32_t slot, uint32_t generation,
                           int64_t wait_ns) {
    if (cuipc_sync_ready_is(v->sync, slot, generation))
        return true;
    if (wait_ns <= 0)
        return false;
    uint64_t end = cuipc_now_ns() + (uint64_t)wait_ns;
    do {
        for (int i = 0; i < 64; i++) {
            if (cuipc_sync_ready_is(v->sync, slot, generation))
                return true;
            cuipc_cpu_relax();
        }
    } while (cuipc_now_ns() < end);
    return false;
}

/* The host spin of an unwrap: the caller's, or for CUIPC_HOST_WAIT_AUTO 2 ms, and none under
 * MPS, where a GPU-side wait costs no context switch (H200, 4 KiB copy-out under MPS: p50 74 us
 * spinning 2 ms, 52 us waiting on the GPU; 64 MiB: 161 against 108 us). */
static cuipc_status resolve_host_wait(cuipc_consumer *c, const cuipc_unwrap_options *o, int device,
                                      int64_t *out) {
    if (o->host_wait_ns != CUIPC_HOST_WAIT_AUTO) {
        *out = o->host_wait_ns;
        return CUIPC_OK;
    }
    pthread_mutex_lock(&c->lock);
    bool known = c->mps_known, client = c->mps_client;
    pthread_mutex_unlock(&c->lock);
    if (!known) {
        CUIPC_TRY(cuipc_cuda_mps_enabled(device, &client));
        pthread_mutex_lock(&c->lock);
        c->mps_client = client;
        c->mps_known = true;
        pthread_mutex_unlock(&c->lock);
    }
    *out = client ? 0 : CUIPC_HOST_WAIT_DEFAULT_NS;
    return CUIPC_OK;
}

/* The GPU pool as seen from the device its data is read on (peer access when that is not the
 * pool's), and its sync table for stream waits and acks: mapped once per process. */
static cuipc_status map_gpu_view(cuipc_consumer *c, pool_view *v, const cuipc_unwrap_options *o,
                                 int *target, int *map_dev, void **base, void **sync_dev) {
    resolve_devices(o, v->device, target, map_dev);
    CUIPC_TRY(open_handle(c, v->handle, *map_dev, base));
    return sync_device_base(c, v, sync_dev);
}

static cuipc_status unwrap_pool(unwrap_ctx *u, const cuipc_proxy *x, cuipc_tensor *t,
                                cuipc_tensor_owner *owner) {
    cuipc_consumer *c = u->m->c;
    const cuipc_unwrap_options *o = u->opt;
    held_chunk *h = find_held(u->m, x);
    if (!h)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "slot %u generation %u is not part of this message",
                          x->u.pool.slot, x->u.pool.generation);
    if (h->released)
        return CUIPC_FAIL(CUIPC_ERR_STALE,
                          "slot %u generation %u was already released (by the message's release "
                          "or an earlier copy unwrap: a copy gives its chunk back at once)",
                          x->u.pool.slot, x->u.pool.generation);
    pool_view *v = h->view;
    if (v->memory == CUIPC_MEMORY_HOST) {
        void *src = (char *)v->base + x->u.pool.offset;
        int target = o->device == CUIPC_DEVICE_SAME ? CUIPC_DEVICE_HOST : o->device;
        if (o->kind == CUIPC_UNWRAP_COPY && target != CUIPC_DEVICE_HOST)
            pin_host_view(c, v);
        CUIPC_TRY(borrow_or_copy(u, src, x->nbytes, 1, CUIPC_DEVICE_HOST, target, t, owner));
        if (o->kind == CUIPC_UNWRAP_BORROW)
            h->borrowed = true;
        else if (!h->borrowed) /* a borrow of it still reads the chunk: the release gives it back */
            release_cpu(c, h);
        return CUIPC_OK;
    }
    int target, map_dev;
    void *base = NULL, *sync_dev = NULL;
    CUIPC_TRY(map_gpu_view(c, v, o, &target, &map_dev, &base, &sync_dev));
    /* Nothing on this stream reads the slice before the producer's copy wrote it: either the
     * host saw the ready word, or the stream waits for it. */
    int64_t host_wait_ns = 0;
    CUIPC_TRY(resolve_host_wait(c, o, map_dev, &host_wait_ns));
    if (!host_saw_ready(v, x->u.pool.slot, x->u.pool.generation, host_wait_ns)) {
        CUIPC_TRY(cuipc_cuda_stream_wait_u32(
            o->stream, cuipc_sync_ready_device_addr(sync_dev, v->sync, x->u.pool.slot),
            x->u.pool.generation));
        u->m->stream_ordered = true;
    }
    void *src = (char *)base + x->u.pool.offset;
    CUIPC_TRY(borrow_or_copy(u, src, x->nbytes, 0, map_dev, target, t, owner));
    if (o->kind == CUIPC_UNWRAP_BORROW) {
        h->borrowed = true;
        return CUIPC_OK;
    }
    if (h->borrowed) {
        /* A borrow of it still reads the chunk: the message's release acks it, maybe from the
         * host and on no stream, so the copy queued here must be done by then. Rare: waited. */
        return target == CUIPC_DEVICE_HOST ? CUIPC_OK : cuipc_cuda_stream_sync(o->stream);
    }
    if (target == CUIPC_DEVICE_HOST) {
        release_cpu(c, h); /* copy_out already waited for the stream */
        return CUIPC_OK;
    }
    /* Ack on the GPU after the copy: the producer may reuse the slice once it has been read. */
    void *ack = cuipc_sync_ack_device_addr(sync_dev, v->sync, x->u.pool.slot, c->index);
    CUIPC_TRY(cuipc_cuda_stream_write_u32(o->stream, ack, x->u.pool.generation));
    cuipc_chunk_ack_queued(v, x->u.pool.slot, x->u.pool.generation);
    h->released = true;
    return CUIPC_OK;
}

static cuipc_status unwrap_ipc(unwrap_ctx *u, const cuipc_proxy *x, cuipc_tensor *t,
                               cuipc_tensor_owner *owner) {
    int target, map_dev;
    resolve_devices(u->opt, x->u.ipc.device, &target, &map_dev);
    void *base = NULL;
    CUIPC_TRY(open_handle(u->m->c, x->u.ipc.handle, map_dev, &base));
    return borrow_or_copy(u, (char *)base + x->u.ipc.offset, x->nbytes, 0, map_dev, target, t,
                          owner);
}

static cuipc_status unwrap_one(cuipc_value *node, void *arg) {
    unwrap_ctx *u = arg;
    const cuipc_proxy *xp = cuipc_value_as_proxy(node);
    if (!xp)
        return CUIPC_OK;
    cuipc_proxy x = *xp; /* node is rewritten below */
    cuipc_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = x.layout.dtype;
    t.ndim = x.layout.ndim;
    for (int i = 0; i < x.layout.ndim; i++) {
        t.shape[i] = x.layout.shape[i];
        t.strides[i] = x.layout.strides[i];
    }
    cuipc_tensor_owner owner = CUIPC_OWNER_NONE;
    cuipc_status s = CUIPC_OK;
    u->mapped = 0;
    if (x.nbytes == 0) {
        t.data = NULL;
        t.device = u->opt->device == CUIPC_DEVICE_SAME ? x.layout.src_device : u->opt->device;
    } else if (x.kind == CUIPC_PROXY_POOL) {
        s = unwrap_pool(u, &x, &t, &owner);
    } else {
        s = unwrap_ipc(u, &x, &t, &owner);
    }
    if (s != CUIPC_OK)
        return s;
    uint64_t n = x.nbytes;
    pthread_mutex_lock(&u->m->c->lock);
    u->m->c->stats.bytes += n;
    pthread_mutex_unlock(&u->m->c->lock);
    if (owner == CUIPC_OWNER_DEVICE)
        return cuipc_value_set_stream_ordered_tensor(node, &t, u->opt->stream);
    if (owner == CUIPC_OWNER_HOST && u->mapped) {
        s = cuipc_value_set_mapped_host_tensor(node, &t, u->mapped);
        if (s != CUIPC_OK)
            cuipc_host_copy_free(t.data, u->mapped);
        return s;
    }
    return cuipc_value_set_tensor(node, &t, owner);
}

/* The options in force (the defaults for NULL, filled into *defaults), checked. */
static cuipc_status unwrap_options(const cuipc_unwrap_options **opt,
                                   cuipc_unwrap_options *defaults) {
    if (!*opt) {
        cuipc_unwrap_options_init(defaults);
        *opt = defaults;
    }
    if ((*opt)->kind != CUIPC_UNWRAP_COPY && (*opt)->kind != CUIPC_UNWRAP_BORROW)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "unwrap kind %d", (int)(*opt)->kind);
    if ((*opt)->device < CUIPC_DEVICE_SAME)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "unwrap device %d", (*opt)->device);
    if ((*opt)->host_wait_ns < CUIPC_HOST_WAIT_AUTO)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "unwrap host_wait_ns %lld (>= 0, or CUIPC_HOST_WAIT_AUTO)",
                          (long long)(*opt)->host_wait_ns);
    return CUIPC_OK;
}

/* The copy-out pool of device, with its release threshold and its first allocation made, on
 * the unwrap's stream. Copies to device need a stream of that device: with another, the
 * warm-up is skipped, since such copies are refused anyway. */
static cuipc_status ready_copy_pool(int device, const cuipc_unwrap_options *opt) {
    CUIPC_TRY(cuipc_cuda_copy_pool_set_cache(device, opt->copy_cache_bytes));
    int stream_dev = -1;
    CUIPC_TRY(cuipc_cuda_stream_device(opt->stream, &stream_dev));
    return stream_dev == device ? cuipc_cuda_copy_pool_warm(device, opt->stream) : CUIPC_OK;
}

cuipc_status cuipc_consumer_prepare(cuipc_consumer *c, const cuipc_unwrap_options *opt) {
    cuipc_unwrap_options defaults;
    CUIPC_TRY(unwrap_options(&opt, &defaults));
    bool copy = opt->kind == CUIPC_UNWRAP_COPY;
    if (c->gpu.present) { /* the mapping unwrap_pool makes, on the same devices */
        int target, map_dev;
        void *base = NULL, *sync_dev = NULL;
        CUIPC_TRY(map_gpu_view(c, &c->gpu, opt, &target, &map_dev, &base, &sync_dev));
        int64_t host_wait_ns = 0; /* asks MPS now rather than in the first message */
        CUIPC_TRY(resolve_host_wait(c, opt, map_dev, &host_wait_ns));
        if (copy && target != CUIPC_DEVICE_HOST)
            CUIPC_TRY(ready_copy_pool(target, opt));
    }
    if (copy && opt->device >= 0) { /* host-pool and cuda_ipc data copied to this device */
        if (c->host.present)
            pin_host_view(c, &c->host);
        CUIPC_TRY(ready_copy_pool(opt->device, opt));
    }
    return CUIPC_OK;
}

cuipc_status cuipc_message_unwrap(cuipc_message *m, const cuipc_unwrap_options *opt,
                                  cuipc_value **out) {
    if (!m || !out)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "message %p, out %p: neither may be NULL",
                          (void *)m, (void *)out);
    *out = NULL;
    cuipc_unwrap_options defaults;
    CUIPC_TRY(unwrap_options(&opt, &defaults));
    unwrap_ctx u = {.m = m, .opt = opt};
    m->stream_ordered = false;
    /* On failure the copies already made are freed with the partial tree; borrows stay held
     * until release. */
    return cuipc_value_clone_visit(m->tree, unwrap_one, &u, out);
}

bool cuipc_message_stream_ordered(const cuipc_message *m) {
    return m->stream_ordered;
}

cuipc_status cuipc_message_release(cuipc_message *m, cuipc_stream stream) {
    if (!m)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "message is NULL");
    cuipc_consumer *c = m->c;
    cuipc_status first = CUIPC_OK;
    for (uint32_t i = 0; i < m->n_held; i++) {
        held_chunk *h = &m->held[i];
        if (h->released)
            continue;
        if (stream && h->view->memory == CUIPC_MEMORY_CUDA) {
            /* After everything already queued on the stream (the borrower's reads). */
            void *sync_dev = NULL;
            cuipc_status s = sync_device_base(c, h->view, &sync_dev);
            if (s == CUIPC_OK)
                s = cuipc_cuda_stream_write_u32(
                    stream, cuipc_sync_ack_device_addr(sync_dev, h->view->sync, h->slot, c->index),
                    h->generation);
            if (s == CUIPC_OK) {
                cuipc_chunk_ack_queued(h->view, h->slot, h->generation);
                h->released = true;
                continue;
            }
            if (first == CUIPC_OK)
                first = s;
            /* Fall back to a host release after the reads; a stream that fails this too failed
             * the write above, whose error is the one returned. */
            cuipc_status_ignore(cuipc_cuda_stream_sync(stream));
        }
        h->released = true;
        cuipc_status s = cuipc_sync_release(h->view->sync, h->slot, h->generation, c->index);
        if (s != CUIPC_OK && first == CUIPC_OK)
            first = s;
    }
    return first;
}

void cuipc_message_free(cuipc_message *m) {
    if (!m)
        return;
    /* A message released already is the common case here; free itself cannot fail. */
    cuipc_status_ignore(cuipc_message_release(m, NULL));
    cuipc_value_free(m->tree);
    free(m->held);
    free(m);
}
