"""WebRTCSource against a real aiortc publisher in the same event loop.

Most tests exchange SDP in-process; the last one goes through a minimal WHIP endpoint
to check the ``publish_whip`` helper too. aiortc connects over this host's own
addresses, with no STUN, in well under a second.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from fakewatch.stream.config import ConfigError, describe_config, load_config
from fakewatch.stream.sources.frames import DropReason, LatestFrame, SourceFrame
from fakewatch.stream.sources.source import SourceStatus
from fakewatch.stream.sources.webrtc import (
    MAX_OFFER_BYTES,
    WebRTCOfferError,
    WebRTCSource,
    rtc_ice_servers,
)
from tests.support.media import face_clip
from tests.support.webrtc import close_publisher, create_publisher, publish_whip

pytestmark = pytest.mark.timeout(60)

SIZE = (320, 240)


class Recorder:
    """A source with its frames slot, status changes and drops recorded."""

    def __init__(self, max_size: tuple[int, int] = (1920, 1080), **kwargs: Any) -> None:
        self.statuses: list[tuple[SourceStatus, str]] = []
        self.drops: Counter[DropReason] = Counter()
        self.frames = LatestFrame(on_drop=self.count_drop)
        self.source = WebRTCSource(
            frames=self.frames,
            on_status=lambda status, detail: self.statuses.append((status, detail)),
            on_drop=self.count_drop,
            description="webrtc:test",
            max_width=max_size[0],
            max_height=max_size[1],
            **kwargs,
        )

    def count_drop(self, reason: DropReason) -> None:
        self.drops[reason] += 1

    @property
    def status_names(self) -> list[SourceStatus]:
        return [status for status, _ in self.statuses]


async def connect(recorder: Recorder, publisher: RTCPeerConnection) -> None:
    answer = await recorder.source.accept(publisher.localDescription.sdp)
    await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        await asyncio.sleep(0.02)


async def take_frames(frames: LatestFrame, count: int, timeout: float = 5.0) -> list[SourceFrame]:
    taken: list[SourceFrame] = []
    deadline = time.monotonic() + timeout
    while len(taken) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(taken)} of {count} frames arrived")
        frame = frames.take()
        if frame is not None:
            taken.append(frame)
        await asyncio.sleep(0.03)
    return taken


def publishing(
    clip: list[np.ndarray],
    scenario: Callable[[Recorder, RTCPeerConnection], Coroutine[Any, Any, None]],
    recorder: Recorder | None = None,
    fps: float = 20,
    audio: bool = False,
) -> None:
    """Run ``scenario`` with a source and a publisher of ``clip``; clean both up after."""

    async def main() -> None:
        source = recorder or Recorder()
        publisher = await create_publisher(frames=clip, fps=fps, audio=audio)
        try:
            await scenario(source, publisher)
        finally:
            await close_publisher(publisher)
            await source.source.stop()

    asyncio.run(main())


@pytest.fixture(scope="module")
def clip(astronaut: np.ndarray) -> list[np.ndarray]:
    return face_clip(astronaut, count=12, size=SIZE)


def test_published_face_arrives_as_rgb_frames_and_status_follows_publisher(
    clip: list[np.ndarray],
) -> None:
    async def scenario(recorder: Recorder, publisher: RTCPeerConnection) -> None:
        await connect(recorder, publisher)
        assert recorder.status_names == [SourceStatus.CONNECTING]
        frames = await take_frames(recorder.frames, 5)
        assert recorder.source.status is SourceStatus.UP
        assert recorder.statuses[1] == (SourceStatus.UP, "receiving 320x240 video")

        for frame in frames:
            assert frame.image.shape == (SIZE[1], SIZE[0], 3)
            assert frame.image.dtype == np.uint8
            assert frame.pts_s is not None
            # One of the clip's frames (VP8 is lossy), colours in RGB order.
            error = min(np.abs(frame.image.astype(int) - sent).mean() for sent in clip)
            assert error < 12
        times = [frame.capture_time for frame in frames]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert abs(times[-1] - time.time()) < 2
        indexes = [frame.index for frame in frames]
        assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)
        pts = [frame.pts_s for frame in frames]
        assert pts == sorted(pts)

        await close_publisher(publisher)
        await wait_until(lambda: recorder.source.status is SourceStatus.DOWN)
        await recorder.source.stop()
        assert recorder.status_names == [
            SourceStatus.CONNECTING,
            SourceStatus.UP,
            SourceStatus.DOWN,
            SourceStatus.STOPPED,
        ]

    publishing(clip, scenario)


def test_oversized_frames_are_dropped_counted_and_logged_once(
    clip: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(recorder: Recorder, publisher: RTCPeerConnection) -> None:
        await connect(recorder, publisher)
        await wait_until(lambda: recorder.drops[DropReason.OVERSIZED] >= 5)
        assert recorder.frames.received == 0
        assert recorder.frames.take() is None
        assert recorder.source.status is SourceStatus.CONNECTING

    caplog.set_level(logging.WARNING, logger="fakewatch.stream.sources.webrtc")
    publishing(clip, scenario, Recorder(max_size=(SIZE[0] - 2, SIZE[1])), fps=30)
    warnings = [record.getMessage() for record in caplog.records if "dropping" in record.message]
    assert warnings == ["webrtc:test: dropping 320x240 frames, larger than the maximum 318x240"]


def test_audio_is_read_and_discarded_so_no_queue_grows(clip: list[np.ndarray]) -> None:
    async def scenario(recorder: Recorder, publisher: RTCPeerConnection) -> None:
        await connect(recorder, publisher)
        await take_frames(recorder.frames, 2)
        await asyncio.sleep(1.0)  # 50 audio frames: an unread track would hold them all
        pc = recorder.source._pc
        assert pc is not None
        tracks = {receiver.track.kind: receiver.track for receiver in pc.getReceivers()}
        assert set(tracks) == {"audio", "video"}
        # aiortc's per-track queue of decoded frames (unbounded) is what must stay empty.
        for track in tracks.values():
            assert track._queue.qsize() <= 2, track.kind
        assert recorder.source.status is SourceStatus.UP

    publishing(clip, scenario, audio=True)


def _set_direction(direction: str) -> Callable[[str], str]:
    return lambda sdp: sdp.replace("a=sendonly", f"a={direction}")


BAD_OFFERS: dict[str, tuple[Callable[[str], str], str]] = {
    "empty": (lambda sdp: "", "the SDP offer is empty"),
    "blank": (lambda sdp: " \r\n", "the SDP offer is empty"),
    "json": (
        lambda sdp: f'{{"sdp": "{sdp[:20]}", "type": "offer"}}',
        "the body is not an SDP offer: SDP begins with 'v=0'",
    ),
    "too large": (
        lambda sdp: sdp + "a=x-padding:" + "x" * MAX_OFFER_BYTES + "\r\n",
        r"the SDP offer is \d+ bytes; the limit is 65536",
    ),
    "truncated m-line": (
        lambda sdp: "v=0\r\nm=video\r\n",
        "the SDP offer cannot be parsed: AssertionError",
    ),
    "no video": (
        lambda sdp: sdp.replace("m=video", "m=audio").replace("VP8/90000", "opus/48000/2"),
        "the SDP offer has no video section \\(m=video\\); its media: audio",
    ),
    "receive-only video": (
        _set_direction("recvonly"),
        "the SDP offer does not send video \\(video direction: recvonly\\)",
    ),
    "no ICE credentials": (
        lambda sdp: re.sub(r"a=ice-ufrag:.*\r\n", "", sdp),
        "the SDP offer was refused: ValueError: ICE username fragment or password is missing",
    ),
    "bad DTLS setup": (
        lambda sdp: sdp.replace("a=setup:actpass", "a=setup:bogus"),
        "the SDP offer cannot be parsed: KeyError: 'bogus'",
    ),
    "no common codec": (
        lambda sdp: sdp.replace("VP8/90000", "AV1/90000").replace("H264/90000", "AV1/90000"),
        "the SDP offer was refused: OperationError: Failed to set remote video description",
    ),
}


@pytest.mark.parametrize("case", list(BAD_OFFERS))
def test_bad_offer_is_refused_with_the_reason(clip: list[np.ndarray], case: str) -> None:
    mutate, message = BAD_OFFERS[case]

    async def scenario(recorder: Recorder, publisher: RTCPeerConnection) -> None:
        with pytest.raises(WebRTCOfferError, match=message):
            await recorder.source.accept(mutate(publisher.localDescription.sdp))
        assert recorder.status_names == [SourceStatus.STOPPED]
        with pytest.raises(RuntimeError, match="accept\\(\\) may be called once"):
            await recorder.source.accept(publisher.localDescription.sdp)

    publishing(clip, scenario)


def test_stop_is_idempotent_and_bounded(clip: list[np.ndarray]) -> None:
    async def scenario(recorder: Recorder, publisher: RTCPeerConnection) -> None:
        await connect(recorder, publisher)
        await take_frames(recorder.frames, 2)
        started = time.monotonic()
        await asyncio.gather(recorder.source.stop(), recorder.source.stop())
        await recorder.source.stop()
        assert time.monotonic() - started < 1.0
        assert recorder.status_names == [
            SourceStatus.CONNECTING,
            SourceStatus.UP,
            SourceStatus.STOPPED,
        ]
        pc = recorder.source._pc
        assert pc is not None and pc.connectionState == "closed"
        # Nothing more arrives once stopped.
        recorder.frames.take()
        await asyncio.sleep(0.3)
        assert recorder.frames.take() is None

    publishing(clip, scenario)


def test_stop_before_accept() -> None:
    async def main() -> None:
        recorder = Recorder()
        await recorder.source.stop()
        await recorder.source.stop()
        assert recorder.status_names == [SourceStatus.STOPPED]
        with pytest.raises(RuntimeError, match="before stop"):
            await recorder.source.accept("v=0\r\n")

    asyncio.run(main())


def test_stop_gives_up_on_a_hung_close_after_the_timeout(
    clip: list[np.ndarray], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(recorder: Recorder, publisher: RTCPeerConnection) -> None:
        await connect(recorder, publisher)
        pc = recorder.source._pc
        assert pc is not None
        real_close = pc.close

        async def hung_close() -> None:
            await asyncio.sleep(3600)

        monkeypatch.setattr(pc, "close", hung_close)
        started = time.monotonic()
        await recorder.source.stop()
        assert 0.2 <= time.monotonic() - started < 1.0
        assert recorder.source.status is SourceStatus.STOPPED
        await real_close()

    caplog.set_level(logging.WARNING, logger="fakewatch.stream.sources.webrtc")
    publishing(clip, scenario, Recorder(close_timeout_s=0.2))
    assert "did not close within 0.2 s" in caplog.text


def test_publish_whip_speaks_rfc_9725(clip: list[np.ndarray]) -> None:
    """``publish_whip`` against a minimal WHIP endpoint that feeds a WebRTCSource."""
    recorder = Recorder()
    requests: list[tuple[str, str, str | None, str | None]] = []

    async def post(request: web.Request) -> web.Response:
        requests.append(
            (
                request.method,
                request.path,
                request.content_type,
                request.headers.get("Authorization"),
            )
        )
        answer = await recorder.source.accept(await request.text())
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": "/whip/sessions/abc"},
        )

    async def delete(request: web.Request) -> web.Response:
        requests.append((request.method, request.path, None, request.headers.get("Authorization")))
        await recorder.source.stop()
        return web.Response(status=200)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/whip", post)
        app.router.add_delete("/whip/sessions/abc", delete)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            session = await publish_whip(f"http://{host}:{port}/whip", frames=clip, token="s3cret")
            try:
                assert session.location == f"http://{host}:{port}/whip/sessions/abc"
                frames = await take_frames(recorder.frames, 2)
                assert frames[0].image.shape == (SIZE[1], SIZE[0], 3)
            finally:
                await session.close()
            assert recorder.source.status is SourceStatus.STOPPED
        finally:
            await recorder.source.stop()
            await runner.cleanup()

    asyncio.run(main())
    assert requests == [
        ("POST", "/whip", "application/sdp", "Bearer s3cret"),
        ("DELETE", "/whip/sessions/abc", None, "Bearer s3cret"),
    ]


def ice_config(servers: Any) -> Any:
    return load_config(environ={}, overrides={"webrtc.ice_servers": servers}).webrtc


def test_ice_servers_are_checked_and_reach_aiortc_with_their_credentials() -> None:
    webrtc = ice_config(
        [
            {"urls": "stun:stun.example.org"},
            {"urls": ["turns:turn.example.org:443"], "username": "u", "credential": "pw-1"},
        ]
    )
    assert webrtc.stun_urls() == ["stun:stun.example.org"]
    servers = rtc_ice_servers(webrtc.ice_servers)
    assert [(s.urls, s.username, s.credential) for s in servers] == [
        (["stun:stun.example.org"], None, None),
        (["turns:turn.example.org:443"], "u", "pw-1"),
    ]
    assert "pw-1" not in repr(webrtc) and "pw-1" not in describe_config(
        load_config(environ={}, overrides={"webrtc.ice_servers": webrtc.ice_servers})
    )
    source = WebRTCSource(
        frames=LatestFrame(), description="t", max_width=64, max_height=64, ice_servers=servers
    )
    assert source.ice_urls == ["stun:stun.example.org", "turns:turn.example.org:443"]


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        ([{"urls": "http://stun.example.org"}], "begins with stun:, turn: or turns:"),
        ([{"urls": "stun:host:port"}], "is not a STUN or TURN URL"),
        ([{"urls": "turn:turn.example.org"}], "set its username and credential"),
        ([{"urls": "turn:t.example.org", "username": "u"}], "set its username and credential"),
        (
            [{"urls": "turn:t.example.org?transport=tls", "username": "u", "credential": "p"}],
            "transport is udp or tcp",
        ),
        (
            [{"urls": "turns:t.example.org?transport=udp", "username": "u", "credential": "p"}],
            "runs over TCP",
        ),
        ([{"urls": ["stun:a.example.org", "stun:b.example.org"]}], "at most one of each"),
        ([{"urls": []}], "webrtc.ice_servers.0.urls"),
        ([{"url": "stun:a.example.org"}], "webrtc.ice_servers.0.url"),
    ],
)
def test_bad_ice_servers_are_refused_naming_the_key(servers: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        ice_config(servers)
    assert "webrtc" in str(refused.value)
