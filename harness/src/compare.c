/* compare BASE NEW: latency up or throughput down beyond tolerance is a regression. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "results.h"

void cuipc_compare_opts_init(cuipc_compare_opts *o) {
    o->p50_pct = 10.0;
    o->p99_pct = 20.0;
    o->throughput_pct = 10.0;
    o->latency_floor_us = 1.0;
}

static bool metric(const json_t *r, const char *a, const char *b, const char *c, double *out) {
    const json_t *v = json_object_get(r, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return true;
}

int cuipc_compare_one(const json_t *base, const json_t *cur, const cuipc_compare_opts *o,
                      FILE *report) {
    const char *name = json_string_value(json_object_get(json_object_get(cur, "scenario"), "name"));
    const char *bs = json_string_value(json_object_get(base, "status"));
    const char *cs = json_string_value(json_object_get(cur, "status"));
    if (strcmp(bs, "skipped") == 0 || strcmp(cs, "skipped") == 0) {
        fprintf(report, "%s: skipped (base %s, new %s)\n", name, bs, cs);
        return 0;
    }
    char why[256];
    if (cuipc_compare_mps_differs(base, cur, why, sizeof why)) {
        fprintf(report, "%s: REFUSED %s\n", name, why);
        return 1;
    }
    int regressions = 0;
    if (strcmp(bs, "passed") == 0 && strcmp(cs, "passed") != 0) {
        const char *reason = json_string_value(json_object_get(cur, "reason"));
        fprintf(report, "%s: REGRESSION status passed -> %s (%s)\n", name, cs,
                reason ? reason : "");
        regressions++;
    }
    static const struct {
        const char *a, *b, *c, *label;
        bool higher_is_worse;
    } checks[] = {
        {"latency_us", "p50", NULL, "latency p50 (us)", true},
        {"latency_us", "p99", NULL, "latency p99 (us)", true},
        {"throughput", "aggregate", "gbps", "throughput (GB/s)", false},
        {"throughput", "aggregate", "msgs_per_s", "throughput (msgs/s)", false},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        double b, c;
        if (!metric(base, checks[i].a, checks[i].b, checks[i].c, &b) ||
            !metric(cur, checks[i].a, checks[i].b, checks[i].c, &c))
            continue;
        double change = b != 0 ? (c - b) / b * 100.0 : 0.0;
        bool bad;
        double tol;
        if (checks[i].higher_is_worse) {
            tol = i == 0 ? o->p50_pct : o->p99_pct;
            bad = change > tol && c - b > o->latency_floor_us;
        } else {
            tol = o->throughput_pct;
            bad = -change > tol;
        }
        fprintf(report, "%s: %-20s %12.3f -> %12.3f (%+.1f%%, tolerance %.1f%%)%s\n", name,
                checks[i].label, b, c, change, tol, bad ? "  REGRESSION" : "");
        regressions += bad;
    }
    return regressions;
}

typedef struct loaded {
    json_t **items;
    size_t n;
} loaded;

static bool load_one(const char *path, loaded *l) {
    json_error_t e;
    json_t *r = json_load_file(path, 0, &e);
    char err[256];
    if (r == NULL) {
        fprintf(stderr, "compare: %s:%d:%d: %s\n", path, e.line, e.column, e.text);
        return false;
    }
    if (!cuipc_results_check(r, err, sizeof err)) {
        fprintf(stderr, "compare: %s: not a results file: %s\n", path, err);
        json_decref(r);
        return false;
    }
    json_t **more = realloc(l->items, (l->n + 1) * sizeof *more);
    if (more == NULL) {
        json_decref(r);
        return false;
    }
    l->items = more;
    l->items[l->n++] = r;
    return true;
}

/* A results file, or every *.json in a directory. */
static bool load_all(const char *path, loaded *l) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "compare: %s: %s\n", path, strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode))
        return load_one(path, l);
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "compare: %s: %s\n", path, strerror(errno));
        return false;
    }
    bool ok = true;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]->d_name);
        if (ok && len > 5 && strcmp(names[i]->d_name + len - 5, ".json") == 0) {
            char full[2048];
            snprintf(full, sizeof full, "%s/%s", path, names[i]->d_name);
            ok = load_one(full, l);
        }
        free(names[i]);
    }
    free(names);
    if (ok && l->n == 0) {
        fprintf(stderr, "compare: %s holds no results files\n", path);
        ok = false;
    }
    return ok;
}

static void free_loaded(loaded *l) {
    for (size_t i = 0; i < l->n; i++)
        json_decref(l->items[i]);
    free(l->items);
}

static const char *name_of(const json_t *r) {
    return json_string_value(json_object_get(json_object_get(r, "scenario"), "name"));
}

static bool parse_pct(const char *flag, const char *v, double *out) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !(d >= 0) || !isfinite(d)) {
        fprintf(stderr, "compare: %s needs a non-negative number, got '%s'\n", flag, v);
        return false;
    }
    *out = d;
    return true;
}

int cuipc_compare_main(int argc, char **argv) {
    cuipc_compare_opts o;
    cuipc_compare_opts_init(&o);
    static const struct option longopts[] = {{"p50-tolerance", required_argument, NULL, 'a'},
                                             {"p99-tolerance", required_argument, NULL, 'b'},
                                             {"throughput-tolerance", required_argument, NULL, 'c'},
                                             {"latency-floor-us", required_argument, NULL, 'd'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case 'a':
            ok = parse_pct("--p50-tolerance", optarg, &o.p50_pct);
            break;
        case 'b':
            ok = parse_pct("--p99-tolerance", optarg, &o.p99_pct);
            break;
        case 'c':
            ok = parse_pct("--throughput-tolerance", optarg, &o.throughput_pct);
            break;
        case 'd':
            ok = parse_pct("--latency-floor-us", optarg, &o.latency_floor_us);
            break;
        case 'h':
            printf("usage: cuipc-harness compare [--p50-tolerance PCT] [--p99-tolerance PCT]\n"
                   "       [--throughput-tolerance PCT] [--latency-floor-us US] BASE NEW\n"
                   "BASE, NEW: a results file or a directory of them (matched by scenario).\n"
                   "exit 0: no regression, 1: regression, 2: bad input\n");
            return 0;
        default:
            ok = false;
        }
        if (!ok)
            return 2;
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: cuipc-harness compare [flags] BASE NEW (see --help)\n");
        return 2;
    }
    loaded base = {0}, cur = {0};
    if (!load_all(argv[optind], &base) || !load_all(argv[optind + 1], &cur)) {
        free_loaded(&base);
        free_loaded(&cur);
        return 2;
    }
    int regressions = 0, matched = 0;
    for (size_t i = 0; i < cur.n; i++) {
        for (size_t j = 0; j < base.n; j++) {
            if (strcmp(name_of(cur.items[i]), name_of(base.items[j])) == 0) {
                regressions += cuipc_compare_one(base.items[j], cur.items[i], &o, stdout);
                matched++;
                break;
            }
        }
    }
    for (size_t j = 0; j < base.n; j++) {
        bool found = false;
        for (size_t i = 0; i < cur.n && !found; i++)
            found = strcmp(name_of(cur.items[i]), name_of(base.items[j])) == 0;
        if (!found) {
            printf("%s: REGRESSION missing from the new results\n", name_of(base.items[j]));
            regressions++;
        }
    }
    printf("compare: %d scenario(s) matched, %d regression(s)\n", matched, regressions);
    free_loaded(&base);
    free_loaded(&cur);
    return regressions > 0 ? 1 : 0;
}
