"""The rig for end-to-end tests: the real `bridge` CLI against simulated boards and a real loopback server.

* Boards: :class:`bridge.sim.world.VirtualWorld` in the test's event loop, with one controller exposed over
  HCI-on-TCP. The CLI runs in a worker thread (its own ``asyncio.run``) with ``--hci tcp-client:HOST:PORT``: the
  product's Bumble host and bleak backend, over a real socket, exactly as ``bridge --hci ...`` in a shell.
* Server: a :class:`bridge.repo.Repository` with confirmed releases, served by ``serve_repository`` on
  127.0.0.1, trusted in a temporary data dir with :func:`bridge.source.trust_server`.
* Config: a temporary TOML file (``BRIDGE_CONFIG``) and data dir (``BRIDGE_DATA_DIR``); the real home is never
  touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from bridge.cli import app
from bridge.image import validate_image
from bridge.journal import Journal, JournalEntry
from bridge.repo import Repository, serve_repository
from bridge.source import trust_server

#: Timeouts for a virtual radio: a hang fails in seconds.
FAST_CONFIG = """
scan_timeout_s = 2
connect_timeout_s = 5
reply_timeout_s = 5
ack_timeout_s = 3
reboot_timeout_s = 20
reconnect_backoff_s = 0.1
reconnect_backoff_max_s = 0.5
"""


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Rig:
    """Runs `bridge` commands against one virtual world and one server."""

    hci: str
    config_file: Path
    data_dir: Path
    url: str = ""
    runner: CliRunner = field(default_factory=CliRunner)

    @property
    def journal(self) -> list[JournalEntry]:
        return list(Journal(self.data_dir / "journal.jsonl").entries())

    def configure(self, url: str, extra: str = "") -> None:
        self.url = url
        self.config_file.write_text(f'server_url = "{url}"\n{FAST_CONFIG}{extra}', encoding="utf-8")

    def run_sync(self, *args: str) -> Result:
        env = {"BRIDGE_CONFIG": str(self.config_file), "BRIDGE_DATA_DIR": str(self.data_dir), "COLUMNS": "200"}
        result = self.runner.invoke(app, ["--hci", self.hci, *args], env=env, catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)

    async def __call__(self, *args: str) -> Result:
        """``bridge --hci ... ARGS`` in a worker thread, so the boards keep running on this loop."""
        return await asyncio.to_thread(self.run_sync, *args)


@contextlib.contextmanager
def served_repository(folder: Path, images: Sequence[Path], data_dir: Path) -> Iterator[str]:
    """A repository with ``images`` confirmed in order (release 1, 2, ...), served on loopback and trusted."""
    repo = Repository(folder)
    repo.init()
    for image in images:
        app_desc = validate_image(image).app
        assert app_desc is not None and app_desc.project and app_desc.version
        repo.add(image, channel="stable")
        repo.confirm(app_desc.project, app_desc.version, "stable")
    with serve_repository(folder) as url:
        trust_server(str(url), repo.root_path.read_bytes(), data_dir=data_dir)
        yield str(url)


def kinds(events: list[dict[str, Any]]) -> list[str]:
    """Event kinds in order, consecutive repeats collapsed."""
    out: list[str] = []
    for event in events:
        if not out or out[-1] != event["event"]:
            out.append(event["event"])
    return out
