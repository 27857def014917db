"""Media made on the fly for tests: clips of a real face, and fakes with known masks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: int = 10,
    crf: int = 18,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode RGB frames as H.264 into ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf)})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def face_clip(
    face: np.ndarray, count: int = 12, size: tuple[int, int] = (320, 240)
) -> list[np.ndarray]:
    """A clip of ``face`` (the astronaut) drifting slowly across a ``size`` frame."""
    width, height = size
    scale = height / face.shape[0] * 0.9
    small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 90, dtype=np.uint8)
        x = 10 + i * 2
        frame[5 : 5 + small.shape[0], x : x + small.shape[1]] = small[:, : width - x]
        frames.append(frame)
    return frames


def manipulate(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A crude face edit inside ``box`` (x0, y0, x1, y1): colour shift and blur."""
    x0, y0, x1, y1 = box
    out = frame.copy()
    blurred = cv2.GaussianBlur(out[y0:y1, x0:x1], (9, 9), 0).astype(np.int16)
    region = blurred + np.array([40, -20, 10], dtype=np.int16)
    out[y0:y1, x0:x1] = np.clip(region, 0, 255).astype(np.uint8)
    return out


def looping_face_frames(
    face: np.ndarray, count: int, size: tuple[int, int] = (640, 480)
) -> Iterator[np.ndarray]:
    """``count`` frames of the face drifting right and back (a clip of any length)."""
    cycle = face_clip(face, 60, size)
    cycle += cycle[::-1]
    for i in range(count):
        yield cycle[i % len(cycle)]


def write_stream(path: Path, frames: Iterable[np.ndarray], fps: int = 10) -> Path:
    """Encode RGB frames one at a time as H.264 (a keyframe every second), so a long clip
    never sits in memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264", rate=fps, options={"crf": "23", "preset": "veryfast", "g": str(fps)}
        )
        for index, image in enumerate(frames):
            if index == 0:
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def looping_face_file(folder: Path, fps: float, seconds: int = 12) -> Path:
    """A clip of a real face (the astronaut) at 640x480 and ``fps``, made to be looped."""
    from skimage import data

    face = np.ascontiguousarray(data.astronaut())
    count = round(fps * seconds)
    return write_stream(folder / "face.mp4", looping_face_frames(face, count), fps=round(fps))
