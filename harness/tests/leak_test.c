/* Leak sampler and verdicts on real process readings, slope and percentiles, size parsing,
 * and the hwloc binding report. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "binding.h"
#include "leak.h"
#include "stats.h"
#include "test_util.h"
#include "util.h"

static void test_slope_and_percentiles(void) {
    double x[5] = {0, 1, 2, 3, 4}, y[5] = {3, 5, 7, 9, 11};
    CHECK(fabs(cuipc_slope(x, y, 5) - 2.0) < 1e-12);
    CHECK(cuipc_slope(x, y, 1) == 0.0);
    uint64_t ns[1000];
    for (int i = 0; i < 1000; i++)
        ns[i] = (uint64_t)(1000 - i) * 1000; /* 1..1000 us, reversed */
    cuipc_latency_summary s;
    cuipc_latency_summarize(ns, 1000, &s);
    CHECK(s.count == 1000);
    CHECK(s.p50_us == 500.0 && s.p90_us == 900.0 && s.p99_us == 990.0 && s.p999_us == 999.0);
    CHECK(s.max_us == 1000.0 && s.min_us == 1.0);
    CHECK(fabs(s.mean_us - 500.5) < 1e-9);
    cuipc_latency_summarize(ns, 0, &s);
    CHECK(s.count == 0 && s.p99_us == 0);
}

/* RSS that grows 1 MiB per sample is flagged; the same sampler over flat memory is not. */
static void test_rss_verdicts(void) {
    bool on[CUIPC_LEAK_METRICS] = {[CUIPC_LEAK_RSS] = true, [CUIPC_LEAK_FDS] = true};
    cuipc_leak_sampler ls;
    REQUIRE(cuipc_leak_sampler_init(&ls, 64, 1, on, NULL, NULL));
    char *blocks[24];
    for (int i = 0; i < 24; i++) {
        blocks[i] = malloc(1 << 20);
        REQUIRE(blocks[i] != NULL);
        memset(blocks[i], i + 1, 1 << 20);
        cuipc_h_sleep_ns(2000000);
        cuipc_leak_sample_now(&ls);
    }
    cuipc_leak_verdict v;
    cuipc_leak_verdict_get(&ls, CUIPC_LEAK_RSS, 0.25, 4 << 20, &v);
    CHECK(v.have && v.leak);
    CHECK(v.growth > 8 << 20);
    cuipc_leak_verdict_get(&ls, CUIPC_LEAK_FDS, 0.25, 2, &v);
    CHECK(v.have && !v.leak);
    cuipc_leak_verdict_get(&ls, CUIPC_LEAK_SHM, 0.25, 0, &v);
    CHECK(!v.have); /* not enabled */
    for (int i = 0; i < 24; i++)
        free(blocks[i]);
    cuipc_leak_sampler_free(&ls);

    REQUIRE(cuipc_leak_sampler_init(&ls, 64, 1, on, NULL, NULL));
    for (int i = 0; i < 24; i++) {
        char *tmp = malloc(1 << 20); /* allocated and given back: no growth */
        memset(tmp, 1, 1 << 20);
        free(tmp);
        cuipc_h_sleep_ns(2000000);
        cuipc_leak_sample_now(&ls);
    }
    cuipc_leak_verdict_get(&ls, CUIPC_LEAK_RSS, 0.25, 4 << 20, &v);
    CHECK(v.have && !v.leak);
    cuipc_leak_sampler_free(&ls);
}

/* An fd leak is seen; decimation keeps the buffer bounded over a long run. */
static void test_fds_and_decimation(void) {
    bool on[CUIPC_LEAK_METRICS] = {[CUIPC_LEAK_FDS] = true};
    cuipc_leak_sampler ls;
    REQUIRE(cuipc_leak_sampler_init(&ls, 16, 1, on, NULL, NULL));
    int fds[40];
    for (int i = 0; i < 40; i++) {
        fds[i] = open("/dev/null", O_RDONLY);
        cuipc_leak_sample_now(&ls);
    }
    CHECK(ls.n <= 16);
    CHECK(ls.interval_ns > 1000000); /* doubled at least once */
    cuipc_leak_verdict v;
    cuipc_leak_verdict_get(&ls, CUIPC_LEAK_FDS, 0.0, 4, &v);
    /* The fitted growth depends on when each sample was taken (a preempted test spaces them
     * unevenly); the first and last kept samples do not. */
    CHECK(v.have && v.leak && v.last - v.first > 30);
    for (int i = 0; i < 40; i++)
        close(fds[i]);
    cuipc_leak_sampler_free(&ls);
    CHECK(cuipc_read_fd_count() >= 3);
    CHECK(cuipc_read_rss_bytes() > 0);
    CHECK(!isnan(cuipc_read_shm_mapped_bytes()));
}

/* The shared-memory metric is this process's own: another process's 3 MiB file in /dev/shm
 * does not move it, a memfd this process maps does (by its size, touched or not). */
static void test_shm_is_own(void) {
    double before = cuipc_read_shm_mapped_bytes();
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/cuipc-leak-test-%d", (int)getpid());
    int fd = open(path, O_CREAT | O_RDWR | O_EXCL, 0600);
    if (fd >= 0) {
        static char block[1 << 20];
        memset(block, 1, sizeof block);
        for (int i = 0; i < 3; i++)
            CHECK(write(fd, block, sizeof block) == (ssize_t)sizeof block);
        close(fd);
        CHECK(cuipc_read_shm_mapped_bytes() == before);
        unlink(path);
    }
    int mfd = memfd_create("cuipc-leak-test", MFD_CLOEXEC);
    REQUIRE(mfd >= 0 && ftruncate(mfd, 2 << 20) == 0);
    void *m = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    REQUIRE(m != MAP_FAILED);
    CHECK(cuipc_read_shm_mapped_bytes() == before + (2 << 20));
    munmap(m, 2 << 20);
    close(mfd);
    CHECK(cuipc_read_shm_mapped_bytes() == before);
}

static void test_util(void) {
    uint64_t v;
    CHECK(cuipc_h_parse_size("4096", &v) && v == 4096);
    CHECK(cuipc_h_parse_size("64KiB", &v) && v == 65536);
    CHECK(cuipc_h_parse_size("1.5GB", &v) && v == 1500000000ull);
    CHECK(cuipc_h_parse_size("2 MiB", &v) && v == 2u << 20);
    CHECK(!cuipc_h_parse_size("1.5B", &v));
    CHECK(!cuipc_h_parse_size("-1", &v));
    CHECK(!cuipc_h_parse_size("10 parsecs", &v));
    CHECK(!cuipc_h_parse_size("99999999TiB", &v));
    char buf[32];
    CHECK(strcmp(cuipc_h_format_size(64u << 20, buf, sizeof buf), "64 MiB") == 0);
    CHECK(strcmp(cuipc_h_format_size(100, buf, sizeof buf), "100 B") == 0);
    CHECK(strcmp(cuipc_h_signal_name(SIGSEGV, buf, sizeof buf), "SIGSEGV") == 0);
}

static void test_binding(void) {
    cuipc_binding_result r;
    cuipc_bind_self(CUIPC_BIND_NONE, "", -1, 0, &r);
    CHECK(strcmp(r.how, "none") == 0 && r.cpuset[0] != '\0' && !r.cpu_bound);
    /* Index-based choice in a child (so this process keeps its CPUs). */
    pid_t pid = fork();
    if (pid == 0) {
        cuipc_binding_result c;
        cuipc_bind_self(CUIPC_BIND_AUTO, "", -1, 1, &c);
        bool ok = (strcmp(c.how, "core-by-index") == 0 || strcmp(c.how, "numa-by-index") == 0) &&
                  c.requested[0] != '\0' && (!c.cpu_bound || strcmp(c.requested, c.cpuset) == 0) &&
                  (c.cpu_bound || c.warnings[0] != '\0');
        _exit(ok ? 0 : 1);
    }
    CHECK(cuipc_test_wait(pid, 10000) == 0);
    pid = fork();
    if (pid == 0) {
        cuipc_binding_result c;
        cuipc_bind_self(CUIPC_BIND_EXPLICIT, "not-a-list", -1, 0, &c);
        _exit(!c.cpu_bound && strstr(c.warnings, "not-a-list") != NULL ? 0 : 1);
    }
    CHECK(cuipc_test_wait(pid, 10000) == 0);
}

int main(void) {
    test_slope_and_percentiles();
    test_rss_verdicts();
    test_fds_and_decimation();
    test_shm_is_own();
    test_util();
    test_binding();
    return cuipc_test_finish("harness_leak_test");
}
