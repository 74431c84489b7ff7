"""The Ray-backend cases of the benchmark catalogue, without starting Ray."""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

import pytest

from snakepit._bench import _ray, cases
from snakepit._bench import run as bench_run


def test_the_ray_suite_holds_the_issue_s_goals() -> None:
    assert [case.name for case in cases.SUITES["ray"]] == [
        "ray-noop",
        "ray-fresh-arg-100MiB",
        "ray-crash-recovery",
    ]
    limits = {(t.subject[0], t.baseline): t.limit for t in cases.TARGETS}
    assert limits[("ray-noop", ("ray-noop", "ray-actor"))] == 1.2
    assert limits[("ray-fresh-arg-100MiB", ("ray-fresh-arg-100MiB", "ray-task"))] == 0.5
    assert limits[("ray-crash-recovery", None)] == 0.050
    restart = ("ray-crash-recovery", "ray-actor-restart")
    assert limits[("ray-crash-recovery", restart)] == 0.1
    for case in cases.SUITES["ray"]:
        assert all("ray" in impl.requires for impl in case.impls if impl.impl != "local")


def test_without_ray_every_case_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "ray" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert _ray.backend_missing() == "ray is not installed"
    report = bench_run.run_benchmarks(bench_run.BenchOptions(backend="ray"))
    assert not report.cases
    assert {skip.case for skip in report.skipped} == {c.name for c in cases.SUITES["ray"]}
    assert {skip.reason for skip in report.skipped} == {"ray is not installed"}


def test_backend_ray_and_no_ray_contradict(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench_run.add_arguments(parser)
    args = parser.parse_args(["--backend", "ray", "--no-ray"])
    assert bench_run.run_command(args) == 2
    assert "contradict" in capsys.readouterr().err


def test_the_noop_case_shows_what_ray_charges_for_a_request_and_a_threaded_actor() -> None:
    (noop,) = [case for case in cases.SUITES["ray"] if case.name == "ray-noop"]
    impls = {impl.impl for impl in noop.impls}
    assert {"ray-actor", "ray-actor-bytes", "ray-actor-threaded"} <= impls
    limits = {t.baseline: t.limit for t in cases.TARGETS if t.subject[0] == "ray-noop"}
    assert limits[("ray-noop", "ray-actor-bytes")] is None  # for information
    assert limits[("ray-noop", "ray-actor-threaded")] is None
    # The threaded peer runs as many threads as a host of the Ray backend.
    from snakepit.backends._ray import RayBackend

    assert _ray.host_concurrency() == RayBackend().host_options("x")["max_concurrency"]


def test_the_raw_actor_answers_the_bytes_it_was_sent() -> None:
    actor = _ray.RawActor()
    assert actor.echo_bytes(_ray.REQUEST_BYTES) is _ray.REQUEST_BYTES
