"""Load scenarios run against the real service: more streams than the machine can
analyse, and a WebRTC publisher while inference is paused; and what they measure.

* :func:`measure_capacity`: how many frames a second this machine analyses, from a short
  run offered far more than that.
* :func:`overload`: ``streams`` looping local 640x480 face clips at ``fps`` frames a
  second each, with a small inference queue (``batcher.queue_size`` 8) and a 1 s
  ``batcher.deadline_s``. Measures frames in, analysed and dropped by reason (and checks
  that each stream's frames add up), the end-to-end latency of the analysed frames
  (every one, through a pipeline observer, and the p99 bucket of
  ``fakewatch_end_to_end_latency_seconds``), RSS, and the inference queue (sampled every
  10 ms, every append recorded, and ``fakewatch_inference_queue_crops`` scraped every
  second).
* :func:`webrtc_paused`: one WHIP publisher (aiortc, 640x480) while inference is paused
  (the engine call blocks until the end): frames keep arriving and must all be read
  (aiortc's receive queues sampled) while RSS stays flat.

The service runs in this process (:func:`tests.support.service.serving`), so this
process's RSS is the service's. The reliability tests run them for 30 s;
``FAKEWATCH_SOAK_S`` makes that a soak of any length (:func:`soak_seconds`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fakewatch.stream.analysis.batcher import CropBatcher
from fakewatch.stream.analysis.observers import FaceObservation
from fakewatch.stream.analysis.state import StreamState
from fakewatch.stream.sources.frames import SourceFrame
from tests.support.measure import percentile, rss_bytes
from tests.support.media import face_clip, looping_face_file
from tests.support.prometheus import histogram_bucket, metric_value
from tests.support.service import TOKEN, Service, serving
from tests.support.webrtc import publish_whip


def soak_seconds(default: float) -> float:
    """How long a load test measures: ``default``, or ``FAKEWATCH_SOAK_S`` seconds for a
    soak run by hand (``FAKEWATCH_SOAK_S=600 pytest -s tests/reliability/test_overload.py``)."""
    return float(os.environ.get("FAKEWATCH_SOAK_S") or default)


# reasons counted before a frame reaches the stream's slot (never "received")
BEFORE_RECEIVED = {"skipped", "oversized"}


class RecordingQueue(collections.deque):  # type: ignore[type-arg]
    """The batcher's job queue, recording the most crops it ever held after an append."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.max_crops = 0

    def append(self, job: Any) -> None:
        super().append(job)
        self.max_crops = max(self.max_crops, sum(len(j.crops) for j in self))


def record_queue(batcher: CropBatcher) -> RecordingQueue | None:
    """Swap the batcher's queue for a :class:`RecordingQueue` (None if it has none)."""
    queue = getattr(batcher, "_queue", None)
    if not isinstance(queue, collections.deque):
        return None
    recording = RecordingQueue(queue)
    batcher._queue = recording
    return recording


@dataclass
class StreamFigures:
    name: str
    received: int
    analysed: int
    dropped: dict[str, int]

    @property
    def unaccounted(self) -> int:
        """Frames received but neither analysed nor dropped: those in flight."""
        counted = sum(n for reason, n in self.dropped.items() if reason not in BEFORE_RECEIVED)
        return self.received - self.analysed - counted


@dataclass
class Figures:
    """What a soak measured."""

    scenario: str
    seconds: float
    warm_up_s: float
    """Seconds from the first RSS sample to the start of the measured time."""
    streams: int
    offered_fps: float
    """Frames a second each stream offers."""
    received: int = 0
    analysed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    per_stream: list[StreamFigures] = field(default_factory=list)
    """Counts after the warm-up."""
    totals: list[StreamFigures] = field(default_factory=list)
    """Counts since each stream began (for the accounting: nothing before is missing)."""
    latencies: list[float] = field(default_factory=list)
    latency_p99_bucket: float = float("nan")
    rss: list[tuple[float, int]] = field(default_factory=list)
    queue_samples_max: int = 0
    queue_appends_max: int | None = None
    queue_metric_max: float = 0.0
    queue_bound: int = 0
    detect_p99_bucket: float = float("nan")
    inference_p99_bucket: float = float("nan")
    deadline_s: float = 0.0
    aiortc_queue_max: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fps_in(self) -> float:
        return self.received / self.seconds

    @property
    def fps_analysed(self) -> float:
        return self.analysed / self.seconds

    def rss_at(self, after_s: float) -> int:
        """The first RSS sample at or after ``after_s`` into the run."""
        return next((rss for t, rss in self.rss if t >= after_s), self.rss[-1][1])

    @property
    def rss_warm(self) -> int:
        return self.rss_at(self.warm_up_s)

    @property
    def rss_end(self) -> int:
        return self.rss[-1][1]

    @property
    def rss_max_after_warm_up(self) -> int:
        return max(rss for t, rss in self.rss if t >= self.warm_up_s)

    @property
    def rss_growth(self) -> float:
        """End over warm-up RSS, minus one."""
        return self.rss_end / self.rss_warm - 1

    def rss_trend(self) -> str:
        """RSS at the start and every minute after, in MiB: a leak climbs, a settling
        allocator flattens."""
        marks = [self.rss[0]]
        for t, rss in self.rss:
            if t >= 60 * len(marks):
                marks.append((t, rss))
        return " ".join(f"{rss / 1024**2:.0f}" for _, rss in marks)

    def table(self) -> str:
        """A Markdown table of the figures."""
        mib = 1024**2
        drops = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        queue = f"{self.queue_samples_max}"
        if self.queue_appends_max is not None:
            queue += f" (appends {self.queue_appends_max}, metric {self.queue_metric_max:g})"
        rows = [
            ("scenario", f"{self.scenario}, {self.seconds / 60:.1f} min"),
            ("streams", f"{self.streams} at {self.offered_fps:g} fps offered each"),
            ("fps in / analysed (all streams)", f"{self.fps_in:.1f} / {self.fps_analysed:.1f}"),
            ("frames received / analysed", f"{self.received} / {self.analysed}"),
            ("drops by reason", drops),
            (
                "latency p50 / p99 (analysed frames)",
                f"{percentile(self.latencies, 50):.3f} / {percentile(self.latencies, 99):.3f} s"
                f" (p99 bucket <= {self.latency_p99_bucket:g} s, n={len(self.latencies)})"
                if self.latencies
                else "none analysed",
            ),
            (
                "RSS start / after warm-up / end / max",
                f"{self.rss[0][1] / mib:.0f} / {self.rss_warm / mib:.0f} / "
                f"{self.rss_end / mib:.0f} / {self.rss_max_after_warm_up / mib:.0f} MiB "
                f"({self.rss_growth:+.1%} after a {self.warm_up_s:.0f} s warm-up)",
            ),
            (f"inference queue max (bound {self.queue_bound})", queue),
            ("RSS each minute (MiB)", self.rss_trend()),
        ]
        if self.aiortc_queue_max is not None:
            rows.append(("aiortc receive queues max", f"{self.aiortc_queue_max} frames"))
        rows += [("note", note) for note in self.notes]
        width = max(len(name) for name, _ in rows)
        lines = [f"| {'figure':{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {name:{width}} | {value} |" for name, value in rows]
        return "\n".join(lines)


class Sampler:
    """Samples RSS (every second), the batcher's queue (every 10 ms) and the queue gauge
    in /metrics (every second) until stopped; ``extra`` runs with each RSS sample."""

    def __init__(
        self, service: Service, figures: Figures, extra: Callable[[], None] | None = None
    ) -> None:
        self.service = service
        self.figures = figures
        self.extra = extra
        self.started = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Sampler:
        self._tasks = [
            asyncio.create_task(self._slow(), name="soak rss"),
            asyncio.create_task(self._fast(), name="soak queue"),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.figures.rss.append((time.monotonic() - self.started, rss_bytes()))

    async def _slow(self) -> None:
        while True:
            self.figures.rss.append((time.monotonic() - self.started, rss_bytes()))
            async with self.service.http.get("/metrics") as response:
                text = await response.text()
            depth = metric_value(text, "fakewatch_inference_queue_crops") or 0.0
            self.figures.queue_metric_max = max(self.figures.queue_metric_max, depth)
            if self.extra is not None:
                self.extra()
            await asyncio.sleep(1.0)

    async def _fast(self) -> None:
        batcher = self.service.pipeline.batcher
        while True:
            self.figures.queue_samples_max = max(self.figures.queue_samples_max, batcher.queued)
            await asyncio.sleep(0.01)


def latency_observer(
    latencies: list[float],
) -> Callable[[StreamState, SourceFrame, list[FaceObservation]], None]:
    """A pipeline observer keeping each analysed frame's latency from its capture."""

    def observe(state: StreamState, frame: SourceFrame, faces: list[FaceObservation]) -> None:
        latencies.append(time.time() - frame.capture_time)

    return observe


async def collect(service: Service, figures: Figures, since: dict[str, dict[str, Any]]) -> None:
    """Per-stream counts from the API, less those at ``since`` (the end of the warm-up),
    and the histogram figures from /metrics."""
    async with service.http.get("/api/streams") as response:
        states = (await response.json())["streams"]
    for state in states:
        figures.totals.append(
            StreamFigures(
                state["name"],
                state["frames_received"],
                state["frames_analysed"],
                state["frames_dropped"],
            )
        )
        before = since.get(state["name"], {})
        dropped = {
            reason: count - before.get("frames_dropped", {}).get(reason, 0)
            for reason, count in state["frames_dropped"].items()
        }
        stream = StreamFigures(
            state["name"],
            state["frames_received"] - before.get("frames_received", 0),
            state["frames_analysed"] - before.get("frames_analysed", 0),
            {reason: count for reason, count in dropped.items() if count},
        )
        figures.per_stream.append(stream)
        figures.received += stream.received
        figures.analysed += stream.analysed
        for reason, count in stream.dropped.items():
            figures.dropped[reason] = figures.dropped.get(reason, 0) + count
    async with service.http.get("/metrics") as response:
        text = await response.text()
    figures.latency_p99_bucket = histogram_bucket(
        text, "fakewatch_end_to_end_latency_seconds", 0.99
    )
    figures.inference_p99_bucket = histogram_bucket(text, "fakewatch_inference_seconds", 0.99)
    figures.detect_p99_bucket = histogram_bucket(
        text, "fakewatch_stage_seconds", 0.99, stage=("detect", "track")
    )


async def stream_states(service: Service) -> dict[str, dict[str, Any]]:
    async with service.http.get("/api/streams") as response:
        return {s["name"]: s for s in (await response.json())["streams"]}


# --- overload ----------------------------------------------------------------------------

OVERLOAD_CONFIG: dict[str, Any] = {
    "analysis.adaptive": False,  # every stream at the full rate: the load offered
    "batcher.max_batch": 4,
    "batcher.queue_size": 8,
    "batcher.deadline_s": 1.0,
    "sources.loop_files": True,
}


async def overload(
    seconds: float,
    streams: int = 16,
    fps: float = 5.0,
    warm_up_s: float = 20.0,
    clip: Path | None = None,
    **overrides: Any,
) -> Figures:
    """``streams`` looping local clips at ``fps`` each, each analysed at ``fps``, for
    ``seconds`` after a warm-up; figures cover the time after the warm-up (RSS: the whole
    run)."""
    config = {
        **OVERLOAD_CONFIG,
        "analysis.fps": fps,
        "limits.max_streams": streams,
        **overrides,
    }
    with tempfile.TemporaryDirectory(prefix="fakewatch-soak-") as folder:
        clip = clip or looping_face_file(Path(folder), fps)
        async with serving(**config) as service:
            pipeline = service.pipeline
            figures = Figures(
                "overload",
                seconds,
                warm_up_s,
                streams,
                fps,
                queue_bound=pipeline.batcher.queue_size,
                deadline_s=pipeline.batcher.deadline_s,
            )
            recording = record_queue(pipeline.batcher)
            latencies: list[float] = []
            async with Sampler(service, figures) as sampler:
                for n in range(streams):
                    await service.add(str(clip), f"load-{n:02d}")
                await asyncio.sleep(warm_up_s)
                figures.warm_up_s = time.monotonic() - sampler.started
                since = await stream_states(service)
                pipeline.observers.append(latency_observer(latencies))
                started = time.monotonic()
                await asyncio.sleep(seconds)
                figures.seconds = time.monotonic() - started
                await collect(service, figures, since)
                figures.latencies = latencies
                # the gauge series of the warm-up stays: its latency histogram too
            if recording is not None:
                figures.queue_appends_max = recording.max_crops
    return figures


SHEDDING = 0.5
"""A run analysing less than this share of the frames offered was overloaded."""
MAX_PROBE_FPS = 30.0
"""The highest rate a capacity probe offers per stream; beyond it, more streams."""


@dataclass(frozen=True)
class Capacity:
    """Frames a second this machine analyses at most, and the probe that showed it."""

    fps: float
    probe: Figures

    def describe(self) -> str:
        probe = self.probe
        offered = probe.streams * probe.offered_fps
        return (
            f"capacity {self.fps:.1f} analysed frames/s, measured offering {offered:g} "
            f"({probe.streams} streams x {probe.offered_fps:g} fps) for "
            f"{probe.seconds:.0f} s: {probe.fps_analysed / offered:.0%} of them analysed"
        )


async def measure_capacity(
    seconds: float = 8.0, warm_up_s: float = 6.0, streams: int = 16, fps: float = 5.0
) -> Capacity:
    """How many frames a second this machine analyses at most: short :func:`overload`
    runs, offered twice as much each time (a higher rate per stream, then more streams)
    until one analyses under :data:`SHEDDING` of what it is offered."""
    while True:
        probe = await overload(seconds, streams, fps, warm_up_s)
        if probe.fps_analysed < SHEDDING * streams * fps:
            return Capacity(probe.fps_analysed, probe)
        if fps * 2 <= MAX_PROBE_FPS:
            fps *= 2
        else:
            streams *= 2


def overloading(capacity: float, factor: float, streams: int, fps: float) -> tuple[int, float]:
    """Streams and frames a second each (at least ``streams`` at ``fps``) that offer at
    least ``factor`` times ``capacity``: a higher rate first, up to
    :data:`MAX_PROBE_FPS`, then more streams."""
    wanted = factor * capacity
    if streams * fps >= wanted:
        return streams, fps
    fps = min(MAX_PROBE_FPS, float(math.ceil(wanted / streams)))
    return max(streams, math.ceil(wanted / fps)), fps


# --- webrtc with inference paused --------------------------------------------------------


class PausedSegmenter:
    """Wraps the batcher's segmenter: every engine call blocks until :meth:`resume`."""

    def __init__(self, segmenter: Any) -> None:
        self.segmenter = segmenter
        self.max_batch = segmenter.max_batch
        self.entered = threading.Event()
        self._resume = threading.Event()

    def segment(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.entered.set()
        self._resume.wait()
        result: tuple[np.ndarray, np.ndarray, np.ndarray] = self.segmenter.segment(crops)
        return result

    def resume(self) -> None:
        self._resume.set()


def aiortc_queue_sizes(state: StreamState) -> list[int]:
    """Frames waiting in the service-side aiortc receivers of a WebRTC stream: each
    track's queue of decoded frames and each receiver's queue of frames to decode."""
    pc = getattr(state.source, "_pc", None)
    if pc is None:
        return []
    sizes = []
    for receiver in pc.getReceivers():
        track = getattr(receiver, "_track", None)
        if track is not None and hasattr(track, "_queue"):
            sizes.append(track._queue.qsize())
        decoder = getattr(receiver, "_RTCRtpReceiver__decoder_queue", None)
        if decoder is not None:
            sizes.append(decoder.qsize())
    return sizes


@contextlib.asynccontextmanager
async def paused_inference(service: Service) -> AsyncIterator[PausedSegmenter]:
    """Inference paused for the block's duration: engine calls wait, then run."""
    batcher = service.pipeline.batcher
    paused = PausedSegmenter(batcher.segmenter)
    batcher.segmenter = paused
    try:
        yield paused
    finally:
        paused.resume()
        if batcher.segmenter is paused:
            batcher.segmenter = paused.segmenter


WEBRTC_CONFIG: dict[str, Any] = {
    "analysis.fps": 5.0,
    "analysis.adaptive": False,  # every frame at the full rate
    "batcher.infer_timeout_s": 600.0,  # a paused engine is not a hung one here
}


async def webrtc_paused(
    seconds: float, fps: float = 15.0, warm_up_s: float = 15.0, **overrides: Any
) -> Figures:
    """One WHIP publisher for ``seconds`` after a warm-up, inference paused throughout."""
    from skimage import data

    frames = face_clip(np.ascontiguousarray(data.astronaut()), 30, (640, 480))
    async with serving(**{**WEBRTC_CONFIG, **overrides}) as service:
        figures = Figures(
            "webrtc, inference paused",
            seconds,
            warm_up_s,
            1,
            fps,
            queue_bound=service.pipeline.batcher.queue_size,
            deadline_s=service.pipeline.batcher.deadline_s,
        )
        aiortc_max = 0
        state: StreamState | None = None

        def sample_aiortc() -> None:
            nonlocal aiortc_max
            if state is not None:
                aiortc_max = max([aiortc_max, *aiortc_queue_sizes(state)])

        async with (
            paused_inference(service) as paused,
            Sampler(service, figures, sample_aiortc) as sampler,
        ):
            session = await publish_whip(
                f"{service.base}/api/whip?name=caller", frames=frames, fps=fps, token=TOKEN
            )
            try:
                stream = (session.location or "").rsplit("/", 1)[1]
                state = service.pipeline.streams[stream]
                await asyncio.wait_for(asyncio.to_thread(paused.entered.wait, 30), 35)
                await asyncio.sleep(warm_up_s)
                figures.warm_up_s = time.monotonic() - sampler.started
                since = await stream_states(service)
                started = time.monotonic()
                await asyncio.sleep(seconds)
                figures.seconds = time.monotonic() - started
                await collect(service, figures, since)
                figures.aiortc_queue_max = aiortc_max
                figures.notes.append(
                    f"engine calls started while paused: 1 (entered={paused.entered.is_set()})"
                )
            finally:
                paused.resume()
                await session.close()
    return figures
