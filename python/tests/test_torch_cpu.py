"""torch on the host (run where torch is installed; skipped elsewhere): torch tensors in through
DLPack, out with to_torch(), and cuipc.compat giving torch tensors back."""
import pickle
import time

import pytest

import cuipc
import fake_torch_table
from cuipc import compat

torch = pytest.importorskip("torch")
# Every test both ways: through torch's DLPack C exchange table, and through its bindings.
pytestmark = pytest.mark.usefixtures("torch_path")


def test_torch_tensors_in_and_out(pair):
    """bool too, on every torch: read directly on the way in, and back to torch through a u8
    view (torch 1.13's DLPack reader has no bool)."""
    p, c = pair()
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tree = {"x": x, "h": x.to(torch.bfloat16), "b": torch.tensor([True, False])}
    p.send(tree)
    p.send({"b": torch.tensor([[False], [True]])})
    with c.recv(timeout=5) as m:
        tree = m.unwrap(kind="copy")
    y = tree["x"].to_torch()
    assert torch.equal(y, x) and y.dtype == torch.float32
    assert tree["b"].dtype == "bool" and tree["b"].to_torch().tolist() == [True, False]
    assert tree["b"].to_torch().dtype == torch.bool
    with c.recv(timeout=5) as m:
        b = m.unwrap(kind="borrow", torch=True)["b"]
        assert b.dtype == torch.bool and b.tolist() == [[False], [True]]
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


@pytest.mark.parametrize("kind", ["copy", "borrow"])
def test_unwrap_straight_to_torch(pair, kind):
    """unwrap(torch=True): the tree with torch tensors in it, what to_torch() gives for each."""
    p, c = pair()
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sent = {"a": [x, {"h": x.to(torch.bfloat16), "n": 3}], "s": "text", "e": torch.zeros(0, 2)}
    p.send(sent)
    p.send(sent)
    with c.recv(timeout=5) as m:
        tree = m.unwrap(kind=kind, torch=True)
        a, h = tree["a"][0], tree["a"][1]["h"]
        assert type(a) is torch.Tensor and torch.equal(a, x)
        assert h.dtype == torch.bfloat16 and torch.equal(h, x.to(torch.bfloat16))
        assert tree["a"][1]["n"] == 3 and tree["s"] == "text" and tree["e"].shape == (0, 2)
    with c.recv(timeout=5) as m:
        plain = m.unwrap(kind=kind)
        for got, want in ((plain["a"][0], a), (plain["a"][1]["h"], h), (plain["e"], tree["e"])):
            t = got.to_torch()
            assert (t.dtype, t.shape, t.stride(), t.device) == (want.dtype, want.shape, want.stride(), want.device)
    assert torch.equal(a, x)  # a copy is the consumer's; a borrow's chunk is not reused yet


def test_torch_tensors_of_an_unwrap_outlive_the_consumer(pair):
    """The torch tensors own their tree: the message, and so the consumer's mappings, stay until
    the last of them goes, whatever is closed before."""
    p, c = pair()
    p.send({"x": torch.arange(1 << 16, dtype=torch.int32)})
    p.send({"x": torch.arange(1 << 16, dtype=torch.int32)})
    m = c.recv(timeout=5)
    copy = m.unwrap(kind="copy", torch=True)["x"]
    m.release()
    m = c.recv(timeout=5)
    borrow = m.unwrap(kind="borrow", torch=True)["x"]
    del m  # not released: the borrowed chunk stays the consumer's
    c.close()
    assert int(copy.sum()) == int(borrow.sum()) == sum(range(1 << 16))
    del copy, borrow


def test_unwrap_to_torch_argument_errors(pair):
    p, c = pair()
    p.send({"x": torch.ones(3)})
    with c.recv(timeout=5) as m:
        with pytest.raises(TypeError, match="nope"):
            m.unwrap(torch=True, nope=1)
        with pytest.raises(TypeError):
            m.unwrap(kind="copy", torch=object.__new__(Unbooled))
        assert torch.equal(m.unwrap(torch=1)["x"], torch.ones(3))
    with pytest.raises(cuipc.Stale, match="released"):
        m.unwrap(torch=True)


@pytest.mark.parametrize("way", ["unwrap(torch=True)", "to_torch()"])
def test_a_dtype_torch_refuses_raises_torchs_own_error(pair, way):
    """A capsule torch refuses is freed with torch's exception pending: the exception must reach
    the caller (it came out as SystemError before), and nothing leaks."""
    np = pytest.importorskip("numpy")
    p, c = pair()
    p.send({"x": np.arange(6, dtype=np.uint64)})
    with c.recv(timeout=5) as m:
        try:
            t = m.unwrap(torch=True)["x"] if way.startswith("unwrap") else m.unwrap()["x"].to_torch()
        except SystemError as e:  # the pending error lost
            pytest.fail(f"{way}: {e}")
        except Exception as e:  # this torch has no uint64: its own refusal, with its message
            if cuipc._cuipc._torch_exchange() and fake_torch_table.installed():
                # the stand-in cannot pass torch's exception on: the extension's own says what
                assert "exchange table refused the tensor (dtype u64" in str(e), e
            else:
                assert "int" in str(e).lower() or "type" in str(e).lower(), e
        else:  # this torch takes uint64
            assert t.tolist() == list(range(6))


class Unbooled:
    def __bool__(self):
        raise TypeError("no truth value")


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


def test_a_lazy_negation_arrives_negated(pair):
    """z.conj().imag has torch's negative bit: its DLPack export gives the values unnegated, so
    the send resolves it first."""
    p, c = pair()
    n = torch.tensor([1 + 2j, 3 - 4j]).conj().imag
    assert n.is_neg()
    p.send({"n": n})
    with c.recv(timeout=5) as m:
        assert m.unwrap(torch=True)["n"].tolist() == [-2.0, 4.0]
