/* A long-lived producer with workers that come and go, across real processes (default mode,
 * host tensors): departed consumers' rings are freed and places reused, the consumer checks the
 * producer's credentials, the attach phase survives silent and refused peers, timeouts hold,
 * bad configuration is refused at create, and running out of fds is one clear error.
 * Usage: test_services CASE (one CTest test per case). */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "consumer_internal.h"
#include "cuipc/cuipc.h"
#include "cuipc/shm_usage.h"
#include "test_util.h"

#define SEC 1000000000ll
#define MIB (1024.0 * 1024.0)

static char sock_path[100];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* This process's shared memory (what a leaked ring grows, touched or not). */
static double shm_mapped_bytes(void) {
    uint64_t bytes = 0;
    CHECK_OK(cuipc_shm_mapped_bytes(&bytes));
    return (double)bytes;
}

static int fd_count(void) {
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        n += fcntl(fd, F_GETFD) != -1;
    return n;
}

static cuipc_producer *make_producer(uint32_t consumers) {
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.host_pool_bytes = 1 << 20;
    cfg.max_consumers = consumers;
    cfg.full_timeout_ns = 10 * SEC;
    cfg.socket_path = sock_path;
    cuipc_producer *p = NULL;
    REQUIRE(cuipc_producer_create(&cfg, &p) == CUIPC_OK);
    return p;
}

static cuipc_status send_seq(cuipc_producer *p, uint64_t seq) {
    uint64_t data[32];
    for (int i = 0; i < 32; i++)
        data[i] = seq * 1000 + (uint64_t)i;
    cuipc_tensor t;
    int64_t shape[1] = {32};
    CHECK_OK(cuipc_tensor_init(&t, data, CUIPC_DEVICE_HOST, CUIPC_DTYPE_I64, 1, shape));
    cuipc_value *v = cuipc_value_dict();
    CHECK_OK(cuipc_dict_set(v, "seq", cuipc_value_int((int64_t)seq)));
    CHECK_OK(cuipc_dict_set(v, "x", cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    cuipc_status s = cuipc_producer_send(p, v, NULL, 10 * SEC);
    cuipc_value_free(v);
    return s;
}

/* Receive until closed (or `stop` messages); every message's data checked, seqs consecutive
 * from the first. Exit code: 0 all good; the number of messages is written to fd `report`. */
typedef struct recv_args {
    int stop;    /* messages then detach (-1: until closed) */
    int report;  /* pipe end for the count (-1: none) */
    bool linger; /* after `stop` messages, wait to be killed instead of detaching */
} recv_args;

static int receiver_main(void *arg) {
    recv_args *a = arg;
    cuipc_consumer *c = NULL;
    if (cuipc_consumer_attach(sock_path, 10 * SEC, &c) != CUIPC_OK) {
        fprintf(stderr, "attach: %s\n", cuipc_last_error());
        return 10;
    }
    cuipc_unwrap_options o;
    cuipc_unwrap_options_init(&o);
    int64_t got = 0, last = -1, bad = 0;
    while (a->stop < 0 || got < a->stop) {
        cuipc_message *m = NULL;
        cuipc_status s = cuipc_consumer_recv(c, 30 * SEC, &m);
        if (s == CUIPC_ERR_CLOSED)
            break;
        if (s != CUIPC_OK) {
            fprintf(stderr, "recv: %s\n", cuipc_last_error());
            return 11;
        }
        cuipc_value *v = NULL;
        if (cuipc_message_unwrap(m, &o, &v) != CUIPC_OK)
            return 12;
        int64_t seq = 0;
        seq = cuipc_value_as_int(cuipc_dict_get(v, "seq"));
        const cuipc_tensor *t = cuipc_value_as_tensor(cuipc_dict_get(v, "x"));
        for (int i = 0; t && i < 32; i++)
            bad += ((uint64_t *)t->data)[i] != (uint64_t)seq * 1000 + (uint64_t)i;
        bad += !t || (last >= 0 && seq != last + 1);
        last = seq;
        got++;
        cuipc_value_free(v);
        cuipc_message_free(m);
    }
    if (a->report >= 0 && write(a->report, &got, sizeof got) != sizeof got)
        bad++;
    if (a->linger)
        pause();
    cuipc_consumer_detach(c);
    return bad ? 13 : 0;
}

/* Wait until n consumers are attached, accepting. */
static void accept_n(cuipc_producer *p, uint32_t n) {
    REQUIRE(cuipc_producer_accept(p, n, 10 * SEC) == CUIPC_OK);
}

/* 200 consumers attach, take a few messages and leave (every other one killed) while one
 * consumer stays: the producer's fds and shared memory are flat, places are reused, and the
 * consumer that stays gets every message. */
static void test_churn(void) {
    enum { CYCLES = 200, PER = 3 };
    cuipc_test_socket_path(sock_path, sizeof sock_path);
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    recv_args stay = {.stop = -1, .report = pipefd[1]};
    pid_t stayer = cuipc_test_fork(receiver_main, &stay);
    cuipc_producer *p = make_producer(2);
    accept_n(p, 1);
    uint64_t seq = 0;
    CHECK_OK(send_seq(p, ++seq));
    double shm0 = 0;
    int fds0 = 0;
    for (int cycle = 0; cycle < CYCLES; cycle++) {
        bool kill_it = cycle % 2;
        recv_args go = {.stop = PER, .report = -1, .linger = kill_it};
        pid_t pid = cuipc_test_fork(receiver_main, &go);
        accept_n(p, 2);
        for (int i = 0; i < PER; i++)
            CHECK_OK(send_seq(p, ++seq));
        if (kill_it) {
            usleep(2000);
            kill(pid, SIGKILL);
            CHECK(cuipc_test_wait(pid, 10000) == -SIGKILL);
        } else {
            CHECK(cuipc_test_wait(pid, 10000) == 0);
        }
        /* The monitor notices the hang-up; the next send or accept frees the ring. */
        uint64_t t0 = now_ns();
        while (cuipc_producer_consumer_count(p) != 1 && now_ns() - t0 < 5ull * SEC)
            usleep(200);
        CHECK_OK(send_seq(p, ++seq));
        if (cycle == 1) { /* baseline once a ring came and went: lazily made state settled */
            shm0 = shm_mapped_bytes();
            fds0 = fd_count();
        }
    }
    double shm1 = shm_mapped_bytes();
    int fds1 = fd_count();
    printf("after %d attach/detach cycles: producer shared memory %.2f -> %.2f MiB, fds %d -> "
           "%d\n",
           CYCLES, shm0 / MIB, shm1 / MIB, fds0, fds1);
    CHECK(fds1 <= fds0 + 1);
    CHECK(shm1 <= shm0 + 1.5 * MIB); /* at most one ring (1 MiB) not freed yet */
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    CHECK(st.consumers_attached == CYCLES + 1);
    CHECK(st.consumers_detached == CYCLES / 2 && st.consumers_dead == CYCLES / 2);
    cuipc_producer_close(p);
    int64_t got = 0;
    CHECK(read(pipefd[0], &got, sizeof got) == sizeof got);
    CHECK(got == (int64_t)seq);
    CHECK(cuipc_test_wait(stayer, 20000) == 0);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    cuipc_producer_destroy(p);
}

/* ------------------------------------------------------------------ credentials */

static bool become_nobody(void) {
    struct passwd *pw = getpwnam("nobody");
    uid_t uid = pw ? pw->pw_uid : 65534;
    gid_t gid = pw ? pw->pw_gid : 65534;
    return setgid(gid) == 0 && setuid(uid) == 0 && getuid() == uid;
}

/* Can this process make a child of another uid? (CI runs as root.) */
static bool can_change_uid(void) {
    pid_t pid = fork();
    if (pid == 0)
        _exit(become_nobody() ? 0 : 1);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static char shared_dir[64];
static int sync_pipe[2];

/* A producer of uid nobody on a path this test (root) can reach; waits to be killed. */
static int foreign_producer_main(void *arg) {
    (void)arg;
    if (!become_nobody())
        return 20;
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.host_pool_bytes = 1 << 20;
    cfg.socket_path = sock_path;
    cuipc_producer *p = NULL;
    if (cuipc_producer_create(&cfg, &p) != CUIPC_OK) {
        fprintf(stderr, "foreign producer: %s\n", cuipc_last_error());
        return 21;
    }
    char b = 1;
    if (write(sync_pipe[1], &b, 1) != 1)
        return 22;
    /* The consumer refuses this producer: no attach completes, which is what the test wants. */
    cuipc_status_ignore(cuipc_producer_accept(p, 1, 30 * SEC));
    pause();
    return 0;
}

static void test_producer_credentials(void) {
    if (!can_change_uid()) {
        printf("skipped: cannot run a child as another uid (not root)\n");
        exit(CUIPC_TEST_SKIP);
    }
    snprintf(shared_dir, sizeof shared_dir, "/tmp/cuipc-cred-XXXXXX");
    REQUIRE(mkdtemp(shared_dir) != NULL);
    REQUIRE(chmod(shared_dir, 01777) == 0); /* a shared directory: anyone may bind in it */
    snprintf(sock_path, sizeof sock_path, "%s/attach.sock", shared_dir);
    REQUIRE(pipe(sync_pipe) == 0);
    pid_t prod = cuipc_test_fork(foreign_producer_main, NULL);
    char b;
    REQUIRE(read(sync_pipe[0], &b, 1) == 1);
    cuipc_consumer *c = NULL;
    CHECK_STATUS(cuipc_consumer_attach(sock_path, 5 * SEC, &c), CUIPC_ERR_PERMISSION);
    CHECK(strstr(cuipc_last_error(), "runs as uid") != NULL);
    printf("refused: %s\n", cuipc_last_error());
    /* Allowed by uid in the options: this side lets it be (the producer, which only takes
     * consumers of its own uid, then refuses us). */
    struct passwd *pw = getpwnam("nobody");
    uint32_t uid = pw ? pw->pw_uid : 65534;
    cuipc_attach_options o;
    cuipc_attach_options_init(&o);
    o.allowed_uids = &uid;
    o.n_allowed_uids = 1;
    cuipc_status s = cuipc_consumer_attach_with(sock_path, &o, 5 * SEC, &c);
    CHECK(s != CUIPC_OK && s != CUIPC_ERR_PERMISSION);
    CHECK(strstr(cuipc_last_error(), "runs as uid") == NULL);
    kill(prod, SIGKILL);
    cuipc_test_wait(prod, 5000);
    unlink(sock_path);
    rmdir(shared_dir);
}

/* A consumer of another uid connects first: it is refused and counted, and the attach phase
 * goes on to the real consumer. */
static int foreign_consumer_main(void *arg) {
    (void)arg;
    if (!become_nobody())
        return 20;
    cuipc_consumer *c = NULL;
    cuipc_status s = cuipc_consumer_attach(sock_path, 5 * SEC, &c);
    char b = 1;
    if (write(sync_pipe[1], &b, 1) != 1)
        return 22;
    return s == CUIPC_OK ? 23 : 0;
}

static void test_foreign_consumer(void) {
    if (!can_change_uid()) {
        printf("skipped: cannot run a child as another uid (not root)\n");
        exit(CUIPC_TEST_SKIP);
    }
    snprintf(shared_dir, sizeof shared_dir, "/tmp/cuipc-cred-XXXXXX");
    REQUIRE(mkdtemp(shared_dir) != NULL);
    REQUIRE(chmod(shared_dir, 0755) == 0);
    snprintf(sock_path, sizeof sock_path, "%s/attach.sock", shared_dir);
    REQUIRE(pipe(sync_pipe) == 0);
    cuipc_producer *p = make_producer(1);
    REQUIRE(chmod(sock_path, 0666) == 0); /* opened to everyone on purpose */
    pid_t foreign = cuipc_test_fork(foreign_consumer_main, NULL);
    recv_args a = {.stop = 1, .report = -1};
    pid_t real = -1;
    uint64_t t0 = now_ns();
    /* Accept with the foreign peer first in the queue; the real one comes once it was seen. */
    cuipc_status s = cuipc_producer_accept(p, 1, 300ll * 1000000);
    CHECK_STATUS(s, CUIPC_ERR_TIMEOUT);
    CHECK(strstr(cuipc_last_error(), "1 peers refused") != NULL);
    printf("attach phase: %s\n", cuipc_last_error());
    char b;
    CHECK(read(sync_pipe[0], &b, 1) == 1);
    real = cuipc_test_fork(receiver_main, &a);
    CHECK_OK(cuipc_producer_accept(p, 1, 10 * SEC));
    CHECK_OK(send_seq(p, 0));
    CHECK(cuipc_test_wait(real, 10000) == 0);
    CHECK(cuipc_test_wait(foreign, 10000) == 0);
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    CHECK(st.peers_refused == 1);
    printf("attach with a refused peer: %.2f s\n", (double)(now_ns() - t0) / 1e9);
    cuipc_producer_destroy(p);
    rmdir(shared_dir);
}

/* ------------------------------------------------------------------ attach phase */

/* Many connections that never speak, then two real consumers: both attach at once. */
static int silent_main(void *arg) {
    int n = *(int *)arg;
    int fds[128];
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        memcpy(a.sun_path, sock_path, strlen(sock_path) + 1); /* shorter: made by the test */
        if (connect(fds[i], (struct sockaddr *)&a, sizeof a) != 0)
            return 30;
    }
    char b = 1;
    if (write(sync_pipe[1], &b, 1) != 1)
        return 31;
    sleep(60); /* killed by the test */
    return 0;
}

static void test_silent_peers(void) {
    cuipc_test_socket_path(sock_path, sizeof sock_path);
    REQUIRE(pipe(sync_pipe) == 0);
    cuipc_producer *p = make_producer(2);
    int n_silent = 69;
    /* The kernel backlog holds 64 (+1): the producer takes them as they come. */
    pid_t silent = cuipc_test_fork(silent_main, &n_silent);
    uint64_t t0 = now_ns();
    CHECK_STATUS(cuipc_producer_accept(p, 2, 500ll * 1000000), CUIPC_ERR_TIMEOUT);
    char b;
    CHECK(read(sync_pipe[0], &b, 1) == 1);
    recv_args a = {.stop = 1, .report = -1};
    pid_t r1 = cuipc_test_fork(receiver_main, &a), r2 = cuipc_test_fork(receiver_main, &a);
    CHECK_OK(cuipc_producer_accept(p, 2, 10 * SEC));
    double took = (double)(now_ns() - t0) / 1e9;
    printf("2 consumers attached behind %d silent connections in %.2f s\n", n_silent, took);
    CHECK(took < 5.0);
    CHECK_OK(send_seq(p, 0));
    CHECK(cuipc_test_wait(r1, 10000) == 0);
    CHECK(cuipc_test_wait(r2, 10000) == 0);
    kill(silent, SIGKILL);
    cuipc_test_wait(silent, 5000);
    cuipc_producer_destroy(p);
}

/* ------------------------------------------------------------------ timeouts */

#define TIMEOUT_SLACK_S 0.5

/* Attach to a producer that never accepts and whose backlog is full: returns within its
 * timeout plus the slack. */
static int attach_full_backlog_main(void *arg) {
    (void)arg;
    cuipc_consumer *c = NULL;
    uint64_t t0 = now_ns();
    cuipc_status s = cuipc_consumer_attach(sock_path, 1 * SEC, &c);
    double took = (double)(now_ns() - t0) / 1e9;
    printf("attach with a full backlog: %s after %.3f s (%s)\n", cuipc_status_name(s), took,
           cuipc_last_error());
    fflush(stdout);
    return s == CUIPC_ERR_TIMEOUT && took <= 1.0 + TIMEOUT_SLACK_S ? 0 : 40;
}

/* Attach to a producer that never answers (connection queued, never accepted). */
static int attach_no_answer_main(void *arg) {
    (void)arg;
    cuipc_consumer *c = NULL;
    uint64_t t0 = now_ns();
    cuipc_status s = cuipc_consumer_attach(sock_path, 1 * SEC, &c);
    double took = (double)(now_ns() - t0) / 1e9;
    printf("attach with no answer: %s after %.3f s\n", cuipc_status_name(s), took);
    fflush(stdout);
    return s == CUIPC_ERR_TIMEOUT && took <= 1.0 + TIMEOUT_SLACK_S ? 0 : 41;
}

static void test_attach_timeouts(void) {
    cuipc_test_socket_path(sock_path, sizeof sock_path);
    cuipc_producer *p = make_producer(1); /* listening, never accepting */
    pid_t pid = cuipc_test_fork(attach_no_answer_main, NULL);
    CHECK(cuipc_test_wait(pid, 10000) == 0);
    int fds[256], n = 0;
    for (; n < 256; n++) {
        fds[n] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        memcpy(a.sun_path, sock_path, strlen(sock_path) + 1); /* shorter: made by the test */
        if (connect(fds[n], (struct sockaddr *)&a, sizeof a) != 0) {
            CHECK(errno == EAGAIN);
            close(fds[n]);
            break;
        }
    }
    printf("backlog full after %d connections\n", n);
    pid = cuipc_test_fork(attach_full_backlog_main, NULL);
    CHECK(cuipc_test_wait(pid, 10000) == 0);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    cuipc_producer_destroy(p);
}

/* ------------------------------------------------------------------ config */

static void test_bad_config(void) {
    cuipc_test_socket_path(sock_path, sizeof sock_path);
    cuipc_producer_config cfg;
    cuipc_producer *p = NULL;
    cuipc_producer_config_init(&cfg);
    cfg.ring_bytes = 1ull << 62;
    CHECK_STATUS(cuipc_producer_create(&cfg, &p), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "ring_bytes") != NULL);
    cuipc_producer_config_init(&cfg);
    cfg.full_policy = (cuipc_full_policy)9;
    CHECK_STATUS(cuipc_producer_create(&cfg, &p), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "full_policy 9") != NULL);
    cuipc_producer_config_init(&cfg);
    cfg.fit = (cuipc_fit)5;
    CHECK_STATUS(cuipc_producer_create(&cfg, &p), CUIPC_ERR_INVALID_ARG);
    CHECK(p == NULL);

    cuipc_tensor t;
    int64_t shape[1] = {4};
    CHECK_STATUS(cuipc_tensor_init(&t, NULL, CUIPC_DEVICE_HOST, CUIPC_DTYPE_F32, 1, shape),
                 CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "data is NULL") != NULL);

    /* A descriptor filled by hand with no data: refused at send, not a crash. */
    recv_args a = {.stop = -1, .report = -1};
    pid_t pid = cuipc_test_fork(receiver_main, &a);
    p = make_producer(1);
    accept_n(p, 1);
    uint64_t data[4] = {0};
    CHECK_OK(cuipc_tensor_init(&t, data, CUIPC_DEVICE_HOST, CUIPC_DTYPE_F32, 1, shape));
    t.data = NULL;
    cuipc_value *v = cuipc_value_dict();
    CHECK_OK(cuipc_dict_set(v, "seq", cuipc_value_int(0)));
    CHECK_OK(cuipc_dict_set(v, "x", cuipc_value_tensor(&t, CUIPC_OWNER_NONE)));
    CHECK_STATUS(cuipc_producer_send(p, v, NULL, SEC), CUIPC_ERR_INVALID_ARG);
    CHECK(strstr(cuipc_last_error(), "no data") != NULL);
    cuipc_value_free(v);
    cuipc_producer_close(p);
    CHECK(cuipc_test_wait(pid, 10000) == 0);
    cuipc_producer_destroy(p);
}

/* ------------------------------------------------------------------ fds */

static int ready_pipe[2], status_pipe[2];

/* A producer left with fds for exactly four consumers (their connection and ring each) and one
 * more connection: the fifth consumer's ring cannot be made. accept ends with one error naming
 * the cause at once, says nothing on stderr, and the consumer is told why. */
static int low_fd_producer_main(void *arg) {
    (void)arg;
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.host_pool_bytes = 1 << 20;
    cfg.max_consumers = 8;
    cfg.socket_path = sock_path;
    cuipc_producer *p = NULL;
    if (cuipc_producer_create(&cfg, &p) != CUIPC_OK)
        return 50;
    int err_pipe[2];
    if (pipe(err_pipe) != 0)
        return 51;
    fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
    int saved = dup(2);
    dup2(err_pipe[1], 2);
    /* New fds take the lowest free numbers below the limit: leave exactly 9 free there. */
    rlim_t limit = 0;
    for (int free_below = 0; free_below < 9; limit++)
        free_below += fcntl((int)limit, F_GETFD) == -1;
    struct rlimit rl = {.rlim_cur = limit, .rlim_max = limit};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 54;
    char b = 1;
    if (write(ready_pipe[1], &b, 1) != 1)
        return 55;
    uint64_t t0 = now_ns();
    cuipc_status s = cuipc_producer_accept(p, 8, 5 * SEC);
    double took = (double)(now_ns() - t0) / 1e9;
    char spill[256];
    ssize_t said = read(err_pipe[0], spill, sizeof spill);
    dup2(saved, 2);
    printf("accept with fds for 4 consumers: %s after %.2f s: %s (stderr: %zd bytes)\n",
           cuipc_status_name(s), took, cuipc_last_error(), said > 0 ? said : 0);
    bool ok = s == CUIPC_ERR_SYSTEM && strstr(cuipc_last_error(), "Too many open files") &&
              cuipc_producer_consumer_count(p) == 4 && said <= 0;
    fflush(stdout); /* the child ends with _exit */
    cuipc_producer_destroy(p);
    return ok ? 0 : 52;
}

/* Attach, say how it went on status_pipe (A: attached, R: refused for want of fds, F: other),
 * stay until the producer is gone. */
static int fd_consumer_main(void *arg) {
    (void)arg;
    cuipc_consumer *c = NULL;
    cuipc_status s = cuipc_consumer_attach(sock_path, 5 * SEC, &c);
    char b = s == CUIPC_OK ? 'A' : strstr(cuipc_last_error(), "Too many open files") ? 'R' : 'F';
    if (b != 'A')
        printf("consumer: %s\n", cuipc_last_error());
    fflush(stdout);
    if (write(status_pipe[1], &b, 1) != 1)
        return 70;
    if (s == CUIPC_OK) { /* stay (holding the producer's fds) until the producer is gone */
        cuipc_message *m = NULL;
        if (cuipc_consumer_recv(c, 10 * SEC, &m) == CUIPC_OK)
            cuipc_message_free(m);
        cuipc_consumer_detach(c);
    }
    return 0;
}

static void test_fd_exhaustion(void) {
    cuipc_test_socket_path(sock_path, sizeof sock_path);
    REQUIRE(pipe(ready_pipe) == 0 && pipe(status_pipe) == 0);
    pid_t prod = cuipc_test_fork(low_fd_producer_main, NULL);
    close(ready_pipe[1]); /* a producer that fails early ends the read */
    char b;
    REQUIRE(read(ready_pipe[0], &b, 1) == 1);
    char seen[6];
    pid_t cons[6];
    for (int i = 0; i < 6; i++) { /* one at a time: the fifth is the first without a ring */
        cons[i] = cuipc_test_fork(fd_consumer_main, NULL);
        CHECK(read(status_pipe[0], &seen[i], 1) == 1);
        if (i == 4)
            break;
    }
    CHECK(memcmp(seen, "AAAAR", 5) == 0);
    CHECK(cuipc_test_wait(prod, 30000) == 0);
    for (int i = 0; i < 5; i++)
        cuipc_test_wait(cons[i], 30000);
}

/* ------------------------------------------------------------------ crashed producers */

static char crash_dir[64];

static int crashing_producer_main(void *arg) {
    (void)arg;
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.host_pool_bytes = 1 << 20;
    cuipc_producer *p = NULL;
    if (cuipc_producer_create(&cfg, &p) != CUIPC_OK)
        return 60;
    const char *path = cuipc_producer_socket_path(p);
    snprintf(crash_dir, sizeof crash_dir, "%.*s", (int)(strrchr(path, '/') - path), path);
    if (write(sync_pipe[1], crash_dir, sizeof crash_dir) != sizeof crash_dir)
        return 61;
    raise(SIGKILL);
    return 62;
}

/* A producer that died leaves its private attach directory; the next producer removes it. */
static void test_crashed_producer_dir(void) {
    char tmp[64] = "/tmp/cuipc-tmp-XXXXXX";
    REQUIRE(mkdtemp(tmp) != NULL);
    setenv("TMPDIR", tmp, 1);
    REQUIRE(pipe(sync_pipe) == 0);
    pid_t pid = cuipc_test_fork(crashing_producer_main, NULL);
    REQUIRE(read(sync_pipe[0], crash_dir, sizeof crash_dir) == sizeof crash_dir);
    CHECK(cuipc_test_wait(pid, 10000) == -SIGKILL);
    struct stat st;
    CHECK(stat(crash_dir, &st) == 0); /* left behind */
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.host_pool_bytes = 1 << 20;
    cuipc_producer *p = NULL;
    CHECK_OK(cuipc_producer_create(&cfg, &p));
    CHECK(stat(crash_dir, &st) != 0 && errno == ENOENT);
    printf("%s: %s\n", crash_dir, errno == ENOENT ? "removed by the next producer" : "still there");
    cuipc_producer_destroy(p);
    CHECK(rmdir(tmp) == 0); /* and the live one cleaned up after itself */
}

static void *accept_one(void *p) {
    return (void *)(intptr_t)cuipc_producer_accept(p, 1, 10 * SEC);
}

/* Poll until the producer counts n consumers attached, or 3 s. */
static bool consumers_become(cuipc_producer *p, uint32_t n) {
    uint64_t until = now_ns() + 3 * SEC;
    while (cuipc_producer_consumer_count(p) != n && now_ns() < until)
        usleep(1000);
    return cuipc_producer_consumer_count(p) == n;
}

/* A detach that gave up on an ack queued on a stream (here marked queued by hand and left
 * unwritten, as by a GPU that has not got there) keeps the consumer's place, also against a
 * child forked meanwhile, and gives it back once the ack lands, while that child still lives. */
static void test_place_kept_until_acked(void) {
    cuipc_test_socket_path(sock_path, sizeof sock_path);
    cuipc_producer *p = make_producer(1);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, accept_one, p) == 0);
    cuipc_consumer *c = NULL;
    cuipc_status as = cuipc_consumer_attach(sock_path, 10 * SEC, &c);
    void *accepted = NULL;
    pthread_join(t, &accepted);
    REQUIRE(as == CUIPC_OK && accepted == NULL);
    CHECK_OK(send_seq(p, 1));
    cuipc_message *m = NULL;
    REQUIRE(cuipc_consumer_recv(c, 10 * SEC, &m) == CUIPC_OK && m->n_held == 1);
    /* Its ack "queued on a stream": marked, not written (the message let go without one). */
    held_chunk h = m->held[0];
    cuipc_chunk_ack_queued(h.view, h.slot, h.generation);
    m->held[0].released = true;
    cuipc_message_free(m);
    /* The word the GPU would write; left mapped by the detach that gives up (the keeper
     * releases the table once the ack is there, so nothing else of it is touched after). */
    _Atomic uint32_t *ack = &cuipc_sync_table_slot(h.view->sync, h.slot)->ack[c->index];

    CHECK(cuipc_consumer_detach_within(c, SEC / 10) == CUIPC_ERR_TIMEOUT);
    CHECK(strstr(cuipc_last_error(), "only once they have") != NULL);
    pid_t child = fork(); /* inherits the place's socket unless the fork handler closes it */
    REQUIRE(child >= 0);
    if (child == 0) {
        sleep(4);
        _exit(0);
    }
    usleep(300 * 1000);
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    CHECK(cuipc_producer_consumer_count(p) == 1 && st.consumers_detached == 0);
    CHECK(cuipc_producer_drain(p, 0) == CUIPC_ERR_TIMEOUT); /* its chunk not handed on */

    atomic_store(ack, h.generation); /* the ack lands, as a stream's write of it */
    CHECK(consumers_become(p, 0));
    cuipc_producer_stats_get(p, &st);
    CHECK(st.consumers_detached == 1); /* a goodbye, while the child still holds its copy */
    CHECK(waitpid(child, NULL, WNOHANG) == 0);
    CHECK_OK(cuipc_producer_drain(p, 5 * SEC));
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    cuipc_producer_destroy(p);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    const char *which = argc > 1 ? argv[1] : "";
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {{"churn", test_churn},
                 {"producer_credentials", test_producer_credentials},
                 {"foreign_consumer", test_foreign_consumer},
                 {"silent_peers", test_silent_peers},
                 {"attach_timeouts", test_attach_timeouts},
                 {"bad_config", test_bad_config},
                 {"fd_exhaustion", test_fd_exhaustion},
                 {"crashed_producer_dir", test_crashed_producer_dir},
                 {"place_kept_until_acked", test_place_kept_until_acked}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(which, cases[i].name) == 0) {
            cases[i].fn();
            return cuipc_test_finish(cases[i].name);
        }
    }
    fprintf(stderr, "usage: test_services CASE (unknown case '%s')\n", which);
    return 2;
}
