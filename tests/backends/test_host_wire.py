"""How ``run`` requests and replies travel between the driver and a host
(no ray needed): descriptors as one ``bytes``, objects for Ray as tuples."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import telemetry
from snakepit._wire import codec
from snakepit.backends import _host
from snakepit.backends._host import SnakepitHost, packed_request, unpacked_reply
from snakepit.backends._ray_data import portable_blob
from snakepit.backends._ray_hosts import listened_by_driver
from snakepit.telemetry import _bus
from snakepit.telemetry import _events as events
from snakepit.zero_copy import _numpy

from ..pool import _tasks

_OPTIONS = (None, False, None, None)


def _request(
    how: str, payload: Any, receiver: int | None = None, listening: Any = None
) -> tuple[Any, ...]:
    fn_blob = pickle.dumps(_tasks.add)
    return (1, 7, fn_blob, (how, payload), _OPTIONS, receiver, listening)


def _codec_args(*args: Any) -> Any:
    return portable_blob(codec.encode((args, {}), snapshot=True).blob)


def test_a_request_of_descriptors_travels_as_bytes_and_unpacks_to_itself() -> None:
    request = _request("codec", _codec_args(2, 3))
    packed = packed_request(request)
    assert type(packed) is bytes
    assert _host._unpacked_request(packed) == request


def test_a_request_of_objects_for_ray_stays_a_tuple() -> None:
    # Ray moves large arrays among them through its object store: not pickled here.
    array = np.arange(4.0)
    request = _request("ray", ((array,), {}))
    assert packed_request(request) is request
    assert _host._unpacked_request(request) is request


@pytest.mark.parametrize(
    "reply",
    [
        ("ok", ("codec", (b"payload", ())), None, [(("snakepit", "x"), {}, {})]),
        ("ok", ("ray", 5), None, []),
        ("err", ValueError("boom"), None, []),
    ],
    ids=["ok-codec", "ok-ray", "err"],
)
def test_replies_unpack_to_what_the_host_built(reply: tuple[Any, ...]) -> None:
    packed = _host._packed_reply(reply)
    # Only an "ok" with descriptors is pickled: Ray carries the others' objects.
    assert (type(packed) is bytes) == (reply[0] == "ok" and reply[1][0] == "codec")
    unpacked = unpacked_reply(packed)
    assert unpacked[0] == reply[0]
    assert unpacked[3] == reply[3]
    if reply[0] == "ok":
        assert unpacked[1] == reply[1]
    else:
        assert type(unpacked[1]) is ValueError
        assert str(unpacked[1]) == "boom"


@pytest.mark.parametrize(
    "bad",
    [pickle.dumps([1, 2, 3, 4]), pickle.dumps(("ok", 1)), ("ok", 1), b"not a pickle"],
    ids=["list", "short-tuple-bytes", "short-tuple", "garbage"],
)
def test_a_malformed_reply_is_an_error_not_a_result(bad: Any) -> None:
    with pytest.raises((TypeError, pickle.UnpicklingError)):
        unpacked_reply(bad)


@pytest.mark.parametrize(
    "bad", [pickle.dumps((1, 2)), (1, 2, 3)], ids=["short-bytes", "short-tuple"]
)
def test_a_malformed_request_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match="malformed run request"):
        _host._unpacked_request(bad)


@pytest.fixture
def host() -> Iterator[SnakepitHost]:
    """A host object driving a real local pool, without Ray around it."""
    made = SnakepitHost("wire-test", [])
    made._pool = snakepit.Pool(1)
    try:
        yield made
    finally:
        made._pool.shutdown()
        _numpy.keep_readonly(False)  # SnakepitHost.__init__ set host mode


def test_a_host_runs_a_packed_request_and_packs_its_reply(host: SnakepitHost) -> None:
    request = _request("codec", _codec_args(2, 3), receiver=os.getpid())
    reply = host.run(packed_request(request))
    assert type(reply) is bytes
    status, value, cause, events = unpacked_reply(reply)
    assert (status, cause, events) == ("ok", None, [])
    how, blob = value
    assert how == "codec"
    assert codec.decode(blob, keep=True) == 5


def test_a_failing_call_replies_with_its_error_as_a_tuple(host: SnakepitHost) -> None:
    request = _request("codec", _codec_args(2, "three"), receiver=os.getpid())
    reply = host.run(packed_request(request))
    assert type(reply) is tuple
    status, value, _cause, _events = unpacked_reply(reply)
    assert status == "err"
    assert isinstance(value, TypeError), value


def _events_of(reply: Any) -> list[tuple[str, ...]]:
    return [tuple(event) for event, _measurements, _metadata in unpacked_reply(reply)[3]]


def test_a_host_records_only_the_events_the_driver_listens_to(host: SnakepitHost) -> None:
    args = _codec_args(2, 3)
    assert _events_of(host.run(packed_request(_request("codec", args, os.getpid())))) == []
    wanted = (events.CALL_STOP, ("snakepit", "no", "such", "event"))
    reply = host.run(packed_request(_request("codec", args, os.getpid(), wanted)))
    assert _events_of(reply) == [events.CALL_STOP]  # unknown names left out
    # None: as the last request said.
    reply = host.run(packed_request(_request("codec", args, os.getpid(), None)))
    assert _events_of(reply) == [events.CALL_STOP]
    reply = host.run(packed_request(_request("codec", args, os.getpid(), ())))
    assert _events_of(reply) == []  # nobody listens any more


@pytest.mark.parametrize("bad", [True, [("snakepit", "call", "stop")], (("snakepit", 1),), ("x",)])
def test_malformed_events_to_listen_to_are_refused(host: SnakepitHost, bad: Any) -> None:
    request = _request("codec", _codec_args(2, 3), os.getpid(), bad)
    with pytest.raises(TypeError, match="events to listen to"):
        host.run(packed_request(request))


def test_hosts_record_what_the_drivers_handlers_listen_to_and_crashes() -> None:
    before = listened_by_driver()
    assert listened_by_driver() is before  # worked out once per change of handlers
    assert events.WORKER_CRASH in before  # the driver's health counts them
    assert events.CALL_STOP not in before
    telemetry.attach("wire-test", events.CALL_STOP, lambda *args: None)
    try:
        assert listened_by_driver() == before | {events.CALL_STOP}
    finally:
        telemetry.detach("wire-test")
    assert listened_by_driver() == before


def test_a_stopped_host_records_nothing_more(host: SnakepitHost) -> None:
    request = _request("codec", _codec_args(2, 3), os.getpid(), (events.CALL_STOP,))
    assert _events_of(host.run(packed_request(request))) == [events.CALL_STOP]
    assert host.stop(False) is True
    assert not [info for info in _bus.list_handlers() if info.handler_id == host._handler_id]
