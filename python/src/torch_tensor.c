/* torch.Tensor read directly (data_ptr, shape, stride, dtype, device) instead of through
 * __dlpack_device__ / __dlpack__, whose Python layers cost most of a small send. Only the cases
 * where the result is the one DLPack gives are taken here: an exact torch.Tensor (no subclass, no
 * torch function mode), strided layout, no grad, no conj or neg bit, a dtype that maps 1:1, on
 * the CPU or on the current CUDA device with a stream torch's __dlpack__ accepts. Everything else
 * goes through DLPack, which raises the exporter's own errors, but for a tensor with the negative
 * bit set (z.conj().imag): DLPack gives its values unnegated (torch 1.13) or refuses it (2.x),
 * so it is resolved first (convert.c) and its values sent.
 *
 * Each read is a call into torch's library, and with messages milliseconds apart each costs about
 * a microsecond of cold code, so the reads are the fewest that decide those cases: the conj bit is
 * not read, torch sets it on complex tensors only (TensorImpl::_set_conj asserts so) and no
 * complex dtype is in the table below. torch._C._to_dlpack in one call was measured slower: its
 * as_strided view goes through the dispatcher (1.5 us warm against 0.7 for the reads it would
 * replace, twice theirs cold). Where torch has the DLPack C exchange table (2.10 on), one C
 * call of it gives dtype, shape, strides, data pointer and device, and only the gate's four reads
 * (function mode, layout, grad, negative bit) stay calls into the bindings.
 *
 * Streams: torch's __dlpack__(stream=S) makes S wait for torch's current stream when they differ;
 * the same is done here with an event, so the send's copy-in and ready word, ordered on S, come
 * after the work queued on torch's current stream, as before. */
#include <cuda_runtime_api.h>
#include <string.h>

#include "ext.h"

static const struct {
    const char *name;
    cuipc_dtype d;
} torch_dtypes[] = {
    {"bool", CUIPC_DTYPE_BOOL},   {"uint8", CUIPC_DTYPE_U8},      {"int8", CUIPC_DTYPE_I8},
    {"int16", CUIPC_DTYPE_I16},   {"uint16", CUIPC_DTYPE_U16},    {"int32", CUIPC_DTYPE_I32},
    {"uint32", CUIPC_DTYPE_U32},  {"int64", CUIPC_DTYPE_I64},     {"uint64", CUIPC_DTYPE_U64},
    {"float16", CUIPC_DTYPE_F16}, {"bfloat16", CUIPC_DTYPE_BF16}, {"float32", CUIPC_DTYPE_F32},
    {"float64", CUIPC_DTYPE_F64},
};
#define N_DTYPES (sizeof torch_dtypes / sizeof torch_dtypes[0])

/* Looked up once, when the first object whose type is named "Tensor" comes by with torch
 * imported; held for the life of the process (torch is never unloaded). Anything missing (an
 * older torch) turns the direct read off: a slower send, never a different one. */
static struct {
    bool ready, unusable;
    bool no_stream_reader; /* cuipc_py_torch_ready failed once: CUDA tensors go to DLPack */
    PyTypeObject *tensor_type;
    PyObject *strided;
    PyObject *dtype[N_DTYPES];
    PyObject *mode_enabled; /* torch._C._is_torch_function_mode_enabled, where torch has it */
    PyObject *s_layout, *s_requires_grad, *s_dtype, *s_is_neg, *s_is_cuda, *s_is_cpu, *s_get_device,
        *s_shape, *s_stride, *s_data_ptr;
} tt;

static PyObject *intern(const char *s) {
    return PyUnicode_InternFromString(s);
}

static bool torch_init(void) {
    static PyObject *name;
    PyObject *torch = cuipc_py_imported("torch", &name);
    if (!torch)
        return false; /* not imported yet: no torch tensor can exist; look again later */
    tt.unusable = true;
    PyObject *type = PyObject_GetAttrString(torch, "Tensor");
    PyObject *c = PyObject_GetAttrString(torch, "_C");
    tt.strided = PyObject_GetAttrString(torch, "strided");
    if (type && PyType_Check(type) && c && tt.strided) {
        tt.tensor_type = (PyTypeObject *)type;
        type = NULL;
        for (size_t i = 0; i < N_DTYPES; i++) {
            tt.dtype[i] = PyObject_GetAttrString(torch, torch_dtypes[i].name);
            if (!tt.dtype[i])
                PyErr_Clear(); /* e.g. uint16 before torch 2.3 */
        }
        tt.mode_enabled = PyObject_GetAttrString(c, "_is_torch_function_mode_enabled");
        if (!tt.mode_enabled)
            PyErr_Clear();
        tt.s_layout = intern("layout");
        tt.s_requires_grad = intern("requires_grad");
        tt.s_dtype = intern("dtype");
        tt.s_is_neg = intern("is_neg");
        tt.s_is_cuda = intern("is_cuda");
        tt.s_is_cpu = intern("is_cpu");
        tt.s_get_device = intern("get_device");
        tt.s_shape = intern("shape");
        tt.s_stride = intern("stride");
        tt.s_data_ptr = intern("data_ptr");
        tt.unusable = !tt.s_data_ptr ||
                      !PyObject_HasAttr((PyObject *)tt.tensor_type, tt.s_is_neg) ||
                      !PyObject_HasAttr((PyObject *)tt.tensor_type, tt.s_is_cpu);
    }
    PyErr_Clear();
    Py_XDECREF(type);
    Py_XDECREF(c);
    Py_DECREF(torch);
    tt.ready = true;
    return !tt.unusable;
}

/* -1 error, 0 false, 1 true */
static int flag(PyObject *o, PyObject *name, bool call) {
    PyObject *v = call ? PyObject_CallMethodNoArgs(o, name) : PyObject_GetAttr(o, name);
    if (!v)
        return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

static bool int64_tuple(PyObject *o, int ndim, int64_t *out) {
    if (!o || !PyTuple_Check(o) || PyTuple_GET_SIZE(o) != ndim)
        return false;
    for (int i = 0; i < ndim; i++) {
        out[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(o, i));
        if (out[i] == -1 && PyErr_Occurred())
            return false;
    }
    return true;
}

/* torch's current stream on device (looked up as unwrap(torch=True) does), made to precede the
 * send's stream, as __dlpack__ does. */
static int order_after_torch(int device, cuipc_stream stream, const char *path) {
    cuipc_stream current;
    if (cuipc_py_torch_stream(device, &current) < 0)
        return -1;
    cudaStream_t from = (uintptr_t)current == 1 ? NULL : (cudaStream_t)current;
    cudaStream_t to = (uintptr_t)stream == 1 ? NULL : (cudaStream_t)stream;
    if (from == to)
        return 0;
    return cuipc_py_stream_wait(device, from, to, path);
}

/* The fast path's gate: each test that fails sends the tensor to DLPack (0); 2: a lazy
 * negation, to be resolved first. */
static int takes_fast_path(PyObject *o) {
    if (tt.mode_enabled) {
        PyObject *v = PyObject_CallNoArgs(tt.mode_enabled);
        int on = v ? PyObject_IsTrue(v) : -1;
        Py_XDECREF(v);
        if (on != 0)
            return on < 0 ? -1 : 0;
    }
    PyObject *layout = PyObject_GetAttr(o, tt.s_layout);
    if (!layout)
        return -1;
    Py_DECREF(layout);
    if (layout != tt.strided)
        return 0;
    int r = flag(o, tt.s_requires_grad, false);
    if (r != 0)
        return r < 0 ? -1 : 0;
    r = flag(o, tt.s_is_neg, true);
    return r < 0 ? -1 : r ? 2 : 1;
}

/* A CUDA tensor on the current device, with a stream torch's __dlpack__ accepts (not the
 * per-thread one): 1, the send's stream ordered after torch's current stream; 0: DLPack's turn. */
static int on_current_device(int32_t index, cuipc_stream stream, const char *path) {
    int current = -1;
    if ((uintptr_t)stream == 2 || cudaGetDevice(&current) != cudaSuccess || index != current)
        return 0;
    return order_after_torch((int)index, stream, path) < 0 ? -1 : 1;
}

static int device_of(PyObject *o, cuipc_stream stream, const char *path, int32_t *device) {
    int cuda = flag(o, tt.s_is_cuda, false);
    if (cuda <= 0) {
        int cpu = cuda < 0 ? -1 : flag(o, tt.s_is_cpu, false);
        *device = CUIPC_DEVICE_HOST;
        return cpu; /* not CPU either (meta, mps, xla...): DLPack's turn */
    }
    /* torch's DLPack reader or current-stream reader missing (a very old torch): DLPack's
     * turn, for the rest of the process (the lookup is not made again every send). */
    if (tt.no_stream_reader)
        return 0;
    if (!cuipc_py_torch_ready()) {
        PyErr_Clear();
        tt.no_stream_reader = true;
        return 0;
    }
    PyObject *d = PyObject_CallMethodNoArgs(o, tt.s_get_device);
    long index = d ? PyLong_AsLong(d) : -1;
    Py_XDECREF(d);
    if (PyErr_Occurred())
        return -1;
    *device = (int32_t)index;
    return on_current_device(*device, stream, path);
}

/* The layout in one call of torch's exchange table (torch_exchange.c) in place of the reads
 * below. What the reads would send to DLPack goes there too: a dtype outside the table, a device
 * other than the CPU or the current GPU. The call fails where torch cannot describe the tensor
 * that way (no data pointer, a dtype or device DLPack has no code for), and DLPack's export then
 * says why in torch's words. */
static int read_through_exchange(const DLPackExchangeAPI *x, PyObject *o, const char *path,
                                 cuipc_stream stream, cuipc_py_layout *out) {
    DLTensor dl;
    if (x->dltensor_from_py_object_no_sync(o, &dl) != 0) {
        PyErr_Clear();
        return 0;
    }
    out->dtype = cuipc_py_dtype_from_dl(dl.dtype);
    if (out->dtype == CUIPC_DTYPE_INVALID || dl.ndim < 0 || dl.ndim > CUIPC_MAX_DIMS ||
        (dl.ndim > 0 && (!dl.shape || !dl.strides)))
        return 0;
    out->ndim = dl.ndim;
    for (int i = 0; i < dl.ndim; i++) {
        out->shape[i] = dl.shape[i];
        out->strides[i] = dl.strides[i];
    }
    out->data = (char *)dl.data + dl.byte_offset;
    if (dl.device.device_type == kDLCPU) {
        out->device = CUIPC_DEVICE_HOST;
        return 1;
    }
    if (dl.device.device_type != kDLCUDA)
        return 0;
    out->device = dl.device.device_id;
    return on_current_device(out->device, stream, path);
}

int cuipc_py_torch_tensor(PyObject *o, const char *path, cuipc_stream stream,
                          cuipc_py_layout *out) {
    if (tt.ready ? tt.unusable || Py_TYPE(o) != tt.tensor_type
                 : strcmp(Py_TYPE(o)->tp_name, "Tensor") != 0 || !torch_init() ||
                       Py_TYPE(o) != tt.tensor_type)
        return 0;
    int r = takes_fast_path(o);
    if (r <= 0 || r == 2)
        return r;
    const DLPackExchangeAPI *x = cuipc_py_torch_exchange();
    if (x && x->dltensor_from_py_object_no_sync)
        return read_through_exchange(x, o, path, stream, out);
    PyObject *dtype = PyObject_GetAttr(o, tt.s_dtype);
    if (!dtype)
        return -1;
    Py_DECREF(dtype);
    out->dtype = CUIPC_DTYPE_INVALID;
    for (size_t i = 0; i < N_DTYPES; i++)
        if (tt.dtype[i] == dtype)
            out->dtype = torch_dtypes[i].d;
    if (out->dtype == CUIPC_DTYPE_INVALID)
        return 0;
    PyObject *shape = PyObject_GetAttr(o, tt.s_shape);
    if (!shape)
        return -1;
    Py_ssize_t ndim = PyTuple_Check(shape) ? PyTuple_GET_SIZE(shape) : -1;
    if (ndim < 0 || ndim > CUIPC_MAX_DIMS) {
        Py_DECREF(shape);
        return 0;
    }
    out->ndim = (int)ndim;
    PyObject *stride = PyObject_CallMethodNoArgs(o, tt.s_stride);
    bool ok =
        int64_tuple(shape, out->ndim, out->shape) && int64_tuple(stride, out->ndim, out->strides);
    Py_DECREF(shape);
    Py_XDECREF(stride);
    if (!ok)
        return PyErr_Occurred() ? -1 : 0;
    /* Last: a CUDA tensor orders the send's stream here, once nothing else can refuse it. */
    PyObject *ptr = PyObject_CallMethodNoArgs(o, tt.s_data_ptr);
    out->data = ptr ? PyLong_AsVoidPtr(ptr) : NULL;
    Py_XDECREF(ptr);
    if (!ptr || PyErr_Occurred())
        return -1;
    return device_of(o, stream, path, &out->device);
}
