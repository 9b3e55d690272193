"""The bridge's view of one update server: refresh, decide, download, cache for offline use.

All TUF work runs in a worker thread (``asyncio.to_thread``) so a Kivy or CLI event loop never blocks; one lock per
source serialises it, and a file lock keeps two processes off the same cache. Every python-tuf and httpx exception
is translated here into the tree in :mod:`bridge.source.errors`.

Listing releases uses only ngclient's public API: the repository publishes a signed ``index.json`` target naming
every confirmed release; each listed path is then looked up with ``get_targetinfo`` and its signed ``custom``
facts are what the bridge believes (notes/tuf-for-firmware.md §3).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, Root, TargetFile  # type: ignore[attr-defined]
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.updater import Updater

from bridge.errors import BridgeError, DownloadError, SourceError
from bridge.source._fs import atomic_write, file_lock
from bridge.source.config import SourceConfig, resolve_data_dir
from bridge.source.errors import (
    BadSignatureError,
    DownloadTooLargeError,
    ExpiredMetadataError,
    HTTPStatusError,
    ImageMismatchError,
    MalformedReleaseError,
    ReleaseGoneError,
    RollbackError,
    ServerTimeoutError,
    StaleCacheError,
    TamperedError,
    WrongRootError,
)
from bridge.source.fetcher import FetchFailed, FetchHTTPError, HttpxFetcher
from bridge.source.release import INDEX_PATH, BoardIdentity, Release, release_from_target
from bridge.source.trust import load_trusted_root, normalise_url, server_dir
from bridge.source.versions import UpdateStatus, chip_label, decide

__all__ = ["CachedRelease", "UpdateCheck", "UpdateSource"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_RECORD_FORMAT = 1


@dataclass(frozen=True)
class CachedRelease:
    """A verified image in the offline cache and when the server last vouched for it."""

    release: Release
    path: Path
    verified_at: datetime

    def age_s(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.verified_at).total_seconds()


@dataclass(frozen=True)
class UpdateCheck:
    """The answer to "is there something newer for this board?" (see :mod:`bridge.source.versions`)."""

    status: UpdateStatus
    release: Release | None
    running: Release | None
    newest: Release | None
    reason: str
    offline: bool = False
    """True when the answer came from the offline cache (the server could not be reached, or
    :meth:`UpdateSource.check_offline` was called): a UI should say so, e.g. "offline: using releases verified at
    <verified_at>"."""
    verified_at: datetime | None = None
    """Offline: when the server last vouched for ``release`` (or, with no release chosen, for the oldest cached
    release the decision used); ``None`` online or when nothing usable is cached."""
    cached_path: Path | None = None
    offline_cause: str = ""
    """Offline after a failed refresh: why the server could not be used (``cannot connect to host:port ...``)."""

    @property
    def update_available(self) -> bool:
        return self.status is UpdateStatus.UPDATE_AVAILABLE


def _human_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class UpdateSource:
    """One TUF update server, as seen by this bridge. Create one per server URL.

    ``data_dir`` holds the trusted roots and caches (see :mod:`bridge.source.trust`); ``None`` means
    ``$BRIDGE_DATA_DIR`` or the platform's user data folder. Pass ``client`` to share an ``httpx.Client``
    (the source then does not close it).
    """

    def __init__(
        self,
        url: str,
        *,
        data_dir: Path | str | None,
        config: SourceConfig | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = normalise_url(url)
        self.config = config or SourceConfig()
        self.path = server_dir(resolve_data_dir(data_dir), self.url)
        self._own_client = client is None
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(self.config.timeout_s),
            follow_redirects=True,
            verify=self.config.verify_tls,
            headers={"User-Agent": self.config.user_agent},
        )
        self.fetcher = HttpxFetcher(
            self._client,
            timeout_s=self.config.timeout_s,
            transfer_deadline_s=self.config.transfer_deadline_s,
            conditional_dir=self.path / "http" if self.config.conditional_metadata else None,
        )
        self._lock = threading.RLock()
        self._updater: Updater | None = None
        self._releases: list[Release] | None = None
        self._infos: dict[str, TargetFile] = {}
        self._refreshed_at: datetime | None = None
        self._refreshed_mono = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> UpdateSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> UpdateSource:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def refreshed_at(self) -> datetime | None:
        """When the last successful refresh verified the server's metadata (``None`` before the first)."""
        return self._refreshed_at

    # -- online ----------------------------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Download and verify the server's metadata (TUF refresh) and the release index."""
        await asyncio.to_thread(self._refresh_sync)

    async def releases(
        self, project: str | None = None, chip: int | None = None, channel: str | None = None
    ) -> list[Release]:
        """Confirmed releases on the server (every audience), oldest first; refreshes if never done."""
        releases = await asyncio.to_thread(self._fresh_releases, False)
        return [
            r
            for r in releases
            if (project is None or r.project == project)
            and (chip is None or r.chip == chip)
            and (channel is None or r.channel == channel)
        ]

    async def check(self, board: BoardIdentity, *, allow_offline: bool = False) -> UpdateCheck:
        """Refresh and decide whether a release newer than what ``board`` runs is meant for it.

        With ``allow_offline``, a server that cannot be reached (any :class:`DownloadError`) makes the answer come
        from the offline cache (:meth:`check_offline`); a :class:`SecurityError` or :class:`TrustError` never does.
        """
        try:
            releases = await asyncio.to_thread(self._fresh_releases, True)
        except DownloadError as exc:
            if not allow_offline:
                raise
            logger.info("server unreachable (%s); deciding from the offline cache", exc.message)
            offline = await asyncio.to_thread(self.check_offline, board)
            return replace(offline, reason=f"offline ({exc.message}): {offline.reason}", offline_cause=exc.message)
        decision = decide(board, releases, offer_to_unknown=self.config.offer_to_unknown)
        return UpdateCheck(decision.status, decision.release, decision.running, decision.newest, decision.reason)

    async def latest_for(self, board: BoardIdentity) -> Release | None:
        """The newest confirmed release meant for ``board`` that is newer than what it runs, else ``None``."""
        return (await self.check(board)).release

    async def download(self, release: Release, progress: Progress | None = None) -> Path:
        """The verified image of ``release`` in the cache, downloading (and resuming) it if needed.

        ``progress(done_bytes, total_bytes)`` is called on the event loop's thread.
        """
        callback: Progress | None = None
        if progress is not None:
            loop = asyncio.get_running_loop()

            def callback(done: int, total: int) -> None:
                loop.call_soon_threadsafe(progress, done, total)

        return await asyncio.to_thread(self._download_sync, release, callback)

    async def fetch_for_offline(
        self,
        project: str | None = None,
        chip: int | None = None,
        channel: str | None = None,
        *,
        board: BoardIdentity | None = None,
        progress: Callable[[Release, int, int], None] | None = None,
    ) -> list[CachedRelease]:
        """Refresh, then download and verify ahead of time what an offline push may need; record when.

        With ``board``: the newest release meant for it. Otherwise, for each project / chip / channel matching the
        filters: the newest release for everyone plus any newer pilot (group) releases.
        """
        releases = await asyncio.to_thread(self._fresh_releases, True)
        if board is not None:
            decision = decide(board, releases, offer_to_unknown=True)
            wanted = [decision.newest] if decision.newest is not None else []
        else:
            wanted = _offline_selection(
                [
                    r
                    for r in releases
                    if (project is None or r.project == project)
                    and (chip is None or r.chip == chip)
                    and (channel is None or r.channel == channel)
                ]
            )
        result = []
        for release in wanted:

            def one(done: int, total: int, release: Release = release) -> None:
                if progress is not None:
                    progress(release, done, total)

            path = await self.download(release, one if progress is not None else None)
            record = self._read_record(release.target_path)
            verified_at = record.verified_at if record is not None else datetime.now(UTC)
            result.append(CachedRelease(release, path, verified_at))
        return result

    # -- offline ---------------------------------------------------------------------------------------------
    def cached(self, release: Release) -> Path | None:
        """The cached, re-verified image of ``release``, or ``None``."""
        path = self._image_path(release.sha256)
        return path if _file_matches(path, release.size, release.sha256) else None

    def cached_releases(
        self, project: str | None = None, chip: int | None = None, channel: str | None = None
    ) -> list[CachedRelease]:
        """Releases in the offline cache whose image still verifies, oldest release first."""
        found = []
        for record_path in sorted((self.path / "images" / "records").glob("*.json")):
            record = self._load_record(record_path)
            if record is None:
                continue
            r = record.release
            if (project, chip, channel) != (None, None, None) and not (
                (project is None or r.project == project)
                and (chip is None or r.chip == chip)
                and (channel is None or r.channel == channel)
            ):
                continue
            if self.cached(r) is not None:
                found.append(record)
        found.sort(key=lambda c: (c.release.project, c.release.chip, c.release.channel, c.release.release_number))
        return found

    def check_offline(self, board: BoardIdentity, *, now: datetime | None = None) -> UpdateCheck:
        """Decide from the offline cache alone, using only releases verified within ``max_offline_age_s``.

        Raises :class:`StaleCacheError` when releases for the board are cached but all are too old.
        """
        now = now or datetime.now(UTC)
        records = self.cached_releases(board.project, board.chip, board.channel)
        limit = self.config.max_offline_age_s
        fresh = [r for r in records if r.age_s(now) <= limit]
        if not fresh:
            if records:
                youngest = min(records, key=lambda r: r.age_s(now))
                raise StaleCacheError(
                    f"the cached firmware for {board.project!r} was verified {_human_age(youngest.age_s(now))} "
                    f"ago, longer than the allowed {_human_age(limit)}"
                )
            return UpdateCheck(
                UpdateStatus.NO_RELEASE,
                None,
                None,
                None,
                f"nothing is cached for {board.project!r} on {chip_label(board.chip)}; run `bridge fetch` while online",
                offline=True,
            )
        decision = decide(
            board,
            [r.release for r in fresh],
            known=[r.release for r in records],
            offer_to_unknown=self.config.offer_to_unknown,
            offline=True,
        )
        chosen = next((r for r in fresh if decision.release is not None and r.release == decision.release), None)
        reason = decision.reason
        if chosen is not None:
            reason += f"; using the cached copy verified {_human_age(chosen.age_s(now))} ago"
        return UpdateCheck(
            decision.status,
            decision.release,
            decision.running,
            decision.newest,
            reason,
            offline=True,
            verified_at=chosen.verified_at if chosen else min(r.verified_at for r in fresh),
            cached_path=chosen.path if chosen else None,
        )

    # -- worker-thread side ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        try:
            yield
        except BridgeError:
            raise
        except (FetchFailed, FetchHTTPError) as exc:
            raise exc.bridge_error from exc
        except tuf_exc.DownloadLengthMismatchError as exc:
            raise DownloadTooLargeError(f"{action}: the server sent too much: {exc}") from exc
        except tuf_exc.SlowRetrievalError as exc:
            raise ServerTimeoutError(f"{action}: the server is too slow: {exc}") from exc
        except tuf_exc.DownloadHTTPError as exc:
            raise HTTPStatusError(f"{action}: {exc}", status_code=exc.status_code, url=self.url) from exc
        except tuf_exc.DownloadError as exc:
            raise DownloadError(f"{action}: {exc}") from exc
        except tuf_exc.UnsignedMetadataError as exc:
            raise self._diagnose_bad_signature(action, exc) from exc
        except tuf_exc.ExpiredMetadataError as exc:
            raise ExpiredMetadataError(f"{action}: expired metadata refused: {exc}") from exc
        except tuf_exc.BadVersionNumberError as exc:
            raise RollbackError(f"{action}: rollback refused: {exc}") from exc
        except tuf_exc.LengthOrHashMismatchError as exc:
            raise TamperedError(f"{action}: tampered file refused: {exc}") from exc
        except tuf_exc.RepositoryError as exc:  # DeserializationError included
            raise TamperedError(f"{action}: invalid metadata refused: {exc}") from exc
        except OSError as exc:
            raise SourceError(
                f"{action}: cannot use the cache in {self.path}: {exc}",
                hint="Free disk space there (or set BRIDGE_DATA_DIR to a folder with room), then run the command "
                "again; a partial download resumes.",
            ) from exc

    def _diagnose_bad_signature(self, action: str, exc: Exception) -> SourceError:
        """Tell a wrong trusted root (another repository) from tampered metadata."""
        try:
            trusted = Metadata[Root].from_bytes(load_trusted_root(self.path, self.url))
            url = f"{self.url}/metadata/{trusted.signed.version}.root.json"
            served = Metadata[Root].from_bytes(self.fetcher.download_bytes(url, self.config.root_max_bytes))
            if served.signed.to_dict() != trusted.signed.to_dict():
                return WrongRootError(
                    f"{action}: {self.url} is not signed by the root this bridge trusts "
                    f"(its root version {trusted.signed.version} differs): {exc}"
                )
        except Exception as diag:
            logger.debug("could not compare root metadata: %s", diag)
        return BadSignatureError(f"{action}: bad signature refused: {exc}")

    def _new_updater(self) -> Updater:
        root = load_trusted_root(self.path, self.url)
        meta = self.path / "metadata"
        meta.mkdir(parents=True, exist_ok=True)
        cfg = self.config
        config = UpdaterConfig(
            root_max_length=cfg.root_max_bytes,
            timestamp_max_length=cfg.timestamp_max_bytes,
            snapshot_max_length=cfg.snapshot_max_bytes,
            targets_max_length=cfg.targets_max_bytes,
        )
        return Updater(
            str(meta),
            f"{self.url}/metadata/",
            str(self.path / "index"),
            f"{self.url}/targets/",
            fetcher=self.fetcher,
            config=config,
            bootstrap=root,
        )

    def _require_trusted(self) -> None:
        """Raise NotTrustedError before anything creates this server's folder (no empty folders for a typo URL)."""
        if not (self.path / "trusted-root.json").is_file():
            load_trusted_root(self.path, self.url)

    def _refresh_sync(self) -> None:
        self._require_trusted()
        with self._lock, file_lock(self.path / ".lock"), self._translating(f"refreshing {self.url}"):
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        updater = self._new_updater()
        updater.refresh()
        infos, releases = self._read_index(updater)
        self._updater, self._infos, self._releases = updater, infos, releases
        self._refreshed_at = datetime.now(UTC).replace(microsecond=0)
        self._refreshed_mono = time.monotonic()
        logger.debug("refreshed %s: %d confirmed releases", self.url, len(releases))

    def _fresh_releases(self, force: bool) -> list[Release]:
        with self._lock:
            if force or self._releases is None:
                self._refresh_sync()
            assert self._releases is not None
            return list(self._releases)

    def _read_index(self, updater: Updater) -> tuple[dict[str, TargetFile], list[Release]]:
        info = updater.get_targetinfo(INDEX_PATH)
        if info is None:
            return {}, []
        if info.length > self.config.index_max_bytes:
            raise DownloadTooLargeError(
                f"the release index is {info.length} bytes, more than the {self.config.index_max_bytes} allowed"
            )
        local = self.path / "index" / "index.json"
        if updater.find_cached_target(info, str(local)) is None:
            tmp = local.with_name(".index.json.download")
            updater.download_target(info, str(tmp))
            os.replace(tmp, local)
        try:
            data = json.loads(local.read_bytes())
            paths = [entry["path"] for entry in data["releases"]]
            if not all(isinstance(p, str) for p in paths):
                raise TypeError("paths must be strings")
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedReleaseError(f"the server's signed release index is malformed: {exc}") from exc
        infos: dict[str, TargetFile] = {}
        releases: list[Release] = []
        for path in paths:
            target = updater.get_targetinfo(path)
            if target is None:
                raise MalformedReleaseError(f"the release index lists {path!r}, which the signed targets do not")
            try:
                release = release_from_target(target.path, target.length, target.hashes, target.custom)
            except (ValueError, TypeError) as exc:
                raise MalformedReleaseError(f"the signed facts of {path!r} are invalid: {exc}") from exc
            if release is None:
                logger.warning("the release index lists %s, which is not a confirmed release; ignored", path)
                continue
            infos[path] = target
            releases.append(release)
        releases.sort(key=lambda r: (r.project, r.chip, r.channel, r.release_number))
        return infos, releases

    def _image_path(self, sha256: str) -> Path:
        return self.path / "images" / f"{sha256}.bin"

    def _record_path(self, target_path: str) -> Path:
        key = hashlib.sha256(target_path.encode()).hexdigest()[:24]
        return self.path / "images" / "records" / f"{key}.json"

    def _download_sync(self, release: Release, progress: Progress | None) -> Path:
        cap = self.config.max_image_bytes
        if release.size > cap:
            raise DownloadTooLargeError(
                f"release {release.version} of {release.project} is {release.size} bytes, more than the "
                f"{cap} allowed (SourceConfig.max_image_bytes)"
            )
        self._require_trusted()
        with self._lock, file_lock(self.path / ".lock"), self._translating(f"downloading {release.target_path}"):
            refreshed = False
            if self._updater is None:
                cached = self.cached(release)
                if cached is not None:  # verified when it was stored; works offline
                    if progress is not None:
                        progress(release.size, release.size)
                    return cached
                self._refresh_locked()
                refreshed = True
            target, current = self._lookup(release.target_path)
            if (target is None or current is None) and not refreshed:
                self._refresh_locked()  # the release may be newer than this source's last listing
                target, current = self._lookup(release.target_path)
            if target is None or current is None:
                raise ReleaseGoneError(f"{self.url} no longer lists release {release.version} of {release.project}")
            if (current.sha256, current.size, current.project, current.chip, current.version) != (
                release.sha256,
                release.size,
                release.project,
                release.chip,
                release.version,
            ):
                raise ReleaseGoneError(
                    f"{self.url} now describes {release.target_path} differently from the release given"
                )
            if target.length > cap:
                raise DownloadTooLargeError(f"{release.target_path} is {target.length} bytes, more than {cap}")
            dest = self._image_path(current.sha256)
            if not _file_matches(dest, current.size, current.sha256):
                try:
                    self._download_image(current, target, dest, progress)
                except HTTPStatusError as exc:
                    if exc.status_code not in (403, 404) or refreshed:
                        raise
                    # Listed when this source last refreshed, gone from the host now: pruned in between?
                    self._refresh_locked()
                    target, current = self._lookup(release.target_path)
                    if target is None or current is None:
                        raise ReleaseGoneError(
                            f"{self.url} no longer lists release {release.version} of {release.project}"
                        ) from exc
                    self._download_image(current, target, dest, progress)
            elif progress is not None:
                progress(current.size, current.size)
            self._write_record(current, target)
            return dest

    def _lookup(self, target_path: str) -> tuple[TargetFile | None, Release | None]:
        releases = self._releases or []
        return self._infos.get(target_path), next((r for r in releases if r.target_path == target_path), None)

    def _download_image(self, release: Release, target: TargetFile, dest: Path, progress: Progress | None) -> None:
        url = f"{self.url}/targets/{self._remote_path(target)}"
        part = self.path / "partial" / f"{release.sha256}.part"
        for attempt in (1, 2):
            resumed = part.exists() and part.stat().st_size > 0
            self.fetcher.download_resumable(url, part, target.length, progress)
            with open(part, "rb") as handle:
                try:
                    target.verify_length_and_hashes(handle)
                    break
                except tuf_exc.LengthOrHashMismatchError as exc:
                    part.unlink(missing_ok=True)
                    if resumed and attempt == 1:
                        logger.info("resumed download of %s did not verify; starting over", url)
                        continue
                    raise TamperedError(
                        f"the image {release.target_path} from {self.url} does not match its signed SHA-256 "
                        f"(tampered or corrupted); nothing was kept: {exc}"
                    ) from exc
        try:
            _check_image(part, release)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, dest)

    def _remote_path(self, target: TargetFile) -> str:
        root = Metadata[Root].from_bytes(load_trusted_root(self.path, self.url))
        if root.signed.consistent_snapshot:
            return str(target.get_prefixed_paths()[0])
        return str(target.path)

    def _write_record(self, release: Release, target: TargetFile) -> None:
        verified_at = self._refreshed_at or datetime.now(UTC)
        record = {
            "format": _RECORD_FORMAT,
            "url": self.url,
            "path": target.path,
            "fileinfo": target.to_dict(),
            "release": release.to_dict(),
            "verified_at": verified_at.isoformat(),
        }
        atomic_write(self._record_path(release.target_path), json.dumps(record, indent=1, sort_keys=True).encode())

    def _read_record(self, target_path: str) -> CachedRelease | None:
        return self._load_record(self._record_path(target_path))

    def _load_record(self, path: Path) -> CachedRelease | None:
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
            release = Release.from_dict(data["release"])
            target = TargetFile.from_dict(dict(data["fileinfo"]), data["path"])
            verified_at = datetime.fromisoformat(data["verified_at"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable cache record %s: %s", path, exc)
            return None
        if (target.length, target.hashes.get("sha256")) != (release.size, release.sha256):
            logger.warning("ignoring inconsistent cache record %s", path)
            return None
        if verified_at.tzinfo is None:
            verified_at = verified_at.replace(tzinfo=UTC)
        return CachedRelease(release, self._image_path(release.sha256), verified_at)


def _file_matches(path: Path, size: int, sha256: str) -> bool:
    try:
        if path.stat().st_size != size:
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return False
    return digest.hexdigest() == sha256


def _check_image(path: Path, release: Release) -> None:
    """Defence in depth: the verified file must be the ESP32 app image its signed facts describe."""
    from bridge.errors import ImageError
    from bridge.image import validate_image

    try:
        info = validate_image(path)
    except ImageError as exc:
        raise ImageMismatchError(
            f"release {release.version} of {release.project} is not a valid app image: {exc.message}"
        ) from exc
    problems = []
    if info.chip_id != release.chip:
        problems.append(f"chip {info.chip_name or info.chip_id} instead of chip id {release.chip}")
    # An image whose descriptor leaves the project or version empty (or has no descriptor) was named by the
    # release engineer (`bridge repo add --project/--version`): the signed facts are all there is to compare.
    if info.project and info.project != release.project:
        problems.append(f"project {info.project!r} instead of {release.project!r}")
    if info.version and info.version != release.version:
        problems.append(f"version {info.version!r} instead of {release.version!r}")
    if info.secure_version != release.secure_version:
        problems.append(f"secure_version {info.secure_version} instead of {release.secure_version}")
    if problems:
        raise ImageMismatchError(
            f"the image of {release.target_path} is not what its signed facts claim: " + ", ".join(problems)
        )


def _offline_selection(releases: Sequence[Release]) -> list[Release]:
    """Per project / chip / channel: the newest release for everyone and every newer group release."""
    by_line: dict[tuple[str, int, str], list[Release]] = {}
    for release in releases:
        by_line.setdefault((release.project, release.chip, release.channel), []).append(release)
    chosen: list[Release] = []
    for line in by_line.values():
        everyone = [r for r in line if r.for_everyone]
        floor = max((r.release_number for r in everyone), default=0)
        chosen.extend(r for r in line if r.release_number > floor)
        chosen.extend(r for r in everyone if r.release_number == floor)
    return sorted(chosen, key=lambda r: (r.project, r.chip, r.channel, r.release_number))
