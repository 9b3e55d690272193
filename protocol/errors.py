"""Protocol errors, h11 style.

::

    ProtocolError (abstract; .code: ErrorCode)
    ├── LocalProtocolError    you misused the API: sent a message the state does not allow, built an invalid one
    └── RemoteProtocolError   the peer broke the protocol: bad CRC, unknown type, wrong state, timeout

Internally every check raises ``LocalProtocolError``; the receive path re-raises it as ``RemoteProtocolError``
so each rule lives in one place.
"""

from __future__ import annotations

from protocol.constants import ErrorCode

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base of both protocol errors. Do not raise it directly."""

    code: ErrorCode

    def __init__(self, message: str, *, code: ErrorCode = ErrorCode.BAD_MESSAGE) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError, not ProtocolError")
        super().__init__(message)
        self.message = message
        self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code.name})"


class LocalProtocolError(ProtocolError):
    """The caller broke the protocol (invalid message, wrong state). The connection state did not change."""

    def _reraise_as_remote(self) -> RemoteProtocolError:
        return RemoteProtocolError(self.message, code=self.code)


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. ``code`` is what goes back in ERROR (board side) or ABORT (bridge side)."""
