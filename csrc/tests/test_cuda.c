/*
 * test_cuda.c -- unit tests of sp_cuda.c against the CUDA driver test double
 * (tests/fake_cuda.c, built as a shared library whose path is argv[1]).
 */
#include "snakepit_core.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s (%s)\n", __FILE__,    \
                    __LINE__, #cond, sp_cuda_last_message());              \
            failures++;                                                    \
        }                                                                  \
    } while (0)

typedef int (*alloc_fn)(unsigned long long *, size_t);
typedef int (*alloc_kind_fn)(unsigned long long *, size_t, int);
typedef int (*fill_fn)(void *, unsigned long long, int, size_t);
typedef void (*flag_fn)(int);
typedef int (*free_fn)(unsigned long long);
typedef int (*count_fn)(void);
typedef void (*reset_fn)(void);

static const char *fake_path;
static alloc_fn fake_alloc;
static free_fn fake_free;
static count_fn fake_open_count;
static reset_fn fake_reset;
static alloc_kind_fn fake_alloc_kind;
static fill_fn fake_queue_fill;
static count_fn fake_pending;
static flag_fn fake_legacy_missing;
static void *fake_lib;

static void load_helpers(void)
{
    fake_lib = dlopen(fake_path, RTLD_NOW | RTLD_LOCAL);
    if (fake_lib == NULL) {
        fprintf(stderr, "cannot load %s: %s\n", fake_path, dlerror());
        exit(2);
    }
    fake_alloc = (alloc_fn)dlsym(fake_lib, "fakecuMemAlloc");
    fake_free = (free_fn)dlsym(fake_lib, "fakecuMemFree");
    fake_open_count = (count_fn)dlsym(fake_lib, "fakecuOpenCount");
    fake_reset = (reset_fn)dlsym(fake_lib, "fakecuReset");
    fake_alloc_kind = (alloc_kind_fn)dlsym(fake_lib, "fakecuMemAllocKind");
    fake_queue_fill = (fill_fn)dlsym(fake_lib, "fakecuQueueFill");
    fake_pending = (count_fn)dlsym(fake_lib, "fakecuPendingCount");
    fake_legacy_missing = (flag_fn)dlsym(fake_lib, "fakecuSetLegacyAttributeMissing");
    if (!fake_alloc || !fake_free || !fake_open_count || !fake_reset ||
        !fake_alloc_kind || !fake_queue_fill || !fake_pending ||
        !fake_legacy_missing) {
        fprintf(stderr, "test double lacks its helpers\n");
        exit(2);
    }
}

static void test_load_failures(void)
{
    sp_cuda_driver *d = (sp_cuda_driver *)1;
    CHECK(sp_cuda_load("/nonexistent/libcuda.so.1", &d) == SP_ERR_NO_DRIVER);
    CHECK(d == NULL);
    CHECK(strstr(sp_cuda_last_message(), "/nonexistent/libcuda.so.1") != NULL);
    /* A real library without the driver's entry points. */
    CHECK(sp_cuda_load("libm.so.6", &d) == SP_ERR_NO_DRIVER);
    CHECK(strstr(sp_cuda_last_message(), "cuInit") != NULL);
    CHECK(sp_cuda_load("", &d) == SP_ERR_INVALID);
    CHECK(sp_cuda_load(fake_path, NULL) == SP_ERR_INVALID);
    CHECK(strcmp(sp_strerror(SP_ERR_NO_DRIVER), "unknown error") != 0);
    CHECK(strcmp(sp_strerror(SP_ERR_CUDA), "unknown error") != 0);
    sp_cuda_unload(NULL);
}

static void test_argument_validation(sp_cuda_driver *d)
{
    sp_cuda_ipc_handle h;
    uint64_t off = 0, size = 0, base = 0;
    memset(&h, 0, sizeof h);
    CHECK(sp_cuda_ipc_export(NULL, 0, 4096, &h, &off, &size) == SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_export(d, -1, 4096, &h, &off, &size) == SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_export(d, SP_CUDA_MAX_DEVICES, 4096, &h, &off, &size) ==
          SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_export(d, 0, 0, &h, &off, &size) == SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_export(d, 0, 4096, NULL, &off, &size) == SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_export(d, 0, 4096, &h, NULL, &size) == SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_export(d, 0, 4096, &h, &off, NULL) == SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_open(NULL, 0, &h, &base, NULL) == SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_open(d, 0, NULL, &base, NULL) == SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_open(d, 0, &h, NULL, NULL) == SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_open(d, -3, &h, &base, NULL) == SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_close(NULL, 0, 4096) == SP_ERR_INVALID);
    CHECK(sp_cuda_ipc_close(d, 0, 0) == SP_ERR_INVALID);
    /* A device the driver does not have: its CUresult is kept. */
    CHECK(sp_cuda_ipc_open(d, 7, &h, &base, NULL) == SP_ERR_CUDA);
    CHECK(sp_cuda_last_result() == 101); /* CUDA_ERROR_INVALID_DEVICE */
    CHECK(strstr(sp_cuda_last_message(), "cuDeviceGet") != NULL);
    /* A zeroed (forged) handle. */
    CHECK(sp_cuda_ipc_open(d, 0, &h, &base, NULL) == SP_ERR_CUDA);
    CHECK(sp_cuda_last_result() == 400); /* CUDA_ERROR_INVALID_HANDLE */
    /* Memory that is not a device allocation. */
    CHECK(sp_cuda_ipc_export(d, 0, (uint64_t)(uintptr_t)&h, &h, &off, &size) ==
          SP_ERR_CUDA);
    /* Closing what was never opened. */
    CHECK(sp_cuda_ipc_close(d, 0, 4096) == SP_ERR_CUDA);
    CHECK(sp_cuda_last_result() == 1); /* CUDA_ERROR_INVALID_VALUE */
}

/* Child: open the parent's handle, check and rewrite the bytes, close. */
static int child_main(const sp_cuda_ipc_handle *h, uint64_t offset,
                      uint64_t alloc_size)
{
    sp_cuda_driver *d = NULL;
    uint64_t base = 0, base2 = 0, size = 0;
    uint8_t *p;
    uint64_t i;
    if (sp_cuda_load(fake_path, &d) != SP_OK)
        return 10;
    if (sp_cuda_ipc_open(d, 0, h, &base, &size) != SP_OK)
        return 11;
    if (size != alloc_size)
        return 12;
    p = (uint8_t *)(uintptr_t)base + offset;
    for (i = 0; i < 64; i++)
        if (p[i] != (uint8_t)(i + 1))
            return 13;
    for (i = 0; i < 64; i++)
        p[i] = (uint8_t)(200 - i);
    /* Reopen: same pointer, refcounted; each open needs its close. */
    if (sp_cuda_ipc_open(d, 0, h, &base2, NULL) != SP_OK || base2 != base)
        return 14;
    if (fake_open_count() != 2)
        return 15;
    if (sp_cuda_ipc_close(d, 0, base) != SP_OK || fake_open_count() != 1)
        return 16;
    if (sp_cuda_ipc_close(d, 0, base) != SP_OK || fake_open_count() != 0)
        return 17;
    if (sp_cuda_ipc_close(d, 0, base) != SP_ERR_CUDA)
        return 18;
    sp_cuda_unload(d);
    return 0;
}

static void test_ipc_roundtrip(sp_cuda_driver *d)
{
    unsigned long long first = 0, dptr = 0;
    sp_cuda_ipc_handle h, h2;
    uint64_t offset = 0, size = 0, base = 0;
    uint8_t *host;
    int i, status = 0;
    pid_t pid;
    CHECK(fake_alloc(&first, 1000) == 0);
    CHECK(fake_alloc(&dptr, 4096) == 0);
    if (dptr == 0)
        return;
    host = (uint8_t *)(uintptr_t)dptr;
    for (i = 0; i < 64; i++)
        host[100 + i] = (uint8_t)(i + 1);

    /* Interior pointer -> (handle of the base, offset). */
    CHECK(sp_cuda_ipc_export(d, 0, dptr + 100, &h, &offset, &size) == SP_OK);
    CHECK(offset == 100);
    CHECK(size == 4096);
    CHECK(sp_cuda_ipc_export(d, 0, dptr, &h2, &offset, &size) == SP_OK);
    CHECK(offset == 0);
    CHECK(memcmp(&h, &h2, sizeof h) == 0);
    CHECK(sp_cuda_ipc_export(d, 0, dptr + 100, &h, &offset, &size) == SP_OK);

    /* The exporting process cannot open its own handle. */
    CHECK(sp_cuda_ipc_open(d, 0, &h, &base, NULL) == SP_ERR_CUDA);
    CHECK(sp_cuda_last_result() == SP_CUDA_ERROR_INVALID_CONTEXT);
    CHECK(strstr(sp_cuda_last_message(), "cuIpcOpenMemHandle_v2") != NULL);
    CHECK(fake_open_count() == 0);

    fflush(NULL);
    pid = fork();
    if (pid == 0)
        _exit(child_main(&h, offset, size));
    CHECK(pid > 0);
    if (pid > 0) {
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
            fprintf(stderr, "child failed at step %d\n", WEXITSTATUS(status));
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    for (i = 0; i < 64; i++)
        CHECK(host[100 + i] == (uint8_t)(200 - i));
    CHECK(fake_free(dptr) == 0);
    CHECK(fake_free(first) == 0);
    /* A freed allocation has no handle any more. */
    CHECK(sp_cuda_ipc_export(d, 0, dptr, &h, &offset, &size) == SP_ERR_CUDA);
}

static void test_devices(sp_cuda_driver *d)
{
    uint8_t u0[SP_CUDA_UUID_SIZE], u1[SP_CUDA_UUID_SIZE];
    int count = -1;
    CHECK(sp_cuda_device_count(d, &count) == SP_OK);
    CHECK(count == 2); /* the double's default */
    CHECK(sp_cuda_device_count(NULL, &count) == SP_ERR_INVALID);
    CHECK(sp_cuda_device_count(d, NULL) == SP_ERR_INVALID);
    CHECK(sp_cuda_device_uuid(d, 0, u0) == SP_OK);
    CHECK(sp_cuda_device_uuid(d, 1, u1) == SP_OK);
    CHECK(memcmp(u0, "fake", 4) == 0 && u0[15] == 0);
    CHECK(memcmp(u1, "fake", 4) == 0 && u1[15] == 1);
    CHECK(sp_cuda_device_uuid(d, 2, u0) == SP_ERR_CUDA);
    CHECK(sp_cuda_last_result() == 101); /* CUDA_ERROR_INVALID_DEVICE */
    CHECK(sp_cuda_device_uuid(d, -1, u0) == SP_ERR_INVALID);
    CHECK(sp_cuda_device_uuid(d, 0, NULL) == SP_ERR_INVALID);
}

static void test_memory_kinds(sp_cuda_driver *d)
{
    static const int kinds[4] = {SP_CUDA_MEMORY_DEVICE, SP_CUDA_MEMORY_POOL,
                                 SP_CUDA_MEMORY_VMM, SP_CUDA_MEMORY_MANAGED};
    sp_cuda_pointer_info info;
    sp_cuda_ipc_handle h;
    uint64_t off = 0, size = 0;
    unsigned long long p = 0;
    int k;
    for (k = 0; k < 4; k++) {
        p = 0;
        CHECK(fake_alloc_kind(&p, 512, k) == 0);
        memset(&info, 0xff, sizeof info);
        CHECK(sp_cuda_pointer_info_get(d, 0, p + 8, &info) == SP_OK);
        CHECK(info.kind == kinds[k]);
        CHECK(info.device_ordinal == 0);
        CHECK(info.legacy_ipc == (k == 0));
        CHECK(info.base == p && info.size == 512);
        if (k == 0) {
            CHECK(sp_cuda_ipc_export(d, 0, p + 8, &h, &off, &size) == SP_OK);
        } else {
            CHECK(sp_cuda_ipc_export(d, 0, p + 8, &h, &off, &size) ==
                  SP_ERR_UNSHAREABLE);
            CHECK(strstr(sp_cuda_last_message(), "cannot share") != NULL);
        }
        CHECK(fake_free(p) == 0);
    }
    /* The pool and managed checks do not need the legacy attribute. */
    fake_legacy_missing(1);
    CHECK(fake_alloc_kind(&p, 64, 1) == 0);
    CHECK(sp_cuda_pointer_info_get(d, 0, p, &info) == SP_OK);
    CHECK(info.kind == SP_CUDA_MEMORY_POOL && info.legacy_ipc == -1);
    CHECK(fake_alloc_kind(&p, 64, 0) == 0);
    CHECK(sp_cuda_pointer_info_get(d, 0, p, &info) == SP_OK);
    CHECK(info.kind == SP_CUDA_MEMORY_DEVICE && info.legacy_ipc == -1);
    CHECK(sp_cuda_ipc_export(d, 0, p, &h, &off, &size) == SP_OK);
    fake_legacy_missing(0);
    /* Not CUDA memory at all. */
    CHECK(sp_cuda_pointer_info_get(d, 0, (uint64_t)(uintptr_t)&info, &info) ==
          SP_ERR_CUDA);
    CHECK(sp_cuda_last_result() == 1);
    CHECK(sp_cuda_pointer_info_get(d, 0, 0, &info) == SP_ERR_INVALID);
    CHECK(sp_cuda_pointer_info_get(d, 0, p, NULL) == SP_ERR_INVALID);
    CHECK(sp_cuda_pointer_info_get(NULL, 0, p, &info) == SP_ERR_INVALID);
}

static void test_sync_and_copy(sp_cuda_driver *d)
{
    unsigned long long src = 0;
    uint64_t dst = 0, stream = 0x1234, other = 0x99;
    uint8_t *s8, *d8;
    int i, ok = 1;
    CHECK(fake_alloc(&src, 256) == 0);
    s8 = (uint8_t *)(uintptr_t)src;
    memset(s8, 0, 256);
    /* Work queued on a stream lands only when it is synchronised. */
    CHECK(fake_queue_fill((void *)(uintptr_t)stream, src, 7, 128) == 0);
    CHECK(fake_queue_fill((void *)(uintptr_t)other, src + 128, 9, 128) == 0);
    CHECK(s8[0] == 0 && fake_pending() == 2);
    CHECK(sp_cuda_synchronize(d, 0, &stream) == SP_OK);
    CHECK(s8[0] == 7 && s8[128] == 0 && fake_pending() == 1);
    CHECK(sp_cuda_synchronize(d, 0, NULL) == SP_OK);
    CHECK(s8[128] == 9 && fake_pending() == 0);
    CHECK(sp_cuda_synchronize(NULL, 0, NULL) == SP_ERR_INVALID);
    CHECK(sp_cuda_synchronize(d, 5, NULL) == SP_ERR_CUDA);

    CHECK(sp_cuda_mem_alloc(d, 0, 256, &dst) == SP_OK);
    CHECK(dst != 0);
    CHECK(sp_cuda_memcpy(d, 0, dst, src, 256) == SP_OK);
    d8 = (uint8_t *)(uintptr_t)dst;
    for (i = 0; i < 256; i++)
        ok &= d8[i] == s8[i];
    CHECK(ok);
    CHECK(sp_cuda_memcpy(d, 0, dst, src, 0) == SP_OK);
    CHECK(sp_cuda_memcpy(d, 0, dst, src, 257) == SP_ERR_CUDA);
    CHECK(sp_cuda_memcpy(d, 0, 0, src, 1) == SP_ERR_INVALID);
    CHECK(sp_cuda_memcpy(d, 0, UINT64_MAX, src, 2) == SP_ERR_INVALID);
    CHECK(sp_cuda_mem_alloc(d, 0, 0, &dst) == SP_ERR_INVALID);
    CHECK(sp_cuda_mem_alloc(d, 0, 1, NULL) == SP_ERR_INVALID);
    CHECK(sp_cuda_mem_free(d, 0, dst) == SP_OK);
    CHECK(sp_cuda_mem_free(d, 0, dst) == SP_ERR_CUDA);
    CHECK(sp_cuda_mem_free(d, 0, 0) == SP_ERR_INVALID);
    CHECK(fake_free(src) == 0);
    CHECK(strcmp(sp_strerror(SP_ERR_UNSHAREABLE), "unknown error") != 0);
}

int main(int argc, char **argv)
{
    sp_cuda_driver *d = NULL;
    if (argc != 2) {
        fprintf(stderr, "usage: %s path/to/libfakecuda.so\n", argv[0]);
        return 2;
    }
    fake_path = argv[1];
    load_helpers();
    test_load_failures();
    CHECK(sp_cuda_load(fake_path, &d) == SP_OK);
    if (d != NULL) {
        test_argument_validation(d);
        test_ipc_roundtrip(d);
        test_devices(d);
        test_memory_kinds(d);
        test_sync_and_copy(d);
        sp_cuda_unload(d);
    }
    fake_reset();
    dlclose(fake_lib);
    if (failures) {
        fprintf(stderr, "test_cuda: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_cuda: all checks passed\n");
    return 0;
}
