"""The board's partition table, in ESP-IDF's binary format at flash offset 0x8000.

The default layout is ESP-IDF's two-OTA table without a factory app: ``nvs``, ``otadata`` (two 4 KB sectors),
``phy_init``, ``ota_0`` and ``ota_1``, each OTA slot ``ota_size`` bytes (64 KB aligned). The table is written into
the emulated flash like ``idf.py flash`` would, and read back from there at boot, so a persisted flash carries it.

Binary entry (32 bytes, ``esp_partition_info_t``): magic ``AA 50``, type, subtype, offset u32, size u32, label[16],
flags u32; then an MD5 entry (``EB EB``, 14 x ``FF``, MD5 of the entries) and 0xFF padding.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from dataclasses import dataclass
from enum import IntEnum

from bridge.sim.flash import BLOCK_BYTES, SECTOR_BYTES

__all__ = [
    "PARTITION_TABLE_BYTES",
    "PARTITION_TABLE_OFFSET",
    "Partition",
    "PartitionTable",
    "PartitionType",
    "parse_entries",
]

PARTITION_TABLE_OFFSET = 0x8000
PARTITION_TABLE_BYTES = 0xC00
_ENTRY = struct.Struct("<2sBBII16sI")
_MAGIC = b"\xaa\x50"
_MD5_MAGIC = b"\xeb\xeb"

APP_OTA_MIN = 0x10
DATA_OTA = 0x00
DATA_PHY = 0x01
DATA_NVS = 0x02
APP_FACTORY = 0x00


class PartitionType(IntEnum):
    APP = 0x00
    DATA = 0x01


@dataclass(frozen=True)
class Partition:
    """One partition. ``subtype`` for apps: 0x00 factory, 0x10 + n for ``ota_n``; for data: 0x00 ota, 0x01 phy,
    0x02 nvs."""

    label: str
    type: PartitionType
    subtype: int
    offset: int
    size: int

    def __post_init__(self) -> None:
        if not self.label or len(self.label.encode()) > 15:
            raise ValueError(f"partition label {self.label!r} must be 1-15 bytes")
        if self.offset % SECTOR_BYTES or self.size % SECTOR_BYTES or self.size <= 0:
            raise ValueError(f"partition {self.label}: offset and size must be positive multiples of 4 KB")
        if self.type is PartitionType.APP and self.offset % BLOCK_BYTES:
            raise ValueError(f"app partition {self.label} must start on a 64 KB boundary")

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def is_ota_slot(self) -> bool:
        return self.type is PartitionType.APP and APP_OTA_MIN <= self.subtype < APP_OTA_MIN + 16

    @property
    def ota_index(self) -> int:
        if not self.is_ota_slot:
            raise ValueError(f"{self.label} is not an OTA app slot")
        return self.subtype - APP_OTA_MIN


@dataclass(frozen=True)
class PartitionTable:
    partitions: tuple[Partition, ...]

    def __post_init__(self) -> None:
        ordered = sorted(self.partitions, key=lambda p: p.offset)
        for before, after in itertools.pairwise(ordered):
            if before.end > after.offset:
                raise ValueError(f"partitions {before.label} and {after.label} overlap")
        if ordered and ordered[0].offset < PARTITION_TABLE_OFFSET + PARTITION_TABLE_BYTES:
            raise ValueError(f"partition {ordered[0].label} overlaps the partition table at 0x8000")
        if len(self.ota_slots) < 2:
            raise ValueError("an OTA board needs at least two OTA app partitions (ota_0, ota_1)")
        otadata = [p for p in self.partitions if p.type is PartitionType.DATA and p.subtype == DATA_OTA]
        if len(otadata) != 1 or otadata[0].size != 2 * SECTOR_BYTES:
            raise ValueError("an OTA board needs exactly one otadata partition of 0x2000 bytes")

    @classmethod
    def two_ota(cls, ota_size: int = 0x1E0000, *, slots: int = 2) -> PartitionTable:
        """ESP-IDF's OTA layout: nvs 0x9000, otadata 0xD000, phy_init 0xF000, then ``slots`` app slots from 0x10000."""
        if ota_size <= 0 or ota_size % BLOCK_BYTES:
            raise ValueError(f"ota_size must be a positive multiple of 64 KB, got {ota_size:#x}")
        if not 2 <= slots <= 16:
            raise ValueError(f"slots must be 2..16, got {slots}")
        parts = [
            Partition("nvs", PartitionType.DATA, DATA_NVS, 0x9000, 0x4000),
            Partition("otadata", PartitionType.DATA, DATA_OTA, 0xD000, 0x2000),
            Partition("phy_init", PartitionType.DATA, DATA_PHY, 0xF000, 0x1000),
        ]
        parts += [
            Partition(f"ota_{i}", PartitionType.APP, APP_OTA_MIN + i, 0x10000 + i * ota_size, ota_size)
            for i in range(slots)
        ]
        return cls(tuple(parts))

    @property
    def end(self) -> int:
        return max(p.end for p in self.partitions)

    @property
    def ota_slots(self) -> tuple[Partition, ...]:
        return tuple(sorted((p for p in self.partitions if p.is_ota_slot), key=lambda p: p.subtype))

    @property
    def otadata(self) -> Partition:
        return next(p for p in self.partitions if p.type is PartitionType.DATA and p.subtype == DATA_OTA)

    def find(self, label: str) -> Partition:
        for partition in self.partitions:
            if partition.label == label:
                return partition
        raise KeyError(label)

    def slot_at(self, offset: int) -> Partition | None:
        return next((p for p in self.ota_slots if p.offset == offset), None)

    def to_bytes(self) -> bytes:
        """The binary table (0xC00 bytes) as ``gen_esp32part.py`` writes it, with the MD5 entry."""
        entries = b"".join(
            _ENTRY.pack(_MAGIC, int(p.type), p.subtype, p.offset, p.size, p.label.encode().ljust(16, b"\0"), 0)
            for p in sorted(self.partitions, key=lambda p: p.offset)
        )
        md5 = _MD5_MAGIC + b"\xff" * 14 + hashlib.md5(entries, usedforsecurity=False).digest()
        table = entries + md5
        return table + b"\xff" * (PARTITION_TABLE_BYTES - len(table))

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartitionTable:
        """Parse a binary table of an OTA board; raises ``ValueError`` if it is not one or its MD5 is wrong."""
        return cls(tuple(parse_entries(raw)))


def parse_entries(raw: bytes) -> list[Partition]:
    """The entries of a binary partition table, checking the MD5 entry (when present) before trusting any."""
    chunks: list[bytes] = []
    position = 0
    while position + _ENTRY.size <= len(raw):
        chunk = raw[position : position + _ENTRY.size]
        if chunk[:2] == _MD5_MAGIC:
            if hashlib.md5(raw[:position], usedforsecurity=False).digest() != chunk[16:32]:
                raise ValueError("partition table MD5 mismatch")
            break
        if chunk[:2] != _MAGIC:
            break
        chunks.append(chunk)
        position += _ENTRY.size
    if not chunks:
        raise ValueError("no partition table")
    parts: list[Partition] = []
    for chunk in chunks:
        _magic, ptype, subtype, offset, size, label, _flags = _ENTRY.unpack(chunk)
        try:
            kind = PartitionType(ptype)
        except ValueError as exc:
            raise ValueError(f"partition entry {len(parts)} has unknown type {ptype:#x}") from exc
        parts.append(Partition(label.rstrip(b"\0").decode(errors="replace"), kind, subtype, offset, size))
    return parts
