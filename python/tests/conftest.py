import multiprocessing
import threading

import pytest

import cuipc


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
