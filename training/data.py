"""From data folders to training samples: cached face crops, splits and synthesis.

The first run decodes every video once: real faces go into one shard set (with their
landmarks), fake frames of real/fake pairs with their difference masks into another.
Later runs with the same inputs and settings reuse the shards (see
:func:`fakewatch.training.shards.cache_key`).

Each training sample is drawn fresh from a seed and its index: a real crop as it is,
the crop blended with itself, another real face swapped in, or a real fake frame; then
the same augmentation (compression, resizing, blur, noise, colour, geometry) is
applied to every kind, so that artefacts of the pipeline never separate the classes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from fakewatch.engines.crop import crop_face
from fakewatch.engines.faces import FaceDetector
from fakewatch.engines.media import is_video, iter_frames, probe_video
from fakewatch.engines.spec import ModelSpec
from fakewatch.training.augment import PairTransform, train_transform
from fakewatch.training.blend import alignment_error, cross_blend, self_blend
from fakewatch.training.config import DataSource, Synthesis, TrainConfig, Validation
from fakewatch.training.datasets import (
    DatasetIndex,
    read_dfdc,
    read_ffpp,
    read_pairs_folder,
    read_real_folder,
)
from fakewatch.training.diffmask import DiffMaskConfig, PairStats, iter_pair_samples
from fakewatch.training.loop import Sample, ValidationSet
from fakewatch.training.shards import SampleMeta, ShardSet, ShardWriter, cache_key

log = logging.getLogger(__name__)

AUGMENTATION_LEVELS = 4
MAX_POSE_ERROR = 0.12  # landmark misfit above which a cross-identity swap looks absurd

READERS: dict[str, Callable[[DataSource], DatasetIndex]] = {
    "real": lambda s: read_real_folder(s.path),
    "ffpp": lambda s: read_ffpp(s.path, s.compression),
    "dfdc": lambda s: read_dfdc(s.path),
    "pairs": lambda s: read_pairs_folder(s.path),
}


@dataclass
class SourceData:
    """One configured folder: what its reader found and how to sample it."""

    source: DataSource
    index: DatasetIndex


def read_sources(config: TrainConfig) -> list[SourceData]:
    return [SourceData(source, READERS[source.layout](source)) for source in config.data]


def _sampling(sources: list[SourceData]) -> dict[str, object]:
    """The frame sampling of every source: part of what a cache's content depends on."""
    return {"sampling": [(s.source.every, s.source.max_frames_per_video) for s in sources]}


def build_real_cache(
    sources: list[SourceData], spec: ModelSpec, detector: FaceDetector, folder: Path, progress: bool
) -> ShardSet:
    """Every face of every real image and sampled video frame, with landmarks."""
    from tqdm import tqdm

    media = [(s.source, r) for s in sources for r in s.index.reals]
    key = cache_key(
        [r.path for _, r in media],
        spec,
        detector=detector,
        extra=_sampling(sources),
    )
    if ShardSet.is_current(folder, key):
        return ShardSet.open(folder, key)
    with ShardWriter(folder, key=key) as writer:
        for source, real in tqdm(media, desc="real faces", disable=not progress, unit="file"):
            frames_total = probe_video(real.path).frames if is_video(real.path) else 0
            for frame in iter_frames(real.path, source.every, source.max_frames_per_video):
                for face in detector.detect(frame.image):
                    crop = crop_face(frame.image, face.box, spec.input_size, spec.crop_margin)
                    landmarks = None if face.landmarks is None else crop.to_crop(face.landmarks)
                    meta = SampleMeta(
                        kind="real",
                        source=real.source,
                        identity=real.identity,
                        media=str(real.path),
                        frame_index=frame.index,
                        split=real.split,
                        landmarks=None if landmarks is None else landmarks.round(2).tolist(),
                        position=frame.index / frames_total if frames_total else None,
                    )
                    writer.add(crop.image, None, meta)
    return ShardSet.open(folder, key)


def build_pair_cache(
    sources: list[SourceData], spec: ModelSpec, detector: FaceDetector, folder: Path, progress: bool
) -> tuple[ShardSet, PairStats]:
    """Fake frames of every real/fake pair with their difference (or official) masks."""
    from tqdm import tqdm

    pairs = [(s.source, p) for s in sources for p in s.index.pairs]
    mask_config = DiffMaskConfig()
    key = cache_key(
        [p.fake for _, p in pairs] + [p.real for _, p in pairs],
        spec,
        mask_config,
        detector,
        extra=_sampling(sources),
    )
    stats = PairStats()
    if ShardSet.is_current(folder, key):
        return ShardSet.open(folder, key), stats
    with ShardWriter(folder, key=key) as writer:
        for source, pair in tqdm(pairs, desc="fake frames", disable=not progress, unit="pair"):
            frames_total = probe_video(pair.fake).frames
            samples = iter_pair_samples(pair, spec, detector, source.every, mask_config, stats)
            for count, sample in enumerate(samples):
                if count >= source.max_frames_per_video:
                    break
                meta = SampleMeta(
                    kind="fake",
                    source=pair.source,
                    identity=pair.identity,
                    media=str(pair.fake),
                    frame_index=sample.frame_index,
                    method=pair.method,
                    split=pair.split,
                    position=sample.frame_index / frames_total if frames_total else None,
                )
                writer.add(sample.fake_crop, sample.mask, meta)
    log.info("pair frames: %s", stats.as_dict())
    return ShardSet.open(folder, key), stats


def is_validation(meta: SampleMeta, validation: Validation) -> bool:
    """Held-out sources and identities, the dataset's own val/test split, and the last
    ``time_fraction`` of every other video."""
    if meta.source in validation.holdout_sources or meta.identity in validation.holdout_identities:
        return True
    if meta.split in ("val", "test"):
        return True
    return meta.position is not None and meta.position >= 1 - validation.time_fraction


def _landmarks(meta: SampleMeta) -> np.ndarray | None:
    return None if meta.landmarks is None else np.asarray(meta.landmarks, dtype=np.float32)


class SyntheticFaces(Dataset[Sample]):
    """Training samples made on the fly, reproducible from ``seed`` and the index."""

    def __init__(
        self,
        reals: ShardSet,
        real_indices: list[int],
        fakes: ShardSet | None,
        fake_indices: list[int],
        synthesis: Synthesis,
        size: int,
        seed: int,
        length: int,
    ) -> None:
        if not real_indices:
            raise ValueError("no real faces are left for training after the validation split")
        self.reals, self.real_indices = reals, real_indices
        self.fakes, self.fake_indices = fakes, fake_indices
        self.identities = [reals.metas[i].identity for i in real_indices]
        kinds = {
            "real": synthesis.real,
            "self_blend": synthesis.self_blend,
            "cross_blend": synthesis.cross_blend if len(set(self.identities)) > 1 else 0.0,
            "pair_fake": synthesis.pair_fake if fake_indices else 0.0,
        }
        total = sum(kinds.values())
        self.kinds = list(kinds)
        self.weights = np.array([kinds[k] / total for k in self.kinds])
        self.seed, self.length = seed, length
        # Augmentation ramps up over the first half of training: subtle blend artefacts
        # are learned first on clean crops, then kept under compression and resizing.
        self.transforms: list[PairTransform] = [
            train_transform(size, seed, synthesis.augmentation * level / AUGMENTATION_LEVELS)
            for level in range(AUGMENTATION_LEVELS + 1)
        ]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        rng = np.random.default_rng([self.seed, index])
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.weights))]
        image, mask = self.make(kind, rng)
        level = min(AUGMENTATION_LEVELS, int(AUGMENTATION_LEVELS * 2 * index / self.length) + 1)
        transform = self.transforms[level]
        transform.reseed(int(rng.integers(2**31)))
        image, mask = transform(image, mask)
        target = (mask.astype(np.float32) / (255.0 if mask.dtype == np.uint8 else 1.0)).clip(0, 1)
        label = float(kind != "real" and bool(target.max() > 0))
        return np.ascontiguousarray(image), target, label

    def make(self, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One un-augmented sample of ``kind``: crop and mask (float 0..1)."""
        if kind == "pair_fake" and self.fakes is not None:
            crop, mask, _ = self.fakes[self.fake_indices[int(rng.integers(len(self.fake_indices)))]]
            return crop, (mask > 0).astype(np.float32)
        position = int(rng.integers(len(self.real_indices)))
        crop, _, meta = self.reals[self.real_indices[position]]
        if kind == "real":
            return crop, np.zeros(crop.shape[:2], dtype=np.float32)
        if kind == "self_blend":
            result = self_blend(crop, _landmarks(meta), rng)
            return result.image, result.mask
        other = self._other_identity(position, rng)
        source, _, source_meta = self.reals[self.real_indices[other]]
        result = cross_blend(crop, _landmarks(meta), source, _landmarks(source_meta), rng)
        return result.image, result.mask

    def _other_identity(self, position: int, rng: np.random.Generator) -> int:
        """Another person whose pose is close enough for a believable swap."""
        identity = self.identities[position]
        target = _landmarks(self.reals.metas[self.real_indices[position]])
        fallback = None
        for _ in range(30):
            other = int(rng.integers(len(self.real_indices)))
            if self.identities[other] == identity:
                continue
            fallback = other if fallback is None else fallback
            source = _landmarks(self.reals.metas[self.real_indices[other]])
            if target is None or source is None or alignment_error(target, source) < MAX_POSE_ERROR:
                return other
        return fallback if fallback is not None else (position + 1) % len(self.real_indices)


def validation_set(
    reals: ShardSet,
    real_indices: list[int],
    fakes: ShardSet | None,
    fake_indices: list[int],
    validation: Validation,
    seed: int,
    limit: int = 600,
) -> ValidationSet:
    """Fixed samples: held-out real crops, pseudo-fakes made from them, real fakes."""
    rng = np.random.default_rng([seed, 7])
    crops: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    labels: list[float] = []
    sources: list[str] = []
    chosen_reals = sorted(
        rng.permutation(real_indices)[: limit // (2 + validation.synthetic_per_real)]
    )
    for position, i in enumerate(chosen_reals):
        crop, _, meta = reals[int(i)]
        crops.append(crop)
        masks.append(np.zeros(crop.shape[:2], dtype=np.float32))
        labels.append(0.0)
        sources.append(meta.source)
        for n in range(validation.synthetic_per_real):
            sample_rng = np.random.default_rng([seed, int(i), n])
            if n % 2 == 0 or len(chosen_reals) < 2:
                blend = self_blend(crop, _landmarks(meta), sample_rng)
            else:
                j = int(chosen_reals[(position + 1) % len(chosen_reals)])
                source, _, source_meta = reals[j]
                blend = cross_blend(
                    crop, _landmarks(meta), source, _landmarks(source_meta), sample_rng
                )
            crops.append(blend.image)
            masks.append((blend.mask > 0.1).astype(np.float32))
            labels.append(1.0)
            sources.append(f"{meta.source}/blend")
    if fakes is not None and fake_indices:
        room = max(0, limit - len(crops))
        for i in sorted(rng.permutation(fake_indices)[:room]):
            crop, mask, meta = fakes[int(i)]
            crops.append(crop)
            masks.append((mask > 0).astype(np.float32))
            labels.append(1.0)
            sources.append(f"{meta.source}/{meta.method}")
    if not crops:
        raise ValueError("the validation split is empty: hold out a source or set time_fraction")
    return ValidationSet(
        np.stack(crops), np.stack(masks), np.asarray(labels, dtype=np.float32), sources
    )


@dataclass
class PreparedData:
    train: SyntheticFaces
    validation: ValidationSet
    summary: dict[str, object]


def prepare(config: TrainConfig, detector: FaceDetector, progress: bool = True) -> PreparedData:
    """Read, cache, split and wrap the configured data."""
    sources = read_sources(config)
    cache = config.cache or config.output / "cache"
    reals = build_real_cache(sources, config.spec, detector, cache / "reals", progress)
    fakes, pair_stats = None, None
    if any(s.index.pairs for s in sources):
        fakes, pair_stats = build_pair_cache(
            sources, config.spec, detector, cache / "pairs", progress
        )
    v = config.validation
    real_val = [i for i, m in enumerate(reals.metas) if is_validation(m, v)]
    real_train = [i for i, m in enumerate(reals.metas) if not is_validation(m, v)]
    fake_val = (
        [] if fakes is None else [i for i, m in enumerate(fakes.metas) if is_validation(m, v)]
    )
    fake_train = (
        [] if fakes is None else [i for i, m in enumerate(fakes.metas) if not is_validation(m, v)]
    )
    o = config.optimisation
    train = SyntheticFaces(
        reals,
        real_train,
        fakes,
        fake_train,
        config.synthesis,
        config.spec.input_size,
        o.seed,
        length=o.epochs * o.steps_per_epoch * o.batch_size,
    )
    validation = validation_set(reals, real_val, fakes, fake_val, v, o.seed)
    summary: dict[str, object] = {
        "real_faces": {"train": len(real_train), "validation": len(real_val)},
        "fake_frames": {"train": len(fake_train), "validation": len(fake_val)},
        "train_sources": sorted({reals.metas[i].source for i in real_train}),
        "validation_sources": sorted(set(validation.sources)),
        "validation_samples": len(validation),
        "pair_masks": None if pair_stats is None else pair_stats.as_dict(),
    }
    return PreparedData(train, validation, summary)


__all__ = ["PreparedData", "SyntheticFaces", "prepare", "validation_set"]
