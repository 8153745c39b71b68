/* Single-producer single-consumer message ring in a memfd.
 *
 * Layout: one header page, then `capacity` data bytes. head and tail are monotonic byte counters
 * (never reset, position = counter & (capacity - 1)); every record starts 8-byte aligned:
 *   u32 length, u32 check (= ~length), payload, padding to 8.
 * A record that would cross the end of the data area is preceded by a wrap marker (length
 * CUIPC_RING_WRAP) and starts at offset 0 instead. Records are at most capacity/2 bytes, so a
 * marker plus a record always fit in an empty ring.
 *
 * The shared memory is untrusted: the peer may be buggy or hostile. Counters are copied into
 * locals and bounded before use, record headers are read once and checked against the written
 * region, and nothing outside the mapping is ever read. */
#include "ring.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cuipc/transport.h"
#include "error_internal.h"
#include "shm.h"

#define CUIPC_RING_MAGIC 0x474e495243504955ull /* "UIPCRING" little-endian */
#define CUIPC_RING_VERSION 1u
#define CUIPC_RING_HEADER_BYTES 4096u
#define CUIPC_RING_MIN_CAPACITY 4096ull
/* Record lengths are u32 and must stay below the wrap marker. */
#define CUIPC_RING_MAX_CAPACITY (1ull << 32)
#define CUIPC_RING_RECORD_HEADER 8u
#define CUIPC_RING_WRAP UINT32_MAX
#define CUIPC_RING_DEFAULT_SPIN_NS 20000ull
/* Sleep at most this long at a time so the peer check runs a few times per 10 ms. */
#define CUIPC_RING_SLICE_NS 4000000ll

/* Lock-free 64-bit atomics are required: the counters are shared between processes. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");

/* Each group lives on its own cache line so the producer's and consumer's hot writes do not
 * bounce the same line. magic stays at offset 0 (tests forge it there). */
typedef struct cuipc_ring_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_bytes;
    uint64_t capacity;
    /* Written by the producer. */
    _Alignas(64) _Atomic uint64_t head;
    _Atomic uint64_t sent;
    /* Written by the consumer. */
    _Alignas(64) _Atomic uint64_t tail;
    _Atomic uint64_t received;
    /* Doorbell for "data arrived": the consumer sleeps on data_seq, counted in data_waiters. */
    _Alignas(64) _Atomic uint32_t data_seq;
    _Atomic uint32_t data_waiters;
    /* Doorbell for "space freed": the producer sleeps on space_seq. */
    _Alignas(64) _Atomic uint32_t space_seq;
    _Atomic uint32_t space_waiters;
    _Alignas(64) _Atomic uint32_t closed;
} cuipc_ring_header;

_Static_assert(sizeof(cuipc_ring_header) <= CUIPC_RING_HEADER_BYTES, "header exceeds its page");

struct cuipc_ring {
    int fd;
    void *map;
    uint64_t map_bytes;
    cuipc_ring_header *hdr;
    uint8_t *data;
    /* Validated once at create/attach; never re-read from shared memory. */
    uint64_t capacity;
    uint64_t max_message;
    uint64_t spin_ns;
    cuipc_peer_alive_fn peer_alive;
    void *peer_ctx;
    /* This process's waits on the ring are to stop (cuipc_ring_interrupt): kept here, not in
     * the shared header, so the other side never sees it. */
    _Atomic bool interrupted;
};

static uint64_t cuipc_ring_record_bytes(uint64_t len) {
    return CUIPC_RING_RECORD_HEADER + ((len + 7u) & ~7ull);
}

static bool cuipc_ring_capacity_valid(uint64_t capacity) {
    return capacity >= CUIPC_RING_MIN_CAPACITY && capacity <= CUIPC_RING_MAX_CAPACITY &&
           (capacity & (capacity - 1)) == 0;
}

uint64_t cuipc_ring_message_limit(uint64_t ring_bytes) {
    return cuipc_ring_capacity_valid(ring_bytes) ? ring_bytes / 2 - CUIPC_RING_RECORD_HEADER : 0;
}

static cuipc_status cuipc_ring_adopt(int fd, void *map, uint64_t map_bytes, cuipc_ring **out) {
    cuipc_ring *r = calloc(1, sizeof *r);
    if (!r) {
        cuipc_shm_unmap(map, map_bytes);
        close(fd);
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "ring handle (%zu bytes)", sizeof *r);
    }
    r->fd = fd;
    r->map = map;
    r->map_bytes = map_bytes;
    r->hdr = map;
    r->data = (uint8_t *)map + CUIPC_RING_HEADER_BYTES;
    r->capacity = map_bytes - CUIPC_RING_HEADER_BYTES;
    r->max_message = cuipc_ring_message_limit(r->capacity);
    r->spin_ns = CUIPC_RING_DEFAULT_SPIN_NS;
    *out = r;
    return CUIPC_OK;
}

cuipc_status cuipc_ring_create(uint64_t capacity, cuipc_ring **out) {
    if (!out)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!cuipc_ring_capacity_valid(capacity))
        return CUIPC_FAIL(
            CUIPC_ERR_INVALID_ARG, "capacity %llu: must be a power of two in [%llu, %llu]",
            (unsigned long long)capacity, CUIPC_RING_MIN_CAPACITY, CUIPC_RING_MAX_CAPACITY);
    uint64_t bytes = CUIPC_RING_HEADER_BYTES + capacity;
    int fd = cuipc_memfd_create("cuipc-ring", bytes);
    if (fd < 0)
        return CUIPC_ERR_SYSTEM;
    void *map = cuipc_shm_map(fd, bytes);
    if (!map) {
        close(fd);
        return CUIPC_ERR_SYSTEM;
    }
    /* memfd pages start zeroed: counters, doorbells and the closed flag are already 0. */
    cuipc_ring_header *h = map;
    h->version = CUIPC_RING_VERSION;
    h->header_bytes = CUIPC_RING_HEADER_BYTES;
    h->capacity = capacity;
    h->magic = CUIPC_RING_MAGIC;
    return cuipc_ring_adopt(fd, map, bytes, out);
}

static cuipc_status cuipc_ring_validate_header(const cuipc_ring_header *h, int fd,
                                               uint64_t file_bytes) {
    uint64_t magic = h->magic, capacity = h->capacity;
    uint32_t version = h->version, header_bytes = h->header_bytes;
    if (magic != CUIPC_RING_MAGIC)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "fd %d: bad magic 0x%016llx (expected 0x%016llx)", fd,
                          (unsigned long long)magic, CUIPC_RING_MAGIC);
    if (version != CUIPC_RING_VERSION)
        return CUIPC_FAIL(CUIPC_ERR_VERSION, "fd %d: ring layout version %u, this build speaks %u",
                          fd, version, CUIPC_RING_VERSION);
    if (header_bytes != CUIPC_RING_HEADER_BYTES)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "fd %d: header size %u (expected %u)", fd,
                          header_bytes, CUIPC_RING_HEADER_BYTES);
    if (!cuipc_ring_capacity_valid(capacity) || capacity != file_bytes - CUIPC_RING_HEADER_BYTES)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT,
                          "fd %d: header capacity %llu does not match file size %llu "
                          "(header %u + power of two data area)",
                          fd, (unsigned long long)capacity, (unsigned long long)file_bytes,
                          CUIPC_RING_HEADER_BYTES);
    uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&h->tail, memory_order_acquire);
    if (head - tail > capacity || ((head | tail) & 7u))
        return CUIPC_FAIL(
            CUIPC_ERR_CORRUPT, "fd %d: impossible counters head %llu tail %llu (capacity %llu)", fd,
            (unsigned long long)head, (unsigned long long)tail, (unsigned long long)capacity);
    return CUIPC_OK;
}

cuipc_status cuipc_ring_attach(int fd, cuipc_ring **out) {
    if (out)
        *out = NULL;
    CUIPC_TRY(cuipc_attach_args(__func__, fd, out != NULL));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        cuipc_status s = CUIPC_FAIL_ERRNO("fstat(fd %d)", fd);
        close(fd);
        return s;
    }
    uint64_t bytes = (uint64_t)st.st_size;
    if (!S_ISREG(st.st_mode) || bytes < CUIPC_RING_HEADER_BYTES + CUIPC_RING_MIN_CAPACITY ||
        bytes > CUIPC_RING_HEADER_BYTES + CUIPC_RING_MAX_CAPACITY) {
        close(fd);
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "fd %d: %llu bytes is not the size of a ring", fd,
                          (unsigned long long)bytes);
    }
    /* A peer that could shrink the file would make our reads fault (SIGBUS): insist on the
     * seal cuipc_memfd_create puts on every ring. */
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
        close(fd);
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "fd %d: not a sealed memfd (seals %d)", fd, seals);
    }
    void *map = cuipc_shm_map(fd, bytes);
    if (!map) {
        close(fd);
        return CUIPC_ERR_SYSTEM;
    }
    cuipc_status s = cuipc_ring_validate_header(map, fd, bytes);
    if (s != CUIPC_OK) {
        cuipc_shm_unmap(map, bytes);
        close(fd);
        return s;
    }
    return cuipc_ring_adopt(fd, map, bytes, out);
}

void cuipc_ring_destroy(cuipc_ring *r) {
    if (!r)
        return;
    cuipc_shm_unmap(r->map, r->map_bytes);
    close(r->fd);
    free(r);
}

int cuipc_ring_fd(const cuipc_ring *r) {
    return r ? r->fd : -1;
}

size_t cuipc_ring_max_message(const cuipc_ring *r) {
    return r ? (size_t)r->max_message : 0;
}

void cuipc_ring_set_peer_check(cuipc_ring *r, cuipc_peer_alive_fn fn, void *ctx) {
    if (!r)
        return;
    r->peer_alive = fn;
    r->peer_ctx = ctx;
}

void cuipc_ring_set_spin_ns(cuipc_ring *r, uint64_t spin_ns) {
    if (r)
        r->spin_ns = spin_ns;
}

void cuipc_ring_interrupt(cuipc_ring *r) {
    if (!r)
        return; /* an attach that failed before its ring: no receiver can be inside */
    atomic_store_explicit(&r->interrupted, true, memory_order_seq_cst);
    /* This process's sleepers, either way, re-check their condition once its sequence moved.
     * The other side's, woken too (the futex is shared), find nothing changed and sleep again. */
    atomic_fetch_add_explicit(&r->hdr->data_seq, 1, memory_order_release);
    atomic_fetch_add_explicit(&r->hdr->space_seq, 1, memory_order_release);
    cuipc_futex_wake(&r->hdr->data_seq, INT_MAX);
    cuipc_futex_wake(&r->hdr->space_seq, INT_MAX);
}

bool cuipc_ring_interrupted(const cuipc_ring *r) {
    return atomic_load_explicit(&r->interrupted, memory_order_seq_cst);
}

bool cuipc_ring_closed(const cuipc_ring *r) {
    return r && atomic_load_explicit(&r->hdr->closed, memory_order_acquire) != 0;
}

uint64_t cuipc_ring_pending(const cuipc_ring *r) {
    if (!r)
        return 0;
    /* received first: sent only grows, so a later read of it is never behind. */
    uint64_t received = atomic_load_explicit(&r->hdr->received, memory_order_acquire);
    uint64_t sent = atomic_load_explicit(&r->hdr->sent, memory_order_acquire);
    if (sent < received)
        return 0;
    uint64_t most = r->capacity / CUIPC_RING_RECORD_HEADER; /* bound garbage counters */
    return sent - received < most ? sent - received : most;
}

/* Ring the doorbell only when the other side said it sleeps: the fast path is syscall-free. */
static void cuipc_ring_notify(_Atomic uint32_t *seq, _Atomic uint32_t *waiters) {
    /* Pairs with the fence in cuipc_ring_wait: either we see the waiter, or it sees our update. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(waiters, memory_order_relaxed) == 0)
        return;
    atomic_fetch_add_explicit(seq, 1, memory_order_release);
    cuipc_futex_wake(seq, INT_MAX);
}

/* Wake conditions: true when there is something for the caller to re-examine (progress
 * possible, ring closed, or counters that make no sense and must be reported). */
static bool cuipc_ring_data_ready(const cuipc_ring *r, uint64_t unused) {
    (void)unused;
    const cuipc_ring_header *h = r->hdr;
    return atomic_load_explicit(&h->head, memory_order_acquire) !=
               atomic_load_explicit(&h->tail, memory_order_relaxed) ||
           atomic_load_explicit(&h->closed, memory_order_acquire) ||
           atomic_load_explicit(&r->interrupted, memory_order_acquire);
}

static bool cuipc_ring_space_ready(const cuipc_ring *r, uint64_t need) {
    const cuipc_ring_header *h = r->hdr;
    uint64_t used = atomic_load_explicit(&h->head, memory_order_relaxed) -
                    atomic_load_explicit(&h->tail, memory_order_acquire);
    return used > r->capacity || r->capacity - used >= need ||
           atomic_load_explicit(&h->closed, memory_order_acquire);
}

/* The same, for a wait that an interrupt of this process ends (cuipc_ring_wait_room). */
static bool cuipc_ring_space_ready_or_interrupted(const cuipc_ring *r, uint64_t need) {
    return cuipc_ring_space_ready(r, need) ||
           atomic_load_explicit(&r->interrupted, memory_order_acquire);
}

/* PEER_DEAD when the process on the other side exited, else OK. */
static cuipc_status cuipc_ring_peer_check(cuipc_ring *r, const char *op) {
    if (r->peer_alive && !r->peer_alive(r->peer_ctx))
        return CUIPC_FAIL(CUIPC_ERR_PEER_DEAD, "%s: the process on the other side exited", op);
    return CUIPC_OK;
}

/* Out of time: a peer that exited says so, also to a wait too short to have asked it (a poll
 * with timeout 0 would otherwise never learn its producer died). */
static cuipc_status cuipc_ring_timed_out(cuipc_ring *r, const char *op, int64_t timeout_ns) {
    CUIPC_TRY(cuipc_ring_peer_check(r, op));
    return CUIPC_FAIL(CUIPC_ERR_TIMEOUT, "%s: nothing after %lld ns", op, (long long)timeout_ns);
}

/* Block until ready(r, arg): spin up to spin_ns, then sleep on the futex in slices, asking
 * the peer check between slices. OK means "look again", not that progress is guaranteed. */
static cuipc_status cuipc_ring_wait(cuipc_ring *r, bool (*ready)(const cuipc_ring *, uint64_t),
                                    uint64_t arg, _Atomic uint32_t *seq, _Atomic uint32_t *waiters,
                                    uint64_t start, int64_t timeout_ns, const char *op) {
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : start + (uint64_t)timeout_ns;
    uint64_t spin_end = r->spin_ns < deadline - start ? start + r->spin_ns : deadline;
    uint64_t now = cuipc_now_ns();
    while (now < spin_end) {
        for (int i = 0; i < 32; i++) {
            if (ready(r, arg))
                return CUIPC_OK;
            cuipc_cpu_relax();
        }
        now = cuipc_now_ns();
    }
    uint64_t last_peer_check = now;
    for (;;) {
        uint32_t expected = atomic_load_explicit(seq, memory_order_acquire);
        atomic_fetch_add_explicit(waiters, 1, memory_order_seq_cst);
        /* Dekker with cuipc_ring_notify: registered as waiter before re-checking the state. */
        atomic_thread_fence(memory_order_seq_cst);
        bool go = ready(r, arg);
        if (!go) {
            now = cuipc_now_ns();
            if (now >= deadline) {
                atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
                return cuipc_ring_timed_out(r, op, timeout_ns);
            }
            int64_t slice = deadline - now < (uint64_t)CUIPC_RING_SLICE_NS
                                ? (int64_t)(deadline - now)
                                : CUIPC_RING_SLICE_NS;
            cuipc_status s = cuipc_futex_wait(seq, expected, slice);
            if (s != CUIPC_OK && s != CUIPC_ERR_TIMEOUT) {
                atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
                return s;
            }
        }
        atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
        if (go || ready(r, arg))
            return CUIPC_OK;
        now = cuipc_now_ns();
        if (now - last_peer_check >= (uint64_t)CUIPC_RING_SLICE_NS) {
            last_peer_check = now;
            CUIPC_TRY(cuipc_ring_peer_check(r, op));
        }
        if (now >= deadline)
            return cuipc_ring_timed_out(r, op, timeout_ns);
    }
}

static void cuipc_ring_put_header(uint8_t *at, uint32_t length) {
    uint32_t words[2] = {length, ~length};
    memcpy(at, words, sizeof words);
}

static cuipc_status cuipc_ring_check_len(const cuipc_ring *r, size_t len) {
    if (len == 0 || len > r->max_message)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "message of %zu bytes (allowed 1..%llu)", len,
                          (unsigned long long)r->max_message);
    return CUIPC_OK;
}

/* Wait until a record of len bytes fits at head: *head is then where it goes and *skip the
 * bytes left at the end before it (the record wraps to 0). Only the sender moves head, so the
 * room found stays until it writes. interruptible: an interrupt ends the wait (CLOSED); a send
 * itself is not, so that room found before an interrupt is still written. */
static cuipc_status cuipc_ring_await_room(cuipc_ring *r, size_t len, int64_t timeout_ns,
                                          bool interruptible, uint64_t *head, uint64_t *skip) {
    cuipc_ring_header *h = r->hdr;
    const uint64_t cap = r->capacity;
    const uint64_t record = cuipc_ring_record_bytes(len);
    const uint64_t start = cuipc_now_ns();
    for (;;) {
        if (atomic_load_explicit(&h->closed, memory_order_acquire))
            return CUIPC_FAIL(CUIPC_ERR_CLOSED, "send: ring is closed");
        if (interruptible && atomic_load_explicit(&r->interrupted, memory_order_acquire))
            return CUIPC_FAIL(CUIPC_ERR_CLOSED, "send: interrupted while it waited for room");
        *head = atomic_load_explicit(&h->head, memory_order_relaxed); /* ours */
        /* Acquire pairs with the consumer's release of tail: it has finished reading the bytes
         * we are about to overwrite. */
        uint64_t tail = atomic_load_explicit(&h->tail, memory_order_acquire);
        uint64_t used = *head - tail;
        if (used > cap || ((*head | tail) & 7u))
            return CUIPC_FAIL(CUIPC_ERR_CORRUPT, "send: impossible counters head %llu tail %llu",
                              (unsigned long long)*head, (unsigned long long)tail);
        uint64_t pos = *head & (cap - 1);
        *skip = pos + record > cap ? cap - pos : 0;
        if (cap - used >= *skip + record)
            return CUIPC_OK;
        CUIPC_TRY(cuipc_ring_wait(
            r, interruptible ? cuipc_ring_space_ready_or_interrupted : cuipc_ring_space_ready,
            *skip + record, &h->space_seq, &h->space_waiters, start, timeout_ns, "send"));
    }
}

cuipc_status cuipc_ring_wait_room(cuipc_ring *r, size_t len, int64_t timeout_ns) {
    if (!r)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "ring is NULL");
    CUIPC_TRY(cuipc_ring_check_len(r, len));
    uint64_t head, skip;
    return cuipc_ring_await_room(r, len, timeout_ns, true, &head, &skip);
}

cuipc_status cuipc_ring_send(cuipc_ring *r, const void *msg, size_t len, int64_t timeout_ns) {
    if (!r || !msg)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "ring %p, msg %p", (void *)r, msg);
    CUIPC_TRY(cuipc_ring_check_len(r, len));
    uint64_t head, skip;
    CUIPC_TRY(cuipc_ring_await_room(r, len, timeout_ns, false, &head, &skip));
    cuipc_ring_header *h = r->hdr;
    uint64_t pos = head & (r->capacity - 1);
    if (skip) {
        cuipc_ring_put_header(r->data + pos, CUIPC_RING_WRAP);
        pos = 0;
    }
    cuipc_ring_put_header(r->data + pos, (uint32_t)len);
    memcpy(r->data + pos + CUIPC_RING_RECORD_HEADER, msg, len);
    uint64_t sent = atomic_load_explicit(&h->sent, memory_order_relaxed);
    atomic_store_explicit(&h->sent, sent + 1, memory_order_relaxed);
    /* Release: the record bytes (and sent) are visible before the new head is. */
    atomic_store_explicit(&h->head, head + skip + cuipc_ring_record_bytes(len),
                          memory_order_release);
    cuipc_ring_notify(&h->data_seq, &h->data_waiters);
    return CUIPC_OK;
}

/* Volatile reads, once: the header is checked and then used as the same values even if the
 * peer rewrites it meanwhile. */
static void cuipc_ring_get_header(const uint8_t *at, uint32_t *length, uint32_t *check) {
    const volatile uint32_t *words = (const volatile uint32_t *)(const void *)at;
    *length = words[0];
    *check = words[1];
}

static cuipc_status cuipc_ring_take(cuipc_ring *r, uint64_t head, uint64_t tail, void **msg,
                                    size_t *len) {
    cuipc_ring_header *h = r->hdr;
    const uint64_t cap = r->capacity;
    uint64_t avail = head - tail;
    if (avail > cap || ((head | tail) & 7u))
        return CUIPC_FAIL(
            CUIPC_ERR_CORRUPT, "recv: impossible counters head %llu tail %llu (capacity %llu)",
            (unsigned long long)head, (unsigned long long)tail, (unsigned long long)cap);
    uint64_t pos = tail & (cap - 1);
    uint32_t length, check;
    cuipc_ring_get_header(r->data + pos, &length, &check);
    uint64_t consumed = 0;
    if (length == CUIPC_RING_WRAP && check == (uint32_t)~CUIPC_RING_WRAP) {
        consumed = cap - pos;
        if (consumed >= avail)
            return CUIPC_FAIL(CUIPC_ERR_CORRUPT,
                              "recv: wrap marker at offset %llu but only %llu bytes written",
                              (unsigned long long)pos, (unsigned long long)avail);
        pos = 0;
        cuipc_ring_get_header(r->data, &length, &check);
    }
    if (check != (uint32_t)~length)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT,
                          "recv: record at offset %llu: length %u with bad check word 0x%08x",
                          (unsigned long long)pos, length, check);
    uint64_t record = cuipc_ring_record_bytes(length);
    if (length == 0 || length > r->max_message || record > avail - consumed || pos + record > cap)
        return CUIPC_FAIL(CUIPC_ERR_CORRUPT,
                          "recv: record at offset %llu: length %u beyond the written region "
                          "(%llu bytes written, max message %llu)",
                          (unsigned long long)pos, length, (unsigned long long)(avail - consumed),
                          (unsigned long long)r->max_message);
    void *copy = malloc(length);
    if (!copy)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "recv: %u byte message", length);
    memcpy(copy, r->data + pos + CUIPC_RING_RECORD_HEADER, length);
    uint64_t received = atomic_load_explicit(&h->received, memory_order_relaxed);
    atomic_store_explicit(&h->received, received + 1, memory_order_relaxed);
    /* Release: our copy is complete before the producer may reuse these bytes. */
    atomic_store_explicit(&h->tail, tail + consumed + record, memory_order_release);
    cuipc_ring_notify(&h->space_seq, &h->space_waiters);
    *msg = copy;
    *len = length;
    return CUIPC_OK;
}

cuipc_status cuipc_ring_recv(cuipc_ring *r, void **msg, size_t *len, int64_t timeout_ns) {
    if (!r || !msg || !len)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "ring %p, msg %p, len %p", (void *)r, (void *)msg,
                          (void *)len);
    *msg = NULL;
    *len = 0;
    cuipc_ring_header *h = r->hdr;
    const uint64_t start = cuipc_now_ns();
    for (;;) {
        /* Before a record is taken: an interrupted receiver leaves the ring as it found it. */
        if (atomic_load_explicit(&r->interrupted, memory_order_acquire))
            return CUIPC_FAIL(CUIPC_ERR_CLOSED, "recv: interrupted (the consumer stops receiving)");
        uint64_t tail = atomic_load_explicit(&h->tail, memory_order_relaxed); /* ours */
        /* Acquire pairs with the producer's release of head: the record bytes are visible. */
        uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
        if (head != tail)
            return cuipc_ring_take(r, head, tail, msg, len);
        if (atomic_load_explicit(&h->closed, memory_order_acquire)) {
            /* close() is ordered after the last send: look at head once more so the final
             * messages are delivered before CLOSED. */
            if (atomic_load_explicit(&h->head, memory_order_acquire) != tail)
                continue;
            return CUIPC_FAIL(CUIPC_ERR_CLOSED, "recv: ring is closed and empty");
        }
        CUIPC_TRY(cuipc_ring_wait(r, cuipc_ring_data_ready, 0, &h->data_seq, &h->data_waiters,
                                  start, timeout_ns, "recv"));
    }
}

void cuipc_ring_close(cuipc_ring *r) {
    if (!r)
        return;
    cuipc_ring_header *h = r->hdr;
    atomic_store_explicit(&h->closed, 1, memory_order_seq_cst);
    /* Wake both sides unconditionally: closing is rare and nobody must sleep through it. */
    atomic_fetch_add_explicit(&h->data_seq, 1, memory_order_release);
    atomic_fetch_add_explicit(&h->space_seq, 1, memory_order_release);
    cuipc_futex_wake(&h->data_seq, INT_MAX);
    cuipc_futex_wake(&h->space_seq, INT_MAX);
}
