"""A real RTSP server for the streaming tests: ``rtsp_server.py`` run by the system Python.

gst-rtsp-server is reached through PyGObject, which the Debian packages install for
``/usr/bin/python3`` only, so the server runs as a subprocess of that interpreter while
the tests read it with the venv's PyAV. Without those packages the tests that use the
``rtsp_server`` fixture (``tests/conftest.py``) are skipped, or fail when ``CI`` is set:
CI must run them.
"""

from __future__ import annotations

import functools
import os
import selectors
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Protocol

import av

from tests.support.peers import end_process_group, missing

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_server.py"
DEBIAN_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 "
    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)
# What the streaming service passes to PyAV: RTSP interleaved over TCP, 2 s socket timeout.
RTSP_OPTIONS = {"rtsp_transport": "tcp", "timeout": "2000000"}
# The same with probing capped: FFmpeg's default probe reads ~2 s of the stream before
# av.open returns, and then hands those frames over at once. The readiness check uses these.
FAST_OPEN_OPTIONS = {**RTSP_OPTIONS, "analyzeduration": "100000", "probesize": "32768"}


@functools.cache
def rtsp_server_unavailable() -> str | None:
    """Why the RTSP test server cannot run here, or None when it can."""
    check = 'import gi; gi.require_version("GstRtspServer", "1.0")'
    try:
        result = subprocess.run(
            [SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, timeout=30
        )
    except OSError as error:
        return f"{SYSTEM_PYTHON} cannot run ({error}); apt-get install {DEBIAN_PACKAGES}"
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["failed"])[-1]
        return f"{SYSTEM_PYTHON} has no GstRtspServer ({reason}); apt-get install {DEBIAN_PACKAGES}"
    return None


def require_rtsp_server() -> None:
    """Skip the calling test when the RTSP server cannot run; fail instead under CI."""
    reason = rtsp_server_unavailable()
    if reason is not None:
        missing("the RTSP tests", reason)


class RtspServer:
    """``rtsp_server.py`` serving ``clip``; keeps its port across ``restart()``.

    Every client gets the clip from its start at real-time pace; at the clip's end the
    server sends an RTCP BYE, which PyAV reads as the end of the stream.
    """

    def __init__(
        self,
        clip: Path,
        *,
        port: int = 0,
        mount: str = "/live",
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.clip = clip
        self.port = port
        self.mount = mount
        self.user = user
        self.password = password
        self._process: subprocess.Popen[bytes] | None = None
        # the server's stderr, kept for error messages; closed by close()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115

    @property
    def bare_url(self) -> str:
        """The URL without credentials."""
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    @property
    def url(self) -> str:
        """The URL a client opens: with ``user:password@`` when the server asks for them."""
        if self.user is None:
            return self.bare_url
        return f"rtsp://{self.user}:{self.password or ''}@127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> RtspServer:
        """Launch the server and return once PyAV can open ``url``."""
        if self.running:
            raise RuntimeError("the RTSP server is already running")
        command = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        command += ["--mount", self.mount, "--clip", str(self.clip)]
        if self.user is not None:
            command += ["--user", self.user, "--password", self.password or ""]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        line = self._read_line(deadline)
        if not line.startswith("ready rtsp://"):
            self.stop()
            raise RuntimeError(f"the RTSP server did not start: {line!r}\n{self.log()}")
        self.port = int(line.split()[1].rsplit(":", 1)[1].split("/", 1)[0])
        self._wait_until_readable(deadline)
        return self

    def stop(self) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after 5 s)."""
        process, self._process = self._process, None
        if process is None:
            return
        end_process_group(process, 5.0)
        if process.stdout is not None:
            process.stdout.close()

    def restart(self, timeout: float = 10.0) -> RtspServer:
        """Stop and start again on the same port, so the same URL works afterwards."""
        self.stop()
        return self.start(timeout)

    def freeze(self, frozen: bool = True) -> None:
        """Stop (SIGSTOP) or resume (SIGCONT) the server: connections stay open, silent."""
        if self._process is None:
            raise RuntimeError("the RTSP server is not running")
        os.killpg(self._process.pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def log(self) -> str:
        """What the server wrote to stderr so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def close(self) -> None:
        self.stop()
        self._log.close()

    def __enter__(self) -> RtspServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read_line(self, deadline: float) -> str:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        data = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in data and (left := deadline - time.monotonic()) > 0:
                if not selector.select(left):
                    continue
                chunk = os.read(stdout.fileno(), 4096)
                if not chunk:
                    break
                data += chunk
        return data.decode(errors="replace").strip()

    def _wait_until_readable(self, deadline: float) -> None:
        while True:
            try:
                with av.open(self.url, options=FAST_OPEN_OPTIONS):
                    return
            except (av.FFmpegError, OSError) as error:
                if not self.running or time.monotonic() > deadline:
                    self.stop()
                    message = f"PyAV cannot open {self.url}: {error}\n{self.log()}"
                    raise RuntimeError(message) from error
                time.sleep(0.1)


class StartRtspServer(Protocol):
    def __call__(
        self,
        clip: Path,
        *,
        port: int = 0,
        mount: str = "/live",
        user: str | None = None,
        password: str | None = None,
    ) -> RtspServer: ...
