/* The _cuipc extension module: types, error classes, a few module functions. */
#include <pthread.h>

#include "cpu_gauge.h"
#include "cuipc_version.h"
#include "ext.h"

unsigned long cuipc_py_fork_gen;

static cuipc_consumer **consumers;
static size_t n_consumers, cap_consumers;

void cuipc_py_consumer_register(cuipc_consumer *c) {
    if (n_consumers == cap_consumers) {
        size_t cap = cap_consumers ? 2 * cap_consumers : 8;
        cuipc_consumer **more = PyMem_RawRealloc(consumers, cap * sizeof *more);
        if (!more)
            return; /* unregistered: a child then keeps this socket until it exits, no more */
        consumers = more;
        cap_consumers = cap;
    }
    consumers[n_consumers++] = c;
}

void cuipc_py_consumer_unregister(cuipc_consumer *c) {
    for (size_t i = 0; i < n_consumers; i++)
        if (consumers[i] == c) {
            consumers[i] = consumers[--n_consumers];
            return;
        }
}

/* A forked child's copy of a producer or consumer is the parent's: its sockets, rings and pool
 * slots. Objects made before the fork see the generation move and refuse to act (fork_gen); the
 * consumers' sockets are closed here, and forgotten. */
static void forked_child(void) {
    cuipc_py_fork_gen++;
    for (size_t i = 0; i < n_consumers; i++)
        cuipc_consumer_drop_socket_in_child(consumers[i]);
    n_consumers = 0;
}

static PyObject *gpu_count(PyObject *m, PyObject *unused) {
    int n;
    PyThreadState *ts = PyEval_SaveThread();
    n = cuipc_gpu_count();
    PyEval_RestoreThread(ts);
    return PyLong_FromLong(n);
}

static PyObject *status_name(PyObject *m, PyObject *arg) {
    long s = PyLong_AsLong(arg);
    if (s == -1 && PyErr_Occurred())
        return NULL;
    return PyUnicode_FromString(cuipc_status_name((cuipc_status)s));
}

/* The class a status raises, with the core's own message: lets tests check every mapping. */
static PyObject *raise_status(PyObject *m, PyObject *args) {
    int s;
    const char *msg;
    if (!PyArg_ParseTuple(args, "is", &s, &msg))
        return NULL;
    if (s <= 0 || s >= CUIPC_STATUS_COUNT_)
        return cuipc_py_raise_msg(CUIPC_ERR_INVALID_ARG, "no status %d", s);
    return cuipc_py_raise_msg((cuipc_status)s, "%s", msg);
}

/* The harness's CPU-state gauge (harness/src/cpu_gauge.h), for benchmarks set beside its runs:
 * one walk's time in ns, with the GIL held as a harness role walks on its own thread. */
static cuipc_cpu_gauge gauge;

static PyObject *cpu_gauge_ns(PyObject *m, PyObject *unused) {
    if (gauge.next == NULL && !cuipc_cpu_gauge_init(&gauge))
        return PyErr_NoMemory();
    return PyLong_FromUnsignedLongLong(cuipc_cpu_gauge_ns(&gauge));
}

/* Its back-to-back walk at init (the set in the L2): the reference a walk is judged against. */
static PyObject *cpu_gauge_resident_ns(PyObject *m, PyObject *unused) {
    if (gauge.next == NULL && !cuipc_cpu_gauge_init(&gauge))
        return PyErr_NoMemory();
    return PyLong_FromUnsignedLongLong(gauge.resident_ns);
}

static PyMethodDef module_methods[] = {
    {"gpu_count", gpu_count, METH_NOARGS, "Usable CUDA devices (0 without a driver or device)."},
    {"status_name", status_name, METH_O, "Short name of a cuipc status code."},
    {"_raise_status", raise_status, METH_VARARGS, "Raise the error class of a status (tests)."},
    {"_cpu_gauge_ns", cpu_gauge_ns, METH_NOARGS,
     "One walk of the harness's CPU-state gauge: its time in ns (benchmarks)."},
    {"_cpu_gauge_resident_ns", cpu_gauge_resident_ns, METH_NOARGS,
     "The gauge's back-to-back walk at its start, in ns: its L2-resident reference."},
    {"_torch_exchange", (PyCFunction)(void (*)(void))cuipc_py_torch_exchange_switch, METH_FASTCALL,
     "_torch_exchange([on]): True or False, use torch's DLPack C exchange table or the calls into "
     "torch's bindings; None, as the process has it (CUIPC_PY_TORCH_EXCHANGE=0, which True does "
     "not override); no argument, only ask. Returns whether the table is in use."},
    {"_torch_exchange_fault", cuipc_py_torch_exchange_fault, METH_O,
     "_torch_exchange_fault(kind): the next torch tensor made through the exchange table fails "
     "(tests): \"refused\" by torch itself, or \"deleted_then_refused\"."},
    {"_torch_exchange_count", cuipc_py_torch_exchange_count, METH_NOARGS,
     "The torch tensors made through the exchange table in this process (tests)."},
    {NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cuipc._cuipc",
    .m_doc = "cuipc's C extension (use the cuipc package).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__cuipc(void) {
    static bool atfork;
    if (!atfork && pthread_atfork(NULL, NULL, forked_child) == 0)
        atfork = true;
    PyTypeObject *types[] = {&ProducerType, &ConsumerType, &MessageType, &TreeType, &TensorType};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (PyType_Ready(types[i]) < 0)
            return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    PyObject *slow_above = PyFloat_FromDouble(CUIPC_CPU_GAUGE_SLOW_ABOVE);
    int added = slow_above ? PyModule_AddObjectRef(m, "_cpu_gauge_slow_above", slow_above) : -1;
    Py_XDECREF(slow_above);
    if (added < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (cuipc_py_errors_init(m) < 0 ||
        PyModule_AddObjectRef(m, "Producer", (PyObject *)&ProducerType) < 0 ||
        PyModule_AddObjectRef(m, "Consumer", (PyObject *)&ConsumerType) < 0 ||
        PyModule_AddObjectRef(m, "Message", (PyObject *)&MessageType) < 0 ||
        PyModule_AddObjectRef(m, "Tensor", (PyObject *)&TensorType) < 0 ||
        PyModule_AddIntConstant(m, "STATUS_COUNT", CUIPC_STATUS_COUNT_) < 0 ||
        /* what was built: results files name it (git describe; plain version outside git) */
        PyModule_AddStringConstant(m, "build_version", CUIPC_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
