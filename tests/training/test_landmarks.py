"""MediaPipe's face mesh, fetched from its PyPI wheel, outlines the face in a crop."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fakewatch.engines.crop import crop_face
from fakewatch.engines.faces import default_face_detector
from fakewatch.training.landmarks import FaceMesh, LandmarkError, fetch_model
from tests.support.peers import REPO, missing


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    try:
        return FaceMesh(fetch_model(REPO / ".cache" / "weights"))
    except LandmarkError as error:
        missing("the face-mesh outline check", str(error))


@pytest.mark.slow
def test_outline_surrounds_the_face(mesh: FaceMesh, astronaut: np.ndarray) -> None:
    """The hull of the 468 points holds the five RetinaFace landmarks, is about as wide as
    the face box and sits inside the crop."""
    face = default_face_detector().detect(astronaut)[0]
    assert face.landmarks is not None
    crop = crop_face(astronaut, face.box, 224, 1.3)
    landmarks = crop.to_crop(face.landmarks)
    outline = mesh.outline(crop.image, landmarks, 1.3)
    assert outline is not None and outline.shape[1] == 2 and len(outline) >= 20
    contour = outline.reshape(-1, 1, 2)
    for x, y in landmarks:
        assert cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0
    width = outline[:, 0].max() - outline[:, 0].min()
    assert 0.6 * 224 / 1.3 < width < 1.3 * 224 / 1.3
    assert outline.min() > -5 and outline.max() < 229


@pytest.mark.slow
def test_no_outline_without_a_face(mesh: FaceMesh) -> None:
    grey = np.full((224, 224, 3), 128, dtype=np.uint8)
    points = np.array([[80, 90], [144, 90], [112, 120], [88, 150], [136, 150]], np.float32)
    assert mesh.outline(grey, points, 1.3) is None
