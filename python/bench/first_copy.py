#!/usr/bin/env python3
"""What a fresh consumer's first message costs: its first copy unwrap to the GPU (torch CUDA
tensors through cuda_ipc_pool), with and without prepare() before it, each in a new process,
alternating. Per process: that unwrap's time and the minor page faults its thread took. The
one-time set-up prepare() takes out of the first message is the pool mapping and the copy-out
pool's first allocation, the driver's first stream-ordered allocation in the process (on the
H200 of run 30: 3,591 faults and 12.6-15.2 ms without prepare, 1 fault and 75-108 us with).
test_gpu.py checks the faults with this consumer. A CUDA host with torch is needed (exit 77
without one).

    python3 python/bench/first_copy.py --processes 4 [--json first_copy.json]
"""
import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time

import cuipc
from bench_transport import thread_faults

SCHEMA_VERSION = 2  # 2: kind cuipc-first-copy (1: first-copy)


def consumer(path, prepare, results):
    """In the fresh process: attach, maybe prepare, time the first copy unwrap."""
    try:
        import torch
        torch.cuda.init()
        stream = torch.cuda.Stream()
        with cuipc.Consumer(path, timeout=30) as c:
            if prepare:
                c.prepare(kind="copy", device=0, stream=stream)
            results.put(("attached", None))
            with c.recv(timeout=30) as m:
                f0, t0 = thread_faults(), time.perf_counter_ns()
                tree = m.unwrap(kind="copy", device=0, stream=stream)
                t1, f1 = time.perf_counter_ns(), thread_faults()
                with torch.cuda.stream(stream):
                    ok = bool((tree["x"].to_torch() == 1).all().item())
                del tree
                m.release(stream=stream)
            results.put(("ok", {"us": (t1 - t0) / 1e3, "faults": f1 - f0, "data_ok": ok}))
    except Exception as e:
        results.put(("error", f"{type(e).__name__}: {e}"))


def one(ctx, torch, prepare):
    with cuipc.Producer(mode="cuda_ipc_pool", gpu_pool_bytes=16 << 20) as p:
        results = ctx.Queue()
        proc = ctx.Process(target=consumer, args=(p.socket_path, prepare, results))
        proc.start()
        try:
            p.accept(1, timeout=60)
            status, payload = results.get(timeout=120)
            if status != "attached":
                raise RuntimeError(f"consumer: {payload}")
            p.send({"x": torch.ones(1024, device="cuda")}, stream=torch.cuda.current_stream())
            status, payload = results.get(timeout=60)
            if status != "ok":
                raise RuntimeError(f"consumer: {payload}")
            return payload
        finally:
            proc.join(30)
            if proc.is_alive():
                proc.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=4, help="fresh consumers each way (default 4)")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    if args.processes < 1:
        print("first_copy: --processes must be at least 1", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or cuipc.gpu_count() == 0 or not torch.cuda.is_available():
        print("first_copy: needs a CUDA GPU and torch", file=sys.stderr)
        return 77
    ctx = mp.get_context("spawn")
    runs = {"without_prepare": [], "with_prepare": []}
    for _ in range(args.processes):
        for prepare in (False, True):
            runs["with_prepare" if prepare else "without_prepare"].append(one(ctx, torch, prepare))
    bad = [r for rs in runs.values() for r in rs if not r["data_ok"]]
    out = {"schema_version": SCHEMA_VERSION, "kind": "cuipc-first-copy", "processes": args.processes,
           "runs": runs,
           "median": {k: {"us": statistics.median(r["us"] for r in rs),
                          "faults": statistics.median(r["faults"] for r in rs)} for k, rs in runs.items()}}
    for k, rs in runs.items():
        each = ", ".join("%.0f us / %d faults" % (r["us"], r["faults"]) for r in rs)
        print(f"{k:<16} first copy unwrap: {each}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if bad:
        print(f"first_copy: {len(bad)} consumer(s) read wrong data", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
