"""Pictures a person can check: masks as heatmaps over frames, boxes and scores."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fakewatch.engines.crop import Box


def heatmap_overlay(image: np.ndarray, mask: np.ndarray, floor: float = 0.1) -> np.ndarray:
    """``image`` (RGB uint8) with ``mask`` (same size, 0..1) as a JET heatmap.

    Pixels below ``floor`` stay untouched; above it the heatmap is blended in with an
    opacity that grows with the probability, so faint masks stay faint.
    """
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    colours = cv2.applyColorMap(np.clip(mask * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)
    alpha = (np.clip((mask - floor) / (1 - floor), 0, 1) * 0.6)[..., None]
    blended: np.ndarray = (image * (1 - alpha) + colours * alpha).astype(np.uint8)
    return blended


def draw_faces(
    image: np.ndarray, boxes: Sequence[Box], scores: Sequence[float], threshold: float
) -> np.ndarray:
    """Boxes in red (score at or above ``threshold``) or green, each with its score."""
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for box, score in zip(boxes, scores, strict=True):
        colour = (230, 40, 40) if score >= threshold else (40, 200, 80)
        p0, p1 = (round(box.x0), round(box.y0)), (round(box.x1), round(box.y1))
        cv2.rectangle(out, p0, p1, colour, thickness)
        cv2.putText(
            out,
            f"{score:.2f}",
            (p0[0], max(12, p0[1] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness + 0.2,
            colour,
            thickness,
            cv2.LINE_AA,
        )
    return out
