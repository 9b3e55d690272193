"""Fixtures for the repository tooling: a fresh repository and deterministic images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import typer

from bridge.cli import repo_cmds
from bridge.image import Chip, build_image
from bridge.repo import Repository

ImageMaker = Callable[..., Path]


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repository = Repository(tmp_path / "repo")
    repository.init()
    return repository


@pytest.fixture
def image(tmp_path: Path) -> ImageMaker:
    def make(
        version: str = "1.0.0",
        *,
        project: str = "blinky",
        chip: Chip = Chip.ESP32C3,
        secure_version: int = 0,
        seed: int = 0,
        size: int | None = None,
    ) -> Path:
        folder = tmp_path / "images"
        folder.mkdir(exist_ok=True)
        path = folder / f"{project}-{chip.name}-{version.replace('/', '_')}-{seed}.bin"
        path.write_bytes(
            build_image(
                chip=chip, project=project, version=version, secure_version=secure_version, seed=seed, size=size
            )
        )
        return path

    return make


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test shell holding only this area's commands."""

    repo_cmds.register(app)
    return app
