"""The language-neutral vectors in protocol/vectors/: current, complete, and true for this implementation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from proto_helpers import decode_stream, split_three_ways

from protocol import (
    BoardConnection,
    BridgeConnection,
    ControlDecoder,
    DataFrameError,
    ErrorCode,
    MessageType,
    NackReason,
    RemoteProtocolError,
    decode_data_frame,
    decode_message,
    encode_data_frame,
    encode_message,
)
from protocol._generate import (
    PROTOCOL_DIR,
    SPEC_PATH,
    VECTORS_DIR,
    generated_vectors,
    message_from_json,
    render_spec,
    transcript_image,
)
from protocol.reference import ReferenceBoard, default_info


def load(name: str) -> list[dict[str, Any]]:
    lines = (VECTORS_DIR / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


MESSAGES = load("messages.jsonl") + load("errors.jsonl")


def test_committed_vectors_are_current() -> None:
    expected = generated_vectors()
    assert sorted(p.name for p in VECTORS_DIR.glob("*.jsonl")) == sorted(expected)
    for name, content in expected.items():
        assert (VECTORS_DIR / name).read_text(encoding="utf-8") == content, (
            f"{name} is stale: run python -m protocol._generate"
        )


def test_spec_generated_sections_are_current() -> None:
    text = SPEC_PATH.read_text(encoding="utf-8")
    assert render_spec(text) == text, "SPEC.md is stale: run python -m protocol._generate"
    for section in ("bridge-diagram", "board-diagram", "bridge-table", "board-table", "error-codes"):
        assert f"<!-- generated:{section} -->" in text


def test_vectors_cover_every_message_type_and_error_code() -> None:
    assert {record["message"] for record in MESSAGES} == {t.name for t in MessageType}
    assert {record["code_name"] for record in load("errors.jsonl")} == {c.name for c in ErrorCode}
    assert {record["nack_reason"] for record in load("data_frames.jsonl") if "nack_reason" in record} >= {
        int(NackReason.BAD_CRC),
        int(NackReason.BAD_LENGTH),
    }
    names = [record["name"] for record in MESSAGES]
    assert len(names) == len(set(names))
    transcripts = {record["name"] for record in load("transcripts.jsonl")}
    assert {"full-transfer", "resume", "retransmission-after-gap", "abort"} <= transcripts


@pytest.mark.parametrize("record", MESSAGES, ids=lambda r: r["name"])
def test_message_vector_encodes_and_decodes(record: dict[str, Any]) -> None:
    message = message_from_json(record["message"], record["fields"])
    raw = bytes.fromhex(record["hex"])
    assert encode_message(message).hex() == record["hex"]
    assert raw[0] == record["type"]
    for how, chunks in split_three_ways(raw):
        decoded, left = decode_stream(chunks)
        assert decoded == [message], how
        assert left == (6 if how == "trailing" else 0), how


@pytest.mark.parametrize("record", load("invalid.jsonl"), ids=lambda r: r["name"])
def test_invalid_control_vector_is_refused(record: dict[str, Any]) -> None:
    raw = bytes.fromhex(record["hex"])
    for how, chunks in split_three_ways(raw):
        decoder = ControlDecoder()
        with pytest.raises(RemoteProtocolError) as info:
            for chunk in chunks:
                decoder.feed(chunk)
                while (item := decoder.next_message()) is not None:
                    decode_message(*item)
            raise AssertionError(f"{how}: accepted")
        assert info.value.code is ErrorCode[record["error"]], how


@pytest.mark.parametrize("record", load("invalid.jsonl"), ids=lambda r: r["name"])
def test_invalid_control_vector_makes_the_board_answer_error(record: dict[str, Any]) -> None:
    """A board that receives these answers ERROR(code) at once."""
    board = BoardConnection()
    board.receive_control(bytes.fromhex(record["hex"]))
    replies, _ = decode_stream(board.data_to_send())
    assert [(r.TYPE, r.code) for r in replies] == [(MessageType.ERROR, ErrorCode[record["error"]])]  # type: ignore[attr-defined]
    with pytest.raises(RemoteProtocolError):
        board.next_event()


@pytest.mark.parametrize("record", load("data_frames.jsonl"), ids=lambda r: r["name"])
def test_data_frame_vector(record: dict[str, Any]) -> None:
    raw = bytes.fromhex(record["hex"])
    if "nack_reason" in record:
        with pytest.raises(DataFrameError) as info:
            decode_data_frame(raw)
        assert info.value.reason == record["nack_reason"]
        return
    payload = bytes.fromhex(record["payload"])
    assert encode_data_frame(record["offset"], payload) == raw
    frame = decode_data_frame(raw)
    assert (frame.offset, frame.payload) == (record["offset"], payload)
    assert int.from_bytes(raw[-2:], "little") == record["crc16"]


TRANSCRIPTS = load("transcripts.jsonl")


@pytest.mark.parametrize("record", TRANSCRIPTS, ids=lambda r: r["name"])
def test_transcript_board_side_replays_exactly(record: dict[str, Any]) -> None:
    """Feeding the bridge's datagrams to a fresh board reproduces the board's notifications byte for byte."""
    options: dict[str, Any] = {key: ErrorCode[value] for key, value in record["board"].items()}
    board = ReferenceBoard(default_info(window_bytes=record["window_bytes"]), **options)
    for session in record["sessions"]:
        board.connect(record["max_write_bytes"])
        produced: list[str] = []
        recorded: list[str] = []
        for step in session:
            if step["from"] == "board":
                recorded.append(step["hex"])
                if step.get("unsolicited"):  # the board application speaks first
                    message = message_from_json(step["message"], step["fields"])
                    produced += [d.hex() for d in board.conn.send(message)]  # type: ignore[arg-type]
                continue
            if step.get("dropped"):
                continue
            raw = bytes.fromhex(step["hex"])
            if step["channel"] == "control":
                board.conn.receive_control(raw)
            else:
                board.conn.receive_data(raw)
            produced += [d.hex() for d in board.process()]
        # The recorded session may stop before every notification was delivered.
        assert produced[: len(recorded)] == recorded
    if record["outcome"]["committed"]:
        image = transcript_image(record["image_size"])
        assert hashlib.sha256(image).hexdigest() == record["image_sha256"] == record["outcome"]["committed_sha256"]


@pytest.mark.parametrize("record", TRANSCRIPTS, ids=lambda r: r["name"])
def test_transcript_steps_decode(record: dict[str, Any]) -> None:
    """Every annotated step matches its bytes; every data step is a valid frame of the image."""
    image = transcript_image(record["image_size"])
    for session in record["sessions"]:
        for step in session:
            raw = bytes.fromhex(step["hex"])
            if step["channel"] == "data":
                frame = decode_data_frame(raw)
                assert frame.offset == step["offset"]
                assert frame.payload == image[frame.offset : frame.offset + step["length"]]
            elif "message" in step:
                assert encode_message(message_from_json(step["message"], step["fields"])) == raw


def test_transcript_gap_shows_one_nack_and_a_go_back() -> None:
    (record,) = [r for r in TRANSCRIPTS if r["name"] == "retransmission-after-gap"]
    (session,) = record["sessions"]
    dropped = [s for s in session if s.get("dropped")]
    assert [(s["channel"], s["offset"]) for s in dropped] == [("data", 537)]
    nacks = [s for s in session if s.get("message") == "NACK"]
    assert [n["fields"] for n in nacks] == [{"next_offset": 537, "reason": int(NackReason.GAP)}]
    offsets = [s["offset"] for s in session if s["channel"] == "data"]
    assert offsets.count(537) == 2


def test_transcript_resume_continues_from_the_board_offset() -> None:
    (record,) = [r for r in TRANSCRIPTS if r["name"] == "resume"]
    first, second = record["sessions"]
    acked = max(s["fields"]["next_offset"] for s in first if s.get("message") == "ACK")
    begin_oks = [s["fields"] for s in second if s.get("message") == "BEGIN_OK"]
    assert begin_oks == [{"offset": acked, "window_bytes": record["window_bytes"]}]
    assert min(s["offset"] for s in second if s["channel"] == "data") == acked


def test_bridge_connection_accepts_the_transcript_notifications() -> None:
    """The bridge side, fed the recorded notifications in order, raises nothing and sees the outcome."""
    (record,) = [r for r in TRANSCRIPTS if r["name"] == "full-transfer"]
    bridge = BridgeConnection(max_write_bytes=record["max_write_bytes"])
    seen: list[str] = []
    for step in record["sessions"][0]:
        if step["from"] == "bridge":
            if step["channel"] == "control":
                bridge.send(message_from_json(step["message"], step["fields"]))  # type: ignore[arg-type]
            else:
                assert bridge.next_data_range() is not None
            continue
        bridge.receive_control(bytes.fromhex(step["hex"]))
        while (event := bridge.next_event()) is not None:
            seen.append(event.TYPE.name)
    assert seen[0] == "INFO" and seen[1] == "BEGIN_OK" and seen[-3:] == ["FINISH_OK", "COMMIT_OK", "REBOOT_OK"]


def test_vector_files_live_in_the_package() -> None:
    assert Path(VECTORS_DIR).parent == PROTOCOL_DIR
