# Scenarios under MPS where MPS cannot be had: validate accepts gpu.mps and refuses a bad value;
# without the MPS control program a scenario that asks for MPS is skipped naming it (any host);
# with one but no GPU it is skipped for want of a GPU (checked on hosts without a GPU); run
# --mps leaves host-only scenarios as they are. Results say MPS was requested and not enabled.
# Args: HARNESS, SCENARIOS, SRC (harness/tests), WORK.
file(REMOVE_RECURSE ${WORK})
set(mps ${SCENARIOS}/gpu/leak_pool_cuda_ipc_pool_mps.json)
execute_process(COMMAND ${HARNESS} validate ${mps} RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "validate ${mps}: exit ${rc}\n${out}")
endif()
execute_process(COMMAND ${HARNESS} validate ${SRC}/bad/mps_not_bool.json RESULT_VARIABLE rc
                ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "mps_not_bool.json:5:[0-9]+: \\$\\.gpu\\.mps: expected true or false")
  message(FATAL_ERROR "validate of a bad gpu.mps: exit ${rc}\n${err}")
endif()

function(read_result dir name status_var reason_var)
  file(READ ${dir}/${name}.json res)
  string(JSON st GET "${res}" status)
  string(JSON reason GET "${res}" reason)
  string(JSON requested GET "${res}" environment mps requested)
  string(JSON enabled GET "${res}" environment mps enabled)
  if(NOT requested OR enabled)
    message(FATAL_ERROR "${name}: environment.mps requested ${requested}, enabled ${enabled}")
  endif()
  set(${status_var} ${st} PARENT_SCOPE)
  set(${reason_var} "${reason}" PARENT_SCOPE)
  string(JSON gpus GET "${res}" environment gpu count)
  set(gpus ${gpus} PARENT_SCOPE)
endfunction()

# No control program: an empty PATH and CUIPC_MPS_CONTROL naming nothing.
execute_process(COMMAND ${CMAKE_COMMAND} -E env PATH=${WORK}/empty
                        CUIPC_MPS_CONTROL=
                        ${HARNESS} run --no-progress --out ${WORK}/nocontrol ${mps}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "run without MPS control: exit ${rc}\n${out}\n${err}")
endif()
read_result(${WORK}/nocontrol leak_pool_cuda_ipc_pool_mps st reason)
if(NOT st STREQUAL "skipped" OR NOT reason MATCHES "MPS requested, and nvidia-cuda-mps-control is not there")
  message(FATAL_ERROR "without MPS control: ${st} (${reason})")
endif()

# A control program (a stand-in) but no GPU: skipped for want of a GPU, MPS named; a host-only
# scenario runs as ever under --mps. (With a GPU the stand-in would be tried for real.)
if(gpus EQUAL 0)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env CUIPC_MPS_CONTROL=${SRC}/fake-mps-control
                          ${HARNESS} run --mps --no-progress --out ${WORK}/nogpu ${mps}
                          ${SCENARIOS}/smoke/default_copy.json
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "run --mps without a GPU: exit ${rc}\n${out}\n${err}")
  endif()
  read_result(${WORK}/nogpu leak_pool_cuda_ipc_pool_mps st reason)
  if(NOT st STREQUAL "skipped" OR NOT reason STREQUAL "skipped: no GPU (MPS requested)")
    message(FATAL_ERROR "MPS without a GPU: ${st} (${reason})")
  endif()
  file(READ ${WORK}/nogpu/smoke_default_copy.json res)
  string(JSON st GET "${res}" status)
  string(JSON requested GET "${res}" environment mps requested)
  if(NOT st STREQUAL "passed" OR requested)
    message(FATAL_ERROR "host-only scenario under --mps: ${st}, MPS requested ${requested}")
  endif()
endif()
