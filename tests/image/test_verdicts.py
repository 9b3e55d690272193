"""Verdicts the corpus has no real file for, made from builder output; board checks; streaming bounds."""

from __future__ import annotations

import hashlib
import random
import struct
import tracemalloc
from pathlib import Path

import pytest

from bridge.errors import ExitCode, ImageError, PreflightError
from bridge.image import (
    Chip,
    Quirk,
    StreamValidator,
    VerdictCode,
    build_image,
    check_fits_board,
    fit_verdict,
    inspect_image,
    validate_image,
)
from tests.conftest import firmware_file

V = VerdictCode


def _image(chip: Chip = Chip.ESP32C3, **kw: object) -> bytes:
    args: dict[str, object] = {"project": "blinky", "version": "1.2.3", "size": 32 * 1024}
    args.update(kw)
    return build_image(chip=chip, **args)  # type: ignore[arg-type]


def _rehash(image: bytearray, digest_at: int) -> bytes:
    """Recompute the appended SHA-256 of an image whose digest starts at ``digest_at``."""
    image[digest_at : digest_at + 32] = hashlib.sha256(image[:digest_at]).digest()
    return bytes(image)


# -- builder -------------------------------------------------------------------------------------------------------


def test_builder_is_deterministic_and_versions_differ() -> None:
    a = _image(version="1.0.0")
    assert a == _image(version="1.0.0")
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(_image(version="1.0.0")).hexdigest()
    b = _image(version="1.0.1")
    assert a != b and len(a) == len(b) == 32 * 1024
    assert inspect_image(b).version == "1.0.1"
    assert _image(seed=1) != _image(seed=2)


def test_builder_sizes_and_limits() -> None:
    assert len(_image(size=4096)) == 4096
    assert len(_image(size=5000)) == 5008  # rounded up to the checksum block
    assert len(_image(size=4 * 1024 * 1024)) == 4 * 1024 * 1024
    with pytest.raises(ValueError, match="minimum"):
        _image(size=100)
    with pytest.raises(ValueError, match="at most 31"):
        _image(project="x" * 32)
    with pytest.raises(ValueError, match="u32"):
        _image(secure_version=-1)


def test_chip_parse_and_names() -> None:
    assert Chip.parse("esp32c3") is Chip.ESP32C3
    assert Chip.parse("ESP32-S3") is Chip.ESP32S3
    assert Chip.parse("c61") is Chip.ESP32C61
    assert Chip.parse(16) is Chip.ESP32H2
    assert Chip.ESP32C5.display_name == "ESP32-C5"
    assert (Chip.ESP32, Chip.ESP32S2, Chip.ESP32C3, Chip.ESP32S3, Chip.ESP32C2, Chip.ESP32C6, Chip.ESP32H2) == (
        0, 2, 5, 9, 12, 13, 16,
    )  # fmt: skip
    assert (Chip.ESP32P4, Chip.ESP32C61, Chip.ESP32C5, Chip.ESP32H21, Chip.ESP32H4, Chip.ESP32S31) == (
        18, 20, 23, 25, 28, 32,
    )  # fmt: skip
    with pytest.raises(ValueError, match="unknown chip"):
        Chip.parse("esp8266")


# -- board checks ----------------------------------------------------------------------------------------------


def test_check_fits_board() -> None:
    info = validate_image(_image(secure_version=2))
    check_fits_board(info, chip=Chip.ESP32C3, partition_size=0x100000, min_secure_version=2)
    assert fit_verdict(info, chip=5, partition_size=len(_image()), min_secure_version=0) is None

    with pytest.raises(PreflightError) as e:
        check_fits_board(info, chip=Chip.ESP32S3, partition_size=0x100000)
    assert e.value.code == "chip_mismatch" and e.value.exit_code is ExitCode.REFUSED
    assert e.value.message == "The image is built for ESP32-C3 but the board is an ESP32-S3."
    assert "idf.py set-target esp32s3" in e.value.hint

    with pytest.raises(PreflightError) as e:
        check_fits_board(info, chip=Chip.ESP32C3, partition_size=32 * 1024 - 1)
    assert e.value.code == "too_large"
    assert "32,768 bytes" in e.value.message and "32,767 bytes (1 too many)" in e.value.message

    with pytest.raises(PreflightError) as e:
        check_fits_board(info, chip=Chip.ESP32C3, partition_size=0x100000, min_secure_version=3)
    assert e.value.code == "secure_version_too_low"
    assert "secure_version is 2" in e.value.message and "3 or higher" in e.value.message


def test_check_fits_board_refuses_an_invalid_image() -> None:
    info = inspect_image(_image()[:1000])
    with pytest.raises(ImageError) as e:
        check_fits_board(info, chip=Chip.ESP32C3, partition_size=0x100000)
    assert e.value.code == "truncated"


def test_no_descriptor_counts_as_secure_version_zero(firmware: Path) -> None:
    info = inspect_image(firmware_file(firmware, "P07"))
    check_fits_board(info, chip=Chip.ESP32, partition_size=0x180000)
    with pytest.raises(PreflightError) as e:
        check_fits_board(info, chip=Chip.ESP32, partition_size=0x180000, min_secure_version=1)
    assert e.value.code == "secure_version_too_low"


# -- what follows the digest ---------------------------------------------------------------------------------------


def test_ff_padding_is_a_quirk() -> None:
    info = inspect_image(_image() + b"\xff" * 5000)
    assert info.verdict.code is V.OK_QUIRK
    assert info.verdict.quirks == (Quirk.FF_PADDING,)
    assert (info.trailing_bytes, info.image_size) == (5000, 32 * 1024)


def test_unknown_trailing_bytes_are_refused() -> None:
    info = inspect_image(_image() + b"\xff" * 10 + b"hello")
    assert info.verdict.code is V.TRAILING_DATA
    assert "15 bytes of unknown data follow the image's digest at offset 0x8000" in info.verdict.message


def test_secure_boot_v1_signature() -> None:
    sig = b"\0\0\0\0" + random.Random(1).randbytes(64) + b"\0" * 12
    info = inspect_image(_image() + sig)
    assert info.verdict.quirks == (Quirk.SECURE_BOOT_V1_SIGNATURE,)
    assert "80 bytes of Secure Boot V1 signature" in info.verdict.message


def test_secure_boot_v2_signature_block() -> None:
    image = _image(size=30_000)  # 30,000 -> 30,000 (multiple of 16), not 4 KiB aligned
    pad = b"\xff" * (-len(image) % 4096)
    block = bytes([0xE7, 0x02, 0, 0]) + random.Random(2).randbytes(1212)
    sector = block.ljust(4096, b"\xff")
    info = inspect_image(image + pad + sector)
    assert info.verdict.quirks == (Quirk.SECURE_BOOT_V2_SIGNATURE,)
    # Data after the signature sector is not part of it.
    assert inspect_image(image + pad + sector + b"x").verdict.code is V.TRAILING_DATA


def test_image_without_digest() -> None:
    image = bytearray(_image())[:-32]
    image[23] = 0
    info = inspect_image(bytes(image))
    assert info.verdict.quirks == (Quirk.NO_DIGEST,)
    assert not info.hash_appended and info.checksum_ok


# -- damage and wrong kinds --------------------------------------------------------------------------------------


def test_edited_header_is_a_bad_digest() -> None:
    image = bytearray(_image())
    image[2] = 0  # flash mode DIO -> QIO: not covered by the checksum, covered by the SHA-256
    info = inspect_image(bytes(image))
    assert info.verdict.code is V.BAD_DIGEST
    assert info.checksum_ok and not info.digest_ok


def test_damaged_digest_is_a_bad_digest() -> None:
    image = bytearray(_image())
    image[-1] ^= 0x80
    assert inspect_image(bytes(image)).verdict.code is V.BAD_DIGEST


def test_bad_checksum() -> None:
    image = bytearray(_image())
    image[0x200] ^= 0x10  # inside segment 0's data
    info = inspect_image(bytes(image))
    assert info.verdict.code is V.BAD_CHECKSUM
    assert info.checksum_calc == (info.checksum or 0) ^ 0x10


@pytest.mark.parametrize(
    ("keep", "where"),
    [
        (10, "inside the 24-byte image header"),
        (28, "inside the header of segment 0 of 4"),
        (0x100, "inside segment 0 of 4 (it declares"),
        (32 * 1024 - 34, "before the checksum byte at offset 0x7fdf"),
        (32 * 1024 - 1, "31 bytes into the 32-byte SHA-256 digest"),
    ],
)
def test_truncation_says_where(keep: int, where: str) -> None:
    info = inspect_image(_image()[:keep])
    assert info.verdict.code is V.TRUNCATED
    assert f"ends after {keep:,} bytes, {where}" in info.verdict.message


def test_empty_file() -> None:
    assert inspect_image(b"").verdict.code is V.TRUNCATED
    assert inspect_image(b"").verdict.message == "The file is empty."


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\x7fELF" + bytes(200), "ELF file"),
        (b":100000000102030405060708090A0B0C0D0E0F1074\r\n" * 4, "Intel HEX"),
        (b"PK\x03\x04" + bytes(100), "archive"),
        (b"\xff" * 70_000, "erased flash"),
        (b"hello world\n", "starts with 0x68"),
    ],
)
def test_not_an_image(data: bytes, fragment: str) -> None:
    info = inspect_image(data)
    assert info.verdict.code is V.NOT_AN_IMAGE
    assert fragment in info.verdict.message


def test_ff_start_with_an_app_at_64k_is_a_merged_image() -> None:
    app = _image()
    info = inspect_image(b"\xff" * 0x20000 + app)
    assert info.verdict.code is V.MERGED_IMAGE
    assert [a.offset for a in info.embedded_apps] == [0x20000]
    assert "the app image sits at 0x20000 (blinky 1.2.3)" in info.verdict.message


def test_random_bytes_are_encrypted() -> None:
    blob = bytearray(random.Random(5).randbytes(65536))
    blob[0] = 0x12
    assert inspect_image(bytes(blob)).verdict.code is V.ENCRYPTED
    blob[0] = 0xE9  # ciphertext that happens to start with the magic
    blob[12:14] = b"\x77\x77"
    assert inspect_image(bytes(blob)).verdict.code is V.ENCRYPTED


@pytest.mark.parametrize(("chip_id", "fragment"), [(7, "ESP32-C6 beta"), (0x4242, "chip id 16962 (0x4242)")])
def test_unknown_chip(chip_id: int, fragment: str) -> None:
    image = bytearray(_image())
    image[12:14] = struct.pack("<H", chip_id)
    info = inspect_image(bytes(image))
    assert info.verdict.code is V.UNKNOWN_CHIP
    assert fragment in info.verdict.message
    assert info.chip is None and info.chip_id == chip_id


@pytest.mark.parametrize(
    ("offset", "value", "fragment"),
    [
        (1, b"\x00", "declares 0 segments"),
        (1, b"\x11", "declares 17 segments"),
        (23, b"\x02", "byte 23 (hash_appended) is 0x02"),
        (0x1C, b"\x01\x02\x00\x00", "declares 513 bytes"),
    ],
)
def test_malformed(offset: int, value: bytes, fragment: str) -> None:
    image = bytearray(_image())
    image[offset : offset + len(value)] = value
    info = inspect_image(bytes(image))
    assert info.verdict.code is V.MALFORMED
    assert fragment in info.verdict.message


def test_misaligned_flash_segment_is_malformed() -> None:
    image = bytearray(_image(chip=Chip.ESP32S3))
    info = inspect_image(bytes(image))
    irom = info.segments[3]
    assert irom.kind == "irom"
    image[irom.file_offset : irom.file_offset + 4] = struct.pack("<I", irom.load_addr + 4)
    info = inspect_image(_rehash(image, info.image_size - 32))
    assert info.verdict.code is V.MALFORMED
    assert f"Segment 3 loads at {irom.load_addr + 4:#x}" in info.verdict.message


def test_ram_only_image() -> None:
    image = bytearray(_image(chip=Chip.ESP32S3))
    info = inspect_image(bytes(image))
    for seg in (info.segments[0], info.segments[3]):  # move both flash segments into RAM
        image[seg.file_offset : seg.file_offset + 4] = struct.pack("<I", 0x3FC90000)
    assert inspect_image(_rehash(image, info.image_size - 32)).verdict.code is V.RAM_ONLY


# -- streaming ---------------------------------------------------------------------------------------------------


def test_stream_exposes_header_and_descriptor_early() -> None:
    image = _image(chip=Chip.ESP32C6, secure_version=4)
    sv = StreamValidator()
    sv.feed(image[:24])
    assert sv.chip_id == 13 and sv.app is None and not sv.rejected
    sv.feed(image[24:0x120])
    assert sv.app is not None and (sv.app.project, sv.app.secure_version) == ("blinky", 4)


def test_stream_rejects_early() -> None:
    sv = StreamValidator()
    sv.feed(b"\xaa\x50")
    assert sv.rejected
    sv = StreamValidator()
    image = bytearray(_image())
    image[12] = 0x63
    sv.feed(image[:24])
    assert sv.rejected


def test_four_mib_image_is_validated_with_bounded_memory(tmp_path: Path) -> None:
    image = _image(chip=Chip.ESP32S3, size=4 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(image)
    chunks = [image[i : i + 4096] for i in range(0, len(image), 4096)]

    tracemalloc.start()
    try:
        sv = StreamValidator()
        for chunk in chunks:
            sv.feed(chunk)
        info = sv.finish()
        _, stream_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        from_file = inspect_image(path)
        _, file_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.verdict.code is V.OK and from_file == info
    assert stream_peak < 64 * 1024, stream_peak
    assert file_peak < 256 * 1024, file_peak  # includes the 64 KiB read buffer


def test_zero_bytes_after_the_digest_are_not_a_signature() -> None:
    assert inspect_image(_image() + bytes(80)).verdict.code is V.TRAILING_DATA


def test_unreadable_path_raises_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as e:
        inspect_image(tmp_path)
    assert e.value.code == "unreadable" and str(tmp_path) in e.value.message


def test_esp8266_reports_no_chip(firmware: Path) -> None:
    info = inspect_image(firmware_file(firmware, "N06"))
    assert (info.chip, info.chip_id, info.segments) == (None, -1, ())
