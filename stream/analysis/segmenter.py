"""What turns face crops into masks and scores: the :class:`Segmenter` interface, and
the engine in this process behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fakewatch.engines.runtimes.base import Engine


class Segmenter(Protocol):
    """What the pipeline runs crops through: a local engine, or a cluster's shared one.

    ``segment`` takes a whole batch of RGB ``uint8 (N, S, S, 3)`` crops and returns
    ``(masks (N, S, S) float32 in 0..1, scores (N,), areas (N,))``. It is called from a
    worker thread, one call at a time.
    """

    max_batch: int

    def segment(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class LocalSegmenter:
    """An :class:`Engine` in this process, scoring with its bundle's scoring rule."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.max_batch = engine.max_batch
        self._margin = engine.bundle.spec.crop_margin
        self._scoring = engine.bundle.manifest.scoring

    def segment(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        masks = self.engine.infer_batches(crops)
        scores, areas = self._scoring.score(masks, self._margin)
        return masks, scores, areas


@dataclass
class Segmentation:
    """One frame's result: a mask, score and area per crop, in the order submitted."""

    masks: np.ndarray
    scores: np.ndarray
    areas: np.ndarray
