/* The fault table: a row per kind whose name the parser takes, the signals the supervisor is
 * told to expect, when a fault counts as fired, and the checks each fault adds to a run's
 * verdict. */
#include <signal.h>
#include <string.h>

#include "fault.h"
#include "test_util.h"

/* A scenario text with the given fault object ("" for none). */
static bool parse(const char *fault, cuipc_scenario *s) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"name\": \"f\", \"mode\": \"default\", \"consumers\": {\"count\": 2},"
             " \"tensors\": {\"sizes\": {\"list\": [4096]}}, \"run\": {\"iterations\": 100}%s%s}",
             fault[0] ? ", \"fault\": " : "", fault);
    bool ok = cuipc_scenario_parse(text, "fault_test.json", s) == CUIPC_OK;
    if (!ok)
        fprintf(stderr, "%s\n", cuipc_last_error());
    return ok;
}

static void test_rows(void) {
    for (int k = 0; k < CUIPC_FAULT_COUNT_; k++) {
        const cuipc_fault_def *d = cuipc_fault_def_of((cuipc_fault_kind)k);
        REQUIRE(d->name != NULL && d->name[0] != '\0');
        CHECK(strcmp(cuipc_fault_kind_name((cuipc_fault_kind)k), d->name) == 0);
        for (int o = 0; o < k; o++)
            CHECK(strcmp(d->name, cuipc_fault_kind_name((cuipc_fault_kind)o)) != 0);
        /* Every fault acts somewhere: a row without a hook would never fire. */
        bool acts =
            d->producer_before || d->producer_send || d->producer_after || d->consumer_received;
        CHECK(acts == (k != CUIPC_FAULT_NONE));
        /* The parser knows every row by its name. */
        char obj[128];
        snprintf(obj, sizeof obj, "{\"kind\": \"%s\", \"consumer\": 1}", d->name);
        cuipc_scenario s;
        REQUIRE(parse(obj, &s));
        CHECK(s.fault.kind == (cuipc_fault_kind)k);
        cuipc_scenario_free(&s);
    }
    CHECK(strcmp(cuipc_fault_kind_name(CUIPC_FAULT_COUNT_), "invalid") == 0);
    CHECK(cuipc_fault_def_of(CUIPC_FAULT_COUNT_) == cuipc_fault_def_of(CUIPC_FAULT_NONE));
    cuipc_scenario s;
    CHECK(!parse("{\"kind\": \"kill_everything\"}", &s));
}

static void test_signals(void) {
    cuipc_scenario s;
    REQUIRE(parse("{\"kind\": \"kill_consumer\", \"consumer\": 1}", &s));
    CHECK(cuipc_fault_expected_signal(&s, -1) == 0);
    CHECK(cuipc_fault_expected_signal(&s, 0) == 0);
    CHECK(cuipc_fault_expected_signal(&s, 1) == SIGKILL);
    CHECK(cuipc_fault_kills_consumer(&s, 1) && !cuipc_fault_kills_consumer(&s, 0));
    CHECK(!cuipc_fault_kills_producer(&s) && !cuipc_fault_refusal_expected(&s));
    cuipc_scenario_free(&s);
    /* A crash kills its consumer too, and the supervisor must not take it as expected. */
    REQUIRE(parse("{\"kind\": \"crash_consumer\", \"consumer\": 1}", &s));
    CHECK(cuipc_fault_kills_consumer(&s, 1));
    CHECK(cuipc_fault_expected_signal(&s, 1) == 0);
    cuipc_scenario_free(&s);
    REQUIRE(parse("{\"kind\": \"kill_producer\"}", &s));
    CHECK(cuipc_fault_expected_signal(&s, -1) == SIGKILL);
    CHECK(cuipc_fault_expected_signal(&s, 0) == 0);
    CHECK(cuipc_fault_kills_producer(&s));
    cuipc_scenario_free(&s);
    const char *refused[] = {"stale_release", "duplicate_release", "unknown_pool"};
    for (int i = 0; i < 3; i++) {
        char obj[96];
        snprintf(obj, sizeof obj, "{\"kind\": \"%s\"}", refused[i]);
        REQUIRE(parse(obj, &s));
        CHECK(cuipc_fault_refusal_expected(&s));
        CHECK(!cuipc_fault_kills_producer(&s) && !cuipc_fault_kills_consumer(&s, 0));
        CHECK(cuipc_fault_expected_signal(&s, -1) == 0 && cuipc_fault_expected_signal(&s, 0) == 0);
        cuipc_scenario_free(&s);
    }
    REQUIRE(parse("", &s));
    CHECK(!cuipc_fault_refusal_expected(&s) && !cuipc_fault_kills_producer(&s) &&
          !cuipc_fault_kills_consumer(&s, 0));
    cuipc_scenario_free(&s);
}

static void test_fired(void) {
    cuipc_child_result cr[3] = {{.exited = true}, {.exited = true}, {.exited = true}};
    json_t *producer = json_pack("{s:i}", "messages_sent", 100);
    char why[256];
    cuipc_scenario s;
    REQUIRE(parse("", &s));
    CHECK(cuipc_fault_fired(&s, cr, producer, why, sizeof why));
    cuipc_scenario_free(&s);
    /* A consumer fault fired when its consumer died of the fault's signal, on its own. */
    REQUIRE(parse("{\"kind\": \"kill_consumer\", \"consumer\": 1}", &s));
    CHECK(!cuipc_fault_fired(&s, cr, producer, why, sizeof why));
    CHECK(strstr(why, "consumer 1 never received message 1") != NULL);
    cr[2] = (cuipc_child_result){.signal = SIGKILL, .stopped_by_supervisor = true};
    CHECK(!cuipc_fault_fired(&s, cr, producer, why, sizeof why));
    cr[2].stopped_by_supervisor = false;
    CHECK(cuipc_fault_fired(&s, cr, producer, why, sizeof why) && why[0] == '\0');
    cuipc_scenario_free(&s);
    REQUIRE(parse("{\"kind\": \"crash_consumer\", \"consumer\": 1}", &s));
    CHECK(!cuipc_fault_fired(&s, cr, producer, why, sizeof why)); /* SIGKILL is not its signal */
    cr[2].signal = SIGSEGV;
    CHECK(cuipc_fault_fired(&s, cr, producer, why, sizeof why));
    cuipc_scenario_free(&s);
    REQUIRE(parse("{\"kind\": \"kill_producer\"}", &s));
    CHECK(!cuipc_fault_fired(&s, cr, producer, why, sizeof why));
    CHECK(strcmp(why, "the producer never reached message 1 (100 sent)") == 0);
    cr[0] = (cuipc_child_result){.signal = SIGKILL};
    CHECK(cuipc_fault_fired(&s, cr, NULL, why, sizeof why));
    cuipc_scenario_free(&s);
    /* A faulty message fired when the producer says it sent it (whatever came of the send). */
    REQUIRE(parse("{\"kind\": \"stale_release\"}", &s));
    CHECK(!cuipc_fault_fired(&s, cr, producer, why, sizeof why));
    json_object_set_new(producer, "fault_send_status", json_string("ERR_STALE"));
    CHECK(cuipc_fault_fired(&s, cr, producer, why, sizeof why));
    cuipc_scenario_free(&s);
    json_decref(producer);
}

static size_t judged(const char *fault, const cuipc_fault_outcome *base) {
    cuipc_scenario s;
    REQUIRE(parse(fault, &s));
    cuipc_fault_outcome o = *base;
    o.s = &s;
    cuipc_failures f;
    cuipc_failures_init(&f);
    cuipc_fault_judge(&o, &f);
    size_t n = cuipc_failures_count(&f);
    json_decref(cuipc_failures_take(&f));
    json_decref(f.entries);
    cuipc_scenario_free(&s);
    return n;
}

static void test_judges(void) {
    json_t *producer = json_pack("{s:{}, s:b}", "stats", "fault_resent", 1);
    json_t *seen = json_pack("{s:b}", "producer_dead_detected", 1);
    const json_t *both_saw[2] = {seen, seen}, *one_saw[2] = {seen, NULL};
    cuipc_fault_outcome o = {.producer = producer, .consumers = both_saw, .fired = true};
    /* A killed consumer's chunk must come back to the pool. */
    CHECK(judged("{\"kind\": \"kill_consumer\"}", &o) == 1);
    o.dead_consumer_reclaims = 1;
    CHECK(judged("{\"kind\": \"kill_consumer\"}", &o) == 0);
    o.dead_consumer_reclaims = 0;
    o.fired = false; /* named as not fired already: nothing follows from it */
    CHECK(judged("{\"kind\": \"kill_consumer\"}", &o) == 0);
    /* Every consumer must notice a killed producer. */
    CHECK(judged("{\"kind\": \"kill_producer\"}", &o) == 0);
    o.consumers = one_saw;
    CHECK(judged("{\"kind\": \"kill_producer\"}", &o) == 1);
    /* A proxy for a destroyed pool is refused by every consumer. */
    o.rejected = 1;
    CHECK(judged("{\"kind\": \"unknown_pool\"}", &o) == 1);
    o.rejected = 2;
    CHECK(judged("{\"kind\": \"unknown_pool\"}", &o) == 0);
    CHECK(judged("", &o) == 0);
    json_decref(producer);
    json_decref(seen);
}

int main(void) {
    test_rows();
    test_signals();
    test_fired();
    test_judges();
    return cuipc_test_finish("harness_fault_test");
}
