"""Regressions for the new-user trial (team/NEWUSER.md items 1, 2, 4, 5, 14) over the real pieces.

Boards are simulated on a Bumble VirtualWorld and reached through the product's bleak code; the sync engine,
the journal and the CLI's ``run()`` are the product's own.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import time
from datetime import datetime
from pathlib import Path

import pytest
import typer

from bridge import Bridge, BridgeConfig
from bridge.api import last_interruption
from bridge.ble import OsBackend, TransportLostError, scan
from bridge.ble.backend import HciBackend
from bridge.cli._common import run
from bridge.errors import ExitCode, TransportError, UsageError
from bridge.events import Notice, Rebooting, Reconnecting, RolledBack, SyncEvent, Uploading, UpToDate
from bridge.image import Chip
from bridge.journal import AttemptResult
from bridge.sim.board import SimulatedBoard
from bridge.sim.config import SelfTest, SimBoardConfig, SimFaults
from bridge.sim.world import VirtualWorld
from bridge.sync.engine import CommittedUnconfirmedError
from tests.conftest import firmware_file

P14_VERSION = "v1.4.1-2-g0296947-dirty"
P14_SIZE = 124_192


def fast_config(data_dir: Path, url: str | None = None, **changes: object) -> BridgeConfig:
    config = BridgeConfig(
        server_url=url,
        data_dir=data_dir,
        scan_timeout_s=2,
        connect_timeout_s=5,
        ack_timeout_s=3,
        reboot_timeout_s=20,
        reconnect_backoff_s=0.1,
        reconnect_backoff_max_s=0.5,
    )
    return config.replace(**changes) if changes else config


def c3(firmware: Path, name: str = "c3", **changes: object) -> SimBoardConfig:
    return SimBoardConfig(
        name=name,
        chip=Chip.ESP32C3,
        project="hello_world",
        initial_image=firmware_file(firmware, "P15"),
        **changes,  # type: ignore[arg-type]
    )


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# -- item 1: a cancellation after COMMIT ---------------------------------------------------------------------------


async def test_cancel_after_commit_is_journaled_as_committed_and_the_board_switches(
    world: VirtualWorld, firmware: Path, data_dir: Path
) -> None:
    board = await world.add_board(c3(firmware))
    p14 = firmware_file(firmware, "P14")
    async with Bridge(fast_config(data_dir), backend=world.backend) as bridge:
        seen: list[SyncEvent] = []

        async def drive() -> None:
            async for event in bridge.push("c3", p14):
                seen.append(event)

        task = asyncio.create_task(drive())
        while not any(isinstance(e, Rebooting) for e in seen):
            assert not task.done(), seen
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        entry = bridge.log()[-1]
    assert entry.result is AttemptResult.COMMITTED_UNCONFIRMED
    assert entry.error == f"cancelled after the commit: the board was rebooting into {P14_VERSION}"
    assert entry.bytes_sent >= P14_SIZE  # every byte went over; not 0
    assert (entry.board, entry.name, entry.to_version) == (board.address, "c3", P14_VERSION)
    interruption = last_interruption(clear=True)
    assert interruption is not None and interruption.phase == "committed"
    assert f"is rebooting into {P14_VERSION}" in interruption.message()
    assert f"bridge status {board.address}" in interruption.message()
    # The journal tells the truth: the board does come back on the new image (it restarts REBOOT_OK's delay later).
    for _ in range(400):
        if board.running_version == P14_VERSION:
            break
        await asyncio.sleep(0.05)
    await board.wait_booted(20)
    assert (board.running_version, board.running_partition) == (P14_VERSION, "ota_1")


def test_ctrl_c_after_commit_prints_committed_not_nothing_changed(
    firmware: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGINT through the CLI's run() (the only asyncio.run) right after the `rebooting:` event."""
    p14 = firmware_file(firmware, "P14")
    address: list[str] = []

    async def job() -> None:
        async with VirtualWorld() as world:
            board = await world.add_board(c3(firmware))
            address.append(board.address)
            async with Bridge(fast_config(data_dir), backend=world.backend) as bridge:
                async for event in bridge.push("c3", p14):
                    if isinstance(event, Rebooting):
                        os.kill(os.getpid(), signal.SIGINT)
                        await asyncio.sleep(5)  # cancelled here by asyncio.run's SIGINT handler

    with pytest.raises(typer.Exit) as exit_info:
        run(job)
    assert exit_info.value.exit_code == ExitCode.INTERRUPTED
    err = capsys.readouterr().err
    assert "the board was told to abort" not in err
    assert f"the update was committed and {address[0]} is rebooting into {P14_VERSION}" in err
    assert f"run `bridge status {address[0]}`" in err


def test_ctrl_c_before_any_board_contact_says_nothing_was_sent(capsys: pytest.CaptureFixture[str]) -> None:
    async def job() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(5)

    with pytest.raises(typer.Exit) as exit_info:
        run(job)
    assert exit_info.value.exit_code == ExitCode.INTERRUPTED
    err = capsys.readouterr().err
    assert "told to abort" not in err
    assert err.strip() == "interrupted."


# -- item 2: journal correctness, SIGTERM --------------------------------------------------------------------------


def test_sigterm_during_upload_aborts_and_journals_the_real_byte_count(
    firmware: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p14 = firmware_file(firmware, "P14")
    acked: list[int] = []
    boards: list[SimulatedBoard] = []

    async def job() -> None:
        async with VirtualWorld() as world:
            board = await world.add_board(c3(firmware, time_scale=1.0))  # ESP32 flash speed: a long upload
            boards.append(board)
            async with Bridge(fast_config(data_dir), backend=world.backend) as bridge:
                async for event in bridge.push("c3", p14):
                    if isinstance(event, Uploading) and event.acked_bytes > 20_000 and not acked:
                        acked.append(event.acked_bytes)
                        os.kill(os.getpid(), signal.SIGTERM)

    started = time.time()
    with pytest.raises(typer.Exit) as exit_info:
        run(job)
    assert exit_info.value.exit_code == ExitCode.INTERRUPTED
    err = capsys.readouterr().err
    assert "terminated (SIGTERM): during the upload:" in err
    assert "was told to abort and keeps its firmware" in err
    from bridge.journal import Journal

    entry = list(Journal(data_dir / "journal.jsonl").entries())[-1]
    assert entry.result is AttemptResult.CANCELLED
    assert entry.error == "cancelled during the upload: the board was told to abort"
    assert acked[0] <= entry.bytes_sent < P14_SIZE
    assert _utc(entry.started_at) <= started + 1  # the start, not the end
    assert entry.duration_s > 0
    board = boards[0]
    assert board.running_version == "1"


async def test_failed_attempt_journals_bytes_sent_start_time_and_address(
    world: VirtualWorld, firmware: Path, data_dir: Path
) -> None:
    board = await world.add_board(c3(firmware))
    p14 = firmware_file(firmware, "P14")
    started = time.time()
    config = fast_config(data_dir, reconnect_attempts=1, connect_timeout_s=1, scan_timeout_s=0.5)
    async with Bridge(config, backend=world.backend) as bridge:
        with pytest.raises(TransportError):
            async for event in bridge.push("c3", p14):
                if isinstance(event, Uploading) and event.acked_bytes > 30_000 and board in world.boards:
                    await board.close()  # the board vanishes for good mid-upload
        entry = bridge.log()[-1]
    assert entry.result is AttemptResult.FAILED
    assert 30_000 <= entry.bytes_sent <= P14_SIZE
    assert (entry.board, entry.name) == (board.address, "c3")
    assert started - 1 <= _utc(entry.started_at) <= started + 1
    assert entry.duration_s >= 0.5


async def test_push_of_a_missing_file_is_a_usage_error_and_not_journaled(tmp_path: Path, data_dir: Path) -> None:
    async with Bridge(fast_config(data_dir), backend=OsBackend()) as bridge:
        with pytest.raises(UsageError) as info:
            async for _event in bridge.push("OTA-0001", tmp_path / "nonexistent.bin"):
                pass
        assert info.value.exit_code == ExitCode.USAGE
        assert info.value.message == f"{tmp_path / 'nonexistent.bin'} does not exist"
        assert bridge.log() == []


# -- item 14: progress, reconnect events, unknown address, same image, rollback warning ------------------------------


async def test_upload_events_come_at_one_percent_steps_and_reconnects_agree(
    world: VirtualWorld, firmware: Path, data_dir: Path
) -> None:
    await world.add_board(c3(firmware, faults=SimFaults(disconnect_at_offsets=(60_000,))))
    p14 = firmware_file(firmware, "P14")
    seen: list[SyncEvent] = []
    async with Bridge(fast_config(data_dir, reconnect_attempts=3), backend=world.backend) as bridge:
        async for event in bridge.push("c3", p14):
            seen.append(event)
    uploads = [e for e in seen if isinstance(e, Uploading)]
    # Every acknowledgement the board sends (it acks every 8,313 bytes here) is an event, at most one per 1 %.
    assert len(uploads) >= 15  # not just 0 % and 100 %
    assert [e.acked_bytes for e in uploads][:3] == [0, 8_313, 16_626]
    assert uploads[-1].acked_bytes == P14_SIZE
    step = P14_SIZE // 100
    runs: list[list[int]] = [[]]
    for event in seen:
        if isinstance(event, Reconnecting):
            runs.append([])
        elif isinstance(event, Uploading):
            runs[-1].append(event.acked_bytes)
    for offsets in runs:
        gaps = [b - a for a, b in itertools.pairwise(offsets[1:-1])]
        assert all(gap >= step for gap in gaps), gaps
    during_upload = [e for e in seen if isinstance(e, Reconnecting) and e.resume_offset is not None]
    assert during_upload and all(e.max_attempts == 3 for e in during_upload)
    first = during_upload[0]
    assert f"{first.resume_offset:,} bytes acknowledged so far" in str(first)
    assert "near" not in str(first)
    resumed = next(e for e in seen[seen.index(first) :] if isinstance(e, Uploading))
    assert first.resume_offset is not None and resumed.resumed_from >= first.resume_offset
    after_reboot = [e for e in seen if isinstance(e, Reconnecting) and e.resume_offset is None]
    assert after_reboot and all(e.max_attempts is None and e.deadline_s == 20 for e in after_reboot)


async def test_status_of_an_unknown_address_fails_after_one_scan(world: VirtualWorld, data_dir: Path) -> None:
    started = time.monotonic()
    async with Bridge(fast_config(data_dir, scan_timeout_s=1.0), backend=world.backend) as bridge:
        status = await bridge.status("C0:0A:7A:00:12:34")
    assert not status.connected
    assert status.error == "no board 'C0:0A:7A:00:12:34' answered a 1 s scan"
    assert time.monotonic() - started < 3.0


async def test_push_of_the_running_image_says_it_already_runs_it(
    world: VirtualWorld, firmware: Path, data_dir: Path
) -> None:
    board = await world.add_board(c3(firmware))
    async with Bridge(fast_config(data_dir), backend=world.backend) as bridge:
        events = [e async for e in bridge.push("c3", firmware_file(firmware, "P15"))]
    last = events[-1]
    assert isinstance(last, UpToDate) and last.same_image
    assert str(last) == f"nothing to do: {board.address} already runs this image (1)"


async def test_a_release_that_rolled_back_is_flagged_when_offered_again(
    world: VirtualWorld, firmware: Path, server: str, data_dir: Path
) -> None:
    board = await world.add_board(c3(firmware, self_test=SelfTest.FAIL))
    async with Bridge(fast_config(data_dir, server), backend=world.backend) as bridge:
        first = [e async for e in bridge.sync("c3")]
        assert isinstance(first[-1], RolledBack)
        assert not any(isinstance(e, Notice) for e in first)
        rolled = bridge.log()[-1]
        second = [e async for e in bridge.sync("c3")]
    notices = [e for e in second if isinstance(e, Notice)]
    assert len(notices) == 1
    assert notices[0].message.startswith(
        f"{P14_VERSION} was rolled back on this board at {rolled.started_at} ({rolled.error}"
    )
    assert str(notices[0]).startswith("warning: ")
    assert board.running_version == "1"


# -- item 4: the HCI transport dies --------------------------------------------------------------------------------


async def test_controller_taken_after_commit_is_committed_unconfirmed_fast(
    world: VirtualWorld, firmware: Path, data_dir: Path
) -> None:
    board = await world.add_board(c3(firmware))
    host, port = await world.expose_hci()
    p14 = firmware_file(firmware, "P14")
    intruder: list[socket.socket] = []
    started = 0.0
    try:
        async with (
            HciBackend(f"tcp-client:{host}:{port}") as backend,
            Bridge(fast_config(data_dir, reboot_timeout_s=60), backend=backend) as bridge,
        ):
            with pytest.raises(CommittedUnconfirmedError) as info:
                async for event in bridge.push("c3", p14):
                    if isinstance(event, Rebooting) and not intruder:
                        # Another host connects to the same controller: ours loses its transport.
                        sock = await asyncio.to_thread(socket.create_connection, (host, port))
                        intruder.append(sock)
                        started = time.monotonic()
            entry = bridge.log()[-1]
    finally:
        for sock in intruder:
            sock.close()
    assert time.monotonic() - started < 5  # not the 60 s reboot timeout, nor a reply timeout
    assert isinstance(info.value.__cause__, TransportLostError)
    assert info.value.message.startswith(
        f"the update was committed and {board.address} was rebooting into {P14_VERSION}"
    )
    assert info.value.hint is not None and f"bridge status {board.address}" in info.value.hint
    assert entry.result is AttemptResult.COMMITTED_UNCONFIRMED
    assert entry.bytes_sent >= P14_SIZE
    for _ in range(400):
        if board.running_version == P14_VERSION:
            break
        await asyncio.sleep(0.05)
    assert board.running_version == P14_VERSION


# -- item 5: no Bluetooth stack -------------------------------------------------------------------------------------


@pytest.mark.skipif(
    os.path.exists("/run/dbus/system_bus_socket") or os.path.exists("/var/run/dbus/system_bus_socket"),
    reason="this machine has a system D-Bus (BlueZ may be there)",
)
async def test_no_bluetooth_stack_says_so_and_points_to_hci_and_demo(data_dir: Path) -> None:
    with pytest.raises(TransportError) as info:
        await scan(OsBackend(), timeout_s=1)
    assert info.value.message.startswith("no Bluetooth adapter is available: the OS Bluetooth stack (BlueZ)")
    assert info.value.exit_code == ExitCode.LINK_FAILED
    hint = info.value.hint or ""
    assert "--hci usb:0" in hint and "--hci tcp-client:" in hint and "bridge demo" in hint
    async with Bridge(fast_config(data_dir, scan_timeout_s=1), backend=OsBackend()) as bridge:
        with pytest.raises(TransportLostError) as lost:
            await bridge.status("AA:BB:CC:DD:EE:FF")
    assert lost.value.message.startswith("no Bluetooth adapter is available")
    assert lost.value.hint == hint


async def test_controller_taken_during_upload_fails_fast_with_a_clear_error(
    world: VirtualWorld, firmware: Path, data_dir: Path
) -> None:
    board = await world.add_board(c3(firmware, time_scale=1.0))
    host, port = await world.expose_hci()
    p14 = firmware_file(firmware, "P14")
    intruder: list[socket.socket] = []
    started = 0.0
    try:
        async with (
            HciBackend(f"tcp-client:{host}:{port}") as backend,
            Bridge(fast_config(data_dir), backend=backend) as bridge,
        ):
            with pytest.raises(TransportError) as info:
                async for event in bridge.push("c3", p14):
                    if isinstance(event, Uploading) and event.acked_bytes > 20_000 and not intruder:
                        sock = await asyncio.to_thread(socket.create_connection, (host, port))
                        intruder.append(sock)
                        started = time.monotonic()
            entry = bridge.log()[-1]
    finally:
        for sock in intruder:
            sock.close()
    assert time.monotonic() - started < 5  # not an ack timeout, nor reconnect_attempts x connect timeouts
    assert isinstance(info.value, TransportLostError)
    assert "went away" in info.value.message
    assert entry.result is AttemptResult.FAILED
    assert 20_000 <= entry.bytes_sent < P14_SIZE
    assert board.running_version == "1"
