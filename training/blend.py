"""Pseudo-fakes made from real faces: self-blended images and cross-identity swaps.

A self-blend (SBI, Shiohara & Yamasaki 2022; Face X-ray, Li et al. 2020) pastes a
slightly altered copy of a face back onto itself: the copy (the *source*) gets colour,
sharpness and small scale/shift jitter, and is blended into the original (the *target*)
through a soft, face-shaped mask. A cross blend pastes a different person's face,
aligned on the five landmarks and colour-matched, as classic FaceSwap does. Either way
the segmentation target is known exactly: the pixels whose content now comes from the
source.

**The target mask is soft.** It is the blend weight divided by the blend ratio, so a
pixel that is 25 % source in the core of a faint blend still counts fully as
manipulated, the feathered rim ramps from 1 down to 0, and every pixel outside the mask
(target 0) is bit-identical to the original, unless the change went to the surroundings
instead (:attr:`BlendConfig.swap_target`): then the face is the original and everything
outside it changed, and the mask still marks the face, the side of the seam that was
pasted. The blurred mask is cut to exactly zero
below :attr:`BlendConfig.mask_floor` (and rescaled so that it stays continuous) because a
Gaussian's tail would otherwise spread invisible changes over the whole crop.

All randomness comes from the ``numpy.random.Generator`` passed in, so a sample is a
pure function of its inputs and that generator's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

Region = str
"""One of ``"face"`` (eyebrows to chin), ``"lower"`` (nose to chin), ``"eyes"`` (the
band from the eyebrows to the cheekbones) and ``"hull"`` (the landmarks' hull, widened)."""


@dataclass(frozen=True)
class BlendConfig:
    """Parameters of the pseudo-fakes. Lengths are fractions of the crop side unless named
    ``_px``; ranges are ``(low, high)`` sampled uniformly."""

    region_weights: dict[Region, float] = field(
        default_factory=lambda: {"face": 0.55, "lower": 0.2, "eyes": 0.1, "hull": 0.15}
    )
    """How often each mask region is drawn. Partial regions imitate expression swaps
    (Face2Face and NeuralTextures change mostly the mouth)."""
    expand: tuple[float, float] = (0.85, 1.15)
    """Scale of the whole region about its centre."""
    point_jitter: float = 0.08
    """Random offset of each outline anchor, as a fraction of the eye-to-mouth distance."""
    deform: float = 0.07
    """Amplitude of the low-frequency (elastic) deformation of the outline, as a fraction
    of its radius."""
    morph: float = 0.035
    """Largest erosion or dilation of the mask (the sign is random)."""
    feather: tuple[float, float] = (0.005, 0.05)
    """Gaussian blur sigma of the mask's edge."""
    mask_floor: float = 0.02
    """Blurred mask values below this are cut to zero (see the module docstring)."""
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0)
    """Blend ratios, drawn with equal chance (so weighted towards 1)."""
    hue_shift: float = 5.0
    """Largest hue shift in degrees (self-blend source)."""
    saturation: float = 0.15
    """Largest relative saturation change."""
    brightness: float = 0.06
    """Largest brightness shift, fraction of the full range."""
    contrast: float = 0.1
    """Largest relative contrast change."""
    rgb_shift: float = 8.0
    """Largest per-channel shift in grey levels."""
    blur_sigma_px: tuple[float, float] = (0.5, 1.6)
    """Gaussian blur applied to the source (one of the sharpness options)."""
    sharpen: tuple[float, float] = (0.3, 1.2)
    """Unsharp-mask amount applied to the source (another option)."""
    resample: tuple[float, float] = (0.35, 0.8)
    """Downscale-then-upscale factor of the source, as a face generator's lower resolution
    leaves it (the third option; the fourth leaves sharpness alone)."""
    sharpness: tuple[str, ...] = ("blur", "sharpen", "resample", "none")
    """The sharpness options drawn from, with equal chance."""
    scale: tuple[float, float] = (0.95, 1.05)
    """Per-axis resize of the self-blend source about the face centre."""
    shift: float = 0.02
    """Largest shift of the self-blend source."""
    min_difference: float = 3.0
    """A self-blend whose mean absolute change in the mask's core (after the blend ratio)
    would be below this many grey levels gets an extra brightness shift on its source, so
    no sample is labelled manipulated while showing nothing."""
    colour_transfer: float = 0.85
    """Chance that a cross blend's source is colour-matched to the target (Reinhard)."""
    seamless_clone: float = 0.35
    """Chance that a cross blend uses Poisson (``cv2.seamlessClone``) instead of the soft
    mask."""
    swap_target: float = 0.0
    """Chance that a self-blend's colour and sharpness change is applied to the target
    (the surroundings) instead of the source (the face), as SBI's source-target
    transform does: either way the two sides of the seam disagree, so the seam is what
    gives the blend away, not a processed-looking face."""

    def __post_init__(self) -> None:
        if not self.region_weights or min(self.region_weights.values()) < 0:
            raise ValueError(f"region_weights need non-negative weights, got {self.region_weights}")
        unknown = set(self.region_weights) - set(_REGIONS)
        if unknown:
            raise ValueError(f"unknown regions {sorted(unknown)}; known: {_REGIONS}")
        if not self.ratios or not all(0 < r <= 1 for r in self.ratios):
            raise ValueError(f"ratios must lie in (0, 1], got {self.ratios}")
        if not 0 <= self.mask_floor < 1:
            raise ValueError(f"mask_floor must lie in [0, 1), got {self.mask_floor}")
        if not 0 <= self.swap_target <= 1:
            raise ValueError(f"swap_target must lie in [0, 1], got {self.swap_target}")


@dataclass(frozen=True)
class BlendResult:
    """A pseudo-fake: ``image`` uint8 ``(S, S, 3)``, ``mask`` float32 ``(S, S)`` in 0..1
    (the segmentation target), and ``info`` with the drawn parameters (for statistics)."""

    image: np.ndarray
    mask: np.ndarray
    info: dict[str, Any]


_REGIONS = ("face", "lower", "eyes", "hull")

# The outline of a face in a frame set by the landmarks: rows are (down, across), down in
# eye-to-mouth distances below the eye line, across in multiples of the nose-to-eye
# distance on that side (which shrinks on the far side of a turned head). Left side only,
# top to bottom; the right side mirrors it.
_FACE_OUTLINE = np.array(
    [
        (-0.65, 1.25),
        (-0.4, 1.75),
        (0.0, 1.95),
        (0.5, 1.95),
        (1.0, 1.7),
        (1.35, 1.25),
        (1.62, 0.6),
    ],
    dtype=np.float32,
)
_CHIN = 1.75
_BROW = -0.75


def _crop_side(crop: np.ndarray) -> int:
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 crop (S, S, 3), got {crop.dtype} {crop.shape}")
    if crop.shape[0] != crop.shape[1]:
        raise ValueError(f"expected a square crop, got {crop.shape[:2]}")
    return int(crop.shape[0])


def _check_landmarks(landmarks: np.ndarray | None) -> np.ndarray | None:
    if landmarks is None:
        return None
    points = np.asarray(landmarks, dtype=np.float32)
    if points.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks (5, 2), got {points.shape}")
    return points


def _side_extents(points: np.ndarray) -> np.ndarray:
    """Nose-to-eye distance on the image-left and image-right side, over half the eye
    distance: 1 and 1 for a frontal face; a turned head shows less of its far side."""
    right_eye, left_eye, nose = points[:3]
    across = left_eye - right_eye
    half = max(float(np.linalg.norm(across)), 1e-3) / 2
    nose_across = float(np.dot(nose - (right_eye + left_eye) / 2, across / (2 * half)))
    return np.clip([1 + nose_across / half, 1 - nose_across / half], 0.25, 1.8)


def _outline_from_landmarks(
    points: np.ndarray,
    region: Region,
    rng: np.random.Generator,
    config: BlendConfig,
    other: np.ndarray | None = None,
) -> np.ndarray:
    """A closed polygon ``(N, 2)`` in crop pixels around the chosen part of the face;
    no wider on either side than ``other`` landmarks' face (a pasted source) would be."""
    right_eye, left_eye, nose, mouth_r, mouth_l = points
    eye_centre = (right_eye + left_eye) / 2
    mouth_centre = (mouth_r + mouth_l) / 2
    across = left_eye - right_eye
    eye_distance = float(np.linalg.norm(across))
    across = across / max(eye_distance, 1e-3)
    down = mouth_centre - eye_centre
    height = max(float(np.linalg.norm(down)), 0.3 * eye_distance, 1.0)
    down = down / height
    nose_across = float(np.dot(nose - eye_centre, across))
    extents = _side_extents(points)
    if other is not None:
        extents = np.minimum(extents, _side_extents(other))
    side = extents * eye_distance / 2
    origin = eye_centre + across * nose_across

    if region == "hull":
        centre = points.mean(axis=0)
        widened = centre + (points - centre) * rng.uniform(1.3, 1.8)
        # Five points leave out the brows and the lip below the mouth; add one above and
        # one below.
        reach = rng.uniform([-0.6, 1.25], [-0.3, 1.6])
        ends = eye_centre + np.outer(reach * height, down)
        return np.concatenate([widened, ends]).astype(np.float32)

    rows = _FACE_OUTLINE.copy()
    top, bottom = rng.uniform(_BROW, -0.4), rng.uniform(1.5, _CHIN + 0.1)
    if region == "lower":
        top = rng.uniform(0.3, 0.65)
    elif region == "eyes":
        bottom = rng.uniform(0.35, 0.65)
    keep = (rows[:, 0] > top) & (rows[:, 0] < bottom)
    widths = np.interp([top, bottom], rows[:, 0], rows[:, 1])
    rows = np.concatenate([[[top, widths[0]]], rows[keep], [[bottom, widths[1]]]])
    if region == "face" and bottom > 1.62:
        rows[-1, 1] = 0.35
    n = len(rows)
    jitter = rng.normal(0.0, config.point_jitter, size=(2, n, 2))
    polygon = []
    for k, sign in enumerate((-1.0, 1.0)):
        d = rows[:, 0] + jitter[k, :, 0]
        a = sign * rows[:, 1] * side[k] / height + jitter[k, :, 1]
        pts = origin + np.outer(d * height, down) + np.outer(a * height, across)
        polygon.append(pts if sign < 0 else pts[::-1])
    return np.concatenate(polygon).astype(np.float32)


def _clip_half_plane(
    polygon: np.ndarray, origin: np.ndarray, normal: np.ndarray, offset: float
) -> np.ndarray:
    """The part of a convex polygon where ``(p - origin) . normal >= offset``."""
    distance = (polygon - origin) @ normal - offset
    kept: list[np.ndarray] = []
    for i in range(len(polygon)):
        a, b = polygon[i], polygon[(i + 1) % len(polygon)]
        da, db = distance[i], distance[(i + 1) % len(polygon)]
        if da >= 0:
            kept.append(a)
        if (da >= 0) != (db >= 0):
            kept.append(a + (b - a) * (da / (da - db)))
    return np.asarray(kept, dtype=np.float32)


def _outline_region(
    outline: np.ndarray, points: np.ndarray, region: Region, rng: np.random.Generator
) -> np.ndarray:
    """The chosen part of a face outline (the face mesh's hull): all of it for ``face``
    and ``hull``, below a line near the nose for ``lower``, above one between the nose and
    the mouth for ``eyes``; lines run parallel to the eyes."""
    if region in ("face", "hull"):
        return outline
    right_eye, left_eye, nose, mouth_r, mouth_l = points
    eyes = (right_eye + left_eye) / 2
    down = (mouth_r + mouth_l) / 2 - eyes
    height = max(float(np.linalg.norm(down)), 1.0)
    down = down / height
    if region == "lower":
        cut = float((nose - eyes) @ down) / height + rng.uniform(-0.3, 0.05)
        part = _clip_half_plane(outline, eyes, down, cut * height)
    else:
        cut = float((nose - eyes) @ down) / height + rng.uniform(0.05, 0.45)
        part = _clip_half_plane(outline, eyes, -down, -cut * height)
    return part if len(part) >= 3 else outline


def _outline_from_box(size: int, margin: float, rng: np.random.Generator) -> np.ndarray:
    """The ellipse inscribed in the face box (the central ``1/margin`` of the crop)."""
    centre = np.array([size / 2, size / 2 + rng.uniform(-0.03, 0.05) * size])
    radii = size / margin / 2 * rng.uniform(0.7, 0.95, size=2) * np.array([0.85, 1.0])
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    ellipse = centre + radii * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return np.asarray(ellipse, dtype=np.float32)


def _deform(polygon: np.ndarray, rng: np.random.Generator, config: BlendConfig) -> np.ndarray:
    """Round the outline's corners, scale it and bend it with smooth random radial waves."""
    hull = cv2.convexHull(polygon.reshape(-1, 1, 2)).reshape(-1, 2)
    centre = hull.mean(axis=0)
    for _ in range(2):
        # Chaikin corner cutting: no blend region should show a polygon's corners.
        following = np.roll(hull, -1, axis=0)
        hull = np.stack([0.75 * hull + 0.25 * following, 0.25 * hull + 0.75 * following], axis=1)
        hull = hull.reshape(-1, 2)
    closed = np.concatenate([hull, hull[:1]])
    steps = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(steps)])
    samples = np.linspace(0.0, along[-1], 64, endpoint=False)
    dense = np.stack([np.interp(samples, along, closed[:, k]) for k in (0, 1)], axis=1)
    offset = dense - centre
    angle = np.arctan2(offset[:, 1], offset[:, 0])
    waves = np.zeros_like(angle)
    for order in range(2, 6):
        waves += rng.normal(0.0, 1.0 / order) * np.sin(order * angle + rng.uniform(0, 2 * np.pi))
    radial = rng.uniform(*config.expand) * (1.0 + config.deform * waves)
    return np.asarray(centre + offset * radial[:, None], dtype=np.float32)


def _soft_mask(
    polygon: np.ndarray, size: int, rng: np.random.Generator, config: BlendConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fill, erode or dilate, feather and normalise: float32 ``(S, S)``, exactly 0 outside."""
    mask: np.ndarray = np.zeros((size, size), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 4).astype(np.int32)], 255, cv2.LINE_8, shift=2)
    morph = round(rng.uniform(-config.morph, config.morph) * size)
    if abs(morph) >= 2:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (abs(morph), abs(morph)))
        mask = cv2.dilate(mask, kernel) if morph > 0 else cv2.erode(mask, kernel)
    sigma = rng.uniform(*config.feather) * size
    # Large blurs run at a quarter of the resolution: the result is smooth anyway and a
    # full-size 20-pixel Gaussian would cost more than the rest of the sample.
    if sigma > 6:
        small = cv2.resize(mask, (size // 4, size // 4), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), sigma / 4)
        soft = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    else:
        soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    info = {"sigma": round(sigma, 2), "morph": morph}
    peak = float(cv2.minMaxLoc(soft)[1])
    if peak <= 0:
        return np.zeros((size, size), dtype=np.float32), info
    floor = config.mask_floor
    weight = np.clip((soft / peak - floor) / (1 - floor), 0.0, 1.0)
    return weight.astype(np.float32), info


def _region_mask(
    size: int,
    landmarks: np.ndarray | None,
    rng: np.random.Generator,
    config: BlendConfig,
    margin: float,
    other: np.ndarray | None = None,
    outline: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    names = list(config.region_weights)
    weights = np.array([config.region_weights[n] for n in names], dtype=np.float64)
    region = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    if landmarks is None:
        region = "box"
        polygon = _outline_from_box(size, margin, rng)
    elif outline is not None:
        polygon = _outline_region(outline, landmarks, region, rng)
        region = f"mesh-{region}"
    else:
        polygon = _outline_from_landmarks(landmarks, region, rng, config, other)
    mask, info = _soft_mask(_deform(polygon, rng, config), size, rng, config)
    return mask, {"region": region, **info}


def _colour_jitter(
    image: np.ndarray, rng: np.random.Generator, config: BlendConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """Hue, saturation, brightness, contrast and per-channel shift, all through LUTs."""
    hue = rng.uniform(-config.hue_shift, config.hue_shift)
    saturation = 1 + rng.uniform(-config.saturation, config.saturation)
    shifts = rng.uniform(-config.rgb_shift, config.rgb_shift, size=3)
    levels = np.arange(256, dtype=np.float32)
    sample = image[::8, ::8].astype(np.int16)
    # A colour cast on a black-and-white picture would give the blend away at a glance.
    grey = float(np.abs(sample[..., 0] - sample[..., 1]).mean()) < 2.0
    if grey:
        hue, saturation, shifts = 0.0, 1.0, np.full(3, shifts[0])
    if abs(hue) >= 1 or abs(saturation - 1) > 0.02:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        # OpenCV's 8-bit hue runs 0..179 in steps of two degrees.
        hue_lut = np.mod(levels + round(hue / 2), 180).astype(np.uint8)
        sat_lut = np.clip(levels * saturation, 0, 255).astype(np.uint8)
        hsv[..., 0] = cv2.LUT(hsv[..., 0], hue_lut)
        hsv[..., 1] = cv2.LUT(hsv[..., 1], sat_lut)
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    contrast = 1 + rng.uniform(-config.contrast, config.contrast)
    offset = rng.uniform(-config.brightness, config.brightness) * 255
    curve = (levels[:, None] - 128) * contrast + 128 + offset + shifts[None, :]
    lut = np.clip(np.rint(curve), 0, 255).astype(np.uint8).reshape(256, 1, 3)
    info = {
        "hue": round(hue, 1),
        "saturation": round(saturation, 3),
        "contrast": round(contrast, 3),
        "brightness": round(offset, 1),
    }
    return cv2.LUT(image, lut), info


def _sharpness_jitter(
    image: np.ndarray, rng: np.random.Generator, config: BlendConfig
) -> tuple[np.ndarray, str]:
    """Blur, sharpen, resample (down then up) or leave alone: one of ``config.sharpness``,
    with equal chance."""
    choice = config.sharpness[int(rng.integers(len(config.sharpness)))]
    size = image.shape[0]
    if choice == "blur":
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(*config.blur_sigma_px)), "blur"
    if choice == "sharpen":
        blurred = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 2.0))
        amount = rng.uniform(*config.sharpen)
        return cv2.addWeighted(image, 1 + amount, blurred, -amount, 0), "sharpen"
    if choice == "resample":
        side = max(8, round(size * rng.uniform(*config.resample)))
        small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        up = (cv2.INTER_LINEAR, cv2.INTER_CUBIC)[int(rng.integers(2))]
        return cv2.resize(small, (size, size), interpolation=up), "resample"
    return image, "none"


def _blend(source: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``source * weight + target * (1 - weight)``, rounded; exactly the target where the
    weight is 0."""
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    return cv2.blendLinear(source, target, weight, 1.0 - weight)


def _face_centre(size: int, landmarks: np.ndarray | None) -> tuple[float, float]:
    if landmarks is None:
        return size / 2, size / 2
    x, y = landmarks.mean(axis=0)
    return float(x), float(y)


def self_blend(
    crop: np.ndarray,
    landmarks: np.ndarray | None,
    rng: np.random.Generator,
    config: BlendConfig | None = None,
    margin: float = 1.3,
    outline: np.ndarray | None = None,
) -> BlendResult:
    """A self-blended image (SBI): the face pasted onto itself after a subtle change.

    ``crop`` is a uint8 RGB ``(S, S, 3)`` crop from
    :func:`fakewatch.engines.crop.crop_face`; ``landmarks`` the five RetinaFace points in
    crop pixels (``FaceCrop.to_crop``), or ``None`` to use the ellipse inside the face box
    (the central ``1/margin`` of the crop); ``outline`` the face's own contour in crop
    pixels (:class:`fakewatch.training.landmarks.FaceMesh`), which the mask then follows.
    Returns the blended image and the soft target mask (see the module docstring).
    """
    config = config or BlendConfig()
    size = _crop_side(crop)
    points = _check_landmarks(landmarks)
    contour = None if outline is None else np.asarray(outline, dtype=np.float32)
    mask, info = _region_mask(size, points, rng, config, margin, outline=contour)
    valid = _valid_area(crop)

    changed, colour = _colour_jitter(crop, rng, config)
    changed, sharpness = _sharpness_jitter(changed, rng, config)
    swapped = config.swap_target > 0 and bool(rng.random() < config.swap_target)
    source, target = (crop, changed) if swapped else (changed, crop)
    cx, cy = _face_centre(size, points)
    sx, sy = rng.uniform(*config.scale, size=2)
    tx, ty = rng.uniform(-config.shift, config.shift, size=2) * size
    matrix = np.array([[sx, 0, cx - sx * cx + tx], [0, sy, cy - sy * cy + ty]], dtype=np.float32)
    if abs(sx - 1) > 1e-3 or abs(sy - 1) > 1e-3 or abs(tx) > 0.05 or abs(ty) > 0.05:
        source = cv2.warpAffine(
            source, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        if not valid.all():
            valid = np.minimum(valid, cv2.warpAffine(valid, matrix, (size, size)))
    if not valid.all():
        # The black bands of a crop at the frame's edge stay as they are, and no band
        # moved by the jitter is pasted onto the face.
        mask *= valid == 255

    ratio = float(rng.choice(config.ratios))
    core = (mask > 0.5).astype(np.uint8)
    if cv2.countNonZero(core):
        difference = float(np.mean(cv2.mean(cv2.absdiff(source, target), mask=core)[:3]))
        if difference * ratio < config.min_difference:
            step = round(config.min_difference / ratio - difference + rng.uniform(1, 6))
            step *= int(rng.choice([-1, 1]))
            source = np.clip(source.astype(np.int16) + step, 0, 255).astype(np.uint8)
    image = _blend(source, target, mask * ratio)
    info.update(
        kind="self",
        changed="target" if swapped else "source",
        ratio=ratio,
        sharpness=sharpness,
        scale=(round(float(sx), 3), round(float(sy), 3)),
        shift_px=(round(float(tx), 1), round(float(ty), 1)),
        **colour,
    )
    return BlendResult(image=image, mask=mask, info=info)


def _similarity(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    """The least-squares similarity transform ``(2, 3)`` from ``source`` to ``target``
    points, and its mean residual in target eye distances."""
    z = source[:, 0] + 1j * source[:, 1]
    w = target[:, 0] + 1j * target[:, 1]
    zc, wc = z - z.mean(), w - w.mean()
    a = np.vdot(zc, wc) / max(float(np.vdot(zc, zc).real), 1e-6)
    b = w.mean() - a * z.mean()
    matrix = np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])
    error = float(np.abs(a * z + b - w).mean())
    eyes = max(float(np.linalg.norm(target[1] - target[0])), 1.0)
    return matrix, error / eyes


def _mirrored(crop: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The crop flipped left to right, with its landmarks in the same image-left-first
    order."""
    points = landmarks.copy()
    points[:, 0] = crop.shape[1] - 1 - points[:, 0]
    return cv2.flip(crop, 1), points[[1, 0, 2, 4, 3]]


def alignment_error(target_landmarks: np.ndarray, source_landmarks: np.ndarray) -> float:
    """How well two faces' poses match: the mean landmark error after the best similarity
    fit, in target eye distances, trying the source mirrored too (as :func:`cross_blend`
    does). Frontal faces of different people score about 0.05-0.1; a turned head against
    a frontal one 0.2 or more. Use it to pick a source for :func:`cross_blend`."""
    target = _check_landmarks(target_landmarks)
    source = _check_landmarks(source_landmarks)
    assert target is not None and source is not None
    flipped = source.copy()
    flipped[:, 0] = -flipped[:, 0]
    return min(_similarity(source, target)[1], _similarity(flipped[[1, 0, 2, 4, 3]], target)[1])


def _valid_area(crop: np.ndarray) -> np.ndarray:
    """uint8 255 where the crop shows the frame, 0 on the black bands that
    :func:`~fakewatch.engines.crop.crop_face` pads in where the square left the frame."""
    size = crop.shape[0]
    valid = np.zeros((size, size), dtype=np.uint8)
    if crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any():
        valid[:] = 255  # no band: padding fills whole rows or columns
        return valid
    flat = crop.reshape(size, -1)
    lit_rows = np.flatnonzero(flat.max(axis=1))
    lit_cols = np.flatnonzero(flat.max(axis=0).reshape(size, 3).max(axis=1))
    if lit_rows.size and lit_cols.size:
        valid[lit_rows[0] : lit_rows[-1] + 1, lit_cols[0] : lit_cols[-1] + 1] = 255
    return valid


def _reinhard(source: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Match the source's LAB mean and spread inside ``region`` to the target's."""
    src = cv2.cvtColor(source, cv2.COLOR_RGB2LAB)
    inside = region.astype(np.uint8)
    s_mean, s_std = (v.ravel() for v in cv2.meanStdDev(src, mask=inside))
    t_mean, t_std = (
        v.ravel() for v in cv2.meanStdDev(cv2.cvtColor(target, cv2.COLOR_RGB2LAB), mask=inside)
    )
    # Per channel the transfer is affine, so it runs as a lookup table.
    gain = np.minimum((t_std + 1e-3) / (s_std + 1e-3), 3.0)
    levels = np.arange(256, dtype=np.float64)[:, None]
    lut = np.clip(np.rint((levels - s_mean) * gain + t_mean), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.LUT(src, lut.reshape(256, 1, 3)), cv2.COLOR_LAB2RGB)


def cross_blend(
    target_crop: np.ndarray,
    target_landmarks: np.ndarray | None,
    source_crop: np.ndarray,
    source_landmarks: np.ndarray | None,
    rng: np.random.Generator,
    config: BlendConfig | None = None,
    margin: float = 1.3,
) -> BlendResult:
    """A FaceSwap-style pseudo-fake: another person's face pasted onto the target.

    The source is aligned on the target with the least-squares similarity transform
    between the five landmarks, mirrored first when that fits the pose better (both
    crops are already centred on their faces, so without landmarks it is only resized).
    It is colour-matched in LAB inside the mask (Reinhard) with chance
    :attr:`BlendConfig.colour_transfer`, and blended through the soft mask or, with chance
    :attr:`BlendConfig.seamless_clone`, by Poisson cloning inside the mask's core. The
    returned mask marks the pixels that now come from the source: soft for the alpha
    blend, binary for Poisson cloning (which changes every pixel it covers). Pick a source
    in a similar pose (:func:`alignment_error`); ``info["alignment_error"]`` records it.
    """
    config = config or BlendConfig()
    size = _crop_side(target_crop)
    source_size = _crop_side(source_crop)
    tgt_points = _check_landmarks(target_landmarks)
    src_points = _check_landmarks(source_landmarks)

    error = float("nan")
    mirrored = False
    if tgt_points is not None and src_points is not None:
        matrix, error = _similarity(src_points, tgt_points)
        flipped_crop, flipped_points = _mirrored(source_crop, src_points)
        flipped_matrix, flipped_error = _similarity(flipped_points, tgt_points)
        if flipped_error < error:
            source_crop, matrix, error, mirrored = flipped_crop, flipped_matrix, flipped_error, True
            src_points = flipped_points
    else:
        scale = size / source_size
        matrix = np.array([[scale, 0, 0], [0, scale, 0]], dtype=np.float64)
    warped = cv2.warpAffine(
        source_crop, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    source, sharpness = _sharpness_jitter(warped, rng, config)

    pasted = None
    if src_points is not None and tgt_points is not None:
        pasted = src_points @ matrix[:, :2].T + matrix[:, 2]
    mask, info = _region_mask(size, tgt_points, rng, config, margin, pasted)
    # Paste only what the source really shows (not the warp's border or the source
    # crop's black padding) onto what the target really shows, and keep off the crop's
    # edge: seamlessClone needs a margin there.
    inside = cv2.warpAffine(_valid_area(source_crop), matrix, (size, size))
    inside = cv2.erode(np.minimum(inside, _valid_area(target_crop)), np.ones((9, 9), np.uint8))
    inside[:4, :] = inside[-4:, :] = 0
    inside[:, :4] = inside[:, -4:] = 0
    mask = mask * cv2.GaussianBlur(inside.astype(np.float32) / 255, (0, 0), 1.5)
    core = mask > 0.5

    transferred = bool(core.sum() > 16 and rng.random() < config.colour_transfer)
    if transferred:
        source = _reinhard(source, target_crop, core)

    method = "alpha"
    if core.sum() > 16 and rng.random() < config.seamless_clone:
        method = "poisson"
        clone = core.astype(np.uint8) * 255
        x, y, w, h = cv2.boundingRect(clone)
        cloned = cv2.seamlessClone(
            source, target_crop, clone, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE
        )
        mask = core.astype(np.float32)
        image = np.where(core[..., None], cloned, target_crop)
    else:
        image = _blend(source, target_crop, mask)
    info.update(
        kind="cross",
        method=method,
        colour_transfer=transferred,
        sharpness=sharpness,
        mirrored=mirrored,
        alignment_error=round(error, 3),
    )
    return BlendResult(image=image, mask=mask.astype(np.float32), info=info)
