/*
 * fake_cuda.c -- TEST DOUBLE of the CUDA driver API. Not CUDA; never shipped.
 *
 * Built by the tests into build/libfakecuda.so so that machines without a
 * GPU can run the whole IPC path of sp_cuda.c. It exports the driver entry
 * points sp_cuda.c resolves, with the driver's C signatures, over HOST
 * memory:
 *
 *   - "device memory" is carved out of one POSIX shared-memory segment per
 *     process, "/fakecuda-<pid>-<n>" (deliberately not "snakepit-"), created
 *     by the test helper fakecuMemAlloc and unlinked by fakecuReset or when
 *     the library is unloaded at exit in the process that created it;
 *   - cuIpcGetMemHandle (on an allocation base only) writes a magic, the
 *     exporter's pid, the segment name, the allocation's offset and size
 *     into the 64-byte handle;
 *   - cuIpcOpenMemHandle_v2 in another process maps that segment and
 *     returns base + offset; in the exporting process it fails with
 *     CUDA_ERROR_INVALID_CONTEXT, as the real driver does; reopening the same
 *     handle increments a refcount and returns the same pointer; every open
 *     must be paired with cuIpcCloseMemHandle (fakecuOpenCount tells);
 *   - IPC calls need cuInit and a current context (cuCtxSetCurrent with a
 *     primary context from cuDevicePrimaryCtxRetain), like the real driver.
 *
 * CUresult numbers are those of the public cuda.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FAKE_API __attribute__((visibility("default")))

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;
typedef struct CUipcMemHandle {
    char reserved[64];
} CUipcMemHandle;

_Static_assert(sizeof(CUipcMemHandle) == 64, "CU_IPC_HANDLE_SIZE is 64");

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_MAP_FAILED = 205,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500
};

#define FAKE_DEVICES 2
#define FAKE_SEGMENT_SIZE (UINT64_C(16) << 20) /* sparse: pages on touch */
#define FAKE_ALIGN 256u
#define FAKE_MAX_ALLOCS 256
#define FAKE_MAX_OPENS 256
#define FAKE_NAME_LEN 32
#define FAKE_MAGIC "FAKECUIP"

/* Handle layout (the real one is opaque; this is the double's). */
typedef struct fake_handle {
    char magic[8];
    int32_t pid;
    int32_t device;
    uint64_t offset;
    uint64_t size;
    char name[FAKE_NAME_LEN];
} fake_handle;
_Static_assert(sizeof(fake_handle) == sizeof(CUipcMemHandle), "handle fits");

typedef struct fake_alloc {
    uint64_t offset;
    uint64_t size;
    int live;
} fake_alloc;

typedef struct fake_open {
    char name[FAKE_NAME_LEN];
    uint64_t offset;
    uint64_t size;
    uint8_t *map;
    uint64_t map_size;
    int refcount;
} fake_open;

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static int fake_initialized;
static int fake_ctx_tokens[FAKE_DEVICES];
static int fake_ctx_refs[FAKE_DEVICES];
static _Thread_local CUcontext fake_current;

static char fake_segment[FAKE_NAME_LEN];
static pid_t fake_segment_owner;
static uint8_t *fake_base;
static uint64_t fake_used;
static unsigned fake_generation;
static fake_alloc fake_allocs[FAKE_MAX_ALLOCS];
static fake_open fake_opens[FAKE_MAX_OPENS];

FAKE_API CUresult cuInit(unsigned int flags)
{
    if (flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    fake_initialized = 1;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    if (!fake_initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (device == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (ordinal < 0 || ordinal >= FAKE_DEVICES)
        return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    if (!fake_initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (pctx == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (dev < 0 || dev >= FAKE_DEVICES)
        return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&fake_lock);
    fake_ctx_refs[dev]++;
    pthread_mutex_unlock(&fake_lock);
    *pctx = &fake_ctx_tokens[dev];
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    CUresult res = CUDA_SUCCESS;
    if (dev < 0 || dev >= FAKE_DEVICES)
        return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&fake_lock);
    if (fake_ctx_refs[dev] <= 0)
        res = CUDA_ERROR_INVALID_CONTEXT;
    else
        fake_ctx_refs[dev]--;
    pthread_mutex_unlock(&fake_lock);
    return res;
}

FAKE_API CUresult cuCtxGetCurrent(CUcontext *pctx)
{
    if (!fake_initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (pctx == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *pctx = fake_current;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuCtxSetCurrent(CUcontext ctx)
{
    if (!fake_initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (ctx != NULL && (ctx < (CUcontext)&fake_ctx_tokens[0] ||
                        ctx > (CUcontext)&fake_ctx_tokens[FAKE_DEVICES - 1]))
        return CUDA_ERROR_INVALID_CONTEXT;
    fake_current = ctx;
    return CUDA_SUCCESS;
}

static CUresult fake_ready(void)
{
    if (!fake_initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (fake_current == NULL)
        return CUDA_ERROR_INVALID_CONTEXT;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuGetErrorName(CUresult error, const char **pstr)
{
    if (pstr == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    switch (error) {
    case CUDA_SUCCESS: *pstr = "CUDA_SUCCESS"; break;
    case CUDA_ERROR_INVALID_VALUE: *pstr = "CUDA_ERROR_INVALID_VALUE"; break;
    case CUDA_ERROR_OUT_OF_MEMORY: *pstr = "CUDA_ERROR_OUT_OF_MEMORY"; break;
    case CUDA_ERROR_NOT_INITIALIZED: *pstr = "CUDA_ERROR_NOT_INITIALIZED"; break;
    case CUDA_ERROR_INVALID_DEVICE: *pstr = "CUDA_ERROR_INVALID_DEVICE"; break;
    case CUDA_ERROR_INVALID_CONTEXT: *pstr = "CUDA_ERROR_INVALID_CONTEXT"; break;
    case CUDA_ERROR_MAP_FAILED: *pstr = "CUDA_ERROR_MAP_FAILED"; break;
    case CUDA_ERROR_INVALID_HANDLE: *pstr = "CUDA_ERROR_INVALID_HANDLE"; break;
    case CUDA_ERROR_NOT_FOUND: *pstr = "CUDA_ERROR_NOT_FOUND"; break;
    default: *pstr = NULL; return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuGetErrorString(CUresult error, const char **pstr)
{
    if (pstr == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    switch (error) {
    case CUDA_SUCCESS: *pstr = "no error"; break;
    case CUDA_ERROR_INVALID_VALUE: *pstr = "invalid argument"; break;
    case CUDA_ERROR_OUT_OF_MEMORY: *pstr = "out of memory"; break;
    case CUDA_ERROR_NOT_INITIALIZED: *pstr = "initialization error"; break;
    case CUDA_ERROR_INVALID_DEVICE: *pstr = "invalid device ordinal"; break;
    case CUDA_ERROR_INVALID_CONTEXT: *pstr = "invalid device context"; break;
    case CUDA_ERROR_MAP_FAILED: *pstr = "mapping of buffer object failed"; break;
    case CUDA_ERROR_INVALID_HANDLE: *pstr = "invalid resource handle"; break;
    case CUDA_ERROR_NOT_FOUND: *pstr = "named symbol not found"; break;
    default: *pstr = NULL; return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

/* ---- allocations (test helpers, not part of the driver API) ---- */

static int fake_segment_create(void)
{
    int fd;
    void *map;
    if (fake_base != NULL && fake_segment_owner == getpid())
        return 0;
    /* A forked child starts its own segment; the parent's stays its own. */
    fake_base = NULL;
    fake_used = 0;
    memset(fake_allocs, 0, sizeof fake_allocs);
    snprintf(fake_segment, sizeof fake_segment, "/fakecuda-%d-%u", (int)getpid(),
             ++fake_generation);
    fd = shm_open(fake_segment, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)FAKE_SEGMENT_SIZE) != 0) {
        close(fd);
        shm_unlink(fake_segment);
        return -1;
    }
    map = mmap(NULL, FAKE_SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
               0);
    close(fd);
    if (map == MAP_FAILED) {
        shm_unlink(fake_segment);
        return -1;
    }
    fake_base = map;
    fake_segment_owner = getpid();
    return 0;
}

/* cuMemAlloc over host shared memory. */
FAKE_API CUresult fakecuMemAlloc(CUdeviceptr *dptr, size_t size)
{
    CUresult res = CUDA_ERROR_OUT_OF_MEMORY;
    uint64_t rounded;
    int i;
    if (dptr == NULL || size == 0)
        return CUDA_ERROR_INVALID_VALUE;
    rounded = ((uint64_t)size + FAKE_ALIGN - 1) & ~(uint64_t)(FAKE_ALIGN - 1);
    pthread_mutex_lock(&fake_lock);
    if (fake_segment_create() != 0)
        goto out;
    if (rounded > FAKE_SEGMENT_SIZE - fake_used)
        goto out;
    for (i = 0; i < FAKE_MAX_ALLOCS; i++) {
        if (fake_allocs[i].size == 0) {
            fake_allocs[i].offset = fake_used;
            fake_allocs[i].size = size;
            fake_allocs[i].live = 1;
            fake_used += rounded;
            *dptr = (CUdeviceptr)(uintptr_t)(fake_base + fake_allocs[i].offset);
            res = CUDA_SUCCESS;
            break;
        }
    }
out:
    pthread_mutex_unlock(&fake_lock);
    return res;
}

/* cuMemFree: the space is not reused (the double is short-lived). */
FAKE_API CUresult fakecuMemFree(CUdeviceptr dptr)
{
    CUresult res = CUDA_ERROR_INVALID_VALUE;
    int i;
    pthread_mutex_lock(&fake_lock);
    for (i = 0; fake_base != NULL && i < FAKE_MAX_ALLOCS; i++) {
        if (fake_allocs[i].live &&
            dptr == (CUdeviceptr)(uintptr_t)(fake_base + fake_allocs[i].offset)) {
            fake_allocs[i].live = 0;
            res = CUDA_SUCCESS;
            break;
        }
    }
    pthread_mutex_unlock(&fake_lock);
    return res;
}

/* Live IPC opens in this process, counting reopens. */
FAKE_API int fakecuOpenCount(void)
{
    int i, n = 0;
    pthread_mutex_lock(&fake_lock);
    for (i = 0; i < FAKE_MAX_OPENS; i++)
        n += fake_opens[i].refcount;
    pthread_mutex_unlock(&fake_lock);
    return n;
}

/* Unmap and unlink this process's segment (allocations become invalid). */
FAKE_API void fakecuReset(void)
{
    pthread_mutex_lock(&fake_lock);
    if (fake_base != NULL && fake_segment_owner == getpid()) {
        munmap(fake_base, FAKE_SEGMENT_SIZE);
        shm_unlink(fake_segment);
    }
    fake_base = NULL;
    fake_used = 0;
    memset(fake_allocs, 0, sizeof fake_allocs);
    pthread_mutex_unlock(&fake_lock);
}

__attribute__((destructor)) static void fake_fini(void)
{
    if (fake_base != NULL && fake_segment_owner == getpid())
        shm_unlink(fake_segment);
}

/* ---- driver IPC entry points ---- */

static const fake_alloc *fake_find_alloc(CUdeviceptr p, int exact)
{
    int i;
    if (fake_base == NULL || fake_segment_owner != getpid())
        return NULL;
    for (i = 0; i < FAKE_MAX_ALLOCS; i++) {
        const fake_alloc *a = &fake_allocs[i];
        CUdeviceptr base = (CUdeviceptr)(uintptr_t)(fake_base + a->offset);
        if (!a->live)
            continue;
        if (exact ? p == base : (p >= base && p - base < a->size))
            return a;
    }
    return NULL;
}

FAKE_API CUresult cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize,
                                          CUdeviceptr dptr)
{
    CUresult res = fake_ready();
    const fake_alloc *a;
    int i;
    if (res != CUDA_SUCCESS)
        return res;
    pthread_mutex_lock(&fake_lock);
    res = CUDA_ERROR_NOT_FOUND;
    a = fake_find_alloc(dptr, 0);
    if (a != NULL) {
        if (pbase)
            *pbase = (CUdeviceptr)(uintptr_t)(fake_base + a->offset);
        if (psize)
            *psize = a->size;
        res = CUDA_SUCCESS;
    }
    for (i = 0; res != CUDA_SUCCESS && i < FAKE_MAX_OPENS; i++) {
        const fake_open *o = &fake_opens[i];
        CUdeviceptr base = (CUdeviceptr)(uintptr_t)(o->map + o->offset);
        if (o->refcount > 0 && dptr >= base && dptr - base < o->size) {
            if (pbase)
                *pbase = base;
            if (psize)
                *psize = o->size;
            res = CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&fake_lock);
    return res;
}

FAKE_API CUresult cuIpcGetMemHandle(CUipcMemHandle *handle, CUdeviceptr dptr)
{
    CUresult res = fake_ready();
    const fake_alloc *a;
    fake_handle h;
    if (res != CUDA_SUCCESS)
        return res;
    if (handle == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&fake_lock);
    a = fake_find_alloc(dptr, 1); /* the base of an allocation only */
    if (a == NULL) {
        res = CUDA_ERROR_INVALID_VALUE;
    } else {
        memset(&h, 0, sizeof h);
        memcpy(h.magic, FAKE_MAGIC, sizeof h.magic);
        h.pid = (int32_t)getpid();
        h.device = (int32_t)((int *)fake_current - fake_ctx_tokens);
        h.offset = a->offset;
        h.size = a->size;
        memcpy(h.name, fake_segment, sizeof h.name);
        memcpy(handle, &h, sizeof h);
    }
    pthread_mutex_unlock(&fake_lock);
    return res;
}

FAKE_API CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *pdptr, CUipcMemHandle handle,
                                        unsigned int flags)
{
    CUresult res = fake_ready();
    fake_handle h;
    struct stat st;
    fake_open *slot = NULL;
    void *map;
    int i, fd;
    if (res != CUDA_SUCCESS)
        return res;
    if (pdptr == NULL || flags != 0x1u /* CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS */)
        return CUDA_ERROR_INVALID_VALUE;
    memcpy(&h, &handle, sizeof h);
    if (memcmp(h.magic, FAKE_MAGIC, sizeof h.magic) != 0 ||
        memchr(h.name, '\0', sizeof h.name) == NULL ||
        strncmp(h.name, "/fakecuda-", 10) != 0 || h.size == 0)
        return CUDA_ERROR_INVALID_HANDLE;
    /* The real driver refuses to open a handle in the exporting process. */
    if (h.pid == (int32_t)getpid())
        return CUDA_ERROR_INVALID_CONTEXT;
    pthread_mutex_lock(&fake_lock);
    for (i = 0; i < FAKE_MAX_OPENS; i++) {
        fake_open *o = &fake_opens[i];
        if (o->refcount > 0 && o->offset == h.offset &&
            strcmp(o->name, h.name) == 0) {
            o->refcount++; /* reopen: same pointer, one more close owed */
            *pdptr = (CUdeviceptr)(uintptr_t)(o->map + o->offset);
            res = CUDA_SUCCESS;
            goto out;
        }
        if (slot == NULL && o->refcount == 0)
            slot = o;
    }
    res = CUDA_ERROR_OUT_OF_MEMORY;
    if (slot == NULL)
        goto out;
    res = CUDA_ERROR_INVALID_HANDLE;
    fd = shm_open(h.name, O_RDWR, 0);
    if (fd < 0)
        goto out;
    if (fstat(fd, &st) != 0 || st.st_size < 0 ||
        h.offset > (uint64_t)st.st_size ||
        h.size > (uint64_t)st.st_size - h.offset) {
        close(fd);
        goto out;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
               0);
    close(fd);
    if (map == MAP_FAILED) {
        res = CUDA_ERROR_MAP_FAILED;
        goto out;
    }
    memcpy(slot->name, h.name, sizeof slot->name);
    slot->offset = h.offset;
    slot->size = h.size;
    slot->map = map;
    slot->map_size = (uint64_t)st.st_size;
    slot->refcount = 1;
    *pdptr = (CUdeviceptr)(uintptr_t)(slot->map + slot->offset);
    res = CUDA_SUCCESS;
out:
    pthread_mutex_unlock(&fake_lock);
    return res;
}

FAKE_API CUresult cuIpcCloseMemHandle(CUdeviceptr dptr)
{
    CUresult res = fake_ready();
    int i;
    if (res != CUDA_SUCCESS)
        return res;
    res = CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&fake_lock);
    for (i = 0; i < FAKE_MAX_OPENS; i++) {
        fake_open *o = &fake_opens[i];
        if (o->refcount > 0 && dptr == (CUdeviceptr)(uintptr_t)(o->map + o->offset)) {
            if (--o->refcount == 0) {
                munmap(o->map, o->map_size);
                memset(o, 0, sizeof *o);
            }
            res = CUDA_SUCCESS;
            break;
        }
    }
    pthread_mutex_unlock(&fake_lock);
    return res;
}
