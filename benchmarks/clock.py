"""A virtual clock in integer microseconds: a heap of callbacks, nothing else.

Every simulated actor (link layer, board host, flash worker, central host) schedules work here. Ties are broken
by insertion order, so a run is a pure function of its inputs: no wall clock, no randomness, no threads.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

__all__ = ["SimulationError", "VirtualClock"]


class SimulationError(RuntimeError):
    """The simulated system can make no progress (deadlock) or ran past its time budget."""


class VirtualClock:
    """Integer-microsecond clock with ordered callbacks."""

    def __init__(self) -> None:
        self.now_us = 0
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def call_at(self, t_us: int, fn: Callable[[], None]) -> None:
        """Run ``fn`` at ``t_us`` (never in the past)."""
        heapq.heappush(self._heap, (max(int(t_us), self.now_us), next(self._seq), fn))

    def call_later(self, delay_us: int, fn: Callable[[], None]) -> None:
        self.call_at(self.now_us + max(0, int(delay_us)), fn)

    def next_due_us(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def run_until(self, t_us: int) -> None:
        """Run every callback due at or before ``t_us`` (including ones they schedule), then set now to ``t_us``."""
        heap = self._heap
        while heap and heap[0][0] <= t_us:
            when, _, fn = heapq.heappop(heap)
            self.now_us = when
            fn()
        self.now_us = max(self.now_us, t_us)
