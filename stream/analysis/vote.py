"""The sliding-window vote: when a stream (or a face track) is suspected, and when cleared.

The window holds the last ``window_frames`` analysed frames with a face, none older than
``window_seconds``; its score is the mean of their scores, the rule
:mod:`fakewatch.engines.aggregate` applies to files. Hysteresis: an alert is raised when
the score reaches ``enter`` with at least ``min_frames`` frames in the window, and
cleared when it falls below ``exit`` (or the window empties because the face is gone).
After a clear, no new alert is raised for ``cooldown_s``.

With a bundle that ships a baseline (:mod:`fakewatch.engines.baseline`), the window
also keeps its own usual level and raises an alert when its score rises well above it,
below ``enter``; such an alert clears when the score no longer holds half that rise (or
falls below ``exit`` once it has reached ``enter``). The service keeps one window per
face track, so a face's baseline is that face's usual level in its camera, learnt over
the track's life.

The window keeps the evidence of the frames that can still become its highest score (a
monotonic queue), so the frame behind a decision is at hand without holding a frame per
window slot.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fakewatch.engines.baseline import AlertRule, BaselineSettings, StreamBaseline
from fakewatch.stream.config import VoteConfig

E = TypeVar("E")

UNCALIBRATED = (0.5, 0.45)
"""Enter and exit thresholds of a bundle without calibrated ones."""


@dataclass(frozen=True)
class Thresholds:
    """The window scores that raise an alert (``enter``) and clear it (``exit``), and
    whether they come from a calibration."""

    enter: float
    exit: float
    calibrated: bool
    baseline: BaselineSettings | None = None


class Decision(enum.StrEnum):
    SUSPECTED = "suspected"
    CLEARED = "cleared"


@dataclass(frozen=True)
class Entry(Generic[E]):
    time: float
    score: float
    evidence: E | None


class SlidingWindowVote(Generic[E]):
    """One window with hysteresis; ``E`` is whatever evidence the caller attaches."""

    def __init__(
        self,
        enter: float,
        exit: float,
        window_frames: int = 8,
        window_seconds: float = 4.0,
        min_frames: int = 5,
        cooldown_s: float = 10.0,
        baseline: BaselineSettings | None = None,
    ) -> None:
        if exit > enter:
            raise ValueError(f"the exit threshold {exit} must not exceed enter {enter}")
        if not 1 <= min_frames <= window_frames:
            raise ValueError("min_frames must be between 1 and window_frames")
        self.rule = AlertRule(enter, exit, baseline)
        self.window_frames, self.window_seconds = window_frames, window_seconds
        self.min_frames, self.cooldown_s = min_frames, cooldown_s
        self._entries: collections.deque[Entry[E]] = collections.deque()
        self._peaks: collections.deque[Entry[E]] = collections.deque()
        self.last_change: float | None = None
        self._quiet_until = float("-inf")

    @property
    def enter(self) -> float:
        return self.rule.enter

    @property
    def exit(self) -> float:
        return self.rule.exit

    @property
    def alerting(self) -> bool:
        return self.rule.alerting

    @property
    def raised_by_baseline(self) -> bool:
        """Whether the alert in progress rose above the baseline rather than ``enter``."""
        return self.rule.raised_by_baseline

    @property
    def baseline(self) -> StreamBaseline | None:
        return self.rule.baseline

    @property
    def entries(self) -> list[Entry[E]]:
        return list(self._entries)

    @property
    def score(self) -> float | None:
        """The window's mean score, ``None`` when it is empty."""
        if not self._entries:
            return None
        return sum(e.score for e in self._entries) / len(self._entries)

    @property
    def peak(self) -> Entry[E] | None:
        """The entry with the highest score in the window, among those added since the
        last :meth:`restore` (restored entries have no evidence to show)."""
        return self._peaks[0] if self._peaks else None

    def add(self, time: float, score: float, evidence: E | None = None) -> Decision | None:
        """Add an analysed frame with a face; the decision it causes, if any."""
        entry = Entry(time, score, evidence)
        self._entries.append(entry)
        while self._peaks and self._peaks[-1].score <= score:
            self._peaks.pop()
        self._peaks.append(entry)
        while len(self._entries) > self.window_frames:
            self._pop()
        decision = self._expire_and_decide(time)
        window_score = self.score
        if window_score is not None and len(self._entries) >= self.min_frames:
            self.rule.observe(window_score)
        return decision

    def checkpoint(self) -> dict[str, Any]:
        """The window's state without its evidence, JSON-ready: what :meth:`restore` takes
        to carry an alert in progress over a restart of the process that held it."""
        return {
            "entries": [[e.time, e.score] for e in self._entries],
            "alerting": self.alerting,
            "last_change": self.last_change,
            "quiet_until": None if self._quiet_until == float("-inf") else self._quiet_until,
            "baseline": None if self.baseline is None else self.baseline.checkpoint(),
            "raised_by_baseline": self.raised_by_baseline,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take the state :meth:`checkpoint` gave; entries beyond the window's length are
        dropped, the oldest first. Restored entries count in the score but have no
        evidence, so none of them becomes the :attr:`peak`."""
        self._entries.clear()
        self._peaks.clear()
        for time, score in state.get("entries", []):
            self._entries.append(Entry(float(time), float(score), None))
            while len(self._entries) > self.window_frames:
                self._pop()
        self.rule.alerting = bool(state.get("alerting", False))
        self.last_change = state.get("last_change")
        quiet = state.get("quiet_until")
        self._quiet_until = float("-inf") if quiet is None else float(quiet)
        self.rule.raised_by_baseline = bool(state.get("raised_by_baseline", False))
        if self.baseline is not None:
            self.baseline.restore(state.get("baseline") or [])

    def end_alert(self) -> bool:
        """End the alert in progress without a decision of the window's own (its
        analysis has stopped); whether one was in progress."""
        return self.alerting and self.rule.clear_on(None)

    def tick(self, time: float) -> Decision | None:
        """Let time pass without a face (old frames leave the window); any decision."""
        return self._expire_and_decide(time)

    def reset(self, time: float) -> Decision | None:
        """Empty the window (the face or stream is gone); CLEARED if an alert was up."""
        self._entries.clear()
        self._peaks.clear()
        return self._decide(time)

    def _pop(self) -> None:
        old = self._entries.popleft()
        if self._peaks and self._peaks[0] is old:
            self._peaks.popleft()

    def _expire_and_decide(self, time: float) -> Decision | None:
        while self._entries and time - self._entries[0].time > self.window_seconds:
            self._pop()
        return self._decide(time)

    def _decide(self, time: float) -> Decision | None:
        score = self.score
        if self.alerting:
            if not self.rule.clear_on(score):
                return None
            self.last_change = time
            self._quiet_until = time + self.cooldown_s
            return Decision.CLEARED
        if score is None or len(self._entries) < self.min_frames or time < self._quiet_until:
            return None
        if not self.rule.raise_on(score):
            return None
        self.last_change = time
        return Decision.SUSPECTED


def new_vote(settings: VoteConfig, thresholds: Thresholds) -> SlidingWindowVote[Any]:
    """An empty window with the configured size and cooldown and ``thresholds``."""
    return SlidingWindowVote(
        enter=thresholds.enter,
        exit=thresholds.exit,
        window_frames=settings.window_frames,
        window_seconds=settings.window_seconds,
        min_frames=settings.min_frames,
        cooldown_s=settings.cooldown_s,
        baseline=thresholds.baseline,
    )
