"""A simulated ESP32 board: a Bumble GATT server running the protocol's board role over the ESP-IDF OTA model.

This module is the hardware: radio (a Bumble device on the world's link), GATT, flash, eFuses, reset and power.
The firmware, the OTA app that speaks the protocol, is :mod:`bridge.sim.firmware`.

The GATT write callbacks only apply the radio-level fault knobs (drop, duplicate, corrupt, full buffer), count,
and enqueue for the app: Bumble runs each ATT write in its own task, so anything slower could reorder frames
(``notes/ble-testing-with-bumble.md`` 8.4). A *sender* task sends the notifications of the current connection in
the order the protocol produced them.

Boot goes through :meth:`bridge.sim.esp_ota.EspOta.boot` (the bootloader's choice, rollback, anti-rollback), then
the new app's self-test (``SelfTest``), then advertising, ``boot_time_s`` after the reset. A reset or power cut
loses RAM (the app's transfer) and drops the link. With a ``state_file`` the flash and eFuse persist across
processes (:mod:`bridge.sim.state`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import struct
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bumble import hci
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from bridge.image import Chip, build_image
from bridge.sim.config import SelfTest, SimBoardConfig, SimFaults
from bridge.sim.esp_ota import BootResult, Efuse, EspOta, OtaImgState
from bridge.sim.firmware import DATA_HEADER_BYTES, DATA_OVERHEAD_BYTES, OtaApp
from bridge.sim.flash import EmulatedFlash
from bridge.sim.partitions import PARTITION_TABLE_BYTES, PARTITION_TABLE_OFFSET, PartitionTable
from bridge.sim.state import BoardState, load_state, save_state
from protocol import BoardConnection, UpdateResult
from protocol.gatt import CONTROL_UUID, DATA_UUID, SERVICE_UUID

if TYPE_CHECKING:
    from bridge.sim.world import VirtualWorld

__all__ = ["BoardStats", "SimulatedBoard"]

logger = logging.getLogger(__name__)


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
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._powered = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._sender_task: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._closed = False
        self._update_committed = False
        self._provisioned = False
        self.app = OtaApp(self)

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
        transfer = self.app.transfer
        return transfer.update.written if transfer is not None else 0

    def set_faults(self, faults: SimFaults) -> None:
        """Change the fault knobs from now on (offset-triggered faults may fire again)."""
        self.faults = faults
        self.flash.timing = self._timing()
        self.app.rearm_faults()

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
        saved = load_state(self.config.state_file) if self.config.state_file is not None else None
        self._provisioned = saved is None
        if saved is None:
            self._provision()
        else:
            self._restore(saved)
        address = hci.Address(saved.address) if saved is not None else self.world.next_address()
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
        # Work that talks to the controller (a reboot in progress, advertising again after a disconnect) is let
        # finish: cancelling it between an HCI command and its answer leaves Bumble's host with a dead future.
        restarting = self._restarting
        if restarting is not None and not restarting.done() and restarting is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(restarting), timeout=self.config.boot_time_s + 5.0)
        self._powered = False
        await self._stop_tasks(self._restarting)
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
        if self.app.transfer is not None:
            self.last_update_result = UpdateResult.INTERRUPTED
        await self._restart("power loss", reason=hci.HCI_CONNECTION_TIMEOUT_ERROR)

    async def _restart(self, why: str, *, reason: int) -> None:
        logger.info("%s: %s", self.name, why)
        self.stats.reboots += 1
        self._powered = False
        self.booted.clear()
        await self._stop_tasks()
        self.app.reset()
        self.ota.close()
        await self._drop_link(reason)
        assert self.device is not None
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        await self._save_state()
        await asyncio.sleep(self.config.boot_time_s)
        await self._boot(initial=False)

    async def _stop_tasks(self, *extra: asyncio.Task[None] | None) -> None:
        """Stop the board's tasks; those talking to the controller (``-detached``) may finish first (bounded)."""
        current = asyncio.current_task()
        talking = [t for t in self._tasks if t.get_name().endswith("-detached") and t is not current]
        if talking:
            await asyncio.wait(talking, timeout=2.0)
        others = [t for t in [*extra, *self._tasks] if t is not None and t is not current and not t.done()]
        for task in others:
            task.cancel()
        for task in others:
            with contextlib.suppress(BaseException):
                await task

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

    def _restore(self, saved: BoardState) -> None:
        """Power on with the flash and eFuses of a saved board."""
        self.chip = Chip(saved.chip_id)
        self.flash = EmulatedFlash(
            len(saved.flash), timing=self._timing(), time_scale=self.config.time_scale, contents=saved.flash
        )
        self.table = PartitionTable.from_bytes(self.flash.read(PARTITION_TABLE_OFFSET, PARTITION_TABLE_BYTES))
        self.efuse = Efuse(saved.efuse_secure_version, capacity=32 if self.chip is Chip.ESP32 else 16)
        self.ota = EspOta(
            self.flash,
            self.table,
            self.efuse,
            rollback_enabled=self.config.rollback_enabled,
            anti_rollback=self.config.anti_rollback,
        )
        self.board_id = self.config.board_id or saved.board_id
        self.name = self.config.name or saved.name
        self.last_update_result = UpdateResult(saved.last_update_result)
        self._update_committed = saved.update_committed
        logger.info("%s: state loaded from %s", self.name, self.config.state_file)

    async def _save_state(self) -> None:
        path = self.config.state_file
        if path is None or not self.address:
            return
        state = BoardState(
            flash=self.flash.snapshot(),
            chip_id=int(self.chip),
            efuse_secure_version=self.efuse.secure_version,
            board_id=self.board_id,
            name=self.name,
            address=self.address,
            last_update_result=int(self.last_update_result),
            update_committed=self._update_committed,
        )
        await asyncio.to_thread(save_state, path, state)

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
        self.app.start()
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
            features=self.app.features(),
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
            self.app.deliver_control(connection, bytes(value))

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
        payload_bytes = max(0, len(value) - DATA_OVERHEAD_BYTES)
        offset = struct.unpack_from("<I", value)[0] if len(value) >= DATA_HEADER_BYTES else None
        frame = bytes(value)
        if number in faults.corrupt_frames and len(frame) > DATA_OVERHEAD_BYTES:
            stats.frames_corrupted += 1
            frame = (
                frame[:DATA_HEADER_BYTES] + bytes([frame[DATA_HEADER_BYTES] ^ 0x01]) + frame[DATA_HEADER_BYTES + 1 :]
            )
        copies = 2 if number in faults.duplicate_frames else 1
        if copies == 2:
            stats.frames_duplicated += 1
        for _ in range(copies):
            if offset is not None:
                stats.frames_by_offset[offset] += 1
                stats.payload_by_offset[offset] = payload_bytes
            if not self.app.deliver_data(connection, frame, payload_bytes):
                stats.frames_dropped_buffer_full += 1

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

    def schedule_restart(self, restart: Coroutine[Any, Any, None]) -> None:
        """Run a reboot or power cut outside the app's tasks (the restart cancels them)."""
        self._restarting = asyncio.get_running_loop().create_task(restart)

    async def reboot_after_ok(self) -> None:
        await asyncio.sleep(self.config.reboot_delay_ms / 1000)
        await self._restart("reboot on request", reason=hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR)
