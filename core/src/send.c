/* The producer's message path: wrap a value tree (each tensor through wrap.c), encode it and put
 * it on every live consumer's ring, or give a wrapped tree's chunks back.
 *
 * The tree is walked once to wrap (the copy is made as its tensors are wrapped) and once to send
 * (the encoder's walk). Each walk gathers the pool chunks it meets into a chunk list, as the
 * consumer's held[] is gathered while a message is decoded: the wrap's list gives back what a
 * failed wrap took, the send's list says which consumers every chunk waits for and acks for
 * those that did not get the message. */
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "cuda_api.h"
#include "error_internal.h"
#include "shm.h"
#include "value_internal.h"
#include "wrap.h"

/* ------------------------------------------------------------------ chunk list */

typedef struct chunk_ref {
    cuipc_pool *pool;
    cuipc_chunk chunk;
} chunk_ref;

#define CHUNK_LIST_INLINE 16 /* a message of this many chunks or fewer allocates no list */

typedef struct chunk_list {
    cuipc_producer *p;
    chunk_ref *items;
    uint32_t n, cap;
    chunk_ref inline_items[CHUNK_LIST_INLINE];
} chunk_list;

static void chunk_list_init(chunk_list *l, cuipc_producer *p) {
    l->p = p;
    l->items = l->inline_items;
    l->n = 0;
    l->cap = CHUNK_LIST_INLINE;
}

static void chunk_list_free(chunk_list *l) {
    if (l->items != l->inline_items)
        free(l->items);
}

/* Room for one more chunk, so that adding it cannot fail. */
static cuipc_status chunk_list_reserve(chunk_list *l) {
    if (l->n < l->cap)
        return CUIPC_OK;
    uint32_t cap = 2 * l->cap;
    chunk_ref *grown = malloc(cap * sizeof *grown);
    if (!grown)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "chunk list of %u", cap);
    memcpy(grown, l->items, l->n * sizeof *grown);
    chunk_list_free(l);
    l->items = grown;
    l->cap = cap;
    return CUIPC_OK;
}

static cuipc_pool *pool_by_id(cuipc_producer *p, uint64_t id) {
    if (p->gpu_pool && cuipc_pool_id(p->gpu_pool) == id)
        return p->gpu_pool;
    if (p->host_pool && cuipc_pool_id(p->host_pool) == id)
        return p->host_pool;
    return NULL;
}

static chunk_ref ref_of(cuipc_pool *pool, const cuipc_proxy *x) {
    return (chunk_ref){pool,
                       {.offset = x->u.pool.offset,
                        .size = x->nbytes,
                        .slot = x->u.pool.slot,
                        .generation = x->u.pool.generation}};
}

/* x's chunk, if it is one of this producer's pools. */
static bool chunk_of(cuipc_producer *p, const cuipc_proxy *x, chunk_ref *out) {
    if (x->kind != CUIPC_PROXY_POOL || x->nbytes == 0)
        return false;
    cuipc_pool *pool = pool_by_id(p, x->u.pool.pool_id);
    if (pool)
        *out = ref_of(pool, x);
    return pool != NULL;
}

/* Keep x's chunk, if it is one (room reserved). */
static void chunk_list_add(chunk_list *l, const cuipc_proxy *x) {
    if (chunk_of(l->p, x, &l->items[l->n]))
        l->n++;
}

/* The encoder's look at each proxy it writes. */
static cuipc_status note_chunk(const cuipc_proxy *x, void *ctx) {
    chunk_list *l = ctx;
    CUIPC_TRY(chunk_list_reserve(l));
    chunk_list_add(l, x);
    return CUIPC_OK;
}

static void chunk_list_cancel(const chunk_list *l) {
    for (uint32_t i = 0; i < l->n; i++) /* STALE only for a chunk no longer in flight */
        cuipc_status_ignore(cuipc_pool_cancel(l->items[i].pool, &l->items[i].chunk));
}

/* The consumers every chunk waits for: the AND of their readers (the producer's lock held, so
 * that no consumer departs or attaches meanwhile). *stale: the first chunk no longer in flight
 * at its generation (released by every consumer it went to, given back, or recycled once every
 * consumer it was wrapped for departed), NULL if none; *sent: the first one a send reached
 * already. */
static uint64_t chunk_list_readers(const chunk_list *l, const chunk_ref **stale,
                                   const chunk_ref **sent) {
    uint64_t mask = ~0ull;
    *stale = *sent = NULL;
    for (uint32_t i = 0; i < l->n; i++) {
        uint64_t readers;
        bool was_sent;
        if (!cuipc_pool_readers(l->items[i].pool, &l->items[i].chunk, &readers, &was_sent) &&
            !*stale)
            *stale = &l->items[i];
        if (was_sent && !*sent)
            *sent = &l->items[i];
        mask &= readers;
    }
    return mask;
}

static void chunk_list_set_sent(const chunk_list *l, bool sent) {
    for (uint32_t i = 0; i < l->n; i++)
        cuipc_pool_set_sent(l->items[i].pool, &l->items[i].chunk, sent);
}

/* Consumers in `missed` never got the message: their acks are given on their behalf. */
static void chunk_list_release(const chunk_list *l, uint64_t missed) {
    uint32_t consumers = l->p->cfg.max_consumers;
    for (uint32_t i = 0; i < l->n; i++)
        for (uint32_t c = 0; c < consumers; c++)
            if (missed & (1ull << c))
                cuipc_pool_release_on_behalf(l->items[i].pool, l->items[i].chunk.slot,
                                             l->items[i].chunk.generation, c);
}

/* ------------------------------------------------------------------ wrap */

typedef struct wrap_walk {
    cuipc_wrap_ctx w;
    chunk_list chunks; /* taken by this wrap: given back if it fails */
    bool buffers_now;  /* the second walk: the tensors in the pools (buffers) */
} wrap_walk;

static cuipc_status wrap_node(cuipc_value *node, void *arg) {
    wrap_walk *ww = arg;
    if (cuipc_value_kind_of(node) != CUIPC_VALUE_TENSOR)
        return CUIPC_OK;
    const cuipc_tensor *t = cuipc_value_as_tensor(node);
    /* Buffers are taken last, once nothing more waits for room: a wrap that runs out of time
     * (one slice of a longer wait) leaves them held for the next try, not given back. */
    if (!ww->buffers_now && cuipc_producer_pool_holding(ww->w.p, t->data))
        return CUIPC_OK;
    CUIPC_TRY(chunk_list_reserve(&ww->chunks));
    cuipc_proxy x;
    CUIPC_TRY(cuipc_wrap_tensor(&ww->w, t, &x));
    if (ww->w.pool) /* the pool is known: no lookup by id */
        ww->chunks.items[ww->chunks.n++] = ref_of(ww->w.pool, &x);
    return cuipc_value_set_proxy(node, &x);
}

/* The first walk, which reads the tree only: its tensors in each pool's buffers. */
typedef struct buffer_count {
    cuipc_wrap_ctx *w;
    uint64_t *ids; /* the held buffers met so far: a buffer goes out as one tensor */
    uint32_t n, cap;
} buffer_count;

/* The message's tensors in each pool's buffers, counted before anything is taken: waiting for
 * room, the pool then tells those held buffers (the message's own) from ones that could be given
 * back (cuipc_pool_own). Two tensors in one buffer are refused here, before the buffer is
 * taken: the second would find it gone and fail the wrap, and the failure would give back the
 * buffer the application still holds. */
static cuipc_status count_buffers(cuipc_value *node, void *arg) {
    buffer_count *bc = arg;
    cuipc_wrap_ctx *w = bc->w;
    if (cuipc_value_kind_of(node) != CUIPC_VALUE_TENSOR)
        return CUIPC_OK;
    const cuipc_tensor *t = cuipc_value_as_tensor(node);
    cuipc_pool *pool = cuipc_producer_pool_holding(w->p, t->data);
    if (!pool)
        return CUIPC_OK;
    if (pool == w->p->host_pool)
        w->held_host++;
    else
        w->held_gpu++;
    uint64_t id = cuipc_tensor_span_bytes(t) ? cuipc_producer_buffer_containing(w->p, t->data) : 0;
    if (!id) /* empty, or in no held buffer (the wrap says which) */
        return CUIPC_OK;
    for (uint32_t i = 0; i < bc->n; i++)
        if (bc->ids[i] == id)
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                              "two tensors of the tree lie in one pool buffer (%p): a buffer is "
                              "sent as one tensor (allocate one buffer per tensor)",
                              t->data);
    if (bc->n == bc->cap) {
        uint32_t cap = bc->cap ? bc->cap * 2 : 8;
        uint64_t *grown = realloc(bc->ids, cap * sizeof *grown);
        if (!grown)
            return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "list of %u pool buffers", cap);
        bc->ids = grown;
        bc->cap = cap;
    }
    bc->ids[bc->n++] = id;
    return CUIPC_OK;
}

cuipc_status cuipc_producer_wrap(cuipc_producer *p, const cuipc_value *tree, cuipc_stream stream,
                                 cuipc_value **wrapped) {
    /* The whole wait in one slice (a negative full_timeout_ns has always meant none). */
    cuipc_wait_slice whole = {
        .wait_ns = p && p->cfg.full_timeout_ns > 0 ? p->cfg.full_timeout_ns : 0, .last = true};
    return cuipc_producer_wrap_within(p, tree, stream, &whole, wrapped);
}

cuipc_status cuipc_producer_wrap_within(cuipc_producer *p, const cuipc_value *tree,
                                        cuipc_stream stream, const cuipc_wait_slice *slice,
                                        cuipc_value **wrapped) {
    if (!p || !wrapped)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "producer %p, out %p: neither may be NULL",
                          (void *)p, (void *)wrapped);
    *wrapped = NULL;
    if (!slice)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "the wait slice is NULL");
    if (slice->wait_ns < 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "a wait slice of %lld ns",
                          (long long)slice->wait_ns);
    if (!tree)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "tree is NULL");
    pthread_mutex_lock(&p->lock);
    bool closed = p->closed;
    pthread_mutex_unlock(&p->lock);
    if (closed)
        return CUIPC_FAIL(CUIPC_ERR_CLOSED, "producer was closed");
    wrap_walk ww; /* not zeroed whole: the list's inline room is written as it fills */
    cuipc_pool_wait wait = {
        .timeout_ns = p->cfg.full_timeout_ns, .continued = slice->continued, .last = slice->last};
    if (slice->wait_ns < wait.timeout_ns)
        wait.timeout_ns = slice->wait_ns;
    ww.w = (cuipc_wrap_ctx){
        .p = p, .stream = stream, .mask = cuipc_producer_live_mask(p), .full_wait = wait};
    if (!ww.w.mask)
        return CUIPC_FAIL(CUIPC_ERR_PEER_DEAD, "no consumer is attached");
    ww.buffers_now = false;
    /* Its counts are also the tensors the first walk leaves to the second. A failure here has
     * taken nothing. */
    buffer_count bc = {.w = &ww.w};
    cuipc_status counted = cuipc_value_visit((cuipc_value *)tree, count_buffers, &bc);
    free(bc.ids);
    if (counted != CUIPC_OK)
        return counted;
    chunk_list_init(&ww.chunks, p);
    cuipc_value *copy = NULL;
    cuipc_status s = cuipc_value_clone_visit(tree, wrap_node, &ww, &copy);
    if (s == CUIPC_OK && ww.w.held_host + ww.w.held_gpu > 0) {
        ww.buffers_now = true;
        s = cuipc_value_visit(copy, wrap_node, &ww);
        if (s != CUIPC_OK) { /* the failure path below saves the error and gives back */
            cuipc_value_free(copy);
            copy = NULL;
        }
    }
    if (s != CUIPC_OK) {
        cuipc_error_saved saved;
        cuipc_error_save(&saved);
        /* The chunks taken before the failure: given back once queued copies into them are
         * finished. */
        if (p->gpu_pool) /* a stream that fails this too has lost its context: nothing runs */
            cuipc_status_ignore(cuipc_cuda_stream_sync(stream));
        chunk_list_cancel(&ww.chunks);
        chunk_list_free(&ww.chunks);
        return CUIPC_FAIL(s, "%s", saved.msg);
    }
    chunk_list_free(&ww.chunks);
    pthread_mutex_lock(&p->lock);
    p->stats.bytes_sent += ww.w.bytes;
    p->stats.fallbacks += ww.w.fallbacks;
    pthread_mutex_unlock(&p->lock);
    *wrapped = copy;
    return CUIPC_OK;
}

/* Give back the chunk of one proxy node (once the GPU's writes into it are done). */
static cuipc_status cancel_node(cuipc_value *node, void *ctx) {
    const cuipc_proxy *x = cuipc_value_as_proxy(node);
    chunk_ref r;
    if (x && chunk_of(ctx, x, &r)) /* STALE only for a chunk no longer in flight */
        cuipc_status_ignore(cuipc_pool_give_back(r.pool, &r.chunk));
    return CUIPC_OK;
}

/* A pool proxy of another producer's pool (the bytes were not wrapped here), or a chunk a send
 * delivered (its consumers may read it until they release it: the tree is only to be freed). */
static cuipc_status check_ours(cuipc_value *node, void *ctx) {
    const cuipc_proxy *x = cuipc_value_as_proxy(node);
    if (!x || x->kind != CUIPC_PROXY_POOL || x->nbytes == 0)
        return CUIPC_OK; /* no chunk */
    chunk_ref r;
    if (!chunk_of(ctx, x, &r))
        return CUIPC_FAIL(CUIPC_ERR_UNKNOWN_POOL,
                          "the tree names pool 0x%llx, which is not this producer's (wrapped by "
                          "another producer?): nothing cancelled",
                          (unsigned long long)x->u.pool.pool_id);
    uint64_t readers;
    bool sent = false;
    if (cuipc_pool_readers(r.pool, &r.chunk, &readers, &sent) && sent)
        return CUIPC_FAIL(CUIPC_ERR_DUPLICATE,
                          "the tree was delivered, or a send of it is under way (chunk slot %u, "
                          "generation %u): its consumers give its chunks back when they release "
                          "it; free the wrapped tree once sent, nothing cancelled",
                          r.chunk.slot, r.chunk.generation);
    return CUIPC_OK;
}

cuipc_status cuipc_producer_cancel_wrapped(cuipc_producer *p, const cuipc_value *wrapped) {
    if (!wrapped)
        return CUIPC_OK; /* nothing to give back */
    CUIPC_TRY(cuipc_value_visit((cuipc_value *)wrapped, check_ours, p));
    cuipc_status_ignore(
        cuipc_value_visit((cuipc_value *)wrapped, cancel_node, p)); /* cancel_node never fails */
    return CUIPC_OK;
}

/* ------------------------------------------------------------------ send */

cuipc_status cuipc_producer_send_wrapped(cuipc_producer *p, const cuipc_value *wrapped,
                                         int64_t timeout_ns) {
    chunk_list chunks;
    chunk_list_init(&chunks, p);
    void *buf = NULL;
    size_t len = 0;
    cuipc_status s = cuipc_encode_alloc(wrapped, note_chunk, &chunks, &buf, &len);
    if (s != CUIPC_OK) {
        chunk_list_free(&chunks);
        return s;
    }
    if (p->test_send_delay_ns) { /* spun, not slept: a sleep overshoots by the timer slack */
        uint64_t until = cuipc_now_ns() + p->test_send_delay_ns;
        while (cuipc_now_ns() < until)
            ;
    }
    pthread_mutex_lock(&p->send_lock);
    pthread_mutex_lock(&p->lock);
    cuipc_producer_reap_rings_locked(p);
    bool closed = p->closed;
    /* Only consumers every chunk waits for get the message: one attached in a place reused
     * since the wrap (a wrapped tree kept across timed-out sends) would read a chunk whose
     * recycling does not wait for its ack. */
    const chunk_ref *stale, *sent;
    uint64_t targets = p->live_mask & chunk_list_readers(&chunks, &stale, &sent);
    /* A chunk no longer in flight (its slot may be another message's now), or one a send reached
     * already (its readers would get it twice, one that released it meanwhile memory the
     * recycler may hand on): refused, the tree left whole, unless a fault is being injected on
     * purpose (consumers must refuse it). */
    bool refused = (stale || sent) && !p->cfg.debug_send_stale;
    chunk_ref refused_ref = stale ? *stale : sent ? *sent : (chunk_ref){0};
    if (refused)
        targets = 0;
    /* Marked before any ring has it, so that a give-back of the same tree racing with this send
     * (another thread's cancel) is refused too; unmarked below if it reached nobody. */
    bool marked = targets && !sent;
    if (marked)
        chunk_list_set_sent(&chunks, true);
    cuipc_ring *rings[CUIPC_MAX_CONSUMERS] = {0};
    for (uint32_t c = 0; c < p->cfg.max_consumers; c++)
        rings[c] = p->conns[c].ring;
    pthread_mutex_unlock(&p->lock);

    uint64_t delivered = 0, died = 0;
    cuipc_status first_error = CUIPC_OK;
    cuipc_error_saved first_msg; /* the first failure's message, past later sends' */
    uint32_t first_consumer = 0;
    /* Room on every ring first, then the message on each (send_lock: no other sender takes the
     * room meanwhile): a send that runs out of time reached no consumer, so the caller can try
     * it again whole, nothing delivered twice. Other failures are left to the sends below. */
    bool no_room = false, stopped = false;
    uint64_t room_start = cuipc_now_ns();
    for (uint32_t c = 0; c < p->cfg.max_consumers && !closed && !no_room; c++) {
        if (!(targets & (1ull << c)))
            continue;
        int64_t spent = (int64_t)(cuipc_now_ns() - room_start);
        int64_t left = timeout_ns < 0 ? -1 : timeout_ns > spent ? timeout_ns - spent : 0;
        cuipc_status w = cuipc_ring_wait_room(rings[c], len, left);
        if (w == CUIPC_ERR_TIMEOUT) {
            no_room = true;
            first_consumer = c;
            cuipc_error_save(&first_msg);
        } else if (w == CUIPC_ERR_CLOSED && cuipc_ring_interrupted(rings[c])) {
            /* cuipc_producer_close from another thread, which waits for this send (send_lock):
             * it reaches no consumer, and as no later send can go, its chunks go back as for
             * any send after the close. */
            closed = stopped = true;
            first_consumer = c;
        }
    }
    for (uint32_t c = 0; c < p->cfg.max_consumers && !closed && !no_room; c++) {
        if (!(targets & (1ull << c)))
            continue;
        /* Room was found above, and only this send (send_lock) takes it: a ring that has none
         * now had its tail moved back by the consumer. */
        cuipc_status r = cuipc_ring_send(rings[c], buf, len, 0);
        if (r == CUIPC_ERR_TIMEOUT)
            r = CUIPC_FAIL(CUIPC_ERR_CORRUPT, "consumer %u's ring lost the room it had", c);
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
            first_consumer = c;
            cuipc_error_save(&first_msg);
        }
        if (dead || r == CUIPC_ERR_CORRUPT) {
            pthread_mutex_lock(&p->lock);
            if (p->conns[c].ring == rings[c])
                cuipc_producer_drop_consumer_locked(p, c);
            pthread_mutex_unlock(&p->lock);
        }
    }
    if (marked && !delivered) /* nobody got it: the tree is whole, to send again or give back */
        chunk_list_set_sent(&chunks, false);
    pthread_mutex_lock(&p->lock);
    cuipc_producer_reap_rings_locked(p); /* this send was the last user of any retired ring */
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->send_lock);
    free(buf);
    /* The recycler wake owed by the allocations, now that the consumers have the message. */
    if (p->gpu_pool)
        cuipc_pool_kick_recycler(p->gpu_pool);

    /* Every consumer a chunk waits for but that did not get this message is acked for; out of
     * room or stale, nobody got it and the wrapped tree stays whole, to be sent again or
     * cancelled. */
    if (!no_room && !refused)
        chunk_list_release(&chunks, ~delivered);
    chunk_list_free(&chunks);

    pthread_mutex_lock(&p->lock);
    if (delivered)
        p->stats.messages_sent++;
    pthread_mutex_unlock(&p->lock);
    if (stopped)
        return CUIPC_FAIL(CUIPC_ERR_CLOSED,
                          "producer was closed while the send waited for room on consumer %u's "
                          "ring: sent to no consumer, its chunks given back",
                          first_consumer);
    if (closed)
        return CUIPC_FAIL(CUIPC_ERR_CLOSED, "producer was closed");
    if (refused && !stale)
        return CUIPC_FAIL(CUIPC_ERR_DUPLICATE,
                          "the wrapped tree was sent already (its chunk slot %u, generation %u "
                          "reached consumers before): a wrapped tree is sent once; sent to no "
                          "consumer this time",
                          refused_ref.chunk.slot, refused_ref.chunk.generation);
    if (refused)
        return CUIPC_FAIL(CUIPC_ERR_STALE,
                          "the wrapped tree's chunk (slot %u, generation %u, %llu bytes) is no "
                          "longer in flight (released by the consumers it went to, given back, "
                          "or recycled once every consumer it was wrapped for departed): sent to "
                          "no consumer",
                          refused_ref.chunk.slot, refused_ref.chunk.generation,
                          (unsigned long long)refused_ref.chunk.size);
    if (!targets || died == targets) {
        /* Consumers attached since the wrap, in departed ones' places or new ones. */
        uint32_t others = cuipc_producer_consumer_count(p);
        if (others)
            return CUIPC_FAIL(CUIPC_ERR_PEER_DEAD,
                              "every consumer this message was wrapped for departed before it "
                              "reached one (%u other consumer(s) attached now); its chunks are "
                              "given back",
                              others);
        return CUIPC_FAIL(CUIPC_ERR_PEER_DEAD, "no live consumer to send to");
    }
    if (no_room)
        return CUIPC_FAIL(CUIPC_ERR_TIMEOUT,
                          "consumer %u: no room on its ring for %zu bytes within %lld ms (%s): "
                          "sent to no consumer (the wrapped tree is whole: send it again or "
                          "cancel it)",
                          first_consumer, len, (long long)(timeout_ns / 1000000), first_msg.msg);
    if (first_error != CUIPC_OK)
        return CUIPC_FAIL(first_error, "consumer %u: %s (delivered to %d of %d consumers)",
                          first_consumer, first_msg.msg, __builtin_popcountll(delivered),
                          __builtin_popcountll(targets));
    return CUIPC_OK;
}

/* Whether tree has tensors in this producer's pools (buffers): their data lies there before a
 * wrap publishes them and after, so the walk says it whichever came first. */
static bool has_buffers(cuipc_producer *p, const cuipc_value *tree) {
    cuipc_wrap_ctx w = {.p = p};
    buffer_count bc = {.w = &w};
    /* A walk stopped early (two tensors in one buffer) has counted one already. */
    cuipc_status_ignore(cuipc_value_visit((cuipc_value *)tree, count_buffers, &bc));
    free(bc.ids);
    return w.held_host + w.held_gpu > 0;
}

bool cuipc_producer_may_wrap_again(cuipc_producer *p, const cuipc_value *tree, cuipc_status s) {
    /* The walk last: it runs only for a send its consumers' departure stopped. */
    return p && tree && (s == CUIPC_ERR_STALE || s == CUIPC_ERR_PEER_DEAD) &&
           cuipc_producer_consumer_count(p) > 0 && !has_buffers(p, tree);
}

cuipc_status cuipc_producer_send(cuipc_producer *p, const cuipc_value *tree, cuipc_stream stream,
                                 int64_t timeout_ns) {
    int64_t spent = 0; /* the tries' sends: timeout_ns bounds their waits for ring room */
    /* Each try past the first needs every consumer of the one before to have departed. */
    for (uint32_t tries = 0;; tries++) {
        cuipc_value *wrapped = NULL;
        CUIPC_TRY(cuipc_producer_wrap(p, tree, stream, &wrapped));
        int64_t left = timeout_ns < 0 ? -1 : timeout_ns > spent ? timeout_ns - spent : 0;
        uint64_t send_start = cuipc_now_ns();
        cuipc_status s = cuipc_producer_send_wrapped(p, wrapped, left);
        spent += (int64_t)(cuipc_now_ns() - send_start);
        if (s == CUIPC_ERR_TIMEOUT || s == CUIPC_ERR_STALE || s == CUIPC_ERR_DUPLICATE) {
            /* Sent to nobody: this wrap's chunks go back one by one. Not through
             * cuipc_producer_cancel_wrapped, which refuses the whole tree when it carries a
             * delivered proxy (the input tree had one: the wrap copies proxies), and would so
             * keep this wrap's own chunks; a delivered chunk refuses its give-back itself. */
            cuipc_error_saved saved;
            cuipc_error_save(&saved);
            cuipc_status_ignore(cuipc_value_visit(wrapped, cancel_node, p));
            if (tries > 0 && s == CUIPC_ERR_TIMEOUT) /* the message names this try's wait */
                s = CUIPC_FAIL(s, "%s (%lld ms for all %u tries)", saved.msg,
                               (long long)(timeout_ns / 1000000), tries + 1);
            else
                s = CUIPC_FAIL(s, "%s", saved.msg);
        }
        cuipc_value_free(wrapped);
        if (tries >= CUIPC_MAX_CONSUMERS || !cuipc_producer_may_wrap_again(p, tree, s))
            return s;
    }
}
