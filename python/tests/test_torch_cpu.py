"""torch on the host (run where torch is installed; skipped elsewhere): torch tensors in through
DLPack, out with to_torch(), and cuipc.compat giving torch tensors back."""
import pickle
import time

import pytest

import cuipc
from cuipc import compat

torch = pytest.importorskip("torch")


def bool_exports():
    """torch exports bool through DLPack from 2.x on (1.13 refuses)."""
    try:
        torch.tensor([True]).__dlpack__()
        return True
    except Exception:
        return False


def test_torch_tensors_in_and_out(pair):
    p, c = pair()
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tree = {"x": x, "h": x.to(torch.bfloat16)}
    if bool_exports():
        tree["b"] = torch.tensor([True, False])
    p.send(tree)
    with c.recv(timeout=5) as m:
        tree = m.unwrap(kind="copy")
    y = tree["x"].to_torch()
    assert torch.equal(y, x) and y.dtype == torch.float32
    if "b" in tree:
        assert tree["b"].dtype == "bool" and tree["b"].to_torch().tolist() == [True, False]
    assert tree["h"].dtype == "bf16" and torch.equal(tree["h"].to_torch(), x.to(torch.bfloat16))
    y[0, 0] = 5  # the copy is the consumer's: torch shares its memory with the cuipc.Tensor
    assert torch.from_dlpack(tree["x"])[0, 0].item() == 5


def test_to_torch_of_a_released_borrow_is_refused(pair):
    p, c = pair()
    p.send({"x": torch.arange(6, dtype=torch.int32)})
    m = c.recv(timeout=5)
    x = m.unwrap(kind="borrow")["x"]
    assert x.to_torch().tolist() == list(range(6))
    m.release()
    with pytest.raises(cuipc.Stale, match="released"):
        x.to_torch()


def test_torch_non_contiguous_and_grad_are_refused(pair):
    p, _ = pair()
    with pytest.raises(cuipc.InvalidArgument, match="not contiguous"):
        p.send({"x": torch.ones(4, 4).t()})
    with pytest.raises(cuipc.InvalidArgument, match="__dlpack__ failed"):
        p.send({"x": torch.ones(4, requires_grad=True)})


def test_compat_returns_torch_tensors():
    with compat.MmItemMemoryPool(1 << 20, num_consumers=1, device="cpu") as pool:
        x = torch.arange(6, dtype=torch.int64)
        first = compat.wrap_mm_inputs_for_ipc({"x": x, "keep": [x]}, "cuda_ipc_pool", pool)
        out = compat.unwrap_mm_inputs_from_ipc(pickle.loads(pickle.dumps(first)))
        assert torch.equal(out["x"], x) and torch.equal(out["keep"][0], x)
        deadline = time.monotonic() + 5
        while not pool.ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        wrapped = compat.wrap_mm_inputs_for_ipc({"x": x}, "cuda_ipc_pool", pool)
        assert wrapped["x"].wire is not None
        y = compat.unwrap_mm_inputs_from_ipc(pickle.loads(pickle.dumps(wrapped)))["x"]
        assert isinstance(y, torch.Tensor) and torch.equal(y, x)
