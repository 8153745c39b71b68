/* Planner workloads: strict JSON (unknown keys rejected, errors name line:column or the key
 * path) describing either a CSV trace or synthetic distributions, expanded into one request per
 * tensor with per-consumer hold times. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuipc/error.h"
#include "plan.h"
#include "read_file.h"
#include "splitmix.h"

#define WORKLOAD_MAX_BYTES (16ull << 20)   /* a workload JSON; traces are separate files */
#define MAX_REQUESTS (20u * 1000u * 1000u) /* keeps a replay within memory and seconds */

#define BAD(ctx, path, ...) plan_bad((ctx), (path), __VA_ARGS__)

typedef struct parse_ctx {
    const char *name;
    const uint64_t *seed; /* replaces the file's seed when not NULL */
} parse_ctx;

static cuipc_status plan_bad(const parse_ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static cuipc_status plan_bad(const parse_ctx *c, const char *path, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cuipc_error_set(CUIPC_ERR_INVALID_ARG, "workload", "%s: %s: %s", c->name, path, msg);
}

static void join_path(char *out, size_t cap, const char *parent, const char *key) {
    snprintf(out, cap, "%s%s%s", parent, *parent && key[0] != '[' ? "." : "", key);
}

/* Reject members that are not in allowed (NULL-terminated). */
static cuipc_status check_keys(const parse_ctx *c, json_t *obj, const char *path,
                               const char *const *allowed) {
    if (!json_is_object(obj))
        return BAD(c, *path ? path : "(top level)", "expected an object");
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok) {
            char p[256];
            join_path(p, sizeof p, path, key);
            char list[256] = "";
            for (const char *const *a = allowed; *a; a++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                         a == allowed ? "" : ", ", *a);
            return BAD(c, p, "unknown key (allowed here: %s)", list);
        }
    }
    return CUIPC_OK;
}

/* A number, or for byte quantities a string such as "4MiB" / "512KiB" / "1GiB". */
static cuipc_status get_number(const parse_ctx *c, json_t *obj, const char *path, const char *key,
                               bool required, bool byte_units, double lo, double hi, double *out) {
    char p[256];
    join_path(p, sizeof p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            return BAD(c, p, "missing");
        return CUIPC_OK;
    }
    double x;
    if (json_is_number(v)) {
        x = json_number_value(v);
    } else if (byte_units && json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        x = strtod(s, &end);
        static const struct {
            const char *suffix;
            double mult;
        } units[] = {{"", 1}, {"B", 1}, {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}};
        bool ok = false;
        for (size_t i = 0; i < sizeof units / sizeof *units && !ok; i++) {
            if (strcmp(end, units[i].suffix) == 0) {
                x *= units[i].mult;
                ok = true;
            }
        }
        if (end == s || errno || !ok)
            return BAD(c, p, "\"%s\" is not a byte size (a number with B, KiB, MiB or GiB)", s);
    } else {
        return BAD(c, p,
                   byte_units ? "expected a number or a size string like \"4MiB\""
                              : "expected a number");
    }
    if (!(x >= lo && x <= hi))
        return BAD(c, p, "%g is not in [%g, %g]", x, lo, hi);
    *out = x;
    return CUIPC_OK;
}

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

static cuipc_status parse_dist(const parse_ctx *c, json_t *obj, const char *path, bool bytes,
                               double lo, double hi, dist *d) {
    memset(d, 0, sizeof *d);
    d->min = lo;
    d->max = hi;
    if (!json_is_object(obj))
        return BAD(c, path, "expected an object with \"kind\"");
    json_t *kind = json_object_get(obj, "kind");
    char p[256];
    join_path(p, sizeof p, path, "kind");
    if (!json_is_string(kind))
        return BAD(c, p,
                   "missing or not a string (constant, uniform, lognormal, exponential, "
                   "choice)");
    const char *k = json_string_value(kind);
    if (strcmp(k, "constant") == 0) {
        static const char *const keys[] = {"kind", "value", NULL};
        d->kind = D_CONSTANT;
        CUIPC_TRY(check_keys(c, obj, path, keys));
        return get_number(c, obj, path, "value", true, bytes, lo, hi, &d->a);
    }
    if (strcmp(k, "uniform") == 0) {
        static const char *const keys[] = {"kind", "min", "max", NULL};
        d->kind = D_UNIFORM;
        CUIPC_TRY(check_keys(c, obj, path, keys));
        CUIPC_TRY(get_number(c, obj, path, "min", true, bytes, lo, hi, &d->a));
        CUIPC_TRY(get_number(c, obj, path, "max", true, bytes, d->a, hi, &d->b));
        return CUIPC_OK;
    }
    if (strcmp(k, "lognormal") == 0 || strcmp(k, "exponential") == 0) {
        bool logn = k[0] == 'l';
        static const char *const lkeys[] = {"kind", "median", "sigma", "min", "max", NULL};
        static const char *const ekeys[] = {"kind", "mean", "min", "max", NULL};
        d->kind = logn ? D_LOGNORMAL : D_EXPONENTIAL;
        CUIPC_TRY(check_keys(c, obj, path, logn ? lkeys : ekeys));
        CUIPC_TRY(get_number(c, obj, path, logn ? "median" : "mean", true, bytes, lo, hi, &d->a));
        if (logn)
            CUIPC_TRY(get_number(c, obj, path, "sigma", true, false, 0, 10, &d->b));
        CUIPC_TRY(get_number(c, obj, path, "min", false, bytes, lo, hi, &d->min));
        CUIPC_TRY(get_number(c, obj, path, "max", false, bytes, d->min, hi, &d->max));
        return CUIPC_OK;
    }
    if (strcmp(k, "choice") == 0) {
        static const char *const keys[] = {"kind", "values", "weights", NULL};
        d->kind = D_CHOICE;
        CUIPC_TRY(check_keys(c, obj, path, keys));
        json_t *vals = json_object_get(obj, "values");
        json_t *w = json_object_get(obj, "weights");
        join_path(p, sizeof p, path, "values");
        if (!json_is_array(vals) || json_array_size(vals) == 0)
            return BAD(c, p, "expected a non-empty array");
        d->n = json_array_size(vals);
        char wp[256];
        join_path(wp, sizeof wp, path, "weights");
        if (w && (!json_is_array(w) || json_array_size(w) != d->n))
            return BAD(c, wp, "expected an array of %zu weights (one per value)", d->n);
        d->values = calloc(d->n, sizeof *d->values);
        d->cumulative = calloc(d->n, sizeof *d->cumulative);
        if (!d->values || !d->cumulative)
            return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "%zu choices", d->n);
        double total = 0;
        for (size_t i = 0; i < d->n; i++) {
            /* Wrap each element so get_number can name it values[i]. */
            char ip[256], key[32];
            snprintf(key, sizeof key, "[%zu]", i);
            snprintf(ip, sizeof ip, "%s", p);
            json_t *one = json_pack("{sO}", key, json_array_get(vals, i));
            cuipc_status s = get_number(c, one, ip, key, true, bytes, lo, hi, &d->values[i]);
            if (s == CUIPC_OK && w) {
                json_decref(one);
                one = json_pack("{sO}", key, json_array_get(w, i));
                s = get_number(c, one, wp, key, true, false, 0, 1e12, &(double){0});
                if (s == CUIPC_OK)
                    total += json_number_value(json_array_get(w, i));
            } else if (s == CUIPC_OK) {
                total += 1;
            }
            json_decref(one);
            if (s != CUIPC_OK)
                return s;
            d->cumulative[i] = total;
        }
        if (total <= 0)
            return BAD(c, wp, "weights sum to 0");
        return CUIPC_OK;
    }
    return BAD(c, p, "\"%s\" is not constant, uniform, lognormal, exponential or choice", k);
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

static cuipc_status parse_synthetic(const parse_ctx *c, json_t *root, cuipc_plan_workload *w) {
    static const char *const keys[] = {
        "name",  "description", "consumers",           "duration_s",    "seed",    "arrivals",
        "bytes", "hold_us",     "tensors_per_message", "copy_gb_per_s", "fill_us", NULL};
    static const char *const arrival_keys[] = {"kind", "rate_per_s", NULL};
    static const char *const burst_keys[] = {"kind", "burst_size", "period_s", "spacing_us", NULL};
    CUIPC_TRY(check_keys(c, root, "", keys));
    double consumers = 0, duration = 0, seed = 1, per_msg = 1, rate = 0;
    CUIPC_TRY(
        get_number(c, root, "", "consumers", true, false, 1, CUIPC_MAX_CONSUMERS, &consumers));
    CUIPC_TRY(get_number(c, root, "", "duration_s", true, false, 1e-6, 1e6, &duration));
    CUIPC_TRY(get_number(c, root, "", "seed", false, false, 0, 9007199254740992.0, &seed));
    CUIPC_TRY(get_number(c, root, "", "tensors_per_message", false, false, 1, 1024, &per_msg));
    if (consumers != floor(consumers) || per_msg != floor(per_msg))
        return BAD(c, consumers != floor(consumers) ? "consumers" : "tensors_per_message",
                   "must be an integer");
    json_t *arr = json_object_get(root, "arrivals");
    if (!arr)
        return BAD(c, "arrivals", "missing");
    if (!json_is_object(arr))
        return BAD(c, "arrivals", "expected an object");
    json_t *ak = json_object_get(arr, "kind");
    const char *kind = json_is_string(ak) ? json_string_value(ak) : "";
    bool poisson = strcmp(kind, "poisson") == 0, burst = strcmp(kind, "burst") == 0;
    if (!poisson && !burst && strcmp(kind, "constant") != 0)
        return BAD(c, "arrivals.kind", "expected \"poisson\", \"constant\" or \"burst\"");
    CUIPC_TRY(check_keys(c, arr, "arrivals", burst ? burst_keys : arrival_keys));
    /* burst: burst_size messages every period_s, spacing_us apart within a burst */
    double burst_size = 1, period = 0, spacing_us = 0;
    if (burst) {
        CUIPC_TRY(get_number(c, arr, "arrivals", "burst_size", true, false, 1, 1e6, &burst_size));
        CUIPC_TRY(get_number(c, arr, "arrivals", "period_s", true, false, 1e-6, 1e6, &period));
        CUIPC_TRY(get_number(c, arr, "arrivals", "spacing_us", false, false, 0, 1e12, &spacing_us));
        if (burst_size != floor(burst_size))
            return BAD(c, "arrivals.burst_size", "must be an integer");
        if ((burst_size - 1) * spacing_us >= period * 1e6)
            return BAD(c, "arrivals.spacing_us",
                       "%g messages %g us apart do not end before the next burst (period_s %g)",
                       burst_size, spacing_us, period);
        rate = burst_size / period;
    } else {
        CUIPC_TRY(get_number(c, arr, "arrivals", "rate_per_s", true, false, 1e-6, 1e7, &rate));
    }
    if (!json_object_get(root, "bytes"))
        return BAD(c, "bytes", "missing");
    if (!json_object_get(root, "hold_us"))
        return BAD(c, "hold_us", "missing");
    double expected = duration * rate * per_msg;
    if (expected > MAX_REQUESTS)
        return BAD(c, "arrivals.rate_per_s",
                   "%g messages/s for %g s x %g tensors is %.0f "
                   "tensors, over the limit of %u",
                   rate, duration, per_msg, expected, MAX_REQUESTS);
    dist bytes, hold;
    /* parse_dist zeroes its output first, so freeing both after a failure is safe. */
    cuipc_status s =
        parse_dist(c, json_object_get(root, "bytes"), "bytes", true, 1, 1099511627776.0, &bytes);
    memset(&hold, 0, sizeof hold);
    if (s == CUIPC_OK)
        s = parse_dist(c, json_object_get(root, "hold_us"), "hold_us", false, 0, 3.6e9, &hold);
    if (s != CUIPC_OK) {
        dist_free(&bytes);
        dist_free(&hold);
        return s;
    }
    w->consumers = (uint32_t)consumers;
    /* Generate arrival times first to size the arrays exactly. */
    rng r = {c->seed ? *c->seed : (uint64_t)seed};
    w->synthetic = true;
    w->seed = r.s;
    uint64_t cap = (uint64_t)(expected / per_msg * 1.2) + 16, msgs = 0;
    uint64_t *times = malloc(cap * sizeof *times);
    double t = 0;
    uint64_t in_burst = 0, burst_no = 0;
    while (times) {
        if (poisson)
            t += -log(rng_unit(&r)) / rate;
        if (burst)
            t = (double)burst_no * period + (double)in_burst * spacing_us * 1e-6;
        if (t >= duration)
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
        if (burst && ++in_burst == (uint64_t)burst_size) {
            in_burst = 0;
            burst_no++;
        }
        if (!poisson && !burst)
            t += 1.0 / rate;
    }
    if (!times)
        s = CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "arrival times");
    uint32_t k = (uint32_t)per_msg;
    if (s == CUIPC_OK)
        s = alloc_requests(w, msgs * k);
    if (s == CUIPC_OK) {
        w->messages = msgs;
        w->n = msgs * k;
        for (uint64_t m = 0; m < msgs; m++) {
            /* The consumer holds the whole message: every tensor of it shares the hold times. */
            uint64_t *h0 = &w->hold_ns[m * k * w->consumers];
            for (uint32_t ci = 0; ci < w->consumers; ci++)
                h0[ci] = (uint64_t)llround(dist_sample(&hold, &r) * 1e3);
            for (uint32_t j = 0; j < k; j++) {
                uint64_t i = m * k + j;
                w->req[i].arrival_ns = times[m];
                w->req[i].bytes = (uint64_t)llround(dist_sample(&bytes, &r));
                if (w->req[i].bytes == 0)
                    w->req[i].bytes = 1;
                memcpy(&w->hold_ns[i * w->consumers], h0, w->consumers * sizeof *h0);
            }
        }
    }
    free(times);
    dist_free(&bytes);
    dist_free(&hold);
    return s;
}

/* A trace row: arrival_us,bytes,hold_us[;hold_us...] (one hold per consumer). */
static cuipc_status parse_trace(const char *trace_path, cuipc_plan_workload *w,
                                double consumers_hint) {
    /* Lines are read as they come, so no size bound; only regular files (a FIFO would block). */
    FILE *f = cuipc_h_open_regular(trace_path, "r", UINT64_MAX);
    if (!f)
        return CUIPC_FAIL_ERRNO("%s: trace %s cannot be opened", w->source, trace_path);
    size_t cap = 1024, n = 0, hcap = 1024 * 8;
    cuipc_plan_request *req = malloc(cap * sizeof *req);
    uint64_t *holds = malloc(hcap * sizeof *holds);
    uint32_t consumers = consumers_hint > 0 ? (uint32_t)consumers_hint : 0;
    cuipc_status s = CUIPC_OK;
    char line[4096];
    long lineno = 0;
    while (s == CUIPC_OK && req && holds && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s:%ld: line longer than %zu characters",
                           trace_path, lineno, sizeof line - 2);
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = 0;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#' || strncmp(p, "arrival_us", 10) == 0)
            continue;
        char *end;
        errno = 0;
        double arrival = strtod(p, &end);
        if (end == p || *end != ',' || errno || !(arrival >= 0)) {
            s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                           "%s:%ld:%ld: expected arrival_us (a number >= 0) then ','", trace_path,
                           lineno, (long)(p - line) + 1);
            break;
        }
        p = end + 1;
        errno = 0;
        unsigned long long bytes = strtoull(p, &end, 10);
        if (end == p || *end != ',' || errno || bytes == 0 || *p == '-') {
            s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                           "%s:%ld:%ld: expected bytes (an integer > 0) then ','", trace_path,
                           lineno, (long)(p - line) + 1);
            break;
        }
        p = end + 1;
        uint32_t nh = 0;
        for (;;) {
            errno = 0;
            double hold = strtod(p, &end);
            if (end == p || errno || !(hold >= 0) || (*end && *end != ';')) {
                s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                               "%s:%ld:%ld: expected hold_us (a number >= 0), ';' between "
                               "consumers",
                               trace_path, lineno, (long)(p - line) + 1);
                break;
            }
            if (nh == CUIPC_MAX_CONSUMERS) {
                s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s:%ld: more than %d hold times", trace_path,
                               lineno, CUIPC_MAX_CONSUMERS);
                break;
            }
            if ((n + 1) * CUIPC_MAX_CONSUMERS > hcap) {
                uint64_t *more = realloc(holds, 2 * hcap * sizeof *holds);
                if (!more) {
                    s = CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "trace hold times");
                    break;
                }
                holds = more;
                hcap *= 2;
            }
            holds[n * CUIPC_MAX_CONSUMERS + nh++] = (uint64_t)llround(hold * 1e3);
            if (!*end)
                break;
            p = end + 1;
        }
        if (s != CUIPC_OK)
            break;
        if (!consumers)
            consumers = nh;
        if (nh != consumers) {
            s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                           "%s:%ld: %u hold times, expected %u (one per "
                           "consumer)",
                           trace_path, lineno, nh, consumers);
            break;
        }
        uint64_t at = (uint64_t)llround(arrival * 1e3);
        if (n && at < req[n - 1].arrival_ns) {
            s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                           "%s:%ld: arrival %.3f us is before the previous row's %.3f us "
                           "(rows must be in arrival order)",
                           trace_path, lineno, arrival, (double)req[n - 1].arrival_ns / 1e3);
            break;
        }
        if (n == cap) {
            cuipc_plan_request *more = realloc(req, 2 * cap * sizeof *req);
            if (!more) {
                s = CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "trace rows");
                break;
            }
            req = more;
            cap *= 2;
        }
        req[n].arrival_ns = at;
        req[n].bytes = bytes;
        n++;
        if (n > MAX_REQUESTS)
            s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s: more than %u rows", trace_path,
                           MAX_REQUESTS);
    }
    if (s == CUIPC_OK && (!req || !holds))
        s = CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "trace buffers");
    if (s == CUIPC_OK && ferror(f))
        s = CUIPC_FAIL_ERRNO("%s: reading trace %s", w->source, trace_path);
    if (s == CUIPC_OK && n == 0)
        s = CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s: trace %s has no rows", w->source, trace_path);
    fclose(f);
    if (s == CUIPC_OK) {
        w->consumers = consumers;
        s = alloc_requests(w, n);
    }
    if (s == CUIPC_OK) {
        w->n = w->messages = n;
        memcpy(w->req, req, n * sizeof *req);
        for (size_t i = 0; i < n; i++)
            memcpy(&w->hold_ns[i * consumers], &holds[i * CUIPC_MAX_CONSUMERS],
                   consumers * sizeof *holds);
    }
    free(req);
    free(holds);
    return s;
}

static cuipc_status parse_trace_spec(const parse_ctx *c, json_t *root, const char *base_dir,
                                     cuipc_plan_workload *w) {
    static const char *const keys[] = {"name",          "description", "trace", "consumers",
                                       "copy_gb_per_s", "fill_us",     NULL};
    CUIPC_TRY(check_keys(c, root, "", keys));
    json_t *t = json_object_get(root, "trace");
    if (!json_is_string(t) || !*json_string_value(t))
        return BAD(c, "trace", "expected a file name (CSV: arrival_us,bytes,hold_us[;hold_us])");
    double consumers = 0;
    CUIPC_TRY(
        get_number(c, root, "", "consumers", false, false, 1, CUIPC_MAX_CONSUMERS, &consumers));
    const char *name = json_string_value(t);
    char path[1024];
    if (name[0] == '/' || !base_dir || !*base_dir)
        snprintf(path, sizeof path, "%s", name);
    else
        snprintf(path, sizeof path, "%s/%s", base_dir, name);
    return parse_trace(path, w, consumers);
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
    parse_ctx c = {name, seed};
    json_error_t err;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%s:%d:%d: %s", name, err.line, err.column,
                          err.text);
    cuipc_status s;
    if (!json_is_object(root))
        s = BAD(&c, "(top level)", "expected an object");
    else if (json_object_get(root, "trace"))
        s = parse_trace_spec(&c, root, base_dir, w);
    else
        s = parse_synthetic(&c, root, w);
    double gbps = 0;
    if (s == CUIPC_OK)
        s = get_number(&c, root, "", "copy_gb_per_s", false, false, 1e-6, 1e6, &gbps);
    w->copy_bytes_per_s = gbps * 1e9;
    double fill_us = 0;
    if (s == CUIPC_OK)
        s = get_number(&c, root, "", "fill_us", false, false, 0, 3.6e9, &fill_us);
    w->fill_ns = (uint64_t)llround(fill_us * 1e3);
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
