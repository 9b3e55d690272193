"""Hostile input through the real CLI: every negative corpus image to `bridge push` and `bridge repo add`, odd
files, malformed configuration, unknown boards, nonsense flags. Each ends with the documented exit code, a message
and a hint, and no traceback; a refused image never reaches the radio and never changes the repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.journal import AttemptResult, Journal
from bridge.repo import Repository
from tests.conftest import firmware_dir

from .inputs import InputTrial, VirtualRadio, input_trials, run_input_trial, virtual_radio

TRIALS = input_trials(firmware_dir())


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = Repository(tmp_path_factory.mktemp("inputs") / "repo")
    repository.init()
    return repository.path


@pytest.fixture(scope="module")
def radio() -> Iterator[VirtualRadio]:
    with virtual_radio() as started:
        yield started


@pytest.mark.parametrize("trial", TRIALS, ids=[f"{t.fault_class}: {t.name}" for t in TRIALS])
def test_hostile_input_ends_with_a_message_a_hint_and_the_documented_code(
    trial: InputTrial, repo: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    radio: VirtualRadio | None = request.getfixturevalue("radio") if trial.radio else None
    result = run_input_trial(trial, tmp_path, repo=repo, radio=radio)
    assert result.ok, result.explain()
    assert result.exit_code in trial.exit_codes


def test_every_negative_corpus_image_is_a_trial(firmware: Path) -> None:
    names = sorted(p.name for p in firmware.glob("[NC][0-9][0-9]_*.bin"))
    assert len(names) == 10  # N01-N03, N05-N08, C01-C03 (MANIFEST.md)
    pushed = [t.name for t in TRIALS if t.fault_class == "input: wrong image to `bridge push`"]
    added = [t.name for t in TRIALS if t.fault_class == "input: wrong image to `bridge repo add`"]
    assert pushed == added == names


def test_a_refused_push_is_journaled_and_touches_no_radio(firmware: Path, repo: Path, tmp_path: Path) -> None:
    trial = next(t for t in TRIALS if t.name.startswith("N03_"))
    result = run_input_trial(trial, tmp_path, repo=repo, radio=None)
    assert result.exit_code == 6 and "merged full-flash image" in result.message
    # No radio exists here: had the push gone past the check it would have failed with exit 4 or 5 instead.
    entries = list(Journal(tmp_path / "data" / "journal.jsonl").entries())
    assert [(e.result, e.bytes_sent) for e in entries] == [(AttemptResult.REFUSED, 0)]


def test_an_unknown_board_name_is_named_in_the_message(radio: VirtualRadio, repo: Path, tmp_path: Path) -> None:
    trial = next(t for t in TRIALS if t.name == "push to a name no board advertises")
    result = run_input_trial(trial, tmp_path, repo=repo, radio=radio)
    assert result.exit_code == 4 and "no-such-board" in result.message
    assert "bridge scan" in result.hint
