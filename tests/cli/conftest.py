"""CLI test helpers: every command runs with a temporary config file and data folder, never the real home."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bridge.cli import app


@dataclass
class Cli:
    runner: CliRunner
    env: dict[str, str]
    config_file: Path
    data_dir: Path

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        result = self.runner.invoke(app, list(args), env={**self.env, **(env or {})}, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    config_file = tmp_path / "config.toml"
    config_file.write_text("", encoding="utf-8")
    data_dir = tmp_path / "data"
    for name in ("BRIDGE_SERVER_URL", "BRIDGE_HCI", "BRIDGE_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    env = {"BRIDGE_CONFIG": str(config_file), "BRIDGE_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    yield Cli(CliRunner(), env, config_file, data_dir)
