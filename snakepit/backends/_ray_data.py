"""The Ray backend's data plane: which way a call's arguments and result travel.

The destination decides, per call and attempt (``docs/scale-out.md``):

* a host on the driver's node that mapped the driver's probe array (the
  handshake, ``Host.same_memory``) gets shared-memory descriptors, as a
  local worker does: transport ``"shared-memory"``, no copy for arrays
  already in shared memory;
* any other host gets the call through Ray. Each numpy array at or above
  the codec's threshold, or of any size in snakepit's shared memory, is
  put into Ray's object store once per call (``ray.put``; a retry on
  another host reuses the object) and travels as
  an :class:`ObjectArg`; the host fetches it from its node's store (a
  read-only view) and its local pool copies it once into the host's shared
  memory for its worker: transport ``"ray-object"``. Calls with nothing that
  large travel inline in the actor call: ``"ray-inline"``.

What cannot hold across nodes is refused or made visible, never silently
different:

* a worker's in-place write to an argument cannot reach the caller: the
  arrays a remote worker receives are **read-only** (numpy raises
  "assignment destination is read-only"; return what you change);
* CUDA IPC handles (``GPUTensorRef``, ``CudaIPCTensor``, CUDA tensors)
  cannot be opened on another machine: :class:`DeviceMismatchError` before
  anything is sent;
* results from a remote host arrive as Ray objects (read-only views of the
  driver's store): they are copied into the driver's shared memory, so a
  result is writable and owns its memory, as a local pool's result is.

Each choice is reported as ``snakepit.serialize.stop`` with metadata
``transport``, ``backend="ray"``, ``node_id`` and ``host``.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from snakepit._wire import codec
from snakepit.errors import DeviceMismatchError
from snakepit.telemetry._bus import enabled, execute
from snakepit.telemetry._events import SERIALIZE_STOP
from snakepit.zero_copy import _numpy
from snakepit.zero_copy._arena import threshold_bytes
from snakepit.zero_copy._mapping import sendable_buffer

from ._ray_env import import_ray

if TYPE_CHECKING:
    from ._ray_hosts import Host, RayCall

__all__ = [
    "SHARED_MEMORY",
    "RAY_INLINE",
    "RAY_OBJECT",
    "ObjectArg",
    "adopt_result",
    "host_mode",
    "payload_for",
    "portable_blob",
    "resolve_args",
]

SHARED_MEMORY = "shared-memory"
RAY_OBJECT = "ray-object"
RAY_INLINE = "ray-inline"
#: How deep arrays and CUDA references are looked for: ``(args, kwargs)``,
#: then four levels of the user's lists, tuples and dicts.
_DEPTH = 6


@dataclass(frozen=True, slots=True)
class ObjectArg:
    """An argument left in Ray's object store: the host fetches ``ref`` on its node."""

    ref: Any


def _cuda_problem(obj: Any) -> str | None:
    """Why ``obj`` cannot cross nodes (it is a CUDA IPC reference), or None."""
    from snakepit.zero_copy import CudaIPCTensor, GPUTensorRef

    if isinstance(obj, (GPUTensorRef, CudaIPCTensor)):
        return f"a {type(obj).__name__} (a CUDA IPC handle)"
    if getattr(obj, "is_cuda", False) is True or hasattr(obj, "__cuda_array_interface__"):
        return f"a CUDA {type(obj).__name__}"
    return None


def _walk(value: Any, leaf: Callable[[Any], Any], depth: int = 0) -> Any:
    """``value`` with ``leaf`` applied to everything not a list, tuple or dict."""
    if depth < _DEPTH:
        kind = type(value)
        if kind is list:
            return [_walk(item, leaf, depth + 1) for item in value]
        if kind is tuple:
            return tuple(_walk(item, leaf, depth + 1) for item in value)
        if kind is dict:
            return {key: _walk(item, leaf, depth + 1) for key, item in value.items()}
    return leaf(value)


def _remote_args(call: RayCall, host: Host) -> tuple[Any, int, int]:
    """``(args, kwargs)`` for a remote host, large arrays as :class:`ObjectArg`;
    with the number of objects and their bytes. Objects are put once per call."""
    ray = import_ray()
    threshold = threshold_bytes()
    put = call.objects
    count = nbytes = 0

    def leaf(obj: Any) -> Any:
        nonlocal count, nbytes
        problem = _cuda_problem(obj)
        if problem is not None:
            raise DeviceMismatchError(
                f"{problem} cannot cross nodes: host {host.index} is on node "
                f"{host.node_id}, not the caller's",
                devices=("cuda", "cpu"),
                suggestion="send a CPU tensor (tensor.cpu()), or pin the pool's hosts to "
                "the caller's node; CUDA IPC works within one machine only",
            )
        if type(obj) is not np.ndarray or obj.dtype.hasobject:
            return obj
        if obj.nbytes < threshold and sendable_buffer(obj) is None:
            return obj  # a small copy, as a local worker gets it
        held = put.get(id(obj))
        if held is None or held[0] is not obj:
            held = put[id(obj)] = (obj, ray.put(obj))
        count += 1
        nbytes += int(obj.nbytes)
        return ObjectArg(held[1])

    return _walk((call.args, call.kwargs), leaf), count, nbytes


def payload_for(call: RayCall, host: Host, pool: str) -> tuple[str, Any]:
    """The arguments of ``call`` as ``host`` receives them (see the module docs).

    Raises DeviceMismatchError for CUDA references bound for another node,
    SerializationError or SharedMemoryError when encoding fails.
    """
    started = time.monotonic()
    payload: tuple[str, Any]
    if host.same_memory:
        # Same node and /dev/shm: the driver's shared memory goes as
        # descriptors, as to a local worker (no copy into Ray's store).
        encoded = codec.encode((call.args, call.kwargs), snapshot=True)
        call.keepalive = encoded.keepalive
        payload = ("codec", portable_blob(encoded.blob))
        transport, arrays, size = SHARED_MEMORY, len(encoded.keepalive), encoded.size
    else:
        args, arrays, size = _remote_args(call, host)
        payload = ("ray", args)
        transport = RAY_OBJECT if arrays else RAY_INLINE
    if enabled(SERIALIZE_STOP):
        execute(
            SERIALIZE_STOP,
            {"duration": time.monotonic() - started, "bytes": size, "arrays": arrays},
            {
                "direction": "encode",
                "what": "arguments",
                "transport": transport,
                "backend": "ray",
                "pool": pool,
                "node_id": host.node_id,
                "host": host.index,
                "call_id": call.call_id,
            },
        )
    return payload


def portable_blob(blob: codec.Blob) -> codec.Blob:
    """A codec blob another process can receive: out-of-band parts as bytes."""
    payload = blob[0]
    head = bytes(payload.raw()) if isinstance(payload, pickle.PickleBuffer) else bytes(payload)
    if len(blob) == 3:
        return (head, (), blob[2])
    if len(blob) == 4:  # arrays' descriptors beside the pickle: plain data
        return (head, (), blob[2], blob[3])
    return (head, tuple(bytes(part) for part in blob[1]))


# ------------------------------------------------------------------ host side


def host_mode() -> None:
    """Make this process (a host) hand read-only arrays on read-only.

    Arguments fetched from Ray's object store are read-only views; with this
    on, the copy a host's local pool makes of them for its worker is
    read-only in the worker too, so a write fails there instead of being
    lost silently. Only hosts call this: they run no user code.
    """
    _numpy.keep_readonly(True)


def resolve_args(payload: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of a ``("ray", ...)`` payload, objects fetched from this node."""
    refs: list[Any] = []

    def collect(obj: Any) -> Any:
        if type(obj) is ObjectArg:
            refs.append(obj.ref)
        return obj

    _walk(payload, collect)
    if not refs:
        args, kwargs = payload
        return tuple(args), dict(kwargs)
    values = iter(import_ray().get(refs))

    def fetched(obj: Any) -> Any:
        if type(obj) is not ObjectArg:
            return obj
        value = next(values)
        if type(value) is np.ndarray:
            value.flags.writeable = False  # small objects Ray inlined may be writable
        return value

    args, kwargs = _walk(payload, fetched)
    return tuple(args), dict(kwargs)


# ---------------------------------------------------------------- driver side


def adopt_result(value: Any) -> Any:
    """A result a remote host sent through Ray, as a local pool would return it.

    Arrays Ray deserialized as read-only views of its store are copied into
    this process's shared memory (writable, and Ray's object is freed when
    the view goes); plain values are returned as they are.
    """
    found = False

    def check(obj: Any) -> Any:
        nonlocal found
        if type(obj) is np.ndarray and not obj.flags.writeable:
            found = True
        return obj

    _walk(value, check)
    if not found:
        return value

    def adopt(obj: Any) -> Any:
        if type(obj) is np.ndarray and not obj.flags.writeable:
            from snakepit.zero_copy import share

            copy = share(obj) if obj.nbytes >= threshold_bytes() else obj.copy()
            copy.flags.writeable = True
            return copy
        return obj

    return _walk(value, adopt)
