"""Write structurally valid ESP32 app images, deterministically, for tests, the simulator and the demo.

The image looks like what ``esptool elf2image`` writes for an ESP-IDF app: four segments (DROM with the
``esp_app_desc_t`` first, DRAM, IRAM, IROM), the XOR checksum at the end of a 16-byte block, and the SHA-256 digest.
Segment contents are pseudo-random bytes derived from every argument, so two builds with the same arguments are
byte-identical and two versions of one project differ. It is not runnable code.
"""

from __future__ import annotations

import hashlib
import random
import re
import struct

from bridge.image.chips import Chip, chip_spec
from bridge.image.format import xor_fold

__all__ = ["DEFAULT_IMAGE_BYTES", "MIN_IMAGE_BYTES", "build_image"]

DEFAULT_IMAGE_BYTES = 64 * 1024
#: The smallest image the builder writes (header, descriptor, three small segments, checksum, digest).
MIN_IMAGE_BYTES = 4096

_PAGE = 0x10000  # aligning modulo 64 KiB satisfies every MMU page size (8-64 KiB)
_DRAM_BYTES = 1024
_IRAM_BYTES = 2048
_HEADER_BYTES = 24 + 4 * 8  # image header + four segment headers
_APP_DESC = struct.Struct("<II8s32s32s16s16s32s32sHHBB2s72s")


def _field(text: str, size: int, name: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) >= size:
        raise ValueError(f"{name} {text!r} is {len(raw)} bytes; the app descriptor holds at most {size - 1}")
    return raw.ljust(size, b"\0")


def _idf_at_least(idf_version: str, major: int, minor: int) -> bool:
    m = re.match(r"v?(\d+)\.(\d+)", idf_version)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (major, minor)  # type: ignore[union-attr]


def build_image(
    *,
    chip: Chip,
    project: str,
    version: str,
    secure_version: int = 0,
    size: int | None = None,
    seed: int = 0,
    idf_version: str = "v5.2.2",
) -> bytes:
    """A valid app image for ``chip`` whose descriptor carries ``project``, ``version`` and ``secure_version``.

    ``size`` is the exact total length when it is a multiple of 16 (the checksum block makes every image a multiple
    of 16 bytes); other values are rounded up to the next multiple of 16. Default 64 KiB, minimum 4 KiB. The same
    arguments always give the same bytes; ``seed`` varies the contents without changing the descriptor.
    Raises ``ValueError`` for a string too long for the descriptor or an out-of-range number.
    """
    spec = chip_spec(chip)
    chip = Chip(chip)
    if not 0 <= secure_version <= 0xFFFFFFFF:
        raise ValueError(f"secure_version {secure_version} is not a u32")
    total = DEFAULT_IMAGE_BYTES if size is None else size
    if total < MIN_IMAGE_BYTES:
        raise ValueError(f"size {total} is below the minimum of {MIN_IMAGE_BYTES} bytes")
    total = (total + 15) // 16 * 16
    desc_fields = (
        _field(version, 32, "version"),
        _field(project, 32, "project"),
        _field(idf_version, 32, "idf_version"),
    )
    rng = random.Random(f"{seed}|{chip.name}|{project}|{version}|{secure_version}|{idf_version}|{total}")

    # Lengths: checksum lands at total-33 when the segments end at total-36 (see notes section 6).
    data_end = total - 32 - 4
    budget = data_end - _HEADER_BYTES - 256 - _DRAM_BYTES - _IRAM_BYTES
    rodata = max(16, budget // 4 // 4 * 4)
    irom_len = budget - rodata
    assert irom_len >= 4 and irom_len % 4 == 0, (total, budget)

    elf_sha = hashlib.sha256(f"elf|{seed}|{chip.name}|{project}|{version}|{idf_version}".encode()).digest()
    desc = _APP_DESC.pack(
        0xABCD5432,
        secure_version,
        b"",
        desc_fields[0],
        desc_fields[1],
        b"12:00:00".ljust(16, b"\0"),
        b"Jan  1 2025".ljust(16, b"\0"),
        desc_fields[2],
        elf_sha,
        0,
        99 if _idf_at_least(idf_version, 5, 4) else 0,
        16 if _idf_at_least(idf_version, 5, 5) else 0,  # log2(64 KiB)
        0,
        b"",
        b"",
    )
    drom_data = desc + rng.randbytes(rodata)
    dram_data = rng.randbytes(_DRAM_BYTES)
    iram_data = rng.randbytes(_IRAM_BYTES)
    irom_data = rng.randbytes(irom_len)

    irom_data_off = _HEADER_BYTES + len(drom_data) + _DRAM_BYTES + _IRAM_BYTES
    irom_addr = spec.irom[0] + irom_data_off % _PAGE
    if spec.shared_flash_window:
        # IROM low in the window, DROM on the first free page above it; the data offset 0x20 fixes the low bits.
        drom_addr = spec.drom[0] + (irom_data_off % _PAGE + irom_len + 2 * _PAGE - 1) // _PAGE * _PAGE + 0x20
    else:
        drom_addr = spec.drom[0] + 0x20
    if drom_addr + len(drom_data) > spec.drom[1] or irom_addr + irom_len > spec.irom[1]:
        raise ValueError(f"size {total} does not fit the {spec.display_name} flash address window")

    segments = (
        (drom_addr, drom_data),
        (spec.dram_addr, dram_data),
        (spec.iram_addr, iram_data),
        (irom_addr, irom_data),
    )
    out = bytearray()
    out += struct.pack(
        "<BBBBIBBBBHBHH4sB",
        0xE9,
        len(segments),
        2,  # DIO
        0x10,  # 2MB, frequency code 0
        spec.iram_addr,
        0xEE,
        0,
        0,
        0,
        int(chip),
        0,
        0,
        99,
        b"",
        1,
    )
    checksum = 0xEF
    for addr, data in segments:
        out += struct.pack("<II", addr, len(data))
        out += data
        checksum ^= xor_fold(data)
    assert len(out) == data_end
    out += b"\0" * (((len(out) + 1 + 15) & ~15) - 1 - len(out))
    out.append(checksum)
    out += hashlib.sha256(out).digest()
    assert len(out) == total
    return bytes(out)
