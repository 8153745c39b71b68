/* The producer's table of consumers, shared by the monitor, the attach phase and the send: who
 * is live, dropping one that left, and the rings of departed consumers that wait for the send in
 * progress before they are freed. */
#include <stdlib.h>
#include <unistd.h>

#include "socket.h"
#include "transport_internal.h"

/* Forget consumer c (lock held): close its connection, retire its ring, release everything it
 * held. It detached if it said goodbye before its hang-up, else it died. */
void cuipc_producer_drop_consumer_locked(cuipc_producer *p, uint32_t c) {
    cuipc_consumer_conn *k = &p->conns[c];
    if (!k->attached)
        return;
    bool detached = k->said_goodbye || cuipc_socket_heard_goodbye(k->sock);
    k->attached = false;
    p->live_mask &= ~(1ull << c);
    if (k->ring) {
        /* Closed before its connection: a send blocked on it checks the socket it was given. */
        cuipc_ring_close(k->ring);
        /* Room is kept for every live consumer (accept reaps before it attaches one more). */
        p->retired[p->n_retired++] = k->ring;
        k->ring = NULL;
    }
    close(k->sock);
    k->sock = -1;
    if (detached)
        p->stats.consumers_detached++;
    else
        p->stats.consumers_dead++;
    if (p->gpu_pool)
        cuipc_pool_consumer_dead(p->gpu_pool, c);
    if (p->host_pool)
        cuipc_pool_consumer_dead(p->host_pool, c);
}

void cuipc_producer_reap_rings_locked(cuipc_producer *p) {
    for (uint32_t i = 0; i < p->n_retired; i++) {
        cuipc_ring **grown = p->cfg.debug_keep_departed_rings
                                 ? realloc(p->kept, (p->n_kept + 1) * sizeof *grown)
                                 : NULL;
        if (grown) { /* a leak on purpose, for positive controls */
            p->kept = grown;
            p->kept[p->n_kept++] = p->retired[i];
        } else {
            cuipc_ring_destroy(p->retired[i]);
        }
    }
    p->n_retired = 0;
}

void cuipc_producer_poke_monitor(cuipc_producer *p) {
    char b = 1;
    ssize_t n = write(p->wake_pipe[1], &b, 1);
    (void)n; /* a full pipe already guarantees a wake-up */
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
