"""A telemetry handler that keeps Prometheus metrics (``snakepit_*``).

Built on ``prometheus-client`` (the ``snakepit-ml[prometheus]`` extra), which is
imported only when a :class:`PrometheusMetrics` is created. The instance is a
prometheus-client *collector*: events update plain counters, gauges and
histogram buckets under one lock (about a microsecond per event, several
times cheaper than prometheus-client's own metric objects, which matters on
the per-call path), and the registry turns them into counters, gauges and
histograms when scraped. Metrics live in the instance's own registry by
default, so several instances (tests, several pools) never collide in the
process-wide default registry. Nothing listens on a port unless
:meth:`PrometheusMetrics.serve` is called.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from snakepit.errors import ExitKind
from snakepit.telemetry import _events as ev
from snakepit.telemetry._bus import Event, Measurements, Metadata, attach_many, detach

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

#: Histogram buckets for call-like durations: 100 us to 60 s.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: Values a label keeps before further new values are reported as ``"other"``.
DEFAULT_MAX_LABEL_VALUES = 500
OTHER = "other"
_CIRCUIT_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

_INSTALL_HINT = (
    "PrometheusMetrics needs prometheus-client: pip install snakepit-ml[prometheus] "
    "(or pip install prometheus-client)"
)

Labels = tuple[str, ...]


def _import_prometheus() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core
        import prometheus_client.utils
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return prometheus_client


class _Bounded:
    """Bounds the distinct values of one label (function names, models ...)."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: Any) -> str:
        text = "" if value is None else str(value)
        if text in self._seen:
            return text
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(text)
        return text


def _small(value: Any) -> str:
    """Labels whose values come from snakepit itself (a few each): unbounded."""
    return "" if value is None else str(value)


class _Counter:
    __slots__ = ("doc", "labelnames", "name", "values")

    def __init__(self, name: str, doc: str, labelnames: Labels = ()) -> None:
        self.name, self.doc, self.labelnames = name, doc, labelnames
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def snapshot(self) -> dict[Labels, Any]:
        return dict(self.values)

    def family(self, prom: Any, values: dict[Labels, Any]) -> Metric:
        family = prom.core.CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        if not values and not self.labelnames:
            values = {(): 0.0}
        for labels, value in values.items():
            family.add_metric(labels, value)
        return family  # type: ignore[no-any-return]


class _Gauge(_Counter):
    __slots__ = ()

    def set(self, labels: Labels, value: float) -> None:
        self.values[labels] = value

    def family(self, prom: Any, values: dict[Labels, Any]) -> Metric:
        family = prom.core.GaugeMetricFamily(self.name, self.doc, labels=self.labelnames)
        if not values and not self.labelnames:
            values = {(): 0.0}
        for labels, value in values.items():
            family.add_metric(labels, value)
        return family  # type: ignore[no-any-return]


class _Histogram:
    __slots__ = ("bounds", "doc", "labelnames", "name", "values")

    def __init__(
        self,
        name: str,
        doc: str,
        labelnames: Labels = (),
        bounds: tuple[float, ...] = DURATION_BUCKETS,
    ) -> None:
        self.name, self.doc, self.labelnames, self.bounds = name, doc, labelnames, bounds
        # labels -> [count in each bucket (not cumulative) ..., count above, sum]
        self.values: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        entry = self.values.get(labels)
        if entry is None:
            entry = self.values[labels] = [0.0] * (len(self.bounds) + 2)
        entry[bisect_left(self.bounds, value)] += 1
        entry[-1] += value

    def snapshot(self) -> dict[Labels, Any]:
        return {labels: list(entry) for labels, entry in self.values.items()}

    def family(self, prom: Any, values: dict[Labels, Any]) -> Metric:
        family = prom.core.HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        names = [*map(prom.utils.floatToGoString, self.bounds), "+Inf"]
        for labels, entry in values.items():
            cumulative, buckets = 0.0, []
            for le, count in zip(names, entry[:-1]):  # noqa: B905 - same length
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(labels, buckets, entry[-1])
        return family  # type: ignore[no-any-return]


_Metric = _Counter | _Histogram


class PrometheusMetrics:
    """Prometheus metrics fed by snakepit's telemetry events.

    ``metrics = PrometheusMetrics().attach()`` starts counting; :meth:`render`
    returns the text exposition and :meth:`serve` exposes it over HTTP.
    Labels are bounded: function, model, op and error-kind labels keep at most
    ``max_label_values`` distinct values each (later ones become ``"other"``);
    call ids are never labels.

    Args:
        registry: Where the metrics are registered; a fresh
            ``prometheus_client.CollectorRegistry`` by default (pass
            ``prometheus_client.REGISTRY`` to use the global one).
        namespace: Prefix of every metric name.
        handler_id: Id to attach under; unique per instance by default.
        max_label_values: Distinct values per bounded label.

    Raises:
        ImportError: prometheus-client is not installed.
        ValueError: ``registry`` already holds metrics of these names (another
            instance with the same namespace).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "snakepit",
        *,
        handler_id: str | None = None,
        max_label_values: int = DEFAULT_MAX_LABEL_VALUES,
    ) -> None:
        prom = _import_prometheus()
        self._prom = prom
        self.namespace = namespace
        self.handler_id = handler_id or f"snakepit-prometheus-{id(self):x}"
        self._lock = threading.Lock()
        self._function = _Bounded(max_label_values)
        self._kind = _Bounded(max_label_values)
        self._model = _Bounded(max_label_values)
        self._op = _Bounded(max_label_values)
        self._pools: dict[Any, tuple[float, float, float, float]] = {}
        self._shm_bytes = 0.0
        self._metrics: list[_Metric] = []

        def add(metric: Any) -> Any:
            metric.name = f"{namespace}_{metric.name}"
            self._metrics.append(metric)
            return metric

        C, G, H = _Counter, _Gauge, _Histogram  # noqa: N806
        fn = ("function",)
        self._calls = add(C("calls", "Calls finished, by outcome (ok, error).", (*fn, "outcome")))
        self._call_duration = add(H("call_duration_seconds", "Submission to result.", fn))
        self._call_queue = add(H("call_queue_seconds", "Submission to hand-off to a worker.", fn))
        self._call_python = add(H("call_python_seconds", "Running the function in a worker.", fn))
        self._call_errors = add(
            C(
                "call_errors",
                "Failed calls, by snakepit error class and remote exception type.",
                (*fn, "kind", "python_type"),
            )
        )
        self._errors = add(C("errors", "Errors returned to callers, by class.", ("kind",)))
        self._retries = add(C("retries", "Retries of idempotent calls, by error class.", ("kind",)))
        self._checkouts = add(C("pool_checkouts", "Calls handed to a worker."))
        self._busy = add(H("worker_busy_seconds", "Time a worker spent on one call."))
        self._workers = add(G("workers", "Live workers over all pools, by state.", ("state",)))
        self._slots = add(G("worker_slots", "Worker slots over all pools."))
        self._queue_depth = add(G("queue_depth", "Calls waiting for a worker, over all pools."))
        self._starts = add(C("worker_starts", "Worker processes that became ready.", ("restart",)))
        self._startup = add(H("worker_startup_seconds", "Worker spawn to ready."))
        self._crashes = add(C("worker_crashes", "Workers that died, by exit kind.", ("exit_kind",)))
        self._restarts = add(C("worker_restarts", "Replacements scheduled for dead workers."))
        self._circuit_state = add(
            G("circuit_state", "Breaker state: 0 closed, 1 half-open, 2 open.", ("circuit",))
        )
        self._circuit_opens = add(C("circuit_opens", "Times a breaker opened.", ("circuit",)))
        self._alerts = add(C("health_alerts", "Health alerts.", ("alert", "severity")))
        self._shm_bytes_gauge = add(
            G("shared_memory_bytes", "Shared memory allocated here and not yet released.")
        )
        self._shm_allocations = add(C("shared_memory_allocations", "Shared arrays allocated."))
        self._shm_releases = add(C("shared_memory_releases", "Shared blocks released."))
        self._gpu = add(G("gpu_memory_bytes", "GPU memory (profiler).", ("device", "kind")))
        io = ("direction", "what")
        self._serialize = add(H("serialize_seconds", "Codec time, arguments and results.", io))
        self._serialize_bytes = add(C("serialize_bytes", "Pickled payload bytes.", io))
        self._unavailable = add(
            C("device_unavailable", "Requests for a device not present.", ("requested",))
        )
        self._tensor_op = add(H("tensor_op_seconds", "Reported tensor operations.", ("op",)))
        self._inference = add(H("inference_seconds", "Reported inferences.", ("model",)))
        self._tokens = add(C("inference_tokens", "Tokens produced by inferences.", ("model",)))
        self._tokens_per_second = add(
            G("inference_tokens_per_second", "Tokens per second, latest inference.", ("model",))
        )
        self._train_step = add(H("train_step_seconds", "Reported training steps.", ("model",)))
        self._train_loss = add(G("train_loss", "Loss of the latest training step.", ("model",)))

        self._dispatch: dict[Event, Callable[[Measurements, Metadata], None]] = {
            ev.CALL_STOP: self._call_stop,
            ev.CALL_EXCEPTION: self._call_exception,
            ev.POOL_CHECKOUT: lambda m, md: self._checkouts.inc(),
            ev.POOL_CHECKIN: self._checkin,
            ev.POOL_SIZE: self._pool_size,
            ev.WORKER_START: self._worker_start,
            ev.WORKER_CRASH: lambda m, md: self._crashes.inc(
                (_small(md.get("exit_kind") or ExitKind.unknown),)
            ),
            ev.WORKER_RESTART: lambda m, md: self._restarts.inc(),
            ev.CIRCUIT_OPEN: lambda m, md: self._circuit(md, "open"),
            ev.CIRCUIT_HALF_OPEN: lambda m, md: self._circuit(md, "half_open"),
            ev.CIRCUIT_CLOSE: lambda m, md: self._circuit(md, "closed"),
            ev.RETRY_ATTEMPT: lambda m, md: self._retries.inc((self._kind(md.get("kind")),)),
            ev.HEALTH_ALERT: lambda m, md: self._alerts.inc(
                (_small(md.get("alert")), _small(md.get("severity")))
            ),
            ev.MEMORY_ALLOCATE: self._allocate,
            ev.MEMORY_RELEASE: self._release,
            ev.MEMORY_GPU: self._gpu_sample,
            ev.SERIALIZE_STOP: self._serialize_stop,
            ev.DEVICE_UNAVAILABLE: lambda m, md: self._unavailable.inc(
                (_small(md.get("requested")),)
            ),
            ev.ERROR: lambda m, md: self._errors.inc((self._kind(md.get("kind")),)),
            ev.ML_TENSOR_OP: lambda m, md: self._tensor_op.observe(
                (self._op(md.get("op")),), m.get("duration", 0.0)
            ),
            ev.ML_INFERENCE: self._inference_done,
            ev.ML_TRAIN_STEP: self._train_step_done,
        }
        self.registry: CollectorRegistry = (
            prom.CollectorRegistry(auto_describe=True) if registry is None else registry
        )
        self.registry.register(self)

    # ----------------------------------------------------- event handlers (locked)

    def _call_stop(self, m: Measurements, md: Metadata) -> None:
        function = self._function(md.get("function"))
        self._calls.inc((function, "ok"))
        self._call_times((function,), m)

    def _call_exception(self, m: Measurements, md: Metadata) -> None:
        function = self._function(md.get("function"))
        self._calls.inc((function, "error"))
        # PythonError wraps every user exception: its remote type tells them apart.
        python_type = self._kind(md.get("python_type") or "")
        self._call_errors.inc((function, self._kind(md.get("kind")), python_type))
        self._call_times((function,), m)

    def _call_times(self, labels: Labels, m: Measurements) -> None:
        if "duration" in m:
            self._call_duration.observe(labels, m["duration"])
        if "queue_time" in m:
            self._call_queue.observe(labels, m["queue_time"])
        if m.get("python_time"):
            self._call_python.observe(labels, m["python_time"])

    def _checkin(self, m: Measurements, md: Metadata) -> None:
        if "busy_time" in m:
            self._busy.observe((), m["busy_time"])

    def _pool_size(self, m: Measurements, md: Metadata) -> None:
        # Gauges sum over pools; a pool reporting size 0 (shut down) is dropped.
        sizes = (
            float(m.get("size", 0)),
            float(m.get("idle", 0)),
            float(m.get("busy", 0)),
            float(m.get("queue_depth", 0)),
        )
        if sizes[0] <= 0 and sizes[3] <= 0:
            self._pools.pop(md.get("pool"), None)
        else:
            self._pools[md.get("pool")] = sizes
        totals = [sum(row[i] for row in self._pools.values()) for i in range(4)]
        self._slots.set((), totals[0])
        self._workers.set(("idle",), totals[1])
        self._workers.set(("busy",), totals[2])
        self._queue_depth.set((), totals[3])

    def _worker_start(self, m: Measurements, md: Metadata) -> None:
        self._starts.inc(("true" if md.get("restart") else "false",))
        if "startup_time" in m:
            self._startup.observe((), m["startup_time"])

    def _circuit(self, md: Metadata, state: str) -> None:
        circuit = _small(md.get("circuit"))
        self._circuit_state.set((circuit,), _CIRCUIT_STATES[state])
        if state == "open":
            self._circuit_opens.inc((circuit,))

    def _allocate(self, m: Measurements, md: Metadata) -> None:
        self._shm_allocations.inc()
        self._shm_bytes += float(m.get("bytes", 0))
        self._shm_bytes_gauge.set((), self._shm_bytes)

    def _release(self, m: Measurements, md: Metadata) -> None:
        self._shm_releases.inc()
        # Blocks allocated before attach() are released too: never below 0.
        self._shm_bytes = max(0.0, self._shm_bytes - float(m.get("bytes", 0)))
        self._shm_bytes_gauge.set((), self._shm_bytes)

    def _gpu_sample(self, m: Measurements, md: Metadata) -> None:
        device = _small(md.get("device"))
        for kind in ("used", "free", "total"):
            if kind in m:
                self._gpu.set((device, kind), m[kind])

    def _serialize_stop(self, m: Measurements, md: Metadata) -> None:
        labels = (_small(md.get("direction")), _small(md.get("what")))
        if "duration" in m:
            self._serialize.observe(labels, m["duration"])
        if "bytes" in m:
            self._serialize_bytes.inc(labels, m["bytes"])

    def _inference_done(self, m: Measurements, md: Metadata) -> None:
        labels = (self._model(md.get("model")),)
        self._inference.observe(labels, m.get("duration", 0.0))
        if "tokens" in m:
            self._tokens.inc(labels, m["tokens"])
        if "tokens_per_second" in m:
            self._tokens_per_second.set(labels, m["tokens_per_second"])

    def _train_step_done(self, m: Measurements, md: Metadata) -> None:
        labels = (self._model(md.get("model")),)
        self._train_step.observe(labels, m.get("duration", 0.0))
        if "loss" in m:
            self._train_loss.set(labels, m["loss"])

    # ------------------------------------------------------------------ public

    @property
    def events(self) -> tuple[Event, ...]:
        """The events the metrics are fed from."""
        return tuple(self._dispatch)

    def attach(self) -> PrometheusMetrics:
        """Start updating the metrics from telemetry events; returns ``self``.

        Raises ``ValueError`` if this instance is attached already.
        """
        attach_many(self.handler_id, self.events, _handle, self)
        return self

    def detach(self) -> bool:
        """Stop updating the metrics (they keep their values); returns whether attached."""
        return detach(self.handler_id)

    def describe(self) -> Iterator[Metric]:
        """The metric families without values (the registry checks names with it)."""
        for metric in self._metrics:
            yield metric.family(self._prom, {})

    def collect(self) -> Iterator[Metric]:
        """The metrics as prometheus-client metric families (the registry calls this)."""
        with self._lock:
            snapshot = [(metric, metric.snapshot()) for metric in self._metrics]
        for metric, values in snapshot:
            yield metric.family(self._prom, values)

    def render(self) -> bytes:
        """The metrics in the Prometheus text exposition format."""
        data: bytes = self._prom.generate_latest(self.registry)
        return data

    def serve(self, port: int, addr: str = "127.0.0.1") -> tuple[WSGIServer, threading.Thread]:
        """Serve ``/metrics`` over HTTP on ``addr:port`` from a daemon thread.

        Port 0 picks a free port (``server.server_port`` tells which). Stop it
        with ``server.shutdown(); server.server_close()``. Only this method
        ever opens a port.
        """
        server, thread = self._prom.start_http_server(port, addr=addr, registry=self.registry)
        return server, thread


def _handle(event: Event, m: Measurements, md: Metadata, config: Any) -> None:
    metrics: PrometheusMetrics = config
    with metrics._lock:
        metrics._dispatch[event](m, md)
