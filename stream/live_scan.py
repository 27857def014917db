"""Scanning a live URL for a while: the service's pipeline, the file scan's report."""

from __future__ import annotations

import asyncio
from typing import Literal

from fakewatch.engines.aggregate import video_score
from fakewatch.engines.scan import FaceReport, FrameReport, ScanReport
from fakewatch.stream.analysis.events import EventSink
from fakewatch.stream.analysis.observers import FaceObservation
from fakewatch.stream.analysis.pipeline import Pipeline
from fakewatch.stream.analysis.state import StreamState
from fakewatch.stream.sources.frames import SourceFrame


async def scan_live(
    url: str, pipeline: Pipeline, seconds: float, events: EventSink | None = None
) -> ScanReport:
    """Watch ``url`` for ``seconds`` through ``pipeline`` (started here) and report on it.

    Frame times are seconds since the first analysed frame. The video score is the
    highest window score, as for a file; ``events`` (if given) receives the decisions the
    service would have made.
    """
    frames: list[FrameReport] = []
    scores: list[float] = []
    first: list[float] = []

    def observe(state: StreamState, frame: SourceFrame, faces: list[FaceObservation]) -> None:
        if not first:
            first.append(frame.capture_time)
        reports = [
            FaceReport(box=face.box.as_list(), score=face.score, area=face.area) for face in faces
        ]
        frames.append(
            FrameReport(
                index=frame.index, time_s=round(frame.capture_time - first[0], 3), faces=reports
            )
        )
        if faces:
            scores.append(max(face.score for face in faces))

    pipeline.observers.append(observe)
    if events is not None:
        pipeline.sinks.append(events)
    await pipeline.start()
    try:
        state = await pipeline.add_url(url, "scan")
        await asyncio.sleep(seconds)
        description = state.description
    finally:
        await pipeline.close()
    window = pipeline.config.vote.window_frames
    score = video_score(scores, window)
    threshold = pipeline.thresholds.enter
    verdict: Literal["fake", "real", "no-face"] = (
        "no-face" if score is None else "fake" if score >= threshold else "real"
    )
    segmenter = pipeline.segmenter
    engine = getattr(segmenter, "engine", None)
    return ScanReport(
        source=description,
        score=score,
        verdict=verdict,
        threshold=threshold,
        threshold_calibrated=pipeline.thresholds.calibrated,
        window=window,
        engine=engine.info.label if engine else type(segmenter).__name__,
        model_sha256=engine.bundle.model_sha256 if engine else "",
        frames_analysed=len(frames),
        frames=frames,
    )
