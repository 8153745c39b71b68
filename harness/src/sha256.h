/* SHA-256 (FIPS 180-4), for the content hash of a scenario in its results (compare refuses to
 * judge two runs of different scenario contents). No crypto library: GPU hosts may lack one. */
#ifndef CUIPC_HARNESS_SHA256_H
#define CUIPC_HARNESS_SHA256_H

#include <stddef.h>

/* hex: 65 bytes (64 hex digits and a NUL). */
void cuipc_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
