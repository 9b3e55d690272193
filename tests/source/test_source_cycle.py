"""Stage 1 then Stage 2 against a real HTTP server on loopback: publish, check, download, prune, update again."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.errors import DownloadError
from bridge.image import Chip, validate_image
from bridge.repo import Repository, serve_repository
from bridge.source import (
    ExpiredMetadataError,
    NotTrustedError,
    ReleaseGoneError,
    ServerUnreachableError,
    StaleCacheError,
    UpdateSource,
    UpdateStatus,
    trust_server,
)
from bridge.source.errors import HTTPStatusError
from tests.conftest import firmware_file

from .conftest import Published, board, write_image


async def test_full_stage1_cycle_with_real_images(firmware: Path, tmp_path: Path) -> None:
    """init, add two versions of one project, confirm, the bridge sees the newest, prune, the bridge still updates."""
    p15 = firmware_file(firmware, "P15")  # hello_world "1", ESP32-C3
    p14 = firmware_file(firmware, "P14")  # hello_world "v1.4.1-2-g0296947-dirty", ESP32-C3
    repo = Repository(tmp_path / "repo")
    init = repo.init()
    assert init.fingerprint == hashlib.sha256(repo.root_path.read_bytes()).hexdigest()
    first = repo.add(p15)
    second = repo.add(p14, notes="hello again")
    assert (first.project, first.version, first.chip, first.confirmed) == ("hello_world", "1", 5, False)
    assert (second.version, second.size) == ("v1.4.1-2-g0296947-dirty", p14.stat().st_size)
    r1 = repo.confirm("hello_world", "1")
    r2 = repo.confirm("hello_world", "v1.4.1-2-g0296947-dirty")
    assert (r1.release_number, r2.release_number) == (1, 2)

    data = tmp_path / "bridge"
    with serve_repository(repo.path) as url:
        trusted = trust_server(url, None, fingerprint=init.fingerprint, data_dir=data)
        assert trusted.fingerprint == init.fingerprint
        with UpdateSource(url, data_dir=data) as source:
            on_old = board("1", project="hello_world")
            check = await source.check(on_old)
            assert check.status is UpdateStatus.UPDATE_AVAILABLE
            assert check.running == r1 and check.release == r2
            path = await source.download(r2)
            assert path.read_bytes() == p14.read_bytes()
            assert validate_image(path).version == "v1.4.1-2-g0296947-dirty"

            pruned = repo.prune(keep=1)
            assert [p.entry.version for p in pruned] == ["1"]
            assert not repo.hosted_path(r1.target_path, r1.sha256).exists()
            assert repo.hosted_path(r2.target_path, r2.sha256).exists()

            # The same client (it refreshed before the prune) refreshes again and still updates a board.
            check = await source.check(on_old)
            assert check.status is UpdateStatus.UPDATE_AVAILABLE and check.release == r2
            assert check.running is None  # "1" is no longer known to the server: newest is offered
            assert await source.releases("hello_world") == [r2]
            assert (await source.check(board("v1.4.1-2-g0296947-dirty", project="hello_world"))).status is (
                UpdateStatus.UP_TO_DATE
            )
        # And a fresh bridge, trusting only root v1, updates too.
        fresh = tmp_path / "fresh"
        trust_server(url, repo.root_path.read_bytes(), data_dir=fresh)
        with UpdateSource(url, data_dir=fresh) as source:
            release = await source.latest_for(board("", project="hello_world"))
            assert release == r2
            assert (await source.download(release)).read_bytes() == p14.read_bytes()


async def test_newest_for_board_by_channel_group_chip_and_secure_version(published: Published) -> None:
    pub = published
    r1 = pub.publish("1.0.0")
    r2 = pub.publish("1.1.0", groups=("pilot-7",))
    beta = pub.publish("2.0.0-beta.1", channel="beta")
    s3 = pub.publish("1.0.0", chip=Chip.ESP32S3)
    secure = pub.publish("1.2.0", secure_version=3)
    assert (r1.release_number, r2.release_number, secure.release_number) == (1, 2, 4)
    assert (beta.release_number, s3.release_number) == (1, 3)  # per project and channel, across chips
    source = pub.source()

    assert (await source.check(board("1.0.0"))).release == secure
    # Only boards in the group see the pilot; a board that got it is up to date (not "downgraded" to release 1).
    check = await source.check(board("1.1.0", board_id="pilot-7"))
    assert check.status is UpdateStatus.UPDATE_AVAILABLE and check.release == secure
    assert (await source.check(board("1.0.0", board_id="pilot-7", secure_version=4))).status is (
        UpdateStatus.NO_RELEASE
    )
    check = await source.check(board("1.0.0", secure_version=1))  # release 4 has secure_version 3 >= 1
    assert check.release == secure
    assert (await source.check(board("1.0.0", channel="beta"))).release == beta
    assert (await source.check(board("1.0.0", chip=Chip.ESP32S3))).status is UpdateStatus.UP_TO_DATE
    other_chip = await source.check(board("1.0.0", chip=Chip.ESP32C6))
    assert other_chip.status is UpdateStatus.NO_RELEASE and other_chip.release is None
    other_project = await source.check(board("1.0.0", project="not-blinky"))
    assert other_project.status is UpdateStatus.NO_RELEASE
    assert [r.version for r in await source.releases(chip=int(Chip.ESP32C3), channel="stable")] == [
        "1.0.0",
        "1.1.0",
        "1.2.0",
    ]
    # The ELF SHA-256 identifies the running release even when the version string says otherwise.
    check = await source.check(board("renamed", elf_sha256=secure.elf_sha256))
    assert check.status is UpdateStatus.UP_TO_DATE and check.running == secure


async def test_group_release_widened_to_everyone(published: Published) -> None:
    pub = published
    pub.publish("1.0.0")
    pilot = pub.publish("1.1.0", groups=("b-1",))
    source = pub.source()
    assert (await source.check(board("1.0.0", board_id="b-2"))).status is UpdateStatus.UP_TO_DATE
    widened = pub.repo.confirm("blinky", "1.1.0")
    assert widened.release_number == pilot.release_number and widened.groups == ()
    check = await source.check(board("1.0.0", board_id="b-2"))
    assert check.status is UpdateStatus.UPDATE_AVAILABLE and check.release == widened


async def test_download_reports_progress_and_resumes_a_partial_file(published: Published) -> None:
    pub = published
    release = pub.publish("2.0.0", size=300_000)
    source = pub.source()
    await source.refresh()
    whole = pub.hosted(release).read_bytes()
    part = source.path / "partial" / f"{release.sha256}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(whole[:100_000])
    seen: list[tuple[int, int]] = []
    path = await source.download(release, progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == whole
    assert not part.exists()
    assert seen[0][0] > 100_000 and seen[-1] == (300_000, 300_000)
    image_requests = [entry for entry in pub.log() if entry[1].endswith(".bin")]
    assert [status for _, _, status in image_requests] == [206]
    assert source.cached(release) == path


async def test_corrupt_partial_file_restarts_from_zero(published: Published) -> None:
    pub = published
    release = pub.publish("2.0.0", size=200_000)
    source = pub.source()
    await source.refresh()
    part = source.path / "partial" / f"{release.sha256}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xff" * 50_000)
    path = await source.download(release)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == release.sha256
    statuses = [status for _, path_, status in pub.log() if path_.endswith(".bin")]
    assert statuses == [206, 200]


async def test_timestamp_is_fetched_conditionally_and_304_reused(published: Published) -> None:
    pub = published
    pub.publish("1.0.0")
    timestamp = pub.repo.metadata_dir / "timestamp.json"
    old = time.time() - 60
    os.utime(timestamp, (old, old))  # a file written a minute ago: its validators are strong
    first = pub.source()
    await first.refresh()
    second = pub.source()  # a new process would do the same: the ETag and body are on disk
    await second.refresh()
    timestamps = [status for _, path, status in pub.log() if path == "/metadata/timestamp.json"]
    assert timestamps == [200, 304]
    assert second.fetcher.not_modified == 1
    # A new release rewrites timestamp.json; the next refresh sees it (200, not a stale 304).
    newer = pub.publish("1.1.0")
    assert (await second.check(board("1.0.0"))).release == newer
    assert [s for _, path, s in pub.log() if path == "/metadata/timestamp.json"][-1] == 200


async def test_offline_push_uses_recent_cache_and_refuses_stale_one(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.init()
    repo.add(write_image(tmp_path, version="1.0.0"))
    repo.confirm("blinky", "1.0.0")
    repo.add(write_image(tmp_path, version="1.1.0"))
    newest = repo.confirm("blinky", "1.1.0")
    pilot_image = write_image(tmp_path, version="1.2.0-rc.1")
    repo.add(pilot_image)
    pilot = repo.confirm("blinky", "1.2.0-rc.1", groups=["lab-1"])
    data = tmp_path / "bridge"
    with serve_repository(repo.path) as url:
        trust_server(url, repo.root_path.read_bytes(), data_dir=data)
        with UpdateSource(url, data_dir=data) as source:
            cached = await source.fetch_for_offline("blinky")
            assert [c.release for c in cached] == [newest, pilot]
            assert all(c.age_s() < 60 for c in cached)
    # The server is gone now.
    with UpdateSource(url, data_dir=data) as source:
        with pytest.raises(ServerUnreachableError, match=rf"cannot connect to {url.removeprefix('http://')}: "):
            await source.check(board("1.0.0"))
        check = await source.check(board("1.0.0"), allow_offline=True)
        assert check.offline and check.release == newest
        assert (
            check.cached_path is not None
            and check.cached_path.read_bytes() == repo.hosted_path(newest.target_path, newest.sha256).read_bytes()
        )
        assert check.verified_at is not None and "using the cached copy verified" in check.reason
        lab = source.check_offline(board("1.0.0", board_id="lab-1"))
        assert lab.release == pilot
        later = datetime.now(UTC) + timedelta(days=8)
        with pytest.raises(StaleCacheError, match=r"verified 8\.0 days ago, longer than the allowed 7\.0 days"):
            source.check_offline(board("1.0.0"), now=later)
        empty = source.check_offline(board("1.0.0", project="other"))
        assert empty.status is UpdateStatus.NO_RELEASE and "bridge fetch" in empty.reason


async def test_offline_fallback_never_hides_a_security_failure(published: Published) -> None:
    pub = published
    pub.publish("1.0.0")
    source = pub.source()
    await source.fetch_for_offline()
    Repository(pub.repo.path, clock=lambda: datetime.now(UTC) - timedelta(days=10)).refresh()
    with pytest.raises(ExpiredMetadataError):
        await source.check(board("0.9"), allow_offline=True)


async def test_untrusted_server_and_http_errors_are_named(published: Published, tmp_path: Path) -> None:
    with (
        UpdateSource(published.url, data_dir=tmp_path / "nobody") as source,
        pytest.raises(NotTrustedError, match=r"no trusted root for http://127\.0\.0\.1"),
    ):
        await source.refresh()
    wrong_path = f"{published.url}/nothing-here"
    trust_server(wrong_path, published.repo.root_path.read_bytes(), data_dir=tmp_path / "d")
    with UpdateSource(wrong_path, data_dir=tmp_path / "d") as source, pytest.raises(HTTPStatusError) as info:
        await source.refresh()
    assert info.value.status_code == 404
    assert "/nothing-here/metadata/timestamp.json answered HTTP 404 Not Found" in info.value.message
    assert isinstance(info.value, DownloadError)


async def test_download_of_a_release_listed_later_or_pruned_since(published: Published) -> None:
    pub = published
    first = pub.publish("1.0.0")
    early = pub.source()
    await early.refresh()
    second = pub.publish("1.1.0")
    later = pub.source()
    assert (await later.latest_for(board("1.0.0"))) == second
    # `early` listed only release 1; it refreshes once to find release 2.
    assert (await early.download(second)).read_bytes() == pub.hosted(second).read_bytes()
    pub.publish("1.2.0")
    pub.repo.prune(keep=1)
    with pytest.raises(ReleaseGoneError, match=r"no longer lists release 1\.0\.0 of blinky"):
        await later.download(first)


async def test_a_cached_release_is_returned_without_the_network(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.init()
    repo.add(write_image(tmp_path, version="3.0"))
    release = repo.confirm("blinky", "3.0")
    data = tmp_path / "bridge"
    with serve_repository(repo.path) as url:
        trust_server(url, repo.root_path.read_bytes(), data_dir=data)
        with UpdateSource(url, data_dir=data) as source:
            [cached] = await source.fetch_for_offline(board=board("1.0"))
    with UpdateSource(url, data_dir=data) as offline:  # server gone
        assert await offline.download(release) == cached.path
        assert [c.release for c in offline.cached_releases()] == [release]
        cached.path.write_bytes(b"\x00" * release.size)  # a damaged cache file is never handed out
        assert offline.cached(release) is None
        with pytest.raises(ServerUnreachableError):
            await offline.download(release)
