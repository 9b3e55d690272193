"""BridgeConnection: commands by state, window, ACK/NACK handling, timeouts, races, violations."""

from __future__ import annotations

import pytest
from proto_helpers import begin_for, chunks, connected_pair, events, pipe

from protocol import (
    ACK_TIMEOUT_S,
    DEFAULT_BRIDGE_FEATURES,
    MAX_SYNC_ATTEMPTS,
    Abort,
    Ack,
    Begin,
    BeginOk,
    BoardConnection,
    BridgeConnection,
    Commit,
    DataReceived,
    Error,
    ErrorCode,
    Feature,
    Finish,
    FinishOk,
    Hello,
    LocalProtocolError,
    MessageType,
    Nack,
    NackReason,
    NoUpdate,
    RemoteProtocolError,
    State,
    Sync,
    UpdateRequest,
    begin_timeout_s,
    decode_data_frame,
    encode_data_frame,
    encode_message,
)
from protocol.reference import default_info

IMAGE = bytes(range(256)) * 40  # 10240 bytes


def in_transfer(window: int = 4096, max_write: int = 244) -> tuple[BridgeConnection, BoardConnection]:
    bridge, board = connected_pair(window_bytes=window, max_write_bytes=max_write)
    pipe(bridge.send(begin_for(IMAGE)), board)
    assert isinstance(board.next_event(), Begin)
    pipe(board.send(BeginOk(offset=0, window_bytes=window)), bridge)
    assert bridge.next_event() == BeginOk(offset=0, window_bytes=window)
    return bridge, board


def notify(bridge: BridgeConnection, *messages: object) -> None:
    for message in messages:
        bridge.receive_control(encode_message(message))  # type: ignore[arg-type]


def test_commands_are_refused_in_the_wrong_state() -> None:
    bridge = BridgeConnection()
    for message in (begin_for(IMAGE), Finish(), Commit(), Sync(), Abort()):
        with pytest.raises(LocalProtocolError) as info:
            bridge.send(message)
        assert info.value.code is ErrorCode.BAD_STATE
    assert bridge.state is State.START
    with pytest.raises(LocalProtocolError) as unknown:
        bridge.send(Ack(next_offset=0))  # type: ignore[arg-type]
    assert unknown.value.code is ErrorCode.UNKNOWN_MESSAGE


def test_hello_info_and_features() -> None:
    bridge, _ = connected_pair(board_features=Feature.RESUME | Feature.SIGNATURE)
    assert bridge.state is State.READY
    assert bridge.info is not None and bridge.info.project == "demo"
    assert bridge.features == Feature.RESUME | Feature.SIGNATURE
    assert bridge.timeout_s is None


def test_info_outside_the_offered_versions_is_fatal() -> None:
    bridge = BridgeConnection()
    bridge.send(Hello(min_version=1, max_version=1))
    notify(bridge, default_info(protocol_version=2))
    with pytest.raises(RemoteProtocolError) as info:
        bridge.next_event()
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION
    assert bridge.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        bridge.next_event()
    with pytest.raises(LocalProtocolError):
        bridge.send(Hello())


def test_window_limits_the_bytes_in_flight() -> None:
    bridge, _ = in_transfer(window=1000, max_write=244)
    ranges = []
    while (r := bridge.next_data_range()) is not None:
        ranges.append((r.offset, r.length))
    assert ranges == [(0, 238), (238, 238), (476, 238), (714, 238)]
    assert bridge.send_offset == 952
    notify(bridge, Ack(next_offset=476))
    assert events(bridge) == [Ack(next_offset=476)]
    ranges = []
    while (r := bridge.next_data_range()) is not None:
        ranges.append((r.offset, r.length))
    assert ranges == [(952, 238), (1190, 238)]
    assert bridge.send_offset - bridge.acked_offset <= 1000


def test_frames_shrink_to_a_small_window_and_to_the_board_max_frame() -> None:
    bridge, _ = in_transfer(window=100, max_write=244)
    assert bridge.frame_payload_bytes == 100
    frame = bridge.next_data_frame(IMAGE)
    assert frame is not None and len(frame) == 106
    bridge2, board2 = connected_pair(max_write_bytes=512)
    assert bridge2.frame_payload_bytes == 506
    assert board2.max_notify_bytes == 512


def test_next_data_frame_reads_from_bytes_or_a_callable() -> None:
    bridge, _ = in_transfer()
    calls: list[tuple[int, int]] = []

    def read(offset: int, length: int) -> bytes:
        calls.append((offset, length))
        return IMAGE[offset : offset + length]

    frame = bridge.next_data_frame(read)
    assert frame is not None
    assert calls == [(0, 238)]
    decoded = decode_data_frame(frame)
    assert (decoded.offset, decoded.payload) == (0, IMAGE[:238])
    with pytest.raises(LocalProtocolError):
        bridge.next_data_frame(lambda offset, length: b"short")


def test_nack_rewinds_without_granting_credit() -> None:
    bridge, _ = in_transfer(window=1000)
    while bridge.next_data_range() is not None:
        pass
    notify(bridge, Nack(next_offset=238, reason=NackReason.GAP))
    assert events(bridge) == [Nack(next_offset=238, reason=NackReason.GAP)]
    assert (bridge.send_offset, bridge.acked_offset) == (238, 0)
    r = bridge.next_data_range()
    assert r is not None and (r.offset, r.length) == (238, 238)


def test_ack_beyond_what_was_sent_is_fatal() -> None:
    bridge, _ = in_transfer()
    assert bridge.next_data_range() is not None
    notify(bridge, Ack(next_offset=239))
    with pytest.raises(RemoteProtocolError) as info:
        bridge.next_event()
    assert info.value.code is ErrorCode.BAD_MESSAGE
    assert bridge.state is State.ERROR


def test_nack_outside_acked_and_sent_is_fatal() -> None:
    bridge, _ = in_transfer()
    bridge.next_data_range()
    notify(bridge, Nack(next_offset=500, reason=NackReason.GAP))
    with pytest.raises(RemoteProtocolError):
        bridge.next_event()


def test_stale_ack_is_ignored_and_an_ack_above_send_offset_moves_it() -> None:
    bridge, _ = in_transfer(window=4096)
    for _ in range(4):
        bridge.next_data_range()
    notify(bridge, Nack(next_offset=238, reason=NackReason.GAP))
    notify(bridge, Ack(next_offset=714))  # late frames were accepted after all
    notify(bridge, Ack(next_offset=476))  # stale
    assert events(bridge) == [Nack(next_offset=238, reason=NackReason.GAP), Ack(next_offset=714)]
    assert (bridge.acked_offset, bridge.send_offset) == (714, 714)


def test_finish_only_after_every_byte_is_acked() -> None:
    bridge, _ = in_transfer(window=len(IMAGE))
    with pytest.raises(LocalProtocolError) as info:
        bridge.send(Finish())
    assert info.value.code is ErrorCode.INCOMPLETE
    while bridge.next_data_range() is not None:
        pass
    notify(bridge, Ack(next_offset=len(IMAGE)))
    assert bridge.transfer_complete
    bridge.send(Finish())
    assert bridge.state is State.FINISH


def test_finish_ok_with_another_hash_is_fatal() -> None:
    bridge, _ = in_transfer(window=len(IMAGE))
    while bridge.next_data_range() is not None:
        pass
    notify(bridge, Ack(next_offset=len(IMAGE)))
    events(bridge)
    bridge.send(Finish())
    notify(bridge, FinishOk(sha256=bytes(32)))
    with pytest.raises(RemoteProtocolError) as info:
        bridge.next_event()
    assert info.value.code is ErrorCode.HASH_MISMATCH


def test_begin_ok_beyond_the_image_is_fatal() -> None:
    bridge, _ = connected_pair()
    bridge.send(begin_for(IMAGE))
    notify(bridge, BeginOk(offset=len(IMAGE) + 1, window_bytes=10))
    with pytest.raises(RemoteProtocolError):
        bridge.next_event()


def test_resume_at_the_end_means_finish_at_once() -> None:
    bridge, _ = connected_pair()
    bridge.send(begin_for(IMAGE))
    notify(bridge, BeginOk(offset=len(IMAGE), window_bytes=4096))
    events(bridge)
    assert bridge.transfer_complete
    assert bridge.next_data_range() is None


def test_timeouts_per_state() -> None:
    bridge = BridgeConnection()
    assert bridge.timeout_s is None
    assert bridge.handle_timeout() == []
    bridge.send(Hello())
    assert bridge.timeout_s == 5.0
    with pytest.raises(RemoteProtocolError) as info:
        bridge.handle_timeout()
    assert info.value.code is ErrorCode.TIMEOUT
    assert bridge.state is State.ERROR

    bridge, _ = connected_pair()
    big = Begin(size=8 << 20, sha256=bytes(32))
    bridge.send(big)
    assert bridge.timeout_s == begin_timeout_s(8 << 20) == 60.0


def test_transfer_timeout_sends_sync_then_gives_up() -> None:
    bridge, _ = in_transfer()
    assert bridge.timeout_s == ACK_TIMEOUT_S
    for _ in range(MAX_SYNC_ATTEMPTS):
        writes = bridge.handle_timeout()
        assert writes == [encode_message(Sync())]
    with pytest.raises(RemoteProtocolError) as info:
        bridge.handle_timeout()
    assert info.value.code is ErrorCode.TIMEOUT


def test_only_ack_progress_resets_the_sync_count() -> None:
    bridge, board = in_transfer(window=1000)
    frames = []
    while (frame := bridge.next_data_frame(IMAGE)) is not None:
        frames.append(frame)
    # A board that answers SYNC but never writes anything: the bridge gives up after MAX_SYNC_ATTEMPTS.
    for _ in range(MAX_SYNC_ATTEMPTS):
        pipe(bridge.handle_timeout(), board)
        pipe(board.data_to_send(), bridge)
        assert events(bridge) == [Nack(next_offset=0, reason=NackReason.REQUESTED)]  # ACK(0) is no news
    # A board that writes a little between timeouts keeps the transfer alive.
    bridge2, board2 = in_transfer(window=1000)
    offset = 0
    for _ in range(3 * MAX_SYNC_ATTEMPTS):
        data_range = bridge2.next_data_range()
        assert data_range is not None
        board2.receive_data(encode_data_frame(data_range.offset, IMAGE[data_range.offset : data_range.end]))
        (chunk,) = chunks(board2)
        board2.data_written(chunk.end)
        pipe(bridge2.handle_timeout(), board2)
        pipe(board2.data_to_send(), bridge2)
        offset = chunk.end
        assert bridge2.acked_offset == offset
    assert bridge2.state is State.TRANSFER
    with pytest.raises(RemoteProtocolError) as info:
        bridge.handle_timeout()
    assert info.value.code is ErrorCode.TIMEOUT


def test_race_ack_after_abort_and_reply_crossing_abort_are_ignored() -> None:
    bridge, _ = in_transfer()
    bridge.next_data_range()
    bridge.send(Abort())
    assert bridge.state is State.READY and bridge.begin is None
    notify(bridge, Ack(next_offset=238), Nack(next_offset=0, reason=NackReason.GAP))
    assert events(bridge) == []
    # BEGIN then ABORT; BEGIN_OK crosses the ABORT.
    bridge.send(begin_for(IMAGE))
    bridge.send(Abort())
    notify(bridge, BeginOk(offset=0, window_bytes=4096))
    assert events(bridge) == []
    assert bridge.state is State.READY
    # After the next command, a stray BEGIN_OK is a violation again.
    bridge.send(Hello())
    notify(bridge, BeginOk(offset=0, window_bytes=4096))
    with pytest.raises(RemoteProtocolError) as info:
        bridge.next_event()
    assert info.value.code is ErrorCode.BAD_STATE


def test_update_request_crossing_a_command_is_ignored() -> None:
    bridge, _ = connected_pair(board_features=Feature.RESUME | Feature.UPDATE_REQUEST)
    bridge.send(begin_for(IMAGE))
    notify(bridge, UpdateRequest())
    assert events(bridge) == []
    assert bridge.state is State.BEGIN


def test_update_request_needs_the_feature() -> None:
    bridge, _ = connected_pair(board_features=Feature.RESUME)
    notify(bridge, UpdateRequest())
    with pytest.raises(RemoteProtocolError) as info:
        bridge.next_event()
    assert info.value.code is ErrorCode.FEATURE_UNSUPPORTED
    bridge2, _ = connected_pair(board_features=Feature.RESUME)
    with pytest.raises(LocalProtocolError):
        bridge2.send(NoUpdate())


def test_board_messages_only_and_errors_after_earlier_events() -> None:
    bridge, _ = connected_pair()
    bridge.send(begin_for(IMAGE))
    bridge.receive_control(
        encode_message(BeginOk(offset=0, window_bytes=4096)) + encode_message(Hello())  # Hello: a bridge message
    )
    assert bridge.next_event() == BeginOk(offset=0, window_bytes=4096)
    with pytest.raises(RemoteProtocolError) as info:
        bridge.next_event()
    assert info.value.code is ErrorCode.UNKNOWN_MESSAGE
    bridge.receive_control(b"ignored after the error")


def test_error_returns_to_ready_and_is_an_event() -> None:
    bridge, _ = connected_pair()
    bridge.send(begin_for(IMAGE))
    error = Error(code=ErrorCode.LOW_BATTERY, in_reply_to=MessageType.BEGIN, retry_after_s=30)
    notify(bridge, error)
    assert events(bridge) == [error]
    assert bridge.state is State.READY
    assert bridge.begin is None and bridge.image_size == 0


def test_control_writes_are_split_at_the_write_size() -> None:
    bridge = BridgeConnection(max_write_bytes=20)
    bridge.send(Hello(features=DEFAULT_BRIDGE_FEATURES))
    notify(bridge, default_info())
    events(bridge)
    begin = Begin(size=10, sha256=bytes(32), version="1.2.3", project="demo", signature=bytes(100))
    writes = bridge.send(begin)
    assert [len(w) for w in writes[:-1]] == [20] * (len(writes) - 1)
    assert b"".join(writes) == encode_message(begin)
    bridge.set_max_write_bytes(517)
    assert bridge.max_write_bytes == 512
    with pytest.raises(LocalProtocolError):
        bridge.set_max_write_bytes(10)


def test_a_complete_transfer_with_the_board() -> None:
    bridge, board = in_transfer(window=2048, max_write=185)
    flash = bytearray()
    while not bridge.transfer_complete:
        while (frame := bridge.next_data_frame(IMAGE)) is not None:
            board.receive_data(frame)
            for event in events(board):
                assert isinstance(event, DataReceived) and event.offset == len(flash)
                flash += event.data
                pipe(board.data_written(event.end), bridge)
        events(bridge)
    assert flash == IMAGE


def test_lost_final_ack_is_recovered_by_one_sync() -> None:
    bridge, board = in_transfer(window=len(IMAGE))
    while (frame := bridge.next_data_frame(IMAGE)) is not None:
        board.receive_data(frame)
    lost: list[bytes] = []
    for event in chunks(board):
        lost += board.data_written(event.end)
    assert lost[-1] == encode_message(Ack(next_offset=len(IMAGE)))  # every ACK, the final one too, is lost
    assert not bridge.transfer_complete
    pipe(bridge.handle_timeout(), board)
    pipe(board.data_to_send(), bridge)
    assert events(bridge) == [
        Ack(next_offset=len(IMAGE)),
        Nack(next_offset=len(IMAGE), reason=NackReason.REQUESTED),
    ]
    assert bridge.transfer_complete
    bridge.send(Finish())


def test_properties_before_info_and_after_begin_ok() -> None:
    bridge = BridgeConnection()
    assert (bridge.features, bridge.window_bytes, bridge.image_size, bridge.info) == (Feature.NONE, 0, 0, None)
    assert bridge.frame_payload_bytes == 14
    bridge, _ = in_transfer(window=3000)
    assert (bridge.window_bytes, bridge.image_size, bridge.begin) == (3000, len(IMAGE), begin_for(IMAGE))
