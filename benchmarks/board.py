"""Board storage model: a RAM buffer in front of SPI NOR flash that must be erased before it is programmed.

One flash chip does one thing at a time (erase or program), so erase time is never hidden by the chip itself; what
a board *can* choose is the erase granularity and when it happens (§4.3 of ``notes/ble-throughput.md``):

* ``sequential-4k`` = ``esp_ota_begin(OTA_WITH_SEQUENTIAL_WRITES)``: each 4 KB sector is erased when the write
  cursor enters it. 4 KB erases are slow per byte, so the board is flash-bound near the 1M link and at about half
  the 2M link.
* ``erase-all-first`` = ``esp_ota_begin(image_size)``: the image range is erased (64 KB blocks where aligned)
  before BEGIN is answered; afterwards programming only.
* ``erase-ahead-64k`` (the ESPHome approach, esphome#18580): whenever the flash is idle, the next 64 KB block ahead
  of the write cursor is erased; data waiting in RAM is programmed first. Block erases are ~7x cheaper per byte
  than sector erases, and they happen while the link is still bringing data in.

Data enters the RAM buffer in order (``write``) and leaves it when programmed; ``on_space`` fires after each
program so a blocked board host can take the next PDU.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.clock import VirtualClock

__all__ = ["BoardParams", "EraseMode", "FlashParams", "Storage", "StorageStats"]

SECTOR = 4096
BLOCK = 65536
PROGRAM_UNIT = 4096  # one esp_ota_write() of at most a sector's worth of buffered data


class EraseMode(enum.StrEnum):
    SEQUENTIAL_4K = "sequential-4k"
    UPFRONT = "erase-all-first"
    BLOCK_AHEAD = "erase-ahead-64k"


@dataclass(frozen=True)
class FlashParams:
    """Flash timings; defaults from §5.1 of the throughput notes (64 KB erase time is an assumption, flagged)."""

    program_bytes_per_s: int = 754_000
    erase_4k_us: int = 65_000
    erase_64k_us: int = 150_000

    def __post_init__(self) -> None:
        if self.program_bytes_per_s <= 0 or self.erase_4k_us < 0 or self.erase_64k_us < 0:
            raise ValueError("flash rates and times must be positive")

    def program_us(self, n: int) -> int:
        return -(-n * 1_000_000 // self.program_bytes_per_s)

    def steady_rate_bytes_per_s(self, mode: EraseMode) -> float:
        """What the flash alone can absorb in the long run under ``mode`` (``R_flash`` in the report)."""
        if mode is EraseMode.SEQUENTIAL_4K:
            return SECTOR * 1e6 / (self.erase_4k_us + SECTOR * 1e6 / self.program_bytes_per_s)
        if mode is EraseMode.BLOCK_AHEAD:
            return BLOCK * 1e6 / (self.erase_64k_us + BLOCK * 1e6 / self.program_bytes_per_s)
        return float(self.program_bytes_per_s)

    def upfront_erase_us(self, size: int) -> int:
        span = -(-size // SECTOR) * SECTOR
        return (span // BLOCK) * self.erase_64k_us + ((span % BLOCK) // SECTOR) * self.erase_4k_us


@dataclass(frozen=True)
class BoardParams:
    """The simulated board: how it erases, how fast its host handles a PDU, how many LL buffers it has."""

    erase_mode: EraseMode = EraseMode.BLOCK_AHEAD
    flash: FlashParams = field(default_factory=FlashParams)
    proc_us: int = 1000  # §5.1 board_proc_ms = 1
    acl_buffers: int = 24  # NimBLE BT_NIMBLE_ACL_BUF_COUNT default
    erase_ahead_bytes: int = BLOCK

    def __post_init__(self) -> None:
        if self.proc_us < 0 or self.acl_buffers < 1 or self.erase_ahead_bytes < 0:
            raise ValueError("invalid board parameters")


@dataclass
class StorageStats:
    erase_us: int = 0
    program_us: int = 0
    max_buffered: int = 0
    erases_4k: int = 0
    erases_64k: int = 0


class Storage:
    """RAM buffer + flash worker for one image upload."""

    def __init__(self, clock: VirtualClock, board: BoardParams, *, ram_bytes: int) -> None:
        if ram_bytes < 1:
            raise ValueError("ram_bytes must be >= 1")
        self.clock = clock
        self.flash = board.flash
        self.mode = board.erase_mode
        self.erase_ahead_bytes = board.erase_ahead_bytes
        self.ram_bytes = ram_bytes
        self.size = 0
        self.received = 0
        self.programmed = 0
        self.erased_to = 0
        self.stats = StorageStats()
        self.on_space: Callable[[], None] | None = None
        self._busy = False
        self._waiters: list[tuple[int, Callable[[], None]]] = []

    @property
    def buffered(self) -> int:
        return self.received - self.programmed

    @property
    def free_bytes(self) -> int:
        return self.ram_bytes - self.buffered

    def begin(self, size: int, on_ready: Callable[[], None]) -> None:
        """Start an upload of ``size`` bytes; ``on_ready`` runs when the board may answer (after an upfront erase)."""
        self.size = size
        if self.mode is EraseMode.UPFRONT:
            dur = self.flash.upfront_erase_us(size)
            self._busy = True
            self.stats.erase_us += dur
            self.stats.erases_64k += (-(-size // SECTOR) * SECTOR) // BLOCK
            self.stats.erases_4k += ((-(-size // SECTOR) * SECTOR) % BLOCK) // SECTOR

            def erased() -> None:
                self._busy = False
                self.erased_to = -(-size // SECTOR) * SECTOR
                on_ready()
                self._kick()

            self.clock.call_later(dur, erased)
            return
        on_ready()
        self._kick()

    def write(self, n: int) -> None:
        """Append ``n`` bytes at the write cursor; the caller checked ``free_bytes``."""
        if n > self.free_bytes:
            raise ValueError(f"storage overflow: {n} B into {self.free_bytes} B free")
        if self.received + n > self.size:
            raise ValueError("write past the declared image size")
        self.received += n
        self.stats.max_buffered = max(self.stats.max_buffered, self.buffered)
        self._kick()

    def when_programmed(self, upto: int, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the first ``upto`` bytes are in flash."""
        if self.programmed >= upto:
            fn()
        else:
            self._waiters.append((upto, fn))

    def _kick(self) -> None:
        if self._busy:
            return
        if self.buffered > 0:
            pos = self.programmed
            if pos >= self.erased_to:
                if self.mode is EraseMode.SEQUENTIAL_4K:
                    self._erase(SECTOR, self.flash.erase_4k_us)
                else:
                    self._erase(BLOCK, self.flash.erase_64k_us)
                return
            n = min(self.buffered, self.erased_to - pos, PROGRAM_UNIT - pos % PROGRAM_UNIT)
            dur = self.flash.program_us(n)
            self._busy = True
            self.stats.program_us += dur
            self.clock.call_later(dur, lambda: self._programmed(n))
            return
        if self.mode is EraseMode.BLOCK_AHEAD:
            horizon = min(-(-self.size // BLOCK) * BLOCK, self.received + self.erase_ahead_bytes)
            if self.erased_to < horizon:
                self._erase(BLOCK, self.flash.erase_64k_us)

    def _erase(self, span: int, dur: int) -> None:
        self._busy = True
        self.stats.erase_us += dur
        if span == BLOCK:
            self.stats.erases_64k += 1
        else:
            self.stats.erases_4k += 1

        def erased() -> None:
            self._busy = False
            self.erased_to += span
            self._kick()

        self.clock.call_later(dur, erased)

    def _programmed(self, n: int) -> None:
        self._busy = False
        self.programmed += n
        if self._waiters:
            due = [fn for upto, fn in self._waiters if upto <= self.programmed]
            self._waiters = [(upto, fn) for upto, fn in self._waiters if upto > self.programmed]
            for fn in due:
                fn()
        if self.on_space is not None:
            self.on_space()
        self._kick()
