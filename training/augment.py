"""Training augmentation, applied after blending to real and pseudo-fake crops alike.

Compression, resizing, blur, noise and colour change every crop the same way whatever
its label, so none of them can tell a real crop from a fake one: the segmenter has to
find the blend itself. Geometric steps move the mask with the image (soft masks are
resampled bilinearly, so they stay soft).

The pipeline is an albumentations ``Compose``. One albumentations 2 quirk matters:
``Compose(seed=...)`` seeds every transform's generator with the same seed, so transforms
with the same probability fire together on every call (a flip always came with the
same-probability transform after it). :class:`PairTransform` makes all of them draw
from one shared stream instead.
"""

from __future__ import annotations

import random

import albumentations as alb
import cv2
import numpy as np


class PairTransform:
    """A seeded ``(image, mask) -> (image, mask)`` augmentation.

    ``image`` is uint8 RGB ``(S, S, 3)``, ``mask`` float32 ``(S, S)`` in 0..1; both come
    back with the same shapes and dtypes. The same seed gives the same sequence of
    outputs. Give every data-loader worker its own seed (:meth:`reseed`), or they all
    repeat the same augmentations; reseeding before each sample (about 20 µs) makes each
    sample reproducible on its own, whichever worker draws it.
    """

    def __init__(self, transforms: list[alb.BasicTransform | alb.BaseCompose], seed: int) -> None:
        # Soft masks: bilinear, never nearest, when a geometric step resamples them.
        self.compose = alb.Compose(transforms, mask_interpolation=cv2.INTER_LINEAR)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random sequence from ``seed`` (one shared stream for all steps)."""
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an RGB uint8 image (S, S, 3), got {image.dtype} {image.shape}"
            )
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
        out = self.compose(image=image, mask=mask.astype(np.float32, copy=False))
        return out["image"], np.clip(out["mask"], 0.0, 1.0).astype(np.float32, copy=False)


def scale_jitter(
    size: int,
    face_px: tuple[int, int] = (32, 80),
    margin: float = 1.3,
    p: float = 0.15,
) -> alb.Downscale:
    """Make a crop look as if it was cut around a small face and upsampled (hard negatives
    and hard positives alike).

    A face ``face_px`` pixels wide in the frame gives a crop of ``face_px * margin`` frame
    pixels, which :func:`~fakewatch.engines.crop.crop_face` enlarges bilinearly to
    ``size``; this shrinks the crop to that side (area-averaged, as the camera's sampling)
    and enlarges it back the same way. Image only: the mask keeps its geometry.
    """
    low, high = (min(1.0, px * margin / size) for px in face_px)
    return alb.Downscale(
        scale_range=(low, high),
        interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
        p=p,
    )


def train_transform(size: int, seed: int, strength: float = 1.0) -> PairTransform:
    """The training augmentation for ``size``-pixel crops, seeded.

    ``strength`` scales every chance below (0 turns augmentation off, 1 is the full
    recipe); the lowest compression quality rises with lower strength too. In order,
    each with its own chance at strength 1:

    - horizontal flip (0.5); shift, scale (0.9-1.1), rotation (up to 10 degrees) with
      reflected borders (0.5), image and mask together;
    - brightness/contrast (0.5), gamma (0.3), hue/saturation (0.3): lighting and cameras;
    - Gaussian or ISO sensor noise (0.25);
    - Gaussian or motion blur (0.25): focus and movement;
    - resampling (0.4): small faces upsampled (:func:`scale_jitter`, a face of 32-80
      pixels) or a generic downscale to 0.25-1.0 and back with random interpolation;
    - JPEG at quality 30-100 or, a fifth as often, WebP at 30-95 (0.7), last, as a
      video codec comes last.
    """
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")

    def chance(p: float) -> float:
        return p * strength

    worst = round(100 - 70 * strength)  # lowest JPEG/WebP quality: 30 at full strength
    resample = [
        scale_jitter(size, p=1.0),
        *(
            alb.Downscale(
                scale_range=(0.25, 1.0),
                interpolation_pair={"downscale": down, "upscale": up},
                p=1.0,
            )
            for down, up in (
                (cv2.INTER_AREA, cv2.INTER_LINEAR),
                (cv2.INTER_LINEAR, cv2.INTER_CUBIC),
                (cv2.INTER_NEAREST, cv2.INTER_LINEAR),
            )
        ),
    ]
    transforms: list[alb.BasicTransform | alb.BaseCompose] = [
        alb.HorizontalFlip(p=0.5),
        alb.Affine(
            scale=(0.9, 1.1),
            translate_percent=(-0.04, 0.04),
            rotate=(-10, 10),
            interpolation=cv2.INTER_LINEAR,
            border_mode=cv2.BORDER_REFLECT_101,
            p=chance(0.5),
        ),
        alb.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=chance(0.5)),
        alb.RandomGamma(gamma_limit=(80, 120), p=chance(0.3)),
        alb.HueSaturationValue(
            hue_shift_limit=8, sat_shift_limit=20, val_shift_limit=0, p=chance(0.3)
        ),
        alb.OneOf(
            [
                alb.GaussNoise(std_range=(0.01, 0.05), p=1.0),
                alb.ISONoise(color_shift=(0.01, 0.04), intensity=(0.1, 0.4), p=1.0),
            ],
            p=chance(0.25),
        ),
        alb.OneOf(
            [
                alb.GaussianBlur(sigma_limit=(0.3, 1.5), p=1.0),
                alb.MotionBlur(blur_limit=(3, 7), p=1.0),
            ],
            p=chance(0.25),
        ),
        alb.OneOf(resample, p=chance(0.4)),
        alb.OneOf(
            [
                alb.ImageCompression(compression_type="jpeg", quality_range=(worst, 100), p=0.8),
                # WebP costs 3-4 ms a crop against 0.1 ms for JPEG (and OpenCV
                # makes quality 100 lossless), so it is rarer and capped.
                alb.ImageCompression(
                    compression_type="webp", quality_range=(min(worst, 95), 95), p=0.2
                ),
            ],
            p=chance(0.7),
        ),
    ]
    return PairTransform(transforms, seed)
