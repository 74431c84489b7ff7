/*
 * sp_arena.c -- per-process allocator over shared-memory regions.
 *
 * Small requests (<= SP_ARENA_LARGE_THRESHOLD) are served from size classes:
 * each class owns "slabs" (regions) carved into equal slots of
 * SP_BLOCK_HEADER_SIZE + capacity bytes, carved lazily and recycled LIFO.
 * Large requests get a dedicated region (header flag bit 0) that goes into a
 * bounded cache when freed and is reused for a later request of similar size.
 *
 * All bookkeeping is process-local and protected by one mutex; the only
 * shared state is the block headers (refcounts) inside the regions. Every
 * container that release/reclaim pushes into is grown in advance during
 * alloc, so release and reclaim never allocate and never fail on memory.
 */
#include "sp_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { SLOT_FREE = 0, SLOT_LIVE = 1, SLOT_DEFERRED = 2 };

#define AR_SMALLEST_CLASS UINT64_C(256)
#define AR_STEP_START (UINT64_C(64) << 10) /* 4 sub-steps per doubling above */
#define AR_MAX_CLASSES 64
#define AR_DEFAULT_SLAB (UINT64_C(8) << 20)
#define AR_DEFAULT_CACHE (UINT64_C(1) << 30)
#define AR_DATA0 ((uint64_t)SP_REGION_HEADER_SIZE + SP_BLOCK_HEADER_SIZE)

typedef struct ar_region {
    sp_region r;
    int cls;          /* size class index, -1 for a dedicated region */
    int cached;       /* dedicated: sitting in the free cache */
    uint64_t slot;    /* slot size (header + capacity); dedicated: unused */
    uint64_t nslots;  /* slots that fit; dedicated: 1 */
    uint64_t carved;  /* slots handed out at least once */
    uint8_t *state;   /* per slot: SLOT_* */
} ar_region;

typedef struct ar_slot {
    ar_region *reg;
    uint64_t idx;
} ar_slot;

typedef struct ar_slotvec {
    ar_slot *v;
    size_t n, cap;
} ar_slotvec;

typedef struct ar_class {
    uint64_t capacity;
    uint64_t total_slots; /* carved slots of this class, all slabs */
    ar_region *current;   /* slab being carved */
    ar_slotvec free;      /* LIFO */
} ar_class;

struct sp_arena {
    pthread_mutex_t mu;
    uint64_t generation; /* ar_fork_generation when made (see ar_inherited) */
    uint64_t cap_bytes, slab_bytes, cache_limit;
    int prefault;
    char *shm_dir;

    int nclasses;
    ar_class classes[AR_MAX_CLASSES];

    ar_region **regions; /* sorted by base address */
    size_t nregions, regions_cap;

    ar_region **cache; /* freed dedicated regions, oldest first */
    size_t ncache, cache_cap;
    uint64_t cache_used;
    size_t nlarge; /* dedicated regions alive (cache capacity reserve) */

    ar_slotvec deferred;
    int unlinked; /* names removed by sp_arena_unlink_all: allocate no more */

    sp_arena_stats st;
};

/* ---- small containers ---- */

/* Grow *v (an array of elem-sized items with capacity *cap) to hold need
 * items. Returns SP_OK or SP_ERR_NOMEM (leaving *v intact). */
static int ar_grow(void **v, size_t *cap, size_t need, size_t elem)
{
    size_t ncap;
    void *nv;
    if (need <= *cap)
        return SP_OK;
    ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return SP_ERR_NOMEM;
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / elem)
        return SP_ERR_NOMEM;
    nv = realloc(*v, ncap * elem);
    if (nv == NULL)
        return SP_ERR_NOMEM;
    *v = nv;
    *cap = ncap;
    return SP_OK;
}

static int ar_slotvec_reserve(ar_slotvec *sv, size_t need)
{
    void *v = sv->v;
    int rc = ar_grow(&v, &sv->cap, need, sizeof(ar_slot));
    sv->v = (ar_slot *)v;
    return rc;
}

static int ar_ptrvec_reserve(ar_region ***vec, size_t *cap, size_t need)
{
    void *v = *vec;
    int rc = ar_grow(&v, cap, need, sizeof(ar_region *));
    *vec = (ar_region **)v;
    return rc;
}

/* Capacity reserved in advance: never fails. */
static void ar_slotvec_push(ar_slotvec *sv, ar_region *reg, uint64_t idx)
{
    sv->v[sv->n].reg = reg;
    sv->v[sv->n].idx = idx;
    sv->n++;
}

/* ---- size classes ---- */

static void ar_init_classes(sp_arena *a)
{
    uint64_t c = AR_SMALLEST_CLASS;
    int n = 0;
    while (c <= AR_STEP_START && n < AR_MAX_CLASSES) {
        a->classes[n++].capacity = c;
        c *= 2;
    }
    /* Above 64 KiB: 4 steps per doubling (multiples of 16 KiB, so aligned). */
    for (c = AR_STEP_START; c < SP_ARENA_LARGE_THRESHOLD; c *= 2) {
        uint64_t step = c / 4, k;
        for (k = 1; k <= 4 && n < AR_MAX_CLASSES; k++)
            a->classes[n++].capacity = c + k * step;
    }
    a->nclasses = n;
}

static int ar_class_for(const sp_arena *a, uint64_t nbytes)
{
    int lo = 0, hi = a->nclasses - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (a->classes[mid].capacity >= nbytes)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* ---- region bookkeeping ---- */

static size_t ar_regions_lower(const sp_arena *a, const uint8_t *p)
{
    size_t lo = 0, hi = a->nregions;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)a->regions[mid]->r.base < (uintptr_t)p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static ar_region *ar_find_region(const sp_arena *a, const uint8_t *p)
{
    size_t i = ar_regions_lower(a, p);
    ar_region *reg;
    if (i < a->nregions && a->regions[i]->r.base == p)
        reg = a->regions[i];
    else if (i == 0)
        return NULL;
    else
        reg = a->regions[i - 1];
    if ((uintptr_t)p < (uintptr_t)reg->r.base ||
        (uintptr_t)p - (uintptr_t)reg->r.base >= reg->r.size)
        return NULL;
    return reg;
}

static void ar_region_free_mem(ar_region *reg)
{
    free(reg->state);
    free(reg);
}

/* Unlink and unmap a region and drop it from the lookup array. */
static void ar_region_destroy(sp_arena *a, ar_region *reg)
{
    size_t i = ar_regions_lower(a, reg->r.base);
    if (i < a->nregions && a->regions[i] == reg) {
        memmove(&a->regions[i], &a->regions[i + 1],
                (a->nregions - i - 1) * sizeof *a->regions);
        a->nregions--;
    }
    a->st.regions--;
    a->st.mapped_bytes -= reg->r.size;
    if (reg->cls < 0)
        a->nlarge--;
    sp_region_unlink(reg->r.name);
    sp_region_detach(&reg->r);
    ar_region_free_mem(reg);
}

static void ar_cache_remove_at(sp_arena *a, size_t i)
{
    ar_region *reg = a->cache[i];
    memmove(&a->cache[i], &a->cache[i + 1],
            (a->ncache - i - 1) * sizeof *a->cache);
    a->ncache--;
    a->cache_used -= reg->r.size;
    reg->cached = 0;
}

static void ar_cache_evict_oldest(sp_arena *a)
{
    ar_region *reg = a->cache[0];
    ar_cache_remove_at(a, 0);
    ar_region_destroy(a, reg);
}

static void ar_cache_trim_all(sp_arena *a)
{
    while (a->ncache > 0)
        ar_cache_evict_oldest(a);
}

/* A dedicated region whose block became free. */
static void ar_cache_put(sp_arena *a, ar_region *reg)
{
    if (reg->r.size > a->cache_limit) {
        ar_region_destroy(a, reg);
        return;
    }
    while (a->ncache > 0 && a->cache_used + reg->r.size > a->cache_limit)
        ar_cache_evict_oldest(a);
    a->cache[a->ncache++] = reg; /* capacity reserved: cache_cap >= nlarge */
    a->cache_used += reg->r.size;
    reg->cached = 1;
}

static sp_block_header *ar_slot_header(const ar_region *reg, uint64_t idx)
{
    uint64_t off = reg->cls < 0 ? (uint64_t)SP_REGION_HEADER_SIZE
                                : SP_REGION_HEADER_SIZE + idx * reg->slot;
    return (sp_block_header *)(void *)(reg->r.base + off);
}

/* Return a slot whose refcount is 0 to its free list or the cache. */
static uint64_t ar_slot_capacity(const sp_arena *a, const ar_region *reg)
{
    return reg->cls < 0 ? reg->r.size - AR_DATA0
                        : a->classes[reg->cls].capacity;
}

static void ar_slot_free(sp_arena *a, ar_region *reg, uint64_t idx)
{
    reg->state[idx] = SLOT_FREE;
    a->st.live_blocks--;
    a->st.live_bytes -= ar_slot_capacity(a, reg);
    if (reg->cls >= 0)
        ar_slotvec_push(&a->classes[reg->cls].free, reg, idx);
    else
        ar_cache_put(a, reg);
}

static uint64_t ar_reclaim_locked(sp_arena *a)
{
    size_t i, j = 0;
    uint64_t n = 0;
    for (i = 0; i < a->deferred.n; i++) {
        ar_slot s = a->deferred.v[i];
        sp_block_header *b = ar_slot_header(s.reg, s.idx);
        if (__atomic_load_n(&b->refcount, __ATOMIC_ACQUIRE) <= 0) {
            ar_slot_free(a, s.reg, s.idx);
            n++;
        } else {
            a->deferred.v[j++] = s;
        }
    }
    a->deferred.n = j;
    a->st.deferred = j;
    return n;
}

/* Make room for a new region of total size `total` under the cap. */
static int ar_make_room(sp_arena *a, uint64_t total)
{
    uint64_t need;
    if (a->cap_bytes == 0)
        return SP_OK;
    if (sp_add_overflow(a->st.mapped_bytes, total, &need))
        return SP_ERR_CAP;
    if (need <= a->cap_bytes)
        return SP_OK;
    if (a->deferred.n > 0)
        ar_reclaim_locked(a);
    while (a->ncache > 0 && a->st.mapped_bytes + total > a->cap_bytes)
        ar_cache_evict_oldest(a);
    if (a->st.mapped_bytes + total > a->cap_bytes)
        return SP_ERR_CAP;
    return SP_OK;
}

/* Create a region holding data_size bytes and register it. */
static int ar_region_new(sp_arena *a, uint64_t data_size, int cls,
                         ar_region **out)
{
    uint64_t total;
    ar_region *reg;
    int rc;

    rc = sp_region_total_for(data_size, &total);
    if (rc != SP_OK)
        return rc;
    rc = ar_make_room(a, total);
    if (rc != SP_OK)
        return rc;
    if (ar_ptrvec_reserve(&a->regions, &a->regions_cap, a->nregions + 1) !=
        SP_OK)
        return SP_ERR_NOMEM;
    if (cls < 0 &&
        ar_ptrvec_reserve(&a->cache, &a->cache_cap, a->nlarge + 1) != SP_OK)
        return SP_ERR_NOMEM;
    reg = (ar_region *)calloc(1, sizeof *reg);
    if (reg == NULL)
        return SP_ERR_NOMEM;
    rc = sp_region_create(data_size, a->prefault ? SP_CREATE_PREFAULT : 0u,
                          a->shm_dir, &reg->r);
    if (rc != SP_OK) {
        free(reg);
        return rc;
    }
    reg->cls = cls;
    if (cls < 0) {
        reg->nslots = 1;
        sp_region_header *h = (sp_region_header *)(void *)reg->r.base;
        h->flags = SP_REGION_FLAG_DEDICATED;
    } else {
        reg->slot = SP_BLOCK_HEADER_SIZE + a->classes[cls].capacity;
        reg->nslots = (reg->r.size - SP_REGION_HEADER_SIZE) / reg->slot;
    }
    reg->state = (uint8_t *)calloc((size_t)reg->nslots, 1);
    if (reg->state == NULL) {
        sp_region_unlink(reg->r.name);
        sp_region_detach(&reg->r);
        free(reg);
        return SP_ERR_NOMEM;
    }
    {
        size_t i = ar_regions_lower(a, reg->r.base);
        memmove(&a->regions[i + 1], &a->regions[i],
                (a->nregions - i) * sizeof *a->regions);
        a->regions[i] = reg;
        a->nregions++;
    }
    if (cls < 0)
        a->nlarge++;
    a->st.regions++;
    a->st.mapped_bytes += reg->r.size;
    a->st.regions_created++;
    *out = reg;
    return SP_OK;
}

/* Hand out slot idx of reg for nbytes and fill *out. */
static void ar_slot_take(sp_arena *a, ar_region *reg, uint64_t idx,
                         uint64_t nbytes, sp_block *out)
{
    sp_block_header *b = ar_slot_header(reg, idx);
    uint64_t cap = ar_slot_capacity(a, reg);
    uint8_t *data = (uint8_t *)b + SP_BLOCK_HEADER_SIZE;

    b->capacity = cap;
    b->nbytes = nbytes;
    b->generation++;
    __atomic_store_n(&b->refcount, (int64_t)1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&b->magic, SP_BLOCK_MAGIC, __ATOMIC_RELEASE);
    reg->state[idx] = SLOT_LIVE;

    memcpy(out->region_name, reg->r.name, SP_NAME_MAX);
    out->data = data;
    out->data_offset = (uint64_t)(data - reg->r.base);
    out->nbytes = nbytes;
    out->capacity = cap;
    out->region_size = reg->r.size;

    a->st.live_blocks++;
    a->st.live_bytes += cap;
    a->st.allocations++;
}

static int ar_alloc_small(sp_arena *a, uint64_t nbytes, sp_block *out)
{
    int ci = ar_class_for(a, nbytes);
    ar_class *c = &a->classes[ci];
    ar_region *reg;
    int rc, fresh = 0;

    if (c->free.n == 0 && a->deferred.n > 0 &&
        (c->current == NULL || c->current->carved == c->current->nslots))
        ar_reclaim_locked(a);
    if (c->free.n > 0) {
        ar_slot s = c->free.v[--c->free.n];
        ar_slot_take(a, s.reg, s.idx, nbytes, out);
        a->st.reuses++;
        return SP_OK;
    }
    reg = c->current;
    if (reg == NULL || reg->carved == reg->nslots) {
        uint64_t per, nslots, data;
        per = SP_BLOCK_HEADER_SIZE + c->capacity;
        nslots = a->slab_bytes / per;
        if (nslots < 2)
            nslots = 2;
        for (;;) {
            if (sp_mul_overflow(nslots, per, &data))
                return SP_ERR_OVERFLOW;
            rc = ar_region_new(a, data, ci, &reg);
            /* Near the cap or with /dev/shm nearly full, a smaller slab,
             * down to one slot: the block itself may fit where a whole
             * slab does not. */
            if ((rc != SP_ERR_CAP && rc != SP_ERR_NOSPACE) || nslots == 1)
                break;
            nslots /= 2;
        }
        if (rc != SP_OK)
            return rc;
        c->current = reg;
        fresh = 1;
    }
    if (ar_slotvec_reserve(&c->free, (size_t)c->total_slots + 1) != SP_OK)
        return SP_ERR_NOMEM;
    c->total_slots++;
    ar_slot_take(a, reg, reg->carved++, nbytes, out);
    if (!fresh)
        a->st.reuses++; /* carved from an existing slab */
    return SP_OK;
}

static int ar_alloc_large(sp_arena *a, uint64_t nbytes, sp_block *out)
{
    uint64_t data_size, want, limit;
    ar_region *reg = NULL;
    size_t i, best;
    int rc, pass;

    if (sp_add_overflow(nbytes, SP_BLOCK_HEADER_SIZE, &data_size))
        return SP_ERR_OVERFLOW;
    rc = sp_region_total_for(data_size, &want);
    if (rc != SP_OK)
        return rc;
    if (sp_add_overflow(want, want / 4, &limit) ||
        sp_round_up(limit, sp_page_size(), &limit))
        limit = UINT64_MAX;

    for (pass = 0; pass < 2 && reg == NULL; pass++) {
        if (pass == 1) {
            if (a->deferred.n == 0)
                break;
            ar_reclaim_locked(a);
        }
        best = a->ncache;
        for (i = 0; i < a->ncache; i++) {
            uint64_t sz = a->cache[i]->r.size;
            if (sz >= want && sz <= limit &&
                (best == a->ncache || sz < a->cache[best]->r.size))
                best = i;
        }
        if (best < a->ncache) {
            reg = a->cache[best];
            ar_cache_remove_at(a, best);
        }
    }
    if (reg != NULL) {
        ar_slot_take(a, reg, 0, nbytes, out);
        a->st.reuses++;
        return SP_OK;
    }
    rc = ar_region_new(a, data_size, -1, &reg);
    if (rc != SP_OK)
        return rc;
    reg->carved = 1;
    ar_slot_take(a, reg, 0, nbytes, out);
    return SP_OK;
}

/* ---- public API ---- */

/* Bumped in every child of a fork: an arena made before the fork is the
 * parent's, whose blocks' references the child never took. Dropping one
 * there (an inherited array dying in the child) would change the parent's
 * counts in shared memory, and unlinking its regions would take them from
 * the parent: the child leaves them alone. */
static uint64_t ar_fork_generation;
static pthread_once_t ar_fork_once = PTHREAD_ONCE_INIT;

static void ar_after_fork_child(void)
{
    __atomic_add_fetch(&ar_fork_generation, 1, __ATOMIC_RELAXED);
}

static void ar_register_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, ar_after_fork_child);
}

static int ar_inherited(const sp_arena *a)
{
    return a->generation != __atomic_load_n(&ar_fork_generation, __ATOMIC_RELAXED);
}

SP_API int sp_arena_create(const sp_arena_config *config, sp_arena **out)
{
    sp_arena *a;
    if (out == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    pthread_once(&ar_fork_once, ar_register_atfork);
    *out = NULL;
    a = (sp_arena *)calloc(1, sizeof *a);
    if (a == NULL)
        return sp_fail(SP_ERR_NOMEM, ENOMEM);
    if (config != NULL) {
        a->cap_bytes = config->cap_bytes;
        a->slab_bytes = config->slab_bytes;
        a->cache_limit = config->cache_bytes;
        a->prefault = config->prefault != 0;
        if (config->shm_dir != NULL) {
            a->shm_dir = strdup(config->shm_dir);
            if (a->shm_dir == NULL) {
                free(a);
                return sp_fail(SP_ERR_NOMEM, ENOMEM);
            }
        }
    }
    a->generation = __atomic_load_n(&ar_fork_generation, __ATOMIC_RELAXED);
    if (a->slab_bytes == 0)
        a->slab_bytes = AR_DEFAULT_SLAB;
    if (a->cache_limit == 0)
        a->cache_limit = AR_DEFAULT_CACHE;
    if (pthread_mutex_init(&a->mu, NULL) != 0) {
        free(a->shm_dir);
        free(a);
        return sp_fail(SP_ERR_OS, EAGAIN);
    }
    ar_init_classes(a);
    *out = a;
    return SP_OK;
}

SP_API int sp_arena_alloc(sp_arena *arena, uint64_t nbytes, sp_block *out)
{
    int rc;
    if (arena == NULL || out == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    memset(out, 0, sizeof *out);
    /* More than the largest region holds: no free space would ever do. */
    if (nbytes > SP_MAX_REGION_SIZE - SP_REGION_HEADER_SIZE - SP_BLOCK_HEADER_SIZE)
        return sp_fail(SP_ERR_NOSPACE, ENOSPC);
    if (ar_inherited(arena))
        return sp_fail(SP_ERR_INVALID, EINVAL); /* the parent hands out these slots */
    pthread_mutex_lock(&arena->mu);
    if (arena->unlinked) {
        pthread_mutex_unlock(&arena->mu);
        return sp_fail(SP_ERR_INVALID, EINVAL);
    }
    /* Release may defer any live block: keep room for all of them. */
    rc = ar_slotvec_reserve(&arena->deferred,
                            (size_t)arena->st.live_blocks + 1);
    if (rc == SP_OK) {
        if (nbytes <= SP_ARENA_LARGE_THRESHOLD)
            rc = ar_alloc_small(arena, nbytes, out);
        else
            rc = ar_alloc_large(arena, nbytes, out);
    }
    pthread_mutex_unlock(&arena->mu);
    if (rc != SP_OK) {
        memset(out, 0, sizeof *out);
        if (rc == SP_ERR_NOSPACE || rc == SP_ERR_OS || rc == SP_ERR_PERM)
            return rc; /* errno already recorded by sp_region_create */
        return sp_fail(rc, rc == SP_ERR_NOMEM     ? ENOMEM
                           : rc == SP_ERR_OVERFLOW ? EOVERFLOW
                                                   : 0);
    }
    return SP_OK;
}

SP_API int sp_arena_release(sp_arena *arena, const uint8_t *data)
{
    ar_region *reg;
    uint64_t off, idx;
    sp_block_header *b;
    int64_t cur;
    int rc = SP_OK;

    if (arena == NULL || data == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (ar_inherited(arena))
        return SP_OK; /* the parent's reference, not ours */
    pthread_mutex_lock(&arena->mu);
    reg = ar_find_region(arena, data);
    if (reg == NULL) {
        rc = SP_ERR_INVALID;
        goto out;
    }
    off = (uint64_t)(data - reg->r.base);
    if (reg->cls < 0) {
        if (off != AR_DATA0) {
            rc = SP_ERR_INVALID;
            goto out;
        }
        idx = 0;
    } else {
        if (off < AR_DATA0 || (off - AR_DATA0) % reg->slot != 0) {
            rc = SP_ERR_INVALID;
            goto out;
        }
        idx = (off - AR_DATA0) / reg->slot;
        if (idx >= reg->carved) {
            rc = SP_ERR_INVALID;
            goto out;
        }
    }
    if (reg->state[idx] != SLOT_LIVE) {
        rc = SP_ERR_REFCOUNT; /* double release */
        goto out;
    }
    b = ar_slot_header(reg, idx);
    cur = __atomic_load_n(&b->refcount, __ATOMIC_SEQ_CST);
    for (;;) {
        if (cur <= 0) {
            rc = SP_ERR_REFCOUNT;
            goto out;
        }
        if (__atomic_compare_exchange_n(&b->refcount, &cur, cur - 1, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            break;
    }
    if (cur - 1 == 0) {
        ar_slot_free(arena, reg, idx);
    } else {
        reg->state[idx] = SLOT_DEFERRED;
        ar_slotvec_push(&arena->deferred, reg, idx);
        arena->st.deferred = arena->deferred.n;
    }
out:
    pthread_mutex_unlock(&arena->mu);
    return rc == SP_OK ? SP_OK : sp_fail(rc, EINVAL);
}

/* The slot of reg whose data span holds [p, p + len): its index, or -1. */
static int64_t ar_slot_holding(const sp_arena *a, const ar_region *reg,
                               const uint8_t *p, uint64_t len)
{
    uint64_t off = (uint64_t)(p - reg->r.base), idx, start, end;
    if (off < AR_DATA0)
        return -1;
    if (reg->cls < 0) {
        idx = 0;
    } else {
        idx = (off - AR_DATA0) / reg->slot;
        if (idx >= reg->carved)
            return -1;
    }
    start = reg->cls < 0 ? AR_DATA0 : AR_DATA0 + idx * reg->slot;
    end = start + ar_slot_capacity(a, reg);
    if (end > reg->r.size || off > end || len > end - off)
        return -1;
    return (int64_t)idx;
}

SP_API int sp_arena_adopt(sp_arena *arena, const void *p, uint64_t len, sp_block *out)
{
    const uint8_t *at = (const uint8_t *)p;
    ar_region *reg;
    sp_block_header *b;
    uint8_t *data;
    int64_t idx, cur;
    int rc = SP_ERR_NOTFOUND;

    if (arena == NULL || p == NULL || out == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    memset(out, 0, sizeof *out);
    if (ar_inherited(arena))
        return sp_fail(SP_ERR_INVALID, EINVAL); /* nothing to unref it with here */
    pthread_mutex_lock(&arena->mu);
    if (arena->unlinked) {
        rc = SP_ERR_INVALID;
        goto out;
    }
    reg = ar_find_region(arena, at);
    if (reg == NULL)
        goto out;
    idx = ar_slot_holding(arena, reg, at, len);
    if (idx < 0 || reg->state[idx] != SLOT_LIVE)
        goto out;
    b = ar_slot_header(reg, (uint64_t)idx);
    data = (uint8_t *)b + SP_BLOCK_HEADER_SIZE;
    /* Inside what was asked for, not only inside the capacity. */
    if ((uint64_t)(at - data) > b->nbytes || len > b->nbytes - (uint64_t)(at - data))
        goto out;
    cur = __atomic_fetch_add(&b->refcount, 1, __ATOMIC_SEQ_CST);
    if (cur <= 0) { /* a live block always holds its owner's reference */
        __atomic_fetch_sub(&b->refcount, 1, __ATOMIC_SEQ_CST);
        rc = SP_ERR_REFCOUNT;
        goto out;
    }
    memcpy(out->region_name, reg->r.name, SP_NAME_MAX);
    out->data = data;
    out->data_offset = (uint64_t)(data - reg->r.base);
    out->nbytes = b->nbytes;
    out->capacity = b->capacity;
    out->region_size = reg->r.size;
    rc = SP_OK;
out:
    pthread_mutex_unlock(&arena->mu);
    if (rc == SP_OK)
        return SP_OK;
    return sp_fail(rc, rc == SP_ERR_NOTFOUND ? ENOENT : EINVAL);
}

SP_API int sp_arena_unref(sp_arena *arena, const uint8_t *data)
{
    ar_region *reg;
    sp_block_header *b;
    int64_t idx, cur, floor;
    int rc = SP_OK;

    if (arena == NULL || data == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (ar_inherited(arena))
        return SP_OK; /* the parent's reference, not ours */
    pthread_mutex_lock(&arena->mu);
    reg = ar_find_region(arena, data);
    idx = reg == NULL ? -1 : ar_slot_holding(arena, reg, data, 0);
    if (idx < 0 || data != (const uint8_t *)ar_slot_header(reg, (uint64_t)idx) +
                               SP_BLOCK_HEADER_SIZE ||
        reg->state[idx] == SLOT_FREE) {
        rc = SP_ERR_INVALID;
        goto out;
    }
    b = ar_slot_header(reg, (uint64_t)idx);
    /* A live block keeps its owner's reference: never drop below it. */
    floor = reg->state[idx] == SLOT_LIVE ? 1 : 0;
    cur = __atomic_load_n(&b->refcount, __ATOMIC_SEQ_CST);
    for (;;) {
        if (cur <= floor) {
            rc = SP_ERR_REFCOUNT;
            goto out;
        }
        if (__atomic_compare_exchange_n(&b->refcount, &cur, cur - 1, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            break;
    }
    if (cur - 1 == 0)
        ar_reclaim_locked(arena); /* deferred, and now unreferenced */
out:
    pthread_mutex_unlock(&arena->mu);
    return rc == SP_OK ? SP_OK : sp_fail(rc, EINVAL);
}

SP_API int sp_arena_reclaim(sp_arena *arena, uint64_t *reclaimed)
{
    uint64_t n;
    if (arena == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    pthread_mutex_lock(&arena->mu);
    n = ar_reclaim_locked(arena);
    pthread_mutex_unlock(&arena->mu);
    if (reclaimed)
        *reclaimed = n;
    return SP_OK;
}

SP_API int sp_arena_trim(sp_arena *arena)
{
    if (arena == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    pthread_mutex_lock(&arena->mu);
    ar_cache_trim_all(arena);
    pthread_mutex_unlock(&arena->mu);
    return SP_OK;
}

SP_API int sp_arena_stats_get(sp_arena *arena, sp_arena_stats *out)
{
    if (arena == NULL || out == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    pthread_mutex_lock(&arena->mu);
    *out = arena->st;
    pthread_mutex_unlock(&arena->mu);
    return SP_OK;
}

SP_API int sp_arena_set_cap(sp_arena *arena, uint64_t cap_bytes)
{
    if (arena == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    pthread_mutex_lock(&arena->mu);
    arena->cap_bytes = cap_bytes;
    pthread_mutex_unlock(&arena->mu);
    return SP_OK;
}

SP_API int sp_arena_unlink_all(sp_arena *arena)
{
    size_t i;
    if (arena == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (ar_inherited(arena))
        return SP_OK; /* the parent's names */
    pthread_mutex_lock(&arena->mu);
    if (!arena->unlinked) {
        for (i = 0; i < arena->nregions; i++)
            sp_region_unlink(arena->regions[i]->r.name);
        arena->unlinked = 1;
    }
    pthread_mutex_unlock(&arena->mu);
    return SP_OK;
}

SP_API void sp_arena_destroy(sp_arena *arena)
{
    size_t i;
    int c;
    int inherited;
    if (arena == NULL)
        return;
    inherited = ar_inherited(arena);
    if (!inherited)
        pthread_mutex_lock(&arena->mu); /* a copy's lock may be held for good */
    for (i = 0; i < arena->nregions; i++) {
        ar_region *reg = arena->regions[i];
        if (!arena->unlinked && !inherited)
            sp_region_unlink(reg->r.name);
        sp_region_detach(&reg->r);
        ar_region_free_mem(reg);
    }
    free(arena->regions);
    free(arena->cache);
    free(arena->deferred.v);
    for (c = 0; c < arena->nclasses; c++)
        free(arena->classes[c].free.v);
    if (!inherited) {
        pthread_mutex_unlock(&arena->mu);
        pthread_mutex_destroy(&arena->mu);
    }
    free(arena->shm_dir);
    free(arena);
}
