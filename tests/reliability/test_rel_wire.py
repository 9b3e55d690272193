"""Wire faults on the protocol harness: a 1.5 MB image through loss, duplication, reordering, corruption, lost
notifications, 18 link drops, MTU 23, a lying board. Every trial must end with the image committed, or with a
named error and nothing committed."""

from __future__ import annotations

import hashlib

import pytest

from bridge.image import Chip, build_image
from protocol import ErrorCode
from protocol.reference import Faults, ReferenceBoard, run_update

from .matrix import Outcome
from .wire import WireTrial, oversized_frame_trial, run_wire_trial, wire_trials

IMAGE_BYTES = 1_500_000
TRIALS = wire_trials(IMAGE_BYTES, full=False)


@pytest.fixture(scope="module")
def image() -> bytes:
    return build_image(chip=Chip.ESP32S3, project="wire", version="2.0.0", size=IMAGE_BYTES, seed=8)


@pytest.mark.parametrize("trial", TRIALS, ids=[f"{t.fault_class}: {t.name}" for t in TRIALS])
def test_wire_trial_ends_well(trial: WireTrial, image: bytes) -> None:
    result = run_wire_trial(trial, image)
    assert result.ok, result.explain()
    if result.outcome is Outcome.NEW:
        assert result.board == "new"
    else:
        assert result.board == "old" and result.message in {code.name for code in trial.errors}


def test_the_catalogue_covers_every_fault_at_one_and_five_percent() -> None:
    names = {(t.fault_class, t.name.split(",")[0]) for t in TRIALS}
    for kind in ("lost", "duplicated", "reordered", "corrupted"):
        assert (f"wire: frames {kind}", "1%") in names and (f"wire: frames {kind}", "5%") in names
    assert ("wire: notifications lost", "5%") in names
    drops = [t for t in TRIALS if t.fault_class == "wire: link drops and resumes"]
    assert len(drops) == 18 and drops[0].run["disconnect_at"] == 1 and drops[-1].run["disconnect_at"] == IMAGE_BYTES - 1


def test_a_drop_resumes_exactly_where_the_board_acknowledged(image: bytes) -> None:
    board = ReferenceBoard()
    outcome = run_update(image, board, disconnect_at=700_000, max_sessions=3)
    assert outcome.committed and board.committed_sha256 == hashlib.sha256(image).digest()
    assert outcome.sessions == 2
    first, resumed = outcome.resumed_from
    assert first == 0 and 700_000 <= resumed < 700_000 + 16_384  # at most one window re-sent


def test_a_lost_frame_costs_at_most_two_windows(image: bytes) -> None:
    lost = frozenset({244_000 // 238 * 238})  # one frame in the middle
    outcome = run_update(image, ReferenceBoard(), faults=Faults(drop_data_offsets=lost))
    assert outcome.committed and outcome.sessions == 1
    # Go-back-N: what was in flight behind the gap, and what the bridge sent before the NACK reached it.
    assert 0 < outcome.payload_bytes_sent - len(image) <= 2 * 16_384


def test_a_false_finish_ok_is_never_committed(image: bytes) -> None:
    trial = next(t for t in TRIALS if t.name == "FINISH_OK with another SHA-256")
    result = run_wire_trial(trial, image)
    assert (result.outcome, result.message, result.board) == (Outcome.ABORT, ErrorCode.HASH_MISMATCH.name, "old")


def test_a_frame_larger_than_the_board_takes_is_nacked_not_written(image: bytes) -> None:
    result = oversized_frame_trial(image)
    assert result.ok, result.explain()
    assert result.message == "NACK" and result.detail.startswith("0 data events")
