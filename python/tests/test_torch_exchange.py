"""torch's DLPack C exchange table (torch 2.10 on): used where torch has one and it is not turned
off, in place of the calls into torch's Python bindings, and each way gives the same tensors (the
tests of test_torch_fast.py and test_torch_cpu.py run both ways)."""
import os
import subprocess
import sys
import time

import pytest

import cuipc

torch = pytest.importorskip("torch")


def table_in_use(env_value):
    """_torch_exchange() in a fresh process with CUIPC_PY_TORCH_EXCHANGE set (None: unset)."""
    env = dict(os.environ)
    env.pop("CUIPC_PY_TORCH_EXCHANGE", None)
    if env_value is not None:
        env["CUIPC_PY_TORCH_EXCHANGE"] = env_value
    out = subprocess.run([sys.executable, "-c", "import cuipc, torch; "
                          "print(cuipc._cuipc._torch_exchange())"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_table_is_used_where_torch_has_one():
    has = hasattr(torch.Tensor, "__dlpack_c_exchange_api__")
    assert table_in_use(None) == str(has)
    assert table_in_use("1") == str(has)
    assert table_in_use("0") == "False"


def test_each_path_makes_its_own_calls(pair, torch_path, monkeypatch):
    """Through the table the send asks torch's bindings for no data pointer, strides or device;
    through the reads it does."""
    p, c = pair()
    called = []
    for name in ("data_ptr", "stride", "get_device"):
        real = getattr(torch.Tensor, name)

        def spy(self, *a, real=real, name=name, **kw):
            called.append(name)
            return real(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, spy)
    x = torch.arange(64, dtype=torch.int16).reshape(8, 8)
    p.send({"x": x})
    monkeypatch.undo()
    with c.recv(timeout=5) as m:
        assert torch.equal(m.unwrap(kind="copy", torch=True)["x"], x)
    if torch_path:
        assert called == []
    else:
        assert "data_ptr" in called and "stride" in called


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()


@pytest.mark.parametrize("kind", ["copy", "borrow"])
def test_a_torch_tensor_lets_its_message_go_when_dropped(pair, torch_path, kind):
    """The torch tensor owns its unwrapped tree, and so its message and the consumer's attachment:
    the consumer closed, it stays attached while the tensor lives and detaches once the tensor's
    deleter has run, exactly once, whichever way the tensor was made."""
    p, c = pair()
    p.send({"x": torch.arange(1 << 12, dtype=torch.int32)})
    m = c.recv(timeout=5)
    t = m.unwrap(kind=kind, torch=True)["x"]
    if kind == "copy":
        m.release()
    del m  # a borrow not released: its chunk goes back with the message
    c.close()
    time.sleep(0.2)
    assert p.stats()["consumers_now"] == 1, "detached while its tensor lives"
    assert int(t.sum()) == sum(range(1 << 12))
    del t
    assert wait_for(lambda: p.stats()["consumers_now"] == 0), "the tensor's deleter did not run"
    assert p.stats()["consumers_detached"] == 1
