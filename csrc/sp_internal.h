/*
 * sp_internal.h -- private declarations shared by the snakepit C core.
 * Not installed; never include from outside csrc/.
 */
#ifndef SP_INTERNAL_H
#define SP_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stddef.h>
#include <stdint.h>

/* Public declarations get default visibility even under -fvisibility=hidden. */
#pragma GCC visibility push(default)
#include "snakepit_core.h"
#pragma GCC visibility pop

/* Also put on definitions of the public functions (belt and braces). */
#define SP_API __attribute__((visibility("default")))
#define SP_HIDDEN __attribute__((visibility("hidden")))

/* ---- layout pins: shared memory is read by other processes ---- */
_Static_assert(sizeof(sp_region_header) == SP_REGION_HEADER_SIZE,
               "sp_region_header must be 128 bytes");
_Static_assert(offsetof(sp_region_header, magic) == 0, "magic @0");
_Static_assert(offsetof(sp_region_header, version) == 8, "version @8");
_Static_assert(offsetof(sp_region_header, header_size) == 12, "header_size @12");
_Static_assert(offsetof(sp_region_header, total_size) == 16, "total_size @16");
_Static_assert(offsetof(sp_region_header, owner_pid) == 24, "owner_pid @24");
_Static_assert(offsetof(sp_region_header, refcount) == 32, "refcount @32");
_Static_assert(offsetof(sp_region_header, flags) == 40, "flags @40");
_Static_assert(offsetof(sp_region_header, reserved) == 48, "reserved @48");

_Static_assert(sizeof(sp_block_header) == SP_BLOCK_HEADER_SIZE,
               "sp_block_header must be 64 bytes");
_Static_assert(offsetof(sp_block_header, magic) == 0, "magic @0");
_Static_assert(offsetof(sp_block_header, capacity) == 8, "capacity @8");
_Static_assert(offsetof(sp_block_header, nbytes) == 16, "nbytes @16");
_Static_assert(offsetof(sp_block_header, refcount) == 24, "refcount @24");
_Static_assert(offsetof(sp_block_header, generation) == 32, "generation @32");
_Static_assert(offsetof(sp_block_header, reserved) == 40, "reserved @40");

_Static_assert(SP_REGION_HEADER_SIZE % SP_ALIGNMENT == 0, "header alignment");
_Static_assert(SP_BLOCK_HEADER_SIZE % SP_ALIGNMENT == 0, "block alignment");
_Static_assert((SP_ALIGNMENT & (SP_ALIGNMENT - 1)) == 0, "alignment pow2");
_Static_assert(sizeof("/snakepit-") - 1 + 10 + 1 + SP_NAME_RANDOM_HEX <
                   SP_NAME_MAX,
               "longest name fits");

/* Region header flags. */
#define SP_REGION_FLAG_DEDICATED UINT64_C(1)

#define SP_DEFAULT_SHM_DIR "/dev/shm"

/* ---- sp_util.c ---- */

/* Record err as this thread's last errno and return status. */
SP_HIDDEN int sp_fail(int status, int err);
/* Map an errno value to a status code. */
SP_HIDDEN int sp_status_from_errno(int err);
/* Fill name (SP_NAME_MAX bytes) with a fresh "/snakepit-<getpid()>-<hex>". */
SP_HIDDEN int sp_name_random(char name[SP_NAME_MAX]);
/* System page size (cached). */
SP_HIDDEN uint64_t sp_page_size(void);
/* *out = a + b; returns 1 on overflow. */
SP_HIDDEN int sp_add_overflow(uint64_t a, uint64_t b, uint64_t *out);
/* *out = a * b; returns 1 on overflow. */
SP_HIDDEN int sp_mul_overflow(uint64_t a, uint64_t b, uint64_t *out);
/* *out = v rounded up to a multiple of align (power of two); 1 on overflow. */
SP_HIDDEN int sp_round_up(uint64_t v, uint64_t align, uint64_t *out);
/* Total object size for a region holding data_size bytes of data. */
SP_HIDDEN int sp_region_total_for(uint64_t data_size, uint64_t *total);
/* Fault-injection hook: returns an error to pretend posix_fallocate
 * returned, or 0 to perform the real call. */
SP_HIDDEN int sp_debug_fallocate_injected(void);

/* ---- sp_copy.c ---- */

/* The streaming copy of sp_copy, for any n (no checks: tests call it): the
 * AVX2 loop where the CPU has it, else the SSE2 one. */
SP_HIDDEN void sp_copy_stream(void *dst, const void *src, uint64_t n);
/* Each loop on its own, for the tests. The AVX2 one returns 0 (and copies
 * nothing) where this build or CPU lacks AVX2. */
SP_HIDDEN void sp_copy_stream_sse2(void *dst, const void *src, uint64_t n);
SP_HIDDEN int sp_copy_stream_avx2(void *dst, const void *src, uint64_t n);
SP_HIDDEN int sp_copy_has_avx2(void);
/* How many threads sp_copy splits n bytes between (1: no split). */
SP_HIDDEN unsigned sp_copy_threads_for(uint64_t n);
/* The streaming copy split between `threads` threads (at most
 * SP_COPY_MAX_THREADS; fewer where n is small), pieces starting on pages of
 * dst; for any n (no checks: tests call it with small ones). */
SP_HIDDEN void sp_copy_split(void *dst, const void *src, uint64_t n, unsigned threads);

#endif /* SP_INTERNAL_H */
