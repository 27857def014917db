"""How fast a stream is analysed: at its full rate, or at a calm rate while nothing happens.

Most streams show nothing worth a second look most of the time. A stream is *calm*
while its window scores (and the last frame's score) stay at least ``calm_margin``
below the clear (exit) threshold, its faces are tracked and no face appeared or was
lost, for ``calm_after_s`` seconds at the full rate; a calm stream is analysed at
``calm_fps`` and detects faces on every ``calm_detect_every``-th analysed frame. The
first analysed frame that shows any of these brings it back to the full rate at once:

- a score within ``calm_margin`` of the clear threshold, or an alert in progress;
- a new face (a track the detector started), or a track lost;
- a scene cut: the frame's thumbnail (a few hundred grey pixels,
  :attr:`~fakewatch.stream.sources.frames.SourceFrame.thumbnail`, made on the face thread
  when the frame is converted to RGB) differs from the last analysed one by more
  than :data:`SCENE_CUT` of the grey range on average.

The policy only decides; the sampler asks :meth:`Pace.due` on each tick at the full rate
(a frame taken but not due is dropped as ``calm``), and the analyser reports each
analysed frame to :meth:`Pace.observe`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

SCENE_CUT = 0.12
"""Mean absolute difference of two thumbnails (0-1 of the grey range) that is a cut."""


class Rate(enum.StrEnum):
    FULL = "full"
    CALM = "calm"


@dataclass(frozen=True)
class PaceSettings:
    """A stream's rates and margins (see :class:`~fakewatch.stream.config.AnalysisConfig`)."""

    fps: float
    detect_every: int
    adaptive: bool = True
    calm_fps: float = 2.5
    calm_detect_every: int = 2
    calm_margin: float = 0.2
    calm_after_s: float = 2.0

    @property
    def calm_interval(self) -> float:
        """Seconds between analysed frames while calm (never faster than ``fps``)."""
        return 1 / min(self.calm_fps, self.fps)


@dataclass(frozen=True)
class Signals:
    """What one analysed frame showed, for the pace to judge."""

    score: float | None
    """The highest of the window scores (stream and tracks) and the frame's own score."""
    exit: float
    """The stream's clear threshold."""
    alerting: bool = False
    new_face: bool = False
    lost_track: bool = False
    thumbnail: np.ndarray | None = None


def scene_change(before: np.ndarray | None, after: np.ndarray | None) -> float:
    """The mean absolute difference of two thumbnails (0 when either is missing or their
    shapes differ, as after a change of resolution, which a reconnect reports anyway)."""
    if before is None or after is None or before.shape != after.shape:
        return 0.0
    return float(np.abs(after - before).mean())


class Pace:
    """The rate policy of one stream; see the module docstring."""

    def __init__(self) -> None:
        self.rate = Rate.FULL
        self.reason = "starting"
        self.quiet_since: float | None = None
        self._next_due = float("-inf")
        self._thumbnail: np.ndarray | None = None

    @property
    def calm(self) -> bool:
        return self.rate is Rate.CALM

    def due(self, now: float, settings: PaceSettings) -> bool:
        """Whether the frame of this tick (at ``now``, a monotonic clock) is analysed:
        always at the full rate, every ``calm_interval`` while calm."""
        if not self.calm or not settings.adaptive:
            return True
        if now < self._next_due:
            return False
        interval = settings.calm_interval
        # keep the calm cadence; after a pause (or on turning calm) start it from now
        start = self._next_due if now - self._next_due < interval else now
        self._next_due = start + interval
        return True

    def detect_every(self, settings: PaceSettings) -> int:
        """Face detection runs on every k-th analysed frame; k for the current rate."""
        if self.calm and settings.adaptive:
            return settings.calm_detect_every
        return settings.detect_every

    def observe(self, now: float, signals: Signals, settings: PaceSettings) -> Rate:
        """Judge an analysed frame (``now``: its time, any clock used consistently); the
        rate from now on, with :attr:`reason` saying why."""
        cut = scene_change(self._thumbnail, signals.thumbnail)
        if signals.thumbnail is not None:
            self._thumbnail = signals.thumbnail
        if not settings.adaptive:
            return self._full(now, "adaptive analysis is off")
        near = signals.score is not None and signals.score >= signals.exit - settings.calm_margin
        if signals.alerting:
            return self._full(now, "an alert is in progress")
        if near:
            return self._full(
                now,
                f"score {signals.score:.3f} within {settings.calm_margin:g} of the clear "
                f"threshold {signals.exit:.3f}",
            )
        if signals.new_face:
            return self._full(now, "a new face appeared")
        if signals.lost_track:
            return self._full(now, "a face track was lost")
        if cut > SCENE_CUT:
            return self._full(now, f"scene cut (thumbnail difference {cut:.2f})")
        if self.quiet_since is None:
            self.quiet_since = now
        if self.calm:
            return self.rate
        quiet = now - self.quiet_since
        if quiet < settings.calm_after_s:
            self.reason = f"quiet for {quiet:.1f} s of calm_after_s {settings.calm_after_s:g}"
            return self.rate
        self.rate = Rate.CALM
        self.reason = (
            "calm: scores well below the clear threshold, faces tracked, no new face"
            if signals.score is not None
            else "calm: no face in view"
        )
        self._next_due = float("-inf")
        return self.rate

    def reset(self, reason: str) -> None:
        """Back to the full rate (the stream reconnected, its settings changed)."""
        self.rate, self.reason, self.quiet_since = Rate.FULL, reason, None

    def _full(self, now: float, reason: str) -> Rate:
        self.rate, self.reason, self.quiet_since = Rate.FULL, reason, now
        return self.rate
