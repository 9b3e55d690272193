"""BoardConnection: negotiation, data acceptance rules, ACK policy, tolerant error handling."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from proto_helpers import begin_for, chunks, connected_pair, decode_stream, events, pipe

from protocol import (
    Abort,
    Ack,
    Begin,
    BeginFlags,
    BeginOk,
    BoardConnection,
    BridgeConnection,
    Commit,
    CommitOk,
    DataReceived,
    Error,
    ErrorCode,
    Feature,
    Finish,
    FinishOk,
    Hello,
    Info,
    LocalProtocolError,
    MessageType,
    Nack,
    NackReason,
    NoUpdate,
    Reboot,
    RebootOk,
    RemoteProtocolError,
    State,
    Sync,
    UpdateAccept,
    UpdateAvailable,
    UpdateRequest,
    encode_data_frame,
    encode_message,
)
from protocol.reference import default_info

IMAGE = bytes((i * 13) & 0xFF for i in range(5000))


def replies(board: BoardConnection, datagrams: list[bytes] | None = None) -> list[object]:
    messages, left = decode_stream(board.data_to_send() if datagrams is None else datagrams)
    assert left == 0
    return list(messages)


def receiving(window: int = 1000, ack_interval: int | None = None) -> BoardConnection:
    _, board = connected_pair(window_bytes=window, ack_interval_bytes=ack_interval)
    board.receive_control(encode_message(begin_for(IMAGE)))
    assert isinstance(board.next_event(), Begin)
    assert replies(board, board.send(BeginOk(offset=0, window_bytes=window))) == [
        BeginOk(offset=0, window_bytes=window)
    ]
    return board


def frame(offset: int, length: int = 100) -> bytes:
    return encode_data_frame(offset, IMAGE[offset : offset + length])


def test_version_negotiation() -> None:
    board = BoardConnection(min_version=1, max_version=3)
    board.receive_control(encode_message(Hello(min_version=2, max_version=5)))
    assert isinstance(board.next_event(), Hello)
    assert board.negotiated_version == 3
    with pytest.raises(LocalProtocolError) as info:
        board.send(default_info(protocol_version=1, features=Feature.RESUME))
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION
    board.send(default_info(protocol_version=3, features=Feature.RESUME))
    assert board.state is State.READY


def test_no_common_version_answers_error_and_stays_in_start() -> None:
    board = BoardConnection(min_version=2, max_version=2)
    board.receive_control(encode_message(Hello(min_version=1, max_version=1)))
    assert board.next_event() is None
    (reply,) = replies(board)
    assert isinstance(reply, Error) and reply.code is ErrorCode.UNSUPPORTED_VERSION
    assert reply.in_reply_to is MessageType.HELLO
    assert board.state is State.START
    assert board.negotiated_version is None


def test_info_must_carry_the_constructor_features() -> None:
    board = BoardConnection(features=Feature.RESUME)
    board.receive_control(encode_message(Hello()))
    board.next_event()
    with pytest.raises(LocalProtocolError):
        board.send(default_info(features=Feature.RESUME | Feature.UPDATE_REQUEST))


def test_in_order_frames_become_data_events() -> None:
    board = receiving()
    board.receive_data(frame(0))
    board.receive_data(frame(100))
    assert events(board) == [
        DataReceived(offset=0, data=IMAGE[:100]),
        DataReceived(offset=100, data=IMAGE[100:200]),
    ]
    assert board.received_offset == 200
    assert board.data_to_send() == []


def test_gap_gives_one_nack_until_the_expected_frame_arrives() -> None:
    board = receiving()
    board.receive_data(frame(0))
    board.receive_data(frame(200))
    board.receive_data(frame(300))
    board.receive_data(b"\x00" * 3)
    assert replies(board) == [Nack(next_offset=100, reason=NackReason.GAP)]
    board.receive_data(frame(100))
    board.receive_data(frame(300))
    assert replies(board) == [Nack(next_offset=200, reason=NackReason.GAP)]
    assert [e.offset for e in events(board) if isinstance(e, DataReceived)] == [0, 100]


def test_bad_crc_and_bad_length_nack() -> None:
    board = receiving()
    bad = bytearray(frame(0))
    bad[10] ^= 1
    board.receive_data(bytes(bad))
    assert replies(board) == [Nack(next_offset=0, reason=NackReason.BAD_CRC)]
    board.receive_control(encode_message(Sync()))  # clears the suppression
    assert replies(board) == [Ack(next_offset=0), Nack(next_offset=0, reason=NackReason.REQUESTED)]
    board.receive_data(b"\x00\x00\x00\x00\x01")
    assert replies(board) == [Nack(next_offset=0, reason=NackReason.BAD_LENGTH)]


def test_frame_longer_than_max_frame_bytes() -> None:
    board = BoardConnection(features=Feature.RESUME)
    board.receive_control(encode_message(Hello()))
    board.next_event()
    board.send(default_info(features=Feature.RESUME, max_frame_bytes=100))
    board.receive_control(encode_message(begin_for(IMAGE)))
    board.next_event()
    board.send(BeginOk(offset=0, window_bytes=4096))
    board.receive_data(encode_data_frame(0, IMAGE[:94]))
    board.receive_data(encode_data_frame(94, IMAGE[94:189]))  # 101 bytes
    assert replies(board) == [Nack(next_offset=94, reason=NackReason.BAD_LENGTH)]
    assert events(board) == [DataReceived(offset=0, data=IMAGE[:94])]


def test_duplicates_are_silent_and_overlaps_deliver_only_new_bytes() -> None:
    board = receiving()
    board.receive_data(frame(0))
    board.receive_data(frame(0))
    board.receive_data(frame(50))  # [50, 150): only [100, 150) is new
    assert events(board) == [DataReceived(offset=0, data=IMAGE[:100]), DataReceived(offset=100, data=IMAGE[100:150])]
    assert board.data_to_send() == []


def test_window_overrun_is_nacked() -> None:
    board = receiving(window=250)
    board.receive_data(frame(0))
    board.receive_data(frame(100))
    board.receive_data(frame(200))  # end 300 - written 0 > 250
    assert replies(board) == [Nack(next_offset=200, reason=NackReason.WINDOW_OVERRUN)]
    assert len(events(board)) == 2


def test_frame_beyond_the_image_is_bad_frame_and_ends_the_transfer() -> None:
    board = receiving(window=10000)
    board.receive_data(encode_data_frame(4950, bytes(100)))
    (reply,) = replies(board)
    assert isinstance(reply, Error) and reply.code is ErrorCode.BAD_FRAME and reply.in_reply_to is None
    with pytest.raises(RemoteProtocolError) as info:
        board.next_event()
    assert info.value.code is ErrorCode.BAD_FRAME
    assert board.state is State.READY


def test_data_outside_transfer_is_dropped_silently() -> None:
    _, board = connected_pair()
    board.receive_data(frame(0))
    assert board.next_event() is None and board.data_to_send() == []


def test_ack_policy_every_quarter_window_and_at_the_end() -> None:
    board = receiving(window=1000)
    acks: list[object] = []
    offset = 0
    while offset < len(IMAGE):
        board.receive_data(frame(offset))
        for event in events(board):
            assert isinstance(event, DataReceived)
            acks += replies(board, board.data_written(event.end))
        offset += 100
    assert board.ack_interval_bytes == 250
    assert acks[0] == Ack(next_offset=300)
    assert acks[-1] == Ack(next_offset=5000)
    offsets = [a.next_offset for a in acks]  # type: ignore[attr-defined]
    # Every ACK but the final one comes after at least a quarter window of new writes.
    assert all(b - a >= 250 for a, b in itertools.pairwise(offsets[:-1]))
    assert len(offsets) == len(set(offsets))


def test_ack_interval_override_and_data_written_checks() -> None:
    board = receiving(window=1000, ack_interval=100)
    board.receive_data(frame(0))
    events(board)
    with pytest.raises(LocalProtocolError):
        board.data_written(101)
    assert replies(board, board.data_written(100)) == [Ack(next_offset=100)]
    with pytest.raises(LocalProtocolError):
        board.data_written(50)
    with pytest.raises(LocalProtocolError):
        board.send(Ack(next_offset=100))


def test_finish_before_everything_is_written_is_refused() -> None:
    board = receiving()
    board.receive_control(encode_message(Finish()))
    (reply,) = replies(board)
    assert isinstance(reply, Error) and reply.code is ErrorCode.INCOMPLETE and reply.in_reply_to is MessageType.FINISH
    with pytest.raises(RemoteProtocolError):
        board.next_event()
    assert board.state is State.READY


def test_finish_commit_reboot() -> None:
    board = receiving(window=5000)
    offset = 0
    while offset < len(IMAGE):
        board.receive_data(frame(offset, 500))
        offset += 500
    for event in chunks(board):
        board.data_written(event.end)
    board.data_to_send()
    board.receive_control(encode_message(Finish()))
    assert events(board) == [Finish()]
    with pytest.raises(LocalProtocolError):
        board.send(FinishOk(sha256=bytes(32)))
    board.send(FinishOk(sha256=hashlib.sha256(IMAGE).digest()))
    board.receive_control(encode_message(Commit()))
    assert events(board) == [Commit()]
    board.send(CommitOk())
    board.receive_control(encode_message(Reboot()))
    assert events(board) == [Reboot()]
    assert replies(board, board.send(RebootOk(delay_ms=200))) == [RebootOk(delay_ms=200)]
    assert board.state is State.CLOSED


def test_abort_is_an_event_and_late_flash_writes_are_ignored() -> None:
    board = receiving()
    board.receive_data(frame(0))
    board.receive_control(encode_message(Abort()))
    assert events(board) == [DataReceived(offset=0, data=IMAGE[:100]), Abort()]
    assert board.state is State.READY
    assert board.data_written(100) == []
    with pytest.raises(LocalProtocolError) as info:
        board.send(BeginOk(offset=0, window_bytes=10))
    assert info.value.code is ErrorCode.BAD_STATE


def test_begin_in_transfer_restarts_the_handshake() -> None:
    board = receiving()
    board.receive_control(
        encode_message(Begin(size=5000, sha256=hashlib.sha256(IMAGE).digest(), flags=BeginFlags.RESTART))
    )
    (event,) = events(board)
    assert isinstance(event, Begin) and event.flags is BeginFlags.RESTART
    assert board.state is State.BEGIN
    board.receive_data(frame(0))
    assert board.next_event() is None


def test_bad_state_and_unknown_messages_are_answered_and_recoverable() -> None:
    _, board = connected_pair()
    board.receive_control(encode_message(Finish()))
    board.receive_control(encode_message(Ack(next_offset=1)))
    board.receive_control(bytes([0x42, 0, 0]) + (0xFFFF & 0x2A33).to_bytes(2, "little"))
    codes = [(r.code, r.in_reply_to) for r in replies(board)]  # type: ignore[attr-defined]
    assert codes[:2] == [(ErrorCode.BAD_STATE, MessageType.FINISH), (ErrorCode.UNKNOWN_MESSAGE, MessageType.ACK)]
    for _ in range(2):
        with pytest.raises(RemoteProtocolError):
            board.next_event()
    assert board.state in (State.READY, State.ERROR)


def test_broken_control_stream_is_fatal() -> None:
    _, board = connected_pair()
    raw = bytearray(encode_message(Sync()))
    raw[-1] ^= 0xFF
    board.receive_control(bytes(raw))
    (reply,) = replies(board)
    assert isinstance(reply, Error) and reply.code is ErrorCode.BAD_MESSAGE
    for _ in range(2):
        with pytest.raises(RemoteProtocolError):
            board.next_event()
    assert board.state is State.ERROR
    board.receive_control(encode_message(Hello()))
    assert board.data_to_send() == []


def test_update_request_flow_and_timeouts() -> None:
    bridge, board = connected_pair(board_features=Feature.RESUME | Feature.UPDATE_REQUEST)
    pipe(board.send(UpdateRequest()), bridge)
    assert events(bridge) == [UpdateRequest()]
    assert board.timeout_s == 60.0
    pipe(bridge.send(UpdateAvailable(size=100, version="2.0")), board)
    assert events(board) == [UpdateAvailable(size=100, version="2.0")]
    pipe(board.send(UpdateAccept()), bridge)
    assert events(bridge) == [UpdateAccept()]
    assert bridge.state is State.READY and board.state is State.READY
    # Declined with ERROR, and a withdrawn request.
    pipe(board.send(UpdateRequest()), bridge)
    assert board.handle_timeout() == []
    assert board.state is State.READY
    pipe(bridge.send(NoUpdate()), board)
    (reply,) = replies(board)
    assert isinstance(reply, Error) and reply.code is ErrorCode.BAD_STATE
    pipe([encode_message(reply)], bridge)
    assert bridge.state is State.READY


def test_update_request_needs_the_feature_on_both_sides() -> None:
    _, board = connected_pair(board_features=Feature.RESUME)
    with pytest.raises(LocalProtocolError) as info:
        board.send(UpdateRequest())
    assert info.value.code is ErrorCode.FEATURE_UNSUPPORTED


def test_board_idle_timeout_in_transfer() -> None:
    board = receiving()
    assert board.timeout_s == 60.0
    (reply,) = replies(board, board.handle_timeout())
    assert isinstance(reply, Error) and reply.code is ErrorCode.TIMEOUT
    assert board.state is State.READY
    assert board.handle_timeout() == []


def test_notifications_are_split_at_the_notify_size() -> None:
    board = BoardConnection(max_notify_bytes=20, features=Feature.RESUME)
    board.receive_control(encode_message(Hello()))
    board.next_event()
    info = default_info(features=Feature.RESUME)
    out = board.send(info)
    assert len(out) > 1 and all(len(d) <= 20 for d in out)
    bridge = BridgeConnection()
    bridge.send(Hello())
    pipe(out, bridge)
    assert bridge.next_event() == info
    board.set_max_notify_bytes(600)
    assert board.max_notify_bytes == 512


def test_bad_constructor_arguments() -> None:
    with pytest.raises(LocalProtocolError):
        BoardConnection(min_version=2, max_version=1)
    with pytest.raises(LocalProtocolError):
        BoardConnection(ack_interval_bytes=0)
    with pytest.raises(LocalProtocolError):
        BoardConnection(max_notify_bytes=19)


def test_info_is_remembered_and_typed() -> None:
    _, board = connected_pair()
    assert isinstance(board.hello, Hello)
    assert board.features & Feature.RESUME
    assert isinstance(default_info(), Info)


def test_sync_repeats_a_missed_ack_before_the_nack() -> None:
    board = receiving(window=1000, ack_interval=10_000)  # never reaches the interval by itself
    board.receive_data(frame(0))
    board.receive_data(frame(100))
    for event in chunks(board):
        assert board.data_written(event.end) == []
    board.receive_control(encode_message(Sync()))
    assert replies(board) == [Ack(next_offset=200), Nack(next_offset=200, reason=NackReason.REQUESTED)]
    board.receive_control(encode_message(Sync()))  # the answer may have been lost too: same answer again
    assert replies(board) == [Ack(next_offset=200), Nack(next_offset=200, reason=NackReason.REQUESTED)]


def test_properties_before_and_during_a_transfer() -> None:
    board = BoardConnection()
    assert (board.features, board.window_bytes, board.image_size, board.begin) == (Feature.NONE, 0, 0, None)
    board = receiving(window=1000)
    assert (board.window_bytes, board.image_size, board.written_offset) == (1000, len(IMAGE), 0)
    assert board.begin is not None and board.begin.size == len(IMAGE)


def test_begin_ok_beyond_the_image_is_a_local_error() -> None:
    _, board = connected_pair()
    board.receive_control(encode_message(begin_for(IMAGE)))
    board.next_event()
    with pytest.raises(LocalProtocolError):
        board.send(BeginOk(offset=len(IMAGE) + 1, window_bytes=100))
    assert board.state is State.BEGIN
