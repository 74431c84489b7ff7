"""snakepit's structured exceptions (SPEC section 5).

Every error snakepit raises derives from :class:`SnakepitError`, pickles with
its fields intact and supports ``match`` through ``__match_args__``. Errors
raised by user code in a worker travel as plain records
(:func:`exception_to_record`) and come back as the matching class
(:func:`record_to_exception`) with a suggestion, still catchable by their
original built-in type, with the worker's traceback chained as ``__cause__``.
:func:`configure` decides what is shown.
"""

from snakepit.errors._config import ErrorSettings, configure, settings
from snakepit.errors._hierarchy import (
    CircuitOpenError,
    CoreStatus,
    DeviceError,
    DeviceMismatchError,
    DeviceNotAvailableError,
    DtypeError,
    InvalidDescriptorError,
    OutOfMemoryError,
    PoolClosedError,
    PythonError,
    RemoteTraceback,
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
from snakepit.errors._parse import parse_context
from snakepit.errors._probe import MemoryProbe, nvml_memory_probe
from snakepit.errors._remote import (
    RECORD_VERSION,
    exception_to_record,
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
    "ErrorSettings",
    "InvalidDescriptorError",
    "MemoryProbe",
    "OutOfMemoryError",
    "PoolClosedError",
    "PythonError",
    "RemoteTraceback",
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
    "configure",
    "exception_to_record",
    "format_bytes",
    "from_core_status",
    "nvml_memory_probe",
    "parse_context",
    "record_to_exception",
    "remote_class",
    "settings",
]

# Show (and pickle) the classes under their public home, as tracebacks print
# it: "snakepit.errors.ShapeError", not the private module that defines them.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith(f"{__name__}._"):
        _obj.__module__ = __name__
del _name, _obj
