#!/usr/bin/env python3
"""Per-call cost of the Python layer: one producer (this process) and one spawned consumer, one
small tensor a message, each call timed apart, p50 and p90 over many messages. The producer
sends back to back (the pool and ring hold what the consumer has not taken yet), so the
consumer's recv finds its message there and each figure is the call's own cost:
  producer: send, and every other send timed by phase inside the extension
            (Producer._send_profiled): args, convert (the tree and its tensors taken in), wrap
            and deliver (the core's own calls, what the C harness's producer calls: pool chunk,
            copy-in, ready word; encode, ring send), outside (the call's way in and out of Python,
            the GIL given up and taken back); the profiled call whole is send_profiled, whose
            difference to send is what the phases' clock reads and dict cost
  consumer: recv, unwrap (with --torch straight to torch tensors: unwrap(torch=True)),
            tensor (the application's tensor made: numpy.from_dlpack; with --torch only the
            tree's lookup), sync, release, del (the tree and tensors dropped: their deleters)
With --torch, the reads the extension's torch fast path makes of a tensor are timed one by one.
--gap-us G spins G microseconds between sends (a message rate, as an open loop has): what a
call costs when the path has gone cold between messages, against back to back (0). --pin CPU
binds this process to one CPU (the consumer's stays where the system puts it). --exchange both
alternates, two messages each on both sides, torch's DLPack C exchange table (torch 2.10 on) and
the calls into torch's bindings, each call's figures tagged " exch" or " reads". --faults also
counts each call's minor page faults (this thread's, from getrusage read just outside the call's
two clock reads): a call that faults every message maps or unmaps memory every message.

Host tensors (numpy, or torch CPU tensors with --torch) in the default mode run anywhere;
--device cuda sends torch CUDA tensors through cuda_ipc_pool, or with --mode default through the
host pool (copied out and back: the send waits for its copy to the host, the unwrap queues the
copy back to the GPU); the figures are then the layer's CPU time plus the core's own CUDA calls,
and the consumer's "sync" is the wait for what its unwrap queued (torch's stream.synchronize,
only when the message says work was queued, as the C harness's consumer does).

    python3 python/bench/bench_calls.py                      # numpy, default mode
    python3 python/bench/bench_calls.py --torch --device cuda --kind borrow
    python3 python/bench/bench_calls.py --torch --device cuda --mode default --kind copy --gap-us 2000
"""
import argparse
import json
import multiprocessing as mp
import sys
import time

import cuipc
from bench_transport import environment, percentile, thread_faults

# 2: schema_version, kind, environment, and the unwrap kind as "unwrap" (the files of runs 16-27:
# no version, the unwrap kind as "kind")
# 3: exchange and exchange_table; with --exchange both, each call's name tagged " exch" / " reads"
SCHEMA_VERSION = 3

# What the extension's torch fast path reads of a tensor (torch_tensor.c), one call each.
TORCH_READS = ["torch._C._is_torch_function_mode_enabled()", "x.layout", "x.requires_grad", "x.is_neg()", "x.dtype", "x.shape", "x.stride()", "x.data_ptr()", "x.is_cuda", "x.is_cpu",
               "x.get_device()", "torch._C._cuda_getCurrentRawStream(0)"]


def summary(ns_by_name):
    """p50 and p90 in us, nearest rank as everywhere else (bench_transport.percentile)."""
    return {k: {"p50": percentile(sorted(v), 50) / 1e3, "p90": percentile(sorted(v), 90) / 1e3}
            for k, v in ns_by_name.items() if v}


def no_faults():
    return 0


def faults_per_call(counts_by_name):
    return {k: sum(v) / len(v) for k, v in counts_by_name.items() if v}


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


def cuda_stream(args):
    """torch's current stream made a stream of our own (the send's, the reader's), or None."""
    if args.device != "cuda":
        return None
    import torch
    torch.cuda.set_device(0)
    stream = torch.cuda.Stream()
    torch.cuda.set_stream(stream)
    return stream


def exchange_ways(args):
    """(tag, _torch_exchange argument) of each way in turn: one, as the process has it (None),
    or both, alternating."""
    if args.exchange == "both":
        return [(" exch", True), (" reads", False)]
    return [("", {"on": None, "off": False}[args.exchange])]


def consumer_main(path, args, warm, results):
    """The consumer's side: each call of each message timed apart."""
    try:
        stream = cuda_stream(args)  # the tensors' reader
        # The ways to the application's tensor: (tag, unwrap's torch argument, tensor maker).
        if args.torch:
            fused = ("", True, lambda t: t)  # unwrap makes the torch tensors: "tensor" is a lookup
            via = ("", False, lambda t: t.to_torch())  # cuipc.Tensor out of unwrap, then to_torch()
            if args.torch_paths == "both":  # alternate message by message, in one process
                paths = [(" fused", True, fused[2]), (" to_torch", False, via[2])]
            else:
                paths = [via if args.torch_paths == "to_torch" else fused]
        else:
            import numpy as np
            paths = [("", False, np.from_dlpack)]
        c = cuipc.Consumer(path, timeout=30, spin_us=max(1000, 2 * args.gap_us))
        target = 0 if stream is not None else None  # a copy lands on the GPU, as the harness's
        c.prepare(kind=args.kind, device=target, stream=stream)
        sync = stream.synchronize if stream is not None else (lambda: None)
        calls = {"recv": []}
        for tag, _, _ in paths:
            calls.update({k + tag: [] for k in ("unwrap", "tensor", "sync", "release", "del")})
        exchange_tags = exchange_ways(args)
        calls = {k + x: [] for k in calls for x, _ in exchange_tags}
        faults = {k: [] for k in calls}
        now = time.perf_counter_ns
        flt = thread_faults if args.faults else no_faults
        for i in range(args.rounds):
            tag, as_torch, make = paths[i % len(paths)]
            xtag, use_table = exchange_tags[(i // 2) % len(exchange_tags)]
            if use_table is not None:
                cuipc._cuipc._torch_exchange(use_table)
            tag += xtag
            # Each call between two clock reads of its own, the fault reads outside them.
            f0, t0 = flt(), now()
            m = c.recv(timeout=30)
            t1, f1 = now(), flt()
            t1b = now()
            tree = m.unwrap(kind=args.kind, stream=stream, device=target, torch=as_torch)
            t2, f2 = now(), flt()
            t2b = now()
            y = make(tree["x"])
            t3, f3 = now(), flt()
            t3b = now()
            if m.stream_ordered:
                sync()
            t4, f4 = now(), flt()
            t4b = now()
            m.release(stream=stream)
            t5, f5 = now(), flt()
            t5b = now()
            del y, tree, m  # the tensors' deleters run here
            t6, f6 = now(), flt()
            if i >= warm:
                calls["recv" + xtag].append(t1 - t0)
                faults["recv" + xtag].append(f1 - f0)
                for k, a, b, fa, fb in (("unwrap", t1b, t2, f1, f2), ("tensor", t2b, t3, f2, f3),
                                        ("sync", t3b, t4, f3, f4), ("release", t4b, t5, f4, f5),
                                        ("del", t5b, t6, f5, f6)):
                    calls[k + tag].append(b - a)
                    faults[k + tag].append(fb - fa)
        if stream is not None:
            stream.synchronize()
        c.close()
        results.put({"us": summary(calls), "faults": faults_per_call(faults) if args.faults else None})
    except Exception as e:
        results.put({"error": f"{type(e).__name__}: {e}"})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20000)
    ap.add_argument("--bytes", type=int, default=4096)
    ap.add_argument("--kind", choices=["copy", "borrow"], default="borrow")
    ap.add_argument("--torch", action="store_true", help="torch tensors (CPU, or CUDA with --device cuda)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--torch-paths", choices=["fused", "to_torch", "both"], default="fused",
                    help="with --torch, how the consumer gets torch tensors: unwrap(torch=True) (fused), "
                         "unwrap then to_torch() (\"tensor\"), or both, alternating message by message")
    ap.add_argument("--exchange", choices=["on", "off", "both"], default="on",
                    help="with --torch: torch's DLPack C exchange table where torch has one (on), the "
                         "calls into torch's bindings (off), or both, alternating two messages each")
    ap.add_argument("--mode", choices=["cuda_ipc_pool", "default"],
                    help="transport mode (default: cuda_ipc_pool with --device cuda, else default)")
    ap.add_argument("--gap-us", type=int, default=0, help="spin this long between sends (default 0: back to back)")
    ap.add_argument("--pin", type=int, metavar="CPU", help="bind the producer to this CPU")
    ap.add_argument("--faults", action="store_true",
                    help="count each call's minor page faults too (read outside each call's time)")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    if args.pin is not None:
        import os
        os.sched_setaffinity(0, {args.pin})
    if args.device == "cuda" and (not args.torch or cuipc.gpu_count() == 0):
        print("bench_calls: --device cuda needs --torch and a GPU", file=sys.stderr)
        return 77
    stream = cuda_stream(args)  # the send's
    if args.torch:
        import torch
        x = torch.zeros(args.bytes // 2, dtype=torch.bfloat16, device=args.device)
        if args.exchange == "both" and not cuipc._cuipc._torch_exchange():
            print(f"bench_calls: --exchange both: torch's DLPack C exchange table is not in use (torch "
                  f"{torch.__version__} has none, or CUIPC_PY_TORCH_EXCHANGE=0)", file=sys.stderr)
            return 77
    elif args.exchange == "both":
        print("bench_calls: --exchange both needs --torch", file=sys.stderr)
        return 2
    else:
        import numpy as np
        x = np.zeros(args.bytes, dtype=np.uint8)
    mode = args.mode or ("cuda_ipc_pool" if args.device == "cuda" else "default")
    if mode == "cuda_ipc_pool" and args.device != "cuda":
        print("bench_calls: --mode cuda_ipc_pool needs --device cuda", file=sys.stderr)
        return 2
    # Room for every message: the consumer may fall behind, the send never waits for room.
    pow2 = lambda n: 1 << (n - 1).bit_length()  # noqa: E731
    room = pow2(args.rounds * max(args.bytes, 4096) * 2)
    p = cuipc.Producer(mode=mode, max_consumers=1, device=0, slots=pow2(max(4096, 2 * args.rounds)),
                       ring_bytes=pow2(max(1 << 20, args.rounds * 512)),
                       gpu_pool_bytes=room if mode == "cuda_ipc_pool" else 0,
                       host_pool_bytes=room if mode == "default" else 64 << 20)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    warm = args.rounds // 10
    proc = ctx.Process(target=consumer_main, args=(p.socket_path, args, warm, results))
    proc.start()
    try:
        p.accept(1, timeout=120)
        exchange_tags = exchange_ways(args)
        sends = {x: [] for x, _ in exchange_tags}
        profiled_sends = {x: [] for x, _ in exchange_tags}
        send_faults = {k + x: [] for k in ("send", "send_profiled") for x, _ in exchange_tags}
        phases = {k + x: [] for k in ("args", "convert", "wrap", "deliver", "outside")
                  for x, _ in exchange_tags}
        now = time.perf_counter_ns
        flt = thread_faults if args.faults else no_faults
        gap_ns = args.gap_us * 1000
        due = now()
        for i in range(args.rounds):
            profiled = i % 2 == 1  # every other send timed by phase, the rest as users call it
            xtag, use_table = exchange_tags[(i // 2) % len(exchange_tags)]
            if use_table is not None:
                cuipc._cuipc._torch_exchange(use_table)
            due += gap_ns
            while gap_ns and now() < due:
                pass
            f0, t0 = flt(), now()
            if profiled:
                ph = p._send_profiled({"x": x, "i": i}, stream=stream)
            else:
                p.send({"x": x, "i": i}, stream=stream)
            t1, f1 = now(), flt()
            if i < warm:
                continue
            send_faults[("send_profiled" if profiled else "send") + xtag].append(f1 - f0)
            if profiled:
                for k, v in ph.items():
                    phases[k + xtag].append(v)
                phases["outside" + xtag].append(t1 - t0 - sum(ph.values()))
                profiled_sends[xtag].append(t1 - t0)
            else:
                sends[xtag].append(t1 - t0)
        got = results.get(timeout=600)
        if "error" in got:
            print(f"bench_calls: consumer failed: {got['error']}", file=sys.stderr)
            return 1
        consumer = got["us"]
        p.drain(timeout=60)
    finally:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
        p.close()
    out = {"schema_version": SCHEMA_VERSION, "kind": "cuipc-python-calls",
           "environment": environment(with_torch=args.torch),
           "rounds": args.rounds, "bytes": args.bytes, "unwrap": args.kind, "gap_us": args.gap_us, "pin": args.pin,
           "torch_paths": args.torch_paths if args.torch else None,
           "tensors": "torch" if args.torch else "numpy",
           "exchange": args.exchange if args.torch else None,
           # whether torch's exchange table was used (by every message, or with "both" by half)
           "exchange_table": bool(args.torch and (args.exchange == "both" or
                                                   (args.exchange == "on" and cuipc._cuipc._torch_exchange()))),
           "device": args.device, "mode": mode,
           "producer_us": summary({**{"send" + x: v for x, v in sends.items()},
                                   **{"send_profiled" + x: v for x, v in profiled_sends.items()}}),
           "consumer_us": consumer,
           "send_phases_us": summary(phases),
           "faults_per_call": {**faults_per_call(send_faults), **got["faults"]} if args.faults else None}
    print(f"{out['tensors']} {args.device} {mode} {args.kind} {args.bytes} B, {args.rounds} messages, "
          f"{args.gap_us} us apart: p50 (p90) us")
    fpc = out["faults_per_call"] or {}
    for k, v in list(out["producer_us"].items()) + list(consumer.items()):
        extra = f"  {fpc[k]:.2f} faults a call" if k in fpc else ""
        print(f"  {k:<16} {v['p50']:8.2f} ({v['p90']:.2f}){extra}")
    print("  send by phase (wrap, deliver: the core's own calls):")
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
