# Planner predictions against real runs. Included from harness/CMakeLists.txt, it registers the
# tests; run with -P (script mode), it is the end-to-end check itself.
if(NOT CMAKE_SCRIPT_MODE_FILE)
  # The scenario key "workload": accepted, and refused with the key path when it conflicts.
  cuipc_harness_test(harness_scenario_workload_test SOURCES tests/scenario_workload_test.c)
  # ci/validate-plan on a tiny workload through a host pool (CPU, ~10 s).
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    cuipc_add_test(harness_validate_plan_cpu
      COMMAND ${CMAKE_COMMAND} -DHARNESS=$<TARGET_FILE:cuipc-harness>
              -DSCRIPT=${CMAKE_SOURCE_DIR}/ci/validate-plan
              -DWORK=${CMAKE_CURRENT_BINARY_DIR}/validate_plan
              -P ${CMAKE_CURRENT_LIST_FILE}
      TIMEOUT 60 LABELS harness)
  endif()
  return()
endif()

# ---- script mode. Args: HARNESS, SCRIPT, WORK.
# 3 s at 40 messages/s of 64-256 KiB tensors to 2 consumers holding 150-250 ms: ~8 chunks in
# flight, so 0.3 x the zero-full size is far too small, and 1.2 x must see no full event as long
# as the run keeps the planner's clock. The same with fill_us (zero-copy produce: each buffer is
# taken 100 ms before its data is ready) must need a larger pool, and is replayed through pool
# buffers.
#
# The real run has a real clock. On a loaded machine (a 2-core host running another CI) a
# consumer is descheduled and releases late, holding its chunks longer than the planner's model
# (holds run from receipt, as in a real consumer), and a pool 1.2 x the zero-full size then fills
# (seen: "predicted 0, measured 32 full events"). Bytes in flight are the arrival rate times the
# time held (Little's law), so 1.2 x absorbs holds stretched by 0.2 x their mean: a release up to
# (f - 1) x the mean hold late. Above f = 1, a run that released within that is judged (no full
# event), and one that released later did not run the workload the planner sized, so its full
# events are reported, not judged. Below the zero-full size, lateness only adds full events: judged
# always.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(tiny_spec [=["consumers": 2, "duration_s": 3, "seed": 5,
 "arrivals": {"kind": "poisson", "rate_per_s": 40},
 "bytes": {"kind": "uniform", "min": "64KiB", "max": "256KiB"},
 "hold_us": {"kind": "uniform", "min": 150000, "max": 250000}]=])
file(WRITE ${WORK}/tiny.json "{\"name\": \"tiny\", ${tiny_spec}}")
file(WRITE ${WORK}/tiny_fill.json "{\"name\": \"tiny_fill\", ${tiny_spec}, \"fill_us\": 100000}")

# Validate workload NAME at 0.3 and 1.2 x its zero-full size; sets found_<NAME> (bytes).
function(validate name)
  set(out ${WORK}/${name})
  execute_process(COMMAND ${SCRIPT} --memory host --harness ${HARNESS} --out ${out}
                          ${WORK}/${name}.json 0.3 1.2
                  RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE err TIMEOUT 55)
  message("${log}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ci/validate-plan ${name}: exit ${rc}\n${err}")
  endif()
  file(READ ${out}/validate.json doc)
  string(JSON n LENGTH "${doc}" rows)
  if(NOT n EQUAL 2)
    message(FATAL_ERROR "${name}: validate.json has ${n} rows, expected 2")
  endif()
  foreach(i 0 1)
    string(JSON fraction GET "${doc}" rows ${i} fraction)
    string(JSON predicted GET "${doc}" rows ${i} predicted full_events)
    string(JSON measured GET "${doc}" rows ${i} measured full_failures)
    string(JSON failed GET "${doc}" rows ${i} measured send_failures)
    string(JSON sent GET "${doc}" rows ${i} measured messages_sent)
    string(JSON attempted GET "${doc}" rows ${i} measured messages_attempted)
    string(JSON requests GET "${doc}" rows ${i} requests)
    string(JSON status GET "${doc}" rows ${i} run_status)
    if(NOT status STREQUAL "passed")
      message(FATAL_ERROR "${name} fraction ${fraction}: the harness run ${status}")
    endif()
    # Every request was tried once; each pool-full failure is one failed send (policy fail).
    math(EXPR total "${sent} + ${failed}")
    if(NOT attempted EQUAL requests OR NOT total EQUAL requests OR NOT failed EQUAL measured)
      message(FATAL_ERROR "${name} fraction ${fraction}: ${requests} requests, ${attempted} "
                          "attempted, ${sent} sent, ${failed} failed, ${measured} pool-full failures")
    endif()
    if(fraction LESS 1)
      if(NOT predicted GREATER 0 OR NOT measured GREATER 0)
        message(FATAL_ERROR "${name} fraction ${fraction}: predicted ${predicted} and measured "
                            "${measured} full events, both expected > 0")
      endif()
    elseif(NOT predicted EQUAL 0)
      message(FATAL_ERROR "${name} fraction ${fraction}: the planner predicts ${predicted} full "
                          "events above its own zero-full size")
    elseif(NOT measured EQUAL 0)
      string(JSON late GET "${doc}" rows ${i} measured release_late_max_us)
      string(JSON allowed GET "${doc}" rows ${i} allowed_late_us)
      string(JSON kept GET "${doc}" rows ${i} clock_kept)
      if(kept)
        message(FATAL_ERROR "${name} fraction ${fraction}: ${measured} full events while every "
                            "release was within ${allowed} us of the planner's (latest ${late} "
                            "us late): expected 0 above the zero-full size")
      endif()
      message("${name} fraction ${fraction}: ${measured} full events not judged: a release came "
              "${late} us late, more than the ${allowed} us the pool's room absorbs")
    endif()
  endforeach()
  file(READ ${out}/runs/validate_${name}_host_f0.30.json res)
  string(JSON wl GET "${res}" scenario workload)
  if(NOT wl MATCHES "${name}.json$")
    message(FATAL_ERROR "the results do not name the replayed workload: ${wl}")
  endif()
  string(JSON found GET "${doc}" zero_full_bytes)
  set(found_${name} ${found} PARENT_SCOPE)
endfunction()

validate(tiny)
validate(tiny_fill)
if(NOT found_tiny_fill GREATER found_tiny)
  message(FATAL_ERROR "fill_us: zero-full size ${found_tiny_fill} bytes, not above ${found_tiny}")
endif()
file(READ ${WORK}/tiny_fill/scenarios/validate_tiny_fill_host_f0.30.json scn)
string(JSON source GET "${scn}" tensors source)
if(NOT source STREQUAL "pool_buffer")
  message(FATAL_ERROR "a fill_us workload is replayed with tensors.source ${source}")
endif()
