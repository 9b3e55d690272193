"""The main job end to end, through the `bridge` CLI: real images, real TUF server on loopback, boards on Bumble.

Every test drives the CLI exactly as a technician would (``bridge --hci tcp-client:... status/sync/push``) and
asserts what the board itself reports afterwards (running version, image hash, bytes it received).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.errors import ExitCode
from bridge.image import Chip
from bridge.journal import AttemptResult
from bridge.sim.config import SelfTest, SimBoardConfig, SimFaults
from bridge.sim.world import VirtualWorld
from tests.cli.e2e import Rig, kinds, served_repository
from tests.conftest import firmware_file

P14_VERSION = "v1.4.1-2-g0296947-dirty"
P14_SIZE = 124_192
WINDOW_BYTES = SimBoardConfig().window_bytes  # what the simulated board grants


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
async def world() -> AsyncIterator[VirtualWorld]:
    async with VirtualWorld() as world:
        yield world


@pytest.fixture
async def rig(world: VirtualWorld, tmp_path: Path) -> AsyncIterator[Rig]:
    host, port = await world.expose_hci()
    config_file = tmp_path / "config.toml"
    config_file.write_text("", encoding="utf-8")
    yield Rig(hci=f"tcp-client:{host}:{port}", config_file=config_file, data_dir=tmp_path / "data")
    # Bumble's TCP server transport does not close its listening socket on close(): do it here, or the
    # ResourceWarning (an error in this suite) lands on the next test.
    for transport in world._transports:
        server = getattr(transport, "server", None)
        if server is not None:
            server.close()
            await server.wait_closed()


@pytest.fixture
def hello_world_server(firmware: Path, tmp_path: Path, rig: Rig) -> Iterator[str]:
    """hello_world for ESP32-C3: P15 (2023 build, version "1") is release 1, P14 (2024 build) release 2."""
    images = [firmware_file(firmware, "P15"), firmware_file(firmware, "P14")]
    with served_repository(tmp_path / "repo", images, rig.data_dir) as url:
        rig.configure(url)
        yield url


def c3_board(name: str, image: Path, **changes: object) -> SimBoardConfig:
    return SimBoardConfig(name=name, chip=Chip.ESP32C3, project="hello_world", initial_image=image, **changes)  # type: ignore[arg-type]


async def test_p15_to_p14_status_sync_status(
    world: VirtualWorld, rig: Rig, firmware: Path, hello_world_server: str
) -> None:
    p14 = firmware_file(firmware, "P14")
    board = await world.add_board(c3_board("c3", firmware_file(firmware, "P15")))
    assert board.running_version == "1"

    before = await rig("status", "c3", "--json")
    assert before.code == ExitCode.UPDATE_AVAILABLE, before.stderr
    status = before.json()
    assert (status["connected"], status["state"], status["running_version"]) == (True, "outdated", "1")
    assert status["available"]["version"] == P14_VERSION
    assert status["available"]["sha256"] == sha256_of(p14)
    assert status["available"]["release_number"] == 2
    assert status["info"]["chip"] == "ESP32-C3" and status["info"]["project"] == "hello_world"

    synced = await rig("sync", "c3", "--yes", "--json")
    assert synced.code == ExitCode.OK, synced.stderr
    result = synced.json()
    assert result["outcome"] == "confirmed"
    assert kinds(result["events"]) == [
        "checking",
        "connecting",
        "downloading",
        "verified",
        "uploading",
        "finishing",
        "committing",
        "rebooting",
        "reconnecting",
        "confirmed",
    ]
    uploads = [e for e in result["events"] if e["event"] == "uploading"]
    assert uploads[-1]["acked_bytes"] == uploads[-1]["total_bytes"] == P14_SIZE
    confirmed = result["events"][-1]
    assert (confirmed["version"], confirmed["from_version"]) == (P14_VERSION, "1")
    assert confirmed["rollback_state"] == "valid"
    assert confirmed["bytes_sent"] == P14_SIZE  # nothing resent on a clean link

    # What the board itself says: the 2024 build runs from the other slot, byte for byte.
    assert board.running_version == P14_VERSION
    assert board.running_partition == "ota_1"
    assert board.running_sha256 == sha256_of(p14)
    assert board.stats.image_bytes_written == P14_SIZE
    assert board.stats.resent_bytes == 0

    after = await rig("status", "c3", "--json")
    assert after.code == ExitCode.OK
    assert (after.json()["state"], after.json()["running_version"]) == ("updated", P14_VERSION)

    [entry] = rig.journal
    assert (entry.result, entry.from_version, entry.to_version) == (AttemptResult.CONFIRMED, "1", P14_VERSION)
    assert (entry.bytes_total, entry.bytes_sent, entry.image_sha256) == (P14_SIZE, P14_SIZE, sha256_of(p14))
    assert entry.duration_s > 0

    # A second sync has nothing to do and writes nothing to the board.
    frames = board.stats.data_frames_received
    again = await rig("sync", "c3", "--yes")
    assert again.code == ExitCode.OK
    assert "updated: runs v1.4.1-2-g0296947-dirty, the newest release" in again.stdout
    assert board.stats.data_frames_received == frames
    assert len(rig.journal) == 1  # the CLI saw "updated" in its status check and attempted nothing


async def test_three_status_outcomes(world: VirtualWorld, rig: Rig, firmware: Path, hello_world_server: str) -> None:
    await world.add_board(c3_board("old", firmware_file(firmware, "P15")))
    await world.add_board(c3_board("new", firmware_file(firmware, "P14")))
    # An ESP32-S3 hello_world: the server has no release for that chip.
    await world.add_board(
        SimBoardConfig(
            name="s3", chip=Chip.ESP32S3, project="hello_world", initial_image=firmware_file(firmware, "P09")
        )
    )

    outdated = await rig("status", "old", "--json")
    updated = await rig("status", "new", "--json")
    no_update = await rig("status", "s3", "--json")
    assert (outdated.code, outdated.json()["state"]) == (ExitCode.UPDATE_AVAILABLE, "outdated")
    assert outdated.json()["available"]["version"] == P14_VERSION
    assert (updated.code, updated.json()["state"], updated.json()["available"]) == (ExitCode.OK, "updated", None)
    assert (no_update.code, no_update.json()["state"]) == (ExitCode.OK, "no_update")
    assert "no confirmed release" in no_update.json()["note"]

    scanned = await rig("scan", "--json")
    assert scanned.code == ExitCode.OK
    assert sorted(a["name"] for a in scanned.json()) == ["new", "old", "s3"]

    # Without a board name: every board in range, and the exit status of the most urgent one (3: outdated).
    everyone = await rig("status", "--json")
    assert everyone.code == ExitCode.UPDATE_AVAILABLE
    states = {s["name"]: s["state"] for s in everyone.json()}
    assert states == {"old": "outdated", "new": "updated", "s3": "no_update"}

    table = await rig("status", "new")
    assert table.code == ExitCode.OK
    assert "updated" in table.stdout and P14_VERSION in table.stdout

    missing = await rig("status", "ghost", "--json")
    assert missing.code == ExitCode.BOARD_NOT_FOUND
    assert missing.json()["connected"] is False

    dry = await rig("sync", "old", "--dry-run")
    assert dry.code == ExitCode.UPDATE_AVAILABLE
    assert f"-> {P14_VERSION}" in dry.stdout

    every = await rig("sync", "--all", "--dry-run", "--json")
    assert every.code == ExitCode.UPDATE_AVAILABLE
    outcomes = {r["status"]["name"]: r["outcome"] for r in every.json()}
    assert outcomes == {"old": "update_available", "new": "up_to_date", "s3": "up_to_date"}

    several = await rig("sync", "--yes")  # several boards in range, none named
    assert several.code == ExitCode.USAGE
    assert "3 boards found" in several.stderr


async def test_disconnect_mid_upload_resumes_from_the_boards_offset(
    world: VirtualWorld, rig: Rig, firmware: Path, hello_world_server: str
) -> None:
    cut_at = 60_000
    board = await world.add_board(
        c3_board("c3", firmware_file(firmware, "P15"), faults=SimFaults(disconnect_at_offsets=(cut_at,)))
    )
    synced = await rig("sync", "c3", "--yes", "--json")
    assert synced.code == ExitCode.OK, synced.stderr
    events = synced.json()["events"]
    assert kinds(events)[:7] == [
        "checking",
        "connecting",
        "downloading",
        "verified",
        "uploading",
        "reconnecting",
        "uploading",
    ]
    reconnect = next(e for e in events if e["event"] == "reconnecting")
    assert reconnect["attempt"] == 1 and reconnect["resume_offset"] <= cut_at
    resumed = [e for e in events if e["event"] == "uploading" and e["resumed_from"] > 0]
    assert resumed, "the second BEGIN must continue from the board's offset, not from 0"
    # The board drops the link on the frame that reaches cut_at; it resumes at what it had written by then.
    assert cut_at - WINDOW_BYTES <= resumed[0]["resumed_from"] <= cut_at + 512
    assert events[-1]["event"] == "confirmed"

    assert board.stats.forced_disconnects == 1
    assert board.running_version == P14_VERSION
    assert board.running_sha256 == sha256_of(firmware_file(firmware, "P14"))
    # Resending is bounded by the window: only what was in flight when the link dropped goes again.
    assert 0 <= board.stats.resent_bytes <= WINDOW_BYTES
    sent = events[-1]["bytes_sent"]
    assert P14_SIZE <= sent <= P14_SIZE + WINDOW_BYTES
    assert rig.journal[-1].bytes_sent == sent


async def test_failed_self_test_comes_back_on_the_old_version(
    world: VirtualWorld, rig: Rig, firmware: Path, hello_world_server: str
) -> None:
    board = await world.add_board(c3_board("c3", firmware_file(firmware, "P15"), self_test=SelfTest.FAIL))
    synced = await rig("sync", "c3", "--yes", "--json")
    assert synced.code == ExitCode.ROLLED_BACK, synced.stderr
    result = synced.json()
    assert result["outcome"] == "rolled_back"
    rolled = result["events"][-1]
    assert (rolled["running_version"], rolled["attempted_version"]) == ("1", P14_VERSION)
    assert "rolled back" in rolled["reason"]
    assert board.running_version == "1" and board.running_partition == "ota_0"
    entry = rig.journal[-1]
    assert (entry.result, entry.to_version) == (AttemptResult.ROLLED_BACK, P14_VERSION)
    assert "rolled back" in entry.error

    shown = await rig("status", "c3", "--json")
    assert shown.json()["info"]["last_update_result"] == "rolled_back"
    assert shown.json()["state"] == "outdated"  # P14 is still the newest release


async def test_wrong_chip_image_is_refused_before_any_data_reaches_the_board(
    world: VirtualWorld, rig: Rig, firmware: Path, tmp_path: Path
) -> None:
    board = await world.add_board(c3_board("c3", firmware_file(firmware, "P15")))
    pushed = await rig("push", "c3", str(firmware_file(firmware, "P09")))  # an ESP32-S3 image
    assert pushed.code == ExitCode.REFUSED
    assert "ESP32-S3" in pushed.stderr and "ESP32-C3" in pushed.stderr
    assert "Traceback" not in pushed.stderr
    # Only HELLO/INFO happened: no BEGIN, no erase, no data frame; the board runs what it ran.
    assert board.stats.data_frames_received == 0
    assert board.transfer_offset == 0
    assert board.running_version == "1"
    assert rig.journal[-1].result is AttemptResult.REFUSED


@pytest.mark.slow
async def test_large_image_push(world: VirtualWorld, rig: Rig, firmware: Path) -> None:
    p06 = firmware_file(firmware, "P06")  # Tasmota32, 2,220,672 bytes
    board = await world.add_board(
        SimBoardConfig(
            name="big",
            chip=Chip.ESP32,
            project="tasmota",
            flash_bytes=8 * 1024 * 1024,
            ota_partition_bytes=0x300000,
        )
    )
    pushed = await rig("push", "big", str(p06), "--json")
    assert pushed.code == ExitCode.OK, pushed.stderr
    events = pushed.json()["events"]
    assert events[-1]["event"] == "confirmed"
    assert events[-1]["bytes_sent"] == p06.stat().st_size == 2_220_672
    assert board.running_sha256 == sha256_of(p06)
    assert board.stats.image_bytes_written == 2_220_672
    assert board.stats.resent_bytes == 0


async def test_fetch_then_sync_offline(world: VirtualWorld, rig: Rig, firmware: Path, tmp_path: Path) -> None:
    """Download in the office (`bridge fetch`), update in the field with the server out of reach."""
    p14 = firmware_file(firmware, "P14")
    with served_repository(tmp_path / "repo", [firmware_file(firmware, "P15"), p14], rig.data_dir) as url:
        rig.configure(url)
        fetched = await rig("fetch", "--json")
        assert fetched.code == ExitCode.OK, fetched.stderr
        assert [(r["version"], r["sha256"]) for r in fetched.json()] == [(P14_VERSION, sha256_of(p14))]
        assert sha256_of(Path(fetched.json()[0]["path"])) == sha256_of(p14)
    # The server is gone now (same URL, nothing listening).
    board = await world.add_board(c3_board("c3", firmware_file(firmware, "P15")))
    synced = await rig("sync", "c3", "--yes", "--json")
    assert synced.code == ExitCode.OK, synced.stderr
    result = synced.json()
    assert result["status"]["offline"] is True
    assert result["outcome"] == "confirmed"
    assert "downloading" not in kinds(result["events"])  # straight from the verified cache
    assert board.running_sha256 == sha256_of(p14)


async def test_unreachable_server_and_empty_cache_is_a_server_error(
    world: VirtualWorld, rig: Rig, firmware: Path, tmp_path: Path
) -> None:
    with served_repository(tmp_path / "repo", [firmware_file(firmware, "P15")], rig.data_dir) as url:
        rig.configure(url)  # trusted, but nothing fetched
    board = await world.add_board(c3_board("c3", firmware_file(firmware, "P15")))
    status = await rig("status", "c3")
    assert status.code == ExitCode.SERVER, status.stdout
    assert "Traceback" not in status.stderr
    synced = await rig("sync", "c3", "--yes")
    assert synced.code == ExitCode.SERVER
    assert board.stats.data_frames_received == 0
