"""One stream as the pipeline keeps it: its source, tracker, votes and running figures."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any

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
class StreamState:
    """One stream: its source, tracker, votes and running figures."""

    id: str
    name: str
    kind: str
    """What sort of source feeds it (``url``, ``webrtc``)."""
    frames: LatestFrame
    vote: SlidingWindowVote[Evidence]
    tracker: FaceTracker
    source: Source | None = None
    created: float = field(default_factory=time.time)
    track_votes: dict[str, SlidingWindowVote[None]] = field(default_factory=dict)
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


def count_drop(state: StreamState, reason: DropReason, metrics: PipelineMetrics) -> None:
    """One frame of ``state`` not analysed, for ``reason``: in its figures and the metrics."""
    state.dropped[reason] += 1
    metrics.frames_dropped.labels(state.name, str(reason)).inc()
