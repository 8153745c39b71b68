/* The faults a scenario may inject: one table, a row per cuipc_fault_kind, with its name (the
 * scenario's fault.kind), the role that carries it out, how the run sees it happen, and the
 * hooks the roles call at their points. A new fault is a row and its hooks; the roles and the
 * judge of a run ask the table, never the kind. */
#ifndef CUIPC_HARNESS_FAULT_H
#define CUIPC_HARNESS_FAULT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cuipc/cuipc.h"
#include "failures.h"
#include "scenario.h"
#include "supervisor.h"

typedef enum cuipc_fault_actor {
    CUIPC_FAULT_BY_NOBODY = 0,
    CUIPC_FAULT_BY_PRODUCER,
    CUIPC_FAULT_BY_CONSUMER, /* fault.consumer */
} cuipc_fault_actor;

/* What the producer's hooks work with: its transport and the wrapped message a fault keeps to
 * send again. Report keys: fault_send_status, fault_resent (whether the faulty message went
 * out: then every consumer must see one message more). */
typedef struct cuipc_fault_producer {
    const cuipc_scenario *s;
    cuipc_producer *p;
    cuipc_stream stream;
    int64_t send_timeout_ns;
    json_t *report;
    cuipc_value *kept; /* a sent wrapped message, to be sent again; NULL: none */
    uint64_t kept_seq;
} cuipc_fault_producer;

/* What a run's judge knows of the roles, for a fault's own checks after it fired. */
typedef struct cuipc_fault_outcome {
    const cuipc_scenario *s;
    const json_t *producer;                      /* its report; NULL: none */
    const json_t *const *consumers;              /* [s->consumers.count] reports; NULL: none */
    json_int_t dead_consumer_reclaims, rejected; /* both pools; by every consumer */
    bool fired;                                  /* cuipc_fault_fired */
} cuipc_fault_outcome;

typedef struct cuipc_fault_def {
    const char *name;
    cuipc_fault_actor actor;
    /* The fault ends its process with this signal (0: it sends a faulty message instead). */
    int signal;
    /* The run passes with the fault (its death is expected); false: it must fail the run. */
    bool survivable;
    /* Consumers refuse the faulty message (stale, duplicate, unknown pool): not an error. */
    bool refused;
    /* The producer sends a message again after it went out, stale by then or soon: its
     * transport is told to let it through (debug_send_stale). */
    bool resends;

    /* Hooks; NULL where the fault does nothing at that point. */
    /* Producer, before it makes message seq. */
    void (*producer_before)(const cuipc_scenario *s, uint64_t seq);
    /* Producer, in place of the send of message seq: true when the hook sent it (*st its
     * status), false to send it as usual. */
    bool (*producer_send)(cuipc_fault_producer *f, cuipc_value *tree, uint64_t seq,
                          cuipc_status *st);
    /* Producer, after message seq went out (or failed): send a faulty message. */
    void (*producer_after)(cuipc_fault_producer *f, uint64_t seq);
    /* Consumer fault.consumer, on receiving message seq, before unwrapping it. */
    void (*consumer_received)(const cuipc_scenario *s, uint64_t seq);
    /* Consumer fault.consumer, after it released message m (on: its release stream): what it
     * did to m again, reported as second_release_status. */
    cuipc_status (*consumer_released)(cuipc_message *m, cuipc_stream on);
    /* The run's judge: what must follow from the fault (o->fired says whether it happened). */
    void (*judge)(const cuipc_fault_outcome *o, cuipc_failures *f);
} cuipc_fault_def;

/* The row of kind k (CUIPC_FAULT_NONE's for a kind out of range). */
const cuipc_fault_def *cuipc_fault_def_of(cuipc_fault_kind k);

/* Consumer refusals of the scenario's faulty message are part of the run, not errors. */
bool cuipc_fault_refusal_expected(const cuipc_scenario *s);

/* The scenario's producer sends a message again after it went out (the fault's row says so). */
bool cuipc_fault_resends(const cuipc_scenario *s);

/* The scenario kills its producer, or consumer i, on purpose (survivably or not). */
bool cuipc_fault_kills_producer(const cuipc_scenario *s);
bool cuipc_fault_kills_consumer(const cuipc_scenario *s, uint32_t i);

/* The signal the supervisor is to expect of the producer (consumer < 0) or of consumer i: 0
 * unless a survivable fault kills it. */
int cuipc_fault_expected_signal(const cuipc_scenario *s, int consumer);

/* The hooks, called by the roles at their points (each does nothing without a fault there). */
void cuipc_fault_producer_before(const cuipc_scenario *s, uint64_t seq);
bool cuipc_fault_producer_send(cuipc_fault_producer *f, cuipc_value *tree, uint64_t seq,
                               cuipc_status *st);
void cuipc_fault_producer_after(cuipc_fault_producer *f, uint64_t seq);
void cuipc_fault_consumer_received(const cuipc_scenario *s, uint32_t consumer, uint64_t seq);
/* True when the fault acted on m after its release (*st: the status of that). */
bool cuipc_fault_consumer_released(const cuipc_scenario *s, uint32_t consumer, cuipc_message *m,
                                   cuipc_stream on, cuipc_status *st);

/* Whether the scenario's fault happened: one that never fired (its message was never reached)
 * leaves a run that tested nothing of it. cr: the producer's result, then each consumer's.
 * True without a fault; else false with why set. */
bool cuipc_fault_fired(const cuipc_scenario *s, const cuipc_child_result *cr,
                       const json_t *producer, char *why, size_t cap);

/* The fault's own checks of a run, after cuipc_fault_fired. */
void cuipc_fault_judge(const cuipc_fault_outcome *o, cuipc_failures *f);

#endif
