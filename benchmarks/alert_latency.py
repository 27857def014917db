"""Alert latency: from the capture of the first manipulated frame to the signed webhook.

Usage (from the repository root):

    .venv/bin/python benchmarks/alert_latency.py --runs 10 [--held-out]

The stream is a real recording followed by its live-swapped twin, so the swap starts at
a known presentation time T: ``live-swap-dev`` ``real/Keanu_Reeves_0.mp4`` (7.7 s) then
``fake/Keanu_Reeves_0.mp4`` (the pairs are pixel- and frame-aligned: checked), re-encoded
as one H.264 .mp4 the way a live camera sends it (no B-frames) into a cache folder
outside the checkout (``--cache``). Without the development samples beside the checkout
(``../shared/data``) the demo's own pair is used: the demo clip whose face fakewatch
manipulates from 4 s to 12 s (``fakewatch demo``). The Keanu pair is in-sample for the
shipped model (it was trained beside it): this measures the service's latency, not how
well the model detects. ``--held-out`` also plays the four Ewon_Spice pairs, whose face
model the shipped model never saw, once each, and reports how many of them alerted.

The clip is served over RTSP by the real gst-rtsp-server (``tests/stream/rtsp_server.py``
under the system Python); every client gets it from its first frame in real time. The
service is the real one, in this process (``tests.support.service.serving``: the
pipeline and the HTTP API on a free port) with the default analysis and vote settings
and one webhook endpoint: a local aiohttp receiver that notes the arrival time of each
``deepfake.suspected`` delivery and verifies its signature with ``standardwebhooks``.

Each run adds the stream (a fresh RTSP session: the clip starts at 0), waits for the
webhook, then removes the stream. Every frame the source hands the pipeline is recorded
with its presentation time and wall-clock capture time (``SourceFrame.capture_time``),
so the reference is the capture of the first frame with pts >= T, whether or not it was
sampled for analysis. Every event sink is timed, which splits the latency into the vote
(capture to the ``deepfake.suspected`` event), the sinks before the outbox (evidence
files, the outbox write) and the delivery (the outbox worker's HTTP POST). A run that
does not alert by ``--timeout`` seconds after the swap (or the end of the clip, after
which the stream reconnects and the clip starts over) is a miss, counted and reported.

Two parts that could be shortened without touching the vote are measured as well: the
RTSP open (FFmpeg's default probing against a capped probe, on the same server) and the
evidence files written before the webhook is queued (their retention pass, which reads
every stored alert, runs afterwards in the background): ``--stored-alerts 1000`` fills
the evidence store beforehand as a service that has been alerting for a while holds it
(``evidence.max_alerts``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np

if TYPE_CHECKING:
    from fakewatch.stream.analysis.events import Event, EventSink
    from fakewatch.stream.analysis.observers import FaceObservation
    from fakewatch.stream.analysis.pipeline import Pipeline
    from fakewatch.stream.analysis.state import StreamState
    from fakewatch.stream.sources.frames import LatestFrame, SourceFrame
    from tests.support.service import Service

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks.* and tests.* from the checkout this sits in
    sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402
from tests.support.measure import percentile  # noqa: E402
from tests.support.webhooks import Receiver, Request, endpoint, receiving  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"
LIVE_SWAP = SHARED_DATA / "live-swap-dev"
MAIN_PAIR = "Keanu_Reeves_0"
HELD_OUT_PAIRS = ("Ewon_Spice_0", "Ewon_Spice_1", "Ewon_Spice_2", "Ewon_Spice_3")
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "fakewatch-alert-latency"
ENCODING = {"crf": "18", "bframes": "0"}
"""x264 options of the served clip: a live camera's stream has no B-frames."""
CHANGED_LEVEL = 24
"""A pixel whose channels differ by more than this between a pair's frames is changed."""
PTS_SLACK_S = 0.25
"""A stream whose first pts is at most this starts at the clip's start (frames the decoder
skips may come first)."""
END_GRACE_S = 4.0
"""How long after the clip's last frame a run still waits for its webhook."""
WEBHOOK_EVENTS = ["deepfake.suspected"]


# --- the clip ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """A served clip whose manipulation starts at ``swap_s`` (its presentation time)."""

    name: str
    path: Path
    swap_s: float
    fps: float
    duration_s: float
    origin: str
    in_sample: bool


def _frames(path: Path) -> Iterator[np.ndarray]:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def _video_info(path: Path) -> tuple[float, int, int, int]:
    """Frame rate, frame count (decoded), width and height of ``path``."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        count = sum(1 for _ in container.decode(video=0))
        return rate, count, stream.width, stream.height


def check_pair(real: Path, fake: Path) -> str:
    """Refuse a pair that is not frame-aligned (rate, count or size differ); describe how
    much of each frame the swap changed, aligned and shifted by one frame."""
    real_info, fake_info = _video_info(real), _video_info(fake)
    if real_info != fake_info:
        raise ValueError(
            f"{real} and {fake} are not frame-aligned: (fps, frames, width, height) "
            f"{real_info} vs {fake_info}"
        )
    aligned, shifted = [], []
    previous: np.ndarray | None = None
    for real_frame, fake_frame in zip(_frames(real), _frames(fake), strict=True):
        changed = np.abs(real_frame.astype(np.int16) - fake_frame).max(axis=2) > CHANGED_LEVEL
        aligned.append(float(changed.mean()))
        if previous is not None:
            moved = np.abs(previous.astype(np.int16) - fake_frame).max(axis=2) > CHANGED_LEVEL
            shifted.append(float(moved.mean()))
        previous = real_frame
    return (
        f"{real_info[1]} frames each at {real_info[0]:g} fps, {real_info[2]}x{real_info[3]}; "
        f"pixels changed by the swap {np.mean(aligned):.1%} of a frame aligned, "
        f"{np.mean(shifted):.1%} shifted by one frame"
    )


def live_swap_clip(name: str, cache: Path, lead_s: float, *, in_sample: bool) -> Clip:
    """``real/NAME`` (its first ``lead_s`` seconds) then ``fake/NAME``, encoded once into
    ``cache``; the swap starts at the first fake frame."""
    real, fake = LIVE_SWAP / "real" / f"{name}.mp4", LIVE_SWAP / "fake" / f"{name}.mp4"
    detail = check_pair(real, fake)
    rate, count, width, height = _video_info(real)
    lead = min(count, round(lead_s * rate))
    target = cache / f"{name}.real{lead}-fake{count}.mp4"
    if not target.is_file() or target.stat().st_mtime < max(
        real.stat().st_mtime, fake.stat().st_mtime
    ):
        cache.mkdir(parents=True, exist_ok=True)
        part = target.with_suffix(".part.mp4")
        with av.open(str(part), "w") as container:
            stream = container.add_stream("libx264", rate=round(rate), options=ENCODING)
            stream.width, stream.height = width // 2 * 2, height // 2 * 2
            stream.pix_fmt = "yuv420p"
            reals = (f for i, f in enumerate(_frames(real)) if i < lead)
            for image in (*reals, *_frames(fake)):
                pixels = np.ascontiguousarray(image[: stream.height, : stream.width])
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        part.replace(target)
    origin = (
        f"live-swap-dev {name}: real {lead / rate:.2f} s then fake {count / rate:.2f} s "
        f"({detail}); served from {target}"
    )
    return Clip(name, target, lead / rate, rate, (lead + count) / rate, origin, in_sample)


def demo_clip() -> Clip:
    """The demo's manipulated clip (made once by ``fakewatch demo``'s own recipe)."""
    from fakewatch.training.demo_clip import DEFAULT_CACHE as DEMO_CACHE
    from fakewatch.training.demo_clip import SPAN, demo_clips

    real, twin = demo_clips(ROOT / DEMO_CACHE)
    rate, count, width, height = _video_info(twin)
    origin = (
        f"the demo pair ({real.name} and its twin manipulated by fakewatch's self-blend "
        f"from {SPAN[0]:g} s to {SPAN[1]:g} s, {width}x{height} at {rate:.3f} fps, as "
        f"encoded by the demo, B-frames included); served from {twin}"
    )
    return Clip("demo", twin, SPAN[0], rate, count / rate, origin, in_sample=False)


# --- what the service does, as it happens ----------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One frame a stream's source handed the pipeline."""

    connection: int
    index: int
    pts_s: float | None
    capture_time: float


class FrameLog:
    """Every frame put into a stream's frame slot, sampled for analysis or not."""

    def __init__(self) -> None:
        self.frames: list[Received] = []
        self.attached_late = False
        self._connection = -1
        self._lock = threading.Lock()

    def attach(self, slot: LatestFrame) -> None:
        """Record each frame ``slot`` receives (from the source's thread), then store it."""
        store = slot.put

        def put(frame: SourceFrame) -> None:
            self._record(frame)
            store(frame)

        instance: Any = slot  # this slot only, not the class
        instance.put = put

    def _record(self, frame: SourceFrame) -> None:
        with self._lock:
            if frame.index == 0 or self._connection < 0:
                self.attached_late |= self._connection < 0 and frame.index != 0
                self._connection += 1
            self.frames.append(
                Received(self._connection, frame.index, frame.pts_s, frame.capture_time)
            )

    def first_connection(self) -> list[Received]:
        with self._lock:
            return [f for f in self.frames if f.connection == 0]


@dataclass(frozen=True)
class Analysed:
    """One analysed frame of a stream, as a pipeline observer sees it."""

    index: int
    pts_s: float | None
    capture_time: float
    analysed_at: float
    score: float | None


@dataclass
class SinkTiming:
    event: Event
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def decided(self) -> float:
        """When the first sink got the event: the decision's wall-clock time."""
        return min(start for start, _ in self.spans.values())


class TimedSink:
    """An event sink around another, noting when it got each event and when it was done."""

    def __init__(self, inner: EventSink, timings: dict[str, SinkTiming]) -> None:
        self.inner = inner
        self.name = type(inner).__name__
        self.timings = timings

    async def emit(self, event: Event) -> None:
        started = time.time()
        try:
            await self.inner.emit(event)
        finally:
            timing = self.timings.setdefault(event.id, SinkTiming(event))
            timing.spans[self.name] = (started, time.time())


def delivery(receiver: Receiver, stream_id: str) -> Request | None:
    """The receiver's first delivery for the stream ``stream_id``."""
    for request in receiver.requests:
        data = json.loads(request.body).get("data", {})
        if data.get("stream", {}).get("id") == stream_id:
            return request
    return None


async def wait_for_delivery(receiver: Receiver, stream_id: str, deadline: float) -> Request | None:
    """The stream's first delivery, or None at ``deadline`` (wall clock)."""
    with contextlib.suppress(AssertionError):  # the receiver's timeout
        await receiver.wait(
            lambda r: delivery(r, stream_id) is not None, max(0.0, deadline - time.time())
        )
    return delivery(receiver, stream_id)


# --- one run ---------------------------------------------------------------------------------


@dataclass
class Run:
    """What one run measured; times are wall-clock seconds (``time.time()``)."""

    number: int
    clip: Clip
    stream: str
    added: float
    first_capture: float | None = None
    first_pts: float | None = None
    """The first presentation time received (the first frame may come without one)."""
    swap_pts: float | None = None
    swap_capture: float | None = None
    swap_lag: float | None = None
    """How far the swap frame's capture trailed the stream's live pace (decode backlog)."""
    fake_analysed: int = 0
    first_fake_analysed: Analysed | None = None
    decided: float | None = None
    deciding_capture: float | None = None
    queued: float | None = None
    evidence_s: float | None = None
    arrival: Request | None = None
    window_frames: int = 0
    window_fakes: int = 0
    window_score: float | None = None
    analysis_latencies: list[float] = field(default_factory=list)
    real_scores: list[float] = field(default_factory=list)
    fake_scores: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def alerted(self) -> bool:
        return self.arrival is not None and self.swap_capture is not None

    def since_swap(self, moment: float | None) -> float | None:
        if moment is None or self.swap_capture is None:
            return None
        return moment - self.swap_capture

    @property
    def to_webhook(self) -> float | None:
        return self.since_swap(self.arrival.time if self.arrival else None)

    @property
    def to_event(self) -> float | None:
        return self.since_swap(self.decided)

    @property
    def delivery(self) -> float | None:
        if self.arrival is None or self.decided is None:
            return None
        return self.arrival.time - self.decided

    @property
    def event_to_queued(self) -> float | None:
        if self.queued is None or self.decided is None:
            return None
        return self.queued - self.decided

    @property
    def queued_to_arrival(self) -> float | None:
        if self.arrival is None or self.queued is None:
            return None
        return self.arrival.time - self.queued


class Bench:
    """The service, its receiver and what they saw, across runs."""

    def __init__(self, service: Service, receiver: Receiver, timeout_s: float) -> None:
        self.service = service
        self.pipeline: Pipeline = service.pipeline
        self.receiver = receiver
        self.timeout_s = timeout_s
        self.timings: dict[str, SinkTiming] = {}
        self.analysed: dict[str, list[Analysed]] = {}
        self.pipeline.sinks[:] = [TimedSink(sink, self.timings) for sink in self.pipeline.sinks]
        self.pipeline.observers.append(self._observe)

    def _observe(
        self, state: StreamState, frame: SourceFrame, faces: list[FaceObservation]
    ) -> None:
        score = max((face.score for face in faces), default=None)
        record = Analysed(frame.index, frame.pts_s, frame.capture_time, time.time(), score)
        self.analysed.setdefault(state.id, []).append(record)

    async def run(self, number: int, clip: Clip, url: str) -> Run:
        """Watch ``url`` until its webhook arrives or the run times out; then remove it."""
        name = f"alert-{number:02d}-{clip.name}"[:64]
        frames = FrameLog()
        added = time.time()
        state = await self.pipeline.add_url(url, name)
        frames.attach(state.frames)  # before the source's thread can have opened the URL
        run = Run(number, clip, state.id, added)
        # the clip plays once per connection: a reconnect starts it over, so an alert after
        # its end would not belong to this swap
        wait_s = min(clip.swap_s + self.timeout_s, clip.duration_s + END_GRACE_S)
        try:
            run.arrival = await wait_for_delivery(self.receiver, state.id, added + wait_s)
        finally:
            await self.pipeline.remove(state.id)
        self._fill(run, frames)
        return run

    def _fill(self, run: Run, log: FrameLog) -> None:
        clip = run.clip
        received = log.first_connection()
        if log.attached_late:
            run.notes.append("frames before the recorder was attached were missed")
        if not received:
            run.notes.append("no frame received")
            return
        run.first_capture = received[0].capture_time
        timed = [f for f in received if f.pts_s is not None]
        if not timed:
            run.notes.append("no frame with a pts")
            return
        # FFmpeg starts an RTSP stream's pts at 0 (the first frame comes without one); a
        # stream whose pts start elsewhere is measured from its first frame
        run.first_pts = timed[0].pts_s
        offset = run.first_pts if run.first_pts is not None and run.first_pts > PTS_SLACK_S else 0.0

        def clip_time(pts: float | None) -> float:
            return float("-inf") if pts is None else pts - offset

        tolerance = 0.25 / clip.fps
        swap = next((f for f in timed if clip_time(f.pts_s) >= clip.swap_s - tolerance), None)
        if swap is None:
            run.notes.append("the swap was never received")
            return
        run.swap_pts = clip_time(swap.pts_s)
        run.swap_capture = swap.capture_time
        pace = min(f.capture_time - clip_time(f.pts_s) for f in timed)
        run.swap_lag = swap.capture_time - run.swap_pts - pace

        end = received[-1].capture_time
        for frame in self.analysed.get(run.stream, []):
            if frame.capture_time > end:
                break
            latency = frame.analysed_at - frame.capture_time
            run.analysis_latencies.append(latency)
            fake = clip_time(frame.pts_s) >= clip.swap_s - tolerance
            if frame.score is not None:
                (run.fake_scores if fake else run.real_scores).append(frame.score)
            if fake and run.first_fake_analysed is None:
                run.first_fake_analysed = frame

        suspected = sorted(
            (t for t in self.timings.values() if t.event.stream_id == run.stream),
            key=lambda t: t.decided,
        )
        suspected = [t for t in suspected if str(t.event.type) == "deepfake.suspected"]
        if not suspected:
            run.notes.append("no deepfake.suspected event")
            run.arrival = None
            return
        timing = suspected[0]
        event = timing.event
        run.decided = timing.decided
        run.deciding_capture = event.time
        if "WebhookSink" in timing.spans:
            run.queued = timing.spans["WebhookSink"][1]
        if "EvidenceStore" in timing.spans:
            start, stop = timing.spans["EvidenceStore"]
            run.evidence_s = stop - start
        if event.window is not None:
            run.window_frames = len(event.window.scores)
            run.window_score = event.window.score
            run.window_fakes = sum(t >= run.swap_capture for t in event.window.times)
        run.fake_analysed = sum(
            1
            for frame in self.analysed.get(run.stream, [])
            if frame.score is not None and run.swap_capture <= frame.capture_time <= event.time
        )
        if event.time < run.swap_capture:
            run.notes.append("alerted before the swap (a false alert on the real part)")
            run.arrival = None
        elif event.time > end:
            run.notes.append("alerted after a reconnect: not this swap")
            run.arrival = None
        elif run.arrival is None:
            run.notes.append("deepfake.suspected, but no webhook before the deadline")
        elif run.arrival.id != f"msg_{event.id}":
            run.notes.append(f"first delivery {run.arrival.id} is not msg_{event.id}")


# --- figures ---------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def vote_floor(
    window_frames: int, window_seconds: float, min_frames: int, fps: float, enter: float
) -> tuple[int, int]:
    """Analysed fake frames an alert needs at the least: from an empty window
    (``min_frames``), and from a window full of real frames when real frames score 0 and
    fake ones 1."""
    span = min(window_frames, math.floor(window_seconds * fps) + 1)
    return min_frames, max(min_frames, math.ceil(span * enter - 1e-9))


def frames_needed(span: int, min_frames: int, enter: float, real: float, fake: float) -> int | None:
    """Fake frames scoring ``fake`` that lift a window of ``span`` frames scoring ``real``
    to ``enter``; None when they never do."""
    if fake < enter:
        return None
    if real >= enter:
        return min_frames
    return max(min_frames, math.ceil(span * (enter - real) / (fake - real) - 1e-9))


def stats_row(label: str, values: list[float]) -> str:
    if not values:
        return f"| {label} | - | - | - | - | 0 |"
    return (
        f"| {label} | {fmt(float(np.median(values)))} | {fmt(percentile(values, 95))} | "
        f"{fmt(min(values))} | {fmt(max(values))} | {len(values)} |"
    )


def run_table(runs: list[Run]) -> str:
    header = (
        "| run | clip | T s | swap frame pts | open s | swap lag s | 1st fake analysed +s "
        "| fake frames to decide | window (fakes/frames, score) | capture->event s "
        "| event->queued s | queued->webhook s | capture->webhook s | signature | note |"
    )
    lines = [header, "|" + "---|" * 15]
    for run in runs:
        first = run.first_fake_analysed
        window = (
            f"{run.window_fakes}/{run.window_frames}, {fmt(run.window_score)}"
            if run.window_score is not None
            else "-"
        )
        signature = "-" if run.arrival is None else ("ok" if all(run.arrival.verified) else "BAD")
        lines.append(
            f"| {run.number} | {run.clip.name} | {fmt(run.clip.swap_s)} | {fmt(run.swap_pts)} "
            f"| {fmt(run.first_capture - run.added if run.first_capture else None, 2)} "
            f"| {fmt(run.swap_lag)} "
            f"| {fmt(run.since_swap(first.capture_time) if first else None)} "
            f"| {run.fake_analysed if run.decided else '-'} | {window} | {fmt(run.to_event)} "
            f"| {fmt(run.event_to_queued)} | {fmt(run.queued_to_arrival)} "
            f"| {fmt(run.to_webhook) if run.alerted else 'MISS'} | {signature} "
            f"| {'; '.join(run.notes)} |"
        )
    return "\n".join(lines)


def summary_table(runs: list[Run]) -> str:
    alerted = [r for r in runs if r.alerted]

    def of(values: list[float | None]) -> list[float]:
        return [v for v in values if v is not None]

    rows = [
        ("capture -> webhook arrival", of([r.to_webhook for r in alerted])),
        ("capture -> deepfake.suspected event", of([r.to_event for r in alerted])),
        ("event -> webhook arrival (delivery)", of([r.delivery for r in alerted])),
        ("  event -> queued in the outbox (sinks)", of([r.event_to_queued for r in alerted])),
        ("  of which evidence files", of([r.evidence_s for r in alerted])),
        ("  queued -> arrival (outbox worker, POST)", of([r.queued_to_arrival for r in alerted])),
        (
            "capture -> 1st fake frame analysed",
            of(
                [
                    r.since_swap(r.first_fake_analysed.capture_time)
                    if r.first_fake_analysed
                    else None
                    for r in alerted
                ]
            ),
        ),
        (
            "capture -> deciding frame's capture (vote)",
            of([r.since_swap(r.deciding_capture) for r in alerted]),
        ),
        (
            "deciding frame's capture -> event (analysis)",
            of(
                [
                    r.decided - r.deciding_capture
                    if r.decided is not None and r.deciding_capture is not None
                    else None
                    for r in alerted
                ]
            ),
        ),
        (
            "analysed frames: capture -> analysed",
            [v for r in runs for v in r.analysis_latencies],
        ),
        (
            "stream open: added -> first frame",
            of([r.first_capture - r.added if r.first_capture else None for r in runs]),
        ),
    ]
    lines = ["| figure (s) | median | p95 | min | max | n |", "|---|---|---|---|---|---|"]
    lines += [stats_row(label, values) for label, values in rows]
    return "\n".join(lines)


# --- RTSP open probing -----------------------------------------------------------------------


def open_times(url: str, options: dict[str, str], frames: int = 60) -> tuple[float, float]:
    """Seconds from opening ``url`` to its first decoded frame, and the clip time its
    first ``frames`` frames ran ahead of their arrival (the probe's backlog)."""
    started = time.time()
    with av.open(url, options=options, timeout=(10.0, 5.0)) as container:
        arrivals = []
        for frame in container.decode(video=0):
            arrivals.append((time.time() - started, frame.time))
            if len(arrivals) >= frames:
                break
    first = arrivals[0][0]
    timed = [(t, pts) for t, pts in arrivals if pts is not None]
    ahead = max(pts - (t - first) for t, pts in timed) if timed else 0.0
    return first, ahead


# --- main ------------------------------------------------------------------------------------


@dataclass
class Report:
    clip: Clip
    runs: list[Run]
    held_out: list[Run]
    settings: dict[str, Any]
    probing: dict[str, tuple[float, float]]
    stored_alerts: int = 0


async def fill_evidence(folder: Path, count: int, clip: Clip) -> None:
    """``count`` stored alerts in ``folder``, as a service that has been alerting for a
    while keeps them (up to ``evidence.max_alerts``, 1000 by default): one written by
    the service's own evidence store from a frame of the clip, then copied under fresh
    ids, all older than the alerts to come."""
    from fakewatch.engines.crop import Box
    from fakewatch.stream.analysis.events import Event, EventType, Evidence, WindowSummary
    from fakewatch.stream.sinks.evidence import EvidenceStore

    if count <= 0:
        return
    frame = next(_frames(clip.path))
    height, width = frame.shape[:2]
    side = min(height, width) // 2
    x0, y0 = (width - side) // 2, (height - side) // 2
    box = Box(float(x0), float(y0), float(x0 + side), float(y0 + side))
    crop = np.ascontiguousarray(frame[y0 : y0 + side, x0 : x0 + side])
    mask = np.zeros((side, side), np.float32)
    now = time.time()
    evidence = Evidence(frame, mask, crop, box, box, 0.9, now, "t1")
    window = WindowSummary(0.9, (0.9,) * 8, tuple(now - 0.2 * i for i in range(8)), 0.86, 0.834)
    seed = Event(
        EventType.SUSPECTED,
        "stored",
        "stored",
        "rtsp://127.0.0.1/stored",
        detail="stored before the runs",
        track="t1",
        window=window,
        evidence=evidence,
    )
    await EvidenceStore(folder).emit(seed)
    document = json.loads((folder / seed.id / "event.json").read_text())
    oldest = now - 3600.0
    os.utime(folder / seed.id, (oldest, oldest))
    for number in range(1, count):
        copy_id = uuid.uuid4().hex
        target = folder / copy_id
        shutil.copytree(folder / seed.id, target)
        (target / "event.json").write_text(json.dumps({**document, "id": copy_id}, indent=1))
        os.utime(target, (oldest + number / 1000, oldest + number / 1000))


async def measure(
    clip: Clip,
    urls: dict[str, str],
    runs: int,
    held_out: list[Clip],
    timeout_s: float,
    stored_alerts: int = 0,
) -> Report:
    from tests.support.service import serving

    with tempfile.TemporaryDirectory(prefix="fakewatch-alert-latency-") as state:
        await fill_evidence(Path(state) / "evidence", stored_alerts, clip)
        async with receiving() as receiver:
            hook = endpoint(receiver, "receiver", events=WEBHOOK_EVENTS)
            overrides: dict[str, Any] = {"webhooks.endpoints": [hook]}
            async with serving(Path(state), **overrides) as service:
                report = await measure_with(
                    service, receiver, clip, urls, runs, held_out, timeout_s
                )
    report.stored_alerts = stored_alerts
    return report


async def measure_with(
    service: Service,
    receiver: Receiver,
    clip: Clip,
    urls: dict[str, str],
    runs: int,
    held_out: list[Clip],
    timeout_s: float,
) -> Report:
    """The runs on a started service and receiver."""
    bench = Bench(service, receiver, timeout_s)
    config = service.pipeline.config
    thresholds = service.pipeline.thresholds
    segmenter = service.pipeline.segmenter
    engine = getattr(getattr(segmenter, "engine", None), "info", None)
    settings = {
        "engine": getattr(engine, "label", type(segmenter).__name__),
        "analysis": config.analysis,
        "vote": config.vote,
        "enter": thresholds.enter,
        "exit": thresholds.exit,
        "calibrated": thresholds.calibrated,
        "webhooks": config.webhooks,
        "sources": config.sources,
    }
    done: list[Run] = []
    for number in range(1, runs + 1):
        run = await bench.run(number, clip, urls[clip.name])
        done.append(run)
        print(progress(run), flush=True)
    others: list[Run] = []
    for number, other in enumerate(held_out, start=1):
        run = await bench.run(number, other, urls[other.name])
        others.append(run)
        print(progress(run), flush=True)
    return Report(clip, done, others, settings, {})


def progress(run: Run) -> str:
    if run.alerted:
        return (
            f"run {run.number} {run.clip.name}: webhook {fmt(run.to_webhook)} s after the swap "
            f"frame's capture (event {fmt(run.to_event)} s)"
        )
    return f"run {run.number} {run.clip.name}: no alert ({'; '.join(run.notes) or 'timed out'})"


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


def where_the_time_went(alerted: list[Run], report: Report) -> list[str]:
    """The median alert split into its parts, and what each part could give back."""
    total = _median([r.to_webhook for r in alerted])
    if total is None or total <= 0:
        return []
    vote = _median([r.since_swap(r.deciding_capture) for r in alerted])
    analysis = _median(
        [
            r.decided - r.deciding_capture
            if r.decided is not None and r.deciding_capture is not None
            else None
            for r in alerted
        ]
    )
    sinks = _median([r.event_to_queued for r in alerted])
    evidence = _median([r.evidence_s for r in alerted])
    post = _median([r.queued_to_arrival for r in alerted])

    def part(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f} s ({value / total:.0%})"

    lines = [
        f"where the median alert's {total:.3f} s went: vote (swap capture -> deciding "
        f"frame's capture) {part(vote)}; analysis of the deciding frame {part(analysis)}; "
        f"event sinks before the outbox write {part(sinks)}, of which the evidence files "
        f"{part(evidence)}; outbox worker and HTTP POST {part(post)} (medians of each part: "
        "they need not add up)",
        f"webhook sender: woken by the sink, no poll interval: queued -> arrival "
        f"{'-' if post is None else f'{post * 1000:.1f} ms'} median, nothing to gain there",
        "evidence files (frame.jpg, crop.jpg, mask.png, event.json; retention runs after, in "
        "the background) are written before the webhook is queued, so their time is on the "
        "alert's path: "
        f"{'-' if evidence is None else f'{evidence * 1000:.0f} ms'} median with "
        f"{report.stored_alerts} alerts stored before the runs",
    ]
    probes = list(report.probing.values())
    lags = [r.swap_lag for r in report.runs if r.swap_lag is not None]
    if len(probes) == 2 and lags:
        (slow, backlog), (fast, _) = probes
        lines.append(
            f"RTSP probing: {slow:.2f} s from open to the first frame with FFmpeg's default "
            f"probe, {fast:.2f} s capped; it costs a new stream {slow - fast:.2f} s before "
            f"its first frame and hands {backlog:.2f} s of clip over at once, but the swap "
            f"frames were captured at most {max(lags):.3f} s behind the live pace: it does "
            "not delay an alert mid-stream"
        )
    return lines


def describe(report: Report, target_s: float, started: float) -> str:
    settings = report.settings
    analysis, vote = settings["analysis"], settings["vote"]
    hooks, sources = settings["webhooks"], settings["sources"]
    runs, clip = report.runs, report.clip
    alerted = [r for r in runs if r.alerted]
    out = [
        "## Alert latency",
        "",
        f"machine: {machine(load=True)}",
        f"source: {clip.origin}",
    ]
    if clip.in_sample:
        out.append(
            "note: this pair is in-sample for the shipped model (it was trained beside "
            "it): the figures measure the service's latency, not detection accuracy"
        )
    out += [
        f"swap at T = {clip.swap_s:.3f} s of the clip; the reference is the capture of the "
        "first frame received with pts >= T (every frame the source delivers is recorded, "
        "sampled or not; the decoder skips non-reference frames of a stream at 3x the "
        "analysis rate, so that frame may come a frame after T: column 'swap frame pts')",
        f"evidence store before the runs: {report.stored_alerts} stored alerts "
        "(--stored-alerts; a long-running service keeps up to evidence.max_alerts, 1000)",
        f"settings (defaults): engine {settings['engine']}; analysis.fps {analysis.fps:g}, "
        f"detect_every {analysis.detect_every}; vote window_frames {vote.window_frames}, "
        f"window_seconds {vote.window_seconds:g}, min_frames {vote.min_frames}, enter "
        f"{settings['enter']:.3f} / exit {settings['exit']:.3f} "
        f"({'calibrated' if settings['calibrated'] else 'uncalibrated'}), cooldown "
        f"{vote.cooldown_s:g} s; webhooks initial_backoff_s {hooks.initial_backoff_s:g}, "
        f"max_in_flight {hooks.max_in_flight}; sources rtsp_transport "
        f"{sources.rtsp_transport}",
        "",
        run_table([*runs, *report.held_out]),
        "",
        summary_table(runs),
        "",
    ]
    if len(alerted) < 20:
        out.append(f"p95 is the nearest rank: with {len(alerted)} alerted runs it is the maximum")

    empty, full = vote_floor(
        vote.window_frames, vote.window_seconds, vote.min_frames, analysis.fps, settings["enter"]
    )
    interval = 1 / analysis.fps
    span = min(vote.window_frames, math.floor(vote.window_seconds * analysis.fps) + 1)
    out.append(
        f"vote floor: {empty} analysed frames with a face from an empty window "
        f"({(empty - 1) * interval:.2f} s at {analysis.fps:g} fps); from a window of {span} "
        f"real frames, {full} fake frames even if fakes score 1.0 and reals 0.0 "
        f"(mean >= {settings['enter']:.3f}): {(full - 1) * interval:.2f} s after the first "
        f"analysed fake frame, which comes 0 to {interval:.2f} s after the swap, plus one "
        "frame's analysis"
    )
    reals = [s for r in runs for s in r.real_scores]
    fakes = [s for r in runs for s in r.fake_scores]
    if reals and fakes:
        real, fake = float(np.median(reals)), float(np.median(fakes))
        needed = frames_needed(span, vote.min_frames, settings["enter"], real, fake)
        expected = (
            "never" if needed is None else f"{needed} frames, {(needed - 1) * interval:.2f} s"
        )
        out.append(
            f"with the measured median scores (real {real:.3f}, fake {fake:.3f}): {expected}"
        )
    lags = [r.swap_lag for r in runs if r.swap_lag is not None]
    firsts = [r.first_pts for r in runs if r.first_pts is not None]
    if firsts:
        out.append(
            f"pts through RTSP: the first pts received is {min(firsts):.3f} to "
            f"{max(firsts):.3f} s (the first frame comes without one), so pts are clip time; "
            f"swap frames were captured at most {max(lags or [0.0]):.3f} s behind the live "
            "pace (the earliest capture of any frame less its pts)"
        )
    for name, (first, ahead) in report.probing.items():
        out.append(
            f"RTSP open ({name}): first frame {first:.2f} s after av.open, then "
            f"{ahead:.2f} s of clip handed over at once"
        )
    out += where_the_time_went(alerted, report)
    if report.held_out:
        caught = [r for r in report.held_out if r.alerted]
        out.append(
            f"held-out Ewon_Spice pairs (a face model the shipped model never saw): "
            f"{len(caught)}/{len(report.held_out)} alerted"
            + (
                f", capture->webhook {', '.join(fmt(r.to_webhook, 2) for r in caught)} s"
                if caught
                else ""
            )
        )
    out.append(f"wall time {time.time() - started:.0f} s")
    out.append("")
    webhook = [r.to_webhook for r in alerted if r.to_webhook is not None]
    events = [r.to_event for r in alerted if r.to_event is not None]
    delivery = [r.delivery for r in alerted if r.delivery is not None]
    out += [
        f"alerted {len(alerted)}/{len(runs)} runs (misses {len(runs) - len(alerted)})",
        f"event p95 {fmt(percentile(events, 95), 2)} s (vote floor "
        f"{(full - 1) * interval:.2f}-{full * interval:.2f} s)",
        f"webhook delivery p95 {fmt(percentile(delivery, 95), 3)} s "
        f"(of alert p95 {fmt(percentile(webhook, 95), 2)} s)",
        f"alert median {fmt(float(np.median(webhook)) if webhook else None, 2)} s "
        f"(target {target_s:g} s)",
        f"alert p95 {fmt(percentile(webhook, 95), 2)} s (target {target_s:g} s)",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of the main pair")
    parser.add_argument(
        "--source",
        choices=("auto", "live-swap", "demo"),
        default="auto",
        help="the live-swap pair (auto: when ../shared/data has it) or the demo pair",
    )
    parser.add_argument(
        "--held-out", action="store_true", help="also play the Ewon_Spice pairs once each"
    )
    parser.add_argument(
        "--lead", type=float, default=8.0, help="seconds of real footage before the swap (max)"
    )
    parser.add_argument(
        "--timeout", type=float, default=15.0, help="seconds after the swap a run waits"
    )
    parser.add_argument("--target", type=float, default=2.0, help="alert latency target (s)")
    parser.add_argument(
        "--stored-alerts",
        type=int,
        default=0,
        help="alerts in the evidence store before the runs (the retention pass after each "
        "alert reads them all)",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="encoded clips")
    args = parser.parse_args(argv)
    started = time.time()
    from tests.support.rtsp import (
        FAST_OPEN_OPTIONS,
        RTSP_OPTIONS,
        RtspServer,
        rtsp_server_unavailable,
    )

    if (reason := rtsp_server_unavailable()) is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    have_pairs = (LIVE_SWAP / "real" / f"{MAIN_PAIR}.mp4").is_file()
    if args.source == "live-swap" and not have_pairs:
        print(f"no development samples at {LIVE_SWAP}", file=sys.stderr)
        return 2
    use_pairs = have_pairs and args.source != "demo"
    print(f"machine: {machine(load=True)}", flush=True)
    if use_pairs:
        clip = live_swap_clip(MAIN_PAIR, args.cache, args.lead, in_sample=True)
    else:
        print(f"no development samples at {LIVE_SWAP}: using the demo pair", flush=True)
        clip = demo_clip()
    held_out = []
    if args.held_out and not have_pairs:
        print(f"--held-out: no development samples at {LIVE_SWAP}", flush=True)
    if args.held_out and have_pairs:
        held_out = [
            live_swap_clip(name, args.cache, args.lead, in_sample=False) for name in HELD_OUT_PAIRS
        ]
    print(f"source: {clip.origin}", flush=True)
    with contextlib.ExitStack() as stack:
        urls = {}
        for each in (clip, *held_out):
            server = stack.enter_context(RtspServer(each.path))
            urls[each.name] = server.start().url
        probing = {
            "default probing, as the service opens": open_times(urls[clip.name], RTSP_OPTIONS),
            "probing capped": open_times(urls[clip.name], FAST_OPEN_OPTIONS),
        }
        report = asyncio.run(
            measure(clip, urls, args.runs, held_out, args.timeout, args.stored_alerts)
        )
        report.probing = probing
    print(describe(report, args.target, started), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
