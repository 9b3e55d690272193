"""Faults end to end: the product's Bridge pushes over Bumble (the real bleak code path) to a simulated ESP32.

Link drops at 9 offsets and at BEGIN, FINISH, COMMIT and after the reboot; power loss at 4 offsets and around the
boot switch; 1 % and 5 % of frames lost, duplicated, corrupted; MTU 23; a board that takes 64-byte frames or has a
small buffer; lying boards; a reset and flash stalls; a second bridge; a failing self-test; and `Bridge.sync`
through a misbehaving loopback update server. The board afterwards
boots the new image or the old one, and the bridge says which (or stops with a message, and a re-run succeeds).
A 256 KB built image keeps this under a minute; two trials push the real 1.5 MB P11 image.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.sim.config import SimFaults
from tests.conftest import firmware_file

from .e2e import Images, SimTrial, built_images, corpus_images, run_sim_trial, sim_trials
from .matrix import Outcome

pytestmark = pytest.mark.slow

CI_BYTES = 256 * 1024
TRIALS = sim_trials(CI_BYTES, full=False)
WINDOW_BYTES = 16 * 1024  # the simulated board's receive window
FRAME_BYTES = 489  # image bytes in one 495-byte data write


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return built_images(tmp_path_factory.mktemp("images"), CI_BYTES)


@pytest.mark.parametrize("trial", TRIALS, ids=[f"{t.fault_class}: {t.name}" for t in TRIALS])
async def test_ble_fault_ends_with_a_bootable_board_and_a_true_report(
    trial: SimTrial, images: Images, tmp_path: Path
) -> None:
    result = await run_sim_trial(trial, images, tmp_path)
    assert result.ok, result.explain()
    if result.outcome is Outcome.NEW:
        assert (result.exit_code, result.board) == (0, "new")
    elif result.outcome is Outcome.OLD:
        assert (result.exit_code, result.board) == (8, "old")
    else:
        assert result.exit_code in trial.exit_codes and result.hint
        assert result.board in ("old", "new") and result.rerun is Outcome.NEW


async def test_a_drop_mid_upload_resumes_within_a_window_of_the_drop(images: Images, tmp_path: Path) -> None:
    offset = 150_000
    trial = SimTrial("drop", "mid", SimFaults(disconnect_at_offsets=(offset,)))
    result = await run_sim_trial(trial, images, tmp_path)
    assert result.outcome is Outcome.NEW and len(result.resumed_from) == 1
    # The frame holding the offset may reach flash before the link drops; at most a window is sent again.
    assert offset - WINDOW_BYTES <= result.resumed_from[0] <= offset + FRAME_BYTES


async def test_power_loss_restarts_the_transfer_and_installs(images: Images, tmp_path: Path) -> None:
    trial = SimTrial("power", "at 128 KB", SimFaults(power_loss_at_offset=128 * 1024))
    result = await run_sim_trial(trial, images, tmp_path)
    assert result.outcome is Outcome.NEW and result.board == "new"
    assert result.resumed_from == (0,)  # RAM lost with the power: BEGIN starts over
    assert "1 power losses" in result.detail


async def test_the_real_p11_image_survives_three_drops_and_a_power_loss(firmware: Path, tmp_path: Path) -> None:
    images = corpus_images(firmware_file(firmware, "P11"), tmp_path / "images")
    size = images.size
    drops = SimTrial("P11", "3 drops", SimFaults(disconnect_at_offsets=(1, size // 2, size - 1)))
    result = await run_sim_trial(drops, images, tmp_path / "drops")
    assert result.outcome is Outcome.NEW and result.board == "new", result.explain()
    first, middle, last = result.resumed_from
    assert first <= FRAME_BYTES and size // 2 - WINDOW_BYTES <= middle <= size // 2 + FRAME_BYTES
    assert size - WINDOW_BYTES <= last <= size  # all of it may be in flash: BEGIN answers the end, then FINISH
    power = SimTrial("P11", "power loss at 1 MB", SimFaults(power_loss_at_offset=1024 * 1024))
    result = await run_sim_trial(power, images, tmp_path / "power")
    assert result.outcome is Outcome.NEW and result.resumed_from == (0,), result.explain()


async def test_a_reply_meant_for_a_dropped_link_never_reaches_the_next_one(tmp_path: Path) -> None:
    import asyncio
    import hashlib

    from bridge.ble import BoardLink
    from bridge.errors import BoardTimeoutError
    from bridge.image import Chip, build_image
    from bridge.sim.config import SimBoardConfig
    from bridge.sim.world import VirtualWorld
    from protocol import DEFAULT_BRIDGE_FEATURES, Begin, BridgeConnection, EraseStrategy, Hello

    image = build_image(chip=Chip.ESP32S3, project="p", version="2", size=512 * 1024)
    config = SimBoardConfig(
        name="stale", chip=Chip.ESP32S3, project="p", erase_strategy=EraseStrategy.UP_FRONT, time_scale=1.0
    )
    async with VirtualWorld() as world:
        board = await world.add_board(config)
        link = await BoardLink.connect(board.address, backend=world.backend, timeout_s=3)
        conn = BridgeConnection(max_write_bytes=link.max_write_bytes)
        for datagram in conn.send(Hello(features=DEFAULT_BRIDGE_FEATURES)):
            await link.write_control(datagram)
        while conn.next_event() is None:
            conn.receive_control(await link.recv_control(3))
        begin = Begin(size=len(image), sha256=hashlib.sha256(image).digest(), project="p", version="2")
        for datagram in conn.send(begin):
            await link.write_control(datagram)
        await asyncio.sleep(0.2)  # the board erases 512 KB up front: about 2 s
        assert board.device is not None
        for connection in list(board.device.connections.values()):
            await connection.disconnect(0x08)
        second = await BoardLink.connect(board.address, backend=world.backend, timeout_s=3)
        with pytest.raises(BoardTimeoutError):  # nothing was asked on this link: nothing may come
            await second.recv_control(3.0)
        await second.close()
