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


class FrameClassifier(nn.Module):
    """The classification baseline: the same encoder, global pooling and one logit."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        from segmentation_models_pytorch.encoders import get_encoder

        self.encoder = get_encoder(
            spec.encoder, depth=spec.encoder_depth, weights=None, **encoder_options(spec)
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(self.encoder.out_channels[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)[-1]
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1)
        out: torch.Tensor = self.head(self.dropout(pooled))
        return out  # (N, 1)


def encoder_options(spec: ModelSpec) -> dict[str, str]:
    """Extra keyword arguments the spec's encoder is built with."""
    return {"pad_type": "same"} if spec.same_padding else {}


def build_model(spec: ModelSpec) -> nn.Module:
    """A freshly initialised network for ``spec``.

    Segmentation: ``(N, 1, S, S)`` logits; classification: ``(N, 1)`` logits. Nothing is
    downloaded: encoder weights start random (``encoder_weights=None``). With
    ``spec.mask_stride`` 2 the UNet's last decoder stage (the one at full resolution,
    which has no skip connection) is left out and the head's logits are upsampled
    bilinearly, so the output keeps the crop's size.
    """
    import segmentation_models_pytorch as smp

    try:
        if spec.head == "classification":
            return FrameClassifier(spec)
        channels = list(spec.decoder_channels)
        if spec.mask_stride == 2:
            channels.append(channels[-1])  # the full-size stage, removed below
        classes = 2 if spec.boundary_head else 1
        network: nn.Module = smp.create_model(
            spec.architecture,
            encoder_name=spec.encoder,
            encoder_depth=spec.encoder_depth,
            encoder_weights=None,
            decoder_channels=channels,
            in_channels=3,
            classes=classes,
            **encoder_options(spec),
        )
        if spec.mask_stride == 2:
            from segmentation_models_pytorch.base import SegmentationHead

            blocks = network.get_submodule("decoder.blocks")
            assert isinstance(blocks, nn.ModuleList)
            network.get_submodule("decoder").blocks = blocks[:-1]
            network.segmentation_head = SegmentationHead(
                spec.decoder_channels[-1], classes, kernel_size=3, upsampling=2
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

    def outputs(self, crops: torch.Tensor) -> torch.Tensor:
        """Every output channel: ``(N, C, S, S)`` logits (mask, then the blend boundary
        with ``spec.boundary_head``) or ``(N, 1)`` for a classifier."""
        mean = self.get_buffer("mean")
        inv_std = self.get_buffer("inv_std")
        x = (crops.permute(0, 3, 1, 2).to(mean.dtype) - mean) * inv_std
        out: torch.Tensor = self.network(x)
        return out

    def logits(self, crops: torch.Tensor) -> torch.Tensor:
        """The mask's logits ``(N, S, S)``, or per crop ``(N,)`` for a classifier."""
        return self.outputs(crops)[:, 0]

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        probabilities = torch.sigmoid(self.logits(crops).float())
        if probabilities.dim() == 1:  # classifier: one probability spread over the mask
            size = crops.shape[1]
            probabilities = probabilities[:, None, None].expand(-1, size, size)
        return probabilities


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


def save_weights(network: nn.Module, path: Path, dtype: torch.dtype = torch.float32) -> None:
    """Write ``network``'s state dict as safetensors, floating tensors as ``dtype``.

    Loading casts them back to the network's float32 parameters.
    """
    from safetensors.torch import save_file

    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in network.state_dict().items()
    }
    save_file(state, str(path))


def round_to_half(network: nn.Module) -> nn.Module:
    """Round every floating parameter and buffer to the nearest float16 value, in place.

    The network still computes in float32; it just holds exactly what a float16 file
    stores, so a network saved with half-precision storage and loaded again is the same.
    """
    with torch.no_grad():
        for tensor in [*network.parameters(), *network.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return network
