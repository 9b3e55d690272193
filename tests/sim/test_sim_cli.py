"""``bridge sim``: a simulated board in one process, the bridge CLI in another, over HCI on TCP."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bridge.cli import app
from bridge.errors import ExitCode
from tests.conftest import firmware_file

ROOT = Path(__file__).resolve().parents[2]


class SimProcess:
    """``python -m bridge sim --json ...`` in the background; ``summary`` is its first stdout line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "sim", "--json", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            first = lines.get(timeout=60)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError("bridge sim printed nothing in 60 s") from None
        assert first, f"bridge sim exited: {self.proc.communicate(timeout=10)}"
        self.summary: dict[str, Any] = json.loads(first)

    @property
    def hci(self) -> str:
        return str(self.summary["hci"])

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as a person would; returns the exit status and stderr."""
        self.proc.send_signal(signal.SIGINT)
        _, stderr = self.proc.communicate(timeout=30)
        return self.proc.returncode, stderr


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    config = tmp_path / "config.toml"
    config.write_text("scan_timeout_s = 2\nreconnect_backoff_s = 0.1\n", encoding="utf-8")
    yield {**os.environ, "BRIDGE_CONFIG": str(config), "BRIDGE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}


def bridge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_a_second_process_finds_and_updates_the_simulated_board(
    env: dict[str, str], tmp_path: Path, firmware: Path
) -> None:
    image = firmware_file(firmware, "P14")
    state = tmp_path / "board.sim"
    args = ["--chip", "esp32c3", "--project", "hello_world", "--version", "0.9", "--state", str(state)]
    sim = SimProcess([*args, "--time-scale", "0", "--boot-time", "0.2"], env)
    try:
        [board] = sim.summary["boards"]
        assert (board["chip"], board["running_version"], board["running_partition"]) == ("ESP32-C3", "0.9", "ota_0")
        assert sim.hci.startswith("tcp-client:127.0.0.1:")

        scanned = bridge(env, "--hci", sim.hci, "scan", "--json")
        assert scanned.returncode == 0, scanned.stderr
        assert [(b["name"], b["address"]) for b in json.loads(scanned.stdout)] == [(board["name"], board["address"])]

        pushed = bridge(env, "--hci", sim.hci, "push", board["name"], str(image), "--json")
        assert pushed.returncode == 0, pushed.stderr
        assert json.loads(pushed.stdout)["outcome"] == "confirmed"
    finally:
        code, stderr = sim.stop()
    assert code == 0, stderr
    assert f"state saved to {state}" in stderr
    assert "running hello_world v1.4.1-2-g0296947-dirty from ota_1 (VALID), last update SUCCESS" in stderr

    again = SimProcess(["--state", str(state), "--time-scale", "0"], env)  # the same board, restarted
    try:
        [board_again] = again.summary["boards"]
        assert (board_again["name"], board_again["address"]) == (board["name"], board["address"])
        assert (board_again["running_version"], board_again["running_partition"]) == (
            "v1.4.1-2-g0296947-dirty",
            "ota_1",
        )
    finally:
        assert again.stop()[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--erase", "fast"], "--erase 'fast': expected one of sequential, up-front, ahead-64k"),
        (["--fault", "drop"], "--fault 'drop': expected KEY=VALUE"),
        (["--fault", "slow-flash=abc"], "'abc' is not a number"),
        (["--name", "A-VERY-LONG-NAME"], "must be 1-8 bytes"),
        (["--self-test", "maybe"], "--self-test 'maybe'"),
        (["--chip", "esp99"], "unknown chip 'esp99'"),
    ],
)
def test_bad_options_are_usage_errors_without_traceback(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["sim", *args])
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_initial_image_that_is_no_app_is_refused(firmware: Path) -> None:
    table = firmware_file(firmware, "N01")  # a partition table
    result = CliRunner().invoke(app, ["sim", "--image", str(table)])
    assert result.exit_code == ExitCode.USAGE
    assert f"--image {table}:" in result.stderr and "partition table" in result.stderr.lower()


def test_sim_refuses_the_global_hci_option() -> None:
    result = CliRunner().invoke(app, ["--hci", "usb:0", "sim"])
    assert result.exit_code == ExitCode.USAGE
    assert "takes no --hci" in result.stderr
