/* Results writing and the summary table. */
#include "results.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cuipc/error.h"
#include "results_keys.h"

bool cuipc_mkdirs(const char *path, char *err, size_t errcap) {
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        snprintf(err, errcap, "%s: path too long", path);
        return false;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                snprintf(err, errcap, "mkdir %s: %s", buf, strerror(errno));
                return false;
            }
            *p = saved;
            if (saved == '\0')
                return true;
        }
    }
}

/* What res lacks of the shape compare relies on, written into why; false when nothing. */
static bool results_problem(const json_t *res, char *why, size_t cap) {
    json_t *ver = json_object_get(res, CUIPC_RK_SCHEMA_VERSION);
    const char *name = cuipc_results_name(res);
    const char *status = cuipc_results_status(res);
    if (!json_is_integer(ver) || json_integer_value(ver) != CUIPC_RESULTS_SCHEMA_VERSION)
        snprintf(why, cap, "schema_version is not %d", CUIPC_RESULTS_SCHEMA_VERSION);
    else if (name == NULL || status == NULL)
        snprintf(why, cap, "missing scenario.name or status");
    else if (strcmp(status, CUIPC_RESULT_PASSED) != 0 && strcmp(status, CUIPC_RESULT_FAILED) != 0 &&
             strcmp(status, CUIPC_RESULT_SKIPPED) != 0)
        snprintf(why, cap, "status '%s' is not passed, failed or skipped", status);
    else
        return false;
    return true;
}

cuipc_status cuipc_results_check(const json_t *res, const char *where) {
    char why[256];
    if (results_problem(res, why, sizeof why))
        return cuipc_error_set(CUIPC_ERR_INVALID_ARG, where, "not a results file: %s", why);
    return CUIPC_OK;
}

bool cuipc_results_write(const json_t *res, const char *dir, char *err, size_t errcap) {
    if (results_problem(res, err, errcap) || !cuipc_mkdirs(dir, err, errcap))
        return false;
    const char *name = cuipc_results_name(res);
    char path[1200], tmp[1300];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    if (json_dump_file(res, tmp, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10)) != 0) {
        snprintf(err, errcap, "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return false;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errcap, "rename %s -> %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

/* A number as text, or "-" where the results have none (skipped, crashed before measuring). */
static const char *fmt_num(const json_t *v, const char *fmt, char *buf, size_t cap) {
    if (!json_is_number(v))
        return "-";
    snprintf(buf, cap, fmt, json_number_value(v));
    return buf;
}

static const char *text_or(const char *t, const char *otherwise) {
    return t ? t : otherwise;
}

/* The leak column: the verdict, and what the scenario expected where that differs from clean
 * (a positive control that leaked did what it should). */
static const char *leak_cell(const json_t *leaks, char *buf, size_t cap) {
    const char *verdict = json_string_value(json_object_get(leaks, CUIPC_RK_VERDICT));
    const char *expected = json_string_value(json_object_get(leaks, CUIPC_RK_EXPECTED));
    if (verdict == NULL)
        return "-";
    if (expected == NULL || strcmp(expected, CUIPC_LEAK_LEAK) != 0)
        return verdict;
    if (strcmp(verdict, CUIPC_LEAK_LEAK) == 0)
        return "leak (expected)";
    snprintf(buf, cap, "%s (leak expected)", verdict);
    return buf;
}

enum { COL_NAME, COL_STATUS, COL_P50, COL_P99, COL_GBPS, COL_MPS, COL_LEAK, COL_REASON, COLS };

typedef struct summary_row {
    char cell[COLS][128]; /* a scenario name is at most 63 characters */
    const char *reason;   /* not truncated: the last column */
} summary_row;

static void summary_row_of(const json_t *r, summary_row *row) {
    const json_t *agg = cuipc_results_aggregate(r);
    const json_t *lat = cuipc_results_latency(r);
    bool measured = cuipc_results_latency_measured(r);
    char b[COLS][128];
    const char *cells[COLS] = {
        [COL_NAME] = text_or(cuipc_results_name(r), "?"),
        [COL_STATUS] = text_or(cuipc_results_status(r), "?"),
        [COL_P50] =
            measured ? fmt_num(json_object_get(lat, CUIPC_RK_P50), "%.1f", b[COL_P50], 128) : "-",
        [COL_P99] =
            measured ? fmt_num(json_object_get(lat, CUIPC_RK_P99), "%.1f", b[COL_P99], 128) : "-",
        [COL_GBPS] = fmt_num(json_object_get(agg, CUIPC_RK_GBPS), "%.3f", b[COL_GBPS], 128),
        [COL_MPS] = fmt_num(json_object_get(agg, CUIPC_RK_MSGS_PER_S), "%.0f", b[COL_MPS], 128),
        [COL_LEAK] = leak_cell(json_object_get(r, CUIPC_RK_LEAKS), b[COL_LEAK], 128),
        [COL_REASON] = "",
    };
    for (int c = 0; c < COLS; c++)
        snprintf(row->cell[c], sizeof row->cell[c], "%s", cells[c]);
    row->reason = text_or(cuipc_results_reason(r), "");
}

/* Columns as wide as their widest cell, so that no name (up to the parser's limit) pushes the
 * row out of line; the reason, last, is never cut. */
void cuipc_results_print_summary(FILE *f, json_t *const *results, size_t n) {
    static const char *const head[COLS] = {"scenario", "status", "p50_us", "p99_us",
                                           "GB/s",     "msgs/s", "leak",   "reason"};
    static const bool right[COLS] = {
        [COL_P50] = true, [COL_P99] = true, [COL_GBPS] = true, [COL_MPS] = true};
    summary_row *rows = calloc(n ? n : 1, sizeof *rows);
    if (rows == NULL)
        return;
    int width[COLS];
    for (int c = 0; c < COLS; c++)
        width[c] = (int)strlen(head[c]);
    for (size_t i = 0; i < n; i++) {
        summary_row_of(results[i], &rows[i]);
        for (int c = 0; c < COL_REASON; c++) {
            int w = (int)strlen(rows[i].cell[c]);
            width[c] = w > width[c] ? w : width[c];
        }
    }
    for (size_t i = 0; i <= n; i++) {
        for (int c = 0; c < COL_REASON; c++) {
            const char *t = i == 0 ? head[c] : rows[i - 1].cell[c];
            fprintf(f, right[c] ? "%*s " : "%-*s ", width[c], t);
        }
        fprintf(f, "%s\n", i == 0 ? head[COL_REASON] : rows[i - 1].reason);
    }
    free(rows);
    /* One line a CI log can be read by: a GPU job whose scenarios were all skipped shows it. */
    cuipc_results_totals totals;
    cuipc_results_tally(results, n, &totals);
    cuipc_results_print_totals(f, &totals);
}

void cuipc_results_tally(json_t *const *results, size_t n, cuipc_results_totals *t) {
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        if (cuipc_results_status_is(results[i], CUIPC_RESULT_PASSED))
            t->passed++;
        else if (cuipc_results_status_is(results[i], CUIPC_RESULT_SKIPPED))
            t->skipped++;
        else
            t->failed++; /* no status is no verdict: not a pass */
    }
}

void cuipc_results_print_totals(FILE *f, const cuipc_results_totals *t) {
    fprintf(f, "totals: %zu passed, %zu failed, %zu skipped\n", t->passed, t->failed, t->skipped);
}

void cuipc_results_print_done(FILE *f, size_t i, size_t n, const json_t *res, double seconds) {
    const char *name = text_or(cuipc_results_name(res), "?");
    const char *status = text_or(cuipc_results_status(res), "?");
    const char *reason = cuipc_results_reason(res);
    size_t said = strlen(status);
    if (reason != NULL && strncmp(reason, status, said) == 0 &&
        strncmp(reason + said, ": ", 2) == 0)
        reason += said + 2; /* "skipped: no GPU" after "skipped" */
    bool why = reason != NULL && strcmp(status, CUIPC_RESULT_PASSED) != 0;
    fprintf(f, "[%zu/%zu] %s %s %.1f s%s%s\n", i + 1, n, name, status, seconds, why ? ": " : "",
            why ? reason : "");
    fflush(f);
}
