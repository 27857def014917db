"""The service against a real RTSP server: analysis, restarts, the API and live scans."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fakewatch.cli.main import main
from fakewatch.stream.analysis.events import EventType
from tests.support.media import face_clip, write_video
from tests.support.rtsp import StartRtspServer
from tests.support.service import serving

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """Six seconds of a real face at 10 fps, 640x480."""
    path = tmp_path_factory.mktemp("clips") / "face.mp4"
    return write_video(path, face_clip(astronaut, 60, (640, 480)))


def test_rtsp_stream_is_analysed_and_comes_back_after_the_server_restarts(
    rtsp_server: StartRtspServer, face_video: Path
) -> None:
    server = rtsp_server(face_video)

    async def run() -> None:
        async with serving() as service:
            stream = await service.add(server.url, "door")
            state = await service.wait_state(stream, lambda s: s["faces_analysed"] >= 5)
            assert state["status"] == "up" and state["kind"] == "url"
            assert state["votes"]["tracks"], "the face got a track"
            assert state["latency_s"] is not None and state["latency_s"] < 5
            await service.events.wait_for(EventType.STREAM_UP, stream)

            server.stop()
            await service.events.wait_for(EventType.STREAM_DOWN, stream, timeout=20)
            await asyncio.sleep(1.0)
            analysed = (await service.state(stream))["frames_analysed"]
            server.start()
            await service.events.wait_for(EventType.STREAM_UP, stream, count=2, timeout=40)
            await service.wait_state(stream, lambda s: s["frames_analysed"] > analysed + 3)
            async with service.http.get("/metrics") as response:
                text = await response.text()
            counted = r'fakewatch_stream_reconnects_total\{stream="door"\} (\S+)'
            reconnects = re.search(counted, text)
            assert reconnects and float(reconnects[1]) >= 1
            assert 'fakewatch_frames_analysed_total{stream="door"}' in text

    asyncio.run(run())


def test_streams_are_added_and_removed_while_others_run(
    rtsp_server: StartRtspServer, face_video: Path
) -> None:
    first, second = rtsp_server(face_video), rtsp_server(face_video)

    async def run() -> None:
        async with serving(**{"limits.max_streams": 2}) as service:
            a = await service.add(first.url, "a")
            await service.wait_state(a, lambda s: s["frames_analysed"] >= 3)
            b = await service.add(second.url, "b")
            async with service.http.post(
                "/api/streams", json={"url": first.url, "name": "c"}
            ) as response:
                assert response.status == 429
                assert "max_streams" in (await response.json())["error"]
            await service.wait_state(b, lambda s: s["frames_analysed"] >= 3)
            before = (await service.state(a))["frames_analysed"]
            async with service.http.delete(f"/api/streams/{b}") as response:
                assert response.status == 204
            async with service.http.get(f"/api/streams/{b}") as response:
                assert response.status == 404
            await service.wait_state(a, lambda s: s["frames_analysed"] >= before + 5)
            async with service.http.get("/api/streams") as response:
                names = [s["name"] for s in (await response.json())["streams"]]
            assert names == ["a"]

    asyncio.run(run())


def test_credentials_never_show_in_the_api_events_or_metrics(
    rtsp_server: StartRtspServer, face_video: Path
) -> None:
    server = rtsp_server(face_video, user="viewer", password="s3cret-pw")

    async def run() -> None:
        async with serving() as service:
            stream = await service.add(server.url, "guarded")
            state = await service.wait_state(stream, lambda s: s["frames_analysed"] >= 2)
            assert state["source"].startswith("rtsp://***@127.0.0.1:")
            async with service.http.get("/metrics") as response:
                metrics = await response.text()
            listing = await (await service.http.get("/api/streams")).text()
            events = json.dumps([e.to_dict() for e in service.events.events])
            for text in (json.dumps(state), metrics, listing, events):
                assert "s3cret-pw" not in text and "viewer" not in text

    asyncio.run(run())


def test_fakewatch_scan_reads_a_live_rtsp_url(
    rtsp_server: StartRtspServer, face_video: Path, tmp_path: Path
) -> None:
    server = rtsp_server(face_video)
    report_path = tmp_path / "live.json"
    status = main(["scan", server.url, "--seconds", "4", "--report", str(report_path), "--quiet"])
    assert status == 0
    report = json.loads(report_path.read_text())
    assert report["source"] == server.url
    assert report["frames_analysed"] >= 8
    assert sum(1 for f in report["frames"] if f["faces"]) >= 8
    assert report["verdict"] in ("real", "fake") and report["threshold_calibrated"]
