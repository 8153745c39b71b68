"""The target runner's plumbing (python/bench/targets.py): CPU sets, the binding both sides get,
the scenario it writes for the C side, and its refusal to measure without a GPU."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import cuipc

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")
sys.path.insert(0, BENCH)
import paired  # noqa: E402
import targets  # noqa: E402


def test_cpu_lists_round_trip():
    assert targets.cpu_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert targets.cpu_string([11, 0, 2, 1, 3, 8, 10]) == "0-3,8,10-11"
    assert targets.cpu_string(targets.cpu_list("5")) == "5"


def test_binding_choices():
    allowed = sorted(os.sched_getaffinity(0))
    assert targets.choose_binding("none", 2) is None
    local = targets.choose_binding("gpu-local", 3)
    assert len(local) == 3 and all(c == local[0] and set(c) <= set(allowed) for c in local)
    if len(allowed) >= 4:
        iso = targets.choose_binding("isolated", 2)
        assert all(len(c) == 2 for c in iso) and not set(iso[0]) & set(iso[1])
    else:
        with pytest.raises(ValueError, match="4 CPUs on cores of their own wanted"):
            targets.choose_binding("isolated", 2)
    one = str(allowed[0])
    assert targets.choose_binding(f"{one}/{one}", 2) == [[allowed[0]], [allowed[0]]]
    with pytest.raises(ValueError, match="2 CPU set"):
        targets.choose_binding(one, 2)
    with pytest.raises(ValueError, match="may not use"):
        targets.choose_binding(f"{one}/{max(allowed) + 1}", 2)


def test_the_c_side_is_bound_alike(tmp_path):
    path, name = targets.bound_scenario("pool_borrow", "4KiB", 1, "open", [[0, 1], [2, 3]], str(tmp_path))
    with open(path) as f:
        s = json.load(f)
    assert name == s["name"] == "lat_pool_4kib_c1_borrow"
    assert s["binding"] == {"policy": "explicit", "producer_cpus": "0-1", "consumer_cpus": ["2-3"]}
    assert s["run"]["rate_hz"] == 500 and s["consumers"]["unwrap"] == "borrow"  # the matrix's own
    path, _ = targets.bound_scenario("default", "4KiB", 1, "open", None, str(tmp_path))
    with open(path) as f:
        assert json.load(f)["binding"] == {"policy": "none"}
    # Longer runs (--messages): the count changes, the warm-up and rate are the matrix's.
    path, _ = targets.bound_scenario("default", "4KiB", 1, "open", None, str(tmp_path), messages=5000)
    with open(path) as f:
        run = json.load(f)["run"]
    assert (run["iterations"], run["warmup_iterations"], run["rate_hz"]) == (5000, 20, 500)


@pytest.mark.skipif(cuipc.gpu_count() > 0, reason="the GPU case measures for minutes")
def test_nothing_measured_without_a_gpu(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(BENCH, "targets.py"), "--out", str(tmp_path / "t.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 77 and "no GPU" in r.stderr
    assert not (tmp_path / "t.json").exists()


def test_isolated_gives_each_process_whole_cores(monkeypatch):
    """Two hardware threads of a core never go to two processes; the quietest cores first."""
    monkeypatch.setattr(targets.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(targets, "gpu_local_cpus", lambda device=0: None)
    irqs = {0: 900, 1: 900, 2: 5, 3: 5, 4: 50, 5: 50, 6: 10, 7: 10}
    monkeypatch.setattr(targets, "interrupts_per_cpu", lambda: irqs)
    monkeypatch.setattr(targets, "core_of", lambda cpu: ("0", str(cpu // 2)))  # siblings 2k, 2k+1
    assert targets.choose_binding("isolated", 2) == [[2, 3], [6, 7]]
    monkeypatch.setattr(targets, "core_of", lambda cpu: ("0", str(cpu)))  # no SMT: two cores each
    assert targets.choose_binding("isolated", 2) == [[2, 3], [6, 7]]
    assert targets.choose_binding("isolated", 3) == [[2, 3], [6, 7], [4, 5]]
    with pytest.raises(ValueError, match="cores of their own"):
        targets.choose_binding("isolated", 5)


def test_only_positive_finite_figures_are_judged():
    assert targets.usable(23.5) and targets.usable(1800)
    for bad in (0, -1.0, float("nan"), float("inf"), None, "12"):
        assert not targets.usable(bad)


def test_nothing_matched_is_bad_input_not_met(monkeypatch, tmp_path, capsys):
    """A --cases that matches no target measures nothing: exit 2, never 0 (every target met)."""
    monkeypatch.setattr(cuipc, "gpu_count", lambda: 1)
    monkeypatch.setattr(targets.bt, "environment", lambda: {"hostname": "test"})
    monkeypatch.setattr(targets, "one_target", lambda *a: pytest.fail("nothing should run"))
    monkeypatch.setattr(sys, "argv", ["targets.py", "--out", str(tmp_path / "t.json"), "--harness",
                                      sys.executable, "--cases", "pool_borow", "--pin", "none"])
    assert targets.main() == 2
    assert "nothing measured" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["targets.py", "--out", str(tmp_path / "t.json"), "--repeat", "0"])
    assert targets.main() == 2


def test_a_run_says_how_busy_the_machine_was(monkeypatch):
    """Per CPU busy and steal shares over the run, from two /proc/stat reads around it."""
    reads = iter([{0: (100, 0, 1000), 1: (0, 0, 1000)}, {0: (150, 10, 1100), 1: (100, 50, 1100)}])
    monkeypatch.setattr(targets, "cpu_times", lambda: next(reads))
    monkeypatch.setattr(targets, "running_others", lambda: ["42 spinner"])
    result, load = targets.machine_during(lambda: "ran")
    assert result == "ran"
    assert load == {"busy_pct": {"0": 50.0, "1": 100.0}, "steal_pct": {"0": 10.0, "1": 50.0},
                    "running_at_start": ["42 spinner"]}


def test_a_spinning_process_is_seen_running(tmp_path):
    """The real /proc: every CPU's counters add up, and another process spinning is listed."""
    times = targets.cpu_times()
    assert times and all(0 <= busy <= total and 0 <= steal <= total for busy, steal, total in times.values())
    spinner = subprocess.Popen([sys.executable, "-c", "import sys\nprint(flush=True)\nwhile True: pass"],
                               stdout=subprocess.PIPE)
    try:
        spinner.stdout.readline()  # it has started its loop
        seen = [targets.running_others() for _ in range(20)]
        assert any(f"{spinner.pid} python" in " ".join(s) for s in seen), seen[-1]
        assert all(not s or str(os.getpid()) not in [x.split()[0] for x in s] for s in seen)
    finally:
        spinner.kill()
        spinner.wait()


def test_a_negative_gap_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "argv", ["targets.py", "--out", str(tmp_path / "t.json"), "--gap", "-1"])
    assert targets.main() == 2
    assert "--gap" in capsys.readouterr().err


def test_the_python_side_runs_in_a_process_of_its_own(tmp_path):
    """As the C side: a fresh process per run, bound as asked, its figures read back."""
    pytest.importorskip("torch")
    cpus = sorted(os.sched_getaffinity(0))[:1]
    r, why = targets.run_py("default", "4KiB", 1, "open", "cpu", [cpus, cpus], str(tmp_path), 120, messages=40,
                            cpu_gauge=True)
    assert why is None and r["producer_pid"] != os.getpid()
    assert r["validated"] > 0 and r["latency_us"]["p50"] > 0
    # Gauged: every timed message in exactly one CPU state, each with both walks.
    by = r["latency_us"]["by_cpu_state"]
    assert by["ungauged"] == 0 and by["fastest_walk_us"] > 0
    assert sum(by[s]["count"] for s in ("fast", "slow", "mixed")) == r["latency_us"]["count"] > 0
    # Where the threads ran, not what was asked: each ended on the one CPU it was bound to.
    assert r["producer_thread"]["cpu"] == cpus[0] and r["consumer_threads"][0]["cpu"] == cpus[0]
    r, why = targets.run_py("default", "4KiB", 1, "open", "cuda-not-a-device", None, str(tmp_path), 120)
    assert r is None and "invalid choice" in why


def test_process_speed_times_fresh_processes(tmp_path):
    """Each process's medians come back, with and without address-space randomisation."""
    tool = os.path.join(BENCH, "process_speed.py")
    out = tmp_path / "speed.json"
    fixed = shutil.which("setarch") and subprocess.run(["setarch", "-R", "true"]).returncode == 0
    extra = ["--no-aslr-too"] if fixed else []
    p = subprocess.run([sys.executable, tool, "--processes", "2", "--iterations", "16", "--gap-us", "100",
                        "--out", str(out)] + extra, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert len(d["processes"]) == 2 * (2 if extra else 1)
    assert all(r["python_step_ns"] > 0 for r in d["processes"])
    assert [r["aslr"] for r in d["processes"]][:2] == ([True, False] if extra else [True, True])
    assert d["median_python_step_ns"] > 0 and isinstance(d["slowed"], list)
    sys.path.insert(0, BENCH)
    import process_speed
    steps = [{"python_step_ns": v} for v in (1500, 1400, 1600, 6400, 1500)]
    assert process_speed.slowed(steps) == (1500, [3])
    bad = subprocess.run([sys.executable, tool, "--iterations", "2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--iterations" in bad.stderr


def test_each_cpu_is_timed_in_turn_and_the_mask_put_back(tmp_path):
    """--cpus-over-time: every CPU named gets a figure in every round, the caller's CPU mask is
    as it was, and the summary reads the slices against the fastest one."""
    import process_speed
    allowed = os.sched_getaffinity(0)
    one = [min(allowed)]
    cpus, rounds = process_speed.cpus_over_time(0.05, 2, one)
    assert cpus == one and rounds and all(set(r) == set(one) and r[one[0]] > 0 for r in rounds)
    assert os.sched_getaffinity(0) == allowed
    # CPU 1 at twice CPU 0's time in the second round: a slow slice, a spread of 2 in that round.
    s = process_speed.cpu_summary([0, 1], [{0: 1000, 1: 1100}, {0: 1000, 1: 2000}])
    assert s["best_step_ns"] == 1000 and s["slices"] == 4 and s["slow_slices"] == 1
    assert s["per_cpu"][1] == {"fastest": 1.1, "median": 1.55, "slowest": 2.0, "slow_slices": 1}
    assert s["round_spread_max"] == 2.0 and s["round_spread_median"] == 1.55
    tool = os.path.join(BENCH, "process_speed.py")
    out = tmp_path / "cpus.json"
    p = subprocess.run([sys.executable, tool, "--cpus-over-time", "0.1", "--slice-ms", "5", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["kind"] == "cuipc-cpu-speed-over-time" and d["cpus"] == sorted(allowed)
    assert all(len(r) == len(allowed) and min(r) > 0 for r in d["rounds_ns"])
    assert "slices over 1.3x the fastest" in p.stdout
    bad = subprocess.run([sys.executable, tool, "--cpus-over-time", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--cpus-over-time" in bad.stderr


def test_a_two_speed_host_is_said_and_a_steady_one_is_not():
    steady = {"before": {"slow_slices": 1, "slices": 32, "slow_factor": 1.3}}
    assert targets.two_speeds(steady) is None and targets.two_speeds({}) is None
    two = dict(steady, after={"slow_slices": 16, "slices": 32, "slow_factor": 1.3})
    assert "17 of 64 probe slices over 1.3x the fastest" in targets.two_speeds(two)


def test_the_host_is_probed_before_and_after_the_targets(monkeypatch, tmp_path, capsys):
    """The probe's summaries land in the results, over the CPUs the runs are bound to; a bad
    --host-probe is refused, and 0 probes nothing."""
    monkeypatch.setattr(cuipc, "gpu_count", lambda: 1)
    monkeypatch.setattr(targets.bt, "environment", lambda: {"hostname": "test"})
    probed = []

    def fake_probe(seconds, slice_ms, cpus):
        probed.append(cpus)
        return cpus, [{c: 1000 * (1 + i % 2) for i, c in enumerate(cpus)}]
    monkeypatch.setattr(targets.process_speed, "cpus_over_time", fake_probe)
    monkeypatch.setattr(targets, "one_target", lambda *a: {
        "variant": "pool_borrow", "size": "4KiB", "consumers": 1, "loop": "open", "metric": "p50_over_c_us",
        "dropped": [], "comparison": {"pairs": 0, "verdict": "undecided"}})
    one = min(os.sched_getaffinity(0))
    argv = ["targets.py", "--out", str(tmp_path / "t.json"), "--harness", sys.executable,
            "--cases", "^pool_borrow/4KiB/", "--pin", f"{one}/{one}"]
    monkeypatch.setattr(sys, "argv", argv)
    assert targets.main() == 3
    d = json.loads((tmp_path / "t.json").read_text())
    assert probed == [[one], [one]] and set(d["host_cpu_speed"]) == {"before", "after"}
    assert d["schema_version"] == 8 and d["host_cpu_speed"]["before"]["seconds"] == 4
    assert f"host CPUs {one}, before: 0 of 1 slices" in capsys.readouterr().out
    probed.clear()
    monkeypatch.setattr(sys, "argv", argv + ["--host-probe", "0"])
    assert targets.main() == 3 and probed == []
    assert json.loads((tmp_path / "t.json").read_text())["host_cpu_speed"] == {}
    monkeypatch.setattr(sys, "argv", argv + ["--host-probe", "-1"])
    assert targets.main() == 2 and "--host-probe" in capsys.readouterr().err


def test_a_process_spinning_in_another_thread_is_seen_running():
    """A process whose main thread sleeps while another of its threads spins is running."""
    code = ("import threading, time\n"
            "def spin():\n    while True: pass\n"
            "threading.Thread(target=spin, daemon=True).start()\nprint(flush=True)\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        p.stdout.readline()
        seen = [targets.running_others() for _ in range(20)]
        assert any(x.startswith(f"{p.pid}/") and not x.startswith(f"{p.pid}/{p.pid} ") for s in seen for x in s)
    finally:
        p.kill()
        p.wait()


def test_a_run_past_its_time_is_killed_with_all_it_started(tmp_path):
    """The timeout takes the whole session: a grandchild left spinning would run beside the
    next run."""
    marker = tmp_path / "grandchild"
    code = ("import subprocess, sys, time\n"
            f"g = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
            f"open({str(marker)!r}, 'w').write(str(g.pid))\n"
            "print('started', flush=True)\ntime.sleep(60)\n")
    rc, out = targets.run_process([sys.executable, "-c", code], 3)
    assert rc is None and "started" in out
    grandchild = int(marker.read_text())
    try:
        with open(f"/proc/{grandchild}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z"), state
    rc, out = targets.run_process([sys.executable, "-c", "print('done')"], 30)
    assert rc == 0 and out.strip() == "done"


def test_a_profiled_run_never_misses():
    """The profiled send adds to the Python figures: met stands, missed reads undecided."""
    missed = {"pairs": 9, "estimate": 30.0, "low": 25.0, "high": 35.0, "limit": 20.0, "verdict": "missed"}
    assert targets.judged_as_run(missed, False) == missed
    judged = targets.judged_as_run(missed, True)
    assert judged["verdict"] == "undecided" and "profiled" in judged["why"] and missed["verdict"] == "missed"
    met = dict(missed, verdict="met", low=5.0, high=15.0)
    assert targets.judged_as_run(met, True) == met


def test_a_profiled_target_run_is_judged_as_profiled(monkeypatch, tmp_path):
    """one_target hands --profile to the judging: the same pairs, missed plain, undecided profiled."""
    for profile, verdict in ((False, "missed"), (True, "undecided")):
        fake_pairs(monkeypatch, [60.0] * 6)
        t = sequential(tmp_path, None, profile=profile)
        assert t["comparison"]["verdict"] == verdict and len(t["pairs"]) == 6
        assert ("profiled" in t["comparison"].get("why", "")) == profile
        assert targets.describe(t).endswith(verdict + (f" ({t['comparison']['why']})" if profile else ""))


def fake_pairs(monkeypatch, python_p50s, c_fails=(), c_states=None, python_states=None):
    """run_c gives 20 us every time (or fails at the calls numbered in c_fails), run_py the given
    p50s in turn; c_states and python_states, the runs' latency_us.by_cpu_state in turn."""
    c = {"p50_us": 20.0, "status": "passed"}
    figures = iter(python_p50s)
    calls = iter(range(1000))
    c_by, py_by = iter(c_states or []), iter(python_states or [])

    def c_run(*a):
        return (None, "the harness failed") if next(calls) in c_fails else \
            (dict(c, by_cpu_state=next(c_by, None)), None)

    def py(*a, **kw):
        return ({"latency_us": {"p50": next(figures), "by_cpu_state": next(py_by, None)},
                 "stages_us": {"deliver": {"p50": 1.0}},
                 "send_us": {"p50": 10.0}, "validated": 10, "validation_failures": 0}, None)
    monkeypatch.setattr(targets, "run_c", c_run)
    monkeypatch.setattr(targets, "run_py", py)


def sequential(tmp_path, max_pairs, repeat=6, profile=False, cpu_gauge=False):
    import argparse
    args = argparse.Namespace(repeat=repeat, max_pairs=max_pairs, look_every=4, gap=0.0, confidence=0.95,
                              profile=profile, harness="h", run_timeout=10, device="cuda", cpu_gauge=cpu_gauge)
    return targets.one_target(args, "pool_borrow", "4KiB", 1, "open", None, str(tmp_path))


def test_the_looks_are_planned_and_share_the_error():
    assert targets.look_points(9, 25, 4, 0.95) == [9, 13, 17, 21, 25]
    # a last step shorter than 4 joins the final look
    assert targets.look_points(9, 26, 4, 0.95) == [9, 13, 17, 21, 26]
    # 6 pairs give no interval at 98.3 % (three looks) or 97.5 % (two): that look is not planned
    assert targets.look_points(6, 14, 4, 0.95) == [10, 14]
    assert targets.look_points(7, 7, 4, 0.95) == [7] and targets.look_points(6, 8, 4, 0.95) == [8]
    assert abs(targets.look_confidence(0.95, 3) - (1 - 0.05 / 3)) < 1e-12
    assert targets.look_confidence(0.95, 1) == 0.95
    assert [paired.fewest_pairs(c) for c in (0.95, 0.975, 1 - 0.05 / 3, 0.9875)] == [6, 7, 7, 8]


def test_a_clear_target_is_decided_at_the_first_look(monkeypatch, tmp_path):
    """+40 us every pair: judged at 10 pairs (two looks, 97.5 % each) and missed there; the
    other 4 pairs are never run."""
    fake_pairs(monkeypatch, [60.0] * 14)
    t = sequential(tmp_path, 14)
    c = t["comparison"]
    assert len(t["pairs"]) == 10 and c["verdict"] == "missed"
    assert [(k["pairs_run"], k["verdict"]) for k in c["looks"]] == [(10, "missed")]
    assert c["looks_planned"] == [10, 14] and abs(c["confidence"] - 0.975) < 1e-12
    assert c["overall_confidence"] == 0.95 and "look 1 of 2" in targets.describe(t)
    assert "[97.5 %:" in targets.describe(t)


def test_a_target_at_its_limit_gets_every_pair_and_stays_undecided(monkeypatch, tmp_path):
    """Python 10 or 30 us over C, in turn: the shift straddles the 20 us limit at every look."""
    fake_pairs(monkeypatch, [30.0, 50.0] * 7)
    t = sequential(tmp_path, 14)
    assert len(t["pairs"]) == 14 and t["comparison"]["verdict"] == "undecided"
    assert [k["pairs_run"] for k in t["comparison"]["looks"]] == [10, 14]
    assert t["comparison"]["pairs_to_decide"] is None  # estimate +20.0: on the limit
    assert "no count can be projected" in targets.describe(t)


UNDECIDED_ABOVE = [24.0, 58.0, 34.0, 48.0, 41.0, 44.0]  # Python 4 to 38 us over C (20 each)


def test_an_undecided_target_says_what_would_decide_it(monkeypatch, tmp_path):
    """Undecided at 6 pairs, with a rough count that would decide it."""
    fake_pairs(monkeypatch, UNDECIDED_ABOVE)
    t = sequential(tmp_path, None)
    c = t["comparison"]
    assert c["verdict"] == "undecided" and c["pairs_to_decide"] > 6
    assert f"about {c['pairs_to_decide']:,} pairs in all would decide it at this spread and 95 %" \
        in targets.describe(t)


def test_no_count_where_more_pairs_cannot_decide(monkeypatch, tmp_path):
    """Profiled with the estimate over the limit, more pairs could only reach a miss, which
    reads undecided; a target with a failed run gets no more pairs at all."""
    fake_pairs(monkeypatch, UNDECIDED_ABOVE)
    t = sequential(tmp_path, None, profile=True)
    assert t["comparison"]["pairs_to_decide"] is None and "would decide" not in targets.describe(t)
    fake_pairs(monkeypatch, UNDECIDED_ABOVE * 2, c_fails={8})  # after 8 kept pairs: an interval
    t = sequential(tmp_path, 12, repeat=12)
    assert t["dropped"] and "would decide" not in targets.describe(t)


def test_a_failed_run_ends_the_target(monkeypatch, tmp_path):
    """A dropped pair makes the target a failed run: no more pairs after it."""
    fake_pairs(monkeypatch, [60.0] * 14, c_fails={2})
    t = sequential(tmp_path, 14)
    assert len(t["dropped"]) == 1 and len(t["pairs"]) == 2
    assert [(k["pairs_run"], k["pairs"]) for k in t["comparison"]["looks"]] == [(3, 2)]


def test_a_profiled_clear_miss_stops_undecided(monkeypatch, tmp_path):
    """Profiled, the miss reads undecided, but more pairs would not lift that: it stops there."""
    fake_pairs(monkeypatch, [60.0] * 14)
    t = sequential(tmp_path, 14, profile=True)
    c = t["comparison"]
    assert len(t["pairs"]) == 10 and c["verdict"] == "undecided" and "profiled" in c["why"]
    assert c["looks"][-1]["verdict"] == "undecided" and "profiled" in c["looks"][-1]["why"]


def test_one_look_is_the_plain_interval(monkeypatch, tmp_path):
    """Without --max-pairs: one look at --repeat pairs, at the full confidence."""
    fake_pairs(monkeypatch, [60.0] * 6)
    t = sequential(tmp_path, None)
    c = t["comparison"]
    assert len(t["pairs"]) == 6 and c["verdict"] == "missed" and c["confidence"] == 0.95
    assert c["looks_planned"] == [6] and "look" not in targets.describe(t)


@pytest.mark.parametrize("argv, what", [(["--repeat", "9", "--max-pairs", "7"], "--max-pairs at least"),
                                        (["--look-every", "2"], "--look-every needs --max-pairs"),
                                        (["--messages", "99"], "--messages at least 100")])
def test_looks_asked_for_wrongly_are_refused(monkeypatch, tmp_path, capsys, argv, what):
    monkeypatch.setattr(sys, "argv", ["targets.py", "--out", str(tmp_path / "t.json"), *argv])
    assert targets.main() == 2
    assert what in capsys.readouterr().err


def state_split(fast, slow, n_fast=400, n_slow=400):
    """A run's latency_us.by_cpu_state with these p50s and counts."""
    part = lambda p50, n: {"count": n, "p50": p50 if n else None}  # noqa: E731
    return {"fastest_walk_us": 8.0, "slow_above": 1.5, "ungauged": 0, "fast": part(fast, n_fast),
            "slow": part(slow, n_slow), "mixed": part(30.0, 100)}


def test_each_cpu_state_is_judged_on_its_own_messages(monkeypatch, tmp_path):
    """The whole-run p50s straddle the limit, but within each state the pairs agree: fast
    messages Python +8 us (met), slow ones +40 (missed); a pair whose run had under
    STATE_MIN_MESSAGES slow messages gives the slow state no figure."""
    n = 8
    c_states = [state_split(22.0 + k % 2, 35.0 + k % 3) for k in range(n)]
    py_states = [state_split(30.0 + k % 2, 75.0 + k % 3, n_slow=400 if k else 10) for k in range(n)]
    fake_pairs(monkeypatch, [30.0, 50.0] * 4, c_states=c_states, python_states=py_states)
    t = sequential(tmp_path, None, repeat=n, cpu_gauge=True)
    assert t["comparison"]["verdict"] == "undecided"
    fast, slow = t["by_cpu_state"]["fast"], t["by_cpu_state"]["slow"]
    assert fast["pairs"] == 8 and fast["verdict"] == "met" and abs(fast["estimate"] - 8.0) < 1e-9
    assert slow["pairs"] == 7 and slow["verdict"] == "missed" and abs(slow["estimate"] - 40.0) < 1e-9
    assert t["pairs"][0]["python_by_cpu_state"]["slow"] is None
    text = targets.describe(t)
    assert "CPUs fast (both sides' gauge sets in the L2): Python p50 over C's +8.0 us" in text
    assert text.rstrip().endswith("missed")


def test_no_state_figure_without_the_gauge_or_its_messages(monkeypatch, tmp_path):
    """Not gauged: no by_cpu_state at all; gauged but no pair with enough messages of a state:
    that state undecided, said so."""
    fake_pairs(monkeypatch, [60.0] * 6)
    assert "by_cpu_state" not in sequential(tmp_path, None)
    few = [state_split(22.0, 35.0, n_fast=10) for _ in range(6)]
    fake_pairs(monkeypatch, [60.0] * 6, c_states=few, python_states=few)
    t = sequential(tmp_path, None, cpu_gauge=True)
    assert t["by_cpu_state"]["fast"] == {"pairs": 0, "confidence": 0.95, "limit": 20.0, "verdict": "undecided"}
    assert t["by_cpu_state"]["slow"]["pairs"] == 6
    assert f"no pair had {targets.STATE_MIN_MESSAGES} messages of it on both sides" in targets.describe(t)


def test_the_c_side_gauges_only_open_loops(tmp_path):
    path, _ = targets.bound_scenario("pool_borrow", "4KiB", 1, "open", None, str(tmp_path), cpu_gauge=True)
    with open(path) as f:
        assert json.load(f)["run"]["cpu_gauge"] is True
    path, _ = targets.bound_scenario("pool_borrow", "64MiB", 1, "closed", None, str(tmp_path), cpu_gauge=True)
    with open(path) as f:
        assert "cpu_gauge" not in json.load(f)["run"]


def test_the_python_split_follows_the_harness_rule():
    """bench_transport.by_cpu_state: the fastest walk (the resident one included) sets the
    line; both walks at most 1.5x of it fast, both over slow, else mixed; a missing walk is
    ungauged and in no part."""
    import bench_transport as bt
    us = 1000
    samples = [(10 * us, 8000, 11000), (12 * us, 12000, 8500),  # fast (12000 = 1.5x: not over)
               (50 * us, 40000, 30000),                           # slow
               (30 * us, 8000, 40000), (31 * us, 40000, 9000),    # mixed
               (99 * us, 0, 9000)]                                # ungauged
    by = bt.by_cpu_state(samples, resident_ns=8000, slow_above=1.5)
    assert by["fastest_walk_us"] == 8.0 and by["ungauged"] == 1
    assert [by[s]["count"] for s in ("fast", "slow", "mixed")] == [2, 1, 2]
    assert by["fast"]["p50"] == 10.0 and by["slow"]["p50"] == 50.0
    # Without the resident walk, the fastest of the samples' walks sets the line.
    assert bt.by_cpu_state(samples[2:3], slow_above=1.5)["fast"]["count"] == 1
