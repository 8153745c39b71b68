/* torch's DLPack C exchange table (DLPack 1.2; torch 2.10 on): torch.Tensor's
 * __dlpack_c_exchange_api__ capsule points at C functions that read a tensor's layout, give
 * torch's current stream and make a torch.Tensor over a DLPack tensor, each one C call where
 * the send's reads (torch_tensor.c), the current-stream lookup and torch._C._from_dlpack are
 * several calls into torch's Python bindings. With messages milliseconds apart each such call
 * runs cold, so fewer of them is most of what the Python layer can save per message.
 *
 * Looked up once, when torch has been imported; an older torch, a table of another major version
 * or one missing a function leaves the other paths in use, which give the same tensors. The
 * environment variable CUIPC_PY_TORCH_EXCHANGE=0 turns it off for the process (should a torch's
 * table misbehave; nothing turns it back on), _cuipc._torch_exchange(False) at run time (tests
 * and benchmarks comparing the paths; True and None undo it). */
#include <stdlib.h>
#include <string.h>

#include "ext.h"

/* Tests: the failure armed for the next tensor made through the table (no other way to have the
 * table's tensor maker fail on purpose), and how many it has made. */
static cuipc_py_exchange_fault next_fault;
static uint64_t tensors_made;

static struct {
    bool looked;
    bool env_off;                 /* CUIPC_PY_TORCH_EXCHANGE=0 */
    int forced;                   /* _torch_exchange(on): 1 on, 0 off; -1: the process's way */
    const DLPackExchangeAPI *api; /* the table, or NULL: none usable */
    bool cuda_ready;              /* torch.cuda._lazy_init() ran, in the process of fork_gen */
    unsigned long cuda_ready_gen;
} ex = {.forced = -1};

/* The table of the major version declared in dlpack.h, from the newest one down the chain. */
static const DLPackExchangeAPI *usable_table(PyObject *capsule) {
    if (!PyCapsule_IsValid(capsule, "dlpack_exchange_api"))
        return NULL;
    const DLPackExchangeAPIHeader *h = PyCapsule_GetPointer(capsule, "dlpack_exchange_api");
    while (h && h->version.major != DLPACK_MAJOR_VERSION)
        h = h->prev_api;
    /* The table's layout came with 1.2: an older minor cannot be one. */
    if (!h || h->version.minor < 2)
        return NULL;
    const DLPackExchangeAPI *api = (const DLPackExchangeAPI *)h;
    if (!api->managed_tensor_to_py_object_no_sync || !api->current_work_stream)
        return NULL;
    return api;
}

static void look_up(void) {
    static PyObject *name;
    PyObject *torch = cuipc_py_imported("torch", &name);
    if (!torch)
        return; /* not imported yet: no torch tensor exists; look again when asked again */
    const char *env = getenv("CUIPC_PY_TORCH_EXCHANGE");
    ex.env_off = env && strcmp(env, "0") == 0;
    PyObject *type = PyObject_GetAttrString(torch, "Tensor");
    PyObject *capsule = type ? PyObject_GetAttrString(type, "__dlpack_c_exchange_api__") : NULL;
    ex.api = capsule ? usable_table(capsule) : NULL;
    PyErr_Clear(); /* a torch without the table: the other paths */
    Py_XDECREF(capsule);
    Py_XDECREF(type);
    Py_DECREF(torch);
    ex.looked = true;
}

const DLPackExchangeAPI *cuipc_py_torch_exchange(void) {
    if (!ex.looked)
        look_up();
    bool off = ex.env_off || ex.forced == 0; /* the environment's off is not overridden */
    return off ? NULL : ex.api;
}

PyObject *cuipc_py_torch_exchange_switch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs > 1)
        return PyErr_Format(PyExc_TypeError, "_torch_exchange takes at most one argument");
    if (nargs == 1)
        next_fault = EXCHANGE_FAULT_NONE; /* armed for the way now left */
    if (nargs == 1 && args[0] == Py_None) {
        ex.forced = -1;
    } else if (nargs == 1) {
        int on = PyObject_IsTrue(args[0]);
        if (on < 0)
            return NULL;
        ex.forced = on;
    }
    return PyBool_FromLong(cuipc_py_torch_exchange() != NULL);
}

int cuipc_py_torch_cuda_init(void) {
    if (ex.cuda_ready && ex.cuda_ready_gen == cuipc_py_fork_gen)
        return 0;
    PyObject *cuda = PyImport_ImportModule("torch.cuda");
    PyObject *r = cuda ? PyObject_CallMethod(cuda, "_lazy_init", NULL) : NULL;
    Py_XDECREF(cuda);
    if (!r)
        return -1;
    Py_DECREF(r);
    ex.cuda_ready = true;
    ex.cuda_ready_gen = cuipc_py_fork_gen;
    return 0;
}

cuipc_py_exchange_fault cuipc_py_torch_exchange_fault_take(void) {
    cuipc_py_exchange_fault f = next_fault;
    next_fault = EXCHANGE_FAULT_NONE;
    return f;
}

void cuipc_py_torch_exchange_made(void) {
    tensors_made++;
}

PyObject *cuipc_py_torch_exchange_count(PyObject *self, PyObject *unused) {
    return PyLong_FromUnsignedLongLong(tensors_made);
}

PyObject *cuipc_py_torch_exchange_fault(PyObject *self, PyObject *arg) {
    static const char *names[] = {"refused", "deleted_then_refused"};
    const char *s = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    int kind = 0;
    for (int i = 0; s && i < 2; i++)
        if (strcmp(s, names[i]) == 0)
            kind = i + 1;
    PyErr_Clear();
    if (!kind)
        return PyErr_Format(
            PyExc_ValueError,
            "_torch_exchange_fault: \"refused\" or \"deleted_then_refused\", not %R", arg);
    if (!cuipc_py_torch_exchange()) /* armed, it would wait for a later, unrelated tensor */
        return PyErr_Format(PyExc_RuntimeError,
                            "_torch_exchange_fault: torch's DLPack C exchange table is not in use");
    next_fault = (cuipc_py_exchange_fault)kind;
    Py_RETURN_NONE;
}
