"""The RTSP camera (``fakewatch.stream.rtsp_camera``) as the streaming tests start it.

Without Debian's gst-rtsp-server packages the tests that use the ``rtsp_server`` fixture
(``tests/conftest.py``) are skipped, or fail when ``CI`` is set: CI must run them.
"""

from __future__ import annotations

from collections.abc import Callable

from fakewatch.stream.rtsp_camera import RtspCamera, rtsp_camera_unavailable
from tests.support.peers import missing


def require_rtsp_server() -> None:
    """Skip the calling test when the RTSP camera cannot run; fail instead under CI."""
    reason = rtsp_camera_unavailable()
    if reason is not None:
        missing("the RTSP tests", reason)


StartRtspServer = Callable[..., RtspCamera]
"""The ``rtsp_server`` fixture: ``start(clip, *, port=0, mount="/live", user=None,
password=None)`` starts an :class:`RtspCamera` and returns it once FFmpeg can open it."""
