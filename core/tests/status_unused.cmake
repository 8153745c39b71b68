# A status dropped without cuipc_status_ignore() does not compile under -Werror (CUIPC_WARN_UNUSED
# on the public functions and on the internal ones of core/src/*.h, every one of which carries it);
# the same call passed to cuipc_status_ignore() does.
cuipc_add_test(test_status_unused
  COMMAND ${CMAKE_COMMAND} -DCC=${CMAKE_C_COMPILER} -DINC=${PROJECT_SOURCE_DIR}/core/include
          -DPRIVATE_INC=${PROJECT_SOURCE_DIR}/core/src
          -DSRC=${CMAKE_CURRENT_SOURCE_DIR}/compile/status_unused.c
          -DOUT=${CMAKE_CURRENT_BINARY_DIR}/status_unused.o
          -P ${CMAKE_CURRENT_SOURCE_DIR}/compile/status_unused_check.cmake
  TIMEOUT 30)
