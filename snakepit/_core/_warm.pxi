# numpy's data allocator for worker processes: large buffers from the C
# core's warm cache (csrc/sp_warm.c), everything else from malloc.
# Included by _core.pyx (one extension module): names are shared with it.

cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    /* numpy/arrayobject.h: included by _core.pyx, which loads its C API. */

    /* One cache per process, made once and never destroyed: arrays that
       hold its buffers may outlive any Python object. */
    static sp_warm *sp_np_warm = NULL;

    static void *sp_np_malloc(void *ctx, size_t n) {
        void *p = sp_warm_alloc(sp_np_warm, (uint64_t)n);
        (void)ctx;
        return p != NULL ? p : malloc(n);
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
        (void)n;
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
    """
    int sp_np_warm_init(uint64_t min_bytes, uint64_t cache_bytes)
    object sp_np_handler_capsule()
    object sp_np_set_handler(object capsule)
    object sp_np_get_handler()
    sp_warm *sp_np_warm_cache()

cdef object _warm_capsule = None


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
