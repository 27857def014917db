"""Reduced precision is only opened after a recorded, passing parity check."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fakewatch.cli.main import main
from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.runtimes import BackendUnavailable, open_engine


@pytest.fixture
def calibration_dir(tmp_path: Path, astronaut: np.ndarray) -> Path:
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, scale in enumerate((1.0, 0.7, 1.4)):
        image = cv2.resize(astronaut, None, fx=scale, fy=scale)
        cv2.imwrite(str(folder / f"face{i}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture
def bundle_dir(untrained_bundle_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(untrained_bundle_dir, target)
    return target


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_build_records_a_check_and_then_the_engine_opens(
    bundle_dir: Path, calibration_dir: Path, precision: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "engine",
            "build",
            str(bundle_dir),
            "--backend",
            "openvino",
            "--precision",
            precision,
            "--calibration",
            str(calibration_dir),
            "--tolerance",
            "0.05",
            # random weights move mask pixels far more than trained ones do
            "--mean-tolerance",
            "0.2",
        ]
    )
    assert status == 0, capsys.readouterr()
    bundle = EngineBundle.load(bundle_dir)
    check = bundle.manifest.precision_check("openvino", precision)
    # face0 and face2 calibrate int8; face1 is held apart for the check
    assert check is not None and check.passed and check.crops == 1
    assert check.held_out and check.crops_media == ["face1.jpg"]
    assert "1 face crops from 1 files" in check.calibration
    if precision == "int8":
        assert "onnx_int8" in bundle.manifest.artifacts
    engine = open_engine(bundle, "openvino", "cpu", precision)
    assert engine.info.precision == precision
    assert engine.infer(np.zeros((2, 224, 224, 3), dtype=np.uint8)).shape == (2, 224, 224)


def test_a_failed_check_keeps_the_precision_closed(
    bundle_dir: Path, calibration_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "engine",
            "build",
            str(bundle_dir),
            "--backend",
            "openvino",
            "--precision",
            "int8",
            "--calibration",
            str(calibration_dir),
            "--tolerance",
            "1e-9",
        ]
    )
    assert status == 1
    assert "FAILED" in capsys.readouterr().out
    bundle = EngineBundle.load(bundle_dir)
    with pytest.raises(BackendUnavailable, match="failed its parity check"):
        open_engine(bundle, "openvino", "cpu", "int8")
    # no engine opens the failed twin, so the bundle does not keep it
    assert "onnx_int8" not in bundle.manifest.artifacts
    assert not (bundle_dir / "model.int8.onnx").exists()
    assert open_engine(bundle).info.precision == "f32"


def test_a_check_needs_media_held_apart_from_calibration(
    bundle_dir: Path, calibration_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = ["engine", "build", str(bundle_dir), "--backend", "openvino", "--precision", "int8"]
    status = main([*build, "--calibration", str(calibration_dir / "face0.jpg")])
    assert status == 2
    assert "needs at least two" in capsys.readouterr().err


def test_reduced_precision_without_calibration_is_a_clear_error(
    bundle_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["engine", "build", str(bundle_dir), "--backend", "openvino", "--precision", "bf16"]
    )
    assert status == 2
    assert "needs --calibration" in capsys.readouterr().err
