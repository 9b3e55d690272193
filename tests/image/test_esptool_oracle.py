"""Our parser agrees with esptool's on every valid image: the corpus positives and the builder's output.

esptool (GPL-2.0-or-later) is a test-only dependency: ``bridge/`` never imports it (checked below).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from bridge.image import Chip, ImageInfo, build_image, inspect_image
from tests.conftest import firmware_file

esptool_bin_image = pytest.importorskip("esptool.bin_image")
esptool_cmds = pytest.importorskip("esptool.cmds")

ROOT = Path(__file__).resolve().parents[2]
POSITIVES = ["P01", "P02", "P03", "P04", "P06", "P07", "P08", "P09", "P11", "P13", "P14", "P15", "P16", "P17", "P18",
             "P19"]  # fmt: skip


def _esptool_image(info: ImageInfo, data: bytes) -> Any:
    assert info.chip is not None
    return esptool_bin_image.LoadFirmwareImage(info.chip.name.lower(), data)


def _assert_agrees(info: ImageInfo, data: bytes) -> None:
    img = _esptool_image(info, data)
    rom = img.ROM_LOADER
    assert img.chip_id == info.chip_id
    assert ["QIO", "QOUT", "DIO", "DOUT"][img.flash_mode] == info.flash_mode
    sizes = {code: name for name, code in rom.FLASH_SIZES.items()}
    assert sizes[img.flash_size_freq & 0xF0] == info.flash_size
    freqs = {name for name, code in rom.FLASH_FREQUENCY.items() if code == img.flash_size_freq & 0x0F}
    assert info.flash_freq in freqs
    assert (img.entrypoint, img.wp_pin) == (info.entry_addr, info.wp_pin)
    assert (img.min_rev, img.min_rev_full, img.max_rev_full) == (
        info.min_chip_rev,
        info.min_chip_rev_full,
        info.max_chip_rev_full,
    )
    assert [(s.addr, len(s.data), s.file_offs) for s in img.segments] == [
        (s.load_addr, s.data_len, s.file_offset) for s in info.segments
    ]
    assert (img.checksum, img.calculate_checksum()) == (info.checksum, info.checksum_calc)
    assert bool(img.append_digest) == info.hash_appended
    assert img.stored_digest.hex() == info.digest
    assert img.calc_digest.hex() == info.digest_calc
    assert img.data_length + 32 == info.image_size
    app = esptool_cmds._parse_app_info(img.segments[0].data)
    if app is None:
        assert info.app is None
        return
    assert info.app is not None
    ours = info.app
    assert (app["project_name"], app["version"], app["idf_ver"]) == (ours.project, ours.version, ours.idf_version)
    assert (app["date"], app["time"], app["secure_version"]) == (ours.date, ours.time, ours.secure_version)
    assert app["app_elf_sha256"] == ours.elf_sha256
    blk = f"{ours.min_efuse_blk_rev_full // 100}.{ours.min_efuse_blk_rev_full % 100}"
    assert app["min_efuse_blk_rev_full"] == blk
    blk = f"{ours.max_efuse_blk_rev_full // 100}.{ours.max_efuse_blk_rev_full % 100}"
    assert app["max_efuse_blk_rev_full"] == blk
    page = ours.mmu_page_bytes
    assert app["mmu_page_size"] == (f"{page // 1024} KB" if page else None)


@pytest.mark.parametrize("prefix", POSITIVES)
def test_corpus_positive_agrees_with_esptool(firmware: Path, prefix: str) -> None:
    data = firmware_file(firmware, prefix).read_bytes()
    info = inspect_image(data)
    assert info.verdict.ok
    _assert_agrees(info, data)


@pytest.mark.parametrize("chip", list(Chip), ids=lambda c: c.display_name)
def test_builder_output_agrees_with_esptool(chip: Chip) -> None:
    data = build_image(chip=chip, project="oracle", version="2.0.1", secure_version=7, size=40_000,
                       idf_version="v5.5.1")  # fmt: skip
    info = inspect_image(data)
    assert info.verdict.ok
    img = _esptool_image(info, data)
    assert img.checksum == img.calculate_checksum()
    assert img.stored_digest == img.calc_digest
    _assert_agrees(info, data)


def test_bridge_never_imports_esptool() -> None:
    for path in sorted((ROOT / "bridge").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] in {"esptool", "espsecure", "espefuse"} for n in names), path
