/* Calls that may wait long (recv, accept, drain; send, wrap and buffer in producer.c) are made in
 * slices of at most 200 ms with the GIL released, and the interpreter's signal handlers run between
 * them: a worker blocked in recv() with no timeout still stops on Ctrl-C or its SIGTERM handler. A
 * slice that times out before the caller's own timeout is followed by the next; the last one's
 * Timeout says how long the whole wait was. A handler that closed the object (usable() false) ends
 * it with Closed. */
#include <time.h>
#include <unistd.h>

#include "ext.h"

#define SLICE_NS CUIPC_PY_SLICE_NS

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000ll + t.tv_nsec;
}

int64_t cuipc_py_next_slice(int64_t left_ns) {
    return left_ns < 0 || left_ns > SLICE_NS ? SLICE_NS : left_ns;
}

int cuipc_py_wait(PyObject *owner, int *in_calls, bool (*usable)(PyObject *owner), const char *what,
                  int64_t timeout_ns, cuipc_py_wait_fn fn, void *ctx, cuipc_status *s) {
    int64_t start = now_ns();
    for (;;) {
        int64_t spent = now_ns() - start;
        int64_t left = timeout_ns < 0 ? -1 : timeout_ns > spent ? timeout_ns - spent : 0;
        int64_t slice = cuipc_py_next_slice(left);
        bool last = left >= 0 && slice == left;
        (*in_calls)++;
        PyThreadState *ts = PyEval_SaveThread();
        *s = fn(ctx, slice, last);
        PyEval_RestoreThread(ts);
        (*in_calls)--;
        if (*s != CUIPC_ERR_TIMEOUT)
            return 0;
        if (last)
            return cuipc_py_raise_timed_out(*s, timeout_ns, slice);
        if (cuipc_py_between_slices(owner, usable, what) < 0)
            return -1;
    }
}

int cuipc_py_between_slices(PyObject *owner, bool (*usable)(PyObject *owner), const char *what) {
    if (PyErr_CheckSignals() < 0)
        return -1;
    if (!usable(owner)) {
        cuipc_py_raise_msg(CUIPC_ERR_CLOSED, "%s: closed while it waited", what);
        return -1;
    }
    return 0;
}

int cuipc_py_raise_timed_out(cuipc_status s, int64_t whole_ns, int64_t last_slice_ns) {
    if (last_slice_ns != whole_ns) /* the message names the last slice's wait only */
        cuipc_py_raise_msg(CUIPC_ERR_TIMEOUT, "%s (%lld ms in all)", cuipc_last_error(),
                           (long long)(whole_ns / 1000000));
    else
        cuipc_py_raise(s);
    return -1;
}

int cuipc_py_wait_for_calls(const int *in_calls, const char *what, int64_t limit_ns) {
    int64_t start = now_ns();
    while (*in_calls) { /* changed only under the GIL: read with it held */
        if (limit_ns >= 0 && now_ns() - start > limit_ns) {
            cuipc_py_raise_msg(CUIPC_ERR_TIMEOUT,
                               "close: %d call(s) on other threads on this %s had not returned "
                               "after %lld ms; closed to new calls, it is torn down when "
                               "collected or closed again",
                               *in_calls, what, (long long)(limit_ns / 1000000));
            return -1;
        }
        Py_BEGIN_ALLOW_THREADS usleep(100);
        Py_END_ALLOW_THREADS
    }
    return 0;
}
