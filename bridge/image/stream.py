"""Streaming parser of ESP32 application images (the ``.bin`` that ``idf.py build`` writes).

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

from bridge.image.chips import Chip, ChipSpec, chip_spec
from bridge.image.format import (
    APP_DESC_OFFSET,
    APP_DESC_SIZE,
    APP_PROBE_BYTES,
    APP_PROBE_STEP,
    CHECKSUM_SEED,
    DIGEST_SIZE,
    HEAD_BYTES,
    HEADER_SIZE,
    HEADER_STRUCT,
    IMAGE_MAGIC,
    MAX_EMBEDDED_APPS,
    MAX_SEGMENT_BYTES,
    MAX_SEGMENTS,
    PARTITION_TABLE_BYTES,
    PARTITION_TABLE_OFFSET,
    SEGMENT_HEADER_SIZE,
    SEGMENT_HEADER_STRUCT,
    SIG_SECTOR_BYTES,
    parse_app_descriptor,
    plausible_esp8266,
    xor_fold,
)
from bridge.image.judge import judge
from bridge.image.model import AppDescriptor, ImageInfo, Segment, Verdict, VerdictCode
from bridge.image.observation import Observation, Stage

__all__ = ["StreamValidator"]

_APP_HINT = "Use the application image that `idf.py build` writes: build/<project>.bin."


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
        self._state = Stage.HEADER
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
        return self._state is Stage.FOREIGN

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
        return judge(self._observe())

    # -- the walk -----------------------------------------------------------------------------------------------

    def _step(self, data: memoryview, pos: int, offset: int) -> int:
        """Consume bytes of ``data`` from ``pos`` (file offset ``offset``) in the current state; return the new pos."""
        state = self._state
        avail = len(data) - pos
        if state is Stage.HEADER:
            if offset == 0 and data[pos] != IMAGE_MAGIC:
                self._state = Stage.FOREIGN
                return len(data)
            take = min(HEADER_SIZE - offset, avail)
            self._img_sha.update(data[pos : pos + take])
            if offset + take == HEADER_SIZE:
                self._on_header(bytes(self._head[:HEADER_SIZE]))
            return pos + take
        if state is Stage.SEG_HEADER:
            take = min(SEGMENT_HEADER_SIZE - len(self._seg_hdr), avail)
            piece = data[pos : pos + take]
            self._seg_hdr += piece
            self._img_sha.update(piece)
            if len(self._seg_hdr) == SEGMENT_HEADER_SIZE:
                self._on_segment_header(offset + take - SEGMENT_HEADER_SIZE)
            return pos + take
        if state is Stage.SEG_DATA:
            take = min(self._seg_remaining, avail)
            piece = data[pos : pos + take]
            self._img_sha.update(piece)
            self._xor ^= xor_fold(piece)
            self._seg_remaining -= take
            if self._seg_remaining == 0:
                self._next_segment(offset + take)
            return pos + take
        if state is Stage.CHECKSUM:
            take = min(self._checksum_off + 1 - offset, avail)
            piece = data[pos : pos + take]
            self._img_sha.update(piece)
            if offset + take == self._checksum_off + 1:
                self._checksum = piece[-1]
                self._digest_calc = self._img_sha.digest()
                if self._hdr is not None and self._hdr[14] == 1:
                    self._state = Stage.DIGEST
                else:
                    self._enter_trailer(self._checksum_off + 1)
            return pos + take
        if state is Stage.DIGEST:
            take = min(DIGEST_SIZE - len(self._digest), avail)
            self._digest += data[pos : pos + take]
            if len(self._digest) == DIGEST_SIZE:
                self._enter_trailer(offset + take)
            return pos + take
        if state is Stage.TRAILER:
            self._on_trailer(data[pos:], offset)
            return len(data)
        return len(data)  # FOREIGN: only the probes and the file hash look at the rest

    def _on_header(self, raw: bytes) -> None:
        hdr = HEADER_STRUCT.unpack(raw)
        self._hdr = hdr
        segment_count, chip_id, hash_appended = hdr[1], hdr[9], hdr[14]
        # An ESP8266 image has an 8-byte header: bytes 8-15 are then a segment header loading into ESP8266 RAM,
        # which an ESP32 header (wp_pin 0xEE at byte 8) never looks like.
        if plausible_esp8266(raw) or hash_appended not in (0, 1) or chip_id not in Chip._value2member_map_:
            self._state = Stage.FOREIGN
            return
        if not 1 <= segment_count <= MAX_SEGMENTS:
            self._foreign = Verdict(
                VerdictCode.MALFORMED,
                f"The image header declares {segment_count} segments; an ESP32 image has 1 to {MAX_SEGMENTS}.",
                "The file is damaged or not an ESP32 app image. " + _APP_HINT,
            )
            self._state = Stage.FOREIGN
            return
        self._spec = chip_spec(chip_id)
        self._state = Stage.SEG_HEADER

    def _on_segment_header(self, header_offset: int) -> None:
        assert self._spec is not None
        addr, length = SEGMENT_HEADER_STRUCT.unpack(self._seg_hdr)
        self._seg_hdr.clear()
        index = len(self._segments)
        if length % 4 or length >= MAX_SEGMENT_BYTES:
            self._foreign = Verdict(
                VerdictCode.MALFORMED,
                f"Segment {index} at offset {header_offset:#x} declares {length:,} bytes; the bootloader needs a "
                "multiple of 4 below 16 MiB.",
                "The file is damaged or not an ESP32 app image. " + _APP_HINT,
            )
            self._state = Stage.FOREIGN
            return
        kind = "padding" if addr == 0 else self._spec.flash_kind(addr)
        self._segments.append(Segment(index, addr, length, header_offset, kind))
        self._seg_remaining = length
        if length:
            self._state = Stage.SEG_DATA
        else:
            self._next_segment(header_offset + SEGMENT_HEADER_SIZE)

    def _next_segment(self, end_offset: int) -> None:
        assert self._hdr is not None
        if len(self._segments) < self._hdr[1]:
            self._state = Stage.SEG_HEADER
            return
        # 0..15 zero bytes, then the checksum as the last byte of a 16-byte block.
        self._checksum_off = ((end_offset + 1 + 15) & ~15) - 1
        self._state = Stage.CHECKSUM

    def _enter_trailer(self, image_len: int) -> None:
        self._image_len = image_len
        self._sig_probe_off = (image_len + SIG_SECTOR_BYTES - 1) // SIG_SECTOR_BYTES * SIG_SECTOR_BYTES
        self._state = Stage.TRAILER

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
        hdr = HEADER_STRUCT.unpack_from(buf)
        if hdr[14] in (0, 1) and hdr[9] in Chip._value2member_map_ and 1 <= hdr[1] <= MAX_SEGMENTS:
            self._embedded.append((base, buf))

    def _settle_probes(self) -> None:
        for base in sorted(self._app_probes):
            self._settle_probe(base)

    def _observe(self) -> Observation:
        return Observation(
            size=self._seen,
            sha256=self._file_sha.hexdigest(),
            head=bytes(self._head),
            stage=self._state,
            foreign=self._foreign,
            hdr=self._hdr,
            spec=self._spec,
            segments=tuple(self._segments),
            seg_remaining=self._seg_remaining,
            xor=self._xor,
            checksum_off=self._checksum_off,
            checksum=self._checksum,
            digest=bytes(self._digest),
            digest_calc=self._digest_calc,
            image_len=self._image_len,
            trail_count=self._trail_count,
            trail_head=bytes(self._trail_head),
            trail_last_non_ff=self._trail_last_non_ff,
            trail_has_non_ff=self._trail_has_non_ff,
            sig_probe_off=self._sig_probe_off,
            sig_probe=bytes(self._sig_probe),
            pt=bytes(self._pt),
            embedded=tuple(self._embedded),
        )
