"""Every error class: each status maps to its class, carrying the library's message; each one the
API can meet without a GPU is provoked for real; bad input from Python is a clear error."""
import time

import numpy as np
import pytest

import cuipc
from cuipc import _cuipc
import workers
from conftest import Stop, stop, wait_for

CLASSES = {
    "INVALID_ARG": cuipc.InvalidArgument, "NO_MEMORY": cuipc.NoMemory, "POOL_FULL": cuipc.PoolFull,
    "TIMEOUT": cuipc.Timeout, "STALE": cuipc.Stale, "DUPLICATE": cuipc.Duplicate,
    "CORRUPT": cuipc.Corrupt, "UNKNOWN_POOL": cuipc.UnknownPool, "CUDA": cuipc.CudaError,
    "NO_GPU": cuipc.NoGpu, "SYSTEM": cuipc.SystemFailure, "PEER_DEAD": cuipc.PeerDead,
    "CLOSED": cuipc.Closed, "UNSUPPORTED": cuipc.Unsupported, "VERSION": cuipc.VersionMismatch,
    "PERMISSION": cuipc.PermissionDenied,
}


@pytest.mark.parametrize("code", range(1, _cuipc.STATUS_COUNT))
def test_every_status_has_its_class(code):
    name = cuipc._cuipc.status_name(code)
    cls = CLASSES[name]
    assert issubclass(cls, cuipc.Error) and cls.status == name
    with pytest.raises(cls, match=f"message for {name}") as info:
        _cuipc._raise_status(code, f"message for {name}")
    assert info.value.status == name


def test_builtin_bases():
    assert issubclass(cuipc.InvalidArgument, ValueError)
    assert issubclass(cuipc.Timeout, TimeoutError)
    assert issubclass(cuipc.PermissionDenied, PermissionError)
    assert issubclass(cuipc.NoMemory, MemoryError)
    assert issubclass(cuipc.Unsupported, BufferError)  # the array API's __dlpack__ refusals


def test_invalid_argument():
    with pytest.raises(cuipc.InvalidArgument, match="mode must be"):
        cuipc.Producer(mode="shared_memory")
    with pytest.raises(cuipc.InvalidArgument, match="full_policy"):
        cuipc.Producer(full_policy="drop")


def test_pool_full_and_timeout(pair):
    p, _ = pair(host_pool_bytes=64 << 10, full_policy="fail")
    p.send({"a": np.ones(40 << 10, np.uint8)})  # not released: the pool stays occupied
    with pytest.raises(cuipc.PoolFull, match="no free block for 40960 bytes"):
        p.send({"a": np.ones(40 << 10, np.uint8)})
    q, _ = pair(host_pool_bytes=64 << 10, full_policy="wait", full_timeout=0.05)
    q.send({"a": np.ones(40 << 10, np.uint8)})
    with pytest.raises(cuipc.Timeout, match="after waiting 50 ms"):
        q.send({"a": np.ones(40 << 10, np.uint8)})


def test_a_message_bigger_than_the_pool_is_refused_at_once(pair):
    """In bytes or in slots: waiting could only wait for the message's own chunks, so PoolFull
    comes at once, even with no limit on the wait, and nothing stays allocated."""
    import time
    p, c = pair(host_pool_bytes=1 << 20, full_timeout=None, slots=64)
    for tree in ([np.ones(400 << 10, np.uint8) for _ in range(3)], [np.ones(16, np.uint8) for _ in range(100)]):
        t0 = time.monotonic()
        with pytest.raises(cuipc.PoolFull, match="nothing to wait for: the message's own"):
            p.send(tree)
        # at once (with no limit a wait would never end); the bound leaves room for a busy host
        assert time.monotonic() - t0 < 5 and p.stats()["host_pool"]["in_flight"] == 0
    p.send([np.ones(400 << 10, np.uint8) for _ in range(2)])  # one that fits still goes
    with c.recv(timeout=5) as m:
        assert len(m.unwrap()) == 2


def test_full_timeout_none_waits_for_room_without_a_limit(pair):
    """Left out, full_timeout is the library's 1 s; None waits until a release makes room, here
    1.5 s later."""
    import threading
    import time
    p, c = pair(host_pool_bytes=64 << 10, full_timeout=None)
    p.send({"a": np.ones(40 << 10, np.uint8)})
    held = c.recv(timeout=5)
    threading.Timer(1.5, held.release).start()
    t0 = time.monotonic()
    p.send({"a": np.ones(40 << 10, np.uint8)})
    assert time.monotonic() - t0 >= 1.4
    q, _ = pair(host_pool_bytes=64 << 10)
    q.send({"a": np.ones(40 << 10, np.uint8)})
    with pytest.raises(cuipc.Timeout, match=r"after waiting .* \(1000 ms in all\)"):
        q.send({"a": np.ones(40 << 10, np.uint8)})
    # Waited in five slices of 200 ms: one wait, one failure in the pool's stats, not five.
    pool = q.stats()["host_pool"]
    assert (pool["full_events"], pool["full_failures"]) == (1, 1)


def test_recv_timeout(pair):
    _, c = pair()
    with pytest.raises(cuipc.Timeout, match="nothing after"):
        c.recv(timeout=0.05)


def test_a_wait_with_no_limit_still_runs_signal_handlers(pair, usr1, interrupted):
    """recv(), accept() and drain() wait in slices: a handler that raises (Ctrl-C, a SIGTERM
    handler) ends the wait, and one that closes the object ends it with Closed."""
    p, c = pair(max_consumers=2)  # one attached: accept(2) waits
    assert interrupted(lambda: c.recv()) < 2
    assert interrupted(lambda: p.accept(2)) < 2
    p.send({"x": np.ones(4)})  # not received yet: drain waits for its chunk
    assert interrupted(lambda: p.drain()) < 2
    c.recv(timeout=5).release()
    p.drain(timeout=5)
    usr1(lambda *a: c.close())
    with pytest.raises(cuipc.Closed, match="recv: closed while it waited"):
        c.recv()


def test_a_send_blocked_with_no_limit_still_runs_signal_handlers(pair, usr1, interrupted):
    """send(), wrap() and buffer() wait for pool room (full_timeout=None) and send() for ring room
    (timeout=None) in slices: a handler that raises ends the wait, one that closes the producer
    ends it with Closed, and nothing is left half done."""
    p, c = pair(host_pool_bytes=64 << 10, full_timeout=None)
    p.send({"a": np.ones(40 << 10, np.uint8)})
    held = c.recv(timeout=5)  # the pool stays full while this is held
    assert interrupted(lambda: p.send({"a": np.ones(40 << 10, np.uint8)})) < 2
    assert interrupted(lambda: p.wrap({"a": np.ones(40 << 10, np.uint8)})) < 2
    assert interrupted(lambda: p.buffer(40 << 10)) < 2
    pool = p.stats()["host_pool"]
    assert pool["in_flight"] == 1  # the held one: the interrupted took nothing
    # Three waits, each found the pool full once and none gave up by time.
    assert (pool["full_events"], pool["full_failures"]) == (3, 0)
    usr1(lambda *a: p.close())
    with pytest.raises(cuipc.Closed, match="send: closed while it waited"):
        p.send({"a": np.ones(40 << 10, np.uint8)})
    held.release()


def test_a_send_stopped_on_a_full_ring_reached_no_consumer(pair, usr1):
    """A consumer that reads nothing fills its 4 KiB ring; the blocked send is stopped by a
    handler, and sent again later it arrives once, after the ones before it."""
    p, c = pair(ring_bytes=4096)
    pad = "x" * 900
    sent = fill_ring(p, pad)
    assert 2 <= sent < 50
    usr1(stop)
    with pytest.raises(Stop):
        p.send({"seq": sent, "pad": pad})  # no limit: only the handler ends it
    got = [c.recv(timeout=5).unwrap()["seq"] for _ in range(sent)]
    p.send({"seq": sent, "pad": pad}, timeout=5)
    got.append(c.recv(timeout=5).unwrap()["seq"])
    assert got == list(range(sent + 1))
    with pytest.raises(cuipc.Timeout):
        c.recv(timeout=0.1)  # and nothing more: no copy of a stopped send


def fill_ring(p, pad):
    """Sends until the only reader's 4 KiB ring is full (it reads nothing); how many went."""
    sent = 0
    with pytest.raises(cuipc.Timeout, match=r"no room on its ring .*sent to no consumer"):
        while sent < 50:
            p.send({"seq": sent, "pad": pad}, timeout=0.05)
            sent += 1
    return sent


def send_while_its_consumer_is_replaced(pair, tree_of, timeout=10, delay=0.5):
    """A send (with timeout) waits for room on its only consumer's full ring; delay seconds
    later another consumer attaches and the first leaves (its chunks go back with it). The
    send's outcome ("sent" or the error), the newcomer, and how long after the send began the
    first consumer left."""
    import threading
    p, c = pair(ring_bytes=4096, max_consumers=2)
    pad = "x" * 900
    fill_ring(p, pad)
    box = {}
    tree = tree_of(p, pad)

    def late_send():
        box["t0"] = time.monotonic()
        try:
            p.send(tree, timeout=timeout)
            box["r"] = "sent"
        except cuipc.Error as e:
            box["r"] = e

    sender = threading.Thread(target=late_send)
    accepting = threading.Thread(target=lambda: box.setdefault("n", p.accept(2, timeout=10)))
    sender.start()
    time.sleep(delay)
    accepting.start()
    newcomer = cuipc.Consumer(p.socket_path, timeout=10)
    accepting.join(10)
    c.close()
    left_after = time.monotonic() - box["t0"]
    sender.join(15)
    return p, box["r"], newcomer, left_after


def test_a_waiting_send_whose_consumers_left_goes_to_those_attached_now(pair):
    """The message, kept wrapped for the consumer that left, is wrapped again for the one
    attached now, which gets it once, with its tensor."""
    p, outcome, newcomer, _ = send_while_its_consumer_is_replaced(
        pair, lambda p, pad: {"seq": "late", "x": np.full(64, 5, np.int32), "pad": pad})
    assert outcome == "sent"
    with newcomer.recv(timeout=5) as m:
        t = m.unwrap()
        assert t["seq"] == "late" and np.asarray(t["x"]).tolist() == [5] * 64
    with pytest.raises(cuipc.Timeout):
        newcomer.recv(timeout=0.2)  # once
    newcomer.close()
    p.drain(timeout=5)
    pool = p.stats()["host_pool"]
    assert pool["in_flight"] == 0 and pool["recycled"] == pool["allocs"]


def test_a_send_within_one_slice_is_wrapped_again_with_what_is_left(pair):
    """A timeout of one slice or less (0.2 s) is waited in one call: the consumer attached
    while it waited still gets the message once its only consumer left, within what is left
    of the timeout."""
    p, outcome, newcomer, left_after = send_while_its_consumer_is_replaced(
        pair, lambda p, pad: {"seq": "late", "pad": pad}, timeout=0.2, delay=0.03)
    if left_after > 0.15 and isinstance(outcome, cuipc.Timeout):
        pytest.skip(f"this host took {left_after:.3f} s to attach one consumer and close another")
    assert outcome == "sent", outcome
    with newcomer.recv(timeout=5) as m:
        assert m.unwrap()["seq"] == "late"
    with pytest.raises(cuipc.Timeout):
        newcomer.recv(timeout=0.2)  # once
    newcomer.close()


def test_a_waiting_send_with_a_pool_buffer_is_not_wrapped_twice(pair):
    """With a pool buffer in it the message cannot be wrapped again (its wrap published the
    buffer, which went back with the departed consumer): PeerDead or Stale says why, and the
    newcomer gets nothing."""
    def tree(p, pad):
        buf = p.buffer(256)
        np.asarray(buf)[:] = 3
        return {"seq": "late", "b": buf, "pad": pad}

    p, outcome, newcomer, _ = send_while_its_consumer_is_replaced(pair, tree)
    assert isinstance(outcome, (cuipc.PeerDead, cuipc.Stale)), outcome
    assert "departed" in str(outcome) or "no longer in flight" in str(outcome)
    with pytest.raises(cuipc.Timeout):
        newcomer.recv(timeout=0.2)
    newcomer.close()
    p.drain(timeout=5)
    assert p.stats()["host_pool"]["in_flight"] == 0


def test_a_pool_buffer_survives_the_slices_of_a_wait(pair):
    """A send that waits in slices keeps what it had taken: with a pool buffer in the tree it
    goes through once room comes, whether it waited for pool room (buffers are taken last) or
    for ring room (the wrapped tree is sent again as it is), and counts its bytes once."""
    import threading
    p, c = pair(host_pool_bytes=64 << 10, full_timeout=2.0, ring_bytes=4096)
    p.send({"x": np.ones(30 << 10, np.uint8)})
    held = c.recv(timeout=5)  # 30 KiB of the pool held
    buf = p.buffer(4096)
    np.asarray(buf)[:] = 7
    threading.Timer(0.5, held.release).start()
    p.send({"b": buf, "x": np.ones(30 << 10, np.uint8)})  # waits for pool room past two slices
    with c.recv(timeout=5) as m:
        t = m.unwrap()
        assert int(np.asarray(t["b"])[0]) == 7 and len(np.asarray(t["x"])) == 30 << 10
    p.drain(timeout=5)
    pad = "x" * 900
    sent = 0
    with pytest.raises(cuipc.Timeout):
        while sent < 50:  # the consumer reads nothing: its 4 KiB ring fills
            p.send({"seq": sent, "pad": pad}, timeout=0.05)
            sent += 1
    buf = p.buffer(1024)
    np.asarray(buf)[:] = 9
    before = p.stats()["bytes_sent"]
    drained = []
    drainer = threading.Timer(0.5, lambda: drained.extend(c.recv(timeout=5).unwrap()["seq"] for _ in range(sent)))
    drainer.start()
    p.send({"seq": sent, "b": buf, "pad": pad}, timeout=2.0)  # waits for ring room past two slices
    drainer.join(10)  # the send went once there was room: the drainer may still be taking the rest
    with c.recv(timeout=5) as m:
        t = m.unwrap()
        assert t["seq"] == sent and int(np.asarray(t["b"])[0]) == 9
    assert drained == list(range(sent))
    assert p.stats()["bytes_sent"] - before == 1024  # wrapped once, however many slices


def test_a_wait_that_ends_refused_after_its_first_slice_counts_one_failure(spawn):
    """A message bigger than the pool waits while another is in flight; once that one is
    recycled (after a slice or two), nothing is left to wait for: PoolFull, one full event and
    one failure."""
    results = spawn.ctx.Queue()
    with cuipc.Producer(host_pool_bytes=1 << 20, full_timeout=5.0) as p:
        spawn(workers.hold_first, p.socket_path, 0.35, results)
        p.accept(1, timeout=20)
        p.send({"x": np.zeros(300_000, np.uint8)})
        assert results.get(timeout=20) == "got"
        with pytest.raises(cuipc.PoolFull, match="nothing to wait for"):
            p.send({"a": np.zeros(600_000, np.uint8), "b": np.zeros(600_000, np.uint8)})
        pool = p.stats()["host_pool"]
        assert (pool["full_events"], pool["full_failures"]) == (1, 1)


def test_a_long_wait_says_its_whole_length(pair):
    p, c = pair()
    with pytest.raises(cuipc.Timeout, match=r"nothing after .* \(500 ms in all\)"):
        c.recv(timeout=0.5)


def test_an_attach_runs_signal_handlers_and_none_is_no_limit(interrupted):
    """An attach to a producer that does not accept waits in slices: a signal handler runs
    within one (it used to run only once the attach gave up, 10 s on), and an exception it
    raises ends the attach as itself; timeout=None waits with no limit, as every wait of the
    package, where leaving it out is 10 s."""
    with cuipc.Producer() as p:  # never accepts
        took = interrupted(lambda: cuipc.Consumer(p.socket_path, timeout=None))
        assert took < 2.0, f"the handler ran {took:.1f} s on"
        took = interrupted(lambda: cuipc.Consumer(p.socket_path))
        assert took < 2.0
        t0 = time.monotonic()
        with pytest.raises(cuipc.Timeout, match=r"waiting for the peer's message.*\(500 ms in all\)"):
            cuipc.Consumer(p.socket_path, timeout=0.5)
        with pytest.raises(cuipc.Timeout, match=r"no producer listening.*\(300 ms in all\)"):
            cuipc.Consumer(p.socket_path + ".none", timeout=0.3)
        assert time.monotonic() - t0 < 2.0


def test_ctrl_c_in_dlpack_device_goes_on_as_itself(pair):
    class Interrupted:
        def __dlpack__(self, stream=None, **kw):
            raise AssertionError("not reached")

        def __dlpack_device__(self):
            raise KeyboardInterrupt

    p, _ = pair()
    with pytest.raises(KeyboardInterrupt):
        p.send({"x": Interrupted()})


def test_the_same_message_adopted_twice_is_refused(pair):
    """While the first message holds its chunk and after it released it: two live messages over
    one chunk would read it after the first release let the producer reuse it."""
    p, c = pair()
    wire = p.wrap({"x": np.ones(100, np.float32)})
    first = c.adopt(wire)
    with pytest.raises(cuipc.Duplicate, match="adopted twice"):
        c.adopt(wire)
    first.release()
    with pytest.raises(cuipc.Duplicate, match="already released"):
        c.adopt(wire)
    assert c.stats()["rejected"] == 2


def test_corrupt_and_version(pair):
    p, c = pair()
    with pytest.raises(cuipc.Corrupt, match="bad magic"):
        c.adopt(b"x" * 64)
    wire = bytearray(p.wrap({"x": np.ones(4)}))
    good = bytes(wire)
    wire[4] ^= 0xFF
    with pytest.raises(cuipc.VersionMismatch, match="wire version"):
        c.adopt(bytes(wire))
    wire = bytearray(good)
    wire[-1] ^= 0xFF
    with pytest.raises(cuipc.Corrupt):
        c.adopt(bytes(wire))
    with pytest.raises(cuipc.InvalidArgument, match="adopt takes"):
        c.adopt(12)
    p.cancel(good)


def test_unknown_pool(pair):
    _, c = pair()
    other, _ = pair()
    wire = other.wrap({"x": np.ones(4)})
    with pytest.raises(cuipc.UnknownPool, match="not attached to"):
        c.adopt(wire)
    mine, _ = pair()
    with pytest.raises(cuipc.UnknownPool, match="not this producer's .* nothing cancelled"):
        mine.cancel(wire)  # the bytes of another producer
    assert other.stats()["host_pool"]["in_flight"] == 1
    other.cancel(wire)
    assert other.stats()["host_pool"]["in_flight"] == 0


def test_no_gpu():
    if cuipc.gpu_count() > 0:
        pytest.skip("a GPU is present")
    with pytest.raises(cuipc.NoGpu, match="needs a GPU"):
        cuipc.Producer(mode="cuda_ipc_pool")


def test_system_failure():
    with pytest.raises(cuipc.SystemFailure, match="No such file or directory"):
        cuipc.Producer(socket_path="/nonexistent-dir/cuipc.sock")


def test_peer_dead_without_consumers():
    with cuipc.Producer() as p:
        with pytest.raises(cuipc.PeerDead, match="no consumer is attached"):
            p.send({"x": np.ones(4)})


@pytest.mark.parametrize("waiter", ["wait_then_recv", "poll_until_error"])
def test_peer_dead_when_producer_process_exits(spawn, waiter):
    """A blocked recv, and a loop polling with timeout=0 (too short to wait for a peer check),
    both learn that the producer died."""
    results, go, ready, out = (spawn.ctx.Queue() for _ in range(4))
    producer = spawn(workers.producer_then_die, results, go)
    path = results.get(timeout=30)
    spawn(getattr(workers, waiter), path, ready, out)
    assert ready.get(timeout=30) == "attached"
    go.put("die")
    producer.join(30)
    name, status, msg = out.get(timeout=30)
    assert (name, status) == ("PeerDead", "PEER_DEAD"), msg


def test_closed(spawn):
    ready, out = spawn.ctx.Queue(), spawn.ctx.Queue()
    p = cuipc.Producer()
    spawn(workers.wait_then_recv, p.socket_path, ready, out)
    p.accept(1, timeout=30)
    assert ready.get(timeout=30) == "attached"
    for bad in ("soon", -1):  # refused before anything is closed
        with pytest.raises(cuipc.InvalidArgument, match="timeout"):
            p.close(timeout=bad)
    assert not p.closed
    p.close(timeout=0)  # a host pool has no copy queued on a GPU: nothing to wait for
    name, status, _ = out.get(timeout=30)
    assert (name, status) == ("Closed", "CLOSED")
    with pytest.raises(cuipc.Closed, match="closed"):
        p.send({})
    assert p.closed


def on_thread(call):
    """call() on a thread of its own, started; the thread and a box with its result ("r") or
    its exception ("e")."""
    import threading
    box = {}

    def run():
        try:
            box["r"] = call()
        except BaseException as e:  # noqa: B036 - whatever it raised is the test's to look at
            box["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_close_from_another_thread_wakes_a_blocked_recv(pair):
    """A worker thread blocked in recv() with no limit, on a producer that is alive and sends
    nothing: close() on another thread wakes it with Closed and detaches, so the one place is
    free for a newcomer (before, close refused while the recv waited, and nothing stopped it)."""
    # Woken in the library's wait ("interrupted"), not at the end of its 200 ms slice ("closed
    # while it waited"). A close that a busy host delays onto a slice's end finds the recv
    # between slices, and that is the second: so up to three tries, each with a pair of its own.
    for _ in range(3):
        p, c = pair(max_consumers=1)
        t, box = on_thread(lambda: c.recv(timeout=None))  # noqa: B023 - joined in this pass
        time.sleep(0.3)  # in the recv, past its spin, mid-slice
        assert t.is_alive()
        c.close()
        t.join(10)
        assert not t.is_alive()
        assert isinstance(box.get("e"), cuipc.Closed), box
        if "interrupted" in str(box["e"]):
            break
    assert "interrupted" in str(box["e"]), box
    with pytest.raises(cuipc.Closed):
        c.recv(timeout=0)
    # The producer's monitor frees the place once it sees the hang-up: an accept before that
    # would count the departed consumer and return with nobody to hand the newcomer its place.
    assert wait_for(lambda: p.stats()["consumers_now"] == 0)
    t2, box2 = on_thread(lambda: p.accept(1, timeout=10))
    newcomer = cuipc.Consumer(p.socket_path, timeout=10)
    t2.join(10)
    assert box2.get("r") == 1, box2
    p.send({"seq": 7})
    assert newcomer.recv(timeout=5).unwrap() == {"seq": 7}
    newcomer.close()


def test_close_from_another_thread_keeps_a_message_the_receiver_got(pair):
    """A message received before the close stays usable: the consumer detaches once it is
    released, not under it."""
    p, c = pair()
    p.send({"seq": 1})
    m = c.recv(timeout=5)
    t, box = on_thread(lambda: c.recv(timeout=None))
    time.sleep(0.3)
    c.close()
    t.join(10)
    assert isinstance(box.get("e"), cuipc.Closed), box
    assert m.unwrap() == {"seq": 1}
    m.release()


def test_the_last_message_freed_while_close_waits_does_not_detach_under_a_recv(tmp_path):
    """close() waits for a recv that has its message out of the library but not yet the GIL;
    meanwhile another thread frees the consumer's last other message. That must not detach the
    consumer under the recv: the message the recv returns stays whole (before, its unwrap read
    a freed consumer: Corrupt, or a use-after-free under ASan). The producer, a process of its
    own, sends the second message a second after the first."""
    import subprocess
    import sys
    import threading
    path = str(tmp_path / "p.sock")
    code = ("import sys, time, numpy as np, cuipc\n"
            "p = cuipc.Producer(socket_path=sys.argv[1])\nprint('ready', flush=True)\n"
            "p.accept(1, timeout=10)\np.send({'x': np.arange(4096.0)})\ntime.sleep(1.0)\n"
            "p.send({'x': np.arange(4096.0)})\ntime.sleep(3)\n")
    prod = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True)
    try:
        assert prod.stdout.readline().strip() == "ready"
        c = cuipc.Consumer(path, timeout=10)
        held = [c.recv(timeout=5)]  # the first message: the other thread frees it
        t0 = time.monotonic()  # about the first send; the second comes a second later
        box = {}

        def receive():
            try:
                m = c.recv(timeout=None)  # the second message, or Closed
                box["sum"] = float(np.from_dlpack(m.unwrap()["x"]).sum())
                m.release()
                del m
            except cuipc.Closed:
                box["sum"] = "closed"
            except Exception as e:  # noqa: BLE001 - what it raised is the test's to see
                box["sum"] = e

        def drop():
            time.sleep(0.02)  # then waits for the GIL, before the receiver does
            held.pop()

        time.sleep(0.85)
        receiver = threading.Thread(target=receive)
        receiver.start()  # in the library's recv when the second message comes
        time.sleep(0.03)
        dropper = threading.Thread(target=drop)
        dropper.start()
        interval = sys.getswitchinterval()
        sys.setswitchinterval(10)
        try:
            while time.monotonic() - t0 < 1.4:  # the GIL held over the second message's arrival
                pass
            c.close()  # waits for the receiver (the GIL let go): the dropper runs first
        finally:
            sys.setswitchinterval(interval)
        receiver.join(10)
        dropper.join(10)
        assert box.get("sum") in (float(sum(range(4096))), "closed"), box
    finally:
        prod.wait(10)


@pytest.mark.parametrize("call", ["send", "accept", "drain"])
def test_close_from_another_thread_stops_a_producer_wait(pair, call):
    """A producer's send waiting for ring room, accept waiting for a consumer, drain waiting for
    releases, each with no limit on a thread of its own: close() on another thread ends it with
    Closed within its wait's slice, then tears the producer down (before: refused)."""
    p, c = pair(ring_bytes=4096, max_consumers=2)
    pad = "x" * 900
    if call == "send":
        fill_ring(p, pad)
        waiting = lambda: p.send({"seq": -1, "pad": pad}, timeout=None)  # noqa: E731
    elif call == "accept":
        waiting = lambda: p.accept(2, timeout=None)  # noqa: E731
    else:
        p.send({"x": np.zeros(16)})
        waiting = lambda: p.drain(timeout=None)  # noqa: E731 - c never releases its chunk
    t, box = on_thread(waiting)
    time.sleep(0.3)
    assert t.is_alive()
    p.close()
    t.join(10)
    assert not t.is_alive()
    assert isinstance(box.get("e"), cuipc.Closed), box
    assert p.closed
    with pytest.raises(cuipc.Closed, match="is closed"):
        p.send({})


def test_close_takes_a_limit_or_none():
    """close(timeout=None) waits with no limit: a host producer has nothing queued on a GPU,
    so it returns at once; a second close does nothing."""
    p = cuipc.Producer()
    t0 = time.monotonic()
    p.close(timeout=None)
    assert p.closed and time.monotonic() - t0 < 5
    p.close()
    assert p.closed


def test_stale_buffer_and_borrow(pair):
    p, c = pair()
    buf = p.buffer(64)
    p.send({"b": buf})
    with pytest.raises(cuipc.Stale, match="sent or freed"):
        p.send({"b": buf})


def test_unsupported(pair):
    p, c = pair()
    p.send({"x": np.ones(4)})
    with c.recv(timeout=5) as m:
        t = m.unwrap()["x"]
        for copy in (True, np.True_):  # a truth value, not True itself
            with pytest.raises(BufferError, match="copy=True"):
                t.__dlpack__(copy=copy)
        with pytest.raises(BufferError, match="another device"):
            t.__dlpack__(dl_device=(2, 0))
        for bad in (1, (1,)):
            with pytest.raises(cuipc.InvalidArgument, match="dl_device must be a"):
                t.__dlpack__(dl_device=bad)
        with pytest.raises(cuipc.InvalidArgument, match="max_version must be"):
            t.__dlpack__(max_version=(1,))


@pytest.mark.parametrize("tree, match", [
    ({"a": {1, 2}}, r"tree\[a\]: set cannot be sent"),
    ({1: 2}, "dict keys must be str"),
    ({"a": 1 << 70}, "does not fit in 64 bits"),
    ({"a": "nul\x00inside"}, "NUL"),
    ({"a\x00b": 1, "a": 2}, r"dict key 'a\\x00b' holds a NUL character"),
    ({"\udc80": 1}, "is not valid UTF-8"),
    ({"a": ["ok", "\udc80"]}, r"tree\[a\]\[1\]: string is not valid UTF-8"),
    ({"a": np.ones((4, 4))[:, ::2]}, r"tree\[a\]: the tensor is not contiguous"),
    ({"a": np.ones(4)[::-1]}, "not contiguous"),
    ({"a": np.ones(2, dtype=np.complex64)}, "not supported"),
    ([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], "nested deeper"),
])
def test_bad_trees_are_refused_by_name(pair, tree, match):
    p, c = pair()
    with pytest.raises(cuipc.InvalidArgument, match=match):
        p.send(tree)
    assert p.stats()["host_pool"]["in_flight"] == 0  # nothing stayed allocated


@pytest.mark.parametrize("kw, match", [
    ({"host_pool_bytes": -1}, "host_pool_bytes must be an int from 0 to"),
    ({"max_consumers": 2**32 + 1}, "max_consumers must be an int from 0 to 4294967295, not 4294967297"),
    ({"slots": -3}, "slots must be an int"),
    ({"ring_bytes": "1MiB"}, "ring_bytes must be an int"),
    ({"gpu_pool_bytes": 1.5}, "gpu_pool_bytes must be an int"),
    ({"full_timeout": -2}, "timeout must be from 0 to 9e9 seconds"),
])
def test_producer_arguments_are_checked_not_wrapped(kw, match):
    """Never truncated to another value the library would then take (2**32 + 1 consumers as 1)."""
    with pytest.raises(cuipc.InvalidArgument, match=match):
        cuipc.Producer(**kw)


def test_counts_take_numpy_ints_not_floats_or_bools():
    with cuipc.Producer(max_consumers=np.int32(2), slots=np.uint64(64)) as p:
        assert p.stats()["host_pool"] is not None
    for bad in (2.0, True):
        with pytest.raises(cuipc.InvalidArgument, match="max_consumers must be an int"):
            cuipc.Producer(max_consumers=bad)


def test_accept_refuses_a_count_it_cannot_hold(pair):
    p, _ = pair()
    with pytest.raises(cuipc.InvalidArgument, match="accept: n must be an int from 0 to 4294967295"):
        p.accept(2**32, timeout=0)


def test_small_misuses_say_what_was_wrong(pair):
    """A closed consumer is not attached again in place; a GPU buffer from a producer with no GPU
    pool says so; an exporter's own reason from __dlpack_device__ is kept; a timeout past the
    bound says the bound."""
    p, c = pair()
    c.close()
    with pytest.raises(cuipc.Closed, match="make a new one"):
        c.__init__(p.socket_path, timeout=1)
    with pytest.raises(cuipc.InvalidArgument, match=r"no GPU pool \(mode default\)"):
        p.buffer(16, device=0)

    class NoDevice:
        def __dlpack__(self, stream=None):
            raise AssertionError("not reached")

        def __dlpack_device__(self):
            raise RuntimeError("meta tensors have no data")

    with pytest.raises(cuipc.InvalidArgument, match="__dlpack_device__ failed: meta tensors"):
        p.wrap({"x": NoDevice()})
    with pytest.raises(cuipc.InvalidArgument, match="from 0 to 9e9 seconds"):
        p.drain(timeout=float("inf"))


def test_a_tree_past_the_message_limit_is_refused_at_the_wrap(pair):
    """wrap() never gives bytes that adopt() would refuse as corrupt: a tree whose encoding
    passes the 64 MiB message limit is refused where it is made, and takes no pool room."""
    p, c = pair()
    with pytest.raises(cuipc.InvalidArgument, match="message limit"):
        p.wrap([b"x" * (1 << 20)] * 64)
    with pytest.raises(cuipc.InvalidArgument, match="message limit"):
        p.send([b"x" * (1 << 20)] * 64, timeout=1)
    assert p.stats()["host_pool"]["in_flight"] == 0


def test_a_buffer_twice_in_a_tree_is_refused_and_stays_held(pair):
    """The same pool buffer twice in one tree (or two views of it) is refused by name before
    anything is taken: the buffer stays the application's, to be sent once."""
    p, c = pair()
    b = p.buffer(4096)
    np.asarray(b)[:] = 3
    for tree in ({"x": b, "y": b}, [np.asarray(b)[:100], np.asarray(b)[200:300]]):
        with pytest.raises(cuipc.InvalidArgument, match="lie in one pool buffer"):
            p.send(tree, timeout=1)
        with pytest.raises(cuipc.InvalidArgument, match="lie in one pool buffer"):
            p.wrap(tree)
        assert b.valid and p.stats()["host_pool"]["held"] == 1
    p.send({"x": b}, timeout=1)
    with c.recv(timeout=5) as m:
        assert np.array_equal(np.asarray(m.unwrap()["x"]), np.full(4096, 3, np.uint8))


@pytest.mark.parametrize("nbytes", [-1, 2**63, 2**64, 2**64 + 16, 4096.0, None, "4096"])
def test_a_buffer_size_is_checked_not_wrapped(nbytes):
    """A size that is no int from 0 to 2**63 - 1 is refused by name, never taken modulo 2**64
    (2**64 + 16 was a 16-byte buffer)."""
    with cuipc.Producer(host_pool_bytes=1 << 20) as p:
        with pytest.raises(cuipc.InvalidArgument, match="buffer: nbytes must be an int"):
            p.buffer(nbytes)
        assert p.stats()["host_pool"]["held"] == 0


@pytest.mark.parametrize("call, match", [
    (lambda p, c: p.send({}, stream="s0"), "stream must be"),
    (lambda p, c: p.send({}, stream=type("S", (), {"cuda_stream": "s0"})()), "stream must be"),
    (lambda p, c: p.send({}, timeout=-1), "timeout must be"),
    (lambda p, c: p.send({}, timeout="1s"), "timeout must be"),
    (lambda p, c: p.buffer(16, device="tpu"), "device must be"),
    (lambda p, c: p.buffer(16, device=3), "no GPU pool"),
    (lambda p, c: p.free_buffer(np.ones(2)), "free_buffer takes"),
    (lambda p, c: c.prepare(kind="steal"), "kind must be"),
])
def test_bad_arguments_are_refused_by_name(pair, call, match):
    p, c = pair()
    with pytest.raises(cuipc.InvalidArgument, match=match):
        call(p, c)


@pytest.mark.parametrize("call, error, match", [
    (lambda p, c, m: p.send(), TypeError, r"send\(\) missing required argument 'tree'"),
    (lambda p, c, m: p.send({}, None, None, None), TypeError, "at most 3 arguments"),
    (lambda p, c, m: p.send({}, streem=None), TypeError, "unexpected keyword argument 'streem'"),
    (lambda p, c, m: p.send({}, None, stream=None), TypeError, "given by name .'stream'. and position"),
    (lambda p, c, m: p.wrap(stream=None), TypeError, r"wrap\(\) missing required argument 'tree'"),
    (lambda p, c, m: c.recv(1, 2), TypeError, "at most 1 arguments"),
    (lambda p, c, m: c.recv(timeout="soon"), cuipc.InvalidArgument, "timeout must be"),
    (lambda p, c, m: m.unwrap(kind=1), TypeError, "argument 'kind' must be str, not int"),
    (lambda p, c, m: m.unwrap(kind="copy\x00"), ValueError, "NUL"),
    (lambda p, c, m: m.unwrap(kind="steal"), cuipc.InvalidArgument, "kind must be"),
    (lambda p, c, m: m.unwrap(host_wait_us="x"), TypeError, "must be real number"),
    (lambda p, c, m: m.unwrap(device="tpu"), cuipc.InvalidArgument, "device must be"),
    (lambda p, c, m: m.release(strm=None), TypeError, "unexpected keyword argument 'strm'"),
])
def test_per_message_calls_parse_their_arguments(pair, call, error, match):
    """send, wrap, recv, unwrap and release take their arguments without CPython's tuple-and-dict
    parser: the same errors for the same mistakes."""
    p, c = pair()
    p.send({"x": np.arange(3)})
    with c.recv(timeout=5) as m:
        with pytest.raises(error, match=match):
            call(p, c, m)
    # Positional, keyword and mixed forms still reach the call.
    p.send({"x": np.arange(3)}, None, None)
    p.send(tree={"x": np.arange(4)}, timeout=5)
    with c.recv(5) as m:
        assert m.unwrap("copy", None, None, -1)["x"].shape == (3,)
    with c.recv(timeout=5) as m:
        assert m.unwrap(kind="borrow", host_wait_us=0)["x"].shape == (4,)
        m.release(None)
        assert m.released


def test_stream_objects_other_than_torchs_are_read_every_call(pair):
    """Only torch's own stream objects have their handle remembered (fixed when made); any
    other object with .cuda_stream is asked again at each call."""
    p, c = pair()
    reads = []

    class Changing:
        @property
        def cuda_stream(self):
            reads.append(1)
            return 0 if len(reads) < 3 else "gone"

    s = Changing()
    p.send({"i": 1}, stream=s)
    p.send({"i": 2}, stream=s)
    with pytest.raises(cuipc.InvalidArgument, match="stream must be"):
        p.send({"i": 3}, stream=s)
    assert len(reads) == 3
    for i in (1, 2):
        with c.recv(timeout=5) as m:
            assert m.unwrap(stream=0)["i"] == i


def test_a_stale_buffer_handle_frees_nothing_of_a_newer_buffer(pair):
    """A buffer freed (or sent) whose address a newer buffer got: freeing the old handle again
    is refused, and the newer one is left alone."""
    p, _ = pair()
    old = p.buffer(8)
    p.free_buffer(old)
    new = p.buffer(8)
    assert new.data_ptr == old.data_ptr
    with pytest.raises(cuipc.Stale, match="used after it was sent or freed"):
        p.free_buffer(old)
    assert new.valid and p.stats()["host_pool"]["held"] == 1
    p.free_buffer(new)


def test_a_producer_closed_while_its_tree_is_read_sends_nothing(pair):
    """__dlpack_device__ (or a signal handler) closing the producer mid-conversion: Closed, not
    a call on a destroyed producer."""
    from dlpack_ctypes import ExportsAfter
    for name in ("send", "wrap"):  # a producer of its own each
        p, _ = pair()
        with pytest.raises(cuipc.Closed, match="closed while the tree was read"):
            getattr(p, name)({"x": ExportsAfter(p.close)})


def test_a_forked_child_cannot_act_for_its_parent(pair):
    """The child's copies of a producer, consumer and message are refused, and its exit leaves
    the parent's socket, rings and chunks as they were."""
    import os
    p, c = pair()
    p.send({"x": np.arange(3)})
    m = c.recv(timeout=5)
    borrowed = m.unwrap(kind="borrow")["x"]
    buf = p.buffer(8)
    pid = os.fork()
    if pid == 0:  # the child: every use refused; its close and deallocs touch nothing shared
        refused = 0
        for call in (lambda: p.send({"x": 1}), lambda: c.recv(timeout=0.1), lambda: m.unwrap(),
                     lambda: m.release(), lambda: memoryview(buf), lambda: np.asarray(borrowed)):
            try:
                call()
            except cuipc.InvalidArgument as e:
                refused += "forked from" in str(e)
            except BaseException:  # noqa: BLE001: the child reports by its exit code alone
                pass
        try:
            p.close()
            c.close()
            del m
        finally:
            os._exit(0 if refused == 6 else 1)  # not through pytest's own exit in a fork
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert np.asarray(m.unwrap()["x"]).tolist() == [0, 1, 2]
    assert np.asarray(borrowed).tolist() == [0, 1, 2] and buf.valid
    p.free_buffer(buf)
    m.release()
    p.send({"x": np.arange(2)})
    with c.recv(timeout=5) as again:
        assert np.asarray(again.unwrap()["x"]).tolist() == [0, 1]


def test_stats_carry_every_counter_of_the_library(pair):
    p, c = pair()
    st = p.stats()
    for key in ("messages_sent", "bytes_sent", "fallbacks", "ipc_exports", "ipc_retained_bytes",
                "consumers_attached", "consumers_now", "consumers_detached", "consumers_dead",
                "peers_refused", "peers_timed_out", "gpu_pool", "host_pool"):
        assert key in st, key
    assert st["consumers_now"] == 1 and "recycle_lag_ns_total" in st["host_pool"]


def test_microseconds_and_devices_that_would_not_convert_are_refused(pair):
    p, c = pair()
    with pytest.raises(cuipc.InvalidArgument, match="spin_us must be a finite number"):
        cuipc.Consumer(p.socket_path, timeout=1, spin_us=float("inf"))
    p.send({"a": np.ones(2)})
    with c.recv(timeout=5) as m:
        with pytest.raises(cuipc.InvalidArgument,
                           match="unwrap: host_wait_us must be a finite number of microseconds"):
            m.unwrap(host_wait_us=1e20)
        with pytest.raises(cuipc.InvalidArgument, match="device must be"):
            m.unwrap(device=True)
    with pytest.raises(cuipc.InvalidArgument, match="host_wait_us must be a finite number"):
        c.prepare(host_wait_us=float("inf"))


def test_a_consumer_with_forked_children_is_seen_dying_with_its_process(spawn):
    """A forked child closes its copy of the consumer's socket: the producer sees the consumer's
    process killed at once, not when the child (asleep for 30 s) exits."""
    import os
    import signal
    import time
    ready = spawn.ctx.Queue()
    p = cuipc.Producer(max_consumers=1)
    child = None
    try:
        worker = spawn(workers.attach_fork_then_wait, p.socket_path, ready)
        p.accept(1, timeout=20)
        _, child = ready.get(timeout=20)
        os.kill(worker.pid, signal.SIGKILL)  # not joined here: the child holds its sentinel pipe
        end = time.monotonic() + 5
        while p.stats()["consumers_dead"] == 0 and time.monotonic() < end:
            time.sleep(0.05)
        assert p.stats()["consumers_dead"] == 1 and p.stats()["consumers_now"] == 0
    finally:
        p.close()
        if child:
            os.kill(child, signal.SIGKILL)
