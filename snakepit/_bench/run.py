"""``snakepit bench``: snakepit against its peers, measured in the same run.

Self-contained for an installed user: it needs neither the repository's
``bench/`` folder (the pytest-benchmark suite) nor pytest, yet measures that
suite's cases, from the same catalogue (:mod:`snakepit._bench.cases`):
zero-copy hand-off at each ``--sizes``, the no-op round trip (against
ProcessPoolExecutor, loky and a raw pipe), the echo of an array, crash
recovery and the telemetry bus; without ``--quick`` also pool start-up,
respawn, spinning under load, throughput and the 1 GiB cases against Ray
(see :func:`cases.cli_cases`). loky and Ray are optional: a peer that is
not installed is listed as skipped, with the reason.

Every executor is warmed up first; each number is the median of
``time.perf_counter`` rounds, and is only reported next to a peer measured in
the same run (ratio = snakepit median / peer median; below 1 snakepit is
faster). The guide is ``docs/getting-started.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import psutil

import snakepit
from snakepit import zero_copy
from snakepit._bench import _local, cases
from snakepit._bench._interleave import interleavable, interleaved
from snakepit._bench._model import GIB, KIB, MIB, WORKERS, BenchError, Case, Env, Timed
from snakepit._bench.cases import DEFAULT_SIZES, shm_free, shm_skip_reason, size_label
from snakepit._bench.report import (
    RATIO_MEANING,
    BenchReport,
    CaseResult,
    Measurement,
    Skip,
    format_environment,
    format_seconds,
    format_table,
    report_json,
    write_plot,
)

__all__ = [
    "DEFAULT_SIZES",
    "RATIO_MEANING",
    "BenchError",
    "BenchOptions",
    "BenchReport",
    "CaseResult",
    "Measurement",
    "Skip",
    "add_arguments",
    "environment",
    "format_seconds",
    "format_table",
    "median_seconds",
    "parse_size",
    "parse_sizes",
    "report_json",
    "run_benchmarks",
    "run_command",
    "shm_skip_reason",
    "size_label",
    "write_plot",
]

_UNITS = {"": 1, "b": 1, "k": KIB, "kb": KIB, "kib": KIB}
_UNITS |= {"m": MIB, "mb": MIB, "mib": MIB, "g": GIB, "gb": GIB, "gib": GIB}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


@dataclass(frozen=True)
class BenchOptions:
    """What to run: ``rounds`` None means each case's default."""

    quick: bool = False
    sizes: tuple[int, ...] = DEFAULT_SIZES
    rounds: int | None = None
    no_ray: bool = False
    #: ``"local"``: the local pool's cases; ``"ray"``: ``Pool(backend="ray")``
    #: against raw Ray (:func:`cases.ray_cases`).
    backend: str = "local"

    def rounds_of(self, timed: Timed) -> int:
        """The rounds of ``timed`` in this run."""
        if self.rounds is not None:
            return self.rounds
        if self.quick and timed.quick_rounds is not None:
            return timed.quick_rounds
        return timed.rounds

    def iterations_of(self, timed: Timed) -> int:
        """The calls per round of ``timed`` in this run."""
        if self.quick and timed.quick_iterations is not None:
            return timed.quick_iterations
        return timed.iterations

    @property
    def echo_bytes(self) -> int:
        """Size of the echoed array."""
        return 10 * MIB if self.quick else 100 * MIB


# --------------------------------------------------------------- arguments


def parse_size(text: str) -> int:
    """Bytes in ``"1KiB"``, ``"100MiB"``, ``"1GiB"`` or ``"512"`` (units are binary)."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS or int(match.group(1)) <= 0:
        raise ValueError(f"not a size: {text!r} (examples: 1KiB, 1MiB, 100MiB, 1GiB)")
    return int(match.group(1)) * _UNITS[unit]


def parse_sizes(text: str) -> tuple[int, ...]:
    """Sizes from a comma-separated list such as ``"1KiB,1MiB"`` (argparse type)."""
    try:
        sizes = tuple(parse_size(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not sizes:
        raise argparse.ArgumentTypeError("no size given")
    return tuple(dict.fromkeys(sizes))


# ------------------------------------------------------------------ timing


def median_seconds(
    fn: Callable[[], object],
    rounds: int,
    *,
    warmup: int = 1,
    setup: Callable[[], object] | None = None,
    check: Callable[[Any], None] | None = None,
) -> float:
    """Median ``time.perf_counter`` duration of ``fn()`` over ``rounds`` rounds.

    ``setup`` runs untimed before every round (warm-up rounds included);
    ``check`` gets every round's result, untimed.
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    for _ in range(warmup):
        if setup is not None:
            setup()
        result = fn()
        if check is not None:
            check(result)
    samples = []
    for _ in range(rounds):
        if setup is not None:
            setup()
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
        if check is not None:
            check(result)
    return statistics.median(samples)


def measure(timed: Timed, options: BenchOptions) -> tuple[float, int]:
    """The median seconds per call of ``timed`` and its rounds, as ``options`` ask."""
    rounds, iterations = options.rounds_of(timed), options.iterations_of(timed)
    if iterations == 1:
        fn: Callable[[], object] = timed.call
        check = timed.check
    else:
        call, args = timed.fn, timed.args
        loop = range(iterations)

        def fn() -> None:
            for _ in loop:
                call(*args)

        check = None  # a loop has no one result to check
    median = median_seconds(fn, rounds, warmup=timed.warmup, setup=timed.setup, check=check)
    return median / iterations, rounds


# ------------------------------------------------------------------ running


def _run_case(case: Case, env: Env, options: BenchOptions, report: BenchReport) -> None:
    reason = case.skip() if case.skip is not None else None
    if reason is not None:
        report.skipped.append(Skip(case.name, "all", reason))
        return
    runnable = []
    for impl in case.impls:
        missing = impl.missing()
        if missing is None and options.no_ray and "ray" in impl.requires:
            missing = "--no-ray"
        if missing is not None:
            report.skipped.append(Skip(case.name, impl.impl, missing))
        else:
            runnable.append(impl)
    together = interleavable(case, runnable)
    records = (
        interleaved(case, together, env, options.rounds_of, options.iterations_of)
        if together
        else {}
    )
    measured: list[Measurement] = []
    for impl in runnable:
        record = records.get(impl.impl)
        if record is not None:
            median, rounds = statistics.median(record.per_call), len(record.durations)
            metrics = record.metrics
        else:
            with impl.prepare(env) as timed:
                median, rounds = measure(timed, options)
                metrics = timed.metrics() if timed.metrics is not None else {}
        measured.append(Measurement(impl.impl, impl.label, median, rounds, metrics))
    if len(measured) < 2 or measured[0].impl != case.impls[0].impl:
        report.skipped.append(Skip(case.name, "all", "snakepit or every peer was skipped"))
        return
    report.cases.append(CaseResult(case.name, case.title, measured[0], tuple(measured[1:])))


def _notes(report: BenchReport, options: BenchOptions) -> None:
    ran = {result.case for result in report.cases}
    if "crash-recovery" in ran:
        broken_note = (
            "a later submit() raised BrokenProcessPool too"
            if cases.peer_stays_broken()
            else "(this run: a later submit() did not raise)"
        )
        report.notes.append(
            "crash recovery: after one worker segfaults, ProcessPoolExecutor is broken "
            f"(BrokenProcessPool; {broken_note}): every pending and later call fails, so "
            "its number is the only recovery, shutting it down and starting a new "
            "executor. snakepit raises WorkerCrashedError for the one call and replaces "
            "the worker."
        )
    for result in report.cases:
        for measured in (result.snakepit, *result.peers):
            if measured.metrics:
                shown = ", ".join(f"{k} {format_seconds(v)}" for k, v in measured.metrics.items())
                report.notes.append(f"{result.title}: {measured.label}: {shown}")
    if "startup" in ran:
        report.notes.append(
            "start-up: from the constructor until the first call returns; the pool "
            "is shut down untimed before the next round."
        )
    if ran & {"telemetry-no-handler", "telemetry-one-handler"}:
        loop = _local.QUICK_LOOP if options.quick else _local.LOOP
        report.notes.append(
            f"telemetry: median per call of loops of {loop} calls (loop overhead "
            "included on both sides)."
        )
    if any(name.startswith("ray-") for name in ran):
        report.notes.append(
            "Ray backend: one Ray on 127.0.0.1 for the run; every Ray figure (the "
            "backend's and raw Ray's) is from it. The pool's host is on the caller's "
            "node. Crash recovery: Ray's peer is an actor with max_restarts=1, "
            "from the crashing call to the restarted actor's first answer."
        )
    if any(name.startswith("zero-copy") for name in ran):
        report.notes.append(
            "zero-copy hand-off: the worker reads one element; multiprocessing.shared_memory "
            "counts creating the segment, copying the array in and unlinking it."
        )


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "snakepit": snakepit.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "shm_free_bytes": shm_free(),
        "workers": WORKERS,
    }


#: Command lines of the workers of snakepit, ProcessPoolExecutor (spawn),
#: loky, and of Ray's processes. Not the resource trackers (multiprocessing's
#: and loky's), which live as long as this process by design.
_WORKER_MARKS = (
    "snakepit.worker",
    "spawn_main",
    "popen_loky_posix",
    "ray::",
    "raylet",
    "gcs_server",
)


def _worker_children() -> list[psutil.Process]:
    """Worker processes (snakepit's or the peer's) still among our children."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(child.cmdline())
            if (
                any(mark in cmdline for mark in _WORKER_MARKS)
                or child.status() == psutil.STATUS_ZOMBIE
            ):
                found.append(child)
    return found


def _is_ray(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        cmdline = " ".join(proc.cmdline())
        return any(mark in cmdline for mark in ("ray::", "raylet", "gcs_server"))
    return False


def _describe(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return f"{proc.pid} ({' '.join(proc.cmdline())[:80]})"
    return str(proc.pid)


def _ray_or_dead(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return _is_ray(proc) or proc.status() == psutil.STATUS_ZOMBIE
    return True


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def run_benchmarks(options: BenchOptions, progress: TextIO | None = None) -> BenchReport:
    """Measure every case; every pool, executor and segment is gone when it returns."""
    report = BenchReport(environment=environment())
    # A Ray the caller started is not this run's to reap: neither its
    # processes nor the orphans of its nodes that end as our zombies.
    callers_ray = _ray_running()
    env = Env()
    try:
        # No pool is started up front: the start-up case forks, which is only
        # safe before any pool thread exists (it runs first).
        if options.backend == "ray":
            chosen = list(cases.ray_cases())
        else:
            chosen = cases.cli_cases(tuple(options.sizes), options.echo_bytes, options.quick)
        for case in chosen:
            if progress is not None:
                print(f"  {case.title} ...", file=progress, flush=True)
            _run_case(case, env, options, report)
        _notes(report, options)
    finally:
        env.close()
        zero_copy.trim()
        leftovers = [p for p in _worker_children() if not (callers_ray and _ray_or_dead(p))]
        # Ray's processes exit on their own shortly after ray.shutdown(): not survivors.
        ray = [p for p in leftovers if _is_ray(p)]
        _, still = psutil.wait_procs(ray, timeout=5)
        leftovers = [p for p in leftovers if p not in ray or p in still]
        survivors = [_describe(p) for p in leftovers]
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=5)
    if leftovers:
        raise BenchError(f"worker processes survived the shutdown: {survivors}")
    return report


# -------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``snakepit bench``."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            "few rounds, a 10 MiB echo, no start-up, load or 1 GiB cases: "
            "about 15-20 s on a busy 2-core machine"
        ),
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=DEFAULT_SIZES,
        metavar="LIST",
        help="zero-copy sizes, comma-separated (default: 1KiB,1MiB,100MiB,1GiB)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        metavar="N",
        help="rounds of every case (default: 200 for tiny calls down to 5 for the slowest)",
    )
    parser.add_argument(
        "--no-ray", action="store_true", help="do not start Ray, even when it is installed"
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help=(
            "ray: Pool(backend='ray') against raw Ray actors and tasks (no-op, fresh "
            "100 MiB argument, crash recovery), in one Ray on 127.0.0.1"
        ),
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every measurement here")
    parser.add_argument("--plot", type=Path, metavar="PATH", help="write a PNG chart of the ratios")


def run_command(args: argparse.Namespace) -> int:
    """Run ``snakepit bench`` with parsed arguments; returns the exit status."""
    if args.rounds is not None and args.rounds < 1:
        print("snakepit bench: --rounds must be at least 1", file=sys.stderr)
        return 2
    if args.backend == "ray" and args.no_ray:
        print("snakepit bench: --backend ray and --no-ray contradict", file=sys.stderr)
        return 2
    options = BenchOptions(
        quick=args.quick,
        sizes=tuple(args.sizes),
        rounds=args.rounds,
        no_ray=args.no_ray,
        backend=args.backend,
    )
    print(format_environment(environment()), flush=True)
    try:
        report = run_benchmarks(options, progress=sys.stderr)
    except KeyboardInterrupt:
        print("\nsnakepit bench: interrupted; pools and shared memory cleaned up", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"snakepit bench: {exc}", file=sys.stderr)
        return 1
    print()
    print(format_table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report_json(report), indent=2) + "\n")
        print(f"\nmeasurements written to {args.json}")
    if args.plot is not None:
        if write_plot(report, args.plot):
            print(f"chart written to {args.plot}")
        else:
            print(
                "matplotlib is not installed: no chart written "
                "(pip install 'snakepit-ml[plot]' or matplotlib)"
            )
    return 0
