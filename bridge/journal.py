"""The journal: one JSON line per update attempt, in the user data dir (``bridge log`` prints it).

Crash safety: a record is appended with a single ``write`` on a file opened with ``O_APPEND``, then flushed and
fsynced, so earlier records are never touched. A crash can at worst leave a torn last line; reading skips any
line that is not a complete record, and the next append starts on a fresh line so the torn fragment stays
isolated.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = ["AttemptResult", "Journal", "JournalEntry"]

logger = logging.getLogger(__name__)


class AttemptResult(StrEnum):
    """How one attempt ended."""

    CONFIRMED = "confirmed"
    """The board came back running the new version."""
    ROLLED_BACK = "rolled_back"
    """The image was written, but the board came back on its previous version."""
    UP_TO_DATE = "up_to_date"
    """Nothing to do: the board already runs the newest release."""
    REFUSED = "refused"
    """Verification or pre-flight refused the image before any byte went to the board."""
    FAILED = "failed"
    """The link, the board or the server failed; the board still runs its previous version."""
    CANCELLED = "cancelled"
    """Cancelled by the user or the application before the commit; the board was told to abort."""
    COMMITTED_UNCONFIRMED = "committed_unconfirmed"
    """The board accepted COMMIT and was rebooting into the new image, but the bridge did not see it come back
    (cancelled after the commit, or the link could not be re-established): ``bridge status`` tells."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEntry:
    """One attempt to update one board."""

    board: str
    """Address of the board (what the user typed, when the board was never reached)."""
    result: AttemptResult
    from_version: str = ""
    to_version: str = ""
    project: str = ""
    image_sha256: str = ""
    bytes_total: int = 0
    """Size of the image."""
    bytes_sent: int = 0
    """Data bytes written over BLE, retransmissions included."""
    duration_s: float = 0.0
    error: str = ""
    """The error message, or the board's reason for a rollback."""
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    """When the attempt started: ISO 8601, UTC."""
    name: str = ""
    """The board's advertised name, when known."""

    def __post_init__(self) -> None:
        if not self.board:
            raise ValueError("board must not be empty")
        if self.bytes_total < 0 or self.bytes_sent < 0 or self.duration_s < 0:
            raise ValueError("byte counts and duration must be >= 0")
        object.__setattr__(self, "result", AttemptResult(self.result))

    def to_json(self) -> str:
        data = asdict(self)
        data["result"] = str(self.result)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> JournalEntry:
        data: Any = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class Journal:
    """Append-only JSON Lines file. Blocking I/O: call it through ``asyncio.to_thread`` from async code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: JournalEntry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = entry.to_json() + "\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if not _ends_with_newline(fd):
                line = "\n" + line  # isolate a torn record left by a crash
            data = line.encode("utf-8")
            written = os.write(fd, data)
            while written < len(data):  # short writes are rare on regular files but allowed
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> Iterator[JournalEntry]:
        """Every complete record, oldest first; torn or foreign lines are skipped."""
        try:
            handle = self.path.open("r", encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield JournalEntry.from_json(line)
                except (ValueError, TypeError) as exc:
                    logger.warning("journal %s line %d skipped: %s", self.path, number, exc)

    def tail(self, limit: int) -> list[JournalEntry]:
        entries = list(self.entries())
        return entries[-limit:] if limit > 0 else entries


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"
