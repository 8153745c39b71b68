/* The place of a consumer whose detach gave up on the GPU (cuipc_consumer_detach_within): its
 * acks are still queued on streams, after reads of chunks the producer would hand on if told
 * the consumer left. A thread of its own watches the acks (host memory only: a driver call
 * would wait on the GPU) and gives the place back once they have landed. Its socket is closed
 * in a forked child, which would otherwise hold the place until it exits. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "consumer_internal.h"
#include "socket.h"

#define POLL_FIRST_US 1000
#define POLL_MOST_US (100 * 1000)
#define KEEPER_STACK_BYTES (64 * 1024)
/* Sockets of running keepers, for the fork handler (no lock there): -1 where free. */
#define KEPT_SOCKETS 64

typedef struct place_keeper {
    int sock;
    int kept_at; /* index in kept_socks, or -1 */
    cuipc_ring *ring;
    uint32_t index;
    pool_view host, gpu;
} place_keeper;

static _Atomic int kept_socks[KEPT_SOCKETS];
static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;

/* In a forked child: the keepers' threads are not there, and their sockets must not hold the
 * parent's places. close() is async-signal-safe. */
static void close_kept_in_child(void) {
    for (int i = 0; i < KEPT_SOCKETS; i++) {
        int fd = atomic_exchange(&kept_socks[i], -1);
        if (fd >= 0)
            close(fd);
    }
}

static void install_fork_handler(void) {
    for (int i = 0; i < KEPT_SOCKETS; i++)
        atomic_store(&kept_socks[i], -1);
    pthread_atfork(NULL, NULL, close_kept_in_child);
}

int cuipc_fork_guard_add(int fd) {
    if (fd < 0)
        return -1;
    pthread_once(&fork_handler_once, install_fork_handler);
    for (int i = 0; i < KEPT_SOCKETS; i++) {
        int free_slot = -1;
        if (atomic_compare_exchange_strong(&kept_socks[i], &free_slot, fd))
            return i;
    }
    return -1; /* more keepers than slots: a child may then hold this place until it exits */
}

void cuipc_fork_guard_close(int fd, int guard, bool goodbye) {
    if (goodbye)
        cuipc_socket_say_goodbye(fd);
    /* Every copy of the socket ends here, a child's forked since the guard was cleared too;
     * then the guard, then the fd (its number, once closed, may be another thread's). */
    shutdown(fd, SHUT_RDWR);
    if (guard >= 0)
        atomic_store(&kept_socks[guard], -1);
    close(fd);
}

static void *keep_place(void *arg) {
    place_keeper *k = arg;
    useconds_t wait_us = POLL_FIRST_US;
    /* A producer gone takes nothing back: no goodbye to wait for. */
    bool producer_alive = true;
    while (cuipc_place_acks_queued(&k->host, &k->gpu, k->index) &&
           (producer_alive = cuipc_socket_peer_alive(k->sock))) {
        usleep(wait_us);
        /* A GPU only slow comes soon; a stuck one costs little. */
        wait_us = wait_us * 2 < POLL_MOST_US ? wait_us * 2 : POLL_MOST_US;
    }
    cuipc_ring_destroy(k->ring);
    /* Views CUDA never registered release with no driver call, once nothing is queued into
     * them; the others stay (their release would wait for the GPU's work in flight). */
    pool_view *views[2] = {&k->host, &k->gpu};
    for (int i = 0; i < 2; i++)
        if (!views[i]->sync_dev_base && !views[i]->host_dev_base &&
            !cuipc_acks_queued(views[i], k->index))
            cuipc_pool_view_unmap(views[i]);
    cuipc_fork_guard_close(k->sock, k->kept_at, producer_alive);
    free(k);
    return NULL;
}

bool cuipc_keep_place_until_acked(cuipc_consumer *c, int guard) {
    if (c->sock < 0)
        return false;
    place_keeper *k = malloc(sizeof *k);
    if (!k)
        return false;
    *k = (place_keeper){.sock = c->sock,
                        .kept_at = guard,
                        .ring = c->ring,
                        .index = c->index,
                        .host = c->host,
                        .gpu = c->gpu};
    pthread_attr_t attr;
    pthread_t t;
    bool started = pthread_attr_init(&attr) == 0;
    if (started) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        bool small = pthread_attr_setstacksize(&attr, KEEPER_STACK_BYTES) == 0;
        started = pthread_create(&t, &attr, keep_place, k) == 0;
        if (!started && small) { /* a large static TLS counts against the stack: default one */
            pthread_attr_destroy(&attr);
            started = pthread_attr_init(&attr) == 0 &&
                      pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
                      pthread_create(&t, &attr, keep_place, k) == 0;
        }
        pthread_attr_destroy(&attr);
    }
    /* With no thread the fd stays open for the process's life, its guard with it: every child
     * then closes its copy. */
    if (!started)
        free(k);
    return started;
}
