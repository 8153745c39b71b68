/* `cuipc-harness run` and `validate`. */
#ifndef CUIPC_HARNESS_RUN_H
#define CUIPC_HARNESS_RUN_H

int cuipc_run_main(int argc, char **argv);
int cuipc_validate_main(int argc, char **argv);

#endif
