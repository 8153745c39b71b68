/* `cuipc-harness plan`: find the smallest pool size that meets a target for a workload by
 * replaying it (plan_sim.c) at sizes chosen by doubling then bisection over aligned sizes,
 * verify the answer at that size and 10% below, and report it with headroom. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "byte_size.h"
#include "cuipc_version.h"
#include "plan.h"

#define EXIT_UNMET 1
#define EXIT_BAD_INPUT 2
#define MAX_TRIES 256
#define DEFAULT_MAX_BYTES (1ull << 40) /* 1 TiB: far above any real GPU */
#define MAX_EVAL_SIZES 64
#define DEFAULT_SEEDS 20
#define MAX_SEEDS 1000

typedef struct plan_args {
    const char *workload;
    const char *out_dir;
    bool target_p99;
    double p99_wait_us;
    bool policy_given;
    cuipc_plan_options opt;
    uint64_t min_bytes, max_bytes;
    double headroom;
    uint64_t sizes[MAX_EVAL_SIZES]; /* --sizes: evaluate exactly these, no search */
    size_t n_sizes;
    uint32_t seeds;      /* independent samples of a synthetic workload */
    bool first_seed_set; /* else the workload file's own seed */
    uint64_t first_seed;
} plan_args;

typedef struct plan_try {
    const char *phase; /* "search", "verify", "verify-10%", "recommended" */
    cuipc_plan_result r;
    bool met;
} plan_try;

typedef struct plan_state {
    const plan_args *a;
    const cuipc_plan_workload *w;
    plan_try tries[MAX_TRIES];
    size_t n_tries;
} plan_state;

static void usage(FILE *f) {
    fprintf(f,
            "usage: cuipc-harness plan WORKLOAD.json [options]\n"
            "  Replays the workload through the real pool allocator and sync table on a\n"
            "  simulated clock and reports the smallest pool size meeting the target.\n"
            "  --target zero-full|p99-wait-us=X  default zero-full (p99 implies --policy wait)\n"
            "  --policy fail|wait     what a request does when the pool is full (default fail)\n"
            "  --alignment B          pool alignment, power of two (default 256)\n"
            "  --slots N              sync slots = chunks in flight at most (default 4096)\n"
            "  --fit best|first       allocator fit (default best)\n"
            "  --min B / --max B      search range in bytes (\"64MiB\", \"1.5GB\": the sizes of\n"
            "                         scenario files)\n"
            "  --headroom F           recommended = found * (1 + F) (default 0.2)\n"
            "  --sizes B1,B2,...      no search: replay at these sizes (rounded up to the\n"
            "                         alignment) and report each (plan.json \"evaluated\")\n"
            "  --seeds N              replay N independent samples of a synthetic workload\n"
            "                         (seeds S..S+N-1, default 20) and size for every one\n"
            "                         of them; a trace is one sample\n"
            "  --first-seed S         the first sample's seed (default: the workload's)\n"
            "  --out DIR              write DIR/plan.json and DIR/occupancy.csv\n"
            "  --help, --version      this text; the version of this build\n"
            "  exit: 0 recommendation made, 1 target unreachable, 2 bad input\n");
}

/* A positive size in the grammar of scenario and workload files, rounded to whole bytes. */
static bool parse_bytes(const char *s, uint64_t *out) {
    double x;
    if (!cuipc_h_parse_bytes(s, &x) || !(x > 0))
        return false;
    *out = (uint64_t)llround(x);
    return true;
}

/* --sizes B1,B2,...: each a size, at most MAX_EVAL_SIZES. */
static bool parse_size_list(const char *v, plan_args *a) {
    char list[1024];
    if (strlen(v) >= sizeof list)
        return false;
    snprintf(list, sizeof list, "%s", v);
    a->n_sizes = 0;
    char *save = NULL;
    bool ok = true;
    for (char *t = strtok_r(list, ",", &save); t && ok; t = strtok_r(NULL, ",", &save))
        ok = a->n_sizes < MAX_EVAL_SIZES && parse_bytes(t, &a->sizes[a->n_sizes++]);
    return ok && a->n_sizes > 0;
}

/* A whole number in [lo, hi], without a sign. */
static bool parse_count(const char *v, unsigned long long lo, unsigned long long hi,
                        unsigned long long *out) {
    char *end;
    errno = 0;
    *out = strtoull(v, &end, 10);
    return !errno && end != v && !*end && v[0] != '-' && *out >= lo && *out <= hi;
}

/* One option and its value: 1 taken, 0 a bad value, -1 not an option of plan. */
static int parse_option(const char *o, const char *v, plan_args *a) {
    char *end;
    unsigned long long n;
    if (strcmp(o, "--target") == 0) {
        a->target_p99 = strncmp(v, "p99-wait-us=", 12) == 0;
        if (!a->target_p99)
            return strcmp(v, "zero-full") == 0;
        a->p99_wait_us = strtod(v + 12, &end);
        return end != v + 12 && !*end && a->p99_wait_us >= 0;
    }
    if (strcmp(o, "--policy") == 0) {
        a->policy_given = true;
        a->opt.policy = strcmp(v, "wait") == 0 ? CUIPC_PLAN_WAIT : CUIPC_PLAN_FAIL;
        return strcmp(v, "fail") == 0 || strcmp(v, "wait") == 0;
    }
    if (strcmp(o, "--alignment") == 0)
        return parse_bytes(v, &a->opt.alignment) && a->opt.alignment >= 8 &&
               !(a->opt.alignment & (a->opt.alignment - 1));
    if (strcmp(o, "--slots") == 0) {
        bool ok = parse_count(v, 1, 1ull << 24, &n);
        a->opt.slots = (uint32_t)n;
        return ok;
    }
    if (strcmp(o, "--fit") == 0) {
        a->opt.fit = strcmp(v, "first") == 0 ? CUIPC_FIT_FIRST : CUIPC_FIT_BEST;
        return strcmp(v, "best") == 0 || strcmp(v, "first") == 0;
    }
    if (strcmp(o, "--min") == 0)
        return parse_bytes(v, &a->min_bytes);
    if (strcmp(o, "--max") == 0)
        return parse_bytes(v, &a->max_bytes);
    if (strcmp(o, "--headroom") == 0) {
        a->headroom = strtod(v, &end);
        return end != v && !*end && a->headroom >= 0 && a->headroom <= 10;
    }
    if (strcmp(o, "--sizes") == 0)
        return parse_size_list(v, a);
    if (strcmp(o, "--seeds") == 0) {
        bool ok = parse_count(v, 1, MAX_SEEDS, &n);
        a->seeds = (uint32_t)n;
        return ok;
    }
    if (strcmp(o, "--first-seed") == 0) {
        a->first_seed_set = true;
        bool ok = parse_count(v, 0, 1ull << 53, &n);
        a->first_seed = n;
        return ok;
    }
    if (strcmp(o, "--out") == 0) {
        a->out_dir = v;
        return 1;
    }
    return -1;
}

/* What the options say together: 0, or EXIT_BAD_INPUT having said why. */
static int check_combination(plan_args *a) {
    if (!a->workload) {
        usage(stderr);
        return EXIT_BAD_INPUT;
    }
    if (a->target_p99 && a->policy_given && a->opt.policy == CUIPC_PLAN_FAIL) {
        fprintf(stderr, "plan: --target p99-wait-us needs --policy wait (fail never waits)\n");
        return EXIT_BAD_INPUT;
    }
    if (a->target_p99)
        a->opt.policy = CUIPC_PLAN_WAIT;
    if (a->n_sizes && (a->min_bytes || a->max_bytes)) {
        fprintf(stderr, "plan: --sizes replaces the search: drop --min/--max\n");
        return EXIT_BAD_INPUT;
    }
    if (a->min_bytes && a->max_bytes && a->min_bytes > a->max_bytes) {
        fprintf(stderr, "plan: --min %llu is above --max %llu\n", (unsigned long long)a->min_bytes,
                (unsigned long long)a->max_bytes);
        return EXIT_BAD_INPUT;
    }
    return 0;
}

static int parse_args(int argc, char **argv, plan_args *a) {
    memset(a, 0, sizeof *a);
    cuipc_plan_options_init(&a->opt);
    a->headroom = 0.2;
    a->seeds = DEFAULT_SEEDS;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(o, "--version") == 0) {
            printf("cuipc-harness %s\n", CUIPC_VERSION);
            return -1;
        }
        if (o[0] != '-') {
            if (a->workload) {
                fprintf(stderr, "plan: one workload only (got %s and %s)\n", a->workload, o);
                return EXIT_BAD_INPUT;
            }
            a->workload = o;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "plan: %s needs a value\n", o);
            return EXIT_BAD_INPUT;
        }
        const char *v = argv[++i];
        int taken = parse_option(o, v, a);
        if (taken < 0) {
            fprintf(stderr, "plan: unknown option %s\n", o);
            usage(stderr);
            return EXIT_BAD_INPUT;
        }
        if (!taken) {
            fprintf(stderr, "plan: bad value for %s: %s\n", o, v);
            return EXIT_BAD_INPUT;
        }
    }
    return check_combination(a);
}

static uint64_t align_up(uint64_t x, uint64_t al) {
    return (x + al - 1) & ~(al - 1);
}

static bool target_met(const plan_args *a, const cuipc_plan_workload *w,
                       const cuipc_plan_result *r) {
    if (r->served != w->n)
        return false; /* a fallback (or an impossible request) misses any target */
    if (a->target_p99)
        return r->p99_wait_us <= a->p99_wait_us;
    return r->full_events == 0;
}

static int try_size(plan_state *st, const char *phase, uint64_t size, FILE *occupancy,
                    plan_try **out) {
    if (st->n_tries == MAX_TRIES) {
        fprintf(stderr, "plan: more than %d replays; narrow --min/--max\n", MAX_TRIES);
        return EXIT_BAD_INPUT;
    }
    plan_try *t = &st->tries[st->n_tries];
    if (cuipc_plan_replay(st->w, &st->a->opt, size, occupancy, &t->r) != CUIPC_OK) {
        fprintf(stderr, "plan: replay at %llu bytes failed: %s\n", (unsigned long long)size,
                cuipc_last_error());
        return EXIT_BAD_INPUT;
    }
    t->phase = phase;
    t->met = target_met(st->a, st->w, &t->r);
    st->n_tries++;
    *out = t;
    return 0;
}

static void print_row(const plan_try *t) {
    const cuipc_plan_result *r = &t->r;
    printf("%-11s %14llu %9.2f %8llu %10.1f %10.1f %9.2f %7u %6.3f %7.1f  %s\n", t->phase,
           (unsigned long long)r->size, (double)r->size / 1048576.0,
           (unsigned long long)r->full_events, r->p99_wait_us, r->max_wait_us,
           (double)r->peak_used / 1048576.0, r->peak_in_flight, r->peak_fragmentation, r->replay_ms,
           t->met ? "yes" : "no");
}

static json_t *result_json(const plan_try *t) {
    const cuipc_plan_result *r = &t->r;
    return json_pack("{ss sI sI sI sI sI sf sf sf sf sI sI sf sf sb}", "phase", t->phase,
                     "size_bytes", (json_int_t)r->size, "served", (json_int_t)r->served,
                     "full_events", (json_int_t)r->full_events, "never_fit",
                     (json_int_t)r->never_fit, "slot_limited", (json_int_t)r->slot_limited,
                     "p50_wait_us", r->p50_wait_us, "p99_wait_us", r->p99_wait_us, "max_wait_us",
                     r->max_wait_us, "mean_wait_us", r->mean_wait_us, "peak_used_bytes",
                     (json_int_t)r->peak_used, "peak_in_flight", (json_int_t)r->peak_in_flight,
                     "peak_fragmentation", r->peak_fragmentation, "replay_ms", r->replay_ms,
                     "target_met", t->met);
}

static json_t *inputs_json(const plan_state *st) {
    const plan_args *a = st->a;
    const cuipc_plan_workload *w = st->w;
    json_t *target =
        a->target_p99 ? json_pack("{ss sf}", "kind", "p99-wait-us", "p99_wait_us", a->p99_wait_us)
                      : json_pack("{ss}", "kind", "zero-full");
    double span_s = w->n ? (double)w->req[w->n - 1].arrival_ns / 1e9 : 0;
    json_t *inputs =
        json_pack("{ss sI sI sI sf so ss sI sI ss sf sI sI sf}", "workload", w->source, "consumers",
                  (json_int_t)w->consumers, "tensors", (json_int_t)w->n, "messages",
                  (json_int_t)w->messages, "arrival_span_s", span_s, "target", target, "policy",
                  a->opt.policy == CUIPC_PLAN_WAIT ? "wait" : "fail", "alignment",
                  (json_int_t)a->opt.alignment, "slots", (json_int_t)a->opt.slots, "fit",
                  a->opt.fit == CUIPC_FIT_FIRST ? "first" : "best", "headroom", a->headroom,
                  "min_bytes", (json_int_t)a->min_bytes, "max_bytes", (json_int_t)a->max_bytes,
                  "copy_gb_per_s", w->copy_bytes_per_s / 1e9);
    json_object_set_new(inputs, "fill_us", json_real((double)w->fill_ns / 1e3));
    json_object_set_new(inputs, "synthetic", json_boolean(w->synthetic));
    if (w->synthetic)
        json_object_set_new(inputs, "first_seed", json_integer((json_int_t)w->seed));
    return inputs;
}

static int dump_json(json_t *root, const char *path) {
    int rc = root && json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS) == 0
                 ? 0
                 : EXIT_BAD_INPUT;
    if (rc)
        fprintf(stderr, "plan: cannot write %s\n", path);
    json_decref(root);
    return rc;
}

static int write_plan_json(const plan_state *st, const char *path, const plan_try *found,
                           const plan_try *below, const plan_try *rec, json_t *samples_json) {
    const plan_args *a = st->a;
    json_t *tries = json_array();
    for (size_t i = 0; i < st->n_tries; i++)
        json_array_append_new(tries, result_json(&st->tries[i]));
    json_t *inputs = inputs_json(st);
    json_t *recj = json_pack(
        "{sI sI sf sI sI so so so sb}", "found_bytes", (json_int_t)found->r.size,
        "recommended_bytes", (json_int_t)rec->r.size, "headroom", a->headroom,
        "peak_used_at_recommended_bytes", (json_int_t)rec->r.peak_used, "spare_at_peak_bytes",
        (json_int_t)(rec->r.size - rec->r.peak_used), "verify_at_found", result_json(found),
        "verify_at_minus_10pct", result_json(below), "at_recommended", result_json(rec),
        "minus_10pct_misses_target", !below->met);
    json_t *root = json_pack("{si so so so so}", "schema_version", 1, "inputs", inputs,
                             "recommendation", recj, "samples", samples_json, "tries", tries);
    return dump_json(root, path);
}

/* The workload's samples: seeds S..S+n-1 of a synthetic workload, or the one trace. */
typedef struct samples {
    cuipc_plan_workload *w;
    uint32_t n;
} samples;

static void free_samples(samples *sm) {
    for (uint32_t k = 0; sm->w && k < sm->n; k++)
        cuipc_plan_workload_free(&sm->w[k]);
    free(sm->w);
}

static int load_samples(const plan_args *a, samples *sm) {
    sm->n = 0;
    sm->w = calloc(a->seeds, sizeof *sm->w);
    if (!sm->w)
        return EXIT_BAD_INPUT;
    if (cuipc_plan_workload_load_seeded(a->workload, a->first_seed_set ? &a->first_seed : NULL,
                                        &sm->w[0]) != CUIPC_OK) {
        fprintf(stderr, "plan: %s\n", cuipc_last_error());
        return EXIT_BAD_INPUT;
    }
    sm->n = 1;
    if (!sm->w[0].synthetic)
        return 0; /* a trace is what it is: one sample */
    for (uint32_t k = 1; k < a->seeds; k++) {
        uint64_t seed = sm->w[0].seed + k;
        if (cuipc_plan_workload_load_seeded(a->workload, &seed, &sm->w[k]) != CUIPC_OK) {
            fprintf(stderr, "plan: %s\n", cuipc_last_error());
            return EXIT_BAD_INPUT;
        }
        sm->n++;
    }
    return 0;
}

/* How many samples meet the target at size, and how many full events the worst one had. */
typedef struct coverage {
    uint32_t met;
    uint64_t max_full_events;
} coverage;

static int cover(const plan_args *a, const samples *sm, uint64_t size, coverage *c) {
    c->met = 0;
    c->max_full_events = 0;
    for (uint32_t k = 0; k < sm->n; k++) {
        cuipc_plan_result r;
        if (cuipc_plan_replay(&sm->w[k], &a->opt, size, NULL, &r) != CUIPC_OK) {
            fprintf(stderr, "plan: replay at %llu bytes failed: %s\n", (unsigned long long)size,
                    cuipc_last_error());
            return EXIT_BAD_INPUT;
        }
        c->met += target_met(a, &sm->w[k], &r);
        c->max_full_events =
            r.full_events > c->max_full_events ? r.full_events : c->max_full_events;
    }
    return 0;
}

/* --sizes: replay every sample at each given size (no search, no recommendation). */
static int evaluate(plan_state *st, const samples *sm) {
    const plan_args *a = st->a;
    json_t *evaluated = json_array();
    int rc = 0;
    for (size_t i = 0; i < a->n_sizes && !rc; i++) {
        uint64_t size = align_up(a->sizes[i], a->opt.alignment);
        uint32_t with_full = 0, met = 0;
        for (uint32_t k = 0; k < sm->n && !rc; k++) {
            plan_try *t;
            st->w = &sm->w[k];
            st->n_tries = 0; /* one try a replay: nothing is kept between them */
            rc = try_size(st, "evaluate", size, NULL, &t);
            if (rc)
                break;
            if (sm->n == 1)
                print_row(t);
            with_full += t->r.full_events > 0;
            met += t->met;
            json_t *row = result_json(t);
            if (sm->w[k].synthetic)
                json_object_set_new(row, "seed", json_integer((json_int_t)sm->w[k].seed));
            json_array_append_new(evaluated, row);
        }
        if (!rc && sm->n > 1)
            printf("evaluate %14llu %9.2f MiB: %u of %u samples with a full event, %u meet the "
                   "target\n",
                   (unsigned long long)size, (double)size / 1048576.0, with_full, sm->n, met);
    }
    st->w = &sm->w[0];
    if (!rc && a->out_dir) {
        char path[1200];
        snprintf(path, sizeof path, "%s/plan.json", a->out_dir);
        rc = dump_json(json_pack("{si so so}", "schema_version", 1, "inputs", inputs_json(st),
                                 "evaluated", evaluated),
                       path);
        evaluated = NULL;
        if (!rc)
            printf("wrote %s\n", path);
    }
    json_decref(evaluated);
    return rc;
}

/* Doubling from the smallest possible size until the target is met, then bisection in
 * alignment steps. Returns the passing try, or NULL (rc set) when --max does not suffice. */
static int search(plan_state *st, uint64_t lo, uint64_t hi, plan_try **found) {
    const uint64_t al = st->a->opt.alignment;
    plan_try *t;
    uint64_t bad = 0, size = lo;
    *found = NULL;
    for (;;) {
        int rc = try_size(st, "search", size, NULL, &t);
        if (rc)
            return rc;
        if (t->met)
            break;
        bad = size;
        if (size >= hi)
            return 0;
        size = size > hi / 2 ? hi : align_up(size * 2, al);
    }
    uint64_t good = size;
    plan_try *good_try = t;
    while (bad && good - bad > al) {
        uint64_t mid = (bad + (good - bad) / 2) & ~(al - 1);
        if (mid <= bad)
            mid = bad + al;
        int rc = try_size(st, "search", mid, NULL, &t);
        if (rc)
            return rc;
        if (t->met) {
            good = mid;
            good_try = t;
        } else {
            bad = mid;
        }
    }
    *found = good_try;
    return 0;
}

/* mkdir -p */
static bool make_dirs(const char *dir) {
    char p[1024];
    snprintf(p, sizeof p, "%s", dir);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return false;
        *c = '/';
    }
    return mkdir(p, 0755) == 0 || errno == EEXIST;
}

static void print_header(void) {
    printf("%-11s %14s %9s %8s %10s %10s %9s %7s %6s %7s  %s\n", "phase", "size_bytes", "MiB",
           "full", "p99_us", "max_wait", "peak_MiB", "chunks", "frag", "ms", "met");
}

/* The search range of one sample: no size below its largest tensor can serve it; no size above
 * every tensor at once is needed (unless slot-limited). */
static void range_of(const plan_args *a, const cuipc_plan_workload *w, uint64_t *lo, uint64_t *hi) {
    const uint64_t al = a->opt.alignment;
    uint64_t largest = 0, total = 0;
    for (uint64_t i = 0; i < w->n; i++) {
        uint64_t b = align_up(w->req[i].bytes, al);
        largest = b > largest ? b : largest;
        total = total + b < total ? UINT64_MAX : total + b;
    }
    *lo = align_up(a->min_bytes > largest ? a->min_bytes : largest, al);
    *hi = a->max_bytes ? a->max_bytes & ~(al - 1)
                       : align_up(total < DEFAULT_MAX_BYTES ? total : DEFAULT_MAX_BYTES, al);
    if (*hi < *lo)
        *hi = *lo;
}

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* Every sample's own smallest size meeting the target (found[k]); sample 0's search stays in
 * st0 for plan.json. Returns EXIT_UNMET when a sample cannot meet it within the range. */
static int search_samples(plan_state *st0, const samples *sm, uint64_t *found) {
    const plan_args *a = st0->a;
    for (uint32_t k = 0; k < sm->n; k++) {
        plan_state *st = k == 0 ? st0 : calloc(1, sizeof *st);
        if (!st)
            return EXIT_BAD_INPUT;
        st->a = a;
        st->w = &sm->w[k];
        uint64_t lo, hi;
        range_of(a, st->w, &lo, &hi);
        plan_try *f = NULL;
        int rc = search(st, lo, hi, &f);
        if (sm->n == 1)
            for (size_t i = 0; i < st->n_tries; i++)
                print_row(&st->tries[i]);
        if (!rc && !f) {
            const plan_try *last = &st->tries[st->n_tries - 1];
            printf("target NOT met%s at the largest size tried (%llu bytes)%s\n",
                   sm->n > 1 ? " by one sample" : "", (unsigned long long)last->r.size,
                   last->r.slot_limited ? ": all sync slots were in flight (raise --slots)"
                                        : ": raise --max or relax the target");
            if (sm->n > 1)
                printf("  (seed %llu)\n", (unsigned long long)st->w->seed);
            rc = EXIT_UNMET;
        }
        if (!rc) {
            found[k] = f->r.size;
            if (sm->n > 1)
                printf("seed %-8llu smallest size meeting the target %14llu bytes (%8.2f MiB), "
                       "%zu replays\n",
                       (unsigned long long)st->w->seed, (unsigned long long)f->r.size,
                       (double)f->r.size / 1048576.0, st->n_tries);
        }
        if (k != 0)
            free(st);
        if (rc)
            return rc;
    }
    return 0;
}

static void print_intro(const plan_args *a, const samples *sm, uint64_t lo, uint64_t hi) {
    const cuipc_plan_workload *w = &sm->w[0];
    printf("workload %s: %llu tensors (%llu messages), %u consumers, policy %s, target %s",
           w->source, (unsigned long long)w->n, (unsigned long long)w->messages, w->consumers,
           a->opt.policy == CUIPC_PLAN_WAIT ? "wait" : "fail",
           a->target_p99 ? "p99-wait-us" : "zero-full");
    if (a->target_p99)
        printf("=%g", a->p99_wait_us);
    if (w->synthetic)
        printf("\nsamples: %u (seeds %llu..%llu)", sm->n, (unsigned long long)w->seed,
               (unsigned long long)(w->seed + sm->n - 1));
    else
        printf("\nsamples: 1 (a trace replays as it was recorded)");
    const uint64_t al = a->opt.alignment;
    if (a->n_sizes)
        printf("\nevaluating %zu size(s), alignment %llu, %u slots\n", a->n_sizes,
               (unsigned long long)al, a->opt.slots);
    else if (sm->n == 1)
        printf("\nsearch range %llu..%llu bytes, alignment %llu, %u slots\n",
               (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)al,
               a->opt.slots);
    else
        printf("\nalignment %llu, %u slots; each sample searched on its own\n",
               (unsigned long long)al, a->opt.slots);
    if (sm->n == 1 || a->n_sizes)
        print_header();
}

/* What the search found and its verification around that size. */
typedef struct plan_outcome {
    uint64_t found, minus;
    coverage at_found, at_minus, at_rec;
    plan_try *again, *below, *rec;
} plan_outcome;

/* The size for every sample: the largest of theirs, raised if the allocator's outcome is not
 * monotone and a sample misses there. */
static int size_for_every_sample(plan_state *st, const samples *sm, uint64_t *found_k,
                                 plan_outcome *o) {
    const plan_args *a = st->a;
    const uint64_t al = a->opt.alignment;
    int rc = search_samples(st, sm, found_k);
    if (rc)
        return rc;
    o->found = 0;
    for (uint32_t k = 0; k < sm->n; k++)
        o->found = found_k[k] > o->found ? found_k[k] : o->found;
    rc = cover(a, sm, o->found, &o->at_found);
    for (uint64_t step = al; !rc && o->at_found.met < sm->n && step < (o->found | 1) * 2;
         step *= 2) {
        o->found = align_up(o->found + step, al);
        rc = cover(a, sm, o->found, &o->at_found);
    }
    return rc;
}

/* Verify: the answer must pass when replayed again, and 10% less should not; the recommended
 * size (with headroom) is replayed too, its occupancy written under --out. */
static int verify(plan_state *st, const samples *sm, plan_outcome *o) {
    const plan_args *a = st->a;
    const uint64_t al = a->opt.alignment;
    o->minus = (uint64_t)((double)o->found * 0.9) & ~(al - 1);
    if (o->minus < al)
        o->minus = al;
    FILE *occ = NULL;
    if (a->out_dir) {
        char path[1200];
        snprintf(path, sizeof path, "%s/occupancy.csv", a->out_dir);
        occ = fopen(path, "w");
        if (!occ) {
            fprintf(stderr, "plan: cannot write %s: %s\n", path, strerror(errno));
            return EXIT_BAD_INPUT;
        }
    }
    uint64_t recommended = align_up((uint64_t)ceil((double)o->found * (1.0 + a->headroom)), al);
    size_t first_verify = st->n_tries;
    if (sm->n > 1)
        print_header();
    int rc = try_size(st, "verify", o->found, NULL, &o->again);
    if (!rc)
        rc = try_size(st, "verify-10%", o->minus, NULL, &o->below);
    if (!rc)
        rc = try_size(st, "recommended", recommended, occ, &o->rec);
    if (occ)
        fclose(occ);
    if (!rc)
        rc = cover(a, sm, o->minus, &o->at_minus);
    if (!rc)
        rc = cover(a, sm, recommended, &o->at_rec);
    if (rc)
        return rc;
    for (size_t i = first_verify; i < st->n_tries; i++)
        print_row(&st->tries[i]);
    if (!o->again->met || o->at_found.met < sm->n) {
        printf("verification FAILED: the found size did not meet the target on a replay "
               "(%u of %u samples)\n",
               o->at_found.met, sm->n);
        return EXIT_UNMET;
    }
    return 0;
}

/* found_k: each sample's size, sorted. */
static void print_recommendation(const plan_args *a, const samples *sm, const uint64_t *found_k,
                                 const plan_outcome *o) {
    uint32_t n = sm->n;
    if (n > 1)
        printf("smallest size meeting the target, over %u samples: min %.2f MiB, median %.2f "
               "MiB, max %.2f MiB (spread %.1f%% of the max)\n",
               n, (double)found_k[0] / 1048576.0, (double)found_k[n / 2] / 1048576.0,
               (double)found_k[n - 1] / 1048576.0,
               100.0 * (double)(found_k[n - 1] - found_k[0]) / (double)found_k[n - 1]);
    printf("smallest size meeting the target%s: %llu bytes (%.2f MiB); at %llu bytes (-10%%) "
           "the target is %s",
           n > 1 ? " in every sample" : "", (unsigned long long)o->found,
           (double)o->found / 1048576.0, (unsigned long long)o->minus,
           n > 1           ? ""
           : o->below->met ? "STILL met (outcome not monotone here: bisection may be loose)"
                           : "missed as expected");
    if (n > 1)
        printf("missed by %u of %u samples", n - o->at_minus.met, n);
    const cuipc_plan_result *rec = &o->rec->r;
    printf("\nrecommended pool size: %llu bytes (%.2f MiB) = found x %.2f; peak use there %.2f "
           "MiB, %.2f MiB spare at peak",
           (unsigned long long)rec->size, (double)rec->size / 1048576.0, 1.0 + a->headroom,
           (double)rec->peak_used / 1048576.0, (double)(rec->size - rec->peak_used) / 1048576.0);
    if (n > 1)
        printf(" (sample 0); %u of %u samples meet the target there", o->at_rec.met, n);
    printf("\n");
}

/* plan.json's "samples"; per_seed (each sample's size in seed order) is taken over. */
static json_t *samples_json_of(const samples *sm, const uint64_t *found_k, json_t *per_seed,
                               const plan_outcome *o) {
    json_t *seeds = json_array();
    for (uint32_t k = 0; k < sm->n; k++)
        if (sm->w[k].synthetic)
            json_array_append_new(seeds, json_integer((json_int_t)sm->w[k].seed));
    return json_pack("{sI so so sI sI sI ss sI sI sI}", "count", (json_int_t)sm->n, "seeds", seeds,
                     "found_bytes", per_seed, "min_found_bytes", (json_int_t)found_k[0],
                     "median_found_bytes", (json_int_t)found_k[sm->n / 2], "max_found_bytes",
                     (json_int_t)found_k[sm->n - 1], "coverage", "every sample", "met_at_found",
                     (json_int_t)o->at_found.met, "met_at_minus_10pct", (json_int_t)o->at_minus.met,
                     "met_at_recommended", (json_int_t)o->at_rec.met);
}

/* Search, verify, report: the size every sample needs and the recommendation. */
static int recommend(plan_state *st, const samples *sm, uint64_t *found_k) {
    const plan_args *a = st->a;
    plan_outcome o;
    int rc = size_for_every_sample(st, sm, found_k, &o);
    if (!rc)
        rc = verify(st, sm, &o);
    if (rc)
        return rc;
    json_t *per_seed = json_array(); /* before sorting: in seed order */
    for (uint32_t k = 0; k < sm->n; k++)
        json_array_append_new(per_seed, json_integer((json_int_t)found_k[k]));
    qsort(found_k, sm->n, sizeof *found_k, cmp_u64);
    print_recommendation(a, sm, found_k, &o);
    json_t *samples_json = samples_json_of(sm, found_k, per_seed, &o);
    if (!a->out_dir) {
        json_decref(samples_json);
        return 0;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/plan.json", a->out_dir);
    rc = write_plan_json(st, path, o.again, o.below, o.rec, samples_json);
    if (!rc)
        printf("wrote %s and %s/occupancy.csv\n", path, a->out_dir);
    return rc;
}

int cuipc_plan_main(int argc, char **argv) {
    plan_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    samples sm = {0};
    plan_state *st = calloc(1, sizeof *st);
    uint64_t *found_k = calloc(a.seeds, sizeof *found_k);
    rc = st && found_k ? load_samples(&a, &sm) : EXIT_BAD_INPUT;
    if (!rc) {
        st->a = &a;
        st->w = &sm.w[0];
        uint64_t lo, hi;
        range_of(&a, st->w, &lo, &hi);
        print_intro(&a, &sm, lo, hi);
        /* Create --out before the search so a bad directory fails at once. */
        if (a.out_dir && !make_dirs(a.out_dir)) {
            fprintf(stderr, "plan: cannot create %s: %s\n", a.out_dir, strerror(errno));
            rc = EXIT_BAD_INPUT;
        } else {
            rc = a.n_sizes ? evaluate(st, &sm) : recommend(st, &sm, found_k);
        }
    }
    free(st);
    free(found_k);
    free_samples(&sm);
    return rc;
}
