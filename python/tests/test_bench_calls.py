"""bench_calls.py on the CPU (numpy, default mode): every call timed, and with --faults counted;
first_copy.py: a fresh consumer's first message, on a GPU host."""
import json
import os
import subprocess
import sys

import cuipc

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")


def run_calls(tmp_path, *extra):
    out = tmp_path / "calls.json"
    r = subprocess.run([sys.executable, os.path.join(BENCH, "bench_calls.py"), "--rounds", "60",
                        "--json", str(out), *extra], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text()), r.stdout


def test_each_call_is_timed_and_its_faults_counted(tmp_path):
    got, text = run_calls(tmp_path, "--faults")
    assert got["schema_version"] == 3 and got["kind"] == "cuipc-python-calls"
    assert got["environment"]["cuipc_build"] == cuipc.build_version
    calls = {"send", "send_profiled", "recv", "unwrap", "tensor", "sync", "release", "del"}
    assert set(got["producer_us"]) | set(got["consumer_us"]) == calls
    assert all(v["p50"] > 0 for v in got["consumer_us"].values() if v)
    faults = got["faults_per_call"]
    assert set(faults) == calls and all(v >= 0 for v in faults.values())
    assert "faults a call" in text


def test_without_faults_nothing_is_counted(tmp_path):
    got, text = run_calls(tmp_path)
    assert got["faults_per_call"] is None and "faults a call" not in text


def test_both_torch_ways_alternate_or_are_refused(tmp_path):
    """--exchange both: each call timed apart for torch's exchange table and for the reads of its
    bindings; refused (77) where this torch has no table."""
    import pytest
    torch = pytest.importorskip("torch")
    import fake_torch_table  # the bench runs in a process of its own, without the tests' stand-in
    if not hasattr(torch.Tensor, "__dlpack_c_exchange_api__") or fake_torch_table.installed():
        r = subprocess.run([sys.executable, os.path.join(BENCH, "bench_calls.py"), "--rounds", "60",
                            "--torch", "--exchange", "both"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 77 and "exchange table is not in use" in r.stderr
        off, _ = run_calls(tmp_path, "--torch", "--exchange", "off")
        assert off["exchange"] == "off" and off["exchange_table"] is False
        pytest.skip(f"torch {torch.__version__} has no exchange table of its own: only the refusal "
                    "checked")
    got, _ = run_calls(tmp_path, "--torch", "--exchange", "both")
    assert got["exchange"] == "both" and got["exchange_table"] is True
    for way in (" exch", " reads"):
        assert got["producer_us"]["send" + way]["p50"] > 0
        assert got["consumer_us"]["unwrap" + way]["p50"] > 0
        assert got["send_phases_us"]["convert" + way]["p50"] > 0


def test_first_copy_needs_a_gpu_or_measures_one(tmp_path):
    """first_copy.py: on a host without a GPU it says so (77); with one, both ways measured."""
    import pytest
    out = tmp_path / "first.json"
    r = subprocess.run([sys.executable, os.path.join(BENCH, "first_copy.py"), "--processes", "1",
                        "--json", str(out)], capture_output=True, text=True, timeout=300)
    try:
        import torch
        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if cuipc.gpu_count() == 0 or not cuda:
        assert r.returncode == 77 and "needs a CUDA GPU" in r.stderr
        pytest.skip("no GPU or no torch with CUDA: the measurement runs on a GPU host")
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert got["schema_version"] == 2 and got["kind"] == "cuipc-first-copy"
    for way in ("without_prepare", "with_prepare"):
        (run,) = got["runs"][way]
        assert run["data_ok"] and run["us"] > 0 and run["faults"] >= 0
