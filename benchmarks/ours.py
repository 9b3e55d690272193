"""Our protocol on the link model: the real ``protocol.BridgeConnection`` and ``protocol.BoardConnection``.

Nothing about our protocol is modelled here: every control write, every data frame (offset, payload, CRC-16) and
every ACK/NACK notification is the bytes the two connection objects produce, and their window and ACK policy
decide what goes when. The session only does what a GATT client and a board firmware do around them: write what
``send``/``next_data_frame`` return, feed what arrives, put ``DataReceived`` into the board's storage and report
``data_written`` once the flash worker has programmed it.

HELLO/INFO happen before t = 0 (connection set-up is outside the measured interval for every scheme); the
measured interval runs from BEGIN to FINISH_OK. The board answers BEGIN once its storage is ready (after the
erase when it erases up front) and FINISH at once (image verification is outside the interval for every scheme).
"""

from __future__ import annotations

import functools
import hashlib

from benchmarks.board import BoardParams, EraseMode
from benchmarks.link import AttOp, AttPdu, Link
from benchmarks.session import Session
from protocol import (
    DEFAULT_BRIDGE_FEATURES,
    Ack,
    Begin,
    BeginOk,
    BoardConnection,
    BridgeConnection,
    DataReceived,
    EraseStrategy,
    Error,
    Feature,
    Finish,
    FinishOk,
    Hello,
    Info,
    Nack,
)
from protocol.reference import default_info

__all__ = ["DEFAULT_WINDOW_BYTES", "OursSession"]

#: What ``protocol.reference.ReferenceBoard`` (and the simulated board) grant; the sweeps in the report test it.
DEFAULT_WINDOW_BYTES = default_info().window_bytes

_ERASE = {
    EraseMode.SEQUENTIAL_4K: EraseStrategy.SEQUENTIAL_4K,
    EraseMode.UPFRONT: EraseStrategy.UP_FRONT,
    EraseMode.BLOCK_AHEAD: EraseStrategy.BLOCK_AHEAD_64K,
}


class OursSession(Session):
    """Both roles of our protocol over the link model.

    Args:
        window_bytes: the board's receive window (INFO and BEGIN_OK); also its RAM buffer.
        frame_bytes: the write size the bridge uses (None: what the link allows, MTU - 3 capped at 512).
        ack_interval_bytes: the board's ACK interval (None: the protocol default, window / 4).
    """

    def __init__(
        self,
        link: Link,
        board: BoardParams,
        image: bytes,
        *,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
        frame_bytes: int | None = None,
        ack_interval_bytes: int | None = None,
    ) -> None:
        super().__init__(link, board, image, ram_bytes=window_bytes)
        self.scheme = "ours"
        self.window_bytes = window_bytes
        write_len = link.params.max_write_len if frame_bytes is None else frame_bytes
        if write_len > link.params.max_write_len:
            raise ValueError(f"frame of {write_len} B does not fit a {link.params.max_write_len}-B write")
        self.bridge = BridgeConnection(max_write_bytes=write_len)
        self.board = BoardConnection(
            max_notify_bytes=link.params.att_mtu - 3, features=Feature.RESUME, ack_interval_bytes=ack_interval_bytes
        )
        self.sha256 = hashlib.sha256(image).digest()
        self.frames_sent = 0
        self.nacks = 0
        self._handshake(board.erase_mode)

    def _handshake(self, mode: EraseMode) -> None:
        """HELLO -> INFO outside the measured interval (in memory, as a connection set-up would leave it)."""
        for w in self.bridge.send(Hello(features=DEFAULT_BRIDGE_FEATURES)):
            self.board.receive_control(w)
        event = self.board.next_event()
        assert isinstance(event, Hello), event
        info = Info(
            protocol_version=self.board.negotiated_version or 1,
            features=Feature.RESUME,
            chip_id=0,
            window_bytes=self.window_bytes,
            max_frame_bytes=512,
            erase_strategy=_ERASE[mode],
            next_partition_size=max(self.size, 1 << 20),
            elf_sha256=bytes(32),
            board_id=b"\x24\x0a\xc4\x00\x00\x01",
            project="bench",
            running_version="1.0.0",
            running_partition="ota_0",
            next_partition="ota_1",
        )
        for n in self.board.send(info):
            self.bridge.receive_control(n)
        assert isinstance(self.bridge.next_event(), Info)

    # ------------------------------------------------------------------ bridge (central app)

    def start(self) -> None:
        begin = Begin(size=self.size, sha256=self.sha256, version="2.0.0", project="bench")
        self._control_writes(self.bridge.send(begin))

    def _control_writes(self, datagrams: list[bytes]) -> None:
        for d in datagrams:
            self.link.write(AttPdu(AttOp.WRITE_REQ, "control", len(d), d))

    def _pump(self) -> None:
        bridge = self.bridge
        while (frame := bridge.next_data_frame(self.image)) is not None:
            self.link.write(AttPdu(AttOp.WRITE_CMD, "data", len(frame), frame))
            self.frames_sent += 1
        self.note_in_flight(bridge.send_offset - bridge.acked_offset)

    def on_notify(self, pdu: AttPdu) -> None:
        assert isinstance(pdu.meta, bytes)
        bridge = self.bridge
        bridge.receive_control(pdu.meta)
        while (event := bridge.next_event()) is not None:
            if isinstance(event, BeginOk | Ack | Nack):
                if isinstance(event, Nack):
                    self.nacks += 1
                if bridge.transfer_complete:
                    self._control_writes(bridge.send(Finish()))
                else:
                    self._pump()
            elif isinstance(event, FinishOk):
                self.finish()
            elif isinstance(event, Error):
                raise AssertionError(f"board error in the benchmark: {event}")

    # ------------------------------------------------------------------ board app

    def _notify_all(self, datagrams: list[bytes]) -> None:
        for d in datagrams:
            self.link.notify("control", len(d), d)

    def _written(self, end: int) -> None:
        self._notify_all(self.board.data_written(end))

    def accepts(self, pdu: AttPdu) -> bool:
        return pdu.char != "data" or self.storage.free_bytes >= pdu.value_len - 6

    def on_write(self, pdu: AttPdu) -> None:
        assert isinstance(pdu.meta, bytes)
        board = self.board
        if pdu.char == "control":
            board.receive_control(pdu.meta)
        else:
            board.receive_data(pdu.meta)
        self._notify_all(board.data_to_send())
        while (event := board.next_event()) is not None:
            if isinstance(event, DataReceived):
                end = event.end
                self.storage.write(len(event.data))
                self.storage.when_programmed(end, functools.partial(self._written, end))
            elif isinstance(event, Begin):
                self.storage.begin(
                    event.size,
                    lambda: self._notify_all(board.send(BeginOk(offset=0, window_bytes=self.window_bytes))),
                )
            elif isinstance(event, Finish):
                self._notify_all(board.send(FinishOk(sha256=self.sha256)))
