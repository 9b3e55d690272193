"""The ESP-IDF OTA model: esp_ota_* calls, otadata, the bootloader's choice, rollback and anti-rollback."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from bridge.image import Chip, build_image
from bridge.sim.esp_ota import Efuse, EspErr, EspOta, EspOtaError, OtaImgState, OtaSelectEntry
from bridge.sim.flash import SECTOR_BYTES, EmulatedFlash, FlashTiming
from bridge.sim.partitions import PARTITION_TABLE_OFFSET, PartitionTable
from protocol import EraseStrategy
from tests.conftest import firmware_file

OTA_SIZE = 0x60000  # 384 KB slots keep these tests fast


def make_ota(
    image: bytes, *, efuse: int = 0, rollback: bool = True, time_scale: float = 0.0, timing: FlashTiming | None = None
) -> EspOta:
    flash = EmulatedFlash(1024 * 1024, time_scale=time_scale, timing=timing)
    table = PartitionTable.two_ota(OTA_SIZE)
    flash.program_now(PARTITION_TABLE_OFFSET, table.to_bytes())
    flash.program_now(table.ota_slots[0].offset, image)
    return EspOta(flash, table, Efuse(efuse), rollback_enabled=rollback)


def app(version: str, *, secure_version: int = 0, size: int = 96 * 1024, chip: Chip = Chip.ESP32) -> bytes:
    return build_image(chip=chip, project="blink", version=version, secure_version=secure_version, size=size)


async def install(
    ota: EspOta, image: bytes, *, strategy: EraseStrategy = EraseStrategy.SEQUENTIAL_4K, chunk: int = 4000
) -> None:
    target = ota.next_update_partition()
    update = await ota.begin(target, len(image), strategy)
    for offset in range(0, len(image), chunk):
        await update.write(image[offset : offset + chunk])
    info = await update.end()
    assert info.sha256 == hashlib.sha256(image).hexdigest()
    ota.set_boot_partition(target)


async def test_a_fresh_board_boots_ota_0_with_blank_otadata() -> None:
    ota = make_ota(app("1.0.0"))
    result = ota.boot()
    assert (result.partition and result.partition.label, result.state) == ("ota_0", OtaImgState.UNDEFINED)
    assert result.app is not None and result.app.version == "1.0.0"
    assert not result.rolled_back
    assert ota.next_update_partition().label == "ota_1"
    assert all(not entry.is_valid for entry in ota.read_otadata())


async def test_update_boots_pending_verify_then_stays_once_marked_valid(firmware: Path) -> None:
    new = firmware_file(firmware, "P01").read_bytes()  # a real ESP32 hello_world
    ota = make_ota(app("1.0.0"))
    ota.boot()
    await install(ota, new)
    assert ota.boot_partition().label == "ota_1"
    assert ota.state_of(ota.table.find("ota_1")) is OtaImgState.NEW
    assert ota.running is not None and ota.running.label == "ota_0"  # nothing changes before the reset

    first = ota.boot()
    assert (first.partition and first.partition.label, first.state) == ("ota_1", OtaImgState.PENDING_VERIFY)
    assert first.app is not None and first.app.version == "v1.4.1-2-g0296947-dirty"
    assert ota.mark_app_valid_cancel_rollback() is True

    second = ota.boot()
    assert (second.partition and second.partition.label, second.state) == ("ota_1", OtaImgState.VALID)
    assert not second.rolled_back
    assert ota.read_otadata()[0] == OtaSelectEntry(2, OtaImgState.VALID, crc=OtaSelectEntry.seq_crc(2))


async def test_an_app_that_never_confirms_is_aborted_on_the_next_reset() -> None:
    ota = make_ota(app("1.0.0"))
    ota.boot()
    await install(ota, app("2.0.0"))
    assert ota.boot().state is OtaImgState.PENDING_VERIFY
    with pytest.raises(EspOtaError) as info:
        await ota.begin(ota.next_update_partition(), 1000)  # esp_ota_begin refuses while PENDING_VERIFY
    assert info.value.code is EspErr.ESP_ERR_OTA_ROLLBACK_INVALID_STATE

    back = ota.boot()  # reset without esp_ota_mark_app_valid_cancel_rollback
    assert back.partition is not None and back.partition.label == "ota_0"
    assert back.app is not None and back.app.version == "1.0.0"
    assert back.rolled_back
    assert ota.state_of(ota.table.find("ota_1")) is OtaImgState.ABORTED
    assert ota.boot().partition == back.partition  # an aborted slot is never selected again


async def test_a_failed_self_test_rolls_back_and_marks_the_slot_invalid() -> None:
    ota = make_ota(app("1.0.0"))
    ota.boot()
    await install(ota, app("2.0.0"))
    ota.boot()
    ota.mark_app_invalid_rollback()
    back = ota.boot()
    assert back.partition is not None and back.partition.label == "ota_0"
    assert back.rolled_back
    assert ota.state_of(ota.table.find("ota_1")) is OtaImgState.INVALID


async def test_rollback_is_refused_when_no_other_app_could_boot() -> None:
    ota = make_ota(app("1.0.0"))
    ota.boot()
    ota.flash.erase_now(ota.table.find("ota_1").offset, SECTOR_BYTES)
    with pytest.raises(EspOtaError) as info:
        ota.mark_app_invalid_rollback()
    assert info.value.code is EspErr.ESP_ERR_OTA_ROLLBACK_FAILED


async def test_esp_ota_begin_and_write_rules() -> None:
    ota = make_ota(app("1.0.0"))
    ota.boot()
    running, spare = ota.table.find("ota_0"), ota.table.find("ota_1")
    with pytest.raises(EspOtaError) as info:
        await ota.begin(running, 1000)
    assert info.value.code is EspErr.ESP_ERR_OTA_PARTITION_CONFLICT
    with pytest.raises(EspOtaError) as info:
        await ota.begin(spare, OTA_SIZE + 1)
    assert info.value.code is EspErr.ESP_ERR_INVALID_SIZE

    update = await ota.begin(spare, 1000)
    with pytest.raises(EspOtaError) as info:
        await update.write(b"\x00" + bytes(99))  # first byte must be the image magic
    assert info.value.code is EspErr.ESP_ERR_OTA_VALIDATE_FAILED
    await update.write(b"\xe9")
    with pytest.raises(EspOtaError) as info:
        await update.write(bytes(OTA_SIZE))
    assert info.value.code is EspErr.ESP_ERR_INVALID_SIZE


@pytest.mark.parametrize("prefix", ["C03", "C02"])
async def test_esp_ota_end_refuses_a_corrupt_image(firmware: Path, prefix: str) -> None:
    bad = firmware_file(firmware, prefix).read_bytes()  # C03: bit flip, C02: truncated digest
    ota = make_ota(app("1.0.0"))
    ota.boot()
    update = await ota.begin(ota.next_update_partition(), len(bad))
    await update.write(bad)
    with pytest.raises(EspOtaError) as info:
        await update.end()
    assert info.value.code is EspErr.ESP_ERR_OTA_VALIDATE_FAILED
    with pytest.raises(EspOtaError):
        ota.set_boot_partition(ota.next_update_partition())
    assert ota.boot().partition == ota.table.find("ota_0")


async def test_power_loss_mid_write_leaves_the_old_image_booting() -> None:
    ota = make_ota(app("1.0.0"))
    ota.boot()
    new = app("2.0.0")
    update = await ota.begin(ota.next_update_partition(), len(new))
    await update.write(new[: len(new) // 2])
    result = ota.boot()  # the power came back: RAM (the handle) is gone, otadata untouched
    assert update.closed
    assert result.partition is not None and result.partition.label == "ota_0"
    assert result.app is not None and result.app.version == "1.0.0"


async def test_anti_rollback_burns_efuse_on_confirm_and_refuses_older_images() -> None:
    ota = make_ota(app("1.0.0", secure_version=1), efuse=1)
    ota.boot()
    await install(ota, app("2.0.0", secure_version=3))
    ota.boot()
    assert ota.efuse.secure_version == 1  # not before the app confirmed
    ota.mark_app_valid_cancel_rollback()
    assert ota.efuse.secure_version == 3

    old = app("1.5.0", secure_version=2)
    update = await ota.begin(ota.next_update_partition(), len(old))
    await update.write(old)
    await update.end()  # a valid image ...
    with pytest.raises(EspOtaError) as info:
        ota.set_boot_partition(ota.next_update_partition())  # ... that must not become the boot partition
    assert info.value.code is EspErr.ESP_ERR_OTA_SMALL_SEC_VER


async def test_the_bootloader_skips_an_image_below_the_efuse_counter() -> None:
    ota = make_ota(app("1.0.0", secure_version=0))
    ota.boot()
    await install(ota, app("2.0.0", secure_version=0))
    ota.efuse.burn(5)  # e.g. a counter burnt by a later app that was then erased
    result = ota.boot()
    assert result.partition is None
    assert any("secure_version 0 < eFuse 5" in reason for reason in result.skipped)


async def test_otadata_alternates_sectors_so_a_torn_write_keeps_the_previous_entry() -> None:
    ota = make_ota(app("1.0.0"), rollback=False)
    ota.boot()
    await install(ota, app("2.0.0"))
    ota.boot()
    await install(ota, app("3.0.0"))
    first, second = ota.read_otadata()
    assert (first.seq, second.seq) == (2, 3)
    assert ota.boot().app is not None
    # Tear the newest entry (as if power failed while writing it): the older one still selects ota_1.
    ota.flash.erase_now(ota.table.otadata.offset + SECTOR_BYTES, SECTOR_BYTES)
    result = ota.boot()
    assert result.partition is not None and result.partition.label == "ota_1"
    assert result.app is not None and result.app.version == "2.0.0"
    assert result.state is OtaImgState.UNDEFINED  # rollback disabled: no states


@pytest.mark.parametrize(
    ("strategy", "sectors", "blocks"),
    [
        (EraseStrategy.SEQUENTIAL_4K, 64, 0),  # 256 KB image: one sector erase per 4 KB
        (EraseStrategy.UP_FRONT, 0, 4),  # the whole image at BEGIN, in 64 KB blocks
        (EraseStrategy.BLOCK_AHEAD_64K, 0, 4),  # 64 KB blocks, ahead of the cursor
    ],
)
async def test_each_erase_strategy_erases_before_every_write(
    strategy: EraseStrategy, sectors: int, blocks: int
) -> None:
    ota = make_ota(app("1.0.0"))
    ota.boot()
    await install(ota, app("2.0.0", size=256 * 1024))  # leaves data in ota_1
    ota.boot()
    ota.mark_app_valid_cancel_rollback()
    await install(ota, app("3.0.0"))  # into ota_0
    ota.boot()
    ota.mark_app_valid_cancel_rollback()
    before = (ota.flash.stats.sectors_erased, ota.flash.stats.blocks_erased)
    await install(ota, app("4.0.0", size=256 * 1024), strategy=strategy)  # over the old data in ota_1
    assert ota.flash.stats.dirty_program_bytes == 0
    erased = (ota.flash.stats.sectors_erased - before[0] - 1, ota.flash.stats.blocks_erased - before[1])
    assert erased == (sectors, blocks)  # (- 1: the otadata sector written by set_boot_partition)
    result = ota.boot()
    assert result.app is not None and result.app.version == "4.0.0"


async def test_erasing_ahead_keeps_flash_off_the_critical_path() -> None:
    """Data arriving at a fast link's pace (~150 KB/s): sector-by-sector erase makes the board the bottleneck,
    64 KB blocks erased ahead of the cursor keep up (modelled times scaled 1:10)."""
    image = app("2.0.0", size=192 * 1024)
    link_bytes_per_s, scale, chunk = 150_000, 0.1, 4096

    async def feed(strategy: EraseStrategy) -> float:
        ota = make_ota(app("1.0.0"), time_scale=scale)
        ota.boot()
        update = await ota.begin(ota.next_update_partition(), len(image), strategy)
        started = time.monotonic()
        for offset in range(0, len(image), chunk):
            arrival = started + offset / link_bytes_per_s * scale
            delay = arrival - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await update.write(image[offset : offset + chunk])
        await update.end()
        return (time.monotonic() - started) / scale

    sequential = await feed(EraseStrategy.SEQUENTIAL_4K)
    ahead = await feed(EraseStrategy.BLOCK_AHEAD_64K)
    link_time = len(image) / link_bytes_per_s  # 1.31 s
    assert sequential > 2.7  # 48 sectors x 60 ms erase alone
    assert ahead < link_time + 0.8
    assert ahead < sequential / 1.8
