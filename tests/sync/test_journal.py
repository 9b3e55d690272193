"""The journal survives a torn last line and keeps every complete record."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.journal import AttemptResult, Journal, JournalEntry


def _entry(n: int, result: AttemptResult = AttemptResult.CONFIRMED) -> JournalEntry:
    return JournalEntry(
        board=f"AA:BB:CC:00:00:{n:02X}",
        result=result,
        from_version="1",
        to_version="2",
        bytes_total=1000 + n,
        bytes_sent=1200 + n,
        duration_s=1.5,
    )


def test_round_trip(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "sub" / "journal.jsonl")
    journal.append(_entry(1))
    journal.append(_entry(2, AttemptResult.ROLLED_BACK))
    entries = list(journal.entries())
    assert [e.board for e in entries] == ["AA:BB:CC:00:00:01", "AA:BB:CC:00:00:02"]
    assert entries[1].result is AttemptResult.ROLLED_BACK
    assert entries[1].bytes_sent == 1202
    assert journal.tail(1) == [entries[1]]


def test_torn_last_line_is_skipped_and_next_append_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.append(_entry(1))
    full = _entry(2).to_json()
    with path.open("a", encoding="utf-8") as handle:
        handle.write(full[: len(full) // 2])  # a crash in the middle of a write
    assert [e.bytes_total for e in journal.entries()] == [1001]
    journal.append(_entry(3))
    assert [e.bytes_total for e in journal.entries()] == [1001, 1003]
    assert path.read_text(encoding="utf-8").count("\n") == 3


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert list(Journal(tmp_path / "none.jsonl").entries()) == []


def test_entry_validation() -> None:
    with pytest.raises(ValueError):
        JournalEntry(board="", result=AttemptResult.FAILED)
    with pytest.raises(ValueError):
        JournalEntry(board="b", result="exploded")  # type: ignore[arg-type]
