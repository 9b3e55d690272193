"""Publishing real images whose app descriptor has no project / version (Tasmota, MicroPython, pre-IDF-3.3),
and the `bridge repo confirm` line that `repo add` suggests (NEWUSER items 7 and 8)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bridge.errors import ExitCode, RepositoryError, UsageError
from bridge.image import Chip, inspect_image
from bridge.repo import Repository
from tests.conftest import firmware_file


def run(app: typer.Typer, *args: str | Path) -> tuple[int, str, str]:
    # No COLUMNS: the output must stay on one line whatever the terminal width (copy-paste of the confirm line).
    result = CliRunner().invoke(app, [str(a) for a in args], env={"BRIDGE_CONFIG": ""})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("prefix", "chip", "empty_descriptor"),
    [("P06", Chip.ESP32, True), ("P07", Chip.ESP32, False), ("P11", Chip.ESP32S3, True), ("P13", Chip.ESP32S3, True)],
)
def test_nameless_corpus_images_need_and_take_a_project_and_version(
    repo: Repository, firmware: Path, prefix: str, chip: Chip, empty_descriptor: bool
) -> None:
    path = firmware_file(firmware, prefix)
    info = inspect_image(path)
    assert (info.project, info.version) == ("", "")
    assert (info.app is not None) is empty_descriptor
    with pytest.raises(RepositoryError, match="has no project") as refused:
        repo.add(path)
    assert "--project NAME --version VERSION" in refused.value.hint
    expected = "its app descriptor leaves the project empty" if empty_descriptor else "it has no app descriptor (built"
    assert expected in refused.value.message
    with pytest.raises(RepositoryError, match="has no version"):
        repo.add(path, project="tasmota32")
    assert repo.list() == []  # nothing was staged by the refusals

    entry = repo.add(path, project="fw-" + prefix.lower(), version="14.3.0")
    assert (entry.project, entry.version, entry.chip, entry.size, entry.sha256) == (
        "fw-" + prefix.lower(),
        "14.3.0",
        int(chip),
        info.size,
        info.sha256,
    )
    assert entry.secure_version == 0 and entry.confirmed is False
    assert (
        entry.target_path
        == f"fw-{prefix.lower()}/{chip.name.lower()}/stable/fw-{prefix.lower()}-14.3.0.{info.sha256[:12]}.bin"
    )
    release = repo.confirm("fw-" + prefix.lower(), "14.3.0", chip=chip)
    assert (release.release_number, release.project, release.version) == (1, "fw-" + prefix.lower(), "14.3.0")
    hosted = repo.hosted_path(release.target_path, release.sha256)
    assert hosted.read_bytes() == path.read_bytes()


def test_options_must_not_contradict_the_descriptor(repo: Repository, firmware: Path) -> None:
    p14 = firmware_file(firmware, "P14")  # hello_world v1.4.1-2-g0296947-dirty, ESP32-C3
    with pytest.raises(UsageError, match=r"--project 'blinky' contradicts the project 'hello_world'") as wrong:
        repo.add(p14, project="blinky")
    assert wrong.value.exit_code == ExitCode.USAGE
    with pytest.raises(UsageError, match=r"--version '2.0' contradicts the version 'v1.4.1-2-g0296947-dirty'"):
        repo.add(p14, version="2.0")
    with pytest.raises(UsageError, match="at most 31 printable characters"):
        repo.add(firmware_file(firmware, "P16"), project="x" * 32, version="1")
    with pytest.raises(UsageError, match="--version is empty"):
        repo.add(firmware_file(firmware, "P16"), project="tasmota32c3", version="  ")
    assert repo.list() == []
    # Repeating the descriptor's own values is harmless.
    entry = repo.add(p14, project="hello_world", version="v1.4.1-2-g0296947-dirty")
    assert (entry.project, entry.version, entry.chip) == ("hello_world", "v1.4.1-2-g0296947-dirty", Chip.ESP32C3)


def test_cli_publishes_a_tasmota_image_with_the_suggested_command(
    cli: typer.Typer, tmp_path: Path, firmware: Path
) -> None:
    directory = tmp_path / "fw dir"  # a space: the suggested command must be quoted to work
    assert run(cli, "repo", "init", directory)[0] == ExitCode.OK
    p16 = firmware_file(firmware, "P16")
    code, _, err = run(cli, "repo", "add", directory, p16)
    assert code == ExitCode.REPOSITORY and "has no project" in err and "--project NAME --version VERSION" in err
    code, out, _ = run(cli, "repo", "add", directory, p16, "--project", "tasmota32c3", "--version", "14.3.0")
    assert code == ExitCode.OK
    assert "tasmota32c3 14.3.0 (ESP32-C3, 2,197,712 bytes) staged on 'stable'." in out
    suggestion = next(line for line in out.splitlines() if line.startswith("Publish it with: "))
    words = shlex.split(suggestion.removeprefix("Publish it with: "))
    assert words == ["bridge", "repo", "confirm", str(directory), "tasmota32c3", "14.3.0", "--chip", "esp32c3"]
    code, out, _ = run(cli, *words[1:], "--json")
    assert code == ExitCode.OK
    release = json.loads(out)
    assert (release["project"], release["version"], release["chip"], release["release_number"]) == (
        "tasmota32c3",
        "14.3.0",
        5,
        1,
    )
    code, _, err = run(cli, "repo", "add", directory, firmware_file(firmware, "P14"), "--project", "other")
    assert code == ExitCode.USAGE and "contradicts the project 'hello_world'" in err


def test_suggested_confirm_names_the_chip_when_a_version_exists_for_two_chips(
    cli: typer.Typer, tmp_path: Path, firmware: Path
) -> None:
    directory = tmp_path / "fw"
    run(cli, "repo", "init", directory)
    version = "v1.4.1-2-g0296947-dirty"
    code, out, _ = run(cli, "repo", "add", directory, firmware_file(firmware, "P14"), "--channel", "beta")
    assert code == ExitCode.OK
    c3_line = next(line for line in out.splitlines() if line.startswith("Publish it with: "))
    assert shlex.split(c3_line)[-4:] == ["--chip", "esp32c3", "--channel", "beta"]
    code, out, _ = run(cli, "repo", "add", directory, firmware_file(firmware, "P01"), "--channel", "beta")
    assert code == ExitCode.OK
    suggestion = next(line for line in out.splitlines() if line.startswith("Publish it with: "))
    words = shlex.split(suggestion.removeprefix("Publish it with: "))
    assert words[:6] == ["bridge", "repo", "confirm", str(directory), "hello_world", version]
    assert words[6:] == ["--chip", "esp32", "--channel", "beta"]
    # Without --chip the same version on two chips is ambiguous; the hint names both spellings.
    code, _, err = run(cli, "repo", "confirm", directory, "hello_world", version, "--channel", "beta")
    assert code == ExitCode.REPOSITORY and "several chips (ESP32, ESP32-C3)" in err
    assert "--chip esp32, --chip esp32c3" in err
    code, out, _ = run(cli, *shlex.split(c3_line.removeprefix("Publish it with: "))[1:], "--json")
    assert code == ExitCode.OK and json.loads(out)["chip"] == 5
    code, out, _ = run(cli, *words[1:])
    assert code == ExitCode.OK and out.strip() == f"hello_world {version} is release 2 for every board on 'beta'."
    code, _, err = run(cli, "repo", "confirm", directory, "hello_world", version, "--chip", "esp99")
    assert code == ExitCode.USAGE and "unknown chip 'esp99'" in err
