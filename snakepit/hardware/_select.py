"""Choosing devices: select / select_with_fallback, and pinning workers to them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from snakepit.errors import DeviceNotAvailableError
from snakepit.hardware._detect import detect
from snakepit.hardware._events import DEVICE_SELECTED, DEVICE_UNAVAILABLE, emit
from snakepit.hardware._types import HardwareInfo
from snakepit.hardware._visible import mask_tokens

__all__ = [
    "DeviceSpec",
    "assign_devices",
    "parse_device",
    "select",
    "select_with_fallback",
    "worker_environment",
]

_KINDS = ("auto", "cpu", "cuda", "rocm", "mps")
_ALIASES = {"gpu": "cuda", "hip": "rocm"}
_EXPECTED = "expected auto, cpu, cuda, cuda:N, rocm, rocm:N or mps"
_MASKS = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A parsed device string: ``kind`` and, for ``cuda:N``/``rocm:N``, ``index``."""

    kind: str
    index: int | None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def parse_device(device: str) -> DeviceSpec:
    """Parse ``auto``, ``cpu``, ``mps``, ``cuda``, ``cuda:N``, ``rocm``, ``rocm:N``.

    ``gpu`` and ``hip`` are accepted as aliases of ``cuda`` and ``rocm``.

    Raises:
        DeviceNotAvailableError: The string names no device kind snakepit knows.
    """
    text = str(device).strip().lower()
    kind, sep, index = text.partition(":")
    kind = _ALIASES.get(kind, kind)
    if kind not in _KINDS:
        raise DeviceNotAvailableError(device=str(device), reason=f"unknown device; {_EXPECTED}")
    if not sep:
        return DeviceSpec(kind, None)
    if kind in ("cuda", "rocm") and index.isdigit():
        return DeviceSpec(kind, int(index))
    raise DeviceNotAvailableError(device=str(device), reason=f"malformed device; {_EXPECTED}")


def _unavailable(requested: str, why: str, found: HardwareInfo) -> DeviceNotAvailableError:
    available = list(found.devices)
    emit(DEVICE_UNAVAILABLE, {}, {"requested": requested, "available": available, "reason": why})
    return DeviceNotAvailableError(
        device=requested, reason=f"{why}; available here: {', '.join(available)}"
    )


def _gpu_list(kind: str, count: int) -> str:
    if count == 0:
        return f"no {kind} device is visible"
    if count == 1:
        return f"only {kind}:0 exists"
    return f"{count} {kind} devices exist ({kind}:0 to {kind}:{count - 1})"


def _resolve(requested: str, found: HardwareInfo) -> tuple[str | None, str]:
    """The device ``requested`` names here and why, or ``None`` and why not."""
    spec = parse_device(requested)
    if spec.kind == "cpu":
        return "cpu", "the CPU is always available"
    if spec.kind == "auto":
        if found.cuda.devices:
            first = found.cuda.devices[0]
            count = len(found.cuda.devices)
            return first.device, f"auto: {first.name}, first of {count} visible CUDA device(s)"
        if found.rocm.devices:
            first_amd = found.rocm.devices[0]
            count = len(found.rocm.devices)
            return first_amd.device, (
                f"auto: {first_amd.name}, first of {count} visible ROCm device(s)"
            )
        if found.mps.available:
            return "mps", f"auto: Apple GPU ({found.mps.chip or 'Apple silicon'}) through MPS"
        why = "; ".join(f"{name}: {reason}" for name, reason in found.reasons.items())
        return "cpu", f"auto: no GPU found ({why})"
    if spec.kind == "mps":
        if found.mps.available:
            return "mps", "MPS is available"
        return None, f"MPS is not available: {found.mps.reason}"
    devices = found.cuda.devices if spec.kind == "cuda" else found.rocm.devices
    backend = found.cuda if spec.kind == "cuda" else found.rocm
    if not devices:
        name = "CUDA" if spec.kind == "cuda" else "ROCm"
        return None, f"no {name} device: {backend.reason or 'none found'}"
    index = 0 if spec.index is None else spec.index
    if index >= len(devices):
        return None, f"{spec.kind}:{index} does not exist: {_gpu_list(spec.kind, len(devices))}"
    chosen = devices[index]
    return chosen.device, f"{chosen.device} is {chosen.name}"


def select(preference: str = "auto", hardware: HardwareInfo | None = None) -> str:
    """The device string for ``preference``, checked against the detected hardware.

    ``auto`` picks the first visible CUDA GPU, else the first ROCm GPU, else
    MPS, else ``cpu``; ``cuda`` means ``cuda:0``; ``cpu`` always succeeds.

    Raises:
        DeviceNotAvailableError: The device is not present; ``device`` names
            what was asked for, ``reason`` why it is unavailable and which
            devices exist.
    """
    found = hardware if hardware is not None else detect()
    device, why = _resolve(preference, found)
    if device is None:
        raise _unavailable(preference, why, found)
    emit(DEVICE_SELECTED, {}, {"requested": preference, "selected": device, "reason": why})
    return device


def select_with_fallback(preferences: Sequence[str], hardware: HardwareInfo | None = None) -> str:
    """The first of ``preferences`` that is available, e.g. ``["cuda", "mps", "cpu"]``.

    Raises:
        ValueError: ``preferences`` is empty.
        DeviceNotAvailableError: None of them is available (the reason lists
            why each one failed and what exists).
    """
    wanted = [preferences] if isinstance(preferences, str) else list(preferences)
    if not wanted:
        raise ValueError("select_with_fallback needs at least one device preference")
    found = hardware if hardware is not None else detect()
    failures: list[str] = []
    for preference in wanted:
        device, why = _resolve(preference, found)
        if device is None:
            emit(
                DEVICE_UNAVAILABLE,
                {},
                {"requested": preference, "available": list(found.devices), "reason": why},
            )
            failures.append(f"{preference}: {why}")
            continue
        if failures:
            why = f"{why} (fell back: {'; '.join(failures)})"
        emit(DEVICE_SELECTED, {}, {"requested": preference, "selected": device, "reason": why})
        return device
    requested = ", ".join(wanted)
    raise DeviceNotAvailableError(
        device=requested,
        reason=f"{'; '.join(failures)}; available here: {', '.join(found.devices)}",
    )


def _pick(name: str, value: str, position: int, device: str) -> str:
    tokens = mask_tokens(value)
    if position >= len(tokens):
        raise DeviceNotAvailableError(
            device=device,
            reason=f"{name}={value!r} leaves only {len(tokens)} device(s) visible here",
        )
    return tokens[position]


def worker_environment(device: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables that pin a worker process to ``device``.

    - ``cpu``: every GPU hidden (``CUDA_VISIBLE_DEVICES``, ``HIP_VISIBLE_DEVICES``
      and ``ROCR_VISIBLE_DEVICES`` set to the empty string);
    - ``cuda:N``: ``CUDA_VISIBLE_DEVICES`` names only GPU ``N``;
    - ``rocm:N``: ``ROCR_VISIBLE_DEVICES`` names only GPU ``N`` and
      ``HIP_VISIBLE_DEVICES=0`` (HIP numbers what ROCR leaves visible);
    - ``mps`` and ``auto``: nothing to set.

    ``N`` counts the devices this process sees: when ``environ`` (default
    ``os.environ``) already restricts them, the worker gets the matching entry
    of that mask (``CUDA_VISIBLE_DEVICES=2,3`` makes ``cuda:1`` mean ``3``).

    Raises:
        DeviceNotAvailableError: Unknown device string, or ``N`` beyond the
            devices the current mask leaves visible.
    """
    env = os.environ if environ is None else environ
    spec = parse_device(device)
    if spec.kind == "cpu":
        return dict.fromkeys(_MASKS, "")
    if spec.kind in ("auto", "mps"):
        return {}
    index = spec.index or 0
    if spec.kind == "cuda":
        parent = env.get("CUDA_VISIBLE_DEVICES")
        token = (
            str(index) if parent is None else _pick("CUDA_VISIBLE_DEVICES", parent, index, device)
        )
        return {"CUDA_VISIBLE_DEVICES": token}
    # rocm: HIP's mask (or CUDA_VISIBLE_DEVICES, which HIP also reads) numbers
    # the devices left by ROCR's mask, which numbers the physical ones.
    hip_name = "HIP_VISIBLE_DEVICES" if "HIP_VISIBLE_DEVICES" in env else "CUDA_VISIBLE_DEVICES"
    hip = env.get(hip_name)
    token = str(index) if hip is None else _pick(hip_name, hip, index, device)
    rocr = env.get("ROCR_VISIBLE_DEVICES")
    if rocr is not None and token.isdigit():
        token = _pick("ROCR_VISIBLE_DEVICES", rocr, int(token), device)
    return {"ROCR_VISIBLE_DEVICES": token, "HIP_VISIBLE_DEVICES": "0"}


def _auto_devices(found: HardwareInfo) -> list[str]:
    if found.cuda.devices:
        return [d.device for d in found.cuda.devices]
    if found.rocm.devices:
        return [d.device for d in found.rocm.devices]
    if found.mps.available:
        return ["mps"]
    return ["cpu"]


def assign_devices(
    spec: str | Sequence[str], workers: int, info: HardwareInfo | None = None
) -> list[str]:
    """The device of each of ``workers`` workers.

    ``spec`` is one device string or a list that is spread round-robin.
    ``auto`` spreads workers round-robin over the visible GPUs (``cuda:0``,
    ``cuda:1``, ...; else ROCm GPUs; else ``mps``; else ``cpu``) using
    ``info`` or :func:`detect`. ``cuda``/``rocm`` without an index mean
    index 0. Explicit devices are only checked for syntax here (``Pool``
    checks that they exist with :func:`select` before it starts).

    Raises:
        ValueError: ``workers < 1`` or an empty list.
        DeviceNotAvailableError: A device string snakepit does not understand.
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    entries = [spec] if isinstance(spec, str) else list(spec)
    if not entries:
        raise ValueError("device list is empty")
    specs = [parse_device(entry) for entry in entries]
    auto: list[str] = []
    if any(s.kind == "auto" for s in specs):
        found = info if info is not None else detect()
        auto = _auto_devices(found)
    assigned: list[str] = []
    from_auto: list[str] = []
    for worker in range(workers):
        parsed = specs[worker % len(specs)]
        if parsed.kind == "auto":
            device = auto[len(from_auto) % len(auto)]
            from_auto.append(device)
        elif parsed.kind in ("cuda", "rocm"):
            device = f"{parsed.kind}:{parsed.index or 0}"
        else:
            device = parsed.kind
        assigned.append(device)
    if from_auto:
        used = ", ".join(dict.fromkeys(from_auto))
        emit(
            DEVICE_SELECTED,
            {},
            {
                "requested": "auto",
                "selected": used,
                "reason": f"{len(from_auto)} worker(s) spread round-robin over {used}",
            },
        )
    return assigned
