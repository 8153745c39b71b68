/* Host pattern and checksum (no GPU needed): known values pin the definitions documented in
 * core/src/cuda_internal.h, and the properties the GPU tests and the harness rely on hold:
 * placement-independence, prefixes, sensitivity to every byte, to order and to length. */
#include <stdint.h>
#include <string.h>

#include "cuipc/gpu.h"
#include "cuipc/pattern.h"
#include "test_util.h"

#define BUF_MAX 4200

/* Expected values computed by an independent Python implementation of the documented
 * definitions (splitmix64 stream for the pattern; fmix64 sum for the checksum). */
static void test_known_values(void) {
    /* The first two outputs of splitmix64 seeded with 0, as published with the generator. */
    static const uint8_t first16[16] = {0xaf, 0xcd, 0x1d, 0x7b, 0x39, 0xa8, 0x20, 0xe2,
                                        0xf4, 0x65, 0xb9, 0xa1, 0x6a, 0x9e, 0x78, 0x6e};
    uint8_t b[16];
    cuipc_host_fill_pattern(b, sizeof b, 0);
    CHECK(memcmp(b, first16, sizeof b) == 0);

    static const struct {
        uint64_t seed;
        size_t n;
        uint64_t checksum;
    } known[] = {
        {0, 0, 0x0ull},
        {0, 1, 0x3d1002ae2ab0e918ull},
        {0, 8, 0xc1f2772efa6179b2ull},
        {1, 7, 0x6a84b9cfe8ae9b87ull},
        {42, 4095, 0xf6b74cef7a0992fcull},
    };
    static uint8_t buf[BUF_MAX];
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        cuipc_host_fill_pattern(buf, known[k].n, known[k].seed);
        uint64_t got = cuipc_host_checksum(buf, known[k].n);
        if (got != known[k].checksum) {
            fprintf(stderr, "checksum of pattern(seed %llu, %zu bytes) = 0x%llx, expected 0x%llx\n",
                    (unsigned long long)known[k].seed, known[k].n, (unsigned long long)got,
                    (unsigned long long)known[k].checksum);
            cuipc_test_failures++;
        }
    }
    uint8_t zeros[8] = {0};
    CHECK(cuipc_host_checksum(zeros, 8) == 0xe34c3397384ef571ull);
    CHECK(cuipc_host_checksum(zeros, 7) == 0x10a790bd891400c7ull);
    CHECK(cuipc_host_checksum("abc", 3) == 0x3bcb6177de7b695ull);
    CHECK(cuipc_host_checksum(NULL, 0) == 0);
}

/* The pattern follows the byte index, not the address, and never writes outside [p, p+n). */
static void test_fill_placement(void) {
    static uint8_t ref[BUF_MAX], buf[BUF_MAX + 32];
    cuipc_host_fill_pattern(ref, BUF_MAX, 7);
    static const size_t sizes[] = {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 4095, BUF_MAX};
    for (size_t off = 0; off < 16; off++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t n = sizes[k];
            memset(buf, 0xA5, sizeof buf);
            cuipc_host_fill_pattern(buf + off, n, 7);
            if (memcmp(buf + off, ref, n) != 0) {
                fprintf(stderr,
                        "pattern at offset %zu, %zu bytes: not a prefix of the aligned one\n", off,
                        n);
                cuipc_test_failures++;
            }
            for (size_t j = 0; j < sizeof buf; j++) {
                if ((j < off || j >= off + n) && buf[j] != 0xA5) {
                    fprintf(stderr, "fill(offset %zu, %zu bytes) wrote byte %zu outside\n", off, n,
                            j);
                    cuipc_test_failures++;
                    break;
                }
            }
            CHECK(cuipc_host_checksum(buf + off, n) == cuipc_host_checksum(ref, n));
        }
    }
    /* Seeds give different data (a test handing the wrong buffer must not pass). */
    static uint8_t other[BUF_MAX];
    for (uint64_t seed = 0; seed < 8; seed++) {
        cuipc_host_fill_pattern(other, BUF_MAX, seed == 7 ? 8 : seed);
        CHECK(memcmp(other, ref, 8) != 0);
        CHECK(cuipc_host_checksum(other, BUF_MAX) != cuipc_host_checksum(ref, BUF_MAX));
    }
}

/* Every single-byte change, every swap of two different words and every length change
 * alters the checksum. */
static void test_checksum_sensitivity(void) {
    enum { N = 1003 }; /* not a multiple of 8: the padded tail word is covered too */
    static uint8_t buf[N + 1];
    cuipc_host_fill_pattern(buf, N, 99);
    const uint64_t base = cuipc_host_checksum(buf, N);
    int missed = 0;
    for (size_t j = 0; j < N; j++) {
        static const uint8_t flips[] = {0x01, 0x80, 0xFF, 0x5A};
        for (size_t f = 0; f < sizeof flips; f++) {
            buf[j] ^= flips[f];
            if (cuipc_host_checksum(buf, N) == base)
                missed++;
            buf[j] ^= flips[f];
        }
    }
    if (missed) {
        fprintf(stderr, "%d byte change(s) left the checksum unchanged\n", missed);
        cuipc_test_failures++;
    }
    CHECK(cuipc_host_checksum(buf, N) == base);

    uint64_t rng = 12345;
    for (int t = 0; t < 2000; t++) {
        size_t a = cuipc_test_rand(&rng) % (N / 8), b = cuipc_test_rand(&rng) % (N / 8);
        if (a == b || memcmp(buf + 8 * a, buf + 8 * b, 8) == 0)
            continue;
        uint8_t tmp[8];
        memcpy(tmp, buf + 8 * a, 8);
        memcpy(buf + 8 * a, buf + 8 * b, 8);
        memcpy(buf + 8 * b, tmp, 8);
        if (cuipc_host_checksum(buf, N) == base) {
            fprintf(stderr, "swapping words %zu and %zu left the checksum unchanged\n", a, b);
            cuipc_test_failures++;
        }
        memcpy(buf + 8 * b, buf + 8 * a, 8);
        memcpy(buf + 8 * a, tmp, 8);
    }
    CHECK(cuipc_host_checksum(buf, N) == base);

    /* Two bytes swapped inside one word, and a zero byte appended (same padded words). */
    uint8_t t = buf[16];
    buf[16] = buf[17];
    buf[17] = t;
    CHECK(buf[16] == buf[17] || cuipc_host_checksum(buf, N) != base);
    buf[17] = buf[16];
    buf[16] = t;
    buf[N] = 0;
    CHECK(cuipc_host_checksum(buf, N + 1) != base);
    CHECK(cuipc_host_checksum(buf, N - 1) != base);
}

int main(void) {
    test_known_values();
    test_fill_placement();
    test_checksum_sensitivity();
    return cuipc_test_finish("test_pattern");
}
