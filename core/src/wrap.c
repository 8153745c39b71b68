/* Producer-side wrap: every tensor of a value tree becomes a proxy, as the mode says.
 *   default        host pool slice (device tensors are copied down into pinned shared memory)
 *   cuda_ipc       the tensor's own allocation, exported (host tensors go through the host pool)
 *   cuda_ipc_pool  GPU pool slice; copy and "ready" are ordered on the caller's stream, so the
 *                  producer never waits for the copy and a consumer never reads before it is done
 * A tensor in a pool buffer the application filled (cuipc_producer_buffer_alloc) is published
 * as it is, in any mode: no copy.
 * Tensors that fail midway leave nothing allocated: chunks taken so far are cancelled. */
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"
#include "error_internal.h"
#include "transport_internal.h"

typedef struct wrap_ctx {
    cuipc_producer *p;
    cuipc_stream stream;
    uint64_t mask;
    uint64_t bytes;
    uint64_t fallbacks;
} wrap_ctx;

static void layout_of(const cuipc_tensor *t, cuipc_proxy *x) {
    memset(x, 0, sizeof *x);
    x->layout.dtype = t->dtype;
    x->layout.ndim = t->ndim;
    x->layout.src_device = t->device;
    for (int i = 0; i < t->ndim; i++) {
        x->layout.shape[i] = t->shape[i];
        x->layout.strides[i] = t->strides[i];
    }
    x->nbytes = cuipc_tensor_span_bytes(t);
}

/* How long a host-pool allocation may wait: under "wait", and under "fallback" too, since the
 * host pool is then the last resort. */
static int64_t full_timeout(const cuipc_producer *p) {
    return p->cfg.full_policy == CUIPC_FULL_FAIL ? 0 : p->cfg.full_timeout_ns;
}

/* Copy into the host pool (from host memory, or down from a device). */
static cuipc_status to_host_pool(wrap_ctx *w, const cuipc_tensor *t, cuipc_proxy *x) {
    cuipc_producer *p = w->p;
    if (!p->host_pool)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "a %s tensor needs the host pool, and host_pool_bytes is 0",
                          t->device == CUIPC_DEVICE_HOST ? "host" : "staged device");
    cuipc_chunk c;
    CUIPC_TRY(cuipc_pool_alloc(p->host_pool, x->nbytes, w->mask, full_timeout(p), &c));
    cuipc_status s = CUIPC_OK;
    if (t->device == CUIPC_DEVICE_HOST) {
        memcpy(c.ptr, t->data, x->nbytes);
    } else {
        s = cuipc_cuda_memcpy_async(c.ptr, t->data, x->nbytes, w->stream);
        if (s == CUIPC_OK)
            s = cuipc_cuda_stream_sync(w->stream); /* host readers need the bytes now */
    }
    if (s != CUIPC_OK) {
        cuipc_status_ignore(
            cuipc_pool_cancel(p->host_pool, &c)); /* undo: the failure above is reported */
        return s;
    }
    cuipc_pool_mark_ready(p->host_pool, &c);
    cuipc_pool_fill_proxy(p->host_pool, &c, x);
    return CUIPC_OK;
}

static cuipc_status to_gpu_pool(wrap_ctx *w, const cuipc_tensor *t, cuipc_proxy *x) {
    cuipc_producer *p = w->p;
    cuipc_chunk c;
    int64_t wait = p->cfg.full_policy == CUIPC_FULL_WAIT ? p->cfg.full_timeout_ns : 0;
    cuipc_status s = cuipc_pool_alloc_unkicked(p->gpu_pool, x->nbytes, w->mask, wait, &c);
    if (s == CUIPC_ERR_POOL_FULL && p->cfg.full_policy == CUIPC_FULL_FALLBACK) {
        w->fallbacks++;
        return to_host_pool(w, t, x);
    }
    if (s != CUIPC_OK)
        return s;
    /* The copy, then ready := generation on the same stream: consumers wait for that word. */
    s = cuipc_pool_copy_in(p->gpu_pool, w->stream, &c, t->data, x->nbytes);
    if (s != CUIPC_OK) {
        /* The copy may still be queued: let it finish before the chunk can be reused. */
        cuipc_cuda_stream_sync(w->stream);
        cuipc_status_ignore(
            cuipc_pool_cancel(p->gpu_pool, &c)); /* undo: the failure above is reported */
        return s;
    }
    cuipc_pool_fill_proxy(p->gpu_pool, &c, x);
    return CUIPC_OK;
}

static cuipc_status to_ipc_export(wrap_ctx *w, const cuipc_tensor *t, cuipc_proxy *x) {
    void *base = NULL;
    size_t size = 0;
    CUIPC_TRY(cuipc_cuda_alloc_range(t->data, &base, &size));
    uint64_t offset = (uint64_t)((char *)t->data - (char *)base);
    if (offset + x->nbytes > size)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "tensor span %llu at offset %llu runs past its allocation of %zu bytes",
                          (unsigned long long)x->nbytes, (unsigned long long)offset, size);
    /* Consumers read the tensor itself: its producing work must be finished first. */
    CUIPC_TRY(cuipc_cuda_stream_sync(w->stream));
    x->kind = CUIPC_PROXY_IPC;
    CUIPC_TRY(cuipc_producer_export(w->p, base, size, x));
    x->u.ipc.offset = offset;
    x->u.ipc.device = t->device;
    return CUIPC_OK;
}

/* Publish a buffer the application filled: no copy, only a new generation and "ready" (on the
 * stream, after the work that wrote it, for the GPU pool). The buffer is this send's now: on
 * failure it is given back. */
static cuipc_status from_buffer(wrap_ctx *w, const cuipc_tensor *t, cuipc_held_buffer *b,
                                cuipc_proxy *x) {
    cuipc_chunk *c = &b->chunk;
    uint64_t offset = c->offset + (uint64_t)((const char *)t->data - (const char *)c->ptr);
    cuipc_status s = cuipc_pool_publish_held(b->pool, c, offset, x->nbytes, w->mask);
    bool gpu = cuipc_pool_get_config(b->pool)->memory == CUIPC_MEMORY_CUDA;
    if (s == CUIPC_OK && gpu) {
        s = cuipc_pool_ready_on_stream(b->pool, w->stream, c);
    } else if (s == CUIPC_OK) {
        /* A host buffer may be written by a copy queued on the stream (it is pinned for
         * that): host readers need the bytes now. */
        if (w->stream)
            s = cuipc_cuda_stream_sync(w->stream);
        if (s == CUIPC_OK)
            cuipc_pool_mark_ready(b->pool, c);
    }
    if (s != CUIPC_OK) {
        if (gpu)
            cuipc_cuda_stream_sync(w->stream); /* nothing queued may still write it */
        cuipc_status_ignore(
            cuipc_pool_cancel(b->pool, c)); /* undo: the failure above is reported */
        return s;
    }
    cuipc_pool_fill_proxy(b->pool, c, x);
    return CUIPC_OK;
}

static cuipc_status wrap_one(cuipc_value *node, void *arg) {
    wrap_ctx *w = arg;
    if (cuipc_value_kind_of(node) != CUIPC_VALUE_TENSOR)
        return CUIPC_OK;
    const cuipc_tensor *t = cuipc_value_as_tensor(node);
    CUIPC_TRY(cuipc_tensor_validate(t));
    if (t->device != CUIPC_DEVICE_HOST && !cuipc_cuda_present())
        return CUIPC_FAIL(CUIPC_ERR_NO_GPU, "tensor on device %d but no GPU is usable", t->device);
    cuipc_proxy x;
    layout_of(t, &x);
    if (x.nbytes > 0 && t->data == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "a tensor of %llu bytes has no data (NULL)",
                          (unsigned long long)x.nbytes);
    cuipc_status s;
    cuipc_held_buffer b;
    bool from_held = false;
    if (x.nbytes > 0)
        CUIPC_TRY(cuipc_producer_take_buffer(w->p, t, x.nbytes, &b, &from_held));
    if (from_held) {
        s = from_buffer(w, t, &b, &x);
    } else if (x.nbytes == 0) {
        /* Empty tensors carry only their layout: no pool, no slot. */
        x.kind = CUIPC_PROXY_POOL;
        x.u.pool.memory = CUIPC_MEMORY_HOST;
        x.u.pool.pool_device = CUIPC_DEVICE_HOST;
        x.u.pool.slot = UINT32_MAX;
        s = CUIPC_OK;
    } else if (t->device == CUIPC_DEVICE_HOST || w->p->cfg.mode == CUIPC_MODE_DEFAULT) {
        s = to_host_pool(w, t, &x);
    } else if (w->p->cfg.mode == CUIPC_MODE_CUDA_IPC_POOL) {
        s = to_gpu_pool(w, t, &x);
    } else {
        s = to_ipc_export(w, t, &x);
    }
    if (s != CUIPC_OK)
        return s;
    w->bytes += x.nbytes;
    return cuipc_value_set_proxy(node, &x);
}

static void cancel_chunk(cuipc_producer *p, cuipc_pool *pool, const cuipc_proxy *x, void *ctx) {
    cuipc_chunk c = {.offset = x->u.pool.offset,
                     .size = x->nbytes,
                     .slot = x->u.pool.slot,
                     .generation = x->u.pool.generation};
    /* STALE only for a chunk no longer in flight: nothing left to give back. */
    cuipc_status_ignore(cuipc_pool_cancel(pool, &c));
}

cuipc_status cuipc_producer_cancel_wrapped(cuipc_producer *p, const cuipc_value *wrapped) {
    cuipc_producer_for_each_chunk(p, wrapped, cancel_chunk, NULL);
    return CUIPC_OK;
}

cuipc_status cuipc_producer_wrap(cuipc_producer *p, const cuipc_value *tree, cuipc_stream stream,
                                 cuipc_value **wrapped) {
    *wrapped = NULL;
    if (!tree)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "tree is NULL");
    pthread_mutex_lock(&p->lock);
    bool closed = p->closed;
    pthread_mutex_unlock(&p->lock);
    if (closed)
        return CUIPC_FAIL(CUIPC_ERR_CLOSED, "producer was closed");
    wrap_ctx w = {.p = p, .stream = stream, .mask = cuipc_producer_live_mask(p)};
    if (!w.mask)
        return CUIPC_FAIL(CUIPC_ERR_PEER_DEAD, "no consumer is attached");
    cuipc_value *copy = cuipc_value_clone(tree);
    if (!copy)
        return CUIPC_ERR_NO_MEMORY;
    cuipc_status s = cuipc_value_visit(copy, wrap_one, &w);
    if (s != CUIPC_OK) {
        cuipc_error_saved saved;
        cuipc_error_save(&saved);
        /* Proxies made before the failure hold chunks: give them back once queued copies into
         * them are finished. */
        if (p->gpu_pool)
            cuipc_cuda_stream_sync(stream);
        cuipc_status_ignore(cuipc_producer_cancel_wrapped(p, copy)); /* never fails */
        cuipc_value_free(copy);
        return CUIPC_FAIL(s, "%s", saved.msg);
    }
    pthread_mutex_lock(&p->lock);
    p->stats.bytes_sent += w.bytes;
    p->stats.fallbacks += w.fallbacks;
    pthread_mutex_unlock(&p->lock);
    *wrapped = copy;
    return CUIPC_OK;
}
