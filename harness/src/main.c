/* cuipc-harness: run scenarios, validate them, compare results, plan pool sizes. */
#include <stdio.h>
#include <string.h>

#include "cuipc_version.h"
#include "results.h"
#include "run.h"

#include "plan.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: cuipc-harness COMMAND ...\n"
            "  run SCENARIO.json... [--out DIR]   run scenarios, write results, print a summary\n"
            "  validate SCENARIO.json...          check scenarios without running them\n"
            "  compare BASE NEW                   exit 1 on a regression beyond tolerance\n"
            "  plan WORKLOAD.json [options]       size a pool for a workload\n"
            "COMMAND --help: its options. --version: the version of this build.\n"
            "exit codes: 0 ok, 1 failed or regressed, 2 bad input or usage\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return cuipc_run_main(argc - 1, argv + 1);
    if (strcmp(cmd, "validate") == 0)
        return cuipc_validate_main(argc - 1, argv + 1);
    if (strcmp(cmd, "compare") == 0)
        return cuipc_compare_main(argc - 1, argv + 1);
    if (strcmp(cmd, "plan") == 0)
        return cuipc_plan_main(argc - 1, argv + 1);
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("cuipc-harness %s\n", CUIPC_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "cuipc-harness: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
