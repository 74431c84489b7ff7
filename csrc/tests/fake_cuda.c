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
 * Devices. The double presents $FAKECUDA_DEVICES physical GPUs (default 2,
 * at most 8) whose UUIDs are 66616b65-0000-0000-0000-0000000000NN ("fake"
 * then the physical index NN). cuInit honours CUDA_VISIBLE_DEVICES as the
 * real driver does: a comma-separated list of physical indices or UUID
 * prefixes ("GPU-66616b65-...-01"), read up to the first entry that names no
 * device (or repeats one); an empty value hides every device. Ordinals are
 * positions in that list, so two processes with different masks number the
 * same GPU differently, and cuDeviceGetUuid(_v2) tells which one it is. With
 * no device visible cuInit fails with CUDA_ERROR_NO_DEVICE, as the driver does.
 * Allocations and handles remember their physical device; fakecuOpenDevice
 * says on which physical device an IPC open was made.
 *
 * Memory kinds. fakecuMemAllocKind allocates the kinds the legacy IPC cannot
 * share (a stream-ordered pool, VMM, managed); cuPointerGetAttribute answers
 * for them as the real driver does (MEMPOOL_HANDLE, IS_LEGACY_CUDA_IPC_CAPABLE,
 * IS_MANAGED, ...), and cuIpcGetMemHandle refuses them.
 *
 * Pending work. fakecuQueueFill queues a fill of device memory on a stream;
 * it lands only when that stream (cuStreamSynchronize) or the context
 * (cuCtxSynchronize) is synchronised, so a test can tell whether a producer
 * synchronised before handing a handle over.
 *
 * CUresult and attribute numbers are those of the public cuda.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FAKE_API __attribute__((visibility("default")))

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUstream;
typedef unsigned long long CUdeviceptr;
typedef struct CUipcMemHandle {
    char reserved[64];
} CUipcMemHandle;
typedef struct CUuuid {
    char bytes[16];
} CUuuid;

_Static_assert(sizeof(CUipcMemHandle) == 64, "CU_IPC_HANDLE_SIZE is 64");
_Static_assert(sizeof(CUuuid) == 16, "CUuuid is 16 bytes");

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_MAP_FAILED = 205,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_TOO_MANY_PEERS = 711
};

/* CUpointer_attribute values (cuda.h; cuda.bindings PointerAttribute). */
enum {
    CU_POINTER_ATTRIBUTE_MEMORY_TYPE = 2,
    CU_POINTER_ATTRIBUTE_IS_MANAGED = 8,
    CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL = 9,
    CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE = 10,
    CU_POINTER_ATTRIBUTE_RANGE_START_ADDR = 11,
    CU_POINTER_ATTRIBUTE_RANGE_SIZE = 12,
    CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE = 17
};
#define CU_MEMORYTYPE_DEVICE 2u

/* Kinds of allocation fakecuMemAllocKind makes. */
enum {
    FAKE_KIND_DEVICE = 0,   /* cuMemAlloc: legacy IPC works */
    FAKE_KIND_POOL = 1,     /* cudaMallocAsync / cuMemAllocFromPoolAsync */
    FAKE_KIND_VMM = 2,      /* cuMemCreate + cuMemMap */
    FAKE_KIND_MANAGED = 3   /* cuMemAllocManaged */
};

#define FAKE_MAX_PHYS 8
#define FAKE_DEFAULT_PHYS 2
#define FAKE_SEGMENT_SIZE (UINT64_C(16) << 20) /* sparse: pages on touch */
#define FAKE_ALIGN 256u
#define FAKE_MAX_ALLOCS 256
#define FAKE_MAX_OPENS 256
#define FAKE_MAX_PENDING 64
#define FAKE_NAME_LEN 32
#define FAKE_MAGIC "FAKECUIP"

/* Handle layout (the real one is opaque; this is the double's). */
typedef struct fake_handle {
    char magic[8];
    int32_t pid;
    int32_t device;   /* physical index */
    uint64_t offset;
    uint64_t size;
    char name[FAKE_NAME_LEN];
} fake_handle;
_Static_assert(sizeof(fake_handle) == sizeof(CUipcMemHandle), "handle fits");

typedef struct fake_alloc {
    uint64_t offset;
    uint64_t size;
    int live;
    int kind;
    int phys;
} fake_alloc;

typedef struct fake_open {
    char name[FAKE_NAME_LEN];
    uint64_t offset;
    uint64_t size;
    uint8_t *map;
    uint64_t map_size;
    int refcount;
    int phys;         /* device of the context it was opened in */
} fake_open;

typedef struct fake_pending {
    CUstream stream;
    uint8_t *dst;
    size_t n;
    int value;
    int used;
} fake_pending;

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static int fake_initialized;
static int fake_nphys = FAKE_DEFAULT_PHYS;
static int fake_nvisible;
static int fake_visible[FAKE_MAX_PHYS];   /* ordinal -> physical index */
static int fake_ctx_tokens[FAKE_MAX_PHYS]; /* by ordinal */
static int fake_ctx_refs[FAKE_MAX_PHYS];
static int fake_pool_token;
static int fake_no_legacy_attribute;
static int fake_max_opens = FAKE_MAX_OPENS;
static _Thread_local CUcontext fake_current;

static char fake_segment[FAKE_NAME_LEN];
static pid_t fake_segment_owner;
static uint8_t *fake_base;
static uint64_t fake_used;
static unsigned fake_generation;
static fake_alloc fake_allocs[FAKE_MAX_ALLOCS];
static fake_open fake_opens[FAKE_MAX_OPENS];
static fake_pending fake_queue[FAKE_MAX_PENDING];

/* ---- devices ---- */

static void fake_uuid_of(int phys, unsigned char out[16])
{
    memset(out, 0, 16);
    memcpy(out, "fake", 4);
    out[15] = (unsigned char)phys;
}

/* "GPU-66616b65-0000-0000-0000-0000000000NN", as nvidia-smi prints it. */
static void fake_uuid_text(int phys, char out[48])
{
    unsigned char u[16];
    int i, n;
    fake_uuid_of(phys, u);
    n = snprintf(out, 48, "GPU-");
    for (i = 0; i < 16; i++) {
        n += snprintf(out + n, (size_t)(48 - n), "%02x", u[i]);
        if (i == 3 || i == 5 || i == 7 || i == 9)
            out[n++] = '-';
    }
    out[n] = '\0';
}

/* The physical device one CUDA_VISIBLE_DEVICES entry names, or -1. */
static int fake_parse_entry(const char *entry, size_t len)
{
    char text[48];
    int phys, match = -1;
    if (len == 0)
        return -1;
    if (isdigit((unsigned char)entry[0])) {
        size_t i;
        phys = 0;
        for (i = 0; i < len; i++) {
            if (!isdigit((unsigned char)entry[i]) || phys > 1000)
                return -1;
            phys = phys * 10 + (entry[i] - '0');
        }
        return phys < fake_nphys ? phys : -1;
    }
    /* A UUID prefix names the device it uniquely starts. */
    for (phys = 0; phys < fake_nphys; phys++) {
        fake_uuid_text(phys, text);
        if (len <= strlen(text) && strncasecmp(text, entry, len) == 0) {
            if (match >= 0)
                return -1;
            match = phys;
        }
    }
    return match;
}

static void fake_read_devices(void)
{
    const char *count = getenv("FAKECUDA_DEVICES");
    const char *mask = getenv("CUDA_VISIBLE_DEVICES");
    int i;
    fake_nphys = FAKE_DEFAULT_PHYS;
    if (count != NULL && count[0] != '\0') {
        int n = atoi(count);
        if (n >= 0 && n <= FAKE_MAX_PHYS)
            fake_nphys = n;
    }
    fake_nvisible = 0;
    if (mask == NULL) {
        for (i = 0; i < fake_nphys; i++)
            fake_visible[fake_nvisible++] = i;
        return;
    }
    while (*mask != '\0' && fake_nvisible < FAKE_MAX_PHYS) {
        const char *end = strchr(mask, ',');
        size_t len = end ? (size_t)(end - mask) : strlen(mask);
        const char *start = mask;
        int phys, j;
        while (len > 0 && isspace((unsigned char)*start)) {
            start++;
            len--;
        }
        while (len > 0 && isspace((unsigned char)start[len - 1]))
            len--;
        phys = fake_parse_entry(start, len);
        if (phys < 0)
            break; /* the driver stops at the first invalid entry */
        for (j = 0; j < fake_nvisible; j++)
            if (fake_visible[j] == phys)
                phys = -1;
        if (phys < 0)
            break;
        fake_visible[fake_nvisible++] = phys;
        if (end == NULL)
            break;
        mask = end + 1;
    }
}

FAKE_API CUresult cuInit(unsigned int flags)
{
    if (flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&fake_lock);
    if (!fake_initialized)
        fake_read_devices();
    /* The real driver fails cuInit when it sees no device at all. */
    fake_initialized = fake_nvisible > 0;
    pthread_mutex_unlock(&fake_lock);
    return fake_initialized ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
}

FAKE_API CUresult cuDeviceGetCount(int *count)
{
    if (!fake_initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (count == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *count = fake_nvisible;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    if (!fake_initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (device == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (ordinal < 0 || ordinal >= fake_nvisible)
        return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
    if (!fake_initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (uuid == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (dev < 0 || dev >= fake_nvisible)
        return CUDA_ERROR_INVALID_DEVICE;
    fake_uuid_of(fake_visible[dev], (unsigned char *)uuid->bytes);
    return CUDA_SUCCESS;
}

/* The pre-11.4 entry point; the same answer (the double has no MIG). */
FAKE_API CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
    return cuDeviceGetUuid_v2(uuid, dev);
}

FAKE_API CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    if (!fake_initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (pctx == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (dev < 0 || dev >= fake_nvisible)
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
    if (dev < 0 || dev >= fake_nvisible)
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
                        ctx > (CUcontext)&fake_ctx_tokens[FAKE_MAX_PHYS - 1]))
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

/* Physical device of the current context (or of ordinal 0 without one). */
static int fake_current_phys(void)
{
    int ordinal = 0;
    if (fake_current != NULL)
        ordinal = (int)((int *)fake_current - fake_ctx_tokens);
    if (ordinal < 0 || ordinal >= fake_nvisible)
        return fake_nvisible > 0 ? fake_visible[0] : 0;
    return fake_visible[ordinal];
}

/* This process's ordinal of a physical device, or -1 if it cannot see it. */
static int fake_ordinal_of(int phys)
{
    int i;
    for (i = 0; i < fake_nvisible; i++)
        if (fake_visible[i] == phys)
            return i;
    return -1;
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
    case CUDA_ERROR_NO_DEVICE: *pstr = "CUDA_ERROR_NO_DEVICE"; break;
    case CUDA_ERROR_INVALID_DEVICE: *pstr = "CUDA_ERROR_INVALID_DEVICE"; break;
    case CUDA_ERROR_INVALID_CONTEXT: *pstr = "CUDA_ERROR_INVALID_CONTEXT"; break;
    case CUDA_ERROR_MAP_FAILED: *pstr = "CUDA_ERROR_MAP_FAILED"; break;
    case CUDA_ERROR_INVALID_HANDLE: *pstr = "CUDA_ERROR_INVALID_HANDLE"; break;
    case CUDA_ERROR_NOT_FOUND: *pstr = "CUDA_ERROR_NOT_FOUND"; break;
    case CUDA_ERROR_TOO_MANY_PEERS: *pstr = "CUDA_ERROR_TOO_MANY_PEERS"; break;
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
    case CUDA_ERROR_NO_DEVICE: *pstr = "no CUDA-capable device is detected"; break;
    case CUDA_ERROR_INVALID_DEVICE: *pstr = "invalid device ordinal"; break;
    case CUDA_ERROR_INVALID_CONTEXT: *pstr = "invalid device context"; break;
    case CUDA_ERROR_MAP_FAILED: *pstr = "mapping of buffer object failed"; break;
    case CUDA_ERROR_INVALID_HANDLE: *pstr = "invalid resource handle"; break;
    case CUDA_ERROR_NOT_FOUND: *pstr = "named symbol not found"; break;
    case CUDA_ERROR_TOO_MANY_PEERS: *pstr = "peer mapping resources exhausted"; break;
    default: *pstr = NULL; return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

/* ---- allocations ---- */

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

static CUresult fake_alloc_locked(CUdeviceptr *dptr, size_t size, int kind,
                                  int phys)
{
    uint64_t rounded;
    int i;
    rounded = ((uint64_t)size + FAKE_ALIGN - 1) & ~(uint64_t)(FAKE_ALIGN - 1);
    if (fake_segment_create() != 0)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (rounded > FAKE_SEGMENT_SIZE - fake_used)
        return CUDA_ERROR_OUT_OF_MEMORY;
    for (i = 0; i < FAKE_MAX_ALLOCS; i++) {
        if (fake_allocs[i].size == 0) {
            fake_allocs[i].offset = fake_used;
            fake_allocs[i].size = size;
            fake_allocs[i].live = 1;
            fake_allocs[i].kind = kind;
            fake_allocs[i].phys = phys;
            fake_used += rounded;
            *dptr = (CUdeviceptr)(uintptr_t)(fake_base + fake_allocs[i].offset);
            return CUDA_SUCCESS;
        }
    }
    return CUDA_ERROR_OUT_OF_MEMORY;
}

/* Test helper: an allocation of one kind (FAKE_KIND_*) on the device of the
 * current context (ordinal 0 without one). Needs no context. */
FAKE_API CUresult fakecuMemAllocKind(CUdeviceptr *dptr, size_t size, int kind)
{
    CUresult res;
    if (dptr == NULL || size == 0 || kind < FAKE_KIND_DEVICE ||
        kind > FAKE_KIND_MANAGED)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&fake_lock);
    res = fake_alloc_locked(dptr, size, kind, fake_current_phys());
    pthread_mutex_unlock(&fake_lock);
    return res;
}

/* Test helper: cuMemAlloc over host shared memory, with or without a context. */
FAKE_API CUresult fakecuMemAlloc(CUdeviceptr *dptr, size_t size)
{
    return fakecuMemAllocKind(dptr, size, FAKE_KIND_DEVICE);
}

/* Test helper: free any kind. The space is not reused (the double is
 * short-lived). */
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

/* cuda.h: #define cuMemAlloc cuMemAlloc_v2 */
FAKE_API CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t size)
{
    CUresult res = fake_ready();
    if (res != CUDA_SUCCESS)
        return res;
    return fakecuMemAllocKind(dptr, size, FAKE_KIND_DEVICE);
}

/* cuda.h: #define cuMemFree cuMemFree_v2 */
FAKE_API CUresult cuMemFree_v2(CUdeviceptr dptr)
{
    CUresult res = fake_ready();
    if (res != CUDA_SUCCESS)
        return res;
    return fakecuMemFree(dptr);
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

/* Test helper: the physical device whose context opened the IPC mapping
 * that contains dptr, or -1. */
FAKE_API int fakecuOpenDevice(CUdeviceptr dptr)
{
    int i, phys = -1;
    pthread_mutex_lock(&fake_lock);
    for (i = 0; i < FAKE_MAX_OPENS; i++) {
        const fake_open *o = &fake_opens[i];
        CUdeviceptr base = (CUdeviceptr)(uintptr_t)(o->map + o->offset);
        if (o->refcount > 0 && dptr >= base && dptr - base < o->size)
            phys = o->phys;
    }
    pthread_mutex_unlock(&fake_lock);
    return phys;
}

/* Test helper: how many distinct handles may be open at once (1..256);
 * further opens fail with CUDA_ERROR_TOO_MANY_PEERS. 0 restores 256. */
FAKE_API void fakecuSetMaxOpens(int n)
{
    pthread_mutex_lock(&fake_lock);
    fake_max_opens = (n <= 0 || n > FAKE_MAX_OPENS) ? FAKE_MAX_OPENS : n;
    pthread_mutex_unlock(&fake_lock);
}

/* Test helper: behave like a driver older than CUDA 11 that does not know
 * CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE (nonzero) or not (0). */
FAKE_API void fakecuSetLegacyAttributeMissing(int missing)
{
    fake_no_legacy_attribute = missing;
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
    memset(fake_queue, 0, sizeof fake_queue);
    fake_max_opens = FAKE_MAX_OPENS;
    fake_no_legacy_attribute = 0;
    pthread_mutex_unlock(&fake_lock);
}

__attribute__((destructor)) static void fake_fini(void)
{
    if (fake_base != NULL && fake_segment_owner == getpid())
        shm_unlink(fake_segment);
}

/* ---- lookups ---- */

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

static const fake_open *fake_find_open(CUdeviceptr p)
{
    int i;
    for (i = 0; i < FAKE_MAX_OPENS; i++) {
        const fake_open *o = &fake_opens[i];
        CUdeviceptr base = (CUdeviceptr)(uintptr_t)(o->map + o->offset);
        if (o->refcount > 0 && p >= base && p - base < o->size)
            return o;
    }
    return NULL;
}

/* [base, base + size) of the allocation or open mapping containing p. */
static int fake_range(CUdeviceptr p, CUdeviceptr *base, uint64_t *size)
{
    const fake_alloc *a = fake_find_alloc(p, 0);
    const fake_open *o;
    if (a != NULL) {
        *base = (CUdeviceptr)(uintptr_t)(fake_base + a->offset);
        *size = a->size;
        return 1;
    }
    o = fake_find_open(p);
    if (o != NULL) {
        *base = (CUdeviceptr)(uintptr_t)(o->map + o->offset);
        *size = o->size;
        return 1;
    }
    return 0;
}

FAKE_API CUresult cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize,
                                          CUdeviceptr dptr)
{
    CUresult res = fake_ready();
    CUdeviceptr base = 0;
    uint64_t size = 0;
    if (res != CUDA_SUCCESS)
        return res;
    pthread_mutex_lock(&fake_lock);
    res = CUDA_ERROR_NOT_FOUND;
    if (fake_range(dptr, &base, &size)) {
        if (pbase)
            *pbase = base;
        if (psize)
            *psize = (size_t)size;
        res = CUDA_SUCCESS;
    }
    pthread_mutex_unlock(&fake_lock);
    return res;
}

FAKE_API CUresult cuPointerGetAttribute(void *data, int attribute,
                                        CUdeviceptr ptr)
{
    CUresult res = fake_ready();
    const fake_alloc *a;
    const fake_open *o = NULL;
    int kind, phys;
    CUdeviceptr base = 0;
    uint64_t size = 0;
    if (res != CUDA_SUCCESS)
        return res;
    if (data == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&fake_lock);
    a = fake_find_alloc(ptr, 0);
    if (a == NULL)
        o = fake_find_open(ptr);
    if (a == NULL && o == NULL) {
        res = CUDA_ERROR_INVALID_VALUE; /* not a CUDA pointer */
        goto out;
    }
    kind = a ? a->kind : FAKE_KIND_DEVICE;
    phys = a ? a->phys : o->phys;
    (void)fake_range(ptr, &base, &size);
    switch (attribute) {
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
        *(unsigned int *)data = CU_MEMORYTYPE_DEVICE;
        break;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED:
        *(unsigned int *)data = kind == FAKE_KIND_MANAGED;
        break;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
        *(int *)data = fake_ordinal_of(phys);
        break;
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
        if (fake_no_legacy_attribute) {
            res = CUDA_ERROR_INVALID_VALUE;
            goto out;
        }
        *(int *)data = kind == FAKE_KIND_DEVICE;
        break;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
        *(CUdeviceptr *)data = base;
        break;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
        *(size_t *)data = (size_t)size;
        break;
    case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE:
        *(void **)data = kind == FAKE_KIND_POOL ? (void *)&fake_pool_token : NULL;
        break;
    default:
        res = CUDA_ERROR_INVALID_VALUE;
        goto out;
    }
    res = CUDA_SUCCESS;
out:
    pthread_mutex_unlock(&fake_lock);
    return res;
}

/* Both ranges must lie inside device memory this process can address. */
FAKE_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    CUresult res = fake_ready();
    CUdeviceptr dbase = 0, sbase = 0;
    uint64_t dsize = 0, ssize = 0;
    if (res != CUDA_SUCCESS)
        return res;
    pthread_mutex_lock(&fake_lock);
    res = CUDA_ERROR_INVALID_VALUE;
    if (n == 0) {
        res = CUDA_SUCCESS;
    } else if (fake_range(dst, &dbase, &dsize) && fake_range(src, &sbase, &ssize) &&
               n <= dsize - (dst - dbase) && n <= ssize - (src - sbase)) {
        memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
        res = CUDA_SUCCESS;
    }
    pthread_mutex_unlock(&fake_lock);
    return res;
}

/* ---- pending work and synchronisation ---- */

/* Test helper: queue "fill n bytes at dst with value" on stream; it lands
 * when the stream or the context is synchronised. */
FAKE_API CUresult fakecuQueueFill(CUstream stream, CUdeviceptr dst, int value,
                                  size_t n)
{
    CUresult res = CUDA_ERROR_OUT_OF_MEMORY;
    CUdeviceptr base = 0;
    uint64_t size = 0;
    int i;
    pthread_mutex_lock(&fake_lock);
    if (!fake_range(dst, &base, &size) || n > size - (dst - base)) {
        res = CUDA_ERROR_INVALID_VALUE;
        goto out;
    }
    for (i = 0; i < FAKE_MAX_PENDING; i++) {
        if (!fake_queue[i].used) {
            fake_queue[i].stream = stream;
            fake_queue[i].dst = (uint8_t *)(uintptr_t)dst;
            fake_queue[i].n = n;
            fake_queue[i].value = value;
            fake_queue[i].used = 1;
            res = CUDA_SUCCESS;
            break;
        }
    }
out:
    pthread_mutex_unlock(&fake_lock);
    return res;
}

/* Test helper: work queued and not yet landed. */
FAKE_API int fakecuPendingCount(void)
{
    int i, n = 0;
    pthread_mutex_lock(&fake_lock);
    for (i = 0; i < FAKE_MAX_PENDING; i++)
        n += fake_queue[i].used;
    pthread_mutex_unlock(&fake_lock);
    return n;
}

static void fake_drain(int all, CUstream stream)
{
    int i;
    pthread_mutex_lock(&fake_lock);
    for (i = 0; i < FAKE_MAX_PENDING; i++) {
        fake_pending *p = &fake_queue[i];
        if (p->used && (all || p->stream == stream)) {
            memset(p->dst, p->value, p->n);
            memset(p, 0, sizeof *p);
        }
    }
    pthread_mutex_unlock(&fake_lock);
}

FAKE_API CUresult cuCtxSynchronize(void)
{
    CUresult res = fake_ready();
    if (res != CUDA_SUCCESS)
        return res;
    fake_drain(1, NULL);
    return CUDA_SUCCESS;
}

FAKE_API CUresult cuStreamSynchronize(CUstream stream)
{
    CUresult res = fake_ready();
    if (res != CUDA_SUCCESS)
        return res;
    fake_drain(0, stream);
    return CUDA_SUCCESS;
}

/* ---- driver IPC entry points ---- */

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
    if (a == NULL || a->kind != FAKE_KIND_DEVICE) {
        res = CUDA_ERROR_INVALID_VALUE; /* legacy IPC covers cuMemAlloc only */
    } else {
        memset(&h, 0, sizeof h);
        memcpy(h.magic, FAKE_MAGIC, sizeof h.magic);
        h.pid = (int32_t)getpid();
        h.device = (int32_t)a->phys;
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
    int i, fd, phys, open_handles = 0;
    if (res != CUDA_SUCCESS)
        return res;
    if (pdptr == NULL || flags != 0x1u /* CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS */)
        return CUDA_ERROR_INVALID_VALUE;
    memcpy(&h, &handle, sizeof h);
    if (memcmp(h.magic, FAKE_MAGIC, sizeof h.magic) != 0 ||
        memchr(h.name, '\0', sizeof h.name) == NULL ||
        strncmp(h.name, "/fakecuda-", 10) != 0 || h.size == 0 ||
        h.device < 0 || h.device >= FAKE_MAX_PHYS)
        return CUDA_ERROR_INVALID_HANDLE;
    /* The real driver refuses to open a handle in the exporting process. */
    if (h.pid == (int32_t)getpid())
        return CUDA_ERROR_INVALID_CONTEXT;
    phys = fake_current_phys();
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
        if (o->refcount > 0)
            open_handles++;
        if (slot == NULL && o->refcount == 0)
            slot = o;
    }
    res = CUDA_ERROR_TOO_MANY_PEERS;
    if (slot == NULL || open_handles >= fake_max_opens)
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
    slot->phys = phys;
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
