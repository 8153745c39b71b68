#!/usr/bin/env python3
"""The Python package's targets, decided: each target case run in interleaved pairs (the C
harness's scenario, then bench_transport.py's Python case, or the other way round, alternating),
each run a fresh process of its own on either side, every process of both sides bound to the
same CPUs, and a verdict from the pairs' confidence interval (paired.py): met when the whole
interval is within the limit, missed when it is wholly beyond it, else undecided.

Looks: --repeat pairs are judged first; with --max-pairs M, an undecided target gets
--look-every more pairs and is judged again, up to M pairs. Each look's interval is then at the
confidence 1 - (1 - C) / K, K the number of looks planned (Bonferroni), so the chance that any
look calls a wrong verdict stays within 1 - C whichever look decides. A look at fewer pairs than
that confidence needs for an interval at all (6 at 95 %, 7 at 97.5-98.3 %, 8 at 98.75-99.2 %)
is not planned, and so takes no share. A target far from its limit can be decided at the first
look; one near it gets the pairs it needs, up to M. A target that lost a pair (a failed run) is
a failed run whatever more pairs say: it gets no more. An undecided target's line says roughly
how many pairs in all would decide it at its spread and at that look's confidence, the estimate
staying where it is: a guide for the next --max-pairs, not a promise (more looks planned ask a
higher confidence of each, and so somewhat more pairs).

Targets (ring channel, the C harness's consumer pattern, one consumer unless --consumers):
  4 KiB, open loop, pool_borrow / pool_copy / default: Python p50 at most 20 us over C's
  64 MiB, closed loop, pool_borrow: Python throughput at least 95 % of C's

Both sides run the matrix scenario's own figures (rate, messages, warm-up, pool, sync and
validation cadence), and every process of both is bound alike: the C scenario gets an explicit
binding to the CPU sets the Python processes are bound to. --pin gpu-local (the default, the
harness's own choice): every process on the CPUs near the GPU; none: nothing bound (the C
scenario's policy "none"); isolated: each process on two GPU-local CPUs of its own, the ones
that have taken the fewest interrupts; or a set per process, producer first, e.g. 2/4 or
0-3/4-7. One CPU
for the producer is a trap: the pool's recycler thread, woken by every release, then takes the
CPU from the spinning sender (on an H200 host the Python send p50 went 28-49 -> 66-77 us and its
p90 to 1.1 ms, bench_calls.py --pin 1).

Within each CPU state (open loops; --no-cpu-gauge leaves it out): both sides run with the CPU
gauge (run.cpu_gauge, bench_transport --cpu-gauge: a walk over a fixed 64 KiB set, one pass a
message, timed by the producer before each message and by the consumer after each timed one).
A message is fast where both walks found the set in the L2, slow where both did not. The H200
VM's slow state is a neighbour evicting the cores' L2 (run 42), and a run's whole p50 says
mostly which state its messages met. So each target is also judged on the pairs' p50s of their
fast messages, and of their slow ones: the pairs where both runs had at least 50 messages of
that state, one look at --confidence after the pairs the main judgement ran.

The host itself: before the first target and after the last, --host-probe seconds of a
pure-Python step timed on each CPU the runs use, one at a time, with nothing of ours running
(process_speed.py --cpus-over-time), kept under host_cpu_speed. Where over a tenth of those
slices took over 1.3 times the fastest one, the summary says the host ran its CPUs at more than
one speed: on the H200 VM each virtual CPU spent about half its time with a Python step at half
speed, switching every second or so (run 37), because something evicted its core's L2 (run 42:
loops that stay in the L1 kept their speed). A 4 KiB p50 in microseconds there moves with the
state its CPUs were in, and more pairs narrow that slowly: the CPU gauge above compares like
with like.

Exit: 0 every target met, 1 a case failed or a target
missed, 3 none missed but some undecided, 77 no GPU.

    python3 python/bench/targets.py --harness build-gpu/harness/cuipc-harness --out targets.json
"""
import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_transport as bt  # noqa: E402
import paired  # noqa: E402
import process_speed  # noqa: E402

SCHEMA_VERSION = 8  # 8: by_cpu_state (the open-loop targets judged within each CPU state)
# A run's part of one CPU state under this many timed messages gives that state no figure.
STATE_MIN_MESSAGES = 50
TARGET_CASES = [  # (variant, size, loop)
    ("pool_borrow", "4KiB", "open"),
    ("pool_copy", "4KiB", "open"),
    ("default", "4KiB", "open"),
    ("pool_borrow", "64MiB", "closed"),
]
cpu_list, cpu_string = bt.cpu_list, bt.cpu_string


def gpu_local_cpus(device=0):
    """The CPUs the host lists as local to the GPU, or None when it does not say."""
    try:
        import torch
        p = torch.cuda.get_device_properties(device)
        bus = f"{p.pci_domain_id:04x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0"
        with open(f"/sys/bus/pci/devices/{bus}/local_cpulist") as f:
            return set(cpu_list(f.read()))
    except Exception:  # no torch, no CUDA, an older torch, no sysfs: no locality known
        return None


def core_of(cpu):
    """(package, core) of a CPU; the CPU alone where sysfs does not say."""
    try:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        with open(base + "physical_package_id") as f, open(base + "core_id") as g:
            return (f.read().strip(), g.read().strip())
    except OSError:
        return ("cpu", str(cpu))


def interrupts_per_cpu():
    """Interrupts each CPU has taken since boot (/proc/interrupts), {} where unreadable."""
    try:
        with open("/proc/interrupts") as f:
            cpus = [int(c[3:]) for c in f.readline().split() if c.startswith("CPU")]
            totals = dict.fromkeys(cpus, 0)
            for line in f:
                fields = line.split()[1:1 + len(cpus)]
                for c, v in zip(cpus, fields):
                    if v.isdigit():
                        totals[c] += int(v)
            return totals
    except (OSError, ValueError):
        return {}


def cpu_times():
    """Per CPU since boot (/proc/stat, in clock ticks): {cpu: (busy, steal, total)}; {} where
    unreadable. Busy is user, nice, system, irq and softirq time; steal, the time the hypervisor
    gave this CPU's turn to something else."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, *v = line.split()
                if not name.startswith("cpu") or name == "cpu":
                    continue
                v = [int(x) for x in v[:8]] + [0] * (8 - len(v[:8]))
                user, nice, system, idle, iowait, irq, softirq, steal = v
                out[int(name[3:])] = (user + nice + system + irq + softirq, steal, sum(v))
    except (OSError, ValueError):
        return {}
    return out


def running_others():
    """The other processes' threads on a CPU now (state R), any thread of a process, not only
    its main one: 'pid/tid comm' each."""
    me, out = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == me:
            continue
        try:
            tids = [t for t in os.listdir(f"/proc/{pid}/task") if t.isdigit()]
        except OSError:
            continue  # gone since the listing
        for tid in tids:
            stat = bt.proc_stat(f"/proc/{pid}/task/{tid}/stat")
            if stat and stat[1][:1] == ["R"]:
                out.append(f"{pid}/{tid} {stat[0]}")
    return out


def run_process(cmd, timeout_s):
    """cmd run to its end in a session of its own; past timeout_s every process of that session
    is killed (what it forked or spawned too, which would otherwise run on beside the next run):
    (returncode, stdout + stderr), or (None, the output so far) on timeout."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout_s)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        deadline = time.monotonic() + 10
        while True:
            left = session_members(p.pid)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        out, _ = p.communicate()
        return None, out


def session_members(sid):
    """The live processes of session sid (zombies left out: they run nothing)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        stat = bt.proc_stat(f"/proc/{pid}/stat")
        if stat and len(stat[1]) > 3 and stat[1][3] == str(sid) and stat[1][0] != "Z":
            out.append(int(pid))
    return out


def machine_during(run):
    """run() and how busy the machine was while it ran: per CPU busy and steal % of the time,
    and which threads of other processes were running when it started (a run measured beside
    another process's work, or on CPUs the hypervisor lent elsewhere, says so)."""
    others, t0 = running_others(), cpu_times()
    result = run()
    t1 = cpu_times()
    load = {"busy_pct": {}, "steal_pct": {}, "running_at_start": others}
    for cpu, (b1, s1, n1) in sorted(t1.items()):
        b0, s0, n0 = t0.get(cpu, (b1, s1, n1))
        if n1 > n0:
            load["busy_pct"][str(cpu)] = round(100 * (b1 - b0) / (n1 - n0), 1)
            load["steal_pct"][str(cpu)] = round(100 * (s1 - s0) / (n1 - n0), 1)
    return result, load


def choose_binding(pin, n):
    """The CPU set of each of the n processes (producer first), or None for no binding."""
    allowed = set(os.sched_getaffinity(0))
    if pin == "none":
        return None
    local = gpu_local_cpus() if pin in ("gpu-local", "isolated") else None
    pool = sorted(allowed & local) if local and allowed & local else sorted(allowed)
    if pin == "gpu-local":
        return [pool] * n
    if pin == "isolated":
        irqs = interrupts_per_cpu()
        # Whole cores, the least interrupted first: a core's hardware threads go to one process.
        cores = {}
        for cpu in pool:
            cores.setdefault(core_of(cpu), []).append(cpu)
        quiet = sorted(cores.values(), key=lambda cs: (sum(irqs.get(c, 0) for c in cs), cs))
        sets = []
        for cs in quiet:
            if len(sets) == n and len(sets[-1]) >= 2:
                break
            if not sets or len(sets[-1]) >= 2:
                sets.append([])
            sets[-1].extend(cs)
        if len(sets) < n or len(sets[-1]) < 2:
            raise ValueError(f"--pin isolated: {2 * n} CPUs on cores of their own wanted, {len(pool)} usable")
        return [sorted(c) for c in sets]
    sets = [cpu_list(part) for part in pin.split("/")]
    if len(sets) != n or not all(sets):
        raise ValueError(f"--pin {pin!r}: {n} CPU set(s) wanted, producer first, separated by '/'")
    if any(set(c) - allowed for c in sets):
        raise ValueError(f"--pin {pin!r}: names CPUs this process may not use ({cpu_string(allowed)})")
    return sets


def bound_scenario(variant, size, n, loop, cpus, directory, cpu_gauge=False, messages=None):
    """The matrix scenario bound as cpus says (a set per process, producer first; None: no
    binding), with run.cpu_gauge on where cpu_gauge and the loop is open, and `messages`
    messages where given (the warm-up and rate kept): its path."""
    stem = bt.VARIANTS[variant][2].format(size=size.lower(), n=n)
    src = os.path.join(bt.MATRIX, f"{'lat' if loop == 'open' else 'tput'}_{stem}.json")
    with open(src) as f:
        s = json.load(f)
    if cpus:
        s["binding"] = {"policy": "explicit", "producer_cpus": cpu_string(cpus[0]),
                        "consumer_cpus": [cpu_string(c) for c in cpus[1:]]}
    else:
        s["binding"] = {"policy": "none"}
    if cpu_gauge and loop == "open":
        s["run"]["cpu_gauge"] = True
    if messages:
        s["run"]["iterations"] = messages
    path = os.path.join(directory, os.path.basename(src))
    with open(path, "w") as f:
        json.dump(s, f, indent=1)
    return path, s["name"]


def run_c(harness, scenario_path, name, loop, out_dir, timeout_s):
    """One run of the C scenario: its figures, or (None, why) when it cannot be judged."""
    cmd = [harness, "run", "--no-progress", "--require-gpu", "--out", out_dir, scenario_path]
    rc, output = run_process(cmd, timeout_s)
    if rc is None:
        return None, f"the C run took over {timeout_s} s"
    h = bt.harness_figures(out_dir, name)
    if rc != 0 or not h or h.get("status") != "passed":
        tail = output.strip().splitlines()[-3:]
        return None, f"the C run did not pass (exit {rc}): {' | '.join(tail)}"
    if not usable(figure_c(h, loop)):
        return None, f"the C run gave no usable figure ({figure_c(h, loop)!r})"
    return h, None


def usable(x):
    """A figure a pair can be judged on: a positive finite number."""
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def figure_c(h, loop):
    return h["p50_us"] if loop == "open" else sum(g for g in h["per_consumer_gbps"] if g)


def figure_py(r, loop):
    return r["latency_us"]["p50"] if loop == "open" else r["throughput"]["aggregate_gbps"]


def run_py(variant, size, n, loop, device, cpus, out_dir, timeout_s, profile=False, messages=None,
           cpu_gauge=False):
    """One run of the Python case in a process of its own, as the C side's (a long-lived
    producer process is not what the C side measures): its figures, or (None, why)."""
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"py-{variant}-{size}-c{n}-{loop}.json")
    with contextlib.suppress(FileNotFoundError):
        os.remove(out)  # an earlier run's figures are never read as this one's
    cmd = [sys.executable, os.path.abspath(bt.__file__), "--out", out, "--variants", variant, "--sizes", size,
           "--consumers", str(n), "--channels", "ring", "--loops", loop, "--patterns", "harness",
           "--device", device]
    cmd += ["--cpus", "/".join(cpu_string(c) for c in cpus)] if cpus else []
    cmd += ["--profile"] if profile else []
    cmd += ["--messages", str(messages)] if messages else []
    cmd += ["--cpu-gauge"] if cpu_gauge else []
    rc, output = run_process(cmd, timeout_s)
    if rc is None:
        return None, f"the Python run took over {timeout_s} s"
    try:
        with open(out) as f:
            r = json.load(f)["results"][0]
    except (OSError, ValueError, KeyError, IndexError):
        tail = output.strip().splitlines()[-3:]
        return None, f"the Python run wrote no result (exit {rc}): {' | '.join(tail)}"
    if "error" in r:  # one failed run drops its pair, the others still count
        return None, r["error"]
    if r["validation_failures"] or not r["validated"]:
        return None, f"the Python run validated {r['validated']} message(s), {r['validation_failures']} bad"
    if not usable(figure_py(r, loop)):
        return None, f"the Python run gave no usable figure ({figure_py(r, loop)!r})"
    return r, None


def look_confidence(confidence, looks):
    """Each look's confidence, so that all of them together err at most 1 - confidence."""
    return 1 - (1 - confidence) / looks


def look_points(first, most, every, confidence):
    """The pair counts at which a target is judged: first, then every `every` more, and most (a
    last step shorter than `every` joins the final look); of those, only the counts that can give
    an interval at the looks' shared confidence, most always kept."""
    most = max(first, most)
    candidates = [p for p in range(first, most, every) if most - p >= every] + [most]
    for k in range(len(candidates), 0, -1):
        usable = [p for p in candidates if p >= paired.fewest_pairs(look_confidence(confidence, k))]
        if len(usable) >= k:
            return usable[:k - 1] + [most]
    return [most]  # no count can: one look, undecided for want of an interval


def one_target(args, variant, size, n, loop, cpus, work):
    metric, limit = bt.target_of(variant, size, loop)
    ratio = metric == "gbps_of_c"  # throughput, Python / C, judged from below
    gauged = getattr(args, "cpu_gauge", False) and loop == "open"
    messages = getattr(args, "messages", None)  # both sides run the same count
    scen, name = bound_scenario(variant, size, n, loop, cpus, work, cpu_gauge=gauged,
                                messages=messages)
    pairs, dropped, looks = [], [], []
    points = look_points(args.repeat, args.max_pairs or args.repeat, args.look_every or 4, args.confidence)
    each = look_confidence(args.confidence, len(points))

    def judge():
        return paired.compare_pairs([p["c"] for p in pairs], [p["python"] for p in pairs], limit,
                                    ratio=ratio, confidence=each)

    for i in range(points[-1]):
        c_first = i % 2 == 0  # alternate: neither side always runs on a machine the other warmed
        got, load = {}, {}
        for side in (("c", "py") if c_first else ("py", "c")):
            time.sleep(args.gap)
            if side == "c":
                got["c"], load["c"] = machine_during(lambda: run_c(
                    args.harness, scen, name, loop, os.path.join(work, f"{name}-{i}"), args.run_timeout))
            else:
                got["py"], load["py"] = machine_during(lambda: run_py(
                    variant, size, n, loop, args.device, cpus, os.path.join(work, f"{name}-{i}-py"),
                    args.run_timeout, args.profile, messages=messages, cpu_gauge=gauged))
        (h, c_why), (r, py_why) = got["c"], got["py"]
        if c_why or py_why:
            dropped.append({"pair": i, "why": c_why or py_why})
            print(f"  pair {i}: dropped: {c_why or py_why}", flush=True)
        else:
            pairs.append(one_pair(i, c_first, h, r, load, loop))
        if i + 1 in points or dropped:
            raw = judge()
            cmp = judged_as_run(raw, args.profile, worse_above=not ratio)
            looks.append({"pairs_run": i + 1, **{k: cmp[k] for k in ("pairs", "estimate", "low", "high", "verdict")},
                          **({"why": cmp["why"]} if "why" in cmp else {})})
            if len(points) > 1:
                print(f"  look {len(looks)} of {len(points)} after {i + 1} pairs ({len(pairs)} kept): "
                      f"{cmp['verdict']}", flush=True)
            # Decided (a profiled miss too: more pairs would not lift the rule), or failed: no more.
            if raw["verdict"] != "undecided" or dropped:
                break
    # The last look's judgement (the loop always ends on one), with what the looks were.
    cmp = dict(cmp, overall_confidence=args.confidence, looks_planned=points, looks=looks)
    t = {"variant": variant, "size": size, "consumers": n, "loop": loop, "channel": "ring",
         "pattern": "harness", "scenario": name, "metric": metric, "unit": "us" if loop == "open" else "GB/s",
         "pairs": pairs, "dropped": dropped, "comparison": cmp}
    if gauged:
        t["by_cpu_state"] = judged_by_cpu_state(pairs, limit, args.confidence, args.profile)
    return t


def state_figures(by):
    """{state: p50 in us, or None where the run's part had under STATE_MIN_MESSAGES messages}
    of a run's latency_us.by_cpu_state (None: the run was not gauged)."""
    if not by:
        return None
    return {s: by[s]["p50"] if by[s]["count"] >= STATE_MIN_MESSAGES and usable(by[s]["p50"]) else None
            for s in ("fast", "slow", "mixed")}


def judged_by_cpu_state(pairs, limit, confidence, profiled):
    """The p50 target judged again within each CPU state, fast (both sides' walks found the
    gauge's set in the L2) and slow (both did not): each pair's two runs compared on the p50 of
    their messages of that state, over the pairs where both runs had at least STATE_MIN_MESSAGES
    of them. One look, at the whole confidence, after the pairs the main judgement ran."""
    out = {}
    for state in ("fast", "slow"):
        kept = [(p["c_by_cpu_state"][state], p["python_by_cpu_state"][state]) for p in pairs
                if p.get("c_by_cpu_state") and p.get("python_by_cpu_state")
                and p["c_by_cpu_state"][state] is not None and p["python_by_cpu_state"][state] is not None]
        if not kept:
            out[state] = {"pairs": 0, "confidence": confidence, "limit": limit, "verdict": "undecided"}
            continue
        raw = paired.compare_pairs([c for c, _ in kept], [py for _, py in kept], limit, confidence=confidence)
        out[state] = judged_as_run(raw, profiled)
    return out


def one_pair(i, c_first, h, r, load, loop):
    """What a pair keeps of its two runs, and a line on it."""
    pair = {"pair": i, "order": "c-first" if c_first else "python-first",
            "c": figure_c(h, loop), "python": figure_py(r, loop),
            "c_stages_p50_us": h.get("stages_p50_us"), "c_send_p50_us": h.get("send_p50_us"),
            "python_stages_p50_us": {k: v["p50"] for k, v in r["stages_us"].items()},
            "python_send_p50_us": r["send_us"]["p50"], "python_producer_pid": r.get("producer_pid"),
            # the p50 of each CPU state's messages (run.cpu_gauge), None where too few
            "c_by_cpu_state": state_figures(h.get("by_cpu_state")),
            "python_by_cpu_state": state_figures(r["latency_us"].get("by_cpu_state")),
            "python_send_phases_p50_us": ({k: v["p50"] for k, v in r["send_phases_us"].items()}
                                          if r.get("send_phases_us") else None),
            # Whether a main thread was taken off its CPU while it spun, each side.
            "c_producer_thread": h.get("producer_thread"), "c_consumer_threads": h.get("consumer_threads"),
            "python_producer_thread": r.get("producer_thread"),
            "python_consumer_threads": r.get("consumer_threads"),
            "c_machine": load["c"], "python_machine": load["py"]}
    inv = lambda t: "-" if not t else t.get("involuntary_switches")  # noqa: E731
    print(f"  pair {i} ({pair['order']}): Python {pair['python']:.2f}, C {pair['c']:.2f}; producer's "
          f"involuntary switches Python {inv(pair['python_producer_thread'])}, "
          f"C {inv(pair['c_producer_thread'])}", flush=True)
    return pair


def judged_as_run(cmp, profiled, worse_above=True):
    """A profiled Python send does the plain send's work and more (its clock reads, its phase
    dict): such a run can show a target met, never missed; a missed one becomes undecided, and
    an undecided one whose estimate is on the missed side projects no pairs_to_decide (the
    count would only reach a miss, which reads undecided)."""
    if not profiled:
        return cmp
    if cmp["verdict"] == "missed":
        return dict(cmp, verdict="undecided", pairs_to_decide=None,
                    why="missed with the send profiled, which adds to the Python figures")
    est = cmp["estimate"]  # on the missed side: what an interval shrunk to it would call missed
    if cmp["verdict"] == "undecided" and est is not None and \
            paired.verdict(est, est, cmp["limit"], worse_above) == "missed":
        return dict(cmp, pairs_to_decide=None)
    return cmp


def describe(t):
    c = t["comparison"]
    head = f"target {t['variant']}/{t['size']}/c{t['consumers']}/{t['loop']}"
    if not c["pairs"]:
        return f"{head}: no pair ran: undecided"
    pct = f"{c['confidence'] * 100:.3g} %"
    if t["metric"] == "p50_over_c_us":
        fmt = lambda v: "-" if v is None else f"{v:+.1f} us"  # noqa: E731
        what = f"Python p50 over C's {fmt(c['estimate'])} [{pct}: {fmt(c['low'])}, {fmt(c['high'])}]"
        meds = f"medians Python {c['median_b']:.1f} us, C {c['median_a']:.1f} us; limit {fmt(c['limit'])}"
    else:
        fmt = lambda v: "-" if v is None else f"{v * 100:.1f} %"  # noqa: E731
        what = f"Python throughput {fmt(c['estimate'])} of C's [{pct}: {fmt(c['low'])}, {fmt(c['high'])}]"
        meds = (f"medians Python {c['median_b']:.1f} GB/s, C {c['median_a']:.1f} GB/s; "
                f"limit {fmt(c['limit'])}")
    why = f" ({c['why']})" if c.get("why") else ""
    planned = c.get("looks_planned") or [c["pairs"]]
    seq = (f", look {len(c['looks'])} of {len(planned)} ({c['overall_confidence'] * 100:g} % over all)"
           if len(planned) > 1 else "")
    more = "" if t["dropped"] else to_decide(c)  # a failed run gets no more pairs
    line = f"{head}: {what}, {c['pairs']} pairs{seq} ({meds}): {c['verdict']}{why}{more}"
    for state, s in (t.get("by_cpu_state") or {}).items():
        line += f"\n  {STATE_WORDS[state]}: " + (
            f"Python p50 over C's {fmt(s['estimate'])} [{s['confidence'] * 100:.3g} %: {fmt(s['low'])}, "
            f"{fmt(s['high'])}], {s['pairs']} pairs (medians Python {s['median_b']:.1f} us, C "
            f"{s['median_a']:.1f} us): {s['verdict']}" if s["pairs"] else
            f"no pair had {STATE_MIN_MESSAGES} messages of it on both sides: undecided")
    return line


STATE_WORDS = {"fast": "CPUs fast (both sides' gauge sets in the L2)",
               "slow": "CPUs slow (both sides' gauge sets evicted)"}


def to_decide(c):
    """What an undecided verdict would take: paired.pairs_to_decide's rough count, or that none
    can be projected with the estimate on the limit (nothing for a decided one, one with too few
    pairs for an interval, or a profiled one that more pairs could only show missed)."""
    if c["verdict"] != "undecided" or c.get("why") or c["low"] is None:
        return ""
    n = c.get("pairs_to_decide")
    if n is not None:
        return (f"; about {n:,} pairs in all would decide it at this spread and "
                f"{c['confidence'] * 100:.3g} %, the estimate staying where it is")
    if math.isclose(c["estimate"], c["limit"], rel_tol=1e-12, abs_tol=1e-12):
        return "; its estimate is on the limit: no count can be projected, only a moved estimate decides it"
    return ""


def host_probe(args, out, when, cpus):
    """process_speed's rounds over the CPUs the runs use, kept under host_cpu_speed[when]."""
    if not args.host_probe:
        return
    cpus, rounds = process_speed.cpus_over_time(args.host_probe, 20, cpus)
    s = process_speed.cpu_summary(cpus, rounds)
    out["host_cpu_speed"][when] = dict(s, seconds=args.host_probe, slice_ms=20, rounds=len(rounds))
    print(f"host CPUs {cpu_string(cpus)}, {when}: {s['slow_slices']} of {s['slices']} slices over "
          f"{s['slow_factor']:g}x the fastest ({s['best_step_ns'] / 1000:.2f} us a step); slowest CPU / "
          f"fastest within a round: median {s['round_spread_median']:.2f}", flush=True)


def two_speeds(probes, share=0.1):
    """A line when the host probe found over share of its slices slow, else None."""
    slow = sum(p["slow_slices"] for p in probes.values())
    slices = sum(p["slices"] for p in probes.values())
    if not slices or slow <= share * slices:
        return None
    return (f"the host ran its CPUs at more than one speed: {slow} of {slices} probe slices over "
            f"{next(iter(probes.values()))['slow_factor']:g}x the fastest, with nothing of ours "
            f"running; a p50 in microseconds moves with the state its CPUs were in (on the H200 VM "
            f"their L2 evicted, run 42), and the pairs spread with it: see the judgement within "
            f"each CPU state")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--harness", default="build-gpu/harness/cuipc-harness", help="the C harness binary")
    ap.add_argument("--repeat", type=int, default=7,
                    help="pairs per target before its first look (an interval needs at least 6 at 95 %%, "
                         "7 at 97.5-98.3 %%, 8 at 98.75-99.2 %%: see --max-pairs)")
    ap.add_argument("--max-pairs", type=int,
                    help="an undecided target gets more pairs, up to this many, judged again every "
                         "--look-every pairs, each look at a confidence that keeps --confidence over "
                         "all of them (default: --repeat, one look)")
    ap.add_argument("--look-every", type=int, help="with --max-pairs: pairs between two looks (default 4)")
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--consumers", default="1")
    ap.add_argument("--cases", help="only the targets whose variant/size/loop matches (re.search)")
    ap.add_argument("--pin", default="gpu-local",
                    help="gpu-local, none, isolated, or a CPU set per process, producer first: 2/4, "
                         "0-3/4-7")
    ap.add_argument("--device", choices=["cuda"], default="cuda")
    ap.add_argument("--gap", type=float, default=0.0,
                    help="seconds of rest before each run, either side (default 0)")
    ap.add_argument("--profile", action="store_true",
                    help="split the Python send by phase inside the extension (bench_transport --profile): "
                         "its clock reads and phase dict are in the Python send, so a target can then be "
                         "shown met, never missed (missed reads undecided)")
    ap.add_argument("--messages", type=int,
                    help="messages a run, both sides, instead of the scenario's (its warm-up and rate "
                         "kept). Longer runs did not narrow the pairs on the H200 VM: 5000-message "
                         "runs spread as widely as 1000-message ones (run 63), its CPU states lasting "
                         "longer than a run")
    ap.add_argument("--run-timeout", "--c-timeout", type=int, default=300,
                    help="seconds one run, either side, may take")
    ap.add_argument("--no-cpu-gauge", dest="cpu_gauge", action="store_false",
                    help="leave out the CPU gauge (run.cpu_gauge, bench_transport --cpu-gauge) from "
                         "the open-loop targets, and their judgement within each CPU state")
    ap.add_argument("--host-probe", type=float, default=4, metavar="S",
                    help="seconds, before the first target and after the last, of a pure-Python step "
                         "timed on each CPU the runs use, one at a time (process_speed.py "
                         "--cpus-over-time): whether the host ran its CPUs at one speed (default 4; "
                         "0: not timed)")
    args = ap.parse_args()
    if (args.repeat < 1 or not 0 < args.confidence < 1 or args.gap < 0 or args.host_probe < 0
            or (args.max_pairs is not None and args.max_pairs < args.repeat)
            or (args.messages is not None and args.messages < 100)):
        print("targets: --repeat must be at least 1, --max-pairs at least --repeat, --confidence lie in "
              "(0, 1), --gap and --host-probe be at least 0, and --messages at least 100",
              file=sys.stderr)
        return 2
    if args.look_every is not None and (args.max_pairs is None or args.look_every < 1):
        print("targets: --look-every needs --max-pairs, and must be at least 1", file=sys.stderr)
        return 2
    import re

    import cuipc
    if cuipc.gpu_count() == 0:
        print("targets: no GPU: nothing measured", file=sys.stderr)
        return 77
    if not os.access(args.harness, os.X_OK):
        print(f"targets: no C harness at {args.harness} (--harness)", file=sys.stderr)
        return 2
    harness_version = subprocess.run([args.harness, "--version"], capture_output=True, text=True,
                                     timeout=30).stdout.strip()
    out = {"schema_version": SCHEMA_VERSION, "kind": "cuipc-python-targets", "environment": bt.environment(),
           "harness_version": harness_version,
           "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "repeat": args.repeat,
           "max_pairs": args.max_pairs or args.repeat, "look_every": args.look_every or 4,
           "pin": args.pin, "gap_s": args.gap, "messages": args.messages, "python_process": "fresh", "profile": args.profile,
           "host_cpu_speed": {}, "targets": []}
    try:
        bindings = {n: choose_binding(args.pin, n + 1) for n in map(int, args.consumers.split(","))}
    except ValueError as e:
        print(f"targets: {e}", file=sys.stderr)
        return 2
    cases = [c for c in TARGET_CASES if not args.cases or re.search(args.cases, "/".join(c))]
    if not cases:
        print(f"targets: no target matches --cases {args.cases!r}: nothing measured", file=sys.stderr)
        return 2
    used = sorted({c for cpus in bindings.values() for s in (cpus or [os.sched_getaffinity(0)]) for c in s})
    worst = 0
    with tempfile.TemporaryDirectory(prefix="cuipc-targets-") as work:
        host_probe(args, out, "before", used)
        for n, cpus in bindings.items():
            for variant, size, loop in cases:
                shown = " / ".join(cpu_string(c) for c in cpus) if cpus else "unbound"
                print(f"{variant}/{size}/c{n}/{loop}, CPUs {shown}:", flush=True)
                t = one_target(args, variant, size, n, loop, cpus, work)
                t["cpus"] = cpus
                out["targets"].append(t)
                print(describe(t), flush=True)
                bt.write_json(args.out, out)
                v = t["comparison"]["verdict"]
                worst = max(worst, {"met": 0, "undecided": 1, "missed": 2}[v] if not t["dropped"] else 2)
        host_probe(args, out, "after", used)
    bt.write_json(args.out, out)
    print("\n".join(describe(t) for t in out["targets"]))
    two = two_speeds(out["host_cpu_speed"])
    if two:
        print(f"targets: {two}")
    if args.profile:
        print("targets: the Python send was split by phase (--profile): its clock reads are in its figures, "
              "so a target can be shown met, never missed")
    return {0: 0, 1: 3, 2: 1}[worst]


if __name__ == "__main__":
    sys.exit(main())
