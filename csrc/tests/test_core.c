/*
 * test_core.c -- self-contained unit tests for the snakepit C core.
 * Prints one line per test and "N passed, M failed"; exits nonzero on failure.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "snakepit_core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sp_test.h"

/* ---- helpers ---- */

#define MiB (UINT64_C(1) << 20)

/* Entries "/dev/shm/snakepit-<pid>-*" for pid. */
static int count_shm_entries(pid_t pid)
{
    char prefix[64];
    DIR *d;
    struct dirent *e;
    int n = 0;
    snprintf(prefix, sizeof prefix, "snakepit-%ld-", (long)pid);
    d = opendir("/dev/shm");
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static int shm_exists(const char *name)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "/dev/shm%s", name);
    return stat(path, &st) == 0;
}

static void fake_name(char *buf, size_t n, const char *hex)
{
    snprintf(buf, n, "/snakepit-%ld-%s", (long)getpid(), hex);
}

static sp_region_header *hdr(const sp_region *r)
{
    return (sp_region_header *)(void *)r->base;
}

/* ---- tests: util ---- */

static void test_strerror(void)
{
    int c;
    for (c = 1; c >= -20; c--) {
        const char *s = sp_strerror(c);
        CHECK(s != NULL && s[0] != '\0');
    }
    CHECK(strcmp(sp_strerror(SP_OK), sp_strerror(SP_ERR_NAME)) != 0);
    CHECK(strcmp(sp_strerror(SP_ERR_NOSPACE), sp_strerror(SP_ERR_CAP)) != 0);
}

static void test_name_validate(void)
{
    static const char *const good[] = {
        "/snakepit-1-0123456789abcdef",
        "/snakepit-4194304-ffffffffffffffff",
        "/snakepit-9999999999-0000000000000000",
        "/snakepit-42-a1b2c3d4e5f60789",
    };
    static const char *const bad[] = {
        "",
        "/",
        "/snakepit-",
        "/snakepit--0123456789abcdef",
        "/snakepit-0-0123456789abcdef",          /* pid 0 */
        "/snakepit-01-0123456789abcdef",         /* leading zero */
        "/snakepit-12345678901-0123456789abcdef", /* 11 digits */
        "/snakepit-1-0123456789ABCDEF",          /* uppercase */
        "/snakepit-1-0123456789abcdeF",
        "/snakepit-1-0123456789abcde",           /* 15 hex */
        "/snakepit-1-0123456789abcdef0",         /* 17 hex */
        "/snakepit-1-0123456789abcdefx",         /* trailing */
        "/snakepit-1-0123456789abcdef/",
        "/snakepit-1-0123456789abcdef\n",
        "/snakepit-1-",
        "/snakepit-1",
        "/snakepit-1-../../etc/passwd",           /* traversal */
        "/snakepit-1-..%2f..%2f0123456",
        "/snakepit-1/0123456789abcdef",
        "//snakepit-1-0123456789abcdef",
        "/snakepit-1-0123456789/bcdef",
        "snakepit-1-0123456789abcdef",           /* no slash */
        "/snakepit_1-0123456789abcdef",
        "/Snakepit-1-0123456789abcdef",
        "/snakepit-+1-0123456789abcdef",
        "/snakepit--1-0123456789abcdef",
        "/snakepit- 1-0123456789abcdef",
        "/snakepit-1--0123456789abcdef",
        "/snakepit-1-0123456789abcdeg",
        "/snakepit-1-0x23456789abcdef",
        "/snakepit-abc-0123456789abcdef",
        "/snakepit-1-0123456789abcdef-0123456789abcdef-0123456789abcdef-xx",
    };
    char longname[300];
    size_t i;
    int64_t pid = 0;

    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        int rc = sp_name_validate(good[i]);
        if (rc != SP_OK)
            fprintf(stderr, "    rejected good name '%s'\n", good[i]);
        CHECK_EQ(rc, SP_OK);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = sp_name_validate(bad[i]);
        if (rc != SP_ERR_NAME)
            fprintf(stderr, "    accepted bad name '%s'\n", bad[i]);
        CHECK_EQ(rc, SP_ERR_NAME);
    }
    CHECK_EQ(sp_name_validate(NULL), SP_ERR_NAME);
    memset(longname, 'a', sizeof longname);
    memcpy(longname, "/snakepit-1-", 12);
    longname[sizeof longname - 1] = '\0';
    CHECK_EQ(sp_name_validate(longname), SP_ERR_NAME);

    CHECK_EQ(sp_name_owner("/snakepit-4194304-ffffffffffffffff", &pid), SP_OK);
    CHECK_EQ(pid, 4194304);
    CHECK_EQ(sp_name_owner("/snakepit-9999999999-0000000000000000", &pid),
             SP_OK);
    CHECK_EQ(pid, 9999999999LL);
    CHECK_EQ(sp_name_owner("/snakepit-0-0123456789abcdef", &pid), SP_ERR_NAME);
    CHECK_EQ(sp_name_owner("/snakepit-1-0123456789abcdef", NULL),
             SP_ERR_INVALID);
}

static void test_shm_space(void)
{
    uint64_t total = 0, avail = 0;
    CHECK_EQ(sp_shm_space(NULL, &total, &avail), SP_OK);
    CHECK(total > 0);
    CHECK(avail <= total);
    CHECK_EQ(sp_shm_space("/nonexistent-dir-snakepit", &total, &avail),
             SP_ERR_NOTFOUND);
    CHECK_EQ(sp_last_errno(), ENOENT);
}

static void test_current_cpu(void)
{
    cpu_set_t allowed;
    int cpu = sp_current_cpu();
    CHECK(cpu >= 0);
    /* The thread runs on a CPU it may run on. */
    CHECK_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    CHECK(CPU_ISSET(cpu, &allowed));
}

static void *write_pattern(void *arg)
{
    int fd = *(int *)arg;
    unsigned char chunk[4096];
    size_t sent = 0, total = 3u << 20;
    while (sent < total) {
        size_t n = sizeof chunk, i;
        ssize_t done;
        for (i = 0; i < n; i++)
            chunk[i] = (unsigned char)((sent + i) * 7u);
        done = write(fd, chunk, n);
        if (done <= 0)
            break;
        sent += (size_t)done;
    }
    close(fd);
    return NULL;
}

static void test_recv_some(void)
{
    int fds[2];
    pthread_t writer;
    size_t total = 3u << 20, have = 0, got = 99, i, bad = 0;
    unsigned char *buf = malloc(total + 16);
    CHECK(buf != NULL);
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    CHECK_EQ(pthread_create(&writer, NULL, write_pattern, &fds[1]), 0);
    /* Everything the writer sent, in as few calls as the kernel allows. */
    while (have < total) {
        CHECK_EQ(sp_recv_some(fds[0], buf + have, total - have, &got), SP_OK);
        CHECK(got >= 1);
        have += got;
    }
    CHECK_EQ(have, total);
    for (i = 0; i < total; i++)
        bad += buf[i] != (unsigned char)(i * 7u);
    CHECK_EQ(bad, 0);
    /* The writer closed its end: the stream has ended. */
    CHECK_EQ(sp_recv_some(fds[0], buf, 16, &got), SP_OK);
    CHECK_EQ(got, 0);
    CHECK_EQ(pthread_join(writer, NULL), 0);
    CHECK_EQ(sp_recv_some(fds[0], NULL, 16, &got), SP_ERR_INVALID);
    CHECK_EQ(sp_recv_some(fds[0], buf, 0, &got), SP_ERR_INVALID);
    CHECK_EQ(sp_recv_some(-1, buf, 16, &got), SP_ERR_INVALID);
    CHECK_EQ(sp_recv_some(fds[0], buf, 16, NULL), SP_ERR_INVALID);
    close(fds[0]);
    /* A closed descriptor: the OS error, with its errno. */
    CHECK_EQ(sp_recv_some(fds[0], buf, 16, &got), SP_ERR_OS);
    CHECK_EQ(sp_last_errno(), EBADF);
    CHECK_EQ(got, 0);
    free(buf);
}

/* ---- tests: regions ---- */

static void test_region_roundtrip(void)
{
    sp_region a, b;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    int64_t owner = 0;

    REQUIRE(sp_region_create(1000, 0, NULL, &a) == SP_OK);
    CHECK_EQ(sp_name_validate(a.name), SP_OK);
    CHECK_EQ(sp_name_owner(a.name, &owner), SP_OK);
    CHECK_EQ(owner, getpid());
    CHECK_EQ(a.size, page > 1128 ? page : 2 * page);
    CHECK_EQ(a.size % page, 0);
    CHECK(a.fd >= 0);
    CHECK_EQ(a.owner, 1);
    CHECK(hdr(&a)->magic == SP_REGION_MAGIC);
    CHECK_EQ(hdr(&a)->version, SP_LAYOUT_VERSION);
    CHECK_EQ(hdr(&a)->header_size, SP_REGION_HEADER_SIZE);
    CHECK_EQ(hdr(&a)->total_size, a.size);
    CHECK_EQ(hdr(&a)->owner_pid, getpid());
    CHECK_EQ(hdr(&a)->refcount, 1);
    CHECK_EQ(hdr(&a)->flags, 0);
    CHECK(shm_exists(a.name));

    REQUIRE(sp_region_attach(a.name, a.size, &b) == SP_OK);
    CHECK_EQ(b.owner, 0);
    CHECK_EQ(b.size, a.size);
    CHECK(strcmp(a.name, b.name) == 0);
    CHECK(b.base != a.base);
    CHECK_EQ(hdr(&a)->refcount, 2);
    memcpy(a.base + SP_REGION_HEADER_SIZE, "hello snakepit", 15);
    CHECK(memcmp(b.base + SP_REGION_HEADER_SIZE, "hello snakepit", 15) == 0);
    b.base[a.size - 1] = 0x5a;
    CHECK_EQ(a.base[a.size - 1], 0x5a);

    /* expected size 0 means "any" */
    {
        sp_region c;
        REQUIRE(sp_region_attach(a.name, 0, &c) == SP_OK);
        CHECK_EQ(hdr(&a)->refcount, 3);
        CHECK_EQ(sp_region_detach(&c), SP_OK);
        CHECK_EQ(hdr(&a)->refcount, 2);
    }

    CHECK_EQ(sp_region_detach(&b), SP_OK);
    CHECK(b.base == NULL);
    CHECK_EQ(b.fd, -1);
    CHECK_EQ(hdr(&a)->refcount, 1);
    CHECK_EQ(sp_region_detach(&b), SP_OK); /* zeroed: no-op */
    {
        char name[SP_NAME_MAX];
        memcpy(name, a.name, sizeof name);
        CHECK_EQ(sp_region_detach(&a), SP_OK);
        CHECK(shm_exists(name)); /* detach does not unlink */
        CHECK_EQ(sp_region_unlink(name), SP_OK);
        CHECK(!shm_exists(name));
        CHECK_EQ(sp_region_unlink(name), SP_ERR_NOTFOUND);
        CHECK_EQ(sp_region_attach(name, 0, &b), SP_ERR_NOTFOUND);
        CHECK(b.base == NULL);
    }
    CHECK_EQ(sp_region_unlink("/etc/passwd"), SP_ERR_NAME);
}

static void test_region_detach_edge(void)
{
    sp_region z;
    memset(&z, 0, sizeof z);
    CHECK_EQ(sp_region_detach(&z), SP_OK);
    CHECK_EQ(sp_region_detach(NULL), SP_ERR_INVALID);
}

static void test_region_mode_0600(void)
{
    sp_region a;
    struct stat st;
    char path[128];
    mode_t old = umask(0); /* a permissive umask must not widen the mode */
    int rc = sp_region_create(4096, 0, NULL, &a);
    umask(old);
    REQUIRE(rc == SP_OK);
    snprintf(path, sizeof path, "/dev/shm%s", a.name);
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_mode & 07777, 0600);
    CHECK_EQ(st.st_uid, getuid());
    CHECK_EQ(fstat(a.fd, &st), 0);
    CHECK_EQ(st.st_mode & 07777, 0600);
    CHECK_EQ((uint64_t)st.st_size, a.size);
    CHECK_EQ(fcntl(a.fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    CHECK_EQ(sp_region_unlink(a.name), SP_OK);
    CHECK_EQ(sp_region_detach(&a), SP_OK);
}

static void test_region_create_invalid(void)
{
    sp_region a;
    CHECK_EQ(sp_region_create(0, 0, NULL, &a), SP_ERR_INVALID);
    CHECK_EQ(sp_region_create(100, 0, NULL, NULL), SP_ERR_INVALID);
    CHECK_EQ(sp_region_create(100, 0x80, NULL, &a), SP_ERR_INVALID);
    CHECK_EQ(sp_region_create(SP_MAX_REGION_SIZE, 0, NULL, &a),
             SP_ERR_OVERFLOW);
    CHECK_EQ(sp_region_create(UINT64_MAX, 0, NULL, &a), SP_ERR_OVERFLOW);
    CHECK_EQ(sp_region_create(UINT64_MAX - 100, 0, NULL, &a),
             SP_ERR_OVERFLOW);
    CHECK(a.base == NULL);
    CHECK_EQ(a.fd, -1);
    /* Far more than the filesystem holds: refused by the statvfs check. */
    CHECK_EQ(sp_region_create(SP_MAX_REGION_SIZE - 2 * MiB, 0, NULL, &a),
             SP_ERR_NOSPACE);
    CHECK_EQ(sp_last_errno(), ENOSPC);
    CHECK_EQ(sp_region_create(100, 0, "/nonexistent-dir-snakepit", &a),
             SP_ERR_NOTFOUND);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

static void test_region_prefault(void)
{
    sp_region a;
    REQUIRE(sp_region_create(3 * MiB, SP_CREATE_PREFAULT, NULL, &a) == SP_OK);
    CHECK(a.size >= 3 * MiB + SP_REGION_HEADER_SIZE);
    memset(a.base + SP_REGION_HEADER_SIZE, 0xab, 3 * MiB);
    CHECK_EQ(sp_region_unlink(a.name), SP_OK);
    CHECK_EQ(sp_region_detach(&a), SP_OK);
}

static void test_attach_wrong_size(void)
{
    sp_region a, b;
    REQUIRE(sp_region_create(10000, 0, NULL, &a) == SP_OK);
    CHECK_EQ(sp_region_attach(a.name, a.size + 4096, &b), SP_ERR_SIZE);
    CHECK_EQ(sp_region_attach(a.name, a.size - 1, &b), SP_ERR_SIZE);
    CHECK(b.base == NULL);
    CHECK_EQ(hdr(&a)->refcount, 1);
    /* header total_size disagreeing with the object */
    hdr(&a)->total_size = a.size * 2;
    CHECK_EQ(sp_region_attach(a.name, 0, &b), SP_ERR_SIZE);
    hdr(&a)->total_size = a.size;
    /* header_size */
    hdr(&a)->header_size = 64;
    CHECK_EQ(sp_region_attach(a.name, 0, &b), SP_ERR_SIZE);
    hdr(&a)->header_size = SP_REGION_HEADER_SIZE;
    /* version */
    hdr(&a)->version = SP_LAYOUT_VERSION + 1;
    CHECK_EQ(sp_region_attach(a.name, 0, &b), SP_ERR_VERSION);
    hdr(&a)->version = SP_LAYOUT_VERSION;
    CHECK_EQ(sp_region_attach(a.name, 0, &b), SP_OK);
    CHECK_EQ(sp_region_detach(&b), SP_OK);
    CHECK_EQ(hdr(&a)->refcount, 1);
    CHECK_EQ(sp_region_unlink(a.name), SP_OK);
    CHECK_EQ(sp_region_detach(&a), SP_OK);
}

static void test_attach_foreign_object(void)
{
    char name[SP_NAME_MAX];
    sp_region b;
    unsigned char junk[4096];
    int fd;
    size_t i;

    fake_name(name, sizeof name, "deadbeefdeadbeef");
    REQUIRE(sp_name_validate(name) == SP_OK);
    shm_unlink(name);
    fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    REQUIRE(fd >= 0);
    for (i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    CHECK_EQ(write(fd, junk, sizeof junk), (long long)sizeof junk);
    CHECK_EQ(sp_region_attach(name, 0, &b), SP_ERR_MAGIC);
    CHECK(b.base == NULL);
    /* too small to hold a header */
    CHECK_EQ(ftruncate(fd, 100), 0);
    CHECK_EQ(sp_region_attach(name, 0, &b), SP_ERR_SIZE);
    CHECK_EQ(ftruncate(fd, 0), 0);
    CHECK_EQ(sp_region_attach(name, 0, &b), SP_ERR_SIZE);
    close(fd);
    CHECK_EQ(sp_region_unlink(name), SP_OK);

    /* a region of another user (0600) is refused with SP_ERR_PERM */
    {
        sp_region a;
        pid_t pid;
        int status = 0;
        REQUIRE(sp_region_create(4096, 0, NULL, &a) == SP_OK);
        if (geteuid() != 0)
            CHECK_EQ(fchmod(a.fd, 0000), 0); /* not even the owner */
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            sp_region c;
            int rc;
            if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
                _exit(2);
            rc = sp_region_attach(a.name, 0, &c);
            _exit(rc == SP_ERR_PERM && sp_last_errno() == EACCES ? 0 : 3);
        }
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        CHECK(WIFEXITED(status));
        CHECK_EQ(WEXITSTATUS(status), 0);
        CHECK_EQ(sp_region_unlink(a.name), SP_OK);
        CHECK_EQ(sp_region_detach(&a), SP_OK);
    }
}

static void test_attach_notfound_and_badname(void)
{
    char name[SP_NAME_MAX];
    sp_region b;
    fake_name(name, sizeof name, "0000000000000001");
    shm_unlink(name);
    CHECK_EQ(sp_region_attach(name, 0, &b), SP_ERR_NOTFOUND);
    CHECK_EQ(sp_last_errno(), ENOENT);
    CHECK_EQ(sp_region_attach("/snakepit-1-../../etc/pass", 0, &b),
             SP_ERR_NAME);
    CHECK_EQ(sp_region_attach(NULL, 0, &b), SP_ERR_NAME);
    CHECK_EQ(sp_region_attach(name, 0, NULL), SP_ERR_INVALID);
}

static void test_check_span(void)
{
    sp_region a, z;
    uint64_t H = SP_REGION_HEADER_SIZE;
    REQUIRE(sp_region_create(4000, 0, NULL, &a) == SP_OK);
    memset(&z, 0, sizeof z);
    CHECK_EQ(sp_region_check_span(NULL, H, 1), SP_ERR_INVALID);
    CHECK_EQ(sp_region_check_span(&z, H, 1), SP_ERR_INVALID);
    CHECK_EQ(sp_region_check_span(&a, H, 0), SP_OK);
    CHECK_EQ(sp_region_check_span(&a, H, a.size - H), SP_OK);
    CHECK_EQ(sp_region_check_span(&a, H, a.size - H + 1), SP_ERR_RANGE);
    CHECK_EQ(sp_region_check_span(&a, H - 1, 1), SP_ERR_RANGE);
    CHECK_EQ(sp_region_check_span(&a, 0, 1), SP_ERR_RANGE);
    CHECK_EQ(sp_region_check_span(&a, 0, 0), SP_ERR_RANGE);
    CHECK_EQ(sp_region_check_span(&a, a.size - 1, 1), SP_OK);
    CHECK_EQ(sp_region_check_span(&a, a.size - 1, 2), SP_ERR_RANGE);
    CHECK_EQ(sp_region_check_span(&a, a.size, 0), SP_OK);
    CHECK_EQ(sp_region_check_span(&a, a.size, 1), SP_ERR_RANGE);
    CHECK_EQ(sp_region_check_span(&a, a.size + 1, 0), SP_ERR_RANGE);
    CHECK_EQ(sp_region_check_span(&a, H, UINT64_MAX), SP_ERR_RANGE);
    CHECK_EQ(sp_region_check_span(&a, UINT64_MAX, 1), SP_ERR_RANGE);
    CHECK_EQ(sp_region_check_span(&a, UINT64_MAX, 0), SP_ERR_RANGE);
    CHECK_EQ(sp_region_check_span(&a, H + 8, UINT64_MAX - 7), SP_ERR_RANGE);
    CHECK_EQ(sp_region_check_span(&a, UINT64_MAX - 10, 20), SP_ERR_RANGE);
    CHECK_EQ(sp_region_unlink(a.name), SP_OK);
    CHECK_EQ(sp_region_detach(&a), SP_OK);
}

/* Forge a block at data offset d inside r. */
static sp_block_header *forge_block(sp_region *r, uint64_t d, uint64_t cap,
                                    uint64_t nbytes, int64_t refs)
{
    sp_block_header *b =
        (sp_block_header *)(void *)(r->base + d - SP_BLOCK_HEADER_SIZE);
    memset(b, 0, sizeof *b);
    b->magic = SP_BLOCK_MAGIC;
    b->capacity = cap;
    b->nbytes = nbytes;
    b->refcount = refs;
    return b;
}

static void test_block_lookup(void)
{
    sp_region a;
    sp_block_header *h = NULL, *b;
    uint64_t D = SP_REGION_HEADER_SIZE + SP_BLOCK_HEADER_SIZE; /* 192 */
    REQUIRE(sp_region_create(8192, 0, NULL, &a) == SP_OK);
    b = forge_block(&a, D, 1024, 1000, 1);

    CHECK_EQ(sp_block_lookup(&a, D, 1000, &h), SP_OK);
    CHECK(h == b);
    CHECK_EQ(sp_block_lookup(&a, D, 1024, NULL), SP_OK);
    CHECK_EQ(sp_block_lookup(&a, D, 1025, &h), SP_ERR_RANGE);
    CHECK(h == NULL);
    CHECK_EQ(sp_block_lookup(&a, D + 1, 10, &h), SP_ERR_RANGE);   /* misaligned */
    CHECK_EQ(sp_block_lookup(&a, D + 32, 10, &h), SP_ERR_RANGE);  /* misaligned */
    CHECK_EQ(sp_block_lookup(&a, D - 64, 10, &h), SP_ERR_RANGE);  /* in header */
    CHECK_EQ(sp_block_lookup(&a, 0, 10, &h), SP_ERR_RANGE);
    CHECK_EQ(sp_block_lookup(&a, 64, 10, &h), SP_ERR_RANGE);
    CHECK_EQ(sp_block_lookup(&a, a.size + 64, 0, &h), SP_ERR_RANGE);
    CHECK_EQ(sp_block_lookup(&a, UINT64_MAX & ~(uint64_t)63, 0, &h),
             SP_ERR_RANGE);
    CHECK_EQ(sp_block_lookup(&a, D + 2048, 10, &h), SP_ERR_MAGIC); /* forged */
    CHECK_EQ(sp_block_lookup(NULL, D, 10, &h), SP_ERR_INVALID);

    /* capacity running past the end of the region */
    b->capacity = a.size - D + 1;
    CHECK_EQ(sp_block_lookup(&a, D, 0, &h), SP_ERR_RANGE);
    b->capacity = a.size - D;
    CHECK_EQ(sp_block_lookup(&a, D, a.size - D, &h), SP_OK);
    b->capacity = UINT64_MAX;
    CHECK_EQ(sp_block_lookup(&a, D, 0, &h), SP_ERR_RANGE);
    /* stored nbytes larger than capacity */
    b->capacity = 100;
    b->nbytes = 200;
    CHECK_EQ(sp_block_lookup(&a, D, 0, &h), SP_ERR_RANGE);
    b->nbytes = 100;
    /* block at the very end with zero capacity */
    forge_block(&a, a.size, 0, 0, 1);
    CHECK_EQ(sp_block_lookup(&a, a.size, 0, &h), SP_OK);
    /* bad magic */
    b->magic ^= 1;
    CHECK_EQ(sp_block_lookup(&a, D, 0, &h), SP_ERR_MAGIC);
    CHECK_EQ(sp_region_unlink(a.name), SP_OK);
    CHECK_EQ(sp_region_detach(&a), SP_OK);
}

static void test_block_ref(void)
{
    sp_region a;
    sp_block_header *b;
    int64_t n = -5;
    uint64_t D = 256;
    REQUIRE(sp_region_create(8192, 0, NULL, &a) == SP_OK);
    b = forge_block(&a, D, 512, 10, 1);
    CHECK_EQ(sp_block_ref(&a, D, +1, &n), SP_OK);
    CHECK_EQ(n, 2);
    CHECK_EQ(sp_block_ref(&a, D, +1, NULL), SP_OK);
    CHECK_EQ(b->refcount, 3);
    CHECK_EQ(sp_block_ref(&a, D, -1, &n), SP_OK);
    CHECK_EQ(n, 2);
    CHECK_EQ(sp_block_ref(&a, D, -1, &n), SP_OK);
    CHECK_EQ(sp_block_ref(&a, D, -1, &n), SP_OK);
    CHECK_EQ(n, 0);
    n = 77;
    CHECK_EQ(sp_block_ref(&a, D, -1, &n), SP_ERR_REFCOUNT);
    CHECK_EQ(n, 77);
    CHECK_EQ(b->refcount, 0);
    CHECK_EQ(sp_block_ref(&a, D, +1, &n), SP_ERR_REFCOUNT); /* not live */
    CHECK_EQ(b->refcount, 0);
    b->refcount = 1;
    CHECK_EQ(sp_block_ref(&a, D, -2, &n), SP_ERR_REFCOUNT);
    CHECK_EQ(sp_block_ref(&a, D, 0, &n), SP_ERR_INVALID);
    CHECK_EQ(sp_block_ref(&a, D + 1, 1, &n), SP_ERR_RANGE);
    CHECK_EQ(sp_block_ref(&a, D + 1024, 1, &n), SP_ERR_MAGIC);
    b->refcount = INT64_MAX;
    CHECK_EQ(sp_block_ref(&a, D, 1, &n), SP_ERR_OVERFLOW);
    CHECK_EQ(sp_region_unlink(a.name), SP_OK);
    CHECK_EQ(sp_region_detach(&a), SP_OK);
}

static void test_injected_enospc(void)
{
    sp_region a;
    int before = count_shm_entries(getpid());
    sp_debug_fail_fallocate(ENOSPC, 1);
    CHECK_EQ(sp_region_create(MiB, 0, NULL, &a), SP_ERR_NOSPACE);
    CHECK_EQ(sp_last_errno(), ENOSPC);
    CHECK(a.base == NULL);
    CHECK_EQ(a.fd, -1);
    CHECK_EQ(count_shm_entries(getpid()), before);

    sp_debug_fail_fallocate(ENOSPC, 2);
    CHECK_EQ(sp_region_create(MiB, 0, NULL, &a), SP_ERR_NOSPACE);
    CHECK_EQ(sp_region_create(MiB, SP_CREATE_PREFAULT, NULL, &a),
             SP_ERR_NOSPACE);
    CHECK_EQ(count_shm_entries(getpid()), before);
    /* count exhausted: works again */
    REQUIRE(sp_region_create(MiB, 0, NULL, &a) == SP_OK);
    CHECK_EQ(sp_region_unlink(a.name), SP_OK);
    CHECK_EQ(sp_region_detach(&a), SP_OK);

    /* filesystems without fallocate are tolerated */
    sp_debug_fail_fallocate(EOPNOTSUPP, 1);
    REQUIRE(sp_region_create(MiB, 0, NULL, &a) == SP_OK);
    CHECK_EQ(sp_region_unlink(a.name), SP_OK);
    CHECK_EQ(sp_region_detach(&a), SP_OK);

    /* other errors become SP_ERR_OS and also clean up */
    sp_debug_fail_fallocate(EIO, 1);
    CHECK_EQ(sp_region_create(MiB, 0, NULL, &a), SP_ERR_OS);
    CHECK_EQ(sp_last_errno(), EIO);
    CHECK_EQ(count_shm_entries(getpid()), before);

    /* disable */
    sp_debug_fail_fallocate(ENOSPC, 5);
    sp_debug_fail_fallocate(ENOSPC, 0);
    REQUIRE(sp_region_create(MiB, 0, NULL, &a) == SP_OK);
    CHECK_EQ(sp_region_unlink(a.name), SP_OK);
    CHECK_EQ(sp_region_detach(&a), SP_OK);
    CHECK_EQ(count_shm_entries(getpid()), before);
}

static void test_fork_child_writes(void)
{
    sp_region a;
    pid_t pid;
    int status = 0;
    REQUIRE(sp_region_create(65536, 0, NULL, &a) == SP_OK);
    memset(a.base + SP_REGION_HEADER_SIZE, 0, 65536);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        sp_region c;
        int ok = 1;
        if (sp_region_attach(a.name, a.size, &c) != SP_OK)
            _exit(2);
        if (hdr(&c)->refcount != 2) /* parent + this attach */
            ok = 0;
        memcpy(c.base + SP_REGION_HEADER_SIZE, "from child", 11);
        c.base[c.size - 1] = 0x77;
        sp_region_detach(&c);
        _exit(ok ? 0 : 3);
    }
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    CHECK(memcmp(a.base + SP_REGION_HEADER_SIZE, "from child", 11) == 0);
    CHECK_EQ(a.base[a.size - 1], 0x77);
    CHECK_EQ(hdr(&a)->refcount, 1);
    CHECK_EQ(sp_region_unlink(a.name), SP_OK);
    CHECK_EQ(sp_region_detach(&a), SP_OK);
}

/* ---- tests: arena ---- */

static sp_arena *small_arena(uint64_t slab, uint64_t cap, int prefault)
{
    sp_arena_config cfg;
    sp_arena *ar = NULL;
    memset(&cfg, 0, sizeof cfg);
    cfg.slab_bytes = slab;
    cfg.cap_bytes = cap;
    cfg.prefault = prefault;
    if (sp_arena_create(&cfg, &ar) != SP_OK)
        return NULL;
    return ar;
}

static void test_arena_basic(void)
{
    sp_arena *ar = NULL;
    sp_block b1, b2, b3;
    sp_arena_stats st;
    sp_region r;
    sp_block_header *h;

    CHECK_EQ(sp_arena_create(NULL, NULL), SP_ERR_INVALID);
    REQUIRE(sp_arena_create(NULL, &ar) == SP_OK); /* defaults */
    CHECK_EQ(sp_arena_alloc(NULL, 10, &b1), SP_ERR_INVALID);
    CHECK_EQ(sp_arena_alloc(ar, 10, NULL), SP_ERR_INVALID);
    REQUIRE(sp_arena_alloc(ar, 100, &b1) == SP_OK);
    CHECK_EQ(sp_name_validate(b1.region_name), SP_OK);
    CHECK_EQ((uintptr_t)b1.data % SP_ALIGNMENT, 0);
    CHECK_EQ(b1.data_offset % SP_ALIGNMENT, 0);
    CHECK_EQ(b1.nbytes, 100);
    CHECK(b1.capacity >= 100);
    CHECK(b1.region_size >= 8 * MiB);
    h = (sp_block_header *)(void *)(b1.data - SP_BLOCK_HEADER_SIZE);
    CHECK(h->magic == SP_BLOCK_MAGIC);
    CHECK_EQ(h->refcount, 1);
    CHECK_EQ(h->capacity, b1.capacity);
    CHECK_EQ(h->nbytes, 100);
    memcpy(b1.data, "arena data", 11);

    /* another mapping sees it and validates it */
    REQUIRE(sp_region_attach(b1.region_name, b1.region_size, &r) == SP_OK);
    CHECK_EQ(sp_block_lookup(&r, b1.data_offset, b1.nbytes, NULL), SP_OK);
    CHECK(memcmp(r.base + b1.data_offset, "arena data", 11) == 0);
    CHECK_EQ(sp_region_detach(&r), SP_OK);

    REQUIRE(sp_arena_alloc(ar, 200, &b2) == SP_OK); /* same class */
    CHECK(b2.data != b1.data);
    CHECK(strcmp(b2.region_name, b1.region_name) == 0);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.regions, 1);
    CHECK_EQ(st.regions_created, 1);
    CHECK_EQ(st.live_blocks, 2);
    CHECK_EQ(st.allocations, 2);
    CHECK_EQ(st.live_bytes, b1.capacity + b2.capacity);
    CHECK_EQ(st.mapped_bytes, b1.region_size);

    CHECK_EQ(sp_arena_release(ar, b1.data), SP_OK);
    CHECK_EQ(sp_arena_release(ar, b1.data), SP_ERR_REFCOUNT); /* double */
    CHECK_EQ(h->refcount, 0);
    REQUIRE(sp_arena_alloc(ar, 150, &b3) == SP_OK);
    CHECK(b3.data == b1.data); /* warm reuse */
    CHECK_EQ(b3.nbytes, 150);
    CHECK_EQ(h->refcount, 1);
    CHECK_EQ(h->generation, 2);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.regions_created, 1);
    CHECK(st.reuses >= 2);

    /* unknown pointers */
    {
        uint8_t local[16];
        CHECK_EQ(sp_arena_release(ar, local), SP_ERR_INVALID);
        CHECK_EQ(sp_arena_release(ar, NULL), SP_ERR_INVALID);
        CHECK_EQ(sp_arena_release(ar, b3.data + 1), SP_ERR_INVALID);
        CHECK_EQ(sp_arena_release(ar, b3.data + 64), SP_ERR_INVALID);
        CHECK_EQ(sp_arena_release(ar, b3.data - SP_BLOCK_HEADER_SIZE),
                 SP_ERR_INVALID);
        CHECK_EQ(sp_arena_release(NULL, b3.data), SP_ERR_INVALID);
    }
    CHECK_EQ(sp_arena_release(ar, b2.data), SP_OK);
    CHECK_EQ(sp_arena_release(ar, b3.data), SP_OK);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.live_blocks, 0);
    CHECK_EQ(st.live_bytes, 0);
    CHECK_EQ(sp_arena_stats_get(ar, NULL), SP_ERR_INVALID);
    sp_arena_destroy(ar);
    sp_arena_destroy(NULL);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

/* A worker's numpy result allocated in its arena is adopted in place: one
 * more reference, dropped by sp_arena_unref, in either order with release. */
static void test_arena_fork_child_leaves_parents_references(void)
{
    sp_arena *ar = small_arena(MiB, 0, 0);
    sp_block b, big;
    sp_block_header *h, *hb;
    pid_t pid;
    int status = 0;
    REQUIRE(ar != NULL);
    REQUIRE(sp_arena_alloc(ar, 1000, &b) == SP_OK);
    REQUIRE(sp_arena_alloc(ar, 40 * MiB, &big) == SP_OK);
    h = (sp_block_header *)(void *)(b.data - SP_BLOCK_HEADER_SIZE);
    hb = (sp_block_header *)(void *)(big.data - SP_BLOCK_HEADER_SIZE);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        /* The parent's arena, seen from its child: nothing it does here
         * may change the parent's counts or names. */
        int bad = 0;
        bad |= sp_arena_release(ar, b.data) != SP_OK;
        bad |= sp_arena_release(ar, big.data) != SP_OK;
        bad |= sp_arena_unref(ar, b.data) != SP_OK;
        bad |= h->refcount != 1 || hb->refcount != 1;
        {
            sp_block other;
            bad |= sp_arena_alloc(ar, 1000, &other) != SP_ERR_INVALID;
            bad |= sp_arena_adopt(ar, b.data, 10, &other) != SP_ERR_INVALID;
        }
        bad |= sp_arena_unlink_all(ar) != SP_OK;
        sp_arena_destroy(ar);
        _exit(bad ? 1 : 0);
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    CHECK_EQ(h->refcount, 1);
    CHECK_EQ(hb->refcount, 1);
    CHECK(shm_exists(b.region_name));
    CHECK(shm_exists(big.region_name));
    CHECK_EQ(sp_arena_release(ar, b.data), SP_OK);
    CHECK_EQ(h->refcount, 0);
    CHECK_EQ(sp_arena_release(ar, big.data), SP_OK);
    sp_arena_destroy(ar);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

static void test_arena_adopt(void)
{
    static const uint64_t sizes[] = {100, 5000, 2 * MiB, 40 * MiB};
    sp_arena *ar = small_arena(MiB, 0, 0);
    sp_arena_stats st;
    size_t i;
    REQUIRE(ar != NULL);
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint64_t n = sizes[i];
        sp_block b, got, other;
        sp_block_header *h;
        uint8_t local[16];
        int order;
        for (order = 0; order < 2; order++) {
            REQUIRE(sp_arena_alloc(ar, n, &b) == SP_OK);
            h = (sp_block_header *)(void *)(b.data - SP_BLOCK_HEADER_SIZE);
            /* the whole block, and a span inside it */
            CHECK_EQ(sp_arena_adopt(ar, b.data, n, &got), SP_OK);
            CHECK(got.data == b.data);
            CHECK(strcmp(got.region_name, b.region_name) == 0);
            CHECK_EQ(got.data_offset, b.data_offset);
            CHECK_EQ(got.nbytes, n);
            CHECK_EQ(got.region_size, b.region_size);
            CHECK_EQ(h->refcount, 2);
            CHECK_EQ(sp_arena_adopt(ar, b.data + 10, n - 20, &other), SP_OK);
            CHECK(other.data == b.data);
            CHECK_EQ(h->refcount, 3);
            CHECK_EQ(sp_arena_unref(ar, b.data), SP_OK);
            /* outside what was asked for (even inside the capacity) */
            CHECK_EQ(sp_arena_adopt(ar, b.data, n + 1, &other), SP_ERR_NOTFOUND);
            CHECK_EQ(sp_arena_adopt(ar, b.data + n, 1, &other), SP_ERR_NOTFOUND);
            CHECK_EQ(sp_arena_adopt(ar, b.data - 1, 2, &other), SP_ERR_NOTFOUND);
            CHECK_EQ(sp_arena_adopt(ar, b.data + 1, UINT64_MAX, &other),
                     SP_ERR_NOTFOUND);
            CHECK_EQ(sp_arena_adopt(ar, local, 1, &other), SP_ERR_NOTFOUND);
            CHECK(other.data == NULL);
            CHECK_EQ(sp_arena_adopt(NULL, b.data, 1, &other), SP_ERR_INVALID);
            CHECK_EQ(sp_arena_adopt(ar, NULL, 1, &other), SP_ERR_INVALID);
            CHECK_EQ(sp_arena_adopt(ar, b.data, 1, NULL), SP_ERR_INVALID);
            /* unref: only block data, never the owner's reference */
            CHECK_EQ(sp_arena_unref(ar, b.data + 1), SP_ERR_INVALID);
            CHECK_EQ(sp_arena_unref(ar, local), SP_ERR_INVALID);
            CHECK_EQ(sp_arena_unref(NULL, b.data), SP_ERR_INVALID);
            CHECK_EQ(h->refcount, 2);
            if (order == 0) { /* the adopted reference goes first */
                CHECK_EQ(sp_arena_unref(ar, b.data), SP_OK);
                CHECK_EQ(sp_arena_unref(ar, b.data), SP_ERR_REFCOUNT);
                CHECK_EQ(h->refcount, 1);
                CHECK_EQ(sp_arena_release(ar, b.data), SP_OK);
            } else { /* the owner goes first: deferred, then reclaimed at once */
                CHECK_EQ(sp_arena_release(ar, b.data), SP_OK);
                CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
                CHECK_EQ(st.deferred, 1);
                CHECK_EQ(sp_arena_adopt(ar, b.data, 1, &other), SP_ERR_NOTFOUND);
                CHECK_EQ(sp_arena_unref(ar, b.data), SP_OK);
                CHECK_EQ(sp_arena_unref(ar, b.data), SP_ERR_INVALID); /* freed */
            }
            CHECK_EQ(h->refcount, 0);
            CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
            CHECK_EQ(st.live_blocks, 0);
            CHECK_EQ(st.deferred, 0);
            CHECK_EQ(sp_arena_adopt(ar, b.data, 1, &other), SP_ERR_NOTFOUND);
        }
    }
    /* an unlinked arena lends nothing */
    {
        sp_block b, other;
        REQUIRE(sp_arena_alloc(ar, 100, &b) == SP_OK);
        CHECK_EQ(sp_arena_unlink_all(ar), SP_OK);
        CHECK_EQ(sp_arena_adopt(ar, b.data, 100, &other), SP_ERR_INVALID);
        CHECK_EQ(sp_arena_release(ar, b.data), SP_OK);
    }
    sp_arena_destroy(ar);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

static void test_arena_zero_and_sizes(void)
{
    static const uint64_t sizes[] = {
        0, 1, 63, 64, 65, 255, 256, 257, 511, 512, 1000, 4095, 4096, 4097,
        65535, 65536, 65537, 80000, 81920, 81921, 100000, 131072, 131073,
        250000, 1000000, 1048576, 3000000, 5 * MiB + 7, 12 * MiB,
        32 * MiB - 1, 32 * MiB,
    };
    enum { N = sizeof sizes / sizeof sizes[0] };
    sp_arena *ar = small_arena(MiB, 0, 0);
    sp_block blk[N];
    sp_arena_stats st;
    size_t i, j;
    REQUIRE(ar != NULL);
    for (i = 0; i < N; i++) {
        int rc = sp_arena_alloc(ar, sizes[i], &blk[i]);
        CHECK_EQ(rc, SP_OK);
        if (rc != SP_OK)
            continue;
        CHECK(blk[i].capacity >= sizes[i]);
        CHECK(blk[i].capacity >= 1);
        CHECK_EQ(blk[i].capacity % SP_ALIGNMENT, 0);
        /* classes waste at most 2x (1.25x above 64 KiB) */
        if (sizes[i] > 256)
            CHECK(blk[i].capacity < 2 * sizes[i]);
        if (sizes[i] > 65536)
            CHECK(blk[i].capacity <= sizes[i] + sizes[i] / 4 + 64);
        CHECK_EQ((uintptr_t)blk[i].data % SP_ALIGNMENT, 0);
        CHECK_EQ(blk[i].nbytes, sizes[i]);
        CHECK(blk[i].data_offset + blk[i].capacity <= blk[i].region_size);
        if (sizes[i] > 0)
            memset(blk[i].data, (int)(i + 1), (size_t)sizes[i]);
    }
    for (i = 0; i < N; i++) {
        sp_region r;
        if (blk[i].nbytes == 0)
            continue;
        CHECK_EQ(blk[i].data[0], (uint8_t)(i + 1));
        CHECK_EQ(blk[i].data[blk[i].nbytes - 1], (uint8_t)(i + 1));
        if (sp_region_attach(blk[i].region_name, blk[i].region_size, &r) ==
            SP_OK) {
            CHECK_EQ(sp_block_lookup(&r, blk[i].data_offset, blk[i].nbytes,
                                     NULL),
                     SP_OK);
            CHECK_EQ(sp_region_detach(&r), SP_OK);
        } else {
            CHECK(0);
        }
        for (j = 0; j < i; j++)
            CHECK(blk[j].data != blk[i].data);
    }
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.live_blocks, N);
    for (i = 0; i < N; i++)
        CHECK_EQ(sp_arena_release(ar, blk[i].data), SP_OK);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.live_blocks, 0);
    CHECK_EQ(st.live_bytes, 0);
    /* Same sizes again: no new regions. */
    {
        uint64_t created = st.regions_created;
        for (i = 0; i < N; i++)
            CHECK_EQ(sp_arena_alloc(ar, sizes[i], &blk[i]), SP_OK);
        CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
        CHECK_EQ(st.regions_created, created);
        for (i = 0; i < N; i++)
            CHECK_EQ(sp_arena_release(ar, blk[i].data), SP_OK);
    }
    sp_arena_destroy(ar);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

static void test_arena_slab_carving(void)
{
    /* slab of 1 MiB, class 4 KiB: slots of 4160 B -> ~252 per slab */
    sp_arena *ar = small_arena(MiB, 0, 1);
    sp_block *b;
    sp_arena_stats st;
    int i, n = 600;
    REQUIRE(ar != NULL);
    b = (sp_block *)calloc((size_t)n, sizeof *b);
    REQUIRE(b != NULL);
    for (i = 0; i < n; i++) {
        CHECK_EQ(sp_arena_alloc(ar, 4096, &b[i]), SP_OK);
        CHECK_EQ(b[i].capacity, 4096);
        memset(b[i].data, i & 0xff, 4096);
    }
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.regions, 3);
    CHECK_EQ(st.regions_created, 3);
    CHECK_EQ(st.reuses, (uint64_t)n - 3);
    for (i = 0; i < n; i++)
        CHECK_EQ(b[i].data[4095], (uint8_t)(i & 0xff));
    for (i = 0; i < n; i++)
        CHECK_EQ(sp_arena_release(ar, b[i].data), SP_OK);
    /* LIFO: the last released comes back first */
    {
        sp_block x;
        CHECK_EQ(sp_arena_alloc(ar, 3000, &x), SP_OK);
        CHECK(x.data == b[n - 1].data);
        CHECK_EQ(sp_arena_release(ar, x.data), SP_OK);
    }
    /* big class: 2 slots minimum per slab */
    {
        sp_block x, y, z;
        CHECK_EQ(sp_arena_alloc(ar, 3 * MiB, &x), SP_OK);
        CHECK_EQ(sp_arena_alloc(ar, 3 * MiB, &y), SP_OK);
        CHECK(strcmp(x.region_name, y.region_name) == 0);
        CHECK_EQ(sp_arena_alloc(ar, 3 * MiB, &z), SP_OK);
        CHECK(strcmp(x.region_name, z.region_name) != 0);
        CHECK_EQ(sp_arena_release(ar, x.data), SP_OK);
        CHECK_EQ(sp_arena_release(ar, y.data), SP_OK);
        CHECK_EQ(sp_arena_release(ar, z.data), SP_OK);
    }
    free(b);
    sp_arena_destroy(ar);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

static void test_arena_large(void)
{
    sp_arena *ar = small_arena(MiB, 0, 1);
    sp_block a, b, c, d;
    sp_arena_stats st;
    sp_region r;
    uint64_t n = 41 * MiB;
    REQUIRE(ar != NULL);
    REQUIRE(sp_arena_alloc(ar, n, &a) == SP_OK);
    CHECK(a.capacity >= n);
    CHECK_EQ(a.data_offset, SP_REGION_HEADER_SIZE + SP_BLOCK_HEADER_SIZE);
    CHECK_EQ(a.data_offset + a.capacity, a.region_size);
    CHECK_EQ(((sp_region_header *)(void *)(a.data - a.data_offset))->flags & 1,
             1);
    a.data[0] = 1;
    a.data[n - 1] = 2;
    REQUIRE(sp_region_attach(a.region_name, a.region_size, &r) == SP_OK);
    CHECK_EQ(sp_block_lookup(&r, a.data_offset, n, NULL), SP_OK);
    CHECK_EQ(r.base[a.data_offset + n - 1], 2);
    CHECK_EQ(hdr(&r)->flags & 1, 1);
    CHECK_EQ(sp_region_detach(&r), SP_OK);

    CHECK_EQ(sp_arena_release(ar, a.data), SP_OK);
    CHECK_EQ(sp_arena_release(ar, a.data), SP_ERR_REFCOUNT);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.regions, 1); /* cached, still mapped */
    CHECK_EQ(st.live_blocks, 0);

    /* slightly smaller request: reuse the cached region */
    REQUIRE(sp_arena_alloc(ar, n - 100000, &b) == SP_OK);
    CHECK(b.data == a.data);
    CHECK(strcmp(b.region_name, a.region_name) == 0);
    CHECK_EQ(b.nbytes, n - 100000);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.regions_created, 1);
    CHECK_EQ(st.reuses, 1);
    CHECK_EQ(sp_arena_release(ar, b.data), SP_OK);

    /* much smaller (just above threshold, < 1/1.25): not reused */
    REQUIRE(sp_arena_alloc(ar, 32 * MiB + 1, &c) == SP_OK);
    CHECK(c.data != a.data);
    /* bigger than cached: new region too */
    REQUIRE(sp_arena_alloc(ar, n + MiB, &d) == SP_OK);
    CHECK(d.data != a.data);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.regions_created, 3);
    CHECK_EQ(st.regions, 3);
    CHECK_EQ(sp_arena_release(ar, c.data), SP_OK);
    CHECK_EQ(sp_arena_release(ar, d.data), SP_OK);
    CHECK_EQ(count_shm_entries(getpid()), 3);
    CHECK_EQ(sp_arena_trim(ar), SP_OK);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.regions, 0);
    CHECK_EQ(st.mapped_bytes, 0);
    CHECK_EQ(count_shm_entries(getpid()), 0);
    CHECK_EQ(sp_arena_trim(NULL), SP_ERR_INVALID);
    sp_arena_destroy(ar);
}

static void test_arena_large_cache_bound(void)
{
    sp_arena_config cfg;
    sp_arena *ar = NULL;
    sp_block a, b, c;
    sp_arena_stats st;
    memset(&cfg, 0, sizeof cfg);
    cfg.cache_bytes = 50 * MiB; /* room for one 40 MiB region */
    REQUIRE(sp_arena_create(&cfg, &ar) == SP_OK);
    REQUIRE(sp_arena_alloc(ar, 40 * MiB, &a) == SP_OK);
    REQUIRE(sp_arena_alloc(ar, 41 * MiB, &b) == SP_OK);
    REQUIRE(sp_arena_alloc(ar, 60 * MiB, &c) == SP_OK);
    CHECK_EQ(sp_arena_release(ar, a.data), SP_OK); /* cached */
    CHECK_EQ(sp_arena_release(ar, b.data), SP_OK); /* evicts a */
    CHECK_EQ(sp_arena_release(ar, c.data), SP_OK); /* too big: dropped */
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.regions, 1);
    CHECK_EQ(count_shm_entries(getpid()), 1);
    CHECK(!shm_exists(a.region_name));
    CHECK(shm_exists(b.region_name));
    CHECK(!shm_exists(c.region_name));
    sp_arena_destroy(ar);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

static void test_arena_cap(void)
{
    sp_arena *ar = small_arena(MiB, 4 * MiB, 0);
    sp_block b[16], big;
    sp_arena_stats st;
    int i, got = 0, rc = SP_OK;
    REQUIRE(ar != NULL);
    CHECK_EQ(sp_arena_alloc(ar, 40 * MiB, &big), SP_ERR_CAP);
    CHECK(big.data == NULL);
    /* 512 KiB class: ~2 slots per 1 MiB slab -> 4 MiB cap holds 3 slabs */
    for (i = 0; i < 16; i++) {
        rc = sp_arena_alloc(ar, 512 * 1024, &b[i]);
        if (rc != SP_OK)
            break;
        got++;
    }
    CHECK_EQ(rc, SP_ERR_CAP);
    CHECK(got >= 2);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK(st.mapped_bytes <= 4 * MiB);
    /* freeing makes room again without new regions */
    CHECK_EQ(sp_arena_release(ar, b[0].data), SP_OK);
    CHECK_EQ(sp_arena_alloc(ar, 512 * 1024, &b[0]), SP_OK);
    /* raise the cap at run time */
    CHECK_EQ(sp_arena_set_cap(ar, 0), SP_OK);
    CHECK_EQ(sp_arena_alloc(ar, 512 * 1024, &b[got]), SP_OK);
    got++;
    CHECK_EQ(sp_arena_set_cap(NULL, 0), SP_ERR_INVALID);
    for (i = 0; i < got; i++)
        CHECK_EQ(sp_arena_release(ar, b[i].data), SP_OK);
    sp_arena_destroy(ar);

    /* cap forces the large cache to be trimmed first */
    ar = small_arena(MiB, 100 * MiB, 0);
    REQUIRE(ar != NULL);
    REQUIRE(sp_arena_alloc(ar, 40 * MiB, &big) == SP_OK);
    CHECK_EQ(sp_arena_release(ar, big.data), SP_OK);
    CHECK(shm_exists(big.region_name));
    {
        sp_block x;
        CHECK_EQ(sp_arena_alloc(ar, 70 * MiB, &x), SP_OK);
        CHECK(!shm_exists(big.region_name)); /* evicted to stay under cap */
        CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
        CHECK_EQ(st.regions, 1);
        CHECK(st.mapped_bytes <= 100 * MiB);
        CHECK_EQ(sp_arena_alloc(ar, 40 * MiB, &big), SP_ERR_CAP);
        CHECK_EQ(sp_arena_release(ar, x.data), SP_OK);
    }
    sp_arena_destroy(ar);

    /* a cap below a whole slab of the block's class still holds the block */
    {
        sp_block one, two;
        uint64_t caps[2] = {5 * MiB, 3 * MiB};
        for (i = 0; i < 2; i++) {
            ar = small_arena(8 * MiB, caps[i], 0);
            REQUIRE(ar != NULL);
            CHECK_EQ(sp_arena_alloc(ar, 2 * MiB, &one), SP_OK);
            CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
            CHECK(st.mapped_bytes <= caps[i]);
            rc = sp_arena_alloc(ar, 2 * MiB, &two);
            CHECK(rc == SP_OK || rc == SP_ERR_CAP);
            CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
            CHECK(st.mapped_bytes <= caps[i]);
            if (rc == SP_OK)
                CHECK_EQ(sp_arena_release(ar, two.data), SP_OK);
            CHECK_EQ(sp_arena_release(ar, one.data), SP_OK);
            sp_arena_destroy(ar);
        }
        ar = small_arena(8 * MiB, MiB, 0); /* the block alone is over the cap */
        REQUIRE(ar != NULL);
        CHECK_EQ(sp_arena_alloc(ar, 2 * MiB, &one), SP_ERR_CAP);
        sp_arena_destroy(ar);
    }
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

static void test_arena_enospc(void)
{
    sp_arena *ar = small_arena(MiB, 0, 0);
    sp_block b;
    REQUIRE(ar != NULL);
    sp_debug_fail_fallocate(ENOSPC, 1000); /* no room for even one slot */
    CHECK_EQ(sp_arena_alloc(ar, 1000, &b), SP_ERR_NOSPACE);
    CHECK_EQ(sp_last_errno(), ENOSPC);
    CHECK_EQ(count_shm_entries(getpid()), 0);
    sp_debug_fail_fallocate(0, 0);
    CHECK_EQ(sp_arena_alloc(ar, 1000, &b), SP_OK);
    CHECK_EQ(sp_arena_release(ar, b.data), SP_OK);
    sp_arena_destroy(ar);
    {
        /* room for less than a whole slab: a smaller one holds the block */
        sp_arena_stats st;
        ar = small_arena(MiB, 0, 0);
        REQUIRE(ar != NULL);
        sp_debug_fail_fallocate(ENOSPC, 1);
        CHECK_EQ(sp_arena_alloc(ar, 200 * 1024, &b), SP_OK);
        CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
        CHECK(st.mapped_bytes < MiB);
        CHECK_EQ(st.regions, 1);
        CHECK_EQ(sp_arena_release(ar, b.data), SP_OK);
        sp_debug_fail_fallocate(0, 0);
    }
    {
        /* Beyond the largest block a region holds, at and past the edge. */
        static const uint64_t too_large[] = {
            SP_MAX_REGION_SIZE - SP_REGION_HEADER_SIZE - SP_BLOCK_HEADER_SIZE + 1,
            SP_MAX_REGION_SIZE - SP_BLOCK_HEADER_SIZE,
            SP_MAX_REGION_SIZE,
            SP_MAX_REGION_SIZE + 1,
            UINT64_MAX - SP_BLOCK_HEADER_SIZE,
            UINT64_MAX,
        };
        size_t i;
        for (i = 0; i < sizeof too_large / sizeof too_large[0]; i++) {
            CHECK_EQ(sp_arena_alloc(ar, too_large[i], &b), SP_ERR_NOSPACE);
            CHECK_EQ(sp_last_errno(), ENOSPC);
            CHECK(b.data == NULL);
        }
    }
    sp_arena_destroy(ar);
}

static void test_arena_deferred(void)
{
    sp_arena *ar = small_arena(MiB, 0, 0);
    sp_block a, b, c, big, big2;
    sp_region r, rb;
    sp_arena_stats st;
    int64_t n = 0;
    uint64_t rec = 99;
    REQUIRE(ar != NULL);
    REQUIRE(sp_arena_alloc(ar, 1000, &a) == SP_OK);
    /* "another process" takes a reference through its own mapping */
    REQUIRE(sp_region_attach(a.region_name, a.region_size, &r) == SP_OK);
    CHECK_EQ(sp_block_ref(&r, a.data_offset, +1, &n), SP_OK);
    CHECK_EQ(n, 2);
    CHECK_EQ(sp_arena_release(ar, a.data), SP_OK);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.deferred, 1);
    CHECK_EQ(st.live_blocks, 1);
    CHECK_EQ(sp_arena_release(ar, a.data), SP_ERR_REFCOUNT); /* ours is gone */
    CHECK_EQ(sp_arena_reclaim(ar, &rec), SP_OK);
    CHECK_EQ(rec, 0);
    REQUIRE(sp_arena_alloc(ar, 1000, &b) == SP_OK);
    CHECK(b.data != a.data); /* still referenced: not reused */
    /* the other side drops its reference */
    CHECK_EQ(sp_block_ref(&r, a.data_offset, -1, &n), SP_OK);
    CHECK_EQ(n, 0);
    CHECK_EQ(sp_block_ref(&r, a.data_offset, -1, &n), SP_ERR_REFCOUNT);
    CHECK_EQ(sp_arena_reclaim(ar, &rec), SP_OK);
    CHECK_EQ(rec, 1);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.deferred, 0);
    CHECK_EQ(st.live_blocks, 1);
    REQUIRE(sp_arena_alloc(ar, 1000, &c) == SP_OK);
    CHECK(c.data == a.data); /* reused now */
    CHECK_EQ(sp_arena_release(ar, b.data), SP_OK);
    CHECK_EQ(sp_arena_release(ar, c.data), SP_OK);
    CHECK_EQ(sp_region_detach(&r), SP_OK);
    CHECK_EQ(sp_arena_reclaim(ar, NULL), SP_OK);
    CHECK_EQ(sp_arena_reclaim(NULL, NULL), SP_ERR_INVALID);

    /* alloc reclaims by itself; large blocks defer too */
    REQUIRE(sp_arena_alloc(ar, 40 * MiB, &big) == SP_OK);
    REQUIRE(sp_region_attach(big.region_name, big.region_size, &rb) == SP_OK);
    CHECK_EQ(sp_block_ref(&rb, big.data_offset, +1, NULL), SP_OK);
    CHECK_EQ(sp_arena_release(ar, big.data), SP_OK);
    CHECK_EQ(sp_block_ref(&rb, big.data_offset, -1, NULL), SP_OK);
    CHECK_EQ(sp_region_detach(&rb), SP_OK);
    REQUIRE(sp_arena_alloc(ar, 40 * MiB, &big2) == SP_OK);
    CHECK(big2.data == big.data);
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.deferred, 0);
    CHECK_EQ(sp_arena_release(ar, big2.data), SP_OK);

    /* small: alloc reclaims when the class has nothing free */
    REQUIRE(sp_arena_alloc(ar, 100, &a) == SP_OK);
    REQUIRE(sp_region_attach(a.region_name, a.region_size, &r) == SP_OK);
    CHECK_EQ(sp_block_ref(&r, a.data_offset, +1, NULL), SP_OK);
    CHECK_EQ(sp_arena_release(ar, a.data), SP_OK);
    CHECK_EQ(sp_block_ref(&r, a.data_offset, -1, NULL), SP_OK);
    CHECK_EQ(sp_region_detach(&r), SP_OK);
    {
        /* use up the 256-byte slab so alloc must look at deferred blocks */
        sp_block *v = (sp_block *)calloc(8192, sizeof *v);
        int i, k = 0, found = 0;
        REQUIRE(v != NULL);
        CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
        for (i = 0; i < 8192; i++) {
            if (sp_arena_alloc(ar, 100, &v[i]) != SP_OK)
                break;
            k++;
            if (v[i].data == a.data) {
                found = 1;
                break;
            }
        }
        CHECK(found);
        CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
        CHECK_EQ(st.deferred, 0);
        for (i = 0; i < k; i++)
            CHECK_EQ(sp_arena_release(ar, v[i].data), SP_OK);
        free(v);
    }
    sp_arena_destroy(ar);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

static void test_arena_fork_child(void)
{
    sp_arena *ar = small_arena(MiB, 0, 1);
    sp_block b;
    pid_t pid;
    int status = 0;
    sp_block_header *h;
    REQUIRE(ar != NULL);
    REQUIRE(sp_arena_alloc(ar, 5000, &b) == SP_OK);
    memset(b.data, 0, 5000);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        sp_region r;
        int64_t n = 0;
        if (sp_region_attach(b.region_name, b.region_size, &r) != SP_OK)
            _exit(2);
        if (sp_block_lookup(&r, b.data_offset, b.nbytes, NULL) != SP_OK)
            _exit(3);
        if (sp_block_ref(&r, b.data_offset, +1, &n) != SP_OK || n != 2)
            _exit(4);
        memcpy(r.base + b.data_offset, "child was here", 15);
        sp_region_detach(&r);
        _exit(0);
    }
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    CHECK(memcmp(b.data, "child was here", 15) == 0);
    h = (sp_block_header *)(void *)(b.data - SP_BLOCK_HEADER_SIZE);
    CHECK_EQ(h->refcount, 2); /* the child's reference is still held */
    CHECK_EQ(sp_arena_release(ar, b.data), SP_OK);
    CHECK_EQ(h->refcount, 1);
    /* a child drops the reference it left behind */
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        sp_region r;
        if (sp_region_attach(b.region_name, b.region_size, &r) != SP_OK)
            _exit(2);
        if (sp_block_ref(&r, b.data_offset, -1, NULL) != SP_OK)
            _exit(3);
        sp_region_detach(&r);
        _exit(0);
    }
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    {
        uint64_t rec = 0;
        CHECK_EQ(sp_arena_reclaim(ar, &rec), SP_OK);
        CHECK_EQ(rec, 1);
    }
    sp_arena_destroy(ar);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

/* ---- multithreaded stress ---- */

typedef struct stress_arg {
    sp_arena *ar;
    unsigned seed;
    int id;
    int errors;
} stress_arg;

static unsigned xorshift(unsigned *s)
{
    unsigned x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void *stress_thread(void *p)
{
    stress_arg *a = (stress_arg *)p;
    enum { HOLD = 24, ITERS = 4000 };
    sp_block held[HOLD];
    int have[HOLD];
    int i, k;
    memset(have, 0, sizeof have);
    for (i = 0; i < ITERS; i++) {
        k = (int)(xorshift(&a->seed) % HOLD);
        if (have[k]) {
            uint64_t j, n = held[k].nbytes;
            uint8_t tag = (uint8_t)(a->id * 16 + k);
            for (j = 0; j < n; j += 97) {
                if (held[k].data[j] != tag) {
                    a->errors++;
                    break;
                }
            }
            if (sp_arena_release(a->ar, held[k].data) != SP_OK)
                a->errors++;
            have[k] = 0;
        } else {
            uint64_t n = xorshift(&a->seed) % 70000;
            if (xorshift(&a->seed) % 4 == 0)
                n %= 600;
            if (sp_arena_alloc(a->ar, n, &held[k]) != SP_OK) {
                a->errors++;
                continue;
            }
            memset(held[k].data, a->id * 16 + k, (size_t)n);
            have[k] = 1;
        }
    }
    for (k = 0; k < HOLD; k++) {
        if (have[k] && sp_arena_release(a->ar, held[k].data) != SP_OK)
            a->errors++;
    }
    return NULL;
}

static void test_arena_threads(void)
{
    enum { T = 4 };
    sp_arena *ar = small_arena(2 * MiB, 0, 1);
    pthread_t th[T];
    stress_arg args[T];
    sp_arena_stats st;
    int i;
    REQUIRE(ar != NULL);
    for (i = 0; i < T; i++) {
        args[i].ar = ar;
        args[i].seed = 0x9e3779b9u * (unsigned)(i + 1);
        args[i].id = i;
        args[i].errors = 0;
        REQUIRE(pthread_create(&th[i], NULL, stress_thread, &args[i]) == 0);
    }
    for (i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(args[i].errors, 0);
    }
    CHECK_EQ(sp_arena_stats_get(ar, &st), SP_OK);
    CHECK_EQ(st.live_blocks, 0);
    CHECK_EQ(st.live_bytes, 0);
    CHECK_EQ(st.deferred, 0);
    CHECK(st.allocations > 1000);
    CHECK(st.reuses > st.allocations / 2);
    sp_arena_destroy(ar);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

static void test_arena_destroy_with_live(void)
{
    sp_arena *ar = small_arena(MiB, 0, 0);
    sp_block a, b;
    REQUIRE(ar != NULL);
    REQUIRE(sp_arena_alloc(ar, 10, &a) == SP_OK);
    REQUIRE(sp_arena_alloc(ar, 40 * MiB, &b) == SP_OK);
    CHECK_EQ(count_shm_entries(getpid()), 2);
    sp_arena_destroy(ar);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

static void test_arena_unlink_all(void)
{
    sp_arena *ar = small_arena(MiB, 0, 0);
    sp_block a, b, c;
    REQUIRE(ar != NULL);
    REQUIRE(sp_arena_alloc(ar, 100, &a) == SP_OK);
    REQUIRE(sp_arena_alloc(ar, 40 * MiB, &b) == SP_OK);
    a.data[0] = 7;
    CHECK_EQ(count_shm_entries(getpid()), 2);
    CHECK_EQ(sp_arena_unlink_all(ar), SP_OK);
    CHECK_EQ(count_shm_entries(getpid()), 0);
    /* Memory stays mapped and usable; new allocations are refused. */
    CHECK_EQ(a.data[0], 7);
    b.data[b.nbytes - 1] = 9;
    CHECK_EQ(sp_arena_alloc(ar, 100, &c), SP_ERR_INVALID);
    CHECK_EQ(sp_arena_unlink_all(ar), SP_OK);
    CHECK_EQ(sp_arena_unlink_all(NULL), SP_ERR_INVALID);
    sp_arena_destroy(ar);
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

static void *errno_thread(void *p)
{
    sp_region r;
    int *out = (int *)p;
    out[0] = sp_region_attach(NULL, 0, &r);
    out[1] = sp_last_errno();
    return NULL;
}

static void test_last_errno(void)
{
    char name[SP_NAME_MAX];
    sp_region r;
    pthread_t th;
    int res[2] = {0, 0};
    fake_name(name, sizeof name, "0000000000000002");
    shm_unlink(name);
    CHECK_EQ(sp_region_attach(name, 0, &r), SP_ERR_NOTFOUND);
    CHECK_EQ(sp_last_errno(), ENOENT);
    /* thread-local: another thread's failure does not overwrite ours */
    REQUIRE(pthread_create(&th, NULL, errno_thread, res) == 0);
    pthread_join(th, NULL);
    CHECK_EQ(res[0], SP_ERR_NAME);
    CHECK_EQ(res[1], EINVAL);
    CHECK_EQ(sp_last_errno(), ENOENT);
}

static void test_no_leftovers(void)
{
    CHECK_EQ(count_shm_entries(getpid()), 0);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(test_strerror);
    RUN(test_name_validate);
    RUN(test_shm_space);
    RUN(test_current_cpu);
    RUN(test_recv_some);
    RUN(test_region_roundtrip);
    RUN(test_region_detach_edge);
    RUN(test_region_mode_0600);
    RUN(test_region_create_invalid);
    RUN(test_region_prefault);
    RUN(test_attach_wrong_size);
    RUN(test_attach_foreign_object);
    RUN(test_attach_notfound_and_badname);
    RUN(test_check_span);
    RUN(test_block_lookup);
    RUN(test_block_ref);
    RUN(test_injected_enospc);
    RUN(test_fork_child_writes);
    RUN(test_last_errno);
    RUN(test_arena_unlink_all);
    RUN(test_arena_basic);
    RUN(test_arena_adopt);
    RUN(test_arena_fork_child_leaves_parents_references);
    RUN(test_arena_zero_and_sizes);
    RUN(test_arena_slab_carving);
    RUN(test_arena_large);
    RUN(test_arena_large_cache_bound);
    RUN(test_arena_cap);
    RUN(test_arena_enospc);
    RUN(test_arena_deferred);
    RUN(test_arena_fork_child);
    RUN(test_arena_threads);
    RUN(test_arena_destroy_with_live);
    RUN(test_no_leftovers);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
