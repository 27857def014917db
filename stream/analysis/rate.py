"""A rate meter: events per second over the last few seconds, from a running count."""

from __future__ import annotations

import collections


class RateMeter:
    """Events per second over the last ``span_s`` seconds, from a running count."""

    def __init__(self, span_s: float = 5.0) -> None:
        self.span_s = span_s
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def update(self, now: float, count: int) -> None:
        self._samples.append((now, count))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.span_s:
            self._samples.popleft()

    @property
    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0
