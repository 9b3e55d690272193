"""Every fault knob of the simulated board, each with the outcome it must lead to."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bridge.ble import BoardLink
from bridge.errors import DisconnectedError
from bridge.image import Chip, build_image
from bridge.sim.config import SelfTest, SimBoardConfig, SimFaults
from bridge.sim.esp_ota import OtaImgState
from bridge.sim.flash import FlashTiming
from bridge.sim.world import VirtualWorld
from protocol import ErrorCode, RemoteProtocolError, RollbackState, UpdateResult
from tests.conftest import firmware_file

from .driver import BoardRefused, PushResult, begin_for, open_session, push, read_info, send_image

PAYLOAD = 489  # image bytes per 495-byte data write
WINDOW = SimBoardConfig().window_bytes  # what the simulated board grants


def new_image(version: str = "2.0.0", *, size: int = 64 * 1024, secure_version: int = 0) -> bytes:
    return build_image(chip=Chip.ESP32, project="blink", version=version, secure_version=secure_version, size=size)


def installed(board: object, image: bytes) -> bool:
    from bridge.sim.board import SimulatedBoard

    assert isinstance(board, SimulatedBoard)
    slot = board.table.find(board.boot_partition)
    return board.flash.read(slot.offset, len(image)) == image


async def test_disconnect_at_an_offset_resumes_and_resends_at_most_a_window(world: VirtualWorld) -> None:
    image = new_image(size=128 * 1024)
    board = await world.add_board(SimBoardConfig(faults=SimFaults(disconnect_at_offsets=(40_000, 90_000))))
    result = await push(world, board.name, image)
    await board.wait_booted()

    assert result.reconnects == 2
    assert len(result.begin_offsets) == 3 and result.begin_offsets[0] == 0
    # Each resume starts at what was in flash: the drop came right after the frame holding the offset.
    assert 40_000 - WINDOW <= result.begin_offsets[1] <= 40_000 + PAYLOAD
    assert 90_000 - WINDOW <= result.begin_offsets[2] <= 90_000 + PAYLOAD
    assert board.stats.forced_disconnects == 2
    # Frames in flight when the link fell are lost or sent again: never more than a window per drop.
    frames = -(-len(image) // PAYLOAD)
    assert frames <= result.frames_sent <= frames + 2 * (WINDOW // PAYLOAD + 1)
    assert board.stats.resent_bytes <= 2 * (WINDOW + PAYLOAD)
    assert board.running_version == "2.0.0" and installed(board, image)
    assert board.flash.stats.dirty_program_bytes == 0


@pytest.mark.parametrize("frame", [10, 135])  # a frame in the middle, and the very last one (10 bytes)
async def test_a_dropped_frame_is_resent(world: VirtualWorld, frame: int) -> None:
    image = new_image()
    assert -(-len(image) // PAYLOAD) == 135
    board = await world.add_board(SimBoardConfig(faults=SimFaults(drop_frames=frozenset({frame}))))
    result = await push(world, board.name, image)
    await board.wait_booted()
    assert board.stats.frames_dropped == 1
    assert result.reconnects == 0
    # Go-back-N: the lost frame and what followed it in flight are resent, never more than a window.
    assert 135 < result.frames_sent <= 135 + WINDOW // PAYLOAD + 1
    assert board.stats.resent_bytes <= WINDOW
    assert board.running_version == "2.0.0" and installed(board, image)


async def test_a_duplicated_frame_is_ignored(world: VirtualWorld) -> None:
    image = new_image()
    board = await world.add_board(SimBoardConfig(faults=SimFaults(duplicate_frames=frozenset({5, 6, 7}))))
    result = await push(world, board.name, image)
    await board.wait_booted()
    assert board.stats.frames_duplicated == 3
    assert board.stats.resent_bytes == 3 * PAYLOAD  # only the duplicates themselves
    assert result.frames_sent == 135
    assert board.stats.image_bytes_written == len(image)
    assert board.running_version == "2.0.0" and installed(board, image)


async def test_a_corrupted_frame_is_caught_by_its_crc_and_resent(world: VirtualWorld) -> None:
    image = new_image()
    board = await world.add_board(SimBoardConfig(faults=SimFaults(corrupt_frames=frozenset({20}))))
    result = await push(world, board.name, image)
    await board.wait_booted()
    assert board.stats.frames_corrupted == 1
    assert result.frames_sent > 135
    assert board.running_version == "2.0.0" and installed(board, image)
    assert board.flash.stats.dirty_program_bytes == 0


async def test_power_loss_mid_transfer_keeps_the_old_image_booting(world: VirtualWorld, firmware: Path) -> None:
    image = firmware_file(firmware, "P01").read_bytes()  # ESP32 hello_world, 124,416 bytes
    board = await world.add_board(
        SimBoardConfig(project="hello_world", faults=SimFaults(power_loss_at_offset=70_000), boot_time_s=0.1)
    )
    link = await BoardLink.connect(board.name, backend=world.backend)
    session = await open_session(link)
    with pytest.raises(DisconnectedError):
        await send_image(session, image, PushResult())
    await link.close()
    await board.wait_booted()

    assert board.stats.power_losses == 1
    assert (board.running_version, board.running_partition) == ("1.0.0", "ota_0")
    spare = board.table.find("ota_1")
    assert board.flash.read(spare.offset, 70_000) == image[:70_000]  # written up to the cut ...
    assert board.flash.is_erased(spare.offset + 72 * 1024, 4096)  # ... and nothing after it
    info = await read_info(world, board.name)
    assert (info.running_version, info.last_update_result) == ("1.0.0", UpdateResult.INTERRUPTED)

    result = await push(world, board.name, image)  # RAM was lost: the transfer starts again from 0
    await board.wait_booted()
    assert result.begin_offsets == [0]
    assert board.running_version == "v1.4.1-2-g0296947-dirty" and installed(board, image)
    assert board.flash.stats.dirty_program_bytes == 0


async def test_slow_flash_takes_the_modelled_time_and_still_completes(world: VirtualWorld) -> None:
    image = new_image(size=32 * 1024)
    scale = 0.02
    board = await world.add_board(SimBoardConfig(time_scale=scale, faults=SimFaults(flash_slowdown=5.0)))
    started = time.monotonic()
    await push(world, board.name, image)
    elapsed = time.monotonic() - started
    await board.wait_booted()
    timing = FlashTiming()
    # 8 sectors erased inline (sequential writes) and 32 KB programmed, all 5x slower; plus one otadata sector.
    modelled = 5 * (8 * timing.sector_erase_s + len(image) / timing.program_bytes_per_s)
    assert board.flash.stats.busy_s == pytest.approx(modelled, rel=0.01)
    assert elapsed >= modelled * scale
    assert board.running_version == "2.0.0" and installed(board, image)


async def test_a_full_receive_buffer_drops_frames_and_the_transfer_recovers(world: VirtualWorld) -> None:
    image = new_image(size=48 * 1024)
    config = SimBoardConfig(time_scale=0.05, faults=SimFaults(rx_buffer_bytes=2 * PAYLOAD))  # window is 16 KB
    board = await world.add_board(config)
    result = await push(world, board.name, image, ack_timeout_s=0.3)
    await board.wait_booted()
    assert board.stats.frames_dropped_buffer_full > 0
    assert result.frames_sent > -(-len(image) // PAYLOAD)
    assert board.running_version == "2.0.0" and installed(board, image)


async def test_a_failing_self_test_rolls_back_to_the_old_image(world: VirtualWorld) -> None:
    image = new_image()
    board = await world.add_board(SimBoardConfig(self_test=SelfTest.FAIL))
    await push(world, board.name, image)
    await board.wait_booted()
    states = [(r.partition.label, r.state) for r in board.boot_history if r.partition]
    assert states == [
        ("ota_0", OtaImgState.UNDEFINED),
        ("ota_1", OtaImgState.PENDING_VERIFY),  # the new app ran its self-test ...
        ("ota_0", OtaImgState.UNDEFINED),  # ... failed it, and the old one came back
    ]
    info = await read_info(world, board.name)
    assert (info.running_version, info.running_partition) == ("1.0.0", "ota_0")
    assert info.last_update_result is UpdateResult.ROLLED_BACK
    assert board.ota.state_of(board.table.find("ota_1")) is OtaImgState.INVALID


async def test_an_app_that_never_confirms_blocks_updates_and_rolls_back_on_reset(world: VirtualWorld) -> None:
    board = await world.add_board(SimBoardConfig(self_test=SelfTest.NO_CONFIRM))
    await push(world, board.name, new_image("2.0.0"))
    await board.wait_booted()
    info = await read_info(world, board.name)
    assert (info.running_version, info.rollback_state) == ("2.0.0", RollbackState.PENDING_VERIFY)
    with pytest.raises(BoardRefused) as refused:
        await push(world, board.name, new_image("3.0.0"))
    assert refused.value.error.code is ErrorCode.ROLLBACK_PENDING

    await board.reboot()
    info = await read_info(world, board.name)
    assert (info.running_version, info.running_partition) == ("1.0.0", "ota_0")
    assert info.last_update_result is UpdateResult.ROLLED_BACK
    assert board.ota.state_of(board.table.find("ota_1")) is OtaImgState.ABORTED


async def test_anti_rollback_refuses_a_lower_secure_version_even_when_begin_lies(world: VirtualWorld) -> None:
    board = await world.add_board(SimBoardConfig(initial_secure_version=2, efuse_secure_version=2))
    honest = new_image("1.9.0", secure_version=1)
    with pytest.raises(BoardRefused) as refused:
        await push(world, board.name, honest)
    assert refused.value.error.code is ErrorCode.SECURE_VERSION_TOO_LOW
    assert board.stats.image_bytes_written == 0  # refused at BEGIN

    link = await BoardLink.connect(board.name, backend=world.backend)
    session = await open_session(link)
    begin = begin_for(honest)
    lying = type(begin)(
        size=begin.size, sha256=begin.sha256, secure_version=2, version=begin.version, project=begin.project
    )
    await session.command(lying)
    with pytest.raises(BoardRefused) as refused:  # the descriptor at 0x20 tells the truth
        for frame in iter(lambda: session.conn.next_data_frame(honest), None):
            await link.write_data(frame)
        await session.event()
    await link.close()
    assert refused.value.error.code is ErrorCode.SECURE_VERSION_TOO_LOW
    assert board.stats.image_bytes_written < 8 * 1024
    assert (board.running_version, board.efuse_secure_version) == ("1.0.0", 2)


async def test_a_board_that_acks_beyond_what_was_sent_is_caught(world: VirtualWorld) -> None:
    board = await world.add_board(SimBoardConfig(faults=SimFaults(ack_lie_bytes=50_000)))
    with pytest.raises(RemoteProtocolError, match="beyond the highest byte sent") as error:
        await push(world, board.name, new_image())
    assert error.value.code is ErrorCode.BAD_MESSAGE
    assert (board.running_version, board.boot_partition) == ("1.0.0", "ota_0")


async def test_faults_can_change_between_updates(world: VirtualWorld) -> None:
    """A board that behaved, then drops a frame during the second update."""
    board = await world.add_board(SimBoardConfig())
    await push(world, board.name, new_image("2.0.0"))
    await board.wait_booted()
    board.set_faults(SimFaults(drop_frames=frozenset({board.stats.data_frames_received + 3})))
    await push(world, board.name, new_image("3.0.0"))
    await board.wait_booted()
    assert board.stats.frames_dropped == 1
    assert (board.running_version, board.running_partition) == ("3.0.0", "ota_0")
