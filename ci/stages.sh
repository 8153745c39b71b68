# Sourced by ci/test and ci/gpu-suite: every stage runs whatever happened before it, and the
# log ends with each stage's result and a totals line; the script then fails if any stage did.
ci_stage_names=()
ci_stage_lines=()
ci_stage_failed=0

# ci_stage_record NAME EXIT_CODE SECONDS
ci_stage_record() {
  local verdict=passed
  if [[ $2 -ne 0 ]]; then
    verdict="failed (exit $2)"
    ci_stage_failed=$((ci_stage_failed + 1))
  fi
  ci_stage_names+=("$1")
  ci_stage_lines+=("$verdict, $3 s")
}

# ci_stage NAME COMMAND...: run COMMAND with errexit on (a subshell: its failure ends the stage,
# not the script) and record the outcome.
ci_stage() {
  local name=$1 t0=$SECONDS rc=0
  shift
  echo "== $name"
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  ci_stage_record "$name" "$rc" $((SECONDS - t0))
}

# Prints every stage's result and the totals; returns 1 when a stage failed.
ci_stage_report() {
  echo "== stages"
  local i width=0
  for i in "${!ci_stage_names[@]}"; do
    if ((${#ci_stage_names[i]} > width)); then width=${#ci_stage_names[i]}; fi
  done
  for i in "${!ci_stage_names[@]}"; do
    printf '%-*s %s\n' "$width" "${ci_stage_names[i]}" "${ci_stage_lines[i]}"
  done
  local n=${#ci_stage_names[@]}
  echo "totals: $n stages: $((n - ci_stage_failed)) passed, $ci_stage_failed failed"
  [[ $ci_stage_failed -eq 0 ]]
}
