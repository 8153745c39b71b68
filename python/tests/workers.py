"""Bodies of the consumer processes the tests spawn (importable by the spawn start method)."""
import inspect

import numpy as np

import cuipc


def summarise(tree):
    """What a consumer saw: the tree with each tensor replaced by (dtype, shape, sum)."""
    if isinstance(tree, dict):
        return {k: summarise(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [summarise(v) for v in tree]
    if isinstance(tree, cuipc.Tensor):
        a = np.asarray(tree)
        return ("tensor", tree.dtype, tuple(a.shape), float(a.astype(np.float64).sum()))
    return tree


def recv_loop(path, kind, count, results):
    """Attach, receive count messages, unwrap each with kind, report what arrived."""
    try:
        with cuipc.Consumer(path, timeout=20) as c:
            for _ in range(count):
                with c.recv(timeout=20) as m:
                    results.put(("ok", c.index, summarise(m.unwrap(kind=kind))))
            results.put(("stats", c.index, c.stats()))
    except Exception as e:  # reported to the test, which fails with it
        results.put(("error", type(e).__name__, str(e)))


def adopt_loop(path, kind, inbox, results):
    """Attach, then adopt the wrapped bytes the test puts on inbox (None ends)."""
    try:
        with cuipc.Consumer(path, timeout=20) as c:
            results.put(("attached", c.index, None))
            while True:
                wire = inbox.get(timeout=20)
                if wire is None:
                    break
                with c.adopt(wire) as m:
                    results.put(("ok", c.index, summarise(m.unwrap(kind=kind))))
    except Exception as e:
        results.put(("error", type(e).__name__, str(e)))


def wait_then_recv(path, ready, results):
    """Attach, say so, then block in recv until the producer closes or dies."""
    try:
        c = cuipc.Consumer(path, timeout=20)
        ready.put("attached")
        c.recv(timeout=20)
        results.put(("no error", "", ""))
    except cuipc.Error as e:
        results.put((type(e).__name__, e.status, str(e)))


def poll_until_error(path, ready, results):
    """Attach, say so, then poll with recv(timeout=0) until an error other than Timeout."""
    import time
    try:
        c = cuipc.Consumer(path, timeout=20)
        ready.put("attached")
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                c.recv(timeout=0)
            except cuipc.Timeout:
                time.sleep(0.001)
        results.put(("no error", "", ""))
    except cuipc.Error as e:
        results.put((type(e).__name__, e.status, str(e)))


def attach_fork_then_wait(path, ready):
    """Attach, fork a child that sleeps 30 s, say so (with the child's pid), then wait to be
    killed."""
    import os
    import time
    c = cuipc.Consumer(path, timeout=20)
    child = os.fork()
    if child == 0:
        time.sleep(30)
        os._exit(0)
    ready.put((c.index, child))
    time.sleep(60)


def producer_then_die(results, go):
    """A producer that lets one consumer attach, then exits without closing."""
    import os
    p = cuipc.Producer()
    results.put(p.socket_path)
    p.accept(1, timeout=20)
    go.get(timeout=20)
    os._exit(0)


def compat_worker(inbox, results, device_index=None, with_device=False):
    """The reference's receiving side: get from the queue, unwrap, touch, report (with_device:
    each torch tensor's device too)."""
    from cuipc.compat import unwrap_mm_inputs_from_ipc
    try:
        while True:
            item = inbox.get(timeout=30)
            if item is None:
                break
            out = unwrap_mm_inputs_from_ipc(item, device_index)
            results.put(("ok", summarise_any(out, with_device)))
    except Exception as e:
        results.put(("error", type(e).__name__, str(e)))


def summarise_any(tree, with_device=False):
    if isinstance(tree, dict):
        return {k: summarise_any(v, with_device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(summarise_any(v, with_device) for v in tree)
    if hasattr(tree, "__dlpack__"):
        if type(tree).__module__.startswith("torch"):
            t = tree.cpu()
            total = t.abs().double().sum() if t.is_complex() else t.double().sum()
            summary = ("tensor", str(t.dtype), tuple(t.shape), float(total))
            return summary + (str(tree.device),) if with_device else summary
        a = np.asarray(tree)
        return ("tensor", str(a.dtype), tuple(a.shape), float(a.astype(np.float64).sum()))
    return tree


def torch_path(exchange):
    """The job's way to torch tensors (conftest.torch_path; None: as the process has it); the
    pooled worker goes back to the process's way when the job ends (restore_torch_path)."""
    use = cuipc._cuipc._torch_exchange
    if exchange is not None and use(exchange) != exchange:
        raise RuntimeError("torch's DLPack C exchange table is not in use in this worker")


def restore_torch_path():
    cuipc._cuipc._torch_exchange(None)


def gpu_recv(path, kind, count, results, use_stream, exchange=None):
    """GPU consumer: torch tensors out of each message, checked on the GPU, summarised."""
    import torch
    try:
        torch_path(exchange)
        torch.cuda.init()
        stream = torch.cuda.Stream() if use_stream else None
        with cuipc.Consumer(path, timeout=30) as c:
            c.prepare(kind=kind, stream=stream)
            results.put(("attached", c.index, None))
            for _ in range(count):
                with c.recv(timeout=30) as m:
                    tree = m.unwrap(kind=kind, stream=stream)
                    with torch.cuda.stream(stream) if stream else torch.cuda.stream(torch.cuda.current_stream()):
                        out = {}
                        for k, v in tree.items():
                            if isinstance(v, cuipc.Tensor):
                                t = v.to_torch()
                                out[k] = ("tensor", str(t.dtype), tuple(t.shape), str(t.device),
                                          float(t.double().sum().item()))
                            else:
                                out[k] = v
                    m.release(stream=stream)
                    results.put(("ok", c.index, out))
    except Exception as e:
        import traceback
        results.put(("error", type(e).__name__, traceback.format_exc()))
    finally:
        restore_torch_path()


def gpu_recv_torch(path, kind, count, results, stream_mode, device=None, exchange=None):
    """GPU consumer unwrapping straight to torch tensors (unwrap(torch=True)), read on torch's
    current stream; each report also says whether the message was stream-ordered. device: the
    copy-out target of the "own" and "busy" unwraps (None: where the data is). stream_mode:
      "none"    no stream, no device: the unwrap on its default stream, torch's current stream
                made to follow it
      "own"     on a stream of the consumer's, which torch's current one must then wait for
      "busy"    that, with the stream still running ~0.1 s of GPU work when the unwrap queues
                its copy: a read not ordered after it sees no data
      "device"  device=0 and no stream, inside torch.cuda.stream(s) with s busy the same way:
                the unwrap runs on s itself, and the read on s comes after it"""
    import torch
    try:
        torch_path(exchange)
        torch.cuda.init()
        stream = torch.cuda.Stream() if stream_mode != "none" else None
        with cuipc.Consumer(path, timeout=30) as c:
            c.prepare(kind=kind, stream=stream)
            results.put(("attached", c.index, None))
            for _ in range(count):
                with c.recv(timeout=30) as m:
                    if stream_mode in ("busy", "device"):
                        with torch.cuda.stream(stream):
                            torch.cuda._sleep(200_000_000)
                    if stream_mode == "device":
                        with torch.cuda.stream(stream):
                            tree = m.unwrap(kind=kind, device=0, torch=True)
                            out = summarise_torch(torch, tree)
                    else:
                        tree = m.unwrap(kind=kind, stream=stream, device=device, torch=True)
                        out = summarise_torch(torch, tree)
                    out["stream_ordered"] = m.stream_ordered
                    del tree
                    m.release(stream=torch.cuda.current_stream())
                    results.put(("ok", c.index, out))
    except Exception as e:
        import traceback
        results.put(("error", type(e).__name__, traceback.format_exc()))
    finally:
        restore_torch_path()


def summarise_torch(torch, tree):
    """(kind, dtype, shape, device, sum) of each torch tensor of a flat tree, read on torch's
    current stream; other values as they are."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, torch.Tensor):
            out[k] = ("tensor", str(v.dtype), tuple(v.shape), str(v.device), float(v.double().sum().item()))
        else:
            out[k] = v
    return out


class _Tagged:
    """A queue seen through a test's epoch: put tags, get skips what other epochs left."""

    def __init__(self, q, epoch):
        self.q, self.epoch = q, epoch

    def put(self, item):
        self.q.put((self.epoch, item))

    def get(self, timeout=None):
        import time
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            epoch, item = self.q.get(timeout=left)
            if epoch == self.epoch:
                return item


def serve(jobs, inbox, results, done, k):
    """A pooled worker (conftest.WorkerPool): run each job, then say it ended; None stops."""
    while True:
        job = jobs.get()
        if job is None:
            return
        epoch, name, args, kw = job
        fn = globals()[name]
        if "inbox" in inspect.signature(fn).parameters:
            kw = dict(kw, inbox=_Tagged(inbox, epoch))
        try:
            fn(*args, results=_Tagged(results, epoch), **kw)
        except BaseException as e:  # a job's own failure is reported; the worker lives on
            results.put((epoch, ("error", type(e).__name__, str(e))))
        finally:
            done.put((epoch, k))


def hold_first(path, hold_s, results):
    """Attach, hold the first message hold_s seconds (saying when it came), then release it and
    take the rest until none comes for 3 s."""
    import time
    try:
        c = cuipc.Consumer(path, timeout=20)
        with c.recv(timeout=20):
            results.put("got")
            time.sleep(hold_s)
        while True:
            c.recv(timeout=3).release()
    except cuipc.Error:
        pass
