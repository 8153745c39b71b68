/* Minimal test support: checks that report file:line and the last cuipc error, and a fork
 * helper that turns a child's crash or non-zero exit into a failure. */
#ifndef CUIPC_TEST_UTIL_H
#define CUIPC_TEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "cuipc/status.h"

#define CUIPC_TEST_SKIP 77

extern int cuipc_test_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__,      \
                    #cond, cuipc_last_error());                                                    \
            cuipc_test_failures++;                                                                 \
        }                                                                                          \
    } while (0)

/* Abort the test at once: for failures after which nothing else makes sense. */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s (last error: %s)\n", __FILE__, __LINE__,    \
                    #cond, cuipc_last_error());                                                    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_STATUS(expr, expected)                                                               \
    do {                                                                                           \
        cuipc_status s_ = (expr);                                                                  \
        if (s_ != (expected)) {                                                                    \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__,     \
                    __LINE__, #expr, cuipc_status_name(s_), cuipc_status_name(expected),           \
                    cuipc_last_error());                                                           \
            cuipc_test_failures++;                                                                 \
        }                                                                                          \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, CUIPC_OK)

/* Print a summary line and return the process exit code. */
int cuipc_test_finish(const char *name);

/* Fork; the child runs fn(arg) and exits with its return value. */
pid_t cuipc_test_fork(int (*fn)(void *), void *arg);
/* Wait for pid with a timeout (kills it then); returns its exit code, or -signal, or -1000 on
 * timeout. */
int cuipc_test_wait(pid_t pid, int timeout_ms);

/* Exit 77 from a GPU test when no GPU is present (prints why). Leaves CUDA uninitialised in
 * the calling process, so it may fork CUDA-using children afterwards. */
void cuipc_test_require_gpu(void);

/* A fresh socket path in a private directory made on first use (and removed at exit). */
void cuipc_test_socket_path(char *buf, size_t n);

/* Deterministic xorshift generator for property tests. */
uint64_t cuipc_test_rand(uint64_t *state);

#endif
