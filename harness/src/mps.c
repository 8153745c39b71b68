/* MPS control daemon for a run. Our daemon is stopped by a guard process that holds one end of
 * a pipe: when every holder of the other end is gone (the harness at the end of the MPS
 * scenarios, or the harness and its roles after a crash, SIGTERM or SIGINT), the guard asks the
 * daemon to quit, waits for it and removes its directories. So no exit path leaves a daemon
 * behind, signal handlers included: the harness needs none. */
#include "mps.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "command.h"
#include "util.h"

#define CONTROL_NAME "nvidia-cuda-mps-control"
#define COMMAND_TIMEOUT_MS 10000
#define QUIT_WAIT_MS 10000

bool cuipc_mps_find_control(char *path, size_t cap) {
    const char *given = getenv("CUIPC_MPS_CONTROL");
    if (given != NULL && *given) {
        snprintf(path, cap, "%s", given);
        return access(given, X_OK) == 0;
    }
    snprintf(path, cap, "%s", CONTROL_NAME);
    const char *env = getenv("PATH");
    char *dirs = strdup(env && *env ? env : "/usr/bin:/bin");
    bool found = false;
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d && !found;
         d = strtok_r(NULL, ":", &save)) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", d, CONTROL_NAME);
        if (access(p, X_OK) == 0) {
            snprintf(path, cap, "%s", p);
            found = true;
        }
    }
    free(dirs);
    return found;
}

static int read_pid_file(const char *pipe_dir) {
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", pipe_dir, CUIPC_MPS_PID_FILE);
    char *text = cuipc_h_read_file(p, NULL);
    int pid = text ? atoi(text) : 0;
    free(text);
    return pid;
}

/* A process that still runs: an ended daemon may stay a zombie a while (its parent, init or a
 * subreaper, reaps it when it gets to it). */
bool cuipc_mps_pid_alive(int pid) {
    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM))
        return false;
    char p[64], state = '?';
    snprintf(p, sizeof p, "/proc/%d/stat", pid);
    char *text = cuipc_h_read_file(p, NULL);
    const char *close_paren = text ? strrchr(text, ')') : NULL;
    if (close_paren != NULL && close_paren[1] == ' ')
        state = close_paren[2];
    free(text);
    return state != 'Z' && state != 'X';
}

static bool alive(int pid) {
    return cuipc_mps_pid_alive(pid);
}

bool cuipc_mps_host_active(char *pipe_dir, size_t cap, int *daemon_pid) {
    const char *env = getenv("CUDA_MPS_PIPE_DIRECTORY");
    snprintf(pipe_dir, cap, "%s", env && *env ? env : CUIPC_MPS_DEFAULT_PIPE_DIR);
    *daemon_pid = read_pid_file(pipe_dir);
    return alive(*daemon_pid);
}

/* Run the control program with the daemon's directories: `arg` on its command line (or none),
 * `input` on its stdin; its output in out. Returns its exit status, or -1. */
static int run_control(const char *control, const char *pipe_dir, const char *log_dir,
                       const char *arg, const char *input, char *out, size_t cap) {
    char pipe_env[1100], log_env[1100];
    snprintf(pipe_env, sizeof pipe_env, "CUDA_MPS_PIPE_DIRECTORY=%s", pipe_dir);
    snprintf(log_env, sizeof log_env, "CUDA_MPS_LOG_DIRECTORY=%s", log_dir ? log_dir : "");
    const char *env[] = {pipe_env, log_dir && *log_dir ? log_env : NULL, NULL};
    const char *argv[] = {control, arg, NULL};
    return cuipc_h_run_capture(argv, env, input, out, cap, COMMAND_TIMEOUT_MS);
}

bool cuipc_mps_command(const cuipc_mps *m, const char *cmd, char *out, size_t cap) {
    char line[256];
    snprintf(line, sizeof line, "%s\n", cmd);
    return m->active && run_control(m->control, m->pipe_dir, m->log_dir, NULL, line, out, cap) == 0;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d != NULL) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[1400];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                remove_tree(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Ask the daemon to quit and wait for it (killed if it will not go); then its directories go. */
static void quit_daemon(const cuipc_mps *m) {
    char out[512];
    run_control(m->control, m->pipe_dir, m->log_dir, NULL, "quit\n", out, sizeof out);
    uint64_t deadline = cuipc_h_now_ns() + QUIT_WAIT_MS * 1000000ull;
    while (alive(m->daemon_pid) && cuipc_h_now_ns() < deadline)
        cuipc_h_sleep_ns(20000000ull);
    if (alive(m->daemon_pid))
        kill(m->daemon_pid, SIGKILL);
    remove_tree(m->base_dir);
}

static void guard_main(const cuipc_mps *m, int lifeline_r) {
    /* The terminal's Ctrl-C and a SIGTERM to the harness's group are for the harness: the
     * guard outlives it to clean up. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    for (;;) {
        char c;
        ssize_t got = read(lifeline_r, &c, 1);
        if (got == 0 || (got < 0 && errno != EINTR))
            break;
    }
    quit_daemon(m);
    _exit(0);
}

static const char *const client_vars[2] = {"CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"};

static void set_client_env(cuipc_mps *m) {
    for (int i = 0; i < 2; i++) {
        const char *was = getenv(client_vars[i]);
        m->saved_env[i] = was ? strdup(was) : NULL;
    }
    setenv(client_vars[0], m->pipe_dir, 1);
    if (m->log_dir[0])
        setenv(client_vars[1], m->log_dir, 1);
    m->env_set = true;
}

static void restore_client_env(cuipc_mps *m) {
    for (int i = 0; i < 2 && m->env_set; i++) {
        if (m->saved_env[i])
            setenv(client_vars[i], m->saved_env[i], 1);
        else
            unsetenv(client_vars[i]);
        free(m->saved_env[i]);
        m->saved_env[i] = NULL;
    }
    m->env_set = false;
}

bool cuipc_mps_start(cuipc_mps *m, char *why, size_t cap) {
    memset(m, 0, sizeof *m);
    m->lifeline_fd = -1;
    uint64_t t0 = cuipc_h_now_ns();
    if (!cuipc_mps_find_control(m->control, sizeof m->control)) {
        snprintf(why, cap,
                 "MPS requested, and %s is not there (looked for it on PATH; "
                 "CUIPC_MPS_CONTROL names another)",
                 m->control);
        return false;
    }
    if (cuipc_mps_host_active(m->pipe_dir, sizeof m->pipe_dir, &m->daemon_pid)) {
        m->active = true; /* the host's: used as it is, never stopped by us */
        set_client_env(m);
        return true;
    }
    const char *tmp = getenv("TMPDIR");
    /* Short: the pipe directory holds Unix sockets, whose paths stop at 107 bytes. */
    snprintf(m->base_dir, sizeof m->base_dir, "%s/cuipc-mps-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(m->base_dir) == NULL) {
        snprintf(why, cap, "MPS: cannot make a private directory %s: %s", m->base_dir,
                 strerror(errno));
        return false;
    }
    snprintf(m->pipe_dir, sizeof m->pipe_dir, "%s/pipe", m->base_dir);
    snprintf(m->log_dir, sizeof m->log_dir, "%s/log", m->base_dir);
    char out[1024] = "";
    int rc = -1;
    if (mkdir(m->pipe_dir, 0700) != 0 || mkdir(m->log_dir, 0700) != 0)
        snprintf(out, sizeof out, "mkdir: %s", strerror(errno));
    else
        rc = run_control(m->control, m->pipe_dir, m->log_dir, "-d", NULL, out, sizeof out);
    /* -d returns once the daemon forked off; its pid file follows. */
    uint64_t deadline = cuipc_h_now_ns() + 5000000000ull;
    while (rc == 0 && !alive(m->daemon_pid = read_pid_file(m->pipe_dir)) &&
           cuipc_h_now_ns() < deadline)
        cuipc_h_sleep_ns(10000000ull);
    if (rc != 0 || !alive(m->daemon_pid)) {
        snprintf(why, cap, "MPS: %s -d did not start a control daemon (exit %d%s%s)", m->control,
                 rc, out[0] ? ": " : "", out);
        if (alive(m->daemon_pid))
            kill(m->daemon_pid, SIGKILL);
        remove_tree(m->base_dir);
        return false;
    }
    int lifeline[2];
    if (pipe2(lifeline, O_CLOEXEC) != 0) {
        snprintf(why, cap, "MPS: pipe: %s", strerror(errno));
        quit_daemon(m);
        return false;
    }
    fflush(NULL);
    pid_t guard = fork();
    if (guard == 0) {
        close(lifeline[1]);
        guard_main(m, lifeline[0]);
    }
    close(lifeline[0]);
    if (guard < 0) {
        snprintf(why, cap, "MPS: fork: %s", strerror(errno));
        close(lifeline[1]);
        quit_daemon(m);
        return false;
    }
    m->guard_pid = guard;
    m->lifeline_fd = lifeline[1];
    m->active = m->ours = true;
    m->start_s = (double)(cuipc_h_now_ns() - t0) / 1e9;
    set_client_env(m);
    return true;
}

void cuipc_mps_stop(cuipc_mps *m) {
    if (!m->active)
        return;
    restore_client_env(m);
    if (m->ours) {
        close(m->lifeline_fd); /* the guard quits the daemon now */
        int status;
        while (waitpid(m->guard_pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    m->active = m->ours = false;
    m->lifeline_fd = -1;
}

json_t *cuipc_mps_json(const cuipc_mps *m, bool requested) {
    json_t *o = json_pack("{s:b, s:s, s:b}", "enabled", m->active, "source",
                          m->ours     ? "harness"
                          : m->active ? "host"
                                      : "none",
                          "requested", requested);
    if (m->active) {
        json_object_set_new(o, "pipe_directory", json_string(m->pipe_dir));
        json_object_set_new(o, "control", json_string(m->control));
        json_object_set_new(o, "daemon_pid", json_integer(m->daemon_pid));
    }
    if (m->ours)
        json_object_set_new(o, "start_s", json_real(m->start_s));
    return o;
}
