/*
 * sp_test.h -- the tiny test framework shared by the C unit tests:
 * CHECK / CHECK_EQ record a failure and go on, REQUIRE ends the test,
 * RUN prints "ok"/"FAIL" per test. main() prints g_passed / g_failed.
 * (Failures are stored atomically: some tests check from several threads.)
 */
#ifndef SP_TEST_H
#define SP_TEST_H

#include <stdio.h>

static int g_cur_failed;
static int g_passed, g_failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "    %s:%d: CHECK failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                        \
            __atomic_store_n(&g_cur_failed, 1, __ATOMIC_SEQ_CST);            \
        }                                                                    \
    } while (0)

#define CHECK_EQ(a, b)                                                       \
    do {                                                                     \
        long long va_ = (long long)(a), vb_ = (long long)(b);                \
        if (va_ != vb_) {                                                    \
            fprintf(stderr, "    %s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n", \
                    __FILE__, __LINE__, #a, #b, va_, vb_);                   \
            __atomic_store_n(&g_cur_failed, 1, __ATOMIC_SEQ_CST);            \
        }                                                                    \
    } while (0)

/* Abort the current test early when a precondition fails. */
#define REQUIRE(cond)                                                        \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "    %s:%d: REQUIRE failed: %s\n", __FILE__,     \
                    __LINE__, #cond);                                        \
            __atomic_store_n(&g_cur_failed, 1, __ATOMIC_SEQ_CST);            \
            return;                                                          \
        }                                                                    \
    } while (0)

static void run_test(const char *name, void (*fn)(void))
{
    g_cur_failed = 0;
    fn();
    if (g_cur_failed) {
        g_failed++;
        printf("FAIL %s\n", name);
    } else {
        g_passed++;
        printf("ok   %s\n", name);
    }
    fflush(stdout);
}
#define RUN(fn) run_test(#fn, fn)

#endif /* SP_TEST_H */
