/* Fixture directory and read-only fopen confinement for the harness parser fuzzers. */
#include "fuzz_sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SANDBOX_MAX_ENTRIES 64

static char sandbox_dir[PATH_MAX];
static size_t sandbox_dir_len;
static bool sandbox_active;
/* Files and directories created, in creation order, so exit can remove them in reverse. */
static char *created[SANDBOX_MAX_ENTRIES];
static size_t n_created;

static void die(const char *what, const char *path) {
    fprintf(stderr, "fuzz sandbox: %s %s: %s\n", what, path, strerror(errno));
    abort();
}

static void remember(const char *path) {
    if (n_created == SANDBOX_MAX_ENTRIES) {
        fprintf(stderr, "fuzz sandbox: more than %d entries\n", SANDBOX_MAX_ENTRIES);
        abort();
    }
    created[n_created] = strdup(path);
    if (created[n_created] == NULL)
        die("strdup", path);
    n_created++;
}

static void remove_all(void) {
    while (n_created > 0) {
        n_created--;
        remove(created[n_created]);
        free(created[n_created]);
    }
}

/* mkdir -p for the parents of sandbox-relative path rel. */
static void make_parents(const char *rel) {
    char path[PATH_MAX];
    int len = snprintf(path, sizeof path, "%s/%s", sandbox_dir, rel);
    if (len < 0 || (size_t)len >= sizeof path)
        die("path too long:", rel);
    for (char *p = path + sandbox_dir_len + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        if (mkdir(path, 0700) == 0)
            remember(path);
        else if (errno != EEXIST)
            die("mkdir", path);
        *p = '/';
    }
}

void cuipc_fuzz_sandbox_write(const char *rel, const void *data, size_t len) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", sandbox_dir, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        die("open", path);
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write", path);
        p += n;
        len -= (size_t)n;
    }
    close(fd);
}

void cuipc_fuzz_require(const char *fuzzer, bool ok, const char *rule, const char *detail) {
    if (!ok) {
        fprintf(stderr, "%s: broken rule: %s (%s)\n", fuzzer, rule, detail);
        abort();
    }
}

bool cuipc_fuzz_verbose(void) {
    const char *v = getenv("CUIPC_FUZZ_VERBOSE");
    return v != NULL && *v != '\0' && *v != '0';
}

void cuipc_fuzz_sandbox_init(const cuipc_fuzz_fixture *fixtures, size_t n) {
    const char *tmp = getenv("TMPDIR");
    char templ[PATH_MAX];
    snprintf(templ, sizeof templ, "%s/cuipc-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(templ) == NULL)
        die("mkdtemp", templ);
    /* Canonical form, so realpath() results of files inside compare by prefix. */
    if (realpath(templ, sandbox_dir) == NULL)
        die("realpath", templ);
    sandbox_dir_len = strlen(sandbox_dir);
    remember(sandbox_dir);
    atexit(remove_all);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        make_parents(fixtures[i].path);
        snprintf(path, sizeof path, "%s/%s", sandbox_dir, fixtures[i].path);
        cuipc_fuzz_sandbox_write(fixtures[i].path, fixtures[i].text, strlen(fixtures[i].text));
        remember(path);
    }
}

const char *cuipc_fuzz_sandbox_dir(void) {
    return sandbox_dir;
}

void cuipc_fuzz_sandbox_enter(void) {
    sandbox_active = true;
}

void cuipc_fuzz_sandbox_leave(void) {
    sandbox_active = false;
}

/* Inside: the canonical path (symlinks and ".." resolved) lies under the sandbox directory. */
static bool inside_sandbox(const char *path) {
    char real[PATH_MAX];
    if (realpath(path, real) == NULL)
        return false; /* errno from realpath, e.g. ENOENT: the same error fopen would give */
    if (strncmp(real, sandbox_dir, sandbox_dir_len) != 0 ||
        (real[sandbox_dir_len] != '/' && real[sandbox_dir_len] != '\0')) {
        errno = EACCES;
        return false;
    }
    return true;
}

FILE *__wrap_fopen(const char *path, const char *mode) {
    /* Writes pass: libFuzzer itself writes crash artifacts with fopen(..., "wb"). */
    if (sandbox_active && mode[0] == 'r' && !inside_sandbox(path))
        return NULL;
    return __real_fopen(path, mode);
}
