/* Bounded reads of regular files (see read_file.h). */
#include "read_file.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

FILE *cuipc_h_open_regular(const char *path, const char *mode, uint64_t max) {
    struct stat st;
    if (stat(path, &st) != 0)
        return NULL;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        errno = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
        return NULL;
    }
    return fopen(path, mode);
}

char *cuipc_h_read_file_max(const char *path, uint64_t max, size_t *len) {
    FILE *f = cuipc_h_open_regular(path, "rb", max);
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (n > max) { /* grew while read */
            free(buf);
            fclose(f);
            errno = EFBIG;
            return NULL;
        }
        if (n + 1 == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    int err = ferror(f) ? EIO : 0;
    fclose(f);
    if (buf == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    if (err) {
        free(buf);
        errno = err;
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

char *cuipc_h_read_file(const char *path, size_t *len) {
    return cuipc_h_read_file_max(path, CUIPC_H_READ_MAX, len);
}
