"""What an inspection finds: the verdict, the image's fields, its app descriptor.

All records are frozen dataclasses; ``to_dict()`` gives the JSON form ``bridge image info --json`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum, unique
from typing import Any

from bridge.image.chips import Chip

__all__ = [
    "AppDescriptor",
    "BootloaderDescriptor",
    "EmbeddedApp",
    "ImageInfo",
    "Quirk",
    "Segment",
    "Verdict",
    "VerdictCode",
]


@unique
class VerdictCode(StrEnum):
    """Why an image may or may not be pushed. The value is the stable ``code`` of ``ImageError``/``PreflightError``."""

    OK = "ok"
    """A valid app image."""
    OK_QUIRK = "ok_quirk"
    """A valid app image with something a person should know (see ``Verdict.quirks``)."""
    # Wrong kind of file.
    PARTITION_TABLE = "partition_table"
    BOOTLOADER = "bootloader"
    MERGED_IMAGE = "merged_image"
    ENCRYPTED = "encrypted"
    ESP8266 = "esp8266"
    UNKNOWN_CHIP = "unknown_chip"
    RAM_ONLY = "ram_only"
    NOT_AN_IMAGE = "not_an_image"
    """No ESP image magic and nothing else recognised (ELF, Intel HEX, archive, text, erased flash ...)."""
    # Damaged.
    TRUNCATED = "truncated"
    BAD_CHECKSUM = "bad_checksum"
    BAD_DIGEST = "bad_digest"
    MALFORMED = "malformed"
    """The container breaks a rule the bootloader enforces (segment count, length, MMU alignment, header byte 23)."""
    TRAILING_DATA = "trailing_data"
    """Unrecognised bytes after the image's SHA-256 digest (not a signature, not 0xFF padding)."""
    # Valid, but not for this board (``check_fits_board``).
    TOO_LARGE = "too_large"
    CHIP_MISMATCH = "chip_mismatch"
    SECURE_VERSION_TOO_LOW = "secure_version_too_low"

    @property
    def ok(self) -> bool:
        return self in (VerdictCode.OK, VerdictCode.OK_QUIRK)


@unique
class Quirk(StrEnum):
    """Tolerated oddities of a valid image, listed in ``Verdict.quirks``."""

    NO_APP_DESCRIPTOR = "no_app_descriptor"
    """Built before ESP-IDF v3.3: no ``esp_app_desc_t``, so no version, project or secure_version (read as 0)."""
    EMPTY_PROJECT = "empty_project"
    EMPTY_VERSION = "empty_version"
    ELF_SHA256_ZERO = "elf_sha256_zero"
    SECURE_BOOT_V1_SIGNATURE = "secure_boot_v1_signature"
    SECURE_BOOT_V2_SIGNATURE = "secure_boot_v2_signature"
    FF_PADDING = "ff_padding"
    NO_DIGEST = "no_digest"
    """``hash_appended == 0``: only the 8-bit checksum protects the image."""


@dataclass(frozen=True)
class Verdict:
    """The outcome: a stable ``code``, one sentence saying what the file is, and what to do about it."""

    code: VerdictCode
    message: str
    hint: str = ""
    quirks: tuple[Quirk, ...] = ()

    def __post_init__(self) -> None:
        if not self.message:
            raise ValueError("a verdict needs a message")
        if self.quirks and self.code is not VerdictCode.OK_QUIRK:
            raise ValueError("quirks belong to an ok_quirk verdict")

    @property
    def ok(self) -> bool:
        """True if the image may be pushed (``ok`` or ``ok_quirk``)."""
        return self.code.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": str(self.code),
            "ok": self.ok,
            "message": self.message,
            "hint": self.hint,
            "quirks": [str(q) for q in self.quirks],
        }


@dataclass(frozen=True)
class Segment:
    """One segment: where it loads, its length, where its 8-byte header sits in the file, and what it is.

    ``kind`` is ``"drom"``, ``"irom"``, ``"flash"`` (a chip with one shared flash window), ``"ram"`` or
    ``"padding"`` (load address 0, inserted by esptool for MMU alignment).
    """

    index: int
    load_addr: int
    data_len: int
    file_offset: int
    kind: str

    @property
    def data_offset(self) -> int:
        return self.file_offset + 8

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "load_addr": f"{self.load_addr:#010x}",
            "data_len": self.data_len,
            "file_offset": f"{self.file_offset:#x}",
            "kind": self.kind,
        }


@dataclass(frozen=True)
class AppDescriptor:
    """``esp_app_desc_t`` (256 bytes at file offset 0x20). Fields added by later IDF versions read 0 in older images:
    ``min/max_efuse_blk_rev_full`` (v5.4), ``mmu_page_size`` (v5.5, log2 of bytes), ``spi_flash_mode`` (v6.1)."""

    secure_version: int
    version: str
    project: str
    time: str
    date: str
    idf_version: str
    elf_sha256: str
    min_efuse_blk_rev_full: int = 0
    max_efuse_blk_rev_full: int = 0
    mmu_page_size: int = 0
    spi_flash_mode: int = 0

    @property
    def mmu_page_bytes(self) -> int | None:
        """The MMU page size recorded by IDF >= v5.5, or None."""
        return 1 << self.mmu_page_size if self.mmu_page_size else None

    @property
    def elf_sha256_is_zero(self) -> bool:
        return set(self.elf_sha256) <= {"0"}

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "version": self.version,
            "secure_version": self.secure_version,
            "idf_version": self.idf_version,
            "date": self.date,
            "time": self.time,
            "elf_sha256": self.elf_sha256,
            "min_efuse_blk_rev_full": self.min_efuse_blk_rev_full,
            "max_efuse_blk_rev_full": self.max_efuse_blk_rev_full,
            "mmu_page_size": self.mmu_page_size,
            "spi_flash_mode": self.spi_flash_mode,
        }


@dataclass(frozen=True)
class BootloaderDescriptor:
    """``esp_bootloader_desc_t`` (magic byte 0x50 at 0x20): how a 2nd-stage bootloader is recognised."""

    version: int
    idf_version: str
    date_time: str

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "idf_version": self.idf_version, "date_time": self.date_time}


@dataclass(frozen=True)
class EmbeddedApp:
    """An app image found inside a merged full-flash file: its offset and, if known, its partition."""

    offset: int
    project: str = ""
    version: str = ""
    partition: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"offset": f"{self.offset:#x}", "project": self.project, "version": self.version,
                "partition": self.partition}  # fmt: skip


@dataclass(frozen=True)
class ImageInfo:
    """Everything an inspection learned about a file. Fields the file did not reach stay at their defaults.

    ``size``/``sha256`` describe the whole file; ``image_size`` is the app image proper (up to and including the
    appended digest) and ``trailing_bytes`` what follows it. ``chip_id`` is -1 when no ESP32 header was read.
    """

    size: int
    sha256: str
    verdict: Verdict
    chip: Chip | None = None
    chip_id: int = -1
    segment_count: int = 0
    segments: tuple[Segment, ...] = ()
    entry_addr: int = 0
    flash_mode: str = ""
    flash_size: str = ""
    flash_freq: str = ""
    wp_pin: int = 0
    min_chip_rev: int = 0
    min_chip_rev_full: int = 0
    max_chip_rev_full: int = 0
    hash_appended: bool = False
    checksum: int | None = None
    checksum_calc: int | None = None
    checksum_ok: bool = False
    digest: str = ""
    digest_calc: str = ""
    digest_ok: bool = False
    image_size: int = 0
    trailing_bytes: int = 0
    mmu_page_bytes: int | None = None
    app: AppDescriptor | None = None
    bootloader: BootloaderDescriptor | None = None
    embedded_apps: tuple[EmbeddedApp, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.verdict.ok

    @property
    def project(self) -> str:
        return self.app.project if self.app else ""

    @property
    def version(self) -> str:
        return self.app.version if self.app else ""

    @property
    def secure_version(self) -> int:
        """The descriptor's anti-rollback counter; 0 for an image without a descriptor (as the bootloader reads it)."""
        return self.app.secure_version if self.app else 0

    @property
    def chip_name(self) -> str:
        return self.chip.display_name if self.chip is not None else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "sha256": self.sha256,
            "verdict": self.verdict.to_dict(),
            "chip": self.chip_name or None,
            "chip_id": self.chip_id,
            "segment_count": self.segment_count,
            "segments": [s.to_dict() for s in self.segments],
            "entry_addr": f"{self.entry_addr:#010x}",
            "flash_mode": self.flash_mode,
            "flash_size": self.flash_size,
            "flash_freq": self.flash_freq,
            "min_chip_rev": self.min_chip_rev,
            "min_chip_rev_full": self.min_chip_rev_full,
            "max_chip_rev_full": self.max_chip_rev_full,
            "hash_appended": self.hash_appended,
            "checksum": self.checksum,
            "checksum_calc": self.checksum_calc,
            "checksum_ok": self.checksum_ok,
            "digest": self.digest,
            "digest_ok": self.digest_ok,
            "image_size": self.image_size,
            "trailing_bytes": self.trailing_bytes,
            "mmu_page_bytes": self.mmu_page_bytes,
            "app": self.app.to_dict() if self.app else None,
            "bootloader": self.bootloader.to_dict() if self.bootloader else None,
            "embedded_apps": [a.to_dict() for a in self.embedded_apps],
        }
