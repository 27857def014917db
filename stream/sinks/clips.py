"""Alert clips: a few seconds of video around each alert, the mask drawn on the alerting face.

:class:`ClipRecorder` observes every analysed frame of every stream
(:data:`~fakewatch.stream.analysis.observers.FrameObserver`). At most ``fps`` frames a
second of each stream are kept: in a worker thread each is scaled down to ``height``
pixels, JPEG-encoded and put with its faces (box, score, a 64x64 mask) into the
stream's :class:`FrameRing`, which holds the last ``before_s`` seconds and never more
than ``before_s * fps + 1`` frames. When an alert is raised, :meth:`ClipRecorder.record`
takes the ring's frames and the next ``after_s`` seconds of the stream's frames;
:func:`encode_clip` (run in a thread) draws the alerting face's mask as a heatmap on
each frame and writes an H.264 MP4 (``yuv420p``, ``+faststart``, so browsers play it
while it loads) at the frames' own times.

Frames come from the analysed ones because those carry the masks, so a clip's frame
rate is at most ``analysis.fps``. A frame the worker cannot take at once (the queue of
``QUEUE_FRAMES`` is full) is left out of the clips and counted in :attr:`dropped`; the
observer never waits and never encodes on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from fakewatch.engines.crop import Box, paste_mask
from fakewatch.engines.overlay import draw_faces, heatmap_overlay
from fakewatch.stream.analysis.observers import FaceObservation
from fakewatch.stream.analysis.state import StreamState
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log
from fakewatch.stream.sources.frames import SourceFrame

logger = logging.getLogger(f"{LOGGER_NAME}.clips")

QUEUE_FRAMES = 16
"""Frames waiting for the worker thread, all streams together; more are dropped. Each
holds a whole decoded frame until the worker has scaled it, so this bounds that memory
too (16 frames of 1080p: 100 MB) while the worker is behind."""
MASK_SIDE = 64
"""A face's mask is kept at this size (uint8) for the clip's heatmap."""
JPEG_QUALITY = 80
MILLISECONDS = Fraction(1, 1000)
"""The clip's time base: frames are written at their capture times, to the millisecond."""
RECORD_SLACK_S = 5.0
"""How long past ``after_s`` a recording waits for frames (a stream that went quiet)."""
IDLE_RING_S = 60.0
"""A stream's ring is dropped once it got no frame for this long (the stream was removed)."""


@dataclass(frozen=True)
class ClipFace:
    """One face of a clip frame, in the clip's pixels."""

    track: str
    box: Box
    crop_box: Box
    score: float
    mask: np.ndarray = field(repr=False)
    """``uint8`` ``MASK_SIDE`` x ``MASK_SIDE``, the face's mask over its crop box."""


@dataclass(frozen=True)
class ClipFrame:
    """One frame kept for clips: when it was captured, its JPEG and its faces."""

    time: float
    jpeg: bytes = field(repr=False)
    faces: tuple[ClipFace, ...] = ()

    @property
    def nbytes(self) -> int:
        """The memory its pictures take (JPEG and masks)."""
        return len(self.jpeg) + sum(face.mask.nbytes for face in self.faces)


class FrameRing:
    """The newest frames of one stream: the last ``seconds``, at most ``max_frames``."""

    def __init__(self, seconds: float, max_frames: int) -> None:
        self.seconds = seconds
        self._frames: deque[ClipFrame] = deque(maxlen=max(1, max_frames))

    def add(self, frame: ClipFrame) -> None:
        self._frames.append(frame)
        while self._frames and self._frames[0].time < frame.time - self.seconds:
            self._frames.popleft()

    def frames(self) -> list[ClipFrame]:
        return list(self._frames)

    @property
    def newest(self) -> float | None:
        return self._frames[-1].time if self._frames else None

    @property
    def nbytes(self) -> int:
        return sum(frame.nbytes for frame in self._frames)

    def __len__(self) -> int:
        return len(self._frames)


@dataclass
class _Recording:
    stream_id: str
    until: float
    frames: list[ClipFrame]
    done: asyncio.Future[list[ClipFrame]]
    loop: asyncio.AbstractEventLoop


def clip_frame(
    image: np.ndarray, capture_time: float, faces: Sequence[FaceObservation], height: int
) -> ClipFrame:
    """``image`` (RGB) scaled to ``height`` pixels (never up) and JPEG-encoded, with its
    faces' boxes and masks in the scaled pixels."""
    scale = min(1.0, height / image.shape[0])
    if scale < 1.0:
        size = (max(2, round(image.shape[1] * scale / 2) * 2), height)
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise OSError("could not encode a clip frame")
    kept = tuple(
        ClipFace(
            track=face.track,
            box=_scaled(face.box, scale),
            crop_box=_scaled(face.crop.box, scale),
            score=face.score,
            mask=cv2.resize(
                np.clip(face.mask * 255 + 0.5, 0, 255).astype(np.uint8),
                (MASK_SIDE, MASK_SIDE),
                interpolation=cv2.INTER_AREA,
            ),
        )
        for face in faces
    )
    return ClipFrame(capture_time, encoded.tobytes(), kept)


def _scaled(box: Box, scale: float) -> Box:
    return Box(box.x0 * scale, box.y0 * scale, box.x1 * scale, box.y1 * scale)


class ClipRecorder:
    """Keeps each stream's recent frames and records the frames around alerts."""

    def __init__(self, before_s: float, after_s: float, fps: float, height: int) -> None:
        self.before_s, self.after_s, self.fps, self.height = before_s, after_s, fps, height
        self.max_frames = math.ceil(before_s * fps) + 1
        self.dropped = 0
        """Frames left out because the worker was behind."""
        self._rings: dict[str, FrameRing] = {}
        self._recordings: list[_Recording] = []
        self._due: dict[str, float] = {}
        """When each stream's next frame is due, capture time."""
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, SourceFrame, list[FaceObservation]] | None] = (
            queue.Queue(QUEUE_FRAMES)
        )
        self._worker: threading.Thread | None = None

    def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="clip frames", daemon=True)
            self._worker.start()

    async def close(self) -> None:
        """Stop the worker; recordings still open end with the frames they have."""
        if self._worker is not None:
            await asyncio.to_thread(self._stop_worker, self._worker)
            self._worker = None
        with self._lock:
            recordings, self._recordings = self._recordings, []
        for recording in recordings:
            _finish(recording)

    def _stop_worker(self, worker: threading.Thread) -> None:
        """Let the worker take the frames queued, then end it (2 s at most each)."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=2.0)
        worker.join(2.0)

    def observe(self, state: StreamState, frame: SourceFrame, faces: list[FaceObservation]) -> None:
        """The frame observer: hands at most ``fps`` frames a second of each stream to the
        worker; never blocks (on the event loop)."""
        period, now = 1 / self.fps, frame.capture_time
        due = self._due.get(state.id)
        if due is not None and now < due - period / 2:  # half a period early is on time
            return
        # one frame a period in the long run, whatever the jitter of the analysed frames
        self._due[state.id] = max(due or now, now - period / 2) + period
        try:
            self._queue.put_nowait((state.id, frame, faces))  # its pixels read in the worker
        except queue.Full:
            self.dropped += 1

    def ring_bytes(self, stream_id: str) -> int:
        """The memory one stream's ring takes now (its JPEGs and masks)."""
        with self._lock:
            ring = self._rings.get(stream_id)
            return ring.nbytes if ring else 0

    def ring_frames(self, stream_id: str) -> int:
        with self._lock:
            ring = self._rings.get(stream_id)
            return len(ring) if ring else 0

    async def record(self, stream_id: str, at: float) -> list[ClipFrame]:
        """The stream's frames from ``before_s`` before ``at`` (the alert's time)
        to ``after_s`` after it; waits for the later ones, ``RECORD_SLACK_S`` at most
        past them if the stream goes quiet."""
        loop = asyncio.get_running_loop()
        until = at + self.after_s
        with self._lock:
            ring = self._rings.get(stream_id)
            before = [f for f in ring.frames() if f.time >= at - self.before_s] if ring else []
            recording = _Recording(stream_id, until, before, loop.create_future(), loop)
            if before and before[-1].time >= until:
                recording.done.set_result(before)
            else:
                self._recordings.append(recording)
        wait_s = max(0.0, until - time.time()) + RECORD_SLACK_S
        try:
            return await asyncio.wait_for(asyncio.shield(recording.done), wait_s)
        except TimeoutError:
            with self._lock:
                if recording in self._recordings:
                    self._recordings.remove(recording)
            return list(recording.frames)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            stream_id, source, faces = item
            try:
                frame = clip_frame(source.image, source.capture_time, faces, self.height)
            except Exception as error:  # a bad frame must not end the clips
                log(logger, logging.WARNING, "clip.frame_error", error=describe_error(error))
                continue
            self._add(stream_id, frame)

    def _add(self, stream_id: str, frame: ClipFrame) -> None:
        finished = []
        with self._lock:
            ring = self._rings.get(stream_id)
            if ring is None:
                ring = self._rings[stream_id] = FrameRing(self.before_s, self.max_frames)
            ring.add(frame)
            for recording in self._recordings:
                if recording.stream_id == stream_id:
                    recording.frames.append(frame)
                    if frame.time >= recording.until:
                        finished.append(recording)
            for recording in finished:
                self._recordings.remove(recording)
            idle = [k for k, r in self._rings.items() if (r.newest or 0) < frame.time - IDLE_RING_S]
            for key in idle:
                del self._rings[key]
                self._due.pop(key, None)
        for recording in finished:
            _finish(recording)


def _finish(recording: _Recording) -> None:
    def settle() -> None:
        if not recording.done.done():
            recording.done.set_result(list(recording.frames))

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
        recording.loop.call_soon_threadsafe(settle)


def encode_clip(
    frames: Sequence[ClipFrame], track: str | None, threshold: float, path: Path
) -> list[float]:
    """Write ``frames`` as an H.264 MP4 at ``path`` (to a temporary name, then renamed),
    the mask of face ``track`` (the highest-scoring face where ``track`` is ``None``)
    drawn as a heatmap; the capture time of each frame written."""
    if not frames:
        raise ValueError("a clip needs at least one frame")
    start = frames[0].time
    partial = path.with_name(f".{path.name}.partial")
    times: list[float] = []
    try:
        with av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            height, width = _decoded(frames[0]).shape[:2]
            stream = out.add_stream("libx264")
            stream.width, stream.height = width - width % 2, height - height % 2
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = stream.time_base = MILLISECONDS
            stream.options = {"preset": "veryfast", "crf": "26"}
            last_pts = -1
            for frame in frames:
                picture = _picture(frame, track, threshold)[: stream.height, : stream.width]
                if picture.shape[:2] != (stream.height, stream.width):
                    picture = cv2.resize(picture, (stream.width, stream.height))
                pts = max(last_pts + 1, round((frame.time - start) * 1000))
                video = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
                video.pts, video.time_base = pts, MILLISECONDS
                out.mux(stream.encode(video))
                last_pts = pts
                times.append(frame.time)
            out.mux(stream.encode(None))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return times


def _picture(frame: ClipFrame, track: str | None, threshold: float) -> np.ndarray:
    picture = cv2.cvtColor(_decoded(frame), cv2.COLOR_BGR2RGB)
    faces = [face for face in frame.faces if face.track == track]
    if track is None and frame.faces:
        faces = [max(frame.faces, key=lambda face: face.score)]
    for face in faces:
        mask = paste_mask(face.mask.astype(np.float32) / 255, face.crop_box, picture.shape)
        picture = heatmap_overlay(picture, mask)
        picture = draw_faces(picture, [face.box], [face.score], threshold)
    return picture


def _decoded(frame: ClipFrame) -> np.ndarray:
    """The frame's pixels, BGR."""
    bgr = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("a clip frame's JPEG does not decode")
    return bgr
