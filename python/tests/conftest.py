import multiprocessing
import queue
import threading
import time

import pytest

import cuipc
import fake_torch_table
import workers


def _install_fake_torch_table():
    """Where torch has no DLPack C exchange table (before 2.10), this session's torch gets the
    ctypes stand-in (fake_torch_table.py), so that the tests of the extension's table path run
    here too; before any test, since the extension looks for the table once. Not in worker
    processes: tests that need the table there skip with the stand-in."""
    try:
        import torch
    except ImportError:
        return
    fake_torch_table.install(torch)


_install_fake_torch_table()


def pytest_collection_modifyitems(config, items):
    if cuipc.gpu_count() > 0:
        return
    skip = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def attach_pair(**producer_kw):
    """A producer and one consumer in this process (the producer accepts on a thread)."""
    p = cuipc.Producer(**producer_kw)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("n", p.accept(1, timeout=10)))
    t.start()
    c = cuipc.Consumer(p.socket_path, timeout=10)
    t.join()
    assert box["n"] == 1
    return p, c


@pytest.fixture
def pair():
    made = []

    def make(**kw):
        p, c = attach_pair(**kw)
        made.append((p, c))
        return p, c

    yield make
    for p, c in made:
        c.close()
        p.close()


@pytest.fixture(params=["exchange", "reads"])
def torch_path(request):
    """Each way the extension reads and makes torch tensors: through torch's DLPack C exchange
    table (torch 2.10 on; skipped where this torch has none), and through calls into torch's Python
    bindings. Set in this process for the test; its value (True: the table) is for the worker jobs
    that take an `exchange` argument to set in theirs."""
    pytest.importorskip("torch")
    use = cuipc._cuipc._torch_exchange
    want = request.param == "exchange"
    if want and fake_torch_table.installed() and "workers_pool" in request.fixturenames:
        pytest.skip("the stand-in for torch's exchange table is in this process only, not in workers")
    if use(want) != want:
        use(None)
        pytest.skip("torch's DLPack C exchange table not in use (this torch has none, or "
                    "CUIPC_PY_TORCH_EXCHANGE=0)")
    yield want
    use(None)


@pytest.fixture
def spawn():
    """multiprocessing with the spawn start method (CUDA-safe), joined and checked at the end."""
    ctx = multiprocessing.get_context("spawn")
    procs = []

    def start(target, *args):
        proc = ctx.Process(target=target, args=args)
        proc.start()
        procs.append(proc)
        return proc

    start.ctx = ctx
    yield start
    for proc in procs:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
            proc.join()
            pytest.fail(f"child {proc.pid} did not finish")


class WorkerPool:
    """Spawned worker processes kept for the whole session, each running the jobs it is given one
    at a time (bodies in workers.py): a GPU consumer imports torch and makes its CUDA context once
    (seconds each), not once per test. Jobs, what the test puts in a worker's inbox and what the
    jobs report carry the test's epoch, so a test never reads what an earlier (failed) test's job
    left behind."""

    def __init__(self):
        self.ctx = multiprocessing.get_context("spawn")
        self.results, self.done = self.ctx.Queue(), self.ctx.Queue()
        self.workers = []  # (process, jobs queue, inbox queue)
        self.epoch, self.started = 0, []

    def begin(self):
        self.epoch += 1
        self.started = []

    def run(self, k, job, *args, **kw):
        """Run workers.<job>(*args, results=..., inbox=..., **kw) on worker k (started if needed)."""
        while len(self.workers) <= k:
            self.workers.append(None)
        if self.workers[k] is None or not self.workers[k][0].is_alive():
            jobs, inbox = self.ctx.Queue(), self.ctx.Queue()
            proc = self.ctx.Process(target=workers.serve, args=(jobs, inbox, self.results, self.done, k),
                                    daemon=True)
            proc.start()
            self.workers[k] = (proc, jobs, inbox)
        self.workers[k][1].put((self.epoch, job, args, kw))
        self.started.append(k)

    def put(self, k, item):
        """Into worker k's inbox (what its job reads as its inbox)."""
        self.workers[k][2].put((self.epoch, item))

    def get(self, timeout):
        """The next report of this test's jobs."""
        deadline = time.monotonic() + timeout
        while True:
            epoch, item = self.results.get(timeout=max(0.0, deadline - time.monotonic()))
            if epoch == self.epoch:
                return item

    def finish(self, timeout=60):
        """Wait until each job of this test has ended; a worker whose job did not end in time is
        killed (a fresh one takes its place). Returns the workers that did not finish."""
        left, deadline = list(self.started), time.monotonic() + timeout
        while left:
            try:
                epoch, k = self.done.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if epoch == self.epoch and k in left:
                left.remove(k)
        for k in left:
            proc = self.workers[k][0]
            proc.kill()
            proc.join()
            self.workers[k] = None
        self.started = []
        return left

    def close(self):
        for w in self.workers:
            if w is not None and w[0].is_alive():
                w[1].put(None)
        for w in self.workers:
            if w is not None:
                w[0].join(30)
                if w[0].is_alive():
                    w[0].kill()


@pytest.fixture(scope="session")
def _worker_pool():
    pool = WorkerPool()
    yield pool
    pool.close()


@pytest.fixture
def workers_pool(_worker_pool):
    """The session's worker processes for this test; at its end every job it started must have
    ended (else the test fails, as the spawn fixture's children must exit)."""
    _worker_pool.begin()
    yield _worker_pool
    left = _worker_pool.finish()
    if left:
        pytest.fail(f"worker job(s) on {left} did not finish")


@pytest.fixture
def usr1():
    """Sends SIGUSR1 to this process after a delay, with the test's handler installed."""
    import os
    import signal
    import threading
    old = signal.getsignal(signal.SIGUSR1)

    def arm(handler, delay=0.3):
        signal.signal(signal.SIGUSR1, handler)
        threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()

    yield arm
    signal.signal(signal.SIGUSR1, old)


def wait_for(cond, timeout=5.0):
    """True once cond() is, polled for up to timeout seconds: for what another thread or the
    producer's monitor does in its own time (a consumer's hang-up seen, a deleter run)."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()


class Stop(Exception):
    pass


def stop(*a):
    raise Stop()


@pytest.fixture
def interrupted(usr1):
    """Runs a call with a SIGUSR1 handler that raises Stop armed: the seconds until it did."""
    import time

    def run(call):
        usr1(stop)
        t0 = time.monotonic()
        with pytest.raises(Stop):
            call()
        return time.monotonic() - t0

    return run
