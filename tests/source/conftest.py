"""A real repository made by ``bridge repo``, served on loopback, and a bridge data folder that trusts it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.image import Chip, build_image
from bridge.repo import Repository, ServedURL, serve_repository
from bridge.source import BoardIdentity, Release, SourceConfig, UpdateSource, trust_server


def write_image(
    folder: Path,
    *,
    project: str = "blinky",
    version: str = "1.0.0",
    chip: Chip = Chip.ESP32C3,
    secure_version: int = 0,
    size: int | None = None,
    seed: int = 0,
) -> Path:
    path = folder / f"{project}-{chip.name.lower()}-{version}-{seed}.bin"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        build_image(chip=chip, project=project, version=version, secure_version=secure_version, size=size, seed=seed)
    )
    return path


def board(
    version: str,
    *,
    board_id: str = "board-1",
    chip: int = Chip.ESP32C3,
    project: str = "blinky",
    channel: str = "stable",
    secure_version: int = 0,
    elf_sha256: str = "",
) -> BoardIdentity:
    return BoardIdentity(
        board_id=board_id,
        chip=int(chip),
        project=project,
        version=version,
        elf_sha256=elf_sha256,
        secure_version=secure_version,
        channel=channel,
    )


@dataclass
class Published:
    """A repository folder, its loopback URL and a trusting bridge data folder."""

    repo: Repository
    url: ServedURL
    data_dir: Path
    images_dir: Path
    sources: list[UpdateSource] = field(default_factory=list)

    def publish(self, version: str, *, groups: tuple[str, ...] = (), channel: str = "stable", **image: Any) -> Release:
        path = write_image(self.images_dir, version=version, **image)
        entry = self.repo.add(path, channel=channel)
        return self.repo.confirm(entry.project, version, channel, groups, chip=entry.chip)

    def source(self, **config: Any) -> UpdateSource:
        src = UpdateSource(self.url, data_dir=self.data_dir, config=SourceConfig(**config))
        self.sources.append(src)
        return src

    def log(self) -> list[tuple[str, str, int]]:
        return list(self.url.server.request_log)

    def hosted(self, release: Release) -> Path:
        return self.repo.hosted_path(release.target_path, release.sha256)


@pytest.fixture
def published(tmp_path: Path) -> Iterator[Published]:
    repo = Repository(tmp_path / "repo")
    repo.init()
    with serve_repository(repo.path) as url:
        data = tmp_path / "bridge-data"
        trust_server(url, repo.root_path.read_bytes(), data_dir=data)
        pub = Published(repo, url, data, tmp_path / "images")
        try:
            yield pub
        finally:
            for src in pub.sources:
                src.close()
