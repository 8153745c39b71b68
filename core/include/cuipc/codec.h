/* Versioned, length-checked binary encoding of value trees (what travels on a channel).
 * Tensor nodes cannot be encoded (their data pointers mean nothing in another process): wrap
 * them into proxies first. The decoder validates every field and returns CUIPC_ERR_CORRUPT or
 * CUIPC_ERR_VERSION with a message naming the byte offset; it never reads past len. */
#ifndef CUIPC_CODEC_H
#define CUIPC_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "cuipc/value.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CUIPC_WIRE_VERSION 1
#define CUIPC_WIRE_HEADER_BYTES 16
#define CUIPC_WIRE_MAX_MESSAGE (64u << 20)

/* Size the encoding of v will take, or an error if v holds something unencodable. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_encoded_size(const cuipc_value *v, size_t *out);

/* Encode into buf (cap bytes); *len receives the bytes written. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_encode(const cuipc_value *v, void *buf, size_t cap, size_t *len);

/* Decode a whole message. *out is a new tree owned by the caller. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_decode(const void *buf, size_t len, cuipc_value **out);

#ifdef __cplusplus
}
#endif
#endif
