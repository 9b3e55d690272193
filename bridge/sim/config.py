"""How a simulated board is built, and how it misbehaves (fault knobs). Pure data, no Bumble."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from bridge.image import Chip
from bridge.sim.flash import BLOCK_BYTES, FlashTiming
from protocol.constants import MAX_DATAGRAM_BYTES, MIN_DATAGRAM_BYTES, EraseStrategy, Feature

__all__ = ["DEFAULT_FEATURES", "SelfTest", "SimBoardConfig", "SimFaults"]

DEFAULT_FEATURES = Feature.RESUME | Feature.APP_ROLLBACK | Feature.ANTI_ROLLBACK


class SelfTest(enum.Enum):
    """What a freshly installed app does on its first boot (rollback enabled)."""

    #: Passes its self-test and calls ``esp_ota_mark_app_valid_cancel_rollback``.
    PASS = "pass"
    #: Fails it and calls ``esp_ota_mark_app_invalid_rollback_and_reboot``: the old app comes back.
    FAIL = "fail"
    #: Never confirms (hangs in the test, forgets the call): stays PENDING_VERIFY; the next reset rolls back.
    NO_CONFIRM = "no-confirm"


@dataclass(frozen=True)
class SimFaults:
    """Ways the board (or the air between) misbehaves. Every knob is off by default.

    Frame numbers count data-characteristic writes received since the board started, from 1. Offsets are image
    offsets. Each offset-triggered fault fires once.
    """

    #: Drop the link when the received image offset first reaches each of these offsets.
    disconnect_at_offsets: tuple[int, ...] = ()
    #: Lose these data writes (the radio or the stack dropped them).
    drop_frames: frozenset[int] = frozenset()
    #: Deliver these data writes twice.
    duplicate_frames: frozenset[int] = frozenset()
    #: Flip one payload bit in these data writes (the frame CRC catches it).
    corrupt_frames: frozenset[int] = frozenset()
    #: Cut the power when the flash write cursor first reaches this offset: RAM is lost, the board reboots.
    power_loss_at_offset: int | None = None
    #: Erase and program this many times slower than the modelled flash (>= 1).
    flash_slowdown: float = 1.0
    #: Real receive buffer in bytes; data arriving while this much is not yet written is dropped. ``None``:
    #: as large as the announced window (never full). Smaller than the window = a board that over-promises.
    rx_buffer_bytes: int | None = None
    #: A board that lies: every ACK claims this many bytes more than it wrote.
    ack_lie_bytes: int = 0

    def __post_init__(self) -> None:
        if any(offset < 0 for offset in self.disconnect_at_offsets):
            raise ValueError("disconnect offsets must be >= 0")
        if self.power_loss_at_offset is not None and self.power_loss_at_offset < 0:
            raise ValueError("power_loss_at_offset must be >= 0")
        if self.flash_slowdown < 1.0:
            raise ValueError(f"flash_slowdown must be >= 1, got {self.flash_slowdown}")
        if self.rx_buffer_bytes is not None and self.rx_buffer_bytes < 1:
            raise ValueError("rx_buffer_bytes must be >= 1")
        if self.ack_lie_bytes < 0:
            raise ValueError("ack_lie_bytes must be >= 0")


@dataclass(frozen=True)
class SimBoardConfig:
    """A simulated ESP32 board.

    ``initial_image`` is the app in ``ota_0`` at first power-on: a file, bytes, or ``None`` for a built image of
    ``project`` / ``initial_version`` / ``initial_secure_version`` (``bridge.image.build_image``). With
    ``state_file`` the flash and eFuses persist there: an existing file wins over ``initial_image``.

    ``time_scale`` scales every modelled flash delay (0: instant, 1: modelled ESP32 flash); ``boot_time_s`` and
    ``self_test_s`` are wall-clock seconds from reset to advertising.
    """

    name: str | None = None
    board_id: bytes | None = None
    chip: Chip = Chip.ESP32
    chip_revision: int = 300
    project: str = "blink"
    initial_image: Path | bytes | None = None
    initial_version: str = "1.0.0"
    initial_secure_version: int = 0
    flash_bytes: int = 4 * 1024 * 1024
    ota_partition_bytes: int = 0x1E0000
    erase_strategy: EraseStrategy = EraseStrategy.SEQUENTIAL_4K
    window_bytes: int = 32 * 1024  # the knee of the benchmark sweeps (benchmarks/README.md)
    max_frame_bytes: int = MAX_DATAGRAM_BYTES
    ack_interval_bytes: int | None = None
    features: Feature = DEFAULT_FEATURES
    rollback_enabled: bool = True
    anti_rollback: bool = True
    efuse_secure_version: int = 0
    check_project: bool = True
    self_test: SelfTest = SelfTest.PASS
    self_test_s: float = 0.0
    boot_time_s: float = 0.05
    reboot_delay_ms: int = 20
    time_scale: float = 0.0
    flash_timing: FlashTiming = field(default_factory=FlashTiming)
    state_file: Path | None = None
    advertising_interval_ms: float = 20.0
    faults: SimFaults = field(default_factory=SimFaults)

    def __post_init__(self) -> None:
        if self.name is not None and not 1 <= len(self.name.encode()) <= 8:
            raise ValueError(f"name {self.name!r} must be 1-8 bytes (it shares 31 advertising bytes with the UUID)")
        if self.board_id is not None and not 1 <= len(self.board_id) <= 16:
            raise ValueError("board_id must be 1-16 bytes")
        if self.ota_partition_bytes <= 0 or self.ota_partition_bytes % BLOCK_BYTES:
            raise ValueError(
                f"ota_partition_bytes must be a positive multiple of 64 KB, got {self.ota_partition_bytes}"
            )
        if 0x10000 + 2 * self.ota_partition_bytes > self.flash_bytes:
            raise ValueError(
                f"two OTA partitions of {self.ota_partition_bytes:#x} bytes do not fit {self.flash_bytes:#x} of flash"
            )
        if self.window_bytes < 1:
            raise ValueError("window_bytes must be >= 1")
        if not MIN_DATAGRAM_BYTES <= self.max_frame_bytes <= MAX_DATAGRAM_BYTES:
            raise ValueError(f"max_frame_bytes must be {MIN_DATAGRAM_BYTES}..{MAX_DATAGRAM_BYTES}")
        if self.time_scale < 0 or self.boot_time_s < 0 or self.self_test_s < 0:
            raise ValueError("time_scale, boot_time_s and self_test_s must be >= 0")
        if (
            self.anti_rollback
            and self.initial_image is None
            and self.initial_secure_version < self.efuse_secure_version
        ):
            raise ValueError(
                f"initial_secure_version {self.initial_secure_version} is below efuse_secure_version "
                f"{self.efuse_secure_version}: the bootloader would refuse the initial app"
            )
        if not 0 <= self.reboot_delay_ms <= 0xFFFF:
            raise ValueError("reboot_delay_ms must fit a u16")
