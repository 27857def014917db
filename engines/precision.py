"""Reduced precision that is earned: static int8 quantization and parity checks.

A reduced-precision engine is only opened when the bundle's manifest records that, on
real calibration crops, its frame scores stayed within a tolerance of the f32 engine's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fakewatch.engines.bundle import EngineBundle, PrecisionCheck, make_artifact
from fakewatch.engines.crop import crop_face
from fakewatch.engines.faces import FaceDetector
from fakewatch.engines.media import is_image, is_video, iter_frames
from fakewatch.engines.runtimes.base import Engine

INT8_FILE = "model.int8.onnx"


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


def compare(
    reference: Engine,
    candidate: Engine,
    crops: np.ndarray,
    tolerance: float,
    calibration: str,
) -> PrecisionCheck:
    """Run both engines on ``crops`` and record how far the candidate strays."""
    expected = reference.infer_batches(crops, 8)
    actual = candidate.infer_batches(crops, 8)
    margin = reference.bundle.spec.crop_margin
    scoring = reference.bundle.manifest.scoring
    expected_scores, _ = scoring.score(expected, margin)
    actual_scores, _ = scoring.score(actual, margin)
    diff = np.abs(expected - actual)
    score_diff = float(np.abs(expected_scores - actual_scores).max())
    return PrecisionCheck(
        backend=candidate.info.backend,
        precision=candidate.info.precision,
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        score_max_abs_diff=score_diff,
        tolerance=tolerance,
        calibration=calibration,
        crops=len(crops),
        passed=score_diff <= tolerance,
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
    """Replace any earlier check for the same backend and precision, and save."""
    bundle.manifest.precision_checks = [
        c
        for c in bundle.manifest.precision_checks
        if (c.backend, c.precision) != (check.backend, check.precision)
    ] + [check]
    bundle.save_manifest()
