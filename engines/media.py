"""Reading frames from image and video files: RGB ``uint8`` arrays with their times."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".ts", ".flv", ".y4m"}


class MediaError(ValueError):
    """A file that cannot be read as an image or a video; the message says why."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame: RGB ``uint8 (H, W, 3)``, its index and presentation time."""

    image: np.ndarray
    index: int
    time_s: float


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB ``uint8 (H, W, 3)``."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(f"{path} is not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container says about it (``frames`` may be 0 when unknown)."""

    width: int
    height: int
    fps: float
    frames: int


def probe_video(path: Path) -> VideoInfo:
    """Size, frame rate and frame count of a video file, without decoding it."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            return VideoInfo(stream.width, stream.height, rate, stream.frames or 0)
    except (av.error.FFmpegError, OSError) as error:
        raise MediaError(f"{path} cannot be opened as a video: {error}") from error


def iter_video(path: Path, every: int = 1, max_frames: int | None = None) -> Iterator[Frame]:
    """Decode every ``every``-th frame of a video file with PyAV (threaded decoding)."""
    import av

    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise MediaError(f"{path} cannot be opened as a video: {error}") from error
    with container:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yielded = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % every:
                    continue
                time_s = float(frame.time) if frame.time is not None else index / 25.0
                yield Frame(frame.to_ndarray(format="rgb24"), index, time_s)
                yielded += 1
                if max_frames is not None and yielded >= max_frames:
                    return
        except av.error.FFmpegError as error:
            raise MediaError(f"{path}: decoding failed at frame {yielded}: {error}") from error


def iter_frames(path: Path, every: int = 1, max_frames: int | None = None) -> Iterator[Frame]:
    """Frames of an image (one frame) or a video file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path} does not exist or is not a file")
    if is_image(path):
        yield Frame(read_image(path), 0, 0.0)
    elif is_video(path):
        yield from iter_video(path, every, max_frames)
    else:
        raise MediaError(
            f"{path}: unknown media type {path.suffix!r}; images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}) or videos ({', '.join(sorted(VIDEO_SUFFIXES))})"
        )
