"""cuipc.compat: the reference's API, wrapped objects pickled through the application's own
multiprocessing queue to spawned receivers (host pool: the same path without a GPU)."""
import pickle
import time

import numpy as np
import pytest

import cuipc
from cuipc import compat
import workers


def mm_inputs(i):
    return {"pixel_values": np.full((8, 16), i, dtype=np.float32),
            "image_sizes": [(8, 16)], "grid": (np.arange(3, dtype=np.int64) + i, "thw"), "id": i}


def expected(i):
    return {"pixel_values": ("tensor", "float32", (8, 16), 128.0 * i), "image_sizes": [(8, 16)],
            "grid": (("tensor", "int64", (3,), 3.0 + 3 * i), "thw"), "id": i}


def test_default_mode_returns_the_tree_unchanged():
    tree = mm_inputs(1)
    assert compat.wrap_mm_inputs_for_ipc(tree, "default") is tree
    assert compat.wrap_mm_inputs_for_ipc(None, "cuda_ipc_pool") is None
    assert compat.unwrap_mm_inputs_from_ipc(None) is None


def test_pool_mode_needs_a_pool_and_a_known_mode():
    with pytest.raises(cuipc.InvalidArgument, match="needs a MmItemMemoryPool"):
        compat.wrap_mm_inputs_for_ipc({"x": np.ones(2)}, "cuda_ipc_pool")
    with pytest.raises(cuipc.InvalidArgument, match="transport_mode must be"):
        compat.wrap_mm_inputs_for_ipc({"x": np.ones(2)}, "shm")


def test_received_host_copies_are_the_receivers_own():
    with compat.MmItemMemoryPool(1 << 20, num_consumers=1, device="cpu") as pool:
        first = compat.wrap_mm_inputs_for_ipc({"x": np.arange(4.0)}, "cuda_ipc_pool", pool)
        assert compat.unwrap_mm_inputs_from_ipc(first)["x"].tolist() == [0, 1, 2, 3]  # attaches
        for _ in range(50):  # the pool's thread accepts the receiver
            if pool.ready():
                break
            time.sleep(0.05)
        assert pool.ready()
        wrapped = compat.wrap_mm_inputs_for_ipc({"x": np.arange(4.0)}, "cuda_ipc_pool", pool)
        assert wrapped["x"].wire is not None
        x = compat.unwrap_mm_inputs_from_ipc(pickle.loads(pickle.dumps(wrapped)))["x"]
        x[0] = 9  # a copy: writable, and the chunk is back in the pool
        assert x.tolist() == [9, 1, 2, 3]
        pool.producer.drain(timeout=5)
        assert pool.stats()["host_pool"]["recycled"] == 1


def test_by_value_until_receivers_attach():
    with compat.MmItemMemoryPool(1 << 20, num_consumers=1, device="cpu") as pool:
        wrapped = compat.wrap_mm_inputs_for_ipc(mm_inputs(2), "cuda_ipc_pool", pool)
        proxy = wrapped["pixel_values"]
        assert isinstance(proxy, compat.CudaIpcTensorTransportProxy)
        assert proxy.wire is None and proxy.socket_path == pool.socket_path
        again = pickle.loads(pickle.dumps(wrapped))
        assert again["image_sizes"] == [(8, 16)] and again["id"] == 2
        assert pool.stats()["by_value"] == 2


def attached_host_pool(size=1 << 20):
    """A host pool with this process attached as its one receiver (by a first object by value)."""
    pool = compat.MmItemMemoryPool(size, num_consumers=1, device="cpu")
    compat.unwrap_mm_inputs_from_ipc(compat.wrap_mm_inputs_for_ipc({"x": np.ones(1)}, "cuda_ipc_pool", pool))
    for _ in range(100):
        if pool.ready():
            return pool
        time.sleep(0.05)
    pytest.fail("the receiver never attached")


def test_a_by_value_object_needs_no_producer():
    """Unwrapped at once from its own bytes, also once the producer is gone (no attach wait)."""
    with compat.MmItemMemoryPool(1 << 20, num_consumers=1, device="cpu") as pool:
        wrapped = compat.wrap_mm_inputs_for_ipc({"x": np.arange(3.0)}, "cuda_ipc_pool", pool)
    assert wrapped["x"].wire is None and wrapped["x"].device is None
    t0 = time.monotonic()
    again = pickle.loads(pickle.dumps(wrapped))
    assert compat.unwrap_mm_inputs_from_ipc(again)["x"].tolist() == [0, 1, 2]
    assert time.monotonic() - t0 < 5  # an attach would wait out its 10 s


@pytest.mark.usefixtures("torch_path")  # through torch's exchange table, and through its bindings
def test_any_dtype_travels_and_an_object_unwraps_twice_alike():
    """torch bool, complex and a tensor that requires grad through the pool, as the reference's
    byte copies carry them; a second unwrap gives the first one's tensor."""
    torch = pytest.importorskip("torch")
    with attached_host_pool() as pool:
        tree = {"mask": torch.tensor([[True, False], [False, True]]),
                "z": torch.tensor([1 + 2j, -3j], dtype=torch.complex64),
                "g": torch.ones(3, requires_grad=True) * 2, "scalar": torch.tensor(1 + 1j),
                "n": np.array([1 + 1j, 2], np.complex128),
                "conj": torch.tensor([1 + 2j]).conj(), "neg": torch.tensor([1 + 2j, 3 - 4j]).conj().imag,
                "rec": np.array([(1, 2.5)], dtype=[("a", "<i4"), ("b", "<f8")])}
        wrapped = pickle.loads(pickle.dumps(compat.wrap_mm_inputs_for_ipc(tree, "cuda_ipc_pool", pool)))
        assert all(v.wire is not None for v in wrapped.values())
        out = compat.unwrap_mm_inputs_from_ipc(wrapped)
        assert out["mask"].dtype == torch.bool and out["mask"].tolist() == [[True, False], [False, True]]
        assert out["z"].dtype == torch.complex64 and out["z"].tolist() == [1 + 2j, -3j]
        assert not out["g"].requires_grad and out["g"].tolist() == [2.0, 2.0, 2.0]
        assert out["scalar"].shape == () and out["scalar"].item() == 1 + 1j
        assert out["n"].dtype == np.complex128 and out["n"].tolist() == [1 + 1j, 2]
        assert out["conj"].tolist() == [1 - 2j] and out["neg"].tolist() == [-2.0, 4.0]
        assert out["rec"].dtype.names == ("a", "b") and out["rec"].tolist() == [(1, 2.5)]
        again = compat.unwrap_mm_inputs_from_ipc(wrapped)
        assert all(again[k] is out[k] for k in out)
        pool.producer.drain(timeout=5)
        assert pool.stats()["host_pool"]["in_flight"] == 0


def test_everyday_numpy_arrays_travel_through_the_pool():
    """numpy arrays that numpy's DLPack export refuses travel all the same once receivers are
    attached: bool (numpy before 1.25), read-only ones (np.frombuffer, memory maps), big-endian
    ones (values and byte order kept), and object arrays (by value: they hold pointers)."""
    ro = np.frombuffer(np.arange(6, dtype=np.int32).tobytes(), dtype=np.int32)
    assert not ro.flags.writeable
    tree = {"mask": np.array([True, False, True]), "ro": ro,
            "be": np.arange(4, dtype=">i4"), "obj": np.array([{"a": 1}, None], dtype=object)}
    with attached_host_pool() as pool:
        wrapped = pickle.loads(pickle.dumps(compat.wrap_mm_inputs_for_ipc(tree, "cuda_ipc_pool", pool)))
        assert all(wrapped[k].wire is not None for k in ("mask", "ro", "be"))
        out = compat.unwrap_mm_inputs_from_ipc(wrapped)
        assert out["mask"].dtype == np.bool_ and out["mask"].tolist() == [True, False, True]
        assert out["ro"].tolist() == list(range(6))
        assert out["be"].dtype == np.dtype(">i4") and out["be"].tolist() == [0, 1, 2, 3]
        assert out["obj"].tolist() == [{"a": 1}, None]
        pool.producer.drain(timeout=5)
        assert pool.stats()["host_pool"]["in_flight"] == 0


def test_receivers_waiting_on_one_failed_attach_all_get_its_error(monkeypatch, tmp_path):
    """Threads unwrapping objects of one producer wait for one attach; when it fails, each
    raises the attach's error (not a KeyError), and the next object tries again."""
    import threading
    monkeypatch.setattr(compat, "_ATTACH_TIMEOUT_S", 0.3)
    path = str(tmp_path / "nobody.sock")
    errors = []

    def unwrap():
        try:
            compat._consumer_for(path)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=unwrap) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(errors) == 3 and all(isinstance(e, cuipc.Error) for e in errors), errors
    with pytest.raises(cuipc.Error):
        compat._consumer_for(path)


def test_an_object_given_back_unread_frees_its_chunk():
    with attached_host_pool() as pool:
        before = pool.stats()["host_pool"]["recycled"]
        wrapped = compat.wrap_mm_inputs_for_ipc({"x": np.arange(8.0), "meta": [np.ones(2)]}, "cuda_ipc_pool", pool)
        compat.discard_mm_inputs_from_ipc(wrapped)
        pool.producer.drain(timeout=5)
        st = pool.stats()["host_pool"]
        assert st["in_flight"] == 0 and st["recycled"] == before + 2
        with pytest.raises(cuipc.Stale, match="discarded"):
            compat.unwrap_mm_inputs_from_ipc(wrapped)
        compat.discard_mm_inputs_from_ipc(None)


@pytest.mark.parametrize("pooled", [False, True], ids=["spawned", "pooled"])
@pytest.mark.parametrize("num_consumers", [1, 2])
def test_receivers_through_a_multiprocessing_queue(spawn, workers_pool, num_consumers, pooled):
    """Receivers spawned for the test, or the session's pooled workers (as the GPU tests')."""
    n_items = 6
    if pooled:
        put, get = workers_pool.put, workers_pool.get
    else:
        results = spawn.ctx.Queue()
        inboxes = [spawn.ctx.Queue() for _ in range(num_consumers)]
        put, get = (lambda k, item: inboxes[k].put(item)), results.get
    with compat.MmItemMemoryPool(4 << 20, num_consumers=num_consumers, device="cpu") as pool:
        for k in range(num_consumers):
            if pooled:
                workers_pool.run(k, "compat_worker")
            else:
                spawn(workers.compat_worker, inboxes[k], results)
        got = []
        for i in range(n_items):
            wrapped = compat.wrap_mm_inputs_for_ipc(mm_inputs(i), "cuda_ipc_pool", pool)
            for k in range(num_consumers):
                put(k, wrapped)  # the queue pickles it, as the reference's TensorQueue does
            for _ in range(num_consumers):
                status, *payload = get(timeout=30)
                assert status == "ok", payload
                got.append((i, payload[0]))
        for i, payload in got:
            assert payload == expected(i)
        pool.producer.drain(timeout=10)
        st = pool.stats()
        # The first item goes by value (nobody attached yet); the rest through the pool. (Asked
        # before the receivers are told to exit: an exited receiver is not attached any more.)
        assert pool.ready() and st["by_value"] >= 2
        assert st["host_pool"]["recycled"] >= 2 and st["host_pool"]["in_flight"] == 0
        assert st["host_pool"]["recycled"] + st["by_value"] == 2 * n_items
        for k in range(num_consumers):
            put(k, None)
