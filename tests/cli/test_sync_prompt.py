"""`bridge sync` on a terminal asks first; answering "n" changes nothing and says so.

The prompt only appears when stdin is a terminal, so the command runs in a subprocess whose stdin is a
pseudo-terminal; the board is a simulated one reached over HCI-over-TCP, the server a loopback TUF repository.
"""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from pathlib import Path

from bridge.errors import ExitCode
from bridge.image import Chip, build_image
from bridge.sim.config import SimBoardConfig
from bridge.sim.world import VirtualWorld
from tests.cli.e2e import FAST_CONFIG, served_repository


async def test_answering_no_at_the_prompt_changes_nothing_and_says_so(tmp_path: Path) -> None:
    old = tmp_path / "blink-1.0.0.bin"
    old.write_bytes(build_image(chip=Chip.ESP32C3, project="blink", version="1.0.0", size=30_000))
    new = tmp_path / "blink-1.1.0.bin"
    new.write_bytes(build_image(chip=Chip.ESP32C3, project="blink", version="1.1.0", size=30_000, seed=1))
    data_dir = tmp_path / "data"
    async with VirtualWorld() as world:
        host, port = await world.expose_hci()
        board = await world.add_board(
            SimBoardConfig(name="ASK-1", chip=Chip.ESP32C3, project="blink", initial_image=old)
        )
        with served_repository(tmp_path / "repo", [old, new], data_dir) as url:
            config = tmp_path / "config.toml"
            config.write_text(f'server_url = "{url}"\n{FAST_CONFIG}', encoding="utf-8")
            env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
            env |= {"BRIDGE_CONFIG": str(config), "BRIDGE_DATA_DIR": str(data_dir)}
            controller, terminal = pty.openpty()
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bridge",
                    "--hci",
                    f"tcp-client:{host}:{port}",
                    "sync",
                    "ASK-1",
                    stdin=terminal,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                )
                os.write(controller, b"n\n")  # typed ahead: the terminal holds it until the prompt reads it
                out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
            finally:
                os.close(controller)
                os.close(terminal)
    stdout, stderr = out.decode(), err.decode()
    assert proc.returncode == ExitCode.OK, stderr
    assert "1.1.0" in stdout + stderr  # the question named the release
    assert "nothing changed: the board still runs 1.0.0" in stdout + stderr
    assert board.running_version == "1.0.0"
    assert board.stats.image_bytes_written == 0
