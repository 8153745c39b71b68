/* splitmix64: the harness's seedable generator (tiny, good enough for sampling sizes and times).
 * Core's data pattern uses the same mix in its own device-side header. */
#ifndef CUIPC_HARNESS_SPLITMIX_H
#define CUIPC_HARNESS_SPLITMIX_H

#include <stdint.h>

#define CUIPC_H_SPLITMIX_GAMMA 0x9e3779b97f4a7c15ull

/* The output for state x (a stream's states step by the gamma: x, x + gamma, ...). */
static inline uint64_t cuipc_h_splitmix64(uint64_t x) {
    x += CUIPC_H_SPLITMIX_GAMMA;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

#endif
