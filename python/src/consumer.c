/* cuipc.Consumer and cuipc.Message: attach to a producer, receive (or adopt bytes carried by the
 * application), unwrap as copies or borrows, release. A consumer is detached only once all of
 * its messages are gone, and a message is freed only once the tensors borrowed from it are
 * (copies are the process's own: they keep neither). */
#include <string.h>

#include "ext.h"

#define DEFAULT_ATTACH_TIMEOUT_NS (10ll * 1000 * 1000 * 1000)

static void consumer_detach_if_done(ConsumerObject *self) {
    if (!self->closing || self->live_messages || !self->c)
        return;
    /* A close() waiting for other threads' calls (or one that gave up on them): the last
     * message freed meanwhile must not detach under a call still inside (a recv that took a
     * message, a prepare). The close detaches after its wait; else a later close or the
     * dealloc does. */
    if (self->in_calls && !CUIPC_PY_FORKED(self))
        return;
    cuipc_consumer *c = self->c;
    self->c = NULL;
    if (CUIPC_PY_FORKED(self))
        return; /* a forked child's copy: the parent's consumer place is left to it */
    cuipc_py_consumer_unregister(c);
    PyThreadState *ts = PyEval_SaveThread();
    cuipc_status s = cuipc_consumer_detach_within(c, CUIPC_TEARDOWN_WAIT_NS);
    PyEval_RestoreThread(ts);
    if (s == CUIPC_OK)
        return;
    /* Called from close() and from deallocs alike, with an exception perhaps under way: the
     * detach that gave up (its place kept until its queued acks land) is a warning, and one
     * made an error is reported as unraisable. */
    CUIPC_PY_KEEP_EXCEPTION(pending);
    if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1, "detaching the consumer: %s",
                         cuipc_last_error()) < 0)
        PyErr_WriteUnraisable(NULL);
    CUIPC_PY_RESTORE_EXCEPTION(pending);
}

/* Between the attach's slices (the GIL let go, *ctx the thread state it saved): the
 * interpreter's signal handlers run, and one that raises (Ctrl-C) stops the attach with its
 * exception, kept in that thread state. */
static bool attach_runs_handlers(void *ctx) {
    PyThreadState **ts = ctx;
    PyEval_RestoreThread(*ts);
    bool go_on = PyErr_CheckSignals() == 0;
    *ts = PyEval_SaveThread();
    return go_on;
}

static int consumer_init(ConsumerObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"socket_path", "timeout", "spin_us", NULL};
    const char *path;
    PyObject *timeout = NULL; /* left out: 10 s; None: no limit, as every wait of the package */
    double spin_us = -1;
    if (self->c)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "Consumer is already attached"), -1;
    if (self->closing) /* its place would be held, unusable, until the object is collected */
        return cuipc_py_raise_msg(CUIPC_ERR_CLOSED,
                                  "Consumer was closed: make a new one to attach again"),
               -1;
    int64_t spin_ns = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|Od", names, &path, &timeout, &spin_us) ||
        cuipc_py_us_to_ns("Consumer", "spin_us", spin_us, &spin_ns) < 0)
        return -1;
    int64_t ns = DEFAULT_ATTACH_TIMEOUT_NS;
    if (timeout && cuipc_py_timeout(timeout, -1, &ns) < 0)
        return -1;
    cuipc_attach_options opt;
    cuipc_attach_options_init(&opt);
    opt.keep_waiting = attach_runs_handlers;
    cuipc_status s;
    PyThreadState *ts = PyEval_SaveThread();
    opt.keep_waiting_ctx = &ts;
    s = cuipc_consumer_attach_with(path, &opt, ns, &self->c);
    PyEval_RestoreThread(ts);
    if (s != CUIPC_OK) {
        self->c = NULL;
        if (!PyErr_Occurred()) /* else a handler's exception (Ctrl-C) goes on as itself */
            cuipc_py_raise(s);
        return -1;
    }
    if (spin_ns >= 0)
        cuipc_consumer_set_spin_ns(self->c, (uint64_t)spin_ns);
    self->fork_gen = cuipc_py_fork_gen;
    cuipc_py_consumer_register(self->c);
    return 0;
}

static void consumer_dealloc(ConsumerObject *self) {
    /* No message is alive: each holds a reference to its consumer. */
    self->closing = true;
    consumer_detach_if_done(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A message of a consumer made before a fork, used in the child: refused (its chunks are the
 * parent's to release). */
static bool not_forked(ConsumerObject *c) {
    if (!CUIPC_PY_FORKED(c))
        return true;
    cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                       "this consumer belongs to the process this one was forked from: a child "
                       "attaches its own");
    return false;
}

static bool consumer_open(ConsumerObject *self) {
    if (self->c && !self->closing)
        return not_forked(self);
    cuipc_py_raise_msg(CUIPC_ERR_CLOSED, "the consumer is closed");
    return false;
}

static PyObject *message_new(ConsumerObject *consumer, cuipc_message *m) {
    MessageObject *msg = PyObject_New(MessageObject, &MessageType);
    if (!msg) {
        cuipc_message_free(m);
        return NULL;
    }
    msg->consumer = (ConsumerObject *)Py_NewRef((PyObject *)consumer);
    msg->m = m;
    msg->released = false;
    consumer->live_messages++;
    return (PyObject *)msg;
}

typedef struct recv_ctx {
    cuipc_consumer *c;
    cuipc_message *m;
} recv_ctx;

static bool consumer_usable(PyObject *self) {
    return ((ConsumerObject *)self)->c && !((ConsumerObject *)self)->closing;
}

static cuipc_status recv_slice(void *ctx, int64_t slice_ns, bool last) {
    (void)last;
    recv_ctx *r = ctx;
    return cuipc_consumer_recv(r->c, slice_ns, &r->m);
}

static PyObject *consumer_recv(ConsumerObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    static const char *const names[] = {"timeout"};
    PyObject *timeout;
    int64_t ns;
    if (cuipc_py_args("recv", names, 1, 0, args, nargs, kwnames, &timeout) < 0 ||
        !consumer_open(self) || cuipc_py_timeout(timeout, -1, &ns) < 0)
        return NULL;
    recv_ctx r = {.c = self->c};
    cuipc_status s;
    if (cuipc_py_wait((PyObject *)self, &self->in_calls, consumer_usable, "recv", ns, recv_slice,
                      &r, &s) < 0)
        return NULL;
    if (s != CUIPC_OK)
        return cuipc_py_raise(s);
    return message_new(self, r.m);
}

static PyObject *consumer_adopt(ConsumerObject *self, PyObject *arg) {
    Py_buffer b;
    if (!consumer_open(self))
        return NULL;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                  "adopt takes the bytes of Producer.wrap, not %s",
                                  Py_TYPE(arg)->tp_name);
    }
    cuipc_message *m = NULL;
    cuipc_status s = cuipc_consumer_adopt(self->c, b.buf, (size_t)b.len, &m);
    PyBuffer_Release(&b);
    if (s != CUIPC_OK)
        return cuipc_py_raise(s);
    return message_new(self, m);
}

/* Unwrap options from (kind, device, stream, host_wait_us) for fname. */
static int unwrap_options(const char *fname, const char *kind, PyObject *device, PyObject *stream,
                          double host_wait_us, cuipc_unwrap_options *o) {
    cuipc_unwrap_options_init(o);
    if (cuipc_py_unwrap_kind(kind, &o->kind) < 0 ||
        cuipc_py_device(device, CUIPC_DEVICE_SAME, &o->device) < 0 ||
        cuipc_py_stream(stream, &o->stream) < 0 ||
        cuipc_py_us_to_ns(fname, "host_wait_us", host_wait_us, &o->host_wait_ns) < 0)
        return -1;
    return 0;
}

static PyObject *consumer_prepare(ConsumerObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"kind", "device", "stream", "host_wait_us", NULL};
    const char *kind = "copy";
    PyObject *device = Py_None, *stream = Py_None;
    double host_wait_us = -1;
    cuipc_unwrap_options o;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|sOOd", names, &kind, &device, &stream,
                                     &host_wait_us) ||
        !consumer_open(self) ||
        unwrap_options("prepare", kind, device, stream, host_wait_us, &o) < 0)
        return NULL;
    cuipc_status s;
    CUIPC_PY_CALL(self, s, cuipc_consumer_prepare(self->c, &o));
    if (s != CUIPC_OK)
        return cuipc_py_raise(s);
    Py_RETURN_NONE;
}

static PyObject *consumer_stats(ConsumerObject *self, PyObject *unused) {
    if (!consumer_open(self))
        return NULL;
    cuipc_consumer_stats st;
    cuipc_consumer_stats_get(self->c, &st);
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K}", "messages", st.messages, "bytes", st.bytes,
                         "handle_opens", st.handle_opens, "handle_hits", st.handle_hits, "rejected",
                         st.rejected);
}

static PyObject *consumer_close(ConsumerObject *self, PyObject *unused) {
    self->closing = true; /* new calls refused, a wait between its slices ends with Closed */
    if (self->in_calls && self->c && !CUIPC_PY_FORKED(self)) {
        /* Another thread is inside a call: a recv wakes at once (Closed), the others return
         * within their next slice or GPU call; the detach waits for them. */
        cuipc_consumer_interrupt(self->c);
        if (cuipc_py_wait_for_calls(&self->in_calls, "consumer", CUIPC_TEARDOWN_WAIT_NS) < 0)
            return NULL;
    }
    consumer_detach_if_done(self);
    Py_RETURN_NONE;
}

static PyObject *consumer_index(ConsumerObject *self, void *unused) {
    if (!consumer_open(self))
        return NULL;
    return PyLong_FromUnsignedLong(cuipc_consumer_index(self->c));
}

static PyObject *ctx_enter(PyObject *self, PyObject *unused) {
    return Py_NewRef(self);
}

static PyObject *consumer_exit(ConsumerObject *self, PyObject *args) {
    PyObject *r = consumer_close(self, NULL);
    Py_XDECREF(r);
    return r ? Py_NewRef(Py_False) : NULL;
}

static PyMethodDef consumer_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))consumer_recv, METH_FASTCALL | METH_KEYWORDS,
     "recv(timeout=None) -> Message. Closed once the producer closed, PeerDead if it died."},
    {"adopt", (PyCFunction)consumer_adopt, METH_O,
     "adopt(bytes) -> Message: a message that came on the application's own channel "
     "(Producer.wrap)."},
    {"prepare", (PyCFunction)(void (*)(void))consumer_prepare, METH_VARARGS | METH_KEYWORDS,
     "prepare(kind=\"copy\", device=None, stream=None, host_wait_us=-1): the one-time set-up "
     "(mapping the pool, the copy-out pool's first allocation: milliseconds) done now rather "
     "than in the first message."},
    {"stats", (PyCFunction)consumer_stats, METH_NOARGS, "Counters of this consumer (dict)."},
    {"close", (PyCFunction)consumer_close, METH_NOARGS,
     "Detach (at once, or when the last message of this consumer is freed). Calls under way on "
     "other threads end first: a recv raises Closed at once, and the close waits up to 10 s for "
     "them."},
    {"__enter__", ctx_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)consumer_exit, METH_VARARGS, NULL},
    {NULL}};

static PyGetSetDef consumer_getset[] = {
    {"index", (getter)consumer_index, NULL,
     "this consumer's place at the producer (0..max_consumers-1)", NULL},
    {NULL}};

PyTypeObject ConsumerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cuipc.Consumer",
    .tp_basicsize = sizeof(ConsumerObject),
    .tp_dealloc = (destructor)consumer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Consumer(socket_path, timeout=10.0, spin_us=-1): attach to a producer, waiting up "
              "to timeout seconds for it (None: no limit; signal handlers run meanwhile).",
    .tp_methods = consumer_methods,
    .tp_getset = consumer_getset,
    .tp_init = (initproc)consumer_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ messages */

static void message_dealloc(MessageObject *self) {
    cuipc_message *m = self->m;
    self->m = NULL;
    if (m && !CUIPC_PY_FORKED(self->consumer)) {
        PyThreadState *ts = PyEval_SaveThread();
        cuipc_message_free(m);
        PyEval_RestoreThread(ts);
    }
    ConsumerObject *c = self->consumer;
    c->live_messages--;
    consumer_detach_if_done(c);
    Py_DECREF(c);
    PyObject_Free(self);
}

/* unwrap(torch=True) with no stream given and a GPU named as the target: torch's current stream
 * there, so the unwrap's work lands where torch will read it and nothing has to be ordered after
 * it. Otherwise (a host target, "the pool's device", which may not be the current one) the
 * unwrap keeps its default stream and torch's current stream of each tensor's device is made to
 * wait for it. */
static int torch_unwrap_stream(PyObject *stream_arg, cuipc_unwrap_options *o) {
    if ((stream_arg && stream_arg != Py_None) || o->device < 0)
        return 0;
    return cuipc_py_torch_stream(o->device, &o->stream);
}

static PyObject *message_unwrap(MessageObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames) {
    static const char *const names[] = {"kind", "stream", "device", "host_wait_us", "torch"};
    PyObject *a[5];
    const char *kind;
    double host_wait_us;
    cuipc_unwrap_options o;
    int as_torch = 0;
    if (cuipc_py_args("unwrap", names, 5, 0, args, nargs, kwnames, a) < 0 ||
        cuipc_py_str_arg("unwrap", "kind", a[0], "copy", &kind) < 0 ||
        cuipc_py_double_arg(a[3], -1, &host_wait_us) < 0 ||
        unwrap_options("unwrap", kind, a[2], a[1], host_wait_us, &o) < 0 ||
        (a[4] && (as_torch = PyObject_IsTrue(a[4])) < 0))
        return NULL;
    if (!not_forked(self->consumer))
        return NULL;
    if (self->released)
        return cuipc_py_raise_msg(CUIPC_ERR_STALE, "unwrap: the message was released already");
    if (as_torch && (!cuipc_py_torch_ready() || torch_unwrap_stream(a[1], &o) < 0))
        return NULL;
    cuipc_value *tree = NULL;
    cuipc_status s;
    CUIPC_PY_CALL(self->consumer, s, cuipc_message_unwrap(self->m, &o, &tree));
    if (s != CUIPC_OK)
        return cuipc_py_raise(s);
    TreeObject *owner = PyObject_New(TreeObject, &TreeType);
    if (!owner) {
        cuipc_value_free(tree);
        return NULL;
    }
    owner->tree = tree;
    /* Copies are the process's own memory: only borrows keep the message (and through it the
     * consumer's place) for as long as they live. */
    owner->message =
        o.kind == CUIPC_UNWRAP_BORROW ? (MessageObject *)Py_NewRef((PyObject *)self) : NULL;
    owner->stream = o.stream;
    owner->stream_ordered = cuipc_message_stream_ordered(self->m);
    cuipc_py_torch_order order = {.unwrap_stream = o.stream,
                                  .stream_ordered = owner->stream_ordered};
    PyObject *r = cuipc_py_from_value(tree, owner,
                                      o.kind == CUIPC_UNWRAP_BORROW ? TENSOR_BORROW : TENSOR_COPY,
                                      as_torch ? &order : NULL);
    Py_DECREF(owner);
    return r;
}

static PyObject *message_release(MessageObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
    static const char *const names[] = {"stream"};
    PyObject *stream_obj;
    cuipc_stream stream;
    if (cuipc_py_args("release", names, 1, 0, args, nargs, kwnames, &stream_obj) < 0 ||
        cuipc_py_stream(stream_obj, &stream) < 0 || !not_forked(self->consumer))
        return NULL;
    if (self->released)
        Py_RETURN_NONE;
    cuipc_status s;
    CUIPC_PY_CALL(self->consumer, s, cuipc_message_release(self->m, stream));
    if (s != CUIPC_OK)
        return cuipc_py_raise(s);
    self->released = true;
    Py_RETURN_NONE;
}

static PyObject *message_exit(MessageObject *self, PyObject *args) {
    PyObject *r = message_release(self, NULL, 0, NULL);
    Py_XDECREF(r);
    return r ? Py_NewRef(Py_False) : NULL;
}

static PyObject *message_stream_ordered(MessageObject *self, void *unused) {
    return PyBool_FromLong(cuipc_message_stream_ordered(self->m));
}

static PyObject *message_released(MessageObject *self, void *unused) {
    return PyBool_FromLong(self->released);
}

static PyMethodDef message_methods[] = {
    {"unwrap", (PyCFunction)(void (*)(void))message_unwrap, METH_FASTCALL | METH_KEYWORDS,
     "unwrap(kind=\"copy\", stream=None, device=None, host_wait_us=-1, torch=False) -> the tree, "
     "tensors as cuipc.Tensor; with torch=True as torch.Tensor, ready on torch's current stream "
     "(what to_torch() gives, in one call; with no stream given and a GPU as device, the unwrap "
     "runs on that stream)."},
    {"release", (PyCFunction)(void (*)(void))message_release, METH_FASTCALL | METH_KEYWORDS,
     "release(stream=None): give the chunks back (after the work queued on stream). Idempotent."},
    {"__enter__", ctx_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)message_exit, METH_VARARGS, NULL},
    {NULL}};

static PyGetSetDef message_getset[] = {
    {"stream_ordered", (getter)message_stream_ordered, NULL,
     "True when the last unwrap left work on its stream not yet done (tensors ready in that "
     "stream's order only); False when they are ready for any stream as unwrap returns",
     NULL},
    {"released", (getter)message_released, NULL, "True after release()", NULL},
    {NULL}};

PyTypeObject MessageType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cuipc.Message",
    .tp_basicsize = sizeof(MessageObject),
    .tp_dealloc = (destructor)message_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A received message. Use it as a context manager: it is released on exit.",
    .tp_methods = message_methods,
    .tp_getset = message_getset,
};

/* ------------------------------------------------------------------ unwrapped trees */

static void tree_dealloc(TreeObject *self) {
    cuipc_value *tree = self->tree;
    self->tree = NULL;
    /* Copy-outs on the GPU are freed stream-ordered; borrows free nothing. */
    if (tree) {
        PyThreadState *ts = PyEval_SaveThread();
        cuipc_value_free(tree);
        PyEval_RestoreThread(ts);
    }
    Py_XDECREF(self->message);
    PyObject_Free(self);
}

PyTypeObject TreeType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cuipc._Tree",
    .tp_basicsize = sizeof(TreeObject),
    .tp_dealloc = (destructor)tree_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Owner of an unwrapped tree's memory (internal).",
};
