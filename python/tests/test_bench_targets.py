"""The target runner's plumbing (python/bench/targets.py): CPU sets, the binding both sides get,
the scenario it writes for the C side, and its refusal to measure without a GPU."""
import json
import os
import subprocess
import sys

import pytest

import cuipc

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")
sys.path.insert(0, BENCH)
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
        with pytest.raises(ValueError, match="4 CPUs wanted"):
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


@pytest.mark.skipif(cuipc.gpu_count() > 0, reason="the GPU case measures for minutes")
def test_nothing_measured_without_a_gpu(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(BENCH, "targets.py"), "--out", str(tmp_path / "t.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 77 and "no GPU" in r.stderr
    assert not (tmp_path / "t.json").exists()
