"""What an observer of analysed frames is handed (a live scan's report, a benchmark)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fakewatch.engines.crop import Box, FaceCrop
from fakewatch.stream.analysis.state import StreamState
from fakewatch.stream.sources.frames import SourceFrame


@dataclass(frozen=True)
class FaceObservation:
    """One face of one analysed frame, as an observer sees it."""

    track: str
    box: Box
    crop: FaceCrop
    score: float
    area: float
    mask: np.ndarray


FrameObserver = Callable[[StreamState, SourceFrame, list[FaceObservation]], None]
"""Called with every analysed frame of every stream and the faces found in it."""
