# The committed baselines, results files written by earlier builds, stay readable: compare judges
# each against itself without refusing or failing a scenario (the keys it reads are those the
# files carry), and names every scenario of it.
include(${CMAKE_CURRENT_LIST_DIR}/expect_exit.cmake)
# h100: 95 single runs (too few repetitions to decide: exit 3); h200: 3 scenarios, one of them
# repeated six times (ok) and two undecided.
expect_command_exit(3 "95 scenario\\(s\\) compared, 0 regression\\(s\\), 92 undecided, 3 skipped"
                    ${HARNESS} compare ${BASELINES}/h100-80gb-hbm3/harness
                    ${BASELINES}/h100-80gb-hbm3/harness)
expect_command_exit(3 "3 scenario\\(s\\) compared, 0 regression\\(s\\), 2 undecided, 0 skipped, 1 ok"
                    ${HARNESS} compare ${BASELINES}/h200/harness ${BASELINES}/h200/harness)
