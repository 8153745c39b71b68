/* Strict scenario parser: every object has a fixed key set, every value a type and a range, and
 * every error names the file, the line:column of the offending value and its key path. */
#include "scenario.h"

#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuipc/error.h"
#include "fault.h"
#include "json_get.h"
#include "splitmix.h"
#include "util.h"

/* The names a scenario gives modes and dtypes are core's (cuipc_mode_name, cuipc_dtype_name). */
#define MODE_COUNT (CUIPC_MODE_CUDA_IPC_POOL + 1)

/* ------------------------------------------------------------------ sections */

/* A file the scenario names (what: "trace", "workload"): absolute, or relative to the
 * scenario file's directory. */
static bool resolve_beside(cuipc_jctx *c, const char *what, const char *file, char *out,
                           size_t cap) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", c->file);
    int len = file[0] == '/' ? snprintf(out, cap, "%s", file)
                             : snprintf(out, cap, "%s/%s", dirname(dir), file);
    if (len < 0 || (size_t)len >= cap)
        return cuipc_jfail(c, "%s file path is too long", what);
    return true;
}

static bool load_trace(cuipc_jctx *c, cuipc_scenario *s, const char *file) {
    char resolved[sizeof s->tensors.trace_file];
    if (!resolve_beside(c, "trace", file, resolved, sizeof resolved))
        return false;
    char *text = cuipc_h_read_file(resolved, NULL);
    if (text == NULL)
        return cuipc_jfail(c, "cannot read trace file %s: %s", resolved, strerror(errno));
    size_t cap = 64, n = 0;
    uint64_t *sizes = malloc(cap * sizeof *sizes);
    bool ok = sizes != NULL;
    int lineno = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); ok && line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        while (*line == ' ' || *line == '\t')
            line++;
        char *end = line + strcspn(line, " \t\r#");
        if (end == line)
            continue; /* blank or comment */
        *end = '\0';
        uint64_t v;
        if (!cuipc_h_parse_size(line, &v) || v == 0) {
            ok = cuipc_jfail(c, "trace %s:%d: '%s' is not a positive size", resolved, lineno, line);
            break;
        }
        if (n == cap) {
            uint64_t *bigger = n < (1u << 20) ? realloc(sizes, 2 * cap * sizeof *sizes) : NULL;
            if (bigger == NULL) {
                ok = cuipc_jfail(c, "trace %s: more than %zu sizes", resolved, n);
                break;
            }
            sizes = bigger;
            cap *= 2;
        }
        sizes[n++] = v;
    }
    free(text);
    if (ok && n == 0)
        ok = cuipc_jfail(c, "trace %s holds no sizes", resolved);
    if (!ok) {
        free(sizes);
        return false;
    }
    s->tensors.sizes = sizes;
    s->tensors.n_sizes = n;
    memcpy(s->tensors.trace_file, resolved, sizeof resolved);
    return true;
}

/* "workload": a planner workload gives the tensor sizes, arrival times, consumer count and hold
 * times, so the keys that would say the same are refused rather than silently overridden. */
static bool load_workload(cuipc_jctx *c, const json_t *root, cuipc_scenario *s) {
    static const struct {
        const char *section, *key;
    } replaced[] = {{"tensors", "sizes"},     {"tensors", "per_message"},
                    {"tensors", "dtypes"},    {"consumers", "count"},
                    {"consumers", "hold_us"}, {"run", "iterations"},
                    {"run", "duration_s"},    {"run", "loop"},
                    {"run", "rate_hz"}};
    const json_t *v = json_object_get(root, "workload");
    if (v == NULL)
        return true;
    cuipc_jpush_key(c, "workload");
    if (!json_is_string(v) || json_string_length(v) == 0)
        return cuipc_jfail(c, "expected a planner workload file name, got %s",
                           cuipc_json_type_name(v));
    char resolved[sizeof s->workload.file];
    if (!resolve_beside(c, "workload", json_string_value(v), resolved, sizeof resolved))
        return false;
    cuipc_plan_workload *w = &s->workload.w;
    if (cuipc_plan_workload_load(resolved, w) != CUIPC_OK)
        return cuipc_jfail(c, "%s", cuipc_last_error());
    memcpy(s->workload.file, resolved, sizeof resolved); /* from here on freed with s */
    if (w->n == 0)
        return cuipc_jfail(c, "workload %s holds no requests", resolved);
    if (w->consumers < 1 || w->consumers > CUIPC_MAX_CONSUMERS)
        return cuipc_jfail(c, "workload %s has %u consumers (1..%d)", resolved, w->consumers,
                           CUIPC_MAX_CONSUMERS);
    cuipc_jpop(c);
    for (size_t i = 0; i < sizeof replaced / sizeof *replaced; i++) {
        const json_t *section = json_object_get(root, replaced[i].section);
        if (json_is_object(section) && json_object_get(section, replaced[i].key) != NULL) {
            cuipc_jpush_key(c, replaced[i].section);
            cuipc_jpush_key(c, replaced[i].key);
            return cuipc_jfail(c, "conflicts with $.workload, which gives it: remove it");
        }
    }
    double span_s = (double)w->req[w->n - 1].arrival_ns / 1e9;
    s->consumers.count = w->consumers;
    s->run.iterations = w->n;
    s->run.open_loop = true;
    s->run.rate_hz = (double)w->n / (span_s > 1e-3 ? span_s : 1e-3); /* informative only */
    return true;
}

/* tensors.sizes.list: [size, ...] */
static bool sizes_list(cuipc_jctx *c, const json_t *v, cuipc_scenario *s) {
    if (!json_is_array(v) || json_array_size(v) == 0)
        return cuipc_jfail(c, "expected a non-empty array of sizes, got %s",
                           cuipc_json_type_name(v));
    s->tensors.n_sizes = json_array_size(v);
    s->tensors.sizes = calloc(s->tensors.n_sizes, sizeof(uint64_t));
    if (s->tensors.sizes == NULL)
        return cuipc_jfail(c, "out of memory");
    bool bad = false;
    for (size_t i = 0; i < s->tensors.n_sizes && !bad; i++) {
        cuipc_jpush_index(c, (long)i);
        bad = !cuipc_jsize_value(c, json_array_get(v, i), 1, &s->tensors.sizes[i]);
        cuipc_jpop(c);
    }
    return !bad;
}

/* tensors.sizes.trace: a file of sizes */
static bool sizes_trace(cuipc_jctx *c, const json_t *v, cuipc_scenario *s) {
    return json_is_string(v)
               ? load_trace(c, s, json_string_value(v))
               : cuipc_jfail(c, "expected a file name, got %s", cuipc_json_type_name(v));
}

/* tensors.sizes.range / uniform / lognormal: an object with min and max, and its own keys */
static bool sizes_bounded(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    bool ok = cuipc_jget_size(c, o, "min", true, 1, &s->tensors.min) &&
              cuipc_jget_size(c, o, "max", true, 1, &s->tensors.max);
    if (ok && s->tensors.kind == CUIPC_SIZES_RANGE) {
        s->tensors.step = s->tensors.max - s->tensors.min;
        ok = cuipc_jget_size(c, o, "step", false, 1, &s->tensors.step);
        if (ok && s->tensors.step == 0)
            s->tensors.step = 1;
    }
    if (ok && s->tensors.kind == CUIPC_SIZES_LOGNORMAL)
        ok = cuipc_jget_size(c, o, "median", true, 1, &s->tensors.median) &&
             cuipc_jget_double(c, o, "sigma", true, 0.0, 10.0, &s->tensors.sigma);
    if (ok && s->tensors.min > s->tensors.max) {
        cuipc_jpush_key(c, "min");
        ok = cuipc_jfail(c, "min (%llu) is larger than max (%llu)",
                         (unsigned long long)s->tensors.min, (unsigned long long)s->tensors.max);
        cuipc_jpop(c);
    }
    return ok;
}

/* The ways of giving the sizes: a key each, the keys of its object (NULL: not an object) and
 * its reader. */
static const struct {
    const char *key;
    cuipc_size_kind kind;
    const char *const *keys;
    bool (*parse)(cuipc_jctx *c, const json_t *v, cuipc_scenario *s);
} size_kinds[] = {
    {"list", CUIPC_SIZES_LIST, NULL, sizes_list},
    {"trace", CUIPC_SIZES_TRACE, NULL, sizes_trace},
    {"range", CUIPC_SIZES_RANGE, CUIPC_JKEYS("min", "max", "step"), sizes_bounded},
    {"uniform", CUIPC_SIZES_UNIFORM, CUIPC_JKEYS("min", "max"), sizes_bounded},
    {"lognormal", CUIPC_SIZES_LOGNORMAL, CUIPC_JKEYS("median", "sigma", "min", "max"),
     sizes_bounded},
};

static bool parse_sizes(cuipc_jctx *c, const json_t *sizes, cuipc_scenario *s) {
    if (!cuipc_jcheck_object(c, sizes,
                             CUIPC_JKEYS("list", "range", "uniform", "lognormal", "trace")))
        return false;
    if (json_object_size(sizes) != 1)
        return cuipc_jfail(c,
                           "give exactly one of list, range, uniform, lognormal, trace (got %zu)",
                           json_object_size(sizes));
    for (size_t i = 0; i < sizeof size_kinds / sizeof size_kinds[0]; i++) {
        const json_t *v = json_object_get(sizes, size_kinds[i].key);
        if (v == NULL)
            continue;
        s->tensors.kind = size_kinds[i].kind;
        if (size_kinds[i].keys == NULL) {
            cuipc_jpush_key(c, size_kinds[i].key);
        } else {
            bool bad = false;
            v = cuipc_jenter(c, sizes, size_kinds[i].key, true, size_kinds[i].keys, &bad);
            if (bad)
                return false;
        }
        bool ok = size_kinds[i].parse(c, v, s);
        cuipc_jpop(c);
        return ok;
    }
    return cuipc_jfail(c, "no way of giving the sizes"); /* unreachable: one known key */
}

static bool parse_tensors(cuipc_jctx *c, const json_t *t, cuipc_scenario *s) {
    bool bad = false;
    if (!cuipc_scenario_replays(s)) { /* a workload gives the sizes */
        const json_t *sizes = json_object_get(t, "sizes");
        if (sizes == NULL)
            return cuipc_jmissing(c, "sizes");
        cuipc_jpush_key(c, "sizes");
        if (!parse_sizes(c, sizes, s))
            return false;
        cuipc_jpop(c);
    }
    json_t *dt = json_object_get(t, "dtypes");
    if (dt != NULL) {
        cuipc_jpush_key(c, "dtypes");
        if (!json_is_array(dt) || json_array_size(dt) == 0 ||
            json_array_size(dt) > CUIPC_SCN_MAX_DTYPES)
            return cuipc_jfail(c, "expected an array of 1 to %d dtype names", CUIPC_SCN_MAX_DTYPES);
        const char *names[CUIPC_DTYPE_COUNT_];
        for (int i = 0; i < CUIPC_DTYPE_COUNT_; i++)
            names[i] = i == 0 ? NULL : cuipc_dtype_name((cuipc_dtype)i);
        s->tensors.n_dtypes = json_array_size(dt);
        for (size_t i = 0; i < s->tensors.n_dtypes && !bad; i++) {
            cuipc_jpush_index(c, (long)i);
            bad = !cuipc_jenum_value(c, json_array_get(dt, i), names, CUIPC_DTYPE_COUNT_,
                                     &s->tensors.dtypes[i]);
            cuipc_jpop(c);
        }
        if (bad)
            return false;
        cuipc_jpop(c);
    }
    int location = s->mode == CUIPC_MODE_DEFAULT ? CUIPC_LOCATION_HOST : CUIPC_LOCATION_DEVICE;
    int source = CUIPC_SOURCE_OWN;
    return cuipc_jget_u32(c, t, "per_message", false, 1, CUIPC_SCN_MAX_PER_MESSAGE,
                          &s->tensors.per_message) &&
           cuipc_jget_enum(c, t, "location", false, CUIPC_JNAMES("host", "device"), 2, &location) &&
           (s->tensors.location = location, true) &&
           cuipc_jget_enum(c, t, "source", false, CUIPC_JNAMES("own", "pool_buffer"), 2, &source) &&
           (s->tensors.source = source, true) &&
           cuipc_jget_bool(c, t, "fresh_per_message", &s->tensors.fresh_per_message) &&
           cuipc_jget_uint(c, t, "seed", false, 0, UINT64_MAX >> 1, &s->tensors.seed);
}

static bool parse_pool(cuipc_jctx *c, const json_t *p, cuipc_scenario *s) {
    int fit = s->pool.fit, policy = s->pool.full_policy;
    uint64_t timeout_ms = (uint64_t)(s->pool.full_timeout_ns / 1000000);
    bool ok = cuipc_jget_size(c, p, "gpu_bytes", false, 0, &s->pool.gpu_bytes) &&
              cuipc_jget_size(c, p, "host_bytes", false, 0, &s->pool.host_bytes) &&
              cuipc_jget_u32(c, p, "slots", false, 1, 1u << 20, &s->pool.slots) &&
              cuipc_jget_size(c, p, "alignment", false, 1, &s->pool.alignment) &&
              cuipc_jget_enum(c, p, "fit", false, CUIPC_JNAMES("best", "first"), 2, &fit) &&
              cuipc_jget_enum(c, p, "full_policy", false, CUIPC_JNAMES("fail", "wait", "fallback"),
                              3, &policy) &&
              cuipc_jget_uint(c, p, "full_timeout_ms", false, 0, 3600000, &timeout_ms) &&
              cuipc_jget_size(c, p, "ring_bytes", false, 4096, &s->pool.ring_bytes);
    if (!ok)
        return false;
    if ((s->pool.alignment & (s->pool.alignment - 1)) != 0) {
        cuipc_jpush_key(c, "alignment");
        return cuipc_jfail(c, "%llu is not a power of two", (unsigned long long)s->pool.alignment);
    }
    s->pool.fit = (cuipc_fit)fit;
    s->pool.full_policy = (cuipc_full_policy)policy;
    s->pool.full_timeout_ns = (int64_t)timeout_ms * 1000000;
    return true;
}

/* consumers.devices: one ordinal for every consumer, or one each. */
static bool parse_consumer_devices(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    for (uint32_t i = 0; i < CUIPC_MAX_CONSUMERS; i++)
        s->consumers.devices[i] = s->producer_device;
    json_t *dev = json_object_get(o, "devices");
    if (dev == NULL)
        return true;
    cuipc_jpush_key(c, "devices");
    size_t n = json_is_array(dev) ? json_array_size(dev) : 0;
    if (n != 1 && n != s->consumers.count)
        return cuipc_jfail(c, "expected an array of 1 or %u device ordinals (one per consumer)",
                           s->consumers.count);
    for (uint32_t i = 0; i < s->consumers.count; i++) {
        json_t *d = json_array_get(dev, n == 1 ? 0 : i);
        cuipc_jpush_index(c, n == 1 ? 0 : (long)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > 1023)
            return cuipc_jfail(c, "expected a device ordinal 0..1023, got %s",
                               cuipc_json_type_name(d));
        s->consumers.devices[i] = (int32_t)json_integer_value(d);
        cuipc_jpop(c);
    }
    cuipc_jpop(c);
    return true;
}

/* consumers.copy_to: where unwrap "copy" lands. */
static bool parse_copy_to(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    static const struct {
        const char *name;
        int32_t device;
    } places[] = {{"host", CUIPC_DEVICE_HOST},
                  {"same", CUIPC_DEVICE_SAME},
                  {"consumer", CUIPC_H_COPY_TO_CONSUMER}};
    json_t *to = json_object_get(o, "copy_to");
    if (to == NULL)
        return true;
    cuipc_jpush_key(c, "copy_to");
    if (s->consumers.unwrap != CUIPC_UNWRAP_COPY)
        return cuipc_jfail(c, "copy_to applies to unwrap \"copy\" only");
    bool known = false;
    if (json_is_integer(to) && json_integer_value(to) >= 0 && json_integer_value(to) < 1024) {
        s->consumers.copy_to = (int32_t)json_integer_value(to);
        known = true;
    }
    for (size_t i = 0; json_is_string(to) && i < sizeof places / sizeof places[0]; i++)
        if (strcmp(json_string_value(to), places[i].name) == 0) {
            s->consumers.copy_to = places[i].device;
            known = true;
        }
    if (!known)
        return cuipc_jfail(c, "expected \"host\", \"same\", \"consumer\" or a device ordinal");
    cuipc_jpop(c);
    return true;
}

/* A key in microseconds up to max_us into nanoseconds; absent: *ns as it was. */
static bool get_us(cuipc_jctx *c, const json_t *o, const char *key, uint64_t max_us, int64_t *ns) {
    if (json_object_get(o, key) == NULL)
        return true;
    uint64_t us = 0;
    if (!cuipc_jget_uint(c, o, key, false, 0, max_us, &us))
        return false;
    *ns = (int64_t)us * 1000;
    return true;
}

/* consumers.hold_us, spin_us, host_wait_us, copy_cache_bytes: how a consumer waits and keeps. */
static bool parse_consumer_waits(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    int64_t hold_ns = (int64_t)s->consumers.hold_ns;
    if (!get_us(c, o, "hold_us", 60000000, &hold_ns))
        return false;
    s->consumers.hold_ns = (uint64_t)hold_ns;
    const json_t *cache = json_object_get(o, "copy_cache_bytes");
    if (json_is_string(cache) && strcmp(json_string_value(cache), "unlimited") == 0)
        s->consumers.copy_cache_bytes = UINT64_MAX;
    else if (!cuipc_jget_size(c, o, "copy_cache_bytes", false, 0, &s->consumers.copy_cache_bytes))
        return false;
    return get_us(c, o, "spin_us", 10000000, &s->consumers.spin_ns) &&
           get_us(c, o, "host_wait_us", 10000000, &s->consumers.host_wait_ns);
}

/* consumers.churn: count consumers leave and are replaced every `every` messages. */
static bool parse_churn(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    bool bad = false;
    const json_t *ch = cuipc_jenter(c, o, "churn", false, CUIPC_JKEYS("count", "every"), &bad);
    if (bad)
        return false;
    if (ch == NULL)
        return true;
    if (!cuipc_jget_u32(c, ch, "count", true, 1, CUIPC_MAX_CONSUMERS, &s->consumers.churn.count) ||
        !cuipc_jget_uint(c, ch, "every", true, 1, 1ull << 40, &s->consumers.churn.every))
        return false;
    if (s->consumers.churn.count >= s->consumers.count) {
        cuipc_jpush_key(c, "count");
        return cuipc_jfail(c, "%u churning consumer(s) leave none of %u to stay for every message",
                           s->consumers.churn.count, s->consumers.count);
    }
    cuipc_jpop(c);
    return true;
}

static bool parse_consumers(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    int unwrap = (int)s->consumers.unwrap;
    int release = s->consumers.release_on_stream ? 1 : 0;
    if (!cuipc_jget_u32(c, o, "count", !cuipc_scenario_replays(s), 1, CUIPC_MAX_CONSUMERS,
                        &s->consumers.count) ||
        !parse_consumer_devices(c, o, s) ||
        !cuipc_jget_enum(c, o, "unwrap", false, CUIPC_JNAMES("copy", "borrow"), 2, &unwrap))
        return false;
    s->consumers.unwrap = (cuipc_unwrap_kind)unwrap;
    if (!parse_copy_to(c, o, s) || !parse_consumer_waits(c, o, s) ||
        !cuipc_jget_enum(c, o, "release", false, CUIPC_JNAMES("host", "stream"), 2, &release))
        return false;
    s->consumers.release_on_stream = release == 1;
    return cuipc_jget_u32(c, o, "sync_every", false, 1, 1000000, &s->consumers.sync_every) &&
           parse_churn(c, o, s);
}

static bool parse_run(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    bool has_iter = json_object_get(o, "iterations") != NULL;
    bool has_dur = json_object_get(o, "duration_s") != NULL;
    if (has_iter == has_dur && !cuipc_scenario_replays(s))
        return cuipc_jfail(c, "give exactly one of 'iterations' and 'duration_s'");
    int loop = s->run.open_loop ? 1 : 0;
    bool ok =
        cuipc_jget_uint(c, o, "iterations", false, 1, 1ull << 40, &s->run.iterations) &&
        cuipc_jget_double(c, o, "duration_s", false, 0.001, 7 * 86400.0, &s->run.duration_s) &&
        cuipc_jget_uint(c, o, "warmup_iterations", false, 0, 1ull << 40,
                        &s->run.warmup_iterations) &&
        cuipc_jget_enum(c, o, "loop", false, CUIPC_JNAMES("closed", "open"), 2, &loop) &&
        cuipc_jget_double(c, o, "rate_hz", false, 1e-3, 1e9, &s->run.rate_hz) &&
        cuipc_jget_double(c, o, "timeout_s", false, 0.1, 8 * 86400.0, &s->run.timeout_s) &&
        cuipc_jget_double(c, o, "attach_timeout_s", false, 0.1, 600.0, &s->run.attach_timeout_s) &&
        cuipc_jget_u32(c, o, "repetitions", false, 1, CUIPC_MAX_REPETITIONS, &s->run.repetitions);
    if (!ok)
        return false;
    s->run.open_loop = loop == 1;
    if (s->run.open_loop && s->run.rate_hz <= 0)
        return cuipc_jfail(c, "an open loop needs 'rate_hz'");
    if (!s->run.open_loop && s->run.rate_hz > 0) {
        cuipc_jpush_key(c, "rate_hz");
        return cuipc_jfail(c, "rate_hz applies to an open loop only (set \"loop\": \"open\")");
    }
    if (!cuipc_jget_bool(c, o, "producer_spin", &s->run.producer_spin))
        return false;
    if (s->run.producer_spin && !s->run.open_loop) {
        cuipc_jpush_key(c, "producer_spin");
        return cuipc_jfail(
            c, "producer_spin applies to an open loop only (a closed loop never waits)");
    }
    if (!cuipc_jget_bool(c, o, "overload", &s->run.overload) ||
        !cuipc_jget_bool(c, o, "cpu_gauge", &s->run.cpu_gauge))
        return false;
    if (s->run.cpu_gauge && !s->run.open_loop) {
        cuipc_jpush_key(c, "cpu_gauge");
        return cuipc_jfail(c, "cpu_gauge applies to an open loop only (its walks would take "
                              "from a closed loop's throughput)");
    }
    if (s->run.overload && !s->run.open_loop) {
        cuipc_jpush_key(c, "overload");
        return cuipc_jfail(c,
                           "overload applies to an open loop only (a closed loop has no schedule)");
    }
    if (s->run.iterations != 0 && s->run.warmup_iterations >= s->run.iterations) {
        cuipc_jpush_key(c, "warmup_iterations");
        return cuipc_jfail(c, "warm-up (%llu) leaves no measured iterations of %llu",
                           (unsigned long long)s->run.warmup_iterations,
                           (unsigned long long)s->run.iterations);
    }
    return true;
}

static bool parse_leak(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    bool bad = false;
    int expect = s->leak.expect_leak ? 1 : 0;
    s->leak.enabled = true;
    bool ok =
        cuipc_jget_bool(c, o, "enabled", &s->leak.enabled) &&
        cuipc_jget_u32(c, o, "interval_ms", false, 1, 10000, &s->leak.interval_ms) &&
        cuipc_jget_double(c, o, "warmup_fraction", false, 0.0, 0.9, &s->leak.warmup_fraction) &&
        cuipc_jget_enum(c, o, "expect", false, CUIPC_JNAMES("clean", "leak"), 2, &expect);
    if (!ok)
        return false;
    s->leak.expect_leak = expect == 1;
    const json_t *tol = cuipc_jenter(
        c, o, "tolerance", false, CUIPC_JKEYS("gpu_bytes", "rss_bytes", "shm_bytes", "fds"), &bad);
    if (bad)
        return false;
    if (tol != NULL) {
        if (!cuipc_jget_size(c, tol, "gpu_bytes", false, 0, &s->leak.tolerance_gpu_bytes) ||
            !cuipc_jget_size(c, tol, "rss_bytes", false, 0, &s->leak.tolerance_rss_bytes) ||
            !cuipc_jget_size(c, tol, "shm_bytes", false, 0, &s->leak.tolerance_shm_bytes) ||
            !cuipc_jget_uint(c, tol, "fds", false, 0, 1u << 20, &s->leak.tolerance_fds))
            return false;
        cuipc_jpop(c);
    }
    const json_t *inj =
        cuipc_jenter(c, o, "inject", false,
                     CUIPC_JKEYS("rss_bytes_per_message", "fds_per_message",
                                 "held_buffers_per_message", "keep_copies", "keep_departed_rings"),
                     &bad);
    if (bad)
        return false;
    if (inj != NULL) {
        if (!cuipc_jget_size(c, inj, "rss_bytes_per_message", false, 0,
                             &s->leak.inject_rss_bytes_per_message) ||
            !cuipc_jget_uint(c, inj, "fds_per_message", false, 0, 16,
                             &s->leak.inject_fds_per_message) ||
            !cuipc_jget_uint(c, inj, "held_buffers_per_message", false, 0, 16,
                             &s->leak.inject_held_buffers_per_message) ||
            !cuipc_jget_bool(c, inj, "keep_copies", &s->leak.inject_keep_copies) ||
            !cuipc_jget_bool(c, inj, "keep_departed_rings", &s->leak.inject_keep_departed_rings))
            return false;
        if (s->leak.inject_keep_copies && s->consumers.unwrap != CUIPC_UNWRAP_COPY) {
            cuipc_jpush_key(c, "keep_copies");
            return cuipc_jfail(c, "keep_copies needs copying consumers (\"unwrap\": \"copy\")");
        }
        cuipc_jpop(c);
    }
    return true;
}

/* Linux numbers CPUs below NR_CPUS, 8192 at most. */
#define CPU_INDEX_LIMIT 8192u

/* A CPU list as hwloc reads it ("0-3,8"), checked strictly: hwloc takes "abc" or "-1" and
 * binds nowhere, and a number past any CPU would only fail when the run binds. NULL: valid. */
static const char *cpu_list_problem(const char *list, char *why, size_t cap) {
    const char *p = list;
    if (*p == '\0')
        return "is empty";
    for (;;) {
        unsigned long range[2] = {0, 0};
        for (int k = 0; k < 2; k++) {
            if (*p < '0' || *p > '9') {
                snprintf(why, cap,
                         "'%s' is not a CPU list like \"0-3,8\": a CPU number is "
                         "expected at '%s'",
                         list, p);
                return why;
            }
            char *end;
            errno = 0;
            range[k] = strtoul(p, &end, 10);
            if (errno != 0 || range[k] >= CPU_INDEX_LIMIT) {
                snprintf(why, cap, "'%s': CPU %.*s does not exist (Linux numbers CPUs below %u)",
                         list, (int)(end - p), p, CPU_INDEX_LIMIT);
                return why;
            }
            p = end;
            if (k == 0 && *p != '-') {
                range[1] = range[0];
                break;
            }
            if (k == 0)
                p++;
        }
        if (range[1] < range[0]) {
            snprintf(why, cap, "'%s': the range %lu-%lu runs backwards", list, range[0], range[1]);
            return why;
        }
        if (*p == '\0')
            return NULL;
        if (*p != ',') {
            snprintf(why, cap, "'%s' is not a CPU list like \"0-3,8\": unexpected '%c'", list, *p);
            return why;
        }
        p++;
    }
}

static bool check_cpu_list(cuipc_jctx *c, const char *list) {
    char why[256];
    const char *problem = cpu_list_problem(list, why, sizeof why);
    return problem == NULL || cuipc_jfail(c, "%s", problem);
}

static bool parse_binding(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    int policy = (int)s->binding.policy;
    if (!cuipc_jget_enum(c, o, "policy", false, CUIPC_JNAMES("auto", "none", "explicit"), 3,
                         &policy) ||
        !cuipc_jget_string(c, o, "producer_cpus", false, s->binding.producer_cpus,
                           sizeof s->binding.producer_cpus))
        return false;
    s->binding.policy = (cuipc_binding_policy)policy;
    json_t *cc = json_object_get(o, "consumer_cpus");
    if (cc != NULL) {
        cuipc_jpush_key(c, "consumer_cpus");
        if (!json_is_array(cc) || json_array_size(cc) != s->consumers.count)
            return cuipc_jfail(c, "expected an array of %u CPU lists (one per consumer)",
                               s->consumers.count);
        for (uint32_t i = 0; i < s->consumers.count; i++) {
            json_t *v = json_array_get(cc, i);
            cuipc_jpush_index(c, (long)i);
            if (!json_is_string(v) || json_string_length(v) >= CUIPC_SCN_CPUSET_MAX)
                return cuipc_jfail(c, "expected a CPU list string like \"0-3,8\"");
            snprintf(s->binding.consumer_cpus[i], CUIPC_SCN_CPUSET_MAX, "%s", json_string_value(v));
            if (!check_cpu_list(c, s->binding.consumer_cpus[i]))
                return false;
            cuipc_jpop(c);
        }
        cuipc_jpop(c);
    }
    bool given = s->binding.producer_cpus[0] != '\0' || cc != NULL;
    if (s->binding.policy == CUIPC_BIND_EXPLICIT && (s->binding.producer_cpus[0] == '\0' || !cc))
        return cuipc_jfail(c, "policy \"explicit\" needs producer_cpus and consumer_cpus");
    if (s->binding.policy != CUIPC_BIND_EXPLICIT && given)
        return cuipc_jfail(c, "CPU lists apply to policy \"explicit\" only");
    if (s->binding.producer_cpus[0] != '\0') {
        cuipc_jpush_key(c, "producer_cpus");
        if (!check_cpu_list(c, s->binding.producer_cpus))
            return false;
        cuipc_jpop(c);
    }
    return true;
}

static bool parse_thresholds(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    uint64_t mism = (uint64_t)s->thresholds.max_mismatches;
    uint64_t sendf = (uint64_t)s->thresholds.max_send_failures;
    bool ok =
        cuipc_jget_double(c, o, "p50_us", false, 0, 1e12, &s->thresholds.p50_us) &&
        cuipc_jget_double(c, o, "p99_us", false, 0, 1e12, &s->thresholds.p99_us) &&
        cuipc_jget_double(c, o, "max_us", false, 0, 1e12, &s->thresholds.max_us) &&
        cuipc_jget_double(c, o, "min_gbps", false, 0, 1e6, &s->thresholds.min_gbps) &&
        cuipc_jget_double(c, o, "min_msgs_per_s", false, 0, 1e12, &s->thresholds.min_msgs_per_s) &&
        cuipc_jget_uint(c, o, "max_mismatches", false, 0, 1ull << 40, &mism) &&
        cuipc_jget_uint(c, o, "max_send_failures", false, 0, 1ull << 40, &sendf);
    s->thresholds.max_mismatches = (int64_t)mism;
    s->thresholds.max_send_failures = (int64_t)sendf;
    return ok;
}

static bool parse_fault(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    const char *fault_names[CUIPC_FAULT_COUNT_]; /* the fault table's (fault.c) */
    for (int k = 0; k < CUIPC_FAULT_COUNT_; k++)
        fault_names[k] = cuipc_fault_kind_name((cuipc_fault_kind)k);
    int kind = 0;
    if (!cuipc_jget_enum(c, o, "kind", true, fault_names, CUIPC_FAULT_COUNT_, &kind) ||
        !cuipc_jget_u32(c, o, "consumer", false, 0, CUIPC_MAX_CONSUMERS - 1, &s->fault.consumer) ||
        !cuipc_jget_uint(c, o, "at_message", false, 0, 1ull << 40, &s->fault.at_message) ||
        !cuipc_jget_u32(c, o, "stale_after", false, 1, 1u << 20, &s->fault.stale_after))
        return false;
    s->fault.kind = (cuipc_fault_kind)kind;
    if (s->fault.consumer >= s->consumers.count) {
        cuipc_jpush_key(c, "consumer");
        return cuipc_jfail(c, "consumer %u does not exist (count is %u)", s->fault.consumer,
                           s->consumers.count);
    }
    if (s->run.iterations != 0 && s->fault.at_message >= s->run.iterations) {
        cuipc_jpush_key(c, "at_message");
        return cuipc_jfail(c, "message %llu is never sent (iterations is %llu)",
                           (unsigned long long)s->fault.at_message,
                           (unsigned long long)s->run.iterations);
    }
    return true;
}

/* ------------------------------------------------------------------ whole-scenario checks */

static uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) / a * a;
}

static void derive(cuipc_scenario *s) {
    uint64_t max = 0;
    switch (s->tensors.kind) {
    case CUIPC_SIZES_LIST:
    case CUIPC_SIZES_TRACE:
        for (size_t i = 0; i < s->tensors.n_sizes; i++)
            max = s->tensors.sizes[i] > max ? s->tensors.sizes[i] : max;
        break;
    default:
        max = s->tensors.max;
    }
    for (uint64_t i = 0; cuipc_scenario_replays(s) && i < s->workload.w.n; i++)
        max = s->workload.w.req[i].bytes > max ? s->workload.w.req[i].bytes : max;
    for (size_t i = 0; i < s->tensors.n_dtypes; i++) /* at least one element */
        max = cuipc_dtype_size(s->tensors.dtypes[i]) > max ? cuipc_dtype_size(s->tensors.dtypes[i])
                                                           : max;
    s->tensors.max_bytes = max;
    s->needs_gpu = s->mode != CUIPC_MODE_DEFAULT || s->tensors.location == CUIPC_LOCATION_DEVICE ||
                   s->consumers.copy_to >= 0 || s->consumers.copy_to == CUIPC_H_COPY_TO_CONSUMER;
    if (s->mode == CUIPC_MODE_CUDA_IPC)
        s->tensors.fresh_per_message = true; /* a model makes a new tensor per message */
}

static bool pool_fits(cuipc_jctx *c, const cuipc_scenario *s, const char *key, uint64_t pool) {
    uint64_t one = align_up(s->tensors.max_bytes, s->pool.alignment);
    char a[32], b[32];
    cuipc_jpush_key(c, "pool");
    cuipc_jpush_key(c, key);
    bool ok = true;
    if (pool < one)
        ok = cuipc_jfail(c, "pool (%s) is smaller than the largest tensor (%s)",
                         cuipc_h_format_size(pool, a, sizeof a),
                         cuipc_h_format_size(one, b, sizeof b));
    else if (pool / s->tensors.per_message < one)
        ok = cuipc_jfail(c, "pool (%s) cannot hold one message of %u tensors of up to %s",
                         cuipc_h_format_size(pool, a, sizeof a), s->tensors.per_message,
                         cuipc_h_format_size(one, b, sizeof b));
    cuipc_jpop(c);
    cuipc_jpop(c);
    return ok;
}

/* Fails at the JSON path given as keys (NULL-terminated), with why. */
static bool fail_at(cuipc_jctx *c, const char *const *keys, const char *why) {
    for (size_t i = 0; keys[i]; i++)
        cuipc_jpush_key(c, keys[i]);
    return cuipc_jfail(c, "%s", why);
}

/* Churn replaces consumers while messages flow: what needs a fixed set of consumers refuses it. */
static bool check_churn(cuipc_jctx *c, const cuipc_scenario *s) {
    const char *why = NULL;
    if (s->leak.inject_keep_departed_rings && !s->consumers.churn.count)
        why = "leak_check.inject.keep_departed_rings needs consumers.churn (no consumer departs)";
    else if (!s->consumers.churn.count)
        return true;
    else if (s->fault.kind != CUIPC_FAULT_NONE)
        why = "consumers.churn and a fault each change the consumers: give one of them";
    else if (cuipc_scenario_replays(s))
        why = "a replayed workload holds every message in every consumer: no churn";
    return why == NULL || fail_at(c, CUIPC_JKEYS("consumers", "churn"), why);
}

static bool check_location(cuipc_jctx *c, const cuipc_scenario *s) {
    if (s->mode == CUIPC_MODE_DEFAULT || s->tensors.location == CUIPC_LOCATION_DEVICE)
        return true;
    cuipc_jpush_key(c, "tensors");
    cuipc_jpush_key(c, "location");
    return cuipc_jfail(c, "mode %s sends device tensors: location must be \"device\"",
                       cuipc_mode_name(s->mode));
}

static bool check_fill(cuipc_jctx *c, const cuipc_scenario *s) {
    if (!cuipc_scenario_replays(s) || !s->workload.w.fill_ns ||
        s->tensors.source == CUIPC_SOURCE_POOL_BUFFER)
        return true;
    return fail_at(c, CUIPC_JKEYS("workload"),
                   "the workload's fill_us is the time a pool buffer is written before it is "
                   "sent: it needs tensors.source \"pool_buffer\"");
}

static bool check_pool_buffers(cuipc_jctx *c, const cuipc_scenario *s) {
    const char *why = NULL;
    if (s->tensors.source != CUIPC_SOURCE_POOL_BUFFER)
        return true;
    if (s->mode == CUIPC_MODE_CUDA_IPC)
        why = "mode cuda_ipc sends each tensor's own allocation: pool buffers need mode "
              "default or cuda_ipc_pool";
    else if (s->mode == CUIPC_MODE_DEFAULT && s->tensors.location != CUIPC_LOCATION_HOST)
        why = "the buffers of mode default are host memory: location must be \"host\"";
    else if (s->tensors.fresh_per_message)
        why = "pool buffers are fresh for every message: fresh_per_message says nothing more";
    else if (s->pool.full_policy == CUIPC_FULL_FALLBACK)
        why = "\"fallback\" stages copies through the host pool, and pool buffers are not "
              "copied: use \"wait\" or \"fail\"";
    return why == NULL || fail_at(c, CUIPC_JKEYS("tensors", "source"), why);
}

static bool check_pools(cuipc_jctx *c, const cuipc_scenario *s) {
    if (s->mode == CUIPC_MODE_DEFAULT && !pool_fits(c, s, "host_bytes", s->pool.host_bytes))
        return false;
    if (s->mode == CUIPC_MODE_CUDA_IPC_POOL && !pool_fits(c, s, "gpu_bytes", s->pool.gpu_bytes))
        return false;
    if (s->pool.full_policy != CUIPC_FULL_FALLBACK)
        return true;
    if (s->mode != CUIPC_MODE_CUDA_IPC_POOL)
        return fail_at(c, CUIPC_JKEYS("pool", "full_policy"),
                       "\"fallback\" stages a full GPU pool through the host pool: it needs "
                       "mode cuda_ipc_pool");
    return pool_fits(c, s, "host_bytes", s->pool.host_bytes);
}

static bool check_mps(cuipc_jctx *c, const cuipc_scenario *s) {
    return !s->gpu.mps || s->needs_gpu ||
           fail_at(c, CUIPC_JKEYS("gpu", "mps"),
                   "MPS shares a GPU between processes, and this scenario uses none (mode "
                   "default with host tensors)");
}

static bool check_leak_expectation(cuipc_jctx *c, const cuipc_scenario *s) {
    return !cuipc_fault_kills_producer(s) || !s->leak.expect_leak ||
           fail_at(c, CUIPC_JKEYS("leak_check"),
                   "a killed producer leaves no end-of-run stats: expect \"clean\"");
}

/* What no single section can check: combinations across them, in this order (the first that
 * fails is reported). */
static bool (*const whole_checks[])(cuipc_jctx *c, const cuipc_scenario *s) = {
    check_churn, check_location,         check_fill, check_pool_buffers, check_pools,
    check_mps,   check_leak_expectation,
};

static bool check_whole(cuipc_jctx *c, const cuipc_scenario *s) {
    for (size_t i = 0; i < sizeof whole_checks / sizeof whole_checks[0]; i++)
        if (!whole_checks[i](c, s))
            return false;
    return true;
}

/* ------------------------------------------------------------------ entry points */

static void set_defaults(cuipc_scenario *s) {
    memset(s, 0, sizeof *s);
    s->pool.slots = 4096;
    s->pool.alignment = 256;
    s->pool.fit = CUIPC_FIT_BEST;
    s->pool.full_policy = CUIPC_FULL_WAIT;
    s->pool.full_timeout_ns = 5000000000ll;
    s->pool.ring_bytes = 1u << 20;
    s->tensors.dtypes[0] = CUIPC_DTYPE_U8;
    s->tensors.n_dtypes = 1;
    s->tensors.per_message = 1;
    s->tensors.seed = 1;
    s->consumers.unwrap = CUIPC_UNWRAP_COPY;
    s->consumers.copy_to = CUIPC_DEVICE_SAME;
    s->run.attach_timeout_s = 10.0;
    s->run.repetitions = 1;
    s->validation.enabled = true;
    s->validation.every = 1;
    s->consumers.spin_ns = -1;
    s->consumers.host_wait_ns = -1;
    s->consumers.sync_every = 1;
    s->consumers.copy_cache_bytes = CUIPC_COPY_CACHE_DEFAULT_BYTES;
    s->leak.interval_ms = 50;
    s->leak.warmup_fraction = 0.25;
    s->leak.tolerance_gpu_bytes = 4u << 20;
    s->leak.tolerance_rss_bytes = 4u << 20;
    s->leak.tolerance_shm_bytes = 1u << 20;
    s->leak.tolerance_fds = 4;
    s->thresholds.p50_us = s->thresholds.p99_us = s->thresholds.max_us = -1;
    s->thresholds.min_gbps = s->thresholds.min_msgs_per_s = -1;
    s->fault.at_message = 1;
    s->fault.stale_after = 8;
}

/* name, description and comment: the name becomes the results file's name. */
static bool parse_identity(cuipc_jctx *c, const json_t *root, cuipc_scenario *s) {
    if (!cuipc_jget_string(c, root, "name", true, s->name, sizeof s->name) ||
        !cuipc_jget_string(c, root, "description", false, s->description, sizeof s->description))
        return false;
    if (s->name[0] == '\0') { /* would write results to a hidden ".json" that compare skips */
        cuipc_jpush_key(c, "name");
        return cuipc_jfail(c, "must not be empty (it names the results file)");
    }
    for (const char *p = s->name; *p; p++) {
        if (!(*p == '_' || *p == '-' || *p == '.' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) {
            cuipc_jpush_key(c, "name");
            return cuipc_jfail(c,
                               "'%s' may only hold letters, digits, '_', '-' and '.' (it names "
                               "the results file)",
                               s->name);
        }
    }
    json_t *comment = json_object_get(root, "comment");
    if (comment != NULL && !json_is_string(comment)) {
        cuipc_jpush_key(c, "comment");
        return cuipc_jfail(c, "expected a string, got %s", cuipc_json_type_name(comment));
    }
    return true;
}

static bool parse_mode(cuipc_jctx *c, const json_t *root, cuipc_scenario *s) {
    const char *mode_names[MODE_COUNT];
    for (int i = 0; i < MODE_COUNT; i++)
        mode_names[i] = cuipc_mode_name((cuipc_mode)i);
    int mode = 0;
    if (!cuipc_jget_enum(c, root, "mode", true, mode_names, MODE_COUNT, &mode))
        return false;
    s->mode = (cuipc_mode)mode;
    /* Defaults that depend on the mode: only the arena the mode uses is made. */
    s->pool.host_bytes = s->mode == CUIPC_MODE_DEFAULT ? 64u << 20 : 0;
    s->pool.gpu_bytes = s->mode == CUIPC_MODE_CUDA_IPC_POOL ? 256u << 20 : 0;
    s->tensors.location =
        s->mode == CUIPC_MODE_DEFAULT ? CUIPC_LOCATION_HOST : CUIPC_LOCATION_DEVICE;
    return true;
}

static bool parse_producer(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    uint64_t dev = 0;
    if (!cuipc_jget_uint(c, o, "device", false, 0, 1023, &dev))
        return false;
    s->producer_device = (int32_t)dev;
    /* Consumers sit on the producer's GPU unless consumers.devices says otherwise. */
    for (uint32_t i = 0; i < CUIPC_MAX_CONSUMERS; i++)
        s->consumers.devices[i] = s->producer_device;
    return true;
}

static bool parse_gpu(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    return cuipc_jget_bool(c, o, "mps", &s->gpu.mps);
}

static bool parse_validation(cuipc_jctx *c, const json_t *o, cuipc_scenario *s) {
    return cuipc_jget_bool(c, o, "enabled", &s->validation.enabled) &&
           cuipc_jget_u32(c, o, "every", false, 1, 1000000000, &s->validation.every);
}

/* The top-level sections in the order they are read: later ones look at what earlier ones set
 * (a workload, read between pool and tensors, makes tensors, consumers and run optional). */
typedef bool (*section_parser)(cuipc_jctx *c, const json_t *o, cuipc_scenario *s);
static const struct {
    const char *key;
    bool needed_without_workload;
    section_parser parse;
    const char *const *keys;
} sections[] = {
    {"producer", false, parse_producer, CUIPC_JKEYS("device")},
    {"gpu", false, parse_gpu, CUIPC_JKEYS("mps")},
    {"pool", false, parse_pool,
     CUIPC_JKEYS("gpu_bytes", "host_bytes", "slots", "alignment", "fit", "full_policy",
                 "full_timeout_ms", "ring_bytes")},
    {"workload", false, NULL, NULL},
    {"tensors", true, parse_tensors,
     CUIPC_JKEYS("sizes", "dtypes", "per_message", "location", "fresh_per_message", "seed",
                 "source")},
    {"consumers", true, parse_consumers,
     CUIPC_JKEYS("count", "devices", "unwrap", "copy_to", "hold_us", "spin_us", "sync_every",
                 "release", "host_wait_us", "copy_cache_bytes", "churn")},
    {"run", true, parse_run,
     CUIPC_JKEYS("iterations", "duration_s", "warmup_iterations", "loop", "rate_hz", "timeout_s",
                 "attach_timeout_s", "producer_spin", "overload", "cpu_gauge", "repetitions")},
    {"validation", false, parse_validation, CUIPC_JKEYS("enabled", "every")},
    {"leak_check", false, parse_leak,
     CUIPC_JKEYS("enabled", "interval_ms", "warmup_fraction", "tolerance", "expect", "inject")},
    {"binding", false, parse_binding, CUIPC_JKEYS("policy", "producer_cpus", "consumer_cpus")},
    {"thresholds", false, parse_thresholds,
     CUIPC_JKEYS("p50_us", "p99_us", "max_us", "min_gbps", "min_msgs_per_s", "max_mismatches",
                 "max_send_failures")},
    {"fault", false, parse_fault, CUIPC_JKEYS("kind", "consumer", "at_message", "stale_after")},
};

static bool parse_sections(cuipc_jctx *c, const json_t *root, cuipc_scenario *s) {
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        if (sections[i].parse == NULL) {
            if (!load_workload(c, root, s))
                return false;
            continue;
        }
        bool bad = false;
        bool required = sections[i].needed_without_workload && !cuipc_scenario_replays(s);
        const json_t *o = cuipc_jenter(c, root, sections[i].key, required, sections[i].keys, &bad);
        if (bad || (o != NULL && !sections[i].parse(c, o, s)))
            return false;
        if (o != NULL)
            cuipc_jpop(c);
    }
    return true;
}

/* Unless run.timeout_s is given: generous, a bound against hangs, not a performance limit. */
static void default_timeout(cuipc_scenario *s) {
    if (s->run.timeout_s > 0)
        return;
    double sending_s = cuipc_scenario_replays(s)
                           ? (double)s->workload.w.req[s->workload.w.n - 1].arrival_ns / 1e9
                       : s->run.iterations ? 0.0
                                           : s->run.duration_s;
    s->run.timeout_s = sending_s + 60.0 + s->run.attach_timeout_s;
}

static bool parse_root(cuipc_jctx *c, const json_t *root, cuipc_scenario *s) {
    const char *const *top = CUIPC_JKEYS(
        "name", "description", "comment", "mode", "pool", "tensors", "consumers", "producer", "run",
        "validation", "leak_check", "binding", "thresholds", "fault", "workload", "gpu");
    if (!cuipc_jcheck_object(c, root, top) || !parse_identity(c, root, s) ||
        !parse_mode(c, root, s) || !parse_sections(c, root, s))
        return false;
    default_timeout(s);
    derive(s);
    return check_whole(c, s);
}

cuipc_status cuipc_scenario_parse(const char *text, const char *file, cuipc_scenario *out) {
    set_defaults(out);
    snprintf(out->path, sizeof out->path, "%s", file);
    cuipc_jctx c = {.file = file, .text = text};
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        char where[CUIPC_JWHERE_MAX];
        snprintf(where, sizeof where, "%s:%d:%d", file, jerr.line, jerr.column);
        return cuipc_error_set(CUIPC_ERR_INVALID_ARG, where, "%s", jerr.text);
    }
    bool ok = parse_root(&c, root, out);
    json_decref(root);
    if (ok)
        return CUIPC_OK;
    cuipc_scenario_free(out);
    return CUIPC_ERR_INVALID_ARG;
}

cuipc_status cuipc_scenario_load(const char *path, cuipc_scenario *out) {
    char *text = cuipc_h_read_file(path, NULL);
    if (text == NULL) {
        memset(out, 0, sizeof *out);
        return cuipc_error_errno(CUIPC_ERR_SYSTEM, path, "cannot read");
    }
    cuipc_status st = cuipc_scenario_parse(text, path, out);
    free(text);
    return st;
}

void cuipc_scenario_free(cuipc_scenario *s) {
    cuipc_plan_workload_free(&s->workload.w);
    s->workload.file[0] = '\0';
    free(s->tensors.sizes);
    s->tensors.sizes = NULL;
    s->tensors.n_sizes = 0;
}

/* ------------------------------------------------------------------ size generator */

uint64_t cuipc_scenario_tensor_bytes(const cuipc_scenario *s, uint64_t msg, uint32_t j,
                                     int *dtype) {
    if (cuipc_scenario_replays(s)) { /* request msg of the workload, cycled like a trace */
        *dtype = CUIPC_DTYPE_U8;
        return s->workload.w.req[msg % s->workload.w.n].bytes;
    }
    uint64_t k = msg * s->tensors.per_message + j;
    int dt = s->tensors.dtypes[k % s->tensors.n_dtypes];
    uint64_t r = cuipc_h_splitmix64(s->tensors.seed ^ cuipc_h_splitmix64(k));
    uint64_t bytes;
    switch (s->tensors.kind) {
    case CUIPC_SIZES_LIST:
    case CUIPC_SIZES_TRACE:
        bytes = s->tensors.sizes[k % s->tensors.n_sizes];
        break;
    case CUIPC_SIZES_RANGE: {
        uint64_t steps = (s->tensors.max - s->tensors.min) / s->tensors.step + 1;
        bytes = s->tensors.min + (k % steps) * s->tensors.step;
        break;
    }
    case CUIPC_SIZES_UNIFORM:
        bytes = s->tensors.min + r % (s->tensors.max - s->tensors.min + 1);
        break;
    default: {
        /* Box-Muller from two 53-bit uniforms in (0, 1]. */
        double u1 = ((double)(r >> 11) + 1.0) / 9007199254740992.0;
        double u2 = (double)(cuipc_h_splitmix64(r) >> 11) / 9007199254740992.0;
        double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        double v = (double)s->tensors.median * exp(s->tensors.sigma * z);
        /* Clamp in integers: above 2^53, (double)max can round past max. */
        bytes = v >= (double)s->tensors.max   ? s->tensors.max
                : v <= (double)s->tensors.min ? s->tensors.min
                                              : (uint64_t)v;
    }
    }
    size_t es = cuipc_dtype_size(dt);
    bytes -= bytes % es;
    if (bytes == 0)
        bytes = es;
    *dtype = dt;
    return bytes;
}
