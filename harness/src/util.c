/* Small helpers shared by the harness. */
#include "util.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

uint64_t cuipc_h_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cuipc_h_sleep_ns(uint64_t ns) {
    struct timespec req = {.tv_sec = (time_t)(ns / 1000000000ull),
                           .tv_nsec = (long)(ns % 1000000000ull)};
    while (nanosleep(&req, &req) != 0 && errno == EINTR) {
    }
}

void cuipc_h_touch(void *p, size_t n) {
    memset(p, 0xa5, n);
}

/* The kernel's default 50 us timer slack, plus a wake-up from an idle core, would be counted as
 * latency by an open loop that stamps the scheduled time: sleep short of the target with no
 * slack, then spin the rest. */
#define CUIPC_H_SPIN_TAIL_NS 80000ull

void cuipc_h_sleep_until_ns(uint64_t target_ns) {
    static bool slack_set;
    if (!slack_set) {
        (void)prctl(PR_SET_TIMERSLACK, 1ul, 0ul, 0ul, 0ul); /* best effort: only precision */
        slack_set = true;
    }
    uint64_t now = cuipc_h_now_ns();
    if (now + CUIPC_H_SPIN_TAIL_NS < target_ns)
        cuipc_h_sleep_ns(target_ns - now - CUIPC_H_SPIN_TAIL_NS);
    while (cuipc_h_now_ns() < target_ns) {
    }
}

const char *cuipc_h_format_size(uint64_t bytes, char *buf, size_t cap) {
    static const char *names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
    else if (v == floor(v))
        snprintf(buf, cap, "%.0f %s", v, names[u]);
    else
        snprintf(buf, cap, "%.2f %s", v, names[u]);
    return buf;
}

const char *cuipc_h_signal_name(int sig, char *buf, size_t cap) {
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev != NULL)
        snprintf(buf, cap, "SIG%s", abbrev);
    else
        snprintf(buf, cap, "SIG%d", sig);
    return buf;
}

bool cuipc_h_write_all(int fd, const void *p, size_t len) {
    const char *c = p;
    while (len > 0) {
        ssize_t n = write(fd, c, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        c += n;
        len -= (size_t)n;
    }
    return true;
}
