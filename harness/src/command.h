/* Run a program and take its output, bounded in time: the harness asks other tools (the MPS
 * control program, nvidia-smi) what they know. */
#ifndef CUIPC_HARNESS_COMMAND_H
#define CUIPC_HARNESS_COMMAND_H

#include <stddef.h>

/* Run argv (argv[0] looked up on PATH) with the "NAME=value" strings of env added to its
 * environment (env may be NULL), `input` on its stdin (NULL: none), stdout and stderr together
 * into out (up to cap - 1 bytes, always terminated). Past timeout_ms it is killed. Returns its
 * exit status, or -1 when it could not run, was killed or timed out. */
int cuipc_h_run_capture(const char *const argv[], const char *const env[], const char *input,
                        char *out, size_t cap, int timeout_ms);

#endif
