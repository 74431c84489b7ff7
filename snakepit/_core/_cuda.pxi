# CUDA IPC through the driver loaded at run time.
# Included by _core.pyx (one extension module): names are shared with it.

# ---------------------------------------------------------------- CUDA IPC

CUDA_IPC_HANDLE_SIZE = SP_CUDA_IPC_HANDLE_SIZE
CUDA_MAX_DEVICES = SP_CUDA_MAX_DEVICES
CUDA_ERROR_INVALID_CONTEXT = SP_CUDA_ERROR_INVALID_CONTEXT
CUDA_UUID_SIZE = SP_CUDA_UUID_SIZE

#: sp_cuda_pointer_info.kind -> the name the Python layer reports.
CUDA_MEMORY_KINDS = {
    SP_CUDA_MEMORY_UNKNOWN: "unknown",
    SP_CUDA_MEMORY_DEVICE: "device",
    SP_CUDA_MEMORY_POOL: "pool",
    SP_CUDA_MEMORY_VMM: "vmm",
    SP_CUDA_MEMORY_MANAGED: "managed",
    SP_CUDA_MEMORY_HOST: "host",
}


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

    def ipc_export_info(self, int device, uint64_t ptr):
        """(handle, offset, allocation size, memory kind name, the pointer's ordinal or -1).

        Memory legacy IPC cannot share raises CoreError(UNSHAREABLE) whose
        ``memory_kind`` names the kind.
        """
        cdef sp_cuda_ipc_handle handle
        cdef sp_cuda_pointer_info info
        cdef uint64_t offset = 0, size = 0
        cdef int status
        self._require_loaded()
        memset(&info, 0, sizeof(info))
        info.device_ordinal = -1
        status = sp_cuda_ipc_export_info(self.driver, device, ptr, &handle, &offset, &size,
                                         &info)
        try:
            _check_cuda(status, "export CUDA IPC handle")
        except CoreError as err:
            err.memory_kind = CUDA_MEMORY_KINDS.get(info.kind, "unknown")
            raise
        return ((<char *>handle.reserved)[:SP_CUDA_IPC_HANDLE_SIZE], offset, size,
                CUDA_MEMORY_KINDS.get(info.kind, "unknown"), info.device_ordinal)

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

    def device_count(self):
        """Devices this process sees (cuDeviceGetCount, after CUDA_VISIBLE_DEVICES)."""
        cdef int count = 0
        self._require_loaded()
        _check_cuda(sp_cuda_device_count(self.driver, &count), "count CUDA devices")
        return count

    def device_uuid(self, int device):
        """The 16 UUID bytes of this process's ordinal ``device``."""
        cdef uint8_t uuid[SP_CUDA_UUID_SIZE]
        self._require_loaded()
        _check_cuda(sp_cuda_device_uuid(self.driver, device, uuid), "read CUDA device UUID")
        return (<char *>uuid)[:SP_CUDA_UUID_SIZE]

    def pointer_info(self, int device, uint64_t ptr):
        """(kind name, device ordinal or -1, legacy-IPC capable 1/0/-1, base, size)."""
        cdef sp_cuda_pointer_info info
        self._require_loaded()
        _check_cuda(sp_cuda_pointer_info_get(self.driver, device, ptr, &info),
                    "query CUDA pointer")
        return (CUDA_MEMORY_KINDS.get(info.kind, "unknown"), info.device_ordinal,
                info.legacy_ipc, info.base, info.size)

    def synchronize(self, int device, stream=None):
        """Wait for ``device``'s pending work: the whole context, or one stream handle."""
        cdef uint64_t c_stream = 0
        cdef int status
        self._require_loaded()
        if stream is None:
            with nogil:
                status = sp_cuda_synchronize(self.driver, device, NULL)
        else:
            c_stream = stream
            with nogil:
                status = sp_cuda_synchronize(self.driver, device, &c_stream)
        _check_cuda(status, "synchronize CUDA")

    def mem_alloc(self, int device, uint64_t nbytes):
        """A fresh cuMemAlloc_v2 allocation of ``nbytes`` (its device pointer)."""
        cdef uint64_t ptr = 0
        self._require_loaded()
        _check_cuda(sp_cuda_mem_alloc(self.driver, device, nbytes, &ptr), "allocate CUDA memory")
        return ptr

    def mem_free(self, int device, uint64_t ptr):
        """cuMemFree_v2 an allocation from :meth:`mem_alloc`."""
        self._require_loaded()
        _check_cuda(sp_cuda_mem_free(self.driver, device, ptr), "free CUDA memory")

    def memcpy(self, int device, uint64_t dst, uint64_t src, uint64_t nbytes):
        """Device-to-device copy (asynchronous to the host: synchronize after)."""
        cdef int status
        self._require_loaded()
        with nogil:
            status = sp_cuda_memcpy(self.driver, device, dst, src, nbytes)
        _check_cuda(status, "copy CUDA memory")

    def unload(self):
        """Release the driver; handles still open must not be used afterwards."""
        if self.driver != NULL:
            sp_cuda_unload(self.driver)
            self.driver = NULL

    def __dealloc__(self):
        self.unload()
