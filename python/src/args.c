/* Conversions of the arguments Python callers pass: timeouts, streams, unwrap kinds, devices. */
#include <math.h>
#include <string.h>

#include "ext.h"

int cuipc_py_args(const char *fname, const char *const *names, int n, int required,
                  PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **out) {
    for (int i = 0; i < n; i++)
        out[i] = NULL;
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname, n,
                     nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        out[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int i = 0;
        while (i < n && PyUnicode_CompareWithASCIIString(key, names[i]) != 0)
            i++;
        if (i == n) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                         key);
            return -1;
        }
        if (out[i]) {
            PyErr_Format(PyExc_TypeError, "argument for %s() given by name ('%s') and position",
                         fname, names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (int i = 0; i < required; i++)
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    return 0;
}

int cuipc_py_str_arg(const char *fname, const char *name, PyObject *o, const char *fallback,
                     const char **out) {
    if (!o) {
        *out = fallback;
        return 0;
    }
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s() argument '%s' must be str, not %s", fname, name,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    Py_ssize_t len;
    *out = PyUnicode_AsUTF8AndSize(o, &len);
    if (*out && strlen(*out) != (size_t)len) {
        PyErr_Format(PyExc_ValueError, "%s() argument '%s' holds a NUL character", fname, name);
        return -1;
    }
    return *out ? 0 : -1;
}

int cuipc_py_double_arg(PyObject *o, double fallback, double *out) {
    if (!o) {
        *out = fallback;
        return 0;
    }
    *out = PyFloat_AsDouble(o);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

int cuipc_py_us_to_ns(const char *fname, const char *name, double us, int64_t *ns) {
    /* Made nanoseconds in an int64: inf, nan or 1e20 would not convert. */
    if (!isfinite(us) || us > 9e12) {
        cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                           "%s: %s must be a finite number of microseconds below 9e12", fname,
                           name);
        return -1;
    }
    if (us >= 0)
        *ns = (int64_t)(us * 1000);
    return 0;
}

int cuipc_py_count_arg(const char *fname, const char *name, PyObject *o, uint64_t fallback,
                       uint64_t most, uint64_t *out) {
    if (!o || o == Py_None) {
        *out = fallback;
        return 0;
    }
    PyObject *i = PyBool_Check(o) ? NULL : PyNumber_Index(o); /* numpy ints too, not floats */
    unsigned long long v = i ? PyLong_AsUnsignedLongLong(i) : 0;
    Py_XDECREF(i);
    if (!i || (v == (unsigned long long)-1 && PyErr_Occurred()) || v > most) {
        PyErr_Clear();
        cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "%s: %s must be an int from 0 to %llu, not %R",
                           fname, name, (unsigned long long)most, o);
        return -1;
    }
    *out = v;
    return 0;
}

int cuipc_py_timeout(PyObject *o, int64_t fallback, int64_t *ns) {
    if (!o || o == Py_None) {
        *ns = fallback;
        return 0;
    }
    double s = PyFloat_AsDouble(o);
    if (s == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                           "timeout must be a number of seconds or None, not %s",
                           Py_TYPE(o)->tp_name);
        return -1;
    }
    if (!(s >= 0) || s > 9e9) {
        cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                           "timeout must be from 0 to 9e9 seconds (or None: no limit), not %R", o);
        return -1;
    }
    *ns = (int64_t)(s * 1e9);
    return 0;
}

/* torch's stream objects (torch.cuda.Stream, ExternalStream): their cuda_stream is the getter of
 * torch._C._CudaStreamBase over a stream fixed when the object is made, so an object's handle never
 * changes. The last few such objects are held with their handles: the same stream comes with every
 * send, unwrap and release, and the getter is a call into torch's library (about a microsecond when
 * the path has gone cold between messages). Any other object (a subclass overriding cuda_stream,
 * cupy's, an application's) is read every time. */
#define STREAM_CACHE_SLOTS 4
static struct {
    bool looked;      /* torch._C seen, its getter looked up (NULL: torch without CUDA) */
    PyObject *getter; /* torch._C._CudaStreamBase.cuda_stream, a getset descriptor */
    PyObject *obj[STREAM_CACHE_SLOTS];
    unsigned long long handle[STREAM_CACHE_SLOTS];
    unsigned next;
} torch_streams;

PyObject *cuipc_py_imported(const char *name, PyObject **interned) {
    if (!*interned && !(*interned = PyUnicode_InternFromString(name)))
        return PyErr_Clear(), NULL;
    PyObject *m = PyImport_GetModule(*interned);
    if (!m)
        PyErr_Clear();
    return m;
}

static PyObject *torch_stream_getter(PyObject *name) {
    if (torch_streams.looked)
        return torch_streams.getter;
    static PyObject *mod_name;
    PyObject *c = cuipc_py_imported("torch._C", &mod_name);
    if (!c)
        return NULL; /* torch not imported yet: look again later */
    PyObject *base = PyObject_GetAttrString(c, "_CudaStreamBase");
    PyObject *getter = base ? PyObject_GetAttr(base, name) : NULL;
    if (getter && Py_TYPE(getter) == &PyGetSetDescr_Type)
        torch_streams.getter = Py_NewRef(getter);
    PyErr_Clear();
    Py_XDECREF(getter);
    Py_XDECREF(base);
    Py_DECREF(c);
    torch_streams.looked = true;
    return torch_streams.getter;
}

/* Held when o's type reads cuda_stream through torch's own getter. */
static void remember_torch_stream(PyObject *o, PyObject *name, unsigned long long handle) {
    PyObject *getter = torch_stream_getter(name);
    if (!getter)
        return;
    PyObject *d = PyObject_GetAttr((PyObject *)Py_TYPE(o), name); /* the descriptor itself */
    PyErr_Clear();
    if (d == getter) {
        unsigned i = torch_streams.next++ % STREAM_CACHE_SLOTS;
        PyObject *old = torch_streams.obj[i];
        torch_streams.obj[i] = Py_NewRef(o);
        torch_streams.handle[i] = handle;
        Py_XDECREF(old);
    }
    Py_XDECREF(d);
}

int cuipc_py_stream(PyObject *o, cuipc_stream *out) {
    *out = NULL;
    if (!o || o == Py_None)
        return 0;
    for (int i = 0; i < STREAM_CACHE_SLOTS; i++)
        if (o == torch_streams.obj[i]) {
            *out = (cuipc_stream)(uintptr_t)torch_streams.handle[i];
            return 0;
        }
    /* One lookup with an interned name. */
    static PyObject *name;
    if (!name && !(name = PyUnicode_InternFromString("cuda_stream")))
        return -1;
    PyObject *handle = NULL;
    if (PyLong_Check(o)) {
        handle = Py_NewRef(o);
    } else {
        handle = PyObject_GetAttr(o, name); /* torch.cuda.Stream, cupy.cuda.Stream */
        if (!handle) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return -1;
            PyErr_Clear();
        }
    }
    if (!handle || !PyLong_Check(handle)) {
        Py_XDECREF(handle);
        cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                           "stream must be None, a CUDA stream handle (int) or a stream object "
                           "with .cuda_stream (torch.cuda.Stream), not %s",
                           Py_TYPE(o)->tp_name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(handle);
    Py_DECREF(handle);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "stream handle %R is not a valid address", o);
        return -1;
    }
    if (!PyLong_Check(o))
        remember_torch_stream(o, name, v);
    *out = (cuipc_stream)(uintptr_t)v;
    return 0;
}

int cuipc_py_unwrap_kind(const char *kind, cuipc_unwrap_kind *out) {
    if (!kind || !strcmp(kind, "copy")) {
        *out = CUIPC_UNWRAP_COPY;
        return 0;
    }
    if (!strcmp(kind, "borrow")) {
        *out = CUIPC_UNWRAP_BORROW;
        return 0;
    }
    cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "kind must be \"copy\" or \"borrow\", not \"%s\"",
                       kind);
    return -1;
}

int cuipc_py_device(PyObject *o, int32_t fallback, int32_t *out) {
    if (!o || o == Py_None) {
        *out = fallback;
        return 0;
    }
    if (PyLong_Check(o) && !PyBool_Check(o)) { /* True is not cuda:1 */
        long d = PyLong_AsLong(o);
        if (d == -1 && !PyErr_Occurred()) {
            *out = CUIPC_DEVICE_HOST;
            return 0;
        }
        if (d >= 0 && d < 1024) {
            *out = (int32_t)d;
            return 0;
        }
        PyErr_Clear();
    } else if (PyUnicode_Check(o)) {
        const char *s = PyUnicode_AsUTF8(o);
        int d;
        char end;
        if (s && !strcmp(s, "cpu")) {
            *out = CUIPC_DEVICE_HOST;
            return 0;
        }
        if (s && (!strcmp(s, "cuda") || sscanf(s, "cuda:%d%c", &d, &end) == 1)) {
            *out = strcmp(s, "cuda") ? d : 0;
            if (*out >= 0)
                return 0;
        }
    } else if (PyObject_HasAttrString(o, "type") && PyObject_HasAttrString(o, "index")) {
        /* torch.device */
        PyObject *str = PyObject_Str(o);
        int r = str ? cuipc_py_device(str, fallback, out) : -1;
        Py_XDECREF(str);
        return r;
    }
    PyErr_Clear();
    cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                       "device must be None, \"cpu\" (or -1), a CUDA ordinal or \"cuda:N\", not %R",
                       o);
    return -1;
}
