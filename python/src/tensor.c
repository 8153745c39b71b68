/* cuipc.Tensor: a tensor handed out by the transport (unwrapped copy or borrow, or a pool buffer
 * to fill), exported without a copy through DLPack (__dlpack__ / __dlpack_device__). */
#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

#include "ext.h"

static const struct {
    cuipc_dtype d;
    DLDataType dl;
} dtypes[] = {
    {CUIPC_DTYPE_BOOL, {kDLBool, 8, 1}},    {CUIPC_DTYPE_U8, {kDLUInt, 8, 1}},
    {CUIPC_DTYPE_I8, {kDLInt, 8, 1}},       {CUIPC_DTYPE_I16, {kDLInt, 16, 1}},
    {CUIPC_DTYPE_U16, {kDLUInt, 16, 1}},    {CUIPC_DTYPE_I32, {kDLInt, 32, 1}},
    {CUIPC_DTYPE_U32, {kDLUInt, 32, 1}},    {CUIPC_DTYPE_I64, {kDLInt, 64, 1}},
    {CUIPC_DTYPE_U64, {kDLUInt, 64, 1}},    {CUIPC_DTYPE_F16, {kDLFloat, 16, 1}},
    {CUIPC_DTYPE_BF16, {kDLBfloat, 16, 1}}, {CUIPC_DTYPE_F32, {kDLFloat, 32, 1}},
    {CUIPC_DTYPE_F64, {kDLFloat, 64, 1}},
};

bool cuipc_py_dtype_to_dl(cuipc_dtype d, DLDataType *out) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].d == d) {
            *out = dtypes[i].dl;
            return true;
        }
    return false;
}

cuipc_dtype cuipc_py_dtype_from_dl(DLDataType t) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dl.code == t.code && dtypes[i].dl.bits == t.bits && t.lanes == 1)
            return dtypes[i].d;
    return CUIPC_DTYPE_INVALID;
}

PyObject *cuipc_py_tensor_new(const cuipc_tensor *t, tensor_origin origin, PyObject *owner) {
    TensorObject *self = PyObject_New(TensorObject, &TensorType);
    if (!self)
        return NULL;
    self->t = *t;
    self->origin = origin;
    self->owner = Py_NewRef(owner);
    self->buffer_id = 0;
    return (PyObject *)self;
}

/* A buffer dropped unsent (an exception between buffer() and send()) goes back to the pool at
 * once, as free_buffer() gives it: every view of it holds this object, so none is left. No GPU
 * call here: a device synchronisation in a dealloc would break a CUDA graph being captured and
 * block without limit. So, as for free_buffer(), work still queued to write it must come before
 * the next buffer's in stream order (the same stream, or synchronised first). */
static void give_back_dropped_buffer(TensorObject *self) {
    ProducerObject *p = (ProducerObject *)self->owner;
    /* Sent or freed already, the id no longer matches: not this buffer's to give back. */
    if (p->p && !CUIPC_PY_FORKED(p) &&
        cuipc_producer_buffer_id(p->p, self->t.data) == self->buffer_id)
        cuipc_status_ignore(cuipc_producer_buffer_free(p->p, self->t.data));
}

static void tensor_dealloc(TensorObject *self) {
    if (self->origin == TENSOR_BUFFER && self->buffer_id)
        give_back_dropped_buffer(self);
    Py_XDECREF(self->owner);
    PyObject_Free(self);
}

bool cuipc_py_tensor_usable(TensorObject *self) {
    if (self->origin == TENSOR_BUFFER) {
        ProducerObject *p = (ProducerObject *)self->owner;
        if (CUIPC_PY_FORKED(p)) { /* the parent's buffer, in a shared mapping: not the child's */
            cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                               "pool buffer of the process this one was forked from");
            return false;
        }
        if (!p->p) {
            cuipc_py_raise_msg(CUIPC_ERR_CLOSED, "pool buffer used after its producer was closed");
            return false;
        }
        if (cuipc_producer_buffer_id(p->p, self->t.data) != self->buffer_id) {
            cuipc_py_raise_msg(CUIPC_ERR_STALE,
                               "pool buffer used after it was sent or freed: it belongs to the "
                               "transport now");
            return false;
        }
        return true;
    }
    TreeObject *tree = (TreeObject *)self->owner;
    if (self->origin == TENSOR_BORROW && tree->message &&
        CUIPC_PY_FORKED(tree->message->consumer)) { /* the parent releases it, not the child */
        cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                           "borrowed tensor of the process this one was forked from (its chunk "
                           "is the parent's to release: unwrap with kind=\"copy\" to keep data)");
        return false;
    }
    if (self->origin == TENSOR_BORROW && (!tree->message || tree->message->released)) {
        cuipc_py_raise_msg(CUIPC_ERR_STALE,
                           "borrowed tensor used after its message was released (unwrap with "
                           "kind=\"copy\" to keep the data)");
        return false;
    }
    return true;
}

/* ---- DLPack export */

typedef struct export_ctx {
    PyObject *keep; /* the memory's owner, kept alive while the reader holds the DLPack tensor */
    int holders;    /* the deleter's, and a caller's that must see whether it ran (under the GIL) */
    bool deleted;   /* the deleter ran */
    int64_t shape[CUIPC_MAX_DIMS];
    int64_t strides[CUIPC_MAX_DIMS];
    bool bool_as_u8; /* for torch: its bool comes back through a u8 view (below) */
    union {
        DLManagedTensor legacy;
        DLManagedTensorVersioned versioned;
    } m;
} export_ctx;

/* A context over keep's memory, with one holder: the DLPack tensor's deleter. */
static export_ctx *export_ctx_new(PyObject *keep, bool bool_as_u8) {
    export_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return (export_ctx *)PyErr_NoMemory();
    ctx->keep = Py_NewRef(keep);
    ctx->holders = 1;
    ctx->bool_as_u8 = bool_as_u8;
    return ctx;
}

static void export_release(export_ctx *ctx, bool deleter) {
    if (!ctx)
        return;
    /* Deleters may run on any thread, with or without the GIL. */
    PyGILState_STATE g = PyGILState_Ensure();
    ctx->deleted |= deleter;
    bool last = --ctx->holders == 0;
    if (last)
        Py_XDECREF(ctx->keep);
    PyGILState_Release(g);
    if (last)
        free(ctx);
}

static void legacy_deleter(DLManagedTensor *m) {
    export_release(m->manager_ctx, true);
}

static void versioned_deleter(DLManagedTensorVersioned *m) {
    export_release(m->manager_ctx, true);
}

/* An unconsumed capsule frees its tensor itself (DLPack's rule for the producer side). It is
 * often freed right after its reader refused it, with the reader's exception pending: that
 * exception is kept, whatever the deleter does (CPython's capsule dealloc does not keep it). */

static void legacy_capsule_destructor(PyObject *cap) {
    CUIPC_PY_KEEP_EXCEPTION(pending);
    if (PyCapsule_IsValid(cap, "dltensor")) {
        DLManagedTensor *m = PyCapsule_GetPointer(cap, "dltensor");
        if (m && m->deleter)
            m->deleter(m);
    }
    CUIPC_PY_RESTORE_EXCEPTION(pending);
}

static void versioned_capsule_destructor(PyObject *cap) {
    CUIPC_PY_KEEP_EXCEPTION(pending);
    if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
        DLManagedTensorVersioned *m = PyCapsule_GetPointer(cap, "dltensor_versioned");
        if (m && m->deleter)
            m->deleter(m);
    }
    CUIPC_PY_RESTORE_EXCEPTION(pending);
}

/* DLPack's stream argument for CUDA: 1 the legacy default stream, 2 per-thread, else a handle. */
static cudaStream_t dl_stream(long long s) {
    if (s == 1)
        return cudaStreamLegacy;
    if (s == 2)
        return cudaStreamPerThread;
    return (cudaStream_t)(uintptr_t)s;
}

/* The unwrap left work queued that a reader of this tensor must be ordered after. */
static bool unwrap_work_queued(TensorObject *self) {
    return self->origin != TENSOR_BUFFER && self->t.device != CUIPC_DEVICE_HOST &&
           ((TreeObject *)self->owner)->stream_ordered;
}

/* Make the reader's stream (DLPack's int) wait for the unwrap's queued work (copy-out, GPU-side
 * wait). */
static int order_after_unwrap_on(TensorObject *self, long long s) {
    if (!unwrap_work_queued(self) || s == -1) /* -1: the reader asked for no synchronisation */
        return 0;
    TreeObject *tree = (TreeObject *)self->owner;
    cudaStream_t target = dl_stream(s);
    if (target == (cudaStream_t)tree->stream)
        return 0;
    return cuipc_py_stream_wait(self->t.device, (cudaStream_t)tree->stream, target,
                                "__dlpack__: ordering the reader's stream after the unwrap");
}

/* The same for __dlpack__'s stream argument (None: the legacy default stream), looked at only
 * where there is something to order. */
static int order_after_unwrap(TensorObject *self, PyObject *stream) {
    if (!unwrap_work_queued(self))
        return 0;
    long long s = 1;
    if (stream && stream != Py_None) {
        s = PyLong_AsLongLong(stream);
        if (s == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "__dlpack__: stream must be an int or None");
            return -1;
        }
    }
    return order_after_unwrap_on(self, s);
}

int cuipc_py_stream_wait(int device, void *from, void *to, const char *what) {
    int prev = 0;
    cudaError_t e = cudaGetDevice(&prev);
    cudaEvent_t ev = NULL;
    if (e == cudaSuccess)
        e = cudaSetDevice(device);
    if (e == cudaSuccess)
        e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (e == cudaSuccess)
        e = cudaEventRecord(ev, (cudaStream_t)from);
    if (e == cudaSuccess)
        e = cudaStreamWaitEvent((cudaStream_t)to, ev, 0);
    if (ev)
        cudaEventDestroy(ev);
    cudaSetDevice(prev);
    if (e != cudaSuccess) {
        cuipc_py_raise_msg(CUIPC_ERR_CUDA, "%s: %s", what, cudaGetErrorString(e));
        return -1;
    }
    return 0;
}

static void fill_dl(const cuipc_tensor *t, export_ctx *ctx, DLTensor *dl) {
    memcpy(ctx->shape, t->shape, sizeof ctx->shape);
    memcpy(ctx->strides, t->strides, sizeof ctx->strides);
    dl->data = t->data;
    if (t->device == CUIPC_DEVICE_HOST)
        dl->device = (DLDevice){kDLCPU, 0};
    else
        dl->device = (DLDevice){kDLCUDA, t->device};
    dl->ndim = t->ndim;
    cuipc_py_dtype_to_dl(
        ctx->bool_as_u8 && t->dtype == CUIPC_DTYPE_BOOL ? CUIPC_DTYPE_U8 : t->dtype, &dl->dtype);
    dl->shape = ctx->shape;
    dl->strides = ctx->strides;
    dl->byte_offset = 0;
}

static PyObject *export_capsule(TensorObject *self, PyObject *stream, bool versioned);

/* A legacy capsule over t in ctx (which the capsule's tensor then owns); NULL on failure, ctx
 * still the caller's. */
static PyObject *legacy_capsule(const cuipc_tensor *t, export_ctx *ctx) {
    DLManagedTensor *m = &ctx->m.legacy;
    m->manager_ctx = ctx;
    m->deleter = legacy_deleter;
    fill_dl(t, ctx, &m->dl_tensor);
    return PyCapsule_New(m, "dltensor", legacy_capsule_destructor);
}

static PyObject *tensor_dlpack(TensorObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"stream", "max_version", "dl_device", "copy", NULL};
    PyObject *stream = Py_None, *max_version = Py_None, *dl_device = Py_None, *copy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$OOOO", names, &stream, &max_version, &dl_device,
                                     &copy))
        return NULL;
    if (!cuipc_py_tensor_usable(self))
        return NULL;
    int copying = copy == Py_None ? 0 : PyObject_IsTrue(copy);
    if (copying < 0)
        return NULL;
    if (copying)
        return cuipc_py_raise_msg(CUIPC_ERR_UNSUPPORTED,
                                  "__dlpack__(copy=True): cuipc exports in place only");
    if (dl_device != Py_None) {
        int type = 0, id = 0;
        if (!PyTuple_Check(dl_device) || !PyArg_ParseTuple(dl_device, "ii", &type, &id)) {
            PyErr_Clear();
            return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                      "__dlpack__: dl_device must be a (device_type, device_id) "
                                      "tuple, not %R",
                                      dl_device);
        }
        bool same = self->t.device == CUIPC_DEVICE_HOST ? type == kDLCPU
                                                        : type == kDLCUDA && id == self->t.device;
        if (!same)
            return cuipc_py_raise_msg(CUIPC_ERR_UNSUPPORTED,
                                      "__dlpack__: the tensor lives on another device than %R",
                                      dl_device);
    }
    bool versioned = false;
    if (max_version != Py_None) {
        long major = 0;
        if (!PyTuple_Check(max_version) || PyTuple_GET_SIZE(max_version) != 2 ||
            ((major = PyLong_AsLong(PyTuple_GET_ITEM(max_version, 0))) == -1 && PyErr_Occurred()))
            return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                      "__dlpack__: max_version must be a (major, minor) tuple");
        versioned = major >= DLPACK_MAJOR_VERSION;
    }
    return export_capsule(self, stream, versioned);
}

/* The capsule of a usable tensor, the reader's stream (None, or DLPack's int) ordered after the
 * unwrap's work. */
static PyObject *export_capsule(TensorObject *self, PyObject *stream, bool versioned) {
    if (order_after_unwrap(self, stream) < 0)
        return NULL;
    export_ctx *ctx = export_ctx_new((PyObject *)self, false);
    if (!ctx)
        return NULL;
    PyObject *cap;
    if (versioned) {
        DLManagedTensorVersioned *m = &ctx->m.versioned;
        m->version = (DLPackVersion){DLPACK_MAJOR_VERSION, DLPACK_MINOR_VERSION};
        m->manager_ctx = ctx;
        m->deleter = versioned_deleter;
        /* A borrowed tensor is the pool's memory, read by every consumer: read-only. Host
         * only: a reader such as torch may refuse read-only tensors; a GPU borrow is documented as
         * not to be written. */
        m->flags = self->origin == TENSOR_BORROW && self->t.device == CUIPC_DEVICE_HOST
                       ? DLPACK_FLAG_BITMASK_READ_ONLY
                       : 0;
        fill_dl(&self->t, ctx, &m->dl_tensor);
        cap = PyCapsule_New(m, "dltensor_versioned", versioned_capsule_destructor);
    } else {
        cap = legacy_capsule(&self->t, ctx);
    }
    if (!cap)
        export_release(ctx, false);
    return cap;
}

static PyObject *tensor_dlpack_device(TensorObject *self, PyObject *unused) {
    if (self->t.device == CUIPC_DEVICE_HOST)
        return Py_BuildValue("(ii)", kDLCPU, 0);
    return Py_BuildValue("(ii)", kDLCUDA, self->t.device);
}

/* torch's entry points for to_torch, looked up once (torch is never unloaded): the capsule
 * reader under torch.from_dlpack, and the raw current stream, where this torch has them. */
static struct {
    PyObject *from_dlpack;    /* torch._C._from_dlpack, else torch.from_dlpack */
    PyObject *bool_dtype;     /* torch.bool */
    PyObject *raw_stream;     /* torch._C._cuda_getCurrentRawStream, or NULL */
    PyObject *current_stream; /* torch.cuda.current_stream, when the former is missing */
} to_torch_fns;

static bool to_torch_init(void) {
    if (to_torch_fns.from_dlpack)
        return true;
    PyObject *torch = PyImport_ImportModule("torch");
    if (!torch)
        return false;
    PyObject *c = PyObject_GetAttrString(torch, "_C");
    PyObject *from = c ? PyObject_GetAttrString(c, "_from_dlpack") : NULL;
    if (!from) {
        PyErr_Clear();
        from = PyObject_GetAttrString(torch, "from_dlpack");
    }
    to_torch_fns.raw_stream = c ? PyObject_GetAttrString(c, "_cuda_getCurrentRawStream") : NULL;
    if (!to_torch_fns.raw_stream) {
        PyErr_Clear();
        PyObject *cuda = PyObject_GetAttrString(torch, "cuda");
        to_torch_fns.current_stream = cuda ? PyObject_GetAttrString(cuda, "current_stream") : NULL;
        Py_XDECREF(cuda);
    }
    Py_XDECREF(c);
    to_torch_fns.bool_dtype = PyObject_GetAttrString(torch, "bool");
    Py_DECREF(torch);
    if (!from || !to_torch_fns.bool_dtype ||
        (!to_torch_fns.raw_stream && !to_torch_fns.current_stream)) {
        Py_XDECREF(from);
        Py_CLEAR(to_torch_fns.bool_dtype);
        Py_CLEAR(to_torch_fns.raw_stream);
        Py_CLEAR(to_torch_fns.current_stream);
        return false;
    }
    to_torch_fns.from_dlpack = from;
    return true;
}

/* torch's current stream on device: its raw handle (0: the legacy default stream). */
static int torch_raw_stream(int device, long long *h) {
    if (to_torch_fns.raw_stream) {
        PyObject *index = PyLong_FromLong(device);
        PyObject *raw = index ? PyObject_CallOneArg(to_torch_fns.raw_stream, index) : NULL;
        Py_XDECREF(index);
        *h = raw ? PyLong_AsLongLong(raw) : -1;
        Py_XDECREF(raw);
    } else {
        PyObject *cur = PyObject_CallFunction(to_torch_fns.current_stream, "i", device);
        PyObject *handle = cur ? PyObject_GetAttrString(cur, "cuda_stream") : NULL;
        Py_XDECREF(cur);
        *h = handle ? PyLong_AsLongLong(handle) : -1;
        Py_XDECREF(handle);
    }
    return PyErr_Occurred() ? -1 : 0;
}

/* torch's reader over a capsule made for torch (cap, taken): a bool tensor travels as u8 and is
 * viewed back, since torch 1.13's reader has no DLPack bool (a view: no copy). */
static PyObject *torch_of_capsule(PyObject *cap, cuipc_dtype dtype) {
    PyObject *r = cap ? PyObject_CallOneArg(to_torch_fns.from_dlpack, cap) : NULL;
    Py_XDECREF(cap);
    if (r && dtype == CUIPC_DTYPE_BOOL)
        Py_SETREF(r, PyObject_CallMethod(r, "view", "O", to_torch_fns.bool_dtype));
    return r;
}

/* A torch.Tensor over t (keep owns its memory) made by torch's exchange table (torch_exchange.c),
 * which takes the DLPack tensor over: no capsule, no call through torch's Python bindings. torch
 * reads the bool dtype itself there (2.10 on). Should the call fail, torch has either run the
 * deleter or dropped the tensor without it (an error before its storage took the deleter): the
 * second hold, ours, outlives the call to tell which, so that keep is let go exactly once. */
static PyObject *torch_through_exchange(const DLPackExchangeAPI *x, const cuipc_tensor *t,
                                        PyObject *keep) {
    cuipc_py_exchange_fault fault = cuipc_py_torch_exchange_fault_take();
    if (t->device != CUIPC_DEVICE_HOST && cuipc_py_torch_cuda_init() < 0)
        return NULL;
    export_ctx *ctx = export_ctx_new(keep, false);
    if (!ctx)
        return NULL;
    ctx->holders = 2;
    DLManagedTensorVersioned *m = &ctx->m.versioned;
    m->version = (DLPackVersion){DLPACK_MAJOR_VERSION, DLPACK_MINOR_VERSION};
    m->manager_ctx = ctx;
    m->deleter = versioned_deleter;
    m->flags = 0; /* as the legacy capsule of the other path: no read-only flag for torch */
    fill_dl(t, ctx, &m->dl_tensor);
    void *obj = NULL;
    int rc;
    switch (fault) {
    case EXCHANGE_FAULT_DELETED_THEN_REFUSED:
        m->deleter(m);
        PyErr_SetString(PyExc_RuntimeError, "_torch_exchange_fault: deleted, then refused");
        rc = -1;
        break;
    case EXCHANGE_FAULT_REFUSED:
        m->dl_tensor.dtype.lanes = 2;
        /* fallthrough */
    default:
        rc = x->managed_tensor_to_py_object_no_sync(m, &obj);
    }
    if (rc != 0 && !ctx->deleted)
        export_release(ctx, false); /* torch's hold, which it will not drop now */
    export_release(ctx, false);
    if (rc == 0 && !obj)
        PyErr_SetString(PyExc_SystemError, "torch's DLPack exchange gave no tensor");
    if (rc != 0 && !PyErr_Occurred()) /* a table that refused without saying why */
        PyErr_Format(PyExc_RuntimeError,
                     "torch's DLPack exchange table refused the tensor (dtype %s, %d dims)",
                     cuipc_dtype_name(t->dtype), t->ndim);
    if (rc == 0 && obj)
        cuipc_py_torch_exchange_made();
    return rc == 0 ? obj : NULL;
}

/* A torch.Tensor over t, whose memory keep owns: through torch's exchange table where torch has
 * one, else torch's capsule reader over a legacy capsule, which works with every torch that has
 * DLPack, whatever its policy on versioned capsules and read-only flags. */
static PyObject *torch_of(const cuipc_tensor *t, PyObject *keep) {
    const DLPackExchangeAPI *x = cuipc_py_torch_exchange();
    if (x)
        return torch_through_exchange(x, t, keep);
    export_ctx *ctx = export_ctx_new(keep, true);
    if (!ctx)
        return NULL;
    PyObject *cap = legacy_capsule(t, ctx);
    if (!cap) {
        export_release(ctx, false);
        return NULL;
    }
    return torch_of_capsule(cap, t->dtype);
}

/* What torch.from_dlpack(self) gives, read on torch's current stream (ordered after the unwrap's
 * work), without __dlpack__'s argument tuple and parsing. */
static PyObject *tensor_to_torch(TensorObject *self, PyObject *unused) {
    if (!to_torch_init())
        return NULL;
    if (!cuipc_py_tensor_usable(self))
        return NULL;
    cuipc_stream current = NULL; /* NULL: the legacy default stream, DLPack's 1 */
    if (self->t.device != CUIPC_DEVICE_HOST &&
        (cuipc_py_torch_stream(self->t.device, &current) < 0 ||
         order_after_unwrap_on(self, current ? (long long)(uintptr_t)current : 1) < 0))
        return NULL;
    return torch_of(&self->t, (PyObject *)self);
}

/* ---- unwrap(torch=True): torch tensors made straight from the unwrapped tree */

bool cuipc_py_torch_ready(void) {
    return to_torch_init();
}

int cuipc_py_torch_stream(int device, cuipc_stream *out) {
    const DLPackExchangeAPI *x = cuipc_py_torch_exchange();
    if (x) {
        void *s = NULL;
        if (x->current_work_stream(kDLCUDA, device, &s) != 0) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_RuntimeError,
                             "torch's DLPack exchange table gave no current stream on GPU %d",
                             device);
            return -1;
        }
        *out = (cuipc_stream)s;
        return 0;
    }
    long long h;
    if (!to_torch_init() || torch_raw_stream(device, &h) < 0)
        return -1;
    *out = (cuipc_stream)(uintptr_t)h;
    return 0;
}

/* torch's current stream on a GPU tensor's device made to follow the unwrap's work, once per
 * device and unwrap (as to_torch does per tensor, where the streams differ). */
static int order_for_torch(cuipc_py_torch_order *o, int device) {
    if (!o->stream_ordered)
        return 0;
    for (int i = 0; i < o->n_done; i++)
        if (o->done[i] == device)
            return 0;
    cuipc_stream current;
    if (cuipc_py_torch_stream(device, &current) < 0)
        return -1;
    if (current != o->unwrap_stream &&
        cuipc_py_stream_wait(device, (void *)o->unwrap_stream, (void *)current,
                             "unwrap(torch=True): ordering torch's current stream after the "
                             "unwrap") < 0)
        return -1;
    if (o->n_done < CUIPC_PY_TORCH_DEVICES)
        o->done[o->n_done++] = device;
    return 0;
}

PyObject *cuipc_py_torch_over(const cuipc_tensor *t, PyObject *keep, cuipc_py_torch_order *o) {
    if (t->device != CUIPC_DEVICE_HOST && order_for_torch(o, t->device) < 0)
        return NULL;
    return torch_of(t, keep);
}

static PyObject *tensor_shape(TensorObject *self, void *unused) {
    PyObject *t = PyTuple_New(self->t.ndim);
    for (int i = 0; t && i < self->t.ndim; i++)
        PyTuple_SET_ITEM(t, i, PyLong_FromLongLong(self->t.shape[i]));
    return t;
}

static PyObject *tensor_strides(TensorObject *self, void *unused) {
    PyObject *t = PyTuple_New(self->t.ndim);
    for (int i = 0; t && i < self->t.ndim; i++)
        PyTuple_SET_ITEM(t, i, PyLong_FromLongLong(self->t.strides[i]));
    return t;
}

static PyObject *tensor_dtype(TensorObject *self, void *unused) {
    return PyUnicode_FromString(cuipc_dtype_name(self->t.dtype));
}

static PyObject *tensor_device(TensorObject *self, void *unused) {
    if (self->t.device == CUIPC_DEVICE_HOST)
        return PyUnicode_FromString("cpu");
    return PyUnicode_FromFormat("cuda:%d", (int)self->t.device);
}

static PyObject *tensor_nbytes(TensorObject *self, void *unused) {
    return PyLong_FromUnsignedLongLong(cuipc_tensor_span_bytes(&self->t));
}

static PyObject *tensor_data_ptr(TensorObject *self, void *unused) {
    return PyLong_FromVoidPtr(self->t.data);
}

static PyObject *tensor_kind(TensorObject *self, void *unused) {
    static const char *kinds[] = {"copy", "borrow", "buffer"};
    return PyUnicode_FromString(kinds[self->origin]);
}

static PyObject *tensor_valid(TensorObject *self, void *unused) {
    bool ok = cuipc_py_tensor_usable(self);
    PyErr_Clear();
    return PyBool_FromLong(ok);
}

static PyObject *tensor_repr(TensorObject *self) {
    PyObject *shape = tensor_shape(self, NULL);
    PyObject *dev = tensor_device(self, NULL);
    PyObject *kind = tensor_kind(self, NULL);
    PyObject *r = shape && dev && kind
                      ? PyUnicode_FromFormat("cuipc.Tensor(shape=%R, dtype=%s, device=%U, kind=%U)",
                                             shape, cuipc_dtype_name(self->t.dtype), dev, kind)
                      : NULL;
    Py_XDECREF(shape);
    Py_XDECREF(dev);
    Py_XDECREF(kind);
    return r;
}

/* ---- buffer protocol: host tensors as memoryview / numpy.asarray without DLPack; writable
 * unless borrowed (the pool's memory, read by every consumer). */
static const char *buffer_format(cuipc_dtype d) {
    switch (d) {
    case CUIPC_DTYPE_BOOL:
        return "?";
    case CUIPC_DTYPE_U8:
        return "B";
    case CUIPC_DTYPE_I8:
        return "b";
    case CUIPC_DTYPE_I16:
        return "h";
    case CUIPC_DTYPE_U16:
        return "H";
    case CUIPC_DTYPE_BF16:
        return "H"; /* no struct code: the raw 16-bit words */
    case CUIPC_DTYPE_I32:
        return "i";
    case CUIPC_DTYPE_U32:
        return "I";
    case CUIPC_DTYPE_I64:
        return "q";
    case CUIPC_DTYPE_U64:
        return "Q";
    case CUIPC_DTYPE_F16:
        return "e";
    case CUIPC_DTYPE_F32:
        return "f";
    case CUIPC_DTYPE_F64:
        return "d";
    default:
        return NULL;
    }
}

/* Column-major and dense (extent-1 dims and empty tensors are both ways). */
static bool fortran_order(const cuipc_tensor *t) {
    int64_t expect = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 0)
            return true;
        if (t->shape[i] != 1 && t->strides[i] != expect)
            return false;
        expect *= t->shape[i];
    }
    return true;
}

static int tensor_getbuffer(TensorObject *self, Py_buffer *view, int flags) {
    if (self->t.device != CUIPC_DEVICE_HOST) {
        cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                           "a tensor on cuda:%d has no host buffer: read it through DLPack",
                           (int)self->t.device);
        return -1;
    }
    if (!cuipc_py_tensor_usable(self))
        return -1;
    bool readonly = self->origin == TENSOR_BORROW;
    if ((flags & PyBUF_WRITABLE) && readonly) {
        cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                           "a borrowed tensor is read-only (unwrap with kind=\"copy\" to write)");
        return -1;
    }
    /* What a reader may assume of the layout it asked for (PEP 3118): without strides, C order;
     * a tensor from a C producer may be strided, and is then refused rather than misread. */
    bool c_order = cuipc_tensor_is_contiguous(&self->t), f_order = fortran_order(&self->t);
    const char *refused = NULL;
    if ((flags & PyBUF_STRIDES) != PyBUF_STRIDES && !c_order)
        refused = "the tensor is strided: a reader must ask for its strides";
    else if ((flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS && !c_order)
        refused = "the tensor is not C-contiguous";
    else if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS && !f_order)
        refused = "the tensor is not Fortran-contiguous";
    else if ((flags & PyBUF_ANY_CONTIGUOUS) == PyBUF_ANY_CONTIGUOUS && !c_order && !f_order)
        refused = "the tensor is neither C- nor Fortran-contiguous";
    if (refused) {
        PyErr_SetString(PyExc_BufferError, refused);
        return -1;
    }
    size_t item = cuipc_dtype_size(self->t.dtype);
    view->buf = self->t.data;
    view->obj = Py_NewRef((PyObject *)self);
    view->len = (Py_ssize_t)(cuipc_tensor_numel(&self->t) * item);
    view->readonly = readonly;
    view->itemsize = (Py_ssize_t)item;
    view->format = (flags & PyBUF_FORMAT) ? (char *)buffer_format(self->t.dtype) : NULL;
    /* Without PyBUF_ND the reader asked for plain bytes: one dimension, no shape (PEP 3118). */
    bool nd = (flags & PyBUF_ND) == PyBUF_ND;
    view->ndim = nd ? self->t.ndim : 1;
    _Static_assert(sizeof(Py_ssize_t) == sizeof(int64_t), "shape is handed out as Py_ssize_t");
    view->shape = nd ? (Py_ssize_t *)self->t.shape : NULL;
    view->strides = NULL;
    if ((flags & PyBUF_STRIDES) == PyBUF_STRIDES) {
        /* Element strides -> byte strides, kept beside the descriptor. */
        for (int i = 0; i < self->t.ndim; i++)
            self->byte_strides[i] = (Py_ssize_t)(self->t.strides[i] * (int64_t)item);
        view->strides = self->byte_strides;
    }
    view->suboffsets = NULL;
    view->internal = NULL;
    return 0;
}

static PyBufferProcs tensor_as_buffer = {.bf_getbuffer = (getbufferproc)tensor_getbuffer};

/* numpy.asarray(t): numpy asks the buffer protocol first and, when that fails, would make a
 * 0-d object array of the Tensor without a word. Reached only then: the reason is raised (a
 * released borrow, a sent buffer, a GPU tensor), or the array made through DLPack. */
static PyObject *tensor_array(TensorObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"dtype", "copy", NULL};
    PyObject *dtype = Py_None, *copy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO", names, &dtype, &copy) ||
        !cuipc_py_tensor_usable(self))
        return NULL;
    if (self->t.device != CUIPC_DEVICE_HOST)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                  "a tensor on cuda:%d has no host array: copy it to the host "
                                  "first (torch.from_dlpack(t).cpu(), cupy.asnumpy)",
                                  self->t.device);
    static PyObject *name;
    PyObject *np = cuipc_py_imported("numpy", &name);
    if (!np)
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ImportError, "numpy is not imported");
    PyObject *a = PyObject_CallMethod(np, "from_dlpack", "O", (PyObject *)self);
    Py_DECREF(np);
    int copying = copy == Py_None ? 0 : PyObject_IsTrue(copy);
    if (copying < 0)
        Py_CLEAR(a);
    else if (a && dtype != Py_None)
        Py_SETREF(a, PyObject_CallMethod(a, "astype", "O", dtype));
    else if (a && copying)
        Py_SETREF(a, PyObject_CallMethod(a, "copy", NULL));
    return a;
}

static PyMethodDef tensor_methods[] = {
    {"__array__", (PyCFunction)(void (*)(void))tensor_array, METH_VARARGS | METH_KEYWORDS,
     "numpy's way in where the buffer protocol failed: the reason, or an array via DLPack."},
    {"__dlpack__", (PyCFunction)(void (*)(void))tensor_dlpack, METH_VARARGS | METH_KEYWORDS,
     "DLPack capsule over the tensor's memory (no copy). stream: the reader's CUDA stream."},
    {"__dlpack_device__", (PyCFunction)tensor_dlpack_device, METH_NOARGS,
     "(device_type, device_id)"},
    {"to_torch", (PyCFunction)tensor_to_torch, METH_NOARGS,
     "torch.from_dlpack(self): a torch.Tensor over the same memory."},
    {NULL}};

static PyGetSetDef tensor_getset[] = {
    {"shape", (getter)tensor_shape, NULL, "shape (tuple of ints)", NULL},
    {"strides", (getter)tensor_strides, NULL, "strides in elements", NULL},
    {"dtype", (getter)tensor_dtype, NULL, "cuipc dtype name: f32, bf16, u8, ...", NULL},
    {"device", (getter)tensor_device, NULL, "\"cpu\" or \"cuda:N\"", NULL},
    {"nbytes", (getter)tensor_nbytes, NULL, "bytes spanned", NULL},
    {"data_ptr", (getter)tensor_data_ptr, NULL, "address of element 0", NULL},
    {"kind", (getter)tensor_kind, NULL, "\"copy\", \"borrow\" or \"buffer\"", NULL},
    {"valid", (getter)tensor_valid, NULL,
     "False once a borrowed tensor's message was released, or a buffer was sent or freed", NULL},
    {NULL}};

PyTypeObject TensorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cuipc.Tensor",
    .tp_basicsize = sizeof(TensorObject),
    .tp_dealloc = (destructor)tensor_dealloc,
    .tp_repr = (reprfunc)tensor_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_as_buffer = &tensor_as_buffer,
    .tp_doc = "A tensor received (copy or borrow) or a pool buffer. Read it through DLPack: "
              "torch.from_dlpack(t), numpy.from_dlpack(t), or t.to_torch().",
    .tp_methods = tensor_methods,
    .tp_getset = tensor_getset,
};
