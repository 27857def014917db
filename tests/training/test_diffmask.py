from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

import tests.support.media
from fakewatch.engines.crop import Box
from fakewatch.engines.faces import Face, RetinaFaceDetector
from fakewatch.engines.spec import ModelSpec
from fakewatch.training.datasets import PairedVideo, read_ffpp, read_pairs_folder
from fakewatch.training.diffmask import (
    DiffMaskConfig,
    PairStats,
    crop_mask,
    difference_mask,
    iter_pair_samples,
)

SPEC = ModelSpec(input_size=128)
SIZE = 256  # side of the synthetic video frames, cut from the astronaut around her face
BOX = Box(77, 56, 172, 176)  # her face in those frames


class FixedDetector:
    """Finds the same faces in every frame."""

    def __init__(self, *boxes: Box) -> None:
        self.boxes = boxes

    def detect(self, frame: np.ndarray) -> list[Face]:
        return [Face(box, 0.99) for box in self.boxes]


class AlternatingDetector:
    """Fake frame first, then real frame: a different face box on each."""

    def __init__(self, fake_box: Box, real_box: Box) -> None:
        self._boxes: Iterator[Box] = iter([fake_box, real_box] * 1000)

    def detect(self, frame: np.ndarray) -> list[Face]:
        return [Face(next(self._boxes), 0.99)]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max(1, (a | b).sum()))


def jpeg(image: np.ndarray, quality: int = 75) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.asarray(cv2.imdecode(data, cv2.IMREAD_UNCHANGED))


def paste_region(frame: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """The frame with an ellipse inside ``box`` replaced by other content, and that ellipse."""
    from skimage import data

    height, width = frame.shape[:2]
    truth = np.zeros((height, width), dtype=np.uint8)
    centre = (round(box.center[0]), round(box.center[1]))
    axes = (round(box.width * 0.35), round(box.height * 0.4))
    cv2.ellipse(truth, centre, axes, 0, 0, 360, 255, -1)
    # The cat's fur with red and blue swapped: no longer the colour of skin anywhere.
    other = cv2.resize(data.chelsea()[..., ::-1], (width, height), interpolation=cv2.INTER_AREA)
    return np.where(truth[..., None] > 0, other, frame).astype(np.uint8), truth


def write_video(path: Path, frames: list[np.ndarray], crf: int = 18) -> Path:
    """Full-chroma H.264, so colour edges of the pasted region survive encoding."""
    return tests.support.media.write_video(path, frames, fps=10, crf=crf, pix_fmt="yuv444p")


@pytest.fixture(scope="module")
def small_frames(astronaut: np.ndarray) -> list[np.ndarray]:
    """Six SIZE px frames of the astronaut's face, panning 2 px a frame (so frames differ)."""
    return [
        np.ascontiguousarray(astronaut[:SIZE, 100 + i : 100 + i + SIZE]) for i in range(0, 12, 2)
    ]


def make_pair(
    folder: Path,
    real_frames: list[np.ndarray],
    fake_frames: list[np.ndarray],
    fake_crf: int = 18,
    mask_frames: list[np.ndarray] | None = None,
) -> PairedVideo:
    folder.mkdir(parents=True, exist_ok=True)
    real = write_video(folder / "real.mp4", real_frames)
    fake = write_video(folder / "fake.mp4", fake_frames, crf=fake_crf)
    mask = write_video(folder / "mask.mp4", mask_frames) if mask_frames is not None else None
    return PairedVideo(real, fake, "test", "synthetic", "astronaut", official_mask=mask)


def test_pasted_region_is_recovered_through_jpeg_noise(astronaut: np.ndarray) -> None:
    box = RetinaFaceDetector().detect(astronaut)[0].box
    fake, truth = paste_region(astronaut, box)
    real, fake = jpeg(astronaut), jpeg(fake)
    mask = difference_mask(real, fake, box, SPEC.crop_margin)
    assert mask.shape == astronaut.shape[:2] and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    assert iou(mask, truth) >= 0.9
    ssim = difference_mask(real, fake, box, SPEC.crop_margin, DiffMaskConfig(method="ssim"))
    assert iou(ssim, truth) >= 0.8


def test_no_change_gives_an_empty_mask_even_with_a_colour_offset(astronaut: np.ndarray) -> None:
    box = Box(170, 60, 290, 210)
    brighter = np.clip(astronaut.astype(np.int16) + 8, 0, 255).astype(np.uint8)
    mask = difference_mask(jpeg(astronaut, 75), jpeg(brighter, 60), box, SPEC.crop_margin)
    assert not mask.any()


def test_video_pair_gives_crops_and_aligned_masks(
    tmp_path: Path, small_frames: list[np.ndarray]
) -> None:
    fakes, truths = zip(*(paste_region(frame, BOX) for frame in small_frames), strict=True)
    pair = make_pair(tmp_path, small_frames, list(fakes))
    stats = PairStats()
    samples = list(iter_pair_samples(pair, SPEC, FixedDetector(BOX), every=2, stats=stats))
    assert [s.frame_index for s in samples] == [0, 2, 4]
    assert stats.frames == stats.used == 3 and not any(stats.skipped.values())
    for sample in samples:
        assert sample.real_crop.shape == sample.fake_crop.shape == (128, 128, 3)
        assert sample.mask.shape == (128, 128) and sample.mask.dtype == np.uint8
        truth = crop_mask(truths[sample.frame_index], BOX, 128, SPEC.crop_margin)
        assert iou(sample.mask, truth) >= 0.9
    assert 0.1 < stats.mean_mask_area < 0.4


def test_shifted_pairs_are_skipped_and_counted(
    tmp_path: Path, small_frames: list[np.ndarray]
) -> None:
    shifted = [np.roll(frame, (4, 4), axis=(0, 1)) for frame in small_frames]
    pair = make_pair(tmp_path, small_frames, shifted)
    stats = PairStats()
    assert list(iter_pair_samples(pair, SPEC, FixedDetector(BOX), every=1, stats=stats)) == []
    assert stats.misaligned_global == stats.frames == 6


def test_unchanged_pairs_are_counted_as_empty(
    tmp_path: Path, small_frames: list[np.ndarray]
) -> None:
    pair = make_pair(tmp_path, small_frames, small_frames, fake_crf=30)
    stats = PairStats()
    assert list(iter_pair_samples(pair, SPEC, FixedDetector(BOX), every=2, stats=stats)) == []
    assert stats.empty_mask == stats.frames == 3


def test_face_box_disagreement_no_face_and_unpaired_frames(
    tmp_path: Path, small_frames: list[np.ndarray]
) -> None:
    fakes = [paste_region(frame, BOX)[0] for frame in small_frames[:4]]
    pair = make_pair(tmp_path, small_frames, fakes)
    stats = PairStats()
    far = Box(0, 0, 40, 40)
    assert list(iter_pair_samples(pair, SPEC, AlternatingDetector(BOX, far), 1, stats=stats)) == []
    assert stats.misaligned_box == 4 and stats.unpaired == 2 and stats.frames == 6
    stats = PairStats()
    assert list(iter_pair_samples(pair, SPEC, FixedDetector(), every=1, stats=stats)) == []
    assert stats.no_face == 4


def test_official_mask_replaces_the_difference(
    tmp_path: Path, small_frames: list[np.ndarray]
) -> None:
    truth = paste_region(small_frames[0], BOX)[1]
    # NeuralTextures-style mask: a shaded face on black, binarised by the reader
    shaded = np.repeat(
        (truth // 255 * np.linspace(60, 250, SIZE)).astype(np.uint8)[..., None], 3, 2
    )
    pair = make_pair(tmp_path, small_frames, small_frames, mask_frames=[shaded] * 6)
    samples = list(iter_pair_samples(pair, SPEC, FixedDetector(BOX), every=3))
    assert len(samples) == 2
    expected = crop_mask(truth, BOX, 128, SPEC.crop_margin)
    assert all(iou(sample.mask, expected) >= 0.95 for sample in samples)


def _report(name: str, stats: PairStats) -> None:
    print(f"\n{name}: {stats.as_dict()} skipped {stats.skipped}")


def test_real_ffpp_pair_gives_plausible_masks(shared_data: Path) -> None:
    pair = read_ffpp(shared_data / "ffpp-dev").pairs[0]
    stats = PairStats()
    areas = [
        np.count_nonzero(sample.mask) / sample.mask.size
        for sample in iter_pair_samples(pair, ModelSpec(), RetinaFaceDetector(), 50, stats=stats)
    ]
    _report(pair.fake.name, stats)
    assert stats.frames == 16 and stats.used >= 0.8 * stats.frames
    assert all(0.05 <= area <= 0.8 for area in areas)
    assert 0.08 <= stats.mean_mask_area <= 0.3


def test_real_live_swap_pair_gives_plausible_masks(shared_data: Path) -> None:
    index = read_pairs_folder(shared_data / "live-swap-dev")
    pair = next(p for p in index.pairs if p.fake.stem == "Keanu_Reeves_0")
    stats = PairStats()
    samples = list(iter_pair_samples(pair, ModelSpec(), RetinaFaceDetector(), 30, stats=stats))
    _report(pair.fake.name, stats)
    assert stats.used >= 0.8 * stats.frames
    assert 0.1 <= stats.mean_mask_area <= 0.6
    assert all(0.05 <= np.count_nonzero(s.mask) / s.mask.size <= 0.8 for s in samples)
