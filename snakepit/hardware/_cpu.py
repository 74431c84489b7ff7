"""The host CPU: ``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS, psutil for counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from snakepit.hardware._sources import Sources
from snakepit.hardware._types import CpuInfo

__all__ = ["detect_cpu", "numa_node_count", "parse_cpuinfo"]

_T = TypeVar("_T")

#: ARM implementer codes and part numbers (the values lscpu knows).
_ARM_IMPLEMENTERS = {
    "0x41": "ARM",
    "0x42": "Broadcom",
    "0x43": "Cavium",
    "0x46": "Fujitsu",
    "0x48": "HiSilicon",
    "0x4e": "NVIDIA",
    "0x50": "APM",
    "0x51": "Qualcomm",
    "0x61": "Apple",
    "0xc0": "Ampere",
}
_ARM_PARTS = {
    ("0x41", "0xd03"): "Cortex-A53",
    ("0x41", "0xd07"): "Cortex-A57",
    ("0x41", "0xd08"): "Cortex-A72",
    ("0x41", "0xd0b"): "Cortex-A76",
    ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd40"): "Neoverse-V1",
    ("0x41", "0xd49"): "Neoverse-N2",
    ("0x41", "0xd4f"): "Neoverse-V2",
    ("0x41", "0xd84"): "Neoverse-V3",
    ("0x41", "0xd8e"): "Neoverse-N3",
    ("0x46", "0x001"): "A64FX",
    ("0x48", "0xd01"): "Kunpeng-920",
    ("0xc0", "0xac3"): "Ampere-1",
    ("0xc0", "0xac4"): "Ampere-1a",
}
#: ``hw.optional.*`` keys that describe the machine rather than an ISA feature.
_SYSCTL_NOT_FEATURES = {"arm64", "x86_64", "floatingpoint", "breakpoint", "watchpoint"}


def _try(fn: Callable[[], _T]) -> _T | None:
    try:
        return fn()
    except Exception:
        return None


def parse_cpuinfo(text: str) -> dict[str, str | int]:
    """The first processor's fields of ``/proc/cpuinfo`` plus ``processors`` (the count)."""
    first: dict[str, str | int] = {}
    processors = 0
    in_first = True
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if not line.strip() and processors:
                in_first = False
            continue
        key = key.strip()
        if key == "processor":
            processors += 1
        if in_first and key not in first:
            first[key] = value.strip()
    first["processors"] = processors
    return first


def _normalise_features(raw: list[str]) -> tuple[str, ...]:
    features = {flag.lower() for flag in raw if flag}
    if "pni" in features:  # the kernel's name for SSE3
        features.add("sse3")
    if "asimd" in features:  # Advanced SIMD is what everyone calls NEON
        features.add("neon")
    return tuple(sorted(features))


def numa_node_count(online: str | None) -> int | None:
    """NUMA nodes from ``/sys/devices/system/node/online`` (``0``, ``0-1``, ``0,2-3``)."""
    if online is None or not online.strip():
        return None
    count = 0
    for part in online.strip().split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            return None
        count += (int(high) - int(low) + 1) if high else 1
    return count


def _meminfo_total(text: str | None) -> int | None:
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def _linux_cpu(sources: Sources, arch: str) -> CpuInfo:
    text = sources.read_file("/proc/cpuinfo")
    fields = parse_cpuinfo(text) if text else {}
    notes = [] if text else ["/proc/cpuinfo unreadable"]
    vendor = str(fields["vendor_id"]) if "vendor_id" in fields else None
    model = str(fields["model name"]) if "model name" in fields else None
    implementer = str(fields.get("CPU implementer", "")).lower()
    if implementer:
        part = str(fields.get("CPU part", "")).lower()
        vendor = vendor or _ARM_IMPLEMENTERS.get(implementer, f"implementer {implementer}")
        model = model or _ARM_PARTS.get((implementer, part), f"{vendor} part {part or '?'}")
    flags = str(fields.get("flags") or fields.get("Features") or "").split()
    counted = fields.get("processors")
    logical = _try(sources.logical_cores) or (counted if isinstance(counted, int) else None)
    memory = _meminfo_total(sources.read_file("/proc/meminfo")) or _try(sources.memory_total)
    return CpuInfo(
        arch=arch,
        vendor=vendor,
        model=model,
        physical_cores=_try(sources.physical_cores),
        logical_cores=logical or None,
        features=_normalise_features(flags),
        memory_total=memory,
        numa_nodes=numa_node_count(sources.read_file("/sys/devices/system/node/online")),
        source="/proc/cpuinfo" if text else None,
        reason="; ".join(notes) or None,
    )


def _sysctl_int(values: dict[str, str], key: str) -> int | None:
    value = values.get(key)
    return int(value) if value is not None and value.isdigit() else None


def _sysctl_features(values: dict[str, str]) -> tuple[str, ...]:
    features = []
    for key, value in values.items():
        if not key.startswith("hw.optional.") or value != "1":
            continue
        name = key.removeprefix("hw.optional.").lower()
        name = name.removeprefix("arm.feat_").removeprefix("arm.")
        name = {"advsimd": "asimd", "avx1_0": "avx", "avx2_0": "avx2"}.get(name, name)
        if name not in _SYSCTL_NOT_FEATURES:
            features.append(name)
    return _normalise_features(features)


def _darwin_cpu(
    sources: Sources, arch: str, sysctl: dict[str, str], sysctl_error: str | None
) -> CpuInfo:
    vendor = sysctl.get("machdep.cpu.vendor") or ("Apple" if arch == "arm64" else None)
    return CpuInfo(
        arch=arch,
        vendor=vendor,
        model=sysctl.get("machdep.cpu.brand_string"),
        physical_cores=_sysctl_int(sysctl, "hw.physicalcpu") or _try(sources.physical_cores),
        logical_cores=_sysctl_int(sysctl, "hw.logicalcpu") or _try(sources.logical_cores),
        features=_sysctl_features(sysctl),
        memory_total=_sysctl_int(sysctl, "hw.memsize") or _try(sources.memory_total),
        numa_nodes=None,
        source="sysctl" if sysctl else None,
        reason=sysctl_error,
    )


def _other_cpu(sources: Sources, arch: str) -> CpuInfo:
    import platform

    return CpuInfo(
        arch=arch,
        model=platform.processor() or None,
        physical_cores=_try(sources.physical_cores),
        logical_cores=_try(sources.logical_cores),
        memory_total=_try(sources.memory_total),
        source="platform",
        reason=f"feature flags are not read on {sources.system_name}",
    )


def detect_cpu(sources: Sources, sysctl: dict[str, str], sysctl_error: str | None) -> CpuInfo:
    """The host CPU and memory (never raises)."""
    arch = sources.machine_name
    system = sources.system_name
    if system == "Linux":
        return _linux_cpu(sources, arch)
    if system == "Darwin":
        return _darwin_cpu(sources, arch, sysctl, sysctl_error)
    return _other_cpu(sources, arch)
