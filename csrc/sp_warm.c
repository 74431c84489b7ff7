/*
 * sp_warm.c -- a cache of warm anonymous buffers for large allocations.
 *
 * A large malloc is a fresh mmap: every page of it faults on first touch,
 * which on a VM costs more than copying the data (about 0.5 ms per MiB).
 * A worker that computes a large result per call (`arr * 1`) pays that on
 * every call. Buffers handed out here are kept mapped after they are freed
 * (up to a byte budget, oldest evicted first) and reused for later requests
 * of a similar size, so their pages are already present.
 *
 * One mutex guards the tables; they are small (live buffers and at most
 * SP_WARM_MAX_CACHED cached ones), so lookups are linear. After fork the
 * child reinitialises the mutex of every cache (a thread of the parent may
 * have held it); its buffers are its own copies.
 */
#include "sp_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SP_WARM_MAX_CACHED 64

typedef struct sp_warm_buf {
    uint8_t *p;
    uint64_t size; /* mapped bytes (page multiple) */
} sp_warm_buf;

struct sp_warm {
    pthread_mutex_t mu;
    uint64_t min_bytes, cache_bytes;
    sp_warm_buf *live; /* handed out */
    size_t nlive, live_cap;
    sp_warm_buf cached[SP_WARM_MAX_CACHED]; /* oldest first */
    size_t ncached;
    uint64_t cached_bytes;
    sp_warm_stats st;
    struct sp_warm *next_instance;
};

static pthread_mutex_t sp_warm_all_mu = PTHREAD_MUTEX_INITIALIZER;
static sp_warm *sp_warm_all;
static pthread_once_t sp_warm_once = PTHREAD_ONCE_INIT;

static void sp_warm_after_fork_child(void)
{
    sp_warm *w;
    pthread_mutex_init(&sp_warm_all_mu, NULL);
    for (w = sp_warm_all; w != NULL; w = w->next_instance)
        pthread_mutex_init(&w->mu, NULL);
}

static void sp_warm_register_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, sp_warm_after_fork_child);
}

SP_API int sp_warm_create(uint64_t min_bytes, uint64_t cache_bytes,
                          sp_warm **out)
{
    sp_warm *w;
    if (out == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    *out = NULL;
    if (min_bytes == 0)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    w = (sp_warm *)calloc(1, sizeof *w);
    if (w == NULL)
        return sp_fail(SP_ERR_NOMEM, ENOMEM);
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        free(w);
        return sp_fail(SP_ERR_OS, EAGAIN);
    }
    w->min_bytes = min_bytes;
    w->cache_bytes = cache_bytes;
    pthread_once(&sp_warm_once, sp_warm_register_atfork);
    pthread_mutex_lock(&sp_warm_all_mu);
    w->next_instance = sp_warm_all;
    sp_warm_all = w;
    pthread_mutex_unlock(&sp_warm_all_mu);
    *out = w;
    return SP_OK;
}

/* Room for one more live buffer. */
static int sp_warm_grow_live(sp_warm *w)
{
    size_t ncap;
    sp_warm_buf *nv;
    if (w->nlive < w->live_cap)
        return SP_OK;
    ncap = w->live_cap ? w->live_cap * 2 : 16;
    if (ncap > SIZE_MAX / sizeof *nv)
        return SP_ERR_NOMEM;
    nv = (sp_warm_buf *)realloc(w->live, ncap * sizeof *nv);
    if (nv == NULL)
        return SP_ERR_NOMEM;
    w->live = nv;
    w->live_cap = ncap;
    return SP_OK;
}

static void sp_warm_cached_remove_at(sp_warm *w, size_t i)
{
    w->cached_bytes -= w->cached[i].size;
    memmove(&w->cached[i], &w->cached[i + 1],
            (w->ncached - i - 1) * sizeof w->cached[0]);
    w->ncached--;
}

/* Unmap every cached buffer (lock held). */
static void sp_warm_drop_cached(sp_warm *w)
{
    while (w->ncached > 0) {
        munmap(w->cached[0].p, (size_t)w->cached[0].size);
        w->st.unmaps++;
        sp_warm_cached_remove_at(w, 0);
    }
}

SP_API void *sp_warm_alloc(sp_warm *w, uint64_t nbytes)
{
    uint64_t size, limit;
    size_t i, best;
    uint8_t *p = NULL;
    void *m;

    if (w == NULL || nbytes < w->min_bytes ||
        sp_round_up(nbytes, sp_page_size(), &size) ||
        (uint64_t)(size_t)size != size)
        return NULL;
    if (sp_add_overflow(size, size / 4, &limit))
        limit = UINT64_MAX;
    pthread_mutex_lock(&w->mu);
    if (sp_warm_grow_live(w) != SP_OK) {
        pthread_mutex_unlock(&w->mu);
        return NULL;
    }
    /* The smallest cached buffer that fits without wasting over a quarter;
     * of equal ones the last freed (its pages the likeliest in cache). */
    best = w->ncached;
    for (i = 0; i < w->ncached; i++) {
        uint64_t s = w->cached[i].size;
        if (s >= size && s <= limit &&
            (best == w->ncached || s <= w->cached[best].size))
            best = i;
    }
    if (best < w->ncached) {
        p = w->cached[best].p;
        size = w->cached[best].size;
        sp_warm_cached_remove_at(w, best);
        w->st.reuses++;
    } else {
        m = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED && w->ncached > 0) {
            /* Out of address space or memory (RLIMIT_AS, overcommit): what
             * the cache keeps must not be what makes the request fail. */
            sp_warm_drop_cached(w);
            m = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        }
        if (m == MAP_FAILED) {
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
#ifdef MADV_HUGEPAGE
        (void)madvise(m, (size_t)size, MADV_HUGEPAGE); /* advice only */
#endif
        p = (uint8_t *)m;
        w->st.maps++;
    }
    w->live[w->nlive].p = p;
    w->live[w->nlive].size = size;
    w->nlive++;
    w->st.live_bytes += size;
    pthread_mutex_unlock(&w->mu);
    return p;
}

/* Index of live buffer p, or nlive. */
static size_t sp_warm_live_find(const sp_warm *w, const void *p)
{
    size_t i;
    for (i = 0; i < w->nlive; i++)
        if (w->live[i].p == (const uint8_t *)p)
            return i;
    return w->nlive;
}

/* Take live buffer i out of the live table: cache it or unmap it. */
static void sp_warm_retire(sp_warm *w, size_t i)
{
    sp_warm_buf b = w->live[i];
    w->live[i] = w->live[w->nlive - 1];
    w->nlive--;
    w->st.live_bytes -= b.size;
    if (b.size > w->cache_bytes) {
        munmap(b.p, (size_t)b.size);
        w->st.unmaps++;
        return;
    }
    while (w->ncached > 0 &&
           (w->ncached == SP_WARM_MAX_CACHED ||
            w->cached_bytes + b.size > w->cache_bytes)) {
        munmap(w->cached[0].p, (size_t)w->cached[0].size);
        w->st.unmaps++;
        sp_warm_cached_remove_at(w, 0);
    }
    w->cached[w->ncached++] = b;
    w->cached_bytes += b.size;
}

SP_API int sp_warm_free(sp_warm *w, void *p)
{
    size_t i;
    if (w == NULL || p == NULL)
        return 0;
    pthread_mutex_lock(&w->mu);
    i = sp_warm_live_find(w, p);
    if (i == w->nlive) {
        pthread_mutex_unlock(&w->mu);
        return 0;
    }
    sp_warm_retire(w, i);
    pthread_mutex_unlock(&w->mu);
    return 1;
}

SP_API int sp_warm_owns(sp_warm *w, const void *p, uint64_t *size)
{
    size_t i;
    int found;
    if (w == NULL || p == NULL)
        return 0;
    pthread_mutex_lock(&w->mu);
    i = sp_warm_live_find(w, p);
    found = i < w->nlive;
    if (found && size != NULL)
        *size = w->live[i].size;
    pthread_mutex_unlock(&w->mu);
    return found;
}

SP_API int sp_warm_trim(sp_warm *w)
{
    if (w == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    pthread_mutex_lock(&w->mu);
    sp_warm_drop_cached(w);
    pthread_mutex_unlock(&w->mu);
    return SP_OK;
}

SP_API int sp_warm_stats_get(sp_warm *w, sp_warm_stats *out)
{
    if (w == NULL || out == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    pthread_mutex_lock(&w->mu);
    *out = w->st;
    out->cached_bytes = w->cached_bytes;
    out->live_buffers = w->nlive;
    out->cached_buffers = w->ncached;
    pthread_mutex_unlock(&w->mu);
    return SP_OK;
}

SP_API void sp_warm_destroy(sp_warm *w)
{
    sp_warm **link;
    size_t i;
    if (w == NULL)
        return;
    pthread_mutex_lock(&sp_warm_all_mu);
    for (link = &sp_warm_all; *link != NULL; link = &(*link)->next_instance)
        if (*link == w) {
            *link = w->next_instance;
            break;
        }
    pthread_mutex_unlock(&sp_warm_all_mu);
    for (i = 0; i < w->nlive; i++)
        munmap(w->live[i].p, (size_t)w->live[i].size);
    for (i = 0; i < w->ncached; i++)
        munmap(w->cached[i].p, (size_t)w->cached[i].size);
    free(w->live);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
