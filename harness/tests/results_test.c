/* Results writer and compare: files round-trip, regressions are caught at the tolerance edges,
 * and the compare command's exit codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "results.h"
#include "test_util.h"

static json_t *make(const char *name, const char *status, double p50, double p99, double gbps,
                    double mps) {
    return json_pack("{s:i, s:{s:s}, s:s, s:{s:f, s:f}, s:{s:{s:f, s:f}}}", "schema_version",
                     CUIPC_RESULTS_SCHEMA_VERSION, "scenario", "name", name, "status", status,
                     "latency_us", "p50", p50, "p99", p99, "throughput", "aggregate", "gbps", gbps,
                     "msgs_per_s", mps);
}

static int compare(json_t *base, json_t *cur) {
    cuipc_compare_opts o;
    cuipc_compare_opts_init(&o);
    FILE *devnull = fopen("/dev/null", "w");
    int n = cuipc_compare_one(base, cur, &o, devnull);
    fclose(devnull);
    json_decref(base);
    json_decref(cur);
    return n;
}

static void test_compare_one(void) {
    CHECK(compare(make("a", "passed", 10, 20, 5, 1000), make("a", "passed", 10, 20, 5, 1000)) == 0);
    /* Within tolerance (p50 +10%, p99 +20%, throughput -10% by default). */
    CHECK(compare(make("a", "passed", 10, 20, 5, 1000), make("a", "passed", 10.9, 23, 4.6, 910)) ==
          0);
    CHECK(compare(make("a", "passed", 10, 20, 5, 1000), make("a", "passed", 15, 20, 5, 1000)) == 1);
    CHECK(compare(make("a", "passed", 10, 20, 5, 1000), make("a", "passed", 10, 30, 5, 1000)) == 1);
    CHECK(compare(make("a", "passed", 10, 20, 5, 1000), make("a", "passed", 10, 20, 2, 500)) == 2);
    /* Below the absolute floor a percentage means nothing. */
    CHECK(compare(make("a", "passed", 1, 2, 5, 1000), make("a", "passed", 1.5, 2.5, 5, 1000)) == 0);
    CHECK(compare(make("a", "passed", 10, 20, 5, 1000), make("a", "failed", 10, 20, 5, 1000)) == 1);
    CHECK(compare(make("a", "skipped", 0, 0, 0, 0), make("a", "passed", 99, 99, 0, 0)) == 0);
}

static json_t *with_mps(json_t *res, bool enabled) {
    json_object_set_new(res, "environment",
                        json_pack("{s:{s:b, s:s}}", "mps", "enabled", enabled, "source",
                                  enabled ? "harness" : "none"));
    return res;
}

/* MPS against no MPS is refused and counted (the figures would differ for a reason that is not
 * a regression, in either direction); same-kind pairs compare as before, and a file without
 * environment.mps ran without it. */
static void test_compare_mps(void) {
    char why[256];
    json_t *a = with_mps(make("a", "passed", 10, 20, 5, 1000), true);
    json_t *b = make("a", "passed", 10, 20, 5, 1000);
    CHECK(cuipc_compare_mps_differs(b, a, why, sizeof why));
    CHECK(strstr(why, "base ran without MPS") != NULL && strstr(why, "under it") != NULL);
    CHECK(!cuipc_compare_mps_differs(a, a, why, sizeof why));
    json_decref(a);
    json_decref(b);
    /* Same figures, still refused: one count, never a silent pass. */
    CHECK(compare(with_mps(make("a", "passed", 40, 80, 5, 1000), true),
                  make("a", "passed", 40, 80, 5, 1000)) == 1);
    CHECK(compare(with_mps(make("a", "passed", 300, 600, 5, 1000), false),
                  with_mps(make("a", "passed", 40, 80, 5, 1000), true)) == 1);
    CHECK(compare(with_mps(make("a", "passed", 40, 80, 5, 1000), true),
                  with_mps(make("a", "passed", 40, 80, 5, 1000), true)) == 0);
    CHECK(compare(with_mps(make("a", "passed", 40, 80, 5, 1000), false),
                  make("a", "passed", 40, 80, 5, 1000)) == 0);
}

static void test_write_and_check(const char *dir) {
    char err[256];
    json_t *r = make("write_me", "passed", 1, 2, 3, 4);
    char sub[512];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    CHECK(cuipc_results_write(r, sub, err, sizeof err));
    char path[600];
    snprintf(path, sizeof path, "%s/write_me.json", sub);
    json_t *back = json_load_file(path, 0, NULL);
    CHECK(back != NULL && json_equal(back, r));
    json_decref(back);
    json_object_set_new(r, "schema_version", json_integer(7));
    CHECK(!cuipc_results_check(r, err, sizeof err));
    CHECK(strstr(err, "schema_version") != NULL);
    json_object_set_new(r, "schema_version", json_integer(1));
    json_object_set_new(r, "status", json_string("meh"));
    CHECK(!cuipc_results_write(r, sub, err, sizeof err));
    json_decref(r);
    unlink(path);
    snprintf(path, sizeof path, "%s/a/b", dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/a", dir);
    rmdir(path);
}

static int run_compare(const char *a, const char *b, const char *flag) {
    char *argv[6];
    int argc = 0;
    argv[argc++] = "compare";
    if (flag)
        argv[argc++] = (char *)flag;
    argv[argc++] = (char *)a;
    argv[argc++] = (char *)b;
    argv[argc] = NULL;
    fflush(stdout);
    return cuipc_compare_main(argc, argv);
}

static void test_compare_main(const char *dir) {
    char base[512], cur[512], err[256], bad[600];
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(cur, sizeof cur, "%s/cur", dir);
    json_t *b1 = make("s1", "passed", 10, 20, 5, 1000), *b2 = make("s2", "passed", 10, 20, 5, 1000);
    json_t *c1 = make("s1", "passed", 10, 20, 5, 1000), *c2 = make("s2", "passed", 30, 20, 5, 1000);
    REQUIRE(cuipc_results_write(b1, base, err, sizeof err));
    REQUIRE(cuipc_results_write(b2, base, err, sizeof err));
    REQUIRE(cuipc_results_write(c1, cur, err, sizeof err));
    REQUIRE(cuipc_results_write(c2, cur, err, sizeof err));
    CHECK(run_compare(base, base, NULL) == 0);
    CHECK(run_compare(base, cur, NULL) == 1);
    CHECK(run_compare(base, cur, "--p50-tolerance=500") == 0);
    CHECK(run_compare(base, cur, "--p50-tolerance=banana") == 2);
    snprintf(bad, sizeof bad, "%s/nonexistent", dir);
    CHECK(run_compare(base, bad, NULL) == 2);
    snprintf(bad, sizeof bad, "%s/garbage.json", dir);
    FILE *f = fopen(bad, "w");
    fputs("{not json", f);
    fclose(f);
    CHECK(run_compare(base, bad, NULL) == 2);
    /* A scenario missing from the new run is a regression. */
    char one[600];
    snprintf(one, sizeof one, "%s/s1.json", cur);
    CHECK(run_compare(base, one, NULL) == 1);
    unlink(bad);
    char p[700];
    const char *names[] = {"s1", "s2"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s.json", base, names[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s.json", cur, names[i]);
        unlink(p);
    }
    rmdir(base);
    rmdir(cur);
    json_decref(b1);
    json_decref(b2);
    json_decref(c1);
    json_decref(c2);
}

static void test_summary(void) {
    json_t *r[2] = {make("one", "passed", 1, 2, 3, 4), make("two", "skipped", 0, 0, 0, 0)};
    json_object_set_new(r[1], "reason", json_string("skipped: no GPU"));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cuipc_results_print_summary(f, r, 2);
    fclose(f);
    CHECK(strstr(buf, "one") && strstr(buf, "passed") && strstr(buf, "skipped: no GPU"));
    free(buf);
    json_decref(r[0]);
    json_decref(r[1]);
}

int main(void) {
    char dir[] = "/tmp/cuipc-results-test-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    test_compare_one();
    test_compare_mps();
    test_write_and_check(dir);
    test_compare_main(dir);
    test_summary();
    CHECK(rmdir(dir) == 0);
    return cuipc_test_finish("harness_results_test");
}
