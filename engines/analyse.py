"""Frames in, scored faces out: detection, cropping, batched inference and scoring.

:class:`FaceAnalyser` is the offline path shared by ``fakewatch scan`` and evaluation;
the live service uses the same pieces (detector, ``crop_face``, one engine call per
batch of crops, ``score_masks``) with tracking and a cross-stream batcher around them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from fakewatch.engines.crop import Box, crop_face
from fakewatch.engines.faces import FaceDetector
from fakewatch.engines.media import Frame
from fakewatch.engines.runtimes.base import Engine


@dataclass
class FaceResult:
    """One face in one frame: where it is, how manipulated it looks, and its mask."""

    box: Box
    crop_box: Box
    detector_score: float
    score: float = 0.0
    area: float = 0.0
    mask: np.ndarray | None = field(default=None, repr=False)
    crop: np.ndarray | None = field(default=None, repr=False)


@dataclass
class FrameResult:
    """The faces found in one analysed frame."""

    index: int
    time_s: float
    faces: list[FaceResult]

    @property
    def score(self) -> float | None:
        """The highest face score, ``None`` when the frame has no face."""
        return max((face.score for face in self.faces), default=None)


class FaceAnalyser:
    """Detects, crops and segments faces, running the engine on batches of crops.

    Crops from consecutive frames are gathered until ``batch_size`` crops are waiting,
    then segmented in one engine call. ``keep_masks`` keeps each face's mask and crop
    on its :class:`FaceResult` (for saving masks or evidence).
    """

    def __init__(
        self,
        engine: Engine,
        detector: FaceDetector,
        batch_size: int = 8,
        keep_masks: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.engine = engine
        self.detector = detector
        self.batch_size = min(batch_size, engine.max_batch)
        self.keep_masks = keep_masks
        spec = engine.bundle.spec
        self._size, self._margin = spec.input_size, spec.crop_margin
        self._scoring = engine.bundle.manifest.scoring

    def analyse(self, frames: Iterable[Frame]) -> Iterator[tuple[Frame, FrameResult]]:
        """Yield every frame with its result, in order."""
        pending: list[tuple[Frame, FrameResult]] = []
        crops: list[np.ndarray] = []
        for frame in frames:
            result = FrameResult(frame.index, frame.time_s, [])
            for face in self.detector.detect(frame.image):
                crop = crop_face(frame.image, face.box, self._size, self._margin)
                result.faces.append(FaceResult(face.box, crop.box, face.score))
                crops.append(crop.image)
            pending.append((frame, result))
            if len(crops) >= self.batch_size:
                yield from self._flush(pending, crops)
                pending, crops = [], []
        yield from self._flush(pending, crops)

    def _flush(
        self, pending: list[tuple[Frame, FrameResult]], crops: list[np.ndarray]
    ) -> Iterator[tuple[Frame, FrameResult]]:
        if crops:
            batch = np.stack(crops)
            masks = self.engine.infer_batches(batch)
            scores, areas = self._scoring.score(masks, self._margin)
            faces = [face for _, result in pending for face in result.faces]
            for i, face in enumerate(faces):
                face.score, face.area = float(scores[i]), float(areas[i])
                if self.keep_masks:
                    face.mask, face.crop = masks[i], batch[i]
        yield from pending
