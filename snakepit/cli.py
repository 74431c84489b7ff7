"""The ``snakepit`` console command: demo, doctor, hardware, gc, bench."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TypedDict

import numpy as np

from snakepit import zero_copy
from snakepit._util import format_bytes
from snakepit._version import __version__
from snakepit.zero_copy._huge import GIVES_HUGE_PAGES, shm_huge_pages

#: The ``--help`` description: plain text, since argparse prints it as it is.
DESCRIPTION = (
    "snakepit: crash-proof Python workers with zero-copy tensors in shared memory. "
    "Commands: demo, doctor, hardware, gc, bench; 'snakepit COMMAND --help' for each."
)

# Docker's default /dev/shm (64 MiB) is the classic reason shared memory fails.
SMALL_SHM_BYTES = 1 << 30

_CHILD_WRITER = """
import sys, pickle
import snakepit
ref = pickle.loads(bytes.fromhex(sys.argv[1]))
array = snakepit.from_ref(ref)
array *= 2
array[0] = -1.0
"""


def cmd_demo(args: argparse.Namespace) -> int:
    """Allocate a tensor in shared memory, let a second process write it, read it back."""
    import pickle

    shape = (args.mib * 1024 * 1024 // 4,)
    print(f"snakepit demo: {args.mib} MiB float32 tensor through shared memory")
    started = time.perf_counter()
    array = zero_copy.empty(shape, "float32")
    allocated = time.perf_counter()
    array[:] = np.arange(shape[0], dtype=np.float32)
    filled = time.perf_counter()
    ref = zero_copy.ref_of(array)
    payload = pickle.dumps(ref, protocol=5)
    print(
        f"  allocated in {1e3 * (allocated - started):.2f} ms, "
        f"filled in {1e3 * (filled - allocated):.2f} ms"
    )
    print(f"  TensorRef {ref.region} offset={ref.offset} pickles to {len(payload)} bytes")
    child_start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", _CHILD_WRITER, payload.hex()], check=True, env=dict(os.environ)
    )
    child_done = time.perf_counter()
    expected_tail = float(2 * (shape[0] - 1))
    ok = array[0] == -1.0 and array[-1] == expected_tail
    print(
        f"  a second process (pid-separate, spawned) doubled it in place: "
        f"{1e3 * (child_done - child_start):.1f} ms including interpreter start"
    )
    print(
        f"  read back: array[0]={array[0]}, array[-1]={array[-1]} "
        f"(expected -1.0 and {expected_tail}) -> {'OK' if ok else 'MISMATCH'}"
    )
    ref.release()
    del array
    return 0 if ok and _demo_pool(args.mib) else 1


def _demo_pool(mib: int) -> bool:
    """Crash barrier: zero-copy calls into workers, a segfault, recovery."""
    from snakepit import _demo
    from snakepit.errors import ExitKind, WorkerCrashedError
    from snakepit.pool import Pool

    print("\nsnakepit demo: a pool of 2 supervised workers")
    started = time.perf_counter()
    with Pool(workers=2) as pool:
        startup_ms = 1e3 * (time.perf_counter() - started)
        print(f"  started in {startup_ms:.0f} ms, pids {pool.worker_pids()}")
        matrix = zero_copy.empty((mib * 1024 * 256 // 1024, 1024), "float32")
        matrix[:] = 1.0
        t0 = time.perf_counter()
        means = pool.call(_demo.column_means, matrix)
        t1 = time.perf_counter()
        pool.call(_demo.scale_in_place, matrix, 3.0)
        t2 = time.perf_counter()
        print(
            f"  worker reduced a {mib} MiB shared matrix in {1e3 * (t1 - t0):.1f} ms "
            f"(no copy; mean[0]={means[0]})"
        )
        print(
            f"  worker scaled it in place in {1e3 * (t2 - t1):.1f} ms; "
            f"caller sees matrix[0, 0]={matrix[0, 0]}"
        )
        t3 = time.perf_counter()
        try:
            pool.call(_demo.crash)
            crashed = False
        except WorkerCrashedError as exc:
            crashed = exc.exit_kind == ExitKind.segfault
            print(f"  a worker segfaulted -> {type(exc).__name__}(exit_kind={exc.exit_kind!r})")
        value = pool.call(_demo.column_means, matrix)[0]
        t4 = time.perf_counter()
        print(
            f"  next call succeeded {1e3 * (t4 - t3):.1f} ms after the crash "
            f"(value {value}); supervisor pid {os.getpid()} never noticed"
        )
        print(f"  stats: {pool.stats()}")
        del matrix
    return crashed and means[0] == 1.0 and value == 3.0


class DoctorReport(TypedDict):
    """What `snakepit doctor` found."""

    shm_total_bytes: int
    shm_available_bytes: int
    shm_huge_pages: str
    snakepit_regions: int
    build: str
    call_path: str
    pyarrow: str
    nvml: str
    cuda_driver: str
    warnings: list[str]


def doctor_report() -> DoctorReport:
    """What `snakepit doctor` checks, as data."""
    total, available = zero_copy.shm_space()
    warnings = []
    if total < SMALL_SHM_BYTES:
        warnings.append(
            f"/dev/shm is only {format_bytes(total)}; large tensors will not fit. In Docker "
            "run with --shm-size=8g (or larger); elsewhere "
            "`mount -o remount,size=8G /dev/shm`."
        )
    huge = shm_huge_pages()
    if huge not in GIVES_HUGE_PAGES and huge not in ("unknown", "not tmpfs"):
        warnings.append(
            f"/dev/shm gives shared arrays 4 KiB pages (huge pages: {huge}): a worker's "
            "pass over a large shared array can take about twice as long as over its own "
            "memory. As root: `mount -o remount,huge=within_size /dev/shm` (in a container, "
            "the same option on its /dev/shm tmpfs mount)."
        )
    leftovers = zero_copy.list_regions()
    try:
        from snakepit import _core  # noqa: F401

        build = "ok"
    except ImportError as exc:  # pragma: no cover - only on a broken install
        build = f"broken: {exc}"
    call_path = _call_path()
    try:
        import pyarrow

        arrow = pyarrow.__version__
    except ImportError:
        arrow = "not installed"
    from snakepit import hardware

    cuda = hardware.detect().cuda
    if cuda.source == "nvml":
        nvml = f"ok ({len(cuda.devices)} visible GPU(s))"
    else:
        nvml = f"unavailable: {cuda.reason or 'unknown reason'}"
    if cuda.driver_version:
        driver = f"{cuda.driver_version} (CUDA {cuda.cuda_version or '?'})"
    else:
        driver = "none"
    return {
        "shm_total_bytes": total,
        "shm_available_bytes": available,
        "shm_huge_pages": huge,
        "snakepit_regions": len(leftovers),
        "build": build,
        "call_path": call_path,
        "pyarrow": arrow,
        "nvml": nvml,
        "cuda_driver": driver,
        "warnings": warnings,
    }


def _call_path() -> str:
    """Whether the call path's modules run compiled (see snakepit/_compiled.py)."""
    from importlib import import_module
    from importlib.machinery import EXTENSION_SUFFIXES

    from snakepit._compiled import COMPILED_MODULES

    source = [
        name
        for name in COMPILED_MODULES
        if not str(getattr(import_module(name), "__file__", "")).endswith(tuple(EXTENSION_SUFFIXES))
    ]
    if not source:
        return f"compiled ({len(COMPILED_MODULES)} modules)"
    names = ", ".join(source)
    return f"{len(source)} of {len(COMPILED_MODULES)} modules from source (slower): {names}"


def cmd_doctor(args: argparse.Namespace) -> int:
    """Report the health of the environment for snakepit."""
    report = doctor_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"/dev/shm: {format_bytes(report['shm_total_bytes'])} total, "
        f"{format_bytes(report['shm_available_bytes'])} free"
    )
    print(f"/dev/shm huge pages: {report['shm_huge_pages']}")
    print(f"snakepit regions present: {report['snakepit_regions']}")
    print(f"native core: {report['build']}")
    print(f"call path: {report['call_path']}")
    print(f"pyarrow: {report['pyarrow']}")
    print(f"NVML: {report['nvml']}")
    print(f"CUDA driver: {report['cuda_driver']}")
    for warning in report["warnings"]:
        print(f"WARNING: {warning}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Unlink shared memory left behind by dead snakepit processes."""
    removed = zero_copy.collect_garbage()
    for name in removed:
        print(f"removed {name}")
    print(f"{len(removed)} region(s) removed")
    return 0


def cmd_hardware(args: argparse.Namespace) -> int:
    """Print the detected hardware, and why any accelerator is missing."""
    from snakepit import hardware

    print(hardware.format_json() if args.json else hardware.format_table())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure snakepit against ProcessPoolExecutor and multiprocessing.shared_memory."""
    from snakepit._bench import run as _bench

    return _bench.run_command(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``snakepit`` command."""
    parser = argparse.ArgumentParser(prog="snakepit", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"snakepit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="end-to-end demonstration")
    demo.add_argument("--mib", type=int, default=64, help="tensor size in MiB")
    demo.set_defaults(func=cmd_demo)
    doctor = sub.add_parser("doctor", help="check /dev/shm and the build")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(func=cmd_doctor)
    hw = sub.add_parser("hardware", help="detected GPUs, CPU and why a GPU is missing")
    hw.add_argument("--json", action="store_true", help="machine-readable output")
    hw.set_defaults(func=cmd_hardware)
    gc = sub.add_parser("gc", help="remove shared memory of dead processes")
    gc.set_defaults(func=cmd_gc)
    from snakepit._bench import run as _bench

    bench = sub.add_parser("bench", help="benchmark snakepit against its peers, same run")
    _bench.add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``snakepit`` console command."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
