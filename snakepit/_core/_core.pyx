# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin wrappers over the C shared-memory core.

No policy lives here: every failure is raised as :class:`CoreError` carrying
the C status code (a :class:`Status`) and errno, and
``snakepit.zero_copy._errors`` turns it into the public exception hierarchy.
"""

import enum

cimport numpy as cnp
from cpython.buffer cimport PyBUF_WRITABLE
from cpython.object cimport PyObject, PyTypeObject
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid, PyCapsule_New
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy, memset

from snakepit._core.includes.core cimport *

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    # Declared here: Cython's numpy.pxd leaves these out. Steals `descr`.
    PyTypeObject PyArray_Type
    ctypedef struct PyArray_Descr:
        pass
    object PyArray_NewFromDescr(PyTypeObject *subtype, PyArray_Descr *descr, int nd,
                                cnp.npy_intp *dims, cnp.npy_intp *strides, void *data,
                                int flags, PyObject *obj)

REGION_HEADER_SIZE = SP_REGION_HEADER_SIZE
BLOCK_HEADER_SIZE = SP_BLOCK_HEADER_SIZE
ALIGNMENT = SP_ALIGNMENT
LAYOUT_VERSION = SP_LAYOUT_VERSION
LARGE_THRESHOLD = SP_ARENA_LARGE_THRESHOLD
MAX_REGION_SIZE = SP_MAX_REGION_SIZE


class Status(enum.IntEnum):
    """The C core's ``sp_status`` codes (``csrc/snakepit_core.h``), from the C values."""

    OK = SP_OK
    INVALID = SP_ERR_INVALID
    NAME = SP_ERR_NAME
    MAGIC = SP_ERR_MAGIC
    VERSION = SP_ERR_VERSION
    SIZE = SP_ERR_SIZE
    RANGE = SP_ERR_RANGE
    NOSPACE = SP_ERR_NOSPACE
    CAP = SP_ERR_CAP
    NOMEM = SP_ERR_NOMEM
    NOTFOUND = SP_ERR_NOTFOUND
    EXISTS = SP_ERR_EXISTS
    PERM = SP_ERR_PERM
    OS = SP_ERR_OS
    REFCOUNT = SP_ERR_REFCOUNT
    OVERFLOW = SP_ERR_OVERFLOW
    NO_DRIVER = SP_ERR_NO_DRIVER
    CUDA = SP_ERR_CUDA


class CoreError(Exception):
    """A C core call failed; ``status`` is the sp_status code.

    For CUDA calls ``cuda_result`` is the raw CUresult (0 if none) and
    ``detail`` the C core's description of the failure.
    """

    cuda_result = 0
    detail = ""

    def __init__(self, status, os_errno, operation, name=None):
        self.status = status
        self.os_errno = os_errno
        self.operation = operation
        self.name = name
        super().__init__(
            f"{operation} failed: {sp_strerror(status).decode()} "
            f"(status {status}, errno {os_errno})"
            + (f" for {name!r}" if name else "")
        )


cdef inline const char *_c_str_or_null(bytes raw):
    # The caller keeps `raw` alive for as long as the pointer is used.
    if raw is None:
        return NULL
    return raw


cdef inline int _check(int status, str operation, object name=None) except -1:
    if status != SP_OK:
        raise CoreError(status, sp_last_errno(), operation, name)
    return 0


cdef bytes _encode_name(object name):
    if not isinstance(name, str):
        raise TypeError(f"region name must be str, not {type(name).__name__}")
    cdef bytes raw = (<str>name).encode("utf-8", "surrogateescape")
    if len(raw) >= SP_NAME_MAX or b"\0" in raw:
        raise CoreError(SP_ERR_NAME, 0, "validate name", name)
    return raw


def strerror(int status):
    """Static description of a C status code."""
    return sp_strerror(status).decode()


def name_status(name):
    """The C core's verdict (0 = valid) on a region name."""
    try:
        raw = _encode_name(name)
    except CoreError as exc:
        return exc.status
    return sp_name_validate(raw)


def name_owner(name):
    """Owner pid encoded in a valid region name."""
    cdef int64_t pid = 0
    raw = _encode_name(name)
    _check(sp_name_owner(raw, &pid), "parse name", name)
    return pid


def unlink(name):
    """shm_unlink a region by (validated) name."""
    raw = _encode_name(name)
    _check(sp_region_unlink(raw), "unlink", name)


def shm_space(shm_dir=None):
    """(total, available) bytes of the shared-memory filesystem."""
    cdef uint64_t total = 0, available = 0
    cdef bytes raw = shm_dir.encode() if shm_dir is not None else None
    cdef const char *c_dir = _c_str_or_null(raw)
    _check(sp_shm_space(c_dir, &total, &available), "statvfs", shm_dir)
    return total, available


cdef extern from *:
    """
    #include <stdint.h>
    #include <sys/mman.h>
    /* Transparent huge pages for the 2 MiB-aligned interior of [p, p + n):
       a fresh large buffer then costs a page fault per 2 MiB, not per 4 KiB.
       Advice only: failure (or a kernel without THP) changes nothing. */
    static void sp_advise_huge_pages(char *p, size_t n) {
    #ifdef MADV_HUGEPAGE
        const uintptr_t huge = (uintptr_t)2 << 20;
        uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1);
        uintptr_t end = ((uintptr_t)p + n) & ~(huge - 1);
        if (end > start) (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
    #else
        (void)p; (void)n;
    #endif
    }
    """
    void sp_advise_huge_pages(char *p, size_t n) nogil

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

cdef Py_ssize_t _HUGE_PAGE_COPY_BYTES = 4 << 20


def bytes_copy(const uint8_t[::1] source):
    """A new ``bytes`` holding a copy of ``source``, made without the GIL.

    Large copies land in fresh memory: it is advised to use huge pages first,
    which halves the cost of faulting it in.
    """
    cdef Py_ssize_t size = source.shape[0]
    result = PyBytes_FromStringAndSize(NULL, size)
    cdef char *data = PyBytes_AS_STRING(result)
    if size == 0:
        return result
    with nogil:
        if size >= _HUGE_PAGE_COPY_BYTES:
            sp_advise_huge_pages(data, size)
        memcpy(data, &source[0], size)
    return result


def debug_fail_fallocate(int err, int count):
    """Make the next ``count`` region reservations fail with ``err`` (tests)."""
    sp_debug_fail_fallocate(err, count)


cdef class SharedBuffer:
    """A span of mapped shared memory exporting the buffer protocol.

    It keeps ``owner`` (a :class:`Region` mapping or an :class:`Allocation`)
    alive, so the memory stays mapped as long as any view of it exists.
    """

    cdef uint8_t *ptr
    cdef Py_ssize_t length
    cdef bint readonly
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t exports
    cdef readonly object owner
    cdef readonly str region_name
    cdef readonly uint64_t data_offset
    cdef readonly uint64_t region_size
    cdef object __weakref__

    def __cinit__(self):
        self.ptr = NULL
        self.length = 0
        self.exports = 0

    @property
    def address(self):
        return <size_t>self.ptr

    @property
    def nbytes(self):
        return self.length

    def __len__(self):
        return self.length

    def __getbuffer__(self, Py_buffer *view, int flags):
        if self.readonly and (flags & PyBUF_WRITABLE):
            raise BufferError("shared buffer is read-only")
        self.shape[0] = self.length
        view.buf = <void *>self.ptr
        view.obj = self
        view.len = self.length
        view.readonly = self.readonly
        view.itemsize = 1
        view.format = "B"
        view.ndim = 1
        view.shape = self.shape
        view.strides = &view.itemsize
        view.suboffsets = NULL
        view.internal = NULL
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1


def array_over(SharedBuffer buffer, tuple shape, cnp.dtype dtype):
    """A writable C-contiguous array over the start of ``buffer``, keeping it alive.

    The same as ``numpy.ndarray(shape, dtype, buffer)`` without the Python
    constructor's argument parsing (the allocation hot path).
    """
    cdef cnp.npy_intp dims[64]
    cdef Py_ssize_t nd = len(shape), i
    cdef Py_ssize_t nbytes = dtype.itemsize
    if nd > 64:
        raise ValueError("more than 64 dimensions")
    for i in range(nd):
        dims[i] = <cnp.npy_intp>shape[i]
        if dims[i] < 0:
            raise ValueError("negative dimension")
        if dims[i] and nbytes > buffer.length // dims[i]:
            raise ValueError("shape does not fit in the buffer")
        nbytes *= dims[i]
    if nbytes > buffer.length or buffer.readonly:
        raise ValueError("shape does not fit in the (writable) buffer")
    Py_INCREF(dtype)  # PyArray_NewFromDescr steals it
    array = PyArray_NewFromDescr(&PyArray_Type, <PyArray_Descr *>dtype, <int>nd, dims, NULL,
                                 <void *>buffer.ptr, cnp.NPY_ARRAY_CARRAY, NULL)
    cnp.set_array_base(array, buffer)
    return array


cdef SharedBuffer _make_buffer(object owner, uint8_t *ptr, uint64_t length, bint readonly,
                               str region_name, uint64_t data_offset, uint64_t region_size):
    cdef SharedBuffer buf = SharedBuffer.__new__(SharedBuffer)
    buf.owner = owner
    buf.ptr = ptr
    buf.length = <Py_ssize_t>length
    buf.readonly = readonly
    buf.region_name = region_name
    buf.data_offset = data_offset
    buf.region_size = region_size
    return buf


cdef class Region:
    """One mapping of a named region in this process; unmapped on dealloc."""

    cdef sp_region region
    cdef readonly str name

    def __cinit__(self):
        memset(&self.region, 0, sizeof(sp_region))
        self.region.fd = -1
        self.name = ""

    @staticmethod
    def create(uint64_t data_size, bint prefault=False, shm_dir=None):
        """Create a new region holding ``data_size`` bytes of data."""
        cdef Region self = Region.__new__(Region)
        cdef bytes raw_dir = shm_dir.encode() if shm_dir is not None else None
        cdef const char *c_dir = _c_str_or_null(raw_dir)
        cdef unsigned flags = SP_CREATE_PREFAULT if prefault else 0
        cdef int status
        with nogil:
            status = sp_region_create(data_size, flags, c_dir, &self.region)
        _check(status, "create region")
        self.name = self.region.name.decode()
        return self

    @staticmethod
    def attach(name, uint64_t expected_total_size=0):
        """Map an existing region after validating its name and header."""
        cdef Region self = Region.__new__(Region)
        cdef bytes raw = _encode_name(name)
        cdef const char *c_name = raw
        cdef int status
        with nogil:
            status = sp_region_attach(c_name, expected_total_size, &self.region)
        _check(status, "attach region", name)
        self.name = name
        return self

    @property
    def size(self):
        return self.region.size

    @property
    def owner(self):
        return bool(self.region.owner)

    @property
    def mapped(self):
        return self.region.base != NULL

    @property
    def address(self):
        return <size_t>self.region.base

    def header(self):
        """The region header as a dict (for diagnostics)."""
        self._require_mapped()
        cdef sp_region_header *hdr = <sp_region_header *>self.region.base
        return {
            "magic": hdr.magic,
            "version": hdr.version,
            "header_size": hdr.header_size,
            "total_size": hdr.total_size,
            "owner_pid": hdr.owner_pid,
            "refcount": hdr.refcount,
            "flags": hdr.flags,
        }

    cdef int _require_mapped(self) except -1:
        if self.region.base == NULL:
            raise CoreError(SP_ERR_INVALID, 0, "use region", self.name)
        return 0

    def check_span(self, uint64_t offset, uint64_t length):
        self._require_mapped()
        _check(sp_region_check_span(&self.region, offset, length), "check span", self.name)

    def block_refcount(self, uint64_t data_offset, uint64_t nbytes=0):
        """Validate a block and return its current reference count."""
        cdef sp_block_header *hdr = NULL
        self._require_mapped()
        _check(sp_block_lookup(&self.region, data_offset, nbytes, &hdr), "look up block",
               self.name)
        return hdr.refcount

    def block_ref(self, uint64_t data_offset, int delta):
        """Add ``delta`` to a block's shared reference count; returns the new count."""
        cdef int64_t count = 0
        self._require_mapped()
        _check(sp_block_ref(&self.region, data_offset, delta, &count), "block refcount",
               self.name)
        return count

    def buffer(self, uint64_t data_offset, uint64_t nbytes, bint readonly=False,
               keepalive=None):
        """A :class:`SharedBuffer` over a validated block's first ``nbytes``.

        ``keepalive`` (default: this mapping) becomes the buffer's owner; it
        must itself keep this mapping alive.
        """
        self._require_mapped()
        _check(sp_block_lookup(&self.region, data_offset, nbytes, NULL), "look up block",
               self.name)
        owner = self if keepalive is None else keepalive
        return _make_buffer(owner, self.region.base + data_offset, nbytes, readonly,
                            self.name, data_offset, self.region.size)

    def dlpack(self, uint64_t data_offset, uint64_t nbytes, uint64_t byte_offset,
               tuple shape, tuple strides, int code, int bits, bint versioned=True,
               bint readonly=False):
        """A DLPack capsule over a view of a validated block (see sp_dlpack_export).

        ``strides`` are in bytes. The tensor holds its own mapping and one
        reference on the block until its consumer (or the capsule, if never
        consumed) deletes it.
        """
        cdef int64_t c_shape[SP_DLPACK_MAX_NDIM]
        cdef int64_t c_strides[SP_DLPACK_MAX_NDIM]
        cdef Py_ssize_t nd = len(shape), i
        cdef unsigned flags = 0
        cdef void *managed = NULL
        self._require_mapped()
        if nd > SP_DLPACK_MAX_NDIM or len(strides) != nd:
            raise CoreError(SP_ERR_INVALID, 0, "export DLPack", self.name)
        if not 0 <= code <= 255 or not 0 <= bits <= 255:
            raise CoreError(SP_ERR_INVALID, 0, "export DLPack", self.name)
        for i in range(nd):
            c_shape[i] = <int64_t>shape[i]
            c_strides[i] = <int64_t>strides[i]
        if versioned:
            flags |= SP_DLPACK_EXPORT_VERSIONED
        if readonly:
            flags |= SP_DLPACK_EXPORT_READ_ONLY
        _check(sp_dlpack_export(&self.region, data_offset, nbytes, byte_offset, <int>nd,
                                c_shape, c_strides, <uint8_t>code, <uint8_t>bits, flags,
                                &managed), "export DLPack", self.name)
        if versioned:
            return _versioned_capsule(<sp_dl_managed_tensor_versioned *>managed)
        return _legacy_capsule(<sp_dl_managed_tensor *>managed)

    def unlink(self):
        unlink(self.name)

    def detach(self):
        """Unmap now. Views must not be used afterwards."""
        _check(sp_region_detach(&self.region), "detach region", self.name)

    def __dealloc__(self):
        if self.region.base != NULL:
            sp_region_detach(&self.region)


# DLPack capsules. The names are static C strings, as the protocol requires.
# A consumer renames a capsule to "used_..." and then owns the tensor; the
# destructor deletes it only while the capsule still carries the unused name.
# The deleters are plain C (no Python), so no GIL is needed to run them.
cdef const char *_DLTENSOR = "dltensor"
cdef const char *_DLTENSOR_VERSIONED = "dltensor_versioned"


cdef void _legacy_capsule_destructor(object capsule) noexcept:
    cdef sp_dl_managed_tensor *managed
    if PyCapsule_IsValid(capsule, _DLTENSOR):
        managed = <sp_dl_managed_tensor *>PyCapsule_GetPointer(capsule, _DLTENSOR)
        if managed != NULL and managed.deleter != NULL:
            managed.deleter(managed)


cdef void _versioned_capsule_destructor(object capsule) noexcept:
    cdef sp_dl_managed_tensor_versioned *managed
    if PyCapsule_IsValid(capsule, _DLTENSOR_VERSIONED):
        managed = <sp_dl_managed_tensor_versioned *>PyCapsule_GetPointer(
            capsule, _DLTENSOR_VERSIONED)
        if managed != NULL and managed.deleter != NULL:
            managed.deleter(managed)


cdef object _legacy_capsule(sp_dl_managed_tensor *managed):
    try:
        return PyCapsule_New(managed, _DLTENSOR, _legacy_capsule_destructor)
    except BaseException:
        managed.deleter(managed)
        raise


cdef object _versioned_capsule(sp_dl_managed_tensor_versioned *managed):
    try:
        return PyCapsule_New(managed, _DLTENSOR_VERSIONED, _versioned_capsule_destructor)
    except BaseException:
        managed.deleter(managed)
        raise


cdef class Allocation:
    """A block owned by this process's arena; its reference drops on release."""

    cdef Arena arena
    cdef uint8_t *data
    cdef readonly str region_name
    cdef readonly uint64_t data_offset
    cdef readonly uint64_t nbytes
    cdef readonly uint64_t capacity
    cdef readonly uint64_t region_size

    @property
    def address(self):
        return <size_t>self.data

    @property
    def released(self):
        return self.data == NULL

    def buffer(self):
        """A writable :class:`SharedBuffer` over the allocation."""
        if self.data == NULL:
            raise CoreError(SP_ERR_REFCOUNT, 0, "buffer of released allocation", self.region_name)
        return _make_buffer(self, self.data, self.nbytes, False, self.region_name,
                            self.data_offset, self.region_size)

    def release(self):
        """Drop this process's reference; idempotent."""
        cdef uint8_t *data = self.data
        if data == NULL:
            return
        self.data = NULL
        if self.arena is not None and self.arena.arena != NULL:
            _check(sp_arena_release(self.arena.arena, data), "release", self.region_name)

    def __dealloc__(self):
        if self.data != NULL and self.arena is not None and self.arena.arena != NULL:
            sp_arena_release(self.arena.arena, self.data)
            self.data = NULL


cdef class Arena:
    """This process's allocator of pre-faulted shared-memory blocks."""

    cdef sp_arena *arena

    def __cinit__(self, uint64_t cap_bytes=0, uint64_t slab_bytes=0,
                  uint64_t cache_bytes=0, shm_dir=None, bint prefault=True):
        cdef sp_arena_config config
        cdef bytes raw_dir = shm_dir.encode() if shm_dir is not None else None
        memset(&config, 0, sizeof(config))
        config.cap_bytes = cap_bytes
        config.slab_bytes = slab_bytes
        config.cache_bytes = cache_bytes
        config.shm_dir = _c_str_or_null(raw_dir)
        config.prefault = prefault
        self.arena = NULL
        _check(sp_arena_create(&config, &self.arena), "create arena")

    cdef int _require_open(self) except -1:
        if self.arena == NULL:
            raise CoreError(SP_ERR_INVALID, 0, "use closed arena")
        return 0

    def alloc(self, uint64_t nbytes):
        """Allocate a block of ``nbytes`` (refcount 1, owned by the result)."""
        cdef sp_block block
        cdef int status
        self._require_open()
        status = sp_arena_alloc(self.arena, nbytes, &block)
        if status != SP_OK:
            raise CoreError(status, sp_last_errno(), "allocate")
        cdef Allocation allocation = Allocation.__new__(Allocation)
        allocation.arena = self
        allocation.data = block.data
        allocation.region_name = block.region_name.decode()
        allocation.data_offset = block.data_offset
        allocation.nbytes = block.nbytes
        allocation.capacity = block.capacity
        allocation.region_size = block.region_size
        return allocation

    def reclaim(self):
        cdef uint64_t reclaimed = 0
        self._require_open()
        _check(sp_arena_reclaim(self.arena, &reclaimed), "reclaim")
        return reclaimed

    def trim(self):
        self._require_open()
        _check(sp_arena_trim(self.arena), "trim")

    def set_cap(self, uint64_t cap_bytes):
        self._require_open()
        _check(sp_arena_set_cap(self.arena, cap_bytes), "set cap")

    def stats(self):
        cdef sp_arena_stats s
        self._require_open()
        _check(sp_arena_stats_get(self.arena, &s), "stats")
        return {
            "regions": s.regions,
            "mapped_bytes": s.mapped_bytes,
            "live_blocks": s.live_blocks,
            "live_bytes": s.live_bytes,
            "allocations": s.allocations,
            "reuses": s.reuses,
            "regions_created": s.regions_created,
            "deferred": s.deferred,
        }

    @property
    def closed(self):
        return self.arena == NULL

    def unlink_all(self):
        """Remove every region's name, keeping the memory mapped (process exit)."""
        self._require_open()
        _check(sp_arena_unlink_all(self.arena), "unlink all")

    def close(self):
        """Unmap and unlink every region; outstanding views become invalid."""
        if self.arena != NULL:
            sp_arena_destroy(self.arena)
            self.arena = NULL

    def __dealloc__(self):
        self.close()


# ---------------------------------------------------------------- CUDA IPC

CUDA_IPC_HANDLE_SIZE = SP_CUDA_IPC_HANDLE_SIZE
CUDA_MAX_DEVICES = SP_CUDA_MAX_DEVICES
CUDA_ERROR_INVALID_CONTEXT = SP_CUDA_ERROR_INVALID_CONTEXT


cdef inline int _check_cuda(int status, str operation) except -1:
    if status != SP_OK:
        err = CoreError(status, sp_last_errno(), operation)
        err.cuda_result = sp_cuda_last_result()
        err.detail = sp_cuda_last_message().decode("utf-8", "replace")
        raise err
    return 0


cdef class CudaDriver:
    """The CUDA driver library, loaded with dlopen (see sp_cuda_load)."""

    cdef sp_cuda_driver *driver
    cdef readonly str path

    def __cinit__(self):
        self.driver = NULL
        self.path = ""

    @staticmethod
    def load(path=None):
        """Load the driver at ``path`` (None: libcuda.so.1) and call cuInit."""
        cdef CudaDriver self = CudaDriver.__new__(CudaDriver)
        cdef bytes raw = path.encode() if path is not None else None
        if raw is not None and b"\0" in raw:
            raise CoreError(SP_ERR_INVALID, 0, "load CUDA driver", path)
        _check_cuda(sp_cuda_load(_c_str_or_null(raw), &self.driver), "load CUDA driver")
        self.path = path if path is not None else "libcuda.so.1"
        return self

    cdef int _require_loaded(self) except -1:
        if self.driver == NULL:
            raise CoreError(SP_ERR_INVALID, 0, "use unloaded CUDA driver")
        return 0

    def ipc_export(self, int device, uint64_t ptr):
        """(64-byte handle, offset of ``ptr`` in its allocation, allocation size)."""
        cdef sp_cuda_ipc_handle handle
        cdef uint64_t offset = 0, size = 0
        self._require_loaded()
        _check_cuda(sp_cuda_ipc_export(self.driver, device, ptr, &handle, &offset, &size),
                    "export CUDA IPC handle")
        return (<char *>handle.reserved)[:SP_CUDA_IPC_HANDLE_SIZE], offset, size

    def ipc_open(self, int device, bytes handle):
        """(base pointer, allocation size or 0 if unknown) of a peer's handle."""
        cdef sp_cuda_ipc_handle c_handle
        cdef uint64_t base = 0, size = 0
        self._require_loaded()
        if len(handle) != SP_CUDA_IPC_HANDLE_SIZE:
            raise CoreError(SP_ERR_INVALID, 0, "open CUDA IPC handle")
        memcpy(c_handle.reserved, <const char *>handle, SP_CUDA_IPC_HANDLE_SIZE)
        _check_cuda(sp_cuda_ipc_open(self.driver, device, &c_handle, &base, &size),
                    "open CUDA IPC handle")
        return base, size

    def ipc_close(self, int device, uint64_t ptr):
        """Close one open of a handle (by the base pointer ipc_open returned)."""
        self._require_loaded()
        _check_cuda(sp_cuda_ipc_close(self.driver, device, ptr), "close CUDA IPC handle")

    def unload(self):
        """Release the driver; handles still open must not be used afterwards."""
        if self.driver != NULL:
            sp_cuda_unload(self.driver)
            self.driver = NULL

    def __dealloc__(self):
        self.unload()
