# cuipc-harness on bad input: exit code 2 and a message naming the file and the problem,
# before anything runs; and a run that must fail: exit code 1 and the failure named. Usage and
# version of every command; an unwritable results directory; the log lines of a run (one per
# scenario as it ends, a heartbeat, the totals) and its summary table.
# Args: HARNESS, SRC (this directory), WORK, SCENARIOS (the repository's), BENCH (cuipc-bench,
# when built).
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
# What run would refuse, validate refuses: the ring size, a message larger than the ring, CPU
# lists of an explicit binding that name no CPU.
expect_exit(2 "ring_not_power_of_two.json:7:[0-9]+: \\$\\.pool\\.ring_bytes: 5000 is not a ring size"
            validate ${SRC}/bad/ring_not_power_of_two.json)
expect_exit(2 "\\$\\.pool\\.ring_bytes: a message of 28 tensor\\(s\\) encodes to 2051 bytes and a ring of 4 KiB carries 2040 at most: 8 KiB is enough"
            validate ${SRC}/bad/message_larger_than_ring.json)
expect_exit(2 "\\$\\.binding\\.consumer_cpus\\[0\\]: 'abc' is not a CPU list"
            validate ${SRC}/bad/binding_cpus_abc.json)
expect_exit(2 "\\$\\.binding\\.consumer_cpus\\[0\\]: '-1' is not a CPU list"
            validate ${SRC}/bad/binding_cpus_minus_1.json)
expect_exit(2 "\\$\\.binding\\.consumer_cpus\\[0\\]: '4000000000': CPU 4000000000 does not exist"
            validate ${SRC}/bad/binding_cpus_4000000000.json)
# run refuses bad input before running anything, and writes no results.
expect_exit(2 "unknown key" run --out ${WORK} ${SRC}/bad/unknown_key.json)
if(EXISTS ${WORK})
  message(FATAL_ERROR "run with a bad scenario wrote ${WORK}")
endif()
expect_exit(2 "unknown command" frobnicate)
expect_exit(2 "usage" run)
expect_exit(2 "usage" compare onlyone)
expect_exit(0 "usage" --help)

# --help and --version of every command, before any file is read.
expect_exit(0 "^cuipc-harness [0-9]+\\.[0-9]+\\.[0-9]+" --version)
foreach(cmd run validate compare plan)
  expect_exit(0 "usage: cuipc-harness ${cmd}" ${cmd} --help)
  expect_exit(0 "^cuipc-harness [0-9]+\\.[0-9]+\\.[0-9]+" ${cmd} --version)
endforeach()
execute_process(COMMAND ${HARNESS} --version OUTPUT_VARIABLE version OUTPUT_STRIP_TRAILING_WHITESPACE)
string(REPLACE "cuipc-harness " "" version "${version}")
if(BENCH)
  execute_process(COMMAND ${BENCH} --version RESULT_VARIABLE rc OUTPUT_VARIABLE out TIMEOUT 30)
  if(NOT rc EQUAL 0 OR NOT out STREQUAL "cuipc-bench ${version}\n")
    message(FATAL_ERROR "cuipc-bench --version: exit ${rc}, '${out}' (expected cuipc-bench ${version})")
  endif()
endif()

# An unwritable results directory: refused (exit 2, saying why) before any scenario runs.
file(MAKE_DIRECTORY ${WORK})
file(WRITE ${WORK}/a_file "")
expect_exit(2 "results directory: mkdir ${WORK}/a_file/out: Not a directory"
            run --no-progress --out ${WORK}/a_file/out ${SRC}/fixtures/runs/held_buffer_leak.json)
execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT uid STREQUAL "0") # root writes anywhere
  file(MAKE_DIRECTORY ${WORK}/read_only)
  file(CHMOD ${WORK}/read_only PERMISSIONS OWNER_READ OWNER_EXECUTE)
  expect_exit(2 "cannot write in ${WORK}/read_only: Permission denied"
              run --no-progress --out ${WORK}/read_only ${SRC}/fixtures/runs/held_buffer_leak.json)
  file(CHMOD ${WORK}/read_only PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE)
endif()

# The log of a run without a terminal: one line per scenario as it ends, a heartbeat while the
# 2-second positive control runs, the summary with its columns in line whatever the name's
# length and the control's leak shown as expected, the totals, and the version in the results.
set(long a_scenario_name_as_long_as_the_parser_allows_it_to_be_0123456)
execute_process(COMMAND ${HARNESS} run --heartbeat 0.5 --out ${WORK}/log
                        ${SRC}/fixtures/runs/${long}.json ${SCENARIOS}/smoke/leak_control_host.json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
foreach(want "\\[1/2\\] ${long} passed [0-9.]+ s\n" "\\[2/2\\] smoke_leak_control_host passed [0-9.]+ s\n"
             "smoke_leak_control_host: running [0-9] s of 2 s, [0-9]+ messages sent\n")
  if(NOT err MATCHES "${want}")
    message(FATAL_ERROR "run log lacks '${want}':\n${err}")
  endif()
endforeach()
if(NOT rc EQUAL 0 OR NOT out MATCHES "totals: 2 passed, 0 failed, 0 skipped\nresults: ${WORK}/log\n")
  message(FATAL_ERROR "run: exit ${rc}, totals or results line missing:\n${out}\n${err}")
endif()
string(REGEX MATCHALL "[^\n]+\n" lines "${out}")
list(GET lines 0 head)
string(FIND "${head}" "status" status_at)
string(FIND "${head}" "leak" leak_at)
foreach(row 1 2)
  list(GET lines ${row} line)
  string(SUBSTRING "${line}" ${status_at} 7 status)
  if(NOT status STREQUAL "passed ")
    message(FATAL_ERROR "summary columns out of line (status at ${status_at}):\n${out}")
  endif()
endforeach()
list(GET lines 2 control)
string(SUBSTRING "${control}" ${leak_at} 15 leak)
if(NOT leak STREQUAL "leak (expected)")
  message(FATAL_ERROR "the positive control's leak column says '${leak}':\n${out}")
endif()
file(READ ${WORK}/log/${long}.json res)
string(JSON recorded GET "${res}" environment harness_version)
if(NOT recorded STREQUAL version)
  message(FATAL_ERROR "results carry harness_version '${recorded}', the binary says '${version}'")
endif()
# An explicit binding that cannot be applied (a CPU this host lacks) fails the run, naming it.
expect_exit(1 "binding_not_applicable failed"
            run --no-progress --out ${WORK}/binding ${SRC}/fixtures/runs/binding_not_applicable.json)
file(READ ${WORK}/binding/binding_not_applicable.json res)
string(JSON failures GET "${res}" failures)
if(NOT failures MATCHES "consumer 0: explicit CPU binding to '8191' not applied")
  message(FATAL_ERROR "the unapplied binding is not among the failures: ${failures}")
endif()
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
expect_exit(2 "run.cpu_gauge.*applies to an open loop only" validate ${SRC}/bad/cpu_gauge_closed.json)
# run.cpu_gauge: the latency split by CPU state, every timed sample (of both consumers) in exactly
# one part, each walked on both sides.
expect_exit(0 "open_loop_cpu_gauge +passed"
            run --no-progress --out ${WORK}/gauge ${SRC}/fixtures/runs/open_loop_cpu_gauge.json)
file(READ ${WORK}/gauge/open_loop_cpu_gauge.json res)
string(JSON all GET "${res}" latency_us count)
string(JSON fastest GET "${res}" latency_us by_cpu_state fastest_walk_us)
string(JSON ungauged GET "${res}" latency_us by_cpu_state ungauged)
set(parts 0)
foreach(state fast slow mixed)
  string(JSON n GET "${res}" latency_us by_cpu_state ${state} count)
  math(EXPR parts "${parts} + ${n}")
endforeach()
if(NOT all EQUAL 560 OR NOT parts EQUAL all OR NOT ungauged EQUAL 0 OR NOT fastest GREATER 0)
  message(FATAL_ERROR "cpu_gauge: ${all} samples (560 expected), ${parts} in the parts, "
                      "${ungauged} ungauged, fastest walk ${fastest} us")
endif()
