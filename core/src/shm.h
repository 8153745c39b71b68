/* Shared-memory, futex and clock helpers shared by the pool, the sync table and the rings. */
#ifndef CUIPC_SHM_H
#define CUIPC_SHM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuipc/status.h"

/* An anonymous memfd of size bytes (close-on-exec, 0600 by construction, no name in /dev/shm).
 * Returns the fd, or -1 with the error message set. */
int cuipc_memfd_create(const char *debug_name, uint64_t size);

/* Map size bytes of fd shared read/write. Returns NULL with the error set. */
void *cuipc_shm_map(int fd, uint64_t size);
void cuipc_shm_unmap(void *p, uint64_t size);

/* Argument checks of an attach that takes ownership of fd (`where` names it in the message):
 * without an out pointer fd is closed, since nobody else will; a negative fd is refused. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_attach_args(const char *where, int fd, bool have_out);

/* Size of the object behind fd (fstat), or 0 with the error set. */
uint64_t cuipc_fd_size(int fd);

/* Cross-process futex on a 32-bit word in shared memory (no FUTEX_PRIVATE_FLAG).
 * wait: returns CUIPC_OK when woken or when *addr != expected, CUIPC_ERR_TIMEOUT when
 * timeout_ns passed (timeout_ns < 0: forever). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t timeout_ns);
void cuipc_futex_wake(_Atomic uint32_t *addr, int n);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t cuipc_now_ns(void);

/* A pause hint for spin loops. */
void cuipc_cpu_relax(void);

/* 64 random bits from getrandom (ids, unpredictable names). */
uint64_t cuipc_random_u64(void);

#endif
