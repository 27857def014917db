"""Make a test or demo video whose face is manipulated during a known time span.

Frames inside ``[start_s, end_s)`` get the face self-blended (the same recipe the model
trains on, with one fixed set of parameters so that the edit is steady from frame to
frame, as a face swap is) and pasted back at full resolution only where the blend mask
is non-zero. Everything else is re-encoded unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from fakewatch.engines.crop import Box, FaceCrop, crop_face
from fakewatch.engines.faces import FaceDetector, default_face_detector
from fakewatch.engines.media import MediaError
from fakewatch.training.blend import BlendConfig, BlendResult, cross_blend, self_blend

WORK_SIZE = 256
# The demo's edit is the training recipe's standard self-blend at its default strength,
# over the whole face and at full ratio, as a live face swap replaces the whole face:
# the colour, sharpness, scale and outline changes are drawn from the seed, once for the
# whole span. No seed is picked for the model: MODEL_CARD.md reports the demo's window
# scores and decisions for seeds 0-8.
DEMO_BLEND = BlendConfig(region_weights={"face": 1.0}, ratios=(1.0,))
DEMO_SEED = 0


@dataclass(frozen=True)
class ManipulatedVideo:
    """What was written: the file, its frame rate, and the frames that were changed."""

    path: Path
    fps: float
    frames: int
    manipulated: int
    start_s: float
    end_s: float


def manipulate_span(
    source: Path,
    target: Path,
    start_s: float,
    end_s: float,
    seed: int = 0,
    detector: FaceDetector | None = None,
    config: BlendConfig = DEMO_BLEND,
) -> ManipulatedVideo:
    """Copy ``source`` to ``target`` (H.264), manipulating faces in ``[start_s, end_s)``."""
    if end_s <= start_s:
        raise ValueError(f"the manipulated span must end after it starts ({start_s}..{end_s})")
    detector = detector or default_face_detector()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        reader = av.open(str(source))
    except av.error.FFmpegError as error:
        raise MediaError(f"{source} cannot be opened as a video: {error}") from error
    frames = manipulated = 0
    with reader, av.open(str(target), "w") as writer:
        video = reader.streams.video[0]
        rate = video.average_rate or 25
        out = writer.add_stream("libx264", rate=rate, options={"crf": "18"})
        out.width, out.height, out.pix_fmt = video.width // 2 * 2, video.height // 2 * 2, "yuv420p"
        for frame in reader.decode(video):
            image = frame.to_ndarray(format="rgb24")[: out.height, : out.width]
            time_s = float(frame.time) if frame.time is not None else frames / float(rate)
            if start_s <= time_s < end_s:
                changed = _manipulate(image, detector, np.random.default_rng(seed), config)
                manipulated += changed is not image
                image = changed
            pixels = np.ascontiguousarray(image, dtype=np.uint8)
            for packet in out.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                writer.mux(packet)
            frames += 1
        for packet in out.encode():
            writer.mux(packet)
    return ManipulatedVideo(target, float(rate), frames, manipulated, start_s, end_s)


def _manipulate(
    image: np.ndarray, detector: FaceDetector, rng: np.random.Generator, config: BlendConfig
) -> np.ndarray:
    return _replace_first_face(
        image, detector, lambda crop, landmarks: self_blend(crop, landmarks, rng, config)
    )


def _replace_first_face(
    image: np.ndarray,
    detector: FaceDetector,
    blend: Callable[[np.ndarray, np.ndarray | None], BlendResult],
) -> np.ndarray:
    """``image`` with its first face's crop replaced by ``blend(crop, landmarks)``, pasted
    back at full resolution (``image`` itself when it has no face)."""
    faces = detector.detect(image)
    if not faces:
        return image
    face = faces[0]
    crop = crop_face(image, face.box, WORK_SIZE, 1.3)
    landmarks = None if face.landmarks is None else crop.to_crop(face.landmarks)
    return paste_back(image, crop.box, blend(crop.image, landmarks))


def swap_face(
    image: np.ndarray,
    detector: FaceDetector,
    source: FaceCrop,
    source_landmarks: np.ndarray | None,
    rng: np.random.Generator,
    config: BlendConfig = DEMO_BLEND,
) -> np.ndarray:
    """``image`` with its first face replaced by the face of ``source`` (a
    :func:`~fakewatch.engines.crop.crop_face` crop of another person, with its landmarks in
    crop coordinates): the training recipe's cross-identity swap
    (:func:`~fakewatch.training.blend.cross_blend`), pasted back at full resolution."""
    return _replace_first_face(
        image,
        detector,
        lambda crop, landmarks: cross_blend(
            crop, landmarks, source.image, source_landmarks, rng, config
        ),
    )


def paste_back(image: np.ndarray, box: Box, blend: BlendResult) -> np.ndarray:
    """``image`` with ``blend`` (made on the square crop ``box``) pasted back where its mask
    is non-zero."""
    side = round(box.width)
    x0, y0 = round(box.x0), round(box.y0)
    edited = cv2.resize(blend.image, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    weight = cv2.resize(blend.mask, (side, side), interpolation=cv2.INTER_LINEAR)[..., None]
    height, width = image.shape[:2]
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(width, x0 + side), min(height, y0 + side)
    out = image.copy()
    region = out[fy0:fy1, fx0:fx1].astype(np.float32)
    sub = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    mixed = region * (1 - weight[sub]) + edited[sub] * weight[sub]
    out[fy0:fy1, fx0:fx1] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return out
