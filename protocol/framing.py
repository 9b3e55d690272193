"""Bytes on the two characteristics: control messages as a byte stream, data frames as datagrams.

Theory of operation
-------------------
Each GATT write or notification is one datagram of at most the negotiated ATT payload (ATT_MTU - 3, clamped to
512; 20 on a default link). The two characteristics use the datagrams differently:

* **Control** (write with response / notify): each direction is a *byte stream* of messages
  ``type u8 | length u16 | body | crc16``. A message longer than one datagram is simply cut into consecutive
  datagrams; a receiver appends every datagram to a buffer and takes whole messages out of it. ATT delivers
  writes and notifications of one connection reliably and in order, so no fragment headers are needed. A sender
  starts every message in a fresh datagram (so a short message costs one datagram), but receivers must not rely
  on that. The CRC catches a stream that went out of step (a dropped notification in a host stack): it is fatal
  for the connection, as is a length above ``MAX_CONTROL_BODY_BYTES``.
* **Data** (write without response): one datagram = one frame ``offset u32 | payload | crc16``. Its length is the
  datagram's length, so the overhead is 6 bytes (97.5 % payload at 244-byte writes, 98.8 % at 495). The CRC
  covers offset and payload; a frame that fails it is dropped and NACKed, never an error.

CRC-16 is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR; check value 0x29B1 for
``b"123456789"``), which ``binascii.crc_hqx(data, 0xFFFF)`` computes in C. All integers are little-endian.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from typing import Final

from protocol.constants import (
    CONTROL_HEADER_BYTES,
    CONTROL_TRAILER_BYTES,
    DATA_FRAME_OVERHEAD_BYTES,
    DATA_HEADER_BYTES,
    MAX_CONTROL_BODY_BYTES,
    MAX_DATAGRAM_BYTES,
    MAX_IMAGE_BYTES,
    MIN_DATAGRAM_BYTES,
    ErrorCode,
    NackReason,
)
from protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ControlDecoder",
    "DataFrame",
    "DataFrameError",
    "clamp_datagram_bytes",
    "crc16",
    "decode_data_frame",
    "encode_control",
    "encode_data_frame",
    "split_datagrams",
]

_HEADER: Final = struct.Struct("<BH")
_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (pass the previous value as ``crc`` to continue a running CRC)."""
    return binascii.crc_hqx(data, crc)


def clamp_datagram_bytes(att_payload_bytes: int) -> int:
    """The datagram size to use for a negotiated ATT payload (MTU - 3): clamped to [20, 512]."""
    return max(MIN_DATAGRAM_BYTES, min(MAX_DATAGRAM_BYTES, att_payload_bytes))


# --- Control stream -----------------------------------------------------------------------------------------


def encode_control(message_type: int, body: bytes) -> bytes:
    """One control message: ``type u8 | length u16 | body | crc16`` (CRC over type, length and body)."""
    if not 0 <= message_type <= 0xFF:
        raise LocalProtocolError(f"message type {message_type} does not fit a byte")
    if len(body) > MAX_CONTROL_BODY_BYTES:
        raise LocalProtocolError(f"control body of {len(body)} bytes exceeds {MAX_CONTROL_BODY_BYTES}")
    head = _HEADER.pack(message_type, len(body)) + body
    return head + _U16.pack(crc16(head))


def split_datagrams(message: bytes, datagram_bytes: int) -> list[bytes]:
    """Cut one encoded control message into consecutive datagrams of at most ``datagram_bytes``."""
    if datagram_bytes < MIN_DATAGRAM_BYTES:
        raise LocalProtocolError(f"datagram size {datagram_bytes} is below the ATT minimum {MIN_DATAGRAM_BYTES}")
    return [message[i : i + datagram_bytes] for i in range(0, len(message), datagram_bytes)]


class ControlDecoder:
    """Reassembles control messages from a stream of datagrams.

    ``feed()`` appends bytes; ``next_message()`` returns ``(type, body)`` of the next whole message, or ``None``
    if more bytes are needed. Bytes after a message stay buffered for the next one. After an error the decoder
    is broken (the stream is out of step) and raises again on every call.
    """

    def __init__(self, max_body_bytes: int = MAX_CONTROL_BODY_BYTES) -> None:
        self._buffer = bytearray()
        self._max_body_bytes = max_body_bytes
        self._broken: RemoteProtocolError | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet part of a returned message."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._broken is not None:
            raise self._broken
        self._buffer += data

    def next_message(self) -> tuple[int, bytes] | None:
        """Take the next whole message out of the buffer.

        Raises:
            RemoteProtocolError: code BAD_MESSAGE for a length above the limit or a CRC mismatch.
        """
        if self._broken is not None:
            raise self._broken
        if len(self._buffer) < CONTROL_HEADER_BYTES:
            return None
        message_type, length = _HEADER.unpack_from(self._buffer)
        if length > self._max_body_bytes:
            self._broken = RemoteProtocolError(
                f"control message announces {length} body bytes, limit {self._max_body_bytes}",
                code=ErrorCode.BAD_MESSAGE,
            )
            raise self._broken
        total = CONTROL_HEADER_BYTES + length + CONTROL_TRAILER_BYTES
        if len(self._buffer) < total:
            return None
        end = CONTROL_HEADER_BYTES + length
        (received_crc,) = _U16.unpack_from(self._buffer, end)
        computed_crc = crc16(memoryview(self._buffer)[:end])
        if received_crc != computed_crc:
            self._broken = RemoteProtocolError(
                f"control message CRC {received_crc:#06x} != computed {computed_crc:#06x}",
                code=ErrorCode.BAD_MESSAGE,
            )
            raise self._broken
        body = bytes(self._buffer[CONTROL_HEADER_BYTES:end])
        del self._buffer[:total]
        return message_type, body


# --- Data frames --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataFrame:
    """A decoded data frame."""

    offset: int
    payload: bytes


class DataFrameError(RemoteProtocolError):
    """A data frame that must be dropped; ``reason`` is what the board's NACK carries."""

    def __init__(self, message: str, *, reason: NackReason) -> None:
        super().__init__(message, code=ErrorCode.BAD_FRAME)
        self.reason = reason


def encode_data_frame(offset: int, payload: bytes | bytearray | memoryview) -> bytes:
    """``offset u32 | payload | crc16`` (CRC over offset and payload)."""
    if not payload:
        raise LocalProtocolError("a data frame carries at least one byte")
    if not offset >= 0 or offset + len(payload) > MAX_IMAGE_BYTES:
        raise LocalProtocolError(f"data frame [{offset}, +{len(payload)}) is outside the u32 offset range")
    if len(payload) + DATA_FRAME_OVERHEAD_BYTES > MAX_DATAGRAM_BYTES:
        raise LocalProtocolError(f"data frame payload of {len(payload)} bytes exceeds a 512-byte datagram")
    head = _U32.pack(offset) + payload
    return head + _U16.pack(crc16(head))


def decode_data_frame(datagram: bytes | bytearray | memoryview, max_frame_bytes: int = MAX_DATAGRAM_BYTES) -> DataFrame:
    """Decode one data-characteristic datagram.

    Raises:
        DataFrameError: ``reason`` BAD_LENGTH (too short or too long) or BAD_CRC.
    """
    size = len(datagram)
    if size < DATA_FRAME_OVERHEAD_BYTES + 1 or size > max_frame_bytes:
        raise DataFrameError(
            f"data frame of {size} bytes (valid: {DATA_FRAME_OVERHEAD_BYTES + 1}..{max_frame_bytes})",
            reason=NackReason.BAD_LENGTH,
        )
    view = memoryview(datagram)
    end = size - 2
    (received_crc,) = _U16.unpack_from(view, end)
    computed_crc = crc16(view[:end])
    if received_crc != computed_crc:
        raise DataFrameError(
            f"data frame CRC {received_crc:#06x} != computed {computed_crc:#06x}", reason=NackReason.BAD_CRC
        )
    (offset,) = _U32.unpack_from(view)
    return DataFrame(offset=offset, payload=bytes(view[DATA_HEADER_BYTES:end]))
