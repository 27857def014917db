"""One sampled frame through the pipeline: faces, one batched engine call, the votes.

The face stage finds and crops the frame's faces; all of its crops go to the
:class:`~fakewatch.stream.analysis.batcher.CropBatcher` as one job; each face's score
feeds its track's vote, the highest feeds the stream's vote with the frame as evidence,
and the stream's vote decides. Per-stage times, the frame's latency from its capture
and the stream's window score are measured; observers see every analysed frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fakewatch.stream.analysis.batcher import CropBatcher
from fakewatch.stream.analysis.decisions import Decisions
from fakewatch.stream.analysis.events import Evidence
from fakewatch.stream.analysis.faces import FaceStage
from fakewatch.stream.analysis.observers import FaceObservation, FrameObserver
from fakewatch.stream.analysis.pace import Signals
from fakewatch.stream.analysis.state import StreamState, count_drop
from fakewatch.stream.analysis.tracker import Track
from fakewatch.stream.analysis.vote import SlidingWindowVote
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.sources.frames import DropReason, SourceFrame


class FrameAnalyser:
    """Analyses one frame of a stream at a time; see the module docstring."""

    def __init__(
        self,
        faces: FaceStage,
        batcher: CropBatcher,
        decisions: Decisions,
        metrics: PipelineMetrics,
        detect_every: int,
        new_vote: Callable[..., SlidingWindowVote[Any]],
    ) -> None:
        self.faces = faces
        self.batcher = batcher
        self.decisions = decisions
        self.metrics = metrics
        self.detect_every = detect_every
        self.new_vote = new_vote
        self.observers: list[FrameObserver] = []

    async def analyse(self, state: StreamState, frame: SourceFrame) -> None:
        detect_every = self.detect_every
        if state.tuning is not None:
            detect_every = state.pace.detect_every(state.tuning.pace)
        detect = state.analysed % detect_every == 0 or not state.tracker.tracks
        started, decode_s = time.perf_counter(), frame.decode_s
        found = await self.faces.find(state, frame, detect)
        if found is None:  # detection hung or failed
            count_drop(state, DropReason.DETECTOR_FAILED, self.metrics)
            return
        faces_done = time.perf_counter()
        converting_s = frame.decode_s - decode_s  # RGB conversion, done in the face thread
        self.metrics.stage.labels("decode").observe(frame.decode_s)
        self.metrics.stage.labels("detect" if detect else "track").observe(
            faces_done - started - converting_s
        )
        if detect:
            self.metrics.faces_detected.labels(state.name).inc(len(found))
        for ended in state.tracker.ended:
            state.track_votes.pop(ended, None)
        if not found:
            state.analysed += 1
            self.metrics.frames_analysed.labels(state.name).inc()
            await self.decisions.decide(
                state, state.vote.tick(frame.capture_time), frame.capture_time
            )
            self._observe(state, frame, [])
            self._pace(state, frame, detect, [], None)
            self._finish(state, frame)
            return
        crops = np.stack([crop.image for _, crop in found])
        result = await self.batcher.segment(crops, state.name)
        if result is None:
            return  # dropped under load, counted by the batcher (and not as analysed)
        state.analysed += 1
        self.metrics.frames_analysed.labels(state.name).inc()
        inferred = time.perf_counter()
        self.metrics.stage.labels("infer").observe(inferred - faces_done)
        state.faces += len(found)
        self.metrics.faces.labels(state.name).inc(len(found))
        observations = [
            FaceObservation(
                track.id,
                track.box,
                crop,
                float(result.scores[i]),
                float(result.areas[i]),
                result.masks[i],
            )
            for i, (track, crop) in enumerate(found)
        ]
        for face in observations:
            track_vote = state.track_votes.get(face.track)
            if track_vote is None:
                track_vote = state.track_votes[face.track] = self.new_vote(state.thresholds)
            track_vote.add(frame.capture_time, face.score)
        best = max(observations, key=lambda face: face.score)
        evidence = Evidence(
            frame=frame.image,
            mask=best.mask,
            crop=best.crop.image,
            face_box=best.box,
            crop_box=best.crop.box,
            score=best.score,
            capture_time=frame.capture_time,
            track=best.track,
        )
        decision = state.vote.add(frame.capture_time, best.score, evidence)
        self._observe(state, frame, observations)
        self._pace(state, frame, detect, [track for track, _ in found], best.score)
        self._finish(state, frame)
        await self.decisions.decide(state, decision, frame.capture_time)
        self.metrics.stage.labels("vote").observe(time.perf_counter() - inferred)

    def _pace(
        self,
        state: StreamState,
        frame: SourceFrame,
        detect: bool,
        tracks: list[Track],
        frame_score: float | None,
    ) -> None:
        """Tell the stream's pace what this frame showed (new faces and lost tracks are
        known on detection frames only)."""
        if state.tuning is None:
            return
        scores = [state.vote.score, frame_score, *(v.score for v in state.track_votes.values())]
        signals = Signals(
            score=max((s for s in scores if s is not None), default=None),
            exit=state.vote.exit,
            alerting=state.vote.alerting,
            new_face=detect and any(track.hits == 1 for track in tracks),
            lost_track=detect and bool(state.tracker.ended),
            thumbnail=frame.thumbnail,
        )
        state.pace.observe(frame.capture_time, signals, state.tuning.pace)

    def _finish(self, state: StreamState, frame: SourceFrame) -> None:
        latency = time.time() - frame.capture_time
        state.last_latency_s = latency
        self.metrics.latency.labels(state.name).observe(latency)
        score = state.vote.score
        if score is not None:
            self.metrics.score.labels(state.name).set(score)

    def _observe(
        self, state: StreamState, frame: SourceFrame, faces: list[FaceObservation]
    ) -> None:
        for observer in self.observers:
            observer(state, frame, faces)
