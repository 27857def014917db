"""The RTSP camera (``fakewatch.stream.rtsp_camera``) as the streaming tests start it.

Without Debian's gst-rtsp-server packages the tests that use the ``rtsp_server`` fixture
(``tests/conftest.py``) are skipped, or fail when ``CI`` is set: CI must run them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from fakewatch.stream.rtsp_camera import RtspCamera, rtsp_camera_unavailable
from tests.support.peers import missing


def require_rtsp_server() -> None:
    """Skip the calling test when the RTSP camera cannot run; fail instead under CI."""
    reason = rtsp_camera_unavailable()
    if reason is not None:
        missing("the RTSP tests", reason)


class StartRtspServer(Protocol):
    def __call__(
        self,
        clip: Path,
        *,
        port: int = 0,
        mount: str = "/live",
        user: str | None = None,
        password: str | None = None,
    ) -> RtspCamera: ...
