"""Drop-in for the reference transport's API (``cuda_ipc_transport``), on cuipc.

Switch a serving process by changing one import::

    from cuipc.compat import (TensorTransportMode, MmItemMemoryPool,
                              wrap_mm_inputs_for_ipc, unwrap_mm_inputs_from_ipc)

The wrapped objects pickle, and travel on the application's own queue (a
``torch.multiprocessing`` queue, ZMQ, a pipe) as before. What differs from the reference:

* The receiver attaches to the producer's Unix socket (its path travels inside each wrapped
  object), so the producer's socket must be reachable: same host, same PID namespace, and the
  same user. A receiver starts attaching on the first object it unwraps (in the background:
  the by-value objects need nothing from the producer); until every one of ``num_consumers``
  receivers is attached, and when the pool has no room, tensors travel by value (copied to host
  memory and pickled, as the reference's own fallback pickles the tensor), and are unwrapped
  on the device they came from (or ``device_index``), as pooled ones are.
* Every receiver must unwrap every pooled object it gets, or give it back unread with
  ``discard_mm_inputs_from_ipc``: each one holds a pool chunk until all ``num_consumers``
  receivers released it, and one dropped unread holds it until that receiver exits (the
  reference never recycles such a chunk). A receiver that exits is released for at once.
  Unwrapping one object again gives the tensor of the first time, as the reference does.
* ``recycle_interval`` is accepted and ignored: chunks are recycled as soon as the last receiver
  releases them (no polling); a full pool waits for room (``full_policy``) instead of leaking.
* ``"default"`` returns the tree unchanged (the application's queue pickles the tensors), like the
  reference. ``"cuda_ipc"`` exports the senders' own allocations through one process-wide producer
  (``configure(num_consumers=...)``); it retains them, as the reference does; prefer the pool.
* The reference's known bugs are not reproduced: the host acknowledgement comes after the copy
  is done (ordered on the GPU), a stale or duplicate release is refused, and nothing leaks when
  the pool is full.
* Tuples come back as tuples and lists as lists (only tensors are replaced).
* Any dtype travels, as the reference's byte copies do: a dtype cuipc does not carry (complex,
  bool for torch 1.13's DLPack reader) goes as its bytes and is viewed back; a tensor that
  requires grad goes detached (the copy has no graph, as the reference's).
* ``MmItemMemoryPool(..., device="cpu")`` pools host memory instead and wraps host tensors
  (numpy, torch CPU): the same path without a GPU.
"""

import os
import threading
from typing import Any, Dict, Literal, Optional

from . import _cuipc

TensorTransportMode = Literal["default", "cuda_ipc", "cuda_ipc_pool"]

_DLPACK_CUDA = 2
_ACCEPT_POLL_S = 0.2


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _on_cuda(x) -> bool:
    try:
        return x.__dlpack_device__()[0] == _DLPACK_CUDA
    except Exception:
        return False


def _library(x) -> str:
    mod = type(x).__module__ or ""
    return mod.split(".")[0]


class _Endpoint:
    """A producer whose consumers may attach at any time: a thread accepts them."""

    def __init__(self, producer: "_cuipc.Producer", num_consumers: int):
        self.producer = producer
        self.num_consumers = num_consumers
        self.socket_path = producer.socket_path
        self.by_value = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="cuipc-accept", daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            if self.producer.consumer_count >= self.num_consumers:
                self._stop.wait(_ACCEPT_POLL_S)
                continue
            try:
                self.producer.accept(self.num_consumers, timeout=_ACCEPT_POLL_S)
            except _cuipc.Timeout:
                pass
            except _cuipc.Closed:
                return

    def ready(self) -> bool:
        return self.producer.consumer_count >= self.num_consumers

    def shutdown(self):
        self._stop.set()
        self._thread.join()
        self.producer.close()


class MmItemMemoryPool:
    """The reference's pool: ``memory_size`` bytes on ``device`` recycled between
    ``num_consumers`` receivers, here a cuipc producer in ``cuda_ipc_pool`` mode."""

    def __init__(self, memory_size: int, recycle_interval: float = 0.1, num_consumers: int = 1,
                 device=0, *, full_policy: str = "wait", full_timeout: Optional[float] = 1.0):
        self.memory_size = int(memory_size)
        self.recycle_interval = recycle_interval
        self.num_consumers = int(num_consumers)
        self.on_host = device == "cpu"
        self.device = None if self.on_host else int(device)
        if self.on_host:
            producer = _cuipc.Producer(mode="default", host_pool_bytes=self.memory_size,
                                       max_consumers=self.num_consumers, full_policy=full_policy,
                                       full_timeout=full_timeout)
        else:
            producer = _cuipc.Producer(mode="cuda_ipc_pool", gpu_pool_bytes=self.memory_size,
                                       host_pool_bytes=0, max_consumers=self.num_consumers,
                                       device=self.device, full_policy=full_policy,
                                       full_timeout=full_timeout)
        self._endpoint = _Endpoint(producer, self.num_consumers)

    @property
    def socket_path(self) -> str:
        return self._endpoint.socket_path

    @property
    def producer(self) -> "_cuipc.Producer":
        return self._endpoint.producer

    def ready(self) -> bool:
        """True once every receiver attached (tensors then go through the pool)."""
        return self._endpoint.ready()

    def stats(self) -> Dict[str, Any]:
        s = self.producer.stats()
        s["by_value"] = self._endpoint.by_value
        return s

    def shutdown(self) -> None:
        self._endpoint.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
        return False


class CudaIpcTensorTransportProxy:
    """What travels in place of a tensor: the producer's socket path and the wrapped message (or
    the tensor by value), the CUDA device it came from (None: host memory), and, for a dtype
    that travels as bytes, its name and shape."""

    __slots__ = ("socket_path", "wire", "library", "by_value", "device", "as_bytes", "_out")

    def __init__(self, socket_path: str, wire: Optional[bytes], library: str, by_value=None,
                 device: Optional[int] = None, as_bytes: Optional[tuple] = None):
        self.socket_path = socket_path
        self.wire = wire
        self.library = library
        self.by_value = by_value  # a host copy, while not every receiver is attached yet
        self.device = device
        self.as_bytes = as_bytes
        self._out = None  # what the first unwrap gave (not pickled)

    def __reduce__(self):
        return (CudaIpcTensorTransportProxy,
                (self.socket_path, self.wire, self.library, self.by_value, self.device, self.as_bytes))

    def reconstruct_on_device(self, device_index: Optional[int] = None):
        """Copy the tensor out of the pool into memory of this process and release the chunk
        (by value: onto the device it came from, or device_index). Again: the same tensor."""
        if self._out is not None:
            return _to_device(self._out, device_index)
        if self.wire is None:
            _attach_soon(self.socket_path)  # so that later objects can come through the pool
            self._out = _to_device(self.by_value, self.device if device_index is None else device_index)
            return self._out
        consumer = _consumer_for(self.socket_path)
        torch = _torch() if self.library == "torch" else None
        stream = None
        if torch is not None and torch.cuda.is_available():
            stream = torch.cuda.current_stream(device_index) if device_index is not None \
                else torch.cuda.current_stream()
        with consumer.adopt(self.wire) as msg:
            tensor = msg.unwrap(kind="copy", device=device_index, stream=stream)
            out = _export(tensor, self.library)
        self._out = _from_bytes(out, self.as_bytes, self.library)
        return self._out

    def discard(self) -> None:
        """Give the pooled chunk back unread (nothing to do for one by value)."""
        if self.wire is not None and self._out is None:
            _consumer_for(self.socket_path).adopt(self.wire).release()
            self._out = _DISCARDED


_DISCARDED = object()


def _export(tensor: "_cuipc.Tensor", library: str):
    if library == "torch" and _torch() is not None:
        return tensor.to_torch()
    if library == "numpy":
        import numpy
        # Host copies through the buffer protocol: writable (numpy's from_dlpack is read-only).
        return numpy.asarray(tensor) if tensor.device == "cpu" else numpy.from_dlpack(tensor)
    return tensor


def _to_device(x, device_index):
    if x is _DISCARDED:
        raise _cuipc.Stale("the object was discarded: its tensor was never read")
    if device_index is not None and hasattr(x, "to"):
        return x.to(f"cuda:{device_index}")
    return x


# dtypes the transport carries as they are (torch's bool goes as bytes: torch 1.13's DLPack
# reader has no bool); any other travels as its bytes, viewed back on the way out.
_TORCH_CARRIED = ("uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
                  "float16", "bfloat16", "float32", "float64")
# numpy's bool goes as bytes too (numpy before 1.25 exports no bool), and so does any dtype not
# in the machine's byte order (DLPack has none for it): the dtype itself comes back with them.
_NUMPY_CARRIED = ("uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
                  "float16", "float32", "float64")


def _to_bytes(x, library):
    """(what to send, (dtype name, shape) or None when x travels as it is)."""
    if library == "torch":
        if x.requires_grad:
            x = x.detach()
        x = x.resolve_conj().resolve_neg()  # lazy views: their bytes are not their values
        name = str(x.dtype).replace("torch.", "")
        if name in _TORCH_CARRIED:
            return x, None
        return x.contiguous().reshape(-1).view(_torch().uint8), (name, tuple(x.shape))
    if library == "numpy":
        import numpy
        if not x.flags.writeable:  # numpy's DLPack export refuses read-only arrays (mmaps, frombuffer)
            x = x.copy()
        if x.dtype.name not in _NUMPY_CARRIED or not x.dtype.isnative:
            # The dtype itself (it pickles): a structured one keeps its fields, a big-endian one
            # its byte order.
            return numpy.ascontiguousarray(x).reshape(-1).view(numpy.uint8), (x.dtype, x.shape)
    return x, None


def _from_bytes(x, as_bytes, library):
    if as_bytes is None:
        return x
    name, shape = as_bytes
    if library == "torch":
        return x.view(getattr(_torch(), name)).reshape(shape)
    return x.view(name).reshape(shape)


def _host_copy(x):
    """By-value form of a tensor (while receivers are still attaching)."""
    if hasattr(x, "cpu"):
        return x.detach().cpu()  # pickle refuses a tensor that requires grad
    return x


_consumers: Dict[tuple, "_cuipc.Consumer"] = {}
_attaching: Dict[tuple, threading.Thread] = {}
_attach_failed: Dict[tuple, "_cuipc.Error"] = {}
_consumers_lock = threading.Lock()
_ATTACH_TIMEOUT_S = float(os.environ.get("CUIPC_COMPAT_ATTACH_TIMEOUT", "30"))


def _attach(key, socket_path):
    c, err = None, None
    try:
        c = _cuipc.Consumer(socket_path, timeout=_ATTACH_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001: whatever it is, the waiters raise it
        err = e
    finally:
        with _consumers_lock:
            _attaching.pop(key, None)
            if c is not None:
                _consumers[key] = c
            else:
                _attach_failed[key] = err or _cuipc.SystemFailure("the attach thread ended early")


def _start_attach_locked(key, socket_path) -> threading.Thread:
    """The one attach under way for key (the caller holds _consumers_lock)."""
    t = threading.Thread(target=_attach, args=(key, socket_path), name="cuipc-attach", daemon=True)
    _attaching[key] = t
    t.start()
    return t


def _attach_soon(socket_path: str) -> None:
    """Attach in the background, once at a time per producer (a failed try is tried again by
    the next object: a producer may be starting)."""
    key = (os.getpid(), socket_path)  # a forked child attaches on its own
    with _consumers_lock:
        if key not in _consumers and key not in _attaching:
            _start_attach_locked(key, socket_path)


def _consumer_for(socket_path: str) -> "_cuipc.Consumer":
    key = (os.getpid(), socket_path)
    with _consumers_lock:
        c = _consumers.get(key)
        if c is not None:
            return c
        t = _attaching.get(key)
        if t is None:
            _attach_failed.pop(key, None)
            t = _start_attach_locked(key, socket_path)
    t.join()
    with _consumers_lock:
        c = _consumers.get(key)
        if c is None:  # every thread that waited on this try raises its error
            raise _attach_failed[key]
        return c


_ipc_endpoint: Optional[_Endpoint] = None
_ipc_consumers = int(os.environ.get("CUIPC_COMPAT_CONSUMERS", "1"))


def configure(num_consumers: int) -> None:
    """Receivers of ``"cuda_ipc"`` mode (the reference's mode has no pool to say it)."""
    global _ipc_consumers
    if _ipc_endpoint is not None:
        raise _cuipc.InvalidArgument("configure() must come before the first cuda_ipc wrap")
    _ipc_consumers = int(num_consumers)


def _ipc_endpoint_get() -> _Endpoint:
    global _ipc_endpoint
    if _ipc_endpoint is None:
        _ipc_endpoint = _Endpoint(
            _cuipc.Producer(mode="cuda_ipc", host_pool_bytes=0, max_consumers=_ipc_consumers),
            _ipc_consumers)
    return _ipc_endpoint


def _source_device(x) -> Optional[int]:
    kind, index = x.__dlpack_device__()
    return int(index) if kind == _DLPACK_CUDA else None


def _wrap_tensor(x, endpoint: _Endpoint):
    library = _library(x)
    device = _source_device(x)
    # An object array holds pointers into this process: it can only travel pickled, by value.
    if not endpoint.ready() or (library == "numpy" and x.dtype.hasobject):
        endpoint.by_value += 1
        return CudaIpcTensorTransportProxy(endpoint.socket_path, None, library, _host_copy(x), device)
    stream = None
    torch = _torch() if library == "torch" else None
    if torch is not None and x.is_cuda:
        stream = torch.cuda.current_stream(x.device)
    if hasattr(x, "is_contiguous") and not x.is_contiguous():
        x = x.contiguous()
    elif library == "numpy" and not x.flags.c_contiguous:
        import numpy
        x = numpy.ascontiguousarray(x)
    sent, as_bytes = _to_bytes(x, library)
    try:
        wire = endpoint.producer.wrap(sent, stream=stream)
    except (_cuipc.PoolFull, _cuipc.Timeout):
        # The reference's fallback when the pool has no room: the tensor travels by value.
        endpoint.by_value += 1
        return CudaIpcTensorTransportProxy(endpoint.socket_path, None, library, _host_copy(x), device)
    return CudaIpcTensorTransportProxy(endpoint.socket_path, wire, library, None, device, as_bytes)


def _walk(x, fn):
    if isinstance(x, dict):
        return {k: _walk(v, fn) for k, v in x.items()}
    if isinstance(x, list):
        return [_walk(v, fn) for v in x]
    if isinstance(x, tuple):
        return tuple(_walk(v, fn) for v in x)
    return fn(x)


def wrap_mm_inputs_for_ipc(mm_inputs: Optional[Dict[str, Any]], transport_mode: TensorTransportMode,
                           pool: Optional[MmItemMemoryPool] = None) -> Optional[Dict[str, Any]]:
    """Replace the tree's CUDA tensors by picklable proxies (host tensors too with a host pool)."""
    if mm_inputs is None or transport_mode == "default":
        return mm_inputs
    if transport_mode == "cuda_ipc_pool":
        if pool is None:
            raise _cuipc.InvalidArgument("transport_mode \"cuda_ipc_pool\" needs a MmItemMemoryPool")
        endpoint = pool._endpoint
        wanted = (lambda x: not _on_cuda(x)) if pool.on_host else _on_cuda
    elif transport_mode == "cuda_ipc":
        endpoint = _ipc_endpoint_get()
        wanted = _on_cuda
    else:
        raise _cuipc.InvalidArgument(
            f"transport_mode must be \"default\", \"cuda_ipc\" or \"cuda_ipc_pool\", not {transport_mode!r}")

    def wrap_one(x):
        if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__") and wanted(x):
            return _wrap_tensor(x, endpoint)
        return x

    return _walk(mm_inputs, wrap_one)


def unwrap_mm_inputs_from_ipc(mm_inputs: Optional[Dict[str, Any]],
                              device_index: Optional[int] = None) -> Optional[Dict[str, Any]]:
    """Turn the proxies back into tensors of this process (copies; the chunks are released)."""
    if mm_inputs is None:
        return None

    def unwrap_one(x):
        if isinstance(x, CudaIpcTensorTransportProxy):
            return x.reconstruct_on_device(device_index)
        return x

    return _walk(mm_inputs, unwrap_one)


def discard_mm_inputs_from_ipc(mm_inputs: Optional[Dict[str, Any]]) -> None:
    """Give the pool chunks of wrapped objects back unread (a receiver that will not use a
    request): not in the reference, where such a chunk is never recycled."""
    def discard_one(x):
        if isinstance(x, CudaIpcTensorTransportProxy):
            x.discard()
        return x

    if mm_inputs is not None:
        _walk(mm_inputs, discard_one)


__all__ = ["TensorTransportMode", "MmItemMemoryPool", "CudaIpcTensorTransportProxy",
           "wrap_mm_inputs_for_ipc", "unwrap_mm_inputs_from_ipc", "discard_mm_inputs_from_ipc",
           "configure"]
