"""The face's outline from MediaPipe's face mesh, for blend masks that follow the jaw.

Self-blended images are most convincing, and most like a real swap, when the blended
region follows the face's own contour (SBI takes the hull of 81 landmarks). The five
RetinaFace points only say where the eyes, nose and mouth are, so :mod:`blend` has to
guess the outline from them. MediaPipe's face mesh (468 points, Apache-2.0) is carried
inside the PyPI wheel ``mediapipe==0.10.21`` as ``face_landmark.tflite``; this module
fetches that one file once (``pip download``, sha256-checked), runs it with the LiteRT
interpreter (PyPI ``ai-edge-litert``) on the training crops and keeps the convex hull of
the 468 points, in crop pixels.

The mesh model wants the face upright in a 192-pixel square about 1.5 times the face
box, with pixels in 0..1; the crop is rotated by the eye line and scaled to that, and
the points are mapped back. A crop whose face-presence score is low gets no outline
(blends then fall back to the five points).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

WHEEL = "mediapipe==0.10.21"
MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
MODEL_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
MODEL_NAME = "face_landmark.tflite"
INPUT_SIDE = 192
ROI_SCALE = 1.5  # the mesh's input square, in face-box widths
MIN_PRESENCE = 0.5


class LandmarkError(RuntimeError):
    """The face-mesh model cannot be fetched or run; the message says why."""


def fetch_model(folder: Path) -> Path:
    """``face_landmark.tflite``, taken once from the mediapipe wheel on PyPI."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / MODEL_NAME
    if not target.is_file():
        downloads = folder / "packages"
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--only-binary=:all:", WHEEL, "-d", str(downloads)]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(downloads.glob("mediapipe-*.whl"))
        if result.returncode != 0 or not wheels:
            raise LandmarkError(
                f"could not download {WHEEL} from PyPI for its face mesh: "
                f"{result.stderr.strip()[-300:]}"
            )
        with zipfile.ZipFile(wheels[-1]) as wheel:
            data = wheel.read(MEMBER)
        temp = target.with_suffix(".part")
        temp.write_bytes(data)
        temp.replace(target)
        wheels[-1].unlink()
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        raise LandmarkError(f"{target} is not MediaPipe's face mesh (sha256 {digest}); delete it")
    return target


class FaceMesh:
    """The outline (convex hull of the 468 mesh points) of the face in a training crop."""

    def __init__(self, model: Path, threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise LandmarkError(
                "the face mesh needs the LiteRT interpreter: pip install ai-edge-litert "
                "(part of fakewatch[train])"
            ) from error
        self.interpreter = Interpreter(model_path=str(model), num_threads=threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = self.interpreter.get_output_details()
        self._points = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 468 * 3)
        self._presence = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 1)

    def points(self, crop: np.ndarray, landmarks: np.ndarray, margin: float) -> np.ndarray | None:
        """The 468 mesh points ``(468, 2)`` in crop pixels, or None when the model does not
        see a face. ``landmarks`` are the five RetinaFace points in crop pixels."""
        size = crop.shape[0]
        right_eye, left_eye = landmarks[0], landmarks[1]
        angle = float(np.degrees(np.arctan2(*(left_eye - right_eye)[::-1])))
        side = size / margin * ROI_SCALE
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, INPUT_SIDE / side)
        matrix[:, 2] += INPUT_SIDE / 2 - size / 2
        roi = cv2.warpAffine(crop, matrix, (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR)
        self.interpreter.set_tensor(self._input, (roi.astype(np.float32) / 255.0)[None])
        self.interpreter.invoke()
        presence = float(self.interpreter.get_tensor(self._presence).ravel()[0])
        if 1 / (1 + np.exp(-presence)) < MIN_PRESENCE:
            return None
        points = self.interpreter.get_tensor(self._points).reshape(468, 3)[:, :2]
        inverse = cv2.invertAffineTransform(matrix)
        return np.asarray(points @ inverse[:, :2].T + inverse[:, 2], dtype=np.float32)

    def outline(self, crop: np.ndarray, landmarks: np.ndarray, margin: float) -> np.ndarray | None:
        """The convex hull of the mesh ``(K, 2)`` in crop pixels, or None."""
        points = self.points(crop, landmarks, margin)
        if points is None:
            return None
        return np.asarray(cv2.convexHull(points).reshape(-1, 2), dtype=np.float32)
