"""``snakepit bench``: snakepit against its peers, measured in the same run (SPEC §6).

Self-contained for an installed user: it needs neither the repository's
``bench/`` folder (the pytest-benchmark suite) nor pytest. The cases and the
method are that suite's:

- zero-copy hand-off: a worker reads one element of an array. snakepit gets
  an array already in shared memory (``snakepit.zeros``); the peers are
  pickle through ``ProcessPoolExecutor`` and ``multiprocessing.shared_memory``
  (create a segment, copy the array in, the worker attaches by name; the
  create, copy and unlink are counted, since a user must do them).
- no-op call round trip and echo of an array: ``snakepit.Pool`` against
  ``ProcessPoolExecutor``, 2 workers each.
- crash recovery: from submitting a call that segfaults its worker to the next
  successful call. ``ProcessPoolExecutor`` is broken for good after a crash;
  its number is shutting it down and starting a new one.
- telemetry overhead: one ``snakepit.telemetry.execute`` with no handler and
  with one trivial handler, against an empty function call and stdlib logging.

Every executor is warmed up first; each number is the median of
``time.perf_counter`` rounds, and is only reported next to a peer measured in
the same run (ratio = snakepit median / peer median; below 1 snakepit is
faster). ``ProcessPoolExecutor`` uses the ``spawn`` start method: forking a
process that runs snakepit's supervisor threads is unsafe.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import psutil

import snakepit
from snakepit import _bench_tasks as tasks
from snakepit import telemetry, zero_copy
from snakepit.errors import SnakepitError, WorkerCrashedError

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
WORKERS = 2
MARK = 42
SHM_DIR = "/dev/shm"
#: A size runs only when /dev/shm has this many times its bytes free.
SHM_HEADROOM = 3
#: The pickle peer is skipped at and above this size (seconds per round).
PICKLE_LIMIT = GIB
DEFAULT_SIZES: tuple[int, ...] = (KIB, MIB, 100 * MIB, GIB)
RATIO_MEANING = "snakepit median / peer median, same run (below 1: snakepit is faster)"

_UNITS = {"": 1, "b": 1, "k": KIB, "kb": KIB, "kib": KIB}
_UNITS |= {"m": MIB, "mb": MIB, "mib": MIB, "g": GIB, "gb": GIB, "gib": GIB}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
_PROBE: telemetry.Event = ("bench", "probe")  # not a snakepit event: never catalogued
_PROBE_MEASUREMENTS: telemetry.Measurements = {"value": 1.0}
_HANDLER_ID = "snakepit-bench-probe"

Submit = Callable[..., "Future[Any]"]


class BenchError(SnakepitError):
    """A benchmark produced a wrong result (the numbers would mean nothing)."""


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class Measurement:
    """One implementation's median on one case, in seconds."""

    impl: str
    label: str
    median: float
    rounds: int


@dataclass(frozen=True)
class CaseResult:
    """A case: snakepit's measurement and its peers', all from the same run."""

    case: str
    title: str
    snakepit: Measurement
    peers: tuple[Measurement, ...]

    def ratio(self, peer: Measurement) -> float:
        """snakepit's median divided by ``peer``'s (below 1: snakepit is faster)."""
        return self.snakepit.median / peer.median


@dataclass(frozen=True)
class Skip:
    """An implementation (or a whole case) that was not measured, and why."""

    case: str
    impl: str
    reason: str


@dataclass
class BenchReport:
    """Everything one ``snakepit bench`` run measured."""

    cases: list[CaseResult] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchOptions:
    """What to run: ``rounds`` None means each case's default."""

    quick: bool = False
    sizes: tuple[int, ...] = DEFAULT_SIZES
    rounds: int | None = None

    def pick(self, full: int, quick: int) -> int:
        """The rounds of a case whose defaults are ``full`` and ``quick``."""
        if self.rounds is not None:
            return self.rounds
        return quick if self.quick else full

    @property
    def echo_bytes(self) -> int:
        """Size of the echoed array."""
        return 10 * MIB if self.quick else 100 * MIB


# --------------------------------------------------------------- formatting


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


def size_label(nbytes: int, sep: str = " ") -> str:
    """``1 KiB``, ``100 MiB``, ``1.5 GiB``: a byte count for humans."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if nbytes >= scale:
            value = nbytes / scale
            return f"{value:.3g}{sep}{unit}" if nbytes % scale else f"{nbytes // scale}{sep}{unit}"
    return f"{nbytes}{sep}B"


def format_seconds(seconds: float) -> str:
    """A duration with three significant digits in s, ms, us or ns."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_ratio(ratio: float) -> str:
    """``0.0123 (81.3x faster)`` or ``1.8 (1.8x slower)``."""
    if ratio < 1:
        return f"{ratio:.3g} ({1 / ratio:.3g}x faster)"
    if ratio > 1:
        return f"{ratio:.3g} ({ratio:.3g}x slower)"
    return "1 (same)"


def format_table(report: BenchReport) -> str:
    """The report as a plain-text table, then its skips and notes."""
    header = ("case", "implementation", "median", "rounds", "snakepit / peer")
    rows: list[tuple[str, ...]] = []
    for result in report.cases:
        own = result.snakepit
        rows.append(
            (result.title, own.label, format_seconds(own.median), str(own.rounds), "reference")
        )
        for peer in result.peers:
            rows.append(
                (
                    "",
                    peer.label,
                    format_seconds(peer.median),
                    str(peer.rounds),
                    format_ratio(result.ratio(peer)),
                )
            )
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    out = [f"ratio = {RATIO_MEANING}", "", line(header), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    out = [text.rstrip() for text in out]
    if report.skipped:
        out += ["", "skipped:"]
        out += [_bullet(f"{skip.case} / {skip.impl}: {skip.reason}") for skip in report.skipped]
    if report.notes:
        out += ["", "notes:"]
        out += [_bullet(note) for note in report.notes]
    return "\n".join(out)


def _bullet(text: str) -> str:
    return textwrap.fill(text, width=100, initial_indent="  - ", subsequent_indent="    ")


def format_environment(environment: dict[str, Any]) -> str:
    """One line naming what the numbers were measured on."""
    free = environment.get("shm_free_bytes")
    shm = f", /dev/shm {size_label(free)} free" if isinstance(free, int) else ""
    return (
        f"snakepit bench: snakepit {environment.get('snakepit')}, "
        f"Python {environment.get('python')}, {environment.get('platform')}, "
        f"{environment.get('cpus')} CPUs{shm}, {WORKERS} workers per executor"
    )


def report_json(report: BenchReport) -> dict[str, Any]:
    """Every measurement as data: case, impl, median (seconds), rounds, ratio.

    A peer's ``ratio`` is snakepit's median over its median; snakepit's own
    rows have ratio 1 (each case's reference).
    """
    measurements: list[dict[str, Any]] = []
    for result in report.cases:
        for measured in (result.snakepit, *result.peers):
            measurements.append(
                {
                    "case": result.case,
                    "title": result.title,
                    "impl": measured.impl,
                    "label": measured.label,
                    "median": measured.median,
                    "rounds": measured.rounds,
                    "ratio": result.ratio(measured),
                }
            )
    return {
        "ratio": RATIO_MEANING,
        "median_unit": "seconds",
        "environment": report.environment,
        "measurements": measurements,
        "skipped": [vars(skip) for skip in report.skipped],
        "notes": report.notes,
    }


def write_plot(report: BenchReport, path: Path) -> bool:
    """A PNG bar chart of every ratio (log scale); False when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels: list[str] = []
    values: list[float] = []
    for result in report.cases:
        for peer in result.peers:
            labels.append(f"{result.title}\nvs {peer.label}")
            values.append(result.ratio(peer))
    fig, ax = plt.subplots(figsize=(10, 0.55 * max(len(values), 1) + 1.6))
    try:
        colors = ["tab:green" if value < 1 else "tab:red" for value in values]
        ax.barh(labels, values, color=colors)
        for index, value in enumerate(values):
            ax.annotate(
                format_ratio(value),
                (value, index),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linestyle=":", linewidth=1)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlabel("snakepit median / peer median (log scale; below 1: snakepit is faster)")
        ax.set_title("snakepit bench: peers measured in the same run")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return True


# ------------------------------------------------------------------ timing


def median_seconds(
    fn: Callable[[], object],
    rounds: int,
    *,
    warmup: int = 1,
    setup: Callable[[], object] | None = None,
) -> float:
    """Median ``time.perf_counter`` duration of ``fn()`` over ``rounds`` rounds.

    ``setup`` runs untimed before every round (warm-up rounds included).
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    samples = []
    for _ in range(rounds):
        if setup is not None:
            setup()
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _expect(value: object, expected: object, what: str) -> None:
    if value != expected:
        raise BenchError(f"{what}: got {value!r}, expected {expected!r}")


def _peer_executor() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=WORKERS,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=tasks.ignore_sigint,
    )


def _warm(submit: Submit) -> None:
    """Start every worker and run a few calls through each."""
    pids = {f.result() for f in [submit(tasks.pid_after, 0.05) for _ in range(2 * WORKERS)]}
    if not pids:
        raise BenchError("no worker answered")
    for _ in range(20):
        _expect(submit(tasks.noop).result(), None, "warm-up call")


def _wait_until_idle(pool: snakepit.Pool, timeout: float = 60.0) -> None:
    """Block until every worker slot is up and idle again (after a restart)."""
    deadline = time.monotonic() + timeout
    while (stats := pool.stats())["idle"] < stats["size"]:
        if time.monotonic() > deadline:
            raise BenchError(f"the pool did not recover from a crash: {stats}")
        time.sleep(0.002)


def _shm_free() -> int | None:
    try:
        return shutil.disk_usage(SHM_DIR).free
    except OSError:
        return None


def shm_skip_reason(nbytes: int, free: int | None) -> str | None:
    """Why a zero-copy case of ``nbytes`` cannot run with ``free`` bytes in /dev/shm.

    None when it can: it needs SHM_HEADROOM times its size (snakepit's array,
    the peer's segment, and room for everything else).
    """
    needed = SHM_HEADROOM * nbytes
    if free is not None and free >= needed:
        return None
    have = "could not be read" if free is None else f"has {size_label(free)} free"
    return (
        f"/dev/shm {have}; a {size_label(nbytes)} case needs {size_label(needed)} "
        f"({SHM_HEADROOM}x its size). In Docker, raise --shm-size."
    )


# ------------------------------------------------------------------- cases


class _Runner:
    """Runs the cases against one warm snakepit.Pool and one warm peer executor."""

    def __init__(
        self,
        options: BenchOptions,
        pool: snakepit.Pool,
        peer: ProcessPoolExecutor,
        report: BenchReport,
        progress: TextIO | None,
    ) -> None:
        self.options = options
        self.pool = pool
        self.peer = peer
        self.report = report
        self.progress = progress

    def say(self, text: str) -> None:
        if self.progress is not None:
            print(f"  {text} ...", file=self.progress, flush=True)

    def zero_copy(self, nbytes: int) -> None:
        label = size_label(nbytes)
        case = f"zero-copy-{size_label(nbytes, '')}"
        reason = shm_skip_reason(nbytes, _shm_free())
        if reason is not None:
            self.report.skipped.append(Skip(case, "all", reason))
            return
        self.say(f"zero-copy hand-off {label}")
        small = nbytes < 10 * MIB
        rounds = self.options.pick(
            200 if small else (20 if nbytes < GIB else 10), 20 if small else 3
        )
        mine = Measurement(
            "snakepit",
            "snakepit.Pool, array from snakepit.zeros",
            self._zero_copy_snakepit(nbytes, rounds),
            rounds,
        )
        zero_copy.trim()  # the array is gone: give its region back before the peers run
        plain = np.zeros(nbytes, dtype=np.uint8)
        plain.fill(0)  # touch every page, as snakepit.zeros does
        plain[0] = MARK
        peers: list[Measurement] = []
        if nbytes >= PICKLE_LIMIT:
            self.report.skipped.append(
                Skip(
                    case,
                    "pickle",
                    f"pickling {label} through ProcessPoolExecutor's pipe takes seconds a round",
                )
            )
        else:
            peer = self.peer

            def pickled() -> None:
                _expect(peer.submit(tasks.first_element, plain).result(), MARK, "pickle hand-off")

            peers.append(
                Measurement(
                    "pickle",
                    "pickle via ProcessPoolExecutor",
                    median_seconds(pickled, rounds),
                    rounds,
                )
            )
        peers.append(
            Measurement(
                "shared_memory",
                "multiprocessing.shared_memory + ProcessPoolExecutor",
                median_seconds(lambda: self._shm_round(plain), rounds),
                rounds,
            )
        )
        self.report.cases.append(
            CaseResult(case, f"zero-copy hand-off {label}", mine, tuple(peers))
        )

    def _zero_copy_snakepit(self, nbytes: int, rounds: int) -> float:
        """Median hand-off of an array already in shared memory (freed on return)."""
        shared = snakepit.zeros((nbytes,), "uint8")
        shared[0] = MARK
        pool = self.pool

        def own() -> None:
            _expect(pool.call(tasks.first_element, shared), MARK, "snakepit hand-off")

        return median_seconds(own, rounds, warmup=2)

    def _shm_round(self, array: np.ndarray[Any, Any]) -> None:
        """What a user of multiprocessing.shared_memory does: create, copy, call, unlink."""
        segment = shared_memory.SharedMemory(create=True, size=array.nbytes)
        try:
            view: np.ndarray[Any, Any] = np.ndarray(array.shape, array.dtype, buffer=segment.buf)
            view[...] = array
            del view  # close() refuses while the buffer is exported
            value = self.peer.submit(
                tasks.shm_first_element, segment.name, array.shape, array.dtype.str
            ).result()
            _expect(value, MARK, "shared_memory hand-off")
        finally:
            segment.close()
            segment.unlink()

    def noop(self) -> None:
        self.say("no-op call round trip")
        rounds = self.options.pick(200, 30)
        pool, peer = self.pool, self.peer
        mine = median_seconds(lambda: pool.call(tasks.noop), rounds, warmup=10)
        theirs = median_seconds(lambda: peer.submit(tasks.noop).result(), rounds, warmup=10)
        self.report.cases.append(
            CaseResult(
                "noop",
                "no-op call round trip",
                Measurement("snakepit", "snakepit.Pool", mine, rounds),
                (Measurement("ppe", "ProcessPoolExecutor", theirs, rounds),),
            )
        )

    def echo(self) -> None:
        nbytes = self.options.echo_bytes
        label = size_label(nbytes)
        self.say(f"echo of a {label} array")
        rounds = self.options.pick(20, 5)
        source = np.arange(nbytes // 4, dtype=np.float32)
        pool, peer = self.pool, self.peer

        def check(result: object) -> None:
            if not (
                isinstance(result, np.ndarray)
                and result.shape == source.shape
                and result[-1] == source[-1]
            ):
                raise BenchError(f"echo returned {type(result).__name__}, not the array")

        def own() -> None:
            check(pool.call(tasks.echo, source))

        def theirs() -> None:
            check(peer.submit(tasks.echo, source).result())

        last = pool.call(tasks.echo, source)
        if not (snakepit.is_shared(last) and np.array_equal(last, source)):
            raise BenchError("snakepit's echo did not come back through shared memory intact")
        del last
        mine = median_seconds(own, rounds)
        peer_median = median_seconds(theirs, rounds)
        zero_copy.trim()
        self.report.cases.append(
            CaseResult(
                f"echo-{size_label(nbytes, '')}",
                f"echo of a {label} numpy array",
                Measurement("snakepit", "snakepit.Pool", mine, rounds),
                (Measurement("pickle", "pickle via ProcessPoolExecutor", peer_median, rounds),),
            )
        )

    def crash_recovery(self) -> None:
        self.say("crash recovery (a worker segfaults)")
        rounds = self.options.pick(10, 3)
        # Crashes are the point: never mark the slot unhealthy, never back off.
        with snakepit.Pool(
            workers=WORKERS, worker_max_crashes=1_000_000, restart_backoff=(0.0, 0.0)
        ) as crashy:
            _warm(crashy.submit)

            def own() -> None:
                try:
                    crashy.call(tasks.segfault)
                except WorkerCrashedError as exc:
                    _expect(exc.exit_kind, "segfault", "snakepit crash")
                else:
                    raise BenchError("the segfaulting call returned")
                _expect(crashy.call(tasks.noop), None, "call after the crash")

            mine = median_seconds(own, rounds, setup=lambda: _wait_until_idle(crashy))
            _wait_until_idle(crashy)

        self.say("crash recovery, ProcessPoolExecutor (rebuilt after each crash)")
        peer_rounds = self.options.pick(5, 1)
        victims: list[ProcessPoolExecutor] = []

        def shutdown_victims() -> None:
            while victims:
                victims.pop().shutdown(wait=True, cancel_futures=True)

        def setup() -> None:
            # Every executor is warm (all workers up) before it is crashed.
            if not victims:
                victims.append(_peer_executor())
            _warm(victims[-1].submit)

        def theirs() -> None:
            broken = victims.pop()
            try:
                broken.submit(tasks.segfault).result()
            except BrokenProcessPool:
                pass
            else:
                raise BenchError("the segfaulting call returned")
            finally:
                broken.shutdown(wait=True)
            fresh = _peer_executor()
            victims.append(fresh)
            _expect(fresh.submit(tasks.noop).result(), None, "call on the new executor")

        try:
            # Untimed proof of the note below: after a crash, every call fails.
            setup()
            with contextlib.suppress(BrokenProcessPool):
                victims[-1].submit(tasks.segfault).result()
            try:
                victims[-1].submit(tasks.noop).result()
                stays_broken = False
            except BrokenProcessPool:
                stays_broken = True
            shutdown_victims()
            theirs_median = median_seconds(theirs, peer_rounds, warmup=0, setup=setup)
        finally:
            shutdown_victims()
        self.report.cases.append(
            CaseResult(
                "crash-recovery",
                "crash recovery: segfault to next good call",
                Measurement("snakepit", "snakepit.Pool (replaces the worker)", mine, rounds),
                (
                    Measurement(
                        "ppe-rebuild",
                        "ProcessPoolExecutor: shut down + new executor",
                        theirs_median,
                        peer_rounds,
                    ),
                ),
            )
        )
        broken_note = (
            "a later submit() raised BrokenProcessPool too"
            if stays_broken
            else "(this run: a later submit() did not raise)"
        )
        self.report.notes.append(
            "crash recovery: after one worker segfaults, ProcessPoolExecutor is broken "
            f"(BrokenProcessPool; {broken_note}): every pending and later call fails, so "
            "its number is the only recovery, shutting it down and starting a new "
            "executor. snakepit raises WorkerCrashedError for the one call and replaces "
            "the worker."
        )

    def telemetry(self) -> None:
        self.say("telemetry overhead")
        rounds = self.options.pick(200, 30)
        iterations = 2_000 if self.options.quick else 10_000
        execute = telemetry.execute
        probe, measurements = _PROBE, _PROBE_MEASUREMENTS
        logger = logging.getLogger("snakepit.bench.peer")
        logger.propagate = False

        def per_call(loop: Callable[[], None]) -> float:
            return median_seconds(loop, rounds) / iterations

        def snakepit_loop() -> None:
            for _ in range(iterations):
                execute(probe, measurements)

        def empty_loop() -> None:
            for _ in range(iterations):
                _empty_call(probe, measurements)

        def handler_loop() -> None:
            for _ in range(iterations):
                _trivial_handler(probe, measurements, {}, None)

        def logging_loop() -> None:
            for _ in range(iterations):
                logger.debug("%s %s", probe, measurements)

        if telemetry.list_handlers(_PROBE):
            raise BenchError(f"a handler is already attached to {_PROBE}")
        old_level = logger.level
        try:
            logger.setLevel(logging.WARNING)
            off = per_call(snakepit_loop)
            self.report.cases.append(
                CaseResult(
                    "telemetry-no-handler",
                    "telemetry.execute, no handler",
                    Measurement("snakepit", "snakepit.telemetry.execute", off, rounds),
                    (
                        Measurement(
                            "empty-call", "empty function call", per_call(empty_loop), rounds
                        ),
                        Measurement(
                            "logging",
                            "logging.debug, level WARNING",
                            per_call(logging_loop),
                            rounds,
                        ),
                    ),
                )
            )
            telemetry.attach(_HANDLER_ID, _PROBE, _trivial_handler)
            trivial = _TrivialLogHandler()
            logger.addHandler(trivial)
            logger.setLevel(logging.DEBUG)
            on = per_call(snakepit_loop)
            self.report.cases.append(
                CaseResult(
                    "telemetry-one-handler",
                    "telemetry.execute, one trivial handler",
                    Measurement("snakepit", "snakepit.telemetry.execute", on, rounds),
                    (
                        Measurement(
                            "direct-call",
                            "calling the handler directly",
                            per_call(handler_loop),
                            rounds,
                        ),
                        Measurement(
                            "logging",
                            "logging.debug, one trivial handler",
                            per_call(logging_loop),
                            rounds,
                        ),
                    ),
                )
            )
        finally:
            telemetry.detach(_HANDLER_ID)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.setLevel(old_level)
        self.report.notes.append(
            f"telemetry: median per call of loops of {iterations} calls (loop overhead "
            "included on both sides)."
        )


def _empty_call(event: telemetry.Event, measurements: telemetry.Measurements) -> None:
    return None


def _trivial_handler(
    event: telemetry.Event,
    measurements: telemetry.Measurements,
    metadata: telemetry.Metadata,
    config: Any,
) -> None:
    return None


class _TrivialLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        return None


# -------------------------------------------------------------------- run


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "snakepit": snakepit.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "shm_free_bytes": _shm_free(),
        "workers": WORKERS,
    }


def _worker_children() -> list[psutil.Process]:
    """Worker processes (snakepit's or the peer's) still among our children."""
    found = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(child.cmdline())
            if (
                "snakepit.worker" in cmdline
                or "spawn_main" in cmdline
                or child.status() == psutil.STATUS_ZOMBIE
            ):
                found.append(child)
    return found


@contextlib.contextmanager
def _executors() -> Iterator[tuple[snakepit.Pool, ProcessPoolExecutor]]:
    """A warm snakepit.Pool and ProcessPoolExecutor, both shut down however we leave."""
    with contextlib.ExitStack() as stack:
        pool = snakepit.Pool(workers=WORKERS)
        stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        peer = _peer_executor()
        stack.callback(peer.shutdown, wait=True, cancel_futures=True)
        _warm(pool.submit)
        _warm(peer.submit)
        yield pool, peer


def run_benchmarks(options: BenchOptions, progress: TextIO | None = None) -> BenchReport:
    """Measure every case; every pool, executor and segment is gone when it returns."""
    report = BenchReport(environment=environment())
    try:
        if progress is not None:
            print("starting snakepit.Pool and ProcessPoolExecutor ...", file=progress, flush=True)
        with _executors() as (pool, peer):
            runner = _Runner(options, pool, peer, report, progress)
            for nbytes in sorted(options.sizes):
                runner.zero_copy(nbytes)
            runner.noop()
            runner.echo()
            runner.crash_recovery()
            runner.telemetry()
    finally:
        zero_copy.trim()
        leftovers = _worker_children()
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=5)
    if leftovers:
        raise BenchError(f"worker processes survived the shutdown: {[p.pid for p in leftovers]}")
    report.notes.append(
        "zero-copy hand-off: the worker reads one element; multiprocessing.shared_memory "
        "counts creating the segment, copying the array in and unlinking it."
    )
    return report


# -------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``snakepit bench``."""
    parser.add_argument(
        "--quick", action="store_true", help="few rounds and a 10 MiB echo: done in seconds"
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
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every measurement here")
    parser.add_argument("--plot", type=Path, metavar="PATH", help="write a PNG chart of the ratios")


def run_command(args: argparse.Namespace) -> int:
    """Run ``snakepit bench`` with parsed arguments; returns the exit status."""
    if args.rounds is not None and args.rounds < 1:
        print("snakepit bench: --rounds must be at least 1", file=sys.stderr)
        return 2
    options = BenchOptions(quick=args.quick, sizes=tuple(args.sizes), rounds=args.rounds)
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
