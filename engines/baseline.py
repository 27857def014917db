"""A stream's own baseline: alert when its window score rises well above its usual level.

A camera, codec or face the model finds unusual raises every window of that stream a
little; a face swap switched on during a call raises it suddenly. The baseline keeps a
running median and spread (the median absolute deviation, scaled to a standard
deviation) of the stream's recent window scores and calls a window *risen* when it lies
``rise`` spreads above the median and at least ``floor`` in absolute terms. It learns
nothing while the stream is alerting, so an alert does not become the new normal, and
it says nothing until it has seen ``warmup`` windows.

It adds to the absolute threshold, never replaces it: a swap that is on from the first
frame is the baseline itself, so only the absolute threshold can catch it.

The live service decides per face track, so it keeps one baseline per track: a face's
usual level in its camera, learnt while the track lasts (a face whose track is lost
starts a new warm-up). With one face on screen that is the stream's baseline; the
offline replay (:func:`decisions`) replays one face's (or one video's) window scores.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

MAD_TO_STD = 1.4826  # the median absolute deviation of a normal distribution, in std


class BaselineSettings(BaseModel):
    """How a stream's baseline is kept and when a window counts as risen above it (a
    bundle's manifest carries these when the model ships with a baseline)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history: int = Field(150, ge=1, le=100_000, description="window scores kept (30 s at 5 fps)")
    warmup: int = Field(40, ge=1, le=100_000, description="scores needed before it speaks")
    rise: float = Field(4.0, gt=0, le=100, description="spreads above the median that count")
    min_spread: float = Field(0.03, gt=0, le=1, description="smallest spread it assumes")
    floor: float = Field(0.5, ge=0, le=1, description="a risen window is also at least this")

    @model_validator(mode="after")
    def _warmup_fits(self) -> BaselineSettings:
        if self.warmup > self.history:
            raise ValueError(f"need warmup <= history, got {self.warmup} > {self.history}")
        return self


class StreamBaseline:
    """The running median and spread of one stream's window scores."""

    def __init__(self, settings: BaselineSettings | None = None) -> None:
        self.settings = settings or BaselineSettings()
        self._scores: deque[float] = deque(maxlen=self.settings.history)

    @property
    def ready(self) -> bool:
        return len(self._scores) >= self.settings.warmup

    def level(self) -> tuple[float, float] | None:
        """(median, spread) of the kept scores, or None before the warm-up."""
        if not self.ready:
            return None
        scores = np.fromiter(self._scores, dtype=np.float64)
        median = float(np.median(scores))
        spread = float(np.median(np.abs(scores - median))) * MAD_TO_STD
        return median, max(spread, self.settings.min_spread)

    def risen(self, window_score: float, rise: float | None = None) -> bool:
        """Whether ``window_score`` lies ``rise`` spreads (default: the settings') above
        this stream's usual level, and above the floor."""
        level = self.level()
        if level is None:
            return False
        median, spread = level
        rise = self.settings.rise if rise is None else rise
        return window_score >= max(self.settings.floor, median + rise * spread)

    def holds(self, window_score: float) -> bool:
        """Whether an alert the baseline raised still stands: the window is still half
        the rise above the usual level (the baseline's own hysteresis)."""
        return self.risen(window_score, self.settings.rise / 2)

    def observe(self, window_score: float, alerting: bool) -> None:
        """Learn from a window score, unless the stream is alerting."""
        if not alerting:
            self._scores.append(float(window_score))

    def checkpoint(self) -> list[float]:
        """The kept scores, oldest first (what :meth:`restore` takes)."""
        return list(self._scores)

    def restore(self, scores: list[float]) -> None:
        self._scores.clear()
        self._scores.extend(float(s) for s in scores)


class AlertRule:
    """Whether a stream is alerting, decided on its window scores: raised at ``enter``
    and cleared below ``exit``; with a baseline, also raised when the window rises well
    above the stream's own usual level, and then cleared when it no longer holds half
    that rise (unless it has reached ``enter`` meanwhile).

    The live vote (``fakewatch.stream.analysis.vote``) and the offline replay
    (:func:`decisions`) both decide with it; the live vote adds its window, minimum
    frames and cooldown around it.
    """

    def __init__(self, enter: float, exit: float, settings: BaselineSettings | None = None):
        self.enter, self.exit = enter, exit
        self.baseline = None if settings is None else StreamBaseline(settings)
        self.alerting = False
        self.raised_by_baseline = False
        """Whether the alert in progress rose above the baseline rather than ``enter``."""

    def raise_on(self, score: float) -> bool:
        """Whether ``score`` raises an alert (none is in progress); if so, it is raised."""
        if score >= self.enter:
            by_baseline = False
        elif self.baseline is not None and self.baseline.risen(score):
            by_baseline = True
        else:
            return False
        self.alerting, self.raised_by_baseline = True, by_baseline
        return True

    def clear_on(self, score: float | None) -> bool:
        """Whether ``score`` (``None``: nothing left to score) clears the alert in
        progress; if so, it is cleared."""
        if score is not None:
            if self.raised_by_baseline and self.baseline is not None:
                holds = score >= self.enter or self.baseline.holds(score)
            else:
                holds = score >= self.exit
            if holds:
                if score >= self.enter:
                    self.raised_by_baseline = False
                return False
        self.alerting = self.raised_by_baseline = False
        return True

    def observe(self, score: float) -> None:
        """Let the baseline learn from a window score (not while alerting)."""
        if self.baseline is not None:
            self.baseline.observe(score, self.alerting)


def decisions(
    window_scores: np.ndarray | list[float],
    suspect: float,
    clear: float,
    settings: BaselineSettings | None = None,
) -> np.ndarray:
    """Whether a stream is alerting after each window: raised at ``suspect`` and cleared
    below ``clear``; with ``settings``, also raised when the window rises above the
    stream's baseline, and then cleared when it no longer holds there (unless it has
    reached ``suspect`` meanwhile).

    A replay of :class:`AlertRule` for offline studies; the live vote adds minimum
    frames and cooldowns on top.
    """
    rule = AlertRule(suspect, clear, settings)
    out = np.zeros(len(window_scores), dtype=bool)
    for i, value in enumerate(window_scores):
        score = float(value)
        if rule.alerting:
            rule.clear_on(score)
        else:
            rule.raise_on(score)
        rule.observe(score)
        out[i] = rule.alerting
    return out
