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
 */
#include "sp_internal.h"

#include <errno.h>
#include <string.h>

#if defined(__x86_64__) && defined(__SSE2__)
#include <emmintrin.h>
#define SP_HAVE_STREAM 1
#else
#define SP_HAVE_STREAM 0
#endif

/* 1: [a, a + n) and [b, b + n) share a byte. */
static int sp_overlaps(const uint8_t *a, const uint8_t *b, uint64_t n)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? y - x < n : x - y < n;
}

void sp_copy_stream(void *dst, const void *src, uint64_t n)
{
#if SP_HAVE_STREAM
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    uint64_t head = (SP_ALIGNMENT - ((uintptr_t)d & (SP_ALIGNMENT - 1))) &
                    (SP_ALIGNMENT - 1);
    if (head > n)
        head = n;
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

SP_API int sp_copy(void *dst, const void *src, uint64_t n)
{
    if (n == 0)
        return SP_OK;
    if (dst == NULL || src == NULL || (uint64_t)(size_t)n != n ||
        (uintptr_t)dst > UINTPTR_MAX - n || (uintptr_t)src > UINTPTR_MAX - n)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (sp_overlaps((const uint8_t *)dst, (const uint8_t *)src, n))
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (n >= SP_COPY_STREAM_BYTES)
        sp_copy_stream(dst, src, n);
    else
        memcpy(dst, src, (size_t)n);
    return SP_OK;
}
