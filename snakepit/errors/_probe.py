"""Live memory figures for out-of-memory records, measured in the worker.

Only called for errors classified as out-of-memory. Nothing here may raise:
the worker is in trouble already, and a failing probe must not replace the
user's error with its own. NVML (``pynvml``) is imported on first use only,
and no deep-learning framework is imported at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["LIMIT_KINDS", "MemoryProbe", "host_memory", "nvml_memory_probe"]

MemoryProbe = Callable[[str], Mapping[str, int] | None]
"""Measures a device: called with ``"cuda:0"``-style names, returns byte counts
under ``free``, ``total`` and (optionally) ``used``, or ``None``/``{}`` when it
cannot tell. Exceptions it raises are swallowed."""

_ACCELERATOR_PREFIXES = ("cuda", "gpu")


#: Which limit ``host_memory`` found tighter than the host (``host_limit_kind``).
LIMIT_KINDS = {1: "RLIMIT_AS", 2: "RLIMIT_DATA", 3: "cgroup memory.max"}


def host_memory() -> dict[str, int]:
    """Available and total physical memory of this host (empty where unknown),
    and the tightest limit of this process below it, if any: ``host_limit``,
    ``host_limit_used`` and ``host_limit_kind`` (a key of :data:`LIMIT_KINDS`)."""
    try:
        page_size = int(os.sysconf("SC_PAGE_SIZE"))
        figures = {
            "host_available": int(os.sysconf("SC_AVPHYS_PAGES")) * page_size,
            "host_total": int(os.sysconf("SC_PHYS_PAGES")) * page_size,
        }
    except (ValueError, OSError, AttributeError, TypeError):
        return {}
    try:
        limit = _tightest_limit()
    except Exception:  # a probe must never replace the user's error
        limit = None
    if limit is not None and limit[1] < figures["host_total"]:
        kind, size, used = limit
        figures.update(host_limit=size, host_limit_used=used, host_limit_kind=kind)
    return figures


def _status_bytes(field: str) -> int:
    """A ``kB`` figure of /proc/self/status, in bytes (0 where unknown)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _cgroup_limit() -> tuple[int, int] | None:
    """This process's cgroup v2 ``memory.max`` and ``memory.current``, if limited."""
    with open("/proc/self/cgroup") as cgroups:
        for line in cgroups:
            hierarchy, _, path = line.strip().partition("::")
            if hierarchy == "0":
                base = "/sys/fs/cgroup" + path.rstrip("/")
                with open(base + "/memory.max") as limit_file:
                    text = limit_file.read().strip()
                if text == "max":
                    return None
                with open(base + "/memory.current") as current_file:
                    return int(text), int(current_file.read().strip())
    return None


def _tightest_limit() -> tuple[int, int, int] | None:
    """(kind, limit, in use) of the smallest memory limit on this process."""
    import resource

    found: list[tuple[int, int, int]] = []
    for kind, which, field in (
        (1, resource.RLIMIT_AS, "VmSize"),
        (2, resource.RLIMIT_DATA, "VmData"),
    ):
        soft = resource.getrlimit(which)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            found.append((kind, soft, _status_bytes(field)))
    try:
        cgroup = _cgroup_limit()
    except (OSError, ValueError):
        cgroup = None
    if cgroup is not None:
        found.append((3, cgroup[0], cgroup[1]))
    return min(found, key=lambda item: item[1]) if found else None


def _nvml_target(device: str) -> int | str | None:
    """NVML index (int) or UUID (str) of a CUDA device name, honouring CUDA_VISIBLE_DEVICES."""
    name, _, index_text = device.partition(":")
    if name not in _ACCELERATOR_PREFIXES:
        return None
    index = int(index_text) if index_text.isdigit() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return index
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if index >= len(entries):
        return None
    entry = entries[index]
    if entry.isdigit():
        return int(entry)
    if entry.startswith(("GPU-", "MIG-")):
        return entry
    return None


def nvml_memory_probe(device: str) -> dict[str, int]:
    """Free, total and used bytes of a CUDA device, read through NVML.

    ``device`` is a name such as ``cuda:1`` (index as the process sees it, so
    ``CUDA_VISIBLE_DEVICES`` is honoured, UUIDs included) or ``cuda``/``gpu``
    (device 0). Returns ``{}`` for other devices, when ``pynvml`` is not
    installed, when there is no driver, or on any other failure; never raises.
    """
    try:
        target = _nvml_target(device)
        if target is None:
            return {}
        import pynvml

        nvml: Any = pynvml
        nvml.nvmlInit()
        try:
            if isinstance(target, str):
                handle = nvml.nvmlDeviceGetHandleByUUID(target)
            else:
                handle = nvml.nvmlDeviceGetHandleByIndex(target)
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
            return {"free": int(info.free), "total": int(info.total), "used": int(info.used)}
        finally:
            nvml.nvmlShutdown()
    except Exception:  # no module, no driver, no device: nothing to report
        return {}


def _non_negative_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def live_memory(device: object, probe: MemoryProbe) -> dict[str, int]:
    """Host figures, plus ``device_*`` figures from ``probe`` for accelerator devices."""
    live = host_memory()
    if not (isinstance(device, str) and device.startswith(_ACCELERATOR_PREFIXES)):
        return live
    try:
        measured = probe(device)
        if not isinstance(measured, Mapping):
            return live
        for key in ("free", "total", "used"):
            value = _non_negative_int(measured.get(key))
            if value is not None:
                live[f"device_{key}"] = value
    except Exception:  # an injected probe is user code: contain it
        pass
    return live
