"""The public checks: inspect a file, validate it, and match a valid image against a board."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bridge.errors import ImageError, PreflightError
from bridge.image.chips import Chip
from bridge.image.model import ImageInfo, Verdict, VerdictCode
from bridge.image.stream import StreamValidator

__all__ = ["READ_CHUNK_BYTES", "check_fits_board", "fit_verdict", "inspect_image", "validate_image"]

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 0x10000


def inspect_image(data: bytes | bytearray | memoryview | os.PathLike[str]) -> ImageInfo:
    """Parse and judge a file. Never raises for a bad image: the answer is in ``.verdict``.

    A :class:`Path` is read in 64 KiB chunks (bounded memory); an unreadable file raises ``ImageError`` with code
    ``"unreadable"``.
    """
    validator = StreamValidator()
    if isinstance(data, os.PathLike):
        path = Path(data)
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(READ_CHUNK_BYTES):
                    validator.feed(chunk)
        except OSError as exc:
            raise ImageError(
                f"Cannot read {path}: {exc.strerror or exc}.",
                code="unreadable",
                hint="Check the path and the file's permissions.",
            ) from exc
    else:
        validator.feed(data)
    info = validator.finish()
    log.debug("inspected %d bytes: %s", info.size, info.verdict.code)
    return info


def validate_image(data: bytes | bytearray | memoryview | os.PathLike[str]) -> ImageInfo:
    """Like :func:`inspect_image`, but raise ``ImageError(message, code=verdict.code, hint=...)`` unless ok."""
    info = inspect_image(data)
    if not info.verdict.ok:
        raise ImageError(info.verdict.message, code=str(info.verdict.code), hint=info.verdict.hint)
    return info


def fit_verdict(
    info: ImageInfo, *, chip: Chip | int, partition_size: int, min_secure_version: int = 0
) -> Verdict | None:
    """Why a valid image does not fit a board (chip, OTA partition size, anti-rollback counter), or None if it does."""
    board = Chip(chip) if chip in Chip._value2member_map_ else None
    board_name = board.display_name if board is not None else f"chip id {int(chip)}"
    if info.chip_id != int(chip):
        return Verdict(
            VerdictCode.CHIP_MISMATCH,
            f"The image is built for {info.chip_name or f'chip id {info.chip_id}'} but the board is an {board_name}.",
            f"Use the firmware built for the {board_name} (`idf.py set-target {board_name.lower().replace('-', '')}`).",
        )
    if info.size > partition_size:
        return Verdict(
            VerdictCode.TOO_LARGE,
            f"The image is {info.size:,} bytes but the board's OTA partition holds {partition_size:,} bytes "
            f"({info.size - partition_size:,} too many).",
            "Shrink the app (optimise for size, drop components) or give the board larger OTA partitions over USB.",
        )
    if info.secure_version < min_secure_version:
        return Verdict(
            VerdictCode.SECURE_VERSION_TOO_LOW,
            f"The image's secure_version is {info.secure_version} but the board only accepts "
            f"{min_secure_version} or higher (anti-rollback); it would refuse to boot it.",
            "Publish a build whose CONFIG_BOOTLOADER_APP_SECURE_VERSION is at least "
            f"{min_secure_version}; older releases cannot be installed on this board.",
        )
    return None


def check_fits_board(info: ImageInfo, *, chip: Chip | int, partition_size: int, min_secure_version: int = 0) -> None:
    """Raise ``PreflightError`` (code ``chip_mismatch``/``too_large``/``secure_version_too_low``) unless ``info``
    fits the board; raise ``ImageError`` if the image itself is not valid."""
    if not info.verdict.ok:
        raise ImageError(info.verdict.message, code=str(info.verdict.code), hint=info.verdict.hint)
    verdict = fit_verdict(info, chip=chip, partition_size=partition_size, min_secure_version=min_secure_version)
    if verdict is not None:
        raise PreflightError(verdict.message, code=str(verdict.code), hint=verdict.hint)
