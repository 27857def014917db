"""Alerts a person reviewed, as training data: the service's own cameras teach the model.

``fakewatch export-reviews DIR`` copies every reviewed alert of the service's evidence
folder (``<event id>/crop.jpg``, ``mask.png`` and ``review.json``, see
``stream/sinks/evidence.py``) into ``DIR``::

    DIR/false_positive/<event id>.jpg   the face crop the model alerted on: a hard real
    DIR/false_positive/<event id>.png   its mask: empty
    DIR/confirmed/<event id>.jpg        a deepfake the model caught
    DIR/confirmed/<event id>.png        its mask, the model's own, thresholded (0 or 255)
    DIR/reviews.json                    what each crop is: stream, verdict, note, score

A recipe folds such folders into training (``reviews: {folders: [DIR], weight: 0.1}``):
that share of the training samples is a reviewed crop with its mask, false positives
as reals (label 0) and confirmed alerts as fakes (label 1).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

VERDICTS = ("confirmed", "false_positive")
MASK_THRESHOLD = 0.5
"""Mask pixels at or above this (of 1) are manipulated in a confirmed alert's mask."""


@dataclass(frozen=True)
class ReviewedCrop:
    """One reviewed alert: the crop (RGB), its mask (0/1 float) and its label."""

    event_id: str
    verdict: str
    crop: np.ndarray
    mask: np.ndarray

    @property
    def label(self) -> float:
        return 1.0 if self.verdict == "confirmed" else 0.0


def _review(folder: Path) -> dict[str, Any] | None:
    try:
        review = json.loads((folder / "review.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(review, dict) or review.get("verdict") not in VERDICTS:
        return None
    return review


def export_reviews(evidence: Path, out: Path) -> dict[str, int]:
    """Write every reviewed alert under ``evidence`` into ``out`` (layout above); how
    many of each verdict. Alerts already exported are written again (same names)."""
    if not evidence.is_dir():
        raise ValueError(f"{evidence} is not an evidence folder")
    for verdict in VERDICTS:
        (out / verdict).mkdir(parents=True, exist_ok=True)
    manifest_path = out / "reviews.json"
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    counts = dict.fromkeys(VERDICTS, 0)
    for folder in sorted(p for p in evidence.iterdir() if p.is_dir()):
        review = _review(folder)
        crop = cv2.imread(str(folder / "crop.jpg"), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(folder / "mask.png"), cv2.IMREAD_GRAYSCALE)
        if review is None or crop is None or mask is None:
            continue
        verdict = review["verdict"]
        if verdict == "confirmed":
            mask = np.where(mask >= MASK_THRESHOLD * 255, 255, 0).astype(np.uint8)
        else:
            mask = np.zeros(mask.shape, np.uint8)
        for other in VERDICTS:  # a changed verdict moves the crop
            for suffix in (".jpg", ".png"):
                (out / other / f"{folder.name}{suffix}").unlink(missing_ok=True)
        target = out / verdict / folder.name
        _write(target.with_suffix(".jpg"), crop)
        _write(target.with_suffix(".png"), mask)
        event = _event(folder)
        manifest[folder.name] = {
            "verdict": verdict,
            "note": review.get("note", ""),
            "reviewed": review.get("time"),
            "stream": (event.get("stream") or {}).get("name"),
            "time": event.get("time"),
            "score": (event.get("evidence") or {}).get("score"),
        }
        counts[verdict] += 1
    staging = manifest_path.with_name(".reviews.json.partial")
    staging.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    staging.replace(manifest_path)
    return counts


def _event(folder: Path) -> dict[str, Any]:
    try:
        event = json.loads((folder / "event.json").read_text())
    except (OSError, ValueError):
        return {}
    return event if isinstance(event, dict) else {}


def _write(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(encoded.tobytes())


def read_reviews(folders: list[Path], size: int) -> list[ReviewedCrop]:
    """The reviewed crops of exported folders, resized to ``size``."""
    found = []
    for folder in folders:
        for verdict in VERDICTS:
            for path in sorted((folder / verdict).glob("*.jpg")):
                crop = cv2.imread(str(path), cv2.IMREAD_COLOR)
                mask = cv2.imread(str(path.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
                if crop is None or mask is None:
                    log.warning("skipping %s: no readable crop and mask", path)
                    continue
                crop = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), (size, size))
                mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
                binary = (mask > 127).astype(np.float32)
                found.append(ReviewedCrop(path.stem, verdict, crop, binary))
    return found
