"""Control stream and data frame encoding: CRC, stream reassembly, data frame checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from proto_helpers import decode_stream, split_three_ways

from protocol import (
    Ack,
    ControlDecoder,
    DataFrameError,
    ErrorCode,
    LocalProtocolError,
    NackReason,
    ProtocolError,
    RemoteProtocolError,
    crc16,
    decode_data_frame,
    encode_control,
    encode_data_frame,
    encode_message,
    split_datagrams,
)
from protocol.framing import clamp_datagram_bytes


def test_crc16_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    assert crc16(b"6789", crc16(b"12345")) == 0x29B1


def test_control_message_layout() -> None:
    raw = encode_control(0x83, b"\x00\x10\x00\x00")
    assert raw[:3] == bytes([0x83, 0x04, 0x00])
    assert raw[3:7] == b"\x00\x10\x00\x00"
    assert int.from_bytes(raw[7:], "little") == crc16(raw[:7])
    assert raw == encode_message(Ack(next_offset=4096))


@pytest.mark.parametrize("size", [20, 23, 64, 185, 244, 512])
def test_split_datagrams_respects_the_size_and_keeps_bytes(size: int) -> None:
    message = encode_control(0x02, bytes(range(256)) * 3)
    parts = split_datagrams(message, size)
    assert all(len(p) <= size for p in parts)
    assert b"".join(parts) == message
    assert len(parts) == -(-len(message) // size)


def test_split_below_att_minimum_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        split_datagrams(b"abc", 19)


def test_clamp_datagram_bytes() -> None:
    assert clamp_datagram_bytes(514) == 512
    assert clamp_datagram_bytes(244) == 244
    assert clamp_datagram_bytes(5) == 20


def test_decoder_whole_bytewise_and_trailing() -> None:
    raw = encode_message(Ack(next_offset=123456))
    for how, chunks in split_three_ways(raw):
        messages, left = decode_stream(chunks)
        assert messages == [Ack(next_offset=123456)], how
        assert left == (6 if how == "trailing" else 0), how


def test_decoder_handles_two_messages_in_one_datagram_and_one_across_many() -> None:
    a, b = encode_message(Ack(next_offset=1)), encode_message(Ack(next_offset=2))
    messages, left = decode_stream([a + b[:2], b[2:5], b[5:]])
    assert messages == [Ack(next_offset=1), Ack(next_offset=2)]
    assert left == 0


def test_decoder_bad_crc_is_fatal_and_sticky() -> None:
    raw = bytearray(encode_message(Ack(next_offset=1)))
    raw[-2] ^= 0xFF
    decoder = ControlDecoder()
    decoder.feed(bytes(raw))
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message()
    assert info.value.code is ErrorCode.BAD_MESSAGE
    with pytest.raises(RemoteProtocolError):
        decoder.feed(encode_message(Ack(next_offset=2)))
    with pytest.raises(RemoteProtocolError):
        decoder.next_message()


def test_decoder_refuses_an_oversized_length_before_buffering_it() -> None:
    decoder = ControlDecoder()
    decoder.feed(bytes([0x02]) + (1025).to_bytes(2, "little"))
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message()
    assert info.value.code is ErrorCode.BAD_MESSAGE


def test_decoder_waits_for_the_header() -> None:
    decoder = ControlDecoder()
    decoder.feed(b"\x83\x04")
    assert decoder.next_message() is None
    assert decoder.buffered_bytes == 2


def test_encode_control_limits() -> None:
    with pytest.raises(LocalProtocolError):
        encode_control(0x100, b"")
    with pytest.raises(LocalProtocolError):
        encode_control(0x02, bytes(1025))


def test_protocol_error_is_abstract_and_carries_a_code() -> None:
    with pytest.raises(TypeError):
        ProtocolError("x")
    error = RemoteProtocolError("boom", code=ErrorCode.TIMEOUT)
    assert error.code is ErrorCode.TIMEOUT
    assert "TIMEOUT" in repr(error)


# --- Data frames ------------------------------------------------------------------------------------------


def test_data_frame_layout() -> None:
    frame = encode_data_frame(0x01020304, b"\xe9\x05")
    assert frame[:4] == bytes([4, 3, 2, 1])
    assert frame[4:6] == b"\xe9\x05"
    assert int.from_bytes(frame[6:], "little") == crc16(frame[:6])
    decoded = decode_data_frame(frame)
    assert (decoded.offset, decoded.payload) == (0x01020304, b"\xe9\x05")


@given(offset=st.integers(0, 0xFFFF_FFFF - 506), payload=st.binary(min_size=1, max_size=506))
def test_data_frame_round_trip(offset: int, payload: bytes) -> None:
    frame = encode_data_frame(offset, payload)
    assert len(frame) == len(payload) + 6
    decoded = decode_data_frame(frame)
    assert (decoded.offset, decoded.payload) == (offset, payload)


@given(payload=st.binary(min_size=1, max_size=200), bit=st.integers(0, 7), data=st.data())
def test_data_frame_single_bit_flips_are_caught(payload: bytes, bit: int, data: st.DataObject) -> None:
    frame = bytearray(encode_data_frame(1000, payload))
    index = data.draw(st.integers(0, len(frame) - 1))
    frame[index] ^= 1 << bit
    with pytest.raises(DataFrameError) as info:
        decode_data_frame(bytes(frame))
    assert info.value.reason is NackReason.BAD_CRC


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", NackReason.BAD_LENGTH),
        (b"\x00" * 6, NackReason.BAD_LENGTH),
        (b"\x00" * 513, NackReason.BAD_LENGTH),
        (encode_data_frame(0, b"abc") + b"\x00", NackReason.BAD_CRC),
    ],
)
def test_bad_data_frames(raw: bytes, reason: NackReason) -> None:
    with pytest.raises(DataFrameError) as info:
        decode_data_frame(raw)
    assert info.value.reason is reason
    assert info.value.code is ErrorCode.BAD_FRAME


def test_data_frame_longer_than_the_board_accepts() -> None:
    frame = encode_data_frame(0, bytes(238))
    assert decode_data_frame(frame, 244).payload == bytes(238)
    with pytest.raises(DataFrameError):
        decode_data_frame(frame + b"", 243)


@pytest.mark.parametrize(("offset", "payload"), [(0, b""), (-1, b"a"), (0xFFFF_FFFF, b"ab"), (0, bytes(507))])
def test_encode_data_frame_refuses(offset: int, payload: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        encode_data_frame(offset, payload)
