"""What a source hands the pipeline: decoded frames, latest one wins.

A source (a decoder thread or a WebRTC track reader) puts every frame it receives into
its :class:`LatestFrame` slot; the stream's sampler takes the newest one at the analysis
rate. A frame replaced before anyone took it is counted as dropped, so nothing queues up
behind a slow consumer and every frame is accounted for.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np


class Picture(Protocol):
    """A decoded picture not yet in RGB (PyAV's ``VideoFrame`` is one)."""

    def to_ndarray(self, *, format: str) -> np.ndarray: ...


class SourceFrame:
    """One decoded frame: RGB ``uint8 (H, W, 3)``, when it arrived, and where it sits.

    A source may hand over the decoded :class:`Picture` instead of RGB pixels: it is
    converted on the first read of :attr:`image`, so the frames the sampler never takes
    (most of them: a 30 fps stream analysed at 5 fps) are never converted. The pipeline
    reads it in a worker thread, off the event loop.

    ``capture_time`` is the wall-clock time (``time.time()``) the frame was received and
    decoded, the start of its end-to-end latency. ``pts_s`` is its presentation time in
    the source, when the source gives one. ``decode_s`` is the seconds spent decoding
    it, and converting it to RGB once that is done.
    """

    __slots__ = (
        "_image",
        "_lock",
        "_picture",
        "_thumbnail",
        "capture_time",
        "decode_s",
        "index",
        "pts_s",
    )

    def __init__(
        self,
        image: np.ndarray | Picture,
        capture_time: float,
        index: int,
        pts_s: float | None = None,
        decode_s: float = 0.0,
    ) -> None:
        self._image: np.ndarray | None = image if isinstance(image, np.ndarray) else None
        self._picture: Picture | None = None if isinstance(image, np.ndarray) else image
        self._lock = threading.Lock()
        self._thumbnail: np.ndarray | None = None
        self.capture_time = capture_time
        self.index = index
        self.pts_s = pts_s
        self.decode_s = decode_s

    @property
    def image(self) -> np.ndarray:
        """The RGB pixels (converted now if the source handed over a picture)."""
        with self._lock:
            if self._image is None:
                assert self._picture is not None
                started = time.perf_counter()
                self._image = self._picture.to_ndarray(format="rgb24")
                self._picture = None
                self.decode_s += time.perf_counter() - started
            if self._thumbnail is None:
                self._thumbnail = thumbnail(self._image)
            return self._image

    @property
    def thumbnail(self) -> np.ndarray | None:
        """A small grey picture of the frame (:func:`thumbnail`), made with the first read
        of :attr:`image`; ``None`` before."""
        return self._thumbnail

    def __repr__(self) -> str:
        return f"SourceFrame(index={self.index}, pts_s={self.pts_s}, at={self.capture_time:.3f})"


class DropReason(enum.StrEnum):
    """Why a frame or a crop was not analysed (the ``reason`` label of the drop counter)."""

    SUPERSEDED = "superseded"
    """A newer frame arrived before the sampler took this one (sampling rate)."""
    OVERSIZED = "oversized"
    """The frame is larger than the configured maximum resolution."""
    QUEUE_FULL = "queue_full"
    """The inference queue was full; the oldest work was dropped."""
    STALE = "stale"
    """The work waited longer than its deadline before inference."""
    SKIPPED = "skipped"
    """Not decoded at all: a non-reference frame skipped by the decoder."""
    ENGINE_FAILED = "engine_failed"
    """The engine call hung past ``batcher.infer_timeout_s`` or raised, or the engine was
    being restarted after such a failure."""
    DETECTOR_FAILED = "detector_failed"
    """Face detection hung past ``analysis.detect_timeout_s`` or raised, or the detector
    was being restarted after such a failure."""
    CALM = "calm"
    """Taken at the full rate but not analysed: the stream is calm and analysed at
    ``analysis.calm_fps``."""


def thumbnail(image: np.ndarray, cells: tuple[int, int] = (18, 32)) -> np.ndarray:
    """A small grey picture of ``image`` (RGB ``(H, W, 3)``) for comparing scenes: every
    k-th pixel, channels averaged; cheap (no pass over the whole frame)."""
    height, width = image.shape[:2]
    step_y, step_x = max(1, height // cells[0]), max(1, width // cells[1])
    sample = image[step_y // 2 :: step_y, step_x // 2 :: step_x][: cells[0], : cells[1]]
    grey: np.ndarray = (
        sample.astype(np.float32) if sample.ndim == 2 else sample.mean(axis=2, dtype=np.float32)
    )
    return grey / 255.0


class LatestFrame:
    """A one-frame slot, thread-safe: ``put`` replaces, ``take`` empties.

    ``on_drop`` is called (from the putting thread) once per frame replaced unread.
    """

    def __init__(self, on_drop: Callable[[DropReason], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._frame: SourceFrame | None = None
        self._on_drop = on_drop
        self.received = 0

    def put(self, frame: SourceFrame) -> None:
        with self._lock:
            replaced = self._frame is not None
            self._frame = frame
            self.received += 1
        if replaced and self._on_drop is not None:
            self._on_drop(DropReason.SUPERSEDED)

    def take(self) -> SourceFrame | None:
        with self._lock:
            frame, self._frame = self._frame, None
        return frame
