/*
 * test_copy.c -- unit tests of sp_copy (csrc/sp_copy.c): every relative
 * alignment and tail length of the streaming path, guard bytes around the
 * destination, the size switch, and refusal of bad input; and of the warm
 * buffer cache (csrc/sp_warm.c): reuse, bounds, threads, fork.
 */
#include "snakepit_core.h"
#include "sp_internal.h"
#include "tests/sp_test.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define GUARD 64
#define SPAN 1024
#define PIECE_PAGE UINT64_C(4096)

static uint8_t pattern(size_t i) { return (uint8_t)(i * 131u + 7u); }

typedef void (*stream_fn)(void *, const void *, uint64_t);

static void stream_avx2_or_fail(void *dst, const void *src, uint64_t n)
{
    REQUIRE(sp_copy_stream_avx2(dst, src, n) == 1);
}

/* Every source and destination offset within a cache line, every length up
 * to a few lines: exactly n bytes land, nothing around them is touched. */
static void check_stream_all_alignments(stream_fn stream)
{
    static uint8_t src[SPAN + 2 * GUARD], dst[SPAN + 2 * GUARD];
    size_t so, dof, n, i;
    for (i = 0; i < sizeof src; i++)
        src[i] = pattern(i);
    for (so = 0; so < 64; so++) {
        for (dof = 0; dof < 64; dof++) {
            for (n = 0; n <= 300; n += (n < 140 ? 1 : 37)) {
                memset(dst, 0xA5, sizeof dst);
                stream(dst + GUARD + dof, src + GUARD + so, n);
                REQUIRE(memcmp(dst + GUARD + dof, src + GUARD + so, n) == 0);
                for (i = 0; i < GUARD + dof; i++)
                    REQUIRE(dst[i] == 0xA5);
                for (i = GUARD + dof + n; i < sizeof dst; i++)
                    REQUIRE(dst[i] == 0xA5);
            }
        }
    }
}

static void test_stream_all_alignments(void)
{
    check_stream_all_alignments(sp_copy_stream);
    check_stream_all_alignments(sp_copy_stream_sse2);
    if (sp_copy_has_avx2())
        check_stream_all_alignments(stream_avx2_or_fail);
    else
        CHECK_EQ(sp_copy_stream_avx2(NULL, NULL, 1), 0); /* declines, touches nothing */
}

/* sp_copy of n bytes into dst + doff from src + soff: exactly n land. */
static void check_public_copy(uint64_t n, size_t doff, size_t soff)
{
    uint64_t i;
    uint8_t *src = (uint8_t *)malloc((size_t)n + 64);
    uint8_t *dst = (uint8_t *)malloc((size_t)n + 64);
    REQUIRE(src != NULL && dst != NULL);
    for (i = 0; i < n + 64; i++)
        src[i] = pattern((size_t)i);
    memset(dst, 0, (size_t)n + 64);
    CHECK_EQ(sp_copy(dst + doff, src + soff, n), SP_OK);
    CHECK(memcmp(dst + doff, src + soff, (size_t)n) == 0);
    CHECK_EQ(dst[doff - 1], 0);
    CHECK_EQ(dst[doff + n], 0);
    free(src);
    free(dst);
}

/* Above the switch: the public entry point streams; below it, memcpy. */
static void test_copy_large_and_small(void)
{
    check_public_copy(SP_COPY_STREAM_BYTES + 4096 + 17, 48, 16);
    check_public_copy(1000, 3, 5);
}

/* The split copy: every thread count, destination offsets around a page
 * boundary and lengths that leave ragged pieces; exactly n bytes land. */
static void test_copy_split_pieces(void)
{
    const uint64_t span = 5 * PIECE_PAGE + 999;
    uint8_t *src = (uint8_t *)malloc((size_t)span + 2 * GUARD);
    uint8_t *dst = (uint8_t *)malloc((size_t)span + 2 * GUARD + PIECE_PAGE);
    static const uint64_t lengths[] = {0, 1, 4095, 4096, 8191, 2 * PIECE_PAGE + 1,
                                       4 * PIECE_PAGE, 5 * PIECE_PAGE + 999};
    static const size_t offsets[] = {0, 1, 16, 64, 4000};
    unsigned threads;
    size_t li, oi, i;
    REQUIRE(src != NULL && dst != NULL);
    for (i = 0; i < span + 2 * GUARD; i++)
        src[i] = pattern(i);
    for (threads = 0; threads <= SP_COPY_MAX_THREADS + 1; threads++) {
        for (li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            for (oi = 0; oi < sizeof offsets / sizeof offsets[0]; oi++) {
                uint64_t n = lengths[li];
                size_t off = GUARD + offsets[oi];
                memset(dst, 0xA5, (size_t)span + 2 * GUARD + PIECE_PAGE);
                sp_copy_split(dst + off, src + GUARD + 16, n, threads);
                REQUIRE(memcmp(dst + off, src + GUARD + 16, (size_t)n) == 0);
                for (i = 0; i < off; i++)
                    REQUIRE(dst[i] == 0xA5);
                for (i = off + (size_t)n; i < span + 2 * GUARD + PIECE_PAGE; i++)
                    REQUIRE(dst[i] == 0xA5);
            }
        }
    }
    free(src);
    free(dst);
}

/* Small copies stay on the caller's thread; large ones use a thread per
 * piece, within the limit. */
static void test_copy_thread_count(void)
{
    CHECK_EQ(sp_copy_threads_for(0), 1u);
    CHECK_EQ(sp_copy_threads_for(SP_COPY_PARALLEL_BYTES - 1), 1u);
    CHECK(sp_copy_threads_for(SP_COPY_PARALLEL_BYTES) >= 1u);
    CHECK(sp_copy_threads_for(SP_COPY_PARALLEL_BYTES) <=
          (unsigned)(SP_COPY_PARALLEL_BYTES / SP_COPY_PIECE_BYTES));
    CHECK(sp_copy_threads_for(UINT64_C(1) << 40) <= SP_COPY_MAX_THREADS);
}

/* The public entry point above the split size. */
static void test_copy_parallel(void)
{
    check_public_copy(SP_COPY_PARALLEL_BYTES + 4096 * 3 + 5, 16, 48);
}

static void test_copy_rejects_bad_input(void)
{
    uint8_t buf[256];
    memset(buf, 1, sizeof buf);
    CHECK_EQ(sp_copy(NULL, NULL, 0), SP_OK); /* nothing to do */
    CHECK_EQ(sp_copy(NULL, buf, 1), SP_ERR_INVALID);
    CHECK_EQ(sp_last_errno(), EINVAL);
    CHECK_EQ(sp_copy(buf, NULL, 1), SP_ERR_INVALID);
    /* Overlap either way, and the same range. */
    CHECK_EQ(sp_copy(buf, buf + 10, 20), SP_ERR_INVALID);
    CHECK_EQ(sp_copy(buf + 10, buf, 20), SP_ERR_INVALID);
    CHECK_EQ(sp_copy(buf, buf, 1), SP_ERR_INVALID);
    /* Adjacent is fine. */
    CHECK_EQ(sp_copy(buf, buf + 20, 20), SP_OK);
    /* A length that wraps the address space is refused before any access. */
    CHECK_EQ(sp_copy(buf, buf + 128, UINT64_MAX), SP_ERR_INVALID);
    CHECK_EQ(sp_copy((void *)(UINTPTR_MAX - 8), buf, 16), SP_ERR_INVALID);
    CHECK_EQ(buf[0], 1);
}

#define PG 4096u

static void test_warm_invalid(void)
{
    sp_warm *w = (sp_warm *)(void *)1;
    sp_warm_stats st;
    CHECK_EQ(sp_warm_create(PG, 0, NULL), SP_ERR_INVALID);
    CHECK_EQ(sp_warm_create(0, 0, &w), SP_ERR_INVALID);
    CHECK(w == NULL);
    CHECK(sp_warm_alloc(NULL, PG) == NULL);
    CHECK_EQ(sp_warm_free(NULL, &st), 0);
    CHECK_EQ(sp_warm_owns(NULL, &st, NULL), 0);
    CHECK_EQ(sp_warm_trim(NULL), SP_ERR_INVALID);
    CHECK_EQ(sp_warm_stats_get(NULL, &st), SP_ERR_INVALID);
    sp_warm_destroy(NULL);
}

static void test_warm_reuse(void)
{
    sp_warm *w = NULL;
    sp_warm_stats st;
    uint8_t *a, *b, *c;
    uint64_t size = 0;
    int local;
    REQUIRE(sp_warm_create(4 * PG, 64 * PG, &w) == SP_OK);
    CHECK(sp_warm_alloc(w, 4 * PG - 1) == NULL); /* below the minimum */
    a = (uint8_t *)sp_warm_alloc(w, 8 * PG - 100);
    REQUIRE(a != NULL);
    CHECK_EQ((uintptr_t)a % PG, 0);
    memset(a, 7, 8 * PG - 100);
    CHECK(sp_warm_owns(w, a, &size));
    CHECK_EQ(size, 8 * PG);
    CHECK(!sp_warm_owns(w, a + 1, NULL));
    CHECK_EQ(sp_warm_free(w, &local), 0); /* not ours */
    CHECK_EQ(sp_warm_free(w, a), 1);
    CHECK(!sp_warm_owns(w, a, NULL));
    CHECK_EQ(sp_warm_free(w, a), 0); /* double free: not ours any more */
    /* Same size class: the same (warm) buffer comes back. */
    b = (uint8_t *)sp_warm_alloc(w, 7 * PG);
    CHECK(b == a);
    CHECK_EQ(b[0], 7);
    /* Over a quarter larger than any cached buffer: a fresh mapping. */
    CHECK_EQ(sp_warm_free(w, b), 1);
    c = (uint8_t *)sp_warm_alloc(w, 11 * PG);
    REQUIRE(c != NULL);
    CHECK(c != a);
    c[11 * PG - 1] = 1;
    REQUIRE(sp_warm_stats_get(w, &st) == SP_OK);
    CHECK_EQ(st.maps, 2);
    CHECK_EQ(st.reuses, 1);
    CHECK_EQ(st.live_buffers, 1);
    CHECK_EQ(st.live_bytes, 11 * PG);
    CHECK_EQ(st.cached_buffers, 1);
    CHECK_EQ(st.cached_bytes, 8 * PG);
    CHECK_EQ(sp_warm_trim(w), SP_OK);
    REQUIRE(sp_warm_stats_get(w, &st) == SP_OK);
    CHECK_EQ(st.cached_buffers, 0);
    CHECK_EQ(st.unmaps, 1);
    sp_warm_destroy(w); /* c still live: unmapped too */
}

static void test_warm_bounds(void)
{
    sp_warm *w = NULL;
    sp_warm_stats st;
    void *p[70];
    int i;
    REQUIRE(sp_warm_create(PG, 10 * PG, &w) == SP_OK);
    /* Larger than the whole budget: unmapped at once. */
    p[0] = sp_warm_alloc(w, 11 * PG);
    REQUIRE(p[0] != NULL);
    CHECK_EQ(sp_warm_free(w, p[0]), 1);
    REQUIRE(sp_warm_stats_get(w, &st) == SP_OK);
    CHECK_EQ(st.cached_buffers, 0);
    CHECK_EQ(st.unmaps, 1);
    /* Three of 4 pages within 10: the oldest goes. */
    for (i = 0; i < 3; i++)
        REQUIRE((p[i] = sp_warm_alloc(w, 4 * PG)) != NULL);
    for (i = 0; i < 3; i++)
        CHECK_EQ(sp_warm_free(w, p[i]), 1);
    REQUIRE(sp_warm_stats_get(w, &st) == SP_OK);
    CHECK_EQ(st.cached_buffers, 2);
    CHECK_EQ(st.cached_bytes, 8 * PG);
    CHECK(sp_warm_alloc(w, 4 * PG) == p[2]); /* newest kept... */
    CHECK(sp_warm_alloc(w, 4 * PG) == p[1]);
    sp_warm_destroy(w);
    /* At most 64 cached buffers whatever the budget. */
    REQUIRE(sp_warm_create(PG, UINT64_C(1) << 40, &w) == SP_OK);
    for (i = 0; i < 70; i++)
        REQUIRE((p[i] = sp_warm_alloc(w, PG)) != NULL);
    for (i = 0; i < 70; i++)
        CHECK_EQ(sp_warm_free(w, p[i]), 1);
    REQUIRE(sp_warm_stats_get(w, &st) == SP_OK);
    CHECK_EQ(st.cached_buffers, 64);
    CHECK_EQ(st.live_buffers, 0);
    /* An absurd request fails cleanly (caller falls back to malloc). */
    CHECK(sp_warm_alloc(w, UINT64_MAX - 10) == NULL);
    CHECK(sp_warm_alloc(w, UINT64_C(1) << 62) == NULL);
    sp_warm_destroy(w);
}

static void *warm_worker(void *arg)
{
    sp_warm *w = (sp_warm *)arg;
    int i;
    for (i = 0; i < 2000; i++) {
        uint8_t *p = (uint8_t *)sp_warm_alloc(w, PG * (1 + (unsigned)(i % 3)));
        if (p == NULL) {
            CHECK(p != NULL);
            break;
        }
        p[0] = (uint8_t)i;
        CHECK_EQ(p[0], (uint8_t)i);
        CHECK_EQ(sp_warm_free(w, p), 1);
    }
    return NULL;
}

static void test_warm_threads(void)
{
    sp_warm *w = NULL;
    pthread_t t[4];
    sp_warm_stats st;
    int i;
    REQUIRE(sp_warm_create(PG, 64 * PG, &w) == SP_OK);
    for (i = 0; i < 4; i++)
        REQUIRE(pthread_create(&t[i], NULL, warm_worker, w) == 0);
    for (i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    REQUIRE(sp_warm_stats_get(w, &st) == SP_OK);
    CHECK_EQ(st.live_buffers, 0);
    CHECK_EQ(st.maps + st.reuses, 8000);
    sp_warm_destroy(w);
}

static void test_warm_fork_child(void)
{
    sp_warm *w = NULL;
    uint8_t *p;
    pid_t pid;
    int status = 0;
    REQUIRE(sp_warm_create(PG, 64 * PG, &w) == SP_OK);
    p = (uint8_t *)sp_warm_alloc(w, 2 * PG);
    REQUIRE(p != NULL);
    p[0] = 42;
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        /* The child's copy: its own buffer, a working lock. */
        uint8_t *q;
        int ok = p[0] == 42 && sp_warm_free(w, p) == 1;
        q = (uint8_t *)sp_warm_alloc(w, 2 * PG);
        ok = ok && q == p && sp_warm_free(w, q) == 1;
        _exit(ok ? 0 : 1);
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(sp_warm_owns(w, p, NULL)); /* the parent's is untouched */
    CHECK_EQ(sp_warm_free(w, p), 1);
    sp_warm_destroy(w);
}

/* Under an address-space limit the cache gives its buffers back before a
 * request fails for lack of room (in a child: the limit is process-wide). */
static void test_warm_evicts_under_pressure(void)
{
    pid_t pid;
    int status = 0;
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const uint64_t big = UINT64_C(256) << 20;
        sp_warm *w = NULL;
        struct rlimit lim;
        uint8_t *a, *b;
        sp_warm_stats st;
        if (sp_warm_create(PG, UINT64_C(1) << 30, &w) != SP_OK)
            _exit(2);
        a = (uint8_t *)sp_warm_alloc(w, big);
        if (a == NULL || sp_warm_free(w, a) != 1)
            _exit(3);
        /* Room for what is mapped now plus half of `big` more: a second
         * buffer of 1.5x `big` (not served by the cached one) fits only
         * once the cached one is gone. */
        if (getrlimit(RLIMIT_AS, &lim) != 0)
            _exit(4);
        {
            FILE *f = fopen("/proc/self/statm", "r");
            unsigned long pages = 0;
            if (f == NULL || fscanf(f, "%lu", &pages) != 1)
                _exit(5);
            fclose(f);
            lim.rlim_cur = (rlim_t)pages * PG + big / 2 + (UINT64_C(64) << 20);
        }
        if (setrlimit(RLIMIT_AS, &lim) != 0)
            _exit(6);
        b = (uint8_t *)sp_warm_alloc(w, big + big / 2);
        if (b == NULL)
            _exit(7);
        b[0] = 1;
        if (sp_warm_stats_get(w, &st) != SP_OK || st.cached_buffers != 0 ||
            st.unmaps != 1)
            _exit(8);
        _exit(0);
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
}

int main(void)
{
    RUN(test_stream_all_alignments);
    RUN(test_copy_large_and_small);
    RUN(test_copy_split_pieces);
    RUN(test_copy_thread_count);
    RUN(test_copy_parallel);
    RUN(test_copy_rejects_bad_input);
    RUN(test_warm_invalid);
    RUN(test_warm_reuse);
    RUN(test_warm_bounds);
    RUN(test_warm_threads);
    RUN(test_warm_fork_child);
    RUN(test_warm_evicts_under_pressure);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
