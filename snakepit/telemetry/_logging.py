"""A telemetry handler that writes events to stdlib :mod:`logging`.

Each event gets a sensible level (a finished call is DEBUG, a worker crash is
ERROR ...) that can be overridden per event, and a one-line message a person
can read. A call slower than a threshold is logged as a WARNING naming the
function and where its time went.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from snakepit._util import format_bytes
from snakepit.errors import ExitKind
from snakepit.telemetry import _events as ev
from snakepit.telemetry._bus import (
    Event,
    Measurements,
    Metadata,
    attach_many,
    detach,
    list_handlers,
)

#: The logger the handler writes to unless told otherwise.
DEFAULT_LOGGER = "snakepit.telemetry.events"
DEFAULT_HANDLER_ID = "snakepit-logging"
#: Ids attach_logging attached; the default failure records stay quiet while
#: one of them is attached (see snakepit/telemetry/_failures.py).
_full_logging_ids: set[str] = set()

#: The level of each catalogued event, before overrides.
DEFAULT_LEVELS: Mapping[Event, int] = {
    ev.CALL_START: logging.DEBUG,
    ev.CALL_STOP: logging.DEBUG,
    ev.CALL_EXCEPTION: logging.WARNING,
    ev.POOL_CHECKOUT: logging.DEBUG,
    ev.POOL_CHECKIN: logging.DEBUG,
    ev.POOL_SIZE: logging.DEBUG,
    ev.WORKER_START: logging.INFO,
    ev.WORKER_CRASH: logging.ERROR,
    ev.WORKER_RESTART: logging.INFO,
    ev.WORKER_RECYCLE: logging.INFO,
    ev.SESSION_LOST: logging.WARNING,
    ev.CIRCUIT_OPEN: logging.WARNING,
    ev.CIRCUIT_HALF_OPEN: logging.INFO,
    ev.CIRCUIT_CLOSE: logging.INFO,
    ev.RETRY_ATTEMPT: logging.INFO,
    ev.HEALTH_ALERT: logging.WARNING,  # ERROR when severity is "critical"
    ev.MEMORY_ALLOCATE: logging.DEBUG,
    ev.MEMORY_RELEASE: logging.DEBUG,
    ev.MEMORY_GPU: logging.DEBUG,
    ev.MEMORY_TORCH: logging.DEBUG,
    ev.CUDA_COPY: logging.INFO,
    ev.CALL_FALLBACK: logging.WARNING,
    ev.SERIALIZE_STOP: logging.DEBUG,
    ev.HARDWARE_DETECTED: logging.INFO,
    ev.DEVICE_SELECTED: logging.INFO,
    ev.DEVICE_UNAVAILABLE: logging.WARNING,
    # The failed call is already logged by call exception; this is the detail.
    ev.ERROR: logging.DEBUG,
    ev.ML_TENSOR_OP: logging.DEBUG,
    ev.ML_INFERENCE: logging.DEBUG,
    ev.ML_TRAIN_STEP: logging.DEBUG,
}

_Format = Callable[[Measurements, Metadata], str]

#: Call failures whose worker-crash event is already a record of their own.
_LOGGED_AS_CRASHES = frozenset({"WorkerCrashedError", "WorkerTimeoutError"})


def _ms(seconds: Any) -> str:
    """``12.3`` (milliseconds, no unit) for a duration in seconds."""
    try:
        return f"{float(seconds) * 1e3:.1f}"
    except (TypeError, ValueError):
        return "?"


def _duration(seconds: Any) -> str:
    """``12.3 ms`` below a second, ``1.23 s`` above."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return "?"
    return f"{value:.2f} s" if value >= 1.0 else f"{value * 1e3:.1f} ms"


def _bytes(n: Any) -> str:
    try:
        value = float(n)
    except (TypeError, ValueError):
        return "?"
    return format_bytes(value)


def _worker(metadata: Metadata) -> str:
    worker = metadata.get("worker_id")
    return "" if worker is None else f" on worker {worker}"


def _phases(m: Measurements) -> str:
    parts = [
        f"{label} {_ms(m[key])}"
        for key, label in (
            ("queue_time", "queue"),
            ("serialize_time", "serialise"),
            ("python_time", "python"),
            ("deserialize_time", "deserialise"),
        )
        if key in m
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _call_stop(m: Measurements, md: Metadata) -> str:
    return (
        f"call {md.get('function', '?')} took {_duration(m.get('duration'))}"
        f"{_phases(m)}{_worker(md)}"
    )


def _call_exception(m: Measurements, md: Metadata) -> str:
    attempts = m.get("attempts")
    tries = f" after {attempts:.0f} attempts" if attempts and attempts > 1 else ""
    kind, reason = md.get("kind", "error"), md.get("reason", "")
    # A PythonError's message already starts with the remote type ("ValueError: ...").
    error = reason if kind == "PythonError" and reason else f"{kind}: {reason}"
    return (
        f"call {md.get('function', '?')} failed in {_duration(m.get('duration'))}{tries}"
        f"{_worker(md)}: {error}"
    )


def _worker_crash(m: Measurements, md: Metadata) -> str:
    detail = []
    if md.get("signal") is not None:
        detail.append(f"signal {md['signal']}")
    if md.get("exit_code") is not None:
        detail.append(f"exit code {md['exit_code']}")
    if md.get("call_id") is not None:
        function = f"{md['function']} " if md.get("function") else ""
        detail.append(f"running {function}call {md['call_id']}")
    extra = f" ({', '.join(detail)})" if detail else ""
    return (
        f"worker {md.get('worker_id', '?')} (pid {md.get('pid', '?')}) crashed: "
        f"{md.get('exit_kind', ExitKind.unknown)}{extra} after {_duration(m.get('uptime'))}"
    )


_FORMATS: dict[Event, _Format] = {
    ev.CALL_START: lambda m, md: f"call {md.get('function', '?')} submitted",
    ev.CALL_STOP: _call_stop,
    ev.CALL_EXCEPTION: _call_exception,
    ev.POOL_CHECKOUT: lambda m, md: (
        f"call {md.get('call_id', '?')} handed to worker {md.get('worker_id', '?')} "
        f"after {_duration(m.get('queue_time'))} in the queue"
    ),
    ev.POOL_CHECKIN: lambda m, md: (
        f"worker {md.get('worker_id', '?')} free again after {_duration(m.get('busy_time'))}"
    ),
    ev.POOL_SIZE: lambda m, md: (
        f"pool: {m.get('size', 0):.0f} slots, {m.get('idle', 0):.0f} idle, "
        f"{m.get('busy', 0):.0f} busy, {m.get('queue_depth', 0):.0f} queued"
    ),
    ev.WORKER_START: lambda m, md: (
        f"worker {md.get('worker_id', '?')} (pid {md.get('pid', '?')}) "
        f"{'restarted' if md.get('restart') else 'started'} in "
        f"{_duration(m.get('startup_time'))}"
        + (f" on {md['device']}" if md.get("device") is not None else "")
    ),
    ev.WORKER_CRASH: _worker_crash,
    ev.WORKER_RESTART: lambda m, md: (
        f"restarting worker {md.get('worker_id', '?')} in {_duration(m.get('delay'))}"
        + (f" ({md['crashes']} crashes in the window)" if md.get("crashes") else "")
    ),
    ev.WORKER_RECYCLE: lambda m, md: (
        f"worker {md.get('worker_id', '?')} (pid {md.get('pid', '?')}) recycled after "
        f"{m.get('calls', 0):.0f} calls ({md.get('reason', '?')})"
        + ("" if md.get("replaced", True) else "; started again when a call needs it")
    ),
    ev.SESSION_LOST: lambda m, md: (
        f"session {md.get('session', '?')!r} lost with worker {md.get('worker_id', '?')} "
        f"(pid {md.get('pid', '?')}, {md.get('exit_kind', '?')}): "
        + (
            "rebuilt by the session initializer"
            if md.get("reinitialized")
            else "its next call raises"
        )
    ),
    ev.CIRCUIT_OPEN: lambda m, md: (
        f"circuit {md.get('circuit', '?')} opened: calls fail fast until it resets"
    ),
    ev.CIRCUIT_HALF_OPEN: lambda m, md: (
        f"circuit {md.get('circuit', '?')} half-open: letting trial calls through"
    ),
    ev.CIRCUIT_CLOSE: lambda m, md: f"circuit {md.get('circuit', '?')} closed again",
    ev.RETRY_ATTEMPT: lambda m, md: (
        f"retrying call {md.get('call_id', '?')} after {md.get('kind', 'an error')}: "
        f"attempt {m.get('attempt', 0):.0f} in {_duration(m.get('delay'))}"
    ),
    ev.HEALTH_ALERT: lambda m, md: (
        f"health {md.get('severity', 'warning')}: {md.get('alert', '?')} "
        f"on {md.get('subject', '?')}: {md.get('message', '')} "
        f"(value {m.get('value', '?')}, threshold {m.get('threshold', '?')})"
    ),
    ev.MEMORY_ALLOCATE: lambda m, md: (
        f"shared memory: allocated {_bytes(m.get('bytes'))} "
        f"({md.get('dtype', '?')} {tuple(md.get('shape') or ())})"
    ),
    ev.MEMORY_RELEASE: lambda m, md: f"shared memory: released {_bytes(m.get('bytes'))}",
    ev.MEMORY_GPU: lambda m, md: (
        f"GPU {md.get('device', '?')} ({md.get('name', '?')}): {_bytes(m.get('used'))} used, "
        f"{_bytes(m.get('free'))} free of {_bytes(m.get('total'))}"
    ),
    ev.MEMORY_TORCH: lambda m, md: (
        f"torch on {md.get('device', '?')}: {_bytes(m.get('allocated'))} allocated, "
        f"{_bytes(m.get('reserved'))} reserved"
    ),
    ev.CUDA_COPY: lambda m, md: (
        f"CUDA tensor on {md.get('device', '?')} copied once ({_bytes(m.get('bytes'))}): "
        f"{md.get('memory_kind', '?')} memory: {md.get('reason', '')}"
    ),
    ev.CALL_FALLBACK: lambda m, md: (
        f"call {md.get('call_id', '?')} out of memory on {md.get('from_device', '?')}, "
        f"runs on {md.get('to_device', '?')} (attempt {m.get('attempt', 0):.0f}): "
        f"{md.get('reason', '')}"
    ),
    ev.SERIALIZE_STOP: lambda m, md: (
        f"{md.get('direction', '?')}d {md.get('what', '?')}: {_bytes(m.get('bytes'))}, "
        f"{m.get('arrays', 0):.0f} arrays by reference, in {_duration(m.get('duration'))}"
    ),
    ev.HARDWARE_DETECTED: lambda m, md: (
        f"hardware: {md.get('accelerator', '?')}, {md.get('gpu_count', 0)} GPUs "
        f"(detected in {_duration(m.get('duration'))})"
    ),
    ev.DEVICE_SELECTED: lambda m, md: (
        f"device {md.get('selected', '?')} selected for {md.get('requested', '?')}: "
        f"{md.get('reason', '')}"
    ),
    ev.DEVICE_UNAVAILABLE: lambda m, md: (
        f"device {md.get('requested', '?')} unavailable ({md.get('reason', '')}); "
        f"present: {md.get('available', '?')}"
    ),
    ev.ERROR: lambda m, md: (
        f"error {md.get('kind', '?')}"
        + (f" for call {md['call_id']}" if md.get("call_id") is not None else "")
        + f": {md.get('message', '')}"
    ),
    ev.ML_TENSOR_OP: lambda m, md: (
        f"tensor op {md.get('op', '?')} took {_duration(m.get('duration'))}"
        + (f" on {md['shape']}" if md.get("shape") is not None else "")
        + _worker(md)
    ),
    ev.ML_INFERENCE: lambda m, md: (
        f"inference {md.get('model', '?')} took {_duration(m.get('duration'))}"
        + (f", {m['tokens_per_second']:.1f} tokens/s" if "tokens_per_second" in m else "")
        + _worker(md)
    ),
    ev.ML_TRAIN_STEP: lambda m, md: (
        f"train step {md.get('step', '?')} of {md.get('model') or 'model'} took "
        f"{_duration(m.get('duration'))}"
        + (f", loss {m['loss']:.4g}" if "loss" in m else "")
        + _worker(md)
    ),
}


def format_event(event: Event, measurements: Measurements, metadata: Metadata) -> str:
    """The one-line message the logging handler writes for an event."""
    formatter = _FORMATS.get(event)
    if formatter is not None:
        try:
            return formatter(measurements, metadata)
        except Exception:  # a malformed event still gets the generic line
            pass
    shown = {k: v for k, v in metadata.items() if k != "exception"}
    return f"{'.'.join(event)} {dict(measurements)} {shown}"


def _level(value: int | str) -> int:
    if isinstance(value, int):
        return value
    level = logging.getLevelName(value.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown logging level {value!r}")
    return level


def _event_key(name: Event | str) -> Event:
    return tuple(name.split(".")) if isinstance(name, str) else tuple(name)


class _LoggingConfig:
    __slots__ = ("levels", "logger", "slow")

    def __init__(self, logger: logging.Logger, levels: dict[Event, int], slow: float | None):
        self.logger = logger
        self.levels = levels
        self.slow = slow


def _handle(event: Event, measurements: Measurements, metadata: Metadata, config: Any) -> None:
    cfg: _LoggingConfig = config
    level = cfg.levels[event]
    if event == ev.CALL_STOP and cfg.slow is not None:
        duration = measurements.get("duration", 0.0)
        if duration > cfg.slow:
            level = max(level, logging.WARNING)
            if cfg.logger.isEnabledFor(level):
                cfg.logger.log(
                    level,
                    "slow call: %s (threshold %s)",
                    _call_stop(measurements, metadata),
                    _duration(cfg.slow),
                )
            return
    elif event == ev.CALL_EXCEPTION and metadata.get("kind") in _LOGGED_AS_CRASHES:
        # The worker's crash record already names the call: one failure, one record.
        level = min(level, logging.DEBUG)
    elif (
        event == ev.HEALTH_ALERT
        and metadata.get("severity") == "critical"
        and level == logging.WARNING  # not overridden
    ):
        level = logging.ERROR
    if cfg.logger.isEnabledFor(level):
        cfg.logger.log(level, "%s", format_event(event, measurements, metadata))


def attach_logging(
    logger: logging.Logger | str | None = None,
    *,
    level_overrides: Mapping[Event | str, int | str] | None = None,
    slow_call_threshold: float | None = 1.0,
    handler_id: str = DEFAULT_HANDLER_ID,
) -> str:
    """Log every catalogued event through stdlib :mod:`logging`; returns the handler id.

    Args:
        logger: A logger or logger name; ``"snakepit.telemetry.events"`` by default.
        level_overrides: Level per event, e.g. ``{("snakepit", "call", "stop"):
            logging.INFO}``; events may also be given dotted (``"snakepit.call.stop"``)
            and levels by name (``"INFO"``). See :data:`DEFAULT_LEVELS`.
        slow_call_threshold: A call that takes longer (seconds, submission to
            result) is logged as a WARNING "slow call" naming the function and
            where its time went. ``None`` turns this off.
        handler_id: The id to attach under (and to give :func:`detach_logging`).

    Raises:
        ValueError: ``handler_id`` is attached already, an override names an
            event not in the catalogue or an unknown level.
    """
    if isinstance(logger, str) or logger is None:
        logger = logging.getLogger(logger or DEFAULT_LOGGER)
    levels = {spec.name: DEFAULT_LEVELS.get(spec.name, logging.INFO) for spec in ev.CATALOGUE}
    for name, value in (level_overrides or {}).items():
        key = _event_key(name)
        if key not in levels:
            raise ValueError(f"{name!r} is not an event in snakepit.telemetry.CATALOGUE")
        levels[key] = _level(value)
    if slow_call_threshold is not None and slow_call_threshold < 0:
        raise ValueError("slow_call_threshold must be >= 0 seconds or None")
    config = _LoggingConfig(logger, levels, slow_call_threshold)
    attach_many(handler_id, list(levels), _handle, config)
    _full_logging_ids.add(handler_id)
    return handler_id


def detach_logging(handler_id: str = DEFAULT_HANDLER_ID) -> bool:
    """Detach a handler attached by :func:`attach_logging`; returns whether it was attached."""
    _full_logging_ids.discard(handler_id)
    return detach(handler_id)


def full_logging_attached() -> bool:
    """Whether a handler of :func:`attach_logging` is attached (it then logs failures)."""
    if not _full_logging_ids:
        return False
    return any(info.handler_id in _full_logging_ids for info in list_handlers())
