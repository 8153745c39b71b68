/* MPS control daemon lifecycle with a stand-in control program (harness/tests/fake-mps-control):
 * our daemon starts with private directories and the clients' environment, answers commands,
 * and is quit at the end, also when the harness dies by SIGKILL; a daemon the host already
 * runs is used and left alone; no control program is a clear refusal. Real processes. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mps.h"
#include "test_util.h"
#include "util.h"

static bool alive(int pid) {
    return cuipc_mps_pid_alive(pid);
}

/* The daemon ends within 10 s (the guard's quit, or ours). */
static bool gone_soon(int pid) {
    for (int i = 0; i < 500 && alive(pid); i++)
        cuipc_h_sleep_ns(20000000ull);
    return !alive(pid);
}

static void test_start_stop(void) {
    cuipc_mps m;
    char why[512] = "";
    REQUIRE(cuipc_mps_start(&m, why, sizeof why));
    CHECK(m.active && m.ours);
    CHECK(alive(m.daemon_pid));
    const char *pipe = getenv("CUDA_MPS_PIPE_DIRECTORY");
    CHECK(pipe != NULL && strcmp(pipe, m.pipe_dir) == 0);
    CHECK(getenv("CUDA_MPS_LOG_DIRECTORY") != NULL);
    struct stat st;
    CHECK(stat(m.pipe_dir, &st) == 0 && (st.st_mode & 077) == 0); /* private */
    char out[256];
    CHECK(cuipc_mps_command(&m, "get_server_list", out, sizeof out));
    CHECK(strstr(out, "4242") != NULL);
    json_t *j = cuipc_mps_json(&m, true);
    CHECK(json_is_true(json_object_get(j, "enabled")));
    CHECK(strcmp(json_string_value(json_object_get(j, "source")), "harness") == 0);
    json_decref(j);
    int daemon = m.daemon_pid;
    char base[sizeof m.base_dir];
    snprintf(base, sizeof base, "%s", m.base_dir);
    cuipc_mps_stop(&m);
    CHECK(!alive(daemon)); /* stop waits for the guard, which waited for the daemon */
    CHECK(stat(base, &st) != 0);
    CHECK(getenv("CUDA_MPS_PIPE_DIRECTORY") == NULL);
    cuipc_mps_stop(&m); /* twice is harmless */
}

/* A harness that dies by SIGKILL after starting MPS leaves no daemon behind. */
static int start_and_die(void *arg) {
    int fd = *(int *)arg;
    cuipc_mps m;
    char why[512];
    if (!cuipc_mps_start(&m, why, sizeof why))
        return 3;
    cuipc_h_write_all(fd, &m.daemon_pid, sizeof m.daemon_pid);
    raise(SIGKILL);
    return 0;
}

static void test_killed_harness(void) {
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t child = cuipc_test_fork(start_and_die, &p[1]);
    close(p[1]);
    int daemon = 0;
    CHECK(read(p[0], &daemon, sizeof daemon) == (ssize_t)sizeof daemon);
    close(p[0]);
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK(daemon > 0);
    CHECK(gone_soon(daemon));
}

/* An MPS the host runs: used, said so, and never stopped by us. */
static void test_host_daemon(void) {
    char dir[] = "/tmp/cuipc-mps-host-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    pid_t host = fork();
    if (host == 0) {
        execlp("sleep", "sleep", "60", (char *)NULL);
        _exit(127);
    }
    char pidfile[128];
    snprintf(pidfile, sizeof pidfile, "%s/%s", dir, CUIPC_MPS_PID_FILE);
    FILE *f = fopen(pidfile, "w");
    REQUIRE(f != NULL);
    fprintf(f, "%d\n", (int)host);
    fclose(f);
    setenv("CUDA_MPS_PIPE_DIRECTORY", dir, 1);
    cuipc_mps m;
    char why[512];
    REQUIRE(cuipc_mps_start(&m, why, sizeof why));
    CHECK(m.active && !m.ours);
    CHECK(m.daemon_pid == host);
    CHECK(strcmp(m.pipe_dir, dir) == 0);
    json_t *j = cuipc_mps_json(&m, false);
    CHECK(strcmp(json_string_value(json_object_get(j, "source")), "host") == 0);
    json_decref(j);
    cuipc_mps_stop(&m);
    CHECK(alive(host));
    /* The clients' variable has its value from before start again. */
    CHECK(getenv("CUDA_MPS_PIPE_DIRECTORY") && strcmp(getenv("CUDA_MPS_PIPE_DIRECTORY"), dir) == 0);
    kill(host, SIGKILL);
    waitpid(host, NULL, 0);
    unlink(pidfile);
    rmdir(dir);
    unsetenv("CUDA_MPS_PIPE_DIRECTORY");
}

static void test_no_control(void) {
    setenv("CUIPC_MPS_CONTROL", "/nonexistent/nvidia-cuda-mps-control", 1);
    cuipc_mps m;
    char why[512] = "";
    CHECK(!cuipc_mps_start(&m, why, sizeof why));
    CHECK(strstr(why, "/nonexistent/nvidia-cuda-mps-control") != NULL);
    CHECK(!m.active);
}

int main(int argc, char **argv) {
    REQUIRE(argc == 2);
    setenv("CUIPC_MPS_CONTROL", argv[1], 1);
    unsetenv("CUDA_MPS_PIPE_DIRECTORY");
    test_start_stop();
    test_killed_harness();
    test_host_daemon();
    test_no_control();
    return cuipc_test_finish("harness_mps_test");
}
