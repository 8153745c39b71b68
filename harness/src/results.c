/* Results writing and the summary table. */
#include "results.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

bool cuipc_results_check(const json_t *res, char *err, size_t errcap) {
    json_t *ver = json_object_get(res, "schema_version");
    const char *name = json_string_value(json_object_get(json_object_get(res, "scenario"), "name"));
    const char *status = json_string_value(json_object_get(res, "status"));
    if (!json_is_integer(ver) || json_integer_value(ver) != CUIPC_RESULTS_SCHEMA_VERSION) {
        snprintf(err, errcap, "schema_version is not %d", CUIPC_RESULTS_SCHEMA_VERSION);
        return false;
    }
    if (name == NULL || status == NULL) {
        snprintf(err, errcap, "missing scenario.name or status");
        return false;
    }
    if (strcmp(status, "passed") != 0 && strcmp(status, "failed") != 0 &&
        strcmp(status, "skipped") != 0) {
        snprintf(err, errcap, "status '%s' is not passed, failed or skipped", status);
        return false;
    }
    return true;
}

bool cuipc_results_write(const json_t *res, const char *dir, char *err, size_t errcap) {
    if (!cuipc_results_check(res, err, errcap) || !cuipc_mkdirs(dir, err, errcap))
        return false;
    const char *name = json_string_value(json_object_get(json_object_get(res, "scenario"), "name"));
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

void cuipc_results_print_summary(FILE *f, json_t *const *results, size_t n) {
    fprintf(f, "%-28s %-8s %10s %10s %9s %11s %-11s %s\n", "scenario", "status", "p50_us", "p99_us",
            "GB/s", "msgs/s", "leak", "reason");
    for (size_t i = 0; i < n; i++) {
        const json_t *r = results[i];
        const char *name =
            json_string_value(json_object_get(json_object_get(r, "scenario"), "name"));
        const char *status = json_string_value(json_object_get(r, "status"));
        const char *reason = json_string_value(json_object_get(r, "reason"));
        const char *leak =
            json_string_value(json_object_get(json_object_get(r, "leaks"), "verdict"));
        const json_t *agg = json_object_get(json_object_get(r, "throughput"), "aggregate");
        const json_t *lat = json_object_get(r, "latency_us");
        const json_t *count = json_object_get(lat, "count");
        bool measured = json_is_integer(count) && json_integer_value(count) > 0;
        char b1[32], b2[32], b3[32], b4[32];
        fprintf(f, "%-28s %-8s %10s %10s %9s %11s %-11s %s\n", name ? name : "?",
                status ? status : "?",
                measured ? fmt_num(json_object_get(lat, "p50"), "%.1f", b1, sizeof b1) : "-",
                measured ? fmt_num(json_object_get(lat, "p99"), "%.1f", b2, sizeof b2) : "-",
                fmt_num(json_object_get(agg, "gbps"), "%.3f", b3, sizeof b3),
                fmt_num(json_object_get(agg, "msgs_per_s"), "%.0f", b4, sizeof b4),
                leak ? leak : "-", reason ? reason : "");
    }
    /* One line a CI log can be read by: a GPU job whose scenarios were all skipped shows it. */
    size_t passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        const char *st = json_string_value(json_object_get(results[i], "status"));
        passed += st && strcmp(st, "passed") == 0;
        failed += st && strcmp(st, "failed") == 0;
        skipped += st && strcmp(st, "skipped") == 0;
    }
    fprintf(f, "totals: %zu passed, %zu failed, %zu skipped\n", passed, failed, skipped);
}
