"""GPU tests (marked gpu; skipped without a GPU or without torch): torch CUDA tensors through
cuda_ipc_pool and cuda_ipc to spawned consumers, copy and borrow, streams, zero-copy produce,
and cuipc.compat with the reference's pattern."""
import os
import sys

import pytest

import cuipc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import first_copy  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def feature(torch, i, shape=(256, 1024), dtype=None):
    dtype = dtype or torch.bfloat16
    return (torch.arange(shape[0] * shape[1], device="cuda", dtype=torch.float32).reshape(shape) % 97
            + i).to(dtype)


def expected_sum(torch, i, shape=(256, 1024), dtype=None):
    return float(feature(torch, i, shape, dtype).double().sum().item())


def start_consumers(pool, p, n, kind, count, use_stream, job="gpu_recv", **kw):
    """n GPU consumer processes (the session's pooled workers: torch imported and CUDA set up
    once) attached to p; their reports come from the returned pool."""
    for k in range(n):
        if job == "gpu_recv":
            kw["use_stream"] = use_stream
        pool.run(k, job, p.socket_path, kind, count, **kw)
    p.accept(n, timeout=60)
    for _ in range(n):
        report = pool.get(timeout=60)
        assert report[0] == "attached", report
    return pool


def next_report(results):
    status, _, payload = results.get(timeout=60)
    assert status == "ok", payload
    return payload


@pytest.mark.parametrize("mode", ["cuda_ipc_pool", "cuda_ipc"])
@pytest.mark.parametrize("kind", ["copy", "borrow"])
@pytest.mark.parametrize("n_consumers", [1, 2])
def test_torch_tensors_to_spawned_consumers(workers_pool, torch, mode, kind, n_consumers):
    n_messages = 4
    with cuipc.Producer(mode=mode, gpu_pool_bytes=64 << 20, max_consumers=n_consumers) as p:
        results = start_consumers(workers_pool, p, n_consumers, kind, n_messages, kind == "borrow")
        stream = torch.cuda.Stream()
        sent = []
        for i in range(n_messages):
            with torch.cuda.stream(stream):
                x = feature(torch, i)
                sent.append(x)  # cuda_ipc exports this allocation itself
                p.send({"pixel_values": x, "i": i, "mask": torch.ones(7, device="cuda", dtype=torch.uint8)},
                       stream=stream)
        for g in [next_report(results) for _ in range(n_consumers * n_messages)]:
            assert g["pixel_values"][:4] == ("tensor", "torch.bfloat16", (256, 1024), "cuda:0")
            assert g["pixel_values"][4] == expected_sum(torch, g["i"])
            assert g["mask"][4] == 7.0
        if mode == "cuda_ipc_pool":
            p.drain(timeout=30)
            st = p.stats()["gpu_pool"]
            # one chunk per tensor (pixel_values and mask), recycled once whatever the consumers
            assert st["in_flight"] == 0 and st["recycled"] == 2 * n_messages
        else:
            assert p.stats()["ipc_retained_bytes"] > 0


def send_features(p, torch, n_messages, host_tensor=False):
    """n_messages of a GPU feature tensor (and a small CPU one with host_tensor), sent on torch's
    current stream."""
    for i in range(n_messages):
        tree = {"pixel_values": feature(torch, i), "i": i}
        if host_tensor:
            tree["host"] = feature(torch, i, (16, 16), torch.float32).cpu()
        p.send(tree, stream=torch.cuda.current_stream())


def check_features(results, torch, n_messages, stream_ordered=None):
    """gpu_recv_torch's reports of send_features' messages: every tensor on GPU 0 with its data,
    and each message stream-ordered as expected (None: either)."""
    for _ in range(n_messages):
        g = next_report(results)
        assert g["pixel_values"][:4] == ("tensor", "torch.bfloat16", (256, 1024), "cuda:0")
        assert g["pixel_values"][4] == expected_sum(torch, g["i"])
        if "host" in g:
            assert g["host"][:4] == ("tensor", "torch.float32", (16, 16), "cuda:0")
            assert g["host"][4] == expected_sum(torch, g["i"], (16, 16), torch.float32)
        if stream_ordered is not None:
            assert g["stream_ordered"] is stream_ordered


@pytest.mark.parametrize("kind", ["copy", "borrow"])
@pytest.mark.parametrize("stream_mode", ["none", "own", "busy", "device"])
def test_unwrap_straight_to_torch(workers_pool, torch, torch_path, kind, stream_mode):
    """unwrap(torch=True): torch tensors out of the unwrap, right when read on torch's current
    stream, whether the unwrap ran on its default stream, on a stream of the consumer's that was
    still busy, or (device given, no stream) on torch's current stream itself (workers.py). A
    copy out of the GPU pool is left queued on the unwrap's stream: stream-ordered."""
    n_messages = 3
    with cuipc.Producer(mode="cuda_ipc_pool", gpu_pool_bytes=64 << 20) as p:
        results = start_consumers(workers_pool, p, 1, kind, n_messages, None, job="gpu_recv_torch",
                                  stream_mode=stream_mode, exchange=torch_path)
        send_features(p, torch, n_messages)
        check_features(results, torch, n_messages, True if kind == "copy" else None)
        p.drain(timeout=30)
        assert p.stats()["gpu_pool"]["in_flight"] == 0


@pytest.mark.parametrize("mode,host_tensor,ordered", [("default", False, False), ("cuda_ipc_pool", True, True)],
                         ids=["default-mode", "host-and-gpu-pool"])
def test_copies_to_gpu_are_stream_ordered_as_left(workers_pool, torch, torch_path, mode, host_tensor,
                                                  ordered):
    """Copies to GPU 0 on a stream still busy with ~0.1 s of GPU work (workers.py, "busy"), read
    on torch's own current stream, another one. Default mode: the copy out of the host pool is
    waited for inside the unwrap, so the message is not stream-ordered. A host-pool and a
    GPU-pool tensor in one message: the GPU one's copy is left queued, so the message stays
    stream-ordered and torch's stream is made to follow the unwrap's."""
    n_messages = 3
    with cuipc.Producer(mode=mode, gpu_pool_bytes=16 << 20 if mode != "default" else 0,
                        host_pool_bytes=16 << 20) as p:
        results = start_consumers(workers_pool, p, 1, "copy", n_messages, None, job="gpu_recv_torch",
                                  stream_mode="busy", device=0, exchange=torch_path)
        send_features(p, torch, n_messages, host_tensor)
        check_features(results, torch, n_messages, ordered)
        p.drain(timeout=30)


def test_stream_arguments(workers_pool, torch, torch_path):
    with cuipc.Producer(mode="cuda_ipc_pool", gpu_pool_bytes=16 << 20) as p:
        results = start_consumers(workers_pool, p, 1, "copy", 3, True, exchange=torch_path)
        s = torch.cuda.Stream()
        for i, stream in enumerate([s, s.cuda_stream, None]):
            with torch.cuda.stream(s):
                x = feature(torch, i, (64, 64), torch.float32)
            if stream is None:
                s.synchronize()
            p.send({"pixel_values": x, "i": i}, stream=stream)
        for _ in range(3):
            g = next_report(results)
            assert g["pixel_values"][4] == expected_sum(torch, g["i"], (64, 64), torch.float32)


def test_stream_objects_in_turn(workers_pool, torch, torch_path):
    """More stream objects than the extension remembers the handles of, in turn: each send is
    ordered on its own stream. The tensor is written on that stream after a delay and sent from
    outside it, so a send ordered on any other stream would copy it before it is written."""
    n = 6
    with cuipc.Producer(mode="cuda_ipc_pool", gpu_pool_bytes=16 << 20) as p:
        results = start_consumers(workers_pool, p, 1, "copy", 2 * n, True, exchange=torch_path)
        streams = [torch.cuda.Stream() for _ in range(n)]
        for i in range(2 * n):
            s = streams[i % n]
            with torch.cuda.stream(s):
                torch.cuda._sleep(20_000_000)
                x = feature(torch, i, (64, 64), torch.float32)
            p.send({"pixel_values": x, "i": i}, stream=s)
        for _ in range(2 * n):
            g = next_report(results)
            assert g["pixel_values"][4] == expected_sum(torch, g["i"], (64, 64), torch.float32)


def test_zero_copy_produce_into_a_gpu_buffer(workers_pool, torch):
    with cuipc.Producer(mode="cuda_ipc_pool", gpu_pool_bytes=16 << 20) as p:
        results = start_consumers(workers_pool, p, 1, "borrow", 1, False)
        buf = p.buffer(64 * 64 * 4)
        assert buf.device == "cuda:0" and p.stats()["gpu_pool"]["held"] == 1
        out = torch.from_dlpack(buf).view(torch.float32).view(64, 64)
        out.copy_(feature(torch, 3, (64, 64), torch.float32))  # the "model" writes its output
        p.send({"pixel_values": out, "i": 3}, stream=torch.cuda.current_stream())
        g = next_report(results)
        assert g["pixel_values"][4] == expected_sum(torch, 3, (64, 64), torch.float32)
        p.drain(timeout=30)
        assert p.stats()["gpu_pool"]["held"] == 0


def test_prepare_makes_the_copy_pools_first_allocation(spawn, torch):
    """The driver's first stream-ordered allocation in a process costs it thousands of page
    faults (and milliseconds); prepare() makes it, so a fresh consumer's first copy does not
    (first_copy.py's consumer). A fresh process: a pooled worker's pool was made by earlier
    tests."""
    with cuipc.Producer(mode="cuda_ipc_pool", gpu_pool_bytes=16 << 20) as p:
        results = spawn.ctx.Queue()
        spawn(first_copy.consumer, p.socket_path, True, results)
        p.accept(1, timeout=60)
        status, payload = results.get(timeout=120)
        assert status == "attached", payload
        p.send({"x": torch.ones(4096, device="cuda")}, stream=torch.cuda.current_stream())
        status, got = results.get(timeout=60)
        assert status == "ok", got
        assert got["data_ok"] and got["faults"] < 1000, got


def test_a_wait_for_gpu_pool_room_runs_signal_handlers(torch, interrupted):
    """A buffer that waits for GPU pool room with no limit (full_timeout=None) waits in slices:
    a handler that raises ends it, and the pool counts one full event and no failure."""
    with cuipc.Producer(mode="cuda_ipc_pool", gpu_pool_bytes=16 << 20, full_timeout=None) as p:
        held = p.buffer(12 << 20)
        assert interrupted(lambda: p.buffer(12 << 20)) < 2
        pool = p.stats()["gpu_pool"]
        assert (pool["held"], pool["full_events"], pool["full_failures"]) == (1, 1, 0)
        p.free_buffer(held)
        assert p.buffer(12 << 20).device == "cuda:0"  # room again: no wait


def test_close_waits_for_the_copies_queued_on_a_stream(pair, torch):
    """A producer closed while a wrap's copy into its GPU pool is queued behind two seconds of
    GPU work: close() waits for it (the stream is idle once it returns); close(timeout=0.2)
    gives up before the GPU gets there, leaving the pool allocated, and says so, closed all the
    same. Either way the stream's work then runs clean."""
    x = torch.ones(1024, device="cuda")
    for timeout in (None, 0.2):
        p, c = pair(mode="cuda_ipc_pool", gpu_pool_bytes=16 << 20)
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            torch.cuda._sleep(4_000_000_000)  # about 2 s of GPU clock cycles
        p.wrap({"x": x}, stream=s)  # its copy and ready word queued after the sleep
        if timeout is None:
            p.close()
            assert s.query()  # it waited for the GPU
        else:
            with pytest.raises(cuipc.Timeout, match="left allocated"):
                p.close(timeout=timeout)
            assert p.closed and not s.query()  # gave up while the GPU was still asleep
        s.synchronize()
        torch.cuda.synchronize()


def test_a_dropped_gpu_buffer_goes_back_in_stream_order(torch):
    """A GPU buffer dropped unsent while a kernel queued on torch's current stream still writes
    it goes back to the pool at once, with no device synchronisation; the next buffer at its
    address, written on the same stream, holds its own writes: the stream orders them after the
    dropped buffer's."""
    with cuipc.Producer(mode="cuda_ipc_pool", gpu_pool_bytes=1 << 20, full_policy="fail") as p:
        b = p.buffer(4096, device=0)
        t = torch.from_dlpack(b)
        torch.cuda._sleep(1_000_000_000)  # about half a second of GPU clock cycles
        t.fill_(1)
        ptr = b.data_ptr
        del t, b  # the application raised here: nothing sent, nothing freed by hand
        assert not torch.cuda.current_stream().query(), "the drop waited for the GPU"
        assert p.stats()["gpu_pool"]["held"] == 0
        nb = p.buffer(4096, device=0)
        assert nb.data_ptr == ptr
        nxt = torch.from_dlpack(nb)
        nxt.zero_()
        torch.cuda.synchronize()
        assert int(nxt.sum()) == 0


def test_bad_gpu_input_is_refused(torch):
    with cuipc.Producer(mode="cuda_ipc_pool", gpu_pool_bytes=16 << 20) as p:
        with pytest.raises(cuipc.InvalidArgument, match="not contiguous"):
            p.wrap({"x": torch.ones(8, 8, device="cuda").t()})
        if torch.cuda.device_count() > 1:
            with pytest.raises(cuipc.Error):
                p.wrap({"x": torch.ones(8, device="cuda:1")})
        with pytest.raises(cuipc.PeerDead):
            p.wrap({"x": torch.ones(8, device="cuda")})


def test_compat_reference_pattern(workers_pool, torch):
    from cuipc import compat
    with compat.MmItemMemoryPool(64 << 20, num_consumers=1, device=0) as pool:
        workers_pool.run(0, "compat_worker", device_index=0)
        n = 5
        for i in range(n):
            mm = {"pixel_values": feature(torch, i), "image_grid_thw": torch.tensor([[1, 16, 16]]), "i": i}
            workers_pool.put(0, compat.wrap_mm_inputs_for_ipc(mm, "cuda_ipc_pool", pool))
            status, payload = workers_pool.get(timeout=60)
            assert status == "ok", payload
            assert payload["pixel_values"] == ("tensor", "torch.bfloat16", (256, 1024), expected_sum(torch, i))
            assert payload["image_grid_thw"][3] == 33.0  # CPU tensors pass unchanged
        workers_pool.put(0, None)
        pool.producer.drain(timeout=30)
        st = pool.stats()
        assert st["by_value"] >= 1 and st["gpu_pool"]["recycled"] == n - st["by_value"]
        assert st["gpu_pool"]["in_flight"] == 0


def test_compat_gives_one_device_by_value_or_pooled(workers_pool, torch):
    """device_index=None in the receiver: a tensor by value (no receiver attached yet, or the
    pool full) comes back on the GPU it came from, as a pooled one does, not in host memory;
    the dtypes cuipc does not carry (bool, complex) come through the pool as bytes."""
    import time
    from cuipc import compat
    with compat.MmItemMemoryPool(1 << 20, num_consumers=1, device=0) as pool:
        workers_pool.run(0, "compat_worker", with_device=True)

        def through(obj):
            workers_pool.put(0, obj)
            status, payload = workers_pool.get(timeout=60)
            assert status == "ok", payload
            return payload

        wrap = lambda tree: compat.wrap_mm_inputs_for_ipc(tree, "cuda_ipc_pool", pool)  # noqa: E731
        first = wrap({"x": feature(torch, 1, (4, 8))})
        assert first["x"].wire is None  # nobody attached yet: by value
        assert through(first)["x"] == ("tensor", "torch.bfloat16", (4, 8), expected_sum(torch, 1, (4, 8)), "cuda:0")
        for _ in range(100):  # the worker attached on that object
            if pool.ready():
                break
            time.sleep(0.05)
        assert pool.ready()
        tree = {"x": feature(torch, 2, (4, 8)), "mask": torch.ones(3, 3, device="cuda", dtype=torch.bool),
                "z": torch.full((2,), 3 + 4j, device="cuda", dtype=torch.complex64)}
        got = through(wrap(tree))
        assert got == {"x": ("tensor", "torch.bfloat16", (4, 8), expected_sum(torch, 2, (4, 8)), "cuda:0"),
                       "mask": ("tensor", "torch.bool", (3, 3), 9.0, "cuda:0"),
                       "z": ("tensor", "torch.complex64", (2,), 10.0, "cuda:0")}
        # The pool full (1 MiB, one chunk held by an object not sent yet): by value after
        # full_timeout, and back on the GPU all the same.
        held = wrap({"big": torch.ones(900_000, device="cuda", dtype=torch.uint8)})
        spill = wrap({"x": torch.ones(300_000, device="cuda", dtype=torch.uint8)})
        assert held["big"].wire is not None and spill["x"].wire is None
        assert through(spill)["x"] == ("tensor", "torch.uint8", (300_000,), 300_000.0, "cuda:0")
        assert through(held)["big"][3:] == (900_000.0, "cuda:0")
        workers_pool.put(0, None)
        pool.producer.drain(timeout=30)
        st = pool.stats()
        assert st["by_value"] == 2 and st["gpu_pool"]["in_flight"] == 0


def test_send_waits_for_torchs_current_stream(workers_pool, torch, torch_path):
    """A tensor still being written on torch's current stream, sent on another stream (a stream of
    its own, then None: the legacy default stream): the send's stream waits for torch's current
    one, as torch's __dlpack__ made it do, so the consumer sees the finished write."""
    with cuipc.Producer(mode="cuda_ipc_pool", gpu_pool_bytes=16 << 20) as p:
        results = start_consumers(workers_pool, p, 1, "copy", 2, True, exchange=torch_path)
        side, send_stream = torch.cuda.Stream(), torch.cuda.Stream()
        kept = []  # not recycled by torch's allocator while the send's stream may still read it
        for i in range(2):
            with torch.cuda.stream(side):
                x = torch.zeros(64, 64, device="cuda")
                kept.append(x)
                torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU time before the write
                x.copy_(feature(torch, i, (64, 64), torch.float32))
                p.send({"pixel_values": x, "i": i}, stream=send_stream if i == 0 else None)
        for _ in range(2):
            g = next_report(results)
            assert g["pixel_values"][4] == expected_sum(torch, g["i"], (64, 64), torch.float32)
        torch.cuda.synchronize()
