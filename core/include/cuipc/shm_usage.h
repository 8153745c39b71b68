/* Shared memory this process maps, for leak checks in tests, the harness and soak runs. Not part
 * of the transport: the umbrella cuipc.h leaves it out. */
#ifndef CUIPC_SHM_USAGE_H
#define CUIPC_SHM_USAGE_H

#include <stdint.h>

#include "cuipc/base.h"
#include "cuipc/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of the calling process's shared mappings of memfds (the transport's pools, sync tables
 * and rings), /dev/shm files and SysV segments, by mapping size: a leaked ring counts whether or
 * not its pages were touched, and other processes' files in /dev/shm do not count. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_shm_mapped_bytes(uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif
