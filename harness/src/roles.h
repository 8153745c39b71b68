/* The role processes of a run (producer, consumers) and what they share with the supervisor.
 * Roles run in forked children: they pin themselves, then initialise CUDA, then meet at the
 * barrier. Each writes its results as JSON into the run directory (<role>-<index>.json) and
 * consumers their raw latencies (consumer-<index>.lat, native uint64 ns). */
#ifndef CUIPC_HARNESS_ROLES_H
#define CUIPC_HARNESS_ROLES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "scenario.h"
#include "supervisor.h"

/* How many of its slowest messages a consumer reports (worst_us: seq and latency). */
#define CUIPC_WORST_SAMPLES 8

/* One anonymous shared page, mapped before fork: progress for the bar, the producer's pid. */
typedef struct cuipc_run_shared {
    _Atomic uint64_t sent;      /* messages the producer sent successfully */
    _Atomic uint64_t attempted; /* messages it tried to send */
    _Atomic uint64_t received[CUIPC_MAX_CONSUMERS];
    _Atomic int producer_pid;
    _Atomic bool closing; /* the producer sent its last message: no new attach is served */
} cuipc_run_shared;

typedef struct cuipc_role_args {
    const cuipc_scenario *s;
    const char *run_dir;
    const char *socket_path;
    cuipc_run_shared *shared;
} cuipc_role_args;

int cuipc_role_producer(const cuipc_role_ctx *ctx, void *arg);
int cuipc_role_consumer(const cuipc_role_ctx *ctx, void *arg);

/* Probe child: GPU count and device facts, written to run_dir/probe.json. */
int cuipc_role_probe(const cuipc_role_ctx *ctx, void *arg);

#endif
