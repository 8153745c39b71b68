/* The supervisor: forks role processes (which run functions, never exec), holds them at a "go"
 * barrier until all are ready, reaps them against a deadline, and on any unexpected death
 * stops the rest (SIGTERM, then SIGKILL). It never touches CUDA. */
#ifndef CUIPC_HARNESS_SUPERVISOR_H
#define CUIPC_HARNESS_SUPERVISOR_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CUIPC_SUPERVISOR_MAX_CHILDREN 72

/* What a child sees: its barrier ends. */
typedef struct cuipc_role_ctx {
    int ready_fd; /* write one byte when ready */
    int go_fd;    /* read one byte to start; EOF means the run was abandoned */
    const char *role;
    uint32_t index;
} cuipc_role_ctx;

/* Runs in the child; its return value is the child's exit code. */
typedef int (*cuipc_role_fn)(const cuipc_role_ctx *ctx, void *arg);

typedef struct cuipc_child_spec {
    const char *role; /* "producer", "consumer", ... */
    uint32_t index;
    cuipc_role_fn fn;
    void *arg;
    int expected_signal; /* a fault scenario kills this child with it on purpose (0: none) */
    bool may_fail;       /* a non-zero exit is expected (e.g. consumers of a killed producer) */
} cuipc_child_spec;

typedef struct cuipc_child_result {
    pid_t pid;
    bool ready;  /* passed the barrier */
    bool exited; /* exit() rather than a signal */
    int exit_code;
    int signal;                 /* terminating signal, 0 if it exited */
    bool stopped_by_supervisor; /* we sent the signal that ended it */
    bool expected;              /* its end matches the spec (clean exit, expected signal/failure) */
    double end_s;               /* seconds from start when it was reaped */
} cuipc_child_result;

typedef struct cuipc_supervisor_opts {
    double ready_timeout_s;   /* all children must be ready by then */
    double run_timeout_s;     /* everything must be over by then (from start, or from the go) */
    bool run_timeout_from_go; /* count run_timeout_s from the go, not from the fork */
    /* When it becomes non-zero (a signal the caller caught), every child is stopped. */
    const volatile sig_atomic_t *stop_flag;
    double grace_s; /* SIGTERM -> SIGKILL */
    /* Called about every tick_ms in the supervisor while it waits (leak sampling, progress). */
    void (*tick)(void *ctx);
    void *tick_ctx;
    int tick_ms;
} cuipc_supervisor_opts;

void cuipc_supervisor_opts_init(cuipc_supervisor_opts *o);

typedef struct cuipc_supervise_outcome {
    bool all_ready;
    bool timed_out;    /* the deadline passed with children still running */
    bool ok;           /* every child ended as expected and nothing timed out */
    int first_failure; /* index of the first child that ended unexpectedly, -1 if none */
    double wall_s;
    double stopped_at_s; /* when the supervisor began stopping the children (0: never) */
    char message[512];   /* e.g. "consumer 1 killed by SIGSEGV" */
} cuipc_supervise_outcome;

/* Fork n children, run the barrier, reap all. Returns false only if forking/pipes failed
 * (message in out->message); children started are always reaped before returning. */
bool cuipc_supervise(const cuipc_child_spec *specs, size_t n, const cuipc_supervisor_opts *opts,
                     cuipc_child_result *results, cuipc_supervise_outcome *out);

/* Child side of the barrier: announce readiness, then wait for go (timeout_ms; -1 forever).
 * Returns false when the supervisor abandoned the run or the wait timed out. */
bool cuipc_role_ready(const cuipc_role_ctx *ctx);
bool cuipc_role_wait_go(const cuipc_role_ctx *ctx, int timeout_ms);

/* "exit 0", "exit 3", "killed by SIGSEGV" */
const char *cuipc_child_describe(const cuipc_child_result *r, char *buf, size_t cap);

#endif
