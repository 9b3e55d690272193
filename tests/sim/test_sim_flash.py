"""The emulated NOR flash and the partition table (pure Python, no radio)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bridge.image import VerdictCode, inspect_image
from bridge.image.format import parse_partition_table
from bridge.sim.flash import BLOCK_BYTES, SECTOR_BYTES, EmulatedFlash, FlashError, FlashTiming
from bridge.sim.partitions import Partition, PartitionTable, PartitionType, parse_entries
from tests.conftest import firmware_file


async def test_programming_only_clears_bits_and_counts_damage() -> None:
    flash = EmulatedFlash(BLOCK_BYTES)
    await flash.program(0, b"\x0f\xf0")
    assert flash.read(0, 2) == b"\x0f\xf0"
    assert flash.stats.dirty_program_bytes == 0
    await flash.program(0, b"\xf0\xf0")  # not erased: NOR flash ANDs
    assert flash.read(0, 2) == b"\x00\xf0"
    assert flash.stats.dirty_program_bytes == 1  # byte 1 did not change, so it is not damage
    await flash.erase_range(0, SECTOR_BYTES)
    assert flash.read(0, 2) == b"\xff\xff"
    assert flash.is_erased(0, SECTOR_BYTES)


async def test_erase_uses_64k_blocks_where_aligned_and_sectors_elsewhere() -> None:
    flash = EmulatedFlash(4 * BLOCK_BYTES)
    await flash.erase_range(BLOCK_BYTES - 2 * SECTOR_BYTES, 2 * SECTOR_BYTES + 2 * BLOCK_BYTES + SECTOR_BYTES)
    assert (flash.stats.sectors_erased, flash.stats.blocks_erased) == (3, 2)
    timing = FlashTiming()
    assert flash.stats.busy_s == pytest.approx(3 * timing.sector_erase_s + 2 * timing.block_erase_s)


async def test_alignment_and_bounds_are_enforced() -> None:
    flash = EmulatedFlash(BLOCK_BYTES)
    with pytest.raises(FlashError, match="not 4 KB aligned"):
        await flash.erase_range(100, SECTOR_BYTES)
    with pytest.raises(FlashError, match="outside"):
        await flash.program(BLOCK_BYTES - 1, b"ab")
    with pytest.raises(ValueError, match="multiple of 64 KB"):
        EmulatedFlash(1000)


async def test_modelled_time_is_spent_only_with_a_time_scale() -> None:
    instant = EmulatedFlash(BLOCK_BYTES, time_scale=0.0)
    started = time.monotonic()
    await instant.erase_range(0, BLOCK_BYTES)  # 250 ms modelled
    assert time.monotonic() - started < 0.05
    assert instant.stats.busy_s == pytest.approx(0.25)

    scaled = EmulatedFlash(BLOCK_BYTES, time_scale=0.4, timing=FlashTiming().scaled(2.0))
    started = time.monotonic()
    await scaled.erase_range(0, BLOCK_BYTES)  # 500 ms modelled (slow flash) x 0.4
    assert 0.18 <= time.monotonic() - started < 1.0
    assert scaled.stats.busy_s == pytest.approx(0.5)


async def test_one_operation_at_a_time() -> None:
    flash = EmulatedFlash(BLOCK_BYTES, time_scale=1.0, timing=FlashTiming(sector_erase_s=0.05))
    started = time.monotonic()
    await asyncio.gather(flash.erase_range(0, SECTOR_BYTES), flash.erase_range(SECTOR_BYTES, SECTOR_BYTES))
    assert time.monotonic() - started >= 0.095  # serialised like one SPI flash chip


def test_two_ota_layout_matches_esp_idf() -> None:
    table = PartitionTable.two_ota(0x100000)
    layout = [(p.label, p.type, p.subtype, p.offset, p.size) for p in table.partitions]
    assert layout == [
        ("nvs", PartitionType.DATA, 0x02, 0x9000, 0x4000),
        ("otadata", PartitionType.DATA, 0x00, 0xD000, 0x2000),
        ("phy_init", PartitionType.DATA, 0x01, 0xF000, 0x1000),
        ("ota_0", PartitionType.APP, 0x10, 0x10000, 0x100000),
        ("ota_1", PartitionType.APP, 0x11, 0x110000, 0x100000),
    ]
    assert [p.label for p in table.ota_slots] == ["ota_0", "ota_1"]
    assert table.otadata.offset == 0xD000


def test_binary_table_round_trips_and_the_image_module_reads_it() -> None:
    table = PartitionTable.two_ota()
    raw = table.to_bytes()
    assert len(raw) == 0xC00
    assert PartitionTable.from_bytes(raw) == table
    assert parse_partition_table(raw) == [
        (0x10000, "partition ota_0, ota_0"),
        (0x1F0000, "partition ota_1, ota_1"),
    ]
    assert inspect_image(raw).verdict.code is VerdictCode.PARTITION_TABLE
    damaged = bytearray(raw)
    damaged[4] ^= 0x01  # an offset bit: the MD5 entry no longer matches
    with pytest.raises(ValueError, match="MD5"):
        PartitionTable.from_bytes(bytes(damaged))


def test_a_real_esp_idf_partition_table_parses(firmware: Path) -> None:
    entries = parse_entries(firmware_file(firmware, "N01").read_bytes())
    assert [(p.label, p.type, p.offset, p.size) for p in entries] == [
        ("nvs", PartitionType.DATA, 0x9000, 0x6000),
        ("phy_init", PartitionType.DATA, 0xF000, 0x1000),
        ("factory", PartitionType.APP, 0x10000, 0x100000),
    ]
    with pytest.raises(ValueError, match="two OTA app partitions"):
        PartitionTable(tuple(entries))  # a factory-only table cannot take OTA updates


def test_bad_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        PartitionTable(
            (
                Partition("otadata", PartitionType.DATA, 0x00, 0xD000, 0x2000),
                Partition("ota_0", PartitionType.APP, 0x10, 0x10000, 0x20000),
                Partition("ota_1", PartitionType.APP, 0x11, 0x20000, 0x20000),
            )
        )
    with pytest.raises(ValueError, match="64 KB"):
        PartitionTable.two_ota(0x1000)
    with pytest.raises(ValueError, match="64 KB boundary"):
        Partition("ota_0", PartitionType.APP, 0x10, 0x11000, 0x10000)
