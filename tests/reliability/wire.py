"""Faults on the wire, exhaustively and fast: the protocol's in-memory harness (``protocol.reference``).

``run_update`` plays the bridge's part over a seeded lossy :class:`protocol.reference.Link` against a
:class:`protocol.reference.ReferenceBoard` (no radio, no clock), so hundreds of trials of a 1.5 MB image take
seconds. It covers what the Bumble simulation cannot inject: reordered frames, lost and corrupted notifications,
and mixtures of every fault at once. The board here has no boot partitions: "new image running" means it
committed exactly the image's SHA-256 after verifying it; a trial that ends in an error must leave nothing
committed (the old image keeps running).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from protocol import Ack, ErrorCode, FinishOk, Info, MessageType, encode_message
from protocol.constants import ERROR_RECOVERY
from protocol.reference import Faults, ReferenceBoard, default_info, run_update

from .matrix import Outcome, Stopwatch, TrialResult

__all__ = ["WireTrial", "run_wire_trial", "wire_trials"]

_ACK_BYTES = len(encode_message(Ack(next_offset=0)))
_FINISH_OK_BYTES = len(encode_message(FinishOk(sha256=bytes(32))))


class _LyingBoard(ReferenceBoard):
    """A board whose notifications are rewritten by ``lie`` (ACKs beyond the data, a false FINISH_OK)."""

    def __init__(self, lie: Callable[[bytes], bytes], info: Info | None = None, **kwargs: Any) -> None:
        super().__init__(info, **kwargs)
        self._lie = lie

    def process(self) -> list[bytes]:
        return [self._lie(datagram) for datagram in super().process()]


def _ack_beyond(extra: int) -> Callable[[bytes], bytes]:
    def lie(datagram: bytes) -> bytes:
        if datagram[:1] == bytes([MessageType.ACK]) and len(datagram) == _ACK_BYTES:
            offset = int.from_bytes(datagram[3:7], "little")
            return encode_message(Ack(next_offset=offset + extra))
        return datagram

    return lie


def _false_finish_ok(datagram: bytes) -> bytes:
    if datagram[:1] == bytes([MessageType.FINISH_OK]) and len(datagram) == _FINISH_OK_BYTES:
        return encode_message(FinishOk(sha256=bytes(32)))
    return datagram


@dataclass(frozen=True)
class WireTrial:
    fault_class: str
    name: str
    faults: Faults = field(default_factory=Faults)
    run: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``run_update`` (max_write_bytes, disconnect_at, abort_at, seed, max_sessions)."""
    board: Callable[[], ReferenceBoard] = ReferenceBoard
    expect: frozenset[Outcome] = frozenset({Outcome.NEW})
    errors: frozenset[ErrorCode] = frozenset()
    """For an expected abort: the error codes it may end with."""
    max_bytes: int | None = None
    """Send only this many bytes of the image (the reference board checks the SHA-256, not the format)."""


def run_wire_trial(trial: WireTrial, image: bytes) -> TrialResult:
    board = trial.board()
    if trial.max_bytes is not None:
        image = image[: trial.max_bytes]
    sha256 = hashlib.sha256(image).digest()
    kwargs: dict[str, Any] = {"max_sessions": 8, "max_write_bytes": 244, **trial.run}
    detail = ""
    error: ErrorCode | None = None
    with Stopwatch() as watch:
        try:
            result = run_update(image, board, faults=trial.faults, **kwargs)
        except AssertionError as exc:  # run_update's bound on steps: the protocol stopped making progress
            outcome, detail = Outcome.HANG, str(exc)
        except Exception as exc:
            outcome, detail = Outcome.TRACEBACK, repr(exc)
        else:
            error = result.error
            detail = (
                f"{result.sessions} sessions, {result.frames_sent:,} frames, "
                f"{result.payload_bytes_sent - len(image):,} bytes resent"
            )
            if result.resumed_from[1:]:
                detail += f", resumed from {', '.join(f'{o:,}' for o in result.resumed_from[1:])}"
            if result.committed and board.committed_sha256 == sha256:
                outcome = Outcome.NEW
            elif result.committed or board.committed_sha256 is not None:
                outcome, detail = Outcome.WRONG, f"committed {board.committed_sha256!r}; {detail}"
            elif error is not None and (not trial.errors or error in trial.errors):
                outcome = Outcome.ABORT
            else:
                outcome, detail = Outcome.WRONG, f"ended with {error!r}; {detail}"
    hint = ERROR_RECOVERY[error][1] if error is not None else ""
    return TrialResult(
        fault_class=trial.fault_class,
        name=trial.name,
        outcome=outcome,
        expected=trial.expect,
        message=error.name if error is not None else "",
        hint=hint,
        board="new" if outcome is Outcome.NEW else "old" if board.committed_sha256 is None else "other",
        detail=detail,
        duration_s=watch.elapsed_s,
    )


def wire_trials(size: int, *, full: bool) -> list[WireTrial]:
    """The wire-level catalogue for an image of ``size`` bytes (``full`` False: the bounded CI selection)."""
    trials: list[WireTrial] = []
    seeds = range(1, 6) if full else range(1, 2)
    rates = (0.01, 0.05)
    kinds = {
        "frames lost": "data_loss",
        "frames duplicated": "data_duplicate",
        "frames reordered": "data_reorder",
        "frames corrupted": "data_corrupt",
        "notifications lost": "notify_loss",
        "notifications corrupted": "notify_corrupt",
    }
    # A corrupted notification breaks the control stream: the bridge reconnects and resumes (SPEC: BAD_MESSAGE).
    # The engine allows 5 reconnects *without progress*; 256 sessions in all stands for that rule here.
    patient = {"max_sessions": 256}
    for label, knob in kinds.items():
        for rate in rates:
            knob_rate: dict[str, Any] = {knob: rate}
            for seed in seeds:
                trials.append(
                    WireTrial(
                        f"wire: {label}",
                        f"{rate:.0%}, seed {seed}",
                        Faults(**knob_rate),
                        run={"seed": seed, **patient},
                    )
                )
    for rate in rates:
        for seed in seeds:
            every = Faults(
                data_loss=rate,
                data_duplicate=rate,
                data_reorder=rate,
                data_corrupt=rate,
                notify_loss=rate,
                notify_corrupt=rate,
            )
            name = f"{rate:.0%} each, seed {seed}"
            trials.append(WireTrial("wire: every fault at once", name, every, run={"seed": seed, **patient}))
    count = 200 if full else 16
    offsets = sorted({int(size * (i + 0.5) / count) for i in range(count)} | {1, size - 1})
    trials += [
        WireTrial("wire: link drops and resumes", f"at byte {offset:,}", run={"disconnect_at": offset})
        for offset in offsets
    ]
    if full:  # 15 s: a million 20-byte frames with go-back-N over a 16 KB window
        trials.append(
            WireTrial(
                "wire: link limits",
                "ATT MTU 23 with 1 % loss, reordering and lost notifications (first 256 KB)",
                Faults(data_loss=0.01, data_reorder=0.01, notify_loss=0.01),
                run={"max_write_bytes": 20, "seed": 3, **patient},
                max_bytes=256 * 1024,
            )
        )
    trials += [
        WireTrial(
            "wire: link limits",
            "ATT MTU 23 (20-byte writes)",
            run={"max_write_bytes": 20},
        ),
        WireTrial(
            "wire: link limits",
            "bridge may write 512, board takes frames of 100",
            run={"max_write_bytes": 512},
            board=lambda: ReferenceBoard(default_info(max_frame_bytes=100)),
        ),
        WireTrial(
            "wire: link limits",
            "slow flash (ACKs follow the writes) with 5 % loss",
            Faults(data_loss=0.05),
            run={"seed": 4},
            board=lambda: ReferenceBoard(delay_writes=True),
        ),
        WireTrial(
            "wire: lying or refusing board",
            "ACKs 4 KB beyond the data",
            board=lambda: _LyingBoard(_ack_beyond(4096)),
            # A lie inside the data already sent cannot be seen; the board still verifies the whole image at FINISH.
            expect=frozenset({Outcome.NEW, Outcome.ABORT}),
            errors=frozenset({ErrorCode.BAD_FRAME, ErrorCode.BAD_STATE, ErrorCode.BAD_MESSAGE}),
        ),
        WireTrial(
            "wire: lying or refusing board",
            "FINISH_OK with another SHA-256",
            board=lambda: _LyingBoard(_false_finish_ok),
            expect=frozenset({Outcome.ABORT}),
            errors=frozenset({ErrorCode.HASH_MISMATCH}),
        ),
        WireTrial(
            "wire: lying or refusing board",
            "board refuses BEGIN: low battery",
            board=lambda: ReferenceBoard(refuse_begin=ErrorCode.LOW_BATTERY),
            expect=frozenset({Outcome.ABORT}),
            errors=frozenset({ErrorCode.LOW_BATTERY}),
        ),
        WireTrial(
            "wire: lying or refusing board",
            "image larger than the board's partition",
            board=lambda: ReferenceBoard(default_info(next_partition_size=size // 2 // 4096 * 4096)),
            expect=frozenset({Outcome.ABORT}),
            errors=frozenset({ErrorCode.TOO_LARGE}),
        ),
        WireTrial(
            "wire: lying or refusing board",
            "bridge cancels at half the image",
            run={"abort_at": size // 2},
            expect=frozenset({Outcome.ABORT}),
            errors=frozenset({ErrorCode.CANCELLED}),
        ),
    ]
    return trials


def oversized_frame_trial(image: bytes) -> TrialResult:
    """A buggy bridge writes a data frame larger than the board's max frame: the board must refuse it, not write it."""
    from protocol import Begin, BoardConnection, Hello, encode_data_frame

    info = default_info(max_frame_bytes=100)
    board = BoardConnection(max_notify_bytes=244, features=info.features)
    board.receive_control(encode_message(Hello()))
    assert board.next_event() is not None
    board.send(replace(info, protocol_version=board.negotiated_version or 1))
    sha = hashlib.sha256(image).digest()
    board.receive_control(encode_message(Begin(size=len(image), sha256=sha)))
    begin = board.next_event()
    from protocol import BeginOk

    board.send(BeginOk(offset=0, window_bytes=16384))
    board.data_to_send()
    board.receive_data(encode_data_frame(0, image[:400]))  # 406 bytes on a board that takes 100
    events = []
    while (event := board.next_event()) is not None:
        events.append(event)
    replies = board.data_to_send()
    nacked = any(d[:1] == bytes([MessageType.NACK]) for d in replies)
    outcome = Outcome.ABORT if nacked and not events and begin is not None else Outcome.WRONG
    return TrialResult(
        "wire: link limits",
        "a data write larger than the board accepts",
        outcome,
        expected=frozenset({Outcome.ABORT}),
        message="NACK" if nacked else "",
        detail=f"{len(events)} data events, replies {[d[:1].hex() for d in replies]}",
        board="old",
    )
