/* Two-level segregated-fit allocator over an arena of offsets (TLSF-like).
 *
 * Sizes are handled in units of the alignment. A free block of u units lives in the list of
 * class (fl, sl): fl = floor(log2 u) (shifted so the first SL_COUNT sizes get exact classes) and
 * sl = the next SL_BITS bits below the top one. Two bitmaps say which lists are non-empty, so
 * the first non-empty class >= a request is found with two count-trailing-zeros.
 *
 * Every block (free or allocated) is a node in an address-ordered doubly linked list, so free()
 * merges with both neighbours at once. Nodes live in a growable array (indices, not pointers,
 * so the array may move) with a free list of unused node indices. Allocated blocks are also in
 * an open-addressing hash offset -> node, so free(offset) and block_size(offset) are O(1) and
 * anything that is not the start of an allocated block is rejected. */
#include "allocator.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"

#define SL_BITS 4u
#define SL_COUNT (1u << SL_BITS)
#define FL_COUNT 64u
#define NIL UINT32_MAX
#define HASH_EMPTY UINT64_MAX /* offsets are < arena < 2^64 - 1, so never this */
#define MAX_NODES (UINT32_MAX - 1u)

typedef struct block_node {
    uint64_t offset; /* bytes */
    uint64_t units;  /* size in alignment units */
    uint32_t prev_addr, next_addr;
    uint32_t prev_free, next_free; /* size-class list; next_free also links unused nodes */
    bool is_free;
    bool in_use; /* false while the node sits on the unused-node list */
} block_node;

struct cuipc_allocator {
    uint64_t arena; /* bytes managed: a multiple of alignment */
    uint64_t alignment;
    unsigned align_shift;
    cuipc_fit fit;

    block_node *nodes;
    uint32_t node_count; /* array entries ever handed out */
    uint32_t node_cap;
    uint32_t unused_head; /* recycled node indices */
    uint32_t addr_head;   /* the block at offset 0 */

    uint64_t fl_bitmap;
    uint32_t sl_bitmap[FL_COUNT];
    uint32_t heads[FL_COUNT][SL_COUNT];

    uint64_t *hash_keys; /* offset of an allocated block, or HASH_EMPTY */
    uint32_t *hash_nodes;
    unsigned hash_bits;
    uint32_t hash_count;

    uint64_t used_units, free_units, free_blocks, used_blocks;
};

/* ---- size classes ---------------------------------------------------------------------- */

static unsigned top_bit(uint64_t v) {
    return 63u - (unsigned)__builtin_clzll(v);
}

static void size_class(uint64_t units, unsigned *fl, unsigned *sl) {
    if (units < SL_COUNT) {
        *fl = 0;
        *sl = (unsigned)units;
        return;
    }
    unsigned f = top_bit(units);
    *fl = f - SL_BITS + 1u;
    *sl = (unsigned)(units >> (f - SL_BITS)) - SL_COUNT;
}

/* The class after (fl, sl); false past the last one. */
static bool next_class(unsigned *fl, unsigned *sl) {
    if (*sl + 1u < SL_COUNT) {
        (*sl)++;
        return true;
    }
    if (*fl + 1u >= FL_COUNT)
        return false;
    (*fl)++;
    *sl = 0;
    return true;
}

/* First non-empty list at class >= (fl, sl), using the bitmaps only. */
static bool find_nonempty(const cuipc_allocator *a, unsigned fl, unsigned sl, unsigned *out_fl,
                          unsigned *out_sl) {
    uint32_t sl_map = a->sl_bitmap[fl] & (~0u << sl);
    if (!sl_map) {
        uint64_t fl_map = fl + 1u < FL_COUNT ? a->fl_bitmap & (~0ull << (fl + 1u)) : 0;
        if (!fl_map)
            return false;
        fl = (unsigned)__builtin_ctzll(fl_map);
        sl_map = a->sl_bitmap[fl];
    }
    *out_fl = fl;
    *out_sl = (unsigned)__builtin_ctz(sl_map);
    return true;
}

/* ---- free lists ------------------------------------------------------------------------ */

static void free_list_insert(cuipc_allocator *a, uint32_t idx) {
    block_node *n = &a->nodes[idx];
    unsigned fl, sl;
    size_class(n->units, &fl, &sl);
    uint32_t head = a->heads[fl][sl];
    n->is_free = true;
    n->prev_free = NIL;
    n->next_free = head;
    if (head != NIL)
        a->nodes[head].prev_free = idx;
    a->heads[fl][sl] = idx;
    a->sl_bitmap[fl] |= 1u << sl;
    a->fl_bitmap |= 1ull << fl;
    a->free_units += n->units;
    a->free_blocks++;
}

static void free_list_remove(cuipc_allocator *a, uint32_t idx) {
    block_node *n = &a->nodes[idx];
    unsigned fl, sl;
    size_class(n->units, &fl, &sl);
    if (n->prev_free != NIL)
        a->nodes[n->prev_free].next_free = n->next_free;
    else
        a->heads[fl][sl] = n->next_free;
    if (n->next_free != NIL)
        a->nodes[n->next_free].prev_free = n->prev_free;
    if (a->heads[fl][sl] == NIL) {
        a->sl_bitmap[fl] &= ~(1u << sl);
        if (!a->sl_bitmap[fl])
            a->fl_bitmap &= ~(1ull << fl);
    }
    n->is_free = false;
    n->prev_free = n->next_free = NIL;
    a->free_units -= n->units;
    a->free_blocks--;
}

/* ---- node pool ------------------------------------------------------------------------- */

/* Make sure one node can be taken without allocating, so a later failure cannot leave the
 * block structures half-updated. */
static cuipc_status reserve_node(cuipc_allocator *a) {
    if (a->unused_head != NIL || a->node_count < a->node_cap)
        return CUIPC_OK;
    if (a->node_cap >= MAX_NODES)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "block node limit %u reached", MAX_NODES);
    uint64_t cap = (uint64_t)a->node_cap * 2u;
    if (cap > MAX_NODES)
        cap = MAX_NODES;
    block_node *grown = realloc(a->nodes, (size_t)cap * sizeof *grown);
    if (!grown)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "growing block nodes to %llu",
                          (unsigned long long)cap);
    a->nodes = grown;
    a->node_cap = (uint32_t)cap;
    return CUIPC_OK;
}

static uint32_t take_node(cuipc_allocator *a) {
    uint32_t idx;
    if (a->unused_head != NIL) {
        idx = a->unused_head;
        a->unused_head = a->nodes[idx].next_free;
    } else {
        idx = a->node_count++;
    }
    block_node *n = &a->nodes[idx];
    memset(n, 0, sizeof *n);
    n->prev_addr = n->next_addr = n->prev_free = n->next_free = NIL;
    n->in_use = true;
    return idx;
}

static void drop_node(cuipc_allocator *a, uint32_t idx) {
    a->nodes[idx].in_use = false;
    a->nodes[idx].next_free = a->unused_head;
    a->unused_head = idx;
}

/* ---- offset -> node hash (allocated blocks only) ---------------------------------------- */

static uint32_t hash_slot(const cuipc_allocator *a, uint64_t offset) {
    uint64_t x = (offset >> a->align_shift) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> (64u - a->hash_bits));
}

static uint32_t hash_find(const cuipc_allocator *a, uint64_t offset) {
    uint32_t mask = (1u << a->hash_bits) - 1u;
    for (uint32_t i = hash_slot(a, offset);; i = (i + 1u) & mask) {
        if (a->hash_keys[i] == HASH_EMPTY)
            return NIL;
        if (a->hash_keys[i] == offset)
            return i;
    }
}

static void hash_put_raw(uint64_t *keys, uint32_t *vals, const cuipc_allocator *a, uint64_t key,
                         uint32_t node) {
    uint32_t mask = (1u << a->hash_bits) - 1u;
    uint32_t i = hash_slot(a, key);
    while (keys[i] != HASH_EMPTY)
        i = (i + 1u) & mask;
    keys[i] = key;
    vals[i] = node;
}

static cuipc_status hash_alloc_arrays(unsigned bits, uint64_t **keys, uint32_t **vals) {
    size_t cap = (size_t)1 << bits;
    *keys = malloc(cap * sizeof **keys);
    *vals = malloc(cap * sizeof **vals);
    if (!*keys || !*vals) {
        free(*keys);
        free(*vals);
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "offset hash of %zu entries", cap);
    }
    memset(*keys, 0xff, cap * sizeof **keys); /* all HASH_EMPTY */
    return CUIPC_OK;
}

/* Keep the load factor at most 1/2 so probes stay short; grown before any block changes. */
static cuipc_status reserve_hash(cuipc_allocator *a) {
    if (((uint64_t)a->hash_count + 1u) * 2u <= (1ull << a->hash_bits))
        return CUIPC_OK;
    if (a->hash_bits >= 31u)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "offset hash limit reached (%u entries)",
                          a->hash_count);
    uint64_t *keys;
    uint32_t *vals;
    CUIPC_TRY(hash_alloc_arrays(a->hash_bits + 1u, &keys, &vals));
    uint32_t old_cap = 1u << a->hash_bits;
    uint64_t *old_keys = a->hash_keys;
    uint32_t *old_vals = a->hash_nodes;
    a->hash_bits++;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old_keys[i] != HASH_EMPTY)
            hash_put_raw(keys, vals, a, old_keys[i], old_vals[i]);
    a->hash_keys = keys;
    a->hash_nodes = vals;
    free(old_keys);
    free(old_vals);
    return CUIPC_OK;
}

static void hash_insert(cuipc_allocator *a, uint64_t offset, uint32_t node) {
    hash_put_raw(a->hash_keys, a->hash_nodes, a, offset, node);
    a->hash_count++;
}

/* Linear-probing delete with backward shift: no tombstones, so lookups never degrade. */
static void hash_remove_at(cuipc_allocator *a, uint32_t i) {
    uint32_t mask = (1u << a->hash_bits) - 1u;
    uint32_t j = i;
    for (;;) {
        j = (j + 1u) & mask;
        if (a->hash_keys[j] == HASH_EMPTY)
            break;
        uint32_t home = hash_slot(a, a->hash_keys[j]);
        /* Move j back into the hole at i unless its home lies cyclically in (i, j]. */
        bool home_between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!home_between) {
            a->hash_keys[i] = a->hash_keys[j];
            a->hash_nodes[i] = a->hash_nodes[j];
            i = j;
        }
    }
    a->hash_keys[i] = HASH_EMPTY;
    a->hash_count--;
}

/* ---- public API ------------------------------------------------------------------------ */

cuipc_status cuipc_allocator_create(uint64_t arena, uint64_t alignment, cuipc_fit fit,
                                    cuipc_allocator **out) {
    if (!out)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (alignment < 8 || (alignment & (alignment - 1)) != 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "alignment %llu is not a power of two >= 8",
                          (unsigned long long)alignment);
    if (fit != CUIPC_FIT_BEST && fit != CUIPC_FIT_FIRST)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "unknown fit policy %d", (int)fit);
    /* Bytes past the last whole alignment unit can never start a block: not managed. */
    uint64_t managed = arena & ~(alignment - 1);
    if (managed == 0)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "arena of %llu bytes holds no block of alignment %llu",
                          (unsigned long long)arena, (unsigned long long)alignment);

    cuipc_allocator *a = calloc(1, sizeof *a);
    if (!a)
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "allocator struct");
    a->arena = managed;
    a->alignment = alignment;
    a->align_shift = (unsigned)__builtin_ctzll(alignment);
    a->fit = fit;
    a->node_cap = 64;
    a->nodes = malloc(a->node_cap * sizeof *a->nodes);
    a->hash_bits = 6;
    a->unused_head = NIL;
    if (!a->nodes || hash_alloc_arrays(a->hash_bits, &a->hash_keys, &a->hash_nodes) != CUIPC_OK) {
        free(a->nodes);
        free(a);
        return CUIPC_FAIL(CUIPC_ERR_NO_MEMORY, "allocator tables");
    }
    for (unsigned f = 0; f < FL_COUNT; f++)
        for (unsigned s = 0; s < SL_COUNT; s++)
            a->heads[f][s] = NIL;

    uint32_t whole = take_node(a);
    a->nodes[whole].offset = 0;
    a->nodes[whole].units = managed >> a->align_shift;
    a->addr_head = whole;
    free_list_insert(a, whole);
    *out = a;
    return CUIPC_OK;
}

void cuipc_allocator_destroy(cuipc_allocator *a) {
    if (!a)
        return;
    free(a->nodes);
    free(a->hash_keys);
    free(a->hash_nodes);
    free(a);
}

/* Smallest fitting block in one list (stops at an exact fit), or NIL. */
static uint32_t scan_smallest(const cuipc_allocator *a, unsigned fl, unsigned sl, uint64_t units) {
    uint32_t best = NIL;
    for (uint32_t i = a->heads[fl][sl]; i != NIL; i = a->nodes[i].next_free) {
        uint64_t u = a->nodes[i].units;
        if (u >= units && (best == NIL || u < a->nodes[best].units)) {
            best = i;
            if (u == units)
                break;
        }
    }
    return best;
}

static uint32_t scan_first(const cuipc_allocator *a, unsigned fl, unsigned sl, uint64_t units) {
    for (uint32_t i = a->heads[fl][sl]; i != NIL; i = a->nodes[i].next_free)
        if (a->nodes[i].units >= units)
            return i;
    return NIL;
}

/* The request's own class may hold blocks both smaller and larger than it; every class above
 * holds only blocks that fit. */
static uint32_t find_block(const cuipc_allocator *a, uint64_t units) {
    unsigned fl, sl, nf, ns;
    size_class(units, &fl, &sl);
    uint64_t class_start = fl == 0 ? sl : (uint64_t)(SL_COUNT + sl) << (fl - 1u);
    bool own_all_fit = units == class_start;
    unsigned above_fl = fl, above_sl = sl;
    bool has_above = next_class(&above_fl, &above_sl);

    if (a->fit == CUIPC_FIT_BEST) {
        /* Any fitting block of the own class is smaller than every block above it. */
        uint32_t idx = scan_smallest(a, fl, sl, units);
        if (idx != NIL)
            return idx;
        if (has_above && find_nonempty(a, above_fl, above_sl, &nf, &ns))
            return scan_smallest(a, nf, ns, units);
        return NIL;
    }
    /* FIRST: head of the first list whose blocks all fit (O(1)); the own class is scanned
     * only when nothing above it is free. */
    if (own_all_fit && find_nonempty(a, fl, sl, &nf, &ns))
        return a->heads[nf][ns];
    if (has_above && find_nonempty(a, above_fl, above_sl, &nf, &ns))
        return a->heads[nf][ns];
    return own_all_fit ? NIL : scan_first(a, fl, sl, units);
}

static uint64_t largest_free_units(const cuipc_allocator *a) {
    if (!a->fl_bitmap)
        return 0;
    unsigned fl = top_bit(a->fl_bitmap);
    unsigned sl = 31u - (unsigned)__builtin_clz(a->sl_bitmap[fl]);
    uint64_t best = 0;
    for (uint32_t i = a->heads[fl][sl]; i != NIL; i = a->nodes[i].next_free)
        if (a->nodes[i].units > best)
            best = a->nodes[i].units;
    return best;
}

cuipc_status cuipc_allocator_alloc(cuipc_allocator *a, uint64_t size, uint64_t *offset) {
    if (!a || !offset)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "allocator or offset is NULL");
    if (size == 0 || size > a->arena)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "size %llu outside 1..%llu (arena)",
                          (unsigned long long)size, (unsigned long long)a->arena);
    uint64_t units = (size + a->alignment - 1) >> a->align_shift;
    /* Both reservations happen before any change so a NO_MEMORY leaves the state intact. */
    CUIPC_TRY(reserve_node(a));
    CUIPC_TRY(reserve_hash(a));

    uint32_t idx = find_block(a, units);
    if (idx == NIL)
        return CUIPC_FAIL(CUIPC_ERR_POOL_FULL,
                          "no free block for %llu bytes (%llu aligned): largest free block %llu "
                          "bytes, %llu bytes free in %llu blocks",
                          (unsigned long long)size, (unsigned long long)(units << a->align_shift),
                          (unsigned long long)(largest_free_units(a) << a->align_shift),
                          (unsigned long long)(a->free_units << a->align_shift),
                          (unsigned long long)a->free_blocks);

    free_list_remove(a, idx);
    if (a->nodes[idx].units > units) {
        /* Split: the low part is handed out, the remainder stays free right after it. */
        uint32_t rest = take_node(a);
        block_node *n = &a->nodes[idx];
        block_node *r = &a->nodes[rest];
        r->offset = n->offset + (units << a->align_shift);
        r->units = n->units - units;
        r->prev_addr = idx;
        r->next_addr = n->next_addr;
        if (n->next_addr != NIL)
            a->nodes[n->next_addr].prev_addr = rest;
        n->next_addr = rest;
        n->units = units;
        free_list_insert(a, rest);
    }
    a->used_units += units;
    a->used_blocks++;
    hash_insert(a, a->nodes[idx].offset, idx);
    *offset = a->nodes[idx].offset;
    return CUIPC_OK;
}

/* Fold block gone (right after keep in address order, already off its free list) into keep. */
static void absorb_next(cuipc_allocator *a, uint32_t keep, uint32_t gone) {
    block_node *k = &a->nodes[keep];
    block_node *g = &a->nodes[gone];
    k->units += g->units;
    k->next_addr = g->next_addr;
    if (g->next_addr != NIL)
        a->nodes[g->next_addr].prev_addr = keep;
    drop_node(a, gone);
}

cuipc_status cuipc_allocator_free(cuipc_allocator *a, uint64_t offset) {
    if (!a)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "allocator is NULL");
    if (offset >= a->arena)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "offset %llu beyond arena of %llu bytes",
                          (unsigned long long)offset, (unsigned long long)a->arena);
    if (offset & (a->alignment - 1))
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "offset %llu not aligned to %llu",
                          (unsigned long long)offset, (unsigned long long)a->alignment);
    uint32_t h = hash_find(a, offset);
    if (h == NIL)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG,
                          "offset %llu is not the start of an allocated block (double free or "
                          "forged offset)",
                          (unsigned long long)offset);
    uint32_t idx = a->hash_nodes[h];
    hash_remove_at(a, h);
    a->used_units -= a->nodes[idx].units;
    a->used_blocks--;

    uint32_t next = a->nodes[idx].next_addr;
    if (next != NIL && a->nodes[next].is_free) {
        free_list_remove(a, next);
        absorb_next(a, idx, next);
    }
    uint32_t prev = a->nodes[idx].prev_addr;
    if (prev != NIL && a->nodes[prev].is_free) {
        free_list_remove(a, prev);
        absorb_next(a, prev, idx);
        idx = prev;
    }
    free_list_insert(a, idx);
    return CUIPC_OK;
}

uint64_t cuipc_allocator_block_size(const cuipc_allocator *a, uint64_t offset) {
    if (!a || offset >= a->arena)
        return 0;
    uint32_t h = hash_find(a, offset);
    return h == NIL ? 0 : a->nodes[a->hash_nodes[h]].units << a->align_shift;
}

void cuipc_allocator_stats_get(const cuipc_allocator *a, cuipc_allocator_stats *out) {
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!a)
        return;
    out->arena = a->arena;
    out->used = a->used_units << a->align_shift;
    out->free = a->free_units << a->align_shift;
    out->largest_free = largest_free_units(a) << a->align_shift;
    out->free_blocks = a->free_blocks;
    out->used_blocks = a->used_blocks;
}

/* ---- invariants ------------------------------------------------------------------------ */

#define CHECK_OR_FAIL(cond, ...)                                                                   \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return CUIPC_FAIL(CUIPC_ERR_CORRUPT, __VA_ARGS__);                                     \
    } while (0)

static cuipc_status check_address_list(const cuipc_allocator *a, uint64_t *free_units,
                                       uint64_t *free_blocks, uint64_t *used_units,
                                       uint64_t *used_blocks, uint32_t *live_nodes) {
    uint64_t expect_offset = 0;
    uint32_t prev = NIL, steps = 0;
    bool prev_free = false;
    for (uint32_t i = a->addr_head; i != NIL; i = a->nodes[i].next_addr) {
        CHECK_OR_FAIL(i < a->node_count, "address list: node index %u >= %u", i, a->node_count);
        CHECK_OR_FAIL(++steps <= a->node_count, "address list: cycle after %u nodes", steps);
        const block_node *n = &a->nodes[i];
        CHECK_OR_FAIL(n->in_use, "address list: node %u is on the unused list", i);
        CHECK_OR_FAIL(n->prev_addr == prev, "node %u: prev_addr %u, expected %u", i, n->prev_addr,
                      prev);
        CHECK_OR_FAIL(n->offset == expect_offset,
                      "node %u at offset %llu, expected %llu (blocks must tile the arena)", i,
                      (unsigned long long)n->offset, (unsigned long long)expect_offset);
        CHECK_OR_FAIL(n->units > 0, "node %u at offset %llu has size 0", i,
                      (unsigned long long)n->offset);
        CHECK_OR_FAIL(n->units <= (a->arena - n->offset) >> a->align_shift,
                      "node %u at offset %llu: %llu units run past the arena", i,
                      (unsigned long long)n->offset, (unsigned long long)n->units);
        CHECK_OR_FAIL(!(prev_free && n->is_free),
                      "free blocks at offsets %llu and %llu are neighbours (not coalesced)",
                      (unsigned long long)a->nodes[prev].offset, (unsigned long long)n->offset);
        uint32_t h = hash_find(a, n->offset);
        if (n->is_free) {
            *free_units += n->units;
            (*free_blocks)++;
            CHECK_OR_FAIL(h == NIL, "free block at offset %llu is in the offset hash",
                          (unsigned long long)n->offset);
        } else {
            *used_units += n->units;
            (*used_blocks)++;
            CHECK_OR_FAIL(h != NIL && a->hash_nodes[h] == i,
                          "allocated block at offset %llu missing from the offset hash",
                          (unsigned long long)n->offset);
        }
        expect_offset = n->offset + (n->units << a->align_shift);
        prev_free = n->is_free;
        prev = i;
    }
    CHECK_OR_FAIL(expect_offset == a->arena, "blocks end at %llu, arena is %llu bytes",
                  (unsigned long long)expect_offset, (unsigned long long)a->arena);
    *live_nodes = steps;
    return CUIPC_OK;
}

static cuipc_status check_free_lists(const cuipc_allocator *a, uint64_t *listed) {
    for (unsigned fl = 0; fl < FL_COUNT; fl++) {
        bool fl_bit = (a->fl_bitmap >> fl) & 1u;
        CHECK_OR_FAIL(fl_bit == (a->sl_bitmap[fl] != 0), "fl bitmap bit %u is %d, sl bitmap 0x%x",
                      fl, (int)fl_bit, a->sl_bitmap[fl]);
        for (unsigned sl = 0; sl < SL_COUNT; sl++) {
            uint32_t head = a->heads[fl][sl];
            bool sl_bit = (a->sl_bitmap[fl] >> sl) & 1u;
            CHECK_OR_FAIL(sl_bit == (head != NIL), "class (%u,%u): bitmap bit %d, list %s", fl, sl,
                          (int)sl_bit, head == NIL ? "empty" : "non-empty");
            uint32_t prev = NIL;
            for (uint32_t i = head; i != NIL; i = a->nodes[i].next_free) {
                CHECK_OR_FAIL(i < a->node_count, "class (%u,%u): node index %u out of range", fl,
                              sl, i);
                CHECK_OR_FAIL(++*listed <= a->node_count, "free lists: cycle in class (%u,%u)", fl,
                              sl);
                const block_node *n = &a->nodes[i];
                CHECK_OR_FAIL(n->in_use && n->is_free,
                              "class (%u,%u): node %u at offset %llu is not a free block", fl, sl,
                              i, (unsigned long long)n->offset);
                CHECK_OR_FAIL(n->prev_free == prev, "class (%u,%u): node %u prev_free %u != %u", fl,
                              sl, i, n->prev_free, prev);
                unsigned f, s;
                size_class(n->units, &f, &s);
                CHECK_OR_FAIL(f == fl && s == sl,
                              "block at offset %llu (%llu units) in class (%u,%u), belongs in "
                              "(%u,%u)",
                              (unsigned long long)n->offset, (unsigned long long)n->units, fl, sl,
                              f, s);
                prev = i;
            }
        }
    }
    return CUIPC_OK;
}

cuipc_status cuipc_allocator_check(const cuipc_allocator *a) {
    if (!a)
        return CUIPC_FAIL(CUIPC_ERR_INVALID_ARG, "allocator is NULL");
    uint64_t free_units = 0, free_blocks = 0, used_units = 0, used_blocks = 0, listed = 0;
    uint32_t live_nodes = 0;
    CUIPC_TRY(
        check_address_list(a, &free_units, &free_blocks, &used_units, &used_blocks, &live_nodes));
    CUIPC_TRY(check_free_lists(a, &listed));
    CHECK_OR_FAIL(listed == free_blocks, "%llu blocks in free lists, %llu free in address order",
                  (unsigned long long)listed, (unsigned long long)free_blocks);
    CHECK_OR_FAIL(a->hash_count == used_blocks, "offset hash holds %u entries, %llu allocated",
                  a->hash_count, (unsigned long long)used_blocks);
    CHECK_OR_FAIL(free_units == a->free_units && free_blocks == a->free_blocks &&
                      used_units == a->used_units && used_blocks == a->used_blocks,
                  "stats (free %llu/%llu blocks, used %llu/%llu blocks) differ from the walk "
                  "(free %llu/%llu, used %llu/%llu) in units",
                  (unsigned long long)a->free_units, (unsigned long long)a->free_blocks,
                  (unsigned long long)a->used_units, (unsigned long long)a->used_blocks,
                  (unsigned long long)free_units, (unsigned long long)free_blocks,
                  (unsigned long long)used_units, (unsigned long long)used_blocks);
    uint32_t unused = 0;
    for (uint32_t i = a->unused_head; i != NIL; i = a->nodes[i].next_free) {
        CHECK_OR_FAIL(i < a->node_count && !a->nodes[i].in_use,
                      "unused-node list holds node %u (in use or out of range)", i);
        CHECK_OR_FAIL(++unused <= a->node_count, "unused-node list: cycle");
    }
    CHECK_OR_FAIL((uint64_t)unused + live_nodes == a->node_count,
                  "%u live + %u unused nodes != %u nodes handed out (leak)", live_nodes, unused,
                  a->node_count);
    return CUIPC_OK;
}
