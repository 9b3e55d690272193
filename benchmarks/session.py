"""One simulated upload: a scheme's sender and receiver on a ``Link`` with a ``Storage``, and its result.

A ``Session`` plays both ends of one scheme: as the central app it gets notifications and write responses, as
the board app it accepts or refuses PDUs and answers them. ``simulate()`` wires it to a fresh clock, link and
storage, starts it at t = 0 (a connection-event anchor) and runs until the scheme says the last byte is in flash
*and* the sender has been told so. Connection set-up, MTU exchange, service discovery and the image's final
verification are outside the measured interval for every scheme alike.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.board import BoardParams, Storage
from benchmarks.clock import VirtualClock
from benchmarks.link import AttPdu, Link, LinkParams, LinkStats

__all__ = ["RunResult", "Session", "SessionFactory", "simulate", "synthetic_image"]


def synthetic_image(size: int, seed: int = 0) -> bytes:
    """Deterministic incompressible bytes (SHA-256 counter stream); starts with 0xE9 like an ESP32 app image."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed.to_bytes(8, "little") + counter.to_bytes(8, "little")).digest()
        counter += 1
    if size:
        out[0] = 0xE9
    return bytes(out[:size])


class Session(abc.ABC):
    """Both ends of one scheme. Subclasses implement the four link callbacks and ``start``."""

    scheme = "abstract"

    def __init__(self, link: Link, board: BoardParams, image: bytes, *, ram_bytes: int) -> None:
        self.link = link
        self.clock: VirtualClock = link.clock
        self.board_params = board
        self.image = image
        self.size = len(image)
        self.storage = Storage(link.clock, board, ram_bytes=ram_bytes)
        self.storage.on_space = link.board_retry
        self.t_end_us: int | None = None
        self.max_in_flight_bytes = 0
        link.central_app = self
        link.board_app = self

    def finished(self) -> bool:
        return self.t_end_us is not None

    def finish(self) -> None:
        if self.t_end_us is None:
            self.t_end_us = self.clock.now_us

    def note_in_flight(self, n: int) -> None:
        self.max_in_flight_bytes = max(self.max_in_flight_bytes, n)

    @abc.abstractmethod
    def start(self) -> None: ...

    # central app
    @abc.abstractmethod
    def on_notify(self, pdu: AttPdu) -> None: ...

    def on_write_rsp(self, request: AttPdu) -> None:
        return None

    # board app
    def accepts(self, pdu: AttPdu) -> bool:
        return True

    @abc.abstractmethod
    def on_write(self, pdu: AttPdu) -> None: ...


SessionFactory = Callable[[Link, BoardParams, bytes], Session]


@dataclass(frozen=True)
class RunResult:
    scheme: str
    board: str
    image_bytes: int
    duration_us: int
    max_in_flight_bytes: int
    max_board_ram_bytes: int
    link: LinkStats
    erase_us: int
    program_us: int

    @property
    def goodput_bytes_per_s(self) -> float:
        return self.image_bytes * 1e6 / self.duration_us


def simulate(
    params: LinkParams,
    board: BoardParams,
    factory: SessionFactory,
    image: bytes,
    *,
    limit_s: float = 3600.0,
) -> RunResult:
    clock = VirtualClock()
    link = Link(clock, params, board_proc_us=board.proc_us, board_acl_buffers=board.acl_buffers)
    session = factory(link, board, image)
    session.start()
    link.run(session.finished, limit_us=int(limit_s * 1e6))
    assert session.t_end_us is not None
    if session.storage.programmed != len(image):
        raise AssertionError(f"{session.scheme}: {session.storage.programmed} of {len(image)} B reached flash")
    return RunResult(
        scheme=session.scheme,
        board=board.erase_mode.value,
        image_bytes=len(image),
        duration_us=session.t_end_us,
        max_in_flight_bytes=session.max_in_flight_bytes,
        max_board_ram_bytes=session.storage.stats.max_buffered,
        link=link.stats,
        erase_us=session.storage.stats.erase_us,
        program_us=session.storage.stats.program_us,
    )
