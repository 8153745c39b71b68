#!/usr/bin/env python3
"""How evenly a host runs fresh processes: each of N new processes times the same small steps,
run cold (2 ms apart, spinning between, as a 500 Hz open loop's sender does): the torch reads a
send makes of one tensor (when torch is importable) and a pure-Python step. On a quiet host every
process gives about the same medians. On the H200 VM of run 25, 2 of 24 processes ran both steps
4-6 times slower than the others, with or without address-space randomisation: a run of a
benchmark that lands on such a process is slow whatever it measures, which is why targets.py
decides from many interleaved pairs and each of its runs is a fresh process.

--cpus-over-time S asks where that comes from: one process moves itself over the CPUs it may use,
one at a time, and times the pure-Python step back to back for --slice-ms on each, round after
round for S seconds. A CPU whose speed moves while nothing else of ours runs is the host's doing
(a VM's virtual CPU sharing its physical core, or the core's clock): whatever process lands on it
then runs slow, C or Python.

    python3 python/bench/process_speed.py --processes 12 [--no-aslr-too] [--out speed.json]
    python3 python/bench/process_speed.py --cpus-over-time 20 [--out cpus.json]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

SCHEMA_VERSION = 1


def one_process(iterations, gap_ns):
    """In the child: the medians (ns) of each step over the iterations after the first eighth."""
    try:
        import torch
        t = torch.empty(2048, dtype=torch.bfloat16)

        def reads():
            return (t.layout, t.requires_grad, t.is_neg(), t.dtype, t.shape, t.stride(), t.data_ptr(),
                    t.is_cuda, t.get_device())
    except ImportError:
        reads = None

    a, b = [], []
    due = time.perf_counter_ns()
    for _ in range(iterations):
        due += gap_ns
        while time.perf_counter_ns() < due:
            pass
        t0 = time.perf_counter_ns()
        if reads:
            reads()
        t1 = time.perf_counter_ns()
        plain_step()
        t2 = time.perf_counter_ns()
        a.append(t1 - t0)
        b.append(t2 - t1)
    skip = iterations // 8
    return {"torch_reads_ns": statistics.median(a[skip:]) if reads else None,
            "python_step_ns": statistics.median(b[skip:])}


def plain_step():
    d = {"x": 1, "i": 2, "stamp": 3}
    return sum(len(str(k)) for k in d) + sorted([3, 1, 2])[0]


def cpus_over_time(seconds, slice_ms, cpus=None):
    """Rounds over the CPUs (default: the allowed ones), one at a time: per CPU, the median ns of
    the pure-Python step in each round's slice. Returns (cpus, rounds: a list of {cpu: ns}); the
    calling thread's CPU mask is put back."""
    allowed = os.sched_getaffinity(0)
    cpus = sorted(cpus if cpus is not None else allowed)
    rounds, end = [], time.monotonic() + seconds
    try:
        while time.monotonic() < end or not rounds:
            row = {}
            for cpu in cpus:
                os.sched_setaffinity(0, {cpu})
                time.sleep(0)  # leave the old CPU now, not inside the slice
                took, stop = [], time.perf_counter_ns() + slice_ms * 1_000_000
                while True:
                    t0 = time.perf_counter_ns()
                    plain_step()
                    t1 = time.perf_counter_ns()
                    took.append(t1 - t0)
                    if t1 >= stop:
                        break
                row[cpu] = statistics.median(took)
            rounds.append(row)
    finally:
        os.sched_setaffinity(0, allowed)
    return cpus, rounds


def cpu_summary(cpus, rounds, slow=1.3):
    """Per CPU its fastest, median and slowest slice against the fastest slice seen on any CPU,
    and how many of its slices were over slow times that; per round the slowest CPU against the
    fastest one of the same round (a spread at one moment: not the host's clock as a whole)."""
    best = min(ns for row in rounds for ns in row.values())
    per_cpu = {}
    for cpu in cpus:
        v = sorted(row[cpu] / best for row in rounds)
        per_cpu[cpu] = {"fastest": v[0], "median": statistics.median(v), "slowest": v[-1],
                        "slow_slices": sum(x > slow for x in v)}
    within = sorted(max(row.values()) / min(row.values()) for row in rounds)
    return {"best_step_ns": best, "slow_factor": slow, "per_cpu": per_cpu,
            "round_spread_median": statistics.median(within), "round_spread_max": within[-1],
            "slow_slices": sum(c["slow_slices"] for c in per_cpu.values()),
            "slices": len(cpus) * len(rounds)}


def slowed(runs, factor=2.0):
    """(the median Python step, the indices of the processes whose step took over factor times
    that)."""
    typical = statistics.median(r["python_step_ns"] for r in runs)
    return typical, [i for i, r in enumerate(runs) if r["python_step_ns"] > factor * typical]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--gap-us", type=int, default=2000, help="time between steps (default 2000: 500 Hz)")
    ap.add_argument("--no-aslr-too", action="store_true",
                    help="alternate with processes started without address-space randomisation (setarch -R)")
    ap.add_argument("--cpus-over-time", type=float, metavar="S",
                    help="instead: S seconds of rounds over the allowed CPUs, one at a time (see above)")
    ap.add_argument("--slice-ms", type=float, default=20, help="--cpus-over-time: ms per CPU per round")
    ap.add_argument("--out", help="results JSON")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child
    args = ap.parse_args()
    if args.processes < 1 or args.iterations < 8 or args.gap_us < 0:
        print("process_speed: --processes >= 1, --iterations >= 8, --gap-us >= 0", file=sys.stderr)
        return 2
    if args.cpus_over_time is not None:
        if args.cpus_over_time <= 0 or args.slice_ms <= 0:
            print("process_speed: --cpus-over-time and --slice-ms > 0", file=sys.stderr)
            return 2
        return report_cpus(args)
    if args.one:
        print(json.dumps(one_process(args.iterations, args.gap_us * 1000)))
        return 0
    setarch = shutil.which("setarch")
    if args.no_aslr_too and not setarch:
        print("process_speed: --no-aslr-too needs setarch", file=sys.stderr)
        return 2
    child = [sys.executable, os.path.abspath(__file__), "--one", "--iterations", str(args.iterations),
             "--gap-us", str(args.gap_us)]
    runs = []
    for k in range(args.processes):
        for aslr in ([True, False] if args.no_aslr_too else [True]):
            cmd = child if aslr else [setarch, "-R"] + child
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            except subprocess.TimeoutExpired:
                print("process_speed: a child took over 600 s", file=sys.stderr)
                return 1
            if p.returncode != 0:
                print(f"process_speed: a child failed (exit {p.returncode}): {p.stderr.strip()[-300:]}",
                      file=sys.stderr)
                return 1
            r = json.loads(p.stdout)
            r["aslr"] = aslr
            runs.append(r)
            shown = "-" if r["torch_reads_ns"] is None else f"{r['torch_reads_ns'] / 1000:.2f}"
            print(f"process {len(runs):3d} aslr {'on ' if aslr else 'off'}  torch reads {shown} us  "
                  f"python step {r['python_step_ns'] / 1000:.2f} us", flush=True)
    typical, slow = slowed(runs)
    print(f"median python step {typical / 1000:.2f} us; {len(slow)} of {len(runs)} processes "
          f"over twice that")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"schema_version": SCHEMA_VERSION, "kind": "cuipc-process-speed",
                       "iterations": args.iterations, "gap_us": args.gap_us, "processes": runs,
                       "median_python_step_ns": typical, "slowed": slow}, f, indent=1)
    return 0


def report_cpus(args):
    cpus, rounds = cpus_over_time(args.cpus_over_time, args.slice_ms)
    s = cpu_summary(cpus, rounds)
    print(f"{len(rounds)} rounds of {args.slice_ms:g} ms on each of {len(cpus)} CPUs; fastest slice "
          f"{s['best_step_ns'] / 1000:.2f} us a step; per CPU, its slices against that one:")
    for cpu, c in s["per_cpu"].items():
        print(f"  cpu {cpu:3d}  fastest {c['fastest']:.2f}  median {c['median']:.2f}  slowest {c['slowest']:.2f}  "
              f"over {s['slow_factor']:g}x: {c['slow_slices']} of {len(rounds)}")
    print(f"within one round, slowest CPU / fastest: median {s['round_spread_median']:.2f}, "
          f"max {s['round_spread_max']:.2f}; {s['slow_slices']} of {s['slices']} slices over "
          f"{s['slow_factor']:g}x the fastest")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"schema_version": SCHEMA_VERSION, "kind": "cuipc-cpu-speed-over-time",
                       "slice_ms": args.slice_ms, "cpus": cpus,
                       "rounds_ns": [[row[c] for c in cpus] for row in rounds], "summary": s}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
