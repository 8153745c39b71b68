/* Python trees <-> cuipc value trees. Tensors come in through DLPack (torch, numpy, cupy, jax,
 * cuipc.Tensor) and go out as cuipc.Tensor. Errors name where in the tree the bad item is. */
#include <string.h>

#include "ext.h"

/* A consumed DLPack tensor, given back (its deleter called) when this capsule is freed. */
typedef struct taken {
    void *managed;
    bool versioned;
} taken;

static void taken_destructor(PyObject *cap) {
    taken *t = PyCapsule_GetPointer(cap, "cuipc.taken");
    if (!t)
        return;
    if (t->versioned) {
        DLManagedTensorVersioned *m = t->managed;
        if (m->deleter)
            m->deleter(m);
    } else {
        DLManagedTensor *m = t->managed;
        if (m->deleter)
            m->deleter(m);
    }
    PyMem_Free(t);
}

static int keep_taken(PyObject *keep, void *managed, bool versioned) {
    taken *t = PyMem_Malloc(sizeof *t);
    if (!t) {
        PyErr_NoMemory();
        return -1;
    }
    t->managed = managed;
    t->versioned = versioned;
    PyObject *cap = PyCapsule_New(t, "cuipc.taken", taken_destructor);
    if (!cap) {
        PyMem_Free(t);
        return -1;
    }
    int r = PyList_Append(keep, cap);
    Py_DECREF(cap);
    return r;
}

/* obj.__dlpack__(stream=..., max_version=(1, 0)), falling back to the pre-1.0 signature. */
static PyObject *call_dlpack(PyObject *obj, PyObject *stream) {
    PyObject *meth = PyObject_GetAttrString(obj, "__dlpack__");
    if (!meth)
        return NULL;
    PyObject *empty = PyTuple_New(0);
    PyObject *kw = Py_BuildValue("{s:O,s:(ii)}", "stream", stream, "max_version", 1, 0);
    PyObject *cap = empty && kw ? PyObject_Call(meth, empty, kw) : NULL;
    if (!cap && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        Py_DECREF(kw);
        kw = Py_BuildValue("{s:O}", "stream", stream);
        cap = kw ? PyObject_Call(meth, empty, kw) : NULL;
    }
    Py_XDECREF(kw);
    Py_XDECREF(empty);
    Py_DECREF(meth);
    return cap;
}

/* Row-major contiguity as PyTorch and DLPack define it: a tensor of 0 elements, and a dim of
 * extent 1, say nothing about layout, so their strides are not looked at (exporters such as
 * numpy 2.x give arbitrary strides there). */
static bool is_contiguous(int ndim, const int64_t *shape, const int64_t *strides) {
    if (!strides)
        return true;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0)
            return true;
    int64_t expect = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        if (shape[i] != 1 && strides[i] != expect)
            return false;
        expect *= shape[i];
    }
    return true;
}

/* The value of a tensor taken in (through DLPack or read from torch directly): refused unless
 * row-major contiguous; its strides are then the canonical ones. */
static cuipc_value *layout_value(const char *path, const cuipc_py_layout *l,
                                 const int64_t *strides) {
    if (!is_contiguous(l->ndim, l->shape, strides))
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                  "%s: the tensor is not contiguous: send .contiguous() (or "
                                  "numpy.ascontiguousarray) of it",
                                  path),
               NULL;
    cuipc_tensor t;
    memset(&t, 0, sizeof t);
    t.data = l->data;
    t.device = l->device;
    t.dtype = l->dtype;
    t.ndim = l->ndim;
    int64_t stride = 1;
    for (int i = l->ndim - 1; i >= 0; i--) {
        t.shape[i] = l->shape[i];
        t.strides[i] = stride;
        stride *= l->shape[i];
    }
    if (cuipc_tensor_validate(&t) != CUIPC_OK)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "%s: %s", path, cuipc_last_error()), NULL;
    cuipc_value *v = cuipc_value_tensor(&t, CUIPC_OWNER_NONE);
    if (!v)
        cuipc_py_raise(CUIPC_ERR_NO_MEMORY);
    return v;
}

/* A torch.Tensor read directly; NULL with no error raised: take it through DLPack. The tensor
 * itself is kept (as its DLPack export would be) for as long as the send needs it. */
static cuipc_value *tensor_value(PyObject *obj, const char *path, cuipc_stream stream,
                                 PyObject *keep);

static cuipc_value *torch_value(PyObject *obj, const char *path, cuipc_stream stream,
                                PyObject *keep) {
    cuipc_py_layout l;
    int r = cuipc_py_torch_tensor(obj, path, stream, &l);
    if (r == 2) {
        /* A lazy negation (z.conj().imag): torch's DLPack export gives its values unnegated, so
         * it is resolved first (a copy), kept for as long as the send needs it. */
        PyObject *resolved = PyObject_CallMethod(obj, "resolve_neg", NULL);
        if (!resolved || PyList_Append(keep, resolved) < 0) {
            Py_XDECREF(resolved);
            return NULL;
        }
        Py_DECREF(resolved);
        cuipc_value *v = torch_value(resolved, path, stream, keep);
        return v || PyErr_Occurred() ? v : tensor_value(resolved, path, stream, keep);
    }
    if (r <= 0 || PyList_Append(keep, obj) < 0)
        return NULL;
    return layout_value(path, &l, l.strides);
}

/* An exporter's call (__dlpack_device__, __dlpack__) raised an Exception: its own reason kept,
 * named with its place in the tree, as InvalidArgument; an error of cuipc's own (Stale: a
 * released borrow, a sent buffer) keeps its class. Always NULL. */
static cuipc_value *exporter_failed(const char *path, const char *call) {
    bool ours = cuipc_py_error_is_ours();
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *msg =
        ours ? PyUnicode_FromFormat("%s: %S", path, value ? value : Py_None)
             : PyUnicode_FromFormat("%s: %s failed: %S", path, call, value ? value : Py_None);
    if (msg) {
        PyErr_SetObject(ours ? type : cuipc_py_error_class(CUIPC_ERR_INVALID_ARG), msg);
        Py_DECREF(msg);
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return NULL;
}

static cuipc_value *tensor_value(PyObject *obj, const char *path, cuipc_stream stream,
                                 PyObject *keep) {
    /* Where the tensor lives decides the stream argument: CUDA tensors order their pending
     * work before our stream (1: the legacy default stream, which a NULL stream is). */
    PyObject *dev = PyObject_CallMethod(obj, "__dlpack_device__", NULL);
    int dev_type = 0, dev_id = 0;
    if (!dev || !PyArg_ParseTuple(dev, "ii", &dev_type, &dev_id)) {
        Py_XDECREF(dev);
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return NULL; /* Ctrl-C or an exit goes on as itself */
        if (!dev)        /* the exporter's own reason (torch on a meta tensor) */
            return exporter_failed(path, "__dlpack_device__");
        PyErr_Clear();
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "%s: __dlpack_device__ gave no (type, id)",
                                  path),
               NULL;
    }
    Py_DECREF(dev);
    PyObject *stream_arg = dev_type == kDLCUDA
                               ? PyLong_FromUnsignedLongLong(stream ? (uintptr_t)stream : 1)
                               : Py_NewRef(Py_None);
    PyObject *cap = stream_arg ? call_dlpack(obj, stream_arg) : NULL;
    Py_XDECREF(stream_arg);
    if (!cap) {
        /* Ctrl-C or an exit inside the exporter goes on as itself, never as a bad tensor; so
         * does a cuipc.Tensor's own refusal (Stale: a released borrow, a sent buffer). */
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return NULL;
        /* The exporter's own message (e.g. numpy on a non-writable or odd array). */
        return exporter_failed(path, "__dlpack__");
    }
    bool versioned = PyCapsule_IsValid(cap, "dltensor_versioned");
    if (!versioned && !PyCapsule_IsValid(cap, "dltensor")) {
        Py_DECREF(cap);
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                  "%s: __dlpack__ returned no DLPack capsule", path),
               NULL;
    }
    void *managed = PyCapsule_GetPointer(cap, versioned ? "dltensor_versioned" : "dltensor");
    /* Consumed: the capsule must not free it any more; keep_taken does, after the send. */
    PyCapsule_SetName(cap, versioned ? "used_dltensor_versioned" : "used_dltensor");
    Py_DECREF(cap);
    if (keep_taken(keep, managed, versioned) < 0)
        return NULL;
    const DLTensor *dl = versioned ? &((DLManagedTensorVersioned *)managed)->dl_tensor
                                   : &((DLManagedTensor *)managed)->dl_tensor;
    if (versioned && ((DLManagedTensorVersioned *)managed)->version.major > DLPACK_MAJOR_VERSION)
        return cuipc_py_raise_msg(CUIPC_ERR_VERSION, "%s: DLPack %u.x is newer than 1.x", path,
                                  ((DLManagedTensorVersioned *)managed)->version.major),
               NULL;
    cuipc_py_layout l;
    if (dl->device.device_type == kDLCPU || dl->device.device_type == kDLCUDAHost)
        l.device = CUIPC_DEVICE_HOST;
    else if (dl->device.device_type == kDLCUDA)
        l.device = dl->device.device_id;
    else
        return cuipc_py_raise_msg(
                   CUIPC_ERR_INVALID_ARG,
                   "%s: tensors on DLPack device type %d are not supported (CPU or CUDA only)",
                   path, dl->device.device_type),
               NULL;
    l.dtype = cuipc_py_dtype_from_dl(dl->dtype);
    if (l.dtype == CUIPC_DTYPE_INVALID)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                  "%s: dtype (code %d, %d bits, %d lanes) is not supported", path,
                                  dl->dtype.code, dl->dtype.bits, dl->dtype.lanes),
               NULL;
    if (dl->ndim < 0 || dl->ndim > CUIPC_MAX_DIMS)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "%s: %d dimensions (at most %d)", path,
                                  dl->ndim, CUIPC_MAX_DIMS),
               NULL;
    if (dl->ndim > 0 && !dl->shape)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                  "%s: a DLPack tensor of %d dimensions with no shape", path,
                                  dl->ndim),
               NULL;
    l.data = (char *)dl->data + dl->byte_offset;
    l.ndim = dl->ndim;
    if (dl->ndim > 0)
        memcpy(l.shape, dl->shape, (size_t)dl->ndim * sizeof *l.shape);
    return layout_value(path, &l, dl->strides);
}

static cuipc_value *convert(PyObject *o, const char *path, int depth, cuipc_stream stream,
                            PyObject *keep);

static cuipc_value *add_child(cuipc_value *parent, const char *key, PyObject *item,
                              const char *path, int depth, cuipc_stream stream, PyObject *keep) {
    char sub[256];
    if (key)
        snprintf(sub, sizeof sub, "%s[%.64s]", path, key);
    else
        snprintf(sub, sizeof sub, "%s[%zu]", path, cuipc_value_len(parent));
    cuipc_value *child = convert(item, sub, depth + 1, stream, keep);
    if (!child)
        return NULL;
    cuipc_status s = key ? cuipc_dict_set(parent, key, child) : cuipc_list_append(parent, child);
    if (s != CUIPC_OK)
        return cuipc_py_raise_msg(s, "%s: %s", sub, cuipc_last_error()), NULL;
    return parent;
}

/* As Python's own iteration says it: the tree is not sent. */
static void changed_while_sent(const char *path, const char *what) {
    PyErr_Format(PyExc_RuntimeError, "%s: the %s changed size while it was being sent", path, what);
}

/* A numpy scalar (np.int64, np.float32, np.bool_: image sizes and counts often are) as the
 * Python int, float or bool it holds, a new reference; NULL with no error raised: not one. */
static PyObject *numpy_scalar_value(PyObject *o) {
    if (strncmp(Py_TYPE(o)->tp_name, "numpy.", 6) != 0)
        return NULL;
    /* Only bool, int, uint and float kinds: a datetime64[ns] or timedelta64 gives an int from
     * item() too, which would drop its unit. */
    PyObject *dtype = PyObject_GetAttrString(o, "dtype");
    PyObject *kind = dtype ? PyObject_GetAttrString(dtype, "kind") : NULL;
    const char *k = kind && PyUnicode_Check(kind) ? PyUnicode_AsUTF8(kind) : NULL;
    bool numeric = k && strlen(k) == 1 && strchr("biuf", k[0]);
    Py_XDECREF(kind);
    Py_XDECREF(dtype);
    if (!numeric) {
        if (PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_Exception))
            PyErr_Clear(); /* no dtype: not a scalar; refused below by its type's name */
        return NULL;
    }
    PyObject *item = PyObject_CallMethod(o, "item", NULL);
    if (!item) {
        if (PyErr_ExceptionMatches(PyExc_Exception))
            PyErr_Clear(); /* not a scalar after all: refused below by its type's name */
        return NULL;       /* Ctrl-C goes on as itself */
    }
    if (PyLong_Check(item) || PyFloat_Check(item))
        return item;
    Py_DECREF(item); /* a datetime, a complex, bytes of a void: not sent */
    return NULL;
}

static cuipc_value *convert(PyObject *o, const char *path, int depth, cuipc_stream stream,
                            PyObject *keep) {
    if (depth > CUIPC_VALUE_MAX_DEPTH)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "%s: nested deeper than %d levels", path,
                                  CUIPC_VALUE_MAX_DEPTH),
               NULL;
    cuipc_value *v = NULL;
    PyObject *scalar;
    if (o == Py_None) {
        v = cuipc_value_null();
    } else if (PyBool_Check(o)) {
        v = cuipc_value_bool(o == Py_True);
    } else if (PyLong_Check(o)) {
        long long i = PyLong_AsLongLong(o);
        if (i == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                      "%s: integer %R does not fit in 64 bits", path, o),
                   NULL;
        }
        v = cuipc_value_int(i);
    } else if (PyFloat_Check(o)) {
        v = cuipc_value_float(PyFloat_AS_DOUBLE(o));
    } else if (PyUnicode_Check(o)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(o, &n);
        if (!s && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear(); /* named with its place in the tree, as a dict key's is */
            return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                      "%s: string is not valid UTF-8 (a lone surrogate)", path),
                   NULL;
        }
        if (!s)
            return NULL;
        if ((size_t)n != strlen(s))
            return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                      "%s: strings may not hold NUL characters", path),
                   NULL;
        if ((size_t)n > CUIPC_VALUE_MAX_STRING)
            return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "%s: string of %zd bytes (at most %u)",
                                      path, n, CUIPC_VALUE_MAX_STRING),
                   NULL;
        v = cuipc_value_string(s);
    } else if (PyBytes_Check(o) || PyByteArray_Check(o)) {
        const char *p = PyBytes_Check(o) ? PyBytes_AS_STRING(o) : PyByteArray_AS_STRING(o);
        Py_ssize_t n = PyBytes_Check(o) ? PyBytes_GET_SIZE(o) : PyByteArray_GET_SIZE(o);
        if ((size_t)n > CUIPC_VALUE_MAX_STRING)
            return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                      "%s: bytes of %zd (at most %u; send large data as a tensor)",
                                      path, n, CUIPC_VALUE_MAX_STRING),
                   NULL;
        v = cuipc_value_bytes(p, (size_t)n);
    } else if (PyDict_Check(o)) {
        v = cuipc_value_dict();
        PyObject *key, *item;
        Py_ssize_t pos = 0, size = PyDict_GET_SIZE(o);
        while (v && PyDict_Next(o, &pos, &key, &item)) {
            Py_ssize_t klen = 0;
            const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8AndSize(key, &klen) : NULL;
            if (!k || strlen(k) != (size_t)klen) {
                PyErr_Clear();
                cuipc_value_free(v);
                if (!PyUnicode_Check(key))
                    return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                              "%s: dict keys must be str, not %s", path,
                                              Py_TYPE(key)->tp_name),
                           NULL;
                return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "%s: dict key %R %s", path, key,
                                          k ? "holds a NUL character"
                                            : "is not valid UTF-8 (a lone surrogate)"),
                       NULL;
            }
            /* Held while converted: converting runs Python (__dlpack__), which may change
             * the dict under us (another thread, the exporter itself). */
            Py_INCREF(key);
            Py_INCREF(item);
            bool ok = add_child(v, k, item, path, depth, stream, keep) != NULL;
            Py_DECREF(key);
            Py_DECREF(item);
            if (ok && PyDict_GET_SIZE(o) != size) {
                changed_while_sent(path, "dict");
                ok = false;
            }
            if (!ok) {
                cuipc_value_free(v);
                return NULL;
            }
        }
    } else if (PyList_Check(o) || PyTuple_Check(o)) {
        v = cuipc_value_list();
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
        for (Py_ssize_t i = 0; v && i < n; i++) {
            if (PySequence_Fast_GET_SIZE(o) != n) { /* a list changed while converted */
                changed_while_sent(path, "list");
                cuipc_value_free(v);
                return NULL;
            }
            PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(o, i));
            bool ok = add_child(v, NULL, item, path, depth, stream, keep) != NULL;
            Py_DECREF(item);
            if (!ok) {
                cuipc_value_free(v);
                return NULL;
            }
        }
    } else if ((v = torch_value(o, path, stream, keep)) || PyErr_Occurred()) {
        return v;
    } else if (PyObject_HasAttrString(o, "__dlpack__")) {
        return tensor_value(o, path, stream, keep);
    } else if ((scalar = numpy_scalar_value(o)) || PyErr_Occurred()) {
        v = scalar ? convert(scalar, path, depth, stream, keep) : NULL;
        Py_XDECREF(scalar);
        return v;
    } else {
        return cuipc_py_raise_msg(
                   CUIPC_ERR_INVALID_ARG,
                   "%s: %s cannot be sent (dict, list, tuple, str, bytes, int, float, "
                   "bool, None or a tensor with __dlpack__)",
                   path, Py_TYPE(o)->tp_name),
               NULL;
    }
    if (!v && !PyErr_Occurred())
        cuipc_py_raise(CUIPC_ERR_NO_MEMORY);
    return v;
}

cuipc_value *cuipc_py_to_value(PyObject *tree, cuipc_stream stream, PyObject *keep) {
    return convert(tree, "tree", 0, stream, keep);
}

/* A dict key as a str, from a small cache: the same few keys come in every message, and a cached
 * one costs neither the decoding and allocation of a new str nor the dict's hashing of it (a str
 * keeps its hash). Not interned: interned strings can be immortal (CPython 3.12), and keys that
 * differ in every message would pile up. Decoding errors are PyUnicode_FromString's, as before. */
#define KEY_CACHE_SLOTS 64
#define KEY_CACHE_MAX_LEN 64

static PyObject *dict_key(const char *k) {
    static PyObject *cache[KEY_CACHE_SLOTS];
    uint32_t h = 2166136261u; /* FNV-1a */
    size_t n = 0;
    for (; k[n] && n <= KEY_CACHE_MAX_LEN; n++)
        h = (h ^ (unsigned char)k[n]) * 16777619u;
    if (n > KEY_CACHE_MAX_LEN)
        return PyUnicode_FromString(k);
    PyObject **slot = &cache[h % KEY_CACHE_SLOTS];
    if (*slot) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(*slot, &len);
        if (s && (size_t)len == n && memcmp(s, k, n) == 0)
            return Py_NewRef(*slot);
    }
    PyObject *key = PyUnicode_FromString(k);
    if (key) {
        PyObject *old = *slot;
        *slot = Py_NewRef(key);
        Py_XDECREF(old);
    }
    return key;
}

PyObject *cuipc_py_from_value(const cuipc_value *v, TreeObject *owner, tensor_origin origin,
                              cuipc_py_torch_order *torch) {
    switch (cuipc_value_kind_of(v)) {
    case CUIPC_VALUE_NULL:
        Py_RETURN_NONE;
    case CUIPC_VALUE_BOOL:
        return PyBool_FromLong(cuipc_value_as_bool(v));
    case CUIPC_VALUE_INT:
        return PyLong_FromLongLong(cuipc_value_as_int(v));
    case CUIPC_VALUE_FLOAT:
        return PyFloat_FromDouble(cuipc_value_as_float(v));
    case CUIPC_VALUE_STRING:
        return PyUnicode_DecodeUTF8(cuipc_value_as_string(v),
                                    (Py_ssize_t)strlen(cuipc_value_as_string(v)), "replace");
    case CUIPC_VALUE_BYTES: {
        size_t n = 0;
        const void *p = cuipc_value_as_bytes(v, &n);
        return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    }
    case CUIPC_VALUE_LIST: {
        size_t n = cuipc_value_len(v);
        PyObject *l = PyList_New((Py_ssize_t)n);
        for (size_t i = 0; l && i < n; i++) {
            PyObject *item = cuipc_py_from_value(cuipc_list_get(v, i), owner, origin, torch);
            if (!item) {
                Py_DECREF(l);
                return NULL;
            }
            PyList_SET_ITEM(l, (Py_ssize_t)i, item);
        }
        return l;
    }
    case CUIPC_VALUE_DICT: {
        size_t n = cuipc_value_len(v);
        PyObject *d = PyDict_New();
        for (size_t i = 0; d && i < n; i++) {
            PyObject *item = cuipc_py_from_value(cuipc_dict_value_at(v, i), owner, origin, torch);
            PyObject *key = item ? dict_key(cuipc_dict_key_at(v, i)) : NULL;
            if (!key || PyDict_SetItem(d, key, item) < 0) {
                Py_XDECREF(key);
                Py_XDECREF(item);
                Py_DECREF(d);
                return NULL;
            }
            Py_DECREF(key);
            Py_DECREF(item);
        }
        return d;
    }
    case CUIPC_VALUE_TENSOR:
        if (torch)
            return cuipc_py_torch_over(cuipc_value_as_tensor(v), (PyObject *)owner, torch);
        return cuipc_py_tensor_new(cuipc_value_as_tensor(v), origin, (PyObject *)owner);
    case CUIPC_VALUE_PROXY:
        break;
    }
    return cuipc_py_raise_msg(CUIPC_ERR_CORRUPT, "unwrapped tree still holds a %s node",
                              cuipc_value_kind_name(cuipc_value_kind_of(v)));
}
