# DLPack both ways for memory that is not a snakepit block: tensors whose memory a
# Python object keeps alive (CUDA IPC mappings, copies), and tensors taken from
# another producer's capsule. Included by _core.pyx: names are shared with it
# (the capsule names and _legacy_capsule/_versioned_capsule come from _region.pxi).

DLPACK_FLAG_READ_ONLY = SP_DLPACK_FLAG_READ_ONLY
DLPACK_FLAG_IS_COPIED = SP_DLPACK_FLAG_IS_COPIED

cdef extern from "Python.h":
    int Py_IsInitialized() nogil

# A consumer renames the capsule to these (static strings, as the protocol asks).
cdef const char *_USED_DLTENSOR = "used_dltensor"
cdef const char *_USED_DLTENSOR_VERSIONED = "used_dltensor_versioned"


cdef void _drop_owner(void *owner) noexcept nogil:
    # The deleter may run on any thread, also after the interpreter is gone:
    # then the owner is leaked rather than touched (DLPack's advice).
    if owner == NULL or not Py_IsInitialized():
        return
    with gil:
        Py_XDECREF(<PyObject *>owner)


cdef void _owned_delete_legacy(sp_dl_managed_tensor *self) noexcept nogil:
    if self != NULL:
        _drop_owner(self.manager_ctx)
        free(self)


cdef void _owned_delete_versioned(sp_dl_managed_tensor_versioned *self) noexcept nogil:
    if self != NULL:
        _drop_owner(self.manager_ctx)
        free(self)


def owned_dlpack(object owner, uint64_t data, int device_type, int device_id, tuple shape,
                 tuple strides, int code, int bits, bint versioned=True, bint readonly=False,
                 bint copied=False):
    """A DLPack capsule over ``data``, which ``owner`` keeps valid.

    The tensor holds a reference to ``owner`` until its consumer deletes it
    (or the capsule dies unconsumed); the deleter takes the GIL to drop it.
    ``strides`` are in ELEMENTS (DLPack's unit). ``readonly``/``copied`` set
    READ_ONLY/IS_COPIED and need ``versioned`` (the legacy struct has no flags).
    """
    cdef Py_ssize_t nd = len(shape), i
    cdef size_t head
    cdef char *mem
    cdef int64_t *dims
    cdef sp_dl_tensor *t
    cdef sp_dl_managed_tensor *legacy
    cdef sp_dl_managed_tensor_versioned *v
    if nd > SP_DLPACK_MAX_NDIM or len(strides) != nd:
        raise CoreError(SP_ERR_INVALID, 0, "export DLPack")
    if not 0 < bits <= 255 or not 0 <= code <= 255:
        raise CoreError(SP_ERR_INVALID, 0, "export DLPack")
    if not versioned and (readonly or copied):
        raise CoreError(SP_ERR_INVALID, 0, "export DLPack")
    head = sizeof(sp_dl_managed_tensor_versioned) if versioned else sizeof(sp_dl_managed_tensor)
    # One block: the managed struct (a multiple of 8 bytes), then shape, strides.
    mem = <char *>calloc(1, head + 2 * <size_t>nd * sizeof(int64_t))
    if mem == NULL:
        raise CoreError(SP_ERR_NOMEM, 0, "export DLPack")
    dims = <int64_t *>(mem + head)
    try:
        for i in range(nd):
            dims[i] = <int64_t>shape[i]
            dims[nd + i] = <int64_t>strides[i]
    except BaseException:
        free(mem)
        raise
    if versioned:
        v = <sp_dl_managed_tensor_versioned *>mem
        v.version.major = SP_DLPACK_MAJOR_VERSION
        v.version.minor = SP_DLPACK_MINOR_VERSION
        v.deleter = _owned_delete_versioned
        v.flags = ((SP_DLPACK_FLAG_READ_ONLY if readonly else 0)
                   | (SP_DLPACK_FLAG_IS_COPIED if copied else 0))
        t = &v.dl_tensor
    else:
        legacy = <sp_dl_managed_tensor *>mem
        legacy.deleter = _owned_delete_legacy
        t = &legacy.dl_tensor
    t.data = <void *><size_t>data
    t.device.device_type = device_type
    t.device.device_id = device_id
    t.ndim = <int>nd
    t.dtype.code = <uint8_t>code
    t.dtype.bits = <uint8_t>bits
    t.dtype.lanes = 1
    t.shape = dims
    t.strides = dims + nd
    t.byte_offset = 0
    Py_INCREF(owner)
    if versioned:
        v.manager_ctx = <void *>owner
        return _versioned_capsule(v)
    legacy.manager_ctx = <void *>owner
    return _legacy_capsule(legacy)


cdef class DLPackImport:
    """A producer's DLPack tensor, taken over from its capsule (renamed ``used_*``).

    The producer's deleter runs when this object dies. Fields are read once:
    ``data`` (``data + byte_offset``), ``device`` (type, id), ``shape``,
    ``strides`` (in elements, or None for compact row-major), ``dtype``
    (code, bits, lanes), ``flags`` (0 for the legacy struct) and ``version``.
    """

    cdef void *managed
    cdef bint _versioned
    cdef readonly uint64_t data
    cdef readonly uint64_t flags
    cdef readonly tuple device
    cdef readonly tuple shape
    cdef readonly object strides
    cdef readonly tuple dtype
    cdef readonly tuple version

    def __cinit__(self):
        self.managed = NULL

    @staticmethod
    def from_capsule(capsule):
        """Take the tensor out of ``capsule``; CoreError for anything but an unused DLPack capsule.

        A versioned tensor of a major version above ours is refused without
        being consumed (the capsule still deletes it).
        """
        cdef DLPackImport self = DLPackImport.__new__(DLPackImport)
        cdef sp_dl_managed_tensor_versioned *v
        cdef sp_dl_managed_tensor *legacy
        cdef sp_dl_tensor *t
        cdef int i
        if PyCapsule_IsValid(capsule, _DLTENSOR_VERSIONED):
            v = <sp_dl_managed_tensor_versioned *>PyCapsule_GetPointer(capsule,
                                                                      _DLTENSOR_VERSIONED)
            if v == NULL or v.version.major > SP_DLPACK_MAJOR_VERSION:
                raise CoreError(SP_ERR_VERSION, 0, "import DLPack")
            PyCapsule_SetName(capsule, _USED_DLTENSOR_VERSIONED)
            self.managed = v
            self._versioned = True
            self.flags = v.flags
            self.version = (v.version.major, v.version.minor)
            t = &v.dl_tensor
        elif PyCapsule_IsValid(capsule, _DLTENSOR):
            legacy = <sp_dl_managed_tensor *>PyCapsule_GetPointer(capsule, _DLTENSOR)
            if legacy == NULL:
                raise CoreError(SP_ERR_INVALID, 0, "import DLPack")
            PyCapsule_SetName(capsule, _USED_DLTENSOR)
            self.managed = legacy
            self._versioned = False
            self.flags = 0
            self.version = (0, 0)
            t = &legacy.dl_tensor
        else:
            raise CoreError(SP_ERR_INVALID, 0, "import DLPack")
        # Ours from here on: a failure below deletes it with this object.
        if t.ndim < 0 or t.ndim > SP_DLPACK_MAX_NDIM or (t.ndim > 0 and t.shape == NULL):
            raise CoreError(SP_ERR_INVALID, 0, "import DLPack")
        self.data = <uint64_t><size_t>t.data + t.byte_offset
        self.device = (t.device.device_type, t.device.device_id)
        self.shape = tuple([t.shape[i] for i in range(t.ndim)])
        self.strides = (None if t.strides == NULL
                        else tuple([t.strides[i] for i in range(t.ndim)]))
        self.dtype = (t.dtype.code, t.dtype.bits, t.dtype.lanes)
        return self

    @property
    def versioned(self):
        return bool(self._versioned)

    def __dealloc__(self):
        cdef sp_dl_managed_tensor_versioned *v
        cdef sp_dl_managed_tensor *legacy
        if self.managed == NULL:
            return
        if self._versioned:
            v = <sp_dl_managed_tensor_versioned *>self.managed
            if v.deleter != NULL:
                v.deleter(v)
        else:
            legacy = <sp_dl_managed_tensor *>self.managed
            if legacy.deleter != NULL:
                legacy.deleter(legacy)
        self.managed = NULL
