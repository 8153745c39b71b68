/* Find where a value sits in JSON source text, so errors found after parsing (jansson keeps no
 * positions) can still say line:column. */
#ifndef CUIPC_HARNESS_JSON_LOCATE_H
#define CUIPC_HARNESS_JSON_LOCATE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cuipc_json_seg {
    const char *key; /* object member, or NULL for an array element */
    long index;
} cuipc_json_seg;

/* Line and column (1-based) of the value at path in text, which must be valid JSON.
 * False when the path is not found (or a key uses escapes, which are not decoded). */
bool cuipc_json_locate(const char *text, const cuipc_json_seg *path, size_t depth, int *line,
                       int *col);

#endif
