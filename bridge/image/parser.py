"""Streaming parser and validator of ESP32 application images (the ``.bin`` that ``idf.py build`` writes).

Theory of operation
-------------------
An image has no length field: its end is found only by walking the segments. :class:`StreamValidator` walks them
as bytes arrive, with a small state machine (header -> segment header -> segment data -> ... -> padding and
checksum -> digest -> trailer), keeping only counters, two running SHA-256 states and a few small windows:

* the first ``HEAD_BYTES`` of the file (header, app descriptor, the bytes that tell a bootloader, a partition table
  or ciphertext apart),
* bytes ``0x8000..0x8C00`` (where a merged full-flash file carries its partition table),
* 0x120 bytes at each 64 KiB boundary (where a merged file carries app images),
* the first bytes after the digest (Secure Boot V1 signature) and at the next 4 KiB boundary (Secure Boot V2).

So a 4 MiB image is validated with about 16 KiB of state, whatever the chunk sizes. The verdict is decided once, in
:meth:`StreamValidator.finish`, from what the walk saw; :func:`inspect_image` is the same walk over a whole file,
so both give the same verdicts.

The checks, in the order a verdict is chosen (format facts: ``notes/esp32-image-format.md``):

1. what the file is: partition table (``AA 50``), merged full-flash image (partition table at 0x8000 and app images
   at 64 KiB boundaries), ciphertext (no magic, bytes indistinguishable from random), ESP8266 image, ELF/HEX/other;
2. the header: magic 0xE9, 1..16 segments, byte 23 in {0, 1}, a known chip id (retired beta ids named);
3. the segments: each length a multiple of 4 below 16 MiB, inside the file (else ``truncated``), flash-mapped
   segments aligned like their load address modulo the MMU page;
4. bootloader (RAM-only segments + ``esp_bootloader_desc_t``) and RAM-only apps;
5. the XOR checksum, then the appended SHA-256;
6. what follows the digest: nothing, a Secure Boot V1/V2 signature, 0xFF padding, or a refusal.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Iterable
from enum import Enum, auto
from pathlib import Path

from bridge.errors import ImageError, PreflightError
from bridge.image.chips import RETIRED_CHIP_IDS, Chip, ChipSpec, chip_spec
from bridge.image.model import (
    AppDescriptor,
    BootloaderDescriptor,
    EmbeddedApp,
    ImageInfo,
    Quirk,
    Segment,
    Verdict,
    VerdictCode,
)

__all__ = [
    "APP_DESC_MAGIC",
    "HEAD_BYTES",
    "IMAGE_MAGIC",
    "StreamValidator",
    "check_fits_board",
    "fit_verdict",
    "inspect_image",
    "validate_image",
]

log = logging.getLogger(__name__)

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

_HEADER = struct.Struct("<BBBBIBBBBHBHH4sB")
_SEGMENT_HEADER = struct.Struct("<II")
_APP_DESC = struct.Struct("<II8s32s32s16s16s32s32sHHBB2s72s")
_BOOT_DESC = struct.Struct("<B3sI32s24s16s")
_PARTITION = struct.Struct("<2sBBII16sI")
assert _HEADER.size == HEADER_SIZE and _APP_DESC.size == APP_DESC_SIZE

_FLASH_MODES = {0: "QIO", 1: "QOUT", 2: "DIO", 3: "DOUT", 4: "FAST_READ", 5: "SLOW_READ"}
_FLASH_SIZES = {0: "1MB", 1: "2MB", 2: "4MB", 3: "8MB", 4: "16MB", 5: "32MB", 6: "64MB", 7: "128MB"}
_APP_SUBTYPES = {0x00: "factory", 0x20: "test", **{0x10 + n: f"ota_{n}" for n in range(16)}}

_APP_HINT = "Push the app image that `idf.py build` writes: build/<project>.bin."


def xor_fold(data: bytes | memoryview) -> int:
    """XOR of all bytes of ``data``, computed in C through big-integer halving (a 4 MiB image in milliseconds)."""
    width = len(data)
    if width == 0:
        return 0
    value = int.from_bytes(data, "little")
    while width > 1:
        half = (width + 1) // 2
        value = (value & ((1 << (8 * half)) - 1)) ^ (value >> (8 * half))
        width = half
    return value


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def _looks_random(sample: bytes) -> bool:
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
     _r2) = _APP_DESC.unpack_from(raw)  # fmt: skip
    if magic != APP_DESC_MAGIC:
        return None
    return AppDescriptor(
        secure_version=secure_version,
        version=_cstr(version),
        project=_cstr(project),
        time=_cstr(time_),
        date=_cstr(date),
        idf_version=_cstr(idf),
        elf_sha256=elf.hex(),
        min_efuse_blk_rev_full=min_blk,
        max_efuse_blk_rev_full=max_blk,
        mmu_page_size=mmu,
        spi_flash_mode=spi_mode,
    )


def _parse_bootloader_descriptor(raw: bytes) -> BootloaderDescriptor | None:
    if len(raw) < _BOOT_DESC.size or raw[0] != BOOTLOADER_DESC_MAGIC or raw[1:4] != b"\0\0\0":
        return None
    _magic, _res, version, idf, date_time, _res2 = _BOOT_DESC.unpack_from(raw)
    return BootloaderDescriptor(version=version, idf_version=_cstr(idf), date_time=_cstr(date_time))


def _plausible_esp8266(head: bytes) -> bool:
    """An ESP8266 'v1' image: 8-byte header, then the first segment header loading into ESP8266 RAM."""
    if len(head) < 16 or head[0] != IMAGE_MAGIC or not 1 <= head[1] <= MAX_SEGMENTS:
        return False
    addr: int
    length: int
    addr, length = _SEGMENT_HEADER.unpack_from(head, 8)
    in_ram = 0x3FFE8000 <= addr < 0x40000000 or 0x40100000 <= addr < 0x40110000
    return in_ram and length % 4 == 0 and 0 < length < MAX_SEGMENT_BYTES


class _State(Enum):
    HEADER = auto()
    SEG_HEADER = auto()
    SEG_DATA = auto()
    CHECKSUM = auto()
    DIGEST = auto()
    TRAILER = auto()
    FOREIGN = auto()


class StreamValidator:
    """Validate an image as it arrives, with bounded memory (about 16 KiB whatever the image size).

    ``feed()`` any chunks, then ``finish()`` returns the same :class:`ImageInfo` as :func:`inspect_image` on the whole
    file. ``rejected`` turns True as soon as the bytes seen can no longer make a valid app image (wrong magic,
    unknown chip, malformed segment), so a receiver can stop early; ``chip_id`` and ``app`` are readable as soon as
    the header and the descriptor have arrived (0x120 bytes).
    """

    def __init__(self) -> None:
        self._seen = 0
        self._file_sha = hashlib.sha256()
        self._img_sha = hashlib.sha256()
        self._head = bytearray()
        self._state = _State.HEADER
        self._foreign: Verdict | None = None
        # header
        self._hdr: tuple[int, ...] | None = None
        self._spec: ChipSpec | None = None
        # segments
        self._segments: list[Segment] = []
        self._seg_hdr = bytearray()
        self._seg_remaining = 0
        self._xor = CHECKSUM_SEED
        self._checksum_off = -1
        self._checksum: int | None = None
        self._digest = bytearray()
        self._digest_calc = b""
        self._image_len = -1
        # trailer
        self._trail_count = 0
        self._trail_head = bytearray()
        self._trail_last_non_ff = -1  # absolute offset
        self._trail_has_non_ff = False
        self._sig_probe_off = -1
        self._sig_probe = bytearray()
        # merged-image probes
        self._pt = bytearray()
        self._app_probes: dict[int, bytearray] = {}
        self._embedded: list[tuple[int, bytes]] = []

    # -- public -----------------------------------------------------------------------------------------------

    @property
    def bytes_seen(self) -> int:
        return self._seen

    @property
    def rejected(self) -> bool:
        """True once the input can no longer be a valid app image (the exact verdict comes from ``finish()``)."""
        return self._state is _State.FOREIGN

    @property
    def chip_id(self) -> int:
        """The header's chip id once 24 bytes have arrived, else -1."""
        return self._hdr[9] if self._hdr is not None else -1

    @property
    def app(self) -> AppDescriptor | None:
        """The app descriptor once its 256 bytes at 0x20 have arrived (None before, or if there is none)."""
        if self._hdr is None or not self._segments:
            return None
        return parse_app_descriptor(bytes(self._head[APP_DESC_OFFSET : APP_DESC_OFFSET + APP_DESC_SIZE]))

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Consume the next bytes of the file."""
        data = memoryview(chunk).cast("B") if not isinstance(chunk, bytes) else memoryview(chunk)
        if not data:
            return
        start = self._seen
        self._file_sha.update(data)
        if start < HEAD_BYTES:
            self._head += data[: HEAD_BYTES - start]
        self._probe(data, start)
        pos = 0
        while pos < len(data):
            pos = self._step(data, pos, start + pos)
        self._seen = start + len(data)

    def finish(self) -> ImageInfo:
        """The verdict on everything fed so far, taken as the whole file."""
        self._settle_probes()
        return _Decider(self).decide()

    # -- the walk -----------------------------------------------------------------------------------------------

    def _step(self, data: memoryview, pos: int, offset: int) -> int:
        """Consume bytes of ``data`` from ``pos`` (file offset ``offset``) in the current state; return the new pos."""
        state = self._state
        avail = len(data) - pos
        if state is _State.HEADER:
            if offset == 0 and data[pos] != IMAGE_MAGIC:
                self._state = _State.FOREIGN
                return len(data)
            take = min(HEADER_SIZE - offset, avail)
            self._img_sha.update(data[pos : pos + take])
            if offset + take == HEADER_SIZE:
                self._on_header(bytes(self._head[:HEADER_SIZE]))
            return pos + take
        if state is _State.SEG_HEADER:
            take = min(SEGMENT_HEADER_SIZE - len(self._seg_hdr), avail)
            piece = data[pos : pos + take]
            self._seg_hdr += piece
            self._img_sha.update(piece)
            if len(self._seg_hdr) == SEGMENT_HEADER_SIZE:
                self._on_segment_header(offset + take - SEGMENT_HEADER_SIZE)
            return pos + take
        if state is _State.SEG_DATA:
            take = min(self._seg_remaining, avail)
            piece = data[pos : pos + take]
            self._img_sha.update(piece)
            self._xor ^= xor_fold(piece)
            self._seg_remaining -= take
            if self._seg_remaining == 0:
                self._next_segment(offset + take)
            return pos + take
        if state is _State.CHECKSUM:
            take = min(self._checksum_off + 1 - offset, avail)
            piece = data[pos : pos + take]
            self._img_sha.update(piece)
            if offset + take == self._checksum_off + 1:
                self._checksum = piece[-1]
                self._digest_calc = self._img_sha.digest()
                if self._hdr is not None and self._hdr[14] == 1:
                    self._state = _State.DIGEST
                else:
                    self._enter_trailer(self._checksum_off + 1)
            return pos + take
        if state is _State.DIGEST:
            take = min(DIGEST_SIZE - len(self._digest), avail)
            self._digest += data[pos : pos + take]
            if len(self._digest) == DIGEST_SIZE:
                self._enter_trailer(offset + take)
            return pos + take
        if state is _State.TRAILER:
            self._on_trailer(data[pos:], offset)
            return len(data)
        return len(data)  # FOREIGN: only the probes and the file hash look at the rest

    def _on_header(self, raw: bytes) -> None:
        hdr = _HEADER.unpack(raw)
        self._hdr = hdr
        segment_count, chip_id, hash_appended = hdr[1], hdr[9], hdr[14]
        if hash_appended not in (0, 1) or chip_id not in Chip._value2member_map_:
            self._state = _State.FOREIGN
            return
        if not 1 <= segment_count <= MAX_SEGMENTS:
            self._foreign = Verdict(
                VerdictCode.MALFORMED,
                f"The image header declares {segment_count} segments; an ESP32 image has 1 to {MAX_SEGMENTS}.",
                "The file is damaged or not an ESP32 app image. " + _APP_HINT,
            )
            self._state = _State.FOREIGN
            return
        self._spec = chip_spec(chip_id)
        self._state = _State.SEG_HEADER

    def _on_segment_header(self, header_offset: int) -> None:
        assert self._spec is not None
        addr, length = _SEGMENT_HEADER.unpack(self._seg_hdr)
        self._seg_hdr.clear()
        index = len(self._segments)
        if length % 4 or length >= MAX_SEGMENT_BYTES:
            self._foreign = Verdict(
                VerdictCode.MALFORMED,
                f"Segment {index} at offset {header_offset:#x} declares {length:,} bytes; the bootloader needs a "
                "multiple of 4 below 16 MiB.",
                "The file is damaged or not an ESP32 app image. " + _APP_HINT,
            )
            self._state = _State.FOREIGN
            return
        kind = "padding" if addr == 0 else self._spec.flash_kind(addr)
        self._segments.append(Segment(index, addr, length, header_offset, kind))
        self._seg_remaining = length
        if length:
            self._state = _State.SEG_DATA
        else:
            self._next_segment(header_offset + SEGMENT_HEADER_SIZE)

    def _next_segment(self, end_offset: int) -> None:
        assert self._hdr is not None
        if len(self._segments) < self._hdr[1]:
            self._state = _State.SEG_HEADER
            return
        # 0..15 zero bytes, then the checksum as the last byte of a 16-byte block.
        self._checksum_off = ((end_offset + 1 + 15) & ~15) - 1
        self._state = _State.CHECKSUM

    def _enter_trailer(self, image_len: int) -> None:
        self._image_len = image_len
        self._sig_probe_off = (image_len + SIG_SECTOR_BYTES - 1) // SIG_SECTOR_BYTES * SIG_SECTOR_BYTES
        self._state = _State.TRAILER

    def _on_trailer(self, piece: memoryview, offset: int) -> None:
        self._trail_count += len(piece)
        if len(self._trail_head) < 128:
            self._trail_head += piece[: 128 - len(self._trail_head)]
        raw = bytes(piece)
        stripped = raw.rstrip(b"\xff")
        if stripped:
            self._trail_has_non_ff = True
            self._trail_last_non_ff = offset + len(stripped) - 1
        lo = max(self._sig_probe_off, offset)
        hi = min(self._sig_probe_off + 4, offset + len(raw))
        if lo < hi:
            self._sig_probe += raw[lo - offset : hi - offset]

    # -- merged-image probes ------------------------------------------------------------------------------------

    def _probe(self, data: memoryview, start: int) -> None:
        end = start + len(data)
        lo, hi = max(start, PARTITION_TABLE_OFFSET), min(end, PARTITION_TABLE_OFFSET + PARTITION_TABLE_BYTES)
        if lo < hi:
            self._pt += data[lo - start : hi - start]
        first = max(APP_PROBE_STEP, (start - APP_PROBE_BYTES) // APP_PROBE_STEP * APP_PROBE_STEP)
        for base in range(first, end, APP_PROBE_STEP):
            lo, hi = max(start, base), min(end, base + APP_PROBE_BYTES)
            if lo >= hi:
                continue
            if base >= start:
                if data[base - start] != IMAGE_MAGIC:
                    continue
                self._app_probes[base] = bytearray()
            buf = self._app_probes.get(base)
            if buf is None:
                continue
            buf += data[lo - start : hi - start]
            if len(buf) == APP_PROBE_BYTES:
                self._settle_probe(base)

    def _settle_probe(self, base: int) -> None:
        buf = bytes(self._app_probes.pop(base))
        if len(buf) < HEADER_SIZE or len(self._embedded) >= MAX_EMBEDDED_APPS:
            return
        hdr = _HEADER.unpack_from(buf)
        if hdr[14] in (0, 1) and hdr[9] in Chip._value2member_map_ and 1 <= hdr[1] <= MAX_SEGMENTS:
            self._embedded.append((base, buf))

    def _settle_probes(self) -> None:
        for base in sorted(self._app_probes):
            self._settle_probe(base)


class _Decider:
    """Turns what a :class:`StreamValidator` saw into an :class:`ImageInfo` with one verdict."""

    def __init__(self, sv: StreamValidator) -> None:
        self.sv = sv
        self.head = bytes(sv._head)
        self.size = sv._seen
        self.sha256 = sv._file_sha.hexdigest()

    def info(self, verdict: Verdict, **fields: object) -> ImageInfo:
        return ImageInfo(size=self.size, sha256=self.sha256, verdict=verdict, **fields)  # type: ignore[arg-type]

    # Fields known once the header and segments were read.
    def header_fields(self) -> dict[str, object]:
        sv = self.sv
        if sv._hdr is None:
            return {}
        (_m, count, mode, size_freq, entry, wp, _d1, _d2, _d3, chip_id, min_rev, min_full, max_full, _r,
         hashed) = sv._hdr  # fmt: skip
        chip = Chip(chip_id) if chip_id in Chip._value2member_map_ else None
        freq = chip_spec(chip).flash_freq.get(size_freq & 0xF, f"0x{size_freq & 0xF:x}") if chip is not None else ""
        return {
            "chip": chip,
            "chip_id": chip_id,
            "segment_count": count,
            "segments": tuple(sv._segments),
            "entry_addr": entry,
            "flash_mode": _FLASH_MODES.get(mode, f"0x{mode:02x}"),
            "flash_size": _FLASH_SIZES.get(size_freq >> 4, f"0x{size_freq >> 4:x}"),
            "flash_freq": freq,
            "wp_pin": wp,
            "min_chip_rev": min_rev,
            "min_chip_rev_full": min_full,
            "max_chip_rev_full": max_full,
            "hash_appended": hashed == 1,
        }

    def decide(self) -> ImageInfo:
        sv = self.sv
        if self.size == 0:
            return self.info(Verdict(VerdictCode.TRUNCATED, "The file is empty.", "Copy or download it again."))
        merged = self.merged_verdict()
        if sv._state is _State.FOREIGN or (sv._state is _State.HEADER and self.head[0] != IMAGE_MAGIC):
            if merged is not None:
                return self.info(merged[0], embedded_apps=merged[1])
            return self.info(self.foreign_verdict(), **self.header_fields())
        fields = self.header_fields()
        if sv._state is not _State.TRAILER:
            return self.info(self.truncated_verdict(), **fields)
        return self.complete(fields, merged)

    # -- wrong kinds ----------------------------------------------------------------------------------------------

    def foreign_verdict(self) -> Verdict:
        sv, head = self.sv, self.head
        if sv._foreign is not None:
            return sv._foreign
        first = head[0]
        if head[:2] == PARTITION_MAGIC:
            return Verdict(
                VerdictCode.PARTITION_TABLE,
                "This is a partition table (it starts with the partition magic AA 50), not an app image.",
                "The partition table is flashed once over USB at 0x8000; OTA replaces only the app. " + _APP_HINT,
            )
        if first == IMAGE_MAGIC:
            return self.e9_verdict()
        if _looks_random(head[:4096]):
            return Verdict(
                VerdictCode.ENCRYPTED,
                f"This looks like a flash-encrypted image: it starts with 0x{first:02x} instead of the image magic "
                "0xE9 and its bytes are indistinguishable from random.",
                "Push the plaintext app image from build/<project>.bin; a board with flash encryption encrypts it "
                "as it writes.",
            )
        if first == 0xEA:
            return Verdict(
                VerdictCode.ESP8266,
                "This is an ESP8266 firmware image (magic 0xEA, the ESP8266 'v2' format), not an ESP32 app image.",
                "Use the firmware built for the board's ESP32 chip.",
            )
        return _not_an_image(head)

    def e9_verdict(self) -> Verdict:
        head = self.head
        if len(head) < HEADER_SIZE:
            if _plausible_esp8266(head):
                return _esp8266_verdict()
            return self.truncated_verdict()
        chip_id, hashed = head[12] | head[13] << 8, head[23]
        if chip_id not in Chip._value2member_map_ or hashed not in (0, 1):
            if _plausible_esp8266(head):
                return _esp8266_verdict()
            if _looks_random(head[:4096]):
                return Verdict(
                    VerdictCode.ENCRYPTED,
                    "This looks like a flash-encrypted image: its header is not readable and its bytes are "
                    "indistinguishable from random.",
                    "Push the plaintext app image from build/<project>.bin.",
                )
            if chip_id in RETIRED_CHIP_IDS:
                return Verdict(
                    VerdictCode.UNKNOWN_CHIP,
                    f"The image is built for chip id {chip_id} ({RETIRED_CHIP_IDS[chip_id]}), a pre-release chip "
                    "whose id was retired from ESP-IDF in 2023; no production board runs it.",
                    "Rebuild the app with a current ESP-IDF for the board's chip (`idf.py set-target ...`).",
                )
            if chip_id not in Chip._value2member_map_:
                return Verdict(
                    VerdictCode.UNKNOWN_CHIP,
                    f"The image header names chip id {chip_id} (0x{chip_id:04x}), which is not a known ESP32 chip.",
                    "Rebuild the app for the board's chip, or update the bridge if the chip is newer than it.",
                )
            return Verdict(
                VerdictCode.MALFORMED,
                f"Header byte 23 (hash_appended) is 0x{hashed:02x}; an ESP32 image has 0 or 1 there.",
                "The file is damaged or not an ESP32 app image. " + _APP_HINT,
            )
        return self.truncated_verdict()  # pragma: no cover - FOREIGN with a valid header sets _foreign

    def merged_verdict(self) -> tuple[Verdict, tuple[EmbeddedApp, ...]] | None:
        """A merged full-flash file: a partition table at 0x8000 and/or app images at 64 KiB boundaries.

        A file that does not start with an image counts as merged if either is there; a file that starts with a
        complete image (a bootloader at 0x0 on newer chips) only if data follows it and a partition table or an app
        image sits in that data.
        """
        sv = self.sv
        partitions = dict(_parse_partition_table(bytes(sv._pt)))
        found = dict(sv._embedded)
        if sv._state is _State.TRAILER:
            found = {off: raw for off, raw in found.items() if off >= sv._image_len}
            if sv._trail_count == 0 or not (partitions or found):
                return None
        elif sv._state is _State.FOREIGN or (sv._state is _State.HEADER and self.head[0] != IMAGE_MAGIC):
            if self.head[0] == IMAGE_MAGIC and not partitions:
                return None
            if not (partitions or found):
                return None
        else:
            return None
        apps = []
        for off in sorted(found):
            desc = parse_app_descriptor(found[off][APP_DESC_OFFSET:])
            apps.append(
                EmbeddedApp(
                    offset=off,
                    project=desc.project if desc else "",
                    version=desc.version if desc else "",
                    partition=partitions.get(off, ""),
                )
            )
        parts = []
        if self.head[0] == IMAGE_MAGIC:
            parts.append("bootloader at 0x0")
        else:
            for boot in (0x1000, 0x2000):
                if len(self.head) > boot and self.head[boot] == IMAGE_MAGIC:
                    parts.append(f"bootloader at {boot:#x}")
                    break
        if partitions:
            parts.append(f"partition table at {PARTITION_TABLE_OFFSET:#x}")
        if apps:
            where = "the app image sits at " + ", ".join(_describe_app(a) for a in apps)
        else:
            listed = ", ".join(f"{off:#x}" for off in sorted(partitions))
            where = f"it holds no app image where its partition table puts apps ({listed})"
        layout = f" ({', '.join(parts)})" if parts else ""
        message = f"This is a merged full-flash image{layout}, not an app image; {where}."
        hint = (
            "Push the app alone: build/<project>.bin from the ESP-IDF build/ folder (for PlatformIO/Tasmota the "
            "firmware .bin, not *.factory.bin or a flash dump)."
        )
        return Verdict(VerdictCode.MERGED_IMAGE, message, hint), tuple(apps)

    # -- damage -----------------------------------------------------------------------------------------------------

    def truncated_verdict(self) -> Verdict:
        sv = self.sv
        size = self.size
        count = sv._hdr[1] if sv._hdr is not None else 0
        state = sv._state
        if state is _State.HEADER or sv._hdr is None:
            where = f"inside the {HEADER_SIZE}-byte image header"
        elif state is _State.SEG_HEADER:
            where = f"inside the header of segment {len(sv._segments)} of {count}"
        elif state is _State.SEG_DATA:
            seg = sv._segments[-1]
            present = seg.data_len - sv._seg_remaining
            where = (
                f"inside segment {seg.index} of {count} (it declares {seg.data_len:,} bytes, {present:,} are present)"
            )
        elif state is _State.CHECKSUM:
            where = f"before the checksum byte at offset {sv._checksum_off:#x}"
        else:
            where = f"{len(sv._digest)} bytes into the {DIGEST_SIZE}-byte SHA-256 digest"
        return Verdict(
            VerdictCode.TRUNCATED,
            f"The file is truncated: it ends after {size:,} bytes, {where}.",
            "The copy or download was cut short: fetch the file again and compare its size and SHA-256 with the "
            "build output.",
        )

    # -- a complete container -------------------------------------------------------------------------------------

    def complete(self, fields: dict[str, object], merged: tuple[Verdict, tuple[EmbeddedApp, ...]] | None) -> ImageInfo:
        sv = self.sv
        assert sv._spec is not None
        spec = sv._spec
        segments = sv._segments
        hashed = bool(fields["hash_appended"])
        checksum_calc = sv._xor
        checksum_ok = sv._checksum == checksum_calc
        digest_ok = hashed and bytes(sv._digest) == sv._digest_calc
        trailing = self.size - sv._image_len
        app = None
        if segments and segments[0].data_len >= APP_DESC_SIZE:
            app = parse_app_descriptor(self.head[APP_DESC_OFFSET : APP_DESC_OFFSET + APP_DESC_SIZE])
        boot = _parse_bootloader_descriptor(self.head[APP_DESC_OFFSET : APP_DESC_OFFSET + _BOOT_DESC.size])
        flash_segments = [s for s in segments if s.kind in ("drom", "irom", "flash")]
        mmu_page = _mmu_page(spec, flash_segments, app)
        fields.update(
            checksum=sv._checksum,
            checksum_calc=checksum_calc,
            checksum_ok=checksum_ok,
            digest=bytes(sv._digest).hex(),
            digest_calc=sv._digest_calc.hex() if hashed else "",
            digest_ok=digest_ok,
            image_size=sv._image_len,
            trailing_bytes=trailing,
            mmu_page_bytes=mmu_page,
            app=app,
            bootloader=boot if app is None else None,
        )
        if merged is not None:
            return self.info(merged[0], embedded_apps=merged[1], **fields)
        chip = spec.display_name
        if not flash_segments:
            if boot is not None:
                verdict = Verdict(
                    VerdictCode.BOOTLOADER,
                    f"This is an {chip} 2nd-stage bootloader (ESP-IDF {boot.idf_version or '?'}), not an app image: "
                    "its segments load into RAM and it carries a bootloader descriptor.",
                    "OTA replaces the app only. " + _APP_HINT + " (not build/bootloader/bootloader.bin)",
                )
            else:
                verdict = Verdict(
                    VerdictCode.RAM_ONLY,
                    f"This {chip} image has no flash-mapped segment: every segment loads into RAM, so it is a "
                    "RAM-loadable app (or a bootloader) and cannot boot from an OTA partition.",
                    "Build the app for flash (a normal ESP-IDF project). " + _APP_HINT,
                )
            return self.info(verdict, **fields)
        if mmu_page is None:
            bad = _misaligned(spec, flash_segments, app)
            verdict = Verdict(
                VerdictCode.MALFORMED,
                f"Segment {bad.index} loads at {bad.load_addr:#x} but its data sits at file offset {bad.data_offset:#x}"
                f"; the {chip} bootloader needs both equal modulo the MMU page.",
                "The image was not produced by esptool elf2image or was edited. " + _APP_HINT,
            )
            return self.info(verdict, **fields)
        if not checksum_ok:
            verdict = Verdict(
                VerdictCode.BAD_CHECKSUM,
                f"The image is corrupt: its checksum byte is 0x{sv._checksum or 0:02x} but the segment data gives "
                f"0x{checksum_calc:02x}.",
                "Fetch or copy the file again from the build output; the bootloader would refuse this one.",
            )
            return self.info(verdict, **fields)
        if hashed and not digest_ok:
            verdict = Verdict(
                VerdictCode.BAD_DIGEST,
                "The image is corrupt or was edited after the build: the SHA-256 appended to it does not match "
                f"its contents (stored {bytes(sv._digest).hex()[:16]}..., computed {sv._digest_calc.hex()[:16]}...).",
                "Fetch the file again, or rebuild it; do not patch the header of an app image (esptool never "
                "rewrites the flash settings of an app).",
            )
            return self.info(verdict, **fields)
        quirks: list[Quirk] = []
        notes: list[str] = []
        if trailing:
            trailer = self.trailer_quirk()
            if trailer is None:
                verdict = Verdict(
                    VerdictCode.TRAILING_DATA,
                    f"{trailing:,} bytes of unknown data follow the image's digest at offset {sv._image_len:#x}; they "
                    "are not a Secure Boot signature or 0xFF padding.",
                    "Push the exact build output (build/<project>.bin); the board would write these bytes as well.",
                )
                return self.info(verdict, **fields)
            quirks.append(trailer)
            notes.append(_QUIRK_NOTES[trailer].format(n=trailing))
        if not hashed:
            quirks.append(Quirk.NO_DIGEST)
            notes.append(_QUIRK_NOTES[Quirk.NO_DIGEST])
        if app is None:
            quirks.append(Quirk.NO_APP_DESCRIPTOR)
            notes.append(_QUIRK_NOTES[Quirk.NO_APP_DESCRIPTOR])
        else:
            if not app.project:
                quirks.append(Quirk.EMPTY_PROJECT)
                notes.append(_QUIRK_NOTES[Quirk.EMPTY_PROJECT])
            if not app.version:
                quirks.append(Quirk.EMPTY_VERSION)
                notes.append(_QUIRK_NOTES[Quirk.EMPTY_VERSION])
            if app.elf_sha256_is_zero:
                quirks.append(Quirk.ELF_SHA256_ZERO)
                notes.append(_QUIRK_NOTES[Quirk.ELF_SHA256_ZERO])
        what = f"Valid {chip} app image"
        if app is not None and (app.project or app.version):
            what += f": {app.project or '(no project)'} {app.version or '(no version)'}"
        what += f", {sv._image_len:,} bytes"
        if not quirks:
            return self.info(Verdict(VerdictCode.OK, what + "."), **fields)
        verdict = Verdict(VerdictCode.OK_QUIRK, what + "; " + "; ".join(notes) + ".", _quirk_hint(quirks),
                          tuple(quirks))  # fmt: skip
        return self.info(verdict, **fields)

    def trailer_quirk(self) -> Quirk | None:
        sv = self.sv
        if not sv._trail_has_non_ff:
            return Quirk.FF_PADDING
        head = bytes(sv._trail_head)
        last = sv._trail_last_non_ff
        if head[:4] == b"\0\0\0\0" and last < sv._image_len + SBV1_TRAILER_MAX:
            return Quirk.SECURE_BOOT_V1_SIGNATURE
        probe = bytes(sv._sig_probe)
        is_sig_block = len(probe) >= 2 and probe[0] == SBV2_MAGIC and probe[1] in (2, 3)
        if is_sig_block and last < sv._sig_probe_off + SIG_SECTOR_BYTES:
            return Quirk.SECURE_BOOT_V2_SIGNATURE
        return None


_QUIRK_NOTES: dict[Quirk, str] = {
    Quirk.SECURE_BOOT_V1_SIGNATURE: "{n} bytes of Secure Boot V1 signature follow the digest",
    Quirk.SECURE_BOOT_V2_SIGNATURE: "a Secure Boot V2 signature block follows the digest ({n} bytes)",
    Quirk.FF_PADDING: "{n} bytes of 0xFF padding follow the digest",
    Quirk.NO_DIGEST: "no SHA-256 digest is appended (only the 8-bit checksum protects it)",
    Quirk.NO_APP_DESCRIPTOR: "no app descriptor (built before ESP-IDF v3.3): no project, version or secure_version",
    Quirk.EMPTY_PROJECT: "the project name is empty",
    Quirk.EMPTY_VERSION: "the version string is empty",
    Quirk.ELF_SHA256_ZERO: "the ELF SHA-256 is all zeros",
}


def _quirk_hint(quirks: Iterable[Quirk]) -> str:
    q = set(quirks)
    if q & {Quirk.NO_APP_DESCRIPTOR, Quirk.EMPTY_PROJECT, Quirk.EMPTY_VERSION}:
        return (
            "The image cannot tell which release it is: give the project and version explicitly when publishing "
            "(`bridge repo add --project ... --version ...`)."
        )
    if Quirk.NO_DIGEST in q:
        return "Rebuild with esptool's default (--append-digest) so the board can verify the whole image."
    return ""


def _esp8266_verdict() -> Verdict:
    return Verdict(
        VerdictCode.ESP8266,
        "This is an ESP8266 firmware image (8-byte header, first segment loading into ESP8266 RAM), not an ESP32 "
        "app image.",
        "Use the firmware built for the board's ESP32 chip.",
    )


def _not_an_image(head: bytes) -> Verdict:
    first = head[0]
    if head[:4] == b"\x7fELF":
        return Verdict(
            VerdictCode.NOT_AN_IMAGE,
            "This is an ELF file, not an app image.",
            "Push the .bin that `idf.py build` writes beside the ELF: build/<project>.bin.",
        )
    if head[:1] == b":" and all(chr(c) in "0123456789ABCDEFabcdef:\r\n" for c in head[:64]):
        return Verdict(
            VerdictCode.NOT_AN_IMAGE,
            "This is an Intel HEX file, not a binary app image.",
            "Push the binary build/<project>.bin (or convert the HEX with `esptool hex2bin`).",
        )
    if head[:2] in (b"PK", b"\x1f\x8b"):
        return Verdict(
            VerdictCode.NOT_AN_IMAGE,
            "This is an archive (zip or gzip), not an app image.",
            "Unpack it and push the app .bin inside (build/<project>.bin).",
        )
    if first == 0xFF:
        return Verdict(
            VerdictCode.NOT_AN_IMAGE,
            "This file starts with 0xFF (erased flash) and holds no app image at a 64 KiB boundary.",
            _APP_HINT,
        )
    return Verdict(
        VerdictCode.NOT_AN_IMAGE,
        f"This is not an ESP32 app image: it starts with 0x{first:02x}, not the image magic 0xE9.",
        _APP_HINT,
    )


def _parse_partition_table(raw: bytes) -> list[tuple[int, str]]:
    """App partitions ``(offset, "label (subtype)")`` of a partition table, or [] if ``raw`` is not one."""
    apps: list[tuple[int, str]] = []
    for pos in range(0, len(raw) - _PARTITION.size + 1, _PARTITION.size):
        magic, ptype, subtype, offset, _size, label, _flags = _PARTITION.unpack_from(raw, pos)
        if magic != PARTITION_MAGIC:
            break
        if ptype == 0:
            apps.append((offset, f"{_cstr(label)} ({_APP_SUBTYPES.get(subtype, hex(subtype))})"))
    return apps


def _describe_app(app: EmbeddedApp) -> str:
    text = f"{app.offset:#x}"
    extra = [x for x in (app.partition, " ".join(p for p in (app.project, app.version) if p)) if x]
    return text + (f" ({', '.join(extra)})" if extra else "")


def _page_candidates(spec: ChipSpec, app: AppDescriptor | None) -> tuple[int, ...]:
    recorded = app.mmu_page_bytes if app is not None else None
    if recorded is not None and recorded in spec.mmu_pages_bytes:
        return (recorded,)
    return tuple(sorted(spec.mmu_pages_bytes, reverse=True))


def _mmu_page(spec: ChipSpec, flash: list[Segment], app: AppDescriptor | None) -> int | None:
    """The largest MMU page size the flash-mapped segments are aligned for (None: aligned for none)."""
    for page in _page_candidates(spec, app):
        if all(s.data_offset % page == s.load_addr % page for s in flash):
            return page
    return None


def _misaligned(spec: ChipSpec, flash: list[Segment], app: AppDescriptor | None) -> Segment:
    page = min(_page_candidates(spec, app))
    return next(s for s in flash if s.data_offset % page != s.load_addr % page)


# -- the public functions ---------------------------------------------------------------------------------------------


def inspect_image(data: bytes | bytearray | memoryview | Path) -> ImageInfo:
    """Parse and judge a file. Never raises for a bad image: the answer is in ``.verdict``.

    A :class:`Path` is read in 64 KiB chunks (bounded memory); an unreadable file raises ``ImageError`` with code
    ``"unreadable"``.
    """
    validator = StreamValidator()
    if isinstance(data, Path):
        try:
            with data.open("rb") as fh:
                while chunk := fh.read(READ_CHUNK_BYTES):
                    validator.feed(chunk)
        except OSError as exc:
            raise ImageError(
                f"Cannot read {data}: {exc.strerror or exc}.",
                code="unreadable",
                hint="Check the path and the file's permissions.",
            ) from exc
    else:
        validator.feed(data)
    info = validator.finish()
    log.debug("inspected %d bytes: %s", info.size, info.verdict.code)
    return info


def validate_image(data: bytes | bytearray | memoryview | Path) -> ImageInfo:
    """Like :func:`inspect_image`, but raise ``ImageError(message, code=verdict.code, hint=...)`` unless ok."""
    info = inspect_image(data)
    if not info.verdict.ok:
        raise ImageError(info.verdict.message, code=str(info.verdict.code), hint=info.verdict.hint)
    return info


def fit_verdict(
    info: ImageInfo, *, chip: Chip | int, partition_size: int, min_secure_version: int = 0
) -> Verdict | None:
    """Why a valid image does not fit a board (chip, OTA partition size, anti-rollback counter), or None if it does."""
    board = Chip(chip) if chip in Chip._value2member_map_ else None
    board_name = board.display_name if board is not None else f"chip id {int(chip)}"
    if info.chip_id != int(chip):
        return Verdict(
            VerdictCode.CHIP_MISMATCH,
            f"The image is built for {info.chip_name or f'chip id {info.chip_id}'} but the board is an {board_name}.",
            f"Use the firmware built for the {board_name} (`idf.py set-target` {board_name.lower().replace('-', '')}).",
        )
    if info.size > partition_size:
        return Verdict(
            VerdictCode.TOO_LARGE,
            f"The image is {info.size:,} bytes but the board's OTA partition holds {partition_size:,} bytes "
            f"({info.size - partition_size:,} too many).",
            "Shrink the app (optimise for size, drop components) or give the board larger OTA partitions over USB.",
        )
    if info.secure_version < min_secure_version:
        return Verdict(
            VerdictCode.SECURE_VERSION_TOO_LOW,
            f"The image's secure_version is {info.secure_version} but the board only accepts "
            f"{min_secure_version} or higher (anti-rollback); it would refuse to boot it.",
            "Publish a build whose CONFIG_BOOTLOADER_APP_SECURE_VERSION is at least "
            f"{min_secure_version}; older releases cannot be installed on this board.",
        )
    return None


def check_fits_board(info: ImageInfo, *, chip: Chip | int, partition_size: int, min_secure_version: int = 0) -> None:
    """Raise ``PreflightError`` (code ``chip_mismatch``/``too_large``/``secure_version_too_low``) unless ``info``
    fits the board; raise ``ImageError`` if the image itself is not valid."""
    if not info.verdict.ok:
        raise ImageError(info.verdict.message, code=str(info.verdict.code), hint=info.verdict.hint)
    verdict = fit_verdict(info, chip=chip, partition_size=partition_size, min_secure_version=min_secure_version)
    if verdict is not None:
        raise PreflightError(verdict.message, code=str(verdict.code), hint=verdict.hint)
