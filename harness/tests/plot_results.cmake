# ci/plot-results on the committed fixtures in fixtures/plot/: the PNGs are real PNGs, table.md
# holds the rows computed from the fixture numbers, bad input exits 2 naming the file.
# This one file does both jobs: include()d from harness/CMakeLists.txt it registers the test;
# run with `cmake -P` (SRC = source root, WORK = scratch folder) it is the test.
if(NOT CMAKE_SCRIPT_MODE_FILE)
  # gnuplot is an optional tool on build hosts: without it the test is skipped (77), not failed.
  cuipc_add_test(harness_plot_results
    # (no semicolons: CMake would split the command there)
    COMMAND sh -c "if ! command -v gnuplot >/dev/null\nthen echo 'gnuplot is not installed: skipped' && exit 77\nfi\nexec \"$0\" -DSRC=\"$1\" -DWORK=\"$2\" -P \"$3\""
            ${CMAKE_COMMAND} ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/plot_results
            ${CMAKE_CURRENT_LIST_FILE}
    TIMEOUT 60 LABELS harness)
  return()
endif()

set(SCRIPT ${SRC}/ci/plot-results)
set(FIX ${SRC}/harness/tests/fixtures/plot)
set(OUT ${WORK}/out)
file(REMOVE_RECURSE ${WORK})
# Run from elsewhere than the source root: scenario files must be found next to the results.
file(MAKE_DIRECTORY ${WORK}/empty)

function(expect_exit code pattern)
  execute_process(COMMAND ${SCRIPT} ${ARGN} WORKING_DIRECTORY ${WORK} RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 30)
  if(NOT rc EQUAL ${code})
    message(FATAL_ERROR "plot-results ${ARGN}: exit ${rc}, expected ${code}\n${out}\n${err}")
  endif()
  if(NOT "${out}${err}" MATCHES "${pattern}")
    message(FATAL_ERROR "plot-results ${ARGN}: output lacks '${pattern}':\n${out}\n${err}")
  endif()
endfunction()

# A PNG of the expected width: the signature, the IHDR chunk, and more than a blank canvas.
function(expect_png file width)
  if(NOT EXISTS ${file})
    message(FATAL_ERROR "${file} was not written")
  endif()
  file(READ ${file} head HEX LIMIT 20)
  if(NOT head MATCHES "^89504e470d0a1a0a0000000d49484452")
    message(FATAL_ERROR "${file} is not a PNG (starts with ${head})")
  endif()
  math(EXPR want_hex "${width}" OUTPUT_FORMAT HEXADECIMAL)
  string(SUBSTRING ${head} 32 8 width_hex)
  math(EXPR got "0x${width_hex}")
  if(NOT got EQUAL width)
    message(FATAL_ERROR "${file}: ${got} pixels wide, expected ${width}")
  endif()
  file(SIZE ${file} size)
  if(size LESS 10000)
    message(FATAL_ERROR "${file}: only ${size} bytes, no plot drawn")
  endif()
endfunction()

# The full set, plus an older run of tput_pool_4kib_c1_borrow (0.05 GB/s) that must lose to the
# later one (0.1 GB/s) in results/.
expect_exit(0 "left out of the size plots and table \\(status failed\\): tput_pool_4kib_c4_copy"
            --bench ${FIX}/bench.json --title fixture ${OUT} ${FIX}/results
            ${FIX}/older/tput_pool_4kib_c1_borrow.json)
expect_png(${OUT}/latency_vs_size.png 1400)
expect_png(${OUT}/throughput_vs_size.png 1400)
# Two results carry occupancy (one of them not a lat_/tput_ scenario): two panels side by side.
expect_png(${OUT}/occupancy.png 1600)

# Rows from the fixture numbers. % of limit = GB/s over the bench figure at that size:
# 0.1/0.5 (4 KiB D2D median aggregate, not the 0.65 mean) = 20.0; 250/1000 (64 MiB) = 25.0;
# 30/100 (1 MiB: median of the repetitions 90, 100, 130) = 30.0; 16 MiB failed in the bench:
# blank; default mode with device tensors (scenario file): 10/40 pinned D2H = 25.0.
# The failed tput_pool_4kib_c4_copy and smoke_default_copy are not rows.
set(expected
    "| cuda_ipc_pool | borrow | 1 |  | 4 KiB | 100.0 | 250.0 | 0.100 | 20.0 (D2D memcpy) |"
    "| cuda_ipc_pool | borrow | 1 | novalidate | 4 KiB | 50.0 | 75.0 |  |  |"
    "| cuda_ipc_pool | borrow | 4 |  | 64 MiB | 600.0 | 900.0 | 250.000 | 25.0 (D2D memcpy) |"
    "| cuda_ipc_pool | copy | 1 |  | 1 MiB | 400.0 | 900.0 | 30.000 | 30.0 (D2D memcpy) |"
    "| cuda_ipc_pool | copy | 1 |  | 16 MiB |  |  | 40.000 |  |"
    "| default | copy | 1 |  | 1 MiB | 800.0 | 1600.0 | 10.000 | 25.0 (pinned D2H) |")
file(STRINGS ${OUT}/table.md rows REGEX "^\\| (cuda_ipc|default)")
if(NOT "${rows}" STREQUAL "${expected}")
  string(REPLACE ";" "\n" rows "${rows}")
  string(REPLACE ";" "\n" expected "${expected}")
  message(FATAL_ERROR "table.md rows:\n${rows}\nexpected:\n${expected}")
endif()

# table.json: same rows; where each size came from (name, scenario file, tensor_bytes).
file(READ ${OUT}/table.json json)
string(JSON nrows LENGTH "${json}" rows)
if(NOT nrows EQUAL 6)
  message(FATAL_ERROR "table.json has ${nrows} rows, expected 6")
endif()
foreach(check "0;name" "2;scenario.tensor_bytes" "3;scenario file")
  list(GET check 0 i)
  list(GET check 1 want)
  string(JSON got GET "${json}" rows ${i} size_source)
  if(NOT got STREQUAL want)
    message(FATAL_ERROR "table.json row ${i}: size_source '${got}', expected '${want}'")
  endif()
endforeach()
string(JSON kept GET "${json}" rows 0 tput_result)
if(NOT kept MATCHES "/results/tput_pool_4kib_c1_borrow.json$")
  message(FATAL_ERROR "table.json row 0 kept ${kept}, not the later run in results/")
endif()

# Same folder, no occupancy and no tput_ result: the stale plots go, with a message.
expect_exit(0 "occupancy.png not written: no result carries an occupancy object"
            ${OUT} ${FIX}/results/lat_pool_4kib_c1_borrow.json)
foreach(stale occupancy.png throughput_vs_size.png)
  if(EXISTS ${OUT}/${stale})
    message(FATAL_ERROR "${stale} left over from the previous run")
  endif()
endforeach()
expect_png(${OUT}/latency_vs_size.png 1400)
file(STRINGS ${OUT}/table.md rows REGEX "^\\| (cuda_ipc|default)")
if(NOT "${rows}" STREQUAL "| cuda_ipc_pool | borrow | 1 |  | 4 KiB | 100.0 | 250.0 |  |  |")
  message(FATAL_ERROR "table.md without a bench:\n${rows}")
endif()

# Bad input: exit 2 naming the file, before anything is written.
set(BAD ${WORK}/bad_out)
expect_exit(2 "does_not_exist.json: no such file" ${BAD} ${FIX}/does_not_exist.json)
expect_exit(2 "not_json.json:3:[0-9]+: not JSON" ${BAD} ${FIX}/bad/not_json.json)
expect_exit(2 "not_a_result.json: not a cuipc-harness result" ${BAD} ${FIX}/bad/not_a_result.json)
expect_exit(2 "no usable results in [^\n]*skipped_only.json" ${BAD} ${FIX}/bad/skipped_only.json)
expect_exit(2 "bad_occupancy.json: occupancy.gpu_used_bytes has 3 samples, t_s has 4"
            ${BAD} ${FIX}/results ${FIX}/bad/bad_occupancy.json)
expect_exit(2 "not_json.json:3:[0-9]+: not JSON \\(Google Benchmark JSON\\)"
            --bench ${FIX}/bad/not_json.json ${BAD} ${FIX}/results)
expect_exit(2 "not_a_result.json: no gpu/limit_\\* benchmark results"
            --bench ${FIX}/bad/not_a_result.json ${BAD} ${FIX}/results)
expect_exit(2 "--occupancy nope: no result with occupancy samples has that name"
            --occupancy nope ${BAD} ${FIX}/results)
expect_exit(2 "empty: directory holds no \\*.json" ${BAD} ${WORK}/empty)
expect_exit(2 "usage")
if(EXISTS ${BAD})
  message(FATAL_ERROR "bad input still wrote ${BAD}")
endif()
