"""Live memory figures for out-of-memory errors: the injectable probe and NVML."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from collections.abc import Mapping
from typing import Any

import pytest

from snakepit.errors import OutOfMemoryError
from snakepit.errors._probe import nvml_memory_probe
from snakepit.errors._remote import exception_to_record, record_to_exception

GIB = 1 << 30

CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"  # no free/total in the text


class Probe:
    """Records its calls; answers like NVML would."""

    def __init__(self, answer: object = None, error: BaseException | None = None) -> None:
        self.calls: list[str] = []
        self.answer = (
            answer if answer is not None else {"free": GIB, "total": 8 * GIB, "used": 7 * GIB}
        )
        self.error = error

    def __call__(self, device: str) -> Mapping[str, int]:
        self.calls.append(device)
        if self.error is not None:
            raise self.error
        return self.answer  # type: ignore[return-value]


def _memory(record: Mapping[str, object]) -> dict[str, Any]:
    context = record["context"]
    assert isinstance(context, dict)
    memory = context["memory"]
    assert isinstance(memory, dict)
    return memory


def test_gpu_oom_asks_the_probe_and_fills_the_gaps() -> None:
    probe = Probe()
    record = exception_to_record(RuntimeError(CUDA_OOM), memory_probe=probe)
    assert probe.calls == ["cuda"]
    live = _memory(record)["live"]
    assert (live["device_free"], live["device_total"], live["device_used"]) == (
        GIB,
        8 * GIB,
        7 * GIB,
    )
    exc = record_to_exception(record)
    assert isinstance(exc, OutOfMemoryError)
    assert (exc.requested, exc.available, exc.total) == (2 * GIB, GIB, 8 * GIB)
    assert "1.00 GiB larger than the free memory" in (exc.suggestion or "")


def test_figures_from_the_message_win_over_live_ones() -> None:
    message = (
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 3 has a total capacity of "
        "79.15 GiB of which 1.50 GiB is free."
    )
    probe = Probe()
    exc = record_to_exception(exception_to_record(RuntimeError(message), memory_probe=probe))
    assert probe.calls == ["cuda:3"]
    assert isinstance(exc, OutOfMemoryError)
    assert exc.available == round(1.5 * GIB)
    assert exc.total == round(79.15 * GIB)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("not memory related"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (3x4 and 2x2)"),
        MemoryError(),  # host memory: no device to measure
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"),
    ],
)
def test_probe_only_for_device_oom(error: BaseException) -> None:
    probe = Probe()
    exception_to_record(error, memory_probe=probe)
    assert probe.calls == []


@pytest.mark.parametrize(
    "probe",
    [
        Probe(error=RuntimeError("NVML exploded")),
        Probe(error=MemoryError()),
        Probe(answer={"free": -1, "total": "lots", "used": True}),
        Probe(answer=["not", "a", "mapping"]),
    ],
)
def test_a_failing_probe_never_breaks_the_record(probe: Probe) -> None:
    record = exception_to_record(RuntimeError(CUDA_OOM), memory_probe=probe)
    assert probe.calls == ["cuda"]
    live = _memory(record).get("live", {})
    assert not any(key.startswith("device_") for key in live)
    exc = record_to_exception(record)
    assert isinstance(exc, OutOfMemoryError)
    assert exc.available is None


# ------------------------------------------------------------------- NVML


class FakeNvml(types.ModuleType):
    """Just enough of pynvml for the probe."""

    def __init__(self, fail_init: bool = False) -> None:
        super().__init__("pynvml")
        self.fail_init = fail_init
        self.events: list[tuple[str, object]] = []

    def nvmlInit(self) -> None:
        self.events.append(("init", None))
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.events.append(("shutdown", None))

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        self.events.append(("index", index))
        return ("handle", index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> object:
        self.events.append(("uuid", uuid))
        return ("handle", uuid)

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> object:
        return types.SimpleNamespace(free=3 * GIB, total=16 * GIB, used=13 * GIB)


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


def test_nvml_probe_reads_and_shuts_down(nvml: FakeNvml) -> None:
    assert nvml_memory_probe("cuda:1") == {"free": 3 * GIB, "total": 16 * GIB, "used": 13 * GIB}
    assert nvml.events == [("init", None), ("index", 1), ("shutdown", None)]


@pytest.mark.parametrize(
    ("visible", "device", "expected"),
    [
        ("2,3", "cuda:1", ("index", 3)),
        ("2,3", "cuda", ("index", 2)),
        ("GPU-8a1b,3", "cuda:0", ("uuid", "GPU-8a1b")),
        ("MIG-5c2d", "gpu", ("uuid", "MIG-5c2d")),
    ],
)
def test_nvml_probe_honours_cuda_visible_devices(
    nvml: FakeNvml,
    monkeypatch: pytest.MonkeyPatch,
    visible: str,
    device: str,
    expected: tuple[str, object],
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert nvml_memory_probe(device)["total"] == 16 * GIB
    assert expected in nvml.events


@pytest.mark.parametrize(
    ("visible", "device"),
    [("0", "cuda:1"), ("", "cuda:0"), (None, "mps"), (None, "xpu:0"), (None, "cpu")],
)
def test_nvml_probe_declines_what_it_cannot_see(
    nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch, visible: str | None, device: str
) -> None:
    if visible is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert nvml_memory_probe(device) == {}
    assert nvml.events == []  # NVML not even initialised


def test_nvml_probe_survives_a_missing_driver(nvml: FakeNvml) -> None:
    nvml.fail_init = True
    assert nvml_memory_probe("cuda:0") == {}


def test_nvml_probe_survives_a_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    assert nvml_memory_probe("cuda:0") == {}


def test_classifying_imports_no_framework() -> None:
    # Run in a fresh interpreter: the test process has imported torch already.
    script = textwrap.dedent(
        """
        import sys
        from snakepit.errors._remote import exception_to_record, record_to_exception

        messages = [
            "mat1 and mat2 shapes cannot be multiplied (3x4 and 2x2)",
            "expected scalar type Float but found Double",
            "Expected all tensors to be on the same device, but found at least two "
            "devices, cuda:0 and cpu!",
            "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1024 bytes.",
            "Unable to allocate 8.00 PiB for an array with shape (1,) and data type float64",
        ]
        def no_gpu(device):
            return {}

        for message in messages:
            record_to_exception(exception_to_record(RuntimeError(message), memory_probe=no_gpu))
        loaded = sorted(
            name for name in ("torch", "jax", "jaxlib", "cupy", "pynvml")
            if name in sys.modules
        )
        print(loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.gpu
def test_nvml_probe_on_a_real_gpu() -> None:
    figures = nvml_memory_probe("cuda:0")
    if not figures:
        pytest.skip("no NVML-visible GPU here")
    assert figures["total"] > 0
    assert 0 <= figures["free"] <= figures["total"]
