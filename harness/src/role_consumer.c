/* A consumer process: attaches, receives every message, unwraps it (copy or borrow), measures
 * end-to-end latency, verifies checksums, holds, releases; reports counts and latencies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_gauge.h"
#include "fault.h"
#include "results_keys.h"
#include "role_common.h"
#include "util.h"

#define RECV_TIMEOUT_NS (200 * 1000000ll)

/* A replayed workload's message, held until its own release time (holds overlap). */
typedef struct held_message {
    cuipc_message *m;
    cuipc_value *tree;
    uint64_t release_ns;
    uint64_t planned_ns; /* the planner's release time: due (the stamp) + fill + hold */
} held_message;

/* How far a replay kept the planner's clock: a release later than planned keeps its chunk in
 * the pool longer than the planner's model, by the time it was late. */
typedef struct replay_timing {
    uint64_t messages, hold_sum_ns, late_max_ns, late_sum_ns;
} replay_timing;

typedef struct consumer_state {
    const cuipc_scenario *s;
    uint32_t index;
    cuipc_stream stream;
    cuipc_unwrap_options opt; /* the same for every message */
    uint64_t *lat;
    cuipc_gauge_pair *gauges; /* run.cpu_gauge: each latency sample's two walks, same index */
    cuipc_cpu_gauge gauge;
    size_t n_lat, cap_lat;
    uint64_t seen; /* latency samples offered (for reservoir sampling) */
    struct {
        uint64_t seq, ns;
    } worst[CUIPC_WORST_SAMPLES]; /* the slowest timed messages, slowest first */
    size_t n_worst;
    uint64_t rng;
    uint64_t messages, bytes, checked, mismatches, rejected, unwrap_errors;
    held_message *held;
    size_t n_held, cap_held;
    replay_timing replay;
    json_t *out;
    /* Timed messages, stage by stage: send stamp -> received, -> unwrapped, -> data ready. */
    cuipc_stage_samples deliver, unwrap, ready;
    /* Throughput after the warm-up messages (the first ones map the pool, warm caches): from
     * the receipt of the first later message to the end. */
    uint64_t steady_t0, steady_bytes, steady_messages;
    cuipc_gpu_probe_ctx gctx; /* the sampler reads it until it is freed */
    cuipc_leak_sampler ls;
    /* The receive loop, from the go: how it ended, how often this consumer attached. */
    uint64_t t0, t_end;
    bool closed, producer_dead;
    bool churns;                    /* leaves and comes back (consumers.churn) */
    uint64_t attaches, this_attach; /* attaches in all; messages in the current one */
} consumer_state;

static uint64_t tensor_bytes(const cuipc_tensor *t) {
    return cuipc_tensor_span_bytes(t);
}

/* Returns mismatches found in the tree (checksums[j] vs tensors[j]). */
static uint64_t verify(consumer_state *cs, const cuipc_value *tree, bool check, uint64_t *bytes) {
    const cuipc_value *tensors = cuipc_dict_get(tree, "tensors");
    const cuipc_value *sums = cuipc_dict_get(tree, "checksums");
    uint64_t bad = 0;
    *bytes = 0;
    size_t n = tensors ? cuipc_value_len(tensors) : 0;
    if (tensors == NULL || sums == NULL || cuipc_value_len(sums) != n)
        return 1; /* a message without its checks is itself a mismatch */
    for (size_t j = 0; j < n; j++) {
        const cuipc_tensor *t = cuipc_value_as_tensor(cuipc_list_get(tensors, j));
        if (t == NULL) {
            bad++;
            continue;
        }
        uint64_t len = tensor_bytes(t);
        *bytes += len;
        if (!check)
            continue;
        uint64_t sum = 0;
        if (t->device == CUIPC_DEVICE_HOST)
            sum = cuipc_host_checksum(t->data, len);
        else if (cuipc_gpu_checksum(t->data, len, cs->stream, &sum) != CUIPC_OK)
            sum = ~(uint64_t)cuipc_value_as_int(cuipc_list_get(sums, j));
        cs->checked++;
        bad += sum != (uint64_t)cuipc_value_as_int(cuipc_list_get(sums, j));
    }
    return bad;
}

/* Keep the slowest messages with their sequence numbers: where a tail comes from (the first
 * messages, a period, one burst) is what a percentile cannot say. */
static void keep_if_worst(consumer_state *cs, uint64_t seq, uint64_t ns) {
    size_t i = cs->n_worst < CUIPC_WORST_SAMPLES ? cs->n_worst++ : CUIPC_WORST_SAMPLES;
    if (i == CUIPC_WORST_SAMPLES) {
        if (ns <= cs->worst[i - 1].ns)
            return;
        i--;
    }
    for (; i > 0 && cs->worst[i - 1].ns < ns; i--)
        cs->worst[i] = cs->worst[i - 1];
    cs->worst[i].seq = seq;
    cs->worst[i].ns = ns;
}

static void record_latency(consumer_state *cs, uint64_t seq, uint64_t ns, cuipc_gauge_pair g) {
    keep_if_worst(cs, seq, ns);
    cs->seen++;
    if (cs->n_lat < cs->cap_lat) {
        if (cs->gauges != NULL)
            cs->gauges[cs->n_lat] = g;
        cs->lat[cs->n_lat++] = ns;
        return;
    }
    /* Reservoir: every sample keeps an equal chance when a long run overflows the buffer. */
    cs->rng ^= cs->rng << 13;
    cs->rng ^= cs->rng >> 7;
    cs->rng ^= cs->rng << 17;
    uint64_t k = cs->rng % cs->seen;
    if (k < cs->cap_lat) {
        cs->lat[k] = ns;
        if (cs->gauges != NULL)
            cs->gauges[k] = g;
    }
}

/* A walk's time as a gauge sample: 0 means none, so a real one is at least 1. */
static uint32_t gauge_sample(uint64_t ns) {
    return ns == 0 ? 1 : ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static bool is_rejection(cuipc_status st) {
    return st == CUIPC_ERR_STALE || st == CUIPC_ERR_DUPLICATE || st == CUIPC_ERR_CORRUPT ||
           st == CUIPC_ERR_UNKNOWN_POOL;
}

/* Positive control of the copy-out path: unwrapped trees (their copies) kept, never freed. */
static cuipc_value **kept_copies;
static size_t n_kept_copies, cap_kept_copies;

static void free_or_keep(consumer_state *cs, cuipc_value *tree) {
    if (cs->s->leak.inject_keep_copies) {
        if (n_kept_copies == cap_kept_copies) {
            size_t cap = cap_kept_copies ? 2 * cap_kept_copies : 256;
            cuipc_value **more = realloc(kept_copies, cap * sizeof *more);
            if (more != NULL) {
                kept_copies = more;
                cap_kept_copies = cap;
            }
        }
        if (n_kept_copies < cap_kept_copies) {
            kept_copies[n_kept_copies++] = tree; /* never freed: on purpose */
            return;
        }
    }
    cuipc_value_free(tree);
}

static void release(consumer_state *cs, cuipc_message *m, cuipc_value *tree) {
    const cuipc_scenario *s = cs->s;
    /* This consumer never leaves GPU reads of the data queued (its checksums synchronise), so
     * by default it releases on the host; "stream" acks on its stream like a consumer whose
     * kernels read the borrowed data, a GPU operation in this process's context. */
    cuipc_stream on = s->consumers.release_on_stream ? cs->stream : NULL;
    cuipc_status rst = cuipc_message_release(m, on);
    if (rst != CUIPC_OK)
        cuipc_count_status(cs->out, "release_status", rst);
    cuipc_status again;
    if (cuipc_fault_consumer_released(s, cs->index, m, on, &again))
        cuipc_count_status(cs->out, "second_release_status", again);
    free_or_keep(cs, tree);
}

/* Release (and free) held messages whose time has come, or all of them; returns the time until
 * the next release is due, at most RECV_TIMEOUT_NS. */
static int64_t release_held(consumer_state *cs, bool all) {
    uint64_t now = cuipc_h_now_ns(), next = now + RECV_TIMEOUT_NS;
    for (size_t k = 0; k < cs->n_held;) {
        held_message *h = &cs->held[k];
        if (all || h->release_ns <= now) {
            uint64_t late = now > h->planned_ns ? now - h->planned_ns : 0;
            cs->replay.late_max_ns = late > cs->replay.late_max_ns ? late : cs->replay.late_max_ns;
            cs->replay.late_sum_ns += late;
            release(cs, h->m, h->tree);
            cuipc_message_free(h->m);
            *h = cs->held[--cs->n_held];
            continue;
        }
        next = h->release_ns < next ? h->release_ns : next;
        k++;
    }
    return (int64_t)(next - now);
}

static bool hold_until(consumer_state *cs, cuipc_message *m, cuipc_value *tree, uint64_t release_ns,
                       uint64_t planned_ns) {
    if (cs->n_held == cs->cap_held) {
        size_t cap = cs->cap_held ? 2 * cs->cap_held : 64;
        held_message *more = realloc(cs->held, cap * sizeof *more);
        if (more == NULL)
            return false;
        cs->held = more;
        cs->cap_held = cap;
    }
    cs->held[cs->n_held++] = (held_message){m, tree, release_ns, planned_ns};
    return true;
}

/* One received message: unwrap, time, verify, hold, release. Takes m (*kept: m is held for
 * later release). false on a hard error. */
static bool handle(consumer_state *cs, cuipc_message *m, bool *kept) {
    const cuipc_scenario *s = cs->s;
    uint64_t t_recv = cuipc_h_now_ns();
    const cuipc_value *raw = cuipc_message_value(m);
    uint64_t seq = (uint64_t)cuipc_value_as_int(cuipc_dict_get(raw, "seq"));
    uint64_t send_ns = (uint64_t)cuipc_value_as_int(cuipc_dict_get(raw, "send_ns"));
    cuipc_fault_consumer_received(s, cs->index, seq);
    cuipc_value *tree = NULL;
    cuipc_status st = cuipc_message_unwrap(m, &cs->opt, &tree);
    if (st != CUIPC_OK) {
        cuipc_count_status(cs->out, "unwrap_status", st);
        if (is_rejection(st) && cuipc_fault_refusal_expected(s)) {
            cs->rejected++;
            return true;
        }
        cs->unwrap_errors++;
        json_object_set_new(cs->out, CUIPC_RK_ERROR, cuipc_status_json(st));
        return false;
    }
    uint64_t t_unwrap = cuipc_h_now_ns();
    /* A GPU consumer's work is stream-ordered: like a real one it does not wait for the data
     * on the host, except on the messages it times (and the last, so throughput counts it),
     * and only when unwrap left work on the stream (else the data is there already). */
    bool timed =
        seq % s->consumers.sync_every == 0 || (s->run.iterations && seq + 1 == s->run.iterations);
    /* Timing only: a failed copy is reported by the stream's next checked call. */
    if (cs->stream && timed && cuipc_message_stream_ordered(m))
        cuipc_status_ignore(cuipc_gpu_stream_sync(cs->stream));
    uint64_t now = cuipc_h_now_ns();
    if (timed && seq >= s->run.warmup_iterations && now >= send_ns) {
        /* The CPU's state right after the timed span, beside the producer's before it. */
        cuipc_gauge_pair g = {0, 0};
        if (cs->gauges != NULL) {
            int64_t theirs = cuipc_value_as_int(cuipc_dict_get(raw, "gauge_ns"));
            g.producer_ns = theirs > 0 ? gauge_sample((uint64_t)theirs) : 0;
            g.consumer_ns = gauge_sample(cuipc_cpu_gauge_ns(&cs->gauge));
        }
        record_latency(cs, seq, now - send_ns, g);
        cuipc_stage_add(&cs->deliver, t_recv >= send_ns ? t_recv - send_ns : 0);
        cuipc_stage_add(&cs->unwrap, t_unwrap - t_recv);
        cuipc_stage_add(&cs->ready, now - t_unwrap);
    }
    uint64_t bytes;
    bool check = s->validation.enabled && seq % s->validation.every == 0;
    uint64_t bad = verify(cs, tree, check, &bytes);
    cs->mismatches += bad;
    if (bad && json_object_get(cs->out, "first_mismatch_seq") == NULL)
        json_object_set_new(cs->out, "first_mismatch_seq", json_integer((json_int_t)seq));
    cs->messages++;
    cs->bytes += bytes;
    if (seq >= s->run.warmup_iterations) {
        if (cs->steady_t0 == 0)
            cs->steady_t0 = t_recv;
        cs->steady_bytes += bytes;
        cs->steady_messages++;
    }
    if (cuipc_scenario_replays(s)) {
        /* The planner's model: every message is held for its own time from its receipt,
         * overlapping the next ones, so the receive loop releases it later. */
        const cuipc_plan_workload *w = &s->workload.w;
        /* fill_us: the data is written behind the send (stream-ordered) and the hold starts
         * once it is ready; the buffer is taken all that time. */
        uint64_t hold = w->fill_ns + w->hold_ns[(seq % w->n) * w->consumers + cs->index];
        cs->replay.messages++;
        cs->replay.hold_sum_ns += hold;
        if (!hold_until(cs, m, tree, now + hold, send_ns + hold)) {
            json_object_set_new(cs->out, CUIPC_RK_ERROR,
                                json_string("out of memory holding messages"));
            cuipc_value_free(tree);
            return false;
        }
        *kept = true;
        return true;
    }
    if (s->consumers.hold_ns)
        cuipc_h_sleep_ns(s->consumers.hold_ns);
    release(cs, m, tree);
    return true;
}

/* Before the go: the transport's one-time set-up (pool mapping, registrations, copy pool), and
 * the GPU checksum's, when this consumer validates. */
static cuipc_status prepare(consumer_state *cs, cuipc_consumer *c, int device) {
    cuipc_status st = cuipc_consumer_prepare(c, &cs->opt);
    if (st != CUIPC_OK || device < 0 || !cs->s->validation.enabled)
        return st;
    return cuipc_role_warm_checksum(device, cs->stream);
}

static cuipc_status attach(const cuipc_scenario *s, const char *path, cuipc_consumer **c) {
    uint64_t deadline = cuipc_h_now_ns() + (uint64_t)(s->run.attach_timeout_s * 1e9);
    cuipc_status st;
    /* The producer may not have made its socket yet: retry until the attach deadline. */
    while ((st = cuipc_consumer_attach(path, 100 * 1000000ll, c)) != CUIPC_OK &&
           cuipc_h_now_ns() < deadline)
        cuipc_h_sleep_ns(10 * 1000000ull);
    return st;
}

/* Churn: leave after every churn.every messages and come back as a new consumer. false with
 * *c NULL when the producer has stopped serving attaches (the run is over); false with an
 * error status otherwise. */
static bool come_back(consumer_state *cs, const cuipc_role_args *a, int device, cuipc_consumer **c,
                      cuipc_status *st) {
    release_held(cs, true);
    /* Acks queued on the stream land before the sync table is unmapped; a failed sync is
     * reported by the stream's next checked call. */
    if (cs->stream)
        cuipc_status_ignore(cuipc_gpu_stream_sync(cs->stream));
    cuipc_consumer_detach(*c);
    *c = NULL;
    uint64_t deadline = cuipc_h_now_ns() + (uint64_t)(cs->s->run.attach_timeout_s * 1e9);
    while ((*st = cuipc_consumer_attach(a->socket_path, 100 * 1000000ll, c)) != CUIPC_OK) {
        if (atomic_load(&a->shared->closing)) {
            *st = CUIPC_OK;
            return false;
        }
        if (cuipc_h_now_ns() >= deadline)
            return false;
    }
    if (cs->s->consumers.spin_ns >= 0)
        cuipc_consumer_set_spin_ns(*c, (uint64_t)cs->s->consumers.spin_ns);
    if ((*st = prepare(cs, *c, device)) != CUIPC_OK) {
        cuipc_consumer_detach(*c);
        *c = NULL;
        return false;
    }
    return true;
}

static int write_samples(const char *run_dir, uint32_t index, const char *ext, const void *p,
                         size_t size, size_t n) {
    char path[1200];
    snprintf(path, sizeof path, "%s/consumer-%u.%s", run_dir, index, ext);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return 1;
    size_t w = fwrite(p, size, n, f);
    return fclose(f) == 0 && w == n ? 0 : 1;
}

/* Latency buffer sized and touched before timing starts (RSS stays flat), and the stages'. */
static bool alloc_samples(consumer_state *cs) {
    const cuipc_scenario *s = cs->s;
    cs->cap_lat = s->run.iterations ? s->run.iterations : 1u << 21;
    if (cs->cap_lat > (1u << 21))
        cs->cap_lat = 1u << 21;
    cs->lat = malloc(cs->cap_lat * sizeof *cs->lat);
    if (cs->lat == NULL)
        return false;
    cuipc_h_touch(cs->lat, cs->cap_lat * sizeof *cs->lat);
    if (s->run.cpu_gauge) {
        cs->gauges = malloc(cs->cap_lat * sizeof *cs->gauges);
        if (cs->gauges == NULL || !cuipc_cpu_gauge_init(&cs->gauge))
            return false;
        cuipc_h_touch(cs->gauges, cs->cap_lat * sizeof *cs->gauges);
    }
    size_t stage_cap = cs->cap_lat < 65536 ? cs->cap_lat : 65536;
    return cuipc_stage_init(&cs->deliver, stage_cap) && cuipc_stage_init(&cs->unwrap, stage_cap) &&
           cuipc_stage_init(&cs->ready, stage_cap);
}

/* How every message is unwrapped: the same options throughout. */
static void set_unwrap_options(consumer_state *cs, int device) {
    const cuipc_scenario *s = cs->s;
    cuipc_unwrap_options_init(&cs->opt);
    cs->opt.kind = s->consumers.unwrap;
    cs->opt.device = s->consumers.copy_to;
    /* A consumer on a GPU other than the pool's reads it through peer access: the mapping is
     * opened, and a copy-out lands, on the consumer's own GPU, whose stream does the work. */
    if (device >= 0 &&
        (s->consumers.copy_to == CUIPC_H_COPY_TO_CONSUMER ||
         (s->consumers.unwrap == CUIPC_UNWRAP_BORROW && device != s->producer_device)))
        cs->opt.device = device;
    cs->opt.stream = cs->stream;
    if (s->consumers.host_wait_ns >= 0)
        cs->opt.host_wait_ns = s->consumers.host_wait_ns;
    cs->opt.copy_cache_bytes = s->consumers.copy_cache_bytes;
}

/* Attach, make the stream and do the transport's one-time set-up. On failure report.error
 * says why and *c is NULL. */
static cuipc_status join_producer(consumer_state *cs, const cuipc_role_args *a, int device,
                                  cuipc_consumer **c) {
    const cuipc_scenario *s = cs->s;
    cuipc_status st = attach(s, a->socket_path, c);
    if (st == CUIPC_OK) {
        json_object_set_new(cs->out, "transport_index", json_integer(cuipc_consumer_index(*c)));
        if (s->consumers.spin_ns >= 0)
            cuipc_consumer_set_spin_ns(*c, (uint64_t)s->consumers.spin_ns);
        if (device >= 0)
            st = cuipc_gpu_stream_create(device, &cs->stream);
    }
    if (st == CUIPC_OK) {
        set_unwrap_options(cs, device);
        st = prepare(cs, *c, device);
    }
    if (st != CUIPC_OK) {
        json_object_set_new(cs->out, CUIPC_RK_ERROR, cuipc_status_json(st));
        if (*c != NULL)
            cuipc_consumer_detach(*c);
        *c = NULL;
    }
    return st;
}

/* A message received: handled and counted; with churn, this consumer leaves after every
 * churn.every messages and comes back. false when the loop ends there (*rc, closed say how). */
static bool took_message(consumer_state *cs, const cuipc_role_args *a, int device,
                         cuipc_consumer **c, cuipc_message *m, int *rc) {
    bool kept = false;
    if (!handle(cs, m, &kept))
        *rc = 1;
    if (!kept)
        cuipc_message_free(m);
    atomic_store(&a->shared->received[cs->index], cs->messages + cs->rejected);
    cs->t_end = cuipc_h_now_ns();
    if (!cs->churns || *rc != 0 || ++cs->this_attach != cs->s->consumers.churn.every)
        return true;
    cs->this_attach = 0;
    cuipc_status st;
    if (come_back(cs, a, device, c, &st)) {
        cs->attaches++;
        return true;
    }
    if (st == CUIPC_OK) {
        cs->closed = true; /* the producer closed while this consumer was away */
        return false;
    }
    json_object_set_new(cs->out, CUIPC_RK_ERROR, cuipc_status_json(st));
    *rc = 1;
    return false;
}

/* A receive that gave no message (st): false when the loop ends there (*rc says how). */
static bool took_none(consumer_state *cs, const cuipc_role_args *a, cuipc_status st, int *rc) {
    if (is_rejection(st) && cuipc_fault_refusal_expected(cs->s)) {
        /* The transport refused the injected message before handing it over. */
        cuipc_count_status(cs->out, "recv_status", st);
        cs->rejected++;
        atomic_store(&a->shared->received[cs->index], cs->messages + cs->rejected);
        return true;
    }
    if (st == CUIPC_ERR_CLOSED) {
        cs->closed = true;
        return false;
    }
    if (st == CUIPC_ERR_PEER_DEAD && cs->churns && cs->this_attach == 0 && cs->attaches > 1 &&
        atomic_load(&a->shared->closing)) {
        /* Came back just as the producer finished: its last accept pass never took this attach
         * in, and its exit hangs the half-made connection up. The run is over; the attach the
         * producer never saw is not counted. */
        cs->attaches--;
        cs->closed = true;
        return false;
    }
    if (st == CUIPC_ERR_PEER_DEAD) {
        cs->producer_dead = true;
        json_object_set_new(cs->out, "producer_dead_error", cuipc_status_json(st));
        *rc = cuipc_fault_kills_producer(cs->s) ? 0 : 1;
        return false;
    }
    if (st != CUIPC_ERR_TIMEOUT) {
        json_object_set_new(cs->out, CUIPC_RK_ERROR, cuipc_status_json(st));
        *rc = 1;
    }
    return true;
}

/* Receive until the producer closes (or dies, or an error), then let go of held messages.
 * Returns 0, or 1 on an error. */
static int receive_all(consumer_state *cs, const cuipc_role_args *a, int device,
                       cuipc_consumer **c) {
    int rc = 0;
    cs->t0 = cs->t_end = cuipc_h_now_ns();
    cs->attaches = 1;
    while (rc == 0) {
        cuipc_message *m = NULL;
        cuipc_status st = cuipc_consumer_recv(*c, release_held(cs, false), &m);
        if (!(st == CUIPC_OK ? took_message(cs, a, device, c, m, &rc) : took_none(cs, a, st, &rc)))
            break;
        if (cs->ls.t != NULL)
            cuipc_leak_maybe_sample(&cs->ls);
    }
    /* Held messages: after a clean close each keeps its hold; otherwise let go at once. */
    for (int64_t wait; (wait = release_held(cs, !cs->closed || rc != 0)) > 0 && cs->n_held;)
        cuipc_h_sleep_ns((uint64_t)wait);
    free(cs->held);
    return rc;
}

static json_t *worst_json(const consumer_state *cs) {
    json_t *worst = json_array();
    for (size_t k = 0; k < cs->n_worst; k++)
        json_array_append_new(worst, json_pack("{s:I, s:f}", "seq", (json_int_t)cs->worst[k].seq,
                                               "us", (double)cs->worst[k].ns / 1e3));
    return worst;
}

/* The report's figures of the run: counts, how it ended, the replay's timing, the slowest
 * messages, the stages, the transport's stats (c: the last attach, NULL if none) and the leak
 * verdicts; frees the samplers. */
static void report_run(consumer_state *cs, cuipc_consumer *c) {
    if (cs->ls.t != NULL)
        cuipc_leak_sample_now(&cs->ls);
    double seconds = (double)(cs->t_end - cs->t0) / 1e9;
    cuipc_consumer_stats cst = {0}; /* of the last attach */
    if (c != NULL)
        cuipc_consumer_stats_get(c, &cst);
    if (cs->churns)
        json_object_set_new(cs->out, CUIPC_RK_ATTACHES, json_integer((json_int_t)cs->attaches));
    json_object_set_new(cs->out, CUIPC_RK_MESSAGES, json_integer((json_int_t)cs->messages));
    json_object_set_new(cs->out, CUIPC_RK_BYTES, json_integer((json_int_t)cs->bytes));
    json_object_set_new(cs->out, CUIPC_RK_SECONDS, json_real(seconds));
    json_object_set_new(cs->out, CUIPC_RK_STEADY,
                        json_pack("{s:I, s:I, s:f}", CUIPC_RK_MESSAGES,
                                  (json_int_t)cs->steady_messages, CUIPC_RK_BYTES,
                                  (json_int_t)cs->steady_bytes, CUIPC_RK_SECONDS,
                                  cs->steady_t0 && cs->t_end > cs->steady_t0
                                      ? (double)(cs->t_end - cs->steady_t0) / 1e9
                                      : 0.0));
    json_object_set_new(cs->out, "checked", json_integer((json_int_t)cs->checked));
    json_object_set_new(cs->out, CUIPC_RK_MISMATCHES, json_integer((json_int_t)cs->mismatches));
    json_object_set_new(cs->out, CUIPC_RK_REJECTED, json_integer((json_int_t)cs->rejected));
    json_object_set_new(cs->out, "closed_cleanly", json_boolean(cs->closed));
    json_object_set_new(cs->out, CUIPC_RK_PRODUCER_DEAD_DETECTED, json_boolean(cs->producer_dead));
    json_object_set_new(cs->out, "latency_samples", json_integer((json_int_t)cs->n_lat));
    if (cs->gauges != NULL)
        json_object_set_new(cs->out, CUIPC_RK_RESIDENT_WALK_NS,
                            json_integer((json_int_t)cs->gauge.resident_ns));
    if (cs->replay.messages > 0) {
        double n = (double)cs->replay.messages;
        json_object_set_new(
            cs->out, "replay",
            json_pack("{s:I, s:f, s:f, s:f}", CUIPC_RK_MESSAGES, (json_int_t)cs->replay.messages,
                      "hold_mean_us", (double)cs->replay.hold_sum_ns / n / 1e3,
                      "release_late_max_us", (double)cs->replay.late_max_ns / 1e3,
                      "release_late_mean_us", (double)cs->replay.late_sum_ns / n / 1e3));
    }
    json_object_set_new(cs->out, CUIPC_RK_WORST, worst_json(cs));
    json_object_set_new(cs->out, CUIPC_RK_STAGES_US,
                        json_pack("{s:o, s:o, s:o}", "deliver", cuipc_stage_json_free(&cs->deliver),
                                  CUIPC_RK_STAGE_UNWRAP, cuipc_stage_json_free(&cs->unwrap),
                                  "ready", cuipc_stage_json_free(&cs->ready)));
    json_object_set_new(cs->out, CUIPC_RK_STATS,
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", CUIPC_RK_MESSAGES,
                                  (json_int_t)cst.messages, CUIPC_RK_BYTES, (json_int_t)cst.bytes,
                                  "handle_opens", (json_int_t)cst.handle_opens, "handle_hits",
                                  (json_int_t)cst.handle_hits, CUIPC_RK_REJECTED,
                                  (json_int_t)cst.rejected));
    json_object_set_new(cs->out, CUIPC_RK_LEAK, cuipc_role_leak_json(cs->s, &cs->ls));
    cuipc_leak_sampler_free(&cs->ls);
}

int cuipc_role_consumer(const cuipc_role_ctx *ctx, void *arg) {
    const cuipc_role_args *a = arg;
    const cuipc_scenario *s = a->s;
    uint32_t i = ctx->index;
    consumer_state cs = {.s = s, .index = i, .rng = 0x9e3779b97f4a7c15ull ^ i};
    cs.churns = cuipc_scenario_churns(s, i);
    cs.out = json_object();
    json_object_set_new(cs.out, CUIPC_RK_ROLE, json_string("consumer"));
    json_object_set_new(cs.out, CUIPC_RK_INDEX, json_integer(i));
    json_object_set_new(cs.out, "pid", json_integer(getpid()));
    if (!cuipc_role_bind(s, false, i, s->consumers.devices[i], cs.out)) {
        cuipc_role_write(a->run_dir, "consumer", i, cs.out);
        return 1;
    }
    int device = s->needs_gpu ? s->consumers.devices[i] : -1;
    if (!alloc_samples(&cs))
        return 1;
    cuipc_consumer *c = NULL;
    if (join_producer(&cs, a, device, &c) != CUIPC_OK) {
        cuipc_role_write(a->run_dir, "consumer", i, cs.out);
        return 1;
    }
    cuipc_role_sampler_start(s, device, &cs.gctx, &cs.ls);
    json_object_set_new(cs.out, CUIPC_RK_MPS_CLIENT, cuipc_role_mps_json(&cs.gctx));
    cuipc_role_ready(ctx);
    if (!cuipc_role_wait_go(ctx, (int)(s->run.attach_timeout_s * 1000) + 5000)) {
        cuipc_consumer_detach(c);
        return 1;
    }
    cuipc_thread_sched sched;
    cuipc_thread_sched_now(&sched);
    int rc = receive_all(&cs, a, device, &c);
    json_object_set_new(cs.out, CUIPC_RK_MAIN_THREAD, cuipc_thread_sched_json(&sched));
    report_run(&cs, c);
    if (c != NULL)
        cuipc_consumer_detach(c);
    if (cs.stream) /* tear-down: nothing left to report to */
        cuipc_status_ignore(cuipc_gpu_stream_destroy(cs.stream));
    rc |= write_samples(a->run_dir, i, "lat", cs.lat, sizeof *cs.lat, cs.n_lat);
    if (cs.gauges != NULL)
        rc |= write_samples(a->run_dir, i, "gauge", cs.gauges, sizeof *cs.gauges, cs.n_lat);
    free(cs.lat);
    free(cs.gauges);
    cuipc_cpu_gauge_free(&cs.gauge);
    rc |= !cuipc_role_write(a->run_dir, "consumer", i, cs.out);
    json_decref(cs.out);
    return rc;
}
