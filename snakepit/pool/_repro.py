"""Write a standalone script that reproduces a failed call.

:func:`write_repro` creates ``<directory>/snakepit-repro-<time>-<id>/`` holding
``call.pkl`` (the function, the arguments by value and the original error) and
``repro.py``, which loads it and makes the call again in plain Python, with no
pool and no snakepit needed (unless the arguments themselves are snakepit
objects), so the failure can be debugged with ``python repro.py`` or
``python -m pdb repro.py``.
"""

from __future__ import annotations

import datetime
import logging
import os
import pickle
import re
import secrets
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
import numpy as np

from snakepit._wire import codec
from snakepit._wire._pickling import resolve, two_pass
from snakepit.errors import CircuitOpenError, WorkerUnavailableError
from snakepit.zero_copy import TensorRef

if TYPE_CHECKING:
    from ._calls import Call

#: Version of the ``call.pkl`` layout.
FORMAT = 1
PREFIX = "snakepit-repro-"
_CALL_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
_FUNCTION_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _function_entry(function: Callable[..., Any] | str) -> dict[str, Any]:
    """``{"ref": "module:qualname"}`` if importable as such, else the function pickled."""
    if isinstance(function, str):
        if not _FUNCTION_REF.fullmatch(function):
            raise ValueError(f"function must be a callable or 'module:qualname', not {function!r}")
        return {"ref": function}
    if not callable(function):
        raise TypeError(f"function must be callable or a 'module:qualname' string: {function!r}")
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if (
        isinstance(module, str)
        and isinstance(qualname, str)
        and module != "__main__"
        and "<" not in qualname
    ):
        ref = f"{module}:{qualname}"
        try:
            if resolve(ref) is function:
                return {"ref": ref}
        except Exception:
            pass
    return {"pickled": cloudpickle.dumps(function)}


def _plain_array(obj: Any) -> np.ndarray[Any, Any] | None:
    """A plain in-memory copy of arrays that would not pickle by value."""
    if isinstance(obj, TensorRef):
        try:
            return np.array(obj.to_numpy(), copy=True)
        except Exception:
            return None  # the block is gone: pickle the reference as it is
    if isinstance(obj, np.ndarray) and type(obj) is not np.ndarray:
        return np.array(obj, copy=True, subok=False)
    return None


class _ByValuePickler(pickle.Pickler):
    """Pickles shared arrays and tensor references as plain array copies."""

    def reducer_override(self, obj: Any) -> Any:
        array = _plain_array(obj)
        if array is None:
            return NotImplemented
        return (np.array, (array,))


class _ByValueCloudPickler(cloudpickle.Pickler):  # type: ignore[misc]
    """The same, for arguments only cloudpickle can handle (lambdas, local classes)."""

    def reducer_override(self, obj: Any) -> Any:
        array = _plain_array(obj)
        if array is None:
            return super().reducer_override(obj)
        return (np.array, (array,))


def _dumps(payload: Any) -> bytes:
    # Lambdas and local classes fail the C pickler: cloudpickle pickles those by value.
    try:
        data, _ = two_pass(
            payload,
            lambda file: _ByValuePickler(file, protocol=pickle.HIGHEST_PROTOCOL),
            lambda file: _ByValueCloudPickler(file, protocol=pickle.HIGHEST_PROTOCOL),
        )
    except Exception as exc:
        raise pickle.PicklingError(f"the call's arguments cannot be pickled: {exc}") from exc
    return data


def _error_entry(error: BaseException | str) -> dict[str, str]:
    if isinstance(error, str):
        return {"type": "", "message": error, "text": error, "traceback": ""}
    cls = type(error)
    remote = getattr(error, "remote_type", None)
    python_type = getattr(error, "python_type", None)
    if isinstance(remote, str) and remote:
        qualified = remote
        message = getattr(error, "message", None)
        if not isinstance(message, str):
            message = _text(error)
    else:
        qualified = f"{cls.__module__}.{cls.__qualname__}"
        message = _text(error)
    short = python_type if isinstance(python_type, str) else qualified.rsplit(".", 1)[-1]
    traceback_text = getattr(error, "remote_traceback", None)
    return {
        "type": qualified,
        "message": message,
        "text": f"{short}: {message}" if message else short,
        "traceback": traceback_text if isinstance(traceback_text, str) else "",
    }


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__}: str() failed>"


def _comment(text: str, width: int = 2000) -> list[str]:
    """Lines of ``text`` as safe comment lines (no control characters)."""
    lines = []
    for line in (text or "").splitlines() or [""]:
        lines.append(f"#   {_one_line(line, width)}".rstrip())
    return lines


def _one_line(text: str, width: int = 200) -> str:
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)[:width]


def _extra_paths() -> list[str]:
    """``sys.path`` entries of this process outside the Python installation."""
    prefixes = {os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix} if p}
    paths = [os.getcwd()]
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if any(real == p or real.startswith(p + os.sep) for p in prefixes):
            continue
        paths.append(real)
    return list(dict.fromkeys(paths))


_SCRIPT = '''\
#!/usr/bin/env python3
# Reproduction of a failed snakepit call, written by snakepit.pool.write_repro.
#
# Written:  {written}
# Function: {function}
# Call id:  {call_id}
# Error:
{error}
#
# Run it with plain Python (no pool, no snakepit needed to make the call):
#     python repro.py            or      python -m pdb repro.py
# The function, its arguments and keyword arguments (by value) are in call.pkl
# beside this file. Exit status: 1 if the call raised (or its result cannot
# be pickled, as a worker must to send it back), 0 if it did not.
"""Re-run the failed call recorded in call.pkl."""

import importlib
import os
import pickle
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def load():
    with open(os.path.join(HERE, "call.pkl"), "rb") as f:
        paths = pickle.load(f)  # written first so the arguments' modules import
        for path in paths:
            if path not in sys.path:
                sys.path.append(path)
        return pickle.load(f)


def resolve(ref):
    module_name, _, qualname = ref.partition(":")
    target = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def main():
    call = load()
    entry = call["function"]
    function = resolve(entry["ref"]) if "ref" in entry else pickle.loads(entry["pickled"])
    original = call["error"]
    print("calling", entry.get("ref", getattr(function, "__qualname__", function)), file=sys.stderr)
    try:
        result = function(*call["args"], **call["kwargs"])
    except BaseException as exc:
        traceback.print_exc()
        raised = type(exc).__module__ + "." + type(exc).__qualname__
        if original["type"] and raised != original["type"]:
            print("note: the original call raised " + original["text"], file=sys.stderr)
        return 1
    try:
        # A worker sends its result back pickled: a result that cannot be
        # pickled fails the call even though the function returned.
        try:
            import cloudpickle as sender
        except ImportError:
            sender = pickle
        sender.dumps(result, protocol=5)
    except Exception:
        traceback.print_exc()
        print("the call returned, but its result cannot be pickled:", repr(result)[:200],
              file=sys.stderr)
        return 1
    print("the call returned without error:", repr(result)[:200], file=sys.stderr)
    print("the original call raised " + original["text"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _open_dir_nofollow(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)


def _write_file(dir_fd: int, name: str, data: bytes) -> None:
    fd = os.open(
        name,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
        0o600,
        dir_fd=dir_fd,
    )
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _subdir_name(now: datetime.datetime, call_id: str) -> str:
    return f"{PREFIX}{now.strftime('%Y%m%dT%H%M%S%f')}-{call_id}"


def write_repro(
    directory: str | os.PathLike[str],
    *,
    function: Callable[..., Any] | str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    error: BaseException | str,
    call_id: int | str | None = None,
) -> Path:
    """Write a script reproducing a failed call; returns the new directory.

    Creates ``<directory>/snakepit-repro-<timestamp>-<call_id or random>/``
    (mode 0700) with ``call.pkl`` and ``repro.py`` (mode 0600); ``python
    repro.py`` there makes the same call and prints the traceback. The
    function is stored as ``"module:qualname"`` when importable by that name,
    else pickled by value with cloudpickle; arguments are pickled by value
    (shared-memory arrays and tensor references as plain numpy copies).

    Args:
        directory: Where to write; created (0700) if missing.
        function: The callable called, or its ``"module:qualname"``.
        args: Positional arguments of the call.
        kwargs: Keyword arguments of the call.
        error: The exception the call raised (or its text).
        call_id: Names the directory; letters, digits, ``_ - .`` only.

    Raises:
        ValueError: ``call_id`` or ``function`` is malformed, or the target
            would lie outside ``directory``.
        FileExistsError: the target directory (or a link there) exists.
        pickle.PicklingError: the arguments cannot be pickled.
        OSError: the files cannot be written.
    """
    tag = secrets.token_hex(4) if call_id is None else str(call_id)
    if not _CALL_ID.fullmatch(tag):
        raise ValueError(f"call_id {call_id!r} may only hold letters, digits, '_', '-' and '.'")
    now = datetime.datetime.now(datetime.timezone.utc)
    entry = _function_entry(function)
    error_entry = _error_entry(error)
    payload = {
        "format": FORMAT,
        "function": entry,
        "args": tuple(args),
        "kwargs": dict(kwargs or {}),
        "error": error_entry,
        "call_id": call_id,
        "written": now.isoformat(),
    }
    # The search path goes first so that unpickling the call can import its modules.
    data = pickle.dumps(_extra_paths(), protocol=pickle.HIGHEST_PROTOCOL) + _dumps(payload)
    script = _SCRIPT.format(
        written=now.isoformat(timespec="seconds"),
        function=_one_line(entry.get("ref", "<pickled by value with cloudpickle>")),
        call_id=tag if call_id is not None else "-",
        error="\n".join(_comment(error_entry["text"])),
    )

    base = Path(directory).resolve()
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = base / _subdir_name(now, tag)
    if target.parent != base or not target.name.startswith(PREFIX):
        raise ValueError(f"refusing to write {target} outside {base}")
    if target.is_symlink():
        raise FileExistsError(f"refusing to write through the symbolic link {target}")
    os.mkdir(target, 0o700)  # fails if anything (a link included) is there already
    dir_fd = _open_dir_nofollow(target)
    try:
        if not stat.S_ISDIR(os.fstat(dir_fd).st_mode):  # pragma: no cover - O_DIRECTORY
            raise FileExistsError(f"{target} is not a directory")
        _write_file(dir_fd, "call.pkl", data)
        _write_file(dir_fd, "repro.py", script.encode())
    finally:
        os.close(dir_fd)
    return target


def write_call_repro(directory: Path, call_id: str, call: Call, error: BaseException) -> None:
    """Leave a script reproducing a pool call that failed in a worker.

    Adds a note naming the script to ``error``. A reproduction is a courtesy:
    whatever goes wrong here is logged and never changes the call's outcome.
    """
    if not call.dispatched or isinstance(error, (WorkerUnavailableError, CircuitOpenError)):
        # Never reached a worker (refused, unsendable, shut down): nothing to
        # reproduce. Every error of a call that ran counts: a ShapeError or an
        # OutOfMemoryError as much as a crash.
        return
    try:
        function = codec.decode(call.fn_blob)
        args, kwargs = codec.decode(call.args_blob)
        path = write_repro(
            directory, function=function, args=args, kwargs=kwargs, error=error, call_id=call_id
        )
    except Exception:
        logging.getLogger(__name__).warning(
            "could not write a repro for call %s", call_id, exc_info=True
        )
        return
    error.add_note(f"snakepit: reproduce with: python {path / 'repro.py'}")
