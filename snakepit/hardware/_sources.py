"""Where detection reads the machine: every source can be replaced.

:class:`Sources` bundles the NVML loader, the command runner, the file reader,
the environment and the platform values. The defaults read this machine; tests
pass recorded outputs instead, so every path runs on any machine.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, cast

__all__ = [
    "DEFAULT_TIMEOUT",
    "CommandResult",
    "CommandRunner",
    "FileReader",
    "Nvml",
    "Sources",
    "installed_version",
    "load_pynvml",
    "loaded_torch",
    "read_text",
    "run_command",
]

#: Seconds any external tool gets before it is killed and counted as absent.
DEFAULT_TIMEOUT = 2.0

#: Most bytes read from one file (``/proc/cpuinfo`` of a 256-thread box is ~300 KiB).
_READ_LIMIT = 4 << 20


class CommandResult(NamedTuple):
    """What a finished command printed."""

    returncode: int
    stdout: str
    stderr: str


#: ``run(argv, timeout)``: raises ``FileNotFoundError`` when the tool is not
#: installed and ``TimeoutError`` when it did not finish within ``timeout`` s.
CommandRunner = Callable[[Sequence[str], float], CommandResult]

#: ``read(path)``: the file's text, or ``None`` when it cannot be read.
FileReader = Callable[[str], "str | None"]


class Nvml(Protocol):
    """The subset of ``pynvml`` (nvidia-ml-py) that detection calls (pynvml's names).

    Failures raise ``pynvml.NVMLError`` (an exception whose ``value`` is the
    NVML return code); any exception is handled the same way.
    """

    def nvmlInit(self) -> None: ...  # noqa: N802
    def nvmlShutdown(self) -> None: ...  # noqa: N802
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...  # noqa: N802
    def nvmlSystemGetCudaDriverVersion(self) -> int: ...  # noqa: N802
    def nvmlDeviceGetCount(self) -> int: ...  # noqa: N802
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...  # noqa: N802
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...  # noqa: N802
    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes: ...  # noqa: N802
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...  # noqa: N802
    def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> tuple[int, int]: ...  # noqa: N802
    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int: ...  # noqa: N802
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...  # noqa: N802
    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int: ...  # noqa: N802
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int: ...  # noqa: N802


def load_pynvml() -> Nvml:
    """Import ``pynvml`` (nvidia-ml-py); ``ImportError`` if it is not installed."""
    import pynvml

    return cast("Nvml", pynvml)


def loaded_torch() -> object | None:
    """``torch`` if this process already imported it, else ``None`` (never imports it)."""
    return sys.modules.get("torch")


def installed_version(distribution: str) -> str | None:
    """Version of an installed distribution (package metadata only, no import)."""
    import importlib.metadata  # ~10 ms: only when a GPU makes the cuDNN question worth it

    try:
        return importlib.metadata.version(distribution)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def read_text(path: str) -> str | None:
    """The text of ``path``, or ``None`` if it does not exist or cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(_READ_LIMIT)
    except (OSError, ValueError):
        return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if hasattr(os, "killpg"):
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)  # the tool and anything it started
    with contextlib.suppress(OSError):
        proc.kill()


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run a tool and capture its output, never waiting longer than ``timeout`` s.

    The tool runs in its own session; on timeout the whole process group is
    killed (SIGKILL) and reaped, so nothing is left behind and a tool whose
    children hold the pipes open cannot make this call hang.

    Raises:
        FileNotFoundError: ``argv[0]`` is not on ``PATH``.
        TimeoutError: The tool did not finish in time.
    """
    if not argv:
        raise ValueError("empty command")
    executable = shutil.which(argv[0])
    if executable is None:
        raise FileNotFoundError(f"{argv[0]} not found on PATH")
    env = {**os.environ, "LC_ALL": "C"}  # numbers and messages in one known format
    proc = subprocess.Popen(
        [executable, *argv[1:]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            proc.communicate(timeout=0.5)
        except subprocess.TimeoutExpired:  # a grandchild escaped the group and holds a pipe
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            proc.wait()
        raise TimeoutError(f"{argv[0]} did not answer within {timeout:g} s") from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    return CommandResult(
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
    )


def _physical_cores() -> int | None:
    import psutil

    return psutil.cpu_count(logical=False)


def _memory_total() -> int | None:
    import psutil

    return int(psutil.virtual_memory().total)


@dataclass(frozen=True)
class Sources:
    """Everything detection reads, each replaceable (tests pass recorded outputs).

    Attributes:
        system: ``platform.system()`` value (``None``: this machine's).
        machine: ``platform.machine()`` value (``None``: this machine's).
        release: ``platform.release()`` value (``None``: this machine's).
        environ: Environment variables (``None``: ``os.environ``).
        load_nvml: Returns the NVML module; raises ``ImportError`` when absent.
        run: Runs a command (see :func:`run_command`).
        read_file: Reads a file (see :func:`read_text`).
        timeout: Seconds each external tool may take.
        torch: Returns ``torch`` only if already imported (cuDNN version).
        package_version: Version of an installed distribution, or ``None``.
        logical_cores: Hardware threads (``os.cpu_count``).
        physical_cores: Cores without SMT siblings (psutil).
        memory_total: Bytes of RAM, when ``/proc/meminfo`` and sysctl do not tell (psutil).
    """

    system: str | None = None
    machine: str | None = None
    release: str | None = None
    environ: Mapping[str, str] | None = None
    load_nvml: Callable[[], Nvml] = load_pynvml
    run: CommandRunner = run_command
    read_file: FileReader = read_text
    timeout: float = DEFAULT_TIMEOUT
    torch: Callable[[], object | None] = loaded_torch
    package_version: Callable[[str], str | None] = installed_version
    logical_cores: Callable[[], int | None] = os.cpu_count
    physical_cores: Callable[[], int | None] = _physical_cores
    memory_total: Callable[[], int | None] = _memory_total

    @property
    def system_name(self) -> str:
        """The operating system name."""
        return self.system if self.system is not None else platform.system()

    @property
    def machine_name(self) -> str:
        """The machine architecture, normalised (``arm64`` stays ``arm64`` on macOS)."""
        return self.machine if self.machine is not None else platform.machine()

    @property
    def release_name(self) -> str:
        """The kernel / OS release."""
        return self.release if self.release is not None else platform.release()

    @property
    def env(self) -> Mapping[str, str]:
        """The environment variables to honour."""
        return self.environ if self.environ is not None else os.environ
