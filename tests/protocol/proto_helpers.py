"""Shared helpers for the protocol tests (a unique module name: test directories have no __init__.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, overload

from protocol import (
    DEFAULT_BRIDGE_FEATURES,
    Begin,
    BoardConnection,
    BoardEvent,
    BridgeConnection,
    BridgeEvent,
    ControlDecoder,
    DataReceived,
    Feature,
    Hello,
    Message,
    decode_message,
)
from protocol.reference import default_info

TRAILER = bytes.fromhex("021000aabbcc")  # the start of a BEGIN whose body is still to come: stays buffered


def split_three_ways(data: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """h11's tr(): the input whole, one byte at a time, and followed by trailing bytes."""
    yield "whole", [data]
    yield "bytewise", [data[i : i + 1] for i in range(len(data))]
    yield "trailing", [data + TRAILER]


def decode_stream(chunks: list[bytes]) -> tuple[list[Message], int]:
    """Feed chunks to a ControlDecoder; returns the messages and the bytes left buffered."""
    decoder = ControlDecoder()
    messages: list[Message] = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (item := decoder.next_message()) is not None:
            messages.append(decode_message(*item))
    return messages, decoder.buffered_bytes


def pipe(datagrams: list[bytes], conn: BridgeConnection | BoardConnection) -> None:
    """Deliver control datagrams to a connection."""
    for datagram in datagrams:
        conn.receive_control(datagram)


@overload
def events(conn: BridgeConnection) -> list[BridgeEvent]: ...
@overload
def events(conn: BoardConnection) -> list[BoardEvent]: ...
def events(conn: BridgeConnection | BoardConnection) -> list[BridgeEvent] | list[BoardEvent]:
    """Drain every pending event."""
    out: list[Any] = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


def chunks(board: BoardConnection) -> list[DataReceived]:
    """Drain the board's events, which must all be accepted data."""
    out = events(board)
    assert all(isinstance(event, DataReceived) for event in out), out
    return [event for event in out if isinstance(event, DataReceived)]


def connected_pair(
    *,
    window_bytes: int = 4096,
    max_write_bytes: int = 244,
    board_features: Feature | None = None,
    ack_interval_bytes: int | None = None,
) -> tuple[BridgeConnection, BoardConnection]:
    """A bridge and a board that exchanged HELLO/INFO."""
    info = default_info(window_bytes=window_bytes)
    if board_features is not None:
        info = default_info(window_bytes=window_bytes, features=board_features)
    bridge = BridgeConnection(max_write_bytes=max_write_bytes)
    board = BoardConnection(
        max_notify_bytes=max_write_bytes, features=info.features, ack_interval_bytes=ack_interval_bytes
    )
    pipe(bridge.send(Hello(features=DEFAULT_BRIDGE_FEATURES)), board)
    assert isinstance(board.next_event(), Hello)
    pipe(board.send(info), bridge)
    assert bridge.next_event() == info
    return bridge, board


def begin_for(image: bytes) -> Begin:
    """A BEGIN for an image."""
    return Begin(size=len(image), sha256=hashlib.sha256(image).digest(), version="2.0.0")
