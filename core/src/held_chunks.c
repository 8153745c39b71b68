/* Which pool chunks the messages of a consumer took: marked as a message is adopted, so that
 * the same message adopted twice is refused instead of two messages sharing one chunk. A
 * release leaves the mark: its ack may still be queued on a stream (the sync table then does
 * not show it yet), and a released (slot, generation) must stay refused anyway; the slot's next
 * generation replaces it. Only a message rejected before it held anything takes its marks back. */
#include <pthread.h>

#include "consumer_internal.h"
#include "error_internal.h"

/* A chunk a message of this consumer took is refused a second time: the same bytes adopted
 * twice (an application queue that delivers again) would otherwise give two messages one
 * chunk, and the first one's release would let the producer reuse what the second reads. */
cuipc_status cuipc_chunk_hold(cuipc_consumer *c, pool_view *v, uint32_t slot, uint32_t generation) {
    pthread_mutex_lock(&c->lock);
    bool taken = v->held_gen[slot] == generation;
    /* Checked again under the lock: a replayed message that passed its check as the slot moved
     * on would otherwise move the mark back, and let the newer generation be taken twice. */
    bool moved = !taken && cuipc_sync_generation(v->sync, slot) != generation;
    if (!taken && !moved) {
        v->held_gen[slot] = generation;
        /* A mark generations old would compare wrongly in serial order: cleared once its ack
         * has landed (a replayed older message may be held here after a newer generation's
         * ack was queued, whose mark must stay). */
        uint32_t mark = atomic_load_explicit(&v->ack_queued[slot], memory_order_relaxed);
        if (mark && cuipc_sync_ack_landed(v->sync, slot, mark, c->index))
            atomic_compare_exchange_strong_explicit(&v->ack_queued[slot], &mark, 0,
                                                    memory_order_relaxed, memory_order_relaxed);
    }
    pthread_mutex_unlock(&c->lock);
    if (moved)
        return CUIPC_FAIL(CUIPC_ERR_STALE,
                          "slot %u generation %u: the slot moved on while the message was read "
                          "(a replayed message?)",
                          slot, generation);
    if (taken)
        return CUIPC_FAIL(CUIPC_ERR_DUPLICATE,
                          "slot %u generation %u: taken by another message of this consumer "
                          "already (the same message adopted twice?)",
                          slot, generation);
    return CUIPC_OK;
}

/* Marked without the lock, after the queueing: the newest generation stays. */
void cuipc_chunk_ack_queued(pool_view *v, uint32_t slot, uint32_t generation) {
    cuipc_sync_mark_newer(&v->ack_queued[slot], generation);
}

uint32_t cuipc_acks_queued(const pool_view *v, uint32_t consumer) {
    if (!v->present || !v->ack_queued)
        return 0;
    uint32_t n = 0;
    for (uint32_t slot = 0; slot < cuipc_sync_table_slots(v->sync); slot++) {
        uint32_t gen = atomic_load_explicit(&v->ack_queued[slot], memory_order_relaxed);
        if (gen && !cuipc_sync_ack_landed(v->sync, slot, gen, consumer))
            n++;
    }
    return n;
}

uint32_t cuipc_place_acks_queued(const pool_view *host, const pool_view *gpu, uint32_t consumer) {
    return cuipc_acks_queued(host, consumer) + cuipc_acks_queued(gpu, consumer);
}

void cuipc_chunk_unhold(cuipc_consumer *c, pool_view *v, uint32_t slot, uint32_t generation) {
    pthread_mutex_lock(&c->lock);
    if (v->held_gen[slot] == generation)
        v->held_gen[slot] = 0;
    pthread_mutex_unlock(&c->lock);
}
