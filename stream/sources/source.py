"""The source protocol: what every live video source is to the pipeline.

A source (an FFmpeg decoder thread, a WebRTC peer connection) feeds decoded frames into
its :class:`~fakewatch.stream.sources.frames.LatestFrame` slot and reports its health
through a status listener. Sources know nothing of what happens to their frames.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

from fakewatch.stream.sources.frames import DropReason, LatestFrame


class SourceStatus(enum.StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"
    STOPPED = "stopped"


StatusListener = Callable[[SourceStatus, str], None]
"""Called with the new status and a human-readable detail, possibly from a worker
thread: listeners must be thread-safe (the pipeline hops onto its event loop)."""


class Source(Protocol):
    """A live video source feeding a :class:`LatestFrame`."""

    frames: LatestFrame

    @property
    def kind(self) -> str:
        """What sort of source it is, as the API shows it (``url``, ``webrtc``)."""
        ...

    @property
    def recovers(self) -> bool:
        """Whether the source comes back by itself after going DOWN (a URL reconnects).
        When it does not (a WebRTC session: its publisher must publish again), DOWN is
        final, and a source that stops delivering frames is ended by the pipeline."""
        ...

    @property
    def status(self) -> SourceStatus: ...

    @property
    def description(self) -> str:
        """What the source is, safe to log and show (credentials redacted)."""
        ...

    async def start(self) -> None:
        """Begin receiving; returns at once (the work runs in a thread or a task)."""
        ...

    async def stop(self) -> None:
        """Stop receiving and release everything; bounded in time."""
        ...


SourceFactory = Callable[[LatestFrame, StatusListener, Callable[[DropReason], None]], Source]
"""Builds a stream's source around its frame slot, status listener and drop counter."""
