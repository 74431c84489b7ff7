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
typedef int (*free_fn)(unsigned long long);
typedef int (*count_fn)(void);
typedef void (*reset_fn)(void);

static const char *fake_path;
static alloc_fn fake_alloc;
static free_fn fake_free;
static count_fn fake_open_count;
static reset_fn fake_reset;
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
    if (!fake_alloc || !fake_free || !fake_open_count || !fake_reset) {
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
