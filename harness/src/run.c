/* run: load every scenario first (bad input -> exit 2 before anything runs), probe the GPU in a
 * child, then per scenario fork producer + consumers under the supervisor, merge what they wrote
 * into one results file, judge it, and print a summary table. */
#include "run.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "command.h"
#include "cpu_gauge.h"
#include "cuipc_version.h"
#include "failures.h"
#include "fault.h"
#include "leak.h"
#include "mps.h"
#include "repetitions.h"
#include "results.h"
#include "results_keys.h"
#include "roles.h"
#include "scenario_hash.h"
#include "scenario_transport.h"
#include "schedule.h"
#include "stats.h"
#include "util.h"

typedef struct run_opts {
    const char *out_dir;
    bool progress;
    bool keep;
    bool mps;             /* --mps: every scenario that uses a GPU runs under MPS */
    uint32_t repetitions; /* --repetitions; 0: each scenario's run.repetitions */
    bool require_gpu;     /* on a host without a GPU, a GPU scenario fails */
    double heartbeat_s;   /* a line every so often while a scenario runs without the bar; 0: none */
} run_opts;

/* ------------------------------------------------------------------ run directory */

static void remove_run_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d != NULL) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.')
                continue;
            /* unlinkat: no path to build (and none to truncate) */
            unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
    }
    rmdir(dir);
}

#define OWNER_FILE "owner.pid"

/* A caught SIGTERM/SIGINT: the supervisor stops the children, the run directory is removed,
 * then the signal is raised again with its default action. */
static volatile sig_atomic_t interrupted;

static void on_stop_signal(int sig) {
    interrupted = sig;
}

static const char *tmp_dir(void) {
    const char *tmp = getenv("TMPDIR");
    return tmp && *tmp ? tmp : "/tmp";
}

static bool make_run_dir(char *dir, size_t cap) {
    snprintf(dir, cap, "%s/cuipc-harness-XXXXXX", tmp_dir());
    if (mkdtemp(dir) == NULL) /* mode 0700: only we may attach to the socket inside */
        return false;
    /* Who owns it: a later run removes it if this process died without cleaning up. */
    char p[1200];
    snprintf(p, sizeof p, "%s/" OWNER_FILE, dir);
    FILE *f = fopen(p, "w");
    if (f != NULL) {
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
    }
    return true;
}

/* Remove the run directories of runs that died (SIGKILL, a crash): ours, with an owner whose
 * process is gone. Returns how many. */
static int sweep_dead_runs(void) {
    DIR *d = opendir(tmp_dir());
    if (d == NULL)
        return 0;
    int swept = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "cuipc-harness-", 14) != 0)
            continue;
        char dir[1024], p[1200];
        snprintf(dir, sizeof dir, "%s/%s", tmp_dir(), e->d_name);
        struct stat st;
        if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid())
            continue;
        snprintf(p, sizeof p, "%s/" OWNER_FILE, dir);
        FILE *f = fopen(p, "r");
        int pid = 0;
        bool known = f != NULL && fscanf(f, "%d", &pid) == 1 && pid > 0;
        if (f != NULL)
            fclose(f);
        if (known && kill(pid, 0) != 0 && errno == ESRCH) {
            remove_run_dir(dir);
            swept++;
        }
    }
    closedir(d);
    return swept;
}

static json_t *load_role(const char *dir, const char *role, uint32_t index) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s-%u.json", dir, role, index);
    return json_load_file(p, 0, NULL);
}

/* ------------------------------------------------------------------ environment */

static json_t *probe_gpu(void) {
    char dir[1024];
    if (!make_run_dir(dir, sizeof dir))
        return json_pack("{s:b, s:i, s:s}", "present", 0, CUIPC_RK_COUNT, 0, CUIPC_RK_ERROR,
                         strerror(errno));
    cuipc_role_args args = {.run_dir = dir};
    cuipc_child_spec spec = {.role = "probe", .fn = cuipc_role_probe, .arg = &args};
    cuipc_supervisor_opts o;
    cuipc_supervisor_opts_init(&o);
    o.ready_timeout_s = 60;
    o.run_timeout_s = 70;
    o.stop_flag = &interrupted;
    cuipc_child_result r;
    cuipc_supervise_outcome out;
    cuipc_supervise(&spec, 1, &o, &r, &out);
    json_t *gpu = load_role(dir, "probe", 0);
    remove_run_dir(dir);
    if (gpu == NULL) {
        char d[96];
        gpu = json_pack("{s:b, s:i, s:s}", "present", 0, CUIPC_RK_COUNT, 0, CUIPC_RK_ERROR,
                        cuipc_child_describe(&r, d, sizeof d));
    }
    return gpu;
}

/* The GPUs' link matrix (NVLink, PCIe switches, CPU affinity) as nvidia-smi prints it; null
 * where there is no nvidia-smi or it fails (no driver). */
static json_t *gpu_topology(void) {
    static char out[16384];
    const char *argv[] = {"nvidia-smi", "topo", "-m", NULL};
    if (cuipc_h_run_capture(argv, NULL, NULL, out, sizeof out, 20000) != 0 || out[0] == '\0')
        return json_null();
    return json_string(out);
}

/* Takes gpu. */
static json_t *environment(json_t *gpu) {
    struct utsname u;
    uname(&u);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const char *commit = getenv("CUIPC_COMMIT");
    bool any_gpu = json_integer_value(json_object_get(gpu, CUIPC_RK_COUNT)) > 0;
    return json_pack("{s:s, s:s, s:s, s:i, s:o, s:o, s:s, s:s}", CUIPC_RK_HOSTNAME, host, "kernel",
                     u.release, "machine", u.machine, "cpus", (int)sysconf(_SC_NPROCESSORS_ONLN),
                     CUIPC_RK_GPU, gpu, "gpu_topology", any_gpu ? gpu_topology() : json_null(),
                     "commit", commit && *commit ? commit : CUIPC_COMMIT, "harness_version",
                     CUIPC_VERSION);
}

/* ------------------------------------------------------------------ MPS */

/* The MPS of a run: started for the first scenario that wants it, kept for the ones after it
 * that want it too, stopped before one that does not and at the end. */
typedef struct mps_run {
    cuipc_mps m;
    bool want; /* the current scenario asked for it */
    char why[512];
} mps_run;

static bool mps_wanted(const cuipc_scenario *s, const run_opts *ro) {
    return s->needs_gpu && (s->gpu.mps || ro->mps);
}

/* Before a scenario: MPS up when it wants it, down when it does not (an MPS the host runs
 * stays: its clients are every CUDA process of this user, ours included). False with why when
 * it is wanted and cannot be had. */
static bool mps_prepare(mps_run *r, bool want) {
    r->want = want;
    r->why[0] = '\0';
    if (!want) {
        if (r->m.ours)
            cuipc_mps_stop(&r->m);
        if (!r->m.active) {
            int pid = 0;
            r->m.active = cuipc_mps_host_active(r->m.pipe_dir, sizeof r->m.pipe_dir, &pid);
            r->m.daemon_pid = pid;
            if (r->m.active)
                cuipc_mps_find_control(r->m.control, sizeof r->m.control);
        }
        return true;
    }
    if (r->m.active) /* ours, kept from the scenario before, or the host's */
        return true;
    return cuipc_mps_start(&r->m, r->why, sizeof r->why);
}

/* environment.mps of one result, with the MPS servers the control daemon knows after the run
 * (one serves this user's clients on each GPU; started by the first client). */
static json_t *mps_json(const mps_run *r) {
    json_t *o = cuipc_mps_json(&r->m, r->want);
    char out[1024];
    if (r->m.active && cuipc_mps_command(&r->m, "get_server_list", out, sizeof out)) {
        json_t *servers = json_array();
        for (char *save = NULL, *tok = strtok_r(out, " \t\r\n", &save); tok != NULL;
             tok = strtok_r(NULL, " \t\r\n", &save))
            json_array_append_new(servers, json_integer(atoi(tok)));
        json_object_set_new(o, "servers", servers);
    }
    return o;
}

/* The GPU roles that ran as MPS clients (cudaDevAttrMpsEnabled, asked in the role itself).
 * When the scenario asked for MPS (failures given), each GPU role must be one: a client that
 * could not reach the daemon silently runs without it. */
static json_t *mps_clients_check(json_t *failures, json_t *roles) {
    json_t *clients = json_array();
    size_t i;
    json_t *role;
    json_array_foreach(roles, i, role) {
        json_t *c = json_object_get(json_object_get(role, CUIPC_RK_REPORT), CUIPC_RK_MPS_CLIENT);
        if (c == NULL || json_is_null(c))
            continue; /* stopped before CUDA (its failure is named already), or host-only */
        const char *name = json_string_value(json_object_get(role, CUIPC_RK_ROLE));
        int index = (int)json_integer_value(json_object_get(role, CUIPC_RK_INDEX));
        if (!json_is_true(c) && failures != NULL) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "%s %d did not run as an MPS client (cudaDevAttrMpsEnabled is 0 or "
                     "unanswered)",
                     name, index);
            json_array_append_new(failures, json_string(msg));
        } else if (json_is_true(c)) {
            json_array_append_new(
                clients, json_pack("{s:s, s:i}", CUIPC_RK_ROLE, name, CUIPC_RK_INDEX, index));
        }
    }
    return clients;
}

/* ------------------------------------------------------------------ progress */

typedef struct tick_state {
    const cuipc_scenario *s;
    cuipc_run_shared *shared;
    bool progress;
    uint64_t heartbeat_ns, next_beat;
    uint64_t t0, last_draw;
    bool drawn;
} tick_state;

/* Without a terminal (CI logs) a long run still shows it is alive: one line every heartbeat. */
static void heartbeat(tick_state *t, uint64_t now) {
    if (t->heartbeat_ns == 0 || now < t->next_beat)
        return;
    t->next_beat = now + t->heartbeat_ns;
    double elapsed = (double)(now - t->t0) / 1e9;
    unsigned long long sent = (unsigned long long)atomic_load(&t->shared->sent);
    if (t->s->run.iterations)
        fprintf(stderr, "%s: running %.0f s, %llu of %llu messages sent\n", t->s->name, elapsed,
                sent, (unsigned long long)t->s->run.iterations);
    else
        fprintf(stderr, "%s: running %.0f s of %.0f s, %llu messages sent\n", t->s->name, elapsed,
                t->s->run.duration_s, sent);
}

static void tick(void *ctx) {
    tick_state *t = ctx;
    uint64_t now = cuipc_h_now_ns();
    heartbeat(t, now);
    /* Only for long runs, and at most 10 frames a second. */
    if (!t->progress || now - t->t0 < 1000000000ull || now - t->last_draw < 100000000ull)
        return;
    t->last_draw = now;
    double elapsed = (double)(now - t->t0) / 1e9;
    uint64_t sent = atomic_load(&t->shared->sent);
    double frac = t->s->run.iterations ? (double)sent / (double)t->s->run.iterations
                                       : elapsed / t->s->run.duration_s;
    frac = frac > 1 ? 1 : frac;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r%-24.24s [%s] %3.0f%% %llu msgs %.1f s", t->s->name, bar, frac * 100,
            (unsigned long long)sent, elapsed);
    t->drawn = true;
}

/* ------------------------------------------------------------------ judging */

typedef struct judge {
    cuipc_failures failures;
} judge;

/* A failure the run's measurements show (processes and the supervisor rank theirs). */
__attribute__((format(printf, 2, 3))) static void failure(judge *j, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cuipc_failures_add(&j->failures, CUIPC_FAILURE_VERDICT, 0, "%s", buf);
}

static json_int_t geti(const json_t *o, const char *k) {
    return json_integer_value(json_object_get(o, k));
}

/* A pool counter of the producer's stats, GPU and host pools together. */
static json_int_t both_pools(const json_t *pstats, const char *k) {
    return geti(json_object_get(pstats, CUIPC_RK_GPU_POOL), k) +
           geti(json_object_get(pstats, CUIPC_RK_HOST_POOL), k);
}

static json_t *latency_json(const cuipc_latency_summary *l) {
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", CUIPC_RK_COUNT,
                     (json_int_t)l->count, "mean", l->mean_us, CUIPC_RK_MIN, l->min_us,
                     CUIPC_RK_P50, l->p50_us, "p90", l->p90_us, CUIPC_RK_P99, l->p99_us, "p999",
                     l->p999_us, "max", l->max_us);
}

/* Merge one consumer's slowest messages into the run's (slowest first, at most
 * CUIPC_WORST_SAMPLES), each tagged with its consumer. */
static void add_worst(json_t *all, const json_t *mine, uint32_t consumer) {
    size_t k;
    const json_t *w;
    json_array_foreach(mine, k, w) {
        double us = json_number_value(json_object_get(w, "us"));
        size_t at = json_array_size(all);
        while (at > 0 && json_number_value(json_object_get(json_array_get(all, at - 1), "us")) < us)
            at--;
        if (at >= CUIPC_WORST_SAMPLES)
            continue;
        json_array_insert_new(all, at,
                              json_pack("{s:i, s:O, s:f}", "consumer", (int)consumer, "seq",
                                        json_object_get(w, "seq"), "us", us));
        if (json_array_size(all) > CUIPC_WORST_SAMPLES)
            json_array_remove(all, CUIPC_WORST_SAMPLES);
    }
}

/* A consumer's samples file (consumer-<i>.<ext>): its records, *n of them. */
static void *read_samples(const char *dir, uint32_t i, const char *ext, size_t size, size_t *n) {
    char p[1200];
    snprintf(p, sizeof p, "%s/consumer-%u.%s", dir, i, ext);
    size_t len = 0;
    char *raw = cuipc_h_read_file(p, &len);
    *n = raw ? len / size : 0;
    return raw;
}

enum { STATE_FAST, STATE_SLOW, STATE_MIXED, STATES };
static const char *const state_names[STATES] = {"fast", "slow", "mixed"};

/* latency_us.by_cpu_state (run.cpu_gauge): the timed messages split by the state both sides'
 * CPUs were in, each part with its own summary: fast where both walks took at most
 * CUIPC_CPU_GAUGE_SLOW_ABOVE times the fastest walk (resident_ns, the consumers' back-to-back
 * ones, included), slow where both took more, mixed otherwise; ungauged, the samples that lack
 * a walk (none is ever counted in a part). */
static json_t *latency_by_cpu_state(const uint64_t *lat, const cuipc_gauge_pair *g, size_t n,
                                    uint64_t resident_ns) {
    uint32_t fastest = resident_ns < UINT32_MAX ? (uint32_t)resident_ns : UINT32_MAX;
    for (size_t k = 0; k < n; k++) {
        if (g[k].producer_ns && g[k].producer_ns < fastest)
            fastest = g[k].producer_ns;
        if (g[k].consumer_ns && g[k].consumer_ns < fastest)
            fastest = g[k].consumer_ns;
    }
    double slow_above = CUIPC_CPU_GAUGE_SLOW_ABOVE * (double)fastest;
    uint64_t *part[STATES] = {NULL};
    size_t count[STATES] = {0}, ungauged = 0;
    json_t *out = json_object();
    for (int st = 0; st < STATES; st++)
        if ((part[st] = malloc((n ? n : 1) * sizeof *part[st])) == NULL)
            goto done;
    for (size_t k = 0; k < n; k++) {
        if (g[k].producer_ns == 0 || g[k].consumer_ns == 0) {
            ungauged++;
            continue;
        }
        bool p_slow = g[k].producer_ns > slow_above, c_slow = g[k].consumer_ns > slow_above;
        int st = p_slow == c_slow ? (p_slow ? STATE_SLOW : STATE_FAST) : STATE_MIXED;
        part[st][count[st]++] = lat[k];
    }
    json_object_set_new(out, "fastest_walk_us",
                        json_real(fastest == UINT32_MAX ? 0.0 : (double)fastest / 1e3));
    json_object_set_new(out, "slow_above", json_real(CUIPC_CPU_GAUGE_SLOW_ABOVE));
    json_object_set_new(out, "ungauged", json_integer((json_int_t)ungauged));
    for (int st = 0; st < STATES; st++) {
        cuipc_latency_summary ls;
        cuipc_latency_summarize(part[st], count[st], &ls);
        json_object_set_new(out, state_names[st], latency_json(&ls));
    }
done:
    for (int st = 0; st < STATES; st++)
        free(part[st]);
    return out;
}

static void threshold(judge *j, json_t *arr, const char *metric, double limit, double value,
                      bool upper) {
    if (limit < 0)
        return;
    bool ok = upper ? value <= limit : value >= limit;
    json_array_append_new(arr,
                          json_pack("{s:s, s:f, s:f, s:s, s:b}", "metric", metric, "limit", limit,
                                    "value", value, "kind", upper ? "max" : "min", "passed", ok));
    if (!ok)
        failure(j, "%s %.3f is %s the threshold %.3f", metric, value, upper ? "above" : "below",
                limit);
}

/* Leak verdicts of every role (each its own shared memory, not the host's /dev/shm, which
 * other processes move) and the transport's own
 * accounting (bytes cuda_ipc keeps alive). */
static json_t *judge_leaks(judge *j, const cuipc_scenario *s, json_t *roles,
                           const json_t *producer) {
    json_t *metrics = json_array(), *unmeasured = json_array();
    bool any_leak = false, measured = false;
    size_t idx;
    json_t *role;
    json_array_foreach(roles, idx, role) {
        json_t *leak = json_object_get(json_object_get(role, CUIPC_RK_REPORT), CUIPC_RK_LEAK);
        size_t k;
        json_t *v;
        bool role_measured = false;
        json_array_foreach(leak, k, v) {
            role_measured = role_measured || json_is_true(json_object_get(v, CUIPC_RK_MEASURED));
            json_t *copy = json_deep_copy(v);
            json_object_set(copy, CUIPC_RK_ROLE, json_object_get(role, CUIPC_RK_ROLE));
            json_object_set(copy, CUIPC_RK_INDEX, json_object_get(role, CUIPC_RK_INDEX));
            json_array_append_new(metrics, copy);
            any_leak = any_leak || json_is_true(json_object_get(v, CUIPC_RK_LEAK));
        }
        measured = measured || role_measured;
        /* A role that wrote no report (or too few samples) was not measured: the run is not
         * clean of what it may have leaked. */
        if (s->leak.enabled && !role_measured) {
            char who[96];
            snprintf(who, sizeof who, "%s %d: %s",
                     json_string_value(json_object_get(role, CUIPC_RK_ROLE)),
                     (int)json_integer_value(json_object_get(role, CUIPC_RK_INDEX)),
                     leak ? "too few samples" : "no report");
            json_array_append_new(unmeasured, json_string(who));
        }
    }
    json_t *pstats = json_object_get(producer, CUIPC_RK_STATS);
    if (s->leak.enabled && pstats != NULL) {
        json_int_t retained = geti(pstats, CUIPC_RK_IPC_RETAINED_BYTES);
        bool leak = (uint64_t)retained > s->leak.tolerance_gpu_bytes;
        json_array_append_new(
            metrics,
            json_pack("{s:s, s:s, s:i, s:b, s:I, s:I, s:b}", CUIPC_RK_METRIC,
                      CUIPC_RK_IPC_RETAINED_BYTES, CUIPC_RK_ROLE, "producer", CUIPC_RK_INDEX, 0,
                      CUIPC_RK_MEASURED, 1, CUIPC_RK_LAST, retained, CUIPC_RK_TOLERANCE,
                      (json_int_t)s->leak.tolerance_gpu_bytes, CUIPC_RK_LEAK, leak));
        any_leak = any_leak || leak;
    }
    const char *verdict = !s->leak.enabled                           ? "not_checked"
                          : any_leak                                 ? CUIPC_LEAK_LEAK
                          : measured && !json_array_size(unmeasured) ? CUIPC_LEAK_CLEAN
                                                                     : "not_measured";
    if (s->leak.enabled && s->leak.expect_leak && !any_leak)
        failure(j, "positive control: the leak was not detected");
    if (s->leak.enabled && !s->leak.expect_leak && any_leak)
        failure(j, "leak detected");
    return json_pack("{s:s, s:s, s:b, s:o, s:o}", CUIPC_RK_VERDICT, verdict, CUIPC_RK_EXPECTED,
                     s->leak.expect_leak ? CUIPC_LEAK_LEAK : CUIPC_LEAK_CLEAN, "passed",
                     s->leak.enabled ? any_leak == s->leak.expect_leak : 1, "metrics", metrics,
                     "unmeasured", unmeasured);
}

/* Whether the scenario's fault happened (cuipc_fault_fired): one that never fired is named as
 * the cause (after any process that ended on its own, by end_s), and fails the run. */
static bool judge_fault_fired(judge *j, const cuipc_scenario *s, const cuipc_child_result *cr,
                              const json_t *producer, json_t *fault, double end_s) {
    if (cuipc_fault_def_of(s->fault.kind)->actor == CUIPC_FAULT_BY_NOBODY)
        return true;
    char why[256];
    bool fired = cuipc_fault_fired(s, cr, producer, why, sizeof why);
    json_object_set_new(fault, "fired", json_boolean(fired));
    if (!fired)
        cuipc_failures_add(&j->failures, CUIPC_FAILURE_CAUSE, end_s, "fault %s did not fire: %s",
                           cuipc_fault_kind_name(s->fault.kind), why);
    return fired;
}

/* Churn: every churning consumer left and came back (else the run did not churn and proves
 * nothing about it), and the producer saw each of its attaches. */
static json_t *judge_churn(judge *j, const cuipc_scenario *s, json_t *const *consumers,
                           const json_t *pstats) {
    json_int_t attaches = 0;
    for (uint32_t i = 0; i < s->consumers.count; i++) {
        if (!cuipc_scenario_churns(s, i) || consumers[i] == NULL)
            continue;
        json_int_t n = geti(consumers[i], CUIPC_RK_ATTACHES);
        attaches += n;
        if (n < 2)
            failure(j, "consumer %u was to leave every %llu messages but attached %lld time(s)", i,
                    (unsigned long long)s->consumers.churn.every, (long long)n);
    }
    json_int_t seen = geti(pstats, CUIPC_RK_CONSUMERS_ATTACHED);
    json_int_t stay = (json_int_t)(s->consumers.count - s->consumers.churn.count);
    if (pstats != NULL && seen != stay + attaches)
        failure(j, "the producer saw %lld attaches, the consumers made %lld", (long long)seen,
                (long long)(stay + attaches));
    return json_pack("{s:i, s:I, s:I, s:I, s:I}", "consumers", (int)s->consumers.churn.count,
                     "every", (json_int_t)s->consumers.churn.every, CUIPC_RK_ATTACHES, attaches,
                     "producer_consumers_attached", seen, "producer_consumers_departed",
                     geti(pstats, CUIPC_RK_CONSUMERS_DETACHED) +
                         geti(pstats, CUIPC_RK_CONSUMERS_DIED));
}

/* The bound on start-up: fork, CUDA, attach (CUDA start-up is slow on big hosts). */
static double ready_timeout_s(const cuipc_scenario *s) {
    return s->run.attach_timeout_s + 30.0;
}

/* The role reports of a run, as merge reads them. */
typedef struct role_reports {
    json_t *roles; /* [{role, index, pid, end, ..., report}] */
    json_t *producer;
    json_t *consumers[CUIPC_MAX_CONSUMERS];
    json_t *pstats; /* the producer's transport stats; NULL: none */
} role_reports;

/* One role's entry of results.roles: how its process ended, and its report (taken). */
static json_t *role_entry(const cuipc_child_spec *spec, const cuipc_child_result *cr, json_t *rep) {
    char desc[128];
    json_t *r = json_pack("{s:s, s:i, s:i, s:s, s:b, s:b, s:f}", CUIPC_RK_ROLE, spec->role,
                          CUIPC_RK_INDEX, (int)spec->index, "pid", (int)cr->pid, "end",
                          cuipc_child_describe(cr, desc, sizeof desc), "expected", cr->expected,
                          "ready", cr->ready, "end_s", cr->end_s);
    if (cr->exited)
        json_object_set_new(r, "exit_code", json_integer(cr->exit_code));
    if (cr->signal) {
        char sig[32];
        json_object_set_new(r, "signal", json_integer(cr->signal));
        json_object_set_new(r, "signal_name",
                            json_string(cuipc_h_signal_name(cr->signal, sig, sizeof sig)));
    }
    if (rep != NULL) {
        json_object_set(r, CUIPC_RK_BINDING, json_object_get(rep, CUIPC_RK_BINDING));
        json_object_set_new(r, CUIPC_RK_REPORT, rep);
    }
    return r;
}

/* Load every role's report, with the failures of the processes and the supervisor. */
static void collect_roles(judge *j, role_reports *rr, const char *dir,
                          const cuipc_child_spec *specs, const cuipc_child_result *cr, size_t n,
                          const cuipc_supervise_outcome *out) {
    *rr = (role_reports){.roles = json_array()};
    for (size_t i = 0; i < n; i++) {
        json_t *rep = load_role(dir, specs[i].role, specs[i].index);
        const char *err = json_string_value(json_object_get(rep, CUIPC_RK_ERROR));
        json_array_append_new(rr->roles, role_entry(&specs[i], &cr[i], rep));
        cuipc_failures_add_child(&j->failures, &specs[i], &cr[i], out, err);
        if (strcmp(specs[i].role, "producer") == 0)
            rr->producer = rep;
        else
            rr->consumers[specs[i].index] = rep;
    }
    cuipc_failures_add_supervisor(&j->failures, out);
    rr->pstats = json_object_get(rr->producer, CUIPC_RK_STATS);
}

/* Under MPS: which roles ran as its clients (each GPU role must, when the scenario asked). */
static void judge_mps(judge *j, json_t *res, json_t *roles, const mps_run *under_mps) {
    /* A host's MPS serves scenarios that did not ask for it too, when it serves this user:
     * enabled says whether it did. */
    json_t *env_mps = cuipc_results_mps(res);
    json_t *mps_failures = json_array();
    json_t *clients = mps_clients_check(under_mps->want ? mps_failures : NULL, roles);
    if (!under_mps->want)
        json_object_set_new(env_mps, CUIPC_RK_ENABLED, json_boolean(json_array_size(clients) > 0));
    json_object_set_new(env_mps, "clients", clients);
    size_t k;
    json_t *f;
    json_array_foreach(mps_failures, k, f) failure(j, "%s", json_string_value(f));
    json_decref(mps_failures);
}

/* What the consumers measured, all together: the figures thresholds are judged on. */
typedef struct traffic {
    cuipc_latency_summary latency;
    double gbps, msgs_per_s;
    uint64_t mismatches, rejected;
} traffic;

/* A consumer's throughput figures: its steady state when it has one (the warm-up messages,
 * pool mapping and first touches, are left out of throughput as they are of latency). */
static void consumer_throughput(const json_t *c, double *secs, double *bytes, double *msgs) {
    const json_t *steady = json_object_get(c, CUIPC_RK_STEADY);
    bool has_steady = steady != NULL && geti(steady, CUIPC_RK_MESSAGES) >= 2 &&
                      json_number_value(json_object_get(steady, CUIPC_RK_SECONDS)) > 0;
    const json_t *from = has_steady ? steady : c;
    *secs = json_number_value(json_object_get(from, CUIPC_RK_SECONDS));
    *bytes = (double)geti(from, CUIPC_RK_BYTES);
    *msgs = (double)geti(from, CUIPC_RK_MESSAGES);
}

/* Latency (each consumer's and all together, from their raw samples), throughput and the
 * data checks: results latency_us, throughput, validation. */
static void merge_traffic(judge *j, json_t *res, const cuipc_scenario *s, const char *dir,
                          const role_reports *rr, traffic *t) {
    uint64_t *all = NULL;
    cuipc_gauge_pair *all_g = NULL; /* run.cpu_gauge: each sample's walks, as all's order */
    size_t n_all = 0;
    bool gauged = s->run.cpu_gauge;
    uint64_t resident_ns = UINT64_MAX; /* the consumers' L2-resident walks, the fastest */
    json_t *per = json_array(), *worst_all = json_array();
    double agg_bytes = 0, agg_msgs = 0, agg_secs = 0;
    *t = (traffic){.gbps = 0};
    for (uint32_t i = 0; i < s->consumers.count; i++) {
        size_t nl, ng = 0;
        uint64_t *lat = read_samples(dir, i, "lat", sizeof *lat, &nl);
        cuipc_gauge_pair *g = gauged ? read_samples(dir, i, "gauge", sizeof *g, &ng) : NULL;
        /* Nothing to add, nothing grown: realloc to 0 bytes would free the buffer. */
        uint64_t *grown = lat && nl > 0 ? realloc(all, (n_all + nl) * sizeof *all) : NULL;
        if (grown != NULL)
            all = grown;
        cuipc_gauge_pair *grown_g =
            grown && gauged ? realloc(all_g, (n_all + nl) * sizeof *all_g) : NULL;
        if (grown_g != NULL)
            all_g = grown_g;
        if (grown != NULL && (grown_g != NULL || !gauged)) {
            memcpy(all + n_all, lat, nl * sizeof *lat);
            /* A gauge file that does not match its latencies leaves them ungauged. */
            for (size_t k = 0; gauged && k < nl; k++)
                all_g[n_all + k] = ng == nl ? g[k] : (cuipc_gauge_pair){0, 0};
            n_all += nl;
        }
        free(g);
        json_int_t resident = geti(rr->consumers[i], CUIPC_RK_RESIDENT_WALK_NS);
        if (resident > 0 && (uint64_t)resident < resident_ns)
            resident_ns = (uint64_t)resident;
        cuipc_latency_summary ls;
        cuipc_latency_summarize(lat, lat ? nl : 0, &ls);
        free(lat);
        const json_t *c = rr->consumers[i];
        double secs, bytes, msgs;
        consumer_throughput(c, &secs, &bytes, &msgs);
        t->mismatches += (uint64_t)geti(c, CUIPC_RK_MISMATCHES);
        t->rejected += (uint64_t)geti(c, CUIPC_RK_REJECTED);
        agg_bytes += bytes;
        agg_msgs += msgs;
        agg_secs = secs > agg_secs ? secs : agg_secs;
        json_t *lat_json = latency_json(&ls);
        json_t *worst = json_object_get(c, CUIPC_RK_WORST);
        if (json_is_array(worst)) {
            json_object_set(lat_json, "worst", worst);
            add_worst(worst_all, worst, i);
        }
        json_array_append_new(per, json_pack("{s:i, s:f, s:f, s:I, s:o}", "consumer", (int)i,
                                             CUIPC_RK_GBPS, secs > 0 ? bytes / secs / 1e9 : 0.0,
                                             CUIPC_RK_MSGS_PER_S, secs > 0 ? msgs / secs : 0.0,
                                             CUIPC_RK_MESSAGES, (json_int_t)msgs, CUIPC_RK_LATENCY,
                                             lat_json));
    }
    json_t *by_state = gauged && (all_g || n_all == 0)
                           ? latency_by_cpu_state(all, all_g, n_all, resident_ns)
                           : NULL;
    free(all_g);
    cuipc_latency_summarize(all, n_all, &t->latency);
    free(all);
    json_t *agg_json = latency_json(&t->latency);
    if (by_state != NULL)
        json_object_set_new(agg_json, "by_cpu_state", by_state);
    json_object_set_new(agg_json, "worst", worst_all);
    t->gbps = agg_secs > 0 ? agg_bytes / agg_secs / 1e9 : 0;
    t->msgs_per_s = agg_secs > 0 ? agg_msgs / agg_secs : 0;
    json_object_set_new(res, CUIPC_RK_LATENCY, agg_json);
    json_object_set_new(res, CUIPC_RK_THROUGHPUT,
                        json_pack("{s:{s:f, s:f, s:f, s:f, s:f}, s:o}", CUIPC_RK_AGGREGATE,
                                  CUIPC_RK_GBPS, t->gbps, CUIPC_RK_MSGS_PER_S, t->msgs_per_s,
                                  CUIPC_RK_BYTES, agg_bytes, CUIPC_RK_MESSAGES, agg_msgs,
                                  CUIPC_RK_SECONDS, agg_secs, "per_consumer", per));
    json_object_set_new(res, "validation",
                        json_pack("{s:b, s:I}", "enabled", s->validation.enabled,
                                  CUIPC_RK_MISMATCHES, (json_int_t)t->mismatches));
    if ((int64_t)t->mismatches > s->thresholds.max_mismatches)
        failure(j, "%llu checksum mismatch(es)", (unsigned long long)t->mismatches);
}

/* Messages sent that a consumer that stayed throughout did not get. */
static json_int_t lost_messages(const cuipc_scenario *s, const role_reports *rr) {
    if (rr->producer == NULL)
        return 0;
    /* A re-sent fault message counts as one more message every consumer must see. */
    json_int_t sent = geti(rr->producer, CUIPC_RK_MESSAGES_SENT) +
                      json_is_true(json_object_get(rr->producer, CUIPC_RK_FAULT_RESENT));
    json_int_t lost = 0;
    for (uint32_t i = 0; i < s->consumers.count; i++) {
        if (cuipc_fault_kills_consumer(s, i) || rr->consumers[i] == NULL)
            continue;
        if (cuipc_scenario_churns(s, i)) /* away part of the time on purpose: see judge_churn */
            continue;
        json_int_t got =
            geti(rr->consumers[i], CUIPC_RK_MESSAGES) + geti(rr->consumers[i], CUIPC_RK_REJECTED);
        if (got < sent)
            lost += sent - got;
    }
    return lost;
}

/* The pools after the drain and what was lost: results pool, occupancy; the fault record
 * (results faults) starts with the losses. */
static json_t *judge_pool(judge *j, json_t *res, const cuipc_scenario *s, const role_reports *rr,
                          json_int_t rejected) {
    json_t *pstats = rr->pstats, *producer = rr->producer;
    json_object_set_new(res, "pool",
                        pstats ? json_pack("{s:O, s:O}", "gpu",
                                           json_object_get(pstats, CUIPC_RK_GPU_POOL), "host",
                                           json_object_get(pstats, CUIPC_RK_HOST_POOL))
                               : json_null());
    if (producer != NULL && json_object_get(producer, CUIPC_RK_OCCUPANCY) != NULL) {
        /* Moved, not copied: the series is the larger part of a results file. */
        json_object_set(res, CUIPC_RK_OCCUPANCY, json_object_get(producer, CUIPC_RK_OCCUPANCY));
        json_object_del(producer, CUIPC_RK_OCCUPANCY);
    }
    json_int_t lost = lost_messages(s, rr);
    json_int_t lost_chunks = pstats != NULL ? both_pools(pstats, CUIPC_RK_IN_FLIGHT) : 0;
    if (lost > 0)
        failure(j, "%lld message(s) sent but not received", (long long)lost);
    if (lost_chunks > 0)
        failure(j, "%lld chunk(s) still in flight after the drain", (long long)lost_chunks);
    json_int_t held = pstats ? both_pools(pstats, CUIPC_RK_HELD) : 0;
    if (held > 0)
        failure(j, "%lld pool buffer(s) still held at the end: allocated, never sent nor freed",
                (long long)held);
    if (producer != NULL) {
        const char *drain = json_string_value(json_object_get(producer, CUIPC_RK_DRAIN_STATUS));
        if (drain && strcmp(drain, "OK") != 0)
            failure(j, "producer drain ended with %s", drain);
        if (geti(producer, CUIPC_RK_SEND_FAILED) > s->thresholds.max_send_failures)
            failure(j, "%lld send(s) failed (allowed %lld)",
                    (long long)geti(producer, CUIPC_RK_SEND_FAILED),
                    (long long)s->thresholds.max_send_failures);
    } else if (!cuipc_fault_kills_producer(s)) {
        failure(j, "the producer wrote no report");
    }
    return json_pack("{s:s, s:I, s:I, s:I}", "kind", cuipc_fault_kind_name(s->fault.kind),
                     "lost_messages", lost, "lost_chunks", lost_chunks, "rejected_by_consumers",
                     rejected);
}

/* The scenario's fault: whether it fired and what must follow from it (results faults). */
static void judge_faults(judge *j, json_t *res, const cuipc_scenario *s, const role_reports *rr,
                         const cuipc_child_result *cr, double end_s, json_t *fault,
                         json_int_t rejected) {
    json_t *pstats = rr->pstats, *producer = rr->producer;
    if (producer && json_object_get(producer, CUIPC_RK_FAULT_SEND_STATUS))
        json_object_set(fault, CUIPC_RK_FAULT_SEND_STATUS,
                        json_object_get(producer, CUIPC_RK_FAULT_SEND_STATUS));
    if (pstats)
        json_object_set_new(fault, CUIPC_RK_DEAD_CONSUMER_RECLAIMS,
                            json_integer(both_pools(pstats, CUIPC_RK_DEAD_CONSUMER_RECLAIMS)));
    /* A fault that never fired explains what follows from it: it is named first. */
    cuipc_fault_outcome o = {.s = s,
                             .producer = producer,
                             .consumers = (const json_t *const *)rr->consumers,
                             .dead_consumer_reclaims =
                                 pstats ? both_pools(pstats, CUIPC_RK_DEAD_CONSUMER_RECLAIMS) : 0,
                             .rejected = rejected};
    o.fired = judge_fault_fired(j, s, cr, producer, fault, end_s);
    cuipc_fault_judge(&o, &j->failures);
    /* A consumer that hung up without detaching died; in a run without a consumer fault none
     * may (the supervisor names a death it saw; this catches one that exited quietly). */
    json_int_t died = geti(pstats, CUIPC_RK_CONSUMERS_DIED);
    if (!cuipc_fault_kills_consumer(s, s->fault.consumer) && died > 0)
        failure(j, "%lld consumer(s) hung up without detaching (died)", (long long)died);
    json_object_set_new(res, "faults", fault);
}

/* An open loop must keep its schedule, unless falling behind is what the run tests. */
static void judge_schedule(judge *j, json_t *res, const cuipc_scenario *s, const json_t *producer) {
    json_t *schedule = json_object_get(producer, CUIPC_RK_SCHEDULE);
    if (schedule == NULL)
        return;
    json_object_set(res, CUIPC_RK_SCHEDULE, schedule);
    char why[256];
    if (cuipc_schedule_fell_behind(schedule, why, sizeof why) && !s->run.overload)
        failure(j, "open loop fell behind: %s", why);
}

static json_t *judge_thresholds(judge *j, const cuipc_scenario *s, const traffic *t) {
    json_t *thr = json_array();
    threshold(j, thr, CUIPC_RK_METRIC_P50, s->thresholds.p50_us, t->latency.p50_us, true);
    threshold(j, thr, CUIPC_RK_METRIC_P99, s->thresholds.p99_us, t->latency.p99_us, true);
    threshold(j, thr, CUIPC_RK_METRIC_MAX, s->thresholds.max_us, t->latency.max_us, true);
    threshold(j, thr, CUIPC_RK_METRIC_GBPS, s->thresholds.min_gbps, t->gbps, false);
    threshold(j, thr, CUIPC_RK_METRIC_MSGS_PER_S, s->thresholds.min_msgs_per_s, t->msgs_per_s,
              false);
    return thr;
}

/* The verdict: passed when nothing failed, else failed with every reason, root cause first. */
static void set_status(json_t *res, judge *j) {
    json_t *failures = cuipc_failures_take(&j->failures);
    json_decref(j->failures.entries);
    bool passed = json_array_size(failures) == 0;
    cuipc_results_set_status(res, passed ? CUIPC_RESULT_PASSED : CUIPC_RESULT_FAILED, NULL);
    if (!passed)
        json_object_set(res, CUIPC_RK_REASON, json_array_get(failures, 0));
    json_object_set_new(res, CUIPC_RK_FAILURES, failures);
}

/* Merge role reports into res and judge them. */
static void merge(json_t *res, const cuipc_scenario *s, const char *dir,
                  const cuipc_child_spec *specs, const cuipc_child_result *cr, size_t n,
                  const cuipc_supervise_outcome *out, const mps_run *under_mps) {
    judge j;
    cuipc_failures_init(&j.failures);
    role_reports rr;
    collect_roles(&j, &rr, dir, specs, cr, n, out);
    if (under_mps != NULL)
        judge_mps(&j, res, rr.roles, under_mps);
    traffic t;
    merge_traffic(&j, res, s, dir, &rr, &t);
    json_t *fault = judge_pool(&j, res, s, &rr, (json_int_t)t.rejected);
    judge_faults(&j, res, s, &rr, cr, out->wall_s, fault, (json_int_t)t.rejected);
    if (s->consumers.churn.count)
        json_object_set_new(res, "churn", judge_churn(&j, s, rr.consumers, rr.pstats));
    judge_schedule(&j, res, s, rr.producer);
    json_object_set_new(res, "thresholds", judge_thresholds(&j, s, &t));
    json_object_set_new(res, CUIPC_RK_LEAKS, judge_leaks(&j, s, rr.roles, rr.producer));
    json_object_set_new(res, CUIPC_RK_ROLES, rr.roles);
    json_object_set_new(res, CUIPC_RK_SUPERVISOR,
                        json_pack("{s:b, s:b, s:f, s:s, s:f, s:f, s:s}", "all_ready",
                                  out->all_ready, "timed_out", out->timed_out, CUIPC_RK_WALL_S,
                                  out->wall_s, "message", out->message, "ready_timeout_s",
                                  ready_timeout_s(s), "run_timeout_s", s->run.timeout_s,
                                  "run_timeout_from", "go"));
    set_status(res, &j);
}

/* ------------------------------------------------------------------ one scenario */

static json_t *scenario_json(const cuipc_scenario *s) {
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:b, s:s, s:s, s:s, s:I, s:i, s:i}",
                          CUIPC_RK_NAME, s->name, "file", s->path, "description", s->description,
                          "mode", cuipc_mode_name(s->mode), "consumers", (int)s->consumers.count,
                          "needs_gpu", s->needs_gpu, "fault", cuipc_fault_kind_name(s->fault.kind),
                          "unwrap", s->consumers.unwrap == CUIPC_UNWRAP_BORROW ? "borrow" : "copy",
                          CUIPC_RK_LOOP, s->run.open_loop ? "open" : "closed", "tensor_bytes",
                          (json_int_t)s->tensors.max_bytes, "validation_every",
                          (int)s->validation.every, "sync_every", (int)s->consumers.sync_every);
    json_object_set_new(o, "release",
                        json_string(s->consumers.release_on_stream ? "stream" : "host"));
    if (s->run.open_loop)
        json_object_set_new(o, "rate_hz", json_real(s->run.rate_hz));
    json_object_set_new(o, CUIPC_RK_MPS, json_boolean(s->gpu.mps));
    if (s->consumers.host_wait_ns >= 0)
        json_object_set_new(o, "host_wait_us", json_integer(s->consumers.host_wait_ns / 1000));
    if (cuipc_scenario_replays(s)) /* arrivals, sizes and holds came from this planner file */
        json_object_set_new(o, "workload", json_string(s->workload.file));
    return o;
}

/* A scenario that failed before its processes ran: msg is its one failure. */
static json_t *failed_before_run(json_t *res, const char *msg) {
    cuipc_results_set_status(res, CUIPC_RESULT_FAILED, msg);
    json_object_set_new(res, CUIPC_RK_FAILURES, json_pack("[s]", msg));
    return res;
}

/* The results' head: schema, scenario, start time, and the environment (a shallow copy in
 * *env_here: only mps differs between scenarios). */
static json_t *results_head(const cuipc_scenario *s, json_t *env, json_t **env_here) {
    json_t *res = json_object();
    char started[64];
    time_t now = time(NULL);
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_set_new(res, CUIPC_RK_SCHEMA_VERSION, json_integer(CUIPC_RESULTS_SCHEMA_VERSION));
    json_object_set_new(res, CUIPC_RK_SCENARIO, scenario_json(s));
    json_object_set_new(res, CUIPC_RK_STARTED_AT, json_string(started));
    *env_here = json_copy(env);
    json_object_set_new(res, CUIPC_RK_ENVIRONMENT, *env_here);
    return res;
}

/* Why this host cannot run s (MPS asked and no control program, no GPU, too few GPUs) into
 * why, "skipped: ..."; false when it can. */
static bool cannot_run(const cuipc_scenario *s, json_t *env, bool want_mps, char *why, size_t cap) {
    int gpus = (int)json_integer_value(
        json_object_get(json_object_get(env, CUIPC_RK_GPU), CUIPC_RK_COUNT));
    int need = s->producer_device;
    for (uint32_t i = 0; i < s->consumers.count; i++)
        need = s->consumers.devices[i] > need ? s->consumers.devices[i] : need;
    char control[1024];
    if (want_mps && !cuipc_mps_find_control(control, sizeof control))
        snprintf(why, cap,
                 "skipped: MPS requested, and %s is not there (looked for it on PATH; "
                 "CUIPC_MPS_CONTROL names another)",
                 control);
    else if (s->needs_gpu && need >= gpus && gpus == 0)
        snprintf(why, cap, "skipped: no GPU%s", want_mps ? " (MPS requested)" : "");
    else if (s->needs_gpu && need >= gpus)
        snprintf(why, cap, "skipped: needs GPU %d, this host has %d", need, gpus);
    else
        return false;
    return true;
}

/* The producer and its consumers forked in dir and supervised to their end, merged into res. */
static void supervise_run(const cuipc_scenario *s, const run_opts *ro, mps_run *mps,
                          const char *dir, cuipc_run_shared *shared, json_t *res,
                          json_t *env_here) {
    char sock[1100];
    snprintf(sock, sizeof sock, "%s/producer.sock", dir);
    cuipc_role_args args = {.s = s, .run_dir = dir, .socket_path = sock, .shared = shared};
    size_t n = 1 + s->consumers.count;
    cuipc_child_spec specs[1 + CUIPC_MAX_CONSUMERS];
    cuipc_child_result cr[1 + CUIPC_MAX_CONSUMERS];
    specs[0] = (cuipc_child_spec){.role = "producer", .fn = cuipc_role_producer, .arg = &args};
    specs[0].expected_signal = cuipc_fault_expected_signal(s, -1);
    for (uint32_t i = 0; i < s->consumers.count; i++)
        specs[1 + i] =
            (cuipc_child_spec){.role = "consumer",
                               .index = i,
                               .fn = cuipc_role_consumer,
                               .arg = &args,
                               .expected_signal = cuipc_fault_expected_signal(s, (int)i)};
    cuipc_supervisor_opts o;
    cuipc_supervisor_opts_init(&o);
    /* Start-up (fork, CUDA, attach) has its own bound; run.timeout_s counts from the go, as it
     * is documented and reported in the results (supervisor.ready_timeout_s, run_timeout_s). */
    o.ready_timeout_s = ready_timeout_s(s);
    o.run_timeout_s = s->run.timeout_s;
    o.run_timeout_from_go = true;
    o.stop_flag = &interrupted;
    tick_state ts = {.s = s, .shared = shared, .progress = ro->progress, .t0 = cuipc_h_now_ns()};
    if (!ro->progress && ro->heartbeat_s > 0) {
        ts.heartbeat_ns = (uint64_t)(ro->heartbeat_s * 1e9);
        ts.next_beat = ts.t0 + ts.heartbeat_ns;
    }
    o.tick = tick;
    o.tick_ctx = &ts;
    cuipc_supervise_outcome out;
    cuipc_supervise(specs, n, &o, cr, &out);
    if (ts.drawn)
        fprintf(stderr, "\r%*s\r", 80, "");
    if (s->needs_gpu && mps->m.active) /* now, while the servers of this run are up */
        json_object_set_new(env_here, CUIPC_RK_MPS, mps_json(mps));
    merge(res, s, dir, specs, cr, n, &out, s->needs_gpu && mps->m.active ? mps : NULL);
}

static json_t *run_one(const cuipc_scenario *s, json_t *env, const run_opts *ro, mps_run *mps) {
    json_t *env_here;
    json_t *res = results_head(s, env, &env_here);
    bool want_mps = mps_wanted(s, ro);
    char why[1200];
    if (cannot_run(s, env, want_mps, why, sizeof why)) {
        json_object_set_new(env_here, CUIPC_RK_MPS, cuipc_mps_json(&(cuipc_mps){0}, want_mps));
        bool no_gpu = json_integer_value(
                          json_object_get(json_object_get(env, CUIPC_RK_GPU), CUIPC_RK_COUNT)) == 0;
        /* A GPU job whose GPU is gone must not stay green. A scenario that needs more GPUs than
         * a GPU host has stays skipped: a one-GPU host runs the suite. */
        if (ro->require_gpu && s->needs_gpu && no_gpu)
            return failed_before_run(
                res, "no GPU, and a GPU is required (--require-gpu or CUIPC_REQUIRE_GPU=1)");
        cuipc_results_set_status(res, CUIPC_RESULT_SKIPPED, why);
        return res;
    }
    bool mps_ok = !s->needs_gpu || mps_prepare(mps, want_mps);
    json_object_set_new(env_here, CUIPC_RK_MPS,
                        s->needs_gpu ? cuipc_mps_json(&mps->m, want_mps)
                                     : cuipc_mps_json(&(cuipc_mps){0}, false));
    if (!mps_ok)
        return failed_before_run(res, mps->why);
    char dir[1024];
    cuipc_run_shared *shared =
        mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!make_run_dir(dir, sizeof dir) || shared == MAP_FAILED) {
        cuipc_results_set_status(res, CUIPC_RESULT_FAILED, strerror(errno));
        return res;
    }
    supervise_run(s, ro, mps, dir, shared, res, env_here);
    if (ro->keep)
        json_object_set_new(res, "run_dir", json_string(dir));
    else
        remove_run_dir(dir);
    munmap(shared, sizeof *shared);
    return res;
}

/* ------------------------------------------------------------------ repetitions */

/* "repetition k of n: " before each failure of the repetition that stands for all. */
static void name_repetition(json_t *res, size_t k, size_t n) {
    json_t *failures = json_object_get(res, CUIPC_RK_FAILURES);
    size_t i;
    json_t *f;
    json_array_foreach(failures, i, f) {
        char buf[1200];
        snprintf(buf, sizeof buf, "repetition %zu of %zu: %s", k, n, json_string_value(f));
        json_array_set_new(failures, i, json_string(buf));
    }
    if (json_array_size(failures) > 0)
        json_object_set(res, CUIPC_RK_REASON, json_array_get(failures, 0));
}

/* Run s its number of repetitions, each in fresh processes; the results are those of the
 * representative repetition (cuipc_repetitions_representative) plus every repetition's
 * figures with their median and spread. A skipped scenario is not repeated. */
static json_t *run_repeated(const cuipc_scenario *s, json_t *env, const run_opts *ro,
                            mps_run *mps) {
    size_t n = ro->repetitions ? ro->repetitions : s->run.repetitions;
    json_t *reps[CUIPC_MAX_REPETITIONS];
    size_t done = 0;
    while (done < n) {
        reps[done++] = run_one(s, env, ro, mps);
        if (cuipc_results_status_is(reps[done - 1], CUIPC_RESULT_SKIPPED))
            break;
    }
    json_t *res;
    if (done == 1) {
        res = reps[0];
    } else {
        size_t k = cuipc_repetitions_representative(reps, done);
        json_t *runs = json_array();
        for (size_t i = 0; i < done; i++)
            json_array_append_new(runs, cuipc_repetition_figures(reps[i], (int)i + 1));
        res = json_incref(reps[k]);
        for (size_t i = 0; i < done; i++)
            json_decref(reps[i]);
        json_object_set_new(res, CUIPC_RK_REPETITIONS, cuipc_repetitions_summary(runs, (int)k + 1));
        if (cuipc_results_status_is(res, CUIPC_RESULT_FAILED))
            name_repetition(res, k + 1, done);
    }
    char hex[65];
    if (cuipc_scenario_sha256(s, hex))
        json_object_set_new(res, CUIPC_RK_SCENARIO_SHA256, json_string(hex));
    return res;
}

/* ------------------------------------------------------------------ commands */

/* Every scenario parsed and within the transport's limits, or false with each refusal printed:
 * what run would refuse, validate refuses. */
static bool load_all(int argc, char **argv, int first, cuipc_scenario **out, size_t *n) {
    *n = (size_t)(argc - first);
    *out = calloc(*n ? *n : 1, sizeof **out);
    bool ok = *out != NULL;
    for (size_t i = 0; i < *n && *out; i++) {
        cuipc_scenario *s = &(*out)[i];
        bool parsed = cuipc_scenario_load(argv[first + (int)i], s) == CUIPC_OK;
        if (parsed && cuipc_scenario_check_transport(s) == CUIPC_OK)
            continue;
        fprintf(stderr, "cuipc-harness: %s\n", cuipc_last_error());
        if (parsed)
            cuipc_scenario_free(s);
        /* A rejected scenario keeps nothing: no "ok" line for it. */
        memset(s, 0, sizeof *s);
        ok = false;
    }
    return ok;
}

/* --help and --version of a subcommand: 0 printed one (exit 0), 2 unknown option, -1 neither. */
static int common_option(int ch, void (*usage)(FILE *)) {
    if (ch == 'h') {
        usage(stdout);
        return 0;
    }
    if (ch == 'V') {
        printf("cuipc-harness %s\n", CUIPC_VERSION);
        return 0;
    }
    return ch == '?' || ch == ':' ? 2 : -1;
}

static void validate_usage(FILE *f) {
    fputs("usage: cuipc-harness validate [--help] [--version] SCENARIO.json...\n"
          "  check scenarios without running them: the parser's rules and the transport's limits\n"
          "  (ring size, message size against the ring), as run checks them before it starts\n"
          "exit 0: all valid, 2: some invalid or unreadable\n",
          f);
}

int cuipc_validate_main(int argc, char **argv) {
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int rc = common_option(ch, validate_usage);
        if (rc >= 0)
            return rc;
    }
    if (optind >= argc) {
        validate_usage(stderr);
        return 2;
    }
    cuipc_scenario *sc;
    size_t n;
    bool ok = load_all(argc, argv, optind, &sc, &n);
    for (size_t i = 0; i < n && sc; i++) {
        if (sc[i].name[0])
            printf("ok %s (%s, mode %s, %u consumer(s)%s)\n", argv[optind + (int)i], sc[i].name,
                   cuipc_mode_name(sc[i].mode), sc[i].consumers.count,
                   sc[i].needs_gpu ? ", needs a GPU" : "");
        cuipc_scenario_free(&sc[i]);
    }
    free(sc);
    return ok ? 0 : 2;
}

static void run_usage(FILE *f) {
    fprintf(
        f,
        "usage: cuipc-harness run [--out DIR] [--no-progress] [--heartbeat SECONDS] [--keep]\n"
        "                         [--mps] [--repetitions N] [--require-gpu] SCENARIO.json...\n"
        "  --out DIR          results directory (default results/runs/<time>); checked for\n"
        "                     writing before anything runs\n"
        "  --no-progress      no progress bar (there is none without a terminal)\n"
        "  --heartbeat S      without the bar, a line every S seconds while a scenario runs\n"
        "                     (default 30; 0: none)\n"
        "  --keep             keep each scenario's run directory (role reports, latencies)\n"
        "  --mps              every scenario that uses a GPU runs under the CUDA Multi-Process\n"
        "                     Service (as with \"gpu\": {\"mps\": true})\n"
        "  --repetitions N    run each scenario N times (1..%d), each in fresh processes;\n"
        "                     overrides the scenarios' run.repetitions\n"
        "  --require-gpu      on a host without a GPU, a scenario that needs one fails\n"
        "                     instead of being skipped (also CUIPC_REQUIRE_GPU=1)\n"
        "  --help, --version  this text; the version of this build\n"
        "Prints one line per scenario as it ends, then the summary table and the totals.\n"
        "exit 0: all passed (or skipped), 1: some failed, 2: bad input or an unwritable --out\n",
        CUIPC_MAX_REPETITIONS);
}

/* The results directory exists and takes a file, or err says why not: checked before the
 * first scenario runs, so that no run's results are lost to it. */
static bool out_dir_writable(const char *dir, char *err, size_t errcap) {
    if (!cuipc_mkdirs(dir, err, errcap))
        return false;
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/.cuipc-harness-write-XXXXXX", dir);
    int fd = mkstemp(probe);
    if (fd < 0) {
        snprintf(err, errcap, "cannot write in %s: %s", dir, strerror(errno));
        return false;
    }
    close(fd);
    unlink(probe);
    return true;
}

/* A results file that could not be written is a failed run: nothing of it survives. */
static void mark_unwritten(json_t *res, const char *err) {
    char why[1500];
    snprintf(why, sizeof why, "results not written: %s", err);
    json_t *failures = json_object_get(res, CUIPC_RK_FAILURES);
    if (!json_is_array(failures)) {
        failures = json_array();
        json_object_set_new(res, CUIPC_RK_FAILURES, failures);
    }
    json_array_insert_new(failures, 0, json_string(why));
    cuipc_results_set_status(res, CUIPC_RESULT_FAILED, why);
}

static bool parse_seconds(const char *text, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(v >= 0) || v > 1e6)
        return false;
    *out = v;
    return true;
}

/* run's options from CUIPC_REQUIRE_GPU and the command line: -1 to go on, else the exit code. */
static int parse_run_args(int argc, char **argv, run_opts *ro) {
    const char *req = getenv("CUIPC_REQUIRE_GPU");
    if (req != NULL && *req && strcmp(req, "0") != 0) {
        if (strcmp(req, "1") != 0) {
            fprintf(stderr, "cuipc-harness: CUIPC_REQUIRE_GPU is '%s': expected 1 or 0\n", req);
            return 2;
        }
        ro->require_gpu = true;
    }
    static const struct option longopts[] = {{"out", required_argument, NULL, 'o'},
                                             {"no-progress", no_argument, NULL, 'q'},
                                             {"heartbeat", required_argument, NULL, 'b'},
                                             {"keep", no_argument, NULL, 'k'},
                                             {"mps", no_argument, NULL, 'm'},
                                             {"repetitions", required_argument, NULL, 'r'},
                                             {"require-gpu", no_argument, NULL, 'g'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        if (ch == 'o') {
            ro->out_dir = optarg;
        } else if (ch == 'q') {
            ro->progress = false;
        } else if (ch == 'k') {
            ro->keep = true;
        } else if (ch == 'm') {
            ro->mps = true;
        } else if (ch == 'g') {
            ro->require_gpu = true;
        } else if (ch == 'r') {
            char *end;
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-' || v < 1 ||
                v > CUIPC_MAX_REPETITIONS) {
                fprintf(stderr, "cuipc-harness: --repetitions needs an integer 1..%d, got '%s'\n",
                        CUIPC_MAX_REPETITIONS, optarg);
                return 2;
            }
            ro->repetitions = (uint32_t)v;
        } else if (ch == 'b') {
            if (!parse_seconds(optarg, &ro->heartbeat_s)) {
                fprintf(stderr,
                        "cuipc-harness run: --heartbeat '%s' is not a number of seconds "
                        "in [0, 1e6]\n",
                        optarg);
                return 2;
            }
        } else {
            int rc = common_option(ch, run_usage);
            return rc >= 0 ? rc : 2;
        }
    }
    if (optind >= argc) {
        run_usage(stderr);
        return 2;
    }
    return -1;
}

static void free_scenarios(cuipc_scenario *sc, size_t n) {
    for (size_t i = 0; i < n && sc; i++)
        cuipc_scenario_free(&sc[i]);
    free(sc);
}

/* --out, or results/runs/<UTC time>. */
static void choose_out_dir(const run_opts *ro, char *out, size_t cap) {
    if (ro->out_dir != NULL) {
        snprintf(out, cap, "%s", ro->out_dir);
        return;
    }
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", gmtime(&now));
    snprintf(out, cap, "results/runs/%s", stamp);
}

/* SIGTERM and SIGINT remove this run's directory (on_stop_signal); dead runs' are swept. */
static void take_signals_and_sweep(void) {
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int swept = sweep_dead_runs();
    if (swept > 0)
        fprintf(stderr, "cuipc-harness: removed %d run director%s left by runs that died\n", swept,
                swept == 1 ? "y" : "ies");
}

/* Each scenario in turn, its results written as it ends; *written counts the files. 1 if a
 * scenario failed, else 0. */
static int run_all(cuipc_scenario *sc, size_t n, json_t *env, const run_opts *ro,
                   const char *out_dir, json_t **results, size_t *written) {
    int rc = 0;
    mps_run mps = {.m = {.lifeline_fd = -1}};
    char err[1400]; /* a path of up to 1 KiB and why */
    for (size_t i = 0; i < n && !interrupted; i++) {
        uint64_t t0 = cuipc_h_now_ns();
        results[i] = run_repeated(&sc[i], env, ro, &mps);
        if (cuipc_results_write(results[i], out_dir, err, sizeof err)) {
            (*written)++;
        } else {
            fprintf(stderr, "cuipc-harness: %s\n", err);
            mark_unwritten(results[i], err);
        }
        if (cuipc_results_status_is(results[i], CUIPC_RESULT_FAILED))
            rc = 1;
        cuipc_results_print_done(stderr, i, n, results[i], (double)(cuipc_h_now_ns() - t0) / 1e9);
    }
    cuipc_mps_stop(&mps.m);
    return rc;
}

/* The summary table with its totals, and where the results went. */
static void print_outcome(json_t *const *results, size_t n, size_t written, const char *out_dir) {
    cuipc_results_print_summary(stdout, results, n);
    if (written == n)
        printf("results: %s\n", out_dir);
    else if (written > 0)
        printf("results: %zu of %zu files in %s (the others could not be written)\n", written, n,
               out_dir);
    else
        printf("results: none written\n");
}

int cuipc_run_main(int argc, char **argv) {
    run_opts ro = {.progress = isatty(2), .heartbeat_s = 30};
    int rc = parse_run_args(argc, argv, &ro);
    if (rc >= 0)
        return rc;
    cuipc_scenario *sc;
    size_t n;
    if (!load_all(argc, argv, optind, &sc, &n)) {
        free_scenarios(sc, n);
        return 2;
    }
    char out_dir[1024], err[1400]; /* a path of up to 1 KiB and why */
    choose_out_dir(&ro, out_dir, sizeof out_dir);
    if (!out_dir_writable(out_dir, err, sizeof err)) {
        fprintf(stderr, "cuipc-harness: results directory: %s\n", err);
        free_scenarios(sc, n);
        return 2;
    }
    take_signals_and_sweep();
    json_t *env = environment(probe_gpu());
    json_t **results = calloc(n, sizeof *results);
    size_t written = 0;
    rc = results ? run_all(sc, n, env, &ro, out_dir, results, &written) : 1;
    if (results && !interrupted)
        print_outcome(results, n, written, out_dir);
    for (size_t i = 0; i < n && results; i++)
        json_decref(results[i]);
    free(results);
    json_decref(env);
    free_scenarios(sc, n);
    if (interrupted) { /* the run directory is gone: end as the signal says */
        int sig = (int)interrupted;
        signal(sig, SIG_DFL);
        raise(sig);
        return 128 + sig;
    }
    return rc;
}
