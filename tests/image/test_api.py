"""The public surface others code against: names, values of the verdict codes, and no CLI imports."""

from __future__ import annotations

import subprocess
import sys

import bridge.image
from bridge.image import VerdictCode

PROMISED = {"Chip", "ImageInfo", "AppDescriptor", "Verdict", "VerdictCode", "inspect_image", "validate_image",
            "check_fits_board", "StreamValidator", "build_image"}  # fmt: skip


def test_all_is_explicit_and_complete() -> None:
    assert set(bridge.image.__all__) >= PROMISED
    for name in bridge.image.__all__:
        assert getattr(bridge.image, name) is not None, name
    public = {n for n in vars(bridge.image) if not n.startswith("_")} - {"annotations"}
    modules = {"builder", "checks", "chips", "format", "judge", "model", "observation", "stream"}
    assert public - modules == set(bridge.image.__all__)


def test_verdict_code_values_are_stable() -> None:
    assert [c.value for c in VerdictCode] == [
        "ok", "ok_quirk", "partition_table", "bootloader", "merged_image", "encrypted", "esp8266", "unknown_chip",
        "ram_only", "not_an_image", "truncated", "bad_checksum", "bad_digest", "malformed", "trailing_data",
        "too_large", "chip_mismatch", "secure_version_too_low",
    ]  # fmt: skip
    assert [c for c in VerdictCode if c.ok] == [VerdictCode.OK, VerdictCode.OK_QUIRK]


def test_importing_bridge_image_pulls_no_cli_or_esptool() -> None:
    code = (
        "import sys, bridge.image; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'typer', 'rich', 'click', 'esptool', 'bumble'}); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
