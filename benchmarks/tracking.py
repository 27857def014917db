"""Face boxes between detections: followed by optical flow against frozen, per clip.

    .venv/bin/python benchmarks/tracking.py [--seconds 12] [--real 8] [--out DIR]

Each clip is decoded at the service's analysis rate (``analysis.fps``). The detector
runs on every frame to give the reference box of the largest face; then the service's
schedule is replayed twice: detection on every ``analysis.detect_every``-th frame (and,
for the followed boxes, on the frame after a failed flow, as the service does), and on
the frames between either the box followed by :class:`FaceTracker`'s flow or the last
detected box (frozen, ``track_motion: none``). Each box becomes the square crop the
engine sees (margin 1.3), and on the frames between, its IoU with the reference's crop
is the figure. The CPU time (this thread's) of each follow and each detection is
measured in the same run, so their ratio says what following costs.

The clips: the demo clip (``.cache/demo``, made by ``fakewatch.training.demo_clip``)
still, and under a crop window that pans, zooms, or both (the face moves as with a
moving camera); with ``../shared/data``, also its real videos where people move.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import common
import cv2
import numpy as np

from fakewatch.engines.crop import Box, square_box
from fakewatch.engines.faces import Face, FaceDetector, default_face_detector
from fakewatch.engines.machine import cpu_name, describe_machine
from fakewatch.stream.analysis.tracker import FaceTracker
from fakewatch.stream.config import AnalysisConfig

DEMO = common.DEMO_CACHE / "WolfgangLanger_Pexels.mp4"
REAL_FOLDERS = ("real-faces/videos", "real-more/videos")
CROP_MARGIN = 1.3


def frames_at(path: Path, fps: float, seconds: float) -> list[np.ndarray]:
    """The RGB frames of ``path`` sampled at ``fps`` (as the service samples), for at
    most ``seconds``."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.time or 0.0)
            if t >= seconds:
                break
            if t + 1e-6 >= len(frames) / fps:
                frames.append(frame.to_ndarray(format="rgb24"))
    return frames


def window(
    frames: list[np.ndarray], fps: float, path: Callable[[float], tuple[float, float, float]]
) -> list[np.ndarray]:
    """``frames`` seen through a moving crop window: ``path(t)`` at t seconds gives its
    centre (fractions of the frame) and its size (fraction of the frame), and the
    window is scaled back to the frame's size."""
    out = []
    for i, image in enumerate(frames):
        height, width = image.shape[:2]
        cx, cy, size = path(i / fps)
        w, h = width * size, height * size
        x0 = min(max(0.0, cx * width - w / 2), width - w)
        y0 = min(max(0.0, cy * height - h / 2), height - h)
        matrix = np.array([[w / width, 0, x0], [0, h / height, y0]], np.float32)
        out.append(
            cv2.warpAffine(
                image, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            )
        )
    return out


def pan(t: float) -> tuple[float, float, float]:
    """0.6 of the frame, left to right and back every 6 s, up and down every 4 s."""
    return 0.5 + 0.2 * math.sin(math.pi * t / 3), 0.5 + 0.15 * math.sin(math.pi * t / 2), 0.6


def zoom(t: float) -> tuple[float, float, float]:
    """In and out every 6 s, between the whole frame and half of it."""
    return 0.5, 0.45, 0.75 + 0.25 * math.cos(math.pi * t / 3)


def pan_zoom(t: float) -> tuple[float, float, float]:
    cx, cy, _ = pan(t)
    return cx, cy, zoom(t)[2] * 0.8


def synthetic_clips(fps: float, seconds: float) -> Iterator[tuple[str, list[np.ndarray]]]:
    frames = frames_at(DEMO, fps, seconds)
    yield "demo, still", frames
    yield "demo, pan", window(frames, fps, pan)
    yield "demo, zoom", window(frames, fps, zoom)
    yield "demo, pan and zoom", window(frames, fps, pan_zoom)


def real_clips(
    data: Path, count: int, fps: float, seconds: float
) -> Iterator[tuple[str, list[np.ndarray]]]:
    paths = sorted(p for folder in REAL_FOLDERS for p in (data / folder).glob("*.*"))
    for path in paths[:count]:
        yield path.name, frames_at(path, fps, seconds)


@dataclass
class Row:
    clip: str
    frames: int
    between: int
    followed: list[float]
    frozen: list[float]
    failures: int
    follow_s: list[float]
    detect_s: list[float]


def largest(faces: list[Face]) -> Face | None:
    return max(faces, key=lambda face: face.box.area) if faces else None


def crop_iou(box: Box, reference: Box) -> float:
    return square_box(box, CROP_MARGIN).iou(square_box(reference, CROP_MARGIN))


def measure(
    name: str, frames: list[np.ndarray], detector: FaceDetector, analysis: AnalysisConfig
) -> Row:
    """Replays the service's schedule on ``frames`` with followed and frozen boxes."""
    row = Row(name, len(frames), 0, [], [], 0, [], [])
    reference: list[Face | None] = []
    for image in frames:  # detection is deterministic: the schedules reuse these
        started = time.thread_time()
        reference.append(largest(detector.detect(image)))
        row.detect_s.append(time.thread_time() - started)
    followed, frozen = FaceTracker(analysis.track_iou), FaceTracker(analysis.track_iou)
    for i, image in enumerate(frames):
        scheduled = i % analysis.detect_every == 0
        for tracker, follow in ((followed, True), (frozen, False)):
            if scheduled or not tracker.tracks or tracker.wants_detection:
                face = reference[i]
                tracker.update([face] if face else [], image if follow else None)
            elif follow:
                started = time.thread_time()
                before = tracker.wants_detection
                tracker.follow(image)
                row.follow_s.append(time.thread_time() - started)
                row.failures += tracker.wants_detection and not before
        truth = reference[i]
        if scheduled or truth is None or not (followed.tracks and frozen.tracks):
            continue
        row.between += 1  # a frame between detections where both have a box
        row.followed.append(crop_iou(followed.tracks[0].box, truth.box))
        row.frozen.append(crop_iou(frozen.tracks[0].box, truth.box))
    return row


def share(values: list[float], below: float) -> float:
    return sum(v < below for v in values) / len(values) if values else float("nan")


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def report(rows: list[Row], analysis: AnalysisConfig) -> str:
    lines = [
        f"Machine: {describe_machine()}",
        f"Schedule: analysis.fps {analysis.fps:g}, detect_every {analysis.detect_every}; "
        "crop IoU with per-frame detection on the frames between detections",
        "",
        "| clip | frames | between | IoU followed | IoU frozen | followed < 0.7 | "
        "frozen < 0.7 | flow failed | follow ms | detect ms | follow / detect |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if not row.between:
            continue
        follow_ms, detect_ms = 1000 * mean(row.follow_s), 1000 * mean(row.detect_s)
        lines.append(
            f"| {row.clip} | {row.frames} | {row.between} | {mean(row.followed):.3f} | "
            f"{mean(row.frozen):.3f} | {share(row.followed, 0.7):.0%} | "
            f"{share(row.frozen, 0.7):.0%} | {row.failures} | {follow_ms:.2f} | "
            f"{detect_ms:.2f} | {follow_ms / detect_ms:.3f} |"
        )
    followed = [v for row in rows for v in row.followed]
    frozen = [v for row in rows for v in row.frozen]
    follow_s = [v for row in rows for v in row.follow_s]
    detect_s = [v for row in rows for v in row.detect_s]
    lines += [
        "",
        f"all clips: crop IoU followed {mean(followed):.3f}, frozen {mean(frozen):.3f} "
        f"({len(followed)} frames between detections)",
        f"CPU per frame: follow {1000 * mean(follow_s):.2f} ms, detect "
        f"{1000 * mean(detect_s):.2f} ms; ratio follow / detect "
        f"{mean(follow_s) / mean(detect_s):.3f} ({cpu_name()})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds of each clip")
    parser.add_argument(
        "--real", type=int, default=100, help="real videos from ../shared/data (0: none)"
    )
    parser.add_argument("--data", type=Path, default=common.SHARED_DATA)
    parser.add_argument("--out", type=Path, help="folder tracking.md is written to")
    args = parser.parse_args(argv)
    if not DEMO.is_file():
        print(f"{DEMO} is missing: make it with fakewatch.training.demo_clip", file=sys.stderr)
        return 2
    analysis = AnalysisConfig()
    detector = default_face_detector(
        score_threshold=analysis.detector_threshold, detect_size=analysis.detect_size, threads=1
    )
    clips = list(synthetic_clips(analysis.fps, args.seconds))
    if args.real and args.data.is_dir():
        clips += real_clips(args.data, args.real, analysis.fps, args.seconds)
    rows = []
    for name, frames in clips:
        rows.append(measure(name, frames, detector, analysis))
        print(f"measured {name}: {len(frames)} frames", flush=True)
    text = report(rows, analysis)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "tracking.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
