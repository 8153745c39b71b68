# cuipc-harness plan: capacity planning by replaying a workload through the real (virtual) pool.
# Included from harness/CMakeLists.txt; the executable links cuipc_plan and dispatches "plan".
# Paths are relative to this file so it can be included from anywhere.
set(CUIPC_PLAN_DIR ${CMAKE_CURRENT_LIST_DIR})
add_library(cuipc_plan STATIC ${CUIPC_PLAN_DIR}/src/plan.c ${CUIPC_PLAN_DIR}/src/plan_sim.c
                              ${CUIPC_PLAN_DIR}/src/plan_workload.c
                              ${CUIPC_PLAN_DIR}/src/read_file.c
                              ${CUIPC_PLAN_DIR}/src/byte_size.c
                              ${CUIPC_PLAN_DIR}/src/json_get.c
                              ${CUIPC_PLAN_DIR}/src/json_locate.c)
target_include_directories(cuipc_plan PUBLIC ${CUIPC_PLAN_DIR}/src)
target_link_libraries(cuipc_plan PUBLIC cuipc cuipc::jansson m)
cuipc_use_version(cuipc_plan)

add_executable(test_plan ${CUIPC_PLAN_DIR}/tests/test_plan.c)
target_link_libraries(test_plan PRIVATE cuipc_plan cuipc_testutil)
target_compile_definitions(test_plan PRIVATE
  CUIPC_PLAN_WORKLOADS="${CUIPC_PLAN_DIR}/../scenarios/workloads"
  CUIPC_PLAN_SCRATCH="${CMAKE_CURRENT_BINARY_DIR}/test_plan_scratch")
cuipc_add_test(test_plan COMMAND test_plan LABELS harness)
# The recommendation from 20 samples holds for 50 fresh ones (~10 s).
cuipc_add_test(harness_plan_seeds
  COMMAND ${CMAKE_COMMAND} -DHARNESS=$<TARGET_FILE:cuipc-harness>
          -DWORKLOADS=${CUIPC_PLAN_DIR}/../scenarios/workloads
          -DWORK=${CMAKE_CURRENT_BINARY_DIR}/plan_seeds
          -P ${CUIPC_PLAN_DIR}/tests/plan_seeds.cmake
  TIMEOUT 300 LABELS harness)
