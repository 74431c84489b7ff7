"""macOS detection (MPS and CPU) from recorded sysctl output."""

from __future__ import annotations

from snakepit.hardware import CommandResult, capabilities, detect, identity, select
from snakepit.hardware._apple import SYSCTL_ARGS, parse_sysctl

from ._doubles import GIB, NvmlDouble, RecordedRunner, data, four_a100, machine, ok

SYSCTL = "sysctl " + " ".join(SYSCTL_ARGS)


def mac(sysctl_text: str, rc: int = 0) -> RecordedRunner:
    return RecordedRunner({SYSCTL: CommandResult(rc, sysctl_text, "")})


def test_apple_m2_pro() -> None:
    runner = mac(data("sysctl_apple_m2_pro.txt"))
    nvml = NvmlDouble(gpus=four_a100())
    info = detect(
        machine(
            system="Darwin", machine="arm64", release="23.4.0", run=runner, load_nvml=lambda: nvml
        )
    )
    assert info.accelerator == "mps"
    assert info.mps.available
    assert info.mps.reason is None
    assert info.mps.chip == "Apple M2 Pro"
    assert info.mps.macos_version == "14.4.1"
    assert info.mps.unified_memory == 32 * GIB
    assert info.cpu.vendor == "Apple"
    assert info.cpu.model == "Apple M2 Pro"
    assert (info.cpu.physical_cores, info.cpu.logical_cores) == (12, 12)
    assert info.cpu.memory_total == 32 * GIB
    assert info.cpu.source == "sysctl"
    assert {"neon", "asimd", "bf16", "i8mm", "dotprod", "fp16"} <= set(info.cpu.features)
    assert "breakpoint" not in info.cpu.features  # a count, not a feature
    assert "specres" not in info.cpu.features  # value 0
    assert runner.tools_called() == ["sysctl"]  # one sysctl call for MPS and CPU together
    assert nvml.calls == []
    assert info.devices == ("mps", "cpu")
    assert select("auto", info) == "mps"
    caps = capabilities(info)
    assert (caps.mps, caps.neon, caps.fma, caps.sve, caps.avx) == (True, True, True, False, False)
    ident = identity(info)
    assert ident["gpus"] == {"count": 1, "names": ["Apple M2 Pro"]}
    assert ident["mps"] is True


def test_parse_sysctl_ignores_error_lines() -> None:
    values = parse_sysctl("hw.memsize: 17179869184\nsysctl: unknown oid 'sysctl.proc_translated'\n")
    assert values == {"hw.memsize": "17179869184"}


def test_intel_mac_has_no_mps() -> None:
    text = (
        "hw.memsize: 17179869184\nhw.physicalcpu: 4\nhw.logicalcpu: 8\n"
        "hw.optional.avx1_0: 1\nhw.optional.avx2_0: 1\nhw.optional.fma: 1\n"
        "hw.optional.avx512f: 0\nmachdep.cpu.vendor: GenuineIntel\n"
        "machdep.cpu.brand_string: Intel(R) Core(TM) i7-8569U CPU @ 2.80GHz\n"
        "kern.osproductversion: 13.6.4\n"
    )
    # sysctl exits 1 on Intel Macs (no sysctl.proc_translated) but prints the rest.
    info = detect(machine(system="Darwin", machine="x86_64", run=mac(text, rc=1)))
    assert not info.mps.available
    assert info.mps.reason == "MPS needs Apple silicon (this Mac is x86_64)"
    assert info.cpu.vendor == "GenuineIntel"
    assert (info.cpu.physical_cores, info.cpu.logical_cores) == (4, 8)
    caps = capabilities(info)
    assert (caps.avx, caps.avx2, caps.fma, caps.avx512, caps.neon) == (
        True,
        True,
        True,
        False,
        False,
    )


def test_rosetta_python_is_explained() -> None:
    text = data("sysctl_apple_m2_pro.txt").replace(
        "sysctl.proc_translated: 0", "sysctl.proc_translated: 1"
    )
    info = detect(machine(system="Darwin", machine="x86_64", run=mac(text)))
    assert not info.mps.available
    assert info.mps.reason is not None
    assert "under Rosetta 2" in info.mps.reason


def test_old_macos() -> None:
    text = data("sysctl_apple_m2_pro.txt").replace("14.4.1", "12.2")
    info = detect(machine(system="Darwin", machine="arm64", run=mac(text)))
    assert not info.mps.available
    assert info.mps.reason == "MPS needs macOS 12.3 or newer (this is 12.2)"


def test_hanging_sysctl_still_gives_mps_and_cpu() -> None:
    runner = RecordedRunner({"sysctl": TimeoutError("slow")})
    info = detect(
        machine(
            system="Darwin",
            machine="arm64",
            run=runner,
            logical_cores=lambda: 8,
            physical_cores=lambda: 8,
        )
    )
    assert info.mps.available  # arm64 macOS: every such Mac runs macOS 11+
    assert info.mps.reason is not None
    assert "sysctl did not answer within 0.5 s" in info.mps.reason
    assert info.cpu.logical_cores == 8
    assert info.cpu.reason == "sysctl did not answer within 0.5 s"


def test_linux_has_no_mps() -> None:
    info = detect(machine(run=RecordedRunner({"sysctl": ok("should not be asked")})))
    assert not info.mps.available
    assert info.mps.reason == "MPS needs macOS on Apple silicon (this is Linux)"
