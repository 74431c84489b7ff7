"""Detection as a whole: run every detector, cache the result, derive flags and identity."""

from __future__ import annotations

import platform as _platform
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from snakepit.hardware._apple import detect_mps, read_sysctl
from snakepit.hardware._cpu import detect_cpu
from snakepit.hardware._cuda import detect_cuda
from snakepit.hardware._events import HARDWARE_DETECTED, emit
from snakepit.hardware._rocm import detect_rocm
from snakepit.hardware._sources import Sources
from snakepit.hardware._types import (
    Capabilities,
    CpuInfo,
    CudaInfo,
    HardwareInfo,
    MpsInfo,
    PlatformInfo,
    RocmInfo,
)

__all__ = ["capabilities", "clear_cache", "detect", "identity", "info"]

_T = TypeVar("_T")

#: Bumped when the meaning of :func:`identity`'s fields changes.
IDENTITY_SCHEMA = 1

#: CPU features that decide which binaries run here (what :func:`identity` records).
_ISA_FEATURES = frozenset(
    {
        # x86
        "sse3",
        "ssse3",
        "sse4_1",
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "bmi1",
        "bmi2",
        "avx_vnni",
        "avx512f",
        "avx512cd",
        "avx512bw",
        "avx512dq",
        "avx512vl",
        "avx512ifma",
        "avx512vbmi",
        "avx512_vbmi2",
        "avx512_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
        # ARM
        "neon",
        "asimd",
        "asimdhp",
        "asimddp",
        "dotprod",
        "fphp",
        "fp16",
        "bf16",
        "i8mm",
        "sve",
        "sve2",
        "svebf16",
        "svei8mm",
        "sme",
        "sme2",
    }
)

_cache: HardwareInfo | None = None
_lock = threading.Lock()


def _guarded(what: str, detector: Callable[[], _T], fallback: Callable[[str], _T]) -> _T:
    """Run one detector; a bug in it degrades to ``fallback(reason)`` instead of raising."""
    try:
        return detector()
    except Exception as exc:
        return fallback(f"{what} detection failed: {type(exc).__name__}: {exc}")


def _platform_info(sources: Sources) -> PlatformInfo:
    return PlatformInfo(
        system=sources.system_name,
        release=sources.release_name,
        machine=sources.machine_name,
        python_version=_platform.python_version(),
        python_implementation=_platform.python_implementation(),
    )


def _accelerator(cuda: CudaInfo, rocm: RocmInfo, mps: MpsInfo) -> str:
    if cuda.available:
        return "cuda"
    if rocm.available:
        return "rocm"
    if mps.available:
        return "mps"
    return "cpu"


def _detect(sources: Sources) -> HardwareInfo:
    started = time.perf_counter()
    platform_info = _guarded(
        "platform",
        lambda: _platform_info(sources),
        lambda why: PlatformInfo("unknown", "unknown", "unknown", "unknown", "unknown"),
    )
    sysctl: dict[str, str] = {}
    sysctl_error: str | None = None
    if platform_info.system == "Darwin":
        sysctl, sysctl_error = _guarded(
            "sysctl", lambda: read_sysctl(sources), lambda why: ({}, why)
        )
    cuda = _guarded(
        "CUDA", lambda: detect_cuda(sources), lambda why: CudaInfo(available=False, reason=why)
    )
    rocm = _guarded(
        "ROCm", lambda: detect_rocm(sources), lambda why: RocmInfo(available=False, reason=why)
    )
    mps = _guarded(
        "MPS",
        lambda: detect_mps(sources, sysctl, sysctl_error),
        lambda why: MpsInfo(available=False, reason=why),
    )
    cpu = _guarded(
        "CPU",
        lambda: detect_cpu(sources, sysctl, sysctl_error),
        lambda why: CpuInfo(arch=platform_info.machine, reason=why),
    )
    result = HardwareInfo(
        accelerator=_accelerator(cuda, rocm, mps),
        cuda=cuda,
        mps=mps,
        rocm=rocm,
        cpu=cpu,
        platform=platform_info,
    )
    emit(
        HARDWARE_DETECTED,
        {"duration": time.perf_counter() - started},
        {
            "accelerator": result.accelerator,
            "gpu_count": result.gpu_count,
            "reasons": result.reasons,
        },
    )
    return result


def detect(sources: Sources | None = None) -> HardwareInfo:
    """Detect the hardware: CUDA, ROCm and MPS GPUs, the CPU, the platform.

    Never raises and never hangs: a missing library or driver, an NVML error
    or a tool that does not answer within ``sources.timeout`` seconds makes
    that backend ``available=False`` with the ``reason`` recorded.

    Without ``sources`` the result is cached for the life of the process
    (until :func:`clear_cache`); with ``sources`` (recorded outputs, test
    doubles) detection always runs and the cache is left alone.
    """
    global _cache
    if sources is not None:
        return _detect(sources)
    cached = _cache
    if cached is not None:
        return cached
    with _lock:
        if _cache is None:
            _cache = _detect(Sources())
        return _cache


def clear_cache() -> None:
    """Forget the cached :func:`detect` result; the next call detects again."""
    global _cache
    with _lock:
        _cache = None


def info(hardware: HardwareInfo | None = None) -> dict[str, Any]:
    """The detected hardware as plain JSON-serialisable data (``snakepit hardware --json``)."""
    return (hardware if hardware is not None else detect()).to_dict()


def capabilities(hardware: HardwareInfo | None = None) -> Capabilities:
    """Flags and versions derived from :func:`detect` (or from ``hardware``)."""
    found = hardware if hardware is not None else detect()
    features = set(found.cpu.features)
    arm64 = found.cpu.arch.lower() in ("aarch64", "arm64")
    neon = "neon" in features or "asimd" in features or arm64
    return Capabilities(
        cuda=found.cuda.available,
        cuda_version=found.cuda.cuda_version if found.cuda.available else None,
        cudnn=found.cuda.available and found.cuda.cudnn_version is not None,
        cudnn_version=found.cuda.cudnn_version if found.cuda.available else None,
        mps=found.mps.available,
        rocm=found.rocm.available,
        rocm_version=found.rocm.rocm_version if found.rocm.available else None,
        gpu_count=found.gpu_count,
        avx="avx" in features,
        avx2="avx2" in features,
        avx512="avx512f" in features,
        # FMA3 on x86; fused multiply-add is part of the base ARMv8-A (AArch64) ISA.
        fma="fma" in features or arm64,
        neon=neon,
        sve="sve" in features,
    )


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_sorted(v) for v in value]
    return value


def identity(hardware: HardwareInfo | None = None) -> dict[str, Any]:
    """A stable description of this machine for lock files.

    Holds what decides which builds run here: platform, accelerator, CUDA and
    cuDNN versions, GPU count, names and compute capabilities, ROCm version and
    GPU architectures, CPU architecture and instruction-set features. Nothing
    that changes between runs (free memory, temperature, utilisation, driver
    patch level, kernel release) is included. Keys are sorted at every level,
    so ``json.dumps(identity(), sort_keys=True)`` is the same bytes in every
    process on the same machine.
    """
    found = hardware if hardware is not None else detect()
    cuda = found.cuda
    rocm = found.rocm
    data: dict[str, Any] = {
        "schema": IDENTITY_SCHEMA,
        "platform": {"system": found.platform.system, "machine": found.platform.machine},
        "accelerator": found.accelerator,
        "cpu": {
            "arch": found.cpu.arch,
            "features": sorted(f for f in found.cpu.features if f in _ISA_FEATURES),
        },
        "cuda": None,
        "rocm": None,
        "mps": found.mps.available,
        "gpus": {"count": found.gpu_count, "names": []},
    }
    names: list[str] = []
    if cuda.available:
        data["cuda"] = {
            "version": cuda.cuda_version,
            "cudnn_version": cuda.cudnn_version,
            "compute_capabilities": sorted(
                f"{d.compute_capability[0]}.{d.compute_capability[1]}"
                for d in cuda.devices
                if d.compute_capability is not None
            ),
        }
        names += [d.name for d in cuda.devices]
    if rocm.available:
        data["rocm"] = {
            "version": rocm.rocm_version,
            "gfx_archs": sorted({d.gfx_arch for d in rocm.devices if d.gfx_arch}),
        }
        names += [d.name for d in rocm.devices]
    if found.mps.available:
        names.append(found.mps.chip or "Apple GPU")
    data["gpus"]["names"] = sorted(names)
    result: dict[str, Any] = _sorted(data)
    return result
