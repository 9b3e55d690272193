"""The board state file: round trip, atomic write, damaged files refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.sim.state import BoardState, load_state, save_state


def sample() -> BoardState:
    flash = bytearray(b"\xff" * (1024 * 1024))
    flash[0x10000:0x10004] = b"\xe9\x03\x02\x20"
    return BoardState(
        flash=bytes(flash),
        chip_id=5,
        efuse_secure_version=3,
        board_id=bytes.fromhex("c00a7a000001"),
        name="OTA-0001",
        address="C0:0A:7A:00:00:01",
        last_update_result=1,
        update_committed=True,
    )


def test_state_round_trips_and_compresses(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "board.sim"
    save_state(path, sample())
    assert load_state(path) == sample()
    assert path.stat().st_size < 8 * 1024
    assert [p.name for p in path.parent.iterdir()] == ["board.sim"]  # no temporary file left behind


def test_missing_state_is_none_and_damaged_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "board.sim"
    assert load_state(path) is None
    save_state(path, sample())
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])  # truncated compressed flash
    with pytest.raises(ValueError, match="damaged simulated board state file"):
        load_state(path)
    path.write_bytes(b"PK\x03\x04 a zip, not a board")
    with pytest.raises(ValueError, match="not a simulated board state file"):
        load_state(path)
