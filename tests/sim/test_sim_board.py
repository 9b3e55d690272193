"""The simulated board end to end: the product's bleak code (scan, BoardLink) over Bumble virtual controllers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bridge.ble import BoardLink, backend_from_hci, scan
from bridge.image import Chip, build_image
from bridge.sim.config import SimBoardConfig
from bridge.sim.esp_ota import OtaImgState
from bridge.sim.world import VirtualWorld
from protocol import EraseStrategy, Feature, Info, RollbackState, UpdateResult
from tests.conftest import firmware_file

from .driver import push, read_info

C3_HELLO = SimBoardConfig(chip=Chip.ESP32C3, project="hello_world", initial_version="0.9.0")


def slot_bytes(board_flash: bytes, offset: int, size: int) -> bytes:
    return board_flash[offset : offset + size]


@pytest.mark.parametrize(
    "strategy", [EraseStrategy.SEQUENTIAL_4K, EraseStrategy.UP_FRONT, EraseStrategy.BLOCK_AHEAD_64K]
)
async def test_a_real_image_goes_over_bleak_and_the_board_boots_it(
    world: VirtualWorld, firmware: Path, strategy: EraseStrategy
) -> None:
    image = firmware_file(firmware, "P14").read_bytes()  # ESP32-C3 hello_world v1.4.1-2-g0296947-dirty
    board = await world.add_board(SimBoardConfig(chip=Chip.ESP32C3, project="hello_world", erase_strategy=strategy))

    [advert] = await scan(world.backend, timeout_s=0.3)  # by the OTA service UUID
    assert (advert.name, advert.address, advert.rssi) == (board.name, board.address, -50)
    before = await read_info(world, advert.address)
    assert (before.project, before.running_version, before.running_partition) == ("hello_world", "1.0.0", "ota_0")
    assert (before.chip_id, before.erase_strategy, before.next_partition) == (Chip.ESP32C3, strategy, "ota_1")
    assert before.next_partition_size == 0x1E0000
    assert before.features == Feature.RESUME | Feature.APP_ROLLBACK | Feature.ANTI_ROLLBACK

    result = await push(world, advert.address, image)
    await board.wait_booted()

    assert result.begin_offsets == [0]
    assert result.frames_sent == -(-len(image) // 489)  # 495-byte writes carry 489 image bytes
    after = await read_info(world, board.name)
    assert after.running_version == "v1.4.1-2-g0296947-dirty"
    assert (after.running_partition, after.rollback_state) == ("ota_1", RollbackState.VALID)
    assert after.last_update_result is UpdateResult.SUCCESS
    assert (board.running_version, board.boot_partition, board.rollback_state) == (
        "v1.4.1-2-g0296947-dirty",
        "ota_1",
        OtaImgState.VALID,
    )
    assert board.running_sha256 == hashlib.sha256(image).hexdigest()
    slot = board.table.find("ota_1")
    assert board.flash.read(slot.offset, len(image)) == image
    assert board.flash.stats.dirty_program_bytes == 0
    assert board.stats.resent_bytes == 0
    assert [r.partition.label for r in board.boot_history if r.partition] == ["ota_0", "ota_1"]


async def test_the_board_refuses_what_cannot_run_before_writing(world: VirtualWorld, firmware: Path) -> None:
    board = await world.add_board(
        SimBoardConfig(chip=Chip.ESP32, project="tasmota", initial_secure_version=2, efuse_secure_version=2)
    )
    too_big = firmware_file(firmware, "P06").read_bytes()  # 2.2 MB > 1.875 MB slot
    with pytest.raises(Exception, match="TOO_LARGE"):
        await push(world, board.name, too_big)
    old = build_image(chip=Chip.ESP32, project="tasmota", version="0.5", secure_version=1)
    with pytest.raises(Exception, match="SECURE_VERSION_TOO_LOW"):
        await push(world, board.name, old)
    other = build_image(chip=Chip.ESP32, project="other", version="9.0", secure_version=2)
    with pytest.raises(Exception, match="PROJECT_MISMATCH"):
        await push(world, board.name, other)
    running = board.flash.read(board.table.find("ota_0").offset, 64 * 1024)
    with pytest.raises(Exception, match="ALREADY_INSTALLED"):
        await push(world, board.name, running)
    assert board.stats.image_bytes_written == 0
    assert (board.running_version, board.boot_partition) == ("1.0.0", "ota_0")


async def test_an_image_for_another_chip_is_stopped_at_its_header(world: VirtualWorld, firmware: Path) -> None:
    board = await world.add_board(C3_HELLO)
    esp32 = firmware_file(firmware, "P01").read_bytes()  # hello_world for the ESP32
    with pytest.raises(Exception, match="CHIP_MISMATCH"):
        await push(world, board.name, esp32)
    assert board.stats.image_bytes_written < 8 * 1024  # stopped in the first write, not at FINISH
    assert board.last_update_result is UpdateResult.FAILED
    assert (board.running_version, board.boot_partition) == ("0.9.0", "ota_0")


async def test_a_corrupt_image_fails_verification_and_changes_nothing(world: VirtualWorld, firmware: Path) -> None:
    board = await world.add_board(SimBoardConfig(chip=Chip.ESP32S3, project="hello_world"))
    corrupt = firmware_file(firmware, "C03").read_bytes()  # P09 with a bit flip at 0x10100
    with pytest.raises(Exception, match="INVALID_IMAGE"):
        await push(world, board.name, corrupt)
    assert board.stats.image_bytes_written == len(corrupt)
    assert (board.running_version, board.boot_partition) == ("1.0.0", "ota_0")
    info = await read_info(world, board.name)
    assert info.last_update_result is UpdateResult.FAILED


async def test_persisted_board_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "board.sim"
    image = build_image(chip=Chip.ESP32, project="blink", version="2.0.0", secure_version=3, size=48 * 1024)
    config = SimBoardConfig(state_file=state)
    async with VirtualWorld() as world:
        board = await world.add_board(config)
        identity = (board.name, board.address, board.board_id)
        await push(world, board.name, image)
        await board.wait_booted()
    assert state.stat().st_size < 200 * 1024  # 4 MB of mostly erased flash, compressed

    async with VirtualWorld() as world:
        again = await world.add_board(config)
        assert (again.name, again.address, again.board_id) == identity
        assert (again.running_version, again.boot_partition, again.rollback_state) == (
            "2.0.0",
            "ota_1",
            OtaImgState.VALID,
        )
        assert again.efuse_secure_version == 3
        info = await read_info(world, again.name)
        assert (info.running_version, info.secure_version, info.last_update_result) == (
            "2.0.0",
            3,
            UpdateResult.SUCCESS,
        )


async def test_a_state_file_that_is_not_one_is_refused(world: VirtualWorld, tmp_path: Path) -> None:
    bogus = tmp_path / "board.sim"
    bogus.write_bytes(b"not a board")
    with pytest.raises(ValueError, match="not a simulated board state file"):
        await world.add_board(SimBoardConfig(state_file=bogus))


async def test_two_boards_are_told_apart(world: VirtualWorld) -> None:
    first = await world.add_board(SimBoardConfig(name="OTA-A"))
    second = await world.add_board(SimBoardConfig(name="OTA-B", chip=Chip.ESP32S3, project="fan"))
    adverts = await scan(world.backend, timeout_s=0.3)
    assert sorted((a.name, a.address) for a in adverts) == [("OTA-A", first.address), ("OTA-B", second.address)]
    info_b = await read_info(world, "OTA-B")
    assert (info_b.project, info_b.chip_id, info_b.board_id) == ("fan", Chip.ESP32S3, second.board_id)
    assert first.board_id != second.board_id


async def test_link_frames_fit_the_board_max_frame(world: VirtualWorld) -> None:
    board = await world.add_board(SimBoardConfig(max_frame_bytes=200))
    async with await BoardLink.connect(board.name, backend=world.backend) as link:
        assert link.max_write_bytes == 495
    info = await read_info(world, board.name)
    assert isinstance(info, Info) and info.max_frame_bytes == 200
    image = build_image(chip=Chip.ESP32, project="blink", version="2.0", size=16 * 1024)
    result = await push(world, board.name, image)
    assert result.frames_sent == -(-len(image) // 194)  # min(495, 200) - 6 bytes per frame
    assert set(board.stats.payload_by_offset.values()) <= {194, len(image) % 194}


async def test_a_host_that_vanished_without_disconnecting_does_not_lock_the_board(world: VirtualWorld) -> None:
    """Process A connects over HCI/TCP and dies (socket closed, no HCI_Disconnect); process B must still get in."""
    from bumble.device import Device
    from bumble.hci import Address
    from bumble.transport import open_transport

    board = await world.add_board(SimBoardConfig())
    host, port = await world.expose_hci()
    transport = await open_transport(f"tcp-client:{host}:{port}")
    dying = Device.with_hci("dying", Address("F0:0D:00:00:00:09"), transport.source, transport.sink)
    await dying.power_on()
    await dying.connect(Address(board.address), timeout=5)
    await world.settle()
    assert board.is_connected
    await transport.close()  # the process is gone: nobody will ever send HCI_Disconnect

    backend = backend_from_hci(f"tcp-client:{host}:{port}")
    async with backend:  # its power-on resets the controller, which drops the dead host's link
        [advert] = await scan(backend, timeout_s=2.0, name=board.name)
        async with await BoardLink.connect(advert, backend=backend) as link:
            assert link.is_connected
    assert board.stats.connections == 2
