import numpy as np
import pytest

from fakewatch.engines.scoring import face_region, score_mask, score_masks


def test_region_is_the_ellipse_inside_the_face_box() -> None:
    region = face_region(130, 1.3)
    # the face box is the central 100 px; its inscribed circle covers pi/4 of it
    assert region.sum() == pytest.approx(np.pi / 4 * 100 * 100, rel=0.02)
    assert not region[0, 0] and region[65, 65]


def test_clean_face_scores_low_and_manipulated_face_scores_high() -> None:
    clean = np.full((64, 64), 0.02, dtype=np.float32)
    swapped = clean.copy()
    swapped[20:44, 20:44] = 0.9
    assert score_mask(clean, 1.3).score == pytest.approx(0.02)
    result = score_mask(swapped, 1.3)
    assert result.score == pytest.approx(0.9)
    assert 0.3 < result.area < 0.6


def test_one_hot_pixel_barely_moves_the_score() -> None:
    mask = np.zeros((100, 100), dtype=np.float32)
    mask[50, 50] = 1.0
    assert score_mask(mask, 1.3).score < 0.01


def test_manipulation_outside_the_face_is_ignored() -> None:
    mask = np.zeros((100, 100), dtype=np.float32)
    mask[:8, :] = 1.0  # background at the top of the margin
    assert score_mask(mask, 1.3).score == 0.0


def test_batch_matches_single() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((5, 32, 32), dtype=np.float32)
    scores, areas = score_masks(masks, 1.3)
    for i in range(5):
        single = score_mask(masks[i], 1.3)
        assert scores[i] == pytest.approx(single.score)
        assert areas[i] == pytest.approx(single.area)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="square masks"):
        score_masks(np.zeros((2, 32, 16), dtype=np.float32), 1.3)


def test_contrast_rule_discounts_what_the_surroundings_show() -> None:
    """The contrast score is the face's top mean minus the ring's: a mask high
    everywhere (a camera the model dislikes) scores near 0, one high on the face only
    keeps its score."""
    size, margin = 96, 1.3
    region = face_region(size, margin)
    everywhere = np.full((size, size), 0.8, dtype=np.float32)
    face_only = np.where(region, 0.8, 0.1).astype(np.float32)
    masks = np.stack([everywhere, face_only])
    top, _ = score_masks(masks, margin)
    contrast, _ = score_masks(masks, margin, rule="contrast")
    assert top[0] == pytest.approx(0.8) and top[1] == pytest.approx(0.8)
    assert contrast[0] == pytest.approx(0.0, abs=1e-6)
    assert contrast[1] == pytest.approx(0.7, abs=1e-5)
    with pytest.raises(ValueError, match="unknown scoring rule"):
        score_masks(masks, margin, rule="max")
