/*
 * sp_util.c -- error strings, last errno, names, overflow helpers and the
 * fallocate fault-injection hook.
 */
#include "sp_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

static _Thread_local int sp_tls_errno;

SP_API const char *sp_strerror(int status)
{
    switch (status) {
    case SP_OK: return "success";
    case SP_ERR_INVALID: return "invalid argument";
    case SP_ERR_NAME: return "invalid region name";
    case SP_ERR_MAGIC: return "bad magic number in header";
    case SP_ERR_VERSION: return "unsupported layout version";
    case SP_ERR_SIZE: return "object size mismatch";
    case SP_ERR_RANGE: return "offset or length out of range";
    case SP_ERR_NOSPACE: return "not enough space in shared-memory filesystem";
    case SP_ERR_CAP: return "arena cap would be exceeded";
    case SP_ERR_NOMEM: return "out of memory";
    case SP_ERR_NOTFOUND: return "region not found";
    case SP_ERR_EXISTS: return "region already exists";
    case SP_ERR_PERM: return "permission denied";
    case SP_ERR_OS: return "operating system error";
    case SP_ERR_REFCOUNT: return "reference count error";
    case SP_ERR_OVERFLOW: return "size arithmetic overflow";
    case SP_ERR_NO_DRIVER: return "CUDA driver not available";
    case SP_ERR_CUDA: return "CUDA driver call failed";
    case SP_ERR_UNSHAREABLE: return "CUDA memory cannot be shared by IPC";
    default: return "unknown error";
    }
}

SP_API int sp_current_cpu(void)
{
    int cpu = sched_getcpu();
    return cpu >= 0 ? cpu : -1;
}

SP_API int sp_recv_some(int fd, void *buf, size_t len, size_t *received)
{
    ssize_t got;
    if (received == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    *received = 0;
    if (buf == NULL || len == 0 || fd < 0)
        return sp_fail(SP_ERR_INVALID, fd < 0 ? EBADF : EINVAL);
    /* MSG_WAITALL: one call for the whole length, unless a signal or the end
     * of the stream cuts it short (then the caller runs its signal handlers
     * and asks for the rest). */
    got = recv(fd, buf, len, MSG_WAITALL);
    if (got < 0)
        return sp_fail(SP_ERR_OS, errno);
    *received = (size_t)got;
    return SP_OK;
}

SP_API int sp_last_errno(void)
{
    return sp_tls_errno;
}

int sp_fail(int status, int err)
{
    sp_tls_errno = err;
    return status;
}

int sp_status_from_errno(int err)
{
    switch (err) {
    case 0: return SP_OK;
    case ENOENT: return SP_ERR_NOTFOUND;
    case EEXIST: return SP_ERR_EXISTS;
    case EACCES:
    case EPERM: return SP_ERR_PERM;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return SP_ERR_NOSPACE;
    case ENOMEM: return SP_ERR_NOMEM;
    case EINVAL: return SP_ERR_INVALID;
    case ENAMETOOLONG: return SP_ERR_NAME;
    case EOVERFLOW: return SP_ERR_OVERFLOW;
    default: return SP_ERR_OS;
    }
}

/* ---- overflow-safe arithmetic ---- */

int sp_add_overflow(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_add_overflow(a, b, out) ? 1 : 0;
}

int sp_mul_overflow(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_mul_overflow(a, b, out) ? 1 : 0;
}

int sp_round_up(uint64_t v, uint64_t align, uint64_t *out)
{
    uint64_t t;
    if (align == 0 || (align & (align - 1)) != 0)
        return 1;
    if (__builtin_add_overflow(v, align - 1, &t))
        return 1;
    *out = t & ~(align - 1);
    return 0;
}

uint64_t sp_page_size(void)
{
    static uint64_t cached; /* benign race: every thread computes the same */
    uint64_t p = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (p == 0) {
        long v = sysconf(_SC_PAGESIZE);
        p = (v > 0 && ((unsigned long)v & ((unsigned long)v - 1)) == 0)
                ? (uint64_t)v
                : 4096u;
        __atomic_store_n(&cached, p, __ATOMIC_RELAXED);
    }
    return p;
}

int sp_region_total_for(uint64_t data_size, uint64_t *total)
{
    uint64_t t;
    if (data_size == 0)
        return SP_ERR_INVALID;
    if (sp_add_overflow(data_size, SP_REGION_HEADER_SIZE, &t))
        return SP_ERR_OVERFLOW;
    if (t > SP_MAX_REGION_SIZE)
        return SP_ERR_OVERFLOW;
    if (sp_round_up(t, sp_page_size(), &t) || t > SP_MAX_REGION_SIZE)
        return SP_ERR_OVERFLOW;
    *total = t;
    return SP_OK;
}

/* ---- names ---- */

static int sp_is_digit(char c) { return c >= '0' && c <= '9'; }
static int sp_is_lhex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Parse and validate; on success stores the pid. */
static int sp_name_parse(const char *name, int64_t *pid_out)
{
    const size_t plen = sizeof(SP_NAME_PREFIX) - 1;
    size_t len, i, ndig;
    int64_t pid = 0;
    const char *p;

    if (name == NULL)
        return SP_ERR_NAME;
    len = strnlen(name, SP_NAME_MAX);
    if (len >= SP_NAME_MAX)
        return SP_ERR_NAME;
    if (len < plen || memcmp(name, SP_NAME_PREFIX, plen) != 0)
        return SP_ERR_NAME;
    p = name + plen;
    for (ndig = 0; sp_is_digit(p[ndig]); ndig++) {
        if (ndig >= 10)
            return SP_ERR_NAME;
        pid = pid * 10 + (p[ndig] - '0');
    }
    if (ndig == 0 || p[0] == '0' || pid <= 0)
        return SP_ERR_NAME; /* missing, leading zero, or pid 0 */
    p += ndig;
    if (*p != '-')
        return SP_ERR_NAME;
    p++;
    for (i = 0; i < SP_NAME_RANDOM_HEX; i++) {
        if (!sp_is_lhex(p[i]))
            return SP_ERR_NAME;
    }
    if (p[SP_NAME_RANDOM_HEX] != '\0')
        return SP_ERR_NAME;
    if (pid_out)
        *pid_out = pid;
    return SP_OK;
}

SP_API int sp_name_validate(const char *name)
{
    int rc = sp_name_parse(name, NULL);
    return rc == SP_OK ? SP_OK : sp_fail(rc, EINVAL);
}

SP_API int sp_name_owner(const char *name, int64_t *owner_pid)
{
    int rc;
    if (owner_pid == NULL)
        return sp_fail(SP_ERR_INVALID, EINVAL);
    rc = sp_name_parse(name, owner_pid);
    return rc == SP_OK ? SP_OK : sp_fail(rc, EINVAL);
}

static int sp_fill_random(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)r;
    }
    if (got == n)
        return 0;
    /* Fallback for kernels without getrandom(2). */
    {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -1;
        while (got < n) {
            ssize_t r = read(fd, buf + got, n - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                close(fd);
                return -1;
            }
            got += (size_t)r;
        }
        close(fd);
    }
    return 0;
}

int sp_name_random(char name[SP_NAME_MAX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[SP_NAME_RANDOM_HEX / 2];
    char hexbuf[SP_NAME_RANDOM_HEX + 1];
    size_t i;
    int n;

    if (sp_fill_random(rnd, sizeof rnd) != 0)
        return sp_fail(SP_ERR_OS, errno ? errno : EIO);
    for (i = 0; i < sizeof rnd; i++) {
        hexbuf[2 * i] = hex[rnd[i] >> 4];
        hexbuf[2 * i + 1] = hex[rnd[i] & 0xf];
    }
    hexbuf[SP_NAME_RANDOM_HEX] = '\0';
    n = snprintf(name, SP_NAME_MAX, "%s%ld-%s", SP_NAME_PREFIX,
                 (long)getpid(), hexbuf);
    if (n < 0 || (size_t)n >= SP_NAME_MAX)
        return sp_fail(SP_ERR_NAME, ENAMETOOLONG);
    return SP_OK;
}

/* ---- fault injection ---- */

static int sp_fail_fallocate_err;
static int sp_fail_fallocate_count;

SP_API void sp_debug_fail_fallocate(int err, int count)
{
    /* Set the error before publishing the count. */
    __atomic_store_n(&sp_fail_fallocate_err, err, __ATOMIC_SEQ_CST);
    __atomic_store_n(&sp_fail_fallocate_count, count > 0 ? count : 0,
                     __ATOMIC_SEQ_CST);
}

int sp_debug_fallocate_injected(void)
{
    int c = __atomic_load_n(&sp_fail_fallocate_count, __ATOMIC_SEQ_CST);
    while (c > 0) {
        if (__atomic_compare_exchange_n(&sp_fail_fallocate_count, &c, c - 1, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return __atomic_load_n(&sp_fail_fallocate_err, __ATOMIC_SEQ_CST);
    }
    return 0;
}
