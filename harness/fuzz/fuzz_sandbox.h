/* A private directory of small fixture files for the harness parser fuzzers, and an fopen()
 * wrapper (linked with -Wl,--wrap=fopen) that, while a parse runs, refuses to open for reading
 * anything outside that directory. Parsers resolve file names found in their input (trace files);
 * without this a mutated "/dev/zero" or "/proc/kcore" would make the fuzzer read forever. */
#ifndef CUIPC_HARNESS_FUZZ_SANDBOX_H
#define CUIPC_HARNESS_FUZZ_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct cuipc_fuzz_fixture {
    const char *path; /* relative to the sandbox; parent directories are created */
    const char *text;
} cuipc_fuzz_fixture;

/* Create the sandbox under $TMPDIR (or /tmp) holding the fixtures; it is removed at exit.
 * Aborts on failure: a fuzzer without its fixtures would test nothing useful. */
void cuipc_fuzz_sandbox_init(const cuipc_fuzz_fixture *fixtures, size_t n);

/* A rule every input must keep: when it is broken, say which (fuzzer, rule, detail) and abort,
 * so libFuzzer keeps the input as a reproducer. */
void cuipc_fuzz_require(const char *fuzzer, bool ok, const char *rule, const char *detail);

/* CUIPC_FUZZ_VERBOSE=1: the fuzzers say what became of each input (for reading reproducers). */
bool cuipc_fuzz_verbose(void);

/* Absolute, symlink-free path of the sandbox directory. */
const char *cuipc_fuzz_sandbox_dir(void);

/* Replace the contents of sandbox file rel (one of the fixtures) with len bytes. */
void cuipc_fuzz_sandbox_write(const char *rel, const void *data, size_t len);

/* Between enter and leave, fopen(path, "r...") outside the sandbox fails with EACCES. */
void cuipc_fuzz_sandbox_enter(void);
void cuipc_fuzz_sandbox_leave(void);

/* Linker-mandated names for the wrapped fopen (not cuipc_-prefixed on purpose). */
FILE *__real_fopen(const char *path, const char *mode);
FILE *__wrap_fopen(const char *path, const char *mode);

#endif
