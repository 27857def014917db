"""The timm encoders the pretrained weights fit (TensorFlow "SAME" padding, a second
boundary channel) export to ONNX and run the same on every CPU runtime."""

from __future__ import annotations

import numpy as np
import pytest

from fakewatch.engines.bench import sample_crops
from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.runtimes import BackendUnavailable, open_engine
from tests.conftest import make_untrained_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> EngineBundle:
    folder = tmp_path_factory.mktemp("timm") / "bundle"
    make_untrained_bundle(
        folder,
        encoder="tu-mobilenetv2_100",
        same_padding=True,
        boundary_head=True,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )
    return EngineBundle.load(folder)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_same_padding_and_boundary_head_export(bundle: EngineBundle, backend: str) -> None:
    crops = sample_crops(bundle.spec.input_size, 3, seed=4)
    reference = open_engine(bundle, "torch", "cpu", "f32").infer(crops)
    assert reference.shape == (3, 224, 224), "the deployed graph returns the mask channel only"
    assert reference.std() > 0.02
    try:
        engine = open_engine(bundle, backend, "cpu", "f32", threads=2)
    except BackendUnavailable as error:
        pytest.skip(str(error))
    masks = engine.infer(crops)
    assert float(np.abs(masks - reference).max()) < 1e-3


def test_same_padding_needs_a_timm_encoder() -> None:
    from fakewatch.engines.spec import ModelSpec

    with pytest.raises(ValueError, match="same_padding needs a timm encoder"):
        ModelSpec(encoder="mobilenet_v2", same_padding=True)
