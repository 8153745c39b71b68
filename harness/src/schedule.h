/* An open loop's schedule against what the producer kept of it: the messages due, those it
 * reached, how late each was sent (lag), and the rate it sustained. A loop fell behind when
 * it sustained under CUIPC_SCHEDULE_MIN_FRACTION of the offered rate: messages reached over
 * the schedule's span, which for a loop bound by a count of messages ends when its last ones
 * were sent (the median lag of the last tenth added), and for one bound by a duration ends
 * with the duration. */
#ifndef CUIPC_HARNESS_SCHEDULE_H
#define CUIPC_HARNESS_SCHEDULE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CUIPC_SCHEDULE_MIN_FRACTION 0.95

typedef struct cuipc_schedule {
    uint64_t reached; /* timed messages whose due time came and were sent or tried */
    uint64_t first_due_ns, last_lag_ns, max_lag_ns;
    uint64_t *lag_ns; /* every stride-th lag: uniform over the run whatever its length */
    size_t n_lag, cap_lag;
    uint64_t stride;
} cuipc_schedule;

/* All memory is taken (and touched) here: recording never grows RSS. */
bool cuipc_schedule_init(cuipc_schedule *sc, size_t cap);
/* A timed message due at due_ns is sent (or tried) at now_ns. */
void cuipc_schedule_add(cuipc_schedule *sc, uint64_t due_ns, uint64_t now_ns);

/* The results' schedule object (frees the samples). scheduled: timed messages the schedule
 * holds; span_s: the time they are spread over (count / rate); count_bound: the loop ends
 * after its last message, however late, rather than at a time. */
json_t *cuipc_schedule_json_free(cuipc_schedule *sc, double offered_hz, uint64_t scheduled,
                                 double span_s, bool count_bound, bool overload);

/* Whether a schedule object fell behind; why: "offered 400 Hz, sustained 91 Hz (...)". */
bool cuipc_schedule_fell_behind(const json_t *schedule, char *why, size_t cap);

#endif
