# The committed baselines, results files written by earlier builds, stay readable: compare judges
# each against itself without refusing or failing a scenario (the keys it reads are those the
# files carry), and names every scenario of it.
include(${CMAKE_CURRENT_LIST_DIR}/expect_exit.cmake)
# h100: 95 single runs (too few repetitions to decide: exit 3); h200: the gate set, 5 scenarios
# repeated six times: 2 ok, 3 undecided (a latency figure spreads more than its tolerance).
expect_command_exit(3 "95 scenario\\(s\\) compared, 0 regression\\(s\\), 92 undecided, 3 skipped"
                    ${HARNESS} compare ${BASELINES}/h100-80gb-hbm3/harness
                    ${BASELINES}/h100-80gb-hbm3/harness)
expect_command_exit(3 "5 scenario\\(s\\) compared, 0 regression\\(s\\), 3 undecided, 0 skipped, 2 ok"
                    ${HARNESS} compare ${BASELINES}/h200/harness ${BASELINES}/h200/harness)
