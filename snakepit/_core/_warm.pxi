# numpy's data allocator for worker processes: large buffers from the
# process's arena once one is lent (a result then travels without a copy:
# Arena.adopt_array), else from the C core's warm cache (csrc/sp_warm.c);
# everything else from malloc.
# Included by _core.pyx (one extension module): names are shared with it.

cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    /* numpy/arrayobject.h: included by _core.pyx, which loads its C API. */

    /* One cache per process, made once and never destroyed: arrays that
       hold its buffers may outlive any Python object. */
    static sp_warm *sp_np_warm = NULL;

    /* The lent arena: buffers from lend_min bytes up come from it while this
       is the process that lent it (a forked child allocates its own way). */
    static sp_arena *sp_np_arena = NULL;
    static uint64_t sp_np_lend_min = UINT64_MAX;
    /* The smallest lend_min ever set: buffers lent under an earlier, lower
       one are still freed as lent after a later lend_arena raised it. */
    static uint64_t sp_np_lend_floor = UINT64_MAX;
    static pid_t sp_np_lend_pid = 0;

    /* Buffers handed out from the arena, with their sizes: a table of its
       own, read without the arena's lock, so that a forked child (whose
       copy of the arena may hold a lock forever) still knows which pointers
       are not malloc's. Full: the next buffers come from the warm cache. */
    #define SP_NP_LENT_SLOTS 1024
    static struct { void *ptr; uint64_t size; sp_arena *arena; } sp_np_lent[SP_NP_LENT_SLOTS];

    static int sp_np_lent_put(void *p, uint64_t size, sp_arena *arena) {
        int i;
        for (i = 0; i < SP_NP_LENT_SLOTS; i++) {
            void *empty = NULL;
            if (__atomic_load_n(&sp_np_lent[i].ptr, __ATOMIC_RELAXED) == NULL &&
                __atomic_compare_exchange_n(&sp_np_lent[i].ptr, &empty, p, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
                __atomic_store_n(&sp_np_lent[i].size, size, __ATOMIC_RELEASE);
                __atomic_store_n(&sp_np_lent[i].arena, arena, __ATOMIC_RELEASE);
                return 1;
            }
        }
        return 0;
    }
    /* Take p out of the table: its size (and *arena, its arena), or 0 when
       p is not lent. */
    static uint64_t sp_np_lent_take(void *p, sp_arena **arena) {
        int i;
        for (i = 0; i < SP_NP_LENT_SLOTS; i++) {
            if (__atomic_load_n(&sp_np_lent[i].ptr, __ATOMIC_ACQUIRE) == p) {
                uint64_t size = __atomic_load_n(&sp_np_lent[i].size, __ATOMIC_ACQUIRE);
                *arena = __atomic_load_n(&sp_np_lent[i].arena, __ATOMIC_ACQUIRE);
                __atomic_store_n(&sp_np_lent[i].ptr, NULL, __ATOMIC_RELEASE);
                return size;
            }
        }
        return 0;
    }
    static int sp_np_lending(void) {
        return sp_np_arena != NULL && getpid() == sp_np_lend_pid;
    }

    static void *sp_np_malloc(void *ctx, size_t n) {
        void *p;
        (void)ctx;
        if ((uint64_t)n >= sp_np_lend_min && sp_np_lending()) {
            sp_block block;
            if (sp_arena_alloc(sp_np_arena, (uint64_t)n, &block) == SP_OK) {
                if (sp_np_lent_put(block.data, (uint64_t)n, sp_np_arena))
                    return block.data;
                sp_arena_release(sp_np_arena, block.data);
            }
        }
        p = sp_warm_alloc(sp_np_warm, (uint64_t)n);
        return p != NULL ? p : malloc(n);
    }
    /* A lent buffer goes back to the arena; in a forked child it is left
       alone (the parent's block, mapped here too). */
    static int sp_np_lent_free(void *p, size_t n) {
        sp_arena *arena = NULL;
        if (sp_np_arena == NULL || (uint64_t)n < sp_np_lend_floor ||
            sp_np_lent_take(p, &arena) == 0)
            return 0;
        if (getpid() == sp_np_lend_pid)
            sp_arena_release(arena, (const uint8_t *)p);
        return 1;
    }
    /* Fresh zeroed pages are what calloc is for (np.zeros of a huge array
       that is touched sparsely): never from the cache. */
    static void *sp_np_calloc(void *ctx, size_t nelem, size_t elsize) {
        (void)ctx;
        return calloc(nelem, elsize);
    }
    static void *sp_np_realloc(void *ctx, void *p, size_t n) {
        uint64_t old = 0;
        void *q;
        sp_arena *from = NULL;
        if (p != NULL && sp_np_arena != NULL && (old = sp_np_lent_take(p, &from)) != 0) {
            q = sp_np_malloc(ctx, n);
            if (q == NULL) {
                (void)sp_np_lent_put(p, old, from); /* p stays valid, as with realloc */
                return NULL;
            }
            memcpy(q, p, old < n ? (size_t)old : n);
            if (getpid() == sp_np_lend_pid)
                sp_arena_release(from, (const uint8_t *)p);
            return q;
        }
        if (p == NULL || !sp_warm_owns(sp_np_warm, p, &old))
            return realloc(p, n);
        q = sp_np_malloc(ctx, n);
        if (q == NULL)
            return NULL;
        memcpy(q, p, old < n ? (size_t)old : n);
        (void)sp_warm_free(sp_np_warm, p);
        return q;
    }
    static void sp_np_free(void *ctx, void *p, size_t n) {
        (void)ctx;
        if (p == NULL || sp_np_lent_free(p, n))
            return;
        if (!sp_warm_free(sp_np_warm, p))
            free(p);
    }

    static PyDataMem_Handler sp_np_handler = {
        "snakepit_warm",
        1,
        {NULL, sp_np_malloc, sp_np_calloc, sp_np_realloc, sp_np_free},
    };

    static int sp_np_warm_init(uint64_t min_bytes, uint64_t cache_bytes) {
        if (sp_np_warm != NULL)
            return SP_OK;
        return sp_warm_create(min_bytes, cache_bytes, &sp_np_warm);
    }
    static PyObject *sp_np_handler_capsule(void) {
        return PyCapsule_New(&sp_np_handler, "mem_handler", NULL);
    }
    static PyObject *sp_np_set_handler(PyObject *capsule) {
        return PyDataMem_SetHandler(capsule);
    }
    static PyObject *sp_np_get_handler(void) {
        return PyDataMem_GetHandler();
    }
    static sp_warm *sp_np_warm_cache(void) { return sp_np_warm; }
    static void sp_np_lend(sp_arena *arena, uint64_t min_bytes) {
        sp_np_arena = arena;
        sp_np_lend_pid = getpid();
        sp_np_lend_min = min_bytes;
        if (min_bytes < sp_np_lend_floor)
            sp_np_lend_floor = min_bytes;
    }
    static int sp_np_lent_count(void) {
        int i, n = 0;
        for (i = 0; i < SP_NP_LENT_SLOTS; i++)
            n += __atomic_load_n(&sp_np_lent[i].ptr, __ATOMIC_ACQUIRE) != NULL;
        return n;
    }
    """
    int sp_np_warm_init(uint64_t min_bytes, uint64_t cache_bytes)
    object sp_np_handler_capsule()
    object sp_np_set_handler(object capsule)
    object sp_np_get_handler()
    sp_warm *sp_np_warm_cache()
    void sp_np_lend(sp_arena *arena, uint64_t min_bytes)
    int sp_np_lent_count()

cdef object _warm_capsule = None
# Arenas lent before the current one: their buffers may still be alive.
cdef list _retired_arenas = []


def install_warm_allocator(uint64_t min_bytes, uint64_t cache_bytes):
    """Make numpy allocate arrays of ``min_bytes`` or more from a cache of warm
    buffers, keeping up to ``cache_bytes`` of freed ones mapped for reuse.

    numpy keeps its allocator per thread (a context variable): this sets it
    for the calling thread's context. The first call fixes both sizes for the
    process. Returns whether the allocator was newly set here.
    """
    global _warm_capsule
    if min_bytes == 0:
        raise ValueError("min_bytes must be > 0")
    sp_np_ready()
    _check(sp_np_warm_init(min_bytes, cache_bytes), "create warm cache")
    if _warm_capsule is None:
        _warm_capsule = sp_np_handler_capsule()
    if sp_np_get_handler() is _warm_capsule:
        return False
    sp_np_set_handler(_warm_capsule)
    return True


def warm_allocator_active():
    """Whether numpy allocates from the warm cache in this thread's context."""
    # Set only after numpy's C API was loaded (install_warm_allocator).
    return _warm_capsule is not None and sp_np_get_handler() is _warm_capsule


def warm_stats():
    """Counters of the warm cache (zeros before it exists)."""
    cdef sp_warm_stats s
    memset(&s, 0, sizeof(s))
    if sp_np_warm_cache() != NULL:
        _check(sp_warm_stats_get(sp_np_warm_cache(), &s), "warm stats")
    return {
        "maps": s.maps,
        "reuses": s.reuses,
        "unmaps": s.unmaps,
        "live_bytes": s.live_bytes,
        "cached_bytes": s.cached_bytes,
        "live_buffers": s.live_buffers,
        "cached_buffers": s.cached_buffers,
    }


def warm_trim():
    """Unmap the warm cache's freed buffers (live arrays keep theirs)."""
    if sp_np_warm_cache() != NULL:
        _check(sp_warm_trim(sp_np_warm_cache()), "warm trim")


def lend_arena(Arena arena, uint64_t min_bytes):
    """Make numpy's allocator (``install_warm_allocator``) take buffers of
    ``min_bytes`` or more from ``arena``, in this process (a forked child
    allocates its own way), so that ``arena.adopt_array`` can send a result
    without copying it. Once lent, ``arena`` is never destroyed (``close``
    only unlinks its names): arrays may outlive every Python reference to it.
    A later call lends another arena; buffers from the first go back to it.
    """
    global _lent_arena
    if min_bytes == 0:
        raise ValueError("min_bytes must be > 0")
    arena._require_open()
    if _lent_arena is not None and _lent_arena is not arena:
        _retired_arenas.append(_lent_arena)
    _lent_arena = arena
    sp_np_lend(arena.arena, min_bytes)


def lent_buffers():
    """How many numpy buffers of this process live in the lent arena."""
    return sp_np_lent_count()
