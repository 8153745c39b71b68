/* The producer process: creates the cuipc_producer, waits for every consumer, then sends the
 * scenario's messages {seq, send_ns, tensors: [...], checksums: [...]} and reports its stats. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_gauge.h"
#include "fault.h"
#include "results_keys.h"
#include "role_common.h"
#include "schedule.h"
#include "util.h"

#define SEND_TIMEOUT_NS (10 * 1000000000ll)
#define LEAVE_WAIT_NS (5 * 1000000000ull)

typedef struct occupancy occupancy;

typedef struct producer_state {
    const cuipc_scenario *s;
    const cuipc_role_args *a;
    cuipc_producer *p;
    cuipc_stream stream;
    bool gpu;
    void *buffers[CUIPC_SCN_MAX_PER_MESSAGE]; /* reused tensor memory when not fresh_per_message */
    void **retained; /* cuda_ipc: every tensor ever sent stays alive (the reference's leak) */
    size_t n_retained, cap_retained;
    json_t *out;
    cuipc_fault_producer fault;
    /* The timed run, from the go. */
    cuipc_gpu_probe_ctx gctx; /* the sampler reads it until it is freed */
    cuipc_leak_sampler ls;
    occupancy *occ;
    cuipc_stage_samples send_time; /* how long cuipc_producer_send takes (wrap + deliver) */
    cuipc_schedule sched;          /* what the open loop kept of its schedule */
    uint64_t t0, end_ns;
    uint64_t sched0; /* origin of the open-loop schedule */
    uint64_t sent, failed, bytes_total;
    cuipc_cpu_gauge gauge; /* run.cpu_gauge: walked before each message */
} producer_state;

static void *tensor_alloc(producer_state *ps, uint64_t bytes, cuipc_status *st) {
    void *p = NULL;
    if (ps->gpu) {
        *st = cuipc_gpu_malloc(ps->s->producer_device, bytes, &p);
    } else {
        p = malloc(bytes);
        *st = p ? CUIPC_OK : CUIPC_ERR_NO_MEMORY;
        if (p)
            cuipc_h_touch(p, bytes); /* so RSS does not grow later */
    }
    return *st == CUIPC_OK ? p : NULL;
}

static void tensor_free(producer_state *ps, void *p) {
    if (ps->gpu) /* tear-down: the leak check measures what stays held */
        cuipc_status_ignore(cuipc_gpu_free(p));
    else
        free(p);
}

/* Pool occupancy over time, bounded: when the buffer is full every other sample is dropped and
 * the interval doubles, so any run length ends with 1024..2048 evenly spaced samples. */
#define OCC_CAP 2048
struct occupancy {
    uint64_t t0, interval_ns, next_ns;
    size_t n;
    double t_s[OCC_CAP];
    uint64_t used[2][OCC_CAP], in_flight[2][OCC_CAP]; /* [0] GPU pool, [1] host pool */
};

static void occupancy_sample(occupancy *o, cuipc_producer *p, uint64_t now) {
    if (now < o->next_ns)
        return;
    if (o->n == OCC_CAP) {
        for (size_t k = 0; k < OCC_CAP / 2; k++) {
            o->t_s[k] = o->t_s[2 * k];
            for (int q = 0; q < 2; q++) {
                o->used[q][k] = o->used[q][2 * k];
                o->in_flight[q][k] = o->in_flight[q][2 * k];
            }
        }
        o->n = OCC_CAP / 2;
        o->interval_ns *= 2;
    }
    cuipc_producer_stats st;
    cuipc_producer_stats_get(p, &st);
    o->t_s[o->n] = (double)(now - o->t0) / 1e9;
    o->used[0][o->n] = st.gpu_pool.used_bytes;
    o->in_flight[0][o->n] = st.gpu_pool.in_flight;
    o->used[1][o->n] = st.host_pool.used_bytes;
    o->in_flight[1][o->n] = st.host_pool.in_flight;
    o->n++;
    o->next_ns = now + o->interval_ns;
}

static json_t *occupancy_json(const occupancy *o, const cuipc_producer_stats *st) {
    json_t *t = json_array(),
           *a[2][2] = {{json_array(), json_array()}, {json_array(), json_array()}};
    for (size_t k = 0; k < o->n; k++) {
        json_array_append_new(t, json_real(o->t_s[k]));
        for (int q = 0; q < 2; q++) {
            json_array_append_new(a[q][0], json_integer((json_int_t)o->used[q][k]));
            json_array_append_new(a[q][1], json_integer((json_int_t)o->in_flight[q][k]));
        }
    }
    return json_pack("{s:f, s:o, s:o, s:o, s:o, s:o, s:I, s:I}", "interval_ms",
                     (double)o->interval_ns / 1e6, "t_s", t, "gpu_used_bytes", a[0][0],
                     "gpu_in_flight", a[0][1], "host_used_bytes", a[1][0], "host_in_flight",
                     a[1][1], "gpu_size", (json_int_t)st->gpu_pool.size, "host_size",
                     (json_int_t)st->host_pool.size);
}

/* Fill and checksum one tensor; seed = message index * per_message + j. */
static cuipc_status fill(producer_state *ps, void *data, uint64_t bytes, uint64_t seed,
                         uint64_t *sum) {
    if (!ps->gpu) {
        cuipc_host_fill_pattern(data, bytes, seed);
        *sum = cuipc_host_checksum(data, bytes);
        return CUIPC_OK;
    }
    cuipc_status st = cuipc_gpu_fill_pattern(data, bytes, seed, ps->stream);
    return st == CUIPC_OK ? cuipc_gpu_checksum(data, bytes, ps->stream, sum) : st;
}

/* Give back the pool buffers of a message that was not sent; those a failed send took are
 * refused (the transport gave them back already). */
static void give_back_buffers(producer_state *ps, void **held) {
    for (uint32_t j = 0; j < ps->s->tensors.per_message; j++)
        if (held[j])
            /* Refused for those the failed send took: expected. */
            cuipc_status_ignore(cuipc_producer_buffer_free(ps->p, held[j]));
}

/* Build message i; fresh tensors allocated for it go to fresh[], pool buffers to held[].
 * *take_ns: the time spent taking pool buffers (the transport's part of it). */
static cuipc_status build(producer_state *ps, uint64_t i, cuipc_value **tree_out, void **fresh,
                          void **held, uint64_t *bytes_out, uint64_t *take_ns) {
    const cuipc_scenario *s = ps->s;
    cuipc_value *tree = cuipc_value_dict(), *tensors = cuipc_value_list(),
                *sums = cuipc_value_list();
    cuipc_status st = tree && tensors && sums ? CUIPC_OK : CUIPC_ERR_NO_MEMORY;
    *bytes_out = 0;
    *take_ns = 0;
    for (uint32_t j = 0; j < s->tensors.per_message && st == CUIPC_OK; j++) {
        int dtype;
        uint64_t bytes = cuipc_scenario_tensor_bytes(s, i, j, &dtype);
        void *data = ps->buffers[j];
        if (s->tensors.source == CUIPC_SOURCE_POOL_BUFFER) {
            /* Written in place: the room a copy would take is asked for before the data exists,
             * waiting as the scenario's pool-full policy (the producer's) says. */
            uint64_t t0 = cuipc_h_now_ns();
            st = cuipc_producer_buffer_alloc(ps->p, ps->gpu ? CUIPC_MEMORY_CUDA : CUIPC_MEMORY_HOST,
                                             bytes, -1, &held[j]);
            *take_ns += cuipc_h_now_ns() - t0;
            if (st != CUIPC_OK)
                break;
            data = held[j];
        } else if (s->tensors.fresh_per_message) {
            data = fresh[j] = tensor_alloc(ps, bytes, &st);
            if (data == NULL)
                break;
        }
        uint64_t sum = 0;
        /* Unchecked messages reuse the buffer (or take a pool buffer) as it is: their checksum
         * entry is never read. */
        bool checked = s->validation.enabled && i % s->validation.every == 0;
        if (checked || s->tensors.fresh_per_message)
            st = fill(ps, data, bytes, i * s->tensors.per_message + j, &sum);
        cuipc_tensor t;
        int64_t shape[1] = {(int64_t)(bytes / cuipc_dtype_size(dtype))};
        if (st == CUIPC_OK)
            st = cuipc_tensor_init(&t, data, ps->gpu ? s->producer_device : CUIPC_DEVICE_HOST,
                                   (cuipc_dtype)dtype, 1, shape);
        if (st == CUIPC_OK)
            st = cuipc_list_append(tensors, cuipc_value_tensor(&t, CUIPC_OWNER_NONE));
        if (st == CUIPC_OK)
            st = cuipc_list_append(sums, cuipc_value_int((int64_t)sum));
        *bytes_out += bytes;
    }
    if (st == CUIPC_OK)
        st = cuipc_dict_set(tree, "seq", cuipc_value_int((int64_t)i));
    if (st == CUIPC_OK) {
        st = cuipc_dict_set(tree, "tensors", tensors);
        tensors = NULL;
    }
    if (st == CUIPC_OK) {
        st = cuipc_dict_set(tree, "checksums", sums);
        sums = NULL;
    }
    cuipc_value_free(tensors);
    cuipc_value_free(sums);
    if (st != CUIPC_OK) {
        cuipc_value_free(tree);
        tree = NULL;
    }
    *tree_out = tree;
    return st;
}

/* The warm-up messages pay the first-use costs of both sides (kernel loads, first copies on a
 * stream, caches), which can take milliseconds. Before the first timed message, wait (at most
 * SETTLE_MAX_NS) until every consumer has taken every warm-up message, and return the time the
 * timed schedule starts from: a warm-up backlog must not spill into the timed messages. */
#define SETTLE_MAX_NS (1000 * 1000000ull)

/* When message i is due in an open loop, from the schedule's origin. */
static uint64_t due_offset_ns(const cuipc_scenario *s, uint64_t i) {
    return cuipc_scenario_replays(s) ? s->workload.w.req[i].arrival_ns
                                     : (uint64_t)((double)i / s->run.rate_hz * 1e9);
}

/* The open loop's schedule as the scenario sets it, for the timed messages: how many are due
 * and the time they are spread over. sched0 is the origin of the timed schedule; end_ns the
 * end of a loop bound by a duration. */
static json_t *schedule_json(const cuipc_scenario *s, cuipc_schedule *sc, uint64_t sched0,
                             uint64_t end_ns) {
    uint64_t w = s->run.warmup_iterations, scheduled = 0;
    double span_s = 0;
    if (s->run.iterations) {
        scheduled = s->run.iterations - w;
        double first = (double)due_offset_ns(s, w),
               last = (double)due_offset_ns(s, s->run.iterations - 1);
        /* n messages take n intervals: the last one's too. */
        span_s =
            scheduled > 1 ? (last - first) / 1e9 * (double)scheduled / (double)(scheduled - 1) : 0;
    } else {
        /* Due before the end: i / rate < (end - sched0). */
        double due = (double)(end_ns - sched0) / 1e9 * s->run.rate_hz;
        uint64_t n = (uint64_t)due + ((double)(uint64_t)due < due);
        scheduled = n > w ? n - w : 0;
        span_s = (double)(end_ns - (sched0 + due_offset_ns(s, w))) / 1e9;
    }
    double offered =
        span_s > 0 && cuipc_scenario_replays(s) ? (double)scheduled / span_s : s->run.rate_hz;
    return cuipc_schedule_json_free(sc, offered, scheduled, span_s, s->run.iterations != 0,
                                    s->run.overload);
}

static uint64_t settle_after_warmup(const cuipc_role_args *a, const cuipc_scenario *s) {
    uint64_t deadline = cuipc_h_now_ns() + SETTLE_MAX_NS;
    for (uint32_t k = 0; k < s->consumers.count; k++)
        while (atomic_load(&a->shared->received[k]) < s->run.warmup_iterations &&
               cuipc_h_now_ns() < deadline)
            cuipc_h_sleep_ns(20 * 1000);
    return cuipc_h_now_ns();
}

/* Open loop: wait until message i is due (after the warm-up settle, which moves *sched0) and
 * return its due time; 0 when it falls after end_ns (then it waits for end_ns only: a duration
 * run ends on time). */
static uint64_t wait_until_due(const cuipc_role_args *a, const cuipc_scenario *s, uint64_t i,
                               uint64_t *sched0, uint64_t end_ns) {
    if (!cuipc_scenario_replays(s) && i > 0 && i == s->run.warmup_iterations)
        *sched0 = settle_after_warmup(a, s) - due_offset_ns(s, i);
    uint64_t due = *sched0 + due_offset_ns(s, i);
    if (due >= end_ns) {
        cuipc_h_sleep_until_ns(end_ns); /* the run lasts its duration_s, and no longer */
        return 0;
    }
    if (s->run.producer_spin)
        while (cuipc_h_now_ns() < due) {
        }
    else
        cuipc_h_sleep_until_ns(due);
    return due;
}

/* Chain of deliberately leaked blocks: reachable, so the compiler cannot drop them. */
static void *volatile cuipc_leaked_head;

static void inject_leak(producer_state *ps) {
    const cuipc_scenario *s = ps->s;
    uint64_t n = s->leak.inject_rss_bytes_per_message;
    if (n >= sizeof(void *)) {
        void **p = malloc(n);
        if (p != NULL) {
            memset(p, 0x5a, n); /* never freed: on purpose */
            *p = cuipc_leaked_head;
            cuipc_leaked_head = p;
        }
    }
    for (uint64_t k = 0; k < s->leak.inject_fds_per_message; k++)
        (void)open("/dev/null", O_RDONLY); /* never closed: on purpose */
    for (uint64_t k = 0; k < s->leak.inject_held_buffers_per_message; k++) {
        void *b; /* never sent nor freed: on purpose */
        /* A full pool just injects fewer: the leak check counts what was held. */
        cuipc_status_ignore(cuipc_producer_buffer_alloc(
            ps->p, ps->gpu ? CUIPC_MEMORY_CUDA : CUIPC_MEMORY_HOST, 4096, 0, &b));
    }
}

static int finish(producer_state *ps, const char *run_dir, int rc, const char *error,
                  cuipc_status st) {
    if (error != NULL) {
        char buf[1400];
        snprintf(buf, sizeof buf, "%s: %s: %s", error, cuipc_status_name(st), cuipc_last_error());
        json_object_set_new(ps->out, CUIPC_RK_ERROR, json_string(buf));
    }
    cuipc_role_write(run_dir, "producer", 0, ps->out);
    json_decref(ps->out);
    return rc;
}

/* The transport as the scenario configures it. */
static cuipc_status create_producer(producer_state *ps) {
    const cuipc_scenario *s = ps->s;
    cuipc_producer_config cfg;
    cuipc_producer_config_init(&cfg);
    cfg.mode = s->mode;
    cfg.gpu_pool_bytes = s->pool.gpu_bytes;
    cfg.host_pool_bytes = s->pool.host_bytes;
    cfg.device = s->producer_device;
    cfg.max_consumers = s->consumers.count;
    cfg.slots = s->pool.slots;
    cfg.ring_bytes = s->pool.ring_bytes;
    cfg.alignment = s->pool.alignment;
    cfg.fit = s->pool.fit;
    cfg.full_policy = s->pool.full_policy;
    cfg.full_timeout_ns = s->pool.full_timeout_ns;
    cfg.socket_path = ps->a->socket_path;
    cfg.debug_keep_departed_rings = s->leak.inject_keep_departed_rings;
    cfg.debug_send_stale = cuipc_fault_resends(s);
    return cuipc_producer_create(&cfg, &ps->p);
}

/* Create the transport, take every consumer in, make the stream and the reused buffers, start
 * the sampler and meet the others at the go. NULL, or what failed (*st: its status). */
static const char *start(const cuipc_role_ctx *ctx, producer_state *ps, cuipc_status *st) {
    const cuipc_scenario *s = ps->s;
    if ((*st = create_producer(ps)) != CUIPC_OK)
        return "cuipc_producer_create";
    *st =
        cuipc_producer_accept(ps->p, s->consumers.count, (int64_t)(s->run.attach_timeout_s * 1e9));
    if (*st != CUIPC_OK)
        return "cuipc_producer_accept";
    if (ps->gpu && (*st = cuipc_gpu_stream_create(s->producer_device, &ps->stream)) != CUIPC_OK)
        return "cuipc_gpu_stream_create";
    /* The fill and checksum run for validated and fresh tensors only: warm them for those. */
    if (ps->gpu && (s->validation.enabled || s->tensors.fresh_per_message) &&
        (*st = cuipc_role_warm_checksum(s->producer_device, ps->stream)) != CUIPC_OK)
        return "cuipc_role_warm_checksum";
    bool own = !s->tensors.fresh_per_message && s->tensors.source == CUIPC_SOURCE_OWN;
    for (uint32_t j = 0; j < s->tensors.per_message && own; j++)
        if ((ps->buffers[j] = tensor_alloc(ps, s->tensors.max_bytes, st)) == NULL)
            return "tensor buffer allocation";
    ps->fault = (cuipc_fault_producer){.s = s,
                                       .p = ps->p,
                                       .stream = ps->stream,
                                       .send_timeout_ns = SEND_TIMEOUT_NS,
                                       .report = ps->out};
    cuipc_role_sampler_start(s, ps->gpu ? s->producer_device : -1, &ps->gctx, &ps->ls);
    json_object_set_new(ps->out, CUIPC_RK_MPS_CLIENT, cuipc_role_mps_json(&ps->gctx));
    cuipc_role_ready(ctx);
    *st = CUIPC_ERR_TIMEOUT;
    if (!cuipc_role_wait_go(ctx, (int)(s->run.attach_timeout_s * 1000) + 5000))
        return "no go from the supervisor";
    *st = CUIPC_OK;
    return NULL;
}

/* From the go: the clock, and the buffers the run's figures are kept in. NULL, or what could
 * not be allocated. */
static const char *begin_timing(producer_state *ps) {
    const cuipc_scenario *s = ps->s;
    ps->t0 = cuipc_h_now_ns();
    ps->occ = calloc(1, sizeof *ps->occ); /* ~80 KiB: off the stack */
    if (ps->occ == NULL)
        return "occupancy buffer";
    ps->occ->t0 = ps->t0;
    if (!cuipc_stage_init(&ps->send_time, 65536))
        return "send time buffer";
    ps->occ->interval_ns = 1000000; /* 1 ms to start with */
    occupancy_sample(ps->occ, ps->p, ps->t0);
    ps->end_ns = s->run.iterations ? UINT64_MAX : ps->t0 + (uint64_t)(s->run.duration_s * 1e9);
    ps->sched0 = ps->t0;
    if (s->run.open_loop && !cuipc_schedule_init(&ps->sched, 65536)) {
        json_decref(cuipc_stage_json_free(&ps->send_time));
        return "schedule buffer";
    }
    if (s->run.cpu_gauge && !cuipc_cpu_gauge_init(&ps->gauge)) {
        json_decref(cuipc_stage_json_free(&ps->send_time));
        free(ps->sched.lag_ns);
        return "CPU gauge";
    }
    return NULL;
}

/* One message as made: fresh tensors allocated for it, pool buffers it holds, its tree. */
typedef struct made_message {
    void *fresh[CUIPC_SCN_MAX_PER_MESSAGE], *held[CUIPC_SCN_MAX_PER_MESSAGE];
    cuipc_value *tree;
    uint64_t bytes;
} made_message;

/* A message that is not sent: everything it took goes back. */
static void discard(producer_state *ps, made_message *m) {
    for (uint32_t j = 0; j < ps->s->tensors.per_message; j++)
        if (m->fresh[j])
            tensor_free(ps, m->fresh[j]);
    give_back_buffers(ps, m->held);
    cuipc_value_free(m->tree);
}

/* After the send: fresh tensors are freed, or kept alive as cuda_ipc's export pins them. */
static void retire_fresh(producer_state *ps, void **fresh) {
    for (uint32_t j = 0; j < ps->s->tensors.per_message; j++) {
        if (fresh[j] == NULL)
            continue;
        if (ps->s->mode != CUIPC_MODE_CUDA_IPC) {
            tensor_free(ps, fresh[j]);
            continue;
        }
        if (ps->n_retained == ps->cap_retained) { /* like PyTorch: the export pins it */
            size_t cap = ps->cap_retained ? 2 * ps->cap_retained : 256;
            void **more = realloc(ps->retained, cap * sizeof *more);
            if (more == NULL) {
                tensor_free(ps, fresh[j]);
                continue;
            }
            ps->retained = more;
            ps->cap_retained = cap;
        }
        ps->retained[ps->n_retained++] = fresh[j];
    }
}

/* The send of message i: the fault's when it takes it, else timed. */
static cuipc_status send_tree(producer_state *ps, cuipc_value *tree, uint64_t i) {
    cuipc_status st;
    if (cuipc_fault_producer_send(&ps->fault, tree, i, &st))
        return st;
    uint64_t t_send = cuipc_h_now_ns();
    st = cuipc_producer_send(ps->p, tree, ps->stream, SEND_TIMEOUT_NS);
    if (i >= ps->s->run.warmup_iterations)
        cuipc_stage_add(&ps->send_time, cuipc_h_now_ns() - t_send);
    return st;
}

/* A send into a full pool (or one that timed out waiting for room) fails that message only. */
static bool pool_refused(cuipc_status st) {
    return st == CUIPC_ERR_POOL_FULL || st == CUIPC_ERR_TIMEOUT;
}

static void count_failed(producer_state *ps, cuipc_status st) {
    ps->failed++;
    cuipc_count_status(ps->out, "send_failures", st);
}

typedef enum step {
    STEP_SENT,    /* sent, or failed as the pool refused it */
    STEP_NO_ROOM, /* no room for its pool buffers: failed before it was made */
    STEP_LAST,    /* due after the end of a duration run: never sent */
    STEP_ERROR,   /* the run stops failed (report.error) */
} step;

/* Message i: make it, wait for its time (open loop), stamp and send it, let its tensors go. */
static step send_message(producer_state *ps, uint64_t i) {
    const cuipc_scenario *s = ps->s;
    made_message m = {.tree = NULL};
    /* The message (test pattern and its checksum) is made before its time comes: making the
     * data is the application's work, not the transport's. Pool buffers are the transport's
     * room, taken when the message is due: the rest of the making (writing them, the message
     * tree) is then added to its stamp. */
    bool due_first = s->run.open_loop && s->tensors.source == CUIPC_SOURCE_POOL_BUFFER;
    /* The CPU's state as the message starts, walked before its time comes (open loop only). */
    uint64_t gauge = s->run.cpu_gauge ? cuipc_cpu_gauge_ns(&ps->gauge) : 0;
    uint64_t due = due_first ? wait_until_due(ps->a, s, i, &ps->sched0, ps->end_ns) : 0, take_ns;
    if (due_first && due == 0)
        return STEP_LAST;
    uint64_t t_build = cuipc_h_now_ns();
    cuipc_status st = build(ps, i, &m.tree, m.fresh, m.held, &m.bytes, &take_ns);
    uint64_t make_ns = cuipc_h_now_ns() - t_build - take_ns;
    if (pool_refused(st)) {
        /* No room for its pool buffers: the message fails as a send into a full pool does. */
        if (due_first && i >= s->run.warmup_iterations)
            cuipc_schedule_add(&ps->sched, due, cuipc_h_now_ns());
        atomic_fetch_add(&ps->a->shared->attempted, 1);
        give_back_buffers(ps, m.held);
        count_failed(ps, st);
        return STEP_NO_ROOM;
    }
    uint64_t stamp = cuipc_h_now_ns();
    if (s->run.open_loop) {
        /* Stamp the scheduled time: queueing behind a slow send counts as latency. */
        stamp = due_first ? due + make_ns : wait_until_due(ps->a, s, i, &ps->sched0, ps->end_ns);
        if (stamp == 0) {
            discard(ps, &m);
            return STEP_LAST;
        }
        if (i >= s->run.warmup_iterations)
            cuipc_schedule_add(&ps->sched, due_first ? due : stamp, cuipc_h_now_ns());
    }
    if (st == CUIPC_OK)
        st = cuipc_dict_set(m.tree, "send_ns", cuipc_value_int((int64_t)stamp));
    if (st == CUIPC_OK && s->run.cpu_gauge)
        st = cuipc_dict_set(m.tree, "gauge_ns", cuipc_value_int((int64_t)gauge));
    if (st != CUIPC_OK) {
        json_object_set_new(ps->out, CUIPC_RK_ERROR, cuipc_status_json(st));
        discard(ps, &m);
        return STEP_ERROR;
    }
    atomic_fetch_add(&ps->a->shared->attempted, 1);
    st = send_tree(ps, m.tree, i);
    if (st != CUIPC_OK)
        give_back_buffers(ps, m.held);
    if (st == CUIPC_OK) {
        ps->sent++;
        ps->bytes_total += m.bytes;
        atomic_store(&ps->a->shared->sent, ps->sent);
    } else if (pool_refused(st)) {
        count_failed(ps, st);
    } else {
        json_object_set_new(ps->out, CUIPC_RK_ERROR, cuipc_status_json(st));
    }
    /* The send is stream-ordered (the next fill of a reused buffer queues behind its copy into
     * the pool), so only tensors about to be freed need their copies finished. A failed copy
     * is reported by the stream's next checked call. */
    if (ps->gpu && ps->stream && s->tensors.fresh_per_message)
        cuipc_status_ignore(cuipc_gpu_stream_sync(ps->stream));
    cuipc_value_free(m.tree);
    retire_fresh(ps, m.fresh);
    return st == CUIPC_OK || pool_refused(st) ? STEP_SENT : STEP_ERROR;
}

/* Between messages: injected leaks, the fault's message, churned consumers' handshakes, the
 * samplers. false (report.error set) on a failure of the transport. */
static bool between_messages(producer_state *ps, uint64_t i) {
    inject_leak(ps);
    cuipc_fault_producer_after(&ps->fault, i);
    /* Churn: consumers that left come back as new ones; their handshakes move on here. */
    cuipc_status st;
    if (ps->s->consumers.churn.count &&
        (st = cuipc_producer_accept(ps->p, ps->s->consumers.count, 0)) != CUIPC_OK &&
        st != CUIPC_ERR_TIMEOUT) {
        json_object_set_new(ps->out, CUIPC_RK_ERROR, cuipc_status_json(st));
        return false;
    }
    if (ps->ls.t != NULL)
        cuipc_leak_maybe_sample(&ps->ls);
    occupancy_sample(ps->occ, ps->p, cuipc_h_now_ns());
    return true;
}

/* Every message of the run; 0, or 1 when it stopped on an error. */
static int send_all(producer_state *ps) {
    const cuipc_scenario *s = ps->s;
    for (uint64_t i = 0; s->run.iterations ? i < s->run.iterations : cuipc_h_now_ns() < ps->end_ns;
         i++) {
        cuipc_fault_producer_before(s, i);
        step r = send_message(ps, i);
        if (r == STEP_NO_ROOM)
            continue;
        if (r != STEP_SENT)
            return r == STEP_ERROR;
        if (!between_messages(ps, i))
            return 1;
    }
    return 0;
}

/* After the last message: close, drain, and wait (bounded) until the consumers have left, so
 * the stats count every departure, detached or died. Returns the drain's status. */
static cuipc_status close_and_drain(producer_state *ps) {
    cuipc_value_free(ps->fault.kept); /* a kept message the run ended before sending again */
    ps->fault.kept = NULL;
    atomic_store(&ps->a->shared->closing, true);
    cuipc_producer_close(ps->p);
    cuipc_status drain = cuipc_producer_drain(ps->p, (int64_t)10 * 1000000000ll);
    for (uint64_t until = cuipc_h_now_ns() + LEAVE_WAIT_NS;
         cuipc_producer_consumer_count(ps->p) > 0 && cuipc_h_now_ns() < until;)
        cuipc_h_sleep_ns(1000000);
    if (ps->ls.t != NULL)
        cuipc_leak_sample_now(&ps->ls);
    return drain;
}

static json_t *producer_stats_json(const cuipc_producer_stats *pst) {
    json_t *stats = json_object();
    json_object_set_new(stats, CUIPC_RK_GPU_POOL, cuipc_pool_stats_json(&pst->gpu_pool));
    json_object_set_new(stats, CUIPC_RK_HOST_POOL, cuipc_pool_stats_json(&pst->host_pool));
    json_object_set_new(stats, CUIPC_RK_MESSAGES_SENT,
                        json_integer((json_int_t)pst->messages_sent));
    json_object_set_new(stats, "bytes_sent", json_integer((json_int_t)pst->bytes_sent));
    json_object_set_new(stats, "fallbacks", json_integer((json_int_t)pst->fallbacks));
    json_object_set_new(stats, "ipc_exports", json_integer((json_int_t)pst->ipc_exports));
    json_object_set_new(stats, CUIPC_RK_IPC_RETAINED_BYTES,
                        json_integer((json_int_t)pst->ipc_retained_bytes));
    json_object_set_new(stats, CUIPC_RK_CONSUMERS_ATTACHED, json_integer(pst->consumers_attached));
    json_object_set_new(stats, CUIPC_RK_CONSUMERS_DETACHED, json_integer(pst->consumers_detached));
    json_object_set_new(stats, CUIPC_RK_CONSUMERS_DIED, json_integer(pst->consumers_dead));
    json_object_set_new(stats, "peers_refused", json_integer((json_int_t)pst->peers_refused));
    json_object_set_new(stats, "peers_timed_out", json_integer((json_int_t)pst->peers_timed_out));
    return stats;
}

/* The report's figures of the run (its counts, the transport's stats, occupancy, send times,
 * the schedule, the leak verdicts); frees the buffers they were kept in. */
static void report_run(producer_state *ps, cuipc_status drain, double seconds) {
    const cuipc_scenario *s = ps->s;
    cuipc_producer_stats pst;
    cuipc_producer_stats_get(ps->p, &pst);
    json_object_set_new(ps->out, CUIPC_RK_ROLE, json_string("producer"));
    json_object_set_new(ps->out, "messages_attempted",
                        json_integer((json_int_t)(ps->sent + ps->failed)));
    json_object_set_new(ps->out, CUIPC_RK_MESSAGES_SENT, json_integer((json_int_t)ps->sent));
    json_object_set_new(ps->out, CUIPC_RK_SEND_FAILED, json_integer((json_int_t)ps->failed));
    json_object_set_new(ps->out, "bytes_sent", json_integer((json_int_t)ps->bytes_total));
    json_object_set_new(ps->out, CUIPC_RK_SECONDS, json_real(seconds));
    json_object_set_new(ps->out, CUIPC_RK_DRAIN_STATUS, json_string(cuipc_status_name(drain)));
    json_object_set_new(ps->out, CUIPC_RK_STATS, producer_stats_json(&pst));
    ps->occ->next_ns = 0; /* the state after the drain, whatever the interval */
    occupancy_sample(ps->occ, ps->p, cuipc_h_now_ns());
    json_object_set_new(ps->out, CUIPC_RK_OCCUPANCY, occupancy_json(ps->occ, &pst));
    json_object_set_new(ps->out, CUIPC_RK_SEND_US, cuipc_stage_json_free(&ps->send_time));
    if (s->run.open_loop)
        json_object_set_new(ps->out, CUIPC_RK_SCHEDULE,
                            schedule_json(s, &ps->sched, ps->sched0, ps->end_ns));
    json_object_set_new(ps->out, CUIPC_RK_LEAK, cuipc_role_leak_json(s, &ps->ls));
    cuipc_leak_sampler_free(&ps->ls);
}

/* Tear-down: the transport, then the memory it may have read from. */
static void release_all(producer_state *ps) {
    free(ps->occ);
    cuipc_cpu_gauge_free(&ps->gauge);
    cuipc_producer_destroy(ps->p);
    for (size_t k = 0; k < ps->n_retained; k++)
        tensor_free(ps, ps->retained[k]);
    free(ps->retained);
    for (uint32_t j = 0; j < CUIPC_SCN_MAX_PER_MESSAGE; j++)
        if (ps->buffers[j])
            tensor_free(ps, ps->buffers[j]);
    if (ps->stream) /* tear-down: nothing left to report to */
        cuipc_status_ignore(cuipc_gpu_stream_destroy(ps->stream));
}

int cuipc_role_producer(const cuipc_role_ctx *ctx, void *arg) {
    const cuipc_role_args *a = arg;
    const cuipc_scenario *s = a->s;
    producer_state ps = {.s = s, .a = a, .gpu = s->tensors.location == CUIPC_LOCATION_DEVICE};
    atomic_store(&a->shared->producer_pid, (int)getpid());
    ps.out = json_object();
    json_object_set_new(ps.out, CUIPC_RK_ROLE, json_string("producer"));
    json_object_set_new(ps.out, "pid", json_integer(getpid()));
    if (!cuipc_role_bind(s, true, 0, s->producer_device, ps.out))
        return finish(&ps, a->run_dir, 1, NULL, CUIPC_OK);
    cuipc_status st;
    const char *failed = start(ctx, &ps, &st);
    if (failed == NULL && (failed = begin_timing(&ps)) != NULL)
        st = CUIPC_ERR_NO_MEMORY;
    if (failed != NULL) {
        free(ps.occ);
        cuipc_cpu_gauge_free(&ps.gauge);
        cuipc_producer_destroy(ps.p);
        return finish(&ps, a->run_dir, 1, failed, st);
    }
    cuipc_thread_sched sched;
    cuipc_thread_sched_now(&sched);
    int rc = send_all(&ps);
    double seconds = (double)(cuipc_h_now_ns() - ps.t0) / 1e9;
    json_object_set_new(ps.out, CUIPC_RK_MAIN_THREAD, cuipc_thread_sched_json(&sched));
    cuipc_status drain = close_and_drain(&ps);
    report_run(&ps, drain, seconds);
    release_all(&ps);
    return finish(&ps, a->run_dir, rc, NULL, CUIPC_OK);
}
