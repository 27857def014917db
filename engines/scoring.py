"""From a face's manipulation mask to one score: the single rule used everywhere.

The score of a crop is the mean of the highest ``top_fraction`` of mask probabilities
inside the face region, an ellipse inscribed in the original (un-enlarged) face box at
the centre of the crop. Averaging the top few percent rather than taking the maximum
makes one hot pixel harmless while a small swapped region (mouth, eyes) still counts,
and ignoring the margin keeps the background out of the score. The manipulated
``area`` is the fraction of the region with a probability of at least
``area_threshold``; it is reported beside the score as evidence, not used to decide.

A bundle may score by *contrast* instead (``rule="contrast"``): the same top-fraction
mean inside the face ellipse minus the one in a ring just outside it (``ring`` radii,
in face-ellipse radii), clipped to 0..1. Camera noise, compression and an unusual
skin tone raise a model's output inside and outside the face alike; a pasted face
raises it inside only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DEFAULT_TOP_FRACTION = 0.05
DEFAULT_AREA_THRESHOLD = 0.5
DEFAULT_RING = (1.1, 1.3)
RULES = ("top", "contrast")


@dataclass(frozen=True)
class MaskScore:
    """Score (0..1) and manipulated-area fraction (0..1) of one face crop."""

    score: float
    area: float


@lru_cache(maxsize=16)
def face_region(size: int, margin: float) -> np.ndarray:
    """Boolean mask of the ellipse inscribed in the face box at the centre of a crop."""
    radius = size / (2 * margin)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    centre = size / 2
    inside = ((xx - centre) / radius) ** 2 + ((yy - centre) / radius) ** 2 <= 1.0
    inside.setflags(write=False)
    return np.asarray(inside, dtype=bool)


@lru_cache(maxsize=16)
def ring_region(size: int, margin: float, ring: tuple[float, float] = DEFAULT_RING) -> np.ndarray:
    """Boolean mask of the ring between ``ring[0]`` and ``ring[1]`` face-ellipse radii."""
    radius = size / (2 * margin)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    centre = size / 2
    distance = np.sqrt(((xx - centre) / radius) ** 2 + ((yy - centre) / radius) ** 2)
    inside = (distance >= ring[0]) & (distance <= ring[1])
    inside.setflags(write=False)
    return np.asarray(inside, dtype=bool)


def _top_mean(values: np.ndarray, top_fraction: float) -> np.ndarray:
    k = max(1, round(values.shape[1] * top_fraction))
    top = np.partition(values, values.shape[1] - k, axis=1)[:, -k:]
    result: np.ndarray = top.mean(axis=1, dtype=np.float64)
    return result


def score_masks(
    masks: np.ndarray,
    margin: float,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    area_threshold: float = DEFAULT_AREA_THRESHOLD,
    rule: str = "top",
    ring: tuple[float, float] = DEFAULT_RING,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and areas of a batch of square masks ``(N, S, S)`` with values in 0..1."""
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
        raise ValueError(f"expected square masks of shape (N, S, S), got {masks.shape}")
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    if rule not in RULES:
        raise ValueError(f"unknown scoring rule {rule!r}; known: {RULES}")
    region = face_region(masks.shape[1], margin)
    inside = masks[:, region]
    scores = _top_mean(inside, top_fraction)
    if rule == "contrast":
        outside = masks[:, ring_region(masks.shape[1], margin, tuple(ring))]
        scores = np.clip(scores - _top_mean(outside, top_fraction), 0.0, 1.0)
    areas = (inside >= area_threshold).mean(axis=1, dtype=np.float64)
    return scores.astype(np.float32), areas.astype(np.float32)


def score_mask(
    mask: np.ndarray,
    margin: float,
    top_fraction: float = DEFAULT_TOP_FRACTION,
    area_threshold: float = DEFAULT_AREA_THRESHOLD,
    rule: str = "top",
    ring: tuple[float, float] = DEFAULT_RING,
) -> MaskScore:
    """Score and area of one square mask ``(S, S)``; see the module docstring."""
    scores, areas = score_masks(mask[None], margin, top_fraction, area_threshold, rule, ring)
    return MaskScore(score=float(scores[0]), area=float(areas[0]))
