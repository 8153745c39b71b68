#!/bin/sh
# Smoke test of cuipc-bench: the CPU families run briefly (not a timing), exit 0, and the JSON
# written through --benchmark_out parses and holds every CPU family without an error.
# Usage: bench_smoke.sh CUIPC_BENCH OUT_JSON PYTHON3
set -eu
bench=$1 out=$2 python=$3
rm -f "$out"
"$bench" --benchmark_min_time=0.001 --benchmark_filter='^(allocator|sync|codec|ring|msgpath)/' \
    --benchmark_out="$out" --benchmark_out_format=json
"$python" - "$out" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
families = {r["name"].split("/")[0] for r in runs}
bad = [r["name"] for r in runs if r.get("error_occurred")]
assert families == {"allocator", "sync", "codec", "ring", "msgpath"}, families
assert not bad, bad
print(f"{len(runs)} runs parsed, families {sorted(families)}")
PY
