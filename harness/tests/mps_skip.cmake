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

# Run with the given environment (NAME=value...) and arguments; exit 0 wanted, then the MPS
# scenario's result must be skipped with a reason matching `expected`.
function(run_skipped label expected out_dir)
  cmake_parse_arguments(R "" "" "ENV;ARGS" ${ARGN})
  execute_process(COMMAND ${CMAKE_COMMAND} -E env ${R_ENV}
                          ${HARNESS} run --no-progress --out ${out_dir} ${R_ARGS}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "run ${label}: exit ${rc}\n${out}\n${err}")
  endif()
  read_result(${out_dir} leak_pool_cuda_ipc_pool_mps st reason)
  if(NOT st STREQUAL "skipped" OR NOT reason MATCHES "${expected}")
    message(FATAL_ERROR "${label}: ${st} (${reason})")
  endif()
  set(gpus ${gpus} PARENT_SCOPE)
endfunction()

# No control program: an empty PATH and CUIPC_MPS_CONTROL naming nothing.
run_skipped("without MPS control" "MPS requested, and nvidia-cuda-mps-control is not there"
            ${WORK}/nocontrol ENV PATH=${WORK}/empty CUIPC_MPS_CONTROL= ARGS ${mps})

# A control program (a stand-in) but no GPU: skipped for want of a GPU, MPS named; a host-only
# scenario runs as ever under --mps. (With a GPU the stand-in would be tried for real.)
if(gpus EQUAL 0)
  run_skipped("--mps without a GPU" "^skipped: no GPU \\(MPS requested\\)$" ${WORK}/nogpu
              ENV CUIPC_MPS_CONTROL=${SRC}/fake-mps-control
              ARGS --mps ${mps} ${SCENARIOS}/smoke/default_copy.json)
  file(READ ${WORK}/nogpu/smoke_default_copy.json res)
  string(JSON st GET "${res}" status)
  string(JSON requested GET "${res}" environment mps requested)
  if(NOT st STREQUAL "passed" OR requested)
    message(FATAL_ERROR "host-only scenario under --mps: ${st}, MPS requested ${requested}")
  endif()
endif()
