/* Strict typed reads from parsed JSON for the harness's input files (scenarios and planner
 * workloads): every object has a fixed key set, every value a type and a range, and every error
 * names the file, the line:column of the offending value and its key path ("$.pool.slots").
 *
 * Error convention: each function returns true when the value is good (or absent and optional),
 * and false after setting the message that cuipc_last_error() returns (cuipc/error.h, where =
 * "file:line:col"); a parser's steps pass the false up, and its entry point returns a
 * cuipc_status (CUIPC_ERR_INVALID_ARG) with that message, as libcuipc's functions do. A getter
 * leaves *out untouched when the key is absent. */
#ifndef CUIPC_HARNESS_JSON_GET_H
#define CUIPC_HARNESS_JSON_GET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json_locate.h"

#define CUIPC_JPATH_MAX 16
/* A message's "where" (file:line:col) at most, terminator included: past libcuipc's message. */
#define CUIPC_JWHERE_MAX 1100

typedef struct cuipc_jctx {
    const char *file; /* names the file in messages */
    const char *text; /* the JSON source, for line:column; NULL: messages name the path alone */
    cuipc_json_seg segs[CUIPC_JPATH_MAX];
    size_t depth; /* may pass CUIPC_JPATH_MAX: deeper segments are not named */
} cuipc_jctx;

/* The path of the value being read: push before reading a member or an element, pop after. */
void cuipc_jpush_key(cuipc_jctx *c, const char *key);
void cuipc_jpush_index(cuipc_jctx *c, long index);
void cuipc_jpop(cuipc_jctx *c);

/* "file:line:col: $.path: message" for cuipc_last_error(); returns false. */
__attribute__((format(printf, 2, 3))) bool cuipc_jfail(cuipc_jctx *c, const char *fmt, ...);
/* "missing required key 'key'" at the current path. */
bool cuipc_jmissing(cuipc_jctx *c, const char *key);

/* "an object", "an integer", "a string", ... for messages. */
const char *cuipc_json_type_name(const json_t *v);

/* obj is an object whose keys are all in allowed (NULL-terminated). */
bool cuipc_jcheck_object(cuipc_jctx *c, const json_t *obj, const char *const *allowed);

/* Enter a sub-object with keys in allowed: returns it with its key pushed (the caller pops), or
 * NULL when absent (then *bad says whether a required one was missing) or wrong (*bad set). */
const json_t *cuipc_jenter(cuipc_jctx *c, const json_t *obj, const char *key, bool required,
                           const char *const *allowed, bool *bad);

/* Integers in [min, max]. */
bool cuipc_jget_uint(cuipc_jctx *c, const json_t *obj, const char *key, bool required, uint64_t min,
                     uint64_t max, uint64_t *out);
bool cuipc_jget_u32(cuipc_jctx *c, const json_t *obj, const char *key, bool required, uint32_t min,
                    uint32_t max, uint32_t *out);

/* Numbers in [min, max]. */
bool cuipc_jget_double(cuipc_jctx *c, const json_t *obj, const char *key, bool required, double min,
                       double max, double *out);
bool cuipc_jnumber_value(cuipc_jctx *c, const json_t *v, double min, double max, double *out);

/* Byte quantities: a number or a size string (byte_size.h), in [min, max]. A real number:
 * the planner's distribution parameters. */
bool cuipc_jget_bytes(cuipc_jctx *c, const json_t *obj, const char *key, bool required, double min,
                      double max, double *out);
bool cuipc_jbytes_value(cuipc_jctx *c, const json_t *v, double min, double max, double *out);

/* Byte counts: a non-negative integer or a size string of whole bytes, at least min. */
bool cuipc_jget_size(cuipc_jctx *c, const json_t *obj, const char *key, bool required, uint64_t min,
                     uint64_t *out);
bool cuipc_jsize_value(cuipc_jctx *c, const json_t *v, uint64_t min, uint64_t *out);

bool cuipc_jget_bool(cuipc_jctx *c, const json_t *obj, const char *key, bool *out);

/* A string shorter than cap, copied into out. */
bool cuipc_jget_string(cuipc_jctx *c, const json_t *obj, const char *key, bool required, char *out,
                       size_t cap);

/* One of names[0..n) (NULL entries are not offered) -> its index. */
bool cuipc_jenum_value(cuipc_jctx *c, const json_t *v, const char *const *names, size_t n,
                       int *out);
bool cuipc_jget_enum(cuipc_jctx *c, const json_t *obj, const char *key, bool required,
                     const char *const *names, size_t n, int *out);

/* Compound literals for the lists above. */
#define CUIPC_JNAMES(...) ((const char *const[]){__VA_ARGS__})
#define CUIPC_JKEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

#endif
