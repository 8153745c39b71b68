/* Producer and consumers: one producer process wraps value trees (tensors -> proxies), encodes
 * them and broadcasts them to every attached consumer over a shared-memory ring each. Consumers
 * attach through a Unix socket (file descriptors passed with SCM_RIGHTS, peers identified by
 * their credentials); the socket also tells each side when the other one died. */
#ifndef CUIPC_TRANSPORT_H
#define CUIPC_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "cuipc/base.h"
#include "cuipc/pool.h"
#include "cuipc/value.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cuipc_mode {
    CUIPC_MODE_DEFAULT = 0,       /* tensor bytes staged in the host shared-memory pool */
    CUIPC_MODE_CUDA_IPC = 1,      /* the tensor's own allocation exported (sender retains it) */
    CUIPC_MODE_CUDA_IPC_POOL = 2, /* copied into the recycled GPU pool, slice exported */
} cuipc_mode;

const char *cuipc_mode_name(cuipc_mode m);
CUIPC_WARN_UNUSED
cuipc_status cuipc_mode_from_name(const char *name, cuipc_mode *out);

/* What the producer does when the pool has no room for a tensor. */
typedef enum cuipc_full_policy {
    CUIPC_FULL_FAIL = 0,     /* return CUIPC_ERR_POOL_FULL at once */
    CUIPC_FULL_WAIT = 1,     /* wait for releases up to full_timeout_ns, then CUIPC_ERR_TIMEOUT */
    CUIPC_FULL_FALLBACK = 2, /* GPU pool full: stage through the host pool (default mode) */
} cuipc_full_policy;

typedef struct cuipc_producer_config {
    cuipc_mode mode;
    uint64_t gpu_pool_bytes;  /* cuda_ipc_pool arena (0: no GPU pool) */
    uint64_t host_pool_bytes; /* default-mode arena and fallback (0: none) */
    int32_t device;           /* CUDA device of the GPU pool */
    uint32_t max_consumers;   /* 1..CUIPC_MAX_CONSUMERS */
    uint32_t slots;           /* chunks in flight per pool */
    uint64_t ring_bytes;      /* per-consumer message ring: a power of two in
                                 [CUIPC_RING_BYTES_MIN, CUIPC_RING_BYTES_MAX] */
    uint64_t alignment;
    cuipc_fit fit;
    cuipc_full_policy full_policy;
    int64_t full_timeout_ns;
    /* Where consumers attach; NULL: a private path is made. A path a live producer listens on
     * is refused (INVALID_ARG); a socket of this user that nobody listens on any more (its
     * producer was killed) is replaced, as a restarted service at a fixed path needs. Whether
     * one listens is read from /proc/net/unix, so a socket of another host on a shared
     * filesystem would count as dead: keep such paths on local filesystems. */
    const char *socket_path;
    /* Positive controls of leak checks only: keep every departed consumer's ring until
     * destroy (one ring_bytes memfd and fd each), as if they leaked. */
    bool debug_keep_departed_rings;
    /* Fault injection only: cuipc_producer_send_wrapped delivers a wrapped tree whose chunks are
     * no longer in flight (released, given back) or were delivered already, instead of refusing
     * it (CUIPC_ERR_STALE, CUIPC_ERR_DUPLICATE), so that the consumers' refusal of stale and
     * duplicate proxies can be tested. */
    bool debug_send_stale;
} cuipc_producer_config;

#define CUIPC_RING_BYTES_MIN 4096ull
#define CUIPC_RING_BYTES_MAX (1ull << 32)

void cuipc_producer_config_init(cuipc_producer_config *cfg);

/* The largest encoded message (cuipc_encoded_size) a per-consumer ring of ring_bytes carries;
 * 0 when ring_bytes is not a ring size (a power of two from 4 KiB to 4 GiB), which
 * cuipc_producer_create refuses. A larger message is refused by cuipc_producer_send. */
uint64_t cuipc_ring_message_limit(uint64_t ring_bytes);

typedef struct cuipc_producer cuipc_producer;

CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_create(const cuipc_producer_config *cfg, cuipc_producer **out);

/* Socket path consumers pass to cuipc_consumer_attach. */
const char *cuipc_producer_socket_path(const cuipc_producer *p);

/* Accept consumers until n are attached, or CUIPC_ERR_TIMEOUT after timeout_ns (the message
 * counts the consumers that came during the wait, those gone again too, and the peers refused).
 * Handshakes run side by side, each with a 2 s deadline of its own; a peer of another uid, one that
 * breaks the protocol or misses its deadline is refused and counted (stats peers_refused,
 * peers_timed_out) and the others go on attaching. At most CUIPC_MAX_CONSUMERS + 32 connections are
 * pending: beyond that the oldest that has not asked for a place is closed. Other errors are the
 * producer's own (e.g. no fd left for a ring: one CUIPC_ERR_SYSTEM naming it). Call it again to
 * attach more (consumers that replace departed ones take their places); one thread at a time. A
 * timeout of 0 makes one pass without waiting: handshakes under way move on, as a sender that
 * accepts between messages wants. With n attached already it returns at once and makes no pass, so
 * handshakes move on only in calls whose n is above the consumers attached: one that accepts
 * between messages passes its full count. A departed consumer counts until the producer has seen
 * its hang-up; a newcomer that connected before then waits for a later call (its handshake's own
 * deadline still runs). What a process of the same uid can still do: take a consumer place (and the
 * data sent to it) or hold one for 2 s; the socket's directory (0700 when the library makes it) is
 * the boundary that keeps other users out, and the uid check the second one. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_accept(cuipc_producer *p, uint32_t n, int64_t timeout_ns);

uint32_t cuipc_producer_consumer_count(const cuipc_producer *p); /* attached and alive */

/* Replace every tensor of tree by a proxy (copying into a pool as the mode says). The result
 * is a new tree; tensor data is already in place (or ordered on stream) when this returns. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_wrap(cuipc_producer *p, const cuipc_value *tree, cuipc_stream stream,
                                 cuipc_value **wrapped);

/* Encode a wrapped tree and put it on every live consumer's ring (waits up to timeout_ns for
 * ring space, < 0: no limit). A consumer that died is skipped and its chunks are reclaimed.
 * It goes only to consumers the tree was wrapped for: one attached since in a departed one's
 * place is not sent it (its chunks do not wait for that consumer's release).
 * Room is found on every ring before the message goes on any: CUIPC_ERR_TIMEOUT means no
 * consumer got it and the wrapped tree is left whole, its chunks (and buffers) still taken: send
 * it again, or give them back with cuipc_producer_cancel_wrapped. A wrapped tree with pool
 * chunks is sent once: CUIPC_ERR_DUPLICATE when a send of it reached a consumer before (its
 * consumers give its chunks back when they release it: only free the tree); CUIPC_ERR_STALE
 * when a chunk of it is no longer in flight (recycled: released by the consumers it went to,
 * given back, or once every consumer it was wrapped for departed; this before DUPLICATE, for a
 * delivered tree with a chunk recycled since). Either way this call sent it to nobody. A stale
 * tree never delivered (kept after a timeout) is then whole: give it back with
 * cuipc_producer_cancel_wrapped. After other failures the chunks are given back for every
 * consumer that did not get the message. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_send_wrapped(cuipc_producer *p, const cuipc_value *wrapped,
                                         int64_t timeout_ns);

/* One slice of a wait for pool room, for a caller that waits in slices and makes the whole call
 * again after each (the Python layer, to run signal handlers between them): the pools' stats
 * count one full event and at most one failure for the whole wait, not one a slice. */
typedef struct cuipc_wait_slice {
    int64_t wait_ns; /* how long this call may wait for room (>= 0) */
    bool continued;  /* an earlier slice of this wait found the pool full */
    bool last;       /* the wait ends with this slice: running out of time is a give-up */
} cuipc_wait_slice;

/* cuipc_producer_wrap with the wait for pool room cut to slice->wait_ns (the policy's
 * full_timeout_ns when that is shorter; under "fail" no wait). The tensors in pool buffers are
 * taken last, so a CUIPC_ERR_TIMEOUT leaves nothing allocated and every buffer still held: the
 * same tree can be wrapped again in the next slice. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_wrap_within(cuipc_producer *p, const cuipc_value *tree,
                                        cuipc_stream stream, const cuipc_wait_slice *slice,
                                        cuipc_value **wrapped);

/* Give back the chunks of a wrapped tree that will not be sent: nothing of it may have reached a
 * consumer (bytes carried out of band and adopted are the consumer's to release; cancelled, their
 * chunks would be reused under it). A GPU pool's chunk is reused only once the copy queued into
 * it has run. Nothing is cancelled for a tree wrapped by another producer (CUIPC_ERR_UNKNOWN_POOL)
 * or one a send delivered or is sending on another thread (CUIPC_ERR_DUPLICATE: its consumers
 * give its chunks back). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_cancel_wrapped(cuipc_producer *p, const cuipc_value *wrapped);

/* wrap + send_wrapped; on failure nothing stays allocated (a timed-out send's chunks and the
 * buffers it took are given back). A send that reached no consumer because every consumer it
 * was wrapped for departed meanwhile (a worker restarted while the send waited for room on its
 * ring) is wrapped again for the consumers attached now, unless the tree has pool buffers
 * (cuipc_producer_may_wrap_again): the tries' waits for ring room share timeout_ns; each wrap's
 * wait for pool room is the policy's, as for any wrap. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_send(cuipc_producer *p, const cuipc_value *tree, cuipc_stream stream,
                                 int64_t timeout_ns);

/* Whether tree, whose wrapped form was sent with status s, may be wrapped and sent again: s says
 * it reached no consumer because every consumer it was wrapped for departed (CUIPC_ERR_STALE or
 * CUIPC_ERR_PEER_DEAD from cuipc_producer_send_wrapped), another consumer is attached now, and
 * tree has no tensor in this producer's pool buffers (a wrap publishes a buffer once: it cannot
 * be wrapped twice). */
bool cuipc_producer_may_wrap_again(cuipc_producer *p, const cuipc_value *tree, cuipc_status s);

/* Zero-copy produce: a buffer inside the producer's pool for the application to fill itself
 * (its kernels write their output there), then send as a tensor like any other. The send only
 * publishes it, with no copy into the pool: on the GPU, one stream write ordered after the work
 * queued on the send's stream. memory CUIPC_MEMORY_CUDA: the GPU pool (mode cuda_ipc_pool);
 * CUIPC_MEMORY_HOST: the host pool (a host tensor; a send with a stream waits for the work
 * queued on it, so a copy into the buffer may be queued there). Waits up to timeout_ns for room (0:
 * fails at once with CUIPC_ERR_POOL_FULL; < 0: as the pool-full policy says, the fallback policy
 * waiting like "wait"; a cuipc_producer_close ends the wait with CUIPC_ERR_CLOSED). Rules: a tensor
 * sent from a buffer lies inside it; one buffer backs one tensor of one message; once a send takes
 * it, the buffer belongs to the transport (recycled after the consumers release it, or at once if
 * the send fails) and the application must not write it again. A send that rejects a tensor (past
 * its buffer's end, wrong device) leaves that tensor's buffer held; the buffers of tensors it had
 * taken before are given back. A tensor in pool memory that is not a held buffer (sent or freed
 * already) is refused with CUIPC_ERR_STALE. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_buffer_alloc(cuipc_producer *p, cuipc_memory_kind memory,
                                         uint64_t nbytes, int64_t timeout_ns, void **data);

/* cuipc_producer_buffer_alloc waiting for room at most slice->wait_ns (0: fails at once with
 * CUIPC_ERR_POOL_FULL), as one slice of a longer wait (see cuipc_wait_slice). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_buffer_alloc_within(cuipc_producer *p, cuipc_memory_kind memory,
                                                uint64_t nbytes, const cuipc_wait_slice *slice,
                                                void **data);

/* Give back a buffer that will not be sent. It is free for reuse at once: no work that writes it
 * may still be queued (synchronise its stream first). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_buffer_free(cuipc_producer *p, void *data);

/* The number of the buffer the application holds at data (not sent, not freed), or 0. Each
 * allocation has its own, never reused: a buffer sent or freed, whose address a later one got,
 * is told from it by its number. */
uint64_t cuipc_producer_buffer_id(cuipc_producer *p, const void *data);

typedef struct cuipc_producer_stats {
    cuipc_pool_stats gpu_pool;
    cuipc_pool_stats host_pool;
    uint64_t messages_sent;
    uint64_t bytes_sent;  /* tensor bytes */
    uint64_t fallbacks;   /* tensors staged through the host pool because the GPU pool was full */
    uint64_t ipc_exports; /* cuda_ipc: allocations exported */
    uint64_t
        ipc_retained_bytes; /* cuda_ipc: bytes kept alive for consumers (the reference's leak) */
    uint32_t consumers_attached;
    uint32_t consumers_detached; /* left with cuipc_consumer_detach */
    uint32_t consumers_dead;     /* hung up without detaching: crashed, killed, or exited */
    uint64_t peers_refused;      /* connections refused: another user, protocol, no place left */
    uint64_t peers_timed_out;    /* connections that did not finish the handshake in time */
} cuipc_producer_stats;

void cuipc_producer_stats_get(cuipc_producer *p, cuipc_producer_stats *out);

/* Tell consumers no more messages come (their recv returns CUIPC_ERR_CLOSED once drained; a
 * consumer attached later gets CLOSED at once). A send waiting on another thread for room on a
 * consumer's ring stops with CUIPC_ERR_CLOSED, having reached no consumer, its chunks given back
 * (nothing to cancel); a send past its wait finishes first. A wrap or send waiting for pool room
 * (full_policy wait) stops with CUIPC_ERR_CLOSED too, having taken nothing. Later sends return
 * CUIPC_ERR_CLOSED. A stopped send may still be returning when this does: join the senders
 * before cuipc_producer_destroy. */
void cuipc_producer_close(cuipc_producer *p);

/* Wait until every chunk in flight is recycled (or timeout). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_drain(cuipc_producer *p, int64_t timeout_ns);

/* Destroy the producer: its consumers see it gone, its socket, rings and pools go. Its GPU pool
 * first waits, up to timeout_ns (< 0: no limit), for the copies that wraps queued on the
 * callers' streams (and the buffers they published on one) to run on the GPU: the driver's
 * release of memory waits for the GPU's work in flight, all of it, forever where a stream never
 * gets there. Nothing to wait for after a drain, or a stream synchronised.
 * CUIPC_ERR_TIMEOUT: some had not run; the GPU pool's memory and sync table, and the host
 * pool's registered arena, are then left allocated (a leak, never a hang) and the message says
 * how many. The producer is gone either way; no other call may still be running on it (stop
 * senders with cuipc_producer_close and join them first). cuipc_producer_destroy waits up to
 * CUIPC_TEARDOWN_WAIT_NS. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_producer_destroy_within(cuipc_producer *p, int64_t timeout_ns);
void cuipc_producer_destroy(cuipc_producer *p);

/* ------------------------------------------------------------------ consumers */

typedef struct cuipc_consumer cuipc_consumer;

/* Attach to the producer listening on socket_path; the whole attach (connect, handshake)
 * holds to timeout_ns. The producer must run as this process's uid (else CUIPC_ERR_PERMISSION,
 * naming its uid, gid and pid); cuipc_consumer_attach_with also accepts the uids and gids
 * listed in its options. A producer that refuses the consumer (no place left, no fd for a
 * ring) says why in the error. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_consumer_attach(const char *socket_path, int64_t timeout_ns,
                                   cuipc_consumer **out);

typedef struct cuipc_attach_options {
    const uint32_t *allowed_uids; /* producers of these uids are accepted too */
    uint32_t n_allowed_uids;
    const uint32_t *allowed_gids; /* and of these (primary) gids */
    uint32_t n_allowed_gids;
    /* Asked with keep_waiting_ctx about every 200 ms while the attach waits (for the producer's
     * socket, for its answer): false stops the attach there (CUIPC_ERR_TIMEOUT, "stopped").
     * NULL: the attach waits its whole timeout. A caller that runs signal handlers (Python)
     * runs them here. */
    bool (*keep_waiting)(void *ctx);
    void *keep_waiting_ctx;
} cuipc_attach_options;

void cuipc_attach_options_init(cuipc_attach_options *o);

CUIPC_WARN_UNUSED
cuipc_status cuipc_consumer_attach_with(const char *socket_path, const cuipc_attach_options *opt,
                                        int64_t timeout_ns, cuipc_consumer **out);
uint32_t cuipc_consumer_index(const cuipc_consumer *c);

/* How long recv busy-waits for a message before sleeping on the doorbell (default 20 us).
 * Latency-critical consumers trade a core for the wake-up (~50 us from an idle core). */
void cuipc_consumer_set_spin_ns(cuipc_consumer *c, uint64_t spin_ns);

typedef struct cuipc_message cuipc_message;

/* Next message (spins briefly, then sleeps). CUIPC_ERR_CLOSED once the producer closed and the
 * ring is empty; CUIPC_ERR_PEER_DEAD if the producer died. Threads sharing a consumer take turns
 * at its ring (each message goes to one of them); the wait for a turn counts in timeout_ns. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_consumer_recv(cuipc_consumer *c, int64_t timeout_ns, cuipc_message **out);

/* Stops receiving on c for good: every recv blocked on it now, and every later one, returns
 * CUIPC_ERR_CLOSED ("interrupted") without a message, at once (also one waiting for its turn
 * behind another thread); a message a recv took as the interrupt came is freed, its chunks
 * given back (it stays counted in the stats' messages). Messages already returned are untouched.
 * Callable from any thread and from a signal handler. The way to stop receiver threads: call
 * this, join them (each frees the messages it holds), then detach. */
void cuipc_consumer_interrupt(cuipc_consumer *c);

/* A message that reached this consumer through another channel (e.g. the application's own
 * queue carrying the bytes of cuipc_encode(wrapped tree)): decoded and validated like recv.
 * The same bytes adopted again are refused with CUIPC_ERR_DUPLICATE, while the first message
 * holds its chunks as after it released them. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_consumer_adopt(cuipc_consumer *c, const void *buf, size_t len,
                                  cuipc_message **out);

typedef enum cuipc_unwrap_kind {
    CUIPC_UNWRAP_COPY = 0,   /* copy out into memory the consumer owns; chunk released after copy */
    CUIPC_UNWRAP_BORROW = 1, /* zero copy: tensors point into the mapping until release */
} cuipc_unwrap_kind;

#define CUIPC_DEVICE_SAME (-2)               /* copy-out target: where the data already is */
#define CUIPC_HOST_WAIT_AUTO (-1)            /* unwrap host_wait_ns: chosen by MPS or not */
#define CUIPC_HOST_WAIT_DEFAULT_NS 2000000ll /* its value without MPS */

/* Copy-out buffers on a device come from a per-device stream-ordered pool of the process. The
 * freed memory it keeps for reuse is a cache; past each synchronisation it keeps at most this
 * much (cuipc_unwrap_options.copy_cache_bytes), the rest goes back to the driver. */
#define CUIPC_COPY_CACHE_DEFAULT_BYTES (256ull << 20)
/* Host copy-out buffers this large or larger are mappings of their own (smaller ones come from
 * malloc, whose heap would keep the high water of mixed large sizes resident). Freed, they are
 * kept for reuse up to CUIPC_HOST_COPY_CACHE_BYTES in all (the oldest unmapped first). */
#define CUIPC_HOST_COPY_MAP_BYTES (256u << 10)
#define CUIPC_HOST_COPY_CACHE_BYTES (64ull << 20)

typedef struct cuipc_unwrap_options {
    cuipc_unwrap_kind kind;
    /* Copy target: CUIPC_DEVICE_HOST, ordinal, or CUIPC_DEVICE_SAME. A GPU pool is mapped on
     * this device (peer access) when it is not the pool's own, also for a borrow: a worker on
     * its own GPU names that GPU. */
    int32_t device;
    /* Ordering for GPU copies, waits and releases. A copy to a device is queued here, so the
     * stream must belong to that device (else CUIPC_ERR_INVALID_ARG). */
    cuipc_stream stream;
    /* GPU pool: how long unwrap spins on the host for the producer's copy to finish before it
     * queues a GPU-side wait instead. A GPU wait on another process's work blocks this
     * process's context until the GPU switches contexts, ~150 us on an H100 without MPS, while
     * the host sees the ready word within a microsecond. 0: unwrap never spins (the stream
     * waits for the word unless it is already there). CUIPC_HOST_WAIT_AUTO (the default):
     * 2 ms, or 0 when this process is an MPS client, where the GPU-side wait is the cheaper. */
    int64_t host_wait_ns;
    /* Copies to a device: how much freed memory the device's copy-out pool keeps past a
     * synchronisation (default CUIPC_COPY_CACHE_DEFAULT_BYTES; UINT64_MAX: all of it, 0: none).
     * The pool is the process's, one per device: the last unwrap or prepare sets it. Keeping
     * less costs a remapping when a message needs more than is kept; keeping all lets mixed
     * sizes grow the pool toward the high water of their fragmentation. */
    uint64_t copy_cache_bytes;
} cuipc_unwrap_options;

void cuipc_unwrap_options_init(cuipc_unwrap_options *o);

/* Do now the one-time set-up that the first unwraps with these options would otherwise pay
 * inside their latency, milliseconds each: map the GPU pool (its IPC handle, opened once per
 * process) on the device it will be read on, register the pool's sync table with CUDA, pin the
 * host pool when copies go up to a device, and create the target device's copy-out buffer pool
 * and make its first allocation (the driver's first pool allocation in a process: milliseconds
 * and thousands of page faults). That allocation is made on opt's stream, when that stream is
 * of the target device, and waited for: the first prepare that makes it synchronises the stream
 * (later ones, or any after a copy to that device, do not).
 * Optional and idempotent; call it after attach, before the first message. cuda_ipc messages
 * carry their own allocations, which are still mapped when first seen. Needs no GPU when
 * nothing in these options does (host pool, copies to the host). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_consumer_prepare(cuipc_consumer *c, const cuipc_unwrap_options *opt);

/* The decoded tree as received (proxies). */
const cuipc_value *cuipc_message_value(const cuipc_message *m);

/* Reconstruct tensors. Every proxy is validated against the pool's sync table first (pool id,
 * slot, generation, extent): a forged or stale proxy gives CUIPC_ERR_CORRUPT / STALE /
 * UNKNOWN_POOL and nothing is mapped. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_message_unwrap(cuipc_message *m, const cuipc_unwrap_options *opt,
                                  cuipc_value **out);

/* After an unwrap: true when it left work on its stream (a GPU wait for the producer's copy, a
 * copy out of GPU memory to a device), so the tensors are ready in that stream's order only;
 * false when they are ready for any reader, host or GPU, on any stream, as unwrap returns (a
 * copy out of host memory, default mode's, is waited for inside the unwrap). Either way a copy
 * out to a device is freed on the unwrap stream when its value is freed: reads on other streams
 * must be ordered before that (CUIPC_OWNER_DEVICE, value.h). */
bool cuipc_message_stream_ordered(const cuipc_message *m);

/* Release every chunk of the message still held (borrow). With a stream, the release is
 * ordered after the work queued on it. Idempotent. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_message_release(cuipc_message *m, cuipc_stream stream);

/* Releases whatever is still held, then frees. */
void cuipc_message_free(cuipc_message *m);

typedef struct cuipc_consumer_stats {
    uint64_t messages;
    uint64_t bytes;
    /* IPC mappings this consumer opened (cudaIpcOpenMemHandle): 0 where another consumer of
     * the process had opened them first. */
    uint64_t handle_opens;
    /* Lookups (unwraps, prepare) answered by a mapping already open in the process. */
    uint64_t handle_hits;
    uint64_t rejected; /* proxies that failed validation */
} cuipc_consumer_stats;

void cuipc_consumer_stats_get(cuipc_consumer *c, cuipc_consumer_stats *out);

/* Detach: the producer takes back what this consumer held. First waits, up to timeout_ns
 * (< 0: no limit), for the releases queued on streams (cuipc_message_release with a stream, a
 * copy-out unwrap to a GPU) to run on the GPU: they write the producer's sync table, and the
 * reads queued before them use its memory; the driver's release of those waits for the GPU's
 * work in flight, forever where a stream never gets there. Nothing to wait for once those
 * streams are synchronised. CUIPC_ERR_TIMEOUT: some had not run; the sync tables, the host
 * arena and the opened IPC handles are then left mapped (a leak, never a hang), and the
 * consumer's place stays taken (the producer must not hand on chunks whose reads are still
 * queued) until a thread of the library sees the acks land or the producer go, or the process
 * exits; a child forked meanwhile does not hold it. The message says how many. The consumer
 * object is freed either way; its messages must be freed before (as for any detach). Before
 * anything else, a detach interrupts c (cuipc_consumer_interrupt) and waits for the recv calls
 * inside it on other threads to return (with no limit: they return at once, or once the message
 * they were decoding is freed): a receiver blocked there wakes with CUIPC_ERR_CLOSED instead of
 * reading a ring that is gone. No other call may be running on c, nor start once
 * the detach has (c is freed under it): stop receivers with cuipc_consumer_interrupt and join
 * them first, so that the messages they got are freed before the detach.
 * cuipc_consumer_detach waits up to CUIPC_TEARDOWN_WAIT_NS. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_consumer_detach_within(cuipc_consumer *c, int64_t timeout_ns);
void cuipc_consumer_detach(cuipc_consumer *c);

/* In a forked child only, on the consumer its parent made: closes the child's copy of the
 * consumer's socket, saying nothing to the producer, so that the producer sees the parent's
 * consumer go when the parent goes, not when the last child does. Nothing else is touched (the
 * rings and pools are the parent's); the child must not use c again, nor detach it. */
void cuipc_consumer_drop_socket_in_child(cuipc_consumer *c);

#ifdef __cplusplus
}
#endif
#endif
