# cmake -DCC=... -DINC=... -DSRC=... -DOUT=... -P status_unused_check.cmake
# -c, not -fsyntax-only: GCC checks unused results only when it compiles.
set(flags -std=c11 -c -o ${OUT} -Wall -Werror -I${INC} ${SRC})
execute_process(COMMAND ${CC} ${flags} RESULT_VARIABLE ignored_rc ERROR_VARIABLE ignored_err)
if(NOT ignored_rc EQUAL 0)
  message(FATAL_ERROR "cuipc_status_ignore() did not compile:\n${ignored_err}")
endif()
execute_process(COMMAND ${CC} -DDROP ${flags} RESULT_VARIABLE dropped_rc ERROR_VARIABLE dropped_err)
if(dropped_rc EQUAL 0)
  message(FATAL_ERROR "a dropped cuipc_status compiled: CUIPC_WARN_UNUSED is not in effect")
endif()
if(NOT dropped_err MATCHES "unused-result|warn_unused_result")
  message(FATAL_ERROR "a dropped cuipc_status failed for another reason:\n${dropped_err}")
endif()
