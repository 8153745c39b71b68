/* Fork, barrier, reap with a deadline: the one place that decides whether children are alive. */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

void cuipc_supervisor_opts_init(cuipc_supervisor_opts *o) {
    memset(o, 0, sizeof *o);
    o->ready_timeout_s = 30.0;
    o->run_timeout_s = 120.0;
    o->grace_s = 2.0;
    o->tick_ms = 20;
}

bool cuipc_role_ready(const cuipc_role_ctx *ctx) {
    char b = 'R';
    return cuipc_h_write_all(ctx->ready_fd, &b, 1);
}

bool cuipc_role_wait_go(const cuipc_role_ctx *ctx, int timeout_ms) {
    struct pollfd p = {.fd = ctx->go_fd, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (r <= 0)
        return false;
    char b;
    ssize_t n;
    while ((n = read(ctx->go_fd, &b, 1)) < 0 && errno == EINTR) {
    }
    return n == 1 && b == 'G';
}

const char *cuipc_child_describe(const cuipc_child_result *r, char *buf, size_t cap) {
    char sig[32];
    if (r->pid <= 0)
        snprintf(buf, cap, "not started");
    else if (r->exited)
        snprintf(buf, cap, "exit %d", r->exit_code);
    else if (r->signal)
        snprintf(buf, cap, "killed by %s%s", cuipc_h_signal_name(r->signal, sig, sizeof sig),
                 r->stopped_by_supervisor ? " (sent by the supervisor)" : "");
    else
        snprintf(buf, cap, "still running");
    return buf;
}

static bool end_is_expected(const cuipc_child_spec *s, const cuipc_child_result *r) {
    if (r->exited)
        return r->exit_code == 0 || s->may_fail;
    return s->expected_signal != 0 && r->signal == s->expected_signal && !r->stopped_by_supervisor;
}

typedef struct sv_state {
    const cuipc_child_spec *specs;
    cuipc_child_result *res;
    size_t n;
    size_t alive;
    uint64_t t0;
    uint64_t term_sent_ns; /* 0: none sent yet */
    const cuipc_supervisor_opts *opts;
    cuipc_supervise_outcome *out;
} sv_state;

static void signal_alive(sv_state *st, int sig) {
    for (size_t i = 0; i < st->n; i++) {
        if (st->res[i].pid > 0 && !st->res[i].exited && st->res[i].signal == 0) {
            kill(st->res[i].pid, sig);
            st->res[i].stopped_by_supervisor = true;
        }
    }
}

/* Stop whatever still runs: SIGTERM now, SIGKILL after the grace period (see reap_some). */
static void stop_all(sv_state *st, const char *why) {
    if (st->term_sent_ns != 0)
        return;
    if (st->out->message[0] == '\0' && why != st->out->message)
        snprintf(st->out->message, sizeof st->out->message, "%s", why);
    signal_alive(st, SIGTERM);
    st->term_sent_ns = cuipc_h_now_ns();
    st->out->stopped_at_s = (double)(st->term_sent_ns - st->t0) / 1e9;
}

/* Reap every child that ended; returns how many were reaped. */
static size_t reap_some(sv_state *st) {
    size_t reaped = 0;
    for (size_t i = 0; i < st->n; i++) {
        cuipc_child_result *r = &st->res[i];
        if (r->pid <= 0 || r->exited || r->signal != 0)
            continue;
        int status;
        pid_t p = waitpid(r->pid, &status, WNOHANG);
        if (p != r->pid)
            continue;
        reaped++;
        st->alive--;
        r->end_s = (double)(cuipc_h_now_ns() - st->t0) / 1e9;
        if (WIFEXITED(status)) {
            r->exited = true;
            r->exit_code = WEXITSTATUS(status);
            r->stopped_by_supervisor = false;
        } else {
            r->signal = WTERMSIG(status);
        }
        r->expected = end_is_expected(&st->specs[i], r);
        if (!r->expected && st->out->first_failure < 0 && st->term_sent_ns == 0) {
            char d[96];
            st->out->first_failure = (int)i;
            snprintf(st->out->message, sizeof st->out->message, "%s %u %s", st->specs[i].role,
                     st->specs[i].index, cuipc_child_describe(r, d, sizeof d));
            stop_all(st, st->out->message);
        }
    }
    return reaped;
}

static void child_main(const cuipc_child_spec *spec, int ready_w, int go_r, int ready_r, int go_w) {
    close(ready_r);
    close(go_w);
    /* If the supervisor dies, nobody is left to stop us: die with it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(125);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    cuipc_role_ctx ctx = {
        .ready_fd = ready_w, .go_fd = go_r, .role = spec->role, .index = spec->index};
    int rc = spec->fn(&ctx, spec->arg);
    fflush(NULL);
    _exit(rc & 0xff);
}

bool cuipc_supervise(const cuipc_child_spec *specs, size_t n, const cuipc_supervisor_opts *opts,
                     cuipc_child_result *results, cuipc_supervise_outcome *out) {
    memset(out, 0, sizeof *out);
    out->first_failure = -1;
    memset(results, 0, n * sizeof *results);
    if (n == 0 || n > CUIPC_SUPERVISOR_MAX_CHILDREN) {
        snprintf(out->message, sizeof out->message, "cannot supervise %zu children (1..%d)", n,
                 CUIPC_SUPERVISOR_MAX_CHILDREN);
        return false;
    }
    int ready[2], go[2];
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) {
        snprintf(out->message, sizeof out->message, "pipe: %s", strerror(errno));
        return false;
    }
    fflush(NULL); /* children must not flush our buffered output again */
    sv_state st = {
        .specs = specs, .res = results, .n = n, .t0 = cuipc_h_now_ns(), .opts = opts, .out = out};
    bool forked_all = true;
    for (size_t i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0)
            child_main(&specs[i], ready[1], go[0], ready[0], go[1]);
        if (pid < 0) {
            snprintf(out->message, sizeof out->message, "fork of %s %u: %s", specs[i].role,
                     specs[i].index, strerror(errno));
            forked_all = false;
            break;
        }
        results[i].pid = pid;
        st.alive++;
    }
    close(ready[1]);
    close(go[0]);
    if (!forked_all)
        stop_all(&st, out->message);

    uint64_t ready_deadline = st.t0 + (uint64_t)(opts->ready_timeout_s * 1e9);
    uint64_t run_deadline = st.t0 + (uint64_t)(opts->run_timeout_s * 1e9);
    uint64_t grace_ns = (uint64_t)(opts->grace_s * 1e9);
    size_t nready = 0;
    bool go_sent = false, killed = false;
    fcntl(ready[0], F_SETFL, O_NONBLOCK);

    while (st.alive > 0) {
        uint64_t now = cuipc_h_now_ns();
        if (!go_sent && st.term_sent_ns == 0) {
            char buf[CUIPC_SUPERVISOR_MAX_CHILDREN];
            ssize_t got = read(ready[0], buf, sizeof buf);
            if (got > 0)
                nready += (size_t)got;
            if (nready >= n) {
                /* One byte per child: each read takes exactly one. */
                memset(buf, 'G', n);
                cuipc_h_write_all(go[1], buf, n);
                go_sent = true;
                if (opts->run_timeout_from_go)
                    run_deadline = now + (uint64_t)(opts->run_timeout_s * 1e9);
                out->all_ready = true;
                for (size_t i = 0; i < n; i++)
                    results[i].ready = true;
            } else if (now > ready_deadline) {
                out->timed_out = true;
                snprintf(out->message, sizeof out->message,
                         "only %zu of %zu processes were ready after %.1f s", nready, n,
                         opts->ready_timeout_s);
                stop_all(&st, out->message);
            }
        }
        if (opts->stop_flag && *opts->stop_flag && st.term_sent_ns == 0) {
            snprintf(out->message, sizeof out->message, "interrupted by signal %d",
                     (int)*opts->stop_flag);
            stop_all(&st, out->message);
        }
        if (now > run_deadline && st.term_sent_ns == 0) {
            out->timed_out = true;
            snprintf(out->message, sizeof out->message,
                     "run timed out after %.1f s%s with %zu process(es) still running",
                     opts->run_timeout_s,
                     opts->run_timeout_from_go && go_sent ? " from the go" : "", st.alive);
            stop_all(&st, out->message);
        }
        if (st.term_sent_ns != 0 && !killed && now - st.term_sent_ns > grace_ns) {
            signal_alive(&st, SIGKILL);
            killed = true;
        }
        if (reap_some(&st) == 0) {
            if (opts->tick)
                opts->tick(opts->tick_ctx);
            cuipc_h_sleep_ns((uint64_t)(opts->tick_ms > 0 ? opts->tick_ms : 20) * 1000000ull /
                             (go_sent ? 1 : 4));
        }
        if (!go_sent && st.alive < n && st.term_sent_ns == 0) {
            /* Someone ended before the start: expected or not, the barrier cannot complete. */
            if (out->first_failure < 0)
                snprintf(out->message, sizeof out->message,
                         "a process ended before every process was ready");
            stop_all(&st, out->message);
        }
    }
    close(ready[0]);
    close(go[1]);
    out->wall_s = (double)(cuipc_h_now_ns() - st.t0) / 1e9;
    out->ok = forked_all && out->all_ready && !out->timed_out && out->first_failure < 0;
    for (size_t i = 0; i < n && out->ok; i++)
        out->ok = results[i].expected;
    return forked_all;
}
