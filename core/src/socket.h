/* Unix-socket plumbing for attaching consumers: SOCK_SEQPACKET messages carrying file
 * descriptors (SCM_RIGHTS), peer credentials, bounded waits. The connection stays open for the
 * consumer's lifetime: its hang-up is how each side learns that the other one died. */
#ifndef CUIPC_SOCKET_H
#define CUIPC_SOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cuipc/status.h"

#define CUIPC_SOCKET_MAX_FDS 8

/* Which file a listening socket was bound to (a successor at the same path binds another). */
typedef struct cuipc_socket_file {
    uint64_t dev, ino;
} cuipc_socket_file;

/* Bind and listen on path (mode 0600): a socket of this user nobody listens on any more is
 * replaced; one a live producer listens on is refused (INVALID_ARG). *file: what was bound. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_socket_listen(const char *path, int *listen_fd, cuipc_socket_file *file);

/* Remove path if it is still the file this producer bound. */
void cuipc_socket_unlink_own(const char *path, const cuipc_socket_file *file);

/* Accept one connection within timeout_ns (non-blocking socket); a peer of another user is
 * refused with CUIPC_ERR_PERMISSION, one that left before accept gives CUIPC_ERR_TIMEOUT. */
CUIPC_WARN_UNUSED
cuipc_status cuipc_socket_accept(int listen_fd, int64_t timeout_ns, int *conn_fd, pid_t *peer_pid);

/* Connect, retrying while the listener is not there yet or its backlog is full, up to
 * timeout_ns (never blocked in connect itself). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_socket_connect(const char *path, int64_t timeout_ns, int *fd);

/* Credentials of the process at the other end (as it was at connect/listen time). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_socket_peer_cred(int fd, uint32_t *uid, uint32_t *gid, pid_t *pid);

CUIPC_WARN_UNUSED
cuipc_status cuipc_socket_send(int fd, const void *buf, size_t len, const int *fds, int nfds);

/* One message (and up to max_fds descriptors, close-on-exec) within timeout_ns. A message of
 * another size than expected_len is CUIPC_ERR_CORRUPT (its fds are closed). */
CUIPC_WARN_UNUSED
cuipc_status cuipc_socket_recv(int fd, void *buf, size_t expected_len, int *fds, int *nfds,
                               int max_fds, int64_t timeout_ns);

/* A consumer's last word before it closes its connection on purpose (cuipc_consumer_detach): a
 * hang-up without it is a consumer that died. */
#define CUIPC_SOCKET_GOODBYE 0x44u /* 'D' */
/* Send the goodbye byte (never blocks, never raises SIGPIPE; a gone peer is not an error). */
void cuipc_socket_say_goodbye(int fd);
/* Read what the peer wrote without blocking; true if the goodbye byte was among it. */
bool cuipc_socket_heard_goodbye(int fd);

/* false once the peer closed its end or died. Never blocks. */
bool cuipc_socket_peer_alive(int fd);
/* The same with the fd passed as (intptr_t)ctx: fits cuipc_peer_alive_fn. */
bool cuipc_socket_peer_alive_ctx(void *ctx);

#endif
