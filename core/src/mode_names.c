/* Names of transport modes as scenarios and results spell them (the reference's strings). */
#include <string.h>

#include "cuipc/transport.h"
#include "error_internal.h"

static const char *const mode_names[] = {
    [CUIPC_MODE_DEFAULT] = "default",
    [CUIPC_MODE_CUDA_IPC] = "cuda_ipc",
    [CUIPC_MODE_CUDA_IPC_POOL] = "cuda_ipc_pool",
};

const char *cuipc_mode_name(cuipc_mode m) {
    if ((unsigned)m >= sizeof mode_names / sizeof mode_names[0])
        return "invalid";
    return mode_names[m];
}

cuipc_status cuipc_mode_from_name(const char *name, cuipc_mode *out) {
    for (unsigned i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++) {
        if (name && !strcmp(name, mode_names[i])) {
            *out = (cuipc_mode)i;
            return CUIPC_OK;
        }
    }
    return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                      "unknown mode '%s' (expected default, cuda_ipc or cuda_ipc_pool)",
                      name ? name : "(null)");
}
