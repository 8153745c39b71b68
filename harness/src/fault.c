/* The fault table and its hooks (see fault.h). */
#include "fault.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "results_keys.h"
#include "util.h"

/* ------------------------------------------------------------------ hooks: processes dying */

static void kill_producer_before(const cuipc_scenario *s, uint64_t seq) {
    if (seq == s->fault.at_message)
        raise(SIGKILL);
}

/* The consumer dies mid-read: the chunk is received and not released. */
static void kill_consumer_received(const cuipc_scenario *s, uint64_t seq) {
    if (seq >= s->fault.at_message)
        raise(SIGKILL);
}

static void crash_consumer_received(const cuipc_scenario *s, uint64_t seq) {
    if (seq >= s->fault.at_message)
        raise(SIGSEGV);
}

static void kill_consumer_judge(const cuipc_fault_outcome *o, cuipc_failures *f) {
    /* The killed consumer held a chunk when it died: the pool must have taken it back. */
    if (o->fired && json_object_get(o->producer, CUIPC_RK_STATS) != NULL &&
        o->dead_consumer_reclaims == 0)
        cuipc_failures_add(f, CUIPC_FAILURE_VERDICT, 0,
                           "consumer %u was killed holding a chunk, and no chunk was reclaimed "
                           "for it",
                           o->s->fault.consumer);
}

static void kill_producer_judge(const cuipc_fault_outcome *o, cuipc_failures *f) {
    for (uint32_t i = 0; i < o->s->consumers.count; i++)
        if (!json_is_true(json_object_get(o->consumers[i], CUIPC_RK_PRODUCER_DEAD_DETECTED)))
            cuipc_failures_add(f, CUIPC_FAILURE_VERDICT, 0,
                               "consumer %u did not report the producer's death", i);
}

/* ------------------------------------------------------------------ hooks: faulty messages */

/* The faulty message went out (or not): every consumer must then see one message more. */
static void record_fault_send(cuipc_fault_producer *f, cuipc_status st) {
    json_object_set_new(f->report, CUIPC_RK_FAULT_SEND_STATUS, json_string(cuipc_status_name(st)));
    json_object_set_new(f->report, CUIPC_RK_FAULT_RESENT, json_boolean(st == CUIPC_OK));
}

/* Message at_message is wrapped and sent as two steps, and the wrapped form kept, to be sent
 * again later (same slot and generation). */
static bool keep_at_message_send(cuipc_fault_producer *f, cuipc_value *tree, uint64_t seq,
                                 cuipc_status *st) {
    if (seq != f->s->fault.at_message)
        return false;
    cuipc_value *wrapped = NULL;
    *st = cuipc_producer_wrap(f->p, tree, f->stream, &wrapped);
    if (*st == CUIPC_OK) {
        *st = cuipc_producer_send_wrapped(f->p, wrapped, f->send_timeout_ns);
        if (*st == CUIPC_ERR_TIMEOUT) /* sent to nobody, its chunks kept: given back */
            cuipc_status_ignore(cuipc_producer_cancel_wrapped(f->p, wrapped));
        f->kept = cuipc_value_clone(wrapped);
        f->kept_seq = seq;
        cuipc_value_free(wrapped);
    }
    return true;
}

static void resend_kept(cuipc_fault_producer *f) {
    record_fault_send(f, cuipc_producer_send_wrapped(f->p, f->kept, f->send_timeout_ns));
    cuipc_value_free(f->kept);
    f->kept = NULL;
}

/* Sent again right after: the consumer's second release and re-unwrap of it at once. */
static void duplicate_release_after(cuipc_fault_producer *f, uint64_t seq) {
    if (f->kept != NULL && seq == f->kept_seq + 1)
        resend_kept(f);
}

/* Sent again stale_after messages later: its slot was released long ago. */
static void stale_release_after(cuipc_fault_producer *f, uint64_t seq) {
    if (f->kept != NULL && seq == f->kept_seq + f->s->fault.stale_after)
        resend_kept(f);
}

/* A second release of the same message must change nothing (idempotent). */
static cuipc_status duplicate_release_released(cuipc_message *m, cuipc_stream on) {
    return cuipc_message_release(m, on);
}

/* A proxy naming a pool that existed briefly and is gone: consumers must reject it. */
static cuipc_status send_unknown_pool(cuipc_fault_producer *f, uint64_t seq) {
    cuipc_pool_config cfg;
    cuipc_pool_config_init(&cfg);
    cfg.memory = CUIPC_MEMORY_HOST;
    cfg.size = 1u << 20;
    cfg.max_consumers = f->s->consumers.count;
    cfg.recycler_thread = false;
    cfg.pin_host = false;
    cuipc_pool *pool;
    cuipc_status created = cuipc_pool_create(&cfg, &pool);
    if (created != CUIPC_OK)
        return created;
    cuipc_chunk chunk;
    cuipc_status st = cuipc_pool_alloc(pool, 4096, 1, 0, &chunk);
    cuipc_proxy proxy;
    memset(&proxy, 0, sizeof proxy);
    if (st == CUIPC_OK) {
        cuipc_pool_fill_proxy(pool, &chunk, &proxy);
        proxy.layout.dtype = CUIPC_DTYPE_U8;
        proxy.layout.ndim = 1;
        proxy.layout.src_device = CUIPC_DEVICE_HOST;
        proxy.layout.shape[0] = 4096;
        proxy.layout.strides[0] = 1;
        proxy.nbytes = 4096;
    }
    cuipc_pool_destroy(pool);
    if (st != CUIPC_OK)
        return st;
    cuipc_value *tree = cuipc_value_dict(), *tensors = cuipc_value_list(),
                *sums = cuipc_value_list();
    if (tree == NULL || tensors == NULL || sums == NULL) {
        cuipc_value_free(tree);
        cuipc_value_free(tensors);
        cuipc_value_free(sums);
        return CUIPC_ERR_NO_MEMORY;
    }
    /* Containers own their items also on failure: every step runs, the first failure counts. */
    cuipc_status built[7];
    built[0] = cuipc_list_append(tensors, cuipc_value_proxy(&proxy));
    built[1] = cuipc_list_append(sums, cuipc_value_int(0));
    built[2] = cuipc_dict_set(tree, "seq", cuipc_value_int((int64_t)seq));
    built[3] = cuipc_dict_set(tree, "fault", cuipc_value_bool(true));
    built[4] = cuipc_dict_set(tree, "send_ns", cuipc_value_int((int64_t)cuipc_h_now_ns()));
    built[5] = cuipc_dict_set(tree, "tensors", tensors);
    built[6] = cuipc_dict_set(tree, "checksums", sums);
    for (int i = 0; i < 7 && st == CUIPC_OK; i++)
        st = built[i];
    if (st == CUIPC_OK)
        st = cuipc_producer_send_wrapped(f->p, tree, f->send_timeout_ns);
    cuipc_value_free(tree);
    return st;
}

static void unknown_pool_after(cuipc_fault_producer *f, uint64_t seq) {
    if (seq == f->s->fault.at_message)
        record_fault_send(f, send_unknown_pool(f, seq));
}

static void unknown_pool_judge(const cuipc_fault_outcome *o, cuipc_failures *f) {
    if (json_is_true(json_object_get(o->producer, CUIPC_RK_FAULT_RESENT)) &&
        o->rejected < o->s->consumers.count)
        cuipc_failures_add(f, CUIPC_FAILURE_VERDICT, 0,
                           "a proxy for a destroyed pool was not rejected by every consumer");
}

/* ------------------------------------------------------------------ the table */

static const cuipc_fault_def faults[] = {
    [CUIPC_FAULT_NONE] = {.name = "none", .actor = CUIPC_FAULT_BY_NOBODY, .survivable = true},
    [CUIPC_FAULT_KILL_CONSUMER] = {.name = "kill_consumer",
                                   .actor = CUIPC_FAULT_BY_CONSUMER,
                                   .signal = SIGKILL,
                                   .survivable = true,
                                   .consumer_received = kill_consumer_received,
                                   .judge = kill_consumer_judge},
    [CUIPC_FAULT_KILL_PRODUCER] = {.name = "kill_producer",
                                   .actor = CUIPC_FAULT_BY_PRODUCER,
                                   .signal = SIGKILL,
                                   .survivable = true,
                                   .producer_before = kill_producer_before,
                                   .judge = kill_producer_judge},
    [CUIPC_FAULT_CRASH_CONSUMER] = {.name = "crash_consumer",
                                    .actor = CUIPC_FAULT_BY_CONSUMER,
                                    .signal = SIGSEGV,
                                    .survivable = false,
                                    .consumer_received = crash_consumer_received},
    [CUIPC_FAULT_STALE_RELEASE] = {.name = "stale_release",
                                   .actor = CUIPC_FAULT_BY_PRODUCER,
                                   .survivable = true,
                                   .refused = true,
                                   .resends = true,
                                   .producer_send = keep_at_message_send,
                                   .producer_after = stale_release_after},
    [CUIPC_FAULT_DUPLICATE_RELEASE] = {.name = "duplicate_release",
                                       .actor = CUIPC_FAULT_BY_PRODUCER,
                                       .survivable = true,
                                       .refused = true,
                                       .resends = true,
                                       .producer_send = keep_at_message_send,
                                       .producer_after = duplicate_release_after,
                                       .consumer_released = duplicate_release_released},
    [CUIPC_FAULT_UNKNOWN_POOL] = {.name = "unknown_pool",
                                  .actor = CUIPC_FAULT_BY_PRODUCER,
                                  .survivable = true,
                                  .refused = true,
                                  .producer_after = unknown_pool_after,
                                  .judge = unknown_pool_judge},
};
_Static_assert(sizeof faults / sizeof faults[0] == CUIPC_FAULT_COUNT_,
               "one row per cuipc_fault_kind");

const cuipc_fault_def *cuipc_fault_def_of(cuipc_fault_kind k) {
    return &faults[(unsigned)k < CUIPC_FAULT_COUNT_ ? k : CUIPC_FAULT_NONE];
}

const char *cuipc_fault_kind_name(cuipc_fault_kind k) {
    return (unsigned)k < CUIPC_FAULT_COUNT_ ? faults[k].name : "invalid";
}

static const cuipc_fault_def *fault_of(const cuipc_scenario *s) {
    return cuipc_fault_def_of(s->fault.kind);
}

bool cuipc_fault_refusal_expected(const cuipc_scenario *s) {
    return fault_of(s)->refused;
}

bool cuipc_fault_resends(const cuipc_scenario *s) {
    return fault_of(s)->resends;
}

bool cuipc_fault_kills_producer(const cuipc_scenario *s) {
    return fault_of(s)->actor == CUIPC_FAULT_BY_PRODUCER && fault_of(s)->signal != 0;
}

bool cuipc_fault_kills_consumer(const cuipc_scenario *s, uint32_t i) {
    return fault_of(s)->actor == CUIPC_FAULT_BY_CONSUMER && fault_of(s)->signal != 0 &&
           i == s->fault.consumer;
}

int cuipc_fault_expected_signal(const cuipc_scenario *s, int consumer) {
    bool killed = consumer < 0 ? cuipc_fault_kills_producer(s)
                               : cuipc_fault_kills_consumer(s, (uint32_t)consumer);
    return killed && fault_of(s)->survivable ? fault_of(s)->signal : 0;
}

void cuipc_fault_producer_before(const cuipc_scenario *s, uint64_t seq) {
    if (fault_of(s)->producer_before != NULL)
        fault_of(s)->producer_before(s, seq);
}

bool cuipc_fault_producer_send(cuipc_fault_producer *f, cuipc_value *tree, uint64_t seq,
                               cuipc_status *st) {
    return fault_of(f->s)->producer_send != NULL && fault_of(f->s)->producer_send(f, tree, seq, st);
}

void cuipc_fault_producer_after(cuipc_fault_producer *f, uint64_t seq) {
    if (fault_of(f->s)->producer_after != NULL)
        fault_of(f->s)->producer_after(f, seq);
}

void cuipc_fault_consumer_received(const cuipc_scenario *s, uint32_t consumer, uint64_t seq) {
    if (fault_of(s)->consumer_received != NULL && consumer == s->fault.consumer)
        fault_of(s)->consumer_received(s, seq);
}

bool cuipc_fault_consumer_released(const cuipc_scenario *s, uint32_t consumer, cuipc_message *m,
                                   cuipc_stream on, cuipc_status *st) {
    if (fault_of(s)->consumer_released == NULL || consumer != s->fault.consumer)
        return false;
    *st = fault_of(s)->consumer_released(m, on);
    return true;
}

bool cuipc_fault_fired(const cuipc_scenario *s, const cuipc_child_result *cr,
                       const json_t *producer, char *why, size_t cap) {
    const cuipc_fault_def *d = fault_of(s);
    unsigned long long at = (unsigned long long)s->fault.at_message;
    long long sent =
        (long long)json_integer_value(json_object_get(producer, CUIPC_RK_MESSAGES_SENT));
    why[0] = '\0';
    if (d->actor == CUIPC_FAULT_BY_CONSUMER) {
        const cuipc_child_result *r = &cr[1 + s->fault.consumer];
        if (r->signal != d->signal || r->stopped_by_supervisor) {
            char desc[96];
            snprintf(why, cap,
                     "consumer %u never received message %llu and ended with %s (%lld sent)",
                     s->fault.consumer, at, cuipc_child_describe(r, desc, sizeof desc), sent);
        }
    } else if (d->actor == CUIPC_FAULT_BY_PRODUCER) {
        /* It raised its signal itself, or sent the faulty message. */
        bool fired = d->signal != 0 ? cr[0].signal == d->signal && !cr[0].stopped_by_supervisor
                                    : json_object_get(producer, CUIPC_RK_FAULT_SEND_STATUS) != NULL;
        if (!fired)
            snprintf(why, cap, "the producer never reached message %llu (%lld sent)", at, sent);
    }
    return why[0] == '\0';
}

void cuipc_fault_judge(const cuipc_fault_outcome *o, cuipc_failures *f) {
    if (fault_of(o->s)->judge != NULL)
        fault_of(o->s)->judge(o, f);
}
