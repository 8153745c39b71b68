/* hwloc binding of the calling process. */
#include "binding.h"

#include <errno.h>
#include <hwloc.h>
#include <hwloc/cudart.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 2, 3))) static void warn(cuipc_binding_result *r, const char *fmt,
                                                       ...) {
    size_t n = strlen(r->warnings);
    if (n > 0 && n + 2 < sizeof r->warnings) {
        memcpy(r->warnings + n, "; ", 3);
        n += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->warnings + n, sizeof r->warnings - n, fmt, ap);
    va_end(ap);
}

/* Choose the CPU set: near the GPU, else a NUMA node or a core picked by the role index. */
static bool choose(hwloc_topology_t topo, cuipc_binding_policy policy, const char *explicit_cpus,
                   int gpu_device, uint32_t role_index, hwloc_bitmap_t set,
                   cuipc_binding_result *r) {
    if (policy == CUIPC_BIND_EXPLICIT) {
        snprintf(r->how, sizeof r->how, "explicit");
        if (hwloc_bitmap_list_sscanf(set, explicit_cpus) != 0 || hwloc_bitmap_iszero(set)) {
            warn(r, "explicit CPU list '%s' is not valid", explicit_cpus);
            return false;
        }
        hwloc_bitmap_and(set, set, hwloc_topology_get_allowed_cpuset(topo));
        if (hwloc_bitmap_iszero(set)) {
            warn(r, "explicit CPU list '%s' names no CPU this process may use", explicit_cpus);
            return false;
        }
        return true;
    }
    if (gpu_device >= 0) {
        if (hwloc_cudart_get_device_cpuset(topo, gpu_device, set) == 0 &&
            !hwloc_bitmap_iszero(set)) {
            hwloc_bitmap_and(set, set, hwloc_topology_get_allowed_cpuset(topo));
            if (!hwloc_bitmap_iszero(set)) {
                snprintf(r->how, sizeof r->how, "gpu-local");
                return true;
            }
        }
        warn(r, "no CPU locality for GPU %d (%s): chose by index", gpu_device, strerror(errno));
    }
    int nodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    if (nodes > 1) {
        hwloc_obj_t node =
            hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, (unsigned)role_index % (unsigned)nodes);
        hwloc_bitmap_copy(set, node->cpuset);
        snprintf(r->how, sizeof r->how, "numa-by-index");
        return true;
    }
    int cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    hwloc_obj_t core = cores > 0 ? hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE,
                                                         (unsigned)role_index % (unsigned)cores)
                                 : NULL;
    if (core == NULL) {
        warn(r, "topology has no cores");
        return false;
    }
    hwloc_bitmap_copy(set, core->cpuset);
    snprintf(r->how, sizeof r->how, "core-by-index");
    return true;
}

void cuipc_bind_self(cuipc_binding_policy policy, const char *explicit_cpus, int gpu_device,
                     uint32_t role_index, cuipc_binding_result *r) {
    memset(r, 0, sizeof *r);
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) != 0 || hwloc_topology_load(topo) != 0) {
        snprintf(r->how, sizeof r->how, "none");
        warn(r, "hwloc topology load failed: %s", strerror(errno));
        return;
    }
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    hwloc_bitmap_t nodes = hwloc_bitmap_alloc();
    if (policy == CUIPC_BIND_NONE) {
        snprintf(r->how, sizeof r->how, "none");
    } else if (choose(topo, policy, explicit_cpus, gpu_device, role_index, set, r)) {
        hwloc_bitmap_list_snprintf(r->requested, sizeof r->requested, set);
        if (hwloc_set_cpubind(topo, set, HWLOC_CPUBIND_PROCESS) == 0)
            r->cpu_bound = true;
        else
            warn(r, "CPU binding to %s refused: %s", r->requested, strerror(errno));
        /* Memory of the nodes local to those CPUs; BYNODESET since the PROCESS flag gives
         * ENOSYS on Linux. */
        hwloc_cpuset_to_nodeset(topo, set, nodes);
        if (hwloc_set_membind(topo, nodes, HWLOC_MEMBIND_BIND, HWLOC_MEMBIND_BYNODESET) == 0)
            r->mem_bound = true;
        else
            warn(r, "memory binding refused: %s", strerror(errno));
    }
    if (hwloc_get_cpubind(topo, set, HWLOC_CPUBIND_PROCESS) == 0)
        hwloc_bitmap_list_snprintf(r->cpuset, sizeof r->cpuset, set);
    else
        warn(r, "cannot read the CPU binding: %s", strerror(errno));
    hwloc_membind_policy_t mp;
    if (hwloc_get_membind(topo, nodes, &mp, HWLOC_MEMBIND_BYNODESET) == 0)
        hwloc_bitmap_list_snprintf(r->nodeset, sizeof r->nodeset, nodes);
    hwloc_bitmap_free(set);
    hwloc_bitmap_free(nodes);
    hwloc_topology_destroy(topo);
}
