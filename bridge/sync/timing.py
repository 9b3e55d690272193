"""Clocks for the sync engine: the upload rate and ETA, and the reconnect backoff schedule."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator

__all__ = ["RateMeter", "backoff_delays"]


class RateMeter:
    """Bytes per second over the last ``window_s`` seconds, and the time left at that rate.

    A sliding window rather than the average since the start, so the ETA recovers quickly after a reconnect
    pause; a resume that restarts below the previous offset (go-back) is handled as a fresh start.
    """

    def __init__(self, *, window_s: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self._window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def reset(self) -> None:
        self._samples.clear()

    def update(self, done_bytes: int) -> None:
        now = self._clock()
        if self._samples and done_bytes < self._samples[-1][1]:
            self._samples.clear()
        self._samples.append((now, done_bytes))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window_s:
            self._samples.popleft()

    @property
    def rate_bps(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def eta_s(self, total_bytes: int) -> float | None:
        rate = self.rate_bps
        if rate <= 0 or not self._samples:
            return None
        return max(0.0, (total_bytes - self._samples[-1][1]) / rate)


def backoff_delays(first_s: float, max_s: float, attempts: int) -> Iterator[float]:
    """``attempts`` waits: ``first_s``, doubling, capped at ``max_s``."""
    delay = first_s
    for _ in range(attempts):
        yield min(delay, max_s)
        delay *= 2
