/* Shared memory this process maps, read from /proc/self/maps (see cuipc/shm_usage.h). */
#include <stdio.h>
#include <string.h>

#include "cuipc/shm_usage.h"
#include "error_internal.h"

cuipc_status cuipc_shm_mapped_bytes(uint64_t *out) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return CUIPC_FAIL_ERRNO("/proc/self/maps");
    char line[1024];
    uint64_t sum = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[3] != 's')
            continue;
        if (strstr(line, "/memfd:") || strstr(line, "/dev/shm/") || strstr(line, "/SYSV"))
            sum += hi - lo;
    }
    fclose(f);
    *out = sum;
    return CUIPC_OK;
}
