/* The producer's state, shared by its files (set-up and tear-down in producer.c, the consumer
 * table in producer_conns.c, attach in producer_attach.c, buffers in buffer.c, the message path
 * in send.c and wrap.c), and the attach handshake layout the consumer speaks too. */
#ifndef CUIPC_TRANSPORT_INTERNAL_H
#define CUIPC_TRANSPORT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "cuipc/transport.h"
#include "pool_internal.h"
#include "ring.h"
#include "socket.h"

#define CUIPC_HELLO_MAGIC 0x4355495048454c4full /* "CUIPHELO" */
#define CUIPC_HELLO_VERSION 2

/* One pool as the producer describes it to an attaching consumer. */
typedef struct cuipc_hello_pool {
    uint32_t present;
    uint32_t memory; /* cuipc_memory_kind */
    int32_t device;
    uint32_t slots;
    uint64_t pool_id;
    uint64_t size;
    uint8_t ipc_handle[CUIPC_IPC_HANDLE_BYTES];
} cuipc_hello_pool;

/* Consumer -> producer, first: the producer gives out a place (and a ring) only to a peer that
 * asks, so connections that never speak cost it nothing but a pending entry. */
typedef struct cuipc_hello_request {
    uint64_t magic;
    uint32_t version;
    uint32_t reserved;
} cuipc_hello_request;

/* Producer -> consumer, with fds in this order: ring, [host arena, host sync], [gpu sync].
 * status != CUIPC_OK: the producer refuses (no place, no ring) and sends no fds; reason says
 * why. */
typedef struct cuipc_hello {
    uint64_t magic;
    uint32_t version;
    int32_t status;
    char reason[160];
    uint32_t consumer_index;
    uint32_t max_consumers;
    int32_t producer_pid;
    uint64_t producer_id;
    cuipc_hello_pool host;
    cuipc_hello_pool gpu;
} cuipc_hello;

/* Consumer -> producer once everything is mapped. */
typedef struct cuipc_hello_ack {
    uint64_t magic;
    uint32_t consumer_index;
    int32_t status; /* CUIPC_OK or why the consumer gives up */
} cuipc_hello_ack;

typedef struct cuipc_consumer_conn {
    bool attached;
    bool reserved; /* promised to a peer whose handshake is under way */
    int sock;
    pid_t pid;
    cuipc_ring *ring;
    bool said_goodbye; /* detached on purpose: its hang-up is no death */
} cuipc_consumer_conn;

/* A connection accepted but not attached yet (producer_attach.c). */
typedef struct cuipc_pending_peer {
    int sock;
    pid_t pid;
    uint64_t deadline_ns;
    uint32_t idx;     /* UINT32_MAX until its request came and it was given a place */
    cuipc_ring *ring; /* its ring, once it has a place */
} cuipc_pending_peer;

/* Pending connections at most: the oldest that has not asked for a place yet makes room for a
 * newer one, so silent connections cannot keep consumers out. */
#define CUIPC_PENDING_MAX (CUIPC_MAX_CONSUMERS + 32)
/* Rings of departed consumers wait for the send in progress (if any) before they are freed. */
#define CUIPC_RETIRED_MAX (2 * CUIPC_MAX_CONSUMERS)

/* A pool buffer the application holds to fill and send (cuipc_producer_buffer_alloc). */
typedef struct cuipc_held_buffer {
    cuipc_pool *pool;
    cuipc_chunk chunk; /* chunk.ptr: the address the application was given */
    uint64_t id;       /* this allocation's own number: an address comes back, an id never */
} cuipc_held_buffer;

typedef struct cuipc_ipc_export {
    void *base;
    size_t size;
    uint64_t id;
    uint8_t handle[CUIPC_IPC_HANDLE_BYTES];
} cuipc_ipc_export;

struct cuipc_producer {
    cuipc_producer_config cfg;
    char socket_path[108];
    char private_dir[64];
    uint64_t id;
    int listen_fd;
    cuipc_socket_file socket_file; /* the file listen_fd was bound to */
    cuipc_pool *gpu_pool;
    cuipc_pool *host_pool;

    pthread_mutex_t lock;      /* conns, live mask, stats, exports */
    pthread_mutex_t send_lock; /* one writer per ring at a time */
    cuipc_consumer_conn conns[CUIPC_MAX_CONSUMERS];
    uint64_t live_mask;
    /* Rings of departed consumers: a send may still hold one (it copied the pointers under
     * lock and writes without it), so they are freed by whoever holds send_lock next. */
    cuipc_ring *retired[CUIPC_RETIRED_MAX];
    uint32_t n_retired;
    cuipc_ring **kept; /* cfg.debug_keep_departed_rings: freed at destroy only */
    uint32_t n_kept;
    cuipc_pending_peer pending[CUIPC_PENDING_MAX];
    uint32_t n_pending;
    uint64_t peers_refused, peers_timed_out;
    char last_refusal[256];

    int wake_pipe[2];
    pthread_t monitor;
    bool monitor_running;
    _Atomic bool stopping;
    bool closed;

    cuipc_ipc_export *exports;
    uint32_t n_exports, cap_exports;
    cuipc_held_buffer *buffers; /* held by the application, not yet sent */
    uint32_t n_buffers, cap_buffers;
    uint64_t last_buffer_id;
    cuipc_producer_stats stats;
    uint64_t test_send_delay_ns; /* CUIPC_TEST_SEND_DELAY_US (testing only), 0 otherwise */
};

/* The consumer table (producer_conns.c). */
/* Forget consumer c (lock held): close its ring and connection, ack on its behalf. */
void cuipc_producer_drop_consumer_locked(cuipc_producer *p, uint32_t c);
/* Free retired rings: send_lock and lock held, so no send can be using them. */
void cuipc_producer_reap_rings_locked(cuipc_producer *p);
/* Wake the monitor so it watches a new connection. */
void cuipc_producer_poke_monitor(cuipc_producer *p);
uint64_t cuipc_producer_live_mask(cuipc_producer *p);

/* Attach phase (producer_attach.c): handshakes of pending peers, driven by accept. */
void cuipc_producer_pending_close_all(cuipc_producer *p);

/* The producer's pool that data lies in (a buffer's tensor, held or not), or NULL. */
cuipc_pool *cuipc_producer_pool_holding(cuipc_producer *p, const void *data);
/* The number of the held buffer whose bytes include data (cuipc_producer_buffer_id's), or 0. */
uint64_t cuipc_producer_buffer_containing(cuipc_producer *p, const void *data);
/* For wrap (buffer.c): if tensor t lies in a held buffer, take that buffer out of the held list
 * (*found): it belongs to this send from now on. Errors: t lies in a pool arena but in no held
 * buffer (STALE: sent or freed already), runs past its buffer, or names the wrong device; the
 * buffer then stays held. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_take_buffer(cuipc_producer *p, const cuipc_tensor *t, uint64_t nbytes,
                                        cuipc_held_buffer *out, bool *found);

#endif
