/*
 * sp_dlpack.c -- views of shared-memory blocks as DLPack tensors.
 *
 * One heap allocation per exported tensor holds the managed struct (legacy or
 * versioned), a private mapping of the region, and the shape and strides
 * arrays. The tensor owns one reference on its block; the deleter drops it,
 * unmaps and frees. Nothing here touches Python.
 */
#include "sp_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- ABI pins (LP64), from the layout of dmlc/dlpack v1.1 ---- */
_Static_assert(sizeof(void *) == 8, "LP64 only");
_Static_assert(sizeof(sp_dlpack_version) == 8, "DLPackVersion is 8 bytes");
_Static_assert(offsetof(sp_dlpack_version, major) == 0, "major @0");
_Static_assert(offsetof(sp_dlpack_version, minor) == 4, "minor @4");
_Static_assert(sizeof(sp_dl_device) == 8, "DLDevice is 8 bytes");
_Static_assert(offsetof(sp_dl_device, device_type) == 0, "device_type @0");
_Static_assert(offsetof(sp_dl_device, device_id) == 4, "device_id @4");
_Static_assert(sizeof(sp_dl_data_type) == 4, "DLDataType is 4 bytes");
_Static_assert(offsetof(sp_dl_data_type, code) == 0, "code @0");
_Static_assert(offsetof(sp_dl_data_type, bits) == 1, "bits @1");
_Static_assert(offsetof(sp_dl_data_type, lanes) == 2, "lanes @2");
_Static_assert(sizeof(sp_dl_tensor) == 48, "DLTensor is 48 bytes");
_Static_assert(offsetof(sp_dl_tensor, data) == 0, "data @0");
_Static_assert(offsetof(sp_dl_tensor, device) == 8, "device @8");
_Static_assert(offsetof(sp_dl_tensor, ndim) == 16, "ndim @16");
_Static_assert(offsetof(sp_dl_tensor, dtype) == 20, "dtype @20");
_Static_assert(offsetof(sp_dl_tensor, shape) == 24, "shape @24");
_Static_assert(offsetof(sp_dl_tensor, strides) == 32, "strides @32");
_Static_assert(offsetof(sp_dl_tensor, byte_offset) == 40, "byte_offset @40");
_Static_assert(sizeof(sp_dl_managed_tensor) == 64, "DLManagedTensor is 64 bytes");
_Static_assert(offsetof(sp_dl_managed_tensor, dl_tensor) == 0, "dl_tensor @0");
_Static_assert(offsetof(sp_dl_managed_tensor, manager_ctx) == 48, "ctx @48");
_Static_assert(offsetof(sp_dl_managed_tensor, deleter) == 56, "deleter @56");
_Static_assert(sizeof(sp_dl_managed_tensor_versioned) == 80,
               "DLManagedTensorVersioned is 80 bytes");
_Static_assert(offsetof(sp_dl_managed_tensor_versioned, version) == 0,
               "version @0");
_Static_assert(offsetof(sp_dl_managed_tensor_versioned, manager_ctx) == 8,
               "ctx @8");
_Static_assert(offsetof(sp_dl_managed_tensor_versioned, deleter) == 16,
               "deleter @16");
_Static_assert(offsetof(sp_dl_managed_tensor_versioned, flags) == 24,
               "flags @24");
_Static_assert(offsetof(sp_dl_managed_tensor_versioned, dl_tensor) == 32,
               "dl_tensor @32");

/* Everything one exported tensor owns, in a single allocation. */
typedef struct sp_dlpack_ctx {
    union {
        sp_dl_managed_tensor legacy;
        sp_dl_managed_tensor_versioned versioned;
    } m;
    sp_region region;      /* private mapping (fd -1), unmapped by the deleter */
    uint64_t data_offset;  /* the block whose reference we hold */
    int64_t dims[];        /* shape[ndim] then strides[ndim] */
} sp_dlpack_ctx;

static void sp_dlpack_ctx_free(sp_dlpack_ctx *ctx)
{
    (void)sp_block_ref(&ctx->region, ctx->data_offset, -1, NULL);
    (void)sp_region_detach(&ctx->region);
    free(ctx);
}

static void sp_dlpack_delete_legacy(sp_dl_managed_tensor *self)
{
    if (self != NULL && self->manager_ctx != NULL)
        sp_dlpack_ctx_free((sp_dlpack_ctx *)self->manager_ctx);
}

static void sp_dlpack_delete_versioned(sp_dl_managed_tensor_versioned *self)
{
    if (self != NULL && self->manager_ctx != NULL)
        sp_dlpack_ctx_free((sp_dlpack_ctx *)self->manager_ctx);
}

/* Convert strides and find the bytes [low, high) the view touches, relative
 * to element [0, ..., 0]. Returns an sp_status. */
static int sp_dlpack_layout(int32_t ndim, const int64_t *shape,
                            const int64_t *byte_strides, int64_t itemsize,
                            int64_t *out_shape, int64_t *out_strides,
                            int64_t *low, int64_t *high, int *empty)
{
    int64_t lo = 0, hi = 0, contiguous = itemsize, span;
    int32_t i;

    *empty = 0;
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return SP_ERR_INVALID;
        if (shape[i] == 0)
            *empty = 1;
    }
    for (i = ndim - 1; i >= 0; i--) {
        int64_t stride;
        if (byte_strides != NULL) {
            stride = byte_strides[i];
        } else {
            stride = contiguous;
            if (shape[i] > 0 &&
                __builtin_mul_overflow(contiguous, shape[i], &contiguous))
                return SP_ERR_OVERFLOW;
        }
        out_shape[i] = shape[i];
        if (stride % itemsize != 0 && shape[i] > 1)
            return SP_ERR_INVALID;
        out_strides[i] = stride / itemsize;
        if (*empty || shape[i] <= 1)
            continue;
        if (__builtin_mul_overflow(shape[i] - 1, stride, &span))
            return SP_ERR_OVERFLOW;
        if (span < 0) {
            if (__builtin_add_overflow(lo, span, &lo))
                return SP_ERR_OVERFLOW;
        } else if (__builtin_add_overflow(hi, span, &hi)) {
            return SP_ERR_OVERFLOW;
        }
    }
    if (*empty) {
        lo = hi = 0;
    } else if (__builtin_add_overflow(hi, itemsize, &hi)) {
        return SP_ERR_OVERFLOW;
    }
    *low = lo;
    *high = hi;
    return SP_OK;
}

SP_API int sp_dlpack_export(const sp_region *region, uint64_t data_offset,
                            uint64_t nbytes, uint64_t byte_offset, int32_t ndim,
                            const int64_t *shape, const int64_t *byte_strides,
                            uint8_t code, uint8_t bits, unsigned flags,
                            void **out)
{
    sp_dlpack_ctx *ctx;
    sp_dl_tensor *t;
    sp_region_header *h;
    int64_t itemsize, low, high, start;
    int empty, rc, versioned;
    size_t alloc;
    void *base;

    if (out == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    *out = NULL;
    if (region == NULL || region->base == NULL || region->fd < 0 ||
        region->size < SP_REGION_HEADER_SIZE)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if ((flags & ~(SP_DLPACK_EXPORT_VERSIONED | SP_DLPACK_EXPORT_READ_ONLY)) != 0)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    versioned = (flags & SP_DLPACK_EXPORT_VERSIONED) != 0;
    /* The legacy struct cannot say "read-only": refuse rather than lie. */
    if (!versioned && (flags & SP_DLPACK_EXPORT_READ_ONLY))
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (ndim < 0 || ndim > SP_DLPACK_MAX_NDIM || (ndim > 0 && shape == NULL))
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (bits == 0 || bits % 8 != 0 || code > SP_DL_BOOL ||
        code == SP_DL_OPAQUE_HANDLE || (code == SP_DL_BOOL && bits != 8))
        return sp_fail(SP_ERR_INVALID, EINVAL);
    itemsize = bits / 8;

    /* The block must be live and cover nbytes; the span must be in range. */
    rc = sp_block_lookup(region, data_offset, nbytes, NULL);
    if (rc != SP_OK)
        return rc;
    rc = sp_region_check_span(region, data_offset, nbytes);
    if (rc != SP_OK)
        return rc;
    if (byte_offset > nbytes)
        return sp_fail(SP_ERR_RANGE, ERANGE);

    alloc = sizeof(sp_dlpack_ctx) + 2 * (size_t)ndim * sizeof(int64_t);
    ctx = (sp_dlpack_ctx *)calloc(1, alloc);
    if (ctx == NULL)
        return sp_fail(SP_ERR_NOMEM, ENOMEM);
    rc = sp_dlpack_layout(ndim, shape, byte_strides, itemsize, ctx->dims,
                          ctx->dims + ndim, &low, &high, &empty);
    if (rc != SP_OK) {
        free(ctx);
        return sp_fail(rc, rc == SP_ERR_OVERFLOW ? EOVERFLOW : EINVAL);
    }
    /* byte_offset <= nbytes <= region size < 2**46: start fits, and
     * start + low (low <= 0) cannot wrap; start + high may. */
    start = (int64_t)byte_offset;
    if (start + low < 0 || __builtin_add_overflow(start, high, &high) ||
        high > (int64_t)nbytes) {
        free(ctx);
        return sp_fail(SP_ERR_RANGE, ERANGE);
    }

    /* Our own mapping, so the tensor outlives the caller's. */
    base = mmap(NULL, (size_t)region->size, PROT_READ | PROT_WRITE, MAP_SHARED,
                region->fd, 0);
    if (base == MAP_FAILED) {
        int e = errno;
        free(ctx);
        return sp_fail(sp_status_from_errno(e), e);
    }
    memcpy(ctx->region.name, region->name, sizeof ctx->region.name);
    ctx->region.name[SP_NAME_MAX - 1] = '\0';
    ctx->region.base = (uint8_t *)base;
    ctx->region.size = region->size;
    ctx->region.fd = -1;
    ctx->region.owner = 0;
    ctx->data_offset = data_offset;
    h = (sp_region_header *)base;
    __atomic_add_fetch(&h->refcount, 1, __ATOMIC_SEQ_CST);

    rc = sp_block_ref(&ctx->region, data_offset, +1, NULL);
    if (rc != SP_OK) {
        int e = sp_last_errno();
        (void)sp_region_detach(&ctx->region);
        free(ctx);
        return sp_fail(rc, e);
    }

    if (versioned) {
        sp_dl_managed_tensor_versioned *v = &ctx->m.versioned;
        v->version.major = SP_DLPACK_MAJOR_VERSION;
        v->version.minor = SP_DLPACK_MINOR_VERSION;
        v->manager_ctx = ctx;
        v->deleter = sp_dlpack_delete_versioned;
        v->flags = (flags & SP_DLPACK_EXPORT_READ_ONLY) ? SP_DLPACK_FLAG_READ_ONLY
                                                        : 0;
        t = &v->dl_tensor;
    } else {
        sp_dl_managed_tensor *l = &ctx->m.legacy;
        l->manager_ctx = ctx;
        l->deleter = sp_dlpack_delete_legacy;
        t = &l->dl_tensor;
    }
    t->data = ctx->region.base + data_offset + byte_offset;
    t->device.device_type = SP_DL_CPU;
    t->device.device_id = 0;
    t->ndim = ndim;
    t->dtype.code = code;
    t->dtype.bits = bits;
    t->dtype.lanes = 1;
    t->shape = ctx->dims;
    t->strides = ctx->dims + ndim;
    t->byte_offset = 0;
    *out = versioned ? (void *)&ctx->m.versioned : (void *)&ctx->m.legacy;
    return SP_OK;
}
