"""Trees through the default (host) mode: nested values, copy and borrow, spawned consumers,
out of band, pool buffers. Runs without a GPU and without torch (numpy through DLPack)."""
import ctypes
import threading
import time

import numpy as np
import pytest

import cuipc
import workers
from conftest import wait_for
from dlpack_ctypes import DLManagedTensor, DLTensor, ExportsAfter

TREE_SCALARS = {"s": "image", "b": b"\x00\x01raw", "i": -(2**62), "f": 2.5, "t": True, "n": None}


def nested_tree():
    return {
        "pixel_values": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "meta": dict(TREE_SCALARS),
        "items": [np.full(5, 7, dtype=np.int64), ("x", 1), [[np.ones((2, 2), dtype=np.float16)]]],
        "empty": np.zeros((0, 3), dtype=np.uint8),
    }


def check_nested(out):
    assert out["meta"] == TREE_SCALARS
    pv = out["pixel_values"]
    assert isinstance(pv, cuipc.Tensor)
    assert (pv.shape, pv.dtype, pv.device) == ((2, 3, 4), "f32", "cpu")
    assert np.array_equal(np.from_dlpack(pv), np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    assert np.array_equal(np.asarray(out["items"][0]), np.full(5, 7))
    assert out["items"][1] == ["x", 1]  # tuples come back as lists
    assert np.asarray(out["items"][2][0][0]).dtype == np.float16
    assert out["empty"].shape == (0, 3)


@pytest.mark.parametrize("kind", ["copy", "borrow"])
def test_nested_tree_in_process(pair, kind):
    p, c = pair()
    p.send(nested_tree())
    with c.recv(timeout=5) as m:
        check_nested(m.unwrap(kind=kind))
    p.drain(timeout=5)
    st = p.stats()["host_pool"]
    # recycled counts chunks: one per non-empty tensor of the tree (pixel_values, two in items)
    assert st["in_flight"] == 0 and st["used_bytes"] == 0 and st["recycled"] == st["allocs"] == 3


DLTENSOR_NAME = b"dltensor"  # the capsule keeps this pointer: a module constant outlives it


class StridedExport:
    """A host f32 tensor over `base` exported through DLPack with the shape and element strides
    given, whatever numpy would say of them (numpy 1.x drops the strides of a C-contiguous
    array, numpy 2.x passes them on)."""

    def __init__(self, base, shape, strides):
        self.base = base
        self.shape = (ctypes.c_int64 * len(shape))(*shape)
        self.strides = (ctypes.c_int64 * len(shape))(*strides)
        self.managed = DLManagedTensor(DLTensor(base.ctypes.data, 1, 0, len(shape), 2, 32, 1,
                                                self.shape, self.strides, 0), None, None)

    def __dlpack_device__(self):
        return (1, 0)

    def __dlpack__(self, stream=None, **kw):
        new = ctypes.pythonapi.PyCapsule_New
        new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self.managed), DLTENSOR_NAME, None)


def test_strides_of_empty_tensors_and_unit_dims_are_not_looked_at(pair):
    """DLPack exporters (numpy 2.x among them) may give any strides for a tensor of 0 elements
    or a dim of extent 1: such tensors are contiguous as PyTorch and DLPack define it."""
    base = np.arange(12, dtype=np.float32)
    tree = {"empty": StridedExport(base, (0, 3), (1, 10)),
            "empty_last": StridedExport(base, (3, 0), (0, 7)),
            "unit": StridedExport(base, (3, 1, 4), (4, 100, 1)),
            "ones": StridedExport(base, (1, 1), (11, 2))}
    p, c = pair()
    p.send(tree)
    with c.recv(timeout=5) as m:
        out = m.unwrap(kind="copy")
    assert out["empty"].shape == (0, 3) and out["empty_last"].shape == (3, 0)
    assert np.array_equal(np.from_dlpack(out["unit"]), base.reshape(3, 1, 4))
    assert np.from_dlpack(out["ones"]).tolist() == [[0.0]]
    with pytest.raises(cuipc.InvalidArgument, match=r"tree\[bad\]: the tensor is not contiguous"):
        p.send({"bad": StridedExport(base, (3, 2), (4, 2))})


def test_a_capsule_with_no_shape_is_refused_not_read(pair):
    base = np.arange(4, dtype=np.float32)
    bad = StridedExport(base, (2, 2), (2, 1))
    bad.managed.dl.shape = None
    p, _ = pair()
    with pytest.raises(cuipc.InvalidArgument, match=r"tree\[x\]: a DLPack tensor of 2 dimensions with no shape"):
        p.send({"x": bad})


def test_ctrl_c_inside_an_exporter_goes_on_as_itself(pair):
    """Not turned into InvalidArgument: the application's Ctrl-C handling still sees it."""
    class Interrupted:
        def __dlpack_device__(self):
            return (1, 0)

        def __dlpack__(self, stream=None, **kw):
            raise KeyboardInterrupt

    p, _ = pair()
    with pytest.raises(KeyboardInterrupt):
        p.send({"x": Interrupted()})


def test_copy_outlives_release_and_borrow_does_not(pair):
    p, c = pair()
    p.send({"x": np.arange(10, dtype=np.int32)})
    p.send({"x": np.arange(10, dtype=np.int32)})
    with c.recv(timeout=5) as m:
        copied = m.unwrap(kind="copy")["x"]
    with c.recv(timeout=5) as m:
        borrowed = m.unwrap(kind="borrow")["x"]
        assert not np.asarray(borrowed).flags.writeable
        assert borrowed.valid
    assert np.array_equal(np.asarray(copied), np.arange(10))
    np.asarray(copied)[0] = 42  # a copy is the consumer's own memory
    assert not borrowed.valid
    with pytest.raises(cuipc.Stale, match="after its message was released"):
        np.from_dlpack(borrowed)
    with pytest.raises(cuipc.Stale):
        memoryview(borrowed)
    p.drain(timeout=5)


def test_unwrap_after_release_is_refused(pair):
    p, c = pair()
    p.send({"x": np.ones(3)})
    m = c.recv(timeout=5)
    m.release()
    assert m.released
    with pytest.raises(cuipc.Stale):
        m.unwrap()


@pytest.mark.parametrize("kind", ["copy", "borrow"])
def test_spawned_consumers_receive_every_message(spawn, kind):
    n_consumers, n_messages = 2, 5
    results = spawn.ctx.Queue()
    with cuipc.Producer(max_consumers=n_consumers, host_pool_bytes=8 << 20) as p:
        for _ in range(n_consumers):
            spawn(workers.recv_loop, p.socket_path, kind, n_messages, results)
        assert p.accept(n_consumers, timeout=30) == n_consumers
        for i in range(n_messages):
            p.send({"i": i, "x": np.full((64, 64), i, dtype=np.float32), "tags": ["a", i]})
        seen = {}
        for _ in range(n_consumers * (n_messages + 1)):
            status, index, payload = results.get(timeout=30)
            assert status != "error", f"consumer failed: {index}: {payload}"
            if status == "ok":
                seen.setdefault(index, []).append(payload)
        assert sorted(seen) == list(range(n_consumers))
        for got in seen.values():
            assert [g["i"] for g in got] == list(range(n_messages))
            for g in got:
                assert g["x"] == ("tensor", "f32", (64, 64), 64 * 64 * g["i"])
                assert g["tags"] == ["a", g["i"]]
        p.drain(timeout=10)
        st = p.stats()
        assert st["messages_sent"] == n_messages
        # one chunk a message (x), recycled once when the last consumer releases it
        assert st["host_pool"]["recycled"] == n_messages and st["host_pool"]["in_flight"] == 0


def test_pooled_workers_serve_test_after_test(_worker_pool):
    """The session's worker processes (the GPU tests' consumers) run one test's jobs after
    another in the same process, and a test reads none of the reports an earlier test left."""
    pool, pids = _worker_pool, []
    for first in (100, 0):  # the first test leaves reports unread
        pool.begin()
        with cuipc.Producer(host_pool_bytes=8 << 20) as p:
            pool.run(0, "recv_loop", p.socket_path, "copy", 2)
            assert p.accept(1, timeout=30) == 1
            for i in (first, first + 1):
                p.send({"i": i, "x": np.full(4, i, dtype=np.int32)})
            status, _, payload = pool.get(timeout=30)
            assert status == "ok" and payload["i"] == first, payload
            if first == 0:
                assert pool.get(timeout=30)[2]["i"] == 1
            assert pool.finish() == []
        pids.append(pool.workers[0][0].pid)
    assert pids[0] == pids[1]


def test_out_of_band_through_the_applications_queue(spawn):
    results, inbox = spawn.ctx.Queue(), spawn.ctx.Queue()
    with cuipc.Producer(max_consumers=1) as p:
        spawn(workers.adopt_loop, p.socket_path, "borrow", inbox, results)
        p.accept(1, timeout=30)
        assert results.get(timeout=30)[0] == "attached"
        # the second encoding is longer than the first, the third shorter: the producer's
        # buffer for them grows once and is reused
        tags = ["a" * 10, "b" * 9000, "c" * 20]
        for i in range(3):
            wire = p.wrap({"x": np.arange(100, dtype=np.uint16) * i, "i": i, "tag": tags[i]})
            assert isinstance(wire, bytes) and len(wire) > len(tags[i])
            inbox.put(wire)
        inbox.put(None)
        got = [results.get(timeout=30) for _ in range(3)]
        for i, (status, _, payload) in enumerate(got):
            assert status == "ok", payload
            x = ("tensor", "u16", (100,), float(np.arange(100).sum() * i))
            assert payload == {"x": x, "i": i, "tag": tags[i]}
        p.drain(timeout=10)
        assert p.stats()["host_pool"]["recycled"] == 3


def test_cancel_gives_back_undelivered_wrapped_bytes(pair):
    p, c = pair()
    wire = p.wrap({"x": np.ones(1000, dtype=np.float32)})
    assert p.stats()["host_pool"]["in_flight"] == 1
    p.cancel(wire)
    st = p.stats()["host_pool"]
    assert st["in_flight"] == 0 and st["cancelled"] == 1


def test_pool_buffer_zero_copy_produce(pair):
    p, c = pair()
    buf = p.buffer(4096)
    assert buf.kind == "buffer" and buf.device == "cpu" and buf.nbytes == 4096
    view = np.asarray(buf)
    view[:] = np.arange(4096) % 251
    assert p.stats()["host_pool"]["held"] == 1
    p.send({"out": buf})
    with c.recv(timeout=5) as m:
        got = np.asarray(m.unwrap(kind="borrow")["out"])
        assert np.array_equal(got, np.arange(4096) % 251)
    with pytest.raises(cuipc.Stale):
        p.send({"out": buf})  # a buffer goes out once
    # Sent or freed, a buffer belongs to the transport: no new view of it is handed out (one
    # made before, like `view` above, cannot be watched).
    assert not buf.valid
    with pytest.raises(cuipc.Stale, match="used after it was sent or freed"):
        memoryview(buf)
    # The sent buffer recycled first: else the recycler may give its room back between the two
    # allocations below, and the second one lands there instead of at the freed one's address.
    p.drain(timeout=5)
    spare = p.buffer(256)
    assert spare.valid
    p.free_buffer(spare)
    assert not spare.valid
    with pytest.raises(cuipc.Stale, match="used after it was sent or freed"):
        np.from_dlpack(spare)
    # A new buffer at the freed one's address is another allocation: the old handle stays refused.
    again = p.buffer(256)
    assert again.data_ptr == spare.data_ptr and again.valid and not spare.valid
    with pytest.raises(cuipc.Stale):
        memoryview(spare)
    p.free_buffer(again)
    p.drain(timeout=5)
    assert p.stats()["host_pool"]["held"] == 0


def test_consumer_close_waits_for_its_messages(pair):
    p, c = pair()
    p.send({"x": np.arange(4, dtype=np.int8)})
    m = c.recv(timeout=5)
    tree = m.unwrap(kind="borrow")
    c.close()  # detaches once the message and its tensors are gone
    with pytest.raises(cuipc.Closed):
        c.recv(timeout=0)
    assert np.array_equal(np.asarray(tree["x"]), np.arange(4))
    m.release()
    del m, tree
    p.drain(timeout=5)


def test_a_kept_copy_does_not_hold_a_closed_consumer(pair):
    """Copies are the process's own memory: a consumer closed while a copy lives detaches at
    once and gives its place back (the producer would otherwise keep sending to it, its pool
    filling with chunks held for a consumer that reads nothing), and the copy keeps its values."""
    p, c = pair(max_consumers=1, host_pool_bytes=1 << 20)
    p.send({"x": np.arange(4.0)})
    with c.recv(timeout=5) as m:
        kept = np.asarray(m.unwrap(kind="copy")["x"])
    del m
    c.close()
    assert wait_for(lambda: p.stats()["consumers_now"] == 0), "a live copy kept it attached"
    # The one place is free again: a new consumer takes it and reads what comes next.
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("n", p.accept(1, timeout=10)))
    t.start()
    with cuipc.Consumer(p.socket_path, timeout=10) as c2:
        t.join()
        p.send({"x": np.full(4, 7.0)}, timeout=2)
        with c2.recv(timeout=5) as m2:
            assert np.array_equal(np.asarray(m2.unwrap()["x"]), np.full(4, 7.0))
    assert box["n"] == 1 and np.array_equal(kept, np.arange(4.0))


def test_numpy_scalars_go_as_the_values_they_hold(pair):
    """np.int64 image sizes, np.float32 scales, np.bool_ flags: sent as the int, float and bool
    they hold; a numpy scalar of another kind is still refused by its type's name."""
    p, c = pair()
    p.send({"sizes": [np.int64(336), np.uint16(224)], "scale": np.float32(0.5),
            "flag": np.bool_(True)})
    with c.recv(timeout=5) as m:
        got = m.unwrap()
    assert got == {"sizes": [336, 224], "scale": 0.5, "flag": True}
    assert type(got["flag"]) is bool and type(got["sizes"][0]) is int
    for t in (np.datetime64("2026-12-02"), np.datetime64(1, "ns"), np.timedelta64(5, "ns")):
        with pytest.raises(cuipc.InvalidArgument, match=r"tree\[t\]: numpy.\w+64 cannot be sent"):
            p.send({"t": t})  # its unit would be dropped
    with pytest.raises(cuipc.InvalidArgument, match="does not fit in 64 bits"):
        p.send({"u": np.uint64(2**63)})


def test_dtypes_round_trip(pair):
    # numpy exports no bool through DLPack before 1.25: bool is covered with torch (GPU tests).
    p, c = pair()
    dtypes = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
              np.uint64, np.float16, np.float32, np.float64]
    p.send({np.dtype(d).name: np.arange(6).astype(d).reshape(2, 3) for d in dtypes})
    with c.recv(timeout=5) as m:
        out = m.unwrap()
    for d in dtypes:
        a = np.from_dlpack(out[np.dtype(d).name])
        assert a.dtype == np.dtype(d) and np.array_equal(a, np.arange(6).astype(d).reshape(2, 3))


def test_blocking_calls_let_other_threads_run(pair):
    """recv waits with the GIL released: the send that ends the wait runs meanwhile."""
    import threading
    import time
    p, c = pair()
    got = {}

    def receive():
        with c.recv(timeout=5) as m:
            got["tree"] = m.unwrap()

    t = threading.Thread(target=receive)
    t.start()
    time.sleep(0.1)  # the receiver is inside recv now
    p.send({"x": np.arange(3, dtype=np.int16)})
    t.join(10)
    assert not t.is_alive()
    assert np.array_equal(np.asarray(got["tree"]["x"]), np.arange(3))


def test_threads_sharing_a_consumer_get_each_message_once(pair):
    """Threads receiving on one consumer take turns at its ring: every message reaches one of
    them, intact, and none is refused."""
    import collections
    import threading
    p, c = pair(host_pool_bytes=1 << 20)
    got, errors = collections.Counter(), []

    def receive():
        while True:
            try:
                with c.recv(timeout=2) as m:
                    tree = m.unwrap(kind="borrow" if sum(got.values()) % 2 else "copy")
                    if int(np.asarray(tree["x"])[0]) != tree["i"]:
                        errors.append(f"message {tree['i']} carried {np.asarray(tree['x'])[0]}")
                    got[tree["i"]] += 1
            except cuipc.Timeout:
                return
            except cuipc.Error as e:
                errors.append(repr(e))

    threads = [threading.Thread(target=receive) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(2000):
        p.send({"i": i, "x": np.full(64, i, np.int32)}, timeout=5)
    for t in threads:
        t.join(30)
    assert not errors and sorted(got) == list(range(2000)) and set(got.values()) == {1}
    assert c.stats()["rejected"] == 0


def test_profiled_send_is_a_send_timed_by_phase(pair):
    p, c = pair()
    phases = p._send_profiled({"i": 7, "x": np.arange(16, dtype=np.int64)})
    assert sorted(phases) == ["args", "convert", "deliver", "wrap"]
    assert all(isinstance(v, int) and v >= 0 for v in phases.values()) and phases["deliver"] > 0
    with c.recv(timeout=10) as m:
        tree = m.unwrap(kind="copy")
        assert tree["i"] == 7 and list(np.from_dlpack(tree["x"])) == list(range(16))
    with pytest.raises(cuipc.InvalidArgument, match="cannot be sent"):
        p._send_profiled({"x": object()})
    p.drain(timeout=10)
    assert p.stats()["messages_sent"] == 1 and p.stats()["host_pool"]["in_flight"] == 0


def test_dict_keys_come_back_as_sent_message_after_message(pair):
    """Keys are made from a small cache of recent ones: many keys sharing its slots, keys past its
    length limit, non-ASCII keys and changing key sets give back exactly the keys sent, in order."""
    p, c = pair()
    many = {f"k{i}": i for i in range(300)}
    trees = [many, {"x": 1, "i": 2}, {"i": 3, "x": 4}, {"é" * 40: 5, "k7": 6, "x" * 64: 7, "x" * 65: 8},
             {"": 9, "k299": 10}, dict(reversed(list(many.items()))), {"x": {"x": {"i": 11}}}]
    for _ in range(2):
        for tree in trees:
            p.send(tree)
            with c.recv(timeout=5) as m:
                out = m.unwrap()
            assert out == tree and list(out) == list(tree)
            assert all(type(k) is str for k in out)


def test_the_build_names_its_version():
    """Results files name what was built: the package version, and git's description of the tree
    (a commit, -dirty with local changes) when it was built from a checkout."""
    assert isinstance(cuipc.build_version, str) and cuipc.build_version.startswith(cuipc.__version__)


def test_a_copy_after_a_borrow_leaves_the_borrow_its_chunk(pair):
    """A copy gives its chunk back at once, but not while a borrow of the same message reads it:
    the chunk then waits for the message's release."""
    p, c = pair(host_pool_bytes=64 << 10)
    p.send({"a": np.arange(4, dtype=np.int32)})
    m = c.recv(timeout=5)
    borrowed = m.unwrap(kind="borrow")["a"]
    copied = m.unwrap(kind="copy")["a"]
    assert np.asarray(copied).tolist() == [0, 1, 2, 3]
    assert p.stats()["host_pool"]["in_flight"] == 1  # still held for the borrow
    for _ in range(20):  # the pool recycles around the held chunk, never into it
        p.send({"a": np.full(4, 99, np.int32)})
        with c.recv(timeout=5) as other:
            other.unwrap(kind="copy")
    assert borrowed.valid and np.asarray(borrowed).tolist() == [0, 1, 2, 3]
    m.release()
    assert not borrowed.valid
    with pytest.raises(cuipc.Stale, match="the message was released already"):
        m.unwrap(kind="copy")
    p.drain(timeout=5)


def test_a_tree_changed_while_it_is_sent_is_refused(pair):
    """Converting runs the exporters' Python, which may change the tree (here the exporter
    itself; another thread alike): RuntimeError as Python's own iteration, nothing left held."""
    p, _ = pair()
    lst = [None, 1, 2]
    lst[0] = ExportsAfter(lst.clear)
    d = {"a": None, "b": 2}
    d["a"] = ExportsAfter(d.clear)
    for tree, what in ((lst, "list"), (d, "dict")):
        with pytest.raises(RuntimeError, match=f"tree: the {what} changed size while it was being sent"):
            p.wrap(tree)
    assert p.stats()["host_pool"]["in_flight"] == 0


def test_numpy_is_told_why_a_tensor_has_no_array(pair):
    """numpy falls back from a refused buffer to __array__: the reason is raised there, never a
    0-d object array of the Tensor; a usable one converts, with a dtype if asked."""
    p, c = pair()
    p.send({"a": np.arange(6, dtype=np.int32).reshape(2, 3)})
    m = c.recv(timeout=5)
    b = m.unwrap(kind="borrow")["a"]
    assert np.asarray(b).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert b.__array__(np.float64).dtype == np.float64 and b.__array__(copy=True).flags.owndata
    m.release()
    with pytest.raises(cuipc.Stale, match="after its message was released"):
        np.asarray(b)


PyBUF_C_CONTIGUOUS = 0x0020 | 0x0010 | 0x0008  # with PyBUF_STRIDES and PyBUF_ND
PyBUF_F_CONTIGUOUS = 0x0040 | 0x0010 | 0x0008


def get_buffer(x, flags):
    """PyObject_GetBuffer(x, flags), for requests no Python-level reader makes (the view is
    leaked: these calls are expected to be refused)."""
    buf = (ctypes.c_char * 128)()  # a Py_buffer's room
    get = ctypes.pythonapi.PyObject_GetBuffer
    get.argtypes = [ctypes.py_object, ctypes.c_void_p, ctypes.c_int]
    return get(x, ctypes.addressof(buf), flags)


def test_a_dropped_buffer_goes_back_to_the_pool():
    """A buffer dropped unsent (the application raised between buffer() and send()) goes back
    to the pool once its cuipc.Tensor is collected, not held for the producer's life; while a
    view of it lives, the view holds it."""
    with cuipc.Producer(host_pool_bytes=64 << 10, full_policy="fail") as p:
        for _ in range(100):  # 16 fit at once
            b = p.buffer(4096)
            np.asarray(b)[:] = 1
            del b
        assert p.stats()["host_pool"]["held"] == 0
        view = np.asarray(p.buffer(4096))  # the tensor itself is dropped at once
        assert p.stats()["host_pool"]["held"] == 1, "freed under a live view"
        view[:] = 7
        del view
        assert p.stats()["host_pool"]["held"] == 0
        kept = p.buffer(4096)
        p.free_buffer(kept)  # freed by hand: the address is the next buffer's
        again = p.buffer(4096)
        del kept  # its own number no longer matches: the newer buffer stays held
        assert again.valid and p.stats()["host_pool"]["held"] == 1


def test_the_buffer_protocol_answers_what_is_asked(pair):
    """Plain bytes for a simple request (hashlib), the shape for an ND one, and a refusal for
    a Fortran-ordered view of a C-ordered 2-D tensor."""
    import hashlib
    p, c = pair()
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    p.send({"a": a})
    with c.recv(timeout=5) as m:
        x = m.unwrap()["a"]
        assert hashlib.sha256(x).hexdigest() == hashlib.sha256(a.tobytes()).hexdigest()
        assert memoryview(x).shape == (3, 4) and bytes(x) == a.tobytes()
        assert np.array_equal(np.asarray(x), a)
        with pytest.raises(BufferError, match="not Fortran-contiguous"):
            get_buffer(x, PyBUF_F_CONTIGUOUS)


def crc32c(data):
    """CRC-32C (Castagnoli), the wire header's checksum of the body."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def as_c_producer_transposed(wire):
    """The wrapped message of a 3x2 int32 tensor made into what a C producer sends for its
    transposed view (the same six elements, shape 2x3, strides (1, 2)): the Python producer
    sends contiguous tensors only, a C one may send any strides within the extent."""
    import struct
    old, new = struct.pack("<4q", 3, 2, 2, 1), struct.pack("<4q", 2, 3, 1, 2)
    assert wire.count(old) == 1
    magic, version, flags, length, crc = struct.unpack_from("<4sHHII", wire)
    body = wire[16:]
    assert magic == b"CUIP" and length == len(body) and crc == crc32c(body)
    body = body.replace(old, new)
    return struct.pack("<4sHHII", magic, version, flags, length, crc32c(body)) + body


@pytest.mark.parametrize("kind", ["copy", "borrow"])
def test_a_strided_tensor_from_a_c_producer_is_read_by_its_strides(pair, kind):
    """Readers that ask for strides get the transposed values; one that asks for plain bytes
    (hashlib) or C order is refused, never handed the memory as if it were row-major."""
    import hashlib
    p, c = pair(mode="default")
    a = np.arange(6, dtype=np.int32).reshape(3, 2)
    with c.adopt(as_c_producer_transposed(p.wrap({"x": a}))) as m:
        x = m.unwrap(kind=kind)["x"]
        assert x.shape == (2, 3) and x.strides == (1, 2)
        view = memoryview(x)
        assert view.strides == (4, 8) and view.f_contiguous and not view.c_contiguous
        assert np.asarray(x).tolist() == a.T.tolist()
        assert np.from_dlpack(x).tolist() == a.T.tolist()
        assert bytes(x) == a.T.tobytes()  # bytes() copies in C order through the strides
        with pytest.raises(BufferError, match="strided: a reader must ask for its strides"):
            hashlib.sha256(x)
        with pytest.raises(BufferError, match="not C-contiguous"):
            get_buffer(x, PyBUF_C_CONTIGUOUS)


def test_array_with_a_copy_flag_that_will_not_say_its_truth(pair):
    class Bad:
        def __bool__(self):
            raise ZeroDivisionError("no truth")

    p, c = pair()
    p.send({"a": np.ones(2)})
    with c.recv(timeout=5) as m:
        with pytest.raises(ZeroDivisionError):
            m.unwrap()["a"].__array__(copy=Bad())
