"""Each stream's own settings through the API: PATCH changes a live stream's rate and
thresholds (its window kept), bad values get 400 naming the key, the values given
through the API survive a restart over the config's, and a calm stream is analysed at
its calm rate until something changes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.media import face_clip, write_video
from tests.support.service import Service, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("clips") / "face.mp4"
    return write_video(path, face_clip(astronaut, 60, (640, 480)))


@pytest.fixture(scope="module")
def still(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """A face that does not move: nothing happens in it, even where the file loops."""
    path = tmp_path_factory.mktemp("clips") / "still.mp4"
    return write_video(path, face_clip(astronaut, 1, (640, 480)) * 30)


async def patch(service: Service, stream: str, body: Any) -> tuple[int, dict[str, Any]]:
    async with service.http.patch(f"/api/streams/{stream}", json=body) as response:
        return response.status, await response.json()


def test_patch_changes_the_rate_and_thresholds_of_a_live_stream(clip: Path) -> None:
    async def run() -> None:
        async with serving() as service:
            await service.add(str(clip), "lobby")
            before = await service.wait_state(
                "lobby", lambda s: len(s["votes"]["stream"]["scores"]) >= 3
            )
            assert before["settings"]["overridden"] == {}
            state = service.pipeline.find("lobby")
            assert state is not None
            top = state.top_track
            assert top is not None
            vote = state.track_votes[top].vote
            body = {"fps": 1, "adaptive": False, "enter_threshold": 0.95, "exit_threshold": 0.9}
            status, shown = await patch(service, "lobby", body)
            assert status == 200, shown
            effective = shown["settings"]["effective"]
            assert effective["fps"] == 1 and effective["enter_threshold"] == 0.95
            assert shown["settings"]["overridden"] == dict.fromkeys(sorted(body), "api")
            assert shown["analysis"]["rate"] == "full" and shown["analysis"]["target_fps"] == 1
            # the same window, with the new thresholds; its frames kept
            assert state.track_votes[top].vote is vote and (vote.enter, vote.exit) == (0.95, 0.9)
            assert vote.entries and shown["votes"]["stream"]["enter_threshold"] == 0.95
            # at 1 fps: never more than one analysed frame a second from the next tick on
            await asyncio.sleep(1.5)
            analysed, started = state.analysed, time.monotonic()
            await service.wait_state("lobby", lambda s: s["frames_analysed"] >= analysed + 2)
            await asyncio.sleep(1.0)
            elapsed = time.monotonic() - started
            assert 2 <= state.analysed - analysed <= elapsed * 1 + 1
            # null goes back to the service's value
            status, shown = await patch(service, "lobby", {"fps": None})
            assert status == 200 and shown["settings"]["effective"]["fps"] == 5
            assert "fps" not in shown["settings"]["overridden"]

    asyncio.run(run())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"fps": 0}, '"fps": Input should be greater than 0'),
        ({"fps": 61}, '"fps": Input should be less than or equal to 60'),
        ({"detect_every": "often"}, '"detect_every": Input should be a valid integer'),
        ({"max_faces": 65}, "max_faces"),
        ({"calm_margin": 1}, "calm_margin"),
        ({"colour": "red"}, "unknown fields: colour"),
        ({"exit_threshold": 0.99}, "exit_threshold: 0.99 must not exceed"),
        ({"enter_threshold": 0.5, "exit_threshold": 0.6}, "exit_threshold must not exceed"),
        ([1], "JSON object"),
    ],
)
def test_bad_settings_get_400_naming_the_key_and_change_nothing(
    clip: Path, body: Any, message: str
) -> None:
    async def run() -> None:
        async with serving() as service:
            await service.add(str(clip), "lobby")
            before = await service.state("lobby")
            status, answer = await patch(service, "lobby", body)
            assert status == 400 and message in answer["error"], answer
            assert (await service.state("lobby"))["settings"] == before["settings"]
            # the same check when a stream is added: no stream is started
            if isinstance(body, dict):
                request = {"url": str(clip), "name": "hall", **body}
                async with service.http.post("/api/streams", json=request) as response:
                    assert response.status == 400
                    assert message in (await response.json())["error"]
                assert service.pipeline.find("hall") is None
            status, answer = await patch(service, "nope", {"fps": 2})
            assert status == 404

    asyncio.run(run())


def test_values_given_through_the_api_survive_a_restart_over_the_config(
    clip: Path, tmp_path: Path
) -> None:
    entry = {"name": "lobby", "url": str(clip), "fps": 3, "detect_every": 4}

    async def first() -> None:
        async with serving(tmp_path) as service:
            request = {"url": str(clip), "name": "lobby", "calm_fps": 1.5}
            async with service.http.post("/api/streams", json=request) as response:
                assert response.status == 201
            status, shown = await patch(service, "lobby", {"fps": 2, "use_baseline": False})
            assert status == 200, shown

    async def second() -> None:
        async with serving(tmp_path, streams=[entry]) as service:
            shown = await service.state("lobby")
            effective = shown["settings"]["effective"]
            assert (effective["fps"], effective["detect_every"]) == (2, 4)
            assert (effective["calm_fps"], effective["use_baseline"]) == (1.5, False)
            assert shown["settings"]["overridden"] == {
                "calm_fps": "api",
                "detect_every": "config",
                "fps": "api",
                "use_baseline": "api",
            }
            status, shown = await patch(service, "lobby", {"fps": None})
            assert status == 200
            assert shown["settings"]["effective"]["fps"] == 3  # the config's again
            assert shown["settings"]["overridden"]["fps"] == "config"

    asyncio.run(first())
    asyncio.run(second())


def test_a_calm_stream_drops_to_its_calm_rate_and_comes_back_at_once(still: Path) -> None:
    async def run() -> None:
        async with serving() as service:
            request = {"url": str(still), "name": "porch", "calm_fps": 1, "calm_after_s": 0.5}
            async with service.http.post("/api/streams", json=request) as response:
                assert response.status == 201
            calm = await service.wait_state(
                "porch",
                lambda s: (
                    s["analysis"]["rate"] == "calm" and s["frames_dropped"].get("calm", 0) > 3
                ),
            )
            assert calm["analysis"]["target_fps"] == 1
            assert calm["analysis"]["reason"].startswith("calm")
            assert "calm" in await service.metrics_text()
            # a margin that puts every score near the clear threshold: full rate at once
            status, _ = await patch(service, "porch", {"calm_margin": 0.99})
            assert status == 200
            full = await service.wait_state(
                "porch", lambda s: "of the clear threshold" in s["analysis"]["reason"]
            )
            assert full["analysis"]["rate"] == "full" and full["analysis"]["target_fps"] == 5

    asyncio.run(run())
