from pathlib import Path

import cv2
import numpy as np
import pytest

from fakewatch.engines.faces import RetinaFaceDetector, default_face_detector
from fakewatch.engines.media import read_image


def test_finds_the_face_with_landmarks(astronaut: np.ndarray) -> None:
    faces = default_face_detector().detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.9
    assert 60 < face.box.width < 160 and 160 < face.box.center[0] < 300
    assert face.landmarks is not None and face.landmarks.shape == (5, 2)
    left_eye, right_eye = face.landmarks[0], face.landmarks[1]
    assert left_eye[0] < right_eye[0]  # image-left eye first
    inside = (face.landmarks[:, 0] > face.box.x0) & (face.landmarks[:, 0] < face.box.x1)
    assert inside.all()


def test_boxes_map_back_to_the_full_resolution_frame(astronaut: np.ndarray) -> None:
    small = default_face_detector().detect(astronaut)[0]
    large_frame = cv2.resize(astronaut, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    large = RetinaFaceDetector(detect_size=640).detect(large_frame)[0]
    assert large.box.scaled(1 / 3).iou(small.box) > 0.8


def test_min_face_and_max_faces(astronaut: np.ndarray) -> None:
    assert RetinaFaceDetector(min_face=400).detect(astronaut) == []
    tiled = np.concatenate([astronaut, cv2.resize(astronaut, None, fx=0.5, fy=1.0)], axis=1)
    assert len(RetinaFaceDetector(max_faces=1).detect(tiled)) == 1


def test_no_face_in_noise() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert default_face_detector().detect(noise) == []


def test_bad_frame_and_options_are_refused() -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        default_face_detector().detect(np.zeros((10, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="score_threshold"):
        RetinaFaceDetector(score_threshold=1.5)


def test_finds_many_faces_in_the_conference_photo(shared_data: Path) -> None:
    image = read_image(shared_data / "real-faces/images/visp__solvay_1927_2126x1463.jpg")
    faces = RetinaFaceDetector(detect_size=2200, min_face=10, max_faces=64).detect(image)
    assert len(faces) >= 25
