"""Pipeline capacity: how many live 5-fps streams one machine watches, against a naive
pipeline measured in the same run.

Usage (from the repository root; about 25 minutes with the 10-minute memory run):

    .venv/bin/python benchmarks/capacity.py [--out docs/benchmarks] [--soak-minutes 10]

What runs:

* **The streams.** A 720p H.264 clip at 30 fps, one face, encoded like a camera stream
  (main profile, no B-frames, a keyframe every 2 s, 2.5 Mbit/s), made once from the demo
  clip and cached. A real gst-rtsp-server (``tests/stream/rtsp_server.py``) serves it;
  every client gets its own session from the clip's first frame, paced in real time.
* **fakewatch**: the real service in this process (``tests.support.service.serving``)
  with its defaults (5 fps analysed, detection every 3rd analysed frame, the shared
  crop batcher) and the engine at ``--precision`` (OpenVINO bf16 by default).
* **naive**: one thread per stream that decodes and converts every frame, and for each
  frame 0.2 s after the last analysed one detects faces, crops, and runs the same engine
  bundle at batch 1 in torch eager, then votes.

For each number of streams, after ``--warm-up-s``, the script measures for
``--measure-s``:

* end-to-end latency of every analysed frame from its capture to the decision. The
  capture time is taken from the frame's presentation time (the server sends it in real
  time), offset per stream by the smallest (receipt - pts) seen, so a decoder that falls
  behind counts; the service's own figure (from the frame's receipt) is shown too;
* the share of sampled frames lost: 1 - analysed / (5 fps x streams x seconds), which
  counts frames dropped under load and analysis that could not keep the rate;
* CPU of this process, of the RTSP server and of the whole machine.

A number of streams is sustained when the p99 latency is at most ``--p99-ms`` (250) and
under 1% of sampled frames are lost. The streams are raised until one fails, then the gap
is bisected. The stage breakdown multiplies the CPU cost of each operation, measured in
isolation in the same run, by how often it ran at the capacity point. The memory run
adds streams one by one up to the capacity (RSS per stream), then keeps them for
``--soak-minutes`` (RSS over time).

Ratios (fakewatch over naive) are printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks.* and tests.* from the checkout this sits in
    sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402
from tests.support.measure import percentile, rss_bytes  # noqa: E402

ANALYSIS_FPS = 5.0
CLIP_FPS = 30
CLIP_SIZE = (1280, 720)


# --- measuring -------------------------------------------------------------------------


def process_cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads); this one by default."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values[:8]) - idle) / tick, sum(values[:8]) / tick


THREAD_GROUPS = (
    ("source ", "decode: demux and decode (source threads)"),
    ("faces-", "faces: RGB conversion, detection, tracking, crops (face thread)"),
    ("engine-", "infer: batcher's engine calls (engine thread)"),
    ("MainThread", "event loop: sampling, vote, events, API"),
    ("naive", "naive stream threads"),
    ("", "other Python threads"),
)
NATIVE = "native worker threads (OpenVINO, FFmpeg, ONNX Runtime)"


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds of this process's threads, summed by :data:`THREAD_GROUPS` (Python
    threads by name) and :data:`NATIVE` (threads Python did not start)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        name = names.get(int(task.name))
        group = NATIVE
        if name is not None:
            group = next(label for prefix, label in THREAD_GROUPS if name.startswith(prefix))
        totals[group] = totals.get(group, 0.0) + seconds
    return totals


class CpuMeter:
    """CPU use over an interval: this process, the RTSP server, the machine."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.cores = len(os.sched_getaffinity(0))
        self.start()

    def start(self) -> None:
        self._wall = time.monotonic()
        self._own = process_cpu_s()
        self._server = process_cpu_s(self.server_pid)
        self._machine = machine_busy_s()
        self._threads = thread_cpu_s()

    def threads(self) -> dict[str, float]:
        """CPU seconds by thread group since :meth:`start` (threads that ended are lost)."""
        now = thread_cpu_s()
        return {k: v - self._threads.get(k, 0.0) for k, v in now.items()}

    def read(self) -> dict[str, float]:
        """Seconds of CPU and the share of all cores used since :meth:`start`."""
        wall = time.monotonic() - self._wall
        own = process_cpu_s() - self._own
        server = process_cpu_s(self.server_pid) - self._server
        busy, total = machine_busy_s()
        machine = (busy - self._machine[0]) / max(1e-9, total - self._machine[1])
        return {
            "wall_s": wall,
            "own_cpu_s": own,
            "own": own / wall / self.cores,
            "server": server / wall / self.cores,
            "machine": machine,
        }


@dataclass
class Decision:
    """One analysed frame: its stream, when it was decided, its pts and receipt time."""

    stream: str
    decided: float
    pts_s: float | None
    received: float


@dataclass
class Point:
    """What one number of concurrent streams measured."""

    pipeline: str
    streams: int
    seconds: float
    decisions: list[Decision]
    cpu: dict[str, float]
    rss: int
    p99_limit_s: float
    counts: dict[str, float] = field(default_factory=dict)
    """Operation counts in the measured interval (fakewatch only), for the breakdown."""
    drops: dict[str, float] = field(default_factory=dict)
    threads: dict[str, float] = field(default_factory=dict)
    """CPU seconds by thread group in the measured interval."""

    def latencies(self, from_pts: bool = True) -> list[float]:
        """Capture-to-decision seconds of every analysed frame (see the module doc)."""
        if not from_pts:
            return [d.decided - d.received for d in self.decisions]
        offsets: dict[str, float] = {}
        for d in self.decisions:
            if d.pts_s is not None:
                offset = d.received - d.pts_s
                offsets[d.stream] = min(offsets.get(d.stream, offset), offset)
        return [
            d.decided - (offsets[d.stream] + d.pts_s if d.pts_s is not None else d.received)
            for d in self.decisions
        ]

    @property
    def expected(self) -> float:
        """Frames that should have been analysed: 5 a second over each stream's span
        of presentation times in the interval (a stream that analysed nothing, over the
        whole interval)."""
        spans: dict[str, list[float]] = {}
        for d in self.decisions:
            spans.setdefault(d.stream, []).append(d.pts_s if d.pts_s is not None else d.decided)
        expected = sum(round((max(t) - min(t)) * ANALYSIS_FPS) + 1 for t in spans.values())
        return expected + (self.streams - len(spans)) * ANALYSIS_FPS * self.seconds

    @property
    def lost(self) -> float:
        """Share of the sampled frames (5 fps per stream) not analysed: dropped under
        load, or never sampled because analysis could not keep the rate."""
        return max(0.0, 1 - len(self.decisions) / self.expected) if self.expected else 1.0

    @property
    def p99(self) -> float:
        return percentile(self.latencies(), 99)

    @property
    def sustained(self) -> bool:
        return self.p99 <= self.p99_limit_s and self.lost < 0.01

    def row(self) -> str:
        own = self.latencies()
        service = self.latencies(from_pts=False)
        return (
            f"| {self.pipeline} | {self.streams} | {len(self.decisions) / self.seconds:.1f} "
            f"| {self.lost:.1%} | {percentile(own, 50) * 1000:.0f} | {self.p99 * 1000:.0f} "
            f"| {percentile(service, 99) * 1000:.0f} | {self.cpu['own']:.0%} "
            f"| {self.cpu['server']:.0%} | {self.cpu['machine']:.0%} "
            f"| {self.rss / 2**20:.0f} | {'yes' if self.sustained else 'no'} |"
        )


TABLE_HEADER = (
    "| pipeline | streams | analysed fps | sampled frames lost | p50 ms | p99 ms "
    "| p99 ms from receipt | CPU service | CPU RTSP server | CPU machine | RSS MiB | sustained |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


# --- the clip and the server -----------------------------------------------------------


def make_clip(cache: Path, seconds: float) -> Path:
    """The 720p30 camera-like H.264 clip (see the module doc), made once."""
    import av
    import cv2

    from fakewatch.training.demo_clip import fetch_demo_clip

    target = cache / f"capacity-720p30-{seconds:.0f}s.mp4"
    if target.is_file():
        return target
    source_path = fetch_demo_clip(cache)
    with av.open(str(source_path)) as source:
        stream = source.streams.video[0]
        source_fps = float(stream.average_rate or 24)
        frames = [f.to_ndarray(format="rgb24") for f in source.decode(stream)]
    print(f"encoding {target.name} from {source_path.name} ...", flush=True)
    partial = target.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as output:
        video = output.add_stream(
            "libx264",
            rate=CLIP_FPS,
            options={"preset": "veryfast", "profile": "main", "bf": "0", "g": "60"},
        )
        video.width, video.height = CLIP_SIZE
        video.pix_fmt = "yuv420p"
        video.bit_rate = 2_500_000
        video.codec_context.time_base = Fraction(1, CLIP_FPS)
        for i in range(round(seconds * CLIP_FPS)):
            # play the source forwards then backwards, so the loop has no jump cut
            k = int(i / CLIP_FPS * source_fps) % (2 * len(frames) - 2)
            k = k if k < len(frames) else 2 * len(frames) - 2 - k
            image = cv2.resize(frames[k], CLIP_SIZE, interpolation=cv2.INTER_LINEAR)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
    partial.rename(target)
    return target


# --- the two pipelines -----------------------------------------------------------------


class Recorder:
    """Collects decisions from any thread; :meth:`take` returns those since the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decisions: list[Decision] = []

    def add(self, decision: Decision) -> None:
        with self._lock:
            self._decisions.append(decision)

    def take(self) -> list[Decision]:
        with self._lock:
            taken, self._decisions = self._decisions, []
        return taken


def scrape(text: str) -> dict[str, float]:
    """The pipeline's counters summed over labels, plus per-stage counts and drops."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels = sample.name, sample.labels
            if name == "fakewatch_stage_seconds_count":
                key = f"stage:{labels['stage']}"
            elif name == "fakewatch_stage_seconds_sum":
                key = f"stage_s:{labels['stage']}"
            elif name == "fakewatch_frames_dropped_total":
                key = f"drop:{labels['reason']}"
            elif name in (
                "fakewatch_frames_received_total",
                "fakewatch_faces_analysed_total",
                "fakewatch_inference_batch_size_count",
                "fakewatch_inference_batch_size_sum",
            ):
                key = name
            else:
                continue
            found[key] = found.get(key, 0.0) + sample.value
    return found


class Fakewatch:
    """The service with its defaults, the engine at ``precision``."""

    name = "fakewatch"

    def __init__(self, precision: str, settings: dict[str, str]) -> None:
        self.precision = precision
        self.settings = settings
        self.recorder = Recorder()
        self._service: Any = None

    @contextlib.asynccontextmanager
    async def up(self) -> AsyncIterator[Fakewatch]:
        from tests.support.service import serving

        async with serving(
            **{"engine.precision": self.precision, "limits.max_streams": 256, **self.settings}
        ) as service:
            self._service = service

            def observe(state: Any, frame: Any, faces: Any) -> None:
                self.recorder.add(
                    Decision(state.name, time.time(), frame.pts_s, frame.capture_time)
                )

            service.pipeline.observers.append(observe)
            yield self

    async def start(self, url: str, count: int) -> list[str]:
        ids = []
        for i in range(count):
            ids.append(await self._service.add(url, f"s{count}-{i}"))
        return ids

    async def stop(self, ids: list[str]) -> None:
        for stream_id in ids:
            async with self._service.http.delete(f"/api/streams/{stream_id}") as response:
                assert response.status in (200, 204), await response.text()

    async def counters(self) -> dict[str, float]:
        async with self._service.http.get("/metrics") as response:
            return scrape(await response.text())


class Naive:
    """Decode every frame, detect on every analysed frame, batch 1, torch eager."""

    name = "naive"

    def __init__(self) -> None:
        self.recorder = Recorder()
        self._threads: dict[str, tuple[threading.Thread, threading.Event]] = {}

    @contextlib.asynccontextmanager
    async def up(self) -> AsyncIterator[Naive]:
        from fakewatch.engines.bundle import EngineBundle
        from fakewatch.engines.defaults import default_bundle_path
        from fakewatch.engines.faces import default_face_detector
        from fakewatch.engines.runtimes import open_engine

        bundle = EngineBundle.load(default_bundle_path())
        self.engine = open_engine(bundle, "torch", "cpu", "f32", None)
        self.detector = default_face_detector()
        self.thresholds = bundle.manifest.thresholds
        try:
            yield self
        finally:
            await self.stop(list(self._threads))

    async def start(self, url: str, count: int) -> list[str]:
        ids = []
        for i in range(count):
            name = f"naive{count}-{i}"
            stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(url, name, stop), daemon=True)
            thread.start()
            self._threads[name] = (thread, stop)
            ids.append(name)
        return ids

    async def stop(self, ids: list[str]) -> None:
        for name in ids:
            thread, stop = self._threads.pop(name)
            stop.set()
            await asyncio.to_thread(thread.join, 15)

    async def counters(self) -> dict[str, float]:
        return {}

    def _run(self, url: str, name: str, stop: threading.Event) -> None:
        import av

        from fakewatch.engines.crop import crop_face
        from fakewatch.engines.scoring import score_masks
        from fakewatch.stream.analysis.vote import SlidingWindowVote

        spec = self.engine.bundle.spec
        scoring = self.engine.bundle.manifest.scoring
        vote: SlidingWindowVote[None] = SlidingWindowVote(
            enter=self.thresholds["suspect"].value,
            exit=self.thresholds["clear"].value,
            window_frames=8,
            window_seconds=4.0,
            min_frames=5,
            cooldown_s=10.0,
        )
        with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(10, 5)) as container:
            next_pts: float | None = None
            for frame in container.decode(video=0):
                if stop.is_set():
                    return
                image = frame.to_ndarray(format="rgb24")
                received = time.time()
                if frame.time is None:  # RTSP's first frame may have no timestamp
                    continue
                pts = float(frame.time)
                if next_pts is not None and pts < next_pts:
                    continue
                next_pts = (pts if next_pts is None else next_pts) + 1 / ANALYSIS_FPS
                scores = []
                for face in self.detector.detect(image)[:4]:
                    crop = crop_face(image, face.box, spec.input_size, spec.crop_margin)
                    masks = self.engine.infer(crop.image[None])
                    score, _ = score_masks(
                        masks, spec.crop_margin, scoring.top_fraction, scoring.area_threshold
                    )
                    scores.append(float(score[0]))
                if scores:
                    vote.add(received, max(scores), None)
                else:
                    vote.tick(received)
                self.recorder.add(Decision(name, time.time(), pts, received))


Pipeline = Fakewatch | Naive


async def measure(
    pipeline: Pipeline,
    url: str,
    streams: int,
    server_pid: int,
    warm_up_s: float,
    measure_s: float,
    p99_limit_s: float,
) -> Point:
    """Run ``streams`` streams through ``pipeline`` and measure them (module doc)."""
    ids = await pipeline.start(url, streams)
    try:
        await asyncio.sleep(warm_up_s)
        pipeline.recorder.take()
        before = await pipeline.counters()
        cpu = CpuMeter(server_pid)
        await asyncio.sleep(measure_s)
        usage = cpu.read()
        threads = cpu.threads()
        decisions = pipeline.recorder.take()
        after = await pipeline.counters()
        rss = rss_bytes()
    finally:
        await pipeline.stop(ids)
    counts = {key: after[key] - before.get(key, 0.0) for key in after}
    point = Point(
        pipeline.name,
        streams,
        usage["wall_s"],
        decisions,
        usage,
        rss,
        p99_limit_s,
        counts={k: v for k, v in counts.items() if not k.startswith("drop:")},
        drops={k[5:]: v for k, v in counts.items() if k.startswith("drop:") and v},
        threads=threads,
    )
    print(point.row(), flush=True)
    return point


async def find_capacity(
    pipeline: Pipeline,
    candidates: list[int],
    run: Callable[[Pipeline, int], Any],
) -> tuple[int, list[Point]]:
    """Raise the streams through ``candidates`` until one fails, then bisect the gap."""
    points: list[Point] = []
    best, failed = 0, None
    for count in candidates:
        point = await run(pipeline, count)
        points.append(point)
        if not point.sustained:
            failed = count
            break
        best = count
    while failed is not None and failed - best > 1:
        count = (best + failed) // 2
        point = await run(pipeline, count)
        points.append(point)
        if point.sustained:
            best = count
        else:
            failed = count
    return best, sorted(points, key=lambda p: p.streams)


# --- the stage breakdown ---------------------------------------------------------------


def cpu_ms(call: Callable[[int], object], repeat: int) -> float:
    """Mean CPU milliseconds (all threads of this process) of ``call(i)``."""
    call(0)
    started = time.process_time()
    for i in range(repeat):
        call(i)
    return (time.process_time() - started) / repeat * 1000


def unit_costs(
    clip: Path, precision: str, batch: int, bundle_path: Path | None = None
) -> dict[str, float]:
    """CPU ms of each operation, measured one at a time on the clip's frames."""
    import av

    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.crop import crop_face
    from fakewatch.engines.defaults import default_bundle_path
    from fakewatch.engines.faces import default_face_detector
    from fakewatch.engines.runtimes import open_engine
    from fakewatch.stream.analysis.tracker import FaceTracker
    from fakewatch.stream.analysis.vote import SlidingWindowVote

    costs: dict[str, float] = {}
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        packets = [p for _, p in zip(range(300), container.demux(stream), strict=False)]
        extradata = stream.codec_context.extradata
    pictures: list[Any] = []

    def decode(_: int, keep: int = 60) -> None:
        codec = av.CodecContext.create("h264", "r")
        codec.extradata = extradata
        for packet in [*packets, None]:
            for picture in codec.decode(packet):
                if len(pictures) < keep:
                    pictures.append(picture)

    costs["decode"] = cpu_ms(decode, 2) / len(packets)
    images = [picture.to_ndarray(format="rgb24") for picture in pictures]
    costs["convert"] = cpu_ms(lambda i: pictures[i % len(pictures)].to_ndarray(format="rgb24"), 100)
    detector = default_face_detector()
    costs["detect"] = cpu_ms(lambda i: detector.detect(images[i % len(images)]), 30)
    face = detector.detect(images[0])[0]
    bundle = EngineBundle.load(bundle_path or default_bundle_path())
    spec = bundle.spec
    costs["crop"] = cpu_ms(
        lambda i: crop_face(images[i % len(images)], face.box, spec.input_size, spec.crop_margin),
        100,
    )
    tracker = FaceTracker(0.3, max_missed=2)
    costs["track"] = cpu_ms(lambda i: tracker.update([face]), 1000)
    crops = np.stack(
        [crop_face(images[0], face.box, spec.input_size, spec.crop_margin).image] * batch
    )
    engine = open_engine(bundle, "openvino", "cpu", precision, None)
    costs["infer"] = cpu_ms(lambda i: engine.infer(crops), 20) / batch
    torch_engine = open_engine(bundle, "torch", "cpu", "f32", None)
    costs["infer_torch_b1"] = cpu_ms(lambda i: torch_engine.infer(crops[:1]), 10)
    vote: SlidingWindowVote[None] = SlidingWindowVote(0.86, 0.83, 8, 4.0, 5, 10.0)
    costs["vote"] = cpu_ms(lambda i: vote.add(i * 0.2, 0.5, None), 1000)
    return costs


def breakdown(point: Point, costs: dict[str, float]) -> list[tuple[str, float, str]]:
    """(stage, CPU seconds, how it was measured) at ``point`` (fakewatch).

    Each thread's CPU is measured; the face thread's is split between RGB conversion,
    detection and tracking with crops in proportion to each operation's cost measured
    alone times how often it ran (the pipeline's counters)."""
    counts, threads = point.counts, point.threads
    analysed = len(point.decisions)
    modelled = {
        "convert": analysed * costs["convert"],
        "detect": counts.get("stage:detect", 0.0) * costs["detect"],
        "track": counts.get("stage:track", 0.0) * costs["track"]
        + counts.get("fakewatch_faces_analysed_total", 0.0) * costs["crop"],
    }
    faces = threads.get(THREAD_GROUPS[1][1], 0.0)
    share = {k: v / (sum(modelled.values()) or 1.0) * faces for k, v in modelled.items()}
    engine = threads.get(THREAD_GROUPS[2][1], 0.0) + threads.get(NATIVE, 0.0)
    loop = threads.get(THREAD_GROUPS[3][1], 0.0)
    accounted = {THREAD_GROUPS[i][1] for i in (0, 1, 2, 3)} | {NATIVE}
    other = sum(v for k, v in threads.items() if k not in accounted)
    return [
        (
            "decode",
            threads.get(THREAD_GROUPS[0][1], 0.0) + share["convert"],
            "source threads (demux, decode), and RGB conversion of sampled frames",
        ),
        ("detect", share["detect"], "face thread, detection calls"),
        ("track", share["track"], "face thread, tracker updates and crops"),
        ("infer", engine, "engine thread and the runtime's own worker threads"),
        ("vote", loop, "event loop: sampling, vote, events, metrics, API"),
        ("other", other, "other Python threads"),
    ]


def stage_table(point: Point, costs: dict[str, float]) -> list[str]:
    """Markdown rows: the CPU of each stage at ``point`` and its share."""
    stages = breakdown(point, costs)
    total = sum(seconds for _, seconds, _ in stages)
    streams, wall = point.streams, point.seconds
    rows = [
        f"| {name} | {seconds:.1f} | {seconds / total:.0%} "
        f"| {seconds / wall / streams * 1000:.0f} | {how} |"
        for name, seconds, how in stages
    ]
    rows.append(
        f"| all | {total:.1f} | 100% | {total / wall / streams * 1000:.0f} "
        f"| the process's threads (process CPU {point.cpu['own_cpu_s']:.1f} s) |"
    )
    return rows


# --- memory ----------------------------------------------------------------------------


async def memory_run(
    pipeline: Fakewatch, url: str, streams: int, minutes: float
) -> tuple[list[tuple[int, int]], list[tuple[float, int]]]:
    """RSS after adding each stream (3 s apart), then every 10 s for ``minutes``."""
    ids: list[str] = []
    per_stream = [(0, rss_bytes())]
    try:
        for i in range(streams):
            ids.append(await pipeline._service.add(url, f"memory-{i}"))
            await asyncio.sleep(3.0)
            per_stream.append((i + 1, rss_bytes()))
        started = time.monotonic()
        over_time = [(0.0, rss_bytes())]
        while (elapsed := time.monotonic() - started) < minutes * 60:
            await asyncio.sleep(min(10.0, minutes * 60 - elapsed))
            over_time.append((time.monotonic() - started, rss_bytes()))
            if len(over_time) % 6 == 0:
                print(
                    f"  memory {over_time[-1][0] / 60:.0f} min: "
                    f"RSS {over_time[-1][1] / 2**20:.0f} MiB"
                )
    finally:
        await pipeline.stop(ids)
    return per_stream, over_time


# --- report ----------------------------------------------------------------------------


def plot(points: list[Point], limit_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, style in (("fakewatch", "o-"), ("naive", "s--")):
        mine = sorted((p for p in points if p.pipeline == name), key=lambda p: p.streams)
        if not mine:
            continue
        x = [p.streams for p in mine]
        latency.plot(x, [p.p99 * 1000 for p in mine], style, label=name)
        cpu.plot(x, [p.cpu["machine"] * 100 for p in mine], style, label=f"{name}: machine")
        cpu.plot(x, [p.cpu["own"] * 100 for p in mine], style, alpha=0.5, label=f"{name}: service")
    latency.axhline(limit_s * 1000, color="red", lw=1, label=f"p99 limit {limit_s * 1000:.0f} ms")
    latency.set(
        xlabel="concurrent 5-fps 720p streams", ylabel="p99 capture-to-decision (ms)", yscale="log"
    )
    cpu.set(xlabel="concurrent 5-fps 720p streams", ylabel="CPU (% of all cores)", ylim=(0, 105))
    for axes in (latency, cpu):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def streams_list(text: str) -> list[int]:
    return sorted({int(v) for v in text.split(",") if v.strip()})


async def main_async(args: argparse.Namespace) -> int:
    from tests.support.rtsp import RtspServer, rtsp_server_unavailable

    reason = rtsp_server_unavailable()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    clip = make_clip(args.cache, args.warm_up_s + args.measure_s + 15)
    print(f"machine: {machine(load=True)}")
    print(f"clip: {clip.name} (1280x720, 30 fps, H.264 main, no B-frames, GOP 60, 2.5 Mbit/s)")
    print("measuring each operation's CPU cost alone ...", flush=True)
    # in a child process, so that its engines do not weigh on this process's memory
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        bundle = dict(args.set).get("engine.bundle")
        costs = pool.submit(
            unit_costs, clip, args.precision, 8, Path(bundle) if bundle else None
        ).result()
    print("  " + ", ".join(f"{k} {v:.2f} ms" for k, v in costs.items()))
    limit_s = args.p99_ms / 1000
    points: list[Point] = []
    capacity: dict[str, int] = {}
    with RtspServer(clip).start() as server:
        assert server._process is not None
        pid = server._process.pid

        async def run(pipeline: Pipeline, count: int) -> Point:
            return await measure(
                pipeline, server.url, count, pid, args.warm_up_s, args.measure_s, limit_s
            )

        print(TABLE_HEADER)
        ours = Fakewatch(args.precision, dict(args.set))
        async with ours.up():
            capacity["fakewatch"], found = await find_capacity(ours, args.streams, run)
            points += found
            memory = None
            if args.soak_minutes > 0 and capacity["fakewatch"]:
                print(f"memory: {capacity['fakewatch']} streams, {args.soak_minutes:g} min ...")
                memory = await memory_run(
                    ours, server.url, capacity["fakewatch"], args.soak_minutes
                )
        capacity["naive"] = 0
        if not args.skip_naive:
            naive = Naive()
            async with naive.up():
                capacity["naive"], found = await find_capacity(naive, args.naive_streams, run)
                points += found

    report = [
        f"Machine: {machine()}.",
        f"Streams: {clip.name} served by gst-rtsp-server on this machine (1280x720, 30 fps, "
        "H.264 main, no B-frames, GOP 60, 2.5 Mbit/s, one face).",
        f"fakewatch: the service's defaults with engine.precision {args.precision}"
        + "".join(f", {key} {value}" for key, value in args.set)
        + "; naive: torch eager f32 at batch 1, detection on every analysed frame. "
        f"{args.warm_up_s:g} s warm-up and {args.measure_s:g} s measured per row.",
        "",
        TABLE_HEADER,
        *(p.row() for p in points),
    ]
    at = [p for p in points if p.pipeline == "fakewatch" and p.streams == capacity["fakewatch"]]
    if at:
        point = at[0]
        batches = point.counts.get("fakewatch_inference_batch_size_count", 0.0)
        crops = point.counts.get("fakewatch_inference_batch_size_sum", 0.0)
        report += [
            "",
            f"CPU by stage at the capacity, {point.streams} streams (fakewatch), in "
            f"{point.seconds:.0f} s:",
            "",
            "| stage | CPU s | share | CPU ms per stream-second | measured as |",
            "|---|---|---|---|---|",
            *stage_table(point, costs),
            "",
            "Cost of each operation alone (CPU ms, all threads; infer per crop at batch 8, "
            "torch per crop at batch 1): " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()),
            f"Mean inference batch at the capacity: {crops / batches if batches else 0:.1f} "
            f"crops. Drops there: {point.drops or 'none'}.",
        ]
    naive_at = [p for p in points if p.pipeline == "naive" and p.streams == capacity["naive"]]
    if naive_at:
        report += [
            "",
            f"Naive at {naive_at[0].streams} streams, CPU by thread: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in naive_at[0].threads.items() if v > 0.05),
        ]
    if memory:
        per_stream, over_time = memory
        slope = (per_stream[-1][1] - per_stream[0][1]) / max(1, per_stream[-1][0])
        start, end = over_time[0][1], over_time[-1][1]
        report += [
            "",
            f"Memory (fakewatch, {per_stream[-1][0]} streams): RSS {per_stream[0][1] / 2**20:.0f}"
            f" MiB with no stream, {per_stream[-1][1] / 2**20:.0f} MiB with "
            f"{per_stream[-1][0]}: {slope / 2**20:.1f} MiB per added stream. Over "
            f"{over_time[-1][0] / 60:.1f} min: {start / 2**20:.0f} -> {end / 2**20:.0f} MiB "
            f"({end / start - 1:+.1%}), max {max(r for _, r in over_time) / 2**20:.0f} MiB.",
            "RSS each minute (MiB): "
            + " ".join(f"{r / 2**20:.0f}" for t, r in over_time if round(t) % 60 < 10),
        ]
    text = "\n".join(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "capacity.md").write_text(text + "\n")
        plot(points, limit_s, args.out / "capacity.png")
    print()
    print(text)
    print()
    ours, naive_best = capacity["fakewatch"], capacity["naive"]
    print(f"capacity: fakewatch {ours} streams, naive {naive_best} streams")
    if naive_best:
        print(f"ratio fakewatch / naive capacity: {ours / naive_best:.2f}x (target 4x)")
    else:
        print(f"ratio fakewatch / naive capacity: > {ours:.0f}x (naive sustained no stream)")
    print(f"fakewatch capacity / target 24 streams: {ours / 24:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=streams_list, default="1,4,8,12,16,20,24,32")
    parser.add_argument("--naive-streams", type=streams_list, default="1,2,3,4,6,8")
    parser.add_argument("--warm-up-s", type=float, default=12.0)
    parser.add_argument("--measure-s", type=float, default=30.0)
    parser.add_argument("--p99-ms", type=float, default=250.0)
    parser.add_argument("--precision", default="bf16", choices=("f32", "bf16", "int8"))
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=lambda text: tuple(text.split("=", 1)),
        metavar="KEY=VALUE",
        help="a service setting for fakewatch (dotted key, as in fakewatch.yaml)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="measure fakewatch only")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "demo")
    parser.add_argument("--out", type=Path, help="write capacity.md and capacity.png here")
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
