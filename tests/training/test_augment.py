"""Training augmentation: masks follow images, seeds reproduce, types survive."""

from __future__ import annotations

import albumentations as alb
import numpy as np
import pytest

from fakewatch.training.augment import PairTransform, scale_jitter, train_transform

SIZE = 224


def square_pair() -> tuple[np.ndarray, np.ndarray]:
    """A white square off the centre (so that a flip moves it), in image and mask."""
    image = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), dtype=np.float32)
    image[40:120, 30:110] = 255
    mask[40:120, 30:110] = 1.0
    return image, mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_mask_stays_aligned_with_image() -> None:
    image, mask = square_pair()
    original = mask > 0.5
    transform = train_transform(SIZE, seed=0)
    moved = 0
    for _ in range(60):
        out_image, out_mask = transform(image, mask)
        white = out_image.mean(axis=2) > 127
        assert iou(white, out_mask > 0.5) > 0.8
        moved += iou(out_mask > 0.5, original) < 0.9
    assert moved > 10, "geometric transforms were hardly ever applied"


def test_types_and_shapes_are_kept() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.clip(rng.normal(0.5, 0.3, (SIZE, SIZE)), 0, 1).astype(np.float32)
    transform = train_transform(SIZE, seed=1)
    for _ in range(20):
        out_image, out_mask = transform(image, mask)
        assert out_image.shape == (SIZE, SIZE, 3) and out_image.dtype == np.uint8
        assert out_mask.shape == (SIZE, SIZE) and out_mask.dtype == np.float32
        assert out_mask.min() >= 0.0 and out_mask.max() <= 1.0
    # A soft mask stays soft through resampling (no nearest-neighbour rounding).
    ramp = np.tile(np.linspace(0, 1, SIZE, dtype=np.float32), (SIZE, 1))
    _, out_ramp = train_transform(SIZE, seed=2)(image, ramp)
    assert len(np.unique(out_ramp)) > 50


def test_same_seed_same_sequence() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    _, mask = square_pair()
    first, again, other = (train_transform(SIZE, seed) for seed in (5, 5, 6))
    outputs = [first(image, mask) for _ in range(5)]
    for out_image, out_mask in outputs:
        repeat_image, repeat_mask = again(image, mask)
        np.testing.assert_array_equal(out_image, repeat_image)
        np.testing.assert_array_equal(out_mask, repeat_mask)
    assert any(not np.array_equal(o[0], other(image, mask)[0]) for o in outputs)
    first.reseed(5)
    np.testing.assert_array_equal(first(image, mask)[0], outputs[0][0])


def test_transforms_draw_independently() -> None:
    # albumentations 2 seeds every transform alike under Compose(seed=...), so two
    # transforms with the same chance would always fire together.
    transform = PairTransform([alb.HorizontalFlip(p=0.5), alb.VerticalFlip(p=0.5)], seed=3)
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[0, 0] = 255
    corners = set()
    for _ in range(40):
        out, _ = transform(image, np.zeros((8, 8), dtype=np.float32))
        corners.add(tuple(np.argwhere(out[..., 0] == 255)[0]))
    assert corners == {(0, 0), (0, 7), (7, 0), (7, 7)}


def test_scale_jitter_simulates_small_faces() -> None:
    jitter = scale_jitter(SIZE, face_px=(32, 80), margin=1.3, p=1.0)
    assert jitter.scale_range == pytest.approx((32 * 1.3 / SIZE, 80 * 1.3 / SIZE))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    _, mask = square_pair()
    transform = PairTransform([jitter], seed=0)
    out_image, out_mask = transform(image, mask)
    # Detail of a 42-104 px crop is gone; the mask keeps its geometry.
    detail = np.abs(np.diff(out_image.astype(np.float32), axis=1)).mean()
    assert detail < 0.5 * np.abs(np.diff(image.astype(np.float32), axis=1)).mean()
    np.testing.assert_array_equal(out_mask, mask)


def test_rejects_mismatched_pair() -> None:
    image, mask = square_pair()
    transform = train_transform(SIZE, seed=0)
    with pytest.raises(ValueError, match="does not match"):
        transform(image, mask[:100])
    with pytest.raises(ValueError, match="uint8"):
        transform(image.astype(np.float32), mask)


def test_strength_zero_only_mirrors() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), dtype=np.float32)
    for seed in range(8):
        out, _ = train_transform(SIZE, seed, strength=0.0)(image, mask)
        assert np.array_equal(out, image) or np.array_equal(out, image[:, ::-1])
    with pytest.raises(ValueError, match="strength"):
        train_transform(SIZE, 0, strength=1.5)
