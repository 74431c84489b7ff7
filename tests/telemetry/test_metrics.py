"""The Prometheus metrics handler: what each event updates, labels, serving."""

from __future__ import annotations

import sys
import threading
import urllib.request
from collections.abc import Iterator

import psutil
import pytest

import snakepit
from snakepit import telemetry
from snakepit.telemetry import _events as ev

prometheus_client = pytest.importorskip("prometheus_client")


@pytest.fixture(autouse=True)
def _no_handler_left_attached() -> Iterator[None]:
    """The bus is global: every test detaches what it attached."""
    before = {info.handler_id for info in telemetry.list_handlers()}
    yield
    assert {info.handler_id for info in telemetry.list_handlers()} == before


@pytest.fixture
def metrics() -> Iterator[telemetry.PrometheusMetrics]:
    m = telemetry.PrometheusMetrics()
    m.attach()
    try:
        yield m
    finally:
        m.detach()


def value(m: telemetry.PrometheusMetrics, name: str, **labels: str) -> float | None:
    result: float | None = m.registry.get_sample_value(name, labels)
    return result


def listening() -> set[tuple[str, int]]:
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process().net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


def test_call_stop_and_exception_count_and_time_calls(
    metrics: telemetry.PrometheusMetrics,
) -> None:
    meta = {"call_id": 1, "function": "demo:f", "pool": "p", "worker_id": 0}
    telemetry.execute(
        ev.CALL_STOP, {"duration": 0.003, "queue_time": 0.001, "python_time": 0.002}, meta
    )
    telemetry.execute(
        ev.CALL_EXCEPTION,
        {"duration": 0.5, "queue_time": 0.0, "python_time": 0.0, "attempts": 2.0},
        {**meta, "kind": "ValueError", "reason": "bad"},
    )
    assert value(metrics, "snakepit_calls_total", function="demo:f", outcome="ok") == 1
    assert value(metrics, "snakepit_calls_total", function="demo:f", outcome="error") == 1
    errors = value(
        metrics, "snakepit_call_errors_total", function="demo:f", kind="ValueError", python_type=""
    )
    assert errors == 1
    assert value(metrics, "snakepit_call_duration_seconds_count", function="demo:f") == 2
    assert value(metrics, "snakepit_call_duration_seconds_sum", function="demo:f") == pytest.approx(
        0.503
    )
    assert (
        value(metrics, "snakepit_call_duration_seconds_bucket", function="demo:f", le="0.005") == 1
    )
    assert value(metrics, "snakepit_call_queue_seconds_count", function="demo:f") == 2
    assert value(metrics, "snakepit_call_python_seconds_count", function="demo:f") == 1


def test_a_real_pool_feeds_the_metrics(metrics: telemetry.PrometheusMetrics) -> None:
    with snakepit.Pool(workers=2) as pool:
        assert pool.call(sum, [1, 2]) == 3
        with pytest.raises(ValueError, match="invalid literal"):
            pool.call(int, "x")
        workers = value(metrics, "snakepit_workers", state="idle") or 0
        workers += value(metrics, "snakepit_workers", state="busy") or 0
        assert workers == 2
    assert value(metrics, "snakepit_calls_total", function="builtins:sum", outcome="ok") == 1
    assert value(metrics, "snakepit_calls_total", function="builtins:int", outcome="error") == 1
    assert value(metrics, "snakepit_worker_starts_total", restart="false") == 2
    assert value(metrics, "snakepit_workers", state="idle") == 0


def test_duration_buckets_span_100us_to_60s(metrics: telemetry.PrometheusMetrics) -> None:
    for duration in (0.00005, 0.001, 61.0):
        telemetry.execute(ev.CALL_STOP, {"duration": duration}, {"function": "demo:f"})
    le = "snakepit_call_duration_seconds_bucket"
    assert value(metrics, le, function="demo:f", le="0.0001") == 1
    assert value(metrics, le, function="demo:f", le="0.0005") == 1
    assert value(metrics, le, function="demo:f", le="0.001") == 2  # a bound is inclusive
    assert value(metrics, le, function="demo:f", le="60.0") == 2
    assert value(metrics, le, function="demo:f", le="+Inf") == 3
    assert value(metrics, "snakepit_call_duration_seconds_count", function="demo:f") == 3


def test_unlabelled_counters_start_at_zero(metrics: telemetry.PrometheusMetrics) -> None:
    assert value(metrics, "snakepit_worker_restarts_total") == 0
    assert value(metrics, "snakepit_calls_total", function="demo:f", outcome="ok") is None


def test_concurrent_events_are_all_counted(metrics: telemetry.PrometheusMetrics) -> None:
    def emit() -> None:
        for _ in range(2000):
            telemetry.execute(ev.CALL_STOP, {"duration": 0.001}, {"function": "demo:f"})

    threads = [threading.Thread(target=emit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert value(metrics, "snakepit_calls_total", function="demo:f", outcome="ok") == 16000
    assert value(metrics, "snakepit_call_duration_seconds_count", function="demo:f") == 16000


def test_worker_and_pool_gauges_sum_over_pools(metrics: telemetry.PrometheusMetrics) -> None:
    size = {"size": 4.0, "idle": 3.0, "busy": 1.0, "queue_depth": 0.0}
    telemetry.execute(ev.POOL_SIZE, size, {"pool": "a"})
    telemetry.execute(ev.POOL_SIZE, {**size, "idle": 1.0, "busy": 3.0}, {"pool": "b"})
    assert value(metrics, "snakepit_workers", state="idle") == 4
    assert value(metrics, "snakepit_workers", state="busy") == 4
    assert value(metrics, "snakepit_worker_slots") == 8
    telemetry.execute(ev.POOL_SIZE, {"size": 0.0, "idle": 0.0, "busy": 0.0}, {"pool": "a"})
    assert value(metrics, "snakepit_workers", state="idle") == 1
    assert value(metrics, "snakepit_worker_slots") == 4


def test_worker_lifecycle_counters(metrics: telemetry.PrometheusMetrics) -> None:
    telemetry.execute(ev.WORKER_START, {"startup_time": 0.2}, {"restart": False})
    telemetry.execute(ev.WORKER_CRASH, {"uptime": 1.0}, {"exit_kind": "segfault"})
    telemetry.execute(ev.WORKER_RESTART, {"delay": 0.1}, {"worker_id": 0})
    telemetry.execute(ev.WORKER_START, {"startup_time": 0.3}, {"restart": True})
    assert value(metrics, "snakepit_worker_crashes_total", exit_kind="segfault") == 1
    assert value(metrics, "snakepit_worker_restarts_total") == 1
    assert value(metrics, "snakepit_worker_starts_total", restart="true") == 1
    assert value(metrics, "snakepit_worker_starts_total", restart="false") == 1
    assert value(metrics, "snakepit_worker_startup_seconds_count") == 2


def test_circuit_state_gauge(metrics: telemetry.PrometheusMetrics) -> None:
    states = []
    for event in (ev.CIRCUIT_OPEN, ev.CIRCUIT_HALF_OPEN, ev.CIRCUIT_CLOSE):
        telemetry.execute(event, {}, {"circuit": "global"})
        states.append(value(metrics, "snakepit_circuit_state", circuit="global"))
    assert states == [2, 1, 0]
    assert value(metrics, "snakepit_circuit_opens_total", circuit="global") == 1


def test_retries_alerts_errors(metrics: telemetry.PrometheusMetrics) -> None:
    telemetry.execute(ev.RETRY_ATTEMPT, {"attempt": 2.0, "delay": 0.1}, {"kind": "Timeout"})
    telemetry.execute(
        ev.HEALTH_ALERT, {"value": 1.0}, {"alert": "crash_rate", "severity": "critical"}
    )
    telemetry.execute(ev.ERROR, {}, {"kind": "WorkerCrashedError", "call_id": 3})
    telemetry.execute(ev.DEVICE_UNAVAILABLE, {}, {"requested": "cuda:3"})
    assert value(metrics, "snakepit_retries_total", kind="Timeout") == 1
    assert (
        value(metrics, "snakepit_health_alerts_total", alert="crash_rate", severity="critical") == 1
    )
    assert value(metrics, "snakepit_errors_total", kind="WorkerCrashedError") == 1
    assert value(metrics, "snakepit_device_unavailable_total", requested="cuda:3") == 1


def test_shared_memory_bytes_never_go_negative(metrics: telemetry.PrometheusMetrics) -> None:
    telemetry.execute(ev.MEMORY_ALLOCATE, {"bytes": 1000.0}, {"dtype": "f4", "shape": (250,)})
    telemetry.execute(ev.MEMORY_ALLOCATE, {"bytes": 24.0}, {"dtype": "u1", "shape": (24,)})
    assert value(metrics, "snakepit_shared_memory_bytes") == 1024
    telemetry.execute(ev.MEMORY_RELEASE, {"bytes": 1000.0}, {})
    assert value(metrics, "snakepit_shared_memory_bytes") == 24
    telemetry.execute(ev.MEMORY_RELEASE, {"bytes": 4096.0}, {})
    assert value(metrics, "snakepit_shared_memory_bytes") == 0
    assert value(metrics, "snakepit_shared_memory_allocations_total") == 2
    assert value(metrics, "snakepit_shared_memory_releases_total") == 2


def test_gpu_serialize_and_ml(metrics: telemetry.PrometheusMetrics) -> None:
    telemetry.execute(
        ev.MEMORY_GPU, {"used": 10.0, "free": 90.0, "total": 100.0}, {"device": 0, "name": "X"}
    )
    telemetry.execute(
        ev.SERIALIZE_STOP,
        {"duration": 0.001, "bytes": 512.0, "arrays": 1.0},
        {"direction": "encode", "what": "arguments"},
    )
    with telemetry.inference("tiny", batch_size=2) as record:
        record.tokens = 50
    with telemetry.train_step(1, model="tiny") as step:
        step.loss = 0.25
    with telemetry.tensor_op("matmul"):
        pass
    assert value(metrics, "snakepit_gpu_memory_bytes", device="0", kind="used") == 10
    assert value(metrics, "snakepit_gpu_memory_bytes", device="0", kind="total") == 100
    labels = {"direction": "encode", "what": "arguments"}
    assert value(metrics, "snakepit_serialize_seconds_count", **labels) == 1
    assert value(metrics, "snakepit_serialize_bytes_total", **labels) == 512
    assert value(metrics, "snakepit_inference_tokens_total", model="tiny") == 50
    tps = value(metrics, "snakepit_inference_tokens_per_second", model="tiny")
    assert tps is not None
    assert tps > 0
    assert value(metrics, "snakepit_train_loss", model="tiny") == 0.25
    assert value(metrics, "snakepit_train_step_seconds_count", model="tiny") == 1
    assert value(metrics, "snakepit_tensor_op_seconds_count", op="matmul") == 1


def test_function_labels_are_bounded_and_call_ids_never_labels() -> None:
    m = telemetry.PrometheusMetrics(max_label_values=2).attach()
    try:
        for index in range(5):
            telemetry.execute(
                ev.CALL_STOP, {"duration": 0.001}, {"function": f"f{index}", "call_id": index}
            )
    finally:
        m.detach()
    assert value(m, "snakepit_calls_total", function="f1", outcome="ok") == 1
    assert value(m, "snakepit_calls_total", function="other", outcome="ok") == 3
    assert value(m, "snakepit_calls_total", function="f2", outcome="ok") is None
    assert b"call_id" not in m.render()


def test_every_metric_is_named_snakepit_and_registries_are_separate(
    metrics: telemetry.PrometheusMetrics,
) -> None:
    other = telemetry.PrometheusMetrics()  # same names, own registry: no collision
    telemetry.execute(ev.CALL_STOP, {"duration": 0.001}, {"function": "demo:f"})
    names = {
        line.split("{")[0].split(" ")[0]
        for line in metrics.render().decode().splitlines()
        if line and not line.startswith("#")
    }
    assert names
    assert all(name.startswith("snakepit_") for name in names)
    assert value(other, "snakepit_calls_total", function="demo:f", outcome="ok") is None
    global_names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("snakepit") for name in global_names)


def test_two_instances_in_one_registry_are_refused() -> None:
    registry = prometheus_client.CollectorRegistry()
    telemetry.PrometheusMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        telemetry.PrometheusMetrics(registry)
    telemetry.PrometheusMetrics(registry, namespace="other")  # another namespace is fine


def test_events_are_catalogued_and_detach_stops_counting() -> None:
    m = telemetry.PrometheusMetrics().attach()
    try:
        assert set(m.events) <= set(ev.ALL_EVENTS)
        with pytest.raises(ValueError, match="already attached"):
            m.attach()
    finally:
        assert m.detach() is True
    telemetry.execute(ev.CALL_STOP, {"duration": 0.001}, {"function": "demo:f"})
    assert value(m, "snakepit_calls_total", function="demo:f", outcome="ok") is None
    assert m.detach() is False


def test_no_port_is_opened_unless_serve_is_called() -> None:
    before = listening()
    m = telemetry.PrometheusMetrics().attach()
    try:
        telemetry.execute(ev.CALL_STOP, {"duration": 0.001}, {"function": "demo:f"})
        m.render()
        assert listening() == before
    finally:
        m.detach()


def test_serve_exposes_the_metrics_over_http(metrics: telemetry.PrometheusMetrics) -> None:
    telemetry.execute(ev.CALL_STOP, {"duration": 0.001}, {"function": "demo:served"})
    server, thread = metrics.serve(0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        assert (host, port) in listening()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            body = reply.read().decode()
        assert 'snakepit_calls_total{function="demo:served",outcome="ok"} 1.0' in body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert not thread.is_alive()


def test_missing_prometheus_client_raises_with_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install snakepit-ml\[prometheus\]"):
        telemetry.PrometheusMetrics()
