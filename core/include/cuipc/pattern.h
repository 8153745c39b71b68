/* Data-integrity helpers for tests, the harness and benchmarks: a pattern derived from (seed,
 * byte index) and an order-sensitive checksum, on the GPU and on the host. Not part of the
 * transport: the umbrella cuipc.h leaves them out. */
#ifndef CUIPC_PATTERN_H
#define CUIPC_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#include "cuipc/base.h"
#include "cuipc/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fill n bytes with a pattern derived from (seed, byte index); works on device or host memory
 * reachable by the device. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_fill_pattern(void *p, size_t n, uint64_t seed, cuipc_stream stream);

/* Order-sensitive 64-bit checksum of n bytes at p (device memory), computed by a kernel;
 * waits for the stream. Equals cuipc_host_checksum over the same bytes. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_gpu_checksum(const void *p, size_t n, cuipc_stream stream, uint64_t *out);

/* The same pattern and checksum on the host. */
void cuipc_host_fill_pattern(void *p, size_t n, uint64_t seed);
uint64_t cuipc_host_checksum(const void *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
