#include "test_util.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int cuipc_test_failures = 0;

int cuipc_test_finish(const char *name) {
    if (cuipc_test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, cuipc_test_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

pid_t cuipc_test_fork(int (*fn)(void *), void *arg) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(arg));
    return pid;
}

int cuipc_test_wait(pid_t pid, int timeout_ms) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st))
                return WEXITSTATUS(st);
            return -WTERMSIG(st);
        }
        if (r < 0 && errno != EINTR)
            return -1001;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms > timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1000;
        }
        usleep(1000);
    }
}

static char socket_dir[] = "/tmp/cuipc-test-XXXXXX";
static pid_t socket_dir_owner;

static void remove_socket_dir(void) {
    /* atexit also runs in children that exit(): only the process that made the dir removes it. */
    if (getpid() == socket_dir_owner)
        rmdir(socket_dir);
}

void cuipc_test_socket_path(char *buf, size_t n) {
    static int count;
    if (!socket_dir_owner) {
        REQUIRE(mkdtemp(socket_dir) != NULL);
        socket_dir_owner = getpid();
        atexit(remove_socket_dir);
    }
    snprintf(buf, n, "%s/s%d.sock", socket_dir, count++);
}

uint64_t cuipc_test_rand(uint64_t *s) {
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

#include "cuipc/gpu.h"

static int count_gpus_child(void *arg) {
    (void)arg;
    return cuipc_gpu_count() > 0 ? 0 : 1;
}

/* Asked in a child: CUDA initialised in this process before fork() would be unusable in the
 * children that GPU tests fork. */
void cuipc_test_require_gpu(void) {
    pid_t pid = cuipc_test_fork(count_gpus_child, NULL);
    if (cuipc_test_wait(pid, 60000) != 0) {
        printf("no usable CUDA device: skipping\n");
        exit(CUIPC_TEST_SKIP);
    }
}
