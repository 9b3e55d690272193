"""The library API against simulated boards (no CLI): cancellation, memory, offline cache, the examples.

Boards run on a Bumble VirtualWorld in this event loop and the bridge reaches them through ``world.backend``: the
product's bleak code over Bumble. The update server is a real repository served on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import Bridge, BridgeConfig, Uploading
from bridge.errors import ExitCode
from bridge.events import Committing, Confirmed, Finishing, Reconnecting, SyncEvent
from bridge.image import Chip
from bridge.journal import AttemptResult
from bridge.sim.config import SimBoardConfig
from bridge.sim.world import VirtualWorld
from protocol.constants import UpdateResult
from tests.conftest import firmware_file

ROOT = Path(__file__).resolve().parents[2]


def _cached_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file() and "images" in p.parts]


def fast_config(data_dir: Path, url: str | None = None) -> BridgeConfig:
    return BridgeConfig(
        server_url=url,
        data_dir=data_dir,
        scan_timeout_s=2,
        connect_timeout_s=5,
        ack_timeout_s=3,
        reboot_timeout_s=20,
        reconnect_backoff_s=0.1,
        reconnect_backoff_max_s=0.5,
    )


async def test_cancelling_a_sync_aborts_the_transfer_and_keeps_the_old_firmware(
    world: VirtualWorld, firmware: Path, server: str, data_dir: Path
) -> None:
    # Flash at ESP32 speed, so the upload lasts long enough to be cancelled in the middle.
    board = await world.add_board(
        SimBoardConfig(
            name="c3",
            chip=Chip.ESP32C3,
            project="hello_world",
            initial_image=firmware_file(firmware, "P15"),
            time_scale=1.0,
        )
    )
    seen: list[SyncEvent] = []

    async with Bridge(fast_config(data_dir, server), backend=world.backend) as bridge:

        async def run() -> None:
            async for event in bridge.sync("c3"):
                seen.append(event)

        task = asyncio.create_task(run())
        while not any(isinstance(e, Uploading) and e.acked_bytes > 0 for e in seen):
            await asyncio.sleep(0.01)
            assert not task.done(), task
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        acked = max(e.acked_bytes for e in seen if isinstance(e, Uploading))
        assert 0 < acked < 124_192
        for _ in range(100):  # the board handles ABORT asynchronously
            if board.last_update_result is UpdateResult.ABORTED:
                break
            await asyncio.sleep(0.02)
        assert board.last_update_result is UpdateResult.ABORTED
        assert board.transfer_offset == 0  # the partial transfer is gone: no resume of a cancelled update
        assert board.running_version == "1" and board.running_partition == "ota_0"
        entry = bridge.log()[-1]
        assert (entry.result, entry.error, entry.to_version) == (
            AttemptResult.CANCELLED,
            "cancelled during the upload: the board was told to abort",
            "v1.4.1-2-g0296947-dirty",
        )
        assert entry.bytes_sent >= acked  # the real count, not 0 (new-user item 2)
        # The download cache holds only complete, verified files.
        cached = _cached_files(data_dir)
        assert cached, "the verified image stays cached for the next attempt"
        for path in cached:
            assert not path.name.endswith((".part", ".tmp")), path

        # The next sync starts over and completes.
        events = [e async for e in bridge.sync("c3")]
        assert isinstance(events[-1], Confirmed)
        assert board.running_version == "v1.4.1-2-g0296947-dirty"


async def test_breaking_out_of_the_event_loop_also_aborts(world: VirtualWorld, firmware: Path, data_dir: Path) -> None:
    board = await world.add_board(SimBoardConfig(name="c3", chip=Chip.ESP32C3, project="hello_world", time_scale=1.0))
    async with Bridge(fast_config(data_dir), backend=world.backend) as bridge:
        events = bridge.push("c3", firmware_file(firmware, "P14"))
        async for event in events:
            if isinstance(event, Uploading) and event.acked_bytes > 0:
                break
        await events.aclose()  # what `async for ... break` leaves to the garbage collector, done now
        for _ in range(100):
            if board.last_update_result is UpdateResult.ABORTED:
                break
            await asyncio.sleep(0.02)
        assert board.last_update_result is UpdateResult.ABORTED
        assert board.running_version == "1.0.0"
        assert bridge.log()[-1].result is AttemptResult.CANCELLED


@pytest.mark.slow
async def test_large_image_is_read_near_the_send_cursor(
    world: VirtualWorld, firmware: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory is bounded by the window, not the image: every read of the 2.1 MB file is one small block."""
    p13 = firmware_file(firmware, "P13")  # 2,161,520 bytes
    size = p13.stat().st_size
    reads: list[tuple[int, int]] = []
    real_pread = os.pread

    def recording_pread(fd: int, length: int, offset: int) -> bytes:
        reads.append((offset, length))
        return real_pread(fd, length, offset)

    monkeypatch.setattr("bridge.sync.image_file.os.pread", recording_pread)
    board = await world.add_board(
        SimBoardConfig(
            name="s3",
            chip=Chip.ESP32S3,
            project="tasmota",
            flash_bytes=8 * 1024 * 1024,
            ota_partition_bytes=0x300000,
        )
    )
    async with Bridge(fast_config(data_dir), backend=world.backend) as bridge:
        events = [e async for e in bridge.push("s3", p13)]
    assert isinstance(events[-1], Confirmed)
    assert board.running_sha256 == hashlib.sha256(p13.read_bytes()).hexdigest()
    assert max(length for _, length in reads) <= 64 * 1024
    assert sum(min(length, size - offset) for offset, length in reads) <= size + 64 * 1024  # each byte read once
    assert [offset for offset, _ in reads] == sorted(offset for offset, _ in reads)  # following the cursor
    uploads = [e for e in events if isinstance(e, Uploading)]
    assert uploads[-1].acked_bytes == size
    assert all(e.rate_bps > 0 and e.eta_s is not None for e in uploads[2:])


def test_example_sync_once_runs_against_the_demo_board() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sync_once.py"), "--demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == ExitCode.OK, out.stderr
    assert "outdated: runs 1.0.0, 1.1.0 is available" in out.stdout
    assert "confirmed: " in out.stdout and "now runs 1.1.0" in out.stdout


def test_kivy_example_is_valid_python_using_the_public_api() -> None:
    import ast

    import bridge

    tree = ast.parse((ROOT / "examples" / "kivy_app" / "main.py").read_text(encoding="utf-8"))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "bridge"
    }
    assert {"Bridge", "UpdateState", "Uploading", "BridgeError", "load_config"} <= used
    assert used <= set(bridge.__all__), used - set(bridge.__all__)


@pytest.mark.parametrize("moment", [Finishing, Committing])
async def test_power_loss_during_finish_or_commit_ends_on_the_new_image(
    world: VirtualWorld, firmware: Path, data_dir: Path, moment: type[SyncEvent]
) -> None:
    """The board loses power just as FINISH or COMMIT goes out: the bridge reconnects, replays the tail, confirms."""
    p14 = firmware_file(firmware, "P14")
    board = await world.add_board(
        SimBoardConfig(
            name="c3", chip=Chip.ESP32C3, project="hello_world", initial_image=firmware_file(firmware, "P15")
        )
    )
    seen: list[SyncEvent] = []
    cuts: list[asyncio.Task[None]] = []
    async with Bridge(fast_config(data_dir), backend=world.backend) as bridge:
        async for event in bridge.push("c3", p14):
            seen.append(event)
            if isinstance(event, moment) and not cuts:
                cuts.append(asyncio.create_task(board.power_cut()))
    await asyncio.gather(*cuts)
    assert board.stats.power_losses == 1
    assert any(isinstance(e, Reconnecting) and (e.max_attempts or 0) > 0 for e in seen)
    assert isinstance(seen[-1], Confirmed)
    assert board.running_version == "v1.4.1-2-g0296947-dirty"
    assert board.running_sha256 == hashlib.sha256(p14.read_bytes()).hexdigest()
