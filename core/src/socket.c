/* Unix-socket attach channel: seqpacket messages with SCM_RIGHTS and peer credentials. */
#include "socket.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "error_internal.h"
#include "shm.h"

static cuipc_status make_addr(const char *path, struct sockaddr_un *a) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (!path || !*path || strlen(path) >= sizeof a->sun_path)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "socket path '%s' is empty or longer than %zu",
                          path ? path : "(null)", sizeof a->sun_path - 1);
    strcpy(a->sun_path, path);
    return CUIPC_OK;
}

/* Wait for events on fd up to timeout_ns (< 0: forever). */
static cuipc_status wait_fd(int fd, short events, int64_t timeout_ns, const char *what) {
    uint64_t deadline = timeout_ns < 0 ? 0 : cuipc_now_ns() + (uint64_t)timeout_ns;
    for (;;) {
        int ms = -1;
        if (timeout_ns >= 0) {
            uint64_t now = cuipc_now_ns();
            if (now >= deadline)
                ms = 0;
            else
                ms = (int)((deadline - now + 999999) / 1000000);
        }
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, ms);
        if (r > 0)
            return CUIPC_OK;
        if (r == 0)
            return CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "%s: timed out after %lld ms", what,
                              (long long)(timeout_ns / 1000000));
        if (errno != EINTR)
            return CUIPC_FAIL_ERRNO("%s: poll", what);
    }
}

static int bind_owner_only(int fd, const struct sockaddr_un *a) {
    /* Owner-only from the first moment: umask narrows the mode bind() gives the file. */
    mode_t old = umask(077);
    int r = bind(fd, (const struct sockaddr *)a, sizeof *a);
    umask(old);
    return r;
}

/* Whether some socket of this network namespace listens on path: the kernel's table of Unix
 * sockets (/proc/net/unix) says so without a connection, which a live producer would count as a
 * refused peer, and which blocks on a full backlog. -1: the table cannot be read. */
static int listener_exists(const char *path) {
    FILE *f = fopen("/proc/net/unix", "r");
    if (!f)
        return -1;
    char line[512];
    size_t plen = strlen(path);
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        /* Num RefCount Protocol Flags Type St Inode Path; listening: flag __SO_ACCEPTCON */
        unsigned long flags = 0;
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        size_t len = strlen(line);
        if (len > plen && line[len - plen - 1] == ' ' && !strcmp(line + len - plen, path) &&
            sscanf(line, "%*s %*s %*s %lx", &flags) == 1 && (flags & 0x10000))
            found = 1;
    }
    fclose(f);
    return found;
}

/* Whether path is a socket of ours that nobody listens on any more (a producer killed before it
 * could remove it). */
static bool stale_socket(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != getuid())
        return false;
    return listener_exists(path) == 0;
}

/* The directory holding path, locked (flock) from before a producer's bind to after its listen,
 * so that a socket bound and not yet listening is never taken for a dead one's. A lock not had
 * within a second (a holder stuck, a filesystem without flock) is no lock: -1, and a path in use
 * is then refused rather than taken over. */
static int lock_dir_of(const char *path) {
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (int i = 0; d >= 0 && flock(d, LOCK_EX | LOCK_NB) != 0; i++) {
        if (errno != EWOULDBLOCK || i == 1000) {
            close(d);
            return -1;
        }
        usleep(1000);
    }
    return d;
}

cuipc_status cuipc_socket_listen(const char *path, int *listen_fd, cuipc_socket_file *file) {
    struct sockaddr_un a;
    CUIPC_TRY(make_addr(path, &a));
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return CUIPC_FAIL_ERRNO("socket(AF_UNIX, SOCK_SEQPACKET)");
    int dir = lock_dir_of(path);
    int err = bind_owner_only(fd, &a) == 0 ? 0 : errno;
    if (err == EADDRINUSE && dir >= 0 && stale_socket(path) && unlink(path) == 0)
        err = bind_owner_only(fd, &a) == 0 ? 0 : errno;
    if (err == 0 && listen(fd, 64) != 0)
        err = errno;
    struct stat st;
    if (err == 0 && lstat(path, &st) == 0)
        *file = (cuipc_socket_file){.dev = (uint64_t)st.st_dev, .ino = (uint64_t)st.st_ino};
    if (dir >= 0)
        close(dir); /* and its lock: the socket listens now */
    if (err == EADDRINUSE) {
        close(fd);
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "socket path %s is in use: another producer listens there, or it is "
                          "not a socket of this user",
                          path);
    }
    if (err != 0) {
        errno = err;
        cuipc_status s = CUIPC_FAIL_ERRNO("bind/listen on %s", path);
        close(fd);
        return s;
    }
    *listen_fd = fd;
    return CUIPC_OK;
}

void cuipc_socket_unlink_own(const char *path, const cuipc_socket_file *file) {
    struct stat st;
    /* A successor that took the path over after this one stopped listening keeps its socket. */
    if (lstat(path, &st) == 0 && (uint64_t)st.st_dev == file->dev &&
        (uint64_t)st.st_ino == file->ino)
        unlink(path);
}

cuipc_status cuipc_socket_peer_cred(int fd, uint32_t *uid, uint32_t *gid, pid_t *pid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return CUIPC_FAIL_ERRNO("SO_PEERCRED");
    *uid = cred.uid;
    *gid = cred.gid;
    *pid = cred.pid;
    return CUIPC_OK;
}

cuipc_status cuipc_socket_accept(int listen_fd, int64_t timeout_ns, int *conn_fd, pid_t *peer_pid) {
    CUIPC_TRY(wait_fd(listen_fd, POLLIN, timeout_ns, "waiting for a consumer to attach"));
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        if (errno == EAGAIN || errno == ECONNABORTED || errno == EINTR)
            return CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "the connection went away before accept");
        return CUIPC_FAIL_ERRNO("accept");
    }
    uint32_t uid, gid;
    cuipc_status s = cuipc_socket_peer_cred(fd, &uid, &gid, peer_pid);
    if (s == CUIPC_OK && uid != getuid())
        s = CUIPC_FAIL(CUIPC_ERR_PERMISSION, "refused a consumer of uid %u (pid %d; we are uid %u)",
                       (unsigned)uid, (int)*peer_pid, (unsigned)getuid());
    if (s != CUIPC_OK) {
        close(fd);
        return s;
    }
    *conn_fd = fd;
    return CUIPC_OK;
}

/* One non-blocking connect: a full listen backlog answers EAGAIN at once instead of blocking
 * past the caller's deadline. Leaves the socket blocking once connected. */
static int connect_once(const struct sockaddr_un *a, int *err) {
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)a, sizeof *a) != 0) {
        *err = errno;
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        *err = errno;
        close(fd);
        return -1;
    }
    return fd;
}

cuipc_status cuipc_socket_connect(const char *path, int64_t timeout_ns, int *out) {
    struct sockaddr_un a;
    CUIPC_TRY(make_addr(path, &a));
    uint64_t deadline = cuipc_now_ns() + (uint64_t)(timeout_ns < 0 ? INT64_MAX / 2 : timeout_ns);
    int err = 0;
    for (;;) {
        int fd = connect_once(&a, &err);
        if (fd >= 0) {
            *out = fd;
            return CUIPC_OK;
        }
        /* Not listening yet, or its backlog is full: retry those, fail on anything else. */
        if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN) {
            errno = err;
            return CUIPC_FAIL_ERRNO("connect to %s", path);
        }
        uint64_t now = cuipc_now_ns();
        if (now >= deadline)
            return CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "%s on %s within %lld ms",
                              err == EAGAIN ? "the producer's listen backlog stayed full"
                                            : "no producer listening",
                              path, (long long)(timeout_ns / 1000000));
        uint64_t nap = deadline - now < 2000000 ? deadline - now : 2000000;
        usleep((useconds_t)(nap / 1000));
    }
}

cuipc_status cuipc_socket_send(int fd, const void *buf, size_t len, const int *fds, int nfds) {
    if (nfds < 0 || nfds > CUIPC_SOCKET_MAX_FDS)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "%d fds (max %d)", nfds, CUIPC_SOCKET_MAX_FDS);
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int) * CUIPC_SOCKET_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&ctl, 0, sizeof ctl);
        m.msg_control = ctl.buf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do {
        n = sendmsg(fd, &m, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EPIPE || errno == ECONNRESET)
            return CUIPC_FAIL(CUIPC_ERR_PEER_DEAD, "peer closed the socket");
        return CUIPC_FAIL_ERRNO("sendmsg");
    }
    if ((size_t)n != len)
        return CUIPC_FAIL(CUIPC_ERR_SYSTEM, "sendmsg sent %zd of %zu bytes", n, len);
    return CUIPC_OK;
}

cuipc_status cuipc_socket_recv(int fd, void *buf, size_t expected_len, int *fds, int *nfds,
                               int max_fds, int64_t timeout_ns) {
    *nfds = 0;
    CUIPC_TRY(wait_fd(fd, POLLIN, timeout_ns, "waiting for the peer's message"));
    struct iovec iov = {.iov_base = buf, .iov_len = expected_len};
    union {
        char buf[CMSG_SPACE(sizeof(int) * CUIPC_SOCKET_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    ssize_t n;
    do {
        n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return CUIPC_FAIL_ERRNO("recvmsg");
    int got = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *in = (int *)CMSG_DATA(c);
        for (int i = 0; i < k; i++) {
            if (got < max_fds)
                fds[got++] = in[i];
            else
                close(in[i]);
        }
    }
    if (n == 0) {
        for (int i = 0; i < got; i++)
            close(fds[i]);
        return CUIPC_FAIL(CUIPC_ERR_PEER_DEAD, "peer closed the socket");
    }
    if ((size_t)n != expected_len || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        for (int i = 0; i < got; i++)
            close(fds[i]);
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "message of %zd bytes (flags 0x%x), expected %zu", n,
                          m.msg_flags, expected_len);
    }
    *nfds = got;
    return CUIPC_OK;
}

bool cuipc_socket_peer_alive(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    int r = poll(&p, 1, 0);
    if (r <= 0)
        return true;
    if (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL))
        return false;
    return true;
}

void cuipc_socket_say_goodbye(int fd) {
    unsigned char b = CUIPC_SOCKET_GOODBYE;
    ssize_t n = send(fd, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n; /* a producer already gone needs no goodbye */
}

bool cuipc_socket_heard_goodbye(int fd) {
    unsigned char buf[16];
    bool heard = false;
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
        for (ssize_t i = 0; i < n; i++)
            heard = heard || buf[i] == CUIPC_SOCKET_GOODBYE;
    return heard;
}

bool cuipc_socket_peer_alive_ctx(void *ctx) {
    return cuipc_socket_peer_alive((int)(intptr_t)ctx);
}
