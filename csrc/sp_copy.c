/*
 * sp_copy.c -- copying into shared blocks at memory speed.
 *
 * Large copies align the destination to a cache line and fill it with
 * non-temporal stores from unaligned loads: no read-for-ownership of the
 * destination (a third of memcpy's memory traffic), the same speed for any
 * relative alignment of source and block (blocks are 64-byte aligned, a
 * large numpy array starts 16 bytes into its page), and a block that the
 * next process reads anyway does not first evict the copier's cache. glibc
 * streams only far above the L3 size, and not as fast: see
 * SP_COPY_STREAM_BYTES for the measurements. Small copies are memcpy's.
 *
 * Where the CPU has AVX2 the loop moves two lines per step with 32-byte
 * registers and prefetches the source SP_COPY_PREFETCH bytes ahead: on the
 * 2-core EPYC VM the project measures on, 1 GiB from a numpy array into a
 * block took 0.72-0.74x memcpy's time against 0.85x for the SSE2 loop
 * (interleaved rounds, median of 25); AVX-512 registers or no prefetch
 * were no faster.
 *
 * Copies of SP_COPY_PARALLEL_BYTES or more are split between up to
 * SP_COPY_MAX_THREADS threads, one piece of at least SP_COPY_PIECE_BYTES
 * each, as many as this thread's CPU affinity allows. A shared block lives
 * in tmpfs pages of 4 KiB (transparent huge pages are off for shared memory
 * by default), so one thread streaming into it waits on a page walk for
 * every 4 KiB it writes; two threads overlap those walks. On the 2-core VM,
 * 1 GiB from a numpy array into an arena block took 0.76x one thread's time
 * with two (0.55x memcpy's), 0.67x at 64 MiB, no gain at 32 MiB and below
 * (median of 9, interleaved). Into memory with huge pages a second thread
 * gains little: there the copy is bound by memory bandwidth. The threads
 * live only for the call: nothing is left running (a process may fork next).
 */
#include "sp_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>

#if defined(__x86_64__) && defined(__SSE2__)
#include <immintrin.h>
#define SP_HAVE_STREAM 1
#if defined(__GNUC__) || defined(__clang__)
#define SP_HAVE_AVX2 1
#endif
#else
#define SP_HAVE_STREAM 0
#endif

#ifndef SP_HAVE_AVX2
#define SP_HAVE_AVX2 0
#endif

/* How far ahead of the loads the AVX2 loop prefetches the source (bytes):
 * 2-4 KiB measured best, 1 KiB or none 4-7% slower. */
#define SP_COPY_PREFETCH 2048

/* 1: [a, a + n) and [b, b + n) share a byte. */
static int sp_overlaps(const uint8_t *a, const uint8_t *b, uint64_t n)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? y - x < n : x - y < n;
}

#if SP_HAVE_STREAM
/* Bytes to copy before d is cache-line aligned (at most n). */
static uint64_t sp_head(const uint8_t *d, uint64_t n)
{
    uint64_t head = (SP_ALIGNMENT - ((uintptr_t)d & (SP_ALIGNMENT - 1))) &
                    (SP_ALIGNMENT - 1);
    return head > n ? n : head;
}
#endif

void sp_copy_stream_sse2(void *dst, const void *src, uint64_t n)
{
#if SP_HAVE_STREAM
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    uint64_t head = sp_head(d, n);
    memcpy(d, s, (size_t)head);
    d += head;
    s += head;
    n -= head;
    /* One cache line per step: four 16-byte loads from anywhere, four
     * aligned streaming stores that fill the line without reading it. */
    while (n >= 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)s);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + 48));
        _mm_stream_si128((__m128i *)(void *)d, a);
        _mm_stream_si128((__m128i *)(void *)(d + 16), b);
        _mm_stream_si128((__m128i *)(void *)(d + 32), c);
        _mm_stream_si128((__m128i *)(void *)(d + 48), e);
        s += 64;
        d += 64;
        n -= 64;
    }
    /* Streaming stores are weakly ordered: make them visible before the
     * caller publishes the block to another process. */
    _mm_sfence();
    memcpy(d, s, (size_t)n);
#else
    memcpy(dst, src, (size_t)n);
#endif
}

#if SP_HAVE_AVX2
__attribute__((target("avx2"))) static void
sp_stream_avx2(uint8_t *d, const uint8_t *s, uint64_t n)
{
    uint64_t head = sp_head(d, n);
    memcpy(d, s, (size_t)head);
    d += head;
    s += head;
    n -= head;
    /* Two cache lines per step. A prefetch is a hint that never faults, so
     * running past the end of the source is harmless. */
    while (n >= 128) {
        _mm_prefetch((const char *)s + SP_COPY_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)s + SP_COPY_PREFETCH + 64, _MM_HINT_T0);
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)s);
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(s + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(s + 64));
        __m256i e = _mm256_loadu_si256((const __m256i *)(const void *)(s + 96));
        _mm256_stream_si256((__m256i *)(void *)d, a);
        _mm256_stream_si256((__m256i *)(void *)(d + 32), b);
        _mm256_stream_si256((__m256i *)(void *)(d + 64), c);
        _mm256_stream_si256((__m256i *)(void *)(d + 96), e);
        s += 128;
        d += 128;
        n -= 128;
    }
    if (n >= 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)s);
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(s + 32));
        _mm256_stream_si256((__m256i *)(void *)d, a);
        _mm256_stream_si256((__m256i *)(void *)(d + 32), b);
        s += 64;
        d += 64;
        n -= 64;
    }
    _mm_sfence(); /* as in the SSE2 loop */
    /* Upper halves of the ymm registers are dirty: a later SSE instruction
     * (memcpy's) would pay a state transition for each use otherwise. */
    _mm256_zeroupper();
    memcpy(d, s, (size_t)n);
}
#endif

int sp_copy_has_avx2(void)
{
#if SP_HAVE_AVX2
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

int sp_copy_stream_avx2(void *dst, const void *src, uint64_t n)
{
#if SP_HAVE_AVX2
    if (!sp_copy_has_avx2())
        return 0;
    sp_stream_avx2((uint8_t *)dst, (const uint8_t *)src, n);
    return 1;
#else
    (void)dst;
    (void)src;
    (void)n;
    return 0;
#endif
}

void sp_copy_stream(void *dst, const void *src, uint64_t n)
{
    if (!sp_copy_stream_avx2(dst, src, n))
        sp_copy_stream_sse2(dst, src, n);
}

/* Pieces start on a page of the destination: no two threads stream into
 * one page, and each piece but the first starts cache-aligned. */
#define SP_COPY_PIECE_ALIGN UINT64_C(4096)

typedef struct {
    uint8_t *dst;
    const uint8_t *src;
    uint64_t n;
} sp_copy_piece;

static void *sp_copy_piece_run(void *arg)
{
    sp_copy_piece *piece = (sp_copy_piece *)arg;
    sp_copy_stream(piece->dst, piece->src, piece->n);
    return NULL;
}

/* CPUs this thread may run on (1 where that cannot be read). */
static unsigned sp_cpus_allowed(void)
{
    cpu_set_t set;
    int count;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    count = CPU_COUNT(&set);
    return count > 0 ? (unsigned)count : 1;
}

unsigned sp_copy_threads_for(uint64_t n)
{
    uint64_t by_size;
    unsigned cpus;
    if (n < SP_COPY_PARALLEL_BYTES)
        return 1;
    by_size = n / SP_COPY_PIECE_BYTES;
    cpus = sp_cpus_allowed();
    if (by_size < cpus)
        cpus = (unsigned)by_size;
    return cpus < SP_COPY_MAX_THREADS ? (cpus ? cpus : 1) : SP_COPY_MAX_THREADS;
}

void sp_copy_split(void *dst, const void *src, uint64_t n, unsigned threads)
{
    sp_copy_piece pieces[SP_COPY_MAX_THREADS];
    pthread_t ids[SP_COPY_MAX_THREADS];
    int started[SP_COPY_MAX_THREADS] = {0};
    sigset_t all, old;
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    uint64_t share, cut, done = 0;
    unsigned i, count = 0;

    if (threads > SP_COPY_MAX_THREADS)
        threads = SP_COPY_MAX_THREADS;
    if (threads < 2 || n < (uint64_t)threads * SP_COPY_PIECE_ALIGN) {
        sp_copy_stream(dst, src, n);
        return;
    }
    share = n / threads;
    for (i = 0; i < threads; i++) {
        if (i + 1 == threads) {
            cut = n;
        } else {
            /* The end of this piece, moved up to a destination page. */
            uintptr_t end = (uintptr_t)(d + done + share);
            end = (end + SP_COPY_PIECE_ALIGN - 1) & ~(uintptr_t)(SP_COPY_PIECE_ALIGN - 1);
            cut = (uint64_t)(end - (uintptr_t)d);
            if (cut > n)
                cut = n;
        }
        if (cut <= done)
            continue;
        pieces[count].dst = d + done;
        pieces[count].src = s + done;
        pieces[count].n = cut - done;
        count++;
        done = cut;
    }
    /* Helpers take no signal: the process's handlers (Python's among them)
     * run on the threads that were there before. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (i = 1; i < count; i++)
        started[i] = pthread_create(&ids[i], NULL, sp_copy_piece_run, &pieces[i]) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sp_copy_piece_run(&pieces[0]);
    for (i = 1; i < count; i++) {
        if (started[i])
            pthread_join(ids[i], NULL);
        else
            sp_copy_piece_run(&pieces[i]); /* no thread to be had: copy it here */
    }
}

SP_API int sp_copy(void *dst, const void *src, uint64_t n)
{
    if (n == 0)
        return SP_OK;
    if (dst == NULL || src == NULL || (uint64_t)(size_t)n != n ||
        (uintptr_t)dst > UINTPTR_MAX - n || (uintptr_t)src > UINTPTR_MAX - n)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (sp_overlaps((const uint8_t *)dst, (const uint8_t *)src, n))
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (n >= SP_COPY_PARALLEL_BYTES)
        sp_copy_split(dst, src, n, sp_copy_threads_for(n));
    else if (n >= SP_COPY_STREAM_BYTES)
        sp_copy_stream(dst, src, n);
    else
        memcpy(dst, src, (size_t)n);
    return SP_OK;
}
