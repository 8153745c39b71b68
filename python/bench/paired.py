"""Two implementations measured in interleaved pairs (pair i: the same case run once on each
side, one right after the other, so both see the same state of the machine): the shift of one
over the other with a distribution-free confidence interval, and a verdict against a limit
that is only given when the interval lies wholly on one side of it.

The shift is the Hodges-Lehmann estimate over the pairs' differences (the median of their
Walsh averages) and the interval the exact one of the Wilcoxon signed-rank test, valid for any
symmetric distribution of the differences, however wide its tails: one run's p50 on a shared
host can move by half between runs, and a single pair, or a difference of two single runs,
decides nothing.
"""
import math


def signed_rank_counts(n):
    """How many of the 2**n sign assignments of ranks 1..n give each rank sum T+ (0..n(n+1)/2)."""
    counts = [1] + [0] * (n * (n + 1) // 2)
    for k in range(1, n + 1):
        for t in range(len(counts) - 1, k - 1, -1):
            counts[t] += counts[t - k]
    return counts


def walsh_averages(diffs):
    n = len(diffs)
    return sorted((diffs[i] + diffs[j]) / 2 for i in range(n) for j in range(i, n))


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def shift_interval(diffs, confidence=0.95):
    """(estimate, low, high) of the shift the differences show; low and high are None when
    there are too few pairs for that confidence (5 pairs give at most 93.75 %, 6 give 96.9 %)."""
    n = len(diffs)
    if n == 0:
        return None, None, None
    walsh = walsh_averages(diffs)
    estimate = median(walsh)
    counts, total = signed_rank_counts(n), 2 ** n
    tail = (1 - confidence) / 2
    # k: the largest with P(T+ <= k - 1) <= tail; the interval runs from the k-th smallest Walsh
    # average to the k-th largest (k - 1 cut from each end).
    k, cumulative = 0, 0
    for t, c in enumerate(counts):
        if (cumulative + c) / total > tail:
            break
        cumulative += c
        k = t + 1
    if k == 0:
        return estimate, None, None
    return estimate, walsh[k - 1], walsh[len(walsh) - k]


def fewest_pairs(confidence):
    """The fewest pairs whose exact signed-rank interval exists at this confidence: n with
    2**-n <= (1 - confidence) / 2 (all n differences on one side is the least likely outcome)."""
    n = 1
    while 2.0 ** -n > (1 - confidence) / 2:
        n += 1
    return n


def verdict(low, high, limit, worse_above=True):
    """'met' when the whole interval is on the good side of the limit, 'missed' when it is
    wholly on the bad side, else 'undecided' (the pairs cannot tell)."""
    if low is None or high is None:
        return "undecided"
    if worse_above:
        return "met" if high <= limit else "missed" if low > limit else "undecided"
    return "met" if low >= limit else "missed" if high < limit else "undecided"


def pairs_to_decide(n, estimate, low, high, limit):
    """Roughly how many pairs an undecided comparison of n pairs would need to be decided: the
    interval's side that faces the limit narrows as 1/sqrt(pairs) while the spread of the
    differences stays as it is, so with the estimate where it is that side clears the limit at
    n * (its width / the estimate's distance to the limit)**2 pairs in all, at the same
    confidence (more looks planned ask a higher one of each, and so more pairs). At least n + 1:
    an interval that only touches the limit is undecided at n. None without an interval, or with
    the estimate on the limit itself (no count can be projected: only a moved estimate decides)."""
    if low is None or high is None or estimate is None or estimate == limit:
        return None
    width, distance = (estimate - low, estimate - limit) if estimate > limit else (high - estimate, limit - estimate)
    return max(n + 1, math.ceil(n * (width / distance) ** 2))


def compare_pairs(a, b, limit, ratio=False, confidence=0.95):
    """b against a, pair by pair: b - a (or b / a with ratio=True, judged on the logarithm so
    that 2x and 0.5x weigh the same). The limit bounds that difference (ratio: from below).
    pairs_to_decide: with the verdict undecided, pairs_to_decide's rough count, else None."""
    if len(a) != len(b):
        raise ValueError("pairs must have both sides")
    if ratio:
        if any(x <= 0 for x in a + b):
            raise ValueError("a ratio needs positive figures")
        diffs = [math.log(y / x) for x, y in zip(a, b)]
        est, lo, hi = shift_interval(diffs, confidence)
        to_decide = pairs_to_decide(len(a), est, lo, hi, math.log(limit))
        unlog = lambda v: None if v is None else math.exp(v)  # noqa: E731
        est, lo, hi = unlog(est), unlog(lo), unlog(hi)
    else:
        diffs = [y - x for x, y in zip(a, b)]
        est, lo, hi = shift_interval(diffs, confidence)
        to_decide = pairs_to_decide(len(a), est, lo, hi, limit)
    decided = verdict(lo, hi, limit, worse_above=not ratio)
    return {"pairs": len(a), "confidence": confidence, "estimate": est, "low": lo, "high": hi,
            "limit": limit, "median_a": median(a), "median_b": median(b), "verdict": decided,
            "pairs_to_decide": to_decide if decided == "undecided" else None}
