/* Pin the calling process (CPU set and memory) with hwloc before it initialises CUDA, and
 * report the binding actually obtained. Refusals (EPERM in containers, ENOSYS) are warnings. */
#ifndef CUIPC_HARNESS_BINDING_H
#define CUIPC_HARNESS_BINDING_H

#include <stdbool.h>
#include <stdint.h>

#include "scenario.h"

typedef struct cuipc_binding_result {
    char how[32];        /* "gpu-local", "numa-by-index", "core-by-index", "explicit", "none" */
    char requested[256]; /* CPU list asked for */
    char cpuset[256];    /* CPU list obtained (hwloc_get_cpubind) */
    char nodeset[128];   /* memory nodes obtained (hwloc_get_membind) */
    bool cpu_bound, mem_bound;
    char warnings[512];
} cuipc_binding_result;

/* gpu_device < 0: no GPU to be near (the call then never touches CUDA). role_index orders
 * the roles (producer 0, consumer i -> i + 1) for the index-based choice. */
void cuipc_bind_self(cuipc_binding_policy policy, const char *explicit_cpus, int gpu_device,
                     uint32_t role_index, cuipc_binding_result *out);

#endif
