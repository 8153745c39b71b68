/* A tiny scanner over already-validated JSON text that follows a key path to a value. */
#include "json_locate.h"

#include <string.h>

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* p at the opening quote; returns just past the closing one (or at the NUL). */
static const char *skip_string(const char *p) {
    p++;
    while (*p != '\0' && *p != '"') {
        if (*p == '\\' && p[1] != '\0')
            p++;
        p++;
    }
    return *p == '"' ? p + 1 : p;
}

static const char *skip_value(const char *p) {
    p = skip_ws(p);
    if (*p == '"')
        return skip_string(p);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (*p != '\0') {
            if (*p == '"') {
                p = skip_string(p);
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return p;
    }
    while (*p != '\0' && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
           *p != '\r' && *p != '\t')
        p++;
    return p;
}

static const char *find_member(const char *p, const char *key) {
    size_t klen = strlen(key);
    p = skip_ws(p) + 1; /* past '{' */
    for (;;) {
        p = skip_ws(p);
        if (*p != '"')
            return NULL;
        const char *name = p + 1;
        const char *after = skip_string(p);
        bool match = (size_t)(after - 1 - name) == klen && strncmp(name, key, klen) == 0;
        p = skip_ws(after);
        if (*p != ':')
            return NULL;
        p = skip_ws(p + 1);
        if (match)
            return p;
        p = skip_ws(skip_value(p));
        if (*p != ',')
            return NULL;
        p++;
    }
}

static const char *find_element(const char *p, long index) {
    p = skip_ws(p) + 1; /* past '[' */
    for (long i = 0;; i++) {
        p = skip_ws(p);
        if (*p == ']' || *p == '\0')
            return NULL;
        if (i == index)
            return p;
        p = skip_ws(skip_value(p));
        if (*p != ',')
            return NULL;
        p++;
    }
}

bool cuipc_json_locate(const char *text, const cuipc_json_seg *path, size_t depth, int *line,
                       int *col) {
    const char *p = skip_ws(text);
    for (size_t i = 0; i < depth && p != NULL; i++) {
        if (path[i].key != NULL)
            p = *p == '{' ? find_member(p, path[i].key) : NULL;
        else
            p = *p == '[' ? find_element(p, path[i].index) : NULL;
    }
    if (p == NULL)
        return false;
    int l = 1, c = 1;
    for (const char *q = text; q < p; q++) {
        if (*q == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
    return true;
}
