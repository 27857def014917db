"""What the service decides, and where decisions go.

An :class:`Event` is a decision (``deepfake.suspected``, ``deepfake.cleared``) or a
change of a stream's health (``stream.down``, ``stream.up``). Alert events carry the
window that decided (scores and times) and the :class:`Evidence` that scored highest
in it: the frame, the face's mask and where it was. Sinks receive every event; the log
and in-memory sinks live here, webhooks and evidence storage plug in the same way.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fakewatch.engines.crop import Box
from fakewatch.stream.logs import LOGGER_NAME, log

logger = logging.getLogger(f"{LOGGER_NAME}.events")


class EventType(enum.StrEnum):
    SUSPECTED = "deepfake.suspected"
    CLEARED = "deepfake.cleared"
    STREAM_DOWN = "stream.down"
    STREAM_UP = "stream.up"


@dataclass(frozen=True)
class Evidence:
    """The analysed frame that scored highest in the deciding window."""

    frame: np.ndarray = field(repr=False)
    """The whole frame, RGB ``uint8``."""
    mask: np.ndarray = field(repr=False)
    """The face's mask over its crop, ``float32`` in 0..1."""
    crop: np.ndarray = field(repr=False)
    """The face crop the model saw, RGB ``uint8``."""
    face_box: Box
    crop_box: Box
    score: float
    capture_time: float
    track: str | None

    def summary(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "capture_time": round(self.capture_time, 3),
            "track": self.track,
            "face_box": self.face_box.as_list(),
            "crop_box": self.crop_box.as_list(),
            "frame_size": [int(self.frame.shape[1]), int(self.frame.shape[0])],
        }


@dataclass(frozen=True)
class WindowSummary:
    """The window a decision was made on."""

    score: float
    scores: tuple[float, ...]
    times: tuple[float, ...]
    enter_threshold: float
    exit_threshold: float

    def summary(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 4),
            "scores": [round(s, 4) for s in self.scores],
            "times": [round(t, 3) for t in self.times],
            "enter_threshold": round(self.enter_threshold, 4),
            "exit_threshold": round(self.exit_threshold, 4),
        }


@dataclass(frozen=True)
class Event:
    """One decision or health change of one stream."""

    type: EventType
    stream_id: str
    stream_name: str
    source: str
    """The stream's URL or WebRTC session, credentials redacted."""
    detail: str = ""
    track: str | None = None
    window: WindowSummary | None = None
    evidence: Evidence | None = None
    tracks: dict[str, float] = field(default_factory=dict)
    """Window score of each face track of the stream at the time."""
    time: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (without the frame and mask arrays)."""
        return {
            "id": self.id,
            "type": str(self.type),
            "time": round(self.time, 3),
            "stream": {"id": self.stream_id, "name": self.stream_name, "source": self.source},
            "detail": self.detail,
            "track": self.track,
            "tracks": {k: round(v, 4) for k, v in self.tracks.items()},
            "window": self.window.summary() if self.window else None,
            "evidence": self.evidence.summary() if self.evidence else None,
        }


class EventSink(Protocol):
    """Receives every event, on the event loop. It must not block; slow work goes elsewhere."""

    async def emit(self, event: Event) -> None: ...


class LogSink:
    """Logs each event as one structured line."""

    def __init__(self, level: int = logging.INFO) -> None:
        self.level = level

    async def emit(self, event: Event) -> None:
        fields: dict[str, Any] = {"stream": event.stream_name, "source": event.source}
        if event.track:
            fields["track"] = event.track
        if event.window:
            fields["window_score"] = event.window.score
            fields["frames"] = len(event.window.scores)
        if event.evidence:
            fields["peak_score"] = event.evidence.score
        if event.detail:
            fields["detail"] = event.detail
        log(logger, self.level, str(event.type), **fields)


class RecentEvents:
    """The last ``size`` events as dictionaries, for the API and the web page."""

    def __init__(self, size: int = 200) -> None:
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)

    async def emit(self, event: Event) -> None:
        self._events.append(event.to_dict())

    def seed(self, events: list[dict[str, Any]]) -> None:
        """Older events (oldest first) known from before a restart."""
        for event in events:
            self._events.append(event)

    def latest(self, limit: int = 50, stream: str | None = None) -> list[dict[str, Any]]:
        """Newest first, optionally of one stream (id or name)."""
        chosen = [
            e
            for e in reversed(self._events)
            if stream is None or stream in (e["stream"]["id"], e["stream"]["name"])
        ]
        return chosen[:limit]


class MemorySink:
    """Keeps events in a list, and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def emit(self, event: Event) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of_type(self, kind: EventType, stream_id: str | None = None) -> list[Event]:
        return [e for e in self.events if e.type == kind and stream_id in (None, e.stream_id)]

    async def wait_for(
        self, kind: EventType, stream_id: str | None = None, count: int = 1, timeout: float = 30
    ) -> list[Event]:
        """The first ``count`` events of ``kind``; :class:`TimeoutError` after ``timeout``."""

        async def enough() -> list[Event]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.of_type(kind, stream_id)) >= count)
            return self.of_type(kind, stream_id)[:count]

        return await asyncio.wait_for(enough(), timeout)
