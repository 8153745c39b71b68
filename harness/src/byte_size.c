/* Byte sizes as scenarios, workloads and options spell them (see byte_size.h). */
#include "byte_size.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool cuipc_h_parse_bytes(const char *s, double *out) {
    static const struct {
        const char *suffix;
        double scale;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"KiB", 1024.0},
                 {"MiB", 1048576.0},
                 {"GiB", 1073741824.0},
                 {"TiB", 1099511627776.0},
                 {"KB", 1e3},
                 {"MB", 1e6},
                 {"GB", 1e9},
                 {"TB", 1e12}};
    if (s == NULL || *s == '\0')
        return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !(v >= 0) || !isfinite(v))
        return false;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            double bytes = v * units[i].scale;
            if (!(bytes < CUIPC_H_SIZE_LIMIT))
                return false;
            *out = bytes;
            return true;
        }
    }
    return false;
}

bool cuipc_h_parse_size(const char *s, uint64_t *out) {
    double bytes;
    if (!cuipc_h_parse_bytes(s, &bytes) || bytes != floor(bytes))
        return false;
    *out = (uint64_t)bytes;
    return true;
}
