/* The sync table: ONE shared-memory region per pool with a slot per chunk in flight.
 * Lock-free C11 atomics; a generation per slot so stale releases are rejected; one ack word per
 * consumer so N consumers (tp_size) complete independently, from the CPU (CAS) or from a GPU
 * stream (cuStreamWriteValue32 of the generation into the ack word).
 *
 * The whole slot protocol lives in sync_table.c: nobody else touches a slot's words. Its
 * invariants (why they hold: the top of sync_table.c):
 * - generation is written by the producer alone, is never 0 for a live slot, and moves
 *   forward only; 0 means "being rewritten" (or never used).
 * - ready == generation only once the chunk's data of that generation is in place (a CPU
 *   release store, or a GPU stream write at the device address of the ready word).
 * - ack[c] == generation means consumer c is done with that generation; an ack only moves
 *   forward, and begin() resets the acks it waits for to the previous generation.
 * - A slot may be reused once done(): every live consumer of its mask has acked. Acks given
 *   on a consumer's behalf (dead, or never sent the message) go through the same words. */
#ifndef CUIPC_SYNC_TABLE_H
#define CUIPC_SYNC_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cuipc/pool.h"
#include "cuipc/status.h"

#define CUIPC_SYNC_MAGIC 0x4355495053594e43ull /* "CUIPSYNC" */
#define CUIPC_SYNC_VERSION 1

typedef struct cuipc_sync_slot {
    _Atomic uint32_t generation;    /* bumped by the producer when the slot is reused; never 0 */
    _Atomic uint32_t ready;         /* == generation once the chunk's data is in place */
    _Atomic uint64_t consumer_mask; /* consumers that must release this generation */
    _Atomic uint64_t offset;        /* extent published for this generation (proxy validation) */
    _Atomic uint64_t size;
    _Atomic uint32_t ack[CUIPC_MAX_CONSUMERS]; /* == generation once consumer i is done */
} __attribute__((aligned(64))) cuipc_sync_slot;

typedef struct cuipc_sync_header {
    uint64_t magic;
    uint32_t version;
    uint32_t n_slots;
    uint32_t max_consumers;
    uint32_t reserved_;
    uint64_t pool_id;
    uint64_t pool_size;
    _Atomic uint32_t wake_seq; /* futex word: bumped by every release */
    _Atomic uint32_t waiters;  /* > 0 while someone sleeps on wake_seq */
    _Atomic uint64_t releases;
    _Atomic uint64_t last_release_ns; /* CLOCK_MONOTONIC of the latest accepted release */
    _Atomic uint64_t stale_releases;
    _Atomic uint64_t duplicate_releases;
} __attribute__((aligned(64))) cuipc_sync_header;

typedef struct cuipc_sync_table cuipc_sync_table;

/* Producer: a new memfd-backed table. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_sync_table_create(uint32_t n_slots, uint32_t max_consumers, uint64_t pool_id,
                                     uint64_t pool_size, cuipc_sync_table **out);
/* Consumer: map a table received as fd (ownership of fd is taken, also on failure); header
 * checked (magic, version, pool id, size matches slot count). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_sync_table_attach(int fd, uint64_t expected_pool_id, cuipc_sync_table **out);
void cuipc_sync_table_destroy(cuipc_sync_table *t);

int cuipc_sync_table_fd(const cuipc_sync_table *t);
void *cuipc_sync_table_base(const cuipc_sync_table *t);
uint64_t cuipc_sync_table_bytes(const cuipc_sync_table *t);
cuipc_sync_header *cuipc_sync_table_header(const cuipc_sync_table *t);
uint32_t cuipc_sync_table_slots(const cuipc_sync_table *t);
cuipc_sync_slot *cuipc_sync_table_slot(const cuipc_sync_table *t, uint32_t i);

/* Producer: start a new generation of slot for [offset, offset+size) sent to consumer_mask.
 * Returns the new generation (never 0). */
uint32_t cuipc_sync_begin(cuipc_sync_table *t, uint32_t slot, uint64_t offset, uint64_t size,
                          uint64_t consumer_mask);
/* Producer: the data is in place (CPU path; GPU path writes ready on a stream). */
void cuipc_sync_set_ready(cuipc_sync_table *t, uint32_t slot, uint32_t generation);
/* Producer: every consumer of the slot's mask that is in live_mask has acked the generation. */
bool cuipc_sync_done(const cuipc_sync_table *t, uint32_t slot, uint64_t live_mask);
/* The slot's current generation (0: being rewritten or never used, or slot out of range). */
uint32_t cuipc_sync_generation(const cuipc_sync_table *t, uint32_t slot);
/* The consumers the slot's current generation waits for (0 for a slot out of range). */
uint64_t cuipc_sync_consumer_mask(const cuipc_sync_table *t, uint32_t slot);
/* Producer: ack (slot, generation) for every consumer (a cancelled send: nobody will). */
void cuipc_sync_ack_all(cuipc_sync_table *t, uint32_t slot, uint32_t generation);
/* Producer: ack (slot, generation) on behalf of consumer c (it never got the message), if the
 * slot is still at that generation; no wake-up (the caller wakes once). */
void cuipc_sync_ack_on_behalf(cuipc_sync_table *t, uint32_t slot, uint32_t generation,
                              uint32_t consumer);
/* Producer: ack the slot's current generation on behalf of consumer c (it died) if c is in
 * its mask and has not acked it; true when this call gave the ack. */
bool cuipc_sync_ack_current_on_behalf(cuipc_sync_table *t, uint32_t slot, uint32_t consumer);

/* The slot's data of generation is in place (acquire: a caller that sees true reads it). */
bool cuipc_sync_ready_is(const cuipc_sync_table *t, uint32_t slot, uint32_t generation);
/* The ready word matches the slot's current generation: the GPU has run every write queued
 * before the ready write (a chunk whose acks came on a consumer's behalf may be reused). */
bool cuipc_sync_ready_current(const cuipc_sync_table *t, uint32_t slot);

/* Consumer c's ack of (slot, generation) is in the table, or the slot moved on past that
 * generation (which needs the ack, or one given on c's behalf): a write of it queued on a
 * stream has landed, or can no longer matter to the producer. */
bool cuipc_sync_ack_landed(const cuipc_sync_table *t, uint32_t slot, uint32_t generation,
                           uint32_t consumer);

/* *mark := generation unless it holds a newer one (serial-number order): a thread that queued
 * a GPU write of generation g records it after the queueing, by which time the write may have
 * run, the slot been reused and another thread recorded g + 1, which must stay. */
void cuipc_sync_mark_newer(_Atomic uint32_t *mark, uint32_t generation);

/* Device address of a slot's ready word / consumer c's ack word, given the table's device base
 * (the table registered with the GPU): where a stream writes them. */
void *cuipc_sync_ready_device_addr(void *sync_dev_base, const cuipc_sync_table *t, uint32_t slot);
void *cuipc_sync_ack_device_addr(void *sync_dev_base, const cuipc_sync_table *t, uint32_t slot,
                                 uint32_t consumer);

/* Consumer: validate a proxy's (slot, generation, offset, size) for consumer c:
 * CUIPC_ERR_CORRUPT (slot out of range, extent differs, c not in the mask),
 * CUIPC_ERR_STALE (generation moved on), CUIPC_ERR_DUPLICATE (c already released it). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_sync_check(const cuipc_sync_table *t, uint32_t slot, uint32_t generation,
                              uint64_t offset, uint64_t size, uint32_t consumer);
/* Consumer c is done with (slot, generation): CAS of its ack word; STALE / DUPLICATE rejected
 * and counted in the header; wakes the producer if it waits. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_sync_release(cuipc_sync_table *t, uint32_t slot, uint32_t generation,
                                uint32_t consumer);

/* Sleep until a release happens after *seq was read (or timeout). */
uint32_t cuipc_sync_wake_seq(const cuipc_sync_table *t);
CUIPC_WARN_UNUSED
cuipc_status cuipc_sync_wait(cuipc_sync_table *t, uint32_t seen_seq, int64_t timeout_ns);
/* Bump wake_seq and wake sleepers (used after GPU-side acks). */
void cuipc_sync_wake(cuipc_sync_table *t);

#endif
