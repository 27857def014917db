"""The engine bundle: a folder that is data, never code.

::

    BUNDLE/
      manifest.json          spec, preprocessing, output meaning, thresholds,
                             provenance, precision checks, sha256 of every file
      weights.safetensors    the network's weights
      model.onnx             the deployed graph (uint8 crops in, probabilities out)
      ...                    optional compiled artefacts (static int8 ONNX, TensorRT)

:meth:`EngineBundle.load` refuses a bundle whose files do not match the hashes in its
manifest, a file missing, or a path that points outside the folder. Weights are
safetensors, graphs are ONNX and a TensorRT engine is the plan TensorRT serialises:
nothing in a bundle is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fakewatch.engines.baseline import BaselineSettings
from fakewatch.engines.defaults import installed_version
from fakewatch.engines.scoring import (
    DEFAULT_AREA_THRESHOLD,
    DEFAULT_RING,
    DEFAULT_TOP_FRACTION,
    score_masks,
)
from fakewatch.engines.spec import ModelSpec

MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 1_000_000

ArtifactRole = Literal["weights", "onnx", "onnx_int8", "tensorrt"]


class BundleError(ValueError):
    """A bundle that cannot be used: malformed, incomplete or tampered with."""


class Artifact(BaseModel):
    """One file of the bundle, with the hash it must have."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="path relative to the bundle folder, '/'-separated")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    notes: dict[str, str] = Field(default_factory=dict, description="e.g. device, versions")

    @field_validator("path")
    @classmethod
    def _inside_bundle(cls, value: str) -> str:
        pure = PurePosixPath(value)
        if pure.is_absolute() or ".." in pure.parts or "\\" in value or not pure.parts:
            raise ValueError(f"artifact path {value!r} must be relative and inside the bundle")
        return value


class Threshold(BaseModel):
    """A decision threshold on the frame score and how it was chosen."""

    model_config = ConfigDict(extra="forbid")

    value: float = Field(ge=0.0, le=1.0)
    false_positive_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="FPR on real calibration frames at this value"
    )
    chosen_on: str = Field("", description="the real frames it was calibrated on")


class Scoring(BaseModel):
    """How a mask becomes a frame score (see fakewatch.engines.scoring)."""

    model_config = ConfigDict(extra="forbid")

    top_fraction: float = Field(DEFAULT_TOP_FRACTION, gt=0.0, le=1.0)
    area_threshold: float = Field(DEFAULT_AREA_THRESHOLD, gt=0.0, lt=1.0)
    rule: Literal["top", "contrast"] = Field(
        "top", description="top: the face's top fraction; contrast: minus the ring's"
    )
    ring: tuple[float, float] = Field(
        DEFAULT_RING, description="the contrast ring's inner and outer radius (face radii)"
    )

    @field_validator("ring")
    @classmethod
    def _ordered_ring(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 1.0 <= value[0] < value[1] <= 2.0:
            raise ValueError(f"ring must satisfy 1 <= inner < outer <= 2, got {value}")
        return value

    def score(self, masks: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
        """Scores and areas of masks ``(N, S, S)`` by this bundle's rule."""
        return score_masks(
            masks, margin, self.top_fraction, self.area_threshold, self.rule, self.ring
        )


class MeasuredOn(BaseModel):
    """The machine and runtime versions a parity check ran on.

    ``cpu_kind`` is :func:`fakewatch.engines.machine.cpu_kind`: the instruction sets that
    decide which kernels a runtime picks at reduced precision. ``gpu_capability`` is the
    CUDA compute capability (``"9.0"``) for checks run on a GPU.
    """

    model_config = ConfigDict(extra="forbid")

    cpu: str = Field(description="CPU model name")
    cpu_kind: list[str] = Field(description="the instruction sets that matter, sorted")
    gpu: str | None = Field(None, description="GPU model name, for checks run on a GPU")
    gpu_capability: str | None = Field(None, description="CUDA compute capability")
    runtimes: dict[str, str] = Field(
        default_factory=dict, description="distribution name to installed version"
    )


class PrecisionCheck(BaseModel):
    """Parity of a reduced-precision engine with f32 on face crops held apart from any
    int8 calibration.

    Checks written before ``measured_on`` and ``held_out`` existed still load, but
    ``engine.precision: auto`` does not trust them (see
    :mod:`fakewatch.engines.auto_precision`).
    """

    model_config = ConfigDict(extra="forbid")

    backend: str
    precision: str
    device: str = Field("cpu", description="cpu or cuda")
    max_abs_diff: float = Field(ge=0.0, description="largest mask probability difference")
    mean_abs_diff: float = Field(ge=0.0, description="mean mask probability difference")
    score_max_abs_diff: float = Field(ge=0.0, description="largest frame-score difference")
    tolerance: float = Field(gt=0.0, description="limit on score_max_abs_diff")
    mean_tolerance: float | None = Field(
        None, gt=0.0, description="limit on mean_abs_diff (none in older checks)"
    )
    calibration: str = Field(description="what the check crops were")
    crops: int = Field(ge=1)
    crops_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the check crops' pixels"
    )
    crops_media: list[str] = Field(
        default_factory=list, description="file names the check crops were cut from"
    )
    held_out: bool = Field(
        False, description="true when none of the check crops calibrated an int8 twin"
    )
    measured_on: MeasuredOn | None = None
    passed: bool


class Provenance(BaseModel):
    """Where the weights came from."""

    model_config = ConfigDict(extra="forbid")

    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    fakewatch_version: str = Field(default_factory=installed_version)
    data: list[str] = Field(default_factory=list)
    recipe: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    initialisation: dict[str, Any] = Field(
        default_factory=dict, description="where the encoder's starting weights came from"
    )


class Manifest(BaseModel):
    """The contents of ``manifest.json``."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=100)
    spec: ModelSpec
    input: str = Field(
        "uint8 RGB face crops, shape (N, S, S, 3), S = spec.input_size, cut by "
        "fakewatch.engines.crop.crop_face with spec.crop_margin"
    )
    output: str = Field(
        "float32 (N, S, S): per-pixel probability that the pixel is manipulated "
        "(sigmoid applied inside the graph)"
    )
    scoring: Scoring = Field(default_factory=Scoring)
    thresholds: dict[str, Threshold] = Field(
        default_factory=dict, description="'suspect' enters an alert, 'clear' leaves it"
    )
    baseline: BaselineSettings | None = Field(
        None,
        description="with it, a live stream also alerts when its window score rises well "
        "above the stream's own usual level (fakewatch.engines.baseline)",
    )
    provenance: Provenance = Field(default_factory=Provenance)
    precision_checks: list[PrecisionCheck] = Field(default_factory=list)
    artifacts: dict[ArtifactRole, Artifact]

    def precision_check(
        self, backend: str, precision: str, device: str | None = None
    ) -> PrecisionCheck | None:
        """The recorded parity check for ``backend`` at ``precision`` (on ``device``,
        ``cpu`` or ``cuda``, when given), if any."""
        for check in reversed(self.precision_checks):
            same = check.backend == backend and check.precision == precision
            if same and (device is None or check.device == device):
                return check
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_artifact(folder: Path, relative: str, **notes: str) -> Artifact:
    """Hash a file already written inside ``folder`` into a manifest entry."""
    path = folder / relative
    return Artifact(path=relative, sha256=sha256_file(path), bytes=path.stat().st_size, notes=notes)


class EngineBundle:
    """A verified bundle folder. Construct with :meth:`load`."""

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.folder = folder
        self.manifest = manifest

    @property
    def spec(self) -> ModelSpec:
        return self.manifest.spec

    @property
    def model_sha256(self) -> str:
        """The weights' sha256: identifies the model in metrics and reports."""
        return self.manifest.artifacts["weights"].sha256

    def path(self, role: ArtifactRole) -> Path:
        """Absolute path of an artefact; :class:`BundleError` if the bundle has none."""
        artifact = self.manifest.artifacts.get(role)
        if artifact is None:
            built = ", ".join(sorted(self.manifest.artifacts))
            raise BundleError(
                f"bundle {self.folder} has no {role!r} artefact (it has: {built}); "
                f"build it with `fakewatch engine build {self.folder} --backend ...`"
            )
        return self.folder / artifact.path

    @classmethod
    def load(cls, folder: Path | str) -> EngineBundle:
        """Read and verify a bundle: manifest schema, paths, sizes and sha256 of every file."""
        folder = Path(folder).resolve()
        manifest_path = folder / MANIFEST_NAME
        if not manifest_path.is_file():
            raise BundleError(f"{folder} is not an engine bundle: {MANIFEST_NAME} is missing")
        size = manifest_path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{manifest_path} is {size} bytes; a manifest is at most 1 MB")
        try:
            manifest = Manifest.model_validate_json(manifest_path.read_bytes())
        except ValidationError as error:
            raise BundleError(f"{manifest_path} is not a valid manifest:\n{error}") from error
        for role in ("weights", "onnx"):
            if role not in manifest.artifacts:
                raise BundleError(f"{manifest_path} lists no {role!r} artefact")
        for role, artifact in manifest.artifacts.items():
            _verify(folder, role, artifact)
        return cls(folder, manifest)

    def save_manifest(self) -> None:
        """Rewrite ``manifest.json`` (after adding an artefact or a check)."""
        write_manifest(self.folder, self.manifest)


def write_manifest(folder: Path, manifest: Manifest) -> None:
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"
    tmp = folder / (MANIFEST_NAME + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(folder / MANIFEST_NAME)


def _verify(folder: Path, role: str, artifact: Artifact) -> None:
    path = (folder / artifact.path).resolve()
    if not path.is_relative_to(folder):
        raise BundleError(f"artefact {role!r} ({artifact.path}) resolves outside {folder}")
    if not path.is_file():
        raise BundleError(f"bundle {folder} is incomplete: {artifact.path} ({role}) is missing")
    size = path.stat().st_size
    if size != artifact.bytes:
        raise BundleError(
            f"{artifact.path} in {folder} is {size} bytes but the manifest says "
            f"{artifact.bytes}: the file was changed after the bundle was built; "
            "rebuild the bundle or fetch it again"
        )
    actual = sha256_file(path)
    if actual != artifact.sha256:
        raise BundleError(
            f"{artifact.path} in {folder} has sha256 {actual[:16]}… but the manifest says "
            f"{artifact.sha256[:16]}…: the file was changed after the bundle was built; "
            "rebuild the bundle or fetch it again"
        )
