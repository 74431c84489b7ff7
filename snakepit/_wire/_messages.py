"""The tags of the frames between supervisor and worker, and the error for a
frame that is not one (see ``protocol``)."""

from __future__ import annotations

MSG_INIT = "init"
MSG_READY = "ready"
MSG_INIT_FAILED = "init_failed"
MSG_CALL = "call"
MSG_RESULT = "result"
MSG_ERROR = "error"
MSG_SHUTDOWN = "shutdown"
MSG_EVENT = "event"
MSG_LOG = "log"
MSG_RETIRE = "retire"


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""
