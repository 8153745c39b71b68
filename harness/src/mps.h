/* The CUDA Multi-Process Service for a run: find the control program, use an MPS the host
 * already runs, or start a private control daemon (its own pipe and log directories) whose
 * clients are the roles forked afterwards, and stop it again, also when the harness dies.
 * Nothing here touches CUDA: whether a role really is an MPS client is asked in the role. */
#ifndef CUIPC_HARNESS_MPS_H
#define CUIPC_HARNESS_MPS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The control daemon writes its pid here, inside its pipe directory. */
#define CUIPC_MPS_PID_FILE "nvidia-cuda-mps-control.pid"
/* Where clients look for the control daemon when CUDA_MPS_PIPE_DIRECTORY is not set. */
#define CUIPC_MPS_DEFAULT_PIPE_DIR "/tmp/nvidia-mps"

typedef struct cuipc_mps {
    bool active;         /* a control daemon is there for the roles to use */
    bool ours;           /* started by us (stopped by us), else the host's */
    char control[1024];  /* nvidia-cuda-mps-control */
    char pipe_dir[1024]; /* CUDA_MPS_PIPE_DIRECTORY the roles get */
    char log_dir[1024];  /* CUDA_MPS_LOG_DIRECTORY (ours only) */
    char base_dir[960];  /* private directory holding both (ours only) */
    int daemon_pid;      /* the control daemon */
    int guard_pid;       /* quits our daemon once every holder of the lifeline is gone */
    int lifeline_fd;     /* write end of the guard's pipe; -1 when none */
    double start_s;      /* how long starting took */
    bool env_set;        /* start set the clients' variables */
    char *saved_env[2];  /* CUDA_MPS_PIPE/LOG_DIRECTORY before that (malloc'd; NULL: unset) */
} cuipc_mps;

/* The control program: $CUIPC_MPS_CONTROL when set, else nvidia-cuda-mps-control on PATH.
 * False when there is none (path gets the name looked for, for the message). */
bool cuipc_mps_find_control(char *path, size_t cap);

/* The pipe directory of an MPS the host already runs (CUDA_MPS_PIPE_DIRECTORY, else the
 * default), when its control daemon is alive. */
bool cuipc_mps_host_active(char *pipe_dir, size_t cap, int *daemon_pid);

/* Make MPS available to processes forked after it returns: the host's if one runs, else our
 * own daemon under a private directory. Sets CUDA_MPS_PIPE_DIRECTORY (and the log directory)
 * in this process's environment for the roles. False with why filled when it cannot. */
bool cuipc_mps_start(cuipc_mps *m, char *why, size_t cap);

/* Clients gone, quit our daemon (waits for it; the host's is left alone) and give the MPS
 * variables back the values they had before start. Safe to call on an inactive m. */
void cuipc_mps_stop(cuipc_mps *m);

/* pid is a live process (a zombie is not). */
bool cuipc_mps_pid_alive(int pid);

/* Run one control command ("get_server_list") against m's daemon; its output in out. */
bool cuipc_mps_command(const cuipc_mps *m, const char *cmd, char *out, size_t cap);

/* environment.mps of a results file: {"enabled", "source", ...}; requested says whether the
 * scenario asked for it. */
json_t *cuipc_mps_json(const cuipc_mps *m, bool requested);

#endif
