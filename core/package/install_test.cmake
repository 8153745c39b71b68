# Install the built tree into a fresh prefix, then build consumer_test/consumer.c against it
# three ways (pkg-config shared, CMake shared, CMake static) and run each program.
# Args: BUILD_DIR, WORK_DIR, SOURCE_DIR, CUDA_COMPILER.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --component c_library)
foreach(f include/cuipc/cuipc.h lib/libcuipc.a lib/pkgconfig/cuipc.pc lib/cmake/cuipc/cuipcConfig.cmake)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
file(GLOB so ${prefix}/lib/libcuipc.so.*)
if(NOT so)
  message(FATAL_ERROR "libcuipc.so not installed")
endif()

# pkg-config, as a Makefile user would: cc $(pkg-config --cflags --libs cuipc)
find_program(PKG_CONFIG pkg-config REQUIRED)
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
execute_process(COMMAND ${PKG_CONFIG} --cflags --libs cuipc OUTPUT_VARIABLE flags
                RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not know cuipc")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(cc -std=c11 -Wall -Werror ${SOURCE_DIR}/consumer.c ${flags} -pthread -Wl,-rpath,${prefix}/lib
    -o ${WORK_DIR}/consumer_pkgconfig)
run(${WORK_DIR}/consumer_pkgconfig)

# CMake: find_package(cuipc) from the prefix, shared and static.
get_filename_component(cuda_root ${CUDA_COMPILER} DIRECTORY)
get_filename_component(cuda_root ${cuda_root} DIRECTORY)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -DCMAKE_PREFIX_PATH=${prefix}
    -DCUDAToolkit_ROOT=${cuda_root} -DCMAKE_BUILD_RPATH=${prefix}/lib)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer_shared)
run(${WORK_DIR}/build/consumer_static)

# Only the cuipc_ names are exported: the static CUDA runtime stays inside.
find_program(NM nm)
if(NM)
  execute_process(COMMAND ${NM} -D --defined-only ${prefix}/lib/libcuipc.so OUTPUT_VARIABLE syms)
  string(REGEX MATCHALL " T [^\n]+" exported "${syms}")
  foreach(s ${exported})
    if(NOT s MATCHES "^ T cuipc_")
      message(FATAL_ERROR "libcuipc.so exports ${s}")
    endif()
  endforeach()
endif()
