/* Strict typed JSON reads with located errors (see json_get.h). */
#include "json_get.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "byte_size.h"
#include "cuipc/error.h"

#define SIZE_EXAMPLES "(examples: 4096, \"64KiB\", \"1.5GB\")"

void cuipc_jpush_key(cuipc_jctx *c, const char *key) {
    if (c->depth < CUIPC_JPATH_MAX)
        c->segs[c->depth] = (cuipc_json_seg){.key = key, .index = 0};
    c->depth++;
}

void cuipc_jpush_index(cuipc_jctx *c, long index) {
    if (c->depth < CUIPC_JPATH_MAX)
        c->segs[c->depth] = (cuipc_json_seg){.key = NULL, .index = index};
    c->depth++;
}

void cuipc_jpop(cuipc_jctx *c) {
    c->depth--;
}

static void path_string(const cuipc_jctx *c, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "$");
    size_t depth = c->depth < CUIPC_JPATH_MAX ? c->depth : CUIPC_JPATH_MAX;
    for (size_t i = 0; i < depth && n < cap; i++) {
        if (c->segs[i].key != NULL)
            n += (size_t)snprintf(buf + n, cap - n, ".%s", c->segs[i].key);
        else
            n += (size_t)snprintf(buf + n, cap - n, "[%ld]", c->segs[i].index);
    }
}

bool cuipc_jfail(cuipc_jctx *c, const char *fmt, ...) {
    /* where: the file and the value's line:column; longer than the message can be, so that the
     * message is cut where a whole "where: what" would be. */
    char path[256], msg[512], where[CUIPC_JWHERE_MAX];
    path_string(c, path, sizeof path);
    int line, col;
    size_t depth = c->depth < CUIPC_JPATH_MAX ? c->depth : CUIPC_JPATH_MAX;
    if (c->text != NULL && cuipc_json_locate(c->text, c->segs, depth, &line, &col))
        snprintf(where, sizeof where, "%s:%d:%d", c->file, line, col);
    else
        snprintf(where, sizeof where, "%s", c->file);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap); /* fmt's arguments may be cuipc_last_error() itself */
    va_end(ap);
    cuipc_error_set(CUIPC_ERR_INVALID_ARG, where, "%s: %s", path, msg);
    return false;
}

bool cuipc_jmissing(cuipc_jctx *c, const char *key) {
    return cuipc_jfail(c, "missing required key '%s'", key);
}

const char *cuipc_json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* "a, b, c" from a list of n names (n = SIZE_MAX: up to a NULL); NULL entries are skipped. */
static void name_list(const char *const *names, size_t n, char *list, size_t cap) {
    size_t len = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && (n != SIZE_MAX || names[i] != NULL) && len < cap; i++)
        if (names[i] != NULL)
            len += (size_t)snprintf(list + len, cap - len, "%s%s", len ? ", " : "", names[i]);
}

bool cuipc_jcheck_object(cuipc_jctx *c, const json_t *obj, const char *const *allowed) {
    if (!json_is_object(obj))
        return cuipc_jfail(c, "expected an object, got %s", cuipc_json_type_name(obj));
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        bool known = false;
        for (const char *const *a = allowed; *a != NULL; a++)
            known = known || strcmp(*a, key) == 0;
        if (!known) {
            char list[256];
            name_list(allowed, SIZE_MAX, list, sizeof list);
            cuipc_jpush_key(c, key);
            cuipc_jfail(c, "unknown key '%s' (allowed: %s)", key, list);
            cuipc_jpop(c);
            return false;
        }
    }
    return true;
}

const json_t *cuipc_jenter(cuipc_jctx *c, const json_t *obj, const char *key, bool required,
                           const char *const *allowed, bool *bad) {
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (required)
            *bad = !cuipc_jmissing(c, key);
        return NULL;
    }
    cuipc_jpush_key(c, key);
    if (!cuipc_jcheck_object(c, v, allowed)) {
        *bad = true;
        return NULL;
    }
    return v;
}

/* The body of every getter: key absent -> true unless required; present -> the check over v,
 * with key on the path for its message. */
#define GET_MEMBER(c, obj, key, required, check)                                                   \
    do {                                                                                           \
        json_t *v = json_object_get((obj), (key));                                                 \
        if (v == NULL)                                                                             \
            return (required) ? cuipc_jmissing((c), (key)) : true;                                 \
        cuipc_jpush_key((c), (key));                                                               \
        bool ok_ = (check);                                                                        \
        cuipc_jpop(c);                                                                             \
        return ok_;                                                                                \
    } while (0)

static bool uint_value(cuipc_jctx *c, const json_t *v, uint64_t min, uint64_t max, uint64_t *out) {
    if (!json_is_integer(v))
        return cuipc_jfail(c, "expected an integer, got %s", cuipc_json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x < min || (uint64_t)x > max)
        return cuipc_jfail(c, "%lld is out of range [%llu, %llu]", (long long)x,
                           (unsigned long long)min, (unsigned long long)max);
    *out = (uint64_t)x;
    return true;
}

bool cuipc_jget_uint(cuipc_jctx *c, const json_t *obj, const char *key, bool required, uint64_t min,
                     uint64_t max, uint64_t *out) {
    GET_MEMBER(c, obj, key, required, uint_value(c, v, min, max, out));
}

bool cuipc_jget_u32(cuipc_jctx *c, const json_t *obj, const char *key, bool required, uint32_t min,
                    uint32_t max, uint32_t *out) {
    uint64_t v = *out;
    if (!cuipc_jget_uint(c, obj, key, required, min, max, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool in_range(cuipc_jctx *c, double x, double min, double max, double *out) {
    if (!(x >= min && x <= max))
        return cuipc_jfail(c, "%g is out of range [%g, %g]", x, min, max);
    *out = x;
    return true;
}

bool cuipc_jnumber_value(cuipc_jctx *c, const json_t *v, double min, double max, double *out) {
    if (!json_is_number(v))
        return cuipc_jfail(c, "expected a number, got %s", cuipc_json_type_name(v));
    return in_range(c, json_number_value(v), min, max, out);
}

bool cuipc_jget_double(cuipc_jctx *c, const json_t *obj, const char *key, bool required, double min,
                       double max, double *out) {
    GET_MEMBER(c, obj, key, required, cuipc_jnumber_value(c, v, min, max, out));
}

bool cuipc_jbytes_value(cuipc_jctx *c, const json_t *v, double min, double max, double *out) {
    double x;
    if (json_is_number(v))
        x = json_number_value(v);
    else if (!json_is_string(v))
        return cuipc_jfail(c, "expected a size (bytes, or a string like \"64MiB\"), got %s",
                           cuipc_json_type_name(v));
    else if (!cuipc_h_parse_bytes(json_string_value(v), &x))
        return cuipc_jfail(c, "'%s' is not a size " SIZE_EXAMPLES, json_string_value(v));
    return in_range(c, x, min, max, out);
}

bool cuipc_jget_bytes(cuipc_jctx *c, const json_t *obj, const char *key, bool required, double min,
                      double max, double *out) {
    GET_MEMBER(c, obj, key, required, cuipc_jbytes_value(c, v, min, max, out));
}

bool cuipc_jsize_value(cuipc_jctx *c, const json_t *v, uint64_t min, uint64_t *out) {
    uint64_t bytes = 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        bytes = (uint64_t)json_integer_value(v);
    else if (json_is_string(v)) {
        if (!cuipc_h_parse_size(json_string_value(v), &bytes))
            return cuipc_jfail(c, "'%s' is not a size " SIZE_EXAMPLES, json_string_value(v));
    } else if (json_is_integer(v))
        return cuipc_jfail(c, "size must not be negative (%lld)", (long long)json_integer_value(v));
    else
        return cuipc_jfail(c, "expected a size (integer bytes or a string like \"64MiB\"), got %s",
                           cuipc_json_type_name(v));
    if (bytes < min)
        return cuipc_jfail(c, "size %llu is below the minimum %llu", (unsigned long long)bytes,
                           (unsigned long long)min);
    *out = bytes;
    return true;
}

bool cuipc_jget_size(cuipc_jctx *c, const json_t *obj, const char *key, bool required, uint64_t min,
                     uint64_t *out) {
    GET_MEMBER(c, obj, key, required, cuipc_jsize_value(c, v, min, out));
}

static bool bool_value(cuipc_jctx *c, const json_t *v, bool *out) {
    if (!json_is_boolean(v))
        return cuipc_jfail(c, "expected true or false, got %s", cuipc_json_type_name(v));
    *out = json_is_true(v);
    return true;
}

bool cuipc_jget_bool(cuipc_jctx *c, const json_t *obj, const char *key, bool *out) {
    GET_MEMBER(c, obj, key, false, bool_value(c, v, out));
}

static bool string_value(cuipc_jctx *c, const json_t *v, char *out, size_t cap) {
    if (!json_is_string(v))
        return cuipc_jfail(c, "expected a string, got %s", cuipc_json_type_name(v));
    if (json_string_length(v) >= cap)
        return cuipc_jfail(c, "string is longer than %zu characters", cap - 1);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return true;
}

bool cuipc_jget_string(cuipc_jctx *c, const json_t *obj, const char *key, bool required, char *out,
                       size_t cap) {
    GET_MEMBER(c, obj, key, required, string_value(c, v, out, cap));
}

bool cuipc_jenum_value(cuipc_jctx *c, const json_t *v, const char *const *names, size_t n,
                       int *out) {
    if (!json_is_string(v))
        return cuipc_jfail(c, "expected a string, got %s", cuipc_json_type_name(v));
    for (size_t i = 0; i < n; i++) {
        if (names[i] != NULL && strcmp(names[i], json_string_value(v)) == 0) {
            *out = (int)i;
            return true;
        }
    }
    char list[256];
    name_list(names, n, list, sizeof list);
    return cuipc_jfail(c, "'%s' is not one of: %s", json_string_value(v), list);
}

bool cuipc_jget_enum(cuipc_jctx *c, const json_t *obj, const char *key, bool required,
                     const char *const *names, size_t n, int *out) {
    GET_MEMBER(c, obj, key, required, cuipc_jenum_value(c, v, names, n, out));
}
