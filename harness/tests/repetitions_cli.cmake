# run --repetitions, run.repetitions, scenario_sha256, --require-gpu and compare on real runs
# through forked processes (CPU). Args: HARNESS, SCENARIOS (scenarios/), WORK.
include(${CMAKE_CURRENT_LIST_DIR}/expect_exit.cmake)

file(REMOVE_RECURSE ${WORK})
set(H ${HARNESS})
set(smoke ${SCENARIOS}/smoke/default_borrow.json)
expect_command_exit(2 "--repetitions needs an integer 1..64" ${H} run --repetitions 0 ${smoke})
expect_command_exit(2 "--repetitions needs an integer" ${H} run --repetitions 3x ${smoke})
expect_command_exit(2 "CUIPC_REQUIRE_GPU is 'yes'" ${CMAKE_COMMAND} -E env CUIPC_REQUIRE_GPU=yes
            ${H} run ${smoke})

# Two repetitions, each in its own processes: every repetition's figures, median, spread.
expect_command_exit(0 "smoke_default_borrow +passed" ${H} run --no-progress --repetitions 2
            --out ${WORK}/a ${smoke})
file(READ ${WORK}/a/smoke_default_borrow.json res)
string(JSON count GET "${res}" repetitions count)
string(JSON nruns LENGTH "${res}" repetitions runs)
string(JSON p50 GET "${res}" repetitions median latency_p50_us)
string(JSON range GET "${res}" repetitions spread latency_p50_us range_pct)
string(JSON sha GET "${res}" scenario_sha256)
if(NOT count EQUAL 2 OR NOT nruns EQUAL 2 OR NOT p50 GREATER 0 OR NOT sha MATCHES "^[0-9a-f]+$")
  message(FATAL_ERROR "repetitions: count ${count}, runs ${nruns}, median p50 ${p50}, sha ${sha}")
endif()
string(LENGTH "${sha}" shalen)
if(NOT shalen EQUAL 64)
  message(FATAL_ERROR "scenario_sha256 '${sha}' is not 64 hex digits")
endif()

# The scenario key: run.repetitions; a description change keeps the hash, a hold_us change not.
file(READ ${smoke} text)
string(REPLACE "\"iterations\": 300" "\"iterations\": 300, \"repetitions\": 2" rep "${text}")
string(REPLACE "zero-copy borrow" "zero-copy borrow (reworded)" rep "${rep}")
file(WRITE ${WORK}/scn/rep.json "${rep}")
expect_command_exit(0 "passed" ${H} run --no-progress --out ${WORK}/b ${WORK}/scn/rep.json)
file(READ ${WORK}/b/smoke_default_borrow.json res)
string(JSON count GET "${res}" repetitions count)
string(JSON sha_b GET "${res}" scenario_sha256)
if(NOT count EQUAL 2 OR NOT sha_b STREQUAL sha)
  message(FATAL_ERROR "run.repetitions: count ${count}; hash ${sha_b} against ${sha}")
endif()
string(REPLACE "\"repetitions\": 2" "\"repetitions\": 65" bad "${rep}")
file(WRITE ${WORK}/scn/bad.json "${bad}")
expect_command_exit(2 "run.repetitions: 65 is out of range" ${H} validate ${WORK}/scn/bad.json)

# compare on the real runs: 2 against 2 cannot establish anything (exit 3, never 1).
expect_command_exit(3 "UNDECIDED.*TOO FEW REPETITIONS" ${H} compare ${WORK}/a ${WORK}/b)
expect_command_exit(3 "1 scenario\\(s\\) compared" ${H} compare --json ${WORK}/verdicts.json
            ${WORK}/a ${WORK}/b)
file(READ ${WORK}/verdicts.json v)
string(JSON verdict GET "${v}" scenarios 0 verdict)
string(JSON method GET "${v}" scenarios 0 metrics 0 p_method)
if(NOT verdict STREQUAL "undecided" OR NOT method STREQUAL "exact")
  message(FATAL_ERROR "compare --json: verdict ${verdict}, p_method ${method}")
endif()
# A changed hold_us under the same name: refused, unless --allow-mismatch.
string(REPLACE "\"hold_us\": 100" "\"hold_us\": 150" held "${text}")
file(WRITE ${WORK}/scn/held.json "${held}")
expect_command_exit(0 "passed" ${H} run --no-progress --out ${WORK}/c ${WORK}/scn/held.json)
expect_command_exit(2 "MISMATCH smoke_default_borrow: scenario content.*REFUSED" ${H} compare ${WORK}/a
            ${WORK}/c)
expect_command_exit(3 "judged anyway" ${H} compare --allow-mismatch ${WORK}/a ${WORK}/c)

# --require-gpu (or CUIPC_REQUIRE_GPU=1): a scenario skipped for want of a GPU fails.
file(GLOB gpu_scenarios ${SCENARIOS}/gpu/*.json)
list(GET gpu_scenarios 0 gpu)
expect_command_exit(0 "skipped: no GPU" ${CMAKE_COMMAND} -E env CUDA_VISIBLE_DEVICES=
            ${H} run --no-progress --out ${WORK}/g ${gpu})
expect_command_exit(1 "failed +.*no GPU, and a GPU is required.*totals: 0 passed, 1 failed, 0 skipped"
            ${CMAKE_COMMAND} -E env
            CUDA_VISIBLE_DEVICES= ${H} run --no-progress --require-gpu --out ${WORK}/g ${gpu})
expect_command_exit(1 "a GPU is required" ${CMAKE_COMMAND} -E env CUDA_VISIBLE_DEVICES=
            CUIPC_REQUIRE_GPU=1 ${H} run --no-progress --out ${WORK}/g ${gpu})
