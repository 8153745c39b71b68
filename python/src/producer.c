/* cuipc.Producer: owns the pools, accepts consumers, sends trees (or wraps them into bytes for
 * the application's own channel), hands out pool buffers to fill. */
#include <string.h>
#include <time.h>

#include "ext.h"

static int parse_policy(const char *s, cuipc_full_policy *out) {
    if (!strcmp(s, "wait"))
        *out = CUIPC_FULL_WAIT;
    else if (!strcmp(s, "fail"))
        *out = CUIPC_FULL_FAIL;
    else if (!strcmp(s, "fallback"))
        *out = CUIPC_FULL_FALLBACK;
    else {
        cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                           "full_policy must be \"wait\", \"fail\" or \"fallback\", not \"%s\"", s);
        return -1;
    }
    return 0;
}

static int producer_init(ProducerObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {
        "mode",        "gpu_pool_bytes", "host_pool_bytes", "max_consumers", "device",
        "full_policy", "full_timeout",   "slots",           "ring_bytes",    "socket_path",
        NULL};
    const char *mode = "default", *policy = "wait", *socket_path = NULL;
    PyObject *gpu_bytes = Py_None, *full_timeout = NULL, *host_bytes = NULL, *max_consumers = NULL,
             *slots = NULL, *ring_bytes = NULL;
    int device = 0;
    if (self->p)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "Producer is already initialised"), -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|sOOOisOOOz", names, &mode, &gpu_bytes, &host_bytes,
                                     &max_consumers, &device, &policy, &full_timeout, &slots,
                                     &ring_bytes, &socket_path))
        return -1;
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    if (cuipc_mode_from_name(mode, &cfg.mode) != CUIPC_OK)
        return cuipc_py_raise_msg(
                   CUIPC_ERR_INVALID_ARG,
                   "mode must be \"default\", \"cuda_ipc\" or \"cuda_ipc_pool\", not \"%s\"", mode),
               -1;
    /* full_timeout left out: the library's 1 s; None: no limit. A GPU pool only where the mode
     * uses one; 256 MiB unless told. */
    uint64_t gpu = cfg.mode == CUIPC_MODE_CUDA_IPC_POOL ? 256ull << 20 : 0, host, consumers,
             n_slots, ring;
    if (parse_policy(policy, &cfg.full_policy) < 0 ||
        (full_timeout && cuipc_py_timeout(full_timeout, INT64_MAX, &cfg.full_timeout_ns) < 0) ||
        cuipc_py_count_arg("Producer", "gpu_pool_bytes", gpu_bytes, gpu, UINT64_MAX, &gpu) < 0 ||
        cuipc_py_count_arg("Producer", "host_pool_bytes", host_bytes, 64ull << 20, UINT64_MAX,
                           &host) < 0 ||
        cuipc_py_count_arg("Producer", "max_consumers", max_consumers, 1, UINT32_MAX, &consumers) <
            0 ||
        cuipc_py_count_arg("Producer", "slots", slots, 4096, UINT32_MAX, &n_slots) < 0 ||
        cuipc_py_count_arg("Producer", "ring_bytes", ring_bytes, 1ull << 20, UINT64_MAX, &ring) < 0)
        return -1;
    cfg.gpu_pool_bytes = gpu;
    cfg.host_pool_bytes = host;
    cfg.max_consumers = (uint32_t)consumers;
    cfg.device = device;
    cfg.slots = (uint32_t)n_slots;
    cfg.ring_bytes = ring;
    cfg.socket_path = socket_path;
    cuipc_status s;
    PyThreadState *ts = PyEval_SaveThread();
    s = cuipc_producer_create(&cfg, &self->p);
    PyEval_RestoreThread(ts);
    if (s != CUIPC_OK) {
        self->p = NULL;
        cuipc_py_raise(s);
        return -1;
    }
    self->mode = cfg.mode;
    self->device = device;
    self->pool_wait_ns = cfg.full_policy == CUIPC_FULL_FAIL     ? 0
                         : cfg.full_timeout_ns >= INT64_MAX / 2 ? -1 /* None: no limit */
                                                                : cfg.full_timeout_ns;
    self->fork_gen = cuipc_py_fork_gen;
    self->retained = PyList_New(0);
    return self->retained ? 0 : -1;
}

static bool open_or_raise(ProducerObject *self) {
    if (self->p && !CUIPC_PY_FORKED(self) && !self->closing)
        return true;
    if (self->p && !CUIPC_PY_FORKED(self)) {
        cuipc_py_raise_msg(CUIPC_ERR_CLOSED,
                           "the producer is closing (a close() waits for the calls under way)");
        return false;
    }
    if (self->p) {
        cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                           "this producer belongs to the process this one was forked from: a "
                           "child makes its own");
        return false;
    }
    cuipc_py_raise_msg(CUIPC_ERR_CLOSED, "the producer is closed");
    return false;
}

/* wait_ns: how long the GPU pool waits for the copies queued into it (see
 * cuipc_producer_destroy_within); CUIPC_ERR_TIMEOUT: it left its memory allocated. */
static cuipc_status producer_destroy(ProducerObject *self, int64_t wait_ns) {
    cuipc_producer *p = self->p;
    self->p = NULL;
    if (!p || CUIPC_PY_FORKED(self))
        return CUIPC_OK; /* a forked child's copy: the parent's socket and pools are left to it */
    PyThreadState *ts = PyEval_SaveThread();
    cuipc_producer_close(p);
    cuipc_status s = cuipc_producer_destroy_within(p, wait_ns);
    PyEval_RestoreThread(ts);
    return s;
}

static void producer_dealloc(ProducerObject *self) {
    /* Nobody to tell: a TIMEOUT left the GPU pool allocated, which is all it can do. */
    cuipc_status_ignore(producer_destroy(self, CUIPC_TEARDOWN_WAIT_NS));
    Py_XDECREF(self->retained);
    PyMem_Free(self->wire);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* -1 with Timeout set: calls of other threads were still inside after wait_ns (the producer is
 * left closed to new calls, torn down at its dealloc or a later close). Else closed, *s the
 * tear-down's status and why[] its message (a TIMEOUT: the GPU pool left allocated). */
static int close_producer(ProducerObject *self, int64_t wait_ns, cuipc_status *s,
                          char why[CUIPC_PY_WHY_BYTES]) {
    if (self->in_calls && !CUIPC_PY_FORKED(self)) {
        /* Their waits end with Closed at their next slice (a wrap's pool room given back). */
        self->closing = true; /* and stays so where the wait runs out: dealloc tears it down */
        if (cuipc_py_wait_for_calls(&self->in_calls, "producer", wait_ns) < 0)
            return -1;
    }
    *s = producer_destroy(self, wait_ns);
    self->closing = false; /* closed: p is NULL (and may be initialised again, as before) */
    /* Kept before the retained tensors go: their deallocs may call cuipc. */
    const char *last = cuipc_last_error();
    snprintf(why, CUIPC_PY_WHY_BYTES, "%s",
             *s == CUIPC_OK  ? ""
             : last && *last ? last
                             : cuipc_status_name(*s));
    /* The cuda_ipc senders' tensors were kept for the consumers; the pool is gone now. */
    if (self->retained)
        PyList_SetSlice(self->retained, 0, PyList_GET_SIZE(self->retained), NULL);
    return 0;
}

static PyObject *producer_close(ProducerObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"timeout", NULL};
    PyObject *timeout = NULL;
    int64_t ns = CUIPC_TEARDOWN_WAIT_NS;
    cuipc_status s;
    char why[CUIPC_PY_WHY_BYTES];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", names, &timeout) ||
        (timeout && cuipc_py_timeout(timeout, -1, &ns) < 0) ||
        close_producer(self, ns, &s, why) < 0)
        return NULL;
    if (s != CUIPC_OK) /* closed all the same: the message says what was left allocated */
        return cuipc_py_raise_msg(s, "%s", why);
    Py_RETURN_NONE;
}

typedef struct wait_ctx {
    cuipc_producer *p;
    uint32_t n;
} wait_ctx;

static bool producer_usable(PyObject *self) {
    return ((ProducerObject *)self)->p != NULL && !((ProducerObject *)self)->closing;
}

static cuipc_status accept_slice(void *ctx, int64_t slice_ns, bool last) {
    (void)last;
    wait_ctx *w = ctx;
    return cuipc_producer_accept(w->p, w->n, slice_ns);
}

static cuipc_status drain_slice(void *ctx, int64_t slice_ns, bool last) {
    (void)last;
    return cuipc_producer_drain(((wait_ctx *)ctx)->p, slice_ns);
}

static PyObject *producer_accept(ProducerObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"n", "timeout", NULL};
    PyObject *n_obj = Py_None, *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO", names, &n_obj, &timeout) ||
        !open_or_raise(self))
        return NULL;
    int64_t ns;
    if (cuipc_py_timeout(timeout, -1, &ns) < 0)
        return NULL;
    uint64_t n;
    if (cuipc_py_count_arg("accept", "n", n_obj, 1, UINT32_MAX, &n) < 0)
        return NULL;
    wait_ctx w = {.p = self->p, .n = (uint32_t)n};
    cuipc_status s;
    if (cuipc_py_wait((PyObject *)self, &self->in_calls, producer_usable, "accept", ns,
                      accept_slice, &w, &s) < 0)
        return NULL;
    if (s != CUIPC_OK)
        return cuipc_py_raise(s);
    return PyLong_FromUnsignedLong(cuipc_producer_consumer_count(self->p));
}

/* Convert the tree; for cuda_ipc the DLPack tensors stay with the producer (the mode exports the
 * senders' own allocations), otherwise they go back once the call returns. */
static cuipc_value *take_tree(ProducerObject *self, PyObject *tree, cuipc_stream stream,
                              PyObject **keep) {
    *keep = PyList_New(0);
    if (!*keep)
        return NULL;
    cuipc_value *v = cuipc_py_to_value(tree, stream, *keep);
    if (!v)
        Py_CLEAR(*keep);
    return v;
}

static int settle_keep(ProducerObject *self, PyObject *keep, cuipc_status s) {
    int r = 0;
    if (s == CUIPC_OK && self->mode == CUIPC_MODE_CUDA_IPC)
        r = PyList_SetSlice(self->retained, PyList_GET_SIZE(self->retained),
                            PyList_GET_SIZE(self->retained), keep);
    Py_DECREF(keep);
    return r;
}

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The phases of one send, for Producer._send_profiled (a benchmark's breakdown). */
enum { PHASE_ARGS, PHASE_CONVERT, PHASE_WRAP, PHASE_DELIVER, PHASE_COUNT };

/* The tree's conversion runs Python (__dlpack__, properties), which may close the producer (a
 * signal handler, another thread): then nothing is sent, and Closed says so. */
static bool closed_meanwhile(ProducerObject *self, cuipc_value *v, PyObject *keep) {
    if (producer_usable((PyObject *)self)) /* a close() waiting for other calls counts too */
        return false;
    cuipc_value_free(v);
    Py_DECREF(keep);
    cuipc_py_raise_msg(CUIPC_ERR_CLOSED, "the producer was closed while the tree was read");
    return true;
}

/* cuipc_producer_send's own steps (wrap, send_wrapped, free) with a clock read before, between
 * and after: under one GIL release, as send's one call, so that a profiled send differs from a
 * plain one by its clock reads and phase dict only, and the wrap and deliver phases hold the
 * core's calls alone (giving the GIL up and taking it back fall in the way in and out). A
 * benchmark's send: one try, not wrapped again when its consumers depart. */
static cuipc_status send_timed(cuipc_producer *p, const cuipc_value *v, cuipc_stream stream,
                               int64_t timeout_ns, uint64_t *start_at, uint64_t *wrapped_at,
                               uint64_t *done_at, bool *may_have_reached) {
    cuipc_value *wrapped = NULL;
    *start_at = mono_ns();
    cuipc_status s = cuipc_producer_wrap(p, v, stream, &wrapped);
    *wrapped_at = mono_ns();
    if (s == CUIPC_OK)
        s = cuipc_producer_send_wrapped(p, wrapped, timeout_ns);
    /* Out of room or stale: sent to nobody, its chunks kept: given back. */
    bool whole = s == CUIPC_ERR_TIMEOUT || s == CUIPC_ERR_STALE;
    *may_have_reached = wrapped && !whole;
    if (whole && wrapped)
        cuipc_status_ignore(cuipc_producer_cancel_wrapped(p, wrapped));
    cuipc_value_free(wrapped);
    *done_at = mono_ns();
    return s;
}

/* One slice of a wrap (and send): the wrap, unless an earlier slice made it, with its wait for
 * pool room cut to pool_ns; the send with its wait for ring room cut to ring_ns. in_ring: the
 * send ran (so a Timeout is the rings'). */
typedef struct slice_run {
    cuipc_producer *p;
    const cuipc_value *v;
    cuipc_stream stream;
    int64_t pool_ns, ring_ns;
    bool continued, last; /* of the wait for pool room: see cuipc_wait_slice */
    bool send, in_ring;
    bool rewrap;          /* every consumer it was wrapped for departed: wrap it again */
    int64_t send_ns;      /* how long the send took (its wait for ring room) */
    cuipc_value *wrapped; /* made by an earlier slice or this one; NULL once sent or failed */
} slice_run;

static cuipc_status run_slice(slice_run *r) {
    r->in_ring = false;
    r->rewrap = false;
    cuipc_status s = CUIPC_OK;
    if (!r->wrapped) {
        cuipc_wait_slice slice = {
            .wait_ns = r->pool_ns, .continued = r->continued, .last = r->last};
        s = cuipc_producer_wrap_within(r->p, r->v, r->stream, &slice, &r->wrapped);
    }
    if (s != CUIPC_OK || !r->send)
        return s;
    r->in_ring = true;
    /* Out of ring room the wrapped tree stays whole (its chunks and buffers still taken): the
     * next slice sends it as it is. Stale (every consumer it was wrapped for departed while it
     * waited, and its chunks went back with them), it is whole too, and given back. A send that
     * reached nobody because its consumers departed is wrapped again for those attached now, as
     * cuipc_producer_send does. Otherwise it is done with. */
    uint64_t sent_at = mono_ns();
    s = cuipc_producer_send_wrapped(r->p, r->wrapped, r->ring_ns);
    r->send_ns = (int64_t)(mono_ns() - sent_at);
    if (s == CUIPC_ERR_STALE)
        cuipc_status_ignore(cuipc_producer_cancel_wrapped(r->p, r->wrapped));
    r->rewrap = cuipc_producer_may_wrap_again(r->p, r->v, s);
    if (s != CUIPC_ERR_TIMEOUT) {
        cuipc_value_free(r->wrapped);
        r->wrapped = NULL;
    }
    return s;
}

/* A wrapped tree that will not be sent: its chunks and buffers given back (while the producer
 * is there: a handler may have closed it, and its pools with it). */
static void give_back_wrapped(ProducerObject *self, cuipc_value *wrapped) {
    if (wrapped && self->p && !CUIPC_PY_FORKED(self))
        cuipc_status_ignore(cuipc_producer_cancel_wrapped(self->p, wrapped));
    cuipc_value_free(wrapped);
}

/* Wrap (and send, unless wrapped_out asks for the wrapped tree) with both waits cut into slices:
 * for pool room, up to the policy's full_timeout; for room on the consumers' rings, up to ring_ns
 * (< 0: no limit). A wrap that runs out of time took nothing (buffers are taken last, so they
 * stay held), and the next slice wraps again; a send that runs out of time reached no consumer
 * and left the wrapped tree whole, and the next slice sends that same tree. Between slices the
 * signal handlers run: Ctrl-C stops a send blocked on a full pool or a stalled consumer, and what
 * it had taken is given back. The first slice is the plain call, with its one GIL release.
 * 0: *s holds the status (a Timeout only once a budget is spent); -1: an exception is set. */
static int wrap_send_sliced(ProducerObject *self, const cuipc_value *v, cuipc_stream stream,
                            int64_t ring_ns, cuipc_value **wrapped_out, cuipc_status *s,
                            bool *may_have_reached) {
    *may_have_reached = false;
    const int64_t whole[2] = {self->pool_wait_ns, ring_ns}; /* pool, rings */
    int64_t left[2] = {whole[0], whole[1]};
    bool pool_was_full = false;
    cuipc_value *wrapped = NULL; /* kept from a slice whose send ran out of ring room */
    uint32_t rewraps = 0;        /* each needs every consumer of the wrap before to have departed */
    for (;;) {
        slice_run r = {.p = self->p,
                       .v = v,
                       .stream = stream,
                       .pool_ns = cuipc_py_next_slice(left[0]),
                       .ring_ns = cuipc_py_next_slice(left[1]),
                       .continued = pool_was_full,
                       .send = wrapped_out == NULL,
                       .wrapped = wrapped};
        r.last = left[0] >= 0 && r.pool_ns == left[0];
        CUIPC_PY_CALL(self, *s, run_slice(&r));
        wrapped = r.wrapped;
        /* Wrapped again for the consumers attached now, as cuipc_producer_send does: the time
         * the send waited for room on a departed consumer's ring is taken off the ring budget,
         * and the next try has what is left (none: no wait). */
        if (r.rewrap && rewraps++ < CUIPC_MAX_CONSUMERS) {
            if (left[1] >= 0)
                left[1] = left[1] > r.send_ns ? left[1] - r.send_ns : 0;
            if (cuipc_py_between_slices((PyObject *)self, producer_usable, "send") < 0)
                return -1;
            continue;
        }
        if (*s != CUIPC_ERR_TIMEOUT) {
            /* A send that failed after room was found may have reached some consumers (a stale
             * one, or one whose consumers all departed, reached none). */
            *may_have_reached = r.in_ring && *s != CUIPC_ERR_STALE && *s != CUIPC_ERR_PEER_DEAD;
            if (wrapped_out)
                *wrapped_out = wrapped;
            return 0;
        }
        int w = r.in_ring; /* the wait that ran out of time */
        pool_was_full |= !r.in_ring;
        int64_t slice = w ? r.ring_ns : r.pool_ns;
        if (left[w] >= 0 && (left[w] -= slice) <= 0) {
            cuipc_py_raise_timed_out(*s, whole[w], slice); /* first: reads cuipc_last_error() */
            give_back_wrapped(self, wrapped);
            return -1;
        }
        if (cuipc_py_between_slices((PyObject *)self, producer_usable,
                                    wrapped_out ? "wrap" : "send") < 0) {
            give_back_wrapped(self, wrapped);
            return -1;
        }
    }
}

/* send(tree, stream, timeout). phases: NULL, or where each phase's nanoseconds go (the same
 * work: cuipc_producer_send is wrap + send_wrapped, called apart to time them apart). */
static bool send_tree(ProducerObject *self, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, uint64_t *phases) {
    static const char *const names[] = {"tree", "stream", "timeout"};
    PyObject *a[3];
    uint64_t t0 = phases ? mono_ns() : 0, t1 = 0, t2 = 0, t3 = 0;
    if (cuipc_py_args("send", names, 3, 1, args, nargs, kwnames, a) < 0 || !open_or_raise(self))
        return false;
    PyObject *tree = a[0];
    cuipc_stream stream;
    int64_t ns;
    if (cuipc_py_stream(a[1], &stream) < 0 || cuipc_py_timeout(a[2], -1, &ns) < 0)
        return false;
    if (phases)
        t1 = mono_ns();
    PyObject *keep;
    cuipc_value *v = take_tree(self, tree, stream, &keep);
    if (!v)
        return false;
    if (closed_meanwhile(self, v, keep))
        return false;
    cuipc_status s;
    bool may_have_reached = false; /* then cuda_ipc keeps the tensors, as for a send that went */
    if (!phases) {
        if (wrap_send_sliced(self, v, stream, ns, NULL, &s, &may_have_reached) < 0) {
            cuipc_value_free(v);
            Py_DECREF(keep);
            return false;
        }
    } else {
        uint64_t converted = mono_ns(), t4 = 0;
        CUIPC_PY_CALL(self, s,
                      send_timed(self->p, v, stream, ns, &t2, &t3, &t4, &may_have_reached));
        phases[PHASE_ARGS] = t1 - t0;
        phases[PHASE_CONVERT] = converted - t1;
        phases[PHASE_WRAP] = t3 - t2;
        phases[PHASE_DELIVER] = t4 - t3;
    }
    cuipc_value_free(v);
    if (settle_keep(self, keep, may_have_reached ? CUIPC_OK : s) < 0)
        return false;
    if (s != CUIPC_OK)
        return cuipc_py_raise(s), false;
    return true;
}

static PyObject *producer_send(ProducerObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    if (!send_tree(self, args, nargs, kwnames, NULL))
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *producer_send_profiled(ProducerObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames) {
    uint64_t ph[PHASE_COUNT];
    if (!send_tree(self, args, nargs, kwnames, ph))
        return NULL;
    return Py_BuildValue("{s:K,s:K,s:K,s:K}", "args", ph[PHASE_ARGS], "convert", ph[PHASE_CONVERT],
                         "wrap", ph[PHASE_WRAP], "deliver", ph[PHASE_DELIVER]);
}

/* The encoding of a wrapped tree: what the application carries on its own channel. It is
 * written once, into the producer's buffer; only when that is too short (or the tree cannot be
 * encoded) is the size asked, which writes it again. */
static PyObject *encode_bytes(ProducerObject *self, const cuipc_value *wrapped) {
    size_t len = 0;
    if (self->wire == NULL || cuipc_encode(wrapped, self->wire, self->wire_cap, &len) != CUIPC_OK) {
        cuipc_status s = cuipc_encoded_size(wrapped, &len);
        if (s != CUIPC_OK)
            return cuipc_py_raise(s);
        char *grown = PyMem_Realloc(self->wire, len);
        if (!grown)
            return PyErr_NoMemory();
        self->wire = grown;
        self->wire_cap = len;
        s = cuipc_encode(wrapped, self->wire, self->wire_cap, &len);
        if (s != CUIPC_OK)
            return cuipc_py_raise(s);
    }
    return PyBytes_FromStringAndSize(self->wire, (Py_ssize_t)len);
}

static PyObject *producer_wrap(ProducerObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames) {
    static const char *const names[] = {"tree", "stream"};
    PyObject *a[2];
    if (cuipc_py_args("wrap", names, 2, 1, args, nargs, kwnames, a) < 0 || !open_or_raise(self))
        return NULL;
    PyObject *tree = a[0];
    cuipc_stream stream;
    if (cuipc_py_stream(a[1], &stream) < 0)
        return NULL;
    PyObject *keep;
    cuipc_value *v = take_tree(self, tree, stream, &keep);
    if (!v || closed_meanwhile(self, v, keep))
        return NULL;
    cuipc_value *wrapped = NULL;
    cuipc_status s;
    bool sent_none; /* a wrap sends nothing */
    if (wrap_send_sliced(self, v, stream, -1, &wrapped, &s, &sent_none) < 0) {
        cuipc_value_free(v);
        Py_DECREF(keep);
        return NULL;
    }
    cuipc_value_free(v);
    PyObject *out = NULL;
    if (s == CUIPC_OK) {
        out = encode_bytes(self, wrapped);
        if (!out) /* the Python error is the one raised; cancelling never fails */
            cuipc_status_ignore(cuipc_producer_cancel_wrapped(self->p, wrapped));
    } else {
        cuipc_py_raise(s);
    }
    cuipc_value_free(wrapped);
    if (settle_keep(self, keep, out ? CUIPC_OK : s) < 0)
        Py_CLEAR(out);
    return out;
}

static PyObject *producer_cancel(ProducerObject *self, PyObject *arg) {
    Py_buffer b;
    if (!open_or_raise(self) || PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    cuipc_value *v = NULL;
    cuipc_status s = cuipc_decode(b.buf, (size_t)b.len, &v);
    PyBuffer_Release(&b);
    if (s == CUIPC_OK)
        s = cuipc_producer_cancel_wrapped(self->p, v);
    cuipc_value_free(v);
    if (s != CUIPC_OK)
        return cuipc_py_raise(s);
    Py_RETURN_NONE;
}

typedef struct buffer_ctx {
    cuipc_producer *p;
    cuipc_memory_kind memory;
    uint64_t nbytes;
    void *data;
    bool continued; /* an earlier slice found the pool full */
} buffer_ctx;

static cuipc_status buffer_slice(void *ctx, int64_t slice_ns, bool last) {
    buffer_ctx *b = ctx;
    cuipc_wait_slice slice = {.wait_ns = slice_ns, .continued = b->continued, .last = last};
    cuipc_status s =
        cuipc_producer_buffer_alloc_within(b->p, b->memory, b->nbytes, &slice, &b->data);
    b->continued = true;
    return s;
}

static PyObject *producer_buffer(ProducerObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"nbytes", "device", "timeout", NULL};
    uint64_t nbytes;
    PyObject *nbytes_obj, *device_obj = Py_None, *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO", names, &nbytes_obj, &device_obj, &timeout) ||
        !open_or_raise(self))
        return NULL;
    /* Checked, not wrapped modulo 2**64 (a negative size is no huge one); a tensor's shape is
     * an int64. None is no size either. */
    if (nbytes_obj == Py_None)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "buffer: nbytes must be an int, not None");
    if (cuipc_py_count_arg("buffer", "nbytes", nbytes_obj, 0, INT64_MAX, &nbytes) < 0)
        return NULL;
    int32_t fallback = self->mode == CUIPC_MODE_CUDA_IPC_POOL ? self->device : CUIPC_DEVICE_HOST;
    int32_t device;
    int64_t ns;
    if (cuipc_py_device(device_obj, fallback, &device) < 0 ||
        cuipc_py_timeout(timeout, -1, &ns) < 0)
        return NULL;
    if (device != CUIPC_DEVICE_HOST && self->mode != CUIPC_MODE_CUDA_IPC_POOL)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                  "buffer on cuda:%d: this producer has no GPU pool (mode %s)",
                                  device, cuipc_mode_name(self->mode));
    if (device != CUIPC_DEVICE_HOST && device != self->device)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                  "buffer on cuda:%d: the producer's GPU pool is on cuda:%d",
                                  device, self->device);
    /* Waited for in slices (timeout None: the policy's wait, as the library's -1 means). */
    buffer_ctx b = {.p = self->p,
                    .memory = device == CUIPC_DEVICE_HOST ? CUIPC_MEMORY_HOST : CUIPC_MEMORY_CUDA,
                    .nbytes = nbytes};
    cuipc_status s;
    if (cuipc_py_wait((PyObject *)self, &self->in_calls, producer_usable, "buffer",
                      ns < 0 ? self->pool_wait_ns : ns, buffer_slice, &b, &s) < 0)
        return NULL;
    if (s != CUIPC_OK)
        return cuipc_py_raise(s);
    void *data = b.data;
    cuipc_tensor t;
    int64_t shape[1] = {(int64_t)nbytes};
    PyObject *tensor = NULL;
    s = cuipc_tensor_init(&t, data, device, CUIPC_DTYPE_U8, 1, shape);
    if (s == CUIPC_OK)
        tensor = cuipc_py_tensor_new(&t, TENSOR_BUFFER, (PyObject *)self);
    else
        cuipc_py_raise(s);
    if (tensor) /* which allocation: a later buffer at the same address is another one */
        ((TensorObject *)tensor)->buffer_id = cuipc_producer_buffer_id(self->p, data);
    if (!tensor) /* the error raised above is the one reported; the free undoes the alloc */
        cuipc_status_ignore(cuipc_producer_buffer_free(self->p, data));
    return tensor;
}

static PyObject *producer_free_buffer(ProducerObject *self, PyObject *arg) {
    if (!open_or_raise(self))
        return NULL;
    if (!PyObject_TypeCheck(arg, &TensorType) || ((TensorObject *)arg)->origin != TENSOR_BUFFER ||
        ((TensorObject *)arg)->owner != (PyObject *)self)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG,
                                  "free_buffer takes a buffer of this producer");
    /* Sent or freed already: the address may be a newer buffer's, not this one's to free. */
    if (!cuipc_py_tensor_usable((TensorObject *)arg))
        return NULL;
    cuipc_status s = cuipc_producer_buffer_free(self->p, ((TensorObject *)arg)->t.data);
    if (s != CUIPC_OK)
        return cuipc_py_raise(s);
    Py_RETURN_NONE;
}

static PyObject *producer_drain(ProducerObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    int64_t ns;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", names, &timeout) || !open_or_raise(self) ||
        cuipc_py_timeout(timeout, -1, &ns) < 0)
        return NULL;
    wait_ctx w = {.p = self->p};
    cuipc_status s;
    if (cuipc_py_wait((PyObject *)self, &self->in_calls, producer_usable, "drain", ns, drain_slice,
                      &w, &s) < 0)
        return NULL;
    if (s != CUIPC_OK)
        return cuipc_py_raise(s);
    Py_RETURN_NONE;
}

static PyObject *pool_stats_dict(const cuipc_pool_stats *s) {
    return Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:d,s:I,s:I,s:I,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}",
        "size", s->size, "used_bytes", s->used_bytes, "high_water_bytes", s->high_water_bytes,
        "largest_free", s->largest_free, "free_blocks", s->free_blocks, "fragmentation",
        s->fragmentation, "in_flight", s->in_flight, "held", s->held, "in_flight_high_water",
        s->in_flight_high_water, "allocs", s->allocs, "recycled", s->recycled, "cancelled",
        s->cancelled, "full_events", s->full_events, "full_failures", s->full_failures,
        "on_demand_reclaims", s->on_demand_reclaims, "dead_consumer_reclaims",
        s->dead_consumer_reclaims, "stale_releases", s->stale_releases, "duplicate_releases",
        s->duplicate_releases, "wait_ns_total", s->wait_ns_total, "recycle_lag_ns_max",
        s->recycle_lag_ns_max, "recycle_lag_ns_total", s->recycle_lag_ns_total);
}

static PyObject *producer_stats(ProducerObject *self, PyObject *unused) {
    if (!open_or_raise(self))
        return NULL;
    cuipc_producer_stats st;
    cuipc_producer_stats_get(self->p, &st);
    PyObject *gpu = pool_stats_dict(&st.gpu_pool), *host = pool_stats_dict(&st.host_pool);
    PyObject *r = gpu && host
                      ? Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:I,s:I,s:I,s:I,s:K,s:K,s:O,s:O}",
                                      "messages_sent", st.messages_sent, "bytes_sent",
                                      st.bytes_sent, "fallbacks", st.fallbacks, "ipc_exports",
                                      st.ipc_exports, "ipc_retained_bytes", st.ipc_retained_bytes,
                                      "consumers_attached", st.consumers_attached, "consumers_now",
                                      cuipc_producer_consumer_count(self->p), "consumers_detached",
                                      st.consumers_detached, "consumers_dead", st.consumers_dead,
                                      "peers_refused", st.peers_refused, "peers_timed_out",
                                      st.peers_timed_out, "gpu_pool", gpu, "host_pool", host)
                      : NULL;
    Py_XDECREF(gpu);
    Py_XDECREF(host);
    return r;
}

static PyObject *producer_socket_path(ProducerObject *self, void *unused) {
    if (!open_or_raise(self))
        return NULL;
    return PyUnicode_FromString(cuipc_producer_socket_path(self->p));
}

static PyObject *producer_consumer_count(ProducerObject *self, void *unused) {
    return PyLong_FromUnsignedLong(self->p ? cuipc_producer_consumer_count(self->p) : 0);
}

static PyObject *producer_mode(ProducerObject *self, void *unused) {
    return PyUnicode_FromString(cuipc_mode_name(self->mode));
}

static PyObject *producer_closed(ProducerObject *self, void *unused) {
    return PyBool_FromLong(self->p == NULL || self->closing);
}

static PyObject *producer_enter(PyObject *self, PyObject *unused) {
    return Py_NewRef(self);
}

static PyObject *producer_exit(ProducerObject *self, PyObject *args) {
    cuipc_status s;
    char why[CUIPC_PY_WHY_BYTES];
    if (close_producer(self, CUIPC_TEARDOWN_WAIT_NS, &s, why) < 0)
        return NULL;
    if (s == CUIPC_OK)
        return Py_NewRef(Py_False);
    /* A block that raised keeps its exception: the close's (the GPU pool left allocated) is
     * then a warning beside it. */
    bool block_raised = PyTuple_GET_SIZE(args) > 0 && PyTuple_GET_ITEM(args, 0) != Py_None;
    if (!block_raised)
        return cuipc_py_raise_msg(s, "%s", why);
    if (PyErr_WarnFormat(PyExc_RuntimeWarning, 1, "closing the producer: %s", why) < 0)
        return NULL;
    return Py_NewRef(Py_False);
}

static PyMethodDef producer_methods[] = {
    {"accept", (PyCFunction)(void (*)(void))producer_accept, METH_VARARGS | METH_KEYWORDS,
     "accept(n=1, timeout=None) -> consumers attached. Wait until n consumers are attached."},
    {"send", (PyCFunction)(void (*)(void))producer_send, METH_FASTCALL | METH_KEYWORDS,
     "send(tree, stream=None, timeout=None): wrap the tree's tensors and broadcast it to every "
     "consumer. Waits for pool room up to full_timeout and for ring room up to timeout (None: no "
     "limit), in slices that run signal handlers; a send that runs out of time or is stopped "
     "reached no consumer."},
    {"_send_profiled", (PyCFunction)(void (*)(void))producer_send_profiled,
     METH_FASTCALL | METH_KEYWORDS,
     "_send_profiled(tree, stream=None, timeout=None) -> {phase: ns}: send, timed by phase "
     "(args, convert: the tree and its tensors taken in, wrap: the core's copy-in, deliver: "
     "encode and ring send), for benchmarks."},
    {"wrap", (PyCFunction)(void (*)(void))producer_wrap, METH_FASTCALL | METH_KEYWORDS,
     "wrap(tree, stream=None) -> bytes for the application's own channel (Consumer.adopt)."},
    {"cancel", (PyCFunction)producer_cancel, METH_O,
     "cancel(wrapped_bytes): give back the chunks of wrapped bytes that will never be delivered."},
    {"buffer", (PyCFunction)(void (*)(void))producer_buffer, METH_VARARGS | METH_KEYWORDS,
     "buffer(nbytes, device=None, timeout=None) -> writable u8 Tensor inside the pool (zero-copy "
     "produce)."},
    {"free_buffer", (PyCFunction)producer_free_buffer, METH_O,
     "Give back a buffer that will not be sent."},
    {"drain", (PyCFunction)(void (*)(void))producer_drain, METH_VARARGS | METH_KEYWORDS,
     "drain(timeout=None): wait until every chunk in flight was released."},
    {"stats", (PyCFunction)producer_stats, METH_NOARGS,
     "Counters of the producer and its pools (dict)."},
    {"close", (PyCFunction)(void (*)(void))producer_close, METH_VARARGS | METH_KEYWORDS,
     "close(timeout=10.0): tell the consumers no more comes; free the pools. The GPU pool first "
     "waits up to timeout (None: no limit) for the copies that sends queued on streams to run; "
     "past it the pool's memory is left allocated rather than freed under them, and Timeout is "
     "raised, the producer closed all the same. Calls under way on other threads (send, accept, "
     "drain, buffer) end first with Closed, within 200 ms; the close waits up to timeout for "
     "them."},
    {"__enter__", producer_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)producer_exit, METH_VARARGS, NULL},
    {NULL}};

static PyGetSetDef producer_getset[] = {
    {"socket_path", (getter)producer_socket_path, NULL, "where consumers attach", NULL},
    {"consumer_count", (getter)producer_consumer_count, NULL, "consumers attached and alive", NULL},
    {"mode", (getter)producer_mode, NULL, "transport mode", NULL},
    {"closed", (getter)producer_closed, NULL, "True after close()", NULL},
    {NULL}};

PyTypeObject ProducerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cuipc.Producer",
    .tp_basicsize = sizeof(ProducerObject),
    .tp_dealloc = (destructor)producer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc =
        "Producer(mode=\"default\", gpu_pool_bytes=None, host_pool_bytes=64 MiB, max_consumers=1, "
        "device=0, full_policy=\"wait\", full_timeout=1.0 (None: no limit), slots=4096, "
        "ring_bytes=1 MiB, "
        "socket_path=None)",
    .tp_methods = producer_methods,
    .tp_getset = producer_getset,
    .tp_init = (initproc)producer_init,
    .tp_new = PyType_GenericNew,
};
