/*
 * snakepit_core.h -- public C API of the snakepit shared-memory core.
 *
 * Plain C (C11), no Python. Every function validates what it is handed and
 * reports failure through an sp_status code; nothing here aborts the caller.
 *
 * Concepts
 *   region  A named POSIX shared-memory object "/snakepit-<owner pid>-<16 hex>",
 *           mode 0600, that starts with an sp_region_header.
 *   block   One allocation inside a region. It starts with an sp_block_header
 *           (SP_BLOCK_HEADER_SIZE bytes) followed by the user data. The
 *           block's reference count lives in shared memory, so every process
 *           that maps the region can take and drop references.
 *   arena   A per-process allocator that serves blocks from pre-faulted
 *           regions in size classes and reuses freed blocks; allocations above
 *           SP_ARENA_LARGE_THRESHOLD get a region of their own, which is cached
 *           for reuse after it is freed.
 *
 * Offsets handed across processes ("data offsets") are byte offsets of the
 * user data from the start of the mapping, i.e. they include the region
 * header and the block header.
 */
#ifndef SNAKEPIT_CORE_H
#define SNAKEPIT_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SP_CORE_VERSION_MAJOR 0
#define SP_CORE_VERSION_MINOR 8
#define SP_CORE_VERSION_PATCH 0

/* Region layout version; bump whenever the header layout changes. */
#define SP_LAYOUT_VERSION 1u
/* "SNKPTRGN" read as little-endian uint64. */
#define SP_REGION_MAGIC UINT64_C(0x4e4752544b504e53)
/* "SNKPTBLK" read as little-endian uint64. */
#define SP_BLOCK_MAGIC UINT64_C(0x4b4c42544b504e53)

#define SP_REGION_HEADER_SIZE 128u
#define SP_BLOCK_HEADER_SIZE 64u
/* Every data pointer handed out is aligned to this many bytes. */
#define SP_ALIGNMENT 64u
/* "/snakepit-" + up to 10 pid digits + "-" + 16 hex digits + NUL. */
#define SP_NAME_MAX 64u
#define SP_NAME_PREFIX "/snakepit-"
#define SP_NAME_RANDOM_HEX 16u
/* Allocations above this size get a dedicated region. */
#define SP_ARENA_LARGE_THRESHOLD (UINT64_C(32) << 20)
/* Largest size any single region may have (guards overflow). */
#define SP_MAX_REGION_SIZE (UINT64_C(1) << 46)

typedef enum sp_status {
    SP_OK = 0,
    SP_ERR_INVALID = -1,    /* bad argument (NULL, zero, flags) */
    SP_ERR_NAME = -2,       /* name is not /snakepit-<pid>-<16 hex> */
    SP_ERR_MAGIC = -3,      /* region or block header magic is wrong */
    SP_ERR_VERSION = -4,    /* layout version not supported */
    SP_ERR_SIZE = -5,       /* object size disagrees with header/expectation */
    SP_ERR_RANGE = -6,      /* offset/length outside the region data */
    SP_ERR_NOSPACE = -7,    /* not enough room in the shm filesystem (ENOSPC) */
    SP_ERR_CAP = -8,        /* would exceed the configured arena cap */
    SP_ERR_NOMEM = -9,      /* malloc/mmap failed */
    SP_ERR_NOTFOUND = -10,  /* no such region (ENOENT) */
    SP_ERR_EXISTS = -11,    /* region exists (EEXIST) */
    SP_ERR_PERM = -12,      /* permission denied (EACCES/EPERM) */
    SP_ERR_OS = -13,        /* other OS error: see sp_last_errno() */
    SP_ERR_REFCOUNT = -14,  /* refcount would drop below zero / block not live */
    SP_ERR_OVERFLOW = -15,  /* size arithmetic overflowed */
    SP_ERR_NO_DRIVER = -16, /* CUDA driver library missing, incomplete or unusable */
    SP_ERR_CUDA = -17,      /* a CUDA driver call failed: see sp_cuda_last_result() */
    SP_ERR_UNSHAREABLE = -18 /* CUDA memory of a kind legacy IPC cannot share */
} sp_status;

/* Static description of an error code. Never NULL. */
const char *sp_strerror(int status);
/* errno captured by the last failing call on this thread (0 if none). */
int sp_last_errno(void);

/* ---- shared-memory layout (pinned with static_assert in the sources) ---- */

typedef struct sp_region_header {
    uint64_t magic;        /* SP_REGION_MAGIC */
    uint32_t version;      /* SP_LAYOUT_VERSION */
    uint32_t header_size;  /* SP_REGION_HEADER_SIZE */
    uint64_t total_size;   /* size of the whole object, header included */
    int64_t owner_pid;     /* process that created (and will unlink) it */
    int64_t refcount;      /* atomic: processes that have it mapped */
    uint64_t flags;        /* bit 0: dedicated (one block) */
    uint8_t reserved[80];
} sp_region_header;

typedef struct sp_block_header {
    uint64_t magic;        /* SP_BLOCK_MAGIC */
    uint64_t capacity;     /* usable bytes after this header */
    uint64_t nbytes;       /* bytes requested by the allocation */
    int64_t refcount;      /* atomic: live references in all processes */
    uint64_t generation;   /* bumped each time the block is reused */
    uint8_t reserved[24];
} sp_block_header;

/* A mapping of one region in this process. */
typedef struct sp_region {
    char name[SP_NAME_MAX];
    uint8_t *base;       /* start of the mapping (the region header) */
    uint64_t size;       /* total mapped size */
    int fd;              /* -1 once closed */
    int owner;           /* 1 if this process created it */
} sp_region;

/* ---- names ---- */

/* SP_OK if name has exactly the form /snakepit-<pid>-<16 lowercase hex>. */
int sp_name_validate(const char *name);
/* Parses the owner pid out of a valid name. */
int sp_name_owner(const char *name, int64_t *owner_pid);

/* ---- regions ---- */

/* Create flags. */
#define SP_CREATE_PREFAULT 0x1u  /* MAP_POPULATE the mapping */

/*
 * Create a new region able to hold data_size bytes after the region header.
 * Checks free space in shm_dir (statvfs; NULL means "/dev/shm") and reserves
 * the pages with posix_fallocate, so a full filesystem is SP_ERR_NOSPACE here
 * rather than SIGBUS later. Initializes the header (refcount 1).
 */
int sp_region_create(uint64_t data_size, unsigned flags, const char *shm_dir,
                     sp_region *out);
/*
 * Map an existing region by name. The name must validate; the object size must
 * equal expected_total_size when that is nonzero; the header must carry the
 * right magic, version, header size and total size. Increments the header
 * refcount on success.
 */
int sp_region_attach(const char *name, uint64_t expected_total_size,
                     sp_region *out);
/* Unmap and close; decrements the header refcount. Safe on a zeroed region. */
int sp_region_detach(sp_region *region);
/* shm_unlink a validated name. */
int sp_region_unlink(const char *name);
/* Whether [offset, offset + length) lies inside the region data area. */
int sp_region_check_span(const sp_region *region, uint64_t offset,
                         uint64_t length);

/* ---- blocks (refcounts in shared memory) ---- */

/*
 * Validate that data_offset names a live block inside region whose capacity
 * covers nbytes; on success *header (if not NULL) points at its header.
 */
int sp_block_lookup(const sp_region *region, uint64_t data_offset,
                    uint64_t nbytes, sp_block_header **header);
/* Atomically add delta (+1/-1) to a validated block's refcount; the new value
 * is stored in *new_count when not NULL. Refuses to go below zero or to touch
 * a block whose refcount is already 0 when delta > 0. */
int sp_block_ref(const sp_region *region, uint64_t data_offset, int delta,
                 int64_t *new_count);

/* ---- shm filesystem ---- */

/* statvfs(shm_dir or "/dev/shm"): total and available bytes. */
int sp_shm_space(const char *shm_dir, uint64_t *total, uint64_t *available);

/* ---- scheduling ---- */

/* The CPU the calling thread runs on (sched_getcpu: a vDSO read, no system
 * call on Linux), or -1 where the system cannot say. A hint only: the
 * thread may move right after. */
int sp_current_cpu(void);

/* ---- streams ---- */

/* Receive up to `len` bytes from the stream socket `fd` into `buf`, waiting
 * for all of them unless a signal or the end of the stream comes first.
 * SP_OK with *received >= 1: that many arrived (fewer than `len`: call again
 * for the rest, after running signal handlers); SP_OK with *received == 0:
 * the stream ended. SP_ERR_OS on failure (sp_last_errno(): EINTR when a
 * signal came before any byte); SP_ERR_INVALID for a NULL buffer, a zero
 * length or a negative fd. */
int sp_recv_some(int fd, void *buf, size_t len, size_t *received);

/* ---- arena ---- */

typedef struct sp_arena sp_arena;

typedef struct sp_arena_config {
    uint64_t cap_bytes;      /* max bytes of regions alive at once; 0 = none */
    uint64_t slab_bytes;     /* size of a small-class region; 0 = 8 MiB */
    uint64_t cache_bytes;    /* max bytes of freed large regions kept; 0 = 1 GiB */
    const char *shm_dir;     /* NULL = "/dev/shm" (copied) */
    int prefault;            /* nonzero: populate new regions */
} sp_arena_config;

typedef struct sp_block {
    char region_name[SP_NAME_MAX];
    uint8_t *data;           /* aligned to SP_ALIGNMENT */
    uint64_t data_offset;    /* offset of data from the region base */
    uint64_t nbytes;         /* requested size */
    uint64_t capacity;       /* usable size */
    uint64_t region_size;    /* total size of the region (for attach) */
} sp_block;

typedef struct sp_arena_stats {
    uint64_t regions;          /* regions currently mapped */
    uint64_t mapped_bytes;     /* total size of those regions */
    uint64_t live_blocks;      /* blocks handed out and not yet reclaimed */
    uint64_t live_bytes;       /* capacity of those blocks */
    uint64_t allocations;      /* sp_arena_alloc successes, ever */
    uint64_t reuses;           /* allocations served without a new region */
    uint64_t regions_created;  /* regions ever created */
    uint64_t deferred;         /* released blocks still referenced elsewhere */
} sp_arena_stats;

/* Create an arena (config may be NULL for defaults). */
int sp_arena_create(const sp_arena_config *config, sp_arena **out);
/* Allocate nbytes (0 allowed: yields a block of capacity >= 1). The block's
 * refcount starts at 1, owned by the caller. Thread-safe. */
int sp_arena_alloc(sp_arena *arena, uint64_t nbytes, sp_block *out);
/* Drop the caller's reference to a block it allocated (by data pointer). When
 * the count reaches 0 the block is free for reuse at once; otherwise it is
 * deferred and reclaimed once other processes drop theirs. Thread-safe. */
int sp_arena_release(sp_arena *arena, const uint8_t *data);
/* Take one more reference, in this process, on the live block of this arena
 * whose data [data, data + nbytes) holds the len bytes at p, and describe the
 * block in *out (a worker's result that numpy allocated in the arena travels
 * without a copy: see _core/_warm.pxi). The reference is dropped with
 * sp_arena_unref, never sp_arena_release. SP_ERR_NOTFOUND (errno ENOENT) when
 * the bytes are not inside one live block of this arena (nothing changes),
 * SP_ERR_INVALID for NULL arguments or an unlinked arena. Thread-safe. */
int sp_arena_adopt(sp_arena *arena, const void *p, uint64_t len, sp_block *out);
/* Drop a reference taken by sp_arena_adopt (by the block's data pointer). A
 * released block whose count reaches 0 is reclaimed at once. SP_ERR_INVALID
 * for a pointer that is no block's data, SP_ERR_REFCOUNT when the block holds
 * no such reference (a live block keeps its owner's). Thread-safe. */
int sp_arena_unref(sp_arena *arena, const uint8_t *data);
/* Reclaim deferred blocks whose refcount has reached 0; returns how many in
 * *reclaimed when not NULL. Called by sp_arena_alloc as needed. */
int sp_arena_reclaim(sp_arena *arena, uint64_t *reclaimed);
/* Unmap and unlink cached free large regions. */
int sp_arena_trim(sp_arena *arena);
int sp_arena_stats_get(sp_arena *arena, sp_arena_stats *out);
/* Change the cap at run time (0 = none). */
int sp_arena_set_cap(sp_arena *arena, uint64_t cap_bytes);
/* Unlink the names of every region of the arena but keep the mappings, so
 * memory stays valid for this process and nothing outlives it in /dev/shm
 * (for use at process exit). Later allocations fail with SP_ERR_INVALID. */
int sp_arena_unlink_all(sp_arena *arena);
/* Unmap and unlink every region of the arena, then free it. NULL is fine.
 *
 * In a process forked after the arena was made, the arena is the parent's:
 * sp_arena_release, sp_arena_unref and sp_arena_unlink_all do nothing there
 * and return SP_OK (the child took none of those references and owns none
 * of those names), sp_arena_alloc and sp_arena_adopt fail with
 * SP_ERR_INVALID (the parent hands out those blocks), and sp_arena_destroy
 * unmaps without unlinking. */
void sp_arena_destroy(sp_arena *arena);

/* ---- DLPack (ABI of dmlc/dlpack v1.1, declared here under sp_ names) ----
 *
 * These mirror DLPackVersion, DLDevice, DLDataType, DLTensor, DLManagedTensor
 * (legacy) and DLManagedTensorVersioned field for field (sizes and offsets are
 * pinned with static_assert in sp_dlpack.c), so a pointer to one may be handed
 * to any DLPack consumer. They carry sp_ names so that this header can be
 * included next to dlpack.h.
 */

#define SP_DLPACK_MAJOR_VERSION 1u
#define SP_DLPACK_MINOR_VERSION 1u

/* DLDeviceType values used here. */
#define SP_DL_CPU 1
/* DLDataTypeCode values. */
#define SP_DL_INT 0
#define SP_DL_UINT 1
#define SP_DL_FLOAT 2
#define SP_DL_OPAQUE_HANDLE 3
#define SP_DL_BFLOAT 4
#define SP_DL_COMPLEX 5
#define SP_DL_BOOL 6
/* DLManagedTensorVersioned.flags. */
#define SP_DLPACK_FLAG_READ_ONLY (UINT64_C(1) << 0)
#define SP_DLPACK_FLAG_IS_COPIED (UINT64_C(1) << 1)
#define SP_DLPACK_FLAG_IS_SUBBYTE_TYPE_PADDED (UINT64_C(1) << 2)
/* Most dimensions sp_dlpack_export accepts. */
#define SP_DLPACK_MAX_NDIM 64

typedef struct sp_dlpack_version {
    uint32_t major;
    uint32_t minor;
} sp_dlpack_version;

typedef struct sp_dl_device {
    int32_t device_type;   /* DLDeviceType (an int32 enum) */
    int32_t device_id;
} sp_dl_device;

typedef struct sp_dl_data_type {
    uint8_t code;          /* DLDataTypeCode */
    uint8_t bits;
    uint16_t lanes;
} sp_dl_data_type;

typedef struct sp_dl_tensor {
    void *data;
    sp_dl_device device;
    int32_t ndim;
    sp_dl_data_type dtype;
    int64_t *shape;
    int64_t *strides;      /* in elements; NULL means compact row-major */
    uint64_t byte_offset;
} sp_dl_tensor;

typedef struct sp_dl_managed_tensor {
    sp_dl_tensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct sp_dl_managed_tensor *self);
} sp_dl_managed_tensor;

typedef struct sp_dl_managed_tensor_versioned {
    sp_dlpack_version version;
    void *manager_ctx;
    void (*deleter)(struct sp_dl_managed_tensor_versioned *self);
    uint64_t flags;
    sp_dl_tensor dl_tensor;  /* last, so the fields above stay ABI-stable */
} sp_dl_managed_tensor_versioned;

/* Export flags. */
#define SP_DLPACK_EXPORT_VERSIONED 0x1u  /* build a DLManagedTensorVersioned */
#define SP_DLPACK_EXPORT_READ_ONLY 0x2u  /* set READ_ONLY (versioned only) */

/*
 * Describe a view of one block of a mapped region as a DLPack tensor on the
 * CPU, without copying.
 *
 *   data_offset  offset of the block's data from the region base (as for
 *                sp_block_lookup); nbytes: the span of the block the view may
 *                touch (at most its capacity).
 *   byte_offset  where element [0, ..., 0] lies, in bytes from the block data.
 *   shape        ndim (0..SP_DLPACK_MAX_NDIM) non-negative extents.
 *   byte_strides ndim strides in BYTES (snakepit's convention), or NULL for
 *                C-contiguous. Each must be a multiple of the item size
 *                (bits / 8) unless its dimension has extent 0 or 1; they are
 *                converted to the element strides DLPack uses.
 *   code, bits   DLDataTypeCode and bit width (a multiple of 8); lanes is 1.
 *
 * Every byte the view touches must lie inside [0, nbytes) of the block, or
 * the call fails with SP_ERR_RANGE. On success *out points at one heap block
 * holding the managed struct and its shape and strides. The tensor holds its
 * own mapping of the region and one reference on the block (sp_block_ref
 * +1), so it stays valid after `region` is detached; its deleter drops the
 * reference, unmaps, and frees the heap block. The deleter touches no Python
 * state and may run on any thread. *out is the sp_dl_managed_tensor_versioned
 * when flags has SP_DLPACK_EXPORT_VERSIONED, else the sp_dl_managed_tensor.
 * The region must have been created or attached by this process (its fd is
 * still open).
 */
int sp_dlpack_export(const sp_region *region, uint64_t data_offset,
                     uint64_t nbytes, uint64_t byte_offset, int32_t ndim,
                     const int64_t *shape, const int64_t *byte_strides,
                     uint8_t code, uint8_t bits, unsigned flags, void **out);

/* ---- CUDA IPC through the driver API, loaded at run time ----
 *
 * The driver library is opened with dlopen (nothing links against CUDA) and
 * the entry points are resolved by name. cuda.h #defines cuIpcOpenMemHandle
 * and cuMemGetAddressRange to their _v2 symbols, so those are the names
 * resolved. Handles mirror CUipcMemHandle (64 opaque bytes, pinned with
 * static_assert in sp_cuda.c).
 *
 * Context rule: export uses the calling thread's current context when there
 * is one, else the primary context of device_id; open and close always run in
 * the primary context of device_id. The previous current context is restored
 * afterwards. A handle cannot be opened in the process that exported it (the
 * driver answers CUDA_ERROR_INVALID_CONTEXT); every successful open must be
 * paired with one close.
 *
 * Failures: SP_ERR_INVALID for bad arguments, SP_ERR_NO_DRIVER when the
 * library cannot be loaded, lacks a required symbol, or cuInit fails,
 * SP_ERR_CUDA when a driver call fails, SP_ERR_UNSHAREABLE when export meets
 * memory legacy IPC cannot share (see "memory kinds" below). sp_cuda_last_result() then holds the
 * raw CUresult and sp_cuda_last_message() a readable description (both per
 * thread).
 */

#define SP_CUDA_IPC_HANDLE_SIZE 64u
#define SP_CUDA_DEFAULT_DRIVER "libcuda.so.1"
/* Device ordinals accepted: [0, SP_CUDA_MAX_DEVICES). */
#define SP_CUDA_MAX_DEVICES 64
/* CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS, passed to cuIpcOpenMemHandle_v2. */
#define SP_CUDA_IPC_LAZY_ENABLE_PEER_ACCESS 0x1u
/* CUresult values the core itself refers to. */
#define SP_CUDA_SUCCESS 0
#define SP_CUDA_ERROR_INVALID_CONTEXT 201

typedef struct sp_cuda_ipc_handle {
    char reserved[SP_CUDA_IPC_HANDLE_SIZE];
} sp_cuda_ipc_handle;

typedef struct sp_cuda_driver sp_cuda_driver;

/* dlopen path (NULL = SP_CUDA_DEFAULT_DRIVER), resolve the entry points and
 * call cuInit(0). */
int sp_cuda_load(const char *path, sp_cuda_driver **out);
/* Release retained primary contexts and dlclose. NULL is fine. */
void sp_cuda_unload(sp_cuda_driver *driver);
/* Raw CUresult of the last failing CUDA call on this thread (0 if none). */
int sp_cuda_last_result(void);
/* Description of the last sp_cuda_* failure on this thread ("" if none). */
const char *sp_cuda_last_message(void);
/*
 * Handle for the allocation that contains device_ptr: the base is found with
 * cuMemGetAddressRange_v2 and its handle taken with cuIpcGetMemHandle, so an
 * interior pointer yields (handle, *offset = device_ptr - base). *alloc_size
 * is the size of the whole allocation. Memory of a kind legacy IPC cannot
 * share fails with SP_ERR_UNSHAREABLE (sp_cuda_pointer_info_get tells which).
 */
int sp_cuda_ipc_export(sp_cuda_driver *driver, int device_id,
                       uint64_t device_ptr, sp_cuda_ipc_handle *handle,
                       uint64_t *offset, uint64_t *alloc_size);
/*
 * Open a handle from another process in device_id's primary context.
 * *base_ptr is the base of the mapped allocation; *alloc_size (when not
 * NULL) its size from cuMemGetAddressRange_v2, or 0 if the driver cannot
 * tell.
 */
int sp_cuda_ipc_open(sp_cuda_driver *driver, int device_id,
                     const sp_cuda_ipc_handle *handle, uint64_t *base_ptr,
                     uint64_t *alloc_size);
/* cuIpcCloseMemHandle on a base pointer returned by sp_cuda_ipc_open. */
int sp_cuda_ipc_close(sp_cuda_driver *driver, int device_id,
                      uint64_t base_ptr);

/* ---- devices by UUID ----
 *
 * Ordinals are per process (CUDA_VISIBLE_DEVICES renumbers them); the 16-byte
 * UUID names the same GPU in every process. cuDeviceGetUuid_v2 is resolved
 * (cuda.h #defines cuDeviceGetUuid to it since CUDA 11.4; it gives MIG
 * instances their own UUID), falling back to cuDeviceGetUuid. Neither needs
 * a context.
 */

#define SP_CUDA_UUID_SIZE 16u

/* cuDeviceGetCount: devices visible to this process. */
int sp_cuda_device_count(sp_cuda_driver *driver, int *count);
/* UUID of this process's device_id. */
int sp_cuda_device_uuid(sp_cuda_driver *driver, int device_id,
                        uint8_t uuid[SP_CUDA_UUID_SIZE]);

/* ---- memory kinds ----
 *
 * Legacy IPC (cuIpcGetMemHandle) shares only cuMemAlloc allocations. Memory
 * from a stream-ordered pool (cudaMallocAsync, torch's cudaMallocAsync backend),
 * from the virtual memory management API (cuMemCreate + cuMemMap, as torch's
 * expandable_segments allocates), managed
 * memory and pinned host memory need another way, so sp_cuda_ipc_export
 * refuses them with SP_ERR_UNSHAREABLE before asking the driver for a handle.
 * The kind is read with cuPointerGetAttribute:
 *   CU_POINTER_ATTRIBUTE_IS_MANAGED (8)                  -> MANAGED
 *   CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE (17) not NULL    -> POOL (CUDA >= 11.3)
 *   CU_POINTER_ATTRIBUTE_MEMORY_TYPE (2) == HOST (1)     -> HOST
 *   CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE (10) == 0 -> VMM
 *   otherwise                                            -> DEVICE
 * An attribute the driver does not know (older drivers answer
 * CUDA_ERROR_INVALID_VALUE) is treated as "not that kind"; legacy_ipc is then
 * -1. Attribute numbers as in cuda.h (cuda.bindings PointerAttribute).
 */

#define SP_CUDA_MEMORY_UNKNOWN 0
#define SP_CUDA_MEMORY_DEVICE 1   /* cuMemAlloc: legacy IPC shares it */
#define SP_CUDA_MEMORY_POOL 2     /* stream-ordered pool (cudaMallocAsync) */
#define SP_CUDA_MEMORY_VMM 3      /* cuMemCreate/cuMemMap (not IPC capable) */
#define SP_CUDA_MEMORY_MANAGED 4  /* cuMemAllocManaged */
#define SP_CUDA_MEMORY_HOST 5     /* pinned or registered host memory */

#define SP_CUDA_POINTER_ATTRIBUTE_MEMORY_TYPE 2
#define SP_CUDA_POINTER_ATTRIBUTE_IS_MANAGED 8
#define SP_CUDA_POINTER_ATTRIBUTE_DEVICE_ORDINAL 9
#define SP_CUDA_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE 10
#define SP_CUDA_POINTER_ATTRIBUTE_MEMPOOL_HANDLE 17
#define SP_CUDA_MEMORYTYPE_HOST 1u

typedef struct sp_cuda_pointer_info {
    int32_t kind;            /* SP_CUDA_MEMORY_* */
    int32_t device_ordinal;  /* this process's ordinal, -1 if unknown */
    int32_t legacy_ipc;      /* IS_LEGACY_CUDA_IPC_CAPABLE: 1, 0, -1 unknown */
    int32_t reserved;
    uint64_t base;           /* cuMemGetAddressRange_v2; 0 if it failed */
    uint64_t size;
} sp_cuda_pointer_info;

/* What kind of memory ptr is (in the current context, else device_id's
 * primary context). A pointer the driver does not know at all fails with
 * SP_ERR_CUDA (CUDA_ERROR_INVALID_VALUE). */
int sp_cuda_pointer_info_get(sp_cuda_driver *driver, int device_id,
                             uint64_t ptr, sp_cuda_pointer_info *out);
/* sp_cuda_ipc_export that also reports what it found about the pointer in
 * *info (when not NULL; filled once the kind is known, even if the export
 * then fails with SP_ERR_UNSHAREABLE). */
int sp_cuda_ipc_export_info(sp_cuda_driver *driver, int device_id,
                            uint64_t device_ptr, sp_cuda_ipc_handle *handle,
                            uint64_t *offset, uint64_t *alloc_size,
                            sp_cuda_pointer_info *info);

/* ---- ordering and copies ----
 *
 * The producer's pending work must be complete before another process reads
 * the memory behind a handle. sp_cuda_synchronize waits on the host for it,
 * in device_id's primary context: with stream NULL the whole context
 * (cuCtxSynchronize), else that one stream (cuStreamSynchronize; 0x1 and 0x2
 * are CU_STREAM_LEGACY and CU_STREAM_PER_THREAD).
 *
 * Memory legacy IPC cannot share is copied once into a cuMemAlloc_v2
 * allocation that it can (sp_cuda_mem_alloc, sp_cuda_memcpy, then
 * sp_cuda_synchronize: a device-to-device copy is asynchronous to the host).
 * cuda.h #defines cuMemAlloc, cuMemFree and cuMemcpyDtoD to their _v2
 * symbols, which are the ones resolved.
 */
int sp_cuda_synchronize(sp_cuda_driver *driver, int device_id,
                        const uint64_t *stream);
int sp_cuda_mem_alloc(sp_cuda_driver *driver, int device_id, uint64_t nbytes,
                      uint64_t *ptr);
int sp_cuda_mem_free(sp_cuda_driver *driver, int device_id, uint64_t ptr);
int sp_cuda_memcpy(sp_cuda_driver *driver, int device_id, uint64_t dst,
                   uint64_t src, uint64_t nbytes);

/* ---- copies ---- */

/* Copies of at least this many bytes stream (non-temporal stores into a
 * cache-aligned destination); smaller ones are memcpy. Measured on a 2-core
 * EPYC VM (32 MiB L3, glibc 2.36), a numpy array (16 bytes into a page) into
 * a block (192), streaming over memcpy's time: 1.42x at 4 MiB, 0.99x at
 * 8 MiB, 0.69x at 16 MiB, 0.65x at 32 MiB, 0.70x at 128 MiB, 0.99x at
 * 256 MiB (glibc streams too there), 0.79x at 1 GiB; copying and then
 * reading the copy back, 0.88x at 8 MiB. */
#define SP_COPY_STREAM_BYTES (UINT64_C(8) << 20)

/* Copies of at least this many bytes are split between threads, one piece
 * of at least SP_COPY_PIECE_BYTES per thread, at most SP_COPY_MAX_THREADS,
 * no more than the CPUs the caller may run on (see sp_copy.c). */
#define SP_COPY_PARALLEL_BYTES (UINT64_C(64) << 20)
#define SP_COPY_PIECE_BYTES (UINT64_C(32) << 20)
#define SP_COPY_MAX_THREADS 4u

/*
 * Copy n bytes from src to dst at memory speed whatever their relative
 * alignment (see sp_copy.c). SP_ERR_INVALID (errno EINVAL) for a NULL pointer
 * with n > 0, a range that wraps the address space, or overlapping ranges;
 * nothing is written then. n == 0 is a no-op.
 */
int sp_copy(void *dst, const void *src, uint64_t n);

/* ---- warm buffers (sp_warm.c) ----
 *
 * A cache of anonymous mappings for large allocations (a numpy allocator in
 * workers): freed buffers stay mapped, within cache_bytes and at most 64 of
 * them, oldest dropped first, and serve later requests of a similar size
 * (up to a quarter larger) with their pages already present. Thread-safe.
 */

typedef struct sp_warm sp_warm;

typedef struct sp_warm_stats {
    uint64_t maps;          /* fresh mappings made */
    uint64_t reuses;        /* requests served from the cache */
    uint64_t unmaps;        /* buffers given back to the system */
    uint64_t live_bytes;    /* mapped bytes handed out now */
    uint64_t cached_bytes;  /* mapped bytes kept for reuse */
    uint64_t live_buffers;
    uint64_t cached_buffers;
} sp_warm_stats;

/* A cache for requests of at least min_bytes (> 0), keeping up to
 * cache_bytes of freed buffers (0: keep none). */
int sp_warm_create(uint64_t min_bytes, uint64_t cache_bytes, sp_warm **out);
/* A buffer of at least nbytes (page-aligned), or NULL when nbytes is below
 * min_bytes or no memory could be mapped: the caller then uses malloc. */
void *sp_warm_alloc(sp_warm *warm, uint64_t nbytes);
/* 1 if p came from sp_warm_alloc and is now released (cached or unmapped);
 * 0 if it is not this cache's (the caller frees it its own way). */
int sp_warm_free(sp_warm *warm, void *p);
/* 1 if p is a live buffer of this cache (*size: its mapped bytes). */
int sp_warm_owns(sp_warm *warm, const void *p, uint64_t *size);
/* Unmap every cached buffer (live ones are untouched). */
int sp_warm_trim(sp_warm *warm);
int sp_warm_stats_get(sp_warm *warm, sp_warm_stats *out);
/* Unmap everything, live buffers included. NULL is fine. */
void sp_warm_destroy(sp_warm *warm);

/* ---- fault injection for tests ---- */

/* Make the next `count` posix_fallocate calls fail with errno `err`
 * (e.g. ENOSPC); count 0 disables. Process-wide. */
void sp_debug_fail_fallocate(int err, int count);

#ifdef __cplusplus
}
#endif
#endif /* SNAKEPIT_CORE_H */
