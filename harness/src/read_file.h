/* Reading the files a scenario or workload names: regular files only, bounded, so a name like
 * /dev/zero or a FIFO is an error at once rather than a read that never ends or an open that
 * blocks. In the planner's library, the lowest layer that reads such files. */
#ifndef CUIPC_HARNESS_READ_FILE_H
#define CUIPC_HARNESS_READ_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CUIPC_H_READ_MAX (256ull << 20)

/* fopen(path, mode) for a regular file of at most max bytes; NULL with errno set (EINVAL: not a
 * regular file, EFBIG: larger than max). The type is checked before the open, which would
 * block on a FIFO. */
FILE *cuipc_h_open_regular(const char *path, const char *mode, uint64_t max);

/* Whole regular file of at most max bytes, NUL-terminated; NULL with errno set as above. */
char *cuipc_h_read_file_max(const char *path, uint64_t max, size_t *len);

/* cuipc_h_read_file_max with CUIPC_H_READ_MAX. */
char *cuipc_h_read_file(const char *path, size_t *len);

#endif
