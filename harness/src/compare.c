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

/* What the command line asked. */
typedef struct compare_args {
    cuipc_compare_opts o;
    bool common, allow_mismatch;
    const char *json_path, *base_path, *new_path;
} compare_args;

/* -1: go on; else the exit code (--help, --version, bad input). */
static int parse_compare_args(int argc, char **argv, compare_args *a) {
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
    /* The tolerances, by option letter: each a number with its flag's name in errors. */
    const struct {
        int ch;
        const char *flag;
        double *out;
    } numbers[] = {{'a', "--p50-tolerance", &a->o.p50_pct},
                   {'b', "--p99-tolerance", &a->o.p99_pct},
                   {'m', "--min-tolerance", &a->o.min_pct},
                   {'c', "--throughput-tolerance", &a->o.throughput_pct},
                   {'d', "--latency-floor-us", &a->o.latency_floor_us},
                   {'p', "--alpha", &a->o.alpha}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        bool ok = true, number = false;
        for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
            if (ch == numbers[i].ch) {
                ok = parse_pct(numbers[i].flag, optarg, numbers[i].out);
                number = true;
            }
        if (ch == 'p' && ok && !(a->o.alpha > 0 && a->o.alpha < 1)) {
            fprintf(stderr, "compare: --alpha must lie in (0, 1), got '%s'\n", optarg);
            ok = false;
        }
        if (ch == 'V') {
            printf("cuipc-harness %s\n", CUIPC_VERSION);
            return 0;
        } else if (ch == 'h') {
            usage(stdout);
            return 0;
        } else if (ch == 'C') {
            a->common = true;
        } else if (ch == 'M') {
            a->allow_mismatch = true;
        } else if (ch == 'j') {
            a->json_path = optarg;
        } else if (!number) {
            ok = false;
        }
        if (!ok)
            return EXIT_BAD_INPUT;
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: cuipc-harness compare [flags] BASE NEW (see --help)\n");
        return EXIT_BAD_INPUT;
    }
    a->base_path = argv[optind];
    a->new_path = argv[optind + 1];
    return -1;
}

/* The two sides paired by scenario name, and how their runs differ. */
typedef struct pairing {
    json_t *env_diff, *content_diff; /* host, GPU, driver, MPS; scenario content */
    json_t *only_base, *only_new;    /* names held by one side only */
    size_t matched;
} pairing;

static void pair_up(const loaded *base, const loaded *cur, pairing *pr) {
    pr->env_diff = json_array();
    pr->content_diff = json_array();
    pr->only_base = json_array();
    pr->only_new = json_array();
    pr->matched = 0;
    for (size_t i = 0; i < cur->n; i++) {
        const json_t *b = find(base, name_of(cur->items[i]));
        if (b == NULL) {
            json_array_append_new(pr->only_new, json_string(name_of(cur->items[i])));
            continue;
        }
        pr->matched++;
        json_t *content = json_array();
        cuipc_compare_mismatches(b, cur->items[i], pr->env_diff, content);
        size_t k;
        json_t *d;
        json_array_foreach(content, k, d) {
            char buf[800];
            snprintf(buf, sizeof buf, "%s: %s", name_of(cur->items[i]), json_string_value(d));
            json_array_append_new(pr->content_diff, json_string(buf));
        }
        json_decref(content);
    }
    for (size_t j = 0; j < base->n; j++)
        if (find(cur, name_of(base->items[j])) == NULL)
            json_array_append_new(pr->only_base, json_string(name_of(base->items[j])));
}

static void free_pairing(pairing *pr) {
    json_decref(pr->env_diff);
    json_decref(pr->content_diff);
    json_decref(pr->only_base);
    json_decref(pr->only_new);
}

/* Every paired scenario judged, and the ones only BASE holds (missing, unless --common): the
 * verdicts into scenarios and counts, the lines on stdout; the exit code. */
static int judge_all(const compare_args *a, const loaded *base, const loaded *cur,
                     const pairing *pr, bool mismatch, json_t *scenarios, size_t counts[4]) {
    for (size_t c = 0; c < cur->n; c++) {
        const json_t *b = find(base, name_of(cur->items[c]));
        if (b == NULL)
            continue;
        json_t *detail = json_pack("{s:s}", "scenario", name_of(cur->items[c]));
        counts[cuipc_compare_one(b, cur->items[c], &a->o, stdout, detail)]++;
        json_array_append_new(scenarios, detail);
    }
    size_t i;
    json_t *d;
    json_array_foreach(pr->only_base, i, d) {
        if (a->common) {
            printf("%s: not compared (only in BASE; --common)\n", json_string_value(d));
            continue;
        }
        printf("%s: REGRESSION missing from the new results\n", json_string_value(d));
        json_array_append_new(scenarios,
                              json_pack("{s:O, s:s}", "scenario", d, "verdict", "missing"));
        counts[CUIPC_VERDICT_REGRESSION]++;
    }
    json_array_foreach(pr->only_new, i, d)
        printf("%s: not compared (only in NEW)\n", json_string_value(d));
    printf("compare: %zu scenario(s) compared, %zu regression(s), %zu undecided, %zu "
           "skipped, %zu ok (one-sided Mann-Whitney U, alpha %g)%s\n",
           pr->matched, counts[CUIPC_VERDICT_REGRESSION], counts[CUIPC_VERDICT_UNDECIDED],
           counts[CUIPC_VERDICT_SKIPPED], counts[CUIPC_VERDICT_OK], a->o.alpha,
           mismatch ? "; runs differ, judged anyway (--allow-mismatch)" : "");
    if (counts[CUIPC_VERDICT_UNDECIDED])
        printf("compare: UNDECIDED: the repetitions could not have caught a change of the "
               "tolerance (TOO FEW: no p-value of these sample sizes reaches alpha / metrics; "
               "TOO NOISY: the base's own spread hides such a change); run both sides with "
               "--repetitions 6 or more on a quieter host, or widen the tolerance\n");
    return counts[CUIPC_VERDICT_REGRESSION]  ? EXIT_REGRESSION
           : counts[CUIPC_VERDICT_UNDECIDED] ? EXIT_UNDECIDED
                                             : 0;
}

/* --json: the verdicts, the pairing and the options. false when it cannot be written. */
static bool write_report(const compare_args *a, const pairing *pr, const char *refused, int rc,
                         const size_t counts[4], json_t *scenarios) {
    const cuipc_compare_opts *o = &a->o;
    json_t *doc = json_pack(
        "{s:i, s:s, s:s, s:O, s:O, s:o, s:o, s:o, s:{s:f, s:f, s:f, s:f, s:f, s:f, s:s, s:b, "
        "s:b}, "
        "s:i, s:{s:I, s:I, s:I, s:I}}",
        "schema_version", 1, "base", a->base_path, "new", a->new_path, "mismatches", pr->env_diff,
        "content_mismatches", pr->content_diff, "refused",
        refused ? json_string(refused) : json_null(), "only_in_base", json_incref(pr->only_base),
        "only_in_new", json_incref(pr->only_new), "options", "p50_tolerance_pct", o->p50_pct,
        "p99_tolerance_pct", o->p99_pct, "min_tolerance_pct", o->min_pct,
        "throughput_tolerance_pct", o->throughput_pct, "latency_floor_us", o->latency_floor_us,
        "alpha", o->alpha, "test",
        "one-sided Mann-Whitney U (exact, or normal approximation for large samples)", "common",
        a->common, "allow_mismatch", a->allow_mismatch, "exit_code", rc, "totals", "regression",
        (json_int_t)counts[CUIPC_VERDICT_REGRESSION], "undecided",
        (json_int_t)counts[CUIPC_VERDICT_UNDECIDED], "skipped",
        (json_int_t)counts[CUIPC_VERDICT_SKIPPED], "ok", (json_int_t)counts[CUIPC_VERDICT_OK]);
    json_object_set(doc, "scenarios", scenarios);
    bool ok = doc != NULL && write_json(a->json_path, doc);
    json_decref(doc);
    return ok;
}

int cuipc_compare_main(int argc, char **argv) {
    compare_args a = {.common = false};
    cuipc_compare_opts_init(&a.o);
    int rc = parse_compare_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    loaded base = {0}, cur = {0};
    if (!load_all(a.base_path, &base) || !load_all(a.new_path, &cur)) {
        free_loaded(&base);
        free_loaded(&cur);
        return EXIT_BAD_INPUT;
    }
    pairing pr;
    pair_up(&base, &cur, &pr);
    bool mismatch = json_array_size(pr.env_diff) + json_array_size(pr.content_diff) > 0;
    size_t i;
    json_t *d;
    json_array_foreach(pr.env_diff, i, d) printf("compare: MISMATCH %s\n", json_string_value(d));
    json_array_foreach(pr.content_diff, i, d)
        printf("compare: MISMATCH %s\n", json_string_value(d));
    const char *refused = NULL;
    if (mismatch && !a.allow_mismatch)
        refused = "the runs differ (above): refusing to judge them against each other "
                  "(--allow-mismatch to judge anyway)";
    else if (pr.matched == 0)
        refused = "no scenario is held by both sides";
    size_t counts[4] = {0};
    json_t *scenarios = json_array();
    if (refused == NULL) {
        rc = judge_all(&a, &base, &cur, &pr, mismatch, scenarios, counts);
    } else {
        printf("compare: REFUSED: %s\n", refused);
        rc = EXIT_BAD_INPUT;
    }
    if (a.json_path != NULL && !write_report(&a, &pr, refused, rc, counts, scenarios))
        rc = EXIT_BAD_INPUT;
    json_decref(scenarios);
    free_pairing(&pr);
    free_loaded(&base);
    free_loaded(&cur);
    return rc;
}
