/* The open-loop schedule verdict: a loop that kept its rate with one late message at the end
 * kept it; a lag that keeps growing, or messages never reached, fell behind. */
#include <string.h>

#include "schedule.h"
#include "test_util.h"

#define MS 1000000ull

static json_t *run(uint64_t n, double rate_hz, uint64_t lag_step_ns, uint64_t last_extra_ns,
                   uint64_t scheduled, bool count_bound) {
    cuipc_schedule sc;
    REQUIRE(cuipc_schedule_init(&sc, 256)); /* small: decimation is exercised too */
    uint64_t t0 = 1000 * MS;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t due = t0 + (uint64_t)((double)i / rate_hz * 1e9);
        uint64_t lag = i * lag_step_ns + (i + 1 == n ? last_extra_ns : 0);
        cuipc_schedule_add(&sc, due, due + lag);
    }
    return cuipc_schedule_json_free(&sc, rate_hz, scheduled, (double)scheduled / rate_hz,
                                    count_bound, false);
}

int main(void) {
    char why[256];
    /* On time, but the very last message 200 ms late (a hiccup): kept its rate. */
    json_t *j = run(1000, 1000, 0, 200 * MS, 1000, true);
    CHECK(!cuipc_schedule_fell_behind(j, why, sizeof why));
    CHECK(json_number_value(json_object_get(json_object_get(j, "lag_ms"), "max")) == 200.0);
    json_decref(j);
    /* Each message 1 ms later than the one before at 1 kHz: it sent at 500 Hz. */
    j = run(1000, 1000, 1 * MS, 0, 1000, true);
    CHECK(cuipc_schedule_fell_behind(j, why, sizeof why));
    CHECK(strstr(why, "offered 1000 Hz, sustained 5") == why);
    json_decref(j);
    /* Bound by a duration: 91 of 400 a second reached. */
    j = run(1820, 400, 0, 0, 8000, false);
    CHECK(cuipc_schedule_fell_behind(j, why, sizeof why));
    CHECK(strstr(why, "offered 400 Hz, sustained 91 Hz (1820 of 8000 scheduled messages sent") ==
          why);
    json_decref(j);
    /* One message has no rate: not judged. */
    j = run(1, 400, 0, 0, 1, true);
    CHECK(!json_is_true(json_object_get(j, "judged")));
    CHECK(!cuipc_schedule_fell_behind(j, why, sizeof why));
    json_decref(j);
    return cuipc_test_finish("harness_schedule_test");
}
