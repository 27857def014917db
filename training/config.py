"""The training recipe: one YAML file validated by pydantic (``fakewatch train CONFIG``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

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
        "dfdc: DFDC parts; pairs: real/X + fake/Y aligned pairs"
    )
    naming: Literal["source__identity", "owner__repo__file"] = Field(
        "source__identity",
        description="real only: file names SOURCE__IDENTITY__REST, or OWNER__REPO__FILE "
        "(source = owner, identity = the file's trailing number, else its name)",
    )
    method: str | None = Field(
        None, description="pairs only: the manipulation's name (default live-swap)"
    )
    compression: str = Field("c23", description="ffpp only: raw, c23 or c40")
    every: int = Field(5, ge=1, le=300, description="use every n-th video frame")
    max_frames_per_video: int = Field(400, ge=1, le=100_000)


class Split(_Strict):
    """Which media validate and which test, by whole sources or identities; the rest
    trains. Validation picks the epoch and calibrates the thresholds; the test split is
    only reported and chooses nothing."""

    validation_sources: list[str] = Field(
        default_factory=list, description="sources (file prefixes / datasets) that validate"
    )
    validation_identities: list[str] = Field(
        default_factory=list, description="identities (people / video ids) that validate"
    )
    test_sources: list[str] = Field(
        default_factory=list, description="sources kept for the test report only"
    )
    test_identities: list[str] = Field(
        default_factory=list, description="identities kept for the test report only"
    )
    time_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="last part of every training video also validates"
    )
    synthetic_per_real: int = Field(
        2, ge=0, le=10, description="fixed pseudo-fakes made per validation real crop"
    )

    @model_validator(mode="after")
    def _disjoint(self) -> Split:
        for kind in ("sources", "identities"):
            both = set(getattr(self, f"validation_{kind}")) & set(getattr(self, f"test_{kind}"))
            if both:
                raise ValueError(f"{sorted(both)} are both validation and test {kind}")
        return self


class Initialisation(_Strict):
    """Where the encoder's weights start and how gently they are fine-tuned."""

    encoder: str = Field(
        "none",
        description="pretrained encoder weights (`fakewatch weights list`), or none for a "
        "random start",
    )
    encoder_lr_scale: float = Field(
        1.0, gt=0, le=1, description="encoder learning rate as a fraction of the decoder's"
    )
    freeze_encoder_bn: bool = Field(
        False, description="keep the encoder's BatchNorm statistics as the weights came"
    )
    weights_cache: Path | None = Field(
        None, description="where converted weights are cached (default .cache/weights)"
    )


class Synthesis(_Strict):
    """What each training sample is: weights, normalised over the kinds available."""

    real: float = Field(0.45, ge=0.0, description="a real crop as it is (all-zero mask)")
    self_blend: float = Field(0.3, ge=0.0, description="a real face blended with itself")
    cross_blend: float = Field(0.15, ge=0.0, description="another real face swapped in")
    pair_fake: float = Field(
        0.1, ge=0.0, description="a fake frame of a real/fake pair with its difference mask"
    )
    paired: bool = Field(
        False,
        description="every real crop is followed in its batch by a fake made from it (SBI); "
        "`real` is then ignored and the fakes are drawn by the other weights",
    )
    landmark_hull: bool = Field(
        False, description="blend masks follow the face mesh's outline, not five points"
    )
    swap_target: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="chance that a self-blend's colour and sharpness change goes to the "
        "surroundings instead of the face (SBI's source-target transform)",
    )
    augmentation: float = Field(
        1.0, ge=0.0, le=1.0, description="strength of compression/resize/blur/colour augmentation"
    )


class Reviews(_Strict):
    """Alerts people reviewed on a deployment's own cameras (``fakewatch export-reviews``):
    false positives train as hard reals, confirmed alerts as fakes with their masks."""

    folders: list[Path] = Field(
        min_length=1, description="folders `fakewatch export-reviews` wrote (recipe-relative)"
    )
    weight: float = Field(
        0.1,
        gt=0.0,
        le=10.0,
        description="how often a training sample is a reviewed crop, as a weight beside "
        "synthesis's (real, self_blend, ...)",
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
    boundary_weight: float = Field(
        1.0, ge=0, description="with spec.boundary_head: weight of the blend-boundary BCE"
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
    init: Initialisation = Field(default_factory=Initialisation)
    data_root: Path | None = Field(
        None,
        description="folder the data paths are relative to (default: the recipe's folder); "
        "the environment variable FAKEWATCH_DATA_ROOT overrides it",
    )
    data: list[DataSource] = Field(min_length=1)
    test_data: list[DataSource] = Field(
        default_factory=list,
        description="folders read only for the test report, never trained or validated on",
    )
    reviews: Reviews | None = Field(
        None, description="reviewed alerts of a deployment folded into training"
    )
    split: Split = Field(default_factory=Split)
    synthesis: Synthesis = Field(default_factory=Synthesis)
    optimisation: Optimisation = Field(default_factory=Optimisation)

    @model_validator(mode="after")
    def _something_to_learn(self) -> TrainConfig:
        s = self.synthesis
        has_pairs = any(d.layout != "real" for d in self.data)
        if s.real <= 0 and not s.paired:
            raise ValueError("synthesis.real must be positive: the model must see real faces")
        if s.self_blend + s.cross_blend + (s.pair_fake if has_pairs else 0) <= 0:
            raise ValueError("no fakes to learn from: enable self_blend/cross_blend or add pairs")
        if s.paired and self.optimisation.batch_size % 2:
            raise ValueError("synthesis.paired needs an even optimisation.batch_size")
        return self


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Set ``KEY.SUBKEY=VALUE`` (the value read as YAML) in a raw config mapping."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {assignment!r} is not KEY=VALUE (e.g. init.encoder=none)")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {assignment!r}: the value is not YAML: {error}") from error
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {assignment!r}: {part} is not a section")
        node = child
    node[last] = value


def load_config(path: Path, check_data: bool = True, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config, with ``KEY.SUBKEY=VALUE`` ``overrides`` applied first.

    ``output``, ``cache`` and ``init.weights_cache`` are relative to the file's folder;
    data paths to ``data_root`` (itself relative to the file's folder), which the
    environment variable ``FAKEWATCH_DATA_ROOT`` overrides. With ``check_data`` every
    data folder must exist.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read training config {path}: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{path} is not a valid training config:\n{error}") from error
    base = Path(path).resolve().parent
    config.output = base / config.output
    if config.cache is not None:
        config.cache = base / config.cache
    if config.init.weights_cache is not None:
        config.init.weights_cache = base / config.init.weights_cache
    if config.reviews is not None:
        config.reviews.folders = [base / folder for folder in config.reviews.folders]
        missing = [str(f) for f in config.reviews.folders if not f.is_dir()]
        if check_data and missing:
            raise ConfigError(f"{path}: review folders {missing} do not exist")
    override = os.environ.get("FAKEWATCH_DATA_ROOT")
    root = Path(override) if override else base / (config.data_root or ".")
    config.data_root = root
    for source in [*config.data, *config.test_data]:
        source.path = root / source.path
        if check_data and not source.path.exists():
            raise ConfigError(
                f"{path}: data folder {source.path} does not exist (data root {root}; set "
                "FAKEWATCH_DATA_ROOT to the folder that holds the data)"
            )
    return config
