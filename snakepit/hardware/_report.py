"""``snakepit hardware``: the detected hardware as a readable table or as JSON."""

from __future__ import annotations

import json

from snakepit._util import format_bytes
from snakepit.hardware._detect import capabilities, detect, identity
from snakepit.hardware._types import CudaDevice, HardwareInfo, RocmDevice

__all__ = ["format_json", "format_table"]

_LABEL = 12


def _line(label: str, text: str) -> str:
    return f"{label + ':' if label else '':<{_LABEL}} {text}"


def _absent(reason: str | None) -> str:
    return f"not available -- {reason or 'not present'}"


def _optional(value: object, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def _memory(total: int | None, free: int | None) -> str:
    if total is None:
        return "-"
    if free is None:
        return f"{format_bytes(total)}"
    return f"{format_bytes(free)} free of {format_bytes(total)}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def _cuda_row(device: CudaDevice) -> list[str]:
    capability = (
        f"{device.compute_capability[0]}.{device.compute_capability[1]}"
        if device.compute_capability
        else "-"
    )
    if device.power_w is not None and device.power_limit_w is not None:
        power = f"{device.power_w:.0f} / {device.power_limit_w:.0f} W"
    else:
        power = _optional(None if device.power_w is None else f"{device.power_w:.0f}", " W")
    return [
        device.device,
        device.name,
        _memory(device.memory_total, device.memory_free),
        capability,
        _optional(device.temperature_c, " C"),
        _optional(device.utilization_gpu, " %"),
        power,
    ]


def _rocm_row(device: RocmDevice) -> list[str]:
    free = None
    if device.memory_total is not None and device.memory_used is not None:
        free = device.memory_total - device.memory_used
    return [device.device, device.name, _memory(device.memory_total, free), device.gfx_arch or "-"]


def format_table(hardware: HardwareInfo | None = None) -> str:
    """The hardware as text for people, including why each absent backend is absent."""
    found = hardware if hardware is not None else detect()
    plat = found.platform
    cpu = found.cpu
    caps = capabilities(found)
    lines = [
        _line(
            "Platform",
            f"{plat.system} {plat.release} {plat.machine}, "
            f"{plat.python_implementation} {plat.python_version}",
        ),
        _line("Accelerator", found.accelerator),
    ]
    cores = f"{_optional(cpu.physical_cores)} cores / {_optional(cpu.logical_cores)} threads"
    numa = "" if cpu.numa_nodes is None else f", {cpu.numa_nodes} NUMA node(s)"
    lines.append(
        _line(
            "CPU",
            f"{cpu.model or 'unknown model'} ({cpu.vendor or cpu.arch}), {cores}, "
            f"{format_bytes(cpu.memory_total)} RAM{numa}",
        )
    )
    flags = [
        name for name in ("avx", "avx2", "avx512", "fma", "neon", "sve") if getattr(caps, name)
    ]
    lines.append(_line("CPU flags", " ".join(flags) or "none of avx/avx2/avx512/fma/neon/sve"))
    if cpu.reason:
        lines.append(_line("", f"note: {cpu.reason}"))

    cuda = found.cuda
    if cuda.available:
        cudnn = (
            f"cuDNN {cuda.cudnn_version} ({cuda.cudnn_source})"
            if cuda.cudnn_version
            else f"cuDNN unknown ({cuda.cudnn_source})"
        )
        lines.append(
            _line(
                "CUDA",
                f"{len(cuda.devices)} of {cuda.physical_count} GPU(s) visible, driver "
                f"{_optional(cuda.driver_version)}, CUDA {_optional(cuda.cuda_version)}, "
                f"{cudnn}, via {cuda.source}",
            )
        )
        if cuda.reason:
            lines.append(_line("", f"note: {cuda.reason}"))
        lines += _table(
            ["device", "name", "memory", "cc", "temp", "util", "power"],
            [_cuda_row(d) for d in cuda.devices],
        )
    else:
        lines.append(_line("CUDA", _absent(cuda.reason)))

    rocm = found.rocm
    if rocm.available:
        lines.append(
            _line(
                "ROCm",
                f"{len(rocm.devices)} of {rocm.physical_count} GPU(s) visible, ROCm "
                f"{_optional(rocm.rocm_version)}, driver {_optional(rocm.driver_version)}, "
                f"via {rocm.source}",
            )
        )
        if rocm.reason:
            lines.append(_line("", f"note: {rocm.reason}"))
        lines += _table(["device", "name", "memory", "arch"], [_rocm_row(d) for d in rocm.devices])
    else:
        lines.append(_line("ROCm", _absent(rocm.reason)))

    mps = found.mps
    if mps.available:
        lines.append(
            _line(
                "MPS",
                f"available on {mps.chip or 'Apple silicon'}, macOS "
                f"{_optional(mps.macos_version)}, "
                f"{format_bytes(mps.unified_memory)} unified memory",
            )
        )
        if mps.reason:
            lines.append(_line("", f"note: {mps.reason}"))
    else:
        lines.append(_line("MPS", _absent(mps.reason)))
    lines.append(_line("Devices", ", ".join(found.devices)))
    return "\n".join(lines)


def format_json(hardware: HardwareInfo | None = None) -> str:
    """The hardware, its capabilities and its identity as one JSON document."""
    found = hardware if hardware is not None else detect()
    document = {
        "hardware": found.to_dict(),
        "capabilities": capabilities(found).as_dict(),
        "identity": identity(found),
    }
    return json.dumps(document, indent=2, sort_keys=True)
