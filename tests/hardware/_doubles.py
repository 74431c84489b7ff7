"""Test doubles and recorded machines for the hardware tests.

``NvmlDouble`` is real code implementing the pynvml functions detection calls,
over a list of recorded GPUs; ``RecordedRunner`` answers commands from
recorded outputs; ``Files`` serves recorded file contents. ``machine()``
builds :class:`snakepit.hardware.Sources` for a recorded machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from snakepit.hardware import CommandResult, Sources

DATA = Path(__file__).parent / "data"

GIB = 1 << 30
MIB = 1 << 20


def data(name: str) -> str:
    """A recorded output from tests/hardware/data."""
    return (DATA / name).read_text(encoding="utf-8")


# NVML return codes (nvml.h) and the messages pynvml gives them.
NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
_MESSAGES = {
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
}


class NVMLError(Exception):
    """Stands in for ``pynvml.NVMLError``: ``value`` is the NVML return code."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


@dataclass
class RecordedGpu:
    """One GPU as NVML reports it (sizes in bytes, power in milliwatts)."""

    name: str
    uuid: str
    total: int
    used: int
    capability: tuple[int, int]
    temperature: int
    utilization: tuple[int, int]
    power_mw: int
    limit_mw: int

    @property
    def free(self) -> int:
        return self.total - self.used


def a100(uuid: str, used: int = 346 * MIB, util: tuple[int, int] = (0, 0)) -> RecordedGpu:
    """An A100-SXM4-80GB, as NVML 535 reports it."""
    return RecordedGpu(
        "NVIDIA A100-SXM4-80GB", uuid, 81920 * MIB, used, (8, 0), 31, util, 62350, 400000
    )


def h100(uuid: str) -> RecordedGpu:
    """An H100 80GB HBM3, as NVML 550 reports it."""
    return RecordedGpu(
        "NVIDIA H100 80GB HBM3", uuid, 81559 * MIB, 4 * MIB, (9, 0), 29, (0, 0), 71240, 700000
    )


A100_UUIDS = (
    "GPU-3f1c2b7e-8a4d-4e21-9b6c-0d5e7f8a9b10",
    "GPU-7a2e9c41-5b3f-4d8a-a1c2-6e7f8091a2b3",
    "GPU-c4d5e6f7-0819-4a2b-8c3d-4e5f60718293",
    "GPU-e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e6f7",
)


def four_a100() -> list[RecordedGpu]:
    """The 4 x A100 machine (GPU 1 busy)."""
    gpus = [a100(uuid) for uuid in A100_UUIDS]
    gpus[1] = a100(A100_UUIDS[1], used=40871 * MIB, util=(87, 61))
    return gpus


@dataclass
class NvmlDouble:
    """A test double of ``pynvml``: the functions snakepit calls, over recorded GPUs.

    ``init_error``: NVML code ``nvmlInit`` fails with. ``unsupported``: names of
    functions that raise NOT_SUPPORTED. ``lost``: indices whose handle fails
    (GPU fell off the bus). ``calls`` records every call by name.
    """

    gpus: list[RecordedGpu] = field(default_factory=list)
    driver: str = "535.104.05"
    cuda: int = 12020
    init_error: int | None = None
    unsupported: set[str] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    NVMLError: type[NVMLError] = NVMLError
    NVML_TEMPERATURE_GPU: int = 0

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def _gpu(self, handle: Any) -> RecordedGpu:
        return self.gpus[int(handle)]

    def nvmlInit(self) -> None:
        self._call("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self._call("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        self._call("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._call("nvmlSystemGetCudaDriverVersion")
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._call("nvmlDeviceGetHandleByIndex")
        if index in self.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if not 0 <= index < len(self.gpus):
            raise NVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        self._call("nvmlDeviceGetName")
        return self._gpu(handle).name.encode()  # older pynvml returned bytes

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        self._call("nvmlDeviceGetUUID")
        return self._gpu(handle).uuid

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        self._call("nvmlDeviceGetMemoryInfo")
        gpu = self._gpu(handle)
        return SimpleNamespace(total=gpu.total, free=gpu.free, used=gpu.used)

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:
        self._call("nvmlDeviceGetCudaComputeCapability")
        return self._gpu(handle).capability

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        self._call("nvmlDeviceGetTemperature")
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._gpu(handle).temperature

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        self._call("nvmlDeviceGetUtilizationRates")
        gpu, memory = self._gpu(handle).utilization
        return SimpleNamespace(gpu=gpu, memory=memory)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        self._call("nvmlDeviceGetPowerUsage")
        return self._gpu(handle).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        self._call("nvmlDeviceGetEnforcedPowerLimit")
        return self._gpu(handle).limit_mw


def no_pynvml() -> Any:
    """A ``load_nvml`` for a machine without nvidia-ml-py."""
    raise ImportError("No module named 'pynvml'")


Answer = CommandResult | BaseException | Callable[[Sequence[str], float], CommandResult]


@dataclass
class RecordedRunner:
    """Answers commands from recorded outputs, keyed by the tool's file name.

    A tool without an answer is "not installed" (``FileNotFoundError``). An
    answer may be a ``CommandResult``, an exception to raise, or a function.
    ``calls`` records every command line.
    """

    answers: dict[str, Answer] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult:
        self.calls.append(list(argv))
        tool = Path(argv[0]).name
        full = " ".join([tool, *argv[1:]])
        answer = self.answers.get(full, self.answers.get(tool))
        if answer is None:
            raise FileNotFoundError(f"{argv[0]} not found on PATH")
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, CommandResult):
            return answer
        return answer(argv, timeout)

    def tools_called(self) -> list[str]:
        return [Path(argv[0]).name for argv in self.calls]


def ok(stdout: str) -> CommandResult:
    return CommandResult(0, stdout, "")


@dataclass
class Files:
    """Recorded file contents; any other path is unreadable."""

    contents: Mapping[str, str] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    def __call__(self, path: str) -> str | None:
        self.reads.append(path)
        return self.contents.get(path)


def machine(**overrides: Any) -> Sources:
    """Sources of a plain recorded Linux x86_64 box with nothing installed.

    Nothing from this machine leaks in: every source is replaced.
    """
    base = Sources(
        system="Linux",
        machine="x86_64",
        release="6.5.0-1015-aws",
        environ={},
        load_nvml=no_pynvml,
        run=RecordedRunner(),
        read_file=Files({"/proc/cpuinfo": data("cpuinfo_xeon_8480.txt")}),
        timeout=0.5,
        torch=lambda: None,
        package_version=lambda name: None,
        logical_cores=lambda: 224,
        physical_cores=lambda: 112,
        memory_total=lambda: 2048 * GIB,
    )
    return dataclasses.replace(base, **overrides)


def fake_torch(cudnn: int | None) -> object:
    """A stand-in for an imported torch module reporting ``cudnn`` as its cuDNN version."""
    return SimpleNamespace(backends=SimpleNamespace(cudnn=SimpleNamespace(version=lambda: cudnn)))
