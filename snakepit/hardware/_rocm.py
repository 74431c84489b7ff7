"""AMD GPUs under ROCm, from ``amd-smi`` or ``rocm-smi`` JSON output.

Both tools are tried by name on ``PATH`` and then under ``$ROCM_PATH/bin``
(``/opt/rocm/bin``). Nothing here raises: a missing tool, a failing one, bad
JSON or a timeout give ``RocmInfo(available=False, reason=...)``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from snakepit.hardware._sources import Sources
from snakepit.hardware._types import RocmDevice, RocmInfo
from snakepit.hardware._visible import apply_mask, rocm_masks

__all__ = ["detect_rocm", "parse_amd_smi", "parse_rocm_smi"]

_UNITS = {
    "b": 1,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "gb": 1 << 30,
    "gib": 1 << 30,
}
_CARD = re.compile(r"^card(\d+)$")


def _size(value: Any) -> int | None:
    """Bytes from ``{"value": 196592, "unit": "MB"}``, ``"196592 MB"`` or a number of bytes."""
    if isinstance(value, dict):
        number, unit = value.get("value"), str(value.get("unit", "B"))
    elif isinstance(value, str):
        number, _, unit = value.strip().partition(" ")
        unit = unit or "B"
    else:
        number, unit = value, "B"
    try:
        amount = float(number)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    factor = _UNITS.get(unit.strip().lower())
    return int(amount * factor) if factor is not None else None


def _known(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if not text or text.upper() == "N/A" else text


def _uuid(serial: str | None) -> str | None:
    if serial is None:
        return None
    digits = serial.lower().removeprefix("0x")
    return f"GPU-{digits}" if digits and all(c in "0123456789abcdef" for c in digits) else None


def parse_amd_smi(text: str) -> tuple[list[RocmDevice], str | None]:
    """Devices and driver version from ``amd-smi static --asic --vram --driver --json``.

    Accepts both layouts: a bare list (ROCm 6.0-6.2) and ``{"gpu_data": [...]}``.
    """
    data = json.loads(text)
    entries = data.get("gpu_data", []) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError("no GPU list in amd-smi output")
    devices = []
    driver = None
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        asic = entry.get("asic") or {}
        vram = entry.get("vram") or {}
        physical = entry.get("gpu", position)
        devices.append(
            RocmDevice(
                index=int(physical),
                physical_index=int(physical),
                name=_known(asic.get("market_name")) or "unknown AMD GPU",
                uuid=_uuid(_known(asic.get("asic_serial"))),
                gfx_arch=_known(asic.get("target_graphics_version")),
                memory_total=_size(vram.get("size")),
            )
        )
        driver_entry = entry.get("driver") or {}
        driver = driver or _known(driver_entry.get("version"))
    return devices, driver


def _field(card: dict[str, Any], *names: str) -> str | None:
    lowered = {str(k).lower(): v for k, v in card.items()}
    for name in names:
        value = _known(lowered.get(name.lower()))
        if value is not None:
            return value
    return None


def parse_rocm_smi(text: str) -> tuple[list[RocmDevice], str | None]:
    """Devices and driver version from ``rocm-smi --showproductname --showmeminfo vram
    --showdriverversion --showuniqueid --json``."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("rocm-smi output is not a JSON object")
    devices = []
    for key, card in data.items():
        match = _CARD.match(str(key))
        if match is None or not isinstance(card, dict):
            continue
        physical = int(match.group(1))
        total = _field(card, "VRAM Total Memory (B)")
        used = _field(card, "VRAM Total Used Memory (B)")
        devices.append(
            RocmDevice(
                index=physical,
                physical_index=physical,
                name=_field(card, "Card Series", "Card series", "Device Name", "Card Model")
                or "unknown AMD GPU",
                uuid=_uuid(_field(card, "Unique ID")),
                gfx_arch=_field(card, "GFX Version"),
                memory_total=_size(total) if total is not None else None,
                memory_used=_size(used) if used is not None else None,
            )
        )
    devices.sort(key=lambda d: d.physical_index)
    system = data.get("system")
    driver = _field(system, "Driver version") if isinstance(system, dict) else None
    return devices, driver


_TOOLS = (
    ("amd-smi", ["static", "--asic", "--vram", "--driver", "--json"], parse_amd_smi),
    (
        "rocm-smi",
        [
            "--showproductname",
            "--showmeminfo",
            "vram",
            "--showdriverversion",
            "--showuniqueid",
            "--json",
        ],
        parse_rocm_smi,
    ),
)


def _rocm_version(sources: Sources) -> str | None:
    root = sources.env.get("ROCM_PATH", "/opt/rocm")
    text = sources.read_file(f"{root}/.info/version")
    if not text or not text.strip():
        return None
    return text.strip().splitlines()[0].split("-")[0]


def _ask_tools(sources: Sources) -> tuple[str, list[RocmDevice], str | None] | list[str]:
    """The first tool that answers, or why each failed."""
    root = sources.env.get("ROCM_PATH", "/opt/rocm")
    failures = []
    for tool, args, parse in _TOOLS:
        why = f"{tool} not found"
        for executable in (tool, f"{root}/bin/{tool}"):
            try:
                result = sources.run([executable, *args], sources.timeout)
            except FileNotFoundError:
                continue
            except TimeoutError:
                why = f"{tool} did not answer within {sources.timeout:g} s"
                break
            except Exception as exc:
                why = f"{tool} could not run: {exc}"
                break
            if result.returncode != 0:
                line = (result.stderr.strip() or result.stdout.strip()).splitlines()
                why = f"{tool} failed (exit {result.returncode}): {line[0] if line else ''}"
                break
            try:
                devices, driver = parse(result.stdout)
            except (ValueError, TypeError, AttributeError) as exc:
                why = f"{tool} printed unreadable JSON ({exc})"
                break
            return tool, devices, driver
        failures.append(why)
    return failures


def detect_rocm(sources: Sources) -> RocmInfo:
    """AMD GPUs visible to this process (never raises)."""
    if sources.system_name != "Linux":
        return RocmInfo(available=False, reason=f"ROCm is not detected on {sources.system_name}")
    answer = _ask_tools(sources)
    if isinstance(answer, list):
        if all(why.endswith("not found") for why in answer):
            reason = "no ROCm tools (amd-smi, rocm-smi) found"
        else:
            reason = "; ".join(answer)
        return RocmInfo(available=False, reason=reason)
    source, found, driver = answer
    version = _rocm_version(sources)
    masks = rocm_masks(sources.env)
    uuids: list[str | None] = [None] * (max((d.physical_index for d in found), default=-1) + 1)
    for device in found:
        uuids[device.physical_index] = device.uuid
    order = [d.physical_index for d in found]
    notes = []
    for name, value in masks:
        order, note = apply_mask(name, value, order, uuids)
        if note:
            notes.append(note)
    by_index = {d.physical_index: d for d in found}
    visible = tuple(
        dataclasses.replace(by_index[physical], index=ordinal)
        for ordinal, physical in enumerate(order)
    )
    visible_text = ", ".join(f"{name}={value}" for name, value in masks) or None
    if not found:
        notes.insert(0, f"{source} lists no AMD GPU")
    elif not visible:
        notes.insert(0, f"{visible_text} hides all {len(found)} AMD GPUs")
    return RocmInfo(
        available=bool(visible),
        reason="; ".join(notes) or None,
        source=source,
        rocm_version=version,
        driver_version=driver,
        devices=visible,
        physical_count=len(found),
        visible_devices=visible_text,
    )
