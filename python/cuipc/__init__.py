"""cuipc: hand tensors (GPU or host) from one process to others on one host.

A ``Producer`` owns a recycled pool and broadcasts trees (nested dict / list / tuple / str /
bytes / int / float / bool / None with tensors anywhere) to the ``Consumer`` processes attached to
its socket; or it ``wrap``s a tree into bytes that the application carries on its own channel
and a consumer ``adopt``s. Tensors go in as anything with ``__dlpack__`` (torch, numpy, cupy, jax)
and come out as ``cuipc.Tensor`` (``__dlpack__``; ``to_torch()``). See ``cuipc.compat`` for the
reference's API (``wrap_mm_inputs_for_ipc`` / ``unwrap_mm_inputs_from_ipc``).
"""

from ._cuipc import (  # noqa: F401
    Closed,
    Consumer,
    CudaError,
    Corrupt,
    Duplicate,
    Error,
    InvalidArgument,
    Message,
    NoGpu,
    NoMemory,
    PeerDead,
    PermissionDenied,
    PoolFull,
    Producer,
    Stale,
    SystemFailure,
    Tensor,
    Timeout,
    UnknownPool,
    Unsupported,
    VersionMismatch,
    build_version,
    gpu_count,
)

__version__ = "0.1.0"

__all__ = [
    "Producer", "Consumer", "Message", "Tensor", "gpu_count", "build_version",
    "Error", "InvalidArgument", "NoMemory", "PoolFull", "Timeout", "Stale", "Duplicate",
    "Corrupt", "UnknownPool", "CudaError", "NoGpu", "SystemFailure", "PeerDead", "Closed",
    "Unsupported", "VersionMismatch", "PermissionDenied",
]
