"""Every real file in the firmware corpus gets exactly the verdict MANIFEST.md gives it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.errors import ImageError
from bridge.image import Chip, Quirk, StreamValidator, VerdictCode, inspect_image, validate_image
from tests.conftest import firmware_file

V = VerdictCode
Q = Quirk

#: prefix -> (verdict code, quirks, chip, a fragment the message must contain)
EXPECTED: dict[str, tuple[VerdictCode, tuple[Quirk, ...], Chip | None, str]] = {
    "P01": (V.OK, (), Chip.ESP32, "hello_world v1.4.1-2-g0296947-dirty"),
    "P02": (V.OK_QUIRK, (Q.SECURE_BOOT_V1_SIGNATURE,), Chip.ESP32, "80 bytes of Secure Boot V1 signature"),
    "P03": (V.OK_QUIRK, (Q.ELF_SHA256_ZERO,), Chip.ESP32, "ELF SHA-256 is all zeros"),
    "P04": (V.OK, (), Chip.ESP32, "arduino-lib-builder esp-idf: v4.4.4 e8bdaf9198"),
    "P06": (V.OK_QUIRK, (Q.EMPTY_PROJECT, Q.EMPTY_VERSION), Chip.ESP32, "project name is empty"),
    "P07": (V.OK_QUIRK, (Q.NO_APP_DESCRIPTOR,), Chip.ESP32, "no app descriptor"),
    "P08": (V.OK, (), Chip.ESP32S2, "blink qa-test-v5.0-20220830-4-g4532e6"),
    "P09": (V.OK, (), Chip.ESP32S3, "hello_world"),
    "P11": (V.OK_QUIRK, (Q.EMPTY_PROJECT, Q.EMPTY_VERSION), Chip.ESP32S3, "version string is empty"),
    "P13": (V.OK_QUIRK, (Q.EMPTY_PROJECT, Q.EMPTY_VERSION), Chip.ESP32S3, "ESP32-S3"),
    "P14": (V.OK, (), Chip.ESP32C3, "hello_world"),
    "P15": (V.OK, (), Chip.ESP32C3, "hello_world 1,"),
    "P16": (V.OK_QUIRK, (Q.EMPTY_PROJECT, Q.EMPTY_VERSION), Chip.ESP32C3, "ESP32-C3"),
    "P17": (V.OK, (), Chip.ESP32C2, "ESP32-C2"),
    "P18": (V.OK, (), Chip.ESP32C6, "ESP32-C6"),
    "P19": (V.OK, (), Chip.ESP32H2, "ESP32-H2"),
    "N01": (V.PARTITION_TABLE, (), None, "partition table"),
    "N02": (V.BOOTLOADER, (), Chip.ESP32, "bootloader (ESP-IDF v5.2-dev-254-g1950b15)"),
    "N03": (V.MERGED_IMAGE, (), None, "0xe0000 (partition app0, ota_0)"),
    "N05": (V.ENCRYPTED, (), None, "flash-encrypted"),
    "N06": (V.ESP8266, (), None, "ESP8266"),
    "N07": (V.UNKNOWN_CHIP, (), None, "chip id 14 (ESP32-H2 beta2 / ESP32-H4 beta2)"),
    "N08": (V.RAM_ONLY, (), Chip.ESP32S3, "no flash-mapped segment"),
    "C01": (V.TRUNCATED, (), Chip.ESP32S3, "inside segment 3 of 6 (it declares 1,198,636 bytes, 458,720 are present)"),
    "C02": (V.TRUNCATED, (), Chip.ESP32C3, "16 bytes into the 32-byte SHA-256 digest"),
    "C03": (V.BAD_CHECKSUM, (), Chip.ESP32S3, "checksum byte is 0x47 but the segment data gives 0x46"),
}


def _manifest_entries(folder: Path) -> dict[str, tuple[str, int, str]]:
    """prefix -> (kind, size, sha256) from the per-file sections of MANIFEST.md."""
    text = (folder / "MANIFEST.md").read_text(encoding="utf-8")
    entries = {}
    for m in re.finditer(
        r"^### (?P<name>(?P<prefix>[PNC]\d\d)_\S+\.bin)\n- Kind: \*\*(?P<kind>[^*]+)\*\*\..*?Size: (?P<size>[\d,]+) "
        r"bytes\. SHA-256 of file: `(?P<sha>[0-9a-f]{64})`",
        text,
        flags=re.MULTILINE,
    ):
        entries[m["prefix"]] = (m["kind"], int(m["size"].replace(",", "")), m["sha"])
    return entries


def test_the_table_covers_exactly_the_corpus(firmware: Path) -> None:
    on_disk = {p.name[:3] for p in firmware.glob("*.bin")}
    assert on_disk == set(EXPECTED)
    assert set(_manifest_entries(firmware)) == set(EXPECTED)


def test_the_table_agrees_with_the_manifest_kinds(firmware: Path) -> None:
    for prefix, (kind, _size, _sha) in _manifest_entries(firmware).items():
        code = EXPECTED[prefix][0]
        if kind.startswith("POSITIVE (edge"):
            assert code is V.OK_QUIRK, prefix
        elif kind.startswith("POSITIVE"):
            assert code.ok, prefix
        else:
            assert kind.startswith("NEGATIVE") and not code.ok, prefix


@pytest.mark.parametrize("prefix", sorted(EXPECTED))
def test_verdict(firmware: Path, prefix: str) -> None:
    path = firmware_file(firmware, prefix)
    code, quirks, chip, fragment = EXPECTED[prefix]
    _kind, size, sha = _manifest_entries(firmware)[prefix]
    info = inspect_image(path)
    assert info.verdict.code is code, info.verdict.message
    assert info.verdict.quirks == quirks
    assert fragment in info.verdict.message
    assert info.verdict.hint or code is V.OK
    assert (info.size, info.sha256) == (size, sha)
    if chip is not None:
        assert info.chip is chip
    if code.ok:
        assert validate_image(path) == info
    else:
        with pytest.raises(ImageError) as exc_info:
            validate_image(path)
        assert exc_info.value.code == str(code)
        assert exc_info.value.message == info.verdict.message
        assert exc_info.value.hint == info.verdict.hint


@pytest.mark.parametrize("prefix", sorted(EXPECTED))
def test_streaming_gives_the_same_info_as_the_whole_file(firmware: Path, prefix: str) -> None:
    data = firmware_file(firmware, prefix).read_bytes()
    whole = inspect_image(data)
    # Awkward chunk sizes: primes straddle every header, segment and probe boundary.
    for chunk in (1021, 4093, 65537):
        sv = StreamValidator()
        for pos in range(0, len(data), chunk):
            sv.feed(data[pos : pos + chunk])
        assert sv.bytes_seen == len(data)
        assert sv.finish() == whole


@pytest.mark.parametrize("prefix", ["P14", "P17", "N01", "N02", "C02"])
def test_streaming_byte_by_byte(firmware: Path, prefix: str) -> None:
    data = firmware_file(firmware, prefix).read_bytes()
    sv = StreamValidator()
    for i in range(len(data)):
        sv.feed(data[i : i + 1])
    assert sv.finish() == inspect_image(data)


def test_fields_of_a_known_image(firmware: Path) -> None:
    info = inspect_image(firmware_file(firmware, "P14"))
    assert info.app is not None
    assert (info.app.project, info.app.version, info.app.idf_version) == (
        "hello_world",
        "v1.4.1-2-g0296947-dirty",
        "v5.2.2-dirty",
    )
    assert (info.app.date, info.app.time, info.app.secure_version) == ("Jul 25 2024", "16:24:20", 0)
    assert (info.flash_mode, info.flash_size, info.flash_freq) == ("DIO", "2MB", "80m")
    assert (info.min_chip_rev, info.min_chip_rev_full, info.hash_appended) == (3, 3, True)
    assert (info.image_size, info.trailing_bytes, info.mmu_page_bytes) == (124192, 0, 0x10000)
    assert [s.kind for s in info.segments] == ["drom", "ram", "ram", "padding", "irom"]


def test_c2_c6_h2_images_use_a_32k_mmu_page(firmware: Path) -> None:
    for prefix in ("P17", "P18", "P19"):
        assert inspect_image(firmware_file(firmware, prefix)).mmu_page_bytes == 0x8000, prefix


def test_merged_image_names_where_the_app_sits(firmware: Path) -> None:
    info = inspect_image(firmware_file(firmware, "N03"))
    assert [(a.offset, a.partition) for a in info.embedded_apps] == [
        (0x10000, "partition safeboot, factory"),
        (0xE0000, "partition app0, ota_0"),
    ]
    assert "build/<project>.bin" in info.verdict.hint
    # The app at 0xe0000 is byte-for-byte P06, the Tasmota build of the same release.
    data = firmware_file(firmware, "N03").read_bytes()
    assert inspect_image(data[0xE0000:]).sha256 == inspect_image(firmware_file(firmware, "P06")).sha256


def test_merged_image_that_starts_with_a_bootloader(firmware: Path) -> None:
    """The S3/C3 layout: bootloader at 0x0 (a complete image), partition table at 0x8000, app at 0x10000."""
    boot = firmware_file(firmware, "N02").read_bytes()
    table = firmware_file(firmware, "N01").read_bytes()
    app = firmware_file(firmware, "P14").read_bytes()
    merged = boot.ljust(0x8000, b"\xff") + table.ljust(0x8000, b"\xff") + app
    info = inspect_image(merged)
    assert info.verdict.code is V.MERGED_IMAGE
    assert info.embedded_apps[0].offset == 0x10000
    assert info.embedded_apps[0].project == "hello_world"
    assert "bootloader at 0x0" in info.verdict.message
    assert "0x10000 (partition factory, factory, hello_world v1.4.1-2-g0296947-dirty)" in info.verdict.message


def test_image_without_descriptor_reads_secure_version_zero(firmware: Path) -> None:
    info = inspect_image(firmware_file(firmware, "P07"))
    assert info.app is None
    assert (info.project, info.version, info.secure_version) == ("", "", 0)
    assert "--project" in info.verdict.hint
