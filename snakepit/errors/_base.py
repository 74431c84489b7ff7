"""The root of the hierarchy: :class:`SnakepitError` and what every error shares.

* The constructor. Every error class is a :mod:`dataclasses` dataclass: the
  message comes first and positional, every structured field is
  keyword-only. A field whose value needs normalising (a list of ints to a
  shape tuple, ``"3"`` to ``3``) is normalised in the class's
  ``__post_init__``; ``SnakepitError.__post_init__`` runs last and fills in
  the message and the suggestion from the fields when the caller gave none.
* The registry. :func:`error_class` turns a class body into an error class
  and records it by name; the record transport (:mod:`snakepit.errors._remote`)
  looks classes up there, so the list of classes is written once.
* Pickling. One ``__reduce__`` for every class, because the keyword-only
  constructors cannot be called positionally as default exception pickling
  would; it also carries the "catchable as ``KeyError``" classes made by
  :func:`remote_class`, which are not importable by name.
* The remote traceback, chained as ``__cause__`` (:class:`RemoteTraceback`).

See ``docs/errors.md`` for what users see of all this. The module imports
nothing from snakepit but the display settings, so every other layer
(including the Cython core) may depend on it.
"""

from __future__ import annotations

import builtins
import dataclasses
import sys
import threading
import types
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY
from typing import Any, ClassVar, TypeVar, cast

from snakepit.errors._config import settings

_E = TypeVar("_E", bound="SnakepitError")
_T = TypeVar("_T")

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - 3.10: it only informs type checkers, so a no-op will do

    def dataclass_transform(**_: object) -> Callable[[_T], _T]:
        return lambda obj: obj


__all__ = [
    "RemoteTraceback",
    "SnakepitError",
    "builtin_exception_type",
    "error_class",
    "registered_classes",
    "remote_class",
]

# Where the classes are shown, pickled and documented: tracebacks print
# "snakepit.errors.ShapeError", not the private module that defines it.
_PUBLIC_MODULE = "snakepit.errors"

_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set on classes created by Python code

_REGISTRY: dict[str, type[SnakepitError]] = {}
_REGISTRY_VIEW = types.MappingProxyType(_REGISTRY)


def _register(cls: type[_E]) -> type[_E]:
    if cls.__name__ in _REGISTRY:
        raise TypeError(f"two snakepit error classes are called {cls.__name__}")
    _REGISTRY[cls.__name__] = cls
    # Set after the dataclass is built: dataclasses resolves the string
    # annotations (ClassVar, KW_ONLY) in the module named by __module__.
    cls.__module__ = _PUBLIC_MODULE
    return cls


def registered_classes() -> Mapping[str, type[SnakepitError]]:
    """Every error class made by :func:`error_class` (and the root), by class name.

    A read-only live view: classes defined later appear in it too.
    """
    return _REGISTRY_VIEW


@dataclass_transform(kw_only_default=True, eq_default=False, field_specifiers=(dataclasses.field,))
def error_class(cls: type[_E]) -> type[_E]:
    """Make ``cls`` an error class: constructor from its fields, registered by name.

    ``SnakepitError`` already holds the positional ``message``, so every field
    a subclass adds is keyword-only.
    """
    built = dataclasses.dataclass(kw_only=True, eq=False, repr=False, match_args=False)(cls)
    return _register(built)


def _with_suggestion(text: str, suggestion: str | None) -> str:
    if suggestion and settings().show_suggestions:
        return f"{text}\nSuggestion: {suggestion}"
    return text


# eq=False: exceptions compare and hash by identity. repr/match_args=False: the
# hand-written __repr__ and __match_args__ below (and in subclasses) stay.
@dataclasses.dataclass(eq=False, repr=False, match_args=False)
class SnakepitError(Exception):
    """Base class of every error snakepit raises.

    Attributes:
        message: The human-readable message (without the suggestion). Pass
            ``None`` (or nothing) to have it built from the fields; it is a
            ``str`` once the error exists.
        suggestion: A concrete next step for the user, or ``None``.
        remote_traceback: The formatted traceback from the worker process when
            the error happened there, else ``None``.
        remote_type: Qualified name (``module.Qual``) of the original remote
            exception type when the error happened in a worker, else ``None``.
        remote_causes: The remote ``__cause__``/``__context__`` chain, outermost
            first, each rebuilt as a snakepit error (set when a worker's error
            record is received; empty otherwise).

    When ``remote_traceback`` is set (and ``configure(show_remote_traceback=True)``,
    the default), a :class:`RemoteTraceback` holding it is chained as
    ``__cause__``, so a printed traceback shows the worker's frames above the
    local ones, as :mod:`concurrent.futures` does for process pools.
    """

    __match_args__: ClassVar[tuple[str, ...]] = ("message",)
    # The name remote_class() gives "this class, also catchable as builtin".
    _mixed_name: ClassVar[str] = "{base}[{builtin}]"

    message: str | None = None
    _: KW_ONLY
    suggestion: str | None = None
    remote_traceback: str | None = None
    remote_type: str | None = None
    remote_causes: tuple[SnakepitError, ...] = dataclasses.field(default=(), init=False)

    def __post_init__(self) -> None:
        # The defaults are built from the subclass fields, so they can only be
        # filled in once every subclass __post_init__ has normalised its own.
        if self.message is None:
            self.message = self._default_message()
        if self.suggestion is None:
            self.suggestion = self._default_suggestion()
        super().__init__(self.message)
        self._attach_remote_traceback()

    def _attach_remote_traceback(self) -> None:
        """Chain a :class:`RemoteTraceback` as ``__cause__`` (if enabled and free)."""
        if (
            self.remote_traceback
            and self.__cause__ is None
            and settings().show_remote_traceback
            and not isinstance(self, RemoteTraceback)
        ):
            self.__cause__ = RemoteTraceback(text=self.remote_traceback)

    def _default_message(self) -> str:
        """Message used when the caller gives none; subclasses build it from fields."""
        return type(self).__name__

    def _default_suggestion(self) -> str | None:
        """Suggestion used when the caller gives none; subclasses derive it from fields."""
        return None

    @property
    def fields(self) -> dict[str, object]:
        """The structured fields named in ``__match_args__``, as a dict."""
        return {name: getattr(self, name, None) for name in type(self).__match_args__}

    def __str__(self) -> str:
        return _with_suggestion(str(self.message), self.suggestion)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The whole instance dict travels (fields, suggestion, remote data and any
        # __notes__), so no subclass needs its own pickling code. Dynamically
        # created "catchable as KeyError" classes are not importable by name, so
        # they travel as the (base, builtin) pair that recreates them.
        return (_reconstruct, (_class_spec(type(self)), self.args, dict(self.__dict__)))


_register(SnakepitError)


@error_class
class RemoteTraceback(SnakepitError):  # noqa: N818 - a traceback carrier, never raised
    """The formatted traceback of an error raised in a worker process.

    Never raised: it is chained as ``__cause__`` of the error the supervisor
    raises, so the standard traceback printout shows the remote frames,
    followed by "The above exception was the direct cause of the following
    exception" and the local frames (what :mod:`concurrent.futures` does
    with its ``_RemoteTraceback``). See
    :func:`snakepit.errors.configure` to turn it off.

    Attributes:
        text: The remote traceback as formatted in the worker.
    """

    __match_args__ = ("text",)

    text: str = ""

    def _default_message(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


# ------------------------------------------------------------------- pickling


def _reconstruct(
    spec: type[SnakepitError] | tuple[type[SnakepitError], type[BaseException]],
    args: tuple[Any, ...],
    state: dict[str, Any],
) -> SnakepitError:
    """Unpickling helper: rebuild an error without calling its ``__init__``."""
    cls = remote_class(spec[0], spec[1]) if isinstance(spec, tuple) else spec
    if not (isinstance(cls, type) and issubclass(cls, SnakepitError)):
        raise TypeError(f"not a SnakepitError class: {cls!r}")
    # Use the __new__ that instantiation itself would use: that of the nearest
    # static (non-heap) base along __base__. Plain attribute lookup can find a
    # different built-in's __new__ in the MRO (MemoryError's, for
    # RemoteMemoryError), which CPython rejects as unsafe.
    static: type = cls
    while static.__flags__ & _HEAPTYPE and static.__base__ is not None:
        static = static.__base__
    obj: SnakepitError = static.__new__(cls, *args)
    BaseException.__init__(obj, *args)
    obj.__dict__.update(state)
    obj._attach_remote_traceback()
    return obj


# ------------------------------------------------------------ catchable builtins

# Built-ins that cannot be mixed into a wrapper: their constructors or
# attributes carry protocol meaning (StopIteration drives iteration, groups
# need a list of exceptions, Unicode errors need five positional arguments).
_UNMIXABLE: frozenset[str] = frozenset(
    {
        "StopIteration",
        "StopAsyncIteration",
        "BaseExceptionGroup",
        "ExceptionGroup",
        "UnicodeDecodeError",
        "UnicodeEncodeError",
        "UnicodeTranslateError",
    }
)

_REMOTE_CLASSES: dict[tuple[type[SnakepitError], type[BaseException]], type[SnakepitError]] = {}
_REMOTE_SPECS: dict[type[SnakepitError], tuple[type[SnakepitError], type[BaseException]]] = {}
_REMOTE_LOCK = threading.Lock()


def builtin_exception_type(name: str) -> type[Exception] | None:
    """The built-in exception class a remote error may also be caught as.

    ``name`` is a short built-in name (``KeyError``). Unmixable built-ins are
    replaced by their nearest mixable base (``UnicodeDecodeError`` becomes
    ``UnicodeError``); unknown names and ``Exception`` itself give ``None``.
    """
    obj = getattr(builtins, name, None)
    if not (isinstance(obj, type) and issubclass(obj, Exception)):
        return None
    for cand in obj.__mro__:
        if cand is Exception:
            return None
        if (
            isinstance(cand, type)
            and issubclass(cand, Exception)
            and cand.__module__ == "builtins"
            and cand.__name__ not in _UNMIXABLE
        ):
            return cand
    return None  # pragma: no cover - every Exception MRO reaches Exception


def _class_spec(
    cls: type[SnakepitError],
) -> type[SnakepitError] | tuple[type[SnakepitError], type[BaseException]]:
    return _REMOTE_SPECS.get(cls, cls)


def remote_class(base: type[_E], builtin: type[BaseException] | None) -> type[_E]:
    """A subclass of ``base`` that is also an instance of the built-in ``builtin``.

    ``remote_class(PythonError, KeyError)`` is ``RemoteKeyError``, so a
    ``KeyError`` raised in a worker can still be caught with ``except KeyError``.
    Classes are created once per pair and cached; instances pickle through the
    pair, so the receiving process recreates the same class. When the pair
    cannot be combined (``builtin`` is ``None``, ``Exception``, already a base,
    or not a mixable built-in) ``base`` itself is returned.
    """
    if builtin is None or builtin is Exception or issubclass(base, builtin):
        return base
    allowed = builtin_exception_type(builtin.__name__)
    if allowed is None or allowed is not builtin:
        return base
    key = (cast("type[SnakepitError]", base), allowed)
    with _REMOTE_LOCK:
        cached = _REMOTE_CLASSES.get(key)
        if cached is not None:
            return cast("type[_E]", cached)
        name = base._mixed_name.format(base=base.__name__, builtin=allowed.__name__)
        try:
            created = type(
                name,
                (base, allowed),
                {
                    "__module__": base.__module__,
                    "__qualname__": name,
                    "__doc__": (
                        f"{base.__name__} raised remotely as {allowed.__name__}; "
                        f"catchable as either."
                    ),
                },
            )
        except TypeError:
            # Incompatible instance layouts: fall back to the plain class.
            return base
        _REMOTE_CLASSES[key] = created
        _REMOTE_SPECS[created] = key
        return cast("type[_E]", created)
