/* compare BASE NEW: match results by scenario, refuse runs of different hosts, GPUs, drivers,
 * MPS or scenario contents, judge each scenario (compare_judge.c), print one verdict line per
 * scenario and a total, and write the verdicts as JSON on request. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cuipc_version.h"
#include "repetitions.h"
#include "results.h"
#include "results_keys.h"

typedef struct loaded {
    json_t **items;
    size_t n;
} loaded;

static bool load_one(const char *path, loaded *l) {
    json_error_t e;
    json_t *r = json_load_file(path, 0, &e);
    if (r == NULL) {
        fprintf(stderr, "compare: %s:%d:%d: %s\n", path, e.line, e.column, e.text);
        return false;
    }
    if (cuipc_results_check(r, path) != CUIPC_OK) {
        fprintf(stderr, "compare: %s\n", cuipc_last_error());
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

/* A results file, or every *.json in a directory and (for runs kept apart, such as the
 * invocations of two builds interleaved in time) in its subdirectories. */
static bool load_tree(const char *path, loaded *l, int depth) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "compare: %s: %s\n", path, strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode))
        return load_one(path, l);
    if (depth > 4) {
        fprintf(stderr, "compare: %s: directories nested deeper than 4\n", path);
        return false;
    }
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "compare: %s: %s\n", path, strerror(errno));
        return false;
    }
    bool ok = true;
    for (int i = 0; i < n; i++) {
        const char *e = names[i]->d_name;
        size_t len = strlen(e);
        char full[2048];
        snprintf(full, sizeof full, "%s/%s", path, e);
        struct stat es;
        if (ok && e[0] != '.' && stat(full, &es) == 0) {
            if (S_ISDIR(es.st_mode))
                ok = load_tree(full, l, depth + 1);
            else if (len > 5 && strcmp(e + len - 5, ".json") == 0)
                ok = load_one(full, l);
        }
        free(names[i]);
    }
    free(names);
    return ok;
}

static const char *name_of(const json_t *r) {
    return cuipc_results_name(r);
}

/* Results of one scenario found more than once on a side are pooled as repetitions. */
static bool pool_by_name(loaded *l) {
    json_t **pooled = calloc(l->n ? l->n : 1, sizeof *pooled);
    json_t **group = calloc(l->n ? l->n : 1, sizeof *group);
    bool *used = calloc(l->n ? l->n : 1, sizeof *used);
    size_t np = 0;
    bool ok = pooled && group && used;
    for (size_t i = 0; ok && i < l->n; i++) {
        if (used[i])
            continue;
        size_t ng = 0;
        for (size_t j = i; j < l->n; j++) {
            if (!used[j] && strcmp(name_of(l->items[j]), name_of(l->items[i])) == 0) {
                used[j] = true;
                group[ng++] = l->items[j];
            }
        }
        pooled[np++] = cuipc_repetitions_pool(group, ng);
    }
    if (ok) {
        for (size_t i = 0; i < l->n; i++)
            json_decref(l->items[i]);
        free(l->items);
        l->items = pooled;
        l->n = np;
    } else {
        free(pooled);
    }
    free(group);
    free(used);
    return ok;
}

static bool load_all(const char *path, loaded *l) {
    if (!load_tree(path, l, 0))
        return false;
    if (l->n == 0) {
        fprintf(stderr, "compare: %s holds no results files\n", path);
        return false;
    }
    return pool_by_name(l);
}

static void free_loaded(loaded *l) {
    for (size_t i = 0; i < l->n; i++)
        json_decref(l->items[i]);
    free(l->items);
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

#define EXIT_REGRESSION 1
#define EXIT_BAD_INPUT 2
#define EXIT_UNDECIDED 3

static const json_t *find(const loaded *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(name_of(l->items[i]), name) == 0)
            return l->items[i];
    return NULL;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: cuipc-harness compare [options] BASE NEW\n"
            "BASE, NEW: a results file or a directory of them (matched by scenario name);\n"
            "results of one scenario found several times on a side (in subdirectories: e.g.\n"
            "single runs of two builds interleaved in time) are pooled as repetitions.\n"
            "A metric regresses when its median moved beyond its tolerance (latency up,\n"
            "throughput down) AND a one-sided Mann-Whitney U test over the repetitions of the two\n"
            "runs gives p <= alpha / (metrics compared): alpha bounds the chance that a scenario\n"
            "of unchanged code is called a regression. Run both with --repetitions 6 or more.\n"
            "  --p50-tolerance PCT (10)    latency p50, and the p50 of the producer's send and of\n"
            "                              the consumers' unwrap (the library's own calls:\n"
            "                              supporting, they need not be sensitive for ok)\n"
            "  --p99-tolerance PCT (20) --throughput-tolerance PCT (10)\n"
            "  --min-tolerance PCT (10)    the fastest message's latency (a cost every message\n"
            "                              pays shows there through the noise of a loaded host)\n"
            "  --latency-floor-us US (1)   latency changes below it are noise\n"
            "  --alpha P (0.01)            family-wise significance level per scenario\n"
            "  --common                    compare only the scenarios both sides hold\n"
            "  --allow-mismatch            judge even if host, GPU model, driver, MPS or scenario\n"
            "                              content differ (reported either way)\n"
            "  --json FILE                 write the verdicts to FILE\n"
            "  --help, --version           this text; the version of this build\n"
            "exit 0: no regression, and each metric could have caught a change of its\n"
            "tolerance; 1: regression (or a scenario missing from NEW without --common);\n"
            "2: bad input, or refused (mismatch, nothing in common); 3: undecided: no\n"
            "regression found, but some metric had too few repetitions or too much noise to\n"
            "catch a change of its tolerance\n");
}

static bool write_json(const char *path, json_t *doc) {
    if (json_dump_file(doc, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10)) != 0) {
        fprintf(stderr, "compare: cannot write %s: %s\n", path, strerror(errno));
        return false;
    }
    return true;
}

int cuipc_compare_main(int argc, char **argv) {
    cuipc_compare_opts o;
    cuipc_compare_opts_init(&o);
    bool common = false, allow_mismatch = false;
    const char *json_path = NULL;
    static const struct option longopts[] = {{"p50-tolerance", required_argument, NULL, 'a'},
                                             {"p99-tolerance", required_argument, NULL, 'b'},
                                             {"min-tolerance", required_argument, NULL, 'm'},
                                             {"throughput-tolerance", required_argument, NULL, 'c'},
                                             {"latency-floor-us", required_argument, NULL, 'd'},
                                             {"alpha", required_argument, NULL, 'p'},
                                             {"common", no_argument, NULL, 'C'},
                                             {"allow-mismatch", no_argument, NULL, 'M'},
                                             {"json", required_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case 'V':
            printf("cuipc-harness %s\n", CUIPC_VERSION);
            return 0;
        case 'a':
            ok = parse_pct("--p50-tolerance", optarg, &o.p50_pct);
            break;
        case 'b':
            ok = parse_pct("--p99-tolerance", optarg, &o.p99_pct);
            break;
        case 'm':
            ok = parse_pct("--min-tolerance", optarg, &o.min_pct);
            break;
        case 'c':
            ok = parse_pct("--throughput-tolerance", optarg, &o.throughput_pct);
            break;
        case 'd':
            ok = parse_pct("--latency-floor-us", optarg, &o.latency_floor_us);
            break;
        case 'p':
            ok = parse_pct("--alpha", optarg, &o.alpha);
            if (ok && !(o.alpha > 0 && o.alpha < 1)) {
                fprintf(stderr, "compare: --alpha must lie in (0, 1), got '%s'\n", optarg);
                ok = false;
            }
            break;
        case 'C':
            common = true;
            break;
        case 'M':
            allow_mismatch = true;
            break;
        case 'j':
            json_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            ok = false;
        }
        if (!ok)
            return EXIT_BAD_INPUT;
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: cuipc-harness compare [flags] BASE NEW (see --help)\n");
        return EXIT_BAD_INPUT;
    }
    loaded base = {0}, cur = {0};
    if (!load_all(argv[optind], &base) || !load_all(argv[optind + 1], &cur)) {
        free_loaded(&base);
        free_loaded(&cur);
        return EXIT_BAD_INPUT;
    }
    json_t *env_diff = json_array(), *content_diff = json_array(), *scenarios = json_array();
    json_t *only_base = json_array(), *only_new = json_array();
    size_t matched = 0;
    for (size_t i = 0; i < cur.n; i++) {
        const json_t *b = find(&base, name_of(cur.items[i]));
        if (b == NULL) {
            json_array_append_new(only_new, json_string(name_of(cur.items[i])));
            continue;
        }
        matched++;
        json_t *content = json_array();
        cuipc_compare_mismatches(b, cur.items[i], env_diff, content);
        size_t k;
        json_t *d;
        json_array_foreach(content, k, d) {
            char buf[800];
            snprintf(buf, sizeof buf, "%s: %s", name_of(cur.items[i]), json_string_value(d));
            json_array_append_new(content_diff, json_string(buf));
        }
        json_decref(content);
    }
    for (size_t j = 0; j < base.n; j++)
        if (find(&cur, name_of(base.items[j])) == NULL)
            json_array_append_new(only_base, json_string(name_of(base.items[j])));

    int rc = 0;
    bool mismatch = json_array_size(env_diff) + json_array_size(content_diff) > 0;
    size_t i;
    json_t *d;
    json_array_foreach(env_diff, i, d) printf("compare: MISMATCH %s\n", json_string_value(d));
    json_array_foreach(content_diff, i, d) printf("compare: MISMATCH %s\n", json_string_value(d));
    const char *refused = NULL;
    if (mismatch && !allow_mismatch)
        refused = "the runs differ (above): refusing to judge them against each other "
                  "(--allow-mismatch to judge anyway)";
    else if (matched == 0)
        refused = "no scenario is held by both sides";
    size_t counts[4] = {0};
    if (refused == NULL) {
        for (size_t c = 0; c < cur.n; c++) {
            const json_t *b = find(&base, name_of(cur.items[c]));
            if (b == NULL)
                continue;
            json_t *detail = json_pack("{s:s}", "scenario", name_of(cur.items[c]));
            counts[cuipc_compare_one(b, cur.items[c], &o, stdout, detail)]++;
            json_array_append_new(scenarios, detail);
        }
        json_array_foreach(only_base, i, d) {
            if (common) {
                printf("%s: not compared (only in BASE; --common)\n", json_string_value(d));
                continue;
            }
            printf("%s: REGRESSION missing from the new results\n", json_string_value(d));
            json_array_append_new(scenarios,
                                  json_pack("{s:O, s:s}", "scenario", d, "verdict", "missing"));
            counts[CUIPC_VERDICT_REGRESSION]++;
        }
        json_array_foreach(only_new, i, d)
            printf("%s: not compared (only in NEW)\n", json_string_value(d));
        rc = counts[CUIPC_VERDICT_REGRESSION]  ? EXIT_REGRESSION
             : counts[CUIPC_VERDICT_UNDECIDED] ? EXIT_UNDECIDED
                                               : 0;
        printf("compare: %zu scenario(s) compared, %zu regression(s), %zu undecided, %zu "
               "skipped, %zu ok (one-sided Mann-Whitney U, alpha %g)%s\n",
               matched, counts[CUIPC_VERDICT_REGRESSION], counts[CUIPC_VERDICT_UNDECIDED],
               counts[CUIPC_VERDICT_SKIPPED], counts[CUIPC_VERDICT_OK], o.alpha,
               mismatch ? "; runs differ, judged anyway (--allow-mismatch)" : "");
        if (counts[CUIPC_VERDICT_UNDECIDED])
            printf("compare: UNDECIDED: the repetitions could not have caught a change of the "
                   "tolerance (TOO FEW: no p-value of these sample sizes reaches alpha / metrics; "
                   "TOO NOISY: the base's own spread hides such a change); run both sides with "
                   "--repetitions 6 or more on a quieter host, or widen the tolerance\n");
    } else {
        printf("compare: REFUSED: %s\n", refused);
        rc = EXIT_BAD_INPUT;
    }
    if (json_path != NULL) {
        json_t *doc = json_pack(
            "{s:i, s:s, s:s, s:O, s:O, s:o, s:o, s:o, s:{s:f, s:f, s:f, s:f, s:f, s:f, s:s, s:b, "
            "s:b}, "
            "s:i, s:{s:I, s:I, s:I, s:I}}",
            "schema_version", 1, "base", argv[optind], "new", argv[optind + 1], "mismatches",
            env_diff, "content_mismatches", content_diff, "refused",
            refused ? json_string(refused) : json_null(), "only_in_base", json_incref(only_base),
            "only_in_new", json_incref(only_new), "options", "p50_tolerance_pct", o.p50_pct,
            "p99_tolerance_pct", o.p99_pct, "min_tolerance_pct", o.min_pct,
            "throughput_tolerance_pct", o.throughput_pct, "latency_floor_us", o.latency_floor_us,
            "alpha", o.alpha, "test",
            "one-sided Mann-Whitney U (exact, or normal approximation for large samples)", "common",
            common, "allow_mismatch", allow_mismatch, "exit_code", rc, "totals", "regression",
            (json_int_t)counts[CUIPC_VERDICT_REGRESSION], "undecided",
            (json_int_t)counts[CUIPC_VERDICT_UNDECIDED], "skipped",
            (json_int_t)counts[CUIPC_VERDICT_SKIPPED], "ok", (json_int_t)counts[CUIPC_VERDICT_OK]);
        json_object_set(doc, "scenarios", scenarios);
        if (doc == NULL || !write_json(json_path, doc))
            rc = EXIT_BAD_INPUT;
        json_decref(doc);
    }
    json_decref(env_diff);
    json_decref(content_diff);
    json_decref(scenarios);
    json_decref(only_base);
    json_decref(only_new);
    free_loaded(&base);
    free_loaded(&cur);
    return rc;
}
