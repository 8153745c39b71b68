/* Shared declarations of the _cuipc extension: the Python types over producers, consumers,
 * messages and tensors, the error classes, and the conversions between Python trees and cuipc
 * value trees. */
#ifndef CUIPC_PY_EXT_H
#define CUIPC_PY_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>

#include <cuipc/cuipc.h>

#include "dlpack.h"

/* ---- errors (errors.c) */
int cuipc_py_errors_init(PyObject *module);
/* The exception set is a cuipc.Error (e.g. a cuipc.Tensor's own export refused it). */
bool cuipc_py_error_is_ours(void);
PyObject *cuipc_py_error_class(cuipc_status s); /* borrowed */
/* Raise the class named after s with cuipc_last_error()'s text; returns NULL. */
PyObject *cuipc_py_raise(cuipc_status s);
/* Raise the class of s with a message of our own (bad input caught before the core). */
PyObject *cuipc_py_raise_msg(cuipc_status s, const char *fmt, ...);

/* ---- argument helpers (args.c) */
/* The arguments of a METH_FASTCALL | METH_KEYWORDS method into out[0..n) by their names (NULL:
 * not given), positional ones first; the first `required` must be given. Raises TypeError as
 * CPython's own parser does (unknown keyword, given twice, too many, missing). The per-message
 * calls take it: PyArg_ParseTupleAndKeywords costs an argument tuple and a keyword dict. */
int cuipc_py_args(const char *fname, const char *const *names, int n, int required,
                  PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **out);
/* A str argument as UTF-8 (fallback where NULL); raises TypeError naming it otherwise. */
int cuipc_py_str_arg(const char *fname, const char *name, PyObject *o, const char *fallback,
                     const char **out);
/* A number argument as a double (fallback where NULL). */
int cuipc_py_double_arg(PyObject *o, double fallback, double *out);
/* Microseconds from Python as nanoseconds into *ns; a negative number leaves *ns as it is (the
 * caller's default). InvalidArgument naming it when it would not fit an int64 of ns. */
int cuipc_py_us_to_ns(const char *fname, const char *name, double us, int64_t *ns);
/* None -> fallback; a number of seconds -> nanoseconds. */
int cuipc_py_timeout(PyObject *o, int64_t fallback, int64_t *ns);
/* An int argument from 0 to most (None or absent: fallback), else InvalidArgument naming it. */
int cuipc_py_count_arg(const char *fname, const char *name, PyObject *o, uint64_t fallback,
                       uint64_t most, uint64_t *out);
/* None, an int handle, or an object with .cuda_stream (torch.cuda.Stream, cupy). */
int cuipc_py_stream(PyObject *o, cuipc_stream *out);
int cuipc_py_unwrap_kind(const char *kind, cuipc_unwrap_kind *out);
/* None -> CUIPC_DEVICE_SAME (or fallback), "cpu"/-1 -> host, an int or "cuda:N" -> ordinal. */
int cuipc_py_device(PyObject *o, int32_t fallback, int32_t *out);
/* The module `name` if something imported it already (a new reference), else NULL with no error
 * set: cuipc never imports torch itself. *interned caches the name. */
PyObject *cuipc_py_imported(const char *name, PyObject **interned);

/* ---- objects */
/* Moves in every forked child (module.c): an object whose fork_gen differs was made by the
 * parent, and acts for it no more (no send, no receive, no close of the parent's resources). */
extern unsigned long cuipc_py_fork_gen;
/* The attached consumers of this process (under the GIL): a forked child closes its copies of
 * their sockets (module.c), so that the producer sees a parent consumer die with its parent. */
void cuipc_py_consumer_register(cuipc_consumer *c);
void cuipc_py_consumer_unregister(cuipc_consumer *c);
#define CUIPC_PY_FORKED(obj) ((obj)->fork_gen != cuipc_py_fork_gen)

/* Room for a copy of cuipc_last_error(). */
#define CUIPC_PY_WHY_BYTES 1024

/* An exception pending (or none) kept aside while code that may raise runs, then put back. */
#if PY_VERSION_HEX >= 0x030C0000
#define CUIPC_PY_KEEP_EXCEPTION(x) PyObject *x = PyErr_GetRaisedException()
#define CUIPC_PY_RESTORE_EXCEPTION(x) (PyErr_Clear(), PyErr_SetRaisedException(x))
#else
#define CUIPC_PY_KEEP_EXCEPTION(x)                                                                 \
    PyObject *x##_type, *x##_value, *x##_tb;                                                       \
    PyErr_Fetch(&x##_type, &x##_value, &x##_tb)
#define CUIPC_PY_RESTORE_EXCEPTION(x) (PyErr_Clear(), PyErr_Restore(x##_type, x##_value, x##_tb))
#endif

typedef struct ProducerObject {
    PyObject_HEAD cuipc_producer *p;
    cuipc_mode mode;
    int32_t device;
    int in_calls;       /* calls running with the GIL released (close waits for none) */
    bool closing;       /* close() waits for the calls of other threads: no new one starts */
    PyObject *retained; /* cuda_ipc: the senders' DLPack tensors kept alive, as the mode needs */
    unsigned long fork_gen;
    char *wire; /* wrap's encoding is written here (under the GIL), grown to the largest */
    size_t wire_cap;
    int64_t pool_wait_ns; /* how long a wrap may wait for pool room (the policy's; < 0: no limit) */
} ProducerObject;

typedef struct ConsumerObject {
    PyObject_HEAD cuipc_consumer *c;
    Py_ssize_t live_messages; /* messages not yet freed: detach waits for them */
    bool closing;
    int in_calls;
    unsigned long fork_gen;
} ConsumerObject;

typedef struct MessageObject {
    PyObject_HEAD ConsumerObject *consumer;
    cuipc_message *m;
    bool released;
} MessageObject;

/* An unwrapped tree: owns the value tree (and so the copy-out memory of its tensors). */
typedef struct TreeObject {
    PyObject_HEAD cuipc_value *tree;
    MessageObject *message;
    cuipc_stream stream; /* the unwrap's stream */
    bool stream_ordered; /* its tensors are ready in that stream's order only */
} TreeObject;

typedef enum { TENSOR_COPY, TENSOR_BORROW, TENSOR_BUFFER } tensor_origin;

typedef struct TensorObject {
    PyObject_HEAD cuipc_tensor t;
    tensor_origin origin;
    PyObject *owner; /* TreeObject (copy, borrow) or ProducerObject (buffer) */
    Py_ssize_t byte_strides[CUIPC_MAX_DIMS]; /* the buffer protocol's view of t.strides */
    uint64_t buffer_id; /* a buffer: its allocation's number (cuipc_producer_buffer_id) */
} TensorObject;

extern PyTypeObject ProducerType, ConsumerType, MessageType, TreeType, TensorType;

/* Tensor of an unwrapped tree or a pool buffer (tensor.c). */
PyObject *cuipc_py_tensor_new(const cuipc_tensor *t, tensor_origin origin, PyObject *owner);
/* Not usable any more (message released, producer closed): raises and returns false. */
bool cuipc_py_tensor_usable(TensorObject *t);

/* ---- trees (convert.c) */
/* Python tree -> value tree; tensors are taken through __dlpack__ (stream: the send's). The
 * DLPack tensors taken go into the list keep, which gives them back when it is freed. */
cuipc_value *cuipc_py_to_value(PyObject *tree, cuipc_stream stream, PyObject *keep);
/* unwrap(torch=True): what torch's current streams must wait for, per GPU of the tree. */
#define CUIPC_PY_TORCH_DEVICES 8
typedef struct cuipc_py_torch_order {
    cuipc_stream unwrap_stream;
    bool stream_ordered; /* the unwrap left work on unwrap_stream, not yet done */
    int n_done;
    int done[CUIPC_PY_TORCH_DEVICES]; /* devices whose torch stream waits already */
} cuipc_py_torch_order;

/* Unwrapped value tree -> Python, tensors owned by owner: as cuipc.Tensor, or with torch given
 * as torch.Tensor ready on torch's current stream of their device (tensor.c). */
PyObject *cuipc_py_from_value(const cuipc_value *v, TreeObject *owner, tensor_origin origin,
                              cuipc_py_torch_order *torch);
/* torch imported and its DLPack reader found; else raises (ImportError) and false. */
bool cuipc_py_torch_ready(void);
/* torch's current stream on device (0, the legacy default stream, as NULL): the one lookup of it,
 * for the send's torch reads and for unwrap(torch=True); -1 with an error raised. */
int cuipc_py_torch_stream(int device, cuipc_stream *out);
/* A torch.Tensor over t whose memory keep owns, ordered on its device's torch stream per o. */
PyObject *cuipc_py_torch_over(const cuipc_tensor *t, PyObject *keep, cuipc_py_torch_order *o);

/* A tensor's layout as taken in, before the contiguity check. */
typedef struct cuipc_py_layout {
    void *data;
    int32_t device;
    cuipc_dtype dtype;
    int ndim;
    int64_t shape[CUIPC_MAX_DIMS];
    int64_t strides[CUIPC_MAX_DIMS]; /* in elements */
} cuipc_py_layout;

/* A torch.Tensor read without DLPack where that gives what DLPack would (torch_tensor.c); a CUDA
 * one has the send's stream ordered after torch's current stream, as __dlpack__ does. 1: *out
 * filled; 0: not this path's case, take it through DLPack; 2: a lazy negation (negative bit set),
 * to be resolved first (DLPack would export it unnegated); -1: error raised. */
int cuipc_py_torch_tensor(PyObject *o, const char *path, cuipc_stream stream, cuipc_py_layout *out);

/* torch's DLPack C exchange table (torch_exchange.c), where this torch has a usable one and it is
 * not turned off; NULL otherwise, with no error set. Asks only once torch has been imported. */
const DLPackExchangeAPI *cuipc_py_torch_exchange(void);
/* torch's own CUDA initialisation (torch.cuda._lazy_init: the seed torch.manual_seed gave, the
 * calls queued until CUDA is first used), which torch._C._from_dlpack runs for a CUDA tensor and
 * the table's tensor maker does not; once per process (again in a forked child). -1: raised. */
int cuipc_py_torch_cuda_init(void);
/* Tests (_cuipc._torch_exchange_fault): the next tensor made through the table fails, torch
 * refusing it (a dtype of 2 lanes: torch's own error, before its storage takes the deleter), or
 * as if torch had run the deleter and then failed. Taken (and cleared) by the tensor maker. */
typedef enum {
    EXCHANGE_FAULT_NONE,
    EXCHANGE_FAULT_REFUSED,
    EXCHANGE_FAULT_DELETED_THEN_REFUSED
} cuipc_py_exchange_fault;
cuipc_py_exchange_fault cuipc_py_torch_exchange_fault_take(void);
PyObject *cuipc_py_torch_exchange_fault(PyObject *self, PyObject *arg);
/* Tests (_cuipc._torch_exchange_count): the torch tensors the table has made in this process. */
void cuipc_py_torch_exchange_made(void);
PyObject *cuipc_py_torch_exchange_count(PyObject *self, PyObject *unused);
/* _cuipc._torch_exchange([on]): the table's use forced on or off, or (None) left to the process
 * (CUIPC_PY_TORCH_EXCHANGE=0 wins over on); whether it is used now. */
PyObject *cuipc_py_torch_exchange_switch(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* Make stream `to` wait for the work queued so far on `from` (cudaStream_t both) on device;
 * raises CudaError prefixed with what. */
int cuipc_py_stream_wait(int device, void *from, void *to, const char *what);

/* dtype <-> DLPack (tensor.c) */
bool cuipc_py_dtype_to_dl(cuipc_dtype d, DLDataType *out);
cuipc_dtype cuipc_py_dtype_from_dl(DLDataType t);

/* A call that may wait (recv, accept, drain, buffer) with slice_ns as its timeout, in slices with
 * the signal handlers run between them (wait.c); last: the wait ends with this slice. 0: *s holds
 * the call's status (not a Timeout before the caller's); -1: an exception is set (the whole wait
 * timed out, a handler raised, or closed the owner: usable(owner) false). */
typedef cuipc_status (*cuipc_py_wait_fn)(void *ctx, int64_t slice_ns, bool last);
int cuipc_py_wait(PyObject *owner, int *in_calls, bool (*usable)(PyObject *owner), const char *what,
                  int64_t timeout_ns, cuipc_py_wait_fn fn, void *ctx, cuipc_status *s);
#define CUIPC_PY_SLICE_NS 200000000ll
/* The next slice of a wait with left_ns still to go (< 0: no limit): at most CUIPC_PY_SLICE_NS.
 * The slice is the wait's last when it is all that is left. */
int64_t cuipc_py_next_slice(int64_t left_ns);
/* Between two slices of a wait: the signal handlers run, and a handler that closed the owner
 * ends the wait with Closed. -1: an exception is set. */
int cuipc_py_between_slices(PyObject *owner, bool (*usable)(PyObject *owner), const char *what);
/* close() from one thread while others are inside calls on the object (*in_calls of them, the
 * GIL let go): they were told to stop (the object no longer usable, a consumer interrupted) and
 * each returns within one slice of its wait; this waits for none left, the GIL let go meanwhile.
 * -1 with Timeout raised after limit_ns (< 0: no limit). */
int cuipc_py_wait_for_calls(const int *in_calls, const char *what, int64_t limit_ns);
/* The Timeout of a whole wait of whole_ns that ran out (status s): says the whole wait where its
 * last slice (whose wait the library's message names) was not all of it. Always -1. */
int cuipc_py_raise_timed_out(cuipc_status s, int64_t whole_ns, int64_t last_slice_ns);

#define CUIPC_PY_CALL(obj, status_var, call)                                                       \
    do {                                                                                           \
        (obj)->in_calls++;                                                                         \
        PyThreadState *ts_ = PyEval_SaveThread();                                                  \
        status_var = (call);                                                                       \
        PyEval_RestoreThread(ts_);                                                                 \
        (obj)->in_calls--;                                                                         \
    } while (0)

#endif
