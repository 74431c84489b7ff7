# Shared memory as Python buffers and numpy arrays.
# Included by _core.pyx (one extension module): names are shared with it.

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


cdef Py_ssize_t _shape_dims(tuple shape, Py_ssize_t *dims) except -1:
    """Fill ``dims`` (room for 64) from ``shape``; returns the number of dimensions."""
    cdef Py_ssize_t nd = len(shape), i
    if nd > 64:
        raise ValueError("more than 64 dimensions")
    for i in range(nd):
        dims[i] = <Py_ssize_t>shape[i]
        if dims[i] < 0:
            raise ValueError("negative dimension")
    return nd


def array_over(SharedBuffer buffer, tuple shape, object dtype):
    """A writable C-contiguous array over the start of ``buffer``, keeping it alive.

    The same as ``numpy.ndarray(shape, dtype, buffer)`` without the Python
    constructor's argument parsing (the allocation hot path).
    """
    cdef Py_ssize_t dims[64]
    cdef Py_ssize_t nd = _shape_dims(shape, dims), i
    cdef Py_ssize_t nbytes = dtype.itemsize
    for i in range(nd):
        if dims[i] and nbytes > buffer.length // dims[i]:
            raise ValueError("shape does not fit in the buffer")
        nbytes *= dims[i]
    if nbytes > buffer.length or buffer.readonly:
        raise ValueError("shape does not fit in the (writable) buffer")
    return sp_np_array_over(dtype, <int>nd, dims, <void *>buffer.ptr, buffer)


# Below this a copy is cheaper than letting go of the GIL and taking it back.
cdef Py_ssize_t _NOGIL_COPY_BYTES = 64 << 10


def copy_into(object destination, object source):
    """Copy the C-contiguous ``source`` into the C-contiguous, writable
    ``destination`` of the same byte size (dtypes are the caller's concern).

    The C core's copy runs at memory speed whatever the two arrays' relative
    alignment (``np.copyto`` is memcpy, which for a large numpy array into a
    shared block is not); large copies release the GIL.
    """
    cdef void *dst
    cdef void *src
    cdef Py_ssize_t nbytes, dst_bytes
    cdef int status
    sp_np_contiguous(source, 0, &src, &nbytes)
    sp_np_contiguous(destination, 1, &dst, &dst_bytes)
    if dst_bytes != nbytes:
        raise ValueError(f"copy_into of {nbytes} bytes into {dst_bytes} bytes")
    if nbytes >= _NOGIL_COPY_BYTES:
        with nogil:
            status = sp_copy(dst, src, <uint64_t>nbytes)
    else:
        status = sp_copy(dst, src, <uint64_t>nbytes)
    _check(status, "copy")


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
