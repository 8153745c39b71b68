/* Single-producer single-consumer message ring in a memfd: variable-length records, a futex
 * doorbell each way, spin briefly before sleeping, close flag, and a peer liveness hook so a
 * blocked send/recv returns CUIPC_ERR_PEER_DEAD instead of hanging. */
#ifndef CUIPC_RING_H
#define CUIPC_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuipc/status.h"

typedef struct cuipc_ring cuipc_ring;

/* Called while blocked (every few ms): return false when the peer is known dead. */
typedef bool (*cuipc_peer_alive_fn)(void *ctx);

/* capacity: data bytes, power of two >= 4096. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_ring_create(uint64_t capacity, cuipc_ring **out);
/* Map a ring received as fd (ownership taken, also on failure); header validated. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_ring_attach(int fd, cuipc_ring **out);
void cuipc_ring_destroy(cuipc_ring *r);

int cuipc_ring_fd(const cuipc_ring *r);
size_t cuipc_ring_max_message(const cuipc_ring *r);
void cuipc_ring_set_peer_check(cuipc_ring *r, cuipc_peer_alive_fn fn, void *ctx);

/* Spin this long before sleeping on the futex (default 20 us). */
void cuipc_ring_set_spin_ns(cuipc_ring *r, uint64_t spin_ns);

/* CUIPC_ERR_INVALID_ARG (len 0 or > max), CUIPC_ERR_CLOSED, CUIPC_ERR_TIMEOUT,
 * CUIPC_ERR_PEER_DEAD. timeout_ns < 0 waits forever (still checking the peer). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_ring_send(cuipc_ring *r, const void *msg, size_t len, int64_t timeout_ns);

/* Wait, as a send would, until a message of len bytes fits, without sending it: with one sender
 * the room stays (only the receiver moves, and it frees more). Same errors as a send, and
 * CUIPC_ERR_CLOSED once the ring is interrupted (cuipc_ring_interrupt), which a send is not. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_ring_wait_room(cuipc_ring *r, size_t len, int64_t timeout_ns);

/* Next message into a malloc'd buffer (*msg, freed by caller). CUIPC_ERR_CLOSED once the ring
 * is closed and empty. A corrupt record header gives CUIPC_ERR_CORRUPT. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_ring_recv(cuipc_ring *r, void **msg, size_t *len, int64_t timeout_ns);

/* Sender side: no more messages; wakes a sleeping receiver. */
void cuipc_ring_close(cuipc_ring *r);
bool cuipc_ring_closed(const cuipc_ring *r);

/* This process only, for good: every recv on r, and every cuipc_ring_wait_room, blocked now or
 * called later, returns CUIPC_ERR_CLOSED without taking a record or waiting (a send whose room
 * was there is not stopped). The other side's waits are not touched. Callable from any thread,
 * and from a signal handler (atomics and futex syscalls). */
void cuipc_ring_interrupt(cuipc_ring *r);
bool cuipc_ring_interrupted(const cuipc_ring *r);

/* Messages waiting (for stats and tests). */
uint64_t cuipc_ring_pending(const cuipc_ring *r);

#endif
