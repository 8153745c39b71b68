/* Sync table tests: real fork()ed consumers attach through the inherited fd and release
 * concurrently while the producer recycles and reuses slots; stale / duplicate rejection and
 * counting; done() with dead consumers; cross-process wake-up and timeout; forged headers. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm.h"
#include "sync_table.h"
#include "test_util.h"

#define CHILD_TIMEOUT_MS 20000

static cuipc_sync_table *make_table(uint32_t slots, uint32_t consumers, uint64_t pool_id) {
    cuipc_sync_table *t = NULL;
    REQUIRE(cuipc_sync_table_create(slots, consumers, pool_id, 1 << 20, &t) == CUIPC_OK);
    return t;
}

/* A consumer's own mapping of the producer's table, through a copy of the inherited fd. */
static cuipc_sync_table *attach_copy(const cuipc_sync_table *producer, uint64_t pool_id) {
    cuipc_sync_table *t = NULL;
    int fd = dup(cuipc_sync_table_fd(producer));
    REQUIRE(fd >= 0);
    REQUIRE(cuipc_sync_table_attach(fd, pool_id, &t) == CUIPC_OK);
    return t;
}

static bool fd_is_open(int fd) {
    return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

/* Shared anonymous memory, visible to the children forked after it. */
static void *shared_page(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    return p;
}

/* ---- layout and producer side ---------------------------------------------------------- */

static void test_create_and_layout(void) {
    cuipc_sync_table *t = NULL;
    CHECK_STATUS(cuipc_sync_table_create(0, 4, 1, 0, &t), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_sync_table_create(8, 0, 1, 0, &t), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_sync_table_create(8, CUIPC_MAX_CONSUMERS + 1, 1, 0, &t),
                 CUIPC_ERR_INVALID_ARG);
    CHECK(t == NULL);

    t = make_table(10, 3, 0xABCD);
    const cuipc_sync_header *h = cuipc_sync_table_header(t);
    CHECK(h->magic == CUIPC_SYNC_MAGIC && h->version == CUIPC_SYNC_VERSION);
    CHECK(h->n_slots == 10 && h->max_consumers == 3 && h->pool_id == 0xABCD);
    CHECK(h->pool_size == 1 << 20);
    CHECK(cuipc_sync_table_slots(t) == 10);
    uint64_t expect = sizeof(cuipc_sync_header) + 10 * sizeof(cuipc_sync_slot);
    CHECK(cuipc_sync_table_bytes(t) == expect);
    CHECK(cuipc_fd_size(cuipc_sync_table_fd(t)) == expect);
    char *base = cuipc_sync_table_base(t);
    CHECK((char *)cuipc_sync_table_slot(t, 3) ==
          base + sizeof(cuipc_sync_header) + 3 * sizeof(cuipc_sync_slot));
    CHECK(cuipc_sync_table_slot(t, 10) == NULL);
    CHECK(sizeof(cuipc_sync_slot) % 64 == 0); /* slots never share a cache line */
    CHECK(atomic_is_lock_free(&cuipc_sync_table_slot(t, 0)->offset));
    cuipc_sync_table_destroy(t);
}

static void test_generations(void) {
    cuipc_sync_table *t = make_table(4, 2, 7);
    CHECK(cuipc_sync_begin(t, 0, 0, 64, 0x3) == 1);
    CHECK(cuipc_sync_begin(t, 0, 64, 64, 0x3) == 2);
    CHECK(cuipc_sync_begin(t, 1, 0, 64, 0x3) == 1); /* per-slot generations */
    CHECK(cuipc_sync_begin(t, 4, 0, 64, 0x3) == 0); /* out of range: no generation */
    /* The stores into the slot below forge what a racing peer could see: white-box. */
    cuipc_sync_slot *s = cuipc_sync_table_slot(t, 2);
    atomic_store(&s->generation, UINT32_MAX);
    CHECK(cuipc_sync_begin(t, 2, 0, 64, 0x1) == 1); /* wraps past 0 */
    CHECK(atomic_load(&s->generation) == 1 && atomic_load(&s->offset) == 0);
    CHECK(cuipc_sync_ready_is(t, 2, 0));
    cuipc_sync_set_ready(t, 2, 1);
    CHECK(cuipc_sync_ready_is(t, 2, 1));
    CHECK(!cuipc_sync_done(t, 3, ~0ull)); /* never begun */
    /* An old ack equal to the new generation must not count: begin clears the mask's acks. */
    atomic_store(&s->generation, 4);
    atomic_store(&s->ack[0], 5);
    CHECK(cuipc_sync_begin(t, 2, 0, 64, 0x1) == 5);
    CHECK(!cuipc_sync_done(t, 2, ~0ull));
    CHECK(atomic_load(&s->ack[0]) == 4); /* reset to the previous generation */
    /* A stale release racing with reuse finds an ack newer than its generation: rejected,
     * and the newer ack is left alone. */
    CHECK_OK(cuipc_sync_release(t, 2, 5, 0));
    atomic_store(&s->generation, 3); /* as seen by a release that checked before the reuse */
    CHECK_STATUS(cuipc_sync_release(t, 2, 3, 0), CUIPC_ERR_STALE);
    CHECK(strstr(cuipc_last_error(), "already acked generation 5") != NULL);
    CHECK(atomic_load(&s->ack[0]) == 5);
    /* A duplicate release racing with reuse finds the ack reset to its own generation. */
    atomic_store(&s->generation, 5);
    CHECK(cuipc_sync_begin(t, 2, 0, 64, 0x1) == 6);
    atomic_store(&s->generation, 5); /* as seen by a release that checked before the reuse */
    CHECK_STATUS(cuipc_sync_release(t, 2, 5, 0), CUIPC_ERR_DUPLICATE);
    CHECK(atomic_load(&s->ack[0]) == 5);
    cuipc_sync_table_destroy(t);
}

/* Acks given by the producer on a consumer's behalf, the ready word, and the device addresses
 * of the words a GPU stream writes. */
static void test_on_behalf_and_ready(void) {
    cuipc_sync_table *t = make_table(4, 3, 9);
    uint32_t gen = cuipc_sync_begin(t, 1, 0, 64, 0x5); /* consumers 0 and 2 */
    CHECK(cuipc_sync_generation(t, 1) == gen && cuipc_sync_generation(t, 9) == 0);
    CHECK(cuipc_sync_consumer_mask(t, 1) == 0x5 && cuipc_sync_consumer_mask(t, 9) == 0);
    CHECK(!cuipc_sync_ready_is(t, 1, gen) && !cuipc_sync_ready_current(t, 1));
    cuipc_sync_set_ready(t, 1, gen);
    CHECK(cuipc_sync_ready_is(t, 1, gen) && cuipc_sync_ready_current(t, 1));
    CHECK(!cuipc_sync_ready_is(t, 1, gen + 1) && !cuipc_sync_ready_is(t, 4, gen));

    /* On behalf of a consumer that never got the message: only for the slot's generation. */
    cuipc_sync_ack_on_behalf(t, 1, gen + 1, 0);
    CHECK(!cuipc_sync_done(t, 1, 0x1));
    cuipc_sync_ack_on_behalf(t, 1, gen, 0);
    CHECK(cuipc_sync_done(t, 1, 0x1) && !cuipc_sync_done(t, 1, 0x5));
    CHECK_STATUS(cuipc_sync_release(t, 1, gen, 0), CUIPC_ERR_DUPLICATE);

    /* On behalf of a dead consumer: only one in the mask, once. */
    CHECK(!cuipc_sync_ack_current_on_behalf(t, 1, 1)); /* not in the mask */
    CHECK(cuipc_sync_ack_current_on_behalf(t, 1, 2));
    CHECK(!cuipc_sync_ack_current_on_behalf(t, 1, 2)); /* already acked */
    CHECK(cuipc_sync_done(t, 1, 0x5));
    CHECK(!cuipc_sync_ack_current_on_behalf(t, 4, 0) && !cuipc_sync_ack_current_on_behalf(t, 1, 3));

    /* A cancelled send: every consumer acked, the generation's ready word left alone. */
    uint32_t next = cuipc_sync_begin(t, 1, 0, 64, 0x7);
    CHECK(!cuipc_sync_done(t, 1, 0x7) && !cuipc_sync_ready_current(t, 1));
    cuipc_sync_ack_all(t, 1, next);
    CHECK(cuipc_sync_done(t, 1, 0x7));

    /* A queued ack has landed once the word holds it, or once the slot moved past it. */
    uint32_t g2 = cuipc_sync_begin(t, 2, 0, 64, 0x3);
    CHECK(!cuipc_sync_ack_landed(t, 2, g2, 0) && !cuipc_sync_ack_landed(t, 2, g2, 1));
    CHECK(cuipc_sync_release(t, 2, g2, 0) == CUIPC_OK); /* as the GPU's write of it */
    CHECK(cuipc_sync_ack_landed(t, 2, g2, 0) && !cuipc_sync_ack_landed(t, 2, g2, 1));
    cuipc_sync_ack_all(t, 2, g2);
    uint32_t g3 = cuipc_sync_begin(t, 2, 0, 64, 0x3);
    CHECK(cuipc_sync_ack_landed(t, 2, g2, 1) && !cuipc_sync_ack_landed(t, 2, g3, 1));
    CHECK(cuipc_sync_ack_landed(t, 9, g3, 0)); /* no such slot: nothing to wait for */

    /* Device addresses: the words' offsets in the table, applied to the device base. */
    char *base = cuipc_sync_table_base(t);
    char *dev = (char *)0x7f0000000000ull;
    cuipc_sync_slot *s = cuipc_sync_table_slot(t, 3);
    CHECK((char *)cuipc_sync_ready_device_addr(dev, t, 3) - dev == (char *)&s->ready - base);
    CHECK((char *)cuipc_sync_ack_device_addr(dev, t, 3, 2) - dev == (char *)&s->ack[2] - base);
    cuipc_sync_table_destroy(t);
}

/* ---- check / release validation --------------------------------------------------------- */

static void test_check_codes(void) {
    cuipc_sync_table *t = make_table(4, 3, 9);
    uint32_t g = cuipc_sync_begin(t, 1, 4096, 300, 0x5); /* consumers 0 and 2 */
    CHECK_OK(cuipc_sync_check(t, 1, g, 4096, 300, 0));
    CHECK_STATUS(cuipc_sync_check(t, 4, g, 4096, 300, 0), CUIPC_ERR_CORRUPT); /* slot range */
    CHECK(strstr(cuipc_last_error(), "slot 4 out of range") != NULL);
    CHECK_STATUS(cuipc_sync_check(t, 1, g, 4096, 300, 3), CUIPC_ERR_CORRUPT); /* consumer */
    CHECK_STATUS(cuipc_sync_check(t, 1, g, 4096, 300, 1), CUIPC_ERR_CORRUPT); /* not in mask */
    CHECK(strstr(cuipc_last_error(), "not in mask") != NULL);
    CHECK_STATUS(cuipc_sync_check(t, 1, g, 4096 + 256, 300, 0), CUIPC_ERR_CORRUPT); /* extent */
    CHECK(strstr(cuipc_last_error(), "extent") != NULL);
    CHECK_STATUS(cuipc_sync_check(t, 1, g, 4096, 301, 0), CUIPC_ERR_CORRUPT);
    CHECK_STATUS(cuipc_sync_check(t, 1, 0, 4096, 300, 0), CUIPC_ERR_CORRUPT);
    CHECK_STATUS(cuipc_sync_check(t, 1, g + 1, 4096, 300, 0), CUIPC_ERR_STALE); /* future */
    CHECK_OK(cuipc_sync_release(t, 1, g, 0));
    CHECK_STATUS(cuipc_sync_check(t, 1, g, 4096, 300, 0), CUIPC_ERR_DUPLICATE);
    CHECK_OK(cuipc_sync_check(t, 1, g, 4096, 300, 2));
    uint32_t g2 = cuipc_sync_begin(t, 1, 0, 100, 0x5);
    CHECK_STATUS(cuipc_sync_check(t, 1, g, 4096, 300, 2), CUIPC_ERR_STALE);
    CHECK(strstr(cuipc_last_error(), "generation") != NULL);
    CHECK_OK(cuipc_sync_check(t, 1, g2, 0, 100, 0)); /* the reuse cleared the old ack */
    /* Releases that are malformed are rejected, not counted as stale or duplicate. */
    CHECK_STATUS(cuipc_sync_release(t, 9, g2, 0), CUIPC_ERR_CORRUPT);
    CHECK_STATUS(cuipc_sync_release(t, 1, g2, 1), CUIPC_ERR_CORRUPT);
    CHECK_STATUS(cuipc_sync_release(t, 1, g2, 64), CUIPC_ERR_CORRUPT);
    const cuipc_sync_header *h = cuipc_sync_table_header(t);
    CHECK(h->releases == 1 && h->stale_releases == 0 && h->duplicate_releases == 0);
    cuipc_sync_table_destroy(t);
}

typedef struct stale_dup_args {
    cuipc_sync_table *producer;
    uint64_t pool_id;
    uint32_t old_gen, cur_gen;
} stale_dup_args;

/* Child: every release that must be rejected, from another process. */
static int stale_dup_child(void *arg) {
    cuipc_test_failures = 0; /* forked: count only this child's failures */
    stale_dup_args *a = arg;
    cuipc_sync_table *t = attach_copy(a->producer, a->pool_id);
    CHECK_STATUS(cuipc_sync_release(t, 0, a->old_gen, 1), CUIPC_ERR_STALE);
    CHECK_OK(cuipc_sync_release(t, 0, a->cur_gen, 1));
    CHECK_STATUS(cuipc_sync_release(t, 0, a->cur_gen, 1), CUIPC_ERR_DUPLICATE);
    CHECK_STATUS(cuipc_sync_release(t, 0, a->cur_gen, 1), CUIPC_ERR_DUPLICATE);
    CHECK_STATUS(cuipc_sync_release(t, 0, a->cur_gen + 1, 1), CUIPC_ERR_STALE);
    cuipc_sync_table_destroy(t);
    return cuipc_test_failures ? 1 : 0;
}

static void test_stale_and_duplicate(void) {
    const uint64_t pool_id = cuipc_random_u64();
    cuipc_sync_table *t = make_table(2, 2, pool_id);
    stale_dup_args a = {t, pool_id, 0, 0};
    a.old_gen = cuipc_sync_begin(t, 0, 0, 64, 0x3);
    CHECK_OK(cuipc_sync_release(t, 0, a.old_gen, 0));
    CHECK_OK(cuipc_sync_release(t, 0, a.old_gen, 1));
    CHECK(cuipc_sync_done(t, 0, 0x3));
    a.cur_gen = cuipc_sync_begin(t, 0, 128, 64, 0x3);
    CHECK(a.cur_gen == a.old_gen + 1);
    CHECK(cuipc_test_wait(cuipc_test_fork(stale_dup_child, &a), CHILD_TIMEOUT_MS) == 0);
    const cuipc_sync_header *h = cuipc_sync_table_header(t);
    CHECK(h->releases == 3);
    CHECK(h->stale_releases == 2);
    CHECK(h->duplicate_releases == 2);
    CHECK(!cuipc_sync_done(t, 0, 0x3)); /* consumer 0 has not released cur_gen */
    CHECK(cuipc_sync_done(t, 0, 0x2));
    cuipc_sync_table_destroy(t);
}

static void test_done_ignores_dead(void) {
    cuipc_sync_table *t = make_table(2, 4, 3);
    uint32_t g = cuipc_sync_begin(t, 0, 0, 64, 0x7); /* consumers 0, 1, 2; consumer 3 not sent */
    CHECK(!cuipc_sync_done(t, 0, 0xF));
    CHECK_OK(cuipc_sync_release(t, 0, g, 0));
    CHECK_OK(cuipc_sync_release(t, 0, g, 1));
    CHECK(!cuipc_sync_done(t, 0, 0xF));
    CHECK(cuipc_sync_done(t, 0, 0xB)); /* consumer 2 dead: not waited for */
    CHECK(cuipc_sync_done(t, 0, 0x3));
    CHECK(cuipc_sync_done(t, 0, 0x0)); /* everyone dead */
    CHECK_OK(cuipc_sync_release(t, 0, g, 2));
    CHECK(cuipc_sync_done(t, 0, 0xF));
    /* A dead consumer's late release after the slot moved on is stale, and harmless. */
    uint32_t g2 = cuipc_sync_begin(t, 0, 0, 64, 0x5);
    CHECK_STATUS(cuipc_sync_release(t, 0, g, 2), CUIPC_ERR_STALE);
    CHECK_OK(cuipc_sync_release(t, 0, g2, 0));
    CHECK(!cuipc_sync_done(t, 0, 0xF));
    CHECK(cuipc_sync_done(t, 0, 0xB));
    cuipc_sync_table_destroy(t);
}

/* ---- waiting --------------------------------------------------------------------------- */

typedef struct wake_args {
    cuipc_sync_table *producer;
    uint64_t pool_id;
    uint32_t gen;
} wake_args;

/* Child: release only once the parent is really asleep, so the futex wake path is taken. */
static int wake_child(void *arg) {
    cuipc_test_failures = 0; /* forked: count only this child's failures */
    wake_args *a = arg;
    cuipc_sync_table *t = attach_copy(a->producer, a->pool_id);
    uint64_t give_up = cuipc_now_ns() + 5000000000ull;
    while (atomic_load(&cuipc_sync_table_header(t)->waiters) == 0 && cuipc_now_ns() < give_up)
        usleep(200);
    usleep(20000); /* let it reach the futex */
    CHECK_OK(cuipc_sync_release(t, 0, a->gen, 0));
    cuipc_sync_table_destroy(t);
    return cuipc_test_failures ? 1 : 0;
}

static void test_wait_wakes_across_processes(void) {
    const uint64_t pool_id = cuipc_random_u64();
    cuipc_sync_table *t = make_table(1, 1, pool_id);
    wake_args a = {t, pool_id, cuipc_sync_begin(t, 0, 0, 64, 0x1)};
    uint32_t seq = cuipc_sync_wake_seq(t);
    pid_t pid = cuipc_test_fork(wake_child, &a);
    uint64_t start = cuipc_now_ns();
    CHECK_OK(cuipc_sync_wait(t, seq, 8000000000ll));
    uint64_t waited = cuipc_now_ns() - start;
    CHECK(cuipc_sync_done(t, 0, 0x1));
    CHECK(cuipc_sync_wake_seq(t) != seq);
    CHECK(waited < 6000000000ull); /* woken by the release, not by the timeout */
    CHECK(cuipc_test_wait(pid, CHILD_TIMEOUT_MS) == 0);
    CHECK(atomic_load(&cuipc_sync_table_header(t)->waiters) == 0);
    /* A release that happened before the wait is not missed. */
    CHECK_OK(cuipc_sync_wait(t, seq, 0));
    cuipc_sync_table_destroy(t);
}

static void test_wait_times_out(void) {
    cuipc_sync_table *t = make_table(1, 1, 5);
    uint32_t seq = cuipc_sync_wake_seq(t);
    uint64_t start = cuipc_now_ns();
    CHECK_STATUS(cuipc_sync_wait(t, seq, 50000000), CUIPC_ERR_TIMEOUT);
    uint64_t waited = cuipc_now_ns() - start;
    CHECK(waited >= 50000000ull && waited < 2000000000ull);
    CHECK(strstr(cuipc_last_error(), "no release") != NULL);
    CHECK(atomic_load(&cuipc_sync_table_header(t)->waiters) == 0);
    CHECK_STATUS(cuipc_sync_wait(t, seq, 0), CUIPC_ERR_TIMEOUT);
    cuipc_sync_wake(t); /* a GPU-side ack's wake: the sequence moves on */
    CHECK_OK(cuipc_sync_wait(t, seq, 50000000));
    cuipc_sync_table_destroy(t);
}

/* ---- attach validation ----------------------------------------------------------------- */

/* A memfd (no seals) holding bytes of the given image, possibly edited. */
static int forged_fd(const void *image, uint64_t bytes) {
    int fd = memfd_create("cuipc-forged", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, (off_t)bytes) == 0);
    REQUIRE(pwrite(fd, image, bytes, 0) == (ssize_t)bytes);
    return fd;
}

static void expect_attach_fails(const void *image, uint64_t bytes, uint64_t pool_id,
                                cuipc_status want, const char *field) {
    int fd = forged_fd(image, bytes);
    cuipc_sync_table *t = (cuipc_sync_table *)&t; /* must be reset to NULL */
    CHECK_STATUS(cuipc_sync_table_attach(fd, pool_id, &t), want);
    CHECK(t == NULL);
    if (!strstr(cuipc_last_error(), field)) {
        fprintf(stderr, "attach error does not name '%s': %s\n", field, cuipc_last_error());
        cuipc_test_failures++;
    }
    CHECK(!fd_is_open(fd)); /* ownership taken, also on failure */
}

static void test_attach_rejects_forgeries(void) {
    const uint64_t pool_id = 0x1234567890ull;
    cuipc_sync_table *t = make_table(6, 2, pool_id);
    uint64_t bytes = cuipc_sync_table_bytes(t);
    char *image = malloc(bytes);
    REQUIRE(image);
    memcpy(image, cuipc_sync_table_base(t), bytes);
    cuipc_sync_header *h = (cuipc_sync_header *)image;

    /* The untouched copy attaches: the forgery checks below test one field each. */
    cuipc_sync_table *ok = NULL;
    CHECK_OK(cuipc_sync_table_attach(forged_fd(image, bytes), pool_id, &ok));
    CHECK(cuipc_sync_table_slots(ok) == 6);
    cuipc_sync_table_destroy(ok);

    expect_attach_fails(image, bytes, pool_id + 1, CUIPC_ERR_CORRUPT, "pool id");
    h->magic ^= 1;
    expect_attach_fails(image, bytes, pool_id, CUIPC_ERR_CORRUPT, "magic");
    h->magic ^= 1;
    h->version = CUIPC_SYNC_VERSION + 1;
    expect_attach_fails(image, bytes, pool_id, CUIPC_ERR_VERSION, "version");
    h->version = CUIPC_SYNC_VERSION;
    h->n_slots = 7; /* claims more slots than the file holds */
    expect_attach_fails(image, bytes, pool_id, CUIPC_ERR_CORRUPT, "n_slots 7");
    h->n_slots = 0;
    expect_attach_fails(image, bytes, pool_id, CUIPC_ERR_CORRUPT, "n_slots 0");
    h->n_slots = 6;
    h->max_consumers = CUIPC_MAX_CONSUMERS + 1;
    expect_attach_fails(image, bytes, pool_id, CUIPC_ERR_CORRUPT, "max_consumers");
    h->max_consumers = 2;
    expect_attach_fails(image, bytes - sizeof(cuipc_sync_slot) / 2, pool_id, CUIPC_ERR_CORRUPT,
                        "file size");
    expect_attach_fails(image, 16, pool_id, CUIPC_ERR_CORRUPT, "header");
    expect_attach_fails(image, 0, pool_id, CUIPC_ERR_CORRUPT, "header");

    cuipc_sync_table *none = NULL;
    CHECK_STATUS(cuipc_sync_table_attach(-1, pool_id, &none), CUIPC_ERR_INVALID_ARG);
    free(image);
    cuipc_sync_table_destroy(t);
}

/* ---- concurrent recycling across processes --------------------------------------------- */

typedef struct proxy_msg {
    uint32_t slot, generation;
    uint64_t offset, size, seq; /* seq: the message number, also written into the chunk */
} proxy_msg;

typedef struct consumer_result {
    uint64_t validated, extra_releases, duplicates_seen, stales_seen;
} consumer_result;

typedef struct stress_args {
    cuipc_sync_table *producer;
    uint64_t pool_id;
    uint32_t consumer;
    int pipe_in;
    _Atomic uint64_t *chunks; /* one word per slot: the "chunk data" */
    consumer_result *results;
    uint64_t messages;
} stress_args;

static bool read_msg(int fd, proxy_msg *m) {
    size_t got = 0;
    while (got < sizeof *m) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 10000) != 1)
            return false; /* the producer stopped sending: fail, do not hang */
        ssize_t n = read(fd, (char *)m + got, sizeof *m - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

static int stress_consumer(void *arg) {
    cuipc_test_failures = 0; /* forked: count only this child's failures */
    stress_args *a = arg;
    cuipc_sync_table *t = attach_copy(a->producer, a->pool_id);
    consumer_result *r = &a->results[a->consumer];
    proxy_msg m;
    for (uint64_t expect = 0; expect < a->messages; expect++) {
        REQUIRE(read_msg(a->pipe_in, &m));
        REQUIRE(m.seq == expect);
        cuipc_status s = cuipc_sync_check(t, m.slot, m.generation, m.offset, m.size, a->consumer);
        if (s != CUIPC_OK) {
            fprintf(stderr, "consumer %u msg %" PRIu64 ": %s\n", a->consumer, m.seq,
                    cuipc_last_error());
            return 1;
        }
        CHECK(cuipc_sync_ready_is(t, m.slot, m.generation));
        /* Had the producer reused the slot before this release, the chunk would hold a later
         * message number. */
        CHECK(atomic_load_explicit(&a->chunks[m.slot], memory_order_relaxed) == m.seq);
        CHECK_OK(cuipc_sync_release(t, m.slot, m.generation, a->consumer));
        r->validated++;
        if (m.seq % 7 == (uint64_t)a->consumer % 7) {
            /* A second release: DUPLICATE, or STALE if the slot was recycled meanwhile. */
            r->extra_releases++;
            s = cuipc_sync_release(t, m.slot, m.generation, a->consumer);
            if (s == CUIPC_ERR_DUPLICATE)
                r->duplicates_seen++;
            else if (s == CUIPC_ERR_STALE)
                r->stales_seen++;
            else
                CHECK(!"second release neither DUPLICATE nor STALE");
        }
    }
    cuipc_sync_table_destroy(t);
    return cuipc_test_failures ? 1 : 0;
}

/* A slot every consumer is done with (or never used), waiting for releases if none is. */
static uint32_t take_free_slot(cuipc_sync_table *t, uint32_t n_slots, uint64_t all, uint32_t *next,
                               uint64_t *waits) {
    for (;;) {
        uint32_t seq = cuipc_sync_wake_seq(t);
        for (uint32_t k = 0; k < n_slots; k++) {
            uint32_t slot = (*next + k) % n_slots;
            if (cuipc_sync_generation(t, slot) == 0 || cuipc_sync_done(t, slot, all)) {
                *next = slot + 1;
                return slot;
            }
        }
        (*waits)++;
        cuipc_status st = cuipc_sync_wait(t, seq, 5000000000ll);
        REQUIRE(st == CUIPC_OK);
    }
}

static void stress(uint32_t n_consumers, uint64_t messages) {
    const uint32_t n_slots = 8;
    const uint64_t pool_id = cuipc_random_u64();
    const uint64_t all = (n_consumers == 64) ? ~0ull : (1ull << n_consumers) - 1;
    cuipc_sync_table *t = make_table(n_slots, n_consumers, pool_id);
    _Atomic uint64_t *chunks = shared_page(n_slots * sizeof *chunks);
    consumer_result *results = shared_page(n_consumers * sizeof *results);
    pid_t pids[CUIPC_MAX_CONSUMERS];
    int pipes_out[CUIPC_MAX_CONSUMERS];
    for (uint32_t c = 0; c < n_consumers; c++) {
        int p[2];
        REQUIRE(pipe(p) == 0);
        stress_args a = {t, pool_id, c, p[0], chunks, results, messages};
        pids[c] = cuipc_test_fork(stress_consumer, &a);
        REQUIRE(pids[c] > 0);
        close(p[0]);
        pipes_out[c] = p[1];
    }

    uint32_t next = 0;
    uint64_t reuses = 0, waits = 0;
    uint64_t start = cuipc_now_ns();
    for (uint64_t seq = 0; seq < messages; seq++) {
        uint32_t slot = take_free_slot(t, n_slots, all, &next, &waits);
        if (cuipc_sync_generation(t, slot) != 0)
            reuses++;
        atomic_store_explicit(&chunks[slot], seq, memory_order_relaxed);
        uint64_t size = 64 + seq % 5;
        uint32_t gen = cuipc_sync_begin(t, slot, slot * 4096ull, size, all);
        REQUIRE(gen != 0);
        cuipc_sync_set_ready(t, slot, gen);
        proxy_msg m = {slot, gen, slot * 4096ull, size, seq};
        for (uint32_t c = 0; c < n_consumers; c++)
            REQUIRE(write(pipes_out[c], &m, sizeof m) == (ssize_t)sizeof m);
    }
    for (uint32_t c = 0; c < n_consumers; c++) {
        CHECK(cuipc_test_wait(pids[c], CHILD_TIMEOUT_MS) == 0);
        close(pipes_out[c]);
    }
    double secs = (double)(cuipc_now_ns() - start) / 1e9;

    uint64_t extra = 0, dups = 0, stales = 0;
    for (uint32_t c = 0; c < n_consumers; c++) {
        CHECK(results[c].validated == messages);
        extra += results[c].extra_releases;
        dups += results[c].duplicates_seen;
        stales += results[c].stales_seen;
    }
    const cuipc_sync_header *h = cuipc_sync_table_header(t);
    CHECK(h->releases == messages * n_consumers);
    CHECK(h->duplicate_releases == dups && h->stale_releases == stales);
    CHECK(dups + stales == extra && extra > 0);
    CHECK(reuses == messages - n_slots); /* every slot recycled over and over */
    for (uint32_t s = 0; s < n_slots; s++)
        CHECK(cuipc_sync_done(t, s, all));
    printf("stress: %u consumers, %" PRIu64 " messages in %.2f s, %" PRIu64
           " producer waits, %" PRIu64 " duplicate + %" PRIu64 " stale extra releases\n",
           n_consumers, messages, secs, waits, dups, stales);
    munmap(chunks, n_slots * sizeof *chunks);
    munmap(results, n_consumers * sizeof *results);
    cuipc_sync_table_destroy(t);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN); /* a dead consumer must fail a write, not kill the producer */
    test_create_and_layout();
    test_generations();
    test_on_behalf_and_ready();
    test_check_codes();
    test_stale_and_duplicate();
    test_done_ignores_dead();
    test_wait_times_out();
    test_wait_wakes_across_processes();
    test_attach_rejects_forgeries();
    stress(4, 50000);
    stress(8, 25000);
    return cuipc_test_finish("test_sync_table");
}
