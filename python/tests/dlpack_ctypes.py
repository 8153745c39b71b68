"""The DLPack C structs (dlpack.h) as ctypes, for tests that read or build capsules."""
import ctypes


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32),
                ("ndim", ctypes.c_int32), ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class Versioned(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p), ("flags", ctypes.c_uint64), ("dl", DLTensor)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class ExportsAfter:
    """A host tensor of ones whose __dlpack_device__ first runs hook(): Python that runs while
    a send converts its tree (closing the producer, changing the tree)."""

    def __init__(self, hook):
        import numpy
        self.hook, self.a = hook, numpy.ones(4)

    def __dlpack_device__(self):
        self.hook()
        return self.a.__dlpack_device__()

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)
