"""Stream start: time to the first frame and to the first analysis of an RTSP stream,
with FFmpeg's own probe against the capped probe of ``sources.probe``, side by side.

    .venv/bin/python benchmarks/startup.py [--runs 10] [--clip PATH] [--out FILE]

The demo clip (``.cache/demo``, made by ``fakewatch.training.demo_clip``) is served by
``fakewatch.stream.rtsp_camera``, which starts it afresh for each connection. Two
services are hosted here at their defaults but for the probe: "FFmpeg's probe"
(``sources.probe.schemes: []``, FFmpeg's 5 s / 5 MB, as the service opened streams
before) and "capped probe" (the defaults of ``sources.probe``). The runs alternate
between them: each adds the stream, notes when its first frame arrives (the frame
slot's first ``put``) and when its first frame is analysed (a pipeline observer), then
removes it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import common

from fakewatch.engines.machine import cpu_name, describe_machine
from fakewatch.stream.config import ProbeConfig
from fakewatch.stream.rtsp_camera import RtspCamera, rtsp_camera_unavailable

DEMO = common.DEMO_CACHE / "WolfgangLanger_Pexels.mp4"
MODES = {
    "FFmpeg's probe": {"sources.probe.schemes": []},
    "capped probe": {},
}


class FirstAnalysis:
    """A pipeline observer: when each stream's first frame was analysed."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def __call__(self, state: Any, frame: Any, faces: list[Any]) -> None:
        self.at.setdefault(state.id, time.monotonic())


async def one_run(service: Any, seen: FirstAnalysis, url: str, name: str) -> tuple[float, float]:
    """Seconds from adding ``url`` to its first frame and to its first analysis."""
    pipeline = service.pipeline
    added = time.monotonic()
    state = await pipeline.add_url(url, name)
    first_frame = None
    try:
        deadline = added + 30
        while state.id not in seen.at and time.monotonic() < deadline:
            if first_frame is None and state.frames.received:
                first_frame = time.monotonic()
            await asyncio.sleep(0.002)
    finally:
        await pipeline.remove(state.id)
    if first_frame is None or state.id not in seen.at:
        raise RuntimeError(f"{name}: no frame analysed within 30 s")
    return first_frame - added, seen.at[state.id] - added


async def measure(url: str, runs: int) -> dict[str, dict[str, list[float]]]:
    figures: dict[str, dict[str, list[float]]] = {
        mode: {"first frame": [], "first analysis": []} for mode in MODES
    }
    async with contextlib.AsyncExitStack() as stack:
        services = {}
        for mode, overrides in MODES.items():
            service, _ = await stack.enter_async_context(common.hosted(**overrides))
            seen = FirstAnalysis()
            service.pipeline.observers.append(seen)
            services[mode] = (service, seen)
        for number in range(runs):
            for mode, (service, seen) in services.items():
                frame_s, analysis_s = await one_run(service, seen, url, f"startup-{number}")
                figures[mode]["first frame"].append(frame_s)
                figures[mode]["first analysis"].append(analysis_s)
                print(
                    f"run {number + 1} {mode}: first frame {frame_s:.3f} s, "
                    f"first analysis {analysis_s:.3f} s",
                    flush=True,
                )
    return figures


def report(figures: dict[str, dict[str, list[float]]]) -> str:
    probe = ProbeConfig()
    old, new = MODES
    lines = [
        f"Machine: {describe_machine(load=True)}",
        f"capped probe: analyzeduration {probe.analyzeduration_s:g} s, probesize "
        f"{probe.probesize} bytes; FFmpeg's probe: 5 s, 5000000 bytes",
        "",
        f"| added -> (s, median over runs) | {old} | {new} | ratio capped / FFmpeg's |",
        "|---|---|---|---|",
    ]
    for figure in ("first frame", "first analysis"):
        before = statistics.median(figures[old][figure])
        after = statistics.median(figures[new][figure])
        lines.append(f"| {figure} | {before:.3f} | {after:.3f} | {after / before:.3f} |")
    runs = len(figures[old]["first frame"])
    before = statistics.median(figures[old]["first analysis"])
    after = statistics.median(figures[new]["first analysis"])
    lines += [
        "",
        f"{runs} runs each, alternating ({cpu_name()})",
        f"first analysis: capped {after:.3f} s, FFmpeg's probe {before:.3f} s, "
        f"ratio {after / before:.3f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each probe")
    parser.add_argument("--clip", type=Path, default=DEMO, help="the clip served over RTSP")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    if (reason := rtsp_camera_unavailable()) is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    if not args.clip.is_file():
        print(f"{args.clip} is missing: make it with fakewatch.training.demo_clip", file=sys.stderr)
        return 2
    with RtspCamera(args.clip) as camera:
        figures = asyncio.run(measure(camera.start().url, args.runs))
    text = report(figures)
    print(text, flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
