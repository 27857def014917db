"""Pseudo-fakes: the target mask covers exactly the pixels the blend changed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fakewatch.engines.crop import crop_face
from fakewatch.engines.faces import default_face_detector
from fakewatch.training.blend import (
    BlendConfig,
    BlendResult,
    alignment_error,
    cross_blend,
    self_blend,
)

SIZE = 224
SEEDS = range(24)


@pytest.fixture(scope="module")
def face(astronaut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's 224 px crop and its five landmarks in crop pixels."""
    found = default_face_detector().detect(astronaut)
    assert found, "RetinaFace found no face in the astronaut photo"
    crop = crop_face(astronaut, found[0].box, SIZE, 1.3)
    assert found[0].landmarks is not None
    return crop.image, crop.to_crop(found[0].landmarks)


def changed(result: BlendResult, original: np.ndarray, level: int = 2) -> np.ndarray:
    """Pixels where some channel moved by more than ``level`` grey levels."""
    return np.abs(result.image.astype(np.int16) - original).max(axis=2) > level


def assert_mask_matches_changes(result: BlendResult, original: np.ndarray) -> None:
    outside = changed(result, original, level=0) & (result.mask <= 0)
    assert not outside.any(), f"{outside.sum()} changed pixels lie outside the mask"
    core = result.mask > 0.5
    assert core.sum() > 0.05 * core.size, f"mask core too small: {core.sum()} pixels"
    shown = changed(result, original, level=0)[core].mean()
    assert shown > 0.5, f"only {shown:.0%} of the mask's core changed ({result.info})"


def assert_valid(result: BlendResult) -> None:
    assert result.image.shape == (SIZE, SIZE, 3) and result.image.dtype == np.uint8
    assert result.mask.shape == (SIZE, SIZE) and result.mask.dtype == np.float32
    assert result.mask.min() >= 0.0 and result.mask.max() <= 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_self_blend_mask_matches_changed_pixels(
    face: tuple[np.ndarray, np.ndarray], seed: int
) -> None:
    crop, landmarks = face
    result = self_blend(crop, landmarks, np.random.default_rng(seed))
    assert_valid(result)
    assert_mask_matches_changes(result, crop)
    # Most of the crop around the face is untouched.
    assert (result.mask == 0).mean() > 0.3


def test_self_blend_covers_the_face(face: tuple[np.ndarray, np.ndarray]) -> None:
    crop, landmarks = face
    config = BlendConfig(region_weights={"face": 1.0})
    for seed in range(8):
        mask = self_blend(crop, landmarks, np.random.default_rng(seed), config).mask
        for x, y in landmarks:
            assert mask[round(y), round(x)] > 0.5, f"seed {seed}: landmark ({x}, {y}) not in mask"


def test_regions_differ(face: tuple[np.ndarray, np.ndarray]) -> None:
    crop, landmarks = face
    eyes_y, mouth_y = landmarks[:2, 1].mean(), landmarks[3:, 1].mean()

    def centre_row(region: str) -> float:
        config = BlendConfig(region_weights={region: 1.0})
        mask = self_blend(crop, landmarks, np.random.default_rng(0), config).mask
        return float((mask.sum(axis=1) * np.arange(SIZE)).sum() / mask.sum())

    assert centre_row("eyes") < (eyes_y + mouth_y) / 2 < centre_row("lower")


def test_self_blend_is_reproducible(face: tuple[np.ndarray, np.ndarray]) -> None:
    crop, landmarks = face
    first = self_blend(crop, landmarks, np.random.default_rng(7))
    again = self_blend(crop, landmarks, np.random.default_rng(7))
    other = self_blend(crop, landmarks, np.random.default_rng(8))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.mask, again.mask)
    assert first.info == again.info
    assert not np.array_equal(first.image, other.image)
    assert not np.array_equal(first.mask, other.mask)


def test_self_blend_uses_no_global_random_state(face: tuple[np.ndarray, np.ndarray]) -> None:
    crop, landmarks = face
    np.random.seed(1)
    cv2.setRNGSeed(1)
    first = self_blend(crop, landmarks, np.random.default_rng(3))
    np.random.seed(2)
    cv2.setRNGSeed(2)
    again = self_blend(crop, landmarks, np.random.default_rng(3))
    np.testing.assert_array_equal(first.image, again.image)


@pytest.mark.parametrize("seed", range(6))
def test_self_blend_without_landmarks(face: tuple[np.ndarray, np.ndarray], seed: int) -> None:
    crop, _ = face
    result = self_blend(crop, None, np.random.default_rng(seed))
    assert_valid(result)
    assert result.info["region"] == "box"
    assert_mask_matches_changes(result, crop)
    assert result.mask[SIZE // 2, SIZE // 2] > 0.5
    assert result.mask[:10].max() == 0 and result.mask[:, :10].max() == 0


def test_black_bands_stay_untouched(face: tuple[np.ndarray, np.ndarray]) -> None:
    crop, landmarks = face
    # A face at the top-left of the frame: crop_face pads black rows and columns.
    padded = crop.copy()
    padded[:40] = 0
    padded[:, :30] = 0
    for seed in range(10):
        result = self_blend(padded, landmarks, np.random.default_rng(seed))
        assert result.image[:40].max() == 0 and result.image[:, :30].max() == 0
        assert result.mask[:40].max() == 0 and result.mask[:, :30].max() == 0
        assert_mask_matches_changes(result, padded)


def test_faint_blends_still_change_the_core(face: tuple[np.ndarray, np.ndarray]) -> None:
    crop, landmarks = face
    config = BlendConfig(ratios=(0.25,), hue_shift=0, saturation=0, brightness=0, contrast=0)
    for seed in range(6):
        result = self_blend(crop, landmarks, np.random.default_rng(seed), config)
        assert_mask_matches_changes(result, crop)


def test_rejects_bad_input(face: tuple[np.ndarray, np.ndarray]) -> None:
    crop, landmarks = face
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="uint8"):
        self_blend(crop.astype(np.float32), landmarks, rng)
    with pytest.raises(ValueError, match="square"):
        self_blend(crop[:200], landmarks, rng)
    with pytest.raises(ValueError, match="5 landmarks"):
        self_blend(crop, landmarks[:3], rng)
    with pytest.raises(ValueError, match="unknown regions"):
        BlendConfig(region_weights={"forehead": 1.0})
    with pytest.raises(ValueError, match="ratios"):
        BlendConfig(ratios=(0.0,))


def other_face(crop: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A different-looking face without any data files: mirrored, recoloured, shifted."""
    mirrored = cv2.flip(crop, 1)[:, :, ::-1].copy()  # also swap red and blue
    points = landmarks.copy()
    points[:, 0] = SIZE - 1 - points[:, 0]
    points = points[[1, 0, 2, 4, 3]]
    shift = np.float32([[1.05, 0, -8], [0, 1.05, 3]])
    moved = cv2.warpAffine(mirrored, shift, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
    return moved, (points @ shift[:, :2].T + shift[:, 2]).astype(np.float32)


@pytest.mark.parametrize("poisson", [0.0, 1.0])
@pytest.mark.parametrize("seed", range(6))
def test_cross_blend_mask_matches_changed_pixels(
    face: tuple[np.ndarray, np.ndarray], poisson: float, seed: int
) -> None:
    crop, landmarks = face
    source, source_points = other_face(crop, landmarks)
    config = BlendConfig(seamless_clone=poisson)
    result = cross_blend(
        crop, landmarks, source, source_points, np.random.default_rng(seed), config
    )
    assert_valid(result)
    assert result.info["method"] == ("poisson" if poisson else "alpha")
    assert result.info["alignment_error"] < 0.05
    assert_mask_matches_changes(result, crop)


def test_cross_blend_is_reproducible(face: tuple[np.ndarray, np.ndarray]) -> None:
    crop, landmarks = face
    source, points = other_face(crop, landmarks)
    first = cross_blend(crop, landmarks, source, points, np.random.default_rng(4))
    again = cross_blend(crop, landmarks, source, points, np.random.default_rng(4))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.mask, again.mask)


def test_cross_blend_without_landmarks(face: tuple[np.ndarray, np.ndarray]) -> None:
    crop, landmarks = face
    source, _ = other_face(crop, landmarks)
    small = cv2.resize(source, (160, 160), interpolation=cv2.INTER_AREA)
    result = cross_blend(crop, None, small, None, np.random.default_rng(0))
    assert_valid(result)
    assert_mask_matches_changes(result, crop)


def test_alignment_error(face: tuple[np.ndarray, np.ndarray]) -> None:
    _, landmarks = face
    _, mirrored = other_face(np.zeros((SIZE, SIZE, 3), np.uint8), landmarks)
    assert alignment_error(landmarks, landmarks) < 1e-4
    assert alignment_error(landmarks, mirrored) < 0.05  # mirroring is tried as well
    turned = landmarks.copy()
    turned[2, 0] += 25  # nose far to one side: a turned head
    assert alignment_error(landmarks, turned) > 0.1


def real_faces(folder: Path, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    detector = default_face_detector()
    faces = []
    for name in ("facedetect__grace_hopper_512x512.jpg", "opencv-doc__messi5.jpg"):
        image = cv2.imread(str(folder / name))
        if image is None:
            continue
        frame = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        for found in detector.detect(frame)[:count]:
            crop = crop_face(frame, found.box, SIZE, 1.3)
            assert found.landmarks is not None
            faces.append((crop.image, crop.to_crop(found.landmarks)))
    return faces


def test_cross_blend_between_real_people(
    face: tuple[np.ndarray, np.ndarray], shared_data: Path
) -> None:
    faces = real_faces(shared_data / "real-faces" / "images", 1)
    if not faces:
        pytest.skip("no sample faces found in the real-faces folder")
    crop, landmarks = face
    for k, (source, points) in enumerate(faces):
        for seed in range(4):
            result = cross_blend(crop, landmarks, source, points, np.random.default_rng(seed))
            assert_valid(result)
            assert_mask_matches_changes(result, crop)
            reverse = cross_blend(source, points, crop, landmarks, np.random.default_rng(k))
            assert_mask_matches_changes(reverse, source)


def _ellipse_outline(landmarks: np.ndarray) -> np.ndarray:
    """A face-shaped outline around the landmarks, as the face mesh's hull would be."""
    centre = landmarks.mean(axis=0) + np.array([0.0, 8.0])
    angles = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    return (centre + np.stack([50 * np.cos(angles), 68 * np.sin(angles)], axis=1)).astype(
        np.float32
    )


def test_masks_follow_a_given_outline(face: tuple[np.ndarray, np.ndarray]) -> None:
    """With the face's own outline the mask is that outline (deformed a little), and the
    partial regions are its part below the nose or above the mouth."""
    crop, landmarks = face
    outline = _ellipse_outline(landmarks)
    inside = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(inside, [np.round(outline).astype(np.int32)], 1)
    full = BlendConfig(region_weights={"face": 1.0})
    for seed in range(6):
        result = self_blend(crop, landmarks, np.random.default_rng(seed), full, outline=outline)
        assert result.info["region"] == "mesh-face"
        core = result.mask > 0.5
        overlap = (core & (inside > 0)).sum() / max(1, (core | (inside > 0)).sum())
        assert overlap > 0.6, f"seed {seed}: IoU with the outline {overlap:.2f}"
        assert_mask_matches_changes(result, crop)
    nose_y = landmarks[2, 1]
    lower = self_blend(
        crop,
        landmarks,
        np.random.default_rng(0),
        BlendConfig(region_weights={"lower": 1.0}),
        outline=outline,
    )
    rows = np.flatnonzero((lower.mask > 0.5).any(axis=1))
    assert rows.min() > nose_y - 0.35 * (landmarks[3:, 1].mean() - landmarks[:2, 1].mean()) - 10


def test_swapped_target_changes_the_surroundings(face: tuple[np.ndarray, np.ndarray]) -> None:
    """With swap_target the colour and sharpness change goes to the crop around the face,
    which the face is pasted back onto: outside the mask the picture differs from the
    original, where an ordinary self-blend leaves it bit-identical."""
    crop, landmarks = face
    for seed in range(4):
        swapped = BlendConfig(region_weights={"face": 1.0}, swap_target=1.0)
        result = self_blend(crop, landmarks, np.random.default_rng(seed), swapped)
        assert result.info["changed"] == "target"
        outside = result.mask == 0
        assert changed(result, crop, level=0)[outside].mean() > 0.3, result.info
        plain = self_blend(crop, landmarks, np.random.default_rng(seed))
        assert plain.info["changed"] == "source"
        assert not changed(plain, crop, level=0)[plain.mask == 0].any()
