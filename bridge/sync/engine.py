"""The update cycle for one verified image and one board, as an async generator of progress events.

    preflight (chip, size, secure_version, already running)
    BEGIN -> data within the window -> (link drops: reconnect with backoff, BEGIN again, continue at the board's
    offset) -> FINISH -> COMMIT -> REBOOT -> wait for the board (boot, self-test, maybe a rollback reboot)
    -> HELLO: which partition and version run now, and in which rollback state

Safety rules:

* Until BEGIN nothing is written to the board; every refusal (:class:`PreflightError`) happens before it.
* Cancellation (``task.cancel()``, ``aclose()``, Ctrl-C) and every failure after BEGIN send ABORT, best effort
  and bounded by ``abort_timeout_s``; the board keeps running its current firmware.
* Every wait is bounded by a named timeout of :class:`bridge.config.BridgeConfig` and raced against disconnect
  (the session does that); reconnects are bounded in number, with exponential backoff.
* The image is read one frame at a time near the send cursor: memory is bounded by the window.
* :attr:`Installer.phase` says how far the install got (:class:`Phase`): ``not_started`` (nothing written to the
  board), ``uploading`` (BEGIN was sent: a cancellation sends ABORT), ``committed`` (COMMIT_OK, or the board already
  restarted into the image: the board boots the new image whatever happens next, so nothing is aborted and a lost
  link is reported as :class:`CommittedUnconfirmedError`, never as a failed update).
* Progress: an :class:`Uploading` event for the first acknowledgement after BEGIN, then at most one per
  ``UPLOAD_EVENT_BYTES`` (or 1 % of the image, whichever is smaller), and the last one at 100 %.
* Reconnect events carry the configured ``reconnect_attempts`` as ``max_attempts``; the wait for a rebooting board
  is bounded by time, so its events have ``max_attempts`` None and ``deadline_s`` set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from enum import StrEnum

from bridge.ble import BleBackend, TransportLostError
from bridge.config import BridgeConfig
from bridge.errors import (
    BoardRejectedError,
    BoardTimeoutError,
    BridgeError,
    DisconnectedError,
    PreflightError,
    ProtocolViolationError,
    TransportError,
    UpdateFailedError,
)
from bridge.events import (
    Committing,
    Confirmed,
    Connecting,
    EventStream,
    Finishing,
    Rebooting,
    Reconnecting,
    RolledBack,
    Uploading,
    UpToDate,
)
from bridge.image import Chip, ImageInfo, check_fits_board
from bridge.sync.image_file import ImageFile
from bridge.sync.session import BoardSession
from bridge.sync.timing import RateMeter, backoff_delays
from protocol.constants import ERROR_RECOVERY, ErrorCode, Feature, Recovery, RollbackState, UpdateResult
from protocol.messages import Info

__all__ = [
    "CommittedUnconfirmedError",
    "Installer",
    "Phase",
    "Plan",
    "already_running",
    "preflight",
    "rollback_reason",
]

logger = logging.getLogger(__name__)

_ZERO_SHA = "0" * 64

#: How often the engine re-reads INFO while a freshly booted image is still PENDING_VERIFY.
_PENDING_POLL_S = 0.5

#: Upper bound on the acknowledged bytes between two :class:`Uploading` events (also at most 1 % of the image).
UPLOAD_EVENT_BYTES = 64 * 1024


class Phase(StrEnum):
    """How far one install got; what a cancellation or a lost link means for the board."""

    NOT_STARTED = "not_started"
    """Nothing was written to the board (at most HELLO/INFO were exchanged)."""
    UPLOADING = "uploading"
    """BEGIN was sent: the board holds a partial or complete image in its spare slot; cancelling sends ABORT."""
    COMMITTED = "committed"
    """The board accepted COMMIT: it boots the new image next, whatever the bridge does."""


class CommittedUnconfirmedError(TransportError):
    """The board committed the new image, but the bridge could not reconnect to see it running."""

    def __init__(self, message: str, *, board: str, version: str, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint or f"Run `bridge status {board}` once it is back: it should run {version or 'the new image'}.",
        )
        self.board = board
        self.version = version


@dataclass(frozen=True, slots=True)
class Plan:
    """What to install: a verified image file and the facts the board and the journal need."""

    image: ImageFile
    info: ImageInfo
    version: str
    project: str
    secure_version: int
    elf_sha256: str = ""

    @classmethod
    def from_image(cls, image: ImageFile, info: ImageInfo, *, version: str | None = None) -> Plan:
        app = info.app
        return cls(
            image=image,
            info=info,
            version=version if version is not None else (app.version if app else ""),
            project=app.project if app else "",
            secure_version=app.secure_version if app else 0,
            elf_sha256=app.elf_sha256 if app else "",
        )


def _meaningful(sha: str) -> bool:
    return bool(sha) and sha != _ZERO_SHA


def already_running(board: Info, plan: Plan) -> bool:
    """True when the board already runs this build (same app ELF SHA-256, else same project and version)."""
    running_elf = board.elf_sha256.hex()
    if _meaningful(running_elf) and _meaningful(plan.elf_sha256):
        return running_elf == plan.elf_sha256
    return bool(plan.version) and plan.version == board.running_version and plan.project == board.project


def preflight(board: Info, plan: Plan, config: BridgeConfig) -> None:
    """Refuse an image that cannot or must not go to this board, before a single byte is written.

    Raises :class:`PreflightError` (``chip_mismatch``, ``too_large``, ``secure_version_too_low``,
    ``project_mismatch``).
    """
    min_secure = board.secure_version if board.features & Feature.ANTI_ROLLBACK else 0
    chip: Chip | int
    try:
        chip = Chip(board.chip_id)
    except ValueError:
        chip = board.chip_id
    check_fits_board(plan.info, chip=chip, partition_size=board.next_partition_size, min_secure_version=min_secure)
    if plan.project and board.project and plan.project != board.project and not config.allow_other_project:
        raise PreflightError(
            f"the image is project {plan.project!r}, the board runs project {board.project!r}",
            code="project_mismatch",
            hint="Check you picked the right file; set allow_other_project = true to install another project.",
        )


def rollback_reason(board: Info) -> str:
    """What the board says about its last update, in words."""
    result = board.last_update_result
    if result is UpdateResult.ROLLED_BACK:
        return "the new firmware did not confirm itself (self-test failed or it reset); the bootloader rolled back"
    if result is UpdateResult.FAILED:
        return "the board reports its last update failed"
    if result is UpdateResult.ABORTED:
        return "the board reports its last update was aborted"
    if result is UpdateResult.INTERRUPTED:
        return "the board reports its last update was interrupted"
    return f"the board booted {board.running_partition} again (last update result: {result.name.lower()})"


class Installer:
    """Runs one install. Holds the current session and replaces it when the link drops.

    ``session`` may be an already-open session (from the status check); it is adopted and closed at the end.
    """

    def __init__(
        self,
        *,
        address: str,
        backend: BleBackend,
        config: BridgeConfig,
        session: BoardSession | None = None,
    ) -> None:
        self.address = address
        self.backend = backend
        self.config = config
        self.session = session
        self.bytes_sent = 0
        """Image bytes written over BLE in this install, retransmissions included."""
        self.from_version = session.info.running_version if session is not None else ""
        self.phase = Phase.NOT_STARTED
        """How far this install got (read it after a cancellation or an error)."""
        self._started = time.monotonic()
        self._partitions = ("", "")
        """(running, next) partition as INFO named them at the latest BEGIN."""

    # -- links ----------------------------------------------------------------------------------------------

    async def _open(self, *, retries: int | None = None, timeout_s: float | None = None) -> BoardSession:
        config = self.config if timeout_s is None else self.config.replace(connect_timeout_s=timeout_s)
        session = await BoardSession.open(self.address, backend=self.backend, config=config, retries=retries)
        self.session = session
        return session

    async def _drop(self) -> None:
        if self.session is not None:
            self.bytes_sent += self.session.bytes_sent
            self.session.bytes_sent = 0
            await self.session.close()
        self.session = None

    def _sent(self) -> int:
        return self.bytes_sent + (self.session.bytes_sent if self.session is not None else 0)

    @property
    def sent_bytes(self) -> int:
        """Image bytes written so far in this install (every link, retransmissions included)."""
        return self._sent()

    async def _reconnect(self, reason: str, resume_offset: int) -> EventStream:
        """Reconnect with backoff; raises the last error after ``reconnect_attempts`` failures."""
        await self._drop()
        config = self.config
        attempts = config.reconnect_attempts
        last: BridgeError = DisconnectedError(f"the link to {self.address} dropped: {reason}")
        for attempt, delay_s in enumerate(
            backoff_delays(config.reconnect_backoff_s, config.reconnect_backoff_max_s, attempts), start=1
        ):
            yield Reconnecting(self.address, attempt, attempts, reason, resume_offset)
            await asyncio.sleep(delay_s)
            try:
                await self._open(retries=0)
                return
            except TransportLostError:
                raise  # the controller is gone: no reconnect can work
            except (TransportError, ProtocolViolationError) as exc:
                last, reason = exc, exc.message
        raise DisconnectedError(
            f"lost {self.address} and could not reconnect after {attempts} attempts: {last.message}",
            hint="Move closer to the board and run the command again: the upload resumes where it stopped.",
        ) from last

    # -- the cycle ------------------------------------------------------------------------------------------

    async def run(self, plan: Plan) -> EventStream:
        """Install ``plan`` on the board; the last event is :class:`Confirmed` or :class:`RolledBack`."""
        try:
            async with contextlib.aclosing(self._run(plan)) as stream:
                async for event in stream:
                    yield event
        except BaseException as exc:
            if self.phase is Phase.UPLOADING:
                await self._abort(exc)
            raise
        finally:
            await self._drop()

    async def _abort(self, exc: BaseException) -> None:
        cancelled = isinstance(exc, asyncio.CancelledError | GeneratorExit | KeyboardInterrupt)
        reason = ErrorCode.CANCELLED if cancelled else ErrorCode.BRIDGE_ERROR
        if self.session is not None:
            await self.session.abort(reason)

    async def _run(self, plan: Plan) -> EventStream:
        board = self.address
        if self.session is None or not self.session.is_connected:
            yield Connecting(board)
            await self._open()
        session = self.session
        assert session is not None
        before = session.info
        self.from_version = before.running_version
        preflight(before, plan, self.config)
        self._partitions = (before.running_partition, before.next_partition)

        # Upload, verify, commit. A link that drops in FINISH or COMMIT is reconnected and the tail is replayed:
        # BEGIN with the same SHA-256 answers the board's offset (the whole image if it kept it), FINISH and
        # COMMIT are idempotent on the board. A board that lost a verified image (HASH_MISMATCH) restarts once.
        restart = False
        failures = 0
        rebooted_already = False
        while True:
            try:
                async with contextlib.aclosing(self._upload(plan, restart=restart)) as stream:
                    async for event in stream:
                        yield event
            except BoardRejectedError as exc:
                if exc.code != ErrorCode.ALREADY_INSTALLED:
                    raise
                self.phase = Phase.NOT_STARTED
                yield UpToDate(board, before.running_version, plan.version, same_image=True)
                return
            session = self.session
            assert session is not None
            try:
                yield Finishing(board)
                await session.finish()
                yield Committing(board)
                await session.commit()
                break
            except BoardRejectedError as exc:
                recovery = _recovery(exc.code)
                if recovery is Recovery.RESTART and not restart:
                    logger.info("%s: %s; sending the image again from byte 0", board, exc.message)
                    restart = True
                    continue
                if recovery is not Recovery.RECONNECT_AND_RESUME:
                    raise
                reason = exc.message
            except (DisconnectedError, BoardTimeoutError, ProtocolViolationError) as exc:
                reason = exc.message
            failures += 1
            if failures > self.config.reconnect_attempts:
                raise UpdateFailedError(
                    f"{board} did not complete FINISH/COMMIT after {failures - 1} reconnects: {reason}",
                    hint="Run the command again; `bridge status` shows what the board runs.",
                )
            async with contextlib.aclosing(self._reconnect(reason, plan.image.size)) as stream:
                async for event in stream:
                    yield event
            info = self.session.info if self.session is not None else None
            if info is not None and info.running_partition == self._partitions[1] and already_running(info, plan):
                rebooted_already = True  # it committed and restarted before we heard COMMIT_OK
                break
        self.phase = Phase.COMMITTED  # the board now boots the new image; an ABORT would be meaningless
        if not rebooted_already:
            session = self.session
            assert session is not None
            try:
                await session.reboot()
            except (DisconnectedError, BoardTimeoutError) as exc:
                logger.info("%s: no REBOOT_OK (%s); it may already be restarting", board, exc.message)
            yield Rebooting(board, timeout_s=self.config.reboot_timeout_s)
            await session.wait_disconnected(self.config.reply_timeout_s)
        await self._drop()

        old_partition, new_partition = self._partitions  # as the board saw them at the last BEGIN
        confirming = self._confirm(plan, old_partition=old_partition, new_partition=new_partition)
        async with contextlib.aclosing(confirming) as stream:
            async for event in stream:
                yield event

    async def _upload(self, plan: Plan, *, restart: bool = False) -> EventStream:
        board, size = self.address, plan.image.size
        sha256 = bytes.fromhex(plan.image.sha256)
        meter = RateMeter()
        failures = 0  # reconnects in a row without progress
        last_error: BridgeError | None = None
        acked = 0
        restarted = restart  # one restart from 0 per install at most
        send_restart = restart  # the RESTART flag goes on the next BEGIN only
        block_bytes = max(4096, min(self.config.max_window_bytes, 64 * 1024))
        with plan.image.reader(block_bytes=block_bytes) as reader:
            while True:
                session = self.session
                assert session is not None
                try:
                    self.phase = Phase.UPLOADING
                    begin_ok = await session.begin(
                        size=size,
                        sha256=sha256,
                        version=plan.version,
                        project=plan.project,
                        secure_version=plan.secure_version,
                        restart=send_restart,
                    )
                    send_restart = False
                    # Another bridge may have installed an image meanwhile: the slots are the ones INFO names now.
                    self._partitions = (session.info.running_partition, session.info.next_partition)
                    resumed_from = begin_ok.offset
                    if resumed_from:
                        logger.info("%s: resuming at byte %d of %d", board, resumed_from, size)
                    meter.reset()
                    meter.update(resumed_from)
                    acked = resumed_from
                    yield Uploading(board, acked, size, resumed_from=resumed_from)
                    step = max(1, min(UPLOAD_EVENT_BYTES, size // 100))
                    shown = acked
                    async with contextlib.aclosing(session.upload(reader)) as progress:
                        async for offset in progress:
                            if offset > acked:
                                failures = 0
                            acked = offset
                            meter.update(acked)
                            if acked - shown >= step or (acked >= size and shown < size):
                                shown = acked
                                yield Uploading(board, acked, size, meter.rate_bps, meter.eta_s(size), resumed_from)
                    if shown < acked:
                        yield Uploading(board, acked, size, meter.rate_bps, meter.eta_s(size), resumed_from)
                    return
                except BoardRejectedError as exc:
                    recovery = _recovery(exc.code)
                    if recovery is Recovery.RESTART and not restarted:
                        logger.info("%s: %s; restarting the transfer from 0", board, exc.message)
                        restarted = send_restart = True
                        continue
                    if recovery is not Recovery.RECONNECT_AND_RESUME:
                        raise
                    reason = exc.message
                except (DisconnectedError, BoardTimeoutError, ProtocolViolationError) as exc:
                    reason = exc.message
                    last_error = exc
                failures += 1
                if failures > self.config.reconnect_attempts:
                    message = f"the upload to {board} made no progress after {failures - 1} reconnects: {reason}"
                    if isinstance(last_error, ProtocolViolationError):  # the board, not the radio (exit 7)
                        raise ProtocolViolationError(message, hint=last_error.hint) from last_error
                    raise DisconnectedError(message)
                async with contextlib.aclosing(self._reconnect(reason, acked)) as stream:
                    async for event in stream:
                        yield event

    async def _confirm(self, plan: Plan, *, old_partition: str, new_partition: str) -> EventStream:
        """Wait for the board to come back, then tell which firmware it runs and in which rollback state."""
        board, config = self.address, self.config
        deadline = time.monotonic() + config.reboot_timeout_s
        attempt = 0
        delays = backoff_delays(config.reconnect_backoff_s, config.reconnect_backoff_max_s, 1_000_000)
        reason = "the board is rebooting"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommittedUnconfirmedError(
                    f"the update was committed and {board} was rebooting into {plan.version or 'the new image'}, "
                    f"but it did not come back within {config.reboot_timeout_s:g} s ({reason})",
                    board=board,
                    version=plan.version,
                    hint=f"Check the board is powered, then run `bridge status {board}` to see which version it runs.",
                )
            attempt += 1
            yield Reconnecting(board, attempt, None, reason, deadline_s=config.reboot_timeout_s)
            try:
                session = await self._open(retries=0, timeout_s=min(config.connect_timeout_s, max(remaining, 0.1)))
                info = session.info
                while info.running_partition == new_partition and info.rollback_state in (
                    RollbackState.PENDING_VERIFY,
                    RollbackState.NEW,
                ):
                    if time.monotonic() >= deadline:
                        raise UpdateFailedError(
                            f"{board} runs {info.running_version} but it did not mark itself valid within "
                            f"{config.reboot_timeout_s:g} s; it will roll back at its next reset",
                            hint="Check the new firmware's self-test, then run `bridge status`.",
                        )
                    await asyncio.sleep(_PENDING_POLL_S)
                    info = await session.hello()
            except TransportLostError as exc:  # the radio itself is gone: waiting longer cannot help
                await self._drop()
                raise CommittedUnconfirmedError(
                    f"the update was committed and {board} was rebooting into {plan.version or 'the new image'}, "
                    f"but the bridge lost its Bluetooth controller: {exc.message}",
                    board=board,
                    version=plan.version,
                ) from exc
            except (TransportError, ProtocolViolationError, BoardRejectedError) as exc:
                reason = exc.message  # not back yet, or still booting: try again until the deadline
                await self._drop()
                await asyncio.sleep(min(next(delays), max(0.0, deadline - time.monotonic())))
                continue
            break
        duration_s = time.monotonic() - self._started
        sent = self._sent()
        if info.running_partition == new_partition and (
            already_running(info, plan) or not plan.version or info.running_version == plan.version
        ):
            yield Confirmed(
                board,
                info.running_version,
                from_version=self.from_version,
                rollback_state=info.rollback_state.name.lower(),
                bytes_sent=sent,
                duration_s=duration_s,
            )
            return
        if info.running_partition == old_partition:
            yield RolledBack(
                board,
                running_version=info.running_version,
                attempted_version=plan.version,
                reason=rollback_reason(info),
                bytes_sent=sent,
                duration_s=duration_s,
            )
            return
        raise UpdateFailedError(
            f"{board} came back running {info.running_version!r} from {info.running_partition}, neither the new "
            f"image ({new_partition}) nor the old one ({old_partition})"
        )


def _recovery(code: int) -> Recovery | None:
    try:
        return ERROR_RECOVERY[ErrorCode(code)][0]
    except (ValueError, KeyError):
        return None
