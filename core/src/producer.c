/* The producer's set-up and tear-down: its pools, the Unix socket consumers attach on (the
 * handshake is producer_attach.c's), the monitor thread that watches their connections so that
 * a consumer that dies is noticed at once and its chunks are reclaimed, close, drain and stats.
 * Messages go out through send.c. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdint.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error_internal.h"
#include "shm.h"
#include "socket.h"
#include "transport_internal.h"

void cuipc_producer_config_init(cuipc_producer_config *c) {
    memset(c, 0, sizeof *c);
    c->mode = CUIPC_MODE_DEFAULT;
    c->gpu_pool_bytes = 0;
    c->host_pool_bytes = 64ull << 20;
    c->device = 0;
    c->max_consumers = 1;
    c->slots = 4096;
    c->ring_bytes = 1ull << 20;
    c->alignment = 256;
    c->fit = CUIPC_FIT_BEST;
    c->full_policy = CUIPC_FULL_WAIT;
    c->full_timeout_ns = 1000ll * 1000 * 1000;
}

static cuipc_status make_pool(const cuipc_producer_config *c, int memory, uint64_t size,
                              cuipc_pool **out) {
    cuipc_pool_config pc;
    cuipc_pool_config_init(&pc);
    pc.memory = memory;
    pc.size = size;
    pc.device = c->device;
    pc.max_consumers = c->max_consumers;
    pc.slots = c->slots;
    pc.alignment = c->alignment;
    pc.fit = c->fit;
    return cuipc_pool_create(&pc, out);
}

/* Sleeps in poll() on every consumer connection: a hang-up means the consumer exited. */
static void *monitor_main(void *arg) {
    cuipc_producer *p = arg;
    struct pollfd fds[CUIPC_MAX_CONSUMERS + 1];
    uint32_t who[CUIPC_MAX_CONSUMERS + 1];
    while (!atomic_load(&p->stopping)) {
        int n = 0;
        fds[n] = (struct pollfd){.fd = p->wake_pipe[0], .events = POLLIN};
        who[n++] = UINT32_MAX;
        pthread_mutex_lock(&p->lock);
        for (uint32_t c = 0; c < p->cfg.max_consumers; c++) {
            if (!p->conns[c].attached)
                continue;
            fds[n] = (struct pollfd){.fd = p->conns[c].sock, .events = POLLIN | POLLRDHUP};
            who[n++] = c;
        }
        pthread_mutex_unlock(&p->lock);
        int r = poll(fds, (nfds_t)n, 1000);
        if (r <= 0)
            continue;
        if (fds[0].revents & POLLIN) {
            char buf[64];
            ssize_t got = read(p->wake_pipe[0], buf, sizeof buf);
            (void)got;
        }
        for (int i = 1; i < n; i++) {
            if (!(fds[i].revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL | POLLIN)))
                continue;
            /* After the handshake a consumer writes only its goodbye: readable means it is
             * leaving, on purpose or not. */
            pthread_mutex_lock(&p->lock);
            cuipc_consumer_conn *k = &p->conns[who[i]];
            if (k->attached && k->sock == fds[i].fd) {
                if (cuipc_socket_heard_goodbye(fds[i].fd))
                    k->said_goodbye = true;
                if (!cuipc_socket_peer_alive(fds[i].fd)) {
                    cuipc_producer_drop_consumer_locked(p, who[i]);
                    /* Free its ring now unless a send is under way (that send frees it after). */
                    if (pthread_mutex_trylock(&p->send_lock) == 0) {
                        cuipc_producer_reap_rings_locked(p);
                        pthread_mutex_unlock(&p->send_lock);
                    }
                }
            }
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

#define OWNER_FILE "owner.pid"

/* Remove the private directories that producers of this uid left when they died (a crash, a
 * SIGKILL): their owner file names a process that is gone. */
static void sweep_dead_dirs(const char *tmp) {
    DIR *d = opendir(tmp);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "cuipc-", 6) != 0 || strlen(e->d_name) != 12)
            continue;
        char dir[128], file[160];
        snprintf(dir, sizeof dir, "%s/%.12s", tmp, e->d_name); /* 12: checked above */
        struct stat st;
        if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid())
            continue;
        snprintf(file, sizeof file, "%s/" OWNER_FILE, dir);
        FILE *f = fopen(file, "r");
        int pid = 0;
        bool known = f && fscanf(f, "%d", &pid) == 1 && pid > 0;
        if (f)
            fclose(f);
        if (!known || kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        unlink(file);
        snprintf(file, sizeof file, "%s/attach.sock", dir);
        unlink(file);
        rmdir(dir);
    }
    closedir(d);
}

static void write_owner(const char *dir) {
    char file[128];
    snprintf(file, sizeof file, "%s/" OWNER_FILE, dir);
    FILE *f = fopen(file, "w");
    if (f) {
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
    }
}

static cuipc_status setup_socket(cuipc_producer *p) {
    if (p->cfg.socket_path) {
        if (strlen(p->cfg.socket_path) >= sizeof p->socket_path)
            return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "socket path longer than %zu bytes",
                              sizeof p->socket_path - 1);
        strcpy(p->socket_path, p->cfg.socket_path);
    } else {
        /* A private 0700 directory with an unpredictable name holds the socket. */
        const char *tmp = getenv("TMPDIR");
        if (!tmp || strlen(tmp) > 40)
            tmp = "/tmp";
        sweep_dead_dirs(tmp);
        snprintf(p->private_dir, sizeof p->private_dir, "%s/cuipc-XXXXXX", tmp);
        if (!mkdtemp(p->private_dir)) {
            p->private_dir[0] = '\0';
            return CUIPC_FAIL_ERRNO("mkdtemp in %s", tmp);
        }
        write_owner(p->private_dir);
        snprintf(p->socket_path, sizeof p->socket_path, "%s/attach.sock", p->private_dir);
    }
    return cuipc_socket_listen(p->socket_path, &p->listen_fd, &p->socket_file);
}

static cuipc_status validate_config(const cuipc_producer_config *c) {
    if (c->mode != CUIPC_MODE_DEFAULT && c->mode != CUIPC_MODE_CUDA_IPC &&
        c->mode != CUIPC_MODE_CUDA_IPC_POOL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "mode %d is not a cuipc_mode", (int)c->mode);
    if (c->max_consumers < 1 || c->max_consumers > CUIPC_MAX_CONSUMERS)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "max_consumers %u not in 1..%d", c->max_consumers,
                          CUIPC_MAX_CONSUMERS);
    if (c->mode == CUIPC_MODE_CUDA_IPC_POOL && c->gpu_pool_bytes == 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "mode cuda_ipc_pool needs gpu_pool_bytes > 0");
    if (c->mode == CUIPC_MODE_DEFAULT && c->host_pool_bytes == 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "mode default needs host_pool_bytes > 0");
    if (c->full_policy == CUIPC_FULL_FALLBACK && c->host_pool_bytes == 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "the fallback policy needs host_pool_bytes > 0");
    if (c->ring_bytes < CUIPC_RING_BYTES_MIN || c->ring_bytes > CUIPC_RING_BYTES_MAX ||
        (c->ring_bytes & (c->ring_bytes - 1)))
        return CUIPC_FAIL(
            CUIPC_ERR_INVALID_ARG, "ring_bytes %llu is not a power of two in [%llu, %llu]",
            (unsigned long long)c->ring_bytes, CUIPC_RING_BYTES_MIN, CUIPC_RING_BYTES_MAX);
    if ((unsigned)c->full_policy > CUIPC_FULL_FALLBACK)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "full_policy %d is not a cuipc_full_policy",
                          (int)c->full_policy);
    if ((unsigned)c->fit > CUIPC_FIT_FIRST)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "fit %d is not a cuipc_fit", (int)c->fit);
    return CUIPC_OK;
}

/* CUIPC_TEST_SEND_DELAY_US: for testing regression detection only (ci/compare-power). Every
 * send spins this long before it hands the message to the consumers: a regression in the
 * library's own path that no scenario shows. Unset or 0 in any real use. */
static cuipc_status test_send_delay(uint64_t *ns) {
    const char *v = getenv("CUIPC_TEST_SEND_DELAY_US");
    *ns = 0;
    if (v == NULL || *v == '\0')
        return CUIPC_OK;
    char *end;
    errno = 0;
    double us = strtod(v, &end);
    if (errno || end == v || *end || !(us >= 0) || us > 1e7)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "CUIPC_TEST_SEND_DELAY_US is '%s': expected microseconds in 0..1e7", v);
    *ns = (uint64_t)(us * 1e3);
    return CUIPC_OK;
}

cuipc_status cuipc_producer_create(const cuipc_producer_config *cfg, cuipc_producer **out) {
    if (!cfg || !out)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "config %p, out %p: neither may be NULL",
                          (const void *)cfg, (void *)out);
    *out = NULL;
    CUIPC_TRY(validate_config(cfg));
    uint64_t delay_ns;
    CUIPC_TRY(test_send_delay(&delay_ns));
    cuipc_producer *p = calloc(1, sizeof *p);
    if (!p)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "producer struct");
    p->test_send_delay_ns = delay_ns;
    p->cfg = *cfg;
    p->cfg.socket_path = NULL; /* copied below; the caller's string need not outlive us */
    p->id = cuipc_random_u64() | 1;
    p->listen_fd = -1;
    p->wake_pipe[0] = p->wake_pipe[1] = -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->send_lock, NULL);
    for (uint32_t c = 0; c < CUIPC_MAX_CONSUMERS; c++)
        p->conns[c].sock = -1;
    cuipc_status s = CUIPC_OK;
    if (cfg->gpu_pool_bytes &&
        (s = make_pool(cfg, CUIPC_MEMORY_CUDA, cfg->gpu_pool_bytes, &p->gpu_pool)) != CUIPC_OK)
        goto fail;
    if (cfg->host_pool_bytes &&
        (s = make_pool(cfg, CUIPC_MEMORY_HOST, cfg->host_pool_bytes, &p->host_pool)) != CUIPC_OK)
        goto fail;
    p->cfg.socket_path = cfg->socket_path;
    s = setup_socket(p);
    p->cfg.socket_path = NULL;
    if (s != CUIPC_OK)
        goto fail;
    if (pipe2(p->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        s = CUIPC_FAIL_ERRNO("pipe2");
        goto fail;
    }
    if (pthread_create(&p->monitor, NULL, monitor_main, p) != 0) {
        s = CUIPC_FAIL(CUIPC_ERR_SYSTEM, "cannot start the consumer monitor thread");
        goto fail;
    }
    p->monitor_running = true;
    *out = p;
    return CUIPC_OK;
fail:
    cuipc_producer_destroy(p);
    return s;
}

const char *cuipc_producer_socket_path(const cuipc_producer *p) {
    return p->socket_path;
}

void cuipc_producer_stats_get(cuipc_producer *p, cuipc_producer_stats *out) {
    if (!p || !out)
        return;
    pthread_mutex_lock(&p->lock);
    *out = p->stats;
    pthread_mutex_unlock(&p->lock);
    memset(&out->gpu_pool, 0, sizeof out->gpu_pool);
    memset(&out->host_pool, 0, sizeof out->host_pool);
    if (p->gpu_pool)
        cuipc_pool_stats_get(p->gpu_pool, &out->gpu_pool);
    if (p->host_pool)
        cuipc_pool_stats_get(p->host_pool, &out->host_pool);
}

/* fn on the ring of every attached consumer; under p->lock. */
static void each_attached_ring(cuipc_producer *p, void (*fn)(cuipc_ring *)) {
    for (uint32_t c = 0; c < p->cfg.max_consumers; c++)
        if (p->conns[c].attached && p->conns[c].ring)
            fn(p->conns[c].ring);
}

void cuipc_producer_close(cuipc_producer *p) {
    if (!p)
        return;
    /* A send waiting for room on a ring holds send_lock for as long as its timeout, with no
     * limit where it has none: its wait is interrupted first, so that the close is not held
     * by a consumer that stopped reading. Closed from here on: later sends see it at once, and
     * a consumer attached meanwhile gets its ring closed (producer_attach.c). */
    pthread_mutex_lock(&p->lock);
    p->closed = true;
    each_attached_ring(p, cuipc_ring_interrupt);
    pthread_mutex_unlock(&p->lock);
    /* So is a wrap waiting for pool room (it holds no lock the close needs, but would wait for
     * releases that may never come). */
    cuipc_pool_interrupt(p->gpu_pool);
    cuipc_pool_interrupt(p->host_pool);
    /* The rings closed after the send in progress: its consumers get all of it, then CLOSED. */
    pthread_mutex_lock(&p->send_lock);
    pthread_mutex_lock(&p->lock);
    each_attached_ring(p, cuipc_ring_close);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->send_lock);
}

cuipc_status cuipc_producer_drain(cuipc_producer *p, int64_t timeout_ns) {
    uint64_t deadline = cuipc_now_ns() + (uint64_t)(timeout_ns < 0 ? INT64_MAX / 2 : timeout_ns);
    for (;;) {
        uint32_t left = 0;
        cuipc_pool *pools[2] = {p->gpu_pool, p->host_pool};
        for (int i = 0; i < 2; i++) {
            if (!pools[i])
                continue;
            cuipc_pool_reclaim(pools[i]);
            cuipc_pool_stats st;
            cuipc_pool_stats_get(pools[i], &st);
            left += st.in_flight;
        }
        if (!left)
            return CUIPC_OK;
        if (cuipc_now_ns() >= deadline)
            return CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "%u chunks still in flight after %lld ms", left,
                              (long long)(timeout_ns / 1000000));
        usleep(200);
    }
}

cuipc_status cuipc_producer_destroy_within(cuipc_producer *p, int64_t timeout_ns) {
    if (!p)
        return CUIPC_OK;
    if (p->monitor_running) {
        atomic_store(&p->stopping, true);
        cuipc_producer_poke_monitor(p);
        pthread_join(p->monitor, NULL);
    }
    cuipc_producer_pending_close_all(p);
    for (uint32_t c = 0; c < CUIPC_MAX_CONSUMERS; c++) {
        if (p->conns[c].sock >= 0)
            close(p->conns[c].sock);
        cuipc_ring_destroy(p->conns[c].ring);
    }
    cuipc_producer_reap_rings_locked(p); /* the monitor is gone and no send may run now */
    for (uint32_t i = 0; i < p->n_kept; i++)
        cuipc_ring_destroy(p->kept[i]);
    free(p->kept);
    if (p->listen_fd >= 0) {
        /* Removed while still listening: a successor cannot have taken the path over yet. */
        cuipc_socket_unlink_own(p->socket_path, &p->socket_file);
        close(p->listen_fd);
    }
    if (p->private_dir[0]) {
        char file[128];
        snprintf(file, sizeof file, "%s/" OWNER_FILE, p->private_dir);
        unlink(file);
        rmdir(p->private_dir);
    }
    if (p->wake_pipe[0] >= 0)
        close(p->wake_pipe[0]);
    if (p->wake_pipe[1] >= 0)
        close(p->wake_pipe[1]);
    /* The host pool has no write queued: its copies and buffers are waited for at the send.
     * But the driver's release of its registered arena waits for the GPU's work in flight, all
     * of it: where the GPU pool's wait found the GPU not getting there, the arena is left too. */
    cuipc_status s = cuipc_pool_destroy_within(p->gpu_pool, timeout_ns);
    if (s == CUIPC_OK) {
        cuipc_pool_destroy(p->host_pool);
    } else if (p->host_pool) {
        char why[CUIPC_ERROR_MSG_BYTES];
        snprintf(why, sizeof why, "%s", cuipc_last_error());
        cuipc_pool_abandon(p->host_pool);
        s = CUIPC_FAIL(s, "%s; the host pool's arena is left mapped too", why);
    }
    free(p->exports);
    free(p->buffers); /* their memory went with the pools */
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->send_lock);
    free(p);
    return s;
}

void cuipc_producer_destroy(cuipc_producer *p) {
    /* Gone either way; a TIMEOUT left the GPU pool allocated, and says so in cuipc_last_error(). */
    cuipc_status_ignore(cuipc_producer_destroy_within(p, CUIPC_TEARDOWN_WAIT_NS));
}
