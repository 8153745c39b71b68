/* Results writer and compare: files round-trip; compare's U test, its verdicts at the tolerance
 * and significance edges, the refusal of mismatched runs, --common, --json and the exit codes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mann_whitney.h"
#include "repetitions.h"
#include "results.h"
#include "sha256.h"
#include "test_util.h"

static json_t *make(const char *name, const char *status, double p50, double p99, double gbps,
                    double mps) {
    return json_pack("{s:i, s:{s:s}, s:s, s:{s:f, s:f, s:i}, s:{s:{s:f, s:f}}}", "schema_version",
                     CUIPC_RESULTS_SCHEMA_VERSION, "scenario", "name", name, "status", status,
                     "latency_us", "p50", p50, "p99", p99, "count", 100, "throughput", "aggregate",
                     "gbps", gbps, "msgs_per_s", mps);
}

/* A repeated run: p50 of each repetition as given, the other figures steady. */
static json_t *make_reps(const char *name, const double *p50, size_t n) {
    json_t *runs = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(runs, json_pack("{s:i, s:s, s:f, s:f, s:f, s:f}", "repetition",
                                              (int)i + 1, "status", "passed", "latency_p50_us",
                                              p50[i], "latency_p99_us", 100.0, "throughput_gbps",
                                              5.0, "throughput_msgs_per_s", 1000.0));
    json_t *r = make(name, "passed", p50[0], 100, 5, 1000);
    json_object_set_new(r, "repetitions", cuipc_repetitions_summary(runs, 1));
    return r;
}

/* Each repetition's figure `key` set from v (n repetitions); returns r. */
static json_t *set_reps(json_t *r, const char *key, const double *v, size_t n) {
    json_t *runs = json_object_get(json_object_get(r, "repetitions"), "runs");
    for (size_t i = 0; i < n; i++)
        json_object_set_new(json_array_get(runs, i), key, json_real(v[i]));
    return r;
}

/* A repeated run with each repetition's fastest message too. */
static json_t *make_reps_min(const char *name, const double *p50, const double *min, size_t n) {
    return set_reps(make_reps(name, p50, n), "latency_min_us", min, n);
}

static cuipc_verdict compare(json_t *base, json_t *cur) {
    cuipc_compare_opts o;
    cuipc_compare_opts_init(&o);
    FILE *devnull = fopen("/dev/null", "w");
    cuipc_verdict v = cuipc_compare_one(base, cur, &o, devnull, NULL);
    fclose(devnull);
    json_decref(base);
    json_decref(cur);
    return v;
}

static void test_mann_whitney(void) {
    cuipc_mwu u;
    const double a3[] = {1, 2, 3}, b3[] = {4, 5, 6};
    REQUIRE(cuipc_mwu_greater(a3, 3, b3, 3, &u));
    CHECK(u.exact && u.u == 9 && fabs(u.p - 0.05) < 1e-12 && fabs(u.p_min - 0.05) < 1e-12);
    REQUIRE(cuipc_mwu_greater(b3, 3, a3, 3, &u)); /* the other direction: nothing greater */
    CHECK(u.u == 0 && fabs(u.p - 1.0) < 1e-12);
    /* Exact p-values with ties (midranks), checked against a brute-force enumeration. */
    const double x1[] = {1, 2, 3, 4}, y1[] = {3, 5, 6, 7};
    REQUIRE(cuipc_mwu_greater(x1, 4, y1, 4, &u));
    CHECK(fabs(u.p - 0.04285714285714286) < 1e-12);
    const double x2[] = {1, 2, 2}, y2[] = {2, 3, 3};
    REQUIRE(cuipc_mwu_greater(x2, 3, y2, 3, &u));
    CHECK(fabs(u.p - 0.15) < 1e-12);
    const double x5[] = {10, 11, 12, 13, 14}, y5[] = {12, 15, 16, 17, 18};
    REQUIRE(cuipc_mwu_greater(x5, 5, y5, 5, &u));
    CHECK(fabs(u.p - 0.01984126984126984) < 1e-12 && fabs(u.p_min - 1.0 / 252) < 1e-12);
    const double same[] = {7, 7, 7};
    REQUIRE(cuipc_mwu_greater(same, 3, same, 3, &u));
    CHECK(fabs(u.p - 1.0) < 1e-12);
    /* One sample a side: no significance can ever be established. */
    REQUIRE(cuipc_mwu_greater(x1, 1, y1, 1, &u));
    CHECK(fabs(u.p_min - 0.5) < 1e-12);
    /* Large samples: the normal approximation (30 + 30 all above: z = 6.65). */
    double lo[30], hi[30];
    for (int i = 0; i < 30; i++) {
        lo[i] = i;
        hi[i] = 100 + i;
    }
    REQUIRE(cuipc_mwu_greater(lo, 30, hi, 30, &u));
    CHECK(!u.exact && u.p < 1e-9 && u.p > 1e-12);
    CHECK(!cuipc_mwu_greater(lo, 0, hi, 30, &u));
    const double med[] = {5, 1, 3, 2};
    CHECK(cuipc_median(med, 4) == 2.5 && cuipc_median(med, 3) == 3);
}

static void test_sha256(void) {
    char hex[65];
    cuipc_sha256_hex("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    cuipc_sha256_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    cuipc_sha256_hex(two, strlen(two), hex);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
}

static void test_compare_one(void) {
    /* One sample a side: no test can vouch for any figure, within tolerance or not:
     * undecided, never ok and never a regression. */
    CHECK(compare(make("a", "passed", 10, 20, 5, 1000), make("a", "passed", 10, 20, 5, 1000)) ==
          CUIPC_VERDICT_UNDECIDED);
    CHECK(compare(make("a", "passed", 10, 20, 5, 1000), make("a", "passed", 15, 20, 5, 1000)) ==
          CUIPC_VERDICT_UNDECIDED);
    CHECK(compare(make("a", "passed", 10, 20, 5, 1000), make("a", "passed", 10, 20, 2, 500)) ==
          CUIPC_VERDICT_UNDECIDED);
    /* ... but a pass turned into a failure is a regression however often it ran. */
    CHECK(compare(make("a", "passed", 10, 20, 5, 1000), make("a", "failed", 10, 20, 5, 1000)) ==
          CUIPC_VERDICT_REGRESSION);
    CHECK(compare(make("a", "skipped", 0, 0, 0, 0), make("a", "passed", 99, 99, 0, 0)) ==
          CUIPC_VERDICT_SKIPPED);
    /* Repetitions: +30% in every one of 6 against 6 is a regression (p = 1/924 <= 0.01 / 4). */
    const double base5[] = {100, 104, 97, 101, 99, 102}, up5[] = {131, 128, 135, 126, 130, 129};
    CHECK(compare(make_reps("a", base5, 6), make_reps("a", up5, 6)) == CUIPC_VERDICT_REGRESSION);
    /* 5 against 5 cannot reach 0.0025 (p >= 1/252): undecided, whatever the change. */
    CHECK(compare(make_reps("a", base5, 5), make_reps("a", up5, 5)) == CUIPC_VERDICT_UNDECIDED);
    /* The median moved beyond tolerance, but the samples overlap: noise, not a regression. */
    const double noisy[] = {80, 150, 115, 90, 140, 120};
    CHECK(compare(make_reps("a", base5, 6), make_reps("a", noisy, 6)) == CUIPC_VERDICT_OK);
    /* Significant but within tolerance: ok. */
    const double small[] = {105, 106, 107, 108, 109, 108};
    CHECK(compare(make_reps("a", base5, 6), make_reps("a", small, 6)) == CUIPC_VERDICT_OK);
    /* 2 against 2 cannot reach p <= 0.05 (p >= 1/6): undecided. */
    CHECK(compare(make_reps("a", base5, 2), make_reps("a", up5, 2)) == CUIPC_VERDICT_UNDECIDED);
    /* Nor can 3 against 3 (p >= 1/20). */
    CHECK(compare(make_reps("a", base5, 3), make_reps("a", up5, 3)) == CUIPC_VERDICT_UNDECIDED);
    /* A repeated run against an unrepeated one: 6 against 1 reaches p = 1/7 at best. */
    CHECK(compare(make("a", "passed", 100, 100, 5, 1000), make_reps("a", up5, 6)) ==
          CUIPC_VERDICT_UNDECIDED);
    /* Within tolerance (p50 +10%, p99 +20%, throughput -10% by default) and below the latency
     * floor: ok. */
    const double near[] = {103, 107, 101, 104, 106, 105};
    CHECK(compare(make_reps("a", base5, 6), make_reps("a", near, 6)) == CUIPC_VERDICT_OK);
    const double tiny[] = {0.5, 0.52, 0.49, 0.51, 0.5, 0.5},
                 tiny_up[] = {0.9, 0.95, 0.92, 0.91, 0.93, 0.9};
    CHECK(compare(make_reps("a", tiny, 6), make_reps("a", tiny_up, 6)) == CUIPC_VERDICT_OK);
    /* A base so noisy that a change of the tolerance could not show: undecided, not ok. */
    const double wild[] = {50, 400, 80, 900, 120, 200};
    CHECK(compare(make_reps("a", wild, 6), make_reps("a", wild, 6)) == CUIPC_VERDICT_UNDECIDED);
    /* Improvements are never regressions. */
    CHECK(compare(make_reps("a", up5, 6), make_reps("a", base5, 6)) == CUIPC_VERDICT_OK);
    /* A loaded host: p50 too noisy to tell anything, but every repetition's fastest message
     * is 30 % slower: a cost every message pays, a regression (p = 1/924 <= 0.01 / 5). */
    const double min_base[] = {50, 51, 49, 50, 52, 50}, min_up[] = {66, 65, 67, 66, 64, 66};
    CHECK(compare(make_reps_min("a", wild, min_base, 6), make_reps_min("a", wild, min_up, 6)) ==
          CUIPC_VERDICT_REGRESSION);
    /* Throughput halved in every repetition: a regression in a closed loop; in an open loop it
     * is the schedule's rate, not judged (a loop that falls behind fails its run instead). */
    for (int loop = 0; loop < 2; loop++) {
        json_t *b = make_reps("a", base5, 6), *c = make_reps("a", base5, 6);
        json_t *runs = json_object_get(json_object_get(c, "repetitions"), "runs");
        for (size_t i = 0; i < 6; i++)
            json_object_set_new(json_array_get(runs, i), "throughput_gbps", json_real(2.5));
        const char *kind = loop ? "open" : "closed";
        json_object_set_new(json_object_get(b, "scenario"), "loop", json_string(kind));
        json_object_set_new(json_object_get(c, "scenario"), "loop", json_string(kind));
        CHECK(compare(b, c) == (loop ? CUIPC_VERDICT_OK : CUIPC_VERDICT_REGRESSION));
    }
    /* The producer's send 30 % slower in every repetition, the latency too noisy to show it:
     * a regression of the library's own path (p = 1/924 <= 0.01 / 4). */
    CHECK(compare(set_reps(make_reps("a", wild, 6), "send_p50_us", min_base, 6),
                  set_reps(make_reps("a", wild, 6), "send_p50_us", min_up, 6)) ==
          CUIPC_VERDICT_REGRESSION);
    /* Call timings too noisy to show a change of their tolerance, the latency and throughput
     * steady: ok. They are supporting evidence, not required to be sensitive (a GPU's own
     * jitter in a 1 us unwrap), and they still count in the Bonferroni family. */
    CHECK(compare(set_reps(make_reps_min("a", base5, min_base, 6), "unwrap_p50_us", wild, 6),
                  set_reps(make_reps_min("a", base5, min_base, 6), "unwrap_p50_us", wild, 6)) ==
          CUIPC_VERDICT_OK);
    /* Nothing but call timings measured on both sides (no message timed, an open loop's
     * throughput unjudged): ok would vouch for no figure at all; undecided. */
    {
        json_t *b = set_reps(make_reps("a", base5, 6), "send_p50_us", min_base, 6);
        json_t *c = set_reps(make_reps("a", base5, 6), "send_p50_us", min_base, 6);
        for (int side = 0; side < 2; side++) {
            json_t *r = side ? c : b;
            json_object_set_new(json_object_get(r, "scenario"), "loop", json_string("open"));
            json_t *runs = json_object_get(json_object_get(r, "repetitions"), "runs");
            for (size_t i = 0; i < 6; i++) {
                json_object_del(json_array_get(runs, i), "latency_p50_us");
                json_object_del(json_array_get(runs, i), "latency_p99_us");
            }
        }
        CHECK(compare(b, c) == CUIPC_VERDICT_UNDECIDED);
    }
    /* The same fastest messages: still undecided for the noisy p50, never a regression. */
    CHECK(compare(make_reps_min("a", wild, min_base, 6), make_reps_min("a", wild, min_base, 6)) ==
          CUIPC_VERDICT_UNDECIDED);
}

static json_t *with_mps(json_t *res, bool enabled) {
    json_object_set_new(res, "environment",
                        json_pack("{s:{s:b, s:s}}", "mps", "enabled", enabled, "source",
                                  enabled ? "harness" : "none"));
    return res;
}

/* MPS against no MPS is refused (the figures would differ for a reason that is not a
 * regression, in either direction), and a file without environment.mps ran without it. */
static void test_compare_mps(void) {
    char why[256];
    json_t *a = with_mps(make("a", "passed", 10, 20, 5, 1000), true);
    json_t *b = make("a", "passed", 10, 20, 5, 1000);
    CHECK(cuipc_compare_mps_differs(b, a, why, sizeof why));
    CHECK(strstr(why, "base ran without MPS") != NULL && strstr(why, "under it") != NULL);
    CHECK(!cuipc_compare_mps_differs(a, a, why, sizeof why));
    json_decref(a);
    json_decref(b);
    /* Same figures, still refused by compare (exit 2): see test_compare_main. */
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
    CHECK(cuipc_results_check(r, "r.json") == CUIPC_ERR_INVALID_ARG);
    CHECK(strcmp(cuipc_last_error(), "r.json: not a results file: schema_version is not 1") == 0);
    CHECK(!cuipc_results_write(r, sub, err, sizeof err));
    CHECK(strcmp(err, "schema_version is not 1") == 0);
    json_object_set_new(r, "schema_version", json_integer(1));
    json_object_set_new(r, "status", json_string("meh"));
    CHECK(cuipc_results_check(r, "r.json") == CUIPC_ERR_INVALID_ARG);
    CHECK(strcmp(cuipc_last_error(),
                 "r.json: not a results file: status 'meh' is not passed, failed or skipped") == 0);
    CHECK(!cuipc_results_write(r, sub, err, sizeof err));
    json_decref(r);
    unlink(path);
    snprintf(path, sizeof path, "%s/a/b", dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/a", dir);
    rmdir(path);
}

static int run_compare(const char *a, const char *b, const char *f1, const char *f2) {
    char *argv[8];
    int argc = 0;
    argv[argc++] = "compare";
    if (f1)
        argv[argc++] = (char *)f1;
    if (f2)
        argv[argc++] = (char *)f2;
    argv[argc++] = (char *)a;
    argv[argc++] = (char *)b;
    argv[argc] = NULL;
    fflush(stdout);
    return cuipc_compare_main(argc, argv);
}

static void set_env(json_t *r, const char *host, const char *gpu, int driver, int mps) {
    json_t *env = json_pack("{s:s, s:{s:i, s:[{s:s}], s:i}}", "hostname", host, "gpu", "count", 1,
                            "devices", "name", gpu, "driver_version", driver);
    if (mps >= 0)
        json_object_set_new(env, "mps", json_pack("{s:b}", "enabled", mps));
    json_object_set_new(r, "environment", env);
}

static void put(json_t *r, const char *dir) {
    char err[256];
    REQUIRE(cuipc_results_write(r, dir, err, sizeof err));
    json_decref(r);
}

/* Two runs of s1 in differing environments: compare exits `want` (2: refused), and judges them
 * with --allow-mismatch. Takes b and c. */
static void compare_envs(const char *dir, json_t *b, json_t *c, int want) {
    char bd[520], cd[520], one[600];
    snprintf(bd, sizeof bd, "%s/eb", dir);
    snprintf(cd, sizeof cd, "%s/ec", dir);
    put(b, bd);
    put(c, cd);
    CHECK(run_compare(bd, cd, NULL, NULL) == want);
    CHECK(run_compare(bd, cd, "--allow-mismatch", NULL) == 0);
    const char *dirs[] = {bd, cd};
    for (int k = 0; k < 2; k++) {
        snprintf(one, sizeof one, "%s/s1.json", dirs[k]);
        unlink(one);
        rmdir(dirs[k]);
    }
}

static void test_compare_main(const char *dir) {
    char base[512], cur[512], bad[600], js[600], one[700];
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(cur, sizeof cur, "%s/cur", dir);
    snprintf(js, sizeof js, "%s/verdicts.json", dir);
    const double b5[] = {100, 104, 97, 101, 99, 102}, up5[] = {131, 128, 135, 126, 130, 129};
    put(make_reps("s1", b5, 6), base);
    put(make_reps("s2", b5, 6), base);
    put(make_reps("s1", b5, 6), cur);
    put(make_reps("s2", up5, 6), cur);
    CHECK(run_compare(base, base, NULL, NULL) == 0);
    CHECK(run_compare(base, cur, NULL, NULL) == 1);
    CHECK(run_compare(base, cur, "--p50-tolerance=500", NULL) == 0);
    CHECK(run_compare(base, cur, "--p50-tolerance=banana", NULL) == 2);
    CHECK(run_compare(base, cur, "--alpha=1.5", NULL) == 2);
    /* A stricter alpha than 6 against 6 can reach: the same change is undecided. */
    CHECK(run_compare(base, cur, "--alpha=0.001", NULL) == 3);
    /* --json: the verdicts, with the test's figures. */
    CHECK(run_compare(base, cur, "--json", js) == 1);
    json_t *doc = json_load_file(js, 0, NULL);
    REQUIRE(doc != NULL);
    json_t *sc = json_object_get(doc, "scenarios");
    CHECK(json_array_size(sc) == 2);
    json_t *s2 = json_array_get(sc, 1);
    CHECK(strcmp(json_string_value(json_object_get(s2, "verdict")), "regression") == 0);
    json_t *m0 = json_array_get(json_object_get(s2, "metrics"), 0);
    CHECK(fabs(json_number_value(json_object_get(m0, "p_value")) - 1.0 / 924) < 1e-9);
    CHECK(json_integer_value(json_object_get(doc, "exit_code")) == 1);
    json_decref(doc);
    snprintf(bad, sizeof bad, "%s/nonexistent", dir);
    CHECK(run_compare(base, bad, NULL, NULL) == 2);
    snprintf(bad, sizeof bad, "%s/garbage.json", dir);
    FILE *f = fopen(bad, "w");
    fputs("{not json", f);
    fclose(f);
    CHECK(run_compare(base, bad, NULL, NULL) == 2);
    unlink(bad);
    /* A scenario missing from the new run is a regression, unless --common. */
    snprintf(one, sizeof one, "%s/s1.json", cur);
    CHECK(run_compare(base, one, NULL, NULL) == 1);
    CHECK(run_compare(base, one, "--common", NULL) == 0);
    /* Single runs kept in subdirectories (two builds interleaved in time) pool as repetitions:
     * 6 against 6. */
    for (int i = 0; i < 6; i++) {
        char sub[700];
        snprintf(sub, sizeof sub, "%s/pb/run-%d", dir, i);
        put(make("s1", "passed", b5[i], 100, 5, 1000), sub);
        snprintf(sub, sizeof sub, "%s/pc/run-%d", dir, i);
        put(make("s1", "passed", up5[i], 100, 5, 1000), sub);
    }
    char pb[600], pc[600];
    snprintf(pb, sizeof pb, "%s/pb", dir);
    snprintf(pc, sizeof pc, "%s/pc", dir);
    CHECK(run_compare(pb, pc, "--json", js) == 1);
    doc = json_load_file(js, 0, NULL);
    m0 = json_array_get(
        json_object_get(json_array_get(json_object_get(doc, "scenarios"), 0), "metrics"), 0);
    CHECK(json_integer_value(json_object_get(json_object_get(m0, "new"), "n")) == 6);
    json_decref(doc);
    CHECK(run_compare(pb, pb, NULL, NULL) == 0);
    for (int i = 0; i < 6; i++) {
        char sub[760];
        snprintf(sub, sizeof sub, "%s/run-%d/s1.json", pb, i);
        unlink(sub);
        *strrchr(sub, '/') = '\0';
        rmdir(sub);
        snprintf(sub, sizeof sub, "%s/run-%d/s1.json", pc, i);
        unlink(sub);
        *strrchr(sub, '/') = '\0';
        rmdir(sub);
    }
    rmdir(pb);
    rmdir(pc);
    /* Nothing in common: refused. */
    json_t *other = make_reps("s3", b5, 6);
    snprintf(bad, sizeof bad, "%s/other", dir);
    put(other, bad);
    snprintf(one, sizeof one, "%s/s3.json", bad);
    CHECK(run_compare(base, one, "--common", NULL) == 2);
    unlink(one);
    /* Different GPU models, drivers, hosts, MPS or scenario contents: refused unless
     * --allow-mismatch. */
    struct {
        const char *host, *gpu;
        int driver, mps;
        const char *sha;
    } envs[] = {
        {"h", "NVIDIA H200", 13000, 0, "aa"}, {"h", "NVIDIA H100 80GB HBM3", 13000, 0, "aa"},
        {"h", "NVIDIA H200", 12040, 0, "aa"}, {"other", "NVIDIA H200", 13000, 0, "aa"},
        {"h", "NVIDIA H200", 13000, 1, "aa"}, {"h", "NVIDIA H200", 13000, 0, "bb"},
        {"h", "NVIDIA H200", 13000, -1, "aa"}};
    for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
        json_t *b = make_reps("s1", b5, 6), *c = make_reps("s1", b5, 6);
        set_env(b, "h", "NVIDIA H200", 13000, 0);
        json_object_set_new(b, "scenario_sha256", json_string("aa"));
        set_env(c, envs[i].host, envs[i].gpu, envs[i].driver, envs[i].mps);
        json_object_set_new(c, "scenario_sha256", json_string(envs[i].sha));
        /* 0: same; 6: MPS not recorded reads as not enabled */
        compare_envs(dir, b, c, i == 0 || i == 6 ? 0 : 2);
    }
    /* The same host name, model and driver on another physical GPU (virtual machines repeat
     * host names): refused; the same GPU, or a side that did not record its UUID (older
     * results): judged. */
    const char *uuids[][2] = {
        {"GPU-1111", "GPU-2222"}, {"GPU-1111", "GPU-1111"}, {"GPU-1111", NULL}};
    for (size_t i = 0; i < 3; i++) {
        json_t *b = make_reps("s1", b5, 6), *c = make_reps("s1", b5, 6);
        set_env(b, "vm", "NVIDIA H200", 13000, 0);
        set_env(c, "vm", "NVIDIA H200", 13000, 0);
        json_t *bdev = json_array_get(
            json_object_get(json_object_get(json_object_get(b, "environment"), "gpu"), "devices"),
            0);
        json_t *cdev = json_array_get(
            json_object_get(json_object_get(json_object_get(c, "environment"), "gpu"), "devices"),
            0);
        json_object_set_new(bdev, "uuid", json_string(uuids[i][0]));
        if (uuids[i][1])
            json_object_set_new(cdev, "uuid", json_string(uuids[i][1]));
        compare_envs(dir, b, c, i == 0 ? 2 : 0);
    }
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
    rmdir(bad);
    unlink(js);
}

/* A role's report, as run.c merges it into "roles": {"report": {"role": ..., ...}}. */
static json_t *role(const char *name, const char *stage_key, double p50, int count) {
    json_t *stage = json_pack("{s:f, s:i}", "p50", p50, "count", count);
    json_t *report = json_pack("{s:s}", "role", name);
    if (strcmp(stage_key, "send_us") == 0)
        json_object_set_new(report, "send_us", stage);
    else
        json_object_set_new(report, "stages_us", json_pack("{s:o}", "unwrap", stage));
    return json_pack("{s:o}", "report", report);
}

/* The library's call timings come from the roles' reports: the producer's send p50, the median
 * of the consumers' unwrap p50; a role that timed no call, or none of that role, gives none. */
static void test_role_figures(void) {
    json_t *r = make("a", "passed", 10, 20, 5, 1000);
    json_object_set_new(r, "roles",
                        json_pack("[o, o, o, o, o]", role("producer", "send_us", 40, 100),
                                  role("consumer", "unwrap", 7, 100),
                                  role("consumer", "unwrap", 9, 100),
                                  role("consumer", "unwrap", 1000, 0), /* timed nothing */
                                  role("consumer", "unwrap", 8, 100)));
    json_t *f = cuipc_repetition_figures(r, 1);
    CHECK(json_real_value(json_object_get(f, "send_p50_us")) == 40);
    CHECK(json_real_value(json_object_get(f, "unwrap_p50_us")) == 8);
    json_decref(f);
    /* an unrepeated run: its one sample, read the same way */
    double v[4];
    REQUIRE(strcmp(cuipc_rep_metrics[3].key, "send_p50_us") == 0);
    CHECK(cuipc_results_samples(r, &cuipc_rep_metrics[3], v, 4) == 1 && v[0] == 40);
    json_decref(r);
    r = make("a", "passed", 10, 20, 5, 1000);
    json_object_set_new(r, "roles", json_pack("[o]", role("producer", "send_us", 40, 0)));
    f = cuipc_repetition_figures(r, 1);
    CHECK(json_object_get(f, "send_p50_us") == NULL && json_object_get(f, "unwrap_p50_us") == NULL);
    json_decref(f);
    json_decref(r);
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
    CHECK(strstr(buf, "totals: 1 passed, 0 failed, 1 skipped\n") != NULL);
    free(buf);
    json_decref(r[0]);
    json_decref(r[1]);
}

int main(void) {
    char dir[] = "/tmp/cuipc-results-test-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    test_mann_whitney();
    test_sha256();
    test_compare_one();
    test_role_figures();
    test_compare_mps();
    test_write_and_check(dir);
    test_compare_main(dir);
    test_summary();
    CHECK(rmdir(dir) == 0);
    return cuipc_test_finish("harness_results_test");
}
