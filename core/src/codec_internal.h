/* The codec for the library's own message path: an encoder that sizes its buffer as it writes,
 * and both directions with a look at every proxy as it passes, so a sender or receiver learns
 * a message's chunks without walking its tree again. */
#ifndef CUIPC_CODEC_INTERNAL_H
#define CUIPC_CODEC_INTERNAL_H

#include "cuipc/codec.h"
#include "cuipc/proxy.h"

/* Called for every proxy in tree order; a failure stops the encode or decode with it. */
typedef cuipc_status (*cuipc_codec_proxy_fn)(const cuipc_proxy *p, void *ctx);

/* cuipc_encode into a buffer of its own (*buf, the caller frees it), in one walk of the tree
 * (cuipc_encoded_size then cuipc_encode take two). on_proxy may be NULL. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_encode_alloc(const cuipc_value *v, cuipc_codec_proxy_fn on_proxy, void *ctx,
                                void **buf, size_t *len);

/* cuipc_decode, with on_proxy (may be NULL) given each proxy before its node is built. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_decode_with(const void *buf, size_t len, cuipc_codec_proxy_fn on_proxy,
                               void *ctx, cuipc_value **out);

#endif
