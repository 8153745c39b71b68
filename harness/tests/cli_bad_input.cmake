# cuipc-harness on bad input: exit code 2 and a message naming the file and the problem,
# before anything runs; and a run that must fail: exit code 1 and the failure named.
# Args: HARNESS, SRC (this directory), WORK.
include(${CMAKE_CURRENT_LIST_DIR}/expect_exit.cmake)
function(expect_exit code pattern)
  expect_command_exit(${code} "${pattern}" ${HARNESS} ${ARGN})
endfunction()

file(REMOVE_RECURSE ${WORK})
expect_exit(2 "bad/unknown_key.json:5:[0-9]+: \\$\\.consumers\\.hold_ms: unknown key"
            validate ${SRC}/bad/unknown_key.json)
expect_exit(2 "\\$\\.consumers\\.count: 0 is out of range" validate ${SRC}/bad/zero_consumers.json)
expect_exit(2 "smaller than the largest tensor" validate ${SRC}/bad/pool_too_small.json)
expect_exit(2 "malformed.json:3:" validate ${SRC}/bad/malformed.json)
expect_exit(2 "cannot read" validate ${SRC}/bad/does_not_exist.json)
# run refuses bad input before running anything, and writes no results.
expect_exit(2 "unknown key" run --out ${WORK} ${SRC}/bad/unknown_key.json)
if(EXISTS ${WORK})
  message(FATAL_ERROR "run with a bad scenario wrote ${WORK}")
endif()
expect_exit(2 "unknown command" frobnicate)
expect_exit(2 "usage" run)
expect_exit(2 "usage" compare onlyone)
expect_exit(0 "usage" --help)
# A run whose producer keeps pool buffers it never sends nor frees fails, naming them.
expect_exit(1 "20 pool buffer\\(s\\) still held at the end"
            run --no-progress --out ${WORK}/held ${SRC}/fixtures/runs/held_buffer_leak.json)
# A fault whose message is never reached fails the run, saying so (consumer and producer side).
expect_exit(1 "fault kill_consumer did not fire: consumer 1 never received message 100000"
            run --no-progress --out ${WORK}/nofire ${SRC}/fixtures/runs/fault_never_fires_consumer.json)
expect_exit(1 "fault stale_release did not fire: the producer never reached message 100000"
            run --no-progress --out ${WORK}/nofire ${SRC}/fixtures/runs/fault_never_fires_producer.json)
foreach(side consumer producer)
  file(READ ${WORK}/nofire/fault_never_fires_${side}.json res)
  string(JSON reason GET "${res}" reason)
  string(JSON fired GET "${res}" faults fired)
  if(NOT reason MATCHES "^fault [a-z_]+ did not fire" OR fired)
    message(FATAL_ERROR "fault_never_fires_${side}: reason '${reason}', fired ${fired}")
  endif()
endforeach()
# The reason names the root cause: the consumer's crash, not the producer's SIGTERM after it.
expect_exit(1 "SIGSEGV"
            run --no-progress --out ${WORK}/cause ${SRC}/fixtures/runs/crash_consumer_cause_first.json)
file(READ ${WORK}/cause/crash_consumer_cause_first.json res)
string(JSON reason GET "${res}" reason)
if(NOT reason STREQUAL "consumer 0: killed by SIGSEGV")
  message(FATAL_ERROR "crash_consumer: reason '${reason}', expected the crash first")
endif()
# Roles that wrote no report were not measured: the leak verdict cannot be clean.
string(JSON verdict GET "${res}" leaks verdict)
string(JSON unmeasured GET "${res}" leaks unmeasured 0)
if(NOT verdict STREQUAL "not_measured" OR NOT unmeasured STREQUAL "producer 0: no report")
  message(FATAL_ERROR "crash_consumer: leak verdict ${verdict} (unmeasured: ${unmeasured})")
endif()
# An open loop that cannot keep its rate fails, naming both rates, unless it is an overload
# test; both carry the schedule in their results.
expect_exit(1 "open loop fell behind: offered 1000 Hz, sustained [0-9]+ Hz"
            run --no-progress --out ${WORK}/behind ${SRC}/fixtures/runs/open_loop_fell_behind.json)
expect_exit(0 "open_loop_overload +passed"
            run --no-progress --out ${WORK}/behind ${SRC}/fixtures/runs/open_loop_overload.json)
file(READ ${WORK}/behind/open_loop_overload.json res)
string(JSON behind GET "${res}" schedule fell_behind)
string(JSON scheduled GET "${res}" schedule scheduled)
if(NOT behind OR NOT scheduled EQUAL 1000)
  message(FATAL_ERROR "overload schedule: fell_behind ${behind}, scheduled ${scheduled}")
endif()
expect_exit(2 "overload applies to an open loop only" validate ${SRC}/bad/overload_closed.json)
