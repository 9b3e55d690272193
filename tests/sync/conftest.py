"""Fixtures for the engine over real parts: a virtual radio and a loopback TUF server with P15 and P14."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.sim.world import VirtualWorld
from tests.cli.e2e import served_repository
from tests.conftest import firmware_file


@pytest.fixture
async def world() -> AsyncIterator[VirtualWorld]:
    async with VirtualWorld() as world:
        yield world


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def server(firmware: Path, tmp_path: Path, data_dir: Path) -> Iterator[str]:
    images = [firmware_file(firmware, "P15"), firmware_file(firmware, "P14")]
    with served_repository(tmp_path / "repo", images, data_dir) as url:
        yield url
