"""One sampled frame through the pipeline: faces, one batched engine call, the votes.

The face stage finds and crops the frame's faces; all of its crops go to the
:class:`~fakewatch.stream.analysis.batcher.CropBatcher` as one job; each face's score
feeds its track's vote with the frame, the face's crop and mask as evidence, and each
track's vote decides for its face (the tracks not in the frame let time pass; a track
that ended closes its alert). Per-stage times, the frame's latency from its capture and
the stream's window score (the highest of its faces') are measured; observers see every
analysed frame.
"""

from __future__ import annotations

import time

import numpy as np

from fakewatch.stream.analysis.batcher import CropBatcher
from fakewatch.stream.analysis.decisions import Decisions, track_lost
from fakewatch.stream.analysis.events import Evidence
from fakewatch.stream.analysis.faces import FaceStage
from fakewatch.stream.analysis.observers import FaceObservation, FrameObserver
from fakewatch.stream.analysis.pace import Signals
from fakewatch.stream.analysis.state import StreamState, TrackVote, count_drop
from fakewatch.stream.analysis.tracker import Track
from fakewatch.stream.analysis.vote import Decision
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
    ) -> None:
        self.faces = faces
        self.batcher = batcher
        self.decisions = decisions
        self.metrics = metrics
        self.detect_every = detect_every
        self.observers: list[FrameObserver] = []

    async def analyse(self, state: StreamState, frame: SourceFrame) -> None:
        detect_every = self.detect_every
        if state.tuning is not None:
            detect_every = state.pace.detect_every(state.tuning.pace)
        detect = (
            state.analysed % detect_every == 0
            or not state.tracker.tracks
            or state.tracker.wants_detection
        )
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
            await self.decisions.end_track(state, ended, frame.capture_time, track_lost(ended))
        if not found:
            state.analysed += 1
            self.metrics.frames_analysed.labels(state.name).inc()
            await self.decisions.tick(state, frame.capture_time)
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
        decisions: dict[str, Decision | None] = {}
        for face in observations:
            voted = state.track_votes.get(face.track)
            if voted is None:
                voted = state.track_votes[face.track] = TrackVote(state.new_vote(), face.box)
            voted.box = face.box
            evidence = Evidence(
                frame=frame.image,
                mask=face.mask,
                crop=face.crop.image,
                face_box=face.box,
                crop_box=face.crop.box,
                score=face.score,
                capture_time=frame.capture_time,
                track=face.track,
            )
            decisions[face.track] = voted.vote.add(frame.capture_time, face.score, evidence)
        self._observe(state, frame, observations)
        frame_score = max(face.score for face in observations)
        self._pace(state, frame, detect, [track for track, _ in found], frame_score)
        self._finish(state, frame)
        for track, decision in decisions.items():
            await self.decisions.decide(state, track, decision, frame.capture_time)
        await self.decisions.tick(state, frame.capture_time, skip=decisions)
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
        scores = [frame_score, *(t.vote.score for t in state.track_votes.values())]
        signals = Signals(
            score=max((s for s in scores if s is not None), default=None),
            exit=state.tuning.exit_threshold,
            alerting=state.alerting,
            new_face=detect and any(track.hits == 1 for track in tracks),
            lost_track=detect and bool(state.tracker.ended),
            thumbnail=frame.thumbnail,
        )
        state.pace.observe(frame.capture_time, signals, state.tuning.pace)

    def _finish(self, state: StreamState, frame: SourceFrame) -> None:
        latency = time.time() - frame.capture_time
        state.last_latency_s = latency
        self.metrics.latency.labels(state.name).observe(latency)
        score = state.score
        if score is not None:
            self.metrics.score.labels(state.name).set(score)

    def _observe(
        self, state: StreamState, frame: SourceFrame, faces: list[FaceObservation]
    ) -> None:
        for observer in self.observers:
            observer(state, frame, faces)
