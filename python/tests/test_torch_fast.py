"""torch.Tensor taken in without DLPack: the same tensor on the wire as its DLPack export gives,
and DLPack still used (with torch's own errors) for what the direct read does not cover."""
import pytest

import cuipc

torch = pytest.importorskip("torch")
# Every test both ways: through torch's DLPack C exchange table, and through its bindings.
pytestmark = pytest.mark.usefixtures("torch_path")


class ViaDLPack:
    """The tensor seen only through the DLPack protocol, as before the direct read."""

    def __init__(self, t):
        self.t = t

    def __dlpack__(self, **kw):
        return self.t.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.t.__dlpack_device__()


def received(p, c, x):
    p.send({"x": x})
    with c.recv(timeout=5) as m:
        t = m.unwrap(kind="copy")["x"]
        return t.dtype, t.shape, t.strides, memoryview(t).tobytes()


def outcome(p, c, x):
    """What was received, or the error the send raised."""
    try:
        return received(p, c, x)
    except cuipc.Error as e:
        return type(e), str(e)


def dlpack_exports(x):
    try:
        x.__dlpack__()
        return True
    except Exception:
        return False


DTYPES = {"bool": "bool", "uint8": "u8", "int8": "i8", "int16": "i16", "uint16": "u16",
          "int32": "i32", "uint32": "u32", "int64": "i64", "uint64": "u64", "float16": "f16",
          "bfloat16": "bf16", "float32": "f32", "float64": "f64"}


def base(shape, dtype):
    n = 1
    for d in shape:
        n *= d
    return (torch.arange(n, dtype=torch.int64) % 7).to(dtype).reshape(shape)


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_every_dtype_as_dlpack_gives_it(pair, name):
    if not hasattr(torch, name):
        pytest.skip(f"torch {torch.__version__} has no {name}")
    p, c = pair()
    x = base((3, 5), getattr(torch, name))
    fast = received(p, c, x)
    assert fast[0] == DTYPES[name] and fast[1] == (3, 5)
    assert fast[3] == x.numpy().tobytes() if name not in ("bfloat16", "uint16", "uint32",
                                                          "uint64") else True
    if dlpack_exports(x):  # bool: from torch 2.x on; the direct read sends it everywhere
        assert received(p, c, ViaDLPack(x)) == fast


@pytest.mark.parametrize("make", [
    lambda: torch.arange(12, dtype=torch.float32).reshape(3, 4),
    lambda: torch.empty(0, 4),
    lambda: torch.empty(4, 0).t(),  # no elements: layout says nothing
    lambda: torch.ones(1, 3, 1),
    lambda: torch.ones(3, 1).expand(3, 1),
    lambda: torch.ones(1, 4).t(),  # unit dims: strides not looked at
    lambda: torch.tensor(7.5),
    lambda: torch.arange(20, dtype=torch.int16)[5:11],  # storage offset
    lambda: torch.arange(24, dtype=torch.int32).reshape(2, 3, 4)[1],
], ids=["matrix", "empty", "empty_t", "unit_dims", "expand_unit", "unit_t", "scalar", "offset",
        "slice"])
def test_layouts_as_dlpack_gives_them(pair, make):
    p, c = pair()
    x = make()
    assert received(p, c, x) == received(p, c, ViaDLPack(x))


def test_non_contiguous_refused_alike(pair):
    p, _ = pair()
    for x in (torch.ones(4, 4).t(), torch.arange(10)[::2], torch.ones(2, 3, 4).permute(2, 0, 1)):
        errors = []
        for item in (x, ViaDLPack(x)):
            with pytest.raises(cuipc.InvalidArgument) as e:
                p.send({"x": item})
            errors.append(str(e.value))
        assert errors[0] == errors[1] and "tree[x]: the tensor is not contiguous" in errors[0]


def test_plain_tensors_do_not_go_through_dlpack(pair, monkeypatch):
    p, c = pair()

    def refuse(*a, **kw):
        raise AssertionError("__dlpack__ called")

    monkeypatch.setattr(torch.Tensor, "__dlpack__", refuse)
    monkeypatch.setattr(torch.Tensor, "__dlpack_device__", refuse)
    x = torch.arange(1024, dtype=torch.float32)
    assert received(p, c, x)[3] == x.numpy().tobytes()


@pytest.mark.parametrize("make", [
    lambda: torch.ones(4, requires_grad=True),
    lambda: torch.nn.Parameter(torch.ones(4)),
    lambda: torch.ones(4, dtype=torch.complex64).conj(),
    lambda: torch.ones(4, dtype=torch.complex64),
    lambda: torch.ones(4, device="meta"),
    lambda: torch.eye(3).to_sparse(),
], ids=["grad", "parameter", "conj", "complex", "meta", "sparse"])
def test_other_tensors_still_take_dlpack(pair, monkeypatch, make):
    """What the direct read does not cover reaches torch's __dlpack__, as before."""
    p, _ = pair()
    x = make()
    seen = []
    for name in ("__dlpack__", "__dlpack_device__"):
        real = getattr(torch.Tensor, name)

        def spy(self, *a, real=real, **kw):
            seen.append(type(self))
            return real(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, spy)
    try:
        p.send({"x": x})
    except cuipc.Error:
        pass
    assert seen, "sent without DLPack"


def test_cpu_tensor_kept_alive_through_the_send(pair):
    p, c = pair()
    p.send({"x": torch.arange(256, dtype=torch.int64) * 3})
    with c.recv(timeout=5) as m:
        y = m.unwrap(kind="copy")["x"].to_torch()
    assert torch.equal(y, torch.arange(256, dtype=torch.int64) * 3)


@pytest.mark.parametrize("make", [
    lambda: torch.ones(3, 1).as_strided((3, 1), (1, 99)),
    lambda: torch.arange(4.0).as_strided((1, 4), (1000, 1)),
    lambda: torch.arange(6.0).as_strided((2, 1, 3), (3, 0, 1)),
    lambda: torch.ones(1).as_strided((1, 1, 1), (7, 0, 123)),
    lambda: torch.ones(2).as_strided((0, 2), (77, 1)),
    lambda: torch.ones(4, dtype=torch.float64).conj(),  # real: no conj bit
    lambda: torch.ones(3, 4)[:, 1:2],
], ids=["unit_stride_99", "unit_stride_1000", "unit_stride_0", "all_unit", "empty_odd",
        "real_conj", "column"])
def test_odd_unit_strides_as_dlpack_gives_them(pair, make):
    """Strides of unit dims are what DLPack exporters normalise (torch since 1.13): the direct read
    sees torch's own, and must send (or refuse) what the export would."""
    p, c = pair()
    x = make()
    assert outcome(p, c, x) == outcome(p, c, ViaDLPack(x))


def test_the_conj_bit_is_not_read(pair, monkeypatch):
    """torch sets the conj bit on complex tensors only, which the direct read leaves to DLPack:
    a real tensor is sent without asking (one call fewer a tensor)."""
    p, c = pair()

    def refuse(self):
        raise AssertionError("is_conj read")

    monkeypatch.setattr(torch.Tensor, "is_conj", refuse)
    x = torch.arange(16, dtype=torch.float32)
    assert received(p, c, x)[3] == x.numpy().tobytes()


def neg_view():
    z = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)
    return z.conj().imag  # a real tensor with the neg bit set


def sparse_csr():
    return torch.eye(3).to_sparse_csr()


def mkldnn():
    if not torch.backends.mkldnn.is_available():
        pytest.skip("torch built without mkldnn")
    return torch.ones(4).to_mkldnn()


class Sub(torch.Tensor):
    pass


@pytest.mark.parametrize("make", [neg_view, lambda: torch._neg_view(torch.ones(4))], ids=["conj_imag", "neg_view"])
def test_a_lazy_negation_is_resolved_not_left_to_dlpack(pair, monkeypatch, make):
    """torch's DLPack export of a tensor with the negative bit set gives its values unnegated
    (torch 1.13) or refuses it (torch 2.x): the send resolves it and sends its values."""
    p, c = pair()
    x = make()
    assert x.is_neg()

    def refuse(*a, **kw):
        raise AssertionError("__dlpack__ called")

    monkeypatch.setattr(torch.Tensor, "__dlpack__", refuse)
    assert received(p, c, x)[3] == x.resolve_neg().numpy().tobytes()


@pytest.mark.parametrize("make", [sparse_csr, mkldnn,
                                  lambda: torch.ones(4).as_subclass(Sub),
                                  lambda: torch.ones(4, requires_grad=True) * 2,
                                  lambda: torch.ones(4, dtype=torch.complex128)],
                         ids=["sparse_csr", "mkldnn", "subclass", "grad_non_leaf",
                              "complex"])
def test_fast_path_and_dlpack_agree(pair, make):
    """What the direct read leaves to DLPack gives the same result or the same error as DLPack."""
    p, c = pair()
    x = make()
    assert outcome(p, c, x) == outcome(p, c, ViaDLPack(x))


def test_torch_function_mode_takes_dlpack(pair, monkeypatch):
    modes = pytest.importorskip("torch.overrides")
    if not hasattr(modes, "TorchFunctionMode"):
        pytest.skip(f"torch {torch.__version__} has no TorchFunctionMode")

    class Mode(modes.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    p, c = pair()
    x = torch.arange(8, dtype=torch.int32)
    seen = []
    real = torch.Tensor.__dlpack__

    def spy(self, *a, **kw):
        seen.append(1)
        return real(self, *a, **kw)

    monkeypatch.setattr(torch.Tensor, "__dlpack__", spy)
    with Mode():
        got = received(p, c, x)
    assert seen and got[3] == x.numpy().tobytes()
