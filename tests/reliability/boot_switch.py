"""Power loss during the boot-partition switch, at every flash operation and inside every otadata write.

The simulator's ESP-IDF model (:mod:`bridge.sim.esp_ota`) switches the boot partition by writing one
``esp_ota_select_entry_t`` into the otadata sector that is *not* the active one (erase the sector, program 32
bytes), then the bootloader marks the new app PENDING_VERIFY on its first boot and the app marks itself VALID.
Each of those is an erase and a program of otadata. Here the power goes out at every one of them, including part
way through a program (the first *k* bytes of the entry programmed, the rest still erased) and half way through an
erase; then the board powers up with nothing but its flash and eFuses (a fresh ``EspOta``), the bootloader picks an
app, that app passes its self-test, and the board resets once more. Both boots must run the old or the new image,
never neither.

Scenarios: the first update of a board (otadata blank, running ota_0), a second and a third update (both otadata
sectors in use, the older entry pointing at the slot being replaced), and a new image that fails its self-test
(the rollback write).
No radio here: the interesting part is the flash, and this way all cut points run in seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from bridge.image import Chip, build_image
from bridge.sim.esp_ota import Efuse, EspOta, OtaImgState
from bridge.sim.flash import EmulatedFlash
from bridge.sim.partitions import PARTITION_TABLE_OFFSET, PartitionTable

from .matrix import Outcome, Stopwatch, TrialResult

__all__ = ["SCENARIOS", "BootSwitchCut", "boot_switch_trials", "run_boot_switch_trial"]

_FLASH_BYTES = 2 * 1024 * 1024
_SLOT_BYTES = 0x80000
_ENTRY_BYTES = 32


class PowerLoss(Exception):
    """The power went out in the middle of a flash operation."""


class TearingFlash(EmulatedFlash):
    """NOR flash whose power goes out at the ``cut_at``-th erase or program after :meth:`arm`.

    A program cut after ``torn_bytes`` bytes leaves those programmed and the rest as they were; an erase cut with
    ``torn_bytes`` > 0 erased only the first half of the sector.
    """

    def __init__(self, contents: bytes) -> None:
        super().__init__(len(contents), contents=contents)
        self.cut_at: int | None = None
        self.torn_bytes = 0
        self.operations = 0
        self.log: list[str] = []

    def arm(self, cut_at: int | None, torn_bytes: int = 0) -> None:
        self.cut_at, self.torn_bytes, self.operations = cut_at, torn_bytes, 0

    def _cut_now(self) -> bool:
        index = self.operations
        self.operations += 1
        return self.cut_at is not None and index == self.cut_at

    def program_now(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self.log.append(f"program {len(data)} B at {offset:#x}")
        if self._cut_now():
            if self.torn_bytes:
                super().program_now(offset, bytes(data)[: self.torn_bytes])
            raise PowerLoss(f"power lost programming {offset:#x} after {self.torn_bytes} bytes")
        super().program_now(offset, data)

    def erase_now(self, offset: int, length: int) -> None:
        self.log.append(f"erase {length} B at {offset:#x}")
        if self._cut_now():
            if self.torn_bytes:  # half erased: erase all, then program the old second half back
                half = length // 2
                kept = self.read(offset + half, length - half)
                super().erase_now(offset, length)
                super().program_now(offset + half, kept)
            raise PowerLoss(f"power lost erasing {offset:#x}" + (" half way" if self.torn_bytes else ""))
        super().erase_now(offset, length)


@dataclass(frozen=True)
class _Images:
    old: bytes
    new: bytes

    def which(self, data: bytes) -> str:
        digest = hashlib.sha256(data).digest()
        return "old" if digest == hashlib.sha256(self.old).digest() else "new" if digest == _sha(self.new) else "other"


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class BootSwitchCut:
    scenario: str
    """One of :data:`SCENARIOS`."""
    cut_at: int
    torn_bytes: int


def _images() -> _Images:
    old = build_image(chip=Chip.ESP32C3, project="sw", version="1.0.0", size=160 * 1024, seed=1)
    new = build_image(chip=Chip.ESP32C3, project="sw", version="2.0.0", size=192 * 1024, seed=2)
    return _Images(old, new)


def _fresh(contents: bytes, efuse: Efuse) -> tuple[TearingFlash, EspOta]:
    flash = TearingFlash(contents)
    return flash, EspOta(flash, PartitionTable.two_ota(_SLOT_BYTES), efuse)


async def _prepared(scenario: str, images: _Images) -> tuple[bytes, Efuse]:
    """Flash contents just before the switch: the running app and the verified new image in the other slot."""
    table = PartitionTable.two_ota(_SLOT_BYTES)
    blank = EmulatedFlash(_FLASH_BYTES)
    blank.program_now(PARTITION_TABLE_OFFSET, table.to_bytes())
    blank.program_now(table.ota_slots[0].offset, images.old)
    efuse = Efuse()
    ota = EspOta(blank, table, efuse)
    ota.boot()
    # Earlier updates (of the old image) fill both otadata sectors; the third update overwrites the slot the
    # older entry still points at.
    for _ in range({"second update": 1, "third update": 2}.get(scenario, 0)):
        await _install(ota, images.old)
        ota.boot()
        ota.mark_app_valid_cancel_rollback()
    await _install(ota, images.new, switch=False)
    return blank.snapshot(), efuse


async def _install(ota: EspOta, image: bytes, *, switch: bool = True) -> None:
    update = await ota.begin(ota.next_update_partition(), len(image))
    await update.write(image)
    await update.end()
    if switch:
        ota.set_boot_partition(update.partition)


def _switch_and_first_boot(ota: EspOta, scenario: str) -> None:
    """What the board does from COMMIT to a confirmed (or rolled back) new app; every otadata write is a cut point."""
    ota.set_boot_partition(ota.next_update_partition())
    ota.boot()
    if scenario == "self-test fails":
        ota.mark_app_invalid_rollback()
        ota.boot()
    else:
        ota.mark_app_valid_cancel_rollback()


def _boot_and_self_test(ota: EspOta, images: _Images) -> str:
    """A power-up: the bootloader's choice, then the app's self-test (passes). Returns old / new / none."""
    result = ota.boot()
    if result.partition is None or result.info is None:
        return "none"
    if result.state is OtaImgState.PENDING_VERIFY:
        ota.mark_app_valid_cancel_rollback()
    return images.which(ota.flash.read(result.partition.offset, result.info.image_size))


SCENARIOS = ("first update", "second update", "third update", "self-test fails")


def boot_switch_trials(*, full: bool) -> list[TrialResult]:
    """Cut the power at every flash operation of every scenario; inside each otadata program after 0..31 bytes
    (``full``) or after 0, 1, 16 and 31 bytes; each erase before it starts and half way."""
    images = _images()
    results = []
    for scenario in SCENARIOS:
        contents, efuse = asyncio.run(_prepared(scenario, images))
        flash, ota = _fresh(contents, Efuse(efuse.secure_version, efuse.capacity))
        ota.boot()
        flash.arm(None)
        flash.log.clear()
        _switch_and_first_boot(ota, scenario)  # a dry run lists the operations
        for index, operation in enumerate(flash.log):
            if operation.startswith("erase"):
                torn: tuple[int, ...] | range = (0, 1)
            else:
                torn = range(_ENTRY_BYTES) if full else (0, 1, _ENTRY_BYTES // 2, _ENTRY_BYTES - 1)
            for k in torn:
                results.append(run_boot_switch_trial(BootSwitchCut(scenario, index, k), images, contents, efuse))
    return results


def run_boot_switch_trial(cut: BootSwitchCut, images: _Images, contents: bytes, efuse_before: Efuse) -> TrialResult:
    efuse = Efuse(efuse_before.secure_version, efuse_before.capacity)
    with Stopwatch() as watch:
        flash, ota = _fresh(contents, efuse)
        ota.boot()
        running_before = images.which(flash.read(ota.running.offset, len(images.old))) if ota.running else "none"
        flash.arm(cut.cut_at, cut.torn_bytes)
        try:
            _switch_and_first_boot(ota, cut.scenario)
        except PowerLoss as exc:
            cut_where = str(exc)
        else:
            raise AssertionError(f"{cut}: the switch ended before operation {cut.cut_at}")
        flash.arm(None)
        # Power comes back: only flash and eFuses survive.
        after = EspOta(flash, ota.table, efuse)
        first = _boot_and_self_test(after, images)
        again = EspOta(flash, ota.table, efuse)
        second = _boot_and_self_test(again, images)
    if "none" in (first, second):
        outcome = Outcome.BRICKED
    elif first != second or "other" in (first, second):
        outcome = Outcome.WRONG
    else:
        outcome = Outcome.NEW if first == "new" else Outcome.OLD
    return TrialResult(
        fault_class="boot switch: power loss in otadata",
        name=f"{cut.scenario}: operation {cut.cut_at}, torn {cut.torn_bytes}",
        outcome=outcome,
        expected=frozenset({Outcome.NEW, Outcome.OLD}),
        board=first if first == second else f"{first}, then {second}",
        detail=f"{cut_where}; ran {running_before} before",
        duration_s=watch.elapsed_s,
    )
