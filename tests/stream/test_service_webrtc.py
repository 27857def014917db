"""WebRTC ingest through the service's API: WHIP (RFC 9725) and the JSON offer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from fakewatch.stream.analysis.events import EventType
from fakewatch.stream.sources.webrtc import WebRTCSource
from tests.support.media import face_clip
from tests.support.service import TOKEN, serving
from tests.support.turn import turn_server
from tests.support.webrtc import publish_offer_json, publish_whip


@pytest.fixture(scope="module")
def frames(astronaut: np.ndarray) -> list[np.ndarray]:
    return face_clip(astronaut, 30, (640, 480))


def test_whip_publisher_is_analysed_and_delete_ends_the_session(frames: list[np.ndarray]) -> None:
    async def run() -> None:
        async with serving() as service:
            session = await publish_whip(
                f"{service.base}/api/whip?name=caller", frames=frames, token=TOKEN
            )
            try:
                assert session.location is not None
                assert session.location.startswith(f"{service.base}/api/whip/")
                stream = session.location.rsplit("/", 1)[1]
                state = await service.wait_state(stream, lambda s: s["faces_analysed"] >= 5)
                assert state["kind"] == "webrtc" and state["name"] == "caller"
                assert state["status"] == "up"
                await service.events.wait_for(EventType.STREAM_UP, stream)
            finally:
                await session.close()  # DELETE the Location
            assert stream not in service.pipeline.streams

    asyncio.run(run())


def test_whip_needs_the_token_and_a_valid_offer(frames: list[np.ndarray]) -> None:
    async def run() -> None:
        async with serving() as service:
            with pytest.raises(RuntimeError, match="401"):
                await publish_whip(f"{service.base}/api/whip", frames=frames, token="wrong" * 5)
            async with service.http.post(
                "/api/whip",
                data="v=0\r\nnot really sdp",
                headers={"Content-Type": "application/sdp"},
            ) as response:
                assert response.status == 400
                assert "offer" in (await response.json())["error"].lower()
            async with service.http.post(
                "/api/whip", data="{}", headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 415
            assert service.pipeline.streams == {}

    asyncio.run(run())


def test_json_offer_publisher_is_analysed(frames: list[np.ndarray]) -> None:
    async def run() -> None:
        async with serving() as service:
            session = await publish_offer_json(
                f"{service.base}/api/webrtc/offer", frames=frames, token=TOKEN
            )
            try:
                stream = next(iter(service.pipeline.streams))
                await service.wait_state(stream, lambda s: s["frames_analysed"] >= 5)
            finally:
                await session.close()
            assert service.pipeline.streams == {}

    asyncio.run(run())


TURN_USER = "fw-turn-user"
TURN_PASSWORD = "turnpass-Qk38vNz1"


def relayed_candidates(sdp: str) -> list[str]:
    return [
        line
        for line in sdp.splitlines()
        if line.startswith("a=candidate:") and " typ relay" in line
    ]


@pytest.mark.peer
@pytest.mark.parametrize("endpoint", ["whip", "json"])
def test_ice_servers_reach_the_peer_connection(
    frames: list[np.ndarray], tmp_path: Path, endpoint: str
) -> None:
    """With ``webrtc.ice_servers`` set to a real STUN and TURN server (coturn), the
    service's peer connection uses both: its answer carries a relayed candidate, which
    the TURN server allocates only to its user with the right password."""
    with turn_server(tmp_path, TURN_USER, TURN_PASSWORD) as turn:
        servers = [
            {"urls": turn.stun_url},
            {"urls": [turn.turn_url], "username": TURN_USER, "credential": TURN_PASSWORD},
        ]

        async def run() -> None:
            async with serving(**{"webrtc.ice_servers": servers}) as service:
                publish = publish_whip if endpoint == "whip" else publish_offer_json
                path = "/api/whip" if endpoint == "whip" else "/api/webrtc/offer"
                session = await publish(f"{service.base}{path}", frames=frames, token=TOKEN)
                try:
                    stream = next(iter(service.pipeline.streams))
                    source = service.pipeline.streams[stream].source
                    assert isinstance(source, WebRTCSource)
                    assert source.ice_urls == [turn.stun_url, turn.turn_url]
                    configured = source.configuration.iceServers or []
                    assert [(s.username, s.credential) for s in configured] == [
                        (None, None),
                        (TURN_USER, TURN_PASSWORD),
                    ]
                    relayed = relayed_candidates(session.answer_sdp)
                    assert relayed, session.answer_sdp
                    assert all(" 127.0.0.1 " in line for line in relayed), relayed
                    state = await service.wait_state(stream, lambda s: s["frames_analysed"] >= 3)
                    assert state["status"] == "up"
                    # the page learns the STUN server only; TURN never leaves the service
                    async with service.http.get("/api/webrtc/ice-servers") as response:
                        assert response.status == 200
                        assert await response.json() == {"ice_servers": [{"urls": [turn.stun_url]}]}
                finally:
                    await session.close()

        asyncio.run(run())


@pytest.mark.peer
def test_a_wrong_turn_password_gets_no_relay(frames: list[np.ndarray], tmp_path: Path) -> None:
    """The relayed candidate above is the TURN server's answer to the right credentials:
    with a wrong one the service still answers, from its own addresses only."""
    with turn_server(tmp_path, TURN_USER, TURN_PASSWORD) as turn:
        servers = [{"urls": turn.turn_url, "username": TURN_USER, "credential": "wrong-pass"}]

        async def run() -> None:
            async with serving(**{"webrtc.ice_servers": servers}) as service:
                session = await publish_whip(f"{service.base}/api/whip", frames=frames, token=TOKEN)
                try:
                    assert relayed_candidates(session.answer_sdp) == []
                    assert " typ host" in session.answer_sdp
                    stream = next(iter(service.pipeline.streams))
                    await service.wait_state(stream, lambda s: s["frames_analysed"] >= 3)
                finally:
                    await session.close()

        asyncio.run(run())


def test_the_publisher_page_gets_no_ice_servers_unless_configured() -> None:
    async def run() -> None:
        async with serving() as service:
            async with service.http.get("/api/webrtc/ice-servers") as response:
                assert response.status == 200
                assert await response.json() == {"ice_servers": []}
            async with (
                aiohttp.ClientSession() as anonymous,
                anonymous.get(f"{service.base}/api/webrtc/ice-servers") as response,
            ):
                assert response.status == 401  # behind the token like every /api/ call

    asyncio.run(run())
