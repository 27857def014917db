"""One stream as the pipeline keeps it: its source, tracker, votes and running figures.

Each face track has its own vote (:class:`TrackVote`), which decides for that face; the
stream is alerting while any of its faces is, and its window score is the highest of
its faces'.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fakewatch.engines.crop import Box
from fakewatch.stream.analysis.events import Event, Evidence
from fakewatch.stream.analysis.pace import Pace
from fakewatch.stream.analysis.rate import RateMeter
from fakewatch.stream.analysis.tracker import FaceTracker
from fakewatch.stream.analysis.tuning import StreamTuning
from fakewatch.stream.analysis.vote import SlidingWindowVote, Thresholds
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.sources.frames import DropReason, LatestFrame
from fakewatch.stream.sources.source import Source


@dataclass
class TrackVote:
    """One face track's vote, with where the face was last seen."""

    vote: SlidingWindowVote[Evidence]
    box: Box


@dataclass
class StreamState:
    """One stream: its source, tracker, votes and running figures."""

    id: str
    name: str
    kind: str
    """What sort of source feeds it (``url``, ``webrtc``)."""
    frames: LatestFrame
    new_vote: Callable[[], SlidingWindowVote[Any]]
    """An empty window with the stream's rule; each face track gets one."""
    tracker: FaceTracker
    source: Source | None = None
    created: float = field(default_factory=time.time)
    track_votes: dict[str, TrackVote] = field(default_factory=dict)
    """The vote of each face track, by track id; a track's vote ends with the track."""
    analysed: int = 0
    faces: int = 0
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    fps_in: RateMeter = field(default_factory=RateMeter)
    fps_analysed: RateMeter = field(default_factory=RateMeter)
    last_latency_s: float | None = None
    last_event: Event | None = None
    last_status_detail: str = ""
    was_up: bool = False
    task: asyncio.Task[None] | None = None
    counted_received: int = 0
    last_frame_at: float = field(default_factory=time.monotonic)
    tuning: StreamTuning | None = None
    """The stream's effective settings (None: the service's)."""
    thresholds: Thresholds | None = None
    """The thresholds of the stream's votes (None: the service's)."""
    configured_settings: dict[str, Any] = field(default_factory=dict)
    """The stream's own settings from its ``streams:`` entry in the config."""
    saved_settings: dict[str, Any] = field(default_factory=dict)
    """The stream's own settings given through the API (saved by name)."""
    pace: Pace = field(default_factory=Pace)

    @property
    def description(self) -> str:
        return self.source.description if self.source is not None else self.kind

    @property
    def alerting(self) -> bool:
        """Whether any face of the stream is alerting."""
        return any(t.vote.alerting for t in self.track_votes.values())

    @property
    def alerts(self) -> dict[str, TrackVote]:
        """The face tracks with an alert open, by track id."""
        return {k: t for k, t in self.track_votes.items() if t.vote.alerting}

    @property
    def top_track(self) -> str | None:
        """The track whose window scores highest (``None`` without a scored window)."""
        scored = {k: t.vote.score for k, t in self.track_votes.items()}
        return max(
            (k for k, s in scored.items() if s is not None),
            key=lambda k: scored[k] or 0.0,
            default=None,
        )

    @property
    def score(self) -> float | None:
        """The stream's window score: the highest of its faces' (``None`` without one)."""
        top = self.top_track
        return None if top is None else self.track_votes[top].vote.score


def count_drop(state: StreamState, reason: DropReason, metrics: PipelineMetrics) -> None:
    """One frame of ``state`` not analysed, for ``reason``: in its figures and the metrics."""
    state.dropped[reason] += 1
    metrics.frames_dropped.labels(state.name, str(reason)).inc()
