"""``bridge repo``: Stage 1, a release engineer's side of the update server.

A repository folder ``DIR`` holds::

    DIR/repo.json        settings (expiry policy) and the last release number per project and channel
    DIR/keys/            private signing keys, 0600 (never served; see bridge/repo/keys.py)
    DIR/public/          THE SERVED TREE: copy or sync it to any static host
        metadata/        1.root.json, root.json, N.targets.json, N.snapshot.json, timestamp.json
        targets/         <project>/<chip>/<channel>/<sha256>.<project>-<version>.<sha12>.bin, <sha256>.index.json

Releases are TUF targets with the firmware facts in their signed ``custom`` metadata. ``add`` stages an image
(uploaded and signed, ``confirmed: false``, invisible to bridges); ``confirm`` assigns the next release number of
its project and channel, optionally for a group of board ids only, and rebuilds ``index.json``, the signed list of
confirmed releases that bridges read. Every change writes targets, then snapshot, then timestamp, so the served
tree is consistent at every moment (the timestamp still names the old snapshot until the new one is complete).
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from securesystemslib.signer import Signer  # type: ignore[attr-defined]
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, TargetFile, Targets  # type: ignore[attr-defined]

from bridge.errors import BridgeError, RepositoryError, UsageError
from bridge.repo.keys import KEY_FILES, ROLE_KEYS, generate_keys, load_signer
from bridge.repo.store import MetadataStore
from bridge.source._fs import atomic_write, file_lock
from bridge.source.release import (
    CUSTOM_FORMAT,
    INDEX_PATH,
    MAX_NOTES_CHARS,
    Release,
    check_board_id,
    check_channel,
    path_component,
)
from bridge.source.trust import root_fingerprint

__all__ = [
    "ExpiryPolicy",
    "InitResult",
    "PrunedRelease",
    "RefreshResult",
    "RepoEntry",
    "Repository",
    "StagedRelease",
]

logger = logging.getLogger(__name__)

_REPO_FORMAT = 1


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


P = ParamSpec("P")
R = TypeVar("R")


def _translated(method: Callable[P, R]) -> Callable[P, R]:
    """Turn a damaged or unreadable repository into a RepositoryError naming the problem (never a traceback)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except BridgeError:
            raise
        except (tuf_exc.RepositoryError, ValueError, KeyError) as exc:
            raise RepositoryError(
                f"the repository metadata is damaged or inconsistent: {exc}",
                hint="Restore public/metadata from a backup (or the web host), then run the command again.",
            ) from exc
        except OSError as exc:
            raise RepositoryError(f"{exc.filename or 'the repository'}: {exc.strerror or exc}") from exc

    return wrapper


@dataclass(frozen=True)
class ExpiryPolicy:
    """How long each role's signed metadata stays valid (notes/tuf-for-firmware.md §8)."""

    root_days: float = 365.0
    targets_days: float = 90.0
    snapshot_days: float = 30.0
    timestamp_days: float = 7.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"expiry {name} must be a positive number of days, got {value!r}")

    def lifetime(self, role: str) -> timedelta:
        return timedelta(days=float(getattr(self, f"{role}_days")))


@dataclass(frozen=True)
class InitResult:
    path: Path
    root_path: Path
    fingerprint: str
    """SHA-256 of ``public/metadata/1.root.json``: what bridges check in `bridge trust --fingerprint`."""
    root_expires: str


@dataclass(frozen=True)
class RepoEntry:
    """One target of the repository: a staged (unconfirmed) or confirmed firmware image."""

    project: str
    chip: int
    chip_name: str
    version: str
    channel: str
    release_number: int
    """0 while staged; assigned by ``confirm``."""
    confirmed: bool
    groups: tuple[str, ...]
    secure_version: int
    size: int
    sha256: str
    target_path: str
    notes: str = ""
    elf_sha256: str = ""
    added_at: str = ""
    confirmed_at: str = ""
    already_present: bool = field(default=False, compare=False)
    """``add`` only: the same image was already in the repository (nothing changed)."""

    @property
    def status(self) -> str:
        if not self.confirmed:
            return "staged"
        return "group" if self.groups else "everyone"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"] = list(self.groups)
        data["status"] = self.status
        data.pop("already_present")
        return data

    def to_release(self) -> Release:
        if not self.confirmed:
            raise RepositoryError(f"{self.project} {self.version} is staged, not confirmed")
        return Release(
            project=self.project,
            chip=self.chip,
            version=self.version,
            release_number=self.release_number,
            channel=self.channel,
            secure_version=self.secure_version,
            size=self.size,
            sha256=self.sha256,
            target_path=self.target_path,
            notes=self.notes,
            groups=self.groups,
            confirmed_at=self.confirmed_at,
            elf_sha256=self.elf_sha256,
            chip_name=self.chip_name,
        )

    def custom(self) -> dict[str, Any]:
        return {
            "format": CUSTOM_FORMAT,
            "project": self.project,
            "chip": self.chip,
            "chip_name": self.chip_name,
            "channel": self.channel,
            "version": self.version,
            "secure_version": self.secure_version,
            "elf_sha256": self.elf_sha256,
            "release": self.release_number,
            "confirmed": self.confirmed,
            "groups": list(self.groups),
            "notes": self.notes,
            "added_at": self.added_at,
            "confirmed_at": self.confirmed_at,
        }

    @classmethod
    def from_target(cls, target: TargetFile) -> RepoEntry | None:
        custom = target.custom
        if not isinstance(custom, dict) or "project" not in custom:
            return None
        return cls(
            project=str(custom["project"]),
            chip=int(custom["chip"]),
            chip_name=str(custom.get("chip_name", "")),
            version=str(custom["version"]),
            channel=str(custom["channel"]),
            release_number=int(custom.get("release", 0)),
            confirmed=bool(custom.get("confirmed", False)),
            groups=tuple(custom.get("groups", ())),
            secure_version=int(custom.get("secure_version", 0)),
            size=int(target.length),
            sha256=str(target.hashes["sha256"]),
            target_path=str(target.path),
            notes=str(custom.get("notes", "")),
            elf_sha256=str(custom.get("elf_sha256", "")),
            added_at=str(custom.get("added_at", "")),
            confirmed_at=str(custom.get("confirmed_at", "")),
        )


#: What ``add`` returns: the staged entry (``already_present`` tells an idempotent re-add).
StagedRelease = RepoEntry


@dataclass(frozen=True)
class PrunedRelease:
    entry: RepoEntry
    files: tuple[Path, ...]
    """Served files deleted with it (or that would be, with ``dry_run``)."""


@dataclass(frozen=True)
class RefreshResult:
    timestamp_version: int
    timestamp_expires: str
    snapshot_version: int
    targets_resigned: bool
    warnings: tuple[str, ...] = ()


class Repository:
    """A TUF firmware repository in the folder ``path`` (see the module docstring for the layout).

    ``clock`` returns the current UTC time; it exists so tests can sign metadata that is already expired.
    """

    def __init__(self, path: Path | str, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self.keys_dir = self.path / "keys"
        self.public_dir = self.path / "public"
        self.metadata_dir = self.public_dir / "metadata"
        self.targets_dir = self.public_dir / "targets"
        self._config_path = self.path / "repo.json"
        self._clock = clock or _now
        self._signer_cache: dict[str, Signer] = {}
        self._expiry = ExpiryPolicy()
        self.store = MetadataStore(
            self.metadata_dir, signers=self._signers_for, lifetime=self._lifetime, clock=self._clock
        )

    # -- settings ----------------------------------------------------------------------------------------------
    @property
    def root_path(self) -> Path:
        """``public/metadata/1.root.json``: the file bridges trust (`bridge trust URL --root ...`)."""
        return self.metadata_dir / "1.root.json"

    @_translated
    def fingerprint(self) -> str:
        self._require()
        return root_fingerprint(self.root_path.read_bytes())

    def _lifetime(self, role: str) -> timedelta:
        return self._expiry.lifetime(role)

    def _signers_for(self, role: str) -> builtins.list[Signer]:
        name = ROLE_KEYS[role]
        if name not in self._signer_cache:
            self._signer_cache[name] = load_signer(self.keys_dir, name)
        return [self._signer_cache[name]]

    def _read_config(self) -> dict[str, Any]:
        try:
            data = json.loads(self._config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RepositoryError(
                f"{self.path} is not a firmware repository (no repo.json)",
                hint=f"Create one with `bridge repo init {self.path}`, or give the folder `init` was run on.",
            ) from None
        except (OSError, ValueError) as exc:
            raise RepositoryError(f"cannot read {self._config_path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != _REPO_FORMAT:
            raise RepositoryError(f"{self._config_path} is not a repository settings file of format {_REPO_FORMAT}")
        return data

    def _write_config(self, data: dict[str, Any]) -> None:
        atomic_write(self._config_path, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")

    def _require(self) -> dict[str, Any]:
        config = self._read_config()
        try:
            self._expiry = ExpiryPolicy(**config.get("expiry", {}))
        except (TypeError, ValueError) as exc:
            raise RepositoryError(f"invalid expiry settings in {self._config_path}: {exc}") from exc
        return config

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        config = self._require()
        with file_lock(self.path / ".lock"):
            yield self._read_config() or config

    # -- init --------------------------------------------------------------------------------------------------
    @_translated
    def init(self, *, expiry: ExpiryPolicy | None = None) -> InitResult:
        """Create keys and the first signed metadata; return the root fingerprint bridges will trust."""
        expiry = expiry or ExpiryPolicy()
        if self._config_path.exists():
            raise RepositoryError(f"{self.path} is already a firmware repository", hint="Use another folder.")
        for folder in (self.keys_dir, self.public_dir):
            if folder.exists() and any(folder.iterdir()):
                raise RepositoryError(
                    f"{folder} already exists and is not empty (an earlier `init` may have stopped half-way)",
                    hint="Delete it or use another folder; keys are never overwritten.",
                )
        self.path.mkdir(parents=True, exist_ok=True)
        self._expiry = expiry
        signers = generate_keys(self.keys_dir)
        self._signer_cache = {name: signers[name] for name in KEY_FILES}
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        with self.store.edit_root() as root:
            root.consistent_snapshot = True
            root.add_key(signers["root.pem"].public_key, "root")
            root.add_key(signers["root-backup.pem"].public_key, "root")
            root.add_key(signers["targets.pem"].public_key, "targets")
            root.add_key(signers["online.pem"].public_key, "snapshot")
            root.add_key(signers["online.pem"].public_key, "timestamp")
        with self.store.edit_targets():
            pass
        self.store.do_snapshot()
        self.store.do_timestamp()
        self._write_config({"format": _REPO_FORMAT, "expiry": asdict(expiry), "release_counters": {}})
        root_md = Metadata.from_bytes(self.root_path.read_bytes())
        logger.info("initialised repository %s", self.path)
        return InitResult(
            path=self.path,
            root_path=self.root_path,
            fingerprint=root_fingerprint(self.root_path.read_bytes()),
            root_expires=_iso(root_md.signed.expires),
        )

    # -- reading -----------------------------------------------------------------------------------------------
    def _targets(self) -> Targets:
        signed = self.store.targets()
        assert isinstance(signed, Targets)
        return signed

    @_translated
    def list(self) -> builtins.list[RepoEntry]:
        """Every staged and confirmed entry, by project, chip, channel, then newest release first."""
        self._require()
        return _sorted_entries(self._entries(self._targets()))

    @staticmethod
    def _entries(targets: Targets) -> builtins.list[RepoEntry]:
        entries: builtins.list[RepoEntry] = []
        for target in targets.targets.values():
            entry = RepoEntry.from_target(target)
            if entry is not None:
                entries.append(entry)
        return entries

    def hosted_path(self, target_path: str, sha256: str) -> Path:
        """Where the served file of a target lives (consistent snapshots: hash-prefixed file name)."""
        directory, _, name = target_path.rpartition("/")
        return self.targets_dir / directory / f"{sha256}.{name}"

    # -- add ---------------------------------------------------------------------------------------------------
    @_translated
    def add(
        self,
        image_path: Path | str,
        channel: str = "stable",
        notes: str = "",
        *,
        project: str | None = None,
        version: str | None = None,
    ) -> StagedRelease:
        """Validate an image, store it content-addressed in the served tree and stage it (unconfirmed).

        Refuses a file that is not a valid app image with the image module's :class:`ImageError`.
        ``project`` / ``version`` name the release when the image's app descriptor leaves them empty or has none
        (Tasmota, MicroPython, pre-IDF-3.3 builds); they must equal the descriptor's values where it has them
        (:class:`UsageError` otherwise).
        """
        from bridge.image import Chip, validate_image

        image_path = Path(image_path)
        try:
            check_channel(channel)
        except ValueError as exc:
            raise RepositoryError(str(exc)) from exc
        if len(notes) > MAX_NOTES_CHARS:
            raise RepositoryError(f"release notes are {len(notes)} characters; at most {MAX_NOTES_CHARS} fit")
        if not image_path.is_file():
            raise RepositoryError(
                f"no such image file: {image_path}",
                hint="Give the path of the app image the build wrote (ESP-IDF: build/<project>.bin).",
            )
        self._require()
        data = image_path.read_bytes()
        info = validate_image(data)
        project = _release_name(image_path.name, "project", info.project, project, info.app is None)
        version = _release_name(image_path.name, "version", info.version, version, info.app is None)
        sha = hashlib.sha256(data).hexdigest()
        chip = int(info.chip_id)
        chip_slug = Chip(chip).name.lower() if info.chip is not None else f"chip{chip}"
        safe_project = path_component(project)
        target_path = f"{safe_project}/{chip_slug}/{channel}/{safe_project}-{path_component(version)}.{sha[:12]}.bin"
        entry = RepoEntry(
            project=project,
            chip=chip,
            chip_name=info.chip_name,
            version=version,
            channel=channel,
            release_number=0,
            confirmed=False,
            groups=(),
            secure_version=info.secure_version,
            size=len(data),
            sha256=sha,
            target_path=target_path,
            notes=notes,
            elf_sha256="" if info.app is None or info.app.elf_sha256_is_zero else info.app.elf_sha256.lower(),
            added_at=_iso(self._clock()),
        )
        with self._locked():
            for existing in self._entries(self._targets()):
                if (existing.project, existing.chip, existing.channel, existing.version) != (
                    project,
                    chip,
                    channel,
                    version,
                ):
                    continue
                if existing.sha256 == sha:
                    logger.info("%s %s is already in the repository", project, version)
                    return _replace_entry(existing, already_present=True)
                raise RepositoryError(
                    f"{project} {version} for {info.chip_name} on channel {channel!r} is already in the repository "
                    f"with other contents (SHA-256 {existing.sha256[:12]}…, this file {sha[:12]}…)",
                    hint="A version string must name one build: bump PROJECT_VER, rebuild and add that image.",
                )
            hosted = self.hosted_path(target_path, sha)
            if not _file_has(hosted, sha):
                atomic_write(hosted, data)
            with self.store.edit_targets() as targets:
                targets.targets[target_path] = TargetFile(
                    len(data), {"sha256": sha}, target_path, unrecognized_fields={"custom": entry.custom()}
                )
            self._publish()
        logger.info("staged %s %s as %s", project, version, target_path)
        return entry

    # -- confirm -----------------------------------------------------------------------------------------------
    @_translated
    def confirm(
        self,
        project: str,
        version: str,
        channel: str = "stable",
        groups: Iterable[str] = (),
        *,
        chip: int | str | None = None,
    ) -> Release:
        """Publish a staged release: for everyone on ``channel``, or only for the board ids in ``groups``.

        The first confirmation assigns the next release number of ``project`` on ``channel``. Confirming a
        group release again widens it: more board ids, or everyone when ``groups`` is empty. A release for
        everyone cannot be narrowed to a group.
        """
        from bridge.image import Chip

        try:
            check_channel(channel)
            wanted_groups = tuple(sorted({check_board_id(g).lower() for g in groups}))
        except ValueError as exc:
            raise RepositoryError(str(exc)) from exc
        try:
            chip_id = None if chip is None else int(Chip.parse(chip))
        except ValueError as exc:
            raise UsageError(str(exc), hint="Use a chip of `bridge repo list`, e.g. --chip esp32c3.") from exc
        with self._locked() as config:
            entries = self._entries(self._targets())
            matches = [
                e
                for e in entries
                if e.project == project
                and e.version == version
                and e.channel == channel
                and (chip_id is None or e.chip == chip_id)
            ]
            if not matches:
                known = sorted({e.version for e in entries if e.project == project and e.channel == channel})
                raise RepositoryError(
                    f"no image of {project} {version} on channel {channel!r} in {self.path}",
                    hint=(
                        f"Versions of {project} on {channel!r}: {', '.join(known)}."
                        if known
                        else "Add the image first: `bridge repo add DIR IMAGE --channel CHANNEL`."
                    ),
                )
            if len(matches) > 1:
                chips = ", ".join(e.chip_name or str(e.chip) for e in matches)
                raise RepositoryError(
                    f"{project} {version} on {channel!r} exists for several chips ({chips})",
                    hint="Say which one with --chip: "
                    + ", ".join(f"--chip {_chip_word(e.chip)}" for e in matches)
                    + ".",
                )
            entry = matches[0]
            now = _iso(self._clock())
            if entry.confirmed:
                if not entry.groups:
                    if wanted_groups:
                        raise RepositoryError(
                            f"{project} {version} is already confirmed for everyone on {channel!r}; it cannot be "
                            "narrowed to a group"
                        )
                    return entry.to_release()
                new_groups = () if not wanted_groups else tuple(sorted(set(entry.groups) | set(wanted_groups)))
                if new_groups == entry.groups:
                    return entry.to_release()
                updated = _replace_entry(entry, groups=new_groups, confirmed_at=now)
            else:
                number = self._next_release_number(config, project, channel, entries)
                updated = _replace_entry(
                    entry, confirmed=True, release_number=number, groups=wanted_groups, confirmed_at=now
                )
            with self.store.edit_targets() as targets:
                target = targets.targets[entry.target_path]
                target.unrecognized_fields["custom"] = updated.custom()
                self._write_index(targets)
            self._publish()
        logger.info("confirmed %s %s as release %d on %s", project, version, updated.release_number, channel)
        return updated.to_release()

    def _next_release_number(
        self, config: dict[str, Any], project: str, channel: str, entries: builtins.list[RepoEntry]
    ) -> int:
        counters = config.setdefault("release_counters", {})
        last = int(counters.get(project, {}).get(channel, 0))
        highest = max((e.release_number for e in entries if e.project == project and e.channel == channel), default=0)
        number = max(last, highest) + 1
        counters.setdefault(project, {})[channel] = number
        # Saved before publishing: a crash afterwards skips a number, never reuses one.
        self._write_config(config)
        return number

    def _write_index(self, targets: Targets) -> None:
        """Rebuild ``index.json`` (the signed list of confirmed releases) inside the current targets edit."""
        releases: builtins.list[dict[str, Any]] = []
        for target in targets.targets.values():
            entry = RepoEntry.from_target(target)
            if entry is not None and entry.confirmed:
                releases.append(
                    {
                        "path": entry.target_path,
                        "project": entry.project,
                        "chip": entry.chip,
                        "channel": entry.channel,
                        "release": entry.release_number,
                        "version": entry.version,
                        "groups": list(entry.groups),
                    }
                )
        releases.sort(key=lambda r: (r["project"], r["chip"], r["channel"], r["release"]))
        data = json.dumps({"format": 1, "releases": releases}, indent=1, sort_keys=True).encode() + b"\n"
        info = TargetFile.from_data(INDEX_PATH, data, ["sha256"])
        hosted = self.hosted_path(INDEX_PATH, info.hashes["sha256"])
        if not hosted.exists():
            atomic_write(hosted, data)
        targets.targets[INDEX_PATH] = info

    def _publish(self) -> None:
        """New snapshot, then new timestamp (both with the online key)."""
        self.store.do_snapshot()
        self.store.do_timestamp()

    # -- prune -------------------------------------------------------------------------------------------------
    @_translated
    def prune(self, keep: int, dry_run: bool = False) -> builtins.list[PrunedRelease]:
        """Delete all but the ``keep`` newest confirmed releases of each project / chip / channel.

        Never deleted: the newest release for everyone, and the newest release each group sees, so every board
        that could update before can still update. Staged images are left alone. Old metadata versions are
        deleted except the previous one, which clients in the middle of a refresh may still ask for.
        """
        if keep < 1:
            raise RepositoryError(
                f"--keep must be at least 1 (got {keep}): the newest confirmed release is never deleted",
                hint="Keep 1 or more releases.",
            )
        with self._locked():
            entries = self._entries(self._targets())
            doomed = _prune_plan(entries, keep)
            result = [PrunedRelease(e, (self.hosted_path(e.target_path, e.sha256),)) for e in doomed]
            if dry_run:
                return result
            if doomed:
                with self.store.edit_targets() as targets:
                    for entry in doomed:
                        del targets.targets[entry.target_path]
                    self._write_index(targets)
                self._publish()
            self._collect_garbage()
        for pruned in result:
            logger.info(
                "pruned %s %s (release %d)", pruned.entry.project, pruned.entry.version, pruned.entry.release_number
            )
        return result

    def _collect_garbage(self) -> builtins.list[Path]:
        """Delete served files no current target needs (keeping the previous index and metadata versions)."""
        keep: set[Path] = set()
        current = self._targets()
        for target in current.targets.values():
            keep.add(self.hosted_path(target.path, target.hashes["sha256"]))
        previous_version = current.version - 1
        previous_file = self.store.path_of("targets", previous_version)
        if previous_file.is_file():
            previous = Metadata[Targets].from_bytes(previous_file.read_bytes()).signed
            index = previous.targets.get(INDEX_PATH)
            if index is not None:
                keep.add(self.hosted_path(INDEX_PATH, index.hashes["sha256"]))
        deleted: builtins.list[Path] = []
        for path in sorted(self.targets_dir.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and path not in keep:
                path.unlink()
                deleted.append(path)
        for directory in sorted((p for p in self.targets_dir.rglob("*") if p.is_dir()), reverse=True):
            if not any(directory.iterdir()):
                directory.rmdir()
        snapshot_version = self.store.snapshot().version
        for role, newest in (("targets", current.version), ("snapshot", snapshot_version)):
            for version in self.store.versions(role):
                if version < newest - 1:
                    path = self.store.path_of(role, version)
                    path.unlink()
                    deleted.append(path)
        for path in deleted:
            logger.debug("deleted %s", path)
        return deleted

    # -- refresh -----------------------------------------------------------------------------------------------
    @_translated
    def refresh(self) -> RefreshResult:
        """Re-sign the short-lived metadata: a new snapshot and timestamp, and targets when it would expire first.

        Run it on a schedule (daily): bridges refuse a timestamp older than its expiry (7 days by default).
        """
        warnings: builtins.list[str] = []
        with self._locked():
            now = self._clock()
            targets_resigned = False
            targets_expires = self._targets().expires
            if targets_expires <= now + self._expiry.lifetime("snapshot"):
                if (self.keys_dir / ROLE_KEYS["targets"]).is_file():
                    with self.store.edit_targets():
                        pass
                    targets_resigned = True
                else:
                    warnings.append(
                        f"targets metadata expires {_iso(targets_expires)} and targets.pem is not here: "
                        "re-sign it where the release key lives"
                    )
            self.store.do_snapshot(force=True)
            self.store.do_timestamp(force=True)
            root = self.store.root()
            if root.expires <= now + timedelta(days=30):
                warnings.append(
                    f"root metadata expires {_iso(root.expires)}: sign a new root version with the root key soon"
                )
            timestamp = self.store.timestamp()
            snapshot = self.store.snapshot()
        return RefreshResult(
            timestamp_version=timestamp.version,
            timestamp_expires=_iso(timestamp.expires),
            snapshot_version=snapshot.version,
            targets_resigned=targets_resigned,
            warnings=tuple(warnings),
        )


#: The app descriptor's field sizes (``esp_app_desc_t.project_name[32]``, ``version[32]``, NUL included).
_DESCRIPTOR_CHARS = 31


def _release_name(file_name: str, field: str, from_image: str, given: str | None, no_descriptor: bool) -> str:
    """The release's ``field`` ("project" or "version"): the image's own value, else the one the publisher gave."""
    if given is not None:
        given = given.strip()
        if not given:
            raise UsageError(f"--{field} is empty", hint=f"Give the {field} of the release, or leave it out.")
        if from_image and given != from_image:
            raise UsageError(
                f"--{field} {given!r} contradicts the {field} {from_image!r} in {file_name}'s app descriptor",
                hint=f"Leave --{field} out: it is only for images whose descriptor has no {field}.",
            )
        if len(given) > _DESCRIPTOR_CHARS or not given.isprintable():
            raise UsageError(
                f"--{field} {given!r} must be at most {_DESCRIPTOR_CHARS} printable characters "
                "(what an app descriptor holds)"
            )
        return given
    if from_image:
        return from_image
    why = (
        "it has no app descriptor (built before ESP-IDF v3.3)"
        if no_descriptor
        else f"its app descriptor leaves the {field} empty"
    )
    raise RepositoryError(
        f"{file_name} has no {field}: {why}, so bridges could not tell which release it is",
        hint="Name the release when publishing: `bridge repo add DIR IMAGE --project NAME --version VERSION` (used "
        "only where the image has no value; for ESP-IDF builds set PROJECT_NAME and PROJECT_VER instead).",
    )


def _chip_word(chip: int) -> str:
    """How ``--chip`` spells a chip id (``esp32c3``; the number for an id the image module does not name)."""
    from bridge.image import Chip

    try:
        return Chip(chip).name.lower()
    except ValueError:
        return str(chip)


def _replace_entry(entry: RepoEntry, **changes: Any) -> RepoEntry:
    values = {name: getattr(entry, name) for name in entry.__dataclass_fields__}
    values.update(changes)
    return RepoEntry(**values)


def _sorted_entries(entries: Iterable[RepoEntry]) -> list[RepoEntry]:
    return sorted(entries, key=lambda e: (e.project, e.chip, e.channel, e.confirmed, -e.release_number, e.version))


def _prune_plan(entries: Iterable[RepoEntry], keep: int) -> list[RepoEntry]:
    lines: dict[tuple[str, int, str], list[RepoEntry]] = {}
    for entry in entries:
        if entry.confirmed:
            lines.setdefault((entry.project, entry.chip, entry.channel), []).append(entry)
    doomed: list[RepoEntry] = []
    for line in lines.values():
        line.sort(key=lambda e: e.release_number, reverse=True)
        keepers = {e.target_path for e in line[:keep]}
        everyone = [e for e in line if not e.groups]
        if everyone:
            keepers.add(everyone[0].target_path)
        for group in {g for e in line for g in e.groups}:
            visible = [e for e in line if not e.groups or group in e.groups]
            keepers.add(visible[0].target_path)
        doomed.extend(e for e in line if e.target_path not in keepers)
    return _sorted_entries(doomed)


def _file_has(path: Path, sha256: str) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    except OSError:
        return False
