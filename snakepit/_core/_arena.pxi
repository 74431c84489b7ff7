# The process's arena: allocations and their references.
# Included by _core.pyx (one extension module): names are shared with it.

# The arena numpy's allocator lends from (_warm.pxi): never destroyed.
cdef object _lent_arena = None

cdef class Allocation:
    """A block owned by this process's arena; its reference drops on release."""

    cdef Arena arena
    cdef uint8_t *data
    cdef readonly str region_name
    cdef readonly uint64_t data_offset
    cdef readonly uint64_t nbytes
    cdef readonly uint64_t capacity
    cdef readonly uint64_t region_size
    # Adopted (Arena.adopt_array): a reference beside the owner's, dropped
    # with sp_arena_unref.
    cdef readonly bint adopted

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
            _check(_drop(self.arena.arena, data, self.adopted), "release", self.region_name)

    def __dealloc__(self):
        if self.data != NULL and self.arena is not None and self.arena.arena != NULL:
            _drop(self.arena.arena, self.data, self.adopted)
            self.data = NULL


cdef inline int _drop(sp_arena *arena, uint8_t *data, bint adopted) noexcept:
    return sp_arena_unref(arena, data) if adopted else sp_arena_release(arena, data)


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
        return self._alloc(nbytes)

    def alloc_array(self, tuple shape, object dtype):
        """A C-contiguous array of ``shape`` and numpy ``dtype`` over a new block.

        ``alloc``, ``Allocation.buffer`` and :func:`array_over` in one call
        (the allocation hot path). A negative dimension or more than 64 is
        ValueError; a size beyond what a region holds is CoreError(NOSPACE).
        """
        cdef Py_ssize_t dims[64]
        cdef Py_ssize_t nd = _shape_dims(shape, dims), i
        cdef uint64_t nbytes = <uint64_t>dtype.itemsize
        for i in range(nd):
            if dims[i] and nbytes > SP_MAX_REGION_SIZE // <uint64_t>dims[i]:
                raise CoreError(SP_ERR_NOSPACE, ENOSPC, "allocate")
            nbytes *= <uint64_t>dims[i]
        cdef Allocation allocation = self._alloc(nbytes)
        cdef SharedBuffer buffer = _make_buffer(allocation, allocation.data, allocation.nbytes, False,
                                                allocation.region_name, allocation.data_offset,
                                                allocation.region_size)
        return sp_np_array_over(dtype, <int>nd, dims, <void *>allocation.data, buffer)

    def adopt_array(self, object array):
        """A view of the C-contiguous numpy ``array`` over the live block of
        this arena that holds its bytes, with a reference of its own: the
        block outlives ``array`` as long as the view (or any view of it)
        lives. None when the bytes are not inside one block of this arena, or
        the arena lends no more (its names are unlinked).

        A worker's numpy allocates large arrays in its arena (see
        ``install_warm_allocator``): a result travels from where it was
        computed, without a copy.
        """
        cdef void *data
        cdef Py_ssize_t nbytes, nd, i
        cdef Py_ssize_t dims[64]
        cdef sp_block block
        cdef int status
        self._require_open()
        sp_np_contiguous(array, 0, &data, &nbytes)
        shape = array.shape
        nd = _shape_dims(shape, dims)
        status = sp_arena_adopt(self.arena, data, <uint64_t>nbytes, &block)
        if status == SP_ERR_NOTFOUND or status == SP_ERR_INVALID:
            return None
        if status != SP_OK:
            raise CoreError(status, sp_last_errno(), "adopt")
        cdef Allocation allocation = Allocation.__new__(Allocation)
        allocation.arena = self
        allocation.data = block.data
        allocation.adopted = True
        allocation.region_name = block.region_name.decode()
        allocation.data_offset = block.data_offset
        allocation.nbytes = block.nbytes
        allocation.capacity = block.capacity
        allocation.region_size = block.region_size
        cdef SharedBuffer buffer = _make_buffer(allocation, block.data, block.nbytes, False,
                                                allocation.region_name, block.data_offset,
                                                block.region_size)
        view = sp_np_array_over(array.dtype, <int>nd, dims, data, buffer)
        if not array.flags.writeable:
            view.flags.writeable = False
        return view

    cdef Allocation _alloc(self, uint64_t nbytes):
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
        """Unmap and unlink every region; outstanding views become invalid.

        The arena numpy allocates from (``lend_arena``) is only unlinked:
        arrays anywhere in the process may still live in it.
        """
        if self is _lent_arena:
            if self.arena != NULL:
                sp_arena_unlink_all(self.arena)
            return
        if self.arena != NULL:
            sp_arena_destroy(self.arena)
            self.arena = NULL

    def __dealloc__(self):
        self.close()
