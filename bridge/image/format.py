"""The byte layout of ESP32 images and of what travels with them: constants, structs, small decoders.

Facts and sources: ``notes/esp32-image-format.md`` (header section 2, segments 5, checksum 6, digest 7, trailer 8,
``esp_app_desc_t`` 9). Everything is little-endian.
"""

from __future__ import annotations

import struct

from bridge.image.model import AppDescriptor, BootloaderDescriptor

__all__ = [
    "APP_DESC_MAGIC",
    "APP_DESC_OFFSET",
    "APP_DESC_SIZE",
    "IMAGE_MAGIC",
    "parse_app_descriptor",
    "xor_fold",
]

IMAGE_MAGIC = 0xE9
APP_DESC_MAGIC = 0xABCD5432
APP_DESC_OFFSET = 0x20
APP_DESC_SIZE = 256
BOOTLOADER_DESC_MAGIC = 0x50
HEADER_SIZE = 24
SEGMENT_HEADER_SIZE = 8
MAX_SEGMENTS = 16
MAX_SEGMENT_BYTES = 0x1000000
CHECKSUM_SEED = 0xEF
DIGEST_SIZE = 32
#: Bytes of the file start kept for classification (covers the probes at 0x1000 and 0x2000 for merged files).
HEAD_BYTES = 0x2100
PARTITION_TABLE_OFFSET = 0x8000
PARTITION_TABLE_BYTES = 0xC00
PARTITION_MAGIC = b"\xaa\x50"
APP_PROBE_STEP = 0x10000
APP_PROBE_BYTES = APP_DESC_OFFSET + APP_DESC_SIZE
MAX_EMBEDDED_APPS = 16
SIG_SECTOR_BYTES = 0x1000
SBV1_TRAILER_MAX = 80  # version word + 64-byte ECDSA signature + 12 bytes of --secure-pad room
SBV2_MAGIC = 0xE7
READ_CHUNK_BYTES = 0x10000

HEADER_STRUCT = struct.Struct("<BBBBIBBBBHBHH4sB")
SEGMENT_HEADER_STRUCT = struct.Struct("<II")
APP_DESC_STRUCT = struct.Struct("<II8s32s32s16s16s32s32sHHBB2s72s")
BOOT_DESC_STRUCT = struct.Struct("<B3sI32s24s16s")
PARTITION_STRUCT = struct.Struct("<2sBBII16sI")
assert HEADER_STRUCT.size == HEADER_SIZE and APP_DESC_STRUCT.size == APP_DESC_SIZE

FLASH_MODES = {0: "QIO", 1: "QOUT", 2: "DIO", 3: "DOUT", 4: "FAST_READ", 5: "SLOW_READ"}
FLASH_SIZES = {0: "1MB", 1: "2MB", 2: "4MB", 3: "8MB", 4: "16MB", 5: "32MB", 6: "64MB", 7: "128MB"}
APP_SUBTYPES = {0x00: "factory", 0x20: "test", **{0x10 + n: f"ota_{n}" for n in range(16)}}

_XOR_BLOCK_BYTES = 8192


def xor_fold(data: bytes | bytearray | memoryview) -> int:
    """XOR of all bytes of ``data``, folded in C through big-integer halving (a 4 MiB image in milliseconds).

    Works on 8 KiB blocks so the temporary integers stay small whatever the size of ``data``.
    """
    view = memoryview(data)
    result = 0
    for start in range(0, len(view), _XOR_BLOCK_BYTES):
        block = view[start : start + _XOR_BLOCK_BYTES]
        width = len(block)
        value = int.from_bytes(block, "little")
        while width > 1:
            half = (width + 1) // 2
            value = (value & ((1 << (8 * half)) - 1)) ^ (value >> (8 * half))
            width = half
        result ^= value
    return result


def cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def looks_random(sample: bytes) -> bool:
    """True if ``sample`` (>= 1 KiB) has the byte statistics of ciphertext: chi-square near its 255 degrees of freedom.

    Plain images are full of 0x00/0xFF and small opcodes (chi-square in the tens of thousands); AES output of 4 KiB
    scores 255 +- 23.
    """
    n = len(sample)
    if n < 1024:
        return False
    expected = n / 256
    counts = [0] * 256
    for b in sample:
        counts[b] += 1
    chi2 = sum((c - expected) ** 2 for c in counts) / expected
    return chi2 < 400


def parse_app_descriptor(raw: bytes) -> AppDescriptor | None:
    """Decode ``esp_app_desc_t`` from its 256 bytes, or None if the magic word is not there."""
    if len(raw) < APP_DESC_SIZE:
        return None
    (magic, secure_version, _r1, version, project, time_, date, idf, elf, min_blk, max_blk, mmu, spi_mode, _r3,
     _r2) = APP_DESC_STRUCT.unpack_from(raw)  # fmt: skip
    if magic != APP_DESC_MAGIC:
        return None
    return AppDescriptor(
        secure_version=secure_version,
        version=cstr(version),
        project=cstr(project),
        time=cstr(time_),
        date=cstr(date),
        idf_version=cstr(idf),
        elf_sha256=elf.hex(),
        min_efuse_blk_rev_full=min_blk,
        max_efuse_blk_rev_full=max_blk,
        mmu_page_size=mmu,
        spi_flash_mode=spi_mode,
    )


def parse_bootloader_descriptor(raw: bytes) -> BootloaderDescriptor | None:
    if len(raw) < BOOT_DESC_STRUCT.size or raw[0] != BOOTLOADER_DESC_MAGIC or raw[1:4] != b"\0\0\0":
        return None
    _magic, _res, version, idf, date_time, _res2 = BOOT_DESC_STRUCT.unpack_from(raw)
    return BootloaderDescriptor(version=version, idf_version=cstr(idf), date_time=cstr(date_time))


def plausible_esp8266(head: bytes) -> bool:
    """An ESP8266 'v1' image: 8-byte header, then the first segment header loading into ESP8266 RAM."""
    if len(head) < 16 or head[0] != IMAGE_MAGIC or not 1 <= head[1] <= MAX_SEGMENTS:
        return False
    addr: int
    length: int
    addr, length = SEGMENT_HEADER_STRUCT.unpack_from(head, 8)
    in_ram = 0x3FFE8000 <= addr < 0x40000000 or 0x40100000 <= addr < 0x40110000
    return in_ram and length % 4 == 0 and 0 < length < MAX_SEGMENT_BYTES


def parse_partition_table(raw: bytes) -> list[tuple[int, str]]:
    """App partitions ``(offset, "label (subtype)")`` of a partition table, or [] if ``raw`` is not one."""
    apps: list[tuple[int, str]] = []
    for pos in range(0, len(raw) - PARTITION_STRUCT.size + 1, PARTITION_STRUCT.size):
        magic, ptype, subtype, offset, _size, label, _flags = PARTITION_STRUCT.unpack_from(raw, pos)
        if magic != PARTITION_MAGIC:
            break
        if ptype == 0:
            apps.append((offset, f"partition {cstr(label)}, {APP_SUBTYPES.get(subtype, hex(subtype))}"))
    return apps
