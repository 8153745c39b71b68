"""torch's DLPack C exchange table (torch 2.10 on): used where torch has one and it is not turned
off, in place of the calls into torch's Python bindings, and each way gives the same tensors (the
tests of test_torch_fast.py and test_torch_cpu.py run both ways)."""
import os
import subprocess
import sys
import time

import pytest

import cuipc
import fake_torch_table
from conftest import attach_pair as _pair
from conftest import wait_for

# What a fresh process runs first to have the table this one has: the stand-in, where it is one.
FAKE_PRELUDE = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
                "import torch, fake_torch_table; fake_torch_table.install(torch); ")

torch = pytest.importorskip("torch")


def in_fresh_process(env_value, code):
    """What code prints in a fresh process with CUIPC_PY_TORCH_EXCHANGE set (None: unset)."""
    env = dict(os.environ)
    env.pop("CUIPC_PY_TORCH_EXCHANGE", None)
    if env_value is not None:
        env["CUIPC_PY_TORCH_EXCHANGE"] = env_value
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_table_is_used_where_torch_has_one():
    """Used where torch has it, unless the environment says 0, which a forced on does not undo;
    _torch_exchange(False) turns it off, None back to the process's way."""
    has = str(hasattr(torch.Tensor, "__dlpack_c_exchange_api__"))
    ask = ((FAKE_PRELUDE if fake_torch_table.installed() else "") +
           "import cuipc, torch; use = cuipc._cuipc._torch_exchange; "
           "print(use(), use(True), use(False), use(), use(None))")
    assert in_fresh_process(None, ask).split() == [has, has, "False", "False", has]
    assert in_fresh_process("1", ask).split() == [has, has, "False", "False", has]
    assert in_fresh_process("0", ask).split() == ["False"] * 5


def test_each_path_makes_its_own_calls(pair, torch_path, monkeypatch):
    """Through the table the send asks torch's bindings for no data pointer or strides, and the
    received tensor is the table's; through the reads the send asks, and the table makes
    nothing. Neither falls back to DLPack."""
    p, c = pair()
    called = []
    for name in ("data_ptr", "stride", "__dlpack__", "__dlpack_device__"):
        real = getattr(torch.Tensor, name)

        def spy(self, *a, real=real, name=name, **kw):
            called.append(name)
            return real(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, spy)
    x = torch.arange(64, dtype=torch.int16).reshape(8, 8)
    p.send({"x": x})
    monkeypatch.undo()
    made = cuipc._cuipc._torch_exchange_count()
    with c.recv(timeout=5) as m:
        assert torch.equal(m.unwrap(kind="borrow", torch=True)["x"], x)
        assert torch.equal(m.unwrap(kind="borrow")["x"].to_torch(), x)
    assert cuipc._cuipc._torch_exchange_count() - made == (2 if torch_path else 0)
    assert "__dlpack__" not in called and "__dlpack_device__" not in called  # neither falls back
    if torch_path:
        assert called == []
    else:
        assert "data_ptr" in called and "stride" in called


def test_a_torch_tensor_lets_its_message_go_when_dropped(pair, torch_path):
    """A borrowed torch tensor owns its unwrapped tree, and so its message and the consumer's
    attachment: the consumer closed, it stays attached while the tensor lives and detaches once
    the tensor's deleter has run, exactly once, whichever way the tensor was made."""
    p, c = pair()
    p.send({"x": torch.arange(1 << 12, dtype=torch.int32)})
    m = c.recv(timeout=5)
    t = m.unwrap(kind="borrow", torch=True)["x"]
    del m  # not released: its chunk goes back with the message
    c.close()
    time.sleep(0.2)
    assert p.stats()["consumers_now"] == 1, "detached while its tensor lives"
    assert int(t.sum()) == sum(range(1 << 12))
    del t
    assert wait_for(lambda: p.stats()["consumers_now"] == 0), "the tensor's deleter did not run"
    assert p.stats()["consumers_detached"] == 1


def test_a_copied_torch_tensor_keeps_no_attachment(pair, torch_path):
    """A copy is the process's own memory: the consumer closed detaches at once, and the copy,
    still alive, keeps its values and is freed once, whichever way the tensor was made."""
    p, c = pair()
    p.send({"x": torch.arange(1 << 12, dtype=torch.int32)})
    with c.recv(timeout=5) as m:
        t = m.unwrap(kind="copy", torch=True)["x"]
    del m
    c.close()
    assert wait_for(lambda: p.stats()["consumers_now"] == 0), "a live copy kept the consumer"
    assert p.stats()["consumers_detached"] == 1
    assert int(t.sum()) == sum(range(1 << 12))
    del t


@pytest.mark.parametrize("fault", ["refused", "deleted_then_refused"])
@pytest.mark.parametrize("way", ["unwrap(torch=True)", "to_torch()"])
def test_a_tensor_the_table_fails_to_make_is_let_go_once(pair, torch_path, fault, way):
    """torch's tensor maker fails either before its storage took the deleter (it refuses a dtype of
    two lanes) or, simulated, after running it: the error reaches the caller, the message's tree is
    let go exactly once (a second time would be a double free, none a consumer that never
    detaches), and the next tensor is made as usual."""
    if not torch_path:
        pytest.skip("the table's failures: the reads path has its own (test_torch_cpu.py)")
    p, c = pair()
    x = torch.arange(32, dtype=torch.float32)
    p.send({"x": x})
    m = c.recv(timeout=5)
    t = m.unwrap(kind="borrow")["x"]
    refs = sys.getrefcount(t)  # to_torch()'s tensor holds t: a double let-go would show here
    cuipc._cuipc._torch_exchange_fault(fault)
    with pytest.raises(RuntimeError) as e:
        if way.startswith("unwrap"):
            m.unwrap(kind="borrow", torch=True)
        else:
            t.to_torch()
    # torch's own refusal, or the simulated one
    assert ("_torch_exchange_fault" in str(e.value)) == (fault == "deleted_then_refused")
    if way == "to_torch()":  # unwrap(torch=True)'s holds its own tree: the detach below checks it
        assert sys.getrefcount(t) == refs
    assert torch.equal(m.unwrap(kind="borrow", torch=True)["x"], x)
    assert torch.equal(t.to_torch(), x)
    del t
    m.release()
    del m
    c.close()
    assert wait_for(lambda: p.stats()["consumers_now"] == 0), "a tree kept by the failed tensor"


def test_the_fault_hook_names_its_faults():
    """Its kinds, and only while the table is in use: armed otherwise, it would wait for a later,
    unrelated tensor. Leaving the way it was armed for disarms it."""
    with pytest.raises(ValueError, match="refused"):
        cuipc._cuipc._torch_exchange_fault("sometimes")
    use = cuipc._cuipc._torch_exchange
    try:
        use(False)
        with pytest.raises(RuntimeError, match="not in use"):
            cuipc._cuipc._torch_exchange_fault("refused")
        if not use(True):
            pytest.skip(f"torch {torch.__version__} has no DLPack C exchange table")
        cuipc._cuipc._torch_exchange_fault("refused")
        use(False)
        use(True)
        # disarmed: the next tensor through the table is made
        t = torch.arange(4)
        made = cuipc._cuipc._torch_exchange_count()
        p, c = _pair()
        try:
            p.send({"x": t})
            with c.recv(timeout=5) as m:
                assert torch.equal(m.unwrap(kind="copy", torch=True)["x"], t)
        finally:
            c.close()
            p.close()
        assert cuipc._cuipc._torch_exchange_count() == made + 1
    finally:
        use(None)


@pytest.mark.gpu
def test_a_cuda_tensor_from_the_table_has_torchs_cuda_initialised():
    """torch._C._from_dlpack runs torch.cuda's lazy initialisation for a CUDA tensor (the seed
    torch.manual_seed set, the calls queued until then); the table's tensor maker does not, so the
    extension runs it: a process that never touched CUDA gets the same seeded values either way."""
    script = """
import json, threading, torch, cuipc
torch.manual_seed(0)
p = cuipc.Producer(mode="default")
t = threading.Thread(target=lambda: p.accept(1, timeout=30))
t.start()
c = cuipc.Consumer(p.socket_path, timeout=30)
t.join()
p.send({"x": torch.zeros(4)})
with c.recv(timeout=30) as m:
    y = m.unwrap(kind="copy", device=0, torch=True)["x"]
    out = {"table": cuipc._cuipc._torch_exchange(), "init": torch.cuda.is_initialized(),
           "device": str(y.device), "values": y.uniform_().tolist()}
print(json.dumps(out))
c.close()
p.close()
"""
    import json
    table = json.loads(in_fresh_process(None, script))
    reads = json.loads(in_fresh_process("0", script))
    if not table["table"]:
        pytest.skip(f"torch {torch.__version__} has no DLPack C exchange table")
    assert not reads["table"] and table["device"] == reads["device"] == "cuda:0"
    assert table["init"] and reads["init"]
    assert table["values"] == reads["values"]
