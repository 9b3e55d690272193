"""Control messages: one frozen dataclass per message type, validated on construction.

Each class knows its wire type (``TYPE``) and its body layout (SPEC.md "Messages"). Bodies use little-endian
integers and two variable-length forms: ``str8`` (u8 length + UTF-8) and ``bytes8``/``bytes16`` (u8/u16 length
+ raw bytes). A body must be consumed exactly: extra bytes are an error (new fields come with a new protocol
version, negotiated in HELLO/INFO).

Constructing an invalid message raises ``LocalProtocolError``; decoding one received from the peer raises
``RemoteProtocolError`` with the same code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final, Self, TypeAlias, TypeVar

from protocol.constants import (
    MAX_BOARD_ID_BYTES,
    MAX_DATAGRAM_BYTES,
    MAX_ERROR_TEXT_BYTES,
    MAX_LABEL_BYTES,
    MAX_PROJECT_BYTES,
    MAX_SIGNATURE_BYTES,
    MAX_VERSION_BYTES,
    MIN_DATAGRAM_BYTES,
    PROTOCOL_VERSION,
    BeginFlags,
    EraseStrategy,
    ErrorCode,
    Feature,
    MessageType,
    NackReason,
    NoUpdateReason,
    RollbackState,
    UpdateResult,
)
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.framing import encode_control

__all__ = [
    "BOARD_MESSAGES",
    "BRIDGE_MESSAGES",
    "MESSAGE_CLASSES",
    "Abort",
    "Ack",
    "Begin",
    "BeginOk",
    "BoardMessage",
    "BridgeMessage",
    "Commit",
    "CommitOk",
    "Error",
    "Finish",
    "FinishOk",
    "Hello",
    "Info",
    "Message",
    "Nack",
    "NoUpdate",
    "Reboot",
    "RebootOk",
    "Sync",
    "UpdateAccept",
    "UpdateAvailable",
    "UpdateRequest",
    "decode_message",
    "encode_message",
]

SHA256_BYTES: Final = 32

_E = TypeVar("_E", bound=int)

# --- Field helpers ------------------------------------------------------------------------------------------


def _bad(text: str) -> LocalProtocolError:
    return LocalProtocolError(text, code=ErrorCode.BAD_MESSAGE)


def _check_uint(name: str, value: int, bits: int, *, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an int, got {type(value).__name__}")
    if not minimum <= value < (1 << bits):
        raise _bad(f"{name}={value} is outside [{minimum}, {(1 << bits) - 1}]")


def _check_text(name: str, value: str, max_bytes: int, *, allow_empty: bool = True) -> None:
    if not isinstance(value, str):
        raise _bad(f"{name} must be a str, got {type(value).__name__}")
    size = len(value.encode("utf-8"))
    if size > max_bytes or (size == 0 and not allow_empty):
        raise _bad(f"{name} is {size} UTF-8 bytes (allowed: {0 if allow_empty else 1}..{max_bytes})")
    if "\x00" in value:
        raise _bad(f"{name} contains a NUL character")


def _check_bytes(name: str, value: bytes, *, exact: int | None = None, max_bytes: int | None = None) -> None:
    if not isinstance(value, bytes):
        raise _bad(f"{name} must be bytes, got {type(value).__name__}")
    if exact is not None and len(value) != exact:
        raise _bad(f"{name} must be {exact} bytes, got {len(value)}")
    if max_bytes is not None and len(value) > max_bytes:
        raise _bad(f"{name} is {len(value)} bytes, at most {max_bytes}")


def _check_enum(name: str, value: _E, enum_type: type[_E]) -> None:
    if not isinstance(value, enum_type):
        raise _bad(f"{name} must be a {enum_type.__name__}, got {value!r}")


def _str8(value: str) -> bytes:
    raw = value.encode("utf-8")
    return bytes((len(raw),)) + raw


def _bytes8(value: bytes) -> bytes:
    return bytes((len(value),)) + value


def _bytes16(value: bytes) -> bytes:
    return struct.pack("<H", len(value)) + value


class _Reader:
    """Walks a message body; every short read or leftover byte is BAD_MESSAGE."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._pos = 0

    def take(self, n: int) -> bytes:
        if self._pos + n > len(self._body):
            raise _bad(f"body ends after {len(self._body)} bytes, needed {self._pos + n}")
        chunk = self._body[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def bytes8(self) -> bytes:
        return self.take(self.u8())

    def bytes16(self) -> bytes:
        return self.take(self.u16())

    def str8(self, name: str) -> str:
        raw = self.bytes8()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad(f"{name} is not valid UTF-8") from exc

    def enum(self, name: str, enum_type: type[_E], raw: int) -> _E:
        try:
            return enum_type(raw)
        except ValueError as exc:
            raise _bad(f"{name}={raw} is not a known {enum_type.__name__}") from exc

    def end(self) -> None:
        if self._pos != len(self._body):
            raise _bad(f"{len(self._body) - self._pos} unexpected bytes after the last field")


# --- Base ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of all control messages. Don't subclass outside this module."""

    TYPE: ClassVar[MessageType]

    def encode_body(self) -> bytes:
        """The body bytes (without type, length and CRC)."""
        return b""

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        """Parse a body. Raises ``LocalProtocolError`` (the caller turns it into a remote one)."""
        reader = _Reader(body)
        message = cls._read(reader)
        reader.end()
        return message

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls()


# --- Bridge -> board ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    """First command of every connection: the protocol versions and features the bridge understands."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    min_version: int = PROTOCOL_VERSION
    max_version: int = PROTOCOL_VERSION
    features: Feature = Feature.NONE

    def __post_init__(self) -> None:
        _check_uint("min_version", self.min_version, 8, minimum=1)
        _check_uint("max_version", self.max_version, 8, minimum=1)
        if self.min_version > self.max_version:
            raise _bad(f"min_version {self.min_version} > max_version {self.max_version}")
        _check_enum("features", self.features, Feature)
        _check_uint("features", int(self.features), 32)

    def encode_body(self) -> bytes:
        return struct.pack("<BBI", self.min_version, self.max_version, int(self.features))

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls(min_version=reader.u8(), max_version=reader.u8(), features=Feature(reader.u32()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Begin(Message):
    """Start (or resume) a transfer of one image."""

    TYPE: ClassVar[MessageType] = MessageType.BEGIN
    size: int
    sha256: bytes
    secure_version: int = 0
    flags: BeginFlags = BeginFlags.NONE
    version: str = ""
    project: str = ""
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_uint("size", self.size, 32, minimum=1)
        _check_bytes("sha256", self.sha256, exact=SHA256_BYTES)
        _check_uint("secure_version", self.secure_version, 32)
        _check_enum("flags", self.flags, BeginFlags)
        _check_uint("flags", int(self.flags), 8)
        _check_text("version", self.version, MAX_VERSION_BYTES)
        _check_text("project", self.project, MAX_PROJECT_BYTES)
        _check_bytes("signature", self.signature, max_bytes=MAX_SIGNATURE_BYTES)

    def encode_body(self) -> bytes:
        return (
            struct.pack("<I", self.size)
            + self.sha256
            + struct.pack("<IB", self.secure_version, int(self.flags))
            + _str8(self.version)
            + _str8(self.project)
            + _bytes16(self.signature)
        )

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls(
            size=reader.u32(),
            sha256=reader.take(SHA256_BYTES),
            secure_version=reader.u32(),
            flags=BeginFlags(reader.u8()),
            version=reader.str8("version"),
            project=reader.str8("project"),
            signature=reader.bytes16(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Sync(Message):
    """Ask the board where it is: answered by ACK(written), then NACK(expected, REQUESTED)."""

    TYPE: ClassVar[MessageType] = MessageType.SYNC


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish(Message):
    """All bytes are acked: verify the image (SHA-256 from BEGIN, then the ESP32 image checks)."""

    TYPE: ClassVar[MessageType] = MessageType.FINISH


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit(Message):
    """Make the verified image the boot partition. Does not reboot (see REBOOT)."""

    TYPE: ClassVar[MessageType] = MessageType.COMMIT


@dataclass(frozen=True, slots=True, kw_only=True)
class Reboot(Message):
    """Restart the board (after REBOOT_OK)."""

    TYPE: ClassVar[MessageType] = MessageType.REBOOT


@dataclass(frozen=True, slots=True, kw_only=True)
class Abort(Message):
    """Abandon the current transfer or offer. The board discards the transfer (no resume)."""

    TYPE: ClassVar[MessageType] = MessageType.ABORT
    reason: ErrorCode = ErrorCode.CANCELLED

    def __post_init__(self) -> None:
        _check_enum("reason", self.reason, ErrorCode)

    def encode_body(self) -> bytes:
        return bytes((int(self.reason),))

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls(reason=reader.enum("reason", ErrorCode, reader.u8()))


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateAvailable(Message):
    """Answer to UPDATE_REQUEST: the server has this image for the board."""

    TYPE: ClassVar[MessageType] = MessageType.UPDATE_AVAILABLE
    size: int
    secure_version: int = 0
    version: str

    def __post_init__(self) -> None:
        _check_uint("size", self.size, 32, minimum=1)
        _check_uint("secure_version", self.secure_version, 32)
        _check_text("version", self.version, MAX_VERSION_BYTES, allow_empty=False)

    def encode_body(self) -> bytes:
        return struct.pack("<II", self.size, self.secure_version) + _str8(self.version)

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls(size=reader.u32(), secure_version=reader.u32(), version=reader.str8("version"))


@dataclass(frozen=True, slots=True, kw_only=True)
class NoUpdate(Message):
    """Answer to UPDATE_REQUEST: nothing to install."""

    TYPE: ClassVar[MessageType] = MessageType.NO_UPDATE
    reason: NoUpdateReason = NoUpdateReason.UP_TO_DATE

    def __post_init__(self) -> None:
        _check_enum("reason", self.reason, NoUpdateReason)

    def encode_body(self) -> bytes:
        return bytes((int(self.reason),))

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls(reason=reader.enum("reason", NoUpdateReason, reader.u8()))


# --- Board -> bridge ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Info(Message):
    """Answer to HELLO: who the board is, what it runs, and how it wants to receive."""

    TYPE: ClassVar[MessageType] = MessageType.INFO
    protocol_version: int = PROTOCOL_VERSION
    features: Feature = Feature.NONE
    #: ESP image header chip_id (ESP32 0x0000, S2 0x0002, C3 0x0005, S3 0x0009, C2 0x000C, C6 0x000D, H2 0x0010).
    chip_id: int
    #: Chip revision as ESP-IDF's "full" revision: major * 100 + minor.
    chip_revision: int = 0
    #: Receive window: image bytes the bridge may have in flight beyond the last ACK.
    window_bytes: int
    #: Largest data datagram (offset + payload + CRC) the board accepts: 20..512.
    max_frame_bytes: int = MAX_DATAGRAM_BYTES
    erase_strategy: EraseStrategy = EraseStrategy.SEQUENTIAL_4K
    secure_version: int = 0
    rollback_state: RollbackState = RollbackState.UNDEFINED
    last_update_result: UpdateResult = UpdateResult.NONE
    next_partition_size: int
    elf_sha256: bytes
    #: Stable board identity, e.g. the 6-byte factory MAC (esp_efuse_mac_get_default).
    board_id: bytes
    project: str
    running_version: str
    running_partition: str
    next_partition: str

    def __post_init__(self) -> None:
        _check_uint("protocol_version", self.protocol_version, 8, minimum=1)
        _check_enum("features", self.features, Feature)
        _check_uint("features", int(self.features), 32)
        _check_uint("chip_id", self.chip_id, 16)
        _check_uint("chip_revision", self.chip_revision, 16)
        _check_uint("window_bytes", self.window_bytes, 32, minimum=1)
        _check_uint("max_frame_bytes", self.max_frame_bytes, 16, minimum=MIN_DATAGRAM_BYTES)
        if self.max_frame_bytes > MAX_DATAGRAM_BYTES:
            raise _bad(f"max_frame_bytes={self.max_frame_bytes} exceeds {MAX_DATAGRAM_BYTES}")
        _check_enum("erase_strategy", self.erase_strategy, EraseStrategy)
        _check_uint("secure_version", self.secure_version, 32)
        _check_enum("rollback_state", self.rollback_state, RollbackState)
        _check_enum("last_update_result", self.last_update_result, UpdateResult)
        _check_uint("next_partition_size", self.next_partition_size, 32)
        _check_bytes("elf_sha256", self.elf_sha256, exact=SHA256_BYTES)
        _check_bytes("board_id", self.board_id, max_bytes=MAX_BOARD_ID_BYTES)
        if not self.board_id:
            raise _bad("board_id must not be empty")
        _check_text("project", self.project, MAX_PROJECT_BYTES)
        _check_text("running_version", self.running_version, MAX_VERSION_BYTES)
        _check_text("running_partition", self.running_partition, MAX_LABEL_BYTES)
        _check_text("next_partition", self.next_partition, MAX_LABEL_BYTES)

    def encode_body(self) -> bytes:
        return (
            struct.pack(
                "<BIHHIHBIBBI",
                self.protocol_version,
                int(self.features),
                self.chip_id,
                self.chip_revision,
                self.window_bytes,
                self.max_frame_bytes,
                int(self.erase_strategy),
                self.secure_version,
                int(self.rollback_state),
                int(self.last_update_result),
                self.next_partition_size,
            )
            + self.elf_sha256
            + _bytes8(self.board_id)
            + _str8(self.project)
            + _str8(self.running_version)
            + _str8(self.running_partition)
            + _str8(self.next_partition)
        )

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls(
            protocol_version=reader.u8(),
            features=Feature(reader.u32()),
            chip_id=reader.u16(),
            chip_revision=reader.u16(),
            window_bytes=reader.u32(),
            max_frame_bytes=reader.u16(),
            erase_strategy=reader.enum("erase_strategy", EraseStrategy, reader.u8()),
            secure_version=reader.u32(),
            rollback_state=reader.enum("rollback_state", RollbackState, reader.u8()),
            last_update_result=reader.enum("last_update_result", UpdateResult, reader.u8()),
            next_partition_size=reader.u32(),
            elf_sha256=reader.take(SHA256_BYTES),
            board_id=reader.bytes8(),
            project=reader.str8("project"),
            running_version=reader.str8("running_version"),
            running_partition=reader.str8("running_partition"),
            next_partition=reader.str8("next_partition"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BeginOk(Message):
    """BEGIN accepted: send data from ``offset`` (0, or where a resumed transfer stopped) within ``window_bytes``."""

    TYPE: ClassVar[MessageType] = MessageType.BEGIN_OK
    offset: int
    window_bytes: int

    def __post_init__(self) -> None:
        _check_uint("offset", self.offset, 32)
        _check_uint("window_bytes", self.window_bytes, 32, minimum=1)

    def encode_body(self) -> bytes:
        return struct.pack("<II", self.offset, self.window_bytes)

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls(offset=reader.u32(), window_bytes=reader.u32())


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(Message):
    """Cumulative: every byte before ``next_offset`` is written to flash."""

    TYPE: ClassVar[MessageType] = MessageType.ACK
    next_offset: int

    def __post_init__(self) -> None:
        _check_uint("next_offset", self.next_offset, 32)

    def encode_body(self) -> bytes:
        return struct.pack("<I", self.next_offset)

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls(next_offset=reader.u32())


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack(Message):
    """Resend from ``next_offset`` (the board's expected offset). Not a flow-control credit."""

    TYPE: ClassVar[MessageType] = MessageType.NACK
    next_offset: int
    reason: NackReason

    def __post_init__(self) -> None:
        _check_uint("next_offset", self.next_offset, 32)
        _check_enum("reason", self.reason, NackReason)

    def encode_body(self) -> bytes:
        return struct.pack("<IB", self.next_offset, int(self.reason))

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls(next_offset=reader.u32(), reason=reader.enum("reason", NackReason, reader.u8()))


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishOk(Message):
    """The image is complete, its SHA-256 matches BEGIN's and it is a valid ESP32 app image."""

    TYPE: ClassVar[MessageType] = MessageType.FINISH_OK
    sha256: bytes

    def __post_init__(self) -> None:
        _check_bytes("sha256", self.sha256, exact=SHA256_BYTES)

    def encode_body(self) -> bytes:
        return self.sha256

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls(sha256=reader.take(SHA256_BYTES))


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitOk(Message):
    """The new image is the boot partition (it runs after the next reboot)."""

    TYPE: ClassVar[MessageType] = MessageType.COMMIT_OK


@dataclass(frozen=True, slots=True, kw_only=True)
class RebootOk(Message):
    """The board restarts ``delay_ms`` after sending this; the link drops."""

    TYPE: ClassVar[MessageType] = MessageType.REBOOT_OK
    delay_ms: int = 100

    def __post_init__(self) -> None:
        _check_uint("delay_ms", self.delay_ms, 16)

    def encode_body(self) -> bytes:
        return struct.pack("<H", self.delay_ms)

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        return cls(delay_ms=reader.u16())


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateRequest(Message):
    """The board asks the bridge whether an update exists for it (feature UPDATE_REQUEST)."""

    TYPE: ClassVar[MessageType] = MessageType.UPDATE_REQUEST


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateAccept(Message):
    """The board accepts the offered update; the bridge continues with BEGIN."""

    TYPE: ClassVar[MessageType] = MessageType.UPDATE_ACCEPT


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Message):
    """The board refuses a command or ends the current operation. Both sides go back to READY."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR
    code: ErrorCode
    #: The command this answers, or None when unsolicited.
    in_reply_to: MessageType | None = None
    #: For BUSY / LOW_BATTERY / DECLINED: when to try again (0 = unknown).
    retry_after_s: int = 0
    #: Human-readable detail for logs (ASCII recommended).
    detail: str = ""

    def __post_init__(self) -> None:
        _check_enum("code", self.code, ErrorCode)
        if self.code is ErrorCode.OK:
            raise _bad("ERROR cannot carry code OK")
        if self.in_reply_to is not None:
            _check_enum("in_reply_to", self.in_reply_to, MessageType)
        _check_uint("retry_after_s", self.retry_after_s, 16)
        _check_text("detail", self.detail, MAX_ERROR_TEXT_BYTES)

    def encode_body(self) -> bytes:
        in_reply_to = 0 if self.in_reply_to is None else int(self.in_reply_to)
        return struct.pack("<BBH", int(self.code), in_reply_to, self.retry_after_s) + _str8(self.detail)

    @classmethod
    def _read(cls, reader: _Reader) -> Self:
        code = reader.enum("code", ErrorCode, reader.u8())
        raw_reply = reader.u8()
        in_reply_to = None if raw_reply == 0 else reader.enum("in_reply_to", MessageType, raw_reply)
        return cls(code=code, in_reply_to=in_reply_to, retry_after_s=reader.u16(), detail=reader.str8("detail"))


BridgeMessage: TypeAlias = Hello | Begin | Sync | Finish | Commit | Reboot | Abort | UpdateAvailable | NoUpdate
BoardMessage: TypeAlias = (
    Info | BeginOk | Ack | Nack | FinishOk | CommitOk | RebootOk | UpdateRequest | UpdateAccept | Error
)

BRIDGE_MESSAGES: Final[tuple[type[Message], ...]] = (
    Hello,
    Begin,
    Sync,
    Finish,
    Commit,
    Reboot,
    Abort,
    UpdateAvailable,
    NoUpdate,
)
BOARD_MESSAGES: Final[tuple[type[Message], ...]] = (
    Info,
    BeginOk,
    Ack,
    Nack,
    FinishOk,
    CommitOk,
    RebootOk,
    UpdateRequest,
    UpdateAccept,
    Error,
)
MESSAGE_CLASSES: Final[dict[MessageType, type[Message]]] = {cls.TYPE: cls for cls in BRIDGE_MESSAGES + BOARD_MESSAGES}


def encode_message(message: Message) -> bytes:
    """The complete control-stream bytes of one message (header, body, CRC)."""
    return encode_control(message.TYPE, message.encode_body())


def decode_message(message_type: int, body: bytes) -> Message:
    """Build the message for a ``(type, body)`` pair taken out of the control stream.

    Raises:
        RemoteProtocolError: UNKNOWN_MESSAGE for an unknown type, BAD_MESSAGE for a malformed body.
    """
    try:
        cls = MESSAGE_CLASSES[MessageType(message_type)]
    except (ValueError, KeyError):
        raise RemoteProtocolError(f"unknown message type {message_type:#04x}", code=ErrorCode.UNKNOWN_MESSAGE) from None
    try:
        return cls.decode_body(body)
    except LocalProtocolError as exc:
        raise exc._reraise_as_remote() from exc
