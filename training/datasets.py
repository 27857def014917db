"""Readers for the folder layouts of real and fake face datasets.

Each reader returns a :class:`DatasetIndex`: the real media (every original, including
those that fakes were made from) and the fake videos paired with their originals. No
media is opened here; readers only look at names, folders and the datasets' metadata.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakewatch.engines.media import is_image, is_video

log = logging.getLogger(__name__)

FFPP_METHODS = (
    "Deepfakes",
    "Face2Face",
    "FaceSwap",
    "NeuralTextures",
    "FaceShifter",
    "DeepFakeDetection",
)
FFPP_COMPRESSIONS = ("raw", "c23", "c40")
SPLITS = ("train", "val", "test")

_FFPP_FAKE = re.compile(r"^(\d+)_(\d+)$")
# DeepFakeDetection: TARGET_SOURCE__SCENE__CODE, made from the actors' TARGET__SCENE.
_DFD_FAKE = re.compile(r"^(\d+)_\d+__(.+)__[A-Za-z0-9]+$")
_TRAILING_INDEX = re.compile(r"_\d+$")


@dataclass(frozen=True)
class RealMedia:
    """A real image or video.

    ``source`` names the dataset or origin (to hold out and report per source),
    ``identity`` groups media of one person or original video for splitting, and
    ``split`` is "train", "val" or "test" when the dataset defines it.
    """

    path: Path
    source: str
    identity: str
    split: str | None = None


@dataclass(frozen=True)
class PairedVideo:
    """A fake video and the original it was made from, frame aligned.

    ``official_mask`` is the dataset's own mask video of the fake, when it has one.
    """

    real: Path
    fake: Path
    method: str
    source: str
    identity: str
    split: str | None = None
    official_mask: Path | None = None


@dataclass
class DatasetIndex:
    """What a reader found: real media, fake/original pairs, and skip counts by reason."""

    reals: list[RealMedia]
    pairs: list[PairedVideo]
    skipped: dict[str, int] = field(default_factory=dict)

    def merge(self, other: DatasetIndex) -> DatasetIndex:
        """Both indexes in one (skip counts added)."""
        skipped = Counter(self.skipped)
        skipped.update(other.skipped)
        return DatasetIndex(self.reals + other.reals, self.pairs + other.pairs, dict(skipped))


def _media_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and (is_video(path) or is_image(path))
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read JSON: {error}") from error


def read_ffpp_splits(splits_dir: Path) -> dict[str, str]:
    """Video id -> split from FaceForensics++'s ``train.json``/``val.json``/``test.json``.

    Each file lists ``[target, source]`` pairs; both ids belong to that split, as do the
    fakes ``target_source`` and ``source_target`` and their originals.
    """
    splits_dir = Path(splits_dir)
    files = [(name, splits_dir / f"{name}.json") for name in SPLITS]
    if not any(path.is_file() for _, path in files):
        raise ValueError(
            f"{splits_dir}: no FaceForensics++ split files (expected train.json, val.json, "
            "test.json with [[target, source], ...] pairs)"
        )
    split_of: dict[str, str] = {}
    for name, path in files:
        if not path.is_file():
            continue
        entries = _read_json(path)
        if not isinstance(entries, list) or not all(
            isinstance(entry, list) and all(isinstance(i, str) for i in entry) for entry in entries
        ):
            raise ValueError(f"{path}: expected a list of [target, source] id pairs")
        for entry in entries:
            for video_id in entry:
                split_of[video_id] = name
    return split_of


def read_ffpp(
    root: Path,
    compression: str = "c23",
    methods: list[str] | None = None,
    splits_dir: Path | None = None,
) -> DatasetIndex:
    """FaceForensics++ (and the DeepFakeDetection videos it distributes).

    Originals come from ``original_sequences/{youtube,actors}/<compression>/videos``,
    fakes from ``manipulated_sequences/<method>/<compression>/videos`` with official
    masks from ``manipulated_sequences/<method>/masks/videos`` where present. YouTube
    media have source "ffpp" and the target's id as identity (``519_515.mp4`` is
    ``519.mp4`` with the face of 515); the actors' media have source "dfd" and the
    actor's number as identity. ``methods`` defaults to every method folder present.
    Splits come from ``splits_dir`` (default ``root/splits`` when it exists). Fakes
    whose name is not understood or whose original is missing are skipped and counted.
    """
    root = Path(root)
    if compression not in FFPP_COMPRESSIONS:
        raise ValueError(f"compression must be one of {FFPP_COMPRESSIONS}, got {compression!r}")
    originals, manipulated = root / "original_sequences", root / "manipulated_sequences"
    if not originals.is_dir() and not manipulated.is_dir():
        raise ValueError(
            f"{root} is not a FaceForensics++ folder: it has neither original_sequences/ "
            "nor manipulated_sequences/"
        )
    if splits_dir is None and (root / "splits").is_dir():
        splits_dir = root / "splits"
    split_of = read_ffpp_splits(splits_dir) if splits_dir is not None else {}

    youtube = originals / "youtube" / compression / "videos"
    actors = originals / "actors" / compression / "videos"
    reals = []
    for folder, source in ((youtube, "ffpp"), (actors, "dfd")):
        if folder.is_dir():
            for path in _media_files(folder):
                identity = path.stem.split("__")[0]
                reals.append(RealMedia(path, source, identity, split_of.get(identity)))

    if methods is None:
        methods = sorted(
            folder.name
            for folder in (manipulated.iterdir() if manipulated.is_dir() else [])
            if (folder / compression / "videos").is_dir()
        )
    pairs: list[PairedVideo] = []
    skipped: Counter[str] = Counter()
    for method in methods:
        videos = manipulated / method / compression / "videos"
        if not videos.is_dir():
            raise ValueError(f"FaceForensics++ method {method!r} not found: {videos} is missing")
        masks = manipulated / method / "masks" / "videos"
        for fake in _media_files(videos):
            if match := _FFPP_FAKE.match(fake.stem):
                identity, real, source = match[1], youtube / f"{match[1]}.mp4", "ffpp"
            elif match := _DFD_FAKE.match(fake.stem):
                identity, source = match[1], "dfd"
                real = actors / f"{match[1]}__{match[2]}.mp4"
            else:
                skipped["unrecognised_name"] += 1
                continue
            if not real.is_file():
                skipped["missing_original"] += 1
                continue
            mask = masks / fake.name
            pairs.append(
                PairedVideo(
                    real=real,
                    fake=fake,
                    method=method,
                    source=source,
                    identity=identity,
                    split=split_of.get(identity),
                    official_mask=mask if mask.is_file() else None,
                )
            )
    if not reals and not pairs:
        raise ValueError(
            f"{root}: no FaceForensics++ videos at compression {compression!r} (looked in "
            f"{youtube}, {actors} and {manipulated}/<method>/{compression}/videos)"
        )
    if skipped:
        log.warning("%s: skipped fakes: %s", root, dict(skipped))
    return DatasetIndex(reals, pairs, dict(skipped))


def read_dfdc(root: Path) -> DatasetIndex:
    """The DeepFake Detection Challenge: ``dfdc_train_part_N/metadata.json`` folders.

    Each ``metadata.json`` maps a video name to its ``label`` (REAL or FAKE), the
    ``original`` it was made from and its ``split``. ``root`` may also be one part
    folder. Identity is the original video's name (DFDC names no people). Videos listed
    but missing, and fakes whose original is missing, are skipped and counted.
    """
    root = Path(root)
    metadata_files = sorted(root.glob("*/metadata.json"))
    if (root / "metadata.json").is_file():
        metadata_files.insert(0, root / "metadata.json")
    if not metadata_files:
        raise ValueError(
            f"{root} is not a DFDC folder: no metadata.json in it or in its part folders "
            "(dfdc_train_part_N/metadata.json)"
        )
    reals, pairs = [], []
    skipped: Counter[str] = Counter()
    for metadata in metadata_files:
        entries = _read_json(metadata)
        if not isinstance(entries, dict):
            raise ValueError(f"{metadata}: expected an object mapping video names to labels")
        folder = metadata.parent
        for name, entry in sorted(entries.items()):
            label = entry.get("label") if isinstance(entry, dict) else None
            if label not in ("REAL", "FAKE"):
                raise ValueError(f"{metadata}: {name!r} has no label REAL or FAKE: {entry!r}")
            path, split = folder / name, entry.get("split")
            if not path.is_file():
                skipped["missing_file"] += 1
                continue
            if label == "REAL":
                reals.append(RealMedia(path, "dfdc", path.stem, split))
                continue
            original = entry.get("original")
            if not original:
                skipped["fake_without_original"] += 1
                continue
            real = folder / original
            if not real.is_file():
                skipped["missing_original"] += 1
                continue
            pairs.append(PairedVideo(real, path, "dfdc", "dfdc", real.stem, split))
    if skipped:
        log.warning("%s: skipped videos: %s", root, dict(skipped))
    return DatasetIndex(reals, pairs, dict(skipped))


def _original_of(fake: Path, reals: list[Path]) -> Path | None:
    """The real video a fake was made from: the one of the same name, else the only one
    whose name starts with the same word (``fake/ghost_elon`` <- ``real/ghost_orig``)."""
    for real in reals:
        if real.stem == fake.stem:
            return real
    word = fake.stem.split("_")[0]
    candidates = [real for real in reals if real.stem.split("_")[0] == word]
    return candidates[0] if len(candidates) == 1 else None


def read_pairs_folder(
    root: Path, source: str | None = None, method: str = "live-swap"
) -> DatasetIndex:
    """Pixel-aligned pairs: ``real/X.mp4`` and the fakes made from it.

    A fake pairs with the real video of its own name (``fake/Keanu_Reeves_0.mp4`` with
    ``real/Keanu_Reeves_0.mp4``), or else with the only real video whose name starts
    with the same word (``fake/ghost_elon.mp4`` with ``real/ghost_orig.mp4``), so one
    original may have several fakes. ``source`` defaults to the folder's name. The
    identity is the fake's name without a trailing ``_N`` clip index
    (``Keanu_Reeves_0`` -> ``Keanu_Reeves``) when it has its own original, else the
    original's first word (all fakes of one footage stay together). Every real file is
    also listed as real media; fakes without an original are skipped and counted.
    """
    root = Path(root)
    real_dir, fake_dir = root / "real", root / "fake"
    if not real_dir.is_dir() or not fake_dir.is_dir():
        raise ValueError(f"{root} is not a pairs folder: expected real/ and fake/ inside it")
    source = source or root.name

    def identity(path: Path) -> str:
        return _TRAILING_INDEX.sub("", path.stem)

    real_files = _media_files(real_dir)
    pairs = []
    skipped: Counter[str] = Counter()
    shared: dict[Path, str] = {}
    for fake in _media_files(fake_dir):
        real = _original_of(fake, real_files)
        if real is None:
            skipped["missing_original"] += 1
            continue
        if real.stem == fake.stem:
            name = identity(fake)
        else:
            name = shared.setdefault(real, real.stem.split("_")[0])
        pairs.append(PairedVideo(real, fake, method, source, name))
    reals = [RealMedia(path, source, shared.get(path, identity(path))) for path in real_files]
    if not pairs and not reals:
        raise ValueError(f"{root}: no images or videos in real/ or fake/")
    if skipped:
        log.warning("%s: skipped fakes: %s", root, dict(skipped))
    return DatasetIndex(reals, pairs, dict(skipped))


_TRAILING_NUMBER = re.compile(r"(\d+)$")


def read_real_folder(root: Path, naming: str = "source__identity") -> DatasetIndex:
    """Every image and video under ``root`` (recursively) as real media.

    With ``naming="source__identity"`` the source is the file name's prefix before
    ``__`` (``dlib-johns__John_Salley__0001.jpg`` comes from ``dlib-johns``), else the
    parent folder's name, and the identity is the middle part of a
    ``SOURCE__NAME__REST`` name, else the file's stem. With ``naming="owner__repo__file"``
    (files taken from public repositories, ``serengil__deepface__img1.jpg``) the source is
    the owner and the identity the file part's trailing number when it has one (a
    dataset's clip id: ``Input_517600055.jpg`` and ``Pose_Source_517600055.mp4`` are one
    person), else the file part.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder of real faces")
    if naming not in ("source__identity", "owner__repo__file"):
        raise ValueError(f"unknown naming {naming!r}")
    reals = []
    for path in sorted(root.rglob("*")):
        if path.name.startswith(".") or not path.is_file():
            continue
        if not (is_image(path) or is_video(path)):
            continue
        parts = path.stem.split("__")
        source = parts[0] if len(parts) > 1 else path.parent.name
        if naming == "owner__repo__file":
            rest = parts[-1]
            number = _TRAILING_NUMBER.search(rest)
            identity = number[1] if number else rest
        else:
            identity = parts[1] if len(parts) > 2 else path.stem
        reals.append(RealMedia(path, source, identity))
    if not reals:
        raise ValueError(f"{root}: no images or videos found")
    return DatasetIndex(reals, [])
