import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    jaccard_score,
    log_loss,
    roc_auc_score,
    roc_curve,
)

from fakewatch.engines.aggregate import video_score
from fakewatch.engines.bundle import Threshold
from fakewatch.training.metrics import (
    VideoScores,
    binary_metrics,
    bootstrap_interval,
    by_source,
    pixel_iou_dice,
    threshold_at_fpr,
    video_level_scores,
    video_metrics,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _random_scores(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1).astype(np.float32)
    return labels, scores


# --------------------------------------------------------------------------- frame scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_ap_log_loss_match_sklearn(seed: int) -> None:
    labels, scores = _random_scores(seed)
    result = binary_metrics(labels, scores)
    clipped = np.clip(scores.astype(np.float64), 1e-6, 1 - 1e-6)
    assert result.auc == pytest.approx(roc_auc_score(labels, scores), rel=1e-9)
    assert result.ap == pytest.approx(average_precision_score(labels, scores), rel=1e-9)
    assert result.log_loss == pytest.approx(log_loss(labels, clipped), rel=1e-9)
    assert result.n_real == int(np.sum(labels == 0)) and result.n_fake == int(np.sum(labels))
    assert result.accuracy_at_threshold == pytest.approx(np.mean((scores >= 0.5) == labels))
    assert result.reason is None


def test_log_loss_is_finite_for_certain_wrong_scores() -> None:
    result = binary_metrics([0, 1], [1.0, 0.0])
    assert result.log_loss == pytest.approx(-np.log(1e-6))


@pytest.mark.parametrize("seed", [0, 1])
def test_tpr_at_fpr_is_the_best_roc_point_within_the_fpr(seed: int) -> None:
    labels, scores = _random_scores(seed, 1000)
    result = binary_metrics(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    for target, value in result.tpr_at_fpr.items():
        assert value == pytest.approx(tpr[fpr <= target].max(), abs=1e-12)
    assert set(result.tpr_at_fpr) == {0.01, 0.05, 0.1}


def test_one_class_gives_none_with_a_reason() -> None:
    result = binary_metrics([0, 0, 0, 0], [0.1, 0.2, 0.7, 0.4], threshold=0.5)
    assert result.auc is None and result.ap is None
    assert result.reason == "no fake samples"
    assert result.fpr_at_threshold == pytest.approx(0.25)
    assert result.tpr_at_threshold is None
    assert all(v is None for v in result.tpr_at_fpr.values())
    assert result.log_loss is not None and result.mean_score == pytest.approx(0.35)
    fakes = binary_metrics([1, 1], [0.9, 0.2])
    assert fakes.auc is None and fakes.reason == "no real samples"
    assert fakes.tpr_at_threshold == pytest.approx(0.5) and fakes.fpr_at_threshold is None
    empty = binary_metrics([], [])
    assert empty.reason == "no samples" and empty.log_loss is None and empty.mean_score is None
    for report in (result, fakes, empty):
        text = json.dumps(report.to_dict(), allow_nan=False)
        assert '"0.01"' in text


def test_bad_labels_and_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="labels"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        binary_metrics([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="length"):
        binary_metrics([0, 1], [0.1])


def test_by_source_splits_and_reports_all_real_sources() -> None:
    labels, scores = _random_scores(3, 300)
    # fakes and half the reals come from one source, the other reals from a real-only one
    sources = np.where((labels == 0) & (np.arange(300) % 2 == 1), "webcam", "Deepfakes")
    result = by_source(labels, scores, sources, threshold=0.4)
    assert list(result) == sorted(set(sources.tolist()))
    webcam = result["webcam"]
    real = scores[sources == "webcam"]
    assert webcam.auc is None and webcam.n_fake == 0
    assert webcam.fpr_at_threshold == pytest.approx(np.mean(real >= 0.4))
    assert webcam.mean_score == pytest.approx(real.mean())
    chosen = sources == "Deepfakes"
    expected = binary_metrics(labels[chosen], scores[chosen], threshold=0.4)
    assert result["Deepfakes"] == expected and expected.auc is not None


# --------------------------------------------------------------------------- pixels


def test_iou_dice_on_a_hand_computed_case() -> None:
    pred = np.zeros((3, 2, 2), dtype=np.float32)
    true = np.zeros((3, 2, 2), dtype=np.uint8)
    pred[0].flat[[0, 1, 2]] = [0.9, 0.5, 0.7]  # 0.5 counts: pred >= threshold
    true[0].flat[[1, 2, 3]] = 1
    pred[1] = 0.49  # sample 1: empty prediction and empty truth, perfect
    pred[2, 0, 0] = 0.8  # sample 2: a false alarm on a real face
    result = pixel_iou_dice(pred, true)
    np.testing.assert_allclose(result.per_sample_iou, [2 / 4, 1.0, 0.0])
    np.testing.assert_allclose(result.per_sample_dice, [4 / 6, 1.0, 0.0])
    assert result.iou == pytest.approx(2 / 5)  # micro: 2 shared of 5 pixels in the union
    assert result.dice == pytest.approx(4 / 7)
    assert result.iou_macro == pytest.approx((0.5 + 0.0) / 2)
    assert result.dice_macro == pytest.approx((4 / 6 + 0.0) / 2)
    assert (result.n_samples, result.n_scored, result.n_both_empty) == (3, 2, 1)
    json.dumps(result.to_dict(), allow_nan=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_iou_dice_match_sklearn_on_flattened_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred = rng.random((6, 16, 16), dtype=np.float32)
    true = (rng.random((6, 16, 16)) < 0.3).astype(np.uint8)
    pred[2] = 0.0
    true[2] = 0
    true[4] = 0
    result = pixel_iou_dice(pred, true, threshold=0.6)
    flat_pred, flat_true = (pred >= 0.6).ravel(), true.ravel().astype(bool)
    assert result.iou == pytest.approx(jaccard_score(flat_true, flat_pred), rel=1e-12)
    assert result.dice == pytest.approx(f1_score(flat_true, flat_pred), rel=1e-12)
    for i in range(6):
        p, t = (pred[i] >= 0.6).ravel(), true[i].ravel().astype(bool)
        assert result.per_sample_iou[i] == pytest.approx(jaccard_score(t, p, zero_division=1.0))
        assert result.per_sample_dice[i] == pytest.approx(f1_score(t, p, zero_division=1.0))
    assert result.n_both_empty == 1
    assert result.iou_macro == pytest.approx(np.delete(result.per_sample_iou, 2).mean())


def test_all_empty_masks_are_perfect_micro_and_undefined_macro() -> None:
    result = pixel_iou_dice(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), dtype=bool))
    assert result.iou == 1.0 and result.dice == 1.0
    assert result.iou_macro is None and result.dice_macro is None
    with pytest.raises(ValueError, match="shape"):
        pixel_iou_dice(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


# --------------------------------------------------------------------------- calibration


def test_threshold_at_fpr_with_ties() -> None:
    real = [0.1, 0.2, 0.5, 0.5, 0.9]
    # one of five may be flagged: just above the tied 0.5s, leaving only 0.9
    one = threshold_at_fpr(real, 0.2)
    assert isinstance(one, Threshold)
    assert 0.5 < one.value < 0.5 + 1e-6 and one.false_positive_rate == pytest.approx(0.2)
    # two of five may be flagged, but the 0.5s are tied: flagging one flags both
    two = threshold_at_fpr(real, 0.4)
    assert two.value == one.value and two.false_positive_rate == pytest.approx(0.2)
    three = threshold_at_fpr(real, 0.6)
    assert 0.2 < three.value < 0.2 + 1e-6 and three.false_positive_rate == pytest.approx(0.6)
    assert threshold_at_fpr(real, 1.0).value == 0.0
    assert "5 real frames" in one.chosen_on and "1/5" in one.chosen_on


def test_threshold_below_the_resolution_is_above_every_real_score() -> None:
    result = threshold_at_fpr([0.3, 0.6, 0.8], 0.01, chosen_on="val/real")
    assert result.value > 0.8 and result.false_positive_rate == 0.0
    assert result.chosen_on.startswith("val/real: 3 real frames (FPR resolution 1/3")
    with pytest.raises(ValueError, match=r"exactly 1\.0"):
        threshold_at_fpr([0.3, 1.0, 1.0], 0.34)
    with pytest.raises(ValueError, match="no real scores"):
        threshold_at_fpr([], 0.01)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        threshold_at_fpr([0.5, 1.5], 0.01)


def test_threshold_meets_a_target_that_is_an_exact_multiple_of_one_over_n() -> None:
    real = np.linspace(0.0, 0.99, 100)
    result = threshold_at_fpr(real, 0.29)  # 0.29 * 100 is 28.999999999999996
    assert result.false_positive_rate == pytest.approx(0.29)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", [0.01, 0.05, 0.1, 0.25])
def test_threshold_is_the_smallest_that_meets_the_target(dtype: type, target: float) -> None:
    rng = np.random.default_rng(7)
    real = np.round(rng.beta(2, 5, 257), 2).astype(dtype)  # many ties
    result = threshold_at_fpr(real, target)
    value = result.value
    assert np.mean(real >= value) <= target
    assert result.false_positive_rate == np.mean(real >= value)
    # comparing in float32 (how engines emit scores) flags the same frames
    assert np.mean(real.astype(np.float32) >= value) == result.false_positive_rate
    # and one float32 step lower flags too many
    below = np.nextafter(np.float32(value), np.float32(0))
    assert np.mean(real.astype(np.float32) >= below) > target


# --------------------------------------------------------------------------- videos


def test_video_metrics_use_the_stream_aggregation_rule() -> None:
    rng = np.random.default_rng(5)
    videos = [
        VideoScores(
            name=f"v{i}",
            label=i % 2,
            source="ff" if i % 3 else "celeb",
            frame_scores=rng.random(int(rng.integers(1, 30))) * (0.5 + 0.5 * (i % 2)),
        )
        for i in range(40)
    ]
    videos.append(VideoScores(name="no-face", label=1, source="ff", frame_scores=[]))
    labels, scores, sources, excluded = video_level_scores(videos, window=4)
    expected = [video_score(list(v.frame_scores), 4) for v in videos[:-1]]
    np.testing.assert_array_equal(scores, expected)
    np.testing.assert_array_equal(labels, [v.label for v in videos[:-1]])
    assert sources == [v.source for v in videos[:-1]] and excluded == 1
    result = video_metrics(videos, window=4)
    assert result.n_excluded == 1 and result.n_real + result.n_fake == 40
    assert result.auc == pytest.approx(roc_auc_score(labels, expected), rel=1e-9)
    assert result.to_dict()["n_excluded"] == 1


# --------------------------------------------------------------------------- plots


def _assert_png(path: Path) -> None:
    import matplotlib.pyplot as plt

    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert plt.get_fignums() == []


def test_plots_write_pngs_and_leave_no_figure_open(tmp_path: Path) -> None:
    from fakewatch.training.plots import mask_overlay_grid, plot_roc_pr, score_histogram

    labels, unet = _random_scores(0)
    _, baseline = _random_scores(1)
    path = plot_roc_pr(
        {"UNet": (labels, unet), "classifier": (labels, baseline), "real only": ([0, 0], [0, 1])},
        tmp_path / "roc.png",
        "frames",
        thresholds={"UNet": 0.6},
    )
    _assert_png(path)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    masks = rng.random((5, 32, 32), dtype=np.float32)
    truth = np.zeros((5, 32, 32), dtype=np.uint8)
    truth[:, 8:24, 8:24] = 1
    titles = [f"crop {i} score 0.5" for i in range(5)]
    _assert_png(mask_overlay_grid(images, masks, truth, titles, tmp_path / "grid.png", cols=3))
    _assert_png(mask_overlay_grid(images[:1], masks[:1], None, titles[:1], tmp_path / "one.png"))

    path = score_histogram(
        {"real": unet[labels == 0], "fake": unet[labels == 1], "none": []},
        {"FPR 1%": 0.7, "0.5": 0.5},
        tmp_path / "sub" / "hist.png",
    )
    _assert_png(path)


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(4)

    def scores(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.r_[np.zeros(n), np.ones(n)].astype(int)
        return labels, np.r_[rng.normal(0, 1, n), rng.normal(1, 1, n)]

    small = binary_metrics(*scores(40))
    large = binary_metrics(*scores(400))
    for metrics in (small, large):
        assert metrics.auc_ci is not None and metrics.auc is not None
        assert metrics.auc_ci[0] <= metrics.auc <= metrics.auc_ci[1]
    assert small.auc_ci is not None and large.auc_ci is not None
    assert large.auc_ci[1] - large.auc_ci[0] < small.auc_ci[1] - small.auc_ci[0]
    labels, values = scores(100)
    assert binary_metrics(labels, values).auc_ci == binary_metrics(labels, values).auc_ci


def test_bootstrap_by_group_is_wider_when_frames_of_a_video_agree() -> None:
    """Frames of one video are not independent evidence: resampling whole videos gives a
    wider interval than resampling frames when each video's frames share its score."""
    rng = np.random.default_rng(5)
    video_scores = np.r_[rng.normal(0, 1, 10), rng.normal(1, 1, 10)]
    labels = np.repeat(np.r_[np.zeros(10), np.ones(10)].astype(int), 30)
    frames = np.repeat(video_scores, 30) + rng.normal(0, 0.05, 600)
    groups = np.repeat(np.arange(20), 30).astype(str)
    by_frame = bootstrap_interval(labels, frames, lambda y, s: float(roc_auc_score(y, s)))
    by_video = bootstrap_interval(
        labels, frames, lambda y, s: float(roc_auc_score(y, s)), groups=groups
    )
    assert by_frame is not None and by_video is not None
    assert by_video[1] - by_video[0] > 2 * (by_frame[1] - by_frame[0])
    pair = slice(270, 330)  # the last real video and the first fake one
    one_video = bootstrap_interval(labels[pair], frames[pair], lambda y, s: 0.0, groups[pair])
    assert one_video is None  # a class with a single video has no interval


def test_rates_come_with_intervals() -> None:
    labels = np.r_[np.zeros(100), np.ones(100)].astype(int)
    values = np.r_[np.linspace(0, 0.6, 100), np.linspace(0.4, 1, 100)]
    metrics = binary_metrics(labels, values, threshold=0.5)
    assert metrics.fpr_ci is not None and metrics.tpr_ci is not None
    assert metrics.fpr_at_threshold is not None and metrics.tpr_at_threshold is not None
    assert metrics.fpr_ci[0] <= metrics.fpr_at_threshold <= metrics.fpr_ci[1]
    assert metrics.tpr_ci[0] <= metrics.tpr_at_threshold <= metrics.tpr_ci[1]
    assert binary_metrics(labels, values, intervals=False).auc_ci is None
    assert json.dumps(metrics.to_dict())
