"""What a :class:`~bridge.image.stream.StreamValidator` saw, handed to :func:`~bridge.image.judge.judge`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from bridge.image.chips import ChipSpec
from bridge.image.model import Segment, Verdict

__all__ = ["Observation", "Stage"]


class Stage(Enum):
    """Where the walk is: what the next byte of the file is expected to be."""

    HEADER = auto()
    SEG_HEADER = auto()
    SEG_DATA = auto()
    CHECKSUM = auto()
    DIGEST = auto()
    TRAILER = auto()
    FOREIGN = auto()


@dataclass(frozen=True)
class Observation:
    """Everything a :class:`StreamValidator` saw: the facts :func:`bridge.image.judge.judge` turns into a verdict."""

    size: int
    sha256: str
    head: bytes
    stage: Stage
    foreign: Verdict | None
    hdr: tuple[int, ...] | None
    spec: ChipSpec | None
    segments: tuple[Segment, ...]
    seg_remaining: int
    xor: int
    checksum_off: int
    checksum: int | None
    digest: bytes
    digest_calc: bytes
    image_len: int
    trail_count: int
    trail_head: bytes
    trail_last_non_ff: int
    trail_has_non_ff: bool
    sig_probe_off: int
    sig_probe: bytes
    pt: bytes
    embedded: tuple[tuple[int, bytes], ...]
