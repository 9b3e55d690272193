"""The "newer" rule (docs/SERVER.md) and the validation of signed release facts, without any I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.source import Release, UpdateStatus, decide, version_key
from bridge.source.release import release_from_target

from .conftest import board

SHA = "ab" * 32


def rel(
    number: int,
    version: str,
    *,
    groups: tuple[str, ...] = (),
    secure: int = 0,
    chip: int = 5,
    channel: str = "stable",
    project: str = "blinky",
    elf: str = "",
) -> Release:
    return Release(
        project=project,
        chip=chip,
        version=version,
        release_number=number,
        channel=channel,
        secure_version=secure,
        size=1000,
        sha256=SHA,
        target_path=f"{project}/x/{number}.bin",
        groups=groups,
        elf_sha256=elf,
    )


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("1", "2"),
        ("1", "1.0.1"),
        ("v1.9", "1.10"),
        ("1.2.0-rc.1", "1.2.0"),
        ("1.2.0-beta.2", "1.2.0-rc.1"),
        ("1.2.0-dev", "1.2.0-alpha"),
        ("v1.4.1", "v1.4.1-2-g0296947-dirty"),
        ("v1.4.1-2-g0296947", "v1.4.1-10-gabcdef0"),
        ("v1.4.1-2-g0296947-dirty", "v1.4.2"),
        ("2024.1.15", "2024.2.1"),
    ],
)
def test_version_key_orders_version_like_strings(low: str, high: str) -> None:
    low_key, high_key = version_key(low), version_key(high)
    assert low_key is not None and high_key is not None
    assert low_key < high_key


@pytest.mark.parametrize(("a", "b"), [("1.2", "v1.2.0"), ("V3", "3.0.0.0"), ("1.4.1-dirty", "1.4.1")])
def test_version_key_equal_spellings(a: str, b: str) -> None:
    assert version_key(a) == version_key(b)


@pytest.mark.parametrize(
    "free_form",
    [
        "",
        "9036908-dirty",
        "esp-idf: v4.4.4 e8bdaf9198",
        "qa-test-v5.0-20220830-4-g4532e6",
        "latest",
        "1.2.3.4.5",
        "1..2",
    ],
)
def test_free_form_versions_have_no_key(free_form: str) -> None:
    assert version_key(free_form) is None


@given(st.text(max_size=40))
def test_version_key_never_raises(text: str) -> None:
    key = version_key(text)
    assert key is None or len(key) == 7


def test_known_running_release_is_compared_by_release_number() -> None:
    releases = [rel(1, "v2.0"), rel(2, "v1.0-hotfix"), rel(3, "weird build")]
    decision = decide(board("v2.0"), releases)
    assert decision.status is UpdateStatus.UPDATE_AVAILABLE and decision.release == releases[2]
    assert decision.running == releases[0]
    assert decision.reason == "release 3 (weird build) is newer than the running release 1 (v2.0)"
    assert decide(board("weird build"), releases).status is UpdateStatus.UP_TO_DATE


def test_unknown_running_version() -> None:
    releases = [rel(1, "1.0"), rel(2, "1.1")]
    offered = decide(board("1.0.7"), releases)
    assert offered.status is UpdateStatus.UPDATE_AVAILABLE and offered.release == releases[1]
    assert offered.running is None and "unknown to the server" in offered.reason
    ahead = decide(board("v1.1-3-g0123abc-dirty"), releases)
    assert ahead.status is UpdateStatus.BOARD_AHEAD and ahead.release is None and ahead.newest == releases[1]
    same = decide(board("v1.1.0"), releases)
    assert same.status is UpdateStatus.UP_TO_DATE
    for free in ("", "factory", "9036908-dirty"):
        decision = decide(board(free), releases)
        assert decision.status is UpdateStatus.UPDATE_AVAILABLE and decision.release == releases[1]
    assert decide(board("factory"), releases, offer_to_unknown=False).status is UpdateStatus.BOARD_AHEAD


def test_elf_sha256_wins_over_the_version_string() -> None:
    elf = "cd" * 32
    releases = [rel(1, "1.0", elf=elf), rel(2, "1.0-other", elf="ef" * 32)]
    decision = decide(board("1.0-other", elf_sha256=elf.upper()), releases)
    assert decision.running == releases[0] and decision.release == releases[1]
    prefix = decide(board("?", elf_sha256=elf[:16]), releases)
    assert prefix.running == releases[0]
    zero = decide(board("1.0-other", elf_sha256="0" * 64), [rel(1, "1.0", elf="0" * 64), releases[1]])
    assert zero.running is not None and zero.running.version == "1.0-other"


def test_groups_secure_version_and_board_ahead() -> None:
    releases = [rel(1, "1.0"), rel(2, "1.1-pilot", groups=("aa:bb:cc:dd:ee:ff",)), rel(3, "1.2", secure=2)]
    assert decide(board("1.0", board_id="AA:BB:CC:DD:EE:FF", secure_version=3), releases).status is (
        UpdateStatus.NO_RELEASE
    )
    pilot = decide(board("1.1-pilot", board_id="other"), releases[:2])
    assert pilot.status is UpdateStatus.BOARD_AHEAD and pilot.running == releases[1]
    low = decide(board("1.0", secure_version=3), releases)
    assert low.status is UpdateStatus.NO_RELEASE and "secure_version below the board's 3" in low.reason
    empty = decide(board("1.0", project="doorbell"), releases)
    assert (
        empty.reason
        == "the server has no confirmed release of 'doorbell' on ESP32-C3 in channel 'stable' for board board-1"
    )


def test_release_from_target_checks_types() -> None:
    custom = {"project": "blinky", "chip": 5, "version": "1.0", "release": 1, "channel": "stable", "confirmed": True}
    release = release_from_target("blinky/a.bin", 10, {"sha256": SHA}, custom)
    assert release is not None and (release.release_number, release.secure_version, release.groups) == (1, 0, ())
    assert release_from_target("index.json", 10, {"sha256": SHA}, None) is None
    assert release_from_target("b.bin", 10, {"sha256": SHA}, {**custom, "confirmed": False}) is None
    for bad in (
        {"chip": "5"},
        {"release": True},
        {"release": 0},
        {"groups": "bench"},
        {"groups": [1]},
        {"channel": "../x"},
        {"secure_version": -1},
        {"version": ""},
        {"confirmed": "yes"},
    ):
        with pytest.raises((ValueError, TypeError)):
            release_from_target("blinky/a.bin", 10, {"sha256": SHA}, {**custom, **bad})
    with pytest.raises(ValueError, match="invalid target path"):
        release_from_target("../a.bin", 10, {"sha256": SHA}, custom)
    with pytest.raises(ValueError, match="no sha256"):
        release_from_target("a.bin", 10, {"sha512": SHA}, custom)
    assert Release.from_dict(release.to_dict()) == release
