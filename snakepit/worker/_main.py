"""The worker process: receive calls, run them, send results back.

Started by the supervisor as ``python -m snakepit.worker <fd> <supervisor pid>
<fault fd>`` with one end of a private socketpair inherited as ``fd``, or
forked by the pool's template (:mod:`snakepit.worker._zygote`), which hands
the same descriptors to :func:`run`.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from snakepit import _core
from snakepit._wire import codec, protocol
from snakepit._wire._pickling import resolve
from snakepit.errors import SerializationError, SharedMemoryError
from snakepit.telemetry import _bus as telemetry_bus
from snakepit.telemetry._propagation import activated, active_carrier
from snakepit.worker import _output as worker_output
from snakepit.zero_copy._runtime import (
    LazyLedger,
    array_from_ref,
    configure,
    drain_cuda,
    install_ledger,
    install_warm_buffers,
    lend_results,
    prune_mappings,
    retain,
    settle_cuda,
    threshold_bytes,
)

if TYPE_CHECKING:
    from snakepit.worker._limits import Limits

_PR_SET_PDEATHSIG = 1
# Drop unused mappings of freed regions every this many calls.
_PRUNE_EVERY = 64
_PLAIN = (str, int, float, bool, type(None))
#: Room left in a frame for the envelope around a result.
_FRAME_HEADROOM = 1 << 20


def attach_argument_shapes(
    record: dict[str, object], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """See :func:`snakepit.errors._remote.attach_argument_shapes` (loaded on first use)."""
    from snakepit.errors._remote import attach_argument_shapes as attach

    attach(record, args, kwargs)


def report_torch_memory() -> None:
    """See :func:`snakepit.telemetry._gpu.report_torch_memory`: loaded with torch.

    The GPU telemetry module costs a worker's start about 2 ms of imports,
    and a process without torch has nothing for it to report.
    """
    if "torch" in sys.modules:
        from snakepit.telemetry._gpu import report_torch_memory as report

        report()


def exception_to_record(exc: BaseException) -> dict[str, object]:
    """The record of ``exc`` for the supervisor (see :mod:`snakepit.errors._remote`).

    Imported on the first error: it costs a worker ~5 ms at start-up, and
    the worker template imports it once idle, so restarted workers have it.
    """
    from snakepit.errors._remote import exception_to_record as to_record

    return to_record(exc)


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` made of plain types only (the supervisor may lack its classes)."""
    if isinstance(value, _PLAIN):
        return value
    if depth < 3 and isinstance(value, (tuple, list)):
        return tuple(_plain(item, depth + 1) for item in value[:64])
    try:
        return repr(value)[:200]
    except Exception:
        return f"<{type(value).__name__}>"


def die_with_parent(supervisor_pid: int) -> None:
    """Get SIGKILLed when the supervisor dies, even by SIGKILL (and so do our children)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The supervisor may have died before prctl took effect.
    if os.getppid() != supervisor_pid:
        os._exit(0)
    # Children that user code forks die with this worker, even when the
    # supervisor's death is what kills it (nothing else would reap them).
    os.register_at_fork(after_in_child=die_with_worker)


#: Results that travel as a field of the reply's frame (``_compact``).
_NUMBERS = (float, int)
_CONTAINERS = (tuple, list, dict)
_NO_IDS: frozenset[int] = frozenset()


def _fresh_arrays(value: Any, held: int) -> frozenset[int]:
    """Ids of the numpy arrays of a result (itself, or the items of the
    tuple, list or dict it is) that own their data and that nothing but the
    result refers to: they may travel from where numpy allocated them (see
    ``lend_results``), since no later write of the worker can reach them.

    ``held``: the references to ``value`` that our own frames hold.
    """
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return _NO_IDS
    ndarray, kind, least = numpy.ndarray, type(value), threshold_bytes()
    # Here: ``held``, this frame's `value` and getrefcount's argument.
    if (kind is not ndarray and kind not in _CONTAINERS) or sys.getrefcount(value) > held + 2:
        return _NO_IDS
    if kind is ndarray:
        fresh = value.base is None and value.nbytes >= least
        return frozenset((id(value),)) if fresh else _NO_IDS
    items = value.values() if kind is dict else value
    # An item: the container's reference, `item` and getrefcount's argument.
    return frozenset(
        id(item)
        for item in items
        if type(item) is ndarray
        and item.base is None
        and item.nbytes >= least
        and sys.getrefcount(item) == 3
    )


def die_with_worker() -> None:
    """In a child this process forked: get SIGKILLed when this process dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _resolve(spec: Any) -> Callable[..., Any]:
    if isinstance(spec, str):
        target = resolve(spec)
        if not callable(target):
            raise TypeError(f"{spec!r} is not callable")
        return target  # type: ignore[no-any-return]
    if not callable(spec):
        raise TypeError(f"{spec!r} is not callable")
    return spec  # type: ignore[no-any-return]


def _retain_kept(borrowed: list[Any]) -> None:
    """Give arguments that the call kept (in a global, a session's model, the
    result) a reference of their own before the supervisor lets go of them."""
    while borrowed:
        array = borrowed.pop()
        # Referenced only by `array` and getrefcount's argument: not kept.
        if sys.getrefcount(array) > 2:
            retain(array)
        del array


class Worker:
    """State of one worker process: its socket and the functions it has seen."""

    def __init__(self, reader: protocol.FrameReader, supervisor_pid: int) -> None:
        self.reader = reader
        self.sock = reader.sock
        self.supervisor_pid = supervisor_pid
        self.functions: dict[int, Callable[..., Any]] = {}
        # Functions sent but not resolved yet (their import failed): the
        # supervisor sends each function once, so a later call retries here.
        self.unresolved: dict[int, bytes] = {}
        self.calls = 0
        #: How long to poll for the next call (the pool's ``spin_seconds``).
        self.spin_seconds = reader.spin_seconds
        #: Seconds from this worker's last reply to the next call: the
        #: caller's pace, which the next poll covers (``poll_after``).
        self.last_gap: float | None = None
        # Memory limits checked after each call (see _limits.py), if any.
        self.limits: Limits | None = None
        # The pool's session_initializer (encoded, resolved at first use), its
        # extra arguments, and the sessions it has run for in this process.
        self.session_initializer_blob: bytes | None = None
        self._session_initializer: Callable[..., Any] | None = None
        self.session_initargs: tuple[Any, ...] = ()
        self.sessions: set[str] = set()
        self.forward_logging = False
        self._logs_installed = False
        #: numpy's warm allocator is still to be installed (numpy not imported yet).
        self.warm_pending = False
        #: Whether numpy may allocate large arrays in the arena (results in place).
        self.lend_arena = True
        # User code may emit telemetry from its own threads while we answer.
        self._send_lock = threading.Lock()

    def send(self, tag: str, ident: int, value: Any, python_seconds: float | None = None) -> None:
        """Encode ``value`` (results: blocks we own travel with a reference) and send.

        Replies to calls (``python_seconds`` given) carry the time the function
        ran, and the CPU this thread answers from (whether the caller shares
        it decides whether the next call polls: see ``pool/_spin.py``).
        """
        frame = None
        cpu = _core.current_cpu() if python_seconds is not None else -1
        if type(value) in _NUMBERS and python_seconds is not None and tag == protocol.MSG_RESULT:
            # The number is a field of the frame: no pickle (see _compact).
            frame = protocol.pack_number_result(ident, value, python_seconds, cpu)
        encoded = None
        if frame is None:
            blob = codec.scalar_blob(value)  # most replies: None, a small scalar
            if blob is None:
                tag, encoded = self._encoded(tag, value)
                blob = encoded.blob
            if encoded is None and python_seconds is not None and tag == protocol.MSG_RESULT:
                frame = protocol.pack_result(ident, blob[0], python_seconds, cpu)
            else:
                body = blob if python_seconds is None else (blob, python_seconds, cpu)
                inband = encoded is None or codec.inband(blob)
                frame = protocol.pack(tag, ident, body, inband=inband)
        with self._send_lock:
            protocol.send_frame(self.sock, frame)
        # `encoded.keepalive` dies here: blocks in transit carry a reference
        # for the supervisor to adopt.
        del encoded

    def _encoded(self, tag: str, value: Any) -> tuple[str, codec.Encoded]:
        """``value`` encoded, or (a result that cannot be sent) the error
        that says why, with the tag to send it under."""
        # Held by handle_call's `result`, send's `value` and ours.
        fresh = _fresh_arrays(value, 3) if tag == protocol.MSG_RESULT else _NO_IDS
        if not fresh:
            return self._encoded_now(tag, value)
        lend_results(fresh)
        try:
            return self._encoded_now(tag, value)
        finally:
            lend_results(_NO_IDS)

    def _encoded_now(self, tag: str, value: Any) -> tuple[str, codec.Encoded]:
        try:
            # Sent right away: array data may go out of band, uncopied.
            encoded = codec.encode(value, receiver=self.supervisor_pid, snapshot=False)
            if encoded.size > protocol.MAX_FRAME_BYTES - _FRAME_HEADROOM:
                codec.drop_transfers(encoded.transfers)
                raise SerializationError(
                    f"the result needs {encoded.size} bytes inline, over the frame limit "
                    f"of {protocol.MAX_FRAME_BYTES} bytes; return arrays (they travel "
                    "through shared memory) or split the result",
                    direction="encode",
                    type_name=type(value).__name__,
                )
        except (SerializationError, SharedMemoryError) as exc:
            if tag != protocol.MSG_RESULT:
                raise
            # The result could not be sent (unpicklable, no room in shared
            # memory, too large): tell the caller, stay alive.
            tag = protocol.MSG_ERROR
            encoded = codec.encode(exception_to_record(_unsendable_result(exc, value)))
        return tag, encoded

    def forward_event(
        self, event: tuple[str, ...], measurements: Mapping[str, float], metadata: Mapping[str, Any]
    ) -> None:
        """Send a telemetry event to the supervisor's bus (plain values only)."""
        numbers = {
            str(key): float(value)
            for key, value in measurements.items()
            if isinstance(value, (int, float))
        }
        plain = {str(key): _plain(value) for key, value in metadata.items()}
        carrier = active_carrier()
        if carrier is not None and event[-1] == "start":
            plain["trace_context"] = carrier  # the supervisor's bridge parents the span
        frame = protocol.pack(protocol.MSG_EVENT, 0, (event, numbers, plain))
        with self._send_lock:
            protocol.send_frame(self.sock, frame)

    def install_log_forwarding(self) -> None:
        """Forward ``logging`` records once something here uses ``logging``.

        A worker whose code never imports logging does not pay for it: the
        handler goes on the root logger as soon as the module is loaded (by
        the initializer, a call, or the template's idle imports).
        """
        if self.forward_logging and not self._logs_installed and "logging" in sys.modules:
            from snakepit.worker import _logs

            _logs.install(self.forward_log)
            self._logs_installed = True

    def forward_log(self, record: dict[str, Any]) -> None:
        """Send a ``logging`` record to the supervisor (see ``_logs``)."""
        frame = protocol.pack(protocol.MSG_LOG, 0, record)
        with self._send_lock:
            protocol.send_frame(self.sock, frame)

    def handle_call(self, call_id: int, body: Any) -> None:
        borrowed: list[Any] = []
        started = 0.0
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = {}
        try:
            fn_id, fn_blob, args_blob, *extra = body
            trace_context = extra[0] if extra else None
            session = extra[1] if len(extra) > 1 else None
            # Poll for the next call after this one only while the pool is
            # not saturated (the supervisor says so with the call).
            self.reader.spin_seconds = self.poll_after(len(extra) < 3 or extra[2])
            fn = self.functions.get(fn_id)
            if fn is None:
                if fn_blob is not None:
                    self.unresolved[fn_id] = bytes(fn_blob)
                blob = self.unresolved.get(fn_id)
                if blob is None:
                    raise SerializationError(
                        f"function {fn_id} was never sent to this worker", direction="decode"
                    )
                fn = _resolve(codec.decode(blob))
                self.functions[fn_id] = fn
                del self.unresolved[fn_id]
            if session is not None and session not in self.sessions:
                self.start_session(session)
            # Arguments are borrowed: the supervisor keeps them alive for the call.
            args, kwargs = codec.decode(args_blob, borrowed=borrowed)
            if self.warm_pending and "numpy" in sys.modules:
                # numpy came with a call (not preloaded): its allocator now.
                self.warm_pending = False
                install_warm_buffers(lend=self.lend_arena)
            if self.forward_logging and not self._logs_installed:
                self.install_log_forwarding()  # the function's module may use logging
            started = time.perf_counter()
            if trace_context is None:
                result = fn(*args, **kwargs)
            else:
                with activated(trace_context):
                    result = fn(*args, **kwargs)
            python_seconds = time.perf_counter() - started
            # Its writes to received device memory land before the reply (and
            # before the arguments' mappings may close).
            settle_cuda()
            worker_output.flush_partial_lines()
            if borrowed:
                args, kwargs = (), {}  # what still refers to them, the call kept
                _retain_kept(borrowed)
            # Else the arguments are freed after the reply is out: freeing a
            # large one (a million objects: ~60 ms) delays nobody then.
        except Exception as exc:
            python_seconds = time.perf_counter() - started if started else 0.0
            with contextlib.suppress(Exception):
                settle_cuda()
            # A failed call may have kept arguments too (the traceback holding
            # them only makes that reference short-lived).
            _retain_kept(borrowed)
            worker_output.flush_partial_lines()
            record = exception_to_record(exc)
            attach_argument_shapes(record, args, kwargs)
            args, kwargs = (), {}
            if self.limits is not None:
                self.limits.annotate(exc, record)
                self._check_limits(exc)
            self.send(protocol.MSG_ERROR, call_id, record, python_seconds)
            return
        finally:
            self.calls += 1
            if self.calls % _PRUNE_EVERY == 0:
                prune_mappings()
        if self.limits is not None:
            self._check_limits(None)
        report_torch_memory()  # torch's allocator, if the calls use it (at most 1/s)
        self.send(protocol.MSG_RESULT, call_id, result, python_seconds)

    def poll_after(self, allowed: bool) -> float:
        """How long to poll for the next call after this one's reply: none
        unless the supervisor ``allowed`` it, else the pool's
        ``spin_seconds`` and the caller's last pause, when short
        (``protocol.poll_window``)."""
        return protocol.poll_window(self.spin_seconds, self.last_gap) if allowed else 0.0

    def _check_limits(self, error: BaseException | None) -> None:
        """Over a memory limit: ask to be replaced, before the reply (see _limits.py)."""
        assert self.limits is not None
        retire = self.limits.after_call(error)
        if retire is not None:
            frame = protocol.pack(protocol.MSG_RETIRE, 0, retire)
            with self._send_lock:
                protocol.send_frame(self.sock, frame)

    def start_session(self, name: str) -> None:
        """Run the session initializer for session ``name``, new to this process.

        If it raises, the call that brought the session fails with its error
        and the next call of the session runs it again.
        """
        if self.session_initializer_blob is not None:
            if self._session_initializer is None:
                self._session_initializer = _resolve(codec.decode(self.session_initializer_blob))
            self._session_initializer(name, *self.session_initargs)
        self.sessions.add(name)

    def serve(self) -> int:
        clock = time.perf_counter
        while True:
            waited = clock()
            payload = self.reader.read()
            self.last_gap = clock() - waited
            if payload is None:
                return 0  # supervisor closed the connection
            tag, ident, body = protocol.unpack(payload)
            # Nothing here may refer to the frame when the next one is read:
            # only then can its warm memory be reused for it.
            del payload
            if tag == protocol.MSG_CALL:
                self.handle_call(ident, body)
            elif tag == protocol.MSG_SHUTDOWN:
                return 0
            else:
                raise protocol.ProtocolError(f"unexpected message {tag!r}")
            del body


def _initialize(sock: socket.socket, supervisor_pid: int) -> Worker:
    reader = protocol.FrameReader(sock)
    payload = reader.read()
    if payload is None:
        os._exit(0)
    tag, slot, blob = protocol.unpack(payload)
    if tag != protocol.MSG_INIT:
        raise protocol.ProtocolError(f"expected {protocol.MSG_INIT!r}, got {tag!r}")
    config_blob, ledger_ref = blob
    config = codec.decode(config_blob)
    # The ledger is the supervisor's memory, lent for our whole life.
    install_ledger(LazyLedger(lambda: array_from_ref(ledger_ref, mode="borrow")))
    for entry in reversed(config.get("sys_path", [])):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    configure(threshold_bytes=config["threshold_bytes"])
    reader.spin_seconds = config.get("spin_seconds", 0.0)
    worker = Worker(reader, supervisor_pid)
    # Calls run in this thread. Without numpy (not preloaded), the first
    # call that brings it installs the allocator (see handle_call).
    worker.warm_pending = "numpy" not in sys.modules
    # Memory limits count this process's own memory (RLIMIT_DATA, private
    # resident pages): with one, large arrays stay out of shared memory.
    worker.lend_arena = not (config.get("max_memory") or config.get("memory_limit"))
    if not worker.warm_pending:
        install_warm_buffers(lend=worker.lend_arena)
    worker.spin_seconds = reader.spin_seconds
    if config.get("forward_events", True):
        # Events raised here (the ML helpers in user code, nested pools) reach
        # the supervisor's handlers, tagged with this worker's id there.
        telemetry_bus.set_forwarder(worker.forward_event)
    if config.get("label_output", True) and type(slot) is int:
        worker_output.install(slot)
    worker.session_initializer_blob = config.get("session_initializer")
    worker.session_initargs = tuple(config.get("session_initargs", ()))
    # Before the initializer: what it logs reaches the supervisor too.
    worker.forward_logging = bool(config.get("forward_logging", True))
    worker.install_log_forwarding()
    if config.get("cwd") or config.get("max_memory") or config.get("memory_limit"):
        try:
            from snakepit.worker import _limits

            worker.limits = _limits.apply(config)
        except BaseException as exc:
            worker.send(protocol.MSG_INIT_FAILED, os.getpid(), exception_to_record(exc))
            os._exit(protocol.EXIT_INIT_FAILED)
    initializer = config.get("initializer")
    if initializer is not None:
        try:
            fn = _resolve(codec.decode(initializer))
            fn(*config.get("initargs", ()))
        except BaseException as exc:
            worker.send(protocol.MSG_INIT_FAILED, os.getpid(), exception_to_record(exc))
            os._exit(protocol.EXIT_INIT_FAILED)
    worker.send(protocol.MSG_READY, os.getpid(), None)
    return worker


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m snakepit.worker``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m snakepit.worker <fd> <supervisor pid> <fault fd>", file=sys.stderr)
        return 2
    fd, supervisor_pid, fault_fd = int(args[0]), int(args[1]), int(args[2])
    die_with_parent(supervisor_pid)
    return run(fd, supervisor_pid, fault_fd)


def run(fd: int, supervisor_pid: int, fault_fd: int) -> int:
    """Serve the supervisor on socket ``fd`` until it says stop; the exit status."""
    # Where native code crashed, or where a call that timed out was stuck, goes
    # to the supervisor's fault log; the supervisor's terminate() still ends us
    # (after the dump) even inside a C call.
    fault_log = os.fdopen(fault_fd, "w")
    faulthandler.enable(file=fault_log, all_threads=True)
    faulthandler.register(signal.SIGTERM, file=fault_log, all_threads=True, chain=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    worker = _initialize(sock, supervisor_pid)
    # From here SIGINT interrupts the running call: Pool.cancel sends it so
    # the call's finally blocks and context managers unwind before we end.
    signal.signal(signal.SIGINT, protocol.interrupt_call)
    try:
        code = worker.serve()
        # Device memory we exported dies with us: give its holders a moment.
        drain_cuda()
        return code
    except KeyboardInterrupt:
        _end_interrupted()


def _end_interrupted() -> NoReturn:
    """End as an interrupted process does (killed by SIGINT), quietly: the
    supervisor asked for it, and its call's future already says so."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(128 + signal.SIGINT)  # not reached: the signal ended us


def _unsendable_result(exc: BaseException, value: Any) -> BaseException:
    """The error of a call whose result could not be sent: it names the
    result, and advice about results, not arguments."""
    from snakepit.errors import _advice

    if not isinstance(exc, SerializationError) or exc.__cause__ is None:
        # No room in shared memory, or over the frame limit: its own advice fits.
        return exc
    error = SerializationError(
        f"the call returned a {type(value).__name__}, which cannot be pickled to send it "
        f"back: {exc.__cause__}",
        direction="encode",
        type_name=type(value).__name__,
        suggestion=_advice.UNSENDABLE_RESULT,
    )
    error.__cause__ = exc.__cause__
    return error
