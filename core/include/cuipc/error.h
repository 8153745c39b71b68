/* Reporting through cuipc's own channel: code built on cuipc (the harness's planner) fails with
 * a cuipc_status and a "where: what" message that cuipc_last_error() returns, like the library. */
#ifndef CUIPC_ERROR_H
#define CUIPC_ERROR_H

#include "cuipc/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CUIPC_PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define CUIPC_PRINTF_LIKE(fmt, args)
#endif

/* Record "where: message" for cuipc_last_error() and return code. */
cuipc_status cuipc_error_set(cuipc_status code, const char *where, const char *fmt, ...)
    CUIPC_PRINTF_LIKE(3, 4);

/* Same, appending ": strerror(errno)". */
cuipc_status cuipc_error_errno(cuipc_status code, const char *where, const char *fmt, ...)
    CUIPC_PRINTF_LIKE(3, 4);

#define CUIPC_FAIL(code, ...) cuipc_error_set((code), __func__, __VA_ARGS__)
#define CUIPC_FAIL_ERRNO(...) cuipc_error_errno(CUIPC_ERR_SYSTEM, __func__, __VA_ARGS__)

/* Propagate a non-OK status unchanged (its message is already set). */
#define CUIPC_TRY(expr)                                                                            \
    do {                                                                                           \
        cuipc_status cuipc_try_s_ = (expr);                                                        \
        if (cuipc_try_s_ != CUIPC_OK)                                                              \
            return cuipc_try_s_;                                                                   \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
