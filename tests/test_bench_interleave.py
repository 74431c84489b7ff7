"""Interleaved rounds (``snakepit._bench._interleave``) and their replay into pytest-benchmark."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from snakepit._bench._interleave import Rounds, interleavable, interleaved, run_interleaved
from snakepit._bench._model import BenchError, Case, Env, Impl, Timed

REPO = Path(__file__).resolve().parents[1]


def _recording(log: list[str], name: str, **kwargs: object) -> Timed:
    return Timed(lambda: log.append(name), **kwargs)  # type: ignore[arg-type]


def test_blocks_alternate_with_a_settling_call_at_each_switch() -> None:
    log: list[str] = []
    timeds = [
        ("a", _recording(log, "a", rounds=4, warmup=1)),
        ("b", _recording(log, "b", rounds=2, warmup=1)),
    ]
    records = run_interleaved(timeds, lambda t: t.rounds, lambda t: t.iterations, block=2)
    # warm-ups in turn, then per block: one settling call and two timed rounds.
    assert log == ["a", "b", *"aaa", *"bbb", *"aaa"]
    assert [len(r.durations) for r in records] == [4, 2]
    assert all(d >= 0 for r in records for d in r.durations)


def test_single_round_blocks_alternate_without_settling() -> None:
    log: list[str] = []
    timeds = [
        ("a", _recording(log, "a", rounds=3, warmup=0)),
        ("b", _recording(log, "b", rounds=3, warmup=0, iterations=2)),
    ]
    records = run_interleaved(timeds, lambda t: t.rounds, lambda t: t.iterations, block=1)
    assert log == ["a", "b", "b"] * 3
    assert records[1].iterations == 2
    assert records[1].per_call == [d / 2 for d in records[1].durations]


def test_every_round_is_checked_and_set_up() -> None:
    calls: list[str] = []

    def check(result: object) -> None:
        if result != 1:
            raise BenchError("wrong")

    timed = Timed(lambda: 2, rounds=2, warmup=0, check=check, setup=lambda: calls.append("s"))
    other = Timed(lambda: None, rounds=2, warmup=0)
    with pytest.raises(BenchError):
        run_interleaved([("a", timed), ("b", other)], lambda t: t.rounds, lambda t: 1, 1)
    assert calls == ["s"]


def test_only_cases_that_ask_are_interleaved_and_alone_impls_stay_out() -> None:
    @contextlib.contextmanager
    def prepare(env: Env) -> Iterator[Timed]:
        yield Timed(lambda: None, rounds=1, warmup=0)

    a, b = Impl("snakepit", "a", prepare), Impl("peer", "b", prepare)
    lone = Impl("ray", "r", prepare, alone=True)
    assert interleavable(Case("x", "x", (a, b)), [a, b]) == []
    case = Case("x", "x", (a, b, lone), interleave=1)
    assert interleavable(case, [a, b, lone]) == [a, b]
    assert interleavable(case, [a, lone]) == []
    records = interleaved(case, [a, b], Env(), lambda t: t.rounds, lambda t: 1)
    assert set(records) == {"snakepit", "peer"}


REPLAY_TEST = """
from bench._harness import _replay
from snakepit._bench._interleave import Rounds

def test_replayed(benchmark):
    _replay(benchmark, Rounds("x", 2, [0.5, 0.25, 1.0]))
"""


def test_replayed_rounds_are_what_pytest_benchmark_records(tmp_path: Path) -> None:
    (tmp_path / "test_replay.py").write_text(REPLAY_TEST)
    out = tmp_path / "out.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += [str(tmp_path / "test_replay.py"), f"--benchmark-json={out}"]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (bench,) = json.loads(out.read_text())["benchmarks"]
    assert bench["stats"]["rounds"] == 3
    assert bench["stats"]["iterations"] == 2
    assert bench["stats"]["median"] == pytest.approx(0.25)  # per call: 0.25, 0.125, 0.5
    assert bench["stats"]["data"] == pytest.approx([0.25, 0.125, 0.5])


def test_rounds_per_call() -> None:
    assert Rounds("x", 4, [4.0, 8.0]).per_call == [1.0, 2.0]
