"""The embeddable API: one :class:`Bridge` per configuration, asyncio only, no globals.

::

    from bridge import Bridge, BridgeConfig

    async with Bridge(BridgeConfig(server_url="https://fw.example.com")) as bridge:
        boards = await bridge.scan()
        status = await bridge.status(boards[0].address)        # connected? INFO, updated / outdated / no update
        async for event in bridge.sync(boards[0].address):     # typed events, see bridge.events
            print(event)

``sync`` and ``push`` are async generators: iterate them to drive the update, cancel the task (or ``aclose()``
the generator) to stop it; the board is then told to abort and keeps its firmware. Every attempt is appended to
the journal in ``config.data_dir``. Errors are :class:`bridge.errors.BridgeError` subclasses only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from bridge.config import BridgeConfig
from bridge.errors import (
    BoardNotFoundError,
    BridgeError,
    DownloadError,
    ExitCode,
    ImageError,
    PreflightError,
    SecurityError,
    TransportError,
    UsageError,
)
from bridge.events import (
    Checking,
    Confirmed,
    Connecting,
    Downloading,
    EventStream,
    Notice,
    RolledBack,
    SyncEvent,
    UpToDate,
    Verified,
)
from bridge.journal import AttemptResult, Journal, JournalEntry

if TYPE_CHECKING:
    from bridge.ble import BleBackend, BoardAdvert
    from bridge.source import Release, UpdateCheck, UpdateSource
    from bridge.sync.engine import Installer, Plan
    from bridge.sync.session import BoardSession
    from protocol.messages import Info

__all__ = ["BoardStatus", "Bridge", "Interruption", "UpdateState", "exit_code_for_status", "last_interruption"]

logger = logging.getLogger(__name__)


class UpdateState(StrEnum):
    """Stage 3's answer for a connected board."""

    UPDATED = "updated"
    """The board runs the newest confirmed release meant for it."""
    OUTDATED = "outdated"
    """A newer release is available (``BoardStatus.available``)."""
    NO_UPDATE = "no_update"
    """The server has nothing newer for this board (no release for its project, or the board is ahead)."""


@dataclass(frozen=True)
class BoardStatus:
    """What ``status(board)`` found. ``info`` is the board's INFO (None when not connected)."""

    board: str
    connected: bool
    name: str = ""
    info: Info | None = None
    state: UpdateState | None = None
    """None when not connected or when no server is configured."""
    available: Release | None = None
    """The release a sync would install (only when ``state`` is OUTDATED)."""
    newest: Release | None = None
    """The newest release meant for the board, even when it is not newer."""
    note: str = ""
    """Why: the update rule's reason, "offline", "no server configured"."""
    error: str = ""
    """Why the board could not be reached (when not connected)."""
    offline: bool = False
    check: UpdateCheck | None = field(default=None, repr=False, compare=False)

    @property
    def running_version(self) -> str:
        return self.info.running_version if self.info is not None else ""

    def summary(self) -> str:
        """One line for people."""
        if not self.connected:
            return f"not connected: {self.error}"
        running = self.running_version or "an empty version"
        if self.state is UpdateState.OUTDATED and self.available is not None:
            return f"outdated: runs {running}, {self.available.version} is available"
        if self.state is UpdateState.UPDATED:
            return f"updated: runs {running}, the newest release"
        if self.state is UpdateState.NO_UPDATE:
            return f"no update: runs {running}; {self.note}"
        return f"runs {running}; {self.note}"

    def info_dict(self) -> dict[str, Any]:
        info = self.info
        if info is None:
            return {}
        try:
            from bridge.image import Chip

            chip = Chip(info.chip_id).display_name
        except ValueError:
            chip = f"chip id {info.chip_id}"
        return {
            "board_id": info.board_id.hex(":"),
            "chip": chip,
            "chip_id": info.chip_id,
            "project": info.project,
            "running_version": info.running_version,
            "running_partition": info.running_partition,
            "next_partition": info.next_partition,
            "next_partition_size": info.next_partition_size,
            "secure_version": info.secure_version,
            "elf_sha256": info.elf_sha256.hex(),
            "rollback_state": info.rollback_state.name.lower(),
            "last_update_result": info.last_update_result.name.lower(),
            "window_bytes": info.window_bytes,
            "max_frame_bytes": info.max_frame_bytes,
            "protocol_version": info.protocol_version,
            "features": [f.name.lower() for f in type(info.features) if f in info.features and f.name],
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``bridge status --json``)."""
        return {
            "board": self.board,
            "name": self.name,
            "connected": self.connected,
            "state": str(self.state) if self.state is not None else None,
            "running_version": self.running_version,
            "available": self.available.to_dict() if self.available is not None else None,
            "newest_version": self.newest.version if self.newest is not None else None,
            "note": self.note,
            "error": self.error,
            "offline": self.offline,
            "info": self.info_dict(),
        }


def _label(board: str | BoardAdvert) -> str:
    return board if isinstance(board, str) else board.address


def exit_code_for_status(status: BoardStatus) -> int:
    """``bridge status``: 0 updated / no update, 3 outdated, 4 not connected."""
    if not status.connected:
        return int(ExitCode.BOARD_NOT_FOUND)
    if status.state is UpdateState.OUTDATED:
        return int(ExitCode.UPDATE_AVAILABLE)
    return int(ExitCode.OK)


@dataclass(frozen=True)
class Interruption:
    """How far a cancelled sync or push got, for the message after Ctrl-C (see :func:`last_interruption`).

    ``phase`` is a :class:`bridge.sync.engine.Phase` value: ``not_started``, ``uploading`` or ``committed``.
    """

    board: str
    phase: str
    version: str = ""
    bytes_sent: int = 0

    def message(self, cause: str = "interrupted") -> str:
        """One sentence that says what the cancellation did to the board, starting with ``cause``."""
        if self.phase == "committed":
            into = self.version or "the new image"
            return (
                f"{cause} after the commit: the update was committed and {self.board} is rebooting into {into}; "
                f"run `bridge status {self.board}` to see it running."
            )
        if self.phase == "uploading":
            return (
                f"{cause} during the upload: {self.board} was told to abort and keeps its firmware; "
                "the next sync resumes or restarts the upload."
            )
        return f"{cause} before anything was sent to the board; nothing changed."


_last_interruption: Interruption | None = None


def last_interruption(*, clear: bool = False) -> Interruption | None:
    """The newest sync or push of this process that was cancelled, and how far it got (None if none was).

    The CLI reads it after Ctrl-C; ``clear=True`` forgets it.
    """
    global _last_interruption
    found = _last_interruption
    if clear:
        _last_interruption = None
    return found


class _Attempt:
    """What the journal records about one sync or push, filled in as the events go by."""

    def __init__(self, board: str) -> None:
        from datetime import UTC, datetime

        self.board = board
        self.name = ""
        self.installer: Installer | None = None
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.from_version = ""
        self.to_version = ""
        self.project = ""
        self.sha256 = ""
        self.total = 0
        self.sent = 0
        self.result: AttemptResult | None = None
        self.error = ""
        self.started = time.monotonic()

    def see(self, event: SyncEvent) -> None:
        if isinstance(event, Verified):
            self.to_version, self.sha256, self.total = event.version, event.sha256, event.size_bytes
            self.from_version = event.from_version or self.from_version
        elif isinstance(event, UpToDate):
            self.result = AttemptResult.UP_TO_DATE
            self.from_version = event.version
        elif isinstance(event, Confirmed):
            self.result, self.sent = AttemptResult.CONFIRMED, event.bytes_sent
        elif isinstance(event, RolledBack):
            self.result, self.sent, self.error = AttemptResult.ROLLED_BACK, event.bytes_sent, event.reason

    @property
    def phase(self) -> str:
        return str(self.installer.phase) if self.installer is not None else "not_started"

    def bytes_sent(self) -> int:
        """The bytes really written: from the final event, else from the installer's counters."""
        if self.installer is not None:
            return max(self.sent, self.installer.sent_bytes)
        return self.sent

    def entry(self) -> JournalEntry:
        return JournalEntry(
            board=self.board,
            name=self.name if self.name != self.board else "",
            started_at=self.started_at,
            result=self.result or AttemptResult.FAILED,
            from_version=self.from_version,
            to_version=self.to_version,
            project=self.project,
            image_sha256=self.sha256,
            bytes_total=self.total,
            bytes_sent=self.bytes_sent(),
            duration_s=round(time.monotonic() - self.started, 3),
            error=self.error,
        )


class Bridge:
    """The relay between boards and one update server. Use as ``async with Bridge(config) as bridge:``.

    ``source``: an :class:`bridge.source.UpdateSource` to use instead of the one ``config.server_url`` names.
    ``backend``: how to reach the radio (default: the OS stack; a ``VirtualWorld().backend`` in tests).
    """

    def __init__(
        self,
        config: BridgeConfig,
        *,
        source: UpdateSource | None = None,
        backend: BleBackend | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.config = config
        self._source = source
        self._own_source = source is None
        self._backend = backend
        self._own_backend = backend is None
        self._names: dict[str, str] = {}  # address -> advertised name, from scans
        self.journal = journal or Journal(config.journal_file)
        self.last_bytes_sent = 0
        """Image bytes written over BLE by the latest sync/push (retransmissions included)."""

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release what this bridge created: the update source's HTTP client and the default radio backend.

        A ``source`` or ``backend`` passed to the constructor belongs to the caller and is left open.
        """
        if self._source is not None and self._own_source:
            self._source.close()
            self._source = None
        if self._backend is not None and self._own_backend:
            await self._backend.aclose()

    @property
    def backend(self) -> BleBackend:
        if self._backend is None:
            from bridge.ble import OsBackend

            self._backend = OsBackend()
        return self._backend

    @property
    def source(self) -> UpdateSource | None:
        """The update source, or None when no server is configured."""
        if self._source is None and self.config.server_url:
            from bridge.source import SourceConfig, UpdateSource

            self._source = UpdateSource(
                self.config.server_url,
                data_dir=self.config.data_dir,
                config=SourceConfig(
                    timeout_s=self.config.http_timeout_s, max_offline_age_s=self.config.max_offline_age_s
                ),
            )
        return self._source

    def _require_source(self) -> UpdateSource:
        source = self.source
        if source is None:
            raise UsageError(
                "no update server is configured",
                hint="Set server_url in the config file or BRIDGE_SERVER_URL (see `bridge config show`).",
            )
        return source

    # -- boards ---------------------------------------------------------------------------------------------

    async def scan(self, *, timeout_s: float | None = None) -> list[BoardAdvert]:
        """Boards in range offering the OTA service, strongest first (filtered by ``board_name_prefix``)."""
        from bridge.ble import scan

        adverts = await scan(self.backend, timeout_s=timeout_s or self.config.scan_timeout_s)
        prefix = self.config.board_name_prefix
        found = [a for a in adverts if not prefix or (a.name or "").startswith(prefix)]
        self._names.update((a.address, a.name) for a in found if a.name)
        return found

    async def _session(self, board: str | BoardAdvert) -> BoardSession:
        from bridge.sync.session import BoardSession

        session = await BoardSession.open(board, backend=self.backend, config=self.config)
        if session.link.name:
            self._names[session.address] = session.link.name
        return session

    def _identity(self, session: BoardSession) -> Any:
        from bridge.source import BoardIdentity

        info = session.info
        board_id = info.board_id.hex(":") if len(info.board_id) == 6 else info.board_id.hex()
        return BoardIdentity(
            board_id=board_id,
            chip=info.chip_id,
            project=info.project,
            version=info.running_version,
            elf_sha256=info.elf_sha256.hex(),
            secure_version=info.secure_version,
            channel=self.config.channel,
        )

    async def _check(self, session: BoardSession) -> UpdateCheck | None:
        source = self.source
        if source is None:
            return None
        return await self._ask_source(source, session)

    async def _ask_source(self, source: UpdateSource, session: BoardSession) -> UpdateCheck:
        """The server's answer; when it cannot be reached, the offline cache's (verified within its max age).

        With nothing cached either, the server's error is raised: "no update" would be a guess.
        """
        from dataclasses import replace

        from bridge.source import UpdateStatus

        identity = self._identity(session)
        try:
            return await source.check(identity)
        except DownloadError as exc:
            offline = await asyncio.to_thread(source.check_offline, identity)
            if offline.status is UpdateStatus.NO_RELEASE:
                raise
            logger.info("server unreachable (%s): answering from the offline cache", exc.message)
            return replace(offline, reason=f"server unreachable, using the offline cache: {offline.reason}")

    def _status_from(self, board: str, session: BoardSession, check: UpdateCheck | None) -> BoardStatus:
        from bridge.source import UpdateStatus

        name = session.link.name or (self._names.get(session.address, ""))
        if check is None:
            return BoardStatus(board, True, name, session.info, note="no update server configured")
        state = {
            UpdateStatus.UPDATE_AVAILABLE: UpdateState.OUTDATED,
            UpdateStatus.UP_TO_DATE: UpdateState.UPDATED,
        }.get(check.status, UpdateState.NO_UPDATE)
        return BoardStatus(
            board,
            True,
            name,
            session.info,
            state=state,
            available=check.release,
            newest=check.newest,
            note=check.reason,
            offline=check.offline,
            check=check,
        )

    async def status(self, board: str | BoardAdvert) -> BoardStatus:
        """Connect to ``board`` (address or name), read its INFO and ask the server whether it is behind.

        A board that cannot be reached gives ``connected=False`` with the reason in ``error``; server problems
        raise :class:`bridge.errors.SourceError` (the offline cache answers when the server is unreachable).
        No radio at all (no Bluetooth stack, or the HCI controller went away) raises
        :class:`bridge.ble.TransportLostError`: that is not about this board.
        """
        from bridge.ble import TransportLostError

        try:
            session = await self._session(board)
        except TransportLostError:
            raise
        except (BoardNotFoundError, TransportError) as exc:
            name = board if isinstance(board, str) else board.name or ""
            return BoardStatus(_label(board), False, name if name != _label(board) else "", error=exc.message)
        try:
            return self._status_from(session.address, session, await self._check(session))
        finally:
            await session.close()

    # -- updating -------------------------------------------------------------------------------------------

    async def sync(self, board: str | BoardAdvert) -> EventStream:
        """Bring ``board`` to the newest release meant for it: check, download, verify, upload, confirm.

        Yields :mod:`bridge.events` in order; the last one is :class:`UpToDate`, :class:`Confirmed` or
        :class:`RolledBack`. Raises a :class:`BridgeError` on failure (the board keeps its firmware), or
        :class:`bridge.sync.engine.CommittedUnconfirmedError` when the board committed the image but could not be
        reached again (journaled as ``committed_unconfirmed``).

        When the journal says this board rolled back the very image offered (same SHA-256) at its latest attempt
        of it, a :class:`bridge.events.Notice` says so before the upload (with the time of that attempt); the
        sync goes on, since only the board's self-test can tell whether it passes this time.
        """
        attempt = self._attempt(board)
        async with contextlib.aclosing(self._journaled(attempt, self._sync(board, attempt))) as stream:
            async for event in stream:
                yield event

    async def push(self, board: str | BoardAdvert, image_file: Path) -> EventStream:
        """Install a local image file on ``board`` (validated and pre-flighted before any byte is written).

        A path that does not exist or is a folder raises :class:`UsageError` before the attempt starts (it is
        not journaled); an image that fails validation is journaled as refused.
        """
        path = Path(image_file)
        exists, is_dir = await asyncio.to_thread(lambda: (path.exists(), path.is_dir()))
        if not exists:
            raise UsageError(f"{path} does not exist", hint="Check the path of the image file (a .bin app image).")
        if is_dir:
            raise UsageError(f"{path} is a folder, not an image file", hint="Name the .bin app image inside it.")
        attempt = self._attempt(board)
        events = self._journaled(attempt, self._push(board, path, attempt))
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                yield event

    def _attempt(self, board: str | BoardAdvert) -> _Attempt:
        attempt = _Attempt(_label(board))
        if not isinstance(board, str) and board.name:
            attempt.name = board.name
        elif isinstance(board, str):
            attempt.name = next((n for a, n in self._names.items() if a.lower() == board.lower()), "")
        return attempt

    async def _journaled(self, attempt: _Attempt, events: EventStream) -> EventStream:
        from bridge.sync.engine import CommittedUnconfirmedError

        global _last_interruption
        try:
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    attempt.see(event)
                    yield event
        except (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt):
            if attempt.result is None:  # not after the final event
                _last_interruption = Interruption(
                    attempt.board, attempt.phase, attempt.to_version, attempt.bytes_sent()
                )
                if attempt.phase == "committed":
                    attempt.result = AttemptResult.COMMITTED_UNCONFIRMED
                    attempt.error = f"cancelled after the commit: the board was rebooting into {attempt.to_version}"
                else:
                    attempt.result, attempt.error = AttemptResult.CANCELLED, "cancelled"
                    if attempt.phase == "uploading":
                        attempt.error = "cancelled during the upload: the board was told to abort"
            raise
        except CommittedUnconfirmedError as exc:
            attempt.result, attempt.error = AttemptResult.COMMITTED_UNCONFIRMED, exc.message
            raise
        except BridgeError as exc:
            refused = isinstance(exc, ImageError | PreflightError | SecurityError)
            attempt.result = AttemptResult.REFUSED if refused else AttemptResult.FAILED
            attempt.error = exc.message
            raise
        except Exception as exc:
            attempt.result, attempt.error = AttemptResult.FAILED, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            entry = attempt.entry()
            self.last_bytes_sent = entry.bytes_sent
            try:
                await asyncio.shield(asyncio.to_thread(self.journal.append, entry))
            except asyncio.CancelledError:
                pass  # the worker thread still finishes the append
            except OSError as exc:
                logger.warning("could not write the journal %s: %s", self.journal.path, exc)

    async def _sync(self, board: str | BoardAdvert, attempt: _Attempt) -> EventStream:
        source = self._require_source()
        yield Checking(_label(board))
        yield Connecting(_label(board))
        session = await self._session(board)
        try:
            attempt.board = session.address
            attempt.name = session.link.name or self._names.get(session.address, "") or attempt.name
            attempt.from_version = session.info.running_version
            attempt.project = session.info.project
            check = await self._ask_source(source, session)
            release = check.release
            if release is None:
                newest = check.newest.version if check.newest is not None and check.status == "up_to_date" else ""
                yield UpToDate(session.address, session.info.running_version, newest)
                await session.close()
                return
            attempt.to_version, attempt.total = release.version, release.size
            path = check.cached_path if check.offline and check.cached_path else source.cached(release)
            if path is None:
                downloaded: list[Path] = []
                async with contextlib.aclosing(self._download(source, release, session.address, downloaded)) as stream:
                    async for event in stream:
                        yield event
                path = downloaded[0]
            plan = await self._plan(path, version=release.version)
            if plan.image.sha256 != release.sha256:
                raise SecurityError(f"the downloaded image's SHA-256 {plan.image.sha256} is not the signed one")
            rolled_back = await asyncio.to_thread(self._rolled_back_before, session.address, release.sha256)
            if rolled_back is not None:
                yield Notice(
                    session.address,
                    f"{release.version} was rolled back on this board at {rolled_back.started_at} "
                    f"({rolled_back.error or 'it did not confirm itself'}); sending it again",
                )
            async with contextlib.aclosing(self._install(session, plan, attempt)) as stream:
                async for event in stream:
                    yield event
        finally:
            await session.close()

    def _rolled_back_before(self, address: str, sha256: str) -> JournalEntry | None:
        """The journal's newest attempt of this image on this board, if it ended in a rollback."""
        try:
            entries = self.journal.tail(0)
        except OSError as exc:
            logger.info("could not read the journal %s: %s", self.journal.path, exc)
            return None
        for entry in reversed(entries):
            if entry.board.lower() == address.lower() and entry.image_sha256 == sha256:
                return entry if entry.result is AttemptResult.ROLLED_BACK else None
        return None

    async def _download(self, source: UpdateSource, release: Release, board: str, result: list[Path]) -> EventStream:
        """Download with progress events (the source calls back on the loop; a queue turns calls into events).

        The verified file's path is appended to ``result``.
        """
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        task = asyncio.create_task(source.download(release, progress=lambda d, t: queue.put_nowait((d, t))))
        try:
            yield Downloading(board, 0, release.size)
            while not task.done() or not queue.empty():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    done_bytes, total = getter.result()
                    yield Downloading(board, done_bytes, total or release.size)
                else:
                    getter.cancel()
            result.append(await task)  # raises the download's error
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, BridgeError):
                    await task

    async def _plan(self, path: Path, *, version: str | None = None) -> Plan:
        """Validate the image file off the event loop and describe it for the engine."""
        from bridge.image import validate_image
        from bridge.sync.engine import Plan
        from bridge.sync.image_file import ImageFile

        try:
            info = await asyncio.to_thread(validate_image, path)
        except FileNotFoundError as exc:
            raise ImageError(f"{path} does not exist", code="unreadable") from exc
        except IsADirectoryError as exc:
            raise ImageError(f"{path} is a folder, not an image file", code="unreadable") from exc
        except OSError as exc:
            raise ImageError(f"cannot read {path}: {exc.strerror or exc}", code="unreadable") from exc
        return Plan.from_image(ImageFile(path=path, size=info.size, sha256=info.sha256), info, version=version)

    async def _install(self, session: BoardSession, plan: Plan, attempt: _Attempt) -> EventStream:
        from bridge.sync.engine import Installer, already_running, preflight

        info = session.info
        preflight(info, plan, self.config)
        if already_running(info, plan) and not self.config.allow_same_version:
            yield UpToDate(session.address, info.running_version, plan.version, same_image=True)
            return
        yield Verified(session.address, plan.version, plan.image.size, plan.image.sha256, info.running_version)
        installer = Installer(address=session.address, backend=self.backend, config=self.config, session=session)
        attempt.installer = installer
        async with contextlib.aclosing(installer.run(plan)) as stream:
            async for event in stream:
                yield event

    async def _push(self, board: str | BoardAdvert, image_file: Path, attempt: _Attempt) -> EventStream:
        plan = await self._plan(image_file)  # refused here, before any connection, if it is not a valid app
        attempt.to_version, attempt.total, attempt.sha256 = plan.version, plan.image.size, plan.image.sha256
        attempt.project = plan.project
        yield Checking(_label(board))
        yield Connecting(_label(board))
        session = await self._session(board)
        try:
            attempt.board = session.address
            attempt.name = session.link.name or self._names.get(session.address, "") or attempt.name
            attempt.from_version = session.info.running_version
            async with contextlib.aclosing(self._install(session, plan, attempt)) as stream:
                async for event in stream:
                    yield event
        finally:
            await session.close()

    # -- offline cache --------------------------------------------------------------------------------------

    async def fetch(
        self,
        *,
        project: str | None = None,
        chip: str | int | None = None,
        progress: Callable[[Release, int, int], None] | None = None,
    ) -> list[tuple[Release, Path]]:
        """Download and verify the newest releases into the offline cache (for a later push without network)."""
        source = self._require_source()
        chip_id = _chip_id(chip) if chip is not None else None
        cached = await source.fetch_for_offline(project, chip_id, self.config.channel, progress=progress)
        return [(c.release, c.path) for c in cached]

    def log(self, limit: int = 0) -> list[JournalEntry]:
        """The newest ``limit`` journal entries (0: all), oldest first."""
        return self.journal.tail(limit)


def _chip_id(chip: str | int) -> int:
    from bridge.image import Chip

    try:
        return int(Chip.parse(chip))
    except ValueError as exc:
        raise UsageError(f"unknown chip {chip!r}", hint="Use a name such as esp32, esp32c3 or esp32s3.") from exc
