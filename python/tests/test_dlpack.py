"""cuipc.Tensor's DLPack export: legacy and versioned capsules, read-only borrows, device."""
import ctypes

import numpy as np
import pytest

import cuipc
from dlpack_ctypes import DLTensor, Versioned

PyCapsule_GetName = ctypes.pythonapi.PyCapsule_GetName
PyCapsule_GetName.restype = ctypes.c_char_p
PyCapsule_GetName.argtypes = [ctypes.py_object]


def capsule_struct(cap, name, cls):
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return cls.from_address(get(cap, name))


@pytest.fixture
def received(pair):
    p, c = pair()
    p.send({"x": np.arange(12, dtype=np.float32).reshape(3, 4)})
    m = c.recv(timeout=5)
    yield m
    m.release()


def test_legacy_capsule(received):
    t = received.unwrap(kind="copy")["x"]
    cap = t.__dlpack__()
    assert PyCapsule_GetName(cap) == b"dltensor"
    dl = capsule_struct(cap, b"dltensor", DLTensor)
    assert (dl.device_type, dl.ndim, dl.code, dl.bits, dl.lanes) == (1, 2, 2, 32, 1)
    assert [dl.shape[i] for i in range(2)] == [3, 4] and [dl.strides[i] for i in range(2)] == [4, 1]
    assert dl.data == t.data_ptr
    assert t.__dlpack_device__() == (1, 0)


def test_versioned_capsule_marks_borrows_read_only(received):
    borrowed = received.unwrap(kind="borrow")["x"]
    cap = borrowed.__dlpack__(max_version=(1, 0))
    assert PyCapsule_GetName(cap) == b"dltensor_versioned"
    v = capsule_struct(cap, b"dltensor_versioned", Versioned)
    assert (v.major, v.minor, v.flags & 1) == (1, 0, 1)
    copied = received.unwrap(kind="copy")["x"]
    v2 = capsule_struct(copied.__dlpack__(max_version=(1, 3)), b"dltensor_versioned", Versioned)
    assert v2.flags & 1 == 0
    # An older consumer asking for 0.x gets the legacy capsule.
    assert PyCapsule_GetName(copied.__dlpack__(max_version=(0, 8))) == b"dltensor"


def test_export_keeps_the_tensor_alive(received):
    a = np.from_dlpack(received.unwrap(kind="copy")["x"])  # the only reference is numpy's
    import gc
    gc.collect()
    assert np.array_equal(a, np.arange(12, dtype=np.float32).reshape(3, 4))


def test_export_to_another_device_is_refused(received):
    t = received.unwrap(kind="copy")["x"]
    with pytest.raises(cuipc.Unsupported):
        t.__dlpack__(dl_device=(2, 0))
    assert PyCapsule_GetName(t.__dlpack__(dl_device=(1, 0))) == b"dltensor"


def test_cuipc_tensor_can_be_sent_on(pair, received):
    """A received tensor forwards through another producer like any DLPack tensor."""
    t = received.unwrap(kind="copy")["x"]
    p2, c2 = pair()
    p2.send({"again": t})
    with c2.recv(timeout=5) as m:
        assert np.array_equal(np.asarray(m.unwrap()["again"]), np.asarray(t))


def test_to_torch_without_torch_names_the_missing_module(received):
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed here")
    except ImportError:
        pass
    with pytest.raises(ImportError):
        received.unwrap()["x"].to_torch()
