"""The paired comparison behind the benchmark's target verdicts (python/bench/paired.py): its
interval is the exact Wilcoxon one, covers the true shift as often as it says, and a verdict
needs the whole interval on one side of the limit."""
import math
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import paired  # noqa: E402


def test_signed_rank_null_distribution():
    assert paired.signed_rank_counts(3) == [1, 1, 1, 2, 1, 1, 1]
    for n in range(1, 12):
        counts = paired.signed_rank_counts(n)
        assert sum(counts) == 2 ** n
        assert counts == counts[::-1]  # symmetric about n(n+1)/4


def test_interval_is_the_tabled_one():
    # n = 7 at 95 %: the critical T+ is 2 (k = 3), so the interval runs from the 3rd smallest of
    # the 28 Walsh averages to the 3rd largest.
    diffs = [3.0, -1.0, 4.0, 1.5, 9.0, 2.0, 6.0]
    walsh = paired.walsh_averages(diffs)
    assert len(walsh) == 28
    est, lo, hi = paired.shift_interval(diffs, 0.95)
    assert (lo, hi) == (walsh[2], walsh[25])
    assert est == (walsh[13] + walsh[14]) / 2
    # n = 6 at 95 %: T+ <= 0 has probability 1/64 <= 0.025, T+ <= 1 has 2/64 > 0.025.
    est, lo, hi = paired.shift_interval(diffs[:6], 0.95)
    w6 = paired.walsh_averages(diffs[:6])
    assert (lo, hi) == (w6[0], w6[-1])


def test_too_few_pairs_decide_nothing():
    est, lo, hi = paired.shift_interval([1.0, 2.0, 3.0, 4.0, 5.0], 0.95)  # 2/32 > 0.05
    assert est == 3.0 and lo is None and hi is None
    r = paired.compare_pairs([10.0] * 5, [11.0] * 5, 20.0)
    assert r["verdict"] == "undecided"
    assert paired.compare_pairs([], [], 20.0)["verdict"] == "undecided"


@pytest.mark.parametrize("shift,verdict", [(5.0, "met"), (35.0, "missed"), (20.0, "undecided")])
def test_latency_verdict_needs_the_whole_interval(shift, verdict):
    rng = random.Random(7)
    c = [30.0 + rng.uniform(-10, 10) for _ in range(9)]
    py = [x + shift + rng.uniform(-3, 3) for x in c]
    r = paired.compare_pairs(c, py, 20.0)
    assert r["verdict"] == verdict, r
    assert r["low"] <= r["estimate"] <= r["high"]


def test_throughput_ratio_is_judged_from_below():
    c = [1800.0, 1750.0, 1820.0, 1790.0, 1760.0, 1810.0, 1780.0]
    assert paired.compare_pairs(c, [x * 1.01 for x in c], 0.95, ratio=True)["verdict"] == "met"
    assert paired.compare_pairs(c, [x * 0.80 for x in c], 0.95, ratio=True)["verdict"] == "missed"
    r = paired.compare_pairs(c, [x * (0.95 + 0.02 * (-1) ** i) for i, x in enumerate(c)], 0.95, ratio=True)
    assert r["verdict"] == "undecided"
    assert math.isclose(paired.compare_pairs(c, [2 * x for x in c], 0.5, ratio=True)["estimate"], 2.0)
    with pytest.raises(ValueError):
        paired.compare_pairs([1.0, 0.0], [1.0, 1.0], 0.95, ratio=True)


def test_pairs_to_decide_is_about_what_decides():
    """An undecided set of pairs, then the same differences repeated (so the spread and the
    estimate stay): short of the projected count they stay undecided, at it they decide."""
    rng = random.Random(3)
    diffs = [24.0 + rng.uniform(-14, 14) for _ in range(12)]
    r = paired.compare_pairs([0.0] * 12, diffs, 20.0)
    assert r["verdict"] == "undecided" and r["estimate"] > 20.0
    n = r["pairs_to_decide"]
    assert n == math.ceil(12 * ((r["estimate"] - r["low"]) / (r["estimate"] - 20.0)) ** 2) and n > 12

    def judged(k):
        return paired.compare_pairs([0.0] * 12 * k, diffs * k, 20.0)["verdict"]
    assert judged(math.ceil(n / 12)) == "missed"
    assert judged(math.ceil(n / 12) - 2) == "undecided"  # three quarters of it


def test_pairs_to_decide_for_a_throughput_ratio():
    """The same for Python / C throughput against 95 %, judged from below on the log ratio."""
    rng = random.Random(3)
    c = [1800.0 + rng.uniform(-40, 40) for _ in range(10)]
    py = [x * (0.935 + rng.uniform(-0.03, 0.03)) for x in c]
    r = paired.compare_pairs(c, py, 0.95, ratio=True)
    assert r["verdict"] == "undecided" and r["estimate"] < 0.95
    n = r["pairs_to_decide"]
    assert n == math.ceil(10 * ((math.log(r["high"]) - math.log(r["estimate"]))
                                / (math.log(0.95) - math.log(r["estimate"]))) ** 2)

    def judged(k):
        return paired.compare_pairs(c * k, py * k, 0.95, ratio=True)["verdict"]
    assert judged(math.ceil(n / 10)) == "missed"
    assert judged(math.ceil(n / 10) - 1) == "undecided"


def test_pairs_to_decide_only_where_more_pairs_can():
    c = [1800.0, 1750.0, 1820.0, 1790.0, 1760.0, 1810.0, 1780.0]
    assert paired.compare_pairs(c, [x * 1.01 for x in c], 0.95, ratio=True)["pairs_to_decide"] is None  # met
    assert paired.compare_pairs([10.0] * 5, [11.0] * 5, 20.0)["pairs_to_decide"] is None  # no interval
    # an interval that only touches the limit: undecided now, so one more pair at least
    assert paired.pairs_to_decide(6, 30.0, 20.0, 30.0, 20.0) == 7
    # the estimate on the limit itself: no count decides it
    assert paired.pairs_to_decide(9, 20.0, 12.0, 28.0, 20.0) is None
    assert paired.pairs_to_decide(9, 16.0, 12.0, 22.0, 20.0) == math.ceil(9 * (6 / 4) ** 2)


def test_interval_covers_the_true_shift_as_often_as_it_says():
    # Heavy-tailed (Laplace) run-to-run noise, 7 pairs: nominal coverage 1 - 2 * 3/128.
    rng = random.Random(11)
    trials, covered = 3000, 0
    for _ in range(trials):
        diffs = [4.0 + rng.choice((-1, 1)) * rng.expovariate(1 / 6) for _ in range(7)]
        _, lo, hi = paired.shift_interval(diffs, 0.95)
        covered += lo <= 4.0 <= hi
    assert abs(covered / trials - (1 - 6 / 128)) < 0.015, covered / trials
