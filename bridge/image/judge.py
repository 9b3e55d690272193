"""From what the walk saw to one verdict a person can act on.

:func:`judge` picks the verdict in a fixed order (the list is in :mod:`bridge.image.stream`): the kind of file first
(a bootloader with a bad checksum is still "a bootloader"), then damage, then quirks of a valid image.
"""

from __future__ import annotations

from collections.abc import Iterable

from bridge.image.chips import RETIRED_CHIP_IDS, Chip, ChipSpec, chip_spec
from bridge.image.format import (
    APP_DESC_OFFSET,
    APP_DESC_SIZE,
    BOOT_DESC_STRUCT,
    DIGEST_SIZE,
    FLASH_MODES,
    FLASH_SIZES,
    HEADER_SIZE,
    IMAGE_MAGIC,
    PARTITION_MAGIC,
    PARTITION_TABLE_OFFSET,
    SBV1_TRAILER_MAX,
    SBV2_MAGIC,
    SIG_SECTOR_BYTES,
    looks_random,
    parse_app_descriptor,
    parse_bootloader_descriptor,
    parse_partition_table,
    plausible_esp8266,
)
from bridge.image.model import AppDescriptor, EmbeddedApp, ImageInfo, Quirk, Segment, Verdict, VerdictCode
from bridge.image.observation import Observation, Stage

__all__ = ["judge"]

_APP_HINT = "Use the application image that `idf.py build` writes: build/<project>.bin."


def judge(obs: Observation) -> ImageInfo:
    """The :class:`ImageInfo` and verdict for a finished walk."""
    return _Judge(obs).decide()


class _Judge:
    """Turns what a :class:`Observation` saw into an :class:`ImageInfo` with one verdict."""

    def __init__(self, sv: Observation) -> None:
        self.sv = sv
        self.head = sv.head
        self.size = sv.size
        self.sha256 = sv.sha256

    def info(self, verdict: Verdict, **fields: object) -> ImageInfo:
        return ImageInfo(size=self.size, sha256=self.sha256, verdict=verdict, **fields)  # type: ignore[arg-type]

    # Fields known once the header and segments were read.
    def header_fields(self) -> dict[str, object]:
        sv = self.sv
        if sv.hdr is None:
            return {}
        (_m, count, mode, size_freq, entry, wp, _d1, _d2, _d3, chip_id, min_rev, min_full, max_full, _r,
         hashed) = sv.hdr  # fmt: skip
        chip = Chip(chip_id) if chip_id in Chip._value2member_map_ else None
        freq = chip_spec(chip).flash_freq.get(size_freq & 0xF, f"0x{size_freq & 0xF:x}") if chip is not None else ""
        return {
            "chip": chip,
            "chip_id": chip_id,
            "segment_count": count,
            "segments": tuple(sv.segments),
            "entry_addr": entry,
            "flash_mode": FLASH_MODES.get(mode, f"0x{mode:02x}"),
            "flash_size": FLASH_SIZES.get(size_freq >> 4, f"0x{size_freq >> 4:x}"),
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
        if sv.stage is Stage.FOREIGN or (sv.stage is Stage.HEADER and self.head[0] != IMAGE_MAGIC):
            if merged is not None:
                return self.info(merged[0], embedded_apps=merged[1])
            verdict = self.foreign_verdict()
            fields = self.header_fields() if verdict.code is not VerdictCode.ESP8266 else {}
            return self.info(verdict, **fields)
        fields = self.header_fields()
        if sv.stage is not Stage.TRAILER:
            return self.info(self.truncated_verdict(), **fields)
        return self.complete(fields, merged)

    # -- wrong kinds ----------------------------------------------------------------------------------------------

    def foreign_verdict(self) -> Verdict:
        sv, head = self.sv, self.head
        if sv.foreign is not None:
            return sv.foreign
        first = head[0]
        if head[:2] == PARTITION_MAGIC:
            return Verdict(
                VerdictCode.PARTITION_TABLE,
                "This is a partition table (it starts with the partition magic AA 50), not an app image.",
                "The partition table is flashed once over USB at 0x8000; OTA replaces only the app. " + _APP_HINT,
            )
        if first == IMAGE_MAGIC:
            return self.e9_verdict()
        if looks_random(head[:4096]):
            return Verdict(
                VerdictCode.ENCRYPTED,
                f"This looks like a flash-encrypted image: it starts with 0x{first:02x} instead of the image magic "
                "0xE9 and its bytes are indistinguishable from random.",
                "Use the plaintext app image from build/<project>.bin; a board with flash encryption encrypts it "
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
            if plausible_esp8266(head):
                return _esp8266_verdict()
            return self.truncated_verdict()
        if plausible_esp8266(head):
            return _esp8266_verdict()
        chip_id, hashed = head[12] | head[13] << 8, head[23]
        if chip_id not in Chip._value2member_map_ or hashed not in (0, 1):
            if looks_random(head[:4096]):
                return Verdict(
                    VerdictCode.ENCRYPTED,
                    "This looks like a flash-encrypted image: its header is not readable and its bytes are "
                    "indistinguishable from random.",
                    "Use the plaintext app image from build/<project>.bin.",
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
        partitions = dict(parse_partition_table(bytes(sv.pt)))
        found = dict(sv.embedded)
        if sv.stage is Stage.TRAILER:
            if sv.image_len > PARTITION_TABLE_OFFSET:
                partitions = {}  # those bytes belong to the image itself
            found = {off: raw for off, raw in found.items() if off >= sv.image_len}
            if sv.trail_count == 0 or not (partitions or found):
                return None
        elif sv.stage is Stage.FOREIGN or (sv.stage is Stage.HEADER and self.head[0] != IMAGE_MAGIC):
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
            where = ("the app image sits at " if len(apps) == 1 else "app images sit at ") + ", ".join(
                _describe_app(a) for a in apps
            )
        else:
            listed = ", ".join(f"{off:#x}" for off in sorted(partitions))
            where = f"it holds no app image where its partition table puts apps ({listed})"
        layout = f" ({', '.join(parts)})" if parts else ""
        message = f"This is a merged full-flash image{layout}, not an app image; {where}."
        hint = (
            "Use the app alone: build/<project>.bin from the ESP-IDF build/ folder (for PlatformIO/Tasmota the "
            "firmware .bin, not *.factory.bin or a flash dump)."
        )
        return Verdict(VerdictCode.MERGED_IMAGE, message, hint), tuple(apps)

    # -- damage -----------------------------------------------------------------------------------------------------

    def truncated_verdict(self) -> Verdict:
        sv = self.sv
        size = self.size
        count = sv.hdr[1] if sv.hdr is not None else 0
        state = sv.stage
        if state is Stage.HEADER or sv.hdr is None:
            where = f"inside the {HEADER_SIZE}-byte image header"
        elif state is Stage.SEG_HEADER:
            where = f"inside the header of segment {len(sv.segments)} of {count}"
        elif state is Stage.SEG_DATA:
            seg = sv.segments[-1]
            present = seg.data_len - sv.seg_remaining
            where = (
                f"inside segment {seg.index} of {count} (it declares {seg.data_len:,} bytes, {present:,} are present)"
            )
        elif state is Stage.CHECKSUM:
            where = f"before the checksum byte at offset {sv.checksum_off:#x}"
        else:
            where = f"{len(sv.digest)} bytes into the {DIGEST_SIZE}-byte SHA-256 digest"
        return Verdict(
            VerdictCode.TRUNCATED,
            f"The file is truncated: it ends after {size:,} bytes, {where}.",
            "The copy or download was cut short: fetch the file again and compare its size and SHA-256 with the "
            "build output.",
        )

    # -- a complete container -------------------------------------------------------------------------------------

    def complete(self, fields: dict[str, object], merged: tuple[Verdict, tuple[EmbeddedApp, ...]] | None) -> ImageInfo:
        sv = self.sv
        assert sv.spec is not None
        spec = sv.spec
        segments = sv.segments
        hashed = bool(fields["hash_appended"])
        checksum_calc = sv.xor
        checksum_ok = sv.checksum == checksum_calc
        digest_ok = hashed and bytes(sv.digest) == sv.digest_calc
        trailing = self.size - sv.image_len
        app = None
        if segments and segments[0].data_len >= APP_DESC_SIZE:
            app = parse_app_descriptor(self.head[APP_DESC_OFFSET : APP_DESC_OFFSET + APP_DESC_SIZE])
        boot = parse_bootloader_descriptor(self.head[APP_DESC_OFFSET : APP_DESC_OFFSET + BOOT_DESC_STRUCT.size])
        flash_segments = [s for s in segments if s.kind in ("drom", "irom", "flash")]
        mmu_page = _mmu_page(spec, flash_segments, app)
        fields.update(
            checksum=sv.checksum,
            checksum_calc=checksum_calc,
            checksum_ok=checksum_ok,
            digest=bytes(sv.digest).hex(),
            digest_calc=sv.digest_calc.hex() if hashed else "",
            digest_ok=digest_ok,
            image_size=sv.image_len,
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
                    "OTA replaces the app only: use build/<project>.bin, not build/bootloader/bootloader.bin.",
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
                f"The image is corrupt: its checksum byte is 0x{sv.checksum or 0:02x} but the segment data gives "
                f"0x{checksum_calc:02x}.",
                "Fetch or copy the file again from the build output; the bootloader would refuse this one.",
            )
            return self.info(verdict, **fields)
        if hashed and not digest_ok:
            verdict = Verdict(
                VerdictCode.BAD_DIGEST,
                "The image is corrupt or was edited after the build: the SHA-256 appended to it does not match "
                f"its contents (stored {bytes(sv.digest).hex()[:16]}..., computed {sv.digest_calc.hex()[:16]}...).",
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
                    f"{trailing:,} bytes of unknown data follow the image's digest at offset {sv.image_len:#x}; they "
                    "are not a Secure Boot signature or 0xFF padding.",
                    "Use the exact build output (build/<project>.bin); the board would write these bytes as well.",
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
        what += f", {sv.image_len:,} bytes"
        if not quirks:
            return self.info(Verdict(VerdictCode.OK, what + "."), **fields)
        verdict = Verdict(VerdictCode.OK_QUIRK, what + "; " + "; ".join(notes) + ".", _quirk_hint(quirks),
                          tuple(quirks))  # fmt: skip
        return self.info(verdict, **fields)

    def trailer_quirk(self) -> Quirk | None:
        sv = self.sv
        if not sv.trail_has_non_ff:
            return Quirk.FF_PADDING
        head = bytes(sv.trail_head)
        last = sv.trail_last_non_ff
        # Version word 0, then a 64-byte ECDSA signature (not all zeros), then at most 12 bytes of --secure-pad room.
        signature = head[4:68]
        if (
            head[:4] == b"\0\0\0\0"
            and len(signature) == 64
            and any(signature)
            and last < sv.image_len + SBV1_TRAILER_MAX
        ):
            return Quirk.SECURE_BOOT_V1_SIGNATURE
        probe = bytes(sv.sig_probe)
        is_sig_block = len(probe) >= 2 and probe[0] == SBV2_MAGIC and probe[1] in (2, 3)
        if is_sig_block and last < sv.sig_probe_off + SIG_SECTOR_BYTES:
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


_NAMELESS_HINT = (
    "The image does not say which release it is: name it when publishing "
    "(`bridge repo add DIR IMAGE --project NAME --version VERSION`)."
)
_QUIRK_HINTS: dict[Quirk, str] = {
    Quirk.NO_APP_DESCRIPTOR: _NAMELESS_HINT,
    Quirk.EMPTY_PROJECT: _NAMELESS_HINT,
    Quirk.EMPTY_VERSION: _NAMELESS_HINT,
    Quirk.NO_DIGEST: "Rebuild with esptool's default (--append-digest) so the board can verify the whole image.",
    Quirk.ELF_SHA256_ZERO: "The ELF SHA-256 cannot identify this build; identify it by the file's SHA-256 instead.",
    Quirk.SECURE_BOOT_V1_SIGNATURE: "The signature goes to the board with the image; only a board with Secure Boot "
    "V1 checks it.",
    Quirk.SECURE_BOOT_V2_SIGNATURE: "The signature block goes to the board with the image; a board with Secure Boot "
    "V2 verifies it.",
    Quirk.FF_PADDING: "The padding is written to flash as well; it is harmless but makes the transfer longer.",
}


def _quirk_hint(quirks: Iterable[Quirk]) -> str:
    hints: list[str] = []
    for quirk in quirks:
        if _QUIRK_HINTS[quirk] not in hints:
            hints.append(_QUIRK_HINTS[quirk])
    return " ".join(hints)


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
            "Use the .bin that `idf.py build` writes beside the ELF: build/<project>.bin.",
        )
    if head[:1] == b":" and all(chr(c) in "0123456789ABCDEFabcdef:\r\n" for c in head[:64]):
        return Verdict(
            VerdictCode.NOT_AN_IMAGE,
            "This is an Intel HEX file, not a binary app image.",
            "Use the binary build/<project>.bin (or convert the HEX with `esptool hex2bin`).",
        )
    if head[:2] in (b"PK", b"\x1f\x8b"):
        return Verdict(
            VerdictCode.NOT_AN_IMAGE,
            "This is an archive (zip or gzip), not an app image.",
            "Unpack it and use the app .bin inside (build/<project>.bin).",
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
