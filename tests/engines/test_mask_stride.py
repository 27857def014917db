"""A decoder that stops at half resolution (``mask_stride: 2``) still gives a full-size
mask, in torch and in the exported engines, and its spec is checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fakewatch.engines.bench import sample_crops
from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.model import build_model
from fakewatch.engines.runtimes import BackendUnavailable, open_engine
from fakewatch.engines.spec import ModelSpec
from tests.conftest import make_untrained_bundle

SIZE = 96
HALF = {"decoder_channels": (32, 16, 16, 8), "mask_stride": 2}


def test_the_full_size_stage_is_left_out_and_the_logits_upsampled() -> None:
    full = build_model(ModelSpec(input_size=SIZE, decoder_channels=(32, 16, 16, 8, 8)))
    half = build_model(ModelSpec(input_size=SIZE, boundary_head=True, **HALF))  # type: ignore[arg-type]
    blocks = [len(net.get_submodule("decoder").blocks) for net in (full, half)]
    assert blocks == [5, 4]
    with torch.no_grad():
        out = half.eval()(torch.zeros(2, 3, SIZE, SIZE))
    assert out.shape == (2, 2, SIZE, SIZE)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> EngineBundle:
    folder = tmp_path_factory.mktemp("stride") / "bundle"
    make_untrained_bundle(folder, size=SIZE, **HALF)
    return EngineBundle.load(folder)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_exported_engines_give_a_full_size_mask(bundle: EngineBundle, backend: str) -> None:
    crops = sample_crops(SIZE, 3, seed=4)
    reference = open_engine(bundle, "torch", "cpu", "f32").infer(crops)
    assert reference.shape == (3, SIZE, SIZE)
    assert reference.std() > 0.02
    try:
        engine = open_engine(bundle, backend, "cpu", "f32", threads=2)
    except BackendUnavailable as error:
        pytest.skip(str(error))
    masks = engine.infer(crops)
    assert masks.shape == (3, SIZE, SIZE)
    assert float(np.abs(masks - reference).max()) < 1e-3


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mask_stride": 2}, "one width per stage: 4 decoded"),
        ({"decoder_channels": (32, 16, 16, 8), "mask_stride": 1}, "one width per stage: 5 decoded"),
        ({"architecture": "FPN", **HALF}, "needs a segmentation Unet"),
        ({"head": "classification", **HALF}, "needs a segmentation Unet"),
        ({"mask_stride": 4}, "Input should be 1 or 2"),
    ],
)
def test_bad_strides_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelSpec(**settings)  # type: ignore[arg-type]
