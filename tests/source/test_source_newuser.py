"""New-user findings in the update source (NEWUSER items 7, 10, 12, 13): a nameless real image reaches a bridge,
connection errors name host and port, offline answers say they are offline, trust mistakes get their exit codes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.errors import ConfigError, ExitCode, SecurityError, UsageError
from bridge.image import Chip, inspect_image
from bridge.repo import Repository, serve_repository
from bridge.source import (
    NotTrustedError,
    RootFingerprintError,
    ServerUnreachableError,
    UpdateSource,
    UpdateStatus,
    WrongRootError,
    trust_server,
)
from bridge.source.versions import decide
from tests.conftest import firmware_file

from .conftest import Published, board, write_image


async def test_tasmota_image_named_by_the_publisher_reaches_the_bridge(published: Published, firmware: Path) -> None:
    p16 = firmware_file(firmware, "P16")
    assert (inspect_image(p16).project, inspect_image(p16).version) == ("", "")
    published.repo.add(p16, project="tasmota32c3", version="14.3.0")
    confirmed = published.repo.confirm("tasmota32c3", "14.3.0", chip="esp32c3")
    source = published.source()
    releases = await source.releases(project="tasmota32c3")
    assert [(r.project, r.version, r.chip, r.release_number, r.size) for r in releases] == [
        ("tasmota32c3", "14.3.0", int(Chip.ESP32C3), 1, 2_197_712)
    ]
    check = await source.check(board("14.2.0", project="tasmota32c3"))
    assert check.status is UpdateStatus.UPDATE_AVAILABLE and check.release == confirmed and not check.offline
    path = await source.download(confirmed)  # the image's empty descriptor fields do not fail the defence check
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(p16.read_bytes()).hexdigest()


async def test_offline_answers_say_offline_and_name_host_and_port(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.init()
    repo.add(write_image(tmp_path / "img", version="1"))
    repo.confirm("blinky", "1")
    repo.add(write_image(tmp_path / "img", version="2"))
    second = repo.confirm("blinky", "2")
    data = tmp_path / "bridge"
    with serve_repository(repo.path) as url:
        trust_server(url, repo.root_path.read_bytes(), data_dir=data)
        with UpdateSource(url, data_dir=data) as source:
            cached = await source.fetch_for_offline("blinky")  # only the newest release is cached
            assert [c.release for c in cached] == [second]
    host_port = url.removeprefix("http://")
    with UpdateSource(url, data_dir=data) as source:
        with pytest.raises(ServerUnreachableError) as unreachable:
            await source.check(board("1"))
        assert unreachable.value.message.startswith(f"cannot connect to {host_port}: ")
        check = await source.check(board("1"), allow_offline=True)
    assert check.offline and check.offline_cause.startswith(f"cannot connect to {host_port}")
    assert check.status is UpdateStatus.UPDATE_AVAILABLE and check.release == second
    assert check.verified_at == cached[0].verified_at and check.verified_at <= datetime.now(UTC)
    # Release 1 is on the server but not in the cache: the reason must not blame the server.
    assert "the board runs '1', not in the offline cache" in check.reason
    assert "unknown to the server" not in check.reason
    with UpdateSource(url, data_dir=data) as source:
        up_to_date = source.check_offline(board("2"))
    assert up_to_date.status is UpdateStatus.UP_TO_DATE and up_to_date.offline
    assert up_to_date.verified_at == cached[0].verified_at
    with UpdateSource(url, data_dir=data) as source:
        nothing = source.check_offline(board("1", project="other"))
        other_chip = source.check_offline(board("1", chip=Chip.ESP32))
    assert nothing.reason == "nothing is cached for 'other' on ESP32-C3; run `bridge fetch` while online"
    assert nothing.offline and nothing.verified_at is None
    assert other_chip.reason.startswith("nothing is cached for 'blinky' on ESP32;")


def test_offline_decisions_blame_the_cache_not_the_server(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.init()
    repo.add(write_image(tmp_path / "img", version="2.0.0"))
    release = repo.confirm("blinky", "2.0.0")
    offline = decide(board("1.0.0-dev"), [release], offline=True)
    online = decide(board("1.0.0-dev"), [release])
    assert offline.release == online.release == release
    assert (
        offline.reason
        == "the board runs '1.0.0-dev', not in the offline cache; its newest release 1 (2.0.0) is offered"
    )
    assert online.reason == "the board runs '1.0.0-dev', unknown to the server; its newest release 1 (2.0.0) is offered"
    none = decide(board("1.0.0", board_id="x", project="doorbell"), [release], offline=True)
    assert (
        none.reason
        == "the offline cache has no confirmed release of 'doorbell' on ESP32-C3 in channel 'stable' for board x"
    )


async def test_untrusted_url_leaves_no_folder_behind(tmp_path: Path) -> None:
    data = tmp_path / "bridge"
    with UpdateSource("http://127.0.0.1:9/typo", data_dir=data) as source:
        with pytest.raises(NotTrustedError, match=r"no trusted root for http://127\.0\.0\.1:9/typo"):
            await source.check(board("1"))
        with pytest.raises(NotTrustedError):
            await source.refresh()
    assert not (data / "servers").exists()


def test_trust_mistakes_get_their_exit_codes(tmp_path: Path, firmware: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.init()
    root = repo.root_path.read_bytes()
    data = tmp_path / "bridge"
    url = "http://127.0.0.1:9"
    with pytest.raises(UsageError, match="invalid fingerprint 'abc': expected 64 hex digits") as bad:
        trust_server(url, root, fingerprint="abc", data_dir=data)
    assert bad.value.exit_code == ExitCode.USAGE
    with pytest.raises(UsageError, match="invalid server URL 'ftp://host/repo'") as bad_url:
        trust_server("ftp://host/repo", root, data_dir=data)
    assert bad_url.value.hint == "Use an http:// or https:// URL."
    with pytest.raises(UsageError, match="the root file is not JSON") as not_json:
        trust_server(url, firmware_file(firmware, "P14").read_bytes(), data_dir=data)
    assert not_json.value.exit_code == ExitCode.USAGE
    timestamp = (repo.metadata_dir / "timestamp.json").read_bytes()
    with pytest.raises(UsageError, match="this is timestamp metadata, not root metadata"):
        trust_server(url, timestamp, data_dir=data)
    tampered = root.replace(b'"consistent_snapshot":true', b'"consistent_snapshot":false')
    assert tampered != root
    with pytest.raises(SecurityError, match="not signed by its own root keys") as forged:
        trust_server(url, tampered, data_dir=data)
    assert forged.value.exit_code == ExitCode.REFUSED
    with pytest.raises(RootFingerprintError, match="not the expected " + "ab" * 32) as mismatch:
        trust_server(url, root, fingerprint="ab" * 32, data_dir=data)
    assert isinstance(mismatch.value, WrongRootError) and mismatch.value.exit_code == ExitCode.REFUSED
    assert not data.exists()  # nothing was stored by any refusal
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=f"cannot use the data folder {a_file}") as unusable:
        trust_server(url, root, data_dir=a_file)
    assert unusable.value.exit_code == ExitCode.CONFIG
    trusted = trust_server(url, root, data_dir=data)
    other = Repository(tmp_path / "other")
    other.init()
    with pytest.raises(UsageError, match="already trusted with another root") as again:
        trust_server(url, other.root_path.read_bytes(), data_dir=data)
    assert again.value.exit_code == ExitCode.USAGE and "--replace" in again.value.hint
    assert trust_server(url, other.root_path.read_bytes(), data_dir=data, replace=True).fingerprint != (
        trusted.fingerprint
    )
