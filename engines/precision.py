"""Reduced precision that is earned: static int8 quantization and parity checks.

A reduced-precision engine is only opened when the bundle's manifest records that, on
real face crops, its frame scores stayed within a tolerance of the f32 engine's. The
crops of a check are held apart from the int8 calibration: of the media given, the
files at even positions (sorted) calibrate int8 and those at odd positions are checked.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakewatch.engines.bundle import EngineBundle, MeasuredOn, PrecisionCheck, make_artifact
from fakewatch.engines.crop import crop_face
from fakewatch.engines.faces import FaceDetector
from fakewatch.engines.media import is_image, is_video, iter_frames
from fakewatch.engines.runtimes.base import Engine

INT8_FILE = "model.int8.onnx"
DEFAULT_MEAN_TOLERANCE = 0.02
"""Default limit on the mean mask-probability difference from f32."""


@dataclass(frozen=True)
class CropSet:
    """Face crops and where they came from."""

    crops: np.ndarray
    files: list[Path]

    @property
    def sha256(self) -> str:
        """Identifies the crops' pixels (shape and dtype included)."""
        digest = hashlib.sha256(f"{self.crops.dtype}{self.crops.shape}".encode())
        digest.update(np.ascontiguousarray(self.crops).tobytes())
        return digest.hexdigest()

    @property
    def description(self) -> str:
        folders = sorted({str(f.parent) for f in self.files})
        return f"{len(self.crops)} face crops from {len(self.files)} files in " + ", ".join(folders)


def media_files(paths: Iterable[Path]) -> list[Path]:
    """Image and video files in ``paths`` (folders are searched recursively), sorted."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        found.extend(p for p in candidates if p.is_file() and (is_image(p) or is_video(p)))
    return found


def collect_crops(
    paths: Iterable[Path],
    bundle: EngineBundle,
    detector: FaceDetector,
    limit: int = 128,
    every: int = 15,
) -> np.ndarray:
    """Face crops cut from the images and videos in ``paths`` (one per detected face)."""
    spec = bundle.spec
    crops: list[np.ndarray] = []
    files = media_files(paths)
    if not files:
        raise ValueError(f"no images or videos found in {[str(p) for p in paths]}")
    for file in files:
        for frame in iter_frames(file, every=every, max_frames=max(1, limit // len(files) + 1)):
            for face in detector.detect(frame.image):
                crops.append(
                    crop_face(frame.image, face.box, spec.input_size, spec.crop_margin).image
                )
                if len(crops) >= limit:
                    return np.stack(crops)
    if not crops:
        raise ValueError("no faces were found in the calibration media")
    return np.stack(crops)


def split_media(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """The media in ``paths`` split in two: files at even positions (sorted) for int8
    calibration, files at odd positions held apart for parity checks."""
    files = media_files(paths)
    if len(files) < 2:
        raise ValueError(
            f"found {len(files)} image or video file(s) in {[str(p) for p in paths]}; a "
            "parity check needs at least two, so that its crops are held apart from "
            "int8 calibration"
        )
    return files[0::2], files[1::2]


def calibration_and_check_crops(
    paths: Iterable[Path], bundle: EngineBundle, detector: FaceDetector, limit: int = 128
) -> tuple[CropSet, CropSet]:
    """Crops for int8 calibration and, from other files, crops for the parity check."""
    calibrate, check = split_media(paths)
    return (
        CropSet(collect_crops(calibrate, bundle, detector, limit), calibrate),
        CropSet(collect_crops(check, bundle, detector, limit), check),
    )


def compare(
    reference: Engine,
    candidate: Engine,
    crops: np.ndarray,
    tolerance: float,
    calibration: str,
    *,
    mean_tolerance: float | None = None,
    check_set: CropSet | None = None,
    measured_on: MeasuredOn | None = None,
) -> PrecisionCheck:
    """Run both engines on ``crops`` and record how far the candidate strays.

    It passes when the largest frame-score difference is within ``tolerance`` and the
    mean mask difference within ``mean_tolerance`` (when given). With ``check_set``
    (the crops, held apart from calibration) and ``measured_on`` the record is one
    ``engine.precision: auto`` can trust.
    """
    expected = reference.infer_batches(crops, 8)
    actual = candidate.infer_batches(crops, 8)
    margin = reference.bundle.spec.crop_margin
    scoring = reference.bundle.manifest.scoring
    expected_scores, _ = scoring.score(expected, margin)
    actual_scores, _ = scoring.score(actual, margin)
    diff = np.abs(expected - actual)
    score_diff = float(np.abs(expected_scores - actual_scores).max())
    mean_diff = float(diff.mean())
    passed = score_diff <= tolerance and (mean_tolerance is None or mean_diff <= mean_tolerance)
    return PrecisionCheck(
        backend=candidate.info.backend,
        precision=candidate.info.precision,
        device="cpu" if candidate.info.device == "cpu" else "cuda",
        max_abs_diff=float(diff.max()),
        mean_abs_diff=mean_diff,
        score_max_abs_diff=score_diff,
        tolerance=tolerance,
        mean_tolerance=mean_tolerance,
        calibration=calibration,
        crops=len(crops),
        crops_sha256=check_set.sha256 if check_set is not None else None,
        crops_media=[f.name for f in check_set.files] if check_set is not None else [],
        held_out=check_set is not None,
        measured_on=measured_on,
        passed=passed,
    )


def quantize_int8(bundle: EngineBundle, crops: np.ndarray) -> None:
    """Write a static int8 (QDQ, per-channel weights) twin of the ONNX graph.

    Activation ranges are calibrated on ``crops``. The result is added to the bundle as
    the ``onnx_int8`` artefact; it is only used after a passing parity check.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = (crops[i : i + 1] for i in range(len(crops)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {"crops": batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(bundle.path("onnx")), str(prepared), skip_symbolic_shape=True)
        staged = Path(tmp) / INT8_FILE
        quantize_static(
            str(prepared),
            str(staged),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        staged.replace(bundle.folder / INT8_FILE)
    bundle.manifest.artifacts["onnx_int8"] = make_artifact(
        bundle.folder, INT8_FILE, format="QDQ", calibration_crops=str(len(crops))
    )
    bundle.save_manifest()


def record_check(bundle: EngineBundle, check: PrecisionCheck) -> None:
    """Replace any earlier check for the same backend, precision and device, and save.

    A failed int8 check also removes the int8 twin: no engine opens it, so the bundle
    would only carry its weight.
    """
    key = (check.backend, check.precision, check.device)
    bundle.manifest.precision_checks = [
        c for c in bundle.manifest.precision_checks if (c.backend, c.precision, c.device) != key
    ] + [check]
    if check.precision == "int8" and not check.passed:
        twin = bundle.manifest.artifacts.pop("onnx_int8", None)
        if twin is not None:
            (bundle.folder / twin.path).unlink(missing_ok=True)
    bundle.save_manifest()
