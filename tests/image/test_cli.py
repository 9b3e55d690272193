"""``bridge image info``: one clear sentence and exit 6 for a refused file, a table or JSON for a good one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bridge.cli import app
from bridge.errors import ExitCode
from bridge.image import build_image
from bridge.image.chips import Chip
from tests.conftest import firmware_file

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("prefix", "sentence"),
    [
        ("N03", "error: This is a merged full-flash image (bootloader at 0x1000, partition table at 0x8000), not an "
                "app image; app images sit at 0x10000 (partition safeboot, factory), 0xe0000 (partition app0, ota_0)."),
        ("N02", "error: This is an ESP32 2nd-stage bootloader (ESP-IDF v5.2-dev-254-g1950b15), not an app image: its "
                "segments load into RAM and it carries a bootloader descriptor."),
        ("C01", "error: The file is truncated: it ends after 786,432 bytes, inside segment 3 of 6 (it declares "
                "1,198,636 bytes, 458,720 are present)."),
    ],
)  # fmt: skip
def test_refused_file_prints_one_sentence_and_exits_refused(firmware: Path, prefix: str, sentence: str) -> None:
    result = runner.invoke(app, ["image", "info", str(firmware_file(firmware, prefix))])
    assert result.exit_code == int(ExitCode.REFUSED) == 6
    lines = _lines(result.output)
    assert lines[0] == sentence
    assert len(lines) == 2 and lines[1].startswith("hint: ")
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_good_image_prints_a_table(firmware: Path) -> None:
    result = runner.invoke(app, ["image", "info", str(firmware_file(firmware, "P14"))])
    assert result.exit_code == 0, result.output
    out = result.output
    for fragment in (
        "ESP32-C3 (id 5)",
        "hello_world",
        "v1.4.1-2-g0296947-dirty",
        "v5.2.2-dirty",
        "Jul 25 2024 16:24:20",
        "06ea6806942019baa484808a54a62fe2e9eb4a524edada9e00c741d0a98a047a",
        "DIO, 2MB, 80m",
        "ok: Valid ESP32-C3 app image: hello_world v1.4.1-2-g0296947-dirty, 124,192 bytes.",
    ):
        assert fragment in out, fragment


def test_quirky_image_exits_zero_with_a_hint(firmware: Path) -> None:
    result = runner.invoke(app, ["image", "info", str(firmware_file(firmware, "P07"))])
    assert result.exit_code == 0
    assert "ok_quirk: Valid ESP32 app image, 1,077,536 bytes; no app descriptor" in result.output
    assert "--project" in result.output


def test_json_output(firmware: Path) -> None:
    result = runner.invoke(app, ["image", "info", "--json", str(firmware_file(firmware, "P14"))])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["verdict"] == {"code": "ok", "ok": True, "message": doc["verdict"]["message"], "hint": "", "quirks": []}
    assert (doc["chip"], doc["chip_id"], doc["size"]) == ("ESP32-C3", 5, 124192)
    assert doc["app"]["project"] == "hello_world"
    assert doc["sha256"] == "06ea6806942019baa484808a54a62fe2e9eb4a524edada9e00c741d0a98a047a"

    result = runner.invoke(app, ["image", "info", "--json", str(firmware_file(firmware, "N03"))])
    assert result.exit_code == ExitCode.REFUSED
    doc = json.loads(result.stdout)
    assert doc["verdict"]["code"] == "merged_image" and doc["verdict"]["ok"] is False
    assert [a["offset"] for a in doc["embedded_apps"]] == ["0x10000", "0xe0000"]


def test_board_checks(tmp_path: Path) -> None:
    path = tmp_path / "app.bin"
    path.write_bytes(build_image(chip=Chip.ESP32S3, project="p", version="2", secure_version=1, size=8192))
    ok = runner.invoke(app, ["image", "info", str(path), "--chip", "esp32-s3", "--partition-size", "8192"])
    assert ok.exit_code == 0, ok.output
    cases = {
        ("--chip", "esp32c3"): "error: The image is built for ESP32-S3 but the board is an ESP32-C3.",
        ("--partition-size", "8000"): "error: The image is 8,192 bytes but the board's OTA partition holds 8,000",
        ("--min-secure-version", "2"): "error: The image's secure_version is 1 but the board only accepts 2",
    }
    for args, start in cases.items():
        result = runner.invoke(app, ["image", "info", str(path), *args])
        assert result.exit_code == ExitCode.REFUSED, args
        assert _lines(result.output)[0].startswith(start), result.output


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["image", "info", str(tmp_path / "nope.bin")])
    assert result.exit_code == int(ExitCode.USAGE) == 2
    assert _lines(result.output)[0] == f"error: {tmp_path / 'nope.bin'}: no such file."
    folder = runner.invoke(app, ["image", "info", str(tmp_path)])
    assert folder.exit_code == 2 and "is not a regular file" in folder.output
    path = tmp_path / "app.bin"
    path.write_bytes(build_image(chip=Chip.ESP32, project="p", version="1"))
    bad_chip = runner.invoke(app, ["image", "info", str(path), "--chip", "esp8266"])
    assert bad_chip.exit_code == 2 and "--chip: unknown chip 'esp8266'" in bad_chip.output


def test_subprocess_has_no_traceback(firmware: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "image", "info", str(firmware_file(firmware, "N02"))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 6
    assert proc.stderr.startswith("error: This is an ESP32 2nd-stage bootloader")
    assert "Traceback" not in proc.stderr + proc.stdout
