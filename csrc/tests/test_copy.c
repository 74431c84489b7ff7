/*
 * test_copy.c -- unit tests of sp_copy (csrc/sp_copy.c): every relative
 * alignment and tail length of the streaming path, guard bytes around the
 * destination, the size switch, and refusal of bad input.
 */
#include "snakepit_core.h"
#include "sp_internal.h"
#include "tests/sp_test.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 64
#define SPAN 1024

static uint8_t pattern(size_t i) { return (uint8_t)(i * 131u + 7u); }

/* Every source and destination offset within a cache line, every length up
 * to a few lines: exactly n bytes land, nothing around them is touched. */
static void test_stream_all_alignments(void)
{
    static uint8_t src[SPAN + 2 * GUARD], dst[SPAN + 2 * GUARD];
    size_t so, dof, n, i;
    for (i = 0; i < sizeof src; i++)
        src[i] = pattern(i);
    for (so = 0; so < 64; so++) {
        for (dof = 0; dof < 64; dof++) {
            for (n = 0; n <= 300; n += (n < 140 ? 1 : 37)) {
                memset(dst, 0xA5, sizeof dst);
                sp_copy_stream(dst + GUARD + dof, src + GUARD + so, n);
                REQUIRE(memcmp(dst + GUARD + dof, src + GUARD + so, n) == 0);
                for (i = 0; i < GUARD + dof; i++)
                    REQUIRE(dst[i] == 0xA5);
                for (i = GUARD + dof + n; i < sizeof dst; i++)
                    REQUIRE(dst[i] == 0xA5);
            }
        }
    }
}

/* Above the switch: the public entry point streams; below it, memcpy. */
static void test_copy_large_and_small(void)
{
    uint64_t n = SP_COPY_STREAM_BYTES + 4096 + 17, i;
    uint8_t *src = (uint8_t *)malloc((size_t)n + 64);
    uint8_t *dst = (uint8_t *)malloc((size_t)n + 64);
    REQUIRE(src != NULL && dst != NULL);
    for (i = 0; i < n + 64; i++)
        src[i] = pattern((size_t)i);
    memset(dst, 0, (size_t)n + 64);
    CHECK_EQ(sp_copy(dst + 48, src + 16, n), SP_OK);
    CHECK(memcmp(dst + 48, src + 16, (size_t)n) == 0);
    CHECK_EQ(dst[47], 0);
    CHECK_EQ(dst[48 + n], 0);
    memset(dst, 0, (size_t)n + 64);
    CHECK_EQ(sp_copy(dst + 3, src + 5, 1000), SP_OK);
    CHECK(memcmp(dst + 3, src + 5, 1000) == 0);
    CHECK_EQ(dst[2], 0);
    CHECK_EQ(dst[1003], 0);
    free(src);
    free(dst);
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

int main(void)
{
    RUN(test_stream_all_alignments);
    RUN(test_copy_large_and_small);
    RUN(test_copy_rejects_bad_input);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
