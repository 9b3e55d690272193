"""The two roles: ``BridgeConnection`` (GATT client) and ``BoardConnection`` (GATT server).

Theory of operation
-------------------
Neither class does I/O or keeps time. The caller feeds received datagrams in (``receive_control`` /
``receive_data``), takes events out (``next_event``) and writes whatever ``send`` & co. return. Both walk the
shared table in ``protocol.state``; this module adds the flow control and the timer policy.

Flow control (go-back-N with a byte window):

* The board grants ``window_bytes`` in BEGIN_OK. The bridge keeps ``send_offset - acked_offset <= window``.
* The board ACKs cumulatively *after* the data is written (``data_written``), every ``ack_interval_bytes``
  (default window / 4) and at the end of the image. Slow flash therefore slows the sender without any extra
  rule, and the board never buffers more than the window.
* The board accepts only the frame at its expected offset (``received_offset``). A gap, a CRC error, a bad
  length or a window overrun drops the frame and sends one NACK(expected); further bad frames are dropped
  silently until the expected frame arrives (or a SYNC), so one loss costs one NACK, not one per frame in flight.
* A NACK moves the bridge's ``send_offset`` back (or forward) to the board's expected offset. It is *not* a
  credit: the window still counts from the last ACK, because received is not written.
* If the bridge cannot send and hears nothing for ``timeout_s``, ``handle_timeout`` writes a SYNC; the board
  answers ACK(written) (repeating an ACK that may have been lost), then NACK(expected, REQUESTED), and clears
  its NACK suppression. ``MAX_SYNC_ATTEMPTS`` timeouts without the ACK offset
  advancing end the connection with ``RemoteProtocolError(code=TIMEOUT)``.

Errors: every problem the bridge finds in the board's messages is fatal (state ERROR; reconnect and resume).
The board is tolerant: a bad command is answered with ERROR(code) and both sides are back in READY; only a
control stream that went out of step (CRC, length) is fatal. In both roles the error surfaces from
``next_event()`` after the events received before it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Final

from protocol.constants import (
    ACK_TIMEOUT_S,
    COMMIT_TIMEOUT_S,
    DATA_FRAME_OVERHEAD_BYTES,
    HELLO_TIMEOUT_S,
    MAX_DATAGRAM_BYTES,
    MAX_SYNC_ATTEMPTS,
    MIN_DATAGRAM_BYTES,
    OFFER_TIMEOUT_S,
    PROTOCOL_VERSION,
    REBOOT_TIMEOUT_S,
    RECEIVE_IDLE_TIMEOUT_S,
    UPDATE_REQUEST_TIMEOUT_S,
    ErrorCode,
    Feature,
    MessageType,
    NackReason,
    begin_timeout_s,
    finish_timeout_s,
)
from protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocol.events import BoardEvent, BridgeEvent, DataRange, DataReceived
from protocol.framing import (
    ControlDecoder,
    DataFrameError,
    clamp_datagram_bytes,
    decode_data_frame,
    encode_data_frame,
    split_datagrams,
)
from protocol.messages import (
    Abort,
    Ack,
    Begin,
    BeginOk,
    BoardMessage,
    BridgeMessage,
    Error,
    Finish,
    FinishOk,
    Hello,
    Info,
    Message,
    Nack,
    Sync,
    UpdateRequest,
    decode_message,
    encode_message,
)
from protocol.state import SENDER, Role, State, next_state

__all__ = ["DEFAULT_BRIDGE_FEATURES", "BoardConnection", "BridgeConnection", "ImageSource"]

logger = logging.getLogger(__name__)

#: What this implementation's bridge understands.
DEFAULT_BRIDGE_FEATURES: Final = (
    Feature.RESUME | Feature.UPDATE_REQUEST | Feature.SIGNATURE | Feature.APP_ROLLBACK | Feature.ANTI_ROLLBACK
)

#: Where ``BridgeConnection.next_data_frame`` gets image bytes: the whole image, or ``read(offset, length)``.
ImageSource = bytes | bytearray | memoryview | Callable[[int, int], bytes]


def _check_datagram_bytes(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_DATAGRAM_BYTES:
        raise LocalProtocolError(f"{name}={value!r}: the ATT payload is at least {MIN_DATAGRAM_BYTES} bytes")
    return clamp_datagram_bytes(value)


class _Conversation:
    """What both roles share: the state, the control stream decoder and the event queue."""

    _role: Role

    def __init__(self, datagram_bytes: int) -> None:
        self._state = State.START
        self._datagram_bytes = datagram_bytes
        self._decoder = ControlDecoder()
        # Events, and errors to raise from next_event() in order.
        self._events: deque[object] = deque()
        self._fatal: RemoteProtocolError | None = None
        self._hello: Hello | None = None
        self._info: Info | None = None
        self._begin: Begin | None = None
        self._window_bytes = 0

    @property
    def state(self) -> State:
        """The conversation state (``State.ERROR`` after a fatal protocol error)."""
        return self._state

    @property
    def features(self) -> Feature:
        """Features both sides support (empty before INFO)."""
        if self._hello is None or self._info is None:
            return Feature.NONE
        return self._hello.features & self._info.features

    @property
    def begin(self) -> Begin | None:
        """The BEGIN of the current transfer (None outside one)."""
        return self._begin

    @property
    def image_size(self) -> int:
        """Size announced in BEGIN (0 when none)."""
        return 0 if self._begin is None else self._begin.size

    @property
    def window_bytes(self) -> int:
        """The window granted in BEGIN_OK (0 before)."""
        return self._window_bytes

    def _pop_event(self) -> object | None:
        if self._events:
            item = self._events.popleft()
            if isinstance(item, ProtocolError):
                raise item
            return item
        if self._fatal is not None:
            raise self._fatal
        return None

    def _advance(self, message_type: MessageType) -> None:
        target = next_state(self._state, message_type)
        assert target is not None, "callers check the table first"
        if target is not self._state:
            logger.debug("%s: %s --%s--> %s", self._role.value, self._state.value, message_type.name, target.value)
        self._state = target

    def _check_send(self, message: Message) -> None:
        if self._state is State.ERROR:
            raise LocalProtocolError("the connection failed earlier; disconnect", code=ErrorCode.BAD_STATE)
        if SENDER[message.TYPE] is not self._role:
            raise LocalProtocolError(
                f"the {self._role.value} does not send {message.TYPE.name}", code=ErrorCode.UNKNOWN_MESSAGE
            )
        if next_state(self._state, message.TYPE) is None:
            raise LocalProtocolError(
                f"{message.TYPE.name} is not allowed in state {self._state.value}", code=ErrorCode.BAD_STATE
            )

    def _end_transfer(self) -> None:
        """Forget the transfer once the conversation is back in READY/START (ABORT, ERROR, NO_UPDATE...)."""
        if self._state in (State.READY, State.START):
            self._begin = None
            self._window_bytes = 0

    def _encode(self, message: Message) -> list[bytes]:
        return split_datagrams(encode_message(message), self._datagram_bytes)

    def _decode_control(self, data: bytes | bytearray | memoryview) -> list[Message | _Undecodable]:
        """Decode whole messages; a broken stream is fatal and queued as an error."""
        messages: list[Message | _Undecodable] = []
        try:
            self._decoder.feed(data)
            while (item := self._decoder.next_message()) is not None:
                try:
                    messages.append(decode_message(*item))
                except RemoteProtocolError as exc:
                    messages.append(_Undecodable(item[0], exc))
        except RemoteProtocolError as exc:
            messages.append(_Undecodable(None, exc, fatal=True))
        return messages


class _Undecodable:
    """A message that failed to decode, kept at its position in the stream."""

    __slots__ = ("error", "fatal", "raw_type")

    def __init__(self, raw_type: int | None, error: RemoteProtocolError, *, fatal: bool = False) -> None:
        self.raw_type = raw_type
        self.error = error
        self.fatal = fatal


# ==============================================================================================================
# Bridge
# ==============================================================================================================


class BridgeConnection(_Conversation):
    """The bridge's side (GATT client): writes commands and data frames, receives the board's notifications.

    Args:
        max_write_bytes: the negotiated ATT payload for writes (bleak's ``max_write_without_response_size``);
            clamped to [20, 512]. Change it later with ``set_max_write_bytes``.
    """

    _role = Role.BRIDGE

    def __init__(self, *, max_write_bytes: int = MIN_DATAGRAM_BYTES) -> None:
        super().__init__(_check_datagram_bytes("max_write_bytes", max_write_bytes))
        self._acked_offset = 0
        self._send_offset = 0
        self._highest_sent = 0
        self._sync_attempts = 0
        self._after_abort = False

    # --- Properties ------------------------------------------------------------------------------------------

    @property
    def info(self) -> Info | None:
        """The board's INFO once received."""
        return self._info

    @property
    def max_write_bytes(self) -> int:
        """Datagram size used for control writes and data frames."""
        return self._datagram_bytes

    def set_max_write_bytes(self, max_write_bytes: int) -> None:
        """The ATT payload changed (MTU exchange finished late): use it from the next datagram on."""
        self._datagram_bytes = _check_datagram_bytes("max_write_bytes", max_write_bytes)

    @property
    def acked_offset(self) -> int:
        """Bytes the board has confirmed as written (cumulative ACK)."""
        return self._acked_offset

    @property
    def send_offset(self) -> int:
        """Offset of the next data frame to send."""
        return self._send_offset

    @property
    def frame_payload_bytes(self) -> int:
        """Image bytes per data frame: min(write size, board's max frame) - 6, and at most the window."""
        max_frame = MAX_DATAGRAM_BYTES if self._info is None else self._info.max_frame_bytes
        payload = min(self._datagram_bytes, max_frame) - DATA_FRAME_OVERHEAD_BYTES
        if self._window_bytes:
            payload = min(payload, self._window_bytes)
        return payload

    @property
    def transfer_complete(self) -> bool:
        """Every byte is acked: send FINISH now."""
        return self._state is State.TRANSFER and self._acked_offset == self.image_size

    @property
    def timeout_s(self) -> float | None:
        """How long to wait for the board in this state before calling ``handle_timeout`` (None: not waiting).

        Restart the timer after every datagram received from the board and every command written.
        """
        size = self.image_size
        return {
            State.HELLO: HELLO_TIMEOUT_S,
            State.OFFERED: OFFER_TIMEOUT_S,
            State.BEGIN: begin_timeout_s(size),
            State.TRANSFER: ACK_TIMEOUT_S,
            State.FINISH: finish_timeout_s(size),
            State.COMMIT: COMMIT_TIMEOUT_S,
            State.REBOOT: REBOOT_TIMEOUT_S,
        }.get(self._state)

    # --- Commands -------------------------------------------------------------------------------------------

    def send(self, message: BridgeMessage) -> list[bytes]:
        """Encode a command; returns the control-characteristic writes to perform (with response), in order.

        Raises:
            LocalProtocolError: the command is not allowed now (code BAD_STATE), FINISH before every byte is
                acked (INCOMPLETE), a board message (UNKNOWN_MESSAGE).
        """
        self._check_send(message)
        # BEGIN needs INFO and UPDATE_AVAILABLE/NO_UPDATE need the feature: the table only allows them in states
        # reached through INFO and through an UPDATE_REQUEST (which is refused without the feature).
        if isinstance(message, Finish) and not self.transfer_complete:
            raise LocalProtocolError(
                f"FINISH with {self._acked_offset} of {self.image_size} bytes acked", code=ErrorCode.INCOMPLETE
            )
        datagrams = self._encode(message)
        self._advance(message.TYPE)
        self._after_abort = isinstance(message, Abort)
        if isinstance(message, Hello):
            self._hello = message
            self._info = None
        elif isinstance(message, Begin):
            self._begin = message
            self._window_bytes = 0
        self._end_transfer()
        return datagrams

    # --- Data pump ------------------------------------------------------------------------------------------

    def next_data_range(self) -> DataRange | None:
        """The next data frame the window allows, and advance past it; None when the window is full or done.

        The caller must send exactly this range (``encode_data_frame(offset, image[offset:end])``).
        """
        if self._state is not State.TRANSFER:
            return None
        size = self.image_size
        if self._send_offset >= size:
            return None
        length = min(self.frame_payload_bytes, size - self._send_offset)
        if self._send_offset + length - self._acked_offset > self._window_bytes:
            return None
        data_range = DataRange(offset=self._send_offset, length=length)
        self._send_offset += length
        self._highest_sent = max(self._highest_sent, self._send_offset)
        return data_range

    def next_data_frame(self, image: ImageSource) -> bytes | None:
        """``next_data_range`` plus reading and encoding: the next data-characteristic write, or None."""
        data_range = self.next_data_range()
        if data_range is None:
            return None
        if callable(image):
            payload = image(data_range.offset, data_range.length)
        else:
            payload = bytes(image[data_range.offset : data_range.end])
        if len(payload) != data_range.length:
            raise LocalProtocolError(
                f"image source returned {len(payload)} bytes for [{data_range.offset}, {data_range.end})"
            )
        return encode_data_frame(data_range.offset, payload)

    # --- Receiving ------------------------------------------------------------------------------------------

    def receive_control(self, data: bytes | bytearray | memoryview) -> None:
        """Feed one notification from the control characteristic (any split of the stream is fine)."""
        if self._state is State.ERROR:
            return
        for message in self._decode_control(data):
            try:
                self._handle(message)
            except ProtocolError as exc:
                remote = (
                    exc if isinstance(exc, RemoteProtocolError) else RemoteProtocolError(exc.message, code=exc.code)
                )
                self._fail(remote)
                return

    def next_event(self) -> BridgeEvent | None:
        """The next event, or None when nothing is pending.

        Raises:
            RemoteProtocolError: the board broke the protocol (the connection is in state ERROR: disconnect).
        """
        return self._pop_event()  # type: ignore[return-value]

    def handle_timeout(self) -> list[bytes]:
        """``timeout_s`` passed without a notification. Returns control writes to perform (a SYNC), or raises.

        Raises:
            RemoteProtocolError: code TIMEOUT: the board stopped answering (state ERROR: reconnect, resume).
        """
        if self._state is State.TRANSFER and self._sync_attempts < MAX_SYNC_ATTEMPTS:
            self._sync_attempts += 1
            logger.debug("bridge: no ACK for %.1f s, SYNC #%d", ACK_TIMEOUT_S, self._sync_attempts)
            return self.send(Sync())
        if self.timeout_s is None:
            return []
        error = RemoteProtocolError(f"no answer from the board in state {self._state.value}", code=ErrorCode.TIMEOUT)
        self._fail(error)
        raise error

    def _fail(self, error: RemoteProtocolError) -> None:
        logger.debug("bridge: protocol error %r", error)
        self._state = State.ERROR
        self._fatal = error

    def _handle(self, message: Message | _Undecodable) -> None:
        if isinstance(message, _Undecodable):
            raise message.error
        if SENDER[message.TYPE] is not Role.BOARD:
            raise RemoteProtocolError(f"the board sent {message.TYPE.name}", code=ErrorCode.UNKNOWN_MESSAGE)
        crossed = (
            (isinstance(message, UpdateRequest) and self._state is not State.READY)
            or (isinstance(message, Ack | Nack) and self._state is not State.TRANSFER)
            or (self._after_abort and next_state(self._state, message.TYPE) is None)
        )
        if crossed:  # race rules 1-3 in protocol/state.py
            logger.debug("bridge: %s crossed a command (state %s); ignored", message.TYPE.name, self._state.value)
            return
        if next_state(self._state, message.TYPE) is None:
            raise RemoteProtocolError(
                f"{message.TYPE.name} is not allowed in state {self._state.value}", code=ErrorCode.BAD_STATE
            )
        emit: bool = True
        if isinstance(message, Info):
            hello = self._hello
            assert hello is not None
            if not hello.min_version <= message.protocol_version <= hello.max_version:
                raise RemoteProtocolError(
                    f"board chose protocol version {message.protocol_version}, "
                    f"bridge offered {hello.min_version}..{hello.max_version}",
                    code=ErrorCode.UNSUPPORTED_VERSION,
                )
            self._info = message
        elif isinstance(message, BeginOk):
            self._on_begin_ok(message)
        elif isinstance(message, Ack):
            emit = self._on_ack(message)
        elif isinstance(message, Nack):
            emit = self._on_nack(message)
        elif isinstance(message, FinishOk):
            assert self._begin is not None
            if message.sha256 != self._begin.sha256:
                raise RemoteProtocolError("FINISH_OK carries another SHA-256 than BEGIN", code=ErrorCode.HASH_MISMATCH)
        elif isinstance(message, UpdateRequest) and not self.features & Feature.UPDATE_REQUEST:
            raise RemoteProtocolError(
                "UPDATE_REQUEST without the UPDATE_REQUEST feature", code=ErrorCode.FEATURE_UNSUPPORTED
            )
        self._advance(message.TYPE)
        self._end_transfer()
        if emit:
            self._events.append(message)

    def _on_begin_ok(self, message: BeginOk) -> None:
        size = self.image_size
        if message.offset > size:
            raise RemoteProtocolError(
                f"BEGIN_OK offset {message.offset} > image size {size}", code=ErrorCode.BAD_MESSAGE
            )
        self._window_bytes = message.window_bytes
        self._acked_offset = self._send_offset = self._highest_sent = message.offset
        self._sync_attempts = 0

    def _on_ack(self, message: Ack) -> bool:
        offset = message.next_offset
        if offset > self._highest_sent:
            raise RemoteProtocolError(
                f"ACK {offset} beyond the highest byte sent ({self._highest_sent})", code=ErrorCode.BAD_MESSAGE
            )
        if offset <= self._acked_offset:
            return False
        self._sync_attempts = 0  # progress: only written bytes count, so a stuck board still times out
        self._acked_offset = offset
        self._send_offset = max(self._send_offset, offset)
        return True

    def _on_nack(self, message: Nack) -> bool:
        offset = message.next_offset
        if not self._acked_offset <= offset <= self._highest_sent:
            raise RemoteProtocolError(
                f"NACK {offset} outside [{self._acked_offset}, {self._highest_sent}]", code=ErrorCode.BAD_MESSAGE
            )
        self._send_offset = offset
        return True


# ==============================================================================================================
# Board
# ==============================================================================================================


class BoardConnection(_Conversation):
    """The board's side (GATT server): receives control and data writes, produces notifications.

    Everything this object wants to notify goes through one ordered outbox. ``send``, ``data_written`` and
    ``data_to_send`` each return *all* pending notifications (earlier automatic ones first), so the caller
    notifies exactly what it gets, in order. After ``receive_control``/``receive_data``, call
    ``data_to_send()``: the connection may have answered on its own (NACK, ERROR, answer to SYNC).

    Args:
        max_notify_bytes: the negotiated ATT payload for notifications (MTU - 3); clamped to [20, 512].
        features: what this board does; the INFO it sends must carry exactly these bits.
        min_version, max_version: protocol versions this board speaks.
        ack_interval_bytes: ACK after this many newly written bytes (default: window / 4).
    """

    _role = Role.BOARD

    def __init__(
        self,
        *,
        max_notify_bytes: int = MIN_DATAGRAM_BYTES,
        features: Feature = Feature.RESUME,
        min_version: int = PROTOCOL_VERSION,
        max_version: int = PROTOCOL_VERSION,
        ack_interval_bytes: int | None = None,
    ) -> None:
        super().__init__(_check_datagram_bytes("max_notify_bytes", max_notify_bytes))
        if not 1 <= min_version <= max_version <= 0xFF:
            raise LocalProtocolError(f"bad version range {min_version}..{max_version}")
        if ack_interval_bytes is not None and ack_interval_bytes < 1:
            raise LocalProtocolError(f"ack_interval_bytes={ack_interval_bytes} must be >= 1")
        self._features = features
        self._min_version = min_version
        self._max_version = max_version
        self._ack_interval_setting = ack_interval_bytes
        self._outbox: list[bytes] = []
        self._negotiated_version: int | None = None
        self._received_offset = 0
        self._written_offset = 0
        self._last_acked = 0
        self._nack_outstanding = False

    # --- Properties ------------------------------------------------------------------------------------------

    @property
    def hello(self) -> Hello | None:
        """The bridge's HELLO."""
        return self._hello

    @property
    def negotiated_version(self) -> int | None:
        """The protocol version INFO must carry (the highest both sides speak); None before HELLO."""
        return self._negotiated_version

    @property
    def max_notify_bytes(self) -> int:
        """Datagram size used for notifications."""
        return self._datagram_bytes

    def set_max_notify_bytes(self, max_notify_bytes: int) -> None:
        """The ATT MTU changed: cut notifications at the new size."""
        self._datagram_bytes = _check_datagram_bytes("max_notify_bytes", max_notify_bytes)

    @property
    def ack_interval_bytes(self) -> int:
        """ACK every this many written bytes."""
        if self._ack_interval_setting is not None:
            return self._ack_interval_setting
        return max(1, self._window_bytes // 4)

    @property
    def received_offset(self) -> int:
        """Next image offset expected on the data characteristic."""
        return self._received_offset

    @property
    def written_offset(self) -> int:
        """Bytes reported written by ``data_written`` (what ACKs carry)."""
        return self._written_offset

    @property
    def timeout_s(self) -> float | None:
        """How long the board waits for the bridge before ``handle_timeout`` (None: not waiting)."""
        return {
            State.UPDATE_REQUESTED: UPDATE_REQUEST_TIMEOUT_S,
            State.TRANSFER: RECEIVE_IDLE_TIMEOUT_S,
        }.get(self._state)

    # --- Sending ----------------------------------------------------------------------------------------------

    def send(self, message: BoardMessage) -> list[bytes]:
        """Encode a reply or request; returns every pending notification, this message last.

        Raises:
            LocalProtocolError: not allowed now (BAD_STATE), ACK/NACK (sent by the connection itself),
                INFO with another version than negotiated, BEGIN_OK offset beyond the image, FINISH_OK with
                another SHA-256 than BEGIN's, UPDATE_REQUEST without the feature.
        """
        if isinstance(message, Ack | Nack):
            raise LocalProtocolError("ACK and NACK are produced by data_written/receive_data", code=ErrorCode.BAD_STATE)
        self._check_send(message)
        if isinstance(message, Info):
            if message.features != self._features:
                raise LocalProtocolError(
                    f"INFO.features={message.features!r}, the connection was built with {self._features!r}"
                )
            if message.protocol_version != self._negotiated_version:
                raise LocalProtocolError(
                    f"INFO.protocol_version={message.protocol_version}, negotiated {self._negotiated_version}",
                    code=ErrorCode.UNSUPPORTED_VERSION,
                )
        elif isinstance(message, BeginOk):
            if message.offset > self.image_size:
                raise LocalProtocolError(f"BEGIN_OK offset {message.offset} > image size {self.image_size}")
        elif isinstance(message, FinishOk):
            assert self._begin is not None
            if message.sha256 != self._begin.sha256:
                raise LocalProtocolError("FINISH_OK must carry BEGIN's SHA-256", code=ErrorCode.HASH_MISMATCH)
        elif isinstance(message, UpdateRequest) and not self.features & Feature.UPDATE_REQUEST:
            raise LocalProtocolError(
                "UPDATE_REQUEST needs the feature on both sides", code=ErrorCode.FEATURE_UNSUPPORTED
            )
        self._queue(message)
        if isinstance(message, Info):
            self._info = message
        elif isinstance(message, BeginOk):
            self._window_bytes = message.window_bytes
            self._received_offset = self._written_offset = self._last_acked = message.offset
            self._nack_outstanding = False
        return self.data_to_send()

    def data_to_send(self) -> list[bytes]:
        """Every pending notification, in order (empty if none)."""
        out, self._outbox = self._outbox, []
        return out

    def data_written(self, end_offset: int) -> list[bytes]:
        """Report that every image byte before ``end_offset`` is in flash; returns pending notifications
        (an ACK when ``ack_interval_bytes`` more are written, or the image is complete).

        Calls outside TRANSFER are ignored (a flash write may finish after an ABORT).

        Raises:
            LocalProtocolError: ``end_offset`` goes backwards or beyond what was received.
        """
        if self._state is not State.TRANSFER:
            return self.data_to_send()
        if not self._written_offset <= end_offset <= self._received_offset:
            raise LocalProtocolError(
                f"data_written({end_offset}) outside [{self._written_offset}, {self._received_offset}]"
            )
        self._written_offset = end_offset
        if end_offset - self._last_acked >= self.ack_interval_bytes or (
            end_offset == self.image_size and end_offset != self._last_acked
        ):
            self._last_acked = end_offset
            self._queue(Ack(next_offset=end_offset))
        return self.data_to_send()

    def handle_timeout(self) -> list[bytes]:
        """``timeout_s`` passed without anything from the bridge; returns pending notifications.

        UPDATE_REQUESTED: the request is withdrawn (back to READY, nothing sent). TRANSFER: the transfer ends
        with ERROR(TIMEOUT); the board keeps its resume state.
        """
        if self._state is State.UPDATE_REQUESTED:
            self._state = State.READY
        elif self._state is State.TRANSFER:
            self._queue(Error(code=ErrorCode.TIMEOUT, detail="no data from the bridge"))
            self._end_transfer()
        return self.data_to_send()

    def _queue(self, message: Message) -> None:
        self._outbox.extend(self._encode(message))
        self._advance(message.TYPE)

    def _end_transfer(self) -> None:
        super()._end_transfer()
        self._nack_outstanding = False

    # --- Receiving ------------------------------------------------------------------------------------------

    def next_event(self) -> BoardEvent | None:
        """The next event, or None when nothing is pending.

        Raises:
            RemoteProtocolError: the bridge broke the protocol. ERROR(code) is already in the outbox. If the
                state is ``State.ERROR`` the control stream is lost (disconnect); otherwise the connection is
                back in READY (or START) and stays usable.
        """
        return self._pop_event()  # type: ignore[return-value]

    def receive_control(self, data: bytes | bytearray | memoryview) -> None:
        """Feed one write to the control characteristic."""
        if self._state is State.ERROR:
            return
        for message in self._decode_control(data):
            if isinstance(message, _Undecodable):
                self._reject(message.error, message.raw_type, fatal=message.fatal)
                if message.fatal:
                    return
                continue
            try:
                self._handle(message)
            except LocalProtocolError as exc:
                self._reject(exc._reraise_as_remote(), int(message.TYPE))

    def _reject(self, error: RemoteProtocolError, raw_type: int | None, *, fatal: bool = False) -> None:
        in_reply_to = None
        if raw_type is not None and raw_type in MessageType._value2member_map_:
            in_reply_to = MessageType(raw_type)
        logger.debug("board: rejecting %s: %r", None if in_reply_to is None else in_reply_to.name, error)
        detail = error.message.encode("utf-8")[:64].decode("utf-8", "ignore")
        reply = Error(code=error.code, in_reply_to=in_reply_to, detail=detail)
        self._outbox.extend(self._encode(reply))
        if fatal:
            self._state = State.ERROR
            self._fatal = error
            return
        self._state = State.START if self._state in (State.START, State.HELLO) else State.READY
        self._end_transfer()
        self._events.append(error)

    def _handle(self, message: Message) -> None:
        if SENDER[message.TYPE] is not Role.BRIDGE:
            raise LocalProtocolError(f"the bridge sent {message.TYPE.name}", code=ErrorCode.UNKNOWN_MESSAGE)
        if next_state(self._state, message.TYPE) is None:
            raise LocalProtocolError(
                f"{message.TYPE.name} is not allowed in state {self._state.value}", code=ErrorCode.BAD_STATE
            )
        if isinstance(message, Hello):
            self._on_hello(message)
            return
        if isinstance(message, Finish) and self._written_offset != self.image_size:
            raise LocalProtocolError(
                f"FINISH with {self._written_offset} of {self.image_size} bytes written", code=ErrorCode.INCOMPLETE
            )
        self._advance(message.TYPE)
        if isinstance(message, Begin):
            self._begin = message
            self._window_bytes = 0
        elif isinstance(message, Sync):
            # The bridge is stuck: repeat the credit it may have missed (a lost ACK), then say where to resume.
            self._last_acked = self._written_offset
            self._queue(Ack(next_offset=self._written_offset))
            self._nack_outstanding = False
            self._queue(Nack(next_offset=self._received_offset, reason=NackReason.REQUESTED))
            return
        self._end_transfer()
        self._events.append(message)

    def _on_hello(self, message: Hello) -> None:
        version = min(self._max_version, message.max_version)
        if version < max(self._min_version, message.min_version):
            self._advance(MessageType.HELLO)
            self._negotiated_version = None
            self._queue(
                Error(
                    code=ErrorCode.UNSUPPORTED_VERSION,
                    in_reply_to=MessageType.HELLO,
                    detail=f"board speaks {self._min_version}..{self._max_version}",
                )
            )
            return
        self._advance(MessageType.HELLO)
        self._hello = message
        self._info = None
        self._negotiated_version = version
        self._events.append(message)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed one write to the data characteristic.

        Accepted bytes become ``DataReceived`` events; anything else is dropped, with at most one NACK per gap
        (call ``data_to_send()`` afterwards). Frames outside TRANSFER are dropped silently.
        """
        if self._state is not State.TRANSFER:
            return
        assert self._info is not None
        try:
            frame = decode_data_frame(data, self._info.max_frame_bytes)
        except DataFrameError as exc:
            self._nack(exc.reason)
            return
        end = frame.offset + len(frame.payload)
        if end > self.image_size:
            self._reject(
                RemoteProtocolError(
                    f"data frame [{frame.offset}, {end}) beyond the image size {self.image_size}",
                    code=ErrorCode.BAD_FRAME,
                ),
                None,
            )
            return
        if end <= self._received_offset:
            return  # duplicate of something already received
        if frame.offset > self._received_offset:
            self._nack(NackReason.GAP)
            return
        if end - self._written_offset > self._window_bytes:
            self._nack(NackReason.WINDOW_OVERRUN)
            return
        # frame.offset <= received < end: accept the new part (the whole frame unless it overlaps).
        skip = self._received_offset - frame.offset
        self._received_offset = end
        self._nack_outstanding = False
        self._events.append(DataReceived(offset=frame.offset + skip, data=frame.payload[skip:]))

    def _nack(self, reason: NackReason) -> None:
        if self._nack_outstanding:
            return
        self._nack_outstanding = True
        self._queue(Nack(next_offset=self._received_offset, reason=reason))
