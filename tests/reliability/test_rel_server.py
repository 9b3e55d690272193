"""Server faults through `bridge fetch`: 5xx, silence, bodies cut short or too long, Range ignored or wrong, a
redirect loop, a certificate nobody vouches for, a full disk, an interrupted download. Each ends with exit 9 (or 6
when verification refused what came), one message and a hint; the cache never holds a file that is not what it
claims; run again once the fault is gone, the download completes, resuming where it stopped."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import firmware_file

from .matrix import Outcome
from .server import (
    Fault,
    FaultyServer,
    Published,
    ServerTrial,
    audit_cache,
    publish,
    run_server_trial,
    server_trials,
    tmpfs_available,
)

P14_BYTES = 124_192
TRIALS = server_trials(P14_BYTES, full=False, tmpfs=True)


@pytest.fixture(scope="module")
def published(firmware: Path, tmp_path_factory: pytest.TempPathFactory) -> Published:
    image = firmware_file(firmware, "P14")
    assert image.stat().st_size == P14_BYTES
    return publish(tmp_path_factory.mktemp("repo"), image)


@pytest.fixture(scope="module")
def can_mount(tmp_path_factory: pytest.TempPathFactory) -> bool:
    return tmpfs_available(tmp_path_factory.mktemp("probe"))


@pytest.mark.parametrize("trial", TRIALS, ids=[f"{t.fault_class}: {t.name}" for t in TRIALS])
def test_server_fault_ends_with_a_message_and_a_clean_cache(
    trial: ServerTrial, published: Published, tmp_path: Path, can_mount: bool
) -> None:
    if trial.disk == "tmpfs" and not can_mount:
        pytest.skip("mounting a tmpfs needs root; the patched-write trial covers disk full here")
    result = run_server_trial(trial, published, tmp_path)
    assert result.ok, result.explain()
    assert result.corrupt_files == 0
    assert result.exit_code in trial.exit_codes and result.hint
    if trial.rerun:
        assert result.rerun is Outcome.NEW, result.explain()


def test_an_interrupted_download_resumes_at_the_byte_it_stopped(published: Published, tmp_path: Path) -> None:
    trial = next(t for t in TRIALS if t.name == "connection lost at 40 % of the image")
    result = run_server_trial(trial, published, tmp_path)
    cut = P14_BYTES * 2 // 5
    assert cut == 49_676
    assert "received 49676 bytes, expected 124192" in result.message
    assert f"partial kept: {cut:,} bytes" in result.detail and f"re-run resumed with bytes={cut}-" in result.detail
    assert result.rerun is Outcome.NEW
    cache = next((tmp_path / "data" / "servers").iterdir())
    assert (cache / "images" / f"{published.sha256}.bin").read_bytes() == published.image
    assert not any((cache / "partial").iterdir())


def test_disk_full_keeps_a_true_prefix_then_resumes(
    published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trial = next(t for t in TRIALS if t.disk == "patched")
    result = run_server_trial(trial, published, tmp_path)
    assert "No space left on device" in result.message and "Free disk space" in result.hint
    assert result.exit_code == 9 and result.rerun is Outcome.NEW
    assert f"partial kept: {P14_BYTES // 3:,} bytes" in result.detail  # the bytes written before ENOSPC, no more


def test_the_audit_finds_every_kind_of_corrupt_file(published: Published, tmp_path: Path) -> None:
    cache = tmp_path / "servers" / "host"
    (cache / "images" / "records").mkdir(parents=True)
    (cache / "partial").mkdir()
    (cache / "metadata").mkdir()
    (cache / "images" / f"{published.sha256}.bin").write_bytes(published.image[:-1])  # one byte short
    other = hashlib.sha256(b"x").hexdigest()
    (cache / "images" / f"{other}.bin").write_bytes(b"x")  # fine
    not_a_prefix = published.image[:10] + bytes([published.image[10] ^ 0xFF])
    (cache / "partial" / f"{published.sha256}.part").write_bytes(not_a_prefix)
    (cache / "metadata" / "timestamp.json").write_bytes(b'{"signed": ')
    (cache / "images" / "records" / ".abc.json.tmp").write_bytes(json.dumps({}).encode())
    (cache / "stray.bin").write_bytes(b"?")
    audit = audit_cache(tmp_path, {published.sha256: published.image})
    assert audit.images == [other]
    assert sorted(reason.split(": ", 1)[1] for reason in audit.corrupt) == [
        "a temporary file was left behind",
        "an unexpected file",
        "its SHA-256 is not its name",
        "not a prefix of the image it names",
        "not valid JSON",
    ]


def test_the_faulty_server_misbehaves_as_told(published: Published) -> None:
    """The instrument itself: a truncated answer is really cut, a stall really stalls, Range is honoured."""
    import httpx

    image_path = next(p for p in published.public.rglob("*.bin"))
    url_path = "/" + str(image_path.relative_to(published.public))
    faults = [Fault("truncate", "image", at=1000, times=1), Fault("status", "timestamp", status=502)]
    with FaultyServer(published.public, faults) as server, httpx.Client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(server.url + url_path)
        ranged = client.get(server.url + url_path, headers={"Range": "bytes=100-"})
        assert ranged.status_code == 206 and ranged.content == published.image[100:]
        assert client.get(server.url + "/metadata/timestamp.json").status_code == 502
        server.heal()
        assert client.get(server.url + "/metadata/timestamp.json").status_code == 200
    assert [entry[2] for entry in server.log] == [200, 206, 502, 200]
