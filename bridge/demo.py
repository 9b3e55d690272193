"""``bridge demo``: the whole job on one machine, with no hardware and no network.

:func:`demo_environment` sets up, in a temporary folder:

* a signed TUF repository (``bridge.repo``) with two confirmed releases of one project: real ESP32-C3 images
  (P15 -> P14 of the firmware corpus) when given a folder of them, otherwise two images built by
  :func:`bridge.image.build_image`;
* that repository served over HTTP on loopback, and trusted by a fresh bridge data folder;
* a :class:`bridge.sim.VirtualWorld` with one simulated board running the older release;
* a :class:`bridge.Bridge` wired to both.

The CLI then runs status -> sync -> status on it exactly as a technician would. Needs the ``sim`` extra (Bumble).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bridge.api import Bridge
from bridge.config import BridgeConfig
from bridge.errors import UsageError

__all__ = [
    "DEMO_BOARD_NAME",
    "DEMO_MARKER",
    "DemoImages",
    "DemoSetup",
    "check_workdir",
    "demo_environment",
    "demo_images",
]

logger = logging.getLogger(__name__)

DEMO_BOARD_NAME = "demo-c3"
#: Corpus files used with ``--images``: the 2023 and the 2024 build of ESP-IDF hello_world for ESP32-C3.
CORPUS_OLD, CORPUS_NEW = "P15", "P14"
#: Size of each built image (a realistic small app, and long enough to see the progress bar move).
BUILT_IMAGE_BYTES = 384 * 1024
#: File the demo leaves in its working folder: a folder holding it may be reused by another demo.
DEMO_MARKER = ".bridge-demo"


def check_workdir(workdir: Path) -> None:
    """UsageError unless ``workdir`` may hold a demo: missing, empty, or left by an earlier demo (its marker).

    The demo writes a repository, images and a data folder there: it never mixes them into someone's files.
    """
    if not workdir.exists():
        return
    if not workdir.is_dir():
        raise UsageError(
            f"--workdir {workdir} is a file, not a folder",
            hint="Give a new or empty folder (it is created), or leave --workdir out to use a temporary one.",
        )
    try:
        entries = {child.name for child in workdir.iterdir()}
    except OSError as exc:
        raise UsageError(f"--workdir {workdir}: cannot list it ({exc.strerror or exc})") from None
    if entries and DEMO_MARKER not in entries:
        raise UsageError(
            f"--workdir {workdir} is not empty and was not made by `bridge demo`",
            hint="Give a new or empty folder, or leave --workdir out to use a temporary one.",
        )


@dataclass(frozen=True)
class DemoImages:
    old: Path
    new: Path
    project: str
    old_version: str
    new_version: str
    real: bool
    """True for corpus images, False for built ones."""


@dataclass(frozen=True)
class DemoSetup:
    workdir: Path
    bridge: Bridge
    board: str
    """The simulated board's address."""
    board_name: str
    url: str
    images: DemoImages


def _corpus_file(folder: Path, prefix: str) -> Path:
    matches = sorted(folder.glob(f"{prefix}_*.bin"))
    if len(matches) != 1:
        raise UsageError(
            f"{folder} has no single {prefix}_*.bin image",
            hint="Give the firmware corpus folder (../shared/firmware), or leave --images out to use built images.",
        )
    return matches[0]


def demo_images(workdir: Path, images: Path | None) -> DemoImages:
    """The two images of the demo: P15 -> P14 from ``images``, or two built ESP32-C3 images."""
    from bridge.image import Chip, build_image, validate_image

    if images is not None:
        if not images.is_dir():
            raise UsageError(f"--images {images} is not a folder")
        old, new = _corpus_file(images, CORPUS_OLD), _corpus_file(images, CORPUS_NEW)
        old_app, new_app = validate_image(old).app, validate_image(new).app
        assert old_app is not None and new_app is not None  # P14/P15 carry descriptors (MANIFEST.md)
        return DemoImages(old, new, old_app.project, old_app.version, new_app.version, real=True)
    project = "blink"
    paths = []
    for version, seed in (("1.0.0", 1), ("1.1.0", 2)):
        data = build_image(chip=Chip.ESP32C3, project=project, version=version, size=BUILT_IMAGE_BYTES, seed=seed)
        path = workdir / f"{project}-{version}.bin"
        path.write_bytes(data)
        paths.append(path)
    return DemoImages(paths[0], paths[1], project, "1.0.0", "1.1.0", real=False)


def _publish(repo_dir: Path, images: DemoImages) -> bytes:
    """A repository with both releases confirmed, older first; returns its root metadata."""
    from bridge.repo import Repository

    repo = Repository(repo_dir)
    repo.init()
    for path, version in ((images.old, images.old_version), (images.new, images.new_version)):
        repo.add(path, channel="stable", notes=f"demo release {version}")
        repo.confirm(images.project, version, "stable")
    return repo.root_path.read_bytes()


def demo_config(workdir: Path, url: str) -> BridgeConfig:
    """Timeouts sized for a virtual radio: a stuck demo fails in seconds, not minutes."""
    return BridgeConfig(
        server_url=url,
        data_dir=workdir / "bridge-data",
        scan_timeout_s=2.0,
        connect_timeout_s=5.0,
        reply_timeout_s=5.0,
        ack_timeout_s=5.0,
        reboot_timeout_s=20.0,
        reconnect_backoff_s=0.1,
        reconnect_backoff_max_s=1.0,
    )


def _clear_previous_demo(workdir: Path) -> None:
    """An earlier demo's folder (its marker inside) starts afresh: a new repository, images and data folder."""
    if not (workdir / DEMO_MARKER).is_file():
        return
    for child in workdir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


@contextlib.asynccontextmanager
async def demo_environment(workdir: Path, *, images: Path | None = None) -> AsyncIterator[DemoSetup]:
    """Repository + loopback server + virtual world + simulated board + bridge, all inside ``workdir``."""
    from bridge.image import Chip
    from bridge.repo import serve_repository
    from bridge.sim.config import SimBoardConfig
    from bridge.sim.world import VirtualWorld
    from bridge.source import trust_server

    await asyncio.to_thread(check_workdir, workdir)
    await asyncio.to_thread(_clear_previous_demo, workdir)
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread((workdir / DEMO_MARKER).write_text, "made by `bridge demo`\n", encoding="utf-8")
    chosen = await asyncio.to_thread(demo_images, workdir, images)
    repo_dir = workdir / "repo"
    root_json = await asyncio.to_thread(_publish, repo_dir, chosen)
    with serve_repository(repo_dir) as url:
        config = demo_config(workdir, str(url))
        await asyncio.to_thread(trust_server, str(url), root_json, data_dir=config.data_dir)
        async with VirtualWorld() as world:
            board = await world.add_board(
                SimBoardConfig(
                    name=DEMO_BOARD_NAME,
                    chip=Chip.ESP32C3,
                    project=chosen.project,
                    initial_image=chosen.old,
                    ota_partition_bytes=0x180000,
                    time_scale=1.0,  # ESP32 flash timing: the progress bar moves at a realistic pace
                )
            )
            async with Bridge(config, backend=world.backend) as bridge:
                yield DemoSetup(workdir, bridge, board.address, DEMO_BOARD_NAME, str(url), chosen)
