"""Alert latency: from the capture of the first manipulated frame to the signed webhook.

    .venv/bin/python benchmarks/alert_latency.py --runs 10 [--held-out] [--compare]

The stream is ``live-swap-dev``'s real Keanu_Reeves_0 (its first ``--lead`` seconds) then
its frame-aligned live-swapped twin, encoded once without B-frames, so the swap starts at
a known pts T (without ``../shared/data``: the demo pair). It is served by
``fakewatch.stream.rtsp_camera`` to ``fakewatch serve`` hosted here at its defaults, with
one webhook endpoint: a receiver here that times each delivery and verifies it with
``standardwebhooks``. Each run adds the stream (the clip starts at 0), waits for the
webhook, and removes the stream. Every frame the source delivers is logged, so the
reference is the capture of the first frame with pts >= T; every event sink is timed, so
the latency splits into vote, sinks (evidence files) and delivery. No alert by
``--timeout`` after the swap, or by the clip's end, is a miss. ``--held-out`` adds the four
Ewon_Spice pairs, whose face model the shipped model never saw; the Keanu pair is
in-sample, so it measures the service, not detection. The RTSP open is measured with
FFmpeg's default probing and with the probe capped.

``--compare`` runs every run twice in turn, with adaptive analysis off and on (the
stream's own ``adaptive`` setting, the rest at the service's defaults), and reports
both, side by side: alert latency, held-out alerts, frames analysed and the process's
CPU seconds per run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import common
import numpy as np

from fakewatch.engines.machine import describe_machine
from fakewatch.engines.media import iter_video, probe_video
from fakewatch.stream.rtsp_camera import (
    FAST_OPEN_OPTIONS,
    RTSP_OPTIONS,
    RtspCamera,
    rtsp_camera_unavailable,
)

LIVE_SWAP = common.SHARED_DATA / "live-swap-dev"
MAIN_PAIR = "Keanu_Reeves_0"
HELD_OUT_PAIRS = ("Ewon_Spice_0", "Ewon_Spice_1", "Ewon_Spice_2", "Ewon_Spice_3")
PTS_SLACK_S = 0.25  # a first pts at most this is the clip's start (skipped frames first)
END_GRACE_S = 4.0  # how long after the clip's last frame a run still waits


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


def live_swap_clip(name: str, cache: Path, lead_s: float, *, in_sample: bool) -> Clip:
    """``real/NAME`` (its first ``lead_s`` seconds) then ``fake/NAME``, encoded once into
    ``cache``; the swap starts at the first fake frame."""
    real, fake = LIVE_SWAP / "real" / f"{name}.mp4", LIVE_SWAP / "fake" / f"{name}.mp4"
    info = probe_video(real)
    if info != probe_video(fake):
        raise ValueError(f"{real} and {fake} are not frame-aligned: {info}, {probe_video(fake)}")
    rate, count = info.fps, info.frames
    lead = min(count, round(lead_s * rate))
    target = cache / f"{name}.real{lead}-fake{count}.mp4"
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        part = target.with_suffix(".part.mp4")
        with av.open(str(part), "w") as container:
            options = {"crf": "18", "bframes": "0"}  # a live camera's stream has no B-frames
            stream = container.add_stream("libx264", rate=round(rate), options=options)
            stream.width, stream.height = info.width // 2 * 2, info.height // 2 * 2
            stream.pix_fmt = "yuv420p"
            reals = (f for f in iter_video(real) if f.index < lead)
            for frame in (*reals, *iter_video(fake)):
                pixels = np.ascontiguousarray(frame.image[: stream.height, : stream.width])
                container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            container.mux(stream.encode())
        part.replace(target)
    origin = f"live-swap-dev {name}: real {lead / rate:.2f} s, then fake {count / rate:.2f} s"
    return Clip(name, target, lead / rate, rate, (lead + count) / rate, origin, in_sample)


def demo_clip() -> Clip:
    """The demo's manipulated clip (made once by ``fakewatch demo``'s own recipe)."""
    from fakewatch.training.demo_clip import SPAN, demo_clips

    real, twin = demo_clips(common.DEMO_CACHE)
    info = probe_video(twin)
    origin = f"the demo pair: {real.name}, manipulated from {SPAN[0]:g} to {SPAN[1]:g} s"
    return Clip("demo", twin, SPAN[0], info.fps, info.frames / info.fps, origin, False)


@dataclass(frozen=True)
class Seen:
    """A frame the source delivered: its connection (a reconnect starts the clip over),
    pts and capture time."""

    connection: int
    pts_s: float | None
    capture_time: float


class FrameLog:
    """Every frame put into a stream's frame slot, sampled for analysis or not."""

    def __init__(self, slot: Any) -> None:
        self.frames: list[Seen] = []
        self.attached_late = False
        self._connection = -1
        self._lock = threading.Lock()
        store = slot.put

        def put(frame: Any) -> None:  # in the source's thread
            with self._lock:
                if frame.index == 0 or self._connection < 0:
                    self.attached_late |= self._connection < 0 and frame.index != 0
                    self._connection += 1
                self.frames.append(Seen(self._connection, frame.pts_s, frame.capture_time))
            store(frame)

        slot.put = put  # this slot only, not the class


class TimedSink:
    """An event sink around another, noting when it got each event and when it was done."""

    def __init__(self, inner: Any, spans: dict[str, dict[str, tuple[float, float]]]) -> None:
        self.inner, self.name, self.spans = inner, type(inner).__name__, spans

    async def emit(self, event: Any) -> None:
        started = time.time()
        try:
            await self.inner.emit(event)
        finally:
            self.spans.setdefault(event.id, {})[self.name] = (started, time.time())


@dataclass(frozen=True)
class Arrival:
    time: float
    stream: str
    message_id: str
    verified: bool


class Receiver:
    """A webhook endpoint on a free loopback port: notes each delivery's arrival and
    whether its signature verifies with ``standardwebhooks``."""

    def __init__(self) -> None:
        from standardwebhooks import Webhook

        self.secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        self.verifier = Webhook(self.secret)
        self.arrivals: list[Arrival] = []

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[str]:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/hook", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        finally:
            await runner.cleanup()

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        arrived, body = time.time(), await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            self.verifier.verify(body, headers)
            verified = True
        except Exception:  # standardwebhooks' verification error
            verified = False
        stream = json.loads(body).get("data", {}).get("stream", {}).get("id", "")
        self.arrivals.append(Arrival(arrived, stream, headers.get("webhook-id", ""), verified))
        return web.Response(status=204)

    async def first(self, stream: str, deadline: float) -> Arrival | None:
        while time.time() < deadline:
            if found := next((a for a in self.arrivals if a.stream == stream), None):
                return found
            await asyncio.sleep(0.01)
        return None


@dataclass
class Run:
    """What one run measured; times are wall-clock seconds."""

    number: int
    clip: Clip
    added: float
    mode: str = ""  # "off" / "on": adaptive analysis, with --compare
    first_capture: float | None = None
    first_pts: float | None = None
    swap_pts: float | None = None
    swap_capture: float | None = None
    swap_lag: float | None = None  # how far the swap frame trailed the stream's live pace
    first_fake: float | None = None  # capture of the first fake frame analysed
    fake_analysed: int = 0
    decided: float | None = None
    deciding_capture: float | None = None
    queued: float | None = None
    evidence_s: float | None = None
    arrival: Arrival | None = None
    window: str = "-"
    latencies: list[float] = field(default_factory=list)
    real_scores: list[float] = field(default_factory=list)
    fake_scores: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    analysed: int = 0  # frames analysed in the run
    calm: int = 0  # frames taken but not analysed: the stream was calm
    cpu_s: float = 0.0  # CPU seconds of this process during the run

    def since_swap(self, moment: float | None) -> float | None:
        return None if moment is None or self.swap_capture is None else moment - self.swap_capture

    @property
    def alerted(self) -> bool:
        return self.arrival is not None and self.swap_capture is not None

    def parts(self) -> dict[str, float | None]:
        """The run's figures, in seconds, by name (see the summary table)."""

        def gap(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else b - a

        arrival = self.arrival.time if self.arrival else None
        return {
            "capture -> webhook arrival": self.since_swap(arrival),
            "capture -> deepfake.suspected event": self.since_swap(self.decided),
            "event -> webhook arrival (delivery)": gap(self.decided, arrival),
            "  event -> queued in the outbox (sinks)": gap(self.decided, self.queued),
            "  of which evidence files": self.evidence_s,
            "  queued -> arrival (outbox worker, POST)": gap(self.queued, arrival),
            "capture -> 1st fake frame analysed": self.since_swap(self.first_fake),
            "capture -> deciding frame's capture (vote)": self.since_swap(self.deciding_capture),
            "deciding frame's capture -> event (analysis)": gap(
                self.deciding_capture, self.decided
            ),
        }


class Bench:
    """The service, its receiver and what they saw, across runs."""

    def __init__(self, service: Any, receiver: Receiver, timeout_s: float) -> None:
        self.pipeline = service.pipeline
        self.receiver, self.timeout_s = receiver, timeout_s
        self.spans: dict[str, dict[str, tuple[float, float]]] = {}
        self.events: dict[str, Any] = {}
        self.analysed = common.Recorder()
        self.pipeline.sinks[:] = [TimedSink(sink, self.spans) for sink in self.pipeline.sinks]
        self.pipeline.sinks.insert(0, self)  # keeps every event
        self.pipeline.observers.append(self.analysed)

    async def emit(self, event: Any) -> None:
        self.events[event.id] = event

    async def run(self, number: int, clip: Clip, url: str, adaptive: bool | None = None) -> Run:
        """Watch ``url`` until its webhook arrives or the run times out; then remove it.
        ``adaptive`` turns the stream's adaptive analysis on or off (None: the default)."""
        added, cpu = time.time(), time.process_time()
        mode = "" if adaptive is None else ("on" if adaptive else "off")
        name = f"alert-{number:02d}-{clip.name}{'-' + mode if mode else ''}"[:64]
        given = None if adaptive is None else {"adaptive": adaptive}
        state = await self.pipeline.add_url(url, name, given=given)
        log = FrameLog(state.frames)  # before the source's thread can have opened the URL
        run = Run(number, clip, added, mode)
        # the clip plays once a connection: an alert after its end is not this swap's
        wait_s = min(clip.swap_s + self.timeout_s, clip.duration_s + END_GRACE_S)
        try:
            run.arrival = await self.receiver.first(state.id, added + wait_s)
        finally:
            await self.pipeline.remove(state.id)
        run.cpu_s = time.process_time() - cpu
        run.analysed, run.calm = state.analysed, state.dropped["calm"]
        self._fill(run, state.id, log)
        print(progress(run), flush=True)
        return run

    def _fill(self, run: Run, stream: str, log: FrameLog) -> None:
        clip = run.clip
        received = [f for f in log.frames if f.connection == 0]
        timed = [f for f in received if f.pts_s is not None]
        if log.attached_late:
            run.notes.append("frames before the recorder was attached were missed")
        if not timed:
            run.notes.append("no frame with a pts received")
            run.arrival = None
            return
        run.first_capture = received[0].capture_time
        # FFmpeg starts an RTSP stream's pts at 0 (the first frame comes without one)
        run.first_pts = timed[0].pts_s
        offset = run.first_pts if run.first_pts and run.first_pts > PTS_SLACK_S else 0.0
        tolerance = 0.25 / clip.fps

        def is_fake(pts: float | None) -> bool:
            return pts is not None and pts - offset >= clip.swap_s - tolerance

        swap = next((f for f in timed if is_fake(f.pts_s)), None)
        if swap is None or swap.pts_s is None:
            run.notes.append("the swap was never received")
            run.arrival = None
            return
        run.swap_pts, run.swap_capture = swap.pts_s - offset, swap.capture_time
        pace = min(f.capture_time - (f.pts_s or 0.0) + offset for f in timed)
        run.swap_lag = swap.capture_time - run.swap_pts - pace
        end = received[-1].capture_time
        analysed = [a for a in self.analysed.take() if a.stream == stream]
        for frame in analysed:
            if frame.capture_time > end:
                break
            run.latencies.append(frame.decided - frame.capture_time)
            if frame.score is not None:
                (run.fake_scores if is_fake(frame.pts_s) else run.real_scores).append(frame.score)
            if is_fake(frame.pts_s) and run.first_fake is None:
                run.first_fake = frame.capture_time
        suspected = [
            e
            for e in self.events.values()
            if e.stream_id == stream and str(e.type) == "deepfake.suspected"
        ]
        if not suspected:
            run.notes.append("no deepfake.suspected event")
            run.arrival = None
            return
        event = min(suspected, key=lambda e: e.time)
        spans = self.spans[event.id]
        run.decided, run.deciding_capture = min(s for s, _ in spans.values()), event.time
        run.queued = spans["WebhookSink"][1] if "WebhookSink" in spans else None
        if "EvidenceStore" in spans:
            run.evidence_s = spans["EvidenceStore"][1] - spans["EvidenceStore"][0]
        if event.window is not None:
            fakes = sum(t >= run.swap_capture for t in event.window.times)
            run.window = f"{fakes}/{len(event.window.scores)}, {event.window.score:.3f}"
        run.fake_analysed = sum(
            1
            for f in analysed
            if f.score is not None and run.swap_capture <= f.capture_time <= event.time
        )
        if event.time < run.swap_capture:
            run.notes.append("alerted before the swap (a false alert on the real part)")
            run.arrival = None
        elif event.time > end:
            run.notes.append("alerted after a reconnect: not this swap")
            run.arrival = None
        elif run.arrival is None:
            run.notes.append("deepfake.suspected, but no webhook before the deadline")
        elif run.arrival.message_id != f"msg_{event.id}":
            run.notes.append(f"first delivery {run.arrival.message_id} is not msg_{event.id}")


def progress(run: Run) -> str:
    label = f"{run.clip.name}{f' (adaptive {run.mode})' if run.mode else ''}"
    if run.mode:  # what the run analysed: the cost, and how far from the threshold it was
        real = fmt(float(np.median(run.real_scores)) if run.real_scores else None)
        fake = fmt(float(np.median(run.fake_scores)) if run.fake_scores else None)
        label += (
            f" [{run.analysed} analysed, {run.calm} calm; median score real {real}, fake {fake}]"
        )
    if run.alerted:
        figures = run.parts()
        return (
            f"run {run.number} {label}: webhook "
            f"{fmt(figures['capture -> webhook arrival'])} s after the swap frame's capture"
        )
    return f"run {run.number} {label}: no alert ({'; '.join(run.notes) or 'timed out'})"


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def run_table(runs: list[Run]) -> list[str]:
    lines = [
        "| run | clip | T s | swap frame pts | open s | swap lag s | 1st fake analysed +s "
        "| fake frames to decide | window (fakes/frames, score) | capture->event s "
        "| event->queued s | queued->webhook s | capture->webhook s | signature | note |",
        "|" + "---|" * 15,
    ]
    for r in runs:
        f = r.parts()
        signature = "-" if r.arrival is None else ("ok" if r.arrival.verified else "BAD")
        opened = r.first_capture - r.added if r.first_capture else None
        lines.append(
            f"| {r.number} | {r.clip.name} | {fmt(r.clip.swap_s)} | {fmt(r.swap_pts)} "
            f"| {fmt(opened, 2)} | {fmt(r.swap_lag)} "
            f"| {fmt(f['capture -> 1st fake frame analysed'])} "
            f"| {r.fake_analysed if r.decided else '-'} | {r.window} "
            f"| {fmt(f['capture -> deepfake.suspected event'])} "
            f"| {fmt(f['  event -> queued in the outbox (sinks)'])} "
            f"| {fmt(f['  queued -> arrival (outbox worker, POST)'])} "
            f"| {fmt(f['capture -> webhook arrival']) if r.alerted else 'MISS'} | {signature} "
            f"| {'; '.join(r.notes)} |"
        )
    return lines


def summary_table(runs: list[Run]) -> list[str]:
    alerted = [r for r in runs if r.alerted]
    rows: dict[str, list[float]] = {}
    for r in alerted:
        for name, value in r.parts().items():
            rows.setdefault(name, []).extend([] if value is None else [value])
    rows["analysed frames: capture -> analysed"] = [v for r in runs for v in r.latencies]
    opened = [r.first_capture - r.added for r in runs if r.first_capture]
    rows["stream open: added -> first frame"] = opened
    lines = ["| figure (s) | median | p95 | min | max | n |", "|---|---|---|---|---|---|"]
    for name, values in rows.items():
        if values:
            lines.append(
                f"| {name} | {fmt(float(np.median(values)))} "
                f"| {fmt(common.percentile(values, 95))} "
                f"| {fmt(min(values))} | {fmt(max(values))} | {len(values)} |"
            )
    return lines


def open_time(url: str, options: dict[str, str], frames: int = 60) -> tuple[float, float]:
    """Seconds from opening ``url`` to its first decoded frame, and how much clip time its
    first ``frames`` frames ran ahead of their arrival (the probe's backlog)."""
    started, arrivals = time.time(), []
    with av.open(url, options=options, timeout=(10.0, 5.0)) as container:
        for frame in container.decode(video=0):
            arrivals.append((time.time() - started, frame.time))
            if len(arrivals) >= frames:
                break
    first = arrivals[0][0]
    return first, max((pts - (t - first) for t, pts in arrivals if pts is not None), default=0.0)


async def measure(
    args: argparse.Namespace, clips: list[Clip], urls: dict[str, str]
) -> tuple[Any, list[Run]]:
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="fakewatch-alert-latency-") as state:
        async with receiver.listening() as hook:
            endpoint = {
                "name": "receiver",
                "url": hook,
                "secrets": [receiver.secret],
                "allow_private": True,
                "events": ["deepfake.suspected"],
            }
            async with common.hosted(Path(state), **{"webhooks.endpoints": [endpoint]}) as (
                service,
                _,
            ):
                bench = Bench(service, receiver, args.timeout)
                # with --compare, each run off then on, so both see the same machine
                modes: tuple[bool | None, ...] = (False, True) if args.compare else (None,)
                runs = [
                    await bench.run(n, clips[0], urls[clips[0].name], mode)
                    for n in range(1, args.runs + 1)
                    for mode in modes
                ]
                for repeat in range(args.held_out_repeats):
                    for number, other in enumerate(clips[1:], start=1):
                        for mode in modes:
                            run_number = number + repeat * (len(clips) - 1)
                            runs.append(await bench.run(run_number, other, urls[other.name], mode))
                return service.pipeline, runs


def describe(
    args: argparse.Namespace,
    pipeline: Any,
    runs: list[Run],
    probing: dict[str, tuple[float, float]],
) -> list[str]:
    config, thresholds, clip = pipeline.config, pipeline.thresholds, runs[0].clip
    analysis, vote = config.analysis, config.vote
    main = [r for r in runs if r.clip is clip]
    held_out = [r for r in runs if r.clip is not clip]
    alerted = [r for r in main if r.alerted]
    out = [
        "## Alert latency",
        "",
        f"machine: {describe_machine(load=True)}",
        f"source: {clip.origin}" + (" (in-sample for the shipped model)" if clip.in_sample else ""),
        f"swap at T = {clip.swap_s:.3f} s; reference: the capture of the first frame received "
        "with pts >= T.",
        f"settings (defaults): analysis.fps {analysis.fps:g}, detect_every "
        f"{analysis.detect_every}; vote window_frames {vote.window_frames}, window_seconds "
        f"{vote.window_seconds:g}, min_frames {vote.min_frames}, enter {thresholds.enter:.3f} / "
        f"exit {thresholds.exit:.3f}",
        "",
        *run_table(runs),
        "",
        *summary_table(main),
        "",
    ]
    # the vote's floor: a window of `span` real frames needs this many fake ones
    span = min(vote.window_frames, math.floor(vote.window_seconds * analysis.fps) + 1)
    full = max(vote.min_frames, math.ceil(span * thresholds.enter - 1e-9))
    interval = 1 / analysis.fps
    out.append(
        f"vote floor: from a window of {span} real frames, {full} fake frames even if fakes "
        f"score 1.0 and reals 0.0: {(full - 1) * interval:.2f} s after the first analysed fake"
    )
    reals = [s for r in main for s in r.real_scores]
    fakes = [s for r in main for s in r.fake_scores]
    if reals and fakes:
        real, fake = float(np.median(reals)), float(np.median(fakes))
        if fake > thresholds.enter > real:
            needed = max(
                vote.min_frames, math.ceil(span * (thresholds.enter - real) / (fake - real) - 1e-9)
            )
            out.append(
                f"with the median scores (real {real:.3f}, fake {fake:.3f}): {needed} "
                f"frames, {(needed - 1) * interval:.2f} s"
            )
    for name, (first, ahead) in probing.items():
        out.append(
            f"RTSP open ({name}): first frame {first:.2f} s after av.open, then "
            f"{ahead:.2f} s of clip handed over at once"
        )
    if held_out:
        caught = [fmt(r.parts()["capture -> webhook arrival"], 2) for r in held_out if r.alerted]
        out.append(f"held-out pairs: {len(caught)}/{len(held_out)} alerted ({', '.join(caught)} s)")
    figures = (
        {
            name: [v for r in alerted if (v := r.parts()[name]) is not None]
            for name in alerted[0].parts()
        }
        if alerted
        else {}
    )
    webhook = figures.get("capture -> webhook arrival", [])
    delivery = figures.get("event -> webhook arrival (delivery)", [])
    events = figures.get("capture -> deepfake.suspected event", [])
    median = float(np.median(webhook)) if webhook else None
    out += [
        "",
        f"alerted {len(alerted)}/{len(main)} runs (misses {len(main) - len(alerted)})",
        f"event p95 {fmt(common.percentile(events, 95), 2)} s "
        f"(vote floor {(full - 1) * interval:.2f}-{full * interval:.2f} s)",
        f"webhook delivery p95 {fmt(common.percentile(delivery, 95), 3)} s",
        f"alert median {fmt(median, 2)} s (target {args.target:g} s)",
        f"alert p95 {fmt(common.percentile(webhook, 95), 2)} s (target {args.target:g} s)",
    ]
    return out


def compare(pipeline: Any, runs: list[Run]) -> list[str]:
    """Adaptive analysis off against on, run for run: alert latency, held-out alerts, and
    what the runs cost (frames analysed, CPU seconds of this process)."""
    analysis, main_clip = pipeline.config.analysis, runs[0].clip
    by_mode = {mode: [r for r in runs if r.mode == mode] for mode in ("off", "on")}

    def figures(group: list[Run]) -> dict[str, str]:
        main = [r for r in group if r.clip is main_clip]
        held = [r for r in group if r.clip is not main_clip]
        latency = [
            v
            for r in main
            if r.alerted and (v := r.parts()["capture -> webhook arrival"]) is not None
        ]
        caught = [r for r in held if r.alerted]
        held_latency = [
            v for r in caught if (v := r.parts()["capture -> webhook arrival"]) is not None
        ]
        return {
            "main pair alerted": f"{sum(r.alerted for r in main)}/{len(main)}",
            "alert median s": fmt(float(np.median(latency)) if latency else None, 2),
            "alert p95 s": fmt(common.percentile(latency, 95), 2),
            "alert max s": fmt(max(latency, default=None), 2),
            "held-out alerted": f"{len(caught)}/{len(held)}" if held else "-",
            "held-out latencies s": ", ".join(fmt(v, 2) for v in held_latency) or "-",
            "frames analysed per run (median)": fmt(
                float(np.median([r.analysed for r in group])), 0
            ),
            "frames dropped as calm per run (median)": fmt(
                float(np.median([r.calm for r in group])), 0
            ),
            "CPU s per run (median)": fmt(float(np.median([r.cpu_s for r in group])), 1),
        }

    off, on = figures(by_mode["off"]), figures(by_mode["on"])
    cpu = [
        b.cpu_s / a.cpu_s for a, b in zip(by_mode["off"], by_mode["on"], strict=True) if a.cpu_s > 0
    ]
    lines = [
        "## Adaptive analysis off and on, side by side",
        "",
        f"adaptive: calm_fps {analysis.calm_fps:g}, calm_detect_every "
        f"{analysis.calm_detect_every}, calm_margin {analysis.calm_margin:g}, calm_after_s "
        f"{analysis.calm_after_s:g}; full rate {analysis.fps:g} fps. Runs alternate off, on.",
        "",
        "| figure | adaptive off | adaptive on |",
        "|---|---|---|",
        *(f"| {name} | {off[name]} | {on[name]} |" for name in off),
        "",
        f"CPU on/off, run for run: median {fmt(float(np.median(cpu)) if cpu else None, 2)}x",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of the main pair")
    parser.add_argument("--source", choices=("auto", "live-swap", "demo"), default="auto")
    parser.add_argument("--held-out", action="store_true", help="also the Ewon_Spice pairs")
    parser.add_argument("--lead", type=float, default=8.0, help="real seconds before the swap")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds after the swap")
    parser.add_argument("--target", type=float, default=2.0, help="alert latency target (s)")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "fakewatch-alert-latency"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--held-out-repeats", type=int, default=1, help="runs of each held-out pair"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="every run with adaptive analysis off, then on; both reported side by side",
    )
    args = parser.parse_args(argv)
    if (reason := rtsp_camera_unavailable()) is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    pairs = (LIVE_SWAP / "real" / f"{MAIN_PAIR}.mp4").is_file() and args.source != "demo"
    if args.source == "live-swap" and not pairs:
        print(f"no development samples at {LIVE_SWAP}", file=sys.stderr)
        return 2
    clips = [
        live_swap_clip(MAIN_PAIR, args.cache, args.lead, in_sample=True) if pairs else demo_clip()
    ]
    if args.held_out and pairs:
        clips += [live_swap_clip(n, args.cache, args.lead, in_sample=False) for n in HELD_OUT_PAIRS]
    print(f"machine: {describe_machine(load=True)}\nsource: {clips[0].origin}", flush=True)
    with contextlib.ExitStack() as stack:
        urls = {c.name: stack.enter_context(RtspCamera(c.path)).start().url for c in clips}
        probing = {
            "default probing, as the service opens": open_time(urls[clips[0].name], RTSP_OPTIONS),
            "probing capped": open_time(urls[clips[0].name], FAST_OPEN_OPTIONS),
        }
        pipeline, runs = asyncio.run(measure(args, clips, urls))
    if args.compare:
        lines = []
        for mode in ("off", "on"):
            group = [r for r in runs if r.mode == mode]
            lines += [f"# Adaptive analysis {mode}", "", *describe(args, pipeline, group, probing)]
            lines.append("")
        text = "\n".join([*lines, *compare(pipeline, runs)])
    else:
        text = "\n".join(describe(args, pipeline, runs, probing))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
