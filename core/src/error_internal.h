/* Internal error helpers: the public reporting macros (cuipc/error.h) and the saved message. */
#ifndef CUIPC_ERROR_INTERNAL_H
#define CUIPC_ERROR_INTERNAL_H

#include "cuipc/error.h"

/* Size of the thread-local message, terminator included: room for the harness's input errors,
 * a path of up to 1 KiB with its line, column, key path and what is wrong. */
#define CUIPC_ERROR_MSG_BYTES 1024

/* The thread-local message kept across clean-up work that may overwrite it: save it on the
 * failure, clean up, then fail with saved.msg (adding context) or put it back as it was. */
typedef struct cuipc_error_saved {
    char msg[CUIPC_ERROR_MSG_BYTES];
} cuipc_error_saved;
void cuipc_error_save(cuipc_error_saved *out);
void cuipc_error_restore(const cuipc_error_saved *saved);

#endif
