/* Internal error helpers: set the thread-local message and return the code in one step. */
#ifndef CUIPC_ERROR_INTERNAL_H
#define CUIPC_ERROR_INTERNAL_H

#include "cuipc/status.h"

/* Record "func: message" for cuipc_last_error() and return code. */
cuipc_status cuipc_error_set(cuipc_status code, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Same, appending ": strerror(errno)". */
cuipc_status cuipc_error_errno(cuipc_status code, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Size of the thread-local message, terminator included. */
#define CUIPC_ERROR_MSG_BYTES 512

/* The thread-local message kept across clean-up work that may overwrite it: save it on the
 * failure, clean up, then fail with saved.msg (adding context) or put it back as it was. */
typedef struct cuipc_error_saved {
    char msg[CUIPC_ERROR_MSG_BYTES];
} cuipc_error_saved;
void cuipc_error_save(cuipc_error_saved *out);
void cuipc_error_restore(const cuipc_error_saved *saved);

#define CUIPC_FAIL(code, ...) cuipc_error_set((code), __func__, __VA_ARGS__)
#define CUIPC_FAIL_ERRNO(...) cuipc_error_errno(CUIPC_ERR_SYSTEM, __func__, __VA_ARGS__)

/* Propagate a non-OK status unchanged (its message is already set). */
#define CUIPC_TRY(expr)                                                                            \
    do {                                                                                           \
        cuipc_status cuipc_try_s_ = (expr);                                                        \
        if (cuipc_try_s_ != CUIPC_OK)                                                              \
            return cuipc_try_s_;                                                                   \
    } while (0)

#endif
