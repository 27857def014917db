from pathlib import Path

import numpy as np
import pytest

from fakewatch.engines.media import MediaError, iter_frames
from tests.support.media import write_video


def write_clip(path: Path, frames: int = 12, fps: int = 6) -> None:
    write_video(path, [np.full((48, 64, 3), i * 20, dtype=np.uint8) for i in range(frames)], fps)


def test_reads_every_nth_frame_with_times(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    write_clip(clip)
    frames = list(iter_frames(clip, every=4))
    assert [f.index for f in frames] == [0, 4, 8]
    assert frames[1].time_s == pytest.approx(4 / 6, abs=0.01)
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    assert len(list(iter_frames(clip, max_frames=2))) == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("garbage.mp4", b"\x00not a video" * 100, "cannot be opened as a video"),
        ("garbage.jpg", b"not an image", "not a readable image"),
        ("notes.txt", b"hello", "unknown media type"),
    ],
)
def test_unreadable_media_gets_a_clear_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MediaError, match=message):
        list(iter_frames(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist"):
        list(iter_frames(tmp_path / "nope.mp4"))
