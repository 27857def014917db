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
from collections import Counter
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
from fakewatch.training.blend import BlendConfig, alignment_error, cross_blend, self_blend
from fakewatch.training.config import DataSource, Split, Synthesis, TrainConfig
from fakewatch.training.datasets import (
    DatasetIndex,
    read_dfdc,
    read_ffpp,
    read_pairs_folder,
    read_real_folder,
)
from fakewatch.training.diffmask import DiffMaskConfig, PairStats, iter_pair_samples
from fakewatch.training.landmarks import MODEL_SHA256 as MESH_SHA256
from fakewatch.training.landmarks import FaceMesh, fetch_model
from fakewatch.training.loop import Sample, ValidationSet
from fakewatch.training.reviews import ReviewedCrop, read_reviews
from fakewatch.training.shards import SampleMeta, ShardSet, ShardWriter, cache_key

log = logging.getLogger(__name__)

AUGMENTATION_LEVELS = 4
MAX_POSE_ERROR = 0.12  # landmark misfit above which a cross-identity swap looks absurd

READERS: dict[str, Callable[[DataSource], DatasetIndex]] = {
    "real": lambda s: read_real_folder(s.path, s.naming),
    "ffpp": lambda s: read_ffpp(s.path, s.compression),
    "dfdc": lambda s: read_dfdc(s.path),
    "pairs": lambda s: read_pairs_folder(s.path, method=s.method or "live-swap"),
}


@dataclass
class SourceData:
    """One configured folder: what its reader found and how to sample it."""

    source: DataSource
    index: DatasetIndex


def read_sources(config: TrainConfig) -> list[SourceData]:
    return [SourceData(source, READERS[source.layout](source)) for source in config.data]


def read_index(sources: list[DataSource]) -> DatasetIndex:
    """Everything the readers find in ``sources``, in one index."""
    index = DatasetIndex([], [])
    for source in sources:
        index = index.merge(READERS[source.layout](source))
    return index


def _sampling(sources: list[SourceData]) -> dict[str, object]:
    """The frame sampling of every source: part of what a cache's content depends on."""
    return {"sampling": [(s.source.every, s.source.max_frames_per_video) for s in sources]}


def build_real_cache(
    sources: list[SourceData],
    spec: ModelSpec,
    detector: FaceDetector,
    folder: Path,
    progress: bool,
    mesh: FaceMesh | None = None,
) -> ShardSet:
    """Every face of every real image and sampled video frame, with landmarks, and with
    the face mesh's outline when ``mesh`` is given."""
    from tqdm import tqdm

    media = [(s.source, r) for s in sources for r in s.index.reals]
    extra = _sampling(sources) | {"outline": None if mesh is None else MESH_SHA256}
    key = cache_key([r.path for _, r in media], spec, detector=detector, extra=extra)
    if ShardSet.is_current(folder, key):
        return ShardSet.open(folder, key)
    with ShardWriter(folder, key=key) as writer:
        for source, real in tqdm(media, desc="real faces", disable=not progress, unit="file"):
            frames_total = probe_video(real.path).frames if is_video(real.path) else 0
            for frame in iter_frames(real.path, source.every, source.max_frames_per_video):
                for face in detector.detect(frame.image):
                    crop = crop_face(frame.image, face.box, spec.input_size, spec.crop_margin)
                    landmarks = None if face.landmarks is None else crop.to_crop(face.landmarks)
                    outline = None
                    if mesh is not None and landmarks is not None:
                        outline = mesh.outline(crop.image, landmarks, spec.crop_margin)
                    meta = SampleMeta(
                        kind="real",
                        source=real.source,
                        identity=real.identity,
                        media=str(real.path),
                        frame_index=frame.index,
                        split=real.split,
                        landmarks=None if landmarks is None else landmarks.round(2).tolist(),
                        outline=None if outline is None else outline.round(1).tolist(),
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


def _listed(meta_source: str, identity: str, sources: list[str], identities: list[str]) -> bool:
    """Whether a medium's source, identity or ``source/identity`` is listed."""
    return (
        meta_source in sources
        or identity in identities
        or f"{meta_source}/{identity}" in identities
    )


def split_of(source: str, identity: str, split: Split, dataset_split: str | None = None) -> str:
    """ "train", "validation" or "test" for a medium of ``source`` and ``identity``.

    The recipe's test sources and identities come first, then its validation ones; a
    dataset's own "test" split is test and its "val" split validation.
    """
    if _listed(source, identity, split.test_sources, split.test_identities):
        return "test"
    if _listed(source, identity, split.validation_sources, split.validation_identities):
        return "validation"
    if dataset_split == "test":
        return "test"
    if dataset_split == "val":
        return "validation"
    return "train"


def sample_split(meta: SampleMeta, split: Split) -> str:
    """The split of a cached sample; the last ``time_fraction`` of a training video also
    validates."""
    part = split_of(meta.source, meta.identity, split, meta.split)
    if part == "train" and meta.position is not None and meta.position >= 1 - split.time_fraction:
        return "validation"
    return part


def _landmarks(meta: SampleMeta) -> np.ndarray | None:
    return None if meta.landmarks is None else np.asarray(meta.landmarks, dtype=np.float32)


def _outline(meta: SampleMeta) -> np.ndarray | None:
    return None if meta.outline is None else np.asarray(meta.outline, dtype=np.float32)


class SyntheticFaces(Dataset[Sample]):
    """Training samples made on the fly, reproducible from ``seed`` and the index.

    Real crops are drawn with weight ``1 / sqrt(n)`` for a medium with ``n`` crops, so a
    long video counts more than a photo but not in proportion to its length. With
    ``synthesis.paired`` (SBI), even indices are real crops and each odd index is a fake
    made from the crop before it (a self-blend or a cross-identity swap onto it; a pair
    fake stands alone), and both get the same augmentation: the model sees each face
    with and without the manipulation, everything else equal.

    ``reviewed`` crops (alerts people reviewed, :mod:`fakewatch.training.reviews`) are
    drawn with ``review_weight`` beside the synthesis weights, each with its own mask:
    empty for a false positive (a real), the alert's mask for a confirmed fake.
    """

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
        reviewed: list[ReviewedCrop] | None = None,
        review_weight: float = 0.0,
    ) -> None:
        if not real_indices:
            raise ValueError("no real faces are left for training after the split")
        self.reals, self.real_indices = reals, real_indices
        self.fakes, self.fake_indices = fakes, fake_indices
        metas = reals.metas
        self.identities = [metas[i].identity for i in real_indices]
        per_medium = Counter(metas[i].media for i in real_indices)
        weights = np.array([per_medium[metas[i].media] ** -0.5 for i in real_indices])
        self.real_weights = weights / weights.sum()
        self.paired = synthesis.paired
        self.use_outline = synthesis.landmark_hull
        self.blend_config = BlendConfig(swap_target=synthesis.swap_target)
        kinds = {
            "real": 0.0 if synthesis.paired else synthesis.real,
            "self_blend": synthesis.self_blend,
            "cross_blend": synthesis.cross_blend if len(set(self.identities)) > 1 else 0.0,
            "pair_fake": synthesis.pair_fake if fake_indices else 0.0,
            "reviewed": review_weight if reviewed else 0.0,
        }
        self.reviewed = reviewed or []
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
        if self.paired:
            # Both halves of a pair draw from the pair's generator: the same real crop
            # and the same augmentation; only the odd half is manipulated.
            rng = np.random.default_rng([self.seed, index // 2])
            position = self._draw_real(rng)
            kind = self.kinds[int(rng.choice(len(self.kinds), p=self.weights))]
            augmentation_seed = int(rng.integers(2**31))
            kind = "real" if index % 2 == 0 else kind
        else:
            rng = np.random.default_rng([self.seed, index])
            kind = self.kinds[int(rng.choice(len(self.kinds), p=self.weights))]
            position = self._draw_real(rng)
            augmentation_seed = int(rng.integers(2**31))
        review = self.draw_review(rng) if kind == "reviewed" else None
        image, mask = (review.crop, review.mask) if review else self.make(kind, rng, position)
        level = min(AUGMENTATION_LEVELS, int(AUGMENTATION_LEVELS * 2 * index / self.length) + 1)
        transform = self.transforms[level]
        transform.reseed(augmentation_seed)
        image, mask = transform(image, mask)
        target = (mask.astype(np.float32) / (255.0 if mask.dtype == np.uint8 else 1.0)).clip(0, 1)
        label = float(kind != "real" and bool(target.max() > 0))
        if review is not None:  # a person said which, whatever is left of its mask
            label = review.label
        return np.ascontiguousarray(image), target, label

    def draw_review(self, rng: np.random.Generator) -> ReviewedCrop:
        """One of the reviewed crops."""
        return self.reviewed[int(rng.integers(len(self.reviewed)))]

    def _draw_real(self, rng: np.random.Generator) -> int:
        return int(rng.choice(len(self.real_indices), p=self.real_weights))

    def make(
        self, kind: str, rng: np.random.Generator, position: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One un-augmented sample of ``kind``: crop and mask (float 0..1). ``position``
        picks the real crop (among the training ones) that a blend is made from."""
        if kind == "reviewed":
            review = self.draw_review(rng)
            return review.crop, review.mask
        if kind == "pair_fake" and self.fakes is not None:
            crop, mask, _ = self.fakes[self.fake_indices[int(rng.integers(len(self.fake_indices)))]]
            return crop, (mask > 0).astype(np.float32)
        if position is None:
            position = self._draw_real(rng)
        crop, _, meta = self.reals[self.real_indices[position]]
        if kind == "real":
            return crop, np.zeros(crop.shape[:2], dtype=np.float32)
        if kind == "self_blend":
            outline = _outline(meta) if self.use_outline else None
            result = self_blend(crop, _landmarks(meta), rng, self.blend_config, outline=outline)
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
    split: Split,
    seed: int,
    limit: int = 600,
    use_outline: bool = False,
) -> ValidationSet:
    """Fixed samples: validation real crops, pseudo-fakes made from them, real fakes.

    ``limit // (2 + synthetic_per_real)`` real crops with ``synthetic_per_real``
    pseudo-fakes each (self-blends and cross swaps in turn), then real fakes of pairs up
    to ``limit``.
    """
    rng = np.random.default_rng([seed, 7])
    crops: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    labels: list[float] = []
    sources: list[str] = []
    chosen_reals = sorted(rng.permutation(real_indices)[: limit // (2 + split.synthetic_per_real)])
    for position, i in enumerate(chosen_reals):
        crop, _, meta = reals[int(i)]
        crops.append(crop)
        masks.append(np.zeros(crop.shape[:2], dtype=np.float32))
        labels.append(0.0)
        sources.append(meta.source)
        for n in range(split.synthetic_per_real):
            sample_rng = np.random.default_rng([seed, int(i), n])
            if n % 2 == 0 or len(chosen_reals) < 2:
                outline = _outline(meta) if use_outline else None
                blend = self_blend(crop, _landmarks(meta), sample_rng, outline=outline)
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
        raise ValueError("the validation split is empty: list validation sources or identities")
    return ValidationSet(
        np.stack(crops), np.stack(masks), np.asarray(labels, dtype=np.float32), sources
    )


@dataclass
class PreparedData:
    train: SyntheticFaces
    validation: ValidationSet
    summary: dict[str, object]


def _by_split(shards: ShardSet | None, split: Split) -> dict[str, list[int]]:
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for i, meta in enumerate([] if shards is None else shards.metas):
        parts[sample_split(meta, split)].append(i)
    return parts


def _count_media(shards: ShardSet | None, indices: list[int]) -> dict[str, int]:
    if shards is None:
        return {}
    metas = shards.metas
    return dict(sorted(Counter(metas[i].source for i in indices).items()))


def prepare(config: TrainConfig, detector: FaceDetector, progress: bool = True) -> PreparedData:
    """Read, cache, split and wrap the configured data. Test media are cached like the
    rest (so that the same cache serves every recipe) but never used here."""
    from fakewatch.training.pretrained import DEFAULT_CACHE

    sources = read_sources(config)
    cache = config.cache or config.output / "cache"
    mesh = None
    if config.synthesis.landmark_hull:
        mesh = FaceMesh(fetch_model(config.init.weights_cache or DEFAULT_CACHE))
    folder = cache / ("reals-mesh" if mesh is not None else "reals")
    reals = build_real_cache(sources, config.spec, detector, folder, progress, mesh)
    fakes, pair_stats = None, None
    if any(s.index.pairs for s in sources):
        fakes, pair_stats = build_pair_cache(
            sources, config.spec, detector, cache / "pairs", progress
        )
    real_parts, fake_parts = _by_split(reals, config.split), _by_split(fakes, config.split)
    reviews = config.reviews
    reviewed = read_reviews(reviews.folders, config.spec.input_size) if reviews else []
    o = config.optimisation
    train = SyntheticFaces(
        reals,
        real_parts["train"],
        fakes,
        fake_parts["train"],
        config.synthesis,
        config.spec.input_size,
        o.seed,
        length=o.epochs * o.steps_per_epoch * o.batch_size,
        reviewed=reviewed,
        review_weight=reviews.weight if reviews else 0.0,
    )
    validation = validation_set(
        reals,
        real_parts["validation"],
        fakes,
        fake_parts["validation"],
        config.split,
        o.seed,
        use_outline=config.synthesis.landmark_hull,
    )
    outlines = sum(1 for m in reals.metas if m.outline is not None)
    summary: dict[str, object] = {
        "real_faces": {part: len(ids) for part, ids in real_parts.items()},
        "fake_frames": {part: len(ids) for part, ids in fake_parts.items()},
        "real_faces_by_source": {
            part: _count_media(reals, ids) for part, ids in real_parts.items()
        },
        "fake_frames_by_source": {
            part: _count_media(fakes, ids) for part, ids in fake_parts.items()
        },
        "mesh_outlines": outlines if mesh is not None else None,
        "validation_sources": sorted(set(validation.sources)),
        "validation_samples": len(validation),
        "pair_masks": None if pair_stats is None else pair_stats.as_dict(),
        "reviews": dict(Counter(r.verdict for r in reviewed)) if reviews else None,
    }
    return PreparedData(train, validation, summary)


__all__ = [
    "PreparedData",
    "SyntheticFaces",
    "prepare",
    "sample_split",
    "split_of",
    "validation_set",
]
