/* Scenario key "workload": a planner workload replaces the sizes, the schedule, the consumer
 * count and the hold times; keys that would say the same are refused by their path, and bad
 * workloads are refused at parse time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "scenario_expect.h"

static char dir[] = "/tmp/cuipc-scn-workload-XXXXXX";
static char scenario_file[256];

static void write_file(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* Trace rows: arrival_us,bytes,hold_us;hold_us (3 requests, 2 consumers). */
#define TRACE "arrival_us,bytes,hold_us\n0,1000,500;700\n2500,300000,100;200\n4000,4096,0;50\n"
#define HEAD "{\"name\": \"w\", \"mode\": \"default\", \"workload\": \"wl.json\",\n"

static void test_replay(void) {
    cuipc_scenario s;
    REQUIRE(parse(HEAD "\"consumers\": {\"unwrap\": \"borrow\"}}", &s));
    CHECK(cuipc_scenario_replays(&s));
    CHECK(strstr(s.workload.file, "wl.json") != NULL && s.workload.file[0] == '/');
    CHECK(s.consumers.count == 2);
    CHECK(s.consumers.unwrap == CUIPC_UNWRAP_BORROW);
    CHECK(s.consumers.hold_ns == 0);
    CHECK(s.run.iterations == 3 && s.run.open_loop && s.run.rate_hz > 0);
    CHECK(s.run.timeout_s >= 60.0 + 0.004);
    CHECK(s.tensors.per_message == 1);
    CHECK(s.tensors.max_bytes == 300000); /* the producer's buffer holds the largest request */
    CHECK(s.tensors.location == CUIPC_LOCATION_HOST);
    CHECK(s.workload.w.req[1].arrival_ns == 2500000);
    CHECK(s.workload.w.hold_ns[1 * 2 + 1] == 200000);
    uint64_t want[3] = {1000, 300000, 4096};
    for (uint64_t i = 0; i < 3; i++) {
        int dt = 0;
        CHECK(cuipc_scenario_tensor_bytes(&s, i, 0, &dt) == want[i]);
        CHECK(dt == CUIPC_DTYPE_U8);
    }
    cuipc_scenario_free(&s);
    cuipc_scenario_free(&s); /* twice is harmless */
    CHECK(!cuipc_scenario_replays(&s));

    /* Sections the workload makes optional, and their other keys still apply. */
    REQUIRE(parse("{\"name\": \"w\", \"mode\": \"cuda_ipc_pool\", \"workload\": \"wl.json\","
                  "\"pool\": {\"gpu_bytes\": \"1MiB\", \"full_policy\": \"fail\"},"
                  "\"tensors\": {\"location\": \"device\"},"
                  "\"consumers\": {\"devices\": [1, 2], \"unwrap\": \"borrow\"},"
                  "\"run\": {\"warmup_iterations\": 1, \"timeout_s\": 30}}",
                  &s));
    CHECK(s.needs_gpu && s.tensors.location == CUIPC_LOCATION_DEVICE);
    CHECK(s.consumers.devices[1] == 2);
    CHECK(s.run.timeout_s == 30 && s.run.warmup_iterations == 1);
    cuipc_scenario_free(&s);

    /* A workload with 2 tensors per message: one request (message here) per tensor. */
    REQUIRE(parse("{\"name\": \"w\", \"mode\": \"default\", \"workload\": \"tp2.json\"}", &s));
    CHECK(s.run.iterations == 2 * s.workload.w.messages);
    CHECK(s.consumers.count == 3);
    cuipc_scenario_free(&s);
}

static void test_conflicts(void) {
    expect_error(HEAD "\"tensors\": {\"sizes\": {\"list\": [4096]}}}", "$.tensors.sizes",
                 "conflicts with $.workload");
    expect_error(HEAD "\"tensors\": {\"per_message\": 2}}", "$.tensors.per_message", NULL);
    expect_error(HEAD "\"tensors\": {\"dtypes\": [\"f32\"]}}", "$.tensors.dtypes", NULL);
    expect_error(HEAD "\"consumers\": {\"count\": 2}}", "$.consumers.count", NULL);
    expect_error(HEAD "\"consumers\": {\"hold_us\": 5}}", "$.consumers.hold_us", NULL);
    expect_error(HEAD "\"run\": {\"iterations\": 5}}", "$.run.iterations", NULL);
    expect_error(HEAD "\"run\": {\"duration_s\": 5}}", "$.run.duration_s", NULL);
    expect_error(HEAD "\"run\": {\"loop\": \"open\"}}", "$.run.loop", NULL);
    expect_error(HEAD "\"run\": {\"rate_hz\": 10}}", "$.run.rate_hz", NULL);
    /* The line:column of the conflicting value is named. */
    expect_error(HEAD "\"run\": {\"iterations\": 5}}", ":2:", NULL);
    /* Without a workload the sections stay required. */
    expect_error("{\"name\": \"w\", \"mode\": \"default\"}", "missing required key 'tensors'",
                 NULL);
}

static void test_bad_workloads(void) {
    expect_error("{\"name\": \"w\", \"mode\": \"default\", \"workload\": 3}", "$.workload",
                 "file name");
    expect_error("{\"name\": \"w\", \"mode\": \"default\", \"workload\": \"\"}", "$.workload",
                 NULL);
    expect_error("{\"name\": \"w\", \"mode\": \"default\", \"workload\": \"nope.json\"}",
                 "$.workload", "nope.json");
    /* The planner's own message comes through (key path inside the workload). */
    expect_error("{\"name\": \"w\", \"mode\": \"default\", \"workload\": \"unknown_key.json\"}",
                 "$.workload", "unknown key");
    expect_error("{\"name\": \"w\", \"mode\": \"default\", \"workload\": \"many.json\"}",
                 "$.workload", "more than 64 hold times");
    expect_error("{\"name\": \"w\", \"mode\": \"default\", \"workload\": \"empty.json\"}",
                 "$.workload", "no requests");
    /* The pool must take the largest request. */
    expect_error(HEAD "\"pool\": {\"host_bytes\": \"256KiB\"}}", "$.pool.host_bytes",
                 "largest tensor");
    expect_error(HEAD "\"run\": {\"warmup_iterations\": 3}}", "$.run.warmup_iterations", NULL);
    expect_error(HEAD "\"fault\": {\"kind\": \"kill_consumer\", \"consumer\": 2}}",
                 "$.fault.consumer", NULL);
    /* fill_us is the time a pool buffer is written: its replay needs pool buffers. */
    const char *fill = "{\"name\": \"w\", \"mode\": \"default\", \"workload\": \"fill.json\"";
    char text[512];
    snprintf(text, sizeof text, "%s}", fill);
    expect_error(text, "$.workload", "tensors.source \"pool_buffer\"");
    cuipc_scenario s;
    snprintf(text, sizeof text, "%s, \"tensors\": {\"source\": \"pool_buffer\"}}", fill);
    REQUIRE(parse(text, &s));
    CHECK(s.workload.w.fill_ns == 2500000 && s.tensors.source == CUIPC_SOURCE_POOL_BUFFER);
    cuipc_scenario_free(&s);
}

/* One size grammar: "64MB" in a workload is the 64000000 bytes it is in a scenario. */
static void test_sizes_agree(void) {
    static const struct {
        const char *size, *workload;
        uint64_t bytes;
    } cases[] = {{"64MB", "mb.json", 64000000}, {"1.5 KiB", "kib.json", 1536}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        cuipc_scenario listed, replayed;
        snprintf(text, sizeof text,
                 "{\"name\": \"l\", \"mode\": \"default\", \"tensors\": {\"sizes\": "
                 "{\"list\": [\"%s\"]}}, \"consumers\": {\"count\": 1}, "
                 "\"run\": {\"iterations\": 2}}",
                 cases[i].size);
        REQUIRE(parse(text, &listed));
        snprintf(text, sizeof text,
                 "{\"name\": \"w\", \"mode\": \"default\", \"workload\": \"%s\"}",
                 cases[i].workload);
        REQUIRE(parse(text, &replayed));
        int dt;
        CHECK(cuipc_scenario_tensor_bytes(&listed, 0, 0, &dt) == cases[i].bytes);
        CHECK(replayed.workload.w.n > 0);
        for (uint64_t m = 0; m < replayed.workload.w.n; m++)
            CHECK(cuipc_scenario_tensor_bytes(&replayed, m, 0, &dt) == cases[i].bytes);
        cuipc_scenario_free(&listed);
        cuipc_scenario_free(&replayed);
    }
}

int main(void) {
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(scenario_file, sizeof scenario_file, "%s/scenario.json", dir);
    cuipc_expect_file = scenario_file;
    write_file("wl.trace.csv", TRACE);
    write_file("wl.json", "{\"trace\": \"wl.trace.csv\"}");
    write_file("tp2.json", "{\"consumers\": 3, \"duration_s\": 1, \"tensors_per_message\": 2,"
                           "\"arrivals\": {\"kind\": \"constant\", \"rate_per_s\": 10},"
                           "\"bytes\": {\"kind\": \"constant\", \"value\": 4096},"
                           "\"hold_us\": {\"kind\": \"constant\", \"value\": 10}}");
    const char *constant = "{\"consumers\": 1, \"duration_s\": 1,"
                           "\"arrivals\": {\"kind\": \"constant\", \"rate_per_s\": 2},"
                           "\"bytes\": {\"kind\": \"constant\", \"value\": \"%s\"},"
                           "\"hold_us\": {\"kind\": \"constant\", \"value\": 10}}";
    char text[512];
    snprintf(text, sizeof text, constant, "64MB");
    write_file("mb.json", text);
    snprintf(text, sizeof text, constant, "1.5 KiB");
    write_file("kib.json", text);
    write_file("fill.json", "{\"trace\": \"wl.trace.csv\", \"fill_us\": 2500}");
    write_file("unknown_key.json", "{\"trace\": \"wl.trace.csv\", \"colour\": 1}");
    char row[1024] = "0,100,1";
    for (int i = 0; i < 64; i++)
        strcat(row, ";1");
    strcat(row, "\n");
    write_file("many.csv", row);
    write_file("many.json", "{\"trace\": \"many.csv\"}");
    /* 1 ms of arrivals at 1/s: no message at all. */
    write_file("empty.json", "{\"consumers\": 1, \"duration_s\": 0.001, \"seed\": 3,"
                             "\"arrivals\": {\"kind\": \"poisson\", \"rate_per_s\": 0.001},"
                             "\"bytes\": {\"kind\": \"constant\", \"value\": 4096},"
                             "\"hold_us\": {\"kind\": \"constant\", \"value\": 10}}");
    test_replay();
    test_conflicts();
    test_bad_workloads();
    test_sizes_agree();
    const char *names[] = {"wl.trace.csv", "wl.json",   "tp2.json",   "unknown_key.json",
                           "many.csv",     "many.json", "empty.json", "fill.json"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return cuipc_test_finish("harness_scenario_workload_test");
}
