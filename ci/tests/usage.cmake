# The ci/ scripts: --help prints the script's usage and --version the tree's version (that of
# the binaries) without starting anything; unknown arguments and stage names are errors; the
# stage runner of ci/test and ci/gpu-suite runs every stage after a failure and reports them all.
# Args: CI (the ci/ directory), HARNESS (cuipc-harness, for its version), WORK.
# The scripts say the tree's version now; the binaries the one they were built at (a commit in
# between moves the +g<commit> part): both start with the project version.
execute_process(COMMAND ${CMAKE_COMMAND} -DSRC=${CI}/.. -P ${CI}/../cmake/version.cmake
                OUTPUT_VARIABLE version OUTPUT_STRIP_TRAILING_WHITESPACE)
string(REGEX MATCH "^[0-9]+\\.[0-9]+\\.[0-9]+" project_version "${version}")
execute_process(COMMAND ${HARNESS} --version OUTPUT_VARIABLE built OUTPUT_STRIP_TRAILING_WHITESPACE)
string(FIND "${built}" "cuipc-harness ${project_version}" at)
if(NOT project_version OR NOT at EQUAL 0)
  message(FATAL_ERROR "versions: the tree says '${version}', cuipc-harness '${built}'")
endif()

function(expect_exit code pattern)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                  TIMEOUT 20)
  if(NOT rc EQUAL ${code} OR NOT "${out}${err}" MATCHES "${pattern}")
    message(FATAL_ERROR "${ARGN}: exit ${rc} (expected ${code}), output should match '${pattern}':\n${out}\n${err}")
  endif()
endfunction()

foreach(script test run-suite gpu-suite install-deps fuzz-smoke validate-plan plot-plan plot-results
               python-test compare-power check-format)
  expect_exit(0 "[Uu]sage: ci/${script}" ${CI}/${script} --help)
  execute_process(COMMAND ${CI}/${script} --version RESULT_VARIABLE rc OUTPUT_VARIABLE out TIMEOUT 20)
  if(NOT rc EQUAL 0 OR NOT out STREQUAL "ci/${script} ${version}\n")
    message(FATAL_ERROR "ci/${script} --version: exit ${rc}, '${out}' (the tree's version: ${version})")
  endif()
endforeach()
expect_exit(2 "unknown argument '--bogus'" ${CI}/test --bogus)
expect_exit(2 "unknown stage 'bogus' \\(stages: tests harness baseline bench sanitize plan soak mps tp python\\)"
            ${CI}/gpu-suite tests bogus)
expect_exit(2 "unknown argument 'extra'" ${CI}/install-deps extra)
expect_exit(2 "one argument at most" ${CI}/install-deps test test)
expect_exit(2 "no arguments expected" ${CI}/check-format extra)

# A failing stage does not stop the ones after it; the report lists each and the totals.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
file(WRITE ${WORK}/stages.sh "set -euo pipefail
source ${CI}/stages.sh
first() { false; echo first went on after a failure; }
second() { echo second ran; }
ci_stage first first
ci_stage second second
ci_stage_report
echo not reached
")
expect_exit(1 "== first\n== second\nsecond ran\n== stages\nfirst +failed \\(exit 1\\), [0-9]+ s\nsecond +passed, [0-9]+ s\ntotals: 2 stages: 1 passed, 1 failed\n$"
            bash ${WORK}/stages.sh)
