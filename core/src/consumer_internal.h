/* The consumer's state, shared by consumer.c (attach, receive, validate) and unwrap.c (proxies
 * back into tensors, release). */
#ifndef CUIPC_CONSUMER_INTERNAL_H
#define CUIPC_CONSUMER_INTERNAL_H

#include <stdatomic.h>

#include "transport_internal.h"

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
    /* Per slot, the generation a message of this consumer took (0: none), under the consumer's
     * lock: the same message adopted twice is refused, not left to read a chunk the first one's
     * release lets the producer reuse (held_chunks.c). */
    uint32_t *held_gen;
    /* Per slot, the generation whose ack this consumer queued on a stream (0: none): the GPU
     * writes it into the table later, which must then still be mapped (held_chunks.c). */
    _Atomic uint32_t *ack_queued;
} pool_view;

/* A mapping this consumer holds a reference to in the process's handle cache. */
typedef struct opened_handle {
    uint8_t handle[CUIPC_IPC_HANDLE_BYTES];
    int device;
    void *ptr;
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
    pthread_mutex_t lock; /* lazy registrations, opened list, stats, held_gen */
    /* The ring has one reader: recv calls on several threads take turns. */
    pthread_mutex_t recv_lock;
    /* Threads inside cuipc_consumer_recv: a detach interrupts them and waits for none left. */
    _Atomic uint32_t receivers;
    opened_handle *opened; /* each one referenced once, given back at detach */
    uint32_t n_opened, cap_opened;
    cuipc_consumer_stats stats;
    /* Whether this process is an MPS client, asked once for CUIPC_HOST_WAIT_AUTO. */
    bool mps_known, mps_client;
};

/* A pool chunk of a message, validated on receipt: released at most once. */
typedef struct held_chunk {
    pool_view *view;
    uint32_t slot;
    uint32_t generation;
    bool released;
    bool borrowed; /* an unwrap lent it out: a later copy of it does not release it */
} held_chunk;

/* held_chunks.c: a chunk of (slot, generation) in view joins a message of this consumer
 * (CUIPC_ERR_DUPLICATE when one took it already), or leaves a message rejected before it held
 * it. A release (held_chunk.released) leaves its mark. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_chunk_hold(cuipc_consumer *c, pool_view *v, uint32_t slot, uint32_t generation);
void cuipc_chunk_unhold(cuipc_consumer *c, pool_view *v, uint32_t slot, uint32_t generation);
/* An ack of (slot, generation) was queued on a stream: the GPU writes it into v's table. */
void cuipc_chunk_ack_queued(pool_view *v, uint32_t slot, uint32_t generation);
/* The acks queued on streams into v's table that the GPU has not written yet. */
uint32_t cuipc_acks_queued(const pool_view *v, uint32_t consumer);
/* The same over both views of a consumer's place (its host and GPU pools). */
uint32_t cuipc_place_acks_queued(const pool_view *host, const pool_view *gpu, uint32_t consumer);

/* The view's mappings and registrations released (through the driver where CUDA registered
 * them), its state freed. */
void cuipc_pool_view_unmap(pool_view *v);

/* place_keeper.c: a detach that gave up hands c's place (socket, ring; guard: the socket's
 * fork guard) to a thread that gives it back once c's queued acks have landed, or once the
 * producer is gone, and then releases the views CUDA never registered (the others stay
 * mapped). false: no thread (the place then goes with the process). */
bool cuipc_keep_place_until_acked(cuipc_consumer *c, int guard);
/* A detaching consumer's socket, closed in every child forked until cuipc_fork_guard_close:
 * a child's copy would hold the place until the child exits. The guard, or -1 (none free). */
int cuipc_fork_guard_add(int fd);
/* Goodbye (a detach, not a death) if asked, then every copy of the socket shut and this one
 * closed, its guard cleared. */
void cuipc_fork_guard_close(int fd, int guard, bool goodbye);

struct cuipc_message {
    cuipc_consumer *c;
    cuipc_value *tree;
    held_chunk *held;
    uint32_t n_held;
    bool stream_ordered; /* the last unwrap left work on its stream, not yet done */
};

#endif
