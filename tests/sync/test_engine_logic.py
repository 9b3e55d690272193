"""The engine's pure decisions: pre-flight, "already running", rollback reasons, rate/ETA, backoff, status codes."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from bridge.api import BoardStatus, UpdateState, exit_code_for_status
from bridge.config import BridgeConfig
from bridge.errors import ExitCode, ImageError, PreflightError
from bridge.image import Chip, build_image, validate_image
from bridge.sync.engine import Plan, already_running, preflight, rollback_reason
from bridge.sync.image_file import ImageFile, sha256_file
from bridge.sync.timing import RateMeter, backoff_delays
from protocol.constants import Feature, RollbackState, UpdateResult
from protocol.messages import Info


def _info(**changes: object) -> Info:
    fields: dict[str, object] = {
        "chip_id": int(Chip.ESP32C3),
        "window_bytes": 16384,
        "next_partition_size": 0x100000,
        "elf_sha256": bytes(32),
        "board_id": bytes.fromhex("a0b1c2d3e4f5"),
        "project": "blink",
        "running_version": "1.0.0",
        "running_partition": "ota_0",
        "next_partition": "ota_1",
        "features": Feature.RESUME | Feature.ANTI_ROLLBACK,
    }
    fields.update(changes)
    return Info(**fields)  # type: ignore[arg-type]


def _plan(
    tmp_path: Path,
    *,
    chip: Chip = Chip.ESP32C3,
    version: str = "1.1.0",
    secure_version: int = 0,
    size: int = 64 * 1024,
    project: str = "blink",
) -> Plan:
    data = build_image(chip=chip, project=project, version=version, secure_version=secure_version, size=size)
    path = tmp_path / f"{project}-{version}-{chip.name}.bin"
    path.write_bytes(data)
    info = validate_image(path)
    return Plan.from_image(ImageFile(path, info.size, info.sha256), info)


@pytest.fixture
def config(tmp_path: Path) -> BridgeConfig:
    return BridgeConfig(data_dir=tmp_path / "data")


def test_plan_reads_the_descriptor(tmp_path: Path) -> None:
    plan = _plan(tmp_path, version="2.0.0", secure_version=3)
    assert (plan.project, plan.version, plan.secure_version) == ("blink", "2.0.0", 3)
    assert plan.image.sha256 == hashlib.sha256(plan.image.path.read_bytes()).hexdigest()
    assert plan.image.size == 64 * 1024


def test_preflight_accepts_a_fitting_image(tmp_path: Path, config: BridgeConfig) -> None:
    preflight(_info(), _plan(tmp_path), config)


def test_preflight_refuses_another_chip(tmp_path: Path, config: BridgeConfig) -> None:
    with pytest.raises(PreflightError) as info:
        preflight(_info(), _plan(tmp_path, chip=Chip.ESP32S3), config)
    assert info.value.code == "chip_mismatch"
    assert info.value.exit_code == ExitCode.REFUSED


def test_preflight_refuses_an_image_larger_than_the_partition(tmp_path: Path, config: BridgeConfig) -> None:
    with pytest.raises(PreflightError) as info:
        preflight(_info(next_partition_size=32 * 1024), _plan(tmp_path), config)
    assert info.value.code == "too_large"


def test_preflight_secure_version_only_when_the_board_enforces_it(tmp_path: Path, config: BridgeConfig) -> None:
    plan = _plan(tmp_path, secure_version=1)
    with pytest.raises(PreflightError) as info:
        preflight(_info(secure_version=2), plan, config)
    assert info.value.code == "secure_version_too_low"
    preflight(_info(secure_version=2, features=Feature.RESUME), plan, config)  # no anti-rollback: allowed


def test_preflight_refuses_another_project_unless_allowed(tmp_path: Path, config: BridgeConfig) -> None:
    plan = _plan(tmp_path, project="thermostat")
    with pytest.raises(PreflightError) as info:
        preflight(_info(), plan, config)
    assert info.value.code == "project_mismatch"
    preflight(_info(), plan, config.replace(allow_other_project=True))


def test_already_running_by_elf_sha_then_by_version(tmp_path: Path) -> None:
    plan = _plan(tmp_path, version="1.0.0")
    assert len(plan.elf_sha256) == 64 and plan.elf_sha256.strip("0")  # build_image writes a real ELF hash
    # The board reports no ELF hash (all zero): compare project + version.
    assert already_running(_info(), plan)
    assert not already_running(_info(running_version="0.9.0"), plan)
    # The board reports one: it decides, whatever the version strings say.
    assert already_running(_info(elf_sha256=bytes.fromhex(plan.elf_sha256), running_version="x"), plan)
    assert not already_running(_info(elf_sha256=b"\x22" * 32), plan)


def test_rollback_reason_names_what_the_board_says() -> None:
    assert "rolled back" in rollback_reason(_info(last_update_result=UpdateResult.ROLLED_BACK))
    assert "failed" in rollback_reason(_info(last_update_result=UpdateResult.FAILED))
    text = rollback_reason(_info(last_update_result=UpdateResult.NONE, rollback_state=RollbackState.VALID))
    assert "ota_0" in text


def test_rate_meter_uses_a_sliding_window() -> None:
    now = [0.0]
    meter = RateMeter(window_s=2.0, clock=lambda: now[0])
    assert meter.rate_bps == 0.0 and meter.eta_s(1000) is None
    for step in range(11):  # 1000 B/s for 10 s
        now[0] = float(step)
        meter.update(step * 1000)
    assert meter.rate_bps == pytest.approx(1000.0)
    assert meter.eta_s(20_000) == pytest.approx(10.0)
    for step in range(11, 14):  # then 4000 B/s: the window forgets the old rate
        now[0] = float(step)
        meter.update(10_000 + (step - 10) * 4000)
    assert meter.rate_bps == pytest.approx(4000.0)
    meter.update(500)  # a go-back below the last sample starts over
    assert meter.rate_bps == 0.0


def test_backoff_doubles_up_to_the_cap() -> None:
    assert list(backoff_delays(0.5, 3.0, 5)) == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert list(backoff_delays(1.0, 8.0, 0)) == []


async def test_image_reader_reads_slices_near_the_cursor(tmp_path: Path) -> None:
    data = bytes(range(256)) * 300  # 76,800 bytes
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    digest, size = await sha256_file(path)
    image = ImageFile(path, size, digest)
    assert digest == hashlib.sha256(data).hexdigest()
    with image.reader(block_bytes=4096) as reader:
        assert reader.read(0, 100) == data[:100]
        assert reader.read(5000, 489) == data[5000:5489]
        assert reader.read(76_700, 489) == data[76_700:]  # shorter at the end
        with pytest.raises(ValueError):
            reader.read(80_000, 10)


async def test_sha256_of_a_missing_file_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read"):
        await sha256_file(tmp_path / "missing.bin")


async def test_hashing_does_not_block_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"\xa5" * (8 * 1024 * 1024))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    task = asyncio.create_task(ticker())
    await sha256_file(path)
    task.cancel()
    assert ticks > 1  # the loop kept running while the worker thread hashed


def test_status_exit_codes() -> None:
    assert exit_code_for_status(BoardStatus("b", False, error="gone")) == ExitCode.BOARD_NOT_FOUND
    assert exit_code_for_status(BoardStatus("b", True, state=UpdateState.OUTDATED)) == ExitCode.UPDATE_AVAILABLE
    assert exit_code_for_status(BoardStatus("b", True, state=UpdateState.UPDATED)) == ExitCode.OK
    assert exit_code_for_status(BoardStatus("b", True, state=UpdateState.NO_UPDATE)) == ExitCode.OK


def test_public_surface_is_complete() -> None:
    import bridge.events

    for name in bridge.__all__:
        assert hasattr(bridge, name), name
    for name in bridge.events.__all__:
        assert name in bridge.__all__, name
    assert {"Bridge", "BridgeConfig", "load_config", "BoardStatus", "UpdateState", "JournalEntry"} <= set(
        bridge.__all__
    )
