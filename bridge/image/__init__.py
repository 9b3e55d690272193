"""ESP32 application images: parse, judge, and build them.

``inspect_image`` says what a file is (never raising for a bad image); ``validate_image`` raises ``ImageError``
unless it is a valid app image; ``check_fits_board`` raises ``PreflightError`` unless it fits a given board;
``StreamValidator`` gives the same verdicts while the bytes arrive; ``build_image`` writes valid images for tests
and demos. Format facts and the policy for images without an app descriptor: ``docs/IMAGES.md``.
"""

from __future__ import annotations

from bridge.image.builder import build_image
from bridge.image.checks import (
    check_fits_board,
    fit_verdict,
    inspect_image,
    validate_image,
)
from bridge.image.chips import RETIRED_CHIP_IDS, Chip, ChipSpec, chip_spec
from bridge.image.format import parse_app_descriptor
from bridge.image.model import (
    AppDescriptor,
    BootloaderDescriptor,
    EmbeddedApp,
    ImageInfo,
    Quirk,
    Segment,
    Verdict,
    VerdictCode,
)
from bridge.image.stream import StreamValidator

__all__ = [
    "RETIRED_CHIP_IDS",
    "AppDescriptor",
    "BootloaderDescriptor",
    "Chip",
    "ChipSpec",
    "EmbeddedApp",
    "ImageInfo",
    "Quirk",
    "Segment",
    "StreamValidator",
    "Verdict",
    "VerdictCode",
    "build_image",
    "check_fits_board",
    "chip_spec",
    "fit_verdict",
    "inspect_image",
    "parse_app_descriptor",
    "validate_image",
]
