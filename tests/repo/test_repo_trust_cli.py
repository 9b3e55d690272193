"""`bridge trust` mistakes and their documented exit codes, and the server_url advice (NEWUSER items 10, 13)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer
from typer.testing import CliRunner

from bridge.errors import ExitCode
from bridge.repo import serve_repository
from tests.conftest import firmware_file


def run(app: typer.Typer, *args: str | Path, server_url: str = "") -> tuple[int, str, str]:
    env = {"BRIDGE_CONFIG": "", "BRIDGE_SERVER_URL": server_url}
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_trust_exit_codes_and_server_url_advice(cli: typer.Typer, tmp_path: Path, firmware: Path) -> None:
    directory = tmp_path / "fw"
    run(cli, "repo", "init", directory)
    root = directory / "public/metadata/1.root.json"
    fingerprint = hashlib.sha256(root.read_bytes()).hexdigest()
    data = tmp_path / "bridge"
    with serve_repository(directory) as url:
        code, _, err = run(cli, "trust", url, "--fingerprint", "abc", "--data-dir", data)
        assert code == ExitCode.USAGE and "invalid fingerprint 'abc'" in err
        code, _, err = run(cli, "trust", url, "--root", firmware_file(firmware, "P14"), "--data-dir", data)
        assert code == ExitCode.USAGE and "the root file is not JSON" in err and "1.root.json" in err
        code, _, err = run(cli, "trust", url, "--fingerprint", "cd" * 32, "--data-dir", data)
        assert code == ExitCode.REFUSED and f"has fingerprint {fingerprint}, not the expected {'cd' * 32}" in err
        a_file = tmp_path / "plain-file"
        a_file.write_text("not a folder")
        code, _, err = run(cli, "trust", url, "--root", root, "--data-dir", a_file)
        assert code == ExitCode.CONFIG and str(a_file) in err and "Traceback" not in err
        blocked = tmp_path / "blocked"
        blocked.mkdir()
        (blocked / "servers").write_text("a file where the trust store needs a folder")
        code, _, err = run(cli, "trust", url, "--root", root, "--data-dir", blocked)
        assert code == ExitCode.CONFIG and f"cannot use the data folder {blocked}" in err
        assert not data.exists()

        code, out, _ = run(cli, "trust", url, "--root", root, "--data-dir", data)
        assert code == ExitCode.OK
        assert f'Set it as your server: `server_url = "{url}"` in config.toml, or BRIDGE_SERVER_URL={url}' in out
        assert "bridge uses the only trusted server" in out
        code, out, _ = run(cli, "trust", url + "/", "--root", root, "--data-dir", data, server_url=url)
        assert code == ExitCode.OK and "already trusted" in out
        assert "It is the configured server (server_url)" in out
        code, out, _ = run(
            cli, "trust", url, "--root", root, "--data-dir", data, server_url="https://elsewhere.example/repo"
        )
        assert "The configured server is https://elsewhere.example/repo, not this one" in out

        run(cli, "repo", "init", tmp_path / "other")
        code, _, err = run(
            cli, "trust", url, "--root", tmp_path / "other/public/metadata/1.root.json", "--data-dir", data
        )
        assert code == ExitCode.USAGE and "already trusted with another root" in err and "--replace" in err
