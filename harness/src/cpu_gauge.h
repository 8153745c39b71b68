/* A per-message gauge of the state of the CPU a role runs on: the time of a walk over a fixed
 * 64 KiB working set, one pass a message, so that each line was last touched one message ago.
 * Over the L1 and well within the L2, the set is found in the L2 when the core keeps our data
 * from one message to the next, and in the L3 or memory when something else evicts it. On the
 * H200 VM a neighbour does that about half of the time (run 42: an ALU chain and a walk over
 * an L1-sized set kept their speed throughout, while a 256 KiB set revisited every 1.5 ms was
 * 4.5 times slower at the median on some CPUs), and whatever keeps a working set of that
 * size from one message to the next, a Python interpreter most of all, slows with it. Timing
 * the walk next to each message says which state the message met. Self-contained (no harness
 * helpers): the Python extension builds the same file, so both sides of a C / Python
 * comparison gauge with the same code. */
#ifndef CUIPC_HARNESS_CPU_GAUGE_H
#define CUIPC_HARNESS_CPU_GAUGE_H

#include <stdbool.h>
#include <stdint.h>

/* The walk's state: a random cycle over the working set's cache lines, and where it stopped. */
typedef struct cuipc_cpu_gauge {
    uint32_t *next;
    uint32_t at;
    uint64_t resident_ns; /* the fastest of a few back-to-back walks at init: the set in the L2 */
} cuipc_cpu_gauge;

/* A message is "slow" on one side when its walk took over this many times the fastest one seen
 * (the roles' back-to-back walks included, so a run that never met the fast state still has an
 * L2-resident reference). On the H200 VM (run 43) the walk took 6.2 us back to back and, 2 ms
 * apart, a p50 of 8.9-12.1 us and a p90 of 20-29 us: a spread rather than two levels, so this
 * line splits a continuum, and a "fast" message may have met a little eviction. */
#define CUIPC_CPU_GAUGE_SLOW_ABOVE 1.5

/* Builds the working set (touched, so no page fault is ever timed) and times resident_ns;
 * false without memory. */
bool cuipc_cpu_gauge_init(cuipc_cpu_gauge *g);
/* One walk (every line of the set once): its time in ns, about 8 us where the L2 holds it. */
uint64_t cuipc_cpu_gauge_ns(cuipc_cpu_gauge *g);
void cuipc_cpu_gauge_free(cuipc_cpu_gauge *g);

/* One timed message's two walks (ns; 0: none came): the producer's before it, the consumer's
 * after it. */
typedef struct cuipc_gauge_pair {
    uint32_t producer_ns, consumer_ns;
} cuipc_gauge_pair;

#endif
