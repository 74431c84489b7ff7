"""CPU detection: recorded /proc/cpuinfo of an ARM and an x86 server, and this machine."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from snakepit.hardware import capabilities, detect, identity
from snakepit.hardware._cpu import numa_node_count, parse_cpuinfo

from ._doubles import Files, data, machine


def graviton3() -> Files:
    return Files(
        {
            "/proc/cpuinfo": data("cpuinfo_graviton3.txt"),
            "/proc/meminfo": data("meminfo_graviton3.txt"),
            "/sys/devices/system/node/online": "0\n",
        }
    )


def test_arm_server_graviton3() -> None:
    info = detect(
        machine(
            machine="aarch64",
            read_file=graviton3(),
            logical_cores=lambda: None,  # fall back to counting processors
            physical_cores=lambda: 4,
        )
    )
    cpu = info.cpu
    assert cpu.arch == "aarch64"
    assert cpu.vendor == "ARM"
    assert cpu.model == "Neoverse-V1"
    assert cpu.logical_cores == 4
    assert cpu.physical_cores == 4
    assert cpu.memory_total == 16044712 * 1024
    assert cpu.numa_nodes == 1
    assert cpu.source == "/proc/cpuinfo"
    assert {"asimd", "neon", "sve", "svebf16", "i8mm", "bf16"} <= set(cpu.features)
    caps = capabilities(info)
    assert (caps.neon, caps.sve, caps.fma) == (True, True, True)
    assert (caps.avx, caps.avx2, caps.avx512) == (False, False, False)
    features = identity(info)["cpu"]["features"]
    assert "sve" in features
    assert "evtstrm" not in features  # not an ISA feature that decides which builds run


def test_arm_without_sve_neoverse_n1() -> None:
    text = data("cpuinfo_graviton3.txt").replace(" sve ", " ").replace("0xd40", "0xd0c")
    info = detect(machine(machine="aarch64", read_file=lambda p: text if "cpuinfo" in p else None))
    assert info.cpu.model == "Neoverse-N1"
    assert not capabilities(info).sve
    assert capabilities(info).neon


def test_unknown_arm_part_is_named_by_number() -> None:
    text = "processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xfff\n"
    info = detect(machine(machine="aarch64", read_file=lambda p: text if "cpuinfo" in p else None))
    assert info.cpu.model == "ARM part 0xfff"


def test_x86_server_xeon() -> None:
    info = detect(machine())
    cpu = info.cpu
    assert cpu.vendor == "GenuineIntel"
    assert cpu.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert (cpu.physical_cores, cpu.logical_cores) == (112, 224)
    assert cpu.memory_total == 2048 * 1024**3  # psutil stand-in: no /proc/meminfo recorded
    assert cpu.numa_nodes is None
    assert {"amx_tile", "avx512_fp16", "sse3"} <= set(cpu.features)
    caps = capabilities(info)
    assert (caps.avx, caps.avx2, caps.avx512, caps.fma, caps.neon) == (
        True,
        True,
        True,
        True,
        False,
    )


def test_parse_cpuinfo_reads_the_first_processor_and_counts_all() -> None:
    fields = parse_cpuinfo(data("cpuinfo_xeon_8480.txt"))
    assert fields["processors"] == 2
    assert fields["microcode"] == "0x2b000461"  # only in the first block
    assert "amx_int8" in str(fields["flags"])


@pytest.mark.parametrize(
    ("online", "nodes"),
    [("0", 1), ("0-1\n", 2), ("0,2-3", 3), ("", None), (None, None), ("x", None)],
)
def test_numa_nodes(online: str | None, nodes: int | None) -> None:
    assert numa_node_count(online) == nodes


def test_unreadable_cpuinfo_is_reported() -> None:
    info = detect(machine(read_file=lambda path: None))
    assert info.cpu.reason == "/proc/cpuinfo unreadable"
    assert info.cpu.logical_cores == 224
    assert info.cpu.features == ()


def test_a_crashing_source_does_not_break_detection() -> None:
    def broken() -> int:
        raise OSError("psutil exploded")

    info = detect(machine(physical_cores=broken, memory_total=broken))
    assert info.cpu.physical_cores is None
    assert info.cpu.memory_total is None
    assert info.cpu.logical_cores == 224


# ------------------------------------------------------------------- this machine


def test_this_machine_matches_psutil_and_os(fresh_cache: None) -> None:
    info = detect()
    cpu = info.cpu
    assert cpu.logical_cores == os.cpu_count()
    assert cpu.physical_cores == psutil.cpu_count(logical=False)
    assert cpu.memory_total == psutil.virtual_memory().total
    assert cpu.arch == os.uname().machine
    assert info.platform.system == os.uname().sysname
    if os.path.exists("/proc/cpuinfo"):
        assert cpu.source == "/proc/cpuinfo"
        assert cpu.model
        flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
        raw = str(flags.get("flags") or flags.get("Features") or "").split()
        assert set(raw) <= set(cpu.features)
    if os.path.isdir("/sys/devices/system/node/node0"):
        nodes = [n for n in os.listdir("/sys/devices/system/node") if n.startswith("node")]
        assert cpu.numa_nodes == len(nodes)
