/* The producer: owns the pools, accepts consumers on a Unix socket (handing them the ring,
 * arena and sync-table descriptors), watches their connections so that a consumer that dies is
 * noticed at once and its chunks are reclaimed, and broadcasts encoded messages. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_api.h"
#include "cuipc/codec.h"
#include "error_internal.h"
#include "shm.h"
#include "socket.h"
#include "transport_internal.h"

#define HANDSHAKE_TIMEOUT_NS (5ll * 1000 * 1000 * 1000)

void cuipc_producer_config_init(cuipc_producer_config *c) {
    memset(c, 0, sizeof *c);
    c->mode = CUIPC_MODE_DEFAULT;
    c->gpu_pool_bytes = 0;
    c->host_pool_bytes = 64ull << 20;
    c->device = 0;
    c->max_consumers = 1;
    c->slots = 4096;
    c->ring_bytes = 1ull << 20;
    c->alignment = 256;
    c->fit = CUIPC_FIT_BEST;
    c->full_policy = CUIPC_FULL_WAIT;
    c->full_timeout_ns = 1000ll * 1000 * 1000;
}

static cuipc_status make_pool(const cuipc_producer_config *c, int memory, uint64_t size,
                              cuipc_pool **out) {
    cuipc_pool_config pc;
    cuipc_pool_config_init(&pc);
    pc.memory = memory;
    pc.size = size;
    pc.device = c->device;
    pc.max_consumers = c->max_consumers;
    pc.slots = c->slots;
    pc.alignment = c->alignment;
    pc.fit = c->fit;
    return cuipc_pool_create(&pc, out);
}

/* Forget consumer c: close its connection, retire its ring, release everything it held. It
 * detached if it said goodbye before its hang-up, else it died. */
static void drop_consumer_locked(cuipc_producer *p, uint32_t c) {
    cuipc_consumer_conn *k = &p->conns[c];
    if (!k->attached)
        return;
    bool detached = k->said_goodbye || cuipc_socket_heard_goodbye(k->sock);
    k->attached = false;
    p->live_mask &= ~(1ull << c);
    close(k->sock);
    k->sock = -1;
    if (k->ring) {
        cuipc_ring_close(k->ring);
        cuipc_ring **grown = realloc(p->retired_rings, (p->n_retired + 1) * sizeof *grown);
        if (grown) {
            p->retired_rings = grown;
            p->retired_rings[p->n_retired++] = k->ring;
        } else {
            cuipc_ring_destroy(k->ring); /* no sender holds it: sends take send_lock first */
        }
        k->ring = NULL;
    }
    if (detached)
        p->stats.consumers_detached++;
    else
        p->stats.consumers_dead++;
    if (p->gpu_pool)
        cuipc_pool_consumer_dead(p->gpu_pool, c);
    if (p->host_pool)
        cuipc_pool_consumer_dead(p->host_pool, c);
}

static void poke_monitor(cuipc_producer *p) {
    char b = 1;
    ssize_t n = write(p->wake_pipe[1], &b, 1);
    (void)n; /* a full pipe already guarantees a wake-up */
}

/* Sleeps in poll() on every consumer connection: a hang-up means the consumer exited. */
static void *monitor_main(void *arg) {
    cuipc_producer *p = arg;
    struct pollfd fds[CUIPC_MAX_CONSUMERS + 1];
    uint32_t who[CUIPC_MAX_CONSUMERS + 1];
    while (!atomic_load(&p->stopping)) {
        int n = 0;
        fds[n] = (struct pollfd){.fd = p->wake_pipe[0], .events = POLLIN};
        who[n++] = UINT32_MAX;
        pthread_mutex_lock(&p->lock);
        for (uint32_t c = 0; c < p->cfg.max_consumers; c++) {
            if (!p->conns[c].attached)
                continue;
            fds[n] = (struct pollfd){.fd = p->conns[c].sock, .events = POLLIN | POLLRDHUP};
            who[n++] = c;
        }
        pthread_mutex_unlock(&p->lock);
        int r = poll(fds, (nfds_t)n, 1000);
        if (r <= 0)
            continue;
        if (fds[0].revents & POLLIN) {
            char buf[64];
            ssize_t got = read(p->wake_pipe[0], buf, sizeof buf);
            (void)got;
        }
        for (int i = 1; i < n; i++) {
            if (!(fds[i].revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL | POLLIN)))
                continue;
            /* After the handshake a consumer writes only its goodbye: readable means it is
             * leaving, on purpose or not. */
            pthread_mutex_lock(&p->lock);
            cuipc_consumer_conn *k = &p->conns[who[i]];
            if (k->attached && k->sock == fds[i].fd) {
                if (cuipc_socket_heard_goodbye(fds[i].fd))
                    k->said_goodbye = true;
                if (!cuipc_socket_peer_alive(fds[i].fd))
                    drop_consumer_locked(p, who[i]);
            }
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

static cuipc_status setup_socket(cuipc_producer *p) {
    if (p->cfg.socket_path) {
        if (strlen(p->cfg.socket_path) >= sizeof p->socket_path)
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "socket path longer than %zu bytes",
                              sizeof p->socket_path - 1);
        strcpy(p->socket_path, p->cfg.socket_path);
    } else {
        /* A private 0700 directory with an unpredictable name holds the socket. */
        const char *tmp = getenv("TMPDIR");
        if (!tmp || strlen(tmp) > 40)
            tmp = "/tmp";
        snprintf(p->private_dir, sizeof p->private_dir, "%s/cuipc-XXXXXX", tmp);
        if (!mkdtemp(p->private_dir)) {
            p->private_dir[0] = '\0';
            return CUIPC_FAIL_ERRNO("mkdtemp in %s", tmp);
        }
        snprintf(p->socket_path, sizeof p->socket_path, "%s/attach.sock", p->private_dir);
    }
    return cuipc_socket_listen(p->socket_path, &p->listen_fd);
}

static cuipc_status validate_config(const cuipc_producer_config *c) {
    if (c->mode != CUIPC_MODE_DEFAULT && c->mode != CUIPC_MODE_CUDA_IPC &&
        c->mode != CUIPC_MODE_CUDA_IPC_POOL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "mode %d is not a cuipc_mode", (int)c->mode);
    if (c->max_consumers < 1 || c->max_consumers > CUIPC_MAX_CONSUMERS)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "max_consumers %u not in 1..%d", c->max_consumers,
                          CUIPC_MAX_CONSUMERS);
    if (c->mode == CUIPC_MODE_CUDA_IPC_POOL && c->gpu_pool_bytes == 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "mode cuda_ipc_pool needs gpu_pool_bytes > 0");
    if (c->mode == CUIPC_MODE_DEFAULT && c->host_pool_bytes == 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "mode default needs host_pool_bytes > 0");
    if (c->full_policy == CUIPC_FULL_FALLBACK && c->host_pool_bytes == 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "the fallback policy needs host_pool_bytes > 0");
    if (c->ring_bytes < 4096 || (c->ring_bytes & (c->ring_bytes - 1)))
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "ring_bytes %llu is not a power of two >= 4096",
                          (unsigned long long)c->ring_bytes);
    return CUIPC_OK;
}

/* CUIPC_TEST_SEND_DELAY_US: for testing regression detection only (ci/compare-power). Every
 * send spins this long before it hands the message to the consumers: a regression in the
 * library's own path that no scenario shows. Unset or 0 in any real use. */
static cuipc_status test_send_delay(uint64_t *ns) {
    const char *v = getenv("CUIPC_TEST_SEND_DELAY_US");
    *ns = 0;
    if (v == NULL || *v == '\0')
        return CUIPC_OK;
    char *end;
    errno = 0;
    double us = strtod(v, &end);
    if (errno || end == v || *end || !(us >= 0) || us > 1e7)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "CUIPC_TEST_SEND_DELAY_US is '%s': expected microseconds in 0..1e7", v);
    *ns = (uint64_t)(us * 1e3);
    return CUIPC_OK;
}

cuipc_status cuipc_producer_create(const cuipc_producer_config *cfg, cuipc_producer **out) {
    *out = NULL;
    CUIPC_TRY(validate_config(cfg));
    uint64_t delay_ns;
    CUIPC_TRY(test_send_delay(&delay_ns));
    cuipc_producer *p = calloc(1, sizeof *p);
    if (!p)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "producer struct");
    p->test_send_delay_ns = delay_ns;
    p->cfg = *cfg;
    p->cfg.socket_path = NULL; /* copied below; the caller's string need not outlive us */
    p->id = cuipc_random_u64() | 1;
    p->listen_fd = -1;
    p->wake_pipe[0] = p->wake_pipe[1] = -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->send_lock, NULL);
    for (uint32_t c = 0; c < CUIPC_MAX_CONSUMERS; c++)
        p->conns[c].sock = -1;
    cuipc_status s = CUIPC_OK;
    if (cfg->gpu_pool_bytes &&
        (s = make_pool(cfg, CUIPC_MEMORY_CUDA, cfg->gpu_pool_bytes, &p->gpu_pool)) != CUIPC_OK)
        goto fail;
    if (cfg->host_pool_bytes &&
        (s = make_pool(cfg, CUIPC_MEMORY_HOST, cfg->host_pool_bytes, &p->host_pool)) != CUIPC_OK)
        goto fail;
    p->cfg.socket_path = cfg->socket_path;
    s = setup_socket(p);
    p->cfg.socket_path = NULL;
    if (s != CUIPC_OK)
        goto fail;
    if (pipe2(p->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        s = CUIPC_FAIL_ERRNO("pipe2");
        goto fail;
    }
    if (pthread_create(&p->monitor, NULL, monitor_main, p) != 0) {
        s = CUIPC_FAIL(CUIPC_ERR_SYSTEM, "cannot start the consumer monitor thread");
        goto fail;
    }
    p->monitor_running = true;
    *out = p;
    return CUIPC_OK;
fail:
    cuipc_producer_destroy(p);
    return s;
}

const char *cuipc_producer_socket_path(const cuipc_producer *p) {
    return p->socket_path;
}

static void describe_pool(const cuipc_pool *pool, cuipc_hello_pool *h) {
    memset(h, 0, sizeof *h);
    if (!pool)
        return;
    const cuipc_pool_config *pc = cuipc_pool_get_config(pool);
    h->present = 1;
    h->memory = (uint32_t)pc->memory;
    h->device = pc->memory == CUIPC_MEMORY_CUDA ? pc->device : CUIPC_DEVICE_HOST;
    h->slots = pc->slots;
    h->pool_id = cuipc_pool_id(pool);
    h->size = pc->size;
    if (pc->memory == CUIPC_MEMORY_CUDA)
        memcpy(h->ipc_handle, cuipc_pool_ipc_handle(pool), CUIPC_IPC_HANDLE_BYTES);
}

/* Hand one connected consumer its index and descriptors; wait for its acknowledgement. */
static cuipc_status handshake(cuipc_producer *p, int sock, pid_t pid) {
    pthread_mutex_lock(&p->lock);
    uint32_t idx = UINT32_MAX;
    for (uint32_t c = 0; c < p->cfg.max_consumers; c++) {
        if (!p->conns[c].attached) {
            idx = c;
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    if (idx == UINT32_MAX)
        return CUIPC_FAIL(CUIPC_ERR_POOL_FULL, "all %u consumer places are taken (pid %d refused)",
                          p->cfg.max_consumers, (int)pid);
    cuipc_ring *ring = NULL;
    CUIPC_TRY(cuipc_ring_create(p->cfg.ring_bytes, &ring));
    cuipc_hello h = {.magic = CUIPC_HELLO_MAGIC,
                     .version = CUIPC_HELLO_VERSION,
                     .consumer_index = idx,
                     .max_consumers = p->cfg.max_consumers,
                     .producer_pid = (int32_t)getpid(),
                     .producer_id = p->id};
    describe_pool(p->host_pool, &h.host);
    describe_pool(p->gpu_pool, &h.gpu);
    int fds[4], n = 0;
    fds[n++] = cuipc_ring_fd(ring);
    if (p->host_pool) {
        fds[n++] = cuipc_pool_memory_fd(p->host_pool);
        fds[n++] = cuipc_sync_table_fd(cuipc_pool_sync(p->host_pool));
    }
    if (p->gpu_pool)
        fds[n++] = cuipc_sync_table_fd(cuipc_pool_sync(p->gpu_pool));
    cuipc_status s = cuipc_socket_send(sock, &h, sizeof h, fds, n);
    cuipc_hello_ack ack;
    int nfds = 0;
    if (s == CUIPC_OK)
        s = cuipc_socket_recv(sock, &ack, sizeof ack, NULL, &nfds, 0, HANDSHAKE_TIMEOUT_NS);
    if (s == CUIPC_OK && (ack.magic != CUIPC_HELLO_MAGIC || ack.consumer_index != idx))
        s = CUIPC_FAIL(CUIPC_ERR_CORRUPT, "bad handshake reply from pid %d", (int)pid);
    if (s == CUIPC_OK && ack.status != CUIPC_OK)
        s = CUIPC_FAIL((cuipc_status)ack.status, "consumer pid %d could not map the pools (%s)",
                       (int)pid, cuipc_status_name((cuipc_status)ack.status));
    if (s != CUIPC_OK) {
        cuipc_ring_destroy(ring);
        return s;
    }
    /* A send blocked on a full ring gives up as soon as the consumer's connection drops. */
    cuipc_ring_set_peer_check(ring, cuipc_socket_peer_alive_ctx, (void *)(intptr_t)sock);
    pthread_mutex_lock(&p->lock);
    /* A place freed by a dead consumer is clean: its chunks were acked on its behalf. */
    p->conns[idx] = (cuipc_consumer_conn){.attached = true, .sock = sock, .pid = pid, .ring = ring};
    p->live_mask |= 1ull << idx;
    p->stats.consumers_attached++;
    pthread_mutex_unlock(&p->lock);
    poke_monitor(p);
    return CUIPC_OK;
}

cuipc_status cuipc_producer_accept(cuipc_producer *p, uint32_t n, int64_t timeout_ns) {
    if (n > p->cfg.max_consumers)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "waiting for %u consumers but max_consumers is %u",
                          n, p->cfg.max_consumers);
    uint64_t deadline = cuipc_now_ns() + (uint64_t)(timeout_ns < 0 ? INT64_MAX / 2 : timeout_ns);
    while (cuipc_producer_consumer_count(p) < n) {
        uint64_t now = cuipc_now_ns();
        if (now >= deadline)
            return CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "%u of %u consumers attached within %lld ms",
                              cuipc_producer_consumer_count(p), n,
                              (long long)(timeout_ns / 1000000));
        int sock;
        pid_t pid;
        cuipc_status s = cuipc_socket_accept(p->listen_fd, (int64_t)(deadline - now), &sock, &pid);
        if (s == CUIPC_ERR_TIMEOUT)
            continue;
        if (s != CUIPC_OK)
            return s;
        s = handshake(p, sock, pid);
        if (s != CUIPC_OK) {
            close(sock);
            /* One misbehaving peer must not stop the others from attaching. */
            fprintf(stderr, "cuipc: consumer attach failed: %s\n", cuipc_last_error());
        }
    }
    return CUIPC_OK;
}

uint32_t cuipc_producer_consumer_count(const cuipc_producer *p) {
    return (uint32_t)__builtin_popcountll(cuipc_producer_live_mask((cuipc_producer *)p));
}

uint64_t cuipc_producer_live_mask(cuipc_producer *p) {
    pthread_mutex_lock(&p->lock);
    uint64_t m = p->live_mask;
    pthread_mutex_unlock(&p->lock);
    return m;
}

cuipc_pool *cuipc_producer_pool_by_id(cuipc_producer *p, uint64_t id) {
    if (p->gpu_pool && cuipc_pool_id(p->gpu_pool) == id)
        return p->gpu_pool;
    if (p->host_pool && cuipc_pool_id(p->host_pool) == id)
        return p->host_pool;
    return NULL;
}

cuipc_status cuipc_producer_export(cuipc_producer *p, void *base, size_t size, cuipc_proxy *x) {
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

typedef struct chunk_walk {
    cuipc_producer *p;
    cuipc_chunk_fn fn;
    void *ctx;
} chunk_walk;

static cuipc_status visit_chunk(cuipc_value *node, void *arg) {
    chunk_walk *w = arg;
    const cuipc_proxy *x = cuipc_value_as_proxy(node);
    if (!x || x->kind != CUIPC_PROXY_POOL || x->nbytes == 0)
        return CUIPC_OK;
    cuipc_pool *pool = cuipc_producer_pool_by_id(w->p, x->u.pool.pool_id);
    if (pool)
        w->fn(w->p, pool, x, w->ctx);
    return CUIPC_OK;
}

void cuipc_producer_for_each_chunk(cuipc_producer *p, const cuipc_value *wrapped, cuipc_chunk_fn fn,
                                   void *ctx) {
    chunk_walk w = {p, fn, ctx};
    cuipc_value_visit((cuipc_value *)wrapped, visit_chunk, &w);
}

/* Consumers in `missed` never got the message: their acks are given on their behalf. */
static void release_missed(cuipc_producer *p, cuipc_pool *pool, const cuipc_proxy *x, void *ctx) {
    uint64_t missed = *(uint64_t *)ctx;
    for (uint32_t c = 0; c < p->cfg.max_consumers; c++)
        if (missed & (1ull << c))
            cuipc_pool_release_on_behalf(pool, x->u.pool.slot, x->u.pool.generation, c);
}

cuipc_status cuipc_producer_send_wrapped(cuipc_producer *p, const cuipc_value *wrapped,
                                         int64_t timeout_ns) {
    size_t len = 0;
    CUIPC_TRY(cuipc_encoded_size(wrapped, &len));
    void *buf = malloc(len);
    if (!buf)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "message buffer of %zu bytes", len);
    cuipc_status s = cuipc_encode(wrapped, buf, len, &len);
    if (s != CUIPC_OK) {
        free(buf);
        return s;
    }
    if (p->test_send_delay_ns) { /* spun, not slept: a sleep overshoots by the timer slack */
        uint64_t until = cuipc_now_ns() + p->test_send_delay_ns;
        while (cuipc_now_ns() < until)
            ;
    }
    pthread_mutex_lock(&p->send_lock);
    pthread_mutex_lock(&p->lock);
    bool closed = p->closed;
    uint64_t targets = p->live_mask;
    cuipc_ring *rings[CUIPC_MAX_CONSUMERS] = {0};
    for (uint32_t c = 0; c < p->cfg.max_consumers; c++)
        rings[c] = p->conns[c].ring;
    pthread_mutex_unlock(&p->lock);

    uint64_t delivered = 0, died = 0;
    cuipc_status first_error = CUIPC_OK;
    char first_msg[256] = "";
    for (uint32_t c = 0; c < p->cfg.max_consumers && !closed; c++) {
        if (!(targets & (1ull << c)))
            continue;
        cuipc_status r = cuipc_ring_send(rings[c], buf, len, timeout_ns);
        if (r == CUIPC_OK) {
            delivered |= 1ull << c;
            continue;
        }
        /* A consumer that died during the send (its ring reports the dead peer, or the monitor
         * already dropped it and closed its ring) is skipped like one that died before. */
        bool dead = r == CUIPC_ERR_PEER_DEAD || r == CUIPC_ERR_CLOSED;
        if (dead)
            died |= 1ull << c;
        if (!dead && first_error == CUIPC_OK) {
            first_error = r;
            snprintf(first_msg, sizeof first_msg, "consumer %u: %s", c, cuipc_last_error());
        }
        if (dead || r == CUIPC_ERR_CORRUPT) {
            pthread_mutex_lock(&p->lock);
            if (p->conns[c].ring == rings[c])
                drop_consumer_locked(p, c);
            pthread_mutex_unlock(&p->lock);
        }
    }
    pthread_mutex_unlock(&p->send_lock);
    free(buf);
    /* The recycler wake owed by the allocations, now that the consumers have the message. */
    if (p->gpu_pool)
        cuipc_pool_kick_recycler(p->gpu_pool);

    /* Every consumer a chunk waits for but that did not get this message is acked for. */
    uint64_t missed = ~delivered;
    cuipc_producer_for_each_chunk(p, wrapped, release_missed, &missed);

    pthread_mutex_lock(&p->lock);
    if (delivered)
        p->stats.messages_sent++;
    pthread_mutex_unlock(&p->lock);
    if (closed)
        return CUIPC_FAIL(CUIPC_ERR_CLOSED, "producer was closed");
    if (!targets || died == targets)
        return CUIPC_FAIL(CUIPC_ERR_PEER_DEAD, "no live consumer to send to");
    if (first_error != CUIPC_OK)
        return CUIPC_FAIL(first_error, "%s (delivered to %d of %d consumers)", first_msg,
                          __builtin_popcountll(delivered), __builtin_popcountll(targets));
    return CUIPC_OK;
}

cuipc_status cuipc_producer_send(cuipc_producer *p, const cuipc_value *tree, cuipc_stream stream,
                                 int64_t timeout_ns) {
    cuipc_value *wrapped = NULL;
    CUIPC_TRY(cuipc_producer_wrap(p, tree, stream, &wrapped));
    cuipc_status s = cuipc_producer_send_wrapped(p, wrapped, timeout_ns);
    cuipc_value_free(wrapped);
    return s;
}

void cuipc_producer_stats_get(cuipc_producer *p, cuipc_producer_stats *out) {
    pthread_mutex_lock(&p->lock);
    *out = p->stats;
    pthread_mutex_unlock(&p->lock);
    memset(&out->gpu_pool, 0, sizeof out->gpu_pool);
    memset(&out->host_pool, 0, sizeof out->host_pool);
    if (p->gpu_pool)
        cuipc_pool_stats_get(p->gpu_pool, &out->gpu_pool);
    if (p->host_pool)
        cuipc_pool_stats_get(p->host_pool, &out->host_pool);
}

void cuipc_producer_close(cuipc_producer *p) {
    pthread_mutex_lock(&p->send_lock);
    pthread_mutex_lock(&p->lock);
    p->closed = true;
    for (uint32_t c = 0; c < p->cfg.max_consumers; c++)
        if (p->conns[c].attached && p->conns[c].ring)
            cuipc_ring_close(p->conns[c].ring);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->send_lock);
}

cuipc_status cuipc_producer_drain(cuipc_producer *p, int64_t timeout_ns) {
    uint64_t deadline = cuipc_now_ns() + (uint64_t)(timeout_ns < 0 ? INT64_MAX / 2 : timeout_ns);
    for (;;) {
        uint32_t left = 0;
        cuipc_pool *pools[2] = {p->gpu_pool, p->host_pool};
        for (int i = 0; i < 2; i++) {
            if (!pools[i])
                continue;
            cuipc_pool_reclaim(pools[i]);
            cuipc_pool_stats st;
            cuipc_pool_stats_get(pools[i], &st);
            left += st.in_flight;
        }
        if (!left)
            return CUIPC_OK;
        if (cuipc_now_ns() >= deadline)
            return CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "%u chunks still in flight after %lld ms", left,
                              (long long)(timeout_ns / 1000000));
        usleep(200);
    }
}

void cuipc_producer_destroy(cuipc_producer *p) {
    if (!p)
        return;
    if (p->monitor_running) {
        atomic_store(&p->stopping, true);
        poke_monitor(p);
        pthread_join(p->monitor, NULL);
    }
    for (uint32_t c = 0; c < CUIPC_MAX_CONSUMERS; c++) {
        if (p->conns[c].sock >= 0)
            close(p->conns[c].sock);
        cuipc_ring_destroy(p->conns[c].ring);
    }
    for (uint32_t i = 0; i < p->n_retired; i++)
        cuipc_ring_destroy(p->retired_rings[i]);
    free(p->retired_rings);
    if (p->listen_fd >= 0) {
        close(p->listen_fd);
        unlink(p->socket_path);
    }
    if (p->private_dir[0])
        rmdir(p->private_dir);
    if (p->wake_pipe[0] >= 0)
        close(p->wake_pipe[0]);
    if (p->wake_pipe[1] >= 0)
        close(p->wake_pipe[1]);
    cuipc_pool_destroy(p->gpu_pool);
    cuipc_pool_destroy(p->host_pool);
    free(p->exports);
    free(p->buffers); /* their memory went with the pools */
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->send_lock);
    free(p);
}
