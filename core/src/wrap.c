/* Producer-side wrap of one tensor: it becomes a proxy, as the mode says.
 *   default        host pool slice (device tensors are copied down into pinned shared memory)
 *   cuda_ipc       the tensor's own allocation, exported (host tensors go through the host pool)
 *   cuda_ipc_pool  GPU pool slice; copy and "ready" are ordered on the caller's stream, so the
 *                  producer never waits for the copy and a consumer never reads before it is done
 * A tensor in a pool buffer the application filled (cuipc_producer_buffer_alloc) is published
 * as it is, in any mode: no copy.
 * A tensor that fails leaves nothing allocated; the message's walk (send.c) gives back the
 * chunks of the tensors wrapped before it. */
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"
#include "error_internal.h"
#include "wrap.h"

typedef cuipc_wrap_ctx wrap_ctx;

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
static cuipc_pool_wait host_wait(const wrap_ctx *w) {
    cuipc_pool_wait wait = w->full_wait;
    if (w->p->cfg.full_policy == CUIPC_FULL_FAIL)
        wait.timeout_ns = 0;
    return wait;
}

/* Copy into the host pool (from host memory, or down from a device). */
static cuipc_status to_host_pool(wrap_ctx *w, const cuipc_tensor *t, cuipc_proxy *x) {
    cuipc_producer *p = w->p;
    if (!p->host_pool)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "a %s tensor needs the host pool, and host_pool_bytes is 0",
                          t->device == CUIPC_DEVICE_HOST ? "host" : "staged device");
    cuipc_chunk c;
    CUIPC_TRY(cuipc_pool_alloc_own(p->host_pool, x->nbytes, w->mask, host_wait(w),
                                   (cuipc_pool_own){w->own_host, w->held_host}, &c));
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
    w->pool = p->host_pool;
    return CUIPC_OK;
}

static cuipc_status to_gpu_pool(wrap_ctx *w, const cuipc_tensor *t, cuipc_proxy *x) {
    cuipc_producer *p = w->p;
    cuipc_chunk c;
    cuipc_pool_wait wait = w->full_wait; /* only "wait" waits on the GPU pool */
    if (p->cfg.full_policy != CUIPC_FULL_WAIT)
        wait.timeout_ns = 0;
    if (p->cfg.full_policy == CUIPC_FULL_FALLBACK)
        wait.last = false; /* a refusal here goes on to the host pool: it ends no wait */
    cuipc_status s = cuipc_pool_alloc_unkicked(p->gpu_pool, x->nbytes, w->mask, wait,
                                               (cuipc_pool_own){w->own_gpu, w->held_gpu}, &c);
    if (s == CUIPC_ERR_POOL_FULL && p->cfg.full_policy == CUIPC_FULL_FALLBACK) {
        w->fallbacks++;
        return to_host_pool(w, t, x);
    }
    if (s != CUIPC_OK)
        return s;
    /* The copy, then ready := generation on the same stream: consumers wait for that word. */
    s = cuipc_pool_copy_in(p->gpu_pool, w->stream, &c, t->data, x->nbytes);
    if (s != CUIPC_OK) {
        /* The copy may still be queued: let it finish before the chunk can be reused (a stream
         * that fails this too has lost its context, where nothing runs any more). */
        cuipc_status_ignore(cuipc_cuda_stream_sync(w->stream));
        cuipc_status_ignore(
            cuipc_pool_cancel(p->gpu_pool, &c)); /* undo: the failure above is reported */
        return s;
    }
    cuipc_pool_fill_proxy(p->gpu_pool, &c, x);
    w->pool = p->gpu_pool;
    return CUIPC_OK;
}

/* Record a cuda_ipc export (deduplicated by handle) and fill the proxy's ipc fields. */
static cuipc_status export_allocation(cuipc_producer *p, void *base, size_t size, cuipc_proxy *x) {
    uint8_t handle[CUIPC_IPC_HANDLE_BYTES];
    /* Asked every time (~2.5 us): a freed and re-allocated address gets a new handle. */
    CUIPC_TRY(cuipc_cuda_ipc_get(base, handle));
    pthread_mutex_lock(&p->lock);
    cuipc_ipc_export *e = NULL;
    for (uint32_t i = p->n_exports; i-- > 0;) {
        if (p->exports[i].base == base &&
            !memcmp(p->exports[i].handle, handle, CUIPC_IPC_HANDLE_BYTES)) {
            e = &p->exports[i];
            break;
        }
    }
    if (!e) {
        if (p->n_exports == p->cap_exports) {
            uint32_t cap = p->cap_exports ? p->cap_exports * 2 : 16;
            cuipc_ipc_export *grown = realloc(p->exports, cap * sizeof *grown);
            if (!grown) {
                pthread_mutex_unlock(&p->lock);
                return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "export table of %u entries", cap);
            }
            p->exports = grown;
            p->cap_exports = cap;
        }
        e = &p->exports[p->n_exports++];
        e->base = base;
        e->size = size;
        e->id = p->n_exports;
        memcpy(e->handle, handle, CUIPC_IPC_HANDLE_BYTES);
        /* Consumers keep this allocation mapped for good: it is retained (the reference's leak). */
        p->stats.ipc_exports++;
        p->stats.ipc_retained_bytes += size;
    }
    memcpy(x->u.ipc.handle, e->handle, CUIPC_IPC_HANDLE_BYTES);
    x->u.ipc.export_id = e->id;
    x->u.ipc.alloc_size = e->size;
    x->u.ipc.producer_id = p->id;
    pthread_mutex_unlock(&p->lock);
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
    CUIPC_TRY(export_allocation(w->p, base, size, x));
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
        if (gpu) /* nothing queued may still write it (as in to_gpu_pool) */
            cuipc_status_ignore(cuipc_cuda_stream_sync(w->stream));
        cuipc_status_ignore(
            cuipc_pool_cancel(b->pool, c)); /* undo: the failure above is reported */
        return s;
    }
    cuipc_pool_fill_proxy(b->pool, c, x);
    w->pool = b->pool;
    return CUIPC_OK;
}

cuipc_status cuipc_wrap_tensor(cuipc_wrap_ctx *w, const cuipc_tensor *t, cuipc_proxy *x) {
    w->pool = NULL;
    CUIPC_TRY(cuipc_tensor_validate(t));
    if (t->device != CUIPC_DEVICE_HOST && !cuipc_cuda_present())
        return CUIPC_FAIL(CUIPC_ERR_NO_GPU, "tensor on device %d but no GPU is usable", t->device);
    layout_of(t, x);
    if (x->nbytes > 0 && t->data == NULL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "a tensor of %llu bytes has no data (NULL)",
                          (unsigned long long)x->nbytes);
    cuipc_status s;
    cuipc_held_buffer b;
    bool from_held = false;
    if (x->nbytes > 0)
        CUIPC_TRY(cuipc_producer_take_buffer(w->p, t, x->nbytes, &b, &from_held));
    if (from_held) {
        s = from_buffer(w, t, &b, x);
    } else if (x->nbytes == 0) {
        /* Empty tensors carry only their layout: no pool, no slot. */
        x->kind = CUIPC_PROXY_POOL;
        x->u.pool.memory = CUIPC_MEMORY_HOST;
        x->u.pool.pool_device = CUIPC_DEVICE_HOST;
        x->u.pool.slot = UINT32_MAX;
        s = CUIPC_OK;
    } else if (t->device == CUIPC_DEVICE_HOST || w->p->cfg.mode == CUIPC_MODE_DEFAULT) {
        s = to_host_pool(w, t, x);
    } else if (w->p->cfg.mode == CUIPC_MODE_CUDA_IPC_POOL) {
        s = to_gpu_pool(w, t, x);
    } else {
        s = to_ipc_export(w, t, x);
    }
    if (s != CUIPC_OK)
        return s;
    w->bytes += x->nbytes;
    if (w->pool && w->pool == w->p->host_pool)
        w->own_host++;
    else if (w->pool && w->pool == w->p->gpu_pool)
        w->own_gpu++;
    return CUIPC_OK;
}
