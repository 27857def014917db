"""Faces found in a shared screen: a video call's gallery at 1920x1080, as the publisher
page's tab or window sharing sends it.

Builds screen frames from the demo clip's real face, tiled N x N like a call's gallery
(N = 1 to 7: one remote party up to 49 small ones), and runs the service's face detector
on them at several ``analysis.detect_size`` values, with the service's ``limits.min_face``
and no cap on the count. Prints, per gallery and size, the share of the participants'
faces found and the detection time as a ratio to the default size's, run side by side in
the same run. ``limits.max_faces`` (default 4) then caps how many of them are analysed.

    .venv/bin/python benchmarks/screen_faces.py [--frames 12]
"""

from __future__ import annotations

import argparse
import time

import av
import cv2
import numpy as np
from common import DEMO_CACHE

from fakewatch.engines.faces import RetinaFaceDetector
from fakewatch.engines.machine import cpu_name
from fakewatch.stream.config import AnalysisConfig, LimitsConfig

SCREEN = (1080, 1920)
GALLERIES = (1, 2, 3, 4, 5, 7)
SIZES = (640, 960, 1280)


def clip_frames(count: int) -> list[np.ndarray]:
    """``count`` frames spread over the demo clip, RGB."""
    clip = DEMO_CACHE / "WolfgangLanger_Pexels.mp4"
    if not clip.exists():
        raise SystemExit(f"{clip} is missing: run `make demo` once (it fetches the clip)")
    with av.open(str(clip)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    step = max(1, len(frames) // count)
    return frames[::step][:count]


def gallery(frames: list[np.ndarray], start: int, n: int) -> np.ndarray:
    """A screen with an ``n`` x ``n`` gallery of tiles, each a different clip frame."""
    height, width = SCREEN
    screen = np.full((height, width, 3), 24, np.uint8)
    tile_w, tile_h = width // n, height // n
    for index in range(n * n):
        frame = frames[(start + index) % len(frames)]
        scale = min(tile_w / frame.shape[1], tile_h / frame.shape[0]) * 0.96
        size = (int(frame.shape[1] * scale), int(frame.shape[0] * scale))
        tile = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        y = (index // n) * tile_h + (tile_h - size[1]) // 2
        x = (index % n) * tile_w + (tile_w - size[0]) // 2
        screen[y : y + size[1], x : x + size[0]] = tile
    return screen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=12, help="screens per gallery")
    args = parser.parse_args()
    analysis, limits = AnalysisConfig(), LimitsConfig()
    frames = clip_frames(args.frames * 2)
    detectors = {
        size: RetinaFaceDetector(
            score_threshold=analysis.detector_threshold,
            detect_size=size,
            min_face=limits.min_face,
            max_faces=64,
        )
        for size in SIZES
    }
    print(f"CPU: {cpu_name()}; screen {SCREEN[1]}x{SCREEN[0]}; {args.frames} screens a row")
    print(f"defaults: analysis.detect_size={analysis.detect_size}, "
          f"limits.min_face={limits.min_face}, limits.max_faces={limits.max_faces}")  # fmt: skip
    print("gallery  faces  " + "  ".join(f"found@{s:<4} time@{s:<4}" for s in SIZES))
    for n in GALLERIES:
        screens = [gallery(frames, i, n) for i in range(args.frames)]
        found: dict[int, float] = {}
        seconds: dict[int, float] = {}
        for size, detector in detectors.items():
            detector.detect(screens[0])  # warm
            started = time.perf_counter()
            counts = [len(detector.detect(screen)) for screen in screens]
            seconds[size] = time.perf_counter() - started
            found[size] = float(np.mean(counts)) / (n * n)
        base = seconds[analysis.detect_size]
        cells = "  ".join(f"{found[s]:>9.0%} {seconds[s] / base:>8.2f}x" for s in SIZES)
        print(f"{n}x{n}      {n * n:>5}  {cells}")


if __name__ == "__main__":
    main()
