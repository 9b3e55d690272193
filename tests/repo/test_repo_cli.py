"""``bridge repo ...`` and ``bridge trust`` from the command line: output, JSON, exit codes, no tracebacks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from bridge.errors import ExitCode
from bridge.repo import serve_repository
from bridge.source import trusted_server

from .conftest import ImageMaker


def run(app: typer.Typer, *args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"BRIDGE_CONFIG": "", "COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_publish_from_the_command_line(cli: typer.Typer, tmp_path: Path, image: ImageMaker) -> None:
    directory = tmp_path / "fw"
    code, out, err = run(cli, "repo", "init", directory, "--timestamp-days", "3")
    assert code == ExitCode.OK
    fingerprint = hashlib.sha256((directory / "public/metadata/1.root.json").read_bytes()).hexdigest()
    assert f"Root fingerprint (SHA-256 of that file): {fingerprint}" in out
    assert f"bridge trust URL --fingerprint {fingerprint}" in out
    assert "move root.pem and root-backup.pem offline" in err

    code, out, _ = run(cli, "repo", "add", directory, image("1.0"), "--notes", "first")
    assert code == ExitCode.OK
    assert "blinky 1.0 (ESP32-C3, 65,536 bytes) staged on 'stable'." in out
    assert "bridge repo confirm" in out
    code, out, _ = run(cli, "repo", "confirm", directory, "blinky", "1.0", "--json")
    assert code == ExitCode.OK
    release = json.loads(out)
    assert (release["release_number"], release["version"], release["notes"]) == (1, "1.0", "first")
    run(cli, "repo", "add", directory, image("1.1"))
    code, out, _ = run(cli, "repo", "confirm", directory, "blinky", "1.1", "-g", "bench-1", "-g", "bench-2")
    assert out.strip() == "blinky 1.1 is release 2 for boards bench-1, bench-2."

    code, out, _ = run(cli, "repo", "list", directory, "--json")
    entries = json.loads(out)["entries"]
    assert [(e["version"], e["release_number"], e["status"], e["groups"]) for e in entries] == [
        ("1.1", 2, "group", ["bench-1", "bench-2"]),
        ("1.0", 1, "everyone", []),
    ]
    code, out, _ = run(cli, "repo", "list", directory)
    assert "bench-1, bench-2" in out and "everyone" in out

    code, out, _ = run(cli, "repo", "refresh", directory, "--json")
    assert code == ExitCode.OK and json.loads(out)["warnings"] == []
    code, out, _ = run(cli, "repo", "prune", directory, "--keep", "1", "--dry-run", "--json")
    assert json.loads(out)["pruned"] == []  # release 1 is the newest for everyone: kept
    run(cli, "repo", "confirm", directory, "blinky", "1.1")
    code, out, _ = run(cli, "repo", "prune", directory, "--keep", "1", "--dry-run")
    assert out.strip() == "Would delete blinky 1.0 (ESP32-C3, stable, release 1)"
    code, out, _ = run(cli, "repo", "prune", directory, "--keep", "1")
    assert out.strip() == "Deleted blinky 1.0 (ESP32-C3, stable, release 1)"
    assert not list((directory / "public/targets/blinky").rglob("*blinky-1.0.*"))


def test_mistakes_give_a_message_a_hint_and_an_exit_code(
    cli: typer.Typer, tmp_path: Path, firmware: Path, image: ImageMaker
) -> None:
    directory = tmp_path / "fw"
    code, _, err = run(cli, "repo", "list", directory)
    assert code == ExitCode.REPOSITORY
    assert "is not a firmware repository" in err and "hint: Create one with `bridge repo init" in err
    run(cli, "repo", "init", directory)
    code, _, err = run(cli, "repo", "add", directory, firmware / "N02_bootloader_esp32_idf5.2.bin")
    assert code == ExitCode.REFUSED and "bootloader" in err
    code, _, err = run(cli, "repo", "add", directory, tmp_path / "missing.bin")
    assert code == ExitCode.REPOSITORY and "no such image file" in err
    code, out, _ = run(cli, "repo", "confirm", directory, "blinky", "9", "--json")
    assert code == ExitCode.REPOSITORY
    assert json.loads(out)["error"] == "RepositoryError"
    code, _, err = run(cli, "repo", "prune", directory, "--keep", "0")
    assert code == ExitCode.REPOSITORY and "at least 1" in err
    code, _, err = run(cli, "repo", "add", directory, image("1.0"), "--channel", "NOT OK")
    assert code == ExitCode.REPOSITORY and "invalid channel 'NOT OK'" in err
    code, _, err = run(cli, "trust", "http://127.0.0.1:9", "--data-dir", tmp_path / "d")
    assert code == ExitCode.USAGE and "give --root FILE or --fingerprint HEX" in err


def test_trust_by_file_and_by_fingerprint(cli: typer.Typer, tmp_path: Path) -> None:
    directory = tmp_path / "fw"
    run(cli, "repo", "init", directory)
    root = directory / "public/metadata/1.root.json"
    fingerprint = hashlib.sha256(root.read_bytes()).hexdigest()
    data = tmp_path / "bridge"
    with serve_repository(directory) as url:
        code, out, _ = run(cli, "trust", url, "--fingerprint", f"sha256:{fingerprint}", "--data-dir", data, "--json")
        assert code == ExitCode.OK
        assert json.loads(out)["fingerprint"] == fingerprint
        code, out, _ = run(cli, "trust", url + "/", "--root", root, "--data-dir", data)
        assert code == ExitCode.OK and f"{url} is already trusted (root fingerprint {fingerprint})." in out
        stored = trusted_server(url, data_dir=data)
        assert stored is not None and stored.fingerprint == fingerprint and stored.root_version == 1
        run(cli, "repo", "init", tmp_path / "other")
        other = tmp_path / "other/public/metadata/1.root.json"
        code, _, err = run(cli, "trust", url, "--root", other, "--data-dir", data)
        assert code == ExitCode.USAGE and "already trusted with another root" in err and "--replace" in err
        code, _, err = run(cli, "trust", url, "--fingerprint", "ab" * 32, "--data-dir", data)
        assert code == ExitCode.REFUSED and f"has fingerprint {fingerprint}, not the expected" in err
        code, _, _ = run(cli, "trust", url, "--root", other, "--data-dir", data, "--replace")
        assert code == ExitCode.OK
        replaced = trusted_server(url, data_dir=data)
        assert replaced is not None and replaced.fingerprint != fingerprint
