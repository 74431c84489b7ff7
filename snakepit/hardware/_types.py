"""The typed result of hardware detection: frozen dataclasses, JSON-ready.

Every backend record says whether it is ``available`` and, when it is not,
``reason`` says why in words a person can act on (``"NVML: libnvidia-ml.so.1
not found"``). Sizes are bytes, temperatures degrees Celsius, power watts,
utilisation percent; ``None`` means the source could not tell.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Capabilities",
    "CpuInfo",
    "CudaDevice",
    "CudaInfo",
    "HardwareInfo",
    "MpsInfo",
    "PlatformInfo",
    "RocmDevice",
    "RocmInfo",
    "to_jsonable",
]


def to_jsonable(value: Any) -> Any:
    """``value`` with dataclasses turned into dicts and tuples into lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class CudaDevice:
    """One NVIDIA GPU visible to this process.

    Attributes:
        index: The CUDA ordinal this process uses (``cuda:<index>``), counted
            after ``CUDA_VISIBLE_DEVICES`` is applied.
        nvml_index: The GPU's index in NVML (all GPUs, PCI bus order).
        name: Product name, e.g. ``NVIDIA A100-SXM4-80GB``.
        uuid: ``GPU-...`` identifier, when known.
        memory_total: Bytes of device memory.
        memory_free: Bytes free when detected.
        memory_used: Bytes used when detected.
        compute_capability: ``(major, minor)``, e.g. ``(8, 0)``.
        temperature_c: GPU core temperature.
        utilization_gpu: Percent of time a kernel ran over the last sample period.
        utilization_memory: Percent of time memory was read or written.
        power_w: Power draw.
        power_limit_w: Enforced power limit.
    """

    index: int
    nvml_index: int
    name: str
    uuid: str | None = None
    memory_total: int | None = None
    memory_free: int | None = None
    memory_used: int | None = None
    compute_capability: tuple[int, int] | None = None
    temperature_c: int | None = None
    utilization_gpu: int | None = None
    utilization_memory: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None

    @property
    def device(self) -> str:
        """The device string, ``cuda:<index>``."""
        return f"cuda:{self.index}"


@dataclass(frozen=True, slots=True)
class CudaInfo:
    """NVIDIA GPUs and the driver.

    Attributes:
        available: At least one GPU is present, working and visible.
        reason: Why not, when ``available`` is false (or a note about the source).
        source: ``"nvml"`` or ``"nvidia-smi"`` (the fallback), when anything answered.
        driver_version: Display driver version, e.g. ``550.54.15``.
        cuda_version: Newest CUDA version the driver supports, e.g. ``12.4``.
        devices: The visible GPUs, in CUDA ordinal order.
        physical_count: GPUs in the machine, hidden ones included.
        visible_devices: ``CUDA_VISIBLE_DEVICES`` as found (``None``: unset).
        cudnn_version: cuDNN version, e.g. ``9.1.0``, when it could be learnt cheaply.
        cudnn_source: Where ``cudnn_version`` came from, or why it is unknown.
    """

    available: bool
    reason: str | None = None
    source: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    devices: tuple[CudaDevice, ...] = ()
    physical_count: int = 0
    visible_devices: str | None = None
    cudnn_version: str | None = None
    cudnn_source: str | None = None


@dataclass(frozen=True, slots=True)
class MpsInfo:
    """Apple's Metal Performance Shaders backend (Apple silicon Macs).

    Attributes:
        available: This is macOS 12.3 or newer on Apple silicon, run natively.
        reason: Why not, when ``available`` is false.
        chip: The chip, e.g. ``Apple M2 Pro``.
        macos_version: e.g. ``14.4.1``.
        unified_memory: Bytes of memory shared by CPU and GPU.
    """

    available: bool
    reason: str | None = None
    chip: str | None = None
    macos_version: str | None = None
    unified_memory: int | None = None

    @property
    def device(self) -> str:
        """The device string, ``mps``."""
        return "mps"


@dataclass(frozen=True, slots=True)
class RocmDevice:
    """One AMD GPU visible to this process.

    Attributes:
        index: The HIP ordinal this process uses (``rocm:<index>``), counted
            after ``ROCR_VISIBLE_DEVICES`` and ``HIP_VISIBLE_DEVICES``.
        physical_index: The GPU's index as the SMI tool numbers it.
        name: Marketing name, e.g. ``AMD Instinct MI300X``.
        uuid: ``GPU-...`` identifier, when known.
        gfx_arch: Graphics target, e.g. ``gfx942``.
        memory_total: Bytes of VRAM.
        memory_used: Bytes of VRAM used when detected.
    """

    index: int
    physical_index: int
    name: str
    uuid: str | None = None
    gfx_arch: str | None = None
    memory_total: int | None = None
    memory_used: int | None = None

    @property
    def device(self) -> str:
        """The device string, ``rocm:<index>``."""
        return f"rocm:{self.index}"


@dataclass(frozen=True, slots=True)
class RocmInfo:
    """AMD GPUs under ROCm.

    Attributes:
        available: At least one GPU is present and visible.
        reason: Why not, when ``available`` is false.
        source: ``"amd-smi"`` or ``"rocm-smi"``, when one answered.
        rocm_version: Installed ROCm release, e.g. ``6.1.2``.
        driver_version: amdgpu driver version.
        devices: The visible GPUs, in HIP ordinal order.
        physical_count: GPUs the tool listed, hidden ones included.
        visible_devices: The visibility variables that were set, as ``NAME=value``.
    """

    available: bool
    reason: str | None = None
    source: str | None = None
    rocm_version: str | None = None
    driver_version: str | None = None
    devices: tuple[RocmDevice, ...] = ()
    physical_count: int = 0
    visible_devices: str | None = None


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """The host CPU and memory.

    Attributes:
        arch: Machine architecture, e.g. ``x86_64`` or ``aarch64``.
        vendor: e.g. ``GenuineIntel``, ``AuthenticAMD``, ``ARM``, ``Apple``.
        model: e.g. ``AMD EPYC 7763 64-Core Processor`` or ``Neoverse-V1``.
        physical_cores: Cores (without SMT siblings).
        logical_cores: Hardware threads.
        features: Instruction-set feature flags, lower case, sorted
            (``avx2``, ``avx512f``, ``asimd``, ``sve``, ...).
        memory_total: Bytes of RAM.
        numa_nodes: NUMA nodes, where the kernel reports them cheaply.
        source: Where the model and features came from (``/proc/cpuinfo``, ``sysctl``).
        reason: What could not be read, if anything.
    """

    arch: str
    vendor: str | None = None
    model: str | None = None
    physical_cores: int | None = None
    logical_cores: int | None = None
    features: tuple[str, ...] = ()
    memory_total: int | None = None
    numa_nodes: int | None = None
    source: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PlatformInfo:
    """Operating system and interpreter.

    Attributes:
        system: ``Linux``, ``Darwin`` or ``Windows``.
        release: Kernel / OS release.
        machine: Machine architecture as the interpreter sees it.
        python_version: e.g. ``3.11.7``.
        python_implementation: e.g. ``CPython``.
    """

    system: str
    release: str
    machine: str
    python_version: str
    python_implementation: str


@dataclass(frozen=True, slots=True)
class HardwareInfo:
    """Everything :func:`snakepit.hardware.detect` found.

    Attributes:
        accelerator: The preferred backend here: ``cuda``, ``rocm``, ``mps`` or ``cpu``.
        cuda: NVIDIA GPUs.
        mps: Apple silicon GPU.
        rocm: AMD GPUs.
        cpu: Host CPU and memory.
        platform: Operating system and interpreter.
    """

    accelerator: str
    cuda: CudaInfo
    mps: MpsInfo
    rocm: RocmInfo
    cpu: CpuInfo
    platform: PlatformInfo

    @property
    def devices(self) -> tuple[str, ...]:
        """Every usable device string, accelerators first, ``cpu`` last."""
        found = [d.device for d in self.cuda.devices]
        found += [d.device for d in self.rocm.devices]
        if self.mps.available:
            found.append("mps")
        found.append("cpu")
        return tuple(found)

    @property
    def gpu_count(self) -> int:
        """Visible GPUs of every kind (MPS counts as one)."""
        return len(self.cuda.devices) + len(self.rocm.devices) + (1 if self.mps.available else 0)

    @property
    def reasons(self) -> dict[str, str]:
        """Why each absent backend is absent, by backend name."""
        found: dict[str, str] = {}
        for name, backend in (("cuda", self.cuda), ("rocm", self.rocm), ("mps", self.mps)):
            if not backend.available:
                found[name] = backend.reason or "not present"
        return found

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-serialisable data (tuples become lists)."""
        data: dict[str, Any] = to_jsonable(self)
        data["devices"] = list(self.devices)
        return data


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What this machine can do, as flags and versions.

    Attributes:
        cuda: An NVIDIA GPU is usable.
        cuda_version: Newest CUDA version the driver supports, e.g. ``12.4``.
        cudnn: cuDNN is known to be installed.
        cudnn_version: e.g. ``9.1.0``.
        mps: The Apple silicon GPU is usable.
        rocm: An AMD GPU is usable.
        rocm_version: Installed ROCm release.
        gpu_count: Visible GPUs of every kind.
        avx: x86 AVX.
        avx2: x86 AVX2.
        avx512: x86 AVX-512 Foundation (``avx512f``).
        fma: Fused multiply-add (x86 FMA3; always on 64-bit ARM).
        neon: ARM Advanced SIMD (NEON / ``asimd``).
        sve: ARM Scalable Vector Extension.
    """

    cuda: bool
    cuda_version: str | None
    cudnn: bool
    cudnn_version: str | None
    mps: bool
    rocm: bool
    rocm_version: str | None
    gpu_count: int
    avx: bool
    avx2: bool
    avx512: bool
    fma: bool
    neon: bool
    sve: bool

    def as_dict(self) -> dict[str, bool | int | str | None]:
        """The flags as a plain dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
