/* Allocator tests: a property test against a trivially correct model (the sorted list of live
 * blocks, free space = the gaps between them) plus targeted scenarios. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allocator.h"
#include "test_util.h"

/* ---- the model ------------------------------------------------------------------------- */

typedef struct model_block {
    uint64_t offset, bytes;
} model_block;

typedef struct model {
    uint64_t arena;
    model_block *live; /* sorted by offset, never overlapping */
    size_t n, cap;
} model;

typedef struct model_gaps {
    uint64_t free_bytes, largest, count;
    uint64_t smallest_fitting; /* smallest gap >= the size asked, 0 if none */
} model_gaps;

/* Walk the gaps between live blocks: they are exactly the allocator's free blocks, because
 * free neighbours are always coalesced. */
static model_gaps model_scan(const model *m, uint64_t need) {
    model_gaps g = {0, 0, 0, 0};
    uint64_t cursor = 0;
    for (size_t i = 0; i <= m->n; i++) {
        uint64_t end = i < m->n ? m->live[i].offset : m->arena;
        if (end > cursor) {
            uint64_t gap = end - cursor;
            g.free_bytes += gap;
            g.count++;
            if (gap > g.largest)
                g.largest = gap;
            if (need && gap >= need && (!g.smallest_fitting || gap < g.smallest_fitting))
                g.smallest_fitting = gap;
        }
        if (i < m->n)
            cursor = m->live[i].offset + m->live[i].bytes;
    }
    return g;
}

/* Index where offset is or would be inserted. */
static size_t model_lower_bound(const model *m, uint64_t offset) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->live[mid].offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool model_is_live_start(const model *m, uint64_t offset) {
    size_t i = model_lower_bound(m, offset);
    return i < m->n && m->live[i].offset == offset;
}

/* Length of the gap starting exactly at offset, 0 if offset does not start a gap. */
static uint64_t model_gap_at(const model *m, uint64_t offset) {
    size_t i = model_lower_bound(m, offset);
    uint64_t prev_end = i > 0 ? m->live[i - 1].offset + m->live[i - 1].bytes : 0;
    uint64_t next_start = i < m->n ? m->live[i].offset : m->arena;
    if (prev_end != offset || next_start <= offset)
        return 0;
    return next_start - offset;
}

static void model_insert(model *m, uint64_t offset, uint64_t bytes) {
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->live = realloc(m->live, m->cap * sizeof *m->live);
        REQUIRE(m->live);
    }
    size_t i = model_lower_bound(m, offset);
    memmove(&m->live[i + 1], &m->live[i], (m->n - i) * sizeof *m->live);
    m->live[i] = (model_block){offset, bytes};
    m->n++;
}

static void model_remove_at(model *m, size_t i) {
    memmove(&m->live[i], &m->live[i + 1], (m->n - i - 1) * sizeof *m->live);
    m->n--;
}

static uint64_t round_up(uint64_t v, uint64_t align) {
    return (v + align - 1) & ~(align - 1);
}

/* ---- property test --------------------------------------------------------------------- */

/* What the property runs exercised, so a test that stopped exercising a path fails. */
typedef struct property_counts {
    uint64_t allocs, full, frees, bad_frees, max_live;
} property_counts;

static property_counts counts;

typedef struct property_config {
    uint64_t arena, alignment;
    cuipc_fit fit;
    uint64_t seed;
    int steps;
} property_config;

static uint64_t random_size(uint64_t *rng, const model *m, uint64_t alignment) {
    uint64_t r = cuipc_test_rand(rng) % 100;
    if (r < 50) /* small: a few units, often not a multiple of the alignment */
        return 1 + cuipc_test_rand(rng) % (alignment * 8);
    if (r < 85) { /* log-uniform up to a quarter of the arena */
        unsigned bits = 1 + (unsigned)(cuipc_test_rand(rng) % 62);
        uint64_t v = cuipc_test_rand(rng) & ((1ull << bits) - 1);
        return 1 + v % (m->arena / 4 ? m->arena / 4 : 1);
    }
    /* exactly the size of some gap (exact fits), trimmed by less than a unit */
    model_gaps g = model_scan(m, 0);
    if (!g.count)
        return 1 + cuipc_test_rand(rng) % m->arena;
    uint64_t pick = cuipc_test_rand(rng) % g.count, cursor = 0, seen = 0;
    for (size_t i = 0; i <= m->n; i++) {
        uint64_t end = i < m->n ? m->live[i].offset : m->arena;
        if (end > cursor && seen++ == pick) {
            uint64_t trim = cuipc_test_rand(rng) % alignment;
            return end - cursor - trim;
        }
        if (i < m->n)
            cursor = m->live[i].offset + m->live[i].bytes;
    }
    return 1;
}

static void compare_stats(const cuipc_allocator *a, const model *m, const char *where) {
    cuipc_allocator_stats st;
    cuipc_allocator_stats_get(a, &st);
    model_gaps g = model_scan(m, 0);
    uint64_t used = 0;
    for (size_t i = 0; i < m->n; i++)
        used += m->live[i].bytes;
    if (st.arena != m->arena || st.used != used || st.free != g.free_bytes ||
        st.largest_free != g.largest || st.free_blocks != g.count || st.used_blocks != m->n) {
        fprintf(stderr,
                "%s: stats arena %" PRIu64 " used %" PRIu64 " free %" PRIu64 " largest %" PRIu64
                " free_blocks %" PRIu64 " used_blocks %" PRIu64 "; model arena %" PRIu64
                " used %" PRIu64 " free %" PRIu64 " largest %" PRIu64 " gaps %" PRIu64
                " live %zu\n",
                where, st.arena, st.used, st.free, st.largest_free, st.free_blocks, st.used_blocks,
                m->arena, used, g.free_bytes, g.largest, g.count, m->n);
        cuipc_test_failures++;
    }
}

static void property_alloc(cuipc_allocator *a, model *m, const property_config *c, uint64_t *rng) {
    uint64_t size = random_size(rng, m, c->alignment);
    uint64_t need = round_up(size, c->alignment);
    model_gaps g = model_scan(m, need);
    uint64_t offset = UINT64_MAX;
    cuipc_status s = cuipc_allocator_alloc(a, size, &offset);
    if (g.largest >= need) {
        CHECK_OK(s);
        if (s != CUIPC_OK)
            return;
        counts.allocs++;
        CHECK(offset % c->alignment == 0);
        CHECK(offset + need <= m->arena);
        /* Blocks are carved from the low end of a free block, i.e. the start of a gap. */
        uint64_t gap = model_gap_at(m, offset);
        CHECK(gap >= need);
        if (c->fit == CUIPC_FIT_BEST && gap != g.smallest_fitting) {
            fprintf(stderr, "best fit took a gap of %" PRIu64 ", smallest fitting is %" PRIu64 "\n",
                    gap, g.smallest_fitting);
            cuipc_test_failures++;
        }
        CHECK(cuipc_allocator_block_size(a, offset) == need);
        if (gap >= need)
            model_insert(m, offset, need);
    } else {
        CHECK_STATUS(s, CUIPC_ERR_POOL_FULL);
        counts.full++;
        char want[64];
        snprintf(want, sizeof want, "%" PRIu64, size);
        CHECK(strstr(cuipc_last_error(), want) != NULL);
        snprintf(want, sizeof want, "largest free block %" PRIu64, g.largest);
        CHECK(strstr(cuipc_last_error(), want) != NULL);
    }
}

static void property_free(cuipc_allocator *a, model *m, uint64_t *rng) {
    size_t i = (size_t)(cuipc_test_rand(rng) % m->n);
    CHECK(cuipc_allocator_block_size(a, m->live[i].offset) == m->live[i].bytes);
    CHECK_OK(cuipc_allocator_free(a, m->live[i].offset));
    CHECK(cuipc_allocator_block_size(a, m->live[i].offset) == 0);
    counts.frees++;
    model_remove_at(m, i);
}

/* An offset that is not the start of a live block: inside one, at a gap, or past the end. */
static void property_bad_free(cuipc_allocator *a, const model *m, const property_config *c,
                              uint64_t *rng) {
    uint64_t offset;
    uint64_t kind = cuipc_test_rand(rng) % 4;
    if (kind == 0 && m->n)
        offset = m->live[cuipc_test_rand(rng) % m->n].offset + c->alignment * 1; /* inside */
    else if (kind == 1)
        offset = (cuipc_test_rand(rng) % m->arena) & ~(c->alignment - 1);
    else if (kind == 2)
        offset = m->arena + cuipc_test_rand(rng) % 4096;
    else
        offset = (cuipc_test_rand(rng) % m->arena) | 1; /* misaligned */
    if (model_is_live_start(m, offset))
        return;
    CHECK_STATUS(cuipc_allocator_free(a, offset), CUIPC_ERR_INVALID_ARG);
    CHECK(cuipc_allocator_block_size(a, offset) == 0);
    counts.bad_frees++;
}

static void run_property(const property_config *c) {
    cuipc_allocator *a = NULL;
    REQUIRE(cuipc_allocator_create(c->arena, c->alignment, c->fit, &a) == CUIPC_OK);
    model m = {.arena = c->arena & ~(c->alignment - 1)};
    uint64_t rng = c->seed;
    int failures_before = cuipc_test_failures;
    for (int step = 0; step < c->steps && cuipc_test_failures == failures_before; step++) {
        uint64_t r = cuipc_test_rand(&rng) % 100;
        if (r < 55 || m.n == 0)
            property_alloc(a, &m, c, &rng);
        else if (r < 95)
            property_free(a, &m, &rng);
        else
            property_bad_free(a, &m, c, &rng);
        cuipc_status s = cuipc_allocator_check(a);
        if (s != CUIPC_OK) {
            fprintf(stderr, "check failed at step %d: %s\n", step, cuipc_last_error());
            cuipc_test_failures++;
        }
        compare_stats(a, &m, "property");
        if (m.n > counts.max_live)
            counts.max_live = m.n;
    }
    /* Free the rest: one free block spanning the arena again. */
    while (m.n)
        property_free(a, &m, &rng);
    CHECK_OK(cuipc_allocator_check(a));
    compare_stats(a, &m, "property end");
    if (cuipc_test_failures != failures_before)
        fprintf(stderr,
                "property config: arena %" PRIu64 " alignment %" PRIu64 " fit %d seed %" PRIu64
                "\n",
                c->arena, c->alignment, (int)c->fit, c->seed);
    free(m.live);
    cuipc_allocator_destroy(a);
}

static void test_property(void) {
    const uint64_t alignments[] = {8, 256, 4096};
    const uint64_t arena_units[] = {97, 1000, 65537}; /* small, medium, many size classes */
    const uint64_t seeds[] = {1, 0xC0FFEE, 0x5EED5EED};
    int runs = 0;
    for (size_t ai = 0; ai < sizeof alignments / sizeof *alignments; ai++)
        for (size_t ui = 0; ui < sizeof arena_units / sizeof *arena_units; ui++)
            for (int fit = 0; fit < 2; fit++)
                for (size_t si = 0; si < sizeof seeds / sizeof *seeds; si++) {
                    /* + 3 bytes: the arena need not be a multiple of the alignment */
                    property_config c = {arena_units[ui] * alignments[ai] + 3, alignments[ai],
                                         (cuipc_fit)fit, seeds[si], 5000};
                    run_property(&c);
                    runs++;
                }
    /* A huge arena reaches the top size classes. */
    for (int fit = 0; fit < 2; fit++) {
        property_config c = {1ull << 46, 256, (cuipc_fit)fit, 77, 8000};
        run_property(&c);
        runs++;
    }
    printf("property: %d runs, %" PRIu64 " allocs, %" PRIu64 " POOL_FULL, %" PRIu64
           " frees, %" PRIu64 " rejected frees, up to %" PRIu64 " live blocks\n",
           runs, counts.allocs, counts.full, counts.frees, counts.bad_frees, counts.max_live);
    CHECK(counts.allocs > 1000 && counts.full > 100 && counts.bad_frees > 100);
    CHECK(counts.max_live > 100);
}

/* ---- scenarios ------------------------------------------------------------------------- */

static cuipc_allocator *make(uint64_t arena, uint64_t alignment, cuipc_fit fit) {
    cuipc_allocator *a = NULL;
    REQUIRE(cuipc_allocator_create(arena, alignment, fit, &a) == CUIPC_OK);
    return a;
}

static uint64_t alloc_ok(cuipc_allocator *a, uint64_t size) {
    uint64_t off = UINT64_MAX;
    CHECK_OK(cuipc_allocator_alloc(a, size, &off));
    return off;
}

static void test_create_args(void) {
    cuipc_allocator *a = NULL;
    CHECK_STATUS(cuipc_allocator_create(4096, 12, CUIPC_FIT_BEST, &a), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_allocator_create(4096, 4, CUIPC_FIT_BEST, &a), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_allocator_create(0, 64, CUIPC_FIT_BEST, &a), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_allocator_create(63, 64, CUIPC_FIT_BEST, &a), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_allocator_create(4096, 64, (cuipc_fit)7, &a), CUIPC_ERR_INVALID_ARG);
    CHECK(a == NULL);
    /* The tail past the last whole unit is not managed. */
    a = make(1000, 64, CUIPC_FIT_BEST);
    cuipc_allocator_stats st;
    cuipc_allocator_stats_get(a, &st);
    CHECK(st.arena == 960 && st.free == 960 && st.free_blocks == 1 && st.largest_free == 960);
    cuipc_allocator_destroy(a);
}

static void test_size_limits(void) {
    cuipc_allocator *a = make(1 << 16, 256, CUIPC_FIT_BEST);
    uint64_t off;
    CHECK_STATUS(cuipc_allocator_alloc(a, 0, &off), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_allocator_alloc(a, (1 << 16) + 1, &off), CUIPC_ERR_INVALID_ARG);
    CHECK_STATUS(cuipc_allocator_alloc(a, UINT64_MAX, &off), CUIPC_ERR_INVALID_ARG);
    CHECK(alloc_ok(a, 1 << 16) == 0);
    CHECK(cuipc_allocator_block_size(a, 0) == 1 << 16);
    CHECK_STATUS(cuipc_allocator_alloc(a, 1, &off), CUIPC_ERR_POOL_FULL);
    CHECK(strstr(cuipc_last_error(), "largest free block 0") != NULL);
    CHECK_OK(cuipc_allocator_free(a, 0));
    /* 1 byte takes a whole aligned unit. */
    off = alloc_ok(a, 1);
    CHECK(cuipc_allocator_block_size(a, off) == 256);
    CHECK_OK(cuipc_allocator_check(a));
    cuipc_allocator_destroy(a);
}

static void test_fill_then_free_all(void) {
    for (int fit = 0; fit < 2; fit++) {
        const uint64_t arena = 3 * 1000 * 64 + 17;
        cuipc_allocator *a = make(arena, 64, (cuipc_fit)fit);
        uint64_t rng = 42 + (uint64_t)fit;
        uint64_t offs[4096];
        size_t n = 0;
        cuipc_allocator_stats st;
        for (;;) {
            cuipc_allocator_stats_get(a, &st);
            if (st.free == 0)
                break;
            uint64_t size = 1 + cuipc_test_rand(&rng) % 2000;
            if (size > st.largest_free)
                size = st.largest_free; /* finish with exact fits */
            REQUIRE(n < sizeof offs / sizeof *offs);
            offs[n++] = alloc_ok(a, size);
        }
        uint64_t off;
        CHECK_STATUS(cuipc_allocator_alloc(a, 1, &off), CUIPC_ERR_POOL_FULL);
        cuipc_allocator_stats_get(a, &st);
        CHECK(st.used == st.arena && st.free_blocks == 0 && st.used_blocks == n);
        /* Free in a shuffled order so coalescing meets every neighbour pattern. */
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)(cuipc_test_rand(&rng) % i);
            uint64_t t = offs[i - 1];
            offs[i - 1] = offs[j];
            offs[j] = t;
        }
        for (size_t i = 0; i < n; i++) {
            CHECK_OK(cuipc_allocator_free(a, offs[i]));
            CHECK_OK(cuipc_allocator_check(a));
        }
        cuipc_allocator_stats_get(a, &st);
        CHECK(st.free_blocks == 1 && st.largest_free == st.arena && st.used == 0 &&
              st.used_blocks == 0);
        CHECK(alloc_ok(a, st.arena) == 0);
        cuipc_allocator_destroy(a);
    }
}

static void test_coalesce_both_sides(void) {
    cuipc_allocator *a = make(64 * 100, 64, CUIPC_FIT_BEST);
    uint64_t x = alloc_ok(a, 64 * 10), y = alloc_ok(a, 64 * 20), z = alloc_ok(a, 64 * 30);
    uint64_t rest = alloc_ok(a, 64 * 40);
    CHECK(x == 0 && y == 640 && z == 64 * 30 && rest == 64 * 60);
    CHECK_OK(cuipc_allocator_free(a, x));
    CHECK_OK(cuipc_allocator_free(a, z));
    cuipc_allocator_stats st;
    cuipc_allocator_stats_get(a, &st);
    CHECK(st.free_blocks == 2 && st.largest_free == 64 * 30);
    CHECK_OK(cuipc_allocator_free(a, y)); /* merges with x on the left and z on the right */
    CHECK_OK(cuipc_allocator_check(a));
    cuipc_allocator_stats_get(a, &st);
    CHECK(st.free_blocks == 1 && st.largest_free == 64 * 60 && st.used_blocks == 1);
    CHECK(alloc_ok(a, 64 * 60) == 0);
    cuipc_allocator_destroy(a);
}

/* Leave free holes of the given unit counts, separated by live blocks. */
static void make_holes(cuipc_allocator *a, const uint64_t *units, size_t n, uint64_t *hole_offs) {
    for (size_t i = 0; i < n; i++) {
        hole_offs[i] = alloc_ok(a, units[i] * 64);
        alloc_ok(a, 64); /* separator */
    }
    cuipc_allocator_stats st;
    cuipc_allocator_stats_get(a, &st);
    alloc_ok(a, st.largest_free); /* no tail left */
    for (size_t i = 0; i < n; i++)
        CHECK_OK(cuipc_allocator_free(a, hole_offs[i]));
}

static void test_fit_policies(void) {
    const uint64_t holes[] = {40, 33, 100};
    uint64_t offs[3];
    /* BEST takes the exact fit even though the same size class holds nothing else. */
    cuipc_allocator *a = make(64 * 400, 64, CUIPC_FIT_BEST);
    make_holes(a, holes, 3, offs);
    CHECK(alloc_ok(a, 33 * 64) == offs[1]);
    CHECK(cuipc_allocator_block_size(a, offs[1]) == 33 * 64);
    cuipc_allocator_stats st;
    cuipc_allocator_stats_get(a, &st);
    CHECK(st.free_blocks == 2); /* exact fit: nothing split off */
    CHECK(alloc_ok(a, 34 * 64) == offs[0]);
    CHECK_OK(cuipc_allocator_check(a));
    cuipc_allocator_destroy(a);

    /* FIRST takes the head of the first class whose blocks all fit: 33 units sits in the
     * class [32, 34) that may hold a 32, so the 40 hole (class [40, 42)) is taken. */
    a = make(64 * 400, 64, CUIPC_FIT_FIRST);
    make_holes(a, holes, 3, offs);
    CHECK(alloc_ok(a, 33 * 64) == offs[0]);
    CHECK(alloc_ok(a, 100 * 64) == offs[2]); /* exact class start: its own class all fits */
    /* Now nothing above class [32, 34) is free: the own class is searched, no false FULL. */
    CHECK(alloc_ok(a, 33 * 64) == offs[1]);
    CHECK_OK(cuipc_allocator_check(a));
    cuipc_allocator_destroy(a);
}

static void test_invalid_free(void) {
    cuipc_allocator *a = make(64 * 100, 64, CUIPC_FIT_FIRST);
    uint64_t x = alloc_ok(a, 64 * 4);
    alloc_ok(a, 64);
    CHECK_STATUS(cuipc_allocator_free(a, x + 64), CUIPC_ERR_INVALID_ARG); /* inside a block */
    CHECK_STATUS(cuipc_allocator_free(a, x + 1), CUIPC_ERR_INVALID_ARG);  /* misaligned */
    CHECK(strstr(cuipc_last_error(), "not aligned") != NULL);
    CHECK_STATUS(cuipc_allocator_free(a, 64 * 100), CUIPC_ERR_INVALID_ARG); /* past the end */
    CHECK(strstr(cuipc_last_error(), "beyond arena") != NULL);
    CHECK_STATUS(cuipc_allocator_free(a, 64 * 50), CUIPC_ERR_INVALID_ARG); /* a free block */
    CHECK_OK(cuipc_allocator_free(a, x));
    CHECK_STATUS(cuipc_allocator_free(a, x), CUIPC_ERR_INVALID_ARG); /* double free */
    CHECK(strstr(cuipc_last_error(), "double free") != NULL);
    CHECK(cuipc_allocator_block_size(a, x) == 0);
    CHECK(cuipc_allocator_block_size(a, UINT64_MAX) == 0);
    CHECK_OK(cuipc_allocator_check(a));
    cuipc_allocator_stats st;
    cuipc_allocator_stats_get(a, &st);
    CHECK(st.used_blocks == 1 && st.used == 64);
    cuipc_allocator_destroy(a);
}

static void test_fragmentation(void) {
    const uint64_t block = 4096, count = 64;
    cuipc_allocator *a = make(block * count, 256, CUIPC_FIT_BEST);
    uint64_t offs[64];
    for (uint64_t i = 0; i < count; i++)
        offs[i] = alloc_ok(a, block);
    for (uint64_t i = 0; i < count; i += 2)
        CHECK_OK(cuipc_allocator_free(a, offs[i]));
    cuipc_allocator_stats st;
    cuipc_allocator_stats_get(a, &st);
    CHECK(st.free == block * count / 2 && st.largest_free == block && st.largest_free < st.free);
    CHECK(st.free_blocks == count / 2);
    uint64_t off;
    CHECK_STATUS(cuipc_allocator_alloc(a, 2 * block, &off), CUIPC_ERR_POOL_FULL);
    char want[96];
    snprintf(want, sizeof want, "%" PRIu64 " bytes", 2 * block);
    CHECK(strstr(cuipc_last_error(), want) != NULL);
    snprintf(want, sizeof want, "largest free block %" PRIu64, block);
    CHECK(strstr(cuipc_last_error(), want) != NULL);
    /* Freeing one live block in between joins three blocks into one. */
    CHECK_OK(cuipc_allocator_free(a, offs[1]));
    CHECK(alloc_ok(a, 3 * block) == offs[0]);
    CHECK_OK(cuipc_allocator_check(a));
    cuipc_allocator_destroy(a);
}

/* Many small blocks: node array and offset hash both grow several times. */
static void test_growth(void) {
    const uint64_t n = 20000;
    cuipc_allocator *a = make(n * 8, 8, CUIPC_FIT_FIRST);
    for (uint64_t i = 0; i < n; i++)
        CHECK(alloc_ok(a, 8) == i * 8);
    CHECK_OK(cuipc_allocator_check(a));
    for (uint64_t i = 0; i < n; i += 3)
        CHECK_OK(cuipc_allocator_free(a, i * 8));
    for (uint64_t i = 0; i < n; i++)
        CHECK(cuipc_allocator_block_size(a, i * 8) == (i % 3 ? 8u : 0u));
    CHECK_OK(cuipc_allocator_check(a));
    cuipc_allocator_destroy(a);
}

int main(void) {
    test_create_args();
    test_size_limits();
    test_fill_then_free_all();
    test_coalesce_both_sides();
    test_fit_policies();
    test_invalid_free();
    test_fragmentation();
    test_growth();
    test_property();
    return cuipc_test_finish("test_allocator");
}
