"""Manipulation masks from frame-aligned real/fake video pairs.

A fake made from an original video (FaceForensics++, DFDC, a live swap recorded beside
its source) differs from it only where pixels were generated, so the difference of the
two frames inside the face region is the training target "where was this face
generated". :func:`difference_mask` turns one frame pair into such a mask;
:func:`iter_pair_samples` walks a whole :class:`~fakewatch.training.datasets.PairedVideo`,
crops the faces the way the deployed model sees them and skips (and counts) the frames
whose pair is not aligned or shows no change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from itertools import zip_longest
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fakewatch.engines.crop import Box, crop_face, paste_mask, square_box
from fakewatch.engines.faces import FaceDetector
from fakewatch.engines.media import Frame, iter_frames
from fakewatch.engines.spec import ModelSpec
from fakewatch.training.datasets import PairedVideo

# About 20 000 background pixels (every 4th pixel both ways of a 640x480 frame) give
# stable statistics in ~1 ms at any frame size.
_BACKGROUND_SAMPLES = 20_000
_MIN_BACKGROUND_PIXELS = 500


class DiffMaskConfig(BaseModel):
    """How a real/fake frame pair becomes a mask.

    Distances are CIE Lab Euclidean distances in OpenCV's 8-bit Lab scale (about grey
    levels). Sizes in pixels refer to the face's square crop region resampled to
    ``work_size``, so the same settings fit a 60 px face and a 600 px one.

    The defaults were tuned on the development pairs (FaceForensics++ Deepfakes c23,
    DeepFaceLive x264 crf 18). There, once the fake's global colour offset is removed,
    the background distance of aligned frames has a mean of 1.6-3.3 and a 99th
    percentile of 5-16, while a 2 px shift raises the mean to 6-15 (hence
    ``max_background_diff`` 8). Otsu's threshold inside the face region was 20-28 on
    FF++ but only 9-16 on the live swaps, which match the skin tone, hence a floor of
    ``max(min_threshold, noise_factor x background p99)``: at 1.0x a JPEG q30/q35
    re-encode of an unchanged real frame still gave masks of up to 30 % of the crop, at
    1.5x none, while the live-swap masks shrank by 3 %.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["absdiff", "ssim"] = Field(
        "absdiff", description="Lab colour distance, or 1 - SSIM (max over RGB channels)"
    )
    work_size: int = Field(256, ge=64, le=1024, description="side the region is resampled to")
    blur_sigma: float = Field(2.0, ge=0, le=20, description="Gaussian blur of the difference")
    min_threshold: float = Field(
        10.0, ge=0, description="threshold floor (absdiff): c23 noise never reaches it"
    )
    noise_factor: float = Field(
        1.5, ge=0, description="floor also >= this x the 99th percentile of background noise"
    )
    ssim_min_threshold: float = Field(0.3, ge=0, le=2, description="1 - SSIM floor (ssim)")
    open_size: int = Field(3, ge=0, description="opening kernel: removes specks")
    close_size: int = Field(9, ge=0, description="closing kernel: bridges thin gaps")
    keep_fraction: float = Field(
        0.1, ge=0, le=1, description="keep components with area >= this x the largest"
    )
    convex_hull: bool = Field(
        True, description="fill the convex hull of the kept components (see difference_mask)"
    )
    min_area: float = Field(0.01, ge=0, le=1, description="smaller masks count as empty")
    max_area: float = Field(
        0.9, ge=0, le=1, description="larger masks (fraction of the crop) are rejected"
    )
    background_margin: float = Field(
        1.25, ge=1, description="background = outside the crop square enlarged by this"
    )
    max_background_diff: float = Field(
        8.0, ge=0, description="mean background distance above which frames are misaligned"
    )
    check_real_face: bool = Field(True, description="detect on the real frame too")
    min_box_iou: float = Field(0.5, ge=0, le=1, description="real/fake face box agreement")
    max_faces: int = Field(1, ge=1, description="faces per frame, largest first")
    official_threshold: int = Field(
        24, ge=0, le=254, description="grey level that binarises official mask videos"
    )


@dataclass
class PairStats:
    """What happened to the sampled frames of one or more pairs.

    ``frames`` counts sampled frame pairs. ``no_face``, ``misaligned_global``,
    ``size_mismatch`` and ``unpaired`` count frames; ``used``, ``misaligned_box``,
    ``empty_mask`` and ``mask_too_large`` count faces (the same as frames with the
    default ``max_faces=1``).
    """

    pairs: int = 0
    frames: int = 0
    used: int = 0
    no_face: int = 0
    misaligned_box: int = 0
    misaligned_global: int = 0
    size_mismatch: int = 0
    unpaired: int = 0
    empty_mask: int = 0
    mask_too_large: int = 0
    mask_area_sum: float = 0.0

    @property
    def mean_mask_area(self) -> float:
        """Mean fraction of the crop covered by the masks of the used samples."""
        return self.mask_area_sum / self.used if self.used else 0.0

    @property
    def skipped(self) -> dict[str, int]:
        """Skip counts by reason."""
        reasons = (
            "no_face",
            "misaligned_box",
            "misaligned_global",
            "size_mismatch",
            "unpaired",
            "empty_mask",
            "mask_too_large",
        )
        return {reason: getattr(self, reason) for reason in reasons}

    def add(self, other: PairStats) -> None:
        """Add another pair's counts to these."""
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def as_dict(self) -> dict[str, float]:
        """Every counter and the mean mask area, for logs and reports."""
        return {**asdict(self), "mean_mask_area": round(self.mean_mask_area, 4)}


@dataclass(frozen=True)
class PairSample:
    """One face of a fake frame with its original and its mask.

    ``real_crop`` and ``fake_crop`` are RGB ``uint8 (S, S, 3)`` crops cut with the same
    box by :func:`~fakewatch.engines.crop.crop_face`; ``mask`` is ``uint8 (S, S)`` with
    255 where the fake was generated; ``box`` is the detected face box in the fake frame.
    """

    real_crop: np.ndarray
    fake_crop: np.ndarray
    mask: np.ndarray
    frame_index: int
    box: Box


@dataclass(frozen=True)
class Background:
    """The frame pair outside the enlarged face region, where nothing was generated.

    ``offset`` is the per-channel median of fake - real (a re-encode or a different
    grading shifts whole frames), ``mean_diff`` and ``noise`` are the mean and the 99th
    percentile of the Lab distance there once the offset is taken out.
    """

    offset: np.ndarray
    mean_diff: float
    noise: float


def _lab_distance(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Per-pixel Euclidean distance in Lab of two RGB images (``fake`` may be float)."""
    # Lab rather than the max over RGB channels: it weighs a change by how visible it
    # is, so the skin-tone shift of a swapped face counts as much as a brightness
    # change, and on the c23 FF++ pair it separated the face from compression noise a
    # little better (99th percentile of background 9.3 vs 11 for max-RGB at the same
    # in-face difference).
    real_lab = cv2.cvtColor(real.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    fake_lab = cv2.cvtColor(np.clip(fake, 0, 255).astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    # Float Lab has L in 0..100 and a, b in about -127..127; scale L as 8-bit Lab does.
    delta = real_lab - fake_lab
    delta[..., 0] *= 255 / 100
    return np.asarray(np.sqrt(np.einsum("ijk,ijk->ij", delta, delta)), dtype=np.float32)


def _check_frames(real: np.ndarray, fake: np.ndarray) -> None:
    for name, frame in (("real", real), ("fake", fake)):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"{name} frame must be RGB uint8 (H, W, 3), got {frame.shape}")
    if real.shape != fake.shape:
        raise ValueError(f"real frame {real.shape} and fake frame {fake.shape} differ in size")


def background_difference(
    real_frame: np.ndarray,
    fake_frame: np.ndarray,
    face_boxes: Sequence[Box],
    margin: float,
    config: DiffMaskConfig,
) -> Background:
    """Colour offset and residual difference of a frame pair away from the faces.

    Outside every face's crop square enlarged by ``config.background_margin``, an
    aligned pair differs only by compression noise; a shifted or out-of-step pair
    differs much more. With too little background to measure, the result is all zeros.
    """
    _check_frames(real_frame, fake_frame)
    height, width = real_frame.shape[:2]
    step = max(1, round(np.sqrt(height * width / _BACKGROUND_SAMPLES)))
    ys, xs = np.mgrid[0:height:step, 0:width:step]
    outside = np.ones(xs.shape, dtype=bool)
    for box in face_boxes:
        square = square_box(box, margin * config.background_margin)
        outside &= (xs < square.x0) | (xs >= square.x1) | (ys < square.y0) | (ys >= square.y1)
    if outside.sum() < _MIN_BACKGROUND_PIXELS:
        return Background(np.zeros(3, np.float32), 0.0, 0.0)
    real = real_frame[::step, ::step][outside][None]
    fake = fake_frame[::step, ::step][outside][None].astype(np.float32)
    offset = np.median(fake - real, axis=(0, 1)).astype(np.float32)
    distance = _lab_distance(real, fake - offset)
    return Background(offset, float(distance.mean()), float(np.percentile(distance, 99)))


def _ssim_dissimilarity(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """1 - SSIM per pixel (Gaussian window, sigma 1.5), the worst of the RGB channels."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = real.astype(np.float32), np.clip(fake, 0, 255).astype(np.float32)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return np.asarray(1 - ssim.min(axis=2), dtype=np.float32)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Set every background pixel not connected to the border."""
    flood = np.pad(mask, 1)
    cv2.floodFill(flood, None, (0, 0), 255)
    return np.asarray(mask | cv2.bitwise_not(flood)[1:-1, 1:-1], dtype=np.uint8)


def _ellipse(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def region_mask(
    real_crop: np.ndarray, fake_crop: np.ndarray, floor: float, config: DiffMaskConfig
) -> np.ndarray:
    """The mask (uint8 0/255) of two same-size square crops ``(W, W, 3)``.

    ``fake_crop`` may be float (colour-corrected). The difference is blurred and
    thresholded with Otsu's method (it splits "changed" from "unchanged" wherever the
    swap's contrast lies) but never below ``floor``, so that on a pair with no change
    compression noise alone cannot make a mask.
    """
    difference: np.ndarray
    if config.method == "ssim":
        difference = _ssim_dissimilarity(real_crop, fake_crop) * 127.5
    else:
        difference = _lab_distance(real_crop, fake_crop)
    if config.blur_sigma > 0:
        difference = cv2.GaussianBlur(difference, (0, 0), config.blur_sigma)
    scaled = np.clip(difference, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask: np.ndarray = np.where(scaled > max(otsu, floor), 255, 0).astype(np.uint8)
    if config.open_size > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _ellipse(config.open_size))
    if config.close_size > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _ellipse(config.close_size))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= config.keep_fraction * areas.max()) + 1
    mask = np.where(np.isin(labels, keep), 255, 0).astype(np.uint8)
    if config.convex_hull:
        # A swapped face is one convex blob (the hull of its landmarks, feathered), but
        # where the swap matched the original's skin tone the difference vanishes and
        # the thresholded mask breaks into islands (DeepFaceLive pairs); their hull is
        # the region that was generated.
        hull = cv2.convexHull(cv2.findNonZero(mask))
        cv2.fillConvexPoly(mask, hull, 255)
    return _fill_holes(mask)


def difference_mask(
    real_frame: np.ndarray,
    fake_frame: np.ndarray,
    face_box: Box,
    spec_margin: float,
    config: DiffMaskConfig | None = None,
    background: Background | None = None,
) -> np.ndarray:
    """The generated pixels of ``fake_frame``, a uint8 ``(H, W)`` mask of 0 and 255.

    Only the square crop region of ``face_box`` (enlarged by ``spec_margin``, as
    :func:`~fakewatch.engines.crop.crop_face` cuts it) can be marked. The fake's global
    colour offset is taken out first (see :func:`background_difference`, computed here
    unless given), then both regions are resampled to ``config.work_size`` and compared
    by :func:`region_mask` with a threshold floor of ``max(config.min_threshold,
    config.noise_factor x background noise)`` (``ssim_min_threshold`` for SSIM).
    Alignment is not checked here; :func:`iter_pair_samples` does that.
    """
    config = config or DiffMaskConfig()
    if background is None:
        background = background_difference(real_frame, fake_frame, [face_box], spec_margin, config)
    size = config.work_size
    real = crop_face(real_frame, face_box, size, spec_margin)
    fake = crop_face(fake_frame, face_box, size, spec_margin)
    outside = (real.image == 0).all(axis=2) & (fake.image == 0).all(axis=2)
    fake_image = fake.image.astype(np.float32) - background.offset
    fake_image[outside] = 0  # the black padding beyond the frame edge stays equal
    if config.method == "ssim":
        floor = config.ssim_min_threshold * 127.5
    else:
        floor = max(config.min_threshold, config.noise_factor * background.noise)
    mask = region_mask(real.image, fake_image, floor, config)
    pasted = paste_mask(mask.astype(np.float32) / 255, real.box, real_frame.shape)
    return np.where(pasted >= 0.5, 255, 0).astype(np.uint8)


def binarise_official_mask(mask_frame: np.ndarray, threshold: int = 24) -> np.ndarray:
    """An official FF++ mask frame (RGB or grey, any shading) as uint8 0/255, holes filled."""
    grey = cv2.cvtColor(mask_frame, cv2.COLOR_RGB2GRAY) if mask_frame.ndim == 3 else mask_frame
    return _fill_holes(np.where(grey > threshold, 255, 0).astype(np.uint8))


def crop_mask(mask: np.ndarray, face_box: Box, size: int, margin: float) -> np.ndarray:
    """Cut a frame-size uint8 mask exactly as :func:`crop_face` cuts the frame."""
    stacked = np.repeat(mask[:, :, None], 3, axis=2)
    cropped = crop_face(stacked, face_box, size, margin).image[:, :, 0]
    return np.where(cropped >= 128, 255, 0).astype(np.uint8)


def _matches_real_face(
    real_frame: np.ndarray, box: Box, detector: FaceDetector, iou: float
) -> bool:
    return any(face.box.iou(box) >= iou for face in detector.detect(real_frame))


def iter_pair_samples(
    pair: PairedVideo,
    spec: ModelSpec,
    detector: FaceDetector,
    every: int = 5,
    config: DiffMaskConfig | None = None,
    stats: PairStats | None = None,
) -> Iterator[PairSample]:
    """Crops and masks of every ``every``-th frame of a real/fake pair.

    Both videos (and the official mask video when ``pair.official_mask`` is set) are
    decoded in lockstep. Faces are detected on the fake frame. A frame is skipped, and
    counted in ``stats`` by reason, when it has no face, when its background differs too
    much (the videos are shifted or out of step), when the real frame has no face
    matching the fake's box (with ``config.check_real_face``), or when its mask is empty
    or implausibly large. The official mask, when given, replaces the difference mask.
    """
    config = config or DiffMaskConfig()
    stats = stats if stats is not None else PairStats()
    stats.pairs += 1
    size, margin = spec.input_size, spec.crop_margin
    streams: list[Iterator[Frame]] = [iter_frames(pair.real, every), iter_frames(pair.fake, every)]
    if pair.official_mask is not None:
        streams.append(iter_frames(Path(pair.official_mask), every))
    for frames in zip_longest(*streams):
        stats.frames += 1
        if any(frame is None for frame in frames):
            stats.unpaired += 1
            continue
        real, fake = frames[0].image, frames[1].image
        if real.shape != fake.shape:
            stats.size_mismatch += 1
            continue
        faces = detector.detect(fake)[: config.max_faces]
        if not faces:
            stats.no_face += 1
            continue
        boxes = [face.box for face in faces]
        background = background_difference(real, fake, boxes, margin, config)
        if background.mean_diff > config.max_background_diff:
            stats.misaligned_global += 1
            continue
        official = None
        if len(frames) == 3:
            official = binarise_official_mask(frames[2].image, config.official_threshold)
            if official.shape != fake.shape[:2]:
                official = cv2.resize(official, fake.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        for face in faces:
            if config.check_real_face and not _matches_real_face(
                real, face.box, detector, config.min_box_iou
            ):
                stats.misaligned_box += 1
                continue
            if official is None:
                frame_mask = difference_mask(real, fake, face.box, margin, config, background)
            else:
                frame_mask = official
            mask = crop_mask(frame_mask, face.box, size, margin)
            area = float(np.count_nonzero(mask)) / mask.size
            if area < config.min_area:
                stats.empty_mask += 1
                continue
            if area > config.max_area:
                stats.mask_too_large += 1
                continue
            stats.used += 1
            stats.mask_area_sum += area
            yield PairSample(
                real_crop=crop_face(real, face.box, size, margin).image,
                fake_crop=crop_face(fake, face.box, size, margin).image,
                mask=mask,
                frame_index=frames[1].index,
                box=face.box,
            )
