"""Deciding whether a release is newer than what a board runs (the rule documented in docs/SERVER.md).

Version strings on ESP32 boards are free-form (``v1.4.1-2-g0296947-dirty``, ``1``, empty, ``esp-idf: v4.4.4
e8bdaf9198``), so the order of releases never comes from parsing them: it comes from the **release number** the
repository assigns when a release is confirmed, which only grows per project and channel. A version string is only
used to *recognise* which release a board runs:

1. Candidates are the confirmed releases of the board's project, chip and channel that are meant for it (for
   everyone, or for a group naming its board id) and whose ``secure_version`` is at least the board's (the board's
   anti-rollback would refuse a lower one). The best candidate has the highest release number.
2. The running release is found by the board's app ELF SHA-256 first, then by its exact version string, among all
   releases of that project, chip and channel.
3. Known running release: the best candidate is offered if its release number is higher; equal means up to date;
   lower means the board is ahead (e.g. it was in a pilot group that was later dropped), and nothing is offered.
4. Unknown running release (a developer build, a factory image, an empty version): if both version strings look
   like versions (``[v]X[.Y[.Z[.W]]]``, optional ``-rc.N``/``-beta.N``, optional git-describe ``-N-gHASH`` and
   ``-dirty``), a board whose version sorts above the candidate's is left alone (board ahead) and an equal one is
   up to date; otherwise the newest candidate is offered, because the repository's newest confirmed release is
   what a board of this project should run. ``SourceConfig.offer_to_unknown=False`` turns this last case into
   "no update".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from bridge.source.release import BoardIdentity, Release

__all__ = ["UpdateDecision", "UpdateStatus", "chip_label", "decide", "find_running", "version_key"]

_VERSION_RE = re.compile(
    r"""^[vV]?
    (?P<main>\d{1,6}(?:\.\d{1,6}){0,3})
    (?:[-.~]?(?P<pre>alpha|beta|rc|pre|dev|a|b)[.-]?(?P<pre_n>\d{1,6})?)?
    (?:-(?P<commits>\d{1,6})-g[0-9a-f]{4,40})?
    (?:-dirty)?$""",
    re.VERBOSE,
)
_PRE_RANK = {"dev": 0, "a": 1, "alpha": 1, "b": 2, "beta": 2, "pre": 3, "rc": 3}
_ZERO_SHA = "0" * 64


def version_key(version: str) -> tuple[int, ...] | None:
    """A sort key for version-like strings, or ``None`` when ``version`` is free-form.

    ``1.2`` == ``v1.2.0``; ``1.2.0-rc.1`` < ``1.2.0`` < ``v1.2.0-3-gabcdef0`` (3 commits after the tag). A lone
    number of 7 or more digits is not a version (it is usually an abbreviated git hash such as ``9036908``).
    """
    match = _VERSION_RE.match(version.strip())
    if match is None:
        return None
    main = [int(part) for part in match["main"].split(".")]
    if len(main) == 1 and len(match["main"]) >= 7:
        return None
    main += [0] * (4 - len(main))
    pre = match["pre"]
    pre_rank = _PRE_RANK[pre.lower()] if pre else 9
    pre_n = int(match["pre_n"] or 0)
    commits = int(match["commits"] or 0)
    return (*main, pre_rank, pre_n, commits)


class UpdateStatus(StrEnum):
    UPDATE_AVAILABLE = "update_available"
    """A release newer than what the board runs is meant for it."""
    UP_TO_DATE = "up_to_date"
    """The board runs the newest release meant for it."""
    BOARD_AHEAD = "board_ahead"
    """The board runs something newer than every release meant for it; it is left alone."""
    NO_RELEASE = "no_release"
    """No confirmed release exists for this board's project, chip and channel."""


@dataclass(frozen=True)
class UpdateDecision:
    status: UpdateStatus
    release: Release | None
    """The release to install (only with ``UPDATE_AVAILABLE``), else ``None``."""
    running: Release | None
    """The release the board runs, when the repository knows it."""
    newest: Release | None
    """The newest release meant for the board (even when it is not newer than what it runs)."""
    reason: str


def _elf_matches(board_elf: str, release_elf: str) -> bool:
    if not board_elf or board_elf == _ZERO_SHA or not release_elf or release_elf == _ZERO_SHA:
        return False
    # Boards sometimes report a prefix (ESP-IDF prints 16 hex digits by default); 16 is the shortest accepted.
    return len(board_elf) >= 16 and release_elf.startswith(board_elf)


def find_running(board: BoardIdentity, known: Iterable[Release]) -> Release | None:
    """The release ``board`` runs: matched by ELF SHA-256 first, then by exact version string."""
    same = [r for r in known if r.project == board.project and r.chip == board.chip and r.channel == board.channel]
    by_elf = [r for r in same if _elf_matches(board.elf_sha256, r.elf_sha256)]
    if by_elf:
        return max(by_elf, key=lambda r: r.release_number)
    by_version = [r for r in same if board.version and r.version == board.version]
    if by_version:
        return max(by_version, key=lambda r: r.release_number)
    return None


def chip_label(chip: int) -> str:
    """``ESP32-C3`` for a chip id the image module names, else ``chip 42`` (never a bare number in a sentence)."""
    from bridge.image import Chip

    try:
        return Chip(chip).display_name
    except ValueError:
        return f"chip {chip}"


def decide(
    board: BoardIdentity,
    releases: Iterable[Release],
    *,
    known: Iterable[Release] | None = None,
    offer_to_unknown: bool = True,
    offline: bool = False,
) -> UpdateDecision:
    """Apply the rule in the module docstring.

    ``releases`` are the candidates; ``known`` (default: the same) are used to recognise the running release.
    ``offline``: they come from the offline cache, not the server (the reasons say so).
    """
    unknown = "not in the offline cache" if offline else "unknown to the server"
    holder = "the offline cache" if offline else "the server"
    releases = list(releases)
    known = releases if known is None else list(known)
    where = f"{board.project!r} on {chip_label(board.chip)} in channel {board.channel!r}"
    mine = [
        r
        for r in releases
        if r.project == board.project
        and r.chip == board.chip
        and r.channel == board.channel
        and r.meant_for(board.board_id)
    ]
    running = find_running(board, known)
    installable = [r for r in mine if r.secure_version >= board.secure_version]
    if not installable:
        if mine:
            reason = (
                f"every release of {where} has a secure_version below the board's {board.secure_version}; "
                "its anti-rollback would refuse them"
            )
        else:
            reason = f"{holder} has no confirmed release of {where} for board {board.board_id}"
        return UpdateDecision(UpdateStatus.NO_RELEASE, None, running, None, reason)
    best = max(installable, key=lambda r: r.release_number)
    if running is not None:
        if best.release_number > running.release_number:
            return UpdateDecision(
                UpdateStatus.UPDATE_AVAILABLE,
                best,
                running,
                best,
                f"release {best.release_number} ({best.version}) is newer than the running release "
                f"{running.release_number} ({running.version})",
            )
        if best.release_number == running.release_number:
            return UpdateDecision(
                UpdateStatus.UP_TO_DATE, None, running, best, f"the board runs the newest release ({best.version})"
            )
        return UpdateDecision(
            UpdateStatus.BOARD_AHEAD,
            None,
            running,
            best,
            f"the board runs release {running.release_number} ({running.version}), newer than release "
            f"{best.release_number} ({best.version}), the newest meant for it",
        )
    board_key = version_key(board.version) if board.version else None
    best_key = version_key(best.version)
    if board_key is not None and best_key is not None:
        if board_key > best_key:
            return UpdateDecision(
                UpdateStatus.BOARD_AHEAD,
                None,
                None,
                best,
                f"the board runs {board.version!r}, {unknown} but above its newest release {best.version!r}",
            )
        if board_key == best_key:
            return UpdateDecision(
                UpdateStatus.UP_TO_DATE,
                None,
                None,
                best,
                f"the board runs {board.version!r}, the same version as release {best.release_number}",
            )
    if not offer_to_unknown:
        return UpdateDecision(
            UpdateStatus.BOARD_AHEAD,
            None,
            None,
            best,
            f"the board runs {board.version!r}, {unknown}, and offers to unknown versions are off",
        )
    shown = repr(board.version) if board.version else "an empty version"
    return UpdateDecision(
        UpdateStatus.UPDATE_AVAILABLE,
        best,
        None,
        best,
        f"the board runs {shown}, {unknown}; its newest release {best.release_number} ({best.version}) is offered",
    )
