"""A simulated ESP32 board: a Bumble GATT server running the protocol's board role over the ESP-IDF OTA model.

Theory of operation
-------------------
The GATT write callbacks only enqueue (Bumble runs each ATT write in its own task, so anything slower could
reorder frames; ``notes/ble-testing-with-bumble.md`` 8.4). Three tasks do the work:

* the *worker* feeds control and data writes to :class:`protocol.BoardConnection` in arrival order and acts on its
  events (HELLO -> INFO, BEGIN -> ``esp_ota_begin``, FINISH -> SHA-256 + ``esp_ota_end``, COMMIT ->
  ``esp_ota_set_boot_partition``, REBOOT -> restart);
* the *writer* drains received image bytes (the board's RAM buffer, bounded by the window) into flash through
  ``esp_ota_write`` and reports progress with ``data_written``, which produces the ACKs: an ACK means "in flash";
* the *sender* sends notifications of the current connection in the order the protocol produced them.

A transfer (its BEGIN and open OTA handle) outlives the connection, so BEGIN with the same SHA-256 resumes from
the flash write offset; a reboot or a power cut loses it, as RAM would. Boot goes through
:meth:`bridge.sim.esp_ota.EspOta.boot` (the bootloader's choice, rollback, anti-rollback), then the app's
self-test, then advertising. With a ``state_file`` the flash and eFuse persist across processes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bumble import hci
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from bridge.image import Chip, build_image
from bridge.sim.config import SelfTest, SimBoardConfig, SimFaults
from bridge.sim.esp_ota import BootResult, Efuse, EspErr, EspOta, EspOtaError, OtaImgState, OtaUpdate
from bridge.sim.flash import EmulatedFlash
from bridge.sim.partitions import PARTITION_TABLE_OFFSET, PartitionTable
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
from protocol.gatt import CONTROL_UUID, DATA_UUID, SERVICE_UUID
from protocol.messages import Ack

if TYPE_CHECKING:
    from bridge.sim.world import VirtualWorld

__all__ = ["BoardStats", "SimulatedBoard"]

logger = logging.getLogger(__name__)

_STATE_MAGIC = b"OTABSIM1"
_DATA_HEADER_BYTES = 4
_DATA_OVERHEAD_BYTES = 6
_WRITE_CHUNK_BYTES = 4096


@dataclass
class BoardStats:
    """What the board saw on its data characteristic and did about it (for tests and ``bridge sim``)."""

    data_frames_received: int = 0
    data_bytes_received: int = 0
    frames_dropped: int = 0
    frames_duplicated: int = 0
    frames_corrupted: int = 0
    frames_dropped_buffer_full: int = 0
    image_bytes_accepted: int = 0
    image_bytes_written: int = 0
    connections: int = 0
    forced_disconnects: int = 0
    power_losses: int = 0
    reboots: int = 0
    #: Image offset of each received data frame -> how many times a frame starting there arrived.
    frames_by_offset: collections.Counter[int] = field(default_factory=collections.Counter)
    #: Image offset of each received data frame -> its payload length.
    payload_by_offset: dict[int, int] = field(default_factory=dict)

    @property
    def resent_bytes(self) -> int:
        """Payload bytes that arrived more than once (retransmissions after a NACK or a reconnect)."""
        return sum((count - 1) * self.payload_by_offset[offset] for offset, count in self.frames_by_offset.items())


@dataclass
class _Transfer:
    """The RAM state of one image transfer (lost on reset)."""

    begin: Begin
    update: OtaUpdate
    verified: bool = False
    early_checked: bool = False


class SimulatedBoard:
    """One simulated board on a :class:`~bridge.sim.world.VirtualWorld`. Create it with ``world.add_board``."""

    def __init__(self, world: VirtualWorld, config: SimBoardConfig) -> None:
        self.world = world
        self.config = config
        self.faults = config.faults
        self.stats = BoardStats()
        self.boot_history: list[BootResult] = []
        self.last_update_result = UpdateResult.NONE
        self.bricked = False
        self.booted = asyncio.Event()
        self.device: Device | None = None
        self.address = ""
        self.board_id = config.board_id or b""
        self.name = config.name or ""
        self.chip = Chip(config.chip)
        self.flash = EmulatedFlash(config.flash_bytes, timing=self._timing(), time_scale=config.time_scale)
        self.table = PartitionTable.two_ota(config.ota_partition_bytes)
        self.efuse = Efuse(config.efuse_secure_version, capacity=32 if self.chip is Chip.ESP32 else 16)
        self.ota = EspOta(
            self.flash,
            self.table,
            self.efuse,
            rollback_enabled=config.rollback_enabled,
            anti_rollback=config.anti_rollback,
        )
        self._control: Characteristic[bytes] | None = None
        self._connection: Connection | None = None
        self._conn: BoardConnection | None = None
        self._transfer: _Transfer | None = None
        self._inbox: asyncio.Queue[tuple[Connection, bool, bytes]] = asyncio.Queue()
        self._write_queue: asyncio.Queue[DataReceived | None] = asyncio.Queue()
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._rx_buffered = 0
        self._fired_disconnects: set[int] = set()
        self._power_loss_fired = False
        self._powered = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker_task: asyncio.Task[None] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._sender_task: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._closed = False
        self._update_committed = False
        self._provisioned = False

    # ==========================================================================================================
    # Inspection (what tests assert on)
    # ==========================================================================================================

    @property
    def running_partition(self) -> str:
        return self.ota.running.label if self.ota.running is not None else ""

    @property
    def boot_partition(self) -> str:
        return self.ota.boot_partition().label

    @property
    def running_version(self) -> str:
        info = self.ota.running_info
        return info.version if info is not None else ""

    @property
    def running_project(self) -> str:
        info = self.ota.running_info
        return (info.project if info is not None else "") or self.config.project

    @property
    def running_secure_version(self) -> int:
        info = self.ota.running_info
        return info.secure_version if info is not None else 0

    @property
    def running_sha256(self) -> str:
        """SHA-256 (hex) of the running app image (the image proper, as pushed)."""
        info = self.ota.running_info
        if info is None or self.ota.running is None:
            return ""
        return hashlib.sha256(self.flash.read(self.ota.running.offset, info.image_size)).hexdigest()

    @property
    def rollback_state(self) -> OtaImgState:
        return self.ota.running_state

    @property
    def efuse_secure_version(self) -> int:
        return self.efuse.secure_version

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    @property
    def transfer_offset(self) -> int:
        """Image bytes of the current transfer already in flash (0 when none)."""
        return self._transfer.update.written if self._transfer is not None else 0

    def set_faults(self, faults: SimFaults) -> None:
        """Change the fault knobs from now on (offset-triggered faults may fire again)."""
        self.faults = faults
        self.flash.timing = self._timing()
        self._fired_disconnects.clear()
        self._power_loss_fired = False

    def _timing(self) -> Any:
        timing = self.config.flash_timing
        return timing.scaled(self.faults.flash_slowdown) if self.faults.flash_slowdown != 1.0 else timing

    async def wait_booted(self, timeout_s: float = 5.0) -> None:
        """Wait until the board runs an app and advertises."""
        await asyncio.wait_for(self.booted.wait(), timeout=timeout_s)

    # ==========================================================================================================
    # Lifecycle
    # ==========================================================================================================

    async def start(self) -> None:
        """Load or provision the flash, boot, and start advertising."""
        meta = self._load_state() if self.config.state_file is not None else None
        self._provisioned = meta is None
        if meta is None:
            self._provision()
        address = hci.Address(meta["address"]) if meta and meta.get("address") else self.world.next_address()
        self.address = str(address.to_string(with_type_qualifier=False))
        if not self.board_id:
            self.board_id = bytes(reversed(address.address_bytes))
        if not self.name:
            self.name = f"OTA-{self.board_id[-2:].hex().upper()}"
        self.device = await self.world.new_device(self.name, address)
        self._add_gatt_service(self.device)
        self.device.on(Device.EVENT_CONNECTION, self._on_connection)
        await self._boot(initial=True)

    async def close(self) -> None:
        """Stop the board (a clean shutdown: state is saved)."""
        if self._closed:
            return
        self._closed = True
        self._powered = False
        for task in [self._restarting, *self._tasks]:
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        for task in [self._restarting, *self._tasks]:
            if task is not None and task is not asyncio.current_task():
                with contextlib.suppress(BaseException):
                    await task
        self.ota.close()
        await self._drop_link(hci.HCI_REMOTE_DEVICE_TERMINATED_CONNECTION_DUE_TO_POWER_OFF_ERROR)
        if self.device is not None:
            with contextlib.suppress(Exception):
                await self.device.stop_advertising()
        await self._save_state()

    async def reboot(self) -> None:
        """A reset (like pressing EN): RAM is lost, the bootloader runs, the app starts and advertises again."""
        await self._restart("reset", reason=hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR)

    async def power_cut(self) -> None:
        """Power loss now: nothing more is sent or written; the board boots again after ``boot_time_s``."""
        self.stats.power_losses += 1
        if self._transfer is not None:
            self.last_update_result = UpdateResult.INTERRUPTED
        await self._restart("power loss", reason=hci.HCI_CONNECTION_TIMEOUT_ERROR)

    async def _restart(self, why: str, *, reason: int) -> None:
        logger.info("%s: %s", self.name, why)
        self.stats.reboots += 1
        self._powered = False
        self.booted.clear()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._transfer = None
        self.ota.close()
        # RAM is gone: queued writes, buffered frames.
        self._inbox = asyncio.Queue()
        self._write_queue = asyncio.Queue()
        self._rx_buffered = 0
        await self._drop_link(reason)
        assert self.device is not None
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        await self._save_state()
        await asyncio.sleep(self.config.boot_time_s)
        await self._boot(initial=False)

    async def _drop_link(self, reason: int) -> None:
        connection = self._connection
        self._forget_link()
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(reason), timeout=1.0)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=f"{self.name}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: task %s failed", self.name, task.get_name(), exc_info=task.exception())

    # ==========================================================================================================
    # Flash contents, boot and the app's first moments
    # ==========================================================================================================

    def _provision(self) -> None:
        """``idf.py flash``: partition table at 0x8000, the initial app in ota_0, otadata erased."""
        config = self.config
        if isinstance(config.initial_image, Path):
            image = config.initial_image.read_bytes()
        elif isinstance(config.initial_image, bytes):
            image = config.initial_image
        else:
            image = build_image(
                chip=self.chip,
                project=config.project,
                version=config.initial_version,
                secure_version=config.initial_secure_version,
            )
        slot = self.table.ota_slots[0]
        if len(image) > slot.size:
            raise ValueError(f"the initial image ({len(image)} bytes) does not fit {slot.label} ({slot.size})")
        self.flash.program_now(PARTITION_TABLE_OFFSET, self.table.to_bytes())
        self.flash.program_now(slot.offset, image)

    async def _boot(self, *, initial: bool) -> None:
        while True:
            result = self.ota.boot()
            self.boot_history.append(result)
            if result.partition is None:
                reasons = "; ".join(result.skipped)
                if initial and self._provisioned:
                    raise ValueError(f"the initial image does not boot on this board: {reasons}")
                self.bricked = True
                logger.error("%s: no bootable app: %s", self.name, reasons)
                await self._save_state()
                return
            if result.rolled_back:
                # The newest otadata entry (the last update) is not what runs: aborted, invalid or unbootable.
                self.last_update_result = UpdateResult.ROLLED_BACK
            if result.state is OtaImgState.PENDING_VERIFY and self.config.rollback_enabled:
                if self.config.self_test_s:
                    await asyncio.sleep(self.config.self_test_s)
                if self.config.self_test is SelfTest.PASS:
                    self.ota.mark_app_valid_cancel_rollback()
                    self.last_update_result = UpdateResult.SUCCESS
                elif self.config.self_test is SelfTest.FAIL:
                    logger.info("%s: self-test of %s failed: rolling back", self.name, result.partition.label)
                    self.ota.mark_app_invalid_rollback()
                    self.last_update_result = UpdateResult.ROLLED_BACK
                    self.stats.reboots += 1
                    continue
            elif self._update_committed and not result.rolled_back:
                self.last_update_result = UpdateResult.SUCCESS
            break
        self._update_committed = False
        await self._save_state()
        self._powered = True
        self._spawn(self._worker(), "worker")
        self._spawn(self._writer(), "writer")
        await self._advertise()
        self.booted.set()
        logger.info(
            "%s: running %s %s from %s (%s)%s",
            self.name,
            self.running_project,
            self.running_version,
            self.running_partition,
            self.rollback_state.name,
            "" if initial else f", last update {self.last_update_result.name}",
        )

    async def _advertise(self) -> None:
        assert self.device is not None
        data = AdvertisingData(
            [
                (AdvertisingData.FLAGS, bytes([0x06])),
                (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, bytes(UUID(SERVICE_UUID))),
                (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()),
            ]
        )
        interval = self.config.advertising_interval_ms
        await self.device.start_advertising(
            advertising_data=bytes(data),
            auto_restart=False,
            advertising_interval_min=interval,
            advertising_interval_max=interval,
        )

    # ==========================================================================================================
    # GATT: the callbacks only enqueue
    # ==========================================================================================================

    def _add_gatt_service(self, device: Device) -> None:
        self._control = Characteristic(
            CONTROL_UUID,
            Characteristic.Properties.WRITE | Characteristic.Properties.NOTIFY,
            Characteristic.Permissions.WRITEABLE,
            CharacteristicValue(write=self._on_control_write),
        )
        data: Characteristic[bytes] = Characteristic(
            DATA_UUID,
            Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            Characteristic.Permissions.WRITEABLE,
            CharacteristicValue(write=self._on_data_write),
        )
        device.add_service(Service(SERVICE_UUID, [self._control, data]))

    def _on_connection(self, connection: Connection) -> None:
        if not self._powered:
            self._spawn_detached(connection.disconnect(hci.HCI_CONNECTION_REJECTED_DUE_TO_LIMITED_RESOURCES_ERROR))
            return
        self.stats.connections += 1
        self._connection = connection
        self._conn = BoardConnection(
            max_notify_bytes=self._notify_bytes(connection),
            features=self._features(),
            ack_interval_bytes=self.config.ack_interval_bytes,
        )
        connection.on(Connection.EVENT_DISCONNECTION, lambda reason: self._on_disconnection(connection, reason))
        connection.on(Connection.EVENT_CONNECTION_ATT_MTU_UPDATE, lambda: self._on_mtu(connection))
        self._outbox = asyncio.Queue()
        self._sender_task = self._spawn(self._sender(connection, self._outbox), "sender")
        logger.debug("%s: connected to %s", self.name, connection.peer_address)

    @staticmethod
    def _notify_bytes(connection: Connection) -> int:
        return max(20, min(512, int(connection.att_mtu) - 3))

    def _on_mtu(self, connection: Connection) -> None:
        if connection is self._connection and self._conn is not None:
            self._conn.set_max_notify_bytes(self._notify_bytes(connection))

    def _on_disconnection(self, connection: Connection, reason: int) -> None:
        logger.debug("%s: link dropped (0x%02X)", self.name, reason)
        if connection is self._connection:
            self._forget_link()
        if self._powered and not self._closed and self._connection is None:
            self._spawn_detached(self._advertise())

    def _forget_link(self) -> None:
        """From now on the app ignores the current connection (its writes, its notifications)."""
        self._connection = None
        self._conn = None
        if self._sender_task is not None:
            self._sender_task.cancel()

    def _cut_link(self, connection: Connection, reason: int) -> None:
        """Drop the link now, as a radio failure would: nothing queued on it is processed any more."""
        if connection is self._connection:
            self._forget_link()
        self._spawn_detached(connection.disconnect(reason))

    def _spawn_detached(self, coro: Any) -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):
                await coro

        self._spawn(run(), "detached")

    def _on_control_write(self, connection: Connection, value: bytes) -> None:
        if self._powered and connection is self._connection:
            self._inbox.put_nowait((connection, True, bytes(value)))

    def _on_data_write(self, connection: Connection, value: bytes) -> None:
        if not self._powered or connection is not self._connection:
            return
        stats, faults = self.stats, self.faults
        number = stats.data_frames_received + stats.frames_dropped + 1
        if number in faults.drop_frames:
            stats.frames_dropped += 1
            return
        stats.data_frames_received += 1
        stats.data_bytes_received += len(value)
        payload_bytes = max(0, len(value) - _DATA_OVERHEAD_BYTES)
        offset = struct.unpack_from("<I", value)[0] if len(value) >= _DATA_HEADER_BYTES else None
        limit = faults.rx_buffer_bytes
        if limit is not None and self._rx_buffered + payload_bytes > limit:
            stats.frames_dropped_buffer_full += 1
            return
        frame = bytes(value)
        if number in faults.corrupt_frames and len(frame) > _DATA_OVERHEAD_BYTES:
            stats.frames_corrupted += 1
            frame = frame[:_DATA_HEADER_BYTES] + bytes([frame[_DATA_HEADER_BYTES] ^ 0x01]) + frame[5:]
        copies = 2 if number in faults.duplicate_frames else 1
        if copies == 2:
            stats.frames_duplicated += 1
        for _ in range(copies):
            if offset is not None:
                stats.frames_by_offset[offset] += 1
                stats.payload_by_offset[offset] = payload_bytes
            self._rx_buffered += payload_bytes
            self._inbox.put_nowait((connection, False, frame))

    # ==========================================================================================================
    # The worker: protocol events
    # ==========================================================================================================

    def _notify(self, datagrams: list[bytes]) -> None:
        if self._connection is None:
            return
        for datagram in datagrams:
            self._outbox.put_nowait(datagram)

    async def _sender(self, connection: Connection, outbox: asyncio.Queue[bytes]) -> None:
        assert self.device is not None and self._control is not None
        while True:
            datagram = await outbox.get()
            try:
                await self.device.notify_subscriber(connection, self._control, datagram)
            except Exception as exc:  # the link went away under us
                logger.debug("%s: notification lost: %s", self.name, exc)
                return

    async def _worker(self) -> None:
        while True:
            connection, is_control, value = await self._inbox.get()
            conn = self._conn
            if not is_control:
                self._rx_buffered -= max(0, len(value) - _DATA_OVERHEAD_BYTES)
            if conn is None or connection is not self._connection:
                continue
            if is_control:
                conn.receive_control(value)
            else:
                conn.receive_data(value)
            self._notify(conn.data_to_send())
            await self._drain_events(conn, connection)

    async def _drain_events(self, conn: BoardConnection, connection: Connection) -> None:
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                logger.info("%s: the bridge broke the protocol: %s", self.name, exc)
                self._notify(conn.data_to_send())
                if conn.state is State.ERROR:
                    self._spawn_detached(connection.disconnect())
                continue
            if event is None:
                return
            if isinstance(event, DataReceived):
                self._on_data(event, connection)
            elif isinstance(event, Hello):
                self._notify(conn.send(self._info(conn)))
            elif isinstance(event, Begin):
                await self._on_begin(conn, event)
            elif isinstance(event, Finish):
                await self._on_finish(conn)
            elif isinstance(event, Commit):
                self._on_commit(conn)
            elif isinstance(event, Reboot):
                self._notify(conn.send(RebootOk(delay_ms=self.config.reboot_delay_ms)))
                self._restarting = asyncio.get_running_loop().create_task(self._reboot_after_ok())
            elif isinstance(event, Abort):
                self._discard_transfer(UpdateResult.ABORTED)
            # UpdateAvailable / NoUpdate: this board never sends UPDATE_REQUEST (feature not announced).

    def _features(self) -> Feature:
        features = self.config.features
        if not self.config.rollback_enabled:
            features &= ~Feature.APP_ROLLBACK
        if not self.config.anti_rollback:
            features &= ~Feature.ANTI_ROLLBACK
        return features & ~Feature.UPDATE_REQUEST & ~Feature.SIGNATURE

    def _info(self, conn: BoardConnection) -> Info:
        info = self.ota.running_info
        app = info.app if info is not None else None
        state = self.rollback_state
        next_slot = self.ota.next_update_partition()
        return Info(
            protocol_version=conn.negotiated_version or 1,
            features=self._features(),
            chip_id=int(self.chip),
            chip_revision=self.config.chip_revision,
            window_bytes=self.config.window_bytes,
            max_frame_bytes=self.config.max_frame_bytes,
            erase_strategy=self.config.erase_strategy,
            secure_version=self.efuse.secure_version,
            rollback_state=RollbackState.UNDEFINED if state is OtaImgState.UNDEFINED else RollbackState(int(state)),
            last_update_result=self.last_update_result,
            next_partition_size=next_slot.size,
            elf_sha256=bytes.fromhex(app.elf_sha256) if app is not None else bytes(32),
            board_id=self.board_id,
            project=_clip(self.running_project, 32),
            running_version=_clip(self.running_version, 32),
            running_partition=self.running_partition,
            next_partition=next_slot.label,
        )

    def _refuse(self, conn: BoardConnection, code: ErrorCode, detail: str, in_reply_to: MessageType | None) -> None:
        what = in_reply_to.name if in_reply_to is not None else "the transfer"
        logger.info("%s: refusing %s: %s (%s)", self.name, what, code.name, detail)
        self._notify(conn.send(Error(code=code, in_reply_to=in_reply_to, detail=_clip(detail, 64))))

    async def _on_begin(self, conn: BoardConnection, begin: Begin) -> None:
        next_slot = self.ota.next_update_partition()
        efuse = self.efuse.secure_version
        running_project = self.running_project
        if self.config.rollback_enabled and self.rollback_state is OtaImgState.PENDING_VERIFY:
            return self._refuse(conn, ErrorCode.ROLLBACK_PENDING, "running app not confirmed", MessageType.BEGIN)
        if begin.size > next_slot.size:
            detail = f"{begin.size} > {next_slot.label} {next_slot.size}"
            return self._refuse(conn, ErrorCode.TOO_LARGE, detail, MessageType.BEGIN)
        if self.config.check_project and begin.project and running_project and begin.project != running_project:
            detail = f"board runs {running_project}"
            return self._refuse(conn, ErrorCode.PROJECT_MISMATCH, detail, MessageType.BEGIN)
        if self.config.anti_rollback and begin.secure_version < efuse:
            detail = f"secure_version {begin.secure_version} < {efuse}"
            return self._refuse(conn, ErrorCode.SECURE_VERSION_TOO_LOW, detail, MessageType.BEGIN)
        if begin.sha256.hex() == self.running_sha256:
            return self._refuse(conn, ErrorCode.ALREADY_INSTALLED, "this image is running", MessageType.BEGIN)
        transfer = self._transfer
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
            logger.info("%s: resuming %s at %d", self.name, begin.sha256.hex()[:12], offset)
        else:
            self._discard_transfer(None)
            try:
                update = await self.ota.begin(next_slot, begin.size, self.config.erase_strategy)
            except EspOtaError as exc:
                return self._refuse(conn, _error_code(exc), exc.message, MessageType.BEGIN)
            self._transfer = _Transfer(begin=begin, update=update)
            offset = 0
        self._notify(conn.send(BeginOk(offset=offset, window_bytes=self.config.window_bytes)))

    def _on_data(self, event: DataReceived, connection: Connection) -> None:
        if self._transfer is None:
            return
        self.stats.image_bytes_accepted += len(event.data)
        self._rx_buffered += len(event.data)
        self._write_queue.put_nowait(event)
        for offset in self.faults.disconnect_at_offsets:
            if offset not in self._fired_disconnects and event.offset <= offset < event.end:
                self._fired_disconnects.add(offset)
                self.stats.forced_disconnects += 1
                logger.info("%s: fault: dropping the link at offset %d", self.name, offset)
                self._cut_link(connection, hci.HCI_CONNECTION_TIMEOUT_ERROR)
                return

    async def _on_finish(self, conn: BoardConnection) -> None:
        transfer = self._transfer
        if transfer is None:
            return self._refuse(conn, ErrorCode.INCOMPLETE, "no transfer", MessageType.FINISH)
        await self._drain_writer()
        update = transfer.update
        written = self.flash.read(update.partition.offset, update.written)
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
        if info.chip_id != int(self.chip):
            self._discard_transfer(UpdateResult.FAILED)
            detail = f"image for chip id {info.chip_id}"
            return self._refuse(conn, ErrorCode.CHIP_MISMATCH, detail, MessageType.FINISH)
        transfer.verified = True
        self._notify(conn.send(FinishOk(sha256=transfer.begin.sha256)))

    def _on_commit(self, conn: BoardConnection) -> None:
        transfer = self._transfer
        if transfer is None or not transfer.verified:
            return self._refuse(conn, ErrorCode.BAD_STATE, "nothing verified to commit", MessageType.COMMIT)
        try:
            self.ota.set_boot_partition(transfer.update.partition)
        except EspOtaError as exc:
            code = (
                ErrorCode.SECURE_VERSION_TOO_LOW
                if exc.code is EspErr.ESP_ERR_OTA_SMALL_SEC_VER
                else ErrorCode.BOOT_PARTITION_FAILED
            )
            return self._refuse(conn, code, exc.message, MessageType.COMMIT)
        self._transfer = None
        self._update_committed = True
        self._spawn_detached(self._save_state())
        self._notify(conn.send(CommitOk()))

    async def _reboot_after_ok(self) -> None:
        await asyncio.sleep(self.config.reboot_delay_ms / 1000)
        await self._restart("reboot on request", reason=hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR)

    def _discard_transfer(self, result: UpdateResult | None) -> None:
        transfer, self._transfer = self._transfer, None
        if transfer is None:
            return
        transfer.update.abort()
        while not self._write_queue.empty():
            item = self._write_queue.get_nowait()
            if item is not None:
                self._rx_buffered -= len(item.data)
            self._write_queue.task_done()
        if result is not None:
            self.last_update_result = result

    # ==========================================================================================================
    # The writer: RAM buffer -> flash, ACKs
    # ==========================================================================================================

    async def _drain_writer(self) -> None:
        await self._write_queue.join()

    async def _writer(self) -> None:
        queue = self._write_queue
        while True:
            first = await queue.get()
            items = [first]
            size = len(first.data) if first is not None else 0
            while size < _WRITE_CHUNK_BYTES and not queue.empty():
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
        transfer = self._transfer
        start, data = chunks[0].offset, b"".join(c.data for c in chunks)
        self._rx_buffered -= len(data)
        if transfer is None or transfer.update.written != start:
            return  # the transfer was discarded or restarted meanwhile
        cut = self.faults.power_loss_at_offset
        if cut is not None and not self._power_loss_fired and start <= cut < start + len(data):
            self._power_loss_fired = True
            await transfer.update.write(data[: cut - start])
            logger.info("%s: fault: power lost at image offset %d", self.name, cut)
            self._restarting = asyncio.get_running_loop().create_task(self.power_cut())
            await asyncio.sleep(3600)  # cancelled by the power cut
        try:
            await transfer.update.write(data)
            self._early_checks(transfer)
        except EspOtaError as exc:
            self._fail_transfer(exc)
            return
        self.stats.image_bytes_written += len(data)
        conn = self._conn
        if conn is None or self._transfer is not transfer:
            return
        datagrams = conn.data_written(transfer.update.written)
        if self.faults.ack_lie_bytes:
            datagrams = [self._lie(datagram) for datagram in datagrams]
        self._notify(datagrams)

    def _early_checks(self, transfer: _Transfer) -> None:
        """What an app should check on the first kilobyte: the chip and ``secure_version`` (notes section 5)."""
        validator = transfer.update.validator
        if transfer.early_checked or (validator.app is None and validator.bytes_seen < 0x120):
            return
        transfer.early_checked = True
        if validator.chip_id not in (-1, int(self.chip)):
            raise EspOtaError(EspErr.ESP_ERR_OTA_VALIDATE_FAILED, f"image for chip id {validator.chip_id}")
        app = validator.app
        if self.config.anti_rollback and app is not None and app.secure_version < self.efuse.secure_version:
            raise EspOtaError(EspErr.ESP_ERR_OTA_SMALL_SEC_VER, f"secure_version {app.secure_version}")

    def _fail_transfer(self, exc: EspOtaError) -> None:
        conn = self._conn
        chip = "chip id" in exc.message
        code = ErrorCode.CHIP_MISMATCH if chip else _error_code(exc)
        self._discard_transfer(UpdateResult.FAILED)
        if conn is not None and conn.state is State.TRANSFER:
            self._refuse(conn, code, exc.message, None)

    def _lie(self, datagram: bytes) -> bytes:
        if datagram[:1] != bytes([MessageType.ACK]) or len(datagram) != 9:
            return datagram
        (next_offset,) = struct.unpack_from("<I", datagram, 3)
        return encode_message(Ack(next_offset=next_offset + self.faults.ack_lie_bytes))

    # ==========================================================================================================
    # Persistence
    # ==========================================================================================================

    def _load_state(self) -> dict[str, Any] | None:
        path = self.config.state_file
        if path is None or not path.exists():
            return None
        raw = path.read_bytes()
        if raw[:8] != _STATE_MAGIC:
            raise ValueError(f"{path} is not a simulated board state file")
        (header_len,) = struct.unpack_from("<I", raw, 8)
        meta: dict[str, Any] = json.loads(raw[12 : 12 + header_len])
        contents = zlib.decompress(raw[12 + header_len :])
        if len(contents) != meta["flash_bytes"]:
            raise ValueError(f"{path}: flash image of {len(contents)} bytes, header says {meta['flash_bytes']}")
        self.chip = Chip(meta["chip_id"])
        self.flash = EmulatedFlash(
            len(contents), timing=self._timing(), time_scale=self.config.time_scale, contents=contents
        )
        self.table = PartitionTable.from_bytes(self.flash.read(PARTITION_TABLE_OFFSET, 0xC00))
        self.efuse = Efuse(int(meta["efuse_secure_version"]), capacity=32 if self.chip is Chip.ESP32 else 16)
        self.ota = EspOta(
            self.flash,
            self.table,
            self.efuse,
            rollback_enabled=self.config.rollback_enabled,
            anti_rollback=self.config.anti_rollback,
        )
        self.board_id = self.config.board_id or bytes.fromhex(meta["board_id"])
        self.name = self.config.name or meta["name"]
        self.last_update_result = UpdateResult(meta.get("last_update_result", 0))
        self._update_committed = bool(meta.get("update_committed", False))
        logger.info("%s: state loaded from %s", self.name, path)
        return meta

    async def _save_state(self) -> None:
        path = self.config.state_file
        if path is None or not self.address:
            return
        meta = {
            "flash_bytes": self.flash.size_bytes,
            "chip_id": int(self.chip),
            "efuse_secure_version": self.efuse.secure_version,
            "board_id": self.board_id.hex(),
            "name": self.name,
            "address": self.address,
            "last_update_result": int(self.last_update_result),
            "update_committed": self._update_committed,
        }
        snapshot = self.flash.snapshot()
        await asyncio.to_thread(_write_state, path, meta, snapshot)


def _write_state(path: Path, meta: dict[str, Any], snapshot: bytes) -> None:
    header = json.dumps(meta, sort_keys=True).encode()
    payload = _STATE_MAGIC + struct.pack("<I", len(header)) + header + zlib.compress(snapshot, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
