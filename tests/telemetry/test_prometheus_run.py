"""A short real run, exposed as Prometheus text and read back by its parser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import snakepit
from snakepit import telemetry
from snakepit.errors import PythonError, WorkerCrashedError

from ..pool import _tasks

parser = pytest.importorskip("prometheus_client.parser")


@pytest.fixture
def metrics() -> Iterator[telemetry.PrometheusMetrics]:
    handler = telemetry.PrometheusMetrics()
    handler.attach()
    try:
        yield handler
    finally:
        handler.detach()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def test_short_run_parses_with_the_expected_series_and_values(
    metrics: telemetry.PrometheusMetrics,
) -> None:
    with snakepit.Pool(workers=2) as pool:
        for i in range(5):
            assert pool.call(_tasks.add, i, 1) == i + 1
        with pytest.raises(PythonError):
            pool.call(_tasks.always_raise)
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        text = metrics.render().decode()
    samples = _samples(text)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    assert value("snakepit_calls_total", function="tests.pool._tasks:add", outcome="ok") == 5
    assert (
        value("snakepit_calls_total", function="tests.pool._tasks:always_raise", outcome="error")
        == 1
    )
    assert (
        value("snakepit_calls_total", function="tests.pool._tasks:segfault", outcome="error") == 1
    )
    assert value("snakepit_worker_crashes_total", exit_kind="segfault") == 1
    raised = value(
        "snakepit_call_errors_total",
        function="tests.pool._tasks:always_raise",
        kind="PythonError",
        python_type="ValueError",
    )
    assert raised == 1
    assert value("snakepit_worker_restarts_total") == 1
    # Every finished call went through a worker and into the duration histogram.
    assert value("snakepit_pool_checkouts_total") == 7
    count = sum(
        v for (name, _), v in samples.items() if name == "snakepit_call_duration_seconds_count"
    )
    assert count == 7
    buckets = [
        (float(dict(labels)["le"]), v)
        for (name, labels), v in samples.items()
        if name == "snakepit_call_duration_seconds_bucket"
        and dict(labels).get("function") == "tests.pool._tasks:add"
    ]
    assert buckets
    assert max(buckets)[1] == 5  # the +Inf bucket holds every add call
    assert all(name.startswith("snakepit_") for name, _ in samples)
