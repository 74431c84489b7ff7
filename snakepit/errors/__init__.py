"""snakepit's structured exceptions (SPEC section 5).

Every error snakepit raises derives from :class:`SnakepitError`, pickles with
its fields intact and supports ``match`` through ``__match_args__``. Errors
raised by user code in a worker travel as plain records
(:func:`exception_to_record`) and come back as the matching class
(:func:`record_to_exception`), still catchable by their original built-in type.
"""

from snakepit.errors._hierarchy import (
    CircuitOpenError,
    CoreStatus,
    DeviceError,
    DeviceMismatchError,
    DeviceNotAvailableError,
    DtypeError,
    InvalidDescriptorError,
    OutOfMemoryError,
    PythonError,
    SerializationError,
    Shape,
    ShapeError,
    SharedMemoryCapError,
    SharedMemoryError,
    SharedMemoryExhaustedError,
    SnakepitError,
    WorkerCrashedError,
    WorkerError,
    WorkerTimeoutError,
    WorkerUnavailableError,
    builtin_exception_type,
    format_bytes,
    from_core_status,
    remote_class,
)
from snakepit.errors._remote import (
    RECORD_VERSION,
    exception_to_record,
    parse_context,
    record_to_exception,
)

__all__ = [
    "RECORD_VERSION",
    "CircuitOpenError",
    "CoreStatus",
    "DeviceError",
    "DeviceMismatchError",
    "DeviceNotAvailableError",
    "DtypeError",
    "InvalidDescriptorError",
    "OutOfMemoryError",
    "PythonError",
    "SerializationError",
    "Shape",
    "ShapeError",
    "SharedMemoryCapError",
    "SharedMemoryError",
    "SharedMemoryExhaustedError",
    "SnakepitError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerTimeoutError",
    "WorkerUnavailableError",
    "builtin_exception_type",
    "exception_to_record",
    "format_bytes",
    "from_core_status",
    "parse_context",
    "record_to_exception",
    "remote_class",
]
