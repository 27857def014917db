from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fakewatch.engines.spec import ModelSpec
from fakewatch.training import shards
from fakewatch.training.diffmask import DiffMaskConfig
from fakewatch.training.shards import (
    SampleMeta,
    ShardError,
    ShardSet,
    ShardWriter,
    cache_key,
)

SIZE = 64


def sample(i: int) -> tuple[np.ndarray, np.ndarray | None, SampleMeta]:
    rng = np.random.default_rng(i)
    crop = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    kind = "fake" if i % 2 else "real"
    mask = np.where(rng.random((SIZE, SIZE)) > 0.5, 255, 0).astype(np.uint8) if i % 2 else None
    meta = SampleMeta(
        kind=kind,
        source="ffpp" if i < 3 else "live-swap",
        identity=f"id{i // 2}",
        media=f"/videos/{i}.mp4",
        frame_index=5 * i,
        method="Deepfakes" if kind == "fake" else None,
        split="train",
    )
    return crop, mask, meta


def write(folder: Path, count: int, shard_size: int = 2, key: str | None = "k1") -> None:
    with ShardWriter(folder, shard_size=shard_size, key=key) as writer:
        for i in range(count):
            writer.add(*sample(i))


def test_round_trip(tmp_path: Path) -> None:
    write(tmp_path, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "index.json",
        "shard-00000.safetensors",
        "shard-00001.safetensors",
        "shard-00002.safetensors",
    ]
    cache = ShardSet.open(tmp_path, key="k1")
    assert len(cache) == 5 and cache.key == "k1"
    for i in range(5):
        crop, mask, meta = cache[i]
        expected_crop, expected_mask, expected_meta = sample(i)
        np.testing.assert_array_equal(crop, expected_crop)
        if expected_mask is None:
            assert mask.shape == (SIZE, SIZE) and not mask.any()
        else:
            np.testing.assert_array_equal(mask, expected_mask)
        assert meta == expected_meta and crop.dtype == mask.dtype == np.uint8
    np.testing.assert_array_equal(cache[-1][0], cache[4][0])
    with pytest.raises(IndexError):
        cache[5]


def test_filtering_by_metadata(tmp_path: Path) -> None:
    write(tmp_path, 6)
    cache = ShardSet.open(tmp_path)
    fakes = cache.filter(kind="fake")
    assert [m.frame_index for m in fakes.metas] == [5, 15, 25]
    np.testing.assert_array_equal(fakes[1][0], sample(3)[0])
    live = fakes.filter(lambda meta: meta.source != "ffpp")
    assert [m.frame_index for m in live.metas] == [15, 25]
    with pytest.raises(ValueError, match="unknown sample fields"):
        cache.filter(colour="red")


def test_bad_samples_are_refused(tmp_path: Path) -> None:
    crop, mask, meta = sample(1)
    with ShardWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="crop must be uint8"):
            writer.add(crop.astype(np.float32), mask, meta)
        with pytest.raises(ValueError, match="mask must be uint8"):
            writer.add(crop, np.zeros((SIZE, SIZE, 1), np.uint8), meta)
        writer.add(crop, mask, meta)
        with pytest.raises(ValueError, match="differs from the shard set's 64"):
            writer.add(np.zeros((32, 32, 3), np.uint8), None, meta)


def test_a_crashed_writer_leaves_no_usable_or_partial_cache(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, shard_size=2, key="k1") as writer:
        for i in range(3):
            writer.add(*sample(i))
        raise RuntimeError("decoder died")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-00000.safetensors"]
    assert not ShardSet.is_current(tmp_path, "k1")
    with pytest.raises(ShardError, match="no finished shard set"):
        ShardSet.open(tmp_path)


def test_a_write_that_dies_midway_leaves_no_half_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.numpy

    def dies_halfway(tensors: object, filename: str, metadata: object = None) -> None:
        Path(filename).write_bytes(b"\x00" * 1000)
        raise OSError("disk full")

    write(tmp_path, 4)  # a finished older cache in the same folder
    monkeypatch.setattr(safetensors.numpy, "save_file", dies_halfway)
    with pytest.raises(OSError, match="disk full"), ShardWriter(tmp_path, shard_size=2) as writer:
        for i in range(2):
            writer.add(*sample(i))
    assert list(tmp_path.iterdir()) == []  # old cache removed, nothing half-written left


def test_a_new_writer_replaces_an_old_cache_and_stray_temp_files(tmp_path: Path) -> None:
    write(tmp_path, 5)
    (tmp_path / "shard-00007.safetensors.tmp").write_bytes(b"left by a killed process")
    write(tmp_path, 1, key="k2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json", "shard-00000.safetensors"]
    assert len(ShardSet.open(tmp_path, key="k2")) == 1


def test_a_cache_built_with_other_settings_is_refused(tmp_path: Path) -> None:
    write(tmp_path, 2, key="k1")
    assert ShardSet.is_current(tmp_path, "k1") and not ShardSet.is_current(tmp_path, "k2")
    with pytest.raises(ShardError, match="built with other inputs"):
        ShardSet.open(tmp_path, key="k2")


def test_damaged_index_and_missing_shard(tmp_path: Path) -> None:
    write(tmp_path, 4)
    (tmp_path / "shard-00001.safetensors").unlink()
    with pytest.raises(ShardError, match=r"shard-00001\.safetensors is listed in index\.json"):
        ShardSet.open(tmp_path)
    (tmp_path / "index.json").write_text("{")
    with pytest.raises(ShardError, match="cannot read the shard index"):
        ShardSet.open(tmp_path)


class Detector:
    def __init__(self, score_threshold: float = 0.8) -> None:
        self.score_threshold = score_threshold
        self._session = object()  # private state never enters the key


def test_cache_key_changes_with_every_input(tmp_path: Path) -> None:
    video = tmp_path / "a.mp4"
    video.write_bytes(b"12345")
    spec, config = ModelSpec(), DiffMaskConfig()

    def key(
        media: list[Path] | None = None,
        spec: ModelSpec = spec,
        config: DiffMaskConfig = config,
        detector: Detector | None = None,
        extra: dict[str, int] | None = None,
    ) -> str:
        return cache_key(
            media or [video], spec, config, detector or Detector(), extra or {"every": 5}
        )

    base = key()
    assert key() == base and len(base) == 64
    assert key(media=[video, video]) == base
    variants = [
        key(spec=ModelSpec(input_size=256)),
        key(spec=ModelSpec(crop_margin=1.5)),
        key(config=DiffMaskConfig(blur_sigma=3)),
        key(config=DiffMaskConfig(method="ssim")),
        key(detector=Detector(score_threshold=0.9)),
        key(extra={"every": 10}),
    ]
    assert key(spec=ModelSpec(encoder="resnet18")) == base  # the network does not change crops
    video.write_bytes(b"123456")
    variants.append(key())
    os.utime(video, ns=(0, 0))
    variants.append(key())
    assert len({base, *variants}) == len(variants) + 1


def test_format_version_is_in_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = cache_key([], ModelSpec())
    monkeypatch.setattr(shards, "FORMAT_VERSION", shards.FORMAT_VERSION + 1)
    assert cache_key([], ModelSpec()) != before
