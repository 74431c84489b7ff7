/*
 * test_dlpack.c -- unit tests of sp_dlpack_export (layout, strides, refcounts,
 * refusals). Prints one line per test and "N passed, M failed".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "snakepit_core.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "sp_test.h"

/* A fresh region with one block of `nbytes` (refcount 1), attached by name. */
typedef struct fixture {
    sp_region region;
    uint64_t data_offset;
    uint64_t nbytes;
} fixture;

static sp_block_header *block_of(const fixture *f)
{
    sp_block_header *b = NULL;
    (void)sp_block_lookup(&f->region, f->data_offset, 0, &b);
    return b;
}

static int fixture_open(fixture *f, uint64_t nbytes)
{
    sp_region created;
    sp_block_header *b;
    memset(f, 0, sizeof *f);
    if (sp_region_create(SP_BLOCK_HEADER_SIZE + nbytes, 0, NULL, &created) !=
        SP_OK)
        return -1;
    /* Lay out one block by hand, as the arena would. */
    b = (sp_block_header *)(void *)(created.base + SP_REGION_HEADER_SIZE);
    b->capacity = nbytes;
    b->nbytes = nbytes;
    b->refcount = 1;
    b->magic = SP_BLOCK_MAGIC;
    f->data_offset = SP_REGION_HEADER_SIZE + SP_BLOCK_HEADER_SIZE;
    f->nbytes = nbytes;
    f->region = created;
    return 0;
}

static void fixture_close(fixture *f)
{
    char name[SP_NAME_MAX];
    memcpy(name, f->region.name, sizeof name);
    sp_region_detach(&f->region);
    sp_region_unlink(name);
}

static int64_t refcount(const fixture *f)
{
    sp_block_header *b = block_of(f);
    return b ? __atomic_load_n(&b->refcount, __ATOMIC_SEQ_CST) : -1;
}

/* ---- tests ---- */

static void test_layout_offsets(void)
{
    CHECK_EQ(sizeof(sp_dlpack_version), 8);
    CHECK_EQ(sizeof(sp_dl_device), 8);
    CHECK_EQ(sizeof(sp_dl_data_type), 4);
    CHECK_EQ(sizeof(sp_dl_tensor), 48);
    CHECK_EQ(offsetof(sp_dl_tensor, data), 0);
    CHECK_EQ(offsetof(sp_dl_tensor, device), 8);
    CHECK_EQ(offsetof(sp_dl_tensor, ndim), 16);
    CHECK_EQ(offsetof(sp_dl_tensor, dtype), 20);
    CHECK_EQ(offsetof(sp_dl_tensor, shape), 24);
    CHECK_EQ(offsetof(sp_dl_tensor, strides), 32);
    CHECK_EQ(offsetof(sp_dl_tensor, byte_offset), 40);
    CHECK_EQ(sizeof(sp_dl_managed_tensor), 64);
    CHECK_EQ(offsetof(sp_dl_managed_tensor, manager_ctx), 48);
    CHECK_EQ(offsetof(sp_dl_managed_tensor, deleter), 56);
    CHECK_EQ(sizeof(sp_dl_managed_tensor_versioned), 80);
    CHECK_EQ(offsetof(sp_dl_managed_tensor_versioned, version), 0);
    CHECK_EQ(offsetof(sp_dl_managed_tensor_versioned, manager_ctx), 8);
    CHECK_EQ(offsetof(sp_dl_managed_tensor_versioned, deleter), 16);
    CHECK_EQ(offsetof(sp_dl_managed_tensor_versioned, flags), 24);
    CHECK_EQ(offsetof(sp_dl_managed_tensor_versioned, dl_tensor), 32);
    CHECK_EQ(SP_DLPACK_FLAG_READ_ONLY, 1);
    CHECK_EQ(SP_DLPACK_FLAG_IS_COPIED, 2);
    CHECK_EQ(SP_DLPACK_FLAG_IS_SUBBYTE_TYPE_PADDED, 4);
}

static void test_versioned_export_and_delete(void)
{
    fixture f;
    void *out = NULL;
    sp_dl_managed_tensor_versioned *v;
    const int64_t shape[2] = {3, 4};
    float *data;
    int i;

    REQUIRE(fixture_open(&f, 12 * sizeof(float)) == 0);
    data = (float *)(void *)(f.region.base + f.data_offset);
    for (i = 0; i < 12; i++)
        data[i] = (float)i;
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 0, 2, shape,
                              NULL, SP_DL_FLOAT, 32,
                              SP_DLPACK_EXPORT_VERSIONED |
                                  SP_DLPACK_EXPORT_READ_ONLY,
                              &out),
             SP_OK);
    REQUIRE(out != NULL);
    v = (sp_dl_managed_tensor_versioned *)out;
    CHECK_EQ(v->version.major, 1);
    CHECK_EQ(v->version.minor, 1);
    CHECK_EQ(v->flags, SP_DLPACK_FLAG_READ_ONLY);
    CHECK_EQ(v->dl_tensor.device.device_type, SP_DL_CPU);
    CHECK_EQ(v->dl_tensor.device.device_id, 0);
    CHECK_EQ(v->dl_tensor.ndim, 2);
    CHECK_EQ(v->dl_tensor.dtype.code, SP_DL_FLOAT);
    CHECK_EQ(v->dl_tensor.dtype.bits, 32);
    CHECK_EQ(v->dl_tensor.dtype.lanes, 1);
    CHECK_EQ(v->dl_tensor.shape[0], 3);
    CHECK_EQ(v->dl_tensor.shape[1], 4);
    CHECK_EQ(v->dl_tensor.strides[0], 4);
    CHECK_EQ(v->dl_tensor.strides[1], 1);
    CHECK_EQ(v->dl_tensor.byte_offset, 0);
    CHECK_EQ(refcount(&f), 2);
    /* Its own mapping: same bytes at another address, still valid after the
     * caller's mapping is gone. */
    CHECK(v->dl_tensor.data != (void *)data);
    data[5] = 42.0f;
    CHECK(((float *)v->dl_tensor.data)[5] == 42.0f);
    {
        char name[SP_NAME_MAX];
        uint64_t off = f.data_offset;
        memcpy(name, f.region.name, sizeof name);
        sp_region_detach(&f.region);
        ((float *)v->dl_tensor.data)[0] = -1.0f;
        v->deleter(v);
        CHECK_EQ(sp_region_attach(name, 0, &f.region), SP_OK);
        f.data_offset = off;
        CHECK_EQ(refcount(&f), 1);
        CHECK(((float *)(void *)(f.region.base + off))[0] == -1.0f);
        /* Only the attach above maps the region now (creator detached). */
        CHECK_EQ(((sp_region_header *)(void *)f.region.base)->refcount, 1);
    }
    fixture_close(&f);
}

static void test_legacy_export_and_delete(void)
{
    fixture f;
    void *out = NULL;
    sp_dl_managed_tensor *l;
    const int64_t shape[1] = {16};

    REQUIRE(fixture_open(&f, 16) == 0);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 0, 1, shape,
                              NULL, SP_DL_BOOL, 8, 0, &out),
             SP_OK);
    REQUIRE(out != NULL);
    l = (sp_dl_managed_tensor *)out;
    CHECK_EQ(l->dl_tensor.dtype.code, SP_DL_BOOL);
    CHECK_EQ(l->dl_tensor.dtype.bits, 8);
    CHECK_EQ(l->dl_tensor.strides[0], 1);
    CHECK_EQ(refcount(&f), 2);
    l->deleter(l);
    CHECK_EQ(refcount(&f), 1);
    fixture_close(&f);
}

static void test_strides_converted(void)
{
    fixture f;
    void *out = NULL;
    sp_dl_managed_tensor_versioned *v;
    /* A transposed, stepped view of a 4x6 float64 array: a[::2, ::3].T */
    const int64_t shape[2] = {2, 2};
    const int64_t strides[2] = {24, 96};

    REQUIRE(fixture_open(&f, 24 * 8) == 0);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 0, 2, shape,
                              strides, SP_DL_FLOAT, 64,
                              SP_DLPACK_EXPORT_VERSIONED, &out),
             SP_OK);
    REQUIRE(out != NULL);
    v = (sp_dl_managed_tensor_versioned *)out;
    CHECK_EQ(v->dl_tensor.strides[0], 3);
    CHECK_EQ(v->dl_tensor.strides[1], 12);
    v->deleter(v);

    /* Negative strides: element [0] at byte_offset, the view reaches back. */
    {
        const int64_t s1[1] = {5};
        const int64_t st1[1] = {-8};
        CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 32, 1, s1,
                                  st1, SP_DL_INT, 64, 0, &out),
                 SP_OK);
        REQUIRE(out != NULL);
        CHECK_EQ(((sp_dl_managed_tensor *)out)->dl_tensor.strides[0], -1);
        {
            int64_t *src = (int64_t *)(void *)(f.region.base + f.data_offset);
            int64_t *view = ((sp_dl_managed_tensor *)out)->dl_tensor.data;
            int k;
            for (k = 0; k < 8; k++)
                src[k] = k;
            CHECK_EQ(view[0], 4);
            CHECK_EQ(view[-4], 0);
        }
        ((sp_dl_managed_tensor *)out)->deleter((sp_dl_managed_tensor *)out);
        /* One element further back is out of the block. */
        CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 24, 1,
                                  s1, st1, SP_DL_INT, 64, 0, &out),
                 SP_ERR_RANGE);
        CHECK(out == NULL);
    }
    /* A stride that is not a multiple of the item size is refused... */
    {
        const int64_t s2[1] = {3};
        const int64_t st2[1] = {6};
        CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 0, 1, s2,
                                  st2, SP_DL_FLOAT, 32, 0, &out),
                 SP_ERR_INVALID);
        CHECK(out == NULL);
    }
    /* ...unless its dimension has extent 1, where it does not matter. */
    {
        const int64_t s3[2] = {1, 3};
        const int64_t st3[2] = {7, 4};
        CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 0, 2, s3,
                                  st3, SP_DL_FLOAT, 32, 0, &out),
                 SP_OK);
        REQUIRE(out != NULL);
        ((sp_dl_managed_tensor *)out)->deleter((sp_dl_managed_tensor *)out);
    }
    CHECK_EQ(refcount(&f), 1);
    fixture_close(&f);
}

static void test_extent_checked(void)
{
    fixture f;
    void *out = (void *)&f;
    const int64_t fits[1] = {16};
    const int64_t too_big[1] = {17};
    const int64_t zero[2] = {0, 1000};
    const int64_t huge[2] = {INT64_MAX / 2, 3};
    const int64_t neg[1] = {-1};

    REQUIRE(fixture_open(&f, 64) == 0);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 0, 1, fits,
                              NULL, SP_DL_FLOAT, 32, 0, &out),
             SP_OK);
    REQUIRE(out != NULL);
    ((sp_dl_managed_tensor *)out)->deleter((sp_dl_managed_tensor *)out);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 0, 1,
                              too_big, NULL, SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_RANGE);
    CHECK(out == NULL);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 4, 1, fits,
                              NULL, SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_RANGE);
    /* nbytes beyond the block's capacity. */
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes + 1, 0, 1,
                              fits, NULL, SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_RANGE);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, f.nbytes + 1,
                              1, fits, NULL, SP_DL_UINT, 8, 0, &out),
             SP_ERR_RANGE);
    /* Empty views are fine anywhere in the block, whatever the other dims. */
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, f.nbytes, 2,
                              zero, NULL, SP_DL_FLOAT, 32, 0, &out),
             SP_OK);
    REQUIRE(out != NULL);
    ((sp_dl_managed_tensor *)out)->deleter((sp_dl_managed_tensor *)out);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 0, 2, huge,
                              NULL, SP_DL_FLOAT, 64, 0, &out),
             SP_ERR_OVERFLOW);
    /* The last byte's offset itself would wrap int64 past byte_offset. */
    {
        const int64_t two[1] = {2};
        const int64_t wide[1] = {INT64_MAX - 7};
        CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 16, 1,
                                  two, wide, SP_DL_UINT, 8, 0, &out),
                 SP_ERR_RANGE);
    }
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 0, 1, neg,
                              NULL, SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_INVALID);
    CHECK(out == NULL);
    CHECK_EQ(refcount(&f), 1);
    fixture_close(&f);
}

static void test_refusals(void)
{
    fixture f;
    void *out = NULL;
    const int64_t shape[1] = {4};
    sp_region closed;
    sp_block_header *b;

    REQUIRE(fixture_open(&f, 64) == 0);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, 1, shape, NULL,
                              SP_DL_FLOAT, 32, 0, NULL),
             SP_ERR_INVALID);
    CHECK_EQ(sp_dlpack_export(NULL, f.data_offset, 16, 0, 1, shape, NULL,
                              SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_INVALID);
    memset(&closed, 0, sizeof closed);
    closed.fd = -1;
    CHECK_EQ(sp_dlpack_export(&closed, f.data_offset, 16, 0, 1, shape, NULL,
                              SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_INVALID);
    /* ndim out of bounds, or shape missing. */
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, -1, shape, NULL,
                              SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_INVALID);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0,
                              SP_DLPACK_MAX_NDIM + 1, shape, NULL, SP_DL_FLOAT,
                              32, 0, &out),
             SP_ERR_INVALID);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, 1, NULL, NULL,
                              SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_INVALID);
    /* Bad dtypes: zero or sub-byte bits, opaque handles, wide bools, codes
     * past kDLBool. */
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, 1, shape, NULL,
                              SP_DL_FLOAT, 0, 0, &out),
             SP_ERR_INVALID);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, 1, shape, NULL,
                              SP_DL_INT, 4, 0, &out),
             SP_ERR_INVALID);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, 1, shape, NULL,
                              SP_DL_OPAQUE_HANDLE, 64, 0, &out),
             SP_ERR_INVALID);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, 1, shape, NULL,
                              SP_DL_BOOL, 16, 0, &out),
             SP_ERR_INVALID);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, 1, shape, NULL,
                              7, 8, 0, &out),
             SP_ERR_INVALID);
    /* Unknown flags; read-only cannot be said by the legacy struct. */
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, 1, shape, NULL,
                              SP_DL_FLOAT, 32, 0x80u, &out),
             SP_ERR_INVALID);
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, 1, shape, NULL,
                              SP_DL_FLOAT, 32, SP_DLPACK_EXPORT_READ_ONLY, &out),
             SP_ERR_INVALID);
    /* Not a block: misaligned offset, header area, past the end. */
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset + 8, 16, 0, 1, shape,
                              NULL, SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_RANGE);
    CHECK_EQ(sp_dlpack_export(&f.region, 0, 16, 0, 1, shape, NULL, SP_DL_FLOAT,
                              32, 0, &out),
             SP_ERR_RANGE);
    CHECK_EQ(sp_dlpack_export(&f.region, UINT64_MAX - 63, 16, 0, 1, shape,
                              NULL, SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_RANGE);
    CHECK(out == NULL);
    /* A block whose refcount already reached zero is not live. */
    b = block_of(&f);
    REQUIRE(b != NULL);
    b->refcount = 0;
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, 1, shape, NULL,
                              SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_REFCOUNT);
    CHECK(out == NULL);
    /* A block with a corrupt magic. */
    b->refcount = 1;
    b->magic = 0;
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, 16, 0, 1, shape, NULL,
                              SP_DL_FLOAT, 32, 0, &out),
             SP_ERR_MAGIC);
    CHECK(out == NULL);
    /* Nothing leaked into the region header's mapping count. */
    CHECK_EQ(((sp_region_header *)(void *)f.region.base)->refcount, 1);
    fixture_close(&f);
}

static void test_zero_dim(void)
{
    fixture f;
    void *out = NULL;
    sp_dl_managed_tensor_versioned *v;

    REQUIRE(fixture_open(&f, 8) == 0);
    *(double *)(void *)(f.region.base + f.data_offset) = 2.5;
    CHECK_EQ(sp_dlpack_export(&f.region, f.data_offset, f.nbytes, 0, 0, NULL,
                              NULL, SP_DL_FLOAT, 64, SP_DLPACK_EXPORT_VERSIONED,
                              &out),
             SP_OK);
    REQUIRE(out != NULL);
    v = (sp_dl_managed_tensor_versioned *)out;
    CHECK_EQ(v->dl_tensor.ndim, 0);
    CHECK(*(double *)v->dl_tensor.data == 2.5);
    v->deleter(v);
    CHECK_EQ(refcount(&f), 1);
    fixture_close(&f);
}

int main(void)
{
    RUN(test_layout_offsets);
    RUN(test_versioned_export_and_delete);
    RUN(test_legacy_export_and_delete);
    RUN(test_strides_converted);
    RUN(test_extent_checked);
    RUN(test_refusals);
    RUN(test_zero_dim);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
