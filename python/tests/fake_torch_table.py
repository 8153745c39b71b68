"""A DLPack C exchange table (DLPack 1.2: what torch 2.10 on puts on torch.Tensor as
__dlpack_c_exchange_api__) for a torch that has none, made with ctypes over that torch's own
methods and DLPack reader. conftest installs it where torch has no table of its own, before the
extension first looks for one, so that the extension's table path (the layout read in one call,
the tensors made, their deleters, the fault hooks) runs where no real table exists: on torch 1.13,
in CI. It stands in for torch's functions with torch 2.x's results (bool made natively), not for
torch's code: the GPU machine's torch 2.11 runs the same tests against the real table.

A ctypes callback cannot leave a Python exception set, so a refusal here returns -1 with none:
the extension then raises its own RuntimeError."""
import ctypes
import itertools
import weakref

from dlpack_ctypes import DLManagedTensor, DLTensor, Versioned

DL_CPU, DL_CUDA = 1, 2


class Header(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("prev", ctypes.c_void_p)]


class Table(ctypes.Structure):
    _fields_ = [("header", Header), ("allocator", ctypes.c_void_p), ("from_py", ctypes.c_void_p),
                ("to_py", ctypes.c_void_p), ("dltensor_from_py", ctypes.c_void_p),
                ("current_stream", ctypes.c_void_p)]


DLTENSOR_FROM_PY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
TO_PY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
CURRENT_STREAM = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p)
DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]

# What lives as long as what it describes.
_layouts = {}  # (shape, strides) arrays of a tensor read, until that tensor goes
_next_layout = itertools.count()
_legacy = {}  # address -> the legacy managed tensor handed to torch's reader, until its deleter
_state = {}


def _codes(torch):
    table = {"bool": (6, 8), "uint8": (1, 8), "int8": (0, 8), "int16": (0, 16), "int32": (0, 32),
             "int64": (0, 64), "float16": (2, 16), "bfloat16": (4, 16), "float32": (2, 32),
             "float64": (2, 64), "uint16": (1, 16), "uint32": (1, 32), "uint64": (1, 64),
             "complex64": (5, 64), "complex128": (5, 128)}
    return {getattr(torch, k): v for k, v in table.items() if hasattr(torch, k)}


def _dltensor_from_py(obj_ptr, out_ptr):
    try:
        torch, base, codes = _state["torch"], _state["base"], _state["codes"]
        t = ctypes.cast(obj_ptr, ctypes.py_object).value
        kind = t.device.type
        if t.dtype not in codes or kind not in ("cpu", "cuda"):  # torch's: no DLPack device
            return -1
        n = t.dim()
        shape = (ctypes.c_int64 * max(n, 1))(*t.shape)
        strides = (ctypes.c_int64 * max(n, 1))(*base.stride(t))  # not torch.Tensor's: tests spy it
        key = next(_next_layout)
        _layouts[key] = (shape, strides)
        weakref.finalize(t, _layouts.pop, key, None)
        out = DLTensor.from_address(out_ptr)
        out.data = base.data_ptr(t)
        out.device_type, out.device_id = (DL_CUDA, t.device.index) if kind == "cuda" else (DL_CPU, 0)
        out.ndim = n
        out.code, out.bits = codes[t.dtype]
        out.lanes = 1
        out.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
        out.strides = ctypes.cast(strides, ctypes.POINTER(ctypes.c_int64))
        out.byte_offset = 0
        return 0
    except Exception:
        return -1


@DELETER
def _legacy_deleter(address):
    legacy = _legacy.pop(address)
    versioned = legacy.manager_ctx
    DELETER(Versioned.from_address(versioned).deleter)(versioned)


def _to_py(versioned_ptr, out_ptr):
    try:
        torch = _state["torch"]
        v = Versioned.from_address(versioned_ptr)
        if v.dl.lanes != 1:
            return -1
        as_bool = (v.dl.code, v.dl.bits) == (6, 8)
        legacy = DLManagedTensor()
        ctypes.memmove(ctypes.addressof(legacy.dl), ctypes.addressof(v.dl), ctypes.sizeof(DLTensor))
        if as_bool:  # torch 1.13's reader has no bool: through u8, viewed back
            legacy.dl.code = 1
        legacy.manager_ctx = versioned_ptr
        legacy.deleter = ctypes.cast(_legacy_deleter, ctypes.c_void_p)
        _legacy[ctypes.addressof(legacy)] = legacy
        capsule = _capsule_new(ctypes.addressof(legacy), b"dltensor", None)
        try:
            t = torch.utils.dlpack.from_dlpack(capsule)
        except Exception:
            # Refused: not taken (or taken, and its deleter has run already)
            _legacy.pop(ctypes.addressof(legacy), None)
            return -1
        if as_bool:
            t = t.view(torch.bool)
        _incref(t)  # the caller's new reference
        ctypes.c_void_p.from_address(out_ptr).value = id(t)
        return 0
    except Exception:
        return -1


def _current_stream(device_type, device_id, out_ptr):
    try:
        torch = _state["torch"]
        stream = torch._C._cuda_getCurrentRawStream(device_id) if device_type == DL_CUDA else 0
        ctypes.c_void_p.from_address(out_ptr).value = stream or None
        return 0
    except Exception:
        return -1


_fns = (DLTENSOR_FROM_PY(_dltensor_from_py), TO_PY(_to_py), CURRENT_STREAM(_current_stream))


def install(torch):
    """Puts the table on torch.Tensor where torch has none; True if it did."""
    if hasattr(torch.Tensor, "__dlpack_c_exchange_api__"):
        return False
    _state.update(torch=torch, base=getattr(torch._C, "TensorBase", None) or torch._C._TensorBase,
                  codes=_codes(torch))
    table = Table()
    table.header.major, table.header.minor = 1, 2
    table.dltensor_from_py, table.to_py, table.current_stream = (
        ctypes.cast(f, ctypes.c_void_p) for f in (_fns[0], _fns[1], _fns[2]))
    _state["table"] = table
    torch.Tensor.__dlpack_c_exchange_api__ = _capsule_new(ctypes.addressof(table),
                                                          b"dlpack_exchange_api", None)
    _state["installed"] = True
    return True


def installed():
    """Whether this process's table is this fake."""
    return _state.get("installed", False)
