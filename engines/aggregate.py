"""From frame scores to a decision over time: the rule the stream's vote also uses.

A stream (or a video file) is judged by a sliding window over its analysed frames that
had a face: the window's score is the mean of its frame scores, and a frame's score is
the highest score of the faces in it. A video's score is the highest window score it
reached, i.e. the score at which a live stream would have raised an alert.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_WINDOW = 8


def window_scores(frame_scores: Sequence[float], window: int = DEFAULT_WINDOW) -> np.ndarray:
    """Mean of each run of ``window`` consecutive frame scores (fewer at the start).

    The first ``window - 1`` entries average the frames seen so far, as a live stream
    does before its window fills.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    scores = np.asarray(frame_scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    cumulative = np.concatenate([[0.0], np.cumsum(scores)])
    ends = np.arange(1, scores.size + 1)
    starts = np.maximum(0, ends - window)
    means: np.ndarray = (cumulative[ends] - cumulative[starts]) / (ends - starts)
    return means


def video_score(frame_scores: Sequence[float], window: int = DEFAULT_WINDOW) -> float | None:
    """The highest window score of a video; ``None`` when no frame had a face."""
    windows = window_scores(frame_scores, window)
    if windows.size == 0:
        return None
    if windows.size >= window:
        windows = windows[window - 1 :]  # only full windows once there are enough frames
    return float(windows.max())
