/* The one byte-size grammar of scenario files, planner workloads and the planner's options: a
 * number (JSON number, or a decimal string strtod reads), optionally followed by spaces and a
 * unit: B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000). scenarios/
 * README.md documents it for users. */
#ifndef CUIPC_HARNESS_BYTE_SIZE_H
#define CUIPC_HARNESS_BYTE_SIZE_H

#include <stdbool.h>
#include <stdint.h>

/* Sizes stay below 2^63 so every later sum and product can be checked. */
#define CUIPC_H_SIZE_LIMIT 9.2e18

/* "64MiB", "1.5 GB", "4096" -> bytes, possibly fractional ("0.5KiB" is 512, "1.5B" is 1.5): a
 * workload's distribution parameters are real numbers. False when malformed, negative, not
 * finite or at least CUIPC_H_SIZE_LIMIT. */
bool cuipc_h_parse_bytes(const char *s, double *out);

/* The same for a byte count: false also when it is not a whole number of bytes. */
bool cuipc_h_parse_size(const char *s, uint64_t *out);

#endif
