/* Scenario parser: strictness, error locations, impossible values, the size generator, and
 * every example scenario shipped in scenarios/. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scenario_expect.h"
#include "scenario_transport.h"

#define BASE_HEAD "{\"name\": \"t\", \"mode\": \"default\",\n"
#define BASE_TAIL                                                                                  \
    "\"tensors\": {\"sizes\": {\"list\": [4096, \"64KiB\"]}},\n"                                   \
    "\"consumers\": {\"count\": 2},\n"                                                             \
    "\"run\": {\"iterations\": 10}}"

static void test_valid_defaults(void) {
    cuipc_scenario s;
    REQUIRE(parse(BASE_HEAD BASE_TAIL, &s));
    CHECK(strcmp(s.name, "t") == 0);
    CHECK(s.mode == CUIPC_MODE_DEFAULT);
    CHECK(s.consumers.count == 2);
    CHECK(s.tensors.n_sizes == 2 && s.tensors.sizes[1] == 65536);
    CHECK(s.tensors.max_bytes == 65536);
    CHECK(s.pool.host_bytes == 64u << 20);
    CHECK(s.pool.gpu_bytes == 0);
    CHECK(!s.needs_gpu);
    CHECK(s.tensors.location == CUIPC_LOCATION_HOST);
    CHECK(s.run.iterations == 10);
    CHECK(s.run.timeout_s > 0);
    CHECK(s.validation.enabled);
    CHECK(!s.leak.enabled);
    CHECK(s.thresholds.p50_us < 0);
    cuipc_scenario_free(&s);

    REQUIRE(parse("{\"name\": \"g\", \"mode\": \"cuda_ipc_pool\", \"pool\": {\"gpu_bytes\": "
                  "\"1GiB\", \"full_policy\": \"fallback\", \"host_bytes\": \"16MiB\"},"
                  "\"tensors\": {\"sizes\": {\"lognormal\": {\"median\": \"1MiB\", \"sigma\": "
                  "1.0, \"min\": 256, \"max\": \"8MiB\"}}, \"dtypes\": [\"bf16\", \"f32\"]},"
                  "\"consumers\": {\"count\": 4, \"devices\": [0, 1, 2, 3], \"unwrap\": "
                  "\"borrow\", \"hold_us\": 50},"
                  "\"run\": {\"duration_s\": 2.5, \"loop\": \"open\", \"rate_hz\": 1000},"
                  "\"leak_check\": {\"tolerance\": {\"gpu_bytes\": \"1MiB\"}}}",
                  &s));
    CHECK(s.needs_gpu);
    CHECK(s.tensors.location == CUIPC_LOCATION_DEVICE);
    CHECK(s.pool.gpu_bytes == 1ull << 30);
    CHECK(s.pool.full_policy == CUIPC_FULL_FALLBACK);
    CHECK(s.consumers.devices[3] == 3);
    CHECK(s.consumers.unwrap == CUIPC_UNWRAP_BORROW);
    CHECK(s.consumers.hold_ns == 50000);
    CHECK(s.run.open_loop && s.run.rate_hz == 1000);
    CHECK(cuipc_scenario_is_duration(&s));
    CHECK(s.leak.enabled && s.leak.tolerance_gpu_bytes == 1u << 20);
    CHECK(s.tensors.max_bytes == 8u << 20);
    cuipc_scenario_free(&s);

    /* copy_to "consumer": each tensor-parallel worker copies onto its own GPU. */
    REQUIRE(parse(BASE_HEAD
                  "\"tensors\": {\"sizes\": {\"list\": [4096]}},"
                  "\"consumers\": {\"count\": 2, \"devices\": [0, 1], \"copy_to\": \"consumer\"},"
                  "\"run\": {\"iterations\": 10}}",
                  &s));
    CHECK(s.consumers.copy_to == CUIPC_H_COPY_TO_CONSUMER);
    CHECK(s.needs_gpu);
    cuipc_scenario_free(&s);
    CHECK(!parse(BASE_HEAD "\"tensors\": {\"sizes\": {\"list\": [4096]}},"
                           "\"consumers\": {\"count\": 1, \"copy_to\": \"mine\"},"
                           "\"run\": {\"iterations\": 10}}",
                 &s));
}

static void test_strictness(void) {
    /* Unknown key: named with its path and located (line 2, where "sizee" sits). */
    expect_error(BASE_HEAD "\"pool\": {\"sizee\": 5},\n" BASE_TAIL, "$.pool.sizee", "unknown key");
    expect_error(BASE_HEAD "\"pool\": {\"sizee\": 5},\n" BASE_TAIL, "t.json:2:19:", NULL);
    expect_error(BASE_HEAD "\"extra\": 1,\n" BASE_TAIL, "$.extra", "allowed:");
    /* Type errors carry line:column of the value. */
    expect_error(BASE_HEAD "\"tensors\": {\"sizes\": {\"list\": [4096]}},\n"
                           "\"consumers\": {\"count\": \"two\"},\n"
                           "\"run\": {\"iterations\": 10}}",
                 "t.json:3:24: $.consumers.count", "expected an integer");
    expect_error(BASE_HEAD "\"tensors\": {\"sizes\": {\"list\": [4096, true]}},\n"
                           "\"consumers\": {\"count\": 1}, \"run\": {\"iterations\": 10}}",
                 "$.tensors.sizes.list[1]", "expected a size");
    expect_error(BASE_HEAD "\"tensors\": {\"sizes\": {\"list\": [\"12 parsecs\"]}},\n"
                           "\"consumers\": {\"count\": 1}, \"run\": {\"iterations\": 10}}",
                 "t.json:2:32:", "not a size");
    expect_error(BASE_HEAD "\"validation\": {\"enabled\": 1},\n" BASE_TAIL, "$.validation.enabled",
                 "true or false");
    expect_error("{\"name\": \"t\", \"mode\": \"warp\"}", "$.mode", "not one of");
    expect_error("{\"name\": \"t\",\n \"mode\": }", "t.json:2:", NULL); /* malformed JSON */
    expect_error("{\"name\": \"t\", \"name\": \"u\"}", "t.json:1:", "duplicate");
    expect_error("[1, 2]", "$", "expected an object");
    expect_error("{\"mode\": \"default\"}", "missing required key 'name'", NULL);
    expect_error("{\"name\": \"a/b\", \"mode\": \"default\"}", "$.name", "may only hold");
    expect_error(BASE_HEAD "\"tensors\": {\"sizes\": {\"list\": [1]}, \"dtypes\": [\"f33\"]},\n"
                           "\"consumers\": {\"count\": 1}, \"run\": {\"iterations\": 10}}",
                 "$.tensors.dtypes[0]", "'f33' is not one of");
}

static void test_impossible(void) {
    expect_error(BASE_HEAD "\"pool\": {\"host_bytes\": \"32KiB\"},\n" BASE_TAIL,
                 "$.pool.host_bytes", "smaller than the largest tensor");
    expect_error(BASE_HEAD "\"tensors\": {\"sizes\": {\"list\": [4096]}},\n"
                           "\"consumers\": {\"count\": 0}, \"run\": {\"iterations\": 10}}",
                 "$.consumers.count", "out of range [1, 64]");
    expect_error(BASE_HEAD "\"tensors\": {\"sizes\": {\"list\": [4096]}},\n"
                           "\"consumers\": {\"count\": 1}, \"run\": {\"iterations\": 10, "
                           "\"duration_s\": 1}}",
                 "$.run", "exactly one");
    expect_error(BASE_HEAD "\"tensors\": {\"sizes\": {\"list\": [4096]}},\n"
                           "\"consumers\": {\"count\": 1}, \"run\": {\"iterations\": 10, "
                           "\"loop\": \"open\"}}",
                 "$.run", "needs 'rate_hz'");
    expect_error(BASE_HEAD "\"fault\": {\"kind\": \"kill_consumer\", \"consumer\": 2},\n" BASE_TAIL,
                 "$.fault.consumer", "does not exist");
    expect_error(BASE_HEAD
                 "\"fault\": {\"kind\": \"kill_producer\", \"at_message\": 10},\n" BASE_TAIL,
                 "$.fault.at_message", "never sent");
    expect_error("{\"name\": \"t\", \"mode\": \"cuda_ipc\", \"tensors\": {\"sizes\": {\"list\": "
                 "[4096]}, \"location\": \"host\"}, \"consumers\": {\"count\": 1}, \"run\": "
                 "{\"iterations\": 10}}",
                 "$.tensors.location", "must be \"device\"");
    expect_error(BASE_HEAD "\"tensors\": {\"sizes\": {\"range\": {\"min\": 10, \"max\": 5}}},\n"
                           "\"consumers\": {\"count\": 1}, \"run\": {\"iterations\": 10}}",
                 "$.tensors.sizes.range.min", "larger than max");
    expect_error(BASE_HEAD "\"tensors\": {\"sizes\": {\"list\": [4096], \"trace\": \"x\"}},\n"
                           "\"consumers\": {\"count\": 1}, \"run\": {\"iterations\": 10}}",
                 "$.tensors.sizes", "exactly one");
    expect_error(BASE_HEAD "\"pool\": {\"alignment\": 100},\n" BASE_TAIL, "$.pool.alignment",
                 "power of two");
    expect_error(BASE_HEAD "\"pool\": {\"full_policy\": \"fallback\"},\n" BASE_TAIL,
                 "$.pool.full_policy", "cuda_ipc_pool");
    expect_error(BASE_HEAD
                 "\"tensors\": {\"sizes\": {\"list\": [\"40MiB\"]}, \"per_message\": 2},\n"
                 "\"consumers\": {\"count\": 1}, \"run\": {\"iterations\": 10}}",
                 "$.pool.host_bytes", "cannot hold one message");
    expect_error(BASE_HEAD
                 "\"run\": {\"iterations\": 10, \"warmup_iterations\": 10},\n"
                 "\"tensors\": {\"sizes\": {\"list\": [1]}}, \"consumers\": {\"count\": 1}}",
                 "$.run.warmup_iterations", "no measured");
    expect_error(BASE_HEAD "\"binding\": {\"policy\": \"explicit\"},\n" BASE_TAIL, "$.binding",
                 "needs producer_cpus");
}

/* gpu.mps: a boolean, only in a scenario that uses a GPU; off by default. */
static void test_gpu_mps(void) {
#define GPU_HEAD "{\"name\": \"t\", \"mode\": \"cuda_ipc_pool\",\n"
    cuipc_scenario s;
    REQUIRE(parse(GPU_HEAD BASE_TAIL, &s));
    CHECK(!s.gpu.mps);
    cuipc_scenario_free(&s);
    REQUIRE(parse(GPU_HEAD "\"gpu\": {\"mps\": true},\n" BASE_TAIL, &s));
    CHECK(s.gpu.mps);
    CHECK(s.consumers.host_wait_ns == -1); /* the library's default */
    cuipc_scenario_free(&s);
    REQUIRE(parse(GPU_HEAD "\"tensors\": {\"sizes\": {\"list\": [4096]}},\n"
                           "\"consumers\": {\"count\": 1, \"host_wait_us\": 0},\n"
                           "\"run\": {\"iterations\": 10}}",
                  &s));
    CHECK(s.consumers.host_wait_ns == 0);
    cuipc_scenario_free(&s);
    expect_error(GPU_HEAD "\"tensors\": {\"sizes\": {\"list\": [4096]}},\n"
                          "\"consumers\": {\"count\": 1, \"host_wait_us\": -5},\n"
                          "\"run\": {\"iterations\": 10}}",
                 "$.consumers.host_wait_us", "out of range");
    expect_error(GPU_HEAD "\"gpu\": {\"mps\": \"yes\"},\n" BASE_TAIL, "t.json:2:16: $.gpu.mps",
                 "expected true or false");
    expect_error(GPU_HEAD "\"gpu\": {\"mps\": 1},\n" BASE_TAIL, "$.gpu.mps",
                 "expected true or false");
    expect_error(GPU_HEAD "\"gpu\": {\"mps\": true, \"limit\": 5},\n" BASE_TAIL, "$.gpu.limit",
                 "unknown key");
    expect_error(GPU_HEAD "\"gpu\": true,\n" BASE_TAIL, "$.gpu", "expected an object");
    expect_error(BASE_HEAD "\"gpu\": {\"mps\": true},\n" BASE_TAIL, "$.gpu.mps", "uses none");
#undef GPU_HEAD
}

static void test_generator(void) {
    cuipc_scenario s;
    REQUIRE(parse("{\"name\": \"g\", \"mode\": \"default\", \"tensors\": {\"sizes\": "
                  "{\"uniform\": {\"min\": 100, \"max\": 5000}}, \"dtypes\": [\"f32\", \"f64\"], "
                  "\"per_message\": 3}, \"consumers\": {\"count\": 1}, \"run\": {\"iterations\": "
                  "5}}",
                  &s));
    bool varied = false;
    uint64_t first = 0;
    for (uint64_t m = 0; m < 200; m++) {
        for (uint32_t j = 0; j < 3; j++) {
            int dt, dt2;
            uint64_t b = cuipc_scenario_tensor_bytes(&s, m, j, &dt);
            CHECK(b == cuipc_scenario_tensor_bytes(&s, m, j, &dt2) && dt == dt2);
            CHECK(dt == CUIPC_DTYPE_F32 || dt == CUIPC_DTYPE_F64);
            CHECK(b % cuipc_dtype_size(dt) == 0);
            CHECK(b >= 96 && b <= 5000);
            if (m == 0 && j == 0)
                first = b;
            varied = varied || b != first;
        }
    }
    CHECK(varied);
    cuipc_scenario_free(&s);

    REQUIRE(parse("{\"name\": \"r\", \"mode\": \"default\", \"tensors\": {\"sizes\": "
                  "{\"range\": {\"min\": 1024, \"max\": 4096, \"step\": 1024}}}, \"consumers\": "
                  "{\"count\": 1}, \"run\": {\"iterations\": 5}}",
                  &s));
    int dt;
    CHECK(cuipc_scenario_tensor_bytes(&s, 0, 0, &dt) == 1024);
    CHECK(cuipc_scenario_tensor_bytes(&s, 3, 0, &dt) == 4096);
    CHECK(cuipc_scenario_tensor_bytes(&s, 4, 0, &dt) == 1024);
    cuipc_scenario_free(&s);
}

static void test_trace(void) {
    char dir[] = "/tmp/cuipc-scn-test-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char trace[256], scn[256];
    snprintf(trace, sizeof trace, "%s/sizes.txt", dir);
    snprintf(scn, sizeof scn, "%s/s.json", dir);
    FILE *f = fopen(trace, "w");
    REQUIRE(f != NULL);
    fprintf(f, "# sizes\n4096\n\n 1MiB  # a big one\n512\n");
    fclose(f);
    f = fopen(scn, "w");
    REQUIRE(f != NULL);
    fprintf(f, "{\"name\": \"tr\", \"mode\": \"default\", \"tensors\": {\"sizes\": {\"trace\": "
               "\"sizes.txt\"}}, \"consumers\": {\"count\": 1}, \"run\": {\"iterations\": 3}}");
    fclose(f);
    cuipc_scenario s;
    bool ok = load(scn, &s);
    CHECK(ok);
    if (ok) {
        CHECK(s.tensors.n_sizes == 3);
        CHECK(s.tensors.max_bytes == 1u << 20);
        cuipc_scenario_free(&s);
    }
    f = fopen(trace, "w");
    REQUIRE(f != NULL);
    fprintf(f, "4096\nlots\n");
    fclose(f);
    CHECK(!load(scn, &s));
    CHECK(strstr(err, "sizes.txt:2") != NULL);
    unlink(trace);
    CHECK(!load(scn, &s));
    CHECK(strstr(err, "cannot read trace file") != NULL);
    /* Not regular files: refused at once, neither read forever (/dev/zero) nor waited on (a
     * FIFO nobody writes, whose open alone would block). */
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    REQUIRE(mkfifo(fifo, 0600) == 0);
    const char *bad[] = {"/dev/zero", "fifo"};
    for (int i = 0; i < 2; i++) {
        f = fopen(scn, "w");
        REQUIRE(f != NULL);
        fprintf(f,
                "{\"name\": \"tr\", \"mode\": \"default\", \"tensors\": {\"sizes\": {\"trace\": "
                "\"%s\"}}, \"consumers\": {\"count\": 1}, \"run\": {\"iterations\": 3}}",
                bad[i]);
        fclose(f);
        CHECK(!load(scn, &s));
        CHECK(strstr(err, "Invalid argument") != NULL);
    }
    unlink(fifo);
    unlink(scn);
    rmdir(dir);
}

/* Every *.json under dir (recursively) must validate. */
static int validate_tree(const char *dir) {
    int count = 0;
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            /* workloads/ holds planner workloads, another format (checked by test_plan). */
            if (strcmp(e->d_name, "workloads") != 0)
                count += validate_tree(p);
            continue;
        }
        size_t len = strlen(p);
        if (len < 5 || strcmp(p + len - 5, ".json") != 0)
            continue;
        cuipc_scenario s;
        if (!load(p, &s)) {
            fprintf(stderr, "example scenario does not validate: %s\n", err);
            cuipc_test_failures++;
        } else {
            cuipc_scenario_free(&s);
        }
        count++;
    }
    closedir(d);
    return count;
}

/* Failures are reported as libcuipc's are: a status, and cuipc_last_error() worded exactly as
 * validate prints it, the located part first; paths past half a KiB are not cut short. */
static void test_error_convention(void) {
    cuipc_scenario s;
    CHECK(cuipc_scenario_parse(BASE_HEAD "\"pool\": {\"slots\": 0},\n" BASE_TAIL, "t.json", &s) ==
          CUIPC_ERR_INVALID_ARG);
    CHECK(strcmp(cuipc_last_error(), "t.json:2:19: $.pool.slots: 0 is out of range [1, "
                                     "1048576]") == 0);
    CHECK(cuipc_scenario_parse("{\"name\": \"t\",}", "t.json", &s) == CUIPC_ERR_INVALID_ARG);
    CHECK(strncmp(cuipc_last_error(), "t.json:1:14: ", 13) == 0);

    char dir[] = "/tmp/cuipc_scn_err_XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char missing[300], expect[400];
    snprintf(missing, sizeof missing, "%s/none.json", dir);
    CHECK(cuipc_scenario_load(missing, &s) == CUIPC_ERR_SYSTEM);
    snprintf(expect, sizeof expect, "%s: cannot read: No such file or directory", missing);
    CHECK(strcmp(cuipc_last_error(), expect) == 0);

    /* The transport's refusal of a parsed scenario, located in the file like the parser's. */
    char scn[300];
    snprintf(scn, sizeof scn, "%s/ring.json", dir);
    FILE *f = fopen(scn, "w");
    REQUIRE(f != NULL);
    fprintf(f, BASE_HEAD "\"pool\": {\"ring_bytes\": 5000},\n" BASE_TAIL);
    fclose(f);
    REQUIRE(load(scn, &s));
    CHECK(cuipc_scenario_check_transport(&s) == CUIPC_ERR_INVALID_ARG);
    snprintf(expect, sizeof expect,
             "%s:2:24: $.pool.ring_bytes: 5000 is not a ring size: a power of two from 4 KiB to "
             "4 GiB",
             scn);
    CHECK(strcmp(cuipc_last_error(), expect) == 0);
    cuipc_scenario_free(&s);
    unlink(scn);
    rmdir(dir);

    char longname[801];
    memset(longname, 'd', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(cuipc_scenario_parse(BASE_HEAD "\"pool\": {\"slots\": 0},\n" BASE_TAIL, longname, &s) ==
          CUIPC_ERR_INVALID_ARG);
    char whole[1024];
    snprintf(whole, sizeof whole, "%s:2:19: $.pool.slots: 0 is out of range [1, 1048576]",
             longname);
    CHECK(strcmp(cuipc_last_error(), whole) == 0);
}

/* consumers.churn: strict keys, at least one consumer that stays, not with what needs a fixed
 * set of consumers; its positive control needs it. */
static void test_churn(void) {
#define CHURN_RUN "\"tensors\": {\"sizes\": {\"list\": [4096]}},\n"
    cuipc_scenario s;
    CHECK(parse(BASE_HEAD CHURN_RUN "\"consumers\": {\"count\": 3, \"churn\": {\"count\": 2, "
                                    "\"every\": 50}}, \"run\": {\"iterations\": 10}}",
                &s));
    CHECK(s.consumers.churn.count == 2 && s.consumers.churn.every == 50);
    CHECK(!cuipc_scenario_churns(&s, 0) && cuipc_scenario_churns(&s, 1) &&
          cuipc_scenario_churns(&s, 2));
    cuipc_scenario_free(&s);
    expect_error(BASE_HEAD CHURN_RUN
                 "\"consumers\": {\"count\": 3, \"churn\": {\"count\": 2, "
                 "\"every\": 50, \"kill\": true}}, \"run\": {\"iterations\": 10}}",
                 "$.consumers.churn.kill", "unknown key");
    expect_error(BASE_HEAD CHURN_RUN "\"consumers\": {\"count\": 2, \"churn\": {\"count\": 2, "
                                     "\"every\": 50}}, \"run\": {\"iterations\": 10}}",
                 "$.consumers.churn.count", "leave none of 2 to stay");
    expect_error(BASE_HEAD CHURN_RUN "\"consumers\": {\"count\": 2, \"churn\": {\"count\": 1}}, "
                                     "\"run\": {\"iterations\": 10}}",
                 "$.consumers.churn", "every");
    expect_error(BASE_HEAD CHURN_RUN
                 "\"consumers\": {\"count\": 2}, \"run\": {\"iterations\": 10},\n"
                 "\"leak_check\": {\"inject\": {\"keep_departed_rings\": true}}}",
                 "$.consumers.churn", "needs consumers.churn");
    expect_error(BASE_HEAD CHURN_RUN "\"consumers\": {\"count\": 2, \"churn\": {\"count\": 1, "
                                     "\"every\": 5}}, \"run\": {\"iterations\": 10},\n"
                                     "\"fault\": {\"kind\": \"kill_consumer\", \"consumer\": 0, "
                                     "\"at_message\": 3}}",
                 "$.consumers.churn", "give one of them");
#undef CHURN_RUN
}

int main(int argc, char **argv) {
    test_valid_defaults();
    test_strictness();
    test_impossible();
    test_gpu_mps();
    test_generator();
    test_trace();
    test_churn();
    test_error_convention();
    if (argc > 1)
        CHECK(validate_tree(argv[1]) >= 5);
    return cuipc_test_finish("harness_scenario_test");
}
