/*
 * sp_cuda.c -- CUDA IPC memory handles through the driver API, which is
 * loaded at run time with dlopen. No CUDA header is included and nothing
 * links against CUDA: the few driver types used are declared here from their
 * documented layout (FACTS.md, "CUDA driver IPC").
 */
#include "sp_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Driver ABI (cuda.h): CUresult and CUdevice are ints, CUcontext is an opaque
 * pointer, CUdeviceptr is an unsigned 64-bit integer on 64-bit platforms. */
typedef int sp_cu_result;
typedef int sp_cu_device;
typedef void *sp_cu_context;
typedef void *sp_cu_stream;
typedef unsigned long long sp_cu_deviceptr;
/* CUuuid: struct { char bytes[16]; }. */
typedef struct sp_cu_uuid {
    char bytes[SP_CUDA_UUID_SIZE];
} sp_cu_uuid;

_Static_assert(sizeof(sp_cuda_ipc_handle) == SP_CUDA_IPC_HANDLE_SIZE,
               "CUipcMemHandle is 64 bytes");
_Static_assert(sizeof(sp_cu_deviceptr) == 8, "CUdeviceptr is 64-bit");
_Static_assert(sizeof(sp_cu_uuid) == 16, "CUuuid is 16 bytes");
_Static_assert(sizeof(sp_cu_stream) == sizeof(uint64_t), "CUstream is a pointer");

/* CUDA_ERROR_INVALID_VALUE: also what a driver answers for an attribute it
 * does not know. */
#define SP_CU_INVALID_VALUE 1

struct sp_cuda_driver {
    void *lib;
    pthread_mutex_t lock;
    sp_cu_result (*init)(unsigned int);
    sp_cu_result (*device_get)(sp_cu_device *, int);
    sp_cu_result (*primary_retain)(sp_cu_context *, sp_cu_device);
    sp_cu_result (*primary_release)(sp_cu_device);          /* optional */
    sp_cu_result (*ctx_get_current)(sp_cu_context *);
    sp_cu_result (*ctx_set_current)(sp_cu_context);
    sp_cu_result (*ipc_get)(sp_cuda_ipc_handle *, sp_cu_deviceptr);
    sp_cu_result (*ipc_open)(sp_cu_deviceptr *, sp_cuda_ipc_handle,
                             unsigned int);
    sp_cu_result (*ipc_close)(sp_cu_deviceptr);
    sp_cu_result (*address_range)(sp_cu_deviceptr *, size_t *,
                                  sp_cu_deviceptr);
    sp_cu_result (*device_count)(int *);
    sp_cu_result (*device_uuid)(sp_cu_uuid *, sp_cu_device);   /* optional */
    sp_cu_result (*pointer_attribute)(void *, int, sp_cu_deviceptr);
    sp_cu_result (*ctx_synchronize)(void);
    sp_cu_result (*stream_synchronize)(sp_cu_stream);
    sp_cu_result (*mem_alloc)(sp_cu_deviceptr *, size_t);
    sp_cu_result (*mem_free)(sp_cu_deviceptr);
    sp_cu_result (*memcpy_dtod)(sp_cu_deviceptr, sp_cu_deviceptr, size_t);
    const char *device_uuid_symbol;
    sp_cu_result (*error_name)(sp_cu_result, const char **);   /* optional */
    sp_cu_result (*error_string)(sp_cu_result, const char **); /* optional */
    sp_cu_context primary[SP_CUDA_MAX_DEVICES];
    sp_cu_device devices[SP_CUDA_MAX_DEVICES];
};

static _Thread_local int sp_cuda_tls_result;
static _Thread_local char sp_cuda_tls_message[512];

SP_API int sp_cuda_last_result(void)
{
    return sp_cuda_tls_result;
}

SP_API const char *sp_cuda_last_message(void)
{
    return sp_cuda_tls_message;
}

__attribute__((format(printf, 3, 4)))
static int sp_cuda_fail(int status, int result, const char *fmt, ...)
{
    va_list ap;
    sp_cuda_tls_result = result;
    va_start(ap, fmt);
    vsnprintf(sp_cuda_tls_message, sizeof sp_cuda_tls_message, fmt, ap);
    va_end(ap);
    return sp_fail(status, 0);
}

static void sp_cuda_clear(void)
{
    sp_cuda_tls_result = 0;
    sp_cuda_tls_message[0] = '\0';
}

/* A failing driver call: SP_ERR_CUDA, with the CUresult and its name. */
static int sp_cuda_call_failed(const sp_cuda_driver *d, const char *call,
                               sp_cu_result res)
{
    const char *name = NULL, *text = NULL;
    if (d->error_name == NULL || d->error_name(res, &name) != 0 || name == NULL)
        name = "CUDA_ERROR_?";
    if (d->error_string == NULL || d->error_string(res, &text) != 0 ||
        text == NULL)
        text = "no description";
    return sp_cuda_fail(SP_ERR_CUDA, res, "%s failed: %s (CUresult %d): %s",
                        call, name, res, text);
}

#define SP_RESOLVE(d, field, symbol, required)                              \
    do {                                                                    \
        void *sym_ = dlsym((d)->lib, (symbol));                             \
        if (sym_ == NULL && (required)) {                                   \
            missing = (symbol);                                             \
            goto fail;                                                      \
        }                                                                   \
        (d)->field = (__typeof__((d)->field))sym_;                          \
    } while (0)

SP_API int sp_cuda_load(const char *path, sp_cuda_driver **out)
{
    const char *missing = NULL;
    sp_cuda_driver *d;
    sp_cu_result res;
    sp_cuda_clear();
    if (out == NULL)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "sp_cuda_load: out is NULL");
    *out = NULL;
    if (path == NULL)
        path = SP_CUDA_DEFAULT_DRIVER;
    if (path[0] == '\0')
        return sp_cuda_fail(SP_ERR_INVALID, 0, "sp_cuda_load: empty path");
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return sp_cuda_fail(SP_ERR_NOMEM, 0, "sp_cuda_load: out of memory");
    if (pthread_mutex_init(&d->lock, NULL) != 0) {
        free(d);
        return sp_cuda_fail(SP_ERR_NOMEM, 0, "sp_cuda_load: mutex init");
    }
    dlerror();
    d->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (d->lib == NULL) {
        const char *why = dlerror();
        sp_cuda_fail(SP_ERR_NO_DRIVER, 0, "cannot load the CUDA driver %s: %s",
                     path, why ? why : "dlopen failed");
        pthread_mutex_destroy(&d->lock);
        free(d);
        return SP_ERR_NO_DRIVER;
    }
    SP_RESOLVE(d, init, "cuInit", 1);
    SP_RESOLVE(d, device_get, "cuDeviceGet", 1);
    SP_RESOLVE(d, primary_retain, "cuDevicePrimaryCtxRetain", 1);
    SP_RESOLVE(d, primary_release, "cuDevicePrimaryCtxRelease_v2", 0);
    SP_RESOLVE(d, ctx_get_current, "cuCtxGetCurrent", 1);
    SP_RESOLVE(d, ctx_set_current, "cuCtxSetCurrent", 1);
    SP_RESOLVE(d, ipc_get, "cuIpcGetMemHandle", 1);
    /* cuda.h: #define cuIpcOpenMemHandle cuIpcOpenMemHandle_v2 */
    SP_RESOLVE(d, ipc_open, "cuIpcOpenMemHandle_v2", 1);
    SP_RESOLVE(d, ipc_close, "cuIpcCloseMemHandle", 1);
    /* cuda.h: #define cuMemGetAddressRange cuMemGetAddressRange_v2 */
    SP_RESOLVE(d, address_range, "cuMemGetAddressRange_v2", 1);
    SP_RESOLVE(d, device_count, "cuDeviceGetCount", 1);
    /* cuda.h (>= 11.4): #define cuDeviceGetUuid cuDeviceGetUuid_v2 */
    SP_RESOLVE(d, device_uuid, "cuDeviceGetUuid_v2", 0);
    d->device_uuid_symbol = "cuDeviceGetUuid_v2";
    if (d->device_uuid == NULL) {
        SP_RESOLVE(d, device_uuid, "cuDeviceGetUuid", 0);
        d->device_uuid_symbol = "cuDeviceGetUuid";
    }
    SP_RESOLVE(d, pointer_attribute, "cuPointerGetAttribute", 1);
    SP_RESOLVE(d, ctx_synchronize, "cuCtxSynchronize", 1);
    SP_RESOLVE(d, stream_synchronize, "cuStreamSynchronize", 1);
    /* cuda.h: #define cuMemAlloc cuMemAlloc_v2, cuMemFree cuMemFree_v2,
     * cuMemcpyDtoD cuMemcpyDtoD_v2 */
    SP_RESOLVE(d, mem_alloc, "cuMemAlloc_v2", 1);
    SP_RESOLVE(d, mem_free, "cuMemFree_v2", 1);
    SP_RESOLVE(d, memcpy_dtod, "cuMemcpyDtoD_v2", 1);
    SP_RESOLVE(d, error_name, "cuGetErrorName", 0);
    SP_RESOLVE(d, error_string, "cuGetErrorString", 0);
    res = d->init(0);
    if (res != SP_CUDA_SUCCESS) {
        sp_cuda_call_failed(d, "cuInit", res);
        /* Keep the CUresult, but report the driver as unusable. */
        dlclose(d->lib);
        pthread_mutex_destroy(&d->lock);
        free(d);
        return sp_fail(SP_ERR_NO_DRIVER, 0);
    }
    *out = d;
    return SP_OK;
fail:
    sp_cuda_fail(SP_ERR_NO_DRIVER, 0,
                 "the CUDA driver %s lacks the entry point %s", path, missing);
    dlclose(d->lib);
    pthread_mutex_destroy(&d->lock);
    free(d);
    return SP_ERR_NO_DRIVER;
}

SP_API void sp_cuda_unload(sp_cuda_driver *driver)
{
    int i;
    if (driver == NULL)
        return;
    if (driver->primary_release != NULL) {
        for (i = 0; i < SP_CUDA_MAX_DEVICES; i++)
            if (driver->primary[i] != NULL)
                driver->primary_release(driver->devices[i]);
    }
    dlclose(driver->lib);
    pthread_mutex_destroy(&driver->lock);
    free(driver);
}

/* The primary context of device_id, retained once per driver. */
static int sp_cuda_primary(sp_cuda_driver *d, int device_id,
                           sp_cu_context *ctx)
{
    sp_cu_result res;
    int status = SP_OK;
    pthread_mutex_lock(&d->lock);
    if (d->primary[device_id] == NULL) {
        sp_cu_device dev = 0;
        sp_cu_context c = NULL;
        res = d->device_get(&dev, device_id);
        if (res != SP_CUDA_SUCCESS) {
            status = sp_cuda_call_failed(d, "cuDeviceGet", res);
            goto out;
        }
        res = d->primary_retain(&c, dev);
        if (res != SP_CUDA_SUCCESS) {
            status = sp_cuda_call_failed(d, "cuDevicePrimaryCtxRetain", res);
            goto out;
        }
        if (c == NULL) {
            status = sp_cuda_fail(SP_ERR_CUDA, 0,
                                  "cuDevicePrimaryCtxRetain returned no context");
            goto out;
        }
        d->devices[device_id] = dev;
        d->primary[device_id] = c;
    }
    *ctx = d->primary[device_id];
out:
    pthread_mutex_unlock(&d->lock);
    return status;
}

/* Make the right context current; saved and switched say what to restore. */
static int sp_cuda_enter(sp_cuda_driver *d, int device_id, int prefer_current,
                         sp_cu_context *saved, int *switched)
{
    sp_cu_context ctx = NULL;
    sp_cu_result res;
    int status;
    *saved = NULL;
    *switched = 0;
    res = d->ctx_get_current(saved);
    if (res != SP_CUDA_SUCCESS)
        return sp_cuda_call_failed(d, "cuCtxGetCurrent", res);
    if (prefer_current && *saved != NULL)
        return SP_OK;
    status = sp_cuda_primary(d, device_id, &ctx);
    if (status != SP_OK)
        return status;
    if (ctx != *saved) {
        res = d->ctx_set_current(ctx);
        if (res != SP_CUDA_SUCCESS)
            return sp_cuda_call_failed(d, "cuCtxSetCurrent", res);
        *switched = 1;
    }
    return SP_OK;
}

static void sp_cuda_leave(sp_cuda_driver *d, sp_cu_context saved, int switched)
{
    if (switched)
        (void)d->ctx_set_current(saved);
}

static int sp_cuda_check_device(const sp_cuda_driver *driver, int device_id,
                                const char *what)
{
    if (driver == NULL)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "%s: driver is NULL", what);
    if (device_id < 0 || device_id >= SP_CUDA_MAX_DEVICES)
        return sp_cuda_fail(SP_ERR_INVALID, 0,
                            "%s: device id %d outside [0, %d)", what,
                            device_id, SP_CUDA_MAX_DEVICES);
    return SP_OK;
}

static const char *sp_cuda_kind_text(int kind)
{
    switch (kind) {
    case SP_CUDA_MEMORY_DEVICE: return "device memory from cuMemAlloc";
    case SP_CUDA_MEMORY_POOL:
        return "stream-ordered pool memory (cudaMallocAsync / a CUDA memory pool)";
    case SP_CUDA_MEMORY_VMM:
        return "virtual-memory-management memory (cuMemCreate/cuMemMap), not "
               "legacy-IPC capable";
    case SP_CUDA_MEMORY_MANAGED: return "managed (unified) memory";
    case SP_CUDA_MEMORY_HOST: return "pinned host memory";
    default: return "memory of unknown kind";
    }
}

/* One attribute into a zeroed 8-byte slot: 1 known, 0 unknown to this
 * driver (CUDA_ERROR_INVALID_VALUE), or a failing status. */
static int sp_cuda_attribute(const sp_cuda_driver *d, int attribute,
                             sp_cu_deviceptr ptr, uint64_t *value, int *known)
{
    sp_cu_result res;
    *value = 0;
    *known = 0;
    res = d->pointer_attribute(value, attribute, ptr);
    if (res == SP_CUDA_SUCCESS) {
        *known = 1;
        return SP_OK;
    }
    if (res == SP_CU_INVALID_VALUE)
        return SP_OK;
    return sp_cuda_call_failed(d, "cuPointerGetAttribute", res);
}

/* The kind of memory at ptr; the caller has entered a context. */
static int sp_cuda_classify(const sp_cuda_driver *d, sp_cu_deviceptr ptr,
                            sp_cuda_pointer_info *info)
{
    uint64_t v = 0;
    sp_cu_deviceptr base = 0;
    size_t size = 0;
    int known = 0, status, any = 0;
    memset(info, 0, sizeof *info);
    info->device_ordinal = -1;
    info->legacy_ipc = -1;
    status = sp_cuda_attribute(d, SP_CUDA_POINTER_ATTRIBUTE_MEMORY_TYPE, ptr, &v,
                               &known);
    if (status != SP_OK)
        return status;
    any |= known;
    if (known && (uint32_t)v == SP_CUDA_MEMORYTYPE_HOST)
        info->kind = SP_CUDA_MEMORY_HOST;
    status = sp_cuda_attribute(d, SP_CUDA_POINTER_ATTRIBUTE_DEVICE_ORDINAL, ptr,
                               &v, &known);
    if (status != SP_OK)
        return status;
    any |= known;
    if (known)
        info->device_ordinal = (int32_t)(uint32_t)v;
    status = sp_cuda_attribute(d, SP_CUDA_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE,
                               ptr, &v, &known);
    if (status != SP_OK)
        return status;
    if (known)
        info->legacy_ipc = (uint32_t)v != 0;
    status = sp_cuda_attribute(d, SP_CUDA_POINTER_ATTRIBUTE_MEMPOOL_HANDLE, ptr,
                               &v, &known);
    if (status != SP_OK)
        return status;
    if (known && v != 0)
        info->kind = SP_CUDA_MEMORY_POOL;
    status = sp_cuda_attribute(d, SP_CUDA_POINTER_ATTRIBUTE_IS_MANAGED, ptr, &v,
                               &known);
    if (status != SP_OK)
        return status;
    if (known && (uint32_t)v != 0)
        info->kind = SP_CUDA_MEMORY_MANAGED;
    if (!any)
        /* MEMORY_TYPE and DEVICE_ORDINAL are known to every driver: the
         * pointer is no CUDA memory at all. */
        return sp_cuda_fail(SP_ERR_CUDA, SP_CU_INVALID_VALUE,
                            "cuPointerGetAttribute failed: pointer 0x%llx is not "
                            "CUDA memory (CUDA_ERROR_INVALID_VALUE)",
                            (unsigned long long)ptr);
    if (info->kind == SP_CUDA_MEMORY_UNKNOWN)
        info->kind = info->legacy_ipc == 0 ? SP_CUDA_MEMORY_VMM
                                           : SP_CUDA_MEMORY_DEVICE;
    if (d->address_range(&base, &size, ptr) == SP_CUDA_SUCCESS) {
        info->base = (uint64_t)base;
        info->size = (uint64_t)size;
    }
    return SP_OK;
}

SP_API int sp_cuda_ipc_export(sp_cuda_driver *driver, int device_id,
                              uint64_t device_ptr, sp_cuda_ipc_handle *handle,
                              uint64_t *offset, uint64_t *alloc_size)
{
    return sp_cuda_ipc_export_info(driver, device_id, device_ptr, handle, offset,
                                   alloc_size, NULL);
}

SP_API int sp_cuda_ipc_export_info(sp_cuda_driver *driver, int device_id,
                                   uint64_t device_ptr,
                                   sp_cuda_ipc_handle *handle, uint64_t *offset,
                                   uint64_t *alloc_size,
                                   sp_cuda_pointer_info *info_out)
{
    sp_cuda_pointer_info info;
    sp_cu_context saved;
    sp_cu_deviceptr base = 0;
    sp_cuda_ipc_handle h;
    size_t size = 0;
    sp_cu_result res;
    int switched, status;
    sp_cuda_clear();
    status = sp_cuda_check_device(driver, device_id, "export");
    if (status != SP_OK)
        return status;
    if (handle == NULL || offset == NULL || alloc_size == NULL)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "export: NULL output");
    if (device_ptr == 0)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "export: NULL device pointer");
    status = sp_cuda_enter(driver, device_id, 1, &saved, &switched);
    if (status != SP_OK)
        return status;
    /* Refuse what legacy IPC cannot share before asking for a handle: the
     * driver's answer for such memory is an error at best. */
    status = sp_cuda_classify(driver, (sp_cu_deviceptr)device_ptr, &info);
    if (status != SP_OK)
        goto out;
    if (info_out != NULL)
        *info_out = info;
    if (info.kind != SP_CUDA_MEMORY_DEVICE &&
        info.kind != SP_CUDA_MEMORY_UNKNOWN) {
        status = sp_cuda_fail(SP_ERR_UNSHAREABLE, 0,
                              "export: pointer 0x%llx is %s, which legacy CUDA "
                              "IPC (cuIpcGetMemHandle) cannot share",
                              (unsigned long long)device_ptr,
                              sp_cuda_kind_text(info.kind));
        goto out;
    }
    res = driver->address_range(&base, &size, (sp_cu_deviceptr)device_ptr);
    if (res != SP_CUDA_SUCCESS) {
        status = sp_cuda_call_failed(driver, "cuMemGetAddressRange_v2", res);
        goto out;
    }
    if (size == 0 || base > device_ptr || device_ptr - base >= size) {
        status = sp_cuda_fail(SP_ERR_RANGE, 0,
                              "export: pointer 0x%llx outside the allocation "
                              "[0x%llx, +%zu) reported by the driver",
                              (unsigned long long)device_ptr, base, size);
        goto out;
    }
    memset(&h, 0, sizeof h);
    res = driver->ipc_get(&h, base);
    if (res != SP_CUDA_SUCCESS) {
        status = sp_cuda_call_failed(driver, "cuIpcGetMemHandle", res);
        goto out;
    }
    memcpy(handle, &h, sizeof h);
    *offset = device_ptr - base;
    *alloc_size = (uint64_t)size;
out:
    sp_cuda_leave(driver, saved, switched);
    return status;
}

SP_API int sp_cuda_ipc_open(sp_cuda_driver *driver, int device_id,
                            const sp_cuda_ipc_handle *handle,
                            uint64_t *base_ptr, uint64_t *alloc_size)
{
    sp_cu_context saved;
    sp_cu_deviceptr ptr = 0, base = 0;
    size_t size = 0;
    sp_cu_result res;
    int switched, status;
    sp_cuda_clear();
    status = sp_cuda_check_device(driver, device_id, "open");
    if (status != SP_OK)
        return status;
    if (handle == NULL || base_ptr == NULL)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "open: NULL argument");
    status = sp_cuda_enter(driver, device_id, 0, &saved, &switched);
    if (status != SP_OK)
        return status;
    res = driver->ipc_open(&ptr, *handle, SP_CUDA_IPC_LAZY_ENABLE_PEER_ACCESS);
    if (res != SP_CUDA_SUCCESS) {
        status = sp_cuda_call_failed(driver, "cuIpcOpenMemHandle_v2", res);
        goto out;
    }
    if (ptr == 0) {
        status = sp_cuda_fail(SP_ERR_CUDA, 0,
                              "cuIpcOpenMemHandle_v2 returned a NULL pointer");
        goto out;
    }
    *base_ptr = (uint64_t)ptr;
    if (alloc_size != NULL) {
        *alloc_size = 0;
        if (driver->address_range(&base, &size, ptr) == SP_CUDA_SUCCESS &&
            base == ptr)
            *alloc_size = (uint64_t)size;
    }
out:
    sp_cuda_leave(driver, saved, switched);
    return status;
}

SP_API int sp_cuda_ipc_close(sp_cuda_driver *driver, int device_id,
                             uint64_t base_ptr)
{
    sp_cu_context saved;
    sp_cu_result res;
    int switched, status;
    sp_cuda_clear();
    status = sp_cuda_check_device(driver, device_id, "close");
    if (status != SP_OK)
        return status;
    if (base_ptr == 0)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "close: NULL pointer");
    status = sp_cuda_enter(driver, device_id, 0, &saved, &switched);
    if (status != SP_OK)
        return status;
    res = driver->ipc_close((sp_cu_deviceptr)base_ptr);
    if (res != SP_CUDA_SUCCESS)
        status = sp_cuda_call_failed(driver, "cuIpcCloseMemHandle", res);
    sp_cuda_leave(driver, saved, switched);
    return status;
}

SP_API int sp_cuda_pointer_info_get(sp_cuda_driver *driver, int device_id,
                                    uint64_t ptr, sp_cuda_pointer_info *out)
{
    sp_cu_context saved;
    int switched, status;
    sp_cuda_clear();
    status = sp_cuda_check_device(driver, device_id, "pointer info");
    if (status != SP_OK)
        return status;
    if (out == NULL || ptr == 0)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "pointer info: NULL argument");
    status = sp_cuda_enter(driver, device_id, 1, &saved, &switched);
    if (status != SP_OK)
        return status;
    status = sp_cuda_classify(driver, (sp_cu_deviceptr)ptr, out);
    sp_cuda_leave(driver, saved, switched);
    return status;
}

SP_API int sp_cuda_device_count(sp_cuda_driver *driver, int *count)
{
    sp_cu_result res;
    sp_cuda_clear();
    if (driver == NULL || count == NULL)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "device count: NULL argument");
    *count = 0;
    res = driver->device_count(count);
    if (res != SP_CUDA_SUCCESS)
        return sp_cuda_call_failed(driver, "cuDeviceGetCount", res);
    if (*count < 0)
        *count = 0;
    return SP_OK;
}

SP_API int sp_cuda_device_uuid(sp_cuda_driver *driver, int device_id,
                               uint8_t uuid[SP_CUDA_UUID_SIZE])
{
    sp_cu_device dev = 0;
    sp_cu_uuid u;
    sp_cu_result res;
    int status;
    sp_cuda_clear();
    status = sp_cuda_check_device(driver, device_id, "device uuid");
    if (status != SP_OK)
        return status;
    if (uuid == NULL)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "device uuid: NULL output");
    if (driver->device_uuid == NULL)
        return sp_cuda_fail(SP_ERR_NO_DRIVER, 0,
                            "the CUDA driver lacks cuDeviceGetUuid_v2 and "
                            "cuDeviceGetUuid (older than CUDA 9.2)");
    res = driver->device_get(&dev, device_id);
    if (res != SP_CUDA_SUCCESS)
        return sp_cuda_call_failed(driver, "cuDeviceGet", res);
    memset(&u, 0, sizeof u);
    res = driver->device_uuid(&u, dev);
    if (res != SP_CUDA_SUCCESS)
        return sp_cuda_call_failed(driver, driver->device_uuid_symbol, res);
    memcpy(uuid, u.bytes, SP_CUDA_UUID_SIZE);
    return SP_OK;
}

SP_API int sp_cuda_synchronize(sp_cuda_driver *driver, int device_id,
                               const uint64_t *stream)
{
    sp_cu_context saved;
    sp_cu_result res;
    int switched, status;
    sp_cuda_clear();
    status = sp_cuda_check_device(driver, device_id, "synchronize");
    if (status != SP_OK)
        return status;
    status = sp_cuda_enter(driver, device_id, 0, &saved, &switched);
    if (status != SP_OK)
        return status;
    if (stream == NULL) {
        res = driver->ctx_synchronize();
        if (res != SP_CUDA_SUCCESS)
            status = sp_cuda_call_failed(driver, "cuCtxSynchronize", res);
    } else {
        res = driver->stream_synchronize((sp_cu_stream)(uintptr_t)*stream);
        if (res != SP_CUDA_SUCCESS)
            status = sp_cuda_call_failed(driver, "cuStreamSynchronize", res);
    }
    sp_cuda_leave(driver, saved, switched);
    return status;
}

SP_API int sp_cuda_mem_alloc(sp_cuda_driver *driver, int device_id,
                             uint64_t nbytes, uint64_t *ptr)
{
    sp_cu_context saved;
    sp_cu_deviceptr p = 0;
    sp_cu_result res;
    int switched, status;
    sp_cuda_clear();
    status = sp_cuda_check_device(driver, device_id, "alloc");
    if (status != SP_OK)
        return status;
    if (ptr == NULL || nbytes == 0 || nbytes > (uint64_t)SIZE_MAX)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "alloc: bad size or NULL output");
    *ptr = 0;
    status = sp_cuda_enter(driver, device_id, 0, &saved, &switched);
    if (status != SP_OK)
        return status;
    res = driver->mem_alloc(&p, (size_t)nbytes);
    if (res != SP_CUDA_SUCCESS)
        status = sp_cuda_call_failed(driver, "cuMemAlloc_v2", res);
    else
        *ptr = (uint64_t)p;
    sp_cuda_leave(driver, saved, switched);
    return status;
}

SP_API int sp_cuda_mem_free(sp_cuda_driver *driver, int device_id, uint64_t ptr)
{
    sp_cu_context saved;
    sp_cu_result res;
    int switched, status;
    sp_cuda_clear();
    status = sp_cuda_check_device(driver, device_id, "free");
    if (status != SP_OK)
        return status;
    if (ptr == 0)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "free: NULL pointer");
    status = sp_cuda_enter(driver, device_id, 0, &saved, &switched);
    if (status != SP_OK)
        return status;
    res = driver->mem_free((sp_cu_deviceptr)ptr);
    if (res != SP_CUDA_SUCCESS)
        status = sp_cuda_call_failed(driver, "cuMemFree_v2", res);
    sp_cuda_leave(driver, saved, switched);
    return status;
}

SP_API int sp_cuda_memcpy(sp_cuda_driver *driver, int device_id, uint64_t dst,
                          uint64_t src, uint64_t nbytes)
{
    sp_cu_context saved;
    sp_cu_result res;
    int switched, status;
    sp_cuda_clear();
    status = sp_cuda_check_device(driver, device_id, "copy");
    if (status != SP_OK)
        return status;
    if (nbytes == 0)
        return SP_OK;
    if (dst == 0 || src == 0 || nbytes > (uint64_t)SIZE_MAX ||
        dst + nbytes < dst || src + nbytes < src)
        return sp_cuda_fail(SP_ERR_INVALID, 0, "copy: NULL or wrapping range");
    status = sp_cuda_enter(driver, device_id, 0, &saved, &switched);
    if (status != SP_OK)
        return status;
    res = driver->memcpy_dtod((sp_cu_deviceptr)dst, (sp_cu_deviceptr)src,
                              (size_t)nbytes);
    if (res != SP_CUDA_SUCCESS)
        status = sp_cuda_call_failed(driver, "cuMemcpyDtoD_v2", res);
    sp_cuda_leave(driver, saved, switched);
    return status;
}
