"""Face boxes and the one cropping rule used by training and by serving."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates, ``x1``/``y1`` exclusive."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def iou(self, other: Box) -> float:
        """Intersection over union with another box (0 when either is empty)."""
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def scaled(self, factor: float) -> Box:
        """The box with every coordinate multiplied by ``factor`` (for resized frames)."""
        return Box(self.x0 * factor, self.y0 * factor, self.x1 * factor, self.y1 * factor)

    def as_list(self) -> list[float]:
        return [round(v, 1) for v in (self.x0, self.y0, self.x1, self.y1)]


def square_box(box: Box, margin: float) -> Box:
    """The square around ``box``'s centre whose side is ``margin`` times its longer side.

    FaceForensics++ crops faces this way with a margin of 1.3.
    """
    if box.width <= 0 or box.height <= 0:
        raise ValueError(f"face box must have a positive size, got {box}")
    cx, cy = box.center
    half = max(box.width, box.height) * margin / 2
    return Box(cx - half, cy - half, cx + half, cy + half)


@dataclass(frozen=True)
class FaceCrop:
    """A square RGB crop and the box in frame coordinates it was cut from."""

    image: np.ndarray
    box: Box

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Map frame-pixel points ``(K, 2)`` (e.g. landmarks) into crop pixels."""
        scale = self.image.shape[1] / self.box.width
        origin = np.array([self.box.x0, self.box.y0], dtype=np.float32)
        mapped: np.ndarray = (np.asarray(points, dtype=np.float32) - origin) * scale
        return mapped.astype(np.float32)


def crop_face(frame: np.ndarray, face_box: Box, size: int, margin: float) -> FaceCrop:
    """Cut the square, ``margin``-enlarged region around ``face_box`` and resize it.

    ``frame`` is an RGB ``uint8`` array of shape ``(H, W, 3)``. Parts of the square that
    fall outside the frame are filled with black, so a face at the edge keeps its place
    in the crop. Downscaling uses area interpolation (no aliasing), upscaling bilinear.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f"expected an RGB uint8 frame of shape (H, W, 3), got {frame.dtype} {frame.shape}"
        )
    square = square_box(face_box, margin)
    x0, y0 = round(square.x0), round(square.y0)
    side = max(1, round(square.width))
    x1, y1 = x0 + side, y0 + side
    height, width = frame.shape[:2]
    region = frame[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    if region.size == 0:
        raise ValueError(f"face box {face_box} lies outside the {width}x{height} frame")
    pad = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    if any(pad):
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    image = cv2.resize(region, (size, size), interpolation=interpolation)
    return FaceCrop(image=image, box=Box(x0, y0, x1, y1))


def paste_mask(mask: np.ndarray, crop_box: Box, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Map a crop's mask back to a float mask the size of the frame (zero elsewhere)."""
    height, width = frame_shape[:2]
    out = np.zeros((height, width), dtype=np.float32)
    x0, y0 = round(crop_box.x0), round(crop_box.y0)
    side = round(crop_box.width)
    if side <= 0:
        return out
    resized = cv2.resize(mask.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    fx0, fy0 = max(0, x0), max(0, y0)
    fx1, fy1 = min(width, x0 + side), min(height, y0 + side)
    if fx1 <= fx0 or fy1 <= fy0:
        return out
    out[fy0:fy1, fx0:fx1] = resized[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    return out
