"""Any URL FFmpeg opens (RTSP, RTMP, SRT, HLS, HTTP, files), decoded by PyAV in a thread.

The decoder thread connects, decodes, and puts every frame into the stream's
:class:`~fakewatch.stream.sources.frames.LatestFrame`; the event loop never blocks on it. When
the connection fails, ends or stalls, the source reports ``down`` and reconnects after
an exponential backoff with jitter, capped; local files restart at once when looping
is on (demos). Two guards against a stall: FFmpeg's own read timeout ends a blocked
socket read, and a watchdog ends a connection that delivers packets but no frame for
``stall_timeout_s``.

URLs are checked before FFmpeg sees them: the scheme must be in the allowlist, and the
same list goes to FFmpeg as ``protocol_whitelist`` so that a playlist or a redirect
cannot reach ``file:``, ``concat:`` or ``subfile:`` behind it.

Before the first frame FFmpeg probes the stream; for the schemes in
``sources.probe.schemes`` (RTSP, whose SDP already declares the codecs) the probe is
capped by ``sources.probe`` (:func:`open_options`). With ``sources.hwaccel`` the decoder
runs on that device through PyAV's :class:`~av.codec.hwaccel.HWAccel`; a device that is
missing, or that cannot decode the stream's codec, is logged once and the stream is
decoded in software (:func:`hwaccel_error`).
"""

from __future__ import annotations

import functools
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import av
from av.codec.hwaccel import HWAccel, hwdevices_available

from fakewatch.stream.backoff import backoff_delay
from fakewatch.stream.config import SourceConfig
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log
from fakewatch.stream.redact import redact_url
from fakewatch.stream.sources.frames import DropReason, LatestFrame, SourceFrame
from fakewatch.stream.sources.source import SourceStatus, StatusListener

logger = logging.getLogger(f"{LOGGER_NAME}.source")

# protocols FFmpeg needs underneath each allowed scheme
_TRANSPORTS = {
    "rtsp": ("rtp", "udp", "tcp"),
    "rtsps": ("rtp", "udp", "tcp", "tls", "srtp"),
    "rtmp": ("tcp",),
    "rtmps": ("tcp", "tls"),
    "srt": ("udp",),
    "http": ("tcp", "hls", "crypto", "httpproxy"),
    "https": ("tcp", "tls", "hls", "crypto", "httpproxy", "http"),
    "hls": ("http", "https", "tcp", "tls", "crypto"),
    "udp": (),
    "rtp": ("udp",),
    "file": (),
}


MAX_URL_LENGTH = 4096

_PROTOCOL_PREFIX = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9+.-]*)[,:]")


class SourceURLError(ValueError):
    """A stream URL that is refused; the message says why (credentials redacted)."""


class StallError(RuntimeError):
    """The connection delivered no frame for longer than the stall timeout."""


def check_url(url: str, config: SourceConfig) -> str:
    """The URL FFmpeg should open, or :class:`SourceURLError`.

    A bare path is accepted as a local file only when ``allow_local_files`` is on.
    """
    url = url.strip()
    if not url:
        raise SourceURLError("the stream URL is empty")
    if any(ch in url for ch in "\r\n\0"):
        raise SourceURLError("the stream URL contains control characters")
    if len(url) > MAX_URL_LENGTH:  # the bound config files have (streams.N.url)
        raise SourceURLError(f"the stream URL is {len(url)} characters; at most {MAX_URL_LENGTH}")
    # FFmpeg reads "name:rest" (concat:, subfile,,...:, pipe:, data:) as protocol "name"
    prefix = _PROTOCOL_PREFIX.match(url)
    scheme = prefix["name"].lower() if prefix else ""
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme in ("", "file"):
        if not config.allow_local_files:
            raise SourceURLError(
                f"{redact_url(url)} is a local file; local files are off "
                "(sources.allow_local_files)"
            )
        path = Path(urlsplit(url).path if scheme == "file" else url)
        if not path.is_file():
            raise SourceURLError(f"{path} is not a file")
        return str(path)
    if scheme not in config.protocols or "://" not in url:
        allowed = ", ".join(config.protocols)
        raise SourceURLError(f"the URL scheme {scheme!r} is not allowed (allowed: {allowed})")
    if not urlsplit(url).hostname:
        raise SourceURLError(f"{redact_url(url)} has no host")
    return url


def protocol_whitelist(url: str, config: SourceConfig) -> str:
    """FFmpeg's ``protocol_whitelist`` for ``url``: its scheme and what it needs below."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else "file"
    allowed = {scheme, *_TRANSPORTS.get(scheme, ())}
    if scheme == "file" or config.allow_local_files:
        allowed.add("file")
    return ",".join(sorted(allowed))


def open_options(url: str, config: SourceConfig) -> dict[str, str]:
    """The options ``av.open`` gets for ``url``: the protocol whitelist, RTSP's transport,
    and the probe limits where ``sources.probe`` applies."""
    options = {"protocol_whitelist": protocol_whitelist(url, config)}
    scheme = urlsplit(url).scheme.lower() if "://" in url else "file"
    if scheme in ("rtsp", "rtsps"):
        options["rtsp_transport"] = config.rtsp_transport
    probe = config.probe
    if scheme in probe.schemes:
        options["analyzeduration"] = str(round(probe.analyzeduration_s * 1_000_000))
        options["probesize"] = str(probe.probesize)
    return options


HWACCEL_ORDER = ("cuda", "vaapi", "qsv", "videotoolbox", "d3d11va")
"""The devices ``hwaccel: auto`` tries, in this order."""


@functools.cache
def hwaccel_error(kind: str) -> str | None:
    """Why FFmpeg cannot decode H.264 on the ``kind`` device here; None when it can. A
    device context is made once to find out (per process)."""
    available = hwdevices_available()
    if kind not in available:
        return f"this FFmpeg has no {kind} support (it has: {', '.join(available) or 'none'})"
    try:
        HWAccel(kind, allow_software_fallback=False).create(av.Codec("h264", "r"))
    except (av.FFmpegError, OSError, NotImplementedError, RuntimeError) as error:
        return f"no usable {kind} device: {describe_error(error)}"
    return None


def pick_hwaccel(setting: str) -> tuple[str | None, str | None]:
    """The device to decode on for ``sources.hwaccel`` and, when that is none though one
    was asked for, why."""
    if setting == "none":
        return None, None
    if setting != "auto":
        error = hwaccel_error(setting)
        return (None, error) if error else (setting, None)
    for kind in HWACCEL_ORDER:
        if hwaccel_error(kind) is None:
            return kind, None
    return None, f"none of {', '.join(HWACCEL_ORDER)} is usable"


class FFmpegSource:
    """A URL decoded in a daemon thread; see the module docstring."""

    kind = "url"
    recovers = True
    """It reconnects by itself after going down."""

    def __init__(
        self,
        url: str,
        config: SourceConfig,
        frames: LatestFrame,
        on_status: StatusListener | None = None,
        on_drop: Callable[[DropReason], None] | None = None,
        analysis_fps: float = 5.0,
        max_width: int = 3840,
        max_height: int = 2160,
    ) -> None:
        self.url = check_url(url, config)
        self.config = config
        self.frames = frames
        self._on_status = on_status
        self._on_drop = on_drop
        self._analysis_fps = analysis_fps
        self._max_size = (max_width, max_height)
        self._local = "://" not in self.url
        self._status = SourceStatus.STOPPED
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random()
        self._delivered = False  # whether the current connection delivered a frame
        self.reconnects = 0
        self.last_error: str | None = None
        self.input_fps: float | None = None
        self.hwaccel: str | None = None
        """The device frames are decoded on (None: software), once the thread started."""
        self._hwaccel_checked = False
        self._hwaccel_unsupported_logged = False

    @property
    def status(self) -> SourceStatus:
        return self._status

    @property
    def description(self) -> str:
        return redact_url(self.url)

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"source {self.description}", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        import asyncio

        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            # a blocked read returns within the read timeout
            await asyncio.to_thread(thread.join, self.config.read_timeout_s + 2.0)
        self._set_status(SourceStatus.STOPPED, "stopped")

    def _set_status(self, status: SourceStatus, detail: str) -> None:
        if status == self._status:
            return
        self._status = status
        if self._on_status is not None:
            self._on_status(status, detail)

    def _choose_hwaccel(self) -> None:
        """Resolve ``sources.hwaccel`` to a device, once; log once when there is none."""
        if self._hwaccel_checked:
            return
        self._hwaccel_checked = True
        setting = self.config.hwaccel
        self.hwaccel, error = pick_hwaccel(setting)
        if error is not None:
            log(
                logger,
                logging.WARNING,
                "source.hwaccel_unavailable",
                source=self.description,
                hwaccel=setting,
                error=error,
                detail="decoding in software",
            )
        elif self.hwaccel is not None:
            log(
                logger, logging.INFO, "source.hwaccel", source=self.description, device=self.hwaccel
            )

    def _run(self) -> None:
        self._choose_hwaccel()
        attempt = 0
        while not self._stop.is_set():
            if self._status is not SourceStatus.UP:  # a looping file stays up
                self._set_status(SourceStatus.CONNECTING, "connecting")
            self._delivered = False
            try:
                delivered = self._read_once()
            except (av.FFmpegError, OSError, StallError, ValueError) as error:
                detail = describe_error(error)
                # a connection that delivered frames and then failed starts the backoff over
                delivered = self._delivered
                self.last_error = detail
                self._set_status(SourceStatus.DOWN, detail)
                log(logger, logging.WARNING, "source.error", source=self.description, error=detail)
            else:
                if self._local and self.config.loop_files and delivered:
                    continue  # a looping file restarts at once
                self._set_status(SourceStatus.DOWN, "the stream ended")
            if self._stop.is_set():
                break
            attempt = 0 if delivered else attempt + 1
            config = self.config
            delay = backoff_delay(
                attempt,
                config.reconnect_initial_s,
                config.reconnect_max_s,
                config.reconnect_jitter,
                self._rng,
            )
            self.reconnects += 1
            log(
                logger,
                logging.INFO,
                "source.reconnect",
                source=self.description,
                attempt=attempt,
                delay_s=delay,
            )
            self._stop.wait(delay)

    def _read_once(self) -> bool:
        """Open, decode until the end, the stop flag or an error; True if frames came."""
        config = self.config
        # A read interrupted by the timeout may first hand over the partial frame FFmpeg
        # held (RTSP does), and only the next read fails: two reads must fit in the stall
        # timeout for a silent socket to be noticed within it.
        read_timeout = min(config.read_timeout_s, config.stall_timeout_s / 2)
        hwaccel = None if self.hwaccel is None else HWAccel(self.hwaccel)
        container = av.open(
            self.url,
            options=open_options(self.url, config),
            timeout=(config.open_timeout_s, read_timeout),
            hwaccel=hwaccel,
        )
        delivered = False
        try:
            if not container.streams.video:
                raise ValueError("the source has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 0) or None
            self.input_fps = rate
            skip = rate is not None and rate >= config.skip_nonref_ratio * self._analysis_fps
            if skip:
                stream.codec_context.skip_frame = "NONREF"
            # Decoded in this thread alone: the streams are the parallelism, and FFmpeg's
            # own decoding threads (one more per stream) cost the same CPU, measured.
            stream.codec_context.thread_count = 1
            if hwaccel is not None and not stream.codec_context.is_hwaccel:
                self._hwaccel_unsupported(stream.codec_context.name)
            started = time.monotonic()
            first_pts: float | None = None
            last_frame = time.monotonic()
            index = 0
            corrupt: av.InvalidDataError | None = None
            for packet in container.demux(stream):
                if self._stop.is_set():
                    break
                decode_started = time.perf_counter()
                try:
                    decoded = packet.decode()
                except av.InvalidDataError as error:
                    # one corrupt packet: skip it, the decoder recovers at the next keyframe
                    # (a stream that never does is ended by the stall check below)
                    if corrupt is None:
                        log(
                            logger,
                            logging.WARNING,
                            "source.corrupt_packet",
                            source=self.description,
                            error=describe_error(error),
                            detail="skipped; decoding resumes at the next keyframe",
                        )
                    corrupt, decoded = error, []
                decode_s = time.perf_counter() - decode_started
                now = time.monotonic()
                if not decoded:
                    if skip and packet.size and not packet.is_keyframe:
                        self._drop(DropReason.SKIPPED)
                    if now - last_frame > config.stall_timeout_s:
                        raise StallError(f"no frame for {now - last_frame:.1f} s")
                    continue
                for frame in decoded:
                    last_frame = now
                    pts = float(frame.time) if frame.time is not None else None
                    if self._local and pts is not None:  # a file plays at its own pace
                        first_pts = pts if first_pts is None else first_pts
                        due = started + pts - first_pts
                        if due - time.monotonic() > config.stall_timeout_s:
                            # its timestamps jump ahead (a corrupt file): play on from
                            # here rather than wait, maybe for hours, with no frame
                            started, first_pts = time.monotonic(), pts
                        elif not self._wait_until(due):
                            return delivered
                    if frame.width > self._max_size[0] or frame.height > self._max_size[1]:
                        self._drop(DropReason.OVERSIZED)
                        continue
                    # converted to RGB only if the sampler takes it (SourceFrame.image)
                    self.frames.put(SourceFrame(frame, time.time(), index, pts, decode_s))
                    index += 1
                    if not delivered:
                        delivered = self._delivered = True
                        self._set_status(SourceStatus.UP, f"{frame.width}x{frame.height}")
            if not delivered and not self._stop.is_set():  # nothing came: say why
                raise corrupt or ValueError("the stream ended without delivering a frame")
        finally:
            container.close()
        return delivered

    def _hwaccel_unsupported(self, codec: str) -> None:
        if self._hwaccel_unsupported_logged:
            return
        self._hwaccel_unsupported_logged = True
        log(
            logger,
            logging.WARNING,
            "source.hwaccel_unavailable",
            source=self.description,
            hwaccel=self.hwaccel,
            error=f"the {self.hwaccel} device cannot decode {codec}",
            detail="decoding in software",
        )

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until the monotonic ``deadline``; False if stopped meanwhile."""
        while (ahead := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(ahead, 1.0)):
                return False
        return True

    def _drop(self, reason: DropReason) -> None:
        if self._on_drop is not None:
            self._on_drop(reason)
