"""Fixtures shared by the reliability tests: a long face clip and the service's log
records."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.logs import LogRecords
from tests.support.media import looping_face_frames, write_stream


@pytest.fixture(scope="session")
def long_face_video(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """Two minutes of a real face at 10 fps, 640x480: an RTSP session never reaches its
    end (and reconnects) during a test."""
    path = tmp_path_factory.mktemp("reliability") / "face-120s.mp4"
    return write_stream(path, looping_face_frames(astronaut, 1200))


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
