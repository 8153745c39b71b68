/* cuipc.Error and one subclass per status, each carrying cuipc_last_error()'s text. */
#include <stdarg.h>

#include "ext.h"

static PyObject *error_base;
static PyObject *error_class[CUIPC_STATUS_COUNT_];

static const struct {
    cuipc_status status;
    const char *name;
    const char *doc;
} classes[] = {
    {CUIPC_ERR_INVALID_ARG, "InvalidArgument",
     "Something impossible was asked (bad type, value, device, layout)."},
    {CUIPC_ERR_NO_MEMORY, "NoMemory", "A host allocation failed."},
    {CUIPC_ERR_POOL_FULL, "PoolFull", "No room in the pool (or no consumer place) for this."},
    {CUIPC_ERR_TIMEOUT, "Timeout", "A bounded wait ran out."},
    {CUIPC_ERR_STALE, "Stale", "The chunk or buffer was recycled, sent or released already."},
    {CUIPC_ERR_DUPLICATE, "Duplicate", "Released, adopted or sent a second time."},
    {CUIPC_ERR_CORRUPT, "Corrupt", "Malformed or forged message bytes."},
    {CUIPC_ERR_UNKNOWN_POOL, "UnknownPool",
     "The message names a pool this consumer does not know."},
    {CUIPC_ERR_CUDA, "CudaError", "A CUDA call failed."},
    {CUIPC_ERR_NO_GPU, "NoGpu", "The operation needs a GPU and none is usable."},
    {CUIPC_ERR_SYSTEM, "SystemFailure", "An OS call failed (errno in the message)."},
    {CUIPC_ERR_PEER_DEAD, "PeerDead",
     "The process on the other side exited (or none is attached)."},
    {CUIPC_ERR_CLOSED, "Closed", "The producer, channel or pool was shut down."},
    {CUIPC_ERR_UNSUPPORTED, "Unsupported", "A valid request this build or device cannot do."},
    {CUIPC_ERR_VERSION, "VersionMismatch", "Wire or shared-memory layout version mismatch."},
    {CUIPC_ERR_PERMISSION, "PermissionDenied",
     "The peer's credentials (uid, gid) are not among those allowed."},
};

/* Python's own classes the cuipc ones also derive from, so generic handlers catch them too. */
static PyObject *builtin_base(cuipc_status s) {
    switch (s) {
    case CUIPC_ERR_INVALID_ARG:
        return PyExc_ValueError;
    case CUIPC_ERR_NO_MEMORY:
        return PyExc_MemoryError;
    case CUIPC_ERR_TIMEOUT:
        return PyExc_TimeoutError;
    case CUIPC_ERR_PERMISSION:
        return PyExc_PermissionError;
    case CUIPC_ERR_UNSUPPORTED: /* what the array API's __dlpack__ raises for what it can't do */
        return PyExc_BufferError;
    default:
        return NULL;
    }
}

int cuipc_py_errors_init(PyObject *module) {
    PyObject *dict = Py_BuildValue("{s:s}", "status", "ERROR");
    error_base = PyErr_NewExceptionWithDoc("cuipc.Error",
                                           "Base of every cuipc error. `status` is the cuipc "
                                           "status name, str(e) the library's message.",
                                           NULL, dict);
    Py_XDECREF(dict);
    if (!error_base || PyModule_AddObjectRef(module, "Error", error_base) < 0)
        return -1;
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        char qualified[64];
        snprintf(qualified, sizeof qualified, "cuipc.%s", classes[i].name);
        PyObject *extra = builtin_base(classes[i].status);
        PyObject *bases = extra ? PyTuple_Pack(2, error_base, extra) : PyTuple_Pack(1, error_base);
        PyObject *attrs = Py_BuildValue("{s:s}", "status", cuipc_status_name(classes[i].status));
        PyObject *cls = bases && attrs
                            ? PyErr_NewExceptionWithDoc(qualified, classes[i].doc, bases, attrs)
                            : NULL;
        Py_XDECREF(bases);
        Py_XDECREF(attrs);
        if (!cls || PyModule_AddObjectRef(module, classes[i].name, cls) < 0)
            return -1;
        error_class[classes[i].status] = cls;
    }
    return 0;
}

static PyObject *class_of(cuipc_status s) {
    if ((int)s > 0 && s < CUIPC_STATUS_COUNT_ && error_class[s])
        return error_class[s];
    return error_base;
}

PyObject *cuipc_py_error_class(cuipc_status s) {
    return class_of(s);
}

bool cuipc_py_error_is_ours(void) {
    return error_base && PyErr_ExceptionMatches(error_base);
}

PyObject *cuipc_py_raise(cuipc_status s) {
    const char *msg = cuipc_last_error();
    PyErr_SetString(class_of(s), msg && *msg ? msg : cuipc_status_name(s));
    return NULL;
}

PyObject *cuipc_py_raise_msg(cuipc_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (msg) {
        PyErr_SetObject(class_of(s), msg);
        Py_DECREF(msg);
    }
    return NULL;
}
