/* libFuzzer target for cuipc_decode.
 *
 * Input: one mode byte, then a message. Mode bit 0 set: the header's body length and CRC are
 * rewritten first, so mutations reach the parser instead of dying at the CRC check. Mode bit 0
 * clear: the message is decoded exactly as given (header checks).
 *
 * Oracle beyond "no crash, no sanitizer report": the encoding is canonical, so any message that
 * decodes must re-encode to exactly the same bytes; anything else aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuipc/codec.h"

static uint32_t fuzz_crc32c(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = (c >> 8) ^ table[(c ^ p[i]) & 0xff];
    return ~c;
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void check_canonical(const cuipc_value *tree, const uint8_t *msg, size_t len) {
    size_t size = 0, written = 0;
    if (cuipc_encoded_size(tree, &size) != CUIPC_OK) {
        fprintf(stderr, "decoded tree cannot be re-encoded: %s\n", cuipc_last_error());
        abort();
    }
    uint8_t *again = malloc(size);
    if (!again)
        abort();
    if (cuipc_encode(tree, again, size, &written) != CUIPC_OK || written != len ||
        memcmp(again, msg, len) != 0) {
        fprintf(stderr, "re-encoding differs from the accepted message (%zu vs %zu bytes)\n",
                written, len);
        abort();
    }
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t len = size - 1;
    /* An exact-size heap copy: ASan flags any read past len. */
    uint8_t *msg = malloc(len ? len : 1);
    if (!msg)
        return 0;
    memcpy(msg, data + 1, len);
    if ((data[0] & 1) && len >= CUIPC_WIRE_HEADER_BYTES) {
        put32(msg + 8, (uint32_t)(len - CUIPC_WIRE_HEADER_BYTES));
        put32(msg + 12, fuzz_crc32c(msg + CUIPC_WIRE_HEADER_BYTES, len - CUIPC_WIRE_HEADER_BYTES));
    }
    cuipc_value *tree = NULL;
    cuipc_status s = cuipc_decode(msg, len, &tree);
    if (s == CUIPC_OK) {
        check_canonical(tree, msg, len);
        cuipc_value_free(tree);
    } else if (tree != NULL || (s != CUIPC_ERR_CORRUPT && s != CUIPC_ERR_VERSION)) {
        fprintf(stderr, "decode failed with %s and left a tree or an unexpected code: %s\n",
                cuipc_status_name(s), cuipc_last_error());
        abort();
    }
    free(msg);
    return 0;
}
