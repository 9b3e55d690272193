"""Whole images through both roles over a lossy in-memory link: byte-exact, or a named error; never a hang."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protocol import DATA_FRAME_OVERHEAD_BYTES, ErrorCode
from protocol.reference import Faults, ReferenceBoard, UpdateOutcome, default_info, run_update

MIB = 1 << 20

#: Errors a session may legitimately end with when control notifications are lost or corrupted.
NAMED_ERRORS = {ErrorCode.TIMEOUT, ErrorCode.BAD_MESSAGE, ErrorCode.BAD_STATE, ErrorCode.HASH_MISMATCH}

fault_rate = st.sampled_from([0.0, 0.001, 0.01, 0.03, 0.05])
data_faults = st.builds(
    Faults, data_loss=fault_rate, data_duplicate=fault_rate, data_reorder=fault_rate, data_corrupt=fault_rate
)
all_faults = st.builds(
    Faults,
    data_loss=fault_rate,
    data_duplicate=fault_rate,
    data_reorder=fault_rate,
    data_corrupt=fault_rate,
    notify_loss=st.sampled_from([0.0, 0.005, 0.02]),
    notify_corrupt=st.sampled_from([0.0, 0.002, 0.01]),
)


def make_image(size: int, seed: int) -> bytes:
    image = bytearray(random.Random(seed).randbytes(size))
    image[0] = 0xE9
    return bytes(image)


def transfer(
    size: int, max_write: int, window_frames: int, faults: Faults, seed: int, delay_writes: bool
) -> tuple[ReferenceBoard, bytes, UpdateOutcome]:
    image = make_image(size, seed)
    window = window_frames * (max_write - DATA_FRAME_OVERHEAD_BYTES)
    board = ReferenceBoard(default_info(window_bytes=window, max_frame_bytes=512), delay_writes=delay_writes)
    outcome = run_update(image, board, max_write_bytes=max_write, faults=faults, seed=seed, max_sessions=5)
    # The board only ever wrote in order (ReferenceBoard asserts it) and only commits what matched BEGIN's hash.
    if outcome.committed:
        assert board.committed_image == image
        assert board.committed_sha256 == hashlib.sha256(image).digest()
    else:
        assert board.committed_image is None
    return board, image, outcome


sizes = st.one_of(st.integers(1, 4096), st.integers(4097, 200_000))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=sizes,
    max_write=st.sampled_from([20, 64, 182, 244, 495, 512]),
    window_frames=st.integers(1, 48),
    faults=data_faults,
    seed=st.integers(0, 2**32 - 1),
    delay_writes=st.booleans(),
)
@example(size=1, max_write=20, window_frames=1, faults=Faults(), seed=0, delay_writes=False)
@example(size=7, max_write=20, window_frames=1, faults=Faults(data_loss=0.5), seed=1, delay_writes=True)
def test_data_faults_never_prevent_an_exact_image(
    size: int, max_write: int, window_frames: int, faults: Faults, seed: int, delay_writes: bool
) -> None:
    """Loss, duplication, reordering and corruption of data frames are all repaired: the image always arrives."""
    if max_write < 100:
        size = min(size, 20_000)
    _, _, outcome = transfer(size, max_write, window_frames, faults, seed, delay_writes)
    assert outcome.committed, outcome


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=sizes,
    max_write=st.sampled_from([20, 64, 182, 244, 495, 512]),
    window_frames=st.integers(1, 48),
    faults=all_faults,
    seed=st.integers(0, 2**32 - 1),
    delay_writes=st.booleans(),
)
def test_any_faults_end_exact_or_with_a_named_error(
    size: int, max_write: int, window_frames: int, faults: Faults, seed: int, delay_writes: bool
) -> None:
    """With control notifications lost or corrupted too, a session may fail, but only with a named error."""
    if max_write < 100:
        size = min(size, 20_000)
    _, _, outcome = transfer(size, max_write, window_frames, faults, seed, delay_writes)
    if not outcome.committed:
        assert outcome.error in NAMED_ERRORS, outcome


@pytest.mark.slow
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(3 * MIB, 4 * MIB),
    max_write=st.sampled_from([244, 495]),
    seed=st.integers(0, 2**32 - 1),
)
@example(size=4 * MIB, max_write=495, seed=7)
def test_big_images_with_faults(size: int, max_write: int, seed: int) -> None:
    """Up to 4 MiB, with a little of every data fault and slow flash."""
    faults = Faults(data_loss=0.002, data_duplicate=0.002, data_reorder=0.002, data_corrupt=0.002)
    _, image, outcome = transfer(size, max_write, 64, faults, seed, True)
    assert outcome.committed, outcome
    # Retransmissions stay bounded: go-back-N resends at most a window per loss.
    assert outcome.payload_bytes_sent < 1.5 * len(image)


def test_no_faults_sends_every_byte_once() -> None:
    _, image, outcome = transfer(100_000, 244, 32, Faults(), 3, True)
    assert outcome.committed and outcome.sessions == 1
    assert outcome.payload_bytes_sent == len(image)
    assert outcome.frames_sent == -(-len(image) // 238)


def test_disconnect_resumes_from_the_written_offset() -> None:
    image = make_image(50_000, 5)
    board = ReferenceBoard(default_info(window_bytes=4096))
    outcome = run_update(image, board, max_write_bytes=244, disconnect_at=20_000, seed=5)
    assert outcome.committed and outcome.sessions == 2
    first, second = outcome.resumed_from
    assert first == 0 and 20_000 <= second < 50_000
    assert outcome.payload_bytes_sent < len(image) + 4096
    assert board.committed_image == image


def test_abort_discards_and_ends_with_cancelled() -> None:
    image = make_image(50_000, 6)
    board = ReferenceBoard(default_info(window_bytes=4096))
    outcome = run_update(image, board, max_write_bytes=244, abort_at=10_000, seed=6)
    assert (outcome.committed, outcome.error, outcome.sessions) == (False, ErrorCode.CANCELLED, 1)
    assert board.flash == b"" and board.resume_sha256 is None


def test_refusal_is_not_retried_when_the_image_can_never_fit() -> None:
    image = make_image(5000, 8)
    board = ReferenceBoard(default_info(next_partition_size=4096))
    outcome = run_update(image, board, seed=8)
    assert (outcome.committed, outcome.error, outcome.sessions) == (False, ErrorCode.TOO_LARGE, 1)


def test_a_stuck_board_ends_in_timeout_not_a_hang() -> None:
    """A board whose notifications all vanish: SYNC three times, then TIMEOUT, per session."""
    image = make_image(10_000, 9)
    board = ReferenceBoard(default_info(window_bytes=2048))
    outcome = run_update(image, board, faults=Faults(notify_loss=1.0), seed=9, max_sessions=2)
    assert (outcome.committed, outcome.error, outcome.sessions) == (False, ErrorCode.TIMEOUT, 2)


def test_run_update_raises_instead_of_looping_forever() -> None:
    image = make_image(100_000, 10)
    with pytest.raises(AssertionError, match="no progress"):
        run_update(image, ReferenceBoard(), max_steps=50)
