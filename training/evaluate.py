"""``fakewatch evaluate BUNDLE DATA...``: how well a bundle separates real from fake.

Every video is analysed the way ``fakewatch scan`` and the live stream analyse it (the
same detector, crop, engine, score and sliding-window video score), at about 5 frames
per second. The report gives:

- frame level: AUC, AP, log-loss and TPR at fixed FPRs over frames with a face, in all
  and per source (an all-real source reports its false-positive rate and mean score);
- video level: the same over videos, each scored by its highest window mean;
- pixel level: IoU and Dice of the masks against difference masks of real/fake pairs
  and against official masks (image + ``*_mask.png`` pairs);
- calibration: the window-score thresholds at 1% and 5% FPR on the real media,
  written into the bundle as ``suspect`` and ``clear`` with ``--calibrate``;
- plots: ROC/PR curves (every compared bundle side by side), score histograms and a
  grid of mask overlays.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fakewatch.engines.aggregate import DEFAULT_WINDOW, window_scores
from fakewatch.engines.analyse import FaceAnalyser
from fakewatch.engines.baseline import BaselineSettings
from fakewatch.engines.bundle import EngineBundle, Threshold
from fakewatch.engines.crop import crop_face
from fakewatch.engines.faces import FaceDetector, default_face_detector
from fakewatch.engines.media import is_image, iter_frames, read_image
from fakewatch.engines.runtimes import Engine, open_engine
from fakewatch.engines.scan import analysis_stride
from fakewatch.training.config import TrainConfig
from fakewatch.training.datasets import (
    DatasetIndex,
    PairedVideo,
    read_dfdc,
    read_ffpp,
    read_pairs_folder,
    read_real_folder,
)
from fakewatch.training.diffmask import crop_mask, iter_pair_samples
from fakewatch.training.metrics import (
    BinaryMetrics,
    PixelMetrics,
    VideoScores,
    binary_metrics,
    by_source,
    pixel_iou_dice,
    threshold_at_fpr,
    video_metrics,
)
from fakewatch.training.plots import mask_overlay_grid, plot_roc_pr, score_histogram
from fakewatch.training.stream_study import study

SUSPECT_FPR = 0.01
CLEAR_FPR = 0.05


@dataclass(frozen=True)
class MaskExample:
    """An image with an official manipulation mask beside it (``X.png`` + ``X_mask.png``)."""

    image: Path
    mask: Path
    source: str


@dataclass
class EvaluationData:
    """What to evaluate on: real media, real/fake pairs and masked example images."""

    index: DatasetIndex
    examples: list[MaskExample] = field(default_factory=list)


def detect_layout(path: Path) -> str:
    """``ffpp``, ``dfdc``, ``pairs``, ``masks`` or ``real`` from what the folder holds."""
    if (path / "original_sequences").is_dir() or (path / "manipulated_sequences").is_dir():
        return "ffpp"
    if any(path.glob("dfdc_train_part_*")) or (path / "metadata.json").is_file():
        return "dfdc"
    if (path / "real").is_dir() and (path / "fake").is_dir():
        return "pairs"
    if any(path.glob("*_mask.png")):
        return "masks"
    return "real"


def split_data(config: TrainConfig, part: str) -> EvaluationData:
    """The media of one part of a recipe's split: ``validation`` (what picks the epoch
    and calibrates) or ``test`` (reported only), the latter with the recipe's
    ``test_data`` folders, which are test media whole."""
    from fakewatch.training.data import read_index, split_of

    if part not in ("validation", "test"):
        raise ValueError(f"split part must be validation or test, got {part!r}")
    index = read_index(config.data)
    index = DatasetIndex(
        [r for r in index.reals if split_of(r.source, r.identity, config.split, r.split) == part],
        [p for p in index.pairs if split_of(p.source, p.identity, config.split, p.split) == part],
    )
    if part == "test" and config.test_data:
        index = index.merge(read_index(config.test_data))
    return EvaluationData(index)


def read_evaluation_data(paths: list[Path], compression: str = "c23") -> EvaluationData:
    """Read every folder with the reader its layout calls for (see :func:`detect_layout`)."""
    data = EvaluationData(DatasetIndex([], []))
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ValueError(f"evaluation data {path} does not exist")
        layout = detect_layout(path) if path.is_dir() else "real"
        if layout == "ffpp":
            data.index = data.index.merge(read_ffpp(path, compression))
        elif layout == "dfdc":
            data.index = data.index.merge(read_dfdc(path))
        elif layout == "pairs":
            data.index = data.index.merge(read_pairs_folder(path))
        elif layout == "masks":
            for mask in sorted(path.glob("*_mask.png")):
                image = mask.with_name(mask.name.removesuffix("_mask.png") + ".png")
                if image.is_file():
                    data.examples.append(MaskExample(image, mask, path.name))
        else:
            data.index = data.index.merge(read_real_folder(path))
    return data


@dataclass
class BundleResult:
    """Everything measured for one bundle."""

    label: str
    videos: list[VideoScores] = field(default_factory=list)
    frame_labels: list[int] = field(default_factory=list)
    frame_scores: list[float] = field(default_factory=list)
    frame_sources: list[str] = field(default_factory=list)
    frame_groups: list[str] = field(default_factory=list)
    real_windows: list[float] = field(default_factory=list)
    real_window_groups: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    pixel: PixelMetrics | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    grid: tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None = None

    def add_frames(self, label: int, source: str, scores: list[float], group: str) -> None:
        self.frame_labels.extend([label] * len(scores))
        self.frame_scores.extend(scores)
        self.frame_sources.extend([source] * len(scores))
        self.frame_groups.extend([group] * len(scores))

    def add_real_windows(self, windows: list[float], group: str) -> None:
        self.real_windows.extend(windows)
        self.real_window_groups.extend([group] * len(windows))


class Evaluator:
    """Runs one engine over evaluation data and collects the measurements."""

    def __init__(
        self,
        engine: Engine,
        detector: FaceDetector,
        window: int = DEFAULT_WINDOW,
        max_frames: int = 150,
        pixel_every: int = 10,
        max_pixel_samples: int = 40,
    ) -> None:
        self.engine = engine
        self.analyser = FaceAnalyser(engine, detector)
        self.detector = detector
        self.window = window
        self.max_frames = max_frames
        self.pixel_every = pixel_every
        self.max_pixel_samples = max_pixel_samples

    def run(self, data: EvaluationData, label: str, progress: bool = True) -> BundleResult:
        from tqdm import tqdm

        result = BundleResult(label)
        items = list(_media_items(data.index))
        for path, item_label, source in tqdm(items, desc=label, disable=not progress, unit="file"):
            self._media(result, path, item_label, source)
        result.pairs = [(str(pair.fake), str(pair.real)) for pair in data.index.pairs]
        segments = self.engine.bundle.spec.head == "segmentation"
        if data.index.pairs and segments:  # a classifier's flat mask has no pixel accuracy
            self._pixels(result, data.index.pairs)
        for example in data.examples:
            result.examples.append(self._example(example))
        return result

    def _media(self, result: BundleResult, path: Path, label: int, source: str) -> None:
        every = analysis_stride(path)
        scores = [
            frame.score
            for _, frame in self.analyser.analyse(iter_frames(path, every, self.max_frames))
            if frame.score is not None
        ]
        result.add_frames(label, source, scores, str(path))
        if is_image(path):
            if label == 0:
                result.add_real_windows(scores, str(path))
            return
        result.videos.append(VideoScores(str(path), label, source, scores))
        if label == 0:
            result.add_real_windows(window_scores(scores, self.window).tolist(), str(path))

    def _pixels(self, result: BundleResult, pairs: list[PairedVideo]) -> None:
        spec = self.engine.bundle.spec
        per_pair = max(1, self.max_pixel_samples // len(pairs))
        crops, truths = [], []
        for pair in pairs:
            samples = iter_pair_samples(pair, spec, self.detector, every=self.pixel_every)
            for n, sample in enumerate(samples):
                if n >= per_pair:
                    break
                crops.append(sample.fake_crop)
                truths.append(sample.mask > 0)
        if not crops:
            return
        batch = np.stack(crops)
        predictions = self.engine.infer_batches(batch, 8)
        truth = np.stack(truths)
        result.pixel = pixel_iou_dice(predictions, truth)
        scores, _ = self.engine.bundle.manifest.scoring.score(predictions, spec.crop_margin)
        titles = [f"fake {s:.2f}" for s in scores]
        keep = np.linspace(0, len(batch) - 1, min(16, len(batch))).astype(int)
        result.grid = (batch[keep], predictions[keep], truth[keep], [titles[i] for i in keep])

    def _example(self, example: MaskExample) -> dict[str, Any]:
        spec = self.engine.bundle.spec
        image = read_image(example.image)
        mask = cv2.imread(str(example.mask), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise ValueError(f"{example.mask} is not a readable mask image")
        if mask.shape != image.shape[:2]:
            mask = cv2.resize(mask, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        faces = self.detector.detect(image)
        record: dict[str, Any] = {"image": example.image.name, "faces": len(faces)}
        if not faces:
            return record
        box = faces[0].box
        crop = crop_face(image, box, spec.input_size, spec.crop_margin).image
        truth = crop_mask(
            np.where(mask > 24, 255, 0).astype(np.uint8), box, spec.input_size, spec.crop_margin
        )
        predicted = self.engine.infer(crop[None])
        pixel = pixel_iou_dice(predicted, (truth > 0)[None])
        score, area = self.engine.bundle.manifest.scoring.score(predicted, spec.crop_margin)
        measured = truth.any() and spec.head == "segmentation"
        record |= {
            "manipulated": bool(truth.any()),
            "score": round(float(score[0]), 4),
            "area": round(float(area[0]), 4),
            "iou": round(pixel.iou, 4) if measured else None,
            "dice": round(pixel.dice, 4) if measured else None,
        }
        return record


def _media_items(index: DatasetIndex) -> Iterator[tuple[Path, int, str]]:
    """Every real medium once (label 0) and every fake video (label 1), with its source."""
    seen: set[Path] = set()
    for real in index.reals:
        if real.path not in seen:
            seen.add(real.path)
            yield real.path, 0, real.source
    for pair in index.pairs:
        if pair.real not in seen:
            seen.add(pair.real)
            yield pair.real, 0, f"{pair.source}/real"
        yield pair.fake, 1, f"{pair.source}/{pair.method}"


def calibrate(result: BundleResult, source_description: str) -> dict[str, Threshold]:
    """``suspect`` and ``clear`` window-score thresholds at 1% and 5% FPR on real media."""
    if not result.real_windows:
        raise ValueError("calibration needs real media with faces in the evaluation data")
    reals = np.asarray(result.real_windows)
    return {
        "suspect": threshold_at_fpr(reals, SUSPECT_FPR, f"window scores of {source_description}"),
        "clear": threshold_at_fpr(reals, CLEAR_FPR, f"window scores of {source_description}"),
    }


def summarise(result: BundleResult, threshold: float, window: int) -> dict[str, Any]:
    """The JSON-able measurements of one bundle."""
    labels = np.asarray(result.frame_labels, dtype=int)
    scores = np.asarray(result.frame_scores, dtype=float)
    groups = np.asarray(result.frame_groups, dtype=str)
    frame: BinaryMetrics = binary_metrics(labels, scores, threshold, groups=groups)
    video = video_metrics(result.videos, window, threshold) if result.videos else None
    sources = by_source(labels, scores, result.frame_sources, threshold) if len(labels) else {}
    video_by_source: dict[str, Any] = {}
    for source in sorted({v.source for v in result.videos}):
        group = [v for v in result.videos if v.source == source]
        video_by_source[source] = video_metrics(group, window, threshold).to_dict()
    video_scores = {v.name: _video_score(v, window) for v in result.videos}
    real_videos = [v for v in result.videos if v.label == 0]
    families = sorted({v.source for v in result.videos if v.label == 1})
    video_by_family = {
        family: video_metrics(
            real_videos + [v for v in result.videos if v.label == 1 and v.source == family],
            window,
            threshold,
        ).to_dict()
        for family in families
    }
    real_frames = labels == 0
    frame_by_family = {}
    for family in sorted({s for s, y in zip(result.frame_sources, labels, strict=True) if y}):
        keep = real_frames | (np.asarray(result.frame_sources) == family)
        frame_by_family[family] = binary_metrics(
            labels[keep], scores[keep], threshold, groups=groups[keep]
        ).to_dict()
    ious = [e["iou"] for e in result.examples if e.get("iou") is not None]
    return {
        "engine": result.label,
        "threshold": threshold,
        "frame": frame.to_dict(),
        "frame_by_source": {k: v.to_dict() for k, v in sources.items()},
        "video": None if video is None else video.to_dict(),
        "video_by_source": video_by_source,
        "frame_by_family": frame_by_family,
        "video_by_family": video_by_family,
        "videos": [
            {
                "name": Path(v.name).name,
                "source": v.source,
                "label": v.label,
                "frames": len(v.frame_scores),
                "score": _video_score(v, window),
                "frame_scores": [round(float(x), 4) for x in v.frame_scores],
            }
            for v in result.videos
        ],
        "pairs": _pair_positions(result),
        "real_windows": _window_summary(result, threshold),
        "pairs_ranked": _pairs_ranked(result.pairs, video_scores),
        "pixel_pairs": None if result.pixel is None else _pixel_summary(result.pixel),
        "examples": result.examples,
        "examples_mean_iou": round(float(np.mean(ious)), 4) if ious else None,
    }


def _window_summary(result: BundleResult, threshold: float) -> dict[str, Any] | None:
    """How many real windows (and photos) reach ``threshold``, with a 95% interval that
    resamples whole videos."""
    if not result.real_windows:
        return None
    windows = np.asarray(result.real_windows, dtype=float)
    zeros = np.zeros(len(windows), dtype=int)
    metrics = binary_metrics(zeros, windows, threshold, groups=result.real_window_groups)
    return {
        "n": len(windows),
        "media": len(set(result.real_window_groups)),
        "flagged": int(np.sum(windows >= threshold)),
        "rate": metrics.fpr_at_threshold,
        "rate_ci": None if metrics.fpr_ci is None else [round(v, 4) for v in metrics.fpr_ci],
    }


def _pair_positions(result: BundleResult) -> list[list[int]]:
    """Each real/fake pair as [position of the fake, position of its original] in the
    report's ``videos`` list."""
    position = {v.name: i for i, v in enumerate(result.videos)}
    return [
        [position[fake], position[real]]
        for fake, real in result.pairs
        if fake in position and real in position
    ]


def _pairs_ranked(
    pairs: list[tuple[str, str]], video_scores: dict[str, float | None]
) -> dict[str, Any] | None:
    """In how many real/fake pairs the fake video scores above its own original."""
    compared = [
        (video_scores[fake], video_scores[real])
        for fake, real in pairs
        if video_scores.get(fake) is not None and video_scores.get(real) is not None
    ]
    if not compared:
        return None
    above = sum(
        1 for fake, real in compared if fake is not None and real is not None and fake > real
    )
    return {"pairs": len(compared), "fake_above_real": above}


def _video_score(video: VideoScores, window: int) -> float | None:
    from fakewatch.engines.aggregate import video_score

    score = video_score(list(video.frame_scores), window)
    return None if score is None else round(score, 4)


def _pixel_summary(pixel: PixelMetrics) -> dict[str, Any]:
    summary = pixel.to_dict()
    summary.pop("per_sample_iou", None)
    summary.pop("per_sample_dice", None)
    return summary


def evaluate(
    bundles: list[Path],
    data_paths: list[Path],
    out_dir: Path,
    backend: str = "auto",
    write_thresholds: bool = False,
    write_baseline: bool | None = None,
    window: int = DEFAULT_WINDOW,
    max_frames: int = 150,
    progress: bool = True,
    data: EvaluationData | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Evaluate one or more bundles on the same data; the first is the one calibrated.

    The media are those in ``data_paths`` plus ``data`` (e.g. :func:`split_data`);
    ``description`` names them in the report and in calibrated thresholds. With
    ``write_thresholds``, ``write_baseline`` True ships the per-stream baseline
    (:mod:`fakewatch.engines.baseline`) with them, False removes it, None leaves it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    found = read_evaluation_data(data_paths)
    if data is not None:
        found.index = found.index.merge(data.index)
        found.examples += data.examples
    data = found
    if not data.index.reals and not data.index.pairs and not data.examples:
        raise ValueError(f"no media found in {[str(p) for p in data_paths]}")
    detector = default_face_detector()
    description = description or ", ".join(str(p) for p in data_paths)
    report: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": [str(p) for p in data_paths],
        "description": description,
        "window": window,
        "bundles": [],
    }
    results: list[BundleResult] = []
    for position, folder in enumerate(bundles):
        bundle = EngineBundle.load(folder)
        engine = open_engine(bundle, backend)
        label = f"{bundle.manifest.name} ({bundle.spec.head})"
        result = Evaluator(engine, detector, window, max_frames).run(data, label, progress)
        results.append(result)
        thresholds = calibrate(result, description) if result.real_windows else {}
        # rates are reported at the threshold the bundle will use: the one calibrated
        # here when writing it, else the bundle's own (0.5 if it has none)
        used = bundle.manifest.thresholds
        if write_thresholds and position == 0 and thresholds:
            used = thresholds
        threshold = used["suspect"].value if "suspect" in used else 0.5
        summary = summarise(result, threshold, window)
        if "clear" in used and result.videos:
            summary["stream_study"] = study(
                summary["videos"], summary["pairs"], threshold, used["clear"].value
            )
        summary |= {
            "bundle": str(bundle.folder),
            "model_sha256": bundle.model_sha256,
            "calibrated_thresholds": {k: v.model_dump() for k, v in thresholds.items()},
        }
        if position == 0 and write_thresholds and thresholds:
            bundle.manifest.thresholds = thresholds
            bundle.manifest.provenance.metrics |= _headline(summary)
            if write_baseline is not None:
                bundle.manifest.baseline = BaselineSettings() if write_baseline else None
            bundle.save_manifest()
            summary["thresholds_written"] = True
        report["bundles"].append(summary)
        _plots(result, thresholds, out_dir, position)
    _comparison_plots(results, out_dir, report, window)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _headline(summary: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, path in (("frame_auc", ("frame", "auc")), ("video_auc", ("video", "auc"))):
        value = summary.get(path[0]) or {}
        if value.get(path[1]) is not None:
            out[key] = float(value[path[1]])
    if summary.get("examples_mean_iou") is not None:
        out["examples_pixel_iou"] = float(summary["examples_mean_iou"])
    return out


def _plots(
    result: BundleResult, thresholds: dict[str, Threshold], out_dir: Path, position: int
) -> None:
    suffix = "" if position == 0 else f"_{position}"
    groups: dict[str, list[float]] = {}
    for label, score, source in zip(
        result.frame_labels, result.frame_scores, result.frame_sources, strict=True
    ):
        groups.setdefault(f"{'fake' if label else 'real'}: {source}", []).append(score)
    if groups:
        score_histogram(
            {k: np.asarray(v) for k, v in sorted(groups.items())},
            {k: t.value for k, t in thresholds.items()},
            out_dir / f"frame_scores{suffix}.png",
            title=result.label,
        )
    if result.grid is not None:
        images, predictions, truths, titles = result.grid
        mask_overlay_grid(images, predictions, truths, titles, out_dir / f"masks{suffix}.png")


def _comparison_plots(
    results: list[BundleResult], out_dir: Path, report: dict[str, Any], window: int
) -> None:
    from fakewatch.training.metrics import video_level_scores

    frame_curves = {
        r.label: (np.asarray(r.frame_labels), np.asarray(r.frame_scores))
        for r in results
        if len(set(r.frame_labels)) == 2
    }
    if frame_curves:
        plot_roc_pr(frame_curves, out_dir / "roc_pr_frames.png", "frames")
        report["plots"] = ["roc_pr_frames.png"]
    video_curves = {}
    for r in results:
        labels, scores, _, _ = video_level_scores(r.videos, window)
        if len(set(np.asarray(labels).tolist())) == 2:
            video_curves[r.label] = (np.asarray(labels), np.asarray(scores))
    if video_curves:
        plot_roc_pr(video_curves, out_dir / "roc_pr_videos.png", "videos")
        report.setdefault("plots", []).append("roc_pr_videos.png")
