"""The firmware of a simulated board: the OTA app that runs the protocol's board role over ``esp_ota_*``.

The board (:mod:`bridge.sim.board`) is the hardware: radio, GATT, flash, reset. This module is what an ESP-IDF
app would do with it, in two tasks:

* the *worker* feeds control and data writes to :class:`protocol.BoardConnection` in arrival order and acts on its
  events: HELLO -> INFO, BEGIN -> checks and ``esp_ota_begin`` (or resume), FINISH -> SHA-256 and ``esp_ota_end``,
  COMMIT -> ``esp_ota_set_boot_partition``, REBOOT -> restart, ABORT -> drop the transfer;
* the *writer* drains received image bytes (the RAM buffer, bounded by the window) into flash with
  ``esp_ota_write`` and reports progress with ``data_written``, which produces the ACKs: an ACK means "in flash".
  On the first bytes it checks the chip id and ``secure_version``, as the OTA guide recommends.

A transfer outlives its connection (BEGIN with the same SHA-256 resumes at the flash write offset); a reset loses
it with the rest of RAM (:meth:`OtaApp.reset`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bumble import hci
from bumble.device import Connection

from bridge.sim.esp_ota import EspErr, EspOtaError, OtaImgState, OtaUpdate
from protocol import (
    Abort,
    Begin,
    BeginFlags,
    BeginOk,
    BoardConnection,
    Commit,
    CommitOk,
    DataReceived,
    Error,
    ErrorCode,
    Feature,
    Finish,
    FinishOk,
    Hello,
    Info,
    MessageType,
    Reboot,
    RebootOk,
    RemoteProtocolError,
    RollbackState,
    State,
    UpdateResult,
    encode_message,
)
from protocol.messages import Ack

if TYPE_CHECKING:
    from bridge.sim.board import SimulatedBoard

__all__ = ["OtaApp"]

logger = logging.getLogger(__name__)

#: Data frame layout (protocol SPEC): offset u32 | payload | CRC-16.
DATA_HEADER_BYTES = 4
DATA_OVERHEAD_BYTES = 6
#: esp_ota_write is called with up to this much buffered data at a time.
WRITE_CHUNK_BYTES = 4096


@dataclass
class _Transfer:
    """The RAM state of one image transfer (lost on reset)."""

    begin: Begin
    update: OtaUpdate
    verified: bool = False
    early_checked: bool = False


class OtaApp:
    """The OTA app of one simulated board (its RAM state and its two tasks)."""

    def __init__(self, board: SimulatedBoard) -> None:
        self.board = board
        self.transfer: _Transfer | None = None
        self.inbox: asyncio.Queue[tuple[Connection, bool, bytes]] = asyncio.Queue()
        self.write_queue: asyncio.Queue[DataReceived | None] = asyncio.Queue()
        self.rx_buffered = 0
        self.fired_disconnects: set[int] = set()
        self.power_loss_fired = False

    def reset(self) -> None:
        """RAM is lost (reset, power cut): the transfer, queued frames, buffered data."""
        self.transfer = None
        self.inbox = asyncio.Queue()
        self.write_queue = asyncio.Queue()
        self.rx_buffered = 0

    def rearm_faults(self) -> None:
        self.fired_disconnects.clear()
        self.power_loss_fired = False

    def start(self) -> None:
        """The app's tasks, started after every boot (they die with the board's tasks on reset)."""
        self.board._spawn(self._worker(), "worker")
        self.board._spawn(self._writer(), "writer")

    def deliver_control(self, connection: Connection, value: bytes) -> None:
        self.inbox.put_nowait((connection, True, value))

    def deliver_data(self, connection: Connection, frame: bytes, payload_bytes: int) -> bool:
        """Take a data write into the RAM buffer; False (dropped) when ``rx_buffer_bytes`` would overflow."""
        limit = self.board.faults.rx_buffer_bytes
        if limit is not None and self.rx_buffered + payload_bytes > limit:
            return False
        self.rx_buffered += payload_bytes
        self.inbox.put_nowait((connection, False, frame))
        return True

    async def _worker(self) -> None:
        while True:
            connection, is_control, value = await self.inbox.get()
            conn = self.board._conn
            if not is_control:
                self.rx_buffered -= max(0, len(value) - DATA_OVERHEAD_BYTES)
            if conn is None or connection is not self.board._connection:
                continue
            if is_control:
                conn.receive_control(value)
            else:
                conn.receive_data(value)
            self.board._notify(conn.data_to_send())
            await self._drain_events(conn, connection)

    async def _drain_events(self, conn: BoardConnection, connection: Connection) -> None:
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                logger.info("%s: the bridge broke the protocol: %s", self.board.name, exc)
                self.board._notify(conn.data_to_send())
                if conn.state is State.ERROR:
                    self.board._spawn_detached(connection.disconnect())
                continue
            if event is None:
                return
            if isinstance(event, DataReceived):
                self._on_data(event, connection)
            elif isinstance(event, Hello):
                self.board._notify(conn.send(self._info(conn)))
            elif isinstance(event, Begin):
                await self._on_begin(conn, event)
            elif isinstance(event, Finish):
                await self._on_finish(conn)
            elif isinstance(event, Commit):
                self._on_commit(conn)
            elif isinstance(event, Reboot):
                self.board._notify(conn.send(RebootOk(delay_ms=self.board.config.reboot_delay_ms)))
                self.board.schedule_restart(self.board.reboot_after_ok())
            elif isinstance(event, Abort):
                self._discard_transfer(UpdateResult.ABORTED)
            # UpdateAvailable / NoUpdate: this board never sends UPDATE_REQUEST (feature not announced).

    def features(self) -> Feature:
        features = self.board.config.features
        if not self.board.config.rollback_enabled:
            features &= ~Feature.APP_ROLLBACK
        if not self.board.config.anti_rollback:
            features &= ~Feature.ANTI_ROLLBACK
        return features & ~Feature.UPDATE_REQUEST & ~Feature.SIGNATURE

    def _info(self, conn: BoardConnection) -> Info:
        info = self.board.ota.running_info
        app = info.app if info is not None else None
        state = self.board.rollback_state
        next_slot = self.board.ota.next_update_partition()
        return Info(
            protocol_version=conn.negotiated_version or 1,
            features=self.features(),
            chip_id=int(self.board.chip),
            chip_revision=self.board.config.chip_revision,
            window_bytes=self.board.config.window_bytes,
            max_frame_bytes=self.board.config.max_frame_bytes,
            erase_strategy=self.board.config.erase_strategy,
            secure_version=self.board.efuse.secure_version,
            rollback_state=RollbackState.UNDEFINED if state is OtaImgState.UNDEFINED else RollbackState(int(state)),
            last_update_result=self.board.last_update_result,
            next_partition_size=next_slot.size,
            elf_sha256=bytes.fromhex(app.elf_sha256) if app is not None else bytes(32),
            board_id=self.board.board_id,
            project=_clip(self.board.running_project, 32),
            running_version=_clip(self.board.running_version, 32),
            running_partition=self.board.running_partition,
            next_partition=next_slot.label,
        )

    def _link_gone(self, conn: BoardConnection, command: str) -> bool:
        """True when the link that sent ``command`` dropped while the board was busy (erasing, verifying).

        The reply belongs to that link's conversation only: sent on the next link it would answer a question
        nobody asked there. The work itself is kept (a BEGIN with the same SHA-256 resumes).
        """
        if conn is self.board._conn:
            return False
        logger.info("%s: the link that sent %s dropped meanwhile; its reply is not sent", self.board.name, command)
        return True

    def _refuse(self, conn: BoardConnection, code: ErrorCode, detail: str, in_reply_to: MessageType | None) -> None:
        what = in_reply_to.name if in_reply_to is not None else "the transfer"
        logger.info("%s: refusing %s: %s (%s)", self.board.name, what, code.name, detail)
        self.board._notify(conn.send(Error(code=code, in_reply_to=in_reply_to, detail=_clip(detail, 64))))

    async def _on_begin(self, conn: BoardConnection, begin: Begin) -> None:
        next_slot = self.board.ota.next_update_partition()
        efuse = self.board.efuse.secure_version
        running_project = self.board.running_project
        if self.board.config.rollback_enabled and self.board.rollback_state is OtaImgState.PENDING_VERIFY:
            return self._refuse(conn, ErrorCode.ROLLBACK_PENDING, "running app not confirmed", MessageType.BEGIN)
        if begin.size > next_slot.size:
            detail = f"{begin.size} > {next_slot.label} {next_slot.size}"
            return self._refuse(conn, ErrorCode.TOO_LARGE, detail, MessageType.BEGIN)
        if self.board.config.check_project and begin.project and running_project and begin.project != running_project:
            detail = f"board runs {running_project}"
            return self._refuse(conn, ErrorCode.PROJECT_MISMATCH, detail, MessageType.BEGIN)
        if self.board.config.anti_rollback and begin.secure_version < efuse:
            detail = f"secure_version {begin.secure_version} < {efuse}"
            return self._refuse(conn, ErrorCode.SECURE_VERSION_TOO_LOW, detail, MessageType.BEGIN)
        if begin.sha256.hex() == self.board.running_sha256:
            return self._refuse(conn, ErrorCode.ALREADY_INSTALLED, "this image is running", MessageType.BEGIN)
        transfer = self.transfer
        resumable = (
            transfer is not None
            and not transfer.update.closed
            and transfer.begin.sha256 == begin.sha256
            and transfer.begin.size == begin.size
            and not begin.flags & BeginFlags.RESTART
            and conn.features & Feature.RESUME
        )
        if resumable and transfer is not None:
            await self._drain_writer()
            offset = transfer.update.written
            transfer.verified = False
            logger.info("%s: resuming %s at %d", self.board.name, begin.sha256.hex()[:12], offset)
        else:
            self._discard_transfer(None)
            try:
                update = await self.board.ota.begin(next_slot, begin.size, self.board.config.erase_strategy)
            except EspOtaError as exc:
                return self._refuse(conn, _error_code(exc), exc.message, MessageType.BEGIN)
            self.transfer = _Transfer(begin=begin, update=update)
            offset = 0
        if self._link_gone(conn, "BEGIN"):
            return
        self.board._notify(conn.send(BeginOk(offset=offset, window_bytes=self.board.config.window_bytes)))

    def _on_data(self, event: DataReceived, connection: Connection) -> None:
        if self.transfer is None:
            return
        self.board.stats.image_bytes_accepted += len(event.data)
        self.rx_buffered += len(event.data)
        self.write_queue.put_nowait(event)
        for offset in self.board.faults.disconnect_at_offsets:
            if offset not in self.fired_disconnects and event.offset <= offset < event.end:
                self.fired_disconnects.add(offset)
                self.board.stats.forced_disconnects += 1
                logger.info("%s: fault: dropping the link at offset %d", self.board.name, offset)
                self.board._cut_link(connection, hci.HCI_CONNECTION_TIMEOUT_ERROR)
                return

    async def _on_finish(self, conn: BoardConnection) -> None:
        transfer = self.transfer
        if transfer is None:
            return self._refuse(conn, ErrorCode.INCOMPLETE, "no transfer", MessageType.FINISH)
        await self._drain_writer()
        update = transfer.update
        written = self.board.flash.read(update.partition.offset, update.written)
        if hashlib.sha256(written).digest() != transfer.begin.sha256:
            self._discard_transfer(UpdateResult.FAILED)
            return self._refuse(
                conn, ErrorCode.HASH_MISMATCH, "SHA-256 of the written image differs", MessageType.FINISH
            )
        try:
            info = await update.end()
        except EspOtaError as exc:
            self._discard_transfer(UpdateResult.FAILED)
            return self._refuse(conn, ErrorCode.INVALID_IMAGE, exc.message, MessageType.FINISH)
        if info.chip_id != int(self.board.chip):
            self._discard_transfer(UpdateResult.FAILED)
            detail = f"image for chip id {info.chip_id}"
            return self._refuse(conn, ErrorCode.CHIP_MISMATCH, detail, MessageType.FINISH)
        transfer.verified = True
        if self._link_gone(conn, "FINISH"):
            return
        self.board._notify(conn.send(FinishOk(sha256=transfer.begin.sha256)))

    def _on_commit(self, conn: BoardConnection) -> None:
        transfer = self.transfer
        if transfer is None or not transfer.verified:
            return self._refuse(conn, ErrorCode.BAD_STATE, "nothing verified to commit", MessageType.COMMIT)
        try:
            self.board.ota.set_boot_partition(transfer.update.partition)
        except EspOtaError as exc:
            code = (
                ErrorCode.SECURE_VERSION_TOO_LOW
                if exc.code is EspErr.ESP_ERR_OTA_SMALL_SEC_VER
                else ErrorCode.BOOT_PARTITION_FAILED
            )
            return self._refuse(conn, code, exc.message, MessageType.COMMIT)
        self.transfer = None
        self.board._update_committed = True
        self.board._spawn_detached(self.board._save_state())
        self.board._notify(conn.send(CommitOk()))

    def _discard_transfer(self, result: UpdateResult | None) -> None:
        transfer, self.transfer = self.transfer, None
        if transfer is None:
            return
        transfer.update.abort()
        while not self.write_queue.empty():
            item = self.write_queue.get_nowait()
            if item is not None:
                self.rx_buffered -= len(item.data)
            self.write_queue.task_done()
        if result is not None:
            self.board.last_update_result = result

    # ==========================================================================================================
    # The writer: RAM buffer -> flash, ACKs
    # ==========================================================================================================

    async def _drain_writer(self) -> None:
        await self.write_queue.join()

    async def _writer(self) -> None:
        queue = self.write_queue
        while True:
            first = await queue.get()
            items = [first]
            size = len(first.data) if first is not None else 0
            while size < WRITE_CHUNK_BYTES and not queue.empty():
                item = queue.get_nowait()
                items.append(item)
                size += len(item.data) if item is not None else 0
            try:
                chunks = [item for item in items if item is not None]
                if chunks:
                    await self._write_chunks(chunks)
            finally:
                for _ in items:
                    queue.task_done()

    async def _write_chunks(self, chunks: list[DataReceived]) -> None:
        transfer = self.transfer
        start, data = chunks[0].offset, b"".join(c.data for c in chunks)
        self.rx_buffered -= len(data)
        if transfer is None or transfer.update.written != start:
            return  # the transfer was discarded or restarted meanwhile
        cut = self.board.faults.power_loss_at_offset
        if cut is not None and not self.power_loss_fired and start <= cut < start + len(data):
            self.power_loss_fired = True
            await transfer.update.write(data[: cut - start])
            logger.info("%s: fault: power lost at image offset %d", self.board.name, cut)
            self.board.schedule_restart(self.board.power_cut())
            await asyncio.sleep(3600)  # cancelled by the power cut
        try:
            await transfer.update.write(data)
            self._early_checks(transfer)
        except EspOtaError as exc:
            self._fail_transfer(exc)
            return
        self.board.stats.image_bytes_written += len(data)
        conn = self.board._conn
        if conn is None or self.transfer is not transfer:
            return
        datagrams = conn.data_written(transfer.update.written)
        if self.board.faults.ack_lie_bytes:
            datagrams = [self._lie(datagram) for datagram in datagrams]
        self.board._notify(datagrams)

    def _early_checks(self, transfer: _Transfer) -> None:
        """What an app should check on the first kilobyte: the chip and ``secure_version`` (notes section 5)."""
        validator = transfer.update.validator
        if transfer.early_checked or (validator.app is None and validator.bytes_seen < 0x120):
            return
        transfer.early_checked = True
        if validator.chip_id not in (-1, int(self.board.chip)):
            raise EspOtaError(EspErr.ESP_ERR_OTA_VALIDATE_FAILED, f"image for chip id {validator.chip_id}")
        app = validator.app
        if self.board.config.anti_rollback and app is not None and app.secure_version < self.board.efuse.secure_version:
            raise EspOtaError(EspErr.ESP_ERR_OTA_SMALL_SEC_VER, f"secure_version {app.secure_version}")

    def _fail_transfer(self, exc: EspOtaError) -> None:
        conn = self.board._conn
        chip = "chip id" in exc.message
        code = ErrorCode.CHIP_MISMATCH if chip else _error_code(exc)
        self._discard_transfer(UpdateResult.FAILED)
        if conn is not None and conn.state is State.TRANSFER:
            self._refuse(conn, code, exc.message, None)

    def _lie(self, datagram: bytes) -> bytes:
        if datagram[:1] != bytes([MessageType.ACK]) or len(datagram) != 9:
            return datagram
        (next_offset,) = struct.unpack_from("<I", datagram, 3)
        return encode_message(Ack(next_offset=next_offset + self.board.faults.ack_lie_bytes))


def _clip(text: str, max_bytes: int) -> str:
    return text.encode()[:max_bytes].decode(errors="ignore")


def _error_code(exc: EspOtaError) -> ErrorCode:
    return {
        EspErr.ESP_ERR_OTA_VALIDATE_FAILED: ErrorCode.INVALID_IMAGE,
        EspErr.ESP_ERR_OTA_SMALL_SEC_VER: ErrorCode.SECURE_VERSION_TOO_LOW,
        EspErr.ESP_ERR_OTA_ROLLBACK_INVALID_STATE: ErrorCode.ROLLBACK_PENDING,
        EspErr.ESP_ERR_INVALID_SIZE: ErrorCode.TOO_LARGE,
        EspErr.ESP_ERR_OTA_PARTITION_CONFLICT: ErrorCode.INTERNAL,
    }.get(exc.code, ErrorCode.FLASH_ERROR)
