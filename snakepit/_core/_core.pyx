# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin wrappers over the C shared-memory core.

No policy lives here: every failure is raised as :class:`CoreError` carrying
the C status code (a :class:`Status`) and errno, and
``snakepit.zero_copy._errors`` turns it into the public exception hierarchy.
"""

import enum

from cpython.buffer cimport PyBUF_WRITABLE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EINTR, ENOSPC
from cpython.object cimport PyObject, PyTypeObject
from cpython.pycapsule cimport (
    PyCapsule_GetPointer,
    PyCapsule_IsValid,
    PyCapsule_New,
    PyCapsule_SetName,
)
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from snakepit._core.includes.core cimport *

# numpy's C API is loaded on first use, not at import: a worker that never
# touches an array never imports numpy (``cimport numpy`` would, at import).
cdef extern from *:
    """
    #include <numpy/arrayobject.h>

    /* 0 once numpy's C API is loaded (importing numpy), -1 with an exception. */
    static int sp_np_ready(void) {
        if (PyArray_API != NULL)
            return 0;
        return _import_array();
    }

    /* A C-contiguous array of `descr` over `data`, keeping `base` alive:
       NULL with an exception if `descr` is not a dtype. */
    static PyObject *sp_np_array_over(PyObject *descr, int nd, Py_ssize_t *dims,
                                      void *data, PyObject *base) {
        PyObject *array;
        if (sp_np_ready() < 0)
            return NULL;
        if (!PyArray_DescrCheck(descr)) {
            PyErr_SetString(PyExc_TypeError, "array_over needs a numpy dtype");
            return NULL;
        }
        Py_INCREF(descr); /* stolen */
        array = PyArray_NewFromDescr(&PyArray_Type, (PyArray_Descr *)descr, nd,
                                     (npy_intp *)dims, NULL, data, NPY_ARRAY_CARRAY, NULL);
        if (array == NULL)
            return NULL;
        Py_INCREF(base); /* stolen */
        if (PyArray_SetBaseObject((PyArrayObject *)array, base) < 0) {
            Py_DECREF(array);
            return NULL;
        }
        return array;
    }

    /* The data and byte size of a C-contiguous array (writable if asked):
       0, or -1 with an exception. */
    static int sp_np_contiguous(PyObject *obj, int writable, void **data, Py_ssize_t *nbytes) {
        PyArrayObject *array;
        if (sp_np_ready() < 0)
            return -1;
        if (!PyArray_Check(obj)) {
            PyErr_Format(PyExc_TypeError, "copy_into needs numpy arrays, not %s",
                         Py_TYPE(obj)->tp_name);
            return -1;
        }
        array = (PyArrayObject *)obj;
        if (!PyArray_IS_C_CONTIGUOUS(array)) {
            PyErr_SetString(PyExc_ValueError, "copy_into needs C-contiguous arrays");
            return -1;
        }
        if (writable && !PyArray_ISWRITEABLE(array)) {
            PyErr_SetString(PyExc_ValueError, "copy_into needs a writable destination");
            return -1;
        }
        *data = PyArray_DATA(array);
        *nbytes = (Py_ssize_t)PyArray_NBYTES(array);
        return 0;
    }
    """
    int sp_np_ready() except -1
    object sp_np_array_over(object descr, int nd, Py_ssize_t *dims, void *data, object base)
    int sp_np_contiguous(object obj, int writable, void **data, Py_ssize_t *nbytes) except -1

REGION_HEADER_SIZE = SP_REGION_HEADER_SIZE
BLOCK_HEADER_SIZE = SP_BLOCK_HEADER_SIZE
ALIGNMENT = SP_ALIGNMENT
LAYOUT_VERSION = SP_LAYOUT_VERSION
LARGE_THRESHOLD = SP_ARENA_LARGE_THRESHOLD
MAX_REGION_SIZE = SP_MAX_REGION_SIZE
COPY_STREAM_BYTES = SP_COPY_STREAM_BYTES


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
    UNSHAREABLE = SP_ERR_UNSHAREABLE


class CoreError(Exception):
    """A C core call failed; ``status`` is the sp_status code.

    For CUDA calls ``cuda_result`` is the raw CUresult (0 if none) and
    ``detail`` the C core's description of the failure; ``memory_kind`` names
    the kind of memory an UNSHAREABLE export met.
    """

    cuda_result = 0
    detail = ""
    memory_kind = ""

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


def current_cpu():
    """The CPU this thread runs on now, or -1 where the system cannot say."""
    return sp_current_cpu()


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


def recv_bytes(int fd, Py_ssize_t size, const uint8_t[::1] prefix):
    """A new ``bytes`` of ``size``: ``prefix``, then the rest received from
    the stream socket ``fd`` straight into it (no buffer in between), without
    the GIL; None if the stream ends first.

    A signal interrupts the wait only to run its Python handler (which may
    raise); receiving then goes on. A failing receive raises CoreError
    (``Status.OS``, its errno).
    """
    cdef Py_ssize_t have = prefix.shape[0]
    cdef size_t got = 0
    cdef int status
    if size <= 0 or have > size:
        raise ValueError(f"recv_bytes of {size} bytes after a prefix of {have}")
    result = PyBytes_FromStringAndSize(NULL, size)
    cdef char *data = PyBytes_AS_STRING(result)
    with nogil:
        if size >= _HUGE_PAGE_COPY_BYTES:
            sp_advise_huge_pages(data, size)
        if have:
            memcpy(data, &prefix[0], have)
    while have < size:
        with nogil:
            status = sp_recv_some(fd, data + have, size - have, &got)
        if status == SP_OK:
            if got == 0:
                return None
            have += got
        elif sp_last_errno() != EINTR:
            _check(status, "recv")
        PyErr_CheckSignals()
    return result


def debug_fail_fallocate(int err, int count):
    """Make the next ``count`` region reservations fail with ``err`` (tests)."""
    sp_debug_fail_fallocate(err, count)


include "_buffer.pxi"
include "_region.pxi"
include "_arena.pxi"
include "_cuda.pxi"
include "_dlpack.pxi"
include "_warm.pxi"
