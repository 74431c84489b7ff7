"""Read shapes, dtypes, devices and memory figures out of error messages.

Every pattern matches a message format that NumPy, PyTorch, pandas,
scikit-learn, PyArrow, JAX/XLA or CuPy really produce (the corpus in
``tests/errors/corpus/`` raises them); nothing imports those libraries:
the exception type is known only by its name and module. The patterns live
by subject in ``_parse_memory``, ``_parse_devices``, ``_parse_dtypes`` and
``_parse_shapes``; this module holds the order in which the subjects are
tried, which is the classification.

The result is a plain, JSON-safe dict (see :func:`parse_context`), so the
worker can send it and the supervisor can trust nothing but its types.
"""

from __future__ import annotations

from snakepit.errors._parse_devices import parse_devices, parse_unavailable
from snakepit.errors._parse_dtypes import parse_dtypes
from snakepit.errors._parse_memory import is_oom, parse_oom
from snakepit.errors._parse_shapes import parse_shapes

__all__ = ["parse_context"]

# Library messages are short and name their shapes early; bounding the text
# keeps every pattern cheap on a pathological multi-megabyte message.
_PARSE_CHARS = 8000


def parse_context(
    message: str,
    python_type: str | None = None,
    *,
    qualified_type: str | None = None,
    builtin_type: str | None = None,
) -> dict[str, object]:
    """Parse shapes, dtypes, devices and OOM figures out of an error message.

    Args:
        message: The exception's message.
        python_type: Short name of its type (``RuntimeError``, ``_ArrayMemoryError``).
        qualified_type: ``module.Qual`` of its type; its top-level package
            (``torch``, ``cupy``, ``jaxlib``...) tells libraries apart.
        builtin_type: Its nearest built-in base (``MemoryError`` for CuPy's and
            PyArrow's out-of-memory errors).

    Returns:
        A JSON-safe dict. ``category`` says what the message is about when it
        is recognised: ``oom`` (with ``memory``: ``device``, ``framework``,
        ``requested``, ``free``, ``total``, ``allocated``, in bytes, as far as
        the message names them), ``device_unavailable`` (``device``),
        ``device`` (``devices``: the mismatched devices in message order),
        ``dtype`` (``dtypes``: ``[expected, got]``, either may be ``None``;
        ``operation``) or ``shape`` (``shapes``: every operand shape named, in
        message order; ``dimension``; ``operation``). Unrecognised messages
        give an empty dict. Never raises for any ``str``.
    """
    text = message[:_PARSE_CHARS]
    context: dict[str, object] = {}
    if is_oom(text, python_type, qualified_type, builtin_type):
        context["category"] = "oom"
        context["memory"] = parse_oom(text, python_type, qualified_type, builtin_type)
        return context
    unavailable = parse_unavailable(text)
    if unavailable:
        context["category"] = "device_unavailable"
        context["device"] = unavailable
        return context
    devices = parse_devices(text)
    if devices:
        context["category"] = "device"
        context["devices"] = devices
        return context
    dtypes = parse_dtypes(text)
    if dtypes:
        context["category"] = "dtype"
        context.update({k: v for k, v in dtypes.items() if v is not None})
        return context
    shapes = parse_shapes(text)
    if shapes:
        context["category"] = "shape"
        context.update({k: v for k, v in shapes.items() if v is not None})
    return context
