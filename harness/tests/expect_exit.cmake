# expect_command_exit(CODE PATTERN COMMAND...): run COMMAND, fail unless it exits CODE and its
# output (stdout and stderr) matches PATTERN. Shared by the CLI tests run with cmake -P.
function(expect_command_exit code pattern)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                  TIMEOUT 120)
  if(NOT rc EQUAL ${code})
    message(FATAL_ERROR "${ARGN}: exit ${rc}, expected ${code}\n${out}\n${err}")
  endif()
  if(NOT "${out}${err}" MATCHES "${pattern}")
    message(FATAL_ERROR "${ARGN}: output lacks '${pattern}':\n${out}\n${err}")
  endif()
endfunction()
