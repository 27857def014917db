"""The segmentation network (segmentation-models-pytorch) and its deployed form.

Requires the ``torch`` extra. :class:`DeployedSegmenter` is what every runtime executes:
``uint8`` RGB crops ``(N, S, S, 3)`` in, float32 manipulation probabilities ``(N, S, S)``
out. Normalisation and the sigmoid are inside the graph, so an exported engine cannot be
fed differently from the way the model was trained.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fakewatch.engines.spec import ModelSpec


def build_model(spec: ModelSpec) -> nn.Module:
    """A freshly initialised network for ``spec``: one output channel of logits.

    Nothing is downloaded: encoder weights start random (``encoder_weights=None``).
    """
    import segmentation_models_pytorch as smp

    try:
        network: nn.Module = smp.create_model(
            spec.architecture,
            encoder_name=spec.encoder,
            encoder_depth=spec.encoder_depth,
            encoder_weights=None,
            decoder_channels=list(spec.decoder_channels),
            in_channels=3,
            classes=1,
        )
    except KeyError as error:
        raise ValueError(
            f"unknown encoder {spec.encoder!r}; see segmentation_models_pytorch.encoders"
        ) from error
    return network


class DeployedSegmenter(nn.Module):
    """``uint8`` crops ``(N, S, S, 3)`` to manipulation probabilities ``(N, S, S)``."""

    def __init__(self, network: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(spec.std).view(1, 3, 1, 1) * 255.0))

    def logits(self, crops: torch.Tensor) -> torch.Tensor:
        """Per-pixel log-odds ``(N, S, S)``: what training puts its loss on."""
        mean = self.get_buffer("mean")
        inv_std = self.get_buffer("inv_std")
        x = (crops.permute(0, 3, 1, 2).to(mean.dtype) - mean) * inv_std
        out: torch.Tensor = self.network(x)
        return out[:, 0]

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(crops).float())


def load_weights(network: nn.Module, path: Path) -> nn.Module:
    """Load a safetensors state dict into ``network`` (strict: every key must match)."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    missing, unexpected = network.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights in {path} do not fit the model spec: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return network


def save_weights(network: nn.Module, path: Path) -> None:
    """Write ``network``'s state dict as safetensors (contiguous CPU tensors)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(path))
