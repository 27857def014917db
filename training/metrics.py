"""Evaluation metrics: pixel masks, frame scores, video scores and threshold calibration.

Pure numpy and scikit-learn. Every result is a dataclass with a ``to_dict()`` that
gives JSON-able values: floats rounded to 6 decimals and ``None`` where a metric is
undefined (an AUC with only one class present, say), never NaN.

A score is called "fake" when it is at least the threshold (``score >= threshold``),
the same comparison everywhere in this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from fakewatch.engines.aggregate import DEFAULT_WINDOW, video_score
from fakewatch.engines.bundle import Threshold

DEFAULT_FPR_TARGETS = (0.01, 0.05, 0.1)
LOG_LOSS_EPS = 1e-6
DECIMALS = 6


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), DECIMALS)


# --------------------------------------------------------------------------- pixels


@dataclass(frozen=True)
class PixelMetrics:
    """IoU and Dice of thresholded masks against the true masks.

    ``iou`` and ``dice`` are *micro* averages: intersections and sizes are summed over
    every pixel of every sample first, so large manipulated regions weigh more (this
    equals ``jaccard_score`` / ``f1_score`` on the flattened masks). ``iou_macro`` and
    ``dice_macro`` are the mean of the per-sample values over the ``n_scored`` samples
    that have a true or a predicted pixel; samples where both are empty (a real face
    correctly left blank) are perfect, get 1.0 in ``per_sample_*`` and are counted in
    ``n_both_empty``, but are left out of the macro mean so that many easy real faces do
    not swamp it. With no pixel in any sample, micro values are 1.0 and macro ``None``.
    """

    iou: float
    dice: float
    iou_macro: float | None
    dice_macro: float | None
    n_samples: int
    n_scored: int
    n_both_empty: int
    threshold: float
    per_sample_iou: np.ndarray = field(repr=False)
    per_sample_dice: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values, per-sample arrays as lists."""
        return {
            "iou": _round(self.iou),
            "dice": _round(self.dice),
            "iou_macro": _round(self.iou_macro),
            "dice_macro": _round(self.dice_macro),
            "n_samples": self.n_samples,
            "n_scored": self.n_scored,
            "n_both_empty": self.n_both_empty,
            "threshold": _round(self.threshold),
            "per_sample_iou": [_round(v) for v in self.per_sample_iou.tolist()],
            "per_sample_dice": [_round(v) for v in self.per_sample_dice.tolist()],
        }


def pixel_iou_dice(
    pred_masks: np.ndarray, true_masks: np.ndarray, threshold: float = 0.5
) -> PixelMetrics:
    """IoU and Dice of ``pred_masks >= threshold`` against ``true_masks != 0``.

    ``pred_masks`` are probabilities ``(N, S, S)``; ``true_masks`` the same shape, bool
    or integer (any non-zero pixel is manipulated). See :class:`PixelMetrics` for the
    micro and macro averages and for empty masks.
    """
    pred_masks = np.asarray(pred_masks)
    true_masks = np.asarray(true_masks)
    if pred_masks.ndim != 3 or pred_masks.shape != true_masks.shape:
        raise ValueError(
            f"expected predicted and true masks of one shape (N, S, S), "
            f"got {pred_masks.shape} and {true_masks.shape}"
        )
    pred = pred_masks >= threshold
    true = true_masks != 0
    inter = np.count_nonzero(pred & true, axis=(1, 2)).astype(np.int64)
    union = np.count_nonzero(pred | true, axis=(1, 2)).astype(np.int64)
    sizes = np.count_nonzero(pred, axis=(1, 2)).astype(np.int64) + np.count_nonzero(
        true, axis=(1, 2)
    ).astype(np.int64)
    scored = union > 0
    iou = np.ones(len(pred), dtype=np.float64)
    dice = np.ones(len(pred), dtype=np.float64)
    iou[scored] = inter[scored] / union[scored]
    dice[scored] = 2 * inter[scored] / sizes[scored]
    total_union = int(union.sum())
    n_scored = int(scored.sum())
    return PixelMetrics(
        iou=float(inter.sum() / total_union) if total_union else 1.0,
        dice=float(2 * inter.sum() / sizes.sum()) if total_union else 1.0,
        iou_macro=float(iou[scored].mean()) if n_scored else None,
        dice_macro=float(dice[scored].mean()) if n_scored else None,
        n_samples=len(pred),
        n_scored=n_scored,
        n_both_empty=len(pred) - n_scored,
        threshold=float(threshold),
        per_sample_iou=iou,
        per_sample_dice=dice,
    )


# --------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class BinaryMetrics:
    """Real (0) versus fake (1) metrics of a set of scores.

    ``auc``, ``ap`` and ``tpr_at_fpr`` need both classes and are ``None`` otherwise,
    with ``reason`` saying why. ``tpr_at_fpr[f]`` is the fraction of fakes caught at
    the threshold :func:`threshold_at_fpr` picks on these real scores for target FPR
    ``f``. ``fpr_at_threshold`` (needs reals) and ``tpr_at_threshold`` (needs fakes)
    are taken at ``threshold``, as is ``accuracy_at_threshold``. ``n_excluded`` counts
    items left out before scoring (videos without a face frame). ``auc_ci``,
    ``fpr_ci`` and ``tpr_ci`` are 95% bootstrap intervals ``[low, high]`` (see
    :func:`bootstrap_interval`), resampling whole groups (videos) when groups are given.
    """

    n_real: int
    n_fake: int
    auc: float | None
    ap: float | None
    log_loss: float | None
    threshold: float
    accuracy_at_threshold: float | None
    fpr_at_threshold: float | None
    tpr_at_threshold: float | None
    tpr_at_fpr: dict[float, float | None]
    mean_score: float | None
    n_excluded: int = 0
    reason: str | None = None
    auc_ci: tuple[float, float] | None = None
    fpr_ci: tuple[float, float] | None = None
    tpr_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values; ``tpr_at_fpr`` keys become strings such as ``"0.01"``."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = _round(value)
            elif isinstance(value, tuple):
                out[key] = [_round(v) for v in value]
        out["tpr_at_fpr"] = {f"{k:g}": _round(v) for k, v in self.tpr_at_fpr.items()}
        return out


def _check_scores(labels: np.ndarray, scores: np.ndarray) -> None:
    if labels.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"expected 1-d labels and scores of one length, got {labels.shape} and {scores.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")


BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95


def bootstrap_interval(
    labels: np.ndarray,
    scores: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    groups: Sequence[str] | np.ndarray | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """A 95% percentile-bootstrap interval of ``statistic(labels, scores)``.

    Each resample draws, with replacement and separately for reals and fakes (so that
    both classes are always present in their own numbers), whole groups when
    ``groups`` is given (the frames of one video move together, since they are not
    independent evidence) or single items otherwise. None with fewer than two groups
    of a class present.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    keys = np.arange(len(y)).astype(str) if groups is None else np.asarray(groups, dtype=str)
    rng = np.random.default_rng(seed)
    members: list[list[np.ndarray]] = []
    for label in (0, 1):
        inside = y == label
        if not inside.any():
            continue
        names, inverse = np.unique(keys[inside], return_inverse=True)
        if len(names) < 2:
            return None
        where = np.flatnonzero(inside)
        members.append([where[inverse == k] for k in range(len(names))])
    values = []
    for _ in range(resamples):
        picked: list[np.ndarray] = []
        for of_class in members:
            draws = rng.integers(len(of_class), size=len(of_class))
            picked.extend(of_class[i] for i in draws)
        index = np.concatenate(picked)
        values.append(statistic(y[index], s[index]))
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half), as ``roc_auc_score``
    gives it, several times faster for the bootstrap."""
    from scipy.stats import rankdata

    ranks = rankdata(s)
    positive = y == 1
    n1, n0 = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _rate_at(threshold: float, label: int) -> Callable[[np.ndarray, np.ndarray], float]:
    def rate(y: np.ndarray, s: np.ndarray) -> float:
        return float(np.mean(s[y == label] >= threshold))

    return rate


def binary_metrics(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
    fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
    groups: Sequence[str] | np.ndarray | None = None,
    intervals: bool = True,
) -> BinaryMetrics:
    """AUC, average precision, log-loss and rates at thresholds of fake-vs-real scores.

    ``labels`` are 0 (real) or 1 (fake). The log-loss clips scores to
    ``[1e-6, 1 - 1e-6]``; it is defined with one class present, AUC and AP are not.
    ``groups`` (one name per score: the video it came from) make the bootstrap
    intervals resample whole groups; ``intervals=False`` skips them.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    _check_scores(y, s)
    y = y.astype(np.int64)
    real, fake = s[y == 0], s[y == 1]
    n_real, n_fake = len(real), len(fake)
    both = n_real > 0 and n_fake > 0
    reason = None
    if not both:
        reason = "no fake samples" if n_real else "no real samples" if n_fake else "no samples"
    flagged = s >= threshold
    tpr_at_fpr: dict[float, float | None] = {}
    for target in fpr_targets:
        tpr_at_fpr[float(target)] = (
            float(np.mean(fake >= _threshold_value(real, target))) if both else None
        )
    return BinaryMetrics(
        n_real=n_real,
        n_fake=n_fake,
        auc=float(roc_auc_score(y, s)) if both else None,
        ap=float(average_precision_score(y, s)) if both else None,
        log_loss=(
            float(log_loss(y, np.clip(s, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS), labels=[0, 1]))
            if len(s)
            else None
        ),
        threshold=float(threshold),
        accuracy_at_threshold=float(np.mean(flagged == (y == 1))) if len(s) else None,
        fpr_at_threshold=float(np.mean(real >= threshold)) if n_real else None,
        tpr_at_threshold=float(np.mean(fake >= threshold)) if n_fake else None,
        tpr_at_fpr=tpr_at_fpr,
        mean_score=float(s.mean()) if len(s) else None,
        reason=reason,
        auc_ci=bootstrap_interval(y, s, _auc, groups) if both and intervals else None,
        fpr_ci=(
            bootstrap_interval(y[y == 0], s[y == 0], _rate_at(threshold, 0), _part(groups, y, 0))
            if n_real and intervals
            else None
        ),
        tpr_ci=(
            bootstrap_interval(y[y == 1], s[y == 1], _rate_at(threshold, 1), _part(groups, y, 1))
            if n_fake and intervals
            else None
        ),
    )


def _part(
    groups: Sequence[str] | np.ndarray | None, labels: np.ndarray, label: int
) -> np.ndarray | None:
    return None if groups is None else np.asarray(groups, dtype=str)[labels == label]


def by_source(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    sources: Sequence[str] | np.ndarray,
    threshold: float = 0.5,
    fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
) -> dict[str, BinaryMetrics]:
    """:func:`binary_metrics` of each source (dataset, manipulation method), by name.

    A source with only real samples has no AUC; read its ``fpr_at_threshold`` and
    ``mean_score`` instead.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    names = np.asarray(sources, dtype=str)
    if names.shape != y.shape:
        raise ValueError(f"expected one source per label, got {names.shape} and {y.shape}")
    return {
        str(name): binary_metrics(y[names == name], s[names == name], threshold, fpr_targets)
        for name in sorted(set(names.tolist()))
    }


# --------------------------------------------------------------------------- videos


@dataclass(frozen=True)
class VideoScores:
    """The frame scores of one video, in order, with its label (0 real, 1 fake).

    ``frame_scores`` holds one score per analysed frame that had a face (the highest
    face score of that frame); it is empty when no frame had a face.
    """

    name: str
    label: int
    source: str
    frame_scores: Sequence[float] | np.ndarray


def video_level_scores(
    videos: Sequence[VideoScores], window: int = DEFAULT_WINDOW
) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Labels, video scores and sources of the videos that had a face frame, and how
    many had none.

    A video's score is :func:`fakewatch.engines.aggregate.video_score`, the rule the
    live stream alerts on.
    """
    labels: list[int] = []
    scores: list[float] = []
    sources: list[str] = []
    excluded = 0
    for video in videos:
        frames = np.asarray(video.frame_scores, dtype=np.float64).reshape(-1)
        value = video_score(frames.tolist(), window)
        if value is None:
            excluded += 1
            continue
        labels.append(int(video.label))
        scores.append(value)
        sources.append(video.source)
    return np.asarray(labels, dtype=np.int64), np.asarray(scores), sources, excluded


def video_metrics(
    videos: Sequence[VideoScores],
    window: int = DEFAULT_WINDOW,
    threshold: float = 0.5,
    fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
) -> BinaryMetrics:
    """:func:`binary_metrics` of video scores; ``n_excluded`` counts videos with no face."""
    labels, scores, _, excluded = video_level_scores(videos, window)
    return replace(binary_metrics(labels, scores, threshold, fpr_targets), n_excluded=excluded)


# --------------------------------------------------------------------------- calibration


def _threshold_value(real_scores: np.ndarray, target_fpr: float) -> float:
    """The float32 just above the highest real score that must not be flagged.

    May be ``-inf`` (every real allowed) or above 1 (the highest real score is 1.0).
    """
    n = len(real_scores)
    # k: how many real scores may lie at or above the threshold. Compared the way the
    # contract is stated (count / n <= target) so 0.29 * 100 does not floor to 28.
    k = min(n, math.floor(target_fpr * n))
    while k < n and (k + 1) / n <= target_fpr:
        k += 1
    while k > 0 and k / n > target_fpr:
        k -= 1
    if k == n:
        return -math.inf
    ranked = np.sort(real_scores)[::-1]
    # The threshold must rise strictly above the (k+1)-th highest score, and so above
    # every score tied with it: ties can leave the achieved FPR below the target.
    # The next float32 (not float64) because numpy compares a float32 score array with a
    # Python float in float32, where the next float64 would round back to the score.
    # Stepping from the score's own float32 rounding keeps the value above it in both.
    return float(np.nextafter(np.float32(ranked[k]), np.float32(np.inf)))


def threshold_at_fpr(
    real_scores: Sequence[float] | np.ndarray, target_fpr: float = 0.01, chosen_on: str = ""
) -> Threshold:
    """The smallest threshold at which at most ``target_fpr`` of real scores are flagged.

    Flagged means ``score >= value``. The value is the next float32 above one of the
    real scores, the smallest such threshold to float32 precision; float32 scores (as
    the engines emit them) flag the same frames whether compared in float32 or float64.
    With n real scores the FPR moves in steps of 1/n, and tied scores move together, so
    the achieved ``false_positive_rate`` (returned) can be below the target; a target
    below 1/n gives a threshold above every real score. ``chosen_on``
    names the real frames; n, the 1/n resolution and the target are appended to it so
    that the bundle manifest records them. Raises ``ValueError`` with no real scores,
    scores outside 0..1, or when no threshold up to 1.0 meets the target (too many real
    scores of exactly 1.0).
    """
    real = np.asarray(real_scores).reshape(-1)
    n = len(real)
    if n == 0:
        raise ValueError("no real scores to calibrate a threshold on")
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    if not np.isfinite(real).all() or real.min() < 0.0 or real.max() > 1.0:
        raise ValueError("real scores must be finite and in [0, 1]")
    value = max(0.0, _threshold_value(real, target_fpr))
    if value > 1.0:
        raise ValueError(
            f"no threshold in [0, 1] flags at most {target_fpr:g} of {n} real scores: "
            f"{int(np.sum(real >= 1.0))} of them are exactly 1.0"
        )
    achieved = float(np.mean(real >= value))
    note = f"{n} real frames (FPR resolution 1/{n} = {1 / n:.3g}), target FPR {target_fpr:g}"
    return Threshold(
        value=value,
        false_positive_rate=achieved,
        chosen_on=f"{chosen_on}: {note}" if chosen_on else note,
    )
