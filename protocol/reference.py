"""An in-memory board application and a lossy link: the protocol end to end without any radio.

``ReferenceBoard`` is what firmware does around ``BoardConnection``: it answers HELLO with INFO, accepts or
refuses BEGIN, resumes a transfer of the same SHA-256 from what it has written, writes accepted data to
"flash" (optionally later, to model slow flash), verifies the SHA-256 at FINISH and commits. It is the Python
counterpart of the board side a C developer writes from SPEC.md.

``Link`` carries datagrams between a ``BridgeConnection`` and a ``ReferenceBoard`` with seeded faults (loss,
duplication, reordering, corruption), and ``run_update`` plays the bridge's part the way a sync engine does:
HELLO, BEGIN, pump data within the window, FINISH, COMMIT, reconnect and resume on failure. Used by the tests,
by the test-vector generator (``protocol/_vectors.py``) and usable by benchmarks.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from protocol.connection import DEFAULT_BRIDGE_FEATURES, BoardConnection, BridgeConnection
from protocol.constants import (
    ERROR_RECOVERY,
    BeginFlags,
    EraseStrategy,
    ErrorCode,
    Feature,
    Recovery,
    RollbackState,
    UpdateResult,
)
from protocol.errors import RemoteProtocolError
from protocol.events import DataReceived
from protocol.framing import encode_data_frame
from protocol.messages import (
    Abort,
    Ack,
    Begin,
    BeginOk,
    Commit,
    CommitOk,
    Error,
    Finish,
    FinishOk,
    Hello,
    Info,
    Nack,
    Reboot,
    RebootOk,
    UpdateAccept,
    UpdateAvailable,
)
from protocol.state import State

__all__ = ["Faults", "Link", "ReferenceBoard", "Trace", "TraceEntry", "UpdateOutcome", "default_info", "run_update"]

logger = logging.getLogger(__name__)


def default_info(**overrides: object) -> Info:
    """An INFO for an ESP32-S3 running ``demo`` 1.0.0 from ota_0 (fields overridable)."""
    info = Info(
        protocol_version=1,
        features=Feature.RESUME | Feature.UPDATE_REQUEST | Feature.APP_ROLLBACK,
        chip_id=0x0009,
        chip_revision=2,
        window_bytes=32768,
        max_frame_bytes=512,
        erase_strategy=EraseStrategy.BLOCK_AHEAD_64K,
        secure_version=0,
        rollback_state=RollbackState.VALID,
        last_update_result=UpdateResult.NONE,
        next_partition_size=0x400000,
        elf_sha256=bytes(range(32)),
        board_id=bytes.fromhex("24ec4a0102ab"),
        project="demo",
        running_version="1.0.0",
        running_partition="ota_0",
        next_partition="ota_1",
    )
    return replace(info, **overrides)  # type: ignore[arg-type]


class ReferenceBoard:
    """A board application around ``BoardConnection``, with flash and resume state that survive reconnects.

    Args:
        info: the INFO to announce (``protocol_version`` is filled in from the negotiation).
        refuse_begin: answer BEGIN with this error code instead of accepting.
        delay_writes: keep accepted data in a RAM queue until ``complete_write`` is called (slow flash), so ACKs
            follow consumption; otherwise write at once.
        accept_offer: answer UPDATE_AVAILABLE with UPDATE_ACCEPT (else ERROR DECLINED).
    """

    def __init__(
        self,
        info: Info | None = None,
        *,
        refuse_begin: ErrorCode | None = None,
        delay_writes: bool = False,
        accept_offer: bool = True,
    ) -> None:
        self.info = info if info is not None else default_info()
        self.refuse_begin = refuse_begin
        self.delay_writes = delay_writes
        self.accept_offer = accept_offer
        #: Image bytes written so far for ``resume_sha256`` (the "OTA partition").
        self.flash = bytearray()
        self.resume_sha256: bytes | None = None
        self.verified = False
        self.committed_sha256: bytes | None = None
        #: The bytes that were in flash when COMMIT made them the boot image.
        self.committed_image: bytes | None = None
        self.reboots = 0
        self.pending_writes: deque[DataReceived] = deque()
        self.conn = BoardConnection(features=self.info.features)
        #: Every event the board application saw, for assertions.
        self.events: list[object] = []

    def connect(self, max_notify_bytes: int) -> BoardConnection:
        """A new BLE connection: fresh protocol state, same flash. Unwritten RAM data is lost."""
        self.pending_writes.clear()
        self.conn = BoardConnection(max_notify_bytes=max_notify_bytes, features=self.info.features)
        return self.conn

    @property
    def written_offset(self) -> int:
        """Image bytes safely in flash."""
        return len(self.flash)

    def process(self) -> list[bytes]:
        """Handle every pending event; returns the notifications to send, in order."""
        out = self.conn.data_to_send()
        while True:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as exc:
                logger.debug("reference board: bridge violated the protocol: %r", exc)
                self.events.append(exc)
                out += self.conn.data_to_send()
                if self.conn.state is State.ERROR:
                    return out
                continue
            if event is None:
                return out + self.conn.data_to_send()
            self.events.append(event)
            out += self._on_event(event)

    def complete_write(self) -> list[bytes]:
        """Write the oldest queued chunk to flash (slow-flash mode); returns notifications (maybe an ACK)."""
        chunk = self.pending_writes.popleft()
        return self._write(chunk)

    def _write(self, chunk: DataReceived) -> list[bytes]:
        assert chunk.offset == len(self.flash), (chunk.offset, len(self.flash))
        self.flash += chunk.data
        return self.conn.data_written(chunk.end)

    def _on_event(self, event: object) -> list[bytes]:
        conn = self.conn
        if isinstance(event, Hello):
            assert conn.negotiated_version is not None
            return conn.send(replace(self.info, protocol_version=conn.negotiated_version))
        if isinstance(event, Begin):
            return self._on_begin(event)
        if isinstance(event, DataReceived):
            if self.delay_writes:
                self.pending_writes.append(event)
                return []
            return self._write(event)
        if isinstance(event, Finish):
            digest = hashlib.sha256(self.flash).digest()
            assert conn.begin is not None
            if digest != conn.begin.sha256:
                self._discard()
                return conn.send(Error(code=ErrorCode.HASH_MISMATCH, in_reply_to=Finish.TYPE))
            self.verified = True
            return conn.send(FinishOk(sha256=digest))
        if isinstance(event, Commit):
            self.committed_sha256 = self.resume_sha256
            self.committed_image = bytes(self.flash)
            self._discard()
            return conn.send(CommitOk())
        if isinstance(event, Reboot):
            self.reboots += 1
            return conn.send(RebootOk(delay_ms=100))
        if isinstance(event, Abort):
            self._discard()
            return []
        if isinstance(event, UpdateAvailable):
            if self.accept_offer:
                return conn.send(UpdateAccept())
            return conn.send(Error(code=ErrorCode.DECLINED, in_reply_to=UpdateAvailable.TYPE, retry_after_s=3600))
        return []  # NoUpdate

    def _on_begin(self, begin: Begin) -> list[bytes]:
        conn = self.conn
        self.pending_writes.clear()
        if self.refuse_begin is not None:
            return conn.send(Error(code=self.refuse_begin, in_reply_to=Begin.TYPE, retry_after_s=30))
        if begin.size > self.info.next_partition_size:
            return conn.send(Error(code=ErrorCode.TOO_LARGE, in_reply_to=Begin.TYPE))
        resumable = (
            conn.features & Feature.RESUME
            and begin.sha256 == self.resume_sha256
            and not begin.flags & BeginFlags.RESTART
            and len(self.flash) <= begin.size
        )
        if not resumable:
            self.flash = bytearray()
            self.resume_sha256 = begin.sha256
        self.verified = False
        return conn.send(BeginOk(offset=len(self.flash), window_bytes=self.info.window_bytes))

    def _discard(self) -> None:
        self.flash = bytearray()
        self.resume_sha256 = None
        self.pending_writes.clear()


# --- The link -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Faults:
    """Per-datagram fault probabilities. Data faults hit data writes; notify faults hit board notifications.

    Control writes (write with response) are never faulted: ATT confirms them, a failure is a disconnect.
    """

    data_loss: float = 0.0
    data_duplicate: float = 0.0
    data_reorder: float = 0.0
    data_corrupt: float = 0.0
    notify_loss: float = 0.0
    notify_corrupt: float = 0.0
    #: Data frames at these offsets are lost the first time they are sent (deterministic gaps).
    drop_data_offsets: frozenset[int] = frozenset()

    @property
    def any(self) -> bool:
        """True if any probability is non-zero."""
        return any(getattr(self, name) for name in self.__slots__)


Channel = Literal["control", "data"]


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One datagram as it was delivered (after faults)."""

    sender: Literal["bridge", "board"]
    channel: Channel
    data: bytes
    #: The link lost it (recorded where it was sent; the receiver never saw it).
    dropped: bool = False


@dataclass
class Trace:
    """Every datagram delivered, per session."""

    sessions: list[list[TraceEntry]] = field(default_factory=list)


class Link:
    """Two in-order queues (bridge -> board, board -> bridge) with seeded faults."""

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self.faults = faults
        self.rng = rng
        # Lost datagrams stay in the queue, flagged, so a trace shows them where they would have arrived.
        self.to_board: deque[tuple[Channel, bytes, bool]] = deque()
        self.to_bridge: deque[tuple[bytes, bool]] = deque()
        self._dropped_offsets: set[int] = set()

    def _corrupt(self, data: bytes) -> bytes:
        buf = bytearray(data)
        index = self.rng.randrange(len(buf))
        buf[index] ^= 1 << self.rng.randrange(8)
        return bytes(buf)

    def write_control(self, datagrams: list[bytes]) -> None:
        """Bridge control writes: reliable, in order."""
        self.to_board.extend(("control", d, False) for d in datagrams)

    def write_data(self, frame: bytes) -> None:
        """A bridge data write (write without response): subject to data faults."""
        f, rng = self.faults, self.rng
        offset = int.from_bytes(frame[:4], "little")
        if offset in f.drop_data_offsets and offset not in self._dropped_offsets:
            self._dropped_offsets.add(offset)
            self.to_board.append(("data", frame, True))
            return
        if f.data_loss and rng.random() < f.data_loss:
            self.to_board.append(("data", frame, True))
            return
        if f.data_corrupt and rng.random() < f.data_corrupt:
            frame = self._corrupt(frame)
        self.to_board.append(("data", frame, False))
        if f.data_duplicate and rng.random() < f.data_duplicate:
            self.to_board.append(("data", frame, False))
        # Swap with the previous datagram if that is data too (control order is kept by ATT).
        if (
            f.data_reorder
            and len(self.to_board) >= 2
            and self.to_board[-2][0] == "data"
            and rng.random() < f.data_reorder
        ):
            self.to_board[-1], self.to_board[-2] = self.to_board[-2], self.to_board[-1]

    def notify(self, datagrams: list[bytes]) -> None:
        """Board notifications: subject to notify faults."""
        f, rng = self.faults, self.rng
        for datagram in datagrams:
            if f.notify_loss and rng.random() < f.notify_loss:
                self.to_bridge.append((datagram, True))
                continue
            if f.notify_corrupt and rng.random() < f.notify_corrupt:
                datagram = self._corrupt(datagram)
            self.to_bridge.append((datagram, False))


# --- The bridge's part ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpdateOutcome:
    """How ``run_update`` ended."""

    #: True when FINISH_OK and COMMIT_OK were received.
    committed: bool
    #: The code that ended the last session unsuccessfully (None on success).
    error: ErrorCode | None
    sessions: int
    steps: int
    #: Data frames written (including retransmissions) and image bytes they carried.
    frames_sent: int
    payload_bytes_sent: int
    resumed_from: tuple[int, ...]


def run_update(
    image: bytes,
    board: ReferenceBoard,
    *,
    max_write_bytes: int = 244,
    faults: Faults = Faults(),
    seed: int = 0,
    max_sessions: int = 4,
    max_steps: int | None = None,
    reboot: bool = False,
    abort_at: int | None = None,
    disconnect_at: int | None = None,
    trace: Trace | None = None,
    on_data: Callable[[int], None] | None = None,
) -> UpdateOutcome:
    """Push ``image`` into ``board`` like a sync engine would, over a faulty ``Link``.

    Each session is one BLE connection: HELLO, BEGIN (resuming when the board has part of the image), data
    within the window, FINISH, COMMIT (and REBOOT if asked). A session that ends in a recoverable error
    (``Recovery.RECONNECT_AND_RESUME`` or ``RESTART``) is followed by a new one, up to ``max_sessions``.

    The loop is bounded: ``max_steps`` deliveries in all (default: proportional to the frame count), so a
    protocol bug shows up as ``AssertionError("no progress ...")``, never as a hang.

    ``abort_at``: send ABORT once this many bytes are acked (the outcome's error is then CANCELLED).
    ``disconnect_at``: drop the first connection once this many bytes are acked (the next session resumes).
    """
    rng = random.Random(seed)
    link = Link(faults, rng)
    frames_sent = payload_sent = 0
    resumed_from: list[int] = []
    total_steps = 0
    if max_steps is None:
        max_steps = 40 * (len(image) // max(1, min(max_write_bytes, 512) - 6) + 1) * max_sessions + 4000
    sha256 = hashlib.sha256(image).digest()
    restart = False
    error: ErrorCode | None = None
    session = 0
    for session in range(1, max_sessions + 1):
        link.to_board.clear()
        link.to_bridge.clear()
        entries: list[TraceEntry] = []
        if trace is not None:
            trace.sessions.append(entries)
        bridge = BridgeConnection(max_write_bytes=max_write_bytes)
        board.connect(max_write_bytes)
        done = False
        error = None
        aborted = False

        def write_control(datagrams: list[bytes]) -> None:
            link.write_control(datagrams)

        def deliver_to_board(log: list[TraceEntry]) -> None:
            channel, datagram, lost = link.to_board.popleft()
            log.append(TraceEntry("bridge", channel, datagram, dropped=lost))
            if lost:
                return
            if channel == "control":
                board.conn.receive_control(datagram)
            else:
                board.conn.receive_data(datagram)
            link.notify(board.process())

        write_control(bridge.send(Hello(features=DEFAULT_BRIDGE_FEATURES)))
        while not done and error is None:
            total_steps += 1
            if total_steps > max_steps:
                raise AssertionError(f"no progress after {max_steps} steps (session {session}, state {bridge.state})")
            progressed = False
            # 1. The bridge sends data frames while the window allows (a burst at most the window).
            while (data_range := bridge.next_data_range()) is not None:
                link.write_data(encode_data_frame(data_range.offset, image[data_range.offset : data_range.end]))
                frames_sent += 1
                payload_sent += data_range.length
                progressed = True
            # 2. Deliver one datagram, or finish one slow flash write.
            choices: list[str] = []
            if link.to_board:
                choices.append("board")
            if link.to_bridge:
                choices.append("bridge")
            if board.pending_writes:
                choices.append("flash")
            if choices:
                progressed = True
                pick = rng.choice(choices)
                if pick == "board":
                    deliver_to_board(entries)
                elif pick == "flash":
                    link.notify(board.complete_write())
                    link.notify(board.process())
                else:
                    datagram, lost = link.to_bridge.popleft()
                    entries.append(TraceEntry("board", "control", datagram, dropped=lost))
                    if not lost:
                        bridge.receive_control(datagram)
            # 3. React to the board's messages.
            try:
                while (event := bridge.next_event()) is not None:
                    if isinstance(event, Info):
                        flags = BeginFlags.RESTART if restart else BeginFlags.NONE
                        write_control(bridge.send(Begin(size=len(image), sha256=sha256, flags=flags, version="2.0.0")))
                    elif isinstance(event, BeginOk):
                        resumed_from.append(event.offset)
                    elif isinstance(event, Ack):
                        if on_data is not None:
                            on_data(event.next_offset)
                        if disconnect_at is not None and session == 1 and event.next_offset >= disconnect_at:
                            error = ErrorCode.TIMEOUT  # what a sync engine sees when the link drops
                            break
                        if abort_at is not None and not aborted and event.next_offset >= abort_at:
                            aborted = True
                            write_control(bridge.send(Abort(reason=ErrorCode.CANCELLED)))
                            error = ErrorCode.CANCELLED
                    elif isinstance(event, FinishOk):
                        write_control(bridge.send(Commit()))
                    elif isinstance(event, CommitOk):
                        if reboot:
                            write_control(bridge.send(Reboot()))
                        else:
                            done = True
                    elif isinstance(event, RebootOk):
                        done = True
                    elif isinstance(event, Error):
                        error = event.code
                    elif isinstance(event, Nack):
                        pass
                if bridge.transfer_complete and error is None:
                    write_control(bridge.send(Finish()))
            except RemoteProtocolError as exc:
                error = exc.code
            # 4. Nothing moved: the bridge's timer expires.
            if not progressed and not done and error is None:
                try:
                    write_control(bridge.handle_timeout())
                except RemoteProtocolError as exc:
                    error = exc.code
            if aborted and error is ErrorCode.CANCELLED:
                # Deliver the ABORT so the board sees it, then stop.
                while link.to_board:
                    deliver_to_board(entries)
                break
        if done:
            return UpdateOutcome(
                committed=True,
                error=None,
                sessions=session,
                steps=total_steps,
                frames_sent=frames_sent,
                payload_bytes_sent=payload_sent,
                resumed_from=tuple(resumed_from),
            )
        assert error is not None
        recovery = ERROR_RECOVERY[error][0]
        if recovery not in (Recovery.RECONNECT_AND_RESUME, Recovery.RESTART) or aborted:
            break
        restart = recovery is Recovery.RESTART
    return UpdateOutcome(
        committed=False,
        error=error,
        sessions=session,
        steps=total_steps,
        frames_sent=frames_sent,
        payload_bytes_sent=payload_sent,
        resumed_from=tuple(resumed_from),
    )
