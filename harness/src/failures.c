/* Failure reasons ordered root cause first. */
#include "failures.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void cuipc_failures_init(cuipc_failures *f) {
    f->entries = json_array();
}

void cuipc_failures_add(cuipc_failures *f, cuipc_failure_rank rank, double at_s, const char *fmt,
                        ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_array_append_new(f->entries, json_pack("[i, f, I, s]", (int)rank, at_s,
                                                (json_int_t)json_array_size(f->entries), buf));
}

size_t cuipc_failures_count(const cuipc_failures *f) {
    return json_array_size(f->entries);
}

static int by_cause(const void *a, const void *b) {
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t rx = json_integer_value(json_array_get(x, 0));
    json_int_t ry = json_integer_value(json_array_get(y, 0));
    if (rx != ry)
        return rx < ry ? -1 : 1;
    double tx = json_real_value(json_array_get(x, 1)), ty = json_real_value(json_array_get(y, 1));
    if (tx != ty)
        return tx < ty ? -1 : 1;
    json_int_t ix = json_integer_value(json_array_get(x, 2));
    json_int_t iy = json_integer_value(json_array_get(y, 2));
    return ix < iy ? -1 : ix > iy;
}

json_t *cuipc_failures_take(cuipc_failures *f) {
    size_t n = json_array_size(f->entries);
    json_t **sorted = calloc(n ? n : 1, sizeof *sorted);
    json_t *out = json_array();
    for (size_t i = 0; i < n && sorted; i++)
        sorted[i] = json_array_get(f->entries, i);
    if (sorted)
        qsort(sorted, n, sizeof *sorted, by_cause);
    for (size_t i = 0; i < n; i++) {
        json_t *e = sorted ? sorted[i] : json_array_get(f->entries, i);
        json_array_append(out, json_array_get(e, 3));
    }
    free(sorted);
    json_decref(f->entries);
    f->entries = json_array();
    return out;
}

void cuipc_failures_add_child(cuipc_failures *f, const cuipc_child_spec *spec,
                              const cuipc_child_result *r, const cuipc_supervise_outcome *out,
                              const char *report_error) {
    bool stopping = out->stopped_at_s > 0 && r->end_s > out->stopped_at_s;
    cuipc_failure_rank rank =
        r->stopped_by_supervisor || stopping ? CUIPC_FAILURE_CONSEQUENCE : CUIPC_FAILURE_CAUSE;
    if (report_error != NULL)
        cuipc_failures_add(f, rank, r->end_s, "%s %u: %s", spec->role, spec->index, report_error);
    if (!r->expected) {
        char desc[128];
        cuipc_failures_add(f, rank, r->end_s, "%s %u: %s", spec->role, spec->index,
                           cuipc_child_describe(r, desc, sizeof desc));
    }
}

void cuipc_failures_add_supervisor(cuipc_failures *f, const cuipc_supervise_outcome *out) {
    if (!out->ok && out->message[0] && out->first_failure < 0)
        cuipc_failures_add(f, CUIPC_FAILURE_SUPERVISOR, out->stopped_at_s, "%s", out->message);
}
