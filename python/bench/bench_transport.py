#!/usr/bin/env python3
"""Python transport benchmark: one producer and N consumer processes on one GPU with torch
tensors, measured like the C harness's matrix (scenarios/matrix: same sizes, rates, message
counts, pools, sync and validation cadence) so the two can be read side by side from one run.

Per (variant, size, consumers, channel, pattern) it runs an open loop (latency: send stamp =
the scheduled send time, to after unwrap + stream synchronize, all consumers merged; as the C
producer does, the schedule restarts once the consumers have taken the warm-up messages) and a
closed loop (throughput: back to back, GB/s per consumer and aggregate over the messages after
warm-up, from the first one's receipt to the end of the last one's handling).

Where the time goes (p50 each, printed under each case and kept in the JSON): the consumer's
stages as the C consumer's (deliver: stamp -> received, unwrap: here straight to torch tensors,
unwrap(torch=True), ready: the stream synchronize), and the producer's send; with
--compare-harness the C figures of the same run beside them and the difference to C (one run
each: targets.py runs the targets in pairs and decides them). --profile splits the send by
phase inside the extension.

Patterns (what each side does per message):
  harness    what the C harness's roles do (role_producer.c, role_consumer.c), so that the
             difference measured is the Python layer's cost: the consumer unwraps into torch
             tensors, synchronises its stream only on every consumers.sync_every-th
             message and the last (and only when unwrap left work on it), stamps, then
             validates one message in validation.every (a GPU read of byte 0), and releases on
             the host (on its stream where the scenario says release "stream"); the producer
             writes the data only of the validated messages (and waits for it, as the C fill
             and checksum do) and never synchronises otherwise.
  reference  the reference's usage pattern: the producer writes and synchronises every message;
             every consumer synchronises, stamps, touches (a GPU read, .item()) and releases
             on its stream every message. On one GPU shared without MPS, the consumer's GPU
             work right behind the producer's costs a GPU context switch (~150 us) a message.

--cpu-gauge (open loops): each timed message tagged with the state of both sides' CPUs, as the
C harness's run.cpu_gauge does with the same walk (the extension builds harness/src/cpu_gauge.c),
and the latency split by it (latency_us.by_cpu_state): fast, slow, mixed.

Variants: pool_copy, pool_borrow (cuda_ipc_pool), default (host pool; copied back to the GPU).
Channels: queue (Producer.wrap -> the application's own channel -> Consumer.adopt: the
reference's pattern; here a multiprocessing Pipe per consumer, what a multiprocessing Queue
writes to, without the Queue's feeder thread: a producer that holds the GIL, as the open loop's
spin-wait does, starves that thread for up to the 5 ms switch interval, which would be measured
as transport latency) and ring (Producer.send -> Consumer.recv: cuipc's own channel, the C
harness's path).

    python3 python/bench/bench_transport.py --out results.json
    python3 python/bench/bench_transport.py --out r.json --compare-harness OUT/harness
"""
import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import sys
import time

SCHEMA_VERSION = 7  # 7: latency_us.by_cpu_state (--cpu-gauge)
SIZES = {"4KiB": 4 << 10, "1MiB": 1 << 20, "64MiB": 64 << 20}
VARIANTS = {  # name: (mode, unwrap kind, harness scenario stem)
    "pool_copy": ("cuda_ipc_pool", "copy", "pool_{size}_c{n}_copy"),
    "pool_borrow": ("cuda_ipc_pool", "borrow", "pool_{size}_c{n}_borrow"),
    "default": ("default", "copy", "default_{size}_c{n}_copy"),
}
MATRIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scenarios", "matrix")


def parse_bytes(s):
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for u, f in units.items():
        if s.endswith(u):
            return int(float(s[: -len(u)]) * f)
    return int(s)


def scenario(loop, variant, size, n):
    """The C matrix scenario this run mirrors (rate, iterations, warm-up, pool, sync and
    validation cadence, release), with the harness's defaults for the keys it leaves out."""
    stem = VARIANTS[variant][2].format(size=size.lower(), n=n)
    path = os.path.join(MATRIX, f"{'lat' if loop == 'open' else 'tput'}_{stem}.json")
    with open(path) as f:
        s = json.load(f)
    run, pool = s["run"], s.get("pool", {})
    consumers, validation = s.get("consumers", {}), s.get("validation", {})
    return {
        "name": s["name"],
        "iterations": run["iterations"],
        "warmup": run.get("warmup_iterations", 0),
        "rate_hz": run.get("rate_hz") if run.get("loop") == "open" else None,
        "gpu_bytes": parse_bytes(pool.get("gpu_bytes", "256MiB")),
        "host_bytes": parse_bytes(pool.get("host_bytes", "64MiB")),
        "spin_us": consumers.get("spin_us", -1),
        "sync_every": consumers.get("sync_every", 1),
        "release_on_stream": consumers.get("release", "host") == "stream",
        "validate_every": validation.get("every", 1) if validation.get("enabled", True) else 0,
    }


def validated(cfg, i):
    """Whether message i carries its mark (byte 0 = i % 251) and is checked."""
    if cfg["pattern"] == "reference":
        return True
    return cfg["validate_every"] > 0 and i % cfg["validate_every"] == 0


def proc_stat(path):
    """A /proc stat file of a process or thread: (its command name, the fields after it, the
    state first), or None when it cannot be read (the task is gone)."""
    try:
        with open(path) as f:
            head, _, rest = f.read().rpartition(")")
    except OSError:
        return None
    return head.partition("(")[2], rest.split()


def current_cpu():
    """The CPU the calling thread is on (/proc/thread-self/stat, field 39), or None."""
    stat = proc_stat("/proc/thread-self/stat")
    try:
        return int(stat[1][36]) if stat else None
    except (ValueError, IndexError):
        return None


def thread_faults():
    """The calling thread's minor page faults so far (one read: cheap enough around one call)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def thread_sched(since=None):
    """The calling thread's context switches; with since, those since then and the CPU it is on
    now, as the C roles' report.main_thread: a spinning thread taken off its CPU (involuntary
    switches) was measured on a shared CPU."""
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    now = (ru.ru_nvcsw, ru.ru_nivcsw, ru.ru_minflt)
    if since is None:
        return now
    return {"voluntary_switches": now[0] - since[0], "involuntary_switches": now[1] - since[1],
            "minor_faults": now[2] - since[2], "cpu": current_cpu()}


def cpu_list(text):
    """'0-3,8' -> [0, 1, 2, 3, 8]"""
    out = []
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def cpu_string(cpus):
    """[0, 1, 2, 3, 8] -> '0-3,8'"""
    cpus, out, i = sorted(cpus), [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


def cpu_sets(text):
    """'0-3/4,6' -> [[0, 1, 2, 3], [4, 6]]: a CPU set per process, producer first."""
    sets = [cpu_list(part) for part in text.split("/")]
    if not all(sets):
        raise ValueError(f"{text!r}: an empty CPU set")
    return sets


def percentile(sorted_us, q):
    if not sorted_us:
        return None
    k = min(len(sorted_us) - 1, max(0, math.ceil(q / 100 * len(sorted_us)) - 1))
    return sorted_us[k]


def on_stream(torch, stream):
    return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()


def consumer_main(cfg, k, inbox, results, ready, received):
    """A worker: attach, then per message get, unwrap, as the pattern says (see the module's
    doc): synchronise (timed), touch, release."""
    if cfg.get("cpus"):
        os.sched_setaffinity(0, cfg["cpus"][k])
    import torch

    import cuipc

    gpu = cfg["device"] == "cuda"
    if gpu:
        torch.cuda.set_device(0)
    stream = torch.cuda.Stream() if gpu else None
    target = 0 if gpu else None
    reference = cfg["pattern"] == "reference"
    release_stream = stream if reference or cfg["release_on_stream"] else None
    last, warm = cfg["messages"] - 1, cfg["warmup"]
    # The loop's settings as locals: what is timed is the transport, not this script's lookups.
    kind, queue, sync_every, ring = cfg["kind"], cfg["channel"] == "queue", cfg["sync_every"], cfg["channel"] == "ring"
    lat_ns, bad, checked, steady_t0 = [], 0, 0, None
    gauge = cfg["gauge"] and cuipc._cuipc._cpu_gauge_ns
    walks = []  # --cpu-gauge: each latency sample's (producer's walk, this consumer's walk), in ns
    stages = {"deliver": [], "unwrap": [], "ready": []}
    place = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
    try:
        c = cuipc.Consumer(cfg["path"], timeout=60, spin_us=cfg["spin_us"])
        c.prepare(kind=cfg["kind"], device=target, stream=stream)
        ready.put(c.index)
        sched0 = thread_sched()
        with place:
            for seq in range(cfg["messages"]):
                if queue:
                    if not inbox.poll(120):
                        raise TimeoutError("no wrapped message on the pipe in 120 s")
                    wire, i, stamp, walk = inbox.recv()
                    t_recv = time.perf_counter_ns()
                    m = c.adopt(wire)
                else:
                    m = c.recv(timeout=120)
                    t_recv = time.perf_counter_ns()
                # Straight to torch tensors, ready on torch's current stream (here the unwrap's).
                tree = m.unwrap(kind=kind, stream=stream, device=target, torch=True)
                t_unwrap = time.perf_counter_ns()
                if ring:
                    i, stamp, walk = tree["i"], tree["stamp"], tree.get("g", 0)
                t = tree["x"]
                timed = reference or seq % sync_every == 0 or seq == last
                if stream is not None and timed and (reference or m.stream_ordered):
                    stream.synchronize()
                now = time.perf_counter_ns()
                if timed and seq >= warm:
                    lat_ns.append(now - stamp)
                    if gauge:  # this CPU's state right after the timed span, as the C consumer's
                        walks.append((walk, gauge()))
                    # The C consumer's stages (deliver, unwrap: here with the torch tensors, ready).
                    for name, a, b in (("deliver", stamp, t_recv), ("unwrap", t_recv, t_unwrap),
                                       ("ready", t_unwrap, now)):
                        stages[name].append(b - a)
                if validated(cfg, i):  # the data is there and is this message's
                    checked += 1
                    bad += int(t.view(torch.uint8)[0].item()) != i % 251
                if seq >= warm and steady_t0 is None:
                    steady_t0 = t_recv
                m.release(stream=release_stream)
                del t, tree, m
                received[k] = seq + 1  # the producer's settle after warm-up reads it
        t_end = time.perf_counter_ns()
        sched = thread_sched(sched0)
        results.put({"index": c.index, "lat_ns": lat_ns, "walks": walks,
                     "resident_walk_ns": cuipc._cuipc._cpu_gauge_resident_ns() if gauge else None,
                     "stages_ns": stages, "bad": bad, "checked": checked,
                     "thread": sched,
                     "steady": {"messages": cfg["messages"] - warm,
                                "seconds": (t_end - steady_t0) / 1e9 if steady_t0 else float("nan")},
                     "stats": c.stats()})
        c.close()
    except Exception as e:
        import traceback
        results.put({"error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"})


def run_case(variant, size_name, n, channel, loop, pattern, device, messages_override=None, profile=False,
             cpus=None, cpu_gauge=False):
    """One case. cpus: None, or the CPUs each process is bound to: [producer's, consumer 0's, ...];
    this process, the producer, is bound already (main binds it before CUDA starts), the
    consumers bind themselves. cpu_gauge: as the C scenario's run.cpu_gauge (open loop only),
    each timed message tagged with both sides' CPU state and the latency split by it."""
    import torch

    import cuipc

    mode, kind, _ = VARIANTS[variant]
    sc = scenario(loop, variant, size_name, n)
    size = SIZES[size_name]
    if messages_override:
        sc["iterations"], sc["warmup"] = messages_override, min(sc["warmup"], messages_override // 4)
    messages = sc["iterations"]  # the harness's warm-up messages are among its iterations
    ctx = mp.get_context("spawn")
    results, ready = ctx.Queue(), ctx.Queue()
    pipes = [ctx.Pipe(duplex=False) for _ in range(n)]  # (consumer's end, producer's end)
    received = ctx.Array("q", n, lock=False)  # messages each consumer has handled
    p = cuipc.Producer(mode=mode, gpu_pool_bytes=sc["gpu_bytes"] if mode != "default" else 0,
                       host_pool_bytes=sc["host_bytes"] if mode == "default" else 0,
                       max_consumers=n, device=0, full_policy="wait", full_timeout=30)
    cfg = {"path": p.socket_path, "kind": kind, "channel": channel, "messages": messages, "device": device,
           "spin_us": sc["spin_us"] if loop == "open" else -1, "pattern": pattern, "warmup": sc["warmup"],
           "sync_every": sc["sync_every"], "validate_every": sc["validate_every"],
           "release_on_stream": sc["release_on_stream"], "cpus": cpus[1:] if cpus else None,
           "gauge": cpu_gauge}
    gauge = cuipc._cuipc._cpu_gauge_ns if cpu_gauge else (lambda: 0)
    procs = [ctx.Process(target=consumer_main, args=(cfg, k, pipes[k][0], results, ready, received))
             for k in range(n)]
    for proc in procs:
        proc.start()
    try:
        p.accept(n, timeout=120)
        for _ in range(n):
            ready.get(timeout=120)
        stream = torch.cuda.Stream() if device == "cuda" else None
        sync = stream.synchronize if stream is not None else (lambda: None)
        # One source tensor per slot in flight, bf16 like the harness; byte 0 carries the index.
        with on_stream(torch, stream):
            srcs = [torch.randn(size // 2, device=device).to(torch.bfloat16) for _ in range(4)]
        sync()
        period_ns = int(1e9 / sc["rate_hz"]) if loop == "open" else 0
        start = time.perf_counter_ns() + 50_000_000
        send_ns, wrap_ns, phases = [], [], {"args": [], "convert": [], "wrap": [], "deliver": [], "outside": []}
        # The whole loop on the send's stream, as the producing work is: torch's __dlpack__
        # then has no event to record between its current stream and ours (the C producer has
        # none), and no stream context is entered per message.
        sched0 = thread_sched()
        with on_stream(torch, stream):
            for i in range(messages):
                x = srcs[i % len(srcs)]
                walk = gauge()  # the CPU's state as the message starts, before its time comes
                if validated(cfg, i):  # made before its time, like the C producer's fill + checksum
                    x.view(torch.uint8)[0] = i % 251
                    if pattern == "harness":
                        sync()
                if loop == "open":
                    if i == sc["warmup"] and i > 0:
                        # As the C producer does: the warm-up's backlog (first calls, lazy
                        # loading) drains before the timed messages' schedule starts.
                        settle(received, i)
                        start = time.perf_counter_ns() - i * period_ns
                    due = start + i * period_ns
                    while time.perf_counter_ns() < due:
                        pass
                    stamp = due
                else:
                    if pattern == "reference":
                        sync()
                    stamp = time.perf_counter_ns()
                t0 = time.perf_counter_ns()
                if channel == "queue":
                    wire = p.wrap({"x": x}, stream=stream)
                    wrap_ns.append(time.perf_counter_ns() - t0)
                    for _, out in pipes:
                        out.send((wire, i, stamp, walk))
                else:
                    # The walk only where gauged: the C producer adds gauge_ns only then.
                    msg = {"x": x, "i": i, "stamp": stamp}
                    if cpu_gauge:
                        msg["g"] = walk
                    if profile:
                        ph = p._send_profiled(msg, stream=stream)
                    else:
                        p.send(msg, stream=stream)
                send_ns.append(time.perf_counter_ns() - t0)
                if channel == "ring" and profile:
                    for name, v in ph.items():
                        phases[name].append(v)
                    phases["outside"].append(send_ns[-1] - sum(ph.values()))
        producer_thread = thread_sched(sched0)
        got = [results.get(timeout=600) for _ in range(n)]
        errors = [g["error"] for g in got if "error" in g]
        if errors:
            raise RuntimeError("consumer failed: " + errors[0])
        p.drain(timeout=60)
        stats = p.stats()
    finally:
        for proc in procs:
            proc.join(60)
            if proc.is_alive():
                proc.kill()
        p.close()

    warm = sc["warmup"]
    lat_us = sorted(ns / 1000 for g in got for ns in g["lat_ns"])  # after warm-up
    per_consumer = []
    for g in got:
        k, secs = g["steady"]["messages"], g["steady"]["seconds"]
        per_consumer.append({"consumer": g["index"], "gbps": k * size / secs / 1e9, "msgs_per_s": k / secs})
    sends = sorted(ns / 1000 for ns in send_ns[warm:])
    stages = {name: summary_us([ns for g in got for ns in g["stages_ns"][name]])
              for name in ("deliver", "unwrap", "ready")}
    return {
        "variant": variant, "mode": mode, "unwrap": kind, "size": size_name, "size_bytes": size,
        "consumers": n, "channel": channel, "loop": loop, "pattern": pattern, "rate_hz": sc["rate_hz"],
        "sync_every": 1 if pattern == "reference" else sc["sync_every"],
        "validate_every": 1 if pattern == "reference" else sc["validate_every"],
        "messages": messages, "warmup": warm, "harness_scenario": sc["name"], "cpus": cpus,
        "producer_pid": os.getpid(),
        "latency_us": {"count": len(lat_us), "p50": percentile(lat_us, 50), "p90": percentile(lat_us, 90),
                       "p99": percentile(lat_us, 99), "max": lat_us[-1] if lat_us else None,
                       "mean": sum(lat_us) / len(lat_us) if lat_us else None,
                       **({"by_cpu_state": by_cpu_state(
                           [(ns, *w) for g in got for ns, w in zip(g["lat_ns"], g["walks"])],
                           min(g["resident_walk_ns"] for g in got))} if cpu_gauge else {})},
        "send_us": {"p50": percentile(sends, 50), "p99": percentile(sends, 99)},
        "wrap_us": summary_us(wrap_ns[warm:]) if wrap_ns else None,
        "send_phases_us": {name: summary_us(v[warm:]) for name, v in phases.items()} if phases["args"] else None,
        "stages_us": stages,
        "throughput": {"aggregate_gbps": sum(c["gbps"] for c in per_consumer), "per_consumer": per_consumer},
        "validation_failures": sum(g["bad"] for g in got),
        "validated": sum(g["checked"] for g in got),
        "pool": stats["gpu_pool"] if mode != "default" else stats["host_pool"],
        "producer_thread": producer_thread,
        "consumer_threads": [g.get("thread") for g in got],
    }


def by_cpu_state(samples, resident_ns=None, slow_above=None):
    """The C harness's latency_us.by_cpu_state from (latency, producer's walk, consumer's walk)
    samples in ns, by the same rule: fast where both walks took at most slow_above (the harness's
    CUIPC_CPU_GAUGE_SLOW_ABOVE) times the fastest walk (resident_ns, the consumers' back-to-back
    walk, included), slow where both took more, mixed otherwise; a sample without both walks is
    ungauged and in no part."""
    if slow_above is None:
        import cuipc._cuipc
        slow_above = cuipc._cuipc._cpu_gauge_slow_above
    walks = [w for _, p, c in samples for w in (p, c) if w > 0] + ([resident_ns] if resident_ns else [])
    fastest = min(walks) if walks else 0
    parts = {"fast": [], "slow": [], "mixed": []}
    ungauged = 0
    for ns, p, c in samples:
        if p <= 0 or c <= 0:
            ungauged += 1
            continue
        p_slow, c_slow = p > slow_above * fastest, c > slow_above * fastest
        parts["fast" if not (p_slow or c_slow) else "slow" if p_slow and c_slow else "mixed"].append(ns)
    out = {"fastest_walk_us": fastest / 1000, "slow_above": slow_above, "ungauged": ungauged}
    for name, ns in parts.items():
        out[name] = summary_us(ns)
    return out


def settle(received, count, limit_s=1.0):
    """Wait (at most limit_s, as the C producer's settle) until every consumer has handled count
    messages."""
    deadline = time.perf_counter() + limit_s
    while min(received) < count and time.perf_counter() < deadline:
        time.sleep(20e-6)


def summary_us(ns):
    us = sorted(v / 1000 for v in ns)
    return {"count": len(us), "p50": percentile(us, 50), "p90": percentile(us, 90), "p99": percentile(us, 99)}


def harness_figures(directory, name):
    path = os.path.join(directory, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        r = json.load(f)
    lat = r.get("latency_us") or {}
    tput = (r.get("throughput") or {}).get("per_consumer") or []
    roles = [x.get("report") or {} for x in r.get("roles") or []]
    producer = next((x for x in roles if x.get("role") == "producer"), {})
    consumers = [x for x in roles if x.get("role") == "consumer"]
    # One consumer's stages (the first's): the matrix's latency cases have one.
    stages = (consumers[0].get("stages_us") if consumers else None) or {}
    return {"status": r.get("status"), "p50_us": lat.get("p50"), "p99_us": lat.get("p99"),
            "by_cpu_state": lat.get("by_cpu_state"),
            "min_us": lat.get("min"), "per_consumer_gbps": [c.get("gbps") for c in tput],
            "send_p50_us": (producer.get("send_us") or {}).get("p50"),
            "stages_p50_us": {k: (v or {}).get("p50") for k, v in stages.items()},
            "producer_thread": producer.get("main_thread"),
            "consumer_threads": [x.get("main_thread") for x in consumers]}


# The Python path's targets against the C harness of the same run, on the C harness's own
# channel (ring) and consumer pattern: a 4 KiB message adds at most 20 us p50; a 64 MiB borrow
# stream keeps 95 % of the C throughput.
P50_OVER_C_MAX_US = 20.0
GBPS_OF_C_MIN = 0.95


def against_c(r):
    """The difference to the C figures of one run each, and the target this case has, if any:
    one run of each side is one sample, so no verdict here (--targets gives one)."""
    h = r.get("harness")
    if not h or h.get("status") is None:
        return None, None
    c_gbps = sum(g for g in h.get("per_consumer_gbps") or [] if g) or None
    py = r["latency_us"]["p50"]
    vs = {"p50_over_c_us": py - h["p50_us"] if py is not None and h.get("p50_us") is not None else None,
          "p99_over_c_us": (r["latency_us"]["p99"] - h["p99_us"]
                            if r["latency_us"]["p99"] is not None and h.get("p99_us") is not None else None),
          "send_p50_over_c_us": (r["send_us"]["p50"] - h["send_p50_us"]
                                 if r["send_us"]["p50"] is not None and h.get("send_p50_us") is not None else None),
          "gbps_of_c": r["throughput"]["aggregate_gbps"] / c_gbps if c_gbps else None}
    t = target_of(r["variant"], r["size"], r["loop"]) if r["channel"] == "ring" and r["pattern"] == "harness" else None
    if t is None or h.get("status") != "passed" or vs[t[0]] is None:
        return vs, None
    return vs, {"metric": t[0], "limit": t[1], "value": vs[t[0]], "verdict": "one run: --targets decides"}


def target_of(variant, size, loop):
    """(metric, limit) of the case's target, or None."""
    if size == "4KiB" and loop == "open":
        return "p50_over_c_us", P50_OVER_C_MAX_US
    if size == "64MiB" and variant == "pool_borrow" and loop == "closed":
        return "gbps_of_c", GBPS_OF_C_MIN
    return None


def environment(with_torch=True):
    """What a run measured on: host, Python, torch, cuipc and its build, GPUs. with_torch=False
    for a run that used no torch: torch None and no GPU name (torch is not imported for them)."""
    import cuipc
    env = {"hostname": platform.node(), "python": sys.version.split()[0], "torch": None,
           "cuipc": cuipc.__version__, "cuipc_build": cuipc.build_version, "gpus": cuipc.gpu_count()}
    if with_torch:
        import torch
        env["torch"] = torch.__version__
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--sizes", default="4KiB,1MiB,64MiB")
    ap.add_argument("--consumers", default="1,4")
    ap.add_argument("--variants", default="pool_copy,pool_borrow,default")
    ap.add_argument("--channels", default="queue,ring")
    ap.add_argument("--loops", default="open,closed")
    ap.add_argument("--patterns", default="harness,reference",
                    help="harness: what the C roles do per message; reference: sync + touch every "
                         "message (see above)")
    ap.add_argument("--cases", metavar="REGEX",
                    help="only the cases whose name variant/size/cN/channel/loop/pattern matches "
                         "(re.search), e.g. '4KiB/.*/open/|64MiB/.*/closed/'")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: host tensors, variant default only: a dry run of the plumbing "
                         "where no GPU is present, not a figure to compare")
    ap.add_argument("--messages", type=int,
                    help="messages instead of the C scenario's (dry runs; targets.py --messages sets "
                         "both sides)")
    ap.add_argument("--profile", action="store_true",
                    help="ring channel: the producer sends through Producer._send_profiled (the same "
                         "send, timed by phase inside the extension) and prints the phases")
    ap.add_argument("--cpu-gauge", action="store_true",
                    help="open loops: tag each timed message with both sides' CPU state (the harness's "
                         "run.cpu_gauge: one pass over a fixed 64 KiB set, the producer's before each message, the "
                         "consumer's after each timed one) and split the latency by it "
                         "(latency_us.by_cpu_state)")
    ap.add_argument("--cpus", metavar="SETS",
                    help="bind each process: a CPU set per process, producer first, '/' between "
                         "(0-15/0-15); as many sets as the largest consumer count + 1")
    ap.add_argument("--compare-harness", metavar="DIR",
                    help="C harness results of the same run (cuipc-harness run --out DIR)")
    args = ap.parse_args()
    try:
        args.cpus = cpu_sets(args.cpus) if args.cpus else None
        if args.cpus and len(args.cpus) < 1 + max(map(int, args.consumers.split(","))):
            raise ValueError(f"{len(args.cpus)} set(s) for a producer and up to {args.consumers} consumers")
    except ValueError as e:
        print(f"bench_transport: --cpus: {e}", file=sys.stderr)
        return 2
    if args.cpus:  # before CUDA starts: its threads take the mask they are created with
        os.sched_setaffinity(0, args.cpus[0])
    import cuipc
    if cuipc.gpu_count() == 0 and args.device == "cuda":
        print("bench_transport: no GPU: nothing measured", file=sys.stderr)
        return 77
    if args.device == "cpu" and args.variants != "default":
        print("bench_transport: --device cpu runs the default variant only", file=sys.stderr)
        return 2
    out = {"schema_version": SCHEMA_VERSION, "kind": "cuipc-python-bench", "device": args.device,
           "environment": environment(),
           "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": []}
    failed = False
    for variant in args.variants.split(","):
        for size in args.sizes.split(","):
            for n in map(int, args.consumers.split(",")):
                for channel in args.channels.split(","):
                    for loop in args.loops.split(","):
                        for pattern in args.patterns.split(","):
                            name = f"{variant}/{size}/c{n}/{channel}/{loop}/{pattern}"
                            if args.cases and not re.search(args.cases, name):
                                continue
                            r = one_case(args, variant, size, n, channel, loop, pattern)
                            out["results"].append(r)
                            print(summary_line(r), flush=True)
                            # A case that validated nothing proved nothing about the data.
                            failed |= "error" in r or bool(r["validation_failures"]) or not r["validated"]
                            write_json(args.out, out)  # a timeout keeps the cases that ran
    write_json(args.out, out)
    return 1 if failed else 0


def one_case(args, variant, size, n, channel, loop, pattern):
    try:
        r = run_case(variant, size, n, channel, loop, pattern, args.device, args.messages, args.profile,
                     cpus=args.cpus[:n + 1] if args.cpus else None, cpu_gauge=args.cpu_gauge and loop == "open")
    except Exception as e:
        return {"variant": variant, "size": size, "consumers": n, "channel": channel, "loop": loop,
                "pattern": pattern, "error": f"{type(e).__name__}: {e}"}
    if args.compare_harness:
        r["harness"] = harness_figures(args.compare_harness, r["harness_scenario"])
        r["vs_c"], r["target"] = against_c(r)
    return r


def write_json(path, out):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, path)


def summary_line(r):
    head = (f"{r['variant']:<12} {r['size']:>6} c{r['consumers']} {r['channel']:<5} {r['loop']:<6} "
            f"{r['pattern']:<9}")
    if "error" in r:
        return f"{head} ERROR {r['error']}"
    lat, tp = r["latency_us"], r["throughput"]
    s = (f"{head} p50 {lat['p50']:9.1f} us  p99 {lat['p99']:9.1f} us  "
         f"{tp['aggregate_gbps']:8.2f} GB/s  bad {r['validation_failures']}")
    h = r.get("harness")
    if h and h.get("p50_us") is not None:
        gb = h["per_consumer_gbps"]
        c_gbps = sum(g for g in gb if g) if gb else float("nan")
        s += f"  | C: p50 {h['p50_us']:.1f} us p99 {h['p99_us']:.1f} us {c_gbps:.2f} GB/s"
    # Where the time goes, p50 each: the consumer's stages (as the C consumer's: stamp ->
    # received -> unwrapped into torch tensors -> ready) and the producer's send.
    st = r["stages_us"]
    s += "\n    stages p50 us: " + " ".join(f"{k} {fmt(v['p50'])}" for k, v in st.items())
    s += f"; send {fmt(r['send_us']['p50'])}"
    if r.get("wrap_us"):
        s += f" (wrap {fmt(r['wrap_us']['p50'])})"
    if h and h.get("stages_p50_us"):
        s += " | C: " + " ".join(f"{k} {fmt(v)}" for k, v in h["stages_p50_us"].items())
        s += f"; send {fmt(h.get('send_p50_us'))}"
    for who, states in (("Python", lat.get("by_cpu_state")), ("C", (h or {}).get("by_cpu_state"))):
        if states:
            s += f"\n    {who} p50 us by CPU state: " + ", ".join(
                f"{k} {fmt(states[k]['p50'])} ({states[k]['count']})" for k in ("fast", "slow", "mixed"))
    if r.get("send_phases_us"):
        s += "\n    send phases p50 us: " + " ".join(f"{k} {fmt(v['p50'])}" for k, v in r["send_phases_us"].items())
    t = r.get("target")
    if t:
        s += f"\n    target {t['metric']} {t['value']:.3g} (limit {t['limit']:g}): {t['verdict']}"
    return s


def fmt(v):
    return "-" if v is None else f"{v:.1f}"


if __name__ == "__main__":
    sys.exit(main())
