/* The consumer: attaches to a producer (ring, arena and sync-table descriptors over the Unix
 * socket), receives messages and validates every proxy against the pool's sync table as the
 * message is decoded, gathering the chunks it holds (one walk of the tree). Proxies become
 * tensors in unwrap.c. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec_internal.h"
#include "consumer_internal.h"
#include "cuda_api.h"
#include "error_internal.h"
#include "handle_cache.h"
#include "shm.h"
#include "socket.h"

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
    if (s == CUIPC_OK) {
        v->held_gen = calloc(cuipc_sync_table_slots(v->sync), sizeof *v->held_gen);
        v->ack_queued = calloc(cuipc_sync_table_slots(v->sync), sizeof *v->ack_queued);
        if (!v->held_gen || !v->ack_queued)
            s = CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "held-chunk table of %u slots",
                           cuipc_sync_table_slots(v->sync));
    }
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

#define ATTACH_LOOK_NS (200 * 1000 * 1000ll)

/* The attach's waits, in slices where its caller asks between them whether to go on. */
typedef struct attach_wait {
    const cuipc_attach_options *opt;
    int64_t timeout_ns; /* < 0: no limit */
    uint64_t deadline;
    bool stopped; /* keep_waiting said no */
} attach_wait;

/* How long the next try of a step may wait. */
static int64_t step_ns(const attach_wait *w) {
    int64_t left = w->timeout_ns < 0 ? -1 : left_ns(w->deadline);
    if (!w->opt->keep_waiting)
        return left;
    return left < 0 || left > ATTACH_LOOK_NS ? ATTACH_LOOK_NS : left;
}

/* Whether a step that timed out is tried again: time is left and the caller goes on. A try
 * that timed out took nothing (no connection made, no answer read), so it can be repeated. */
static bool try_again(attach_wait *w, cuipc_status s) {
    if (s != CUIPC_ERR_TIMEOUT || !w->opt->keep_waiting ||
        (w->timeout_ns >= 0 && left_ns(w->deadline) == 0))
        return false;
    w->stopped = !w->opt->keep_waiting(w->opt->keep_waiting_ctx);
    return !w->stopped;
}

cuipc_status cuipc_consumer_attach_with(const char *path, const cuipc_attach_options *opt,
                                        int64_t timeout_ns, cuipc_consumer **out) {
    if (!path || !out)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "socket path %p, out %p: neither may be NULL",
                          (const void *)path, (void *)out);
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
    pthread_mutex_init(&c->recv_lock, NULL);
    c->sock = -1;
    attach_wait w = {.opt = opt, .timeout_ns = timeout_ns, .deadline = deadline};
    cuipc_status s;
    do
        s = cuipc_socket_connect(path, step_ns(&w), &c->sock);
    while (try_again(&w, s));
    if (s == CUIPC_OK)
        s = check_producer(c->sock, path, opt);
    if (s == CUIPC_OK) {
        cuipc_hello_request req = {.magic = CUIPC_HELLO_MAGIC, .version = CUIPC_HELLO_VERSION};
        s = cuipc_socket_send(c->sock, &req, sizeof req, NULL, 0);
    }
    cuipc_hello h;
    int fds[CUIPC_SOCKET_MAX_FDS], nfds = 0;
    if (s == CUIPC_OK)
        do
            s = cuipc_socket_recv(c->sock, &h, sizeof h, fds, &nfds, CUIPC_SOCKET_MAX_FDS,
                                  step_ns(&w));
        while (try_again(&w, s));
    if (w.stopped)
        s = CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "attach to %s stopped by its caller while it waited",
                       path);
    else if (s == CUIPC_ERR_TIMEOUT && opt->keep_waiting) {
        /* The last slice's message says what was waited for (no listener, a full backlog, no
         * answer); its length is the slice's, not the whole wait's. */
        cuipc_error_saved last;
        cuipc_error_save(&last);
        s = CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "%s (%lld ms in all)", last.msg,
                       (long long)(timeout_ns / 1000000));
    }
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
    bool refused; /* a proxy failed validation (not the decode itself) */
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

/* Validate one proxy as the decoder reads it; a pool chunk joins the message's held list. */
static cuipc_status check_proxy(const cuipc_proxy *x, adopt_ctx *a) {
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
    CUIPC_TRY(cuipc_chunk_hold(a->c, v, x->u.pool.slot, x->u.pool.generation));
    if (a->m->n_held == a->cap) {
        uint32_t cap = a->cap ? a->cap * 2 : 8;
        held_chunk *grown = realloc(a->m->held, cap * sizeof *grown);
        if (!grown) {
            cuipc_chunk_unhold(a->c, v, x->u.pool.slot, x->u.pool.generation);
            return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "held chunk list of %u", cap);
        }
        a->m->held = grown;
        a->cap = cap;
    }
    a->m->held[a->m->n_held++] =
        (held_chunk){.view = v, .slot = x->u.pool.slot, .generation = x->u.pool.generation};
    return CUIPC_OK;
}

static cuipc_status adopt_proxy(const cuipc_proxy *x, void *arg) {
    adopt_ctx *a = arg;
    cuipc_status s = check_proxy(x, a);
    a->refused = s != CUIPC_OK;
    return s;
}

cuipc_status cuipc_consumer_adopt(cuipc_consumer *c, const void *buf, size_t len,
                                  cuipc_message **out) {
    if (!c || !buf || !out)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "consumer %p, bytes %p, out %p: none may be NULL",
                          (void *)c, buf, (void *)out);
    *out = NULL;
    cuipc_message *m = calloc(1, sizeof *m);
    if (!m)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "message struct");
    m->c = c;
    adopt_ctx a = {.c = c, .m = m};
    cuipc_status s = cuipc_decode_with(buf, len, adopt_proxy, &a, &m->tree);
    if (s != CUIPC_OK) {
        cuipc_error_saved saved;
        cuipc_error_save(&saved);
        /* A refused proxy: the valid chunks before it are still ours to give back. A message
         * that does not decode is given nothing back, whatever it named. */
        if (!a.refused) {
            for (uint32_t i = 0; i < m->n_held; i++)
                cuipc_chunk_unhold(c, m->held[i].view, m->held[i].slot, m->held[i].generation);
            m->n_held = 0;
        }
        cuipc_message_free(m);
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

/* The ring's one reader at a time, within timeout_ns (< 0: no limit): false when another
 * thread held the turn for all of it; else true, with the time left in *left. */
static bool take_recv_turn(cuipc_consumer *c, int64_t timeout_ns, int64_t *left) {
    *left = timeout_ns < 0 ? -1 : timeout_ns;
    if (pthread_mutex_trylock(&c->recv_lock) == 0)
        return true;
    if (timeout_ns < 0) {
        pthread_mutex_lock(&c->recv_lock);
        return true;
    }
    if (timeout_ns == 0)
        return false;
    /* timedlock's deadline is on the wall clock (pthread_mutex_clocklock's monotonic one is not
     * seen by ThreadSanitizer); the time left is measured on the monotonic one. */
    uint64_t deadline = cuipc_now_ns() + (uint64_t)timeout_ns;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t wall = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + (uint64_t)timeout_ns;
    ts.tv_sec = (time_t)(wall / 1000000000u);
    ts.tv_nsec = (long)(wall % 1000000000u);
    if (pthread_mutex_timedlock(&c->recv_lock, &ts) != 0)
        return false;
    *left = left_ns(deadline);
    return true;
}

static cuipc_status interrupted(void) {
    return CUIPC_FAIL(CUIPC_ERR_CLOSED, "recv: interrupted (the consumer stops receiving)");
}

static cuipc_status receive(cuipc_consumer *c, int64_t timeout_ns, cuipc_message **out) {
    void *buf = NULL;
    size_t len = 0;
    int64_t left;
    /* An interrupted ring refuses the recv itself; only a turn not had must ask. */
    if (!take_recv_turn(c, timeout_ns, &left))
        return cuipc_ring_interrupted(c->ring)
                   ? interrupted()
                   : CUIPC_FAIL(
                         CUIPC_ERR_TIMEOUT,
                         "another thread was receiving on this consumer for the whole %lld ms",
                         (long long)(timeout_ns / 1000000));
    cuipc_status s = cuipc_ring_recv(c->ring, &buf, &len, left);
    pthread_mutex_unlock(&c->recv_lock);
    if (s == CUIPC_ERR_PEER_DEAD)
        return CUIPC_FAIL(s, "producer (pid %d) died", (int)c->producer_pid);
    if (s != CUIPC_OK)
        return s;
    s = cuipc_consumer_adopt(c, buf, len, out);
    free(buf);
    if (cuipc_ring_interrupted(c->ring)) {
        /* Taken as the interrupt came: after it, recv gives no message (its chunks go back),
         * nor the error of one that did not decode. */
        cuipc_message_free(*out);
        *out = NULL;
        return interrupted();
    }
    return s;
}

cuipc_status cuipc_consumer_recv(cuipc_consumer *c, int64_t timeout_ns, cuipc_message **out) {
    if (!c || !out)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "consumer %p, out %p: neither may be NULL",
                          (void *)c, (void *)out);
    *out = NULL;
    atomic_fetch_add_explicit(&c->receivers, 1, memory_order_seq_cst);
    cuipc_status s = receive(c, timeout_ns, out);
    /* The last touch of c: a detach waiting for the receivers may free it right after. */
    atomic_fetch_sub_explicit(&c->receivers, 1, memory_order_release);
    return s;
}

void cuipc_consumer_interrupt(cuipc_consumer *c) {
    if (c)
        cuipc_ring_interrupt(c->ring);
}

const cuipc_value *cuipc_message_value(const cuipc_message *m) {
    return m->tree;
}

void cuipc_consumer_stats_get(cuipc_consumer *c, cuipc_consumer_stats *out) {
    pthread_mutex_lock(&c->lock);
    *out = c->stats;
    pthread_mutex_unlock(&c->lock);
}

void cuipc_consumer_drop_socket_in_child(cuipc_consumer *c) {
    if (c && c->sock >= 0) {
        close(c->sock); /* async-signal-safe: callable from a pthread_atfork child handler */
        c->sock = -1;
    }
}

cuipc_status cuipc_consumer_detach_within(cuipc_consumer *c, int64_t timeout_ns) {
    if (!c)
        return CUIPC_OK;
    /* Receivers blocked on other threads would wake on a ring that is gone: they are woken
     * (CLOSED) and left before anything is unmapped. Each returns within its next look at the
     * ring, or once the message it was decoding is freed. */
    cuipc_ring_interrupt(c->ring);
    while (atomic_load_explicit(&c->receivers, memory_order_acquire))
        usleep(50);
    int guard = cuipc_fork_guard_add(c->sock); /* a child forked from now on holds no place */
    /* An ack queued on a stream comes after the reads queued before it there (a copy out of
     * the pool, the borrower's kernels): once it is written, the GPU is done with the table,
     * the arena and the opened handles. Their release in the driver would wait for it with no
     * limit (as cuipc_pool_destroy_within says); where it does not come in time, they are left
     * mapped. */
    uint64_t deadline = cuipc_now_ns() + (uint64_t)(timeout_ns < 0 ? 0 : timeout_ns);
    uint32_t queued;
    while ((queued = cuipc_place_acks_queued(&c->host, &c->gpu, c->index)) &&
           (timeout_ns < 0 || cuipc_now_ns() < deadline))
        usleep(100);
    cuipc_status s = CUIPC_OK;
    if (queued) {
        /* Nor is the place given back yet: the producer would hand on the chunks whose reads
         * are still queued. A thread gives it back once the acks have landed. */
        bool kept = cuipc_keep_place_until_acked(c, guard);
        s = CUIPC_FAIL(
            CUIPC_ERR_TIMEOUT,
            "%u releases queued on streams had not run on the GPU after %lld ms: the producer's "
            "sync tables, its host arena and the opened handles are left mapped, for them to "
            "land in, and this consumer's place is given back %s",
            queued, (long long)(timeout_ns / 1000000),
            kept ? "only once they have" : "when the process exits (no thread to watch them)");
    } else {
        /* The mappings are closed once no other consumer of this process holds them. Newest
         * first: the cache's scan starts there, so a long cuda_ipc list is given back in
         * linear time. */
        for (uint32_t i = c->n_opened; i-- > 0;)
            cuipc_handle_cache_release(c->opened[i].handle, c->opened[i].device);
        cuipc_pool_view_unmap(&c->host);
        cuipc_pool_view_unmap(&c->gpu);
        cuipc_ring_destroy(c->ring);
        /* The producer's monitor sees the hang-up and reclaims what we held. */
        if (c->sock >= 0)
            cuipc_fork_guard_close(c->sock, guard, true);
        /* Copy-out buffers already freed go back to the driver; one that cannot keeps its
         * memory cached, which is no failure of the detach. */
        cuipc_status_ignore(cuipc_cuda_copy_pools_trim());
    }
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->recv_lock);
    free(c->opened); /* a detach that gave up keeps its references: the mappings stay */
    free(c);
    return s;
}

void cuipc_consumer_detach(cuipc_consumer *c) {
    /* Gone either way; a TIMEOUT left the mappings and the place, and says so in
     * cuipc_last_error(). */
    cuipc_status_ignore(cuipc_consumer_detach_within(c, CUIPC_TEARDOWN_WAIT_NS));
}
