"""Pipeline capacity: how many live 5-fps streams one machine watches, against a naive
pipeline measured in the same run.

    .venv/bin/python benchmarks/capacity.py [--out docs/benchmarks] [--soak-minutes 10]
        [--height 720|480] [--baseline c0319f7]

The streams: a 720p30 (or ``--height`` 480: 854x480, 1.2 Mbit/s) H.264 clip with one face,
encoded like a camera stream (main profile, no B-frames, a keyframe every 2 s,
2.5 Mbit/s) from the demo clip, served by
``fakewatch.stream.rtsp_camera`` (each client from the first frame, in real time).
**fakewatch** is ``fakewatch serve`` hosted here at its defaults, the engine at
``--precision``. **naive** is a thread per stream that decodes and converts every frame
and, 5 times a second, detects, crops, runs the same bundle in torch eager at batch 1 and
votes. Each count of streams is measured for ``--measure-s`` after ``--warm-up-s``: the
latency of every analysed frame from capture (its pts, offset per stream by the least
receipt - pts, so a decoder falling behind counts) to decision, the share of sampled
frames lost, and the CPU of this process, the RTSP server and the machine. A count is
sustained at p99 <= ``--p99-ms`` with under 1% lost; the count rises until one fails,
then the gap is bisected. The stage breakdown splits the face threads' CPU by each
operation's cost measured alone; the memory run adds streams up to the capacity and
keeps them ``--soak-minutes``. The ratios come last.

``--baseline REF`` also measures an earlier commit's fakewatch on the same machine, in
the same session, with that commit's own capacity script (:mod:`baseline`), and prints
the ratio of the sustained streams (720p30 only: earlier scripts know no other size).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import baseline
import common
import numpy as np

from fakewatch.engines.machine import describe_machine, usable_cores
from fakewatch.engines.media import iter_video, probe_video
from fakewatch.stream.rtsp_camera import RtspCamera, rtsp_camera_unavailable

FPS, CLIP_FPS = 5.0, 30
SIZES = {720: ((1280, 720), 2_500_000), 480: ((854, 480), 1_200_000)}
"""Clip heights: the frame size and the bit rate of each."""
THREAD_GROUPS = {
    "source ": "decode",
    "detector-": "faces",
    "engine-": "infer",
    "MainThread": "loop",
}
NATIVE = "native"  # threads Python did not start: OpenVINO's, FFmpeg's, ONNX Runtime's
STAGE_SOURCES = {
    "decode": "source threads, and RGB conversion of sampled frames",
    "detect": "face threads, detection calls",
    "track": "face threads, tracker updates and crops",
    "infer": "engine thread and the runtime's own threads",
    "vote": "event loop: sampling, vote, events, metrics, API",
    "other": "other Python threads",
}


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds of this process's threads, summed by :data:`THREAD_GROUPS` prefix."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    totals: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            name = names.get(int(task.name))
            group = NATIVE if name is None else "other"
            group = next((g for p, g in THREAD_GROUPS.items() if (name or "").startswith(p)), group)
            totals[group] = totals.get(group, 0.0) + common.cpu_seconds(f"self/task/{task.name}")
    return totals


@dataclass
class Point:
    """What one number of concurrent streams measured."""

    pipeline: str
    streams: int
    seconds: float
    decisions: list[common.Analysed]
    cpu: dict[str, float]
    rss: int
    limit_s: float
    counts: dict[tuple[str, str], float] = field(default_factory=dict)  # counter deltas
    threads: dict[str, float] = field(default_factory=dict)  # CPU seconds by thread group

    def latencies(self, from_pts: bool = True) -> list[float]:
        """Capture-to-decision seconds of every analysed frame (see the module doc)."""
        if not from_pts:
            return [d.decided - d.capture_time for d in self.decisions]
        offsets: dict[str, float] = {}
        for d in self.decisions:
            if d.pts_s is not None:
                offsets[d.stream] = min(offsets.get(d.stream, np.inf), d.capture_time - d.pts_s)
        return [
            d.decided - (d.capture_time if d.pts_s is None else offsets[d.stream] + d.pts_s)
            for d in self.decisions
        ]

    @property
    def lost(self) -> float:
        """Share of the sampled frames not analysed (5 fps over each stream's span of
        presentation times; a stream that analysed nothing loses the whole interval).
        Frames a calm stream skips on purpose (adaptive analysis, drop reason ``calm``)
        are not lost: they were not to be analysed."""
        spans: dict[str, list[float]] = {}
        for d in self.decisions:
            spans.setdefault(d.stream, []).append(d.decided if d.pts_s is None else d.pts_s)
        expected = sum(round((max(t) - min(t)) * FPS) + 1 for t in spans.values())
        expected += (self.streams - len(spans)) * FPS * self.seconds
        expected -= self.counts.get(("fakewatch_frames_dropped_total", "calm"), 0.0)
        return max(0.0, 1 - len(self.decisions) / expected) if expected else 1.0

    @property
    def p99(self) -> float:
        return common.percentile(self.latencies(), 99)

    @property
    def sustained(self) -> bool:
        return self.p99 <= self.limit_s and self.lost < 0.01

    def row(self) -> str:
        return (
            f"| {self.pipeline} | {self.streams} | {len(self.decisions) / self.seconds:.1f} "
            f"| {self.lost:.1%} | {common.percentile(self.latencies(), 50) * 1000:.0f} "
            f"| {self.p99 * 1000:.0f} | {common.percentile(self.latencies(False), 99) * 1000:.0f} "
            f"| {self.cpu['own']:.0%} | {self.cpu['server']:.0%} | {self.cpu['machine']:.0%} "
            f"| {self.rss / 2**20:.0f} | {'yes' if self.sustained else 'no'} |"
        )


HEADER = (
    "| pipeline | streams | analysed fps | sampled frames lost | p50 ms | p99 ms "
    "| p99 ms from receipt | CPU service | CPU RTSP server | CPU machine | RSS MiB | sustained |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def make_clip(cache: Path, seconds: float, height: int = 720) -> Path:
    """The camera-like H.264 clip ``height`` pixels high (see the module doc), made once."""
    import av
    import cv2

    from fakewatch.training.demo_clip import fetch_demo_clip

    size, bit_rate = SIZES[height]
    target = cache / f"capacity-{height}p30-{seconds:.0f}s.mp4"
    if target.is_file():
        return target
    source = fetch_demo_clip(cache)
    rate = probe_video(source).fps
    frames = [frame.image for frame in iter_video(source)]
    partial = target.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as output:
        options = {"preset": "veryfast", "profile": "main", "bf": "0", "g": "60"}
        video = output.add_stream("libx264", rate=CLIP_FPS, options=options)
        video.width, video.height = size
        video.pix_fmt, video.bit_rate = "yuv420p", bit_rate
        video.codec_context.time_base = Fraction(1, CLIP_FPS)
        for i in range(round(seconds * CLIP_FPS)):
            # the source forwards then backwards, so the loop has no jump cut
            k = int(i / CLIP_FPS * rate) % (2 * len(frames) - 2)
            k = k if k < len(frames) else 2 * len(frames) - 2 - k
            image = cv2.resize(frames[k], size, interpolation=cv2.INTER_LINEAR)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
    partial.rename(target)
    return target


COUNTERS = {
    "fakewatch_stage_seconds_count": "stage",
    "fakewatch_frames_dropped_total": "reason",
    "fakewatch_faces_analysed_total": None,
    "fakewatch_inference_batch_size_count": None,
    "fakewatch_inference_batch_size_sum": None,
}


class Fakewatch:
    """``fakewatch serve`` with its defaults, the engine at ``precision``."""

    name = "fakewatch"

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.recorder = common.Recorder()

    @contextlib.asynccontextmanager
    async def up(self) -> AsyncIterator[Fakewatch]:
        import aiohttp

        async with (
            common.hosted(**{"limits.max_streams": 256, **self.settings}) as (service, base),
            aiohttp.ClientSession(base) as self.http,
        ):
            self.pipeline = service.pipeline
            self.pipeline.observers.append(self.recorder)
            yield self

    async def start(self, url: str, count: int, prefix: str = "s") -> list[str]:
        return [(await self.pipeline.add_url(url, f"{prefix}{count}-{i}")).id for i in range(count)]

    async def stop(self, ids: list[str]) -> None:
        for stream_id in ids:
            await self.pipeline.remove(stream_id)

    async def counters(self) -> dict[tuple[str, str], float]:
        """The service's counters, summed over labels but the stage and drop reason."""
        async with self.http.get("/metrics") as response:
            return common.scrape(await response.text(), COUNTERS)


class Naive:
    """Decode every frame, detect on every analysed frame, batch 1, torch eager."""

    name = "naive"

    def __init__(self) -> None:
        self.recorder = common.Recorder()
        self._threads: dict[str, tuple[threading.Thread, threading.Event]] = {}

    @contextlib.asynccontextmanager
    async def up(self) -> AsyncIterator[Naive]:
        from fakewatch.engines.bundle import EngineBundle
        from fakewatch.engines.defaults import default_bundle_path
        from fakewatch.engines.faces import default_face_detector
        from fakewatch.engines.runtimes import open_engine

        self.engine = open_engine(EngineBundle.load(default_bundle_path()), "torch", "cpu", "f32")
        self.detector = default_face_detector()
        try:
            yield self
        finally:
            await self.stop(list(self._threads))

    async def start(self, url: str, count: int) -> list[str]:
        for i in range(count):
            stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(url, f"naive{count}-{i}", stop))
            thread.start()
            self._threads[f"naive{count}-{i}"] = (thread, stop)
        return [f"naive{count}-{i}" for i in range(count)]

    async def stop(self, ids: list[str]) -> None:
        for name in ids:
            thread, stop = self._threads.pop(name)
            stop.set()
            await asyncio.to_thread(thread.join, 15)

    async def counters(self) -> dict[tuple[str, str], float]:
        return {}

    def _run(self, url: str, name: str, stop: threading.Event) -> None:
        import av

        from fakewatch.engines.crop import crop_face
        from fakewatch.stream.analysis.vote import SlidingWindowVote

        bundle = self.engine.bundle
        spec, thresholds = bundle.spec, bundle.manifest.thresholds
        vote: SlidingWindowVote[None] = SlidingWindowVote(
            thresholds["suspect"].value, thresholds["clear"].value, 8, 4.0, 5, 10.0
        )
        with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(10, 5)) as container:
            next_pts: float | None = None
            for frame in container.decode(video=0):
                image, received = frame.to_ndarray(format="rgb24"), time.time()
                if stop.is_set():
                    return
                if frame.time is None or (next_pts is not None and frame.time < next_pts):
                    continue  # RTSP's first frame may come without a timestamp
                next_pts = (float(frame.time) if next_pts is None else next_pts) + 1 / FPS
                scores = []
                for face in self.detector.detect(image)[:4]:
                    crop = crop_face(image, face.box, spec.input_size, spec.crop_margin)
                    score, _ = bundle.manifest.scoring.score(
                        self.engine.infer(crop.image[None]), spec.crop_margin
                    )
                    scores.append(float(score[0]))
                if scores:
                    vote.add(received, max(scores), None)
                else:
                    vote.tick(received)
                self.recorder.add(common.Analysed(name, float(frame.time), received, time.time()))


Pipeline = Fakewatch | Naive


async def measure(
    pipeline: Pipeline, url: str, streams: int, server: int, args: argparse.Namespace
) -> Point:
    """Run ``streams`` streams through ``pipeline`` and measure them (module doc)."""
    ids = await pipeline.start(url, streams)
    try:
        await asyncio.sleep(args.warm_up_s)
        pipeline.recorder.take()
        before, threads = await pipeline.counters(), thread_cpu_s()
        wall, own, served, busy = (
            time.monotonic(),
            common.cpu_seconds(),
            common.cpu_seconds(server),
            common.machine_busy_s(),
        )
        await asyncio.sleep(args.measure_s)
        wall = time.monotonic() - wall
        cores = usable_cores()
        now = common.machine_busy_s()
        cpu = {
            "own_s": (own := common.cpu_seconds() - own),
            "own": own / wall / cores,
            "server": (common.cpu_seconds(server) - served) / wall / cores,
            "machine": (now[0] - busy[0]) / max(1e-9, now[1] - busy[1]),
        }
        threads = {k: v - threads.get(k, 0.0) for k, v in thread_cpu_s().items()}
        decisions, after = pipeline.recorder.take(), await pipeline.counters()
        rss = common.rss_bytes()
    finally:
        await pipeline.stop(ids)
    counts = {key: after[key] - before.get(key, 0.0) for key in after}
    point = Point(
        pipeline.name, streams, wall, decisions, cpu, rss, args.p99_ms / 1000, counts, threads
    )
    print(point.row(), flush=True)
    return point


async def find_capacity(
    pipeline: Pipeline, candidates: list[int], run: Callable[[Pipeline, int], Any]
) -> tuple[int, list[Point]]:
    """Raise the streams through ``candidates`` until one fails, then bisect the gap."""
    points: list[Point] = []
    best, failed = 0, None
    for count in candidates:
        points.append(point := await run(pipeline, count))
        if not point.sustained:
            failed = count
            break
        best = count
    while failed is not None and failed - best > 1:
        points.append(point := await run(pipeline, count := (best + failed) // 2))
        best, failed = (count, failed) if point.sustained else (best, count)
    return best, sorted(points, key=lambda p: p.streams)


def cpu_ms(call: Callable[[int], object], repeat: int) -> float:
    """Mean CPU milliseconds (all threads of this process) of ``call(i)``."""
    call(0)
    started = time.process_time()
    for i in range(repeat):
        call(i)
    return (time.process_time() - started) / repeat * 1000


def unit_costs(clip: Path, precision: str, batch: int, bundle_path: str | None) -> dict[str, float]:
    """CPU ms of each operation, measured one at a time on the clip's frames."""
    import av

    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.crop import crop_face
    from fakewatch.engines.defaults import default_bundle_path
    from fakewatch.engines.faces import default_face_detector
    from fakewatch.engines.runtimes import open_engine
    from fakewatch.stream.analysis.tracker import FaceTracker

    with av.open(str(clip)) as container:
        packets = [p for _, p in zip(range(300), container.demux(video=0), strict=False)]
        extradata = container.streams.video[0].codec_context.extradata
    pictures: list[Any] = []

    def decode(_: int) -> None:
        codec = av.CodecContext.create("h264", "r")
        codec.extradata = extradata
        for packet in [*packets, None]:
            pictures.extend(codec.decode(packet)[: max(0, 60 - len(pictures))])

    costs = {"decode": cpu_ms(decode, 2) / len(packets)}
    images = [picture.to_ndarray(format="rgb24") for picture in pictures]
    costs["convert"] = cpu_ms(lambda i: pictures[i % 60].to_ndarray(format="rgb24"), 100)
    detector = default_face_detector()
    costs["detect"] = cpu_ms(lambda i: detector.detect(images[i % len(images)]), 30)
    face = detector.detect(images[0])[0]
    bundle = EngineBundle.load(bundle_path or default_bundle_path())
    size, margin = bundle.spec.input_size, bundle.spec.crop_margin
    costs["crop"] = cpu_ms(lambda i: crop_face(images[i % 60], face.box, size, margin), 100)
    tracker = FaceTracker(0.3, max_missed=2)
    costs["track"] = cpu_ms(lambda i: tracker.update([face]), 1000)
    crops = np.stack([crop_face(images[0], face.box, size, margin).image] * batch)
    engine = open_engine(bundle, "openvino", "cpu", precision)
    costs["infer"] = cpu_ms(lambda i: engine.infer(crops), 20) / batch
    torch_engine = open_engine(bundle, "torch", "cpu", "f32")
    costs["infer_torch_b1"] = cpu_ms(lambda i: torch_engine.infer(crops[:1]), 10)
    return costs


def stage_table(point: Point, costs: dict[str, float]) -> list[str]:
    """The CPU of each stage at ``point``: each thread group's CPU, the face threads'
    split in proportion to each operation's cost alone times how often it ran."""
    counts, threads = point.counts, point.threads
    modelled = {
        "convert": len(point.decisions) * costs["convert"],
        "detect": counts.get(("fakewatch_stage_seconds_count", "detect"), 0.0) * costs["detect"],
        "track": counts.get(("fakewatch_stage_seconds_count", "track"), 0.0) * costs["track"]
        + counts.get(("fakewatch_faces_analysed_total", ""), 0.0) * costs["crop"],
    }
    faces = threads.get("faces", 0.0) / (sum(modelled.values()) or 1.0)
    stages = {
        "decode": threads.get("decode", 0.0) + modelled["convert"] * faces,
        "detect": modelled["detect"] * faces,
        "track": modelled["track"] * faces,
        "infer": threads.get("infer", 0.0) + threads.get(NATIVE, 0.0),
        "vote": threads.get("loop", 0.0),
        "other": threads.get("other", 0.0),
    }
    total = sum(stages.values())
    per = 1000 / point.seconds / point.streams
    rows = [
        f"| {n} | {s:.1f} | {s / total:.0%} | {s * per:.0f} | {STAGE_SOURCES[n]} |"
        for n, s in stages.items()
    ]
    own = f"the process's threads (process CPU {point.cpu['own_s']:.1f} s)"
    return [*rows, f"| all | {total:.1f} | 100% | {total * per:.0f} | {own} |"]


async def memory_run(ours: Fakewatch, url: str, streams: int, minutes: float) -> list[str]:
    """RSS after adding each stream (3 s apart), then every 10 s for ``minutes``."""
    ids: list[str] = []
    added = [common.rss_bytes()]
    try:
        for _ in range(streams):
            ids += await ours.start(url, 1, f"memory{len(ids)}-")
            await asyncio.sleep(3.0)
            added.append(common.rss_bytes())
        started, over_time = time.monotonic(), [(0.0, common.rss_bytes())]
        while (elapsed := time.monotonic() - started) < minutes * 60:
            await asyncio.sleep(min(10.0, minutes * 60 - elapsed))
            over_time.append((time.monotonic() - started, common.rss_bytes()))
    finally:
        await ours.stop(ids)
    mib, start, end = 2**20, over_time[0][1], over_time[-1][1]
    return [
        f"Memory (fakewatch, {streams} streams): RSS {added[0] / mib:.0f} MiB with no stream, "
        f"{added[-1] / mib:.0f} MiB with {streams}: {(added[-1] - added[0]) / streams / mib:.1f}"
        f" MiB per added stream. Over {over_time[-1][0] / 60:.1f} min: {start / mib:.0f} -> "
        f"{end / mib:.0f} MiB ({end / start - 1:+.1%}), "
        f"max {max(r for _, r in over_time) / mib:.0f} MiB.",
        "RSS each minute (MiB): "
        + " ".join(f"{r / mib:.0f}" for t, r in over_time if round(t) % 60 < 10),
    ]


async def main_async(args: argparse.Namespace) -> int:
    if reason := rtsp_camera_unavailable():
        print(f"cannot run: {reason}")
        return 2
    clip = make_clip(args.cache, args.warm_up_s + args.measure_s + 15, args.height)
    (width, height), bit_rate = SIZES[args.height]
    settings = {"engine.precision": args.precision, **dict(args.set)}
    print(f"machine: {describe_machine(load=True)}\nmeasuring each operation alone ...", flush=True)
    # in a child process, so that its engines do not weigh on this process's memory
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        bundle = settings.get("engine.bundle")
        costs = pool.submit(unit_costs, clip, args.precision, 8, bundle).result()
    print("  " + ", ".join(f"{k} {v:.2f} ms" for k, v in costs.items()))
    points: list[Point] = []
    capacity = {"fakewatch": 0, "naive": 0}
    memory: list[str] = []
    with RtspCamera(clip).start() as camera:
        assert camera.pid is not None

        async def run(pipeline: Pipeline, count: int) -> Point:
            return await measure(pipeline, camera.url, count, camera.pid or 0, args)

        print(HEADER)
        ours = Fakewatch(settings)
        async with ours.up():
            capacity["fakewatch"], found = await find_capacity(ours, args.streams, run)
            points += found
            if args.soak_minutes > 0 and capacity["fakewatch"]:
                print(f"memory: {capacity['fakewatch']} streams, {args.soak_minutes:g} min ...")
                memory = await memory_run(
                    ours, camera.url, capacity["fakewatch"], args.soak_minutes
                )
        if not args.skip_naive:
            naive = Naive()
            async with naive.up():
                capacity["naive"], found = await find_capacity(naive, args.naive_streams, run)
                points += found
    report = [
        f"Machine: {describe_machine(load=True)}.",
        f"Streams: {clip.name} served by gst-rtsp-server on this machine ({width}x{height}, "
        f"30 fps, H.264 main, no B-frames, GOP 60, {bit_rate / 1e6:g} Mbit/s, one face). "
        "fakewatch: the service's "
        f"defaults with {settings}; naive: torch eager f32 at batch 1, detection on every "
        f"analysed frame. {args.warm_up_s:g} s warm-up and {args.measure_s:g} s measured per row.",
        "",
        HEADER,
        *(p.row() for p in points),
    ]
    for point in points:
        if point.pipeline == "fakewatch" and point.streams == capacity["fakewatch"]:
            calls = point.counts.get(("fakewatch_inference_batch_size_count", ""), 0.0)
            crops = point.counts.get(("fakewatch_inference_batch_size_sum", ""), 0.0)
            drops = {k[1]: v for k, v in point.counts.items() if "dropped" in k[0] and v}
            report += [
                "",
                f"CPU by stage at the capacity, {point.streams} streams, {point.seconds:.0f} s:",
                "",
                "| stage | CPU s | share | CPU ms per stream-second | measured as |",
                "|---|---|---|---|---|",
                *stage_table(point, costs),
                "",
                "Cost of each operation alone (CPU ms, all threads; infer per crop at batch 8, "
                "torch per crop at batch 1): "
                + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()),
                f"Mean inference batch: {crops / calls if calls else 0:.1f} crops. "
                f"Drops: {drops or 'none'}.",
            ]
    report += ["", *memory]
    text = "\n".join(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "capacity.md").write_text(text + "\n")
    ours_best, naive_best = capacity["fakewatch"], capacity["naive"]
    print(f"\n{text}\n\ncapacity: fakewatch {ours_best} streams, naive {naive_best} streams")
    if naive_best:
        print(f"ratio fakewatch / naive capacity: {ours_best / naive_best:.2f}x (target 3x)")
    else:
        print(f"ratio fakewatch / naive capacity: > {ours_best:.0f}x (naive sustained no stream)")
    if args.baseline:
        # the same streams, rows and limits, run by the earlier commit's own script
        same = ["--streams", ",".join(map(str, args.streams)), "--cache", str(args.cache)]
        same += ["--warm-up-s", str(args.warm_up_s), "--measure-s", str(args.measure_s)]
        theirs, output = baseline.baseline_capacity(
            args.baseline, [*same, "--p99-ms", str(args.p99_ms)]
        )
        if args.out:
            (args.out / f"capacity-baseline-{args.baseline}.txt").write_text(output)
        ratio = f"{ours_best / theirs:.2f}x" if theirs else f"> {ours_best}x (it sustained none)"
        print(
            f"baseline {args.baseline}: {theirs} streams; fakewatch / baseline: {ratio} (target 2x)"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=common.int_list, default="1,4,8,12,16,20,24,32")
    parser.add_argument("--naive-streams", type=common.int_list, default="1,2,3,4,6,8")
    parser.add_argument("--warm-up-s", type=float, default=12.0)
    parser.add_argument("--measure-s", type=float, default=30.0)
    parser.add_argument("--p99-ms", type=float, default=250.0)
    parser.add_argument("--precision", default="auto", choices=("auto", "f32", "bf16", "int8"))
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
    parser.add_argument("--height", type=int, default=720, choices=sorted(SIZES))
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also measure this earlier commit (720p30, its own script and defaults)",
    )
    parser.add_argument("--cache", type=Path, default=common.DEMO_CACHE)
    parser.add_argument("--out", type=Path, help="write capacity.md here")
    args = parser.parse_args(argv)
    if args.baseline and args.height != 720:
        parser.error("--baseline measures 720p30 only (earlier scripts know no other size)")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
