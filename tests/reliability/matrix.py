"""The fault matrix's shared vocabulary: outcomes, trial records, the per-class summary and its Markdown table.

Every trial of every fault class (wire, board, server, input) ends in one :class:`TrialResult`. Its
:class:`Outcome` says how the fault ended, from the user's side *and* the board's:

* ``new``: the board runs the new image and the bridge said so (for a server trial: the verified image is cached);
* ``old``: the board runs the old image and the bridge said so (it rolled back, exit 8);
* ``abort``: the bridge stopped with one clear message, a hint and its documented exit code; the board still
  boots (it runs the old image, or the new one when the fault hit after the boot switch);
* ``bricked``: the board boots neither image;
* ``traceback``: an exception outside :class:`bridge.errors.BridgeError` escaped, or a task died with one;
* ``wrong``: the bridge's report disagrees with the board (said confirmed, runs old), or a message lacks its
  hint, or the exit code is not the documented one;
* ``hang``: the trial did not end within its bound.

The first three are good endings; a trial also lists which of them it *expects*, so a fault that should be
survived (a dropped frame) fails the suite if it only ends in a clean abort. ``corrupt_files`` counts cache
files that are not what they claim (see :mod:`tests.reliability.server`).

The modules beside this one hold the trial catalogues and runners; ``scripts/fault-matrix`` runs the full matrix
and writes the table into docs/RELIABILITY.md; the tests in this folder run a bounded part on every CI run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum

__all__ = [
    "GOOD",
    "ClassSummary",
    "ErrorLog",
    "Outcome",
    "TrialResult",
    "capture_errors",
    "check_message",
    "markdown_table",
    "summarise",
]


class Outcome(StrEnum):
    NEW = "new"
    OLD = "old"
    ABORT = "abort"
    BRICKED = "bricked"
    TRACEBACK = "traceback"
    WRONG = "wrong"
    HANG = "hang"


GOOD = frozenset({Outcome.NEW, Outcome.OLD, Outcome.ABORT})


@dataclass(frozen=True)
class TrialResult:
    """How one trial ended. ``board`` is the image the board boots afterwards: new, old, none (or "" for n/a)."""

    fault_class: str
    name: str
    outcome: Outcome
    expected: frozenset[Outcome] = GOOD
    exit_code: int | None = None
    message: str = ""
    hint: str = ""
    board: str = ""
    detail: str = ""
    corrupt_files: int = 0
    rerun: Outcome | None = None
    """After a clean abort, the same command run again without the fault (what the hint tells a person to do)."""
    resumed_from: tuple[int, ...] = ()
    """Offsets the transfer resumed from after a reconnection (0 when the board restarted it)."""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in self.expected and self.corrupt_files == 0 and self.rerun in (None, Outcome.NEW)

    def explain(self) -> str:
        """One line for a failing assertion or the script's log."""
        parts = [f"{self.fault_class} / {self.name}: {self.outcome}"]
        if self.outcome not in self.expected:
            parts.append(f"(expected {', '.join(sorted(self.expected))})")
        if self.exit_code is not None:
            parts.append(f"exit {self.exit_code}")
        if self.board:
            parts.append(f"board runs {self.board}")
        if self.rerun is not None:
            parts.append(f"re-run: {self.rerun}")
        if self.corrupt_files:
            parts.append(f"{self.corrupt_files} corrupt cache files")
        if self.message:
            parts.append(f"message: {self.message!r}")
        if self.detail:
            parts.append(f"[{self.detail}]")
        return " ".join(parts)

    def to_json(self) -> str:
        data = asdict(self)
        data["expected"] = sorted(self.expected)
        return json.dumps(data, sort_keys=True)


def check_message(message: str, hint: str, exit_code: int | None, expected_codes: Iterable[int]) -> str:
    """Why a user-facing failure is not a clean one ("" when it is): it needs a message, a hint and the right code."""
    problems = []
    if not message.strip():
        problems.append("no message")
    if not hint.strip():
        problems.append("no hint")
    if "Traceback (most recent call last)" in message + hint:
        problems.append("a traceback")
    codes = set(expected_codes)
    if codes and exit_code not in codes:
        problems.append(f"exit code {exit_code}, documented {sorted(codes)}")
    return ", ".join(problems)


# --- Errors logged behind the caller's back ---------------------------------------------------------------------


@dataclass
class ErrorLog:
    """Log records at ERROR or above seen during a trial (a task that died, an exception nobody retrieved)."""

    records: list[logging.LogRecord] = field(default_factory=list)

    @property
    def tracebacks(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records if r.exc_info or "Traceback" in r.getMessage()]


class _Collector(logging.Handler):
    def __init__(self, log: ErrorLog) -> None:
        super().__init__(logging.ERROR)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.records.append(record)


@contextmanager
def capture_errors() -> Iterator[ErrorLog]:
    """Collect ERROR records of every logger for the duration of the block."""
    log = ErrorLog()
    handler = _Collector(log)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield log
    finally:
        root.removeHandler(handler)


# --- Figures ------------------------------------------------------------------------------------------------------


@dataclass
class ClassSummary:
    fault_class: str
    trials: int = 0
    new: int = 0
    old: int = 0
    abort: int = 0
    bricked: int = 0
    tracebacks: int = 0
    wrong: int = 0
    hangs: int = 0
    corrupt_files: int = 0
    reruns: int = 0
    reruns_new: int = 0
    unexpected: int = 0
    duration_s: float = 0.0
    exit_codes: dict[int, int] = field(default_factory=dict)

    def add(self, result: TrialResult) -> None:
        self.trials += 1
        attribute = {
            Outcome.NEW: "new",
            Outcome.OLD: "old",
            Outcome.ABORT: "abort",
            Outcome.BRICKED: "bricked",
            Outcome.TRACEBACK: "tracebacks",
            Outcome.WRONG: "wrong",
            Outcome.HANG: "hangs",
        }[result.outcome]
        setattr(self, attribute, getattr(self, attribute) + 1)
        self.corrupt_files += result.corrupt_files
        if result.rerun is not None:
            self.reruns += 1
            self.reruns_new += result.rerun is Outcome.NEW
        if not result.ok:
            self.unexpected += 1
        self.duration_s += result.duration_s
        if result.exit_code:
            self.exit_codes[result.exit_code] = self.exit_codes.get(result.exit_code, 0) + 1


def summarise(results: Iterable[TrialResult]) -> list[ClassSummary]:
    """One summary per fault class, in the order the classes first appear, and a total row last."""
    by_class: dict[str, ClassSummary] = {}
    total = ClassSummary("**all**")
    for result in results:
        by_class.setdefault(result.fault_class, ClassSummary(result.fault_class)).add(result)
        total.add(result)
    return [*by_class.values(), total]


def markdown_table(summaries: list[ClassSummary]) -> str:
    """The figures table of docs/RELIABILITY.md."""
    header = (
        "| fault class | trials | new image running | old image running | clean abort with message "
        "| re-run after abort ends new | bricked | tracebacks | wrong reports | hangs | corrupt cache files "
        "| unexpected | exit codes seen | time (s) |"
    )
    lines = [header, "|" + "---|" * 14]
    for s in summaries:
        codes = ", ".join(f"{code}×{count}" for code, count in sorted(s.exit_codes.items())) or "-"
        reruns = f"{s.reruns_new}/{s.reruns}" if s.reruns else "-"
        lines.append(
            f"| {s.fault_class} | {s.trials} | {s.new} | {s.old} | {s.abort} | {reruns} | {s.bricked} "
            f"| {s.tracebacks} | {s.wrong} | {s.hangs} | {s.corrupt_files} | {s.unexpected} | {codes} "
            f"| {s.duration_s:.1f} |"
        )
    return "\n".join(lines)


class Stopwatch:
    """``with Stopwatch() as watch: ...; watch.elapsed_s``."""

    def __enter__(self) -> Stopwatch:
        self.start = time.monotonic()
        self.elapsed_s = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed_s = time.monotonic() - self.start
