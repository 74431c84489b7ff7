"""macOS: one ``sysctl`` call feeds both the MPS and the CPU record."""

from __future__ import annotations

from snakepit.hardware._sources import Sources
from snakepit.hardware._types import MpsInfo

__all__ = ["SYSCTL_ARGS", "detect_mps", "parse_sysctl", "read_sysctl"]

#: The subtrees and keys read (``hw.*`` and ``machdep.*`` print in full).
SYSCTL_ARGS = ("hw", "machdep", "kern.osproductversion", "sysctl.proc_translated")

_MPS_MIN_MACOS = (12, 3)


def parse_sysctl(text: str) -> dict[str, str]:
    """``key: value`` lines of ``sysctl`` output as a dict."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and "." in key and " " not in key:  # sysctl names are dotted
            values[key] = value.strip()
    return values


def read_sysctl(sources: Sources) -> tuple[dict[str, str], str | None]:
    """Run ``sysctl`` once; returns its values, and why it failed if it did.

    sysctl exits non-zero when one requested key is unknown (``sysctl.proc_translated``
    on Intel Macs) but still prints the others, so the output is used either way.
    """
    try:
        result = sources.run(["sysctl", *SYSCTL_ARGS], sources.timeout)
    except FileNotFoundError:
        return {}, "sysctl not found"
    except TimeoutError:
        return {}, f"sysctl did not answer within {sources.timeout:g} s"
    except Exception as exc:
        return {}, f"sysctl could not run: {exc}"
    values = parse_sysctl(result.stdout)
    return values, None if values else f"sysctl printed nothing (exit {result.returncode})"


def _version(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts = []
    for part in text.split("."):
        if not part.isdigit():
            return None
        parts.append(int(part))
    return tuple(parts)


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def detect_mps(sources: Sources, sysctl: dict[str, str], sysctl_error: str | None) -> MpsInfo:
    """The Apple silicon GPU, usable through MPS on macOS 12.3+ (never raises)."""
    system = sources.system_name
    if system != "Darwin":
        return MpsInfo(
            available=False, reason=f"MPS needs macOS on Apple silicon (this is {system})"
        )
    machine = sources.machine_name
    chip = sysctl.get("machdep.cpu.brand_string")
    macos = sysctl.get("kern.osproductversion")
    memory = _int(sysctl.get("hw.memsize"))
    if machine != "arm64":
        if sysctl.get("sysctl.proc_translated") == "1":
            why = f"Python runs as {machine} under Rosetta 2; MPS needs a native arm64 Python"
        else:
            why = f"MPS needs Apple silicon (this Mac is {machine})"
        return MpsInfo(available=False, reason=why, chip=chip, macos_version=macos)
    version = _version(macos)
    if version is not None and version[:2] < _MPS_MIN_MACOS:
        return MpsInfo(
            available=False,
            reason=f"MPS needs macOS 12.3 or newer (this is {macos})",
            chip=chip,
            macos_version=macos,
            unified_memory=memory,
        )
    note = None
    if version is None:
        note = f"macOS version unknown ({sysctl_error or 'kern.osproductversion missing'})"
    return MpsInfo(
        available=True, reason=note, chip=chip, macos_version=macos, unified_memory=memory
    )
