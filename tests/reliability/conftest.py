"""Fixtures and probes shared by the reliability tests: long face clips, the RTSP server
fixture of ``tests/stream``, the service's log records and a reader of its metrics."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from tests.media import face_clip
from tests.stream.conftest import rtsp_server  # noqa: F401  (the fixture, for these tests)

# --- media -------------------------------------------------------------------------------


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


@pytest.fixture(scope="session")
def long_face_video(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """Two minutes of a real face at 10 fps, 640x480: an RTSP session never reaches its
    end (and reconnects) during a test."""
    path = tmp_path_factory.mktemp("reliability") / "face-120s.mp4"
    return write_stream(path, looping_face_frames(astronaut, 1200))


# --- probes ------------------------------------------------------------------------------


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of ``name`` in a Prometheus text exposition: (labels, value)."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == name:
            labels = dict(_LABEL.findall(match["labels"] or ""))
            samples.append((labels, float(match["value"])))
    return samples


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` with ``labels``, or None."""
    for sample_labels, value in metric_samples(text, name):
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            return value
    return None


class LogRecords(logging.Handler):
    """Keeps the ``fakewatch`` log records (INFO and up) while installed."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, event: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == event]

    def errors(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.ERROR]


@pytest.fixture
def fakewatch_logs() -> Iterator[LogRecords]:
    """The service's log records during the test (the ``fakewatch`` logger at INFO)."""
    logger = logging.getLogger("fakewatch")
    handler = LogRecords()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
