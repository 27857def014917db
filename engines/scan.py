"""Scanning a video or image file: per-frame face scores, a video score and a verdict.

The video score is :func:`fakewatch.engines.aggregate.video_score` of the frame scores
(the highest sliding-window mean), the rule a live stream alerts on, and the verdict
compares it with the bundle's calibrated ``suspect`` threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from fakewatch.engines.aggregate import DEFAULT_WINDOW, video_score
from fakewatch.engines.analyse import FaceAnalyser, FrameResult
from fakewatch.engines.media import Frame, is_image, iter_frames, probe_video

UNCALIBRATED_THRESHOLD = 0.5
DEFAULT_ANALYSIS_FPS = 5.0


class FaceReport(BaseModel):
    box: list[float] = Field(description="x0, y0, x1, y1 in frame pixels")
    score: float
    area: float = Field(description="fraction of the face region scored >= 0.5")


class FrameReport(BaseModel):
    index: int
    time_s: float
    faces: list[FaceReport]


class ScanReport(BaseModel):
    """What ``fakewatch scan --report`` writes."""

    source: str
    score: float | None = Field(description="video-level score 0..1, null without faces")
    verdict: Literal["fake", "real", "no-face"]
    threshold: float
    threshold_calibrated: bool
    window: int
    engine: str
    model_sha256: str
    frames_analysed: int
    frames: list[FrameReport]


def stride_for(rate: float, fps: float = DEFAULT_ANALYSIS_FPS) -> int:
    """Every n-th frame of a ``rate``-fps video gives about ``fps`` analysed frames/s."""
    return max(1, round(rate / fps)) if rate else 1


def analysis_stride(path: Path, fps: float = DEFAULT_ANALYSIS_FPS) -> int:
    """Analyse about ``fps`` frames per second of a video: every n-th frame."""
    return 1 if is_image(path) else stride_for(probe_video(path).fps, fps)


def suspect_threshold(analyser: FaceAnalyser) -> tuple[float, bool]:
    """The bundle's calibrated ``suspect`` threshold, or 0.5 flagged as uncalibrated."""
    threshold = analyser.engine.bundle.manifest.thresholds.get("suspect")
    if threshold is None:
        return UNCALIBRATED_THRESHOLD, False
    return threshold.value, True


def scan_file(
    path: Path,
    analyser: FaceAnalyser,
    every: int,
    window: int = DEFAULT_WINDOW,
    on_frame: Callable[[Frame, FrameResult], None] | None = None,
    max_frames: int | None = None,
) -> ScanReport:
    """Analyse every ``every``-th frame of ``path`` and build the report."""
    threshold, calibrated = suspect_threshold(analyser)
    frames: list[FrameReport] = []
    frame_scores: list[float] = []
    for frame, result in analyser.analyse(iter_frames(path, every, max_frames)):
        faces = [FaceReport(box=f.box.as_list(), score=f.score, area=f.area) for f in result.faces]
        frames.append(FrameReport(index=frame.index, time_s=round(frame.time_s, 3), faces=faces))
        if result.score is not None:
            frame_scores.append(result.score)
        if on_frame is not None:
            on_frame(frame, result)
    score = video_score(frame_scores, window)
    verdict: Literal["fake", "real", "no-face"] = (
        "no-face" if score is None else "fake" if score >= threshold else "real"
    )
    return ScanReport(
        source=str(path),
        score=score,
        verdict=verdict,
        threshold=threshold,
        threshold_calibrated=calibrated,
        window=window,
        engine=analyser.engine.info.label,
        model_sha256=analyser.engine.bundle.model_sha256,
        frames_analysed=len(frames),
        frames=frames,
    )
