/* The probe child: the supervisor must never touch CUDA, so a child asks about GPUs. */
#include <stdio.h>

#include "role_common.h"

int cuipc_role_probe(const cuipc_role_ctx *ctx, void *arg) {
    const cuipc_role_args *a = arg;
    int n = cuipc_gpu_count();
    json_t *devs = json_array();
    int driver = 0, runtime = 0;
    for (int d = 0; d < n; d++) {
        cuipc_gpu_info info;
        if (cuipc_gpu_info_get(d, &info) != CUIPC_OK)
            continue;
        driver = info.driver_version;
        runtime = info.runtime_version;
        json_array_append_new(devs,
                              json_pack("{s:i, s:s, s:s, s:s, s:I}", "index", d, "name", info.name,
                                        "uuid", info.uuid, "pci_bus_id", info.pci_bus_id,
                                        "total_bytes", (json_int_t)info.total_bytes));
    }
    json_t *out = json_pack("{s:b, s:i, s:o, s:i, s:i}", "present", n > 0, "count", n, "devices",
                            devs, "driver_version", driver, "runtime_version", runtime);
    bool ok = cuipc_role_write(a->run_dir, "probe", 0, out);
    json_decref(out);
    cuipc_role_ready(ctx);
    cuipc_role_wait_go(ctx, 10000);
    return ok ? 0 : 1;
}
