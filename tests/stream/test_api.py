"""The HTTP API's contract: auth, validation, limits, JSON errors, health and metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from fakewatch.cli.main import main
from fakewatch.cluster.config import load_cluster_config
from tests.support.media import face_clip, write_video
from tests.support.service import TOKEN, serving


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("clips") / "face.mp4"
    return write_video(path, face_clip(astronaut, 30, (320, 240)))


def test_control_endpoints_need_the_token_and_probes_do_not(clip: Path) -> None:
    async def run() -> None:
        async with serving() as service, aiohttp.ClientSession(base_url=service.base) as anon:
            for method, path in (("GET", "/api/streams"), ("POST", "/api/streams"),
                                 ("DELETE", "/api/streams/x"), ("POST", "/api/whip")):  # fmt: skip
                async with anon.request(method, path) as response:
                    assert response.status == 401, path
                    assert "bearer token" in (await response.json())["error"]
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
            wrong = {"Authorization": "Bearer " + "x" * len(TOKEN)}
            async with anon.get("/api/streams", headers=wrong) as response:
                assert response.status == 401
            for path in ("/healthz", "/readyz", "/metrics"):
                async with anon.get(path) as response:
                    assert response.status == 200, path
            assert "fakewatch_ready 1.0" in await (await anon.get("/metrics")).text()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("not json", 400, "not valid JSON"),
        ("[1, 2]", 400, "JSON object"),
        ('{"name": "x"}', 400, '"url" is required'),
        ('{"url": "rtsp://cam/live", "colour": "red"}', 400, "unknown fields: colour"),
        ('{"url": "concat:/etc/passwd|x"}', 400, "not allowed"),
        ('{"url": "rtsp://cam/live", "name": "bad name!"}', 400, "stream name"),
        ('{"url": "gopher://cam/live"}', 400, "scheme 'gopher'"),
    ],
)
def test_bad_requests_get_a_clear_json_error(body: str, status: int, message: str) -> None:
    async def run() -> None:
        async with serving(**{"sources.allow_local_files": False}) as service:
            headers = {"Content-Type": "application/json"}
            async with service.http.post("/api/streams", data=body, headers=headers) as response:
                assert response.status == status
                assert message in (await response.json())["error"]
            assert service.pipeline.streams == {}

    asyncio.run(run())


def test_names_are_unique_and_streams_can_be_found_by_name(clip: Path) -> None:
    async def run() -> None:
        async with serving() as service:
            stream = await service.add(str(clip), "lobby")
            async with service.http.post(
                "/api/streams", json={"url": str(clip), "name": "lobby"}
            ) as response:
                assert response.status == 409
            state = await service.wait_state("lobby", lambda s: s["frames_analysed"] > 0)
            assert state["id"] == stream
            async with service.http.get("/api/streams/nope") as response:
                assert response.status == 404
                assert "no stream" in (await response.json())["error"]
            async with service.http.get("/api/nothing-here") as response:
                assert response.status == 404
                assert "error" in await response.json()

    asyncio.run(run())


def test_the_example_config_round_trips_and_serve_refuses_bad_settings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["serve", "--print-config"]) == 0
    printed = tmp_path / "fakewatch.yaml"
    printed.write_text(capsys.readouterr().out)
    # the format serve and cluster both read: the service's sections and cluster:
    assert load_cluster_config(printed, environ={}) == load_cluster_config(environ={})
    printed.write_text("analysis:\n  fps: 500\n")
    assert main(["serve", "--config", str(printed)]) == 2
    assert "analysis.fps: Input should be less than or equal to 60" in capsys.readouterr().err


def test_removing_an_alerting_stream_closes_its_alert(
    astronaut: np.ndarray, tmp_path: Path
) -> None:
    from fakewatch.stream.analysis.events import EventType

    # there and back, 6 s: the clip must not end (the stream going down closes the
    # face's alert too) before the alert is up and the stream removed
    there = face_clip(astronaut, 30, (640, 480))
    clip = write_video(tmp_path / "face.mp4", there + there[::-1])
    thresholds = {"vote.enter_threshold": 0.05, "vote.exit_threshold": 0.04, "vote.min_frames": 2}

    async def run() -> None:
        async with serving(**thresholds) as service:
            stream = await service.add(str(clip), "lobby")
            await service.events.wait_for(EventType.SUSPECTED, stream, timeout=20)
            async with service.http.delete(f"/api/streams/{stream}") as response:
                assert response.status == 204
            (cleared,) = await service.events.wait_for(EventType.CLEARED, stream, timeout=5)
            assert cleared.detail == "stream removed"

    asyncio.run(run())
