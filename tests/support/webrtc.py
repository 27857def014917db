"""A WebRTC publisher for the streaming tests: aiortc sending a clip or numpy frames.

``create_publisher`` makes a peer connection whose offer is ready (all ICE candidates
gathered, no STUN), for tests that exchange SDP in-process. ``publish_whip`` speaks WHIP
(RFC 9725) to an HTTP endpoint: POST the offer as ``application/sdp``, expect ``201
Created`` with the answer and a ``Location``, DELETE that location to stop.
``publish_offer_json`` does the same for a plain JSON offer endpoint.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame
from yarl import URL

_CLOCK_RATE = 90_000


class NumpyVideoTrack(VideoStreamTrack):
    """Sends RGB ``uint8 (H, W, 3)`` frames in a loop at ``fps`` frames a second."""

    def __init__(self, frames: list[np.ndarray], fps: float = 10) -> None:
        super().__init__()
        if not frames:
            raise ValueError("no frames to send")
        self._frames = frames
        self._fps = fps
        self._sent = 0
        self._started_at: float | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._started_at is None:
            self._started_at = time.monotonic()
        else:
            due = self._started_at + self._sent / self._fps
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = VideoFrame.from_ndarray(self._frames[self._sent % len(self._frames)], "rgb24")
        frame.pts = round(self._sent * _CLOCK_RATE / self._fps)
        frame.time_base = fractions.Fraction(1, _CLOCK_RATE)
        self._sent += 1
        return frame


async def create_publisher(
    clip: Path | None = None,
    frames: list[np.ndarray] | None = None,
    fps: float = 10,
    audio: bool = False,
) -> RTCPeerConnection:
    """A peer connection sending ``clip`` (looped) or ``frames``, its offer already set.

    The offer is ``pc.localDescription.sdp``. ``audio`` adds a silent audio track (or
    the clip's audio). Close it with :func:`close_publisher`, which also stops a clip's
    decoder thread.
    """
    if (clip is None) == (frames is None):
        raise ValueError("give exactly one of clip and frames")
    tracks: list[MediaStreamTrack] = []
    if clip is not None:
        player = MediaPlayer(str(clip), loop=True)
        if player.video is None:
            raise ValueError(f"{clip} has no video")
        tracks.append(player.video)
        if audio:
            tracks.append(player.audio if player.audio is not None else AudioStreamTrack())
    else:
        assert frames is not None
        tracks.append(NumpyVideoTrack(frames, fps))
        if audio:
            tracks.append(AudioStreamTrack())
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def close_publisher(pc: RTCPeerConnection) -> None:
    """Stop the publisher's tracks (a clip's decoder thread with them) and close ``pc``."""
    for sender in pc.getSenders():
        if sender.track is not None:
            sender.track.stop()
    await pc.close()


@dataclass
class WhipSession:
    """A publish in progress: ``location`` is the absolute session URL from the server."""

    location: str | None
    pc: RTCPeerConnection
    answer_sdp: str
    http: aiohttp.ClientSession
    headers: dict[str, str] = field(default_factory=dict)
    id: str | None = None
    _closed: bool = False

    async def close(self) -> None:
        """DELETE the session's location (if any), then close the peer connection."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.location is not None:
                async with self.http.delete(self.location, headers=self.headers) as response:
                    if response.status not in (200, 202, 204):
                        text = await response.text()
                        raise RuntimeError(
                            f"DELETE {self.location} answered {response.status}: {text[:200]}"
                        )
        finally:
            await self.http.close()
            await close_publisher(self.pc)


def _auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def publish_whip(
    url: str,
    clip: Path | None = None,
    frames: list[np.ndarray] | None = None,
    fps: float = 10,
    token: str | None = None,
    audio: bool = False,
) -> WhipSession:
    """Publish to a WHIP endpoint; raises ``RuntimeError`` unless it answers as RFC 9725 says.

    The session's ``location`` is the ``Location`` header resolved against ``url``.
    """
    pc = await create_publisher(clip, frames, fps, audio)
    http = aiohttp.ClientSession()
    headers = _auth(token)
    try:
        post_headers = {**headers, "Content-Type": "application/sdp"}
        async with http.post(url, data=pc.localDescription.sdp, headers=post_headers) as response:
            body = await response.text()
            if response.status != 201:
                raise RuntimeError(f"WHIP POST {url} answered {response.status}: {body[:200]}")
            if response.content_type != "application/sdp":
                raise RuntimeError(f"WHIP answer has Content-Type {response.content_type!r}")
            location = response.headers.get("Location")
            if not location:
                raise RuntimeError("WHIP answer has no Location header")
            absolute = str(response.url.join(URL(location)))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    except BaseException:
        await http.close()
        await close_publisher(pc)
        raise
    return WhipSession(location=absolute, pc=pc, answer_sdp=body, http=http, headers=headers)


async def publish_offer_json(
    url: str,
    clip: Path | None = None,
    frames: list[np.ndarray] | None = None,
    fps: float = 10,
    token: str | None = None,
    audio: bool = False,
) -> WhipSession:
    """Publish to a JSON endpoint: POST ``{"sdp", "type": "offer"}``, expect 200 or 201
    with ``{"sdp", "type": "answer", "id"}``. ``location`` is the ``Location`` header
    when the server sends one (closing DELETEs it), else None.
    """
    pc = await create_publisher(clip, frames, fps, audio)
    http = aiohttp.ClientSession()
    headers = _auth(token)
    try:
        offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
        async with http.post(url, json=offer, headers=headers) as response:
            if response.status not in (200, 201):
                text = await response.text()
                raise RuntimeError(f"POST {url} answered {response.status}: {text[:200]}")
            answer: dict[str, Any] = await response.json()
            location = response.headers.get("Location")
            absolute = str(response.url.join(URL(location))) if location else None
        if answer.get("type") != "answer" or not isinstance(answer.get("sdp"), str):
            raise RuntimeError(f"not an SDP answer: {str(answer)[:200]}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    except BaseException:
        await http.close()
        await close_publisher(pc)
        raise
    session_id = answer.get("id")
    return WhipSession(
        location=absolute,
        pc=pc,
        answer_sdp=answer["sdp"],
        http=http,
        headers=headers,
        id=None if session_id is None else str(session_id),
    )
