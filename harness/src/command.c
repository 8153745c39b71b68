/* Bounded child commands with captured output. */
#include "command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

int cuipc_h_run_capture(const char *const argv[], const char *const env[], const char *input,
                        char *out, size_t cap, int timeout_ms) {
    out[0] = '\0';
    int in[2], res[2];
    if (pipe2(in, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(res, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(res[1], 1);
        dup2(res[1], 2);
        for (size_t i = 0; env != NULL && env[i] != NULL; i++)
            putenv((char *)env[i]); /* this child's copy of the environment only */
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(res[1]);
    if (pid > 0 && input != NULL) {
        signal(SIGPIPE, SIG_IGN); /* a program that does not read its input is not our end */
        cuipc_h_write_all(in[1], input, strlen(input));
    }
    close(in[1]);
    size_t n = 0;
    uint64_t deadline = cuipc_h_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    struct pollfd pfd = {.fd = res[0], .events = POLLIN};
    while (pid > 0 && cuipc_h_now_ns() < deadline) {
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        char buf[512];
        ssize_t got = read(res[0], buf, sizeof buf);
        if (got <= 0)
            break;
        size_t take = (size_t)got < cap - 1 - n ? (size_t)got : cap - 1 - n;
        memcpy(out + n, buf, take);
        n += take;
    }
    out[n] = '\0';
    close(res[0]);
    if (pid < 0)
        return -1;
    int status = 0;
    pid_t done = waitpid(pid, &status, WNOHANG);
    /* Output closed but the program still runs, or its time is up: it must not hang us. */
    for (int i = 0; done == 0 && i < 50 && cuipc_h_now_ns() < deadline; i++) {
        cuipc_h_sleep_ns(10000000ull);
        done = waitpid(pid, &status, WNOHANG);
    }
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
