"""Image hints fit every context they are shown in (`image info`, `push`, `repo add`) and promise only what the
product does (NEWUSER items 7 and 14)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from bridge.cli import repo_cmds
from bridge.image import VerdictCode, inspect_image
from tests.conftest import firmware_file

NAMELESS = (
    "The image does not say which release it is: name it when publishing "
    "(`bridge repo add DIR IMAGE --project NAME --version VERSION`)."
)


@pytest.mark.parametrize("prefix", ["P06", "P07", "P11", "P13", "P16"])
def test_nameless_images_hint_the_repo_add_options_that_exist(firmware: Path, prefix: str) -> None:
    info = inspect_image(firmware_file(firmware, prefix))
    assert info.verdict.code is VerdictCode.OK_QUIRK and info.verdict.ok
    assert info.verdict.hint == NAMELESS
    app = typer.Typer()
    repo_cmds.register(app)
    repo_group = typer.main.get_command(app).commands["repo"]  # type: ignore[attr-defined]
    flags = {opt for param in repo_group.commands["add"].params for opt in param.opts}
    assert {"--project", "--version"} <= flags


@pytest.mark.parametrize(
    ("prefix", "code", "start"),
    [
        ("N01", VerdictCode.PARTITION_TABLE, "The partition table is flashed once over USB"),
        ("N02", VerdictCode.BOOTLOADER, "OTA replaces the app only: use build/<project>.bin"),
        ("N03", VerdictCode.MERGED_IMAGE, "Use the app alone: build/<project>.bin"),
        ("N05", VerdictCode.ENCRYPTED, "Use the plaintext app image from build/<project>.bin"),
        ("N08", VerdictCode.RAM_ONLY, "Build the app for flash"),
    ],
)
def test_refusal_hints_are_neutral_between_pushing_and_publishing(
    firmware: Path, prefix: str, code: VerdictCode, start: str
) -> None:
    verdict = inspect_image(firmware_file(firmware, prefix)).verdict
    assert verdict.code is code and not verdict.ok
    assert verdict.hint.startswith(start)
    assert "build/<project>.bin" in verdict.hint
    assert "push" not in verdict.hint.lower()
