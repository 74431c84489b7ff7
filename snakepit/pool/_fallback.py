"""CPU fallback for idempotent calls that run out of GPU memory (``Pool(oom_fallback="cpu")``).

Opted into per pool, because running a call again elsewhere is only safe
for calls marked ``idempotent=True`` and only useful for functions that run
on whatever device their worker has (``torch.cuda.is_available()`` is False
in a CPU worker, whose ``CUDA_VISIBLE_DEVICES`` hides every GPU). A call
whose attempt on a GPU worker raised :class:`~snakepit.errors.OutOfMemoryError`
for that GPU runs once more on one of the pool's CPU workers, at once (the
GPU is not expected to have more memory a moment later, so no backoff), and
the ``("snakepit", "call", "fallback")`` event records why. The pool must
have a CPU worker (``device=["cuda:0", "cpu"]``); arguments travel again as
they did, so CUDA tensors among them cannot be opened there: pass host data
and move it to the GPU in the function.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from snakepit.errors import OutOfMemoryError
from snakepit.hardware import parse_device
from snakepit.telemetry._bus import enabled, execute
from snakepit.telemetry._events import CALL_FALLBACK

if TYPE_CHECKING:
    from ._calls import Call

OomFallbackTarget = Literal["cpu"]

__all__ = ["OomFallback", "OomFallbackTarget", "install", "oom_fallback", "take"]

# Supervisor -> its fallback (the supervisor itself knows nothing of it).
_installed: weakref.WeakKeyDictionary[Any, OomFallback] = weakref.WeakKeyDictionary()


def install(sup: Any, fallback: OomFallback | None) -> None:
    """Give supervisor ``sup`` its pool's fallback (before it starts)."""
    if fallback is not None:
        _installed[sup] = fallback


def take(sup: Any, call: Call, error: BaseException) -> bool:
    """Run ``call`` again on ``sup``'s fallback device if one applies; True if it will."""
    fallback = _installed.get(sup)
    return fallback is not None and fallback.take(sup, call, error)


def oom_fallback(target: str | None, devices: Sequence[str]) -> OomFallback | None:
    """The fallback a pool of ``devices`` asked for (None: none).

    Raises ValueError for a target other than ``"cpu"``, or a pool without a
    CPU worker to fall back to.
    """
    if target is None:
        return None
    if target != "cpu":
        raise ValueError(f"oom_fallback must be None or 'cpu', got {target!r}")
    kinds = {parse_device(device).kind for device in devices}
    if "cpu" not in kinds:
        raise ValueError(
            "oom_fallback='cpu' needs a CPU worker to fall back to: add 'cpu' to device "
            f"(for example device=[{', '.join(map(repr, devices))}, 'cpu'])"
        )
    if not kinds & {"cuda", "auto", "rocm"}:
        raise ValueError("oom_fallback='cpu' needs GPU workers to fall back from")
    return OomFallback("cpu")


@dataclasses.dataclass(frozen=True)
class OomFallback:
    """Where a call that ran out of GPU memory runs again."""

    target: OomFallbackTarget = "cpu"

    def applies(self, call: Call, error: BaseException, device: str | None) -> bool:
        """Whether ``call``'s attempt on a worker of ``device`` falls back after ``error``."""
        if not call.idempotent or not isinstance(error, OutOfMemoryError):
            return False
        if call.device == self.target or device is None:
            return False  # already the fallback (or it never reached a worker)
        gpu = parse_device(device).kind in ("cuda", "rocm")
        return gpu and (error.device is None or error.device != "cpu")

    def take(self, sup: Any, call: Call, error: BaseException) -> bool:
        """Run ``call`` again on the fallback device if it applies; True if it will."""
        handle = sup.handles[call.worker_id] if call.worker_id is not None else None
        device = handle.device if handle is not None else None
        if sup.stopping or not self.applies(call, error, device):
            return False
        if enabled(CALL_FALLBACK):
            execute(
                CALL_FALLBACK,
                {"attempt": call.attempt + 1},
                {
                    "call_id": call.call_id,
                    "pool": sup.name,
                    "from_device": device,
                    "to_device": self.target,
                    "reason": str(error).split("\n", 1)[0],
                },
            )
        with sup.lock:
            if sup.stopping:
                return False
            again = dataclasses.replace(
                call, attempt=call.attempt + 1, deadline=None, device=self.target
            )
            sup.counters["retries"] += 1
            sup._retrying[again.call_id] = again
            sup.timers.schedule_locked(0.0, functools.partial(sup._run_retry, again))
        return True
