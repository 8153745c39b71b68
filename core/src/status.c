/* Status names and the thread-local "what and where" message. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error_internal.h"

static _Thread_local char last_error[CUIPC_ERROR_MSG_BYTES];

static const char *const status_names[CUIPC_STATUS_COUNT_] = {
    [CUIPC_OK] = "OK",
    [CUIPC_ERR_INVALID_ARG] = "INVALID_ARG",
    [CUIPC_ERR_NO_MEMORY] = "NO_MEMORY",
    [CUIPC_ERR_POOL_FULL] = "POOL_FULL",
    [CUIPC_ERR_TIMEOUT] = "TIMEOUT",
    [CUIPC_ERR_STALE] = "STALE",
    [CUIPC_ERR_DUPLICATE] = "DUPLICATE",
    [CUIPC_ERR_CORRUPT] = "CORRUPT",
    [CUIPC_ERR_UNKNOWN_POOL] = "UNKNOWN_POOL",
    [CUIPC_ERR_CUDA] = "CUDA",
    [CUIPC_ERR_NO_GPU] = "NO_GPU",
    [CUIPC_ERR_SYSTEM] = "SYSTEM",
    [CUIPC_ERR_PEER_DEAD] = "PEER_DEAD",
    [CUIPC_ERR_CLOSED] = "CLOSED",
    [CUIPC_ERR_UNSUPPORTED] = "UNSUPPORTED",
    [CUIPC_ERR_VERSION] = "VERSION",
    [CUIPC_ERR_PERMISSION] = "PERMISSION",
};

const char *cuipc_status_name(cuipc_status s) {
    if ((unsigned)s >= CUIPC_STATUS_COUNT_)
        return "UNKNOWN_STATUS";
    return status_names[s];
}

const char *cuipc_last_error(void) {
    return last_error;
}

void cuipc_clear_error(void) {
    last_error[0] = '\0';
}

void cuipc_error_save(cuipc_error_saved *out) {
    memcpy(out->msg, last_error, sizeof out->msg);
}

void cuipc_error_restore(const cuipc_error_saved *saved) {
    memcpy(last_error, saved->msg, sizeof last_error);
}

static void format_error(const char *func, const char *fmt, va_list ap, int err) {
    int n = snprintf(last_error, sizeof last_error, "%s: ", func);
    if (n < 0 || (size_t)n >= sizeof last_error)
        return;
    int m = vsnprintf(last_error + n, sizeof last_error - (size_t)n, fmt, ap);
    if (err && m >= 0 && (size_t)(n + m) < sizeof last_error)
        snprintf(last_error + n + m, sizeof last_error - (size_t)(n + m), ": %s", strerror(err));
}

cuipc_status cuipc_error_set(cuipc_status code, const char *func, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    format_error(func, fmt, ap, 0);
    va_end(ap);
    return code;
}

cuipc_status cuipc_error_errno(cuipc_status code, const char *func, const char *fmt, ...) {
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    format_error(func, fmt, ap, err);
    va_end(ap);
    errno = err;
    return code;
}
