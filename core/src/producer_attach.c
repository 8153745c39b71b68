/* The producer's attach phase: every accepted connection is a pending peer, handled as its
 * messages arrive (never one at a time with a wait each), with a deadline of its own. A peer is
 * given a place and a ring only once it asks for one; a place is the consumer's once it says it
 * mapped everything. Peers of another user, peers that break the protocol and peers that miss
 * their deadline are refused and counted; none of them ends the attach phase. What does end it
 * with an error is a failure on the producer's own side (no fd or memory left for a ring). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "error_internal.h"
#include "shm.h"
#include "socket.h"
#include "transport_internal.h"

/* From accept to acknowledgement. A consumer's part of it is one mmap per pool. */
#define HANDSHAKE_TIMEOUT_NS (2ll * 1000 * 1000 * 1000)

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

static void count_refusal(cuipc_producer *p, bool timed_out, const char *why) {
    pthread_mutex_lock(&p->lock);
    if (timed_out)
        p->stats.peers_timed_out++;
    else
        p->stats.peers_refused++;
    snprintf(p->last_refusal, sizeof p->last_refusal, "%s", why);
    pthread_mutex_unlock(&p->lock);
}

/* Forget pending peer i (its place, if it had one, is free again). */
static void forget(cuipc_producer *p, uint32_t i) {
    cuipc_pending_peer *q = &p->pending[i];
    if (q->idx != UINT32_MAX) {
        pthread_mutex_lock(&p->lock);
        p->conns[q->idx].reserved = false;
        pthread_mutex_unlock(&p->lock);
    }
    cuipc_ring_destroy(q->ring);
    if (q->sock >= 0)
        close(q->sock);
    p->pending[i] = p->pending[--p->n_pending];
}

static void refuse(cuipc_producer *p, uint32_t i, bool timed_out) {
    count_refusal(p, timed_out, cuipc_last_error());
    forget(p, i);
}

void cuipc_producer_pending_close_all(cuipc_producer *p) {
    while (p->n_pending)
        forget(p, p->n_pending - 1);
}

/* Tell a peer why it gets no place (best effort: it may be gone). */
static void send_refusal(int sock, cuipc_status st, const char *reason) {
    cuipc_hello h = {.magic = CUIPC_HELLO_MAGIC, .version = CUIPC_HELLO_VERSION, .status = st};
    snprintf(h.reason, sizeof h.reason, "%s", reason);
    cuipc_error_saved keep;
    cuipc_error_save(&keep);
    if (cuipc_socket_send(sock, &h, sizeof h, NULL, 0) != CUIPC_OK)
        cuipc_error_restore(&keep); /* the refusal's own failure is not the one to report */
}

static uint32_t free_place(cuipc_producer *p) {
    uint32_t idx = UINT32_MAX;
    pthread_mutex_lock(&p->lock);
    for (uint32_t c = 0; c < p->cfg.max_consumers && idx == UINT32_MAX; c++)
        if (!p->conns[c].attached && !p->conns[c].reserved)
            idx = c;
    if (idx != UINT32_MAX)
        p->conns[idx].reserved = true;
    pthread_mutex_unlock(&p->lock);
    return idx;
}

/* The peer asked for a place: give it one with its ring and the pools' descriptors. An error
 * is the producer's own failure (the attach phase ends with it). */
static cuipc_status offer_place(cuipc_producer *p, uint32_t i) {
    cuipc_pending_peer *q = &p->pending[i];
    cuipc_hello_request req;
    int nfds = 0;
    cuipc_status s = cuipc_socket_recv(q->sock, &req, sizeof req, NULL, &nfds, 0, 0);
    if (s == CUIPC_OK && req.magic != CUIPC_HELLO_MAGIC)
        s = CUIPC_FAIL(CUIPC_ERR_CORRUPT, "pid %d is not a cuipc consumer (magic 0x%llx)",
                       (int)q->pid, (unsigned long long)req.magic);
    if (s == CUIPC_OK && req.version != CUIPC_HELLO_VERSION) {
        s = CUIPC_FAIL(CUIPC_ERR_VERSION, "pid %d speaks attach version %u, the producer %u",
                       (int)q->pid, req.version, CUIPC_HELLO_VERSION);
        send_refusal(q->sock, s, cuipc_last_error());
    }
    if (s == CUIPC_OK && (q->idx = free_place(p)) == UINT32_MAX) {
        s = CUIPC_FAIL(CUIPC_ERR_POOL_FULL, "all %u consumer places are taken (pid %d refused)",
                       p->cfg.max_consumers, (int)q->pid);
        send_refusal(q->sock, s, cuipc_last_error());
    }
    if (s != CUIPC_OK) {
        refuse(p, i, false);
        return CUIPC_OK;
    }
    s = cuipc_ring_create(p->cfg.ring_bytes, &q->ring);
    if (s != CUIPC_OK) {
        /* The producer's own failure (fds, memory): the same for every peer after this one. */
        send_refusal(q->sock, s, cuipc_last_error());
        cuipc_error_saved why;
        cuipc_error_save(&why);
        forget(p, i);
        return CUIPC_FAIL(s, "cannot make a consumer's ring: %s", why.msg);
    }
    cuipc_hello h = {.magic = CUIPC_HELLO_MAGIC,
                     .version = CUIPC_HELLO_VERSION,
                     .status = CUIPC_OK,
                     .consumer_index = q->idx,
                     .max_consumers = p->cfg.max_consumers,
                     .producer_pid = (int32_t)getpid(),
                     .producer_id = p->id};
    describe_pool(p->host_pool, &h.host);
    describe_pool(p->gpu_pool, &h.gpu);
    int fds[4], n = 0;
    fds[n++] = cuipc_ring_fd(q->ring);
    if (p->host_pool) {
        fds[n++] = cuipc_pool_memory_fd(p->host_pool);
        fds[n++] = cuipc_sync_table_fd(cuipc_pool_sync(p->host_pool));
    }
    if (p->gpu_pool)
        fds[n++] = cuipc_sync_table_fd(cuipc_pool_sync(p->gpu_pool));
    if (cuipc_socket_send(q->sock, &h, sizeof h, fds, n) != CUIPC_OK)
        refuse(p, i, false);
    return CUIPC_OK;
}

/* The peer acknowledged (or refused) the place it was given. */
static void take_ack(cuipc_producer *p, uint32_t i) {
    cuipc_pending_peer *q = &p->pending[i];
    cuipc_hello_ack ack;
    int nfds = 0;
    cuipc_status s = cuipc_socket_recv(q->sock, &ack, sizeof ack, NULL, &nfds, 0, 0);
    if (s == CUIPC_OK && (ack.magic != CUIPC_HELLO_MAGIC || ack.consumer_index != q->idx))
        s = CUIPC_FAIL(CUIPC_ERR_CORRUPT, "bad handshake reply from pid %d", (int)q->pid);
    if (s == CUIPC_OK && ack.status != CUIPC_OK)
        s = CUIPC_FAIL((cuipc_status)ack.status, "consumer pid %d could not map the pools (%s)",
                       (int)q->pid, cuipc_status_name((cuipc_status)ack.status));
    if (s != CUIPC_OK) {
        refuse(p, i, false);
        return;
    }
    /* A send blocked on a full ring gives up as soon as the consumer's connection drops. */
    cuipc_ring_set_peer_check(q->ring, cuipc_socket_peer_alive_ctx, (void *)(intptr_t)q->sock);
    /* Room in the retired list for every live consumer: free the retired rings first when there
     * is none (waiting for the send in progress, the last that may use them). */
    pthread_mutex_lock(&p->lock);
    bool crowded =
        p->n_retired + (uint32_t)__builtin_popcountll(p->live_mask) + 1 > CUIPC_RETIRED_MAX;
    pthread_mutex_unlock(&p->lock);
    if (crowded)
        pthread_mutex_lock(&p->send_lock);
    pthread_mutex_lock(&p->lock);
    if (crowded)
        cuipc_producer_reap_rings_locked(p);
    /* A place freed by a dead consumer is clean: its chunks were acked on its behalf. */
    p->conns[q->idx] =
        (cuipc_consumer_conn){.attached = true, .sock = q->sock, .pid = q->pid, .ring = q->ring};
    p->live_mask |= 1ull << q->idx;
    p->stats.consumers_attached++;
    if (p->closed) /* its recv says CLOSED, as its predecessors' do; no send waits on it */
        cuipc_ring_close(q->ring);
    pthread_mutex_unlock(&p->lock);
    if (crowded)
        pthread_mutex_unlock(&p->send_lock);
    q->idx = UINT32_MAX; /* the place and ring are the consumer's now */
    q->ring = NULL;
    q->sock = -1;
    forget(p, i);
    cuipc_producer_poke_monitor(p);
}

static void expire(cuipc_producer *p, uint64_t now) {
    for (uint32_t i = p->n_pending; i-- > 0;) {
        if (now < p->pending[i].deadline_ns)
            continue;
        CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "pid %d did not finish its handshake within %lld ms",
                   (int)p->pending[i].pid, HANDSHAKE_TIMEOUT_NS / 1000000);
        refuse(p, i, true);
    }
}

/* Accept one connection as a pending peer. An error is the producer's own (no fd left). */
static cuipc_status take_connection(cuipc_producer *p) {
    int sock;
    pid_t pid;
    cuipc_status s = cuipc_socket_accept(p->listen_fd, 0, &sock, &pid);
    if (s == CUIPC_ERR_TIMEOUT)
        return CUIPC_OK;
    if (s == CUIPC_ERR_PERMISSION) {
        count_refusal(p, false, cuipc_last_error());
        return CUIPC_OK;
    }
    if (s != CUIPC_OK)
        return s;
    if (p->n_pending == CUIPC_PENDING_MAX) {
        /* Full: the oldest peer that has not asked for a place yet makes room. */
        uint32_t old = UINT32_MAX;
        for (uint32_t i = 0; i < p->n_pending; i++)
            if (p->pending[i].idx == UINT32_MAX &&
                (old == UINT32_MAX || p->pending[i].deadline_ns < p->pending[old].deadline_ns))
                old = i;
        if (old == UINT32_MAX) { /* cannot happen: at most max_consumers peers hold a place */
            close(sock);
            return CUIPC_OK;
        }
        CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "pid %d left silent while %d connections were pending",
                   (int)p->pending[old].pid, CUIPC_PENDING_MAX);
        refuse(p, old, true);
    }
    p->pending[p->n_pending++] =
        (cuipc_pending_peer){.sock = sock,
                             .pid = pid,
                             .deadline_ns = cuipc_now_ns() + HANDSHAKE_TIMEOUT_NS,
                             .idx = UINT32_MAX};
    return CUIPC_OK;
}

/* attached_before: stats.consumers_attached when the wait began, to name consumers that came and
 * left again during it (a count of those attached now would not show them). */
static cuipc_status attach_timeout(cuipc_producer *p, uint32_t n, int64_t timeout_ns,
                                   uint32_t attached_before) {
    pthread_mutex_lock(&p->lock);
    unsigned long long refused = p->stats.peers_refused, late = p->stats.peers_timed_out;
    uint32_t came = p->stats.consumers_attached - attached_before;
    char last[sizeof p->last_refusal];
    snprintf(last, sizeof last, "%s", p->last_refusal);
    pthread_mutex_unlock(&p->lock);
    return CUIPC_FAIL(CUIPC_ERR_TIMEOUT,
                      "%u of %u consumers attached within %lld ms (%u came during the wait, "
                      "%u handshakes under way, %llu peers refused, %llu timed out%s%s)",
                      cuipc_producer_consumer_count(p), n, (long long)(timeout_ns / 1000000), came,
                      p->n_pending, refused, late, last[0] ? "; last: " : "", last);
}

cuipc_status cuipc_producer_accept(cuipc_producer *p, uint32_t n, int64_t timeout_ns) {
    if (!p)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "producer is NULL");
    if (n > p->cfg.max_consumers)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "waiting for %u consumers but max_consumers is %u",
                          n, p->cfg.max_consumers);
    uint64_t deadline = cuipc_now_ns() + (uint64_t)(timeout_ns < 0 ? INT64_MAX / 2 : timeout_ns);
    pthread_mutex_lock(&p->lock);
    uint32_t attached_before = p->stats.consumers_attached;
    pthread_mutex_unlock(&p->lock);
    struct pollfd fds[1 + CUIPC_PENDING_MAX];
    /* At least one pass, even with a timeout of 0: a producer that sends while consumers come
     * and go moves their handshakes on with accept(p, n, 0) between messages. */
    for (bool first = true;; first = false) {
        if (cuipc_producer_consumer_count(p) >= n)
            return CUIPC_OK;
        uint64_t now = cuipc_now_ns();
        expire(p, now);
        if (now >= deadline && !first)
            return attach_timeout(p, n, timeout_ns, attached_before);
        uint64_t wake = deadline;
        fds[0] = (struct pollfd){.fd = p->listen_fd, .events = POLLIN};
        for (uint32_t i = 0; i < p->n_pending; i++) {
            fds[1 + i] = (struct pollfd){.fd = p->pending[i].sock, .events = POLLIN | POLLRDHUP};
            wake = p->pending[i].deadline_ns < wake ? p->pending[i].deadline_ns : wake;
        }
        int ms = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
        int r = poll(fds, 1 + p->n_pending, ms);
        if (r < 0 && errno != EINTR)
            return CUIPC_FAIL_ERRNO("poll on the attach socket");
        if (r <= 0)
            continue;
        /* Downwards: forget(i) moves the last entry, already handled, into i. */
        for (uint32_t i = p->n_pending; i-- > 0;) {
            short ev = fds[1 + i].revents;
            if (!ev)
                continue;
            if (!(ev & POLLIN)) { /* hung up without a word */
                CUIPC_FAIL(CUIPC_ERR_PEER_DEAD, "pid %d hung up during its handshake",
                           (int)p->pending[i].pid);
                refuse(p, i, false);
            } else if (p->pending[i].idx == UINT32_MAX) {
                CUIPC_TRY(offer_place(p, i));
            } else {
                take_ack(p, i);
            }
        }
        if (fds[0].revents & POLLIN)
            CUIPC_TRY(take_connection(p));
    }
}
