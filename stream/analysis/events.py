"""What the pipeline decides, and the interface of what receives its decisions.

An :class:`Event` is a decision (``deepfake.suspected``, ``deepfake.cleared``) or a
change of a stream's health (``stream.down``, ``stream.up``). A decision is one face
track's: it names the track and the face's box, and carries the track's window that
decided (scores and times) and, for ``deepfake.suspected``, the :class:`Evidence` that
scored highest in it: the frame, the face's mask and where it was. Every :class:`EventSink` receives
every event (the sinks themselves are in :mod:`fakewatch.stream.sinks`).
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fakewatch.engines.crop import Box
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log

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
    """The face track that decided (decisions only)."""
    box: Box | None = None
    """Where that face was last seen, in frame pixels."""
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
            "box": self.box.as_list() if self.box else None,
            "tracks": {k: round(v, 4) for k, v in self.tracks.items()},
            "window": self.window.summary() if self.window else None,
            "evidence": self.evidence.summary() if self.evidence else None,
        }


class EventSink(Protocol):
    """Receives every event, on the event loop. It must not block; slow work goes elsewhere."""

    async def emit(self, event: Event) -> None: ...


async def hand_to_sinks(sinks: Sequence[EventSink], event: Event, **context: str) -> bool:
    """Hand ``event`` to every sink, in order; a sink that fails is logged (``sink.error``,
    with ``context``) and the next ones still get it. Whether every sink took it."""
    took = True
    for sink in sinks:
        try:
            await sink.emit(event)
        except Exception as error:  # a failing sink must not stop the others
            took = False
            log(
                logger,
                logging.ERROR,
                "sink.error",
                sink=type(sink).__name__,
                error=describe_error(error),
                **context,
            )
    return took
