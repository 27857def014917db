"""A WebRTC source: one aiortc peer connection receiving a published video.

A publisher (a WHIP client, or a browser posting a plain SDP offer) sends an offer; the
HTTP layer hands it to :meth:`WebRTCSource.accept`, which validates it and returns the
answer. From then on the published video arrives as decoded frames in the source's
:class:`LatestFrame`.

aiortc decodes in its own thread per track and queues every decoded frame for the
track's reader in an unbounded queue: a track nobody reads leaks memory. So every track
the publisher sends gets a reader that calls ``recv()`` without pause; audio is read and
discarded, and only the newest video frame waits for conversion to RGB, the rest are
counted as dropped.

A WebRTC source never reconnects: when the publisher goes away the source goes DOWN for
good and a new publish makes a new source.

Behind NAT the answer needs more than this host's addresses: ``webrtc.ice_servers`` (a
STUN server for the public address, a TURN server to relay through) reach the peer
connection through :func:`rtc_ice_servers`. aiortc uses one STUN and one TURN server and
binds an ephemeral UDP port per session (there is no port range to open): a service
behind NAT runs on the host's network or relays through TURN.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription
from av import VideoFrame

from fakewatch.stream.config import IceServer
from fakewatch.stream.logs import describe_error
from fakewatch.stream.sources.frames import DropReason, LatestFrame, SourceFrame
from fakewatch.stream.sources.source import SourceStatus, StatusListener

logger = logging.getLogger(__name__)

MAX_OFFER_BYTES = 64 * 1024
"""The largest SDP offer accepted; real offers are a few kilobytes."""

_SENDING_DIRECTIONS = frozenset({"sendonly", "sendrecv"})


def rtc_ice_servers(servers: Sequence[IceServer]) -> list[RTCIceServer]:
    """The configured STUN and TURN servers as aiortc takes them, credentials revealed."""
    return [
        RTCIceServer(
            urls=list(server.urls),
            username=server.username,
            credential=None if server.credential is None else server.credential.get_secret_value(),
        )
        for server in servers
    ]


class WebRTCOfferError(ValueError):
    """The SDP offer cannot be accepted; the message says why (safe to show the client)."""


def validate_offer(offer_sdp: str) -> SessionDescription:
    """Check that ``offer_sdp`` is a parseable SDP offer that sends video.

    Returns the parsed description; raises :class:`WebRTCOfferError` otherwise.
    """
    if not offer_sdp.strip():
        raise WebRTCOfferError("the SDP offer is empty")
    size = len(offer_sdp.encode())
    if size > MAX_OFFER_BYTES:
        raise WebRTCOfferError(f"the SDP offer is {size} bytes; the limit is {MAX_OFFER_BYTES}")
    if not offer_sdp.lstrip().startswith("v=0"):
        raise WebRTCOfferError("the body is not an SDP offer: SDP begins with 'v=0'")
    try:
        parsed = SessionDescription.parse(offer_sdp)
    except Exception as error:  # aiortc's parser fails with assorted exception types
        raise WebRTCOfferError(
            f"the SDP offer cannot be parsed: {describe_error(error)}"
        ) from error
    videos = [media for media in parsed.media if media.kind == "video"]
    if not videos:
        kinds = ", ".join(media.kind for media in parsed.media) or "none"
        raise WebRTCOfferError(f"the SDP offer has no video section (m=video); its media: {kinds}")
    # An offer without a direction attribute is sendrecv.
    if not any((media.direction or "sendrecv") in _SENDING_DIRECTIONS for media in videos):
        directions = ", ".join(media.direction or "sendrecv" for media in videos)
        raise WebRTCOfferError(
            f"the SDP offer does not send video (video direction: {directions}); "
            "a publisher's video must be sendonly or sendrecv"
        )
    return parsed


class WebRTCSource:
    """A video published over WebRTC (WHIP or a plain SDP offer), as a ``Source``.

    Receiving begins in :meth:`accept`, when the publisher's offer arrives;
    :meth:`start` does nothing. Status: CONNECTING once the offer is accepted, UP at
    the first frame delivered to ``frames``, DOWN when the publisher ends the video
    track or the connection fails or closes (final: the publisher must publish again),
    STOPPED after :meth:`stop`. Listeners are called on the event loop.

    Every received frame goes to ``frames`` as it is decoded; it is converted to RGB
    only if the sampler takes it (:class:`SourceFrame`), and ``frames`` reports those
    replaced before that as ``DropReason.SUPERSEDED``. Frames wider than ``max_width`` or
    taller than ``max_height`` are dropped; ``on_drop`` gets ``DropReason.OVERSIZED``
    for each.
    """

    kind = "webrtc"
    recovers = False
    """DOWN is final: the publisher must publish again, as a new source."""

    def __init__(
        self,
        *,
        frames: LatestFrame,
        description: str,
        max_width: int,
        max_height: int,
        on_status: StatusListener | None = None,
        on_drop: Callable[[DropReason], None] | None = None,
        close_timeout_s: float = 5.0,
        ice_servers: Sequence[RTCIceServer] = (),
    ) -> None:
        """``ice_servers`` defaults to none: the answer offers this host's own addresses
        (aiortc would otherwise ask Google's public STUN server)."""
        if max_width <= 0 or max_height <= 0:
            raise ValueError(f"the maximum frame size must be positive: {max_width}x{max_height}")
        if close_timeout_s <= 0:
            raise ValueError(f"close_timeout_s must be positive: {close_timeout_s}")
        self.frames = frames
        self._description = description
        self._max_width = max_width
        self._max_height = max_height
        self._on_status = on_status
        self._on_drop = on_drop
        self._close_timeout_s = close_timeout_s
        self._configuration = RTCConfiguration(iceServers=list(ice_servers))
        self._status = SourceStatus.CONNECTING
        self._pc: RTCPeerConnection | None = None
        self._video_track: MediaStreamTrack | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._oversized_logged: tuple[int, int] | None = None
        self._stopping = False
        self._stop_task: asyncio.Task[None] | None = None

    @property
    def status(self) -> SourceStatus:
        return self._status

    @property
    def description(self) -> str:
        return self._description

    @property
    def configuration(self) -> RTCConfiguration:
        """The peer connection's configuration (its ICE servers hold TURN credentials:
        never show it)."""
        return self._configuration

    @property
    def ice_urls(self) -> list[str]:
        """The STUN and TURN URLs the peer connection uses (no credentials)."""
        urls: list[str] = []
        for server in self._configuration.iceServers or ():
            urls += [server.urls] if isinstance(server.urls, str) else server.urls
        return urls

    async def start(self) -> None:
        """Nothing to do: a WebRTC source starts receiving in :meth:`accept`."""

    async def accept(self, offer_sdp: str) -> str:
        """Answer the publisher's SDP offer and begin receiving; returns the answer SDP.

        The answer carries all of this host's ICE candidates (no trickle ICE). Raises
        :class:`WebRTCOfferError` for an offer that is malformed, too large, sends no
        video or cannot be negotiated. A failed accept leaves the source STOPPED.
        May be called once.
        """
        if self._pc is not None or self._stopping:
            raise RuntimeError(f"{self._description}: accept() may be called once, before stop()")
        try:
            validate_offer(offer_sdp)
            pc = RTCPeerConnection(self._configuration)
            self._pc = pc
            pc.on("track", self._on_track)
            pc.on("connectionstatechange", self._on_connection_state_change)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
                answer = await pc.createAnswer()
            except Exception as error:  # aiortc reports bad offers with assorted exceptions
                raise WebRTCOfferError(
                    f"the SDP offer was refused: {describe_error(error)}"
                ) from error
            await pc.setLocalDescription(answer)  # gathers this host's ICE candidates
        except BaseException:  # cancelled too: release the peer connection
            await self.stop()
            raise
        self._set_status(SourceStatus.CONNECTING, "offer accepted; waiting for video")
        return pc.localDescription.sdp

    async def stop(self) -> None:
        """Stop reading, close the peer connection (at most ``close_timeout_s``), release
        everything; idempotent, and concurrent calls wait for the same stop."""
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._stop())
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pc is not None:
            try:
                await asyncio.wait_for(self._pc.close(), self._close_timeout_s)
            except TimeoutError:
                logger.warning(
                    "%s: the peer connection did not close within %.1f s; abandoned",
                    self._description,
                    self._close_timeout_s,
                )
            except Exception:
                logger.exception("%s: closing the peer connection failed", self._description)
        self._set_status(SourceStatus.STOPPED, "stopped")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and self._video_track is None:
            self._video_track = track
            self._spawn(self._read_video(track))
        else:
            if track.kind == "video":
                logger.info("%s: only the first video track is analysed", self._description)
            self._spawn(self._discard(track))

    def _on_connection_state_change(self) -> None:
        if self._pc is not None and self._pc.connectionState in ("failed", "closed"):
            self._set_status(SourceStatus.DOWN, f"WebRTC connection {self._pc.connectionState}")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_video(self, track: MediaStreamTrack) -> None:
        """Receive every frame at once (aiortc's queue never grows); ``frames`` keeps the
        newest."""
        index = 0
        try:
            while True:
                frame = await track.recv()
                received = time.time()
                if not isinstance(frame, VideoFrame):
                    continue
                if frame.width > self._max_width or frame.height > self._max_height:
                    self._drop_oversized(frame)
                else:
                    self.frames.put(SourceFrame(frame, received, index, frame.time))
                    if self._status is SourceStatus.CONNECTING:
                        size = f"{frame.width}x{frame.height}"
                        self._set_status(SourceStatus.UP, f"receiving {size} video")
                index += 1
        except MediaStreamError:
            self._set_status(SourceStatus.DOWN, "the publisher ended the video track")

    async def _discard(self, track: MediaStreamTrack) -> None:
        """Read and drop a track's frames (audio, extra video) so they never queue up."""
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            pass

    def _drop_oversized(self, frame: VideoFrame) -> None:
        self._drop(DropReason.OVERSIZED)
        size = (frame.width, frame.height)
        if size != self._oversized_logged:
            self._oversized_logged = size
            logger.warning(
                "%s: dropping %dx%d frames, larger than the maximum %dx%d",
                self._description,
                frame.width,
                frame.height,
                self._max_width,
                self._max_height,
            )

    def _drop(self, reason: DropReason) -> None:
        if self._on_drop is not None:
            self._on_drop(reason)

    def _set_status(self, status: SourceStatus, detail: str) -> None:
        """Move to ``status``; DOWN is final until STOPPED, and nothing follows STOPPED."""
        if self._status is SourceStatus.STOPPED:
            return
        if self._stopping and status is not SourceStatus.STOPPED:
            return
        if self._status is SourceStatus.DOWN and status is not SourceStatus.STOPPED:
            return
        self._status = status
        logger.info("%s: %s (%s)", self._description, status.value, detail)
        if self._on_status is not None:
            self._on_status(status, detail)
