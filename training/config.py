"""The training recipe: one YAML file validated by pydantic (``fakewatch train CONFIG``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fakewatch.engines.spec import ModelSpec


class ConfigError(ValueError):
    """A training config that cannot be used; the message says what to change."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(_Strict):
    """One folder of training data and how to read it."""

    path: Path
    layout: Literal["real", "ffpp", "dfdc", "pairs"] = Field(
        description="real: any folder of real images/videos; ffpp: FaceForensics++; "
        "dfdc: DFDC parts; pairs: real/X + fake/X aligned pairs"
    )
    compression: str = Field("c23", description="ffpp only: raw, c23 or c40")
    every: int = Field(5, ge=1, le=300, description="use every n-th video frame")
    max_frames_per_video: int = Field(400, ge=1, le=100_000)


class Validation(_Strict):
    """What is kept out of training, so that validation measures generalisation."""

    holdout_sources: list[str] = Field(
        default_factory=list, description="sources (file prefixes / datasets) used only to validate"
    )
    holdout_identities: list[str] = Field(
        default_factory=list, description="identities (people / video ids) used only to validate"
    )
    time_fraction: float = Field(
        0.25, ge=0.0, lt=1.0, description="last part of every other video kept for validation"
    )
    synthetic_per_real: int = Field(
        2, ge=0, le=10, description="fixed pseudo-fakes made per held-out real crop"
    )


class Synthesis(_Strict):
    """What each training sample is: weights, normalised over the kinds available."""

    real: float = Field(0.45, ge=0.0, description="a real crop as it is (all-zero mask)")
    self_blend: float = Field(0.3, ge=0.0, description="a real face blended with itself")
    cross_blend: float = Field(0.15, ge=0.0, description="another real face swapped in")
    pair_fake: float = Field(
        0.1, ge=0.0, description="a fake frame of a real/fake pair with its difference mask"
    )
    augmentation: float = Field(
        1.0, ge=0.0, le=1.0, description="strength of compression/resize/blur/colour augmentation"
    )


class Optimisation(_Strict):
    epochs: int = Field(30, ge=1, le=10_000)
    steps_per_epoch: int = Field(100, ge=1, le=100_000)
    batch_size: int = Field(16, ge=1, le=1024)
    learning_rate: float = Field(2e-3, gt=0, le=1)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    warmup_steps: int = Field(100, ge=0)
    patience: int = Field(6, ge=1, description="epochs without validation gain before stopping")
    dice_weight: float = Field(1.0, ge=0, description="segmentation: weight of the Dice loss")
    score_weight: float = Field(
        0.5, ge=0, description="segmentation: weight of a BCE on the crop score (top-k logits)"
    )
    workers: int = Field(1, ge=0, le=64, description="data-loader worker processes")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, le=256, description="torch CPU threads")
    seed: int = 0


class TrainConfig(_Strict):
    """A whole training run."""

    name: str = Field(min_length=1, max_length=100)
    half_storage: bool = Field(
        False, description="store the bundle's weights as float16 (half the size, f32 compute)"
    )
    output: Path = Field(description="run folder: checkpoints, metrics.csv, bundle")
    cache: Path | None = Field(
        None, description="face-crop cache folder, shareable between recipes (default OUTPUT/cache)"
    )
    spec: ModelSpec = Field(default_factory=ModelSpec)
    data: list[DataSource] = Field(min_length=1)
    validation: Validation = Field(default_factory=Validation)
    synthesis: Synthesis = Field(default_factory=Synthesis)
    optimisation: Optimisation = Field(default_factory=Optimisation)

    @model_validator(mode="after")
    def _something_to_learn(self) -> TrainConfig:
        s = self.synthesis
        has_pairs = any(d.layout != "real" for d in self.data)
        if s.real <= 0:
            raise ValueError("synthesis.real must be positive: the model must see real faces")
        if s.self_blend + s.cross_blend + (s.pair_fake if has_pairs else 0) <= 0:
            raise ValueError("no fakes to learn from: enable self_blend/cross_blend or add pairs")
        return self


def load_config(path: Path) -> TrainConfig:
    """Read a YAML config; relative paths are resolved against the file's folder."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read training config {path}: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{path} is not a valid training config:\n{error}") from error
    base = Path(path).resolve().parent
    config.output = base / config.output
    if config.cache is not None:
        config.cache = base / config.cache
    for source in config.data:
        source.path = base / source.path
        if not source.path.exists():
            raise ConfigError(f"{path}: data folder {source.path} does not exist")
    return config
