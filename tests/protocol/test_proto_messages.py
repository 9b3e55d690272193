"""Messages: validation on construction, round trips for every type, decode errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from proto_helpers import decode_stream, split_three_ways

from protocol import (
    Abort,
    Ack,
    Begin,
    BeginFlags,
    BeginOk,
    EraseStrategy,
    Error,
    ErrorCode,
    Feature,
    FinishOk,
    Hello,
    Info,
    LocalProtocolError,
    Message,
    MessageType,
    Nack,
    NackReason,
    NoUpdate,
    NoUpdateReason,
    RebootOk,
    RemoteProtocolError,
    RollbackState,
    UpdateAvailable,
    UpdateResult,
    decode_message,
    encode_message,
)
from protocol.messages import BOARD_MESSAGES, BRIDGE_MESSAGES, MESSAGE_CLASSES
from protocol.reference import default_info

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
sha = st.binary(min_size=32, max_size=32)
text_chars = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])


def text(max_bytes: int, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(text_chars, min_size=min_size, max_size=max_bytes).filter(
        lambda s: len(s.encode("utf-8")) <= max_bytes
    )


def flags(enum_type: Any, bits: int) -> st.SearchStrategy[Any]:
    return st.integers(0, (1 << bits) - 1).map(enum_type)


STRATEGIES: dict[type[Message], st.SearchStrategy[Any]] = {
    Hello: st.tuples(st.integers(1, 255), st.integers(1, 255), flags(Feature, 32)).map(
        lambda t: Hello(min_version=min(t[:2]), max_version=max(t[:2]), features=t[2])
    ),
    Begin: st.builds(
        Begin,
        size=st.integers(1, 0xFFFF_FFFF),
        sha256=sha,
        secure_version=u32,
        flags=flags(BeginFlags, 8),
        version=text(32),
        project=text(32),
        signature=st.binary(max_size=512),
    ),
    Abort: st.builds(Abort, reason=st.sampled_from(ErrorCode)),
    UpdateAvailable: st.builds(
        UpdateAvailable, size=st.integers(1, 0xFFFF_FFFF), secure_version=u32, version=text(32, 1)
    ),
    NoUpdate: st.builds(NoUpdate, reason=st.sampled_from(NoUpdateReason)),
    Info: st.builds(
        Info,
        protocol_version=st.integers(1, 255),
        features=flags(Feature, 32),
        chip_id=u16,
        chip_revision=u16,
        window_bytes=st.integers(1, 0xFFFF_FFFF),
        max_frame_bytes=st.integers(20, 512),
        erase_strategy=st.sampled_from(EraseStrategy),
        secure_version=u32,
        rollback_state=st.sampled_from(RollbackState),
        last_update_result=st.sampled_from(UpdateResult),
        next_partition_size=u32,
        elf_sha256=sha,
        board_id=st.binary(min_size=1, max_size=16),
        project=text(32),
        running_version=text(32),
        running_partition=text(16),
        next_partition=text(16),
    ),
    BeginOk: st.builds(BeginOk, offset=u32, window_bytes=st.integers(1, 0xFFFF_FFFF)),
    Ack: st.builds(Ack, next_offset=u32),
    Nack: st.builds(Nack, next_offset=u32, reason=st.sampled_from(NackReason)),
    FinishOk: st.builds(FinishOk, sha256=sha),
    RebootOk: st.builds(RebootOk, delay_ms=u16),
    Error: st.builds(
        Error,
        code=st.sampled_from([c for c in ErrorCode if c is not ErrorCode.OK]),
        in_reply_to=st.none() | st.sampled_from(MessageType),
        retry_after_s=u16,
        detail=text(64),
    ),
}
for _cls in BRIDGE_MESSAGES + BOARD_MESSAGES:
    if not dataclasses.fields(_cls):
        STRATEGIES[_cls] = st.just(_cls())

ANY_MESSAGE = st.one_of(*STRATEGIES.values())


def test_every_message_type_has_a_class_and_a_strategy() -> None:
    assert set(MESSAGE_CLASSES) == set(MessageType)
    assert set(STRATEGIES) == set(MESSAGE_CLASSES.values())
    assert all(cls.TYPE & 0x80 for cls in BOARD_MESSAGES)
    assert not any(cls.TYPE & 0x80 for cls in BRIDGE_MESSAGES)


@given(ANY_MESSAGE)
def test_round_trip_whole_bytewise_and_trailing(message: Message) -> None:
    raw = encode_message(message)
    assert raw[0] == message.TYPE
    for how, chunks in split_three_ways(raw):
        decoded, left = decode_stream(chunks)
        assert decoded == [message], how
        assert left == (6 if how == "trailing" else 0)


@given(ANY_MESSAGE, st.binary(min_size=1, max_size=8))
def test_extra_body_bytes_are_refused(message: Message, extra: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_message(message.TYPE, message.encode_body() + extra)
    assert info.value.code is ErrorCode.BAD_MESSAGE


@given(ANY_MESSAGE.filter(lambda m: len(m.encode_body()) > 0), st.data())
def test_truncated_bodies_are_refused(message: Message, data: st.DataObject) -> None:
    body = message.encode_body()
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(RemoteProtocolError) as info:
        decode_message(message.TYPE, body[:cut])
    assert info.value.code is ErrorCode.BAD_MESSAGE


def test_unknown_type() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_message(0x42, b"")
    assert info.value.code is ErrorCode.UNKNOWN_MESSAGE


SHA = bytes(32)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Hello(min_version=0),
        lambda: Hello(min_version=3, max_version=2),
        lambda: Hello(max_version=256),
        lambda: Hello(features=5),  # type: ignore[arg-type]  # a plain int, not a Feature
        lambda: Begin(size=0, sha256=SHA),
        lambda: Begin(size=1 << 32, sha256=SHA),
        lambda: Begin(size=1, sha256=bytes(31)),
        lambda: Begin(size=1, sha256=SHA, version="x" * 33),
        lambda: Begin(size=1, sha256=SHA, project="\u00e9" * 17),  # 34 UTF-8 bytes
        lambda: Begin(size=1, sha256=SHA, version="a\x00b"),
        lambda: Begin(size=1, sha256=SHA, version=b"1.0"),  # type: ignore[arg-type]
        lambda: Begin(size=1, sha256=SHA, signature=bytes(513)),
        lambda: Begin(size=1, sha256=SHA, flags=BeginFlags(256)),
        lambda: Begin(size=True, sha256=SHA),
        lambda: Begin(size=1, sha256="00" * 32),  # type: ignore[arg-type]
        lambda: Abort(reason=1),  # type: ignore[arg-type]
        lambda: UpdateAvailable(size=1, version=""),
        lambda: NoUpdate(reason=0),  # type: ignore[arg-type]
        lambda: BeginOk(offset=0, window_bytes=0),
        lambda: Ack(next_offset=-1),
        lambda: Nack(next_offset=0, reason=1),  # type: ignore[arg-type]
        lambda: FinishOk(sha256=b""),
        lambda: RebootOk(delay_ms=70000),
        lambda: Error(code=ErrorCode.OK),
        lambda: Error(code=ErrorCode.BUSY, detail="d" * 65),
        lambda: Error(code=ErrorCode.BUSY, in_reply_to=2),  # type: ignore[arg-type]
        lambda: default_info(max_frame_bytes=19),
        lambda: default_info(max_frame_bytes=513),
        lambda: default_info(window_bytes=0),
        lambda: default_info(board_id=b""),
        lambda: default_info(board_id=bytes(17)),
        lambda: default_info(running_partition="x" * 17),
        lambda: default_info(erase_strategy=1),
        lambda: default_info(protocol_version=0),
    ],
)
def test_invalid_messages_cannot_be_built(build: Any) -> None:
    with pytest.raises(LocalProtocolError) as info:
        build()
    assert info.value.code is ErrorCode.BAD_MESSAGE


def test_messages_are_frozen_and_keyword_only() -> None:
    ack = Ack(next_offset=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ack.next_offset = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Ack(1)  # type: ignore[call-arg]


def test_begin_body_layout() -> None:
    begin = Begin(
        size=0x0102,
        sha256=bytes(range(32)),
        secure_version=7,
        flags=BeginFlags.RESTART,
        version="v1",
        project="p",
        signature=b"\xaa\xbb",
    )
    body = begin.encode_body()
    assert body[:4] == bytes([2, 1, 0, 0])
    assert body[4:36] == bytes(range(32))
    assert body[36:40] == bytes([7, 0, 0, 0])
    assert body[40] == 1
    assert body[41:44] == b"\x02v1"
    assert body[44:46] == b"\x01p"
    assert body[46:] == b"\x02\x00\xaa\xbb"


def test_error_in_reply_to_none_is_zero_on_the_wire() -> None:
    assert Error(code=ErrorCode.TIMEOUT).encode_body() == bytes([0x06, 0x00, 0x00, 0x00, 0x00])
    assert decode_message(0xFF, bytes([0x06, 0x00, 0x00, 0x00, 0x00])) == Error(code=ErrorCode.TIMEOUT)


def test_unknown_feature_bits_survive_a_round_trip() -> None:
    hello = Hello(features=Feature(0x8000_0001))
    assert decode_message(hello.TYPE, hello.encode_body()) == hello
