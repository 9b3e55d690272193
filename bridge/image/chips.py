"""The chips an ESP32 application image can target, and what the image format needs to know about each.

Numbers are ``esp_chip_id_t`` (image header bytes 12-13). Address windows, flash-frequency encodings and the MMU
page rules come from ESP-IDF and esptool 5.6.0 (facts and sources: ``notes/esp32-image-format.md`` sections 3-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, unique

__all__ = ["RETIRED_CHIP_IDS", "Chip", "ChipSpec", "chip_spec"]


@unique
class Chip(IntEnum):
    """``esp_chip_id_t``: the chip an image is built for (header bytes 12-13, little-endian u16)."""

    ESP32 = 0
    ESP32S2 = 2
    ESP32C3 = 5
    ESP32S3 = 9
    ESP32C2 = 12
    ESP32C6 = 13
    ESP32H2 = 16
    ESP32P4 = 18
    ESP32C61 = 20
    ESP32C5 = 23
    ESP32H21 = 25
    ESP32H4 = 28
    ESP32E22 = 31
    ESP32S31 = 32

    @property
    def display_name(self) -> str:
        """The name Espressif prints, e.g. ``"ESP32-C3"``."""
        return _SPECS[self].display_name

    @classmethod
    def parse(cls, value: str | int) -> Chip:
        """A chip from an id or a name in any common spelling: ``5``, ``"esp32c3"``, ``"ESP32-C3"``, ``"c3"``.

        Raises ``ValueError`` naming the accepted values.
        """
        if isinstance(value, int):
            return cls(value)
        text = value.strip().lower().replace("-", "").replace("_", "")
        if text.isdigit():
            return cls(int(text))
        if not text.startswith("esp32"):
            text = "esp32" + text
        for chip in cls:
            if chip.name.lower() == text:
                return chip
        names = ", ".join(c.display_name for c in cls)
        raise ValueError(f"unknown chip {value!r}; expected one of {names}")


#: Ids that were in ``esp_chip_id_t`` for pre-release silicon and were removed (IDF bf2a7b2, esptool 8f1c206).
RETIRED_CHIP_IDS: dict[int, str] = {
    7: "ESP32-C6 beta",
    10: "ESP32-H2 beta1 / ESP32-H4 beta1",
    14: "ESP32-H2 beta2 / ESP32-H4 beta2",
}

_KB = 1024
_CONFIGURABLE_MMU_PAGES = (8 * _KB, 16 * _KB, 32 * _KB, 64 * _KB)
_FIXED_MMU_PAGE = (64 * _KB,)

_FREQ_ESP32 = {0xF: "80m", 0x0: "40m", 0x1: "26m", 0x2: "20m"}
_FREQ_C2 = {0xF: "60m", 0x0: "30m", 0x1: "20m", 0x2: "15m"}
_FREQ_C6 = {0x0: "80m", 0x2: "20m"}  # esptool maps both 80m and 40m to 0 ("wrong mspi HS div value in ROM")
_FREQ_C5 = {0xF: "80m", 0x0: "40m", 0x2: "20m"}
_FREQ_H2 = {0xF: "48m", 0x0: "24m", 0x1: "16m", 0x2: "12m"}
_FREQ_H21 = {0xF: "48m", 0x0: "24m"}


@dataclass(frozen=True)
class ChipSpec:
    """What the image checks need about one chip.

    ``drom``/``irom`` are the flash-mapped address windows ``[start, end)``; several newer chips have one shared
    window (``drom == irom``). ``mmu_pages_bytes`` lists the MMU page sizes the chip can be configured with:
    flash-mapped segments must sit in the file at the same offset modulo the page as their load address.
    ``dram_addr``/``iram_addr`` are internal-RAM addresses the image builder uses.
    """

    chip_id: int
    display_name: str
    drom: tuple[int, int]
    irom: tuple[int, int]
    flash_freq: dict[int, str]
    mmu_pages_bytes: tuple[int, ...]
    dram_addr: int
    iram_addr: int
    bootloader_offset: int

    def __post_init__(self) -> None:
        for start, end in (self.drom, self.irom):
            if not 0 < start < end or start % (64 * _KB):
                raise ValueError(f"{self.display_name}: bad flash window {start:#x}-{end:#x}")

    @property
    def shared_flash_window(self) -> bool:
        return self.drom == self.irom

    def is_flash_mapped(self, addr: int) -> bool:
        return self.drom[0] <= addr < self.drom[1] or self.irom[0] <= addr < self.irom[1]

    def flash_kind(self, addr: int) -> str:
        """``"drom"``, ``"irom"``, ``"flash"`` (shared window) or ``"ram"`` for a non-zero load address."""
        if self.shared_flash_window:
            return "flash" if self.is_flash_mapped(addr) else "ram"
        if self.drom[0] <= addr < self.drom[1]:
            return "drom"
        if self.irom[0] <= addr < self.irom[1]:
            return "irom"
        return "ram"


def _spec(
    chip: Chip,
    name: str,
    drom: tuple[int, int],
    irom: tuple[int, int] | None,
    freq: dict[int, str],
    pages: tuple[int, ...],
    dram: int,
    iram: int,
    boot: int,
) -> ChipSpec:
    return ChipSpec(int(chip), name, drom, irom or drom, freq, pages, dram, iram, boot)


_SPECS: dict[Chip, ChipSpec] = {
    Chip(s.chip_id): s
    for s in (
        _spec(
            Chip.ESP32,
            "ESP32",
            (0x3F400000, 0x3F800000),
            (0x400D0000, 0x40400000),
            _FREQ_ESP32,
            _FIXED_MMU_PAGE,
            0x3FFB0000,
            0x40080000,
            0x1000,
        ),
        _spec(
            Chip.ESP32S2,
            "ESP32-S2",
            (0x3F000000, 0x3F3F0000),
            (0x40080000, 0x40B80000),
            _FREQ_ESP32,
            _FIXED_MMU_PAGE,
            0x3FFBE000,
            0x40022000,
            0x1000,
        ),
        _spec(
            Chip.ESP32S3,
            "ESP32-S3",
            (0x3C000000, 0x3E000000),
            (0x42000000, 0x44000000),
            _FREQ_ESP32,
            _FIXED_MMU_PAGE,
            0x3FC88000,
            0x40374000,
            0x0,
        ),
        _spec(
            Chip.ESP32C3,
            "ESP32-C3",
            (0x3C000000, 0x3C800000),
            (0x42000000, 0x42800000),
            _FREQ_ESP32,
            _FIXED_MMU_PAGE,
            0x3FC8A000,
            0x40380000,
            0x0,
        ),
        _spec(
            Chip.ESP32C2,
            "ESP32-C2",
            (0x3C000000, 0x3C400000),
            (0x42000000, 0x42400000),
            _FREQ_C2,
            _CONFIGURABLE_MMU_PAGES,
            0x3FCA0000,
            0x4037C000,
            0x0,
        ),
        _spec(
            Chip.ESP32C6,
            "ESP32-C6",
            (0x42000000, 0x43000000),
            None,
            _FREQ_C6,
            _CONFIGURABLE_MMU_PAGES,
            0x40800000,
            0x40810000,
            0x0,
        ),
        _spec(
            Chip.ESP32H2,
            "ESP32-H2",
            (0x42000000, 0x43000000),
            None,
            _FREQ_H2,
            _CONFIGURABLE_MMU_PAGES,
            0x40800000,
            0x40810000,
            0x0,
        ),
        _spec(
            Chip.ESP32P4,
            "ESP32-P4",
            (0x40000000, 0x4C000000),
            None,
            _FREQ_ESP32,
            _CONFIGURABLE_MMU_PAGES,
            0x4FF00000,
            0x4FF10000,
            0x2000,
        ),
        _spec(
            Chip.ESP32C61,
            "ESP32-C61",
            (0x42000000, 0x44000000),
            None,
            _FREQ_C5,
            _CONFIGURABLE_MMU_PAGES,
            0x40800000,
            0x40810000,
            0x0,
        ),
        _spec(
            Chip.ESP32C5,
            "ESP32-C5",
            (0x42000000, 0x44000000),
            None,
            _FREQ_C5,
            _CONFIGURABLE_MMU_PAGES,
            0x40800000,
            0x40810000,
            0x2000,
        ),
        _spec(
            Chip.ESP32H21,
            "ESP32-H21",
            (0x42000000, 0x43000000),
            None,
            _FREQ_H21,
            _CONFIGURABLE_MMU_PAGES,
            0x40800000,
            0x40810000,
            0x0,
        ),
        _spec(
            Chip.ESP32H4,
            "ESP32-H4",
            (0x42000000, 0x44000000),
            None,
            _FREQ_H21,
            _CONFIGURABLE_MMU_PAGES,
            0x40810000,
            0x40820000,
            0x2000,
        ),
        _spec(
            Chip.ESP32E22,
            "ESP32-E22",
            (0x3C000000, 0x40000000),
            None,
            _FREQ_ESP32,
            _CONFIGURABLE_MMU_PAGES,
            0x31000000,
            0x30FE0000,
            0x0,
        ),
        _spec(
            Chip.ESP32S31,
            "ESP32-S31",
            (0x40000000, 0x54000000),
            None,
            _FREQ_C5,
            _CONFIGURABLE_MMU_PAGES,
            0x2F000000,
            0x2F010000,
            0x2000,
        ),
    )
}

assert set(_SPECS) == set(Chip), "every Chip needs a ChipSpec"


def chip_spec(chip: Chip | int) -> ChipSpec:
    """The :class:`ChipSpec` of a known chip (``KeyError`` for an unknown id)."""
    return _SPECS[Chip(chip)]
