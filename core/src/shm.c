/* memfd-backed shared memory, cross-process futexes, clock and randomness. */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "error_internal.h"

int cuipc_memfd_create(const char *debug_name, uint64_t size) {
    /* memfd: no name in /dev/shm to guess or leak; the fd travels by inheritance or SCM_RIGHTS. */
    int fd = memfd_create(debug_name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        CUIPC_FAIL_ERRNO("memfd_create(%s)", debug_name);
        return -1;
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        CUIPC_FAIL_ERRNO("ftruncate(%s, %llu)", debug_name, (unsigned long long)size);
        close(fd);
        return -1;
    }
    /* The size is part of the contract with the peers: forbid changing it. */
    (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    return fd;
}

void *cuipc_shm_map(int fd, uint64_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        CUIPC_FAIL_ERRNO("mmap(fd %d, %llu bytes)", fd, (unsigned long long)size);
        return NULL;
    }
    return p;
}

void cuipc_shm_unmap(void *p, uint64_t size) {
    if (p)
        munmap(p, size);
}

cuipc_status cuipc_attach_args(const char *where, int fd, bool have_out) {
    if (!have_out) {
        if (fd >= 0)
            close(fd);
        return cuipc_error_set(CUIPC_ERR_INVALID_ARG, where, "out is NULL");
    }
    if (fd < 0)
        return cuipc_error_set(CUIPC_ERR_INVALID_ARG, where, "fd %d", fd);
    return CUIPC_OK;
}

uint64_t cuipc_fd_size(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
        CUIPC_FAIL_ERRNO("fstat(fd %d)", fd);
        return 0;
    }
    return (uint64_t)st.st_size;
}

cuipc_status cuipc_futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tsp = &ts;
    }
    /* Shared futex (no FUTEX_PRIVATE_FLAG): the word lives in memory mapped by several processes.
     */
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, expected, tsp, NULL, 0);
    if (r == 0 || errno == EAGAIN || errno == EINTR)
        return CUIPC_OK;
    if (errno == ETIMEDOUT)
        return CUIPC_ERR_TIMEOUT;
    return CUIPC_FAIL_ERRNO("futex wait");
}

void cuipc_futex_wake(_Atomic uint32_t *addr, int n) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

uint64_t cuipc_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cuipc_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

uint64_t cuipc_random_u64(void) {
    uint64_t v = 0;
    ssize_t n = getrandom(&v, sizeof v, 0);
    if (n != (ssize_t)sizeof v) {
        /* getrandom cannot fail for 8 bytes once the pool is initialised; mix the clock anyway. */
        v ^= cuipc_now_ns() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    }
    return v;
}
