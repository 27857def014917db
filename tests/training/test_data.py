"""Caches, splits and on-the-fly samples from real media."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fakewatch.engines.faces import default_face_detector
from fakewatch.engines.spec import ModelSpec
from fakewatch.training.config import DataSource, Split, Synthesis, TrainConfig
from fakewatch.training.data import (
    SyntheticFaces,
    build_real_cache,
    read_sources,
    sample_split,
    split_of,
)
from fakewatch.training.shards import SampleMeta, ShardSet
from tests.support.media import face_clip, write_video

SPEC = ModelSpec(input_size=96, decoder_channels=(32, 16, 16, 8, 8))


@pytest.fixture(scope="module")
def reals(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> ShardSet:
    root = tmp_path_factory.mktemp("reals")
    for i, flip in enumerate((False, True)):
        image = astronaut[:, ::-1] if flip else astronaut
        cv2.imwrite(
            str(root / f"photos__person{i}.jpg"),
            cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
        )
    write_video(root / "clips__drift.mp4", face_clip(astronaut, count=8))
    config = TrainConfig(
        name="t",
        output=root / "run",
        spec=SPEC,
        data=[DataSource(path=root, layout="real", every=2)],
    )
    sources = read_sources(config)
    detector = default_face_detector()
    cache = build_real_cache(sources, SPEC, detector, root / "cache", progress=False)
    again = build_real_cache(sources, SPEC, detector, root / "cache", progress=False)
    assert again.key == cache.key  # reused, not rebuilt
    return cache


def test_cache_holds_every_face_with_landmarks_and_position(reals: ShardSet) -> None:
    metas = reals.metas
    assert len(metas) == 2 + 4
    video = [m for m in metas if m.media.endswith(".mp4")]
    assert [m.position for m in video] == [0.0, 0.25, 0.5, 0.75]
    assert all(m.landmarks is not None and len(m.landmarks) == 5 for m in metas)
    crop, mask, _ = reals[0]
    assert crop.shape == (96, 96, 3) and not mask.any()


def test_samples_are_reproducible_and_cover_every_kind(reals: ShardSet) -> None:
    synthesis = Synthesis(real=1, self_blend=1, cross_blend=1, pair_fake=1)
    data = SyntheticFaces(
        reals, list(range(len(reals))), None, [], synthesis, 96, seed=3, length=100
    )
    assert "pair_fake" in data.kinds and data.weights[data.kinds.index("pair_fake")] == 0
    first = data[7]
    again = data[7]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    labels = [data[i][2] for i in range(40)]
    assert 0.0 in labels and 1.0 in labels
    for i in range(40):
        crop, mask, label = data[i]
        assert crop.dtype == np.uint8 and crop.shape == (96, 96, 3)
        assert mask.dtype == np.float32 and mask.shape == (96, 96)
        assert (label == 1.0) == bool(mask.max() > 0)


def test_paired_samples_are_a_real_crop_and_a_fake_made_from_it(reals: ShardSet) -> None:
    """Even indices are real crops, each odd index a self-blend of the crop before it,
    with the same augmentation: outside the blend the two are the same pixels."""
    synthesis = Synthesis(paired=True, self_blend=1, cross_blend=0, pair_fake=0, augmentation=1)
    data = SyntheticFaces(
        reals, list(range(len(reals))), None, [], synthesis, 96, seed=5, length=64
    )
    for pair in range(6):
        real, real_mask, real_label = data[2 * pair]
        fake, fake_mask, fake_label = data[2 * pair + 1]
        assert real_label == 0.0 and not real_mask.any()
        assert fake_label == 1.0 and fake_mask.max() > 0
        outside = fake_mask == 0
        difference = np.abs(real.astype(np.int16) - fake.astype(np.int16)).max(axis=2)
        # outside the mask only the augmentation's compression differs (JPEG blocks
        # straddle the seam), and far less than inside
        assert np.median(difference[outside]) <= 2
        assert difference[fake_mask > 0.9].mean() > difference[outside].mean()


def test_split_rules() -> None:
    split = Split(
        validation_sources=["visp"],
        validation_identities=["Ewon", "vox/0015"],
        test_sources=["microsoft"],
        test_identities=["Emily"],
        time_fraction=0.25,
    )

    def meta(**kw: object) -> SampleMeta:
        base: dict[str, object] = {
            "kind": "real",
            "source": "s",
            "identity": "i",
            "media": "m",
            "frame_index": 0,
        }
        return SampleMeta(**(base | kw))  # type: ignore[arg-type]

    assert sample_split(meta(source="visp"), split) == "validation"
    assert sample_split(meta(identity="Ewon"), split) == "validation"
    assert sample_split(meta(source="vox", identity="0015"), split) == "validation"
    assert sample_split(meta(source="other", identity="0015"), split) == "train"
    assert sample_split(meta(source="microsoft"), split) == "test"
    assert sample_split(meta(identity="Emily", position=0.9), split) == "test"
    assert sample_split(meta(split="test"), split) == "test"
    assert sample_split(meta(split="val"), split) == "validation"
    assert sample_split(meta(position=0.8), split) == "validation"
    assert sample_split(meta(position=0.7), split) == "train"
    assert sample_split(meta(), split) == "train"
    assert split_of("visp", "x", split) == "validation"


def test_split_refuses_a_source_on_both_sides() -> None:
    with pytest.raises(ValueError, match="both validation and test"):
        Split(validation_sources=["a"], test_sources=["a"])


def test_no_training_reals_is_a_clear_error(reals: ShardSet) -> None:
    with pytest.raises(ValueError, match="no real faces are left for training"):
        SyntheticFaces(reals, [], None, [], Synthesis(), 96, seed=0, length=1)


def test_manipulated_span_changes_only_the_span(tmp_path: Path, astronaut: np.ndarray) -> None:
    import av

    from fakewatch.training.blend import BlendConfig
    from fakewatch.training.manipulate import manipulate_span

    clip = write_video(tmp_path / "clip.mp4", face_clip(astronaut, count=10), fps=10)
    # a strong, whole-face edit, so that every changed frame shows above the codec's noise
    visible = BlendConfig(region_weights={"face": 1.0}, ratios=(1.0,), brightness=0.2)
    result = manipulate_span(clip, tmp_path / "twin.mp4", 0.3, 0.6, config=visible)
    assert result.frames == 10 and result.manipulated == 3

    def frames(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as container:
            return [
                f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)
            ]

    differences = [
        float((np.abs(a - b).max(axis=2) > 15).mean())
        for a, b in zip(frames(clip), frames(result.path), strict=True)
    ]
    inside = differences[3:6]
    outside = differences[:3] + differences[6:]
    assert min(inside) > 10 * max(outside), (inside, outside)
