"""The CPU gauge on this host: back-to-back walks, and walks 2 ms apart (as a 500 Hz open
loop's), on one CPU for S seconds; percentiles of each and the share over 1.5x the resident."""
import os, sys, time
cpu, secs = int(sys.argv[1]), float(sys.argv[2])
os.sched_setaffinity(0, {cpu})
import cuipc._cuipc as c
g = c._cpu_gauge_ns
res = c._cpu_gauge_resident_ns()
b = [g() for _ in range(3000)]
s, end = [], time.perf_counter() + secs
while time.perf_counter() < end:
    t = time.perf_counter_ns() + 2_000_000
    while time.perf_counter_ns() < t:
        pass
    s.append(g())
for name, v in (("back-to-back", b), ("2 ms apart", s)):
    v = sorted(v)
    q = lambda f: v[min(len(v) - 1, int(f * len(v)))]
    print(f"cpu {cpu} {name}: resident {res} n {len(v)} min {v[0]} p10 {q(.1)} p50 {q(.5)} p90 {q(.9)} "
          f"over 1.5x resident {sum(x > 1.5 * res for x in v) / len(v):.2f}")
