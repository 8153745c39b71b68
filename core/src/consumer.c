/* The consumer: attaches to a producer (ring, arena and sync-table descriptors over the Unix
 * socket), receives messages, validates every proxy against the pool's sync table, and turns
 * proxies back into tensors: copied out (the chunk is released once the copy is done, on the GPU
 * when the copy runs there) or borrowed in place (released explicitly). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_api.h"
#include "cuipc/codec.h"
#include "error_internal.h"
#include "handle_cache.h"
#include "host_copy.h"
#include "value_internal.h"
#include "shm.h"
#include "socket.h"
#include "transport_internal.h"

#define MAX_OPENED 256

typedef struct pool_view {
    bool present;
    cuipc_memory_kind memory;
    int32_t device;
    uint64_t pool_id;
    uint64_t size;
    uint8_t handle[CUIPC_IPC_HANDLE_BYTES];
    void *base;          /* host arena mapping */
    void *host_dev_base; /* the arena registered with CUDA (lazily, for fast device copies) */
    cuipc_sync_table *sync;
    void *sync_dev_base; /* the sync table registered with CUDA (lazily, for stream waits/acks) */
} pool_view;

typedef struct opened_handle {
    uint8_t handle[CUIPC_IPC_HANDLE_BYTES];
    int device;
} opened_handle;

struct cuipc_consumer {
    int sock;
    uint32_t index;
    uint32_t max_consumers;
    pid_t producer_pid;
    uint64_t producer_id;
    cuipc_ring *ring;
    pool_view host;
    pool_view gpu;
    pthread_mutex_t lock; /* lazy registrations, opened list, stats */
    opened_handle opened[MAX_OPENED];
    uint32_t n_opened;
    cuipc_consumer_stats stats;
    /* Whether this process is an MPS client, asked once for CUIPC_HOST_WAIT_AUTO. */
    bool mps_known, mps_client;
};

typedef struct held_chunk {
    pool_view *view;
    uint32_t slot;
    uint32_t generation;
    bool released;
} held_chunk;

struct cuipc_message {
    cuipc_consumer *c;
    cuipc_value *tree;
    held_chunk *held;
    uint32_t n_held;
    bool stream_ordered; /* the last unwrap queued work on its stream */
};

/* ------------------------------------------------------------------ attach */

static cuipc_status map_view(pool_view *v, const cuipc_hello_pool *h, int mem_fd, int sync_fd) {
    v->present = true;
    v->memory = (cuipc_memory_kind)h->memory;
    v->device = h->device;
    v->pool_id = h->pool_id;
    v->size = h->size;
    memcpy(v->handle, h->ipc_handle, CUIPC_IPC_HANDLE_BYTES);
    if (v->memory != CUIPC_MEMORY_HOST && v->memory != CUIPC_MEMORY_CUDA) {
        if (mem_fd >= 0)
            close(mem_fd);
        close(sync_fd);
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "producer described a pool of memory kind %u",
                          h->memory);
    }
    cuipc_status s = cuipc_sync_table_attach(sync_fd, h->pool_id, &v->sync);
    if (s != CUIPC_OK) {
        if (mem_fd >= 0)
            close(mem_fd);
        return s;
    }
    if (mem_fd >= 0) {
        uint64_t got = cuipc_fd_size(mem_fd);
        if (got != h->size) {
            close(mem_fd);
            return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "host arena is %llu bytes, producer said %llu",
                              (unsigned long long)got, (unsigned long long)h->size);
        }
        v->base = cuipc_shm_map(mem_fd, h->size);
        close(mem_fd); /* the mapping keeps the memory; no fd left to leak */
        if (!v->base)
            return CUIPC_ERR_SYSTEM;
    }
    return CUIPC_OK;
}

static void unmap_view(pool_view *v) {
    if (!v->present)
        return;
    if (v->host_dev_base)
        cuipc_cuda_host_unregister(v->base);
    if (v->base)
        cuipc_shm_unmap(v->base, v->size);
    if (v->sync_dev_base)
        cuipc_cuda_host_unregister(cuipc_sync_table_base(v->sync));
    cuipc_sync_table_destroy(v->sync);
    memset(v, 0, sizeof *v);
}

static cuipc_status take_hello(cuipc_consumer *c, const cuipc_hello *h, int *fds, int nfds) {
    int want = 1 + (h->host.present ? 2 : 0) + (h->gpu.present ? 1 : 0);
    if (h->magic != CUIPC_HELLO_MAGIC)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "not a cuipc producer (magic 0x%llx)",
                          (unsigned long long)h->magic);
    if (h->version != CUIPC_HELLO_VERSION)
        return CUIPC_FAIL(CUIPC_ERR_VERSION, "producer speaks attach version %u, we speak %u",
                          h->version, CUIPC_HELLO_VERSION);
    if (nfds != want || h->consumer_index >= h->max_consumers ||
        h->max_consumers > CUIPC_MAX_CONSUMERS)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "hello with %d fds (want %d), index %u of %u", nfds,
                          want, h->consumer_index, h->max_consumers);
    c->index = h->consumer_index;
    c->max_consumers = h->max_consumers;
    c->producer_pid = h->producer_pid;
    c->producer_id = h->producer_id;
    int k = 0;
    int ring_fd = fds[k];
    fds[k++] = -1;
    CUIPC_TRY(cuipc_ring_attach(ring_fd, &c->ring));
    cuipc_ring_set_peer_check(c->ring, cuipc_socket_peer_alive_ctx, (void *)(intptr_t)c->sock);
    if (h->host.present) {
        int mem = fds[k], syn = fds[k + 1];
        fds[k] = fds[k + 1] = -1;
        k += 2;
        CUIPC_TRY(map_view(&c->host, &h->host, mem, syn));
    }
    if (h->gpu.present) {
        int syn = fds[k];
        fds[k++] = -1;
        CUIPC_TRY(map_view(&c->gpu, &h->gpu, -1, syn));
    }
    return CUIPC_OK;
}

void cuipc_attach_options_init(cuipc_attach_options *o) {
    memset(o, 0, sizeof *o);
}

static bool listed(uint32_t id, const uint32_t *ids, uint32_t n) {
    for (uint32_t i = 0; ids && i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* The process listening on path must be of our uid, or of a uid or gid the options allow:
 * whoever bound the path first would otherwise be handed this consumer (and send it data). */
static cuipc_status check_producer(int sock, const char *path, const cuipc_attach_options *o) {
    uint32_t uid, gid;
    pid_t pid;
    CUIPC_TRY(cuipc_socket_peer_cred(sock, &uid, &gid, &pid));
    if (uid == (uint32_t)getuid() || listed(uid, o->allowed_uids, o->n_allowed_uids) ||
        listed(gid, o->allowed_gids, o->n_allowed_gids))
        return CUIPC_OK;
    return CUIPC_FAIL(CUIPC_ERR_PERMISSION,
                      "the producer on %s runs as uid %u gid %u (pid %d): we are uid %u and "
                      "allow %u other uid(s), %u gid(s)",
                      path, uid, gid, (int)pid, (unsigned)getuid(), o->n_allowed_uids,
                      o->n_allowed_gids);
}

static int64_t left_ns(uint64_t deadline) {
    uint64_t now = cuipc_now_ns();
    return now >= deadline ? 0 : (int64_t)(deadline - now);
}

cuipc_status cuipc_consumer_attach_with(const char *path, const cuipc_attach_options *opt,
                                        int64_t timeout_ns, cuipc_consumer **out) {
    *out = NULL;
    cuipc_attach_options none;
    if (!opt) {
        cuipc_attach_options_init(&none);
        opt = &none;
    }
    uint64_t deadline = cuipc_now_ns() + (uint64_t)(timeout_ns < 0 ? INT64_MAX / 2 : timeout_ns);
    cuipc_consumer *c = calloc(1, sizeof *c);
    if (!c)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "consumer struct");
    pthread_mutex_init(&c->lock, NULL);
    c->sock = -1;
    cuipc_status s = cuipc_socket_connect(path, timeout_ns, &c->sock);
    if (s == CUIPC_OK)
        s = check_producer(c->sock, path, opt);
    if (s == CUIPC_OK) {
        cuipc_hello_request req = {.magic = CUIPC_HELLO_MAGIC, .version = CUIPC_HELLO_VERSION};
        s = cuipc_socket_send(c->sock, &req, sizeof req, NULL, 0);
    }
    cuipc_hello h;
    int fds[CUIPC_SOCKET_MAX_FDS], nfds = 0;
    if (s == CUIPC_OK)
        s = cuipc_socket_recv(c->sock, &h, sizeof h, fds, &nfds, CUIPC_SOCKET_MAX_FDS,
                              timeout_ns < 0 ? -1 : left_ns(deadline));
    if (s == CUIPC_OK && h.magic == CUIPC_HELLO_MAGIC && h.status != CUIPC_OK) {
        h.reason[sizeof h.reason - 1] = '\0';
        s = CUIPC_FAIL((cuipc_status)h.status, "the producer on %s refused us: %s", path, h.reason);
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
    } else if (s == CUIPC_OK) {
        s = take_hello(c, &h, fds, nfds);
        for (int i = 0; i < nfds; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        cuipc_error_saved saved;
        cuipc_error_save(&saved);
        cuipc_hello_ack ack = {
            .magic = CUIPC_HELLO_MAGIC, .consumer_index = h.consumer_index, .status = (int32_t)s};
        cuipc_status sent = cuipc_socket_send(c->sock, &ack, sizeof ack, NULL, 0);
        if (s != CUIPC_OK)
            CUIPC_FAIL(s, "%s", saved.msg);
        else
            s = sent;
    }
    if (s != CUIPC_OK) {
        cuipc_consumer_detach(c);
        return s;
    }
    *out = c;
    return CUIPC_OK;
}

cuipc_status cuipc_consumer_attach(const char *path, int64_t timeout_ns, cuipc_consumer **out) {
    return cuipc_consumer_attach_with(path, NULL, timeout_ns, out);
}

uint32_t cuipc_consumer_index(const cuipc_consumer *c) {
    return c->index;
}

void cuipc_consumer_set_spin_ns(cuipc_consumer *c, uint64_t spin_ns) {
    cuipc_ring_set_spin_ns(c->ring, spin_ns);
}

/* ------------------------------------------------------------------ receive and validate */

typedef struct adopt_ctx {
    cuipc_consumer *c;
    cuipc_message *m;
    uint32_t cap;
} adopt_ctx;

static pool_view *view_for(cuipc_consumer *c, const cuipc_proxy *x) {
    if (c->host.present && c->host.pool_id == x->u.pool.pool_id)
        return &c->host;
    if (c->gpu.present && c->gpu.pool_id == x->u.pool.pool_id)
        return &c->gpu;
    return NULL;
}

static cuipc_status check_pool_proxy(cuipc_consumer *c, const cuipc_proxy *x, pool_view **out) {
    pool_view *v = view_for(c, x);
    if (!v)
        return CUIPC_FAIL(CUIPC_ERR_UNKNOWN_POOL,
                          "proxy names pool 0x%llx, which this consumer is not attached to",
                          (unsigned long long)x->u.pool.pool_id);
    if (x->u.pool.memory != v->memory)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "proxy says memory kind %d, pool 0x%llx is %d",
                          (int)x->u.pool.memory, (unsigned long long)v->pool_id, (int)v->memory);
    if (x->u.pool.offset > v->size || x->nbytes > v->size - x->u.pool.offset)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "slice [%llu, +%llu) outside the %llu-byte pool",
                          (unsigned long long)x->u.pool.offset, (unsigned long long)x->nbytes,
                          (unsigned long long)v->size);
    CUIPC_TRY(cuipc_sync_check(v->sync, x->u.pool.slot, x->u.pool.generation, x->u.pool.offset,
                               x->nbytes, c->index));
    if (v->memory == CUIPC_MEMORY_HOST) {
        /* Host chunks are filled before they are sent: not ready means forged or recycled. */
        if (!cuipc_sync_ready_is(v->sync, x->u.pool.slot, x->u.pool.generation))
            return CUIPC_FAIL(CUIPC_ERR_STALE, "slot %u: data of generation %u is not in place",
                              x->u.pool.slot, x->u.pool.generation);
    }
    *out = v;
    return CUIPC_OK;
}

static cuipc_status adopt_one(cuipc_value *node, void *arg) {
    adopt_ctx *a = arg;
    const cuipc_proxy *x = cuipc_value_as_proxy(node);
    if (!x)
        return CUIPC_OK;
    if (x->kind == CUIPC_PROXY_IPC) {
        if (x->u.ipc.producer_id != a->c->producer_id)
            return CUIPC_FAIL(
                CUIPC_ERR_UNKNOWN_POOL, "IPC proxy from producer 0x%llx, we are attached to 0x%llx",
                (unsigned long long)x->u.ipc.producer_id, (unsigned long long)a->c->producer_id);
        if (x->u.ipc.offset > x->u.ipc.alloc_size ||
            x->nbytes > x->u.ipc.alloc_size - x->u.ipc.offset)
            return CUIPC_FAIL(CUIPC_ERR_CORRUPT,
                              "IPC slice [%llu, +%llu) outside its %llu-byte allocation",
                              (unsigned long long)x->u.ipc.offset, (unsigned long long)x->nbytes,
                              (unsigned long long)x->u.ipc.alloc_size);
        return CUIPC_OK;
    }
    if (x->nbytes == 0)
        return CUIPC_OK;
    pool_view *v = NULL;
    CUIPC_TRY(check_pool_proxy(a->c, x, &v));
    if (a->m->n_held == a->cap) {
        uint32_t cap = a->cap ? a->cap * 2 : 8;
        held_chunk *grown = realloc(a->m->held, cap * sizeof *grown);
        if (!grown)
            return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "held chunk list of %u", cap);
        a->m->held = grown;
        a->cap = cap;
    }
    a->m->held[a->m->n_held++] =
        (held_chunk){.view = v, .slot = x->u.pool.slot, .generation = x->u.pool.generation};
    return CUIPC_OK;
}

static void release_cpu(cuipc_consumer *c, held_chunk *h) {
    if (h->released)
        return;
    h->released = true;
    cuipc_sync_release(h->view->sync, h->slot, h->generation, c->index);
}

cuipc_status cuipc_consumer_adopt(cuipc_consumer *c, const void *buf, size_t len,
                                  cuipc_message **out) {
    *out = NULL;
    cuipc_message *m = calloc(1, sizeof *m);
    if (!m)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "message struct");
    m->c = c;
    cuipc_status s = cuipc_decode(buf, len, &m->tree);
    if (s == CUIPC_OK) {
        adopt_ctx a = {.c = c, .m = m};
        s = cuipc_value_visit(m->tree, adopt_one, &a);
    }
    if (s != CUIPC_OK) {
        cuipc_error_saved saved;
        cuipc_error_save(&saved);
        /* The valid chunks of a rejected message are still ours to give back. */
        for (uint32_t i = 0; i < m->n_held; i++)
            release_cpu(c, &m->held[i]);
        cuipc_value_free(m->tree);
        free(m->held);
        free(m);
        pthread_mutex_lock(&c->lock);
        c->stats.rejected++;
        pthread_mutex_unlock(&c->lock);
        return CUIPC_FAIL(s, "message rejected: %s", saved.msg);
    }
    pthread_mutex_lock(&c->lock);
    c->stats.messages++;
    pthread_mutex_unlock(&c->lock);
    *out = m;
    return CUIPC_OK;
}

cuipc_status cuipc_consumer_recv(cuipc_consumer *c, int64_t timeout_ns, cuipc_message **out) {
    *out = NULL;
    void *buf = NULL;
    size_t len = 0;
    cuipc_status s = cuipc_ring_recv(c->ring, &buf, &len, timeout_ns);
    if (s == CUIPC_ERR_PEER_DEAD)
        return CUIPC_FAIL(s, "producer (pid %d) died", (int)c->producer_pid);
    if (s != CUIPC_OK)
        return s;
    s = cuipc_consumer_adopt(c, buf, len, out);
    free(buf);
    return s;
}

const cuipc_value *cuipc_message_value(const cuipc_message *m) {
    return m->tree;
}

/* ------------------------------------------------------------------ unwrap */

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

/* Map an exported allocation on device (once per process) and remember it for detach. */
static cuipc_status open_handle(cuipc_consumer *c, const uint8_t *handle, int device, void **ptr) {
    bool hit = false;
    CUIPC_TRY(cuipc_handle_cache_open(handle, device, ptr, &hit));
    pthread_mutex_lock(&c->lock);
    if (hit) {
        c->stats.handle_hits++;
    } else {
        c->stats.handle_opens++;
        if (c->n_opened < MAX_OPENED) {
            memcpy(c->opened[c->n_opened].handle, handle, CUIPC_IPC_HANDLE_BYTES);
            c->opened[c->n_opened++].device = device;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return CUIPC_OK;
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
        cuipc_cuda_free_async(d, stream);
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
    if (target != CUIPC_DEVICE_HOST) /* copy_out waits for a host target itself */
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
        return CUIPC_FAIL(CUIPC_ERR_STALE, "slot %u generation %u was already released",
                          x->u.pool.slot, x->u.pool.generation);
    pool_view *v = h->view;
    if (v->memory == CUIPC_MEMORY_HOST) {
        void *src = (char *)v->base + x->u.pool.offset;
        int target = o->device == CUIPC_DEVICE_SAME ? CUIPC_DEVICE_HOST : o->device;
        if (o->kind == CUIPC_UNWRAP_COPY && target != CUIPC_DEVICE_HOST)
            pin_host_view(c, v);
        CUIPC_TRY(borrow_or_copy(u, src, x->nbytes, 1, CUIPC_DEVICE_HOST, target, t, owner));
        if (o->kind == CUIPC_UNWRAP_COPY)
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
    if (o->kind == CUIPC_UNWRAP_BORROW)
        return CUIPC_OK;
    if (target == CUIPC_DEVICE_HOST) {
        release_cpu(c, h); /* copy_out already waited for the stream */
        return CUIPC_OK;
    }
    /* Ack on the GPU after the copy: the producer may reuse the slice once it has been read. */
    void *ack = cuipc_sync_ack_device_addr(sync_dev, v->sync, x->u.pool.slot, c->index);
    CUIPC_TRY(cuipc_cuda_stream_write_u32(o->stream, ack, x->u.pool.generation));
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
            CUIPC_TRY(cuipc_cuda_copy_pool_set_cache(target, opt->copy_cache_bytes));
    }
    if (copy && opt->device >= 0) { /* host-pool and cuda_ipc data copied to this device */
        if (c->host.present)
            pin_host_view(c, &c->host);
        CUIPC_TRY(cuipc_cuda_copy_pool_set_cache(opt->device, opt->copy_cache_bytes));
    }
    return CUIPC_OK;
}

cuipc_status cuipc_message_unwrap(cuipc_message *m, const cuipc_unwrap_options *opt,
                                  cuipc_value **out) {
    *out = NULL;
    cuipc_unwrap_options defaults;
    CUIPC_TRY(unwrap_options(&opt, &defaults));
    cuipc_value *copy = cuipc_value_clone(m->tree);
    if (!copy)
        return CUIPC_ERR_NO_MEMORY;
    unwrap_ctx u = {.m = m, .opt = opt};
    m->stream_ordered = false;
    cuipc_status s = cuipc_value_visit(copy, unwrap_one, &u);
    if (s != CUIPC_OK) {
        cuipc_value_free(copy); /* frees the copies already made; borrows stay held until release */
        return s;
    }
    *out = copy;
    return CUIPC_OK;
}

bool cuipc_message_stream_ordered(const cuipc_message *m) {
    return m->stream_ordered;
}

cuipc_status cuipc_message_release(cuipc_message *m, cuipc_stream stream) {
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
                h->released = true;
                continue;
            }
            if (first == CUIPC_OK)
                first = s;
            cuipc_cuda_stream_sync(stream); /* fall back to a host release after the reads */
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

void cuipc_consumer_stats_get(cuipc_consumer *c, cuipc_consumer_stats *out) {
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

void cuipc_consumer_detach(cuipc_consumer *c) {
    if (!c)
        return;
    for (uint32_t i = 0; i < c->n_opened; i++)
        cuipc_handle_cache_close(c->opened[i].handle, c->opened[i].device);
    unmap_view(&c->host);
    unmap_view(&c->gpu);
    cuipc_ring_destroy(c->ring);
    if (c->sock >= 0) {
        cuipc_socket_say_goodbye(c->sock); /* a detach, not a death */
        close(c->sock); /* the producer's monitor sees the hang-up and reclaims what we held */
    }
    cuipc_cuda_copy_pools_trim(); /* copy-out buffers already freed go back to the driver */
    pthread_mutex_destroy(&c->lock);
    free(c);
}
