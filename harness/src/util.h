/* Small helpers shared by the harness: monotonic time, byte sizes, signal names. */
#ifndef CUIPC_HARNESS_UTIL_H
#define CUIPC_HARNESS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "byte_size.h"
#include "read_file.h"

/* CLOCK_MONOTONIC in nanoseconds: comparable across processes of one host. */
uint64_t cuipc_h_now_ns(void);

/* Sleep for ns (restarts after signals so hold times are honoured). */
void cuipc_h_sleep_ns(uint64_t ns);
/* Fault every page of [p, p+n) in now, so that RSS does not grow when the buffer fills later.
 * (A zero memset after malloc is not enough: the compiler may turn the pair into calloc, which
 * leaves fresh pages untouched.) */
void cuipc_h_touch(void *p, size_t n);
/* Sleep until CLOCK_MONOTONIC reaches target_ns, within ~1 us (spins the last 80 us). */
void cuipc_h_sleep_until_ns(uint64_t target_ns);

/* Human-readable size into buf ("64 MiB", "1.50 GiB", "512 B"). */
const char *cuipc_h_format_size(uint64_t bytes, char *buf, size_t cap);

/* "SIGSEGV" for 11; "SIG<n>" when unknown (buf must hold 16 bytes). */
const char *cuipc_h_signal_name(int sig, char *buf, size_t cap);

/* Write all of len bytes to fd (restarting on EINTR); false on error. */
bool cuipc_h_write_all(int fd, const void *p, size_t len);

/* Read a whole file into a NUL-terminated malloc'd buffer; NULL on error (errno set). */

#endif
