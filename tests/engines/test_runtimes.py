"""Every runtime against the torch reference, one inherited test class per backend.

Each subclass names its backend, device, precision and tolerance; the base class checks
parity on fixed inputs (a real face crop and smooth sample crops), every batch size from
1 to 9, and clear errors for a wrong shape or dtype. A backend that cannot run here is
skipped with the reason the runtime gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from fakewatch.engines.bench import sample_crops
from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.crop import crop_face
from fakewatch.engines.faces import default_face_detector
from fakewatch.engines.runtimes import (
    BackendUnavailable,
    Engine,
    EngineInputError,
    open_engine,
)
from fakewatch.engines.scoring import score_masks


@pytest.fixture(scope="module")
def bundle(untrained_bundle_dir: Path) -> EngineBundle:
    return EngineBundle.load(untrained_bundle_dir)


@pytest.fixture(scope="module")
def fixed_crops(bundle: EngineBundle, astronaut: np.ndarray) -> np.ndarray:
    size = bundle.spec.input_size
    face = default_face_detector().detect(astronaut)[0]
    real = crop_face(astronaut, face.box, size, bundle.spec.crop_margin).image
    return np.concatenate([real[None], sample_crops(size, 3, seed=7)])


@pytest.fixture(scope="module")
def reference(bundle: EngineBundle, fixed_crops: np.ndarray) -> np.ndarray:
    masks = open_engine(bundle, "torch", "cpu", "f32").infer(fixed_crops)
    assert masks.std() > 0.05, "reference masks are too flat for parity to mean anything"
    return masks


class EngineContract:
    backend: ClassVar[str]
    device: ClassVar[str] = "cpu"
    precision: ClassVar[str] = "f32"
    mask_tolerance: ClassVar[float] = 1e-3  # largest per-pixel probability difference
    mean_tolerance: ClassVar[float] = 1e-4  # mean per-pixel probability difference
    score_tolerance: ClassVar[float] = 1e-4  # largest frame-score difference

    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls, bundle: EngineBundle) -> Engine:
        try:
            return cls.open(bundle)
        except BackendUnavailable as error:
            pytest.skip(str(error))

    @classmethod
    def open(cls, bundle: EngineBundle) -> Engine:
        return open_engine(bundle, cls.backend, cls.device, cls.precision, threads=2)

    def test_describes_itself(self, engine: Engine) -> None:
        assert engine.info.label == f"{self.backend}/{self.device}/{self.precision}"
        assert engine.info.detail

    def test_matches_torch_on_fixed_inputs(
        self, engine: Engine, fixed_crops: np.ndarray, reference: np.ndarray, bundle: EngineBundle
    ) -> None:
        masks = engine.infer(fixed_crops)
        assert masks.dtype == np.float32 and masks.shape == reference.shape
        difference = np.abs(masks - reference)
        print(f"{engine.info.label}: max {difference.max():.2e} mean {difference.mean():.2e}")
        assert float(difference.max()) <= self.mask_tolerance
        assert float(difference.mean()) <= self.mean_tolerance
        scores, _ = score_masks(masks, bundle.spec.crop_margin)
        expected, _ = score_masks(reference, bundle.spec.crop_margin)
        assert float(np.abs(scores - expected).max()) <= self.score_tolerance

    def test_every_batch_size_gives_the_same_masks(
        self, engine: Engine, fixed_crops: np.ndarray
    ) -> None:
        crops = np.concatenate([fixed_crops, fixed_crops, fixed_crops[:1]])
        whole = engine.infer(crops)
        for n in range(1, len(crops) + 1):
            part = engine.infer(crops[:n])
            assert part.shape == (n, engine.size, engine.size)
            np.testing.assert_allclose(part, whole[:n], atol=max(self.mask_tolerance, 1e-5))

    @pytest.mark.parametrize(
        ("shape", "dtype", "message"),
        [
            ((2, 3, 224, 224), np.uint8, "channels-first"),
            ((224, 224, 3), np.uint8, "add a batch axis"),
            ((2, 112, 112, 3), np.uint8, r"got shape \(2, 112, 112, 3\)"),
            ((2, 224, 224, 3), np.float32, "got dtype float32"),
            ((0, 224, 224, 3), np.uint8, "batch of 0 crops"),
        ],
    )
    def test_wrong_input_gets_a_clear_error(
        self, engine: Engine, shape: tuple[int, ...], dtype: type, message: str
    ) -> None:
        with pytest.raises(EngineInputError, match=message):
            engine.infer(np.zeros(shape, dtype=dtype))

    def test_a_list_is_refused(self, engine: Engine) -> None:
        with pytest.raises(EngineInputError, match="numpy array"):
            engine.infer([[0]])  # type: ignore[arg-type]


class TestTorchCpu(EngineContract):
    backend = "torch"


class TestOnnxRuntimeCpu(EngineContract):
    backend = "onnxruntime"


class TestOpenVinoF32(EngineContract):
    backend = "openvino"


class TestOpenVinoBf16(EngineContract):
    """bf16 keeps 8 mantissa bits. Random weights amplify rounding (single pixels move
    by up to 0.7, the mean by 0.07), so on this bundle only frame scores are held
    tightly; `fakewatch engine build --precision bf16` measures trained bundles.

    Measured on these inputs (AMD EPYC with AVX512-BF16, OpenVINO 2026.4): largest pixel
    difference 0.701, mean 0.073, frame scores 0.0065; every batch size gives the same
    masks. The pixel bound leaves about 15% above the largest seen: a probability that
    flips from one end of 0..1 to the other still fails."""

    backend = "openvino"
    precision = "bf16"
    mask_tolerance = 0.8
    mean_tolerance = 0.1
    score_tolerance = 0.03

    @classmethod
    def open(cls, bundle: EngineBundle) -> Engine:
        from fakewatch.engines.runtimes.openvino_engine import OpenVinoEngine

        return OpenVinoEngine(bundle, "cpu", "bf16", threads=2, require_check=False)


@pytest.mark.gpu
class TestTorchCuda(EngineContract):
    backend = "torch"
    device = "cuda"
    mask_tolerance = 5e-3
    mean_tolerance = 1e-4
    score_tolerance = 1e-3


@pytest.mark.gpu
class TestTorchCudaFp16(EngineContract):
    backend = "torch"
    device = "cuda"
    precision = "fp16"
    mask_tolerance = 0.05
    mean_tolerance = 0.005
    score_tolerance = 0.01


@pytest.mark.gpu
class TestOnnxRuntimeCuda(EngineContract):
    backend = "onnxruntime"
    device = "cuda"
    mask_tolerance = 5e-3
    mean_tolerance = 1e-4
    score_tolerance = 1e-3


@pytest.mark.gpu
@pytest.mark.tensorrt
class TestTensorRt(EngineContract):
    backend = "tensorrt"
    device = "cuda"
    precision = "fp16"
    mask_tolerance = 0.05
    mean_tolerance = 0.005
    score_tolerance = 0.01

    @classmethod
    def open(cls, bundle: EngineBundle) -> Engine:
        from fakewatch.engines.runtimes.tensorrt_engine import compile_tensorrt

        artifact = compile_tensorrt(bundle, "fp16", max_batch=16)
        assert artifact.path == "tensorrt/model.engine"
        assert artifact.notes["format"] == "tensorrt-plan"
        return open_engine(bundle, "tensorrt", "cuda", "fp16")


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_auto_on_cuda_waits_for_an_fp16_parity_check(
    untrained_bundle_dir: Path, tmp_path: Path
) -> None:
    """An fp16 TensorRT engine without a parity check leaves auto on torch f32."""
    import shutil

    from fakewatch.engines.runtimes.tensorrt_engine import compile_tensorrt

    bundle = EngineBundle.load(shutil.copytree(untrained_bundle_dir, tmp_path / "bundle"))
    try:
        compile_tensorrt(bundle, "fp16", max_batch=8)
    except BackendUnavailable as error:
        pytest.skip(str(error))
    engine = open_engine(bundle, "auto", "cuda")
    assert engine.info.label == "torch/cuda/f32"
    assert "fp16 has no parity check" in engine.info.reason


def test_auto_picks_openvino_on_cpu(bundle: EngineBundle) -> None:
    assert open_engine(bundle).info.backend == "openvino"


def test_unknown_backend_and_device_say_what_exists(bundle: EngineBundle) -> None:
    with pytest.raises(BackendUnavailable, match="unknown backend 'tflite'"):
        open_engine(bundle, "tflite")
    with pytest.raises(BackendUnavailable, match="unknown device 'tpu'"):
        open_engine(bundle, "onnxruntime", "tpu")


def test_reduced_precision_needs_a_recorded_parity_check(bundle: EngineBundle) -> None:
    with pytest.raises(BackendUnavailable, match="has no parity check with f32"):
        open_engine(bundle, "openvino", "cpu", "bf16")


def test_classifier_bundle_spreads_one_score_over_the_mask(tmp_path: Path) -> None:
    """The classification baseline runs through the same engines, scores and reports."""
    import torch

    from fakewatch.engines.export import write_bundle
    from fakewatch.engines.model import build_model
    from fakewatch.engines.spec import ModelSpec

    spec = ModelSpec(head="classification", input_size=64)
    torch.manual_seed(0)
    network = build_model(spec).eval()
    bundle = write_bundle(tmp_path / "classifier", network, spec, name="classifier")
    crops = sample_crops(64, 3)
    reference = open_engine(bundle, "torch").infer(crops)
    for backend in ("onnxruntime", "openvino"):
        masks = open_engine(bundle, backend).infer(crops)
        np.testing.assert_allclose(masks, reference, atol=1e-4)
    assert masks.shape == (3, 64, 64)
    assert np.ptp(masks, axis=(1, 2)).max() == 0  # constant over each crop
    scores, _ = score_masks(masks, spec.crop_margin)
    np.testing.assert_allclose(scores, masks[:, 0, 0], atol=1e-6)
