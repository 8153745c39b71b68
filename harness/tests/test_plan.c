/* The planner against hand-computed answers: exact smallest sizes for tiny traces, FIFO waits
 * under the wait policy, strict workload errors that point at the problem, the example
 * workloads, and replay speed on 100k messages. */
#include <dirent.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byte_size.h"
#include "plan.h"
#include "test_util.h"

#define MIB (1024ull * 1024ull)

static char scratch[1024];

static void write_file(const char *name, const char *text) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs(text, f);
    fclose(f);
}

static cuipc_status load_text(const char *json, cuipc_plan_workload *w) {
    return cuipc_plan_workload_parse(json, "inline.json", scratch, w);
}

static cuipc_plan_result replay(const cuipc_plan_workload *w, cuipc_plan_policy policy,
                                uint64_t size) {
    cuipc_plan_options o;
    cuipc_plan_options_init(&o);
    o.policy = policy;
    cuipc_plan_result r;
    CHECK_OK(cuipc_plan_replay(w, &o, size, NULL, &r));
    return r;
}

/* Three 1 MiB tensors 1 ms apart: held 10 ms they overlap (3 MiB), held 0.5 ms they do not. */
static void test_exact_sizes(void) {
    write_file("three_long.csv", "# arrival_us,bytes,hold_us\n"
                                 "0,1048576,10000\n1000,1048576,10000\n2000,1048576,10000\n");
    write_file("three_short.csv", "arrival_us,bytes,hold_us\n"
                                  "0,1048576,500\n1000,1048576,500\n2000,1048576,500\n");
    cuipc_plan_workload w;
    CHECK_OK(load_text("{\"trace\": \"three_long.csv\"}", &w));
    CHECK(w.n == 3 && w.consumers == 1);
    cuipc_plan_result r = replay(&w, CUIPC_PLAN_FAIL, 3 * MIB);
    CHECK(r.full_events == 0 && r.served == 3 && r.peak_used == 3 * MIB);
    r = replay(&w, CUIPC_PLAN_FAIL, 3 * MIB - 256);
    CHECK(r.full_events == 1 && r.served == 2);
    cuipc_plan_workload_free(&w);

    CHECK_OK(load_text("{\"trace\": \"three_short.csv\"}", &w));
    r = replay(&w, CUIPC_PLAN_FAIL, 1 * MIB);
    CHECK(r.full_events == 0 && r.served == 3 && r.peak_used == MIB);
    cuipc_plan_workload_free(&w);

    /* A release at the very time of an arrival frees room for it (releases are applied first). */
    write_file("touching.csv", "0,1048576,1000\n1000,1048576,1000\n");
    CHECK_OK(load_text("{\"trace\": \"touching.csv\"}", &w));
    r = replay(&w, CUIPC_PLAN_FAIL, MIB);
    CHECK(r.full_events == 0);
    cuipc_plan_workload_free(&w);

    /* Two consumers: the chunk is free only after the slower one; copy time delays both. */
    write_file("two_consumers.csv", "0,1048576,500;3000\n1000,1048576,500;3000\n");
    CHECK_OK(load_text("{\"trace\": \"two_consumers.csv\"}", &w));
    CHECK(w.consumers == 2);
    CHECK(replay(&w, CUIPC_PLAN_FAIL, MIB).full_events == 1);
    CHECK(replay(&w, CUIPC_PLAN_FAIL, 2 * MIB).full_events == 0);
    cuipc_plan_workload_free(&w);
}

/* End to end through the CLI: the search finds exactly 3 MiB and writes plan.json. */
static void test_cli(void) {
    write_file("three_long.json", "{\"name\": \"three\", \"trace\": \"three_long.csv\"}");
    char wl[1200], out[1200], plan[1300];
    snprintf(wl, sizeof wl, "%s/three_long.json", scratch);
    snprintf(out, sizeof out, "%s/out", scratch);
    char *argv[] = {"plan", wl, "--out", out, "--headroom", "0.25", NULL};
    CHECK(cuipc_plan_main(6, argv) == 0);
    snprintf(plan, sizeof plan, "%s/plan.json", out);
    json_error_t err;
    json_t *root = json_load_file(plan, 0, &err);
    REQUIRE(root);
    json_t *rec = json_object_get(root, "recommendation");
    CHECK(json_integer_value(json_object_get(root, "schema_version")) == 1);
    CHECK(json_integer_value(json_object_get(rec, "found_bytes")) == (json_int_t)(3 * MIB));
    CHECK(json_integer_value(json_object_get(rec, "recommended_bytes")) ==
          (json_int_t)(3 * MIB + 3 * MIB / 4));
    CHECK(json_is_true(json_object_get(rec, "minus_10pct_misses_target")));
    CHECK(json_array_size(json_object_get(root, "tries")) >= 4);
    json_decref(root);
    /* occupancy.csv: header plus rows, peak 3 MiB used. */
    snprintf(plan, sizeof plan, "%s/occupancy.csv", out);
    FILE *f = fopen(plan, "r");
    REQUIRE(f);
    char line[256];
    CHECK(fgets(line, sizeof line, f) && strncmp(line, "time_s,used_bytes", 17) == 0);
    unsigned long long peak = 0, used;
    double t, frag;
    unsigned in_flight;
    while (fscanf(f, "%lf,%llu,%u,%lf\n", &t, &used, &in_flight, &frag) == 4)
        peak = used > peak ? used : peak;
    fclose(f);
    CHECK(peak == 3 * MIB);

    /* Unreachable: --max below what is needed exits 1; bad option exits 2. */
    char *argv2[] = {"plan", wl, "--max", "2MiB", NULL};
    CHECK(cuipc_plan_main(4, argv2) == 1);
    char *argv3[] = {"plan", wl, "--policy", "sometimes", NULL};
    CHECK(cuipc_plan_main(4, argv3) == 2);
    /* Sizes as scenario files spell them: 3 MB is below the 3 MiB needed (exit 1, not 2). */
    char *argv4[] = {"plan", wl, "--max", "3MB", NULL};
    CHECK(cuipc_plan_main(4, argv4) == 1);
    char *argv5[] = {"plan", wl, "--max", "1 TB", NULL};
    CHECK(cuipc_plan_main(4, argv5) == 0);
}

/* Wait policy, by hand. Pool 2 MiB:
 *   A 2 MiB at 0 held 10 ms            -> served at 0, wait 0, free at 10 ms
 *   B 1 MiB at 1 ms held 1 ms          -> waits for A: served at 10 ms (wait 9 ms), free at 11
 *   C 1 MiB at 2 ms held 1 ms          -> FIFO behind B: served at 10 ms (wait 8 ms), free at 11
 *   D 2 MiB at 3 ms held 1 ms          -> needs B and C gone: served at 11 ms (wait 8 ms)
 *   E 1 KiB at 3.5 ms held 1 ms        -> FIFO behind D, which holds all 2 MiB until 12 ms:
 *                                         served at 12 ms (wait 8.5 ms) */
static void test_wait_policy(void) {
    write_file("fifo.csv", "0,2097152,10000\n1000,1048576,1000\n2000,1048576,1000\n"
                           "3000,2097152,1000\n3500,1024,1000\n");
    cuipc_plan_workload w;
    CHECK_OK(load_text("{\"trace\": \"fifo.csv\"}", &w));
    cuipc_plan_result r = replay(&w, CUIPC_PLAN_WAIT, 2 * MIB);
    CHECK(r.served == 5);
    CHECK(r.full_events == 4); /* B found no room, C, D and E queued behind a waiter */
    /* Waits (us): 0, 9000, 8000, 8000, 8500 -> sorted 0, 8000, 8000, 8500, 9000. */
    CHECK(r.max_wait_us == 9000.0);
    CHECK(r.p50_wait_us == 8000.0);
    CHECK(r.p99_wait_us == 9000.0);
    CHECK(r.mean_wait_us == (0 + 9000 + 8000 + 8000 + 8500) / 5.0);
    /* Same trace, fail policy: A fills the pool until 10 ms, so B..E all fall back. */
    r = replay(&w, CUIPC_PLAN_FAIL, 2 * MIB);
    CHECK(r.full_events == 4 && r.served == 1 && r.max_wait_us == 0);
    cuipc_plan_workload_free(&w);

    /* Copy time: 1 MiB at 1.048576 GB/s takes 1 ms before the 1 ms hold starts. */
    write_file("copy.csv", "0,1048576,1000\n1500,1048576,1000\n");
    CHECK_OK(load_text("{\"trace\": \"copy.csv\", \"copy_gb_per_s\": 1.048576}", &w));
    r = replay(&w, CUIPC_PLAN_WAIT, MIB);
    CHECK(r.max_wait_us == 500.0); /* first chunk free at 2 ms, second arrived at 1.5 ms */
    cuipc_plan_workload_free(&w);
}

static void expect_error(const char *json, const char *needle) {
    cuipc_plan_workload w;
    cuipc_status s = load_text(json, &w);
    CHECK(s != CUIPC_OK);
    if (s != CUIPC_OK && !strstr(cuipc_last_error(), needle)) {
        fprintf(stderr, "error \"%s\" does not mention \"%s\"\n", cuipc_last_error(), needle);
        cuipc_test_failures++;
    }
    if (s == CUIPC_OK)
        cuipc_plan_workload_free(&w);
}

static void test_malformed(void) {
    expect_error("{\n  \"consumers\": 2,\n  oops\n}", "inline.json:3:");
    expect_error("{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": \"poisson\", "
                 "\"rat_per_s\": 5}, \"bytes\": {\"kind\": \"constant\", \"value\": 1}, "
                 "\"hold_us\": {\"kind\": \"constant\", \"value\": 1}}",
                 "arrivals.rat_per_s: unknown key");
    expect_error("{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": \"poisson\", "
                 "\"rate_per_s\": 5}, \"bytes\": {\"kind\": \"gaussian\"}, "
                 "\"hold_us\": {\"kind\": \"constant\", \"value\": 1}}",
                 "bytes.kind");
    expect_error("{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": \"constant\", "
                 "\"rate_per_s\": 5}, \"bytes\": {\"kind\": \"choice\", \"values\": [\"1MiB\", "
                 "\"2 parsecs\"]}, \"hold_us\": {\"kind\": \"constant\", \"value\": 1}}",
                 "bytes.values[1]");
    expect_error("{\"consumers\": 0, \"duration_s\": 1}", "consumers");
    expect_error("{\"trace\": \"three_long.csv\", \"extra\": 1}", "extra: unknown key");
    write_file("bad_row.csv", "0,1048576,100\n10,-5,100\n");
    expect_error("{\"trace\": \"bad_row.csv\"}", "bad_row.csv:2:");
    write_file("bad_order.csv", "10,1048576,100\n5,1048576,100\n");
    expect_error("{\"trace\": \"bad_order.csv\"}", "bad_order.csv:2");
    write_file("bad_holds.csv", "0,1048576,100;200\n10,1048576,100\n");
    expect_error("{\"trace\": \"bad_holds.csv\"}", "bad_holds.csv:2");
    expect_error("{\"trace\": \"does_not_exist.csv\"}", "does_not_exist.csv");
    /* Not regular files: refused at once, not read forever nor waited on (opening a FIFO with
     * no writer blocks). */
    char fifo[1200];
    snprintf(fifo, sizeof fifo, "%s/trace.fifo", scratch);
    unlink(fifo);
    REQUIRE(mkfifo(fifo, 0600) == 0);
    expect_error("{\"trace\": \"trace.fifo\"}", "trace.fifo cannot be opened");
    cuipc_plan_workload w;
    CHECK(cuipc_plan_workload_load(fifo, &w) != CUIPC_OK);
    CHECK(strstr(cuipc_last_error(), "cannot be opened") != NULL);
    unlink(fifo);
    expect_error("{\"trace\": \"/dev/zero\"}", "/dev/zero cannot be opened");
}

/* A workload's byte quantities take the sizes a scenario takes, with the same meaning. */
static void test_size_grammar(void) {
    cuipc_plan_workload w;
    CHECK_OK(load_text("{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": "
                       "\"constant\", \"rate_per_s\": 10}, \"bytes\": {\"kind\": \"choice\", "
                       "\"values\": [\"64MB\", \"64 MiB\", \"1.5GB\", \"4KB\", \"0.5TiB\"]}, "
                       "\"hold_us\": {\"kind\": \"constant\", \"value\": 1}}",
                       &w));
    CHECK(w.n >= 10);
    for (uint64_t i = 0; i < w.n; i++) {
        uint64_t b = w.req[i].bytes, v;
        CHECK(b == 64000000 || b == 64 * MIB || b == 1500000000 || b == 4000 ||
              b == 512ull * 1024 * MIB);
        char text[32];
        snprintf(text, sizeof text, "%llu", (unsigned long long)b);
        CHECK(cuipc_h_parse_size(text, &v) && v == b);
    }
    uint64_t mb = 0;
    CHECK(cuipc_h_parse_size("64MB", &mb) && mb == 64000000);
    cuipc_plan_workload_free(&w);
    expect_error("{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": "
                 "\"constant\", \"rate_per_s\": 10}, \"bytes\": {\"kind\": \"constant\", "
                 "\"value\": \"64 parsecs\"}, \"hold_us\": {\"kind\": \"constant\", \"value\": 1}}",
                 "inline.json:1:126: $.bytes.value: '64 parsecs' is not a size");
    expect_error("{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": "
                 "\"constant\", \"rate_per_s\": 10}, \"bytes\": {\"kind\": \"constant\", "
                 "\"value\": \"2TB\"}, \"hold_us\": {\"kind\": \"constant\", \"value\": 1}}",
                 "$.bytes.value: 2e+12 is out of range");
}

/* Synthetic: deterministic by seed, the right number of arrivals, and a fast replay. */
static void test_synthetic(void) {
    const char *spec = "{\"consumers\": 2, \"duration_s\": 10, \"seed\": 7, "
                       "\"arrivals\": {\"kind\": \"poisson\", \"rate_per_s\": 10000}, "
                       "\"bytes\": {\"kind\": \"uniform\", \"min\": \"1MiB\", \"max\": \"4MiB\"}, "
                       "\"hold_us\": {\"kind\": \"exponential\", \"mean\": 500}}";
    cuipc_plan_workload a, b;
    CHECK_OK(load_text(spec, &a));
    CHECK_OK(load_text(spec, &b));
    /* 100k expected, Poisson sd ~316: 5 sd either side. */
    CHECK(a.n > 98400 && a.n < 101600);
    CHECK(a.n == b.n && memcmp(a.req, b.req, a.n * sizeof *a.req) == 0);
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint64_t i = 0; i < a.n; i++) {
        lo = a.req[i].bytes < lo ? a.req[i].bytes : lo;
        hi = a.req[i].bytes > hi ? a.req[i].bytes : hi;
        if (i)
            CHECK(a.req[i].arrival_ns >= a.req[i - 1].arrival_ns);
    }
    CHECK(lo >= MIB && hi <= 4 * MIB);
    cuipc_plan_result r = replay(&a, CUIPC_PLAN_FAIL, 64 * MIB);
    CHECK(r.served + r.full_events == a.n);
    fprintf(stderr, "100k-message replay at 64 MiB: %.1f ms, %llu full, peak %.1f MiB\n",
            r.replay_ms, (unsigned long long)r.full_events, (double)r.peak_used / MIB);
    /* The replay's speed is information, not a verdict: ASan on a loaded 2-core machine took
     * 2.6 s. */
    cuipc_plan_workload_free(&a);
    cuipc_plan_workload_free(&b);
}

/* Burst arrivals: burst_size messages every period_s, spacing_us apart; strict keys. */
static void test_burst(void) {
    const char *spec = "{\"consumers\": 1, \"duration_s\": 0.25, \"arrivals\": {\"kind\": "
                       "\"burst\", \"burst_size\": 3, \"period_s\": 0.1, \"spacing_us\": 1000}, "
                       "\"bytes\": {\"kind\": \"constant\", \"value\": \"1MiB\"}, "
                       "\"hold_us\": {\"kind\": \"constant\", \"value\": 500}}";
    cuipc_plan_workload w;
    CHECK_OK(load_text(spec, &w));
    static const uint64_t want_ms[] = {0, 1, 2, 100, 101, 102, 200, 201, 202};
    CHECK(w.n == 9 && w.messages == 9);
    for (uint64_t i = 0; i < w.n && i < 9; i++)
        CHECK(w.req[i].arrival_ns == want_ms[i] * 1000000ull);
    /* Held 0.5 ms, 1 ms apart: the three of a burst never overlap. */
    CHECK(replay(&w, CUIPC_PLAN_FAIL, MIB).full_events == 0);
    cuipc_plan_workload_free(&w);
    CHECK_OK(load_text("{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": "
                       "\"burst\", \"burst_size\": 4, \"period_s\": 0.5}, \"bytes\": "
                       "{\"kind\": \"constant\", \"value\": \"1MiB\"}, \"hold_us\": "
                       "{\"kind\": \"constant\", \"value\": 500}}",
                       &w));
    CHECK(w.n == 8 && replay(&w, CUIPC_PLAN_FAIL, 2 * MIB).full_events == 2 * 2);
    CHECK(replay(&w, CUIPC_PLAN_FAIL, 4 * MIB).full_events == 0);
    cuipc_plan_workload_free(&w);
    const char *tail = ", \"bytes\": {\"kind\": \"constant\", \"value\": 1}, \"hold_us\": "
                       "{\"kind\": \"constant\", \"value\": 1}}";
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": \"burst\", "
             "\"rate_per_s\": 5, \"burst_size\": 2, \"period_s\": 1}%s",
             tail);
    expect_error(buf, "inline.json:1:79: $.arrivals.rate_per_s: unknown key 'rate_per_s' (allowed: "
                      "kind, burst_size");
    snprintf(buf, sizeof buf,
             "{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": \"burst\", "
             "\"period_s\": 1}%s",
             tail);
    expect_error(buf, "$.arrivals: missing required key 'burst_size'");
    snprintf(buf, sizeof buf,
             "{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": \"burst\", "
             "\"burst_size\": 2.5, \"period_s\": 1}%s",
             tail);
    expect_error(buf, "arrivals.burst_size: must be an integer");
    snprintf(buf, sizeof buf,
             "{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": \"burst\", "
             "\"burst_size\": 11, \"period_s\": 0.01, \"spacing_us\": 1000}%s",
             tail);
    expect_error(buf, "arrivals.spacing_us");
    snprintf(buf, sizeof buf,
             "{\"consumers\": 1, \"duration_s\": 1, \"arrivals\": {\"kind\": \"poisson\", "
             "\"rate_per_s\": 5, \"burst_size\": 2}%s",
             tail);
    expect_error(buf, "arrivals.burst_size: unknown key");
}

/* Seeds: the file's seed unless replaced; each seed another sample; a trace ignores it. */
static void test_seeds(void) {
    const char *spec = "{\"consumers\": 1, \"duration_s\": 1, \"seed\": 5, "
                       "\"arrivals\": {\"kind\": \"poisson\", \"rate_per_s\": 1000}, "
                       "\"bytes\": {\"kind\": \"uniform\", \"min\": 1, \"max\": 1000000}, "
                       "\"hold_us\": {\"kind\": \"constant\", \"value\": 1}}";
    cuipc_plan_workload a, b, c;
    uint64_t five = 5, six = 6;
    CHECK_OK(load_text(spec, &a));
    CHECK(a.synthetic && a.seed == 5);
    CHECK_OK(cuipc_plan_workload_parse_seeded(spec, "inline.json", scratch, &five, &b));
    CHECK(a.n == b.n && memcmp(a.req, b.req, a.n * sizeof *a.req) == 0);
    CHECK_OK(cuipc_plan_workload_parse_seeded(spec, "inline.json", scratch, &six, &c));
    CHECK(c.seed == 6 && (c.n != a.n || memcmp(a.req, c.req, a.n * sizeof *a.req) != 0));
    cuipc_plan_workload_free(&a);
    cuipc_plan_workload_free(&b);
    cuipc_plan_workload_free(&c);
}

static void test_examples_parse(void) {
    DIR *d = opendir(CUIPC_PLAN_WORKLOADS);
    REQUIRE(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", CUIPC_PLAN_WORKLOADS, e->d_name);
        cuipc_plan_workload w;
        cuipc_status s = cuipc_plan_workload_load(path, &w);
        CHECK_OK(s);
        if (s == CUIPC_OK) {
            CHECK(w.n > 0 && w.consumers >= 1);
            cuipc_plan_workload_free(&w);
        }
        n++;
    }
    closedir(d);
    CHECK(n >= 3);
}

int main(void) {
    snprintf(scratch, sizeof scratch, "%s", CUIPC_PLAN_SCRATCH);
    mkdir(scratch, 0755);
    test_exact_sizes();
    test_cli();
    test_wait_policy();
    test_malformed();
    test_size_grammar();
    test_synthetic();
    test_burst();
    test_seeds();
    test_examples_parse();
    return cuipc_test_finish("test_plan");
}
