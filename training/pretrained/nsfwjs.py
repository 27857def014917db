"""MobileNetV2 weights from the npm package ``nsfwjs`` (MIT), for a ``tu-mobilenetv2_100``
encoder with TensorFlow padding.

``nsfwjs@4.4.0`` carries ``dist/models/mobilenet_v2/``: a Keras MobileNetV2 (alpha 1.0,
224 px) with a five-class head, saved by TensorFlow.js as two JavaScript modules, the
topology with a weights manifest (``model.min.js``) and the weights as one base64 string
(``group1-shard1of1.min.js``). Layers up to ``block_10`` are marked frozen in the model
file, so they presumably hold the ImageNet weights the model was fine-tuned from.

Conversion, tensor by tensor:

- every tensor is uint8-quantised per tensor: ``value = min + scale * q``;
- convolutions are HWIO, torch wants OIHW; depthwise kernels are ``(3, 3, C, 1)``, torch
  wants ``(C, 1, 3, 3)``; dense kernels are ``(in, out)``, torch wants ``(out, in)``;
- BatchNorm ``gamma/beta/moving_mean/moving_variance`` become
  ``weight/bias/running_mean/running_var``; Keras' epsilon is 1e-3 and timm's 1e-5, so
  the difference is added to the variances (exactly the same normalisation);
- Keras pads stride-2 convolutions by one pixel at the bottom and right only, which is
  TensorFlow's "SAME" padding on even sizes: the encoder is built with ``pad_type="same"``.

The network expects pixels scaled to 0..1 (nsfwjs divides by 255; the stored BatchNorm
statistics agree), so the spec's mean is 0 and its std 1.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fakewatch.training.pretrained import HEAD_PREFIX, PretrainedError, PretrainedSource

PACKAGE = "nsfwjs"
VERSION = "4.4.0"
INTEGRITY = (
    "sha512-krC1fgeTLXtZwgdpKJ0jm7hqv0gTSRQQRL+FhOaxaJ9Wj92t42BO3c"  # npm's dist.integrity
    "sO2odwgTAgZgf2RvkwPtp0R8Aa7dc+MA=="
)
MODEL_MEMBER = "package/dist/models/mobilenet_v2/model.min.js"
SHARD_MEMBER = "package/dist/models/mobilenet_v2/group1-shard1of1.min.js"
CLASSES = ("Drawing", "Hentai", "Neutral", "Porn", "Sexy")
KERAS_BN_EPS = 1e-3
TORCH_BN_EPS = 1e-5
# Inverted-residual blocks per timm stage after the first (block_1 .. block_16).
_STAGE_BLOCKS = (2, 3, 4, 3, 3, 1)
_BN_NAMES = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def registry_url() -> str:
    """The npm registry: ``NPM_CONFIG_REGISTRY`` when set, else the public one."""
    return os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org").rstrip("/")


def fetch(folder: Path) -> Path:
    """Download the package tarball once and check it against the pinned integrity."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{PACKAGE}-{VERSION}.tgz"
    if not target.is_file():
        url = f"{registry_url()}/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
        temp = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=120) as response, temp.open("wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
        except OSError as error:
            temp.unlink(missing_ok=True)
            raise PretrainedError(f"cannot download {url}: {error}") from error
        temp.replace(target)
    digest = "sha512-" + base64.b64encode(hashlib.sha512(target.read_bytes()).digest()).decode()
    if digest != INTEGRITY:
        raise PretrainedError(
            f"{target} does not match the integrity of {PACKAGE}@{VERSION} "
            f"({digest[:24]}... != {INTEGRITY[:24]}...); delete it and fetch again"
        )
    return target


def _member(tarball: Path, name: str) -> str:
    with tarfile.open(tarball, "r:gz") as archive:
        handle = archive.extractfile(name)
        if handle is None:
            raise PretrainedError(f"{tarball} has no file {name}")
        return handle.read().decode("utf-8")


def _js_array_to_json(text: str) -> Any:
    """The weights manifest, a plain JavaScript literal: quote its keys, complete its
    numbers (``.5`` -> ``0.5``) and read it as JSON."""
    quoted = re.sub(r"(?<=[{,])([A-Za-z_$][\w$]*):", r'"\1":', text)
    numbers = re.sub(r"(?<=[:\[,])(-?)\.(\d)", r"\g<1>0.\2", quoted)
    return json.loads(numbers)


def read_manifest(tarball: Path) -> list[dict[str, Any]]:
    """The manifest's weight entries, in the order their bytes lie in the shard."""
    text = _member(tarball, MODEL_MEMBER)
    start = text.find("weightsManifest:")
    if start < 0:
        raise PretrainedError(f"{MODEL_MEMBER} has no weightsManifest")
    start = text.index("[", start)
    depth = 0
    for end in range(start, len(text)):
        depth += {"[": 1, "]": -1}.get(text[end], 0)
        if depth == 0:
            break
    groups = _js_array_to_json(text[start : end + 1])
    if len(groups) != 1:
        raise PretrainedError(f"expected one weight group, found {len(groups)}")
    weights: list[dict[str, Any]] = groups[0]["weights"]
    return weights


def read_weights(tarball: Path) -> dict[str, np.ndarray]:
    """Every tensor of the Keras model by its Keras name, dequantised to float32."""
    entries = read_manifest(tarball)
    match = re.search(r'"([A-Za-z0-9+/=]{10000,})"', _member(tarball, SHARD_MEMBER))
    if match is None:
        raise PretrainedError(f"{SHARD_MEMBER} holds no base64 weight data")
    data = np.frombuffer(base64.b64decode(match[1]), dtype=np.uint8)
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for entry in entries:
        quantisation = entry.get("quantization") or {}
        if quantisation.get("dtype") != "uint8":
            raise PretrainedError(f"{entry['name']}: expected uint8 quantisation, got {entry}")
        count = int(np.prod(entry["shape"]))
        values = data[offset : offset + count].astype(np.float64)
        offset += count
        dequantised = quantisation["min"] + quantisation["scale"] * values
        tensors[entry["name"]] = dequantised.astype(np.float32).reshape(entry["shape"])
    if offset != len(data):
        raise PretrainedError(f"the shard holds {len(data)} bytes, the manifest {offset}")
    return tensors


def _block_prefix(number: int) -> str:
    """timm's ``blocks.S.I`` for Keras ``block_<number>`` (1..16)."""
    for stage, count in enumerate(_STAGE_BLOCKS, start=1):
        if number <= count:
            return f"model.blocks.{stage}.{number - 1}"
        number -= count
    raise PretrainedError(f"no block_{number} in MobileNetV2")


def _target_name(keras: str) -> tuple[str, str]:
    """(torch module path, Keras variable) for a Keras weight name."""
    layer, variable = keras.split("/")
    fixed = {
        "Conv1": "model.conv_stem",
        "bn_Conv1": "model.bn1",
        "expanded_conv_depthwise": "model.blocks.0.0.conv_dw",
        "expanded_conv_depthwise_BN": "model.blocks.0.0.bn1",
        "expanded_conv_project": "model.blocks.0.0.conv_pw",
        "expanded_conv_project_BN": "model.blocks.0.0.bn2",
        "Conv_1": HEAD_PREFIX + "conv_head",
        "Conv_1_bn": HEAD_PREFIX + "bn2",
    }
    if layer in fixed:
        return fixed[layer], variable
    if layer.startswith("dense_"):
        return HEAD_PREFIX + layer, variable
    match = re.fullmatch(r"block_(\d+)_(expand|depthwise|project)(_BN)?", layer)
    if match is None:
        raise PretrainedError(f"unexpected Keras layer {layer!r}")
    part = {
        ("expand", False): "conv_pw",
        ("expand", True): "bn1",
        ("depthwise", False): "conv_dw",
        ("depthwise", True): "bn2",
        ("project", False): "conv_pwl",
        ("project", True): "bn3",
    }[(match[2], bool(match[3]))]
    return f"{_block_prefix(int(match[1]))}.{part}", variable


def convert(tarball: Path) -> dict[str, torch.Tensor]:
    """The encoder's state dict (``model.*``) plus the classifier (``head.*``)."""
    out: dict[str, torch.Tensor] = {}
    batchnorms: set[str] = set()
    for name, value in read_weights(tarball).items():
        module, variable = _target_name(name)
        if variable == "kernel" and value.ndim == 4:  # HWIO -> OIHW
            tensor = value.transpose(3, 2, 0, 1)
        elif variable == "depthwise_kernel":  # (kh, kw, C, 1) -> (C, 1, kh, kw)
            tensor = value.transpose(2, 3, 0, 1)
        elif variable == "kernel":  # dense (in, out) -> (out, in)
            tensor = value.T
        elif variable == "bias":
            tensor = value
        elif variable in _BN_NAMES:
            batchnorms.add(module)
            if variable == "moving_variance":
                value = value + (KERAS_BN_EPS - TORCH_BN_EPS)
            out[f"{module}.{_BN_NAMES[variable]}"] = torch.from_numpy(value.copy())
            continue
        else:
            raise PretrainedError(f"unexpected Keras variable {name!r}")
        suffix = "bias" if variable == "bias" else "weight"
        out[f"{module}.{suffix}"] = torch.from_numpy(np.ascontiguousarray(tensor))
    for module in batchnorms:
        out[f"{module}.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    return out


class NsfwClassifier(nn.Module):
    """The whole nsfwjs network in torch: the timm MobileNetV2 with the converted weights,
    its last 1x1 convolution, 7x7 average pooling and the three dense layers.

    Used to prove the conversion exact against the JavaScript original; takes float
    crops ``(N, 3, 224, 224)`` in 0..1 and returns the five class probabilities.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        from segmentation_models_pytorch.encoders import get_encoder

        self.encoder = get_encoder("tu-mobilenetv2_100", depth=5, weights=None, pad_type="same")
        encoder_state = {k: v for k, v in tensors.items() if not k.startswith(HEAD_PREFIX)}
        self.encoder.load_state_dict(encoder_state)
        self.conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280, eps=TORCH_BN_EPS)
        widths = [1280, 256, 128, len(CLASSES)]
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        head = {
            k.removeprefix(HEAD_PREFIX): v for k, v in tensors.items() if k.startswith(HEAD_PREFIX)
        }
        for index in range(3):
            for part in ("weight", "bias"):
                head[f"dense.{index}.{part}"] = head.pop(f"dense_{index + 1}.{part}")
        self.load_state_dict({**{f"encoder.{k}": v for k, v in encoder_state.items()}, **head})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)[-1]
        features = nn.functional.relu6(self.bn2(self.conv_head(features)))
        pooled = torch.flatten(nn.functional.avg_pool2d(features, 7), 1)
        out = pooled
        for index, layer in enumerate(self.dense):
            out = layer(out)
            if index < len(self.dense) - 1:
                out = torch.relu(out)
        return torch.softmax(out, dim=1)


SOURCE = PretrainedSource(
    name="nsfwjs-mobilenet_v2",
    encoder="tu-mobilenetv2_100",
    same_padding=True,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    package=f"npm {PACKAGE}@{VERSION} dist/models/mobilenet_v2",
    licence="MIT",
    description="Keras MobileNetV2 (ImageNet, later blocks fine-tuned for content classes)",
    fetch=fetch,
    convert=convert,
)
