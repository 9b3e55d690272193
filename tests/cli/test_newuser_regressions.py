"""Regressions for the new-user trial (its items 3, 6, 9, 10, 11, 13, 14), through the real CLI.

In-process tests use typer's CliRunner (the ``cli`` fixture: temporary config file and data folder); the ones about
the process itself (the broken pipe, the last safety net in ``main()``, output width on a pipe) run ``bridge`` in a
subprocess.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.cli._common import BROKEN_PIPE_EXIT
from bridge.config import default_data_dir
from bridge.demo import DEMO_MARKER
from bridge.errors import ExitCode
from bridge.image import Chip, build_image
from bridge.journal import AttemptResult, Journal, JournalEntry
from bridge.repo import Repository, serve_repository
from bridge.sim.config import SimBoardConfig
from bridge.sim.world import VirtualWorld
from bridge.source import trust_server
from tests.cli.conftest import Cli
from tests.cli.e2e import FAST_CONFIG, Rig

LONG_VERSION = "v1.4.1-2-g0296947-dirty-nu-wrap"  # 31 bytes: the most an app descriptor holds


def _bridge(*args: str, env: dict[str, str], stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_") and k != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env={**full_env, **env},
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "sub-config.toml"
    config.write_text("", encoding="utf-8")
    return {"BRIDGE_CONFIG": str(config), "BRIDGE_DATA_DIR": str(tmp_path / "sub-data")}


@pytest.fixture
def image(tmp_path: Path) -> Path:
    folder = tmp_path / "a-folder-with-a-long-name-so-that-the-path-would-not-fit-in-eighty-columns-at-all"
    folder.mkdir()
    path = folder / "blink.bin"
    path.write_bytes(build_image(chip=Chip.ESP32C3, project="blink", version=LONG_VERSION, size=40_000))
    return path


# ---------------------------------------------------------------------------------------------------------------
# Item 3: no tracebacks


def test_sim_state_pointing_at_a_folder_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("sim", "--state", str(tmp_path), "--port", "0")
    assert code == ExitCode.USAGE
    assert f"--state {tmp_path} is a folder" in err
    assert "Traceback" not in err + out


@pytest.mark.parametrize("origin", ["config", "env"])
def test_data_dir_that_is_a_file_is_a_config_error(cli: Cli, tmp_path: Path, origin: str) -> None:
    regular = tmp_path / "not-a-folder"
    regular.write_text("x", encoding="utf-8")
    if origin == "config":
        cli.config_file.write_text(f'data_dir = "{regular}"\n', encoding="utf-8")
        code, out, err = cli("log", env={"BRIDGE_DATA_DIR": ""})
        assert f"{cli.config_file}, line 1: data_dir must be a folder, but {regular} is a file" in err
    else:
        code, out, err = cli("log", env={"BRIDGE_DATA_DIR": str(regular / "sub")})
        assert f"environment variable BRIDGE_DATA_DIR: data_dir must be a folder, but {regular / 'sub'}" in err
        assert f"{regular} is a file" in err
    assert code == ExitCode.CONFIG
    assert out == ""
    assert "Traceback" not in err


def test_config_error_with_json_prints_a_json_error_document(cli: Cli, tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("x", encoding="utf-8")
    code, out, _err = cli("log", "--json", env={"BRIDGE_DATA_DIR": str(regular)})
    assert code == ExitCode.CONFIG
    doc = json.loads(out)
    assert doc["ok"] is False
    assert doc["error"] == "ConfigError"
    assert doc["exit_code"] == 10
    assert str(regular) in doc["message"]


def test_demo_workdir_that_is_a_file_or_a_foreign_folder_is_refused(cli: Cli, tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("x", encoding="utf-8")
    code, out, err = cli("demo", "--workdir", str(regular))
    assert code == ExitCode.USAGE
    assert f"--workdir {regular} is a file, not a folder" in err
    assert "Traceback" not in out + err

    foreign = tmp_path / "fw"
    foreign.mkdir()
    (foreign / "precious.bin").write_bytes(b"keep me")
    code, _out, err = cli("demo", "--workdir", str(foreign))
    assert code == ExitCode.USAGE
    assert "is not empty and was not made by `bridge demo`" in err
    assert sorted(p.name for p in foreign.iterdir()) == ["precious.bin"]


def test_demo_without_keep_does_not_print_a_path_inside_the_deleted_folder(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("demo")
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("journal (deleted with the demo's folder; --keep keeps it): confirmed, 1.0.0 -> 1.1.0")
    folder = next(line.split()[-1] for line in out.splitlines() if "working folder" in line)
    assert not Path(folder).exists()
    # A folder an earlier demo left (--workdir, marker inside) may be reused.
    reused = tmp_path / "again"
    code, out, err = cli("demo", "--workdir", str(reused))
    assert code == 0, err
    assert (reused / DEMO_MARKER).is_file()
    assert f"journal ({reused / 'bridge-data' / 'journal.jsonl'})" in out
    code, out, err = cli("demo", "--workdir", str(reused))
    assert code == 0, err


def test_an_unexpected_exception_is_one_line_and_debug_shows_the_traceback(env: dict[str, str]) -> None:
    script = (
        "import sys\n"
        "from bridge.journal import Journal\n"
        "def boom(self, limit): raise RuntimeError('boom')\n"
        "Journal.tail = boom\n"
        "from bridge.cli import main\n"
        "sys.argv = ['bridge', *sys.argv[1:]]\n"
        "main()\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    for debug in ([], ["--debug"]):
        proc = subprocess.run(
            [sys.executable, "-c", script, *debug, "log"],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == ExitCode.INTERNAL
        assert "internal error: RuntimeError: boom (run with --debug for the traceback; please report it)" in (
            proc.stderr
        )
        assert ("Traceback (most recent call last)" in proc.stderr) == bool(debug)
        assert proc.stdout == ""


# ---------------------------------------------------------------------------------------------------------------
# Item 6: a closed stdout pipe


@pytest.mark.parametrize("args", [("image", "info"), ("config", "show")])
def test_closed_stdout_pipe_exits_141_quietly(env: dict[str, str], image: Path, args: tuple[str, ...]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: like `| head -1` after its line
    try:
        proc = _bridge(*args, *([str(image)] if args[0] == "image" else []), env=env, stdout=write_end)
    finally:
        os.close(write_end)
    assert proc.returncode == BROKEN_PIPE_EXIT == 141
    assert "Traceback" not in proc.stderr
    assert "Exception ignored" not in proc.stderr


def test_reader_that_stops_after_one_line(env: dict[str, str], image: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "image", "info", str(image)],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    proc.stderr.close()
    assert str(image).encode() in first
    assert code in (0, BROKEN_PIPE_EXIT)  # 0 when all output fitted in the pipe before the reader left
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------------------------
# Item 9: no wrapping or truncation when stdout is not a terminal


def test_image_info_piped_keeps_paths_versions_and_hashes_on_one_line(env: dict[str, str], image: Path) -> None:
    proc = _bridge("image", "info", str(image), env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].strip() == str(image)
    assert any(line.split() == ["version", LONG_VERSION] for line in lines)
    sha = __import__("hashlib").sha256(image.read_bytes()).hexdigest()
    assert any(line.split() == ["file", "SHA-256", sha] for line in lines)


def test_log_piped_keeps_each_entry_on_one_line(env: dict[str, str], tmp_path: Path) -> None:
    error = "the board did not come back within 90 s after the reboot; " * 4
    Journal(tmp_path / "sub-data" / "journal.jsonl").append(
        JournalEntry(
            board="AA:BB:CC:DD:EE:FF",
            result=AttemptResult.FAILED,
            from_version="1",
            to_version=LONG_VERSION,
            bytes_sent=124_192,
            duration_s=20.5,
            error=error.strip(),
            started_at="2026-12-03T17:01:51+00:00",
        )
    )
    proc = _bridge("log", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2  # header + one entry
    row = lines[1]
    for text in ("2026-12-03T17:01:51", "AA:BB:CC:DD:EE:FF", LONG_VERSION, "124,192", error.strip()):
        assert text in row


# ---------------------------------------------------------------------------------------------------------------
# Item 10: exit codes


def test_push_of_a_missing_file_is_a_usage_error_like_image_info(cli: Cli) -> None:
    code, out, err = cli("push", "OTA-0001", "/nonexistent.bin")
    assert code == ExitCode.USAGE
    info_code, _out, info_err = cli("image", "info", "/nonexistent.bin")
    assert info_code == ExitCode.USAGE
    assert "error: /nonexistent.bin: no such file." in err
    assert err.splitlines()[0] == info_err.splitlines()[0]
    assert out == ""
    assert not (cli.data_dir / "journal.jsonl").exists()  # a typo is not an attempt


def test_sim_on_a_port_in_use_is_a_usage_error(cli: Cli) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _out, err = cli("sim", "--port", str(port))
    assert code == ExitCode.USAGE
    assert f"port {port} is in use; pass --port 0" in err


def test_sim_run_in_process_leaves_no_handler_on_the_board_loggers(cli: Cli) -> None:
    """The board log handler writes to this command's stderr; it must not outlive it (later logs would fail)."""
    import logging

    names = ("bridge.sim.board", "bridge.sim.firmware")
    before = [(len(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _out, _err = cli("sim", "--port", str(busy.getsockname()[1]))
    assert code == ExitCode.USAGE
    assert [(len(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names] == before


@pytest.mark.parametrize(
    ("command", "codes"),
    [
        ("status", ["0 updated", "3 outdated", "4 board not found", "5 Bluetooth", "9 update server", "10 config"]),
        ("sync", ["2 bad usage", "3 update available", "8 rolled back", "10 config", "130 interrupted"]),
        ("push", ["2 bad usage", "6 image refused", "130 interrupted"]),
    ],
)
def test_help_lists_the_exit_codes(cli: Cli, command: str, codes: list[str]) -> None:
    code, out, _err = cli(command, "--help")
    assert code == 0
    flat = " ".join(out.replace("│", " ").split())
    for text in codes:
        assert text in flat, text


# ---------------------------------------------------------------------------------------------------------------
# Item 11: config show is TOML


def test_config_show_is_toml_that_round_trips(cli: Cli, tmp_path: Path) -> None:
    cli.config_file.write_text('channel = "be\\"ta"\nallow_same_version = true\nack_timeout_s = 7\n', encoding="utf-8")
    code, out, err = cli("config", "show")
    assert code == 0, err
    parsed = tomllib.loads(out)
    assert "server_url" not in parsed  # unset: a comment
    assert "# server_url = (not set)" in out
    assert parsed["channel"] == 'be"ta'
    assert parsed["allow_same_version"] is True
    assert parsed["ack_timeout_s"] == 7.0
    assert parsed["data_dir"] == str(cli.data_dir)
    saved = tmp_path / "saved.toml"
    saved.write_text(out, encoding="utf-8")
    code, again, err = cli("--config", str(saved), "config", "show", env={"BRIDGE_CONFIG": "", "BRIDGE_DATA_DIR": ""})
    assert code == 0, err
    assert tomllib.loads(again) == parsed


# ---------------------------------------------------------------------------------------------------------------
# Item 13: status and sync after `bridge trust`, without server_url


@pytest.fixture
def trusted_repo(tmp_path: Path, cli: Cli) -> Iterator[str]:
    repo = Repository(tmp_path / "repo")
    repo.init()
    path = tmp_path / "blink-2.0.0.bin"
    path.write_bytes(build_image(chip=Chip.ESP32C3, project="blink", version="2.0.0", size=30_000))
    repo.add(path, channel="stable")
    repo.confirm("blink", "2.0.0", "stable")
    with serve_repository(tmp_path / "repo") as url:
        trust_server(str(url), repo.root_path.read_bytes(), data_dir=cli.data_dir)
        yield str(url).rstrip("/")


def test_fetch_uses_the_only_trusted_server_and_names_chips(cli: Cli, trusted_repo: str) -> None:
    code, out, err = cli("fetch")
    assert code == 0, err
    assert f"note: using {trusted_repo}, the only trusted server (server_url is not set)" in err
    assert "cached blink 2.0.0 (ESP32-C3) -> " in out


def test_sync_without_any_server_says_how_to_configure_one(cli: Cli) -> None:
    code, out, err = cli("sync", "--yes", "BOARD")
    assert code == ExitCode.USAGE
    assert "no update server configured: set server_url in config.toml or BRIDGE_SERVER_URL" in err
    assert out == ""


@pytest.fixture
async def world() -> AsyncIterator[VirtualWorld]:
    async with VirtualWorld() as world:
        yield world


async def test_status_after_trust_alone_uses_the_trusted_server(world: VirtualWorld, tmp_path: Path) -> None:
    host, port = await world.expose_hci()
    config_file = tmp_path / "config.toml"
    config_file.write_text(FAST_CONFIG, encoding="utf-8")  # no server_url
    rig = Rig(hci=f"tcp-client:{host}:{port}", config_file=config_file, data_dir=tmp_path / "data")
    old = tmp_path / "blink-1.0.0.bin"
    old.write_bytes(build_image(chip=Chip.ESP32C3, project="blink", version="1.0.0", size=30_000))
    await world.add_board(SimBoardConfig(name="NU-1", chip=Chip.ESP32C3, project="blink", initial_image=old))
    try:
        unknown = await rig("status", "NU-1")
        assert unknown.code == 0, unknown.stderr
        assert "unknown" in unknown.stdout
        assert "no update server configured: set server_url in config.toml or BRIDGE_SERVER_URL" in unknown.stderr

        repo = Repository(tmp_path / "repo")
        repo.init()
        new = tmp_path / "blink-1.1.0.bin"
        new.write_bytes(build_image(chip=Chip.ESP32C3, project="blink", version="1.1.0", size=30_000, seed=1))
        repo.add(new, channel="stable")
        repo.confirm("blink", "1.1.0", "stable")
        with serve_repository(tmp_path / "repo") as url:
            trust_server(str(url), repo.root_path.read_bytes(), data_dir=rig.data_dir)
            result = await rig("status", "NU-1")
        assert result.code == ExitCode.UPDATE_AVAILABLE, result.stderr
        assert f"note: using {str(url).rstrip('/')}, the only trusted server" in result.stderr
        assert "1.1.0 available" in result.stdout
    finally:
        for transport in world._transports:
            server = getattr(transport, "server", None)
            if server is not None:
                server.close()
                await server.wait_closed()


# ---------------------------------------------------------------------------------------------------------------
# Item 14: the smaller ones


def test_version_option(cli: Cli) -> None:
    from bridge import __version__

    code, out, _err = cli("--version")
    assert code == 0
    assert out == f"bridge {__version__}\n"


def test_flags_are_shown_without_a_bool_value(cli: Cli) -> None:
    for command in (["status"], ["sync"], ["image", "info"], ["log"]):
        code, out, _err = cli(*command, "--help")
        assert code == 0
        json_line = next(line for line in out.splitlines() if "--json" in line)
        assert "<bool>" not in json_line


def test_unknown_bridge_env_var_is_warned_about(cli: Cli) -> None:
    code, out, err = cli("log", env={"BRIDGE_SERVER": "http://typo.example"})
    assert code == 0
    assert "warning: ignoring unknown environment variable BRIDGE_SERVER (known: " in err
    assert "BRIDGE_SERVER_URL" in err.split("known:")[1]
    assert "BRIDGE_SERVER" not in out


def test_empty_bridge_data_dir_means_unset(cli: Cli) -> None:
    code, out, err = cli("config", "show", env={"BRIDGE_DATA_DIR": ""})
    assert code == 0, err
    assert tomllib.loads(out)["data_dir"] == str(default_data_dir())


def test_no_stray_stdout_after_an_error(cli: Cli) -> None:
    code, out, _err = cli("push", "OTA-0001", "/nonexistent.bin")
    assert code == ExitCode.USAGE
    assert out == ""


async def test_no_blank_line_on_stdout_after_a_failed_push(world: VirtualWorld, tmp_path: Path, image: Path) -> None:
    host, port = await world.expose_hci()
    config_file = tmp_path / "config.toml"
    config_file.write_text(FAST_CONFIG, encoding="utf-8")
    rig = Rig(hci=f"tcp-client:{host}:{port}", config_file=config_file, data_dir=tmp_path / "data")
    try:
        result = await rig("push", "C0:0A:7A:00:99:99", str(image))  # nobody has that address
    finally:
        for transport in world._transports:
            server = getattr(transport, "server", None)
            if server is not None:
                server.close()
                await server.wait_closed()
    assert result.code == ExitCode.BOARD_NOT_FOUND, result.stderr
    assert result.stdout.startswith("checking C0:0A:7A:00:99:99")
    assert result.stdout.endswith("\n") and not result.stdout.endswith("\n\n")
    assert "" not in result.stdout.splitlines()
