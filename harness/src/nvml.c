/* Per-process GPU memory from NVML, loaded with dlopen: the toolkit ships no nvml.h and hosts
 * without a driver have no libnvidia-ml, so nothing may depend on it at link time. */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "leak.h"

/* The few NVML declarations we need (ABI of nvmlProcessInfo_t used by the _v3 entry point). */
typedef void *cuipc_nvml_device;
typedef struct cuipc_nvml_process_info {
    unsigned int pid;
    unsigned long long used_gpu_memory;
    unsigned int gpu_instance_id;
    unsigned int compute_instance_id;
} cuipc_nvml_process_info;

typedef int (*nvml_init_fn)(void);
typedef int (*nvml_by_bus_fn)(const char *, cuipc_nvml_device *);
typedef int (*nvml_procs_fn)(cuipc_nvml_device, unsigned int *, cuipc_nvml_process_info *);

#define CUIPC_NVML_SUCCESS 0
#define CUIPC_NVML_INSUFFICIENT_SIZE 7

static struct {
    bool tried, ok;
    nvml_by_bus_fn by_bus;
    nvml_procs_fn procs;
} cuipc_nvml;

static bool nvml_load(void) {
    if (cuipc_nvml.tried)
        return cuipc_nvml.ok;
    cuipc_nvml.tried = true;
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return false;
    nvml_init_fn init = (nvml_init_fn)dlsym(lib, "nvmlInit_v2");
    cuipc_nvml.by_bus = (nvml_by_bus_fn)dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2");
    cuipc_nvml.procs = (nvml_procs_fn)dlsym(lib, "nvmlDeviceGetComputeRunningProcesses_v3");
    cuipc_nvml.ok = init != NULL && cuipc_nvml.by_bus != NULL && cuipc_nvml.procs != NULL &&
                    init() == CUIPC_NVML_SUCCESS;
    return cuipc_nvml.ok;
}

bool cuipc_nvml_process_bytes(const char *pci_bus_id, int pid, double *bytes) {
    if (pci_bus_id == NULL || pci_bus_id[0] == '\0' || !nvml_load())
        return false;
    cuipc_nvml_device dev;
    if (cuipc_nvml.by_bus(pci_bus_id, &dev) != CUIPC_NVML_SUCCESS)
        return false;
    cuipc_nvml_process_info info[64];
    unsigned int n = 64;
    int rc = cuipc_nvml.procs(dev, &n, info);
    if (rc != CUIPC_NVML_SUCCESS)
        return false;
    for (unsigned int i = 0; i < n; i++) {
        if ((int)info[i].pid == pid) {
            *bytes = (double)info[i].used_gpu_memory;
            return true;
        }
    }
    return false;
}
