"""NVIDIA GPUs: NVML first, ``nvidia-smi`` as the fallback, cuDNN when cheap.

Nothing here raises: a missing library, a missing or broken driver, an NVML
error or a tool that hangs all give ``CudaInfo(available=False, reason=...)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable
from typing import Any, TypeVar

from snakepit.hardware._sources import Nvml, Sources
from snakepit.hardware._types import CudaDevice, CudaInfo
from snakepit.hardware._visible import apply_mask

__all__ = ["NVML_LIBRARY_NOT_FOUND", "cuda_version_text", "detect_cuda"]

_T = TypeVar("_T")

#: NVML return codes (nvml.h) that get a friendlier explanation.
NVML_LIBRARY_NOT_FOUND = 12
_NVML_DRIVER_NOT_LOADED = 9
_NVML_NO_PERMISSION = 4

_NVML_TEMPERATURE_GPU = 0
_MIB = 1 << 20

#: cuDNN wheels, newest CUDA first (the version of the one installed is cuDNN's).
_CUDNN_DISTRIBUTIONS = ("nvidia-cudnn-cu13", "nvidia-cudnn-cu12", "nvidia-cudnn-cu11")

_SMI_FIELDS = (
    "index",
    "name",
    "uuid",
    "memory.total",
    "memory.free",
    "memory.used",
    "compute_cap",
    "temperature.gpu",
    "utilization.gpu",
    "utilization.memory",
    "power.draw",
    "power.limit",
    "driver_version",
)
_SMI_CUDA_VERSION = re.compile(r"CUDA Version:\s*([0-9]+(?:\.[0-9]+)*)")


def cuda_version_text(version: int) -> str:
    """NVML's integer CUDA version as text: ``12040`` → ``"12.4"``."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _error_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # pynvml's __str__ itself calls into NVML
        text = ""
    return text or type(exc).__name__


def _library_name(system: str) -> str:
    return "nvml.dll" if system == "Windows" else "libnvidia-ml.so.1"


def _init_failure(exc: BaseException, system: str) -> str:
    code = getattr(exc, "value", None)
    if code == NVML_LIBRARY_NOT_FOUND:
        return f"NVML: {_library_name(system)} not found (no NVIDIA driver installed)"
    if code == _NVML_DRIVER_NOT_LOADED:
        return "NVML init failed: Driver Not Loaded (the NVIDIA kernel module is not loaded)"
    if code == _NVML_NO_PERMISSION:
        return f"NVML init failed: {_error_text(exc)} (no permission to open /dev/nvidia*)"
    return f"NVML init failed: {_error_text(exc)}"


def _try(fn: Callable[..., _T], *args: Any) -> _T | None:
    """One NVML query; ``None`` when the GPU or driver does not support it."""
    try:
        return fn(*args)
    except Exception:
        return None


def _int_attr(obj: object, name: str) -> int | None:
    value = getattr(obj, name, None)
    if value is None and isinstance(obj, dict):
        value = obj.get(name)
    return int(value) if isinstance(value, (int, float)) else None


def _nvml_device(nvml: Nvml, nvml_index: int) -> tuple[CudaDevice, str | None]:
    """Read one GPU; returns it (index still the NVML one) and its UUID."""
    handle = nvml.nvmlDeviceGetHandleByIndex(nvml_index)
    name = _try(nvml.nvmlDeviceGetName, handle)
    uuid = _try(nvml.nvmlDeviceGetUUID, handle)
    memory = _try(nvml.nvmlDeviceGetMemoryInfo, handle)
    capability = _try(nvml.nvmlDeviceGetCudaComputeCapability, handle)
    temperature = _try(nvml.nvmlDeviceGetTemperature, handle, _NVML_TEMPERATURE_GPU)
    rates = _try(nvml.nvmlDeviceGetUtilizationRates, handle)
    power = _try(nvml.nvmlDeviceGetPowerUsage, handle)
    limit = _try(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    uuid_text = _text(uuid) if uuid is not None else None
    device = CudaDevice(
        index=nvml_index,
        nvml_index=nvml_index,
        name=_text(name) if name is not None else "unknown NVIDIA GPU",
        uuid=uuid_text,
        memory_total=_int_attr(memory, "total"),
        memory_free=_int_attr(memory, "free"),
        memory_used=_int_attr(memory, "used"),
        compute_capability=(
            (int(capability[0]), int(capability[1])) if capability is not None else None
        ),
        temperature_c=int(temperature) if temperature is not None else None,
        utilization_gpu=_int_attr(rates, "gpu"),
        utilization_memory=_int_attr(rates, "memory"),
        power_w=power / 1000.0 if power is not None else None,
        power_limit_w=limit / 1000.0 if limit is not None else None,
    )
    return device, uuid_text


class _Found:
    """What one source found before visibility is applied."""

    def __init__(
        self,
        source: str,
        devices: list[CudaDevice],
        driver_version: str | None,
        cuda_version: str | None,
    ) -> None:
        self.source = source
        self.devices = devices
        self.driver_version = driver_version
        self.cuda_version = cuda_version


def _from_nvml(nvml: Nvml) -> _Found:
    """Query NVML (already initialised)."""
    driver = _try(nvml.nvmlSystemGetDriverVersion)
    cuda = _try(nvml.nvmlSystemGetCudaDriverVersion)
    count = int(nvml.nvmlDeviceGetCount())
    devices = []
    for index in range(count):
        try:
            devices.append(_nvml_device(nvml, index)[0])
        except Exception as exc:  # the handle itself failed: GPU lost, no permission...
            devices.append(CudaDevice(index, index, f"unusable GPU ({_error_text(exc)})"))
    return _Found(
        "nvml",
        devices,
        _text(driver) if driver is not None else None,
        cuda_version_text(int(cuda)) if isinstance(cuda, int) and cuda > 0 else None,
    )


def _smi_value(raw: str) -> str | None:
    value = raw.strip()
    if not value or value.strip("[]").lower() in ("n/a", "not supported", "unknown error"):
        return None
    return value


def _smi_int(raw: str) -> int | None:
    value = _smi_value(raw)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _smi_float(raw: str) -> float | None:
    value = _smi_value(raw)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _smi_mib(raw: str) -> int | None:
    value = _smi_int(raw)
    return value * _MIB if value is not None else None


def _smi_capability(raw: str) -> tuple[int, int] | None:
    value = _smi_value(raw)
    if value is None or "." not in value:
        return None
    major, _, minor = value.partition(".")
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None


def parse_nvidia_smi(csv_text: str) -> tuple[list[CudaDevice], str | None]:
    """Devices and driver version from ``nvidia-smi --query-gpu=...``.

    The output format is ``--format=csv,noheader,nounits`` with the fields
    of ``_SMI_FIELDS`` in order; unsupported values (``[N/A]``) become ``None``.
    """
    devices = []
    driver = None
    for line in csv_text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(_SMI_FIELDS) or not fields[0].isdigit():
            continue
        row = dict(zip(_SMI_FIELDS, fields, strict=True))
        index = int(row["index"])
        devices.append(
            CudaDevice(
                index=index,
                nvml_index=index,
                name=_smi_value(row["name"]) or "unknown NVIDIA GPU",
                uuid=_smi_value(row["uuid"]),
                memory_total=_smi_mib(row["memory.total"]),
                memory_free=_smi_mib(row["memory.free"]),
                memory_used=_smi_mib(row["memory.used"]),
                compute_capability=_smi_capability(row["compute_cap"]),
                temperature_c=_smi_int(row["temperature.gpu"]),
                utilization_gpu=_smi_int(row["utilization.gpu"]),
                utilization_memory=_smi_int(row["utilization.memory"]),
                power_w=_smi_float(row["power.draw"]),
                power_limit_w=_smi_float(row["power.limit"]),
            )
        )
        driver = driver or _smi_value(row["driver_version"])
    return devices, driver


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _from_nvidia_smi(sources: Sources) -> tuple[_Found | None, str]:
    """Ask ``nvidia-smi``; returns what it found, or ``None`` and why not."""
    argv = [
        "nvidia-smi",
        "--query-gpu=" + ",".join(_SMI_FIELDS),
        "--format=csv,noheader,nounits",
    ]
    try:
        result = sources.run(argv, sources.timeout)
    except FileNotFoundError:
        return None, "nvidia-smi not found"
    except TimeoutError:
        return None, f"nvidia-smi did not answer within {sources.timeout:g} s"
    except Exception as exc:
        return None, f"nvidia-smi could not run: {_error_text(exc)}"
    if result.returncode != 0:
        message = _first_line(result.stdout) or _first_line(result.stderr)
        return None, f"nvidia-smi failed (exit {result.returncode}): {message or 'no output'}"
    devices, driver = parse_nvidia_smi(result.stdout)
    if not devices:
        return None, "nvidia-smi listed no GPU"
    cuda = None
    try:  # the CSV query has no CUDA version; the banner of a plain run does
        banner = sources.run(["nvidia-smi"], sources.timeout)
        match = _SMI_CUDA_VERSION.search(banner.stdout)
        cuda = match.group(1) if match else None
    except Exception:
        cuda = None
    return _Found("nvidia-smi", devices, driver, cuda), ""


def _cudnn(sources: Sources, gpu_present: bool) -> tuple[str | None, str]:
    """cuDNN version without importing anything heavy or starting a process.

    Only two cheap sources are asked: the metadata of an installed cuDNN wheel
    (``nvidia-cudnn-cu12``...; only when a GPU is present), then ``torch``
    when the program already imported it. Importing torch just to ask would
    cost seconds, so a cuDNN found neither way is reported as unknown.
    """
    if gpu_present:
        for distribution in _CUDNN_DISTRIBUTIONS:
            version = _try(sources.package_version, distribution)
            if version:  # "9.1.0.70": the fourth part is the wheel's build number
                return ".".join(version.split(".")[:3]), f"package {distribution}"
    torch = _try(sources.torch)
    if torch is not None:
        try:
            number = torch.backends.cudnn.version()  # type: ignore[attr-defined]
        except Exception:
            number = None
        if isinstance(number, int) and number > 0:
            # cuDNN 9 encodes major*10000 + minor*100 + patch; 8 and older major*1000.
            if number >= 90000:
                major, rest = divmod(number, 10000)
            else:
                major, rest = divmod(number, 1000)
            minor, patch = divmod(rest, 100)
            return f"{major}.{minor}.{patch}", "torch.backends.cudnn"
        return None, "torch is loaded but reports no cuDNN"
    if gpu_present:
        return None, "no cuDNN wheel found; torch not imported"
    return None, "no NVIDIA GPU"


def _visible(found: _Found, env_value: str | None) -> tuple[list[CudaDevice], str | None]:
    uuids = [d.uuid for d in found.devices]
    order, note = apply_mask(
        "CUDA_VISIBLE_DEVICES", env_value, [d.nvml_index for d in found.devices], uuids
    )
    by_index = {d.nvml_index: d for d in found.devices}
    visible = [
        dataclasses.replace(by_index[nvml_index], index=ordinal)
        for ordinal, nvml_index in enumerate(order)
    ]
    return visible, note


def _query_nvml(sources: Sources, system: str) -> tuple[_Found | None, str]:
    try:
        nvml = sources.load_nvml()
    except ImportError:
        return None, "NVML: nvidia-ml-py (pynvml) is not installed"
    except Exception as exc:
        return None, f"NVML: could not load pynvml: {_error_text(exc)}"
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return None, _init_failure(exc, system)
    try:
        return _from_nvml(nvml), ""
    except Exception as exc:
        return None, f"NVML query failed: {_error_text(exc)}"
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def detect_cuda(sources: Sources) -> CudaInfo:
    """NVIDIA GPUs visible to this process (never raises)."""
    system = sources.system_name
    env_value = sources.env.get("CUDA_VISIBLE_DEVICES")
    if system == "Darwin":
        return CudaInfo(available=False, reason="CUDA is not supported on macOS")
    found, why = _query_nvml(sources, system)
    if found is None:
        fallback, smi_why = _from_nvidia_smi(sources)
        if fallback is None:
            return CudaInfo(available=False, reason=f"{why}; {smi_why}", visible_devices=env_value)
        found = fallback
    if not found.devices:
        return CudaInfo(
            available=False,
            reason=f"{found.source} reports no NVIDIA GPU",
            source=found.source,
            driver_version=found.driver_version,
            cuda_version=found.cuda_version,
            visible_devices=env_value,
        )
    visible, note = _visible(found, env_value)
    cudnn, cudnn_source = _cudnn(sources, bool(visible))
    notes = [f"NVML unusable ({why}); read from nvidia-smi"] if why else []
    if note:
        notes.append(note)
    if not visible:
        count = len(found.devices)
        notes.insert(
            0, f"CUDA_VISIBLE_DEVICES={env_value!r} hides all {count} GPU{'s' * (count != 1)}"
        )
    return CudaInfo(
        available=bool(visible),
        reason="; ".join(notes) or None,
        source=found.source,
        driver_version=found.driver_version,
        cuda_version=found.cuda_version,
        devices=tuple(visible),
        physical_count=len(found.devices),
        visible_devices=env_value,
        cudnn_version=cudnn,
        cudnn_source=cudnn_source,
    )
