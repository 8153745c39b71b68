/* The sync table: a memfd holding a header and one slot per chunk in flight, shared by the
 * producer and every consumer, updated only with C11 atomics (no locks).
 *
 * Memory ordering, in one place:
 * - begin() is a seqlock write on the slot's generation word: it first stores 0 ("being
 *   rewritten", never a live generation), a release fence, then the fields, then the new
 *   generation with a release store. A consumer that loads that generation with acquire sees
 *   every field of it, whatever channel carried the proxy. Readers re-load the generation after
 *   an acquire fence: if they read any field of a newer begin(), that re-load sees 0 or a newer
 *   generation, so a torn read is reported as STALE, never as a wrong extent.
 * - A proxy may arrive through a channel that gives no C11 happens-before (a socket, a GPU
 *   stream): if the generation loaded is older than the proxy's, the load is retried briefly.
 * - release() is an acq_rel CAS on ack[consumer]: the consumer's reads of the chunk happen
 *   before the producer's acquire load of that ack in done(), hence before the chunk is reused.
 *   The generation check and the CAS are two steps, so the CAS itself re-validates: begin()
 *   resets acks to the previous generation (a racing duplicate still sees its own value) and an
 *   ack never moves backwards (a racing stale release cannot undo a newer ack).
 * - The wake_seq/waiters pair is seq_cst on both sides (Dekker): a releaser bumps wake_seq then
 *   reads waiters; a waiter bumps waiters then reads wake_seq; one of them sees the other, so a
 *   sleeper is never missed.
 * - Acks given on a consumer's behalf (ack_on_behalf, ack_current_on_behalf) are a CAS for a
 *   generation the slot was seen at: a real release racing with them wins or loses the CAS,
 *   either way the ack ends at that generation. ack_all() (a cancelled send) stores: no
 *   consumer holds the generation, its proxy was never sent.
 * - ready is a release store (CPU) or a GPU stream write after the chunk's writes on that
 *   stream; ready_is() is an acquire load, so a true answer orders the reads of the data. */
#include "sync_table.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error_internal.h"
#include "shm.h"

/* How many times a consumer re-reads a generation older than its proxy's before calling it
 * stale: covers the store still travelling from the producer's core, nothing more. */
#define GENERATION_CATCH_UP_SPINS 1024

struct cuipc_sync_table {
    int fd;
    void *base;
    uint64_t bytes;
    cuipc_sync_header *header;
    cuipc_sync_slot *slots;
    /* Private copies of the validated header: bounds never come from shared memory that a
     * peer could rewrite after attach. */
    uint32_t n_slots;
    uint32_t max_consumers;
};

static uint64_t layout_bytes(uint32_t n_slots) {
    return sizeof(cuipc_sync_header) + (uint64_t)n_slots * sizeof(cuipc_sync_slot);
}

static cuipc_status map_table(int fd, uint64_t bytes, cuipc_sync_table **out) {
    cuipc_sync_table *t = calloc(1, sizeof *t);
    if (!t)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "sync table struct");
    t->base = cuipc_shm_map(fd, bytes);
    if (!t->base) {
        free(t);
        return CUIPC_ERR_SYSTEM; /* message set by cuipc_shm_map */
    }
    t->fd = fd;
    t->bytes = bytes;
    t->header = t->base;
    t->slots = (cuipc_sync_slot *)((char *)t->base + sizeof(cuipc_sync_header));
    *out = t;
    return CUIPC_OK;
}

cuipc_status cuipc_sync_table_create(uint32_t n_slots, uint32_t max_consumers, uint64_t pool_id,
                                     uint64_t pool_size, cuipc_sync_table **out) {
    if (!out)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (n_slots == 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "n_slots is 0");
    if (max_consumers == 0 || max_consumers > CUIPC_MAX_CONSUMERS)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "max_consumers %u outside 1..%d", max_consumers,
                          CUIPC_MAX_CONSUMERS);
    uint64_t bytes = layout_bytes(n_slots);
    int fd = cuipc_memfd_create("cuipc-sync", bytes);
    if (fd < 0)
        return CUIPC_ERR_SYSTEM;
    cuipc_sync_table *t = NULL;
    cuipc_status s = map_table(fd, bytes, &t);
    if (s != CUIPC_OK) {
        close(fd);
        return s;
    }
    /* A fresh memfd is zero: every slot starts at generation 0 (never used). Nobody else can
     * see the table until its fd is sent, so plain stores suffice for the header. */
    cuipc_sync_header *h = t->header;
    h->magic = CUIPC_SYNC_MAGIC;
    h->version = CUIPC_SYNC_VERSION;
    h->n_slots = n_slots;
    h->max_consumers = max_consumers;
    h->pool_id = pool_id;
    h->pool_size = pool_size;
    t->n_slots = n_slots;
    t->max_consumers = max_consumers;
    *out = t;
    return CUIPC_OK;
}

static cuipc_status attach_validate(int fd, uint64_t expected_pool_id, cuipc_sync_table **out) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return CUIPC_FAIL_ERRNO("fstat(sync table fd %d)", fd);
    uint64_t file_bytes = (uint64_t)st.st_size;
    if (file_bytes < sizeof(cuipc_sync_header))
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "file size %llu smaller than the %zu-byte header",
                          (unsigned long long)file_bytes, sizeof(cuipc_sync_header));
    cuipc_sync_table *t = NULL;
    CUIPC_TRY(map_table(fd, file_bytes, &t));
    /* Read each header field once: the checks and the private copies must agree. */
    const cuipc_sync_header *h = t->header;
    uint64_t magic = h->magic, pool_id = h->pool_id;
    uint32_t version = h->version, n_slots = h->n_slots, max_consumers = h->max_consumers;
    cuipc_status s = CUIPC_OK;
    if (magic != CUIPC_SYNC_MAGIC)
        s = CUIPC_FAIL(CUIPC_ERR_CORRUPT, "magic 0x%016llx, expected 0x%016llx",
                       (unsigned long long)magic, (unsigned long long)CUIPC_SYNC_MAGIC);
    else if (version != CUIPC_SYNC_VERSION)
        s = CUIPC_FAIL(CUIPC_ERR_VERSION, "layout version %u, this build speaks %u", version,
                       CUIPC_SYNC_VERSION);
    else if (pool_id != expected_pool_id)
        s = CUIPC_FAIL(CUIPC_ERR_CORRUPT, "pool id 0x%016llx, expected 0x%016llx",
                       (unsigned long long)pool_id, (unsigned long long)expected_pool_id);
    else if (max_consumers == 0 || max_consumers > CUIPC_MAX_CONSUMERS)
        s = CUIPC_FAIL(CUIPC_ERR_CORRUPT, "max_consumers %u outside 1..%d", max_consumers,
                       CUIPC_MAX_CONSUMERS);
    else if (n_slots == 0 || file_bytes != layout_bytes(n_slots))
        s = CUIPC_FAIL(CUIPC_ERR_CORRUPT, "file size %llu, expected %llu for n_slots %u",
                       (unsigned long long)file_bytes, (unsigned long long)layout_bytes(n_slots),
                       n_slots);
    if (s != CUIPC_OK) {
        cuipc_shm_unmap(t->base, t->bytes);
        free(t);
        return s;
    }
    t->n_slots = n_slots;
    t->max_consumers = max_consumers;
    *out = t;
    return CUIPC_OK;
}

cuipc_status cuipc_sync_table_attach(int fd, uint64_t expected_pool_id, cuipc_sync_table **out) {
    if (out)
        *out = NULL;
    CUIPC_TRY(cuipc_attach_args(__func__, fd, out != NULL));
    cuipc_status s = attach_validate(fd, expected_pool_id, out);
    if (s != CUIPC_OK)
        close(fd); /* ownership was taken: also on failure */
    return s;
}

void cuipc_sync_table_destroy(cuipc_sync_table *t) {
    if (!t)
        return;
    cuipc_shm_unmap(t->base, t->bytes);
    if (t->fd >= 0)
        close(t->fd);
    free(t);
}

int cuipc_sync_table_fd(const cuipc_sync_table *t) {
    return t ? t->fd : -1;
}

void *cuipc_sync_table_base(const cuipc_sync_table *t) {
    return t ? t->base : NULL;
}

uint64_t cuipc_sync_table_bytes(const cuipc_sync_table *t) {
    return t ? t->bytes : 0;
}

cuipc_sync_header *cuipc_sync_table_header(const cuipc_sync_table *t) {
    return t ? t->header : NULL;
}

uint32_t cuipc_sync_table_slots(const cuipc_sync_table *t) {
    return t ? t->n_slots : 0;
}

cuipc_sync_slot *cuipc_sync_table_slot(const cuipc_sync_table *t, uint32_t i) {
    return t && i < t->n_slots ? &t->slots[i] : NULL;
}

/* ---- producer -------------------------------------------------------------------------- */

uint32_t cuipc_sync_begin(cuipc_sync_table *t, uint32_t slot, uint64_t offset, uint64_t size,
                          uint64_t consumer_mask) {
    if (!t || slot >= t->n_slots)
        return 0; /* no generation: a producer bug, never a valid proxy */
    cuipc_sync_slot *s = &t->slots[slot];
    /* Only the producer writes generation, so its own last value is exact. */
    uint32_t prev = atomic_load_explicit(&s->generation, memory_order_relaxed);
    uint32_t gen = prev + 1u;
    if (gen == 0)
        gen = 1; /* 0 means "no live generation": skipped on wrap */
    atomic_store_explicit(&s->generation, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release); /* the 0 is visible before any field changes */
    atomic_store_explicit(&s->ready, 0, memory_order_relaxed);
    atomic_store_explicit(&s->offset, offset, memory_order_relaxed);
    atomic_store_explicit(&s->size, size, memory_order_relaxed);
    atomic_store_explicit(&s->consumer_mask, consumer_mask, memory_order_relaxed);
    /* Reset the acks the new generation waits for to the previous generation, not to 0: an
     * ack left from 2^32 generations ago can then never pass for this one, and a duplicate
     * release of prev racing with this reset still finds ack == prev and is rejected. */
    for (uint64_t m = consumer_mask; m; m &= m - 1)
        atomic_store_explicit(&s->ack[__builtin_ctzll(m)], prev, memory_order_relaxed);
    atomic_store_explicit(&s->generation, gen, memory_order_release); /* publishes all above */
    return gen;
}

void cuipc_sync_set_ready(cuipc_sync_table *t, uint32_t slot, uint32_t generation) {
    if (!t || slot >= t->n_slots)
        return;
    /* Release: a consumer that acquires ready == generation sees the chunk's bytes. */
    atomic_store_explicit(&t->slots[slot].ready, generation, memory_order_release);
}

bool cuipc_sync_done(const cuipc_sync_table *t, uint32_t slot, uint64_t live_mask) {
    if (!t || slot >= t->n_slots)
        return false;
    cuipc_sync_slot *s = &t->slots[slot];
    uint32_t gen = atomic_load_explicit(&s->generation, memory_order_relaxed);
    if (gen == 0)
        return false;
    uint64_t need = atomic_load_explicit(&s->consumer_mask, memory_order_relaxed) & live_mask;
    for (; need; need &= need - 1) {
        /* Acquire pairs with the consumer's release CAS: its reads of the chunk are done. */
        if (atomic_load_explicit(&s->ack[__builtin_ctzll(need)], memory_order_acquire) != gen)
            return false;
    }
    return true;
}

uint32_t cuipc_sync_generation(const cuipc_sync_table *t, uint32_t slot) {
    if (!t || slot >= t->n_slots)
        return 0;
    return atomic_load_explicit(&t->slots[slot].generation, memory_order_seq_cst);
}

uint64_t cuipc_sync_consumer_mask(const cuipc_sync_table *t, uint32_t slot) {
    if (!t || slot >= t->n_slots)
        return 0;
    return atomic_load_explicit(&t->slots[slot].consumer_mask, memory_order_seq_cst);
}

void cuipc_sync_ack_all(cuipc_sync_table *t, uint32_t slot, uint32_t generation) {
    if (!t || slot >= t->n_slots)
        return;
    cuipc_sync_slot *s = &t->slots[slot];
    for (uint32_t i = 0; i < t->max_consumers; i++)
        atomic_store_explicit(&s->ack[i], generation, memory_order_seq_cst);
}

void cuipc_sync_ack_on_behalf(cuipc_sync_table *t, uint32_t slot, uint32_t generation,
                              uint32_t consumer) {
    if (!t || slot >= t->n_slots || consumer >= t->max_consumers)
        return;
    cuipc_sync_slot *s = &t->slots[slot];
    uint32_t expected = atomic_load_explicit(&s->ack[consumer], memory_order_seq_cst);
    if (expected != generation &&
        atomic_load_explicit(&s->generation, memory_order_seq_cst) == generation)
        atomic_compare_exchange_strong_explicit(&s->ack[consumer], &expected, generation,
                                                memory_order_seq_cst, memory_order_seq_cst);
}

bool cuipc_sync_ack_current_on_behalf(cuipc_sync_table *t, uint32_t slot, uint32_t consumer) {
    if (!t || slot >= t->n_slots || consumer >= t->max_consumers)
        return false;
    cuipc_sync_slot *s = &t->slots[slot];
    uint32_t gen = atomic_load_explicit(&s->generation, memory_order_seq_cst);
    if (!(atomic_load_explicit(&s->consumer_mask, memory_order_seq_cst) & (1ull << consumer)))
        return false;
    uint32_t ack = atomic_load_explicit(&s->ack[consumer], memory_order_seq_cst);
    return ack != gen &&
           atomic_compare_exchange_strong_explicit(&s->ack[consumer], &ack, gen,
                                                   memory_order_seq_cst, memory_order_seq_cst);
}

bool cuipc_sync_ready_is(const cuipc_sync_table *t, uint32_t slot, uint32_t generation) {
    if (!t || slot >= t->n_slots)
        return false;
    return atomic_load_explicit(&t->slots[slot].ready, memory_order_acquire) == generation;
}

bool cuipc_sync_ready_current(const cuipc_sync_table *t, uint32_t slot) {
    if (!t || slot >= t->n_slots)
        return false;
    const cuipc_sync_slot *s = &t->slots[slot];
    return atomic_load_explicit(&s->ready, memory_order_acquire) ==
           atomic_load_explicit(&s->generation, memory_order_relaxed);
}

bool cuipc_sync_ack_landed(const cuipc_sync_table *t, uint32_t slot, uint32_t generation,
                           uint32_t consumer) {
    if (!t || slot >= t->n_slots || consumer >= CUIPC_MAX_CONSUMERS)
        return true; /* no such word: nothing can be written there */
    const cuipc_sync_slot *s = &t->slots[slot];
    return atomic_load_explicit(&s->ack[consumer], memory_order_acquire) == generation ||
           atomic_load_explicit(&s->generation, memory_order_acquire) != generation;
}

void cuipc_sync_mark_newer(_Atomic uint32_t *mark, uint32_t generation) {
    uint32_t cur = atomic_load_explicit(mark, memory_order_relaxed);
    while ((cur == 0 || (int32_t)(generation - cur) > 0) &&
           !atomic_compare_exchange_weak_explicit(mark, &cur, generation, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

/* The device address of a word of the table: its offset from the host mapping, applied to the
 * device base. */
static void *device_addr(void *dev_base, const cuipc_sync_table *t, const void *word) {
    return (char *)dev_base + ((const char *)word - (const char *)t->base);
}

void *cuipc_sync_ready_device_addr(void *dev_base, const cuipc_sync_table *t, uint32_t slot) {
    return device_addr(dev_base, t, &t->slots[slot].ready);
}

void *cuipc_sync_ack_device_addr(void *dev_base, const cuipc_sync_table *t, uint32_t slot,
                                 uint32_t consumer) {
    return device_addr(dev_base, t, &t->slots[slot].ack[consumer]);
}

/* ---- consumer -------------------------------------------------------------------------- */

/* Load the slot's generation; if it is older than the proxy's (serial-number order), the
 * producer's store may not have reached this core yet: re-read a bounded number of times. */
static uint32_t load_generation(cuipc_sync_slot *s, uint32_t expected) {
    uint32_t gen = atomic_load_explicit(&s->generation, memory_order_acquire);
    for (int i = 0;
         gen != expected && (int32_t)(expected - gen) > 0 && i < GENERATION_CATCH_UP_SPINS; i++) {
        cuipc_cpu_relax();
        gen = atomic_load_explicit(&s->generation, memory_order_acquire);
    }
    return gen;
}

static cuipc_status check_slot_args(const cuipc_sync_table *t, uint32_t slot, uint32_t generation,
                                    uint32_t consumer) {
    if (!t)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "sync table is NULL");
    if (slot >= t->n_slots)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "slot %u out of range (%u slots)", slot, t->n_slots);
    if (consumer >= t->max_consumers)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "consumer %u out of range (%u consumers)", consumer,
                          t->max_consumers);
    if (generation == 0)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "slot %u: generation 0 is never issued", slot);
    return CUIPC_OK;
}

cuipc_status cuipc_sync_check(const cuipc_sync_table *t, uint32_t slot, uint32_t generation,
                              uint64_t offset, uint64_t size, uint32_t consumer) {
    CUIPC_TRY(check_slot_args(t, slot, generation, consumer));
    cuipc_sync_slot *s = &t->slots[slot];
    uint32_t gen = load_generation(s, generation);
    if (gen != generation)
        return CUIPC_FAIL(CUIPC_ERR_STALE, "slot %u: generation %u, slot is at %u", slot,
                          generation, gen);
    uint64_t mask = atomic_load_explicit(&s->consumer_mask, memory_order_relaxed);
    uint64_t cur_offset = atomic_load_explicit(&s->offset, memory_order_relaxed);
    uint64_t cur_size = atomic_load_explicit(&s->size, memory_order_relaxed);
    uint32_t ack = atomic_load_explicit(&s->ack[consumer], memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    uint32_t again = atomic_load_explicit(&s->generation, memory_order_relaxed);
    if (again != generation)
        return CUIPC_FAIL(CUIPC_ERR_STALE,
                          "slot %u: generation %u recycled while checking (now %u)", slot,
                          generation, again);
    if (!((mask >> consumer) & 1u))
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT,
                          "slot %u generation %u: consumer %u not in mask 0x%llx", slot, generation,
                          consumer, (unsigned long long)mask);
    if (cur_offset != offset || cur_size != size)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT,
                          "slot %u generation %u: extent [%llu, +%llu) differs from published "
                          "[%llu, +%llu)",
                          slot, generation, (unsigned long long)offset, (unsigned long long)size,
                          (unsigned long long)cur_offset, (unsigned long long)cur_size);
    if (ack == generation)
        return CUIPC_FAIL(CUIPC_ERR_DUPLICATE,
                          "slot %u generation %u: consumer %u already released", slot, generation,
                          consumer);
    return CUIPC_OK;
}

static cuipc_status count_stale(cuipc_sync_table *t, uint32_t slot, uint32_t generation,
                                uint32_t current) {
    atomic_fetch_add_explicit(&t->header->stale_releases, 1, memory_order_relaxed);
    return CUIPC_FAIL(CUIPC_ERR_STALE, "release of slot %u generation %u: slot is at %u", slot,
                      generation, current);
}

cuipc_status cuipc_sync_release(cuipc_sync_table *t, uint32_t slot, uint32_t generation,
                                uint32_t consumer) {
    CUIPC_TRY(check_slot_args(t, slot, generation, consumer));
    cuipc_sync_slot *s = &t->slots[slot];
    uint32_t gen = load_generation(s, generation);
    if (gen != generation)
        return count_stale(t, slot, generation, gen);
    uint64_t mask = atomic_load_explicit(&s->consumer_mask, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    gen = atomic_load_explicit(&s->generation, memory_order_relaxed);
    if (gen != generation)
        return count_stale(t, slot, generation, gen);
    if (!((mask >> consumer) & 1u))
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT,
                          "release of slot %u generation %u: consumer %u not in mask 0x%llx", slot,
                          generation, consumer, (unsigned long long)mask);

    _Atomic uint32_t *ack = &s->ack[consumer];
    uint32_t old = atomic_load_explicit(ack, memory_order_relaxed);
    do {
        if (old == generation) {
            atomic_fetch_add_explicit(&t->header->duplicate_releases, 1, memory_order_relaxed);
            return CUIPC_FAIL(CUIPC_ERR_DUPLICATE,
                              "slot %u generation %u: consumer %u already released", slot,
                              generation, consumer);
        }
        /* The ack only moves forward (serial-number order): a release of an older generation
         * that passed the check above just before the slot was reused must not overwrite this
         * consumer's ack of the newer one. */
        if ((int32_t)(generation - old) < 0) {
            atomic_fetch_add_explicit(&t->header->stale_releases, 1, memory_order_relaxed);
            return CUIPC_FAIL(CUIPC_ERR_STALE,
                              "slot %u generation %u: consumer %u already acked generation %u",
                              slot, generation, consumer, old);
        }
        /* Release half: this consumer's reads of the chunk precede the ack. */
    } while (!atomic_compare_exchange_weak_explicit(ack, &old, generation, memory_order_acq_rel,
                                                    memory_order_relaxed));

    /* No re-check of the generation here: this very ack may have let the producer recycle the
     * slot already. (Had it moved on before the CAS, this consumer was declared dead: the ack
     * names an old generation and is inert.) */
    atomic_fetch_add_explicit(&t->header->releases, 1, memory_order_relaxed);
    /* For the producer's recycle-lag statistic (CLOCK_MONOTONIC is system-wide). */
    atomic_store_explicit(&t->header->last_release_ns, cuipc_now_ns(), memory_order_relaxed);
    cuipc_sync_wake(t);
    return CUIPC_OK;
}

/* ---- waiting --------------------------------------------------------------------------- */

uint32_t cuipc_sync_wake_seq(const cuipc_sync_table *t) {
    return t ? atomic_load_explicit(&t->header->wake_seq, memory_order_seq_cst) : 0;
}

void cuipc_sync_wake(cuipc_sync_table *t) {
    if (!t)
        return;
    cuipc_sync_header *h = t->header;
    atomic_fetch_add_explicit(&h->wake_seq, 1, memory_order_seq_cst);
    /* No syscall when nobody sleeps: the common case for a busy producer. */
    if (atomic_load_explicit(&h->waiters, memory_order_seq_cst) > 0)
        cuipc_futex_wake(&h->wake_seq, INT_MAX);
}

cuipc_status cuipc_sync_wait(cuipc_sync_table *t, uint32_t seen_seq, int64_t timeout_ns) {
    if (!t)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "sync table is NULL");
    cuipc_sync_header *h = t->header;
    uint64_t deadline = timeout_ns >= 0 ? cuipc_now_ns() + (uint64_t)timeout_ns : 0;
    cuipc_status result = CUIPC_OK;
    atomic_fetch_add_explicit(&h->waiters, 1, memory_order_seq_cst);
    /* Re-check after announcing ourselves: a release that came before is seen here, one that
     * comes after sees waiters > 0 and wakes the futex. Loop over spurious wake-ups. */
    while (atomic_load_explicit(&h->wake_seq, memory_order_seq_cst) == seen_seq) {
        int64_t left = -1;
        if (timeout_ns >= 0) {
            uint64_t now = cuipc_now_ns();
            if (now >= deadline) {
                result = CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "no release within %lld ns (wake_seq %u)",
                                    (long long)timeout_ns, seen_seq);
                break;
            }
            left = (int64_t)(deadline - now);
        }
        cuipc_status s = cuipc_futex_wait(&h->wake_seq, seen_seq, left);
        if (s != CUIPC_OK && s != CUIPC_ERR_TIMEOUT) {
            result = s;
            break;
        }
    }
    atomic_fetch_sub_explicit(&h->waiters, 1, memory_order_seq_cst);
    return result;
}
