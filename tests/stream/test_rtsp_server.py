"""The RTSP test server itself: PyAV reads it over TCP, after a restart, and with auth."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from fakewatch.stream.rtsp_camera import FAST_OPEN_OPTIONS, RTSP_OPTIONS
from tests.support.media import face_clip, write_video
from tests.support.rtsp import StartRtspServer

pytestmark = pytest.mark.peer

FPS = 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """3 s of the astronaut at 10 fps, 320x240, H.264 in .mp4."""
    folder = tmp_path_factory.mktemp("rtsp")
    return write_video(folder / "clip.mp4", face_clip(astronaut, 3 * FPS, (320, 240)), fps=FPS)


def read_frames(
    url: str, count: int, options: dict[str, str] = RTSP_OPTIONS
) -> list[tuple[float, av.VideoFrame]]:
    """The first ``count`` decoded frames, each with its arrival time after the open began."""
    start = time.monotonic()
    frames = []
    with av.open(url, options=options) as container:
        for frame in container.decode(video=0):
            frames.append((time.monotonic() - start, frame))
            if len(frames) == count:
                break
    return frames


def test_pyav_reads_the_clip_over_tcp_at_real_time_pace(
    rtsp_server: StartRtspServer, clip: Path
) -> None:
    server = rtsp_server(clip)
    frames = read_frames(server.url, 3 * FPS, FAST_OPEN_OPTIONS)
    assert len(frames) == 3 * FPS
    assert all((frame.width, frame.height) == (320, 240) for _, frame in frames)
    arrivals = [arrival for arrival, _ in frames]
    # Real time, not a file dump: the 3 s clip's frames spread over most of 3 s (loosely:
    # the decoder holds back and flushes a few frames for B-frame reordering).
    assert arrivals[0] < 2.0
    assert arrivals[-1] - arrivals[0] > 1.5
    assert arrivals[FPS] - arrivals[0] > 0.5
    assert arrivals[-1] < 10.0


def test_default_options_also_read_every_frame(rtsp_server: StartRtspServer, clip: Path) -> None:
    server = rtsp_server(clip)
    frames = read_frames(server.url, 3 * FPS)
    assert len(frames) == 3 * FPS
    assert frames[-1][0] > 2.0  # the clip's end cannot arrive before its time


def test_the_same_url_works_after_a_restart(rtsp_server: StartRtspServer, clip: Path) -> None:
    server = rtsp_server(clip)
    url = server.url
    with av.open(url, options=FAST_OPEN_OPTIONS) as connected:
        frames = connected.decode(video=0)
        next(frames)
        server.restart()
        # The old session's TCP connection closes: PyAV reports a clean end of stream (no
        # error) after the frames it already had, so a reader must reconnect by itself.
        assert sum(1 for _ in frames) < 3 * FPS
    assert server.url == url
    assert len(read_frames(url, 3, FAST_OPEN_OPTIONS)) == 3


def test_basic_auth(rtsp_server: StartRtspServer, clip: Path) -> None:
    server = rtsp_server(clip, user="viewer", password="s3cret")
    assert server.url == f"rtsp://viewer:s3cret@127.0.0.1:{server.port}/live"
    with pytest.raises(av.HTTPUnauthorizedError):
        av.open(server.bare_url, options=RTSP_OPTIONS)
    with pytest.raises(av.HTTPUnauthorizedError):
        av.open(server.url.replace("s3cret", "wrong"), options=RTSP_OPTIONS)
    assert len(read_frames(server.url, 3, FAST_OPEN_OPTIONS)) == 3
