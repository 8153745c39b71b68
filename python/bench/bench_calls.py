#!/usr/bin/env python3
"""Per-call cost of the Python layer: one producer and one consumer in this process, one small
tensor a message, each call of the message's round timed apart (send, recv, unwrap, the tensor
made for the application, release), p50 and p90 over many rounds. The send is also timed by
phase inside the extension (Producer._send_profiled): `wrap` and `deliver` are the core's own
calls (what the C harness's producer calls), `args` and `convert` the Python layer's work before
them, and the rest of the wall time the call's way in and out of Python. With --torch, the
reads the extension's torch fast path makes of a tensor are timed one by one too.

Host tensors (numpy, or torch CPU tensors with --torch) in the default mode run anywhere;
--device cuda sends torch CUDA tensors through cuda_ipc_pool (no copy of the benchmark's own
on the way: the figures are the layer's CPU time plus the core's queueing of GPU work).

    python3 python/bench/bench_calls.py                      # numpy, default mode
    python3 python/bench/bench_calls.py --torch --device cuda --kind borrow
"""
import argparse
import json
import sys
import threading
import time

import cuipc


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(q / 100 * len(xs) + 0.5) - 1))] if xs else None


# What the extension's torch fast path reads of a tensor (torch_tensor.c), one call each.
TORCH_READS = ["torch._C._is_torch_function_mode_enabled()", "x.layout", "x.requires_grad", "x.is_conj()",
               "x.is_neg()", "x.dtype", "x.shape", "x.stride()", "x.data_ptr()", "x.is_cuda", "x.is_cpu",
               "x.get_device()", "torch._C._cuda_getCurrentRawStream(0)"]


def torch_reads_ns(torch, x, n=20000):
    """ns per call of each read, in a loop (warm): what the send's convert phase is made of."""
    out = {}
    for expr in TORCH_READS:
        if "Raw" in expr and not x.is_cuda:
            continue
        code = compile(f"for _ in r: {expr}", expr, "exec")
        env = {"torch": torch, "x": x, "r": range(n)}
        t0 = time.perf_counter_ns()
        exec(code, env)
        out[expr] = (time.perf_counter_ns() - t0) / n
    return out


def pair(mode, device):
    p = cuipc.Producer(mode=mode, max_consumers=1, device=0,
                       gpu_pool_bytes=(64 << 20) if mode == "cuda_ipc_pool" else 0)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("n", p.accept(1, timeout=10)))
    t.start()
    c = cuipc.Consumer(p.socket_path, timeout=10, spin_us=1000)
    t.join()
    return p, c


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20000)
    ap.add_argument("--bytes", type=int, default=4096)
    ap.add_argument("--kind", choices=["copy", "borrow"], default="borrow")
    ap.add_argument("--torch", action="store_true", help="torch tensors (CPU, or CUDA with --device cuda)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    if args.device == "cuda" and (not args.torch or cuipc.gpu_count() == 0):
        print("bench_calls: --device cuda needs --torch and a GPU", file=sys.stderr)
        return 77
    stream = None
    if args.torch:
        import torch
        x = torch.zeros(args.bytes // 2, dtype=torch.bfloat16, device=args.device)
        if args.device == "cuda":
            stream = torch.cuda.Stream()
            torch.cuda.set_stream(stream)  # the send's stream is torch's current one
        make = lambda t: t.to_torch()  # noqa: E731
    else:
        import numpy as np
        x = np.zeros(args.bytes, dtype=np.uint8)
        make = np.from_dlpack
    mode = "cuda_ipc_pool" if args.device == "cuda" else "default"
    p, c = pair(mode, args.device)
    c.prepare(kind=args.kind, stream=stream)
    calls = {k: [] for k in ("send", "recv", "unwrap", "tensor", "release", "round")}
    phases = {k: [] for k in ("args", "convert", "wrap", "deliver", "outside")}
    now = time.perf_counter_ns
    for i in range(args.rounds):
        profiled = i % 2 == 1  # every other send timed by phase, the rest as users call it
        t0 = now()
        if profiled:
            ph = p._send_profiled({"x": x, "i": i}, stream=stream)
        else:
            p.send({"x": x, "i": i}, stream=stream)
        t1 = now()
        m = c.recv(timeout=5)
        t2 = now()
        tree = m.unwrap(kind=args.kind, stream=stream)
        t3 = now()
        y = make(tree["x"])
        t4 = now()
        m.release(stream=stream)
        t5 = now()
        del y, tree, m
        t6 = now()
        if i < args.rounds // 10:
            continue  # warm-up
        if profiled:
            for k, v in ph.items():
                phases[k].append(v)
            phases["outside"].append(t1 - t0 - sum(ph.values()))
        else:
            calls["send"].append(t1 - t0)
        for k, a, b in (("recv", t1, t2), ("unwrap", t2, t3), ("tensor", t3, t4), ("release", t4, t5),
                        ("round", t0, t6)):
            calls[k].append(b - a)
    p.drain(timeout=10)
    c.close()
    p.close()
    out = {"rounds": args.rounds, "bytes": args.bytes, "kind": args.kind, "tensors": "torch" if args.torch else "numpy",
           "device": args.device, "mode": mode,
           "calls_us": {k: {"p50": percentile(v, 50) / 1e3, "p90": percentile(v, 90) / 1e3} for k, v in calls.items()},
           "send_phases_us": {k: {"p50": percentile(v, 50) / 1e3, "p90": percentile(v, 90) / 1e3}
                              for k, v in phases.items()}}
    print(f"{out['tensors']} {args.device} {mode} {args.kind} {args.bytes} B, {args.rounds} rounds: p50 (p90) us")
    for k, v in out["calls_us"].items():
        print(f"  {k:<8} {v['p50']:8.2f} ({v['p90']:.2f})")
    print("  send by phase (the core's calls: wrap, deliver):")
    for k, v in out["send_phases_us"].items():
        print(f"    {k:<8} {v['p50']:8.2f} ({v['p90']:.2f})")
    if args.torch:
        reads = torch_reads_ns(torch, x)
        out["torch_reads_ns"] = reads
        print(f"  the fast path's torch reads, ns a call (warm; sum {sum(reads.values()):.0f}):")
        for k, v in reads.items():
            print(f"    {k:<45} {v:7.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
