"""What ``next_event()`` returns.

Control messages are their own events: the bridge receives the board's messages (``Info``, ``BeginOk``,
``Ack``, ...) and the board receives the bridge's (``Hello``, ``Begin``, ``Finish``, ...). The only event that
is not a message is ``DataReceived``: a data frame the board accepted, in order, to be written to flash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from protocol.messages import (
    Abort,
    Ack,
    Begin,
    BeginOk,
    Commit,
    CommitOk,
    Error,
    Finish,
    FinishOk,
    Hello,
    Info,
    Nack,
    NoUpdate,
    Reboot,
    RebootOk,
    UpdateAccept,
    UpdateAvailable,
    UpdateRequest,
)

__all__ = ["BoardEvent", "BridgeEvent", "DataRange", "DataReceived"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived:
    """Board side: image bytes ``[offset, offset + len(data))`` arrived in order. Write them, then report
    ``BoardConnection.data_written(offset + len(data))``."""

    offset: int
    data: bytes

    @property
    def end(self) -> int:
        """Offset just after this chunk."""
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataRange:
    """Bridge side: the image bytes ``[offset, offset + length)`` to put in the next data frame."""

    offset: int
    length: int

    @property
    def end(self) -> int:
        """Offset just after this range."""
        return self.offset + self.length


#: Events a ``BridgeConnection`` yields: the board's messages.
BridgeEvent: TypeAlias = (
    Info | BeginOk | Ack | Nack | FinishOk | CommitOk | RebootOk | UpdateRequest | UpdateAccept | Error
)
#: Events a ``BoardConnection`` yields: the bridge's commands (SYNC is answered internally) and accepted data.
BoardEvent: TypeAlias = Hello | Begin | DataReceived | Finish | Commit | Reboot | Abort | UpdateAvailable | NoUpdate
