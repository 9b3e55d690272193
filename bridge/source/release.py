"""Firmware facts shared by the repository tooling and the update source.

A release is one TUF target file. What the bridge needs to know about it (project, chip, version, release number,
...) sits in the target's ``custom`` metadata, which the targets key signs together with the file's length and
SHA-256. python-tuf never looks inside ``custom``, so :func:`release_from_target` checks every type and range
before the bridge believes it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "CUSTOM_FORMAT",
    "INDEX_PATH",
    "BoardIdentity",
    "Release",
    "check_board_id",
    "check_channel",
    "path_component",
    "release_from_target",
]

#: Version of the ``custom`` schema written by ``bridge repo``.
CUSTOM_FORMAT = 1
#: Target path of the signed list of confirmed releases (see docs/SERVER.md).
INDEX_PATH = "index.json"

_CHANNEL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
_BOARD_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_TARGET_PATH_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")

#: esp_app_desc_t holds 32-byte project_name and version fields.
MAX_NAME_CHARS = 32
MAX_NOTES_CHARS = 4096
MAX_GROUPS = 1024


def check_channel(channel: str) -> str:
    """Return ``channel`` if it is a valid channel name (``stable``, ``beta``, ``pilot-2``), else raise ValueError."""
    if not isinstance(channel, str) or not _CHANNEL_RE.match(channel):
        raise ValueError(
            f"invalid channel {channel!r}: use 1-32 lower-case letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return channel


def check_board_id(board_id: str) -> str:
    """Return ``board_id`` if it is a valid board id (a name or a MAC address), else raise ValueError."""
    if not isinstance(board_id, str) or not _BOARD_ID_RE.match(board_id):
        raise ValueError(
            f"invalid board id {board_id!r}: use 1-64 letters, digits, ':', '.', '_' or '-' (a name or a MAC address)"
        )
    return board_id


def path_component(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9._-]`` for use in a target path (python-tuf does not URL-quote paths)."""
    safe = _UNSAFE_RE.sub("_", text).strip("._")
    return safe or "_"


def _normalise_sha(value: str) -> str:
    return value.strip().lower()


@dataclass(frozen=True)
class BoardIdentity:
    """What a board told the bridge about itself (from the wire protocol's INFO)."""

    board_id: str
    chip: int
    project: str
    version: str
    elf_sha256: str = ""
    secure_version: int = 0
    channel: str = "stable"

    def __post_init__(self) -> None:
        if not isinstance(self.chip, int) or not 0 <= self.chip <= 0xFFFF:
            raise ValueError(f"invalid chip id {self.chip!r}")
        if not isinstance(self.secure_version, int) or self.secure_version < 0:
            raise ValueError(f"invalid secure_version {self.secure_version!r}")
        check_channel(self.channel)
        object.__setattr__(self, "elf_sha256", _normalise_sha(self.elf_sha256))


@dataclass(frozen=True)
class Release:
    """One confirmed firmware release as the signed metadata describes it."""

    project: str
    chip: int
    version: str
    release_number: int
    channel: str
    secure_version: int
    size: int
    sha256: str
    target_path: str
    notes: str = ""
    groups: tuple[str, ...] = ()
    confirmed_at: str = ""
    elf_sha256: str = ""
    chip_name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.project or len(self.project) > MAX_NAME_CHARS:
            raise ValueError(f"invalid project name {self.project!r}")
        if not self.version or len(self.version) > MAX_NAME_CHARS:
            raise ValueError(f"invalid version {self.version!r}")
        if not 0 <= self.chip <= 0xFFFF:
            raise ValueError(f"invalid chip id {self.chip!r}")
        if self.release_number < 1:
            raise ValueError(f"invalid release number {self.release_number!r}")
        check_channel(self.channel)
        if self.secure_version < 0:
            raise ValueError(f"invalid secure_version {self.secure_version!r}")
        if self.size <= 0:
            raise ValueError(f"invalid size {self.size!r}")
        if not _HEX64_RE.match(self.sha256):
            raise ValueError(f"invalid sha256 {self.sha256!r}")
        if not _TARGET_PATH_RE.match(self.target_path) or ".." in self.target_path.split("/"):
            raise ValueError(f"invalid target path {self.target_path!r}")
        if len(self.notes) > MAX_NOTES_CHARS:
            raise ValueError("release notes longer than 4096 characters")
        if len(self.groups) > MAX_GROUPS:
            raise ValueError("too many groups")
        for group in self.groups:
            check_board_id(group)
        if self.elf_sha256 and not _HEX64_RE.match(self.elf_sha256):
            raise ValueError(f"invalid elf_sha256 {self.elf_sha256!r}")

    @property
    def for_everyone(self) -> bool:
        """True when the release is confirmed for every board on its channel, not for a named group."""
        return not self.groups

    def meant_for(self, board_id: str) -> bool:
        """True when a board with ``board_id`` may be offered this release (board ids ignore case: MACs)."""
        return not self.groups or board_id.lower() in {g.lower() for g in self.groups}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"] = list(self.groups)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Release:
        """Inverse of :meth:`to_dict` (raises ValueError / TypeError / KeyError on bad input)."""
        values = dict(data)
        values["groups"] = tuple(values.get("groups", ()))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})


def _get(custom: Mapping[str, Any], key: str, typ: type, default: Any = None) -> Any:
    value = custom.get(key, default)
    # bool is an int subclass: never accept it where a number is expected.
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ValueError(f"custom field {key!r} must be {typ.__name__}, got {value!r}")
    return value


def release_from_target(path: str, length: int, hashes: Mapping[str, str], custom: Any) -> Release | None:
    """The :class:`Release` a signed target describes; ``None`` for targets that are not confirmed releases.

    Raises ValueError when ``custom`` claims to be a release but a field has the wrong type or range.
    """
    if not isinstance(custom, Mapping) or "project" not in custom:
        return None  # the index, or a file some other tool put there
    if not _get(custom, "confirmed", bool, False):
        return None  # staged by `bridge repo add`, not yet confirmed
    groups = _get(custom, "groups", list, [])
    if not all(isinstance(g, str) for g in groups):
        raise ValueError("custom field 'groups' must be a list of strings")
    sha = hashes.get("sha256")
    if not isinstance(sha, str):
        raise ValueError("target has no sha256 hash")
    return Release(
        project=_get(custom, "project", str),
        chip=_get(custom, "chip", int),
        version=_get(custom, "version", str),
        release_number=_get(custom, "release", int),
        channel=_get(custom, "channel", str),
        secure_version=_get(custom, "secure_version", int, 0),
        size=length,
        sha256=sha,
        target_path=path,
        notes=_get(custom, "notes", str, ""),
        groups=tuple(groups),
        confirmed_at=_get(custom, "confirmed_at", str, ""),
        elf_sha256=_normalise_sha(_get(custom, "elf_sha256", str, "")),
        chip_name=_get(custom, "chip_name", str, ""),
    )
