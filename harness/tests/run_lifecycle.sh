#!/usr/bin/env bash
# cuipc-harness run over its lifetime: a run killed by SIGTERM leaves no run directory, a later
# run removes those of runs that died (and only those), an open loop with duration_s ends on
# time however low its rate, and run.timeout_s holds from the go. Args: HARNESS WORK.
set -u
HARNESS=$1 WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK/tmp"
export TMPDIR=$WORK/tmp
fail() { echo "FAIL: $*"; exit 1; }
scenario() { # name, run object
  printf '{"name": "%s", "mode": "default", "tensors": {"sizes": {"list": [4096]}},
  "consumers": {"count": 1}, "run": %s}\n' "$1" "$2" >"$WORK/$1.json"
}

# A dead run's directory (its owner is gone) and a live one's (ours).
sh -c 'exit 0' & dead=$!; wait $dead
mkdir -m 700 "$TMPDIR/cuipc-harness-dead00" "$TMPDIR/cuipc-harness-live00"
touch "$TMPDIR/cuipc-harness-dead00/producer.sock"
echo $dead >"$TMPDIR/cuipc-harness-dead00/owner.pid"
echo $$ >"$TMPDIR/cuipc-harness-live00/owner.pid"

# Open loop, 2 s, one message every 10 s: the run ends at 2 s (+2.5 s slack for start-up and
# drain), not when the second message would have been due.
scenario lifecycle_open_slow '{"duration_s": 2, "loop": "open", "rate_hz": 0.1}'
"$HARNESS" run --no-progress --out "$WORK/out" "$WORK/lifecycle_open_slow.json" >"$WORK/open.log" 2>&1 ||
  fail "open loop run: $(cat "$WORK/open.log")"
wall=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['supervisor']['wall_s'])" \
  "$WORK/out/lifecycle_open_slow.json")
python3 -c "import sys; sys.exit(0 if 2.0 <= float(sys.argv[1]) <= 4.5 else 1)" "$wall" ||
  fail "open loop with duration_s 2 ran $wall s"
echo "open loop, duration_s 2 at 0.1 Hz: supervisor wall $wall s"
[ -d "$TMPDIR/cuipc-harness-dead00" ] && fail "the dead run's directory was not swept"
[ -d "$TMPDIR/cuipc-harness-live00" ] || fail "a live run's directory was swept"
grep -q "removed 1 run directory" "$WORK/open.log" || fail "the sweep was not reported"

# run.timeout_s 2 against 30 s of sending: stopped 2 s after the go, and said so.
scenario lifecycle_timeout '{"duration_s": 30, "timeout_s": 2}'
"$HARNESS" run --no-progress --out "$WORK/out" "$WORK/lifecycle_timeout.json" >"$WORK/timeout.log" 2>&1 &&
  fail "a run past its timeout passed"
python3 - "$WORK/out/lifecycle_timeout.json" <<'PY' || fail "timeout not held"
import json, sys
r = json.load(open(sys.argv[1]))
sv = r["supervisor"]
assert sv["timed_out"] and sv["run_timeout_s"] == 2 and sv["run_timeout_from"] == "go", sv
assert "run timed out after 2.0 s from the go" in sv["message"], sv["message"]
# start-up (< 1 s here) + 2 s + the supervisor's grace before SIGKILL (5 s) at most
assert sv["wall_s"] <= 8.0, sv["wall_s"]
print("timeout_s 2: stopped, wall %.2f s" % sv["wall_s"])
PY

# SIGTERM in the middle of a run: children stopped, run directory removed, exit by the signal.
scenario lifecycle_long '{"duration_s": 60}'
"$HARNESS" run --no-progress --out "$WORK/out" "$WORK/lifecycle_long.json" >"$WORK/term.log" 2>&1 &
pid=$!
sleep 2
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] || fail "SIGTERM: exit $rc, expected 143"
left=$(ls "$TMPDIR" | grep -v live00 | grep cuipc- || true)
[ -z "$left" ] || fail "left after SIGTERM: $left"
echo "SIGTERM: exit $rc, nothing left in TMPDIR"
rm -rf "$TMPDIR/cuipc-harness-live00"
