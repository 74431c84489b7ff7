"""Hardware abstraction layer: what is here, and which device to use (docs/hardware.md).

::

    from snakepit import hardware

    info = hardware.detect()            # cached; hardware.clear_cache() forgets it
    info.cuda.available, info.cuda.reason
    hardware.capabilities().avx2
    hardware.identity()                 # stable dict for lock files
    hardware.select("auto")             # "cuda:0", "rocm:0", "mps" or "cpu"
    hardware.select_with_fallback(["cuda:1", "mps", "cpu"])

Detection never raises and never hangs: whatever is missing or broken is
reported as absent with the reason. Every detector reads the machine through
:class:`Sources`, so recorded outputs can stand in for real hardware.
"""

from snakepit.hardware._detect import capabilities, clear_cache, detect, identity, info
from snakepit.hardware._report import format_json, format_table
from snakepit.hardware._select import (
    DeviceSpec,
    assign_devices,
    parse_device,
    select,
    select_with_fallback,
    worker_environment,
)
from snakepit.hardware._sources import (
    DEFAULT_TIMEOUT,
    CommandResult,
    CommandRunner,
    FileReader,
    Nvml,
    Sources,
    run_command,
)
from snakepit.hardware._types import (
    Capabilities,
    CpuInfo,
    CudaDevice,
    CudaInfo,
    HardwareInfo,
    MpsInfo,
    PlatformInfo,
    RocmDevice,
    RocmInfo,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "Capabilities",
    "CommandResult",
    "CommandRunner",
    "CpuInfo",
    "CudaDevice",
    "CudaInfo",
    "DeviceSpec",
    "FileReader",
    "HardwareInfo",
    "MpsInfo",
    "Nvml",
    "PlatformInfo",
    "RocmDevice",
    "RocmInfo",
    "Sources",
    "assign_devices",
    "capabilities",
    "clear_cache",
    "detect",
    "format_json",
    "format_table",
    "identity",
    "info",
    "parse_device",
    "run_command",
    "select",
    "select_with_fallback",
    "worker_environment",
]
