/*
 * sp_region.c -- named shared-memory regions, blocks inside them, and the
 * shm filesystem space query.
 */
#include "sp_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define SP_CREATE_NAME_TRIES 8

static sp_region_header *sp_hdr(const sp_region *r)
{
    return (sp_region_header *)(void *)r->base;
}

SP_API int sp_shm_space(const char *shm_dir, uint64_t *total,
                        uint64_t *available)
{
    struct statvfs st;
    uint64_t t, a;
    if (statvfs(shm_dir ? shm_dir : SP_DEFAULT_SHM_DIR, &st) != 0) {
        int e = errno;
        return sp_fail(sp_status_from_errno(e), e);
    }
    if (sp_mul_overflow((uint64_t)st.f_blocks, (uint64_t)st.f_frsize, &t))
        t = UINT64_MAX;
    if (sp_mul_overflow((uint64_t)st.f_bavail, (uint64_t)st.f_frsize, &a))
        a = UINT64_MAX;
    if (total)
        *total = t;
    if (available)
        *available = a;
    return SP_OK;
}

static void sp_region_clear(sp_region *r)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

SP_API int sp_region_create(uint64_t data_size, unsigned flags,
                            const char *shm_dir, sp_region *out)
{
    char name[SP_NAME_MAX];
    uint64_t total, avail;
    int rc, fd = -1, tries, err, mflags;
    void *base;
    sp_region_header *h;

    if (out == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    sp_region_clear(out);
    if (data_size == 0 || (flags & ~SP_CREATE_PREFAULT) != 0)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    rc = sp_region_total_for(data_size, &total);
    if (rc != SP_OK)
        return sp_fail(rc, rc == SP_ERR_OVERFLOW ? EOVERFLOW : EINVAL);
    if ((uint64_t)(off_t)total != total || (uint64_t)(size_t)total != total)
        return sp_fail(SP_ERR_OVERFLOW, EOVERFLOW);

    rc = sp_shm_space(shm_dir, NULL, &avail);
    if (rc != SP_OK)
        return rc;
    if (avail < total)
        return sp_fail(SP_ERR_NOSPACE, ENOSPC);

    for (tries = 0;; tries++) {
        rc = sp_name_random(name);
        if (rc != SP_OK)
            return rc;
        fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
            break;
        err = errno;
        if (err == EEXIST && tries + 1 < SP_CREATE_NAME_TRIES)
            continue;
        return sp_fail(sp_status_from_errno(err), err);
    }

    if (fchmod(fd, 0600) != 0) {
        err = errno;
        goto fail_unlink;
    }
    if (ftruncate(fd, (off_t)total) != 0) {
        err = errno;
        goto fail_unlink;
    }
    err = sp_debug_fallocate_injected();
    if (err == 0) {
        do {
            err = posix_fallocate(fd, 0, (off_t)total);
        } while (err == EINTR);
    }
    if (err == EOPNOTSUPP || err == EINVAL)
        err = 0; /* filesystem without fallocate: carry on */
    if (err != 0)
        goto fail_unlink;

    mflags = MAP_SHARED;
    if (flags & SP_CREATE_PREFAULT)
        mflags |= MAP_POPULATE;
    base = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE, mflags, fd, 0);
    if (base == MAP_FAILED) {
        err = errno;
        goto fail_unlink;
    }

    memcpy(out->name, name, sizeof name);
    out->base = (uint8_t *)base;
    out->size = total;
    out->fd = fd;
    out->owner = 1;

    h = sp_hdr(out);
    memset(h, 0, sizeof *h);
    h->version = SP_LAYOUT_VERSION;
    h->header_size = SP_REGION_HEADER_SIZE;
    h->total_size = total;
    h->owner_pid = (int64_t)getpid();
    h->flags = 0;
    __atomic_store_n(&h->refcount, (int64_t)1, __ATOMIC_SEQ_CST);
    /* Magic last: a concurrent attacher sees a complete header or none. */
    __atomic_store_n(&h->magic, SP_REGION_MAGIC, __ATOMIC_RELEASE);
    return SP_OK;

fail_unlink:
    shm_unlink(name);
    close(fd);
    sp_region_clear(out);
    if (err == ENOSPC || err == EDQUOT || err == EFBIG)
        return sp_fail(SP_ERR_NOSPACE, ENOSPC);
    return sp_fail(sp_status_from_errno(err), err);
}

SP_API int sp_region_attach(const char *name, uint64_t expected_total_size,
                            sp_region *out)
{
    struct stat st;
    int fd, err, rc;
    uint64_t size;
    void *base;
    const sp_region_header *h;

    if (out == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    sp_region_clear(out);
    rc = sp_name_validate(name);
    if (rc != SP_OK)
        return rc;

    fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        err = errno;
        return sp_fail(sp_status_from_errno(err), err);
    }
    if (fstat(fd, &st) != 0) {
        err = errno;
        close(fd);
        return sp_fail(sp_status_from_errno(err), err);
    }
    if (st.st_size < (off_t)SP_REGION_HEADER_SIZE ||
        (uint64_t)st.st_size > SP_MAX_REGION_SIZE ||
        (expected_total_size != 0 &&
         (uint64_t)st.st_size != expected_total_size)) {
        close(fd);
        return sp_fail(SP_ERR_SIZE, EINVAL);
    }
    size = (uint64_t)st.st_size;
    base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        err = errno;
        close(fd);
        return sp_fail(sp_status_from_errno(err), err);
    }
    h = (const sp_region_header *)base;
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != SP_REGION_MAGIC) {
        rc = SP_ERR_MAGIC;
        goto fail;
    }
    if (h->version != SP_LAYOUT_VERSION) {
        rc = SP_ERR_VERSION;
        goto fail;
    }
    if (h->header_size != SP_REGION_HEADER_SIZE || h->total_size != size) {
        rc = SP_ERR_SIZE;
        goto fail;
    }

    memcpy(out->name, name, strlen(name) + 1);
    out->base = (uint8_t *)base;
    out->size = size;
    out->fd = fd;
    out->owner = 0;
    __atomic_add_fetch(&sp_hdr(out)->refcount, 1, __ATOMIC_SEQ_CST);
    return SP_OK;

fail:
    munmap(base, (size_t)size);
    close(fd);
    return sp_fail(rc, EINVAL);
}

SP_API int sp_region_detach(sp_region *region)
{
    if (region == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (region->base != NULL) {
        if (region->size >= SP_REGION_HEADER_SIZE) {
            int64_t *rc = &sp_hdr(region)->refcount;
            int64_t cur = __atomic_load_n(rc, __ATOMIC_SEQ_CST);
            while (cur > 0 &&
                   !__atomic_compare_exchange_n(rc, &cur, cur - 1, 0,
                                                __ATOMIC_SEQ_CST,
                                                __ATOMIC_SEQ_CST)) {
            }
        }
        munmap(region->base, (size_t)region->size);
    }
    if (region->base != NULL && region->fd >= 0)
        close(region->fd);
    sp_region_clear(region);
    return SP_OK;
}

SP_API int sp_region_unlink(const char *name)
{
    int rc = sp_name_validate(name);
    if (rc != SP_OK)
        return rc;
    if (shm_unlink(name) != 0) {
        int e = errno;
        return sp_fail(sp_status_from_errno(e), e);
    }
    return SP_OK;
}

static int sp_region_usable(const sp_region *r)
{
    return r != NULL && r->base != NULL && r->size >= SP_REGION_HEADER_SIZE;
}

SP_API int sp_region_check_span(const sp_region *region, uint64_t offset,
                                uint64_t length)
{
    if (!sp_region_usable(region))
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (offset < SP_REGION_HEADER_SIZE || offset > region->size ||
        length > region->size - offset)
        return sp_fail(SP_ERR_RANGE, ERANGE);
    return SP_OK;
}

SP_API int sp_block_lookup(const sp_region *region, uint64_t data_offset,
                           uint64_t nbytes, sp_block_header **header)
{
    sp_block_header *b;
    uint64_t cap, nb;

    if (header)
        *header = NULL;
    if (!sp_region_usable(region))
        return sp_fail(SP_ERR_INVALID, EINVAL);
    if (data_offset % SP_ALIGNMENT != 0 ||
        data_offset < (uint64_t)SP_REGION_HEADER_SIZE + SP_BLOCK_HEADER_SIZE ||
        data_offset > region->size)
        return sp_fail(SP_ERR_RANGE, ERANGE);
    b = (sp_block_header *)(void *)(region->base + data_offset -
                                    SP_BLOCK_HEADER_SIZE);
    if (__atomic_load_n(&b->magic, __ATOMIC_ACQUIRE) != SP_BLOCK_MAGIC)
        return sp_fail(SP_ERR_MAGIC, EINVAL);
    /* Another process may be writing: read each field once. */
    cap = __atomic_load_n(&b->capacity, __ATOMIC_RELAXED);
    nb = __atomic_load_n(&b->nbytes, __ATOMIC_RELAXED);
    if (cap > region->size - data_offset || nb > cap || nbytes > cap)
        return sp_fail(SP_ERR_RANGE, ERANGE);
    if (header)
        *header = b;
    return SP_OK;
}

SP_API int sp_block_ref(const sp_region *region, uint64_t data_offset,
                        int delta, int64_t *new_count)
{
    sp_block_header *b;
    int64_t cur, next;
    int rc;

    if (delta == 0)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    rc = sp_block_lookup(region, data_offset, 0, &b);
    if (rc != SP_OK)
        return rc;
    cur = __atomic_load_n(&b->refcount, __ATOMIC_SEQ_CST);
    for (;;) {
        if (cur <= 0 && delta > 0)
            return sp_fail(SP_ERR_REFCOUNT, EINVAL); /* block not live */
        if (__builtin_add_overflow(cur, (int64_t)delta, &next))
            return sp_fail(SP_ERR_OVERFLOW, EOVERFLOW);
        if (next < 0)
            return sp_fail(SP_ERR_REFCOUNT, EINVAL);
        if (__atomic_compare_exchange_n(&b->refcount, &cur, next, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            break;
    }
    if (new_count)
        *new_count = next;
    return SP_OK;
}
