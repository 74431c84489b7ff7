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
typedef unsigned long long sp_cu_deviceptr;

_Static_assert(sizeof(sp_cuda_ipc_handle) == SP_CUDA_IPC_HANDLE_SIZE,
               "CUipcMemHandle is 64 bytes");
_Static_assert(sizeof(sp_cu_deviceptr) == 8, "CUdeviceptr is 64-bit");

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

SP_API int sp_cuda_ipc_export(sp_cuda_driver *driver, int device_id,
                              uint64_t device_ptr, sp_cuda_ipc_handle *handle,
                              uint64_t *offset, uint64_t *alloc_size)
{
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
