"""Generates ``protocol/vectors/*.jsonl`` and the generated sections of ``protocol/SPEC.md``.

Run ``python -m protocol._generate`` after changing the protocol; ``--check`` exits 1 if anything is stale
(a test does the same). Output is deterministic: no clock, seeded randomness only.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protocol.constants import (
    ERROR_RECOVERY,
    MAX_CONTROL_BODY_BYTES,
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
from protocol.framing import crc16, encode_control, encode_data_frame
from protocol.messages import (
    MESSAGE_CLASSES,
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
    Message,
    Nack,
    NoUpdate,
    Reboot,
    RebootOk,
    Sync,
    UpdateAccept,
    UpdateAvailable,
    UpdateRequest,
    encode_message,
)
from protocol.reference import Faults, ReferenceBoard, Trace, TraceEntry, default_info, run_update
from protocol.state import SENDER, Role, render_mermaid, render_table

__all__ = [
    "PROTOCOL_DIR",
    "fields_to_json",
    "generated_spec",
    "generated_vectors",
    "message_from_json",
    "transcript_image",
]

PROTOCOL_DIR = Path(__file__).resolve().parent
VECTORS_DIR = PROTOCOL_DIR / "vectors"
SPEC_PATH = PROTOCOL_DIR / "SPEC.md"

SHA_A = hashlib.sha256(b"OTA Bridge test image A").digest()
SHA_B = bytes(range(0xA0, 0xC0))

# --- JSON <-> messages ----------------------------------------------------------------------------------------


def _to_json(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return int(value.value)
    return value


def fields_to_json(message: Message) -> dict[str, object]:
    """A message's fields as JSON values: bytes as hex, enums and flags as integers."""
    return {f.name: _to_json(getattr(message, f.name)) for f in dataclasses.fields(message)}


def _from_json(hint: Any, value: Any) -> Any:
    if isinstance(hint, types.UnionType):
        if value is None:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint is bytes:
        return bytes.fromhex(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    return value


def message_from_json(message_name: str, fields: dict[str, Any]) -> Message:
    """Build a message from its vector form (``message`` name and ``fields``)."""
    cls = MESSAGE_CLASSES[MessageType[message_name]]
    hints = typing.get_type_hints(cls)
    return cls(**{name: _from_json(hints[name], value) for name, value in fields.items()})


def _message_record(name: str, message: Message, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "message": message.TYPE.name,
        "type": int(message.TYPE),
        "sender": SENDER[message.TYPE].value,
        **extra,
        "fields": fields_to_json(message),
        "hex": encode_message(message).hex(),
    }


# --- Single messages ------------------------------------------------------------------------------------------


def _message_examples() -> Iterator[tuple[str, Message]]:
    yield "hello-v1-no-features", Hello()
    yield "hello-v1-v3-all-features", Hello(min_version=1, max_version=3, features=Feature(0x1F))
    yield "begin-minimal", Begin(size=1, sha256=SHA_A)
    yield (
        "begin-full",
        Begin(
            size=1_048_576,
            sha256=SHA_A,
            secure_version=3,
            flags=BeginFlags.RESTART,
            version="2.1.0-rc1",
            project="demo",
            signature=bytes(range(64)),
        ),
    )
    yield (
        "begin-max-lengths",
        Begin(
            size=0xFFFF_FFFF,
            sha256=SHA_B,
            secure_version=0xFFFF_FFFF,
            version="v" * 32,
            project="p" * 32,
            signature=b"\xaa" * 512,
        ),
    )
    yield "begin-utf8-version", Begin(size=4096, sha256=SHA_B, version="1.0-\u00e9t\u00e9", project="caf\u00e9")
    yield "sync", Sync()
    yield "finish", Finish()
    yield "commit", Commit()
    yield "reboot", Reboot()
    yield "abort-cancelled", Abort()
    yield "abort-bridge-error", Abort(reason=ErrorCode.BRIDGE_ERROR)
    yield "abort-no-reason", Abort(reason=ErrorCode.OK)
    yield "update-available", UpdateAvailable(size=1_234_567, secure_version=2, version="2.0.0")
    yield "no-update-up-to-date", NoUpdate()
    yield "no-update-server-unreachable", NoUpdate(reason=NoUpdateReason.SERVER_UNREACHABLE)
    yield "info-default", default_info()
    yield (
        "info-minimal-strings",
        Info(
            chip_id=0,
            window_bytes=4096,
            max_frame_bytes=20,
            next_partition_size=0x100000,
            elf_sha256=bytes(32),
            board_id=b"\x01",
            project="",
            running_version="",
            running_partition="",
            next_partition="",
        ),
    )
    yield (
        "info-pending-verify-after-rollback",
        default_info(
            chip_id=0x0005,
            erase_strategy=EraseStrategy.UP_FRONT,
            rollback_state=RollbackState.PENDING_VERIFY,
            last_update_result=UpdateResult.ROLLED_BACK,
            secure_version=7,
            features=Feature.RESUME | Feature.ANTI_ROLLBACK | Feature.SIGNATURE,
            window_bytes=65536,
            max_frame_bytes=244,
        ),
    )
    yield "begin-ok-from-zero", BeginOk(offset=0, window_bytes=16384)
    yield "begin-ok-resume", BeginOk(offset=155_342, window_bytes=32768)
    yield "ack", Ack(next_offset=4096)
    yield "ack-max", Ack(next_offset=0xFFFF_FFFF)
    for reason in NackReason:
        yield f"nack-{reason.name.lower().replace('_', '-')}", Nack(next_offset=8192 + int(reason), reason=reason)
    yield "finish-ok", FinishOk(sha256=SHA_A)
    yield "commit-ok", CommitOk()
    yield "reboot-ok", RebootOk()
    yield "reboot-ok-zero-delay", RebootOk(delay_ms=0)
    yield "update-request", UpdateRequest()
    yield "update-accept", UpdateAccept()
    yield (
        "error-with-detail",
        Error(code=ErrorCode.BUSY, in_reply_to=MessageType.BEGIN, retry_after_s=30, detail="busy"),
    )


def _error_records() -> Iterator[dict[str, object]]:
    replies = {
        ErrorCode.UNSUPPORTED_VERSION: MessageType.HELLO,
        ErrorCode.HASH_MISMATCH: MessageType.FINISH,
        ErrorCode.INVALID_IMAGE: MessageType.FINISH,
        ErrorCode.INCOMPLETE: MessageType.FINISH,
        ErrorCode.BOOT_PARTITION_FAILED: MessageType.COMMIT,
        ErrorCode.DECLINED: MessageType.UPDATE_AVAILABLE,
        ErrorCode.TIMEOUT: None,
        ErrorCode.FLASH_ERROR: None,
        ErrorCode.BAD_FRAME: None,
        ErrorCode.INTERNAL: None,
    }
    for code in ErrorCode:
        recovery = ERROR_RECOVERY[code][0]
        extra = {"code": int(code), "code_name": code.name, "recovery": recovery.value}
        if code is ErrorCode.OK:
            yield _message_record("abort-reason-ok", Abort(reason=code), **extra)
            continue
        retry = 60 if code in (ErrorCode.BUSY, ErrorCode.LOW_BATTERY, ErrorCode.DECLINED) else 0
        in_reply_to = replies.get(code, MessageType.BEGIN)
        message = Error(code=code, in_reply_to=in_reply_to, retry_after_s=retry, detail=code.name.lower())
        yield _message_record(f"error-{code.name.lower().replace('_', '-')}", message, **extra)
        if code in (ErrorCode.CANCELLED, ErrorCode.BRIDGE_ERROR, ErrorCode.TIMEOUT):
            yield _message_record(f"abort-reason-{code.name.lower().replace('_', '-')}", Abort(reason=code), **extra)


def _raw_control(message_type: int, body: bytes) -> bytes:
    return encode_control(message_type, body)


def _invalid_records() -> Iterator[dict[str, object]]:
    """Control bytes every receiver must refuse, with the code it answers (board) or raises (bridge)."""
    good_ack = encode_message(Ack(next_offset=4096))
    bad_crc = bytearray(good_ack)
    bad_crc[-1] ^= 0x01
    yield {"name": "bad-crc", "receiver": "any", "hex": bytes(bad_crc).hex(), "error": "BAD_MESSAGE"}
    flipped = bytearray(good_ack)
    flipped[4] ^= 0x80
    yield {"name": "flipped-body-bit", "receiver": "any", "hex": bytes(flipped).hex(), "error": "BAD_MESSAGE"}
    too_long = bytes((MessageType.BEGIN,)) + (MAX_CONTROL_BODY_BYTES + 1).to_bytes(2, "little")
    yield {"name": "length-over-limit", "receiver": "any", "hex": too_long.hex(), "error": "BAD_MESSAGE"}
    yield {
        "name": "unknown-type",
        "receiver": "any",
        "hex": _raw_control(0x42, b"").hex(),
        "error": "UNKNOWN_MESSAGE",
    }
    yield {
        "name": "short-body",
        "receiver": "bridge",
        "hex": _raw_control(MessageType.ACK, b"\x00\x10\x00").hex(),
        "error": "BAD_MESSAGE",
    }
    yield {
        "name": "extra-body-byte",
        "receiver": "bridge",
        "hex": _raw_control(MessageType.ACK, b"\x00\x10\x00\x00\x00").hex(),
        "error": "BAD_MESSAGE",
    }
    yield {
        "name": "sync-with-body",
        "receiver": "board",
        "hex": _raw_control(MessageType.SYNC, b"\x00").hex(),
        "error": "BAD_MESSAGE",
    }
    yield {
        "name": "nack-unknown-reason",
        "receiver": "bridge",
        "hex": _raw_control(MessageType.NACK, b"\x00\x10\x00\x00\x09").hex(),
        "error": "BAD_MESSAGE",
    }
    yield {
        "name": "error-code-ok",
        "receiver": "bridge",
        "hex": _raw_control(MessageType.ERROR, b"\x00\x00\x00\x00\x00").hex(),
        "error": "BAD_MESSAGE",
    }
    begin_body = bytearray(Begin(size=16, sha256=SHA_A, version="ab").encode_body())
    begin_body[4 + 32 + 5 + 1] = 0xFF  # first byte of the version string: not UTF-8
    yield {
        "name": "begin-version-not-utf8",
        "receiver": "board",
        "hex": _raw_control(MessageType.BEGIN, bytes(begin_body)).hex(),
        "error": "BAD_MESSAGE",
    }
    zero_size = bytearray(Begin(size=16, sha256=SHA_A).encode_body())
    zero_size[0] = 0
    yield {
        "name": "begin-size-zero",
        "receiver": "board",
        "hex": _raw_control(MessageType.BEGIN, bytes(zero_size)).hex(),
        "error": "BAD_MESSAGE",
    }
    hello_body = Hello(min_version=2, max_version=2).encode_body()
    inverted = bytes((3, 2)) + hello_body[2:]
    yield {
        "name": "hello-min-above-max",
        "receiver": "board",
        "hex": _raw_control(MessageType.HELLO, inverted).hex(),
        "error": "BAD_MESSAGE",
    }


def _data_frame_records() -> Iterator[dict[str, object]]:
    for name, offset, payload in (
        ("first-byte", 0, b"\xe9"),
        ("esp-header-238", 0, bytes([0xE9, 0x05]) + bytes(range(236))),
        ("offset-4096-489", 4096, bytes((i * 7) & 0xFF for i in range(489))),
        ("max-payload-506", 0x00123456, b"\x5a" * 506),
        ("high-offset", 0xFFFF_FF00, b"\x00" * 14),
    ):
        frame = encode_data_frame(offset, payload)
        yield {
            "name": name,
            "offset": offset,
            "payload": payload.hex(),
            "crc16": crc16(frame[:-2]),
            "hex": frame.hex(),
        }
    good = encode_data_frame(238, b"\x01\x02\x03\x04")
    bad_crc = bytearray(good)
    bad_crc[5] ^= 0x10
    yield {"name": "bad-crc", "hex": bytes(bad_crc).hex(), "nack_reason": int(NackReason.BAD_CRC)}
    yield {"name": "trailing-byte", "hex": (good + b"\x00").hex(), "nack_reason": int(NackReason.BAD_CRC)}
    yield {"name": "no-payload", "hex": "00000000" + "ffff", "nack_reason": int(NackReason.BAD_LENGTH)}
    yield {"name": "too-short", "hex": "0000", "nack_reason": int(NackReason.BAD_LENGTH)}
    yield {"name": "too-long", "hex": (b"\x00" * 513).hex(), "nack_reason": int(NackReason.BAD_LENGTH)}


# --- Transcripts ----------------------------------------------------------------------------------------------


def transcript_image(size: int) -> bytes:
    """The deterministic image used by transcripts: byte i is (i * 31 + 7) mod 256, byte 0 forced to 0xE9."""
    image = bytearray((i * 31 + 7) & 0xFF for i in range(size))
    image[0] = 0xE9
    return bytes(image)


def _step(entry: TraceEntry) -> dict[str, object]:
    step: dict[str, object] = {"from": entry.sender, "channel": entry.channel}
    if entry.channel == "data":
        step["offset"] = int.from_bytes(entry.data[:4], "little")
        step["length"] = len(entry.data) - 6
    else:
        message_type = entry.data[0]
        body_length = int.from_bytes(entry.data[1:3], "little")
        if len(entry.data) == body_length + 5:
            cls = MESSAGE_CLASSES[MessageType(message_type)]
            step["message"] = cls.TYPE.name
            step["fields"] = fields_to_json(cls.decode_body(entry.data[3:-2]))
    if entry.dropped:
        step["dropped"] = True
    step["hex"] = entry.data.hex()
    return step


def _transcripts() -> Iterator[dict[str, object]]:
    max_write = 185
    window = 1024
    info = default_info(window_bytes=window)
    scenarios: list[tuple[str, str, int, dict[str, Any], dict[str, Any]]] = [
        (
            "full-transfer",
            "HELLO/INFO, BEGIN from 0, 3000 bytes in 179-byte frames within a 1024-byte window, ACK every 256 "
            "written bytes, FINISH, COMMIT, REBOOT.",
            3000,
            {},
            {"reboot": True},
        ),
        (
            "resume",
            "The first connection drops after 1024 bytes are acked; the second sends the same BEGIN and the board "
            "answers BEGIN_OK with the offset it has written.",
            3000,
            {},
            {"disconnect_at": 1024},
        ),
        (
            "retransmission-after-gap",
            "The frame at offset 537 is lost once. The board NACKs (GAP) the next frame, drops the rest of the "
            "frames in flight silently, and the bridge goes back to 537.",
            3000,
            {},
            {"faults": Faults(drop_data_offsets=frozenset({537}))},
        ),
        (
            "abort",
            "The bridge sends ABORT(CANCELLED) once 512 bytes are acked; the board discards the transfer.",
            3000,
            {},
            {"abort_at": 512},
        ),
        (
            "refused-low-battery",
            "The board refuses BEGIN with ERROR(LOW_BATTERY, retry_after_s=30).",
            3000,
            {"refuse_begin": ErrorCode.LOW_BATTERY},
            {"max_sessions": 1},
        ),
    ]
    for name, description, size, board_args, run_args in scenarios:
        image = transcript_image(size)
        board = ReferenceBoard(info, **board_args)
        trace = Trace()
        outcome = run_update(image, board, max_write_bytes=max_write, seed=1, trace=trace, **run_args)
        yield {
            "name": name,
            "description": description,
            "board": {key: value.name for key, value in board_args.items()},
            "max_write_bytes": max_write,
            "window_bytes": window,
            "ack_interval_bytes": window // 4,
            "image_size": size,
            "image_sha256": hashlib.sha256(image).hexdigest(),
            "image": "transcript_image(size): byte i = (i * 31 + 7) mod 256, byte 0 = 0xE9",
            "outcome": {
                "committed": outcome.committed,
                "error": None if outcome.error is None else outcome.error.name,
                "committed_sha256": None if board.committed_sha256 is None else board.committed_sha256.hex(),
            },
            "sessions": [[_step(entry) for entry in session] for session in trace.sessions],
        }
    yield _update_request_transcript()


def _update_request_transcript() -> dict[str, object]:
    """Board-initiated: UPDATE_REQUEST, UPDATE_AVAILABLE, UPDATE_ACCEPT, then the bridge sends BEGIN."""
    from protocol.connection import DEFAULT_BRIDGE_FEATURES, BridgeConnection

    board = ReferenceBoard(default_info(window_bytes=1024))
    board.connect(185)
    bridge = BridgeConnection(max_write_bytes=185)
    entries: list[TraceEntry] = []

    def to_board(datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            entries.append(TraceEntry("bridge", "control", datagram))
            board.conn.receive_control(datagram)
            to_bridge(board.process())

    def to_bridge(datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            entries.append(TraceEntry("board", "control", datagram))
            bridge.receive_control(datagram)

    to_board(bridge.send(Hello(features=DEFAULT_BRIDGE_FEATURES)))
    assert isinstance(bridge.next_event(), Info)
    unsolicited = len(entries)
    to_bridge(board.conn.send(UpdateRequest()))
    assert isinstance(bridge.next_event(), UpdateRequest)
    to_board(bridge.send(UpdateAvailable(size=3000, secure_version=0, version="2.0.0")))
    assert isinstance(bridge.next_event(), UpdateAccept)
    image = transcript_image(3000)
    to_board(bridge.send(Begin(size=3000, sha256=hashlib.sha256(image).digest(), version="2.0.0")))
    assert isinstance(bridge.next_event(), BeginOk)
    to_board(bridge.send(Abort(reason=ErrorCode.CANCELLED)))
    return {
        "name": "update-request",
        "description": "The board asks for an update; the bridge offers 2.0.0; the board accepts; the bridge "
        "sends BEGIN (then aborts, to keep the transcript short).",
        "board": {},
        "max_write_bytes": 185,
        "window_bytes": 1024,
        "ack_interval_bytes": 256,
        "image_size": 3000,
        "image_sha256": hashlib.sha256(image).hexdigest(),
        "image": "transcript_image(size): byte i = (i * 31 + 7) mod 256, byte 0 = 0xE9",
        "outcome": {"committed": False, "error": "CANCELLED", "committed_sha256": None},
        "sessions": [
            [_step(entry) | ({"unsolicited": True} if i == unsolicited else {}) for i, entry in enumerate(entries)]
        ],
    }


def _jsonl(records: Iterator[dict[str, object]]) -> str:
    return "".join(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n" for record in records)


def generated_vectors() -> dict[str, str]:
    """File name -> content of every vector file."""
    return {
        "messages.jsonl": _jsonl(_message_record(name, message) for name, message in _message_examples()),
        "errors.jsonl": _jsonl(_error_records()),
        "invalid.jsonl": _jsonl(_invalid_records()),
        "data_frames.jsonl": _jsonl(_data_frame_records()),
        "transcripts.jsonl": _jsonl(_transcripts()),
    }


# --- SPEC.md sections -----------------------------------------------------------------------------------------


def _enum_table(enum_type: type[enum.Enum], width: int) -> str:
    lines = ["| name | value |", "|---|---|"]
    for member in enum_type:
        lines.append(f"| `{member.name}` | `0x{int(member.value):0{width}X}` |")
    return "\n".join(lines)


def _message_type_table() -> str:
    lines = ["| type | name | sender | characteristic |", "|---|---|---|---|"]
    for message_type in MessageType:
        sender = SENDER[message_type]
        how = "control, write with response" if sender is Role.BRIDGE else "control, notification"
        lines.append(f"| `0x{int(message_type):02X}` | `{message_type.name}` | {sender.value} | {how} |")
    return "\n".join(lines)


def _error_table() -> str:
    lines = ["| code | name | receiver must | meaning and action |", "|---|---|---|---|"]
    for code in ErrorCode:
        recovery, text = ERROR_RECOVERY[code]
        lines.append(f"| `0x{int(code):02X}` | `{code.name}` | {recovery.value} | {text} |")
    return "\n".join(lines)


def generated_spec() -> dict[str, str]:
    """Section name -> generated Markdown, placed between ``<!-- generated:NAME -->`` markers in SPEC.md."""
    return {
        "message-types": _message_type_table(),
        "error-codes": _error_table(),
        "features": _enum_table(Feature, 8),
        "begin-flags": _enum_table(BeginFlags, 2),
        "nack-reasons": _enum_table(NackReason, 2),
        "no-update-reasons": _enum_table(NoUpdateReason, 2),
        "erase-strategies": _enum_table(EraseStrategy, 2),
        "rollback-states": _enum_table(RollbackState, 2),
        "update-results": _enum_table(UpdateResult, 2),
        "bridge-table": render_table(Role.BRIDGE),
        "board-table": render_table(Role.BOARD),
        "bridge-diagram": "```mermaid\n" + render_mermaid(Role.BRIDGE) + "\n```",
        "board-diagram": "```mermaid\n" + render_mermaid(Role.BOARD) + "\n```",
    }


_SECTION = re.compile(r"(<!-- generated:(?P<name>[a-z-]+) -->\n)(.*?)(<!-- /generated:(?P=name) -->)", re.DOTALL)


def render_spec(text: str) -> str:
    """``text`` with every generated section replaced by its current content."""
    sections = generated_spec()

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in sections:
            raise KeyError(f"SPEC.md has an unknown generated section {name!r}")
        return f"{match.group(1)}{sections[name]}\n{match.group(4)}"

    return _SECTION.sub(replace, text)


def main(argv: list[str]) -> int:
    """Write (or with ``--check`` compare) the vectors and SPEC.md's generated sections."""
    check = "--check" in argv
    stale: list[str] = []
    outputs = {VECTORS_DIR / name: content for name, content in generated_vectors().items()}
    outputs[SPEC_PATH] = render_spec(SPEC_PATH.read_text(encoding="utf-8"))
    for path, content in outputs.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        stale.append(str(path.relative_to(PROTOCOL_DIR.parent)))
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(content, encoding="utf-8")
            tmp.replace(path)
    if stale:
        print(("stale: " if check else "wrote: ") + ", ".join(stale))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
