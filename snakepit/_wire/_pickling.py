"""Pickling helpers shared by the codec, the worker and the pool.

* :func:`two_pass`: pickle with the C pickler first and, only if that fails,
  again with cloudpickle (functions from ``__main__``, lambdas, closures).
  Most payloads need nothing more than the C pickler, which is several
  times faster; the retry is what makes everything else work.
* :func:`resolve` and :func:`name_of`: functions named ``"module:qualname"``.
"""

from __future__ import annotations

import functools
import importlib
import io
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

_P = TypeVar("_P", bound=pickle.Pickler)


def two_pass(
    obj: Any,
    fast: Callable[[io.BytesIO], _P],
    cloud: Callable[[io.BytesIO], _P],
    *,
    passthrough: tuple[type[BaseException], ...] = (),
    cleanup: Callable[[_P], None] | None = None,
) -> tuple[bytes, _P]:
    """Pickle ``obj`` with ``fast(file)``; if that raises, with ``cloud(file)``.

    Returns the pickle and the pickler that made it (its state, such as the
    codec's kept arrays, belongs to the caller). ``cleanup`` runs on a pickler
    that failed. An exception of a ``passthrough`` type leaves at once; if
    both passes fail, the second pass's exception is raised.
    """
    failure: Exception | None = None
    for make in (fast, cloud):
        buffer = io.BytesIO()
        pickler = make(buffer)
        try:
            pickler.dump(obj)
        except Exception as exc:
            if cleanup is not None:
                cleanup(pickler)
            if isinstance(exc, passthrough):
                raise
            failure = exc
            continue
        return buffer.getvalue(), pickler
    assert failure is not None
    raise failure


def resolve(spec: str) -> Any:
    """The object a ``"module:qualname"`` string names (importing the module).

    ValueError for a string of another form; ImportError or AttributeError
    when the module or the name does not exist.
    """
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"function spec {spec!r} is not of the form 'module:function'")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def name_of(fn: Callable[..., Any] | str) -> str:
    """``"module:qualname"`` of a function (of the function a partial wraps)."""
    if isinstance(fn, str):
        return fn
    target = fn.func if isinstance(fn, functools.partial) else fn
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}:{qualname}"
