/* What the producer and the consumer-side code need from a pool beyond the public API. */
#ifndef CUIPC_POOL_INTERNAL_H
#define CUIPC_POOL_INTERNAL_H

#include "cuipc/pool.h"
#include "sync_table.h"

/* Memory of the arena: host mapping or device pointer (NULL for a virtual pool). */
void *cuipc_pool_base(const cuipc_pool *pool);
/* memfd of a host arena (-1 otherwise). */
int cuipc_pool_memory_fd(const cuipc_pool *pool);
/* IPC handle of a CUDA arena. */
const uint8_t *cuipc_pool_ipc_handle(const cuipc_pool *pool);
cuipc_sync_table *cuipc_pool_sync(const cuipc_pool *pool);

/* How long an allocation may wait for room (timeout_ns, as cuipc_pool_alloc's), and which part
 * it is of a wait its caller makes in slices (cuipc_wait_slice): the stats count one full event
 * and at most one failure for the whole wait, not one a slice. continued says that an earlier
 * slice timed out, whichever pool it waited on: a pool first found full in a later slice (a GPU
 * pool under "fallback") goes uncounted. */
typedef struct cuipc_pool_wait {
    int64_t timeout_ns;
    bool continued; /* an earlier slice of this wait found the pool full: no new full event */
    bool last;      /* running out of time ends the wait: a failure (else the caller waits on) */
} cuipc_pool_wait;
#define CUIPC_POOL_WAIT(ns)                                                                        \
    ((cuipc_pool_wait){.timeout_ns = (ns), .continued = false, .last = true})

/* What of the pool the caller holds itself (a message being wrapped): chunks in flight, and
 * buffers it will take once its other tensors have room. */
typedef struct cuipc_pool_own {
    uint32_t in_flight, held;
} cuipc_pool_own;
#define CUIPC_POOL_OWN_UNKNOWN ((cuipc_pool_own){.in_flight = UINT32_MAX, .held = 0})

/* cuipc_pool_alloc for a caller that holds `own` of the pool itself: when nothing else is in
 * flight and no other buffer is held, waiting cannot make room and POOL_FULL comes at once.
 * CUIPC_POOL_OWN_UNKNOWN: wait as cuipc_pool_alloc. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_alloc_own(cuipc_pool *pool, uint64_t size, uint64_t consumer_mask,
                                  cuipc_pool_wait wait, cuipc_pool_own own, cuipc_chunk *out);
/* cuipc_pool_alloc_own without its last step, cuipc_pool_kick_recycler, which the caller then
 * owes (a producer calls it once the message is delivered, off the latency path). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_alloc_unkicked(cuipc_pool *pool, uint64_t size, uint64_t consumer_mask,
                                       cuipc_pool_wait wait, cuipc_pool_own own, cuipc_chunk *out);
/* A chunk for an application to fill before it is sent (a producer's buffer): held, it waits
 * for no consumer and is never reclaimed, until cuipc_pool_publish_held puts it in flight or
 * cuipc_pool_cancel gives it back. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_alloc_held(cuipc_pool *pool, uint64_t size, cuipc_pool_wait wait,
                                   cuipc_chunk *out);
/* Put held chunk c in flight to the consumers in consumer_mask, as the extent [offset, +size)
 * inside it (what the proxy describes and consumers check): a new generation, written to c. The
 * caller then marks it ready (host) or writes the ready word on a stream. Owes the recycler
 * kick like cuipc_pool_alloc_unkicked. STALE if c is not a held chunk. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_publish_held(cuipc_pool *pool, cuipc_chunk *c, uint64_t offset,
                                     uint64_t size, uint64_t consumer_mask);
/* For good: every allocation waiting for room, now or later, ends with CUIPC_ERR_CLOSED (one
 * that finds room at once still takes it). A producer's close stops its senders so (NULL, a
 * pool the producer does not have: nothing). */
void cuipc_pool_interrupt(cuipc_pool *pool);
/* Wake the recycler if an allocation since the last call put a CUDA pool's first chunk in
 * flight. Cheap when there is nothing to do. */
void cuipc_pool_kick_recycler(cuipc_pool *pool);

/* Queue the copy of n bytes from src into chunk c on stream, and after it "ready := generation"
 * in the sync table: consumers see it on the host (or wait for it on a
 * stream). Host memory serves both: a stream waits on it as fast as on device memory
 * (cuipc-bench gpu_signal/wait_word: 6.9 vs 6.8 us on an H100). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_copy_in(cuipc_pool *pool, cuipc_stream stream, const cuipc_chunk *c,
                                const void *src, uint64_t n);
/* Queue only "ready := generation" on stream: the chunk's data is written by work already
 * queued there (a held buffer the application filled). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_ready_on_stream(cuipc_pool *pool, cuipc_stream stream,
                                        const cuipc_chunk *c);

/* Whether chunk c is in flight at its generation, and its readers: the consumers of its mask
 * less those that departed since the generation began (acked on their behalf; one attached in
 * such a place since is another reader, whose ack the chunk's recycling does not wait for).
 * For a chunk no longer in flight, *readers is its slot's mask now. *sent: a send of it reached
 * a consumer already, or is under way (cuipc_pool_set_sent). */
bool cuipc_pool_readers(cuipc_pool *pool, const cuipc_chunk *c, uint64_t *readers, bool *sent);
/* A send of chunk c (at its generation) is under way or reached a consumer (sent), or reached
 * none after all: while marked, another send of it is refused and so is its give-back. */
void cuipc_pool_set_sent(cuipc_pool *pool, const cuipc_chunk *c, bool sent);

/* Give back a chunk of a wrapped tree that reached no consumer: as cuipc_pool_cancel, but a
 * CUDA pool's chunk whose ready word the GPU has not written yet is freed by the recycler once
 * it has, so the copy queued into it cannot land in memory given to another message. Only for a
 * chunk whose ready word is queued (a wrap that succeeded); a failed wrap syncs its stream and
 * cancels. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_pool_give_back(cuipc_pool *pool, const cuipc_chunk *c);

/* Release on behalf of consumer c for one chunk (it never got the message). */
void cuipc_pool_release_on_behalf(cuipc_pool *pool, uint32_t slot, uint32_t generation,
                                  uint32_t consumer);

/* Chunks of a CUDA pool whose ready words are queued on a stream and not yet written: the
 * copies queued before them may still land in the pool, and the words in the table. */
uint32_t cuipc_pool_gpu_writes_queued(cuipc_pool *pool);

/* Tear-down that found the GPU not getting to the writes queued into another pool: this pool's
 * own state is freed, its memory, registration and sync table left as they are, since the
 * driver's release of them would wait for the GPU's work in flight. */
void cuipc_pool_abandon(cuipc_pool *pool);

#endif
