"""An emulated SPI NOR flash: erase before write, sector and block erase times, one operation at a time.

NOR flash semantics: erasing sets a whole 4 KB sector (or an aligned 64 KB block) to 0xFF; programming can only
clear bits (the result is ``old & new``), so writing over data that was not erased corrupts it, exactly as on an
ESP32. The emulation counts such writes (:attr:`FlashStats.dirty_program_bytes`) so tests can assert the OTA code
always erased first.

Timing (``notes/ble-throughput.md`` section 4.3): ESP-IDF's CI floor for ESP32 erase is 45.3 KB/s and for 2 KB
writes 754 KB/s, about 70 % of measured averages; a 4 KB sector erase takes 45-90 ms, and erasing a whole
partition takes 3-5 s per MB, i.e. roughly 190-310 ms per 64 KB block. Defaults: 60 ms per sector, 250 ms per
block, 760 KB/s programming. Every delay is ``asyncio.sleep(modelled_s * time_scale)``: ``time_scale=0`` (tests)
costs no wall time, ``1.0`` is the modelled hardware. The modelled busy time is accumulated either way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

__all__ = ["BLOCK_BYTES", "PAGE_BYTES", "SECTOR_BYTES", "EmulatedFlash", "FlashError", "FlashStats", "FlashTiming"]

logger = logging.getLogger(__name__)

SECTOR_BYTES = 4096
BLOCK_BYTES = 65536
PAGE_BYTES = 256
ERASED = 0xFF


class FlashError(Exception):
    """A flash operation outside the chip or not aligned to what the operation needs (a bug in the caller)."""


@dataclass(frozen=True)
class FlashTiming:
    """Modelled durations of flash operations, in seconds of hardware time."""

    sector_erase_s: float = 0.060
    block_erase_s: float = 0.250
    program_bytes_per_s: float = 760_000.0

    def __post_init__(self) -> None:
        if self.sector_erase_s < 0 or self.block_erase_s < 0 or self.program_bytes_per_s <= 0:
            raise ValueError(f"flash timings must be non-negative and the program rate positive: {self}")

    def scaled(self, factor: float) -> FlashTiming:
        """Slower (``factor`` > 1) or faster flash: the "slow flash" fault knob."""
        if factor <= 0:
            raise ValueError(f"factor must be positive, got {factor}")
        return FlashTiming(self.sector_erase_s * factor, self.block_erase_s * factor, self.program_bytes_per_s / factor)


@dataclass
class FlashStats:
    """What the flash has done since it was created (modelled time, not wall time)."""

    sectors_erased: int = 0
    blocks_erased: int = 0
    bytes_programmed: int = 0
    dirty_program_bytes: int = 0
    busy_s: float = 0.0


class EmulatedFlash:
    """``size_bytes`` of NOR flash. Reads are instant; erase and program take modelled time, one at a time."""

    def __init__(
        self,
        size_bytes: int = 4 * 1024 * 1024,
        *,
        timing: FlashTiming | None = None,
        time_scale: float = 0.0,
        contents: bytes | None = None,
    ) -> None:
        if size_bytes <= 0 or size_bytes % BLOCK_BYTES:
            raise ValueError(f"flash size must be a positive multiple of 64 KB, got {size_bytes}")
        if time_scale < 0:
            raise ValueError(f"time_scale must be >= 0, got {time_scale}")
        if contents is not None and len(contents) != size_bytes:
            raise ValueError(f"contents are {len(contents)} bytes, the flash is {size_bytes}")
        self.size_bytes = size_bytes
        self.timing = timing or FlashTiming()
        self.time_scale = time_scale
        self.stats = FlashStats()
        self._data = bytearray(contents) if contents is not None else bytearray(b"\xff" * size_bytes)
        self._lock = asyncio.Lock()

    # -- reading ----------------------------------------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        return bytes(self._data[offset : offset + length])

    def is_erased(self, offset: int, length: int) -> bool:
        self._check_range(offset, length)
        return self._data.count(ERASED, offset, offset + length) == length

    def snapshot(self) -> bytes:
        """The whole flash (what ``esptool read_flash`` would dump)."""
        return bytes(self._data)

    # -- erasing and programming ---------------------------------------------------------------------------------

    async def erase_range(self, offset: int, length: int) -> None:
        """Erase ``[offset, offset + length)``, both multiples of 4 KB; aligned 64 KB blocks use block erase
        (as ``esp_flash_erase_region`` does)."""
        if offset % SECTOR_BYTES or length % SECTOR_BYTES:
            raise FlashError(f"erase of {length:#x} bytes at {offset:#x} is not 4 KB aligned")
        self._check_range(offset, length)
        position, end = offset, offset + length
        while position < end:
            if position % BLOCK_BYTES == 0 and end - position >= BLOCK_BYTES:
                await self._erase(position, BLOCK_BYTES, self.timing.block_erase_s)
                self.stats.blocks_erased += 1
                position += BLOCK_BYTES
            else:
                await self._erase(position, SECTOR_BYTES, self.timing.sector_erase_s)
                self.stats.sectors_erased += 1
                position += SECTOR_BYTES

    async def _erase(self, offset: int, length: int, modelled_s: float) -> None:
        async with self._lock:
            await self._spend(modelled_s)
            self._data[offset : offset + length] = b"\xff" * length

    async def program(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Program ``data`` at ``offset``: bits can only go from 1 to 0 (``old & new``)."""
        length = len(data)
        self._check_range(offset, length)
        if not length:
            return
        async with self._lock:
            await self._spend(length / self.timing.program_bytes_per_s)
            self.program_now(offset, data)

    def program_now(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Program without modelled delay (small metadata writes, restoring state)."""
        length = len(data)
        self._check_range(offset, length)
        old = self._data[offset : offset + length]
        dirty = length - old.count(ERASED)
        if dirty:
            # Only bytes that would actually change count as damage (rewriting the same value is harmless).
            new = bytes(data)
            merged = bytes(a & b for a, b in zip(old, new, strict=True))
            damage = sum(1 for a, b in zip(merged, new, strict=True) if a != b)
            self.stats.dirty_program_bytes += damage
            self._data[offset : offset + length] = merged
        else:
            self._data[offset : offset + length] = data
        self.stats.bytes_programmed += length

    def erase_now(self, offset: int, length: int) -> None:
        """Erase without modelled delay (small metadata sectors)."""
        if offset % SECTOR_BYTES or length % SECTOR_BYTES:
            raise FlashError(f"erase of {length:#x} bytes at {offset:#x} is not 4 KB aligned")
        self._check_range(offset, length)
        self._data[offset : offset + length] = b"\xff" * length
        self.stats.sectors_erased += length // SECTOR_BYTES

    async def _spend(self, modelled_s: float) -> None:
        self.stats.busy_s += modelled_s
        if self.time_scale > 0 and modelled_s > 0:
            await asyncio.sleep(modelled_s * self.time_scale)

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size_bytes:
            raise FlashError(f"{length:#x} bytes at {offset:#x} are outside the {self.size_bytes:#x}-byte flash")
