/* Planner workloads: strict JSON (unknown keys rejected, errors name the file, line:column and
 * key path, like a scenario's) describing either a CSV trace or synthetic distributions,
 * expanded into one request per tensor with per-consumer hold times. */
#include <errno.h>
#include <stdio.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuipc/error.h"
#include "json_get.h"
#include "plan.h"
#include "read_file.h"
#include "splitmix.h"

#define WORKLOAD_MAX_BYTES (16ull << 20)   /* a workload JSON; traces are separate files */
#define MAX_REQUESTS (20u * 1000u * 1000u) /* keeps a replay within memory and seconds */
#define DIST_KINDS "constant", "uniform", "lognormal", "exponential", "choice"

/* ---- distributions ------------------------------------------------------------------------ */

typedef enum dist_kind { D_CONSTANT, D_UNIFORM, D_LOGNORMAL, D_EXPONENTIAL, D_CHOICE } dist_kind;

typedef struct dist {
    dist_kind kind;
    double a, b;     /* constant: value; uniform: min,max; lognormal: median,sigma; exp: mean */
    double min, max; /* clamp */
    double *values, *cumulative;
    size_t n;
} dist;

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
    uint64_t z = cuipc_h_splitmix64(r->s);
    r->s += CUIPC_H_SPLITMIX_GAMMA;
    return z;
}

static double rng_unit(rng *r) { /* (0, 1) */
    return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(rng *r) {
    return sqrt(-2.0 * log(rng_unit(r))) * cos(2.0 * M_PI * rng_unit(r));
}

static double dist_sample(const dist *d, rng *r) {
    double x = 0;
    switch (d->kind) {
    case D_CONSTANT:
        x = d->a;
        break;
    case D_UNIFORM:
        x = d->a + (d->b - d->a) * rng_unit(r);
        break;
    case D_LOGNORMAL:
        x = d->a * exp(d->b * rng_normal(r));
        break;
    case D_EXPONENTIAL:
        x = -d->a * log(rng_unit(r));
        break;
    case D_CHOICE: {
        double u = rng_unit(r) * d->cumulative[d->n - 1];
        size_t i = 0;
        while (i + 1 < d->n && d->cumulative[i] < u)
            i++;
        x = d->values[i];
        break;
    }
    }
    return x < d->min ? d->min : x > d->max ? d->max : x;
}

static void dist_free(dist *d) {
    free(d->values);
    free(d->cumulative);
}

/* A byte quantity (number or size string) or a plain number, in [lo, hi]. */
static bool quantity_value(cuipc_jctx *j, const json_t *v, bool bytes, double lo, double hi,
                           double *out) {
    return bytes ? cuipc_jbytes_value(j, v, lo, hi, out) : cuipc_jnumber_value(j, v, lo, hi, out);
}

static bool get_quantity(cuipc_jctx *j, const json_t *obj, const char *key, bool required,
                         bool bytes, double lo, double hi, double *out) {
    return bytes ? cuipc_jget_bytes(j, obj, key, required, lo, hi, out)
                 : cuipc_jget_double(j, obj, key, required, lo, hi, out);
}

/* choice: values[i] drawn with weights[i] (default: all equal). */
static bool parse_choice(cuipc_jctx *j, const json_t *obj, bool bytes, double lo, double hi,
                         dist *d) {
    json_t *vals = json_object_get(obj, "values");
    json_t *w = json_object_get(obj, "weights");
    if (!json_is_array(vals) || json_array_size(vals) == 0) {
        cuipc_jpush_key(j, "values");
        return cuipc_jfail(j, "expected a non-empty array, got %s",
                           vals ? cuipc_json_type_name(vals) : "nothing");
    }
    d->n = json_array_size(vals);
    if (w && (!json_is_array(w) || json_array_size(w) != d->n)) {
        cuipc_jpush_key(j, "weights");
        return cuipc_jfail(j, "expected an array of %zu weights (one per value)", d->n);
    }
    d->values = calloc(d->n, sizeof *d->values);
    d->cumulative = calloc(d->n, sizeof *d->cumulative);
    if (!d->values || !d->cumulative)
        return cuipc_jfail(j, "out of memory for %zu choices", d->n);
    double total = 0;
    for (size_t i = 0; i < d->n; i++) {
        double weight = 1;
        cuipc_jpush_key(j, "values");
        cuipc_jpush_index(j, (long)i);
        if (!quantity_value(j, json_array_get(vals, i), bytes, lo, hi, &d->values[i]))
            return false;
        cuipc_jpop(j);
        cuipc_jpop(j);
        if (w) {
            cuipc_jpush_key(j, "weights");
            cuipc_jpush_index(j, (long)i);
            if (!cuipc_jnumber_value(j, json_array_get(w, i), 0, 1e12, &weight))
                return false;
            cuipc_jpop(j);
            cuipc_jpop(j);
        }
        total += weight;
        d->cumulative[i] = total;
    }
    if (total <= 0) {
        cuipc_jpush_key(j, "weights");
        return cuipc_jfail(j, "weights sum to 0");
    }
    return true;
}

/* The distribution at the current path (obj); bytes: its values are byte quantities. */
static bool parse_dist(cuipc_jctx *j, const json_t *obj, bool bytes, double lo, double hi,
                       dist *d) {
    memset(d, 0, sizeof *d);
    d->min = lo;
    d->max = hi;
    if (!json_is_object(obj))
        return cuipc_jfail(j, "expected an object with \"kind\", got %s",
                           cuipc_json_type_name(obj));
    int kind = 0;
    if (!cuipc_jget_enum(j, obj, "kind", true, CUIPC_JNAMES(DIST_KINDS), 5, &kind))
        return false;
    static const dist_kind kinds[] = {D_CONSTANT, D_UNIFORM, D_LOGNORMAL, D_EXPONENTIAL, D_CHOICE};
    d->kind = kinds[kind];
    switch (d->kind) {
    case D_CONSTANT:
        return cuipc_jcheck_object(j, obj, CUIPC_JKEYS("kind", "value")) &&
               get_quantity(j, obj, "value", true, bytes, lo, hi, &d->a);
    case D_UNIFORM:
        return cuipc_jcheck_object(j, obj, CUIPC_JKEYS("kind", "min", "max")) &&
               get_quantity(j, obj, "min", true, bytes, lo, hi, &d->a) &&
               get_quantity(j, obj, "max", true, bytes, d->a, hi, &d->b);
    case D_LOGNORMAL:
        return cuipc_jcheck_object(j, obj, CUIPC_JKEYS("kind", "median", "sigma", "min", "max")) &&
               get_quantity(j, obj, "median", true, bytes, lo, hi, &d->a) &&
               cuipc_jget_double(j, obj, "sigma", true, 0, 10, &d->b) &&
               get_quantity(j, obj, "min", false, bytes, lo, hi, &d->min) &&
               get_quantity(j, obj, "max", false, bytes, d->min, hi, &d->max);
    case D_EXPONENTIAL:
        return cuipc_jcheck_object(j, obj, CUIPC_JKEYS("kind", "mean", "min", "max")) &&
               get_quantity(j, obj, "mean", true, bytes, lo, hi, &d->a) &&
               get_quantity(j, obj, "min", false, bytes, lo, hi, &d->min) &&
               get_quantity(j, obj, "max", false, bytes, d->min, hi, &d->max);
    case D_CHOICE:
        return cuipc_jcheck_object(j, obj, CUIPC_JKEYS("kind", "values", "weights")) &&
               parse_choice(j, obj, bytes, lo, hi, d);
    }
    return false;
}

static bool get_dist(cuipc_jctx *j, const json_t *root, const char *key, bool bytes, double lo,
                     double hi, dist *d) {
    memset(d, 0, sizeof *d);
    json_t *v = json_object_get(root, key);
    if (!v)
        return cuipc_jmissing(j, key);
    size_t depth = j->depth;
    cuipc_jpush_key(j, key);
    bool ok = parse_dist(j, v, bytes, lo, hi, d);
    j->depth = depth; /* a failure leaves its path pushed (its message is written) */
    return ok;
}

/* ---- building the request list ---------------------------------------------------------- */

static cuipc_status alloc_requests(cuipc_plan_workload *w, uint64_t n) {
    if (n > MAX_REQUESTS)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "%s: %llu tensors is more than the planner's limit of %u", w->source,
                          (unsigned long long)n, MAX_REQUESTS);
    w->req = calloc(n ? n : 1, sizeof *w->req);
    w->hold_ns = calloc((n ? n : 1) * w->consumers, sizeof *w->hold_ns);
    if (!w->req || !w->hold_ns)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "%llu requests", (unsigned long long)n);
    return CUIPC_OK;
}

/* A synthetic workload as its file gives it. */
typedef struct synth_spec {
    double consumers, duration, seed, per_msg;
    double rate; /* messages per second (a burst's: burst_size / period) */
    bool poisson, burst;
    double burst_size, period, spacing_us; /* burst_size messages every period, spacing_us apart */
    dist bytes, hold;
} synth_spec;

static bool read_arrivals(cuipc_jctx *j, const json_t *root, synth_spec *sp) {
    bool bad = false;
    json_t *arr = json_object_get(root, "arrivals");
    if (!arr)
        return cuipc_jmissing(j, "arrivals");
    cuipc_jpush_key(j, "arrivals");
    int kind = 0;
    if (!json_is_object(arr))
        return cuipc_jfail(j, "expected an object, got %s", cuipc_json_type_name(arr));
    if (!cuipc_jget_enum(j, arr, "kind", true, CUIPC_JNAMES("poisson", "constant", "burst"), 3,
                         &kind))
        return false;
    sp->poisson = kind == 0;
    sp->burst = kind == 2;
    if (!cuipc_jcheck_object(j, arr,
                             sp->burst ? CUIPC_JKEYS("kind", "burst_size", "period_s", "spacing_us")
                                       : CUIPC_JKEYS("kind", "rate_per_s")))
        return false;
    if (!sp->burst) {
        bad = !cuipc_jget_double(j, arr, "rate_per_s", true, 1e-6, 1e7, &sp->rate);
        cuipc_jpop(j);
        return !bad;
    }
    if (!cuipc_jget_double(j, arr, "burst_size", true, 1, 1e6, &sp->burst_size) ||
        !cuipc_jget_double(j, arr, "period_s", true, 1e-6, 1e6, &sp->period) ||
        !cuipc_jget_double(j, arr, "spacing_us", false, 0, 1e12, &sp->spacing_us))
        return false;
    if (sp->burst_size != floor(sp->burst_size)) {
        cuipc_jpush_key(j, "burst_size");
        return cuipc_jfail(j, "must be an integer");
    }
    if ((sp->burst_size - 1) * sp->spacing_us >= sp->period * 1e6) {
        cuipc_jpush_key(j, "spacing_us");
        return cuipc_jfail(j,
                           "%g messages %g us apart do not end before the next burst "
                           "(period_s %g)",
                           sp->burst_size, sp->spacing_us, sp->period);
    }
    sp->rate = sp->burst_size / sp->period;
    cuipc_jpop(j);
    return true;
}

static bool read_synthetic(cuipc_jctx *j, const json_t *root, synth_spec *sp) {
    memset(sp, 0, sizeof *sp);
    sp->seed = 1;
    sp->per_msg = 1;
    if (!cuipc_jcheck_object(j, root,
                             CUIPC_JKEYS("name", "description", "consumers", "duration_s", "seed",
                                         "arrivals", "bytes", "hold_us", "tensors_per_message",
                                         "copy_gb_per_s", "fill_us")) ||
        !cuipc_jget_double(j, root, "consumers", true, 1, CUIPC_MAX_CONSUMERS, &sp->consumers) ||
        !cuipc_jget_double(j, root, "duration_s", true, 1e-6, 1e6, &sp->duration) ||
        !cuipc_jget_double(j, root, "seed", false, 0, 9007199254740992.0, &sp->seed) ||
        !cuipc_jget_double(j, root, "tensors_per_message", false, 1, 1024, &sp->per_msg))
        return false;
    if (sp->consumers != floor(sp->consumers) || sp->per_msg != floor(sp->per_msg)) {
        cuipc_jpush_key(j, sp->consumers != floor(sp->consumers) ? "consumers"
                                                                 : "tensors_per_message");
        return cuipc_jfail(j, "must be an integer");
    }
    if (!read_arrivals(j, root, sp))
        return false;
    if (!json_object_get(root, "bytes"))
        return cuipc_jmissing(j, "bytes");
    if (!json_object_get(root, "hold_us"))
        return cuipc_jmissing(j, "hold_us");
    double expected = sp->duration * sp->rate * sp->per_msg;
    if (expected > MAX_REQUESTS) {
        cuipc_jpush_key(j, "arrivals");
        cuipc_jpush_key(j, sp->burst ? "burst_size" : "rate_per_s");
        return cuipc_jfail(j,
                           "%g messages/s for %g s x %g tensors is %.0f tensors, over the "
                           "limit of %u",
                           sp->rate, sp->duration, sp->per_msg, expected, MAX_REQUESTS);
    }
    /* get_dist zeroes its output first, so the caller frees both after a failure. */
    return get_dist(j, root, "bytes", true, 1, 1099511627776.0, &sp->bytes) &&
           get_dist(j, root, "hold_us", false, 0, 3.6e9, &sp->hold);
}

/* Message arrival times (ns) over the spec's duration, into a malloc'd array. */
static cuipc_status arrival_times(const synth_spec *sp, rng *r, uint64_t **out, uint64_t *n) {
    uint64_t cap = (uint64_t)(sp->duration * sp->rate * 1.2) + 16, msgs = 0;
    uint64_t *times = malloc(cap * sizeof *times);
    double t = 0;
    uint64_t in_burst = 0, burst_no = 0;
    while (times) {
        if (sp->poisson)
            t += -log(rng_unit(r)) / sp->rate;
        if (sp->burst)
            t = (double)burst_no * sp->period + (double)in_burst * sp->spacing_us * 1e-6;
        if (t >= sp->duration)
            break;
        if (msgs == cap) {
            uint64_t *more = realloc(times, 2 * cap * sizeof *times);
            if (!more) {
                free(times);
                times = NULL;
                break;
            }
            times = more;
            cap *= 2;
        }
        times[msgs++] = (uint64_t)llround(t * 1e9);
        if (sp->burst && ++in_burst == (uint64_t)sp->burst_size) {
            in_burst = 0;
            burst_no++;
        }
        if (!sp->poisson && !sp->burst)
            t += 1.0 / sp->rate;
    }
    if (!times)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "arrival times");
    *out = times;
    *n = msgs;
    return CUIPC_OK;
}

/* Arrivals first (they size the arrays exactly), then per message the hold times and each
 * tensor's bytes: the order the samples are drawn in is part of what a seed means. */
static cuipc_status generate(const synth_spec *sp, const uint64_t *seed, cuipc_plan_workload *w) {
    w->consumers = (uint32_t)sp->consumers;
    rng r = {seed ? *seed : (uint64_t)sp->seed};
    w->synthetic = true;
    w->seed = r.s;
    uint64_t *times = NULL, msgs = 0;
    uint32_t k = (uint32_t)sp->per_msg;
    cuipc_status s = arrival_times(sp, &r, &times, &msgs);
    if (s == CUIPC_OK)
        s = alloc_requests(w, msgs * k);
    if (s == CUIPC_OK) {
        w->messages = msgs;
        w->n = msgs * k;
        for (uint64_t m = 0; m < msgs; m++) {
            /* The consumer holds the whole message: every tensor of it shares the hold times. */
            uint64_t *h0 = &w->hold_ns[m * k * w->consumers];
            for (uint32_t ci = 0; ci < w->consumers; ci++)
                h0[ci] = (uint64_t)llround(dist_sample(&sp->hold, &r) * 1e3);
            for (uint32_t j = 0; j < k; j++) {
                uint64_t i = m * k + j;
                w->req[i].arrival_ns = times[m];
                w->req[i].bytes = (uint64_t)llround(dist_sample(&sp->bytes, &r));
                if (w->req[i].bytes == 0)
                    w->req[i].bytes = 1;
                memcpy(&w->hold_ns[i * w->consumers], h0, w->consumers * sizeof *h0);
            }
        }
    }
    free(times);
    return s;
}

/* ---- traces ------------------------------------------------------------------------------ */

/* A trace's rows as they are read: room for cap rows, each with CUIPC_MAX_CONSUMERS holds. */
typedef struct trace_rows {
    const char *path;
    cuipc_plan_request *req;
    uint64_t *holds;
    size_t n, cap;
    uint32_t consumers; /* 0 until the first row (or the workload) says */
} trace_rows;

static cuipc_status rows_reserve(trace_rows *t) {
    if (t->n < t->cap)
        return CUIPC_OK;
    size_t cap = t->cap ? 2 * t->cap : 1024;
    cuipc_plan_request *req = realloc(t->req, cap * sizeof *req);
    if (req)
        t->req = req;
    uint64_t *holds = req ? realloc(t->holds, cap * CUIPC_MAX_CONSUMERS * sizeof *holds) : NULL;
    if (!holds)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "trace rows");
    t->holds = holds;
    t->cap = cap;
    return CUIPC_OK;
}

/* The hold times "hold_us[;hold_us...]" at p, one per consumer, into row t->n. */
static cuipc_status parse_holds(trace_rows *t, long lineno, const char *line, const char *p,
                                uint32_t *nh) {
    uint64_t *holds = &t->holds[t->n * CUIPC_MAX_CONSUMERS];
    *nh = 0;
    for (;;) {
        char *end;
        errno = 0;
        double hold = strtod(p, &end);
        if (end == p || errno || !(hold >= 0) || (*end && *end != ';'))
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                              "%s:%ld:%ld: expected hold_us (a number >= 0), ';' between "
                              "consumers",
                              t->path, lineno, (long)(p - line) + 1);
        if (*nh == CUIPC_MAX_CONSUMERS)
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s:%ld: more than %d hold times", t->path,
                              lineno, CUIPC_MAX_CONSUMERS);
        holds[(*nh)++] = (uint64_t)llround(hold * 1e3);
        if (!*end)
            return CUIPC_OK;
        p = end + 1;
    }
}

/* A data row "arrival_us,bytes,hold_us[;hold_us...]" starting at p, appended to t. */
static cuipc_status parse_row(trace_rows *t, long lineno, const char *line, const char *p) {
    CUIPC_TRY(rows_reserve(t));
    char *end;
    errno = 0;
    double arrival = strtod(p, &end);
    if (end == p || *end != ',' || errno || !(arrival >= 0))
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "%s:%ld:%ld: expected arrival_us (a number >= 0) then ','", t->path,
                          lineno, (long)(p - line) + 1);
    p = end + 1;
    errno = 0;
    unsigned long long bytes = strtoull(p, &end, 10);
    if (end == p || *end != ',' || errno || bytes == 0 || *p == '-')
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "%s:%ld:%ld: expected bytes (an integer > 0) then ','", t->path, lineno,
                          (long)(p - line) + 1);
    uint32_t nh;
    CUIPC_TRY(parse_holds(t, lineno, line, end + 1, &nh));
    if (!t->consumers)
        t->consumers = nh;
    if (nh != t->consumers)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "%s:%ld: %u hold times, expected %u (one per consumer)", t->path, lineno,
                          nh, t->consumers);
    uint64_t at = (uint64_t)llround(arrival * 1e3);
    if (t->n && at < t->req[t->n - 1].arrival_ns)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "%s:%ld: arrival %.3f us is before the previous row's %.3f us "
                          "(rows must be in arrival order)",
                          t->path, lineno, arrival, (double)t->req[t->n - 1].arrival_ns / 1e3);
    t->req[t->n].arrival_ns = at;
    t->req[t->n].bytes = bytes;
    t->n++;
    if (t->n > MAX_REQUESTS)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s: more than %u rows", t->path, MAX_REQUESTS);
    return CUIPC_OK;
}

/* Every line of f: data rows into t; blank lines, '#' comments and the header are skipped. */
static cuipc_status read_rows(FILE *f, trace_rows *t) {
    char line[4096];
    long lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n')
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s:%ld: line longer than %zu characters",
                              t->path, lineno, sizeof line - 2);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = 0;
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#' || strncmp(p, "arrival_us", 10) == 0)
            continue;
        CUIPC_TRY(parse_row(t, lineno, line, p));
    }
    return ferror(f) ? CUIPC_FAIL_ERRNO("reading trace %s", t->path) : CUIPC_OK;
}

/* A trace file: one row per tensor, one hold per consumer (consumers_hint: the workload's
 * count, 0: the first row's). */
static cuipc_status parse_trace(const char *trace_path, cuipc_plan_workload *w,
                                double consumers_hint) {
    /* Lines are read as they come, so no size bound; only regular files (a FIFO would block). */
    FILE *f = cuipc_h_open_regular(trace_path, "r", UINT64_MAX);
    if (!f)
        return CUIPC_FAIL_ERRNO("%s: trace %s cannot be opened", w->source, trace_path);
    trace_rows t = {.path = trace_path,
                    .consumers = consumers_hint > 0 ? (uint32_t)consumers_hint : 0};
    cuipc_status s = read_rows(f, &t);
    fclose(f);
    if (s == CUIPC_OK && t.n == 0)
        s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s: trace %s has no rows", w->source, trace_path);
    if (s == CUIPC_OK) {
        w->consumers = t.consumers;
        s = alloc_requests(w, t.n);
    }
    if (s == CUIPC_OK) {
        w->n = w->messages = t.n;
        memcpy(w->req, t.req, t.n * sizeof *t.req);
        for (size_t i = 0; i < t.n; i++)
            memcpy(&w->hold_ns[i * t.consumers], &t.holds[i * CUIPC_MAX_CONSUMERS],
                   t.consumers * sizeof *t.holds);
    }
    free(t.req);
    free(t.holds);
    return s;
}

/* {"trace": FILE, ...}: the trace path, relative to base_dir unless absolute. */
static bool read_trace_spec(cuipc_jctx *j, const json_t *root, const char *base_dir, char *path,
                            size_t cap, double *consumers) {
    if (!cuipc_jcheck_object(
            j, root,
            CUIPC_JKEYS("name", "description", "trace", "consumers", "copy_gb_per_s", "fill_us")))
        return false;
    json_t *t = json_object_get(root, "trace");
    if (!json_is_string(t) || !*json_string_value(t)) {
        cuipc_jpush_key(j, "trace");
        return cuipc_jfail(j, "expected a file name (CSV: arrival_us,bytes,hold_us[;hold_us])");
    }
    if (!cuipc_jget_double(j, root, "consumers", false, 1, CUIPC_MAX_CONSUMERS, consumers))
        return false;
    const char *name = json_string_value(t);
    if (name[0] == '/' || !base_dir || !*base_dir)
        snprintf(path, cap, "%s", name);
    else
        snprintf(path, cap, "%s/%s", base_dir, name);
    return true;
}

/* What both kinds of workload may give: the copy rate and the fill time. */
static bool read_common(cuipc_jctx *j, const json_t *root, cuipc_plan_workload *w) {
    double gbps = 0, fill_us = 0;
    if (!cuipc_jget_double(j, root, "copy_gb_per_s", false, 1e-6, 1e6, &gbps) ||
        !cuipc_jget_double(j, root, "fill_us", false, 0, 3.6e9, &fill_us))
        return false;
    w->copy_bytes_per_s = gbps * 1e9;
    w->fill_ns = (uint64_t)llround(fill_us * 1e3);
    return true;
}

/* A JSON error found while reading (its message already set) as the planner reports it. */
static cuipc_status invalid(void) {
    char msg[512]; /* a copy: the message is rewritten from it */
    snprintf(msg, sizeof msg, "%s", cuipc_last_error());
    return cuipc_error_set(CUIPC_ERR_INVALID_ARG, "workload", "%s", msg);
}

static cuipc_status parse_root(cuipc_jctx *j, const json_t *root, const char *base_dir,
                               const uint64_t *seed, cuipc_plan_workload *w) {
    if (!json_is_object(root)) {
        cuipc_jfail(j, "expected an object, got %s", cuipc_json_type_name(root));
        return invalid();
    }
    cuipc_status s;
    if (json_object_get(root, "trace")) {
        char path[1024];
        double consumers = 0;
        s = read_trace_spec(j, root, base_dir, path, sizeof path, &consumers)
                ? parse_trace(path, w, consumers)
                : invalid();
    } else {
        synth_spec sp;
        s = read_synthetic(j, root, &sp) ? generate(&sp, seed, w) : invalid();
        dist_free(&sp.bytes);
        dist_free(&sp.hold);
    }
    if (s == CUIPC_OK && !read_common(j, root, w))
        s = invalid();
    return s;
}

cuipc_status cuipc_plan_workload_parse(const char *text, const char *name, const char *base_dir,
                                       cuipc_plan_workload *w) {
    return cuipc_plan_workload_parse_seeded(text, name, base_dir, NULL, w);
}

cuipc_status cuipc_plan_workload_parse_seeded(const char *text, const char *name,
                                              const char *base_dir, const uint64_t *seed,
                                              cuipc_plan_workload *w) {
    memset(w, 0, sizeof *w);
    snprintf(w->source, sizeof w->source, "%s", name);
    json_error_t err;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s:%d:%d: %s", name, err.line, err.column,
                          err.text);
    cuipc_jctx j = {.file = name, .text = text};
    cuipc_status s = parse_root(&j, root, base_dir, seed, w);
    json_decref(root);
    if (s != CUIPC_OK)
        cuipc_plan_workload_free(w);
    return s;
}

cuipc_status cuipc_plan_workload_load(const char *path, cuipc_plan_workload *w) {
    return cuipc_plan_workload_load_seeded(path, NULL, w);
}

cuipc_status cuipc_plan_workload_load_seeded(const char *path, const uint64_t *seed,
                                             cuipc_plan_workload *w) {
    memset(w, 0, sizeof *w);
    char *text = cuipc_h_read_file_max(path, WORKLOAD_MAX_BYTES, NULL);
    if (!text && errno == EFBIG)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "workload %s is larger than 16 MiB", path);
    if (!text)
        return CUIPC_FAIL_ERRNO("workload %s cannot be opened", path);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    cuipc_status s = cuipc_plan_workload_parse_seeded(text, path, dir, seed, w);
    free(text);
    return s;
}

void cuipc_plan_workload_free(cuipc_plan_workload *w) {
    free(w->req);
    free(w->hold_ns);
    w->req = NULL;
    w->hold_ns = NULL;
    w->n = 0;
}
