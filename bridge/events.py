"""Typed progress events of :meth:`bridge.Bridge.sync` and :meth:`bridge.Bridge.push`.

A sync is an async generator of these, in this order (some are skipped when they do not apply)::

    Checking -> Connecting -> UpToDate
                           | Downloading* -> Verified -> Uploading* (Reconnecting -> Uploading*)*
                             -> Finishing -> Committing -> Rebooting -> Reconnecting+ -> Confirmed | RolledBack

A UI shows ``str(event)`` as one line per state change and drives a progress bar from :class:`Downloading` and
:class:`Uploading`. Every event is a frozen dataclass; ``event.kind`` is a stable name for JSON output.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, TypeAlias

__all__ = [
    "Checking",
    "Committing",
    "Confirmed",
    "Connecting",
    "Downloading",
    "EventStream",
    "Finishing",
    "Notice",
    "Rebooting",
    "Reconnecting",
    "RolledBack",
    "SyncEvent",
    "UpToDate",
    "Uploading",
    "Verified",
    "event_to_dict",
]


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.2f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} B"


@dataclass(frozen=True, slots=True)
class SyncEvent:
    """Base class of every progress event."""

    kind: ClassVar[str] = "event"
    board: str
    """Address (or name) of the board this event is about."""


@dataclass(frozen=True, slots=True)
class Checking(SyncEvent):
    """Asking the board what it runs and the server what is available (``push``: the image was found valid)."""

    kind: ClassVar[str] = "checking"

    def __str__(self) -> str:
        return f"checking {self.board}: asking the board what it runs"


@dataclass(frozen=True, slots=True)
class UpToDate(SyncEvent):
    """Nothing to do. ``available`` is the newest release ("" when the server has none for this board).

    ``same_image``: the board already runs exactly the image offered (same app ELF SHA-256, else same project and
    version), e.g. ``push`` of the file it was flashed with.
    """

    kind: ClassVar[str] = "up_to_date"
    version: str
    available: str = ""
    same_image: bool = False

    def __str__(self) -> str:
        if self.same_image:
            return f"nothing to do: {self.board} already runs this image ({self.version})"
        if self.available:
            return f"up to date: {self.board} runs {self.version}, the newest release"
        return f"no update: the server has no newer release for {self.board} (running {self.version})"


@dataclass(frozen=True, slots=True)
class Downloading(SyncEvent):
    kind: ClassVar[str] = "downloading"
    done_bytes: int
    total_bytes: int

    def __post_init__(self) -> None:
        if self.done_bytes < 0 or self.total_bytes < 0:
            raise ValueError(f"bad download progress {self.done_bytes}/{self.total_bytes}")

    def __str__(self) -> str:
        return f"downloading {_size(self.done_bytes)} of {_size(self.total_bytes)}"


@dataclass(frozen=True, slots=True)
class Verified(SyncEvent):
    """The image passed every check (hash, signature, ESP32 format, fits the board)."""

    kind: ClassVar[str] = "verified"
    version: str
    size_bytes: int
    sha256: str
    from_version: str = ""

    def __str__(self) -> str:
        src = f" (board runs {self.from_version})" if self.from_version else ""
        return f"verified {self.version}: {_size(self.size_bytes)}, sha256 {self.sha256[:16]}...{src}"


@dataclass(frozen=True, slots=True)
class Connecting(SyncEvent):
    kind: ClassVar[str] = "connecting"
    attempt: int = 1

    def __post_init__(self) -> None:
        if self.attempt < 1:
            raise ValueError("attempt counts from 1")

    def __str__(self) -> str:
        again = f" (attempt {self.attempt})" if self.attempt > 1 else ""
        return f"connecting to {self.board}{again}"


@dataclass(frozen=True, slots=True)
class Uploading(SyncEvent):
    """The board acknowledged ``acked_bytes`` of ``total_bytes``; ``rate_bps`` in bytes/s, ``eta_s`` None if unknown."""

    kind: ClassVar[str] = "uploading"
    acked_bytes: int
    total_bytes: int
    rate_bps: float = 0.0
    eta_s: float | None = None
    resumed_from: int = 0
    """Offset this upload (or its latest reconnection) started from; > 0 after a resume."""

    def __post_init__(self) -> None:
        if not 0 <= self.acked_bytes <= self.total_bytes:
            raise ValueError(f"bad upload progress {self.acked_bytes}/{self.total_bytes}")

    def __str__(self) -> str:
        pct = 100.0 * self.acked_bytes / self.total_bytes if self.total_bytes else 100.0
        return f"uploading {_size(self.acked_bytes)} of {_size(self.total_bytes)} ({pct:.0f} %)"


@dataclass(frozen=True, slots=True)
class Notice(SyncEvent):
    """Something the user should know that does not stop the update (e.g. this release rolled back before)."""

    kind: ClassVar[str] = "notice"
    message: str

    def __str__(self) -> str:
        return f"warning: {self.message}"


@dataclass(frozen=True, slots=True)
class Finishing(SyncEvent):
    """All bytes acked; the board verifies the image it wrote."""

    kind: ClassVar[str] = "finishing"

    def __str__(self) -> str:
        return "finishing: the board verifies the image it wrote"


@dataclass(frozen=True, slots=True)
class Committing(SyncEvent):
    kind: ClassVar[str] = "committing"

    def __str__(self) -> str:
        return "committing: the board switches its boot partition"


@dataclass(frozen=True, slots=True)
class Rebooting(SyncEvent):
    kind: ClassVar[str] = "rebooting"
    timeout_s: float = 0.0

    def __str__(self) -> str:
        return f"rebooting: waiting up to {self.timeout_s:.0f} s for the board to come back"


@dataclass(frozen=True, slots=True)
class Reconnecting(SyncEvent):
    """The link dropped (``reason``); reconnecting, attempt ``attempt`` of ``max_attempts``.

    ``max_attempts`` is the configured ``reconnect_attempts``; it is None while waiting for a rebooting board,
    which is bounded by time instead (``deadline_s``, the configured ``reboot_timeout_s``).
    """

    kind: ClassVar[str] = "reconnecting"
    attempt: int
    max_attempts: int | None
    reason: str = ""
    resume_offset: int | None = None
    """During an upload: the bytes the board had acknowledged when the link dropped (it may hold more: after the
    reconnect it names the offset to resume at, reported by the next :class:`Uploading` as ``resumed_from``)."""
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if self.attempt < 1 or (self.max_attempts is not None and self.max_attempts < 1):
            raise ValueError(f"bad reconnect attempt {self.attempt} of {self.max_attempts}")

    def __str__(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        if self.max_attempts is None:
            within = f" (waiting up to {self.deadline_s:g} s)" if self.deadline_s else ""
            return f"reconnecting to {self.board}{why}: attempt {self.attempt}{within}"
        at = f"; {self.resume_offset:,} bytes acknowledged so far" if self.resume_offset else ""
        return f"reconnecting to {self.board}{why}: attempt {self.attempt} of {self.max_attempts}{at}"


@dataclass(frozen=True, slots=True)
class Confirmed(SyncEvent):
    """The board runs the new version. ``rollback_state`` as the board reports it (``valid``, ``pending_verify``)."""

    kind: ClassVar[str] = "confirmed"
    version: str
    from_version: str = ""
    rollback_state: str = ""
    bytes_sent: int = 0
    duration_s: float = 0.0

    def __str__(self) -> str:
        state = f", rollback state {self.rollback_state}" if self.rollback_state else ""
        return f"confirmed: {self.board} now runs {self.version}{state}"


@dataclass(frozen=True, slots=True)
class RolledBack(SyncEvent):
    """The image was written but the board came back on ``running_version``; ``reason`` is what it reports."""

    kind: ClassVar[str] = "rolled_back"
    running_version: str
    attempted_version: str
    reason: str = ""
    bytes_sent: int = 0
    duration_s: float = 0.0

    def __str__(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"rolled back: {self.board} came back on {self.running_version}, not {self.attempted_version}{why}"


#: What ``Bridge.sync`` and ``Bridge.push`` return: an async generator of events (``aclose()`` cancels safely).
EventStream: TypeAlias = AsyncGenerator[SyncEvent, None]


def event_to_dict(event: SyncEvent) -> dict[str, Any]:
    """JSON-ready form: ``{"event": kind, ...fields}``."""
    return {"event": event.kind, **asdict(event)}
