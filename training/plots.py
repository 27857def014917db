"""Evaluation figures written straight to PNG files.

Figures are built with matplotlib's object API on an Agg canvas, never through
``pyplot``: nothing is registered with pyplot's figure manager, no window can open, the
global backend is left alone, and a figure is freed as soon as it is saved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

OVERLAY_MIN_PROB = 0.1
OVERLAY_ALPHA = 0.5


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path_png: str | Path) -> Path:
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path


def plot_roc_pr(
    curves: Mapping[str, tuple[Sequence[int] | np.ndarray, Sequence[float] | np.ndarray]],
    path_png: str | Path,
    title: str = "",
    thresholds: Mapping[str, float] | None = None,
) -> Path:
    """ROC (left) and precision-recall (right) curves of several named systems.

    ``curves`` maps a system's name to its ``(labels, scores)``, labels 0 real and
    1 fake. The legend gives each system's AUC and average precision; the chance lines
    are the ROC diagonal and the fraction of fakes on the PR side. ``thresholds``
    optionally maps a system's name to its calibrated threshold, marked on both
    curves at ``score >= threshold``. A system with only one class is listed in the
    legend as undefined and not drawn.
    """
    figure = _figure(11, 5)
    roc_ax, pr_ax = figure.subplots(1, 2)
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    prevalences: set[float] = set()
    for index, (name, (labels, scores)) in enumerate(curves.items()):
        y = np.asarray(labels).astype(np.int64)
        s = np.asarray(scores, dtype=np.float64)
        colour = f"C{index}"
        if len(np.unique(y)) < 2:
            roc_ax.plot([], [], color=colour, label=f"{name}: undefined (one class)")
            continue
        fpr, tpr, _ = roc_curve(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        auc = float(roc_auc_score(y, s))
        ap = float(average_precision_score(y, s))
        roc_ax.plot(fpr, tpr, color=colour, label=f"{name} (AUC {auc:.3f})")
        pr_ax.step(recall, precision, where="post", color=colour, label=f"{name} (AP {ap:.3f})")
        prevalences.add(round(float(y.mean()), 4))
        if thresholds and name in thresholds:
            value = thresholds[name]
            flagged = s >= value
            tp = int(np.sum(flagged & (y == 1)))
            marker_fpr = float(np.mean(flagged[y == 0]))
            marker_tpr = tp / int(np.sum(y == 1))
            marker_precision = tp / int(flagged.sum()) if flagged.any() else 1.0
            label = f"{name} at {value:.3g}"
            roc_ax.plot(marker_fpr, marker_tpr, "o", color=colour, markeredgecolor="k")
            pr_ax.plot(
                marker_tpr, marker_precision, "o", color=colour, markeredgecolor="k", label=label
            )
    for prevalence in sorted(prevalences):
        pr_ax.axhline(
            prevalence, color="grey", linestyle=":", linewidth=1, label=f"chance ({prevalence:g})"
        )
    roc_ax.set(
        xlabel="false positive rate (real flagged)",
        ylabel="true positive rate (fakes caught)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC",
    )
    pr_ax.set(
        xlabel="recall (fakes caught)",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="Precision-recall",
    )
    roc_ax.legend(loc="lower right", fontsize="small")
    pr_ax.legend(loc="lower left", fontsize="small")
    if title:
        figure.suptitle(title)
    return _save(figure, path_png)


def _overlay(image: np.ndarray, prob: np.ndarray) -> np.ndarray:
    heat_bgr = cv2.applyColorMap((np.clip(prob, 0.0, 1.0) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat_bgr, cv2.COLOR_BGR2RGB)
    blended = cv2.addWeighted(image, 1 - OVERLAY_ALPHA, heat, OVERLAY_ALPHA, 0.0)
    return np.where((prob > OVERLAY_MIN_PROB)[..., None], blended, image)


def mask_overlay_grid(
    images: np.ndarray,
    pred_masks: np.ndarray,
    true_masks: np.ndarray | None,
    titles: Sequence[str],
    path_png: str | Path,
    cols: int = 4,
) -> Path:
    """A grid of face crops with their predicted masks laid over them.

    ``images`` are uint8 RGB crops ``(N, S, S, 3)`` and ``pred_masks`` probabilities
    ``(N, S, S)``: pixels above 0.1 are blended 50% with a JET heatmap of the
    probability. ``true_masks`` (same shape, non-zero is manipulated), when given, is
    outlined in white. ``titles`` (one per crop, e.g. the source and the score) head the
    cells.
    """
    images = np.asarray(images)
    pred_masks = np.asarray(pred_masks, dtype=np.float32)
    n = len(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 RGB crops (N, S, S, 3), got {images.shape} {images.dtype}"
        )
    if pred_masks.shape != images.shape[:3]:
        raise ValueError(f"masks {pred_masks.shape} do not match crops {images.shape}")
    if true_masks is not None and np.shape(true_masks) != pred_masks.shape:
        raise ValueError(f"true masks {np.shape(true_masks)} do not match {pred_masks.shape}")
    if len(titles) != n or n == 0 or cols < 1:
        raise ValueError(f"need one title per crop and at least one crop, got {len(titles)}/{n}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    figure = _figure(2.6 * cols, 2.8 * rows)
    axes = np.atleast_1d(figure.subplots(rows, cols, squeeze=False)).reshape(-1)
    for index, ax in enumerate(axes):
        ax.set_axis_off()
        if index >= n:
            continue
        ax.imshow(_overlay(images[index], pred_masks[index]))
        if true_masks is not None and np.any(true_masks[index]):
            truth = (np.asarray(true_masks[index]) != 0).astype(np.float32)
            ax.contour(truth, levels=[0.5], colors="white", linewidths=1.2)
        ax.set_title(titles[index], fontsize="small")
    return _save(figure, path_png)


def score_histogram(
    scores_by_group: Mapping[str, Sequence[float] | np.ndarray],
    thresholds: Mapping[str, float],
    path_png: str | Path,
    title: str = "",
    bins: int = 50,
) -> Path:
    """Overlaid histograms of scores in 0..1 per group, with vertical threshold lines.

    Each group's histogram is normalised to unit area, so a group of a few hundred real
    frames stays visible beside thousands of fakes; the legend gives each group's size.
    """
    figure = _figure(8, 4.5)
    ax = figure.subplots()
    edges = np.linspace(0.0, 1.0, bins + 1).tolist()
    for index, (name, scores) in enumerate(scores_by_group.items()):
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
        label = f"{name} (n={len(values)})"
        if len(values) == 0:
            ax.plot([], [], color=f"C{index}", label=label)
            continue
        ax.hist(
            np.clip(values, 0.0, 1.0),
            bins=edges,
            density=True,
            histtype="stepfilled",
            alpha=0.35,
            color=f"C{index}",
            edgecolor=f"C{index}",
            label=label,
        )
    for index, (name, value) in enumerate(thresholds.items()):
        ax.axvline(
            value,
            color="k",
            linestyle=("--", ":", "-.")[index % 3],
            linewidth=1,
            label=f"{name} = {value:.3g}",
        )
    ax.set(xlim=(0, 1), xlabel="score", ylabel="density", title=title or "Scores")
    ax.legend(fontsize="small")
    return _save(figure, path_png)
