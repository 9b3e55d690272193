"""``bridge repo`` as a library: init, add, confirm, prune, refresh, list, and the files they leave behind."""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from bridge.errors import ImageError, RepositoryError
from bridge.image import Chip
from bridge.repo import ExpiryPolicy, Repository
from tests.conftest import firmware_file

from .conftest import ImageMaker

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _signed(path: Path) -> dict:
    return json.loads(path.read_bytes())["signed"]


def _index(repo: Repository) -> dict:
    targets = Metadata.from_bytes(repo.store.path_of("targets").read_bytes()).signed
    info = targets.targets["index.json"]
    return json.loads(repo.hosted_path("index.json", info.hashes["sha256"]).read_bytes())


def test_init_writes_private_keys_outside_the_served_tree(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "r", clock=lambda: NOW)
    result = repo.init(expiry=ExpiryPolicy(root_days=400, targets_days=60, snapshot_days=20, timestamp_days=2))
    assert sorted(p.name for p in repo.keys_dir.iterdir()) == [
        "online.pem",
        "root-backup.pem",
        "root.pem",
        "targets.pem",
    ]
    assert stat.S_IMODE(repo.keys_dir.stat().st_mode) == 0o700
    for key in repo.keys_dir.iterdir():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    served = [p for p in repo.public_dir.rglob("*") if p.is_file()]
    assert not [p for p in served if b"PRIVATE KEY" in p.read_bytes()]
    assert sorted(p.name for p in served) == [
        "1.root.json",
        "1.snapshot.json",
        "1.targets.json",
        "root.json",
        "timestamp.json",
    ]
    assert result.fingerprint == hashlib.sha256(repo.root_path.read_bytes()).hexdigest() == repo.fingerprint()
    root = _signed(repo.root_path)
    assert root["consistent_snapshot"] is True
    assert len(root["roles"]["root"]["keyids"]) == 2 and root["roles"]["root"]["threshold"] == 1
    assert root["roles"]["snapshot"]["keyids"] == root["roles"]["timestamp"]["keyids"]
    assert root["roles"]["targets"]["keyids"] != root["roles"]["timestamp"]["keyids"]
    assert root["expires"] == "2031-02-05T12:00:00Z"  # 400 days
    assert _signed(repo.metadata_dir / "timestamp.json")["expires"] == "2030-01-03T12:00:00Z"
    assert _signed(repo.metadata_dir / "1.snapshot.json")["expires"] == "2030-01-21T12:00:00Z"
    assert _signed(repo.metadata_dir / "1.targets.json")["expires"] == "2030-03-02T12:00:00Z"
    assert json.loads((repo.path / "repo.json").read_text())["expiry"]["timestamp_days"] == 2
    with pytest.raises(RepositoryError, match="already a firmware repository"):
        repo.init()


def test_add_stores_the_image_content_addressed_and_staged(repo: Repository, image: ImageMaker) -> None:
    path = image("1.4.1", secure_version=2)
    entry = repo.add(path, channel="beta", notes="fixes the LED")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry.target_path == f"blinky/esp32c3/beta/blinky-1.4.1.{sha[:12]}.bin"
    hosted = repo.targets_dir / "blinky" / "esp32c3" / "beta" / f"{sha}.blinky-1.4.1.{sha[:12]}.bin"
    assert hosted == repo.hosted_path(entry.target_path, sha)
    assert hosted.read_bytes() == path.read_bytes()
    assert (entry.release_number, entry.confirmed, entry.secure_version, entry.notes) == (0, False, 2, "fixes the LED")
    targets = _signed(repo.store.path_of("targets"))
    custom = targets["targets"][entry.target_path]["custom"]
    assert custom["confirmed"] is False and custom["chip"] == 5 and custom["version"] == "1.4.1"
    assert "index.json" not in targets["targets"]  # nothing confirmed, nothing listed for bridges
    again = repo.add(path, channel="beta")
    assert again.already_present and again.target_path == entry.target_path
    assert _signed(repo.store.path_of("targets"))["version"] == targets["version"]  # nothing re-signed


def test_add_refuses_a_rebuild_with_the_same_version(repo: Repository, image: ImageMaker) -> None:
    repo.add(image("2.0.0", seed=1))
    with pytest.raises(RepositoryError, match=r"blinky 2\.0\.0 for ESP32-C3 on channel 'stable' is already"):
        repo.add(image("2.0.0", seed=2))
    repo.add(image("2.0.0", seed=2), channel="beta")  # another channel is another line of releases


def test_add_refuses_wrong_kinds_with_the_image_module_message(repo: Repository, firmware: Path) -> None:
    with pytest.raises(ImageError, match="partition table") as info:
        repo.add(firmware_file(firmware, "N01"))
    assert info.value.code == "partition_table"
    with pytest.raises(ImageError) as info:
        repo.add(firmware_file(firmware, "C03"))
    assert info.value.code == "bad_checksum"
    with pytest.raises(RepositoryError, match="has no project: its app descriptor leaves the project empty"):
        repo.add(firmware_file(firmware, "P06"))  # Tasmota: empty project_name and version
    with pytest.raises(
        RepositoryError, match=r"has no project: it has no app descriptor \(built before ESP-IDF v3\.3\)"
    ):
        repo.add(firmware_file(firmware, "P07"))
    # Free-form versions are kept verbatim; only the path is reduced to safe characters.
    entry = repo.add(firmware_file(firmware, "P04"))
    assert entry.version == "esp-idf: v4.4.4 e8bdaf9198"
    assert entry.target_path.startswith(
        "arduino-lib-builder/esp32/stable/arduino-lib-builder-esp-idf_v4.4.4_e8bdaf9198."
    )
    assert entry.elf_sha256.startswith("c83182daaf036f9c")


def test_confirm_assigns_increasing_release_numbers_per_project_and_channel(
    repo: Repository, image: ImageMaker
) -> None:
    for version in ("1.0", "1.1", "0.9-hotfix"):
        repo.add(image(version))
    repo.add(image("1.0", project="doorbell"))
    repo.add(image("3.0-beta", seed=3), channel="beta")
    assert repo.confirm("blinky", "1.1").release_number == 1
    assert repo.confirm("blinky", "1.0").release_number == 2  # confirm order, not version order
    assert repo.confirm("doorbell", "1.0").release_number == 1
    assert repo.confirm("blinky", "3.0-beta", "beta").release_number == 1
    release = repo.confirm("blinky", "0.9-hotfix")
    assert release.release_number == 3
    assert release.confirmed_at.endswith("Z") and release.groups == ()
    assert repo.confirm("blinky", "0.9-hotfix") == release  # idempotent
    index = _index(repo)
    assert [(r["project"], r["channel"], r["release"], r["version"]) for r in index["releases"]] == [
        ("blinky", "beta", 1, "3.0-beta"),
        ("blinky", "stable", 1, "1.1"),
        ("blinky", "stable", 2, "1.0"),
        ("blinky", "stable", 3, "0.9-hotfix"),
        ("doorbell", "stable", 1, "1.0"),
    ]
    counters = json.loads((repo.path / "repo.json").read_text())["release_counters"]
    assert counters == {"blinky": {"stable": 3, "beta": 1}, "doorbell": {"stable": 1}}


def test_release_numbers_are_never_reused_after_prune(repo: Repository, image: ImageMaker) -> None:
    for version in ("1", "2", "3"):
        repo.add(image(version))
        repo.confirm("blinky", version)
    assert [p.entry.release_number for p in repo.prune(keep=1)] == [2, 1]
    repo.add(image("4"))
    assert repo.confirm("blinky", "4").release_number == 4


def test_confirm_for_a_group_then_widen(repo: Repository, image: ImageMaker) -> None:
    repo.add(image("2.0"))
    pilot = repo.confirm("blinky", "2.0", groups=["AA:BB:CC:00:11:22", "bench-3"])
    assert pilot.groups == ("aa:bb:cc:00:11:22", "bench-3")
    assert pilot.meant_for("AA:BB:CC:00:11:22") and not pilot.meant_for("bench-4")
    more = repo.confirm("blinky", "2.0", groups=["bench-4"])
    assert more.groups == ("aa:bb:cc:00:11:22", "bench-3", "bench-4") and more.release_number == 1
    everyone = repo.confirm("blinky", "2.0")
    assert everyone.groups == () and everyone.release_number == 1
    with pytest.raises(RepositoryError, match="cannot be narrowed to a group"):
        repo.confirm("blinky", "2.0", groups=["bench-3"])
    with pytest.raises(RepositoryError, match="invalid board id"):
        repo.confirm("blinky", "2.0", groups=["no spaces"])


def test_confirm_errors_name_what_exists(repo: Repository, image: ImageMaker) -> None:
    repo.add(image("1.0", chip=Chip.ESP32C3))
    repo.add(image("1.0", chip=Chip.ESP32S3))
    with pytest.raises(RepositoryError, match="several chips") as info:
        repo.confirm("blinky", "1.0")
    assert "--chip" in info.value.hint
    assert repo.confirm("blinky", "1.0", chip="esp32s3").chip == Chip.ESP32S3
    with pytest.raises(RepositoryError, match=r"no image of blinky 7\.0") as info:
        repo.confirm("blinky", "7.0")
    assert info.value.hint == "Versions of blinky on 'stable': 1.0."
    with pytest.raises(RepositoryError, match="invalid channel"):
        repo.confirm("blinky", "1.0", "Stable!")


def test_prune_keeps_newest_for_everyone_and_each_group(repo: Repository, image: ImageMaker) -> None:
    def release(version: str, groups: tuple[str, ...] = (), chip: Chip = Chip.ESP32C3) -> int:
        repo.add(image(version, chip=chip))
        return repo.confirm("blinky", version, groups=groups, chip=chip).release_number

    release("1")
    release("2")
    release("3")  # newest for everyone
    release("4-pilot", ("lab",))
    release("5-canary", ("bench",))
    release("1", chip=Chip.ESP32)  # another chip: its own line, kept
    repo.add(image("6-staged"))  # staged: never pruned
    version_before = _signed(repo.store.path_of("targets"))["version"]
    plan = repo.prune(keep=1, dry_run=True)
    assert [(p.entry.version, p.entry.release_number) for p in plan] == [("2", 2), ("1", 1)]
    hosted = [p.files[0] for p in plan]
    assert all(f.exists() for f in hosted)
    assert _signed(repo.store.path_of("targets"))["version"] == version_before  # dry run changed nothing
    pruned = repo.prune(keep=1)
    assert [p.entry.version for p in pruned] == ["2", "1"]
    assert not any(f.exists() for f in hosted)
    left = {(e.version, e.chip, e.status) for e in repo.list()}
    assert left == {
        ("3", 5, "everyone"),
        ("4-pilot", 5, "group"),
        ("5-canary", 5, "group"),
        ("1", 0, "everyone"),
        ("6-staged", 5, "staged"),
    }
    assert repo.prune(keep=1) == []
    with pytest.raises(RepositoryError, match="at least 1"):
        repo.prune(keep=0)


def test_prune_collects_old_metadata_but_keeps_every_root(repo: Repository, image: ImageMaker) -> None:
    for version in ("1", "2", "3", "4"):
        repo.add(image(version))
        repo.confirm("blinky", version)
    repo.prune(keep=2)
    targets_now = repo.store.versions("targets")
    snapshots_now = repo.store.versions("snapshot")
    assert len(targets_now) == 2 and targets_now[1] == targets_now[0] + 1
    assert len(snapshots_now) == 2 and snapshots_now[1] == snapshots_now[0] + 1
    assert (repo.metadata_dir / "1.root.json").exists()
    served_bins = sorted(p.name.split(".", 1)[1] for p in repo.targets_dir.rglob("*.bin"))
    assert [name.split(".")[0] for name in served_bins] == ["blinky-3", "blinky-4"]
    # The previous index stays for bridges in the middle of a refresh; older ones are gone.
    assert len(list(repo.targets_dir.glob("*.index.json"))) == 2


def test_refresh_resigns_short_lived_metadata(tmp_path: Path, image: ImageMaker) -> None:
    moments = [NOW]
    repo = Repository(tmp_path / "r", clock=lambda: moments[-1])
    repo.init(expiry=ExpiryPolicy(targets_days=40, snapshot_days=30, timestamp_days=7))
    before = _signed(repo.metadata_dir / "timestamp.json")
    moments.append(NOW + timedelta(days=5))
    result = repo.refresh()
    after = _signed(repo.metadata_dir / "timestamp.json")
    assert after["version"] == before["version"] + 1 == result.timestamp_version
    assert after["expires"] == result.timestamp_expires == "2030-01-13T12:00:00Z"
    assert not result.targets_resigned and result.warnings == ()
    moments.append(NOW + timedelta(days=15))  # targets (40 d) would expire before a new snapshot (30 d)
    result = repo.refresh()
    assert result.targets_resigned
    assert _signed(repo.store.path_of("targets"))["expires"] == "2030-02-25T12:00:00Z"
    moments.append(NOW + timedelta(days=350))
    (repo.keys_dir / "targets.pem").rename(tmp_path / "targets.pem")  # the release key lives elsewhere
    result = repo.refresh()
    assert not result.targets_resigned
    assert any("targets.pem is not here" in w for w in result.warnings)
    assert any("root metadata expires 2031-01-01T12:00:00Z" in w for w in result.warnings)


def test_commands_without_the_right_key_say_which_file_is_missing(repo: Repository, image: ImageMaker) -> None:
    (repo.keys_dir / "targets.pem").unlink()
    with pytest.raises(RepositoryError, match=r"targets\.pem is missing"):
        Repository(repo.path).add(image("1.0"))
    assert Repository(repo.path).list() == []


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="is not a firmware repository") as info:
        Repository(tmp_path).list()
    assert "bridge repo init" in info.value.hint


def test_damaged_metadata_is_a_repository_error_not_a_traceback(repo: Repository, image: ImageMaker) -> None:
    (repo.metadata_dir / "timestamp.json").write_text("{not json")
    with pytest.raises(RepositoryError, match="damaged or inconsistent") as info:
        repo.refresh()
    assert "Restore public/metadata" in info.value.hint
    repo.store.path_of("targets").write_text("[]")
    with pytest.raises(RepositoryError, match="damaged or inconsistent"):
        repo.add(image("1.0"))
