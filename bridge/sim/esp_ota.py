"""ESP-IDF's OTA rules over the emulated flash: ``esp_ota_*``, otadata, the bootloader's choice, rollback, eFuse.

Facts (``notes/espressif-ble-ota.md`` section 5, ESP-IDF ``esp_ota_ops.h`` and the OTA guide):

* ``otadata`` is two 4 KB sectors, each holding one ``esp_ota_select_entry_t`` (ota_seq u32, seq_label[20],
  ota_state u32, crc u32 = CRC-32 of ota_seq). The valid entry with the highest ``ota_seq`` wins; it boots slot
  ``(ota_seq - 1) % number_of_ota_slots``. A new entry goes to the *other* sector, so a torn write leaves the old
  one. Both erased: the bootloader boots ``ota_0`` (there is no factory app here).
* ``esp_ota_begin`` refuses the running slot (``ESP_ERR_OTA_PARTITION_CONFLICT``) and, with rollback enabled, a
  running app still ``PENDING_VERIFY`` (``ESP_ERR_OTA_ROLLBACK_INVALID_STATE``); it erases per the chosen
  :class:`protocol.EraseStrategy`: ``SEQUENTIAL_4K`` (ESP-IDF's ``OTA_WITH_SEQUENTIAL_WRITES``: each 4 KB sector
  is erased inline when the write reaches it, so every sector costs an erase stall while data waits),
  ``UP_FRONT`` (``esp_ota_begin(image_size)``: one long stall at BEGIN, about 4 s per MB, then programming
  speed) or ``BLOCK_AHEAD_64K`` (one 64 KB block at BEGIN, then a background eraser keeps up to two blocks
  erased ahead of the write cursor while data keeps arriving, ESPHome's approach). ``esp_ota_write`` refuses a
  first byte other than 0xE9 (``ESP_ERR_OTA_VALIDATE_FAILED``) and data past the partition
  (``ESP_ERR_INVALID_SIZE``). ``esp_ota_end`` verifies the image read back from flash.
* ``esp_ota_set_boot_partition`` verifies the image again, refuses a ``secure_version`` below the eFuse counter
  (``ESP_ERR_OTA_SMALL_SEC_VER``) and writes otadata with state ``NEW`` (rollback enabled) or ``UNDEFINED``.
* Bootloader, rollback enabled: ``NEW`` becomes ``PENDING_VERIFY`` on the first boot; an app found still
  ``PENDING_VERIFY`` on the next boot (it never confirmed) becomes ``ABORTED``, and ``INVALID``/``ABORTED``
  entries are never selected, so the previous slot boots. An image that fails verification or is below the eFuse
  ``secure_version`` is skipped for the next candidate.
* The app confirms with ``esp_ota_mark_app_valid_cancel_rollback`` (``VALID``; with anti-rollback the eFuse
  counter rises to the app's ``secure_version``) or gives up with ``esp_ota_mark_app_invalid_rollback_and_reboot``
  (``INVALID``; refused with ``ESP_ERR_OTA_ROLLBACK_FAILED`` when no other app could boot).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum, unique

from bridge.image import AppDescriptor, ImageInfo, StreamValidator, VerdictCode, inspect_image
from bridge.sim.flash import BLOCK_BYTES, SECTOR_BYTES, EmulatedFlash
from bridge.sim.partitions import Partition, PartitionTable
from protocol.constants import EraseStrategy

__all__ = [
    "BootResult",
    "Efuse",
    "EspErr",
    "EspOta",
    "EspOtaError",
    "OtaImgState",
    "OtaSelectEntry",
    "OtaUpdate",
]

logger = logging.getLogger(__name__)

IMAGE_MAGIC = 0xE9
_ENTRY = struct.Struct("<I20sII")
_UINT32_MAX = 0xFFFFFFFF


@unique
class EspErr(IntEnum):
    """``esp_err_t`` values the OTA API returns (``esp_err.h``, ``esp_ota_ops.h``)."""

    ESP_ERR_INVALID_ARG = 0x102
    ESP_ERR_INVALID_STATE = 0x103
    ESP_ERR_INVALID_SIZE = 0x104
    ESP_ERR_NOT_FOUND = 0x105
    ESP_ERR_OTA_PARTITION_CONFLICT = 0x1501
    ESP_ERR_OTA_SELECT_INFO_INVALID = 0x1502
    ESP_ERR_OTA_VALIDATE_FAILED = 0x1503
    ESP_ERR_OTA_SMALL_SEC_VER = 0x1504
    ESP_ERR_OTA_ROLLBACK_FAILED = 0x1505
    ESP_ERR_OTA_ROLLBACK_INVALID_STATE = 0x1506


class EspOtaError(Exception):
    """An ``esp_ota_*`` call returned an error; ``code`` is the ``esp_err_t``."""

    def __init__(self, code: EspErr, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@unique
class OtaImgState(IntEnum):
    """``esp_ota_img_states_t``."""

    NEW = 0x0
    PENDING_VERIFY = 0x1
    VALID = 0x2
    INVALID = 0x3
    ABORTED = 0x4
    UNDEFINED = 0xFFFFFFFF


@dataclass(frozen=True)
class OtaSelectEntry:
    """One otadata sector's ``esp_ota_select_entry_t``."""

    seq: int
    state: OtaImgState = OtaImgState.UNDEFINED
    label: bytes = b"\xff" * 20
    crc: int | None = None

    @staticmethod
    def seq_crc(seq: int) -> int:
        # esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4): zlib's CRC-32 seeded with 0xFFFFFFFF.
        return zlib.crc32(struct.pack("<I", seq), _UINT32_MAX) & _UINT32_MAX

    @property
    def is_valid(self) -> bool:
        """A written entry whose CRC matches (``bootloader_common_ota_select_valid``)."""
        return self.seq != _UINT32_MAX and self.crc == self.seq_crc(self.seq)

    @property
    def is_selectable(self) -> bool:
        return self.is_valid and self.state not in (OtaImgState.INVALID, OtaImgState.ABORTED)

    def with_state(self, state: OtaImgState) -> OtaSelectEntry:
        return OtaSelectEntry(self.seq, state, self.label, self.crc)

    def to_bytes(self) -> bytes:
        crc = self.seq_crc(self.seq) if self.crc is None else self.crc
        return _ENTRY.pack(self.seq, self.label, int(self.state), crc)

    @classmethod
    def from_bytes(cls, raw: bytes) -> OtaSelectEntry:
        seq, label, state, crc = _ENTRY.unpack(raw[: _ENTRY.size])
        try:
            img_state = OtaImgState(state)
        except ValueError:
            img_state = OtaImgState.UNDEFINED
        return cls(seq, img_state, label, crc)


@dataclass
class Efuse:
    """The anti-rollback eFuse counter: only rises; 32 bits on the ESP32, 16 on later chips."""

    secure_version: int = 0
    capacity: int = 32

    def burn(self, secure_version: int) -> bool:
        """Raise the counter to ``secure_version``; True if it changed. Beyond the field's capacity: error."""
        if secure_version > self.capacity:
            raise EspOtaError(EspErr.ESP_ERR_INVALID_ARG, f"secure_version {secure_version} > eFuse capacity")
        if secure_version <= self.secure_version:
            return False
        self.secure_version = secure_version
        return True


@dataclass(frozen=True)
class BootResult:
    """What the bootloader did on one reset."""

    partition: Partition | None
    state: OtaImgState
    info: ImageInfo | None
    rolled_back: bool
    skipped: tuple[str, ...] = ()

    @property
    def app(self) -> AppDescriptor | None:
        return self.info.app if self.info is not None else None


def _align_up(value: int, unit: int) -> int:
    return (value + unit - 1) // unit * unit


class OtaUpdate:
    """An open ``esp_ota_handle_t``: sequential writes into one slot, erasing per :class:`EraseStrategy`."""

    #: Blocks the ``ahead64k`` eraser keeps erased beyond the write cursor.
    AHEAD_BLOCKS = 2

    def __init__(self, ota: EspOta, partition: Partition, image_size: int, strategy: EraseStrategy) -> None:
        self.ota = ota
        self.partition = partition
        self.image_size = image_size
        self.strategy = strategy
        self.written = 0
        self.erased_end = 0  # partition-relative: [0, erased_end) is erased and not yet written past
        self.validator = StreamValidator()
        self.closed = False
        self._erased = asyncio.Condition()
        self._eraser: asyncio.Task[None] | None = None
        self._cursor_moved = asyncio.Event()
        self._eraser_done = True

    @property
    def flash(self) -> EmulatedFlash:
        return self.ota.flash

    @property
    def erase_target(self) -> int:
        """How far this update will erase in total (the declared image size, sector aligned)."""
        return min(_align_up(self.image_size, SECTOR_BYTES), self.partition.size)

    async def _start(self) -> None:
        if self.strategy is EraseStrategy.UP_FRONT:
            await self.flash.erase_range(self.partition.offset, self.erase_target)
            self.erased_end = self.erase_target
        elif self.strategy is EraseStrategy.BLOCK_AHEAD_64K:
            first = min(BLOCK_BYTES, self.erase_target)
            await self.flash.erase_range(self.partition.offset, first)
            self.erased_end = first
            self._eraser_done = False
            self._eraser = asyncio.get_running_loop().create_task(self._erase_ahead(), name="ota-erase-ahead")

    async def _erase_ahead(self) -> None:
        try:
            while self.erased_end < self.erase_target and not self.closed:
                if self.erased_end >= self.written + self.AHEAD_BLOCKS * BLOCK_BYTES:
                    self._cursor_moved.clear()
                    await self._cursor_moved.wait()
                    continue
                size = min(BLOCK_BYTES, self.erase_target - self.erased_end)
                await self.flash.erase_range(self.partition.offset + self.erased_end, size)
                async with self._erased:
                    self.erased_end += size
                    self._erased.notify_all()
        finally:
            self._eraser_done = True
            async with self._erased:
                self._erased.notify_all()

    async def _ensure_erased(self, end: int) -> None:
        if end <= self.erased_end:
            return
        if not self._eraser_done:
            async with self._erased:
                await self._erased.wait_for(lambda: self.erased_end >= end or self._eraser_done)
            if end <= self.erased_end:
                return
        # Sequential writes, or data beyond the declared size: erase the sectors the write reaches, inline.
        while self.erased_end < end:
            await self.flash.erase_range(self.partition.offset + self.erased_end, SECTOR_BYTES)
            self.erased_end += SECTOR_BYTES

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """``esp_ota_write``: append ``data`` to the image."""
        if self.closed:
            raise EspOtaError(EspErr.ESP_ERR_INVALID_STATE, "the OTA handle is closed")
        if not data:
            return
        if self.written == 0 and data[0] != IMAGE_MAGIC:
            raise EspOtaError(EspErr.ESP_ERR_OTA_VALIDATE_FAILED, f"first byte is {data[0]:#04x}, not 0xe9")
        end = self.written + len(data)
        if end > self.partition.size:
            raise EspOtaError(EspErr.ESP_ERR_INVALID_SIZE, f"{end} bytes do not fit partition {self.partition.label}")
        await self._ensure_erased(end)
        await self.flash.program(self.partition.offset + self.written, data)
        self.validator.feed(data)
        self.written = end
        self._cursor_moved.set()

    async def end(self) -> ImageInfo:
        """``esp_ota_end``: verify the image as read back from flash; the handle is closed either way."""
        self._close()
        info = inspect_image(self.flash.read(self.partition.offset, self.written))
        if not info.ok:
            raise EspOtaError(EspErr.ESP_ERR_OTA_VALIDATE_FAILED, info.verdict.message)
        return info

    def abort(self) -> None:
        """``esp_ota_abort``: free the handle without verifying."""
        self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._eraser is not None:
            self._eraser.cancel()
        self._cursor_moved.set()
        if self in self.ota.open_updates:
            self.ota.open_updates.remove(self)


class EspOta:
    """The OTA-related state of one board: flash, partition table, eFuse, and which app is running."""

    def __init__(
        self,
        flash: EmulatedFlash,
        table: PartitionTable,
        efuse: Efuse,
        *,
        rollback_enabled: bool = True,
        anti_rollback: bool = True,
    ) -> None:
        if table.end > flash.size_bytes:
            raise ValueError(f"the partition table ends at {table.end:#x}, beyond the {flash.size_bytes:#x} flash")
        self.flash = flash
        self.table = table
        self.efuse = efuse
        self.rollback_enabled = rollback_enabled
        self.anti_rollback = anti_rollback
        self.running: Partition | None = None
        self.running_info: ImageInfo | None = None
        self.open_updates: list[OtaUpdate] = []

    # -- otadata --------------------------------------------------------------------------------------------------

    def read_otadata(self) -> tuple[OtaSelectEntry, OtaSelectEntry]:
        base = self.table.otadata.offset
        first = OtaSelectEntry.from_bytes(self.flash.read(base, _ENTRY.size))
        second = OtaSelectEntry.from_bytes(self.flash.read(base + SECTOR_BYTES, _ENTRY.size))
        return first, second

    def _active_index(self, entries: tuple[OtaSelectEntry, OtaSelectEntry]) -> int | None:
        """``bootloader_common_get_active_otadata``: the selectable entry with the highest sequence number."""
        candidates = [i for i, e in enumerate(entries) if e.is_selectable]
        if not candidates:
            return None
        return max(candidates, key=lambda i: entries[i].seq)

    def _write_entry(self, index: int, entry: OtaSelectEntry) -> None:
        offset = self.table.otadata.offset + index * SECTOR_BYTES
        self.flash.erase_now(offset, SECTOR_BYTES)
        self.flash.program_now(offset, entry.to_bytes())

    def _slot_for_seq(self, seq: int) -> Partition:
        slots = self.table.ota_slots
        return slots[(seq - 1) % len(slots)]

    def _entry_for(self, partition: Partition) -> tuple[int, OtaSelectEntry] | None:
        """The active otadata entry if it selects ``partition``."""
        entries = self.read_otadata()
        index = self._active_index(entries)
        if index is None or self._slot_for_seq(entries[index].seq) != partition:
            return None
        return index, entries[index]

    # -- queries (esp_ota_get_*) -------------------------------------------------------------------------------

    def boot_partition(self) -> Partition:
        """``esp_ota_get_boot_partition``: what otadata selects (``ota_0`` when otadata is blank)."""
        entries = self.read_otadata()
        index = self._active_index(entries)
        return self._slot_for_seq(entries[index].seq) if index is not None else self.table.ota_slots[0]

    def next_update_partition(self) -> Partition:
        """``esp_ota_get_next_update_partition``: the slot after the running one."""
        slots = self.table.ota_slots
        if self.running is None:
            return slots[0]
        return slots[(slots.index(self.running) + 1) % len(slots)]

    def state_of(self, partition: Partition) -> OtaImgState:
        """``esp_ota_get_state_partition``: the state otadata records for ``partition`` (``UNDEFINED`` if none)."""
        for entry in sorted(self.read_otadata(), key=lambda e: e.seq if e.is_valid else -1, reverse=True):
            if entry.is_valid and self._slot_for_seq(entry.seq) == partition:
                return entry.state
        return OtaImgState.UNDEFINED

    @property
    def running_state(self) -> OtaImgState:
        return self.state_of(self.running) if self.running is not None else OtaImgState.UNDEFINED

    def image_in(self, partition: Partition) -> ImageInfo:
        """Inspect the app in ``partition`` as the bootloader reads it (bytes past the image do not matter)."""
        info = inspect_image(self.flash.read(partition.offset, partition.size))
        if info.verdict.code is VerdictCode.TRAILING_DATA and info.image_size:
            info = inspect_image(self.flash.read(partition.offset, info.image_size))
        return info

    # -- esp_ota_begin / set_boot_partition / mark ---------------------------------------------------------------

    async def begin(
        self, partition: Partition, image_size: int, strategy: EraseStrategy = EraseStrategy.SEQUENTIAL_4K
    ) -> OtaUpdate:
        """``esp_ota_begin``. Erases per ``strategy`` (``upfront`` takes the whole erase time here)."""
        if not partition.is_ota_slot or partition not in self.table.partitions:
            raise EspOtaError(EspErr.ESP_ERR_INVALID_ARG, f"{partition.label} is not an OTA app slot of this board")
        if partition == self.running:
            raise EspOtaError(EspErr.ESP_ERR_OTA_PARTITION_CONFLICT, f"{partition.label} is the running partition")
        if self.rollback_enabled and self.running_state is OtaImgState.PENDING_VERIFY:
            raise EspOtaError(
                EspErr.ESP_ERR_OTA_ROLLBACK_INVALID_STATE, "the running app is not confirmed yet (PENDING_VERIFY)"
            )
        if image_size <= 0 or image_size > partition.size:
            raise EspOtaError(
                EspErr.ESP_ERR_INVALID_SIZE, f"{image_size} bytes do not fit {partition.label} ({partition.size})"
            )
        for other in list(self.open_updates):
            if other.partition == partition:
                other.abort()
        update = OtaUpdate(self, partition, image_size, strategy)
        self.open_updates.append(update)
        try:
            await update._start()
        except BaseException:
            update.abort()
            raise
        return update

    def set_boot_partition(self, partition: Partition) -> None:
        """``esp_ota_set_boot_partition``: verify the image, check anti-rollback, and select it in otadata."""
        if not partition.is_ota_slot:
            raise EspOtaError(EspErr.ESP_ERR_INVALID_ARG, f"{partition.label} is not an OTA app slot")
        info = self.image_in(partition)
        if not info.ok:
            raise EspOtaError(EspErr.ESP_ERR_OTA_VALIDATE_FAILED, f"{partition.label}: {info.verdict.message}")
        if self.anti_rollback and info.secure_version < self.efuse.secure_version:
            raise EspOtaError(
                EspErr.ESP_ERR_OTA_SMALL_SEC_VER,
                f"secure_version {info.secure_version} < eFuse {self.efuse.secure_version}",
            )
        entries = self.read_otadata()
        active = self._active_index(entries)
        slots = self.table.ota_slots
        target = slots.index(partition)
        if active is None:
            seq, sector = target + 1, 0
        else:
            seq = entries[active].seq + 1
            while (seq - 1) % len(slots) != target:
                seq += 1
            sector = active ^ 1
        state = OtaImgState.NEW if self.rollback_enabled else OtaImgState.UNDEFINED
        self._write_entry(sector, OtaSelectEntry(seq, state))
        logger.debug("otadata: seq %d -> %s (%s) in sector %d", seq, partition.label, state.name, sector)

    def mark_app_valid_cancel_rollback(self) -> bool:
        """``esp_ota_mark_app_valid_cancel_rollback``; raises the eFuse counter (anti-rollback). True if changed."""
        if self.running is None:
            raise EspOtaError(EspErr.ESP_ERR_INVALID_STATE, "no app is running")
        changed = False
        found = self._entry_for(self.running)
        if found is not None and found[1].state is not OtaImgState.VALID:
            index, entry = found
            self._write_entry(index, entry.with_state(OtaImgState.VALID))
            changed = True
        if self.anti_rollback and self.running_info is not None:
            changed = self.efuse.burn(self.running_info.secure_version) or changed
        return changed

    def check_rollback_is_possible(self) -> bool:
        """``esp_ota_check_rollback_is_possible``: another slot holds an app that would boot."""
        for slot in self.table.ota_slots:
            if slot == self.running or self.state_of(slot) in (OtaImgState.INVALID, OtaImgState.ABORTED):
                continue
            info = self.image_in(slot)
            if info.ok and not (self.anti_rollback and info.secure_version < self.efuse.secure_version):
                return True
        return False

    def mark_app_invalid_rollback(self) -> None:
        """``esp_ota_mark_app_invalid_rollback_and_reboot`` without the reboot (the board does that)."""
        if self.running is None:
            raise EspOtaError(EspErr.ESP_ERR_INVALID_STATE, "no app is running")
        if not self.check_rollback_is_possible():
            raise EspOtaError(EspErr.ESP_ERR_OTA_ROLLBACK_FAILED, "no other app could boot")
        found = self._entry_for(self.running)
        if found is not None:
            index, entry = found
            self._write_entry(index, entry.with_state(OtaImgState.INVALID))

    # -- the bootloader ------------------------------------------------------------------------------------------

    def boot(self) -> BootResult:
        """A reset: the second-stage bootloader picks, checks and starts an app (or finds none)."""
        for update in list(self.open_updates):
            update.abort()
        self.running = None
        self.running_info = None
        rolled_back = False
        skipped: list[str] = []
        entries = self.read_otadata()
        index = self._active_index(entries)
        if index is not None and self.rollback_enabled:
            entry = entries[index]
            if entry.state is OtaImgState.PENDING_VERIFY:
                # The app never confirmed itself before this reset: abort it and fall back.
                self._write_entry(index, entry.with_state(OtaImgState.ABORTED))
                skipped.append(f"{self._slot_for_seq(entry.seq).label}: aborted (never confirmed)")
                rolled_back = True
                entries = self.read_otadata()
                index = self._active_index(entries)
            elif entry.state is OtaImgState.NEW:
                self._write_entry(index, entry.with_state(OtaImgState.PENDING_VERIFY))
                entries = self.read_otadata()
        slots = self.table.ota_slots
        first = self._slot_for_seq(entries[index].seq) if index is not None else slots[0]
        # ESP-IDF tries the selected slot, then the lower ones, then the higher ones.
        start = slots.index(first)
        order = [slots[start], *reversed(slots[:start]), *slots[start + 1 :]]
        for position, slot in enumerate(order):
            if position and self.state_of(slot) in (OtaImgState.INVALID, OtaImgState.ABORTED):
                skipped.append(f"{slot.label}: marked {self.state_of(slot).name}")
                continue
            info = self.image_in(slot)
            if not info.ok:
                skipped.append(f"{slot.label}: {info.verdict.code}")
                continue
            if self.anti_rollback and info.secure_version < self.efuse.secure_version:
                skipped.append(
                    f"{slot.label}: secure_version {info.secure_version} < eFuse {self.efuse.secure_version}"
                )
                continue
            self.running = slot
            self.running_info = info
            state = self.state_of(slot)
            # Rolled back: the newest otadata entry (the last update) selects another slot than the one booted.
            written = [e for e in self.read_otadata() if e.is_valid]
            if written and self._slot_for_seq(max(written, key=lambda e: e.seq).seq) != slot:
                rolled_back = True
            logger.debug("boot: %s (%s) %s", slot.label, state.name, info.version)
            return BootResult(slot, state, info, rolled_back, tuple(skipped))
        logger.warning("boot: no bootable app (%s)", "; ".join(skipped))
        return BootResult(None, OtaImgState.UNDEFINED, None, rolled_back, tuple(skipped))

    def close(self) -> None:
        """Abort open updates (the board is going away)."""
        for update in list(self.open_updates):
            update.abort()
