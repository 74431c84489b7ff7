# CUDA IPC through the driver loaded at run time.
# Included by _core.pyx (one extension module): names are shared with it.

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
