"""A clip served over RTSP the way a live camera sends it, to watch without a camera.

:class:`RtspCamera` runs ``rtsp_camera_server.py`` (gst-rtsp-server) under the system
Python: GStreamer's RTSP server is reached through PyGObject, which Debian's packages
(:data:`DEBIAN_PACKAGES`) install for ``/usr/bin/python3`` only. Every client gets the
clip from its first frame at real-time pace, as from a camera that starts when you
connect; at the clip's end the server sends an RTCP BYE, which FFmpeg reads as the end of
the stream. The benchmarks and the streaming tests watch these cameras.
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

import av

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_camera_server.py")
DEBIAN_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 "
    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)
RTSP_OPTIONS = {"rtsp_transport": "tcp", "timeout": "2000000"}
"""What the streaming service passes to FFmpeg: RTSP interleaved over TCP, 2 s socket
timeout."""
FAST_OPEN_OPTIONS = {**RTSP_OPTIONS, "analyzeduration": "100000", "probesize": "32768"}
"""The same with probing capped: FFmpeg's default probe reads about 2 s of the stream
before ``av.open`` returns, then hands those frames over at once."""


@functools.cache
def rtsp_camera_unavailable() -> str | None:
    """Why the RTSP camera cannot run here, or None when it can."""
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


def end_process_group(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """End a process started in a session of its own, and all it started: SIGCONT (a
    stopped process cannot handle SIGTERM), SIGTERM, then SIGKILL after ``timeout_s``."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGCONT)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class RtspCamera:
    """``clip`` served on a loopback port; the port is kept across :meth:`restart`."""

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
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> RtspCamera:
        """Launch the server and return once FFmpeg can open :attr:`url`."""
        if self.running:
            raise RuntimeError("the RTSP camera is already running")
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
            raise RuntimeError(f"the RTSP camera did not start: {line!r}\n{self.log()}")
        self.port = int(line.split()[1].rsplit(":", 1)[1].split("/", 1)[0])
        self._wait_until_readable(deadline)
        return self

    def stop(self) -> None:
        """End the server's process group (SIGTERM, then SIGKILL after 5 s)."""
        process, self._process = self._process, None
        if process is None:
            return
        end_process_group(process, 5.0)
        if process.stdout is not None:
            process.stdout.close()

    def restart(self, timeout: float = 10.0) -> RtspCamera:
        """Stop and start again on the same port, so the same URL works afterwards."""
        self.stop()
        return self.start(timeout)

    def freeze(self, frozen: bool = True) -> None:
        """Stop (SIGSTOP) or resume (SIGCONT) the server: connections stay open, silent."""
        if self._process is None:
            raise RuntimeError("the RTSP camera is not running")
        os.killpg(self._process.pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def log(self) -> str:
        """What the server wrote to stderr so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def close(self) -> None:
        self.stop()
        self._log.close()

    def __enter__(self) -> RtspCamera:
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
                    message = f"FFmpeg cannot open {self.url}: {error}\n{self.log()}"
                    raise RuntimeError(message) from error
                time.sleep(0.1)
