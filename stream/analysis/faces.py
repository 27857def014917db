"""The face stage: a frame's faces found, followed and cropped, on the face threads.

Detection runs on every ``analysis.detect_every``-th analysed frame of a stream (and
whenever it has no face track, or a track's flow failed); on the frames between, the
tracked boxes follow the faces by optical flow (``analysis.track_motion``, see
:mod:`~fakewatch.stream.analysis.tracker`). Each face is cropped with the engines' crop
rule. The RGB conversion, detection, flow and crops run on
the detector's own threads under a
:class:`~fakewatch.stream.analysis.supervision.Supervisor`: a call is bounded by
``analysis.detect_timeout_s``, and a hung detector, or ``analysis.restart_after_errors``
failing calls in a row, restart it; the frame is then dropped (``detector_failed``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from fakewatch.engines.crop import FaceCrop, crop_face
from fakewatch.engines.faces import FaceDetector
from fakewatch.stream.analysis.state import StreamState
from fakewatch.stream.analysis.supervision import (
    AbandonedError,
    ComponentFailed,
    HealthObserver,
    Supervisor,
)
from fakewatch.stream.analysis.tracker import Track
from fakewatch.stream.config import AnalysisConfig, LimitsConfig
from fakewatch.stream.logs import LOGGER_NAME
from fakewatch.stream.sources.frames import SourceFrame

logger = logging.getLogger(f"{LOGGER_NAME}.pipeline")

BLANK_FRAME = (480, 640, 3)
"""The frame a detector's warm-up call sees."""


class FaceStage:
    """Finds, follows and crops the faces of one frame; see the module docstring."""

    def __init__(
        self,
        detector: FaceDetector,
        analysis: AnalysisConfig,
        limits: LimitsConfig,
        crop_size: int,
        crop_margin: float,
        *,
        detector_factory: Callable[[], FaceDetector] | None = None,
        on_health: HealthObserver | None = None,
    ) -> None:
        """``detector_factory`` opens a fresh detector when one hung or kept failing;
        without it the same one is reused on fresh threads."""
        self.limits = limits
        self.crop_size, self.crop_margin = crop_size, crop_margin
        self.follow = analysis.track_motion == "flow"
        """Whether boxes follow the faces between detections (optical flow)."""
        self.detection: Supervisor[FaceDetector] = Supervisor(
            detector,
            name="detector",
            calls="detection calls",
            timeout_key="analysis.detect_timeout_s",
            logger=logger,
            warm_up=lambda opened: opened.detect(np.zeros(BLANK_FRAME, np.uint8)),
            reopen=detector_factory,
            workers=analysis.detector_workers,
            call_timeout_s=analysis.detect_timeout_s,
            restart_after_errors=analysis.restart_after_errors,
            restart_timeout_s=analysis.restart_timeout_s,
            on_health=on_health,
        )

    @property
    def detector(self) -> FaceDetector:
        """The detector in use (a fresh one after each restart)."""
        return self.detection.component

    async def warm_up(self) -> None:
        """One detection on a blank frame, bounded by ``analysis.restart_timeout_s``."""
        await self.detection.warm_up()

    async def close(self, drain_s: float = 0.0) -> None:
        """Stop the face threads; a call under way gets up to ``drain_s`` seconds to end."""
        await self.detection.close(drain_s)

    async def find(
        self, state: StreamState, frame: SourceFrame, detect: bool
    ) -> list[tuple[Track, FaceCrop]] | None:
        """The frame's faces, each with its track and crop, detected (``detect``) or
        followed; ``None`` when the call hung or failed, or while the detector restarts
        (the caller drops the frame)."""
        generation = self.detection.generation
        try:
            return await self.detection.call(
                lambda detector: self._find(detector, state, frame, detect, generation),
                what="face detection",
                stream=state.name,
            )
        except ComponentFailed:
            return None

    def _find(
        self,
        detector: FaceDetector,
        state: StreamState,
        frame: SourceFrame,
        detect: bool,
        generation: int,
    ) -> list[tuple[Track, FaceCrop]]:
        """Convert the frame to RGB, detect (or follow the tracked boxes) and crop; runs on a
        face thread. A call that outlived a detector restart (``generation`` is old)
        leaves the tracker be."""
        limits = self.limits
        max_faces = limits.max_faces if state.tuning is None else state.tuning.max_faces
        image = frame.image
        if detect:
            detected = detector.detect(image)
            if generation != self.detection.generation:
                raise AbandonedError("the detector was restarted during this call")
            faces = [
                face for face in detected if min(face.box.width, face.box.height) >= limits.min_face
            ][:max_faces]
            tracks = state.tracker.update(faces, image if self.follow else None)
        elif self.follow:
            tracks = state.tracker.follow(image)[:max_faces]
        else:
            tracks = state.tracker.tracks[:max_faces]
        return [
            (track, crop_face(image, track.box, self.crop_size, self.crop_margin))
            for track in tracks
        ]
