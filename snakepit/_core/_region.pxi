# Regions: one mapping of a named shared-memory region, its blocks, DLPack.
# Included by _core.pyx (one extension module): names are shared with it.

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
