"""Process-wide display settings of snakepit errors.

Kept in its own module, importing nothing, so that the hierarchy can read the
settings without depending on anything else.
"""

from __future__ import annotations

import dataclasses
import threading

__all__ = ["ErrorSettings", "configure", "settings"]


@dataclasses.dataclass(frozen=True)
class ErrorSettings:
    """How snakepit errors present themselves.

    Attributes:
        show_remote_traceback: Chain the worker's traceback to errors that
            came from a worker (as ``__cause__``, a :class:`RemoteTraceback`),
            so the standard traceback printout shows it above the local one.
            Read when the error is built or unpickled.
        show_suggestions: End ``str(error)`` with ``Suggestion: ...`` when the
            error has a suggestion. Read every time the error is formatted.
    """

    show_remote_traceback: bool = True
    show_suggestions: bool = True


_lock = threading.Lock()
_current = ErrorSettings()


def settings() -> ErrorSettings:
    """The settings in force now."""
    return _current


def configure(
    show_remote_traceback: bool | None = None,
    show_suggestions: bool | None = None,
) -> ErrorSettings:
    """Change how snakepit errors are shown; ``None`` leaves a setting as it is.

    Args:
        show_remote_traceback: Chain the worker's traceback (a
            :class:`RemoteTraceback`) as ``__cause__`` of errors from workers,
            so printed tracebacks show it. Applies to errors received (or
            unpickled) after the call; the text stays in ``remote_traceback``
            either way.
        show_suggestions: Append ``Suggestion: ...`` to ``str(error)``. Applies
            at once, to existing errors too; ``error.suggestion`` stays set.

    Returns:
        The previous settings, so a caller can restore them with
        ``configure(**dataclasses.asdict(previous))``.
    """
    global _current
    with _lock:
        previous = _current
        changes: dict[str, bool] = {}
        if show_remote_traceback is not None:
            changes["show_remote_traceback"] = bool(show_remote_traceback)
        if show_suggestions is not None:
            changes["show_suggestions"] = bool(show_suggestions)
        _current = dataclasses.replace(previous, **changes)
    return previous
