/* Supervisor: clean runs, a crash named by its signal, a hang killed at the deadline, a death
 * before the barrier, expected deaths, exit codes. Real forked children throughout. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "failures.h"
#include "supervisor.h"
#include "test_util.h"
#include "util.h"

static int role_ok(const cuipc_role_ctx *ctx, void *arg) {
    cuipc_role_ready(ctx);
    return cuipc_role_wait_go(ctx, 5000) ? 0 : 9;
}

static int role_crash_after_go(const cuipc_role_ctx *ctx, void *arg) {
    cuipc_role_ready(ctx);
    cuipc_role_wait_go(ctx, 5000);
    cuipc_h_sleep_ns(50 * 1000000ull);
    raise(SIGSEGV);
    return 0;
}

static int role_sleep_long(const cuipc_role_ctx *ctx, void *arg) {
    cuipc_role_ready(ctx);
    cuipc_role_wait_go(ctx, 5000);
    cuipc_h_sleep_ns(60ull * 1000000000ull);
    return 0;
}

static int role_hang_ignoring_term(const cuipc_role_ctx *ctx, void *arg) {
    signal(SIGTERM, SIG_IGN);
    cuipc_role_ready(ctx);
    cuipc_role_wait_go(ctx, 5000);
    for (;;)
        pause();
    return 0;
}

static int role_exit3_before_ready(const cuipc_role_ctx *ctx, void *arg) {
    return 3;
}

static int role_exit_code(const cuipc_role_ctx *ctx, void *arg) {
    cuipc_role_ready(ctx);
    cuipc_role_wait_go(ctx, 5000);
    return *(int *)arg;
}

static int role_kill_self(const cuipc_role_ctx *ctx, void *arg) {
    cuipc_role_ready(ctx);
    cuipc_role_wait_go(ctx, 5000);
    raise(SIGKILL);
    return 0;
}

static cuipc_supervisor_opts opts(double ready, double run, double grace) {
    cuipc_supervisor_opts o;
    cuipc_supervisor_opts_init(&o);
    o.ready_timeout_s = ready;
    o.run_timeout_s = run;
    o.grace_s = grace;
    o.tick_ms = 5;
    return o;
}

static int ticks;
static void count_tick(void *ctx) {
    ticks++;
}

static void test_all_ok(void) {
    cuipc_child_spec s[3] = {{.role = "producer", .fn = role_ok},
                             {.role = "consumer", .index = 0, .fn = role_ok},
                             {.role = "consumer", .index = 1, .fn = role_ok}};
    cuipc_child_result r[3];
    cuipc_supervise_outcome out;
    cuipc_supervisor_opts o = opts(5, 10, 1);
    REQUIRE(cuipc_supervise(s, 3, &o, r, &out));
    CHECK(out.ok);
    CHECK(out.all_ready);
    CHECK(!out.timed_out);
    CHECK(out.first_failure == -1);
    for (int i = 0; i < 3; i++) {
        CHECK(r[i].exited && r[i].exit_code == 0 && r[i].expected && r[i].ready);
        CHECK(r[i].pid > 0 && kill(r[i].pid, 0) != 0); /* reaped */
    }
}

static void test_crash_named(void) {
    cuipc_child_spec s[3] = {{.role = "producer", .fn = role_sleep_long},
                             {.role = "consumer", .index = 0, .fn = role_sleep_long},
                             {.role = "consumer", .index = 1, .fn = role_crash_after_go}};
    cuipc_child_result r[3];
    cuipc_supervise_outcome out;
    cuipc_supervisor_opts o = opts(5, 30, 1);
    uint64_t t0 = cuipc_h_now_ns();
    REQUIRE(cuipc_supervise(s, 3, &o, r, &out));
    double took = (double)(cuipc_h_now_ns() - t0) / 1e9;
    CHECK(!out.ok);
    CHECK(out.first_failure == 2);
    CHECK(strstr(out.message, "consumer 1 killed by SIGSEGV") != NULL);
    CHECK(r[2].signal == SIGSEGV && !r[2].expected && !r[2].stopped_by_supervisor);
    /* The others were stopped by us, quickly, not left to sleep for a minute. */
    CHECK(r[0].signal == SIGTERM && r[0].stopped_by_supervisor);
    CHECK(r[1].signal == SIGTERM && r[1].stopped_by_supervisor);
    CHECK(took < 5.0);
    char d[96];
    CHECK(strcmp(cuipc_child_describe(&r[2], d, sizeof d), "killed by SIGSEGV") == 0);
}

static void test_hang_killed(void) {
    cuipc_child_spec s[2] = {{.role = "producer", .fn = role_ok},
                             {.role = "consumer", .index = 0, .fn = role_hang_ignoring_term}};
    cuipc_child_result r[2];
    cuipc_supervise_outcome out;
    cuipc_supervisor_opts o = opts(5, 0.5, 0.3);
    /* The tick runs while the supervisor waits: here it must wait (a hung child), where
     * children that exit at once may all be reaped before its first wait. */
    o.tick = count_tick;
    uint64_t t0 = cuipc_h_now_ns();
    REQUIRE(cuipc_supervise(s, 2, &o, r, &out));
    double took = (double)(cuipc_h_now_ns() - t0) / 1e9;
    CHECK(!out.ok);
    CHECK(out.timed_out);
    CHECK(strstr(out.message, "timed out") != NULL);
    CHECK(r[0].exited && r[0].exit_code == 0);
    CHECK(r[1].signal == SIGKILL && r[1].stopped_by_supervisor);
    CHECK(took >= 0.5 && took < 3.0);
}

static void test_death_before_ready(void) {
    cuipc_child_spec s[2] = {{.role = "producer", .fn = role_exit3_before_ready},
                             {.role = "consumer", .index = 0, .fn = role_sleep_long}};
    cuipc_child_result r[2];
    cuipc_supervise_outcome out;
    cuipc_supervisor_opts o = opts(10, 30, 1);
    uint64_t t0 = cuipc_h_now_ns();
    REQUIRE(cuipc_supervise(s, 2, &o, r, &out));
    CHECK((double)(cuipc_h_now_ns() - t0) / 1e9 < 5.0);
    CHECK(!out.ok && !out.all_ready);
    CHECK(strstr(out.message, "producer 0 exit 3") != NULL);
    /* The consumer never got a go: it saw EOF or was signalled, either way it is gone. */
    CHECK(r[1].pid > 0 && (r[1].exited || r[1].signal != 0));
}

static void test_expected_death_and_codes(void) {
    int three = 3;
    cuipc_child_spec s[3] = {
        {.role = "producer", .fn = role_ok},
        {.role = "consumer", .index = 0, .fn = role_kill_self, .expected_signal = SIGKILL},
        {.role = "consumer", .index = 1, .fn = role_exit_code, .arg = &three, .may_fail = true}};
    cuipc_child_result r[3];
    cuipc_supervise_outcome out;
    cuipc_supervisor_opts o = opts(5, 10, 1);
    REQUIRE(cuipc_supervise(s, 3, &o, r, &out));
    CHECK(out.ok);
    CHECK(r[1].signal == SIGKILL && r[1].expected);
    CHECK(r[2].exited && r[2].exit_code == 3 && r[2].expected);

    s[2].may_fail = false;
    REQUIRE(cuipc_supervise(s, 3, &o, r, &out));
    CHECK(!out.ok);
    CHECK(strstr(out.message, "consumer 1 exit 3") != NULL);
}

/* The reasons of a failed run as run.c orders them: the root cause first. */
static json_t *reasons(const cuipc_child_spec *s, const cuipc_child_result *r, size_t n,
                       const cuipc_supervise_outcome *out) {
    cuipc_failures f;
    cuipc_failures_init(&f);
    for (size_t i = 0; i < n; i++)
        cuipc_failures_add_child(&f, &s[i], &r[i], out, NULL);
    cuipc_failures_add_supervisor(&f, out);
    cuipc_failures_add(&f, CUIPC_FAILURE_VERDICT, 0, "3 message(s) sent but not received");
    json_t *list = cuipc_failures_take(&f);
    json_decref(f.entries);
    return list;
}

static void test_cause_first(void) {
    /* A run stopped by its own timeout: the timeout first, then the verdicts, then the
     * processes the supervisor killed. */
    cuipc_child_spec s[2] = {{.role = "producer", .fn = role_sleep_long},
                             {.role = "consumer", .index = 0, .fn = role_sleep_long}};
    cuipc_child_result r[3];
    cuipc_supervise_outcome out;
    cuipc_supervisor_opts o = opts(5, 0.5, 0.3);
    REQUIRE(cuipc_supervise(s, 2, &o, r, &out));
    json_t *list = reasons(s, r, 2, &out);
    CHECK(json_array_size(list) == 4);
    CHECK(strstr(json_string_value(json_array_get(list, 0)), "run timed out after") != NULL);
    CHECK(strstr(json_string_value(json_array_get(list, 1)), "not received") != NULL);
    /* The two it stopped, in the order they ended: either may end first on a loaded machine. */
    const char *third = json_string_value(json_array_get(list, 2));
    const char *fourth = json_string_value(json_array_get(list, 3));
    const char *producer = "producer 0: killed by SIGTERM (sent by the supervisor)";
    const char *consumer = "consumer 0: killed by SIGTERM (sent by the supervisor)";
    CHECK((strcmp(third, producer) == 0 && strcmp(fourth, consumer) == 0) ||
          (strcmp(third, consumer) == 0 && strcmp(fourth, producer) == 0));
    json_decref(list);
    /* A consumer that crashed: its crash first, not the producer's SIGTERM that followed. */
    cuipc_child_spec c[3] = {{.role = "producer", .fn = role_sleep_long},
                             {.role = "consumer", .index = 0, .fn = role_sleep_long},
                             {.role = "consumer", .index = 1, .fn = role_crash_after_go}};
    o = opts(5, 30, 1);
    REQUIRE(cuipc_supervise(c, 3, &o, r, &out));
    list = reasons(c, r, 3, &out);
    CHECK(json_array_size(list) == 4);
    CHECK(strcmp(json_string_value(json_array_get(list, 0)), "consumer 1: killed by SIGSEGV") == 0);
    CHECK(strstr(json_string_value(json_array_get(list, 2)), "SIGTERM") != NULL);
    json_decref(list);
}

int main(void) {
    test_all_ok();
    test_crash_named();
    test_hang_killed();
    test_death_before_ready();
    test_expected_death_and_codes();
    test_cause_first();
    CHECK(ticks > 0);
    return cuipc_test_finish("harness_supervisor_test");
}
