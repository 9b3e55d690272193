"""Shared fixtures: where the real ESP32 images live, and how their absence is treated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT_FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "shared" / "firmware"


def firmware_dir() -> Path | None:
    """The corpus of real images (`../shared/firmware` beside the checkout, or $BRIDGE_FIRMWARE_DIR)."""
    path = Path(os.environ.get("BRIDGE_FIRMWARE_DIR", _DEFAULT_FIRMWARE_DIR))
    return path if (path / "MANIFEST.md").is_file() else None


@pytest.fixture(scope="session")
def firmware() -> Path:
    """The firmware corpus folder. Skips locally if absent; fails under CI=true (DESIGN §5)."""
    path = firmware_dir()
    if path is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("the firmware corpus ../shared/firmware is missing; CI must have it")
        pytest.skip("firmware corpus ../shared/firmware not found")
    return path


def firmware_file(folder: Path, prefix: str) -> Path:
    """The corpus file whose name starts with ``prefix`` (e.g. ``"P14"``)."""
    matches = sorted(folder.glob(f"{prefix}_*.bin"))
    assert len(matches) == 1, f"expected one {prefix}_*.bin in {folder}, found {matches}"
    return matches[0]
