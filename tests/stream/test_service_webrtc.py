"""WebRTC ingest through the service's API: WHIP (RFC 9725) and the JSON offer."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from fakewatch.stream.analysis.events import EventType
from tests.support.media import face_clip
from tests.support.service import TOKEN, serving
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
