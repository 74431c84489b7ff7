# Declarations of the C core's public API (csrc/snakepit_core.h), nothing else.
from libc.stdint cimport int64_t, uint8_t, uint64_t


cdef extern from "snakepit_core.h" nogil:
    enum:
        SP_REGION_HEADER_SIZE
        SP_BLOCK_HEADER_SIZE
        SP_ALIGNMENT
        SP_NAME_MAX
        SP_LAYOUT_VERSION
        SP_CREATE_PREFAULT

    uint64_t SP_ARENA_LARGE_THRESHOLD
    uint64_t SP_MAX_REGION_SIZE

    ctypedef enum sp_status:
        SP_OK
        SP_ERR_INVALID
        SP_ERR_NAME
        SP_ERR_MAGIC
        SP_ERR_VERSION
        SP_ERR_SIZE
        SP_ERR_RANGE
        SP_ERR_NOSPACE
        SP_ERR_CAP
        SP_ERR_NOMEM
        SP_ERR_NOTFOUND
        SP_ERR_EXISTS
        SP_ERR_PERM
        SP_ERR_OS
        SP_ERR_REFCOUNT
        SP_ERR_OVERFLOW
        SP_ERR_NO_DRIVER
        SP_ERR_CUDA
        SP_ERR_UNSHAREABLE

    const char *sp_strerror(int status)
    int sp_last_errno()

    ctypedef struct sp_region_header:
        uint64_t magic
        unsigned int version
        unsigned int header_size
        uint64_t total_size
        int64_t owner_pid
        int64_t refcount
        uint64_t flags

    ctypedef struct sp_block_header:
        uint64_t magic
        uint64_t capacity
        uint64_t nbytes
        int64_t refcount
        uint64_t generation

    ctypedef struct sp_region:
        char name[64]
        uint8_t *base
        uint64_t size
        int fd
        int owner

    int sp_name_validate(const char *name)
    int sp_name_owner(const char *name, int64_t *owner_pid)

    int sp_region_create(uint64_t data_size, unsigned flags, const char *shm_dir,
                         sp_region *out)
    int sp_region_attach(const char *name, uint64_t expected_total_size, sp_region *out)
    int sp_region_detach(sp_region *region)
    int sp_region_unlink(const char *name)
    int sp_region_check_span(const sp_region *region, uint64_t offset, uint64_t length)

    int sp_block_lookup(const sp_region *region, uint64_t data_offset, uint64_t nbytes,
                        sp_block_header **header)
    int sp_block_ref(const sp_region *region, uint64_t data_offset, int delta,
                     int64_t *new_count)

    int sp_shm_space(const char *shm_dir, uint64_t *total, uint64_t *available)
    int sp_current_cpu() nogil
    int sp_recv_some(int fd, void *buf, size_t len, size_t *received) nogil

    ctypedef struct sp_arena:
        pass

    ctypedef struct sp_arena_config:
        uint64_t cap_bytes
        uint64_t slab_bytes
        uint64_t cache_bytes
        const char *shm_dir
        int prefault

    ctypedef struct sp_block:
        char region_name[64]
        uint8_t *data
        uint64_t data_offset
        uint64_t nbytes
        uint64_t capacity
        uint64_t region_size

    ctypedef struct sp_arena_stats:
        uint64_t regions
        uint64_t mapped_bytes
        uint64_t live_blocks
        uint64_t live_bytes
        uint64_t allocations
        uint64_t reuses
        uint64_t regions_created
        uint64_t deferred

    int sp_arena_create(const sp_arena_config *config, sp_arena **out)
    int sp_arena_alloc(sp_arena *arena, uint64_t nbytes, sp_block *out)
    int sp_arena_release(sp_arena *arena, const uint8_t *data)
    int sp_arena_adopt(sp_arena *arena, const void *p, uint64_t len, sp_block *out)
    int sp_arena_unref(sp_arena *arena, const uint8_t *data)
    int sp_arena_reclaim(sp_arena *arena, uint64_t *reclaimed)
    int sp_arena_trim(sp_arena *arena)
    int sp_arena_stats_get(sp_arena *arena, sp_arena_stats *out)
    int sp_arena_set_cap(sp_arena *arena, uint64_t cap_bytes)
    int sp_arena_unlink_all(sp_arena *arena)
    void sp_arena_destroy(sp_arena *arena)

    uint64_t SP_COPY_STREAM_BYTES
    int sp_copy(void *dst, const void *src, uint64_t n)

    ctypedef struct sp_warm:
        pass
    ctypedef struct sp_warm_stats:
        uint64_t maps
        uint64_t reuses
        uint64_t unmaps
        uint64_t live_bytes
        uint64_t cached_bytes
        uint64_t live_buffers
        uint64_t cached_buffers
    int sp_warm_create(uint64_t min_bytes, uint64_t cache_bytes, sp_warm **out)
    void *sp_warm_alloc(sp_warm *warm, uint64_t nbytes)
    int sp_warm_free(sp_warm *warm, void *p)
    int sp_warm_owns(sp_warm *warm, const void *p, uint64_t *size)
    int sp_warm_trim(sp_warm *warm)
    int sp_warm_stats_get(sp_warm *warm, sp_warm_stats *out)
    void sp_warm_destroy(sp_warm *warm)

    void sp_debug_fail_fallocate(int err, int count)

    # DLPack (sp_ mirrors of the dmlc/dlpack v1.1 structs)
    enum:
        SP_DL_CPU
        SP_DLPACK_EXPORT_VERSIONED
        SP_DLPACK_EXPORT_READ_ONLY
        SP_DLPACK_MAX_NDIM
        SP_DLPACK_MAJOR_VERSION
        SP_DLPACK_MINOR_VERSION

    uint64_t SP_DLPACK_FLAG_READ_ONLY
    uint64_t SP_DLPACK_FLAG_IS_COPIED

    ctypedef struct sp_dlpack_version:
        unsigned int major
        unsigned int minor

    ctypedef struct sp_dl_device:
        int device_type
        int device_id

    ctypedef struct sp_dl_data_type:
        uint8_t code
        uint8_t bits
        unsigned short lanes

    ctypedef struct sp_dl_tensor:
        void *data
        sp_dl_device device
        int ndim
        sp_dl_data_type dtype
        int64_t *shape
        int64_t *strides
        uint64_t byte_offset

    ctypedef struct sp_dl_managed_tensor:
        sp_dl_tensor dl_tensor
        void *manager_ctx
        void (*deleter)(sp_dl_managed_tensor *self)

    ctypedef struct sp_dl_managed_tensor_versioned:
        sp_dlpack_version version
        void *manager_ctx
        void (*deleter)(sp_dl_managed_tensor_versioned *self)
        uint64_t flags
        sp_dl_tensor dl_tensor

    int sp_dlpack_export(const sp_region *region, uint64_t data_offset, uint64_t nbytes,
                         uint64_t byte_offset, int ndim, const int64_t *shape,
                         const int64_t *byte_strides, uint8_t code, uint8_t bits,
                         unsigned flags, void **out)

    # CUDA IPC through the driver API (dlopen'ed at run time; sp_cuda.c)
    enum:
        SP_CUDA_IPC_HANDLE_SIZE
        SP_CUDA_MAX_DEVICES
        SP_CUDA_ERROR_INVALID_CONTEXT

    ctypedef struct sp_cuda_ipc_handle:
        char reserved[64]

    ctypedef struct sp_cuda_driver:
        pass

    int sp_cuda_load(const char *path, sp_cuda_driver **out)
    void sp_cuda_unload(sp_cuda_driver *driver)
    int sp_cuda_last_result()
    const char *sp_cuda_last_message()
    int sp_cuda_ipc_export(sp_cuda_driver *driver, int device_id, uint64_t device_ptr,
                           sp_cuda_ipc_handle *handle, uint64_t *offset,
                           uint64_t *alloc_size)
    int sp_cuda_ipc_open(sp_cuda_driver *driver, int device_id,
                         const sp_cuda_ipc_handle *handle, uint64_t *base_ptr,
                         uint64_t *alloc_size)
    int sp_cuda_ipc_close(sp_cuda_driver *driver, int device_id, uint64_t base_ptr)

    enum:
        SP_CUDA_UUID_SIZE
        SP_CUDA_MEMORY_UNKNOWN
        SP_CUDA_MEMORY_DEVICE
        SP_CUDA_MEMORY_POOL
        SP_CUDA_MEMORY_VMM
        SP_CUDA_MEMORY_MANAGED
        SP_CUDA_MEMORY_HOST

    ctypedef struct sp_cuda_pointer_info:
        int kind
        int device_ordinal
        int legacy_ipc
        int reserved
        uint64_t base
        uint64_t size

    int sp_cuda_ipc_export_info(sp_cuda_driver *driver, int device_id, uint64_t device_ptr,
                                sp_cuda_ipc_handle *handle, uint64_t *offset,
                                uint64_t *alloc_size, sp_cuda_pointer_info *info)
    int sp_cuda_device_count(sp_cuda_driver *driver, int *count)
    int sp_cuda_device_uuid(sp_cuda_driver *driver, int device_id, uint8_t *uuid)
    int sp_cuda_pointer_info_get(sp_cuda_driver *driver, int device_id, uint64_t ptr,
                                 sp_cuda_pointer_info *out)
    int sp_cuda_synchronize(sp_cuda_driver *driver, int device_id, const uint64_t *stream)
    int sp_cuda_mem_alloc(sp_cuda_driver *driver, int device_id, uint64_t nbytes,
                          uint64_t *ptr)
    int sp_cuda_mem_free(sp_cuda_driver *driver, int device_id, uint64_t ptr)
    int sp_cuda_memcpy(sp_cuda_driver *driver, int device_id, uint64_t dst, uint64_t src,
                       uint64_t nbytes)
